//! Shared test support for the integration tests (`mod support;` in each): hex helpers, the
//! simulator and gateway harnesses (every call into their constructors is here, so a change
//! of those APIs is one edit), the NDJSON test client of the gateway port, the simulator's
//! control-port client and a raw CSTA client built from our codec.
//!
//! Absence ("nothing else arrived") is never asserted after a wall-clock window: a client
//! proves the pipeline has passed a point with [`Env::barrier`] (a marker call on a spare
//! station, through the same switch association, link and event pump as the events under
//! test; once its events are read, everything the switch reported before them has been
//! read too).

#![allow(dead_code)]

use bytes::{BufMut, BytesMut};
use ctigate::api::{server, Api};
use ctigate::config::{ApiConfig, Config, LinkSection};
use ctigate::csta::acse::{AarqParams, Acse, AcseKind};
use ctigate::csta::apdu::Apdu;
use ctigate::csta::framing::{Frame, U16Codec};
use ctigate::link::{Link, LinkConfig, LinkEvent};
use ctigate::sim::{control, Sim, SimConfig};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::codec::Decoder;

/// Bound on every wait.
pub const T: Duration = Duration::from_secs(10);

// ---- hex ----------------------------------------------------------------------------------

/// Lower-case hex of `b` (as in the events: pbx_call_id, uui_hex).
pub fn hex(b: &[u8]) -> String {
    ctigate::csta::json::hex(b)
}

