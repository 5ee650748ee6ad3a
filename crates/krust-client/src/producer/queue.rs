//! The command queue from the [`Producer`](super::Producer) handles to the driver task.
//!
//! An unbounded multi-producer, single-consumer queue made for the send path: a push is one
//! uncontended lock and a `Vec::push`, the driver is woken only when the queue goes from empty
//! to non-empty, and the driver takes everything queued in one swap (one allocation per
//! burst, not per command). Memory is bounded by `buffer.memory`, which `send` reserves
//! before pushing a record.
//!
//! *Lazy* mode (set by the driver while `linger.ms` is positive and its own timer fires within
//! `linger.ms` anyway): a record pushed then does not wake the driver (the push into an empty
//! queue notes the time instead, one clock read per burst), unless the queue holds
//! [`LAZY_WAKE_LEN`] commands or its records reach the driver's *room* (the fewest record bytes
//! that can make a batch sendable: a record as large as a batch goes out at once, not at the
//! end of the linger); any other command wakes it. The driver picks the records up at
//! its timer and opens their batches at the noted time, so no record waits longer than
//! `linger.ms` before its batch may be sent, and a fast sender costs the driver one wake-up per
//! burst instead of one per record.
//!
//! It closes like a channel: when every sender is dropped the receiver sees the end once the
//! queue is empty; when the receiver is dropped, later pushes hand the command back and
//! whatever was queued is dropped (a dropped record still resolves its future).

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use futures::task::AtomicWaker;

use super::delivery::{SlotAttacher, SlotFuture, SlotSource};
use super::driver::{Command, Pending};
use super::ProducerRecord;

/// Queued commands that wake a lazy driver.
pub(crate) const LAZY_WAKE_LEN: usize = 1024;

/// Commands' worth of capacity a queue vector keeps between bursts (about 0.75 MB). The usual
/// burst is about [`LAZY_WAKE_LEN`]; a rare long one (the records that waited for a topic's
/// metadata) gets a vector of its own that is freed after it instead of being kept for good.
const RETAINED_BURST: usize = 4 * LAZY_WAKE_LEN;

struct State {
    queued: Vec<Command>,
    senders: usize,
    receiver_alive: bool,
    lazy: bool,
    /// In lazy mode, the queued record bytes that wake the driver (see the module docs).
    room: usize,
    /// Record bytes queued since the driver last took the queue.
    queued_bytes: usize,
    /// When the first command of the queue was pushed without waking the driver.
    first_unwoken: Option<Instant>,
    /// Delivery slots for the records pushed (taken under this lock, which a push holds
    /// anyway).
    slots: SlotSource,
}

struct Shared {
    state: Mutex<State>,
    waker: AtomicWaker,
}

/// The sending side; clones share the queue.
pub(crate) struct CommandTx {
    shared: Arc<Shared>,
}

/// The driver's side.
pub(crate) struct CommandRx {
    shared: Arc<Shared>,
    /// `first_unwoken` of the commands taken last from the queue.
    first_unwoken: Option<Instant>,
    /// An emptied burst vector handed back by [`CommandRx::recycle`], put in the queue's place
    /// at the next take so senders push into memory already allocated.
    spare: Vec<Command>,
    /// Attaches each record's delivery slot to its chunk as the record is handed out (in
    /// queue order, which is the order the slots were taken in).
    attacher: SlotAttacher,
}

impl CommandRx {
    fn attach(&mut self, cmd: &mut Command) {
        if let Command::Send(p) = cmd {
            self.attacher.attach(p.slot_mut());
        }
    }
}

/// A new queue.
pub(crate) fn command_queue() -> (CommandTx, CommandRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queued: Vec::new(),
            senders: 1,
            receiver_alive: true,
            lazy: false,
            room: usize::MAX,
            queued_bytes: 0,
            first_unwoken: None,
            slots: SlotSource::default(),
        }),
        waker: AtomicWaker::new(),
    });
    (
        CommandTx {
            shared: shared.clone(),
        },
        CommandRx {
            shared,
            first_unwoken: None,
            spare: Vec::new(),
            attacher: SlotAttacher::default(),
        },
    )
}

