//! A null broker: a one-node "cluster" on loopback that costs as little as possible, so that a
//! client's own cost can be measured alone.
//!
//! It answers ApiVersions, Metadata (any topic exists, with the configured number of
//! partitions, led by this broker), InitProducerId, Produce (acknowledged at once, nothing
//! stored; base offsets count the records acknowledged per partition, so they are correct and
//! increasing), ListOffsets (earliest 0, latest the configured end), OffsetForLeaderEpoch,
//! FindCoordinator (itself), and
//! Fetch: every partition holds `fetch_end` records, served from one pre-built valid batch whose
//! base offset is rewritten for each answer (the base offset is outside the batch CRC, so no
//! checksum is recomputed). A fetch at the end waits up to the request's `max_wait_ms` (capped)
//! and answers empty, as a broker with nothing new does.
//!
//! Fetch sessions are not granted (session id 0), so clients send full fetches. Requests are
//! decoded with `kafka-protocol`'s codecs (the record bytes stay zero-copy slices of the
//! frame); answers of one read are written with one write.
//!
//! ```
//! use krust_testkit::{NullBroker, NullBrokerConfig};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let broker = NullBroker::start(NullBrokerConfig::new().with_partitions(6).with_fetch_end(1000))
//!     .await
//!     .unwrap();
//! let bootstrap = broker.bootstrap(); // "127.0.0.1:port"
//! # assert!(bootstrap.starts_with("127.0.0.1:"));
//! assert_eq!(broker.stats().produced_records, 0);
//! # }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    ProduceRequest, ProduceResponse, ProducerId, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use krust_wire::record::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest a fetch at the end of every partition waits before answering empty.
const MAX_FETCH_WAIT: Duration = Duration::from_millis(500);

/// Largest request frame accepted (a produce request of a few batches is far smaller).
const MAX_FRAME: usize = 128 * 1024 * 1024;

/// Byte offsets inside a v2 record batch header.
const BATCH_LENGTH_AT: usize = 8;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BATCH_HEADER_LEN: usize = 61;

/// What a [`NullBroker`] serves.
#[derive(Debug, Clone)]
pub struct NullBrokerConfig {
    /// Partitions of every topic (default 1).
    pub partitions: i32,
    /// Records each partition holds for consumers (default 0: fetches answer empty).
    pub fetch_end: i64,
    /// Value size of the served records (default 100 bytes; keys are null).
    pub fetch_record_size: usize,
    /// Records per served batch (default 100).
    pub fetch_batch_records: usize,
    /// Codec of the served batches (default none).
    pub fetch_compression: Compression,
}

impl Default for NullBrokerConfig {
    fn default() -> Self {
        NullBrokerConfig {
            partitions: 1,
            fetch_end: 0,
            fetch_record_size: 100,
            fetch_batch_records: 100,
            fetch_compression: Compression::None,
        }
    }
}

impl NullBrokerConfig {
    /// The defaults: one partition per topic, nothing to fetch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of partitions of every topic (at least 1).
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Sets how many records each partition holds for consumers.
    pub fn with_fetch_end(mut self, end: i64) -> Self {
        self.fetch_end = end.max(0);
        self
    }

    /// Sets the value size of served records.
    pub fn with_fetch_record_size(mut self, size: usize) -> Self {
        self.fetch_record_size = size;
        self
    }

    /// Sets the number of records per served batch (at least 1).
    pub fn with_fetch_batch_records(mut self, n: usize) -> Self {
        self.fetch_batch_records = n.max(1);
        self
    }

    /// Sets the codec of served batches.
    pub fn with_fetch_compression(mut self, c: Compression) -> Self {
        self.fetch_compression = c;
        self
    }
}

/// Counters of a [`NullBroker`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NullBrokerStats {
    /// Produce requests answered (or taken, with acks=0).
    pub produce_requests: u64,
    /// Records in acknowledged produce requests.
    pub produced_records: u64,
    /// Record-batch bytes received in produce requests.
    pub produced_bytes: u64,
    /// Fetch requests answered.
    pub fetch_requests: u64,
    /// Records served to fetches.
    pub fetched_records: u64,
    /// Connections accepted.
    pub connections: u64,
}

