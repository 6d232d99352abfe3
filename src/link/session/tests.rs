//! The session driven by hand: exact bytes in and out, a manual clock.

use super::*;
use crate::test_util::hex;
use bytes::Bytes;
use ctigate_csta::acse::{Acse, AcseKind};
use ctigate_csta::apdu::Apdu;
use ctigate_csta_model::ops::{AnswerCallArgument, MakeCallArgument};
use ctigate_csta_model::types::{ConnectionId, MonitorCrossRefId};

const AARQ_ED2: &str = "60 1f a1 07 06 05 2b 0c 00 81 5a be 14 28 12 06 07 2b 0c 00 82 1d 81 48 a0 07 a0 05 03 03 00 08 00";
/// The real Panasonic AARE (WIRE.md §3.4), accepted.
const AARE_REAL: &str = "61 2f 80 02 07 80 a1 07 06 05 2b 0c 00 81 5a a2 03 02 01 00 a3 05 a1 03 02 01 01 be 14 28 12 06 07 2b 0c 00 82 1d 81 48 a0 07 a0 05 03 03 00 08 00";
const AARE_REJECTED_CONTEXT: &str =
    "61 15 a1 07 06 05 2b 0c 00 81 5a a2 03 02 01 01 a3 05 a1 03 02 01 02";
const SYSTEM_STATUS_NORMAL: &str = "a1 0c 02 01 01 02 02 00 d3 30 03 0a 01 02";
const SYSTEM_STATUS_RESULT: &str = "a2 0b 02 01 01 30 06 02 02 00 d3 05 00";
const RLRQ: &str = "62 03 80 01 00";
const RLRE: &str = "63 03 80 01 00";
const ABRT_USER: &str = "64 03 80 01 00";
const DELIVERED_XREF1: &str = "a1 48 02 01 09 02 01 15 30 40 55 04 00 00 00 01 a0 38 a4 36 6b 0f 30 0d 80 02 00 42 a1 07 30 05 80 03 32 30 32 63 07 30 05 80 03 32 30 32 61 07 30 05 80 03 32 30 31 62 07 30 05 80 03 32 30 32 64 02 87 00 4e 01 02 0a 01 16";

fn cfg() -> LinkConfig {
    LinkConfig {
        name: "test".into(),
        versions: vec![ctigate_csta::acse::version::ECMA_285_ED2],
        ..LinkConfig::default()
    }
}

/// A session, its clock and what it produced.
struct H {
    s: Session,
    now: Instant,
}

impl H {
    fn new(cfg: LinkConfig) -> H {
        let now = Instant::now();
        let mut h = H {
            s: Session::new(cfg, now),
            now,
        };
        assert_eq!(h.drain(), vec![Out::Connect]);
        h
    }

    /// A session that is associated, with nothing left to drain.
    fn up() -> H {
        let mut h = H::new(cfg());
        h.s.connected(h.now);
        assert_eq!(h.sent(), vec![hex(AARQ_ED2)]);
        h.pdu(AARE_REAL);
        assert_eq!(h.drain(), vec![Out::Event(LinkEvent::Up)]);
        assert!(h.s.is_associated());
        h
    }

    fn drain(&mut self) -> Vec<Out> {
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    /// Drain, keeping the PDUs sent; panics on anything else.
    fn sent(&mut self) -> Vec<Bytes> {
        self.drain()
            .into_iter()
            .map(|o| match o {
                Out::Transmit(Frame::Pdu(p)) => p,
                o => panic!("expected only PDUs, got {o:?}"),
            })
            .collect()
    }

    fn pdu(&mut self, h: &str) {
        self.s.handle_frame(Frame::Pdu(hex(h)), self.now);
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.s.handle_timeout(self.now);
    }

    fn monitor_active(&mut self, token: Token, device: &str, xref: u8) {
        self.s.monitor(token, device, self.now);
        let sent = self.sent();
        assert_eq!(sent.len(), 1);
        let id = invoke_id(&sent[0]);
        self.pdu(&monitor_result(id, xref));
        assert_eq!(
            self.drain(),
            vec![
                Out::Event(LinkEvent::Monitored {
                    device: device.into(),
                    again: false
                }),
                Out::Answer {
                    token,
                    answer: Ok(Ok(None))
                },
            ]
        );
    }
}

fn invoke_id(pdu: &Bytes) -> i64 {
    match Apdu::decode(pdu).unwrap() {
        Apdu::Rose(r) => r.invoke_id().value().unwrap(),
        a => panic!("not ROSE: {a:?}"),
    }
}

fn opcode(pdu: &Bytes) -> Option<i64> {
    match Apdu::decode(pdu).unwrap() {
        Apdu::Rose(r) => r.opcode().and_then(|c| c.local()),
        _ => None,
    }
}

/// `returnResult` of monitorStart with crossRefIdentifier `000000xx` (invoke id < 128).
fn monitor_result(id: i64, xref: u8) -> String {
    format!("a2 10 02 01 {id:02x} 30 0b 02 01 47 30 06 55 04 00 00 00 {xref:02x}")
}

fn answer_call() -> Argument {
    AnswerCallArgument::new(ConnectionId::dialing([0x77, 0x77], "201")).into()
}

fn answers(outs: &[Out]) -> Vec<(Token, Answer)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Answer { token, answer } => Some((*token, answer.clone())),
            _ => None,
        })
        .collect()
}

