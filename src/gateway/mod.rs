//! The gateway layer: owns the PBX links and their call trackers, and publishes the
//! normalized model's events, typed, on the [`bus`]. It knows no clients and no JSON.
//!
//! One direction of flow: link → gateway (tracker, bus) → api (hub, session) → transport.
//!
//! - [`link`]: [`PbxLink`], the link as the gateway uses it (implemented by
//!   [`crate::link::Link`] and by test doubles);
//! - [`bus`]: [`Event`] and the subscriber API (synchronous in-order hooks, or a bounded
//!   queue with counted losses);
//! - here: [`Gateway`] (links, trackers, shared monitor reference counts, snapshots and
//!   resync, the event pumps) and its shutdown.

pub mod bus;
pub mod link;

pub use bus::{Body, Bus, BusQueue, Delivery, Event, Subscriber};
pub use link::{BoxFuture, MonitorAnswer, PbxLink};

use crate::config::{Config, LinkSection};
use crate::link::{Answer, CstaError, Link, LinkConfig, LinkCounters, LinkError, LinkEvent, Side};
use crate::model::{
    AgentView, EventKind, InternalRule, Out, SnapCall, SnapEntry, Tracker, TrackerConfig,
};
use ctigate_csta::events::Event as CstaEvent;
use ctigate_csta::ops::{
    Argument, OperationResult, SnapshotCallArgument, SnapshotDeviceArgument, SnapshotState,
};
use ctigate_csta::types::{ConnectionId, DeviceId, LocalConnectionState, UniversalFailure};
use ctigate_csta_model::reject::Problem;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Items waiting for one link's event pump unless configured (`[[link]] event_queue`).
pub const EVENT_QUEUE: usize = 16384;
/// Items the event pump takes from its queue at once.
const PUMP_BATCH: usize = 256;
/// How long a link may take to release on shutdown beyond its own bound.
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// What the switch answers, as the link gives it: the link could not carry the request
/// (outer), or the switch refused it (inner).
pub type Reply<T> = Result<Result<T, CstaError>, LinkError>;

/// Who holds a monitor: one count per holder and device (the API's client id).
pub type Holder = u64;

/// What [`Gateway::monitor_acquire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The holder's count was taken now (the PBX monitor started if it was the first).
    New,
    /// The holder held it already: nothing changed.
    Already,
}

/// A device's calls as SnapshotDevice gives them: (connection, state) per call (`None`:
/// the answer does not say).
pub type SnapshotList = Vec<(ConnectionId, Option<LocalConnectionState>)>;
/// The first retry delay of a failed snapshot (doubling up to `resync_retry_max_s`).
const RESYNC_RETRY_MIN: Duration = Duration::from_secs(1);

/// How a link's devices are resynchronised (`[[link]]` keys of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncRules {
    /// SnapshotCall requests per snapshot for calls the gateway did not know (their
    /// parties); the calls beyond get none, with a warning naming the key.
    pub snapshot_calls: usize,
    /// The longest wait between the retries of a failed snapshot.
    pub retry_max: Duration,
}

impl Default for ResyncRules {
    fn default() -> Self {
        ResyncRules {
            snapshot_calls: 64,
            retry_max: Duration::from_secs(30),
        }
    }
}