#[derive(Default)]
struct Counters {
    produce_requests: AtomicU64,
    produced_records: AtomicU64,
    produced_bytes: AtomicU64,
    fetch_requests: AtomicU64,
    fetched_records: AtomicU64,
    connections: AtomicU64,
}

/// Pre-built batches served to fetches.
struct Served {
    /// A batch of `fetch_batch_records` records at base offset 0.
    full: Bytes,
    /// Records per full batch.
    per_batch: i64,
}

struct Inner {
    cfg: NullBrokerConfig,
    addr: SocketAddr,
    counters: Counters,
    /// Next offset per (topic, partition) for produced records.
    offsets: Mutex<HashMap<(StrBytes, i32), i64>>,
    next_producer_id: AtomicU64,
    served: Served,
    /// Short final batches, by record count.
    tails: Mutex<HashMap<i64, Bytes>>,
}

/// A broker that acknowledges produce requests at once and serves fetches from a pre-built
/// batch. See the [module docs](self). Dropping it stops its listener and connections.
pub struct NullBroker {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for NullBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NullBroker")
            .field("addr", &self.inner.addr)
            .field("config", &self.inner.cfg)
            .finish()
    }
}

impl Drop for NullBroker {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn build_batch(cfg: &NullBrokerConfig, records: i64) -> std::io::Result<Bytes> {
    let value = vec![b'x'; cfg.fetch_record_size];
    let mut b = BatchBuilder::new(cfg.fetch_compression)
        .with_partition_leader_epoch(0)
        .with_capacity(records as usize * (cfg.fetch_record_size + 16));
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for _ in 0..records {
        b.push(ts, None, Some(&value), &[])
            .map_err(std::io::Error::other)?;
    }
    b.finish(-1, -1, -1, false).map_err(std::io::Error::other)
}

impl NullBroker {
    /// Starts the broker on an ephemeral loopback port, on the current tokio runtime.
    pub async fn start(cfg: NullBrokerConfig) -> std::io::Result<NullBroker> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let per_batch = cfg.fetch_batch_records.max(1) as i64;
        let full = build_batch(&cfg, per_batch)?;
        let inner = Arc::new(Inner {
            cfg,
            addr,
            counters: Counters::default(),
            offsets: Mutex::new(HashMap::new()),
            next_producer_id: AtomicU64::new(1000),
            served: Served { full, per_batch },
            tails: Mutex::new(HashMap::new()),
        });
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(accept_loop(inner.clone(), listener, rx));
        Ok(NullBroker { inner, shutdown })
    }

    /// The bootstrap address, `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
        self.inner.addr.to_string()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The counters so far.
    pub fn stats(&self) -> NullBrokerStats {
        let c = &self.inner.counters;
        NullBrokerStats {
            produce_requests: c.produce_requests.load(Ordering::Relaxed),
            produced_records: c.produced_records.load(Ordering::Relaxed),
            produced_bytes: c.produced_bytes.load(Ordering::Relaxed),
            fetch_requests: c.fetch_requests.load(Ordering::Relaxed),
            fetched_records: c.fetched_records.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
        }
    }
}

