//! Turning one partition of a Fetch response into records for the application: batches split
//! off and CRC-checked by `krust_wire::record`, decompressed, control batches skipped, records
//! before the requested offset dropped (a fetch returns whole batches, so the first batch may
//! start before it), and under read_committed the records of aborted transactions dropped and
//! nothing at or past the last stable offset delivered.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use krust_wire::kafka_protocol::messages::fetch_response::PartitionData;
use krust_wire::record::{
    batches, Compression, ControlRecordType, DecompressLimits, DeflatedBatch, RecordHeader,
    RecordIter, TimestampType,
};

use super::{IsolationLevel, TopicPartition, Watermarks};

/// One record as the application receives it. Keys, values and header values are zero-copy
/// slices of the fetched (or decompressed) batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic name (shared by every record of the partition).
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch (see `timestamp_type`).
    pub timestamp: i64,
    /// Whether the producer or the broker set the timestamp.
    pub timestamp_type: TimestampType,
    /// Key (`None` is a null key).
    pub key: Option<Bytes>,
    /// Value (`None` is a null value, a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers in wire order.
    pub headers: Vec<RecordHeader>,
    /// The leader epoch the broker stamped on the record's batch, if any.
    pub leader_epoch: Option<i32>,
}

/// How to parse fetched data.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Isolation level of the fetch.
    pub isolation: IsolationLevel,
    /// Limits on decompressed sizes.
    pub limits: DecompressLimits,
    /// Whether each batch's CRC is verified (`check.crcs`, default true).
    pub check_crcs: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            isolation: IsolationLevel::ReadUncommitted,
            limits: DecompressLimits::default(),
            check_crcs: true,
        }
    }
}

/// The records one fetch returned for one partition, waiting to be polled.
///
/// Batches are kept as they came off the wire (CRC-checked, still compressed) and inflated one
/// at a time as the application polls, so memory is the fetched bytes plus the one batch being
/// delivered, whatever the compression ratio.
#[derive(Debug)]
pub struct CompletedFetch {
    /// The partition.
    pub tp: TopicPartition,
    /// Data batches not yet inflated, in offset order.
    pending: VecDeque<DeflatedBatch>,
    /// The batch being delivered, decoded record by record straight into the caller's vector
    /// (keys and values are slices of its bytes).
    current: Option<Box<Current>>,
    /// Bytes of `current` counted in `size` (its decompressed bytes, for a compressed batch).
    current_size: usize,
    /// Records before this offset are not delivered.
    fetch_offset: i64,
    /// Records at or after this offset are not delivered (the LSO under read_committed).
    stable_end: i64,
    /// Decompression limits.
    limits: DecompressLimits,
    /// The offset to fetch after this data (past control batches and skipped records too).
    pub next_offset: i64,
    /// Leader epoch of the last batch seen, if any.
    pub last_epoch: Option<i32>,
    /// Watermarks reported with the data.
    pub watermarks: Watermarks,
    /// Bytes accounted against the prefetch budget: the fetched bytes (held until the fetch is
    /// fully polled, as records share its buffers) plus `current_size`.
    size: usize,
    /// Bytes of the fetched data on the wire (before decompression).
    wire_bytes: usize,
    /// When the data held bytes but not one complete batch: the size the partial batch
    /// announces (or 0 if not even its length field arrived).
    partial_only: Option<usize>,
}

/// The inflated batch a [`CompletedFetch`] is delivering.
#[derive(Debug)]
struct Current {
    records: RecordIter,
    base_offset: i64,
    timestamp_type: TimestampType,
    max_timestamp: i64,
    leader_epoch: Option<i32>,
}

/// A batch that could not be inflated or decoded while being delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBatch {
    /// Base offset of the batch.
    pub offset: i64,
    /// What was wrong.
    pub message: String,
}

impl CompletedFetch {
    /// Bytes counted against the prefetch budget.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes of the fetched data on the wire (before decompression).
    pub fn wire_bytes(&self) -> usize {
        self.wire_bytes
    }

    /// Whether records (or batches that may hold deliverable records) remain.
    pub fn has_records(&self) -> bool {
        self.current.is_some() || !self.pending.is_empty()
    }

    /// Whether everything has been handed out.
    pub fn is_drained(&self) -> bool {
        !self.has_records()
    }

    /// When the data held bytes but no complete batch (nothing to make progress with): the
    /// size the first, partial batch announces.
    pub(crate) fn partial_only(&self) -> Option<usize> {
        self.partial_only
    }