/// One PBX link with its tracker and monitor reference counts.
pub struct LinkSlot {
    pub name: String,
    pub link: Arc<dyn PbxLink>,
    tracker: Mutex<Tracker>,
    /// Who holds each device's monitor (one PBX monitor however many): the holders, so
    /// that a count is taken and recorded in one step, and a holder's counts can be given
    /// back all at once ([`Gateway::monitor_release_all`]). Never an empty set.
    refs: Arc<tokio::sync::Mutex<BTreeMap<String, BTreeSet<Holder>>>>,
    /// Devices monitored from the configuration (never stopped).
    pub pinned: BTreeSet<String>,
    /// The last `Down` reason since the link was last up; `None` before any attempt
    /// ended (connecting) or while up.
    down: Mutex<Option<String>>,
    /// The side of the link's last `Up` (associated with) or `Down` (failed); `None` before
    /// any.
    side: Mutex<Option<Side>>,
    /// The link's event pump, for the agent states of request results (agent.login,
    /// agent.state, ...): queued after the PBX events that came before the result and
    /// before those after it, so that no event reports a state older than one published.
    pump: mpsc::Sender<PumpIn>,
    /// Devices whose calls are unconfirmed: their last snapshot failed (a retry is
    /// scheduled while the device is here).
    stale: Mutex<BTreeSet<String>>,
    /// Snapshots that failed (answer refused, unreadable, late, link down).
    resync_failures: AtomicU64,
    /// Resyncs finished (applied or failed).
    resyncs: AtomicU64,
    /// The switch said it does not serve SnapshotCall.
    no_snapshot_call: std::sync::atomic::AtomicBool,
    resync: ResyncRules,
}

/// What a link's event pump publishes, in the order it was queued.
// A `LinkEvent` is as large as an event report, as on the link's own channel.
#[allow(clippy::large_enum_variant)]
pub enum PumpIn {
    /// A link event, and when the link handed it over (just after its frame was read and
    /// decoded; for the event latency).
    Link(LinkEvent, Instant),
    /// An agent state from a request's result ([`Tracker::set_agent`]); `done` gets the
    /// state as completed from what is known ([`Tracker::fill_agent`]).
    Agent {
        device: String,
        agent: AgentView,
        done: tokio::sync::oneshot::Sender<AgentView>,
    },
    /// A snapshot to apply ([`Tracker::apply_resync`]); `done` when it is published.
    Resync {
        mark: u64,
        device: String,
        entries: Vec<SnapEntry>,
        done: tokio::sync::oneshot::Sender<()>,
    },
}

impl From<LinkEvent> for PumpIn {
    fn from(e: LinkEvent) -> PumpIn {
        PumpIn::Link(e, Instant::now())
    }
}

impl LinkSlot {
    /// Clients holding the PBX monitor of `device` (0 when none; configured devices are
    /// held by the configuration besides).
    pub async fn monitor_refs(&self, device: &str) -> usize {
        self.refs.lock().await.get(device).map_or(0, BTreeSet::len)
    }

    /// Every device some client holds, with how many hold it (for `status`).
    pub async fn monitor_holders(&self) -> Vec<(String, usize)> {
        let refs = self.refs.lock().await;
        refs.iter().map(|(d, h)| (d.clone(), h.len())).collect()
    }

    /// The link's call tracker.
    pub fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Devices whose calls are unconfirmed (their last snapshot failed; retried).
    pub fn unconfirmed(&self) -> Vec<String> {
        self.stale
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Snapshots that failed since the start.
    pub fn resync_failures(&self) -> u64 {
        self.resync_failures.load(Ordering::Relaxed)
    }

    /// Resyncs finished since the start (applied, or failed: see `resync_failures`).
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Acquire)
    }

    /// Queue `make(done)` on the link's event pump (in order with the PBX's events) and
    /// wait until the pump has applied it; `None` when the pump has stopped.
    async fn through_pump<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> PumpIn,
    ) -> Option<T> {
        let (done, applied) = tokio::sync::oneshot::channel();
        self.pump.send(make(done)).await.ok()?;
        applied.await.ok()
    }

    fn is_stale(&self, device: &str) -> bool {
        self.stale
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(device)
    }

    fn set_stale(&self, device: &str, stale: bool) -> bool {
        let mut s = self.stale.lock().unwrap_or_else(|p| p.into_inner());
        if stale {
            s.insert(device.to_string())
        } else {
            s.remove(device)
        }
    }

    /// Whether anyone still wants `device` monitored (a client or the configuration).
    async fn wanted(&self, device: &str) -> bool {
        self.pinned.contains(device) || self.monitor_refs(device).await > 0
    }
}