async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    inner.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let inner = inner.clone();
                    let mut rx = shutdown.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve(inner, stream) => {}
                            _ = rx.changed() => {}
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(%e, "null broker: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve(inner: Arc<Inner>, mut stream: TcpStream) {
    let reader = krust_wire::frame::FrameReader::new(MAX_FRAME);
    let mut buf = BytesMut::with_capacity(1024 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let frame = match reader.try_read(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%e, "null broker: bad frame; closing");
                    return;
                }
            };
            if !out.is_empty() && frame_wants_wait(&frame) {
                // Send what is ready before a fetch that may wait.
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            if handle(&inner, frame, &mut out).await.is_err() {
                let _ = stream.write_all(&out).await;
                return;
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(1024 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Whether a frame is a fetch (which may long-poll).
fn frame_wants_wait(frame: &Bytes) -> bool {
    frame.len() >= 2 && i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::Fetch as i16
}

/// The versions the null broker serves.
fn served(api: ApiKey) -> Option<(i16, i16)> {
    Some(match api {
        ApiKey::ApiVersions => (0, 3),
        ApiKey::Metadata => (0, 12),
        ApiKey::Produce => (3, 9),
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 7),
        ApiKey::InitProducerId => (0, 4),
        ApiKey::OffsetForLeaderEpoch => (2, 4),
        ApiKey::FindCoordinator => (0, 4),
        _ => return None,
    })
}

struct Closed;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn encode<R: Encodable + HeaderVersion>(
    out: &mut BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &R,
) -> Result<(), Closed> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let hv = api.response_header_version(version);
    if header.encode(out, hv).is_err() || resp.encode(out, version).is_err() {
        tracing::error!(?api, version, "null broker: encoding a response failed");
        out.truncate(start);
        return Err(Closed);
    }
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

async fn handle(inner: &Arc<Inner>, mut frame: Bytes, out: &mut BytesMut) -> Result<(), Closed> {
    if frame.len() < 8 {
        return Err(Closed);
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api) = ApiKey::try_from(key) else {
        tracing::debug!(key, "null broker: unknown api; closing");
        return Err(Closed);
    };
    let Some((min, max)) = served(api) else {
        tracing::debug!(?api, "null broker: api not served; closing");
        return Err(Closed);
    };
    if api == ApiKey::ApiVersions && version > max {
        let resp = api_versions().with_error_code(35); // UNSUPPORTED_VERSION, answered as v0
        return encode(out, api, 0, correlation_id, &resp);
    }
    if version < min || version > max {
        tracing::debug!(?api, version, "null broker: version not served; closing");
        return Err(Closed);
    }
    if RequestHeader::decode(&mut frame, api.request_header_version(version)).is_err() {
        return Err(Closed);
    }
    let bad = |_| Closed;
    match api {
        ApiKey::ApiVersions => encode(out, api, version, correlation_id, &api_versions()),
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(&mut frame, version).map_err(bad)?;
            encode(
                out,
                api,
                version,
                correlation_id,
                &metadata(inner, req, version),
            )
        }
        ApiKey::InitProducerId => {
            let pid = inner.next_producer_id.fetch_add(1, Ordering::Relaxed) as i64;
            let resp = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0);
            encode(out, api, version, correlation_id, &resp)
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut frame, version).map_err(bad)?;
            let acks = req.acks;
            let resp = produce(inner, req, version);
            if acks == 0 {
                return Ok(());
            }
            encode(out, api, version, correlation_id, &resp)
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::decode(&mut frame, version).map_err(bad)?;
            encode(
                out,
                api,
                version,
                correlation_id,
                &list_offsets(inner, req, version),
            )
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req = OffsetForLeaderEpochRequest::decode(&mut frame, version).map_err(bad)?;
            let resp = offset_for_leader_epoch(inner, req);
            encode(out, api, version, correlation_id, &resp)
        }
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::decode(&mut frame, version).map_err(bad)?;
            let resp = find_coordinator(inner, req, version);
            encode(out, api, version, correlation_id, &resp)
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(&mut frame, version).map_err(bad)?;
            let resp = fetch(inner, req, version).await;
            encode(out, api, version, correlation_id, &resp)
        }
        _ => Err(Closed),
    }
}

fn api_versions() -> ApiVersionsResponse {
    let keys = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::InitProducerId,
        ApiKey::OffsetForLeaderEpoch,
        ApiKey::FindCoordinator,
    ];
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .filter_map(|k| {
                let (min, max) = served(*k)?;
                Some(
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(min)
                        .with_max_version(max),
                )
            })
            .collect(),
    )
}

