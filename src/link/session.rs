//! The sans-IO link session: frames and `now` in; frames to send, answers, events and the
//! next timer deadline out. No socket, no runtime: the driver (or a test) moves bytes and
//! time.
//!
//! What it does, and the standard behind it:
//! - association as the client (X.227 ACSE): AARQ with the configured
//!   application-context-name, CSTAVersion user information (ECMA-285
//!   CSTA-application-context-information-csta3) and optional calling-authentication-value;
//!   an AARE rejection or ABRT ends the attempt with the diagnostic named;
//! - our invokes (X.880 ROSE): invoke ids 1..=32767, wrapping and skipping ids in flight;
//!   a deadline for every request; returnResult / returnError / reject correlated to the
//!   request by invoke id. The switch's invokes have their own id space (WIRE.md §4) and are
//!   never looked up among ours;
//! - the switch's invokes: cSTAEventReport (op 21, `ALWAYS RESPONDS FALSE`: never answered)
//!   routed through the monitor table; systemStatus (op 211) answered at once with
//!   returnResult noData (WIRE.md §9); anything else rejected (invoke unrecognizedOperation);
//! - our keep-alive: systemStatus(normal) after `keepalive_idle` of silence from the switch,
//!   the link declared dead (ABRT, close) when `keepalive_misses` are unanswered;
//! - the monitor table (device <-> crossRefIdentifier), re-established after every
//!   reconnect and after a switch restart (systemStatus initializing, then normal);
//! - orderly release (X.227 RLRQ / RLRE) on shutdown;
//! - reconnect with exponential backoff between `reconnect_min` and `reconnect_max`.
//!
//! States are named for what they wait for: [`State`].

use super::monitors::{MonitorState, MonitorTable};
use super::{CstaError, LinkConfig, LinkError, LinkEvent};
use bytes::Bytes;
use ctigate_csta::acse::{self, AarqParams, Acse, AcseKind};
use ctigate_csta::apdu::Apdu;
use ctigate_csta::framing::{Frame, HANDSHAKE_APP, HANDSHAKE_SWITCH, MAX_U16_FRAME};
use ctigate_csta::rose::{
    Code, Invoke, InvokeId, Problem, Reject, ReturnError, ReturnResult, Rose,
};
use ctigate_csta::rose_ext::{self, FromInvoke, FromReturnResult, ReportFromInvoke, ToInvoke};
use ctigate_csta::{DecodeError, Oid};
use ctigate_csta_model::events::EventReport;
use ctigate_csta_model::ops::{
    Argument, MonitorStartArgument, MonitorStopArgument, Operation, OperationResult, SystemStatus,
    SystemStatusArg,
};
use ctigate_csta_model::types::{CstaObject, DeviceId, UniversalFailure};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Requests (ours, with a caller waiting) outstanding at once; more get
/// [`LinkError::TooManyRequests`].
pub const MAX_IN_FLIGHT: usize = 256;
/// Devices in the monitor table.
pub const MAX_MONITORS: usize = 10_000;
/// Callers waiting on one MonitorStart (further `monitor` calls of the same device join it).
const MAX_WAITERS: usize = 64;
/// Highest invoke id; the next one is 1 again (public client code wraps here, WIRE.md §4).
pub const MAX_INVOKE_ID: i64 = 32767;
/// Re-monitors in flight at once after a reconnect (the rest queue).
const REMONITOR_BATCH: usize = MAX_IN_FLIGHT / 4;
/// Shortest reconnect delay, whatever the configuration says.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// X.880 problem values we send.
mod problem {
    pub const UNRECOGNIZED_PDU: i64 = 0;
    pub const MISTYPED_PDU: i64 = 1;
    pub const UNRECOGNIZED_OPERATION: i64 = 1;
    pub const MISTYPED_ARGUMENT: i64 = 2;
    pub const MISTYPED_RESULT: i64 = 2;
    pub const UNRECOGNIZED_ERROR: i64 = 2;
    pub const MISTYPED_PARAMETER: i64 = 4;
}

/// Identifies a caller's request; chosen by the driver, echoed in [`Out::Answer`].
pub type Token = u64;

