//! The seams of the gateway, each with a small test double and no PBX, no socket:
//! - a scripted link ([`ScriptedLink`], a `PbxLink`): request handlers unit-tested;
//! - an in-memory transport ([`mem_client`]): sessions tested in virtual time;
//! - a counting subscriber on the bus ([`Counter`]): every event, in order.

use ctigate::api::ops::{self, Cx};
use ctigate::api::request::parse_request;
use ctigate::api::session::{Auth, LineSink, LineSource, SessionInfo};
use ctigate::api::{protocol::ApiError, request::Op, Api};
use ctigate::config::ApiConfig;
use ctigate::csta::ops::{Argument, OperationResult, SnapshotData, SnapshotDeviceResult};
use ctigate::csta::types::UniversalFailure;
use ctigate::gateway::{
    Body, BoxFuture, Delivery, Event, Gateway, LinkSpec, MonitorAnswer, PbxLink, PumpIn,
    ResyncRules, Subscriber,
};
use ctigate::lines::Line;
use ctigate::link::{Answer, CstaError, LinkError, LinkEvent, Side};
use ctigate::model::{AgentState, EventKind, InternalRule};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// Bound on every wait (virtual time in the session tests).
const T: Duration = Duration::from_secs(60);
/// The request deadline of the API under test.
const DEADLINE: Duration = Duration::from_secs(3);

// ---- the scripted link ----------------------------------------------------------------

/// What the scripted switch answers a request with; `None`: it never answers.
type Script = Box<dyn Fn(&Argument) -> Option<Answer> + Send + Sync>;

/// The sides a scripted link names in its up and down.
fn side_a() -> Side {
    Side {
        index: 0,
        address: "pbx-a:2555".into(),
    }
}

fn side_b() -> Side {
    Side {
        index: 1,
        address: "pbx-b:2555".into(),
    }
}

/// A `PbxLink` double: requests answered by a script, monitor starts by a queue (default:
/// accepted), after an optional delay; everything asked is logged in order.
struct ScriptedLink {
    script: Script,
    monitors: Mutex<VecDeque<MonitorAnswer>>,
    monitor_delay: Duration,
    /// How long every request takes to be answered.
    request_delay: Duration,
    up: AtomicBool,
    log: Mutex<Vec<String>>,
    /// What it tells of its read-ahead's wait (µs).
    read_waited_us: AtomicU64,
}

impl ScriptedLink {
    fn new(script: impl Fn(&Argument) -> Option<Answer> + Send + Sync + 'static) -> ScriptedLink {
        ScriptedLink {
            script: Box::new(script),
            monitors: Mutex::new(VecDeque::new()),
            monitor_delay: Duration::ZERO,
            request_delay: Duration::ZERO,
            up: AtomicBool::new(true),
            log: Mutex::new(Vec::new()),
            read_waited_us: AtomicU64::new(0),
        }
    }

    /// Every request accepted with an empty result.
    /// Every request succeeds; a snapshot shows no calls.
    fn accepting() -> ScriptedLink {
        ScriptedLink::new(|a| {
            Some(Ok(Ok(match a {
                Argument::SnapshotDevice(_) => Some(OperationResult::SnapshotDevice(
                    SnapshotDeviceResult::new(SnapshotData::Data(Vec::new())),
                )),
                _ => None,
            })))
        })
    }

    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl PbxLink for ScriptedLink {
    fn request(&self, arg: Argument) -> BoxFuture<'_, Answer> {
        self.note(format!("request {}", arg.operation()));
        let a = (self.script)(&arg);
        Box::pin(async move {
            tokio::time::sleep(self.request_delay).await;
            match a {
                Some(a) => a,
                None => std::future::pending().await,
            }
        })
    }
    fn monitor<'a>(&'a self, device: &'a str) -> BoxFuture<'a, MonitorAnswer> {
        Box::pin(async move {
            tokio::time::sleep(self.monitor_delay).await;
            self.note(format!("monitor {device}"));
            self.monitors
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(Ok(())))
        })
    }
    fn unmonitor<'a>(&'a self, device: &'a str) -> BoxFuture<'a, MonitorAnswer> {
        self.note(format!("unmonitor {device}"));
        Box::pin(async { Ok(Ok(())) })
    }
    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
    fn read_waited(&self) -> Duration {
        Duration::from_micros(self.read_waited_us.load(Ordering::Relaxed))
    }
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.note("shutdown".into());
        self.up.store(false, Ordering::Release);
        Box::pin(async {})
    }
}

fn refused(value: &str) -> Answer {
    Ok(Err(CstaError::Failure(
        UniversalFailure::from_names("operation", value).expect("a known value"),
    )))
}

/// A gateway of one link `pbx1` over `link`; the sender the link's events go to.
fn gateway(link: Arc<ScriptedLink>) -> (Arc<Gateway>, mpsc::Sender<PumpIn>) {
    gateway_with(link, ResyncRules::default())
}

/// [`gateway`] with the link's resync rules.
fn gateway_with(
    link: Arc<ScriptedLink>,
    resync: ResyncRules,
) -> (Arc<Gateway>, mpsc::Sender<PumpIn>) {
    gateway_named("pbx1", link, resync)
}

/// [`gateway_with`] with another link name.
fn gateway_named(
    name: &str,
    link: Arc<ScriptedLink>,
    resync: ResyncRules,
) -> (Arc<Gateway>, mpsc::Sender<PumpIn>) {
    let events = Arc::new(Mutex::new(None));
    let spec = LinkSpec {
        name: name.into(),
        internal: InternalRule::default(),
        monitor: Vec::new(),
        resync,
        event_queue: ctigate::gateway::EVENT_QUEUE,
        max_calls_per_device: ctigate::model::MAX_CALLS_PER_DEVICE,
    };
    let e = events.clone();
    let gw = Gateway::with_links(vec![spec], move |_, tx| {
        *e.lock().unwrap() = Some(tx);
        link.clone() as Arc<dyn PbxLink>
    });
    let tx = events.lock().unwrap().take().expect("the link was made");
    (gw, tx)
}

fn api_over(link: Arc<ScriptedLink>, cfg: ApiConfig) -> (Arc<Api>, mpsc::Sender<PumpIn>) {
    let (gw, tx) = gateway(link);
    (Api::new(gw, cfg, DEADLINE), tx)
}

fn api_cfg() -> ApiConfig {
    ApiConfig {
        requests_per_s: 0,
        ..ApiConfig::default()
    }
}

// ---- the counting subscriber ----------------------------------------------------------

