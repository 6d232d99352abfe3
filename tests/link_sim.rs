//! The PBX link over real TCP (127.0.0.1:0) against our switch simulator: association,
//! monitors and events, errors, rejection, link loss and re-monitoring, a hung switch,
//! keep-alives, release.

mod support;

use ctigate::csta::ops::{AnswerCallArgument, Argument};
use ctigate::csta::types::ConnectionId;
use ctigate::link::{CstaError, Framing, LinkConfig, LinkError, LinkEvent};
use ctigate::sim::SimConfig;
use std::time::Duration;
use support::{link_cfg as cfg, sim_cmd as cmd, sim_monitors, start_link as start, start_sim, T};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// The first event that `pick` accepts (others skipped), within [`T`].
async fn wait_for<R>(
    rx: &mut mpsc::Receiver<LinkEvent>,
    what: &str,
    mut pick: impl FnMut(&LinkEvent) -> Option<R>,
) -> R {
    let end = Instant::now() + T;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match timeout(left, rx.recv()).await {
            Ok(Some(e)) => {
                if let Some(r) = pick(&e) {
                    return r;
                }
            }
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("no {what} within {T:?}"),
        }
    }
}

async fn up(rx: &mut mpsc::Receiver<LinkEvent>) {
    wait_for(rx, "Up", |e| {
        matches!(e, LinkEvent::Up { .. }).then_some(())
    })
    .await
}

