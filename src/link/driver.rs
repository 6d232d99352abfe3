//! The tokio driver around [`Session`]: one task owns the session, the TCP socket (framed
//! by the dialect's codec; BER: 2-octet framing, WIRE.md §2.1) and the timer; [`Link`] handles talk to it over a bounded
//! channel and get their answers on oneshots. Every wait is bounded: writes by
//! `request_timeout`, answers by the session's deadlines (plus a safety margin here),
//! shutdown by the RLRE deadline.
//!
//! Slow-consumer policy for the owner's event channel: the driver waits up to
//! [`EVENT_SEND_TIMEOUT`] for room; after that it drops events (with a warning) until the
//! channel takes one again, so that a stalled owner cannot stop keep-alives and answers.

use super::ber::Ber;
use super::dialect::Dialect;
use super::session::{Answer, Out, Session, Token};
use super::{CstaError, LinkConfig, LinkCounters, LinkError, LinkEvent};
use bytes::BytesMut;
use ctigate_csta_model::ops::Argument;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tokio_util::codec::{Decoder, Encoder};
use tracing::{debug, warn};

/// Commands waiting for the driver (beyond them: [`LinkError::TooManyRequests`]).
pub const COMMAND_QUEUE: usize = 1024;
/// How long the driver waits for room in the owner's event channel before dropping.
pub const EVENT_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Added to `request_timeout` for the caller's own safety timeout (the session answers
/// Timeout first).
const ANSWER_SLACK: Duration = Duration::from_secs(1);
/// Room made in the read buffer before each read (frames are at most 65 537 octets).
const READ_CHUNK: usize = 4096;

