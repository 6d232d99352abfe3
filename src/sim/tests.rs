//! Scenario tests of the sans-IO switch: PDUs in, PDUs out, virtual time.

use super::config::{ResultingCallId, SimConfig};
use super::switch::{AssocId, Output, Switch};
use crate::test_util::hex;
use bytes::Bytes;
use ctigate_csta::acse::{AarqParams, Acse, AcseKind};
use ctigate_csta::apdu::Apdu;
use ctigate_csta::framing::Frame;
use ctigate_csta::rose::{Problem, Rose};
use ctigate_csta::rose_ext::{FromInvoke, FromReturnResult, ToInvoke};
use ctigate_csta_model::events::{Event, EventReport};
use ctigate_csta_model::ops::{
    AnswerCallArgument, Argument, ClearConnectionArgument, ConferenceCallArgument,
    ConsultationCallArgument, GenerateDigitsArgument, GetAgentStateArgument, HoldCallArgument,
    MakeCallArgument, MonitorStartArgument, MonitorStopArgument, OperationResult,
    RetrieveCallArgument, SetAgentStateArgument, SingleStepTransArgument, SnapshotData,
    SnapshotDeviceArgument, SnapshotState, TransferCallArgument,
};
use ctigate_csta_model::types::{
    ConnectionId, CstaObject, DeviceId, LocalConnectionState, MonitorCrossRefId, Party,
    ReqAgentState, UniversalFailure,
};
use std::time::{Duration, Instant};

/// What the switch answered.
#[derive(Debug)]
enum Answer {
    Result(Box<Option<OperationResult>>),
    Error(UniversalFailure),
    Reject(#[allow(dead_code)] Problem),
}

struct H {
    sw: Switch,
    now: Instant,
    next_id: i64,
    /// PDUs / closes not yet looked at, per association.
    seen: Vec<(AssocId, Output)>,
}

impl H {
    fn new(cfg: SimConfig) -> H {
        H {
            sw: Switch::new(cfg),
            now: Instant::now(),
            next_id: 1,
            seen: Vec::new(),
        }
    }

    fn pump(&mut self) {
        while let Some(o) = self.sw.poll_output() {
            let a = match &o {
                Output::Pdu { assoc, .. }
                | Output::Raw { assoc, .. }
                | Output::Close { assoc, .. } => *assoc,
            };
            self.seen.push((a, o));
        }
    }

    fn take(&mut self, assoc: AssocId) -> Vec<Output> {
        self.pump();
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.seen)
            .into_iter()
            .partition(|(a, _)| *a == assoc);
        self.seen = rest;
        mine.into_iter().map(|(_, o)| o).collect()
    }

    fn take_pdus(&mut self, assoc: AssocId) -> Vec<Apdu> {
        self.take(assoc)
            .into_iter()
            .filter_map(|o| match o {
                Output::Pdu { pdu, .. } => Some(Apdu::decode(&pdu).expect("switch output decodes")),
                _ => None,
            })
            .collect()
    }

    fn send(&mut self, assoc: AssocId, apdu: Apdu) {
        let b = Bytes::from(apdu.encode().expect("test PDU encodes"));
        self.sw.receive(assoc, Frame::Pdu(b), self.now);
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.sw.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.sw.handle_timeout(self.now);
        }
        self.now = end;
        self.sw.handle_timeout(self.now);
    }

    fn connect(&mut self) -> AssocId {
        self.sw.connect("test", self.now).expect("accepted")
    }

    /// Connect and associate with the default AARQ.
    fn associate(&mut self) -> AssocId {
        self.associate_on(0)
    }

    /// Connect on `side` and associate with the default AARQ.
    fn associate_on(&mut self, side: usize) -> AssocId {
        let a = self
            .sw
            .connect_on(side, "test", self.now)
            .expect("accepted");
        self.send(a, Apdu::Acse(Acse::aarq(&AarqParams::default()).unwrap()));
        let out = self.take_pdus(a);
        match &out[..] {
            // the AARE, then systemStatus(normal) at once, as real switches send
            [Apdu::Acse(x), Apdu::Rose(Rose::Invoke(st))]
                if x.kind == AcseKind::Aare
                    && x.result() == Some(0)
                    && st.opcode.local() == Some(211) =>
            {
                // answered like any application does (it counts as a keep-alive)
                let id = st.invoke_id.value().expect("an invoke id");
                self.sw
                    .receive(a, Frame::Pdu(system_status_result(id)), self.now);
                assert!(self.take(a).is_empty());
            }
            [Apdu::Acse(x)]
                if x.kind == AcseKind::Aare
                    && x.result() == Some(0)
                    && !self.sw.cfg.link.status_at_association => {}
            o => panic!("expected an accepting AARE and systemStatus, got {o:?}"),
        }
        a
    }

    fn request(&mut self, assoc: AssocId, arg: impl Into<Argument>) -> Answer {
        let id = self.next_id;
        self.next_id += 1;
        let arg: Argument = arg.into();
        self.send(assoc, Apdu::Rose(arg.invoke(id)));
        self.pump();
        let pos = self
            .seen
            .iter()
            .position(|(a, o)| {
                *a == assoc
                    && matches!(o, Output::Pdu { pdu, .. }
                        if matches!(Apdu::decode(pdu), Ok(Apdu::Rose(r)) if r.invoke_id().value() == Some(id) && !matches!(r, Rose::Invoke(_))))
            })
            .expect("an answer to the request");
        let (_, o) = self.seen.remove(pos);
        let Output::Pdu { pdu, .. } = o else {
            unreachable!()
        };
        match Apdu::decode(&pdu).unwrap() {
            Apdu::Rose(Rose::ReturnResult(r)) => {
                Answer::Result(Box::new(OperationResult::from_return_result(&r).unwrap()))
            }
            Apdu::Rose(Rose::ReturnError(e)) => {
                Answer::Error(UniversalFailure::from_value(&e.parameter.unwrap().value).unwrap())
            }
            Apdu::Rose(Rose::Reject(r)) => Answer::Reject(r.problem),
            a => panic!("{a:?}"),
        }
    }

    fn ok(&mut self, assoc: AssocId, arg: impl Into<Argument>) -> Option<OperationResult> {
        match self.request(assoc, arg) {
            Answer::Result(r) => *r,
            a => panic!("expected a result, got {a:?}"),
        }
    }

    fn fails(&mut self, assoc: AssocId, arg: impl Into<Argument>) -> String {
        match self.request(assoc, arg) {
            Answer::Error(f) => f.to_string(),
            a => panic!("expected an error, got {a:?}"),
        }
    }

    fn monitor(&mut self, assoc: AssocId, device: &str) -> Bytes {
        match self.ok(
            assoc,
            MonitorStartArgument::new(CstaObject::Device(DeviceId::dialing(device))),
        ) {
            Some(OperationResult::MonitorStart(r)) => r.cross_ref_identifier.0,
            r => panic!("{r:?}"),
        }
    }

    /// Event reports sent to `assoc` since the last look: (xref, event).
    fn events(&mut self, assoc: AssocId) -> Vec<(Bytes, Event)> {
        self.take_pdus(assoc)
            .into_iter()
            .filter_map(|a| match a {
                Apdu::Rose(Rose::Invoke(i))
                    if i.opcode.local() == Some(ctigate_csta_model::opcode::CSTA_EVENT_REPORT) =>
                {
                    let r = EventReport::from_invoke(&i).expect("typed event");
                    Some((r.xref.0, r.event))
                }
                _ => None,
            })
            .collect()
    }
}

