//! `ctigate sim` (the binary) stops gracefully on SIGTERM and SIGINT: RLRQ to every
//! associated application, ABRT to one that does not answer RLRE in time, exit 0; the
//! gateway on the other side sees `link.down` with the reason "released".

mod support;

use ctigate::config::{ApiConfig, Config, LinkSection};
use ctigate::csta::acse::AcseKind;
use ctigate::csta::apdu::Apdu;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{CstaClient, Gw, T};
use tokio::time::{timeout, Instant};

/// `ctigate sim` on 127.0.0.1:0 with `release_timeout_ms`; the child and its CSTA address.
fn spawn_sim(dir: &std::path::Path, release_ms: u64) -> (Child, String) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("sim.toml");
    std::fs::write(&cfg, format!("[link]\nrelease_timeout_ms = {release_ms}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "none",
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ctigate sim");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a start-up line").unwrap();
    let addr = first
        .strip_prefix("ctigate sim listening: csta ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("start-up line: {first}"))
        .to_string();
    // keep reading (the dial plan) so the pipe never fills
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// The exit code within `T`.
async fn exit_code(mut child: Child) -> Option<i32> {
    let end = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        assert!(Instant::now() < end, "the simulator did not exit in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_every_association_and_exits_0() {
    let dir = std::env::temp_dir().join(format!("ctigate-sim-stop-{}", std::process::id()));
    let (child, addr) = spawn_sim(&dir.join("term"), 300);
    // the gateway, one link to it
    let gw = Gw::start(Config {
        users: Vec::new(),
        audit: Default::default(),
        log: Default::default(),
        api: ApiConfig::default(),
        metrics: Default::default(),
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: addr.clone(),
            reconnect_min_ms: 5000,
            reconnect_max_ms: 10000,
            ..LinkSection::default()
        }],
    })
    .await;
    let mut c = gw.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    // an application that never answers the RLRQ
    let mut silent = CstaClient::connect(addr.parse().unwrap()).await;
    silent.associate().await;

    let t = Instant::now();
    signal(&child, "-TERM");
    let down = c.until_link("link.down").await;
    assert_eq!(down["link"], "pbx1");
    assert_eq!(
        down["reason"], "the switch released the association (RLRQ)",
        "{down}"
    );
    // the silent one: RLRQ, then ABRT after the release timeout, then the close
    match silent.next().await {
        Some(Apdu::Acse(a)) => assert_eq!(a.kind, AcseKind::Rlrq),
        o => panic!("{o:?}"),
    }
    match silent.next().await {
        Some(Apdu::Acse(a)) => assert_eq!(a.kind, AcseKind::Abrt),
        o => panic!("{o:?}"),
    }
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "ABRT before the release timeout: {:?}",
        t.elapsed()
    );
    assert!(silent.next().await.is_none(), "closed after the ABRT");
    assert_eq!(exit_code(child).await, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_releases_too() {
    let dir = std::env::temp_dir().join(format!("ctigate-sim-int-{}", std::process::id()));
    let (child, addr) = spawn_sim(&dir, 2000);
    let mut app = CstaClient::connect(addr.parse().unwrap()).await;
    app.associate().await;
    signal(&child, "-INT");
    match app.next().await {
        Some(Apdu::Acse(a)) => assert_eq!(a.kind, AcseKind::Rlrq),
        o => panic!("{o:?}"),
    }
    // answered: the simulator closes and exits at once (long before its 2 s bound)
    let t = Instant::now();
    app.send(&Apdu::Acse(ctigate::csta::acse::Acse::rlre(0)))
        .await;
    assert!(timeout(T, app.next()).await.unwrap().is_none());
    assert_eq!(exit_code(child).await, Some(0));
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
