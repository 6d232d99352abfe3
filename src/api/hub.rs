//! The hub: sequence numbers, the replay buffer, subscriptions and fan-out to clients with
//! bounded queues and the `lagged` policy (a client that falls behind loses events, is told
//! from which `seq` on, and may re-monitor with `after`).

use super::protocol::rfc3339;
use crate::gateway::{Body, Event, Subscriber};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

pub type ClientId = u64;

/// A device on a link.
pub type DeviceKey = (String, String);

/// What a client's writer task shares with the hub.
#[derive(Debug, Default)]
pub struct ClientShared {
    /// The first `seq` that was dropped for this client, until it is told.
    pub lagged_from: Mutex<Option<u64>>,
}

/// An event line queued for a client, with its seq (the writer places `lagged` by it).
pub type EventLine = (u64, Arc<str>);

struct Slot {
    events: mpsc::Sender<EventLine>,
    shared: Arc<ClientShared>,
    subs: BTreeSet<DeviceKey>,
}

struct Buffered {
    seq: u64,
    key: Option<DeviceKey>,
    line: Arc<str>,
}

struct State {
    seq: u64,
    buffer: VecDeque<Buffered>,
    clients: HashMap<ClientId, Slot>,
    next_client: ClientId,
    /// Events lost to slow clients, for `status`.
    dropped: u64,
    /// The `shutdown` line, once the hub is closed: nothing is published after it.
    closed: Option<Arc<str>>,
}

pub struct Hub {
    state: Mutex<State>,
    max_clients: usize,
    queue: usize,
    replay: usize,
}

/// What `subscribe` did for `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub replayed: usize,
    /// Events after `after` are no longer buffered: the client missed some.
    pub gap: bool,
}