fn downs(outs: &[Out]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Event(LinkEvent::Down { reason }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

// ---- association ----------------------------------------------------------------------------

#[test]
fn association_sends_the_aarq_and_the_aare_brings_the_link_up() {
    let h = H::up();
    assert_eq!(h.s.state(), &State::Associated);
    // keep-alive armed, nothing else due
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(20)));
}

#[test]
fn aarq_carries_context_versions_and_password() {
    let mut h = H::new(LinkConfig {
        context: "1.3.12.0.180.1".into(),
        versions: vec![2, 4, 14, 18],
        password: Some("secret".into()),
        ..cfg()
    });
    h.s.connected(h.now);
    let aarq = h.sent().remove(0);
    let a = Acse::decode(&aarq, &ctigate_csta::Limits::DEFAULT).unwrap();
    assert_eq!(a.kind, AcseKind::Aarq);
    assert_eq!(a.context_name().unwrap().to_string(), "1.3.12.0.180.1");
    assert_eq!(a.authentication().as_deref(), Some("secret"));
    assert_eq!(a.csta_user_info().unwrap().versions, vec![2, 4, 14, 18]);
}

#[test]
fn handshake_b_then_p_then_aarq() {
    let mut h = H::new(LinkConfig {
        handshake: true,
        ..cfg()
    });
    h.s.connected(h.now);
    assert_eq!(h.drain(), vec![Out::Transmit(Frame::Handshake(b'B'))]);
    h.s.handle_frame(Frame::Handshake(b'P'), h.now);
    assert_eq!(h.sent(), vec![hex(AARQ_ED2)]);
    h.pdu(AARE_REAL);
    assert_eq!(h.drain(), vec![Out::Event(LinkEvent::Up)]);
}

#[test]
fn aare_rejection_names_the_diagnostic_and_backs_off() {
    let mut h = H::new(cfg());
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REJECTED_CONTEXT);
    let outs = h.drain();
    assert!(outs.contains(&Out::Close), "{outs:?}");
    assert_eq!(
        downs(&outs),
        vec!["association rejected (rejected-permanent): application-context-name-not-supported"]
    );
    // requests while down say why
    h.s.request(1, answer_call(), h.now);
    assert_eq!(
        answers(&h.drain()),
        vec![(
            1,
            Err(LinkError::Rejected(
                "application-context-name-not-supported".into()
            ))
        )]
    );
    let e = LinkError::Rejected("application-context-name-not-supported".into()).to_string();
    assert!(e.contains("check the link's context OID"), "{e}");
    // backoff: 500 ms, then 1 s, 2 s, ... (the same reason is told once)
    let t0 = h.now;
    assert_eq!(
        h.s.state(),
        &State::ExpectRetry {
            at: t0 + Duration::from_millis(500)
        }
    );
    h.advance(Duration::from_millis(499));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.drain(), vec![Out::Connect]);
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REJECTED_CONTEXT);
    let outs = h.drain();
    assert!(downs(&outs).is_empty(), "{outs:?}");
    assert_eq!(
        h.s.state(),
        &State::ExpectRetry {
            at: h.now + Duration::from_secs(1)
        }
    );
}

#[test]
fn backoff_doubles_up_to_the_maximum_and_resets_when_up() {
    let mut h = H::new(LinkConfig {
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(5),
        ..cfg()
    });
    let mut delays = Vec::new();
    for _ in 0..5 {
        h.s.transport_closed(h.now, "connection refused");
        let outs = h.drain();
        assert!(outs.contains(&Out::Close));
        let State::ExpectRetry { at } = h.s.state().clone() else {
            panic!("{:?}", h.s.state())
        };
        delays.push((at - h.now).as_secs());
        h.now = at;
        h.s.handle_timeout(h.now);
        assert_eq!(h.drain(), vec![Out::Connect]);
    }
    assert_eq!(delays, [1, 2, 4, 5, 5]);
    // a connect that hangs is given up after connect_timeout
    h.advance(Duration::from_secs(5));
    let outs = h.drain();
    assert!(outs.contains(&Out::Close), "{outs:?}");
    assert!(
        downs(&outs)[0].contains("cannot connect to 127.0.0.1:2555 within"),
        "{outs:?}"
    );
    // up again: the next loss retries after reconnect_min
    h.now += Duration::from_secs(5);
    h.s.handle_timeout(h.now);
    assert_eq!(h.drain(), vec![Out::Connect]);
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    h.drain();
    h.s.transport_closed(h.now, "reset by peer");
    assert_eq!(
        h.s.state(),
        &State::ExpectRetry {
            at: h.now + Duration::from_secs(1)
        }
    );
}

#[test]
fn no_aare_in_time_aborts_the_attempt() {
    let mut h = H::new(cfg());
    h.s.connected(h.now);
    h.sent();
    h.advance(Duration::from_secs(5));
    let outs = h.drain();
    assert_eq!(outs[0], Out::Transmit(Frame::Pdu(hex(ABRT_USER))));
    assert!(outs.contains(&Out::Close));
    assert!(downs(&outs)[0].contains("no AARE"), "{outs:?}");
}