fn conn(call: &[u8], dev: &str) -> ConnectionId {
    ConnectionId::dialing(call, dev)
}

fn call_of(r: Option<OperationResult>) -> Bytes {
    match r {
        Some(OperationResult::MakeCall(m)) => m.calling_device.call_id().unwrap().clone(),
        Some(OperationResult::ConsultationCall(m)) => m.initiated_call.call_id().unwrap().clone(),
        r => panic!("{r:?}"),
    }
}

/// `name/cause/state` of each event, for compact sequence assertions.
fn summary(evs: &[(Bytes, Event)], xref: &Bytes) -> Vec<String> {
    evs.iter()
        .filter(|(x, _)| x == xref)
        .map(|(_, e)| {
            let (cause, st) = match e {
                Event::ServiceInitiated(e) => (e.cause.name(), e.local_connection_info),
                Event::Originated(e) => (e.cause.name(), e.local_connection_info),
                Event::Delivered(e) => (e.cause.name(), e.local_connection_info),
                Event::Established(e) => (e.cause.name(), e.local_connection_info),
                Event::ConnectionCleared(e) => (e.cause.name(), e.local_connection_info),
                Event::CallCleared(e) => (e.cause.name(), None),
                Event::Held(e) => (e.cause.name(), e.local_connection_info),
                Event::Retrieved(e) => (e.cause.name(), e.local_connection_info),
                Event::Queued(e) => (e.cause.name(), e.local_connection_info),
                Event::Diverted(e) => (e.cause.name(), e.local_connection_info),
                Event::Failed(e) => (e.cause.name(), e.local_connection_info),
                Event::Transferred(e) => (e.cause.name(), e.local_connection_info),
                Event::Conferenced(e) => (e.cause.name(), e.local_connection_info),
                _ => (None, None),
            };
            let mut s = e.name().to_string();
            if let Some(c) = cause {
                s += &format!("/{c}");
            }
            if let Some(st) = st.and_then(|s| s.name()) {
                s += &format!("/{st}");
            }
            s
        })
        .collect()
}

fn login(h: &mut H, a: AssocId, station: &str, agent: &str) {
    let mut arg = SetAgentStateArgument::new(DeviceId::dialing(station), ReqAgentState::LoggedOn);
    arg.agent_id = Some(Bytes::from(agent.to_string()));
    arg.password = Some(Bytes::from(agent.to_string()));
    arg.group = Some(DeviceId::dialing("8000"));
    h.ok(a, arg);
    h.ok(
        a,
        SetAgentStateArgument::new(DeviceId::dialing(station), ReqAgentState::Ready),
    );
}

