//! The session driven by hand: exact bytes in and out, a manual clock.

use super::*;
use crate::test_util::hex;
use bytes::Bytes;
use ctigate_csta::acse::{Acse, AcseKind};
use ctigate_csta::apdu::Apdu;
use ctigate_csta_model::ops::{AnswerCallArgument, MakeCallArgument, MonitorStopArgument};
use ctigate_csta_model::types::{ConnectionId, MonitorCrossRefId};
use std::time::Duration;

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

/// No jitter: the exact delays of the backoff (the jitter's range is tested in
/// `link/backoff.rs`, and with a seeded RNG below).
fn cfg() -> LinkConfig {
    LinkConfig {
        name: "test".into(),
        versions: vec![ctigate_csta::acse::version::ECMA_285_ED2],
        reconnect_jitter_percent: 0,
        ..LinkConfig::default()
    }
}

/// Side `i` at `address`.
fn side(i: usize, address: &str) -> Side {
    Side {
        index: i,
        address: address.into(),
    }
}

/// The one side of [`cfg`].
fn side0() -> Side {
    side(0, "127.0.0.1:2555")
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
        assert_eq!(h.drain(), vec![Out::Event(LinkEvent::Up { side: side0() })]);
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
            Out::Event(LinkEvent::Down { reason, .. }) => Some(reason.clone()),
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
    assert_eq!(h.drain(), vec![Out::Event(LinkEvent::Up { side: side0() })]);
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
    // up again, and dropped at once: a flapping switch does not reset the backoff
    let up_again = |h: &mut H| {
        h.drain();
        let State::ExpectRetry { at } = h.s.state().clone() else {
            panic!("{:?}", h.s.state())
        };
        h.now = at;
        h.s.handle_timeout(h.now);
        assert_eq!(h.drain(), vec![Out::Connect]);
        h.s.connected(h.now);
        h.sent();
        h.pdu(AARE_REAL);
        assert_eq!(h.drain(), vec![Out::Event(LinkEvent::Up { side: side0() })]);
    };
    up_again(&mut h);
    h.now += Duration::from_secs(29);
    h.s.transport_closed(h.now, "reset by peer");
    assert_eq!(
        h.s.state(),
        &State::ExpectRetry {
            at: h.now + Duration::from_secs(5)
        }
    );
    // up for reconnect_reset (30 s): the next loss retries after reconnect_min
    up_again(&mut h);
    h.now += Duration::from_secs(30);
    h.s.transport_closed(h.now, "reset by peer");
    assert_eq!(
        h.s.state(),
        &State::ExpectRetry {
            at: h.now + Duration::from_secs(1)
        }
    );
    h.drain();
    h.now += Duration::from_secs(1);
    h.s.handle_timeout(h.now);
    h.s.transport_closed(h.now, "connection refused");
    assert_eq!(
        h.s.state(),
        &State::ExpectRetry {
            at: h.now + Duration::from_secs(2)
        },
        "and doubles from there"
    );
}

#[test]
fn backoff_jitter_is_drawn_within_its_range() {
    let mut h = H::new(LinkConfig {
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(8),
        reconnect_jitter_percent: 50,
        ..cfg()
    });
    h.s.seed_jitter(9);
    let mut delays = Vec::new();
    for _ in 0..6 {
        h.s.transport_closed(h.now, "connection refused");
        h.drain();
        let State::ExpectRetry { at } = h.s.state().clone() else {
            panic!("{:?}", h.s.state())
        };
        delays.push((at - h.now).as_millis() as u64);
        h.now = at;
        h.s.handle_timeout(h.now);
        assert_eq!(h.drain(), vec![Out::Connect]);
    }
    // the same draws as the pure function with the same seed
    let mut rng = fastrand::Rng::with_seed(9);
    let b = h.s.config().backoff();
    let want: Vec<u64> = (0..6)
        .map(|n| b.delay(n, &mut rng).as_millis() as u64)
        .collect();
    assert_eq!(delays, want);
    for (n, (d, base)) in delays
        .iter()
        .zip([1000, 2000, 4000, 8000, 8000, 8000])
        .enumerate()
    {
        assert!(*d >= base / 2 && *d <= base, "attempt {n}: {d} ms");
    }
    assert_ne!(delays[3..], [8000, 8000, 8000], "jittered");
}

