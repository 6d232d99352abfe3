//! The tokio driver around [`Session`]: one task owns the session, the TCP socket (framed
//! by the dialect's codec; BER: 2-octet framing, WIRE.md §2.1) and the timer; [`Link`] handles talk to it over a bounded
//! channel and get their answers on oneshots. Every wait is bounded: writes by
//! `request_timeout`, answers by the session's deadlines (plus a safety margin here),
//! shutdown by the RLRE deadline.
//!
//! Slow-consumer policy for the owner's event channel (its size is the owner's: the
//! gateway's `event_queue`): the driver never waits for room, so the switch's socket is
//! read, and keep-alives and answers go on, however far behind the owner is. When the
//! channel is full, events are shed ([`Shed`]): an event report is dropped and its device
//! remembered; once the channel has room again, the owner gets a [`LinkEvent::Resync`] for
//! every such device (its calls are taken from a snapshot), in order before anything newer.
//! `Up` and `Down` are never dropped (they wait, in order, in a small backlog), nor are the
//! re-monitors and resyncs (they become resyncs of their device).

use super::ber::Ber;
use super::dialect::Dialect;
use super::session::{Answer, Out, Session, Token};
use super::{CstaError, EventKinds, LinkConfig, LinkCounters, LinkError, LinkEvent, EVENT_KINDS};
use crate::logging::LogLimit;
use bytes::BytesMut;
use ctigate_csta_model::ops::Argument;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tokio_util::codec::{Decoder, Encoder};
use tracing::{debug, warn};

