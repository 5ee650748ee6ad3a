//! Unit tests of the fetch state machine, driven with hand-built responses and a virtual clock.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use krust_wire::kafka_protocol::messages::fetch_response::{AbortedTransaction, PartitionData};
use krust_wire::kafka_protocol::messages::ProducerId;
use krust_wire::record::{
    encode_control_batch, BatchBuilder, Compression, ControlRecord, ControlRecordType, RecordHeader,
};

use super::*;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

/// A batch of `n` records starting at `base` with values "v<offset>".
fn batch(base: i64, n: i64, codec: Compression) -> Bytes {
    batch_with(base, n, codec, -1, false, 5)
}

fn batch_with(base: i64, n: i64, codec: Compression, pid: i64, txn: bool, epoch: i32) -> Bytes {
    let mut b = BatchBuilder::new(codec)
        .with_base_offset(base)
        .with_partition_leader_epoch(epoch);
    for i in 0..n {
        let o = base + i;
        b.push(
            1_000 + o,
            Some(format!("k{o}").as_bytes()),
            Some(format!("v{o}").as_bytes()),
            &[RecordHeader::new("h", Some(Bytes::from(format!("{o}"))))],
        )
        .unwrap();
    }
    b.finish(
        pid,
        if pid >= 0 { 0 } else { -1 },
        if pid >= 0 { 0 } else { -1 },
        txn,
    )
    .unwrap()
}

fn concat(parts: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for p in parts {
        out.extend_from_slice(p);
    }
    out.freeze()
}

fn data(p: i32, hw: i64, records: Bytes) -> PartitionData {
    let mut d = PartitionData::default();
    d.partition_index = p;
    d.high_watermark = hw;
    d.last_stable_offset = hw;
    d.log_start_offset = 0;
    d.records = Some(records);
    d
}

fn error(p: i32, code: ErrorCode) -> PartitionData {
    let mut d = PartitionData::default();
    d.partition_index = p;
    d.error_code = code.0;
    d.high_watermark = -1;
    d
}

/// Runs one fetch round for `node`, answering each planned partition with `answer`.
fn round(
    f: &mut Fetcher,
    node: NodeId,
    now: Instant,
    answer: impl Fn(&PlannedPartition) -> PartitionData,
) -> Option<Followup> {
    let plan = f.plan_fetch(node, now)?;
    let opts = ParseOptions {
        isolation: f.config().isolation,
        check_crcs: f.config().check_crcs,
        ..ParseOptions::default()
    };
    let outcomes = plan
        .partitions
        .iter()
        .map(|pp| (pp.tp.clone(), partition_outcome(pp, &answer(pp), &opts)))
        .collect();
    Some(f.handle_fetch(&plan, outcomes, now))
}

fn ready(start: StartOffset) -> (Fetcher, Instant) {
    let mut f = Fetcher::new(FetchConfig::default());
    f.assign(tp(0), start);
    f.handle_leader(&tp(0), Some(1), 0);
    (f, Instant::now())
}

fn offsets(rs: &[ConsumerRecord]) -> Vec<i64> {
    rs.iter().map(|r| r.offset).collect()
}

#[test]
fn fetches_and_delivers_in_order_skipping_records_before_the_position() {
    let (mut f, now) = ready(StartOffset::Offset(3));
    let plan = f.plan_fetch(1, now).unwrap();
    assert_eq!(plan.partitions[0].fetch_offset, 3);
    assert!(
        f.plan_fetch(1, now).is_none(),
        "one fetch in flight per partition"
    );
    let opts = ParseOptions::default();
    let d = data(
        0,
        10,
        concat(&[
            batch(0, 5, Compression::None),
            batch(5, 5, Compression::Lz4),
        ]),
    );
    let out = f.handle_fetch(
        &plan,
        vec![(tp(0), partition_outcome(&plan.partitions[0], &d, &opts))],
        now,
    );
    assert!(out.data_ready);
    let mut rs = Vec::new();
    assert_eq!(f.poll_records(4, &mut rs), 4);
    assert_eq!(offsets(&rs), vec![3, 4, 5, 6]);
    assert_eq!(f.position(&tp(0)).unwrap().offset, 7);
    let r = &rs[0];
    assert_eq!(r.key.as_deref(), Some(&b"k3"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"v3"[..]));
    assert_eq!(r.timestamp, 1_003);
    assert_eq!(r.headers[0].value.as_deref(), Some(&b"3"[..]));
    assert_eq!(r.leader_epoch, Some(5));
    rs.clear();
    assert_eq!(f.poll_records(100, &mut rs), 3);
    assert_eq!(offsets(&rs), vec![7, 8, 9]);
    assert_eq!(
        f.position(&tp(0)).unwrap(),
        FetchCursor {
            offset: 10,
            leader_epoch: Some(5)
        }
    );
    assert_eq!(f.buffered_bytes(), 0);
    assert!(f.is_at_end(&tp(0)));
    assert_eq!(f.take_eof(), vec![tp(0)]);
    assert!(f.take_eof().is_empty(), "reported once");
    // The next fetch continues at 10.
    assert_eq!(f.plan_fetch(1, now).unwrap().partitions[0].fetch_offset, 10);
}