/// A session whose sides are `a:1`, `b:1`, `c:1`.
fn three_sides() -> H {
    H::new(LinkConfig {
        addresses: vec!["a:1".into(), "b:1".into(), "c:1".into()],
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(1),
        ..cfg()
    })
}

#[test]
fn every_failure_moves_to_the_next_side_round_robin() {
    let mut h = three_sides();
    assert_eq!(h.s.side(), side(0, "a:1"));
    let mut tried = vec![h.s.address().to_string()];
    let mut told = Vec::new();
    // refused, association rejected, no AARE, refused again: a, b, c, a, b
    for step in 0..4 {
        match step {
            1 => {
                h.s.connected(h.now);
                h.sent();
                h.pdu(AARE_REJECTED_CONTEXT);
            }
            2 => {
                h.s.connected(h.now);
                h.sent();
                h.advance(Duration::from_secs(5));
            }
            _ => h.s.transport_closed(h.now, "connection refused"),
        }
        for o in h.drain() {
            if let Out::Event(LinkEvent::Down { side, .. }) = o {
                told.push(side.index);
            }
        }
        let State::ExpectRetry { at } = h.s.state().clone() else {
            panic!("{:?}", h.s.state())
        };
        h.now = at;
        h.s.handle_timeout(h.now);
        assert_eq!(h.drain(), vec![Out::Connect]);
        tried.push(h.s.address().to_string());
    }
    assert_eq!(tried, ["a:1", "b:1", "c:1", "a:1", "b:1"]);
    // each side's failure is told, naming it; side A's second refusal is the same reason
    // as its first, and not told twice
    assert_eq!(told, [0, 1, 2]);
    // side B refuses now (another reason than its rejection): told
    h.s.transport_closed(h.now, "connection refused");
    assert_eq!(downs(&h.drain()), ["connection refused"]);
    // up on c: Up names it
    h.now += Duration::from_secs(1);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.s.side(), side(2, "c:1"));
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    assert_eq!(
        h.drain(),
        vec![Out::Event(LinkEvent::Up {
            side: side(2, "c:1")
        })]
    );
}

#[test]
fn losing_an_association_moves_to_the_next_side_and_monitors_again_there() {
    let mut h = H::new(LinkConfig {
        addresses: vec!["a:1".into(), "b:1".into()],
        ..cfg()
    });
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    assert_eq!(
        h.drain(),
        vec![Out::Event(LinkEvent::Up {
            side: side(0, "a:1")
        })]
    );
    h.monitor_active(1, "201", 1);
    // side A aborts
    h.pdu(ABRT_USER);
    let outs = h.drain();
    assert_eq!(
        outs.iter()
            .filter_map(|o| match o {
                Out::Event(LinkEvent::Down { side, .. }) => Some(side.clone()),
                _ => None,
            })
            .collect::<Vec<_>>(),
        [side(0, "a:1")]
    );
    // requests fail fast while down
    h.s.request(2, answer_call(), h.now);
    assert_eq!(answers(&h.drain()), vec![(2, Err(LinkError::Down))]);
    // the retry goes to side B; up there, 201 is monitored again
    h.advance(Duration::from_millis(500));
    assert_eq!(h.drain(), vec![Out::Connect]);
    assert_eq!(h.s.address(), "b:1");
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    let outs = h.drain();
    assert_eq!(
        outs[0],
        Out::Event(LinkEvent::Up {
            side: side(1, "b:1")
        })
    );
    let sent: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Out::Transmit(Frame::Pdu(p)) => opcode(p),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [71], "monitorStart of 201 on side B");
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
    // an unknown cross reference naming no monitored device: delivered without a device
    // (one naming a monitored device: events_under_an_unknown_cross_reference_...)
    h.s.unmonitor(2, "201", h.now);
    h.drain();
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
                ..LinkCounters::default()
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
                    reason: reason.into(),
                    side: side0()
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
        vec!["framing lost (frame of 101 octets exceeds the limit of 100; is the other side speaking CSTA BER with this framing setting?; the link's max_frame is 100 octets): resetting the link"]
    );
    assert_eq!(
        h.s.counters(),
        LinkCounters {
            malformed_frames: 1,
            rejects_sent: 0,
            ..LinkCounters::default()
        }
    );
    // the next attempt comes up as usual; the counters stay
    h.advance(Duration::from_secs(1));
    assert_eq!(h.drain(), vec![Out::Connect]);
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    assert_eq!(h.drain(), vec![Out::Event(LinkEvent::Up { side: side0() })]);
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
    assert_eq!(outs[0], Out::Event(LinkEvent::Up { side: side0() }));
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
            reason: "monitorStart refused: operation/invalidDeviceID".into(),
            forgotten: true
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
                reason: "the switch is unavailable (systemStatus initializing); monitored again when it is enabled or normal".into(),
            forgotten: false
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

