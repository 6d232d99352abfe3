//! `ctigate soak`: a long chaos run (a benchmark-style tool, not CI). The simulator and the
//! gateway in this process, the simulator's load mode on, N NDJSON clients watching the
//! stations, random faults at an interval; at the end every client's view (rebuilt from the
//! events it got) is compared with the switch's calls.
//!
//! The bookkeeping ([`View`], [`truth`], [`compare`]) is shared with the chaos tests
//! (`tests/chaos.rs`): "the switch's truth" is the simulator's `status` calls per device,
//! a client's view is built by applying the `call.*` events it received.

use crate::api::{server, Api};
use crate::config::{ApiConfig, Config, LinkSection};
use crate::sim::{control, Sim, SimConfig};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{info, warn};

// ---- the bookkeeping shared with the chaos tests -------------------------------------------

/// One call at one device as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewCall {
    pub pbx_call_id: String,
    /// The call view's state (`offering`, `connected`, ...).
    pub state: String,
}

/// Calls per device, as (pbx_call_id, the switch's connection state), sorted: the form in
/// which a client's view and the switch's truth are compared.
pub type DeviceCalls = BTreeMap<String, Vec<(String, String)>>;

/// A client's view rebuilt from the events it received: per device, interaction id → call;
/// and per device the interactions it saw begin and end.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub calls: BTreeMap<String, BTreeMap<String, ViewCall>>,
    /// Interactions seen per device (started).
    pub started: BTreeMap<String, u64>,
    /// `call.released` per device (ended).
    pub ended: BTreeMap<String, u64>,
    /// Inconsistencies in the stream itself (a release of an unknown interaction, an event
    /// after the release).
    pub errors: Vec<String>,
    released: BTreeSet<(String, String)>,
}

impl View {
    /// The calls of a `monitor.start` result (`{"device", "calls": [...]}`).
    pub fn seed(&mut self, result: &Value) {
        let Some(device) = result["device"].as_str() else {
            return;
        };
        let m = self.calls.entry(device.to_string()).or_default();
        m.clear();
        for c in result["calls"].as_array().into_iter().flatten() {
            if let (Some(id), Some(p), Some(s)) = (
                c["id"].as_str(),
                c["pbx_call_id"].as_str(),
                c["state"].as_str(),
            ) {
                m.insert(
                    id.to_string(),
                    ViewCall {
                        pbx_call_id: p.to_string(),
                        state: s.to_string(),
                    },
                );
            }
        }
    }

    /// Apply one event line (other events and lines are ignored).
    pub fn apply(&mut self, ev: &Value) {
        let Some(name) = ev["event"].as_str() else {
            return;
        };
        if !name.starts_with("call.") {
            return;
        }
        let (Some(device), Some(id)) = (ev["device"].as_str(), ev["call"]["id"].as_str()) else {
            return;
        };
        let key = (device.to_string(), id.to_string());
        if self.released.contains(&key) {
            self.errors.push(format!(
                "{name} at {device} for interaction {id} after its call.released (seq {})",
                ev["seq"]
            ));
            return;
        }
        let m = self.calls.entry(device.to_string()).or_default();
        if name == "call.released" || ev["call"]["state"] == "released" {
            if m.remove(id).is_none() {
                self.errors.push(format!(
                    "call.released at {device} for interaction {id} never seen (seq {})",
                    ev["seq"]
                ));
            }
            *self.ended.entry(device.to_string()).or_default() += 1;
            if self.released.len() > 100_000 {
                self.released.clear();
            }
            self.released.insert(key);
            return;
        }
        let state = ev["call"]["state"].as_str().unwrap_or("?").to_string();
        let pbx = ev["call"]["pbx_call_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !m.contains_key(id) {
            *self.started.entry(device.to_string()).or_default() += 1;
        }
        m.insert(
            id.to_string(),
            ViewCall {
                pbx_call_id: pbx,
                state,
            },
        );
    }

