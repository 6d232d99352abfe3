//! `ctigate demo`: the switch simulator and the gateway in one process on loopback, a short
//! scripted inbound call (screen pop, answer, consult, transfer, hang up) shown as the
//! NDJSON events an adapter receives, then the port stays open for people to use.

use crate::api::{server, Api};
use crate::client::pretty;
use crate::config::{ApiConfig, Config, LinkSection};
use crate::sim::control::parse as sim_command;
use crate::sim::{Sim, SimConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A running demo: the simulator, the gateway and where they listen.
pub struct Demo {
    pub sim: Sim,
    /// The gateway and its API ([`Demo::shutdown`] stops them).
    pub service: Arc<Api>,
    pub api: SocketAddr,
}

/// Start the simulator (CSTA and control on loopback, free ports) and the gateway (API on
/// `listen`), and wait for the link to come up.
pub async fn start(listen: &str, sim_control: &str) -> Result<Demo, String> {
    // the demo has no users: anyone reaching its port could act on every device
    if !crate::config::is_loopback(listen) {
        return Err(format!(
            "the demo serves on loopback only (it has no users): --listen {listen} is reachable from other machines; use 127.0.0.1, or `ctigate run` with [[user]] entries (README \"Securing the gateway\")"
        ));
    }
    if !crate::config::is_loopback(sim_control) {
        tracing::warn!(sim_control, "the simulator's control port is reachable from other machines: anyone reaching it can inject calls and faults");
    }
    let sim = Sim::start(SimConfig::default(), "127.0.0.1:0", Some(sim_control))
        .await
        .map_err(|e| {
            format!("{e}; the simulator's control port is {sim_control}: move it with --sim-control (e.g. --sim-control 127.0.0.1:0)")
        })?;
    let cfg = Config {
        users: Vec::new(),
        audit: Default::default(),
        log: Default::default(),
        api: ApiConfig {
            listen: listen.to_string(),
            ..ApiConfig::default()
        },
        metrics: Default::default(),
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: sim.csta_addr.to_string(),
            ..LinkSection::default()
        }],
    };
    let l = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        format!("cannot listen on {listen} (the gateway's NDJSON port): {e}; move it with --listen (e.g. --listen 127.0.0.1:7701)")
    })?;
    let api = l.local_addr().map_err(|e| e.to_string())?;
    let service = crate::api::start(cfg);
    tokio::spawn(server::serve(service.clone(), l));
    let up = async {
        while !service.gateway.links().values().all(|l| l.link.is_up()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), up)
        .await
        .map_err(|_| "the gateway did not associate with the simulator in 10 s".to_string())?;
    Ok(Demo { sim, service, api })
}

impl Demo {
    /// Stop the gateway: clients get `shutdown`, the link is released.
    pub async fn shutdown(&self) {
        self.service.shutdown().await;
    }
}

/// An NDJSON client that prints every line it reads.
pub struct Client<F: FnMut(&str)> {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    next: u64,
    show: F,
    /// Events read while waiting for a response, for `until`.
    seen: std::collections::VecDeque<Value>,
}

const WAIT: Duration = Duration::from_secs(10);

impl<F: FnMut(&str)> Client<F> {
    pub async fn connect(addr: SocketAddr, show: F) -> Result<Self, String> {
        let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (r, w) = s.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
            next: 1,
            show,
            seen: Default::default(),
        };
        c.read().await?;
        Ok(c)
    }

    async fn read(&mut self) -> Result<Value, String> {
        let line = tokio::time::timeout(WAIT, crate::lines::read_line(&mut self.r, 1 << 20))
            .await
            .map_err(|_| "the gateway sent nothing for 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        match line {
            crate::lines::Line::Text(t) => {
                (self.show)(&t);
                serde_json::from_str(&t).map_err(|e| e.to_string())
            }
            _ => Err("the gateway closed the connection".into()),
        }
    }

    /// Send a request and wait for its response (printing events meanwhile).
    pub async fn req(&mut self, mut v: Value) -> Result<Value, String> {
        let id = self.next;
        self.next += 1;
        v["id"] = json!(id);
        let line = format!("{v}\n");
        self.w
            .write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let r = self.read().await?;
            if r["type"] == "response" && r["id"] == json!(id) {
                return if r["ok"] == true {
                    Ok(r["result"].clone())
                } else {
                    Err(format!("{} failed: {}", v["op"], r["error"]))
                };
            }
            if r["type"] == "event" && self.seen.len() < 1000 {
                self.seen.push_back(r);
            }
        }
    }

    /// The first event (already seen, or read now) that matches.
    pub async fn until(&mut self, event: &str, device: &str) -> Result<Value, String> {
        self.until_where(|r| r["event"] == event && r["device"] == device)
            .await
    }

    /// Every one of `events` (event, device), in any order: the last events a step causes,
    /// so that the next step's narration starts after them.
    pub async fn until_all(&mut self, events: &[(&str, &str)]) -> Result<(), String> {
        let mut left: Vec<(&str, &str)> = events.to_vec();
        while !left.is_empty() {
            let r = self
                .until_where(|r| {
                    left.iter()
                        .any(|(e, d)| r["event"] == *e && r["device"] == *d)
                })
                .await?;
            if let Some(i) = left
                .iter()
                .position(|(e, d)| r["event"] == *e && r["device"] == *d)
            {
                left.remove(i);
            }
        }
        Ok(())
    }

    /// The first event (already seen, or read now) for which `f` holds.
    pub async fn until_where(&mut self, f: impl Fn(&Value) -> bool) -> Result<Value, String> {
        while let Some(r) = self.seen.pop_front() {
            if f(&r) {
                return Ok(r);
            }
        }
        loop {
            let r = self.read().await?;
            if r["type"] == "event" && f(&r) {
                return Ok(r);
            }
        }
    }
}