// ---- nothing lost: system status, forgotten monitors ---------------------------------------

/// The switch's systemStatus invoke (its invoke id `id`) with the status `value`.
fn status(id: u8, value: u8) -> String {
    format!("a1 0c 02 01 {id:02x} 02 02 00 d3 30 03 0a 01 {value:02x}")
}

/// Our returnResult noData to the switch's systemStatus `id`.
fn status_answer(id: u8) -> Out {
    Out::Transmit(Frame::Pdu(hex(&format!(
        "a2 0b 02 01 {id:02x} 30 06 02 02 00 d3 05 00"
    ))))
}

fn status_event(name: &str) -> Out {
    Out::Event(LinkEvent::SystemStatus {
        status: name.into(),
    })
}

fn resync(device: &str, reason: &str) -> Out {
    Out::Event(LinkEvent::Resync {
        device: device.into(),
        reason: reason.into(),
    })
}

/// The PDU of an `Out::Transmit`.
fn pdu_of(o: &Out) -> &Bytes {
    match o {
        Out::Transmit(Frame::Pdu(p)) => p,
        o => panic!("expected a PDU, got {o:?}"),
    }
}

/// A monitorStop invoke naming the cross reference `000000xx`.
fn assert_monitor_stop(o: &Out, xref: u8) {
    let p = pdu_of(o);
    assert_eq!(opcode(p), Some(opcode::MONITOR_STOP), "{p:02x?}");
    assert!(
        p.ends_with(&[0x30, 0x06, 0x55, 0x04, 0, 0, 0, xref]),
        "{p:02x?}"
    );
}

/// `returnError` universalFailure operation/invalidMonitorCrossRefID (60) to invoke `id`.
fn invalid_xref_error(id: i64) -> String {
    format!("a3 0b 02 01 {id:02x} 02 01 01 a0 03 0a 01 3c")
}

