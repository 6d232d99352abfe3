//! The tracker driven by the event reports of the sans-IO switch simulator, through a real
//! link session in virtual time (`harness.rs`: the session's invoke ids, the switch's
//! crossRefIDs, every report fed with the device the session's monitor table names), and
//! by hand-written sequences for what a real PBX may do differently (missing, repeated,
//! reordered, unknown events).

use super::harness::Pbx;
use super::*;
use crate::sim::config::{ResultingCallId, SimConfig};
use crate::test_util::hex;
use bytes::Bytes;
use ctigate_csta::events::*;
use ctigate_csta::ops::{
    AnswerCallArgument, ClearConnectionArgument, ConferenceCallArgument, ConsultationCallArgument,
    GenerateDigitsArgument, HoldCallArgument, MakeCallArgument, OperationResult,
    RetrieveCallArgument, SetAgentStateArgument, SingleStepTransArgument, SnapshotState,
    TransferCallArgument,
};
use ctigate_csta::types::{
    CommonArguments, ConnectionId, ConnectionListEntry, DeviceId, EventCause, LocalConnectionState,
    Party, PrivateData, Redirection, ReqAgentState,
};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-11-21T10:00:00.000Z
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_255_200)
}

/// The switch, a real link session to it, and the tracker fed with every event report the
/// session routes (see `harness.rs`): invoke ids and crossRefIDs are the session's and the
/// switch's.
type H = Pbx;

impl Pbx {
    fn at_t0(cfg: SimConfig) -> H {
        Pbx::new(cfg, t0())
    }

    /// `event/cause/state` of the tracker's events for `device` since the last look.
    fn seq(&mut self, device: &str) -> Vec<String> {
        summary(&self.take(device))
    }

    fn conn(&self, device: &str, want: Want) -> ConnectionId {
        self.tracker
            .pick(device, None, want)
            .expect("a call to act on")
    }

    fn login(&mut self, station: &str, agent: &str) {
        let mut arg =
            SetAgentStateArgument::new(DeviceId::dialing(station), ReqAgentState::LoggedOn);
        arg.agent_id = Some(Bytes::from(agent.to_string()));
        arg.password = Some(Bytes::from(agent.to_string()));
        arg.group = Some(DeviceId::dialing("8000"));
        self.ok(arg);
    }

    fn agent_state(&mut self, station: &str, req: ReqAgentState, reason: Option<&str>) {
        let mut arg = SetAgentStateArgument::new(DeviceId::dialing(station), req);
        arg.extensions = reason.map(|r| {
            CommonArguments::private(vec![PrivateData::String(Bytes::from(r.to_string()))])
        });
        self.ok(arg);
    }
}

fn summary(outs: &[Out]) -> Vec<String> {
    outs.iter()
        .map(|o| match o {
            Out::Call {
                event, call, cause, ..
            } => {
                let mut s = event.to_string();
                if let Some(c) = cause {
                    s += &format!("/{c}");
                }
                s + &format!("/{}", call.state)
            }
            Out::Agent { agent, .. } => format!("agent.state/{}", agent.state),
        })
        .collect()
}

fn call(o: &Out) -> &CallView {
    match o {
        Out::Call { call, .. } => call,
        o => panic!("not a call event: {o:?}"),
    }
}

fn extra(o: &Out) -> serde_json::Value {
    match o {
        Out::Call { extra, .. } => serde_json::to_value(extra).unwrap(),
        o => panic!("not a call event: {o:?}"),
    }
}

fn agent(o: &Out) -> &AgentView {
    match o {
        Out::Agent { agent, .. } => agent,
        o => panic!("not an agent event: {o:?}"),
    }
}