/// The scripted call; `say` prints narration, events are printed by the client.
pub async fn script(d: &Demo, mut say: impl FnMut(&str)) -> Result<(), String> {
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let o2 = out.clone();
    let mut c = Client::connect(d.api, move |l| {
        o2.lock().unwrap_or_else(|p| p.into_inner()).push(pretty(l))
    })
    .await?;
    let flush = |say: &mut dyn FnMut(&str)| {
        for l in out.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            say(&format!("    {l}"));
        }
    };
    let sim = |cmd: &str| sim_command(cmd).map_err(|e| e.to_string());
    say("1. An adapter monitors agent station 201, station 202 and ACD group 8000; agent 1001 logs on at 201 and is ready.");
    for dev in ["201", "202", "8000"] {
        c.req(json!({"op": "monitor.start", "device": dev})).await?;
    }
    c.req(json!({"op": "agent.login", "device": "201", "agent": "1001", "password": "1001", "group": "8000"}))
        .await?;
    c.req(json!({"op": "agent.ready", "device": "201"})).await?;
    c.until_where(|r| {
        r["event"] == "agent.state" && r["device"] == "8000" && r["state"] == "ready"
    })
    .await?;
    flush(&mut say);
    say("2. A customer (0891234567) calls the hotline 0800100200; the IVR attached case=42. Screen pop at 201:");
    let r = d
        .sim
        .command(sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"0800100200","user_data":"case=42","correlator_data":"ivr-7"}"#)?)
        .await;
    if r["ok"] != true {
        return Err(format!("the simulator refused the call: {r}"));
    }
    c.until("call.offering", "201").await?;
    flush(&mut say);
    say("3. The agent answers; the agent is busy.");
    c.req(json!({"op": "call.answer", "device": "201"})).await?;
    c.until_all(&[
        ("call.connected", "201"),
        ("agent.state", "201"),
        ("agent.state", "8000"),
    ])
    .await?;
    flush(&mut say);
    say("4. The agent consults a colleague at 202 (the customer is on hold); 202 answers.");
    c.req(json!({"op": "call.consult", "device": "201", "to": "202"}))
        .await?;
    c.until("call.offering", "202").await?;
    c.req(json!({"op": "call.answer", "device": "202"})).await?;
    c.until_all(&[("call.connected", "201"), ("call.connected", "202")])
        .await?;
    flush(&mut say);
    say("5. The agent transfers: 202 now has the customer's call, same interaction id and variables; 201 is free and the agent ready again.");
    c.req(json!({"op": "call.transfer", "device": "201"}))
        .await?;
    c.until_all(&[
        ("call.transferred", "202"),
        ("call.transferred", "201"),
        ("call.released", "201"),
        ("call.released", "201"),
        ("agent.state", "201"),
        ("agent.state", "8000"),
    ])
    .await?;
    flush(&mut say);
    say("6. The customer hangs up.");
    let r = d
        .sim
        .command(sim(r#"{"cmd":"hangup","device":"0891234567"}"#)?)
        .await;
    if r["ok"] != true {
        return Err(format!("the simulator refused the hangup: {r}"));
    }
    c.until("call.released", "202").await?;
    flush(&mut say);
    Ok(())
}
