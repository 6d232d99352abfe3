//! Monitoring at scale (issue #10 item 3): the link's limits as configuration, named when
//! hit; `monitor.start` of different devices in parallel; the configured `monitor` list
//! paced through the window, retried after temporary failures, refusals reported once and
//! in `status`. Real TCP on 127.0.0.1:0 with the simulator on the other side.

mod support;

use ctigate::config::{ApiConfig, LinkSection};
use ctigate::sim::SimConfig;
use serde_json::{json, Value};
use std::time::Duration;
use support::{env_sim, Env, T};
use tokio::time::Instant;

fn api() -> ApiConfig {
    ApiConfig {
        requests_per_s: 0,
        ..ApiConfig::default()
    }
}

fn sim(stations: &str) -> SimConfig {
    let mut s = SimConfig {
        stations: vec![stations.into()],
        ..SimConfig::default()
    };
    s.link.max_monitors = 100_000;
    s.link.max_monitors_total = 100_000;
    s
}

/// `status` until `done` accepts it (within `T`).
async fn status_until(e: &Env, body: Value, done: impl Fn(&Value) -> bool) -> Value {
    let mut c = e.client().await;
    let end = Instant::now() + T;
    loop {
        let s = c.ok(body.clone()).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < end, "status never got there: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(s: &Value, state: &str) -> u64 {
    s["pbx_monitors"][0][state].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_monitor_beyond_max_monitors_is_refused_naming_the_key() {
    let e = env_sim(
        sim("201-220"),
        api(),
        LinkSection {
            max_monitors: 3,
            monitor: vec!["201".into()],
            ..LinkSection::default()
        },
    )
    .await;
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "202"})).await;
    c.ok(json!({"op": "monitor.start", "device": "203"})).await;
    let r = c
        .err(
            json!({"op": "monitor.start", "device": "204"}),
            "busy",
            "monitor_limit",
        )
        .await;
    let m = r["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("link.max_monitors = 3"), "{m}");
    // a device already monitored is no new monitor
    let mut d = e.client().await;
    d.ok(json!({"op": "monitor.start", "device": "203"})).await;
    // one stopped: room again
    c.ok(json!({"op": "monitor.stop", "device": "202"})).await;
    c.ok(json!({"op": "monitor.start", "device": "204"})).await;
    assert_eq!(e.pbx_monitors("202").await, 0);
    assert_eq!(e.pbx_monitors("204").await, 1);
}

/// Three snapshots at once through a window of one request, against a switch answering in
/// 400 ms, each request allowed 600 ms: the third gets no room in time and says which key.
#[tokio::test]
async fn a_request_without_room_in_the_window_names_max_outstanding() {
    let mut s = sim("201-220");
    s.limits.response_delay_ms = 400;
    let e = env_sim(
        s,
        api(),
        LinkSection {
            max_outstanding: 1,
            request_timeout_ms: 600,
            ..LinkSection::default()
        },
    )
    .await;
    let answers = three_snapshots(&e).await;
    let busy: Vec<&Value> = answers.iter().filter(|r| r["ok"] == false).collect();
    assert_eq!(busy.len(), 1, "{answers:?}");
    assert_eq!(busy[0]["error"]["kind"], "busy", "{answers:?}");
    assert_eq!(busy[0]["error"]["code"], "congestion", "{answers:?}");
    let m = busy[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("link.max_outstanding = 1"), "{m}");
}

/// `requests_per_s = 2`: of three requests at once the third's turn (1 s later) is beyond
/// its 600 ms; it fails at once naming the key.
#[tokio::test]
async fn a_request_without_a_turn_names_requests_per_s() {
    let e = env_sim(
        sim("201-220"),
        api(),
        LinkSection {
            requests_per_s: 2,
            request_timeout_ms: 600,
            ..LinkSection::default()
        },
    )
    .await;
    let answers = three_snapshots(&e).await;
    let busy: Vec<&Value> = answers.iter().filter(|r| r["ok"] == false).collect();
    assert_eq!(busy.len(), 1, "{answers:?}");
    assert_eq!(busy[0]["error"]["code"], "congestion", "{answers:?}");
    let m = busy[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("link.requests_per_s = 2"), "{m}");
}