fn metadata(inner: &Inner, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut resp =
        MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(sb(&inner.addr.ip().to_string()))
            .with_port(i32::from(inner.addr.port()))]);
    if version >= 1 {
        resp.controller_id = BrokerId(0);
    }
    if version >= 2 {
        resp.cluster_id = Some(sb("krust-null-broker"));
    }
    for t in req.topics.unwrap_or_default() {
        let Some(name) = t.name else { continue };
        let partitions = (0..inner.cfg.partitions)
            .map(|i| {
                let mut p = MetadataResponsePartition::default()
                    .with_partition_index(i)
                    .with_leader_id(BrokerId(0))
                    .with_replica_nodes(vec![BrokerId(0)])
                    .with_isr_nodes(vec![BrokerId(0)]);
                if version >= 7 {
                    p.leader_epoch = 0;
                }
                p
            })
            .collect();
        resp.topics.push(
            MetadataResponseTopic::default()
                .with_name(Some(name))
                .with_partitions(partitions),
        );
    }
    resp
}

/// Every coordinator is this broker (librdkafka looks one up when `group.id` is set, even for
/// assign-mode consumers that never join).
fn find_coordinator(
    inner: &Inner,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = sb(&inner.addr.ip().to_string());
    let port = i32::from(inner.addr.port());
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for k in req.coordinator_keys {
            resp.coordinators.push(
                Coordinator::default()
                    .with_key(k)
                    .with_node_id(BrokerId(0))
                    .with_host(host.clone())
                    .with_port(port),
            );
        }
    } else {
        resp.node_id = BrokerId(0);
        resp.host = host;
        resp.port = port;
    }
    resp
}

