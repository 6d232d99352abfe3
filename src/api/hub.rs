//! The hub: sequence numbers, the replay buffer, subscriptions and fan-out to clients with
//! bounded queues and the `lagged` policy (a client whose queue is full when an event comes
//! is cut: it gets no more events, is told from which `seq` on it missed them, and is
//! disconnected; it may reconnect and re-monitor with `after`).

use super::protocol::rfc3339;
use crate::config::ApiConfig;
use crate::gateway::{Body, Event, Subscriber};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub type ClientId = u64;

/// A device on a link.
pub type DeviceKey = (String, String);

/// What a client's writer task shares with the hub.
#[derive(Debug, Default)]
pub struct ClientShared {
    /// The first `seq` that was dropped for this client, until it is told.
    pub lagged_from: Mutex<Option<u64>>,
    /// Cancelled when an event found the client's queue full (`client_queue`): it gets
    /// nothing more, and its session writes what is queued, `lagged`, and closes.
    pub cut: CancellationToken,
}

struct Slot {
    events: mpsc::Sender<Arc<str>>,
    shared: Arc<ClientShared>,
    subs: BTreeSet<DeviceKey>,
}

struct Buffered {
    seq: u64,
    key: Option<DeviceKey>,
    line: Arc<str>,
    at: Instant,
}

/// The replay buffer: the latest events, bounded by count, age and octets (whichever
/// bound is hit first evicts the oldest).
struct ReplayBuffer {
    events: VecDeque<Buffered>,
    /// The octets of the buffered lines.
    bytes: usize,
    /// The highest seq no longer buffered (evicted, or never kept): `after` below it
    /// cannot be replayed gap-free.
    evicted: u64,
}

struct State {
    seq: u64,
    buffer: ReplayBuffer,
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
    replay_age: Duration,
    replay_bytes: usize,
}

/// What `subscribe` did for `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub replayed: usize,
    /// Events after `after` are no longer buffered: the client missed some.
    pub gap: bool,
}

impl Hub {
    /// A hub with the limits of `[api]`: `max_clients`, `client_queue`, and the replay
    /// buffer's `replay_buffer` (events), `replay_age_s` and `replay_bytes`.
    pub fn new(cfg: &ApiConfig) -> Hub {
        Hub {
            state: Mutex::new(State {
                seq: 0,
                buffer: ReplayBuffer {
                    events: VecDeque::new(),
                    bytes: 0,
                    evicted: 0,
                },
                clients: HashMap::new(),
                next_client: 1,
                dropped: 0,
                closed: None,
            }),
            max_clients: cfg.max_clients,
            queue: cfg.client_queue.max(1),
            replay: cfg.replay_buffer,
            replay_age: Duration::from_secs(cfg.replay_age_s),
            replay_bytes: cfg.replay_bytes,
        }
    }

    /// The replay buffer now: (events, octets of their lines, the highest seq evicted).
    pub fn replay_stats(&self) -> (usize, usize, u64) {
        let mut s = self.lock();
        self.evict(&mut s, Instant::now());
        (s.buffer.events.len(), s.buffer.bytes, s.buffer.evicted)
    }

