//! Record batch encode and decode throughput, uncompressed and per codec: batches of 1000
//! records with a 100-byte JSON-like value (and a 9-byte key) each.
//!
//! `cargo bench -p krust-wire --bench records`. Throughput is reported in bytes of keys and
//! values per second; records/s is 1000 divided by the time per batch.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use krust_wire::record::{batches, BatchBuilder, Compression};

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