#[test]
fn disabled_loses_the_monitors_until_enabled() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    h.pdu(&status(2, 4)); // disabled
    assert_eq!(
        h.drain(),
        vec![
            status_answer(2),
            Out::Event(LinkEvent::MonitorLost {
                device: "201".into(),
                reason: "the switch is unavailable (systemStatus disabled); monitored again when it is enabled or normal".into(),
            forgotten: false
            }),
            status_event("disabled"),
        ]
    );
    assert_eq!(
        h.s.monitors().state("201"),
        Some(&MonitorState::ExpectRemonitor)
    );
    // events under the old cross reference are not the device's any more
    h.pdu(DELIVERED_XREF1);
    let outs = h.drain();
    assert!(
        matches!(
            &outs[..],
            [Out::Event(LinkEvent::Report { device: None, .. })]
        ),
        "{outs:?}"
    );
    // still disabled: nothing is monitored again; overloadRelieved does not end it
    h.pdu(&status(3, 4));
    assert_eq!(h.drain(), vec![status_answer(3), status_event("disabled")]);
    h.pdu(&status(4, 7));
    assert_eq!(
        h.drain(),
        vec![status_answer(4), status_event("overloadRelieved")]
    );
    // enabled: monitored again (the owner resyncs on Monitored again)
    h.pdu(&status(5, 1));
    let outs = h.drain();
    assert_eq!(outs.len(), 3, "{outs:?}");
    assert_eq!(outs[0], status_answer(5));
    assert_eq!(opcode(pdu_of(&outs[1])), Some(opcode::MONITOR_START));
    assert_eq!(outs[2], status_event("enabled"));
    h.pdu(&monitor_result(invoke_id(pdu_of(&outs[1])), 6));
    assert_eq!(
        h.drain(),
        vec![Out::Event(LinkEvent::Monitored {
            device: "201".into(),
            again: true
        })]
    );
}

#[test]
fn messages_lost_resyncs_every_active_monitor_and_nothing_else() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    h.monitor_active(2, "202", 2);
    h.pdu(&status(2, 3)); // messagesLost
    let why = "the switch lost messages (systemStatus messagesLost)";
    assert_eq!(
        h.drain(),
        vec![
            status_answer(2),
            resync("201", why),
            resync("202", why),
            status_event("messagesLost"),
        ]
    );
    // the monitors stay as they are
    assert_eq!(
        h.s.monitors()
            .device_of(&MonitorCrossRefId::new([0, 0, 0, 2])),
        Some("202")
    );
    // a normal afterwards is only a status
    h.pdu(&status(3, 2));
    assert_eq!(h.drain(), vec![status_answer(3), status_event("normal")]);
}

#[test]
fn resyncs_are_paced_by_the_answers_to_requests() {
    let mut h = H::up();
    // more monitored devices than one batch (64)
    for i in 0..70u8 {
        h.monitor_active(u64::from(i) + 1, &format!("{}", 300 + u32::from(i)), i + 1);
    }
    h.pdu(&status(2, 3)); // messagesLost
    let outs = h.drain();
    let told = |outs: &[Out]| -> Vec<String> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Event(LinkEvent::Resync { device, .. }) => Some(device.clone()),
                _ => None,
            })
            .collect()
    };
    let first = told(&outs);
    assert_eq!(first.len(), 64, "{outs:?}");
    assert_eq!(first[0], "300");
    // one more per answered request (the owner's snapshots)
    h.s.request(500, answer_call(), h.now);
    let id = invoke_id(&h.sent()[0]);
    h.pdu(&format!("a3 0b 02 01 {id:02x} 02 01 01 a0 03 0a 01 0d"));
    let outs = h.drain();
    assert_eq!(told(&outs), ["364"], "{outs:?}");
    // a device unmonitored meanwhile is skipped
    h.s.unmonitor(501, "365", h.now);
    let stop = invoke_id(&h.sent()[0]);
    h.pdu(&format!("a2 0a 02 01 {stop:02x} 30 05 02 01 49 05 00"));
    h.drain();
    h.s.request(503, answer_call(), h.now);
    let id = invoke_id(&h.sent()[0]);
    h.pdu(&format!("a3 0b 02 01 {id:02x} 02 01 01 a0 03 0a 01 0d"));
    let outs = h.drain();
    assert_eq!(told(&outs), ["366"], "{outs:?}");
    // the link going down drops the rest (every device is monitored again then)
    h.s.transport_closed(h.now, "gone");
    h.drain();
    h.s.request(502, answer_call(), h.now);
    assert!(told(&h.drain()).is_empty());
}