    /// Drop the oldest buffered events while any bound is exceeded.
    fn evict(&self, s: &mut State, now: Instant) {
        let b = &mut s.buffer;
        while let Some(f) = b.events.front() {
            let over = b.events.len() > self.replay
                || b.bytes > self.replay_bytes
                || now.saturating_duration_since(f.at) > self.replay_age;
            if !over {
                break;
            }
            b.bytes -= f.line.len();
            b.evicted = f.seq;
            b.events.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // a panic while holding the lock cannot leave the state inconsistent in a way
        // that matters more than stopping: keep serving
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new client: its id, the receiving end of its event queue and the lag flag; `None`
    /// when the gateway has `max_clients` already.
    pub fn register(&self) -> Option<(ClientId, mpsc::Receiver<Arc<str>>, Arc<ClientShared>)> {
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

    /// The client left; the devices it was subscribed to. (Its monitor counts are the
    /// gateway's: the session gives them back with `Gateway::monitor_release_all`.)
    pub fn unregister(&self, id: ClientId) -> Vec<DeviceKey> {
        self.lock()
            .clients
            .remove(&id)
            .map(|s| s.subs.into_iter().collect())
            .unwrap_or_default()
    }

    /// The client gets no more events (it is leaving; [`Hub::unregister`] follows).
    pub fn unsubscribe_all(&self, id: ClientId) {
        if let Some(c) = self.lock().clients.get_mut(&id) {
            c.subs.clear();
        }
    }

    /// Events that may wait for one client (`client_queue`).
    pub fn queue(&self) -> usize {
        self.queue
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
        s.buffer.bytes += line.len();
        s.buffer.events.push_back(Buffered {
            seq,
            key: key.clone(),
            line: line.clone(),
            at: Instant::now(),
        });
        self.evict(&mut s, Instant::now());
        let mut dropped = 0;
        for c in s.clients.values_mut() {
            let wants = match &key {
                Some(k) => c.subs.contains(k),
                None => true,
            };
            if !wants || c.shared.cut.is_cancelled() {
                continue;
            }
            match c.events.try_send(line.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // a client that does not keep up is cut here, never waited for: its
                    // memory is its queue, and nobody else is delayed
                    dropped += 1;
                    let mut l = c
                        .shared
                        .lagged_from
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if l.is_none() {
                        *l = Some(seq);
                    }
                    c.shared.cut.cancel();
                }
                // the session is ending
                Err(mpsc::error::TrySendError::Closed(_)) => {}
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

    /// Subscribe a client to a device; with `after`, the buffered events of that device
    /// with a greater seq are queued for it first, all of them or none: none (`gap`) when
    /// the buffer no longer reaches back to `after` + 1 (an event after it was evicted by
    /// any bound), when `after` is beyond the last seq (not a seq of this gateway run), or
    /// when they do not all fit in the client's queue now.
    pub fn subscribe(&self, id: ClientId, key: DeviceKey, after: Option<u64>) -> Replay {
        let mut s = self.lock();
        let mut rep = Replay {
            replayed: 0,
            gap: false,
        };
        if let Some(after) = after {
            self.evict(&mut s, Instant::now());
            rep.gap = after < s.buffer.evicted || after > s.seq;
            let lines: Vec<Arc<str>> = if rep.gap {
                Vec::new()
            } else {
                s.buffer
                    .events
                    .iter()
                    .filter(|b| b.seq > after && b.key.as_ref() == Some(&key))
                    .map(|b| b.line.clone())
                    .collect()
            };
            if let Some(c) = s.clients.get(&id) {
                if lines.len() > c.events.capacity() {
                    rep.gap = true;
                } else {
                    for l in lines {
                        // room checked above, under the lock every sender takes
                        if c.events.try_send(l).is_err() {
                            rep.gap = true;
                            break;
                        }
                        rep.replayed += 1;
                    }
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

/// Figures for the metrics (`/metrics`), read at scrape time.
impl Hub {
    /// Events waiting in the fullest client queue now (`client_queue` minus the room left
    /// in its sender).
    pub fn max_queue_depth(&self) -> usize {
        self.lock()
            .clients
            .values()
            .map(|c| self.queue.saturating_sub(c.events.capacity()))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(d: &str) -> DeviceKey {
        ("pbx1".into(), d.into())
    }

    fn limits(max_clients: usize, client_queue: usize, replay_buffer: usize) -> ApiConfig {
        ApiConfig {
            max_clients,
            client_queue,
            replay_buffer,
            ..ApiConfig::default()
        }
    }

    /// An event at 201 with `n` octets of user data.
    fn big(hub: &Hub, n: usize) -> u64 {
        let mut m = Map::new();
        m.insert("call".into(), json!({"variables": {"uui": "x".repeat(n)}}));
        hub.publish_at(
            SystemTime::UNIX_EPOCH,
            "pbx1",
            Some("201"),
            "call.updated",
            m,
        )
    }

    #[tokio::test]
    async fn the_replay_buffer_is_bounded_by_octets() {
        // 20 KB of user data per event: the line is 20 000 octets and the rest
        let line = 20_000 + r#"{"type":"event","event":"call.updated","seq":1,"time":"1970-01-01T00:00:00.000Z","link":"pbx1","device":"201","call":{"variables":{"uui":""}}}"#.len();
        assert_eq!(line, 20_142);
        // the defaults (a queue large enough for the replay): at most 64 MiB, not
        // 3 400 x 20 KB (68.5 MB; 10 000 of them, the default count, would be 201 MB)
        let hub = Hub::new(&ApiConfig {
            client_queue: 5000,
            ..ApiConfig::default()
        });
        for _ in 0..9 {
            big(&hub, 20_000);
        }
        assert_eq!(
            hub.replay_stats(),
            (9, 9 * line, 0),
            "seq 1..9 are one digit"
        );
        for _ in 9..3400 {
            big(&hub, 20_000);
        }
        let (n, bytes, evicted) = hub.replay_stats();
        assert!(bytes <= 64 << 20, "{bytes}");
        // 64 MiB hold the last 3331 (seq 70..3400: 2 to 4 digits), 67.1 MB
        assert_eq!((n, bytes, evicted), (3331, 67_102_035, 69));
        assert_eq!(
            bytes,
            30 * (line + 1) + 900 * (line + 2) + 2401 * (line + 3)
        );
        // a client that saw 68 missed 69: gap; one that saw 69 gets all the rest
        let (a, _ra, _) = hub.register().unwrap();
        assert_eq!(
            hub.subscribe(a, key("201"), Some(68)),
            Replay {
                replayed: 0,
                gap: true
            }
        );
        let (b, mut rb, _) = hub.register().unwrap();
        assert_eq!(
            hub.subscribe(b, key("201"), Some(69)),
            Replay {
                replayed: 3331,
                gap: false
            }
        );
        let first: Value = serde_json::from_str(&rb.recv().await.unwrap()).unwrap();
        assert_eq!(first["seq"], 70);
        // a tiny bound: one line fits, two do not; a line larger than the bound is not kept
        let hub = Hub::new(&ApiConfig {
            replay_bytes: 2 * line - 1,
            ..ApiConfig::default()
        });
        big(&hub, 20_000);
        big(&hub, 20_000);
        assert_eq!(hub.replay_stats(), (1, line, 1));
        big(&hub, 2 * line);
        assert_eq!(hub.replay_stats(), (0, 0, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_replay_buffer_is_bounded_by_age_and_count() {
        let hub = Hub::new(&ApiConfig {
            replay_buffer: 3,
            replay_age_s: 600,
            ..ApiConfig::default()
        });
        for _ in 0..4 {
            big(&hub, 1);
        }
        assert_eq!(hub.replay_stats().0, 3, "by count");
        assert_eq!(hub.replay_stats().2, 1);
        tokio::time::advance(Duration::from_secs(300)).await;
        big(&hub, 1);
        assert_eq!((hub.replay_stats().0, hub.replay_stats().2), (3, 2));
        tokio::time::advance(Duration::from_secs(301)).await;
        // 2..4 are older than 600 s now, 5 is not
        assert_eq!((hub.replay_stats().0, hub.replay_stats().2), (1, 4));
        let (a, mut ra, _) = hub.register().unwrap();
        assert_eq!(
            hub.subscribe(a, key("201"), Some(3)),
            Replay {
                replayed: 0,
                gap: true
            },
            "4 is gone"
        );
        assert_eq!(
            hub.subscribe(a, key("201"), Some(4)),
            Replay {
                replayed: 1,
                gap: false
            }
        );
        let l: Value = serde_json::from_str(&ra.recv().await.unwrap()).unwrap();
        assert_eq!(l["seq"], 5);
        // a seq this gateway has not reached (a client of an earlier run): gap
        assert_eq!(
            hub.subscribe(a, key("201"), Some(6)),
            Replay {
                replayed: 0,
                gap: true
            }
        );
        // up to date: nothing to replay, no gap
        assert_eq!(
            hub.subscribe(a, key("201"), Some(5)),
            Replay {
                replayed: 0,
                gap: false
            }
        );
        // no replay at all
        let hub = Hub::new(&limits(1, 1, 0));
        big(&hub, 1);
        assert_eq!(hub.replay_stats(), (0, 0, 1));
    }

    #[tokio::test]
    async fn fan_out_replay_and_lagged() {
        let hub = Hub::new(&limits(2, 2, 3));
        let (a, mut ra, sa) = hub.register().unwrap();
        let (b, mut rb, _) = hub.register().unwrap();
        assert!(hub.register().is_none(), "max_clients");
        hub.subscribe(a, key("201"), None);
        hub.subscribe(b, key("202"), None);
        let s1 = hub.publish("pbx1", Some("201"), "call.offering", Map::new());
        hub.publish("pbx1", Some("202"), "call.offering", Map::new());
        hub.publish("pbx1", None, "link.down", Map::new());
        let l: Value = serde_json::from_str(&ra.recv().await.unwrap()).unwrap();
        assert_eq!(
            (l["seq"].as_u64(), l["device"].as_str()),
            (Some(s1), Some("201"))
        );
        assert_eq!(
            serde_json::from_str::<Value>(&ra.recv().await.unwrap()).unwrap()["event"],
            "link.down"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&rb.recv().await.unwrap()).unwrap()["device"],
            "202"
        );
        // a slow client: queue of 2, the third finds it full: a is cut from that seq on
        for _ in 0..3 {
            hub.publish("pbx1", Some("201"), "call.updated", Map::new());
        }
        assert_eq!(*sa.lagged_from.lock().unwrap(), Some(hub.last_seq()));
        assert!(sa.cut.is_cancelled());
        assert_eq!(hub.dropped(), 1);
        // nothing more is queued for it, nothing more counted; b goes on
        ra.recv().await.unwrap();
        hub.publish("pbx1", None, "link.up", Map::new());
        assert_eq!(hub.dropped(), 1);
        assert_eq!(
            serde_json::from_str::<Value>(&rb.recv().await.unwrap()).unwrap()["event"],
            "link.down"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&rb.recv().await.unwrap()).unwrap()["event"],
            "link.up"
        );
        let l: Value = serde_json::from_str(&ra.recv().await.unwrap()).unwrap();
        assert_eq!(l["seq"], 5, "the second of the two queued");
        assert!(ra.try_recv().is_err(), "link.up was not queued for a");
        // replay: buffer of 3 holds seq 5..7; after=4 replays 5 and 6 for 201
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
            serde_json::from_str::<Value>(&rc.recv().await.unwrap()).unwrap()["seq"],
            5
        );
        // after=1: 2..3 are gone
        let r = hub.subscribe(c, key("202"), Some(1));
        assert!(r.gap);
        assert_eq!(hub.unregister(c).len(), 2);
    }
}
