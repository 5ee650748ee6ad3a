//! Delivery slots: where the driver leaves a record's result for its
//! [`DeliveryFuture`](super::DeliveryFuture).
//!
//! A record used to get a oneshot channel of its own (one allocation and one free per record,
//! often on two threads). Slots come in chunks of [`CHUNK`] instead: `send` hands out the next
//! slot of the current chunk (taken under the command queue's lock, which `send` holds anyway)
//! and the chunk is one allocation per [`CHUNK`] records. The application's ends
//! ([`DeliveryFuture`](super::DeliveryFuture)) each hold an `Arc` of the chunk; the driver's
//! ends ([`DeliverySlot`]) hold an `Arc` of the chunk's [`DriverChunk`], which the chunk's first
//! slot carries to the driver and [`SlotAttacher`] hands to the others on the driver's thread.
//! So no reference count is changed per record by both threads (a cache line moving between
//! cores for every record), and the driver stores a batch's results a chunk at a time under one
//! lock ([`Resolutions`]). The chunk is freed when the last end of either kind is gone.
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
    /// The next free slot, as its two ends. The driver end of a chunk's first slot carries the
    /// chunk's [`DriverChunk`]; the others get it from [`SlotAttacher::attach`] on the driver's
    /// thread (so handing out a slot changes no reference count the driver also changes).
    pub(crate) fn take(&mut self) -> (DeliverySlot, SlotFuture) {
        let (chunk, seed) = match &self.current {
            Some(c) if self.next < CHUNK => (c.clone(), None),
            _ => {
                let c = Arc::new(Chunk::new());
                self.current = Some(c.clone());
                self.next = 0;
                let seed = Arc::new(DriverChunk(c.clone()));
                (c, Some(seed))
            }
        };
        let index = self.next as u32;
        self.next += 1;
        (
            DeliverySlot {
                chunk: seed,
                index,
                open: true,
            },
            SlotFuture {
                chunk,
                index,
                read: false,
            },
        )
    }
}

/// The driver's hold on one chunk, shared by the chunk's driver ends. Its reference count is
/// only ever changed on the driver's thread; the application's futures count on the chunk
/// itself. When the last driver end is gone, any slot still unresolved is given up (its
/// future ends without a result instead of waiting forever).
pub(crate) struct DriverChunk(Arc<Chunk>);

impl Drop for DriverChunk {
    fn drop(&mut self) {
        let mut wakers = Vec::new();
        {
            let mut slots = self.0.lock();
            for slot in slots.iter_mut() {
                if matches!(slot, Slot::Empty | Slot::Waiting(_)) {
                    if let Slot::Waiting(w) = std::mem::replace(slot, Slot::Taken) {
                        wakers.push(w);
                    }
                }
            }
        }
        for w in wakers {
            w.wake();
        }
    }
}

/// Gives each driver end its chunk's [`DriverChunk`], in the order the slots were taken (the
/// order of the command queue): a chunk's first slot brings it, the following ones share it.
#[derive(Default)]
pub(crate) struct SlotAttacher {
    current: Option<Arc<DriverChunk>>,
}

impl SlotAttacher {
    /// Attaches `slot` (taken right after the last slot attached).
    pub(crate) fn attach(&mut self, slot: &mut DeliverySlot) {
        match &slot.chunk {
            Some(c) => self.current = Some(c.clone()),
            None => slot.chunk = self.current.clone(),
        }
    }
}

/// The driver's end of one slot: resolves it once.
pub(crate) struct DeliverySlot {
    /// Set by [`SlotAttacher::attach`] (or at creation for a chunk's first slot); `None`
    /// again once resolved.
    chunk: Option<Arc<DriverChunk>>,
    index: u32,
    /// Still waiting for its result.
    open: bool,
}

/// Stores `result` in slot `index` of `slots`; returns the waker to wake, or the result back
/// when its future is gone (to be dropped outside the lock).
fn store(slots: &mut [Slot], index: u32, result: Delivery) -> (Option<Waker>, Option<Delivery>) {
    let slot = &mut slots[index as usize];
    match slot {
        Slot::Abandoned => (None, Some(result)),
        _ => match std::mem::replace(slot, Slot::Done(result)) {
            Slot::Waiting(w) => (Some(w), None),
            _ => (None, None),
        },
    }
}