#[test]
fn association_rules() {
    let mut cfg = SimConfig::default();
    cfg.link.password = Some("secret".into());
    let mut h = H::new(cfg);
    // wrong context: AARE rejected-permanent, diagnostic application-context-name-not-supported
    let a = h.connect();
    let p = AarqParams {
        context: "1.2.3".parse().unwrap(),
        ..AarqParams::default()
    };
    h.send(a, Apdu::Acse(Acse::aarq(&p).unwrap()));
    let out = h.take(a);
    let Output::Pdu { pdu, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let Apdu::Acse(aare) = Apdu::decode(pdu).unwrap() else {
        panic!()
    };
    assert_eq!(aare.result(), Some(1));
    assert_eq!(aare.diagnostic(), Some(("service-user", 2)));
    assert!(
        matches!(&out[1], Output::Close { reason, .. } if reason.contains("application-context-name-not-supported"))
    );
    // no credentials / wrong / right
    for (pw, want) in [
        (None, Some(14)),
        (Some("nope"), Some(13)),
        (Some("secret"), None),
    ] {
        let a = h.connect();
        let p = AarqParams {
            authentication: pw.map(str::to_string),
            ..AarqParams::default()
        };
        h.send(a, Apdu::Acse(Acse::aarq(&p).unwrap()));
        let out = h.take_pdus(a);
        let Apdu::Acse(aare) = &out[0] else { panic!() };
        match want {
            Some(d) => assert_eq!(aare.diagnostic(), Some(("service-user", d))),
            None => assert_eq!(aare.result(), Some(0)),
        }
    }
    // ROSE before the association: ABRT and close
    let a = h.connect();
    h.send(
        a,
        Apdu::Rose(
            Argument::from(MonitorStartArgument::new(CstaObject::Device(
                DeviceId::dialing("201"),
            )))
            .invoke(1),
        ),
    );
    let out = h.take(a);
    assert!(
        matches!(&out[0], Output::Pdu { pdu, .. } if pdu[0] == 0x64),
        "{out:?}"
    );
    assert!(matches!(out[1], Output::Close { .. }));
    // RLRQ -> RLRE and close
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    h.send(a, Apdu::Acse(Acse::rlrq(0)));
    let out = h.take(a);
    assert!(matches!(&out[0], Output::Pdu { pdu, .. } if pdu[..] == hex("63 03 80 01 00")[..]));
    assert!(matches!(out[1], Output::Close { .. }));
}

#[test]
fn internal_call_event_sequence() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    let x1 = h.monitor(a, "201");
    let x2 = h.monitor(a, "202");
    assert_eq!(&x1[..], [0, 0, 0, 1]);
    let call = call_of(h.ok(
        a,
        MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("202")),
    ));
    assert_eq!(&call[..], [0, 1]);
    let evs = h.events(a);
    assert_eq!(
        summary(&evs, &x1),
        [
            "serviceInitiated/makeCall/initiated",
            "originated/makeCall/connected",
            "delivered/makeCall/connected"
        ]
    );
    assert_eq!(summary(&evs, &x2), ["delivered/makeCall/alerting"]);
    let Event::Delivered(d) = &evs.last().unwrap().1 else {
        panic!()
    };
    assert_eq!(d.connection, conn(&call, "202"));
    assert_eq!(d.calling_device, Party::dialing("201"));
    assert_eq!(d.called_device, Party::dialing("202"));
    h.ok(a, AnswerCallArgument::new(conn(&call, "202")));
    let evs = h.events(a);
    assert_eq!(summary(&evs, &x1), ["established/normal/connected"]);
    assert_eq!(summary(&evs, &x2), ["established/normal/connected"]);
    h.ok(a, ClearConnectionArgument::new(conn(&call, "201")));
    let evs = h.events(a);
    assert_eq!(
        summary(&evs, &x1),
        [
            "connectionCleared/normalClearing/null",
            "callCleared/normalClearing"
        ]
    );
    assert_eq!(
        summary(&evs, &x2),
        [
            "connectionCleared/normalClearing/connected",
            "callCleared/normalClearing"
        ]
    );
    // the call is gone
    assert_eq!(
        h.fails(a, AnswerCallArgument::new(conn(&call, "202"))),
        "operation/invalidCallID"
    );
}

#[test]
fn errors_a_switch_gives() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    let mon = |d: &str| MonitorStartArgument::new(CstaObject::Device(DeviceId::dialing(d)));
    assert_eq!(h.fails(a, mon("999")), "operation/invalidDeviceID");
    assert_eq!(
        h.fails(
            a,
            MakeCallArgument::new(DeviceId::dialing("999"), DeviceId::dialing("202"))
        ),
        "operation/invalidCallingDeviceID"
    );
    assert_eq!(
        h.fails(
            a,
            MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("999"))
        ),
        "operation/invalidCalledDeviceID"
    );
    assert_eq!(
        h.fails(a, AnswerCallArgument::new(conn(&[0x12, 0x34], "201"))),
        "operation/invalidCallID"
    );
    let call = call_of(h.ok(
        a,
        MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("202")),
    ));
    assert_eq!(
        h.fails(a, AnswerCallArgument::new(conn(&call, "203"))),
        "operation/invalidConnectionID"
    );
    assert_eq!(
        h.fails(a, AnswerCallArgument::new(conn(&call, "201"))),
        "stateIncompatibility/noCallToAnswer"
    );
    assert_eq!(
        h.fails(a, HoldCallArgument::new(conn(&call, "202"))),
        "stateIncompatibility/invalidConnectionState"
    );
    assert_eq!(
        h.fails(a, RetrieveCallArgument::new(conn(&call, "201"))),
        "stateIncompatibility/noHeldCall"
    );
    assert_eq!(
        h.fails(
            a,
            MonitorStopArgument::new(MonitorCrossRefId::new([9, 9, 9, 9]))
        ),
        "operation/invalidMonitorCrossRefID"
    );
    assert_eq!(
        h.fails(
            a,
            MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("203"))
        ),
        "stateIncompatibility/invalidCallingDeviceState"
    );
    // unknown operation, undecodable argument: ROSE rejects, the link stays
    h.send(a, Apdu::decode(&hex("a1 06 02 01 63 02 01 03")).unwrap());
    let out = h.take(a);
    assert!(
        matches!(&out[0], Output::Pdu { pdu, .. } if pdu[..] == hex("a4 06 02 01 63 81 01 01")[..]),
        "{out:?}"
    );
    h.sw.receive(
        a,
        Frame::Pdu(hex("a1 09 02 01 64 02 01 02 30 01 ff")),
        h.now,
    );
    let out = h.take(a);
    assert!(
        matches!(&out[0], Output::Pdu { pdu, .. } if pdu[..] == hex("a4 06 02 01 64 81 01 02")[..]),
        "{out:?}"
    );
    // monitor limit per association
    let mut cfg = SimConfig::default();
    cfg.link.max_monitors = 2;
    let mut h = H::new(cfg);
    let a = h.associate();
    h.monitor(a, "201");
    h.monitor(a, "202");
    assert_eq!(
        h.fails(a, mon("203")),
        "subscribedResourceAvailability/objectMonitorLimitExceeded"
    );
}