    /// The view of `devices` in the compared form.
    pub fn as_switch(&self, devices: &[String]) -> DeviceCalls {
        devices
            .iter()
            .map(|d| {
                let mut v: Vec<(String, String)> = self
                    .calls
                    .get(d)
                    .into_iter()
                    .flatten()
                    .map(|(_, c)| (c.pbx_call_id.clone(), switch_state(&c.state).to_string()))
                    .collect();
                v.sort();
                (d.clone(), v)
            })
            .collect()
    }

    /// Interaction id of the call `pbx_call_id` at `device`, if the view has it.
    pub fn interaction(&self, device: &str, pbx_call_id: &str) -> Option<String> {
        self.calls
            .get(device)?
            .iter()
            .find(|(_, c)| c.pbx_call_id == pbx_call_id)
            .map(|(id, _)| id.clone())
    }
}

/// The switch's connection state (simulator `status`, ECMA-269 LocalConnectionState) that
/// a call view's state stands for. A device whose call rings at the far end (`ringback`),
/// or whose call failed at the far end (`failed`: busy tone; the failed connection is the
/// target's), is connected to it as the switch sees it.
pub fn switch_state(view_state: &str) -> &str {
    match view_state {
        "offering" => "alerting",
        "dialing" => "initiated",
        "ringback" | "connected" | "failed" => "connected",
        "held" => "hold",
        "queued" => "queued",
        other => other,
    }
}

