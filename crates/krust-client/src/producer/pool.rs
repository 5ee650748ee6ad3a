//! Recycled batch buffers.
//!
//! A producer builds its batches one after another, each up to `batch.size` bytes. Left to the
//! allocator, every large buffer is a fresh mapping: glibc returns freed blocks above its
//! thresholds to the system (and whether it does depends on which thread freed what), musl
//! maps every large block anew. Each page of a fresh mapping then costs a fault and a clearing,
//! at 1 KiB records a quarter of a core. The pool keeps a few large buffers that went out in
//! batches and hands them to the next batches instead.
//!
//! A buffer comes back when the last reference to its batch's bytes is dropped (after the
//! batch's answer, or from a connection's writer). What the pool keeps is bounded by a byte
//! budget and a count, so an idle producer holds at most that much on top of `buffer.memory`.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use krust_wire::record::BatchBuffers;

/// Buffers smaller than this are left to the allocator (it serves them from its heap, without
/// fresh pages).
pub(crate) const POOLED_MIN: usize = 64 * 1024;

/// Most buffers a pool keeps.
const MAX_KEPT: usize = 16;

/// A pool of large batch buffers, shared by a producer's driver (which takes them) and the
/// batch bytes handed out (whose last drop gives them back).
#[derive(Debug, Clone)]
pub(crate) struct BufferPool {
    inner: Arc<Mutex<Kept>>,
}

#[derive(Debug)]
struct Kept {
    /// At most [`MAX_KEPT`] buffers.
    free: Vec<Vec<u8>>,
    /// Most bytes kept.
    budget: usize,
}

impl BufferPool {
    /// A pool keeping at most `budget` bytes of buffers.
    pub(crate) fn new(budget: usize) -> Self {
        BufferPool {
            inner: Arc::new(Mutex::new(Kept {
                free: Vec::new(),
                budget,
            })),
        }
    }

    /// An empty buffer with room for at least `capacity` bytes: a kept one that is big enough
    /// and not much bigger (the smallest such, the last given back of equal ones), or a new
    /// one.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity >= POOLED_MIN {
            let mut kept = self.lock();
            // Of equal sizes the one given back last: some of it may still be cached.
            let best = kept
                .free
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| b.capacity() >= capacity && b.capacity() / 4 <= capacity)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                return kept.free.remove(i);
            }
        }
        Vec::with_capacity(capacity)
    }

    /// Keeps `buf` for a later batch if it is large and the pool has room for it; drops it
    /// otherwise.
    pub(crate) fn give(&self, buf: Vec<u8>) {
        give_to(&self.inner, buf);
    }

    /// `buf` as batch bytes whose last drop gives it back to this pool (or frees it, once the
    /// pool is gone).
    pub(crate) fn bytes(&self, buf: Vec<u8>) -> Bytes {
        if buf.capacity() < POOLED_MIN {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Returning {
            buf,
            pool: Arc::downgrade(&self.inner),
        })
    }

    /// How many buffers, and how many bytes of them, the pool keeps now.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> (usize, usize) {
        let kept = self.lock();
        (kept.free.len(), kept.bytes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        lock(&self.inner)
    }
}

fn lock(inner: &Mutex<Kept>) -> std::sync::MutexGuard<'_, Kept> {
    // The lock guards plain bookkeeping that no panic can leave half-done.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn give_to(inner: &Mutex<Kept>, mut buf: Vec<u8>) {
    let capacity = buf.capacity();
    if capacity < POOLED_MIN {
        return;
    }
    let mut kept = lock(inner);
    if kept.free.len() < MAX_KEPT && kept.bytes() + capacity <= kept.budget {
        buf.clear();
        kept.free.push(buf);
    }
    // Else dropped: released after the lock, below.
    drop(kept);
}

impl Kept {
    /// Total capacity of the buffers kept.
    fn bytes(&self) -> usize {
        self.free.iter().map(Vec::capacity).sum()
    }
}

impl BatchBuffers for &BufferPool {
    fn take(&mut self, capacity: usize) -> Vec<u8> {
        BufferPool::take(self, capacity)
    }