/// Records in a produce request's record bytes (one or more v2 batches).
fn count_records(mut records: &[u8]) -> i64 {
    let mut n = 0i64;
    while records.len() >= BATCH_HEADER_LEN {
        let len = i32::from_be_bytes(
            records[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        let delta = i32::from_be_bytes(
            records[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        n += i64::from(delta.max(0)) + 1;
        let total = 12usize.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        if total > records.len() {
            break;
        }
        records = &records[total..];
    }
    n
}

fn produce(inner: &Inner, req: ProduceRequest, version: i16) -> ProduceResponse {
    let mut resp = ProduceResponse::default();
    let mut records_total = 0u64;
    let mut bytes_total = 0u64;
    let mut offsets = inner.offsets.lock().unwrap_or_else(|e| e.into_inner());
    for td in req.topic_data {
        let mut tr = TopicProduceResponse::default().with_name(td.name.clone());
        for pd in td.partition_data {
            let (n, len) = pd
                .records
                .as_ref()
                .map_or((0, 0), |r| (count_records(r), r.len()));
            records_total += n as u64;
            bytes_total += len as u64;
            let next = offsets.entry((td.name.0.clone(), pd.index)).or_insert(0);
            let base = *next;
            *next += n;
            let mut pr = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(base)
                .with_log_append_time_ms(-1);
            if version >= 5 {
                pr.log_start_offset = 0;
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    drop(offsets);
    let c = &inner.counters;
    c.produce_requests.fetch_add(1, Ordering::Relaxed);
    c.produced_records
        .fetch_add(records_total, Ordering::Relaxed);
    c.produced_bytes.fetch_add(bytes_total, Ordering::Relaxed);
    resp
}

fn list_offsets(inner: &Inner, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let end = inner.cfg.fetch_end;
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default().with_name(t.name.clone());
        for p in t.partitions {
            let offset = match p.timestamp {
                -2 | -4 => 0,
                -1 | -5 => end,
                ts if ts >= 0 => 0,
                _ => end,
            };
            let mut pr = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(offset);
            if version >= 4 {
                pr.leader_epoch = 0;
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

fn offset_for_leader_epoch(
    inner: &Inner,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default().with_topic(t.topic.clone());
        for p in t.partitions {
            tr.partitions.push(
                EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_leader_epoch(0)
                    .with_end_offset(inner.cfg.fetch_end),
            );
        }
        resp.topics.push(tr);
    }
    resp
}

/// The batch of `n` records (`n` at most a full batch): the pre-built one, or a short final one.
fn batch_of(inner: &Inner, n: i64) -> Option<Bytes> {
    if n == inner.served.per_batch {
        return Some(inner.served.full.clone());
    }
    let mut tails = inner.tails.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = tails.get(&n) {
        return Some(b.clone());
    }
    let b = build_batch(&inner.cfg, n).ok()?;
    tails.insert(n, b.clone());
    Some(b)
}

/// The records served at `offset`, at most `max_bytes` (at least one batch), and how many.
fn serve_records(inner: &Inner, offset: i64, max_bytes: usize) -> (Bytes, i64) {
    let end = inner.cfg.fetch_end;
    let per = inner.served.per_batch;
    let mut out = BytesMut::new();
    let mut at = offset;
    let mut served = 0;
    while at < end {
        let n = per.min(end - at);
        let Some(batch) = batch_of(inner, n) else {
            break;
        };
        if !out.is_empty() && out.len() + batch.len() > max_bytes {
            break;
        }
        if out.is_empty() {
            let batches = (max_bytes / batch.len().max(1)).clamp(1, 1024);
            out.reserve(batches * batch.len());
        }
        let start = out.len();
        out.extend_from_slice(&batch);
        out[start..start + 8].copy_from_slice(&at.to_be_bytes());
        at += n;
        served += n;
        if n < per {
            break;
        }
    }
    (out.freeze(), served)
}

async fn fetch(inner: &Inner, req: FetchRequest, version: i16) -> FetchResponse {
    let end = inner.cfg.fetch_end;
    let all_at_end = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .all(|p| p.fetch_offset >= end);
    if all_at_end && req.max_wait_ms > 0 {
        let wait = Duration::from_millis(req.max_wait_ms as u64).min(MAX_FETCH_WAIT);
        tokio::time::sleep(wait).await;
    }
    let mut budget = if version >= 3 && req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut resp = FetchResponse::default();
    let mut fetched = 0i64;
    for t in req.topics {
        let mut tr = FetchableTopicResponse::default().with_topic(t.topic.clone());
        if version >= 13 {
            tr.topic_id = t.topic_id;
        }
        for p in t.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(end)
                .with_last_stable_offset(end)
                .with_log_start_offset(0);
            if p.fetch_offset > end || p.fetch_offset < 0 {
                pd.error_code = 1; // OFFSET_OUT_OF_RANGE
            } else if p.fetch_offset < end && budget > 0 {
                let max = (p.partition_max_bytes.max(0) as usize).min(budget);
                let (records, n) = serve_records(inner, p.fetch_offset, max);
                budget = budget.saturating_sub(records.len());
                fetched += n;
                pd.records = Some(records);
            } else {
                pd.records = Some(Bytes::new());
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    let c = &inner.counters;
    c.fetch_requests.fetch_add(1, Ordering::Relaxed);
    c.fetched_records
        .fetch_add(fetched as u64, Ordering::Relaxed);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_records_of_consecutive_batches() {
        let cfg = NullBrokerConfig::new();
        let a = build_batch(&cfg, 3).unwrap();
        let b = build_batch(&cfg, 5).unwrap();
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_eq!(count_records(&both), 8);
        assert_eq!(
            count_records(&both[..both.len() - 1]),
            8,
            "a cut tail still counts its header"
        );
        assert_eq!(count_records(&[]), 0);
    }

    #[tokio::test]
    async fn served_records_are_valid_batches_with_increasing_offsets() {
        let broker = NullBroker::start(
            NullBrokerConfig::new()
                .with_fetch_end(250)
                .with_fetch_batch_records(100),
        )
        .await
        .unwrap();
        let (records, n) = serve_records(&broker.inner, 0, usize::MAX);
        assert_eq!(n, 250);
        let mut expected = 0;
        for batch in krust_wire::record::batches(records) {
            let batch = batch.unwrap();
            assert_eq!(batch.base_offset(), expected);
            let inflated = batch.inflate().unwrap();
            for r in inflated.records() {
                assert_eq!(r.unwrap().offset, expected);
                expected += 1;
            }
        }
        assert_eq!(expected, 250);
        // A byte limit smaller than a batch still returns one whole batch.
        let (records, n) = serve_records(&broker.inner, 100, 10);
        assert_eq!(n, 100);
        assert_eq!(krust_wire::record::batches(records).count(), 1);
        let (records, n) = serve_records(&broker.inner, 250, usize::MAX);
        assert_eq!((records.len(), n), (0, 0));
    }
}
