//! The tracker's state, its public API and the bookkeeping shared by the event handlers
//! (`calls.rs`, `agents.rs`).

use super::view::{
    set_variable, AgentState, AgentView, CallExtra, CallState, CallType, CallView, EventKind,
};
use bytes::Bytes;
use ctigate_csta_model::events::Event;
use ctigate_csta_model::types::{ConnectionId, EventCause};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many calls are tracked per device unless configured
/// ([`TrackerConfig::max_calls_per_device`], `[[link]] max_calls_per_device`); a further one
/// evicts the oldest (failed calls first) with `call.released` cause `evicted`.
pub const MAX_CALLS_PER_DEVICE: usize = 64;
/// At most this many other devices' agents are kept per device (an ACD group's members).
pub const MAX_MEMBERS_PER_DEVICE: usize = 256;
/// Evictions (beyond [`MAX_CALLS_PER_DEVICE`]) are logged at most this often, with their count.
const EVICTION_WARNING_EVERY: Duration = Duration::from_secs(1);
/// Old callIDs of recent transfers / conferences remembered, so that every device
/// reporting the same Transferred event maps it to the same interaction.
const MAX_MOVED: usize = 256;
/// CallIDs remembered per interaction (it changes on transfer / conference).
const MAX_CALL_IDS: usize = 8;
/// Devices whose visits are counted per interaction (`visit` in the call view).
const MAX_VISITORS: usize = 64;
/// Interactions no monitored device has a view of any more (the call went on elsewhere:
/// diverted to an unmonitored device, transferred away) are kept, at most this many, so a
/// device that sees the call next joins the same interaction.
const MAX_ORPHANS: usize = 1024;
/// ... but only this soon after the last view went: a callID seen later is taken as reused
/// by the switch for a new call (its end was never reported to a monitored device).
const ORPHAN_JOIN_WINDOW: Duration = Duration::from_secs(30);

/// Which numbers are internal (a device of this PBX), when the switch does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalRule {
    /// Numbers of at most this many characters are internal (default 5).
    pub max_len: usize,
    /// Longer numbers starting with one of these are internal too.
    pub prefixes: Vec<String>,
}

impl Default for InternalRule {
    fn default() -> InternalRule {
        InternalRule {
            max_len: 5,
            prefixes: Vec::new(),
        }
    }
}

impl InternalRule {
    /// Whether `number` is internal; an empty number is not.
    pub fn is_internal(&self, number: &str) -> bool {
        if number.is_empty() {
            return false;
        }
        number.chars().count() <= self.max_len
            || self
                .prefixes
                .iter()
                .any(|p| !p.is_empty() && number.starts_with(p.as_str()))
    }
}

/// What the tracker needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerConfig {
    /// The link name (part of every interaction id).
    pub link: String,
    pub internal: InternalRule,
    /// Calls tracked per device; one more evicts the oldest (`call.released`, cause
    /// `evicted`, a warning naming `link.max_calls_per_device`).
    pub max_calls_per_device: usize,
}

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        TrackerConfig {
            link: "pbx".into(),
            internal: InternalRule::default(),
            max_calls_per_device: MAX_CALLS_PER_DEVICE,
        }
    }
}

/// A protocol event for one monitored device.
// Almost every value is a `Call`; boxing the view would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// `call.*`: `event` is the protocol name (`call.offering`, ...), `cause` the ECMA-285
    /// EventCause name (the number when it has no name), `extra` the event's own fields
    /// (`digits` for `call.dtmf`, `party` for `call.party_left`, `duration_ms` for
    /// `call.released`, `from`/`to` for `call.diverted` and `call.transferred`,
    /// `conferencing`/`added` for `call.conferenced`, `replaces`).
    Call {
        event: EventKind,
        device: String,
        call: CallView,
        cause: Option<String>,
        extra: CallExtra,
    },
    /// `agent.state`.
    Agent { device: String, agent: AgentView },
}

impl Out {
    /// The protocol event name.
    pub fn event(&self) -> &'static str {
        self.kind().as_str()
    }
    /// The event kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Out::Call { event, .. } => *event,
            Out::Agent { .. } => EventKind::AgentState,
        }
    }
    /// The monitored device the event is for.
    pub fn device(&self) -> &str {
        match self {
            Out::Call { device, .. } | Out::Agent { device, .. } => device,
        }
    }
}

