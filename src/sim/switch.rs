//! The sans-IO switch: associations (X.227 ACSE), ROSE (X.880) request handling with the
//! ECMA-285 services, monitors, event report delivery, keep-alives, limits and faults.
//! Driven by plain calls — bytes in, [`Output`]s out, `now` passed in — so tests run it
//! without sockets or a runtime; `super::server` is the tokio driver around it.

use super::config::{Profile, SimConfig, SnapshotForm};
use super::model::{call_bytes, failure, CallNo, Model, Note};
use bytes::Bytes;
use ctigate_csta::acse::{Acse, AcseKind};
use ctigate_csta::apdu::Apdu;
use ctigate_csta::framing::Frame;
use ctigate_csta::rose::{Code, Invoke, InvokeId, Problem, Reject, Rose};
use ctigate_csta::rose_ext::{self, FromInvoke, ToInvoke, ToReturnError, ToReturnResult};
use ctigate_csta::Oid;
use ctigate_csta_model::events::EventReport;
use ctigate_csta_model::ops::{
    self, Argument, ConferenceCallResult, ConsultationCallResult, GetAgentStateResult,
    MakeCallResult, MonitorStartResult, Operation, SetAgentStateResult, SingleStepTransResult,
    SnapshotData, SnapshotDeviceDataArgument, SnapshotDeviceResult, SystemRegisterResult,
    SystemStatus, SystemStatusArg, TransferCallResult,
};
use ctigate_csta_model::types::{
    ConnectionId, CstaObject, DeviceId, EventCause, MonitorCrossRefId, UniversalFailure,
};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// A connection (TCP) to the switch.
pub type AssocId = u64;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send one PDU (the driver adds the 2-octet length).
    Pdu { assoc: AssocId, pdu: Bytes },
    /// Send these octets as they are (handshake byte, a garbled frame).
    Raw { assoc: AssocId, bytes: Bytes },
    /// Close the TCP connection (after sending what is queued).
    Close { assoc: AssocId, reason: String },
}

/// What a monitor watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Watched {
    Device(String),
    Call(CallNo),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    ExpectHandshake,
    ExpectAarq,
    Associated,
    /// RLRQ sent (a `release` fault, or the simulator stopping): waiting for the RLRE,
    /// ABRT at the deadline.
    Releasing,
    Closed,
}

/// Faults set on an association from the control port.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Faults {
    /// Incoming systemStatus invokes are not answered.
    pub ignore_keepalives: bool,
    /// Every response waits this long.
    pub delay_ms: u64,
    /// Nothing is answered or sent at all (a switch that hangs).
    pub hung: bool,
    /// Event reports for this association are dropped (counted in `events_dropped`), as a
    /// switch that loses messages does; `resume` ends it.
    pub lose_events: bool,
}

/// A control-port `fault` with its parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    pub kind: String,
    /// One association (default: every open one).
    pub assoc: Option<AssocId>,
    /// `delay`: every answer waits this long.
    pub ms: u64,
    /// `restart`: the links stay up (systemStatus initializing, then normal).
    pub keep_links: bool,
    /// `status`: the ECMA-269 SystemStatus name to send (`messagesLost`, `disabled`, ...).
    pub status: Option<String>,
    /// `forget_monitor`, `renumber_monitor`: the monitored device.
    pub device: Option<String>,
}

struct Delayed {
    due: Instant,
    invoke_id: i64,
    pdu: Bytes,
    /// Sent after the answer it follows (Snapshot Device Data): not a request in progress.
    follow_up: bool,
}

struct Assoc {
    phase: Phase,
    peer: String,
    /// The side (listen address) it came in on.
    side: usize,
    opened: Instant,
    monitors: BTreeMap<u32, Watched>,
    next_invoke: i64,
    keepalive_sent: Vec<i64>,
    next_keepalive: Option<Instant>,
    faults: Faults,
    delayed: VecDeque<Delayed>,
    /// RLRQ sent: ABRT if no RLRE by then.
    release_deadline: Option<Instant>,
    recent_requests: VecDeque<Instant>,
    events: VecDeque<Bytes>,
    next_event_at: Instant,
    lost_events: u64,
    sent_events: u64,
    requests: u64,
}

impl Assoc {
    fn invoke_id(&mut self) -> i64 {
        let id = self.next_invoke;
        self.next_invoke = if id >= 32767 { 1 } else { id + 1 };
        id
    }
}

/// Counts for `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub associations: u64,
    pub requests: u64,
    pub errors: u64,
    pub rejects: u64,
    pub events: u64,
    pub events_dropped: u64,
}

pub struct Switch {
    pub cfg: SimConfig,
    limits: Profile,
    pub model: Model,
    assocs: BTreeMap<AssocId, Assoc>,
    next_assoc: AssocId,
    next_xref: u32,
    out: VecDeque<Output>,
    /// PDUs to send right after the answer being built (see `receive`).
    follow_ups: Vec<Bytes>,
    /// The last Snapshot Device serviceCrossRefID given.
    next_service_ref: u32,
    pub counters: Counters,
    /// Stopping ([`Switch::release_all`]): no new connections.
    stopping: bool,
    /// The sides (listen addresses) serving this one switch: whether each takes
    /// connections (fault `side_down` / `side_up`).
    sides: Vec<bool>,
}

/// Sides (listen addresses) of one simulator at most.
pub const MAX_SIDES: usize = 16;

fn encode(apdu: &Apdu) -> Option<Bytes> {
    match apdu.encode() {
        Ok(b) => Some(Bytes::from(b)),
        Err(e) => {
            warn!(error = %e, "cannot encode a PDU (bug): dropped");
            None
        }
    }
}

fn reject(invoke_id: InvokeId, problem: Problem) -> Apdu {
    Apdu::Rose(Rose::Reject(Reject { invoke_id, problem }))
}

/// ROSE reject problem values (X.880).
/// The longest delay a `fault` may ask for (an hour): larger values would overflow the clock.
pub const MAX_FAULT_MS: u64 = 3_600_000;