fn vars(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

// ---- flows of the simulator ---------------------------------------------------------------

#[test]
fn inbound_acd_call_screen_pop_hold_dtmf_release_and_after_call_work() {
    let mut h = H::at_t0(SimConfig {
        after_call_work_ms: 5000,
        ..SimConfig::default()
    });
    h.monitor("8000");
    h.monitor("205");
    h.control(
        r#"{"cmd":"inbound","ani":"0891234567","dnis":"0800100200","user_data":"case=42","correlator_data":"ivr7"}"#,
    );
    let g = h.take("8000");
    assert_eq!(summary(&g), ["call.queued/enteringDistribution/queued"]);
    let q = call(&g[0]).clone();
    assert_eq!(q.r#type, CallType::Inbound);
    assert_eq!(
        (q.ani.as_deref(), q.dnis.as_deref()),
        (Some("0891234567"), Some("0800100200"))
    );
    assert_eq!(
        q.variables,
        vars(&[("correlator", "ivr7"), ("uui", "case=42")])
    );
    assert_eq!(rfc3339(q.started), "2026-11-21T10:00:00.000Z");

    // the agent logs on and gets ready: the group hands it the call
    h.advance(Duration::from_secs(2));
    h.login("205", "1003");
    h.agent_state("205", ReqAgentState::Ready, None);
    let st = h.take("205");
    assert_eq!(
        summary(&st),
        [
            "agent.state/not_ready",
            "agent.state/ready",
            "call.offering/distributed/offering"
        ]
    );
    assert_eq!(
        agent(&st[1]),
        &AgentView {
            agent: "1003".into(),
            state: AgentState::Ready,
            reason: None,
            group: s("8000"),
        }
    );
    let pop = call(&st[2]).clone();
    assert_eq!(pop.id, q.id, "the group and the agent see one interaction");
    assert_eq!(pop.pbx_call_id, "0001");
    assert_eq!(pop.r#type, CallType::Inbound);
    assert_eq!(pop.ani, s("0891234567"));
    assert_eq!(pop.dnis, s("0800100200"));
    assert_eq!(pop.other, s("0891234567"));
    assert_eq!(pop.parties, strings(&["205", "0891234567"]));
    assert_eq!(pop.variables, q.variables);
    assert_eq!(pop.related, None);
    assert_eq!(rfc3339(pop.started), "2026-11-21T10:00:02.000Z");
    let g = h.take("8000");
    assert_eq!(
        summary(&g),
        [
            "agent.state/not_ready",
            "agent.state/ready",
            "call.diverted/distributed/queued",
            "call.released/distributed/released"
        ]
    );
    assert_eq!(extra(&g[2])["to"], "205");
    assert_eq!(extra(&g[3])["duration_ms"], 2000);
    assert!(h.tracker.calls("8000").is_empty());
    assert_eq!(h.tracker.calls("205"), std::slice::from_ref(&pop));

    // answer (the connection the API would pick), hold, retrieve, DTMF
    let c = h.conn("205", Want::Alerting);
    assert_eq!(c, ConnectionId::dialing([0, 1], "205"));
    assert_eq!(h.tracker.connection("205", &pop.id), Some(c.clone()));
    h.advance(Duration::from_secs(1));
    h.ok(AnswerCallArgument::new(c));
    let st = h.take("205");
    assert_eq!(
        summary(&st),
        ["call.connected/normal/connected", "agent.state/busy"]
    );
    assert_eq!(
        call(&st[0]).answered.map(rfc3339).as_deref(),
        Some("2026-11-21T10:00:03.000Z")
    );
    assert_eq!(
        h.tracker.pick("205", None, Want::Alerting),
        Err(PickError::NoSuchCallState)
    );
    h.ok(HoldCallArgument::new(h.conn("205", Want::Connected)));
    h.ok(RetrieveCallArgument::new(h.conn("205", Want::Held)));
    h.ok(GenerateDigitsArgument::new(
        h.conn("205", Want::Connected),
        "12#".into(),
    ));
    let st = h.take("205");
    assert_eq!(
        summary(&st),
        [
            "call.held/normal/held",
            "call.retrieved/normal/connected",
            "call.dtmf/connected"
        ]
    );
    assert_eq!(extra(&st[2])["digits"], "12#");
    assert!(st.iter().all(|o| call(o).id == pop.id));

    // the caller hangs up: released once, with its duration; after-call work, then ready
    h.advance(Duration::from_secs(60));
    h.control(r#"{"cmd":"hangup","device":"0891234567"}"#);
    let st = h.take("205");
    assert_eq!(
        summary(&st),
        [
            "call.released/normalClearing/released",
            "agent.state/after_call_work"
        ]
    );
    assert_eq!(extra(&st[0])["duration_ms"], 61_000);
    assert_eq!(
        call(&st[0]).ended.map(rfc3339).as_deref(),
        Some("2026-11-21T10:01:03.000Z")
    );
    assert_eq!(call(&st[0]).id, pop.id);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.seq("205"), ["agent.state/ready"]);
    assert!(h.tracker.calls("205").is_empty());
    assert!(
        h.tracker.interactions.is_empty(),
        "a cleared call is forgotten"
    );
    assert!(h.tracker.by_call.is_empty());
}

#[test]
fn internal_call() {
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("201");
    h.monitor("202");
    h.ok(MakeCallArgument::new(
        DeviceId::dialing("201"),
        DeviceId::dialing("202"),
    ));
    let a = h.take("201");
    assert_eq!(
        summary(&a),
        [
            "call.dialing/makeCall/dialing",
            "call.updated/dialing",
            "call.ringback/makeCall/ringback"
        ]
    );
    assert_eq!(call(&a[0]).dnis, None);
    assert_eq!(call(&a[1]).dnis, s("202"));
    let b = h.take("202");
    assert_eq!(summary(&b), ["call.offering/makeCall/offering"]);
    let (ca, cb) = (call(&a[2]), call(&b[0]));
    assert_eq!(ca.id, cb.id);
    for v in [ca, cb] {
        assert_eq!(v.r#type, CallType::Internal);
        assert_eq!(
            (v.ani.as_deref(), v.dnis.as_deref()),
            (Some("201"), Some("202"))
        );
    }
    assert_eq!(ca.other, s("202"));
    assert_eq!(cb.other, s("201"));
    assert_eq!(ca.parties, strings(&["201", "202"]));
    assert_eq!(cb.parties, strings(&["202", "201"]));
    h.advance(Duration::from_millis(1500));
    h.ok(AnswerCallArgument::new(h.conn("202", Want::Alerting)));
    assert_eq!(h.seq("201"), ["call.connected/normal/connected"]);
    assert_eq!(h.seq("202"), ["call.connected/normal/connected"]);
    h.advance(Duration::from_secs(10));
    h.ok(ClearConnectionArgument::new(h.conn("201", Want::Any)));
    let a = h.take("201");
    let b = h.take("202");
    // connectionCleared then callCleared: released once each
    assert_eq!(summary(&a), ["call.released/normalClearing/released"]);
    assert_eq!(summary(&b), ["call.released/normalClearing/released"]);
    assert_eq!(extra(&a[0])["duration_ms"], 11_500);
    assert_eq!(extra(&b[0])["duration_ms"], 11_500);
    assert!(h.tracker.interactions.is_empty());
}

#[test]
fn outbound_call_and_a_busy_far_end() {
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("201");
    h.ok(MakeCallArgument::new(
        DeviceId::dialing("201"),
        DeviceId::dialing("0891234567"),
    ));
    let a = h.take("201");
    assert_eq!(
        summary(&a),
        [
            "call.dialing/makeCall/dialing",
            "call.updated/dialing",
            "call.ringback/makeCall/ringback"
        ]
    );
    assert_eq!(call(&a[1]).r#type, CallType::Outbound);
    assert_eq!(call(&a[2]).other, s("0891234567"));
    h.advance(Duration::from_secs(2));
    let a = h.take("201");
    assert_eq!(summary(&a), ["call.connected/normal/connected"]);
    assert_eq!(call(&a[0]).r#type, CallType::Outbound);
    assert_eq!(
        call(&a[0]).answered.map(rfc3339).as_deref(),
        Some("2026-11-21T10:00:02.000Z")
    );

    h.control(r#"{"cmd":"far_end","number":"0711000000","behaviour":"busy"}"#);
    h.monitor("202");
    h.ok(MakeCallArgument::new(
        DeviceId::dialing("202"),
        DeviceId::dialing("0711000000"),
    ));
    let b = h.take("202");
    assert_eq!(
        summary(&b),
        [
            "call.dialing/makeCall/dialing",
            "call.updated/dialing",
            "call.failed/busy/failed"
        ]
    );
    assert_eq!(call(&b[2]).other, s("0711000000"));
    assert_eq!(
        h.tracker.pick("202", None, Want::Connected),
        Err(PickError::NoSuchCallState),
        "a failed call is not connected"
    );
    h.ok(ClearConnectionArgument::new(h.conn("202", Want::Any)));
    assert_eq!(h.seq("202"), ["call.released/normalClearing/released"]);
}

#[test]
fn call_to_a_busy_station_fails_and_the_station_sees_nothing() {
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("201");
    h.monitor("203");
    h.control(r#"{"cmd":"busy","device":"203","on":true}"#);
    h.ok(MakeCallArgument::new(
        DeviceId::dialing("201"),
        DeviceId::dialing("203"),
    ));
    let a = h.take("201");
    assert_eq!(
        summary(&a),
        [
            "call.dialing/makeCall/dialing",
            "call.updated/dialing",
            "call.failed/busy/failed"
        ]
    );
    assert_eq!(call(&a[2]).r#type, CallType::Internal);
    assert!(h.take("203").is_empty());
    h.ok(ClearConnectionArgument::new(h.conn("201", Want::Any)));
    assert_eq!(h.seq("201"), ["call.released/normalClearing/released"]);
}

/// Inbound call answered at 201 with user data, 201 consults 202 and 202 answers.
fn warm_call(h: &mut H) -> CallView {
    h.control(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201","user_data":"u1"}"#);
    h.ok(AnswerCallArgument::new(h.conn("201", Want::Alerting)));
    let a = h.take("201");
    assert_eq!(
        summary(&a),
        [
            "call.offering/newCall/offering",
            "call.connected/normal/connected"
        ]
    );
    let first = call(&a[1]).clone();
    h.ok(ConsultationCallArgument::new(
        h.conn("201", Want::Connected),
        DeviceId::dialing("202"),
    ));
    let a = h.take("201");
    assert_eq!(
        summary(&a),
        [
            "call.held/consultation/held",
            "call.dialing/consultation/dialing",
            "call.updated/dialing",
            "call.ringback/consultation/ringback"
        ]
    );
    let consult = call(&a[3]).clone();
    assert_ne!(consult.id, first.id);
    assert_eq!(consult.r#type, CallType::Consult);
    assert_eq!(consult.related.as_deref(), Some(first.id.as_str()));
    assert_eq!(
        consult.variables,
        vars(&[("uui", "u1")]),
        "a consultation starts with its interaction's variables"
    );
    let b = h.take("202");
    assert_eq!(summary(&b), ["call.offering/consultation/offering"]);
    assert_eq!(call(&b[0]).id, consult.id);
    assert_eq!(call(&b[0]).r#type, CallType::Consult);
    assert_eq!(call(&b[0]).related.as_deref(), Some(first.id.as_str()));
    h.ok(AnswerCallArgument::new(h.conn("202", Want::Alerting)));
    assert_eq!(h.seq("201"), ["call.connected/normal/connected"]);
    assert_eq!(h.seq("202"), ["call.connected/normal/connected"]);
    // transfer / conference need the held and the active call
    assert_eq!(
        h.tracker.pick("201", None, Want::Any),
        Err(PickError::Ambiguous)
    );
    assert_eq!(
        h.tracker.pick("201", Some(&first.id), Want::Connected),
        Ok(ConnectionId::dialing(hex(&first.pbx_call_id), "201")),
        "a named call is taken whatever its state"
    );
    assert_eq!(
        h.tracker.pick("201", Some("nope"), Want::Any),
        Err(PickError::UnknownCall)
    );
    first
}

#[test]
fn consultation_then_transfer_keeps_the_interaction() {
    for policy in [
        ResultingCallId::Held,
        ResultingCallId::Active,
        ResultingCallId::New,
    ] {
        let mut h = H::at_t0(SimConfig {
            resulting_call_id: policy,
            ..SimConfig::default()
        });
        h.monitor("201");
        h.monitor("202");
        let first = warm_call(&mut h);
        let consult_id = h.tracker.calls("202")[0].id.clone();
        let held = h.conn("201", Want::Held);
        let active = h.conn("201", Want::Connected);
        let rc = match h.ok(TransferCallArgument::new(held, active)) {
            Some(OperationResult::TransferCall(r)) => {
                ctigate_csta_model::value::hex(r.transferred_call.call_id().unwrap())
            }
            r => panic!("{r:?}"),
        };
        let a = h.take("201");
        assert_eq!(
            summary(&a),
            [
                "call.transferred/transfer/released",
                "call.released/transfer/released",
                "call.released/transfer/released"
            ],
            "{policy:?}"
        );
        assert_eq!(call(&a[0]).id, first.id);
        assert_eq!(extra(&a[0])["to"], "202");
        assert_eq!(call(&a[1]).id, first.id);
        assert_eq!(call(&a[2]).id, consult_id);
        let b = h.take("202");
        assert_eq!(
            summary(&b),
            ["call.transferred/transfer/connected"],
            "{policy:?}"
        );
        let t = call(&b[0]);
        assert_eq!(t.id, first.id, "the target's view became the interaction");
        assert_eq!(extra(&b[0])["replaces"], consult_id.as_str());
        assert_eq!(extra(&b[0])["from"], "201");
        assert_eq!(t.pbx_call_id, rc);
        assert_eq!(t.variables, vars(&[("uui", "u1")]));
        assert_eq!(t.r#type, CallType::Inbound);
        assert_eq!(t.related, None);
        assert_eq!(t.ani, s("0891234567"));
        assert_eq!(t.other, s("0891234567"));
        assert_eq!(t.parties, strings(&["202", "0891234567"]));
        assert!(h.tracker.calls("201").is_empty());
        assert_eq!(
            h.tracker.connection("202", &first.id),
            Some(ConnectionId::dialing(hex(&rc), "202"))
        );
        // the caller hangs up: 202 sees the interaction end
        h.control(r#"{"cmd":"hangup","device":"0891234567"}"#);
        let b = h.take("202");
        assert_eq!(summary(&b), ["call.released/normalClearing/released"]);
        assert_eq!(call(&b[0]).id, first.id);
        assert!(h.take("201").is_empty());
        assert!(h.tracker.interactions.is_empty(), "{policy:?}");
    }
}

#[test]
fn conference_and_a_party_leaving() {
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("201");
    h.monitor("202");
    let first = warm_call(&mut h);
    let consult_id = h.tracker.calls("202")[0].id.clone();
    let held = h.conn("201", Want::Held);
    let active = h.conn("201", Want::Connected);
    h.ok(ConferenceCallArgument::new(held, active));
    let a = h.take("201");
    let b = h.take("202");
    assert_eq!(summary(&a), ["call.conferenced/conference/connected"]);
    assert_eq!(summary(&b), ["call.conferenced/conference/connected"]);
    for (o, me) in [(&a[0], "201"), (&b[0], "202")] {
        let v = call(o);
        assert_eq!(v.id, first.id);
        assert_eq!(v.pbx_call_id, first.pbx_call_id);
        assert_eq!(v.variables, vars(&[("uui", "u1")]));
        assert_eq!(extra(o)["replaces"], consult_id.as_str());
        assert_eq!(extra(o)["added"], "202");
        let mut p = strings(&["0891234567", "201", "202"]);
        p.retain(|x| x != me);
        p.insert(0, me.to_string());
        assert_eq!(v.parties, p);
    }
    assert_eq!(h.tracker.calls("201").len(), 1, "one call after the merge");
    // 202 leaves; the call goes on between 201 and the caller
    h.ok(ClearConnectionArgument::new(h.conn("202", Want::Any)));
    let a = h.take("201");
    assert_eq!(summary(&a), ["call.party_left/normalClearing/connected"]);
    assert_eq!(extra(&a[0])["party"], "202");
    assert_eq!(call(&a[0]).parties, strings(&["201", "0891234567"]));
    assert_eq!(call(&a[0]).other, s("0891234567"));
    assert_eq!(h.seq("202"), ["call.released/normalClearing/released"]);
    h.ok(HoldCallArgument::new(h.conn("201", Want::Connected)));
    h.ok(RetrieveCallArgument::new(h.conn("201", Want::Held)));
    assert_eq!(
        h.seq("201"),
        ["call.held/normal/held", "call.retrieved/normal/connected"]
    );
    h.control(r#"{"cmd":"hangup","device":"0891234567"}"#);
    assert_eq!(h.seq("201"), ["call.released/normalClearing/released"]);
    assert!(h.tracker.interactions.is_empty());
}

#[test]
fn single_step_transfer() {
    for policy in [ResultingCallId::Held, ResultingCallId::New] {
        let mut h = H::at_t0(SimConfig {
            resulting_call_id: policy,
            ..SimConfig::default()
        });
        h.monitor("201");
        h.monitor("203");
        h.control(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201","correlator_data":"c9"}"#);
        h.ok(AnswerCallArgument::new(h.conn("201", Want::Alerting)));
        let first = call(&h.take("201")[1]).clone();
        h.ok(SingleStepTransArgument::new(
            h.conn("201", Want::Connected),
            DeviceId::dialing("203"),
        ));
        let a = h.take("201");
        assert_eq!(
            summary(&a),
            [
                "call.transferred/singleStepTransfer/released",
                "call.released/singleStepTransfer/released"
            ]
        );
        assert_eq!(extra(&a[0])["to"], "203");
        let c = h.take("203");
        assert_eq!(summary(&c), ["call.offering/singleStepTransfer/offering"]);
        let v = call(&c[0]);
        assert_eq!(v.id, first.id, "{policy:?}");
        assert_eq!(v.variables, vars(&[("correlator", "c9")]));
        assert_eq!(v.r#type, CallType::Inbound);
        assert_eq!(v.other, s("0891234567"));
        h.ok(AnswerCallArgument::new(h.conn("203", Want::Alerting)));
        assert_eq!(h.seq("203"), ["call.connected/normal/connected"]);
        h.ok(ClearConnectionArgument::new(h.conn("203", Want::Any)));
        assert_eq!(h.seq("203"), ["call.released/normalClearing/released"]);
        assert!(h.take("201").is_empty());
        assert!(h.tracker.interactions.is_empty());
    }
}

#[test]
fn agent_states_from_events_and_request_results() {
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("205");
    h.monitor("8000");
    let now = h.time();
    h.login("205", "1004");
    // the API layer reports the request's result too: nothing new
    let same = AgentView {
        agent: "1004".into(),
        state: AgentState::NotReady,
        reason: None,
        group: s("8000"),
    };
    assert!(h.tracker.set_agent("205", same.clone(), now).is_empty());
    h.agent_state("205", ReqAgentState::Ready, None);
    // not ready with a reason: the request's result first, then the switch's event
    let brk = AgentView {
        state: AgentState::NotReady,
        reason: s("break"),
        ..same.clone()
    };
    let o = h.tracker.set_agent("205", brk.clone(), now);
    assert_eq!(summary(&o), ["agent.state/not_ready"]);
    assert_eq!(agent(&o[0]), &brk);
    h.agent_state("205", ReqAgentState::NotReady, None);
    h.agent_state("205", ReqAgentState::WorkingAfterCall, Some("wrap"));
    h.agent_state("205", ReqAgentState::LoggedOff, None);
    let st = h.take("205");
    assert_eq!(
        summary(&st),
        [
            "agent.state/not_ready",
            "agent.state/ready",
            "agent.state/after_call_work",
            "agent.state/logged_out"
        ]
    );
    assert_eq!(agent(&st[2]).reason, s("wrap"), "reason from private data");
    assert_eq!(agent(&st[3]).reason, None);
    assert_eq!(
        h.tracker.agent("205"),
        Some(AgentView {
            agent: "1004".into(),
            state: AgentState::LoggedOut,
            reason: None,
            group: s("8000"),
        })
    );
    // the group's monitor sees its members' changes (the not-ready event included: the
    // request result only concerned the station)
    assert_eq!(
        h.seq("8000"),
        [
            "agent.state/not_ready",
            "agent.state/ready",
            "agent.state/not_ready",
            "agent.state/after_call_work",
            "agent.state/logged_out"
        ]
    );
    assert_eq!(h.tracker.agent("8000"), None);
    h.tracker.forget_device("205");
    assert_eq!(h.tracker.agent("205"), None);
}

// ---- hand-written sequences ------------------------------------------------------------------

fn cid(call: u16, dev: &str) -> ConnectionId {
    ConnectionId::dialing(call.to_be_bytes(), dev)
}

fn p(n: &str) -> Party {
    Party::dialing(n)
}

fn delivered(call: u16, at: &str, from: &str, to: &str, cause: EventCause) -> Event {
    let mut e = DeliveredEvent::new(
        cid(call, at),
        p(at),
        p(from),
        p(to),
        Redirection::NotKnown,
        cause,
    );
    e.local_connection_info = Some(LocalConnectionState::Alerting);
    e.user_data = Some(Bytes::from_static(b"case=7"));
    e.into()
}

fn established(call: u16, at: &str, from: &str, to: &str) -> Event {
    EstablishedEvent::new(
        cid(call, at),
        p(at),
        p(from),
        p(to),
        Redirection::NotKnown,
        EventCause::NORMAL,
    )
    .into()
}

fn cleared(call: u16, dev: &str) -> Event {
    ConnectionClearedEvent::new(cid(call, dev), p(dev), EventCause::NORMAL_CLEARING).into()
}

fn call_cleared(call: u16) -> Event {
    CallClearedEvent::new(
        ConnectionId::call_only(call.to_be_bytes()),
        EventCause::NORMAL_CLEARING,
    )
    .into()
}

fn feed(t: &mut Tracker, dev: &str, evs: &[Event], at: SystemTime) -> Vec<String> {
    let mut out = Vec::new();
    for e in evs {
        out.extend(t.on_event(dev, e, at));
    }
    summary(&out)
}

fn tracker() -> Tracker {
    Tracker::new(TrackerConfig::default())
}

#[test]
fn repeated_or_late_delivered_never_pops_twice() {
    let mut t = tracker();
    let d = delivered(1, "201", "0891234567", "201", EventCause::NEW_CALL);
    assert_eq!(
        feed(&mut t, "201", &[d.clone(), d.clone()], t0()),
        ["call.offering/newCall/offering"]
    );
    let e = established(1, "201", "0891234567", "201");
    assert_eq!(
        feed(&mut t, "201", &[e.clone(), d.clone(), e], t0()),
        ["call.connected/normal/connected"]
    );
    // queued, diverted to the device, then delivered twice
    let mut t = tracker();
    let mut q = QueuedEvent::new(
        cid(2, "201"),
        p("201"),
        p("0891234567"),
        p("8000"),
        Redirection::NotKnown,
        EventCause::NEW_CALL,
    );
    q.local_connection_info = Some(LocalConnectionState::Queued);
    let d = delivered(2, "201", "0891234567", "8000", EventCause::NEW_CALL);
    assert_eq!(
        feed(&mut t, "201", &[q.into(), d.clone(), d], t0()),
        [
            "call.queued/newCall/queued",
            "call.offering/newCall/offering"
        ]
    );
}

#[test]
fn answered_without_delivered_still_pops_once() {
    let mut t = tracker();
    let out = t.on_event("201", &established(1, "201", "0891234567", "201"), t0());
    assert_eq!(
        summary(&out),
        [
            "call.offering/normal/offering",
            "call.connected/normal/connected"
        ]
    );
    assert_eq!(call(&out[0]).r#type, CallType::Inbound);
    // and the caller's side, when only established is seen: connected, no pop
    let mut t = tracker();
    assert_eq!(
        feed(&mut t, "201", &[established(1, "202", "201", "202")], t0()),
        ["call.connected/normal/connected"]
    );
}

#[test]
fn released_exactly_once_whatever_the_order() {
    for order in [
        vec![cleared(1, "201"), call_cleared(1)],
        vec![call_cleared(1), cleared(1, "201")],
        vec![cleared(1, "0891234567"), call_cleared(1), call_cleared(1)],
    ] {
        let mut t = tracker();
        let mut evs = vec![delivered(
            1,
            "201",
            "0891234567",
            "201",
            EventCause::NEW_CALL,
        )];
        evs.extend(order);
        let out = feed(&mut t, "201", &evs, t0());
        assert_eq!(
            out,
            [
                "call.offering/newCall/offering",
                "call.released/normalClearing/released"
            ]
        );
        assert!(t.interactions.is_empty());
    }
    // clear events for calls never seen give nothing
    let mut t = tracker();
    assert!(feed(&mut t, "201", &[cleared(9, "201"), call_cleared(9)], t0()).is_empty());
}

#[test]
fn a_reused_call_id_is_a_new_interaction() {
    let mut t = tracker();
    let d = delivered(1, "201", "0891234567", "201", EventCause::NEW_CALL);
    let a = t.on_event("201", &d, t0());
    t.on_event("201", &call_cleared(1), t0());
    let b = t.on_event("201", &d, t0());
    assert_eq!(summary(&b), ["call.offering/newCall/offering"]);
    assert_ne!(call(&a[0]).id, call(&b[0]).id);

    // the device starts a call with the callID of a call whose end it missed
    let si = |c: u16| -> Event {
        ServiceInitiatedEvent::new(cid(c, "201"), p("201"), EventCause::MAKE_CALL).into()
    };
    let out = t.on_event("201", &si(1), t0());
    assert_eq!(
        summary(&out),
        [
            "call.released/superseded/released",
            "call.dialing/makeCall/dialing"
        ]
    );
    assert_ne!(call(&out[0]).id, call(&out[1]).id);

    // a call that went on elsewhere (diverted to an unmonitored device): seen again at
    // once it is the same interaction, much later the callID is a reused one
    let mut t = tracker();
    let mut q = QueuedEvent::new(
        cid(5, "8000"),
        p("8000"),
        p("0891234567"),
        p("8000"),
        Redirection::NotKnown,
        EventCause::NEW_CALL,
    );
    q.local_connection_info = Some(LocalConnectionState::Queued);
    let q: Event = q.into();
    let dv: Event = DivertedEvent::new(
        cid(5, "8000"),
        p("8000"),
        p("206"),
        Redirection::NotKnown,
        EventCause::NORMAL,
    )
    .into();
    let first = call(&t.on_event("8000", &q, t0())[0]).id.clone();
    t.on_event("8000", &dv, t0());
    let d = delivered(5, "207", "0891234567", "8000", EventCause::NEW_CALL);
    let again = t.on_event("207", &d, t0() + Duration::from_secs(5));
    assert_eq!(call(&again[0]).id, first);
    t.forget_device("207");
    let later = t.on_event("8000", &q, t0() + Duration::from_secs(600));
    assert_ne!(call(&later[0]).id, first);
}

#[test]
fn unknown_and_unrelated_events_give_nothing() {
    let mut t = tracker();
    let other = Event::Other {
        family: "",
        name: "",
        value: ctigate_csta_model::Value::Null,
    };
    let private: Event = PrivateEvent::new(ctigate_csta_model::types::PrivateData::Private).into();
    let held_elsewhere: Event = HeldEvent::new(cid(1, "202"), p("202"), EventCause::NORMAL).into();
    let digits: Event = DigitsGeneratedEvent::new(cid(1, "201"), "1".into()).into();
    let call_only: Event = DeliveredEvent::new(
        ConnectionId::device_only(ctigate_csta_model::types::LocalDeviceId::Dynamic(
            Bytes::from_static(b"x"),
        )),
        p("201"),
        p("202"),
        p("201"),
        Redirection::NotKnown,
        EventCause::NEW_CALL,
    )
    .into();
    assert!(feed(
        &mut t,
        "201",
        &[other, private, held_elsewhere, digits, call_only],
        t0()
    )
    .is_empty());
    assert!(t.calls("201").is_empty());
}

#[test]
fn events_at_other_devices_of_a_call() {
    // 201 called 202 (events of its start missed); 202 forwards to 203; the far end holds
    let mut t = tracker();
    let out = feed(
        &mut t,
        "201",
        &[
            delivered(1, "202", "201", "202", EventCause::NEW_CALL),
            DivertedEvent::new(
                cid(1, "202"),
                p("202"),
                p("203"),
                Redirection::NotKnown,
                EventCause::from_name("redirected").unwrap(),
            )
            .into(),
            delivered(
                1,
                "203",
                "201",
                "202",
                EventCause::from_name("redirected").unwrap(),
            ),
            established(1, "203", "201", "202"),
            HeldEvent::new(cid(1, "203"), p("203"), EventCause::NORMAL).into(),
        ],
        t0(),
    );
    assert_eq!(
        out,
        [
            "call.ringback/newCall/ringback",
            "call.diverted/redirected/ringback",
            "call.connected/normal/connected"
        ]
    );
    let v = &t.calls("201")[0];
    assert_eq!(v.other, s("203"));
    assert_eq!(v.parties, strings(&["201", "203"]));
    assert_eq!(v.r#type, CallType::Internal);
    assert_eq!(v.variables, vars(&[("uui", "case=7")]));
}

#[test]
fn user_data_that_is_not_text_is_hex() {
    let mut t = tracker();
    let mut e = DeliveredEvent::new(
        cid(1, "201"),
        p("201"),
        Party::Restricted,
        p("201"),
        Redirection::NotKnown,
        EventCause::NEW_CALL,
    );
    e.user_data = Some(Bytes::from_static(&[0xc3, 0x28]));
    let out = t.on_event("201", &e.into(), t0());
    let v = call(&out[0]);
    assert_eq!(v.variables, vars(&[("uui_hex", "c328")]));
    assert_eq!(v.ani, None);
    assert_eq!(v.r#type, CallType::Inbound, "an unknown caller is outside");
    let info: Event = {
        let mut i = CallInformationEvent::new(cid(1, "201"), p("201"));
        i.correlator_data = Some(Bytes::from_static(b"c1"));
        i.into()
    };
    let out = t.on_event("201", &info, t0());
    assert_eq!(summary(&out), ["call.updated/offering"]);
    assert_eq!(call(&out[0]).variables["correlator"], "c1");
}

#[test]
fn call_type_from_the_switch_and_the_rule() {
    let rule = InternalRule {
        max_len: 4,
        prefixes: vec!["49301234".into()],
    };
    assert!(rule.is_internal("201"));
    assert!(rule.is_internal("4930123455"));
    assert!(!rule.is_internal("08912"));
    assert!(!rule.is_internal(""));
    let mut t = Tracker::new(TrackerConfig {
        link: "x".into(),
        internal: rule,
        ..TrackerConfig::default()
    });
    // a long extension number, placed here: internal to internal
    let out = feed(
        &mut t,
        "4930123456",
        &[OriginatedEvent::new(
            cid(1, "4930123456"),
            p("4930123456"),
            p("4930123499"),
            EventCause::MAKE_CALL,
        )
        .into()],
        t0(),
    );
    assert_eq!(out, ["call.dialing/makeCall/dialing"]);
    assert_eq!(t.calls("4930123456")[0].r#type, CallType::Internal);
    // a short number the switch marks as public national: outside
    let national = Party::Device(DeviceId::from(
        ctigate_csta_model::types::DeviceIdentifier::ExplicitPublic {
            ton: ctigate_csta_model::types::PublicTon::National,
            number: "911".into(),
        },
    ));
    let d: Event = DeliveredEvent::new(
        cid(2, "201"),
        p("201"),
        national,
        p("201"),
        Redirection::NotKnown,
        EventCause::NEW_CALL,
    )
    .into();
    let out = t.on_event("201", &d, t0());
    assert_eq!(call(&out[0]).r#type, CallType::Inbound);
    // a trunk call (networkCallingDevice) from a short number
    let mut e = DeliveredEvent::new(
        cid(3, "202"),
        p("202"),
        p("112"),
        p("202"),
        Redirection::NotKnown,
        EventCause::NEW_CALL,
    );
    e.network_calling_device = Some(p("112"));
    let out = t.on_event("202", &e.into(), t0());
    assert_eq!(call(&out[0]).r#type, CallType::Inbound);
}

#[test]
fn resync_releases_vanished_calls_and_adds_new_ones() {
    let mut t = tracker();
    feed(
        &mut t,
        "201",
        &[
            delivered(1, "201", "0891234567", "201", EventCause::NEW_CALL),
            delivered(2, "201", "0891234568", "201", EventCause::NEW_CALL),
        ],
        t0(),
    );
    let out = t.resync(
        "201",
        &[
            (cid(2, "201"), LocalConnectionState::Connected),
            (cid(3, "201"), LocalConnectionState::Hold),
            (cid(4, "201"), LocalConnectionState::Null),
        ],
        t0() + Duration::from_secs(30),
    );
    assert_eq!(
        summary(&out),
        [
            "call.released/resync/released",
            "call.connected/resync/connected",
            "call.held/resync/held"
        ]
    );
    assert_eq!(call(&out[0]).pbx_call_id, "0001");
    assert_eq!(extra(&out[0])["duration_ms"], 30_000);
    assert_eq!(t.calls("201").len(), 2);
    // the same snapshot again: nothing
    assert!(t
        .resync(
            "201",
            &[
                (cid(2, "201"), LocalConnectionState::Connected),
                (cid(3, "201"), LocalConnectionState::Hold),
            ],
            t0(),
        )
        .is_empty());
    assert_eq!(
        t.pick("201", None, Want::Held),
        Ok(cid(3, "201")),
        "the snapshot's connection"
    );
}

#[test]
fn pick_needs_one_call_in_the_state() {
    let mut t = tracker();
    assert_eq!(
        t.pick("201", None, Want::Alerting),
        Err(PickError::NoSuchCallState)
    );
    feed(
        &mut t,
        "201",
        &[
            delivered(1, "201", "0891234567", "201", EventCause::NEW_CALL),
            delivered(2, "201", "0891234568", "201", EventCause::NEW_CALL),
        ],
        t0(),
    );
    assert_eq!(
        t.pick("201", None, Want::Alerting),
        Err(PickError::Ambiguous)
    );
    assert_eq!(PickError::Ambiguous.code(), "no_such_call_state");
    assert_eq!(PickError::UnknownCall.code(), "unknown_call");
    let id = t.calls("201")[1].id.clone();
    assert_eq!(t.pick("201", Some(&id), Want::Held), Ok(cid(2, "201")));
}

/// `n` new calls ringing at 201; how many were released (evicted) to make room.
fn new_calls_at_201(t: &mut Tracker, n: u16) -> usize {
    (0..n)
        .map(|c| {
            let ev = delivered(c, "201", "0891234567", "201", EventCause::NEW_CALL);
            t.on_event("201", &ev, t0())
                .iter()
                .filter(|o| o.event() == "call.released")
                .count()
        })
        .sum()
}

#[test]
fn memory_is_bounded() {
    let mut t = tracker();
    let evicted = new_calls_at_201(&mut t, 200);
    assert_eq!(t.calls("201").len(), MAX_CALLS_PER_DEVICE);
    assert_eq!(evicted, 200 - MAX_CALLS_PER_DEVICE);
    // the bound is configuration (`[[link]] max_calls_per_device`)
    let mut t = Tracker::new(TrackerConfig {
        max_calls_per_device: 5,
        ..TrackerConfig::default()
    });
    assert_eq!(new_calls_at_201(&mut t, 20), 15);
    assert_eq!(t.calls("201").len(), 5);
    t.audit().expect("within its configured bound");
    // calls diverted away from a group to devices nobody monitors
    let mut t = tracker();
    for c in 0..3000u16 {
        let mut q = QueuedEvent::new(
            cid(c, "8000"),
            p("8000"),
            p("0891234567"),
            p("8000"),
            Redirection::NotKnown,
            EventCause::NEW_CALL,
        );
        q.local_connection_info = Some(LocalConnectionState::Queued);
        t.on_event("8000", &q.into(), t0());
        let dv: Event = DivertedEvent::new(
            cid(c, "8000"),
            p("8000"),
            p("206"),
            Redirection::NotKnown,
            EventCause::NORMAL,
        )
        .into();
        t.on_event("8000", &dv, t0());
    }
    assert!(t.interactions.len() <= 1024, "{}", t.interactions.len());
    assert!(t.by_call.len() <= 1024);
    t.forget_device("8000");
}

#[test]
fn call_view_json() {
    let mut t = Tracker::new(TrackerConfig {
        link: "pbx1".into(),
        internal: InternalRule::default(),
        ..TrackerConfig::default()
    });
    let out = t.on_event(
        "201",
        &delivered(0x42, "201", "0891234567", "201", EventCause::NEW_CALL),
        t0() + Duration::from_millis(123),
    );
    let v = serde_json::to_value(call(&out[0])).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);
    assert_eq!(
        v,
        serde_json::json!({
            "id": id, "pbx_call_id": "0042", "state": "offering", "type": "inbound",
            "ani": "0891234567", "dnis": "201", "other": "0891234567",
            "parties": ["201", "0891234567"], "related": null,
            "variables": {"uui": "case=7"},
            "started": "2026-11-21T10:00:00.123Z", "answered": null, "ended": null,
            "visit": 1
        })
    );
    let a = serde_json::to_value(AgentView {
        agent: "1001".into(),
        state: AgentState::AfterCallWork,
        reason: None,
        group: s("8000"),
    })
    .unwrap();
    assert_eq!(
        a,
        serde_json::json!({"agent": "1001", "state": "after_call_work", "reason": null, "group": "8000"})
    );
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// Random sequences of events over a few calls and devices: no panic, never a second
/// offering or release for a view, every event for a view that exists.
#[test]
fn random_sequences_keep_the_invariants() {
    let devs = ["201", "202", "8000", "0891234567"];
    let causes = [
        EventCause::NEW_CALL,
        EventCause::CONSULTATION,
        EventCause::TRANSFER,
        EventCause::NORMAL,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let mut t = tracker();
        // (device, id) -> the view exists (offered?)
        let mut live: HashMap<(String, String), bool> = HashMap::new();
        for step in 0..60 {
            let c: u16 = *rng.pick(&[1, 2, 3]);
            let a = *rng.pick(&devs);
            let b = *rng.pick(&devs);
            let cause = *rng.pick(&causes);
            let e: Event = match rng.next() % 16 {
                0 => delivered(c, a, b, a, cause),
                1 => established(c, a, b, a),
                2 => cleared(c, a),
                3 => call_cleared(c),
                4 => HeldEvent::new(cid(c, a), p(a), cause).into(),
                5 => RetrievedEvent::new(cid(c, a), p(a), cause).into(),
                6 => ServiceInitiatedEvent::new(cid(c, a), p(a), cause).into(),
                7 => OriginatedEvent::new(cid(c, a), p(a), p(b), cause).into(),
                8 => {
                    let c2: u16 = *rng.pick(&[1, 2, 3, 4]);
                    let mut e = TransferredEvent::new(
                        cid(c, a),
                        p(a),
                        p(b),
                        vec![ConnectionListEntry {
                            new_connection: Some(cid(c2, b)),
                            old_connection: Some(cid(c, b)),
                            endpoint: Some(p(b)),
                            ..Default::default()
                        }],
                        cause,
                    );
                    e.secondary_old_call = Some(cid(*rng.pick(&[1, 2, 3]), a));
                    e.into()
                }
                9 => {
                    let mut e = ConferencedEvent::new(
                        cid(c, a),
                        p(a),
                        p(b),
                        vec![
                            ConnectionListEntry {
                                new_connection: Some(cid(c, b)),
                                endpoint: Some(p(b)),
                                ..Default::default()
                            },
                            ConnectionListEntry {
                                new_connection: Some(cid(c, a)),
                                endpoint: Some(p(a)),
                                ..Default::default()
                            },
                        ],
                        cause,
                    );
                    e.secondary_old_call = Some(cid(*rng.pick(&[1, 2, 3]), a));
                    e.into()
                }
                10 => {
                    DivertedEvent::new(cid(c, a), p(a), p(b), Redirection::NotKnown, cause).into()
                }
                11 => FailedEvent::new(
                    cid(c, a),
                    p(a),
                    p(b),
                    p(a),
                    Redirection::NotKnown,
                    EventCause::BUSY,
                )
                .into(),
                12 => QueuedEvent::new(cid(c, a), p(a), p(b), p(a), Redirection::NotKnown, cause)
                    .into(),
                13 => DigitsGeneratedEvent::new(cid(c, a), "5".into()).into(),
                14 => AgentReadyEvent::new(p(a)).into(),
                _ => {
                    let snap = [(cid(c, a), LocalConnectionState::Connected)];
                    let dev = *rng.pick(&devs);
                    let now = t0() + Duration::from_secs(step);
                    let outs = t.resync(dev, &snap, now);
                    check(&mut live, &outs, &t);
                    continue;
                }
            };
            let dev = *rng.pick(&devs);
            let outs = t.on_event(dev, &e, t0() + Duration::from_secs(step));
            check(&mut live, &outs, &t);
        }
        for d in devs {
            t.forget_device(d);
        }
        assert!(t.interactions.len() <= 1024);
    }

    fn check(live: &mut HashMap<(String, String), bool>, outs: &[Out], t: &Tracker) {
        for o in outs {
            let Out::Call {
                event,
                device,
                call,
                extra,
                ..
            } = o
            else {
                continue;
            };
            for id in &extra.replaces {
                live.remove(&(device.clone(), id.clone()));
            }
            let key = (device.clone(), call.id.clone());
            match event.as_str() {
                "call.offering" => {
                    let offered = live.entry(key).or_insert(false);
                    assert!(!*offered, "a second offering: {o:?}");
                    *offered = true;
                }
                "call.released" => {
                    assert!(live.remove(&key).is_some(), "released twice: {o:?}");
                }
                _ => {
                    live.entry(key).or_insert(false);
                }
            }
        }
        // what the tracker holds is what the events said
        for ((dev, id), _) in live.iter() {
            assert!(
                t.calls(dev).iter().any(|v| &v.id == id),
                "{dev} {id} should be live: {:?}",
                t.calls(dev)
            );
        }
        let n: usize = t.devices.values().map(|d| d.calls.len()).sum();
        assert_eq!(n, live.len());
        // reference counts match the views
        let mut refs: HashMap<&str, usize> = HashMap::new();
        for d in t.devices.values() {
            for v in &d.calls {
                assert!(t.interactions.contains_key(&v.interaction), "{v:?}");
                *refs.entry(v.interaction.as_str()).or_default() += 1;
            }
        }
        for (id, i) in &t.interactions {
            assert_eq!(i.views, refs.get(id.as_str()).copied().unwrap_or(0), "{id}");
        }
    }
}

#[test]
fn events_follow_the_new_cross_references_after_a_switch_restart() {
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("201");
    h.monitor("202");
    // the switch restarts but keeps the link: the session monitors both devices again
    // under the cross references the switch assigns now
    h.control(r#"{"cmd":"fault","fault":"restart","keep_links":true}"#);
    let again: Vec<&str> = h
        .link_events
        .iter()
        .filter_map(|e| match e {
            crate::link::LinkEvent::Monitored {
                device,
                again: true,
            } => Some(device.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(again, ["201", "202"], "{:?}", h.link_events);
    h.ok(MakeCallArgument::new(
        DeviceId::dialing("201"),
        DeviceId::dialing("202"),
    ));
    assert_eq!(
        h.seq("201"),
        [
            "call.dialing/makeCall/dialing",
            "call.updated/dialing",
            "call.ringback/makeCall/ringback"
        ]
    );
    assert_eq!(h.seq("202"), ["call.offering/makeCall/offering"]);
}

#[test]
fn a_far_end_that_rings_answers_only_when_told() {
    // the virtual-time half of gateway_e2e's `ring` check: every timer due within an hour
    // fires, and still nothing answers
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("201");
    h.control(r#"{"cmd":"far_end","number":"0891234567","behaviour":"ring"}"#);
    h.ok(MakeCallArgument::new(
        DeviceId::dialing("201"),
        DeviceId::dialing("0891234567"),
    ));
    assert_eq!(
        h.seq("201"),
        [
            "call.dialing/makeCall/dialing",
            "call.updated/dialing",
            "call.ringback/makeCall/ringback"
        ]
    );
    h.advance(Duration::from_secs(3600));
    assert!(h.take("201").is_empty());
    assert!(h.link.is_associated());
    h.control(r#"{"cmd":"answer","device":"0891234567"}"#);
    let a = h.take("201");
    assert_eq!(summary(&a), ["call.connected/normal/connected"]);
    assert_eq!(
        call(&a[0]).answered.map(crate::model::rfc3339).as_deref(),
        Some("2026-11-21T11:00:00.000Z")
    );
}

#[test]
fn every_snapshot_form_confirms_a_matching_view_and_rebuilds_a_lost_one() {
    use crate::sim::config::SnapshotForm;
    for form in [
        SnapshotForm::Compound,
        SnapshotForm::Simple,
        SnapshotForm::Unknown,
        SnapshotForm::CrossRef,
    ] {
        let mut cfg = SimConfig::default();
        cfg.link.snapshot_form = form;
        let mut h = H::at_t0(cfg);
        h.monitor("201");
        h.monitor("202");
        h.control(r#"{"cmd":"dial","from":"201","to":"202"}"#);
        h.control(r#"{"cmd":"answer","device":"202"}"#);
        h.control(r#"{"cmd":"hold","device":"201"}"#);
        let before = (h.tracker.calls("201"), h.tracker.calls("202"));
        h.out.clear();
        // the switch agrees with the view: nothing
        assert_eq!(summary(&h.resync("201")), Vec::<String>::new(), "{form:?}");
        assert_eq!(summary(&h.resync("202")), Vec::<String>::new(), "{form:?}");
        assert_eq!((h.tracker.calls("201"), h.tracker.calls("202")), before);
        // a gateway that knows nothing (restarted): the calls come back, complete
        h.tracker = Tracker::new(TrackerConfig::default());
        let a = h.resync("201");
        assert_eq!(summary(&a), ["call.held/resync/held"], "{form:?}");
        let v = call(&a[0]);
        assert_eq!(
            (v.ani.as_deref(), v.dnis.as_deref(), v.other.as_deref()),
            (Some("201"), Some("202"), Some("202")),
            "{form:?}: SnapshotCall gives the parties"
        );
        assert_eq!(v.parties, ["201", "202"], "{form:?}");
        assert_eq!(v.r#type, CallType::Internal);
        let b = h.resync("202");
        assert_eq!(summary(&b), ["call.connected/resync/connected"], "{form:?}");
        assert_eq!(call(&b[0]).other.as_deref(), Some("201"), "{form:?}");
        assert_eq!(call(&b[0]).id, v.id, "{form:?}: one interaction");
        // and live events go on from there
        h.control(r#"{"cmd":"hangup","device":"202"}"#);
        assert_eq!(
            h.seq("202"),
            ["call.released/normalClearing/released"],
            "{form:?}"
        );
        assert_eq!(
            h.seq("201"),
            ["call.released/normalClearing/released"],
            "{form:?}"
        );
        assert_eq!(h.tracker.resyncs_in_progress(), 0);
    }
}

#[test]
fn a_resync_keeps_a_failed_call_failed_and_the_busy_target_sees_nothing() {
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("201");
    h.monitor("202");
    h.control(r#"{"cmd":"busy","device":"202","on":true}"#);
    h.ok(MakeCallArgument::new(
        DeviceId::dialing("201"),
        DeviceId::dialing("202"),
    ));
    assert_eq!(
        h.seq("201").last().map(String::as_str),
        Some("call.failed/busy/failed")
    );
    assert!(h.seq("202").is_empty());
    // the switch has 201 connected (busy tone) and 202's connection failed
    assert_eq!(summary(&h.resync("201")), Vec::<String>::new());
    assert_eq!(summary(&h.resync("202")), Vec::<String>::new());
    assert_eq!(h.tracker.calls("201")[0].state, CallState::Failed);
    assert!(h.tracker.calls("202").is_empty());
}

#[test]
fn events_after_the_mark_win_over_the_snapshot() {
    let mut t = tracker();
    feed(
        &mut t,
        "201",
        &[
            delivered(1, "201", "0891234567", "201", EventCause::NEW_CALL),
            delivered(3, "201", "0891234568", "201", EventCause::NEW_CALL),
        ],
        t0(),
    );
    let mark = t.begin_resync("201");
    // while the snapshot is asked for: call 1 answered, call 2 arrives, call 3 ends
    feed(
        &mut t,
        "201",
        &[
            established(1, "201", "0891234567", "201"),
            delivered(2, "201", "0891234569", "201", EventCause::NEW_CALL),
            cleared(3, "201"),
        ],
        t0(),
    );
    // the snapshot was taken before those: 1 and 3 alerting, no 2
    let snap = [
        SnapEntry::new(
            cid(1, "201"),
            SnapshotState::Known(LocalConnectionState::Alerting),
        ),
        SnapEntry::new(
            cid(3, "201"),
            SnapshotState::Known(LocalConnectionState::Alerting),
        ),
    ];
    assert!(t.apply_resync(mark, &snap, t0()).is_empty());
    let states: Vec<(String, CallState)> = t
        .calls("201")
        .into_iter()
        .map(|c| (c.pbx_call_id, c.state))
        .collect();
    assert_eq!(
        states,
        [
            ("0001".to_string(), CallState::Connected),
            ("0002".to_string(), CallState::Offering)
        ]
    );
    assert_eq!(t.resyncs_in_progress(), 0);
    // a mark that got no answer is forgotten
    let m = t.begin_resync("201");
    t.cancel_resync(m);
    assert!(t.apply_resync(m, &[], t0()).is_empty(), "nothing released");
    assert_eq!(t.calls("201").len(), 2);
}

#[test]
fn unknown_states_and_incomplete_answers_release_nothing() {
    use ctigate_csta::types::LocalDeviceId;
    let mut t = tracker();
    feed(
        &mut t,
        "201",
        &[
            delivered(1, "201", "0891234567", "201", EventCause::NEW_CALL),
            delivered(2, "201", "0891234568", "201", EventCause::NEW_CALL),
        ],
        t0(),
    );
    // an entry without its callID: the answer cannot prove call 2 gone
    let mark = t.begin_resync("201");
    let snap = [
        SnapEntry::new(cid(1, "201"), SnapshotState::Unknown),
        SnapEntry::new(
            ConnectionId::device_only(LocalDeviceId::Static(DeviceId::dialing("201"))),
            SnapshotState::Known(LocalConnectionState::Connected),
        ),
    ];
    assert!(t.apply_resync(mark, &snap, t0()).is_empty());
    assert_eq!(t.calls("201").len(), 2);
    // a complete answer without call 2 proves it gone; call 1's unknown state is kept
    let mark = t.begin_resync("201");
    let out = t.apply_resync(
        mark,
        &[SnapEntry::new(cid(1, "201"), SnapshotState::Unknown)],
        t0(),
    );
    assert_eq!(summary(&out), ["call.released/resync/released"]);
    assert_eq!(call(&out[0]).pbx_call_id, "0002");
    assert_eq!(t.calls("201")[0].state, CallState::Offering);
    // null is gone too
    let mark = t.begin_resync("201");
    let out = t.apply_resync(
        mark,
        &[SnapEntry::new(
            cid(1, "201"),
            SnapshotState::Known(LocalConnectionState::Null),
        )],
        t0(),
    );
    assert_eq!(summary(&out), ["call.released/resync/released"]);
    assert!(t.calls("201").is_empty());
}

/// Fuzz finding (`tracker`, fuzz/regressions/tracker/offered_twice_after_conference): a
/// device offered an inbound call that it then conferences with a call it placed kept the
/// placed call's view, not yet offered, so a late Delivered of the merged call popped it a
/// second time. The merged view is offered when any view merged into it was.
#[test]
fn a_late_delivered_after_a_conference_does_not_pop_again() {
    let mut t = tracker();
    // the call it placed is the primary old call: its interaction survives
    let mut conf = ConferencedEvent::new(
        cid(1, "202"),
        p("202"),
        p("204"),
        vec![
            ConnectionListEntry {
                new_connection: Some(cid(1, "202")),
                endpoint: Some(p("202")),
                ..Default::default()
            },
            ConnectionListEntry {
                new_connection: Some(cid(1, "204")),
                endpoint: Some(p("204")),
                ..Default::default()
            },
            ConnectionListEntry {
                new_connection: Some(cid(1, "0891234567")),
                endpoint: Some(p("0891234567")),
                ..Default::default()
            },
        ],
        EventCause::CONFERENCE,
    );
    conf.secondary_old_call = Some(cid(2, "202"));
    let evs = [
        delivered(2, "202", "0891234567", "202", EventCause::NEW_CALL),
        established(2, "202", "0891234567", "202"),
        HeldEvent::new(cid(2, "202"), p("202"), EventCause::NORMAL).into(),
        OriginatedEvent::new(cid(1, "202"), p("202"), p("204"), EventCause::MAKE_CALL).into(),
        conf.into(),
        delivered(1, "202", "0891234567", "202", EventCause::NEW_CALL),
    ];
    let out = feed(&mut t, "202", &evs, t0());
    assert_eq!(
        out,
        [
            "call.offering/newCall/offering",
            "call.connected/normal/connected",
            "call.held/normal/held",
            "call.dialing/makeCall/dialing",
            "call.conferenced/conference/connected",
        ]
    );
    assert_eq!(t.calls("202").len(), 1);
    t.audit().unwrap();
}

#[test]
fn a_call_that_comes_back_is_offered_once_per_visit_and_shows_its_far_party() {
    comes_back(true);
}

#[test]
fn a_call_that_comes_back_unwatched_in_between_shows_its_far_party() {
    // 202 not monitored: 201 sees the call go and come back, nothing of what was between
    comes_back(false);
}

/// An inbound call at 201, blind-transferred to 202 and back (202 watched or not).
fn comes_back(watch_202: bool) {
    let mut h = H::at_t0(SimConfig::default());
    h.monitor("201");
    if watch_202 {
        h.monitor("202");
    }
    h.control(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#);
    h.control(r#"{"cmd":"answer","device":"201"}"#);
    let a = h.take("201");
    let first = call(&a[0]).clone();
    assert_eq!(
        (first.visit, first.other.as_deref()),
        (1, Some("0891234567"))
    );
    // 201 -> 202 (blind), 202 answers, 202 -> 201 (blind), 201 answers
    h.ok(SingleStepTransArgument::new(
        h.conn("201", Want::Connected),
        DeviceId::dialing("202"),
    ));
    h.control(r#"{"cmd":"answer","device":"202"}"#);
    h.ok(SingleStepTransArgument::new(
        conn202(&h),
        DeviceId::dialing("201"),
    ));
    let b = h.take("201");
    assert_eq!(
        summary(&b),
        [
            "call.transferred/singleStepTransfer/released",
            "call.released/singleStepTransfer/released",
            "call.offering/singleStepTransfer/offering"
        ]
    );
    let back = call(&b[2]);
    assert_eq!(back.id, first.id, "the same interaction");
    assert_eq!(back.visit, 2, "a second visit");
    assert_eq!(back.other.as_deref(), Some("0891234567"), "{back:?}");
    assert!(back.parties.iter().any(|p| p == "0891234567"), "{back:?}");
    assert_eq!(back.parties[0], "201");
    h.control(r#"{"cmd":"answer","device":"201"}"#);
    let c = h.take("201");
    assert_eq!(summary(&c), ["call.connected/normal/connected"]);
    assert_eq!(call(&c[0]).other.as_deref(), Some("0891234567"));
    assert_eq!(call(&c[0]).visit, 2);
}

/// 202's connection in the only call (from the switch: 202 may not be monitored).
fn conn202(h: &H) -> ConnectionId {
    let c = h.sw.model.calls.values().next().expect("one call");
    c.conn("202")
}

#[test]
fn a_call_that_ended_before_the_tracker_knew_it_is_not_brought_back_by_the_resync() {
    // found by tests/chaos.rs (switch_aborts_the_association_mid_call): a call that appeared
    // during a link outage is in the snapshot; it ends (ConnectionCleared, or CallCleared)
    // before the answer is applied, while the tracker has no view of it yet. The resync
    // must not create it: it would stay in the view while the switch no longer has it.
    let mut t = tracker();
    let mark = t.begin_resync("201");
    feed(&mut t, "201", &[cleared(4, "201"), call_cleared(5)], t0());
    let snap = [
        SnapEntry::new(
            cid(4, "201"),
            SnapshotState::Known(LocalConnectionState::Alerting),
        ),
        SnapEntry::new(
            cid(5, "201"),
            SnapshotState::Known(LocalConnectionState::Connected),
        ),
    ];
    assert!(t.apply_resync(mark, &snap, t0()).is_empty());
    assert!(t.calls("201").is_empty(), "{:?}", t.calls("201"));
}

#[test]
fn an_event_after_the_mark_wins_even_when_it_changed_nothing() {
    // found by tests/chaos.rs (switch_closes_the_link_mid_call, CHAOS_SEED=123): the call
    // was held and retrieved during the outage; the snapshot saw it held, the Retrieved
    // event came after it (the view already said connected: nothing changed). The snapshot
    // must not make it held: the switch has it connected.
    let mut t = tracker();
    feed(
        &mut t,
        "201",
        &[
            delivered(1, "201", "0891234567", "201", EventCause::NEW_CALL),
            established(1, "201", "0891234567", "201"),
        ],
        t0(),
    );
    let mark = t.begin_resync("201");
    feed(
        &mut t,
        "201",
        &[RetrievedEvent::new(cid(1, "201"), p("201"), EventCause::NORMAL).into()],
        t0(),
    );
    let snap = [SnapEntry::new(
        cid(1, "201"),
        SnapshotState::Known(LocalConnectionState::Hold),
    )];
    assert!(t.apply_resync(mark, &snap, t0()).is_empty());
    assert_eq!(t.calls("201")[0].state, CallState::Connected);
}
