//! The seam: a toy line-based dialect (nothing like BER) drives the same [`Session`]
//! through association, a monitor, a request and its answer, an event report routed by the
//! monitor table, a refused request, and a keep-alive. Correlation, monitors and keep-alive
//! are the session's, reused as they are.
//!
//! Toy lines: `HELLO` / `WELCOME` (association), `INVOKE <id> <operation> [device]`,
//! `RESULT <id> [xref]`, `FAIL <id>`, `EVENT <xref> <device>` (backInService), `BYE`.

use super::*;
use crate::link::session::{Out, Session, State};
use crate::link::{CstaError, LinkEvent};
use bytes::Bytes;
use ctigate_csta_model::events::{BackInServiceEvent, Event};
use ctigate_csta_model::ops::{AnswerCallArgument, MonitorStartResult};
use ctigate_csta_model::types::{
    ConnectionId, CstaObject, MonitorCrossRefId, Party, UniversalFailure,
};
use std::time::{Duration, Instant};
use tokio_util::codec::LinesCodec;

#[derive(Debug)]
struct Toy;

impl Dialect for Toy {
    type Frame = String;
    type Codec = LinesCodec;
    const MAX_INVOKE_ID: i64 = 3;

    fn from_config(_: &LinkConfig) -> Result<Toy, String> {
        Ok(Toy)
    }
    fn codec(&self) -> LinesCodec {
        LinesCodec::new_with_max_length(1000)
    }
    fn handshake(&self) -> Option<String> {
        None
    }
    fn associate(&self) -> String {
        "HELLO".into()
    }
    fn release(&self) -> Option<String> {
        Some("BYE".into())
    }
    fn release_response(&self) -> Option<String> {
        Some("BYE".into())
    }
    fn abort(&self) -> Option<String> {
        None
    }
    fn invoke(&self, id: i64, arg: &Argument) -> Result<String, String> {
        Ok(match arg {
            Argument::MonitorStart(m) => match &m.monitor_object {
                CstaObject::Device(d) => {
                    format!("INVOKE {id} monitorStart {}", d.number().unwrap_or("?"))
                }
                CstaObject::Call(_) => return Err("calls are not monitored here".into()),
            },
            a => format!("INVOKE {id} {}", a.operation()),
        })
    }
    fn result(&self, id: i64, _: Operation, _: Option<&OperationResult>) -> Result<String, String> {
        Ok(format!("RESULT {id}"))
    }
    fn error(&self, id: i64, _: &UniversalFailure) -> Result<String, String> {
        Ok(format!("FAIL {id}"))
    }
    fn reject(&self, id: Option<i64>, problem: Problem) -> Option<String> {
        Some(format!("REJECT {id:?} {problem}"))
    }
    fn decode(&mut self, line: String) -> Message {
        let w: Vec<&str> = line.split(' ').collect();
        let id = |i: usize| w.get(i).and_then(|s| s.parse().ok());
        match w[..] {
            ["WELCOME"] => Message::Association {
                name: "WELCOME",
                what: Association::Accepted {
                    detail: "toy".into(),
                },
            },
            ["BYE"] => Message::Association {
                name: "BYE",
                what: Association::ReleaseResponse,
            },
            ["RESULT", _, xref] => Message::Result {
                invoke_id: id(1),
                result: Ok(Some(OperationResult::MonitorStart(
                    MonitorStartResult::new(MonitorCrossRefId(Bytes::copy_from_slice(
                        xref.as_bytes(),
                    ))),
                ))),
            },
            ["RESULT", _] => Message::Result {
                invoke_id: id(1),
                result: Ok(None),
            },
            ["FAIL", _] => Message::Error {
                invoke_id: id(1),
                error: SwitchError::Failure(UniversalFailure {
                    category: "operation",
                    value: 2, // invalidCallID
                }),
            },
            ["EVENT", xref, device] => Message::EventReport(Ok(EventReport {
                xref: MonitorCrossRefId(Bytes::copy_from_slice(xref.as_bytes())),
                event: Event::from(BackInServiceEvent::new(Party::dialing(device))),
                rest: Vec::new(),
            })),
            _ => Message::Undecodable {
                error: "not a toy line".into(),
                dump: line.clone(),
                guess: Garbled::Unknown,
            },
        }
    }
}

fn drain(s: &mut Session<Toy>) -> Vec<Out<String>> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn sent(s: &mut Session<Toy>) -> Vec<String> {
    drain(s)
        .into_iter()
        .map(|o| match o {
            Out::Transmit(l) => l,
            o => panic!("expected only lines, got {o:?}"),
        })
        .collect()
}