#[test]
fn abrt_fails_outstanding_requests_and_reconnects() {
    let mut h = H::up();
    h.s.request(7, answer_call(), h.now);
    h.sent();
    h.pdu("64 06 80 01 01 81 01 02");
    let outs = h.drain();
    assert_eq!(answers(&outs), vec![(7, Err(LinkError::Aborted))]);
    assert_eq!(
        downs(&outs),
        vec!["the switch aborted the association (ABRT, service-provider, diagnostic protocol-error)"]
    );
    assert!(outs.contains(&Out::Close));
    assert!(matches!(h.s.state(), State::ExpectRetry { .. }));
    // down: requests answer Down at once
    h.s.request(8, answer_call(), h.now);
    assert_eq!(answers(&h.drain()), vec![(8, Err(LinkError::Down))]);
}

#[test]
fn a_switch_release_is_answered_with_rlre() {
    let mut h = H::up();
    h.pdu(RLRQ);
    let outs = h.drain();
    assert_eq!(outs[0], Out::Transmit(Frame::Pdu(hex(RLRE))));
    assert_eq!(
        downs(&outs),
        vec!["the switch released the association (RLRQ)"]
    );
}

#[test]
fn a_bad_context_closes_the_session_with_the_reason() {
    let now = Instant::now();
    let mut s = Session::new(
        LinkConfig {
            context: "not-an-oid".into(),
            ..cfg()
        },
        now,
    );
    let outs: Vec<Out> = std::iter::from_fn(|| s.poll_output()).collect();
    assert!(downs(&outs)[0].contains("not a dotted OID"), "{outs:?}");
    assert!(s.is_closed());
    s.request(1, answer_call(), now);
    assert!(matches!(
        s.poll_output(),
        Some(Out::Answer {
            token: 1,
            answer: Err(LinkError::Encode(_))
        })
    ));
}

// ---- requests -------------------------------------------------------------------------------

#[test]
fn results_errors_and_rejects_are_correlated_by_invoke_id() {
    let mut h = H::up();
    h.s.request(10, answer_call(), h.now);
    h.s.request(20, answer_call(), h.now);
    let mk: Argument =
        MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("0891234567")).into();
    h.s.request(30, mk, h.now);
    let sent = h.sent();
    assert_eq!(sent.iter().map(invoke_id).collect::<Vec<_>>(), [1, 2, 3]);
    // MakeCall invoke exactly as WIRE.md §11.A (invoke id 3 here)
    assert_eq!(
        sent[2],
        hex("a1 1d 02 01 03 02 01 0a 30 15 30 05 80 03 32 30 31 30 0c 80 0a 30 38 39 31 32 33 34 35 36 37")
    );
    // answers out of order
    h.pdu("a3 0b 02 01 02 02 01 01 a0 03 0a 01 0c");
    h.pdu("a4 06 02 01 01 81 01 01");
    h.pdu("a2 1b 02 01 03 30 16 02 01 0a 30 11 6b 0f 30 0d 80 02 00 42 a1 07 30 05 80 03 32 30 31");
    let a = answers(&h.drain());
    assert_eq!(a.len(), 3);
    assert_eq!(a[0].0, 20);
    match &a[0].1 {
        Ok(Err(CstaError::Failure(f))) => assert_eq!(f.to_string(), "operation/invalidDeviceID"),
        o => panic!("{o:?}"),
    }
    assert_eq!(
        a[1],
        (
            10,
            Ok(Err(CstaError::Reject(problem::UNRECOGNIZED_OPERATION)))
        )
    );
    assert_eq!(a[2].0, 30);
    assert!(matches!(
        &a[2].1,
        Ok(Ok(Some(OperationResult::MakeCall(_))))
    ));
    // a simple result
    h.s.request(40, answer_call(), h.now);
    let id = invoke_id(&h.sent()[0]);
    assert_eq!(id, 4);
    h.pdu("a2 0a 02 01 04 30 05 02 01 02 05 00");
    assert_eq!(
        answers(&h.drain()),
        vec![(
            40,
            Ok(Ok(Some(OperationResult::Simple {
                op: Operation::AnswerCall,
                extensions: None
            })))
        )]
    );
    assert!(h.s.is_associated());
}

#[test]
fn answers_we_cannot_read_are_rejected_and_reported() {
    let mut h = H::up();
    h.s.request(1, answer_call(), h.now);
    h.s.request(2, answer_call(), h.now);
    h.s.request(3, answer_call(), h.now);
    h.sent();
    // a result of another operation (makeCall) to answerCall
    h.pdu("a2 1b 02 01 01 30 16 02 01 0a 30 11 6b 0f 30 0d 80 02 00 42 a1 07 30 05 80 03 32 30 31");
    // an error code that is not universalFailure
    h.pdu("a3 08 02 01 02 02 01 05 05 00");
    // a result whose monitorStart result does not decode (empty MonitorStartResult)
    h.pdu("a2 0a 02 01 03 30 05 02 01 47 30 00");
    let outs = h.drain();
    let sent: Vec<Bytes> = outs
        .iter()
        .filter_map(|o| match o {
            Out::Transmit(Frame::Pdu(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            hex("a4 06 02 01 01 82 01 02"),
            hex("a4 06 02 01 02 83 01 02"),
            hex("a4 06 02 01 03 82 01 02"),
        ]
    );
    assert_eq!(
        answers(&outs),
        vec![
            (1, Ok(Err(CstaError::Reject(problem::MISTYPED_RESULT)))),
            (2, Ok(Err(CstaError::Reject(problem::UNRECOGNIZED_ERROR)))),
            (3, Ok(Err(CstaError::Reject(problem::MISTYPED_RESULT)))),
        ]
    );
}

#[test]
fn a_deadline_answers_timeout_exactly_once() {
    let mut h = H::up();
    h.s.request(5, answer_call(), h.now);
    h.sent();
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(5)));
    h.advance(Duration::from_millis(4999));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(
        h.drain(),
        vec![Out::Answer {
            token: 5,
            answer: Err(LinkError::Timeout)
        }]
    );
    h.advance(Duration::from_secs(1));
    assert!(h.drain().is_empty());
    // the late answer is dropped
    h.pdu("a2 0a 02 01 01 30 05 02 01 02 05 00");
    assert!(h.drain().is_empty());
    assert!(h.s.is_associated());
}