#[test]
fn every_codec_decodes() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let (mut f, now) = ready(StartOffset::Offset(0));
        round(&mut f, 1, now, |_| data(0, 20, batch(0, 20, codec))).unwrap();
        let mut rs = Vec::new();
        f.poll_records(100, &mut rs);
        assert_eq!(offsets(&rs), (0..20).collect::<Vec<_>>(), "{codec:?}");
        assert_eq!(rs[19].value.as_deref(), Some(&b"v19"[..]));
    }
}

#[test]
fn control_batches_are_skipped_and_advance_the_position() {
    let (mut f, now) = ready(StartOffset::Offset(0));
    let marker = ControlRecord {
        version: 0,
        kind: ControlRecordType::Commit,
        coordinator_epoch: Some(0),
    };
    let records = concat(&[
        batch_with(0, 3, Compression::None, 7, true, 0),
        encode_control_batch(3, 0, 7, 0, marker).unwrap(),
    ]);
    round(&mut f, 1, now, |_| data(0, 4, records.clone())).unwrap();
    let mut rs = Vec::new();
    f.poll_records(100, &mut rs);
    assert_eq!(offsets(&rs), vec![0, 1, 2]);
    assert_eq!(f.position(&tp(0)).unwrap().offset, 4, "past the marker");

    // A response holding only a marker moves the position without delivering anything.
    let (mut f, now) = ready(StartOffset::Offset(3));
    let only_marker = encode_control_batch(3, 0, 7, 0, marker).unwrap();
    round(&mut f, 1, now, |_| data(0, 4, only_marker.clone())).unwrap();
    assert!(!f.has_records());
    assert_eq!(f.position(&tp(0)).unwrap().offset, 4);
}

#[test]
fn read_committed_drops_aborted_transactions_and_stops_at_the_lso() {
    let config = FetchConfig {
        isolation: IsolationLevel::ReadCommitted,
        ..FetchConfig::default()
    };
    let mut f = Fetcher::new(config);
    f.assign(tp(0), StartOffset::Offset(0));
    f.handle_leader(&tp(0), Some(1), 0);
    let now = Instant::now();
    let abort = ControlRecord {
        version: 0,
        kind: ControlRecordType::Abort,
        coordinator_epoch: Some(0),
    };
    // 0..2 aborted (pid 7), marker at 2, 3..5 committed-or-plain, 5..7 beyond the LSO.
    let records = concat(&[
        batch_with(0, 2, Compression::None, 7, true, 0),
        encode_control_batch(2, 0, 7, 0, abort).unwrap(),
        batch(3, 2, Compression::None),
        batch(5, 2, Compression::None),
    ]);
    round(&mut f, 1, now, |_| {
        let mut d = data(0, 7, records.clone());
        d.last_stable_offset = 5;
        let mut a = AbortedTransaction::default();
        a.producer_id = ProducerId(7);
        a.first_offset = 0;
        d.aborted_transactions = Some(vec![a]);
        d
    })
    .unwrap();
    let mut rs = Vec::new();
    f.poll_records(100, &mut rs);
    assert_eq!(offsets(&rs), vec![3, 4]);
    assert_eq!(f.position(&tp(0)).unwrap().offset, 5);
    assert!(f.is_at_end(&tp(0)), "at the LSO");
    assert_eq!(f.plan_fetch(1, now).unwrap().partitions[0].fetch_offset, 5);
}

