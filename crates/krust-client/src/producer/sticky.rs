//! A per-topic mirror of the built-in partitioner's sticky partition (KIP-794), so keyless
//! records skip the partitioner's two hash lookups per record.

use krust_core::partitioner::{BuiltinPartitioner, TopicPartitions};

/// What the driver knows of the built-in partitioner's sticky partition for a topic. The
/// partitioner behaves exactly as if asked for every record: its state is only ever changed
/// through this mirror, and its switch rule is mirrored (after `batch.size` bytes the
/// partition is left once its batch is full, or after twice `batch.size`); the bytes are
/// reported to it in one call when it switches, as until then it would not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StickyMirror {
    /// Not known: ask the partitioner for every record (a topic it may have seen before).
    Unknown,
    /// The partitioner has no sticky partition for the topic: the next keyless record gets a
    /// new one, with nothing produced to it yet.
    Fresh,
    /// The partitioner's sticky partition, the bytes appended to it since it was chosen, and
    /// how many of those it has not been told about yet.
    Synced {
        partition: i32,
        produced: usize,
        unreported: usize,
    },
}

impl StickyMirror {
    /// The mirror for a topic the driver starts producing to.
    pub(super) fn new(partitioner: &BuiltinPartitioner, topic: &str) -> Self {
        if partitioner.sticky_partition(topic).is_some() {
            StickyMirror::Unknown
        } else {
            StickyMirror::Fresh
        }
    }

    /// The partition for a keyless record (sticky), as `partitioner.partition` would choose it.
    pub(super) fn partition(
        &mut self,
        partitioner: &mut BuiltinPartitioner,
        topic: &str,
        key: Option<&[u8]>,
        parts: TopicPartitions<'_>,
    ) -> i32 {
        match *self {
            // The partitioner would answer this without changing anything.
            StickyMirror::Synced { partition, .. } if partition < parts.count => partition,
            mirror => {
                let x = partitioner.partition(topic, key, parts);
                if mirror != StickyMirror::Unknown {
                    // Fresh, or its partition is gone: it chose `x` anew, nothing produced.
                    *self = StickyMirror::Synced {
                        partition: x,
                        produced: 0,
                        unreported: 0,
                    };
                }
                x
            }
        }
    }

    /// `size` bytes of a keyless record went to `partition`; `batch_full` as the accumulator
    /// said. `batch_size` is the one the partitioner was built with.
    pub(super) fn appended(
        &mut self,
        partitioner: &mut BuiltinPartitioner,
        batch_size: usize,
        topic: &str,
        partition: i32,
        size: usize,
        batch_full: bool,
    ) {
        let threshold = batch_size.max(1);
        match self {
            StickyMirror::Synced {
                partition: sp,
                produced,
                unreported,
            } if *sp == partition => {
                *produced += size;
                *unreported += size;
                if *produced >= threshold.saturating_mul(2)
                    || (*produced >= threshold && batch_full)
                {
                    // It switches now (the same rule), on the bytes it was not told about
                    // yet: before this record it could not have.
                    partitioner.record_appended(
                        topic,
                        partition,
                        std::mem::take(unreported),
                        batch_full,
                    );
                    *self = StickyMirror::Fresh;
                }
            }
            _ => {
                partitioner.record_appended(topic, partition, size, batch_full);
                if partitioner.sticky_partition(topic).is_none() {
                    *self = StickyMirror::Fresh;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator for the test's inputs.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    /// The mirrored partitioner and one asked for every record choose the same partitions,
    /// record after record, through switches, partition-count changes and record sizes around
    /// `batch.size`.
    #[test]
    fn the_mirror_chooses_exactly_what_the_partitioner_would() {
        for seed in 0..50u64 {
            let batch_size = 1000 + (seed as usize * 37) % 3000;
            let mut direct = BuiltinPartitioner::new(batch_size, false, seed);
            let mut mirrored = BuiltinPartitioner::new(batch_size, false, seed);
            let mut mirror = StickyMirror::new(&mirrored, "t");
            assert_eq!(mirror, StickyMirror::Fresh);
            let mut rng = Lcg(seed);
            // Open batch bytes per partition, to say when a batch is full.
            let mut open = [0usize; 8];
            let mut count = 6i32;
            let mut synced = 0;
            for i in 0..5000 {
                if i == 2500 {
                    count = 3; // partitions 3..5 disappear (a partition-count change)
                }
                let available: Vec<i32> = (0..count).collect();
                let parts = TopicPartitions {
                    count,
                    available: &available,
                };
                let size = 1 + (rng.next() as usize % (batch_size / 3));
                let a = direct.partition("t", None, parts);
                let b = mirror.partition(&mut mirrored, "t", None, parts);
                assert_eq!(a, b, "seed {seed} record {i}");
                let o = &mut open[a as usize];
                // A batch closes when the record does not fit, or (linger) at random.
                if (*o + size > batch_size && *o > 0) || rng.next().is_multiple_of(16) {
                    *o = 0;
                }
                *o += size;
                let batch_full = *o + size > batch_size;
                direct.record_appended("t", a, size, batch_full);
                mirror.appended(&mut mirrored, batch_size, "t", b, size, batch_full);
                if matches!(mirror, StickyMirror::Synced { .. }) {
                    synced += 1;
                }
                assert_eq!(
                    direct.sticky_partition("t"),
                    match mirror {
                        StickyMirror::Synced { partition, .. } => Some(partition),
                        _ => mirrored.sticky_partition("t"),
                    },
                    "seed {seed} record {i}"
                );
            }
            assert!(synced > 4000, "the fast path was taken ({synced})");
        }
    }

    #[test]
    fn a_topic_the_partitioner_already_knows_starts_unknown_and_resyncs_after_a_switch() {
        let mut p = BuiltinPartitioner::new(100, false, 7);
        let available = [0, 1, 2];
        let parts = TopicPartitions {
            count: 3,
            available: &available,
        };
        let first = p.partition("t", None, parts);
        let mut mirror = StickyMirror::new(&p, "t");
        assert_eq!(mirror, StickyMirror::Unknown);
        assert_eq!(mirror.partition(&mut p, "t", None, parts), first);
        mirror.appended(&mut p, 100, "t", first, 150, true);
        assert_eq!(mirror, StickyMirror::Fresh, "the partitioner switched");
        let next = mirror.partition(&mut p, "t", None, parts);
        assert_eq!(
            mirror,
            StickyMirror::Synced {
                partition: next,
                produced: 0,
                unreported: 0
            }
        );
    }
}
