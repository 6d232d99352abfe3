//! The PBX sockets are read on a thread of their own (`pbx-read`) that does nothing else:
//! it sleeps until a switch sends, reads at once and hands the octets to the link's driver
//! through a queue bounded in octets (`link.read_ahead_kb`). A thread that mostly sleeps is
//! run soon after it is woken, where the tokio workers (the link's decoding, the client
//! writes) wait their turn for a CPU with everything else on the machine: a gateway whose
//! workers lag by tens of milliseconds still reads its switch continuously, as a switch
//! wants (a CTI link whose receive window stays shut gets dropped). Only a driver more
//! than `read_ahead_kb` behind leaves the switch's octets in the kernel; each time that
//! happens is counted ([`ReadAhead::full`]) and logged with the key (BENCHMARKS.md, "the
//! PBX socket read on a thread of its own").
//!
//! The connection is made on that thread too (its socket belongs to that thread's
//! reactor); the driver writes to it from its own task as before.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tracing::warn;

/// Octets asked of the socket per read (at most; never more than the read-ahead).
const CHUNK: usize = 65536;

/// The reading thread's runtime: started on first use (made on that thread, which runs it
/// for as long as the process lives). A failure to start it is kept and told each time.
fn handle() -> io::Result<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("pbx-read".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .build()
                    {
                        Ok(rt) => {
                            let _ = tx.send(Ok(rt.handle().clone()));
                            rt.block_on(std::future::pending::<()>())
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            rx.recv().map_err(|e| e.to_string())?
        })
        .as_ref()
        .map_err(|e| io::Error::other(format!("the PBX reading thread did not start: {e}")))
}

/// What the reading of one link shares with its driver: the bound and how often it was
/// reached.
#[derive(Debug)]
pub struct ReadAhead {
    /// `link.read_ahead_kb` in octets.
    pub limit: usize,
    /// Times the queue had no room for another read (64 KiB, or the whole limit when
    /// smaller): the socket left unread until the driver took octets.
    pub full: AtomicU64,
    /// How long the octets the driver took last had waited here since they were read
    /// (µs): the first of them, so the longest.
    waited_us: AtomicU64,
}

impl ReadAhead {
    pub fn new(limit: usize) -> ReadAhead {
        ReadAhead {
            limit: limit.max(1),
            full: AtomicU64::new(0),
            waited_us: AtomicU64::new(0),
        }
    }

    /// How long the octets the driver took last had waited for it since they were read
    /// from the socket (zero before any): the part of an event's wait between the PBX
    /// socket and the event pump that comes before its frame is decoded.
    pub fn waited(&self) -> Duration {
        Duration::from_micros(self.waited_us.load(Ordering::Relaxed))
    }
}

/// Aborts the task when dropped (a connect the link gave up: `connect_timeout`).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connect to `addr` from the reading thread: the octets the switch sends come through
/// the [`PbxStream`]'s reading side, read ahead of the driver by at most `ahead.limit`
/// octets; what the driver writes goes to the socket directly. `link`: for the log.
pub async fn connect(addr: String, link: String, ahead: Arc<ReadAhead>) -> io::Result<PbxStream> {
    let mut task = AbortOnDrop(handle()?.spawn(async move {
        let tcp = TcpStream::connect(&addr).await?;
        let _ = tcp.set_nodelay(true);
        let (r, w) = tcp.into_split();
        let room = Arc::new(Room {
            free: Semaphore::new(ahead.limit),
            queued: AtomicUsize::new(0),
        });
        // bounded by `room` (octets): every chunk holds at least one
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(r, tx, room.clone(), ahead.clone(), link));
        Ok::<_, io::Error>(PbxStream {
            r: ChunkReader {
                rx,
                cur: Bytes::new(),
                cur_at: Instant::now(),
                err: None,
                eof: false,
                room,
                ahead,
            },
            w,
        })
    }));
    match (&mut task.0).await {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(format!("the PBX reading thread: {e}"))),
    }
}

/// The queue's room in octets, and what it holds.
struct Room {
    free: Semaphore,
    queued: AtomicUsize,
}