/// Counts every event and keeps them in the order received.
#[derive(Default)]
struct Counter {
    seen: Mutex<Vec<Event>>,
}

impl Subscriber for Counter {
    fn on_event(&self, e: &Event) {
        self.seen.lock().unwrap().push(e.clone());
    }
}

impl Counter {
    fn kinds(&self) -> Vec<EventKind> {
        self.seen.lock().unwrap().iter().map(|e| e.kind).collect()
    }
}

// ---- handlers with the scripted link --------------------------------------------------

async fn run(api: &Api, client: u64, line: Value) -> Result<Value, ApiError> {
    let req = parse_request(&line.to_string()).expect("a valid request");
    let cx = Cx {
        gw: &api.gateway,
        hub: &api.hub,
        client,
    };
    timeout(T, ops::handle(&cx, req.op))
        .await
        .expect("answered in time")
}

fn code(r: Result<Value, ApiError>) -> (&'static str, String) {
    let e = r.expect_err("an error");
    (e.kind, e.code)
}

#[tokio::test]
async fn handlers_map_switch_and_link_answers() {
    let link = Arc::new(ScriptedLink::new(|a| match a.operation().name() {
        "makeCall" => Some(refused("invalidDeviceID")),
        "getAgentState" => Some(Err(LinkError::Down)),
        "setAgentState" => Some(Err(LinkError::TooManyRequests)),
        _ => Some(Ok(Ok(None))),
    }));
    let (api, _events) = api_over(link.clone(), api_cfg());
    let (c, _rx, _) = api.hub.register(true).expect("a client");
    let r = run(
        &api,
        c,
        json!({"id": 1, "op": "call.make", "device": "201", "to": "9"}),
    )
    .await;
    assert_eq!(code(r), ("switch", "invalidDeviceID".into()));
    let r = run(
        &api,
        c,
        json!({"id": 1, "op": "agent.state", "device": "201"}),
    )
    .await;
    assert_eq!(code(r), ("link", "link_down".into()));
    let r = run(
        &api,
        c,
        json!({"id": 1, "op": "agent.ready", "device": "201"}),
    )
    .await;
    assert_eq!(code(r), ("busy", "congestion".into()));
    let r = run(
        &api,
        c,
        json!({"id": 1, "op": "call.answer", "device": "201"}),
    )
    .await;
    assert_eq!(code(r), ("request", "not_monitored".into()));
    let r = run(
        &api,
        c,
        json!({"id": 1, "op": "call.answer", "device": "201", "link": "x"}),
    )
    .await;
    assert_eq!(code(r), ("request", "invalid_field".into()));
    let m = run(
        &api,
        c,
        json!({"id": 1, "op": "monitor.start", "device": "201"}),
    )
    .await
    .expect("monitored");
    assert_eq!(
        (m["device"].clone(), m["calls"].clone()),
        (json!("201"), json!([]))
    );
    let r = run(
        &api,
        c,
        json!({"id": 1, "op": "call.answer", "device": "201"}),
    )
    .await;
    assert_eq!(code(r), ("request", "no_such_call_state".into()));
    let r = run(
        &api,
        c,
        json!({"id": 1, "op": "call.dtmf", "device": "201", "digits": "1"}),
    )
    .await;
    // picking the call comes after the digits check, and there is no connected call
    assert_eq!(code(r), ("request", "no_such_call_state".into()));
    // nothing but the monitor, its snapshot, the agent query (the device's agent is not
    // known) and the two requests reached the link
    assert_eq!(
        link.log(),
        [
            "request makeCall",
            "request getAgentState",
            "request setAgentState",
            "monitor 201",
            "request snapshotDevice",
            "request getAgentState"
        ]
    );
}

#[tokio::test]
async fn monitors_are_shared_and_released_with_the_last_watcher() {
    let link = Arc::new(ScriptedLink::accepting());
    link.monitors
        .lock()
        .unwrap()
        .push_back(Ok(Err(CstaError::Reject(
            ctigate::csta::rose::Problem::Invoke(9),
        ))));
    let (api, _events) = api_over(link.clone(), api_cfg());
    let (a, _ra, _) = api.hub.register(true).unwrap();
    let (b, _rb, _) = api.hub.register(true).unwrap();
    let start = json!({"id": 1, "op": "monitor.start", "device": "201"});
    // refused by the switch: no reference taken, the next start asks again
    assert_eq!(
        code(run(&api, a, start.clone()).await),
        ("switch", "rejected:invoke/9".into())
    );
    run(&api, a, start.clone()).await.unwrap();
    let again = run(&api, a, start.clone()).await.unwrap();
    assert_eq!(again["already"], true);
    run(&api, b, start.clone()).await.unwrap();
    let stop = json!({"id": 2, "op": "monitor.stop", "device": "201"});
    run(&api, a, stop.clone()).await.unwrap();
    assert!(!link.log().contains(&"unmonitor 201".to_string()));
    run(&api, b, stop.clone()).await.unwrap();
    assert_eq!(
        code(run(&api, b, stop).await),
        ("request", "not_monitored".into())
    );
    let log = link.log();
    assert_eq!(
        log.iter().filter(|l| *l == "monitor 201").count(),
        2,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| *l == "unmonitor 201").count(),
        1,
        "{log:?}"
    );
}

#[tokio::test]
async fn agent_results_and_link_events_reach_the_bus_in_order() {
    let link = Arc::new(ScriptedLink::accepting());
    let (api, events) = api_over(link, api_cfg());
    let counter = Arc::new(Counter::default());
    api.gateway.bus.subscribe(counter.clone());
    let (c, _rx, _) = api.hub.register(true).unwrap();
    let r = run(
        &api,
        c,
        json!({"id": 1, "op": "agent.login", "device": "201", "agent": "1001", "group": "8000"}),
    )
    .await
    .unwrap();
    assert_eq!(r, json!({"pending": null}));
    events
        .send(
            LinkEvent::Down {
                reason: "gone".into(),
                side: side_a(),
            }
            .into(),
        )
        .await
        .unwrap();
    events
        .send(LinkEvent::Up { side: side_b() }.into())
        .await
        .unwrap();
    let end = Instant::now() + T;
    while counter.kinds().len() < 3 {
        assert!(Instant::now() < end, "{:?}", counter.kinds());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        counter.kinds(),
        [
            EventKind::AgentState,
            EventKind::LinkDown,
            EventKind::LinkUp
        ]
    );
    let seen = counter.seen.lock().unwrap().clone();
    match &seen[0].body {
        Body::Agent(a) => {
            assert_eq!((a.agent.as_str(), a.state), ("1001", AgentState::NotReady));
            assert_eq!(a.group.as_deref(), Some("8000"));
        }
        b => panic!("{b:?}"),
    }
    assert_eq!(
        seen[1].body,
        Body::LinkDown {
            reason: "gone".into(),
            side: side_a(),
        }
    );
    assert_eq!(seen[2].body, Body::LinkUp { side: side_b() });
    assert_eq!(api.hub.last_seq(), 3, "the hub numbered the same three");
}

