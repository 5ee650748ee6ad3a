//! Entry points for krust-wire's fuzz targets.
//!
//! Shared, file for file, by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and by
//! `crates/krust-wire/tests/corpus.rs`, which replays every corpus and regression input through
//! these functions in an ordinary `cargo test`. Every function must return normally for any
//! input: a panic is a finding. Decompression is capped at [`MAX_OUTPUT`] so that memory per
//! input stays bounded (libFuzzer runs with `-malloc_limit_mb=256`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use krust_core::fetch::{
    partition_outcome, ConsumerRecord, FetchConfig, Fetcher, IsolationLevel, ParseOptions,
    StartOffset, TopicPartition,
};
use krust_core::group::assignor::{
    self, cooperative_adjust, encode_member_assignment, validate, MemberSubscription,
};
use krust_wire::compression::{self, Compression, DecompressLimits};
use krust_wire::frame::FrameReader;
use krust_wire::group_protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, StickyUserData,
    MAX_VERSION,
};
use krust_wire::kafka_protocol::messages::fetch_response::{AbortedTransaction, PartitionData};
use krust_wire::kafka_protocol::messages::ProducerId;
use krust_wire::record::{batches, BatchBuilder, DeflatedBatch, RecordHeader};
use krust_wire::ApiKey;

/// Decompressed bytes allowed per batch or codec call.
pub const MAX_OUTPUT: usize = 4 << 20;

fn limits() -> DecompressLimits {
    DecompressLimits::with_max_output(MAX_OUTPUT)
}