/// Commands waiting for the driver (beyond them: [`LinkError::TooManyRequests`]).
pub const COMMAND_QUEUE: usize = 1024;
/// `Up`/`Down` events held while the owner's channel is full (beyond: the oldest go, with a
/// warning; only the latest state matters then).
const HELD_LINK_STATES: usize = 64;
/// Added to `request_timeout` for the caller's own safety timeout (the session answers
/// Timeout first).
const ANSWER_SLACK: Duration = Duration::from_secs(1);
/// Room made in the read buffer before each read (frames are at most 65 537 octets; a
/// busy switch sends many small ones at once).
const READ_CHUNK: usize = 16384;
/// Frames handled one after another when several were read at once, before the driver
/// looks at its commands and timers again.
const FRAME_BATCH: usize = 256;

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
    /// A new `max_monitors` (a reload).
    Limits {
        max_monitors: usize,
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
    /// `max_outstanding` (a reload changes it).
    configured: std::sync::atomic::AtomicUsize,
    /// The window now (at most `configured`, at least 1).
    current: std::sync::atomic::AtomicUsize,
    /// Permits still to be withheld after a narrowing (taken as requests finish).
    debt: std::sync::atomic::AtomicUsize,
    /// Answered requests since the window last changed.
    answered: std::sync::atomic::AtomicUsize,
    /// `requests_per_s` (a reload changes it) and the time the next request may go.
    rate: std::sync::atomic::AtomicU32,
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
            configured: n.into(),
            current: n.into(),
            debt: 0.into(),
            answered: 0.into(),
            rate: cfg.requests_per_s.into(),
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
                warn!(link = %self.name, window = n, configured = self.configured.load(Ordering::Relaxed), "link.max_outstanding: no room for a request within the request timeout");
                return Err(LinkError::Limit("link.max_outstanding", n));
            }
        };
        let rate = self.rate.load(Ordering::Relaxed);
        if rate > 0 {
            let interval = Duration::from_secs(1) / rate;
            let at = {
                let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
                let at = (*next).max(Instant::now());
                if at > deadline {
                    warn!(link = %self.name, rate, "link.requests_per_s: no turn for a request within the request timeout");
                    return Err(LinkError::Limit("link.requests_per_s", rate as usize));
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
        let configured = self.configured.load(Ordering::Relaxed);
        if cur < configured && self.answered.fetch_add(1, Ordering::Relaxed) + 1 >= cur {
            self.answered.store(0, Ordering::Relaxed);
            if self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_err()
            {
                self.permits.add_permits(1);
            }
            let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
            debug!(link = %self.name, window = now, configured, "the switch keeps up: request window widened");
        }
    }

    /// New `max_outstanding` and `requests_per_s` (a reload): a wider window opens at once
    /// (by as much as it grew); a narrower one takes effect as outstanding requests end.
    fn set(&self, max_outstanding: usize, requests_per_s: u32) {
        self.rate.store(requests_per_s, Ordering::Relaxed);
        let n = max_outstanding.max(1);
        let old = self.configured.swap(n, Ordering::AcqRel);
        if n > old {
            let grow = n - old;
            self.current.fetch_add(grow, Ordering::AcqRel);
            // what is owed from an earlier narrowing is forgiven first
            let mut paid = 0;
            while paid < grow
                && self
                    .debt
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                    .is_ok()
            {
                paid += 1;
            }
            self.permits.add_permits(grow - paid);
        } else if n < old {
            let cur = self.current.load(Ordering::Relaxed);
            if cur > n {
                self.current.store(n, Ordering::Relaxed);
                let cut = cur - n;
                let forgotten = self.permits.forget_permits(cut);
                self.debt.fetch_add(cut - forgotten, Ordering::AcqRel);
            }
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
            warn!(link = %self.name, %error, window, configured = self.configured.load(Ordering::Relaxed), retries = BUSY_RETRIES, "the switch is busy (its own limit on outstanding requests or their rate): request window narrowed, the request retried after a pause; further busy answers are logged at debug level");
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

/// The session's [`LinkCounters`], as the driver last saw them, and the driver's own
/// (frames, reconnects, events per kind: one relaxed add where they happen).
#[derive(Debug)]
struct SharedCounters {
    malformed_frames: AtomicU64,
    rejects_sent: AtomicU64,
    events_shed: AtomicU64,
    frames_received: AtomicU64,
    reconnects: AtomicU64,
    events: [AtomicU64; EVENT_KINDS],
    /// The reading thread's bound and how often it was reached.
    read_ahead: Arc<super::reader::ReadAhead>,
}

impl SharedCounters {
    /// Zero, with the link's read-ahead of `read_ahead` octets.
    fn new(read_ahead: usize) -> Self {
        SharedCounters {
            malformed_frames: AtomicU64::new(0),
            rejects_sent: AtomicU64::new(0),
            events_shed: AtomicU64::new(0),
            frames_received: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            read_ahead: Arc::new(super::reader::ReadAhead::new(read_ahead)),
        }
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Request { arg, .. } => write!(f, "Request({})", arg.operation()),
            Cmd::Monitor { device, .. } => write!(f, "Monitor({device})"),
            Cmd::Unmonitor { device, .. } => write!(f, "Unmonitor({device})"),
            Cmd::Shutdown { .. } => f.write_str("Shutdown"),
            Cmd::Limits { max_monitors } => write!(f, "Limits({max_monitors})"),
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
        // room for the widest window a reload may set
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE.max(crate::config::MAX_OUTSTANDING_LIMIT + 64));
        let window = Arc::new(Window::new(&cfg));
        let up = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SharedCounters::new(cfg.read_ahead));
        let request_timeout = cfg.request_timeout;
        let tls = cfg.tls.as_ref().map(|t| {
            crate::tls::client(&t.ca, &format!("link {}", cfg.name))
                .map(|c| (tokio_rustls::TlsConnector::from(c), t.server_name.clone()))
        });
        let driver = Driver {
            name: cfg.name.clone(),
            tls,
            write_timeout: cfg.request_timeout.max(Duration::from_millis(100)),
            session: Session::<D>::with_dialect(cfg, Instant::now().into_std()),
            rx,
            rx_open: true,
            events,
            shed: Shed::default(),
            shed_log: LogLimit::new(),
            caught_up_log: LogLimit::new(),
            shed_unlogged: 0,
            shed_episodes_unlogged: 0,
            associated_before: false,
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

    /// Malformed frames from the switch and rejects sent to it, frames and event reports
    /// received, reconnects, so far.
    pub fn counters(&self) -> LinkCounters {
        let c = &self.counters;
        LinkCounters {
            malformed_frames: c.malformed_frames.load(Ordering::Acquire),
            rejects_sent: c.rejects_sent.load(Ordering::Acquire),
            events_shed: c.events_shed.load(Ordering::Acquire),
            frames_received: c.frames_received.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            read_ahead_full: c.read_ahead.full.load(Ordering::Relaxed),
            events: EventKinds(std::array::from_fn(|i| c.events[i].load(Ordering::Relaxed))),
        }
    }

    /// How long the octets the link decoded last had waited for it since they were read
    /// from the PBX socket ([`ReadAhead::waited`](super::reader::ReadAhead::waited)).
    pub fn read_waited(&self) -> Duration {
        self.counters.read_ahead.waited()
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
            self.window.configured.load(Ordering::Relaxed),
        )
    }

    /// New limits (a configuration reload): `max_outstanding` and `requests_per_s` for the
    /// next requests, `max_monitors` for the next monitors (those beyond it stay).
    pub async fn set_limits(
        &self,
        max_monitors: usize,
        max_outstanding: usize,
        requests_per_s: u32,
    ) {
        self.window.set(max_outstanding, requests_per_s);
        let cmd = Cmd::Limits { max_monitors };
        if timeout(self.request_timeout, self.tx.send(cmd))
            .await
            .is_err()
        {
            warn!("link.max_monitors: the link did not take the new limit in time");
        }
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

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;
type Connecting = Pin<Box<dyn Future<Output = std::io::Result<(Reader, Writer)>> + Send>>;

enum Conn<C> {
    None,
    Connecting(Connecting),
    Open {
        reader: Reader,
        buf: BytesMut,
        codec: C,
        writer: Writer,
    },
}

/// Connect to `addr`: TCP, then the TLS handshake when `tls` is set (the session bounds the
/// whole attempt by `connect_timeout`).
async fn connect(
    addr: String,
    tls: Option<(tokio_rustls::TlsConnector, Option<String>)>,
    link: String,
    ahead: Arc<super::reader::ReadAhead>,
) -> std::io::Result<(Reader, Writer)> {
    // read on the PBX reading thread ([`super::reader`])
    let stream = super::reader::connect(addr.clone(), link, ahead).await?;
    let Some((connector, name)) = tls else {
        let (r, w) = stream.into_split();
        return Ok((Box::new(r), Box::new(w)));
    };
    let name = crate::tls::server_name(&addr, name.as_deref())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
    let (r, w) = tokio::io::split(stream);
    Ok((Box::new(r), Box::new(w)))
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
    reader: &mut Reader,
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
    Connected(std::io::Result<(Reader, Writer)>),
    Frame(Option<FrameResult<D>>),
}

enum Wake<D: Dialect> {
    Cmd(Option<Cmd>),
    /// The owner's channel has room again (false: it is closed) while shedding.
    Room(bool),
    Timer,
    /// A held-back "caught up" line's totals may be written now.
    LateTotals,
    Conn(ConnEvent<D>),
}

/// The TLS connector of a link and the server name to check, or why there is none.
type LinkTlsConnector = Result<(tokio_rustls::TlsConnector, Option<String>), String>;

struct Driver<E, D: Dialect> {
    name: String,
    tls: Option<LinkTlsConnector>,
    write_timeout: Duration,
    session: Session<D>,
    rx: mpsc::Receiver<Cmd>,
    rx_open: bool,
    events: mpsc::Sender<E>,
    shed: Shed,
    /// At most one "not keeping up" warning a second (the rest at debug, counted).
    shed_log: LogLimit,
    /// At most one "caught up" warning a second, with the events shed and the episodes
    /// since the last one written.
    caught_up_log: LogLimit,
    shed_unlogged: u64,
    shed_episodes_unlogged: u64,
    /// The link was associated once already (the next association is a reconnect).
    associated_before: bool,
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
            let shedding = self.shed.active();
            // totals of a held-back "caught up" line: written once the line's limit allows
            // it, however quiet the link is by then
            let late_totals = (self.shed_unlogged > 0 && !shedding)
                .then(|| self.caught_up_log.next_at().unwrap_or_else(now));
            let wake = tokio::select! {
                c = self.rx.recv(), if self.rx_open => Wake::Cmd(c),
                r = self.events.reserve(), if shedding => Wake::Room(r.is_ok()),
                _ = sleep_until(timer) => Wake::Timer,
                _ = sleep_until(late_totals), if late_totals.is_some() => Wake::LateTotals,
                e = conn_event::<D>(&mut self.conn) => Wake::Conn(e),
            };
            let batch = self.wake(wake, now());
            if batch {
                // the other whole frames already read, without a round through the
                // select (bounded, so that commands and timers are served between)
                for _ in 1..FRAME_BATCH {
                    self.flush().await;
                    let Conn::Open { buf, codec, .. } = &mut self.conn else {
                        break;
                    };
                    let next = codec.decode(buf).map_err(|e| e.to_string());
                    match next {
                        Ok(Some(f)) => self.frame_in(f, self::now()),
                        Ok(None) => break,
                        Err(e) => {
                            self.session.framing_lost(self::now(), &e);
                            break;
                        }
                    }
                }
            }
        }
        self.up.store(false, Ordering::Release);
        if self.shed_unlogged > 0 {
            // totals held back: the lines add up to `events_shed` to the end
            self.write_caught_up();
        }
        for (_, r) in self.replies.drain() {
            let _ = r.send(Err(LinkError::Closed));
        }
        for d in self.done.drain(..) {
            let _ = d.send(());
        }
        debug!(link = %self.name, "link driver stopped");
    }

    /// Act on what woke the driver; true when a frame came (more may be buffered).
    fn wake(&mut self, wake: Wake<D>, now: std::time::Instant) -> bool {
        let mut batch = false;
        match wake {
            Wake::Cmd(None) => {
                debug!(link = %self.name, "every handle dropped: shutting down");
                self.rx_open = false;
                self.session.shutdown(now);
            }
            Wake::Cmd(Some(c)) => self.command(c, now),
            Wake::Timer => self.session.handle_timeout(now),
            Wake::LateTotals => {
                // the limit's second is over: this line starts its next one (written even
                // should the limit's clock disagree, so the timer never fires in a loop)
                let _ = self.caught_up_log.allow();
                self.write_caught_up();
            }
            Wake::Room(true) => self.catch_up(),
            Wake::Room(false) => self.shed = Shed::default(),
            Wake::Conn(ConnEvent::Connected(Ok((r, w)))) => match self.session.codec() {
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
            },
            Wake::Conn(ConnEvent::Connected(Err(e))) => {
                self.conn = Conn::None;
                let reason = format!("cannot connect to {}: {e}", self.session.address());
                self.session.transport_closed(now, &reason);
            }
            Wake::Conn(ConnEvent::Frame(Some(Ok(f)))) => {
                self.frame_in(f, now);
                batch = true;
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
        batch
    }

    fn frame_in(&mut self, f: D::Frame, now: std::time::Instant) {
        self.counters
            .frames_received
            .fetch_add(1, Ordering::Relaxed);
        tracing::trace!(link = %self.name, frame = ?f, "frame in");
        self.session.handle_frame(f, now)
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
            Cmd::Limits { max_monitors } => self.session.set_max_monitors(max_monitors),
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
                    let tls = match &self.tls {
                        None => None,
                        Some(Ok(t)) => Some(t.clone()),
                        Some(Err(e)) => {
                            // the CA file went missing or bad since the start: say so on
                            // every attempt
                            let e =
                                std::io::Error::new(std::io::ErrorKind::InvalidInput, e.clone());
                            self.conn = Conn::Connecting(Box::pin(async move { Err(e) }));
                            continue;
                        }
                    };
                    self.conn = Conn::Connecting(Box::pin(connect(
                        addr,
                        tls,
                        self.name.clone(),
                        self.counters.read_ahead.clone(),
                    )));
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
                Out::Event(e) => {
                    self.count(&e);
                    self.deliver(e)
                }
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
        let write = async {
            writer.write_all(&buf).await?;
            // TLS holds what it encrypted until flushed
            writer.flush().await
        };
        let reason = match timeout(self.write_timeout, write).await {
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

    /// Count an event for the metrics: reports per kind, associations after the first.
    fn count(&mut self, e: &LinkEvent) {
        match e {
            LinkEvent::Report { report, .. } => {
                self.counters.events[report.event.kind_index()].fetch_add(1, Ordering::Relaxed);
            }
            LinkEvent::Up { .. } => {
                if self.associated_before {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                self.associated_before = true;
            }
            _ => {}
        }
    }

    /// Give `e` to the owner without waiting: when its channel is full (or older shed
    /// work still waits), shed it ([`Shed::hold`]).
    fn deliver(&mut self, e: LinkEvent) {
        if self.shed.active() {
            self.catch_up();
        }
        let e = if self.shed.active() {
            e
        } else {
            let full = match self.events.try_reserve() {
                Ok(p) => {
                    p.send(E::from(e));
                    None
                }
                Err(mpsc::error::TrySendError::Closed(())) => return,
                Err(mpsc::error::TrySendError::Full(())) => Some(e),
            };
            let Some(e) = full else {
                return;
            };
            // an overload sheds in many short episodes (the queue has room for one
            // event, then is full again): one warning a second, each at debug
            match self.shed_log.allow() {
                Some(left_out) => {
                    warn!(link = %self.name, limit = "link.event_queue", left_out,
                          "the gateway is not keeping up with the switch's events: shedding them (each device concerned is resynchronised from a snapshot once it catches up); the switch is still read")
                }
                None => debug!(link = %self.name, limit = "link.event_queue",
                               "shedding the switch's events again"),
            }
            e
        };
        let dropped = self.shed.hold(e);
        self.count_shed(dropped);
    }

    fn count_shed(&mut self, n: u64) {
        if n > 0 {
            self.shed.episode += n;
            self.counters.events_shed.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Hand the owner what shedding kept back, as far as its channel takes it.
    fn catch_up(&mut self) {
        while let Some(e) = self.shed.peek_next() {
            match self.events.try_reserve() {
                Ok(p) => {
                    self.shed.pop(&e);
                    p.send(E::from(e));
                }
                Err(_) => return,
            }
        }
        if self.shed.active() {
            return;
        }
        if self.shed.episode > 0 {
            self.shed_unlogged += self.shed.episode;
            self.shed_episodes_unlogged += 1;
            if !self.log_caught_up() {
                debug!(link = %self.name, shed = self.shed.episode,
                       "the gateway caught up with the switch's events again");
            }
            self.shed.episode = 0;
        }
    }

    /// The "caught up" warning with the events shed and the episodes ended since the last
    /// one, when a line is allowed now (one a second); `false`: held back, the totals kept
    /// for the next (the run loop writes them once the limit allows a line).
    fn log_caught_up(&mut self) -> bool {
        if self.caught_up_log.allow().is_none() {
            return false;
        }
        self.write_caught_up();
        true
    }

    /// The "caught up" warning with the totals kept (the rate limit asked before).
    fn write_caught_up(&mut self) {
        warn!(link = %self.name, shed = self.shed_unlogged, episodes = self.shed_episodes_unlogged,
              "the gateway caught up with the switch's events; the devices concerned are being resynchronised");
        self.shed_unlogged = 0;
        self.shed_episodes_unlogged = 0;
    }
}

/// What the driver keeps back while the owner's channel is full: the link states (`Up`,
/// `Down`) in order, and the devices to resynchronise (their event reports were dropped,
/// or a re-monitor or resync was due). Bounded: a device is kept once, and the link
/// states by [`HELD_LINK_STATES`].
#[derive(Default)]
struct Shed {
    /// Shedding: set by the first event that found the channel full, cleared when
    /// everything held was handed over.
    on: bool,
    states: VecDeque<LinkEvent>,
    devices: BTreeSet<String>,
    /// Events shed in this episode (for the catch-up warning).
    episode: u64,
}

impl Shed {
    fn active(&self) -> bool {
        self.on
    }

    /// Keep what matters of `e`; the number of events dropped (0 or 1).
    fn hold(&mut self, e: LinkEvent) -> u64 {
        self.on = true;
        match e {
            LinkEvent::Up { .. } | LinkEvent::Down { .. } => {
                if self.states.len() >= HELD_LINK_STATES {
                    self.states.pop_front();
                    warn!(
                        limit = HELD_LINK_STATES,
                        "link states held while the gateway is behind: the oldest dropped"
                    );
                }
                self.states.push_back(e);
                0
            }
            LinkEvent::Report {
                device: Some(device),
                ..
            } => {
                self.devices.insert(device);
                1
            }
            LinkEvent::Monitored {
                device,
                again: true,
            }
            | LinkEvent::Resync { device, .. } => {
                self.devices.insert(device);
                0
            }
            LinkEvent::Report { device: None, .. } => {
                debug!("an event for an unknown monitor shed");
                1
            }
            LinkEvent::Monitored { again: false, .. } => 0,
            LinkEvent::MonitorLost { device, reason, .. } => {
                warn!(%device, %reason, "monitor lost (while shedding events)");
                0
            }
            LinkEvent::SystemStatus { status } => {
                debug!(%status, "PBX system status (while shedding events)");
                0
            }
        }
    }

    /// The next thing to hand over: link states first, then one resync per device.
    fn peek_next(&self) -> Option<LinkEvent> {
        if let Some(s) = self.states.front() {
            return Some(s.clone());
        }
        self.devices.first().map(|d| LinkEvent::Resync {
            device: d.clone(),
            reason: "events were shed: the gateway fell behind the switch (link.event_queue)"
                .into(),
        })
    }

    /// `e` (from [`Shed::peek_next`]) was handed over.
    fn pop(&mut self, e: &LinkEvent) {
        match e {
            LinkEvent::Resync { device, .. } if self.states.is_empty() => {
                self.devices.remove(device);
            }
            _ => {
                self.states.pop_front();
            }
        }
        if self.states.is_empty() && self.devices.is_empty() {
            self.on = false;
        }
    }
}
