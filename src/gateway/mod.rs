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
use crate::link::{Answer, CstaError, Link, LinkConfig, LinkCounters, LinkError, LinkEvent};
use crate::model::{AgentView, EventKind, InternalRule, Out, Tracker, TrackerConfig};
use ctigate_csta::events::Event as CstaEvent;
use ctigate_csta::ops::{Argument, OperationResult, SnapshotData, SnapshotDeviceArgument};
use ctigate_csta::types::{ConnectionId, DeviceId, LocalConnectionState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Items waiting for one link's event pump.
pub const PUMP_QUEUE: usize = 4096;
/// How long a link may take to release on shutdown beyond its own bound.
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// What the switch answers, as the link gives it: the link could not carry the request
/// (outer), or the switch refused it (inner).
pub type Reply<T> = Result<Result<T, CstaError>, LinkError>;

/// A device's calls as SnapshotDevice gives them: (connection, state) per call.
pub type SnapshotList = Vec<(ConnectionId, LocalConnectionState)>;

/// One PBX link with its tracker and monitor reference counts.
pub struct LinkSlot {
    pub name: String,
    pub link: Arc<dyn PbxLink>,
    tracker: Mutex<Tracker>,
    /// Clients watching each device (one PBX monitor however many).
    refs: tokio::sync::Mutex<BTreeMap<String, usize>>,
    /// Devices monitored from the configuration (never stopped).
    pub pinned: BTreeSet<String>,
    /// The last `Down` reason since the link was last up; `None` before any attempt
    /// ended (connecting) or while up.
    down: Mutex<Option<String>>,
    /// The link's event pump, for the agent states of request results (agent.login,
    /// agent.state, ...): queued after the PBX events that came before the result and
    /// before those after it, so that no event reports a state older than one published.
    pump: mpsc::Sender<PumpIn>,
}

/// What a link's event pump publishes, in the order it was queued.
// A `LinkEvent` is as large as an event report, as on the link's own channel.
#[allow(clippy::large_enum_variant)]
pub enum PumpIn {
    Link(LinkEvent),
    /// An agent state from a request's result ([`Tracker::set_agent`]); `done` gets the
    /// state as completed from what is known ([`Tracker::fill_agent`]).
    Agent {
        device: String,
        agent: AgentView,
        done: tokio::sync::oneshot::Sender<AgentView>,
    },
}

impl From<LinkEvent> for PumpIn {
    fn from(e: LinkEvent) -> PumpIn {
        PumpIn::Link(e)
    }
}

impl LinkSlot {
    /// Clients holding the PBX monitor of `device` (0 when none; configured devices are
    /// held by the configuration besides).
    pub async fn monitor_refs(&self, device: &str) -> usize {
        self.refs.lock().await.get(device).copied().unwrap_or(0)
    }

    /// The link's call tracker.
    pub fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
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
        }
    }
}