#[test]
fn seek_drops_buffered_records_and_ignores_the_late_response() {
    let (mut f, now) = ready(StartOffset::Offset(0));
    round(&mut f, 1, now, |_| {
        data(0, 10, batch(0, 10, Compression::None))
    })
    .unwrap();
    assert!(f.buffered_bytes() > 0);
    let plan = f.plan_fetch(1, now).unwrap();
    assert!(f.seek(&tp(0), StartOffset::Offset(2)));
    assert_eq!(f.buffered_bytes(), 0);
    assert!(!f.has_records());
    // The response to the fetch planned before the seek is stale.
    let d = data(0, 20, batch(10, 10, Compression::None));
    let out = f.handle_fetch(
        &plan,
        vec![(
            tp(0),
            partition_outcome(&plan.partitions[0], &d, &ParseOptions::default()),
        )],
        now,
    );
    assert!(!out.data_ready);
    assert_eq!(f.reserved_bytes(), 0);
    round(&mut f, 1, now, |pp| {
        assert_eq!(pp.fetch_offset, 2);
        data(0, 10, batch(0, 10, Compression::None))
    })
    .unwrap();
    let mut rs = Vec::new();
    f.poll_records(100, &mut rs);
    assert_eq!(offsets(&rs), (2..10).collect::<Vec<_>>());
}

#[test]
fn pause_stops_fetching_and_delivery_until_resume() {
    let (mut f, now) = ready(StartOffset::Offset(0));
    round(&mut f, 1, now, |_| {
        data(0, 10, batch(0, 5, Compression::None))
    })
    .unwrap();
    f.pause(&tp(0));
    assert!(f.plan_fetch(1, now).is_none());
    let mut rs = Vec::new();
    assert_eq!(f.poll_records(100, &mut rs), 0);
    f.resume(&tp(0));
    assert_eq!(f.poll_records(100, &mut rs), 5);
    assert!(f.plan_fetch(1, now).is_some());
}

#[test]
fn prefetch_is_bounded_by_the_budget() {
    let config = FetchConfig {
        max_prefetch_bytes: 4096,
        ..FetchConfig::default()
    };
    let mut f = Fetcher::new(config);
    for p in 0..2 {
        f.assign(tp(p), StartOffset::Offset(0));
        f.handle_leader(&tp(p), Some(1), 0);
    }
    let now = Instant::now();
    let plan = f.plan_fetch(1, now).unwrap();
    assert!(plan.max_bytes <= 4096);
    assert_eq!(f.reserved_bytes(), plan.max_bytes as usize);
    let mut next = 0;
    let answer = |pp: &PlannedPartition| {
        data(
            pp.tp.partition,
            1_000,
            batch(pp.fetch_offset, 200, Compression::None),
        )
    };
    let outcomes = plan
        .partitions
        .iter()
        .map(|pp| {
            (
                pp.tp.clone(),
                partition_outcome(pp, &answer(pp), &ParseOptions::default()),
            )
        })
        .collect();
    f.handle_fetch(&plan, outcomes, now);
    assert!(f.buffered_bytes() >= 4096, "{}", f.buffered_bytes());
    assert!(f.is_budget_exhausted());
    assert!(f.plan_fetch(1, now).is_none(), "budget exhausted: no fetch");
    // Draining one partition's data frees budget.
    let mut rs = Vec::new();
    while f.is_budget_exhausted() {
        rs.clear();
        next += f.poll_records(50, &mut rs);
    }
    assert!(next > 0);
    assert!(f.plan_fetch(1, now).is_some());
}

#[test]
fn offset_out_of_range_follows_auto_offset_reset() {
    for (policy, expect) in [
        (OffsetReset::Earliest, Some(StartOffset::Earliest)),
        (OffsetReset::Latest, Some(StartOffset::Latest)),
        (OffsetReset::None, None),
    ] {
        let config = FetchConfig {
            offset_reset: policy,
            ..FetchConfig::default()
        };
        let mut f = Fetcher::new(config);
        f.assign(tp(0), StartOffset::Offset(50));
        f.handle_leader(&tp(0), Some(1), 0);
        let now = Instant::now();
        let out = round(&mut f, 1, now, |_| error(0, ErrorCode::OFFSET_OUT_OF_RANGE)).unwrap();
        assert_eq!(
            out.lookup_needed,
            expect.is_some(),
            "the driver is woken for a reset"
        );
        let lookups = f.poll_lookups(now);
        match expect {
            Some(start) => {
                assert_eq!(lookups.len(), 1);
                assert_eq!(lookups[0].partitions[0].1, start);
                assert!(f.take_errors().is_empty());
                f.handle_lookup(
                    lookups[0].token,
                    &tp(0),
                    LookupResult::Found {
                        offset: 7,
                        leader_epoch: Some(0),
                    },
                    now,
                );
                assert_eq!(f.position(&tp(0)).unwrap().offset, 7);
            }
            None => {
                assert!(lookups.is_empty());
                let errs = f.take_errors();
                assert_eq!(
                    errs[0].kind,
                    FetchErrorKind::OffsetOutOfRange { offset: 50 }
                );
                assert!(f.plan_fetch(1, now).is_none(), "stopped until a seek");
                f.seek(&tp(0), StartOffset::Offset(0));
                assert!(f.plan_fetch(1, now).is_some());
            }
        }
    }
}