/// What the gateway needs to know about one link besides how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    pub name: String,
    /// Numbers taken as internal (call type).
    pub internal: InternalRule,
    /// Devices monitored whenever the link is up, whether or not a client watches them.
    pub monitor: Vec<String>,
    pub resync: ResyncRules,
    /// Items waiting for the link's event pump (`event_queue`).
    pub event_queue: usize,
}

impl LinkSpec {
    pub fn from_section(l: &LinkSection) -> LinkSpec {
        LinkSpec {
            name: l.name.clone(),
            internal: InternalRule {
                max_len: l.internal_max_len,
                prefixes: l.internal_prefixes.clone(),
            },
            monitor: l.monitor.clone(),
            resync: ResyncRules {
                snapshot_calls: l.resync_snapshot_calls,
                retry_max: Duration::from_secs(l.resync_retry_max_s),
            },
            event_queue: l.event_queue,
        }
    }
}

/// How a configured link is reached (the link layer's own settings).
pub fn link_config(l: &LinkSection) -> LinkConfig {
    LinkConfig {
        name: l.name.clone(),
        addresses: l.sides(),
        context: l.context.clone(),
        versions: l.versions.clone(),
        password: l.password.clone(),
        framing: l.framing,
        handshake: l.handshake,
        request_timeout: l.request_timeout(),
        keepalive_idle: Duration::from_secs(l.keepalive_idle_s),
        keepalive_misses: l.keepalive_misses,
        reconnect_min: Duration::from_millis(l.reconnect_min_ms),
        reconnect_max: Duration::from_millis(l.reconnect_max_ms),
        snapshot_max_calls: l.snapshot_max_calls,
        reconnect_jitter_percent: l.reconnect_jitter_percent,
        reconnect_reset: Duration::from_secs(l.reconnect_reset_s),
        max_frame: l.max_frame,
        tls: l.tls.then(|| crate::link::LinkTls {
            ca: l.tls_ca.clone().unwrap_or_default(),
            server_name: l.tls_server_name.clone(),
        }),
        ..LinkConfig::default()
    }
}

/// A link's name and whether it is associated (for `hello` and `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub name: String,
    /// `connecting` (no attempt has ended yet), `up`, or `down`.
    pub state: &'static str,
    /// Why it is down (the last reason the link gave).
    pub reason: Option<String>,
    /// Up: the side associated with; down: the side that failed last (the reason's).
    pub side: Option<Side>,
    /// Malformed frames and rejects sent, over the link's lifetime.
    pub counters: LinkCounters,
}

/// The links, their trackers and the bus.
pub struct Gateway {
    pub links: BTreeMap<String, Arc<LinkSlot>>,
    pub bus: Bus,
    pub started: Instant,
    /// PBX event report taken by the pump -> its events published (`/metrics`).
    pub event_latency: crate::metrics::Histogram,
    shutdown: CancellationToken,
    /// Itself, for the tasks it starts (snapshot retries).
    me: std::sync::Weak<Gateway>,
}

impl Gateway {
    /// Start every configured link (they connect and reconnect by themselves) and their
    /// event pumps; everything stops with [`Gateway::shutdown`].
    pub fn start(cfg: &Config) -> Arc<Gateway> {
        let sections: BTreeMap<&str, &LinkSection> =
            cfg.links.iter().map(|l| (l.name.as_str(), l)).collect();
        Gateway::with_links(
            cfg.links.iter().map(LinkSpec::from_section).collect(),
            |spec, events| {
                let section = sections[spec.name.as_str()];
                Arc::new(Link::start(link_config(section), events)) as Arc<dyn PbxLink>
            },
        )
    }