enum Cmd {
    Request {
        arg: Box<Argument>,
        reply: oneshot::Sender<Answer>,
    },
    Monitor {
        device: String,
        reply: oneshot::Sender<Answer>,
    },
    Unmonitor {
        device: String,
        reply: oneshot::Sender<Answer>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// A handle on a PBX link; cheap to clone. The link runs until [`Link::shutdown`] or until
/// every handle is dropped (then it releases the association too).
#[derive(Clone, Debug)]
pub struct Link {
    tx: mpsc::Sender<Cmd>,
    up: Arc<AtomicBool>,
    counters: Arc<SharedCounters>,
    request_timeout: Duration,
    window: Arc<Window>,
}

/// Retries of a request the switch refused as busy (resourceBusy, internalResourceBusy,
/// outstandingReqLimitExceeded, performanceLimitExceeded), after 20, 40, 80, 160 ms.
pub const BUSY_RETRIES: u32 = 4;
const BUSY_BACKOFF: Duration = Duration::from_millis(20);

/// The request window of a link, shared by its handles: at most `max_outstanding`
/// requests given to the driver at once (more wait for room, at most `request_timeout`),
/// spaced by `requests_per_s`, and narrowed while the switch says it is busy (halved at
/// each busy answer, widened again by one after as many answered requests as it is wide).
#[derive(Debug)]
struct Window {
    permits: tokio::sync::Semaphore,
    configured: usize,
    /// The window now (at most `configured`, at least 1).
    current: std::sync::atomic::AtomicUsize,
    /// Permits still to be withheld after a narrowing (taken as requests finish).
    debt: std::sync::atomic::AtomicUsize,
    /// Answered requests since the window last changed.
    answered: std::sync::atomic::AtomicUsize,
    /// `requests_per_s` and the time the next request may go.
    rate: u32,
    next_slot: std::sync::Mutex<Instant>,
    /// Whether the switch's busy answers were warned about already (once per link).
    warned: AtomicBool,
    name: String,
}

impl Window {
    fn new(cfg: &LinkConfig) -> Window {
        let n = cfg.max_outstanding.max(1);
        Window {
            permits: tokio::sync::Semaphore::new(n),
            configured: n,
            current: n.into(),
            debt: 0.into(),
            answered: 0.into(),
            rate: cfg.requests_per_s,
            next_slot: std::sync::Mutex::new(Instant::now()),
            warned: AtomicBool::new(false),
            name: cfg.name.clone(),
        }
    }

    /// Room for one request (the caller holds the permit until the answer), then its turn
    /// under `requests_per_s`; both within `deadline`.
    async fn enter(
        &self,
        deadline: Instant,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, LinkError> {
        let permit = match tokio::time::timeout_at(deadline, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(LinkError::Closed),
            Err(_) => {
                let n = self.current.load(Ordering::Relaxed);
                warn!(link = %self.name, window = n, configured = self.configured, "link.max_outstanding: no room for a request within the request timeout");
                return Err(LinkError::Limit("link.max_outstanding", n));
            }
        };
        if self.rate > 0 {
            let interval = Duration::from_secs(1) / self.rate;
            let at = {
                let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
                let at = (*next).max(Instant::now());
                if at > deadline {
                    warn!(link = %self.name, rate = self.rate, "link.requests_per_s: no turn for a request within the request timeout");
                    return Err(LinkError::Limit("link.requests_per_s", self.rate as usize));
                }
                *next = at + interval;
                at
            };
            tokio::time::sleep_until(at).await;
        }
        Ok(permit)
    }

    /// A request is answered: give its room back (or keep it while the window narrows),
    /// and widen the window by one after as many answers as it is wide.
    fn leave(&self, permit: tokio::sync::SemaphorePermit<'_>, busy: bool) {
        let owed = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if owed {
            permit.forget();
        } else {
            drop(permit);
        }
        if busy {
            return;
        }
        let cur = self.current.load(Ordering::Relaxed);
        if cur < self.configured && self.answered.fetch_add(1, Ordering::Relaxed) + 1 >= cur {
            self.answered.store(0, Ordering::Relaxed);
            if self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_err()
            {
                self.permits.add_permits(1);
            }
            let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
            debug!(link = %self.name, window = now, configured = self.configured, "the switch keeps up: request window widened");
        }
    }

    /// The switch said it is busy: halve the window (at least 1).
    fn narrow(&self, error: &CstaError) {
        let cur = self.current.load(Ordering::Relaxed);
        let to = (cur / 2).max(1);
        if to < cur
            && self
                .current
                .compare_exchange(cur, to, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let cut = cur - to;
            let forgotten = self.permits.forget_permits(cut);
            self.debt.fetch_add(cut - forgotten, Ordering::AcqRel);
        }
        self.answered.store(0, Ordering::Relaxed);
        let window = self.current.load(Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            warn!(link = %self.name, %error, window, configured = self.configured, retries = BUSY_RETRIES, "the switch is busy (its own limit on outstanding requests or their rate): request window narrowed, the request retried after a pause; further busy answers are logged at debug level");
        } else {
            debug!(link = %self.name, %error, window, "the switch is busy: window narrowed, request retried");
        }
    }
}

/// Whether the switch refused a request for being busy (worth a retry after a pause):
/// ECMA-269 systemResourceAvailability resourceBusy / internalResourceBusy,
/// subscribedResourceAvailability outstandingReqLimitExceeded, performanceManagement
/// performanceLimitExceeded.
pub fn switch_busy(e: &CstaError) -> bool {
    let CstaError::Failure(f) = e else {
        return false;
    };
    matches!(
        (f.category, f.value_name()),
        (
            "systemResourceAvailability",
            Some("resourceBusy" | "internalResourceBusy")
        ) | (
            "subscribedResourceAvailability",
            Some("outstandingReqLimitExceeded")
        ) | ("performanceManagement", Some("performanceLimitExceeded"))
    )
}

/// The session's [`LinkCounters`], as the driver last saw them.
#[derive(Debug, Default)]
struct SharedCounters {
    malformed_frames: AtomicU64,
    rejects_sent: AtomicU64,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Request { arg, .. } => write!(f, "Request({})", arg.operation()),
            Cmd::Monitor { device, .. } => write!(f, "Monitor({device})"),
            Cmd::Unmonitor { device, .. } => write!(f, "Unmonitor({device})"),
            Cmd::Shutdown { .. } => f.write_str("Shutdown"),
        }
    }
}

impl Link {
    /// Start the link: spawns the driver task (call inside a tokio runtime), which connects
    /// at once and keeps reconnecting with backoff, moving to the next of its addresses
    /// (sides) after every failure. What happens is told on `events` (a
    /// channel of [`LinkEvent`]s, or of the owner's own type, so that the owner can queue
    /// its own items in order with the link's events).
    pub fn start<E>(cfg: LinkConfig, events: mpsc::Sender<E>) -> Link
    where
        E: From<LinkEvent> + Send + 'static,
    {
        Link::start_with::<Ber, E>(cfg, events)
    }

