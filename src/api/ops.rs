//! One handler per operation of docs/PROTOCOL.md ([`Handle`] on each parameter struct of
//! [`super::request`]), mapped onto the CSTA service it stands for. The PBX saying no is a
//! `switch` error with the ECMA-285 value name; a link that is down or slow is a `link`
//! error; the caller's mistakes are `request` errors.

use super::hub::{ClientId, Hub};
use super::protocol::ApiError;
use super::request::*;
use crate::gateway::{Gateway, LinkSlot};
use crate::link::{Answer, CstaError, LinkError};
use crate::model::{AgentState as ModelAgentState, AgentView, PickError, Want};
use bytes::Bytes;
use ctigate_csta::ops::{
    AlternateCallArgument, AnswerCallArgument, Argument, ClearCallArgument,
    ClearConnectionArgument, ConferenceCallArgument, ConsultationCallArgument,
    GenerateDigitsArgument, GetAgentStateArgument, HoldCallArgument, MakeCallArgument,
    OperationResult, ReconnectCallArgument, RetrieveCallArgument, SetAgentStateArgument,
    SingleStepTransArgument, TransferCallArgument,
};
use ctigate_csta::types::{
    AgentState, CommonArguments, ConnectionId, DeviceId, PrivateData, ReqAgentState,
};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::sync::Arc;
use tracing::debug;

/// What a handler works with: the gateway, the hub, and the client asking.
pub struct Cx<'a> {
    pub gw: &'a Gateway,
    pub hub: &'a Hub,
    pub client: ClientId,
}

