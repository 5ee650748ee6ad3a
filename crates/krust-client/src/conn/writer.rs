//! The write side of a connection: small frames written at once by the task that sends them,
//! larger ones by the connection's writer task, which may run on the I/O thread.
//!
//! - **Inline.** A frame of at most [`INLINE_MAX`] bytes with nothing queued before it is
//!   written by the sending task right away, without waiting (one system call, no hand-off to
//!   another task or thread): the latency of a small request is the socket's.
//! - **Queued.** A larger frame, a frame behind others still queued, and whatever an inline
//!   write could not finish (a full socket buffer, or bytes a TLS session still buffers) go to
//!   the writer task, which writes them in order, several frames per vectored write, and
//!   flushes after each batch.
//! - **The I/O thread.** With `io.thread` on (the default), every connection's writer task runs
//!   on one dedicated thread of the process, `krust-io` (a one-worker tokio runtime started at
//!   the first connection). A producer's large requests are then copied into the kernel and
//!   through its TCP stack beside the task that builds the next request, not in turn with it
//!   (librdkafka's broker threads and the Java client's sender thread do their socket writes
//!   apart from the application's thread in the same way). The socket itself stays registered
//!   with the caller's runtime, so responses are read there without a hand-off.
//!
//! Order: a frame is written inline only when no other frame is queued or being written, and
//! the rest of one cut short is queued first, so frames reach the socket whole and in the order
//! they were sent. A frame is taken whole or refused whole (when the connection is closed).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use krust_wire::frame::FramePiece;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tracing::warn;

use super::{BoxWrite, Shared};

/// The largest frame written inline by the sending task; larger frames go to the writer task.
pub(super) const INLINE_MAX: usize = 64 * 1024;

/// Most frames the writer task takes for one vectored write.
const WRITER_BATCH: usize = 64;

/// Most slices passed to one vectored write (Linux's `IOV_MAX` is 1024).
const MAX_IOV: usize = 512;

/// A transport without vectored writes gets parts shorter than this gathered into writes of
/// about this size.
const STAGE_MAX: usize = 64 * 1024;

/// A frame on its way to the socket.
pub(super) struct Outgoing {
    /// The frame, or its first piece.
    pub frame: Bytes,
    /// The frame's further pieces (a Produce request's large record batches, written from
    /// their own buffers, values kept by reference included, rather than copied into `frame`).
    pub rest: Vec<FramePiece>,
    /// Told once the frame is written and flushed.
    pub written: Option<oneshot::Sender<()>>,
}

impl Outgoing {
    /// The frame's length in bytes.
    pub(super) fn len(&self) -> usize {
        self.frame.len() + self.rest.iter().map(FramePiece::len).sum::<usize>()
    }

    fn done(self) {
        if let Some(w) = self.written {
            let _ = w.send(());
        }
    }
}

struct State {
    /// The socket's write half; `None` while the writer task writes with it, and once closed.
    half: Option<BoxWrite>,
    /// Frames not yet wholly written, in order.
    queue: VecDeque<Outgoing>,
    /// Bytes of the first queued frame already written (by an inline write cut short).
    head_done: usize,
    /// The writer task has frames to write: set when it is woken, cleared when it finds the
    /// queue empty. While set, nothing is written inline.
    active: bool,
}

/// The write side of one connection.
pub(super) struct Writer {
    state: Mutex<State>,
    wake: Notify,
}