    /// A gateway over links made by `connect`, which gets each link's spec and the sender
    /// its events go to (a [`LinkEvent`] converts into [`PumpIn`]).
    pub fn with_links(
        specs: Vec<LinkSpec>,
        mut connect: impl FnMut(&LinkSpec, mpsc::Sender<PumpIn>) -> Arc<dyn PbxLink>,
    ) -> Arc<Gateway> {
        let mut links = BTreeMap::new();
        let mut pumps = Vec::new();
        for spec in specs {
            let (tx, rx) = mpsc::channel(spec.event_queue.max(1));
            let link = connect(&spec, tx.clone());
            let tracker = Tracker::new(TrackerConfig {
                link: spec.name.clone(),
                internal: spec.internal.clone(),
            });
            let slot = Arc::new(LinkSlot {
                name: spec.name.clone(),
                link,
                tracker: Mutex::new(tracker),
                refs: Arc::new(tokio::sync::Mutex::new(BTreeMap::new())),
                pinned: spec.monitor.iter().cloned().collect(),
                down: Mutex::new(None),
                side: Mutex::new(None),
                pump: tx,
                stale: Mutex::new(BTreeSet::new()),
                resync_failures: AtomicU64::new(0),
                resyncs: AtomicU64::new(0),
                no_snapshot_call: std::sync::atomic::AtomicBool::new(false),
                resync: spec.resync.clone(),
            });
            links.insert(spec.name.clone(), slot.clone());
            pumps.push((slot, rx));
        }
        let gw = Arc::new_cyclic(|me| Gateway {
            links,
            bus: Bus::new(),
            started: Instant::now(),
            event_latency: crate::metrics::Histogram::new(crate::metrics::EVENT_LATENCY_BUCKETS),
            shutdown: CancellationToken::new(),
            me: me.clone(),
        });
        for (slot, rx) in pumps {
            tokio::spawn(pump(gw.clone(), slot, rx));
        }
        gw
    }

