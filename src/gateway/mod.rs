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
pub use link::{BoxFuture, LinkLimits, MonitorAnswer, PbxLink};

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
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Items waiting for one link's event pump unless configured (`[[link]] event_queue`).
pub const EVENT_QUEUE: usize = 16384;
/// Items the event pump takes from its queue at once.
const PUMP_BATCH: usize = 256;
/// When the gateway is behind a link's events ([`Gateway::is_behind`]; `[api]`
/// `behind_lag_ms`, `behind_hold_s`, `behind_warn_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BehindRule {
    /// Behind from an event that waited this long between the PBX socket (its octets
    /// read, in the link's read-ahead until decoded) and the event pump ...
    pub lag: Duration,
    /// ... until none has for this long.
    pub hold: Duration,
    /// Behind this long without a break: a warning (the gateway is near its capacity).
    pub warn: Duration,
}

impl Default for BehindRule {
    fn default() -> BehindRule {
        crate::config::ApiConfig::default().behind_rule()
    }
}
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
    /// The longest wait between the retries of a failed snapshot (and of a configured
    /// monitor that failed for a while).
    pub retry_max: Duration,
    /// The link's request window (`max_outstanding`) at start: configured monitors are
    /// started at most this many at once, and snapshots of resyncs at most half of it (a
    /// reload changes the live one, [`LinkSlot::window`]).
    pub window: usize,
}

impl Default for ResyncRules {
    fn default() -> Self {
        ResyncRules {
            snapshot_calls: 64,
            retry_max: Duration::from_secs(30),
            window: crate::link::MAX_IN_FLIGHT,
        }
    }
}

/// A resync snapshot's turn: given back when it ends, unless the window narrowed
/// meanwhile ([`LinkSlot::set_window`]).
struct SnapshotTurn<'a> {
    owed: &'a std::sync::atomic::AtomicUsize,
    permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl Drop for SnapshotTurn<'_> {
    fn drop(&mut self) {
        let take_back = self
            .owed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| o.checked_sub(1))
            .is_ok();
        if let (true, Some(p)) = (take_back, self.permit.take()) {
            p.forget();
        }
    }
}

/// Resync snapshots at once for a request window: half of it, at least one.
fn snapshot_turns(window: usize) -> usize {
    (window / 2).max(1)
}

/// Where a PBX monitor stands, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorStatus {
    /// Configured and not monitored yet: waiting for the link, or for its turn.
    Pending,
    /// Monitored (configured, or held by clients). While the link is down it is shown
    /// `pending` (the link monitors it again when it is back).
    Active,
    /// A temporary failure (no answer in time, the switch busy, no room on the link): the
    /// configured monitor is tried again, with backoff.
    Retrying(Box<str>),
    /// The switch refused the configured monitor (invalid device, its monitor limit, ...):
    /// logged once, not tried again.
    Refused(Box<str>),
}

