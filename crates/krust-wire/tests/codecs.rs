//! Codec round trips and the compatibility paths: xerial and raw snappy, old-Kafka LZ4 header
//! checksums, multi-frame zstd, multi-member gzip; and decompression bounds.

use krust_wire::compression::{self, gzip, lz4, snappy, zstd, Compression, DecompressLimits};
use proptest::prelude::*;

const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn limits(max: usize) -> DecompressLimits {
    DecompressLimits::with_max_output(max)
}

/// Compressible but not trivial input.
fn text(n: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if (x >> 16).is_multiple_of(4) {
                (x >> 8) as u8
            } else {
                b"kafka record "[i % 13]
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_codec_round_trips(
        codec in proptest::sample::select(CODECS.to_vec()),
        data in proptest::collection::vec(any::<u8>(), 0..5000),
        repeat in 1usize..40,
    ) {
        let input: Vec<u8> = data.iter().copied().cycle().take(data.len() * repeat).collect();
        let c = compression::compress(codec, &input).unwrap();
        let d = compression::decompress(codec, &c, &limits(input.len().max(1))).unwrap();
        prop_assert_eq!(d, input);
    }
}

#[test]
fn compress_append_keeps_what_was_there_and_appends_a_decodable_stream() {
    let input = text(150_000);
    for codec in Compression::ALL {
        let mut out = b"header".to_vec();
        compression::compress_append(codec, &input, &mut out).unwrap();
        assert_eq!(&out[..6], b"header", "{codec}");
        let d = compression::decompress(codec, &out[6..], &limits(input.len())).unwrap();
        assert_eq!(d, input, "{codec}");
    }
}

#[test]
fn large_inputs_round_trip() {
    let input = text(300_000);
    for codec in CODECS {
        let c = compression::compress(codec, &input).unwrap();
        assert!(c.len() < input.len(), "{codec} did not compress");
        let d = compression::decompress(codec, &c, &limits(input.len())).unwrap();
        assert_eq!(d, input, "{codec}");
        // One byte less of budget is a bomb.
        assert!(
            compression::decompress(codec, &c, &limits(input.len() - 1)).is_err(),
            "{codec}"
        );
    }
}

#[test]
fn snappy_reads_raw_and_xerial_and_writes_xerial() {
    let input = text(100_000); // several 32 KiB xerial chunks
    let x = snappy::compress(&input).unwrap();
    assert_eq!(&x[..8], &snappy::XERIAL_MAGIC);
    assert_eq!(snappy::decompress(&x, input.len()).unwrap(), input);
    let raw = snappy::compress_raw(&input).unwrap();
    assert_eq!(snappy::decompress(&raw, input.len()).unwrap(), input);
    // A raw block states its length: the bound is checked before decoding.
    assert!(snappy::decompress(&raw, input.len() - 1).is_err());
    // Truncated xerial chunk, negative chunk length.
    assert!(snappy::decompress(&x[..x.len() - 1], input.len()).is_err());
    let mut neg = x[..16].to_vec();
    neg.extend_from_slice(&(-5i32).to_be_bytes());
    assert!(snappy::decompress(&neg, 1000).is_err());
    assert!(snappy::decompress(&x[..10], 1000).is_err());
}

#[test]
fn lz4_accepts_the_old_kafka_header_checksum() {
    let input = text(200_000);
    let mut frame = lz4::compress(&input).unwrap();
    lz4::break_header_checksum(&mut frame).unwrap();
    assert_eq!(lz4::decompress(&frame, input.len()).unwrap(), input);
    // Any other checksum is rejected.
    let good = lz4::compress(&input).unwrap();
    let mut bad = good.clone();
    bad[6] ^= 0x5a;
    if bad[6] != frame[6] {
        assert!(lz4::decompress(&bad, input.len()).is_err());
    }
    assert!(lz4::decompress(&good[..3], 10).is_err());
    assert!(lz4::decompress(b"not lz4 at all", 10).is_err());
}

#[test]
fn zstd_handles_several_frames_and_skippable_frames() {
    let a = text(10_000);
    let b = text(7_000);
    let mut stream = zstd::compress(&a).unwrap();
    // A skippable frame between the two.
    stream.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    stream.extend_from_slice(&3u32.to_le_bytes());
    stream.extend_from_slice(b"xyz");
    stream.extend_from_slice(&zstd::compress(&b).unwrap());
    let mut want = a.clone();
    want.extend_from_slice(&b);
    assert_eq!(zstd::decompress(&stream, want.len()).unwrap(), want);
    assert!(zstd::decompress(&stream, want.len() - 1).is_err());
    assert!(zstd::decompress(&stream[..stream.len() - 2], want.len()).is_err());
    assert!(zstd::decompress(&[], 10).is_err());
}

#[test]
fn zstd_rejects_huge_windows_and_content_sizes_before_allocating() {
    // Magic, FHD with no single-segment flag, window descriptor for a 2^41-byte window.
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0x00, 0xf8, 0, 0, 0, 0]);
    assert!(zstd::decompress(&frame, 1 << 20).is_err());
    // Single segment with an 8-byte frame content size of 2^40.
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    frame.push(0xe0);
    frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
    frame.extend_from_slice(&[0; 8]);
    assert!(zstd::decompress(&frame, 1 << 20).is_err());
}

#[test]
fn gzip_reads_concatenated_members() {
    let mut two = gzip::compress(b"hello ").unwrap();
    two.extend_from_slice(&gzip::compress(b"world").unwrap());
    assert_eq!(gzip::decompress(&two, 100).unwrap(), b"hello world");
    assert!(gzip::decompress(&two[..two.len() - 4], 100).is_err());
}

#[test]
fn bombs_are_errors_not_allocations() {
    let zeros = vec![0u8; 8 << 20];
    for codec in CODECS {
        let bomb = compression::compress(codec, &zeros).unwrap();
        let err = compression::decompress(codec, &bomb, &limits(1 << 20)).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{codec}: {err}");
        // The ratio guard alone also stops it.
        let ratio = DecompressLimits {
            max_output: usize::MAX,
            max_ratio: 10,
            ratio_floor: 1024,
        };
        assert!(
            compression::decompress(codec, &bomb, &ratio).is_err(),
            "{codec}"
        );
    }
}

#[test]
fn limit_arithmetic() {
    let l = DecompressLimits {
        max_output: 1000,
        max_ratio: 10,
        ratio_floor: 50,
    };
    assert_eq!(l.limit_for(1), 50);
    assert_eq!(l.limit_for(20), 200);
    assert_eq!(l.limit_for(500), 1000);
    assert_eq!(DecompressLimits::default().limit_for(usize::MAX), 256 << 20);
    assert_eq!(Compression::from_name("ZSTD"), Some(Compression::Zstd));
    assert!(Compression::from_code(5).is_err());
    for c in Compression::ALL {
        assert_eq!(Compression::from_code(c.code()).unwrap(), c);
    }
}

#[test]
fn garbage_is_an_error_for_every_codec() {
    for codec in CODECS {
        for junk in [
            &b""[..],
            b"\x00",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            &text(300),
        ] {
            let _ = compression::decompress(codec, junk, &limits(1 << 16));
        }
        assert!(compression::decompress(codec, b"\x01\x02\x03garbage!", &limits(1 << 16)).is_err());
    }
}