    /// Moves up to `max` records at or after `position` into `out`, in strictly increasing
    /// offset order, inflating batches as needed and decoding each record straight into `out`;
    /// returns how many. A batch that fails to inflate or decode is an error (the records moved
    /// before the failure stay in `out`).
    pub fn drain_into(
        &mut self,
        position: i64,
        max: usize,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<usize, CorruptBatch> {
        // Records come out in strictly increasing offset order, whatever the batches claim: a
        // record at or below one already delivered is skipped (batches that overlap or go
        // backwards only come from a broken or hostile broker).
        let mut from = self.fetch_offset.max(position);
        let mut n = 0;
        while n < max {
            if let Some(cur) = &mut self.current {
                match cur.records.next() {
                    Some(Ok(r)) if r.offset >= self.stable_end => self.finish_current(),
                    Some(Ok(r)) if r.offset < from => {}
                    Some(Ok(r)) => {
                        // No overflow: `r.offset < stable_end <= i64::MAX`.
                        from = r.offset + 1;
                        let timestamp = match cur.timestamp_type {
                            TimestampType::LogAppendTime => cur.max_timestamp,
                            TimestampType::CreateTime => r.timestamp,
                        };
                        out.push(ConsumerRecord {
                            topic: self.tp.topic.clone(),
                            partition: self.tp.partition,
                            offset: r.offset,
                            timestamp,
                            timestamp_type: cur.timestamp_type,
                            key: r.key,
                            value: r.value,
                            headers: r.headers,
                            leader_epoch: cur.leader_epoch,
                        });
                        n += 1;
                    }
                    Some(Err(e)) => {
                        let offset = cur.base_offset;
                        self.finish_current();
                        return Err(CorruptBatch {
                            offset,
                            message: e.to_string(),
                        });
                    }
                    None => self.finish_current(),
                }
                continue;
            }
            let Some(batch) = self.pending.pop_front() else {
                break;
            };
            self.inflate(batch)?;
        }
        Ok(n)
    }

    /// Releases the batch being delivered.
    fn finish_current(&mut self) {
        self.current = None;
        self.size -= std::mem::take(&mut self.current_size);
    }

    fn inflate(&mut self, batch: DeflatedBatch) -> Result<(), CorruptBatch> {
        let h = *batch.header();
        let inflated = batch.inflate_with(&self.limits).map_err(|e| CorruptBatch {
            offset: h.base_offset,
            message: e.to_string(),
        })?;
        // An uncompressed batch's records are slices of the fetched bytes, already counted.
        let size = if h.compression == Compression::None {
            0
        } else {
            inflated.records_bytes().len()
        };
        self.current = Some(Box::new(Current {
            records: inflated.records(),
            base_offset: h.base_offset,
            timestamp_type: h.timestamp_type(),
            max_timestamp: h.max_timestamp,
            leader_epoch: (h.partition_leader_epoch >= 0).then_some(h.partition_leader_epoch),
        }));
        self.current_size = size;
        self.size += size;
        Ok(())
    }
}

/// Parses one partition's fetched bytes, keeping records at or after `fetch_offset`.
pub fn parse_partition(
    tp: &TopicPartition,
    fetch_offset: i64,
    data: &PartitionData,
    opts: &ParseOptions,
) -> krust_wire::Result<CompletedFetch> {
    let watermarks = Watermarks {
        high_watermark: data.high_watermark,
        last_stable_offset: data.last_stable_offset,
        log_start_offset: data.log_start_offset,
    };
    let raw = data.records.clone().unwrap_or_default();
    let read_committed = opts.isolation == IsolationLevel::ReadCommitted;
    // Records at or past the LSO are not delivered under read_committed.
    let stable_end = if read_committed && data.last_stable_offset >= 0 {
        data.last_stable_offset
    } else {
        i64::MAX
    };
    // Aborted transactions, by first offset: a producer's batches are skipped from its first
    // offset until its abort marker.
    let mut aborted_starts: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    if read_committed {
        for a in data.aborted_transactions.iter().flatten() {
            aborted_starts
                .entry(a.first_offset)
                .or_default()
                .push(a.producer_id.0);
        }
    }
    let mut aborting: HashSet<i64> = HashSet::new();

    let mut pending = VecDeque::new();
    let mut next_offset = fetch_offset;
    let mut last_epoch = None;
    let wire_bytes = raw.len();
    let mut saw_batch = raw.is_empty();
    let announced = if raw.len() >= 12 {
        let len = i32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
        usize::try_from(len).map_or(0, |l| l.saturating_add(12))
    } else {
        0
    };
    for batch in batches(raw).check_crcs(opts.check_crcs) {
        let batch = batch?;
        saw_batch = true;
        let h = *batch.header();
        if h.base_offset >= stable_end {
            break;
        }
        if h.partition_leader_epoch >= 0 {
            last_epoch = Some(h.partition_leader_epoch);
        }
        // Producers whose aborted transaction starts at or before this batch's last offset.
        while let Some((&first, _)) = aborted_starts.first_key_value() {
            if first > h.last_offset() {
                break;
            }
            let (_, pids) = aborted_starts.pop_first().expect("non-empty");
            aborting.extend(pids);
        }
        let batch_next = h.next_offset().min(stable_end);
        if h.is_control() {
            if read_committed {
                // Control batches are tiny and never compressed in practice: read the marker.
                let inflated = batch.inflate_with(&opts.limits)?;
                if let Some(c) = inflated.control() {
                    if c.kind == ControlRecordType::Abort {
                        aborting.remove(&h.producer_id);
                    }
                }
            }
            next_offset = next_offset.max(batch_next);
            continue;
        }
        next_offset = next_offset.max(batch_next);
        if h.last_offset() < fetch_offset
            || (read_committed && h.is_transactional() && aborting.contains(&h.producer_id))
        {
            continue;
        }
        pending.push_back(batch);
    }
    Ok(CompletedFetch {
        tp: tp.clone(),
        pending,
        current: None,
        current_size: 0,
        fetch_offset,
        stable_end,
        limits: opts.limits,
        next_offset,
        last_epoch,
        watermarks,
        size: wire_bytes,
        wire_bytes,
        partial_only: (!saw_batch).then_some(announced),
    })
}
