//! [`Pipeline`]: a source followed by operators (map, filter, filter_map, flat_map, inspect,
//! try_map, an ordered async map with bounded concurrency, key selection), ended by a sink.
//!
//! Operators are stateless functions of one record: the layer keeps no state of its own, Kafka
//! does (offsets, transactions), which is what makes a job restartable and scalable by adding
//! processes to its consumer group. Each input record yields zero or more output records; a
//! record error (bad input, a failed `try_map`, a failed serialization) goes to the job's
//! [`ErrorPolicy`](crate::ErrorPolicy) as a whole: none of that input's outputs is written.
//!
//! Synchronous operators run inline. An async stage ([`Pipeline::map_async`]) runs up to its
//! concurrency limit of calls at once; outputs are still written in input order, so the order
//! within each partition (and across a polled batch) is kept.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use krust_client::consumer::ConsumerRecord;
use tokio::sync::Semaphore;

use crate::error::{RecordError, StreamError};
use crate::record::{Origin, Record};
use crate::sink::KafkaSink;
use crate::source::{ErrorPolicy, KafkaSource, SourceConfig};
use crate::Job;

/// The outputs of one input record so far: ready now, or behind an async stage.
pub(crate) enum Staged<T> {
    /// Computed synchronously.
    Now(Result<Vec<Record<T>>, RecordError>),
    /// Waiting for an async stage.
    Later(BoxFuture<'static, Result<Vec<Record<T>>, RecordError>>),
}

impl<T: Send + 'static> Staged<T> {
    /// Resolves the outputs.
    pub(crate) async fn resolve(self) -> Result<Vec<Record<T>>, RecordError> {
        match self {
            Staged::Now(r) => r,
            Staged::Later(f) => f.await,
        }
    }
}

/// The operator chain from an input record to outputs of type `T`.
pub(crate) type Chain<T> = Arc<dyn Fn(ConsumerRecord) -> Staged<T> + Send + Sync>;
type Step<T, U> = Arc<dyn Fn(Record<T>) -> Staged<U> + Send + Sync>;

/// Applies `step` to every output of `s`, in order, staying synchronous while every step is.
fn bind<T: Send + 'static, U: Send + 'static>(s: Staged<T>, step: Step<T, U>) -> Staged<U> {
    match s {
        Staged::Now(Err(e)) => Staged::Now(Err(e)),
        Staged::Now(Ok(items)) => {
            let mut out = Vec::with_capacity(items.len());
            let mut rest = items.into_iter();
            while let Some(item) = rest.next() {
                match step(item) {
                    Staged::Now(Ok(v)) => out.extend(v),
                    Staged::Now(Err(e)) => return Staged::Now(Err(e)),
                    Staged::Later(fut) => {
                        return Staged::Later(Box::pin(async move {
                            out.extend(fut.await?);
                            for item in rest {
                                out.extend(step(item).resolve().await?);
                            }
                            Ok(out)
                        }))
                    }
                }
            }
            Staged::Now(Ok(out))
        }
        Staged::Later(fut) => Staged::Later(Box::pin(async move {
            let items = fut.await?;
            bind(Staged::Now(Ok(items)), step).resolve().await
        })),
    }
}

/// A source and its operators so far, producing `Record<T>`s; end it with
/// [`Pipeline::sink`].
pub struct Pipeline<T> {
    pub(crate) source: SourceConfig,
    pub(crate) chain: Chain<T>,
}

impl<T> std::fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("source", &self.source)
            .finish()
    }
}

impl<T: Send + 'static> From<KafkaSource<T>> for Pipeline<T> {
    fn from(s: KafkaSource<T>) -> Self {
        let de = s.deserializer;
        let chain: Chain<T> = Arc::new(move |r: ConsumerRecord| {
            let origin = Origin {
                topic: r.topic,
                partition: r.partition,
                offset: r.offset,
            };
            match de.deserialize(r.value.as_ref()) {
                Ok(value) => Staged::Now(Ok(vec![Record {
                    value,
                    key: r.key,
                    headers: r.headers,
                    timestamp: r.timestamp,
                    origin,
                }])),
                Err(e) => Staged::Now(Err(RecordError::new("deserialize", e))),
            }
        });
        Pipeline {
            source: s.config,
            chain,
        }
    }
}

