//! `/metrics` and `/healthz` over real TCP: the simulator, a gateway with its metrics
//! endpoint on 127.0.0.1:0, a client making a call; the exposition parsed and its series
//! checked against what happened (docs/METRICS.md).

mod support;

use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use support::{env, T};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// `[metrics]` on a free loopback port, the other keys at their defaults.
fn local() -> ctigate::config::MetricsConfig {
    ctigate::config::MetricsConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    }
}

/// A minimal HTTP/1.1 GET: (status, content type, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let io = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        String::from_utf8(raw).expect("utf-8")
    };
    let text = timeout(T, io).await.expect("an answer in time");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let ctype = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// The samples of a Prometheus text exposition: `name{labels}` -> value. Checks that each
/// family's HELP and TYPE come before its samples.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::BTreeSet::new();
    let mut m = BTreeMap::new();
    for l in text.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            typed.insert(t.split(' ').next().unwrap().to_string());
            continue;
        }
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        let (series, value) = l.rsplit_once(' ').expect("name value");
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no TYPE before it");
        let v = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number: {l}")),
        };
        assert!(m.insert(series.to_string(), v).is_none(), "twice: {series}");
    }
    m
}

fn at(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no {series} in {m:#?}"))
}

/// Scrape until `ok` holds (the figures of the last events settle a moment after a client
/// reads them: the pump observes the latency after publishing), within `T`.
async fn scrape_until(
    addr: SocketAddr,
    ok: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let end = tokio::time::Instant::now() + T;
    loop {
        let (status, _, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let m = parse(&body);
        if ok(&m) {
            return m;
        }
        assert!(tokio::time::Instant::now() < end, "never settled: {m:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pbx_events(m: &BTreeMap<String, f64>) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with("ctigate_pbx_events_total{"))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_link_the_call_the_requests_and_the_clients() {
    let e = env().await;
    let (addr, _task) = ctigate::http::start(&e.gw.gw, &local())
        .await
        .expect("the metrics endpoint starts");

    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, _) = get(addr, "/nothing").await;
    assert_eq!(status, 404);

    // before any client: the link is up, no event, no request
    let (status, ctype, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let m = parse(&body);
    assert_eq!(at(&m, "ctigate_link_up{link=\"pbx1\"}"), 1.0);
    assert_eq!(at(&m, "ctigate_link_reconnects_total{link=\"pbx1\"}"), 0.0);
    assert!(at(&m, "ctigate_pbx_frames_received_total{link=\"pbx1\"}") >= 1.0); // the AARE
    assert_eq!(
        at(&m, "ctigate_pbx_undecodable_frames_total{link=\"pbx1\"}"),
        0.0
    );
    assert_eq!(at(&m, "ctigate_pbx_rejects_sent_total{link=\"pbx1\"}"), 0.0);
    assert_eq!(at(&m, "ctigate_clients"), 0.0);
    assert_eq!(pbx_events(&m), 0.0);
    assert_eq!(
        at(
            &m,
            &format!(
                "ctigate_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert!(!m.keys().any(|k| k.starts_with("ctigate_requests_total")));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = at(&m, "ctigate_start_time_seconds");
    assert!(started <= now && started > now - 60.0, "{started} vs {now}");
    let frames_before = at(&m, "ctigate_pbx_frames_received_total{link=\"pbx1\"}");

    // a client monitors 201 and calls 202; 202 answers; 201 hangs up
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    c.ok(json!({"op": "call.make", "device": "201", "to": "202"}))
        .await;
    c.until("201", "call.ringback").await;
    e.sim(r#"{"cmd":"answer","device":"202"}"#).await;
    c.until("201", "call.connected").await;
    c.ok(json!({"op": "call.hangup", "device": "201"})).await;
    c.until("201", "call.released").await;
    // an error of each kind the client can cause here
    c.err(
        json!({"op": "call.answer", "device": "203"}),
        "request",
        "not_monitored",
    )
    .await;
    c.send_raw("this is no JSON\n").await;
    let bad = c.response(&serde_json::Value::Null).await;
    assert_eq!(bad["error"]["code"], "bad_json", "{bad}");

    // every report taken by the pump is in the latency histogram
    let m = scrape_until(addr, |m| {
        pbx_events(m) > 0.0 && m.get("ctigate_event_latency_seconds_count") == Some(&pbx_events(m))
    })
    .await;
    // the simulator's reports at 201's monitor for a made, answered, cleared call
    let ev = |k: &str| {
        m.get(&format!(
            "ctigate_pbx_events_total{{link=\"pbx1\",kind=\"{k}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    for k in ["serviceInitiated", "originated", "delivered", "established"] {
        assert_eq!(ev(k), 1.0, "{k}: {m:#?}");
    }
    assert!(ev("connectionCleared") >= 1.0, "{m:#?}");
    assert_eq!(ev("other"), 0.0);
    // frames: at least one per event report and one per answer to a request (monitor
    // start, make, clear, the snapshot of 201)
    let frames = at(&m, "ctigate_pbx_frames_received_total{link=\"pbx1\"}");
    assert!(
        frames - frames_before >= pbx_events(&m) + 4.0,
        "{frames}: {m:#?}"
    );
    for (op, result, n) in [
        ("monitor.start", "ok", 1.0),
        ("call.make", "ok", 1.0),
        ("call.hangup", "ok", 1.0),
        ("call.answer", "request", 1.0),
        ("invalid", "request", 1.0),
    ] {
        assert_eq!(
            at(
                &m,
                &format!("ctigate_requests_total{{op=\"{op}\",result=\"{result}\"}}")
            ),
            n,
            "{op} {result}"
        );
    }
    assert_eq!(
        m.keys()
            .filter(|k| k.starts_with("ctigate_requests_total"))
            .count(),
        5,
        "{m:#?}"
    );
    // one duration per request that ran, each within the request deadline
    for op in ["monitor.start", "call.make", "call.hangup", "call.answer"] {
        assert_eq!(
            at(
                &m,
                &format!("ctigate_request_duration_seconds_count{{op=\"{op}\"}}")
            ),
            1.0
        );
        assert_eq!(
            at(
                &m,
                &format!("ctigate_request_duration_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}}")
            ),
            1.0
        );
        assert!(
            at(
                &m,
                &format!("ctigate_request_duration_seconds_sum{{op=\"{op}\"}}")
            ) < 10.0
        );
    }
    assert_eq!(at(&m, "ctigate_clients"), 1.0);
    assert_eq!(at(&m, "ctigate_client_queue_depth_max"), 0.0);
    assert_eq!(at(&m, "ctigate_client_queue_capacity"), 1024.0);
    assert_eq!(
        at(&m, "ctigate_monitors{link=\"pbx1\",state=\"configured\"}"),
        0.0
    );
    assert_eq!(
        at(&m, "ctigate_monitors{link=\"pbx1\",state=\"active\"}"),
        1.0
    );
    assert_eq!(
        at(&m, "ctigate_monitors{link=\"pbx1\",state=\"unconfirmed\"}"),
        0.0
    );
    assert_eq!(at(&m, "ctigate_lagged_clients_total"), 0.0);
    assert_eq!(at(&m, "ctigate_dropped_events_total"), 0.0);
    assert_eq!(
        at(&m, "ctigate_events_published_total"),
        e.gw.last_seq() as f64
    );
    assert_eq!(at(&m, "ctigate_link_reconnects_total{link=\"pbx1\"}"), 0.0);
    let latency_sum = at(&m, "ctigate_event_latency_seconds_sum");
    assert!(latency_sum > 0.0 && latency_sum < 1.0, "{latency_sum}");

    // the client leaves: no client, its monitor given back
    drop(c);
    scrape_until(addr, |m| {
        m.get("ctigate_clients") == Some(&0.0)
            && m.get("ctigate_monitors{link=\"pbx1\",state=\"active\"}") == Some(&0.0)
    })
    .await;

    // a frame that cannot be read: counted, rejected, the link stays up
    e.sim(r#"{"cmd":"fault","fault":"garble"}"#).await;
    let m = scrape_until(addr, |m| {
        m.get("ctigate_pbx_undecodable_frames_total{link=\"pbx1\"}") == Some(&1.0)
    })
    .await;
    assert_eq!(at(&m, "ctigate_pbx_rejects_sent_total{link=\"pbx1\"}"), 1.0);
    assert_eq!(at(&m, "ctigate_link_up{link=\"pbx1\"}"), 1.0);

    // the switch closes the connection: the link comes back, one reconnect
    e.sim(r#"{"cmd":"fault","fault":"close"}"#).await;
    scrape_until(addr, |m| {
        m.get("ctigate_link_reconnects_total{link=\"pbx1\"}") == Some(&1.0)
            && m.get("ctigate_link_up{link=\"pbx1\"}") == Some(&1.0)
    })
    .await;

    // OpenMetrics when asked for
    let io = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        raw
    };
    let raw = timeout(T, io).await.expect("in time");
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{raw}"
    );
    assert!(raw.ends_with("# EOF\n"), "{raw}");

    // the endpoint stops with the gateway
    e.gw.gw.shutdown().await;
    timeout(T, _task).await.expect("the server stops").unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}

/// A port in use is a start-up error naming `metrics.listen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_names_metrics_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = ctigate::http::bind(&addr).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("metrics.listen: cannot listen on"),
        "{err}"
    );
}

/// `ctigate run` with `[metrics] listen` prints the endpoint's address after the NDJSON
/// port, serves the series there, and closes it on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctigate_run_serves_metrics_when_configured() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let sim = ctigate::sim::Sim::start(ctigate::sim::SimConfig::default(), "127.0.0.1:0", None)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ctigate-metrics-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ctigate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[[link]]\nname = \"pbx1\"\naddress = \"{}\"\n",
            sim.csta_addr
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ctigate run");
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(4)
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let lines = timeout(T, lines).await.expect("start-up lines").unwrap();
    assert!(
        lines[0].starts_with("ctigate run: NDJSON port "),
        "{lines:?}"
    );
    let url = lines[1]
        .strip_prefix("ctigate run: metrics http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("the metrics line: {lines:?}"));
    let addr: SocketAddr = url.parse().expect("an address");
    assert!(lines[3].starts_with("link pbx1: up in "), "{lines:?}");
    let m = scrape_until(addr, |m| {
        m.get("ctigate_link_up{link=\"pbx1\"}") == Some(&1.0)
    })
    .await;
    assert_eq!(at(&m, "ctigate_clients"), 0.0);
    assert_eq!(get(addr, "/healthz").await.2, "ok\n");
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let code = timeout(
        T,
        tokio::task::spawn_blocking(move || child.wait().unwrap().code()),
    )
    .await
    .expect("it stops in time")
    .unwrap();
    assert_eq!(code, Some(0), "SIGTERM stops it cleanly");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `ctigate_*` names in a text (`_bucket`, `_sum`, `_count` taken off).
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ctigate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(name.to_string());
        rest = &tail[end..];
    }
    out
}

/// docs/METRICS.md documents every series the gateway exposes, and the Grafana dashboard
/// (valid JSON) uses only documented series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_is_documented_and_the_dashboard_uses_only_those() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/METRICS.md"))
        .expect("docs/METRICS.md");
    let table: std::collections::BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `ctigate_"))
        .map(|l| format!("ctigate_{}", &l[..l.find('`').unwrap()]))
        .collect();
    let e = env().await;
    let (addr, _task) = ctigate::http::start(&e.gw.gw, &local()).await.unwrap();
    // a request and an event, so that every family has samples
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    e.sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#)
        .await;
    c.until("201", "call.offering").await;
    let (_, _, body) = get(addr, "/metrics").await;
    let exposed: std::collections::BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(
        exposed, table,
        "docs/METRICS.md's table and the exposition differ"
    );
    let dash = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/grafana/ctigate.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&dash).expect("the dashboard is JSON");
    let mut exprs = String::new();
    for p in v["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push_str(t["expr"].as_str().expect("an expr"));
            exprs.push('\n');
        }
    }
    let used = names_in(&exprs);
    assert!(used.len() >= 10, "{used:?}");
    for n in &used {
        assert!(
            table.contains(n),
            "the dashboard uses {n}, not in docs/METRICS.md"
        );
    }
    e.gw.gw.shutdown().await;
}

/// A client that stops reading: the fullest queue shows it, then it is cut: one lagged
/// client, one dropped event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_shows_in_queue_depth_then_lagged_and_dropped() {
    use ctigate::config::{ApiConfig, LinkSection};
    let e = support::env_with(
        ApiConfig {
            requests_per_s: 0,
            client_queue: 16,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 3000,
            ..LinkSection::default()
        },
    )
    .await;
    let (addr, _task) = ctigate::http::start(&e.gw.gw, &local()).await.unwrap();
    // slow reads nothing from now on: calls with 10 KB of user data fill its socket, then
    // its queue
    let (_fast, mut slow, _, _) = e.cut_a_slow_client().await;
    // cut: its writer is still stuck on the full socket, its queue full
    let (_, _, body) = get(addr, "/metrics").await;
    let m = parse(&body);
    assert_eq!(at(&m, "ctigate_client_queue_depth_max"), 16.0, "{m:#?}");
    assert_eq!(at(&m, "ctigate_client_queue_capacity"), 16.0);
    assert_eq!(at(&m, "ctigate_dropped_events_total"), 1.0);
    assert_eq!(at(&m, "ctigate_clients"), 2.0);
    // it reads again: its events, `lagged`, the end; then it is counted and gone
    let mut last = None;
    while let Some(v) = slow.read_line().await {
        last = Some(v);
    }
    assert_eq!(last.expect("lines")["event"], "lagged");
    let m = scrape_until(addr, |m| {
        m.get("ctigate_lagged_clients_total") == Some(&1.0)
            && m.get("ctigate_clients") == Some(&1.0)
    })
    .await;
    assert_eq!(at(&m, "ctigate_dropped_events_total"), 1.0);
    assert_eq!(at(&m, "ctigate_client_queue_depth_max"), 0.0);
    e.gw.gw.shutdown().await;
}

/// `metrics.max_connections` and `metrics.idle_timeout_s`: a connection that sends nothing
/// holds the only place until it is closed as idle; the next one is served then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_bounded_and_idle_ones_closed() {
    let e = env().await;
    let cfg = ctigate::config::MetricsConfig {
        listen: "127.0.0.1:0".into(),
        max_connections: 1,
        idle_timeout_s: 1,
    };
    let (addr, _task) = ctigate::http::start(&e.gw.gw, &cfg).await.unwrap();
    let t0 = tokio::time::Instant::now();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "served only once the idle connection was closed, not after {waited:?}"
    );
    // the idle one was closed by the gateway
    let mut b = [0u8; 16];
    let n = timeout(T, idle.read(&mut b)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    e.gw.gw.shutdown().await;
}
