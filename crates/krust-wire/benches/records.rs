//! Record batch encode and decode throughput, uncompressed and per codec: batches of 1000
//! records with a 100-byte JSON-like value (and a 9-byte key) each.
//!
//! `cargo bench -p krust-wire --bench records`. Throughput is reported in bytes of keys and
//! values per second; records/s is 1000 divided by the time per batch.
//!
//! The `push` group times `BatchBuilder::push` alone (1000 pushes into a builder sized by
//! `with_capacity`, no `finish`): without a key (what the producer driver pushes most), with
//! the 9-byte key, and with two headers. For instruction counts run it under callgrind
//! (`--bench push/value100 --profile-time 2`) and divide the inclusive cost of `push_all` by
//! its calls times 1000.
//!
//! The `crc32c` group times the batch checksum (`record::crc`) against the `crc32c` crate it
//! falls back to: a 1 MiB batch whole, in the 16 KiB stretches `finish` checksums as it copies,
//! and a 1 KiB record.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use krust_wire::record::{batches, BatchBuilder, Compression, RecordHeader};

mod common;

const RECORDS: usize = 1000;

fn encode(codec: Compression, recs: &[(Vec<u8>, Vec<u8>)]) -> Bytes {
    let mut b = BatchBuilder::new(codec).with_capacity(RECORDS * 120);
    for (i, (k, v)) in recs.iter().enumerate() {
        b.push(1_700_000_000_000 + i as i64, Some(k), Some(v), &[])
            .expect("push");
    }
    b.finish(-1, -1, -1, false).expect("finish")
}

/// Pushes every record into a fresh builder (the unit the `push` group times; not inlined, so
/// callgrind can attribute its cost).
#[inline(never)]
fn push_all(recs: &[(Vec<u8>, Vec<u8>)], keyed: bool, headers: &[RecordHeader]) -> BatchBuilder {
    let mut b = BatchBuilder::new(Compression::None).with_capacity(RECORDS * 120);
    for (i, (k, v)) in recs.iter().enumerate() {
        let key = if keyed { Some(&k[..]) } else { None };
        b.push(1_700_000_000_000 + i as i64, key, Some(v), headers)
            .expect("push");
    }
    b
}

fn decode(batch: &Bytes) -> usize {
    let mut n = 0;
    for b in batches(batch.clone()) {
        for r in b.expect("batch").inflate().expect("inflate").records() {
            let r = r.expect("record");
            n += r.value.map_or(0, |v| v.len());
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let recs = common::json_records(RECORDS);
    let payload: usize = recs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut enc = c.benchmark_group("encode");
    enc.throughput(Throughput::Bytes(payload as u64));
    for codec in Compression::ALL {
        enc.bench_with_input(BenchmarkId::from_parameter(codec), &codec, |b, &codec| {
            b.iter(|| encode(codec, &recs))
        });
    }
    enc.finish();
    let mut push = c.benchmark_group("push");
    push.throughput(Throughput::Elements(RECORDS as u64));
    let two = [
        RecordHeader::new("trace-id", Some(Bytes::from_static(b"0af7651916cd43dd"))),
        RecordHeader::new("source", None),
    ];
    let cases: [(&str, bool, &[RecordHeader]); 3] = [
        ("value100", false, &[]),
        ("key9_value100", true, &[]),
        ("value100_headers2", false, &two),
    ];
    for (name, keyed, headers) in cases {
        push.bench_function(name, |b| {
            b.iter(|| black_box(push_all(black_box(&recs), keyed, headers)))
        });
    }
    push.finish();
    let mut dec = c.benchmark_group("decode");
    dec.throughput(Throughput::Bytes(payload as u64));
    for codec in Compression::ALL {
        let batch = encode(codec, &recs);
        eprintln!(
            "{codec}: batch of {} bytes for {payload} bytes of keys and values (ratio {:.2})",
            batch.len(),
            payload as f64 / batch.len() as f64
        );
        dec.bench_with_input(BenchmarkId::from_parameter(codec), &batch, |b, batch| {
            b.iter(|| decode(batch))
        });
    }
    dec.finish();
    let mut crc = c.benchmark_group("crc32c");
    let data: Vec<u8> = (0..1usize << 20)
        .map(|i| (i * 31 + (i >> 9)) as u8)
        .collect();
    for (name, len, stretch) in [
        ("1MiB", data.len(), data.len()),
        ("1MiB_16KiB_stretches", data.len(), 16 * 1024),
        ("1KiB", 1024, 1024),
    ] {
        let d = &data[..len];
        crc.throughput(Throughput::Bytes(len as u64));
        crc.bench_function(BenchmarkId::new("krust", name), |b| {
            b.iter(|| {
                black_box(d)
                    .chunks(stretch)
                    .fold(0, krust_wire::record::crc::crc32c_append)
            })
        });
        crc.bench_function(BenchmarkId::new("crate", name), |b| {
            b.iter(|| black_box(d).chunks(stretch).fold(0, crc32c::crc32c_append))
        });
    }
    crc.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
