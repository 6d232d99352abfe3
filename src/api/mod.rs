//! The NDJSON port (docs/PROTOCOL.md): the gateway that ties PBX links, call trackers and
//! clients together.
//!
//! - [`protocol`]: request / response / event lines and error kinds;
//! - [`hub`]: seq numbers, replay buffer, subscriptions, bounded fan-out, `lagged`;
//! - [`ops`]: every operation of PROTOCOL.md, mapped onto CSTA services;
//! - [`server`]: the TCP listener and client sessions.

pub mod hub;
pub mod ops;
pub mod protocol;
pub mod server;

use crate::config::{Config, LinkSection};
use crate::link::{Link, LinkConfig, LinkEvent};
use crate::model::{AgentView, InternalRule, Out, Tracker, TrackerConfig};
use ctigate_csta::events::Event;
use hub::Hub;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// One PBX link with its tracker and monitor reference counts.
pub struct LinkSlot {
    pub name: String,
    pub link: Link,
    pub tracker: Mutex<Tracker>,
    /// Clients watching each device (one PBX monitor however many).
    pub refs: tokio::sync::Mutex<BTreeMap<String, usize>>,
    /// Devices monitored from the configuration (never stopped).
    pub pinned: BTreeSet<String>,
    /// The link's event pump, for the agent states of request results (agent.login,
    /// agent.state, ...): queued after the PBX events that came before the result and
    /// before those after it, so that no event reports a state older than one published.
    pub pump: mpsc::Sender<PumpIn>,
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
    pub fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Gateway {
    pub hub: Hub,
    pub links: BTreeMap<String, Arc<LinkSlot>>,
    pub cfg: Config,
    pub started: Instant,
}

fn link_config(l: &LinkSection) -> LinkConfig {
    LinkConfig {
        name: l.name.clone(),
        address: l.address.clone(),
        context: l.context.clone(),
        versions: l.versions.clone(),
        password: l.password.clone(),
        handshake: l.handshake,
        request_timeout: l.request_timeout(),
        keepalive_idle: std::time::Duration::from_secs(l.keepalive_idle_s),
        keepalive_misses: l.keepalive_misses,
        reconnect_min: std::time::Duration::from_millis(l.reconnect_min_ms),
        reconnect_max: std::time::Duration::from_millis(l.reconnect_max_ms),
        ..LinkConfig::default()
    }
}

impl Gateway {
    /// Start every link (they connect and reconnect by themselves) and the event pumps.
    pub fn start(cfg: Config) -> Arc<Gateway> {
        let mut links = BTreeMap::new();
        let mut pumps = Vec::new();
        for l in &cfg.links {
            let (tx, rx) = mpsc::channel(4096);
            let link = Link::start(link_config(l), tx.clone());
            let tracker = Tracker::new(TrackerConfig {
                link: l.name.clone(),
                internal: InternalRule {
                    max_len: l.internal_max_len,
                    prefixes: l.internal_prefixes.clone(),
                },
            });
            let slot = Arc::new(LinkSlot {
                name: l.name.clone(),
                link,
                tracker: Mutex::new(tracker),
                refs: tokio::sync::Mutex::new(BTreeMap::new()),
                pinned: l.monitor.iter().cloned().collect(),
                pump: tx,
            });
            links.insert(l.name.clone(), slot.clone());
            pumps.push((slot, rx));
        }
        let gw = Arc::new(Gateway {
            hub: Hub::new(
                cfg.api.max_clients,
                cfg.api.client_queue,
                cfg.api.replay_buffer,
            ),
            links,
            cfg,
            started: Instant::now(),
        });
        for (slot, rx) in pumps {
            tokio::spawn(pump(gw.clone(), slot, rx));
        }
        gw
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
                } => {
                    let mut m = Map::new();
                    m.insert(
                        "call".into(),
                        serde_json::to_value(&call).unwrap_or(Value::Null),
                    );
                    m.insert("cause".into(), cause.map_or(Value::Null, Value::String));
                    m.extend(extra);
                    self.hub.publish(link, Some(&device), event.as_str(), m);
                }
                Out::Agent { device, agent } => {
                    let m = match serde_json::to_value(&agent) {
                        Ok(Value::Object(m)) => m,
                        _ => Map::new(),
                    };
                    self.hub.publish(link, Some(&device), "agent.state", m);
                }
            }
        }
    }

    /// Links for `hello` and `status`.
    pub fn link_states(&self) -> Value {
        Value::Array(
            self.links
                .values()
                .map(|l| json!({"name": l.name, "state": if l.link.is_up() { "up" } else { "down" }}))
                .collect(),
        )
    }
}

/// Monitor a configured device (once the link is up) and take its snapshot.
async fn monitor_configured(gw: &Gateway, slot: &LinkSlot, device: &str) {
    match slot.link.monitor(device).await {
        Ok(Ok(())) => {
            info!(link = %slot.name, device, "monitoring (configured)");
            ops::resync(gw, slot, device).await;
        }
        Ok(Err(e)) => {
            warn!(link = %slot.name, device, error = ?e, "the PBX refused the configured monitor")
        }
        Err(e) => {
            debug!(link = %slot.name, device, error = %e, "configured monitor waits for the link")
        }
    }
}

/// Turn a link's events, and the agent states of request results, into published events.
async fn pump(gw: Arc<Gateway>, slot: Arc<LinkSlot>, mut rx: mpsc::Receiver<PumpIn>) {
    while let Some(item) = rx.recv().await {
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
                continue;
            }
        };
        match ev {
            LinkEvent::Up => {
                info!(link = %slot.name, "link up");
                gw.hub.publish(&slot.name, None, "link.up", Map::new());
                // configured devices: the link remembers them once monitored (then this
                // joins its own re-monitor); before that, a start needs the link up
                for d in slot.pinned.clone() {
                    let (gw, slot) = (gw.clone(), slot.clone());
                    tokio::spawn(async move { monitor_configured(&gw, &slot, &d).await });
                }
            }
            LinkEvent::Down { reason } => {
                warn!(link = %slot.name, %reason, "link down");
                let mut m = Map::new();
                m.insert("reason".into(), json!(reason));
                gw.hub.publish(&slot.name, None, "link.down", m);
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
                tokio::spawn(async move { ops::resync(&gw, &slot, &device).await });
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
                    continue;
                };
                match &report.event {
                    Event::OutOfService(_) => {
                        gw.hub.publish(
                            &slot.name,
                            Some(&device),
                            "device.out_of_service",
                            Map::new(),
                        );
                    }
                    Event::BackInService(_) => {
                        gw.hub
                            .publish(&slot.name, Some(&device), "device.in_service", Map::new());
                    }
                    e => {
                        let outs = slot.tracker().on_event(&device, e, SystemTime::now());
                        gw.publish(&slot.name, outs);
                    }
                }
            }
        }
    }
}