#[test]
fn overload_is_counted_and_every_monitor_resynced_once_it_is_over() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    h.pdu(&status(2, 5)); // overloadImminent
    assert_eq!(
        h.drain(),
        vec![status_answer(2), status_event("overloadImminent")]
    );
    h.pdu(&status(3, 6)); // overloadReached
    assert_eq!(
        h.drain(),
        vec![status_answer(3), status_event("overloadReached")]
    );
    assert_eq!(h.s.overloads(), 2);
    h.pdu(&status(4, 2)); // normal
    assert_eq!(
        h.drain(),
        vec![
            status_answer(4),
            resync(
                "201",
                "the switch's overload is over (systemStatus normal); events may have been lost"
            ),
            status_event("normal"),
        ]
    );
    // once
    h.pdu(&status(5, 2));
    assert_eq!(h.drain(), vec![status_answer(5), status_event("normal")]);
    // overloadRelieved ends an overload too
    h.pdu(&status(6, 5));
    h.drain();
    h.pdu(&status(7, 7));
    assert_eq!(
        h.drain(),
        vec![
            status_answer(7),
            resync(
                "201",
                "the switch's overload is over (systemStatus overloadRelieved); events may have been lost"
            ),
            status_event("overloadRelieved"),
        ]
    );
    assert_eq!(h.s.overloads(), 3);
}

#[test]
fn invalid_monitor_cross_ref_to_a_request_monitors_the_device_again() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    // a request naming 201's cross reference; the switch no longer knows it
    let stop: Argument = MonitorStopArgument::new(MonitorCrossRefId::new([0, 0, 0, 1])).into();
    h.s.request(7, stop, h.now);
    let sent = h.sent();
    let id = invoke_id(&sent[0]);
    h.pdu(&invalid_xref_error(id));
    let outs = h.drain();
    assert_eq!(outs.len(), 3, "{outs:?}");
    assert_eq!(
        outs[0],
        Out::Event(LinkEvent::MonitorLost {
            device: "201".into(),
            reason: "the switch no longer knows its monitor (operation/invalidMonitorCrossRefID); monitored again".into(),
            forgotten: false
        })
    );
    match &outs[1] {
        Out::Answer {
            token: 7,
            answer: Ok(Err(CstaError::Failure(f))),
        } => assert_eq!(f.to_string(), "operation/invalidMonitorCrossRefID"),
        o => panic!("{o:?}"),
    }
    let start = pdu_of(&outs[2]);
    assert_eq!(opcode(start), Some(opcode::MONITOR_START));
    h.pdu(&monitor_result(invoke_id(start), 9));
    assert_eq!(
        h.drain(),
        vec![Out::Event(LinkEvent::Monitored {
            device: "201".into(),
            again: true
        })]
    );
    assert_eq!(
        h.s.monitors()
            .device_of(&MonitorCrossRefId::new([0, 0, 0, 9])),
        Some("201")
    );
    // the same error to our own monitorStop (unmonitor): the monitor is gone either way
    h.s.unmonitor(8, "201", h.now);
    let sent = h.sent();
    h.pdu(&invalid_xref_error(invoke_id(&sent[0])));
    assert_eq!(
        h.drain(),
        vec![Out::Answer {
            token: 8,
            answer: Ok(Ok(None))
        }]
    );
    assert!(h.s.monitors().is_empty());
}