    /// [`Link::start`] for a session of the dialect `D`.
    pub fn start_with<D: Dialect, E>(cfg: LinkConfig, events: mpsc::Sender<E>) -> Link
    where
        E: From<LinkEvent> + Send + 'static,
    {
        // room for the whole window and the commands that do not take its room
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE.max(cfg.max_outstanding + 64));
        let window = Arc::new(Window::new(&cfg));
        let up = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SharedCounters::default());
        let request_timeout = cfg.request_timeout;
        let driver = Driver {
            name: cfg.name.clone(),
            write_timeout: cfg.request_timeout.max(Duration::from_millis(100)),
            session: Session::<D>::with_dialect(cfg, Instant::now().into_std()),
            rx,
            rx_open: true,
            events,
            events_stalled: false,
            events_dropped: 0,
            up: up.clone(),
            counters: counters.clone(),
            conn: Conn::None,
            replies: HashMap::new(),
            next_token: 0,
            done: Vec::new(),
            shutdown_asked: false,
        };
        tokio::spawn(driver.run());
        Link {
            tx,
            up,
            counters,
            request_timeout,
            window,
        }
    }

    /// Any ECMA-285 request; answered within `request_timeout`.
    pub async fn request(&self, arg: Argument) -> Answer {
        self.call(|reply| Cmd::Request {
            arg: Box::new(arg.clone()),
            reply,
        })
        .await
    }

    /// MonitorStart on `device`, remembered and re-established after every reconnect;
    /// idempotent per device. While the link is down: `Err(Down)` and nothing remembered.
    pub async fn monitor(&self, device: &str) -> Result<Result<(), CstaError>, LinkError> {
        self.call(|reply| Cmd::Monitor {
            device: device.to_string(),
            reply,
        })
        .await
        .map(|r| r.map(|_| ()))
    }

    /// MonitorStop on `device`, and forget it. Not monitored: `Ok(Ok(()))`.
    pub async fn unmonitor(&self, device: &str) -> Result<Result<(), CstaError>, LinkError> {
        self.call(|reply| Cmd::Unmonitor {
            device: device.to_string(),
            reply,
        })
        .await
        .map(|r| r.map(|_| ()))
    }

    /// Associated right now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Malformed frames from the switch and rejects sent to it, so far.
    pub fn counters(&self) -> LinkCounters {
        LinkCounters {
            malformed_frames: self.counters.malformed_frames.load(Ordering::Acquire),
            rejects_sent: self.counters.rejects_sent.load(Ordering::Acquire),
        }
    }

    /// Release the association (RLRQ, then RLRE within `request_timeout`) and stop the
    /// link for every handle. Returns when done (bounded).
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        let bound = self.request_timeout + ANSWER_SLACK;
        match timeout(bound, self.tx.send(Cmd::Shutdown { done })).await {
            Ok(Ok(())) => {
                let _ = timeout(bound, wait).await;
            }
            Ok(Err(_)) => {} // already stopped
            Err(_) => warn!("the link driver did not take the shutdown in time"),
        }
        self.up.store(false, Ordering::Release);
    }

    /// The request window now (narrowed while the switch says it is busy) and as
    /// configured (`max_outstanding`).
    pub fn window(&self) -> (usize, usize) {
        (
            self.window.current.load(Ordering::Relaxed),
            self.window.configured,
        )
    }

    /// One request through the window: room and turn within `request_timeout`, then the
    /// answer; a busy answer from the switch narrows the window and is retried
    /// ([`BUSY_RETRIES`] times, after a doubling pause).
    async fn call(&self, make: impl Fn(oneshot::Sender<Answer>) -> Cmd) -> Answer {
        let deadline = Instant::now() + self.request_timeout;
        let permit = self.window.enter(deadline).await?;
        let mut pause = BUSY_BACKOFF;
        let mut attempt = 0;
        loop {
            let answer = self.call_once(&make).await;
            match &answer {
                Ok(Err(e)) if switch_busy(e) && attempt < BUSY_RETRIES => {
                    self.window.narrow(e);
                    attempt += 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Ok(Err(e)) if switch_busy(e) => {
                    warn!(error = %e, retries = BUSY_RETRIES, "the switch stayed busy: request given up");
                    self.window.leave(permit, true);
                    return answer;
                }
                _ => {
                    self.window.leave(permit, false);
                    return answer;
                }
            }
        }
    }

    async fn call_once(&self, make: &impl Fn(oneshot::Sender<Answer>) -> Cmd) -> Answer {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(make(reply)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(LinkError::TooManyRequests),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(LinkError::Closed),
        }
        match timeout(self.request_timeout + ANSWER_SLACK, answer).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout),
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>>;

enum Conn<C> {
    None,
    Connecting(Connecting),
    Open {
        reader: OwnedReadHalf,
        buf: BytesMut,
        codec: C,
        writer: OwnedWriteHalf,
    },
}

/// Why no frame could be read.
enum ReadError<E> {
    /// The codec lost the frame boundaries.
    Framing(E),
    /// The socket failed.
    Io(std::io::Error),
}

/// What the codec of the dialect `D` reads.
type FrameResult<D> =
    Result<<D as Dialect>::Frame, ReadError<<<D as Dialect>::Codec as Decoder>::Error>>;

/// The next frame; `None` at end of stream. Cancel safe: the codec takes bytes out of
/// `buf` only for a whole frame, and `read_buf` is cancel safe.
async fn next_frame<D: Dialect>(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    codec: &mut D::Codec,
) -> Option<FrameResult<D>> {
    loop {
        match codec.decode(buf) {
            Ok(Some(f)) => return Some(Ok(f)),
            Ok(None) => {}
            Err(e) => return Some(Err(ReadError::Framing(e))),
        }
        buf.reserve(READ_CHUNK);
        match reader.read_buf(buf).await {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(ReadError::Io(e))),
        }
    }
}