/// The answer to a request: the link failed, the switch refused, or the result.
pub type Answer = Result<Result<Option<OperationResult>, CstaError>, LinkError>;

/// What the driver must do. Transient (drained after every call), so it is as large as
/// its largest payload (an event report or a result).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Open the transport (TCP connect to `address`), then call [`Session::connected`] or
    /// [`Session::transport_closed`]. The session bounds the attempt by `connect_timeout`
    /// (then [`Out::Close`] follows).
    Connect,
    /// Send this frame (the driver adds the 2-octet length to a PDU).
    Transmit(Frame),
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
    /// The switch's pre-association `P` after our `B`.
    ExpectHandshake { deadline: Instant },
    /// The AARE answering our AARQ.
    ExpectAare { deadline: Instant },
    /// Associated: requests, events, keep-alives.
    Associated,
    /// The RLRE answering our RLRQ (shutdown).
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
}

#[derive(Debug)]
struct Pending {
    op: Operation,
    purpose: Purpose,
    deadline: Option<Instant>,
}

/// The outcome of one of our invokes, as the switch answered it.
type Outcome = Result<Option<OperationResult>, CstaError>;

/// The sans-IO link session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    cfg: LinkConfig,
    /// The AARQ PDU, built once.
    aarq: Bytes,
    state: State,
    out: VecDeque<Out>,
    /// Our invokes by invoke id.
    pending: HashMap<i64, Pending>,
    /// Pending invokes with a caller waiting (bounded by [`MAX_IN_FLIGHT`]).
    callers: usize,
    next_invoke: i64,
    /// The delay before the next reconnect attempt.
    backoff: Duration,
    next_keepalive: Option<Instant>,
    keepalives_unanswered: u32,
    monitors: MonitorTable,
    /// Devices to monitor again, in order (all in state ExpectRemonitor).
    remonitor: VecDeque<String>,
    /// The switch said systemStatus initializing: monitors wait for it to be back.
    switch_restarting: bool,
    /// The last Down reason told the owner while not associated.
    down_reported: Option<String>,
    /// Why requests fail while down, when more telling than `Down` (an AARE rejection).
    refusal: Option<LinkError>,
    /// What requests get once closed.
    closed_with: LinkError,
    shutting_down: bool,
}

