//! Raw codec throughput on record batch bodies (the bytes a codec sees inside a batch):
//! `compress` and bounded `decompress` per codec, on two payloads of 1000 records each:
//!
//! - `json`: a 9-byte key and a 100-byte JSON-like value per record (as in `records.rs`);
//! - `x100`: no key and a value of 100 `x` bytes, the payload of the peer comparison in
//!   `benches/peer` (very compressible).
//!
//! `cargo bench -p krust-wire --bench codecs`. Throughput is in uncompressed bytes per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use krust_wire::compression::{compress, decompress, DecompressLimits};
use krust_wire::record::{BatchBuilder, Compression, BATCH_HEADER_LEN};

mod common;

const RECORDS: usize = 1000;

fn body(json: bool) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    if json {
        for (i, (key, value)) in common::json_records(RECORDS).iter().enumerate() {
            b.push(1_700_000_000_000 + i as i64, Some(key), Some(value), &[])
                .expect("push");
        }
    } else {
        for i in 0..RECORDS {
            b.push(1_700_000_000_000 + i as i64, None, Some(&[b'x'; 100]), &[])
                .expect("push");
        }
    }
    b.finish(-1, -1, -1, false).expect("finish")[BATCH_HEADER_LEN..].to_vec()
}

/// The codecs measured.
const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn bench(c: &mut Criterion) {
    let limits = DecompressLimits::default();
    for (name, input) in [("json", body(true)), ("x100", body(false))] {
        let mut enc = c.benchmark_group(format!("compress/{name}"));
        enc.throughput(Throughput::Bytes(input.len() as u64));
        for codec in CODECS {
            let packed = compress(codec, &input).expect("compress");
            eprintln!(
                "{name} {codec}: {} -> {} bytes (ratio {:.2})",
                input.len(),
                packed.len(),
                input.len() as f64 / packed.len() as f64
            );
            enc.bench_with_input(BenchmarkId::from_parameter(codec), &codec, |b, &codec| {
                b.iter(|| compress(codec, &input).expect("compress"))
            });
        }
        enc.finish();
        let mut dec = c.benchmark_group(format!("decompress/{name}"));
        dec.throughput(Throughput::Bytes(input.len() as u64));
        for codec in CODECS {
            let packed = compress(codec, &input).expect("compress");
            dec.bench_with_input(BenchmarkId::from_parameter(codec), &packed, |b, packed| {
                b.iter(|| decompress(codec, packed, &limits).expect("decompress"))
            });
        }
        dec.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