impl CommandTx {
    /// Queues a command; hands it back if the driver is gone.
    // The command goes back by value, as tokio's `SendError<T>` does.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send(&self, cmd: Command) -> Result<(), Command> {
        let is_send = matches!(cmd, Command::Send(_));
        let wake = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if !st.receiver_alive {
                return Err(cmd);
            }
            let was_empty = st.queued.is_empty();
            st.queued.push(cmd);
            if st.lazy && is_send {
                if was_empty {
                    st.first_unwoken = Some(Instant::now());
                }
                st.queued.len() == LAZY_WAKE_LEN
            } else {
                was_empty || st.lazy
            }
        };
        if wake {
            self.shared.waker.wake();
        }
        Ok(())
    }
}

impl CommandTx {
    /// Queues a record with a delivery slot of its own (`make` builds the pending record
    /// around the slot's driver end); returns the slot's other end, or hands the record back
    /// if the driver is gone.
    // The record goes back by value, as tokio's `SendError<T>` does.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send_record(
        &self,
        record: ProducerRecord,
        size: usize,
        make: impl FnOnce(ProducerRecord, super::delivery::DeliverySlot) -> Pending,
    ) -> Result<SlotFuture, ProducerRecord> {
        let wake = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if !st.receiver_alive {
                return Err(record);
            }
            let (slot, fut) = st.slots.take();
            let was_empty = st.queued.is_empty();
            st.queued.push(Command::Send(make(record, slot)));
            let before = st.queued_bytes;
            st.queued_bytes = before.saturating_add(size);
            let wake = if st.lazy {
                if was_empty {
                    st.first_unwoken = Some(Instant::now());
                }
                // Once when the bytes reach the room (the driver may not have taken the queue
                // yet when more come).
                st.queued.len() == LAZY_WAKE_LEN || (before < st.room && st.queued_bytes >= st.room)
            } else {
                was_empty
            };
            (wake, fut)
        };
        if wake.0 {
            self.shared.waker.wake();
        }
        Ok(wake.1)
    }
}

impl Clone for CommandTx {
    fn clone(&self) -> Self {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .senders += 1;
        CommandTx {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for CommandTx {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.waker.wake();
        }
    }
}

impl CommandRx {
    /// Lazy mode on (`Some(room)`: queued record bytes that wake the driver) or off (see the
    /// module docs).
    pub(crate) fn set_lazy(&self, lazy: Option<usize>) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.lazy = lazy.is_some();
        st.room = lazy.unwrap_or(usize::MAX);
    }

    /// When the oldest command of the burst last returned by [`CommandRx::recv_many`] was
    /// queued, if it was queued without waking the driver (lazy mode).
    pub(crate) fn first_unwoken(&self) -> Option<Instant> {
        self.first_unwoken
    }

    /// Hands back a burst vector returned by [`CommandRx::recv_many`] once its commands are
    /// taken out, to be reused as the queue's next vector (the larger of two is kept).
    pub(crate) fn recycle(&mut self, mut burst: Vec<Command>) {
        burst.clear();
        burst.shrink_to(RETAINED_BURST);
        if burst.capacity() > self.spare.capacity() {
            self.spare = burst;
        }
    }

    /// Everything queued, in the order it was sent (at least one command), or `None` once
    /// every sender is dropped and nothing is left. The whole queue is handed over as it is
    /// (no copy of the commands: a record moved costs a copy of its ~180 bytes); the driver
    /// bounds how much it handles between its I/O passes. Cancel-safe: nothing is taken unless
    /// returned.
    pub(crate) async fn recv_many(&mut self) -> Option<Vec<Command>> {
        poll_fn(|cx| {
            self.shared.waker.register(cx.waker());
            let mut taken = {
                let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.queued.is_empty() {
                    return if st.senders == 0 {
                        Poll::Ready(None)
                    } else {
                        Poll::Pending
                    };
                }
                // The queue keeps a vector with room for a burst like this one (up to
                // `RETAINED_BURST`): the recycled one when it is large enough.
                let want = st.queued.len().min(RETAINED_BURST);
                let room = if self.spare.capacity() >= want {
                    std::mem::take(&mut self.spare)
                } else {
                    Vec::with_capacity(want)
                };
                self.first_unwoken = st.first_unwoken.take();
                st.queued_bytes = 0;
                std::mem::replace(&mut st.queued, room)
            };
            for cmd in &mut taken {
                self.attach(cmd);
            }
            Poll::Ready(Some(taken))
        })
        .await
    }
}