impl Writer {
    /// A writer for `half`, with its task on the process's I/O thread if `on_io_thread` (and
    /// the thread could be started), else on the caller's runtime.
    pub(super) fn start(half: BoxWrite, shared: Arc<Shared>, on_io_thread: bool) -> Arc<Self> {
        let writer = Arc::new(Writer {
            state: Mutex::new(State {
                half: Some(half),
                queue: VecDeque::new(),
                head_done: 0,
                active: false,
            }),
            wake: Notify::new(),
        });
        let task = writer.clone().run(shared);
        match on_io_thread.then(io_thread).flatten() {
            Some(io) => io.spawn(task),
            None => tokio::spawn(task),
        };
        writer
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is complete when made: go on after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a frame: writes it now if it is small and nothing is ahead of it, else queues it
    /// for the writer task. Hands it back if the connection is closed. A failed inline write
    /// closes the connection (`shared`); the frame is then dropped, as a queued one would be.
    // The frame goes back by value, as tokio's `SendError<T>` does.
    #[allow(clippy::result_large_err)]
    pub(super) fn send(&self, out: Outgoing, shared: &Shared) -> Result<(), Outgoing> {
        let mut st = self.lock();
        // The writer task ends only once the connection is closed (and empties the queue
        // under this lock then): a frame taken before that is failed by the close.
        if shared.is_closed() {
            return Err(out);
        }
        let mut done = 0;
        if !st.active && st.queue.is_empty() {
            let len = out.len();
            if len <= INLINE_MAX {
                if let Some(half) = st.half.as_mut() {
                    match write_now(half, &out, len) {
                        Ok((written, true)) if written == len => {
                            drop(st);
                            out.done();
                            return Ok(());
                        }
                        Ok((written, _)) => done = written,
                        Err(e) => {
                            drop(st);
                            shared.close(format!("write failed: {e}"));
                            return Ok(());
                        }
                    }
                }
            }
        }
        if st.queue.is_empty() {
            // What an inline write left: the rest of the frame, or only its flush.
            st.head_done = done;
        }
        st.queue.push_back(out);
        if !st.active {
            st.active = true;
            drop(st);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The writer task: writes queued frames until the connection closes.
    async fn run(self: Arc<Self>, shared: Arc<Shared>) {
        let mut shutdown = shared.shutdown.subscribe();
        'outer: loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.wait_for(|closed| *closed) => break,
            }
            loop {
                let (mut half, batch, skip) = {
                    let mut st = self.lock();
                    if st.queue.is_empty() {
                        st.active = false;
                        break;
                    }
                    let Some(half) = st.half.take() else {
                        break 'outer;
                    };
                    let n = st.queue.len().min(WRITER_BATCH);
                    let batch: Vec<Outgoing> = st.queue.drain(..n).collect();
                    (half, batch, std::mem::take(&mut st.head_done))
                };
                let result = async {
                    write_frames(&mut half, &batch, skip).await?;
                    half.flush().await
                }
                .await;
                self.lock().half = Some(half);
                if let Err(e) = result {
                    shared.close(format!("write failed: {e}"));
                    break 'outer;
                }
                for m in batch {
                    m.done();
                }
                if shared.is_closed() {
                    break 'outer;
                }
            }
        }
        let half = {
            let mut st = self.lock();
            st.queue.clear();
            st.half.take()
        };
        if let Some(mut half) = half {
            let _ = half.shutdown().await;
        }
    }
}

/// The process's I/O thread (started at the first call), or `None` if it could not be
/// started (then writer tasks run on the caller's runtime).
fn io_thread() -> Option<&'static tokio::runtime::Handle> {
    static IO: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    IO.get_or_init(|| {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("krust-io")
            .enable_all()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                warn!(error = %e, "could not start the krust-io thread; writing on the caller's runtime");
                None
            }
        }
    })
    .as_ref()
    .map(|rt| rt.handle())
}

