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
    batches, Compression, ControlRecordType, DecompressLimits, RecordHeader, TimestampType,
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
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            isolation: IsolationLevel::ReadUncommitted,
            limits: DecompressLimits::default(),
        }
    }
}

/// The records one fetch returned for one partition, waiting to be polled.
#[derive(Debug)]
pub struct CompletedFetch {
    /// The partition.
    pub tp: TopicPartition,
    /// Records not yet handed out, in offset order.
    records: VecDeque<ConsumerRecord>,
    /// The offset to fetch after this data (past control batches and skipped records too).
    pub next_offset: i64,
    /// Leader epoch of the last batch seen, if any.
    pub last_epoch: Option<i32>,
    /// Watermarks reported with the data.
    pub watermarks: Watermarks,
    /// Bytes accounted against the prefetch budget (held until the fetch is fully polled, as
    /// the records share its buffers).
    size: usize,
    /// Bytes of the fetched data on the wire (before decompression).
    wire_bytes: usize,
    /// When the data held bytes but not one complete batch: the size the partial batch
    /// announces (or 0 if not even its length field arrived).
    partial_only: Option<usize>,
}

/// Approximate per-record overhead of a [`ConsumerRecord`], counted with the bytes.
const RECORD_OVERHEAD: usize = std::mem::size_of::<ConsumerRecord>();

impl CompletedFetch {
    /// Bytes counted against the prefetch budget.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes of the fetched data on the wire (before decompression).
    pub fn wire_bytes(&self) -> usize {
        self.wire_bytes
    }

    /// Whether records remain.
    pub fn has_records(&self) -> bool {
        !self.records.is_empty()
    }

    /// Whether every record has been handed out.
    pub fn is_drained(&self) -> bool {
        self.records.is_empty()
    }

    /// Records remaining.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no records remain.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// When the data held bytes but no complete batch (nothing to make progress with): the
    /// size the first, partial batch announces.
    pub(crate) fn partial_only(&self) -> Option<usize> {
        self.partial_only
    }

    /// Moves up to `max` records at or after `position` into `out`; returns how many.
    pub fn drain_into(
        &mut self,
        position: i64,
        max: usize,
        out: &mut Vec<ConsumerRecord>,
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Some(r) = self.records.pop_front() else {
                break;
            };
            if r.offset < position {
                continue;
            }
            out.push(r);
            n += 1;
        }
        n
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

    let mut records = VecDeque::new();
    let mut next_offset = fetch_offset;
    let mut last_epoch = None;
    let mut size = raw.len();
    let wire_bytes = raw.len();
    let mut saw_batch = raw.is_empty();
    let announced = if raw.len() >= 12 {
        let len = i32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
        usize::try_from(len).map_or(0, |l| l.saturating_add(12))
    } else {
        0
    };
    let mut iter = batches(raw);
    for batch in iter.by_ref() {
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
        if h.is_control() {
            if read_committed {
                let inflated = batch.inflate_with(&opts.limits)?;
                if let Some(c) = inflated.control() {
                    if c.kind == ControlRecordType::Abort {
                        aborting.remove(&h.producer_id);
                    }
                }
            }
            next_offset = next_offset.max(h.next_offset().min(stable_end));
            continue;
        }
        if h.last_offset() < fetch_offset {
            next_offset = next_offset.max(h.next_offset());
            continue;
        }
        if read_committed && h.is_transactional() && aborting.contains(&h.producer_id) {
            next_offset = next_offset.max(h.next_offset().min(stable_end));
            continue;
        }
        let inflated = batch.inflate_with(&opts.limits)?;
        if h.compression != Compression::None {
            size += inflated.records_bytes().len();
        }
        let timestamp_type = h.timestamp_type();
        let leader_epoch = (h.partition_leader_epoch >= 0).then_some(h.partition_leader_epoch);
        let mut last = None;
        for r in inflated.records() {
            let r = r?;
            if r.offset >= stable_end {
                break;
            }
            last = Some(r.offset);
            if r.offset < fetch_offset {
                continue;
            }
            size += RECORD_OVERHEAD;
            let timestamp = match timestamp_type {
                TimestampType::LogAppendTime => h.max_timestamp,
                TimestampType::CreateTime => r.timestamp,
            };
            records.push_back(ConsumerRecord {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: r.offset,
                timestamp,
                timestamp_type,
                key: r.key,
                value: r.value,
                headers: r.headers,
                leader_epoch,
            });
        }
        let batch_next = if stable_end == i64::MAX {
            h.next_offset()
        } else {
            h.next_offset().min(stable_end)
        };
        next_offset = next_offset.max(batch_next.max(last.map_or(0, |o| o + 1)));
    }
    Ok(CompletedFetch {
        tp: tp.clone(),
        records,
        next_offset,
        last_epoch,
        watermarks,
        size,
        wire_bytes,
        partial_only: (!saw_batch).then_some(announced),
    })
}