#[test]
fn inbound_acd_call_with_agent_and_after_call_work() {
    let cfg = SimConfig {
        after_call_work_ms: 5000,
        ..SimConfig::default()
    };
    let mut h = H::new(cfg);
    let a = h.associate();
    let xg = h.monitor(a, "8000");
    let xs = h.monitor(a, "205");
    // the call queues while nobody is ready
    let r = h.sw.control(
        super::control::parse(
            r#"{"cmd":"inbound","ani":"0891234567","dnis":"0800100200","user_data":"case=42","correlator_data":"ivr7"}"#,
        )
        .unwrap(),
        h.now,
    );
    assert_eq!(r["ok"], true, "{r}");
    let call = hex(r["call"].as_str().unwrap());
    let evs = h.events(a);
    assert_eq!(summary(&evs, &xg), ["queued/enteringDistribution/queued"]);
    login(&mut h, a, "205", "1003");
    let evs = h.events(a);
    // agent events go to the station and the group; the call is diverted at the group
    // and delivered at the agent's station
    assert_eq!(
        evs.iter()
            .map(|(x, e)| (x == &xg, e.name()))
            .collect::<Vec<_>>(),
        [
            (false, "agentLoggedOn"),
            (true, "agentLoggedOn"),
            (false, "agentReady"),
            (true, "agentReady"),
            (true, "diverted"),
            (false, "delivered"),
        ]
    );
    let names: Vec<&str> = evs.iter().map(|(_, e)| e.name()).collect();
    assert_eq!(
        names,
        [
            "agentLoggedOn",
            "agentLoggedOn",
            "agentReady",
            "agentReady",
            "diverted",
            "delivered"
        ]
    );
    assert_eq!(summary(&evs, &xs)[2], "delivered/distributed/alerting");
    let Event::Delivered(d) = &evs[5].1 else {
        panic!()
    };
    assert_eq!(d.connection, conn(&call, "205"));
    assert_eq!(d.calling_device, Party::dialing("0891234567"));
    assert_eq!(d.called_device, Party::dialing("0800100200"));
    assert_eq!(d.user_data.as_deref(), Some(&b"case=42"[..]));
    assert_eq!(d.correlator_data.as_deref(), Some(&b"ivr7"[..]));
    assert_eq!(
        d.last_redirection_device.device(),
        Some(&DeviceId::dialing("8000"))
    );
    let Event::Diverted(v) = &evs[4].1 else {
        panic!()
    };
    assert_eq!(v.new_destination, Party::dialing("205"));
    // the agent answers: established, agent busy
    h.ok(a, AnswerCallArgument::new(conn(&call, "205")));
    let evs = h.events(a);
    assert_eq!(
        summary(&evs, &xs),
        ["established/normal/connected", "agentBusy"]
    );
    assert_eq!(summary(&evs, &xg), ["agentBusy"]);
    // not ready while busy is pending
    match h.ok(
        a,
        SetAgentStateArgument::new(DeviceId::dialing("205"), ReqAgentState::NotReady),
    ) {
        Some(OperationResult::SetAgentState(r)) => assert_eq!(
            r.pending_agent_state,
            Some(ctigate_csta_model::types::PendingAgentState::NotReady)
        ),
        r => panic!("{r:?}"),
    }
    h.ok(
        a,
        SetAgentStateArgument::new(DeviceId::dialing("205"), ReqAgentState::Ready),
    );
    // the caller hangs up: after-call work, then ready after 5 s
    let r = h.sw.control(
        super::control::parse(r#"{"cmd":"hangup","device":"0891234567"}"#).unwrap(),
        h.now,
    );
    assert_eq!(r["ok"], true, "{r}");
    let evs = h.events(a);
    assert_eq!(
        summary(&evs, &xs),
        [
            "connectionCleared/normalClearing/connected",
            "callCleared/normalClearing",
            "agentWorkingAfterCall"
        ]
    );
    h.advance(Duration::from_millis(4999));
    assert!(h.events(a).is_empty());
    h.advance(Duration::from_millis(2));
    let evs = h.events(a);
    assert_eq!(summary(&evs, &xs), ["agentReady"]);
    match h.ok(a, GetAgentStateArgument::new(DeviceId::dialing("205"))) {
        Some(OperationResult::GetAgentState(r)) => {
            let e = &r.agent_state_list[0];
            assert!(e.logged_on);
            assert_eq!(e.agent_id.as_deref(), Some(&b"1003"[..]));
            assert_eq!(
                e.agent_info.as_ref().unwrap()[0].agent_state,
                ctigate_csta_model::types::AgentState::Ready
            );
        }
        r => panic!("{r:?}"),
    }
    // wrong password, unknown agent
    let mut arg = SetAgentStateArgument::new(DeviceId::dialing("206"), ReqAgentState::LoggedOn);
    arg.agent_id = Some(Bytes::from_static(b"1004"));
    arg.password = Some(Bytes::from_static(b"x"));
    assert_eq!(h.fails(a, arg.clone()), "operation/invalidAgentPassword");
    arg.agent_id = Some(Bytes::from_static(b"4711"));
    assert_eq!(h.fails(a, arg), "operation/invalidAgentIdentifier");
}

fn warm_call(h: &mut H, a: AssocId) -> (Bytes, Bytes) {
    // inbound call answered at 201, then 201 consults 202
    let r = h.sw.control(
        super::control::parse(
            r#"{"cmd":"inbound","ani":"0891234567","dnis":"201","user_data":"u1"}"#,
        )
        .unwrap(),
        h.now,
    );
    let c1 = hex(r["call"].as_str().unwrap());
    h.ok(a, AnswerCallArgument::new(conn(&c1, "201")));
    let c2 = call_of(h.ok(
        a,
        ConsultationCallArgument::new(conn(&c1, "201"), DeviceId::dialing("202")),
    ));
    (c1, c2)
}

#[test]
fn consultation_then_transfer() {
    for policy in [ResultingCallId::Held, ResultingCallId::New] {
        let mut h = H::new(SimConfig {
            resulting_call_id: policy,
            ..SimConfig::default()
        });
        let a = h.associate();
        let x1 = h.monitor(a, "201");
        let x2 = h.monitor(a, "202");
        let (c1, c2) = warm_call(&mut h, a);
        let evs = h.events(a);
        assert_eq!(
            summary(&evs, &x1),
            [
                "delivered/newCall/alerting",
                "established/normal/connected",
                "held/consultation/hold",
                "serviceInitiated/consultation/initiated",
                "originated/consultation/connected",
                "delivered/consultation/connected"
            ]
        );
        assert_eq!(summary(&evs, &x2), ["delivered/consultation/alerting"]);
        h.ok(a, AnswerCallArgument::new(conn(&c2, "202")));
        h.events(a);
        let r = match h.ok(
            a,
            TransferCallArgument::new(conn(&c1, "201"), conn(&c2, "201")),
        ) {
            Some(OperationResult::TransferCall(r)) => r,
            r => panic!("{r:?}"),
        };
        let rc = r.transferred_call.call_id().unwrap().clone();
        match policy {
            ResultingCallId::Held => assert_eq!(rc, c1),
            _ => assert!(rc != c1 && rc != c2, "new id {rc:?}"),
        }
        let evs = h.events(a);
        assert_eq!(
            summary(&evs, &x1),
            [
                "transferred/transfer/null",
                "connectionCleared/transfer/null",
                "connectionCleared/transfer/null"
            ]
        );
        assert_eq!(summary(&evs, &x2), ["transferred/transfer/connected"]);
        let Event::Transferred(t) = &evs.iter().find(|(x, _)| x == &x2).unwrap().1 else {
            panic!()
        };
        assert_eq!(t.primary_old_call, conn(&c1, "201"));
        assert_eq!(t.secondary_old_call, Some(conn(&c2, "201")));
        assert_eq!(t.transferred_to_device, Party::dialing("202"));
        let list: Vec<_> = t
            .transferred_connections
            .iter()
            .map(|e| {
                (
                    e.new_connection.clone().unwrap(),
                    e.old_connection.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            list,
            [
                (conn(&rc, "0891234567"), conn(&c1, "0891234567")),
                (conn(&rc, "202"), conn(&c2, "202"))
            ]
        );
        assert_eq!(
            t.user_data.as_deref(),
            Some(&b"u1"[..]),
            "variables move with the call"
        );
        // the far party hangs up: 202 sees the resulting call end
        h.sw.control(
            super::control::parse(r#"{"cmd":"hangup","device":"0891234567"}"#).unwrap(),
            h.now,
        );
        let evs = h.events(a);
        assert_eq!(
            summary(&evs, &x2),
            [
                "connectionCleared/normalClearing/connected",
                "callCleared/normalClearing"
            ]
        );
        assert!(summary(&evs, &x1).is_empty());
    }
}

#[test]
fn conference_and_a_party_leaving() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    let x1 = h.monitor(a, "201");
    let x2 = h.monitor(a, "202");
    let (c1, c2) = warm_call(&mut h, a);
    h.ok(a, AnswerCallArgument::new(conn(&c2, "202")));
    h.events(a);
    let r = match h.ok(
        a,
        ConferenceCallArgument::new(conn(&c1, "201"), conn(&c2, "201")),
    ) {
        Some(OperationResult::ConferenceCall(r)) => r,
        r => panic!("{r:?}"),
    };
    assert_eq!(r.conference_call, conn(&c1, "201"));
    assert_eq!(r.connections.as_ref().map(Vec::len), Some(3));
    let evs = h.events(a);
    assert_eq!(summary(&evs, &x1), ["conferenced/conference/connected"]);
    assert_eq!(summary(&evs, &x2), ["conferenced/conference/connected"]);
    let Event::Conferenced(cf) = &evs[0].1 else {
        panic!()
    };
    assert_eq!(cf.added_party, Party::dialing("202"));
    let ends: Vec<_> = cf
        .conference_connections
        .iter()
        .map(|e| {
            e.endpoint
                .as_ref()
                .and_then(Party::number)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ends, ["0891234567", "201", "202"]);
    // 202 leaves; the call goes on between 201 and the caller
    h.ok(a, ClearConnectionArgument::new(conn(&c1, "202")));
    let evs = h.events(a);
    assert_eq!(
        summary(&evs, &x1),
        ["connectionCleared/normalClearing/connected"]
    );
    assert_eq!(
        summary(&evs, &x2),
        ["connectionCleared/normalClearing/null"]
    );
    h.ok(a, HoldCallArgument::new(conn(&c1, "201")));
    assert_eq!(summary(&h.events(a), &x1), ["held/normal/hold"]);
    h.ok(a, RetrieveCallArgument::new(conn(&c1, "201")));
    assert_eq!(summary(&h.events(a), &x1), ["retrieved/normal/connected"]);
}

#[test]
fn single_step_transfer_busy_and_dtmf() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    let x1 = h.monitor(a, "201");
    let x3 = h.monitor(a, "203");
    let r = h.sw.control(
        super::control::parse(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).unwrap(),
        h.now,
    );
    let c1 = hex(r["call"].as_str().unwrap());
    h.ok(a, AnswerCallArgument::new(conn(&c1, "201")));
    h.ok(
        a,
        GenerateDigitsArgument::new(conn(&c1, "201"), "12#".to_string()),
    );
    let evs = h.events(a);
    let Event::DigitsGenerated(d) = &evs.last().unwrap().1 else {
        panic!("{evs:?}")
    };
    assert_eq!(d.digit_generated_list, "12#");
    assert_eq!(
        h.fails(
            a,
            GenerateDigitsArgument::new(conn(&c1, "201"), "12x".into())
        ),
        "operation/invalidParameterValue"
    );
    match h.ok(
        a,
        SingleStepTransArgument::new(conn(&c1, "201"), DeviceId::dialing("203")),
    ) {
        Some(OperationResult::SingleStepTransfer(r)) => {
            assert_eq!(r.transferred_call, conn(&c1, "203"))
        }
        r => panic!("{r:?}"),
    }
    let evs = h.events(a);
    assert_eq!(
        summary(&evs, &x1),
        [
            "transferred/singleStepTransfer/null",
            "connectionCleared/singleStepTransfer/null"
        ]
    );
    assert_eq!(
        summary(&evs, &x3),
        ["delivered/singleStepTransfer/alerting"]
    );
    // 201 calls 203, which is busy with the transferred call
    h.ok(a, AnswerCallArgument::new(conn(&c1, "203")));
    h.events(a);
    let c2 = call_of(h.ok(
        a,
        MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("203")),
    ));
    let evs = h.events(a);
    assert_eq!(
        summary(&evs, &x1),
        [
            "serviceInitiated/makeCall/initiated",
            "originated/makeCall/connected",
            "failed/busy/connected"
        ]
    );
    assert!(
        summary(&evs, &x3).is_empty(),
        "the busy device does not see the call"
    );
    let Event::Failed(f) = &evs.last().unwrap().1 else {
        panic!()
    };
    assert_eq!(f.failed_connection, conn(&c2, "203"));
    h.ok(a, ClearConnectionArgument::new(conn(&c2, "201")));
    assert_eq!(
        summary(&h.events(a), &x1),
        [
            "connectionCleared/normalClearing/null",
            "callCleared/normalClearing"
        ]
    );
    // snapshot shows 203's call
    match h.ok(a, SnapshotDeviceArgument::new(DeviceId::dialing("203"))) {
        Some(OperationResult::SnapshotDevice(r)) => match r.data {
            SnapshotData::Data(l) => {
                assert_eq!(l.len(), 1);
                assert_eq!(l[0].connection_identifier, conn(&c1, "203"));
                // the other connection, then this device's
                assert_eq!(
                    l[0].compound_states(),
                    Some(vec![
                        LocalConnectionState::Connected,
                        LocalConnectionState::Connected
                    ])
                );
                assert_eq!(
                    l[0].state(),
                    SnapshotState::Known(LocalConnectionState::Connected)
                );
            }
            d => panic!("{d:?}"),
        },
        r => panic!("{r:?}"),
    }
}

#[test]
fn outbound_call_far_end_answers_by_itself() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    let x1 = h.monitor(a, "201");
    h.ok(
        a,
        MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("0891234567")),
    );
    assert_eq!(
        summary(&h.events(a), &x1).last().unwrap(),
        "delivered/makeCall/connected"
    );
    h.advance(Duration::from_millis(1999));
    assert!(h.events(a).is_empty());
    h.advance(Duration::from_millis(2));
    assert_eq!(summary(&h.events(a), &x1), ["established/normal/connected"]);
    // a busy far end
    let r = h.sw.control(
        super::control::parse(r#"{"cmd":"far_end","number":"0711","behaviour":"busy"}"#).unwrap(),
        h.now,
    );
    assert_eq!(r["ok"], true, "{r}");
    let x2 = h.monitor(a, "202");
    h.ok(
        a,
        MakeCallArgument::new(DeviceId::dialing("202"), DeviceId::dialing("0711")),
    );
    assert_eq!(
        summary(&h.events(a), &x2).last().unwrap(),
        "failed/busy/connected"
    );
}

/// returnResult noData to the switch's systemStatus `id` (WIRE.md §11.D).
fn system_status_result(id: i64) -> Bytes {
    let mut b = hex("a2 0b 02 01 01 30 06 02 02 00 d3 05 00").to_vec();
    b[4] = u8::try_from(id).expect("a small invoke id");
    Bytes::from(b)
}

#[test]
fn keep_alives_exact_bytes_and_drop_after_two_misses() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    // the application's keep-alive is answered at once (WIRE.md §11.D)
    h.sw.receive(
        a,
        Frame::Pdu(hex("a1 0c 02 01 01 02 02 00 d3 30 03 0a 01 02")),
        h.now,
    );
    let out = h.take(a);
    assert!(
        matches!(&out[..], [Output::Pdu { pdu, .. }] if pdu[..] == hex("a2 0b 02 01 01 30 06 02 02 00 d3 05 00")[..]),
        "{out:?}"
    );
    // ours after 30 s, same bytes as a real PBX sends (invoke id 2: the systemStatus
    // right after the AARE was 1)
    h.advance(Duration::from_secs(30));
    let out = h.take(a);
    assert!(
        matches!(&out[..], [Output::Pdu { pdu, .. }] if pdu[..] == hex("a1 0c 02 01 02 02 02 00 d3 30 03 0a 01 02")[..]),
        "{out:?}"
    );
    // answered: the next one comes 30 s later and the link stays
    h.sw.receive(a, Frame::Pdu(system_status_result(2)), h.now);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.take(a).len(), 1);
    h.advance(Duration::from_secs(30)); // second unanswered
    assert_eq!(h.take(a).len(), 1);
    h.advance(Duration::from_secs(29));
    assert!(h.take(a).is_empty());
    h.advance(Duration::from_secs(1));
    let out = h.take(a);
    assert!(
        matches!(&out[0], Output::Pdu { pdu, .. } if pdu[0] == 0x64),
        "ABRT: {out:?}"
    );
    assert!(matches!(&out[1], Output::Close { reason, .. } if reason.contains("keep-alive")));
}