#[test]
fn lookups_resolve_starts_and_a_missing_timestamp_means_the_end() {
    let mut f = Fetcher::new(FetchConfig::default());
    f.assign(tp(0), StartOffset::Timestamp(5_000));
    f.assign(tp(1), StartOffset::Earliest);
    assert!(f.position(&tp(0)).is_none());
    let now = Instant::now();
    assert!(f.poll_lookups(now).is_empty(), "no leader yet");
    assert!(f.take_metadata_request());
    f.handle_leader(&tp(0), Some(1), 0);
    f.handle_leader(&tp(1), Some(2), 0);
    let lookups = f.poll_lookups(now);
    assert_eq!(lookups.len(), 2, "one per leader");
    let req = lookups[0].to_request(IsolationLevel::ReadUncommitted);
    assert_eq!(req.topics[0].partitions[0].timestamp, 5_000);
    f.handle_lookup(
        lookups[0].token,
        &tp(0),
        LookupResult::Found {
            offset: -1,
            leader_epoch: None,
        },
        now,
    );
    let again = f.poll_lookups(now);
    assert_eq!(again[0].partitions[0].1, StartOffset::Latest);
    f.handle_lookup(
        again[0].token,
        &tp(0),
        LookupResult::Found {
            offset: 42,
            leader_epoch: None,
        },
        now,
    );
    assert_eq!(f.position(&tp(0)).unwrap().offset, 42);
    // A stale token is ignored.
    f.handle_lookup(
        lookups[0].token,
        &tp(0),
        LookupResult::Found {
            offset: 1,
            leader_epoch: None,
        },
        now,
    );
    assert_eq!(f.position(&tp(0)).unwrap().offset, 42);
}

#[test]
fn leader_errors_refresh_metadata_and_migrate_with_validation() {
    let (mut f, now) = ready(StartOffset::Offset(0));
    round(&mut f, 1, now, |_| {
        data(0, 10, batch(0, 10, Compression::None))
    })
    .unwrap();
    let out = round(&mut f, 1, now, |_| {
        error(0, ErrorCode::NOT_LEADER_OR_FOLLOWER)
    })
    .unwrap();
    assert!(out.refresh_metadata);
    assert!(f.leader(&tp(0)).is_none());
    // Metadata says broker 2 now leads, at epoch 6: the cursor (epoch 5) is validated there.
    f.handle_leader(&tp(0), Some(2), 6);
    let later = now + Duration::from_secs(1);
    assert!(f.plan_fetch(2, later).is_none(), "validation first");
    let v = f.poll_validations(later);
    assert_eq!(v[0].node, 2);
    assert_eq!(v[0].partitions[0], (tp(0), 6, 5));
    // The new leader's log for epoch 5 ends at 8: truncated, the position moves back.
    f.handle_validation(
        v[0].token,
        &tp(0),
        ValidationResult::EndOffset {
            leader_epoch: 5,
            end_offset: 8,
        },
        later,
    );
    let mut rs = Vec::new();
    f.poll_records(100, &mut rs);
    assert!(
        rs.is_empty(),
        "buffered records past the truncation point are dropped"
    );
    assert_eq!(f.position(&tp(0)).unwrap().offset, 0);
    let plan = f.plan_fetch(2, later).unwrap();
    assert_eq!(plan.partitions[0].current_leader_epoch, 6);

    // Without OffsetForLeaderEpoch on the broker, the position is kept as is.
    let (mut f, now) = ready(StartOffset::Offset(0));
    round(&mut f, 1, now, |_| {
        data(0, 10, batch(0, 10, Compression::None))
    })
    .unwrap();
    f.handle_leader(&tp(0), Some(2), 6);
    let v = f.poll_validations(now);
    f.handle_validation(v[0].token, &tp(0), ValidationResult::Unsupported, now);
    assert_eq!(f.plan_fetch(2, now).unwrap().partitions[0].fetch_offset, 10);
}