impl MonitorStatus {
    /// `pending`, `active`, `retrying` or `refused`.
    pub fn name(&self) -> &'static str {
        match self {
            MonitorStatus::Pending => "pending",
            MonitorStatus::Active => "active",
            MonitorStatus::Retrying(_) => "retrying",
            MonitorStatus::Refused(_) => "refused",
        }
    }

    /// Why it retries or was refused.
    pub fn reason(&self) -> Option<&str> {
        match self {
            MonitorStatus::Retrying(r) | MonitorStatus::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// One PBX monitor as `status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorRow {
    pub device: String,
    pub status: MonitorStatus,
    /// In the link's `monitor` list.
    pub configured: bool,
    /// Clients holding it.
    pub clients: usize,
}

/// One PBX link with its tracker and monitor reference counts.
pub struct LinkSlot {
    pub name: String,
    pub link: Arc<dyn PbxLink>,
    tracker: Mutex<Tracker>,
    /// Who holds each device's monitor (one PBX monitor however many): the holders, so
    /// that a count is taken and recorded in one step, and a holder's counts can be given
    /// back all at once ([`Gateway::monitor_release_all`]). Never an empty list.
    refs: Mutex<BTreeMap<String, Vec<Holder>>>,
    /// One lock per device whose monitor is being started or stopped: a start or stop of
    /// the same device waits for it, other devices go on in parallel (up to the link's
    /// window). An entry lives while someone uses it.
    device_locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Every PBX monitor of the link (configured, or held by clients) and where it stands.
    states: Mutex<std::collections::HashMap<String, MonitorStatus>>,
    /// Wakes the configured monitors' task (the link came up).
    configured_wake: tokio::sync::Notify,
    /// Resync snapshots at once (half the window): the others wait their turn rather
    /// than time out at the link's window.
    snapshots: tokio::sync::Semaphore,
    /// The link's request window now (`max_outstanding`; a reload changes it,
    /// [`LinkSlot::set_window`]).
    window: std::sync::atomic::AtomicUsize,
    /// Turns of `snapshots` to take back as they end (the window narrowed while they ran).
    snapshot_turns_owed: std::sync::atomic::AtomicUsize,
    /// Devices monitored from the configuration (never stopped while listed; a reload
    /// changes the list).
    pinned: Mutex<BTreeSet<String>>,
    /// Stops the link's own tasks (event pump, configured monitors): the gateway's
    /// shutdown, or the link removed by a reload.
    stop: CancellationToken,
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
    /// Devices whose resync the link asked for (shed events, a re-monitor) waits for its
    /// turn: asked again meanwhile, that one resync serves (its mark and snapshot come
    /// later), so at most one waits per device however often the link asks.
    resync_waiting: Mutex<std::collections::HashSet<String>>,
    /// The switch said it does not serve SnapshotCall.
    no_snapshot_call: std::sync::atomic::AtomicBool,
    resync: ResyncRules,
    /// The gateway is behind the link's events now ([`Gateway::is_behind`]) ...
    pub behind: std::sync::atomic::AtomicBool,
    /// ... and how often it fell behind them.
    pub behind_periods: AtomicU64,
}

impl Drop for Gateway {
    /// The links' own tasks stop with it (an event pump on a thread of its own too).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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
    /// A link's slot (and the receiving end of its event pump) for `spec`, its link made
    /// by `connect`; its tasks stop with `shutdown` (or the slot's own stop).
    fn new(
        spec: &LinkSpec,
        shutdown: &CancellationToken,
        connect: impl FnOnce(&LinkSpec, mpsc::Sender<PumpIn>) -> Arc<dyn PbxLink>,
    ) -> (Arc<LinkSlot>, mpsc::Receiver<PumpIn>) {
        let (tx, rx) = mpsc::channel(spec.event_queue.max(1));
        let link = connect(spec, tx.clone());
        let tracker = Tracker::new(TrackerConfig {
            link: spec.name.clone(),
            internal: spec.internal.clone(),
            max_calls_per_device: spec.max_calls_per_device,
        });
        let slot = Arc::new(LinkSlot {
            name: spec.name.clone(),
            link,
            tracker: Mutex::new(tracker),
            refs: Mutex::new(BTreeMap::new()),
            device_locks: Mutex::new(std::collections::HashMap::new()),
            states: Mutex::new(
                spec.monitor
                    .iter()
                    .map(|d| (d.clone(), MonitorStatus::Pending))
                    .collect(),
            ),
            configured_wake: tokio::sync::Notify::new(),
            snapshots: tokio::sync::Semaphore::new(snapshot_turns(spec.resync.window)),
            window: std::sync::atomic::AtomicUsize::new(spec.resync.window.max(1)),
            snapshot_turns_owed: std::sync::atomic::AtomicUsize::new(0),
            pinned: Mutex::new(spec.monitor.iter().cloned().collect()),
            stop: shutdown.child_token(),
            down: Mutex::new(None),
            side: Mutex::new(None),
            pump: tx,
            stale: Mutex::new(BTreeSet::new()),
            resync_failures: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            resync_waiting: Mutex::new(std::collections::HashSet::new()),
            no_snapshot_call: std::sync::atomic::AtomicBool::new(false),
            resync: spec.resync.clone(),
            behind: std::sync::atomic::AtomicBool::new(false),
            behind_periods: AtomicU64::new(0),
        });
        (slot, rx)
    }

    /// The link's request window now: configured monitors start at most this many at
    /// once, resync snapshots at most half of it.
    pub fn window(&self) -> usize {
        self.window.load(Ordering::Relaxed)
    }

    /// New limits from a reload: the link's own (its request window, monitors, request
    /// rate), and the window its configured monitors' starts and resync snapshots follow.
    pub async fn set_limits(&self, limits: LinkLimits) {
        self.link.set_limits(limits).await;
        self.set_window(limits.max_outstanding);
    }

    /// A new request window (`max_outstanding` changed by a reload): the configured
    /// monitors' next starts and the resync snapshots follow it. A narrower window takes
    /// effect as the snapshots running now end (their turns are not given back).
    pub fn set_window(&self, window: usize) {
        let window = window.max(1);
        let (old, new) = (
            snapshot_turns(self.window.swap(window, Ordering::Relaxed)),
            snapshot_turns(window),
        );
        let owed = &self.snapshot_turns_owed;
        if new > old {
            // what is owed first, the rest as new turns
            let more = new - old;
            let was = owed
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                    Some(o.saturating_sub(more))
                })
                .unwrap_or(0);
            self.snapshots.add_permits(more - was.min(more));
        } else if old > new {
            let fewer = old - new;
            owed.fetch_add(
                fewer - self.snapshots.forget_permits(fewer),
                Ordering::Relaxed,
            );
        }
    }

    /// A turn to take a resync snapshot ([`Gateway::resync_paced`]), waiting for one; `None`
    /// when the link is gone.
    async fn snapshot_turn(&self) -> Option<SnapshotTurn<'_>> {
        let permit = self.snapshots.acquire().await.ok()?;
        Some(SnapshotTurn {
            owed: &self.snapshot_turns_owed,
            permit: Some(permit),
        })
    }

    /// Clients holding the PBX monitor of `device` (0 when none; configured devices are
    /// held by the configuration besides).
    pub async fn monitor_refs(&self, device: &str) -> usize {
        self.refs().get(device).map_or(0, Vec::len)
    }

    /// Every device some client holds, with how many hold it (for `status`).
    pub async fn monitor_holders(&self) -> Vec<(String, usize)> {
        let refs = self.refs();
        refs.iter().map(|(d, h)| (d.clone(), h.len())).collect()
    }

    fn refs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<Holder>>> {
        self.refs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn states(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, MonitorStatus>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, device: &str, st: MonitorStatus) {
        let mut states = self.states();
        match states.get_mut(device) {
            Some(s) => *s = st,
            None => {
                states.insert(device.to_string(), st);
            }
        }
    }

    /// How the link's PBX monitors stand: (state name, count), every state listed. A
    /// monitor is `pending` while the link is down.
    pub fn monitor_counts(&self) -> [(&'static str, usize); 4] {
        let up = self.link.is_up();
        let mut n = [0usize; 4];
        for st in self.states().values() {
            let i = match st {
                MonitorStatus::Active if up => 1,
                MonitorStatus::Pending | MonitorStatus::Active => 0,
                MonitorStatus::Retrying(_) => 2,
                MonitorStatus::Refused(_) => 3,
            };
            n[i] += 1;
        }
        [
            ("pending", n[0]),
            ("active", n[1]),
            ("retrying", n[2]),
            ("refused", n[3]),
        ]
    }

    /// Every PBX monitor of the link, by device (for `status` with `devices`).
    pub fn monitor_rows(&self) -> Vec<MonitorRow> {
        let up = self.link.is_up();
        let refs = self.refs();
        let mut rows: Vec<MonitorRow> = self
            .states()
            .iter()
            .map(|(d, st)| MonitorRow {
                device: d.clone(),
                status: match st {
                    MonitorStatus::Active if !up => MonitorStatus::Pending,
                    st => st.clone(),
                },
                configured: self.is_pinned(d),
                clients: refs.get(d).map_or(0, Vec::len),
            })
            .collect();
        rows.sort_unstable_by(|a, b| a.device.cmp(&b.device));
        rows
    }

    /// The devices monitored from the configuration (`monitor`).
    pub fn pinned(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.pinned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `device` is in the link's `monitor` list.
    pub fn is_pinned(&self, device: &str) -> bool {
        self.pinned().contains(device)
    }

    /// The lock of one device's monitor start or stop (made when missing).
    fn device_lock(&self, device: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.device_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(device.to_string()).or_default().clone()
    }

    /// Done with a device's lock: forgotten when nobody else has it.
    fn device_unlock(&self, device: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.device_locks.lock().unwrap_or_else(|p| p.into_inner());
        // ours and the table's: nobody waits for it
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(device);
        }
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

    /// Resyncs the link asked for that wait for their turn (at most one per device).
    pub fn resyncs_waiting(&self) -> usize {
        self.waiting().len()
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.resync_waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
        self.is_pinned(device) || self.monitor_refs(device).await > 0
    }
}

/// What a new `monitor` list changed ([`Gateway::set_configured`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfiguredChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Listed before and after, refused by the PBX before: tried again.
    pub retried: Vec<String>,
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
    /// Calls tracked per device (`max_calls_per_device`).
    pub max_calls_per_device: usize,
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
                window: l.max_outstanding.max(1),
            },
            event_queue: l.event_queue,
            max_calls_per_device: l.max_calls_per_device,
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
        max_monitors: l.max_monitors,
        max_outstanding: l.max_outstanding,
        requests_per_s: l.requests_per_s,
        read_ahead: l.read_ahead_kb * 1024,
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
    /// The gateway is behind the link's events now ([`Gateway::is_behind`]) ...
    pub behind: bool,
    /// ... and how often it fell behind them.
    pub behind_periods: u64,
}