const MISTYPED_PDU: i64 = 1;
const DUPLICATE_INVOCATION: i64 = 0;
const UNRECOGNIZED_OPERATION: i64 = 1;
const MISTYPED_ARGUMENT: i64 = 2;

impl Switch {
    /// A switch for a validated configuration.
    pub fn new(cfg: SimConfig) -> Switch {
        Switch {
            limits: cfg.effective_limits(),
            model: Model::new(&cfg),
            cfg,
            assocs: BTreeMap::new(),
            next_assoc: 1,
            next_xref: 1,
            out: VecDeque::new(),
            follow_ups: Vec::new(),
            next_service_ref: 0,
            counters: Counters::default(),
            stopping: false,
            sides: vec![true],
        }
    }

    /// A switch served on `n` sides (listen addresses; 1 to [`MAX_SIDES`]), all up: one
    /// call model, whichever side an application comes in on.
    pub fn with_sides(mut self, n: usize) -> Switch {
        self.sides = vec![true; n.clamp(1, MAX_SIDES)];
        self
    }

    /// Whether each side takes connections.
    pub fn sides(&self) -> &[bool] {
        &self.sides
    }

    pub fn limits(&self) -> &Profile {
        &self.limits
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// A TCP connection arrived; `None` when the switch takes no more (the driver closes
    /// it).
    /// A switch whose association ids start above `last` (a restarted switch must not
    /// hand out the ids of connections that are still closing).
    pub fn ids_after(mut self, last: AssocId) -> Switch {
        self.next_assoc = self.next_assoc.max(last + 1);
        self
    }

    /// The id the next association gets.
    pub fn next_assoc_id(&self) -> AssocId {
        self.next_assoc
    }

    /// A TCP connection on side 0 ([`Switch::connect_on`]).
    pub fn connect(&mut self, peer: &str, now: Instant) -> Option<AssocId> {
        self.connect_on(0, peer, now)
    }

    /// A TCP connection arrived on `side`; `None` when the switch takes no more, is
    /// stopping, or the side is down (the driver closes it).
    pub fn connect_on(&mut self, side: usize, peer: &str, now: Instant) -> Option<AssocId> {
        if self.stopping {
            info!(%peer, "stopping: connection refused");
            return None;
        }
        if !self.sides.get(side).copied().unwrap_or(false) {
            warn!(%peer, side, "the side is down: connection refused");
            return None;
        }
        let open = self
            .assocs
            .values()
            .filter(|a| a.phase != Phase::Closed)
            .count();
        if open >= self.cfg.link.max_associations {
            warn!(%peer, max = self.cfg.link.max_associations, "association limit reached: connection refused");
            return None;
        }
        let id = self.next_assoc;
        self.next_assoc += 1;
        self.counters.associations += 1;
        self.assocs.insert(
            id,
            Assoc {
                phase: if self.cfg.link.handshake {
                    Phase::ExpectHandshake
                } else {
                    Phase::ExpectAarq
                },
                peer: peer.to_string(),
                side,
                opened: now,
                monitors: BTreeMap::new(),
                next_invoke: 1,
                keepalive_sent: Vec::new(),
                next_keepalive: None,
                faults: Faults::default(),
                delayed: VecDeque::new(),
                release_deadline: None,
                recent_requests: VecDeque::new(),
                events: VecDeque::new(),
                next_event_at: now,
                lost_events: 0,
                sent_events: 0,
                requests: 0,
            },
        );
        info!(assoc = id, %peer, "connection");
        Some(id)
    }

    /// The TCP connection is gone: its monitors end.
    pub fn disconnected(&mut self, assoc: AssocId) {
        if let Some(a) = self.assocs.remove(&assoc) {
            info!(
                assoc,
                peer = %a.peer,
                monitors = a.monitors.len(),
                "connection closed"
            );
        }
    }

    fn close(&mut self, assoc: AssocId, reason: &str) {
        if let Some(a) = self.assocs.get_mut(&assoc) {
            if a.phase == Phase::Closed {
                return;
            }
            a.phase = Phase::Closed;
            a.monitors.clear();
            a.delayed.clear();
            a.events.clear();
        }
        info!(assoc, reason, "closing the association");
        self.out.push_back(Output::Close {
            assoc,
            reason: reason.to_string(),
        });
    }

    fn send(&mut self, assoc: AssocId, apdu: &Apdu) {
        if let Some(pdu) = encode(apdu) {
            self.out.push_back(Output::Pdu { assoc, pdu });
        }
    }

    /// A frame from the application.
    pub fn receive(&mut self, assoc: AssocId, frame: Frame, now: Instant) {
        let Some(a) = self.assocs.get(&assoc) else {
            return;
        };
        if a.faults.hung || a.phase == Phase::Closed {
            return;
        }
        let pdu = match frame {
            Frame::Handshake(b) => {
                if a.phase == Phase::ExpectHandshake {
                    debug!(assoc, byte = b, "pre-association byte; answering P");
                    if let Some(a) = self.assocs.get_mut(&assoc) {
                        a.phase = Phase::ExpectAarq;
                    }
                    self.out.push_back(Output::Raw {
                        assoc,
                        bytes: Bytes::from_static(b"P"),
                    });
                }
                return;
            }
            Frame::Pdu(p) => p,
        };
        match Apdu::decode(&pdu) {
            Ok(Apdu::Acse(acse)) => self.on_acse(assoc, acse, now),
            Ok(Apdu::Rose(rose)) => self.on_rose(assoc, rose, now),
            Err(e) => {
                warn!(assoc, error = %e, hex = %ctigate_csta::json::hex(&pdu), "undecodable PDU");
                if self.assocs.get(&assoc).map(|a| a.phase) != Some(Phase::Associated) {
                    self.abort(assoc, "undecodable PDU before association");
                    return;
                }
                self.counters.rejects += 1;
                let r = match e.invoke_id {
                    Some(id) if pdu.first() == Some(&0xa1) => {
                        reject(InvokeId::Present(id), Problem::Invoke(MISTYPED_ARGUMENT))
                    }
                    Some(id) => reject(InvokeId::Present(id), Problem::General(MISTYPED_PDU)),
                    None => reject(InvokeId::Absent, Problem::General(MISTYPED_PDU)),
                };
                self.send(assoc, &r);
            }
        }
    }

    fn abort(&mut self, assoc: AssocId, reason: &str) {
        self.send(assoc, &Apdu::Acse(Acse::abrt(0, None)));
        self.close(assoc, reason);
    }

    fn on_acse(&mut self, assoc: AssocId, acse: Acse, now: Instant) {
        let phase = self.assocs.get(&assoc).map(|a| a.phase);
        match (acse.kind, phase) {
            (AcseKind::Aarq, Some(Phase::ExpectAarq)) => self.on_aarq(assoc, &acse, now),
            (AcseKind::Rlrq, Some(Phase::Associated)) => {
                self.send(assoc, &Apdu::Acse(Acse::rlre(0)));
                self.close(assoc, "released (RLRQ)");
            }
            (AcseKind::Rlre, Some(Phase::Releasing)) => {
                self.close(assoc, "released (RLRQ answered by RLRE)")
            }
            (AcseKind::Rlrq, Some(Phase::Releasing)) => {
                // release collision (X.227): answer and close
                self.send(assoc, &Apdu::Acse(Acse::rlre(0)));
                self.close(assoc, "released (release collision)");
            }
            (AcseKind::Abrt, _) => self.close(assoc, "aborted by the application (ABRT)"),
            (k, p) => {
                warn!(assoc, apdu = k.name(), phase = ?p, "unexpected ACSE APDU: aborting");
                self.abort(assoc, "unexpected ACSE APDU");
            }
        }
    }

    fn on_aarq(&mut self, assoc: AssocId, acse: &Acse, now: Instant) {
        let ctx = acse.context_name();
        let accepted: Vec<Oid> = self
            .cfg
            .link
            .contexts
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        let diag = match &ctx {
            Some(c) if accepted.contains(c) => match &self.cfg.link.password {
                None => 0,
                Some(pw) => match acse.authentication() {
                    None => 14, // authentication-required
                    Some(given) if &given == pw => 0,
                    Some(_) => 13, // authentication-failure
                },
            },
            _ => 2, // application-context-name-not-supported
        };
        let reply_ctx = ctx
            .clone()
            .or_else(|| accepted.first().cloned())
            .unwrap_or_else(|| Oid(Bytes::from_static(&[0x2b, 0x0c, 0x00, 0x81, 0x5a])));
        let versions = acse.csta_user_info().map(|u| u.versions);
        let ours = ctigate_csta::acse::version::PHASE3_ALL;
        let answer_versions: Vec<u32> = match &versions {
            Some(v) if v.iter().any(|x| ours.contains(x)) => {
                v.iter().copied().filter(|x| ours.contains(x)).collect()
            }
            _ => ours.to_vec(),
        };
        if diag != 0 {
            let name = ctigate_csta::acse::service_user_diagnostic_name(diag);
            warn!(assoc, context = ?ctx.map(|c| c.to_string()), diagnostic = name, "AARQ rejected");
            if let Ok(a) = Acse::aare(&reply_ctx, 1, diag, None) {
                self.send(assoc, &Apdu::Acse(a));
            }
            self.close(assoc, &format!("association rejected: {name}"));
            return;
        }
        match Acse::aare(&reply_ctx, 0, 0, Some(&answer_versions)) {
            Ok(a) => self.send(assoc, &Apdu::Acse(a)),
            Err(e) => {
                warn!(assoc, error = %e, "cannot build the AARE");
                self.close(assoc, "internal error");
                return;
            }
        }
        let ka = self.cfg.link.keepalive_s;
        if let Some(a) = self.assocs.get_mut(&assoc) {
            a.phase = Phase::Associated;
            a.next_keepalive = (ka > 0).then(|| now + Duration::from_secs(ka));
            info!(assoc, peer = %a.peer, "associated");
        }
        if self.cfg.link.status_at_association {
            // real switches say they are up right after the AARE (clients wait for it)
            if let Some(inv) = self.system_status(assoc, SystemStatus::Normal) {
                if let Some(a) = self.assocs.get_mut(&assoc) {
                    a.keepalive_sent.push(inv);
                }
            }
        }
    }

    fn on_rose(&mut self, assoc: AssocId, rose: Rose, now: Instant) {
        if self.assocs.get(&assoc).map(|a| a.phase) == Some(Phase::Releasing) {
            debug!(assoc, "ROSE APDU while releasing: ignored");
            return;
        }
        if self.assocs.get(&assoc).map(|a| a.phase) != Some(Phase::Associated) {
            warn!(assoc, "ROSE APDU before the association: aborting");
            self.abort(assoc, "ROSE APDU before AARQ");
            return;
        }
        match rose {
            Rose::Invoke(inv) => self.on_invoke(assoc, inv, now),
            Rose::ReturnResult(r) => self.answered(assoc, r.invoke_id),
            Rose::ReturnError(r) => self.answered(assoc, r.invoke_id),
            Rose::Reject(r) => {
                debug!(assoc, problem = ?r.problem, "reject from the application");
                self.answered(assoc, r.invoke_id)
            }
        }
    }

    /// An answer to one of our invokes (only keep-alives expect one): the application is
    /// alive, so the count of consecutive misses starts again (a keep-alive it ignored
    /// earlier no longer counts against it).
    fn answered(&mut self, assoc: AssocId, id: InvokeId) {
        if let (Some(a), Some(id)) = (self.assocs.get_mut(&assoc), id.value()) {
            if a.keepalive_sent.contains(&id) {
                a.keepalive_sent.clear();
            }
        }
    }

    fn on_invoke(&mut self, assoc: AssocId, inv: Invoke, now: Instant) {
        let Some(id) = inv.invoke_id.value() else {
            self.counters.rejects += 1;
            self.send(
                assoc,
                &reject(InvokeId::Absent, Problem::General(MISTYPED_PDU)),
            );
            return;
        };
        let op = match inv.opcode {
            Code::Local(n) => Operation::from_code(n),
            Code::Global(_) => None,
        };
        let Some(op) = op.filter(|o| *o != Operation::CstaEventReport) else {
            self.counters.rejects += 1;
            self.send(
                assoc,
                &reject(
                    InvokeId::Present(id),
                    Problem::Invoke(UNRECOGNIZED_OPERATION),
                ),
            );
            return;
        };
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        if op == Operation::SystemStatus {
            if a.faults.ignore_keepalives {
                debug!(assoc, "fault: systemStatus not answered");
                return;
            }
            if let Some(r) = rose_ext::no_data_result(op, id) {
                self.send(assoc, &Apdu::Rose(r));
            }
            return;
        }
        if a.delayed.iter().any(|d| d.invoke_id == id) {
            self.counters.rejects += 1;
            self.send(
                assoc,
                &reject(InvokeId::Present(id), Problem::Invoke(DUPLICATE_INVOCATION)),
            );
            return;
        }
        let arg = match Argument::from_invoke(&inv) {
            Ok(a) => a,
            Err(e) => {
                warn!(assoc, op = op.name(), error = %e, "argument not understood: reject mistypedArgument");
                self.counters.rejects += 1;
                self.send(
                    assoc,
                    &reject(InvokeId::Present(id), Problem::Invoke(MISTYPED_ARGUMENT)),
                );
                return;
            }
        };
        self.counters.requests += 1;
        a.requests += 1;
        debug!(assoc, invoke = id, op = op.name(), "request");
        // limits of the dialect profile
        let limits = self.limits.clone();
        while a
            .recent_requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            a.recent_requests.pop_front();
        }
        let limited = if limits.requests_per_s > 0
            && a.recent_requests.len() >= limits.requests_per_s as usize
        {
            Some(failure("performanceManagement", "performanceLimitExceeded"))
        } else if limits.max_outstanding > 0
            && a.delayed.iter().filter(|d| !d.follow_up).count() >= limits.max_outstanding as usize
        {
            Some(failure(
                "subscribedResourceAvailability",
                "outstandingReqLimitExceeded",
            ))
        } else {
            None
        };
        a.recent_requests.push_back(now);
        let delay = Duration::from_millis(a.faults.delay_ms.max(limits.response_delay_ms));
        let answer = match limited {
            Some(f) => Err(f),
            None => self.execute(assoc, arg, now),
        };
        let rose = match answer {
            Ok(r) => r.return_result(id),
            Err(f) => {
                self.counters.errors += 1;
                debug!(assoc, op = op.name(), error = %f, "returnError");
                f.return_error(id)
            }
        };
        let Some(pdu) = encode(&Apdu::Rose(rose)) else {
            return;
        };
        // what follows the answer (the segments of a Snapshot Device answer by reference)
        let follow = std::mem::take(&mut self.follow_ups);
        if delay.is_zero() || limited.is_some() {
            self.out.push_back(Output::Pdu { assoc, pdu });
            for pdu in follow {
                self.out.push_back(Output::Pdu { assoc, pdu });
            }
        } else if let Some(a) = self.assocs.get_mut(&assoc) {
            a.delayed.push_back(Delayed {
                due: now + delay,
                invoke_id: id,
                pdu,
                follow_up: false,
            });
            for pdu in follow {
                a.delayed.push_back(Delayed {
                    due: now + delay,
                    invoke_id: id,
                    pdu,
                    follow_up: true,
                });
            }
        }
        self.deliver(now);
    }

