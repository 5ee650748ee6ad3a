//! Delivery slots: where the driver leaves a record's result for its
//! [`DeliveryFuture`](super::DeliveryFuture).
//!
//! A record used to get a oneshot channel of its own (one allocation and one free per record,
//! often on two threads). Slots come in chunks of [`CHUNK`] instead: `send` hands out the next
//! slot of the current chunk (taken under the command queue's lock, which `send` holds anyway)
//! and the chunk is one allocation per [`CHUNK`] records. The driver's end
//! ([`DeliverySlot`]) and the application's end ([`DeliveryFuture`](super::DeliveryFuture))
//! each hold an `Arc` of the chunk; the chunk is freed when the last of both is gone.
//!
//! A slot moves `Empty` → (`Waiting`) → `Done` → `Taken`, or to `Abandoned` when its future
//! is dropped first (then the driver drops the result at once instead of keeping it until the
//! chunk is freed). Each chunk has one lock: results are stored under it and wakers registered
//! under it, so a result is never missed and never read twice.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::driver::Delivery;

/// Slots per chunk.
pub(crate) const CHUNK: usize = 64;

enum Slot {
    /// Not resolved, nobody waiting.
    Empty,
    /// Not resolved; the future's waker.
    Waiting(Waker),
    /// Resolved, not read yet.
    Done(Delivery),
    /// Read by the future.
    Taken,
    /// The future was dropped before the result came.
    Abandoned,
}

/// A block of [`CHUNK`] slots.
pub(crate) struct Chunk {
    slots: Mutex<Vec<Slot>>,
}

