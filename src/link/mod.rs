//! The PBX link: one CSTA Phase III association (ECMA-285 BER in X.880 ROSE after X.227
//! ACSE, 2-octet framing) held open for the rest of the gateway.
//!
//! - [`session`]: the sans-IO core ([`Session`]): association, invoke-id table with
//!   deadlines, keep-alive, the monitor table, release and reconnect backoff. Frames and
//!   `now` in; frames, answers, events and timer deadlines out. Tested without sockets.
//! - [`dialect`]: what the session needs from a wire dialect ([`Dialect`]: framing,
//!   association start, encoding and decoding of typed messages, invoke-id range,
//!   keep-alive), and the neutral [`dialect::Message`] a frame decodes into.
//! - [`ber`]: [`Ber`], the ECMA-285 BER dialect (ROSE after ACSE, 2-octet framing). The
//!   session is `Session<Ber>` unless told otherwise; CSTA-XML adds a dialect beside it.
//! - [`backoff`]: the reconnect delay (exponential, bounded, jittered), a pure function.
//! - [`monitors`]: the monitor table (device <-> MonitorCrossRefID).
//! - [`driver`]: [`Link`], the cheap-to-clone handle, and the tokio task that owns the
//!   socket and the timers around the session.
//!
//! The switch saying "no" is data, not failure: every request answers
//! `Result<Result<T, CstaError>, LinkError>` — the outer error says the link could not
//! carry the request (down, timeout, aborted, ...), the inner one that the switch refused it
//! (ECMA-285 universalFailure, or an X.880 reject).

pub mod backoff;
pub mod ber;
pub mod dialect;
pub mod driver;
pub mod monitors;
pub mod reader;

/// `link.read_ahead_kb` by default: 8 MiB, half a second of a switch sending 100 000
/// events a second.
pub const READ_AHEAD_KB: usize = 8192;
/// `link.read_ahead_kb`'s bounds (64 KiB: one read; 1 GiB).
pub const READ_AHEAD_KB_RANGE: std::ops::RangeInclusive<usize> = 64..=1_048_576;
pub mod session;

pub use backoff::Backoff;
pub use ber::Ber;
pub use dialect::Dialect;
pub use driver::Link;
pub use session::{Answer, Out, Session, State, Token, MAX_IN_FLIGHT, MAX_MONITORS};

pub use ctigate_csta::framing::Framing;
use ctigate_csta_model::events::EventReport;
use ctigate_csta_model::reject::Problem;
use ctigate_csta_model::types::UniversalFailure;
use std::fmt;
use std::time::Duration;

/// How to reach and talk to one PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// A name for the logs (`pbx1`).
    pub name: String,
    /// `host:port` of the switch's CSTA port, one per side (A, B, ...): when the current
    /// side fails (connect, association, keep-alive, abort, TCP drop) the next attempt goes
    /// to the next side, round-robin. At least one.
    pub addresses: Vec<String>,
    /// The AARQ application-context-name (X.227 `aSO-context-name`), dotted OID. WIRE.md
    /// §3.3: `1.3.12.0.218` (Panasonic and most Phase III links) or `1.3.12.0.180.1`.
    pub context: String,
    /// CSTAVersion bits announced in the AARQ user information (module
    /// CSTA-application-context-information-csta3): 2/4/14/18 = ECMA-285 ed1/ed2/ed3/ed4.
    pub versions: Vec<u32>,
    /// ACSE calling-authentication-value (charstring), when the switch wants one.
    pub password: Option<String>,
    /// The header before each PDU: the 2-octet length (most switches) or Siemens HiPath's
    /// `26 8x xx` ([`Framing`]).
    pub framing: Framing,
    /// Send the pre-association `B` and expect `P` first (Alcatel OmniPCX Office).
    pub handshake: bool,
    /// Every request is answered within this time (`LinkError::Timeout` otherwise); also
    /// the wait for RLRE on shutdown.
    pub request_timeout: Duration,
    /// Silence from the switch after which we send our own systemStatus (0: never).
    pub keepalive_idle: Duration,
    /// Unanswered keep-alives after which the link is declared dead (at least 1).
    pub keepalive_misses: u32,
    /// First reconnect delay; doubled after every failed attempt ...
    pub reconnect_min: Duration,
    /// ... up to this.
    pub reconnect_max: Duration,
    /// How much of each reconnect delay is random, in percent (0 to 100).
    pub reconnect_jitter_percent: u8,
    /// An association that lasted this long starts the backoff at `reconnect_min` again.
    pub reconnect_reset: Duration,
    /// TCP connect, and then the association (handshake, AARQ/AARE), each within this.
    pub connect_timeout: Duration,
    /// Calls a SnapshotDevice answered by reference may bring (Snapshot Device Data
    /// segments); beyond it the snapshot fails with `LinkError::TooLarge`.
    pub snapshot_max_calls: usize,
    /// Largest frame accepted from the switch, in octets (at most 65535, the 2-octet
    /// framing's own bound). A longer announced length means the framing is lost (garbage
    /// where a frame header should be): the link is reset, with this limit named.
    pub max_frame: usize,
    /// Devices in the monitor table at once; one more is refused with
    /// [`LinkError::Limit`] naming `link.max_monitors`.
    pub max_monitors: usize,
    /// Requests outstanding on the switch at once (the window). The [`Link`] handle makes
    /// further requests wait for room (at most `request_timeout`); the session refuses
    /// beyond it ([`LinkError::TooManyRequests`]).
    pub max_outstanding: usize,
    /// Requests per second to the switch (0 = unlimited): the [`Link`] handle spaces them.
    pub requests_per_s: u32,
    /// Octets read from the switch ahead of the link's driver at most ([`reader`]); a
    /// driver that far behind leaves the socket unread until it catches up.
    pub read_ahead: usize,
    /// CSTA over TLS, for switches that offer it.
    pub tls: Option<LinkTls>,
}