/// Read the socket into the queue while it has room; stop when the driver dropped its
/// end (the connection is over: the socket closes now, not at the switch's next octet).
async fn read_loop(
    mut r: OwnedReadHalf,
    tx: mpsc::UnboundedSender<(io::Result<Bytes>, Instant)>,
    room: Arc<Room>,
    ahead: Arc<ReadAhead>,
    link: String,
) {
    // room for a whole read before each: at most the limit, so it always comes
    let want = CHUNK.min(ahead.limit);
    let want_permits = u32::try_from(want).unwrap_or(u32::MAX);
    let mut buf = vec![0u8; want];
    loop {
        let permit = match room.free.try_acquire_many(want_permits) {
            Ok(p) => p,
            Err(_) => {
                let n = ahead.full.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(left_out) = FULL_LOG.allow() {
                    warn!(link = %link, limit = "link.read_ahead_kb", octets = ahead.limit, times = n, left_out,
                          "the link's decoding is behind by the whole read-ahead: the PBX socket is not read until it catches up");
                }
                tokio::select! {
                    p = room.free.acquire_many(want_permits) => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        };
        let got = tokio::select! {
            g = r.read(&mut buf) => g,
            _ = tx.closed() => return,
        };
        // the permits of the octets read go with them (the reader gives them back as the
        // driver takes them); the rest back now
        permit.forget();
        let n = *got.as_ref().unwrap_or(&0);
        room.free.add_permits(want - n);
        room.queued.fetch_add(n, Ordering::Relaxed);
        let end = n == 0;
        if tx
            .send((
                got.map(|n| Bytes::copy_from_slice(&buf[..n])),
                Instant::now(),
            ))
            .is_err()
            || end
        {
            return;
        }
    }
}

/// One warning a second at most about a full read-ahead (all links together).
static FULL_LOG: std::sync::LazyLock<crate::logging::LogLimit> =
    std::sync::LazyLock::new(crate::logging::LogLimit::new);

/// The octets the reading thread read, in order; the end of the stream as an empty read,
/// a failed read as its error (after the octets read before it).
pub struct ChunkReader {
    rx: mpsc::UnboundedReceiver<(io::Result<Bytes>, Instant)>,
    cur: Bytes,
    /// When `cur` was read from the socket.
    cur_at: Instant,
    err: Option<io::Error>,
    eof: bool,
    room: Arc<Room>,
    ahead: Arc<ReadAhead>,
}

impl AsyncRead for ChunkReader {
    /// As many octets as are queued and fit, without waiting once there are some.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        loop {
            if !self.cur.is_empty() {
                if buf.filled().len() == before {
                    // the first octets taken now: the oldest, the longest wait
                    let waited = self.cur_at.elapsed().as_micros();
                    self.ahead
                        .waited_us
                        .store(u64::try_from(waited).unwrap_or(u64::MAX), Ordering::Relaxed);
                }
                let n = self.cur.len().min(buf.remaining());
                let chunk = self.cur.split_to(n);
                buf.put_slice(&chunk);
                // room for the reading thread again
                self.room.queued.fetch_sub(n, Ordering::Relaxed);
                self.room.free.add_permits(n);
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let some = buf.filled().len() > before;
            if let Some(e) = self.err.take() {
                if some {
                    self.err = Some(e);
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(e));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending if some => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
                // the end of the stream (an empty read), or of the reading thread's task
                Poll::Ready(None) => self.eof = true,
                Poll::Ready(Some((Ok(b), _))) if b.is_empty() => self.eof = true,
                Poll::Ready(Some((Ok(b), at))) => {
                    self.cur = b;
                    self.cur_at = at;
                }
                Poll::Ready(Some((Err(e), _))) => self.err = Some(e),
            }
        }
    }
}

/// A connection to the switch: the reading thread's octets, the socket's writing half
/// (plain, or under TLS).
pub struct PbxStream {
    r: ChunkReader,
    w: OwnedWriteHalf,
}

impl PbxStream {
    pub fn into_split(self) -> (ChunkReader, OwnedWriteHalf) {
        (self.r, self.w)
    }

    /// Octets read from the socket that the driver has not taken yet.
    pub fn queued(&self) -> usize {
        self.r.room.queued.load(Ordering::Relaxed)
    }
}

impl AsyncRead for PbxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.r).poll_read(cx, buf)
    }
}