#[test]
fn keep_alive_misses_are_consecutive() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    // one ignored (id 2), the next (id 3) answered late: the count starts again
    h.advance(Duration::from_secs(30));
    assert_eq!(h.take(a).len(), 1);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.take(a).len(), 1);
    h.sw.receive(a, Frame::Pdu(system_status_result(3)), h.now);
    // two more go out before a drop: id 4 and id 5 unanswered, then the ABRT
    h.advance(Duration::from_secs(30));
    assert_eq!(h.take(a).len(), 1, "alive: a keep-alive, not an ABRT");
    h.advance(Duration::from_secs(30));
    assert_eq!(h.take(a).len(), 1);
    h.advance(Duration::from_secs(30));
    let out = h.take(a);
    assert!(
        matches!(&out[0], Output::Pdu { pdu, .. } if pdu[0] == 0x64),
        "{out:?}"
    );
}

#[test]
fn system_status_right_after_the_aare_is_configurable() {
    let mut cfg = SimConfig::default();
    cfg.link.status_at_association = false;
    let mut h = H::new(cfg);
    h.associate(); // only the AARE
}

#[test]
fn oxo_profile_limits() {
    let mut h = H::new(SimConfig {
        profile: "oxo".into(),
        ..SimConfig::default()
    });
    let a = h.associate();
    let mon = |d: &str| MonitorStartArgument::new(CstaObject::Device(DeviceId::dialing(d)));
    // answers come 100 ms late; a second request meanwhile is refused
    let id = h.next_id;
    h.next_id += 1;
    h.send(a, Apdu::Rose(Argument::from(mon("201")).invoke(id)));
    assert!(h.take(a).is_empty());
    assert_eq!(
        h.fails(a, mon("202")),
        "subscribedResourceAvailability/outstandingReqLimitExceeded"
    );
    h.advance(Duration::from_millis(100));
    assert_eq!(h.take_pdus(a).len(), 1);
    // third request in the same second: performance limit
    assert_eq!(
        h.fails(a, mon("203")),
        "performanceManagement/performanceLimitExceeded"
    );
    // 10 events a second at most
    h.advance(Duration::from_secs(1));
    let x = h.monitor_delayed(a, "202");
    for _ in 0..3 {
        h.sw.control(
            super::control::parse(r#"{"cmd":"inbound","ani":"0811","dnis":"202"}"#).unwrap(),
            h.now,
        );
        h.sw.control(
            super::control::parse(r#"{"cmd":"hangup","device":"0811"}"#).unwrap(),
            h.now,
        );
    }
    // 3 x (delivered, connectionCleared, callCleared) = 9 events, paced 100 ms apart
    let evs = h.events(a);
    let first = evs.len();
    assert!(
        first <= 1,
        "{:?}",
        evs.iter().map(|e| e.1.name()).collect::<Vec<_>>()
    );
    h.advance(Duration::from_millis(450));
    let mid = first + h.events(a).len();
    assert!((4..=6).contains(&mid), "{mid}");
    h.advance(Duration::from_secs(1));
    let all: Vec<_> = h.events(a);
    assert_eq!(mid + all.len(), 9);
    assert!(all.iter().all(|(xr, _)| xr == &x));
}

impl H {
    /// MonitorStart when answers are delayed.
    fn monitor_delayed(&mut self, a: AssocId, d: &str) -> Bytes {
        let id = self.next_id;
        self.next_id += 1;
        let arg: Argument =
            MonitorStartArgument::new(CstaObject::Device(DeviceId::dialing(d))).into();
        self.send(a, Apdu::Rose(arg.invoke(id)));
        self.advance(Duration::from_millis(100));
        for p in self.take_pdus(a) {
            if let Apdu::Rose(Rose::ReturnResult(r)) = p {
                if let Ok(Some(OperationResult::MonitorStart(m))) =
                    OperationResult::from_return_result(&r)
                {
                    return m.cross_ref_identifier.0;
                }
            }
        }
        panic!("no MonitorStart result");
    }
}

#[test]
fn faults_from_the_control_port() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    let x = h.monitor(a, "201");
    let ctl = |h: &mut H, s: &str| {
        let r = h.sw.control(super::control::parse(s).unwrap(), h.now);
        assert_eq!(r["ok"], true, "{s}: {r}");
    };
    // garbled frame
    ctl(&mut h, r#"{"cmd":"fault","fault":"garble"}"#);
    assert!(matches!(&h.take(a)[..], [Output::Raw { bytes, .. }] if bytes[..2] == [0, 6]));
    // delayed answers
    ctl(&mut h, r#"{"cmd":"fault","fault":"delay","ms":300}"#);
    let id = h.next_id;
    h.next_id += 1;
    h.send(
        a,
        Apdu::Rose(
            Argument::from(SnapshotDeviceArgument::new(DeviceId::dialing("201"))).invoke(id),
        ),
    );
    assert!(h.take(a).is_empty());
    h.advance(Duration::from_millis(300));
    assert_eq!(h.take_pdus(a).len(), 1);
    // keep-alives not answered
    ctl(&mut h, r#"{"cmd":"fault","fault":"stop_keepalive"}"#);
    h.sw.receive(
        a,
        Frame::Pdu(hex("a1 0c 02 01 07 02 02 00 d3 30 03 0a 01 02")),
        h.now,
    );
    assert!(h.take(a).is_empty());
    ctl(&mut h, r#"{"cmd":"fault","fault":"resume"}"#);
    // restart keeping the links: monitors gone, systemStatus initializing then normal
    ctl(
        &mut h,
        r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#,
    );
    assert_eq!(h.events(a).len(), 1);
    ctl(
        &mut h,
        r#"{"cmd":"fault","fault":"restart","keep_links":true}"#,
    );
    let st: Vec<String> = h
        .take_pdus(a)
        .into_iter()
        .map(|p| match p {
            Apdu::Rose(Rose::Invoke(i)) => {
                let arg = Argument::from_invoke(&i).unwrap();
                match arg {
                    Argument::SystemStatus(s) => s.system_status.name().unwrap().to_string(),
                    a => panic!("{a:?}"),
                }
            }
            p => panic!("{p:?}"),
        })
        .collect();
    assert_eq!(st, ["initializing", "normal"]);
    ctl(
        &mut h,
        r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#,
    );
    assert!(h.events(a).is_empty(), "monitors were lost");
    assert_eq!(
        h.fails(a, MonitorStopArgument::new(MonitorCrossRefId(x))),
        "operation/invalidMonitorCrossRefID"
    );
    // abort
    ctl(&mut h, r#"{"cmd":"fault","fault":"abort"}"#);
    let out = h.take(a);
    assert!(
        matches!(&out[0], Output::Pdu { pdu, .. } if pdu[..] == hex("64 03 80 01 00")[..]),
        "{out:?}"
    );
    assert!(matches!(out[1], Output::Close { .. }));
    // hang: nothing is answered
    let b = h.associate();
    ctl(&mut h, r#"{"cmd":"fault","fault":"hang"}"#);
    h.send(
        b,
        Apdu::Rose(Argument::from(SnapshotDeviceArgument::new(DeviceId::dialing("201"))).invoke(1)),
    );
    h.advance(Duration::from_secs(120));
    assert!(h.take(b).is_empty());
}

#[test]
fn load_mode_generates_calls_answered_by_agents() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    let xg = h.monitor(a, "8000");
    let r = h.sw.control(
        super::control::parse(
            r#"{"cmd":"load","calls_per_s":4,"ring_ms":[100,200],"talk_ms":[300,500],"hold_ms":[100,100],"hold_percent":50,"max_calls":8}"#,
        )
        .unwrap(),
        h.now,
    );
    assert_eq!(r["ok"], true, "{r}");
    h.advance(Duration::from_secs(10));
    let evs = h.events(a);
    let s = summary(&evs, &xg);
    assert_eq!(
        s.iter().filter(|n| n.starts_with("queued")).count(),
        8,
        "{s:?}"
    );
    assert_eq!(
        s.iter().filter(|n| n.starts_with("diverted")).count(),
        8,
        "{s:?}"
    );
    let st = h.sw.status();
    assert_eq!(st["load"]["stats"]["offered"], 8);
    assert_eq!(st["load"]["stats"]["answered"], 8);
    assert_eq!(
        st["calls"].as_array().unwrap().len(),
        0,
        "every call ended: {st}"
    );
}

// ---- release and stop -----------------------------------------------------------------------

#[test]
fn release_all_sends_rlrq_closes_on_rlre_and_aborts_the_silent() {
    let mut h = H::new(SimConfig::default());
    let a = h.associate();
    let b = h.associate();
    let pending = h.connect(); // connected, no AARQ yet
    h.sw.release_all(h.now);
    // RLRQ exactly (X.227: 62 03 80 01 00) to both associations; the other is closed
    for x in [a, b] {
        match &h.take(x)[..] {
            [Output::Pdu { pdu, .. }] => assert_eq!(pdu, &hex("62 03 80 01 00")),
            o => panic!("{o:?}"),
        }
    }
    assert!(matches!(&h.take(pending)[..], [Output::Close { .. }]));
    // no new connections while stopping
    assert_eq!(h.sw.connect("late", h.now), None);
    // a answers RLRE: closed as released
    h.send(a, Apdu::Acse(Acse::rlre(0)));
    match &h.take(a)[..] {
        [Output::Close { reason, .. }] => assert_eq!(reason, "released (RLRQ answered by RLRE)"),
        o => panic!("{o:?}"),
    }
    assert!(!h.sw.all_closed());
    // b stays silent: ABRT (64 03 80 01 00) at the release timeout (2 s), then closed
    h.advance(Duration::from_millis(1999));
    assert!(h.take(b).is_empty());
    h.advance(Duration::from_millis(1));
    match &h.take(b)[..] {
        [Output::Pdu { pdu, .. }, Output::Close { reason, .. }] => {
            assert_eq!(pdu, &hex("64 03 80 01 00"));
            assert_eq!(reason, "released without RLRE (ABRT)");
        }
        o => panic!("{o:?}"),
    }
    assert!(h.sw.all_closed());
}

#[test]
fn side_down_aborts_its_associations_refuses_new_ones_and_keeps_the_calls() {
    let mut h = H {
        sw: Switch::new(SimConfig::default()).with_sides(2),
        ..H::new(SimConfig::default())
    };
    let a = h.associate_on(0);
    let b = h.associate_on(1);
    let ctl = |h: &mut H, line: &str| {
        let now = h.now;
        h.sw.control(super::control::parse(line).unwrap(), now)
    };
    assert_eq!(
        ctl(&mut h, r#"{"cmd":"dial","from":"201","to":"202"}"#)["ok"],
        true
    );
    assert_eq!(
        ctl(&mut h, r#"{"cmd":"answer","device":"202"}"#)["ok"],
        true
    );
    let v = ctl(&mut h, r#"{"cmd":"fault","fault":"side_down","side":0}"#);
    assert_eq!(v, serde_json::json!({"ok": true, "associations": 1}));
    // side A's association: ABRT, then closed; side B's: nothing
    let out = h.take(a);
    assert!(
        matches!(&out[..], [Output::Pdu { pdu, .. }, Output::Close { reason, .. }]
            if pdu[..] == hex("64 03 80 01 00")[..] && reason == "fault: side_down"),
        "{out:?}"
    );
    assert!(h.take(b).is_empty());
    // no new connection on side A; side B takes them
    assert_eq!(h.sw.connect_on(0, "again", h.now), None);
    assert!(h.sw.connect_on(1, "again", h.now).is_some());
    // the call model is the same on both sides: the call is still up
    assert_eq!(h.sw.model.calls.len(), 1);
    assert_eq!(
        h.sw.model
            .snapshot("201", crate::sim::config::SnapshotForm::Compound)
            .len(),
        1
    );
    let st = ctl(&mut h, r#"{"cmd":"status"}"#);
    assert_eq!(
        st["sides"],
        serde_json::json!([{"side": 0, "up": false}, {"side": 1, "up": true}])
    );
    // back up
    assert_eq!(
        ctl(&mut h, r#"{"cmd":"fault","fault":"side_up","side":0}"#),
        serde_json::json!({"ok": true, "associations": 0})
    );
    assert!(h.sw.connect_on(0, "back", h.now).is_some());
    // mistakes say what is allowed
    let e = ctl(&mut h, r#"{"cmd":"fault","fault":"side_down","side":2}"#);
    assert_eq!(
        e["error"],
        "no side 2: this simulator has 2 sides (0 to 1; ctigate sim --listen once per side)"
    );
    for (line, says) in [
        (
            r#"{"cmd":"fault","fault":"side_down"}"#,
            "side_down needs \"side\"",
        ),
        (
            r#"{"cmd":"fault","fault":"close","side":0}"#,
            "\"side\" is for the faults side_down and side_up",
        ),
        (
            r#"{"cmd":"fault","fault":"side_up","side":0,"assoc":1}"#,
            "side_up takes only \"side\"",
        ),
        (
            r#"{"cmd":"fault","fault":"side_down","side":-1}"#,
            "bad command",
        ),
    ] {
        let e = super::control::parse(line).unwrap_err();
        assert!(e.contains(says), "{line}: {e}");
    }
    // a single-sided switch has side 0 only
    let mut one = Switch::new(SimConfig::default());
    let e = one.side_fault(false, Some(1)).unwrap_err();
    assert_eq!(
        e,
        "no side 1: this simulator has 1 side (0 to 0; ctigate sim --listen once per side)"
    );
}