    /// Run a service; the answer PDU or the universalFailure.
    fn execute(
        &mut self,
        assoc: AssocId,
        arg: Argument,
        now: Instant,
    ) -> Result<ops::OperationResult, UniversalFailure> {
        let m = &mut self.model;
        let res: ops::OperationResult = match arg {
            Argument::MonitorStart(a) => {
                let watched = match &a.monitor_object {
                    CstaObject::Device(d) => {
                        let n = number(d)?;
                        if !m.monitorable(n) {
                            return Err(failure("operation", "invalidDeviceID"));
                        }
                        Watched::Device(n.to_string())
                    }
                    CstaObject::Call(c) => Watched::Call(m.resolve(c)?.0),
                };
                let total: usize = self.assocs.values().map(|a| a.monitors.len()).sum();
                let Some(asc) = self.assocs.get_mut(&assoc) else {
                    return Err(failure("systemResourceAvailability", "generic"));
                };
                if asc.monitors.len() >= self.cfg.link.max_monitors {
                    return Err(failure(
                        "subscribedResourceAvailability",
                        "objectMonitorLimitExceeded",
                    ));
                }
                if total >= self.cfg.link.max_monitors_total {
                    return Err(failure(
                        "systemResourceAvailability",
                        "overallMonitorLimitExceeded",
                    ));
                }
                let xref = self.next_xref;
                self.next_xref = self.next_xref.wrapping_add(1).max(1);
                info!(assoc, xref, watched = ?watched, "monitor started");
                asc.monitors.insert(xref, watched);
                MonitorStartResult::new(MonitorCrossRefId::new(xref.to_be_bytes())).into()
            }
            Argument::MonitorStop(a) => {
                let x = &a.cross_ref_identifier.0;
                let xref = <[u8; 4]>::try_from(&x[..]).ok().map(u32::from_be_bytes);
                let removed = match (xref, self.assocs.get_mut(&assoc)) {
                    (Some(x), Some(asc)) => asc.monitors.remove(&x).map(|_| x),
                    _ => None,
                };
                match removed {
                    Some(x) => {
                        info!(assoc, xref = x, "monitor stopped");
                        simple(Operation::MonitorStop)
                    }
                    None => return Err(failure("operation", "invalidMonitorCrossRefID")),
                }
            }
            Argument::SnapshotDevice(a) => {
                let n = number(&a.snapshot_object)?;
                if !m.monitorable(n) {
                    return Err(failure("operation", "invalidDeviceID"));
                }
                let form = self.cfg.link.snapshot_form_of(n);
                let rows = m.snapshot(n, form);
                if form != SnapshotForm::CrossRef {
                    return Ok(SnapshotDeviceResult::new(SnapshotData::Data(rows)).into());
                }
                // by reference: the calls follow in Snapshot Device Data invocations
                let Some(asc) = self.assocs.get_mut(&assoc) else {
                    return Err(failure("systemResourceAvailability", "generic"));
                };
                self.next_service_ref = self.next_service_ref.wrapping_add(1);
                let xref = Bytes::copy_from_slice(&self.next_service_ref.to_be_bytes());
                let per = self.cfg.link.snapshot_segment_calls.max(1);
                let mut segments: Vec<Vec<_>> = rows.chunks(per).map(<[_]>::to_vec).collect();
                if segments.is_empty() {
                    segments.push(Vec::new());
                }
                let last = segments.len() - 1;
                for (i, seg) in segments.into_iter().enumerate() {
                    let mut d = SnapshotDeviceDataArgument::new(xref.clone(), i == last, seg);
                    d.segment_id = Some(i as i64 + 1);
                    if let Some(pdu) = encode(&Apdu::Rose(d.invoke(asc.invoke_id()))) {
                        self.follow_ups.push(pdu);
                    }
                }
                SnapshotDeviceResult::new(SnapshotData::ServiceCrossRefId(xref)).into()
            }
            Argument::SnapshotCall(a) => {
                let (c, _) = m.resolve(&a.snapshot_object)?;
                m.snapshot_call(c)?.into()
            }
            Argument::SnapshotDeviceData(_) => {
                return Err(failure("operation", "serviceNotSupported"))
            }
            Argument::MakeCall(a) => {
                let from = number(&a.calling_device)
                    .map_err(|_| failure("operation", "invalidCallingDeviceID"))?;
                let to = number(&a.called_directory_number)
                    .map_err(|_| failure("operation", "invalidCalledDeviceID"))?;
                let c = m.make_call(from, to, a.correlator_data, a.user_data, false, now)?;
                MakeCallResult::new(c).into()
            }
            Argument::AnswerCall(a) => {
                let (c, d) = m.resolve_full(&a.call_to_be_answered)?;
                m.answer(c, &d, now)?;
                simple(Operation::AnswerCall)
            }
            Argument::HoldCall(a) => {
                let (c, d) = m.resolve_full(&a.call_to_be_held)?;
                m.hold(c, &d, EventCause::NORMAL)?;
                simple(Operation::HoldCall)
            }
            Argument::RetrieveCall(a) => {
                let (c, d) = m.resolve_full(&a.call_to_be_retrieved)?;
                m.retrieve(c, &d)?;
                simple(Operation::RetrieveCall)
            }
            Argument::ClearConnection(a) => {
                let (c, d) = m.resolve_full(&a.connection_to_be_cleared)?;
                let cause = a.reason.unwrap_or(EventCause::NORMAL_CLEARING);
                m.clear_connection(c, &d, cause, now)?;
                simple(Operation::ClearConnection)
            }
            Argument::ClearCall(a) => {
                let (c, _) = m.resolve(&a.call_to_be_cleared)?;
                m.clear_call(c, now)?;
                simple(Operation::ClearCall)
            }
            Argument::ConsultationCall(a) => {
                let (c, d) = m.resolve_full(&a.existing_call)?;
                let to = number(&a.consulted_device)
                    .map_err(|_| failure("operation", "invalidCalledDeviceID"))?;
                let r = m.consult(c, &d, to, a.correlator_data, a.user_data, now)?;
                ConsultationCallResult::new(r).into()
            }
            Argument::TransferCall(a) => {
                let (h, a_) = same_device(m, &a.held_call, &a.active_call)?;
                let (r, list) = m.transfer(h, a_.0, &a_.1, now)?;
                let mut res = TransferCallResult::new(ConnectionId::call_only(call_bytes(r)));
                res.connections = Some(list);
                res.into()
            }
            Argument::ConferenceCall(a) => {
                let (h, a_) = same_device(m, &a.held_call, &a.active_call)?;
                let (r, list) = m.conference(h, a_.0, &a_.1, now)?;
                let mut res =
                    ConferenceCallResult::new(ConnectionId::dialing(call_bytes(r), &a_.1));
                res.connections = Some(list);
                res.into()
            }
            Argument::SingleStepTransfer(a) => {
                let (c, d) = m.resolve_full(&a.active_call)?;
                let to = number(&a.transferred_to)
                    .map_err(|_| failure("operation", "invalidCalledDeviceID"))?;
                let r = m.single_step_transfer(c, &d, to, now)?;
                SingleStepTransResult::new(r).into()
            }
            Argument::AlternateCall(a) => {
                let (h, a_) = same_device(m, &a.held_call, &a.active_call)?;
                m.alternate(h, a_.0, &a_.1)?;
                simple(Operation::AlternateCall)
            }
            Argument::ReconnectCall(a) => {
                let (h, a_) = same_device(m, &a.held_call, &a.active_call)?;
                m.reconnect(a_.0, h, &a_.1, now)?;
                simple(Operation::ReconnectCall)
            }
            Argument::GenerateDigits(a) => {
                let (c, d) = m.resolve_full(&a.connection_to_send_digits)?;
                m.generate_digits(c, &d, &a.characters_to_send)?;
                simple(Operation::GenerateDigits)
            }
            Argument::SetAgentState(a) => {
                let n = number(&a.device)?;
                let req = a
                    .requested_agent_state
                    .name()
                    .ok_or_else(|| failure("operation", "invalidAgentState"))?;
                let text =
                    |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                let (agent, pw) = (text(&a.agent_id), text(&a.password));
                let group = match &a.group {
                    Some(g) => Some(number(g)?),
                    None => None,
                };
                let pending = m.set_agent_state(
                    n,
                    req,
                    agent.as_deref(),
                    pw.as_deref(),
                    group,
                    a.extensions,
                    now,
                )?;
                let mut r = SetAgentStateResult::new();
                r.pending_agent_state = pending;
                r.into()
            }
            Argument::GetAgentState(a) => {
                let n = number(&a.device)?;
                if m.kind(n) != Some(super::model::DeviceKind::Station) {
                    return Err(failure("operation", "invalidDeviceID"));
                }
                GetAgentStateResult::new(m.agent_state_list(n)).into()
            }
            Argument::SystemRegister(_) => {
                SystemRegisterResult::new(Bytes::from_static(b"\x00\x01")).into()
            }
            Argument::SystemStatus(_) => simple(Operation::SystemStatus),
            Argument::Escape(_) => return Err(failure("operation", "serviceNotSupported")),
            Argument::CstaEventReport(_) => {
                return Err(failure("operation", "serviceNotSupported"))
            }
        };
        Ok(res)
    }