    /// The one cancellation path: cancelled when the gateway shuts down. Every task of
    /// this gateway and of the layers above it (sessions, listeners) stops on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop: cancel every task and release every link (RLRQ), all at once, bounded.
    /// Idempotent.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let releases: Vec<_> = self
            .links
            .values()
            .map(|s| {
                let s = s.clone();
                tokio::spawn(async move {
                    if tokio::time::timeout(RELEASE_BOUND, s.link.shutdown())
                        .await
                        .is_err()
                    {
                        warn!(link = %s.name, "the link did not release in time");
                    }
                })
            })
            .collect();
        for r in releases {
            let _ = r.await;
        }
    }

    /// Publish one event on the bus.
    pub fn emit(&self, link: &str, device: Option<&str>, kind: EventKind, body: Body) {
        self.bus.publish(Event {
            kind,
            time: SystemTime::now(),
            link: link.to_string(),
            device: device.map(str::to_string),
            body,
        });
    }

    /// Publish tracker output.
    pub fn publish(&self, link: &str, outs: Vec<Out>) {
        for o in outs {
            match o {
                Out::Call {
                    event,
                    device,
                    call,
                    cause,
                    extra,
                } => self.emit(
                    link,
                    Some(&device),
                    event,
                    Body::Call { call, cause, extra },
                ),
                Out::Agent { device, agent } => self.emit(
                    link,
                    Some(&device),
                    EventKind::AgentState,
                    Body::Agent(agent),
                ),
            }
        }
    }

    /// Every link and whether it is up.
    pub fn link_states(&self) -> Vec<LinkState> {
        self.links
            .values()
            .map(|l| {
                let up = l.link.is_up();
                let reason = if up {
                    None
                } else {
                    l.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
                };
                let state = match (up, &reason) {
                    (true, _) => "up",
                    (false, None) => "connecting",
                    (false, Some(_)) => "down",
                };
                LinkState {
                    name: l.name.clone(),
                    state,
                    reason,
                    side: l.side.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    counters: l.link.counters(),
                }
            })
            .collect()
    }

    /// `holder` watches `device`: the PBX monitor starts with the first holder (unless
    /// configured). Idempotent per holder, and cancellation-safe: once the counts' lock is
    /// taken, the rest (the PBX request and the recording of the holder) runs to its end in
    /// a task of its own even if the caller gives up, so a count is never taken without
    /// being recorded, nor a PBX monitor started without its count.
    pub async fn monitor_acquire(
        &self,
        s: &Arc<LinkSlot>,
        device: &str,
        holder: Holder,
    ) -> Reply<Acquired> {
        let mut refs = s.refs.clone().lock_owned().await;
        let (slot, device) = (s.clone(), device.to_string());
        let step = tokio::spawn(async move {
            let held = refs.get(&device);
            if held.is_some_and(|h| h.contains(&holder)) {
                return Ok(Ok(Acquired::Already));
            }
            if held.is_none() && !slot.pinned.contains(&device) {
                if let Err(e) = slot.link.monitor(&device).await? {
                    return Ok(Err(e));
                }
            }
            refs.entry(device).or_default().insert(holder);
            Ok(Ok(Acquired::New))
        });
        step.await.unwrap_or(Err(LinkError::Closed))
    }

    /// `holder` no longer watches `device`: the PBX monitor ends with the last holder
    /// (unless configured). False when `holder` did not hold it. Cancellation-safe like
    /// [`Gateway::monitor_acquire`].
    pub async fn monitor_release(&self, s: &Arc<LinkSlot>, device: &str, holder: Holder) -> bool {
        self.release(s, Some(device), holder).await > 0
    }

    /// `holder` is gone: every count it holds on the link is given back (the PBX monitors
    /// that it was the last holder of end). How many it held.
    pub async fn monitor_release_all(&self, s: &Arc<LinkSlot>, holder: Holder) -> usize {
        self.release(s, None, holder).await
    }

    async fn release(&self, s: &Arc<LinkSlot>, device: Option<&str>, holder: Holder) -> usize {
        let mut refs = s.refs.clone().lock_owned().await;
        let (slot, device) = (s.clone(), device.map(str::to_string));
        let step = tokio::spawn(async move {
            let mut held = 0;
            let mut last = Vec::new();
            refs.retain(|d, holders| {
                if device.as_ref().is_none_or(|x| x == d) && holders.remove(&holder) {
                    held += 1;
                    if holders.is_empty() {
                        last.push(d.clone());
                        return false;
                    }
                }
                true
            });
            for d in last.iter().filter(|d| !slot.pinned.contains(*d)) {
                match slot.link.unmonitor(d).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!(device = %d, error = ?e, "the PBX refused the monitor stop")
                    }
                    Err(e) => warn!(device = %d, error = %e, "monitor stop failed"),
                }
                slot.tracker().forget_device(d);
            }
            held
        });
        step.await.unwrap_or(0)
    }

    /// SnapshotDevice: one entry per call, whichever form the switch answers in (inline or
    /// by reference: the link collects the Snapshot Device Data segments).
    pub async fn snapshot_entries(&self, s: &LinkSlot, device: &str) -> Reply<Vec<SnapEntry>> {
        let arg = SnapshotDeviceArgument::new(DeviceId::dialing(device));
        let unreadable = || CstaError::Reject(Problem::MISTYPED_RESULT);
        match s.link.request(arg.into()).await? {
            // (the link answers by-reference snapshots with the collected segments)
            Ok(Some(OperationResult::SnapshotDevice(r))) => {
                Ok(SnapEntry::from_result(&r).ok_or_else(unreadable))
            }
            Ok(_) => Ok(Err(unreadable())),
            Err(e) => Ok(Err(e)),
        }
    }

    /// SnapshotDevice as (connection, state) pairs (`None`: the answer does not say).
    pub async fn snapshot_list(&self, s: &LinkSlot, device: &str) -> Reply<SnapshotList> {
        Ok(self.snapshot_entries(s, device).await?.map(|l| {
            l.into_iter()
                .map(|e| {
                    let st = match e.state {
                        SnapshotState::Known(s) => Some(s),
                        SnapshotState::Unknown => None,
                    };
                    (e.conn, st)
                })
                .collect()
        }))
    }

    /// SnapshotCall of a call: its parties (`Ok(None)` when the switch does not say);
    /// `Err(())` when asking again is pointless (no answer in time, or the switch does not
    /// serve SnapshotCall: then it is not asked on this link any more).
    async fn snapshot_call(
        &self,
        s: &LinkSlot,
        conn: &ConnectionId,
    ) -> Result<Option<SnapCall>, ()> {
        let arg = SnapshotCallArgument::new(conn.clone());
        match s.link.request(arg.into()).await {
            Ok(Ok(Some(OperationResult::SnapshotCall(r)))) => Ok(Some(SnapCall::from_result(&r))),
            Ok(Err(e))
                if e == CstaError::Reject(Problem::UNRECOGNIZED_OPERATION)
                    || UniversalFailure::from_names("operation", "serviceNotSupported")
                        .is_some_and(|f| e == CstaError::Failure(f)) =>
            {
                info!(link = %s.name, error = %e, "the switch does not serve SnapshotCall: new calls found by a snapshot get no parties");
                s.no_snapshot_call.store(true, Ordering::Relaxed);
                Err(())
            }
            Err(LinkError::Timeout) => {
                warn!(link = %s.name, "SnapshotCall not answered in time: the other new calls of this snapshot get no parties");
                Err(())
            }
            other => {
                debug!(link = %s.name, error = ?other.err(), "SnapshotCall gave nothing: the call's parties stay unknown");
                Ok(None)
            }
        }
    }

    /// Take a snapshot of `device` and bring its view up to date (events for what
    /// changed, in order with the PBX's events; see [`Tracker::apply_resync`]).
    pub async fn resync_now(&self, s: &LinkSlot, device: &str) -> Reply<()> {
        let r = self.resync_inner(s, device).await;
        s.resyncs.fetch_add(1, Ordering::Release);
        r
    }

    async fn resync_inner(&self, s: &LinkSlot, device: &str) -> Reply<()> {
        let mark = s.tracker().begin_resync(device);
        let mut entries = match self.snapshot_entries(s, device).await {
            Ok(Ok(e)) => e,
            failed => {
                s.tracker().cancel_resync(mark);
                return failed.map(|r| r.map(drop));
            }
        };
        // calls that appeared meanwhile: their parties from SnapshotCall
        let mut unknown: Vec<ConnectionId> = s
            .tracker()
            .unknown_calls(device, &entries)
            .into_iter()
            .cloned()
            .collect();
        let max = s.resync.snapshot_calls;
        if unknown.len() > max {
            warn!(link = %s.name, device, calls = unknown.len(), limit = max, "resync_snapshot_calls: more new calls than SnapshotCall requests allowed per snapshot; the rest get no parties");
            unknown.truncate(max);
        }
        for conn in unknown {
            if s.no_snapshot_call.load(Ordering::Relaxed) {
                break;
            }
            let Ok(info) = self.snapshot_call(s, &conn).await else {
                break;
            };
            if let Some(e) = entries.iter_mut().find(|e| e.conn == conn) {
                e.call = info;
            }
        }
        let device = device.to_string();
        let applied = s
            .through_pump(|done| PumpIn::Resync {
                mark,
                device,
                entries,
                done,
            })
            .await;
        if applied.is_none() {
            s.tracker().cancel_resync(mark);
            return Err(LinkError::Closed);
        }
        Ok(Ok(()))
    }

    /// Bring `device` up to date (after a (re)monitor, a switch restart, lost messages).
    /// When the snapshot fails nothing is released: the device is marked unconfirmed
    /// (`device.unconfirmed`, logged and counted) and the snapshot retried with backoff
    /// until it succeeds (`device.confirmed`) or nobody watches the device any more.
    pub async fn resync(&self, s: &Arc<LinkSlot>, device: &str) {
        let Err(e) = self.attempt_resync(s, device).await else {
            return;
        };
        warn!(link = %s.name, device, error = %e, "snapshot failed: the device's calls are unconfirmed (kept as they are); retrying");
        self.emit(
            &s.name,
            Some(device),
            EventKind::DeviceUnconfirmed,
            Body::Unconfirmed {
                reason: e,
                retry_in_ms: RESYNC_RETRY_MIN.as_millis() as u64,
            },
        );
        if !s.set_stale(device, true) {
            return; // a retry loop runs already
        }
        let Some(gw) = self.me.upgrade() else {
            return; // shutting down
        };
        let (slot, device) = (s.clone(), device.to_string());
        tokio::spawn(async move { gw.retry_resync(&slot, &device).await });
    }

    /// One resync: on success `device.confirmed` when the device was unconfirmed; a
    /// failure is counted and given back as text.
    async fn attempt_resync(&self, s: &LinkSlot, device: &str) -> Result<(), String> {
        let e = match self.resync_now(s, device).await {
            Ok(Ok(())) => {
                self.confirmed(s, device);
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        s.resync_failures.fetch_add(1, Ordering::Relaxed);
        Err(e)
    }

    /// A snapshot of `device` succeeded: `device.confirmed` when it was unconfirmed.
    fn confirmed(&self, s: &LinkSlot, device: &str) {
        if s.set_stale(device, false) {
            info!(link = %s.name, device, "snapshot taken: the device's calls are confirmed");
            self.emit(
                &s.name,
                Some(device),
                EventKind::DeviceConfirmed,
                Body::Empty,
            );
        }
    }

    /// The retry loop of an unconfirmed device (one per device).
    async fn retry_resync(self: &Arc<Self>, s: &Arc<LinkSlot>, device: &str) {
        let stop = self.shutdown_token();
        let longest = s.resync.retry_max.max(RESYNC_RETRY_MIN);
        let mut wait = RESYNC_RETRY_MIN;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if !s.is_stale(device) {
                return; // confirmed by another snapshot
            }
            if !s.wanted(device).await {
                s.set_stale(device, false);
                debug!(link = %s.name, device, "nobody watches the device any more: no more snapshots");
                return;
            }
            // while the link is down the re-monitor after it comes back takes the snapshot
            if s.link.is_up() {
                let Err(e) = self.attempt_resync(s, device).await else {
                    return;
                };
                warn!(link = %s.name, device, error = %e, retry_in = ?wait, "snapshot failed again");
            }
            wait = (wait * 2).min(longest);
        }
    }

    /// Any request on a link.
    pub async fn request(&self, s: &LinkSlot, arg: impl Into<Argument>) -> Answer {
        s.link.request(arg.into()).await
    }

    /// An agent state from a request's result: the link's event pump publishes it in
    /// order with the PBX's events. The state as published (completed from what is known);
    /// `None` when the pump has stopped.
    pub async fn agent_update(
        &self,
        s: &LinkSlot,
        device: &str,
        agent: AgentView,
    ) -> Option<AgentView> {
        let d = device.to_string();
        let applied = s
            .through_pump(|done| PumpIn::Agent {
                device: d,
                agent,
                done,
            })
            .await;
        if applied.is_none() {
            warn!(link = %s.name, device, "the event pump has stopped: agent state not published");
        }
        applied
    }
}

