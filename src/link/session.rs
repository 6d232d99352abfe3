//! The sans-IO link session: frames and `now` in; frames to send, answers, events and the
//! next timer deadline out. No socket, no runtime: the driver (or a test) moves bytes and
//! time.
//!
//! What it does, and the standard behind it (as the BER dialect, [`Ber`], carries it; another
//! dialect maps the same steps onto its own messages):
//! - association as the client (X.227 ACSE): AARQ with the configured
//!   application-context-name, CSTAVersion user information (ECMA-285
//!   CSTA-application-context-information-csta3) and optional calling-authentication-value;
//!   an AARE rejection or ABRT ends the attempt with the diagnostic named;
//! - our invokes (X.880 ROSE): invoke ids in the dialect's range (BER: 1..=32767), wrapping
//!   and skipping ids in flight;
//!   a deadline for every request; returnResult / returnError / reject correlated to the
//!   request by invoke id. The switch's invokes have their own id space (WIRE.md §4) and are
//!   never looked up among ours;
//! - the switch's invokes: cSTAEventReport (op 21, `ALWAYS RESPONDS FALSE`: never answered)
//!   routed through the monitor table; systemStatus (op 211) answered at once with
//!   returnResult noData (WIRE.md §9); anything else rejected (invoke unrecognizedOperation);
//! - our keep-alive: systemStatus(normal) after `keepalive_idle` of silence from the switch,
//!   the link declared dead (ABRT, close) when `keepalive_misses` are unanswered;
//! - the monitor table (device <-> crossRefIdentifier), re-established after every
//!   reconnect and after a switch restart or outage (systemStatus initializing or disabled,
//!   then enabled or normal);
//! - "nothing lost" (ECMA-269 system status): after systemStatus messagesLost, and when an
//!   overload (overloadImminent / overloadReached) is over (normal, enabled or
//!   overloadRelieved), every active monitor is told [`LinkEvent::Resync`] (the owner takes
//!   a snapshot); a monitor the switch no longer knows (a returnError
//!   operation/invalidMonitorCrossRefID to a request naming its cross reference, or event
//!   reports naming the device under a cross reference we never got) is monitored again;
//! - orderly release (X.227 RLRQ / RLRE) on shutdown;
//! - reconnect with exponential backoff between `reconnect_min` and `reconnect_max`, with
//!   jitter ([`super::backoff`]), started again once an association lasted
//!   `reconnect_reset`;
//! - sides: with several addresses, every failure (connect, association, keep-alive, abort,
//!   TCP drop) moves the next attempt to the next address, round-robin; the monitors are
//!   re-established on whichever side comes up.
//!
//! States are named for what they wait for: [`State`].
//!
//! The bytes are the [`Dialect`]'s: the session is generic over it (`Session<D>`) and is
//! `Session<Ber>` by default. It sees a frame only through [`Dialect::decode`] (a neutral
//! [`Message`]) and builds every frame it sends through the dialect.

use super::ber::Ber;
use super::dialect::{Association, Dialect, Fault, Garbled, Message, SwitchError};
use super::monitors::{MonitorState, MonitorTable};
use super::{CstaError, LinkConfig, LinkCounters, LinkError, LinkEvent, Side};
use bytes::Bytes;
use ctigate_csta::framing::Frame;
use ctigate_csta_model::events::EventReport;
use ctigate_csta_model::opcode;
use ctigate_csta_model::ops::{
    Argument, MonitorStartArgument, MonitorStopArgument, Operation, OperationResult, SnapshotData,
    SnapshotDeviceResponseInfo, SnapshotDeviceResult, SystemStatus,
};
use ctigate_csta_model::reject::Problem;
use ctigate_csta_model::types::{
    CstaObject, DeviceId, MonitorCrossRefId, TypeError, UniversalFailure,
};
use ctigate_csta_model::value::Value;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;
use tracing::{debug, info, warn};

/// Requests (ours, with a caller waiting) outstanding at once unless configured
/// ([`LinkConfig::max_outstanding`]); more get [`LinkError::TooManyRequests`].
pub const MAX_IN_FLIGHT: usize = 256;
/// Devices in the monitor table unless configured ([`LinkConfig::max_monitors`]): sized
/// for 100 000 devices and room to spare.
pub const MAX_MONITORS: usize = 200_000;
/// The longest reconnect delay, whatever the configuration says (the clock cannot overflow).
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Callers waiting on one MonitorStart (further `monitor` calls of the same device join it).
const MAX_WAITERS: usize = 64;
pub use super::ber::MAX_INVOKE_ID;
/// Re-monitors in flight at once after a reconnect (the rest queue): a quarter of the
/// window ([`LinkConfig::max_outstanding`]), at least 1.
fn remonitor_batch(cfg: &LinkConfig) -> usize {
    (cfg.max_outstanding / 4).max(1)
}
/// Resyncs told at once after messagesLost or an overload; one more per answered request.
fn resync_batch(cfg: &LinkConfig) -> usize {
    (cfg.max_outstanding / 4).max(1)
}
/// Unknown cross references remembered per association (each is stopped and acted on
/// once; the oldest is forgotten beyond this).
const MAX_UNKNOWN_XREFS: usize = 64;
/// ECMA-285 universalFailure operation/invalidMonitorCrossRefID (error-definition:
/// `OperationErrors` value 60): the switch does not know the monitor.
const INVALID_MONITOR_XREF: (&str, i64) = ("operation", 60);

/// X.880 problems we send (and answer callers with when we reject their answer).
mod problem {
    use super::Problem;
    pub const UNRECOGNIZED_PDU: Problem = Problem::UNRECOGNIZED_PDU;
    pub const MISTYPED_PDU: Problem = Problem::MISTYPED_PDU;
    pub const BADLY_STRUCTURED_PDU: Problem = Problem::BADLY_STRUCTURED_PDU;
    pub const RESULT_UNRECOGNIZED_INVOCATION: Problem = Problem::RESULT_UNRECOGNIZED_INVOCATION;
    pub const ERROR_UNRECOGNIZED_INVOCATION: Problem = Problem::ERROR_UNRECOGNIZED_INVOCATION;
    pub const UNRECOGNIZED_OPERATION: Problem = Problem::UNRECOGNIZED_OPERATION;
    pub const MISTYPED_ARGUMENT: Problem = Problem::MISTYPED_ARGUMENT;
    pub const MISTYPED_RESULT: Problem = Problem::MISTYPED_RESULT;
    pub const UNRECOGNIZED_ERROR: Problem = Problem::UNRECOGNIZED_ERROR;
    pub const MISTYPED_PARAMETER: Problem = Problem::MISTYPED_PARAMETER;
}

/// Identifies a caller's request; chosen by the driver, echoed in [`Out::Answer`].
pub type Token = u64;

/// The answer to a request: the link failed, the switch refused, or the result.
pub type Answer = Result<Result<Option<OperationResult>, CstaError>, LinkError>;

/// What the driver must do. Transient (drained after every call), so it is as large as
/// its largest payload (an event report or a result). `F` is the dialect's frame
/// ([`Dialect::Frame`]; BER: [`Frame`]).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Out<F = Frame> {
    /// Open the transport (TCP connect to [`Session::address`]), then call [`Session::connected`] or
    /// [`Session::transport_closed`]. The session bounds the attempt by `connect_timeout`
    /// (then [`Out::Close`] follows).
    Connect,
    /// Send this frame (the driver frames it with the dialect's codec).
    Transmit(F),
    /// Close the transport (or abandon the connect attempt).
    Close,
    /// The answer to the request `token`.
    Answer { token: Token, answer: Answer },
    /// Tell the owner.
    Event(LinkEvent),
}

/// What the session waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The time to connect again (backoff).
    ExpectRetry { at: Instant },
    /// The transport (TCP connect), until `deadline`.
    ExpectConnect { deadline: Instant },
    /// The switch's pre-association signal after ours (BER: `P` after our `B`).
    ExpectHandshake { deadline: Instant },
    /// The association response (BER: the AARE answering our AARQ).
    ExpectAare { deadline: Instant },
    /// Associated: requests, events, keep-alives.
    Associated,
    /// The release response (BER: the RLRE answering our RLRQ) on shutdown.
    ExpectRlre { deadline: Instant },
    /// Shut down for good (or the configuration cannot work).
    Closed,
}

