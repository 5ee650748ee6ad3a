//! read_committed filtering of one partition's fetched data, case by case: the shapes of
//! fetched logs that broke other clients' aborted-transaction filtering (compressed aborted
//! batches, an empty aborted transaction followed by committed data, an unsorted aborted list,
//! a second abort marker, aborted data spanning two fetches, a committed and an aborted
//! transaction of one producer in one fetch, idempotent non-transactional batches of a producer
//! listed as aborting).

use bytes::{Bytes, BytesMut};
use krust_core::fetch::{
    parse_partition, ConsumerRecord, IsolationLevel, ParseOptions, TopicPartition,
};
use krust_wire::kafka_protocol::messages::fetch_response::{AbortedTransaction, PartitionData};
use krust_wire::kafka_protocol::messages::ProducerId;
use krust_wire::record::{
    encode_control_batch, BatchBuilder, Compression, ControlRecord, ControlRecordType,
};

/// A batch of `n` records from `base`, values "v<offset>", of producer `pid` (transactional
/// when `txn`).
fn batch(base: i64, n: i64, codec: Compression, pid: i64, txn: bool) -> Bytes {
    let mut b = BatchBuilder::new(codec).with_base_offset(base);
    for i in 0..n {
        let o = base + i;
        b.push(1_000 + o, None, Some(format!("v{o}").as_bytes()), &[])
            .unwrap();
    }
    let (epoch, seq) = if pid >= 0 { (0, base as i32) } else { (-1, -1) };
    b.finish(pid, epoch, seq, txn).unwrap()
}

fn marker(offset: i64, pid: i64, kind: ControlRecordType) -> Bytes {
    let m = ControlRecord {
        version: 0,
        kind,
        coordinator_epoch: Some(0),
    };
    encode_control_batch(offset, 1_000 + offset, pid, 0, m).unwrap()
}

fn abort(offset: i64, pid: i64) -> Bytes {
    marker(offset, pid, ControlRecordType::Abort)
}

fn commit(offset: i64, pid: i64) -> Bytes {
    marker(offset, pid, ControlRecordType::Commit)
}

fn concat(parts: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for p in parts {
        out.extend_from_slice(p);
    }
    out.freeze()
}

/// Parses `records` fetched at `fetch_offset` with the aborted list `aborted` (producer id,
/// first offset) and an LSO of `lso`, and returns the offsets read_committed delivers.
fn read(fetch_offset: i64, records: Bytes, lso: i64, aborted: &[(i64, i64)]) -> Vec<i64> {
    let mut d = PartitionData::default();
    d.partition_index = 0;
    d.high_watermark = lso;
    d.last_stable_offset = lso;
    d.log_start_offset = 0;
    d.records = Some(records);
    d.aborted_transactions = Some(
        aborted
            .iter()
            .map(|&(pid, first)| {
                let mut a = AbortedTransaction::default();
                a.producer_id = ProducerId(pid);
                a.first_offset = first;
                a
            })
            .collect(),
    );
    let opts = ParseOptions {
        isolation: IsolationLevel::ReadCommitted,
        ..ParseOptions::default()
    };
    let tp = TopicPartition::new("t", 0);
    let mut fetched = parse_partition(&tp, fetch_offset, &d, &opts).unwrap();
    let mut out: Vec<ConsumerRecord> = Vec::new();
    fetched
        .drain_into(fetch_offset, usize::MAX, &mut out)
        .unwrap();
    for r in &out {
        let v = r.value.clone().unwrap();
        assert_eq!(
            v,
            Bytes::from(format!("v{}", r.offset)),
            "value of offset {}",
            r.offset
        );
    }
    out.iter().map(|r| r.offset).collect()
}

#[test]
fn compressed_aborted_batches_are_dropped_whatever_the_codec() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        // pid 1 aborts 0..10 (two compressed batches), pid 2 commits 10..15 in between.
        let log = concat(&[
            batch(0, 5, codec, 1, true),
            batch(5, 5, codec, 2, true),
            batch(10, 5, codec, 1, true),
            abort(15, 1),
            commit(16, 2),
        ]);
        let got = read(0, log, 17, &[(1, 0)]);
        assert_eq!(got, (5..10).collect::<Vec<_>>(), "{codec:?}");
    }
}

