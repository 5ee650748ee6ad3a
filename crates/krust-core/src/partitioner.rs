//! Partitioners: which partition a produced record goes to.
//!
//! - [`murmur2`] / [`partition_for_key`]: the Java client's key hashing
//!   (`Utils.toPositive(Utils.murmur2(key)) % numPartitions`), bit for bit, so that keyed records
//!   land where a Java (or librdkafka `murmur2_random`) producer would put them.
//! - [`BuiltinPartitioner`]: the Java default since Kafka 3.3: murmur2 for keyed records, and the
//!   KIP-794 *uniform sticky* partitioner for keyless records (stick to one partition until
//!   `batch.size` bytes went to it, then move to another one chosen at random among those with a
//!   leader).
//! - [`Partitioner`]: the trait for a custom partitioner; returning `None` defers to the built-in
//!   behaviour (as a Java partitioner returning `-1` does since KIP-794).
//!
//! Everything here is deterministic given the seed of the random source.

use std::collections::HashMap;
use std::fmt;

use crate::backoff::SmallRng;

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), as a signed 32-bit value.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's `Utils.toPositive`: clears the sign bit (not `abs`, which would overflow).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition the Java client picks for a (non-null) serialized key among `partitions`.
///
/// Returns 0 when `partitions` is not positive (a topic always has at least one partition; the
/// caller validates metadata before asking).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % partitions
}

/// What a partitioner knows about a topic when it chooses.
#[derive(Debug, Clone, Copy)]
pub struct TopicPartitions<'a> {
    /// Number of partitions of the topic.
    pub count: i32,
    /// Partitions that currently have a leader, in ascending order (may be empty).
    pub available: &'a [i32],
}

/// A custom partitioner.
///
/// Called once per record that has no explicit partition. Return `Some(p)` with
/// `0 <= p < partitions.count` to choose, or `None` to let the built-in partitioner decide (murmur2
/// on the key, or uniform sticky for keyless records). A returned partition outside the range
/// fails the record with an error naming the topic and the partition.
pub trait Partitioner: Send + Sync + fmt::Debug {
    /// Chooses a partition for a record of `topic`.
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: TopicPartitions<'_>,
    ) -> Option<i32>;
}

/// Sticky state for one topic (KIP-794).
#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: i32,
    produced_bytes: usize,
}

/// The Java client's default partitioner (Kafka 3.3+, KIP-794), without the optional adaptive
/// (queue-length weighted) part.
///
/// Keyed records: murmur2 (unless `ignore_keys`, `partitioner.ignore.keys`). Keyless records: the
/// topic's current sticky partition; after each append the caller reports the appended bytes with
/// [`BuiltinPartitioner::record_appended`], and once `batch.size` bytes went to the sticky partition
/// (and its open batch is full), or twice that regardless, the next record picks a new partition at
/// random among those with a leader (all partitions if none has one).
#[derive(Debug)]
pub struct BuiltinPartitioner {
    sticky_batch_size: usize,
    ignore_keys: bool,
    sticky: HashMap<String, Sticky>,
    rng: SmallRng,
}

impl BuiltinPartitioner {
    /// A partitioner switching keyless partitions after `batch_size` bytes; `seed` drives the
    /// random partition choice.
    pub fn new(batch_size: usize, ignore_keys: bool, seed: u64) -> Self {
        Self {
            sticky_batch_size: batch_size.max(1),
            ignore_keys,
            sticky: HashMap::new(),
            rng: SmallRng::new(seed),
        }
    }

    /// Chooses the partition for a record with `key` (`None`: keyless) of `topic`.
    ///
    /// `partitions.count` must be positive.
    pub fn partition(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        partitions: TopicPartitions<'_>,
    ) -> i32 {
        if let (Some(key), false) = (key, self.ignore_keys) {
            return partition_for_key(key, partitions.count);
        }
        if let Some(s) = self.sticky.get(topic) {
            if s.partition < partitions.count {
                return s.partition;
            }
        }
        let p = self.next_partition(partitions);
        self.sticky.insert(
            topic.to_string(),
            Sticky {
                partition: p,
                produced_bytes: 0,
            },
        );
        p
    }

    /// Reports that `bytes` were appended to `partition` of `topic` for a keyless record;
    /// `batch_full` says whether the partition's open batch is now full (Java only switches when
    /// every batch of the partition is full, so as not to leave a half-empty batch behind,
    /// unless twice `batch.size` went to it).
    pub fn record_appended(&mut self, topic: &str, partition: i32, bytes: usize, batch_full: bool) {
        let Some(s) = self.sticky.get_mut(topic) else {
            return;
        };
        if s.partition != partition {
            return;
        }
        s.produced_bytes += bytes;
        if s.produced_bytes >= self.sticky_batch_size.saturating_mul(2)
            || (s.produced_bytes >= self.sticky_batch_size && batch_full)
        {
            // Switch on the next record: forget the sticky partition.
            self.sticky.remove(topic);
        }
    }

    /// The current sticky partition of `topic`, if one was chosen.
    pub fn sticky_partition(&self, topic: &str) -> Option<i32> {
        self.sticky.get(topic).map(|s| s.partition)
    }