/// An operation's handler: its parameters in, the result (or the error) out.
pub trait Handle {
    fn handle(self, cx: &Cx<'_>) -> impl Future<Output = Result<Value, ApiError>> + Send;
}

/// Run one request for a client.
pub async fn handle(cx: &Cx<'_>, op: Op) -> Result<Value, ApiError> {
    op.dispatch(cx).await
}

pub(crate) fn link_error(e: LinkError) -> ApiError {
    match e {
        LinkError::Timeout => ApiError::new("link", "timeout", e.to_string()),
        LinkError::TooManyRequests => ApiError::new("busy", "congestion", e.to_string()),
        LinkError::Limit("link.max_monitors", _) => {
            ApiError::new("busy", "monitor_limit", e.to_string())
        }
        LinkError::Limit(..) => ApiError::new("busy", "congestion", e.to_string()),
        _ => ApiError::new("link", "link_down", e.to_string()),
    }
}

pub(crate) fn csta_error(e: CstaError) -> ApiError {
    match e {
        CstaError::Failure(u) => ApiError::new(
            "switch",
            u.value_name().unwrap_or(u.category).to_string(),
            format!("the PBX refused the request: {u}"),
        ),
        CstaError::Reject(r) => ApiError::new(
            "switch",
            r.to_string(),
            format!("the PBX rejected the request ({r})"),
        ),
    }
}

/// Unwrap both layers of a link's answer.
fn answer<T>(a: Result<Result<T, CstaError>, LinkError>) -> Result<T, ApiError> {
    match a {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(csta_error(e)),
        Err(e) => Err(link_error(e)),
    }
}

/// Send a CSTA request and unwrap both layers of the answer.
async fn csta(
    cx: &Cx<'_>,
    slot: &LinkSlot,
    arg: impl Into<Argument>,
) -> Result<Option<OperationResult>, ApiError> {
    let a: Answer = cx.gw.request(slot, arg).await;
    answer(a)
}

fn pick_error(e: PickError, device: &str) -> ApiError {
    match e {
        PickError::UnknownCall => {
            ApiError::request("unknown_call", format!("no such call at device {device}"))
        }
        PickError::Ambiguous => ApiError::request(
            "no_such_call_state",
            format!("device {device} has several calls in that state: name the `call`"),
        ),
        PickError::NoSuchCallState => ApiError::request(
            "no_such_call_state",
            format!("device {device} has no call in the state this operation needs"),
        ),
    }
}

/// The link a request names (required when there are several).
fn slot(cx: &Cx<'_>, link: &Option<String>) -> Result<Arc<LinkSlot>, ApiError> {
    let links = cx.gw.links();
    let names = || links.keys().cloned().collect::<Vec<_>>().join(", ");
    match link {
        Some(n) => links
            .get(n)
            .cloned()
            .ok_or_else(|| ApiError::invalid("link", &format!("one of {}", names()))),
        None if links.len() == 1 => links
            .values()
            .next()
            .cloned()
            .ok_or_else(|| ApiError::missing("link")),
        None => Err(ApiError::request(
            "missing_field",
            format!("`link` is required: this gateway has links {}", names()),
        )),
    }
}

fn bytes(v: Option<&Value>) -> Option<Bytes> {
    v.and_then(Value::as_str)
        .map(|s| Bytes::from(s.as_bytes().to_vec()))
}

fn text(s: &str) -> Bytes {
    Bytes::from(s.as_bytes().to_vec())
}

/// The device's connection for the operation: the named interaction, or the one in the
/// state the operation needs.
fn pick(
    cx: &Cx<'_>,
    slot: &LinkSlot,
    device: &str,
    call: Option<&str>,
    want: Want,
) -> Result<ConnectionId, ApiError> {
    if !cx
        .hub
        .is_subscribed(cx.client, &(slot.name.clone(), device.to_string()))
        && !slot.is_pinned(device)
    {
        return Err(ApiError::request(
            "not_monitored",
            format!("device {device} is not monitored: send monitor.start first"),
        ));
    }
    slot.tracker()
        .pick(device, call, want)
        .map_err(|e| pick_error(e, device))
}

fn agent_state(s: AgentState) -> ModelAgentState {
    match s {
        AgentState::NotReady => ModelAgentState::NotReady,
        AgentState::Ready => ModelAgentState::Ready,
        AgentState::Busy => ModelAgentState::Busy,
        AgentState::WorkingAfterCall => ModelAgentState::AfterCallWork,
        _ => ModelAgentState::LoggedOut,
    }
}

/// The links as `hello` and `status` show them.
pub fn link_states(gw: &Gateway) -> Value {
    Value::Array(
        gw.link_states()
            .into_iter()
            .map(|l| {
                let mut v = json!({"name": l.name, "state": l.state});
                if let Some(r) = l.reason {
                    v["reason"] = json!(r);
                }
                if let Some(s) = l.side {
                    v["side"] = json!(s.index);
                    v["address"] = json!(s.address);
                }
                v["malformed_frames"] = json!(l.counters.malformed_frames);
                v["rejects_sent"] = json!(l.counters.rejects_sent);
                v["events_shed"] = json!(l.counters.events_shed);
                v["behind"] = json!(l.behind);
                v["behind_periods"] = json!(l.behind_periods);
                v
            })
            .collect(),
    )
}

impl Handle for Ping {
    async fn handle(self, _: &Cx<'_>) -> Result<Value, ApiError> {
        Ok(json!({}))
    }
}

impl Handle for Status {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let hub = cx.hub;
        // the monitors as the gateway counts them (the holds, whatever the hub delivers)
        let mut monitors = Vec::new();
        for (link, slot) in cx.gw.links().iter() {
            for (d, n) in slot.monitor_holders().await {
                monitors.push(json!({"link": link, "device": d, "clients": n}));
            }
        }
        let mut v = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": cx.gw.started.elapsed().as_secs(),
            "links": link_states(cx.gw),
            "clients": hub.clients(),
            "seq": hub.last_seq(),
            "events_dropped_for_slow_clients": hub.dropped(),
            "monitors": monitors,
            "resync": cx.gw.links().values()
                .map(|s| json!({"link": s.name, "snapshots": s.resyncs(),
                    "failed": s.resync_failures(), "waiting": s.resyncs_waiting(),
                    "unconfirmed": s.unconfirmed()}))
                .collect::<Vec<_>>(),
        });
        // every PBX monitor: counts per state always, the devices when asked
        let counts: Vec<Value> = cx
            .gw
            .links()
            .values()
            .map(|s| {
                let mut m = Map::new();
                m.insert("link".into(), json!(s.name));
                for (state, n) in s.monitor_counts() {
                    m.insert(state.into(), json!(n));
                }
                m.insert("configured".into(), json!(s.pinned().len()));
                Value::Object(m)
            })
            .collect();
        v["pbx_monitors"] = json!(counts);
        if self.devices {
            let mut rows = Vec::new();
            for s in cx.gw.links().values() {
                for r in s.monitor_rows() {
                    let mut row = json!({"link": s.name, "device": r.device,
                        "state": r.status.name(), "configured": r.configured,
                        "clients": r.clients});
                    if let Some(reason) = r.status.reason() {
                        row["reason"] = json!(reason);
                    }
                    rows.push(row);
                }
            }
            v["devices"] = json!(rows);
        }
        Ok(v)
    }
}