#[test]
fn an_empty_aborted_transaction_does_not_hide_the_committed_data_after_it() {
    // pid 1: an aborted transaction with no data (only its marker at 0, so its first offset
    // is the marker's), then a committed transaction 1..4.
    let log = concat(&[
        abort(0, 1),
        batch(1, 3, Compression::Lz4, 1, true),
        commit(4, 1),
    ]);
    let got = read(0, log, 5, &[(1, 0)]);
    assert_eq!(got, vec![1, 2, 3]);
}

#[test]
fn an_unsorted_aborted_list_is_applied_by_first_offset() {
    // pid 1 aborts 0..2, pid 2 commits 3..5, pid 3 aborts 6..8; the broker lists pid 3 first.
    let log = concat(&[
        batch(0, 2, Compression::None, 1, true),
        abort(2, 1),
        batch(3, 2, Compression::None, 2, true),
        commit(5, 2),
        batch(6, 2, Compression::Snappy, 3, true),
        abort(8, 3),
    ]);
    let got = read(0, log, 9, &[(3, 6), (1, 0)]);
    assert_eq!(got, vec![3, 4]);
}

#[test]
fn a_second_abort_marker_does_not_drop_later_committed_data() {
    // pid 1 aborts 0..2 and its abort marker is written twice (a retried WriteTxnMarkers);
    // its next transaction 4..6 commits.
    let log = concat(&[
        batch(0, 2, Compression::None, 1, true),
        abort(2, 1),
        abort(3, 1),
        batch(4, 2, Compression::None, 1, true),
        commit(6, 1),
    ]);
    let got = read(0, log, 7, &[(1, 0)]);
    assert_eq!(got, vec![4, 5]);
}

#[test]
fn aborted_data_spanning_two_fetches_is_dropped_in_both() {
    let first = concat(&[
        batch(0, 3, Compression::Zstd, 1, true),
        batch(3, 2, Compression::None, 2, true),
    ]);
    // First fetch: the transaction is already aborted, but the response stopped (its size
    // limit) before the abort marker.
    let got = read(0, first, 5, &[(1, 0)]);
    assert_eq!(
        got,
        vec![3, 4],
        "pid 2's records are delivered; pid 1's held back"
    );
    // Second fetch from 5: more of pid 1's aborted transaction, then its marker; the broker
    // lists the transaction again (its first offset is before this fetch).
    let second = concat(&[
        batch(5, 3, Compression::Zstd, 1, true),
        abort(8, 1),
        commit(9, 2),
        batch(10, 2, Compression::None, 1, true),
        commit(12, 1),
    ]);
    let got = read(5, second, 13, &[(1, 0)]);
    assert_eq!(got, vec![10, 11]);
}

#[test]
fn one_producers_committed_then_aborted_transactions_in_one_fetch() {
    let log = concat(&[
        batch(0, 2, Compression::None, 1, true),
        commit(2, 1),
        batch(3, 2, Compression::Gzip, 1, true),
        abort(5, 1),
        batch(6, 2, Compression::None, 1, true),
        commit(8, 1),
    ]);
    let got = read(0, log, 9, &[(1, 3)]);
    assert_eq!(got, vec![0, 1, 6, 7]);
}

#[test]
fn non_transactional_batches_of_an_aborting_producer_id_are_kept() {
    // An idempotent (non-transactional) batch of pid 9 sits between pid 1's aborted batches;
    // only transactional batches of listed producers are filtered.
    let log = concat(&[
        batch(0, 2, Compression::None, 1, true),
        batch(2, 2, Compression::None, 9, false),
        batch(4, 1, Compression::None, 1, true),
        abort(5, 1),
    ]);
    let got = read(0, log, 6, &[(1, 0), (9, 100)]);
    assert_eq!(got, vec![2, 3]);
}

#[test]
fn nothing_at_or_past_the_lso_is_delivered_even_if_the_transaction_later_commits() {
    // pid 1's transaction 2..4 is still open: the LSO is 2.
    let log = concat(&[
        batch(0, 2, Compression::None, 2, false),
        batch(2, 2, Compression::None, 1, true),
    ]);
    let got = read(0, log, 2, &[]);
    assert_eq!(got, vec![0, 1]);
}