#[test]
fn transport_failure_backs_off_and_releases_the_reservation() {
    let (mut f, now) = ready(StartOffset::Offset(0));
    let plan = f.plan_fetch(1, now).unwrap();
    let out = f.handle_fetch_failed(&plan, now);
    assert!(out.refresh_metadata);
    assert_eq!(f.reserved_bytes(), 0);
    assert!(f.plan_fetch(1, now).is_none(), "backing off");
    assert!(f.next_retry(now).is_some());
    assert!(
        f.next_retry(now + Duration::from_secs(1)).is_none(),
        "expired backoffs are not due"
    );
    assert!(f.plan_fetch(1, now + Duration::from_secs(1)).is_some());
}

#[test]
fn corrupt_data_stops_the_partition_with_an_error() {
    let (mut f, now) = ready(StartOffset::Offset(0));
    let mut bad = BytesMut::from(&batch(0, 3, Compression::None)[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    round(&mut f, 1, now, |_| data(0, 3, bad.clone().freeze())).unwrap();
    let errs = f.take_errors();
    assert!(
        matches!(errs[0].kind, FetchErrorKind::Corrupt { offset: 0, .. }),
        "{errs:?}"
    );
    assert!(f.plan_fetch(1, now).is_none());
}

#[test]
fn check_crcs_false_delivers_a_batch_whose_crc_is_wrong() {
    // The stored CRC-32C (bytes 17..21) of a good batch, altered.
    let mut bad = BytesMut::from(&batch(0, 3, Compression::Gzip)[..]);
    bad[18] ^= 0x5a;
    let bad = bad.freeze();
    for check_crcs in [true, false] {
        let mut f = Fetcher::new(FetchConfig {
            check_crcs,
            ..FetchConfig::default()
        });
        f.assign(tp(0), StartOffset::Offset(0));
        f.handle_leader(&tp(0), Some(1), 0);
        let now = Instant::now();
        round(&mut f, 1, now, |_| data(0, 3, bad.clone())).unwrap();
        let mut rs = Vec::new();
        f.poll_records(100, &mut rs);
        let errs = f.take_errors();
        if check_crcs {
            assert!(rs.is_empty(), "{rs:?}");
            assert!(
                matches!(errs[0].kind, FetchErrorKind::Corrupt { offset: 0, .. }),
                "{errs:?}"
            );
        } else {
            assert!(errs.is_empty(), "{errs:?}");
            assert_eq!(offsets(&rs), vec![0, 1, 2]);
            assert_eq!(rs[2].value.as_deref(), Some(&b"v2"[..]));
        }
    }
}

#[test]
fn records_from_several_partitions_are_served_round_robin() {
    let mut f = Fetcher::new(FetchConfig::default());
    for p in 0..3 {
        f.assign(tp(p), StartOffset::Offset(0));
        f.handle_leader(&tp(p), Some(1), 0);
    }
    let now = Instant::now();
    round(&mut f, 1, now, |pp| {
        data(pp.tp.partition, 10, batch(0, 10, Compression::None))
    })
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut rs = Vec::new();
        f.poll_records(10, &mut rs);
        seen.push(rs[0].partition);
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2]);
}

#[test]
fn a_partial_batch_alone_is_fetched_again_unless_it_cannot_fit() {
    // Cut short by the response limit (fits in partition max bytes): no error, no progress.
    let (mut f, now) = ready(StartOffset::Offset(0));
    let whole = batch(0, 10, Compression::None);
    let cut = whole.slice(..whole.len() - 5);
    round(&mut f, 1, now, |_| data(0, 10, cut.clone())).unwrap();
    assert!(f.take_errors().is_empty());
    assert_eq!(f.plan_fetch(1, now).unwrap().partitions[0].fetch_offset, 0);

    // Larger than max.partition.fetch.bytes (a pre-KIP-74 broker): reported.
    let config = FetchConfig {
        partition_max_bytes: 64,
        ..FetchConfig::default()
    };
    let mut f = Fetcher::new(config);
    f.assign(tp(0), StartOffset::Offset(0));
    f.handle_leader(&tp(0), Some(1), 0);
    round(&mut f, 1, now, |_| data(0, 10, cut.clone())).unwrap();
    let errs = f.take_errors();
    assert_eq!(errs[0].kind, FetchErrorKind::RecordTooLarge { offset: 0 });
}