// ---- the bus --------------------------------------------------------------------------

/// The threads of this process with this name (Linux: /proc/self/task/*/comm).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim_end() == name)
        .count()
}

/// In a multi-threaded runtime the link's event pump runs on a thread of its own (not on a
/// worker shared with the client writers); its events come out as from a task, and the
/// thread ends with the gateway's runtime (no thread left behind by a gateway that was
/// never shut down).
#[test]
fn in_a_multi_threaded_runtime_the_pump_has_a_thread_of_its_own() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let until = std::time::Instant::now() + T;
        while !done() {
            assert!(std::time::Instant::now() < until, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // a link name of its own: other tests of this file run gateways with `pbx1` meanwhile
    let (gw, events) = rt.block_on(async {
        gateway_named(
            "own",
            Arc::new(ScriptedLink::accepting()),
            ResyncRules::default(),
        )
    });
    let counter = Arc::new(Counter::default());
    gw.bus.subscribe(counter.clone());
    // (the thread names itself when it starts)
    wait_for("the pump's thread", &|| threads_named("pump own") == 1);
    rt.block_on(events.send(LinkEvent::Up { side: side_a() }.into()))
        .unwrap();
    wait_for("the link event published", &|| !counter.kinds().is_empty());
    assert_eq!(counter.kinds(), [EventKind::LinkUp]);
    // the gateway's tasks end with the runtime, the last reference goes, the thread ends
    // (the sender of its queue still held here)
    drop(gw);
    drop(rt);
    wait_for("the pump's thread ended with the gateway", &|| {
        threads_named("pump own") == 0
    });
    drop(events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_sees_every_event_in_one_order() {
    let (api, _events) = api_over(
        Arc::new(ScriptedLink::accepting()),
        ApiConfig {
            client_queue: 4096,
            ..api_cfg()
        },
    );
    let counter = Arc::new(Counter::default());
    api.gateway.bus.subscribe(counter.clone());
    let (_, mut lines, _) = api.hub.register(true).unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let gw = api.gateway.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    let reason = format!("{t}-{i}");
                    let side = side_a();
                    gw.emit(
                        "pbx1",
                        None,
                        EventKind::LinkDown,
                        Body::LinkDown { reason, side },
                    );
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let seen: Vec<String> = counter
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| match &e.body {
            Body::LinkDown { reason, .. } => reason.clone(),
            b => panic!("{b:?}"),
        })
        .collect();
    assert_eq!(seen.len(), 1000);
    let mut hub_order = Vec::new();
    for seq in 1..=1000u64 {
        let l: Value = serde_json::from_str(&lines.recv().await.unwrap()).unwrap();
        assert_eq!(l["seq"], seq);
        hub_order.push(l["reason"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, hub_order, "the hub and the counter saw one order");
    // each publisher's own events in its order
    for t in 0..4 {
        let mine: Vec<&String> = seen
            .iter()
            .filter(|r| r.starts_with(&format!("{t}-")))
            .collect();
        let want: Vec<String> = (0..250).map(|i| format!("{t}-{i}")).collect();
        assert_eq!(mine.len(), 250);
        assert!(mine.iter().zip(&want).all(|(a, b)| *a == b));
    }
}

#[tokio::test]
async fn a_queue_subscriber_is_told_what_it_lost() {
    let (gw, _events) = gateway(Arc::new(ScriptedLink::accepting()));
    let mut q = gw.bus.queue(2);
    let ev = |n: u32| Body::LinkDown {
        reason: n.to_string(),
        side: side_a(),
    };
    for n in 1..=5 {
        gw.emit("pbx1", None, EventKind::LinkDown, ev(n));
    }
    let reason = |d: Option<Delivery>| match d {
        Some(Delivery::Event(e)) => match &e.body {
            Body::LinkDown { reason, .. } => reason.clone(),
            b => panic!("{b:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(q.recv().await), "1");
    assert_eq!(reason(q.recv().await), "2");
    gw.emit("pbx1", None, EventKind::LinkDown, ev(6));
    assert_eq!(
        q.recv().await,
        Some(Delivery::Lost(3)),
        "3, 4 and 5, in their place"
    );
    assert_eq!(reason(q.recv().await), "6");
}

// ---- sessions over the in-memory transport, in virtual time ---------------------------

struct MemSource(mpsc::Receiver<Line>);

impl LineSource for MemSource {
    async fn next_line(&mut self) -> std::io::Result<Line> {
        Ok(self.0.recv().await.unwrap_or(Line::Eof))
    }
}

struct MemSink(Option<mpsc::Sender<String>>);

impl LineSink for MemSink {
    async fn send(&mut self, lines: &[Arc<str>]) -> std::io::Result<()> {
        let tx = self.0.as_ref().ok_or(std::io::ErrorKind::NotConnected)?;
        for l in lines {
            tx.send(l.to_string())
                .await
                .map_err(|_| std::io::ErrorKind::BrokenPipe)?;
        }
        Ok(())
    }
    async fn close(&mut self) {
        self.0 = None;
    }
}

/// The client's end of an in-memory connection.
struct MemClient {
    to: Option<mpsc::Sender<Line>>,
    from: mpsc::Receiver<String>,
}

fn mem_client(api: &Arc<Api>) -> MemClient {
    mem_client_reading(api, 1024)
}

/// A client whose transport holds at most `room` lines it has not read.
fn mem_client_reading(api: &Arc<Api>, room: usize) -> MemClient {
    let (to, rx) = mpsc::channel(64);
    let (tx, from) = mpsc::channel(room);
    api.spawn_session("mem".into(), MemSource(rx), MemSink(Some(tx)));
    MemClient { to: Some(to), from }
}

impl MemClient {
    async fn send(&mut self, v: Value) {
        let to = self.to.as_ref().expect("open");
        to.send(Line::Text(v.to_string())).await.unwrap();
    }
    async fn send_line(&mut self, l: Line) {
        self.to.as_ref().expect("open").send(l).await.unwrap();
    }
    /// The next line; `None` when the session closed the connection.
    async fn line(&mut self) -> Option<Value> {
        let l = timeout(T, self.from.recv())
            .await
            .expect("a line in time")?;
        Some(serde_json::from_str(&l).expect("json"))
    }
    /// Every line that comes until nothing has come for a second.
    async fn drain(&mut self) -> Vec<Value> {
        let mut v = Vec::new();
        while let Ok(Some(l)) = timeout(Duration::from_secs(1), self.from.recv()).await {
            v.push(serde_json::from_str(&l).expect("json"));
        }
        v
    }
    async fn must(&mut self) -> Value {
        self.line().await.expect("the connection is open")
    }
}

#[tokio::test(start_paused = true)]
async fn requests_apply_in_order_and_ping_answers_at_once() {
    let mut link = ScriptedLink::accepting();
    link.monitor_delay = Duration::from_millis(500);
    let link = Arc::new(link);
    let (api, _events) = api_over(link.clone(), api_cfg());
    let mut c = mem_client(&api);
    let hello = c.must().await;
    assert_eq!(
        (hello["type"].clone(), hello["protocol"].clone()),
        (json!("hello"), json!("ctigate/1"))
    );
    assert_eq!(
        hello["links"],
        json!([{"name": "pbx1", "state": "up", "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0}])
    );
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    c.send(json!({"id": 2, "op": "call.make", "device": "201", "to": "202"}))
        .await;
    c.send(json!({"id": 3, "op": "ping"})).await;
    c.send(json!({"id": 4, "op": "nope"})).await;
    let ids: Vec<Value> = [
        c.must().await,
        c.must().await,
        c.must().await,
        c.must().await,
    ]
    .iter()
    .map(|r| r["id"].clone())
    .collect();
    assert_eq!(ids, [json!(3), json!(4), json!(1), json!(2)]);
    // the make went to the link only once the monitor (its snapshot and agent query) had
    // taken effect
    assert_eq!(
        link.log(),
        [
            "monitor 201",
            "request snapshotDevice",
            "request getAgentState",
            "request makeCall"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn every_request_is_answered_within_the_deadline() {
    let link = Arc::new(ScriptedLink::new(|a| match a.operation().name() {
        "getAgentState" => None, // the switch never answers
        _ => Some(Ok(Ok(None))),
    }));
    let (api, _events) = api_over(link.clone(), api_cfg());
    let mut c = mem_client(&api);
    c.must().await;
    let t0 = Instant::now();
    c.send(json!({"id": 1, "op": "agent.state", "device": "201"}))
        .await;
    c.send(json!({"id": 2, "op": "agent.state", "device": "201"}))
        .await;
    for id in [1, 2] {
        let r = c.must().await;
        assert_eq!(r["id"], id);
        assert_eq!(
            (r["error"]["kind"].as_str(), r["error"]["code"].as_str()),
            (Some("link"), Some("timeout")),
            "{r}"
        );
    }
    // the deadline counts from receipt: the second waited out its time behind the first
    // and was not sent
    assert_eq!(t0.elapsed(), DEADLINE);
    assert_eq!(link.log(), ["request getAgentState"]);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_long_lines_and_the_auth_hook() {
    struct NoCalls;
    impl Auth for NoCalls {
        fn authorize(&self, _: &SessionInfo, op: &Op) -> Result<(), ApiError> {
            if op.name().starts_with("call.") {
                return Err(ApiError::new("auth", "forbidden", "no calls for you"));
            }
            Ok(())
        }
    }
    let (gw, _events) = gateway(Arc::new(ScriptedLink::accepting()));
    let cfg = ApiConfig {
        requests_per_s: 2,
        ..ApiConfig::default()
    };
    let api = Api::with_auth(gw, cfg, DEADLINE, Arc::new(NoCalls));
    let mut c = mem_client(&api);
    c.must().await;
    c.send_line(Line::TooLong).await;
    let r = c.must().await;
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (Value::Null, json!("line_too_long"))
    );
    c.send(json!({"id": 1, "op": "call.hold", "device": "201"}))
        .await;
    let r = c.must().await;
    assert_eq!(r["error"]["kind"], "auth", "{r}");
    for id in 2..=4 {
        c.send(json!({"id": id, "op": "ping"})).await;
    }
    let oks: Vec<bool> = [c.must().await, c.must().await, c.must().await]
        .iter()
        .map(|r| r["ok"] == true)
        .collect();
    assert_eq!(oks, [true, true, false]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.send(json!({"id": 5, "op": "ping"})).await;
    assert_eq!(c.must().await["ok"], true);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_releases_its_monitors() {
    let link = Arc::new(ScriptedLink::accepting());
    let (api, _events) = api_over(link.clone(), api_cfg());
    let mut c = mem_client(&api);
    c.must().await;
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    assert_eq!(c.must().await["ok"], true);
    c.to = None; // the client hangs up
    assert_eq!(c.line().await, None, "the session closes");
    let end = Instant::now() + T;
    while !link.log().contains(&"unmonitor 201".to_string()) {
        assert!(Instant::now() < end, "{:?}", link.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(api.hub.clients(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_every_client_then_says_so_and_releases_the_link() {
    let link = Arc::new(ScriptedLink::accepting());
    let (api, _events) = api_over(link.clone(), api_cfg());
    let mut a = mem_client(&api);
    let mut b = mem_client(&api);
    a.must().await;
    b.must().await;
    a.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    assert_eq!(a.must().await["ok"], true);
    for _ in 0..3 {
        api.gateway.emit(
            "pbx1",
            Some("201"),
            EventKind::DeviceOutOfService,
            Body::Empty,
        );
    }
    api.shutdown().await;
    let mut seqs = Vec::new();
    loop {
        let l = a.must().await;
        seqs.push(l["seq"].as_u64().unwrap());
        if l["event"] == "shutdown" {
            break;
        }
        assert_eq!(l["event"], "device.out_of_service");
    }
    assert_eq!(
        seqs,
        [1, 2, 3, 4],
        "the queue, then shutdown with the next seq"
    );
    assert_eq!(a.line().await, None, "closed after the shutdown line");
    let l = b.must().await;
    assert_eq!(
        (l["event"].clone(), l["seq"].clone()),
        (json!("shutdown"), json!(4))
    );
    assert_eq!(b.line().await, None);
    assert!(
        link.log().ends_with(&["shutdown".to_string()]),
        "{:?}",
        link.log()
    );
    // published after the shutdown: nobody gets it, the seq stays
    api.gateway
        .emit("pbx1", None, EventKind::LinkUp, Body::Empty);
    assert_eq!(api.hub.last_seq(), 4);
}

#[tokio::test(start_paused = true)]
async fn requests_sent_before_the_end_of_input_are_still_answered() {
    let mut link = ScriptedLink::accepting();
    link.monitor_delay = Duration::from_millis(500);
    let link = Arc::new(link);
    let (api, _events) = api_over(link.clone(), api_cfg());
    let mut c = mem_client(&api);
    c.must().await;
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    c.send(json!({"id": 2, "op": "call.make", "device": "201", "to": "202"}))
        .await;
    c.to = None; // the client closes its sending side and keeps reading
    let (a, b) = (c.must().await, c.must().await);
    assert_eq!((a["id"].clone(), a["ok"].clone()), (json!(1), json!(true)));
    assert_eq!((b["id"].clone(), b["ok"].clone()), (json!(2), json!(true)));
    assert_eq!(c.line().await, None);
    assert_eq!(
        link.log(),
        [
            "monitor 201",
            "request snapshotDevice",
            "request getAgentState",
            "request makeCall",
            "unmonitor 201"
        ]
    );
}

/// An event for device 201 of pbx1 (`device.out_of_service`).
fn oos(api: &Api) {
    api.gateway.emit(
        "pbx1",
        Some("201"),
        EventKind::DeviceOutOfService,
        Body::Empty,
    )
}

/// A transport that reports each write: when (virtual time) and its lines.
struct BatchSink(mpsc::UnboundedSender<(Instant, Vec<Value>)>);

impl LineSink for BatchSink {
    async fn send(&mut self, lines: &[Arc<str>]) -> std::io::Result<()> {
        let v = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        self.0
            .send((Instant::now(), v))
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
    async fn close(&mut self) {}
}

/// A session over [`BatchSink`]: its requests in, its writes out.
struct BatchClient {
    to: mpsc::Sender<Line>,
    writes: mpsc::UnboundedReceiver<(Instant, Vec<Value>)>,
}

impl BatchClient {
    fn start(api: &Arc<Api>, name: &str) -> BatchClient {
        let (to, rx) = mpsc::channel(64);
        let (tx, writes) = mpsc::unbounded_channel();
        api.spawn_session(name.into(), MemSource(rx), BatchSink(tx));
        BatchClient { to, writes }
    }

    /// The next write, if there was one: when and what it carried ([`kinds`]).
    fn write(&mut self) -> Result<(Instant, Vec<String>), mpsc::error::TryRecvError> {
        self.writes.try_recv().map(|(at, b)| (at, kinds(&b)))
    }

    async fn send(&self, v: Value) {
        self.to.send(Line::Text(v.to_string())).await.unwrap()
    }
}

/// Nothing written until `hold` after `since`, then one write of `events` exactly then.
async fn held_then_written(c: &mut BatchClient, since: Instant, hold: Duration, events: &[&str]) {
    settle().await;
    assert!(c.write().is_err(), "held back");
    tokio::time::sleep_until(since + hold - Duration::from_millis(1)).await;
    settle().await;
    assert!(
        c.write().is_err(),
        "still held back {:?} after the last write",
        hold - Duration::from_millis(1)
    );
    tokio::time::sleep_until(since + hold + Duration::from_millis(1)).await;
    settle().await;
    let (t, b) = c
        .write()
        .unwrap_or_else(|_| panic!("written {hold:?} after the last write"));
    assert_eq!(b, events);
    assert_eq!(t - since, hold);
}

/// Lets the session and the gateway's tasks run (virtual time stands still).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// What each write of a batch carried: `event:<name>` or `response:<id>`.
fn kinds(batch: &[Value]) -> Vec<String> {
    batch
        .iter()
        .map(|l| match l["type"].as_str() {
            Some("event") => format!("event:{}", l["seq"]),
            Some("response") => format!("response:{}", l["id"]),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn events_to_a_client_written_to_lately_wait_for_write_coalesce_ms_together() {
    let (api, _events) = api_over(
        Arc::new(ScriptedLink::accepting()),
        ApiConfig {
            client_queue: 8,
            write_coalesce_ms: 50,
            ..api_cfg()
        },
    );
    let mut c = BatchClient::start(&api, "batch");
    settle().await;
    let (_, hello) = c.write().expect("hello");
    assert_eq!(hello, [r#"Some("hello")"#]);
    // a response is never held back
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    settle().await;
    let (t_answer, b) = c.write().expect("the answer at once");
    assert_eq!(b, ["response:1"]);
    // three events just after a write: held until 50 ms after it, then one write
    for _ in 0..3 {
        oos(&api);
    }
    held_then_written(
        &mut c,
        t_answer,
        Duration::from_millis(50),
        &["event:1", "event:2", "event:3"],
    )
    .await;
    // after a quiet while, an event goes at once
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quiet = Instant::now();
    oos(&api);
    settle().await;
    let (t, b) = c.write().expect("at once");
    assert_eq!((t, b), (quiet, vec!["event:4".to_string()]));
    // the next one waits, until a request's answer takes it along
    oos(&api);
    settle().await;
    assert!(c.write().is_err(), "held back");
    tokio::time::sleep(Duration::from_millis(10)).await;
    c.send(json!({"id": 2, "op": "ping"})).await;
    settle().await;
    let (t2, b) = c.write().expect("the answer, with the held event");
    assert_eq!(b, ["event:5", "response:2"]);
    assert_eq!(t2 - quiet, Duration::from_millis(10));
    // events filling half of client_queue (8) go at once
    for _ in 0..5 {
        oos(&api);
    }
    settle().await;
    let (t, b) = c.write().expect("half the queue: written at once");
    assert_eq!(t, t2);
    assert_eq!(b, ["event:6", "event:7", "event:8", "event:9", "event:10"]);
    assert_eq!(api.hub.dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn while_the_gateway_is_behind_events_to_a_busy_client_are_batched() {
    let link = Arc::new(ScriptedLink::accepting());
    let (api, events) = api_over(
        link.clone(),
        ApiConfig {
            client_queue: 8,
            write_coalesce_behind_ms: 40,
            behind_hold_s: 1,
            ..api_cfg()
        },
    );
    let mut c = BatchClient::start(&api, "behind");
    settle().await;
    assert_eq!(c.write().expect("hello").1, [r#"Some("hello")"#]);
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    settle().await;
    assert_eq!(c.write().expect("the answer").1, ["response:1"]);
    // keeping up: every event at once, one write each
    let t0 = Instant::now();
    for seq in 1..=2 {
        oos(&api);
        settle().await;
        assert_eq!(
            c.write().expect("at once"),
            (t0, vec![format!("event:{seq}")])
        );
    }
    assert!(!api.gateway.is_behind());
    // an event that waited 10 ms between the PBX socket and the event pump (the rule: 5)
    let waited = std::time::Instant::now() - Duration::from_millis(10);
    events
        .send(PumpIn::Link(LinkEvent::Up { side: side_a() }, waited))
        .await
        .unwrap();
    settle().await;
    assert!(api.gateway.is_behind());
    let slot = api.gateway.link("pbx1").unwrap();
    assert!(api.gateway.link_states()[0].behind);
    assert_eq!(slot.behind_periods.load(Ordering::Relaxed), 1);
    // its link.up (seq 3) and the next event wait for 40 ms after the last write, together
    oos(&api);
    held_then_written(
        &mut c,
        t0,
        Duration::from_millis(40),
        &["event:3", "event:4"],
    )
    .await;
    // a client that gets an event now and then still gets it at once
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quiet = Instant::now();
    oos(&api);
    settle().await;
    assert_eq!(
        c.write().expect("at once"),
        (quiet, vec!["event:5".to_string()])
    );
    assert!(
        api.gateway.is_behind(),
        "no second yet without a late event"
    );
    // a second without an event that waited 5 ms: caught up, events at once again
    tokio::time::sleep(Duration::from_millis(1200)).await;
    settle().await;
    assert!(!api.gateway.is_behind());
    assert!(!api.gateway.link_states()[0].behind);
    let t1 = Instant::now();
    for seq in 6..=7 {
        oos(&api);
        settle().await;
        assert_eq!(
            c.write().expect("at once"),
            (t1, vec![format!("event:{seq}")])
        );
    }
    // behind again: counted
    events
        .send(PumpIn::Link(
            LinkEvent::Up { side: side_a() },
            std::time::Instant::now() - Duration::from_millis(6),
        ))
        .await
        .unwrap();
    settle().await;
    assert!(api.gateway.is_behind());
    assert_eq!(slot.behind_periods.load(Ordering::Relaxed), 2);
    // caught up again; then events handed over at once, but whose octets waited 8 ms in
    // the link's read-ahead before they were decoded: behind (the wait counts from the
    // PBX socket)
    tokio::time::sleep(Duration::from_millis(1200)).await;
    settle().await;
    assert!(!api.gateway.is_behind());
    link.read_waited_us.store(8_000, Ordering::Relaxed);
    events
        .send(PumpIn::Link(
            LinkEvent::Up { side: side_a() },
            std::time::Instant::now(),
        ))
        .await
        .unwrap();
    settle().await;
    assert!(api.gateway.is_behind());
    assert_eq!(slot.behind_periods.load(Ordering::Relaxed), 3);
    assert_eq!(api.hub.dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_is_cut_with_lagged_and_resumes_with_after() {
    let (api, _events) = api_over(
        Arc::new(ScriptedLink::accepting()),
        ApiConfig {
            client_queue: 4,
            // the cut's arithmetic below: each event written as it comes
            write_coalesce_ms: 0,
            ..api_cfg()
        },
    );
    let mut c = mem_client_reading(&api, 1);
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    assert_eq!(c.must().await["type"], "hello");
    assert_eq!(c.must().await["id"], 1);
    let mut fast = mem_client(&api);
    fast.must().await;
    fast.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    assert_eq!(fast.must().await["id"], 1);
    // c reads nothing: one line fits its transport, one the writer holds, four the queue;
    // the next one finds the queue full and cuts c
    for _ in 0..8 {
        oos(&api);
        tokio::task::yield_now().await;
    }
    // the fast client got all eight, in order
    let mut seqs = Vec::new();
    for _ in 0..8 {
        seqs.push(fast.must().await["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    // c: every event before the cut, then `lagged` naming the limit, then the end
    let mut lines = Vec::new();
    while let Some(l) = c.line().await {
        lines.push(l);
    }
    let last = lines.pop().expect("lines");
    assert_eq!(
        (last["event"].clone(), last["limit"].clone()),
        (json!("lagged"), json!("api.client_queue")),
        "{last}"
    );
    let from = last["seq"].as_u64().unwrap();
    let got: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, (1..from).collect::<Vec<_>>(), "all before the cut");
    assert_eq!(from, 7, "1 in the transport, 1 being written, 4 queued");
    assert_eq!(
        last["message"],
        "you fell behind: 4 events (api.client_queue) waited for you when event 7 came; it and every later one were not sent, and the connection closes: reconnect and re-monitor with `after` = 6"
    );
    assert_eq!(api.hub.dropped(), 1);
    // the fast client is still served
    oos(&api);
    assert_eq!(fast.must().await["seq"], 9);
    // back with `after`: the missed ones, 7 to 9
    let mut c = mem_client(&api);
    c.must().await;
    c.send(json!({"id": 2, "op": "monitor.start", "device": "201", "after": from - 1}))
        .await;
    let lines = c.drain().await;
    let r = lines
        .iter()
        .find(|l| l["type"] == "response")
        .expect("a response");
    assert_eq!(
        (r["result"]["replayed"].clone(), r["result"]["gap"].clone()),
        (json!(3), json!(false)),
        "{r}"
    );
    let replayed: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "event")
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, [7, 8, 9]);
}

/// The next line within `wait` (virtual time); `None` when the session closed.
async fn line_within(c: &mut MemClient, wait: Duration) -> Option<Value> {
    let l = timeout(wait, c.from.recv())
        .await
        .expect("a line in time")?;
    Some(serde_json::from_str(&l).expect("json"))
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_pinged_then_disconnected() {
    let (api, _events) = api_over(
        Arc::new(ScriptedLink::accepting()),
        ApiConfig {
            idle_ping_s: 30,
            idle_timeout_s: 45,
            ..api_cfg()
        },
    );
    let t0 = Instant::now();
    let mut a = mem_client(&api);
    let mut b = mem_client(&api);
    a.must().await;
    b.must().await;
    let ping = json!({"type": "ping", "message": "are you there? send any request, e.g. {\"id\":1,\"op\":\"ping\"}, within 15 s or the connection closes (api.idle_timeout_s)"});
    let minute = Duration::from_secs(60);
    // 30 s of silence: both are pinged
    assert_eq!(line_within(&mut a, minute).await, Some(ping.clone()));
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
    assert_eq!(line_within(&mut b, minute).await, Some(ping.clone()));
    // a answers, b does not: b is disconnected at 45 s with the limit named
    a.send(json!({"id": 1, "op": "ping"})).await;
    assert_eq!(a.must().await["id"], 1);
    assert_eq!(
        line_within(&mut b, minute).await,
        Some(
            json!({"type": "response", "id": null, "ok": false, "error": {"kind": "request",
            "code": "idle_timeout",
            "message": "nothing from you for 45 s (api.idle_timeout_s): disconnected; answer a `ping` line with any request, e.g. {\"id\":1,\"op\":\"ping\"}"}})
        )
    );
    assert_eq!(t0.elapsed(), Duration::from_secs(45));
    assert_eq!(line_within(&mut b, minute).await, None, "closed");
    // a's silence counts from its answer: pinged at 60 s, disconnected at 75 s
    assert_eq!(line_within(&mut a, minute).await, Some(ping));
    assert_eq!(t0.elapsed(), Duration::from_secs(60));
    assert_eq!(
        line_within(&mut a, minute).await.unwrap()["error"]["code"],
        "idle_timeout"
    );
    assert_eq!(t0.elapsed(), Duration::from_secs(75));
    assert_eq!(line_within(&mut a, minute).await, None, "closed");
    assert_eq!(api.hub.clients(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_write_slower_than_write_timeout_s_ends_the_session() {
    let link = Arc::new(ScriptedLink::accepting());
    let (api, _events) = api_over(
        link.clone(),
        ApiConfig {
            write_timeout_s: 5,
            ..api_cfg()
        },
    );
    // the transport holds one line: hello; the response's write waits for the client
    let mut c = mem_client_reading(&api, 1);
    let t0 = Instant::now();
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    while api.hub.clients() == 0 {
        tokio::task::yield_now().await; // the session starts
    }
    assert_eq!(t0.elapsed(), Duration::ZERO);
    while api.hub.clients() != 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = t0.elapsed();
    assert!(
        t >= Duration::from_secs(5) && t < Duration::from_millis(5100),
        "{t:?}"
    );
    assert!(
        link.log().contains(&"unmonitor 201".to_string()),
        "released"
    );
    assert_eq!(c.must().await["type"], "hello");
    assert_eq!(c.line().await, None, "the response was never written");
}

#[tokio::test(start_paused = true)]
async fn a_monitor_acquire_given_up_half_way_is_still_counted_and_given_back() {
    let mut link = ScriptedLink::accepting();
    link.monitor_delay = Duration::from_secs(2);
    let link = Arc::new(link);
    let (api, _events) = api_over(link.clone(), api_cfg());
    let gw = &api.gateway;
    let slot = gw.links().get("pbx1").unwrap().clone();
    // the caller gives up while the switch is starting the monitor
    let cut = timeout(Duration::from_secs(1), gw.monitor_acquire(&slot, "201", 7)).await;
    assert!(cut.is_err(), "given up");
    // the start runs to its end and is recorded for its holder (a release waits for it)
    assert!(gw.monitor_release(&slot, "201", 7).await, "7 held 201");
    assert_eq!(link.log(), ["monitor 201", "unmonitor 201"]);
    assert_eq!(slot.monitor_refs("201").await, 0);
    // per holder: twice is once; the end of a holder gives back everything it held
    for d in ["202", "203"] {
        gw.monitor_acquire(&slot, d, 8).await.unwrap().unwrap();
    }
    assert_eq!(
        gw.monitor_acquire(&slot, "202", 8).await.unwrap().unwrap(),
        ctigate::gateway::Acquired::Already
    );
    gw.monitor_acquire(&slot, "202", 9).await.unwrap().unwrap();
    assert_eq!(slot.monitor_refs("202").await, 2);
    assert_eq!(gw.monitor_release_all(&slot, 8).await, 2);
    assert!(!gw.monitor_release(&slot, "203", 8).await, "nothing left");
    assert_eq!(
        slot.monitor_holders().await,
        [("202".to_string(), 1)],
        "9 still holds 202"
    );
    assert_eq!(
        link.log()[2..],
        ["monitor 202", "monitor 203", "unmonitor 203"]
    );
}

/// A snapshot of 201 with one alerting call (callID 0001).
fn snapshot_with_call() -> Answer {
    use ctigate::csta::ops::SnapshotDeviceResponseInfo;
    use ctigate::csta::types::{ConnectionId, LocalConnectionState};
    Ok(Ok(Some(OperationResult::SnapshotDevice(
        SnapshotDeviceResult::new(SnapshotData::Data(vec![SnapshotDeviceResponseInfo::new(
            ConnectionId::dialing([0, 1], "201"),
            SnapshotDeviceResponseInfo::compound(&[LocalConnectionState::Alerting]),
        )])),
    ))))
}

#[tokio::test(start_paused = true)]
async fn a_failed_snapshot_leaves_the_device_unconfirmed_and_releases_nothing() {
    // SnapshotDevice: no answer in time, then the call, then a refusal, then the call
    let answers = Arc::new(Mutex::new(VecDeque::from([
        Err(LinkError::Timeout),
        snapshot_with_call(),
        Ok(Err(CstaError::Failure(
            UniversalFailure::from_names("systemResourceAvailability", "resourceBusy").unwrap(),
        ))),
    ])));
    let script = answers.clone();
    let link = Arc::new(ScriptedLink::new(move |a| {
        Some(match a {
            Argument::SnapshotDevice(_) => script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(snapshot_with_call),
            _ => Ok(Ok(None)),
        })
    }));
    let (api, events) = api_over(link.clone(), api_cfg());
    let mut c = mem_client(&api);
    c.must().await;
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    // (the device.unconfirmed event came before the subscription: the answer says it)
    let r = c.must().await;
    assert_eq!(
        (&r["ok"], &r["result"]["calls"], &r["result"]["unconfirmed"]),
        (&json!(true), &json!([]), &json!(true))
    );
    // the retry a second later: the call, then the confirmation
    let o = c.must().await;
    assert_eq!(
        (&o["event"], &o["cause"]),
        (&json!("call.offering"), &json!("resync"))
    );
    let id = o["call"]["id"].clone();
    assert_eq!(c.must().await["event"], "device.confirmed");
    let slot = &api.gateway.links()["pbx1"];
    assert_eq!(slot.unconfirmed(), Vec::<String>::new());
    assert_eq!(slot.resync_failures(), 1);

    // the link monitored the device again by itself (an outage): the snapshot is refused,
    // so the call is kept, unconfirmed, until a snapshot says otherwise
    events
        .send(PumpIn::from(LinkEvent::Monitored {
            device: "201".into(),
            again: true,
        }))
        .await
        .unwrap();
    let e = c.must().await;
    assert_eq!(
        (&e["event"], &e["device"], &e["reason"], &e["retry_in_ms"]),
        (
            &json!("device.unconfirmed"),
            &json!("201"),
            &json!("systemResourceAvailability/resourceBusy"),
            &json!(1000)
        )
    );
    assert_eq!(slot.unconfirmed(), ["201"]);
    assert_eq!(slot.tracker().calls("201").len(), 1, "nothing released");
    assert_eq!(c.must().await["event"], "device.confirmed");
    assert_eq!(slot.resync_failures(), 2);
    assert_eq!(slot.tracker().calls("201")[0].id, id.as_str().unwrap());
    assert!(answers.lock().unwrap().is_empty());
    assert_eq!(slot.tracker().resyncs_in_progress(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_device_nobody_watches_any_more_is_not_retried() {
    // every snapshot fails: no answer in time
    let link = Arc::new(ScriptedLink::new(|a| {
        Some(match a {
            Argument::SnapshotDevice(_) => Err(LinkError::Timeout),
            _ => Ok(Ok(None)),
        })
    }));
    let (api, _events) = api_over(link.clone(), api_cfg());
    let mut c = mem_client(&api);
    c.must().await;
    c.send(json!({"id": 1, "op": "monitor.start", "device": "201"}))
        .await;
    assert_eq!(c.must().await["result"]["unconfirmed"], true);
    let slot = api.gateway.links()["pbx1"].clone();
    assert_eq!(slot.unconfirmed(), ["201"]);
    // retried: 1 s, then 2 s later
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(snapshots(&link), 3, "{:?}", link.log());
    assert_eq!(slot.resync_failures(), 3);
    c.send(json!({"id": 2, "op": "monitor.stop", "device": "201"}))
        .await;
    assert_eq!(c.must().await["ok"], true);
    // the next retry finds nobody watching: no more snapshots, the device forgotten
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(snapshots(&link), 3, "{:?}", link.log());
    assert_eq!(slot.unconfirmed(), Vec::<String>::new());
}

/// The SnapshotDevice requests `l` got so far.
fn snapshots(l: &ScriptedLink) -> usize {
    l.log()
        .iter()
        .filter(|x| *x == "request snapshotDevice")
        .count()
}

/// A gateway over a link answering every request after 100 ms, with this request window.
fn slow_link_gateway(window: usize) -> (Arc<ScriptedLink>, Arc<Gateway>, mpsc::Sender<PumpIn>) {
    let mut link = ScriptedLink::accepting();
    link.request_delay = Duration::from_millis(100);
    let link = Arc::new(link);
    let rules = ResyncRules {
        window,
        ..ResyncRules::default()
    };
    let (gw, events) = gateway_with(link.clone(), rules);
    (link, gw, events)
}

/// A reload that changes `max_outstanding` changes how many resync snapshots run at once
/// (half the window): narrower as the running ones end, wider at once.
#[tokio::test(start_paused = true)]
async fn a_reloaded_window_paces_the_resync_snapshots() {
    let (link, gw, events) = slow_link_gateway(4);
    let slot = gw.links()["pbx1"].clone();
    for d in 0..12 {
        events
            .send(PumpIn::from(LinkEvent::Resync {
                device: format!("2{d:02}"),
                reason: "events were shed".into(),
            }))
            .await
            .unwrap();
    }
    settle().await;
    assert_eq!(snapshots(&link), 2, "half the window of 4");
    assert_eq!(slot.window(), 4);
    // narrower: the two running end at 100 ms, one turn is taken back
    slot.set_window(2);
    assert_eq!(slot.window(), 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        snapshots(&link),
        3,
        "one at a time from the first two's end on"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(snapshots(&link), 4);
    // wider: four at once, at once
    slot.set_window(8);
    settle().await;
    assert_eq!(snapshots(&link), 7, "the running one and three more");
    // the running one ends at 300 ms, the three at 350: four more
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(snapshots(&link), 11);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(snapshots(&link), 12);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(slot.resyncs(), 12);
    assert_eq!(slot.resyncs_waiting(), 0);
}

/// A link that sheds events asks again for the resync of every device concerned after
/// each catch-up, however many are still waiting for their turn (at 130 000 events/s the
/// gateway once held hundreds of thousands of them, a task each: 2 GB). A resync asked
/// while one of the device waits is that one: at most one waits per device, and nothing
/// asked is lost (the waiting one's snapshot is taken after the request).
#[tokio::test(start_paused = true)]
async fn resyncs_asked_again_while_one_waits_for_its_turn_are_that_one() {
    // one snapshot at a time (half the window)
    let (link, gw, events) = slow_link_gateway(2);
    let slot = gw.links()["pbx1"].clone();
    let devices = ["201", "202", "203"];
    let shed = |d: &str| {
        PumpIn::from(LinkEvent::Resync {
            device: d.into(),
            reason: "events were shed: the gateway fell behind the switch (link.event_queue)"
                .into(),
        })
    };
    for _ in 0..100 {
        for d in devices {
            events.send(shed(d)).await.unwrap();
        }
        tokio::task::yield_now().await;
        assert!(
            slot.resyncs_waiting() <= devices.len(),
            "{} resyncs wait",
            slot.resyncs_waiting()
        );
    }
    // the waiting ones in `status` and /metrics
    let waiting = slot.resyncs_waiting();
    assert!(waiting > 0, "the window holds one: the others wait");
    let api = Api::new(gw.clone(), api_cfg(), DEADLINE);
    let mut c = mem_client(&api);
    assert_eq!(c.must().await["type"], "hello");
    c.send(json!({"id": 1, "op": "status"})).await;
    let r = c.must().await;
    assert_eq!(r["result"]["resync"][0]["waiting"], waiting, "{r}");
    let m = ctigate::metrics::gather(&api);
    assert_eq!(m.links[0].resyncs_waiting, waiting as u64);
    // every device resynchronised, each at most twice (the one running when asked again,
    // and the one that waited)
    let t = Instant::now();
    while slot.resyncs_waiting() > 0 || slot.resyncs() < snapshots(&link) as u64 {
        assert!(t.elapsed() < T, "the resyncs did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let n = snapshots(&link);
    assert!(
        (devices.len()..=2 * devices.len()).contains(&n),
        "{n} snapshots for 300 requests of 3 devices"
    );
    assert_eq!(slot.resyncs(), n as u64);
    assert_eq!(slot.resync_failures(), 0);
    // asked again later: resynchronised again
    events.send(shed("201")).await.unwrap();
    let t = Instant::now();
    while slot.resyncs() < n as u64 + 1 {
        assert!(t.elapsed() < T, "the resync did not run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(snapshots(&link), n + 1);
    assert_eq!(slot.resyncs_waiting(), 0);
    assert_eq!(slot.tracker().resyncs_in_progress(), 0);
}