/// Octets from hex; every character that is not a hex digit (white space, `:`) is skipped.
pub fn unhex(s: &str) -> Vec<u8> {
    let d: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    assert!(d.len() % 2 == 0, "odd hex digit count in {s:?}");
    d.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

// ---- the simulator --------------------------------------------------------------------------

/// The simulator on 127.0.0.1:0, CSTA and control port.
pub async fn start_sim(cfg: SimConfig) -> Sim {
    timeout(T, Sim::start(cfg, "127.0.0.1:0", Some("127.0.0.1:0")))
        .await
        .expect("sim starts in time")
        .expect("sim starts")
}

/// The simulator with `n` sides (CSTA listeners sharing one switch), each on 127.0.0.1:0,
/// and its control port.
pub async fn start_sim_sides(cfg: SimConfig, n: usize) -> Sim {
    let listen = vec!["127.0.0.1:0"; n];
    timeout(T, Sim::start_sides(cfg, &listen, Some("127.0.0.1:0")))
        .await
        .expect("sim starts in time")
        .expect("sim starts")
}

/// The simulator on a given CSTA address, without a control port.
pub async fn start_sim_at(cfg: SimConfig, csta: &str) -> Sim {
    timeout(T, Sim::start(cfg, csta, None))
        .await
        .expect("sim starts in time")
        .expect("sim starts")
}

/// A control command (any answer).
pub async fn sim_any(sim: &Sim, line: &str) -> Value {
    let c = control::parse(line).expect("control command");
    timeout(T, sim.command(c))
        .await
        .expect("the simulator answers in time")
}

/// A control command that must succeed.
pub async fn sim_cmd(sim: &Sim, line: &str) -> Value {
    let r = sim_any(sim, line).await;
    assert_eq!(r["ok"], true, "{line}: {r}");
    r
}

/// Every device the simulator's associations monitor (sorted, one entry per monitor).
pub async fn sim_monitors(sim: &Sim) -> Vec<String> {
    let st = sim_cmd(sim, r#"{"cmd":"status"}"#).await;
    let mut out = Vec::new();
    for a in st["associations"].as_array().into_iter().flatten() {
        for m in a["monitors"].as_array().into_iter().flatten() {
            if let Some(d) = m["watches"]["device"].as_str() {
                out.push(d.to_string());
            }
        }
    }
    out.sort();
    out
}

/// Monitors the simulator has on `device` (every association).
pub async fn pbx_monitors(sim: &Sim, device: &str) -> usize {
    sim_monitors(sim)
        .await
        .iter()
        .filter(|d| *d == device)
        .count()
}

// ---- the link -------------------------------------------------------------------------------

/// A link to `sim` with short test timers.
pub fn link_cfg(sim: &Sim) -> LinkConfig {
    LinkConfig {
        name: "test".into(),
        addresses: vec![sim.csta_addr.to_string()],
        request_timeout: Duration::from_secs(2),
        keepalive_idle: Duration::from_secs(5),
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        ..LinkConfig::default()
    }
}

/// A link and its events.
pub fn start_link(cfg: LinkConfig) -> (Link, mpsc::Receiver<LinkEvent>) {
    let (tx, rx) = mpsc::channel(256);
    (Link::start(cfg, tx), rx)
}

/// A `[[user]]` with the hash of `token`.
pub fn user(name: &str, token: &str, role: &str, devices: &[&str]) -> ctigate::config::UserSection {
    ctigate::config::UserSection {
        name: name.into(),
        token_sha256: Some(ctigate::api::auth::hex(&ctigate::api::auth::token_sha256(
            token,
        ))),
        role: role.into(),
        devices: devices.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

// ---- the gateway ----------------------------------------------------------------------------

/// A running gateway and its API address.
pub struct Gw {
    pub gw: Arc<Api>,
    pub api: SocketAddr,
}

impl Gw {
    /// Start a gateway for `cfg` (validated; its API listens on 127.0.0.1:0) and wait until
    /// every link is up.
    pub async fn start(mut cfg: Config) -> Gw {
        cfg.api.listen = "127.0.0.1:0".into();
        cfg.validate().expect("valid config");
        let l = timeout(T, server::bind("127.0.0.1:0"))
            .await
            .expect("bind in time")
            .expect("bind");
        let api = l.local_addr().expect("api address");
        let gw = ctigate::api::start(cfg);
        tokio::spawn(server::serve(gw.clone(), l));
        let g = Gw { gw, api };
        let up = async {
            while !g.links_up() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        timeout(T, up).await.expect("the links come up");
        g
    }

    pub fn links_up(&self) -> bool {
        self.gw.gateway.links().values().all(|l| l.link.is_up())
    }

    /// The hub's last published seq.
    pub fn last_seq(&self) -> u64 {
        self.gw.hub.last_seq()
    }

    /// Clients holding `device` of link `link` (the gateway's reference count; 0 when none).
    pub async fn monitor_refs(&self, link: &str, device: &str) -> usize {
        let slot = self.gw.gateway.link(link).expect("a configured link");
        slot.monitor_refs(device).await
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.api).await
    }
}

/// The simulator and a gateway with one link (`pbx1`) to it.
pub struct Env {
    pub sim: Sim,
    pub gw: Gw,
}

/// The marker station of [`Env::barrier`] (no test uses it otherwise) and the station it
/// calls.
pub const MARKER: &str = "220";
const MARKER_CALLS: &str = "219";

/// Requests not rate-limited; a link request timeout of 3 s.
pub async fn env() -> Env {
    env_with(
        ApiConfig {
            requests_per_s: 0,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 3000,
            ..LinkSection::default()
        },
    )
    .await
}

pub async fn env_with(api: ApiConfig, link: LinkSection) -> Env {
    env_sim(SimConfig::default(), api, link).await
}

/// [`env_with`] against a simulator configured with `sim`.
pub async fn env_sim(sim: SimConfig, api: ApiConfig, link: LinkSection) -> Env {
    let sim = start_sim(sim).await;
    let cfg = Config {
        users: Vec::new(),
        audit: Default::default(),
        log: Default::default(),
        api,
        metrics: Default::default(),
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: sim.csta_addr.to_string(),
            ..link
        }],
    };
    let gw = Gw::start(cfg).await;
    // `link.up` published (a client connecting now does not get it)
    let up = async {
        while gw.last_seq() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(T, up).await.expect("link.up is published");
    Env { sim, gw }
}

/// A simulator with two sides (A = side 0, B = side 1) and a gateway whose link `pbx1` has
/// `addresses = [A, B]`; up on side A. Requests not rate-limited.
pub async fn env_sides(link: LinkSection) -> Env {
    let sim = start_sim_sides(SimConfig::default(), 2).await;
    let cfg = Config {
        users: Vec::new(),
        audit: Default::default(),
        log: Default::default(),
        api: ApiConfig {
            requests_per_s: 0,
            ..ApiConfig::default()
        },
        metrics: Default::default(),
        links: vec![LinkSection {
            name: "pbx1".into(),
            addresses: sim.sides.iter().map(ToString::to_string).collect(),
            ..link
        }],
    };
    let gw = Gw::start(cfg).await;
    // link.up published (a client connecting now does not get it). Not `last_seq() > 0`:
    // the links start before the hub subscribes to the bus, so the hub may miss the first
    // link.up (then no client gets it either); the pump names the side once it published.
    let up = async {
        while gw.gw.gateway.link_states()[0].side.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(T, up).await.expect("link.up is published");
    Env { sim, gw }
}

impl Env {
    /// A control command that must succeed.
    pub async fn sim(&self, line: &str) -> Value {
        sim_cmd(&self.sim, line).await
    }

    pub async fn sim_any(&self, line: &str) -> Value {
        sim_any(&self.sim, line).await
    }

    /// Monitors the simulator has on `device` (every association).
    pub async fn pbx_monitors(&self, device: &str) -> usize {
        pbx_monitors(&self.sim, device).await
    }

    pub async fn client(&self) -> Client {
        self.gw.client().await
    }

    /// A fast and a slow client on 201; the slow one (a 4 KiB receive buffer) reads nothing
    /// while calls with 10 KB of user data (the `inbound` command returned) fill its socket,
    /// then its queue, until the hub cuts it; the fast client reads every call in time.
    /// Returns (fast, slow, the inbound command, the calls made).
    #[allow(dead_code)]
    pub async fn cut_a_slow_client(&self) -> (Client, Client, String, usize) {
        let mut fast = self.client().await;
        fast.ok(json!({"op": "monitor.start", "device": "201"}))
            .await;
        let mut slow = Client::connect_with_recv_buffer(self.gw.api, 4096).await;
        slow.ok(json!({"op": "monitor.start", "device": "201"}))
            .await;
        let inbound = json!({"cmd": "inbound", "ani": "0891234567", "dnis": "201",
                             "user_data": "x".repeat(10_000)})
        .to_string();
        let mut calls = 0;
        while self.gw.gw.hub.dropped() == 0 {
            assert!(calls < 300, "the slow client was never cut");
            self.sim(&inbound).await;
            self.sim(r#"{"cmd":"hangup","device":"0891234567"}"#).await;
            calls += 1;
            self.barrier(&mut fast).await;
        }
        (fast, slow, inbound, calls)
    }

    /// Prove that `c` has read every event the switch reported so far and the gateway
    /// published for it: the marker station (monitored by `c` from its first barrier on)
    /// calls another and hangs up; the switch reports that on the same association after
    /// every earlier report, the link and the gateway's event pump keep the order, the hub
    /// gives `c` its events in seq order, and `c` reads up to the marker call's release.
    /// Responses the gateway queued for `c` before that are read too (its writer sends
    /// queued responses before the next event). The marker's events are kept apart
    /// ([`Client::marks`]), never in [`Client::events`]. Timers that fire later (a far end's
    /// ring time) are not covered: those are shown in virtual time (`src/model/harness.rs`).
    pub async fn barrier(&self, c: &mut Client) {
        if !c.marking {
            let r = c.ok(json!({"op": "monitor.start", "device": MARKER})).await;
            assert_eq!(r["calls"], json!([]), "the marker station is idle: {r}");
            c.marking = true;
        }
        // only marks read from now on (a switch restart may reuse the call number)
        let mut i = c.marks.len();
        let r = self
            .sim(&format!(
                r#"{{"cmd":"dial","from":"{MARKER}","to":"{MARKER_CALLS}"}}"#
            ))
            .await;
        let call = r["call"].clone();
        assert!(call.is_string(), "{r}");
        self.sim(&format!(r#"{{"cmd":"hangup","device":"{MARKER}"}}"#))
            .await;
        let end = Instant::now() + T;
        loop {
            while i < c.marks.len() {
                let e = &c.marks[i];
                if e["event"] == "call.released" && e["call"]["pbx_call_id"] == call {
                    return;
                }
                i += 1;
            }
            assert!(
                Instant::now() < end,
                "the marker call {call} did not come through: {:#?}",
                c.marks
            );
            c.read().await;
        }
    }

    /// Events at `device` read by `c`, once `c` has read everything reported so far.
    pub async fn settled(&self, c: &mut Client, device: &str) -> Vec<Value> {
        self.barrier(c).await;
        c.take(device)
    }
}

// ---- the NDJSON client of the gateway -------------------------------------------------------

/// An NDJSON client that keeps every event it reads; checks seq order and that every
/// response id is answered once.
pub struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    next: u64,
    pub hello: Value,
    /// Events read and not yet taken (not the marker's).
    pub events: Vec<Value>,
    /// Indexes into `events` already returned by `until`.
    used: HashSet<usize>,
    /// Responses read while waiting for another one.
    pub responses: Vec<Value>,
    /// Every response id seen (each must come once).
    pub answered: HashSet<String>,
    pub last_seq: u64,
    /// The marker station's events ([`Env::barrier`]).
    pub marks: Vec<Value>,
    marking: bool,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = timeout(T, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client::over(s).await
    }

    /// A client whose socket receive buffer is `size` octets (the kernel may round it up):
    /// one that stops reading makes the gateway's writes stall soon.
    pub async fn connect_with_recv_buffer(addr: SocketAddr, size: u32) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(size).expect("SO_RCVBUF");
        let s = timeout(T, sock.connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client::over(s).await
    }

    async fn over(s: TcpStream) -> Client {
        let (r, w) = s.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
            next: 1,
            hello: Value::Null,
            events: Vec::new(),
            used: HashSet::new(),
            responses: Vec::new(),
            answered: HashSet::new(),
            last_seq: 0,
            marks: Vec::new(),
            marking: false,
        };
        let hello = c.read_line().await.expect("hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["protocol"], "ctigate/1", "{hello}");
        c.last_seq = hello["seq"].as_u64().expect("hello seq");
        c.hello = hello;
        c
    }

    /// One line, parsed; None when the gateway closed the connection. Checks seq order
    /// and that every response id is answered once.
    pub async fn read_line(&mut self) -> Option<Value> {
        let line = timeout(T, ctigate::lines::read_line(&mut self.r, 1 << 20))
            .await
            .expect("the gateway sent nothing for 10 s")
            .expect("read");
        let ctigate::lines::Line::Text(t) = line else {
            return None;
        };
        let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
        self.note(&v);
        Some(v)
    }

    /// Every line until the gateway closes the connection (what it still had to say).
    pub async fn until_closed(&mut self) -> Vec<Value> {
        let mut lines = Vec::new();
        while let Some(l) = self.read_line().await {
            lines.push(l);
        }
        lines
    }

    /// One line exactly as the gateway wrote it (an echoed id keeps its digits); None when
    /// the gateway closed the connection. Checked like [`Client::read_line`].
    pub async fn read_text(&mut self) -> Option<String> {
        let line = timeout(T, ctigate::lines::read_line(&mut self.r, 1 << 20))
            .await
            .expect("the gateway sent nothing for 10 s")
            .expect("read");
        let ctigate::lines::Line::Text(t) = line else {
            return None;
        };
        let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
        self.note(&v);
        Some(t)
    }

    fn note(&mut self, v: &Value) {
        match v["type"].as_str() {
            Some("event") => {
                let seq = v["seq"].as_u64().expect("event seq");
                assert!(
                    seq > self.last_seq,
                    "seq not increasing: {seq} after {}: {v}",
                    self.last_seq
                );
                self.last_seq = seq;
            }
            Some("response") => {
                let id = v["id"].to_string();
                if v["id"] != Value::Null {
                    assert!(self.answered.insert(id), "answered twice: {v}");
                }
            }
            _ => {}
        }
    }

    /// The next line (events kept: the marker's in `marks`, others in `events`).
    pub async fn read(&mut self) -> Value {
        let v = self
            .read_line()
            .await
            .expect("the gateway closed the connection");
        if v["type"] == "event" {
            if self.marking && v["device"] == MARKER {
                self.marks.push(v.clone());
            } else {
                self.events.push(v.clone());
            }
        }
        v
    }

    pub async fn send_raw(&mut self, line: &str) {
        timeout(T, self.w.write_all(line.as_bytes()))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// Send a request with a fresh id; its id.
    pub async fn send(&mut self, mut v: Value) -> Value {
        let id = json!(self.next);
        self.next += 1;
        v["id"] = id.clone();
        self.send_raw(&format!("{v}\n")).await;
        id
    }

    /// The response to `id`.
    pub async fn response(&mut self, id: &Value) -> Value {
        if let Some(i) = self.responses.iter().position(|r| r["id"] == *id) {
            return self.responses.remove(i);
        }
        loop {
            let r = self.read().await;
            if r["type"] == "response" {
                if r["id"] == *id {
                    return r;
                }
                self.responses.push(r);
            }
        }
    }

    /// Send a request and return its whole response.
    pub async fn call(&mut self, v: Value) -> Value {
        let id = self.send(v).await;
        let r = self.response(&id).await;
        assert_eq!(r["id"], id, "{r}");
        r
    }

    /// A request that must succeed: its result.
    pub async fn ok(&mut self, v: Value) -> Value {
        let r = self.call(v.clone()).await;
        assert_eq!(r["ok"], true, "{v} -> {r}");
        r["result"].clone()
    }

    /// A request that must fail with `kind`/`code`.
    pub async fn err(&mut self, v: Value, kind: &str, code: &str) -> Value {
        let r = self.call(v.clone()).await;
        assert_eq!(r["ok"], false, "{v} -> {r}");
        assert_eq!(
            (r["error"]["kind"].as_str(), r["error"]["code"].as_str()),
            (Some(kind), Some(code)),
            "{v} -> {r}"
        );
        assert!(r["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        r
    }

    /// The first event `event` at `device` not returned before (read now if need be).
    pub async fn until(&mut self, device: &str, event: &str) -> Value {
        self.until_where(&format!("{event} at {device}"), |e| {
            e["device"] == device && e["event"] == event
        })
        .await
    }

    /// The first link event `event` not returned before.
    pub async fn until_link(&mut self, event: &str) -> Value {
        self.until_where(event, |e| e.get("device").is_none() && e["event"] == event)
            .await
    }

    /// The first event `pick` accepts not returned before.
    pub async fn until_where(&mut self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + T;
        let mut i = 0;
        loop {
            while i < self.events.len() {
                let e = &self.events[i];
                if !self.used.contains(&i) && pick(e) {
                    self.used.insert(i);
                    return e.clone();
                }
                i += 1;
            }
            assert!(Instant::now() < end, "no {what}; got {:#?}", self.events);
            self.read().await;
        }
    }

    /// Take every event read so far at `device` (oldest first).
    pub fn take(&mut self, device: &str) -> Vec<Value> {
        let (mine, rest): (Vec<Value>, Vec<Value>) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|e| e["device"] == device);
        self.events = rest;
        self.used.clear();
        mine
    }
}

// ---- the simulator's control port -----------------------------------------------------------

/// A client of the simulator's NDJSON control port.
pub struct Control {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Control {
    pub async fn connect(addr: SocketAddr) -> Control {
        let s = timeout(T, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let (r, w) = s.into_split();
        Control {
            r: BufReader::new(r),
            w,
        }
    }

    /// Send raw octets (a line, or not) and read one answer line.
    pub async fn raw(&mut self, line: &[u8]) -> Value {
        self.w.write_all(line).await.unwrap();
        let mut s = String::new();
        timeout(T, self.r.read_line(&mut s)).await.unwrap().unwrap();
        serde_json::from_str(&s).unwrap()
    }

    pub async fn cmd(&mut self, line: &str) -> Value {
        self.raw(format!("{line}\n").as_bytes()).await
    }
}

// ---- a raw CSTA client ----------------------------------------------------------------------

/// A CSTA application side built from our codec (2-octet length framing).
pub struct CstaClient {
    pub s: TcpStream,
    buf: BytesMut,
    codec: U16Codec,
}

impl CstaClient {
    pub async fn connect(addr: SocketAddr) -> CstaClient {
        CstaClient {
            s: timeout(T, TcpStream::connect(addr)).await.unwrap().unwrap(),
            buf: BytesMut::new(),
            codec: U16Codec::new(),
        }
    }

    pub async fn send(&mut self, a: &Apdu) {
        let p = a.encode().unwrap();
        let mut b = BytesMut::new();
        b.put_u16(p.len() as u16);
        b.put_slice(&p);
        self.s.write_all(&b).await.unwrap();
    }

    /// The next PDU, or None when the switch closed the connection.
    pub async fn next(&mut self) -> Option<Apdu> {
        loop {
            if let Some(Frame::Pdu(p)) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(Apdu::decode(&p).expect("the switch sends valid PDUs"));
            }
            let n = match timeout(T, self.s.read_buf(&mut self.buf))
                .await
                .expect("the switch answers in time")
            {
                Ok(n) => n,
                // a switch process that exits with bytes of ours unread resets the connection
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => panic!("reading from the switch: {e}"),
            };
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn associate(&mut self) {
        self.send(&Apdu::Acse(Acse::aarq(&AarqParams::default()).unwrap()))
            .await;
        match self.next().await {
            Some(Apdu::Acse(a)) if a.kind == AcseKind::Aare && a.result() == Some(0) => {}
            o => panic!("{o:?}"),
        }
        // then systemStatus(normal) at once, as real switches send; answered (noData)
        match self.next().await {
            Some(Apdu::Rose(ctigate::csta::rose::Rose::Invoke(i)))
                if i.opcode.local() == Some(211) =>
            {
                let id = u8::try_from(i.invoke_id.value().unwrap()).unwrap();
                let frame = [
                    0x00, 0x0d, 0xa2, 0x0b, 0x02, 0x01, id, 0x30, 0x06, 0x02, 0x02, 0x00, 0xd3,
                    0x05, 0x00,
                ];
                self.s.write_all(&frame).await.unwrap();
            }
            o => panic!("expected systemStatus after the AARE: {o:?}"),
        }
    }
}