#[test]
fn fetch_order_rotates_so_no_partition_always_comes_first() {
    let mut f = Fetcher::new(FetchConfig::default());
    for p in 0..3 {
        f.assign(tp(p), StartOffset::Offset(0));
        f.handle_leader(&tp(p), Some(1), 0);
    }
    let now = Instant::now();
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let plan = f.plan_fetch(1, now).unwrap();
        let req = plan.to_request();
        assert_eq!(req.topics.len(), 1, "one entry per topic");
        firsts.push(req.topics[0].partitions[0].partition);
        f.handle_fetch(&plan, Vec::new(), now);
    }
    firsts.sort();
    assert_eq!(firsts, vec![0, 1, 2]);
}

#[test]
fn compressed_batches_are_inflated_one_at_a_time_as_records_are_polled() {
    let (mut f, now) = ready(StartOffset::Offset(0));
    // Four batches of 500 records of 1000 identical bytes: each compresses ~100x.
    let mut parts = Vec::new();
    for n in 0..4 {
        let mut b = BatchBuilder::new(Compression::Lz4).with_base_offset(n * 500);
        for _ in 0..500 {
            b.push(0, None, Some(&[b'v'; 1000]), &[]).unwrap();
        }
        parts.push(b.finish(-1, -1, -1, false).unwrap());
    }
    let wire = concat(&parts);
    round(&mut f, 1, now, |_| data(0, 2000, wire.clone())).unwrap();
    assert_eq!(
        f.buffered_bytes(),
        wire.len(),
        "nothing inflated before a poll"
    );
    let mut rs = Vec::new();
    f.poll_records(10, &mut rs);
    let one_batch = 500 * 1000;
    assert!(f.buffered_bytes() >= wire.len() + one_batch);
    assert!(
        f.buffered_bytes() < wire.len() + 2 * one_batch + 500 * 200,
        "only the batch being delivered is inflated: {}",
        f.buffered_bytes()
    );
    while rs.len() < 2000 {
        f.poll_records(300, &mut rs);
        assert!(f.buffered_bytes() < wire.len() + 2 * one_batch + 500 * 200);
    }
    assert_eq!(offsets(&rs), (0..2000).collect::<Vec<_>>());
    assert_eq!(f.buffered_bytes(), 0);
}