/// TLS to the switch: its certificate must chain to `ca` (a PEM file) and name the host of
/// the address connected to, or `server_name` when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTls {
    pub ca: String,
    pub server_name: Option<String>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            name: "pbx".into(),
            addresses: vec!["127.0.0.1:2555".into()],
            context: ctigate_csta::acse::DEFAULT_CONTEXT.into(),
            versions: ctigate_csta::acse::version::PHASE3_ALL.to_vec(),
            password: None,
            framing: Framing::Length,
            handshake: false,
            request_timeout: Duration::from_secs(5),
            keepalive_idle: Duration::from_secs(20),
            keepalive_misses: 2,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            reconnect_jitter_percent: 50,
            reconnect_reset: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            snapshot_max_calls: 1024,
            max_frame: DEFAULT_MAX_FRAME,
            tls: None,
            max_monitors: MAX_MONITORS,
            max_outstanding: MAX_IN_FLIGHT,
            requests_per_s: 0,
            read_ahead: READ_AHEAD_KB * 1024,
        }
    }
}

impl LinkConfig {
    /// The reconnect backoff settings.
    pub fn backoff(&self) -> backoff::Backoff {
        backoff::Backoff {
            min: self.reconnect_min,
            max: self.reconnect_max,
            jitter_percent: self.reconnect_jitter_percent,
            reset_after: self.reconnect_reset,
        }
    }
}

/// One of a link's addresses (side A = index 0, side B = 1, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Side {
    pub index: usize,
    pub address: String,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "side {} ({})", self.index, self.address)
    }
}

/// [`LinkConfig::max_frame`] unless configured: far above any CSTA PDU seen on these links
/// (WIRE.md §2.1: the public clients send under 256 octets), far below what a random
/// 2-octet header announces on average.
pub const DEFAULT_MAX_FRAME: usize = 16_384;

/// What a link counts over its lifetime (across reconnects), for `status`, `hello` and the
/// metrics. The session counts `malformed_frames` and `rejects_sent`; the driver
/// ([`Link::counters`]) the rest (zero in [`Session::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames from the switch that could not be read: undecodable APDUs, event reports,
    /// results and error parameters that do not type, lost framing. Each is logged with
    /// its octets in hex.
    pub malformed_frames: u64,
    /// X.880 rejects the link sent to the switch.
    pub rejects_sent: u64,
    /// Events from the switch the gateway shed because it fell behind (`event_queue` was
    /// full); each device concerned was resynchronised from a snapshot afterwards.
    pub events_shed: u64,
    /// Frames read from the switch (whole frames, readable or not).
    pub frames_received: u64,
    /// Associations established after the link's first one (reconnects, failovers).
    pub reconnects: u64,
    /// Times the read-ahead was full (`link.read_ahead_kb`): the PBX socket was left
    /// unread until the driver caught up.
    pub read_ahead_full: u64,
    /// Event reports from the switch, per kind ([`EventKinds`]).
    pub events: EventKinds,
}

/// A count per CSTA event kind, indexed by
/// [`Event::kind_index`](ctigate_csta_model::events::Event::kind_index); the names are
/// [`Event::KINDS`](ctigate_csta_model::events::Event::KINDS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKinds(pub [u64; EVENT_KINDS]);

/// How many event kinds are counted (every typed CSTA event, and `other`).
pub const EVENT_KINDS: usize = ctigate_csta_model::events::Event::KINDS.len();

impl Default for EventKinds {
    fn default() -> Self {
        EventKinds([0; EVENT_KINDS])
    }
}

