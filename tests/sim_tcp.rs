//! The simulator over real TCP on 127.0.0.1:0: a CSTA client built from our codec, the
//! NDJSON control port, and the ways input can be wrong.

mod support;

use ctigate::csta::acse::AcseKind;
use ctigate::csta::apdu::Apdu;
use ctigate::csta::events::{Event, EventReport};
use ctigate::csta::ops::{Argument, MonitorStartArgument, OperationResult};
use ctigate::csta::rose::Rose;
use ctigate::csta::rose_ext::*;
use ctigate::csta::types::{CstaObject, DeviceId};
use ctigate::sim::SimConfig;
use support::{hex, start_sim as start, start_sim_sides, Control, CstaClient as Client, T};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

#[tokio::test]
async fn inbound_call_over_tcp_reaches_the_monitor() {
    let sim = start(SimConfig::default()).await;
    let mut c = Client::connect(sim.csta_addr).await;
    c.associate().await;
    let arg: Argument =
        MonitorStartArgument::new(CstaObject::Device(DeviceId::dialing("201"))).into();
    c.send(&Apdu::Rose(arg.invoke(1))).await;
    let xref = match c.next().await {
        Some(Apdu::Rose(Rose::ReturnResult(r))) => match OperationResult::from_return_result(&r) {
            Ok(Some(OperationResult::MonitorStart(m))) => m.cross_ref_identifier,
            o => panic!("{o:?}"),
        },
        o => panic!("{o:?}"),
    };
    let mut ctl = Control::connect(sim.control_addr.unwrap()).await;
    let r = ctl
        .cmd(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201","user_data":"acct=77"}"#)
        .await;
    assert_eq!(r["ok"], true, "{r}");
    match c.next().await {
        Some(Apdu::Rose(Rose::Invoke(i))) => {
            let rep = EventReport::from_invoke(&i).unwrap();
            assert_eq!(rep.xref, xref);
            let Event::Delivered(d) = rep.event else {
                panic!("{rep:?}")
            };
            assert_eq!(d.user_data.as_deref(), Some(&b"acct=77"[..]));
            assert_eq!(
                d.connection.call_id().map(|b| hex(b)),
                r["call"].as_str().map(str::to_string)
            );
        }
        o => panic!("{o:?}"),
    }
    // status over the control port shows the association and its monitor
    let st = ctl.cmd(r#"{"cmd":"status"}"#).await;
    assert_eq!(
        st["associations"][0]["monitors"][0]["watches"]["device"],
        "201"
    );
    assert_eq!(st["calls"][0]["user_data"], "acct=77");
}

#[tokio::test]
async fn control_port_rejects_bad_lines_and_stays_usable() {
    let sim = start(SimConfig::default()).await;
    let mut ctl = Control::connect(sim.control_addr.unwrap()).await;
    let r = ctl.cmd("{not json").await;
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().starts_with("bad JSON"), "{r}");
    let r = ctl
        .cmd(r#"{"cmd":"inbound","ani":"0891234567","dnis":"999"}"#)
        .await;
    assert!(
        r["error"].as_str().unwrap().contains("routes nowhere"),
        "{r}"
    );
    let mut long = vec![b'x'; 70 * 1024];
    long.push(b'\n');
    let r = ctl.raw(&long).await;
    assert!(r["error"].as_str().unwrap().contains("longer than"), "{r}");
    let r = ctl.cmd(r#"{"cmd":"dialplan"}"#).await;
    assert!(r["dialplan"].as_str().unwrap().contains("201-220"), "{r}");
}

#[tokio::test]
async fn oversized_frame_and_garbage_before_association() {
    let sim = start(SimConfig::default()).await;
    // a frame announcing more than the codec allows is impossible with u16; garbage before the
    // AARQ is answered with ABRT and the connection closes
    let mut c = Client::connect(sim.csta_addr).await;
    c.s.write_all(&[0x00, 0x03, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    match c.next().await {
        Some(Apdu::Acse(a)) => assert_eq!(a.kind, AcseKind::Abrt),
        o => panic!("{o:?}"),
    }
    assert!(c.next().await.is_none(), "closed after the ABRT");
    // a client that vanishes mid-frame does not disturb the others
    let mut gone = Client::connect(sim.csta_addr).await;
    gone.s.write_all(&[0x00, 0x40, 0x60]).await.unwrap();
    drop(gone);
    let mut c = Client::connect(sim.csta_addr).await;
    c.associate().await;
}

#[tokio::test]
async fn handshake_and_keepalive_drop() {
    let mut cfg = SimConfig::default();
    cfg.link.handshake = true;
    cfg.link.keepalive_s = 1;
    let sim = start(cfg).await;
    let mut c = Client::connect(sim.csta_addr).await;
    c.s.write_all(b"B").await.unwrap();
    let mut p = [0u8; 1];
    timeout(T, c.s.read_exact(&mut p)).await.unwrap().unwrap();
    assert_eq!(&p, b"P");
    c.associate().await;
    // never answer: two keep-alives, then ABRT and close (about 3 s)
    let mut seen = Vec::new();
    while let Some(a) = c.next().await {
        seen.push(match a {
            Apdu::Rose(Rose::Invoke(i)) => format!("invoke {:?}", i.opcode.local()),
            Apdu::Acse(a) => a.kind.name().to_string(),
            o => format!("{o:?}"),
        });
    }
    assert_eq!(seen, ["invoke Some(211)", "invoke Some(211)", "abrt"]);
}

#[tokio::test]
async fn scenario_runs_commands_in_order() {
    let sim = start(SimConfig::default()).await;
    let text = "# comment\n{\"cmd\":\"dial\",\"from\":\"201\",\"to\":\"202\"}\n\n{\"cmd\":\"answer\",\"device\":\"202\"}\n{\"cmd\":\"hangup\",\"device\":\"teapot\"}\n";
    let mut lines = Vec::new();
    let r = sim.scenario(text, |l, v| lines.push((l, v.clone()))).await;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1].0, 4);
    assert_eq!(lines[1].1["ok"], true);
    let e = r.unwrap_err();
    assert_eq!(e, "scenario line 5: device teapot has no call");
}

#[tokio::test]
async fn a_side_down_refuses_connections_and_aborts_only_its_associations() {
    let sim = start_sim_sides(SimConfig::default(), 2).await;
    let (side_a, side_b) = (sim.sides[0], sim.sides[1]);
    assert_eq!(sim.csta_addr, side_a);
    let mut a = Client::connect(side_a).await;
    a.associate().await;
    let mut b = Client::connect(side_b).await;
    b.associate().await;
    let mut ctl = Control::connect(sim.control_addr.unwrap()).await;
    let st = ctl.cmd(r#"{"cmd":"status"}"#).await;
    let sides: Vec<_> = st["associations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["side"].clone())
        .collect();
    assert_eq!(sides, [0, 1]);
    // one call, made while both sides are up
    assert_eq!(
        ctl.cmd(r#"{"cmd":"dial","from":"201","to":"202"}"#).await["ok"],
        true
    );

    let r = ctl
        .cmd(r#"{"cmd":"fault","fault":"side_down","side":0}"#)
        .await;
    assert_eq!(r, serde_json::json!({"ok": true, "associations": 1}));
    // side A: ABRT, then the connection closes
    match a.next().await {
        Some(Apdu::Acse(x)) if x.kind == AcseKind::Abrt => {}
        o => panic!("expected ABRT: {o:?}"),
    }
    assert!(a.next().await.is_none(), "closed after the ABRT");
    // its listener is closed before the answer: connections are refused
    let e = timeout(T, tokio::net::TcpStream::connect(side_a))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    // side B goes on, with the same call model: the call is there
    let arg: Argument =
        MonitorStartArgument::new(CstaObject::Device(DeviceId::dialing("201"))).into();
    b.send(&Apdu::Rose(arg.invoke(1))).await;
    assert!(
        matches!(b.next().await, Some(Apdu::Rose(Rose::ReturnResult(_)))),
        "side B answers"
    );
    let st = ctl.cmd(r#"{"cmd":"status"}"#).await;
    assert_eq!(st["calls"].as_array().map(Vec::len), Some(1), "{st}");
    assert_eq!(
        st["sides"],
        serde_json::json!([{"side": 0, "up": false}, {"side": 1, "up": true}])
    );
    // side A back: it listens and associates again
    let r = ctl
        .cmd(r#"{"cmd":"fault","fault":"side_up","side":0}"#)
        .await;
    assert_eq!(r, serde_json::json!({"ok": true, "associations": 0}));
    // listening again before the answer
    let mut a2 = Client::connect(side_a).await;
    a2.associate().await;
    // and a side the simulator does not have is named
    let r = ctl
        .cmd(r#"{"cmd":"fault","fault":"side_down","side":5}"#)
        .await;
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("no side 5"), "{r}");
}

/// Idle connections never lock the control port out (issue 11): with its 16 connections
/// taken by clients that say nothing, a new one closes the one idle longest and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_control_connections_do_not_lock_the_port_out() {
    let sim = support::start_sim(SimConfig::default()).await;
    let addr = sim.control_addr.unwrap();
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for round in 0..3 {
        let mut c = support::Control::connect(addr).await;
        let r = c.cmd(r#"{"cmd":"status"}"#).await;
        assert_eq!(r["ok"], true, "round {round}: {r}");
    }
    // the first idle one was told why it was closed
    let mut first = tokio::io::BufReader::new(idle.remove(0));
    let mut line = String::new();
    tokio::time::timeout(
        support::T,
        tokio::io::AsyncBufReadExt::read_line(&mut first, &mut line),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(line.contains("idle longest"), "{line}");
}