    fn give(&mut self, buf: Vec<u8>) {
        BufferPool::give(self, buf);
    }

    fn freeze(&mut self, buf: Vec<u8>) -> Bytes {
        self.bytes(buf)
    }
}

/// A batch's buffer inside its [`Bytes`]; back to the pool when dropped.
struct Returning {
    buf: Vec<u8>,
    pool: Weak<Mutex<Kept>>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            give_to(&pool, std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large buffer handed out as bytes comes back when its last clone is dropped, and the
    /// next take of a similar size gets the same memory; small ones are left to the allocator.
    #[test]
    fn batch_bytes_return_their_buffer_when_the_last_clone_goes() {
        let pool = BufferPool::new(1 << 20);
        let mut buf = pool.take(100_000);
        assert!(buf.capacity() >= 100_000);
        buf.extend_from_slice(&[7; 90_000]);
        let at = buf.as_ptr();
        let bytes = pool.bytes(buf);
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.kept(), (0, 0), "a clone still holds it");
        assert_eq!(&clone[..], &[7; 10]);
        drop(clone);
        let (n, held) = pool.kept();
        assert_eq!(n, 1);
        assert!(held >= 100_000);
        let again = pool.take(80_000);
        assert_eq!(again.as_ptr(), at, "the kept buffer is reused");
        assert!(again.is_empty());
        assert_eq!(pool.kept(), (0, 0));

        let small = pool.bytes(vec![1; 100]);
        drop(small);
        assert_eq!(pool.kept(), (0, 0), "small buffers are not kept");
    }

    /// The pool keeps at most its byte budget, never hands out a buffer far larger than asked
    /// for, and prefers the smallest that fits.
    #[test]
    fn the_pool_keeps_within_its_budget_and_fits_what_it_hands_out() {
        let pool = BufferPool::new(300_000);
        pool.give(Vec::with_capacity(100_000));
        pool.give(Vec::with_capacity(150_000));
        pool.give(Vec::with_capacity(100_000));
        let (n, held) = pool.kept();
        assert_eq!(n, 2, "the third would pass the budget");
        assert!(held <= 300_000);
        // 500 KB: none fits; a new buffer.
        let big = pool.take(500_000);
        assert!(big.capacity() >= 500_000);
        assert_eq!(pool.kept().0, 2);
        // 90 KB: the 100 KB one, not the 150 KB one.
        let fit = pool.take(90_000);
        assert!(fit.capacity() >= 100_000 && fit.capacity() < 150_000);
        // 20 KB is below the pooled size: the allocator's.
        let small = pool.take(20_000);
        assert!(small.capacity() < 150_000);
        assert_eq!(pool.kept().0, 1);
        // A 1 MB buffer is not used for a 100 KB batch (four times too big).
        let pool = BufferPool::new(4 << 20);
        pool.give(Vec::with_capacity(1 << 20));
        let b = pool.take(100_000);
        assert!(b.capacity() < 1 << 20);
        assert_eq!(pool.kept().0, 1);
        // Of two equal buffers, the one given back last goes first.
        let pool = BufferPool::new(4 << 20);
        let (first, second) = (Vec::with_capacity(1 << 20), Vec::with_capacity(1 << 20));
        let second_at = second.as_ptr();
        pool.give(first);
        pool.give(second);
        let taken = pool.take(1 << 20);
        assert_eq!(taken.as_ptr(), second_at);
    }

    /// Batch bytes do not keep their pool alive; outliving it, they stay readable and free
    /// their buffer themselves.
    #[test]
    fn bytes_outliving_the_pool_free_their_buffer() {
        let pool = BufferPool::new(1 << 20);
        let bytes = pool.bytes(vec![3; POOLED_MIN]);
        let inner = Arc::downgrade(&pool.inner);
        drop(pool);
        assert!(inner.upgrade().is_none(), "the bytes held the pool");
        assert_eq!(bytes.len(), POOLED_MIN);
        assert!(bytes.iter().all(|b| *b == 3));
        drop(bytes);
    }
}