/// The link could not carry a request (or could not come up). Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// Not associated with the switch right now (it reconnects by itself).
    Down,
    /// No answer within `request_timeout`.
    Timeout,
    /// The switch refused the association: AARE rejected, with the X.227 diagnostic name
    /// (`application-context-name-not-supported`, `authentication-failure`, ...).
    Rejected(String),
    /// The association was aborted (ABRT from the switch, or by us after a protocol error
    /// or missed keep-alives) while the request was outstanding.
    Aborted,
    /// The connection closed, or the link was shut down, before the answer came.
    Closed,
    /// The request could not be encoded (nothing was sent).
    Encode(String),
    /// Too many requests outstanding on this link (the session's window, `max_outstanding`,
    /// or the driver's command queue).
    TooManyRequests,
    /// A configured limit was hit: its key (`link.max_monitors`, `link.max_outstanding`,
    /// `link.requests_per_s`) and its value.
    Limit(&'static str, usize),
    /// An answer larger than a configured limit (its name, its value).
    TooLarge(&'static str, usize),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Down => f.write_str(
                "the PBX link is down (not associated); it reconnects by itself: retry when it is up",
            ),
            LinkError::Timeout => f.write_str(
                "the PBX did not answer in time; the request may or may not have been carried out: check before retrying",
            ),
            LinkError::Rejected(d) => write!(
                f,
                "the PBX rejected the association: {d}; check the link's context OID, CSTA versions and password"
            ),
            LinkError::Aborted => f.write_str(
                "the association was aborted before the answer came; it reconnects by itself: retry when it is up",
            ),
            LinkError::Closed => f.write_str(
                "the link closed (connection lost or shut down) before the answer came; retry when it is up",
            ),
            LinkError::Encode(m) => write!(f, "cannot encode the request: {m}; nothing was sent"),
            LinkError::TooLarge(name, n) => write!(
                f,
                "the PBX's answer is larger than {name} = {n}; raise it in the link's configuration"
            ),
            LinkError::TooManyRequests => f.write_str(
                "too many requests outstanding on the PBX link (link.max_outstanding); slow down and retry",
            ),
            LinkError::Limit("link.max_monitors", n) => write!(
                f,
                "the link monitors {n} devices already (link.max_monitors = {n}); stop some or raise link.max_monitors"
            ),
            LinkError::Limit("link.requests_per_s", n) => write!(
                f,
                "the PBX link sends at most {n} requests per second (link.requests_per_s = {n}) and this one could not go within the request timeout; slow down and retry"
            ),
            LinkError::Limit(key, n) => write!(
                f,
                "no room on the PBX link within the request timeout: {key} = {n} requests are outstanding; slow down and retry or raise {key}"
            ),
        }
    }
}

impl std::error::Error for LinkError {}

/// The switch refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CstaError {
    /// returnError universalFailure (ECMA-285 error-definition, local error code 1).
    Failure(UniversalFailure),
    /// An X.880 reject: the problem (displayed `rejected:` and the problem name,
    /// `rejected:unrecognizedOperation`, `rejected:mistypedArgument`; `rejected:invoke/9` for
    /// unknown values). A result or error we could not read is rejected by us and answered
    /// the same way (returnResult mistypedResult, returnError unrecognizedError or
    /// mistypedParameter).
    Reject(Problem),
}

impl fmt::Display for CstaError {
    /// `operation/invalidCallID` or `rejected:unrecognizedOperation`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CstaError::Failure(u) => write!(f, "{u}"),
            CstaError::Reject(p) => write!(f, "{p}"),
        }
    }
}

impl std::error::Error for CstaError {}

/// What the link tells its owner.
///
/// `Report` carries the [`EventReport`] boxed: a report is about 1.6 KB by value, and a
/// channel of them (`event_queue`) moved that much per event and allocated its blocks of
/// 32 slots (53 KB) fresh from the OS under load (the profile at 100 000 events/s:
/// page faults in the driver's send, 3 % of the gateway).
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Associated (again), on `side`. Monitors are re-established next: one `Monitored`
    /// each.
    Up { side: Side },
    /// Not associated any more, or an attempt failed (once per distinct reason and side);
    /// `side` is the side that failed (the next attempt goes to the next side). Every
    /// monitor is suspended until `Up` and its `Monitored`.
    Down { reason: String, side: Side },
    /// A cSTAEventReport; `device` from the monitor table by crossRefIdentifier (`None`
    /// for a cross reference we do not know).
    Report {
        device: Option<String>,
        report: Box<EventReport>,
    },
    /// A device is monitored (with a new crossRefID): after `monitor` (`again` false: the
    /// caller of `monitor` knows), and again after every reconnect or switch restart (`again`
    /// true: the link did it by itself, so the owner's view of the device may be stale).
    Monitored { device: String, again: bool },
    /// A device's monitor is gone without us asking: the switch restarted (it is monitored
    /// again when the switch is back: `Monitored` follows), or re-monitoring was refused
    /// (`forgotten`: the link no longer monitors it, nor tries to).
    MonitorLost {
        device: String,
        reason: String,
        forgotten: bool,
    },
    /// The owner's view of a monitored device may be stale (events may have been lost):
    /// take a snapshot. After systemStatus messagesLost, and after an overload
    /// (overloadImminent / overloadReached, then normal, enabled or overloadRelieved), for
    /// every active monitor; `reason` says which.
    Resync { device: String, reason: String },
    /// The switch's systemStatus (ECMA-285 SystemStatus value name: `normal`,
    /// `initializing`, `messagesLost`, ...); already answered.
    SystemStatus { status: String },
}