async fn down(rx: &mut mpsc::Receiver<LinkEvent>) -> String {
    wait_for(rx, "Down", |e| match e {
        LinkEvent::Down { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

async fn monitored(rx: &mut mpsc::Receiver<LinkEvent>, device: &str) {
    wait_for(rx, &format!("Monitored {device}"), |e| {
        matches!(e, LinkEvent::Monitored { device: d, .. } if d == device).then_some(())
    })
    .await
}

/// The name of the next event report, and its device.
async fn report(rx: &mut mpsc::Receiver<LinkEvent>) -> (Option<String>, String) {
    wait_for(rx, "an event report", |e| match e {
        LinkEvent::Report { device, report } => {
            Some((device.clone(), report.event.name().to_string()))
        }
        _ => None,
    })
    .await
}

fn answer_unknown_call() -> Argument {
    AnswerCallArgument::new(ConnectionId::dialing([0x77, 0x77], "201")).into()
}

#[tokio::test]
async fn associate_monitor_events_errors_and_release() {
    let sim = start_sim(SimConfig::default()).await;
    let (link, mut rx) = start(cfg(&sim));
    up(&mut rx).await;
    assert!(link.is_up());

    // monitor, idempotently: one monitor on the switch
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    monitored(&mut rx, "201").await;
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    assert_eq!(sim_monitors(&sim).await, ["201"]);

    // an inbound call reaches the monitored station: the event names the device
    cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).await;
    assert_eq!(
        report(&mut rx).await,
        (Some("201".to_string()), "delivered".to_string())
    );

    // the switch saying no is data
    match timeout(T, link.request(answer_unknown_call()))
        .await
        .unwrap()
    {
        Ok(Err(CstaError::Failure(f))) => assert_eq!(f.to_string(), "operation/invalidCallID"),
        o => panic!("{o:?}"),
    }
    match timeout(T, link.monitor("999")).await.unwrap() {
        Ok(Err(CstaError::Failure(f))) => assert_eq!(f.to_string(), "operation/invalidDeviceID"),
        o => panic!("{o:?}"),
    }
    assert!(link.is_up());

    // unmonitor: gone from the switch
    assert_eq!(timeout(T, link.unmonitor("201")).await.unwrap(), Ok(Ok(())));
    assert_eq!(sim_monitors(&sim).await, Vec::<String>::new());

    // release: RLRQ answered by RLRE
    let clone = link.clone();
    timeout(T, clone.shutdown()).await.unwrap();
    assert_eq!(down(&mut rx).await, "released (RLRQ answered by RLRE)");
    assert!(!link.is_up());
    assert_eq!(
        timeout(T, link.request(answer_unknown_call()))
            .await
            .unwrap(),
        Err(LinkError::Closed)
    );
    let st = cmd(&sim, r#"{"cmd":"status"}"#).await;
    assert_eq!(st["associations"].as_array().map(Vec::len), Some(0), "{st}");
}

#[tokio::test]
async fn a_wrong_context_is_rejected_with_the_diagnostic_named() {
    let sim = start_sim(SimConfig::default()).await;
    let (link, mut rx) = start(LinkConfig {
        context: "1.3.12.0.180.1".into(),
        ..cfg(&sim)
    });
    let reason = down(&mut rx).await;
    assert_eq!(
        reason,
        "association rejected (rejected-permanent): application-context-name-not-supported"
    );
    assert_eq!(
        timeout(T, link.request(answer_unknown_call()))
            .await
            .unwrap(),
        Err(LinkError::Rejected(
            "application-context-name-not-supported".into()
        ))
    );
    assert!(!link.is_up());
    timeout(T, link.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_missing_password_is_rejected_and_the_right_one_accepted() {
    let mut sc = SimConfig::default();
    sc.link.password = Some("s3cret".into());
    let sim = start_sim(sc).await;
    let (link, mut rx) = start(cfg(&sim));
    assert!(down(&mut rx).await.ends_with("authentication-required"));
    timeout(T, link.shutdown()).await.unwrap();
    let (link, mut rx) = start(LinkConfig {
        password: Some("s3cret".into()),
        ..cfg(&sim)
    });
    up(&mut rx).await;
    timeout(T, link.shutdown()).await.unwrap();
}

#[tokio::test]
async fn link_loss_reconnects_with_backoff_and_monitors_again() {
    let sim = start_sim(SimConfig::default()).await;
    let (link, mut rx) = start(cfg(&sim));
    up(&mut rx).await;
    for d in ["201", "202"] {
        assert_eq!(timeout(T, link.monitor(d)).await.unwrap(), Ok(Ok(())));
        monitored(&mut rx, d).await;
    }

    // the switch closes the TCP connection
    cmd(&sim, r#"{"cmd":"fault","fault":"close"}"#).await;
    let t = Instant::now();
    assert_eq!(down(&mut rx).await, "the switch closed the connection");
    up(&mut rx).await;
    // reconnect_min 200 ms less up to 50 % jitter, less the time the close took to be told
    assert!(
        t.elapsed() >= Duration::from_millis(50),
        "reconnected after {:?}, before the backoff",
        t.elapsed()
    );
    monitored(&mut rx, "201").await;
    monitored(&mut rx, "202").await;
    assert_eq!(sim_monitors(&sim).await, ["201", "202"]);
    // events flow again, under the new cross references
    cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"202"}"#).await;
    assert_eq!(
        report(&mut rx).await,
        (Some("202".to_string()), "delivered".to_string())
    );

    // the switch aborts (ABRT)
    cmd(&sim, r#"{"cmd":"fault","fault":"abort"}"#).await;
    let reason = down(&mut rx).await;
    assert!(reason.contains("ABRT"), "{reason}");
    up(&mut rx).await;
    monitored(&mut rx, "201").await;
    monitored(&mut rx, "202").await;

    // the switch restarts but keeps the link: monitors lost, then back
    cmd(
        &sim,
        r#"{"cmd":"fault","fault":"restart","keep_links":true}"#,
    )
    .await;
    wait_for(&mut rx, "MonitorLost 201", |e| {
        matches!(e, LinkEvent::MonitorLost { device, .. } if device == "201").then_some(())
    })
    .await;
    monitored(&mut rx, "201").await;
    monitored(&mut rx, "202").await;
    assert!(link.is_up());
    assert_eq!(sim_monitors(&sim).await, ["201", "202"]);
    cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).await;
    assert_eq!(
        report(&mut rx).await,
        (Some("201".to_string()), "delivered".to_string())
    );
    timeout(T, link.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_hung_switch_times_out_requests_and_is_declared_dead() {
    let sim = start_sim(SimConfig::default()).await;
    let (link, mut rx) = start(LinkConfig {
        request_timeout: Duration::from_millis(500),
        keepalive_idle: Duration::from_millis(300),
        keepalive_misses: 2,
        ..cfg(&sim)
    });
    up(&mut rx).await;
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    cmd(&sim, r#"{"cmd":"fault","fault":"hang"}"#).await;

    let t = Instant::now();
    assert_eq!(
        timeout(T, link.request(answer_unknown_call()))
            .await
            .unwrap(),
        Err(LinkError::Timeout)
    );
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    let reason = down(&mut rx).await;
    assert!(
        reason.starts_with("keep-alive: 2 systemStatus unanswered"),
        "{reason}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // a new association (not hung) and the monitor again
    up(&mut rx).await;
    monitored(&mut rx, "201").await;
    timeout(T, link.shutdown()).await.unwrap();
}

#[tokio::test]
async fn keep_alives_both_ways() {
    let mut sc = SimConfig::default();
    sc.link.keepalive_s = 1;
    let sim = start_sim(sc).await;
    let (link, mut rx) = start(LinkConfig {
        keepalive_idle: Duration::from_millis(300),
        ..cfg(&sim)
    });
    up(&mut rx).await;
    // the switch's systemStatus is answered (the switch would drop us otherwise)
    let status = wait_for(&mut rx, "SystemStatus", |e| match e {
        LinkEvent::SystemStatus { status } => Some(status.clone()),
        _ => None,
    })
    .await;
    assert_eq!(status, "normal");
    let assoc = |st: &serde_json::Value| {
        let a = st["associations"].as_array().expect("associations");
        assert_eq!(a.len(), 1, "{st}");
        (a[0]["id"].clone(), a[0]["keepalives_unanswered"].clone())
    };
    let (first, _) = assoc(&cmd(&sim, r#"{"cmd":"status"}"#).await);
    // ours are answered: still up, on the same association, after three more switch
    // keep-alives (each one second apart: three of our idle periods and more) with no Down
    // among the link's events before them
    for _ in 0..3 {
        let status = wait_for(&mut rx, "SystemStatus", |e| match e {
            LinkEvent::Down { reason, .. } => panic!("the link went down: {reason}"),
            LinkEvent::SystemStatus { status } => Some(status.clone()),
            _ => None,
        })
        .await;
        assert_eq!(status, "normal");
    }
    assert!(link.is_up());
    let (now, unanswered) = assoc(&cmd(&sim, r#"{"cmd":"status"}"#).await);
    assert_eq!(now, first, "the same association");
    assert!(
        unanswered.as_u64().is_some_and(|n| n <= 1),
        "the switch's keep-alives are answered (the last may be on its way): {unanswered}"
    );
    // the switch stops answering ours: dead after the misses
    cmd(&sim, r#"{"cmd":"fault","fault":"stop_keepalive"}"#).await;
    let reason = down(&mut rx).await;
    assert!(reason.starts_with("keep-alive:"), "{reason}");
    up(&mut rx).await;
    timeout(T, link.shutdown()).await.unwrap();
}

#[tokio::test]
async fn nothing_listening_is_down_then_up_when_the_switch_appears() {
    // a port nobody listens on (bound, then freed)
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (link, mut rx) = start(LinkConfig {
        name: "test".into(),
        addresses: vec![addr.to_string()],
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(200),
        ..LinkConfig::default()
    });
    let reason = down(&mut rx).await;
    assert!(
        reason.starts_with(&format!("cannot connect to {addr}")),
        "{reason}"
    );
    assert_eq!(
        timeout(T, link.monitor("201")).await.unwrap(),
        Err(LinkError::Down)
    );
    // the switch appears on that port: the backoff finds it
    let sim = support::start_sim_at(SimConfig::default(), &addr.to_string()).await;
    up(&mut rx).await;
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    assert_eq!(sim_monitors(&sim).await, ["201"]);
    timeout(T, link.shutdown()).await.unwrap();
    assert_eq!(
        timeout(T, link.monitor("201")).await.unwrap(),
        Err(LinkError::Closed)
    );
}

#[tokio::test]
async fn hipath_framing_both_sides() {
    let mut sc = SimConfig::default();
    sc.link.framing = Framing::Hipath;
    let sim = start_sim(sc).await;
    let (link, mut rx) = start(LinkConfig {
        framing: Framing::Hipath,
        ..cfg(&sim)
    });
    up(&mut rx).await;
    // the switch's systemStatus at association came through HiPath frames and was answered
    let status = wait_for(&mut rx, "SystemStatus", |e| match e {
        LinkEvent::SystemStatus { status } => Some(status.clone()),
        _ => None,
    })
    .await;
    assert_eq!(status, "normal");
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    monitored(&mut rx, "201").await;
    assert_eq!(sim_monitors(&sim).await, ["201"]);
    cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).await;
    assert_eq!(
        report(&mut rx).await,
        (Some("201".to_string()), "delivered".to_string())
    );
    match timeout(T, link.request(answer_unknown_call()))
        .await
        .unwrap()
    {
        Ok(Err(CstaError::Failure(f))) => assert_eq!(f.to_string(), "operation/invalidCallID"),
        o => panic!("{o:?}"),
    }
    // a garbled PDU in a good HiPath frame is rejected, the framing holds: still up, and
    // the next request is answered on the same association
    cmd(&sim, r#"{"cmd":"fault","fault":"garble"}"#).await;
    match timeout(T, link.request(answer_unknown_call()))
        .await
        .unwrap()
    {
        Ok(Err(CstaError::Failure(f))) => assert_eq!(f.to_string(), "operation/invalidCallID"),
        o => panic!("{o:?}"),
    }
    let st = cmd(&sim, r#"{"cmd":"status"}"#).await;
    assert_eq!(st["counters"]["associations"], 1, "{st}");
    timeout(T, link.shutdown()).await.unwrap();
    assert_eq!(down(&mut rx).await, "released (RLRQ answered by RLRE)");
}

/// A listener that answers every connection with `bytes` and counts the connections.
async fn raw_switch(bytes: &'static [u8]) -> (String, mpsc::Receiver<Vec<u8>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // what the application sent first (its AARQ frame header)
                let mut head = [0u8; 3];
                let _ = timeout(T, s.read_exact(&mut head)).await;
                let _ = tx.send(head.to_vec()).await;
                let _ = s.write_all(bytes).await;
                let mut sink = Vec::new();
                let _ = timeout(T, s.read_to_end(&mut sink)).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn hipath_loss_of_framing_resets_the_link() {
    // a switch that answers in 2-octet length framing (an RLRE: 00 05 63 03 80 01 00)
    let (addr, mut conns) = raw_switch(&[0x00, 0x05, 0x63, 0x03, 0x80, 0x01, 0x00]).await;
    let (link, mut rx) = start(LinkConfig {
        name: "test".into(),
        addresses: vec![addr],
        framing: Framing::Hipath,
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(100),
        ..LinkConfig::default()
    });
    // the link sent its AARQ in a HiPath frame: 26 80 len
    let head = timeout(T, conns.recv()).await.unwrap().unwrap();
    assert_eq!(&head[..2], &[0x26, 0x80], "{head:02x?}");
    assert_eq!(
        down(&mut rx).await,
        "framing lost (bad HiPath header (the first octet must be 0x26, got 0x00); is the other side using framing = \"hipath\"?; the link's max_frame is 16384 octets): resetting the link"
    );
    // reset: the link connects again by itself
    assert!(timeout(T, conns.recv()).await.unwrap().is_some());
    timeout(T, link.shutdown()).await.unwrap();
}

#[tokio::test]
async fn unmonitor_of_a_monitor_the_switch_forgot_is_ok() {
    let sim = start_sim(SimConfig::default()).await;
    let (link, mut rx) = start(cfg(&sim));
    up(&mut rx).await;
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    cmd(
        &sim,
        r#"{"cmd":"fault","fault":"forget_monitor","device":"201"}"#,
    )
    .await;
    assert_eq!(sim_monitors(&sim).await, Vec::<String>::new());
    // the switch answers the monitorStop with operation/invalidMonitorCrossRefID: the
    // monitor is gone either way, so the stop succeeded
    assert_eq!(timeout(T, link.unmonitor("201")).await.unwrap(), Ok(Ok(())));
    let st = cmd(&sim, r#"{"cmd":"status"}"#).await;
    assert_eq!(
        st["counters"]["errors"], 1,
        "the switch did refuse it: {st}"
    );
    // monitored again from scratch: a new monitor on the switch
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    assert_eq!(sim_monitors(&sim).await, ["201"]);
    timeout(T, link.shutdown()).await.unwrap();
}

/// A scripted switch over TCP that associates and then sends a frame header announcing
/// more than `max_frame`: the framing is lost, so the link sends ABRT, closes, says why
/// (naming the limit), counts the frame and comes back on the next connection.
#[tokio::test]
async fn lost_framing_resets_the_link_and_names_the_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const AARE: &str = "612f80020780a10706052b0c00815aa203020100a305a103020101be14281206072b0c00821d8148a007a0050303000800";
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (link, mut rx) = start(LinkConfig {
        name: "test".into(),
        addresses: vec![l.local_addr().unwrap().to_string()],
        reconnect_min: Duration::from_millis(50),
        ..LinkConfig::default()
    });
    let mut s = associate(&l, AARE).await;
    up(&mut rx).await;
    // garbage where a frame header should be: 0x4001 = 16385 octets
    s.write_all(&[0x40, 0x01, 0xa1, 0x02]).await.unwrap();
    assert_eq!(
        down(&mut rx).await,
        "framing lost (frame of 16385 octets exceeds the limit of 16384; is the other side \
         speaking CSTA BER with this framing setting?; the link's max_frame is 16384 octets): \
         resetting the link"
    );
    let mut rest = Vec::new();
    timeout(T, s.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert_eq!(
        rest,
        [0x00, 0x05, 0x64, 0x03, 0x80, 0x01, 0x00],
        "ABRT, then closed"
    );
    assert_eq!(link.counters().malformed_frames, 1);
    assert_eq!(link.counters().rejects_sent, 0);
    let _s = associate(&l, AARE).await;
    up(&mut rx).await;
    assert_eq!(link.counters().malformed_frames, 1);
}

/// Accept a connection, read the AARQ, answer `aare` (hex).
async fn associate(l: &tokio::net::TcpListener, aare: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut s, _) = timeout(T, l.accept()).await.unwrap().unwrap();
    let n = timeout(T, s.read_u16()).await.unwrap().unwrap();
    let mut aarq = vec![0; usize::from(n)];
    s.read_exact(&mut aarq).await.unwrap();
    assert_eq!(aarq[0], 0x60, "an AARQ");
    let aare = support::unhex(aare);
    s.write_u16(aare.len() as u16).await.unwrap();
    s.write_all(&aare).await.unwrap();
    s
}

/// Log lines written while a test runs (a `tracing` subscriber set for this thread: the
/// test's runtime is single-threaded, so the link's tasks log here too).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn an_owner_that_keeps_just_behind_sheds_in_many_episodes_warned_once_a_second() {
    let logs = Captured::default();
    let w = logs.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish(),
    );
    let sim = start_sim(SimConfig::default()).await;
    // room for one event; the owner takes one now and then: every event it takes makes
    // room, the link hands over what it held, and the next event finds the queue full
    // again (an overload seen from the link: many short episodes of shedding)
    let (tx, mut rx) = mpsc::channel(1);
    let link = ctigate::link::Link::start(cfg(&sim), tx);
    up(&mut rx).await;
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    let t = Instant::now();
    for _ in 0..40 {
        cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).await;
        cmd(&sim, r#"{"cmd":"hangup","device":"0891234567"}"#).await;
        let _ = timeout(Duration::from_millis(20), rx.recv()).await;
    }
    let took = t.elapsed();
    // the owner reads everything at once (the last episode ends within a second of the
    // last "caught up" line: that line is held back), and the switch says nothing more:
    // the held-back totals are written all the same, a second on
    while timeout(Duration::from_millis(100), rx.recv()).await.is_ok() {}
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = logs.text();
    let episodes = text.matches("shedding the switch's events again").count();
    let warned = text
        .matches("not keeping up with the switch's events")
        .count();
    let caught = text
        .matches("caught up with the switch's events; the devices")
        .count();
    assert!(episodes >= 10, "many episodes of shedding:\n{text}");
    // one line of each a second, however many episodes (and the late totals)
    let most = 2 + took.as_secs() as usize;
    assert!(
        (1..=most).contains(&warned),
        "{warned} warnings in {took:?}:\n{text}"
    );
    assert!(
        caught <= most,
        "{caught} caught-up warnings in {took:?}:\n{text}"
    );
    assert!(text.contains("left_out="), "{text}");
    // every event shed is in the warnings' totals, none twice
    let told: u64 = text
        .lines()
        .filter(|l| l.contains("caught up with the switch's events; the devices"))
        .map(|l| {
            let v = l.split(" shed=").nth(1).expect("shed=");
            v.split_whitespace().next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    let shed = link.counters().events_shed;
    assert!(shed > 0);
    assert_eq!(told, shed, "{text}");
    timeout(T, link.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_stalled_owner_never_stops_the_link_events_are_shed_then_resynced() {
    let mut sc = SimConfig::default();
    sc.link.keepalive_s = 1;
    let sim = start_sim(sc).await;
    // the owner's channel holds 4 events, and the owner stops reading after the monitor
    let (tx, mut rx) = mpsc::channel(4);
    let link = ctigate::link::Link::start(
        LinkConfig {
            keepalive_idle: Duration::from_millis(300),
            ..cfg(&sim)
        },
        tx,
    );
    up(&mut rx).await;
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    monitored(&mut rx, "201").await;
    // ten calls: far more events than the channel takes
    for _ in 0..10 {
        cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).await;
        cmd(&sim, r#"{"cmd":"hangup","device":"0891234567"}"#).await;
    }
    // the switch is still read and answered: requests are answered, keep-alives both ways
    // go on (the switch's every second, ours after 300 ms of silence) for 2.5 s
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        match timeout(T, link.request(answer_unknown_call()))
            .await
            .unwrap()
        {
            Ok(Err(CstaError::Failure(f))) => {
                assert_eq!(f.to_string(), "operation/invalidCallID")
            }
            o => panic!("{o:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(link.is_up());
    let shed = link.counters().events_shed;
    assert!(shed > 0, "events were shed");
    // the owner reads again: what fitted (4 events), then a resync of 201 for what was
    // shed, then the events that come after it as usual
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(timeout(T, rx.recv()).await.unwrap().unwrap());
    }
    assert!(
        first
            .iter()
            .all(|e| matches!(e, LinkEvent::Report { .. } | LinkEvent::SystemStatus { .. })),
        "{first:?}"
    );
    let (device, reason) = wait_for(&mut rx, "Resync", |e| match e {
        LinkEvent::Resync { device, reason } => Some((device.clone(), reason.clone())),
        LinkEvent::Report { .. } => panic!("an event report after the shedding began: {e:?}"),
        _ => None,
    })
    .await;
    assert_eq!(device, "201");
    assert!(reason.contains("link.event_queue"), "{reason}");
    cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).await;
    assert_eq!(
        report(&mut rx).await,
        (Some("201".to_string()), "delivered".to_string())
    );
    assert_eq!(link.counters().events_shed, shed, "nothing shed since");
    // no Down came through in all that
    while let Ok(e) = rx.try_recv() {
        assert!(!matches!(e, LinkEvent::Down { .. }), "{e:?}");
    }
    timeout(T, link.shutdown()).await.unwrap();
}