impl Drop for CommandRx {
    fn drop(&mut self) {
        let queued = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.receiver_alive = false;
            std::mem::take(&mut st.queued)
        };
        // Given up outside the lock, attached in order first: each record resolves its future
        // (handing the record back).
        let mut rest = queued;
        for cmd in &mut rest {
            self.attach(cmd);
        }
        for cmd in rest {
            if let Command::Send(p) = cmd {
                p.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn flush_cmd() -> (Command, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Command::Flush(tx), rx)
    }

    #[tokio::test]
    async fn a_recycled_burst_vector_is_the_queue_s_next_one() {
        let (tx, mut rx) = command_queue();
        let mut keep = Vec::new();
        for _ in 0..8 {
            let (c, r) = flush_cmd();
            keep.push(r);
            tx.send(c).ok().unwrap();
        }
        let mut first = rx.recv_many().await.unwrap();
        assert_eq!(first.len(), 8);
        first.clear();
        let ptr = first.as_ptr();
        rx.recycle(first);
        for _ in 0..3 {
            let (c, r) = flush_cmd();
            keep.push(r);
            tx.send(c).ok().unwrap();
        }
        let second = rx.recv_many().await.unwrap();
        assert_eq!(second.len(), 3);
        // `second` is the vector that replaced the first burst's; the recycled one is now
        // where senders push: the next burst comes back in it.
        rx.recycle(second);
        let (c, r) = flush_cmd();
        keep.push(r);
        tx.send(c).ok().unwrap();
        let third = rx.recv_many().await.unwrap();
        assert_eq!(third.len(), 1);
        assert_eq!(third.as_ptr(), ptr, "pushed into the recycled allocation");
        assert!(third.capacity() >= 8);
    }

    #[tokio::test]
    async fn a_long_burst_s_vector_is_not_kept_at_its_size() {
        let (tx, mut rx) = command_queue();
        let mut keep = Vec::new();
        for _ in 0..RETAINED_BURST + 100 {
            let (c, r) = flush_cmd();
            keep.push(r);
            tx.send(c).ok().unwrap();
        }
        let burst = rx.recv_many().await.unwrap();
        assert_eq!(burst.len(), RETAINED_BURST + 100);
        assert!(burst.capacity() > RETAINED_BURST);
        rx.recycle(burst);
        assert!(
            rx.spare.capacity() <= RETAINED_BURST,
            "{}",
            rx.spare.capacity()
        );
        assert!(rx.spare.capacity() > 0, "still kept for the usual bursts");
    }

    #[tokio::test]
    async fn commands_arrive_in_order_and_the_end_is_seen() {
        let (tx, mut rx) = command_queue();
        let tx2 = tx.clone();
        let mut answers = Vec::new();
        for i in 0..10 {
            let (c, r) = flush_cmd();
            answers.push(r);
            if i % 2 == 0 { &tx } else { &tx2 }.send(c).ok().unwrap();
        }
        let mut out = rx.recv_many().await.unwrap();
        assert_eq!(out.len(), 10, "the whole queue in one burst");
        // Answer them in the order received: each answer reaches the receiver made with it,
        // in send order.
        for c in out.drain(..) {
            match c {
                Command::Flush(w) => w.send(()).unwrap(),
                _ => unreachable!(),
            }
        }
        for r in answers {
            r.await.unwrap();
        }
        drop(tx);
        let (c, _r) = flush_cmd();
        tx2.send(c).ok().unwrap();
        drop(tx2);
        let last = rx.recv_many().await.expect("queued before the end");
        assert_eq!(last.len(), 1);
        assert!(rx.recv_many().await.is_none());
    }

    struct WakeCount(std::sync::atomic::AtomicUsize);
    impl futures::task::ArcWake for WakeCount {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn send_cmd(tx: &CommandTx) {
        let record = crate::producer::ProducerRecord::new("t").with_value("v");
        let fut = tx
            .send_record(record, 10, |r, slot| Pending::new(r, slot, 10, 10))
            .ok()
            .unwrap();
        drop(fut);
    }

    #[tokio::test]
    async fn records_queued_when_the_driver_is_dropped_get_their_own_records_back() {
        use crate::producer::ProduceErrorKind;
        let (tx, rx) = command_queue();
        let n = super::super::delivery::CHUNK + 3;
        let mut futs = Vec::new();
        for i in 0..n {
            let record =
                crate::producer::ProducerRecord::new("t").with_value(format!("v{i}").into_bytes());
            futs.push(
                tx.send_record(record, 10, |r, slot| Pending::new(r, slot, 10, 10))
                    .ok()
                    .unwrap(),
            );
        }
        // Never received: the drop attaches them (across a chunk boundary) and fails them.
        drop(rx);
        for (i, mut f) in futs.into_iter().enumerate() {
            let r = std::future::poll_fn(|cx| f.poll_result(cx)).await;
            let e = r.expect("a result").expect_err("failed");
            assert_eq!(*e.kind(), ProduceErrorKind::Closed);
            let back = e.into_record().expect("the record back");
            assert_eq!(back.value.unwrap(), format!("v{i}").into_bytes());
        }
    }

    #[test]
    fn a_lazy_receiver_is_woken_by_a_full_burst_or_another_command_and_learns_when_it_began() {
        use std::future::Future;
        use std::sync::atomic::Ordering::SeqCst;
        let (tx, mut rx) = command_queue();
        rx.set_lazy(Some(usize::MAX));
        let count = Arc::new(WakeCount(Default::default()));
        let waker = futures::task::waker(count.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let before = Instant::now();
        {
            let mut fut = Box::pin(rx.recv_many());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            for _ in 0..LAZY_WAKE_LEN - 1 {
                send_cmd(&tx);
            }
            assert_eq!(count.0.load(SeqCst), 0, "records alone do not wake it");
            send_cmd(&tx);
            assert_eq!(count.0.load(SeqCst), 1, "a full burst does");
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(Some(cmds)) => assert_eq!(cmds.len(), LAZY_WAKE_LEN),
                other => panic!(
                    "expected the burst, got {:?}",
                    other.map(|o| o.map(|v| v.len()))
                ),
            }
        }
        let first = rx.first_unwoken().expect("noted at the first push");
        assert!(first >= before && first <= Instant::now());
        {
            let mut fut = Box::pin(rx.recv_many());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            send_cmd(&tx);
            assert_eq!(count.0.load(SeqCst), 1);
            let (c, _r) = flush_cmd();
            tx.send(c).ok().unwrap();
            assert_eq!(count.0.load(SeqCst), 2, "a flush wakes it at once");
            assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(v)) if v.len() == 2));
        }
        // Records whose bytes reach the room wake it, once.
        rx.set_lazy(Some(25));
        {
            let mut fut = Box::pin(rx.recv_many());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            send_cmd(&tx);
            send_cmd(&tx);
            assert_eq!(count.0.load(SeqCst), 2, "20 bytes of 25 do not wake it");
            send_cmd(&tx);
            assert_eq!(count.0.load(SeqCst), 3, "30 bytes of 25 do");
            send_cmd(&tx);
            assert_eq!(count.0.load(SeqCst), 3, "woken once");
            assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(v)) if v.len() == 4));
        }
        // The count starts again with the next burst.
        {
            let mut fut = Box::pin(rx.recv_many());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            send_cmd(&tx);
            send_cmd(&tx);
            assert_eq!(count.0.load(SeqCst), 3);
            send_cmd(&tx);
            assert_eq!(count.0.load(SeqCst), 4);
            assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(v)) if v.len() == 3));
        }
        // Not lazy: the first record wakes it, with no arrival time noted.
        rx.set_lazy(None);
        let mut fut = Box::pin(rx.recv_many());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        send_cmd(&tx);
        assert_eq!(count.0.load(SeqCst), 5);
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(v)) if v.len() == 1));
        drop(fut);
        assert_eq!(rx.first_unwoken(), None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_a_dropped_one_refuses() {
        let (tx, mut rx) = command_queue();
        let waiter = tokio::spawn(async move { rx.recv_many().await.unwrap().len() });
        tokio::task::yield_now().await;
        let (c, _r) = flush_cmd();
        tx.send(c).ok().unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
        // The receiver is dropped now: sending hands the command back.
        let (c, _r) = flush_cmd();
        assert!(tx.send(c).is_err());
    }
}