#[test]
fn invoke_ids_wrap_at_32767_and_skip_ids_in_flight() {
    let mut h = H::up();
    h.s.request(1, answer_call(), h.now); // id 1, left in flight
    h.s.request(2, answer_call(), h.now); // id 2, answered
    assert_eq!(h.sent().iter().map(invoke_id).collect::<Vec<_>>(), [1, 2]);
    h.pdu("a2 0a 02 01 02 30 05 02 01 02 05 00");
    h.drain();
    h.s.next_invoke = MAX_INVOKE_ID - 1;
    for t in 3..=6 {
        h.s.request(t, answer_call(), h.now);
    }
    // 32766, 32767, then 1 is in flight: 2, 3
    assert_eq!(
        h.sent().iter().map(invoke_id).collect::<Vec<_>>(),
        [32766, 32767, 2, 3]
    );
}

#[test]
fn too_many_requests_in_flight() {
    let mut h = H::up();
    for t in 0..MAX_IN_FLIGHT as u64 {
        h.s.request(t, answer_call(), h.now);
    }
    assert_eq!(h.sent().len(), MAX_IN_FLIGHT);
    h.s.request(999, answer_call(), h.now);
    assert_eq!(
        h.drain(),
        vec![Out::Answer {
            token: 999,
            answer: Err(LinkError::TooManyRequests)
        }]
    );
    h.s.monitor(1000, "201", h.now);
    assert_eq!(
        answers(&h.drain()),
        vec![(1000, Err(LinkError::TooManyRequests))]
    );
}

// ---- the switch's invokes -------------------------------------------------------------------

#[test]
fn the_switch_system_status_is_answered_at_once_in_its_own_id_space() {
    let mut h = H::up();
    // our invoke 1 is in flight; the switch's invoke 1 is another thing
    h.s.request(1, answer_call(), h.now);
    assert_eq!(invoke_id(&h.sent()[0]), 1);
    h.pdu(SYSTEM_STATUS_NORMAL);
    assert_eq!(
        h.drain(),
        vec![
            Out::Transmit(Frame::Pdu(hex(SYSTEM_STATUS_RESULT))),
            Out::Event(LinkEvent::SystemStatus {
                status: "normal".into()
            }),
        ]
    );
    // our request is still waiting for its own answer
    h.pdu("a2 0a 02 01 01 30 05 02 01 02 05 00");
    assert_eq!(answers(&h.drain()).len(), 1);
}

#[test]
fn events_are_routed_by_cross_reference_and_never_answered() {
    let mut h = H::up();
    h.s.monitor(1, "201", h.now);
    // MonitorStart exactly as WIRE.md §11.B (invoke id 1 here)
    assert_eq!(
        h.sent(),
        vec![hex("a1 0f 02 01 01 02 01 47 30 07 30 05 80 03 32 30 31")]
    );
    h.pdu(&monitor_result(1, 1));
    h.drain();
    assert_eq!(
        h.s.monitors()
            .device_of(&MonitorCrossRefId::new([0, 0, 0, 1])),
        Some("201")
    );
    h.pdu(DELIVERED_XREF1);
    let outs = h.drain();
    assert_eq!(outs.len(), 1, "only the event, no answer: {outs:?}");
    match &outs[0] {
        Out::Event(LinkEvent::Report { device, report }) => {
            assert_eq!(device.as_deref(), Some("201"));
            assert_eq!(report.event.name(), "delivered");
        }
        o => panic!("{o:?}"),
    }
    // an unknown cross reference: delivered without a device
    h.pdu(&DELIVERED_XREF1.replace("55 04 00 00 00 01", "55 04 00 00 00 09"));
    match &h.drain()[..] {
        [Out::Event(LinkEvent::Report { device: None, .. })] => {}
        o => panic!("{o:?}"),
    }
}