impl Handle for MonitorStart {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let device = self.device.as_str();
        let key = (s.name.clone(), device.to_string());
        if cx.hub.is_subscribed(cx.client, &key) {
            return Ok(
                json!({"device": device, "calls": s.tracker().calls(device), "agent": s.tracker().agent(device), "already": true}),
            );
        }
        // a connection's requests run one after another: nothing else of this client
        // subscribes between this check and the subscription below
        if let Err(limit) = cx.hub.room_for_one_more(cx.client) {
            return Err(ApiError::new(
                "busy",
                "client_monitor_limit",
                format!("this connection monitors {limit} devices already (api.max_monitors_per_client = {limit}): stop one, or raise the limit"),
            ));
        }
        // the count is taken and recorded for this client in one step: a request cut off
        // after this (deadline, client gone) leaves a hold that `monitor.stop` or the end of
        // the session gives back
        answer(cx.gw.monitor_acquire(s, device, cx.client).await)?;
        // a failed snapshot leaves the device unconfirmed (device.unconfirmed) and retried
        cx.gw.resync(s, device).await;
        if s.tracker().agent(device).is_none() {
            // an agent logged on before anyone watched: the switch knows it
            match pbx_agent(cx, s, device).await {
                Ok(Some(a)) if a.state != ModelAgentState::LoggedOut => {
                    cx.gw.agent_update(s, device, a).await;
                }
                Ok(_) => {}
                Err(e) => debug!(device, error = %e, "no agent state from the PBX"),
            }
        }
        let rep = cx.hub.subscribe(cx.client, key, self.after);
        let mut m = Map::new();
        m.insert("device".into(), json!(device));
        m.insert("calls".into(), json!(s.tracker().calls(device)));
        m.insert("agent".into(), json!(s.tracker().agent(device)));
        m.insert("seq".into(), json!(cx.hub.last_seq()));
        if s.unconfirmed().iter().any(|d| d == device) {
            // the snapshot failed: `device.confirmed` follows when a retry succeeds
            m.insert("unconfirmed".into(), json!(true));
        }
        if self.after.is_some() {
            m.insert("replayed".into(), json!(rep.replayed));
            m.insert("gap".into(), json!(rep.gap));
        }
        Ok(Value::Object(m))
    }
}

impl Handle for MonitorStop {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let device = self.device.as_str();
        let key = (s.name.clone(), device.to_string());
        let subscribed = cx.hub.unsubscribe(cx.client, &key);
        let held = cx.gw.monitor_release(s, device, cx.client).await;
        if !(subscribed || held) {
            return Err(ApiError::request(
                "not_monitored",
                format!("you do not monitor {device}"),
            ));
        }
        Ok(json!({"device": device}))
    }
}

impl Handle for Snapshot {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let device = self.device.as_str();
        let list = answer(cx.gw.snapshot_list(s, device).await)?;
        let pbx: Vec<Value> = list
            .iter()
            .map(|(c, st)| {
                json!({
                    "pbx_call_id": c.call_id().map(|b| ctigate_csta::json::hex(b)),
                    "state": st.map_or("unknown", |s| s.name().unwrap_or("unknown")),
                })
            })
            .collect();
        let calls = s.tracker().calls(device);
        Ok(
            json!({"device": device, "calls": calls, "agent": s.tracker().agent(device), "pbx_calls": pbx}),
        )
    }
}

impl Handle for CallMake {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let mut a =
            MakeCallArgument::new(DeviceId::dialing(&self.device), DeviceId::dialing(&self.to));
        a.user_data = bytes(self.variables.get("uui"));
        a.correlator_data = bytes(self.variables.get("correlator"));
        match csta(cx, s, a).await? {
            Some(OperationResult::MakeCall(m)) => Ok(json!({
                "pbx_call_id": m.calling_device.call_id().map(|b| ctigate_csta::json::hex(b)),
            })),
            _ => Ok(json!({})),
        }
    }
}