/// Monitor a configured device (once the link is up) and take its snapshot.
async fn monitor_configured(gw: &Gateway, slot: &Arc<LinkSlot>, device: &str) {
    match slot.link.monitor(device).await {
        Ok(Ok(())) => {
            info!(link = %slot.name, device, "monitoring (configured)");
            gw.resync(slot, device).await;
        }
        Ok(Err(e)) => {
            warn!(link = %slot.name, device, error = ?e, "the PBX refused the configured monitor")
        }
        Err(e) => {
            debug!(link = %slot.name, device, error = %e, "configured monitor waits for the link")
        }
    }
}

/// Turn a link's events, and the agent states of request results, into published events,
/// until the gateway shuts down.
async fn pump(gw: Arc<Gateway>, slot: Arc<LinkSlot>, mut rx: mpsc::Receiver<PumpIn>) {
    let stop = gw.shutdown_token();
    // what is queued is taken in batches: one wake-up for many events when busy
    let mut batch = Vec::with_capacity(PUMP_BATCH);
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            n = rx.recv_many(&mut batch, PUMP_BATCH) => n,
        };
        if n == 0 {
            break;
        }
        for item in batch.drain(..) {
            pump_one(&gw, &slot, item);
        }
    }
    debug!(link = %slot.name, "event pump stopped");
}