/// The call state a request needs ([`Tracker::pick`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The alerting call (answer).
    Alerting,
    /// The device's connection is connected: connected, dialing or ringback (hold,
    /// consult, transfer-active, DTMF).
    Connected,
    /// The held call (retrieve, transfer-held).
    Held,
    /// Any call the device has (hangup).
    Any,
}

impl Want {
    fn matches(self, s: CallState) -> bool {
        match self {
            Want::Alerting => s == CallState::Offering,
            Want::Connected => matches!(
                s,
                CallState::Connected | CallState::Dialing | CallState::Ringback
            ),
            Want::Held => s == CallState::Held,
            Want::Any => s != CallState::Released,
        }
    }
}

/// Why [`Tracker::pick`] found no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickError {
    /// No call at the device is in the state the request needs.
    NoSuchCallState,
    /// More than one call is; the client must name one.
    Ambiguous,
    /// The named interaction is not at the device.
    UnknownCall,
}

impl PickError {
    /// The protocol error code (`request` kind).
    pub fn code(self) -> &'static str {
        match self {
            PickError::NoSuchCallState | PickError::Ambiguous => "no_such_call_state",
            PickError::UnknownCall => "unknown_call",
        }
    }
}

impl fmt::Display for PickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PickError::NoSuchCallState => "no call at the device is in the state this needs",
            PickError::Ambiguous => "more than one call at the device could be meant: name it",
            PickError::UnknownCall => "no such call at the device",
        })
    }
}

impl std::error::Error for PickError {}

/// One interaction, shared by every device's view of it.
#[derive(Debug)]
pub(super) struct Interaction {
    /// The switch's current callID.
    pub pbx: Bytes,
    /// Every callID it had (bounded), to forget their index entries with it.
    pub calls: Vec<Bytes>,
    pub consult: bool,
    /// Placed by a device of this PBX (ServiceInitiated / Originated seen).
    pub inside: bool,
    pub ani: Option<String>,
    /// The switch's own word on whether the caller is outside (trunk, public TON).
    pub ani_external: Option<bool>,
    pub dnis: Option<String>,
    pub related: Option<String>,
    pub variables: BTreeMap<String, String>,
    /// How many device views refer to it.
    pub views: usize,
    /// Since when no view refers to it (and its place in the orphan list).
    pub orphaned: Option<(SystemTime, u64)>,
    /// CallCleared was reported: forgotten with its last view.
    pub cleared: bool,
    /// Views each device had of it so far (the last one's number is its `visit`).
    pub visits: Vec<(String, u32)>,
}

/// What a new view knows about its interaction.
#[derive(Debug, Default)]
pub(super) struct Seed {
    pub ani: Option<String>,
    pub ani_external: Option<bool>,
    pub dnis: Option<String>,
    pub consult: bool,
    /// This device placed the call.
    pub inside: bool,
    /// Never join an interaction by callID (the callID was reused).
    pub fresh: bool,
}

/// One device's view of one call.
#[derive(Debug)]
pub(super) struct View {
    /// Identity within the tracker (indexes shift when views go).
    pub key: u64,
    pub interaction: String,
    /// The switch's current callID.
    pub call: Bytes,
    /// The device's connection as the switch named it, when seen.
    pub conn: Option<ConnectionId>,
    pub state: CallState,
    /// This device placed the call.
    pub outgoing: bool,
    pub offered: bool,
    pub other: Option<String>,
    pub parties: Vec<String>,
    pub started: SystemTime,
    pub answered: Option<SystemTime>,
    /// This device's how-many-th view of the interaction (1 the first time; a call that
    /// comes back, by a blind transfer or a conference rejoin, is a new visit).
    pub visit: u32,
}

impl View {
    /// Add `p` to the parties; whether it was new.
    pub fn add_party(&mut self, p: &str) -> bool {
        if p.is_empty() || self.parties.iter().any(|x| x == p) {
            return false;
        }
        self.parties.push(p.to_string());
        true
    }
}

/// Per monitored device.
#[derive(Debug, Default)]
pub(super) struct Device {
    pub calls: Vec<View>,
    pub agent: Option<AgentView>,
    /// Agents of other devices reported here (an ACD group's members), by their device.
    pub members: BTreeMap<String, AgentView>,
    /// The state a request asked for that the switch holds pending (the agent is busy on
    /// a call), with the request's reason: reported when the switch reports that state.
    pub pending: Option<(AgentState, String)>,
}