/// The switch's truth: the calls at each of `devices` in the simulator's `status` answer.
/// A busy target's failed connection is not one of the device's calls (the switch never
/// told the device of it and leaves it out of its SnapshotDevice answer too).
pub fn truth(status: &Value, devices: &[String]) -> DeviceCalls {
    let mut out: DeviceCalls = devices.iter().map(|d| (d.clone(), Vec::new())).collect();
    for c in status["calls"].as_array().into_iter().flatten() {
        let id = c["call"].as_str().unwrap_or_default();
        for conn in c["connections"].as_array().into_iter().flatten() {
            if let (Some(d), Some(s)) = (conn["device"].as_str(), conn["state"].as_str()) {
                if s == "fail" {
                    continue;
                }
                if let Some(v) = out.get_mut(d) {
                    v.push((id.to_string(), s.to_string()));
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Differences between a client's view and the switch's truth, one line each: calls the
/// client still has that the switch has not (stale), calls the switch has that the client
/// has not (missing), and calls in another state.
pub fn compare(view: &DeviceCalls, truth: &DeviceCalls) -> Vec<String> {
    let mut out = Vec::new();
    for (d, want) in truth {
        let got = view.get(d).cloned().unwrap_or_default();
        if &got == want {
            continue;
        }
        let w: BTreeMap<&str, Vec<&str>> = group(want);
        let g: BTreeMap<&str, Vec<&str>> = group(&got);
        for (call, states) in &w {
            match g.get(call) {
                None => out.push(format!(
                    "{d}: missing call {call} ({}) that the switch has",
                    states.join(",")
                )),
                Some(s) if s != states => out.push(format!(
                    "{d}: call {call} is {} in the view, {} at the switch",
                    s.join(","),
                    states.join(",")
                )),
                _ => {}
            }
        }
        for (call, states) in &g {
            if !w.contains_key(call) {
                out.push(format!(
                    "{d}: stale call {call} ({}) that the switch no longer has",
                    states.join(",")
                ));
            }
        }
    }
    out
}

fn group(v: &[(String, String)]) -> BTreeMap<&str, Vec<&str>> {
    let mut m: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (c, s) in v {
        m.entry(c.as_str()).or_default().push(s.as_str());
    }
    m
}

/// A small seeded LCG (Knuth's MMIX constants): reproducible chaos.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.next_u32() as usize % n.max(1)
    }
}

// ---- the soak run ---------------------------------------------------------------------------

/// What `ctigate soak` does.
#[derive(Debug, Clone)]
pub struct SoakSpec {
    pub duration: Duration,
    pub clients: usize,
    pub calls_per_s: f64,
    pub fault_interval: Duration,
    pub progress: Duration,
    pub seed: u64,
}

/// The marker station (a barrier call) and the station it calls; load calls go to the
/// agents at 201-210.
const MARKER: &str = "220";
const MARKER_CALLS: &str = "219";

/// One client's state, shared between its reader task and the run.
#[derive(Debug, Default)]
struct ClientState {
    view: View,
    events: u64,
    last_seq: u64,
    /// seq not increasing, `lagged`, an unanswered/duplicate response, a closed connection.
    problems: Vec<String>,
    /// pbx_call_ids of the marker's calls released (barrier).
    marks: BTreeSet<String>,
    closed: bool,
}

type Shared = Arc<Mutex<ClientState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, ClientState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connect, monitor `devices` and the marker, then read until the connection ends.
async fn client(addr: SocketAddr, devices: Vec<String>, st: Shared) -> Result<(), String> {
    let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut all = devices.clone();
    all.push(MARKER.into());
    let mut req = String::new();
    for (i, d) in all.iter().enumerate() {
        req.push_str(&format!(
            "{}\n",
            json!({"id": i + 1, "op": "monitor.start", "device": d})
        ));
    }
    w.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answered = BTreeSet::new();
    let mut next_id = all.len() + 1;
    loop {
        let line = crate::lines::read_line(&mut r, 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let crate::lines::Line::Text(t) = line else {
            lock(&st).closed = true;
            return Ok(());
        };
        let v: Value = serde_json::from_str(&t).map_err(|e| format!("{e}: {t}"))?;
        if v["type"] == "ping" {
            // a listen-only client answers the gateway's idle ping (api.idle_ping_s)
            let ping = format!("{}\n", json!({"id": next_id, "op": "ping"}));
            next_id += 1;
            w.write_all(ping.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            continue;
        }
        let mut c = lock(&st);
        match v["type"].as_str() {
            Some("hello") => c.last_seq = v["seq"].as_u64().unwrap_or(0),
            Some("response") => {
                if !answered.insert(v["id"].to_string()) {
                    c.problems.push(format!("answered twice: {v}"));
                }
                if v["ok"] != true {
                    c.problems.push(format!("request failed: {v}"));
                } else if v["result"]["device"].is_string() {
                    c.view.seed(&v["result"]);
                }
            }
            Some("event") => {
                c.events += 1;
                let seq = v["seq"].as_u64().unwrap_or(0);
                if seq <= c.last_seq {
                    let last = c.last_seq;
                    c.problems
                        .push(format!("seq {seq} after {last}: not increasing"));
                }
                c.last_seq = seq;
                if v["event"] == "lagged" {
                    c.problems.push(format!("lagged: {v}"));
                }
                if v["device"] == MARKER {
                    if v["event"] == "call.released" {
                        if let Some(p) = v["call"]["pbx_call_id"].as_str() {
                            c.marks.insert(p.to_string());
                        }
                    }
                } else {
                    c.view.apply(&v);
                }
            }
            _ => {}
        }
    }
}

async fn sim_cmd(sim: &Sim, line: &str) -> Value {
    match control::parse(line) {
        Ok(c) => sim.command(c).await,
        Err(e) => json!({"ok": false, "error": e}),
    }
}

/// Every client has read what the switch reported so far (a marker call through the same
/// association; see tests/support `Env::barrier`). False when one did not within 10 s.
async fn barrier(sim: &Sim, clients: &[Shared]) -> bool {
    let r = sim_cmd(
        sim,
        &format!(r#"{{"cmd":"dial","from":"{MARKER}","to":"{MARKER_CALLS}"}}"#),
    )
    .await;
    sim_cmd(sim, &format!(r#"{{"cmd":"hangup","device":"{MARKER}"}}"#)).await;
    let Some(call) = r["call"].as_str().map(str::to_string) else {
        return false;
    };
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if clients
            .iter()
            .all(|c| lock(c).marks.contains(&call) || lock(c).closed)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The clients' views against the switch: the mismatches of every client.
async fn check(sim: &Sim, clients: &[Shared], devices: &[String]) -> Result<Vec<String>, String> {
    let st = sim_cmd(sim, r#"{"cmd":"status"}"#).await;
    if !barrier(sim, clients).await {
        return Err("barrier: a client did not get the marker call within 10 s".into());
    }
    let t = truth(&st, devices);
    let mut out = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let v = lock(c).view.as_switch(devices);
        out.extend(
            compare(&v, &t)
                .into_iter()
                .map(|m| format!("client {i}: {m}")),
        );
    }
    Ok(out)
}

fn load_cmd(calls_per_s: f64) -> String {
    json!({"cmd": "load", "calls_per_s": calls_per_s, "dnis": "8000",
           "ring_ms": [300, 1500], "talk_ms": [1000, 5000], "hold_ms": [500, 1500],
           "hold_percent": 20})
    .to_string()
}

/// Run a soak; the summary is printed with `say`. Ok(true) when nothing was lost.
pub async fn run(spec: SoakSpec, mut say: impl FnMut(&str)) -> Result<bool, String> {
    let sim = Sim::start(SimConfig::default(), "127.0.0.1:0", None)
        .await
        .map_err(|e| format!("simulator: {e}"))?;
    let cfg = Config {
        users: Vec::new(),
        audit: Default::default(),
        log: Default::default(),
        api: ApiConfig {
            listen: "127.0.0.1:0".into(),
            requests_per_s: 0,
            max_clients: spec.clients + 8,
            ..ApiConfig::default()
        },
        metrics: Default::default(),
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: sim.csta_addr.to_string(),
            request_timeout_ms: 3000,
            keepalive_idle_s: 1,
            keepalive_misses: 2,
            reconnect_min_ms: 200,
            reconnect_max_ms: 2000,
            ..LinkSection::default()
        }],
    };
    cfg.validate().map_err(|e| e.to_string())?;
    let l = server::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let api: Arc<Api> = crate::api::start(cfg);
    tokio::spawn(server::serve(api.clone(), l));
    let up = |api: &Arc<Api>| api.gateway.links().values().all(|l| l.link.is_up());
    wait_until(Duration::from_secs(10), || up(&api))
        .await
        .then_some(())
        .ok_or("the gateway did not associate with the simulator in 10 s")?;

    let devices: Vec<String> = (201..=210).map(|n| n.to_string()).collect();
    let mut clients = Vec::new();
    for _ in 0..spec.clients {
        let st: Shared = Arc::default();
        let (s2, d2) = (st.clone(), devices.clone());
        tokio::spawn(async move {
            if let Err(e) = client(addr, d2, s2.clone()).await {
                let mut c = lock(&s2);
                c.problems.push(format!("client failed: {e}"));
                c.closed = true;
            }
        });
        clients.push(st);
    }
    // every client monitors everything before the load starts
    let monitored = |clients: &[Shared]| {
        clients
            .iter()
            .all(|c| lock(c).view.calls.len() == devices.len() || lock(c).closed)
    };
    wait_until(Duration::from_secs(10), || monitored(&clients)).await;
    let r = sim_cmd(&sim, &load_cmd(spec.calls_per_s)).await;
    if r["ok"] != true {
        return Err(format!("load: {r}"));
    }
    say(&format!(
        "soak: {} clients on {addr}, {} calls/s into 8000 (agents at 201-210), a fault every {:?} for {:?}, seed {}",
        spec.clients, spec.calls_per_s, spec.fault_interval, spec.duration, spec.seed
    ));

    let mut rng = Lcg(spec.seed);
    let start = Instant::now();
    let mut next_fault = start + spec.fault_interval;
    let mut next_progress = start + spec.progress;
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut offered_before_restarts = 0u64;
    while start.elapsed() < spec.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now >= next_fault {
            let kind = ["close", "abort", "garble", "stop_keepalive", "restart"][rng.below(5)];
            *faults.entry(kind).or_default() += 1;
            info!(fault = kind, "soak: injecting a fault");
            match kind {
                "stop_keepalive" => {
                    sim_cmd(&sim, r#"{"cmd":"fault","fault":"stop_keepalive"}"#).await;
                    // 2 keep-alives of 1 s unanswered declare an idle link dead (a link
                    // carrying events is not idle: it stays up, as it should)
                    tokio::time::sleep(Duration::from_millis(3000)).await;
                    sim_cmd(&sim, r#"{"cmd":"fault","fault":"resume_keepalive"}"#).await;
                }
                "restart" => {
                    let st = sim_cmd(&sim, r#"{"cmd":"status"}"#).await;
                    offered_before_restarts += st["load"]["stats"]["offered"].as_u64().unwrap_or(0);
                    sim_cmd(
                        &sim,
                        r#"{"cmd":"fault","fault":"restart","keep_links":true}"#,
                    )
                    .await;
                    // the reset stopped load mode and logged the agents off
                    sim_cmd(&sim, &load_cmd(spec.calls_per_s)).await;
                }
                k => {
                    let r = sim_cmd(&sim, &format!(r#"{{"cmd":"fault","fault":"{k}"}}"#)).await;
                    if r["ok"] != true {
                        warn!(fault = k, answer = %r, "soak: fault refused");
                    }
                }
            }
            next_fault = Instant::now() + spec.fault_interval;
        }
        if now >= next_progress {
            next_progress = now + spec.progress;
            let st = sim_cmd(&sim, r#"{"cmd":"status"}"#).await;
            let counts: Vec<u64> = clients.iter().map(|c| lock(c).events).collect();
            say(&format!(
                "[{:>5.0}s] link {} | switch: {} calls up, {} offered | faults {} | events per client {}..{}",
                start.elapsed().as_secs_f64(),
                if up(&api) { "up" } else { "DOWN" },
                st["calls"].as_array().map_or(0, Vec::len),
                offered_before_restarts + st["load"]["stats"]["offered"].as_u64().unwrap_or(0),
                faults.values().sum::<u64>(),
                counts.iter().min().unwrap_or(&0),
                counts.iter().max().unwrap_or(&0),
            ));
        }
    }

    // recovery: the link up, then the views compared while the load goes on (a change
    // between the switch's status and the barrier is a race, not a loss: tried again)
    let recovered = wait_until(Duration::from_secs(30), || up(&api)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut live = Vec::new();
    let mut live_ok = false;
    for _ in 0..20 {
        live = check(&sim, &clients, &devices).await?;
        if live.is_empty() {
            live_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // then load mode stops and clears its calls: every view must end empty like the switch
    let st = sim_cmd(&sim, r#"{"cmd":"status"}"#).await;
    let offered = offered_before_restarts + st["load"]["stats"]["offered"].as_u64().unwrap_or(0);
    let calls_at_end = st["calls"].as_array().map_or(0, Vec::len);
    let cleared = sim_cmd(&sim, r#"{"cmd":"load","calls_per_s":0}"#).await;
    let fin = check(&sim, &clients, &devices).await?;

    say("---- soak summary ----");
    say(&format!(
        "duration {:?}, seed {}, calls offered by load mode {offered}, calls up at the end {calls_at_end} (cleared by stopping load: {})",
        spec.duration, spec.seed, cleared["cleared"]
    ));
    say(&format!(
        "faults injected: {} ({})",
        faults.values().sum::<u64>(),
        faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut lost = !recovered || !live_ok || !fin.is_empty();
    if !recovered {
        say("the link did not come back within 30 s after the last fault");
    }
    let per_device = |m: &BTreeMap<String, u64>| {
        devices
            .iter()
            .map(|d| m.get(d).copied().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let mut first_counts: Option<(Vec<u64>, Vec<u64>)> = None;
    for (i, c) in clients.iter().enumerate() {
        let c = lock(c);
        let counts = (per_device(&c.view.started), per_device(&c.view.ended));
        say(&format!(
            "client {i}: {} events, last seq {}, interactions started {} ended {}, problems {}, stream errors {}",
            c.events,
            c.last_seq,
            counts.0.iter().sum::<u64>(),
            counts.1.iter().sum::<u64>(),
            c.problems.len(),
            c.view.errors.len()
        ));
        for p in c.problems.iter().chain(c.view.errors.iter()).take(10) {
            say(&format!("  {p}"));
        }
        if !c.problems.is_empty() || !c.view.errors.is_empty() || c.closed {
            lost = true;
        }
        // every client watches the same devices: each must have seen the same calls
        match &first_counts {
            None => first_counts = Some(counts),
            Some(f) if *f != counts => {
                say(&format!("  client {i}: per-device started/ended {counts:?} differ from client 0's {f:?}"));
                lost = true;
            }
            _ => {}
        }
    }
    say(&format!(
        "live comparison with the switch (load running): {}",
        if live_ok {
            "equal".to_string()
        } else {
            format!("{} mismatches", live.len())
        }
    ));
    for m in live.iter().take(20) {
        say(&format!("  {m}"));
    }
    say(&format!(
        "final comparison (load stopped, its calls cleared): {} mismatches",
        fin.len()
    ));
    for m in fin.iter().take(20) {
        say(&format!("  {m}"));
    }
    say(&format!(
        "gateway: link {}, events dropped for slow clients {}",
        if up(&api) { "up" } else { "down" },
        api.hub.dropped()
    ));
    say(if lost {
        "RESULT: LOSS"
    } else {
        "RESULT: nothing lost"
    });
    api.shutdown().await;
    sim.stop(Duration::from_secs(3)).await;
    Ok(!lost)
}

async fn wait_until(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + bound;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_from_events_compared_with_the_switch() {
        let mut v = View::default();
        v.seed(&json!({"device": "201", "calls": []}));
        let ev = |name: &str, id: &str, p: &str, s: &str| {
            json!({"type":"event","event":name,"device":"201","seq":1,
                   "call":{"id":id,"pbx_call_id":p,"state":s}})
        };
        v.apply(&ev("call.offering", "a", "0001", "offering"));
        v.apply(&ev("call.connected", "a", "0001", "connected"));
        v.apply(&ev("call.dialing", "b", "0002", "dialing"));
        v.apply(&ev("call.released", "b", "0002", "released"));
        let d = vec!["201".to_string()];
        let st = json!({"calls": [
            {"call": "0001", "connections": [{"device": "201", "state": "connected"}, {"device": "7000", "state": "connected"}]},
        ]});
        assert!(compare(&v.as_switch(&d), &truth(&st, &d)).is_empty());
        let st = json!({"calls": [
            {"call": "0001", "connections": [{"device": "201", "state": "hold"}]},
            {"call": "0003", "connections": [{"device": "201", "state": "alerting"}]},
            {"call": "0004", "connections": [{"device": "202", "state": "connected"}, {"device": "201", "state": "fail"}]},
        ]});
        assert_eq!(
            compare(&v.as_switch(&d), &truth(&st, &d)),
            [
                "201: call 0001 is connected in the view, hold at the switch",
                "201: missing call 0003 (alerting) that the switch has"
            ]
        );
        assert!(
            compare(&v.as_switch(&d), &truth(&json!({"calls": []}), &d))[0]
                .contains("stale call 0001")
        );
        // a second release is a stream error
        v.apply(&ev("call.released", "b", "0002", "released"));
        assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
        assert_eq!((v.started["201"], v.ended["201"]), (2, 1));
    }

    #[test]
    fn the_lcg_is_reproducible() {
        let mut a = Lcg(42);
        let mut b = Lcg(42);
        let xs: Vec<u32> = (0..5).map(|_| a.next_u32()).collect();
        assert_eq!(xs, (0..5).map(|_| b.next_u32()).collect::<Vec<_>>());
        assert!((0..100).all(|_| a.below(7) < 7));
    }
}