impl<T: Send + 'static> Pipeline<T> {
    fn then<U: Send + 'static>(
        self,
        step: impl Fn(Record<T>) -> Staged<U> + Send + Sync + 'static,
    ) -> Pipeline<U> {
        let prev = self.chain;
        let step: Step<T, U> = Arc::new(step);
        Pipeline {
            source: self.source,
            chain: Arc::new(move |r| bind(prev(r), step.clone())),
        }
    }

    /// Replaces each value with `f(value)`.
    pub fn map<U: Send + 'static>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Pipeline<U> {
        self.then(move |r| Staged::Now(Ok(vec![r.map_value(&f)])))
    }

    /// Replaces each record (value, key, headers, timestamp) with `f(record)`.
    pub fn map_record<U: Send + 'static>(
        self,
        f: impl Fn(Record<T>) -> Record<U> + Send + Sync + 'static,
    ) -> Pipeline<U> {
        self.then(move |r| Staged::Now(Ok(vec![f(r)])))
    }

    /// Like [`map`](Self::map), but `f` may fail: the error goes to the error policy (fail,
    /// skip and count, or dead-letter the input record with the error in its headers).
    pub fn try_map<U: Send + 'static, E: std::fmt::Display>(
        self,
        f: impl Fn(T) -> Result<U, E> + Send + Sync + 'static,
    ) -> Pipeline<U> {
        self.then(move |r| {
            let (value, context) = r.split();
            Staged::Now(match f(value) {
                Ok(value) => Ok(vec![context.with_value(value)]),
                Err(e) => Err(RecordError::new("try_map", e)),
            })
        })
    }

    /// Keeps the values for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Pipeline<T> {
        self.then(move |r| Staged::Now(Ok(if f(&r.value) { vec![r] } else { Vec::new() })))
    }

    /// Maps and filters in one: `None` drops the record.
    pub fn filter_map<U: Send + 'static>(
        self,
        f: impl Fn(T) -> Option<U> + Send + Sync + 'static,
    ) -> Pipeline<U> {
        self.then(move |r| {
            let (value, context) = r.split();
            Staged::Now(Ok(match f(value) {
                Some(value) => vec![context.with_value(value)],
                None => Vec::new(),
            }))
        })
    }

    /// Replaces each value with any number of values (each with the input's context).
    pub fn flat_map<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Pipeline<U> {
        self.then(move |r| {
            let (value, context) = r.split();
            Staged::Now(Ok(f(value)
                .into_iter()
                .map(|value| context.clone().with_value(value))
                .collect()))
        })
    }

    /// Calls `f` on each record (logging, counting) and passes it on unchanged.
    pub fn inspect(self, f: impl Fn(&Record<T>) + Send + Sync + 'static) -> Pipeline<T> {
        self.then(move |r| {
            f(&r);
            Staged::Now(Ok(vec![r]))
        })
    }

    /// Sets each record's key to `f(value)` (what the sink writes, and what the default
    /// partitioner hashes: records with one key go to one output partition).
    pub fn key_by<K: Into<Bytes>>(
        self,
        f: impl Fn(&T) -> Option<K> + Send + Sync + 'static,
    ) -> Pipeline<T> {
        self.then(move |mut r| {
            r.key = f(&r.value).map(Into::into);
            Staged::Now(Ok(vec![r]))
        })
    }

    /// Replaces each value with the output of the async `f` (a lookup, an HTTP call), running
    /// at most `concurrency` calls at once across the job. Outputs keep the input order, so
    /// per-partition order is kept; a slow call holds back the records after it.
    ///
    /// `concurrency` 0 is taken as 1.
    pub fn map_async<U, F, Fut>(self, concurrency: usize, f: F) -> Pipeline<U>
    where
        U: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = U> + Send + 'static,
    {
        let limit = Arc::new(Semaphore::new(concurrency.max(1)));
        self.then(move |r| {
            let (value, context) = r.split();
            let limit = limit.clone();
            let fut = f(value);
            let fut: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
                let _permit = limit
                    .acquire_owned()
                    .await
                    .map_err(|_| RecordError::new("map_async", "stage closed"))?;
                Ok(vec![context.with_value(fut.await)])
            });
            Staged::Later(fut)
        })
    }

    /// Overrides the source's error policy for this job.
    pub fn on_error(mut self, policy: ErrorPolicy) -> Pipeline<T> {
        self.source.error_policy = policy;
        self
    }

    /// Ends the pipeline in `sink`, checking the whole job's settings (delivery guarantee
    /// against the source's group, transaction timeout against the commit interval and the
    /// session timeout): a configuration error names the setting to change.
    pub fn sink(self, sink: KafkaSink<T>) -> Result<Job, StreamError> {
        Job::new(self, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: &str) -> ConsumerRecord {
        ConsumerRecord {
            topic: "in".into(),
            partition: 0,
            offset: 7,
            timestamp: 1,
            timestamp_type: krust_client::consumer::TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Vec::new(),
            leader_epoch: None,
        }
    }

    fn pipeline() -> Pipeline<String> {
        crate::KafkaSource::builder("127.0.0.1:1")
            .topic("in")
            .deserializer(crate::Utf8Deserializer)
            .build()
            .unwrap()
            .into()
    }

    fn values<T: Clone>(s: Staged<T>) -> Result<Vec<T>, RecordError> {
        match s {
            Staged::Now(r) => r.map(|v| v.into_iter().map(|r| r.value).collect()),
            Staged::Later(_) => panic!("expected a synchronous result"),
        }
    }

    #[test]
    fn sync_operators_compose_in_order() {
        let p = pipeline()
            .flat_map(|s: String| s.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .filter(|w| !w.is_empty())
            .filter_map(|w| (w != "skip").then_some(w))
            .map(|w| w.to_uppercase())
            .key_by(|w| Some(Bytes::copy_from_slice(w.as_bytes())));
        let out = match (p.chain)(raw("a skip  bc")) {
            Staged::Now(r) => r.unwrap(),
            Staged::Later(_) => panic!("sync"),
        };
        let got: Vec<(String, Option<Bytes>, i64)> = out
            .into_iter()
            .map(|r| (r.value, r.key, r.origin.offset))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A".into(), Some(Bytes::from_static(b"A")), 7),
                ("BC".into(), Some(Bytes::from_static(b"BC")), 7)
            ]
        );
    }

    #[test]
    fn errors_name_their_stage() {
        let p = pipeline().try_map(|s: String| s.parse::<u32>());
        assert_eq!(values((p.chain)(raw("12"))).unwrap(), vec![12]);
        let e = values((p.chain)(raw("x"))).unwrap_err();
        assert_eq!(e.stage, "try_map");
        let mut bad = raw("");
        bad.value = Some(Bytes::from_static(b"\xff"));
        let e = values((pipeline().chain)(bad)).unwrap_err();
        assert_eq!(e.stage, "deserialize");
    }

    #[tokio::test]
    async fn async_map_keeps_order_and_bounds_concurrency() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r2, p2) = (running.clone(), peak.clone());
        let p = pipeline()
            .map_async(3, move |s: String| {
                let (running, peak) = (r2.clone(), p2.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Later records finish first: order must still be kept.
                    let n: u64 = s.parse().unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(30 - n)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    n
                }
            })
            .map(|n| n * 10);
        let staged: Vec<_> = (0..20).map(|i| (p.chain)(raw(&i.to_string()))).collect();
        use futures::StreamExt;
        let out: Vec<u64> = futures::stream::iter(staged.into_iter().map(|s| s.resolve()))
            .buffered(64)
            .map(|r| r.unwrap()[0].value)
            .collect()
            .await;
        assert_eq!(out, (0..20).map(|i| i * 10).collect::<Vec<u64>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3, "at most 3 calls at once");
    }
}
