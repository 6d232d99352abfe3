//! Every operation of docs/PROTOCOL.md, mapped onto the CSTA service it stands for. The
//! PBX saying no is a `switch` error with the ECMA-285 value name; a link that is down or
//! slow is a `link` error; the caller's mistakes are `request` errors.

use super::hub::ClientId;
use super::protocol::{ApiError, Request};
use super::{Gateway, LinkSlot, PumpIn};
use crate::link::{CstaError, LinkError};
use crate::model::{AgentState as ModelAgentState, AgentView, PickError, Want};
use bytes::Bytes;
use ctigate_csta_model::ops::{
    AlternateCallArgument, AnswerCallArgument, Argument, ClearCallArgument,
    ClearConnectionArgument, ConferenceCallArgument, ConsultationCallArgument,
    GenerateDigitsArgument, GetAgentStateArgument, HoldCallArgument, MakeCallArgument,
    OperationResult, ReconnectCallArgument, RetrieveCallArgument, SetAgentStateArgument,
    SingleStepTransArgument, SnapshotData, SnapshotDeviceArgument, TransferCallArgument,
};
use ctigate_csta_model::types::{
    AgentState, CommonArguments, ConnectionId, DeviceId, PrivateData, ReqAgentState,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::SystemTime;
use tracing::warn;

/// The operations, for `unknown_op` messages.
pub const OPS: &[&str] = &[
    "ping",
    "status",
    "monitor.start",
    "monitor.stop",
    "snapshot",
    "call.make",
    "call.answer",
    "call.hold",
    "call.retrieve",
    "call.hangup",
    "call.clear",
    "call.consult",
    "call.transfer",
    "call.conference",
    "call.alternate",
    "call.reconnect",
    "call.blind_transfer",
    "call.drop_party",
    "call.dtmf",
    "agent.login",
    "agent.ready",
    "agent.not_ready",
    "agent.after_call_work",
    "agent.logout",
    "agent.state",
];

fn link_error(e: LinkError) -> ApiError {
    match e {
        LinkError::Timeout => ApiError::new("link", "timeout", e.to_string()),
        LinkError::TooManyRequests => ApiError::new("busy", "congestion", e.to_string()),
        _ => ApiError::new("link", "link_down", e.to_string()),
    }
}

fn csta_error(e: CstaError) -> ApiError {
    match e {
        CstaError::Failure(u) => ApiError::new(
            "switch",
            u.value_name().unwrap_or(u.category).to_string(),
            format!("the PBX refused the request: {u}"),
        ),
        CstaError::Reject(p) => ApiError::new(
            "switch",
            p.to_string(),
            format!("the PBX rejected the request ({p})"),
        ),
    }
}

/// Send a CSTA request and unwrap both layers of the answer.
async fn csta(
    slot: &LinkSlot,
    arg: impl Into<Argument>,
) -> Result<Option<OperationResult>, ApiError> {
    match slot.link.request(arg.into()).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(csta_error(e)),
        Err(e) => Err(link_error(e)),
    }
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
fn slot<'a>(gw: &'a Gateway, r: &Request) -> Result<&'a Arc<LinkSlot>, ApiError> {
    match r.opt_str("link")? {
        Some(n) => gw.links.get(n).ok_or_else(|| {
            ApiError::invalid(
                "link",
                &format!(
                    "one of {}",
                    gw.links.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        }),
        None if gw.links.len() == 1 => gw
            .links
            .values()
            .next()
            .ok_or_else(|| ApiError::missing("link")),
        None => Err(ApiError::request(
            "missing_field",
            format!(
                "`link` is required: this gateway has links {}",
                gw.links.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

fn bytes(v: Option<&Value>) -> Option<Bytes> {
    v.and_then(Value::as_str)
        .map(|s| Bytes::from(s.as_bytes().to_vec()))
}

/// The device's connection for the operation: the named interaction, or the one in the
/// state the operation needs.
fn pick(
    gw: &Gateway,
    client: ClientId,
    slot: &LinkSlot,
    r: &Request,
    key: &str,
    want: Want,
) -> Result<ConnectionId, ApiError> {
    let device = r.str("device")?;
    let call = r.opt_str(key)?;
    if !gw
        .hub
        .is_subscribed(client, &(slot.name.clone(), device.to_string()))
        && !slot.pinned.contains(device)
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

fn reason_data(r: &Request) -> Result<Option<CommonArguments>, ApiError> {
    Ok(r.opt_str("reason")?.map(|reason| {
        CommonArguments::private(vec![PrivateData::String(Bytes::from(
            reason.as_bytes().to_vec(),
        ))])
    }))
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

/// Run one request for a client.
pub async fn handle(gw: &Arc<Gateway>, client: ClientId, r: &Request) -> Result<Value, ApiError> {
    match r.op.as_str() {
        "ping" => Ok(json!({})),
        "status" => Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": gw.started.elapsed().as_secs(),
            "links": gw.link_states(),
            "clients": gw.hub.clients(),
            "seq": gw.hub.last_seq(),
            "events_dropped_for_slow_clients": gw.hub.dropped(),
            "monitors": gw.hub.subscriptions().into_iter().map(|((l, d), n)| json!({"link": l, "device": d, "clients": n})).collect::<Vec<_>>(),
        })),
        "monitor.start" => monitor_start(gw, client, r).await,
        "monitor.stop" => {
            let s = slot(gw, r)?;
            let device = r.str("device")?;
            let key = (s.name.clone(), device.to_string());
            if !gw.hub.unsubscribe(client, &key) {
                return Err(ApiError::request(
                    "not_monitored",
                    format!("you do not monitor {device}"),
                ));
            }
            release(s, device).await;
            Ok(json!({"device": device}))
        }
        "snapshot" => {
            let s = slot(gw, r)?;
            let device = r.str("device")?;
            let pbx = snapshot(s, device).await?;
            let calls = s.tracker().calls(device);
            Ok(
                json!({"device": device, "calls": calls, "agent": s.tracker().agent(device), "pbx_calls": pbx}),
            )
        }
        "call.make" => {
            let s = slot(gw, r)?;
            let mut a = MakeCallArgument::new(
                DeviceId::dialing(r.str("device")?),
                DeviceId::dialing(r.str("to")?),
            );
            let v = r.variables()?;
            a.user_data = bytes(v.get("uui"));
            a.correlator_data = bytes(v.get("correlator"));
            match csta(s, a).await? {
                Some(OperationResult::MakeCall(m)) => Ok(json!({
                    "pbx_call_id": m.calling_device.call_id().map(|b| ctigate_csta::json::hex(b)),
                })),
                _ => Ok(json!({})),
            }
        }
        "call.answer" => {
            let s = slot(gw, r)?;
            let c = pick(gw, client, s, r, "call", Want::Alerting)?;
            csta(s, AnswerCallArgument::new(c)).await.map(|_| json!({}))
        }
        "call.hold" => {
            let s = slot(gw, r)?;
            let c = pick(gw, client, s, r, "call", Want::Connected)?;
            csta(s, HoldCallArgument::new(c)).await.map(|_| json!({}))
        }
        "call.retrieve" => {
            let s = slot(gw, r)?;
            let c = pick(gw, client, s, r, "call", Want::Held)?;
            csta(s, RetrieveCallArgument::new(c))
                .await
                .map(|_| json!({}))
        }
        "call.hangup" => {
            let s = slot(gw, r)?;
            let c = pick(gw, client, s, r, "call", Want::Any)?;
            csta(s, ClearConnectionArgument::new(c))
                .await
                .map(|_| json!({}))
        }
        "call.clear" => {
            let s = slot(gw, r)?;
            r.str("call")?;
            let c = pick(gw, client, s, r, "call", Want::Any)?;
            csta(s, ClearCallArgument::new(c)).await.map(|_| json!({}))
        }
        "call.consult" => {
            let s = slot(gw, r)?;
            let c = pick(gw, client, s, r, "call", Want::Connected)?;
            let mut a = ConsultationCallArgument::new(c, DeviceId::dialing(r.str("to")?));
            let v = r.variables()?;
            a.user_data = bytes(v.get("uui"));
            a.correlator_data = bytes(v.get("correlator"));
            match csta(s, a).await? {
                Some(OperationResult::ConsultationCall(m)) => Ok(json!({
                    "pbx_call_id": m.initiated_call.call_id().map(|b| ctigate_csta::json::hex(b)),
                })),
                _ => Ok(json!({})),
            }
        }
        "call.transfer" | "call.conference" | "call.alternate" | "call.reconnect" => {
            let s = slot(gw, r)?;
            let held = pick(gw, client, s, r, "call", Want::Held)?;
            let active = pick(gw, client, s, r, "consult", Want::Connected)?;
            let res = match r.op.as_str() {
                "call.transfer" => csta(s, TransferCallArgument::new(held, active)).await?,
                "call.conference" => csta(s, ConferenceCallArgument::new(held, active)).await?,
                "call.alternate" => csta(s, AlternateCallArgument::new(held, active)).await?,
                _ => csta(s, ReconnectCallArgument::new(active, held)).await?,
            };
            let _ = res;
            Ok(json!({}))
        }
        "call.blind_transfer" => {
            let s = slot(gw, r)?;
            let c = pick(gw, client, s, r, "call", Want::Connected)?;
            let a = SingleStepTransArgument::new(c, DeviceId::dialing(r.str("to")?));
            csta(s, a).await.map(|_| json!({}))
        }
        "call.drop_party" => {
            let s = slot(gw, r)?;
            let own = pick(gw, client, s, r, "call", Want::Any)?;
            let party = r.str("party")?;
            let call = own
                .call_id()
                .ok_or_else(|| ApiError::request("unknown_call", "the call has no call id"))?
                .clone();
            let c = ConnectionId::dialing(call, party);
            csta(s, ClearConnectionArgument::new(c))
                .await
                .map(|_| json!({}))
        }
        "call.dtmf" => {
            let s = slot(gw, r)?;
            let digits = r.str("digits")?;
            if digits.len() > 64
                || !digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'A'..=b'D'))
            {
                return Err(ApiError::invalid("digits", "up to 64 of 0-9 * # A-D"));
            }
            let c = pick(gw, client, s, r, "call", Want::Connected)?;
            csta(s, GenerateDigitsArgument::new(c, digits.to_string()))
                .await
                .map(|_| json!({}))
        }
        "agent.login"
        | "agent.ready"
        | "agent.not_ready"
        | "agent.after_call_work"
        | "agent.logout" => agent_op(gw, r).await,
        "agent.state" => {
            let s = slot(gw, r)?;
            let device = r.str("device")?;
            match csta(s, GetAgentStateArgument::new(DeviceId::dialing(device))).await? {
                Some(OperationResult::GetAgentState(g)) => {
                    let e = g.agent_state_list.first();
                    let info = e
                        .and_then(|e| e.agent_info.as_ref())
                        .and_then(|i| i.first());
                    let state = match (e.map(|e| e.logged_on), info) {
                        (Some(true), Some(i)) => agent_state(i.agent_state),
                        (Some(true), None) => ModelAgentState::NotReady,
                        _ => ModelAgentState::LoggedOut,
                    };
                    let agent = AgentView {
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
                    };
                    // what the PBX leaves out keeps its known value: an unchanged agent
                    // gives no event
                    let shown = agent_update(s, device, agent.clone())
                        .await
                        .unwrap_or(agent);
                    Ok(serde_json::to_value(shown).unwrap_or(Value::Null))
                }
                _ => Err(ApiError::new(
                    "switch",
                    "noData",
                    "the PBX gave no agent state",
                )),
            }
        }
        other => Err(ApiError::request(
            "unknown_op",
            format!("unknown op `{other}`; ops: {}", OPS.join(", ")),
        )),
    }
}

/// An agent state from a request's result: the link's event pump publishes it in order
/// with the PBX's events. The state as published (completed from what is known).
async fn agent_update(s: &LinkSlot, device: &str, agent: AgentView) -> Option<AgentView> {
    let (done, applied) = tokio::sync::oneshot::channel();
    let item = PumpIn::Agent {
        device: device.to_string(),
        agent,
        done,
    };
    if s.pump.send(item).await.is_err() {
        warn!(link = %s.name, device, "the event pump has stopped: agent state not published");
        return None;
    }
    applied.await.ok()
}

async fn agent_op(gw: &Arc<Gateway>, r: &Request) -> Result<Value, ApiError> {
    let s = slot(gw, r)?;
    let device = r.str("device")?;
    let (req, state) = match r.op.as_str() {
        "agent.login" => (ReqAgentState::LoggedOn, ModelAgentState::NotReady),
        "agent.ready" => (ReqAgentState::Ready, ModelAgentState::Ready),
        "agent.not_ready" => (ReqAgentState::NotReady, ModelAgentState::NotReady),
        "agent.after_call_work" => (
            ReqAgentState::WorkingAfterCall,
            ModelAgentState::AfterCallWork,
        ),
        _ => (ReqAgentState::LoggedOff, ModelAgentState::LoggedOut),
    };
    let mut a = SetAgentStateArgument::new(DeviceId::dialing(device), req);
    // the agent and group, when the request does not name them, are the known ones when
    // the pump applies the result (`Tracker::fill_agent`)
    let agent = if req == ReqAgentState::LoggedOn {
        let id = r.str("agent")?;
        a.agent_id = Some(Bytes::from(id.as_bytes().to_vec()));
        a.password = r
            .opt_str("password")?
            .map(|p| Bytes::from(p.as_bytes().to_vec()));
        a.group = r.opt_str("group")?.map(DeviceId::dialing);
        id.to_string()
    } else {
        let id = r.opt_str("agent")?;
        a.agent_id = id.map(|id| Bytes::from(id.as_bytes().to_vec()));
        id.unwrap_or_default().to_string()
    };
    a.extensions = reason_data(r)?;
    let res = csta(s, a).await?;
    let pending = match res {
        Some(OperationResult::SetAgentState(x)) => x.pending_agent_state.and_then(|p| p.name()),
        _ => None,
    };
    let reason = r.opt_str("reason")?.map(str::to_string);
    s.tracker().set_pending(
        device,
        pending.and(reason.clone()).map(|reason| (state, reason)),
    );
    if pending.is_none() {
        let view = AgentView {
            agent,
            state,
            reason,
            group: r.opt_str("group")?.map(str::to_string),
        };
        agent_update(s, device, view).await;
    }
    Ok(json!({"pending": pending}))
}

async fn monitor_start(
    gw: &Arc<Gateway>,
    client: ClientId,
    r: &Request,
) -> Result<Value, ApiError> {
    let s = slot(gw, r)?;
    let device = r.str("device")?;
    let after = r.opt_u64("after")?;
    let key = (s.name.clone(), device.to_string());
    if gw.hub.is_subscribed(client, &key) {
        return Ok(
            json!({"device": device, "calls": s.tracker().calls(device), "agent": s.tracker().agent(device), "already": true}),
        );
    }
    {
        let mut refs = s.refs.lock().await;
        let n = refs.get(device).copied().unwrap_or(0);
        if n == 0 && !s.pinned.contains(device) {
            match s.link.monitor(device).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(csta_error(e)),
                Err(e) => return Err(link_error(e)),
            }
        }
        refs.insert(device.to_string(), n + 1);
    }
    if let Err(e) = resync_now(gw, s, device).await {
        warn!(device, error = %e, "snapshot after monitor.start failed; the view is built from events");
    }
    let rep = gw.hub.subscribe(client, key, after);
    let mut m = Map::new();
    m.insert("device".into(), json!(device));
    m.insert("calls".into(), json!(s.tracker().calls(device)));
    m.insert("agent".into(), json!(s.tracker().agent(device)));
    m.insert("seq".into(), json!(gw.hub.last_seq()));
    if after.is_some() {
        m.insert("replayed".into(), json!(rep.replayed));
        m.insert("gap".into(), json!(rep.gap));
    }
    Ok(Value::Object(m))
}

/// A client stopped watching: the PBX monitor ends with the last one.
pub async fn release(s: &LinkSlot, device: &str) {
    let mut refs = s.refs.lock().await;
    let n = refs.get(device).copied().unwrap_or(0);
    if n <= 1 {
        refs.remove(device);
        if !s.pinned.contains(device) {
            match s.link.unmonitor(device).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(device, error = ?e, "the PBX refused the monitor stop"),
                Err(e) => warn!(device, error = %e, "monitor stop failed"),
            }
            s.tracker().forget_device(device);
        }
    } else {
        refs.insert(device.to_string(), n - 1);
    }
}

/// SnapshotDevice: (connection, state) per call.
async fn snapshot(s: &LinkSlot, device: &str) -> Result<Value, ApiError> {
    let list = snapshot_list(s, device).await?;
    Ok(Value::Array(
        list.iter()
            .map(|(c, st)| {
                json!({
                    "pbx_call_id": c.call_id().map(|b| ctigate_csta::json::hex(b)),
                    "state": st.name(),
                })
            })
            .collect(),
    ))
}

type SnapshotList = Vec<(
    ConnectionId,
    ctigate_csta_model::types::LocalConnectionState,
)>;

async fn snapshot_list(s: &LinkSlot, device: &str) -> Result<SnapshotList, ApiError> {
    match csta(s, SnapshotDeviceArgument::new(DeviceId::dialing(device))).await? {
        Some(OperationResult::SnapshotDevice(r)) => match r.data {
            SnapshotData::Data(l) => Ok(l
                .iter()
                .map(|i| {
                    let st = i
                        .compound_states()
                        .and_then(|v| v.last().copied())
                        .unwrap_or(ctigate_csta_model::types::LocalConnectionState::Null);
                    (i.connection_identifier.clone(), st)
                })
                .collect()),
            SnapshotData::ServiceCrossRefId(_) => Ok(Vec::new()),
        },
        _ => Ok(Vec::new()),
    }
}

async fn resync_now(gw: &Gateway, s: &LinkSlot, device: &str) -> Result<(), ApiError> {
    let list = snapshot_list(s, device).await?;
    let outs = s.tracker().resync(device, &list, SystemTime::now());
    gw.publish(&s.name, outs);
    Ok(())
}

/// After a (re)monitor: bring the device's calls up to date.
pub async fn resync(gw: &Gateway, s: &LinkSlot, device: &str) {
    if let Err(e) = resync_now(gw, s, device).await {
        warn!(link = %s.name, device, error = %e, "resync snapshot failed");
    }
}