#[test]
fn other_switch_invokes_are_rejected_and_garbage_is_handled() {
    let mut h = H::up();
    // the switch invokes makeCall: not ours to serve
    h.pdu("a1 1d 02 01 05 02 01 0a 30 15 30 05 80 03 32 30 31 30 0c 80 0a 30 38 39 31 32 33 34 35 36 37");
    assert_eq!(h.sent(), vec![hex("a4 06 02 01 05 81 01 01")]);
    // an invoke that is not valid BER (the simulator's garble fault: a SEQUENCE tag with
    // no length where the opcode should be): general badlyStructuredPDU
    h.pdu("a1 04 02 01 05 30");
    assert_eq!(h.sent(), vec![hex("a4 06 02 01 05 80 01 02")]);
    // a broken event report is never answered
    h.pdu("a1 0a 02 01 09 02 01 15 30 03 55 09 00");
    assert_eq!(h.sent(), Vec::<Bytes>::new());
    // a reject we cannot read is never rejected
    h.pdu("a4 02 02 01");
    assert_eq!(h.sent(), Vec::<Bytes>::new());
    // an unknown APDU type
    h.pdu("30 00");
    assert_eq!(h.sent(), vec![hex("a4 05 05 00 80 01 00")]);
    assert!(h.s.is_associated());
}