#[test]
fn events_under_an_unknown_cross_reference_re_monitor_the_devices_they_name() {
    let mut h = H::up();
    h.monitor_active(1, "201", 1);
    // a delivered event naming 201 and 202, under cross reference 7 we never got
    let unknown = DELIVERED_XREF1.replace("55 04 00 00 00 01", "55 04 00 00 00 07");
    h.pdu(&unknown);
    let outs = h.drain();
    assert_eq!(outs.len(), 5, "{outs:?}");
    assert_monitor_stop(&outs[0], 7); // the monitor we do not account for
    assert_monitor_stop(&outs[1], 1); // 201's, which the switch may still have
    assert_eq!(
        outs[2],
        Out::Event(LinkEvent::MonitorLost {
            device: "201".into(),
            reason: "its events arrive under a cross reference we never got; monitored again"
                .into(),
            forgotten: false
        })
    );
    let start = pdu_of(&outs[3]).clone();
    assert_eq!(opcode(&start), Some(opcode::MONITOR_START));
    assert!(
        matches!(&outs[4], Out::Event(LinkEvent::Report { device: None, .. })),
        "{outs:?}"
    );
    // the stops are answered (one not known any more): nothing to tell
    h.pdu(&invalid_xref_error(invoke_id(pdu_of(&outs[1]))));
    h.pdu(&format!(
        "a2 0a 02 01 {:02x} 30 05 02 01 49 05 00",
        invoke_id(pdu_of(&outs[0]))
    ));
    assert_eq!(h.drain(), vec![]);
    // a second event under 7 is handled once only
    h.pdu(&unknown);
    let outs = h.drain();
    assert!(
        matches!(
            &outs[..],
            [Out::Event(LinkEvent::Report { device: None, .. })]
        ),
        "{outs:?}"
    );
    h.pdu(&monitor_result(invoke_id(&start), 8));
    assert_eq!(
        h.drain(),
        vec![Out::Event(LinkEvent::Monitored {
            device: "201".into(),
            again: true
        })]
    );
    // events still on their way under 201's old cross reference (stopped by us) and under
    // the one of a device we unmonitored are only reported
    let only_reported = |outs: Vec<Out>| {
        assert!(
            matches!(
                &outs[..],
                [Out::Event(LinkEvent::Report { device: None, .. })]
            ),
            "{outs:?}"
        )
    };
    h.pdu(DELIVERED_XREF1);
    only_reported(h.drain());
    h.s.unmonitor(9, "201", h.now);
    let sent = h.sent();
    assert_monitor_stop(&Out::Transmit(Frame::Pdu(sent[0].clone())), 8);
    h.pdu(&DELIVERED_XREF1.replace("55 04 00 00 00 01", "55 04 00 00 00 08"));
    only_reported(h.drain());
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

/// The switch's frame for a ROSE APDU, as hex.
fn rose_hex(r: ctigate_csta::rose::Rose) -> String {
    let b = Apdu::Rose(r).encode().unwrap();
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_snapshot_answered_by_reference_is_collected_from_its_segments() {
    use ctigate_csta::rose_ext::{ToInvoke, ToReturnResult};
    use ctigate_csta_model::ops::{
        SnapshotDeviceArgument, SnapshotDeviceDataArgument, SnapshotDeviceResponseInfo,
    };
    use ctigate_csta_model::types::{DeviceId, LocalConnectionState};
    let row = |call: u8, st| {
        SnapshotDeviceResponseInfo::new(
            ConnectionId::dialing([0, call], "201"),
            SnapshotDeviceResponseInfo::compound(&[st]),
        )
    };
    let xref = Bytes::from_static(b"\x00\x00\x00\x07");
    let segment = |id: i64, last: bool, rows| {
        let mut d = SnapshotDeviceDataArgument::new(xref.clone(), last, rows);
        d.segment_id = Some(id);
        rose_hex(d.invoke(40 + id))
    };
    let mut h = H::up();
    h.s.request(
        7,
        SnapshotDeviceArgument::new(DeviceId::dialing("201")).into(),
        h.now,
    );
    let sent = h.sent();
    assert_eq!(opcode(&sent[0]), Some(74));
    let id = invoke_id(&sent[0]);
    // the answer by reference: nothing for the caller yet
    let by_ref = SnapshotDeviceResult::new(SnapshotData::ServiceCrossRefId(xref.clone()));
    let result = rose_hex(by_ref.return_result(id));
    assert_eq!(
        result,
        format!("a2 10 02 01 {id:02x} 30 0b 02 01 4a 30 06 04 04 00 00 00 07")
    );
    h.pdu(&result);
    assert_eq!(h.drain(), vec![]);
    // a segment of some other snapshot: ignored (never answered)
    let mut other = SnapshotDeviceDataArgument::new(Bytes::from_static(b"\x09"), true, vec![]);
    other.segment_id = Some(1);
    h.pdu(&rose_hex(other.invoke(39)));
    assert_eq!(h.drain(), vec![]);
    // the segments: each gives request_timeout more
    h.advance(Duration::from_secs(4));
    h.pdu(&segment(
        1,
        false,
        vec![row(1, LocalConnectionState::Connected)],
    ));
    assert_eq!(h.drain(), vec![]);
    h.advance(Duration::from_secs(4));
    h.pdu(&segment(
        2,
        true,
        vec![row(2, LocalConnectionState::Alerting)],
    ));
    let whole = SnapshotDeviceResult::new(SnapshotData::Data(vec![
        row(1, LocalConnectionState::Connected),
        row(2, LocalConnectionState::Alerting),
    ]));
    assert_eq!(
        h.drain(),
        vec![Out::Answer {
            token: 7,
            answer: Ok(Ok(Some(OperationResult::SnapshotDevice(whole))))
        }]
    );

    // segments that stop coming: the caller gets a timeout, a late one is ignored
    h.s.request(
        8,
        SnapshotDeviceArgument::new(DeviceId::dialing("201")).into(),
        h.now,
    );
    let id = invoke_id(&h.sent()[0]);
    h.pdu(&rose_hex(by_ref.return_result(id)));
    h.pdu(&segment(
        1,
        false,
        vec![row(1, LocalConnectionState::Connected)],
    ));
    assert_eq!(h.drain(), vec![]);
    h.advance(Duration::from_secs(5));
    assert_eq!(
        h.drain(),
        vec![Out::Answer {
            token: 8,
            answer: Err(LinkError::Timeout)
        }]
    );
    h.pdu(&segment(2, true, vec![]));
    assert_eq!(h.drain(), vec![]);
    assert!(h.s.is_associated());
}

#[test]
fn a_snapshot_by_reference_larger_than_the_limit_fails() {
    use ctigate_csta::rose_ext::{ToInvoke, ToReturnResult};
    use ctigate_csta_model::ops::{
        SnapshotDeviceArgument, SnapshotDeviceDataArgument, SnapshotDeviceResponseInfo,
    };
    use ctigate_csta_model::types::{DeviceId, LocalConnectionState};
    let mut h = H::new(LinkConfig {
        snapshot_max_calls: 2,
        ..cfg()
    });
    h.s.connected(h.now);
    h.sent();
    h.pdu(AARE_REAL);
    h.drain();
    h.s.request(
        1,
        SnapshotDeviceArgument::new(DeviceId::dialing("201")).into(),
        h.now,
    );
    let id = invoke_id(&h.sent()[0]);
    let xref = Bytes::from_static(b"\x01");
    h.pdu(&rose_hex(
        SnapshotDeviceResult::new(SnapshotData::ServiceCrossRefId(xref.clone())).return_result(id),
    ));
    let rows = (1..=3u8)
        .map(|c| {
            SnapshotDeviceResponseInfo::new(
                ConnectionId::dialing([0, c], "201"),
                SnapshotDeviceResponseInfo::compound(&[LocalConnectionState::Connected]),
            )
        })
        .collect();
    h.pdu(&rose_hex(
        SnapshotDeviceDataArgument::new(xref, true, rows).invoke(5),
    ));
    assert_eq!(
        h.drain(),
        vec![Out::Answer {
            token: 1,
            answer: Err(LinkError::TooLarge("snapshot_max_calls", 2))
        }]
    );
}