fn pump_one(gw: &Arc<Gateway>, slot: &Arc<LinkSlot>, item: PumpIn) {
    let (ev, received) = match item {
        PumpIn::Link(ev, received) => (ev, received),
        PumpIn::Agent {
            device,
            agent,
            done,
        } => {
            let outs = {
                let mut t = slot.tracker();
                let agent = t.fill_agent(&device, agent);
                let _ = done.send(agent.clone()); // the request may have given up
                t.set_agent(&device, agent, SystemTime::now())
            };
            gw.publish(&slot.name, outs);
            return;
        }
        PumpIn::Resync {
            mark,
            device,
            entries,
            done,
        } => {
            let outs = slot
                .tracker()
                .apply_resync(mark, &entries, SystemTime::now());
            if !outs.is_empty() {
                info!(link = %slot.name, %device, events = outs.len(), "resync: the device's calls brought up to date");
            }
            gw.publish(&slot.name, outs);
            let _ = done.send(());
            return;
        }
    };
    match ev {
        LinkEvent::Up { side } => {
            info!(link = %slot.name, %side, "link up");
            *slot.down.lock().unwrap_or_else(|p| p.into_inner()) = None;
            gw.emit(
                &slot.name,
                None,
                EventKind::LinkUp,
                Body::LinkUp { side: side.clone() },
            );
            // after the event: a side in the link state means link.up is published
            *slot.side.lock().unwrap_or_else(|p| p.into_inner()) = Some(side);
            // configured devices: the link remembers them once monitored (then this
            // joins its own re-monitor); before that, a start needs the link up
            for d in slot.pinned.clone() {
                let (gw, slot) = (gw.clone(), slot.clone());
                tokio::spawn(async move { monitor_configured(&gw, &slot, &d).await });
            }
        }
        LinkEvent::Down { reason, side } => {
            warn!(link = %slot.name, %side, %reason, "link down");
            *slot.down.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            *slot.side.lock().unwrap_or_else(|p| p.into_inner()) = Some(side.clone());
            gw.emit(
                &slot.name,
                None,
                EventKind::LinkDown,
                Body::LinkDown { reason, side },
            );
        }
        LinkEvent::Monitored { again: false, .. } => {
            // whoever asked (monitor.start, a configured device) takes the snapshot
        }
        LinkEvent::Monitored {
            device,
            again: true,
        } => {
            // re-monitored by the link after an outage: bring the view up to date
            let (gw, slot) = (gw.clone(), slot.clone());
            tokio::spawn(async move { gw.resync(&slot, &device).await });
        }
        LinkEvent::Resync { device, reason } => {
            // the link says events may have been lost: the same snapshot resync
            info!(link = %slot.name, %device, %reason, "resynchronising");
            let (gw, slot) = (gw.clone(), slot.clone());
            tokio::spawn(async move { gw.resync(&slot, &device).await });
        }
        LinkEvent::MonitorLost { device, reason } => {
            warn!(link = %slot.name, %device, %reason, "monitor lost");
        }
        LinkEvent::SystemStatus { status } => {
            debug!(link = %slot.name, %status, "PBX system status");
        }
        LinkEvent::Report { device, report } => {
            let Some(device) = device else {
                debug!(link = %slot.name, "event for an unknown monitor: ignored");
                return;
            };
            match &report.event {
                CstaEvent::OutOfService(_) => gw.emit(
                    &slot.name,
                    Some(&device),
                    EventKind::DeviceOutOfService,
                    Body::Empty,
                ),
                CstaEvent::BackInService(_) => gw.emit(
                    &slot.name,
                    Some(&device),
                    EventKind::DeviceInService,
                    Body::Empty,
                ),
                e => {
                    let outs = slot.tracker().on_event(&device, e, SystemTime::now());
                    gw.publish(&slot.name, outs);
                }
            }
            // the event latency: from the frame's read (the link handed the report over just
            // after decoding it) to its events queued for the clients
            gw.event_latency.observe(received.elapsed());
        }
    }
}