/// The sizes of the tracker's maps ([`Tracker::audit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerSizes {
    pub devices: usize,
    pub views: usize,
    pub interactions: usize,
    pub by_call: usize,
    pub moved: usize,
    pub orphans: usize,
}

/// The call tracker (see the module documentation).
#[derive(Debug)]
pub struct Tracker {
    pub(super) cfg: TrackerConfig,
    prefix: u16,
    next_id: u64,
    next_key: u64,
    pub(super) interactions: crate::FastMap<String, Interaction>,
    /// callID -> interaction id, for devices that see a call for the first time.
    pub(super) by_call: crate::FastMap<Bytes, String>,
    /// Old callID -> surviving interaction of recent transfers / conferences.
    pub(super) moved: VecDeque<(Bytes, String)>,
    /// Interactions without views, oldest first (id, orphan sequence number).
    orphans: VecDeque<(String, u64)>,
    orphan_seq: u64,
    pub(super) devices: crate::FastMap<String, Device>,
    /// The latest `now` given (for `forget_device`, which is not given one).
    pub(super) clock: SystemTime,
    /// Resyncs in progress ([`Tracker::begin_resync`]).
    pub(super) marks: super::resync::Marks,
    pub(super) next_mark: u64,
    /// Evictions since the last warning, and when that was.
    evictions: u64,
    evict_warned: Option<SystemTime>,
}

