//! The switch's call model (ECMA-269 clause 6): devices (stations, ACD groups, the trunk
//! that stands for the outside world), calls with switch-assigned call ids, connections in
//! the ECMA-269 states, and agents. Services and outside-world actions change the model
//! and queue [`Note`]s: the event each involved device sees, with that device's own
//! `localConnectionInfo`. The model knows nothing of associations or monitors.
//!
//! Conventions of this switch (documented in README.md, "Switch simulator"):
//! - a call id is two octets, assigned in order, skipping ids in use;
//! - a station with any connection is busy for new calls (no call waiting);
//! - a call whose last-but-one connection clears is cleared: the clearing device's
//!   ConnectionCleared goes to every device in the call, then CallCleared to the same ones;
//! - an ACD call queues at its group (Queued, cause enteringDistribution), is diverted to
//!   the longest-idle ready agent (Diverted at the group, cause distributed) and alerts there
//!   (Delivered, cause distributed, lastRedirectionDevice the group).

use super::config::{expand, FarEnd, ResultingCallId, SimConfig, SnapshotForm};
use bytes::Bytes;
use ctigate_csta_model::events::{
    AgentBusyEvent, AgentLoggedOffEvent, AgentLoggedOnEvent, AgentNotReadyEvent, AgentReadyEvent,
    AgentWorkingAfterCallEvent, CallClearedEvent, ConferencedEvent, ConnectionClearedEvent,
    DeliveredEvent, DigitsGeneratedEvent, DivertedEvent, EstablishedEvent, Event, FailedEvent,
    HeldEvent, OriginatedEvent, QueuedEvent, RetrievedEvent, ServiceInitiatedEvent,
    TransferredEvent, WorkingAfterCallPendingState,
};
use ctigate_csta_model::ops::{
    AgentInfo, AgentStateEntry, SimpleCallState, SnapshotCallInfo, SnapshotCallResponseInfo,
    SnapshotCallResult, SnapshotDeviceResponseInfo,
};
use ctigate_csta_model::types::{
    AgentState, CommonArguments, ConnectionId, ConnectionListEntry, DeviceId, EventCause,
    LocalConnectionState, Party, PendingAgentState, Redirection, UniversalFailure,
};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// A call id as the switch assigns it (two octets on the wire).
pub type CallNo = u16;

/// The wire form of a call id.
pub fn call_bytes(c: CallNo) -> [u8; 2] {
    c.to_be_bytes()
}

/// A universalFailure by names (the names are constants of this module; an unknown pair
/// would give `unspecified`, never a panic).
pub fn failure(category: &str, value: &str) -> UniversalFailure {
    UniversalFailure::from_names(category, value).unwrap_or(UniversalFailure {
        category: "unspecified",
        value: 0,
    })
}

/// ECMA-269 connection states (LocalConnectionState without `null`: a null connection is
/// not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    Initiated,
    Alerting,
    Connected,
    Hold,
    Queued,
    Fail,
}

impl ConnState {
    pub fn lcs(self) -> LocalConnectionState {
        match self {
            ConnState::Initiated => LocalConnectionState::Initiated,
            ConnState::Alerting => LocalConnectionState::Alerting,
            ConnState::Connected => LocalConnectionState::Connected,
            ConnState::Hold => LocalConnectionState::Hold,
            ConnState::Queued => LocalConnectionState::Queued,
            ConnState::Fail => LocalConnectionState::Fail,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Station,
    Group,
    External,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conn {
    pub device: String,
    pub state: ConnState,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub id: CallNo,
    pub conns: Vec<Conn>,
    /// The calling number (ANI for inbound calls; may be empty: not known).
    pub calling: String,
    /// The called number as dialled (DNIS).
    pub called: String,
    pub user_data: Option<Bytes>,
    pub correlator: Option<Bytes>,
    /// The ACD group the call came through.
    pub group: Option<String>,
    /// lastRedirectionDevice.
    pub redirected_from: Option<String>,
    pub started: Instant,
}

/// The SimpleCallState for this device's connection `local` and the far end's `other`
/// (`other-local` in ECMA-285's notation); `None` when the standard names no such pair
/// and no state with the same local part.
fn simple_state(other: Option<ConnState>, local: ConnState) -> Option<SimpleCallState> {
    let nibble = |s: ConnState| s.lcs().to_i64() & 0x0f;
    let code = other.map_or(0, |o| nibble(o) << 4) | nibble(local);
    match SimpleCallState::from_i64(code) {
        SimpleCallState::Other(_) => match local {
            ConnState::Initiated => Some(SimpleCallState::CallPending),
            ConnState::Alerting => Some(SimpleCallState::CallReceived),
            ConnState::Connected => Some(SimpleCallState::CallEstablished),
            ConnState::Hold => Some(SimpleCallState::CallEstablishedHeld),
            ConnState::Fail => Some(SimpleCallState::CallBlocked),
            ConnState::Queued => None,
        },
        s => Some(s),
    }
}

fn party(n: &str) -> Party {
    if n.is_empty() {
        Party::NotKnown
    } else {
        Party::dialing(n)
    }
}

impl Call {
    pub fn conn(&self, device: &str) -> ConnectionId {
        ConnectionId::dialing(call_bytes(self.id), device)
    }
    fn state_of(&self, device: &str) -> Option<ConnState> {
        self.conns
            .iter()
            .find(|c| c.device == device)
            .map(|c| c.state)
    }
    fn has(&self, device: &str) -> bool {
        self.state_of(device).is_some()
    }
    fn set(&mut self, device: &str, state: ConnState) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.device == device) {
            c.state = state;
        }
    }
    fn remove(&mut self, device: &str) {
        self.conns.retain(|c| c.device != device);
    }
    /// Connections that count (not failed).
    fn live(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| c.state != ConnState::Fail)
            .count()
    }
    fn others(&self, device: &str) -> Vec<String> {
        self.conns
            .iter()
            .filter(|c| c.device != device && c.state != ConnState::Fail)
            .map(|c| c.device.clone())
            .collect()
    }
    fn redirection(&self) -> Redirection {
        match &self.redirected_from {
            Some(d) => Redirection::NumberDialed(DeviceId::dialing(d)),
            None => Redirection::NotKnown,
        }
    }
}

/// The event a device sees, for the switch to send to that device's monitors (and the
/// call's call-type monitors).
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub device: String,
    pub call: Option<CallNo>,
    pub event: Event,
    /// The first note of one happening (what a call-type monitor gets).
    pub primary: bool,
}