    /// Send queued model events to the monitors that watch them.
    fn deliver(&mut self, now: Instant) {
        let notes = self.model.take_notes();
        if notes.is_empty() {
            return;
        }
        for note in &notes {
            self.route(note, now);
        }
        self.flush_events(now);
    }

    fn route(&mut self, note: &Note, _now: Instant) {
        let cap = self.cfg.link.event_queue.max(1);
        let paced = self.limits.events_per_s > 0;
        let ids: Vec<AssocId> = self.assocs.keys().copied().collect();
        for id in ids {
            let Some(a) = self.assocs.get_mut(&id) else {
                continue;
            };
            if a.phase != Phase::Associated || a.faults.hung {
                continue;
            }
            let xrefs: Vec<u32> = a
                .monitors
                .iter()
                .filter(|(_, w)| match w {
                    Watched::Device(d) => *d == note.device,
                    Watched::Call(c) => note.call == Some(*c) && note.primary,
                })
                .map(|(x, _)| *x)
                .collect();
            for xref in xrefs {
                if a.faults.lose_events {
                    self.counters.events_dropped += 1;
                    debug!(assoc = id, xref, "fault lose_events: event report dropped");
                    continue;
                }
                let inv = a.invoke_id();
                let rep = EventReport::new(
                    MonitorCrossRefId::new(xref.to_be_bytes()),
                    note.event.clone(),
                );
                let Some(pdu) = encode(&Apdu::Rose(rep.invoke(inv))) else {
                    continue;
                };
                self.counters.events += 1;
                if paced {
                    if a.events.len() >= cap {
                        a.events.pop_front();
                        a.lost_events += 1;
                        self.counters.events_dropped += 1;
                    }
                    a.events.push_back(pdu);
                } else {
                    a.sent_events += 1;
                    self.out.push_back(Output::Pdu { assoc: id, pdu });
                }
            }
        }
    }