/// The links, their trackers and the bus.
pub struct Gateway {
    /// The links by name; a reload adds and removes some ([`Gateway::links`]).
    links: std::sync::RwLock<Arc<BTreeMap<String, Arc<LinkSlot>>>>,
    pub bus: Bus,
    pub started: Instant,
    /// PBX event report taken by the pump -> its events published (`/metrics`).
    pub event_latency: crate::metrics::Histogram,
    /// Links whose events the gateway is behind now.
    behind_links: std::sync::atomic::AtomicUsize,
    /// When a link's events are behind, and until when (the [`BehindRule`]: lag, hold, warn),
    /// in microseconds.
    behind_rule: [AtomicU64; 3],
    shutdown: CancellationToken,
    /// Itself, for the tasks it starts (snapshot retries).
    me: std::sync::Weak<Gateway>,
    /// The runtime the gateway was started in: its tasks run there, also those started
    /// by an event pump on a thread of its own.
    rt: tokio::runtime::Handle,
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
        let shutdown = CancellationToken::new();
        let mut links = BTreeMap::new();
        let mut pumps = Vec::new();
        for spec in specs {
            let (slot, rx) = LinkSlot::new(&spec, &shutdown, &mut connect);
            links.insert(spec.name.clone(), slot.clone());
            pumps.push((slot, rx));
        }
        let gw = Arc::new_cyclic(|me| Gateway {
            links: std::sync::RwLock::new(Arc::new(links)),
            bus: Bus::new(),
            started: Instant::now(),
            event_latency: crate::metrics::Histogram::new(crate::metrics::EVENT_LATENCY_BUCKETS),
            behind_links: std::sync::atomic::AtomicUsize::new(0),
            behind_rule: {
                let d = BehindRule::default();
                [d.lag, d.hold, d.warn].map(|d| AtomicU64::new(d.as_micros() as u64))
            },
            shutdown,
            me: me.clone(),
            rt: tokio::runtime::Handle::current(),
        });
        for (slot, rx) in pumps {
            gw.run_slot(slot, rx);
        }
        gw
    }

    /// A link's own tasks: its event pump and its configured monitors. In a multi-threaded
    /// runtime (`ctigate run`) the pump gets an OS thread of its own: it is the one task
    /// every event of the link goes through, and on a worker it shares with a thousand
    /// client writers it was left waiting for hundreds of milliseconds under load (its
    /// queue full, events shed: BENCHMARKS.md); on its own thread the OS schedules it like
    /// the workers. In a single-threaded runtime (tests with a paused clock) it is a task.
    fn run_slot(self: &Arc<Gateway>, slot: Arc<LinkSlot>, rx: mpsc::Receiver<PumpIn>) {
        self.spawn(configured_monitors(self.clone(), slot.clone()));
        let parts = (Arc::downgrade(self), slot, rx);
        if let Err((gw, slot, rx)) = self.pump_thread(parts) {
            self.spawn(pump(gw, slot, rx));
        }
    }

    /// Start a link's event pump on a thread of its own (with a current-thread runtime);
    /// its parts back when it runs as a task instead: in a current-thread runtime, or when
    /// no runtime or thread can be made (logged).
    fn pump_thread(&self, parts: PumpParts) -> Result<(), PumpParts> {
        if self.rt.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(parts);
        }
        let name = parts.1.name.clone();
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                warn!(link = %name, error = %e, "no runtime for the event pump's own thread: it runs as a task");
                return Err(parts);
            }
        };
        // the parts go to the thread once it runs, so that one that cannot start leaves
        // them here
        let (tx, rx) = std::sync::mpsc::sync_channel::<PumpParts>(1);
        let started = std::thread::Builder::new()
            .name(format!("pump {name}"))
            .spawn(move || {
                if let Ok((gw, slot, events)) = rx.recv() {
                    rt.block_on(pump(gw, slot, events));
                }
            });
        match started {
            Ok(_) => tx.send(parts).map_err(|e| e.0),
            Err(e) => {
                warn!(link = %name, error = %e, "no thread for the event pump: it runs as a task");
                Err(parts)
            }
        }
    }

    /// A task on the gateway's runtime (wherever it is started from: an event pump runs on
    /// a thread of its own).
    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(f)
    }

    /// Whether the gateway is behind the events of some link now: from an event that waited
    /// the [`BehindRule`]'s `lag` or more between the PBX socket and the link's event pump
    /// until none has for its `hold`. Writers batch events to busy clients meanwhile
    /// (`api.write_coalesce_behind_ms`): fewer system calls, so the gateway catches up.
    pub fn is_behind(&self) -> bool {
        self.behind_links.load(Ordering::Relaxed) > 0
    }

    /// The rule for [`Gateway::is_behind`] (the `[api]` configuration's: set by the Api
    /// over this gateway when it is made and at every reload; taken by each event pump at
    /// its next batch).
    pub fn set_behind_rule(&self, rule: BehindRule) {
        for (at, d) in self
            .behind_rule
            .iter()
            .zip([rule.lag, rule.hold, rule.warn])
        {
            at.store(
                d.as_micros().min(u64::MAX as u128) as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// The rule in effect.
    pub fn behind_rule(&self) -> BehindRule {
        let [lag, hold, warn] = self
            .behind_rule
            .each_ref()
            .map(|a| Duration::from_micros(a.load(Ordering::Relaxed)));
        BehindRule { lag, hold, warn }
    }

    /// The links by name, as they are now (a reload may add or remove some later).
    pub fn links(&self) -> Arc<BTreeMap<String, Arc<LinkSlot>>> {
        self.links.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The link of this name.
    pub fn link(&self, name: &str) -> Option<Arc<LinkSlot>> {
        self.links().get(name).cloned()
    }

    /// Start a link of the configuration while running (a reload); false when one of that
    /// name exists already.
    pub fn add_link(self: &Arc<Gateway>, section: &LinkSection) -> bool {
        let spec = LinkSpec::from_section(section);
        let mut links = self.links.write().unwrap_or_else(|p| p.into_inner());
        if links.contains_key(&spec.name) || self.shutdown.is_cancelled() {
            return false;
        }
        let (slot, rx) = LinkSlot::new(&spec, &self.shutdown, |_, events| {
            Arc::new(Link::start(link_config(section), events)) as Arc<dyn PbxLink>
        });
        let mut next = BTreeMap::clone(&links);
        next.insert(spec.name.clone(), slot.clone());
        *links = Arc::new(next);
        drop(links);
        info!(link = %spec.name, "link added by a configuration reload");
        self.run_slot(slot, rx);
        true
    }

    /// Stop and forget a link (removed from the configuration by a reload): its
    /// association is released (RLRQ), its clients get `link.down` with the reason, and
    /// its monitors end with it. False when there is no such link.
    pub async fn remove_link(&self, name: &str) -> bool {
        let slot = {
            let mut links = self.links.write().unwrap_or_else(|p| p.into_inner());
            let mut next = BTreeMap::clone(&links);
            let Some(slot) = next.remove(name) else {
                return false;
            };
            *links = Arc::new(next);
            slot
        };
        slot.stop.cancel();
        if tokio::time::timeout(RELEASE_BOUND, slot.link.shutdown())
            .await
            .is_err()
        {
            warn!(link = %name, "the link did not release in time");
        }
        let reason = "removed from the configuration (reload)".to_string();
        warn!(link = %name, "link removed by a configuration reload: released");
        let side = slot
            .side
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or(Side {
                index: 0,
                address: String::new(),
            });
        self.emit(
            name,
            None,
            EventKind::LinkDown,
            Body::LinkDown { reason, side },
        );
        true
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
            .links()
            .values()
            .map(|s| {
                let s = s.clone();
                self.spawn(async move {
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
        self.emit_owned(link, device.map(str::to_string), kind, body);
    }

    /// [`Gateway::emit`] with the device's name given away (no copy per event).
    fn emit_owned(&self, link: &str, device: Option<String>, kind: EventKind, body: Body) {
        self.bus.publish(Event {
            kind,
            time: SystemTime::now(),
            link: link.to_string(),
            device,
            body,
        });
    }

    /// Publish tracker output.
    pub fn publish(&self, link: &str, outs: Vec<Out>) {
        for o in outs {
            let (device, kind, body) = event_parts(o);
            self.emit_owned(link, Some(device), kind, body);
        }
    }

    /// Every link and whether it is up.
    pub fn link_states(&self) -> Vec<LinkState> {
        self.links()
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
                    behind: l.behind.load(Ordering::Relaxed),
                    behind_periods: l.behind_periods.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// A new `monitor` list for a link (a reload): devices added are monitored (paced,
    /// like at start-up); devices removed stop being monitored unless a client holds them;
    /// devices listed and refused before are tried again.
    pub async fn set_configured(&self, s: &Arc<LinkSlot>, list: &[String]) -> ConfiguredChange {
        let want: BTreeSet<String> = list.iter().cloned().collect();
        let (added, removed): (Vec<String>, Vec<String>) = {
            let mut pinned = s.pinned();
            let added = want.difference(&pinned).cloned().collect();
            let removed = pinned.difference(&want).cloned().collect();
            *pinned = want.clone();
            (added, removed)
        };
        let mut retried = Vec::new();
        {
            let mut states = s.states();
            for d in &added {
                states.entry(d.clone()).or_insert(MonitorStatus::Pending);
            }
            for d in &want {
                if let Some(st @ MonitorStatus::Refused(_)) = states.get_mut(d) {
                    *st = MonitorStatus::Pending;
                    retried.push(d.clone());
                }
            }
        }
        s.configured_wake.notify_one();
        for d in &removed {
            // after a start of the same device (the configured task's) has finished
            let lock = s.device_lock(d);
            let guard = lock.clone().lock_owned().await;
            let held = s.refs().contains_key(d);
            if !held && !s.is_pinned(d) {
                let st = s.states().remove(d);
                if matches!(st, Some(MonitorStatus::Active | MonitorStatus::Retrying(_))) {
                    match s.link.unmonitor(d).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            warn!(link = %s.name, device = %d, error = ?e, "the PBX refused the monitor stop")
                        }
                        Err(e) => {
                            warn!(link = %s.name, device = %d, error = %e, "monitor stop failed")
                        }
                    }
                }
                s.tracker().forget_device(d);
            }
            drop(guard);
            s.device_unlock(d, lock);
        }
        ConfiguredChange {
            added,
            removed,
            retried,
        }
    }

    /// `holder` watches `device`: the PBX monitor starts with the first holder (unless
    /// configured). Idempotent per holder, and cancellation-safe: once the device's lock is
    /// taken, the rest (the PBX request and the recording of the holder) runs to its end in
    /// a task of its own even if the caller gives up, so a count is never taken without
    /// being recorded, nor a PBX monitor started without its count. Starts of one device
    /// are serialized (one PBX MonitorStart however many ask at once); different devices go
    /// in parallel, up to the link's window.
    pub async fn monitor_acquire(
        &self,
        s: &Arc<LinkSlot>,
        device: &str,
        holder: Holder,
    ) -> Reply<Acquired> {
        let lock = s.device_lock(device);
        let guard = lock.clone().lock_owned().await;
        let (slot, device) = (s.clone(), device.to_string());
        let step = self.spawn(async move {
            let r = async {
                let held = slot.refs().get(&device).map(|h| h.contains(&holder));
                if held == Some(true) {
                    return Ok(Ok(Acquired::Already));
                }
                if held.is_none() && !slot.is_pinned(&device) {
                    if let Err(e) = slot.link.monitor(&device).await? {
                        return Ok(Err(e));
                    }
                    slot.set_state(&device, MonitorStatus::Active);
                }
                slot.refs().entry(device.clone()).or_default().push(holder);
                Ok(Ok(Acquired::New))
            }
            .await;
            drop(guard);
            slot.device_unlock(&device, lock);
            r
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
        let devices: Vec<String> = match device {
            Some(d) => vec![d.to_string()],
            None => s
                .refs()
                .iter()
                .filter(|(_, h)| h.contains(&holder))
                .map(|(d, _)| d.clone())
                .collect(),
        };
        let slot = s.clone();
        let step = self.spawn(async move {
            let mut held = 0;
            for d in devices {
                let lock = slot.device_lock(&d);
                let guard = lock.clone().lock_owned().await;
                let last = {
                    let mut refs = slot.refs();
                    match refs.get_mut(&d) {
                        Some(h) if h.contains(&holder) => {
                            held += 1;
                            h.retain(|x| *x != holder);
                            let last = h.is_empty();
                            if last {
                                refs.remove(&d);
                            }
                            last
                        }
                        _ => false,
                    }
                };
                if last && !slot.is_pinned(&d) {
                    match slot.link.unmonitor(&d).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            warn!(device = %d, error = ?e, "the PBX refused the monitor stop")
                        }
                        Err(e) => warn!(device = %d, error = %e, "monitor stop failed"),
                    }
                    slot.states().remove(&d);
                    slot.tracker().forget_device(&d);
                }
                drop(guard);
                slot.device_unlock(&d, lock);
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
        self.spawn(async move { gw.retry_resync(&slot, &device).await });
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

    /// [`Gateway::resync`] in its turn: at most half the link's window of snapshots at
    /// once (for the resyncs the link asks for: re-monitors, lost messages, overloads,
    /// configured monitors), so that thousands of them wait here rather than time out at
    /// the link's window. The wait is bounded by the snapshots before it, each bounded by
    /// the request timeout.
    pub async fn resync_paced(&self, s: &Arc<LinkSlot>, device: &str) {
        let Some(_turn) = s.snapshot_turn().await else {
            return;
        };
        self.resync(s, device).await;
    }

    /// A resync the link asked for ([`LinkEvent::Resync`], a re-monitor):
    /// [`Gateway::resync_paced`] in a task of its own, unless one of `device` already waits
    /// for its turn (it serves this request too: its mark and snapshot come after it). So
    /// the waiting resyncs are at most one per monitored device, and those running at most
    /// half the window, however often the link asks (every catch-up after shed events asks
    /// again for every device concerned).
    fn resync_asked(&self, s: &Arc<LinkSlot>, device: String) {
        let Some(gw) = self.me.upgrade() else {
            return; // shutting down
        };
        if !s.waiting().insert(device.clone()) {
            debug!(link = %s.name, %device, "a resync of the device already waits for its turn");
            return;
        }
        let slot = s.clone();
        self.spawn(async move {
            let turn = slot.snapshot_turn().await;
            slot.waiting().remove(&device);
            if let Some(_turn) = turn {
                gw.resync(&slot, &device).await;
            }
        });
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

/// The first wait before the configured monitors that failed for a while are tried again
/// (doubling up to the link's `resync_retry_max_s`).
const CONFIGURED_RETRY_MIN: Duration = Duration::from_secs(1);

/// How soon the configured monitors' task looks again at a link that is not up.
const LINK_LOOK_AGAIN: Duration = Duration::from_millis(200);

/// What one configured monitor's attempt came to.
enum Configured {
    Monitored,
    /// Not now (the link went down): tried again when it is up.
    WaitLink,
    /// A temporary failure: tried again after a pause.
    Retry,
    /// Refused by the switch for good.
    Refused,
    /// No longer in the list (a reload).
    Unlisted,
}

/// The configured monitors of a link (its `monitor` list): whenever the link comes up,
/// every one not active yet is started, at most the link's window at once, and its
/// snapshot taken; one that failed for a while (no answer, the switch busy, no room) is
/// tried again with backoff until it is monitored or the switch refuses it for good
/// (logged once with the device and the reason; `refused` in `status`). No agent query:
/// an agent's state reaches the gateway in the device's events, and a client's
/// `monitor.start` asks the switch for it then.
async fn configured_monitors(gw: Arc<Gateway>, slot: Arc<LinkSlot>) {
    let stop = slot.stop.clone();
    let longest = slot.resync.retry_max.max(CONFIGURED_RETRY_MIN);
    let mut wait: Option<Duration> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = slot.configured_wake.notified() => wait = None,
            _ = sleep_for(wait) => {}
        }
        if !slot.link.is_up() {
            // woken by link.up before the link's handle says so, or down again: look again
            // shortly (cheap), and at the next link.up anyway
            wait = Some(LINK_LOOK_AGAIN);
            continue;
        }
        let todo: Vec<String> = {
            let states = slot.states();
            slot.pinned()
                .iter()
                .filter(|d| {
                    matches!(
                        states.get(*d),
                        None | Some(MonitorStatus::Pending | MonitorStatus::Retrying(_))
                    )
                })
                .cloned()
                .collect()
        };
        if todo.is_empty() {
            wait = None;
            continue;
        }
        let started = Instant::now();
        let backoff = wait.filter(|w| *w >= CONFIGURED_RETRY_MIN);
        info!(link = %slot.name, devices = todo.len(), window = slot.window(), "starting the configured monitors");
        let mut tasks = tokio::task::JoinSet::new();
        let (mut done, mut retry, mut link_gone) = (0usize, 0usize, false);
        let mut todo = todo.into_iter();
        loop {
            while tasks.len() < slot.window() && !link_gone {
                let Some(d) = todo.next() else { break };
                let (gw, slot) = (gw.clone(), slot.clone());
                tasks.spawn(async move { monitor_configured(&gw, &slot, &d).await });
            }
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = tasks.join_next() => n,
            };
            match next {
                None => break,
                Some(Ok(Configured::Monitored)) => done += 1,
                Some(Ok(Configured::Retry)) => retry += 1,
                Some(Ok(Configured::WaitLink)) => link_gone = true,
                Some(Ok(Configured::Refused | Configured::Unlisted)) | Some(Err(_)) => {}
            }
        }
        info!(link = %slot.name, monitored = done, retrying = retry, waiting_for_link = link_gone, took_ms = started.elapsed().as_millis() as u64, "configured monitors started");
        wait = if link_gone {
            None // the next link.up wakes us
        } else if retry > 0 {
            let w = backoff.map_or(CONFIGURED_RETRY_MIN, |w| (w * 2).min(longest));
            warn!(link = %slot.name, devices = retry, retry_in = ?w, "configured monitors not started yet (temporary failures): retrying");
            Some(w)
        } else {
            None
        };
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Monitor a configured device (the link is up) and take its snapshot.
async fn monitor_configured(gw: &Gateway, slot: &Arc<LinkSlot>, device: &str) -> Configured {
    // a start or stop of the same device by a client waits (and the other way round)
    let lock = slot.device_lock(device);
    let guard = lock.clone().lock_owned().await;
    if !slot.is_pinned(device) {
        // taken off the list by a reload meanwhile
        drop(guard);
        slot.device_unlock(device, lock);
        return Configured::Unlisted;
    }
    let r = slot.link.monitor(device).await;
    if matches!(r, Ok(Ok(()))) {
        // under the lock: a reload that takes it off the list sees it active and stops it
        slot.set_state(device, MonitorStatus::Active);
    }
    drop(guard);
    slot.device_unlock(device, lock);
    match r {
        Ok(Ok(())) => {
            debug!(link = %slot.name, device, "monitoring (configured)");
            gw.resync_paced(slot, device).await;
            Configured::Monitored
        }
        Ok(Err(e)) if crate::link::driver::switch_busy(&e) => {
            slot.set_state(device, MonitorStatus::Retrying(e.to_string().into()));
            Configured::Retry
        }
        Ok(Err(e)) => {
            warn!(link = %slot.name, device, error = %e, "the PBX refused the configured monitor: not tried again");
            slot.set_state(device, MonitorStatus::Refused(e.to_string().into()));
            Configured::Refused
        }
        Err(e @ (LinkError::Down | LinkError::Closed | LinkError::Aborted)) => {
            debug!(link = %slot.name, device, error = %e, "configured monitor waits for the link");
            slot.set_state(device, MonitorStatus::Pending);
            Configured::WaitLink
        }
        Err(e @ LinkError::Limit("link.max_monitors", _)) => {
            warn!(link = %slot.name, device, error = %e, "configured monitor refused: link.max_monitors");
            slot.set_state(device, MonitorStatus::Refused(e.to_string().into()));
            Configured::Refused
        }
        Err(e) => {
            debug!(link = %slot.name, device, error = %e, "configured monitor failed for now: retried");
            slot.set_state(device, MonitorStatus::Retrying(e.to_string().into()));
            Configured::Retry
        }
    }
}

/// What a link's event pump runs on: the gateway (weakly), the link, its queue.
type PumpParts = (Weak<Gateway>, Arc<LinkSlot>, mpsc::Receiver<PumpIn>);

/// What a tracker output is as an event: its device, kind and body.
pub fn event_parts(o: Out) -> (String, EventKind, Body) {
    match o {
        Out::Call {
            event,
            device,
            call,
            cause,
            extra,
        } => (device, event, Body::Call { call, cause, extra }),
        Out::Agent { device, agent } => (device, EventKind::AgentState, Body::Agent(agent)),
    }
}

/// A link's event pump: its events, and the agent states of request results, into
/// published events. It holds the gateway weakly (it may run on a thread of its own, which
/// the end of the runtime does not stop): it stops with the link (`stop`), when the
/// gateway is gone (its drop cancels `stop`), or when its queue is closed.
async fn pump(gw: Weak<Gateway>, slot: Arc<LinkSlot>, mut rx: mpsc::Receiver<PumpIn>) {
    let stop = slot.stop.clone();
    // what is queued is taken in batches: one wake-up for many events when busy
    let mut batch = Vec::with_capacity(PUMP_BATCH);
    let mut behind = Behind::default();
    // while behind, a look now and then whether it is over (no events may come)
    let mut look = tokio::time::interval(Duration::from_millis(250));
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let n = tokio::select! {
            // first: a link stopped by a reload releases its association, and the `Down`
            // that brings must not reach clients before the gateway's own `link.down`
            // (the stop is given before the release starts, so it is seen first)
            biased;
            _ = stop.cancelled() => break,
            n = rx.recv_many(&mut batch, PUMP_BATCH) => n,
            _ = look.tick(), if behind.since.is_some() => {
                let Some(gw) = gw.upgrade() else { break };
                behind.check(&gw, &slot, None);
                continue;
            }
        };
        let Some(gw) = gw.upgrade().filter(|_| n > 0) else {
            break;
        };
        // the oldest waited longest: the first link event of the batch, since its frame
        // was decoded, and its octets before that in the link's read-ahead (about: those
        // the link took last)
        let lag = batch.iter().find_map(|i| match i {
            PumpIn::Link(_, received) => Some(received.elapsed().max(slot.link.read_waited())),
            _ => None,
        });
        behind.check(&gw, &slot, lag);
        for item in batch.drain(..) {
            pump_one(&gw, &slot, item);
        }
    }
    if let Some(gw) = gw.upgrade() {
        behind.leave(&gw, &slot);
    }
    debug!(link = %slot.name, "event pump stopped");
}

/// Whether the gateway is behind a link's events ([`Gateway::is_behind`]), as the link's
/// event pump sees them.
#[derive(Default)]
struct Behind {
    /// Behind since then ...
    since: Option<tokio::time::Instant>,
    /// ... and an event waited the lag of the rule or more last then.
    last: Option<tokio::time::Instant>,
    /// Told that it lasts ([`BehindRule`]'s `warn`).
    warned: bool,
}

impl Behind {
    /// An event waited `lag` for the pump (`None`: only a look at the time).
    fn check(&mut self, gw: &Gateway, slot: &LinkSlot, lag: Option<Duration>) {
        let BehindRule {
            lag: limit,
            hold,
            warn: warn_after,
        } = gw.behind_rule();
        let now = tokio::time::Instant::now();
        match lag {
            Some(lag) if lag >= limit => {
                self.last = Some(now);
                match self.since {
                    None => {
                        self.since = Some(now);
                        slot.behind.store(true, Ordering::Relaxed);
                        slot.behind_periods.fetch_add(1, Ordering::Relaxed);
                        gw.behind_links.fetch_add(1, Ordering::Relaxed);
                        info!(link = %slot.name, waited_ms = lag.as_millis() as u64, limit_ms = limit.as_millis() as u64,
                              "the gateway is behind the link's events (one waited that long between the PBX socket and the event pump): events to busy clients are batched (api.write_coalesce_behind_ms) until none has for {} s", hold.as_secs_f64());
                    }
                    Some(since) if !self.warned && now.duration_since(since) >= warn_after => {
                        self.warned = true;
                        warn!(link = %slot.name, behind_s = now.duration_since(since).as_secs(),
                              "the gateway has been behind the link's events for a while: it is near what it can serve here (docs/SCALING.md); events to busy clients are batched (api.write_coalesce_behind_ms) meanwhile");
                    }
                    Some(_) => {}
                }
            }
            _ => {
                if self.last.is_some_and(|l| now.duration_since(l) >= hold) {
                    self.leave(gw, slot);
                }
            }
        }
    }

    /// Not behind any more (caught up, or the pump stops).
    fn leave(&mut self, gw: &Gateway, slot: &LinkSlot) {
        self.last = None;
        self.warned = false;
        if let Some(since) = self.since.take() {
            slot.behind.store(false, Ordering::Relaxed);
            gw.behind_links.fetch_sub(1, Ordering::Relaxed);
            info!(link = %slot.name, behind_s = since.elapsed().as_secs_f64(),
                  "the gateway caught up with the link's events: events are written to clients as they come again");
        }
    }
}

/// At most one info line a second about resyncs that changed a device's calls.
static RESYNC_LOG: std::sync::LazyLock<crate::logging::LogLimit> =
    std::sync::LazyLock::new(crate::logging::LogLimit::new);

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
                // one line a second at info (an overload's resyncs are thousands), the
                // rest at debug
                match RESYNC_LOG.allow() {
                    Some(left_out) => {
                        info!(link = %slot.name, %device, events = outs.len(), left_out,
                              "resync: the device's calls brought up to date (left_out: devices brought up to date since the last such line, logged at debug)")
                    }
                    None => {
                        debug!(link = %slot.name, %device, events = outs.len(), "resync: the device's calls brought up to date")
                    }
                }
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
            // configured devices: the link remembers them once monitored (it monitors
            // them again itself); the others are started by their own task, paced
            slot.configured_wake.notify_one();
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
            if slot.states().contains_key(&device) {
                slot.set_state(&device, MonitorStatus::Active);
            }
            // re-monitored by the link after an outage: bring the view up to date
            gw.resync_asked(slot, device);
        }
        LinkEvent::Resync { device, reason } => {
            // the link says events may have been lost: the same snapshot resync (the link
            // warned of the cause once for all its devices: shed events, lost messages)
            debug!(link = %slot.name, %device, %reason, "resynchronising");
            gw.resync_asked(slot, device);
        }
        LinkEvent::MonitorLost {
            device,
            reason,
            forgotten,
        } => {
            warn!(link = %slot.name, %device, %reason, forgotten, "monitor lost");
            // the link forgets a device only when monitoring it again failed for good;
            // otherwise it monitors it again itself (`Monitored` with `again` follows)
            if slot.is_pinned(&device) {
                slot.set_state(&device, MonitorStatus::Retrying(reason.as_str().into()));
                if forgotten {
                    slot.configured_wake.notify_one(); // started again by the configured task
                }
            } else if slot.states().contains_key(&device) {
                let st = if forgotten {
                    MonitorStatus::Refused(reason.as_str().into())
                } else {
                    MonitorStatus::Retrying(reason.as_str().into())
                };
                slot.set_state(&device, st);
            }
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
