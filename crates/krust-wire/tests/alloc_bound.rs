//! Allocation bounds, measured with a counting global allocator: a few hostile bytes must not
//! make a decoder reserve memory in proportion to the counts they claim.
//!
//! One `#[test]` only: the counter is process-wide, and tests in one binary run in parallel.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use kafka_protocol::messages::MetadataResponse;
use krust_wire::frame::FrameReader;
use krust_wire::record::{batches, DecompressLimits};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f`, returning its result and the bytes allocated (total, largest single) meanwhile.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.store(0, Ordering::SeqCst);
    let before = ALLOCATED.load(Ordering::SeqCst);
    let out = f();
    (
        out,
        ALLOCATED.load(Ordering::SeqCst) - before,
        LARGEST.load(Ordering::SeqCst),
    )
}

const MIB: usize = 1 << 20;

#[test]
fn hostile_counts_allocate_little() {
    // An 8-byte Metadata v0 body: no brokers, then a topic count of 54 million.
    let mut frame = 8i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&0i32.to_be_bytes());
    frame.extend_from_slice(&54_000_000i32.to_be_bytes());
    let (res, total, largest) = measure(|| {
        let body = FrameReader::default().read_all(&frame)?.remove(0);
        krust_wire::decode_response::<MetadataResponse>(body, 0)
    });
    assert!(res.is_err(), "a count past the frame must be an error");
    assert!(total < MIB, "allocated {total} bytes (largest {largest})");

    // Same claim with a few elements' worth of real bytes behind it, at every version.
    for version in 0..=12 {
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&54_000_000i32.to_be_bytes());
        body.extend_from_slice(&[0u8; 64]);
        let (res, total, _) =
            measure(|| krust_wire::decode_response::<MetadataResponse>(Bytes::from(body), version));
        assert!(res.is_err(), "v{version}");
        assert!(total < MIB, "v{version}: allocated {total} bytes");
    }

    // A frame header announcing 2 GiB: rejected before any buffer is reserved.
    let (res, total, _) = measure(|| FrameReader::default().read_all(&[0x7f, 0xff, 0xff, 0xff, 0]));
    assert!(res.is_err());
    assert!(total < MIB);

    // A record batch claiming i32::MAX records and one with a record claiming i32::MAX headers.
    let mut batch = vec![0u8; 61];
    batch[8..12].copy_from_slice(&49i32.to_be_bytes());
    batch[16] = 2;
    batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let (res, total, _) = measure(|| {
        let b = batches(Bytes::from(batch)).next().unwrap()?;
        b.inflate_with(&DecompressLimits::with_max_output(MIB))
            .and_then(|i| i.into_records())
    });
    assert!(res.is_err());
    assert!(total < MIB, "allocated {total} bytes");
}