    /// Paced associations: send what the rate allows now.
    fn flush_events(&mut self, now: Instant) {
        let rate = self.limits.events_per_s;
        if rate == 0 {
            return;
        }
        let gap = Duration::from_secs(1) / rate;
        let ids: Vec<AssocId> = self.assocs.keys().copied().collect();
        for id in ids {
            let mut lost = 0;
            if let Some(a) = self.assocs.get_mut(&id) {
                if a.next_event_at < now {
                    a.next_event_at = now; // idle: no burst credit
                }
                while !a.events.is_empty() && a.next_event_at <= now {
                    if let Some(pdu) = a.events.pop_front() {
                        a.sent_events += 1;
                        self.out.push_back(Output::Pdu { assoc: id, pdu });
                    }
                    a.next_event_at += gap;
                }
                lost = std::mem::take(&mut a.lost_events);
            }
            if lost > 0 {
                warn!(
                    assoc = id,
                    lost,
                    "event queue full: oldest events dropped; sending systemStatus messagesLost"
                );
                self.system_status(id, SystemStatus::MessagesLost);
            }
        }
    }

    fn system_status(&mut self, assoc: AssocId, status: SystemStatus) -> Option<i64> {
        let a = self.assocs.get_mut(&assoc)?;
        let inv = a.invoke_id();
        let arg = SystemStatusArg::new(status);
        self.send(assoc, &Apdu::Rose(arg.invoke(inv)));
        Some(inv)
    }