/// The frame reader, whole (`read_all`) and incrementally (`try_read` over chunks).
pub fn frame_reader(data: &[u8]) {
    let reader = FrameReader::new(1 << 20);
    let _ = reader.read_all(data);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(7) {
        buf.extend_from_slice(chunk);
        loop {
            match reader.try_read(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Response decoders: byte 0 is the API key, byte 1 the version, the rest the body (after the
/// response header). Unknown API keys are ignored.
pub fn responses(data: &[u8]) {
    let [key, version, body @ ..] = data else {
        return;
    };
    let Some(api) = ApiKey::from_key(i16::from(*key)) else {
        return;
    };
    let _ =
        krust_wire::responses::decode_any(api, i16::from(*version), Bytes::copy_from_slice(body));
}

/// The record batch decoder: split a record set, inflate every batch, decode every record.
///
/// Byte 0 picks a mode, the rest is the record set. With an even mode byte the CRC of every
/// batch (CRC32C for v2, CRC32 for legacy messages) is recomputed first, so that mutations reach
/// the header, decompression and record decoding instead of stopping at the checksum; with an
/// odd one the bytes are decoded as they are.
pub fn record_batch(data: &[u8]) {
    // The batch checksum against the reference crate, whole and continued from a start value.
    let start = data
        .iter()
        .take(4)
        .fold(0u32, |s, b| s << 8 | u32::from(*b));
    assert_eq!(
        krust_wire::record::crc::crc32c_append(start, data),
        crc32c::crc32c_append(start, data),
        "crc32c of {} bytes from {start:#x}",
        data.len()
    );
    let Some((&mode, set)) = data.split_first() else {
        return;
    };
    let mut set = set.to_vec();
    if mode & 1 == 0 {
        fix_crcs(&mut set);
    }
    let bytes = Bytes::from(set);
    for batch in batches(bytes.clone()) {
        let Ok(batch) = batch else { break };
        let h = batch.header();
        let _ = (
            h.next_offset(),
            h.timestamp_type(),
            h.is_control(),
            h.size(),
        );
        if let Ok(inflated) = batch.inflate_with(&limits()) {
            let _ = inflated.control();
            for record in inflated.records() {
                if record.is_err() {
                    break;
                }
            }
        }
    }
    let _ = DeflatedBatch::decode(bytes);
}

/// Rewrites the checksum of every complete batch or legacy message in a record set.
pub fn fix_crcs(set: &mut [u8]) {
    let mut pos = 0;
    while set.len() - pos >= 17 {
        let b = &set[pos..];
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let Ok(len) = usize::try_from(len) else {
            return;
        };
        if len > b.len() - 12 {
            return;
        }
        let end = pos + 12 + len;
        match set[pos + 16] {
            2 if len >= 9 => {
                let crc = crc32c::crc32c(&set[pos + 21..end]);
                set[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
            }
            0 | 1 if len >= 4 => {
                let crc = crc32fast::hash(&set[pos + 16..end]);
                set[pos + 12..pos + 16].copy_from_slice(&crc.to_be_bytes());
            }
            _ => {}
        }
        pos = end;
    }
}

/// One codec's decompressor.
pub fn codec(codec: Compression, data: &[u8]) {
    let _ = compression::decompress(codec, data, &limits());
}

/// Encoders: byte 0 picks a codec; the rest is compressed and must decompress to itself, and
/// is also cut into records of a batch that must decode to the same records.
pub fn roundtrip(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let codec = Compression::ALL[usize::from(sel) % Compression::ALL.len()];
    let packed = compression::compress(codec, rest).expect("compress");
    let unpacked = compression::decompress(codec, &packed, &limits()).expect("decompress");
    assert_eq!(unpacked, rest, "{codec} round trip");

    // The selector also shapes the records: chunk size (bits 0-3; bit 7: one record of it all,
    // so lengths reach the multi-byte varints and the builder's general path), headers (bit 4),
    // timestamp deltas far apart (bit 5: multi-byte and negative varlongs), keys (bit 6).
    let chunk = if sel & 0x80 != 0 {
        rest.len().max(1)
    } else {
        usize::from(sel % 16) + 1
    };
    let step: i64 = if sel & 0x20 != 0 { 3_000_000_007 } else { 1000 };
    let ts = |i: usize| (i as i64 - 2) * step - 5;
    let mut b = BatchBuilder::new(codec).with_base_offset(i64::from(sel));
    let parts: Vec<&[u8]> = rest.chunks(chunk).collect();
    let headers_of = |part: &[u8]| -> Vec<RecordHeader> {
        if sel & 0x10 != 0 {
            vec![
                RecordHeader::new("h", Some(Bytes::copy_from_slice(part))),
                RecordHeader::new("", None),
            ]
        } else {
            Vec::new()
        }
    };
    for (i, part) in parts.iter().enumerate() {
        let key = (sel & 0x40 != 0 && i % 2 == 0).then_some(*part);
        b.push(ts(i), key, Some(part), &headers_of(part))
            .expect("push");
    }
    if parts.is_empty() {
        return;
    }
    let batch = b.finish(1, 2, 3, sel & 1 == 0).expect("finish");
    // The same records with owned values (large ones kept by reference until `finish`) give
    // the same bytes.
    let mut shared = BatchBuilder::new(codec).with_base_offset(i64::from(sel));
    for (i, part) in parts.iter().enumerate() {
        let key = (sel & 0x40 != 0 && i % 2 == 0).then_some(*part);
        let value = Bytes::copy_from_slice(part);
        shared
            .push_shared(ts(i), key, Some(value), &headers_of(part))
            .expect("push_shared");
    }
    assert_eq!(shared.finish(1, 2, 3, sel & 1 == 0).expect("finish"), batch);
    let decoded = DeflatedBatch::decode(batch)
        .expect("decode")
        .inflate_with(&limits())
        .expect("inflate")
        .into_records()
        .expect("records");
    assert_eq!(decoded.len(), parts.len());
    for (i, (r, part)) in decoded.iter().zip(&parts).enumerate() {
        assert_eq!(r.value.as_deref(), Some(*part));
        assert_eq!(r.offset, i64::from(sel) + i as i64);
        assert_eq!(r.timestamp, ts(i));
        let key = (sel & 0x40 != 0 && i % 2 == 0).then_some(*part);
        assert_eq!(r.key.as_deref(), key);
        assert_eq!(r.headers, headers_of(part));
    }
}

/// The consumer group embedded protocol (bytes that *other* group members wrote): byte 0 picks
/// the decoder (0: `ConsumerProtocolSubscription`, 1: `ConsumerProtocolAssignment`, 2: the sticky
/// assignor's user data), the rest is its input. Whatever decodes must encode again (at the
/// highest version krust writes, when the sender's was newer) and decode to the same value.
pub fn group_protocol(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let bytes = Bytes::copy_from_slice(rest);
    match sel % 3 {
        0 => {
            if let Ok((version, s)) = decode_subscription(bytes) {
                let version = version.min(MAX_VERSION);
                let again =
                    encode_subscription(&s, version).expect("a decoded subscription encodes");
                let back = decode_subscription(again).expect("its encoding decodes");
                assert_eq!(back, (version, s), "subscription round trip");
            }
        }
        1 => {
            if let Ok((version, a)) = decode_assignment(bytes) {
                let version = version.min(MAX_VERSION);
                let again = encode_assignment(&a, version).expect("a decoded assignment encodes");
                let back = decode_assignment(again).expect("its encoding decodes");
                assert_eq!(back, (version, a), "assignment round trip");
            }
        }
        _ => {
            if let Ok(d) = StickyUserData::decode(bytes) {
                let back = StickyUserData::decode(d.encode()).expect("its encoding decodes");
                assert_eq!(back.previous, d.previous, "sticky user data round trip");
                assert_eq!(back.generation, Some(d.generation.unwrap_or(-1)));
            }
        }
    }
}

/// The group leader's side: members' JoinGroup metadata (untrusted) through every built-in
/// assignor, as `krust_core::group::member` runs them.
///
/// Byte 0: bit 0 makes the partition counts depend on byte 1 as well. Then members, each
/// `[len: u8][flags: u8][metadata: len bytes]` (flags bit 0: a static member, whose instance id
/// is picked by bits 1-2). A topic's partition count is derived from its name (0 to 6; topics
/// with none are left out, as metadata would). Every assignment must pass the leader's own
/// `validate`, give every partition of a subscribed topic to somebody (eager assignors), and
/// encode.
pub fn group_assign(data: &[u8]) {
    let [flags, salt, rest @ ..] = data else {
        return;
    };
    let mut members = Vec::new();
    let mut input = rest;
    while let [len, mflags, tail @ ..] = input {
        let len = usize::from(*len).min(tail.len());
        let (metadata, tail) = tail.split_at(len);
        input = tail;
        members.push(member_subscription(
            members.len(),
            *mflags,
            Bytes::copy_from_slice(metadata),
        ));
        if members.len() == 12 {
            break;
        }
    }
    let salt = if flags & 1 == 1 { u32::from(*salt) } else { 0 };
    let topics: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
    let partitions: BTreeMap<String, i32> = topics
        .into_iter()
        .map(|t| {
            let sum = t.bytes().map(u32::from).sum::<u32>().wrapping_add(salt);
            (t.clone(), (sum % 7) as i32)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    for name in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
        let a = assignor::builtin(name).expect("built-in assignor");
        let mut out = a.assign(&partitions, &members);
        for m in &members {
            out.entry(m.member_id.clone()).or_default();
        }
        if let Err(e) = validate(&out, &partitions, &members) {
            panic!("{name} broke the assignment rules: {e}");
        }
        if a.protocol() == assignor::RebalanceProtocol::Cooperative {
            cooperative_adjust(&mut out, &members);
            validate(&out, &partitions, &members).expect("still valid after adjusting");
        } else {
            let given: usize = out.values().map(Vec::len).sum();
            let wanted: usize = partitions
                .iter()
                .filter(|(t, _)| members.iter().any(|m| m.topics.contains(*t)))
                .map(|(_, n)| *n as usize)
                .sum();
            assert_eq!(given, wanted, "{name} left partitions unassigned");
        }
        for tps in out.values() {
            encode_member_assignment(tps);
        }
    }
}

/// A member's subscription as the leader builds it from its JoinGroup metadata (a member
/// whose metadata does not decode subscribes to nothing).
fn member_subscription(index: usize, flags: u8, metadata: Bytes) -> MemberSubscription {
    MemberSubscription::from_metadata(
        format!("member-{index}"),
        (flags & 1 == 1).then(|| format!("instance-{}", (flags >> 1) & 3)),
        metadata,
    )
}

/// The consumer's fetch path (`krust_core::fetch`): one partition's fetched bytes through
/// `partition_outcome`, `Fetcher::handle_fetch` and `Fetcher::poll_records`, under either
/// isolation level, with an aborted-transaction list.
///
/// Layout: `[flags][start][lso][aborted count]`, then per aborted transaction `[producer id]
/// [first offset]` (one byte each), then the record set. Flags: bit 0 set leaves the CRCs as
/// they are (clear: fixed up first, see [`record_batch`]); bit 1 read_committed; bits 2-4 the
/// records per poll (1 to 8); bit 5 `check.crcs=false` (CRCs not verified at all). `start` is
/// the fetch offset; `lso` 255 means none (-1).
/// Delivered records must come in strictly increasing offset order, at or after the start,
/// below the LSO under read_committed; once everything is polled no buffered bytes remain.
pub fn fetch(data: &[u8]) {
    let [flags, start, lso, aborted, rest @ ..] = data else {
        return;
    };
    let aborted = usize::from(aborted % 5);
    if rest.len() < 2 * aborted {
        return;
    }
    let (aborted, set) = rest.split_at(2 * aborted);
    let mut set = set.to_vec();
    if flags & 1 == 0 {
        fix_crcs(&mut set);
    }
    let read_committed = flags & 2 != 0;
    let per_poll = usize::from((flags >> 2) & 7) + 1;
    let lso = if *lso == 255 { -1 } else { i64::from(*lso) };
    let start = i64::from(*start);
    let isolation = if read_committed {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::ReadUncommitted
    };
    let mut fetcher = Fetcher::new(FetchConfig {
        isolation,
        validate_positions: false,
        ..FetchConfig::default()
    });
    let tp = TopicPartition::new("t", 0);
    fetcher.assign(tp.clone(), StartOffset::Offset(start));
    fetcher.handle_leader(&tp, Some(1), 0);
    let now = Instant::now();
    let plan = fetcher
        .plan_fetch(1, now)
        .expect("a ready partition is fetched");
    let planned = plan.partition(&tp).expect("the partition is planned");
    let mut d = PartitionData::default();
    d.high_watermark = 300;
    d.last_stable_offset = lso;
    d.log_start_offset = 0;
    d.records = Some(Bytes::from(set));
    d.aborted_transactions = Some(
        aborted
            .chunks(2)
            .map(|c| {
                let mut a = AbortedTransaction::default();
                a.producer_id = ProducerId(i64::from(c[0]));
                a.first_offset = i64::from(c[1]);
                a
            })
            .collect(),
    );
    let opts = ParseOptions {
        isolation,
        limits: limits(),
        check_crcs: flags & 0x20 == 0,
    };
    let outcome = partition_outcome(planned, &d, &opts);
    fetcher.handle_fetch(&plan, vec![(tp.clone(), outcome)], now);
    let mut out: Vec<ConsumerRecord> = Vec::new();
    loop {
        let before = out.len();
        let n = fetcher.poll_records(per_poll, &mut out);
        assert_eq!(out.len(), before + n, "poll_records counts what it moves");
        assert!(n <= per_poll, "poll_records moved more than asked");
        if n == 0 {
            break;
        }
    }
    assert!(
        !fetcher.has_records(),
        "records left after a poll returned none"
    );
    assert_eq!(
        fetcher.buffered_bytes(),
        0,
        "bytes still counted once all is polled"
    );
    let mut next = start;
    for r in &out {
        assert!(
            r.offset >= next,
            "offset {} delivered after {}",
            r.offset,
            next - 1
        );
        if read_committed && lso >= 0 {
            assert!(
                r.offset < lso,
                "offset {} at or past the LSO {lso}",
                r.offset
            );
        }
        next = r.offset.saturating_add(1);
    }
}