impl AsyncWrite for PbxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.w).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.w).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.w).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::time::{timeout, Duration, Instant};

    /// `n` octets the receiver can check in order.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// A switch on 127.0.0.1:0 and a connection to it from the reading thread.
    async fn pair(limit: usize) -> (TcpStream, PbxStream, Arc<ReadAhead>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let ahead = Arc::new(ReadAhead::new(limit));
        let (s, c) = tokio::join!(l.accept(), connect(addr, "t".into(), ahead.clone()));
        (s.unwrap().0, c.unwrap(), ahead)
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < end, "{what} within 5 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The reading thread takes what the switch sends out of the kernel while the driver
    /// reads nothing; the driver then gets it all, in order, and the end of the stream.
    #[tokio::test]
    async fn the_socket_is_read_while_the_driver_reads_nothing() {
        let (mut sw, mut pbx, ahead) = pair(1 << 20).await;
        let sent = pattern(300_000);
        sw.write_all(&sent).await.unwrap();
        until("300 000 octets queued", || pbx.queued() == sent.len()).await;
        sw.shutdown().await.unwrap();
        let mut got = Vec::new();
        timeout(Duration::from_secs(5), pbx.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got == sent, "{} octets, not the ones sent", got.len());
        assert_eq!(pbx.queued(), 0);
        assert_eq!(ahead.full.load(Ordering::Relaxed), 0);
    }

    /// How long octets waited in the read-ahead is known when the driver takes them (the
    /// gateway's "behind" rule counts it): the first taken, for as long as they waited;
    /// octets taken as soon as they come, hardly.
    #[tokio::test]
    async fn the_wait_in_the_read_ahead_is_told_when_the_driver_takes_the_octets() {
        let (mut sw, mut pbx, ahead) = pair(1 << 20).await;
        assert_eq!(ahead.waited(), Duration::ZERO);
        let sent = Instant::now();
        sw.write_all(b"first").await.unwrap();
        until("5 octets queued", || pbx.queued() == 5).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        sw.write_all(b"second").await.unwrap();
        until("11 octets queued", || pbx.queued() == 11).await;
        let mut b = [0u8; 11];
        pbx.read_exact(&mut b).await.unwrap();
        let longest = sent.elapsed();
        assert_eq!(&b, b"firstsecond");
        // the first octets' wait, not the second's (read at least 120 ms later)
        let w = ahead.waited();
        assert!(w >= Duration::from_millis(120), "waited {w:?}");
        assert!(w <= longest, "waited {w:?}, at most {longest:?}");
        // the driver waiting for the next octets: it takes them as they come
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 4];
            pbx.read_exact(&mut b).await.unwrap();
            b
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        sw.write_all(b"more").await.unwrap();
        assert_eq!(&reader.await.unwrap(), b"more");
        let w = ahead.waited();
        assert!(w < Duration::from_millis(100), "waited {w:?}");
    }

    /// Beyond `read_ahead` the socket waits for the driver, counted; nothing is lost.
    #[tokio::test]
    async fn a_full_read_ahead_leaves_the_socket_to_wait_and_is_counted() {
        let (mut sw, mut pbx, ahead) = pair(65536).await;
        let sent = pattern(16 << 20);
        let writer = tokio::spawn(async move {
            sw.write_all(&sent).await.unwrap();
            sw.shutdown().await.unwrap();
            sent
        });
        until("the read-ahead full", || {
            ahead.full.load(Ordering::Relaxed) > 0
        })
        .await;
        assert!(pbx.queued() <= 65536, "{} octets queued", pbx.queued());
        // 16 MiB do not fit in the kernel's buffers (a few MiB) and the queue: the writer
        // waits
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !writer.is_finished(),
            "the switch's writes wait for the driver"
        );
        let mut got = Vec::new();
        timeout(Duration::from_secs(10), pbx.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let sent = writer.await.unwrap();
        assert!(got == sent, "{} octets, not the ones sent", got.len());
    }

    /// The driver dropping the connection closes the socket at once, though the switch
    /// sends nothing (the reading thread does not wait for its next octet).
    #[tokio::test]
    async fn dropping_the_stream_closes_the_socket() {
        let (mut sw, pbx, _) = pair(1 << 20).await;
        drop(pbx);
        let mut b = [0u8; 16];
        let n = timeout(Duration::from_secs(5), sw.read(&mut b))
            .await
            .expect("closed within 5 s")
            .unwrap();
        assert_eq!(n, 0, "end of stream");
    }

    /// What the driver writes reaches the switch (the writing half is the driver's).
    #[tokio::test]
    async fn the_driver_writes_to_the_switch() {
        let (mut sw, mut pbx, _) = pair(1 << 20).await;
        pbx.write_all(b"AARQ").await.unwrap();
        let mut b = [0u8; 4];
        timeout(Duration::from_secs(5), sw.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b, b"AARQ");
    }
}