/// `snapshot` of 201, 202 and 203 by three clients at once: the three responses.
async fn three_snapshots(e: &Env) -> Vec<Value> {
    let mut tasks = Vec::new();
    for d in ["201", "202", "203"] {
        let mut c = e.client().await;
        tasks.push(tokio::spawn(async move {
            c.call(json!({"op": "snapshot", "device": d})).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("a client task"));
    }
    out
}

/// N clients starting N devices at once against a switch answering in 300 ms: about one
/// start's time (MonitorStart, SnapshotDevice, GetAgentState: 3 answers), not N of them.
#[tokio::test]
async fn monitor_starts_of_different_devices_run_in_parallel() {
    let mut s = sim("201-220");
    s.limits.response_delay_ms = 300;
    let e = env_sim(
        s,
        api(),
        LinkSection {
            request_timeout_ms: 5000,
            ..LinkSection::default()
        },
    )
    .await;
    let n = 10;
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(e.client().await);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let d = format!("{}", 201 + i);
            c.ok(json!({"op": "monitor.start", "device": d})).await;
            c
        }));
    }
    // and two clients on one device: one PBX monitor, both counted
    let (mut a, mut b) = (e.client().await, e.client().await);
    let same = tokio::spawn(async move {
        let x = json!({"op": "monitor.start", "device": "215"});
        let (ra, rb) = tokio::join!(a.ok(x.clone()), b.ok(x.clone()));
        (ra, rb, a, b)
    });
    let mut kept = Vec::new();
    for t in tasks {
        kept.push(t.await.expect("a client task"));
    }
    let (_, _, _a, _b) = same.await.expect("the same-device task");
    let took = t0.elapsed();
    // serial: 10 x 3 x 300 ms = 9 s; parallel: about 3 x 300 ms
    assert!(
        took < Duration::from_millis(3000),
        "{n} monitor.start took {took:?}"
    );
    assert_eq!(e.pbx_monitors("215").await, 1);
    assert_eq!(e.gw.monitor_refs("pbx1", "215").await, 2);
    for i in 0..n {
        assert_eq!(e.pbx_monitors(&format!("{}", 201 + i)).await, 1);
    }
}

/// A configured list far larger than the window is all monitored; a device the switch
/// refuses is `refused` in `status` with its reason, the others `active`.
#[tokio::test]
async fn a_configured_list_larger_than_the_window_is_all_monitored() {
    let mut monitor: Vec<String> = (3000..3300).map(|n| n.to_string()).collect();
    monitor.push("9999".into()); // no such station
    let e = env_sim(
        sim("3000-3399"),
        api(),
        LinkSection {
            max_outstanding: 8,
            monitor,
            ..LinkSection::default()
        },
    )
    .await;
    let s = status_until(&e, json!({"op": "status"}), |s| {
        count(s, "active") == 300 && count(s, "refused") == 1
    })
    .await;
    assert_eq!(count(&s, "pending"), 0, "{s}");
    assert_eq!(count(&s, "retrying"), 0, "{s}");
    assert_eq!(s["pbx_monitors"][0]["configured"], 301, "{s}");
    assert!(s.get("devices").is_none(), "the list only when asked");
    let s = status_until(&e, json!({"op": "status", "devices": true}), |_| true).await;
    let rows = s["devices"].as_array().expect("devices");
    assert_eq!(rows.len(), 301);
    let bad = rows.iter().find(|r| r["device"] == "9999").expect("9999");
    assert_eq!(bad["state"], "refused", "{bad}");
    assert!(
        bad["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invalidDeviceID")),
        "{bad}"
    );
    assert_eq!(bad["configured"], true);
    assert!(rows
        .iter()
        .filter(|r| r["device"] != "9999")
        .all(|r| r["state"] == "active"));
    for d in ["3000", "3150", "3299"] {
        assert_eq!(e.pbx_monitors(d).await, 1, "{d}");
    }
    // a client's own monitor is listed too, with its holder
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "3350"})).await;
    let s = status_until(&e, json!({"op": "status", "devices": true}), |s| {
        count(s, "active") == 301
    })
    .await;
    let row = s["devices"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["device"] == "3350").cloned())
        .expect("3350 listed");
    assert_eq!(
        row,
        json!({"link": "pbx1", "device": "3350", "state": "active", "configured": false, "clients": 1})
    );
}

