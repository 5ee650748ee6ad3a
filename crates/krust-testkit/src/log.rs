//! The in-memory log of one partition: batches as received (restamped with their offsets),
//! high watermark, log start offset, last stable offset, leader-epoch history, per-producer
//! idempotence state with Kafka's 5-batch window, open transactions and the aborted list.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

use crate::batch::{self, BatchHeader};
use crate::errors as ec;

/// How many recent batches per producer the broker remembers for duplicate detection.
pub const DEDUP_WINDOW: usize = 5;

/// A batch in the log.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Header fields as sent.
    pub header: BatchHeader,
    /// The bytes as served to fetchers.
    pub bytes: Bytes,
}

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy)]
struct SeqEntry {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

/// What a partition remembers about one producer id.
#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<SeqEntry>,
    /// First offset of this producer's open transaction on this partition.
    txn_first_offset: Option<i64>,
}

/// An aborted transaction, as reported to read_committed fetchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// First offset of the transaction on this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

/// Outcome of an append attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Append {
    /// Appended at this base offset.
    Appended(i64),
    /// A duplicate of a recent batch, originally appended at this base offset.
    Duplicate(i64),
    /// Rejected with a Kafka error code.
    Rejected(i16),
}

/// The sequence-number policy of the fake's partitions.
#[derive(Debug, Clone, Copy)]
pub struct SeqPolicy {
    /// The sequence a producer's first batch on a partition (or first batch of a new epoch)
    /// must carry. Kafka: 0. Set near `i32::MAX` to test wrap-around.
    pub first_sequence: i32,
}

/// One partition's log.
#[derive(Debug, Clone)]
pub struct PartitionLog {
    /// Stored batches, in offset order.
    pub batches: Vec<StoredBatch>,
    /// First offset still readable.
    pub log_start: i64,
    /// Next offset to assign (log end offset); the fake's high watermark equals it.
    pub end: i64,
    /// `(epoch, start offset)` history, oldest first.
    pub epochs: Vec<(i32, i64)>,
    producers: HashMap<i64, ProducerEntry>,
    /// Aborted transactions, in marker order.
    pub aborted: Vec<AbortedTxn>,
    /// Open transactions by first offset (for the LSO).
    open_txns: BTreeMap<i64, i64>,
    /// Total bytes stored.
    pub size: usize,
}

impl PartitionLog {
    /// An empty log led at `epoch`.
    pub fn new(epoch: i32) -> Self {
        PartitionLog {
            batches: Vec::new(),
            log_start: 0,
            end: 0,
            epochs: vec![(epoch, 0)],
            producers: HashMap::new(),
            aborted: Vec::new(),
            open_txns: BTreeMap::new(),
            size: 0,
        }
    }

    /// High watermark (every append is immediately replicated in the fake).
    pub fn high_watermark(&self) -> i64 {
        self.end
    }

    /// Last stable offset: the first offset of the oldest open transaction, else the HW.
    pub fn last_stable(&self) -> i64 {
        self.open_txns
            .keys()
            .next()
            .copied()
            .unwrap_or(self.end)
            .max(self.log_start)
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.epochs.last().map(|e| e.0).unwrap_or(0)
    }

    /// Records a new leader epoch starting at the log end.
    pub fn bump_epoch(&mut self, epoch: i32) {
        self.epochs.push((epoch, self.end));
    }

    /// Forgets a producer's state (as after retention), for UNKNOWN_PRODUCER_ID tests.
    pub fn forget_producer(&mut self, producer_id: i64) {
        self.producers.remove(&producer_id);
    }

    /// Validates the idempotence fields of a batch against the producer state without changing
    /// anything.
    fn check_sequence(&self, h: &BatchHeader, policy: SeqPolicy) -> Result<Option<i64>, i16> {
        if h.producer_id < 0 {
            return Ok(None);
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            if h.base_sequence >= 0 && h.base_sequence != policy.first_sequence {
                return Err(ec::UNKNOWN_PRODUCER_ID);
            }
            return Ok(None);
        };
        if h.producer_epoch < p.epoch {
            return Err(ec::INVALID_PRODUCER_EPOCH);
        }
        if h.base_sequence < 0 {
            return Ok(None);
        }
        if h.producer_epoch > p.epoch || p.recent.is_empty() {
            if h.base_sequence != policy.first_sequence {
                return Err(ec::OUT_OF_ORDER_SEQUENCE_NUMBER);
            }
            return Ok(None);
        }
        let last_seq = h.last_sequence();
        for e in &p.recent {
            if e.first_seq == h.base_sequence && e.last_seq == last_seq {
                return Ok(Some(e.base_offset));
            }
        }
        let newest = p.recent.back().expect("not empty");
        let expected = if newest.last_seq == i32::MAX {
            0
        } else {
            newest.last_seq + 1
        };
        if h.base_sequence == expected {
            return Ok(None);
        }
        let oldest = p.recent.front().expect("not empty");
        // Below the window (and not a wrap-around continuation): an old duplicate whose
        // offset the broker no longer knows.
        let behind = seq_distance(h.base_sequence, oldest.first_seq);
        if behind > 0 && behind < i32::MAX / 2 {
            return Err(ec::DUPLICATE_SEQUENCE_NUMBER);
        }
        Err(ec::OUT_OF_ORDER_SEQUENCE_NUMBER)
    }

