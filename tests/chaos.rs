//! Issue 9 "Nothing lost", item 9: chaos against the simulator's faults and misbehaving
//! clients, gateway and simulator over real TCP. Each scenario runs a seeded random mix of
//! calls at stations 201-210 (inbound, station-to-station dials, answers, holds, retrieves,
//! hang-ups), some of it while the link is in trouble, and then proves:
//!
//! * no panic: the gateway answers `status`, its link is up;
//! * every request answered exactly once (the support client checks ids), events in strictly
//!   increasing `seq` per client (checked on every line it reads);
//! * after recovery, every client's view rebuilt from the `call.*` events it received equals
//!   the switch's truth (the simulator's `status` calls per device): no call left that the
//!   switch no longer has, none released that it still has, the same states
//!   (`ctigate::soak::{View, truth, compare}`); the gateway's `snapshot` agrees with the
//!   switch's SnapshotDevice answer for every station;
//! * live calls keep their interaction id across the trouble.
//!
//! The seed of each scenario is printed (`CHAOS_SEED=n` replays one). "Nothing else
//! happened" is proven with the barrier (`Env::barrier`), waits are bounded (`T`).

mod support;

use ctigate::config::{ApiConfig, LinkSection};
use ctigate::soak::{compare, switch_state, truth, Lcg, View};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{env_sides, env_with, Client, Env, MARKER, T};
use tokio::time::{timeout, Instant};

const STATIONS: [&str; 10] = [
    "201", "202", "203", "204", "205", "206", "207", "208", "209", "210",
];

fn stations() -> Vec<String> {
    STATIONS.iter().map(ToString::to_string).collect()
}

/// The scenario's seed: `CHAOS_SEED` or `default`; printed (shown when the test fails).
fn seed(default: u64) -> Lcg {
    let s = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("chaos seed {s} (replay with CHAOS_SEED={s})");
    Lcg(s)
}

/// Short timers: reconnect after 200 ms to 1 s; keep-alive after 1 s idle, one miss.
fn link() -> LinkSection {
    LinkSection {
        request_timeout_ms: 3000,
        reconnect_min_ms: 200,
        reconnect_max_ms: 1000,
        keepalive_idle_s: 1,
        keepalive_misses: 1,
        ..LinkSection::default()
    }
}

fn api() -> ApiConfig {
    ApiConfig {
        requests_per_s: 0,
        ..ApiConfig::default()
    }
}

async fn env() -> Env {
    env_with(api(), link()).await
}

/// A client watching `devices` (and the barrier's marker); its view seeded from the
/// `monitor.start` results.
async fn watcher(e: &Env, devices: &[String]) -> (Client, View) {
    let mut c = e.client().await;
    let mut v = View::default();
    for d in devices {
        let r = c.ok(json!({"op": "monitor.start", "device": d})).await;
        v.seed(&r);
    }
    e.barrier(&mut c).await;
    (c, v)
}

/// `n` random switch-side actions at the stations (errors are fine: answering a station
/// with nothing ringing is refused, and the switch's truth is what counts).
async fn churn(e: &Env, rng: &mut Lcg, n: usize) {
    for _ in 0..n {
        let i = rng.below(STATIONS.len());
        let a = STATIONS[i];
        // another station (a station calling itself is no call)
        let b = STATIONS[(i + 1 + rng.below(STATIONS.len() - 1)) % STATIONS.len()];
        let cmd = match rng.below(8) {
            0 => {
                json!({"cmd": "inbound", "ani": format!("089{:07}", rng.below(10_000_000)), "dnis": a})
            }
            1 | 2 => json!({"cmd": "dial", "from": a, "to": b}),
            3 | 4 => json!({"cmd": "answer", "device": a}),
            5 => json!({"cmd": "hold", "device": a}),
            6 => json!({"cmd": "retrieve", "device": a}),
            _ => json!({"cmd": "hangup", "device": a}),
        };
        let r = e.sim_any(&cmd.to_string()).await;
        assert!(r.get("ok").is_some(), "{cmd}: {r}");
    }
}