#[test]
fn no_panic_on_any_input() {
    // a small LCG: mutated valid PDUs and random octets, in every state
    let seeds = [
        AARE_REAL,
        SYSTEM_STATUS_NORMAL,
        DELIVERED_XREF1,
        "a3 0b 02 01 01 02 01 01 a0 03 0a 01 0c",
        "a4 06 02 01 01 81 01 01",
        "a2 10 02 01 01 30 0b 02 01 47 30 06 55 04 00 00 00 01",
        RLRQ,
        "64 06 80 01 01 81 01 02",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..3000 {
        let mut h = H::new(cfg());
        h.s.connected(h.now);
        if round % 2 == 0 {
            h.pdu(AARE_REAL);
            h.s.request(1, answer_call(), h.now);
            h.s.monitor(2, "201", h.now);
        }
        h.drain();
        for _ in 0..4 {
            let mut b = hex(seeds[(rnd() % seeds.len() as u64) as usize]).to_vec();
            match rnd() % 3 {
                0 => {
                    let n = (rnd() % 4 + 1) as usize;
                    for _ in 0..n {
                        let i = (rnd() % b.len() as u64) as usize;
                        b[i] = rnd() as u8;
                    }
                }
                1 => b.truncate((rnd() % b.len() as u64) as usize),
                _ => b = (0..rnd() % 40).map(|_| rnd() as u8).collect(),
            }
            h.s.handle_frame(Frame::Pdu(Bytes::from(b)), h.now);
            h.s.handle_frame(Frame::Handshake(rnd() as u8), h.now);
            h.advance(Duration::from_secs(rnd() % 30));
            h.drain();
        }
    }
}

/// X.880 (Remote-Operations-Generic-ROS-PDUs): each frame the codec cannot read gets the
/// problem its broken constraint names, with the invoke id when it could be read; rejects
/// and event reports are never answered; every one is counted and the link stays up.
#[test]
fn undecodable_frames_get_the_x880_reject_and_are_counted() {
    let mut h = H::up();
    h.s.request(1, answer_call(), h.now);
    h.s.request(2, answer_call(), h.now);
    assert_eq!(h.sent().len(), 2);
    let cases: [(&str, &str, Option<&str>); 12] = [
        // invoke, not valid BER (the garble fault): badlyStructuredPDU, id 5
        (
            "garble",
            "a1 04 02 01 05 30",
            Some("a4 06 02 01 05 80 01 02"),
        ),
        // invoke, an inner length past its parent: badlyStructuredPDU
        (
            "bad length",
            "a1 08 02 01 05 02 01 02 30 05",
            Some("a4 06 02 01 05 80 01 02"),
        ),
        // invoke, an OCTET STRING where the opcode goes: mistypedPDU
        (
            "no opcode",
            "a1 05 02 01 06 04 00",
            Some("a4 06 02 01 06 80 01 01"),
        ),
        // invoke answerCall with an empty argument: mistypedArgument
        (
            "bad argument",
            "a1 08 02 01 07 02 01 02 30 00",
            Some("a4 06 02 01 07 81 01 02"),
        ),
        // a broken event report: never answered
        ("bad report", "a1 0a 02 01 09 02 01 15 30 03 55 09 00", None),
        // a result to request 1 with an empty result SEQUENCE: mistypedPDU
        (
            "bad envelope",
            "a2 05 02 01 01 30 00",
            Some("a4 06 02 01 01 80 01 01"),
        ),
        // a returnError to request 2, an OCTET STRING in universalFailure's operation:
        // mistypedParameter
        (
            "bad parameter",
            "a3 0b 02 01 02 02 01 01 a0 03 04 01 0c",
            Some("a4 06 02 01 02 83 01 04"),
        ),
        // the same to an invoke not in flight: unrecognizedInvocation
        (
            "late error",
            "a3 0b 02 01 63 02 01 01 a0 03 04 01 0c",
            Some("a4 06 02 01 63 83 01 00"),
        ),
        // a result of monitorStart to an invoke not in flight, unreadable: unrecognizedInvocation
        (
            "late result",
            "a2 0a 02 01 64 30 05 02 01 47 30 00",
            Some("a4 06 02 01 64 82 01 00"),
        ),
        // a well-formed value of no APDU type: unrecognizedPDU, invoke id absent
        ("unknown", "30 03 02 01 05", Some("a4 05 05 00 80 01 00")),
        // a reject we cannot read: never rejected
        ("bad reject", "a4 02 02 01", None),
        // a result whose invoke id is a NULL... of a SEQUENCE: not BER at all inside
        ("truncated", "a2 03 02 01", Some("a4 05 05 00 80 01 02")),
    ];
    let mut rejects = 0;
    for (n, (what, pdu, reject)) in cases.iter().enumerate() {
        h.pdu(pdu);
        let want: Vec<Bytes> = reject.iter().map(|r| hex(r)).collect();
        rejects += want.len() as u64;
        let outs = h.drain();
        let sent: Vec<Bytes> = outs
            .iter()
            .filter_map(|o| match o {
                Out::Transmit(Frame::Pdu(p)) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(sent, want, "{what}");
        assert!(downs(&outs).is_empty(), "{what}");
        assert_eq!(
            h.s.counters(),
            LinkCounters {
                malformed_frames: n as u64 + 1,
                rejects_sent: rejects,
            },
            "{what}"
        );
        assert!(h.s.is_associated(), "{what}");
    }
}

/// The requests whose answers could not be read are answered with the reject sent.
#[test]
fn a_rejected_answer_answers_its_request() {
    let mut h = H::up();
    h.s.request(1, answer_call(), h.now);
    h.s.request(2, answer_call(), h.now);
    h.s.request(3, answer_call(), h.now);
    h.sent();
    h.pdu("a2 05 02 01 01 30 00");
    h.pdu("a3 0b 02 01 02 02 01 01 a0 03 04 01 0c");
    h.pdu("a2 04 02 01 03 30");
    let outs = h.drain();
    assert_eq!(
        answers(&outs),
        vec![
            (1, Ok(Err(CstaError::Reject(problem::MISTYPED_PDU)))),
            (2, Ok(Err(CstaError::Reject(problem::MISTYPED_PARAMETER)))),
            (3, Ok(Err(CstaError::Reject(problem::BADLY_STRUCTURED_PDU)))),
        ]
    );
    assert_eq!(h.s.pending(), 0);
}

/// Garbage where a frame must start (an empty frame, octets that are not one BER value
/// and no APDU), and a length over max_frame from the codec: the link is reset (ABRT,
/// close, Down with the reason, reconnect) and the frame counted.
#[test]
fn lost_framing_resets_the_link_with_the_reason() {
    for (frame, reason) in [
        (
            "",
            "framing lost (a frame that is no message: empty PDU at offset 0; the link's max_frame is 16384 octets): resetting the link",
        ),
        (
            "02 05 01",
            "framing lost (a frame that is no message: APDU: unexpected tag [UNIVERSAL 2] at offset 0; the link's max_frame is 16384 octets): resetting the link",
        ),
    ] {
        let mut h = H::up();
        h.s.request(1, answer_call(), h.now);
        h.sent();
        h.pdu(frame);
        let outs = h.drain();
        assert_eq!(
            outs,
            vec![
                Out::Transmit(Frame::Pdu(hex(ABRT_USER))),
                Out::Answer {
                    token: 1,
                    answer: Err(LinkError::Aborted)
                },
                Out::Close,
                Out::Event(LinkEvent::Down {
                    reason: reason.into()
                }),
            ],
            "{frame}"
        );
        assert_eq!(h.s.counters().malformed_frames, 1);
        assert!(matches!(h.s.state(), State::ExpectRetry { .. }));
    }
    // the driver's codec: an announced length over max_frame
    let mut h = H::new(LinkConfig {
        max_frame: 100,
        ..cfg()
    });
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    h.drain();
    let mut codec = h.s.codec().unwrap();
    let mut buf = bytes::BytesMut::from(&hex("00 65 a1")[..]);
    let e = tokio_util::codec::Decoder::decode(&mut codec, &mut buf).unwrap_err();
    h.s.framing_lost(h.now, &e.to_string());
    assert_eq!(
        downs(&h.drain()),
        vec!["framing lost (frame of 101 octets exceeds the limit of 100; is the other side speaking CSTA BER with 2-byte framing?; the link's max_frame is 100 octets): resetting the link"]
    );
    assert_eq!(
        h.s.counters(),
        LinkCounters {
            malformed_frames: 1,
            rejects_sent: 0
        }
    );
    // the next attempt comes up as usual; the counters stay
    h.advance(Duration::from_secs(1));
    assert_eq!(h.drain(), vec![Out::Connect]);
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    assert_eq!(h.drain(), vec![Out::Event(LinkEvent::Up)]);
    assert_eq!(h.s.counters().malformed_frames, 1);
}

// ---- keep-alive -----------------------------------------------------------------------------

#[test]
fn keep_alive_after_idle_time_and_dead_after_the_misses() {
    let mut h = H::up();
    let t0 = h.now;
    h.advance(Duration::from_millis(19_999));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    // our systemStatus(normal), with the same octets as the switch's (invoke id 1)
    assert_eq!(h.sent(), vec![hex(SYSTEM_STATUS_NORMAL)]);
    // answered: the next one after another idle period
    h.now += Duration::from_secs(3);
    h.pdu(SYSTEM_STATUS_RESULT);
    assert!(h.drain().is_empty());
    assert_eq!(h.s.poll_timeout(), Some(t0 + Duration::from_secs(43)));
    // traffic from the switch also counts as life
    h.now = t0 + Duration::from_secs(40);
    h.pdu(DELIVERED_XREF1);
    h.drain();
    assert_eq!(h.s.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    // now silence: keep-alive, keep-alive, dead
    h.now = t0 + Duration::from_secs(60);
    h.s.handle_timeout(h.now);
    assert_eq!(opcode(&h.sent()[0]), Some(opcode::SYSTEM_STATUS));
    h.now += Duration::from_secs(20);
    h.s.handle_timeout(h.now);
    assert_eq!(opcode(&h.sent()[0]), Some(opcode::SYSTEM_STATUS));
    assert!(h.s.is_associated());
    h.now += Duration::from_secs(20);
    h.s.handle_timeout(h.now);
    let outs = h.drain();
    assert_eq!(outs[0], Out::Transmit(Frame::Pdu(hex(ABRT_USER))));
    assert!(outs.contains(&Out::Close));
    assert_eq!(
        downs(&outs),
        vec!["keep-alive: 2 systemStatus unanswered (20s apart); the link is dead"]
    );
    assert!(!h.s.is_associated());
}

// ---- monitors -------------------------------------------------------------------------------

#[test]
fn monitor_is_idempotent_and_joins_a_start_in_flight() {
    let mut h = H::up();
    h.s.monitor(1, "201", h.now);
    h.s.monitor(2, "201", h.now);
    let sent = h.sent();
    assert_eq!(sent.len(), 1, "one MonitorStart for both callers");
    h.pdu(&monitor_result(invoke_id(&sent[0]), 1));
    assert_eq!(
        h.drain(),
        vec![
            Out::Event(LinkEvent::Monitored {
                device: "201".into(),
                again: false
            }),
            Out::Answer {
                token: 1,
                answer: Ok(Ok(None))
            },
            Out::Answer {
                token: 2,
                answer: Ok(Ok(None))
            },
        ]
    );
    // active: answered at once, nothing sent
    h.s.monitor(3, "201", h.now);
    assert_eq!(
        h.drain(),
        vec![Out::Answer {
            token: 3,
            answer: Ok(Ok(None))
        }]
    );
}

#[test]
fn a_refused_monitor_is_not_remembered() {
    let mut h = H::up();
    h.s.monitor(1, "999", h.now);
    let id = invoke_id(&h.sent()[0]);
    h.pdu(&format!("a3 0b 02 01 {id:02x} 02 01 01 a0 03 0a 01 0c"));
    match &answers(&h.drain())[..] {
        [(1, Ok(Err(CstaError::Failure(f))))] => {
            assert_eq!(f.to_string(), "operation/invalidDeviceID")
        }
        o => panic!("{o:?}"),
    }
    assert!(h.s.monitors().is_empty());
}

#[test]
fn unmonitor_sends_monitor_stop_and_forgets_the_device() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    h.s.unmonitor(2, "201", h.now);
    // MonitorStop exactly as in shared/spec/captures/vectors.tsv (invoke id 2 here)
    assert_eq!(
        h.sent(),
        vec![hex("a1 0e 02 01 02 02 01 49 30 06 55 04 00 00 00 01")]
    );
    h.pdu("a2 0a 02 01 02 30 05 02 01 49 05 00");
    assert_eq!(answers(&h.drain()), vec![(2, Ok(Ok(None)))]);
    assert!(h.s.monitors().is_empty());
    // not monitored: answered at once
    h.s.unmonitor(3, "201", h.now);
    assert_eq!(answers(&h.drain()), vec![(3, Ok(Ok(None)))]);
    // unmonitored while the start is in flight: the late monitor is stopped again
    h.s.monitor(4, "202", h.now);
    let id = invoke_id(&h.sent()[0]);
    h.s.unmonitor(5, "202", h.now);
    assert_eq!(answers(&h.drain()), vec![(5, Ok(Ok(None)))]);
    h.pdu(&monitor_result(id, 7));
    let outs = h.drain();
    let stop = match &outs[0] {
        Out::Transmit(Frame::Pdu(p)) => p.clone(),
        o => panic!("{o:?}"),
    };
    assert_eq!(opcode(&stop), Some(opcode::MONITOR_STOP));
    assert_eq!(answers(&outs), vec![(4, Ok(Ok(None)))]);
    assert!(h.s.monitors().is_empty());
}

#[test]
fn reconnect_monitors_every_device_again_with_new_cross_references() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    h.monitor_active(2, "202", 2);
    h.s.transport_closed(h.now, "the switch closed the connection");
    let outs = h.drain();
    assert_eq!(downs(&outs), vec!["the switch closed the connection"]);
    // while down: monitor answers Down, and the table keeps both devices
    h.s.monitor(3, "203", h.now);
    assert_eq!(answers(&h.drain()), vec![(3, Err(LinkError::Down))]);
    assert_eq!(h.s.monitors().len(), 2);
    h.advance(Duration::from_millis(500));
    assert_eq!(h.drain(), vec![Out::Connect]);
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    let outs = h.drain();
    assert_eq!(outs[0], Out::Event(LinkEvent::Up));
    let starts: Vec<Bytes> = outs[1..]
        .iter()
        .map(|o| match o {
            Out::Transmit(Frame::Pdu(p)) => p.clone(),
            o => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(starts
        .iter()
        .all(|p| opcode(p) == Some(opcode::MONITOR_START)));
    h.pdu(&monitor_result(invoke_id(&starts[0]), 11));
    h.pdu(&monitor_result(invoke_id(&starts[1]), 12));
    assert_eq!(
        h.drain(),
        vec![
            Out::Event(LinkEvent::Monitored {
                device: "201".into(),
                again: true
            }),
            Out::Event(LinkEvent::Monitored {
                device: "202".into(),
                again: true
            }),
        ]
    );
    let m = h.s.monitors();
    assert_eq!(
        m.device_of(&MonitorCrossRefId::new([0, 0, 0, 11])),
        Some("201")
    );
    assert_eq!(
        m.device_of(&MonitorCrossRefId::new([0, 0, 0, 12])),
        Some("202")
    );
    assert_eq!(m.device_of(&MonitorCrossRefId::new([0, 0, 0, 1])), None);
}

#[test]
fn a_refused_re_monitor_is_lost_and_forgotten() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    h.s.transport_closed(h.now, "gone");
    h.advance(Duration::from_millis(500));
    h.drain();
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    let outs = h.drain();
    let Out::Transmit(Frame::Pdu(start)) = &outs[1] else {
        panic!("{outs:?}")
    };
    let id = invoke_id(start);
    h.pdu(&format!("a3 0b 02 01 {id:02x} 02 01 01 a0 03 0a 01 0c"));
    assert_eq!(
        h.drain(),
        vec![Out::Event(LinkEvent::MonitorLost {
            device: "201".into(),
            reason: "monitorStart refused: operation/invalidDeviceID".into()
        })]
    );
    assert!(h.s.monitors().is_empty());
}

#[test]
fn a_switch_restart_loses_the_monitors_and_they_come_back() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    // systemStatus initializing (invoke id 2 of the switch), then normal
    h.pdu("a1 0c 02 01 02 02 02 00 d3 30 03 0a 01 00");
    let outs = h.drain();
    assert_eq!(
        outs,
        vec![
            Out::Transmit(Frame::Pdu(hex("a2 0b 02 01 02 30 06 02 02 00 d3 05 00"))),
            Out::Event(LinkEvent::MonitorLost {
                device: "201".into(),
                reason: "the switch is restarting (systemStatus initializing); monitored again when it is back".into()
            }),
            Out::Event(LinkEvent::SystemStatus {
                status: "initializing".into()
            }),
        ]
    );
    h.pdu("a1 0c 02 01 03 02 02 00 d3 30 03 0a 01 02");
    let outs = h.drain();
    assert_eq!(
        outs[0],
        Out::Transmit(Frame::Pdu(hex("a2 0b 02 01 03 30 06 02 02 00 d3 05 00")))
    );
    let Out::Transmit(Frame::Pdu(start)) = &outs[1] else {
        panic!("{outs:?}")
    };
    assert_eq!(opcode(start), Some(opcode::MONITOR_START));
    h.pdu(&monitor_result(invoke_id(start), 5));
    assert_eq!(
        h.drain(),
        vec![Out::Event(LinkEvent::Monitored {
            device: "201".into(),
            again: true
        })]
    );
    assert!(h.s.is_associated());
}

// ---- release --------------------------------------------------------------------------------

#[test]
fn shutdown_sends_rlrq_and_closes_on_rlre() {
    let mut h = H::up();
    h.s.request(1, answer_call(), h.now);
    h.sent();
    h.s.shutdown(h.now);
    assert_eq!(h.sent(), vec![hex(RLRQ)]);
    // no new requests while releasing
    h.s.request(2, answer_call(), h.now);
    assert_eq!(answers(&h.drain()), vec![(2, Err(LinkError::Closed))]);
    h.pdu(RLRE);
    let outs = h.drain();
    assert_eq!(answers(&outs), vec![(1, Err(LinkError::Closed))]);
    assert!(outs.contains(&Out::Close));
    assert_eq!(downs(&outs), vec!["released (RLRQ answered by RLRE)"]);
    assert!(h.s.is_closed());
    assert_eq!(h.s.poll_timeout(), None);
    // closed for good: no reconnect
    h.advance(Duration::from_secs(3600));
    assert!(h.drain().is_empty());
}

#[test]
fn shutdown_without_rlre_closes_after_the_request_timeout() {
    let mut h = H::up();
    h.s.shutdown(h.now);
    h.sent();
    h.advance(Duration::from_millis(4999));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    let outs = h.drain();
    assert!(outs.contains(&Out::Close));
    assert!(downs(&outs)[0].contains("without RLRE"), "{outs:?}");
    assert!(h.s.is_closed());
}

#[test]
fn shutdown_while_down_just_closes() {
    let mut h = H::new(cfg());
    h.s.shutdown(h.now);
    let outs = h.drain();
    assert!(outs.contains(&Out::Close));
    assert!(h.s.is_closed());
}

/// The typed rejects display as the `rejected:…` codes the NDJSON port sends.
#[test]
fn rejects_display_as_before() {
    for (p, text) in [
        (
            problem::UNRECOGNIZED_OPERATION,
            "rejected:unrecognizedOperation",
        ),
        (problem::MISTYPED_ARGUMENT, "rejected:mistypedArgument"),
        (problem::MISTYPED_RESULT, "rejected:mistypedResult"),
        (problem::UNRECOGNIZED_ERROR, "rejected:unrecognizedError"),
        (problem::MISTYPED_PARAMETER, "rejected:mistypedParameter"),
        (Problem::Invoke(9), "rejected:invoke/9"),
    ] {
        assert_eq!(CstaError::Reject(p).to_string(), text);
    }
}