impl Session {
    /// A session for `cfg`, connecting at once ([`Out::Connect`] is queued). An unusable
    /// configuration (bad context OID) gives a closed session that says why
    /// ([`LinkEvent::Down`], and [`LinkError::Encode`] to every request).
    pub fn new(cfg: LinkConfig, now: Instant) -> Session {
        let aarq = build_aarq(&cfg);
        let backoff = cfg.reconnect_min.max(MIN_BACKOFF);
        let mut s = Session {
            aarq: Bytes::new(),
            state: State::Closed,
            out: VecDeque::new(),
            pending: HashMap::new(),
            callers: 0,
            next_invoke: 1,
            backoff,
            next_keepalive: None,
            keepalives_unanswered: 0,
            monitors: MonitorTable::default(),
            remonitor: VecDeque::new(),
            switch_restarting: false,
            down_reported: None,
            refusal: None,
            closed_with: LinkError::Closed,
            shutting_down: false,
            cfg,
        };
        match aarq {
            Ok(b) => {
                s.aarq = b;
                s.start_connect(now);
            }
            Err(e) => {
                warn!(link = %s.cfg.name, error = %e, "the link configuration cannot work: not connecting");
                s.closed_with = LinkError::Encode(e.clone());
                s.event(LinkEvent::Down {
                    reason: format!("bad link configuration: {e}"),
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

    /// The monitor table.
    pub fn monitors(&self) -> &MonitorTable {
        &self.monitors
    }

    /// The next thing for the driver to do. Drain it after every call into the session; it
    /// holds at most what one call produced (bounded by the requests in flight and the
    /// monitor table).
    pub fn poll_output(&mut self) -> Option<Out> {
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
                    self.cfg.address, self.cfg.connect_timeout
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
        if self.cfg.handshake {
            self.out
                .push_back(Out::Transmit(Frame::Handshake(HANDSHAKE_APP)));
            self.state = State::ExpectHandshake { deadline };
        } else {
            self.send_aarq(deadline);
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

    /// A frame from the switch.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) {
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
        let pdu = match frame {
            Frame::Handshake(b) => {
                match self.state {
                    State::ExpectHandshake { deadline } if b == HANDSHAKE_SWITCH => {
                        debug!(link = %self.cfg.name, "pre-association 'P' received: sending the AARQ");
                        self.send_aarq(deadline);
                    }
                    _ => self.abort(
                        now,
                        format!("unexpected pre-association byte 0x{b:02x}; check the handshake setting"),
                    ),
                }
                return;
            }
            Frame::Pdu(p) => p,
        };
        if matches!(self.state, State::ExpectHandshake { .. }) {
            self.abort(
                now,
                "a PDU before the pre-association 'P'; check the handshake setting".into(),
            );
            return;
        }
        match Apdu::decode(&pdu) {
            Ok(Apdu::Acse(a)) => self.on_acse(a, now),
            Ok(Apdu::Rose(r)) => self.on_rose(r, now),
            Err(e) => self.on_undecodable(&pdu, e, now),
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
                if state.is_none() && self.monitors.len() >= MAX_MONITORS {
                    warn!(link = %self.cfg.name, device, max = MAX_MONITORS, "monitor table full");
                    return self.answer(token, Err(LinkError::TooManyRequests));
                }
                self.remonitor.retain(|d| d != device);
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
                if self.callers >= MAX_IN_FLIGHT {
                    return self.answer(token, Err(LinkError::TooManyRequests));
                }
                self.monitors.remove(device);
                info!(link = %self.cfg.name, device, "monitor stop");
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
                self.monitors.remove(device);
                self.remonitor.retain(|d| d != device);
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
                self.transmit_acse(&Acse::rlrq(0));
                self.next_keepalive = None;
                self.state = State::ExpectRlre {
                    deadline: now + self.cfg.request_timeout,
                };
            }
            State::ExpectRlre { .. } | State::Closed => {}
            State::ExpectHandshake { .. } | State::ExpectAare { .. } => {
                // X.227: an association being established is ended by A-ABORT
                self.transmit_acse(&Acse::abrt(0, None));
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
            State::Associated if self.callers >= MAX_IN_FLIGHT => Err(LinkError::TooManyRequests),
            State::Associated => Ok(()),
            State::Closed => Err(self.closed_with.clone()),
            State::ExpectRlre { .. } => Err(LinkError::Closed),
            _ => Err(self.refusal.clone().unwrap_or(LinkError::Down)),
        }
    }

    fn start_connect(&mut self, now: Instant) {
        debug!(link = %self.cfg.name, address = %self.cfg.address, "connecting");
        self.state = State::ExpectConnect {
            deadline: now + self.cfg.connect_timeout,
        };
        self.out.push_back(Out::Connect);
    }

    fn send_aarq(&mut self, deadline: Instant) {
        debug!(link = %self.cfg.name, context = %self.cfg.context, "AARQ");
        self.out
            .push_back(Out::Transmit(Frame::Pdu(self.aarq.clone())));
        self.state = State::ExpectAare { deadline };
    }

    fn transmit_acse(&mut self, a: &Acse) {
        match a.encode() {
            Ok(b) => self
                .out
                .push_back(Out::Transmit(Frame::Pdu(Bytes::from(b)))),
            Err(e) => warn!(link = %self.cfg.name, error = %e, "cannot encode an ACSE APDU (bug)"),
        }
    }

    fn transmit_rose(&mut self, r: Rose) {
        match Apdu::Rose(r).encode() {
            Ok(b) => self
                .out
                .push_back(Out::Transmit(Frame::Pdu(Bytes::from(b)))),
            Err(e) => warn!(link = %self.cfg.name, error = %e, "cannot encode a ROSE APDU (bug)"),
        }
    }

    fn reject(&mut self, invoke_id: InvokeId, problem: Problem) {
        self.transmit_rose(Rose::Reject(Reject { invoke_id, problem }));
    }

    /// The next free invoke id: 1..=MAX_INVOKE_ID, wrapping, skipping ids in flight.
    fn allocate_invoke_id(&mut self) -> i64 {
        loop {
            let id = self.next_invoke;
            self.next_invoke = if id >= MAX_INVOKE_ID { 1 } else { id + 1 };
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
        let id = self.allocate_invoke_id();
        let pdu = match Apdu::Rose(arg.invoke(id)).encode() {
            Ok(b) if b.len() <= MAX_U16_FRAME => b,
            Ok(b) => {
                let e = format!(
                    "{} of {} octets exceeds the frame limit of {MAX_U16_FRAME}",
                    arg.operation(),
                    b.len()
                );
                return Err((LinkError::Encode(e), purpose));
            }
            Err(e) => {
                warn!(link = %self.cfg.name, op = %arg.operation(), error = %e, "cannot encode the request");
                return Err((LinkError::Encode(e.to_string()), purpose));
            }
        };
        self.callers += callers_of(&purpose);
        self.out
            .push_back(Out::Transmit(Frame::Pdu(Bytes::from(pdu))));
        self.pending.insert(
            id,
            Pending {
                op: arg.operation(),
                purpose,
                deadline,
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
        match p.purpose {
            Purpose::Request { token } => self.answer(token, outcome),
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
            Ok(Ok(_)) => Ok(Err(CstaError::Reject("rejected:mistypedResult".into()))),
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
                    let arg: Argument = MonitorStopArgument::new(xref).into();
                    let deadline = Some(now + self.cfg.request_timeout);
                    let _ = self.invoke(&arg, Purpose::MonitorStop { token: None }, deadline);
                }
            }
            Ok(Err(e)) if current => {
                self.monitors.remove(device);
                if remembered {
                    warn!(link = %self.cfg.name, device, error = %e, "monitoring again refused: device forgotten");
                    self.event(LinkEvent::MonitorLost {
                        device: device.to_string(),
                        reason: format!("monitorStart refused: {e}"),
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
        if !self.is_associated() || self.switch_restarting {
            return;
        }
        let mut in_flight = self
            .pending
            .values()
            .filter(|p| matches!(&p.purpose, Purpose::MonitorStart { waiters, .. } if waiters.is_empty()))
            .count();
        while in_flight < REMONITOR_BATCH {
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
        let arg: Argument = SystemStatusArg::new(SystemStatus::Normal).into();
        match self.invoke(&arg, Purpose::KeepAlive, None) {
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
        self.transmit_acse(&Acse::abrt(0, None));
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
        let at = now + self.backoff;
        // first leave the association, so that answering the callers sends nothing new
        self.state = State::ExpectRetry { at };
        self.fail_pending(&err, now);
        self.monitors.suspend_all();
        self.remonitor.clear();
        self.switch_restarting = false;
        self.next_keepalive = None;
        self.keepalives_unanswered = 0;
        self.refusal = matches!(err, LinkError::Rejected(_)).then_some(err);
        self.out.push_back(Out::Close);
        if was_up {
            warn!(link = %self.cfg.name, %reason, retry_in = ?self.backoff, "link down");
        } else {
            warn!(link = %self.cfg.name, %reason, retry_in = ?self.backoff, "association attempt failed");
        }
        if was_up || self.down_reported.as_deref() != Some(reason.as_str()) {
            self.down_reported = Some(reason.clone());
            self.event(LinkEvent::Down { reason });
        }
        self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max.max(MIN_BACKOFF));
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
        self.next_keepalive = None;
        self.out.push_back(Out::Close);
        info!(link = %self.cfg.name, reason, "link closed");
        if was_up || self.down_reported.is_none() {
            self.event(LinkEvent::Down {
                reason: reason.to_string(),
            });
        }
    }

    fn on_acse(&mut self, a: Acse, now: Instant) {
        match (a.kind, self.state.clone()) {
            (AcseKind::Aare, State::ExpectAare { .. }) => {
                if a.result() == Some(acse::result::ACCEPTED) {
                    self.associated(&a, now);
                } else {
                    self.rejected(&a, now);
                }
            }
            (AcseKind::Abrt, _) => {
                let source = match a.abort_source() {
                    Some(0) => "service-user",
                    Some(1) => "service-provider",
                    _ => "unknown source",
                };
                let diag = a
                    .abort_diagnostic()
                    .map(|d| format!(", diagnostic {}", abort_diagnostic_name(d)))
                    .unwrap_or_default();
                let reason = format!("the switch aborted the association (ABRT, {source}{diag})");
                if matches!(self.state, State::ExpectRlre { .. }) {
                    self.finish(&reason);
                } else {
                    self.lose_link(now, LinkError::Aborted, reason);
                }
            }
            (AcseKind::Rlrq, State::Associated) => {
                info!(link = %self.cfg.name, "the switch releases the association (RLRQ): answering RLRE");
                self.transmit_acse(&Acse::rlre(0));
                self.lose_link(
                    now,
                    LinkError::Closed,
                    "the switch released the association (RLRQ)".into(),
                );
            }
            (AcseKind::Rlrq, State::ExpectRlre { .. }) => {
                // release collision (X.227): answer and close
                self.transmit_acse(&Acse::rlre(0));
                self.finish("released (release collision)");
            }
            (AcseKind::Rlre, State::ExpectRlre { .. }) => {
                self.finish("released (RLRQ answered by RLRE)");
            }
            (k, st) => {
                let reason = format!("unexpected {} from the switch while in {st:?}", k.name());
                warn!(link = %self.cfg.name, "{reason}: aborting");
                self.abort(now, reason);
            }
        }
    }

    fn associated(&mut self, a: &Acse, now: Instant) {
        let versions = a.csta_user_info().map(|u| u.versions);
        info!(link = %self.cfg.name, address = %self.cfg.address, context = %self.cfg.context, ?versions, "link up (associated)");
        self.state = State::Associated;
        self.backoff = self.cfg.reconnect_min.max(MIN_BACKOFF);
        self.refusal = None;
        self.down_reported = None;
        self.keepalives_unanswered = 0;
        self.next_keepalive =
            (!self.cfg.keepalive_idle.is_zero()).then(|| now + self.cfg.keepalive_idle);
        self.event(LinkEvent::Up);
        self.queue_remonitor_all();
        self.pump_remonitor(now);
    }

    fn rejected(&mut self, a: &Acse, now: Instant) {
        let result = match a.result() {
            Some(acse::result::REJECTED_PERMANENT) => "rejected-permanent".to_string(),
            Some(acse::result::REJECTED_TRANSIENT) => "rejected-transient".to_string(),
            Some(n) => format!("result {n}"),
            None => "no result".to_string(),
        };
        let name = match a.diagnostic() {
            Some(("service-user", v)) => acse::service_user_diagnostic_name(v).to_string(),
            Some(("service-provider", v)) => service_provider_diagnostic_name(v).to_string(),
            Some((_, v)) => format!("diagnostic {v}"),
            None => "no diagnostic given".to_string(),
        };
        warn!(link = %self.cfg.name, %result, diagnostic = %name, "the switch rejected the association (AARE)");
        self.lose_link(
            now,
            LinkError::Rejected(name.clone()),
            format!("association rejected ({result}): {name}"),
        );
    }

    fn on_rose(&mut self, r: Rose, now: Instant) {
        if !matches!(self.state, State::Associated | State::ExpectRlre { .. }) {
            self.abort(now, format!("ROSE {} before the association", r.kind()));
            return;
        }
        match r {
            Rose::Invoke(inv) => self.on_switch_invoke(inv, now),
            Rose::ReturnResult(rr) => {
                let Some(id) = self.ours(rr.invoke_id, "result") else {
                    return;
                };
                let outcome = self.result_outcome(id, &rr);
                self.complete(id, Ok(outcome), now);
            }
            Rose::ReturnError(re) => {
                let Some(id) = self.ours(re.invoke_id, "error") else {
                    return;
                };
                let outcome = self.error_outcome(id, &re);
                self.complete(id, Ok(outcome), now);
            }
            Rose::Reject(rj) => {
                let name = match rj.problem.name() {
                    Some(n) => n.to_string(),
                    None => format!("{}/{}", rj.problem.kind(), rj.problem.value()),
                };
                let Some(id) = self.ours(rj.invoke_id, "reject") else {
                    warn!(link = %self.cfg.name, problem = %name, "the switch rejected a PDU it could not attribute");
                    return;
                };
                warn!(link = %self.cfg.name, invoke = id, problem = %name, "the switch rejected our invoke");
                self.complete(
                    id,
                    Ok(Err(CstaError::Reject(format!("rejected:{name}")))),
                    now,
                );
            }
        }
    }

    /// The invoke id of an answer to one of ours (present and in flight).
    fn ours(&self, id: InvokeId, what: &str) -> Option<i64> {
        let v = id.value()?;
        if self.pending.contains_key(&v) {
            Some(v)
        } else {
            debug!(link = %self.cfg.name, invoke = v, what, "answer to an invoke not in flight (late after its deadline?): ignored");
            None
        }
    }

    /// A returnResult read for its request: a result we cannot read, or of another
    /// operation, is rejected (X.880 returnResult mistypedResult).
    fn result_outcome(&mut self, id: i64, rr: &ReturnResult) -> Outcome {
        let op = self.pending.get(&id).map(|p| p.op);
        match OperationResult::from_return_result(rr) {
            Ok(res) if res.as_ref().is_none_or(|r| Some(r.operation()) == op) => Ok(res),
            Ok(res) => {
                warn!(link = %self.cfg.name, invoke = id, expected = ?op, got = ?res.map(|r| r.operation()), "result of another operation: rejected");
                self.reject(
                    InvokeId::Present(id),
                    Problem::ReturnResult(problem::MISTYPED_RESULT),
                );
                Err(CstaError::Reject("rejected:mistypedResult".into()))
            }
            Err(e) => {
                warn!(link = %self.cfg.name, invoke = id, error = %e, "result not understood: rejected");
                self.reject(
                    InvokeId::Present(id),
                    Problem::ReturnResult(problem::MISTYPED_RESULT),
                );
                Err(CstaError::Reject("rejected:mistypedResult".into()))
            }
        }
    }

    /// A returnError read for its request: universalFailure (local 1) with its parameter;
    /// anything else is rejected (X.880 returnError unrecognizedError / mistypedParameter).
    fn error_outcome(&mut self, id: i64, re: &ReturnError) -> Outcome {
        if re.errcode != Code::Local(UniversalFailure::ERROR_CODE) {
            warn!(link = %self.cfg.name, invoke = id, errcode = ?re.errcode, "unknown error code: rejected");
            self.reject(
                InvokeId::Present(id),
                Problem::ReturnError(problem::UNRECOGNIZED_ERROR),
            );
            return Err(CstaError::Reject("rejected:unrecognizedError".into()));
        }
        match re
            .parameter
            .as_ref()
            .map(|p| UniversalFailure::from_value(&p.value))
        {
            Some(Ok(f)) => {
                debug!(link = %self.cfg.name, invoke = id, error = %f, "returnError");
                Err(CstaError::Failure(f))
            }
            other => {
                warn!(link = %self.cfg.name, invoke = id, parameter = ?other, "universalFailure without a readable parameter: rejected");
                self.reject(
                    InvokeId::Present(id),
                    Problem::ReturnError(problem::MISTYPED_PARAMETER),
                );
                Err(CstaError::Reject("rejected:mistypedParameter".into()))
            }
        }
    }

    /// An invoke from the switch (its own invoke-id space).
    fn on_switch_invoke(&mut self, inv: Invoke, now: Instant) {
        match inv.opcode.local() {
            Some(21) => {
                // cSTAEventReport: ALWAYS RESPONDS FALSE
                match EventReport::from_invoke_lenient(&inv) {
                    Ok(report) => {
                        let device = self.monitors.device_of(&report.xref).map(str::to_string);
                        if device.is_none() {
                            debug!(link = %self.cfg.name, xref = %hex(&report.xref.0), "event for an unknown cross reference");
                        }
                        self.event(LinkEvent::Report { device, report });
                    }
                    Err(e) => {
                        warn!(link = %self.cfg.name, error = %e, "event report not understood: dropped (never answered)")
                    }
                }
            }
            Some(211) => self.on_switch_status(&inv, now),
            _ => {
                warn!(link = %self.cfg.name, opcode = ?inv.opcode, "the switch invoked an operation we do not serve: rejected");
                self.reject(
                    inv.invoke_id,
                    Problem::Invoke(problem::UNRECOGNIZED_OPERATION),
                );
            }
        }
    }

    /// The switch's systemStatus: answered at once (returnResult noData, WIRE.md §9).
    fn on_switch_status(&mut self, inv: &Invoke, now: Instant) {
        let Some(id) = inv.invoke_id.value() else {
            self.reject(InvokeId::Absent, Problem::General(problem::MISTYPED_PDU));
            return;
        };
        if let Some(r) = rose_ext::no_data_result(Operation::SystemStatus, id) {
            self.transmit_rose(r);
        }
        let status = match Argument::from_invoke(inv) {
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
            Some(SystemStatus::Initializing) if !self.switch_restarting => {
                warn!(link = %self.cfg.name, "the switch is restarting (systemStatus initializing): its monitors are gone");
                self.switch_restarting = true;
                let lost: Vec<String> = self.monitors.active().map(str::to_string).collect();
                for d in lost {
                    self.monitors.suspend(&d);
                    self.event(LinkEvent::MonitorLost {
                        device: d,
                        reason: "the switch is restarting (systemStatus initializing); monitored again when it is back".into(),
                    });
                }
                self.queue_remonitor_all();
            }
            Some(SystemStatus::Enabled | SystemStatus::Normal) if self.switch_restarting => {
                info!(link = %self.cfg.name, "the switch is back: monitoring again");
                self.switch_restarting = false;
                self.queue_remonitor_all();
                self.pump_remonitor(now);
            }
            _ => {}
        }
        self.event(LinkEvent::SystemStatus { status: name });
    }

    /// A PDU the codec could not read. Before the association: abort. After: reject it the
    /// X.880 way (never an event report, never a reject) and fail the request it answers.
    fn on_undecodable(&mut self, pdu: &Bytes, e: DecodeError, now: Instant) {
        if !matches!(self.state, State::Associated | State::ExpectRlre { .. }) {
            self.abort(now, format!("undecodable PDU from the switch: {e}"));
            return;
        }
        warn!(link = %self.cfg.name, error = %e, hex = %hex(pdu), "undecodable PDU from the switch");
        let id = e.invoke_id;
        match pdu.first().copied() {
            Some(0xa1) => {
                if peek_opcode(pdu) == Some(Operation::CstaEventReport.code()) {
                    return; // never answered
                }
                match id {
                    Some(i) => self.reject(
                        InvokeId::Present(i),
                        Problem::Invoke(problem::MISTYPED_ARGUMENT),
                    ),
                    None => self.reject(InvokeId::Absent, Problem::General(problem::MISTYPED_PDU)),
                }
            }
            Some(first @ (0xa2 | 0xa3)) => match id.filter(|i| self.pending.contains_key(i)) {
                Some(i) => {
                    let (p, name) = if first == 0xa2 {
                        (
                            Problem::ReturnResult(problem::MISTYPED_RESULT),
                            "mistypedResult",
                        )
                    } else {
                        (
                            Problem::ReturnError(problem::MISTYPED_PARAMETER),
                            "mistypedParameter",
                        )
                    };
                    self.reject(InvokeId::Present(i), p);
                    self.complete(
                        i,
                        Ok(Err(CstaError::Reject(format!("rejected:{name}")))),
                        now,
                    );
                }
                None => self.reject(InvokeId::Absent, Problem::General(problem::MISTYPED_PDU)),
            },
            Some(0xa4) | None => {}
            Some(b) if b & 0xe0 == 0x60 => {
                self.abort(now, format!("undecodable ACSE APDU from the switch: {e}"));
            }
            Some(_) => self.reject(
                InvokeId::Absent,
                Problem::General(problem::UNRECOGNIZED_PDU),
            ),
        }
    }
}

fn callers_of(p: &Purpose) -> usize {
    match p {
        Purpose::Request { .. } | Purpose::MonitorStop { token: Some(_) } => 1,
        Purpose::MonitorStart { waiters, .. } => waiters.len(),
        Purpose::KeepAlive | Purpose::MonitorStop { token: None } => 0,
    }
}

fn tokens_of(p: Purpose) -> Vec<Token> {
    match p {
        Purpose::Request { token } | Purpose::MonitorStop { token: Some(token) } => vec![token],
        Purpose::MonitorStart { waiters, .. } => waiters,
        Purpose::KeepAlive | Purpose::MonitorStop { token: None } => Vec::new(),
    }
}

fn build_aarq(cfg: &LinkConfig) -> Result<Bytes, String> {
    let context: Oid = cfg.context.parse().map_err(|_| {
        format!(
            "context {:?} is not a dotted OID (e.g. 1.3.12.0.218)",
            cfg.context
        )
    })?;
    if let Some(v) = cfg.versions.iter().find(|v| **v > 23) {
        return Err(format!(
            "CSTA version bit {v} does not exist (0..=23; ECMA-285 ed1/ed2/ed3/ed4 = 2/4/14/18)"
        ));
    }
    let p = AarqParams {
        context,
        versions: cfg.versions.clone(),
        mechanism: None,
        authentication: cfg.password.clone(),
    };
    let a = Acse::aarq(&p).map_err(|e| format!("cannot build the AARQ: {e}"))?;
    a.encode()
        .map(Bytes::from)
        .map_err(|e| format!("cannot encode the AARQ: {e}"))
}

/// X.227 ABRT abort-diagnostic (ABRT-diagnostic ENUMERATED).
fn abort_diagnostic_name(v: i64) -> String {
    match v {
        1 => "no-reason-given".into(),
        2 => "protocol-error".into(),
        3 => "authentication-mechanism-name-not-recognized".into(),
        4 => "authentication-mechanism-name-required".into(),
        5 => "authentication-failure".into(),
        6 => "authentication-required".into(),
        n => n.to_string(),
    }
}

/// X.227 Associate-source-diagnostic acse-service-provider values.
fn service_provider_diagnostic_name(v: i64) -> &'static str {
    match v {
        0 => "null",
        1 => "no-reason-given",
        2 => "no-common-acse-version",
        _ => "unknown",
    }
}

/// The opcode of an invoke PDU the codec could not read (to tell an event report, which is
/// never answered, from the rest): `a1 L 02 L id [80 L .. | 81 00] 02 L opcode`.
fn peek_opcode(pdu: &[u8]) -> Option<i64> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&l0, rest) = rest.split_first()?;
        let (len, rest) = match l0 {
            0..=0x7f => (usize::from(l0), rest),
            0x81 => (usize::from(*rest.first()?), &rest[1..]),
            0x82 => (
                usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
                rest.get(2..)?,
            ),
            _ => return None,
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }
    let (tag, body, _) = tlv(pdu).or_else(|| {
        // a truncated outer length: read the children that are there
        pdu.get(2..).map(|body| (pdu[0], body, &[][..]))
    })?;
    if tag != 0xa1 {
        return None;
    }
    let (t, _, mut rest) = tlv(body)?;
    if t != 0x02 {
        return None;
    }
    let (mut t, mut v, r) = tlv(rest)?;
    if t == 0x80 || t == 0x81 {
        rest = r;
        (t, v, _) = tlv(rest)?;
    }
    if t != 0x02 || v.is_empty() || v.len() > 8 {
        return None;
    }
    let mut n: i64 = if v[0] & 0x80 != 0 { -1 } else { 0 };
    for b in v {
        n = (n << 8) | i64::from(*b);
    }
    Some(n)
}

fn hex(b: &[u8]) -> String {
    ctigate_csta::json::hex(b)
}

#[cfg(test)]
mod tests;