    /// Appends one validated batch (producer checks included); `leader_epoch` is stamped into it.
    pub fn append(
        &mut self,
        h: &BatchHeader,
        bytes: &Bytes,
        leader_epoch: i32,
        policy: SeqPolicy,
    ) -> Append {
        match self.check_sequence(h, policy) {
            Err(code) => return Append::Rejected(code),
            Ok(Some(original)) => return Append::Duplicate(original),
            Ok(None) => {}
        }
        let base = self.end;
        self.push(h, bytes, leader_epoch);
        if h.producer_id >= 0 {
            let p = self.producers.entry(h.producer_id).or_default();
            if h.producer_epoch != p.epoch {
                p.recent.clear();
                p.epoch = h.producer_epoch;
            }
            if h.base_sequence >= 0 {
                p.recent.push_back(SeqEntry {
                    first_seq: h.base_sequence,
                    last_seq: h.last_sequence(),
                    base_offset: base,
                });
                while p.recent.len() > DEDUP_WINDOW {
                    p.recent.pop_front();
                }
            }
            if h.is_transactional() && p.txn_first_offset.is_none() {
                p.txn_first_offset = Some(base);
                self.open_txns.insert(base, h.producer_id);
            }
        }
        Append::Appended(base)
    }

    fn push(&mut self, h: &BatchHeader, bytes: &Bytes, leader_epoch: i32) {
        let base = self.end;
        let stored = batch::restamp(bytes, base, leader_epoch);
        let last = base + i64::from(h.last_offset_delta);
        self.size += stored.len();
        let mut header = *h;
        header.base_offset = base;
        self.batches.push(StoredBatch {
            base_offset: base,
            last_offset: last,
            header,
            bytes: stored,
        });
        self.end = last + 1;
    }

    /// Writes a transaction marker for `producer_id`, closing its open transaction here.
    /// Returns the marker's offset.
    pub fn write_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> i64 {
        let bytes = batch::control_batch(producer_id, epoch, commit, 0, now_ms);
        let h = batch::parse_header(&bytes).expect("own control batch is valid");
        let offset = self.end;
        self.push(&h, &bytes, leader_epoch);
        let p = self.producers.entry(producer_id).or_default();
        if epoch > p.epoch {
            p.epoch = epoch;
            p.recent.clear();
        }
        if let Some(first) = p.txn_first_offset.take() {
            self.open_txns.remove(&first);
            if !commit {
                self.aborted.push(AbortedTxn {
                    producer_id,
                    first_offset: first,
                    last_offset: offset,
                });
            }
        }
        offset
    }