/// Requests through the gateway, sent at once without waiting (some may meet a link that is
/// down): each is answered exactly once, ok or with a switch/link/request error.
async fn requests(c: &mut Client, rng: &mut Lcg, n: usize) {
    let mut ids = Vec::new();
    for _ in 0..n {
        let a = STATIONS[rng.below(STATIONS.len())];
        let b = STATIONS[rng.below(STATIONS.len())];
        let req = match rng.below(5) {
            0 => json!({"op": "call.make", "device": a, "to": b}),
            1 => json!({"op": "call.answer", "device": a}),
            2 => json!({"op": "call.hold", "device": a}),
            3 => json!({"op": "snapshot", "device": a}),
            _ => json!({"op": "status"}),
        };
        ids.push((c.send(req.clone()).await, req));
    }
    for (id, req) in ids {
        let r = c.response(&id).await;
        let kind = r["error"]["kind"].as_str();
        assert!(
            r["ok"] == true || matches!(kind, Some("switch" | "link" | "request")),
            "{req} -> {r}"
        );
    }
}

/// The interaction id of every call in `v` per (device, pbx_call_id).
fn ids(v: &View) -> BTreeMap<(String, String), String> {
    v.calls
        .iter()
        .flat_map(|(d, m)| {
            m.iter()
                .map(|(id, c)| ((d.clone(), c.pbx_call_id.clone()), id.clone()))
        })
        .collect()
}

/// `base` with every event `c` has read applied.
fn view_of(c: &Client, base: &View) -> View {
    let mut v = base.clone();
    for ev in &c.events {
        v.apply(ev);
    }
    if !v.errors.is_empty() {
        let lagged: Vec<&Value> = c.events.iter().filter(|e| e["event"] == "lagged").collect();
        let first = v.errors[0]
            .split_whitespace()
            .nth(5)
            .unwrap_or("")
            .to_string();
        let trail: Vec<String> = c
            .events
            .iter()
            .filter(|e| e["call"]["id"] == first.as_str())
            .map(|e| {
                format!(
                    "{} {} {} {} {}",
                    e["seq"], e["device"], e["event"], e["call"]["pbx_call_id"], e["cause"]
                )
            })
            .collect();
        panic!(
            "the event stream: {:#?}\nlagged: {lagged:?}\nevents of {first}: {trail:#?}",
            v.errors
        );
    }
    v
}