/// 48 bits of interaction counter.
const ID_MASK: u64 = (1 << 48) - 1;

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Tracker {
        // FNV-1a of the link name, folded to 16 bits
        let mut h: u32 = 0x811c_9dc5;
        for b in cfg.link.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        Tracker {
            prefix: ((h >> 16) ^ (h & 0xffff)) as u16,
            cfg,
            next_id: 0,
            next_key: 1,
            interactions: Default::default(),
            by_call: Default::default(),
            moved: VecDeque::new(),
            orphans: VecDeque::new(),
            orphan_seq: 0,
            devices: Default::default(),
            clock: UNIX_EPOCH,
            marks: Default::default(),
            next_mark: 0,
            evictions: 0,
            evict_warned: None,
        }
    }

    /// The events an event report means for `device` (the monitored device the report
    /// came for). Never panics; events it cannot use give nothing.
    pub fn on_event(&mut self, device: &str, event: &Event, now: SystemTime) -> Vec<Out> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        if !self.on_agent_event(device, event, &mut out) {
            self.on_call_event(device, event, now, &mut out);
        }
        out
    }

    /// The calls at `device` now (oldest first), for snapshots.
    pub fn calls(&self, device: &str) -> Vec<CallView> {
        self.devices.get(device).map_or_else(Vec::new, |d| {
            d.calls.iter().map(|v| self.render(v, None, None)).collect()
        })
    }

    /// The agent at `device`, if any was reported or set.
    pub fn agent(&self, device: &str) -> Option<AgentView> {
        self.devices.get(device).and_then(|d| d.agent.clone())
    }

    /// `agent` as a request's result gives it, completed as agent events are: what it
    /// leaves out (an empty agent id, no group, no reason while the state stays the same)
    /// keeps its known value; an agent id still unknown is the device number.
    pub fn fill_agent(&self, device: &str, mut agent: AgentView) -> AgentView {
        if let Some(p) = self.devices.get(device).and_then(|d| d.agent.as_ref()) {
            if agent.agent.is_empty() {
                agent.agent = p.agent.clone();
            }
            if agent.group.is_none() {
                agent.group = p.group.clone();
            }
            if agent.reason.is_none() && agent.state == p.state {
                agent.reason = p.reason.clone();
            }
        }
        if agent.agent.is_empty() {
            agent.agent = device.to_string();
        }
        agent
    }

    /// The agent state from a request's result (agent.login, ...; completed by
    /// [`Tracker::fill_agent`]): `agent.state` when it differs from what is known. Agent
    /// events that later report the same state (without a reason of their own) keep this
    /// reason and give nothing.
    pub fn set_agent(&mut self, device: &str, agent: AgentView, _now: SystemTime) -> Vec<Out> {
        let agent = self.fill_agent(device, agent);
        let d = self.devices.entry(device.to_string()).or_default();
        if d.agent.as_ref() == Some(&agent) {
            return Vec::new();
        }
        d.agent = Some(agent.clone());
        vec![Out::Agent {
            device: device.to_string(),
            agent,
        }]
    }

    /// A request's state change is pending at the switch: when the switch reports that
    /// state for the device's agent without a reason of its own, the `agent.state` event
    /// carries `reason`. `None` (or a change that is not pending) forgets it.
    pub fn set_pending(&mut self, device: &str, pending: Option<(AgentState, String)>) {
        match self.devices.get_mut(device) {
            Some(d) => d.pending = pending,
            None if pending.is_some() => {
                self.devices.entry(device.to_string()).or_default().pending = pending;
            }
            None => {}
        }
    }

    /// The device's current CSTA connection in the interaction.
    pub fn connection(&self, device: &str, interaction_id: &str) -> Option<ConnectionId> {
        let d = self.devices.get(device)?;
        d.calls
            .iter()
            .find(|v| v.interaction == interaction_id)
            .map(|v| Self::conn_of(device, v))
    }

    /// The connection a request acts on (PROTOCOL.md "Operations"): the named call's (in
    /// whatever state: the switch judges), or the one call at the device in the state
    /// `want` names.
    pub fn pick(
        &self,
        device: &str,
        call: Option<&str>,
        want: Want,
    ) -> Result<ConnectionId, PickError> {
        let views: &[View] = self.devices.get(device).map_or(&[], |d| &d.calls);
        if let Some(id) = call {
            return views
                .iter()
                .find(|v| v.interaction == id)
                .map(|v| Self::conn_of(device, v))
                .ok_or(PickError::UnknownCall);
        }
        let mut found = views.iter().filter(|v| want.matches(v.state));
        match (found.next(), found.next()) {
            (Some(v), None) => Ok(Self::conn_of(device, v)),
            (Some(_), Some(_)) => Err(PickError::Ambiguous),
            (None, _) => Err(PickError::NoSuchCallState),
        }
    }

    /// Forget a device (its monitor stopped): no events.
    pub fn forget_device(&mut self, device: &str) {
        self.marks.forget(device);
        if let Some(d) = self.devices.remove(device) {
            let now = self.clock;
            for v in d.calls {
                self.detach(&v.interaction, now);
            }
        }
    }

    /// Check the tracker's internal consistency (for the `tracker` fuzz target and
    /// tests): no interaction twice at a device and no callID twice there (no call in two
    /// states at a device), every view's interaction known and counted exactly, every
    /// interaction without views an orphan in the orphan list (else nothing would ever
    /// forget it), every index entry pointing at a known interaction, and every map within
    /// its bound. Returns the sizes, or what is wrong.
    pub fn audit(&self) -> Result<TrackerSizes, String> {
        let mut counted: HashMap<&str, usize> = HashMap::new();
        let mut views = 0;
        for (name, d) in &self.devices {
            if d.calls.len() > self.cfg.max_calls_per_device.max(1) {
                return Err(format!("{name}: {} calls", d.calls.len()));
            }
            if d.members.len() > MAX_MEMBERS_PER_DEVICE {
                return Err(format!("{name}: {} members", d.members.len()));
            }
            for (i, v) in d.calls.iter().enumerate() {
                views += 1;
                for w in &d.calls[..i] {
                    if w.interaction == v.interaction {
                        return Err(format!(
                            "{name}: interaction {} in two views ({:?} and {:?})",
                            v.interaction, w.state, v.state
                        ));
                    }
                    if w.call == v.call {
                        return Err(format!(
                            "{name}: callID {} in two views ({:?} and {:?})",
                            ctigate_csta_model::value::hex(&v.call),
                            w.state,
                            v.state
                        ));
                    }
                }
                if !self.interactions.contains_key(&v.interaction) {
                    return Err(format!(
                        "{name}: a view of the unknown interaction {}",
                        v.interaction
                    ));
                }
                *counted.entry(&v.interaction).or_default() += 1;
            }
        }
        for (id, i) in &self.interactions {
            let n = counted.get(id.as_str()).copied().unwrap_or(0);
            if i.views != n {
                return Err(format!("{id}: counts {} views, has {n}", i.views));
            }
            if n == 0 {
                let listed = i
                    .orphaned
                    .is_some_and(|(_, seq)| self.orphans.iter().any(|(o, s)| o == id && *s == seq));
                if !listed {
                    return Err(format!(
                        "{id}: no views and not in the orphan list (never forgotten)"
                    ));
                }
            }
            if i.calls.len() > MAX_CALL_IDS {
                return Err(format!("{id}: {} callIDs", i.calls.len()));
            }
        }
        if let Some((c, id)) = self
            .by_call
            .iter()
            .find(|(_, id)| !self.interactions.contains_key(*id))
        {
            return Err(format!(
                "callID {} indexed to the forgotten interaction {id}",
                ctigate_csta_model::value::hex(c)
            ));
        }
        if let Some((c, id)) = self
            .moved
            .iter()
            .find(|(_, id)| !self.interactions.contains_key(id))
        {
            return Err(format!(
                "moved callID {} to the forgotten interaction {id}",
                ctigate_csta_model::value::hex(c)
            ));
        }
        if self.orphans.len() > MAX_ORPHANS || self.moved.len() > MAX_MOVED {
            return Err(format!(
                "{} orphans, {} moved",
                self.orphans.len(),
                self.moved.len()
            ));
        }
        Ok(TrackerSizes {
            devices: self.devices.len(),
            views,
            interactions: self.interactions.len(),
            by_call: self.by_call.len(),
            moved: self.moved.len(),
            orphans: self.orphans.len(),
        })
    }

    // ---- bookkeeping shared by the handlers -------------------------------------------------

    fn conn_of(device: &str, v: &View) -> ConnectionId {
        v.conn
            .clone()
            .unwrap_or_else(|| ConnectionId::dialing(&v.call[..], device))
    }

    /// The type of an interaction (PROTOCOL.md `type`).
    pub(super) fn call_type(&self, i: &Interaction) -> CallType {
        if i.consult {
            return CallType::Consult;
        }
        let rule = &self.cfg.internal;
        let caller_inside = i.inside
            || match i.ani_external {
                Some(ext) => !ext,
                None => i.ani.as_deref().is_some_and(|a| rule.is_internal(a)),
            };
        if !caller_inside {
            CallType::Inbound
        } else if i.dnis.as_deref().is_some_and(|d| !rule.is_internal(d)) {
            CallType::Outbound
        } else {
            CallType::Internal
        }
    }

    /// The view as the protocol shows it.
    pub(super) fn render(
        &self,
        v: &View,
        state: Option<CallState>,
        ended: Option<SystemTime>,
    ) -> CallView {
        let i = self.interactions.get(&v.interaction);
        CallView {
            id: v.interaction.clone(),
            pbx_call_id: ctigate_csta_model::value::hex(&v.call),
            state: state.unwrap_or(v.state),
            r#type: i.map_or(CallType::Internal, |i| self.call_type(i)),
            ani: i.and_then(|i| i.ani.clone()),
            dnis: i.and_then(|i| i.dnis.clone()),
            other: v.other.clone(),
            parties: v.parties.clone(),
            related: i.and_then(|i| i.related.clone()),
            variables: i.map(|i| i.variables.clone()).unwrap_or_default(),
            started: v.started,
            answered: v.answered,
            ended,
            visit: v.visit,
        }
    }

    /// Push `event` for the view `key` at `device`.
    pub(super) fn emit(
        &self,
        device: &str,
        key: u64,
        event: EventKind,
        cause: Option<String>,
        extra: CallExtra,
        out: &mut Vec<Out>,
    ) {
        if let Some(v) = self.view(device, key) {
            out.push(Out::Call {
                event,
                device: device.to_string(),
                call: self.render(v, None, None),
                cause,
                extra,
            });
        }
    }

    pub(super) fn view(&self, device: &str, key: u64) -> Option<&View> {
        self.devices
            .get(device)?
            .calls
            .iter()
            .find(|v| v.key == key)
    }

    pub(super) fn view_mut(&mut self, device: &str, key: u64) -> Option<&mut View> {
        self.devices
            .get_mut(device)?
            .calls
            .iter_mut()
            .find(|v| v.key == key)
    }

    /// The view of callID `call` at `device`.
    pub(super) fn find(&self, device: &str, call: &[u8]) -> Option<u64> {
        self.devices
            .get(device)?
            .calls
            .iter()
            .find(|v| v.call[..] == *call)
            .map(|v| v.key)
    }

    /// The keys of the views at `device`.
    pub(super) fn keys(&self, device: &str) -> Vec<u64> {
        self.devices
            .get(device)
            .map_or_else(Vec::new, |d| d.calls.iter().map(|v| v.key).collect())
    }

    fn new_id(&mut self, now: SystemTime) -> String {
        if self.next_id == 0 {
            // seeded from the clock (16 ids per millisecond before a restart could
            // collide), never 0
            let ms = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            self.next_id = ((ms << 4) & ID_MASK).max(1);
        }
        let n = self.next_id & ID_MASK;
        self.next_id = (self.next_id + 1) & ID_MASK;
        if self.next_id == 0 {
            self.next_id = 1;
        }
        format!("{:04x}{n:012x}", self.prefix)
    }

    /// The interaction a new view of `call` at `device` belongs to: the one the callID
    /// maps to, else a new one.
    fn interaction_for(
        &mut self,
        device: &str,
        call: &Bytes,
        seed: Seed,
        now: SystemTime,
    ) -> String {
        let stale = self.by_call.get(call).is_some_and(|id| {
            self.interactions.get(id).is_some_and(|i| {
                i.orphaned.is_some_and(|(t, _)| {
                    now.duration_since(t).unwrap_or_default() > ORPHAN_JOIN_WINDOW
                })
            })
        });
        if stale {
            self.by_call.remove(call);
        }
        if !seed.fresh {
            if let Some(id) = self.by_call.get(call).cloned() {
                let related = if seed.consult && seed.inside {
                    self.held_interaction(device)
                } else {
                    None
                };
                if let Some(i) = self.interactions.get_mut(&id) {
                    i.consult |= seed.consult;
                    i.inside |= seed.inside;
                    if i.ani.is_none() {
                        i.ani = seed.ani;
                    }
                    if i.ani_external.is_none() {
                        i.ani_external = seed.ani_external;
                    }
                    if i.dnis.is_none() {
                        i.dnis = seed.dnis;
                    }
                    if i.related.is_none() && related.as_deref() != Some(id.as_str()) {
                        i.related = related;
                    }
                    return id;
                }
            }
        }
        let id = self.new_id(now);
        let related = if seed.consult && seed.inside {
            self.held_interaction(device)
        } else {
            None
        };
        // a consultation leg starts with a copy of its interaction's variables
        let variables = related
            .as_ref()
            .and_then(|r| self.interactions.get(r))
            .map(|i| i.variables.clone())
            .unwrap_or_default();
        self.interactions.insert(
            id.clone(),
            Interaction {
                pbx: call.clone(),
                calls: vec![call.clone()],
                consult: seed.consult,
                inside: seed.inside,
                ani: seed.ani,
                ani_external: seed.ani_external,
                dnis: seed.dnis,
                related,
                variables,
                views: 0,
                orphaned: None,
                cleared: false,
                visits: Vec::new(),
            },
        );
        self.by_call.insert(call.clone(), id.clone());
        id
    }

    /// The interaction of the call `device` holds (the newest held one).
    fn held_interaction(&self, device: &str) -> Option<String> {
        self.devices
            .get(device)?
            .calls
            .iter()
            .rev()
            .find(|v| v.state == CallState::Held)
            .map(|v| v.interaction.clone())
    }

    /// A new view of `call` at `device` in `state`; evicts the oldest view when the
    /// device is full. Returns its key.
    pub(super) fn create(
        &mut self,
        device: &str,
        call: &Bytes,
        seed: Seed,
        state: CallState,
        out: &mut Vec<Out>,
        now: SystemTime,
    ) -> u64 {
        self.make_room(device, now, out);
        let interaction = self.interaction_for(device, call, seed, now);
        // one view per device and interaction: a view of it under another callID (a
        // transfer this device was not told about) now follows this callID
        if let Some(v) = self
            .devices
            .get_mut(device)
            .and_then(|d| d.calls.iter_mut().find(|v| v.interaction == interaction))
        {
            v.call = call.clone();
            v.conn = None;
            return v.key;
        }
        self.attach(&interaction);
        let visit = self.next_visit(&interaction, device);
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        let view = View {
            key,
            interaction,
            call: call.clone(),
            conn: None,
            state,
            outgoing: false,
            offered: false,
            other: None,
            parties: vec![device.to_string()],
            started: now,
            answered: None,
            visit,
        };
        // the device's entry looked up by `&str` (no key made) unless it is new
        match self.devices.get_mut(device) {
            Some(d) => d.calls.push(view),
            None => {
                let d = Device {
                    calls: vec![view],
                    ..Device::default()
                };
                self.devices.insert(device.to_string(), d);
            }
        }
        key
    }

    /// The number of a new view of `interaction` at `device` (counted per interaction; at
    /// most [`MAX_VISITORS`] devices are counted, a further one starts at 1).
    fn next_visit(&mut self, interaction: &str, device: &str) -> u32 {
        let Some(i) = self.interactions.get_mut(interaction) else {
            return 1;
        };
        if let Some((_, n)) = i.visits.iter_mut().find(|(d, _)| d == device) {
            *n = n.saturating_add(1);
            return *n;
        }
        if i.visits.len() < MAX_VISITORS {
            i.visits.push((device.to_string(), 1));
        }
        1
    }

    fn make_room(&mut self, device: &str, now: SystemTime, out: &mut Vec<Out>) {
        let victim = match self.devices.get(device) {
            Some(d) if d.calls.len() >= self.cfg.max_calls_per_device.max(1) => d
                .calls
                .iter()
                .find(|v| v.state == CallState::Failed)
                .or(d.calls.first())
                .map(|v| v.key),
            _ => None,
        };
        if let Some(k) = victim {
            // each eviction is a `call.released` (cause `evicted`); the log says it at most
            // once a second, with the count (a device whose calls' ends were shed may evict
            // on every new call until its resync, at every device)
            self.evictions += 1;
            // (a clock set back: warned now, rather than only once it has caught up)
            let due = self.evict_warned.is_none_or(|t| {
                now.duration_since(t)
                    .map_or(true, |d| d >= EVICTION_WARNING_EVERY)
            });
            if due {
                tracing::warn!(
                    device,
                    limit = "link.max_calls_per_device",
                    max = self.cfg.max_calls_per_device,
                    evicted = self.evictions,
                    "too many calls at a device: the oldest is dropped (call.released, cause evicted); evicted: how many since the last such warning"
                );
                self.evictions = 0;
                self.evict_warned = Some(now);
            }
            self.release(device, k, "evicted".into(), now, CallExtra::default(), out);
        }
    }

    /// The view ends: `call.released` (state released, `ended`, `duration_ms` added to
    /// `extra`) and it is forgotten.
    pub(super) fn release(
        &mut self,
        device: &str,
        key: u64,
        cause: String,
        now: SystemTime,
        mut extra: CallExtra,
        out: &mut Vec<Out>,
    ) {
        let Some(d) = self.devices.get_mut(device) else {
            return;
        };
        let Some(pos) = d.calls.iter().position(|v| v.key == key) else {
            return;
        };
        let v = d.calls.remove(pos);
        self.note_gone(device, &v.call);
        let ms = now
            .duration_since(v.started)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        extra.duration_ms = Some(ms);
        out.push(Out::Call {
            event: EventKind::CallReleased,
            device: device.to_string(),
            call: self.render(&v, Some(CallState::Released), Some(now)),
            cause: Some(cause),
            extra,
        });
        self.detach(&v.interaction, now);
    }

    /// Remove a view without an event (merged into another); its interaction id.
    pub(super) fn drop_view(&mut self, device: &str, key: u64) -> Option<String> {
        let d = self.devices.get_mut(device)?;
        let pos = d.calls.iter().position(|v| v.key == key)?;
        let v = d.calls.remove(pos);
        self.note_gone(device, &v.call);
        self.detach(&v.interaction, self.clock);
        Some(v.interaction)
    }

    /// The view now belongs to `interaction`; the one it belonged to, if different.
    pub(super) fn repoint(&mut self, device: &str, key: u64, interaction: &str) -> Option<String> {
        let old = self.view(device, key)?.interaction.clone();
        if old == interaction || !self.interactions.contains_key(interaction) {
            return None;
        }
        self.attach(interaction);
        if let Some(v) = self.view_mut(device, key) {
            v.interaction = interaction.to_string();
        }
        self.detach(&old, self.clock);
        Some(old)
    }

    fn attach(&mut self, id: &str) {
        if let Some(i) = self.interactions.get_mut(id) {
            i.views += 1;
            i.orphaned = None;
        }
    }

    /// One view less. Without views, a cleared interaction is forgotten; another becomes
    /// an orphan (kept a while, see [`MAX_ORPHANS`]).
    fn detach(&mut self, id: &str, now: SystemTime) {
        let Some(i) = self.interactions.get_mut(id) else {
            return;
        };
        i.views = i.views.saturating_sub(1);
        if i.views > 0 {
            return;
        }
        if i.cleared {
            self.forget_interaction(id);
            return;
        }
        self.orphan_seq = self.orphan_seq.wrapping_add(1);
        i.orphaned = Some((now, self.orphan_seq));
        self.orphans.push_back((id.to_string(), self.orphan_seq));
        self.orphans_trim();
    }

    /// Forget the oldest orphans beyond [`MAX_ORPHANS`].
    fn orphans_trim(&mut self) {
        while self.orphans.len() > MAX_ORPHANS {
            let Some((id, seq)) = self.orphans.pop_front() else {
                break;
            };
            let still = self
                .interactions
                .get(&id)
                .is_some_and(|i| i.views == 0 && i.orphaned.map(|(_, s)| s) == Some(seq));
            if still {
                self.forget_interaction(&id);
            }
        }
    }

    fn forget_interaction(&mut self, id: &str) {
        if let Some(i) = self.interactions.remove(id) {
            for c in &i.calls {
                if self.by_call.get(c).map(String::as_str) == Some(id) {
                    self.by_call.remove(c);
                }
            }
        }
        self.moved.retain(|(_, s)| s != id);
    }

    /// Put the event's user / correlator data into the interaction's variables; whether
    /// they changed.
    pub(super) fn absorb(
        &mut self,
        interaction: &str,
        uui: Option<&Bytes>,
        corr: Option<&Bytes>,
    ) -> bool {
        let Some(i) = self.interactions.get_mut(interaction) else {
            return false;
        };
        let mut changed = false;
        if let Some(u) = uui {
            changed |= set_variable(&mut i.variables, "uui", u);
        }
        if let Some(c) = corr {
            changed |= set_variable(&mut i.variables, "correlator", c);
        }
        changed
    }

    /// The interaction an old callID of a transfer / conference belonged to, as `device`
    /// knows it: its own view, else a recent merge, else the index.
    pub(super) fn old_interaction(&self, device: &str, call: &Bytes) -> Option<String> {
        if let Some(k) = self.find(device, call) {
            return self.view(device, k).map(|v| v.interaction.clone());
        }
        if let Some((_, s)) = self.moved.iter().rev().find(|(c, _)| c == call) {
            return Some(s.clone());
        }
        self.by_call.get(call).cloned()
    }

    /// Record that the calls `old` became `result`, which belongs to `survivor` (merging
    /// `other`'s variables when the survivor has none); idempotent, as every device
    /// reports the same Transferred / Conferenced event.
    pub(super) fn merge(
        &mut self,
        survivor: &str,
        other: Option<&str>,
        old: &[&Bytes],
        result: &Bytes,
    ) {
        for c in old {
            if !self.moved.iter().any(|(x, s)| x == *c && s == survivor) {
                if self.moved.len() >= MAX_MOVED {
                    self.moved.pop_front();
                }
                self.moved.push_back(((*c).clone(), survivor.to_string()));
            }
            self.by_call.remove(*c);
        }
        let other = other.filter(|o| *o != survivor);
        let vars = other.and_then(|o| self.interactions.get_mut(o)).map(|o| {
            // merged away: it goes with its last view
            o.cleared = true;
            o.variables.clone()
        });
        if let Some(o) = other {
            if self.interactions.get(o).is_some_and(|o| o.views == 0) {
                self.forget_interaction(o);
            }
        }
        let Some(s) = self.interactions.get_mut(survivor) else {
            return;
        };
        if s.variables.is_empty() {
            if let Some(v) = vars {
                s.variables = v;
            }
        }
        s.pbx = result.clone();
        if !s.calls.contains(result) {
            if s.calls.len() >= MAX_CALL_IDS {
                s.calls.remove(0);
            }
            s.calls.push(result.clone());
        }
        self.by_call.insert(result.clone(), survivor.to_string());
    }

    /// CallCleared for `call` (ECMA-269 clause 17 event): the call is over everywhere; its
    /// interaction (`also`: the ones of the views it just released) goes with its last
    /// view, and a reuse of the callID is a new interaction.
    pub(super) fn call_cleared(&mut self, call: &Bytes, also: &[String]) {
        let mut ids: Vec<String> = also.to_vec();
        if let Some(id) = self.by_call.remove(call) {
            ids.push(id);
        }
        for id in ids {
            let Some(i) = self.interactions.get_mut(&id) else {
                continue;
            };
            if i.pbx != *call {
                continue;
            }
            i.cleared = true;
            if i.views == 0 {
                self.forget_interaction(&id);
            }
        }
    }
}

/// The EventCause as the protocol names it.
pub(super) fn cause_name(c: EventCause) -> String {
    c.name().map_or_else(|| c.0.to_string(), str::to_string)
}