/// The operations on the device's one call in a state: pick it, send the service.
macro_rules! on_call {
    ($($t:ident: $want:ident => $arg:ident;)*) => {$(
        impl Handle for $t {
            async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
                let s = &slot(cx, &self.link)?;
                let c = pick(cx, s, &self.device, self.call.as_deref(), Want::$want)?;
                csta(cx, s, $arg::new(c)).await.map(|_| json!({}))
            }
        }
    )*};
}

on_call! {
    CallAnswer: Alerting => AnswerCallArgument;
    CallHold: Connected => HoldCallArgument;
    CallRetrieve: Held => RetrieveCallArgument;
    CallHangup: Any => ClearConnectionArgument;
}

impl Handle for CallClear {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let c = pick(cx, s, &self.device, Some(&self.call), Want::Any)?;
        csta(cx, s, ClearCallArgument::new(c))
            .await
            .map(|_| json!({}))
    }
}

impl Handle for CallConsult {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let c = pick(cx, s, &self.device, self.call.as_deref(), Want::Connected)?;
        let mut a = ConsultationCallArgument::new(c, DeviceId::dialing(&self.to));
        a.user_data = bytes(self.variables.get("uui"));
        a.correlator_data = bytes(self.variables.get("correlator"));
        match csta(cx, s, a).await? {
            Some(OperationResult::ConsultationCall(m)) => Ok(json!({
                "pbx_call_id": m.initiated_call.call_id().map(|b| ctigate_csta::json::hex(b)),
            })),
            _ => Ok(json!({})),
        }
    }
}

/// The operations on a held call and its consultation: (held, active) to the argument.
macro_rules! held_and_active {
    ($($t:ident => $make:expr;)*) => {$(
        impl Handle for $t {
            async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
                let s = &slot(cx, &self.link)?;
                let held = pick(cx, s, &self.device, self.call.as_deref(), Want::Held)?;
                let active = pick(cx, s, &self.device, self.consult.as_deref(), Want::Connected)?;
                let make: fn(ConnectionId, ConnectionId) -> Argument = $make;
                csta(cx, s, make(held, active)).await.map(|_| json!({}))
            }
        }
    )*};
}

held_and_active! {
    CallTransfer => |h, a| TransferCallArgument::new(h, a).into();
    CallConference => |h, a| ConferenceCallArgument::new(h, a).into();
    CallAlternate => |h, a| AlternateCallArgument::new(h, a).into();
    CallReconnect => |h, a| ReconnectCallArgument::new(a, h).into();
}

impl Handle for CallBlindTransfer {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let c = pick(cx, s, &self.device, self.call.as_deref(), Want::Connected)?;
        let a = SingleStepTransArgument::new(c, DeviceId::dialing(&self.to));
        csta(cx, s, a).await.map(|_| json!({}))
    }
}

impl Handle for CallDropParty {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let own = pick(cx, s, &self.device, self.call.as_deref(), Want::Any)?;
        let call = own
            .call_id()
            .ok_or_else(|| ApiError::request("unknown_call", "the call has no call id"))?
            .clone();
        let c = ConnectionId::dialing(call, &self.party);
        csta(cx, s, ClearConnectionArgument::new(c))
            .await
            .map(|_| json!({}))
    }
}

impl Handle for CallDtmf {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let digits = self.digits;
        if digits.len() > 64
            || !digits
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'A'..=b'D'))
        {
            return Err(ApiError::invalid("digits", "up to 64 of 0-9 * # A-D"));
        }
        let c = pick(cx, s, &self.device, self.call.as_deref(), Want::Connected)?;
        csta(cx, s, GenerateDigitsArgument::new(c, digits))
            .await
            .map(|_| json!({}))
    }
}

/// An agent state change (SetAgentState).
struct AgentChange {
    link: Option<String>,
    device: String,
    req: ReqAgentState,
    state: ModelAgentState,
    agent: Option<String>,
    password: Option<String>,
    group: Option<String>,
    reason: Option<String>,
}