impl Chunk {
    fn new() -> Self {
        let mut slots = Vec::with_capacity(CHUNK);
        slots.resize_with(CHUNK, || Slot::Empty);
        Chunk {
            slots: Mutex::new(slots),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        // A panic while holding the lock leaves the slots consistent (every write is a whole
        // enum value): go on with them.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands out slots in order, a new chunk when the current one is used up.
#[derive(Default)]
pub(crate) struct SlotSource {
    current: Option<Arc<Chunk>>,
    next: usize,
}

impl SlotSource {
    /// The next free slot, as its two ends.
    pub(crate) fn take(&mut self) -> (DeliverySlot, SlotFuture) {
        let chunk = match &self.current {
            Some(c) if self.next < CHUNK => c.clone(),
            _ => {
                let c = Arc::new(Chunk::new());
                self.current = Some(c.clone());
                self.next = 0;
                c
            }
        };
        let index = self.next as u32;
        self.next += 1;
        (
            DeliverySlot {
                chunk: Some(chunk.clone()),
                index,
            },
            SlotFuture { chunk, index },
        )
    }
}

/// The driver's end of one slot: resolves it once.
pub(crate) struct DeliverySlot {
    /// `None` once resolved (or given up).
    chunk: Option<Arc<Chunk>>,
    index: u32,
}

impl DeliverySlot {
    /// Whether the slot still waits for its result.
    pub(crate) fn is_open(&self) -> bool {
        self.chunk.is_some()
    }

    /// Stores the result and wakes the future waiting for it. A result whose future is gone
    /// is dropped here.
    pub(crate) fn resolve(&mut self, result: Delivery) {
        let Some(chunk) = self.chunk.take() else {
            return;
        };
        let (waker, unwanted) = {
            let mut slots = chunk.lock();
            let slot = &mut slots[self.index as usize];
            match slot {
                Slot::Abandoned => (None, Some(result)),
                _ => match std::mem::replace(slot, Slot::Done(result)) {
                    Slot::Waiting(w) => (Some(w), None),
                    _ => (None, None),
                },
            }
        };
        // Outside the lock: dropping a result frees its strings, waking may run code.
        drop(unwanted);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for DeliverySlot {
    /// A slot dropped without a result (a `Pending` gives its own `Closed` result first, so
    /// this is a safety net): its future ends without a result instead of waiting forever.
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            let waker = {
                let mut slots = chunk.lock();
                let slot = &mut slots[self.index as usize];
                match slot {
                    Slot::Abandoned => None,
                    _ => match std::mem::replace(slot, Slot::Taken) {
                        Slot::Waiting(w) => Some(w),
                        _ => None,
                    },
                }
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// The application's end of one slot.
pub(crate) struct SlotFuture {
    chunk: Arc<Chunk>,
    index: u32,
}

impl fmt::Debug for SlotFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotFuture")
            .field("index", &self.index)
            .finish()
    }
}

impl SlotFuture {
    /// The result if it is there (`Some(None)`: it was read already, or its
    /// driver end was dropped without one), or registers the waker.
    pub(crate) fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let mut slots = self.chunk.lock();
        let slot = &mut slots[self.index as usize];
        match slot {
            Slot::Done(_) => match std::mem::replace(slot, Slot::Taken) {
                Slot::Done(r) => Poll::Ready(Some(r)),
                _ => unreachable!("matched Done"),
            },
            Slot::Taken | Slot::Abandoned => Poll::Ready(None),
            Slot::Waiting(w) if w.will_wake(cx.waker()) => Poll::Pending,
            _ => {
                *slot = Slot::Waiting(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for SlotFuture {
    fn drop(&mut self) {
        let old = {
            let mut slots = self.chunk.lock();
            let slot = &mut slots[self.index as usize];
            match slot {
                Slot::Taken => return,
                _ => std::mem::replace(slot, Slot::Abandoned),
            }
        };
        // A result nobody reads is freed now (outside the lock), not with the chunk.
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::RecordMetadata;
    use std::future::poll_fn;

    fn md(offset: i64) -> Delivery {
        Ok(RecordMetadata {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp: 1,
        })
    }

    #[tokio::test]
    async fn results_reach_their_own_futures_across_chunks_in_any_order() {
        let mut source = SlotSource::default();
        let n = CHUNK * 2 + 5;
        let (mut slots, mut futures): (Vec<_>, Vec<_>) = (0..n).map(|_| source.take()).unzip();
        // Resolved backwards, read forwards: each future sees its own offset.
        for (i, s) in slots.iter_mut().enumerate().rev() {
            s.resolve(md(i as i64));
            assert!(!s.is_open());
        }
        for (i, f) in futures.iter_mut().enumerate() {
            let r = poll_fn(|cx| f.poll_result(cx)).await;
            assert_eq!(r.unwrap().unwrap().offset, i as i64);
            // Read once: a second poll says so instead of handing it out again.
            assert!(poll_fn(|cx| f.poll_result(cx)).await.is_none());
        }
    }

    #[tokio::test]
    async fn a_waiting_future_is_woken_by_its_result_or_by_a_dropped_slot() {
        let mut source = SlotSource::default();
        let (mut slot, mut fut) = source.take();
        let reader = tokio::spawn(async move { poll_fn(|cx| fut.poll_result(cx)).await });
        tokio::task::yield_now().await;
        slot.resolve(md(7));
        assert_eq!(reader.await.unwrap().unwrap().unwrap().offset, 7);

        let (slot, mut fut) = source.take();
        let reader = tokio::spawn(async move { poll_fn(|cx| fut.poll_result(cx)).await });
        tokio::task::yield_now().await;
        // A driver end dropped without a result ends its future (with no result) at once.
        drop(slot);
        assert!(reader.await.unwrap().is_none());
    }

    #[test]
    fn a_result_for_a_dropped_future_is_freed_at_once() {
        let mut source = SlotSource::default();
        let (mut slot, fut) = source.take();
        let (_keep, keep_fut) = source.take();
        drop(fut);
        slot.resolve(md(1));
        // The chunk lives on (`_keep`), but the abandoned slot keeps no result.
        let slots = keep_fut.chunk.lock();
        assert!(matches!(slots[0], Slot::Abandoned));
        assert!(matches!(slots[1], Slot::Empty));
    }
}