impl Hub {
    pub fn new(max_clients: usize, queue: usize, replay: usize) -> Hub {
        Hub {
            state: Mutex::new(State {
                seq: 0,
                buffer: VecDeque::new(),
                clients: HashMap::new(),
                next_client: 1,
                dropped: 0,
                closed: None,
            }),
            max_clients,
            queue: queue.max(1),
            replay,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // a panic while holding the lock cannot leave the state inconsistent in a way
        // that matters more than stopping: keep serving
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new client: its id, the receiving end of its event queue and the lag flag; `None`
    /// when the gateway has `max_clients` already.
    pub fn register(&self) -> Option<(ClientId, mpsc::Receiver<EventLine>, Arc<ClientShared>)> {
        let mut s = self.lock();
        if s.clients.len() >= self.max_clients {
            return None;
        }
        let id = s.next_client;
        s.next_client += 1;
        let (tx, rx) = mpsc::channel(self.queue);
        let shared = Arc::new(ClientShared::default());
        s.clients.insert(
            id,
            Slot {
                events: tx,
                shared: shared.clone(),
                subs: BTreeSet::new(),
            },
        );
        Some((id, rx, shared))
    }

    /// The client left; its subscriptions (for the monitor reference counts).
    pub fn unregister(&self, id: ClientId) -> Vec<DeviceKey> {
        self.lock()
            .clients
            .remove(&id)
            .map(|s| s.subs.into_iter().collect())
            .unwrap_or_default()
    }

    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Publish an event: `key` = (link, device), or `None` for a link event that every
    /// client gets. Returns its seq.
    pub fn publish(
        &self,
        link: &str,
        device: Option<&str>,
        event: &str,
        body: Map<String, Value>,
    ) -> u64 {
        self.publish_at(SystemTime::now(), link, device, event, body)
    }

    /// [`Hub::publish`] with the event's time. After [`Hub::close`] nothing is published
    /// (the last seq is returned).
    pub fn publish_at(
        &self,
        time: SystemTime,
        link: &str,
        device: Option<&str>,
        event: &str,
        body: Map<String, Value>,
    ) -> u64 {
        let mut s = self.lock();
        if s.closed.is_some() {
            return s.seq;
        }
        s.seq += 1;
        let seq = s.seq;
        let mut m = Map::new();
        m.insert("type".into(), json!("event"));
        m.insert("event".into(), json!(event));
        m.insert("seq".into(), json!(seq));
        m.insert("time".into(), json!(rfc3339(time)));
        m.insert("link".into(), json!(link));
        if let Some(d) = device {
            m.insert("device".into(), json!(d));
        }
        m.extend(body);
        let line: Arc<str> = Value::Object(m).to_string().into();
        let key = device.map(|d| (link.to_string(), d.to_string()));
        if self.replay > 0 {
            if s.buffer.len() >= self.replay {
                s.buffer.pop_front();
            }
            s.buffer.push_back(Buffered {
                seq,
                key: key.clone(),
                line: line.clone(),
            });
        }
        let mut dropped = 0;
        for c in s.clients.values() {
            let wants = match &key {
                Some(k) => c.subs.contains(k),
                None => true,
            };
            if !wants {
                continue;
            }
            if c.events.try_send((seq, line.clone())).is_err() {
                dropped += 1;
                let mut l = c
                    .shared
                    .lagged_from
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if l.is_none() {
                    *l = Some(seq);
                }
            }
        }
        s.dropped += dropped;
        seq
    }

    /// Close the hub for shutdown: the `shutdown` event line (its own seq, after every
    /// event published); the same line on every call. Nothing is published afterwards.
    pub fn close(&self) -> Arc<str> {
        let mut s = self.lock();
        if let Some(l) = &s.closed {
            return l.clone();
        }
        s.seq += 1;
        let line: Arc<str> = json!({"type": "event", "event": "shutdown", "seq": s.seq,
            "time": rfc3339(SystemTime::now()),
            "message": "the gateway is shutting down; reconnect and re-monitor with `after`"})
        .to_string()
        .into();
        s.closed = Some(line.clone());
        line
    }

    /// Subscribe a client to a device; with `after`, buffered events of that device with a
    /// greater seq are queued first.
    pub fn subscribe(&self, id: ClientId, key: DeviceKey, after: Option<u64>) -> Replay {
        let mut s = self.lock();
        let mut rep = Replay {
            replayed: 0,
            gap: false,
        };
        if let Some(after) = after {
            let oldest = s.buffer.front().map_or(s.seq + 1, |b| b.seq);
            rep.gap = after + 1 < oldest && after < s.seq;
            let lines: Vec<EventLine> = s
                .buffer
                .iter()
                .filter(|b| b.seq > after && b.key.as_ref() == Some(&key))
                .map(|b| (b.seq, b.line.clone()))
                .collect();
            if let Some(c) = s.clients.get(&id) {
                for l in lines {
                    if c.events.try_send(l).is_err() {
                        rep.gap = true;
                        break;
                    }
                    rep.replayed += 1;
                }
            }
        }
        if let Some(c) = s.clients.get_mut(&id) {
            c.subs.insert(key);
        }
        rep
    }

    /// Unsubscribe; false when the client was not subscribed.
    pub fn unsubscribe(&self, id: ClientId, key: &DeviceKey) -> bool {
        self.lock()
            .clients
            .get_mut(&id)
            .is_some_and(|c| c.subs.remove(key))
    }

    pub fn is_subscribed(&self, id: ClientId, key: &DeviceKey) -> bool {
        self.lock()
            .clients
            .get(&id)
            .is_some_and(|c| c.subs.contains(key))
    }

    /// Subscriber counts per device (for `status`).
    pub fn subscriptions(&self) -> BTreeMap<DeviceKey, usize> {
        let mut m = BTreeMap::new();
        for c in self.lock().clients.values() {
            for k in &c.subs {
                *m.entry(k.clone()).or_insert(0) += 1;
            }
        }
        m
    }
}

impl Subscriber for Hub {
    fn on_event(&self, ev: &Event) {
        let mut m = Map::new();
        match &ev.body {
            Body::Call { call, cause, extra } => {
                m.insert(
                    "call".into(),
                    serde_json::to_value(call).unwrap_or(Value::Null),
                );
                m.insert(
                    "cause".into(),
                    cause.clone().map_or(Value::Null, Value::String),
                );
                if let Ok(Value::Object(x)) = serde_json::to_value(extra) {
                    m.extend(x);
                }
            }
            Body::Agent(agent) => {
                if let Ok(Value::Object(a)) = serde_json::to_value(agent) {
                    m = a;
                }
            }
            Body::LinkUp { side } => {
                m.insert("side".into(), json!(side.index));
                m.insert("address".into(), json!(side.address));
            }
            Body::LinkDown { reason, side } => {
                m.insert("reason".into(), json!(reason));
                m.insert("side".into(), json!(side.index));
                m.insert("address".into(), json!(side.address));
            }
            Body::Unconfirmed {
                reason,
                retry_in_ms,
            } => {
                m.insert("reason".into(), json!(reason));
                m.insert("retry_in_ms".into(), json!(retry_in_ms));
            }
            Body::Empty => {}
        }
        self.publish_at(ev.time, &ev.link, ev.device.as_deref(), ev.kind.as_str(), m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(d: &str) -> DeviceKey {
        ("pbx1".into(), d.into())
    }

    #[tokio::test]
    async fn fan_out_replay_and_lagged() {
        let hub = Hub::new(2, 2, 3);
        let (a, mut ra, sa) = hub.register().unwrap();
        let (b, mut rb, _) = hub.register().unwrap();
        assert!(hub.register().is_none(), "max_clients");
        hub.subscribe(a, key("201"), None);
        hub.subscribe(b, key("202"), None);
        let s1 = hub.publish("pbx1", Some("201"), "call.offering", Map::new());
        hub.publish("pbx1", Some("202"), "call.offering", Map::new());
        hub.publish("pbx1", None, "link.down", Map::new());
        let l: Value = serde_json::from_str(&ra.recv().await.unwrap().1).unwrap();
        assert_eq!(
            (l["seq"].as_u64(), l["device"].as_str()),
            (Some(s1), Some("201"))
        );
        assert_eq!(
            serde_json::from_str::<Value>(&ra.recv().await.unwrap().1).unwrap()["event"],
            "link.down"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&rb.recv().await.unwrap().1).unwrap()["device"],
            "202"
        );
        // a slow client: queue of 2, the third is dropped and remembered
        for _ in 0..3 {
            hub.publish("pbx1", Some("201"), "call.updated", Map::new());
        }
        assert_eq!(*sa.lagged_from.lock().unwrap(), Some(hub.last_seq()));
        assert_eq!(hub.dropped(), 1);
        // replay: buffer of 3 holds seq 4..6; after=4 replays 5 and 6 for 201
        let (c, mut rc, _) = {
            hub.unregister(b);
            hub.register().unwrap()
        };
        let r = hub.subscribe(c, key("201"), Some(4));
        assert_eq!(
            r,
            Replay {
                replayed: 2,
                gap: false
            }
        );
        assert_eq!(
            serde_json::from_str::<Value>(&rc.recv().await.unwrap().1).unwrap()["seq"],
            5
        );
        // after=1: 2..3 are gone
        let r = hub.subscribe(c, key("202"), Some(1));
        assert!(r.gap);
        assert_eq!(hub.unregister(c).len(), 2);
    }
}