/// How a configured link is reached (the link layer's own settings).
pub fn link_config(l: &LinkSection) -> LinkConfig {
    LinkConfig {
        name: l.name.clone(),
        address: l.address.clone(),
        context: l.context.clone(),
        versions: l.versions.clone(),
        password: l.password.clone(),
        handshake: l.handshake,
        request_timeout: l.request_timeout(),
        keepalive_idle: Duration::from_secs(l.keepalive_idle_s),
        keepalive_misses: l.keepalive_misses,
        reconnect_min: Duration::from_millis(l.reconnect_min_ms),
        reconnect_max: Duration::from_millis(l.reconnect_max_ms),
        max_frame: l.max_frame,
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
    /// Malformed frames and rejects sent, over the link's lifetime.
    pub counters: LinkCounters,
}

/// The links, their trackers and the bus.
pub struct Gateway {
    pub links: BTreeMap<String, Arc<LinkSlot>>,
    pub bus: Bus,
    pub started: Instant,
    shutdown: CancellationToken,
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
            let (tx, rx) = mpsc::channel(PUMP_QUEUE);
            let link = connect(&spec, tx.clone());
            let tracker = Tracker::new(TrackerConfig {
                link: spec.name.clone(),
                internal: spec.internal.clone(),
            });
            let slot = Arc::new(LinkSlot {
                name: spec.name.clone(),
                link,
                tracker: Mutex::new(tracker),
                refs: tokio::sync::Mutex::new(BTreeMap::new()),
                pinned: spec.monitor.iter().cloned().collect(),
                down: Mutex::new(None),
                pump: tx,
            });
            links.insert(spec.name.clone(), slot.clone());
            pumps.push((slot, rx));
        }
        let gw = Arc::new(Gateway {
            links,
            bus: Bus::new(),
            started: Instant::now(),
            shutdown: CancellationToken::new(),
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
                    counters: l.link.counters(),
                }
            })
            .collect()
    }

    /// One more watcher of `device`: the PBX monitor starts with the first one (unless
    /// configured).
    pub async fn monitor_acquire(&self, s: &LinkSlot, device: &str) -> MonitorAnswer {
        let mut refs = s.refs.lock().await;
        let n = refs.get(device).copied().unwrap_or(0);
        if n == 0 && !s.pinned.contains(device) {
            if let Err(e) = s.link.monitor(device).await? {
                return Ok(Err(e));
            }
        }
        refs.insert(device.to_string(), n + 1);
        Ok(Ok(()))
    }

    /// A watcher of `device` left: the PBX monitor ends with the last one (unless
    /// configured).
    pub async fn monitor_release(&self, s: &LinkSlot, device: &str) {
        let mut refs = s.refs.lock().await;
        let n = refs.get(device).copied().unwrap_or(0);
        if n <= 1 {
            refs.remove(device);
            if !s.pinned.contains(device) {
                match s.link.unmonitor(device).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(device, error = ?e, "the PBX refused the monitor stop"),
                    Err(e) => warn!(device, error = %e, "monitor stop failed"),
                }
                s.tracker().forget_device(device);
            }
        } else {
            refs.insert(device.to_string(), n - 1);
        }
    }

    /// SnapshotDevice: (connection, state) per call.
    pub async fn snapshot_list(&self, s: &LinkSlot, device: &str) -> Reply<SnapshotList> {
        let arg = SnapshotDeviceArgument::new(DeviceId::dialing(device));
        let list = match s.link.request(arg.into()).await? {
            Ok(Some(OperationResult::SnapshotDevice(r))) => match r.data {
                SnapshotData::Data(l) => l
                    .iter()
                    .map(|i| {
                        let st = i
                            .compound_states()
                            .and_then(|v| v.last().copied())
                            .unwrap_or(LocalConnectionState::Null);
                        (i.connection_identifier.clone(), st)
                    })
                    .collect(),
                SnapshotData::ServiceCrossRefId(_) => Vec::new(),
            },
            Ok(_) => Vec::new(),
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(list))
    }

    /// Take a snapshot of `device` and bring its view up to date (events for what changed).
    pub async fn resync_now(&self, s: &LinkSlot, device: &str) -> Reply<()> {
        let list = match self.snapshot_list(s, device).await? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        let outs = s.tracker().resync(device, &list, SystemTime::now());
        self.publish(&s.name, outs);
        Ok(Ok(()))
    }

    /// After a (re)monitor: bring the device's calls up to date (failures are logged).
    pub async fn resync(&self, s: &LinkSlot, device: &str) {
        match self.resync_now(s, device).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(link = %s.name, device, error = %e, "resync snapshot refused"),
            Err(e) => warn!(link = %s.name, device, error = %e, "resync snapshot failed"),
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
        let (done, applied) = tokio::sync::oneshot::channel();
        let item = PumpIn::Agent {
            device: device.to_string(),
            agent,
            done,
        };
        if s.pump.send(item).await.is_err() {
            warn!(link = %s.name, device, "the event pump has stopped: agent state not published");
            return None;
        }
        applied.await.ok()
    }
}

/// Monitor a configured device (once the link is up) and take its snapshot.
async fn monitor_configured(gw: &Gateway, slot: &LinkSlot, device: &str) {
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
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => break,
            i = rx.recv() => match i {
                Some(i) => i,
                None => break,
            },
        };
        pump_one(&gw, &slot, item);
    }
    debug!(link = %slot.name, "event pump stopped");
}

fn pump_one(gw: &Arc<Gateway>, slot: &Arc<LinkSlot>, item: PumpIn) {
    let ev = match item {
        PumpIn::Link(ev) => ev,
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
    };
    match ev {
        LinkEvent::Up => {
            info!(link = %slot.name, "link up");
            *slot.down.lock().unwrap_or_else(|p| p.into_inner()) = None;
            gw.emit(&slot.name, None, EventKind::LinkUp, Body::Empty);
            // configured devices: the link remembers them once monitored (then this
            // joins its own re-monitor); before that, a start needs the link up
            for d in slot.pinned.clone() {
                let (gw, slot) = (gw.clone(), slot.clone());
                tokio::spawn(async move { monitor_configured(&gw, &slot, &d).await });
            }
        }
        LinkEvent::Down { reason } => {
            warn!(link = %slot.name, %reason, "link down");
            *slot.down.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            gw.emit(
                &slot.name,
                None,
                EventKind::LinkDown,
                Body::LinkDown { reason },
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
        }
    }
}
