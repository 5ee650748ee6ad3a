//! [`Record`]: a value moving through a job, with the key, headers and timestamp it inherited
//! from its input record and where that input came from.

use std::sync::Arc;

use bytes::Bytes;
use krust_client::consumer::RecordHeader;

/// Where an input record was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Input topic.
    pub topic: Arc<str>,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
}

/// A value in a job with its record context. Operators change the value (`map`, ...) and keep
/// the rest; [`Pipeline::map_record`](crate::Pipeline::map_record) sees and changes all of it.
/// The sink writes `key` and `headers` unless it is told to compute them.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// The value.
    pub value: T,
    /// The key (the input's key unless changed; `None` is a null key).
    pub key: Option<Bytes>,
    /// Headers (the input's unless changed).
    pub headers: Vec<RecordHeader>,
    /// Timestamp in milliseconds since the epoch (the input's: event time).
    pub timestamp: i64,
    /// The input record this one derives from.
    pub origin: Origin,
}

impl<T> Record<T> {
    /// The same context with another value.
    pub fn with_value<U>(self, value: U) -> Record<U> {
        Record {
            value,
            key: self.key,
            headers: self.headers,
            timestamp: self.timestamp,
            origin: self.origin,
        }
    }

    /// Changes the value, keeping the context.
    pub fn map_value<U>(self, f: impl FnOnce(T) -> U) -> Record<U> {
        let (value, context) = self.split();
        context.with_value(f(value))
    }

    /// Splits the value from its context (key, headers, timestamp, origin); put a value back
    /// with [`Record::with_value`].
    pub fn split(self) -> (T, Record<()>) {
        let Record {
            value,
            key,
            headers,
            timestamp,
            origin,
        } = self;
        let context = Record {
            value: (),
            key,
            headers,
            timestamp,
            origin,
        };
        (value, context)
    }

    /// Adds a header.
    pub fn push_header(&mut self, key: impl Into<String>, value: impl Into<Bytes>) {
        self.headers
            .push(RecordHeader::new(key.into(), Some(value.into())));
    }
}