#[test]
fn a_second_dialect_drives_the_same_session() {
    let cfg = LinkConfig {
        keepalive_idle: Duration::from_secs(20),
        ..LinkConfig::default()
    };
    let mut now = Instant::now();
    let mut s: Session<Toy> = Session::with_dialect(cfg, now);
    assert_eq!(drain(&mut s), vec![Out::Connect]);
    assert!(s.codec().is_some());

    // association
    s.connected(now);
    assert_eq!(sent(&mut s), vec!["HELLO"]);
    s.handle_frame("WELCOME".into(), now);
    assert_eq!(
        drain(&mut s),
        vec![Out::Event(LinkEvent::Up { side: s.side() })]
    );
    assert_eq!(s.state(), &State::Associated);

    // a monitor: the session's table learns the cross reference from the toy result
    s.monitor(1, "201", now);
    assert_eq!(sent(&mut s), vec!["INVOKE 1 monitorStart 201"]);
    s.handle_frame("RESULT 1 x1".into(), now);
    assert_eq!(
        drain(&mut s),
        vec![
            Out::Event(LinkEvent::Monitored {
                device: "201".into(),
                again: false
            }),
            Out::Answer {
                token: 1,
                answer: Ok(Ok(None))
            },
        ]
    );

    // an event report is routed to its device by the monitor table
    s.handle_frame("EVENT x1 201".into(), now);
    match &drain(&mut s)[..] {
        [Out::Event(LinkEvent::Report { device, report })] => {
            assert_eq!(device.as_deref(), Some("201"));
            assert!(matches!(report.event, Event::BackInService(_)));
        }
        o => panic!("{o:?}"),
    }

    // a request and its answer, correlated by invoke id; a refusal is data
    let answer: Argument = AnswerCallArgument::new(ConnectionId::dialing([1], "201")).into();
    s.request(2, answer.clone(), now);
    s.request(3, answer, now);
    assert_eq!(
        sent(&mut s),
        vec!["INVOKE 2 answerCall", "INVOKE 3 answerCall"]
    );
    s.handle_frame("FAIL 3".into(), now);
    s.handle_frame("RESULT 2".into(), now);
    let outs = drain(&mut s);
    assert!(matches!(
        &outs[..],
        [
            Out::Answer {
                token: 3,
                answer: Ok(Err(CstaError::Failure(_)))
            },
            Out::Answer {
                token: 2,
                answer: Ok(Ok(None))
            },
        ]
    ));

    // the dialect's invoke-id range (1..=3) wraps
    s.request(
        4,
        AnswerCallArgument::new(ConnectionId::dialing([1], "201")).into(),
        now,
    );
    assert_eq!(sent(&mut s), vec!["INVOKE 1 answerCall"]);
    s.handle_frame("RESULT 1".into(), now);
    assert_eq!(
        drain(&mut s),
        vec![Out::Answer {
            token: 4,
            answer: Ok(Ok(None))
        }]
    );

    // keep-alive after the idle time, from the dialect's keep-alive request; its answer
    // resets the count, so the link stays up; unanswered ones end it
    now += Duration::from_secs(20);
    s.handle_timeout(now);
    assert_eq!(sent(&mut s), vec!["INVOKE 2 systemStatus"]);
    s.handle_frame("RESULT 2".into(), now);
    assert_eq!(drain(&mut s), vec![]);
    now += Duration::from_secs(20);
    s.handle_timeout(now);
    assert_eq!(sent(&mut s), vec!["INVOKE 3 systemStatus"]);
    assert!(s.is_associated());

    // orderly release through the dialect
    s.shutdown(now);
    assert_eq!(sent(&mut s), vec!["BYE"]);
    s.handle_frame("BYE".into(), now);
    assert!(s.is_closed());
}

/// The driver is the dialect's too: [`crate::link::Link::start_with`] frames with the toy's
/// codec (lines) over a real socket on 127.0.0.1:0, the peer a scripted toy switch.
#[tokio::test]
async fn the_driver_runs_a_second_dialect() {
    use crate::link::Link;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = LinkConfig {
        addresses: vec![listener.local_addr().unwrap().to_string()],
        ..LinkConfig::default()
    };
    let (tx, mut events) = tokio::sync::mpsc::channel::<LinkEvent>(16);
    let link = Link::start_with::<Toy, _>(cfg, tx);
    let (sock, _) = listener.accept().await.unwrap();
    let (r, mut w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("HELLO"));
    w.write_all(b"WELCOME\n").await.unwrap();
    assert!(matches!(events.recv().await, Some(LinkEvent::Up { side }) if side.index == 0));

    let switch = tokio::spawn(async move {
        let line = lines.next_line().await.unwrap().unwrap();
        assert_eq!(line, "INVOKE 1 answerCall");
        w.write_all(b"RESULT 1\n").await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("BYE"));
        w.write_all(b"BYE\n").await.unwrap();
    });
    let answer = link
        .request(AnswerCallArgument::new(ConnectionId::dialing([1], "201")).into())
        .await;
    assert_eq!(answer, Ok(Ok(None)));
    link.shutdown().await;
    switch.await.unwrap();
}