/// A frame's byte slices, in order, without empty ones.
fn parts_of(frames: &[Outgoing]) -> Vec<&[u8]> {
    frames
        .iter()
        .flat_map(|m| {
            std::iter::once(&m.frame[..]).chain(m.rest.iter().flat_map(FramePiece::slices))
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// Drops the first `skip` bytes of `parts`.
fn skip_front(parts: &mut Vec<&[u8]>, mut skip: usize) {
    let whole = parts.iter().take_while(|p| {
        let gone = skip >= p.len();
        if gone {
            skip -= p.len();
        }
        gone
    });
    let whole = whole.count();
    parts.drain(..whole);
    if let Some(first) = parts.first_mut() {
        *first = &first[skip.min(first.len())..];
    }
}

/// Writes as much of `out` (`len` bytes) as the transport takes without waiting, then tries
/// to flush. Returns the bytes written and whether they are flushed too.
fn write_now(half: &mut BoxWrite, out: &Outgoing, len: usize) -> std::io::Result<(usize, bool)> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut parts = parts_of(std::slice::from_ref(out));
    let gathered;
    if parts.len() > 1 && !half.is_write_vectored() {
        // A small frame: one buffer, so a TLS session makes one record of it.
        gathered = parts.concat();
        parts = vec![&gathered[..]];
    }
    let mut done = 0;
    let mut slices = Vec::with_capacity(parts.len().min(MAX_IOV));
    while done < len {
        slices.clear();
        slices.extend(parts.iter().take(MAX_IOV).map(|p| IoSlice::new(p)));
        match Pin::new(&mut **half).poll_write_vectored(&mut cx, &slices) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                done += n;
                skip_front(&mut parts, n);
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok((done, false)),
        }
    }
    match Pin::new(&mut **half).poll_flush(&mut cx) {
        Poll::Ready(Ok(())) => Ok((done, true)),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok((done, false)),
    }
}

/// Writes whole frames, less the first `skip` bytes (written before), several frames per
/// system call (`writev`) when the transport supports it.
async fn write_frames(wr: &mut BoxWrite, frames: &[Outgoing], skip: usize) -> std::io::Result<()> {
    let mut parts = parts_of(frames);
    skip_front(&mut parts, skip);
    if parts.len() <= 1 || !wr.is_write_vectored() {
        // One write per part would send a value kept by reference apart from the few bytes
        // around it (over TLS, a record each): small parts are gathered first.
        let mut staged: Vec<u8> = Vec::new();
        for p in parts {
            if p.len() >= STAGE_MAX {
                if !staged.is_empty() {
                    wr.write_all(&staged).await?;
                    staged.clear();
                }
                wr.write_all(p).await?;
            } else {
                staged.extend_from_slice(p);
                if staged.len() >= STAGE_MAX {
                    wr.write_all(&staged).await?;
                    staged.clear();
                }
            }
        }
        if !staged.is_empty() {
            wr.write_all(&staged).await?;
        }
        return Ok(());
    }
    let mut slices = Vec::with_capacity(parts.len().min(MAX_IOV));
    while !parts.is_empty() {
        slices.clear();
        slices.extend(parts.iter().take(MAX_IOV).map(|p| IoSlice::new(p)));
        let n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        skip_front(&mut parts, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a [`Trickle`] wrote, and how many calls it took.
    type Wrote = Arc<Mutex<Vec<u8>>>;
    type Calls = Arc<Mutex<usize>>;

    /// A transport that takes at most `step` bytes per call, vectored or not, and counts calls.
    struct Trickle {
        out: Wrote,
        calls: Calls,
        step: usize,
        vectored: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.lock().unwrap().extend_from_slice(&buf[..n]);
            *self.calls.lock().unwrap() += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            assert!(bufs.len() <= MAX_IOV, "{} slices in one call", bufs.len());
            let mut left = self.step;
            let mut out = self.out.lock().unwrap();
            for b in bufs {
                let n = b.len().min(left);
                out.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            *self.calls.lock().unwrap() += 1;
            Poll::Ready(Ok(self.step - left))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A [`Trickle`] writer taking `step` bytes a call, and what it wrote and its call count.
    fn trickle(step: usize, vectored: bool) -> (BoxWrite, Wrote, Calls) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(Mutex::new(0));
        let wr: BoxWrite = Box::new(Trickle {
            out: out.clone(),
            calls: calls.clone(),
            step,
            vectored,
        });
        (wr, out, calls)
    }

    fn frames(sizes: &[usize]) -> (Vec<Outgoing>, Vec<u8>) {
        let mut all = Vec::new();
        let out = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let f: Vec<u8> = (0..*n).map(|j| (i * 31 + j) as u8).collect();
                all.extend_from_slice(&f);
                // Every other frame in pieces (as a Produce request with large batches is),
                // one of them empty.
                let mut f = Bytes::from(f);
                let mut rest = Vec::new();
                if i % 2 == 1 && f.len() >= 3 {
                    let tail = f.split_off(f.len() / 3);
                    let (mid, end) = (tail.slice(..tail.len() / 2), tail.slice(tail.len() / 2..));
                    rest = vec![
                        FramePiece::Bytes(mid),
                        FramePiece::Bytes(Bytes::new()),
                        FramePiece::Bytes(end),
                    ];
                }
                Outgoing {
                    frame: f,
                    rest,
                    written: None,
                }
            })
            .collect();
        (out, all)
    }

    #[tokio::test]
    async fn a_batch_with_values_by_reference_is_written_whole_from_its_slices() {
        use krust_wire::record::{BatchBuilder, Compression, Unpooled};
        let mut b = BatchBuilder::new(Compression::None);
        let values: Vec<Bytes> = (0..300u32)
            .map(|i| Bytes::from(vec![i as u8; 3_000 + (i as usize * 97) % 3_000]))
            .collect();
        for (i, v) in values.iter().enumerate() {
            b.push_shared(i as i64, Some(b"k"), Some(v.clone()), &[])
                .unwrap();
        }
        let batch = b.finish_encoded(1, 0, 0, false, &mut Unpooled).unwrap();
        assert!(!batch.is_contiguous());
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&batch.to_bytes());
        expected.extend_from_slice(b"tail");
        for (step, vectored) in [
            (1 << 20, true),
            (5_000, true),
            (1 << 20, false),
            (333, false),
        ] {
            let (mut wr, out, calls) = trickle(step, vectored);
            let frame = Outgoing {
                frame: Bytes::from_static(b"head"),
                rest: vec![
                    FramePiece::Batch(batch.clone()),
                    FramePiece::Bytes(Bytes::from_static(b"tail")),
                ],
                written: None,
            };
            write_frames(&mut wr, &[frame], 0).await.unwrap();
            assert!(
                *out.lock().unwrap() == expected,
                "step {step}, vectored {vectored}"
            );
            let calls = *calls.lock().unwrap();
            if step == 1 << 20 {
                // Up to 600 slices: two vectored writes; gathered: writes of 64 KiB or more.
                let most = if vectored {
                    2
                } else {
                    expected.len() / STAGE_MAX + 1
                };
                assert!(calls <= most, "{calls} writes, vectored {vectored}");
            }
        }
    }

    #[tokio::test]
    async fn vectored_writes_keep_frames_whole_and_in_order_across_partial_writes() {
        for (step, vectored) in [
            (7, true),
            (1, true),
            (1000, true),
            (7, false),
            (1000, false),
        ] {
            let (batch, expected) = frames(&[10, 3, 25, 1, 40, 0, 17]);
            let (mut wr, out, calls) = trickle(step, vectored);
            write_frames(&mut wr, &batch, 0).await.unwrap();
            assert_eq!(
                *out.lock().unwrap(),
                expected,
                "step {step}, vectored {vectored}"
            );
            if step == 1000 {
                // Vectored, or gathered into one buffer first.
                assert_eq!(*calls.lock().unwrap(), 1, "one call for every frame");
            }
        }
        // More pieces than one vectored write takes: several calls, all bytes in order.
        let sizes: Vec<usize> = (0..1200).map(|i| 1 + i % 5).collect();
        let (batch, expected) = frames(&sizes);
        let (mut wr, out, calls) = trickle(1 << 20, true);
        write_frames(&mut wr, &batch, 0).await.unwrap();
        assert_eq!(*out.lock().unwrap(), expected);
        assert!(
            *calls.lock().unwrap() >= 3,
            "at most {MAX_IOV} slices per call"
        );
    }

    /// What a [`Gate`] did: the bytes it took, the thread of each write, its room and flush
    /// behaviour, and the task waiting for it.
    #[derive(Default)]
    struct GateState {
        out: Vec<u8>,
        threads: Vec<String>,
        /// Bytes it takes before it blocks (`None`: no limit).
        room: Option<usize>,
        /// Flushes to refuse (Pending) before one succeeds.
        hold_flushes: usize,
        flushes: usize,
        fail: bool,
        waiting: Option<Waker>,
    }

    /// A transport that blocks when its room runs out, as a full socket buffer does, until
    /// the test gives it more.
    #[derive(Clone, Default)]
    struct Gate(Arc<Mutex<GateState>>);

    impl Gate {
        fn boxed(&self) -> BoxWrite {
            Box::new(self.clone())
        }
        fn with<T>(&self, f: impl FnOnce(&mut GateState) -> T) -> T {
            f(&mut self.0.lock().unwrap())
        }
        /// Changes its state and wakes the task waiting for it.
        fn release(&self, f: impl FnOnce(&mut GateState)) {
            let w = self.with(|g| {
                f(g);
                g.waiting.take()
            });
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    impl AsyncWrite for Gate {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut g = self.0.lock().unwrap();
            if g.fail {
                return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            }
            let n = buf.len().min(g.room.unwrap_or(usize::MAX));
            if n == 0 {
                g.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if let Some(r) = g.room.as_mut() {
                *r -= n;
            }
            g.out.extend_from_slice(&buf[..n]);
            let name = std::thread::current().name().unwrap_or("").to_string();
            g.threads.push(name);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let mut g = self.0.lock().unwrap();
            g.flushes += 1;
            if g.hold_flushes > 0 {
                g.hold_flushes -= 1;
                g.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frame(len: usize, seed: u8) -> (Outgoing, oneshot::Receiver<()>, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
        let (tx, rx) = oneshot::channel();
        let out = Outgoing {
            frame: Bytes::from(bytes.clone()),
            rest: Vec::new(),
            written: Some(tx),
        };
        (out, rx, bytes)
    }

    #[tokio::test]
    async fn a_small_frame_is_written_before_send_returns_and_a_large_one_on_the_io_thread() {
        let gate = Gate::default();
        let shared = Arc::new(Shared::new());
        let writer = Writer::start(gate.boxed(), shared.clone(), true);
        let (small, mut small_written, small_bytes) = frame(300, 1);
        assert!(writer.send(small, &shared).is_ok());
        // Written, and told so, within `send`: no other task ran in between.
        assert_eq!(gate.with(|g| g.out.clone()), small_bytes);
        assert!(small_written.try_recv().is_ok());
        let here = std::thread::current().name().unwrap_or("").to_string();
        assert_eq!(gate.with(|g| g.threads.clone()), vec![here]);

        let (large, large_written, large_bytes) = frame(INLINE_MAX + 1, 7);
        assert!(writer.send(large, &shared).is_ok());
        large_written.await.unwrap();
        let mut expected = small_bytes;
        expected.extend_from_slice(&large_bytes);
        assert_eq!(gate.with(|g| g.out.clone()), expected);
        let threads = gate.with(|g| g.threads.clone());
        assert!(
            threads[1..].iter().all(|t| t == "krust-io"),
            "the large frame was written on {threads:?}"
        );
        shared.close("test over".into());
    }

    #[tokio::test]
    async fn a_frame_cut_short_inline_is_finished_before_the_frames_sent_after_it() {
        let gate = Gate::default();
        gate.with(|g| g.room = Some(10));
        let shared = Arc::new(Shared::new());
        let writer = Writer::start(gate.boxed(), shared.clone(), false);
        let (a, mut a_written, a_bytes) = frame(100, 1);
        let (b, b_written, b_bytes) = frame(20, 200);
        assert!(writer.send(a, &shared).is_ok());
        assert_eq!(gate.with(|g| g.out.len()), 10, "as much as the socket took");
        assert!(a_written.try_recv().is_err());
        // Queued behind the rest of the first, not written inline ahead of it.
        assert!(writer.send(b, &shared).is_ok());
        assert_eq!(gate.with(|g| g.out.len()), 10);
        gate.release(|g| g.room = None);
        b_written.await.unwrap();
        assert!(a_written.try_recv().is_ok());
        let mut expected = a_bytes;
        expected.extend_from_slice(&b_bytes);
        assert_eq!(gate.with(|g| g.out.clone()), expected);
        // With the queue empty again, the next small frame goes inline.
        let (c, mut c_written, c_bytes) = frame(5, 9);
        assert!(writer.send(c, &shared).is_ok());
        assert!(c_written.try_recv().is_ok());
        expected.extend_from_slice(&c_bytes);
        assert_eq!(gate.with(|g| g.out.clone()), expected);
        // Without the I/O thread, a large frame's writer task runs on this (the caller's)
        // runtime, as every write above did.
        let (d, d_written, d_bytes) = frame(INLINE_MAX + 1, 5);
        assert!(writer.send(d, &shared).is_ok());
        d_written.await.unwrap();
        expected.extend_from_slice(&d_bytes);
        assert_eq!(gate.with(|g| g.out.clone()), expected);
        let here = std::thread::current().name().unwrap_or("").to_string();
        let threads = gate.with(|g| g.threads.clone());
        assert!(threads.iter().all(|t| *t == here), "written on {threads:?}");
        shared.close("test over".into());
    }

    #[tokio::test]
    async fn an_inline_write_left_unflushed_counts_as_written_only_once_flushed() {
        // As a TLS session that took the bytes but could not yet pass its record on.
        let gate = Gate::default();
        gate.with(|g| g.hold_flushes = 1);
        let shared = Arc::new(Shared::new());
        let writer = Writer::start(gate.boxed(), shared.clone(), false);
        let (a, mut a_written, a_bytes) = frame(50, 3);
        assert!(writer.send(a, &shared).is_ok());
        assert_eq!(gate.with(|g| g.out.clone()), a_bytes);
        assert!(a_written.try_recv().is_err(), "told before the flush");
        // The writer task's flush goes through.
        a_written.await.unwrap();
        assert!(gate.with(|g| g.flushes) >= 2);
        // The writer task wrote none of it again.
        assert_eq!(gate.with(|g| g.out.clone()), a_bytes);
        shared.close("test over".into());
    }

    #[tokio::test]
    async fn a_failed_write_closes_the_connection_and_later_frames_are_refused() {
        for large in [false, true] {
            let gate = Gate::default();
            gate.with(|g| g.fail = true);
            let shared = Arc::new(Shared::new());
            let writer = Writer::start(gate.boxed(), shared.clone(), true);
            let len = if large { INLINE_MAX + 1 } else { 10 };
            let (a, a_written, _) = frame(len, 0);
            assert!(writer.send(a, &shared).is_ok());
            assert!(
                a_written.await.is_err(),
                "a frame never written is not told written"
            );
            assert!(shared.is_closed());
            assert!(
                shared.reason().contains("write failed"),
                "{}",
                shared.reason()
            );
            let (b, _, _) = frame(10, 0);
            assert!(writer.send(b, &shared).is_err());
        }
    }

    #[test]
    fn skipping_bytes_drops_whole_parts_then_cuts_the_next() {
        let (a, b, c): (&[u8], &[u8], &[u8]) = (b"abc", b"de", b"fghi");
        for (skip, want) in [
            (0, vec![&b"abc"[..], b"de", b"fghi"]),
            (2, vec![&b"c"[..], b"de", b"fghi"]),
            (3, vec![&b"de"[..], b"fghi"]),
            (6, vec![&b"ghi"[..]]),
            (9, vec![]),
        ] {
            let mut parts = vec![a, b, c];
            skip_front(&mut parts, skip);
            let parts: Vec<&[u8]> = parts.into_iter().filter(|p| !p.is_empty()).collect();
            assert_eq!(parts, want, "skip {skip}");
        }
    }
}