/// Who waits for one of our invokes.
#[derive(Debug)]
enum Purpose {
    /// A caller's request.
    Request { token: Token },
    /// Our keep-alive (systemStatus); bounded by the keep-alive rule, not a deadline.
    KeepAlive,
    /// MonitorStart of a device; the callers waiting for it (none for a re-monitor).
    MonitorStart { device: String, waiters: Vec<Token> },
    /// MonitorStop; `None` when we stop a monitor nobody wants any more.
    MonitorStop { token: Option<Token> },
    /// A SnapshotDevice answered by reference (`serviceCrossRefID`): its calls come in the
    /// switch's Snapshot Device Data invocations; the caller gets them all as one
    /// `snapshotData` answer after the last segment (or the error when they stop coming).
    SnapshotData {
        token: Token,
        xref: Bytes,
        rows: Vec<SnapshotDeviceResponseInfo>,
    },
}

#[derive(Debug)]
struct Pending {
    op: Operation,
    purpose: Purpose,
    deadline: Option<Instant>,
    /// The monitor cross reference the invoke names (MonitorStop).
    xref: Option<MonitorCrossRefId>,
}

/// The outcome of one of our invokes, as the switch answered it.
type Outcome = Result<Option<OperationResult>, CstaError>;

/// The sans-IO link session, over the dialect `D`. See the module documentation.
#[derive(Debug)]
pub struct Session<D: Dialect = Ber> {
    cfg: LinkConfig,
    /// The dialect; `None` only when the configuration cannot work (closed for good).
    dialect: Option<D>,
    state: State,
    out: VecDeque<Out<D::Frame>>,
    /// Our invokes by invoke id.
    pending: HashMap<i64, Pending>,
    /// Pending invokes with a caller waiting (bounded by [`MAX_IN_FLIGHT`]).
    callers: usize,
    next_invoke: i64,
    /// Failed attempts since the last stable association (the backoff's exponent).
    attempt: u32,
    /// The backoff's jitter.
    rng: fastrand::Rng,
    /// The address in use or tried next (index into `cfg.addresses`).
    side: usize,
    /// When the current association came up.
    up_since: Option<Instant>,
    next_keepalive: Option<Instant>,
    keepalives_unanswered: u32,
    monitors: MonitorTable,
    /// Devices to monitor again, in order (all in state ExpectRemonitor).
    remonitor: VecDeque<String>,
    /// The switch said systemStatus initializing or disabled (the name): its monitors are
    /// gone and wait for it to be enabled or normal again.
    switch_unavailable: Option<&'static str>,
    /// The switch said overloadImminent or overloadReached: every monitor is resynchronised
    /// when it says normal, enabled or overloadRelieved.
    overloaded: bool,
    /// Overload warnings from the switch (overloadImminent, overloadReached) since start.
    overloads: u64,
    /// Cross references of event reports we did not know (this association), oldest first.
    unknown_xrefs: VecDeque<MonitorCrossRefId>,
    /// Devices still to be told [`LinkEvent::Resync`] (bounded by the monitor table), with
    /// the reason, and how many may be told now.
    resync_queue: VecDeque<(String, String)>,
    resync_credit: usize,
    /// The last Down reason told the owner while not associated, per side.
    down_reported: Vec<Option<String>>,
    /// Why requests fail while down, when more telling than `Down` (an AARE rejection).
    refusal: Option<LinkError>,
    /// What requests get once closed.
    closed_with: LinkError,
    shutting_down: bool,
    /// Malformed frames and rejects sent, over the session's lifetime.
    counters: LinkCounters,
}

impl Session<Ber> {
    /// A BER session for `cfg`, connecting at once ([`Out::Connect`] is queued). An
    /// unusable configuration (bad context OID) gives a closed session that says why
    /// ([`LinkEvent::Down`], and [`LinkError::Encode`] to every request).
    pub fn new(cfg: LinkConfig, now: Instant) -> Session<Ber> {
        Session::with_dialect(cfg, now)
    }
}

impl<D: Dialect> Session<D> {
    /// A session of the dialect `D` for `cfg` ([`Dialect::from_config`]), connecting at once;
    /// as [`Session::new`] otherwise.
    pub fn with_dialect(cfg: LinkConfig, now: Instant) -> Session<D> {
        let dialect = if cfg.addresses.is_empty() {
            Err("no address to connect to".to_string())
        } else {
            D::from_config(&cfg)
        };
        let mut s = Session {
            dialect: None,
            state: State::Closed,
            out: VecDeque::new(),
            pending: HashMap::new(),
            callers: 0,
            next_invoke: D::FIRST_INVOKE_ID,
            attempt: 0,
            rng: fastrand::Rng::new(),
            side: 0,
            up_since: None,
            next_keepalive: None,
            keepalives_unanswered: 0,
            monitors: MonitorTable::default(),
            remonitor: VecDeque::new(),
            switch_unavailable: None,
            overloaded: false,
            overloads: 0,
            unknown_xrefs: VecDeque::new(),
            resync_queue: VecDeque::new(),
            resync_credit: 0,
            down_reported: vec![None; cfg.addresses.len().max(1)],
            refusal: None,
            closed_with: LinkError::Closed,
            shutting_down: false,
            counters: LinkCounters::default(),
            cfg,
        };
        match dialect {
            Ok(d) => {
                s.dialect = Some(d);
                s.start_connect(now);
            }
            Err(e) => {
                warn!(link = %s.cfg.name, error = %e, "the link configuration cannot work: not connecting");
                s.closed_with = LinkError::Encode(e.clone());
                let side = s.side();
                s.event(LinkEvent::Down {
                    reason: format!("bad link configuration: {e}"),
                    side,
                });
            }
        }
        s
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn is_associated(&self) -> bool {
        self.state == State::Associated
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// The address connected to, or tried next ([`Out::Connect`] connects to it).
    pub fn address(&self) -> &str {
        self.cfg.addresses.get(self.side).map_or("", String::as_str)
    }

    /// The side connected to, or tried next.
    pub fn side(&self) -> Side {
        Side {
            index: self.side,
            address: self.address().to_string(),
        }
    }

    /// Make the backoff's jitter repeatable (tests).
    pub fn seed_jitter(&mut self, seed: u64) {
        self.rng = fastrand::Rng::with_seed(seed);
    }

    /// Malformed frames from the switch and rejects sent to it, since the session began
    /// (across reconnects).
    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    /// Invokes of ours outstanding (requests, monitor starts and stops, keep-alives); at
    /// most [`MAX_IN_FLIGHT`] with a caller, plus the re-monitors, stops and keep-alives
    /// the link sends by itself.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The monitor table.
    pub fn monitors(&self) -> &MonitorTable {
        &self.monitors
    }

    /// Overload warnings (systemStatus overloadImminent / overloadReached) since start.
    pub fn overloads(&self) -> u64 {
        self.overloads
    }

    /// A framing codec for a new connection (`None` when the configuration cannot work:
    /// then the session never asks to connect).
    pub fn codec(&self) -> Option<D::Codec> {
        self.dialect.as_ref().map(D::codec)
    }

    /// The next thing for the driver to do. Drain it after every call into the session; it
    /// holds at most what one call produced (bounded by the requests in flight and the
    /// monitor table).
    pub fn poll_output(&mut self) -> Option<Out<D::Frame>> {
        self.out.pop_front()
    }

    /// When [`Session::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = match self.state {
            State::ExpectRetry { at } => Some(at),
            State::ExpectConnect { deadline }
            | State::ExpectHandshake { deadline }
            | State::ExpectAare { deadline }
            | State::ExpectRlre { deadline } => Some(deadline),
            State::Associated => self.next_keepalive,
            State::Closed => None,
        };
        for d in self.pending.values().filter_map(|p| p.deadline) {
            t = Some(t.map_or(d, |x: Instant| x.min(d)));
        }
        t
    }