impl AgentLogin {
    fn change(self) -> AgentChange {
        AgentChange {
            link: self.link,
            device: self.device,
            req: ReqAgentState::LoggedOn,
            state: ModelAgentState::NotReady,
            agent: Some(self.agent),
            password: self.password,
            group: self.group,
            reason: self.reason,
        }
    }
}

macro_rules! agent_ops {
    ($($t:ident => $req:ident, $state:ident;)*) => {$(
        impl $t {
            fn change(self) -> AgentChange {
                AgentChange {
                    link: self.link,
                    device: self.device,
                    req: ReqAgentState::$req,
                    state: ModelAgentState::$state,
                    agent: self.agent,
                    password: None,
                    group: self.group,
                    reason: self.reason,
                }
            }
        }
    )*
    $(impl Handle for $t {
        async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
            agent_change(cx, self.change()).await
        }
    })*
    };
}

agent_ops! {
    AgentReady => Ready, Ready;
    AgentNotReady => NotReady, NotReady;
    AgentAfterCallWork => WorkingAfterCall, AfterCallWork;
    AgentLogout => LoggedOff, LoggedOut;
}

impl Handle for AgentLogin {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        agent_change(cx, self.change()).await
    }
}

async fn agent_change(cx: &Cx<'_>, c: AgentChange) -> Result<Value, ApiError> {
    let s = &slot(cx, &c.link)?;
    let device = c.device.as_str();
    let mut a = SetAgentStateArgument::new(DeviceId::dialing(device), c.req);
    // the agent and group, when the request does not name them, are the known ones when
    // the pump applies the result (`Tracker::fill_agent`)
    a.agent_id = c.agent.as_deref().map(text);
    if c.req == ReqAgentState::LoggedOn {
        a.password = c.password.as_deref().map(text);
        a.group = c.group.as_deref().map(DeviceId::dialing);
    }
    a.extensions = c
        .reason
        .as_deref()
        .map(|r| CommonArguments::private(vec![PrivateData::String(text(r))]));
    let res = csta(cx, s, a).await?;
    let pending = match res {
        Some(OperationResult::SetAgentState(x)) => x.pending_agent_state.and_then(|p| p.name()),
        _ => None,
    };
    s.tracker().set_pending(
        device,
        pending
            .and(c.reason.clone())
            .map(|reason| (c.state, reason)),
    );
    if pending.is_none() {
        let view = AgentView {
            agent: c.agent.unwrap_or_default(),
            state: c.state,
            reason: c.reason,
            group: c.group,
        };
        cx.gw.agent_update(s, device, view).await;
    }
    Ok(json!({"pending": pending}))
}

/// The agent at `device` as the PBX tells it (GetAgentState); `None` when it gives none.
async fn pbx_agent(cx: &Cx<'_>, s: &LinkSlot, device: &str) -> Result<Option<AgentView>, ApiError> {
    let Some(OperationResult::GetAgentState(g)) =
        csta(cx, s, GetAgentStateArgument::new(DeviceId::dialing(device))).await?
    else {
        return Ok(None);
    };
    let e = g.agent_state_list.first();
    let info = e
        .and_then(|e| e.agent_info.as_ref())
        .and_then(|i| i.first());
    let state = match (e.map(|e| e.logged_on), info) {
        (Some(true), Some(i)) => agent_state(i.agent_state),
        (Some(true), None) => ModelAgentState::NotReady,
        _ => ModelAgentState::LoggedOut,
    };
    Ok(Some(AgentView {
        agent: e
            .and_then(|e| e.agent_id.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
        state,
        reason: None,
        group: info
            .and_then(|i| i.acd_group.as_ref())
            .and_then(|g| g.number())
            .map(str::to_string),
    }))
}

impl Handle for AgentStateQuery {
    async fn handle(self, cx: &Cx<'_>) -> Result<Value, ApiError> {
        let s = &slot(cx, &self.link)?;
        let device = self.device.as_str();
        let Some(agent) = pbx_agent(cx, s, device).await? else {
            return Err(ApiError::new(
                "switch",
                "noData",
                "the PBX gave no agent state",
            ));
        };
        // what the PBX leaves out keeps its known value: an unchanged agent gives no event
        let shown = cx
            .gw
            .agent_update(s, device, agent.clone())
            .await
            .unwrap_or(agent);
        Ok(serde_json::to_value(shown).unwrap_or(Value::Null))
    }
}