    /// Index of the first batch containing or following `offset`.
    pub fn batch_index(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.last_offset < offset)
    }

    /// Moves the log start forward to `offset`, dropping whole batches below it.
    pub fn delete_before(&mut self, offset: i64) {
        if offset <= self.log_start {
            return;
        }
        self.log_start = offset;
        let keep_from = self.batches.partition_point(|b| b.last_offset < offset);
        for b in self.batches.drain(..keep_from) {
            self.size -= b.bytes.len();
        }
        self.aborted.retain(|a| a.last_offset >= offset);
    }

    /// Earliest offset whose record timestamp is at least `ts`, with that timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Option<(i64, i64)> {
        for b in &self.batches {
            if b.header.is_control() || b.header.max_timestamp < ts {
                continue;
            }
            match batch::record_timestamps(&b.bytes, &b.header) {
                Some(records) => {
                    for (delta, t) in records {
                        let off = b.base_offset + i64::from(delta);
                        if t >= ts && off >= self.log_start {
                            return Some((off, t));
                        }
                    }
                }
                None => return Some((b.base_offset.max(self.log_start), b.header.max_timestamp)),
            }
        }
        None
    }

    /// Offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for b in &self.batches {
            if b.header.is_control() {
                continue;
            }
            if best.is_some_and(|(_, t)| b.header.max_timestamp <= t) {
                continue;
            }
            let off = batch::record_timestamps(&b.bytes, &b.header)
                .and_then(|r| {
                    r.into_iter()
                        .find(|(_, t)| *t == b.header.max_timestamp)
                        .map(|(d, _)| b.base_offset + i64::from(d))
                })
                .unwrap_or(b.last_offset);
            best = Some((off, b.header.max_timestamp));
        }
        best
    }

    /// `(epoch, end offset)` answering OffsetForLeaderEpoch for `requested`.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        let mut found = None;
        for (i, (epoch, _)) in self.epochs.iter().enumerate() {
            if *epoch <= requested {
                found = Some(i);
            }
        }
        match found {
            None => (-1, -1),
            Some(i) => {
                let end = self
                    .epochs
                    .get(i + 1)
                    .map(|(_, start)| *start)
                    .unwrap_or(self.end);
                (self.epochs[i].0, end)
            }
        }
    }
}

/// `a - b` on the wrapping sequence space, as a signed distance.
fn seq_distance(a: i32, b: i32) -> i32 {
    let d = i64::from(b) - i64::from(a);
    if d < 0 {
        (d + i64::from(i32::MAX) + 1) as i32
    } else {
        d as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> (BatchHeader, Bytes) {
        let vals: Vec<&[u8]> = (0..n).map(|_| &b"x"[..]).collect();
        let b = batch::data_batch(&vals, 0, pid, epoch, seq, false);
        (batch::parse_header(&b).unwrap(), b)
    }

    const P: SeqPolicy = SeqPolicy { first_sequence: 0 };

    #[test]
    fn five_batch_window() {
        let mut log = PartitionLog::new(0);
        for i in 0..7 {
            let (h, b) = batch(1, 0, i * 2, 2);
            assert_eq!(log.append(&h, &b, 0, P), Append::Appended(i64::from(i) * 2));
        }
        // last five batches start at seq 4,6,8,10,12
        let (h, b) = batch(1, 0, 6, 2);
        assert_eq!(log.append(&h, &b, 0, P), Append::Duplicate(6));
        let (h, b) = batch(1, 0, 2, 2);
        assert_eq!(
            log.append(&h, &b, 0, P),
            Append::Rejected(ec::DUPLICATE_SEQUENCE_NUMBER)
        );
        let (h, b) = batch(1, 0, 20, 2);
        assert_eq!(
            log.append(&h, &b, 0, P),
            Append::Rejected(ec::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        let (h, b) = batch(2, 0, 3, 1);
        assert_eq!(
            log.append(&h, &b, 0, P),
            Append::Rejected(ec::UNKNOWN_PRODUCER_ID)
        );
        let (h, b) = batch(1, 1, 0, 1);
        assert_eq!(log.append(&h, &b, 0, P), Append::Appended(14));
        let (h, b) = batch(1, 0, 16, 1);
        assert_eq!(
            log.append(&h, &b, 0, P),
            Append::Rejected(ec::INVALID_PRODUCER_EPOCH)
        );
    }

    #[test]
    fn sequence_wraps_around() {
        let policy = SeqPolicy {
            first_sequence: i32::MAX - 1,
        };
        let mut log = PartitionLog::new(0);
        let (h, b) = batch(1, 0, i32::MAX - 1, 3);
        assert_eq!(log.append(&h, &b, 0, policy), Append::Appended(0));
        let (h, b) = batch(1, 0, 1, 1);
        assert_eq!(log.append(&h, &b, 0, policy), Append::Appended(3));
    }

    #[test]
    fn lso_and_aborted() {
        let mut log = PartitionLog::new(0);
        let vals: Vec<&[u8]> = vec![b"a"];
        let t = batch::data_batch(&vals, 0, 5, 0, 0, true);
        let h = batch::parse_header(&t).unwrap();
        log.append(&h, &t, 0, P);
        assert_eq!(log.last_stable(), 0);
        assert_eq!(log.high_watermark(), 1);
        let m = log.write_marker(5, 0, false, 0, 0);
        assert_eq!(m, 1);
        assert_eq!(log.last_stable(), 2);
        assert_eq!(
            log.aborted,
            vec![AbortedTxn {
                producer_id: 5,
                first_offset: 0,
                last_offset: 1
            }]
        );
    }
}