/// A switch that limits its request rate (performanceLimitExceeded beyond it): the
/// configured monitors it turns away are retried until every one is monitored.
#[tokio::test]
async fn configured_monitors_turned_away_by_a_busy_switch_are_retried() {
    let mut s = sim("4000-4099");
    s.limits.requests_per_s = 40;
    let monitor: Vec<String> = (4000..4060).map(|n| n.to_string()).collect();
    let e = env_sim(
        s,
        api(),
        LinkSection {
            max_outstanding: 16,
            resync_retry_max_s: 2,
            monitor,
            ..LinkSection::default()
        },
    )
    .await;
    let end = Instant::now() + Duration::from_secs(30);
    let mut c = e.client().await;
    loop {
        let st = c.ok(json!({"op": "status"})).await;
        if count(&st, "active") == 60 {
            break;
        }
        assert!(Instant::now() < end, "not all monitored: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = e.sim(r#"{"cmd":"status"}"#).await;
    assert!(
        st["counters"]["errors"].as_u64().is_some_and(|n| n > 0),
        "the switch turned requests away: {st}"
    );
    for d in ["4000", "4030", "4059"] {
        assert_eq!(e.pbx_monitors(d).await, 1, "{d}");
    }
}

/// Counts the heap in use (octets), for the scale tests' figures.
struct Counting;
static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        std::alloc::System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        std::alloc::System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(
            n as isize - l.size() as isize,
            std::sync::atomic::Ordering::Relaxed,
        );
        std::alloc::System.realloc(p, l, n)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap in use, KiB.
fn heap_kib() -> i64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed) as i64 / 1024
}

extern "C" {
    /// glibc: give freed heap back to the system, so that VmRSS shows what is in use.
    fn malloc_trim(pad: usize) -> i32;
}