/// Queue the event `f(viewer, viewer's state)` for every device with a live connection in
/// `call` and for `extra` devices.
fn emit(
    notes: &mut Vec<Note>,
    call: &Call,
    extra: &[&str],
    f: impl Fn(&str, Option<LocalConnectionState>) -> Event,
) {
    let mut viewers: Vec<&str> = Vec::new();
    for c in &call.conns {
        if c.state != ConnState::Fail && !viewers.contains(&c.device.as_str()) {
            viewers.push(&c.device);
        }
    }
    for e in extra {
        if !viewers.contains(e) {
            viewers.push(e);
        }
    }
    for (i, v) in viewers.into_iter().enumerate() {
        let st = call.state_of(v).map(ConnState::lcs);
        notes.push(Note {
            device: v.to_string(),
            call: Some(call.id),
            event: f(v, st),
            primary: i == 0,
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    LoggedOff,
    NotReady,
    Ready,
    Busy,
    WorkingAfterCall,
}

impl AgentMode {
    fn pending(self) -> PendingAgentState {
        match self {
            AgentMode::NotReady => PendingAgentState::NotReady,
            AgentMode::Ready => PendingAgentState::Ready,
            AgentMode::WorkingAfterCall => PendingAgentState::WorkingAfterCall,
            AgentMode::LoggedOff | AgentMode::Busy => PendingAgentState::Null,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub id: String,
    #[serde(skip)]
    pub password: String,
    pub groups: Vec<String>,
    pub mode: AgentMode,
    pub station: Option<String>,
    pub group: Option<String>,
    pub pending: Option<AgentMode>,
    /// The ACD call delivered to (or answered by) this agent.
    pub acd_call: Option<CallNo>,
    #[serde(skip)]
    idle_since: Instant,
    #[serde(skip)]
    acw_token: u64,
}

/// What the switch does later by itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// An external number answers.
    FarAnswer {
        call: CallNo,
        device: String,
    },
    /// A device answers (auto-answer, load mode).
    Answer {
        call: CallNo,
        device: String,
    },
    /// A device hangs up (load mode).
    Hangup {
        call: CallNo,
        device: String,
    },
    /// A device holds its call for a while, then retrieves it (load mode).
    Hold {
        call: CallNo,
        device: String,
        ms: u64,
    },
    Retrieve {
        call: CallNo,
        device: String,
    },
    /// Automatic after-call work ends.
    AcwEnd {
        agent: String,
        token: u64,
    },
    /// Load mode: the next inbound call.
    LoadTick {
        generation: u64,
    },
}

/// Load mode parameters (control port `load`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadSpec {
    /// New inbound calls per second.
    pub calls_per_s: f64,
    /// Where the calls go (a group, a station or a routed DNIS).
    pub dnis: String,
    /// Ring time range before the agent answers, ms.
    pub ring_ms: [u64; 2],
    /// Talk time range, ms.
    pub talk_ms: [u64; 2],
    /// Hold time range, ms, and how many calls are held once.
    pub hold_ms: [u64; 2],
    pub hold_percent: u32,
    /// Stop after this many calls (0: until `load` with calls_per_s 0).
    pub max_calls: u64,
    /// Log on every agent of the group (at free stations) and make them ready first.
    pub login_agents: bool,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            calls_per_s: 1.0,
            dnis: "8000".into(),
            ring_ms: [500, 3000],
            talk_ms: [2000, 10000],
            hold_ms: [1000, 3000],
            hold_percent: 20,
            max_calls: 0,
            login_agents: true,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadStats {
    pub offered: u64,
    pub rejected: u64,
    pub answered: u64,
}

struct Load {
    spec: LoadSpec,
    generation: u64,
    stats: LoadStats,
    /// The calls it started that may still be up (cleared when load mode stops).
    started: BTreeSet<CallNo>,
}

/// The longest time a load range may name (a day): larger values would overflow the clock.
pub const MAX_LOAD_MS: u64 = 86_400_000;

impl LoadSpec {
    /// Every field within its range; the error names the field and the range.
    pub fn check(&self) -> Result<(), String> {
        let r = self.calls_per_s;
        if !(r == 0.0 || (0.001..=1000.0).contains(&r)) {
            return Err(format!(
                "calls_per_s must be 0 (stop) or between 0.001 and 1000, not {r}"
            ));
        }
        for (name, [lo, hi]) in [
            ("ring_ms", self.ring_ms),
            ("talk_ms", self.talk_ms),
            ("hold_ms", self.hold_ms),
        ] {
            if lo > MAX_LOAD_MS || hi > MAX_LOAD_MS {
                return Err(format!(
                    "{name} must be two numbers of milliseconds up to {MAX_LOAD_MS} (a day), not [{lo}, {hi}]"
                ));
            }
        }
        if self.hold_percent > 100 {
            return Err(format!(
                "hold_percent must be 0 to 100, not {}",
                self.hold_percent
            ));
        }
        Ok(())
    }
}

/// A resolved connection argument: the call and (when given) the device.
pub type ConnRef = (CallNo, Option<String>);

pub struct Model {
    stations: BTreeSet<String>,
    groups: BTreeMap<String, VecDeque<CallNo>>,
    group_agents: BTreeMap<String, Vec<String>>,
    pub agents: BTreeMap<String, Agent>,
    pub calls: BTreeMap<CallNo, Call>,
    next_call: CallNo,
    trunk: String,
    trunk_channels: usize,
    external_prefix: String,
    routes: BTreeMap<String, String>,
    far_end: FarEnd,
    far_rules: BTreeMap<String, FarEnd>,
    forced_busy: BTreeSet<String>,
    far_ring: Duration,
    acw: Duration,
    auto_answer: Duration,
    resulting: ResultingCallId,
    notes: Vec<Note>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    load: Option<Load>,
    rng: u64,
}

impl Model {
    /// The model of a validated configuration (see [`SimConfig::validate`]).
    pub fn new(cfg: &SimConfig) -> Model {
        let now = Instant::now();
        let stations: BTreeSet<String> = expand(&cfg.stations, "stations")
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut agents = BTreeMap::new();
        let mut group_agents = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for g in &cfg.groups {
            let ids = expand(&g.agents, "groups.agents").unwrap_or_default();
            for id in &ids {
                let a = agents.entry(id.clone()).or_insert_with(|| Agent {
                    id: id.clone(),
                    password: cfg.agent_passwords.get(id).cloned().unwrap_or(id.clone()),
                    groups: Vec::new(),
                    mode: AgentMode::LoggedOff,
                    station: None,
                    group: None,
                    pending: None,
                    acd_call: None,
                    idle_since: now,
                    acw_token: 0,
                });
                a.groups.push(g.number.clone());
            }
            group_agents.insert(g.number.clone(), ids);
            groups.insert(g.number.clone(), VecDeque::new());
        }
        Model {
            stations,
            groups,
            group_agents,
            agents,
            calls: BTreeMap::new(),
            next_call: 1,
            trunk: cfg.trunk.clone(),
            trunk_channels: cfg.trunk_channels,
            external_prefix: cfg.external_prefix.clone(),
            routes: cfg.routes.clone(),
            far_end: cfg.far_end,
            far_rules: BTreeMap::new(),
            forced_busy: BTreeSet::new(),
            far_ring: Duration::from_millis(cfg.far_end_ring_ms),
            acw: Duration::from_millis(cfg.after_call_work_ms),
            auto_answer: Duration::from_millis(cfg.auto_answer_ms),
            resulting: cfg.resulting_call_id,
            notes: Vec::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            load: None,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    // ---- queries -------------------------------------------------------------------------

    /// The queued events, oldest first.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    pub fn stations(&self) -> impl Iterator<Item = &String> {
        self.stations.iter()
    }
    pub fn group_numbers(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }
    pub fn group_members(&self, g: &str) -> &[String] {
        self.group_agents
            .get(g)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }
    pub fn trunk(&self) -> &str {
        &self.trunk
    }
    pub fn external_prefix(&self) -> &str {
        &self.external_prefix
    }
    pub fn routes(&self) -> &BTreeMap<String, String> {
        &self.routes
    }

    pub fn is_external(&self, n: &str) -> bool {
        n.starts_with(&self.external_prefix)
            && (3..=20).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_digit())
    }

    /// What a number is inside the switch.
    pub fn kind(&self, n: &str) -> Option<DeviceKind> {
        if self.stations.contains(n) {
            Some(DeviceKind::Station)
        } else if self.groups.contains_key(n) {
            Some(DeviceKind::Group)
        } else if self.is_external(n) {
            Some(DeviceKind::External)
        } else {
            None
        }
    }

    /// Devices a monitor can be started on: stations and groups.
    pub fn monitorable(&self, n: &str) -> bool {
        matches!(
            self.kind(n),
            Some(DeviceKind::Station) | Some(DeviceKind::Group)
        )
    }

    /// Where a dialled number goes: (kind, device).
    fn route(&self, dialled: &str) -> Option<(DeviceKind, String)> {
        if let Some(t) = self.routes.get(dialled) {
            return self.kind(t).map(|k| (k, t.clone()));
        }
        self.kind(dialled).map(|k| (k, dialled.to_string()))
    }

    fn busy(&self, device: &str) -> bool {
        self.forced_busy.contains(device)
            || self.calls.values().any(|c| {
                c.conns
                    .iter()
                    .any(|x| x.device == device && x.state != ConnState::Fail)
            })
    }

    fn trunk_in_use(&self) -> usize {
        self.calls
            .values()
            .filter(|c| {
                c.conns
                    .iter()
                    .any(|x| self.is_external(&x.device) && x.state != ConnState::Fail)
            })
            .count()
    }

    /// A connection argument: the call must exist, the device (when given) must be a
    /// static dialling number with a connection in that call.
    pub fn resolve(&self, c: &ConnectionId) -> Result<ConnRef, UniversalFailure> {
        let call = c
            .call_id()
            .ok_or_else(|| failure("operation", "invalidConnectionID"))?;
        let no = match call.len() {
            2 => u16::from_be_bytes([call[0], call[1]]),
            _ => return Err(failure("operation", "invalidCallID")),
        };
        let Some(k) = self.calls.get(&no) else {
            return Err(failure("operation", "invalidCallID"));
        };
        match &c.device {
            None => Ok((no, None)),
            Some(_) => {
                let d = c
                    .device_number()
                    .ok_or_else(|| failure("operation", "invalidConnectionID"))?;
                if !k.has(d) {
                    return Err(failure("operation", "invalidConnectionID"));
                }
                Ok((no, Some(d.to_string())))
            }
        }
    }

    /// A connection argument that must name a device.
    pub fn resolve_full(&self, c: &ConnectionId) -> Result<(CallNo, String), UniversalFailure> {
        match self.resolve(c)? {
            (n, Some(d)) => Ok((n, d)),
            (_, None) => Err(failure("operation", "invalidConnectionID")),
        }
    }

    fn state(&self, call: CallNo, device: &str) -> Option<ConnState> {
        self.calls.get(&call).and_then(|c| c.state_of(device))
    }

    /// SnapshotDevice: the device's calls, their state in `form` (`reference` gives the
    /// compound form: the segments carry the same entries).
    pub fn snapshot(&self, device: &str, form: SnapshotForm) -> Vec<SnapshotDeviceResponseInfo> {
        self.calls
            .values()
            .filter_map(|c| {
                // a busy target's failed connection: the device was never told of the call
                // (no event reached it), so it is not one of its calls
                let st = c.state_of(device).filter(|s| *s != ConnState::Fail)?;
                let others = c.conns.iter().filter(|x| x.device != device);
                let state = match form {
                    SnapshotForm::Compound | SnapshotForm::CrossRef => {
                        let mut l: Vec<_> = others.map(|x| x.state.lcs()).collect();
                        l.push(st.lcs());
                        SnapshotDeviceResponseInfo::compound(&l)
                    }
                    SnapshotForm::Simple => {
                        let other = others.map(|x| x.state).next();
                        match simple_state(other, st) {
                            Some(s) => SnapshotDeviceResponseInfo::simple(s),
                            None => SnapshotDeviceResponseInfo::unknown(),
                        }
                    }
                    SnapshotForm::Unknown => SnapshotDeviceResponseInfo::unknown(),
                };
                let mut i = SnapshotDeviceResponseInfo::new(c.conn(device), state);
                i.endpoint_device = Some(Party::dialing(device));
                Some(i)
            })
            .collect()
    }

    /// SnapshotCall: every device on the call with its connection, and the call's parties.
    pub fn snapshot_call(&self, call: CallNo) -> Result<SnapshotCallResult, UniversalFailure> {
        let c = self
            .calls
            .get(&call)
            .ok_or_else(|| failure("operation", "invalidCallID"))?;
        let rows = c
            .conns
            .iter()
            .map(|x| {
                let mut r = SnapshotCallResponseInfo::new(Party::dialing(&x.device));
                r.call_identifier = Some(c.conn(&x.device));
                r.local_connection_state = Some(x.state.lcs());
                r
            })
            .collect();
        let mut r = SnapshotCallResult::new(SnapshotCallInfo::Data(rows));
        r.calling_device = Some(party(&c.calling));
        r.called_device = Some(party(&c.called));
        r.correlator_data = c.correlator.clone();
        Ok(r)
    }

    /// GetAgentState: the agent logged on at a station (or an empty loggedOn=false entry).
    pub fn agent_state_list(&self, device: &str) -> Vec<AgentStateEntry> {
        match self.agent_at(device) {
            Some(a) => {
                let mut e = AgentStateEntry::new(true);
                e.agent_id = Some(Bytes::from(a.id.clone().into_bytes()));
                let mut info = AgentInfo::new(match a.mode {
                    AgentMode::LoggedOff => AgentState::Null,
                    AgentMode::NotReady => AgentState::NotReady,
                    AgentMode::Ready => AgentState::Ready,
                    AgentMode::Busy => AgentState::Busy,
                    AgentMode::WorkingAfterCall => AgentState::WorkingAfterCall,
                });
                info.acd_group = a.group.as_deref().map(DeviceId::dialing);
                info.pending_agent_state = a.pending.map(AgentMode::pending);
                e.agent_info = Some(vec![info]);
                vec![e]
            }
            None => vec![AgentStateEntry::new(false)],
        }
    }

    pub fn agent_at(&self, station: &str) -> Option<&Agent> {
        self.agents
            .values()
            .find(|a| a.station.as_deref() == Some(station))
    }

    // ---- timers --------------------------------------------------------------------------

    fn after(&mut self, now: Instant, d: Duration, t: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((now + d, self.timer_seq, t)));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Run every timer due at `now`.
    pub fn fire(&mut self, now: Instant) {
        while let Some(Reverse((t, _, _))) = self.timers.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, _, timer))) = self.timers.pop() else {
                break;
            };
            self.run_timer(timer, now);
        }
    }

    fn run_timer(&mut self, t: Timer, now: Instant) {
        // a timer whose call or connection has moved on does nothing
        match t {
            Timer::FarAnswer { call, device } | Timer::Answer { call, device } => {
                if self.state(call, &device) == Some(ConnState::Alerting) {
                    let _ = self.answer(call, &device, now);
                }
            }
            Timer::Hangup { call, device } => {
                if self.state(call, &device).is_some() {
                    let _ = self.clear_connection(call, &device, EventCause::NORMAL_CLEARING, now);
                }
            }
            Timer::Hold { call, device, ms } => {
                if self.state(call, &device) == Some(ConnState::Connected)
                    && self.hold(call, &device, EventCause::NORMAL).is_ok()
                {
                    self.after(
                        now,
                        Duration::from_millis(ms),
                        Timer::Retrieve { call, device },
                    );
                }
            }
            Timer::Retrieve { call, device } => {
                if self.state(call, &device) == Some(ConnState::Hold) {
                    let _ = self.retrieve(call, &device);
                }
            }
            Timer::AcwEnd { agent, token } => {
                let due = self
                    .agents
                    .get(&agent)
                    .is_some_and(|a| a.acw_token == token && a.mode == AgentMode::WorkingAfterCall);
                if due {
                    self.set_mode(&agent, AgentMode::Ready, None, now);
                }
            }
            Timer::LoadTick { generation } => self.load_tick(generation, now),
        }
    }

    // ---- calls ---------------------------------------------------------------------------

    fn new_call(&mut self, calling: &str, called: &str, now: Instant) -> Option<CallNo> {
        if self.calls.len() >= usize::from(u16::MAX) - 1 {
            return None;
        }
        loop {
            let id = self.next_call;
            self.next_call = self.next_call.checked_add(1).unwrap_or(1);
            if id != 0 && !self.calls.contains_key(&id) {
                self.calls.insert(
                    id,
                    Call {
                        id,
                        conns: Vec::new(),
                        calling: calling.to_string(),
                        called: called.to_string(),
                        user_data: None,
                        correlator: None,
                        group: None,
                        redirected_from: None,
                        started: now,
                    },
                );
                return Some(id);
            }
        }
    }

    /// MakeCall (and a phone dialling by itself, `manual`): the new call's connection at
    /// the calling device.
    #[allow(clippy::too_many_arguments)]
    pub fn make_call(
        &mut self,
        calling: &str,
        called: &str,
        correlator: Option<Bytes>,
        user_data: Option<Bytes>,
        manual: bool,
        now: Instant,
    ) -> Result<ConnectionId, UniversalFailure> {
        if self.kind(calling) != Some(DeviceKind::Station) {
            return Err(failure("operation", "invalidCallingDeviceID"));
        }
        let (kind, target) = self
            .route(called)
            .ok_or_else(|| failure("operation", "invalidCalledDeviceID"))?;
        if target == calling {
            return Err(failure("operation", "invalidCalledDeviceID"));
        }
        if self.busy(calling) {
            return Err(failure("stateIncompatibility", "invalidCallingDeviceState"));
        }
        if kind == DeviceKind::External && self.trunk_in_use() >= self.trunk_channels {
            return Err(failure(
                "subscribedResourceAvailability",
                "trunkLimitExceeded",
            ));
        }
        let id = self
            .new_call(calling, called, now)
            .ok_or_else(|| failure("systemResourceAvailability", "resourceLimitExceeded"))?;
        let cause = if manual {
            EventCause::NEW_CALL
        } else {
            EventCause::MAKE_CALL
        };
        let call = self.calls.get_mut(&id).expect("just inserted");
        call.user_data = user_data;
        call.correlator = correlator;
        self.originate(id, calling, cause);
        self.offer(id, kind, &target, cause, now);
        Ok(ConnectionId::dialing(call_bytes(id), calling))
    }

    /// serviceInitiated then originated at `device` (its connection: initiated, then
    /// connected).
    fn originate(&mut self, id: CallNo, device: &str, cause: EventCause) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.conns.push(Conn {
            device: device.to_string(),
            state: ConnState::Initiated,
        });
        emit(&mut self.notes, call, &[], |_, st| {
            let mut e = ServiceInitiatedEvent::new(call.conn(device), party(device), cause);
            e.local_connection_info = st;
            e.correlator_data = call.correlator.clone();
            e.into()
        });
        call.set(device, ConnState::Connected);
        emit(&mut self.notes, call, &[], |_, st| {
            let mut e =
                OriginatedEvent::new(call.conn(device), party(device), party(&call.called), cause);
            e.local_connection_info = st;
            e.correlator_data = call.correlator.clone();
            e.into()
        });
    }

    /// The call arrives at `target`: queued at a group, alerting at a free station or
    /// external number, failed (busy) otherwise.
    fn offer(
        &mut self,
        id: CallNo,
        kind: DeviceKind,
        target: &str,
        cause: EventCause,
        now: Instant,
    ) {
        match kind {
            DeviceKind::Group => {
                let q = self.groups.get_mut(target).map(|q| {
                    q.push_back(id);
                    q.len()
                });
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                call.group = Some(target.to_string());
                call.conns.push(Conn {
                    device: target.to_string(),
                    state: ConnState::Queued,
                });
                emit(&mut self.notes, call, &[], |_, st| {
                    let mut e = QueuedEvent::new(
                        call.conn(target),
                        party(target),
                        party(&call.calling),
                        party(&call.called),
                        call.redirection(),
                        EventCause::from_name("enteringDistribution").unwrap_or(cause),
                    );
                    e.local_connection_info = st;
                    e.correlator_data = call.correlator.clone();
                    e.user_data = call.user_data.clone();
                    e.number_queued = q.and_then(|n| i64::try_from(n).ok());
                    e.calls_in_front = q.and_then(|n| i64::try_from(n.saturating_sub(1)).ok());
                    e.into()
                });
                self.distribute(target, now);
            }
            DeviceKind::Station | DeviceKind::External => {
                let far = if kind == DeviceKind::External {
                    self.far_rules.get(target).copied().unwrap_or(self.far_end)
                } else {
                    FarEnd::Ring
                };
                let fails = self.busy(target) || far == FarEnd::Busy;
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                if fails {
                    call.conns.push(Conn {
                        device: target.to_string(),
                        state: ConnState::Fail,
                    });
                    emit(&mut self.notes, call, &[], |_, st| {
                        let mut e = FailedEvent::new(
                            call.conn(target),
                            party(target),
                            party(&call.calling),
                            party(&call.called),
                            call.redirection(),
                            EventCause::BUSY,
                        );
                        e.local_connection_info = st;
                        e.correlator_data = call.correlator.clone();
                        e.user_data = call.user_data.clone();
                        e.into()
                    });
                    return;
                }
                call.conns.push(Conn {
                    device: target.to_string(),
                    state: ConnState::Alerting,
                });
                emit(&mut self.notes, call, &[], |_, st| {
                    let mut e = DeliveredEvent::new(
                        call.conn(target),
                        party(target),
                        party(&call.calling),
                        party(&call.called),
                        call.redirection(),
                        cause,
                    );
                    e.local_connection_info = st;
                    e.correlator_data = call.correlator.clone();
                    e.user_data = call.user_data.clone();
                    e.into()
                });
                if kind == DeviceKind::External && far == FarEnd::Answer {
                    let t = Timer::FarAnswer {
                        call: id,
                        device: target.to_string(),
                    };
                    self.after(now, self.far_ring, t);
                } else if kind == DeviceKind::Station
                    && self.load.is_some()
                    && self
                        .agent_at(target)
                        .is_some_and(|a| a.acd_call == Some(id))
                {
                    self.script_load_call(id, target, now);
                } else if kind == DeviceKind::Station && !self.auto_answer.is_zero() {
                    let t = Timer::Answer {
                        call: id,
                        device: target.to_string(),
                    };
                    self.after(now, self.auto_answer, t);
                }
            }
        }
    }

    /// Hand queued calls of `group` to ready agents (longest idle first).
    fn distribute(&mut self, group: &str, now: Instant) {
        loop {
            let Some(&id) = self.groups.get(group).and_then(|q| q.front()) else {
                return;
            };
            let agent = self
                .agents
                .values()
                .filter(|a| {
                    a.mode == AgentMode::Ready
                        && a.acd_call.is_none()
                        && a.group.as_deref() == Some(group)
                        && a.station.as_deref().is_some_and(|s| !self.busy(s))
                })
                .min_by_key(|a| a.idle_since)
                .map(|a| (a.id.clone(), a.station.clone().unwrap_or_default()));
            let Some((agent, station)) = agent else {
                return;
            };
            if let Some(q) = self.groups.get_mut(group) {
                q.pop_front();
            }
            if let Some(a) = self.agents.get_mut(&agent) {
                a.acd_call = Some(id);
            }
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let distributed = EventCause::from_name("distributed").unwrap_or(EventCause::NORMAL);
            emit(&mut self.notes, call, &[], |_, st| {
                let mut e = DivertedEvent::new(
                    call.conn(group),
                    party(group),
                    party(&station),
                    call.redirection(),
                    distributed,
                );
                e.calling_device = Some(party(&call.calling));
                e.called_device = Some(party(&call.called));
                e.local_connection_info = st.map(|_| LocalConnectionState::Null);
                e.correlator_data = call.correlator.clone();
                e.user_data = call.user_data.clone();
                e.into()
            });
            call.remove(group);
            call.redirected_from = Some(group.to_string());
            self.offer(id, DeviceKind::Station, &station, distributed, now);
        }
    }

    /// AnswerCall (or the device answering by itself).
    pub fn answer(
        &mut self,
        id: CallNo,
        device: &str,
        now: Instant,
    ) -> Result<(), UniversalFailure> {
        if self.state(id, device) != Some(ConnState::Alerting) {
            return Err(failure("stateIncompatibility", "noCallToAnswer"));
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(failure("operation", "invalidCallID"));
        };
        call.set(device, ConnState::Connected);
        emit(&mut self.notes, call, &[], |_, st| {
            let mut e = EstablishedEvent::new(
                call.conn(device),
                party(device),
                party(&call.calling),
                party(&call.called),
                call.redirection(),
                EventCause::NORMAL,
            );
            e.local_connection_info = st;
            e.correlator_data = call.correlator.clone();
            e.user_data = call.user_data.clone();
            e.into()
        });
        let group = call.group.clone();
        // an agent answering its ACD call becomes busy
        let agent = self
            .agents
            .values()
            .find(|a| a.station.as_deref() == Some(device) && a.acd_call == Some(id))
            .map(|a| a.id.clone());
        if let Some(agent) = agent {
            self.set_mode(&agent, AgentMode::Busy, None, now);
        }
        if let Some(l) = &mut self.load {
            if group.is_some() {
                l.stats.answered += 1;
            }
        }
        Ok(())
    }

    /// HoldCall.
    pub fn hold(
        &mut self,
        id: CallNo,
        device: &str,
        cause: EventCause,
    ) -> Result<(), UniversalFailure> {
        if self.state(id, device) != Some(ConnState::Connected) {
            return Err(failure("stateIncompatibility", "invalidConnectionState"));
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(failure("operation", "invalidCallID"));
        };
        call.set(device, ConnState::Hold);
        emit(&mut self.notes, call, &[], |_, st| {
            let mut e = HeldEvent::new(call.conn(device), party(device), cause);
            e.local_connection_info = st;
            e.correlator_data = call.correlator.clone();
            e.into()
        });
        Ok(())
    }

    fn has_connected(&self, device: &str, except: CallNo) -> bool {
        self.calls
            .values()
            .any(|c| c.id != except && c.state_of(device) == Some(ConnState::Connected))
    }

    /// RetrieveCall.
    pub fn retrieve(&mut self, id: CallNo, device: &str) -> Result<(), UniversalFailure> {
        if self.state(id, device) != Some(ConnState::Hold) {
            return Err(failure("stateIncompatibility", "noHeldCall"));
        }
        if self.has_connected(device, id) {
            return Err(failure("stateIncompatibility", "connectedCallExists"));
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(failure("operation", "invalidCallID"));
        };
        call.set(device, ConnState::Connected);
        emit(&mut self.notes, call, &[], |_, st| {
            let mut e = RetrievedEvent::new(call.conn(device), party(device), EventCause::NORMAL);
            e.local_connection_info = st;
            e.correlator_data = call.correlator.clone();
            e.into()
        });
        Ok(())
    }

    /// ClearConnection (or a device hanging up).
    pub fn clear_connection(
        &mut self,
        id: CallNo,
        device: &str,
        cause: EventCause,
        now: Instant,
    ) -> Result<(), UniversalFailure> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(failure("operation", "invalidCallID"));
        };
        if !call.has(device) {
            return Err(failure("operation", "invalidConnectionID"));
        }
        emit(&mut self.notes, call, &[], |v, st| {
            let mut e = ConnectionClearedEvent::new(call.conn(device), party(device), cause);
            e.local_connection_info = if v == device {
                Some(LocalConnectionState::Null)
            } else {
                st
            };
            e.correlator_data = call.correlator.clone();
            e.user_data = call.user_data.clone();
            e.into()
        });
        call.remove(device);
        if let Some(q) = self.groups.get_mut(device) {
            q.retain(|c| *c != id);
        }
        self.left_call(id, device, now);
        let live = self.calls.get(&id).map_or(0, Call::live);
        if live < 2 {
            self.end_call(id, &[device], EventCause::NORMAL_CLEARING, now);
        }
        Ok(())
    }

    /// ClearCall.
    pub fn clear_call(&mut self, id: CallNo, now: Instant) -> Result<(), UniversalFailure> {
        if !self.calls.contains_key(&id) {
            return Err(failure("operation", "invalidCallID"));
        }
        self.end_call(id, &[], EventCause::NORMAL_CLEARING, now);
        Ok(())
    }

    /// The call is over: CallCleared to its devices (and `extra`), then it is gone.
    fn end_call(&mut self, id: CallNo, extra: &[&str], cause: EventCause, now: Instant) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        emit(&mut self.notes, &call, extra, |_, _| {
            let mut e = CallClearedEvent::new(ConnectionId::call_only(call_bytes(id)), cause);
            e.correlator_data = call.correlator.clone();
            e.user_data = call.user_data.clone();
            e.into()
        });
        for q in self.groups.values_mut() {
            q.retain(|c| *c != id);
        }
        for c in &call.conns {
            self.left_call(id, &c.device, now);
        }
    }

    /// `device` no longer takes part in call `id`: an agent's ACD call is over.
    fn left_call(&mut self, id: CallNo, device: &str, now: Instant) {
        let agent = self
            .agents
            .values()
            .find(|a| a.station.as_deref() == Some(device) && a.acd_call == Some(id))
            .map(|a| (a.id.clone(), a.mode));
        let Some((agent, mode)) = agent else {
            return;
        };
        let pending = self.agents.get_mut(&agent).and_then(|a| {
            a.acd_call = None;
            a.pending.take()
        });
        if mode != AgentMode::Busy {
            // delivered but never answered: the agent is still in its state; the group may
            // hand it the next call
            if let Some(g) = self.agents.get(&agent).and_then(|a| a.group.clone()) {
                self.distribute(&g, now);
            }
            return;
        }
        match pending {
            Some(m) => self.set_mode(&agent, m, None, now),
            None if !self.acw.is_zero() => {
                self.report_mode(&agent, AgentMode::WorkingAfterCall, None, true, now);
                let token = self.agents.get(&agent).map_or(0, |a| a.acw_token);
                let acw = self.acw;
                self.after(now, acw, Timer::AcwEnd { agent, token });
            }
            None => self.set_mode(&agent, AgentMode::Ready, None, now),
        }
    }

    /// ConsultationCall: hold the existing call, originate a new one to `to`.
    pub fn consult(
        &mut self,
        id: CallNo,
        device: &str,
        to: &str,
        correlator: Option<Bytes>,
        user_data: Option<Bytes>,
        now: Instant,
    ) -> Result<ConnectionId, UniversalFailure> {
        if self.state(id, device) != Some(ConnState::Connected) {
            return Err(failure("stateIncompatibility", "invalidConnectionState"));
        }
        let (kind, target) = self
            .route(to)
            .ok_or_else(|| failure("operation", "invalidCalledDeviceID"))?;
        if target == device {
            return Err(failure("operation", "invalidCalledDeviceID"));
        }
        if kind == DeviceKind::External && self.trunk_in_use() >= self.trunk_channels {
            return Err(failure(
                "subscribedResourceAvailability",
                "trunkLimitExceeded",
            ));
        }
        let new = self
            .new_call(device, to, now)
            .ok_or_else(|| failure("systemResourceAvailability", "resourceLimitExceeded"))?;
        self.hold(id, device, EventCause::CONSULTATION)?;
        if let Some(c) = self.calls.get_mut(&new) {
            c.correlator = correlator;
            c.user_data = user_data;
        }
        self.originate(new, device, EventCause::CONSULTATION);
        self.offer(new, kind, &target, EventCause::CONSULTATION, now);
        Ok(ConnectionId::dialing(call_bytes(new), device))
    }

    /// The id of the call that results from joining `held` and `active`.
    fn resulting_id(&mut self, held: CallNo, active: CallNo, now: Instant) -> CallNo {
        match self.resulting {
            ResultingCallId::Held => held,
            ResultingCallId::Active => active,
            ResultingCallId::New => self.new_call("", "", now).unwrap_or(held),
        }
    }

    /// Join the two calls of `device` into one (transfer: without it; conference: with it).
    /// Returns the new call id and the connection list (new, old, endpoint).
    fn join(
        &mut self,
        held: CallNo,
        active: CallNo,
        device: &str,
        keep_device: bool,
        now: Instant,
    ) -> Result<(CallNo, Vec<ConnectionListEntry>, Call, Call), UniversalFailure> {
        if held == active {
            return Err(failure("operation", "invalidConnectionID"));
        }
        if self.state(held, device) != Some(ConnState::Hold) {
            return Err(failure(
                "stateIncompatibility",
                "invalidHeldConnectionState",
            ));
        }
        match self.state(active, device) {
            Some(ConnState::Connected) => {}
            _ => {
                return Err(failure(
                    "stateIncompatibility",
                    "invalidActiveConnectionState",
                ))
            }
        }
        let r = self.resulting_id(held, active, now);
        let (Some(h), Some(a)) = (self.calls.remove(&held), self.calls.remove(&active)) else {
            return Err(failure("operation", "invalidCallID"));
        };
        let mut conns = Vec::new();
        let mut list = Vec::new();
        for (old, c) in h
            .conns
            .iter()
            .map(|c| (&h, c))
            .chain(a.conns.iter().map(|c| (&a, c)))
        {
            if c.state == ConnState::Fail || (c.device == device && !keep_device) {
                continue;
            }
            if c.device == device && old.id == active {
                continue; // the conferencing device keeps one connection: the held one
            }
            let mut state = c.state;
            if c.device == device {
                state = ConnState::Connected;
            }
            if conns.iter().any(|x: &Conn| x.device == c.device) {
                continue;
            }
            conns.push(Conn {
                device: c.device.clone(),
                state,
            });
            list.push(ConnectionListEntry {
                new_connection: Some(ConnectionId::dialing(call_bytes(r), &c.device)),
                old_connection: Some(old.conn(&c.device)),
                endpoint: Some(Party::dialing(&c.device)),
                ..ConnectionListEntry::default()
            });
        }
        let joined = Call {
            id: r,
            conns,
            calling: h.calling.clone(),
            called: h.called.clone(),
            user_data: h.user_data.clone().or(a.user_data.clone()),
            correlator: h.correlator.clone().or(a.correlator.clone()),
            group: h.group.clone(),
            redirected_from: h.redirected_from.clone(),
            started: h.started,
        };
        // the new id may differ from both old ones (policy `new`): drop the placeholder
        self.calls.remove(&r);
        // agents whose ACD call was one of the old calls now have the resulting call
        for ag in self.agents.values_mut() {
            if ag.acd_call == Some(held) || ag.acd_call == Some(active) {
                ag.acd_call = Some(r);
            }
        }
        for q in self.groups.values_mut() {
            for c in q.iter_mut() {
                if *c == held || *c == active {
                    *c = r;
                }
            }
        }
        self.calls.insert(r, joined);
        Ok((r, list, h, a))
    }

    /// TransferCall: `device` leaves, its two calls become one.
    pub fn transfer(
        &mut self,
        held: CallNo,
        active: CallNo,
        device: &str,
        now: Instant,
    ) -> Result<(CallNo, Vec<ConnectionListEntry>), UniversalFailure> {
        let (r, list, h, a) = self.join(held, active, device, false, now)?;
        let to = a.others(device).into_iter().next().unwrap_or_default();
        let primary = h.conn(device);
        let secondary = a.conn(device);
        let Some(call) = self.calls.get(&r) else {
            return Err(failure("operation", "invalidCallID"));
        };
        emit(&mut self.notes, call, &[device], |v, st| {
            let mut e = TransferredEvent::new(
                primary.clone(),
                party(device),
                party(&to),
                list.clone(),
                EventCause::TRANSFER,
            );
            e.secondary_old_call = Some(secondary.clone());
            e.local_connection_info = if v == device {
                Some(LocalConnectionState::Null)
            } else {
                st
            };
            e.correlator_data = call.correlator.clone();
            e.user_data = call.user_data.clone();
            e.into()
        });
        for old in [&h, &a] {
            let c = old.conn(device);
            let mut e = ConnectionClearedEvent::new(c, party(device), EventCause::TRANSFER);
            e.local_connection_info = Some(LocalConnectionState::Null);
            self.notes.push(Note {
                device: device.to_string(),
                call: Some(old.id),
                event: e.into(),
                primary: true,
            });
        }
        self.left_call(held, device, now);
        self.left_call(active, device, now);
        self.left_call(r, device, now);
        if self.calls.get(&r).map_or(0, Call::live) < 2 {
            self.end_call(r, &[], EventCause::NORMAL_CLEARING, now);
        }
        Ok((r, list))
    }

    /// ConferenceCall: the two calls of `device` become one with every party.
    pub fn conference(
        &mut self,
        held: CallNo,
        active: CallNo,
        device: &str,
        now: Instant,
    ) -> Result<(CallNo, Vec<ConnectionListEntry>), UniversalFailure> {
        let (r, list, h, a) = self.join(held, active, device, true, now)?;
        let added = a.others(device).into_iter().next().unwrap_or_default();
        let primary = h.conn(device);
        let secondary = a.conn(device);
        let Some(call) = self.calls.get(&r) else {
            return Err(failure("operation", "invalidCallID"));
        };
        emit(&mut self.notes, call, &[], |_, st| {
            let mut e = ConferencedEvent::new(
                primary.clone(),
                party(device),
                party(&added),
                list.clone(),
                EventCause::CONFERENCE,
            );
            e.secondary_old_call = Some(secondary.clone());
            e.local_connection_info = st;
            e.correlator_data = call.correlator.clone();
            e.user_data = call.user_data.clone();
            e.into()
        });
        Ok((r, list))
    }

    /// SingleStepTransfer: `device` leaves its call, which goes on to `to`.
    pub fn single_step_transfer(
        &mut self,
        id: CallNo,
        device: &str,
        to: &str,
        now: Instant,
    ) -> Result<ConnectionId, UniversalFailure> {
        if self.state(id, device) != Some(ConnState::Connected) {
            return Err(failure("stateIncompatibility", "invalidConnectionState"));
        }
        let (kind, target) = self
            .route(to)
            .ok_or_else(|| failure("operation", "invalidCalledDeviceID"))?;
        if target == device || self.calls.get(&id).is_some_and(|c| c.has(&target)) {
            return Err(failure("operation", "invalidCalledDeviceID"));
        }
        let r = match self.resulting {
            ResultingCallId::New => self.new_call("", "", now).unwrap_or(id),
            _ => id,
        };
        let Some(mut call) = self.calls.remove(&id) else {
            return Err(failure("operation", "invalidCallID"));
        };
        self.calls.remove(&r);
        let old = call.clone();
        call.id = r;
        call.remove(device);
        let mut list: Vec<ConnectionListEntry> = call
            .conns
            .iter()
            .filter(|c| c.state != ConnState::Fail)
            .map(|c| ConnectionListEntry {
                new_connection: Some(ConnectionId::dialing(call_bytes(r), &c.device)),
                old_connection: Some(old.conn(&c.device)),
                endpoint: Some(Party::dialing(&c.device)),
                ..ConnectionListEntry::default()
            })
            .collect();
        list.push(ConnectionListEntry {
            new_connection: Some(ConnectionId::dialing(call_bytes(r), &target)),
            endpoint: Some(Party::dialing(&target)),
            ..ConnectionListEntry::default()
        });
        call.redirected_from = Some(device.to_string());
        emit(&mut self.notes, &call, &[device], |v, st| {
            let mut e = TransferredEvent::new(
                old.conn(device),
                party(device),
                party(to),
                list.clone(),
                EventCause::SINGLE_STEP_TRANSFER,
            );
            e.local_connection_info = if v == device {
                Some(LocalConnectionState::Null)
            } else {
                st
            };
            e.correlator_data = call.correlator.clone();
            e.user_data = call.user_data.clone();
            e.into()
        });
        let mut e = ConnectionClearedEvent::new(
            old.conn(device),
            party(device),
            EventCause::SINGLE_STEP_TRANSFER,
        );
        e.local_connection_info = Some(LocalConnectionState::Null);
        self.notes.push(Note {
            device: device.to_string(),
            call: Some(id),
            event: e.into(),
            primary: true,
        });
        for ag in self.agents.values_mut() {
            if ag.acd_call == Some(id) && ag.station.as_deref() != Some(device) {
                ag.acd_call = Some(r);
            }
        }
        self.calls.insert(r, call);
        self.left_call(id, device, now);
        if kind == DeviceKind::External && self.trunk_in_use() > self.trunk_channels {
            self.end_call(
                r,
                &[],
                EventCause::from_name("trunksBusy").unwrap_or(EventCause::BUSY),
                now,
            );
        } else {
            self.offer(r, kind, &target, EventCause::SINGLE_STEP_TRANSFER, now);
        }
        Ok(ConnectionId::dialing(call_bytes(r), &target))
    }

    /// AlternateCall: hold the active call, retrieve the held one.
    pub fn alternate(
        &mut self,
        held: CallNo,
        active: CallNo,
        device: &str,
    ) -> Result<(), UniversalFailure> {
        if self.state(held, device) != Some(ConnState::Hold) {
            return Err(failure(
                "stateIncompatibility",
                "invalidHeldConnectionState",
            ));
        }
        if self.state(active, device) != Some(ConnState::Connected) {
            return Err(failure(
                "stateIncompatibility",
                "invalidActiveConnectionState",
            ));
        }
        self.hold(
            active,
            device,
            EventCause::from_name("alternate").unwrap_or(EventCause::NORMAL),
        )?;
        self.retrieve(held, device)
    }

    /// ReconnectCall: clear the active connection, retrieve the held one.
    pub fn reconnect(
        &mut self,
        active: CallNo,
        held: CallNo,
        device: &str,
        now: Instant,
    ) -> Result<(), UniversalFailure> {
        if self.state(held, device) != Some(ConnState::Hold) {
            return Err(failure(
                "stateIncompatibility",
                "invalidHeldConnectionState",
            ));
        }
        if self.state(active, device).is_none() {
            return Err(failure(
                "stateIncompatibility",
                "invalidActiveConnectionState",
            ));
        }
        self.clear_connection(active, device, EventCause::NORMAL_CLEARING, now)?;
        self.retrieve(held, device)
    }

    /// GenerateDigits (DTMF): the digits are "sent" and reported.
    pub fn generate_digits(
        &mut self,
        id: CallNo,
        device: &str,
        digits: &str,
    ) -> Result<(), UniversalFailure> {
        if digits.is_empty()
            || digits.len() > 64
            || !digits
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'A'..=b'D'))
        {
            return Err(failure("operation", "invalidParameterValue"));
        }
        if self.state(id, device) != Some(ConnState::Connected) {
            return Err(failure("stateIncompatibility", "invalidConnectionState"));
        }
        let Some(call) = self.calls.get(&id) else {
            return Err(failure("operation", "invalidCallID"));
        };
        emit(&mut self.notes, call, &[], |_, _| {
            DigitsGeneratedEvent::new(call.conn(device), digits.to_string()).into()
        });
        Ok(())
    }

    // ---- the outside world -----------------------------------------------------------------

    /// An inbound trunk call from `ani` to `dnis` with the IVR's variables.
    pub fn inbound(
        &mut self,
        ani: &str,
        dnis: &str,
        user_data: Option<Bytes>,
        correlator: Option<Bytes>,
        now: Instant,
    ) -> Result<CallNo, String> {
        if !ani.is_empty() && !self.is_external(ani) {
            return Err(format!(
                "ani {ani:?} is not an external number (digits starting with {:?}); use \"dial\" for internal calls",
                self.external_prefix
            ));
        }
        let (kind, target) = self
            .route(dnis)
            .filter(|(k, _)| *k != DeviceKind::External)
            .ok_or_else(|| {
                format!(
                    "dnis {dnis:?} routes nowhere: dial a station, a group or a number in [routes]"
                )
            })?;
        if self.trunk_in_use() >= self.trunk_channels {
            return Err("all trunk channels are in use".into());
        }
        let id = self
            .new_call(ani, dnis, now)
            .ok_or_else(|| "too many calls".to_string())?;
        if let Some(c) = self.calls.get_mut(&id) {
            c.user_data = user_data;
            c.correlator = correlator;
            c.conns.push(Conn {
                device: if ani.is_empty() {
                    self.trunk.clone()
                } else {
                    ani.to_string()
                },
                state: ConnState::Connected,
            });
        }
        self.offer(id, kind, &target, EventCause::NEW_CALL, now);
        Ok(id)
    }

    /// The calls in which `device` has a connection (newest last).
    pub fn calls_of(&self, device: &str) -> Vec<CallNo> {
        self.calls
            .values()
            .filter(|c| c.has(device))
            .map(|c| c.id)
            .collect()
    }

    /// Pick `device`'s call: the one given, else its only (or newest) call.
    pub fn pick(&self, device: &str, call: Option<CallNo>) -> Result<CallNo, String> {
        match call {
            Some(c) if self.state(c, device).is_some() => Ok(c),
            Some(c) => Err(format!("device {device} has no connection in call {c:04x}")),
            None => self
                .calls_of(device)
                .last()
                .copied()
                .ok_or_else(|| format!("device {device} has no call")),
        }
    }

    /// How an external number behaves from now on (`None`: the default again).
    pub fn set_far_end(&mut self, number: &str, b: Option<FarEnd>) {
        match b {
            Some(b) => {
                self.far_rules.insert(number.to_string(), b);
            }
            None => {
                self.far_rules.remove(number);
            }
        }
    }

    /// Make a device busy (or free) for new calls whatever its calls.
    pub fn set_forced_busy(&mut self, device: &str, on: bool) {
        if on {
            self.forced_busy.insert(device.to_string());
        } else {
            self.forced_busy.remove(device);
        }
    }

    /// Every call and agent is gone (switch restart); no events.
    pub fn reset(&mut self) {
        self.calls.clear();
        for q in self.groups.values_mut() {
            q.clear();
        }
        for a in self.agents.values_mut() {
            a.mode = AgentMode::LoggedOff;
            a.station = None;
            a.group = None;
            a.pending = None;
            a.acd_call = None;
        }
        self.timers.clear();
        self.load = None;
    }

    // ---- agents --------------------------------------------------------------------------

    /// Change an agent's state and report it to the station and the group.
    fn set_mode(
        &mut self,
        agent: &str,
        mode: AgentMode,
        reason: Option<CommonArguments>,
        now: Instant,
    ) {
        self.report_mode(agent, mode, reason, false, now)
    }

    /// [`Model::set_mode`]; `acw_ends_by_itself`: automatic after-call work, which the
    /// event announces with pendingAgentState ready.
    fn report_mode(
        &mut self,
        agent: &str,
        mode: AgentMode,
        reason: Option<CommonArguments>,
        acw_ends_by_itself: bool,
        now: Instant,
    ) {
        let Some(a) = self.agents.get_mut(agent) else {
            return;
        };
        let was = a.mode;
        a.mode = mode;
        if mode == AgentMode::Ready || mode == AgentMode::NotReady {
            a.idle_since = now;
        }
        if mode == AgentMode::WorkingAfterCall {
            a.acw_token += 1;
        }
        let (Some(station), group) = (a.station.clone(), a.group.clone()) else {
            return;
        };
        let id = Bytes::from(a.id.clone().into_bytes());
        let dev = Party::dialing(&station);
        let grp = group.as_deref().map(DeviceId::dialing);
        // the agent events share agentDevice, agentID and acdGroup
        macro_rules! agent_event {
            ($t:ident $(, $field:ident = $v:expr)*) => {{
                let mut e = $t::new(dev);
                e.agent_id = Some(id);
                e.acd_group = grp;
                $(e.$field = $v;)*
                Event::from(e)
            }};
        }
        let event = match mode {
            AgentMode::LoggedOff => agent_event!(AgentLoggedOffEvent, extensions = reason),
            AgentMode::NotReady if was == AgentMode::LoggedOff => {
                agent_event!(AgentLoggedOnEvent)
            }
            AgentMode::NotReady => agent_event!(AgentNotReadyEvent, extensions = reason),
            AgentMode::Ready => agent_event!(AgentReadyEvent, extensions = reason),
            AgentMode::Busy => agent_event!(AgentBusyEvent),
            AgentMode::WorkingAfterCall => agent_event!(
                AgentWorkingAfterCallEvent,
                pending_agent_state =
                    acw_ends_by_itself.then_some(WorkingAfterCallPendingState::Ready),
                extensions = reason
            ),
        };
        let mut to = vec![station.clone()];
        if let Some(g) = &group {
            to.push(g.clone());
        }
        for d in to {
            self.notes.push(Note {
                device: d,
                call: None,
                event: event.clone(),
                primary: true,
            });
        }
        if mode == AgentMode::LoggedOff {
            if let Some(a) = self.agents.get_mut(agent) {
                a.station = None;
                a.group = None;
            }
        }
        if mode == AgentMode::Ready {
            if let Some(g) = group {
                self.distribute(&g, now);
            }
        }
    }

    /// SetAgentState. Returns the pending state when the change waits for the agent's
    /// ACD call to end.
    #[allow(clippy::too_many_arguments)]
    pub fn set_agent_state(
        &mut self,
        station: &str,
        req: &str,
        agent_id: Option<&str>,
        password: Option<&str>,
        group: Option<&str>,
        reason: Option<CommonArguments>,
        now: Instant,
    ) -> Result<Option<PendingAgentState>, UniversalFailure> {
        if self.kind(station) != Some(DeviceKind::Station) {
            return Err(failure("operation", "invalidDeviceID"));
        }
        let current = self.agent_at(station).map(|a| a.id.clone());
        if req == "loggedOn" {
            let id = agent_id
                .ok_or_else(|| failure("operation", "atLeastOneConditionalParameterNotProvided"))?;
            let Some(a) = self.agents.get(id) else {
                return Err(failure("operation", "invalidAgentIdentifier"));
            };
            if password != Some(a.password.as_str()) {
                return Err(failure("operation", "invalidAgentPassword"));
            }
            let g = match group {
                Some(g) if a.groups.iter().any(|x| x == g) => g.to_string(),
                Some(_) => return Err(failure("operation", "invalidAgentGroup")),
                None => a.groups.first().cloned().unwrap_or_default(),
            };
            if a.mode != AgentMode::LoggedOff || current.is_some() {
                return Err(failure("operation", "invalidAgentState"));
            }
            if let Some(a) = self.agents.get_mut(id) {
                a.station = Some(station.to_string());
                a.group = Some(g);
            }
            self.set_mode(id, AgentMode::NotReady, None, now);
            return Ok(None);
        }
        let Some(cur) = current else {
            return Err(failure("operation", "invalidAgentIdentifier"));
        };
        if agent_id.is_some_and(|x| x != cur) {
            return Err(failure("operation", "invalidAgentIdentifier"));
        }
        let mode = match req {
            "loggedOff" => AgentMode::LoggedOff,
            "notReady" => AgentMode::NotReady,
            "ready" => AgentMode::Ready,
            "workingAfterCall" => AgentMode::WorkingAfterCall,
            _ => return Err(failure("operation", "invalidAgentState")),
        };
        let Some(a) = self.agents.get_mut(&cur) else {
            return Err(failure("operation", "invalidAgentIdentifier"));
        };
        if a.mode == AgentMode::Busy {
            // ready is where the agent goes after the call anyway (after automatic
            // after-call work, when configured): it cancels a pending change
            if mode == AgentMode::Ready {
                a.pending = None;
                return Ok(None);
            }
            a.pending = Some(mode);
            return Ok(Some(mode.pending()));
        }
        a.pending = None;
        self.set_mode(&cur, mode, reason, now);
        Ok(None)
    }

    // ---- load mode ------------------------------------------------------------------------

    fn rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, r: [u64; 2]) -> Duration {
        let (lo, hi) = (r[0].min(r[1]), r[0].max(r[1]));
        Duration::from_millis(lo + self.rand() % (hi - lo + 1))
    }

    /// Start (calls_per_s > 0) or stop load mode.
    /// Stopping clears every call it started that is still up (CallCleared, cause
    /// normalClearing), so no call is left alerting or connected forever. The number of
    /// calls cleared.
    pub fn start_load(&mut self, spec: LoadSpec, now: Instant) -> Result<usize, String> {
        spec.check()?;
        if spec.calls_per_s == 0.0 {
            let Some(l) = self.load.take() else {
                return Ok(0);
            };
            let live: Vec<CallNo> = l
                .started
                .into_iter()
                .filter(|c| self.calls.contains_key(c))
                .collect();
            for c in &live {
                self.end_call(*c, &[], EventCause::NORMAL_CLEARING, now);
            }
            return Ok(live.len());
        }
        let Some((kind, target)) = self.route(&spec.dnis) else {
            return Err(format!("dnis {:?} routes nowhere", spec.dnis));
        };
        if kind == DeviceKind::External {
            return Err("dnis must reach a group or a station".into());
        }
        if spec.login_agents && kind == DeviceKind::Group {
            let members = self.group_members(&target).to_vec();
            let mut free: Vec<String> = self
                .stations
                .iter()
                .filter(|s| self.agent_at(s).is_none())
                .cloned()
                .collect();
            free.reverse();
            for id in members {
                let Some(a) = self.agents.get(&id) else {
                    continue;
                };
                if a.mode == AgentMode::LoggedOff {
                    let Some(st) = free.pop() else { break };
                    let pw = a.password.clone();
                    let _ = self.set_agent_state(
                        &st,
                        "loggedOn",
                        Some(&id),
                        Some(&pw),
                        Some(&target),
                        None,
                        now,
                    );
                }
                if let Some(st) = self.agents.get(&id).and_then(|a| a.station.clone()) {
                    if self
                        .agents
                        .get(&id)
                        .is_some_and(|a| a.mode == AgentMode::NotReady)
                    {
                        let _ = self.set_agent_state(&st, "ready", None, None, None, None, now);
                    }
                }
            }
        }
        let generation = self.load.as_ref().map_or(1, |l| l.generation + 1);
        let started = self.load.take().map(|l| l.started).unwrap_or_default();
        self.load = Some(Load {
            spec,
            generation,
            stats: LoadStats::default(),
            started,
        });
        self.after(now, Duration::ZERO, Timer::LoadTick { generation });
        Ok(0)
    }

    pub fn load_stats(&self) -> Option<(LoadSpec, LoadStats)> {
        self.load
            .as_ref()
            .map(|l| (l.spec.clone(), l.stats.clone()))
    }

    fn load_tick(&mut self, generation: u64, now: Instant) {
        let Some(l) = &self.load else { return };
        if l.generation != generation {
            return;
        }
        let spec = l.spec.clone();
        if spec.max_calls > 0 && l.stats.offered + l.stats.rejected >= spec.max_calls {
            return;
        }
        let ani = format!("0{:09}", self.rand() % 1_000_000_000);
        let ok = self.inbound(&ani, &spec.dnis, None, None, now);
        let calls = &self.calls;
        if let Some(l) = &mut self.load {
            match ok {
                Ok(id) => {
                    l.stats.offered += 1;
                    if l.started.len() > calls.len() {
                        l.started.retain(|c| calls.contains_key(c));
                    }
                    l.started.insert(id);
                }
                Err(_) => l.stats.rejected += 1,
            }
        }
        let gap = Duration::from_secs_f64(1.0 / spec.calls_per_s);
        self.after(now, gap, Timer::LoadTick { generation });
    }

    /// In load mode, schedule what an agent does with an ACD call alerting at it.
    fn script_load_call(&mut self, call: CallNo, device: &str, now: Instant) {
        let Some(l) = &self.load else { return };
        let spec = l.spec.clone();
        let device = device.to_string();
        let ring = self.between(spec.ring_ms);
        let talk = self.between(spec.talk_ms);
        self.after(
            now,
            ring,
            Timer::Answer {
                call,
                device: device.clone(),
            },
        );
        let mut end = ring + talk;
        if (self.rand() % 100) < u64::from(spec.hold_percent) {
            let hold = self.between(spec.hold_ms);
            let at = ring + talk / 2;
            let ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
            self.after(
                now,
                at,
                Timer::Hold {
                    call,
                    device: device.clone(),
                    ms,
                },
            );
            end += hold;
        }
        self.after(now, end, Timer::Hangup { call, device });
    }
}