#[test]
fn a_batch_that_fails_to_inflate_stops_the_partition_after_the_good_records() {
    let (mut f, now) = ready(StartOffset::Offset(0));
    let good = batch(0, 5, Compression::None);
    // A gzip batch whose compressed payload is garbage but whose CRC is right: build a batch,
    // then corrupt the payload and recompute the CRC32C over bytes 21..end.
    let mut bad = BytesMut::from(&batch(5, 5, Compression::Gzip)[..]);
    let n = bad.len();
    for b in &mut bad[70..n] {
        *b = 0x55;
    }
    let crc = crc32c_of(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    round(&mut f, 1, now, |_| {
        data(0, 10, concat(&[good.clone(), bad.clone().freeze()]))
    })
    .unwrap();
    let mut rs = Vec::new();
    f.poll_records(100, &mut rs);
    assert_eq!(offsets(&rs), vec![0, 1, 2, 3, 4]);
    let errs = f.take_errors();
    assert!(
        matches!(errs[0].kind, FetchErrorKind::Corrupt { offset: 5, .. }),
        "{errs:?}"
    );
    assert_eq!(f.position(&tp(0)).unwrap().offset, 5);
    assert_eq!(f.buffered_bytes(), 0);
    assert!(f.plan_fetch(1, now).is_none(), "stopped until a seek");
}

/// CRC32C (Castagnoli), bitwise: only for building test batches.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Three leaders, default budgets (64 MiB prefetch, 50 MiB `fetch.max.bytes`): the fetches of
/// two leaders must leave budget for the third (they used to reserve 50 MiB + 14 MiB, and the
/// third leader's partition was never fetched).
#[test]
fn every_leader_gets_a_share_of_the_prefetch_budget() {
    let mut f = Fetcher::new(FetchConfig::default());
    for p in 0..3 {
        f.assign(tp(p), StartOffset::Offset(0));
        f.handle_leader(&tp(p), Some(p), 0);
    }
    let now = Instant::now();
    let plans: Vec<FetchPlan> = (0..3).map(|n| f.plan_fetch(n, now).unwrap()).collect();
    for plan in &plans {
        // Each fetch: its fair share, a third of the budget; each partition its own limit.
        assert_eq!(plan.max_bytes as usize, (64 << 20) / 3);
        assert_eq!(plan.partitions[0].max_bytes, 1_048_576);
    }
    assert!(!f.is_budget_exhausted());

    // Many partitions per leader: the fair share (budget / leaders) caps each fetch.
    let config = FetchConfig {
        max_prefetch_bytes: 3 << 20,
        ..FetchConfig::default()
    };
    let mut f = Fetcher::new(config);
    for p in 0..30 {
        f.assign(tp(p), StartOffset::Offset(0));
        f.handle_leader(&tp(p), Some(p % 3), 0);
    }
    for n in 0..3 {
        let plan = f.plan_fetch(n, now).expect("each leader can fetch");
        assert_eq!(plan.max_bytes, 1 << 20);
    }
}

/// One leader, one partition: the request asks for `fetch.max.bytes` or the free budget,
/// whichever is smaller, not just `max.partition.fetch.bytes` (a broker that sizes its answer
/// by the request's limit alone, like tansu, then answers big), and reserves it all, so the
/// budget still bounds what can arrive.
#[test]
fn a_fetch_asks_for_the_free_budget_up_to_fetch_max_bytes() {
    let now = Instant::now();
    let mut f = Fetcher::new(FetchConfig::default());
    f.assign(tp(0), StartOffset::Offset(0));
    f.handle_leader(&tp(0), Some(0), 0);
    let plan = f.plan_fetch(0, now).unwrap();
    assert_eq!(
        plan.max_bytes, 52_428_800,
        "fetch.max.bytes, below the 64 MiB budget"
    );
    assert_eq!(plan.partitions[0].max_bytes, 1_048_576);
    assert_eq!(f.reserved_bytes(), 52_428_800);

    let config = FetchConfig {
        max_prefetch_bytes: 8 << 20,
        ..FetchConfig::default()
    };
    let mut f = Fetcher::new(config);
    f.assign(tp(0), StartOffset::Offset(0));
    f.assign(tp(1), StartOffset::Offset(0));
    f.handle_leader(&tp(0), Some(0), 0);
    let plan = f.plan_fetch(0, now).unwrap();
    assert_eq!(
        plan.max_bytes,
        8 << 20,
        "the free budget, below fetch.max.bytes"
    );
    assert_eq!(plan.partitions[0].max_bytes, 1_048_576);
    // The budget is reserved whole: a partition joining this leader waits for the answer.
    f.handle_leader(&tp(1), Some(0), 0);
    assert!(f.is_budget_exhausted());
    assert!(f.plan_fetch(0, now).is_none());
    f.handle_fetch_failed(&plan, now);
    assert_eq!(f.reserved_bytes(), 0);
}

/// A leader that found the budget exhausted is reported once the budget has room again.
#[test]
fn a_source_parked_on_the_budget_is_woken_when_it_is_freed() {
    let config = FetchConfig {
        max_prefetch_bytes: 2,
        ..FetchConfig::default()
    };
    let mut f = Fetcher::new(config);
    for p in 0..3 {
        f.assign(tp(p), StartOffset::Offset(0));
        f.handle_leader(&tp(p), Some(p), 0);
    }
    let now = Instant::now();
    let a = f.plan_fetch(0, now).unwrap();
    let _b = f.plan_fetch(1, now).unwrap();
    assert!(!f.take_budget_wakeup(), "nobody waits");
    assert!(f.plan_fetch(2, now).is_none(), "budget exhausted");
    assert!(!f.take_budget_wakeup(), "still exhausted");
    f.handle_fetch_failed(&a, now);
    assert!(f.take_budget_wakeup(), "the reservation was released");
    assert!(!f.take_budget_wakeup(), "reported once");
    assert!(f.plan_fetch(2, now).is_some());
}