/// Wait (bounded) until the switch's one open association is associated and monitors
/// every station and the marker again (after a reconnect, a restart or a failover).
async fn monitored_again(e: &Env) {
    let mut want = stations();
    want.push(MARKER.to_string());
    let done = async {
        loop {
            let st = e.sim(r#"{"cmd":"status"}"#).await;
            let open: Vec<&Value> = st["associations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["phase"] == "associated")
                .collect();
            if let [a] = open.as_slice() {
                let watched: Vec<&str> = a["monitors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["watches"]["device"].as_str())
                    .collect();
                if want.iter().all(|d| watched.contains(&d.as_str())) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(T, done)
        .await
        .expect("the gateway monitors every device again");
}

/// After recovery, every client's view is the switch's; the gateway's `snapshot` of every
/// station agrees with the switch; the gateway answers `status` with its link up. Bounded:
/// the resync may still be under way when the monitors are back, so the comparison is made
/// (after a barrier for every client) until it holds, within `T`; then once more after a
/// second barrier, so a late resync event that would break it is seen. The views.
async fn agree(e: &Env, clients: &mut [(&mut Client, &View)]) -> Vec<View> {
    monitored_again(e).await;
    let devices = stations();
    let end = Instant::now() + T;
    let mut settled = 0;
    loop {
        for (c, _) in clients.iter_mut() {
            e.barrier(c).await;
        }
        let st = e.sim(r#"{"cmd":"status"}"#).await;
        let t = truth(&st, &devices);
        let views: Vec<View> = clients.iter().map(|(c, b)| view_of(c, b)).collect();
        let diff: Vec<String> = views
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                compare(&v.as_switch(&devices), &t)
                    .into_iter()
                    .map(move |m| format!("client {i}: {m}"))
            })
            .collect();
        if diff.is_empty() {
            settled += 1;
            if settled == 2 {
                let c = &mut *clients[0].0;
                snapshots_agree(c, &t).await;
                let s = c.ok(json!({"op": "status"})).await;
                assert_eq!(s["links"][0]["state"], "up", "{s}");
                return views;
            }
            continue;
        }
        settled = 0;
        if Instant::now() >= end {
            let c = &*clients[0].0;
            let trail: Vec<String> = c
                .events
                .iter()
                .map(|v| {
                    format!(
                        "{} {} {} {} {} {}",
                        v["seq"],
                        v["device"],
                        v["event"],
                        v["call"]["id"],
                        v["call"]["pbx_call_id"],
                        v["cause"]
                    )
                })
                .collect();
            panic!(
                "the clients' views are not the switch's:\n{}\nswitch: {t:?}\nclient 0's events:\n{}",
                diff.join("\n"),
                trail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gateway's `snapshot` of each station: its tracked calls agree with the PBX's answer
/// and with the switch's truth.
async fn snapshots_agree(c: &mut Client, t: &BTreeMap<String, Vec<(String, String)>>) {
    for d in STATIONS {
        let s = c.ok(json!({"op": "snapshot", "device": d})).await;
        let mut tracked: Vec<(String, String)> = s["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["pbx_call_id"].as_str().unwrap_or("?").to_string(),
                    switch_state(v["state"].as_str().unwrap_or("?")).to_string(),
                )
            })
            .collect();
        tracked.sort();
        let mut pbx: Vec<(String, String)> = s["pbx_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["pbx_call_id"].as_str().unwrap_or("?").to_string(),
                    v["state"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect();
        pbx.sort();
        assert_eq!(tracked, t[d], "{d}: the gateway's calls vs the switch: {s}");
        assert_eq!(
            pbx, t[d],
            "{d}: the gateway's SnapshotDevice vs the switch: {s}"
        );
    }
}

/// Calls live before and after the trouble keep their interaction id at every device.
fn ids_kept(before: &View, after: &View) {
    let (b, a) = (ids(before), ids(after));
    let mut kept = 0;
    for (k, id) in &a {
        if let Some(old) = b.get(k) {
            assert_eq!(old, id, "{k:?}: the interaction id changed");
            kept += 1;
        }
    }
    eprintln!("{kept} live calls kept their interaction id");
}

/// Two watchers, calls in flight, the views agree with the switch.
async fn busy_start(e: &Env, rng: &mut Lcg) -> (Client, View, Client, View, View) {
    let (mut a, va) = watcher(e, &stations()).await;
    let (mut b, vb) = watcher(e, &stations()).await;
    churn(e, rng, 40).await;
    let v = agree(e, &mut [(&mut a, &va), (&mut b, &vb)]).await;
    (a, va, b, vb, v[0].clone())
}

/// Around one fault taking the link down: calls change while it is down, requests meet
/// it, the link comes back, the views agree and live calls keep their ids.
async fn link_fault(e: &Env, rng: &mut Lcg, fault: &str, reason: &str) {
    let (mut a, va, mut b, vb, before) = busy_start(e, rng).await;
    for round in 0..2 {
        e.sim(&format!(r#"{{"cmd":"fault","fault":"{fault}"}}"#))
            .await;
        let down = a.until_link("link.down").await;
        assert!(
            down["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with(reason)),
            "round {round}: {down}"
        );
        churn(e, rng, 15).await;
        requests(&mut a, rng, 6).await;
        a.until_link("link.up").await;
        b.until_link("link.down").await;
        b.until_link("link.up").await;
        churn(e, rng, 10).await;
        let after = agree(e, &mut [(&mut a, &va), (&mut b, &vb)]).await;
        ids_kept(&before, &after[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_closes_the_link_mid_call() {
    let mut rng = seed(9001);
    let e = env().await;
    link_fault(&e, &mut rng, "close", "the switch closed the connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_aborts_the_association_mid_call() {
    let mut rng = seed(9002);
    let e = env().await;
    link_fault(
        &e,
        &mut rng,
        "abort",
        "the switch aborted the association (ABRT",
    )
    .await;
}

/// The switch restarts underneath with its links kept: every call and monitor is gone,
/// the link stays up (systemStatus initializing, normal); the gateway monitors again and
/// releases every call (cause resync); calls made afterwards are seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_restarts_with_the_links_kept() {
    let mut rng = seed(9003);
    let e = env().await;
    let (mut a, va, mut b, vb, before) = busy_start(&e, &mut rng).await;
    assert!(
        before.calls.values().any(|m| !m.is_empty()),
        "calls in flight before the restart"
    );
    let r = e
        .sim(r#"{"cmd":"fault","fault":"restart","keep_links":true}"#)
        .await;
    assert_eq!(r["ok"], true, "{r}");
    churn(&e, &mut rng, 20).await;
    let after = agree(&e, &mut [(&mut a, &va), (&mut b, &vb)]).await;
    // every call before the restart was released at each device, with cause resync
    for (dev, m) in &before.calls {
        for id in m.keys() {
            let rel: Vec<&Value> = a
                .events
                .iter()
                .filter(|v| {
                    v["event"] == "call.released" && v["device"] == *dev && v["call"]["id"] == *id
                })
                .collect();
            assert_eq!(rel.len(), 1, "{dev} {id}: released once: {rel:#?}");
            assert_eq!(rel[0]["cause"], "resync", "{}", rel[0]);
        }
    }
    assert!(
        !a.events.iter().any(|v| v["event"] == "link.down"),
        "the link stayed up"
    );
    // calls made after the restart are new interactions (the switch may reuse call numbers)
    let old: std::collections::BTreeSet<String> = ids(&before).into_values().collect();
    assert!(
        ids(&after[0]).values().all(|id| !old.contains(id)),
        "{before:#?} {after:#?}"
    );
}

/// Garbled frames from the switch: whatever the link makes of them (a reject, or the
/// association dropped for a loss of framing), the views end up the switch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_frames() {
    let mut rng = seed(9004);
    let e = env().await;
    let (mut a, va, mut b, vb, before) = busy_start(&e, &mut rng).await;
    for _ in 0..3 {
        e.sim(r#"{"cmd":"fault","fault":"garble"}"#).await;
        churn(&e, &mut rng, 10).await;
        requests(&mut a, &mut rng, 4).await;
    }
    let after = agree(&e, &mut [(&mut a, &va), (&mut b, &vb)]).await;
    ids_kept(&before, &after[0]);
}

/// The switch stops answering keep-alives: the idle link is declared dead after one miss,
/// calls change meanwhile, the link comes back (keep-alives answered again) and the views
/// are the switch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_unanswered_then_resumed() {
    let mut rng = seed(9005);
    let e = env().await;
    let (mut a, va, mut b, vb, before) = busy_start(&e, &mut rng).await;
    e.sim(r#"{"cmd":"fault","fault":"stop_keepalive"}"#).await;
    let down = a.until_link("link.down").await;
    assert_eq!(
        down["reason"], "keep-alive: 1 systemStatus unanswered (1s apart); the link is dead",
        "{down}"
    );
    churn(&e, &mut rng, 15).await;
    a.until_link("link.up").await;
    e.sim(r#"{"cmd":"fault","fault":"resume_keepalive"}"#).await;
    churn(&e, &mut rng, 10).await;
    let after = agree(&e, &mut [(&mut a, &va), (&mut b, &vb)]).await;
    ids_kept(&before, &after[0]);
    b.until_link("link.down").await;
    b.until_link("link.up").await;
}

/// Side A taken away mid-call: the link moves to side B (one call model behind both),
/// calls changed meanwhile are resynced there, live calls keep their ids; side A back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_from_side_a_to_side_b_mid_call() {
    let mut rng = seed(9006);
    let e = env_sides(link()).await;
    let (mut a, va, mut b, vb, before) = busy_start(&e, &mut rng).await;
    e.sim(r#"{"cmd":"fault","fault":"side_down","side":0}"#)
        .await;
    let down = a.until_link("link.down").await;
    assert_eq!(down["side"], 0, "{down}");
    churn(&e, &mut rng, 15).await;
    requests(&mut a, &mut rng, 6).await;
    let up = a.until_link("link.up").await;
    assert_eq!(up["side"], 1, "{up}");
    let after = agree(&e, &mut [(&mut a, &va), (&mut b, &vb)]).await;
    ids_kept(&before, &after[0]);
    assert!(
        after[0].calls.values().any(|m| !m.is_empty()),
        "calls live across the failover"
    );
    e.sim(r#"{"cmd":"fault","fault":"side_up","side":0}"#).await;
    churn(&e, &mut rng, 10).await;
    agree(&e, &mut [(&mut a, &va), (&mut b, &vb)]).await;
}

/// A client that stops reading (a small receive buffer) beside a normal one that keeps
/// reading (queues of 1024 lines, the default): the normal client's stream stays complete and in
/// order (its view is the switch's, no `lagged`); the slow one loses events and is told
/// (`lagged`), its stream still in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_does_not_hold_up_a_normal_client() {
    let mut rng = seed(9007);
    let e = env_with(
        ApiConfig {
            client_queue: 1024,
            ..api()
        },
        link(),
    )
    .await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let slow = timeout(T, sock.connect(e.gw.api)).await.unwrap().unwrap();
    let (sr, mut sw) = slow.into_split();
    let mut req = String::new();
    // and 211, idle throughout: the calls that bring its `lagged` at the end
    for (i, d) in STATIONS.iter().chain(&["211"]).enumerate() {
        req.push_str(&format!(
            "{}\n",
            json!({"id": i, "op": "monitor.start", "device": d})
        ));
    }
    tokio::io::AsyncWriteExt::write_all(&mut sw, req.as_bytes())
        .await
        .unwrap();
    let (mut a, va) = watcher(&e, &stations()).await;
    // the slow client's monitors are in place (the gateway's reference counts)
    for d in STATIONS {
        let end = Instant::now() + T;
        while e.gw.monitor_refs("pbx1", d).await < 2 || e.gw.monitor_refs("pbx1", "211").await < 1 {
            assert!(Instant::now() < end, "the slow client monitors {d}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // many events (calls made and hung up, about 7 events each) from another task through
    // the control port, while the normal client reads
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut ctl = support::Control::connect(e.sim.control_addr.expect("control port")).await;
    let (d2, s2) = (done.clone(), stop.clone());
    let mut r2 = rng.clone();
    let churner = tokio::spawn(async move {
        for i in 0..1500 {
            let x = STATIONS[r2.below(5)];
            let y = STATIONS[5 + r2.below(5)];
            ctl.cmd(&json!({"cmd": "dial", "from": x, "to": y}).to_string())
                .await;
            ctl.cmd(
                &json!({"cmd": "hangup", "device": if i % 3 == 0 { y } else { x }}).to_string(),
            )
            .await;
        }
        d2.store(true, std::sync::atomic::Ordering::SeqCst);
        // keep the normal client's reads fed until it stops reading
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            ctl.cmd(r#"{"cmd":"inbound","ani":"0891","dnis":"210"}"#)
                .await;
            ctl.cmd(r#"{"cmd":"hangup","device":"210"}"#).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        a.read().await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    timeout(T, churner).await.unwrap().unwrap();
    requests(&mut a, &mut rng, 4).await;
    agree(&e, &mut [(&mut a, &va)]).await;
    assert!(
        !a.events.iter().any(|v| v["event"] == "lagged"),
        "the normal client never lagged"
    );
    let st = a.ok(json!({"op": "status"})).await;
    let dropped = st["events_dropped_for_slow_clients"].as_u64().unwrap();
    assert!(dropped > 0, "the slow client lost events: {st}");
    // the slow client reads now: the events queued for it before it was cut, in seq order,
    // then `lagged` (naming the limit) as the last line, then the connection closes
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen2 = seen.clone();
    let reader = tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(sr);
        let mut last = 0;
        let mut lagged = None;
        loop {
            let line = timeout(T, ctigate::lines::read_line(&mut r, 1 << 20))
                .await
                .unwrap_or_else(|_| panic!("no line for 10 s after seq {last}"))
                .expect("read");
            let ctigate::lines::Line::Text(t) = line else {
                // closed: `lagged` was the last event line
                return lagged.expect("lagged before the connection closed");
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "event" {
                assert!(lagged.is_none(), "an event after lagged: {v}");
                let seq = v["seq"].as_u64().unwrap();
                assert!(seq > last, "seq {seq} after {last}: {v}");
                last = seq;
                seen2.store(seq, std::sync::atomic::Ordering::SeqCst);
                if v["event"] == "lagged" {
                    assert_eq!(v["limit"], "api.client_queue", "{v}");
                    lagged = Some(seq);
                }
            }
        }
    });
    let end = Instant::now() + T;
    while !reader.is_finished() {
        assert!(
            Instant::now() < end,
            "the slow client was told it lagged: it read up to seq {}, the gateway is at {}, {} dropped",
            seen.load(std::sync::atomic::Ordering::SeqCst),
            e.gw.last_seq(),
            e.gw.gw.hub.dropped()
        );
        e.sim(r#"{"cmd":"inbound","ani":"0891","dnis":"211"}"#)
            .await;
        e.sim(r#"{"cmd":"hangup","device":"211"}"#).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from = reader.await.expect("the slow client's stream in order");
    assert!(from > 0 && from <= e.gw.last_seq());
}

/// A client disconnects mid-flow and comes back with `after` = the last seq it saw: it
/// gets exactly the events it missed (the same lines a client that stayed got), no
/// duplicates, no gap, then the live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_with_after_and_misses_nothing() {
    let mut rng = seed(9008);
    let e = env().await;
    let dev = vec!["201".to_string()];
    let (mut stay, vs) = watcher(&e, &dev).await;
    let (mut gone, _) = watcher(&e, &dev).await;
    // a flow mostly at 201
    let flow = |rng: &mut Lcg| {
        let other = STATIONS[1 + rng.below(STATIONS.len() - 1)];
        match rng.below(6) {
            0 => json!({"cmd": "dial", "from": "201", "to": other}),
            1 => json!({"cmd": "dial", "from": other, "to": "201"}),
            2 => json!({"cmd": "answer", "device": if rng.below(2) == 0 { "201" } else { other }}),
            3 => json!({"cmd": "hold", "device": "201"}),
            4 => json!({"cmd": "retrieve", "device": "201"}),
            _ => json!({"cmd": "hangup", "device": if rng.below(2) == 0 { "201" } else { other }}),
        }
    };
    for _ in 0..30 {
        e.sim_any(&flow(&mut rng).to_string()).await;
    }
    e.barrier(&mut gone).await;
    let seen: Vec<Value> = gone.take("201");
    let after = seen
        .last()
        .map_or(gone.hello["seq"].as_u64().unwrap(), |v| {
            v["seq"].as_u64().unwrap()
        });
    drop(gone);
    for _ in 0..30 {
        e.sim_any(&flow(&mut rng).to_string()).await;
    }
    // whatever the random flow did: 201 cleared, then a call of its own (events for sure)
    for _ in 0..10 {
        e.sim_any(r#"{"cmd":"hangup","device":"201"}"#).await;
    }
    e.sim(r#"{"cmd":"dial","from":"201","to":"209"}"#).await;
    let mut back = e.client().await;
    back.last_seq = after;
    let r = back
        .ok(json!({"op": "monitor.start", "device": "201", "after": after}))
        .await;
    assert_eq!(r["gap"], false, "{r}");
    for _ in 0..20 {
        e.sim_any(&flow(&mut rng).to_string()).await;
    }
    e.barrier(&mut back).await;
    e.barrier(&mut stay).await;
    let all = stay.take("201");
    let mut resumed = seen.clone();
    resumed.extend(back.take("201"));
    assert!(all.len() > seen.len(), "events while it was away");
    assert_eq!(
        resumed.len(),
        all.len(),
        "seen {} + resumed vs the client that stayed",
        seen.len()
    );
    assert_eq!(resumed, all, "exactly the events it missed, in order");
    let missed = all
        .iter()
        .filter(|v| v["seq"].as_u64() > Some(after))
        .count();
    assert!(
        r["replayed"].as_u64().unwrap() as usize <= missed,
        "{r}: replayed at most what it missed ({missed})"
    );
    // the client that stayed agrees with the switch
    stay.events = all;
    agree_one(&e, &mut stay, &vs, &dev).await;
}

/// [`agree`] for a client watching only `devices`.
async fn agree_one(e: &Env, c: &mut Client, base: &View, devices: &[String]) {
    e.barrier(c).await;
    let st = e.sim(r#"{"cmd":"status"}"#).await;
    let t = truth(&st, devices);
    let v = view_of(c, base);
    let diff = compare(&v.as_switch(devices), &t);
    assert!(diff.is_empty(), "{diff:#?}");
}

/// SIGTERM to the real `ctigate run` during calls, clients connected, against the real
/// `ctigate sim`: each client gets the lines queued for it and a final `shutdown` (nothing
/// after it), the two clients got the same events, the process exits 0, and the simulator
/// saw the association released (RLRQ), not aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_calls_ends_cleanly() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("ctigate-chaos-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // the simulator as a process, its log kept (the association's end is logged there)
    let mut sim = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args([
            "--log",
            "info",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "none",
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ctigate sim");
    let mut out = std::io::BufReader::new(sim.stdout.take().unwrap()).lines();
    let first = out.next().expect("a start-up line").unwrap();
    let csta = first
        .strip_prefix("ctigate sim listening: csta ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("start-up line: {first}"))
        .to_string();
    std::thread::spawn(move || for _ in out {});
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (l2, err) = (log.clone(), sim.stderr.take().unwrap());
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(l);
        }
    });
    let cfg = dir.join("ctigate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\nrequests_per_s = 0\n[[link]]\nname = \"pbx1\"\naddress = \"{csta}\"\n"
        ),
    )
    .unwrap();
    let mut gw = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ctigate run");
    let mut gout = std::io::BufReader::new(gw.stdout.take().unwrap()).lines();
    let l = gout.next().expect("the port line").unwrap();
    let api: std::net::SocketAddr = l
        .strip_prefix("ctigate run: NDJSON port ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{l}"))
        .parse()
        .unwrap();
    let up = gout.next().expect("connecting").unwrap();
    assert!(up.contains("connecting"), "{up}");
    let up = gout.next().expect("up").unwrap();
    assert!(up.starts_with("link pbx1: up in "), "{up}");
    std::thread::spawn(move || for _ in gout {});

    let devices = ["201", "202", "203", "204"];
    let mut a = Client::connect(api).await;
    let mut b = Client::connect(api).await;
    for c in [&mut a, &mut b] {
        for d in devices {
            c.ok(json!({"op": "monitor.start", "device": d})).await;
        }
    }
    // calls in flight: 201 -> 202 connected, 203 -> 204 ringing, 201's call held
    a.ok(json!({"op": "call.make", "device": "201", "to": "202"}))
        .await;
    a.until("202", "call.offering").await;
    a.ok(json!({"op": "call.answer", "device": "202"})).await;
    a.ok(json!({"op": "call.make", "device": "203", "to": "204"}))
        .await;
    a.until("201", "call.connected").await;
    a.ok(json!({"op": "call.hold", "device": "201"})).await;
    // b has read nothing since: its lines are queued when the signal comes
    let st = Command::new("kill")
        .args(["-TERM", &gw.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut lines = Vec::new();
    for c in [&mut a, &mut b] {
        let mut all = Vec::new();
        while let Some(v) = c.read_line().await {
            all.push(v);
        }
        let last = all.last().cloned().expect("lines before the close");
        assert_eq!(
            (&last["type"], &last["event"]),
            (&json!("event"), &json!("shutdown")),
            "the last line: {last}"
        );
        assert!(last["seq"].as_u64() > Some(0));
        lines.push(all);
    }
    // the events each got (a read some of its own before the signal)
    let evs = |c: &Client, rest: &[Value]| -> Vec<Value> {
        c.events
            .iter()
            .chain(rest.iter().filter(|v| v["type"] == "event"))
            .cloned()
            .collect()
    };
    let (ea, eb) = (evs(&a, &lines[0]), evs(&b, &lines[1]));
    assert_eq!(ea, eb, "both clients got every event");
    let names = |d: &str| -> Vec<String> {
        eb.iter()
            .filter(|v| v["device"] == d)
            .map(|v| v["event"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert_eq!(names("202"), ["call.offering", "call.connected"]);
    assert_eq!(names("204"), ["call.offering"]);
    assert_eq!(names("201").last().map(String::as_str), Some("call.held"));
    // exit 0
    let end = Instant::now() + T;
    let code = loop {
        if let Some(s) = gw.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < end, "the gateway exits in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(0));
    // the simulator saw a release, not an abort
    let end = Instant::now() + T;
    loop {
        let l = log.lock().unwrap().clone();
        if l.iter().any(|l| l.contains("released (RLRQ)")) {
            assert!(
                !l.iter()
                    .any(|l| l.contains("aborted") || l.contains("ABRT")),
                "{l:#?}"
            );
            break;
        }
        assert!(
            Instant::now() < end,
            "the simulator logs the release: {l:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = sim.kill();
    let _ = sim.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