fn vm_rss_kib() -> u64 {
    // SAFETY: glibc's malloc_trim only releases free memory; any pad is valid
    unsafe {
        malloc_trim(0);
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The target of issue #10: 100 000 configured devices on one link, monitored within 60 s
/// of link up against a switch answering at once, under 2 KiB each. The simulator runs in
/// this process, so the memory figure includes its own monitor table (an upper bound of the
/// gateway's). `CTIGATE_SCALE_DEVICES` changes the count. Run:
/// `cargo test --release --test monitors -- --ignored --nocapture --exact scale_100k_configured_devices`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scale_100k_configured_devices() {
    let n: u32 = std::env::var("CTIGATE_SCALE_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let first = 100_000u32;
    let mut s = sim(&format!("{first}-{}", first + n - 1));
    s.link.max_monitors = 2 * n as usize;
    s.link.max_monitors_total = 2 * n as usize;
    s.link.keepalive_s = 0;
    s.limits.response_delay_ms = std::env::var("CTIGATE_SCALE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let delay = s.limits.response_delay_ms;
    let sim = support::start_sim(s).await;
    let rss0 = vm_rss_kib();
    let heap0 = heap_kib();
    let monitor: Vec<String> = (first..first + n).map(|d| d.to_string()).collect();
    let cfg = ctigate::config::Config {
        api: api(),
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: sim.csta_addr.to_string(),
            monitor,
            ..LinkSection::default()
        }],
        metrics: Default::default(),
        users: Default::default(),
        audit: Default::default(),
        log: Default::default(),
    };
    let t0 = Instant::now();
    let gw = support::Gw::start(cfg).await;
    let up = t0.elapsed();
    let slot = gw.gw.gateway.links()["pbx1"].clone();
    let mut last = Instant::now();
    loop {
        let c = slot.monitor_counts();
        if c[1].1 == n as usize {
            break;
        }
        if last.elapsed() > Duration::from_secs(5) {
            let rows = slot.monitor_rows();
            let odd = rows.iter().find(|r| r.status.name() != "active");
            eprintln!("{:?} after {:?}; e.g. {odd:?}", c, t0.elapsed());
            last = Instant::now();
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "{c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = t0.elapsed();
    // the snapshots of the last ones
    while slot.resyncs() < n as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = vm_rss_kib();
    let per = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / n as f64;
    eprintln!(
        "scale: heap in use {heap0} KiB -> {} KiB: {:.0} octets per device (simulator's monitors included)",
        heap_kib(),
        (heap_kib() - heap0) as f64 * 1024.0 / n as f64
    );
    eprintln!(
        "scale: {n} devices, switch answering after {delay} ms: link up {up:?}; all monitored {:?} after link up; all snapshots {:?}; snapshots failed {}; VmRSS {rss0} KiB -> {rss1} KiB: {per:.0} octets per device (simulator's monitors included)",
        all - up,
        settled - up,
        slot.resync_failures()
    );
    assert_eq!(slot.resync_failures(), 0);
    assert!(all - up < Duration::from_secs(60), "took {:?}", all - up);
    // the switch drops the connection: every device monitored again and resynchronised
    let t1 = Instant::now();
    support::sim_cmd(&sim, r#"{"cmd":"fault","fault":"close"}"#).await;
    while slot.resyncs() < 2 * n as u64 {
        assert!(
            t1.elapsed() < Duration::from_secs(600),
            "resyncs {} after the reconnect",
            slot.resyncs() - n as u64
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "scale: after a reconnect every device monitored again and resynchronised in {:?} (snapshots failed {}); VmRSS {} KiB",
        t1.elapsed(),
        slot.resync_failures(),
        vm_rss_kib()
    );
    assert_eq!(slot.resync_failures(), 0);
}

/// Client-requested monitors at scale: `CTIGATE_SCALE_CLIENTS` clients (8) each start
/// their share of `CTIGATE_SCALE_DEVICES` devices (20 000), one after the other on their
/// connection (a connection's requests run in order), the clients in parallel. Prints the
/// time and the memory per device (simulator included). Run:
/// `cargo test --release --test monitors -- --ignored --nocapture --exact scale_clients_monitoring_many_devices`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scale_clients_monitoring_many_devices() {
    let env_n = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env_n("CTIGATE_SCALE_DEVICES", 20_000);
    let clients = env_n("CTIGATE_SCALE_CLIENTS", 8).max(1);
    let first = 100_000u32;
    let mut s = sim(&format!("{first}-{}", first + n - 1));
    s.link.max_monitors = 2 * n as usize;
    s.link.max_monitors_total = 2 * n as usize;
    s.link.keepalive_s = 0;
    let e = env_sim(
        s,
        ApiConfig {
            requests_per_s: 0,
            client_queue: 100_000,
            ..ApiConfig::default()
        },
        LinkSection::default(),
    )
    .await;
    let rss0 = vm_rss_kib();
    let heap0 = heap_kib();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let mut c = e.client().await;
        tasks.push(tokio::spawn(async move {
            for d in (first + k..first + n).step_by(clients as usize) {
                c.ok(json!({"op": "monitor.start", "device": d.to_string()}))
                    .await;
            }
            c
        }));
    }
    let mut kept = Vec::new();
    for t in tasks {
        kept.push(t.await.expect("a client task"));
    }
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = vm_rss_kib();
    let per = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / n as f64;
    let slot = e.gw.gw.gateway.links()["pbx1"].clone();
    eprintln!(
        "scale_clients: heap in use {heap0} KiB -> {} KiB: {:.0} octets per device (simulator's monitors and test clients included)",
        heap_kib(),
        (heap_kib() - heap0) as f64 * 1024.0 / n as f64
    );
    eprintln!(
        "scale_clients: {n} devices by {clients} clients: {took:?} ({:.0} monitor.start/s); VmRSS {rss0} KiB -> {rss1} KiB: {per:.0} octets per device (simulator's monitors and test clients included); counts {:?}; events published {}; tracker {:?}",
        n as f64 / took.as_secs_f64(),
        slot.monitor_counts(),
        e.gw.last_seq(),
        slot.tracker().audit()
    );
    assert_eq!(slot.monitor_counts()[1].1, n as usize);
    // every client gone: its monitors given back
    drop(kept);
    let end = Instant::now() + Duration::from_secs(120);
    while e.gw.gw.hub.clients() != 0 || slot.monitor_counts()[1].1 != 0 {
        assert!(Instant::now() < end, "{:?}", slot.monitor_counts());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "scale_clients: every client gone, every monitor stopped: VmRSS {} KiB, heap in use {} KiB",
        vm_rss_kib(),
        heap_kib()
    );
}

/// Where the memory of client monitors goes: `monitor_acquire` alone (the gateway's and the
/// link's part, no client session or hub), then the same devices' `resync` and agent query.
/// Run: `cargo test --release --test monitors -- --ignored --nocapture --exact scale_acquire_memory`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scale_acquire_memory() {
    let n = 20_000u32;
    let first = 100_000u32;
    let mut s = sim(&format!("{first}-{}", first + n - 1));
    s.link.max_monitors = 2 * n as usize;
    s.link.max_monitors_total = 2 * n as usize;
    s.link.keepalive_s = 0;
    let e = env_sim(s, api(), LinkSection::default()).await;
    let gw = e.gw.gw.gateway.clone();
    let slot = gw.links()["pbx1"].clone();
    // the link alone (its monitor table, the simulator's) for half the devices
    let half = n / 2;
    let heap_link0 = heap_kib();
    let mut tasks = Vec::new();
    for k in 0..8u32 {
        let slot = slot.clone();
        tasks.push(tokio::spawn(async move {
            for d in (first + half + k..first + n).step_by(8) {
                slot.link.monitor(&d.to_string()).await.unwrap().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "scale_acquire: link.monitor alone: {:.0} octets per device",
        (heap_kib() - heap_link0) as f64 * 1024.0 / (n - half) as f64
    );
    let n = half;
    let heap0 = heap_kib();
    let mut tasks = Vec::new();
    for k in 0..8u32 {
        let (gw, slot) = (gw.clone(), slot.clone());
        tasks.push(tokio::spawn(async move {
            for d in (first + k..first + n).step_by(8) {
                let d = d.to_string();
                gw.monitor_acquire(&slot, &d, 1).await.unwrap().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let heap1 = heap_kib();
    let mut tasks = Vec::new();
    for k in 0..8u32 {
        let (gw, slot) = (gw.clone(), slot.clone());
        tasks.push(tokio::spawn(async move {
            for d in (first + k..first + n).step_by(8) {
                gw.resync(&slot, &d.to_string()).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let heap2 = heap_kib();
    let per = |a: i64, b: i64| (b - a) as f64 * 1024.0 / n as f64;
    eprintln!(
        "scale_acquire: heap {heap0} -> {heap1} KiB after monitor_acquire ({:.0} octets per device), -> {heap2} KiB after resync ({:.0} more)",
        per(heap0, heap1),
        per(heap1, heap2)
    );
}
