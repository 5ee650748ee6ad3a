//! The command queue from the [`Producer`](super::Producer) handles to the driver task.
//!
//! An unbounded multi-producer, single-consumer queue made for the send path: a push is one
//! uncontended lock and a `Vec::push`, the driver is woken only when the queue goes from empty
//! to non-empty, and the driver takes everything queued in one swap (one allocation per
//! burst, not per command). Memory is bounded by `buffer.memory`, which `send` reserves
//! before pushing a record.
//!
//! It closes like a channel: when every sender is dropped the receiver sees the end once the
//! queue is empty; when the receiver is dropped, later pushes hand the command back and
//! whatever was queued is dropped (a dropped record still resolves its future).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::task::AtomicWaker;

use super::driver::Command;

struct State {
    queued: Vec<Command>,
    senders: usize,
    receiver_alive: bool,
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
    /// Taken from the queue, not handed out yet (a burst larger than asked for).
    local: VecDeque<Command>,
}

/// A new queue.
pub(crate) fn command_queue() -> (CommandTx, CommandRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queued: Vec::new(),
            senders: 1,
            receiver_alive: true,
        }),
        waker: AtomicWaker::new(),
    });
    (
        CommandTx {
            shared: shared.clone(),
        },
        CommandRx {
            shared,
            local: VecDeque::new(),
        },
    )
}

impl CommandTx {
    /// Queues a command; hands it back if the driver is gone.
    // The command goes back by value, as tokio's `SendError<T>` does.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send(&self, cmd: Command) -> Result<(), Command> {
        let was_empty = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if !st.receiver_alive {
                return Err(cmd);
            }
            let was_empty = st.queued.is_empty();
            st.queued.push(cmd);
            was_empty
        };
        if was_empty {
            self.shared.waker.wake();
        }
        Ok(())
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
    /// Up to `max` commands in the order they were sent (at least one), or `None` once every
    /// sender is dropped and nothing is left. Cancel-safe: nothing is taken unless returned.
    pub(crate) async fn recv_many(&mut self, max: usize) -> Option<Vec<Command>> {
        let max = max.max(1);
        poll_fn(|cx| {
            if self.local.is_empty() {
                self.shared.waker.register(cx.waker());
                let taken = {
                    let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    if st.queued.is_empty() {
                        return if st.senders == 0 {
                            Poll::Ready(None)
                        } else {
                            Poll::Pending
                        };
                    }
                    // The queue keeps a vector with room for a burst like this one.
                    let room = Vec::with_capacity(st.queued.len());
                    std::mem::replace(&mut st.queued, room)
                };
                if taken.len() <= max {
                    // The usual case: handed over as it is, no copy.
                    return Poll::Ready(Some(taken));
                }
                self.local.extend(taken);
            }
            let n = self.local.len().min(max);
            Poll::Ready(Some(self.local.drain(..n).collect()))
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
        // Dropped outside the lock: a dropped record resolves its future.
        drop(queued);
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
    async fn commands_arrive_in_order_in_chunks_and_the_end_is_seen() {
        let (tx, mut rx) = command_queue();
        let tx2 = tx.clone();
        let mut answers = Vec::new();
        for i in 0..10 {
            let (c, r) = flush_cmd();
            answers.push(r);
            if i % 2 == 0 { &tx } else { &tx2 }.send(c).ok().unwrap();
        }
        let mut out = rx.recv_many(4).await.unwrap();
        assert_eq!(out.len(), 4);
        out.extend(rx.recv_many(100).await.unwrap());
        assert_eq!(out.len(), 10);
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
        let last = rx.recv_many(10).await.expect("queued before the end");
        assert_eq!(last.len(), 1);
        assert!(rx.recv_many(10).await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_a_dropped_one_refuses() {
        let (tx, mut rx) = command_queue();
        let waiter = tokio::spawn(async move { rx.recv_many(10).await.unwrap().len() });
        tokio::task::yield_now().await;
        let (c, _r) = flush_cmd();
        tx.send(c).ok().unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
        // The receiver is dropped now: sending hands the command back.
        let (c, _r) = flush_cmd();
        assert!(tx.send(c).is_err());
    }
}