    /// The earliest time [`Switch::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.model.next_deadline();
        let mut min = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for a in self.assocs.values() {
            if a.phase == Phase::Closed {
                continue;
            }
            if let Some(r) = a.release_deadline {
                min(r);
            }
            if a.phase == Phase::Releasing {
                continue;
            }
            if let Some(k) = a.next_keepalive {
                min(k);
            }
            if let Some(d) = a.delayed.front() {
                min(d.due);
            }
            if !a.events.is_empty() {
                min(a.next_event_at);
            }
            if matches!(a.phase, Phase::ExpectAarq | Phase::ExpectHandshake) {
                min(a.opened + Duration::from_secs(self.cfg.link.aarq_timeout_s));
            }
        }
        t
    }

    /// Timers: keep-alives, delayed answers, paced events, the model's own timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.model.fire(now);
        self.deliver(now);
        let ids: Vec<AssocId> = self.assocs.keys().copied().collect();
        for id in ids {
            let Some(a) = self.assocs.get_mut(&id) else {
                continue;
            };
            if a.phase == Phase::Closed {
                continue;
            }
            if a.phase == Phase::Releasing {
                if a.release_deadline.is_some_and(|d| d <= now) {
                    warn!(assoc = id, "no RLRE in time: aborting");
                    self.abort(id, "released without RLRE (ABRT)");
                }
                continue;
            }
            if matches!(a.phase, Phase::ExpectAarq | Phase::ExpectHandshake)
                && now >= a.opened + Duration::from_secs(self.cfg.link.aarq_timeout_s)
            {
                self.close(id, "no AARQ in time");
                continue;
            }
            if a.faults.hung {
                // a hung switch sends nothing, not even the answers it owed
                a.delayed.clear();
            }
            while a.delayed.front().is_some_and(|d| d.due <= now) {
                if let Some(d) = a.delayed.pop_front() {
                    self.out.push_back(Output::Pdu {
                        assoc: id,
                        pdu: d.pdu,
                    });
                }
            }
            if a.next_keepalive.is_some_and(|k| k <= now) {
                if a.faults.hung {
                    a.next_keepalive = Some(now + Duration::from_secs(self.cfg.link.keepalive_s));
                    continue;
                }
                if a.keepalive_sent.len() >= self.cfg.link.keepalive_misses as usize {
                    warn!(
                        assoc = id,
                        missed = a.keepalive_sent.len(),
                        "keep-alives unanswered: dropping the association"
                    );
                    self.abort(id, "keep-alives unanswered");
                    continue;
                }
                a.next_keepalive = Some(now + Duration::from_secs(self.cfg.link.keepalive_s));
                if let Some(inv) = self.system_status(id, SystemStatus::Normal) {
                    if let Some(a) = self.assocs.get_mut(&id) {
                        a.keepalive_sent.push(inv);
                    }
                }
            }
        }
        self.flush_events(now);
    }

    // ---- control -------------------------------------------------------------------------

    /// Run a world action on the model and deliver its events.
    pub fn world<T>(&mut self, now: Instant, f: impl FnOnce(&mut Model) -> T) -> T {
        let r = f(&mut self.model);
        self.deliver(now);
        r
    }

    /// The associations a fault applies to: one, or all that are open.
    pub fn targets(&self, assoc: Option<AssocId>) -> Result<Vec<AssocId>, String> {
        match assoc {
            Some(a)
                if self
                    .assocs
                    .get(&a)
                    .is_some_and(|x| x.phase != Phase::Closed) =>
            {
                Ok(vec![a])
            }
            Some(a) => Err(format!("no open association {a}")),
            None => Ok(self
                .assocs
                .iter()
                .filter(|(_, a)| a.phase != Phase::Closed)
                .map(|(id, _)| *id)
                .collect()),
        }
    }

    /// Release every association (RLRQ; ABRT when no RLRE comes within
    /// `link.release_timeout_ms`) and close every connection not associated; no new
    /// connections from now on. The simulator stopping (SIGTERM, SIGINT) does this.
    pub fn release_all(&mut self, now: Instant) {
        self.stopping = true;
        let ids: Vec<AssocId> = self.assocs.keys().copied().collect();
        for id in ids {
            match self.assocs.get(&id).map(|a| a.phase) {
                Some(Phase::Associated) => self.release(id, now),
                Some(Phase::ExpectAarq | Phase::ExpectHandshake) => {
                    self.close(id, "the simulator is stopping")
                }
                _ => {}
            }
        }
    }

    /// Whether every association is closed (after [`Switch::release_all`]).
    pub fn all_closed(&self) -> bool {
        self.assocs.values().all(|a| a.phase == Phase::Closed)
    }

    /// Release one association: RLRQ, then wait for the RLRE.
    fn release(&mut self, assoc: AssocId, now: Instant) {
        let timeout = Duration::from_millis(self.cfg.link.release_timeout_ms);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        if a.phase != Phase::Associated {
            return;
        }
        a.phase = Phase::Releasing;
        a.release_deadline = Some(now + timeout);
        a.next_keepalive = None;
        a.delayed.clear();
        a.events.clear();
        info!(assoc, "releasing the association (RLRQ)");
        self.send(assoc, &Apdu::Acse(Acse::rlrq(0)));
    }

    /// Apply a fault (control port `fault`); `ms` is at most [`MAX_FAULT_MS`].
    pub fn fault(&mut self, spec: &FaultSpec, now: Instant) -> Result<usize, String> {
        let (kind, assoc, ms, keep_links) =
            (spec.kind.as_str(), spec.assoc, spec.ms, spec.keep_links);
        if ms > MAX_FAULT_MS {
            return Err(format!(
                "ms must be at most {MAX_FAULT_MS} (an hour), not {ms}"
            ));
        }
        if kind == "crash" {
            // chaos testing of the supervisor (sim/server.rs `core`): the switch task fails
            // as a bug would, and must come back
            panic!("fault crash: the switch fails on purpose");
        }
        if kind == "restart" {
            let ids = self.targets(None)?;
            self.model.reset();
            for id in &ids {
                if keep_links {
                    if let Some(a) = self.assocs.get_mut(id) {
                        a.monitors.clear();
                        a.events.clear();
                    }
                    self.system_status(*id, SystemStatus::Initializing);
                    self.system_status(*id, SystemStatus::Normal);
                } else {
                    self.out.push_back(Output::Close {
                        assoc: *id,
                        reason: "switch restart".into(),
                    });
                    if let Some(a) = self.assocs.get_mut(id) {
                        a.phase = Phase::Closed;
                        a.monitors.clear();
                    }
                }
            }
            warn!(
                associations = ids.len(),
                keep_links, "switch restart: every call and monitor is gone"
            );
            return Ok(ids.len());
        }
        let status = match (kind, &spec.status) {
            ("status", Some(s)) => Some(SystemStatus::from_name(s).ok_or_else(|| {
                format!("unknown status {s:?}: use an ECMA-269 SystemStatus name (initializing, enabled, normal, messagesLost, disabled, overloadImminent, overloadReached, overloadRelieved, partiallyDisabled)")
            })?),
            ("status", None) => return Err("fault status needs \"status\": a SystemStatus name such as messagesLost".into()),
            _ => None,
        };
        let device = match (kind, &spec.device) {
            ("forget_monitor" | "renumber_monitor", Some(d)) => Some(d.clone()),
            ("forget_monitor" | "renumber_monitor", None) => {
                return Err(format!(
                    "fault {kind} needs \"device\": the monitored device"
                ))
            }
            _ => None,
        };
        let ids = self.targets(assoc)?;
        for id in &ids {
            match kind {
                "close" => self.close(*id, "fault: close"),
                "release" => self.release(*id, now),
                "status" => {
                    if let Some(st) = status {
                        if matches!(st, SystemStatus::Initializing | SystemStatus::Disabled) {
                            // the switch's monitors are gone while it is not available
                            if let Some(a) = self.assocs.get_mut(id) {
                                a.monitors.clear();
                                a.events.clear();
                            }
                        }
                        warn!(assoc = id, status = st.name().unwrap_or("?"), "fault: systemStatus");
                        self.system_status(*id, st);
                    }
                }
                "forget_monitor" | "renumber_monitor" => {
                    let d = device.clone().unwrap_or_default();
                    let renumber = kind == "renumber_monitor";
                    let mut new_xrefs = Vec::new();
                    if let Some(a) = self.assocs.get_mut(id) {
                        let old: Vec<u32> = a
                            .monitors
                            .iter()
                            .filter(|(_, w)| **w == Watched::Device(d.clone()))
                            .map(|(x, _)| *x)
                            .collect();
                        for x in old {
                            a.monitors.remove(&x);
                            if renumber {
                                new_xrefs.push(x);
                            }
                        }
                    }
                    for old in new_xrefs {
                        let x = self.next_xref;
                        self.next_xref = self.next_xref.wrapping_add(1).max(1);
                        if let Some(a) = self.assocs.get_mut(id) {
                            a.monitors.insert(x, Watched::Device(d.clone()));
                        }
                        warn!(assoc = id, device = %d, old, new = x, "fault: monitor renumbered without telling the application");
                    }
                    if !renumber {
                        warn!(assoc = id, device = %d, "fault: monitor forgotten");
                    }
                }
                "abort" => self.abort(*id, "fault: abort"),
                "garble" => self.out.push_back(Output::Raw {
                    assoc: *id,
                    // a frame of 6 octets: an invoke whose inner SEQUENCE has no length
                    bytes: match self.cfg.link.framing {
                        crate::config::Framing::Length => Bytes::from_static(&[
                            0x00, 0x06, 0xa1, 0x04, 0x02, 0x01, 0x05, 0x30,
                        ]),
                        crate::config::Framing::Hipath => Bytes::from_static(&[
                            0x26, 0x80, 0x06, 0xa1, 0x04, 0x02, 0x01, 0x05, 0x30,
                        ]),
                    },
                }),
                "stop_keepalive" | "resume_keepalive" | "delay" | "hang" | "resume"
                | "lose_events" => {
                    if let Some(a) = self.assocs.get_mut(id) {
                        match kind {
                            "lose_events" => a.faults.lose_events = true,
                            "stop_keepalive" => a.faults.ignore_keepalives = true,
                            "resume_keepalive" => a.faults.ignore_keepalives = false,
                            "delay" => a.faults.delay_ms = ms,
                            "hang" => a.faults.hung = true,
                            _ => a.faults = Faults::default(),
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown fault {other:?}: use close, abort, release, garble, stop_keepalive, resume_keepalive, delay, hang, lose_events, resume, status, forget_monitor, renumber_monitor, restart, crash, side_down or side_up"
                    ))
                }
            }
        }
        let _ = now;
        Ok(ids.len())
    }

    /// Fault `side_down` (`up` false): the side takes no connections and its associations
    /// are aborted (ABRT, close); the driver closes its listener. `side_up`: back. The
    /// number of associations aborted.
    pub fn side_fault(&mut self, up: bool, side: Option<usize>) -> Result<usize, String> {
        let n = self.sides.len();
        let what = if up { "side_up" } else { "side_down" };
        let Some(side) = side else {
            return Err(format!(
                "{what} needs \"side\": 0 to {} (this simulator has {n} side{})",
                n - 1,
                if n == 1 { "" } else { "s" }
            ));
        };
        if side >= n {
            return Err(format!(
                "no side {side}: this simulator has {n} side{} (0 to {}; ctigate sim --listen once per side)",
                if n == 1 { "" } else { "s" },
                n - 1
            ));
        }
        self.sides[side] = up;
        if up {
            info!(side, "fault side_up: the side takes connections again");
            return Ok(0);
        }
        let ids: Vec<AssocId> = self
            .assocs
            .iter()
            .filter(|(_, a)| a.side == side && a.phase != Phase::Closed)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.abort(*id, "fault: side_down");
        }
        warn!(
            side,
            associations = ids.len(),
            "fault side_down: the side is down (listener closed, associations aborted)"
        );
        Ok(ids.len())
    }

    /// The sides for `status`.
    pub fn sides_status(&self) -> serde_json::Value {
        self.sides
            .iter()
            .enumerate()
            .map(|(i, up)| serde_json::json!({"side": i, "up": up}))
            .collect()
    }

    /// Associations for `status`.
    pub fn associations(&self) -> serde_json::Value {
        self.assocs
            .iter()
            .map(|(id, a)| {
                serde_json::json!({
                    "id": id,
                    "peer": a.peer,
                    "side": a.side,
                    "phase": a.phase,
                    "monitors": a.monitors.iter().map(|(x, w)| serde_json::json!({
                        "xref": format!("{x:08x}"),
                        "watches": w,
                    })).collect::<Vec<_>>(),
                    "faults": a.faults,
                    "requests": a.requests,
                    "events_sent": a.sent_events,
                    "events_queued": a.events.len(),
                    "keepalives_unanswered": a.keepalive_sent.len(),
                })
            })
            .collect()
    }

    /// Whether some association is associated (and, with `device`, monitors it).
    pub fn has_association(&self, device: Option<&str>) -> bool {
        self.assocs.values().any(|a| {
            a.phase == Phase::Associated
                && device.is_none_or(|d| {
                    a.monitors
                        .values()
                        .any(|w| *w == Watched::Device(d.to_string()))
                })
        })
    }
}

/// The dialling number of a DeviceID (other forms are not used by this switch).
fn number(d: &DeviceId) -> Result<&str, UniversalFailure> {
    d.number()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| failure("operation", "invalidDeviceID"))
}

/// `noData` result of a simple operation.
fn simple(op: Operation) -> ops::OperationResult {
    ops::OperationResult::Simple {
        op,
        extensions: None,
    }
}

/// Held and active connections of one device: (held call, (active call, device)).
fn same_device(
    m: &Model,
    held: &ConnectionId,
    active: &ConnectionId,
) -> Result<(CallNo, (CallNo, String)), UniversalFailure> {
    let (h, hd) = m.resolve_full(held)?;
    let (a, ad) = m.resolve_full(active)?;
    if hd != ad {
        return Err(failure("operation", "invalidConnectionID"));
    }
    Ok((h, (a, ad)))
}