enum ConnEvent<D: Dialect> {
    Connected(std::io::Result<TcpStream>),
    Frame(Option<FrameResult<D>>),
}

enum Wake<D: Dialect> {
    Cmd(Option<Cmd>),
    Timer,
    Conn(ConnEvent<D>),
}

struct Driver<E, D: Dialect> {
    name: String,
    write_timeout: Duration,
    session: Session<D>,
    rx: mpsc::Receiver<Cmd>,
    rx_open: bool,
    events: mpsc::Sender<E>,
    events_stalled: bool,
    events_dropped: u64,
    up: Arc<AtomicBool>,
    counters: Arc<SharedCounters>,
    conn: Conn<D::Codec>,
    replies: HashMap<Token, oneshot::Sender<Answer>>,
    next_token: Token,
    done: Vec<oneshot::Sender<()>>,
    shutdown_asked: bool,
}

async fn conn_event<D: Dialect>(conn: &mut Conn<D::Codec>) -> ConnEvent<D> {
    match conn {
        Conn::None => std::future::pending().await,
        Conn::Connecting(f) => ConnEvent::Connected(f.await),
        Conn::Open {
            reader, buf, codec, ..
        } => ConnEvent::Frame(next_frame::<D>(reader, buf, codec).await),
    }
}

async fn sleep_until(t: Option<std::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<E: From<LinkEvent> + Send + 'static, D: Dialect> Driver<E, D> {
    async fn run(mut self) {
        loop {
            self.flush().await;
            if self.session.is_closed() && (self.shutdown_asked || !self.rx_open) {
                break;
            }
            let timer = self.session.poll_timeout();
            let wake = tokio::select! {
                c = self.rx.recv(), if self.rx_open => Wake::Cmd(c),
                _ = sleep_until(timer) => Wake::Timer,
                e = conn_event::<D>(&mut self.conn) => Wake::Conn(e),
            };
            let now = now();
            match wake {
                Wake::Cmd(None) => {
                    debug!(link = %self.name, "every handle dropped: shutting down");
                    self.rx_open = false;
                    self.session.shutdown(now);
                }
                Wake::Cmd(Some(c)) => self.command(c, now),
                Wake::Timer => self.session.handle_timeout(now),
                Wake::Conn(ConnEvent::Connected(Ok(stream))) => {
                    let _ = stream.set_nodelay(true);
                    let (r, w) = stream.into_split();
                    match self.session.codec() {
                        Some(codec) => {
                            self.conn = Conn::Open {
                                reader: r,
                                buf: BytesMut::with_capacity(READ_CHUNK),
                                codec,
                                writer: w,
                            };
                            self.session.connected(now);
                        }
                        None => self.conn = Conn::None,
                    }
                }
                Wake::Conn(ConnEvent::Connected(Err(e))) => {
                    self.conn = Conn::None;
                    let reason = format!("cannot connect to {}: {e}", self.session.address());
                    self.session.transport_closed(now, &reason);
                }
                Wake::Conn(ConnEvent::Frame(Some(Ok(f)))) => {
                    tracing::trace!(link = %self.name, frame = ?f, "frame in");
                    self.session.handle_frame(f, now)
                }
                Wake::Conn(ConnEvent::Frame(Some(Err(ReadError::Framing(e))))) => {
                    // the ABRT the session sends goes out before the close
                    self.session.framing_lost(now, &e.to_string());
                }
                Wake::Conn(ConnEvent::Frame(Some(Err(ReadError::Io(e))))) => {
                    self.conn = Conn::None;
                    self.session
                        .transport_closed(now, &format!("read failed: {e}"));
                }
                Wake::Conn(ConnEvent::Frame(None)) => {
                    self.conn = Conn::None;
                    self.session
                        .transport_closed(now, "the switch closed the connection");
                }
            }
        }
        self.up.store(false, Ordering::Release);
        for (_, r) in self.replies.drain() {
            let _ = r.send(Err(LinkError::Closed));
        }
        for d in self.done.drain(..) {
            let _ = d.send(());
        }
        debug!(link = %self.name, "link driver stopped");
    }

    fn command(&mut self, c: Cmd, now: std::time::Instant) {
        match c {
            Cmd::Request { arg, reply } => {
                let t = self.token(reply);
                self.session.request(t, *arg, now);
            }
            Cmd::Monitor { device, reply } => {
                let t = self.token(reply);
                self.session.monitor(t, &device, now);
            }
            Cmd::Unmonitor { device, reply } => {
                let t = self.token(reply);
                self.session.unmonitor(t, &device, now);
            }
            Cmd::Shutdown { done } => {
                self.shutdown_asked = true;
                self.done.push(done);
                self.session.shutdown(now);
            }
        }
    }

    fn token(&mut self, reply: oneshot::Sender<Answer>) -> Token {
        self.next_token = self.next_token.wrapping_add(1);
        self.replies.insert(self.next_token, reply);
        self.next_token
    }

    /// Carry out everything the session asked for.
    async fn flush(&mut self) {
        while let Some(o) = self.session.poll_output() {
            match o {
                Out::Connect => {
                    let addr = self.session.address().to_string();
                    self.conn = Conn::Connecting(Box::pin(TcpStream::connect(addr)));
                }
                Out::Transmit(frame) => self.transmit(frame).await,
                Out::Close => {
                    if let Conn::Open { writer, .. } = &mut self.conn {
                        let _ = timeout(Duration::from_millis(200), writer.shutdown()).await;
                    }
                    self.conn = Conn::None;
                }
                Out::Answer { token, answer } => {
                    if let Some(r) = self.replies.remove(&token) {
                        let _ = r.send(answer); // the caller may have given up
                    }
                }
                Out::Event(e) => self.deliver(e).await,
            }
        }
        self.up
            .store(self.session.is_associated(), Ordering::Release);
        let c = self.session.counters();
        self.counters
            .malformed_frames
            .store(c.malformed_frames, Ordering::Release);
        self.counters
            .rejects_sent
            .store(c.rejects_sent, Ordering::Release);
    }

    async fn transmit(&mut self, frame: D::Frame) {
        let Conn::Open { writer, codec, .. } = &mut self.conn else {
            debug!(link = %self.name, "no transport: frame dropped");
            return;
        };
        let mut buf = BytesMut::new();
        if let Err(e) = codec.encode(frame, &mut buf) {
            warn!(link = %self.name, error = %e, "cannot frame a PDU: dropped");
            return;
        }
        let reason = match timeout(self.write_timeout, writer.write_all(&buf)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("write failed: {e}"),
            Err(_) => format!(
                "write timed out after {:?} (the switch does not read)",
                self.write_timeout
            ),
        };
        self.conn = Conn::None;
        self.session.transport_closed(now(), &reason);
    }

    async fn deliver(&mut self, e: LinkEvent) {
        let e = E::from(e);
        if self.events_stalled {
            match self.events.try_send(e) {
                Ok(()) => {
                    warn!(link = %self.name, dropped = self.events_dropped, "event consumer caught up");
                    self.events_stalled = false;
                    self.events_dropped = 0;
                }
                Err(mpsc::error::TrySendError::Full(_)) => self.events_dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
            return;
        }
        if timeout(EVENT_SEND_TIMEOUT, self.events.send(e))
            .await
            .is_err()
        {
            warn!(link = %self.name, "event consumer is not keeping up: dropping events until it does");
            self.events_stalled = true;
            self.events_dropped = 1;
        }
    }
}