impl DeliverySlot {
    /// Stores the result and wakes the future waiting for it. A result whose future is gone
    /// is dropped here.
    pub(crate) fn resolve(&mut self, result: Delivery) {
        if !std::mem::replace(&mut self.open, false) {
            return;
        }
        let Some(chunk) = self.chunk.take() else {
            debug_assert!(false, "a slot resolved before it was attached");
            return;
        };
        let (waker, unwanted) = store(&mut chunk.0.lock(), self.index, result);
        // Outside the lock: dropping a result frees its strings, waking may run code.
        drop(unwanted);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for DeliverySlot {
    /// A slot dropped without a result (a record the driver gives up resolves it with its own
    /// `Closed` result first, handing the record back, so this covers a batch in flight when
    /// the driver task is dropped, and is a safety net otherwise): its future ends without a
    /// result instead of waiting forever.
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        if let Some(chunk) = self.chunk.take() {
            let waker = {
                let mut slots = chunk.0.lock();
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

/// Results stored a chunk at a time: consecutive results for slots of one chunk (the usual
/// case: a batch's records were sent one after another) take the chunk's lock once, not once
/// per record. [`Resolutions::flush`] (or dropping it) stores what is gathered.
#[derive(Default)]
pub(crate) struct Resolutions {
    chunk: Option<Arc<DriverChunk>>,
    results: Vec<(u32, Delivery)>,
    wakers: Vec<Waker>,
    unwanted: Vec<Delivery>,
}

impl Resolutions {
    /// Resolves `slot` with `result` (stored at the next change of chunk or flush).
    pub(crate) fn add(&mut self, slot: &mut DeliverySlot, result: Delivery) {
        if !std::mem::replace(&mut slot.open, false) {
            return;
        }
        let Some(chunk) = slot.chunk.take() else {
            debug_assert!(false, "a slot resolved before it was attached");
            return;
        };
        if !self.chunk.as_ref().is_some_and(|c| Arc::ptr_eq(c, &chunk)) {
            self.flush();
            self.chunk = Some(chunk);
        }
        self.results.push((slot.index, result));
    }

    /// Stores the gathered results under one lock, then wakes their futures.
    pub(crate) fn flush(&mut self) {
        let Some(chunk) = self.chunk.take() else {
            return;
        };
        {
            let mut slots = chunk.0.lock();
            for (index, result) in self.results.drain(..) {
                let (waker, unwanted) = store(&mut slots, index, result);
                self.wakers.extend(waker);
                self.unwanted.extend(unwanted);
            }
        }
        // Outside the lock, as in `DeliverySlot::resolve`.
        self.unwanted.clear();
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }
}

impl Drop for Resolutions {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The application's end of one slot.
pub(crate) struct SlotFuture {
    chunk: Arc<Chunk>,
    index: u32,
    /// Its result (or its absence) was read: nothing left to do on drop.
    read: bool,
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
        if self.read {
            return Poll::Ready(None);
        }
        let mut slots = self.chunk.lock();
        let slot = &mut slots[self.index as usize];
        match slot {
            Slot::Done(_) => match std::mem::replace(slot, Slot::Taken) {
                Slot::Done(r) => {
                    self.read = true;
                    Poll::Ready(Some(r))
                }
                _ => unreachable!("matched Done"),
            },
            Slot::Taken | Slot::Abandoned => {
                self.read = true;
                Poll::Ready(None)
            }
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
        if self.read {
            return;
        }
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

    /// A slot's two ends, the driver end attached as the command queue does.
    fn take(source: &mut SlotSource, attacher: &mut SlotAttacher) -> (DeliverySlot, SlotFuture) {
        let (mut slot, fut) = source.take();
        attacher.attach(&mut slot);
        (slot, fut)
    }

    #[tokio::test]
    async fn results_reach_their_own_futures_across_chunks_in_any_order() {
        let mut source = SlotSource::default();
        let mut attacher = SlotAttacher::default();
        let n = CHUNK * 2 + 5;
        let (mut slots, mut futures): (Vec<_>, Vec<_>) =
            (0..n).map(|_| take(&mut source, &mut attacher)).unzip();
        // Resolved backwards, read forwards: each future sees its own offset.
        for (i, s) in slots.iter_mut().enumerate().rev() {
            s.resolve(md(i as i64));
            assert!(!s.open);
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
        let mut attacher = SlotAttacher::default();
        let (mut slot, mut fut) = take(&mut source, &mut attacher);
        let reader = tokio::spawn(async move { poll_fn(|cx| fut.poll_result(cx)).await });
        tokio::task::yield_now().await;
        slot.resolve(md(7));
        assert_eq!(reader.await.unwrap().unwrap().unwrap().offset, 7);

        let (slot, mut fut) = take(&mut source, &mut attacher);
        let reader = tokio::spawn(async move { poll_fn(|cx| fut.poll_result(cx)).await });
        tokio::task::yield_now().await;
        // A driver end dropped without a result ends its future (with no result) at once.
        drop(slot);
        assert!(reader.await.unwrap().is_none());
    }

    #[test]
    fn a_result_for_a_dropped_future_is_freed_at_once() {
        let mut source = SlotSource::default();
        let mut attacher = SlotAttacher::default();
        let (mut slot, fut) = take(&mut source, &mut attacher);
        let (_keep, keep_fut) = take(&mut source, &mut attacher);
        drop(fut);
        slot.resolve(md(1));
        // The chunk lives on (`_keep`), but the abandoned slot keeps no result.
        let slots = keep_fut.chunk.lock();
        assert!(matches!(slots[0], Slot::Abandoned));
        assert!(matches!(slots[1], Slot::Empty));
    }

    #[tokio::test]
    async fn results_stored_a_chunk_at_a_time_reach_their_futures_and_wake_them() {
        let mut source = SlotSource::default();
        let mut attacher = SlotAttacher::default();
        let n = CHUNK + 10;
        let (mut slots, mut futures): (Vec<_>, Vec<_>) =
            (0..n).map(|_| take(&mut source, &mut attacher)).unzip();
        // One future waits (its waker must be woken by the flush), one is dropped first.
        let mut waiting = futures.remove(3);
        let reader = tokio::spawn(async move { poll_fn(|cx| waiting.poll_result(cx)).await });
        tokio::task::yield_now().await;
        drop(futures.remove(4)); // slot 5's future
        let mut res = Resolutions::default();
        for (i, s) in slots.iter_mut().enumerate() {
            res.add(s, md(i as i64));
            assert!(!s.open);
        }
        // The first chunk's results were stored when the chunk changed, the rest here.
        res.flush();
        assert_eq!(reader.await.unwrap().unwrap().unwrap().offset, 3);
        let offsets: Vec<i64> = futures
            .iter_mut()
            .map(|f| {
                let r = f.poll_result(&mut Context::from_waker(Waker::noop()));
                match r {
                    Poll::Ready(Some(Ok(m))) => m.offset,
                    other => panic!("no result: {:?}", other.map(|r| r.map(|r| r.is_ok()))),
                }
            })
            .collect();
        let want: Vec<i64> = (0..n as i64).filter(|i| *i != 3 && *i != 5).collect();
        assert_eq!(offsets, want);
        // A second add for a resolved slot changes nothing.
        res.add(&mut slots[0], md(99));
        res.flush();
    }

    #[tokio::test]
    async fn the_last_driver_end_of_a_chunk_gives_up_its_unresolved_slots() {
        let mut source = SlotSource::default();
        let mut attacher = SlotAttacher::default();
        let (first, _f0) = take(&mut source, &mut attacher);
        // A slot never attached (as if its record were lost before reaching the driver).
        let (unattached, mut fut) = source.take();
        std::mem::forget(unattached);
        let reader = tokio::spawn(async move { poll_fn(|cx| fut.poll_result(cx)).await });
        tokio::task::yield_now().await;
        drop(first);
        drop(attacher);
        assert!(reader.await.unwrap().is_none(), "ended without a result");
    }
}