    fn next_partition(&mut self, partitions: TopicPartitions<'_>) -> i32 {
        if !partitions.available.is_empty() {
            let i = self.rng.below(partitions.available.len() as u64) as usize;
            partitions.available[i]
        } else {
            self.rng.below(partitions.count.max(1) as u64) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors: apache/kafka `clients/src/test/java/org/apache/kafka/common/utils/
    /// UtilsTest.java`, `testMurmur2`.
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), *want, "{:?}", String::from_utf8_lossy(data));
        }
    }

    /// More Java outputs (generated with the Java client's `Utils.murmur2` by other projects and
    /// checked in as their test data: kafkajs `defaultJava/murmur2.spec`, akka `Murmur2Spec`).
    #[test]
    fn murmur2_matches_more_java_outputs() {
        let cases: &[(&str, i32)] = &[
            ("0", 971027396),
            ("1", -1993445489),
            ("12", 126087238),
            ("123", -267702483),
            ("1234", -1614185708),
            ("12345", -1188365604),
            ("128", -326012175),
            ("2187", -1508407203),
            ("16384", -325739742),
            ("78125", -1654490814),
            ("279936", 1462227128),
            ("823543", -2014198330),
            ("2097152", 607668903),
            ("4782969", -1182699775),
            ("10000000", -1830336757),
            ("19487171", -1603849305),
            ("35831808", -857013643),
            ("62748517", -1167431028),
            ("105413504", -381294639),
            ("170859375", -1658323481),
            ("100:48069", 1009543857),
        ];
        for (s, want) in cases {
            assert_eq!(murmur2(s.as_bytes()), *want, "{s}");
        }
    }

    /// `toPositive(murmur2(key)) % n` for several partition counts (values from a Java-compatible
    /// Go partitioner's test table, movio/go-kafka `murmur2_test.go`, and recomputed from the
    /// hashes above).
    #[test]
    fn partition_for_key_matches_java() {
        let cases: &[(&[u8], i32, [i32; 4])] = &[
            (b"", 275646681, [1, 0, 81, 603]),
            ("⌘".as_bytes(), 39915425, [1, 2, 25, 380]),
            (b"oh no", 939168436, [0, 1, 36, 544]),
            (
                b"c03a3475-3ed6-4ed1-8ae5-1c432da43e73",
                376769867,
                [1, 2, 67, 14],
            ),
        ];
        for (key, positive, parts) in cases {
            assert_eq!(to_positive(murmur2(key)), *positive);
            for (n, want) in [2, 3, 100, 999].iter().zip(parts) {
                assert_eq!(partition_for_key(key, *n), *want, "{key:?} % {n}");
            }
        }
        // Negative hash: toPositive, not abs. murmur2("21") = -973932308.
        assert_eq!(to_positive(-973932308), 1173551340);
        assert_eq!(partition_for_key(b"21", 7), 1173551340 % 7);
        assert_eq!(to_positive(i32::MIN), 0);
    }

    #[test]
    fn keyed_records_use_murmur2_unless_keys_are_ignored() {
        let avail = [0, 1, 2];
        let tp = TopicPartitions {
            count: 3,
            available: &avail,
        };
        let mut p = BuiltinPartitioner::new(100, false, 1);
        assert_eq!(
            p.partition("t", Some(b"oh no"), tp),
            partition_for_key(b"oh no", 3)
        );
        let mut p = BuiltinPartitioner::new(100, true, 1);
        let first = p.partition("t", Some(b"a"), tp);
        // Ignored keys: sticky, so every record goes to the same partition until a switch.
        for k in [b"b", b"c", b"d"] {
            assert_eq!(p.partition("t", Some(k), tp), first);
        }
    }

    #[test]
    fn sticky_switches_after_batch_size_and_spreads_uniformly() {
        let avail = [0, 1, 2, 3];
        let tp = TopicPartitions {
            count: 4,
            available: &avail,
        };
        let mut p = BuiltinPartitioner::new(1000, false, 42);
        let mut counts = [0usize; 4];
        let mut switches = 0;
        let mut last = -1;
        for _ in 0..40_000 {
            let part = p.partition("t", None, tp);
            if part != last {
                switches += 1;
                last = part;
            }
            counts[part as usize] += 1;
            // 100-byte records; batch full every 10 records.
            p.record_appended("t", part, 100, true);
        }
        // A new choice every 10 records (it may pick the same partition again).
        assert!(switches <= 4000 && switches > 2000, "{switches}");
        for c in counts {
            assert!((8_000..12_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn sticky_waits_for_a_full_batch_up_to_twice_batch_size() {
        let avail = [0, 1];
        let tp = TopicPartitions {
            count: 2,
            available: &avail,
        };
        let mut p = BuiltinPartitioner::new(1000, false, 7);
        let first = p.partition("t", None, tp);
        p.record_appended("t", first, 1500, false);
        assert_eq!(p.sticky_partition("t"), Some(first), "batch not full yet");
        p.record_appended("t", first, 500, false);
        assert_eq!(
            p.sticky_partition("t"),
            None,
            "2 x batch.size forces a switch"
        );
    }

    #[test]
    fn sticky_prefers_available_partitions() {
        let avail = [2];
        let tp = TopicPartitions {
            count: 5,
            available: &avail,
        };
        let mut p = BuiltinPartitioner::new(10, false, 3);
        for _ in 0..100 {
            let part = p.partition("t", None, tp);
            assert_eq!(part, 2);
            p.record_appended("t", part, 10, true);
        }
        // No partition available: still picks a valid one.
        let tp = TopicPartitions {
            count: 5,
            available: &[],
        };
        for _ in 0..100 {
            let part = p.partition("u", None, tp);
            assert!((0..5).contains(&part));
            p.record_appended("u", part, 10, true);
        }
    }
}