    /// Timers: reconnect, connect and association deadlines, request deadlines,
    /// keep-alive, the release deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_requests(now);
        match self.state.clone() {
            State::ExpectRetry { at } if now >= at => self.start_connect(now),
            State::ExpectConnect { deadline } if now >= deadline => {
                let reason = format!(
                    "cannot connect to {} within {:?}",
                    self.address(),
                    self.cfg.connect_timeout
                );
                self.lose_link(now, LinkError::Closed, reason);
            }
            State::ExpectHandshake { deadline } if now >= deadline => {
                let reason = format!(
                    "no pre-association 'P' from the switch within {:?}; is handshake meant to be on?",
                    self.cfg.connect_timeout
                );
                self.lose_link(now, LinkError::Closed, reason);
            }
            State::ExpectAare { deadline } if now >= deadline => {
                let reason = format!(
                    "no AARE within {:?} after the AARQ; is this a CSTA port (handshake setting)?",
                    self.cfg.connect_timeout
                );
                self.abort(now, reason);
            }
            State::ExpectRlre { deadline } if now >= deadline => {
                warn!(link = %self.cfg.name, "no RLRE in time: closing without it");
                self.finish("released without RLRE (release not confirmed in time)");
            }
            State::Associated => self.keepalive(now),
            _ => {}
        }
    }

    /// The transport is open: start the association.
    pub fn connected(&mut self, now: Instant) {
        if !matches!(self.state, State::ExpectConnect { .. }) {
            debug!(link = %self.cfg.name, state = ?self.state, "transport open in an unexpected state: ignored");
            return;
        }
        let deadline = now + self.cfg.connect_timeout;
        match self.dialect.as_ref().and_then(D::handshake) {
            Some(f) => {
                self.out.push_back(Out::Transmit(f));
                self.state = State::ExpectHandshake { deadline };
            }
            None => self.send_aarq(deadline),
        }
    }

    /// The transport closed (or the connect attempt failed) with `reason`.
    pub fn transport_closed(&mut self, now: Instant, reason: &str) {
        match self.state {
            State::Closed | State::ExpectRetry { .. } => {}
            State::ExpectRlre { .. } => self.finish(&format!("closed during release: {reason}")),
            _ => self.lose_link(now, LinkError::Closed, reason.to_string()),
        }
    }

    /// The framing codec lost the frame boundaries (`error`: garbage where a frame header
    /// should be, a length over [`LinkConfig::max_frame`]). Nothing more on this
    /// connection can be read: counted as a malformed frame, and the link is reset (ABRT,
    /// close, reconnect) with the reason named.
    pub fn framing_lost(&mut self, now: Instant, error: &str) {
        self.counters.malformed_frames += 1;
        self.reset_framing(now, error);
    }

    fn reset_framing(&mut self, now: Instant, error: &str) {
        let error = error.strip_prefix("loss of framing: ").unwrap_or(error);
        let reason = format!(
            "framing lost ({error}; the link's max_frame is {} octets): resetting the link",
            self.cfg.max_frame
        );
        warn!(link = %self.cfg.name, %reason, "framing lost");
        match self.state {
            State::Closed | State::ExpectRetry { .. } => {}
            State::ExpectRlre { .. } => self.finish(&reason),
            State::ExpectConnect { .. } => self.lose_link(now, LinkError::Closed, reason),
            _ => self.abort(now, reason),
        }
    }

    /// A frame from the switch.
    pub fn handle_frame(&mut self, frame: D::Frame, now: Instant) {
        match self.state {
            State::Associated | State::ExpectRlre { .. } => {
                // anything from the switch proves it alive
                self.keepalives_unanswered = 0;
                if !self.cfg.keepalive_idle.is_zero() {
                    self.next_keepalive = Some(now + self.cfg.keepalive_idle);
                }
            }
            State::ExpectHandshake { .. } | State::ExpectAare { .. } => {}
            _ => {
                debug!(link = %self.cfg.name, state = ?self.state, "frame without a transport: ignored");
                return;
            }
        }
        let Some(dialect) = &mut self.dialect else {
            return;
        };
        let msg = dialect.decode(frame);
        if let Message::Handshake { expected, text } = msg {
            match self.state {
                State::ExpectHandshake { deadline } if expected => {
                    debug!(link = %self.cfg.name, "pre-association signal received: sending the association request");
                    self.send_aarq(deadline);
                }
                _ => self.abort(now, text),
            }
            return;
        }
        if matches!(self.state, State::ExpectHandshake { .. }) {
            self.abort(
                now,
                format!(
                    "{} before the pre-association signal; check the handshake setting",
                    msg.kind()
                ),
            );
            return;
        }
        match msg {
            Message::Association { name, what } => self.on_association(name, what, now),
            Message::Undecodable { error, dump, guess } => {
                self.on_undecodable(&error, &dump, guess, now)
            }
            m => self.on_operation(m, now),
        }
    }

    /// A caller's request.
    pub fn request(&mut self, token: Token, arg: Argument, now: Instant) {
        if let Err(e) = self.can_invoke() {
            return self.answer(token, Err(e));
        }
        if arg.operation() == Operation::CstaEventReport {
            return self.answer(
                token,
                Err(LinkError::Encode(
                    "cSTAEventReport is sent by the switch, not requested".into(),
                )),
            );
        }
        let deadline = Some(now + self.cfg.request_timeout);
        debug!(link = %self.cfg.name, op = arg.operation().name(), "request");
        if let Err((e, _)) = self.invoke(&arg, Purpose::Request { token }, deadline) {
            self.answer(token, Err(e));
        }
    }

    /// Monitor a device (MonitorStart, ECMA-285 monitor-start) and remember it for every
    /// later association. Idempotent: an active device answers at once, a start in flight is
    /// joined. Answers `Ok(Ok(None))` on success.
    /// A new `max_monitors` (a reload): for the next monitors; those beyond it stay.
    pub fn set_max_monitors(&mut self, n: usize) {
        self.cfg.max_monitors = n;
    }

    pub fn monitor(&mut self, token: Token, device: &str, now: Instant) {
        if let Err(e) = self.can_invoke() {
            return self.answer(token, Err(e));
        }
        match self.monitors.state(device).cloned() {
            Some(MonitorState::Active(_)) => self.answer(token, Ok(Ok(None))),
            Some(MonitorState::ExpectStartResult { invoke }) => {
                match self.pending.get_mut(&invoke).map(|p| &mut p.purpose) {
                    Some(Purpose::MonitorStart { waiters, .. }) if waiters.len() < MAX_WAITERS => {
                        waiters.push(token);
                        self.callers += 1;
                    }
                    _ => self.answer(token, Err(LinkError::TooManyRequests)),
                }
            }
            state => {
                let max = self.cfg.max_monitors;
                if state.is_none() && self.monitors.len() >= max {
                    warn!(link = %self.cfg.name, device, max, "link.max_monitors: the monitor table is full; monitor refused");
                    return self.answer(token, Err(LinkError::Limit("link.max_monitors", max)));
                }
                // (a queued re-monitor of the device is skipped: it is not waiting any more)
                if let Err(e) = self.start_monitor(device, vec![token], now) {
                    if state.is_some() {
                        // remembered: try again with the next association
                        self.monitors.suspend(device);
                    }
                    self.answer(token, Err(e));
                }
            }
        }
    }

    /// Stop monitoring a device (MonitorStop) and forget it. A device not monitored answers
    /// `Ok(Ok(None))` at once; so does one whose monitor is not active on the switch now.
    pub fn unmonitor(&mut self, token: Token, device: &str, now: Instant) {
        if self.state == State::Closed {
            return self.answer(token, Err(self.closed_with.clone()));
        }
        match self.monitors.state(device).cloned() {
            Some(MonitorState::Active(xref)) if self.is_associated() => {
                if self.callers >= self.cfg.max_outstanding {
                    return self.answer(token, Err(LinkError::TooManyRequests));
                }
                self.monitors.remove(device);
                info!(link = %self.cfg.name, device, "monitor stop");
                self.forget_xref(xref.clone());
                let arg: Argument = MonitorStopArgument::new(xref).into();
                let deadline = Some(now + self.cfg.request_timeout);
                let purpose = Purpose::MonitorStop { token: Some(token) };
                if let Err((e, _)) = self.invoke(&arg, purpose, deadline) {
                    self.answer(token, Err(e));
                }
            }
            Some(_) => {
                // not active on the switch: forgotten; a start in flight is stopped when it
                // succeeds (see on_monitor_started)
                // (a queued re-monitor of it is skipped: the device is not in the table)
                self.monitors.remove(device);
                self.answer(token, Ok(Ok(None)));
            }
            None => self.answer(token, Ok(Ok(None))),
        }
    }

    /// Orderly release (X.227 A-RELEASE: RLRQ, then RLRE within `request_timeout`); outside
    /// an association the transport is just closed. No reconnect afterwards.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        match self.state {
            State::Associated => {
                info!(link = %self.cfg.name, "releasing the association (RLRQ)");
                self.send(D::release);
                self.next_keepalive = None;
                self.state = State::ExpectRlre {
                    deadline: now + self.cfg.request_timeout,
                };
            }
            State::ExpectRlre { .. } | State::Closed => {}
            State::ExpectHandshake { .. } | State::ExpectAare { .. } => {
                // X.227: an association being established is ended by A-ABORT
                self.send(D::abort);
                self.finish("shut down before the association was up");
            }
            State::ExpectRetry { .. } | State::ExpectConnect { .. } => {
                self.finish("shut down");
            }
        }
    }

    // ---- internals -----------------------------------------------------------------------

    fn event(&mut self, e: LinkEvent) {
        self.out.push_back(Out::Event(e));
    }

    fn answer(&mut self, token: Token, answer: Answer) {
        self.out.push_back(Out::Answer { token, answer });
    }

    /// Whether a new invoke may go out for a caller.
    fn can_invoke(&self) -> Result<(), LinkError> {
        match self.state {
            State::Associated if self.callers >= self.cfg.max_outstanding => {
                Err(LinkError::TooManyRequests)
            }
            State::Associated => Ok(()),
            State::Closed => Err(self.closed_with.clone()),
            State::ExpectRlre { .. } => Err(LinkError::Closed),
            _ => Err(self.refusal.clone().unwrap_or(LinkError::Down)),
        }
    }

    fn start_connect(&mut self, now: Instant) {
        debug!(link = %self.cfg.name, address = %self.address(), side = self.side, "connecting");
        self.state = State::ExpectConnect {
            deadline: now + self.cfg.connect_timeout,
        };
        self.out.push_back(Out::Connect);
    }

    fn send_aarq(&mut self, deadline: Instant) {
        debug!(link = %self.cfg.name, context = %self.cfg.context, "association request");
        if let Some(d) = &self.dialect {
            self.out.push_back(Out::Transmit(d.associate()));
        }
        self.state = State::ExpectAare { deadline };
    }

    /// Send the frame the dialect builds, if it has one.
    fn send(&mut self, build: impl FnOnce(&D) -> Option<D::Frame>) {
        if let Some(f) = self.dialect.as_ref().and_then(build) {
            self.out.push_back(Out::Transmit(f));
        }
    }

    fn reject(&mut self, invoke_id: Option<i64>, problem: Problem) {
        if let Some(f) = self
            .dialect
            .as_ref()
            .and_then(|d| d.reject(invoke_id, problem))
        {
            self.counters.rejects_sent += 1;
            debug!(link = %self.cfg.name, ?invoke_id, %problem, "reject sent");
            self.out.push_back(Out::Transmit(f));
        }
    }

    /// The next free invoke id: [`Dialect::FIRST_INVOKE_ID`]..=[`Dialect::MAX_INVOKE_ID`],
    /// wrapping, skipping ids in flight.
    fn allocate_invoke_id(&mut self) -> i64 {
        loop {
            let id = self.next_invoke;
            self.next_invoke = if id >= D::MAX_INVOKE_ID {
                D::FIRST_INVOKE_ID
            } else {
                id + 1
            };
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Send an invoke; the purpose is given back when nothing was sent.
    fn invoke(
        &mut self,
        arg: &Argument,
        purpose: Purpose,
        deadline: Option<Instant>,
    ) -> Result<i64, (LinkError, Purpose)> {
        let xref = match arg {
            Argument::MonitorStop(a) => Some(a.cross_ref_identifier.clone()),
            _ => None,
        };
        let id = self.invoke_with(arg.operation(), purpose, deadline, |d, id| {
            d.invoke(id, arg)
        })?;
        if let Some(p) = self.pending.get_mut(&id) {
            p.xref = xref;
        }
        Ok(id)
    }

    /// Send the request `build` makes for a fresh invoke id, answered as `op`; the purpose
    /// is given back when nothing was sent.
    fn invoke_with(
        &mut self,
        op: Operation,
        purpose: Purpose,
        deadline: Option<Instant>,
        build: impl FnOnce(&D, i64) -> Result<D::Frame, String>,
    ) -> Result<i64, (LinkError, Purpose)> {
        let id = self.allocate_invoke_id();
        let Some(dialect) = &self.dialect else {
            return Err((self.closed_with.clone(), purpose));
        };
        let frame = match build(dialect, id) {
            Ok(f) => f,
            Err(e) => {
                warn!(link = %self.cfg.name, %op, error = %e, "cannot encode the request");
                return Err((LinkError::Encode(e), purpose));
            }
        };
        self.callers += callers_of(&purpose);
        self.out.push_back(Out::Transmit(frame));
        self.pending.insert(
            id,
            Pending {
                op,
                purpose,
                deadline,
                xref: None,
            },
        );
        Ok(id)
    }

    fn start_monitor(
        &mut self,
        device: &str,
        waiters: Vec<Token>,
        now: Instant,
    ) -> Result<i64, LinkError> {
        let arg: Argument =
            MonitorStartArgument::new(CstaObject::Device(DeviceId::dialing(device))).into();
        let purpose = Purpose::MonitorStart {
            device: device.to_string(),
            waiters,
        };
        let deadline = Some(now + self.cfg.request_timeout);
        match self.invoke(&arg, purpose, deadline) {
            Ok(id) => {
                self.monitors.starting(device, id);
                debug!(link = %self.cfg.name, device, invoke = id, "monitor start");
                Ok(id)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Answer the callers of a finished invoke.
    fn complete(&mut self, id: i64, outcome: Result<Outcome, LinkError>, now: Instant) {
        let Some(p) = self.pending.remove(&id) else {
            debug!(link = %self.cfg.name, invoke = id, "answer to an invoke not in flight (late after its deadline?): ignored");
            return;
        };
        self.callers -= callers_of(&p.purpose);
        let forgotten = match (&outcome, &p.xref) {
            (Ok(Err(CstaError::Failure(f))), Some(x)) if is_invalid_xref(f) => Some(x.clone()),
            _ => None,
        };
        let outcome = match (forgotten, &p.purpose) {
            (Some(x), Purpose::MonitorStop { token }) => {
                // stopping a monitor the switch no longer has: it is stopped either way
                debug!(link = %self.cfg.name, xref = %hex(&x.0), "monitorStop: the switch had already forgotten the monitor");
                if token.is_some() {
                    Ok(Ok(None))
                } else {
                    outcome
                }
            }
            (Some(x), _) => {
                if let Some(device) = self.monitors.device_of(&x).map(str::to_string) {
                    self.monitor_again(
                        &device,
                        "the switch no longer knows its monitor (operation/invalidMonitorCrossRefID)",
                        None,
                        now,
                    );
                }
                outcome
            }
            (None, _) => outcome,
        };
        match p.purpose {
            Purpose::Request { token } => match outcome {
                Ok(Ok(Some(OperationResult::SnapshotDevice(SnapshotDeviceResult {
                    data: SnapshotData::ServiceCrossRefId(xref),
                    ..
                })))) => {
                    // the calls follow (Snapshot Device Data): wait for them, same deadline rule
                    debug!(link = %self.cfg.name, invoke = id, xref = %hex(&xref), "snapshot answered by reference: collecting its segments");
                    let purpose = Purpose::SnapshotData {
                        token,
                        xref,
                        rows: Vec::new(),
                    };
                    self.callers += callers_of(&purpose);
                    self.pending.insert(
                        id,
                        Pending {
                            op: p.op,
                            purpose,
                            deadline: Some(now + self.cfg.request_timeout),
                            xref: None,
                        },
                    );
                }
                outcome => {
                    self.answer(token, outcome);
                    self.request_done();
                }
            },
            Purpose::SnapshotData { token, .. } => {
                // its deadline passed, or the link went: the snapshot is incomplete
                self.answer(token, outcome.and(Err(LinkError::Timeout)));
                self.request_done();
            }
            Purpose::KeepAlive => match outcome {
                Ok(Ok(_)) => debug!(link = %self.cfg.name, "keep-alive answered"),
                Ok(Err(e)) => {
                    debug!(link = %self.cfg.name, error = %e, "keep-alive refused (the switch is alive)")
                }
                Err(_) => {}
            },
            Purpose::MonitorStart { device, waiters } => {
                self.on_monitor_started(id, &device, waiters, outcome, now)
            }
            Purpose::MonitorStop { token } => {
                if let Some(t) = token {
                    self.answer(t, outcome.map(|o| o.map(|_| None)));
                }
            }
        }
        self.pump_remonitor(now);
    }

    /// A caller's request is answered: one more resync may go (see `pump_resync`).
    fn request_done(&mut self) {
        if !self.resync_queue.is_empty() {
            self.resync_credit += 1;
            self.pump_resync();
        }
    }

    fn on_monitor_started(
        &mut self,
        id: i64,
        device: &str,
        waiters: Vec<Token>,
        outcome: Result<Outcome, LinkError>,
        now: Instant,
    ) {
        let current =
            self.monitors.state(device) == Some(&MonitorState::ExpectStartResult { invoke: id });
        let remembered = self.monitors.remembered(device);
        let outcome = match outcome {
            Ok(Ok(Some(OperationResult::MonitorStart(m)))) => Ok(Ok(m.cross_ref_identifier)),
            Ok(Ok(_)) => Ok(Err(CstaError::Reject(problem::MISTYPED_RESULT))),
            Ok(Err(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        };
        let answer: Answer = match &outcome {
            Ok(Ok(_)) => Ok(Ok(None)),
            Ok(Err(e)) => Ok(Err(e.clone())),
            Err(e) => Err(e.clone()),
        };
        match outcome {
            Ok(Ok(xref)) if current => {
                info!(link = %self.cfg.name, device, xref = %hex(&xref.0), "monitored");
                self.monitors.activate(device, xref);
                self.event(LinkEvent::Monitored {
                    device: device.to_string(),
                    again: waiters.is_empty(),
                });
            }
            Ok(Ok(xref)) => {
                // unmonitored (or the link changed) while the start was in flight
                if self.is_associated() {
                    debug!(link = %self.cfg.name, device, "monitor started after it was given up: stopping it");
                    self.forget_xref(xref.clone());
                    let arg: Argument = MonitorStopArgument::new(xref).into();
                    let deadline = Some(now + self.cfg.request_timeout);
                    let _ = self.invoke(&arg, Purpose::MonitorStop { token: None }, deadline);
                }
            }
            Ok(Err(e))
                if current
                    && remembered
                    && waiters.is_empty()
                    && super::driver::switch_busy(&e)
                    && self.is_associated() =>
            {
                // the switch is busy: try again after the others (the pace of its answers)
                debug!(link = %self.cfg.name, device, error = %e, "monitoring again: the switch is busy; will retry");
                self.monitors.suspend(device);
                self.remonitor.push_back(device.to_string());
            }
            Ok(Err(e)) if current => {
                self.monitors.remove(device);
                if remembered {
                    warn!(link = %self.cfg.name, device, error = %e, "monitoring again refused: device forgotten");
                    self.event(LinkEvent::MonitorLost {
                        device: device.to_string(),
                        reason: format!("monitorStart refused: {e}"),
                        forgotten: true,
                    });
                } else {
                    info!(link = %self.cfg.name, device, error = %e, "monitor start refused");
                }
            }
            Ok(Err(_)) => {}
            Err(e) if current => {
                if remembered && self.is_associated() {
                    // timed out: try again after the others
                    warn!(link = %self.cfg.name, device, error = %e, "monitoring again failed: will retry");
                    self.monitors.suspend(device);
                    self.remonitor.push_back(device.to_string());
                } else if remembered {
                    self.monitors.suspend(device);
                } else {
                    self.monitors.remove(device);
                }
            }
            Err(_) => {}
        }
        for t in waiters {
            self.answer(t, answer.clone());
        }
    }

    /// Send queued re-monitors while there is room.
    fn pump_remonitor(&mut self, now: Instant) {
        if !self.is_associated() || self.switch_unavailable.is_some() {
            return;
        }
        let mut in_flight = self
            .pending
            .values()
            .filter(|p| matches!(&p.purpose, Purpose::MonitorStart { waiters, .. } if waiters.is_empty()))
            .count();
        while in_flight < remonitor_batch(&self.cfg) {
            let Some(device) = self.remonitor.pop_front() else {
                break;
            };
            if self.monitors.state(&device) != Some(&MonitorState::ExpectRemonitor) {
                continue;
            }
            in_flight += 1;
            if let Err(e) = self.start_monitor(&device, Vec::new(), now) {
                warn!(link = %self.cfg.name, device, error = %e, "cannot monitor again: device forgotten");
                self.monitors.remove(&device);
                self.event(LinkEvent::MonitorLost {
                    device,
                    reason: format!("cannot send monitorStart: {e}"),
                    forgotten: true,
                });
            }
        }
    }

    fn queue_remonitor_all(&mut self) {
        let waiting: Vec<String> = self.monitors.waiting().map(str::to_string).collect();
        self.remonitor = waiting.into();
    }

    fn expire_requests(&mut self, now: Instant) {
        let due: Vec<i64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.pending.get(&id) {
                warn!(link = %self.cfg.name, invoke = id, op = %p.op, timeout = ?self.cfg.request_timeout, "no answer in time");
            }
            self.complete(id, Err(LinkError::Timeout), now);
        }
    }

    fn keepalive(&mut self, now: Instant) {
        let Some(at) = self.next_keepalive else {
            return;
        };
        if now < at {
            return;
        }
        let misses = self.cfg.keepalive_misses.max(1);
        if self.keepalives_unanswered >= misses {
            let reason = format!(
                "keep-alive: {} systemStatus unanswered ({:?} apart); the link is dead",
                self.keepalives_unanswered, self.cfg.keepalive_idle
            );
            warn!(link = %self.cfg.name, "{reason}");
            self.abort(now, reason);
            return;
        }
        // answered like systemStatus: any result (or error) proves the switch alive
        let keepalive = self.invoke_with(
            Operation::SystemStatus,
            Purpose::KeepAlive,
            None,
            |d, id| d.keepalive(id),
        );
        match keepalive {
            Ok(id) => {
                debug!(link = %self.cfg.name, invoke = id, "keep-alive (systemStatus normal)")
            }
            Err((e, _)) => warn!(link = %self.cfg.name, error = %e, "cannot send the keep-alive"),
        }
        self.keepalives_unanswered += 1;
        self.next_keepalive = Some(now + self.cfg.keepalive_idle);
    }

    /// Send ABRT and lose the link (protocol error, dead link).
    fn abort(&mut self, now: Instant, reason: String) {
        self.send(D::abort);
        self.lose_link(now, LinkError::Aborted, reason);
    }

    /// The association (or the attempt) is over: answer every caller with `err`, suspend the
    /// monitors, close the transport and wait for the next attempt.
    fn lose_link(&mut self, now: Instant, err: LinkError, reason: String) {
        if self.shutting_down {
            self.finish(&reason);
            return;
        }
        let was_up = self.is_associated();
        let failed = self.side();
        if was_up
            && self
                .up_since
                .is_some_and(|t| self.cfg.backoff().resets(now.saturating_duration_since(t)))
        {
            self.attempt = 0;
        }
        self.up_since = None;
        let delay = self
            .cfg
            .backoff()
            .delay(self.attempt, &mut self.rng)
            .min(MAX_DELAY);
        self.attempt = self.attempt.saturating_add(1);
        if !self.cfg.addresses.is_empty() {
            self.side = (self.side + 1) % self.cfg.addresses.len();
        }
        let at = now + delay;
        // first leave the association, so that answering the callers sends nothing new
        self.state = State::ExpectRetry { at };
        self.fail_pending(&err, now);
        self.monitors.suspend_all();
        self.remonitor.clear();
        self.switch_unavailable = None;
        self.overloaded = false;
        self.unknown_xrefs.clear();
        self.resync_queue.clear(); // every device is monitored (and resynchronised) again
        self.next_keepalive = None;
        self.keepalives_unanswered = 0;
        self.refusal = matches!(err, LinkError::Rejected(_)).then_some(err);
        self.out.push_back(Out::Close);
        let next = self.address().to_string();
        if was_up {
            warn!(link = %self.cfg.name, side = %failed, %reason, retry_in = ?delay, next = %next, "link down");
        } else {
            warn!(link = %self.cfg.name, side = %failed, %reason, retry_in = ?delay, next = %next, "association attempt failed");
        }
        let told = self.down_reported.get(failed.index).cloned().flatten();
        if was_up || told.as_deref() != Some(reason.as_str()) {
            if let Some(t) = self.down_reported.get_mut(failed.index) {
                *t = Some(reason.clone());
            }
            self.event(LinkEvent::Down {
                reason,
                side: failed,
            });
        }
    }

    fn fail_pending(&mut self, err: &LinkError, now: Instant) {
        let mut ids: Vec<i64> = self.pending.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.complete(id, Err(err.clone()), now);
        }
    }

    /// Closed for good (shutdown).
    fn finish(&mut self, reason: &str) {
        let was_up = matches!(self.state, State::Associated | State::ExpectRlre { .. });
        // callers still waiting get Closed; nothing is sent any more
        self.state = State::Closed;
        let ids: Vec<i64> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                self.callers -= callers_of(&p.purpose);
                for t in tokens_of(p.purpose) {
                    self.answer(t, Err(LinkError::Closed));
                }
            }
        }
        self.monitors.suspend_all();
        self.remonitor.clear();
        self.resync_queue.clear();
        self.next_keepalive = None;
        self.out.push_back(Out::Close);
        info!(link = %self.cfg.name, reason, "link closed");
        if was_up || self.down_reported.iter().all(Option::is_none) {
            let side = self.side();
            self.event(LinkEvent::Down {
                reason: reason.to_string(),
                side,
            });
        }
    }

    fn on_association(&mut self, name: &'static str, what: Association, now: Instant) {
        match (what, self.state.clone()) {
            (Association::Accepted { detail }, State::ExpectAare { .. }) => {
                self.associated(&detail, now)
            }
            (Association::Rejected { result, diagnostic }, State::ExpectAare { .. }) => {
                self.rejected(&result, diagnostic, now)
            }
            (Association::Abort { reason }, _) => {
                if matches!(self.state, State::ExpectRlre { .. }) {
                    self.finish(&reason);
                } else {
                    self.lose_link(now, LinkError::Aborted, reason);
                }
            }
            (Association::ReleaseRequest, State::Associated) => {
                info!(link = %self.cfg.name, "the switch releases the association (RLRQ): answering RLRE");
                self.send(D::release_response);
                self.lose_link(
                    now,
                    LinkError::Closed,
                    "the switch released the association (RLRQ)".into(),
                );
            }
            (Association::ReleaseRequest, State::ExpectRlre { .. }) => {
                // release collision (X.227): answer and close
                self.send(D::release_response);
                self.finish("released (release collision)");
            }
            (Association::ReleaseResponse, State::ExpectRlre { .. }) => {
                self.finish("released (RLRQ answered by RLRE)");
            }
            (_, st) => {
                let reason = format!("unexpected {name} from the switch while in {st:?}");
                warn!(link = %self.cfg.name, "{reason}: aborting");
                self.abort(now, reason);
            }
        }
    }

    fn associated(&mut self, versions: &str, now: Instant) {
        info!(link = %self.cfg.name, address = %self.address(), side = self.side, context = %self.cfg.context, versions, "link up (associated)");
        self.state = State::Associated;
        self.up_since = Some(now);
        self.refusal = None;
        self.down_reported.iter_mut().for_each(|d| *d = None);
        self.keepalives_unanswered = 0;
        self.next_keepalive =
            (!self.cfg.keepalive_idle.is_zero()).then(|| now + self.cfg.keepalive_idle);
        let side = self.side();
        self.event(LinkEvent::Up { side });
        self.queue_remonitor_all();
        self.pump_remonitor(now);
    }

    fn rejected(&mut self, result: &str, name: String, now: Instant) {
        warn!(link = %self.cfg.name, %result, diagnostic = %name, "the switch rejected the association (AARE)");
        self.lose_link(
            now,
            LinkError::Rejected(name.clone()),
            format!("association rejected ({result}): {name}"),
        );
    }

    /// Invokes, results, errors and rejects (X.880 ROSE operations, whatever the dialect).
    fn on_operation(&mut self, m: Message, now: Instant) {
        if !matches!(self.state, State::Associated | State::ExpectRlre { .. }) {
            self.abort(now, format!("{} before the association", m.kind()));
            return;
        }
        match m {
            Message::Invoke {
                invoke_id,
                opcode,
                argument,
            } => self.on_switch_invoke(invoke_id, opcode, argument, now),
            Message::EventReport(report) => self.on_event_report(report, now),
            Message::Result { invoke_id, result } => {
                let Some(id) = self.ours(invoke_id, "result") else {
                    return;
                };
                let outcome = self.result_outcome(id, result);
                self.complete(id, Ok(outcome), now);
            }
            Message::Error { invoke_id, error } => {
                let Some(id) = self.ours(invoke_id, "error") else {
                    return;
                };
                let outcome = self.error_outcome(id, error);
                self.complete(id, Ok(outcome), now);
            }
            Message::Reject { invoke_id, problem } => {
                let Some(id) = self.ours(invoke_id, "reject") else {
                    warn!(link = %self.cfg.name, %problem, "the switch rejected a PDU it could not attribute");
                    return;
                };
                warn!(link = %self.cfg.name, invoke = id, %problem, "the switch rejected our invoke");
                self.complete(id, Ok(Err(CstaError::Reject(problem))), now);
            }
            Message::Handshake { .. }
            | Message::Association { .. }
            | Message::Undecodable { .. } => {}
        }
    }

    /// The invoke id of an answer to one of ours (present and in flight).
    fn ours(&self, id: Option<i64>, what: &str) -> Option<i64> {
        let v = id?;
        if self.pending.contains_key(&v) {
            Some(v)
        } else {
            debug!(link = %self.cfg.name, invoke = v, what, "answer to an invoke not in flight (late after its deadline?): ignored");
            None
        }
    }

    /// A result read for its request: a result we cannot read, or of another operation, is
    /// rejected (X.880 returnResult mistypedResult).
    fn result_outcome(
        &mut self,
        id: i64,
        result: Result<Option<OperationResult>, TypeError>,
    ) -> Outcome {
        let op = self.pending.get(&id).map(|p| p.op);
        match result {
            Ok(res) if res.as_ref().is_none_or(|r| Some(r.operation()) == op) => Ok(res),
            Ok(res) => {
                warn!(link = %self.cfg.name, invoke = id, expected = ?op, got = ?res.map(|r| r.operation()), "result of another operation: rejected");
                self.reject(Some(id), problem::MISTYPED_RESULT);
                Err(CstaError::Reject(problem::MISTYPED_RESULT))
            }
            Err(e) => {
                self.counters.malformed_frames += 1;
                warn!(link = %self.cfg.name, invoke = id, error = %e, "result not understood: rejected");
                self.reject(Some(id), problem::MISTYPED_RESULT);
                Err(CstaError::Reject(problem::MISTYPED_RESULT))
            }
        }
    }

    /// An error answer read for its request: universalFailure with its parameter; anything
    /// else is rejected (X.880 returnError unrecognizedError / mistypedParameter).
    fn error_outcome(&mut self, id: i64, error: SwitchError) -> Outcome {
        match error {
            SwitchError::Failure(f) => {
                debug!(link = %self.cfg.name, invoke = id, error = %f, "returnError");
                Err(CstaError::Failure(f))
            }
            SwitchError::Unrecognized(code) => {
                warn!(link = %self.cfg.name, invoke = id, errcode = %code, "unknown error code: rejected");
                self.reject(Some(id), problem::UNRECOGNIZED_ERROR);
                Err(CstaError::Reject(problem::UNRECOGNIZED_ERROR))
            }
            SwitchError::Unreadable(parameter) => {
                self.counters.malformed_frames += 1;
                warn!(link = %self.cfg.name, invoke = id, %parameter, "universalFailure without a readable parameter: rejected");
                self.reject(Some(id), problem::MISTYPED_PARAMETER);
                Err(CstaError::Reject(problem::MISTYPED_PARAMETER))
            }
        }
    }

    /// cSTAEventReport (`ALWAYS RESPONDS FALSE`): routed through the monitor table.
    fn on_event_report(&mut self, report: Result<EventReport, TypeError>, now: Instant) {
        match report {
            Ok(report) => {
                let device = self.monitors.device_of(&report.xref).map(str::to_string);
                if device.is_none() {
                    self.on_unknown_xref(&report, now);
                }
                self.event(LinkEvent::Report {
                    device,
                    report: Box::new(report),
                });
            }
            Err(e) => {
                self.counters.malformed_frames += 1;
                warn!(link = %self.cfg.name, error = %e, "event report not understood: dropped (never answered)")
            }
        }
    }

    /// An invoke from the switch (its own invoke-id space), other than an event report.
    fn on_switch_invoke(
        &mut self,
        invoke_id: Option<i64>,
        opcode: Option<i64>,
        argument: Result<Argument, TypeError>,
        now: Instant,
    ) {
        match opcode {
            Some(opcode::SYSTEM_STATUS) => self.on_switch_status(invoke_id, argument, now),
            Some(opcode::SNAPSHOT_DEVICE_DATA) => self.on_snapshot_data(invoke_id, argument, now),
            _ => {
                warn!(link = %self.cfg.name, ?opcode, "the switch invoked an operation we do not serve: rejected");
                self.reject(invoke_id, problem::UNRECOGNIZED_OPERATION);
            }
        }
    }

    /// Snapshot Device Data (`ALWAYS RESPONDS FALSE`: never answered): one segment of the
    /// calls of a SnapshotDevice answered by reference. The request is answered after the
    /// last segment; each segment gives it `request_timeout` more.
    fn on_snapshot_data(
        &mut self,
        invoke_id: Option<i64>,
        argument: Result<Argument, TypeError>,
        now: Instant,
    ) {
        let arg = match argument {
            Ok(Argument::SnapshotDeviceData(a)) => a,
            Ok(_) | Err(_) => {
                warn!(link = %self.cfg.name, "Snapshot Device Data not understood: rejected");
                self.reject(invoke_id, problem::MISTYPED_ARGUMENT);
                return;
            }
        };
        let found = self.pending.iter().find_map(|(id, p)| match &p.purpose {
            Purpose::SnapshotData { xref, .. } if *xref == arg.service_cross_ref_id => Some(*id),
            _ => None,
        });
        let Some(id) = found else {
            warn!(link = %self.cfg.name, xref = %hex(&arg.service_cross_ref_id), "Snapshot Device Data for no snapshot in progress (late, or an unknown serviceCrossRefID): ignored");
            return;
        };
        let max = self.cfg.snapshot_max_calls;
        let timeout = self.cfg.request_timeout;
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let Purpose::SnapshotData { rows, .. } = &mut p.purpose else {
            return;
        };
        if rows.len() + arg.snapshot_data.len() > max {
            warn!(link = %self.cfg.name, invoke = id, limit = max, "snapshot_max_calls: the snapshot has more calls than the limit; it fails (the device stays as it was)");
            self.complete(id, Err(LinkError::TooLarge("snapshot_max_calls", max)), now);
            return;
        }
        rows.extend(arg.snapshot_data);
        p.deadline = Some(now + timeout);
        if !arg.last_segment {
            return;
        }
        if let Some(p) = self.pending.remove(&id) {
            self.callers -= callers_of(&p.purpose);
            if let Purpose::SnapshotData { token, rows, .. } = p.purpose {
                debug!(link = %self.cfg.name, invoke = id, calls = rows.len(), "snapshot by reference complete");
                let r = SnapshotDeviceResult::new(SnapshotData::Data(rows));
                self.answer(token, Ok(Ok(Some(OperationResult::SnapshotDevice(r)))));
                self.request_done();
            }
        }
    }

    /// The switch's systemStatus: answered at once (returnResult noData, WIRE.md §9).
    fn on_switch_status(
        &mut self,
        invoke_id: Option<i64>,
        argument: Result<Argument, TypeError>,
        now: Instant,
    ) {
        let Some(id) = invoke_id else {
            self.reject(None, problem::MISTYPED_PDU);
            return;
        };
        self.send(|d| d.result(id, Operation::SystemStatus, None).ok());
        let status = match argument {
            Ok(Argument::SystemStatus(a)) => Some(a.system_status),
            _ => None,
        };
        let name = match status {
            Some(s) => s
                .name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("systemStatus {}", s.to_i64())),
            None => "unreadable".to_string(),
        };
        debug!(link = %self.cfg.name, status = %name, "systemStatus from the switch: answered");
        match status {
            Some(st @ (SystemStatus::Initializing | SystemStatus::Disabled)) => {
                let what = if st == SystemStatus::Initializing {
                    "initializing"
                } else {
                    "disabled"
                };
                if self.switch_unavailable.is_none() {
                    warn!(link = %self.cfg.name, status = what, "the switch is unavailable (systemStatus {what}): its monitors are gone");
                    self.switch_unavailable = Some(what);
                    let lost: Vec<String> = self.monitors.active().map(str::to_string).collect();
                    for d in lost {
                        self.monitors.suspend(&d);
                        self.event(LinkEvent::MonitorLost {
                            device: d,
                            reason: format!("the switch is unavailable (systemStatus {what}); monitored again when it is enabled or normal"),
                            forgotten: false,
                        });
                    }
                    self.queue_remonitor_all();
                }
            }
            Some(
                st
                @ (SystemStatus::Enabled | SystemStatus::Normal | SystemStatus::OverloadRelieved),
            ) => {
                if self.overloaded {
                    self.overloaded = false;
                    info!(link = %self.cfg.name, status = %name, "the switch's overload is over: resynchronising every monitored device");
                    self.resync_all(&format!("the switch's overload is over (systemStatus {name}); events may have been lost"));
                }
                if st != SystemStatus::OverloadRelieved {
                    if let Some(was) = self.switch_unavailable.take() {
                        info!(link = %self.cfg.name, was, "the switch is back: monitoring again");
                        self.queue_remonitor_all();
                        self.pump_remonitor(now);
                    }
                }
            }
            Some(SystemStatus::MessagesLost) => {
                warn!(link = %self.cfg.name, "the switch lost messages (systemStatus messagesLost): resynchronising every monitored device");
                self.resync_all("the switch lost messages (systemStatus messagesLost)");
            }
            Some(SystemStatus::OverloadImminent | SystemStatus::OverloadReached) => {
                self.overloads += 1;
                self.overloaded = true;
                warn!(link = %self.cfg.name, status = %name, overloads = self.overloads, "the switch is (about to be) overloaded: events may be lost; every monitored device is resynchronised when it is over");
            }
            Some(SystemStatus::PartiallyDisabled) => {
                warn!(link = %self.cfg.name, "the switch is partially disabled (systemStatus partiallyDisabled)");
            }
            _ => {}
        }
        self.event(LinkEvent::SystemStatus { status: name });
    }

    /// Every active monitor is resynchronised by the owner ([`LinkEvent::Resync`]).
    /// Paced: [`RESYNC_BATCH`] at once, then one more for every caller's request answered
    /// (the owner's snapshots are such requests), so that a switch with many monitored
    /// devices does not get them all at once (nor the link more than [`MAX_IN_FLIGHT`]).
    fn resync_all(&mut self, reason: &str) {
        // (one pass, not a search of the queue per device: thousands of monitors)
        let queued: std::collections::HashSet<String> =
            self.resync_queue.iter().map(|(d, _)| d.clone()).collect();
        for device in self.monitors.active() {
            if !queued.contains(device) {
                self.resync_queue
                    .push_back((device.to_string(), reason.to_string()));
            }
        }
        self.resync_credit = resync_batch(&self.cfg);
        self.pump_resync();
    }

    /// Tell queued resyncs while there is credit; devices no longer active are skipped
    /// (monitored again, they are resynchronised after their `Monitored`).
    fn pump_resync(&mut self) {
        while self.resync_credit > 0 {
            let Some((device, reason)) = self.resync_queue.pop_front() else {
                break;
            };
            if self.monitors.xref_of(&device).is_none() {
                continue;
            }
            self.resync_credit -= 1;
            self.event(LinkEvent::Resync { device, reason });
        }
    }

    /// The switch evidently lost the monitor of `device`: monitor it again (MonitorStart;
    /// its [`LinkEvent::Monitored`] with `again` makes the owner resynchronise). `stop`: a
    /// cross reference the switch may still have for it, stopped first (answer ignored) so
    /// that no second monitor is left behind.
    fn monitor_again(
        &mut self,
        device: &str,
        reason: &str,
        stop: Option<MonitorCrossRefId>,
        now: Instant,
    ) {
        if !self.monitors.remembered(device) {
            return;
        }
        warn!(link = %self.cfg.name, device, reason, "monitor lost on the switch: monitoring again");
        self.monitors.suspend(device);
        if let Some(x) = stop.filter(|_| self.is_associated()) {
            self.forget_xref(x.clone());
            let arg: Argument = MonitorStopArgument::new(x).into();
            let deadline = Some(now + self.cfg.request_timeout);
            let _ = self.invoke(&arg, Purpose::MonitorStop { token: None }, deadline);
        }
        self.event(LinkEvent::MonitorLost {
            device: device.to_string(),
            reason: format!("{reason}; monitored again"),
            forgotten: false,
        });
        if !self.remonitor.iter().any(|d| d == device) {
            self.remonitor.push_back(device.to_string());
        }
    }

    /// An event report under a cross reference we do not know, naming devices we believe
    /// monitored: their monitors may be gone from the switch (it reports them under a
    /// monitor we do not account for). Once per cross reference (bounded): stop that
    /// monitor, and monitor each of those devices again. Cross references we dropped
    /// ourselves (events still on their way) and events naming no monitored device are only
    /// reported; nothing is done while the switch is unavailable or the link is not up.
    fn on_unknown_xref(&mut self, report: &EventReport, now: Instant) {
        let xref = &report.xref;
        if !self.is_associated()
            || self.switch_unavailable.is_some()
            || self.unknown_xrefs.contains(xref)
        {
            debug!(link = %self.cfg.name, xref = %hex(&xref.0), "event for an unknown cross reference");
            return;
        }
        let mut named = Vec::new();
        devices_named(&report.event.to_value(), &mut named);
        let believed: Vec<(String, MonitorCrossRefId)> = named
            .into_iter()
            .filter_map(|d| self.monitors.xref_of(&d).cloned().map(|x| (d, x)))
            .collect();
        if believed.is_empty() {
            debug!(link = %self.cfg.name, xref = %hex(&xref.0), "event for an unknown cross reference");
            return;
        }
        self.forget_xref(xref.clone());
        warn!(link = %self.cfg.name, xref = %hex(&xref.0), event = report.event.name(), devices = ?believed.iter().map(|(d, _)| d).collect::<Vec<_>>(), "events of monitored devices under a cross reference we never got: stopping that monitor, monitoring them again");
        let arg: Argument = MonitorStopArgument::new(xref.clone()).into();
        let deadline = Some(now + self.cfg.request_timeout);
        let _ = self.invoke(&arg, Purpose::MonitorStop { token: None }, deadline);
        for (d, old) in believed {
            self.monitor_again(
                &d,
                "its events arrive under a cross reference we never got",
                Some(old),
                now,
            );
        }
        self.pump_remonitor(now);
    }

    /// A cross reference that is not (or no longer) ours: events still arriving under it are
    /// only reported. Bounded by [`MAX_UNKNOWN_XREFS`] (the oldest is forgotten).
    fn forget_xref(&mut self, xref: MonitorCrossRefId) {
        if self.unknown_xrefs.contains(&xref) {
            return;
        }
        if self.unknown_xrefs.len() >= MAX_UNKNOWN_XREFS {
            self.unknown_xrefs.pop_front();
        }
        self.unknown_xrefs.push_back(xref);
    }

    /// A frame the dialect could not read: counted, logged with its octets, and answered
    /// the X.880 way (Remote-Operations-Generic-ROS-PDUs names the problem of each broken
    /// constraint):
    ///
    /// | frame | answer |
    /// |---|---|
    /// | before the association | abort (ABRT), reconnect |
    /// | not a frame (framing lost) | abort, reconnect: the reason says so |
    /// | ACSE APDU we cannot read | abort |
    /// | a message type the dialect does not have | reject general unrecognizedPDU, invoke id absent |
    /// | invoke, result or error not valid BER | reject general badlyStructuredPDU |
    /// | ... valid BER, the envelope wrong | reject general mistypedPDU |
    /// | invoke, its argument wrong | reject invoke mistypedArgument |
    /// | result / error of ours in flight, its result / parameter wrong | reject returnResult mistypedResult / returnError mistypedParameter |
    /// | result / error of an invoke not in flight | reject returnResult / returnError unrecognizedInvocation |
    /// | (readable, not here: a late answer after its deadline is dropped, logged; X.880 would reject it unrecognizedInvocation too) | |
    /// | a cSTAEventReport, however broken | nothing (`ALWAYS RESPONDS FALSE`: never answered) |
    /// | a reject | nothing (a reject is never rejected: no reject ping-pong) |
    ///
    /// Rejects carry the invoke id when it could be read (absent otherwise); a request of
    /// ours whose answer is rejected is answered with that reject. The link stays up.
    fn on_undecodable(&mut self, error: &str, dump: &str, guess: Garbled, now: Instant) {
        self.counters.malformed_frames += 1;
        warn!(link = %self.cfg.name, error, hex = dump, ?guess, "undecodable PDU from the switch");
        if !matches!(self.state, State::Associated | State::ExpectRlre { .. }) {
            self.abort(now, format!("undecodable PDU from the switch: {error}"));
            return;
        }
        let general = |fault: Fault| match fault {
            Fault::Encoding => Some(problem::BADLY_STRUCTURED_PDU),
            Fault::Envelope => Some(problem::MISTYPED_PDU),
            Fault::Content => None,
        };
        match guess {
            Garbled::Invoke {
                event_report: true, ..
            } => {} // never answered
            Garbled::Invoke {
                invoke_id, fault, ..
            } => {
                let p = general(fault).unwrap_or(problem::MISTYPED_ARGUMENT);
                self.reject(invoke_id, p);
            }
            Garbled::Result { invoke_id, fault } | Garbled::Error { invoke_id, fault } => {
                let result = matches!(guess, Garbled::Result { .. });
                let ours = invoke_id.filter(|i| self.pending.contains_key(i));
                let p = match (general(fault), ours, result) {
                    (Some(p), _, _) => p,
                    (None, Some(_), true) => problem::MISTYPED_RESULT,
                    (None, Some(_), false) => problem::MISTYPED_PARAMETER,
                    (None, None, true) => problem::RESULT_UNRECOGNIZED_INVOCATION,
                    (None, None, false) => problem::ERROR_UNRECOGNIZED_INVOCATION,
                };
                self.reject(invoke_id, p);
                if let Some(i) = ours {
                    self.complete(i, Ok(Err(CstaError::Reject(p))), now);
                }
            }
            Garbled::Ignored => {}
            Garbled::Association => {
                self.abort(
                    now,
                    format!("undecodable ACSE APDU from the switch: {error}"),
                );
            }
            Garbled::Unknown => self.reject(None, problem::UNRECOGNIZED_PDU),
            Garbled::NotAFrame => {
                self.reset_framing(now, &format!("a frame that is no message: {error}"));
            }
        }
    }
}

fn callers_of(p: &Purpose) -> usize {
    match p {
        Purpose::Request { .. }
        | Purpose::MonitorStop { token: Some(_) }
        | Purpose::SnapshotData { .. } => 1,
        Purpose::MonitorStart { waiters, .. } => waiters.len(),
        Purpose::KeepAlive | Purpose::MonitorStop { token: None } => 0,
    }
}

fn tokens_of(p: Purpose) -> Vec<Token> {
    match p {
        Purpose::Request { token }
        | Purpose::MonitorStop { token: Some(token) }
        | Purpose::SnapshotData { token, .. } => vec![token],
        Purpose::MonitorStart { waiters, .. } => waiters,
        Purpose::KeepAlive | Purpose::MonitorStop { token: None } => Vec::new(),
    }
}

/// Whether a universalFailure says the switch does not know the monitor.
fn is_invalid_xref(f: &UniversalFailure) -> bool {
    (f.category, f.value) == INVALID_MONITOR_XREF
}

/// The device numbers an event names (every DeviceID in a string form), deduplicated.
fn devices_named(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Choice("dialingNumber" | "implicitPublic" | "implicitPrivate", inner) => {
            if let Value::Str(b) = inner.as_ref() {
                let n = String::from_utf8_lossy(b).into_owned();
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        Value::Choice(_, inner) => devices_named(inner, out),
        Value::Seq(members) => {
            for m in members {
                devices_named(&m.value, out);
            }
        }
        Value::List(items) => {
            for i in items {
                devices_named(i, out);
            }
        }
        _ => {}
    }
}

fn hex(b: &[u8]) -> String {
    ctigate_csta_model::value::hex(b)
}

#[cfg(test)]
mod tests;
