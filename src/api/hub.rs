//! The hub: sequence numbers, the replay buffer, subscriptions and fan-out to clients with
//! bounded queues and the `lagged` policy (a client whose queue is full when an event comes
//! is cut: it gets no more events, is told from which `seq` on it missed them, and is
//! disconnected; it may reconnect and re-monitor with `after`).

use super::protocol::rfc3339;
use crate::config::ApiConfig;
use crate::gateway::{Body, Event, Subscriber};
use crate::FastMap;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// `cut` as a flag, for the fan-out's check per event (no lock).
    is_cut: AtomicBool,
    /// Notified when the client's queue is half full: a writer holding events back
    /// (`write_coalesce_ms`) writes them at once.
    pub flush: tokio::sync::Notify,
    /// The last `seq` published when the client registered: every event it gets comes
    /// after it (its `hello` says this one, not a later one that raced the registration).
    pub registered_after: u64,
    /// Events are queued for the client: an open gateway's client from its registration,
    /// else from its authentication ([`Hub::admit`]). Changed under the hub's lock only, so
    /// the seq of the admission splits the events exactly: none up to it is queued for the
    /// client, every one after it is.
    admitted: AtomicBool,
}

impl ClientShared {
    /// Whether events are queued for the client ([`Hub::admit`]).
    pub fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::Acquire)
    }
}

struct Slot {
    events: mpsc::Sender<Arc<str>>,
    shared: Arc<ClientShared>,
    subs: BTreeSet<DeviceKey>,
}

/// Who is subscribed to each device: link -> device -> clients (looked up by `&str`, no
/// allocation per event). Kept in step with every [`Slot::subs`]; a device without
/// subscribers has no entry.
#[derive(Default)]
struct Index(FastMap<String, FastMap<String, Vec<ClientId>>>);

impl Index {
    fn get(&self, link: &str, device: &str) -> &[ClientId] {
        self.0
            .get(link)
            .and_then(|d| d.get(device))
            .map_or(&[], Vec::as_slice)
    }

    fn add(&mut self, key: &DeviceKey, id: ClientId) {
        let v = self
            .0
            .entry(key.0.clone())
            .or_default()
            .entry(key.1.clone())
            .or_default();
        if !v.contains(&id) {
            v.push(id);
        }
    }

    fn remove(&mut self, key: &DeviceKey, id: ClientId) {
        let Some(devices) = self.0.get_mut(&key.0) else {
            return;
        };
        if let Some(v) = devices.get_mut(&key.1) {
            v.retain(|c| *c != id);
            if v.is_empty() {
                devices.remove(&key.1);
            }
        }
        if devices.is_empty() {
            self.0.remove(&key.0);
        }
    }
}

struct Buffered {
    seq: u64,
    /// The hash of the event's (link, device) ([`Hub::key_hash`]), `None` for a link event: no
    /// allocation per event for the key; a replay checks the line itself where it matches.
    key: Option<u64>,
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
    clients: FastMap<ClientId, Slot>,
    index: Index,
    next_client: ClientId,
    /// Events lost to slow clients, for `status`.
    dropped: u64,
    /// The `shutdown` line, once the hub is closed: nothing is published after it.
    closed: Option<Arc<str>>,
}

pub struct Hub {
    state: Mutex<State>,
    /// Devices one client may be subscribed to (`max_monitors_per_client`).
    max_subscriptions: AtomicUsize,
    max_clients: AtomicUsize,
    queue: usize,
    replay: usize,
    replay_age: Duration,
    replay_bytes: usize,
    /// The hasher of the replay buffer's device keys ([`Hub::key_hash`]).
    keys: foldhash::fast::RandomState,
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
                clients: FastMap::default(),
                index: Index::default(),
                next_client: 1,
                dropped: 0,
                closed: None,
            }),
            max_clients: AtomicUsize::new(cfg.max_clients),
            max_subscriptions: AtomicUsize::new(cfg.max_monitors_per_client),
            queue: cfg.client_queue.max(1),
            replay: cfg.replay_buffer,
            replay_age: Duration::from_secs(cfg.replay_age_s),
            replay_bytes: cfg.replay_bytes,
            keys: Default::default(),
        }
    }

    /// The replay buffer now: (events, octets of their lines, the highest seq evicted).
    pub fn replay_stats(&self) -> (usize, usize, u64) {
        let mut s = self.lock();
        self.evict(&mut s, Instant::now());
        (s.buffer.events.len(), s.buffer.bytes, s.buffer.evicted)
    }

    /// The hash of a device key in the replay buffer.
    fn key_hash(&self, link: &str, device: &str) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.keys.build_hasher();
        link.hash(&mut h);
        device.hash(&mut h);
        h.finish()
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
    /// when the gateway has `max_clients` already. `admitted`: it gets events from now on
    /// (an open gateway), else from [`Hub::admit`].
    pub fn register(
        &self,
        admitted: bool,
    ) -> Option<(ClientId, mpsc::Receiver<Arc<str>>, Arc<ClientShared>)> {
        let mut s = self.lock();
        if s.clients.len() >= self.max_clients.load(Ordering::Relaxed) {
            return None;
        }
        let id = s.next_client;
        s.next_client += 1;
        let (tx, rx) = mpsc::channel(self.queue);
        let shared = Arc::new(ClientShared {
            registered_after: s.seq,
            admitted: AtomicBool::new(admitted),
            ..ClientShared::default()
        });
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
        let mut s = self.lock();
        let Some(slot) = s.clients.remove(&id) else {
            return Vec::new();
        };
        for k in &slot.subs {
            s.index.remove(k, id);
        }
        slot.subs.into_iter().collect()
    }

    /// The client gets no more events (it is leaving; [`Hub::unregister`] follows).
    pub fn unsubscribe_all(&self, id: ClientId) {
        let mut s = self.lock();
        let State { clients, index, .. } = &mut *s;
        if let Some(c) = clients.get_mut(&id) {
            for k in std::mem::take(&mut c.subs) {
                index.remove(&k, id);
            }
        }
    }

    /// A link is gone (removed by a reload): every subscription to its devices ends;
    /// how many there were.
    pub fn forget_link(&self, link: &str) -> usize {
        let mut s = self.lock();
        let State { clients, index, .. } = &mut *s;
        index.0.remove(link);
        let mut n = 0;
        for c in clients.values_mut() {
            let before = c.subs.len();
            c.subs.retain(|(l, _)| l != link);
            n += before - c.subs.len();
        }
        n
    }

    /// Events that may wait for one client (`client_queue`).
    pub fn queue(&self) -> usize {
        self.queue
    }

    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    /// The client has authenticated: events are queued for it from now on. The last seq
    /// published before, taken under the same lock: every event it gets comes after it,
    /// and it misses none after it (a link event that raced the `auth` answer).
    pub fn admit(&self, shared: &ClientShared) -> u64 {
        let s = self.lock();
        shared.admitted.store(true, Ordering::Release);
        s.seq
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
        let tail = tail(&Tail {
            time: &rfc3339(time),
            link,
            device,
            body: &body,
        });
        self.publish_line(link, device, event, &tail)
    }

    /// Publish the line `{"type":"event","event":<event>,"seq":<seq>,` + `tail` without its
    /// opening brace (see [`tail`]): the seq is
    /// the one thing made under the lock (the rest was serialized before taking it); then
    /// the line is buffered for replay and queued for the device's subscribers (found in
    /// the index, not by asking every client), or for every client for a link event.
    fn publish_line(&self, link: &str, device: Option<&str>, event: &str, tail: &str) -> u64 {
        let mut s = self.lock();
        if s.closed.is_some() {
            return s.seq;
        }
        s.seq += 1;
        let seq = s.seq;
        // the tail's fields (it always has `time` and `link`) after the seq's comma
        let fields = tail.strip_prefix('{').unwrap_or(tail);
        let line: Arc<str> = {
            let mut l = String::with_capacity(48 + event.len() + fields.len());
            if event
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
            {
                // pieces, not `write!` (the formatting machinery cost a tenth of a line)
                l.push_str(r#"{"type":"event","event":""#);
                l.push_str(event);
                l.push_str(r#"","seq":"#);
                push_u64(&mut l, seq);
                l.push(',');
                l.push_str(fields);
            } else {
                use std::fmt::Write;
                let _ = write!(
                    l,
                    r#"{{"type":"event","event":{},"seq":{seq},{}"#,
                    Value::from(event),
                    fields
                );
            }
            l.into()
        };
        let key = device.map(|d| self.key_hash(link, d));
        let now = Instant::now();
        s.buffer.bytes += line.len();
        s.buffer.events.push_back(Buffered {
            seq,
            key,
            line: line.clone(),
            at: now,
        });
        self.evict(&mut s, now);
        let State {
            clients,
            index,
            dropped,
            ..
        } = &mut *s;
        match device {
            Some(d) => {
                for id in index.get(link, d) {
                    if let Some(c) = clients.get(id) {
                        *dropped += offer(c, &line, seq);
                    }
                }
            }
            None => {
                for c in clients.values() {
                    *dropped += offer(c, &line, seq);
                }
            }
        }
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
            let hash = self.key_hash(&key.0, &key.1);
            let fields = key_fields(&key);
            self.evict(&mut s, Instant::now());
            rep.gap = after < s.buffer.evicted || after > s.seq;
            let lines: Vec<Arc<str>> = if rep.gap {
                Vec::new()
            } else {
                s.buffer
                    .events
                    .iter()
                    .filter(|b| {
                        b.seq > after && b.key == Some(hash) && line_is_for(&b.line, &fields)
                    })
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
        let State { clients, index, .. } = &mut *s;
        if let Some(c) = clients.get_mut(&id) {
            index.add(&key, id);
            c.subs.insert(key);
        }
        rep
    }

    /// Unsubscribe; false when the client was not subscribed.
    pub fn unsubscribe(&self, id: ClientId, key: &DeviceKey) -> bool {
        let mut s = self.lock();
        let State { clients, index, .. } = &mut *s;
        let removed = clients.get_mut(&id).is_some_and(|c| c.subs.remove(key));
        if removed {
            index.remove(key, id);
        }
        removed
    }

    /// Whether the client may subscribe to one more device (`max_monitors_per_client`):
    /// `Err(limit)` when it has that many already.
    pub fn room_for_one_more(&self, id: ClientId) -> Result<(), usize> {
        let n = self.lock().clients.get(&id).map_or(0, |c| c.subs.len());
        let max = self.max_subscriptions.load(Ordering::Relaxed);
        if n >= max {
            Err(max)
        } else {
            Ok(())
        }
    }

    /// New `max_clients` and `max_monitors_per_client` (a reload): for new connections
    /// and subscriptions; nobody is cut for being above them.
    pub fn set_limits(&self, max_clients: usize, max_subscriptions: usize) {
        self.max_clients.store(max_clients, Ordering::Relaxed);
        self.max_subscriptions
            .store(max_subscriptions, Ordering::Relaxed);
    }

    pub fn is_subscribed(&self, id: ClientId, key: &DeviceKey) -> bool {
        self.lock()
            .clients
            .get(&id)
            .is_some_and(|c| c.subs.contains(key))
    }
}

/// `n` in decimal.
pub(super) fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// How a line for the device `key` gives its link and device: `<link>,"device":<device>`
/// in JSON (see [`line_is_for`]).
fn key_fields(key: &DeviceKey) -> String {
    let link = serde_json::to_string(&key.0).unwrap_or_default();
    let device = serde_json::to_string(&key.1).unwrap_or_default();
    format!(r#"{link},"device":{device}"#)
}

/// Whether an event line is for the device whose [`key_fields`] are `fields`: its `link`
/// and `device` fields as the line wrote them (the first `,"link":` of a line is its own:
/// inside a JSON string every `"` is escaped, and the fields before it are the type,
/// event, seq and time). A replay's check where the key's hash matched.
fn line_is_for(line: &str, fields: &str) -> bool {
    let Some(at) = line.find(r#","link":"#) else {
        return false;
    };
    line[at + r#","link":"#.len()..]
        .strip_prefix(fields)
        .is_some_and(|r| r.starts_with([',', '}']))
}

/// Queue `line` (event `seq`) for one client; 1 when it was dropped because the client's
/// queue is full: the client is cut then, never waited for (its memory is its queue, and
/// nobody else is delayed), and gets nothing more.
fn offer(c: &Slot, line: &Arc<str>, seq: u64) -> u64 {
    // before its auth a client gets nothing (link events included; its `auth` answer
    // carries the links' states instead)
    if c.shared.is_cut.load(Ordering::Relaxed) || !c.shared.admitted.load(Ordering::Relaxed) {
        return 0;
    }
    match c.events.try_send(line.clone()) {
        Ok(()) => {
            if c.events.capacity() < c.events.max_capacity() / 2 {
                c.shared.flush.notify_one();
            }
            0
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            let mut l = c
                .shared
                .lagged_from
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if l.is_none() {
                *l = Some(seq);
            }
            c.shared.is_cut.store(true, Ordering::Relaxed);
            c.shared.cut.cancel();
            1
        }
        // the session is ending
        Err(mpsc::error::TrySendError::Closed(_)) => 0,
    }
}

/// The fields of an event line after its seq (`time`, `link`, `device`, then the body's),
/// in that order: every event but a call event (`call_line::call_tail`).
#[derive(serde::Serialize)]
struct Tail<'a> {
    time: &'a str,
    link: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
    #[serde(flatten)]
    body: &'a Map<String, Value>,
}

/// `tail` as a JSON object (`{"time":...}`): its fields follow the seq in the line.
fn tail(tail: &Tail<'_>) -> String {
    match serde_json::to_string(tail) {
        Ok(s) => s,
        // no map key of these types can fail to serialize; never lose the event for it
        Err(e) => {
            tracing::error!(error = %e, "an event could not be serialized");
            format!(
                r#"{{"time":"{}","link":{},"error":"unserializable event"}}"#,
                tail.time,
                Value::from(tail.link)
            )
        }
    }
}

impl Subscriber for Hub {
    fn on_event(&self, ev: &Event) {
        let stamp = crate::model::Stamp::new(ev.time);
        let time = stamp.as_str();
        let device = ev.device.as_deref();
        // serialized before the hub's lock is taken; call events, nearly all of them,
        // straight from the typed view
        let tail = match &ev.body {
            Body::Call { call, cause, extra } => {
                super::call_line::call_tail(time, &ev.link, device, call, cause.as_deref(), extra)
            }
            other => {
                let mut m = Map::new();
                match other {
                    Body::Call { .. } => {}
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
                tail(&Tail {
                    time,
                    link: &ev.link,
                    device,
                    body: &m,
                })
            }
        };
        self.publish_line(&ev.link, device, ev.kind.as_str(), &tail);
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
    use crate::model::{CallExtra, CallView};

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

    #[test]
    fn seqs_are_written_in_decimal() {
        for n in [0u64, 7, 10, 99, 100, 1_234_567_890, u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    /// A client's `hello` says `registered_after`: the events it gets all come after it,
    /// however an event races its registration (a link.up just then came twice: once in
    /// the hello's seq, once as the event).
    #[tokio::test]
    async fn every_event_a_client_gets_comes_after_the_seq_it_registered_at() {
        let hub = Hub::new(&limits(4, 100, 100));
        let (_, mut ra, sa) = hub.register(true).unwrap();
        assert_eq!(sa.registered_after, 0);
        let up = hub.publish("pbx1", None, "link.up", Map::new());
        let (_, mut rb, sb) = hub.register(true).unwrap();
        assert_eq!(sb.registered_after, up, "registered after the link.up");
        let down = hub.publish("pbx1", None, "link.down", Map::new());
        let seqs = |rx: &mut mpsc::Receiver<Arc<str>>| {
            let mut v = Vec::new();
            while let Ok(l) = rx.try_recv() {
                v.push(
                    serde_json::from_str::<Value>(&l).unwrap()["seq"]
                        .as_u64()
                        .unwrap(),
                );
            }
            v
        };
        assert_eq!(seqs(&mut ra), vec![up, down]);
        assert_eq!(
            seqs(&mut rb),
            vec![down],
            "not the link.up its hello counted"
        );
        assert!(down > sb.registered_after);
    }

    /// Before its auth a client gets no event; its admission (the `auth` answer) says the
    /// seq that splits them: it gets every event after it and none before, however a link
    /// event races the answer (it was dropped unseen with a seq above the answer's).
    #[tokio::test]
    async fn an_admitted_client_gets_exactly_the_events_after_its_admission() {
        let hub = Hub::new(&limits(4, 100, 100));
        let (_, mut rx, shared) = hub.register(false).unwrap();
        assert!(!shared.is_admitted());
        let up = hub.publish("pbx1", None, "link.up", Map::new());
        assert!(rx.try_recv().is_err(), "nothing before the auth");
        let seq = hub.admit(&shared);
        assert!(shared.is_admitted());
        assert_eq!(seq, up, "the answer counts the link.up it did not get");
        let down = hub.publish("pbx1", None, "link.down", Map::new());
        let l: Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(l["seq"], down);
        assert_eq!(l["event"], "link.down");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_replay_gives_the_events_of_its_device_only_even_with_escapes_in_names() {
        let hub = Hub::new(&limits(4, 100, 100));
        let devices = ["201", "2010", r#"20"1"#, r"20\1", "202"];
        for (i, d) in devices.iter().enumerate() {
            let mut m = Map::new();
            m.insert("n".into(), json!(i));
            hub.publish_at(SystemTime::UNIX_EPOCH, "pbx1", Some(d), "call.updated", m);
        }
        // the same device on another link, and a link event
        hub.publish_at(
            SystemTime::UNIX_EPOCH,
            "pbx2",
            Some("201"),
            "call.updated",
            Map::new(),
        );
        hub.publish_at(SystemTime::UNIX_EPOCH, "pbx1", None, "link.up", Map::new());
        for (i, d) in devices.iter().enumerate() {
            let (id, mut rx, _) = hub.register(true).unwrap_or_else(|| {
                panic!("room for client {i}");
            });
            let rep = hub.subscribe(id, key(d), Some(0));
            assert_eq!(
                rep,
                Replay {
                    replayed: 1,
                    gap: false
                },
                "{d}"
            );
            let line: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
            assert_eq!(
                (&line["device"], &line["n"], &line["link"]),
                (&json!(d), &json!(i), &json!("pbx1"))
            );
            hub.unregister(id);
        }
        assert!(line_is_for(
            r#"{"type":"event","seq":1,"link":"pbx1","device":"20\"1"}"#,
            &key_fields(&key(r#"20"1"#))
        ));
        assert!(!line_is_for(
            r#"{"type":"event","seq":1,"link":"pbx1"}"#,
            &key_fields(&key("201"))
        ));
        assert!(!line_is_for("not json", &key_fields(&key("201"))));
        // a longer device with the same start, another link, a body naming them again
        assert!(!line_is_for(
            r#"{"seq":1,"link":"pbx1","device":"2010"}"#,
            &key_fields(&key("201"))
        ));
        assert!(!line_is_for(
            r#"{"seq":1,"link":"pbx12","device":"201"}"#,
            &key_fields(&key("201"))
        ));
        assert!(line_is_for(
            r#"{"seq":1,"link":"pbx1","device":"201","x":{"link":"pbx2","device":"9"}}"#,
            &key_fields(&key("201"))
        ));
        // an event name that spells the link field inside its string
        assert!(!line_is_for(
            r#"{"seq":1,"event":"a\",\"link\":\"pbx1","link":"pbx2","device":"201"}"#,
            &key_fields(&key("201"))
        ));
        assert!(line_is_for(
            r#"{"seq":1,"event":"a\",\"link\":\"pbx2","link":"pbx1","device":"201"}"#,
            &key_fields(&key("201"))
        ));
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
        let (a, _ra, _) = hub.register(true).unwrap();
        assert_eq!(
            hub.subscribe(a, key("201"), Some(68)),
            Replay {
                replayed: 0,
                gap: true
            }
        );
        let (b, mut rb, _) = hub.register(true).unwrap();
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
        let (a, mut ra, _) = hub.register(true).unwrap();
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
    async fn an_event_line_is_serialized_once_in_the_documented_order() {
        use crate::model::{CallState, CallType, EventKind};
        let hub = Hub::new(&limits(2, 8, 8));
        let (a, mut ra, _) = hub.register(true).unwrap();
        hub.subscribe(a, key("201"), None);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_255_200);
        let call = CallView {
            id: "c-1".into(),
            pbx_call_id: "0042".into(),
            state: CallState::Connected,
            r#type: CallType::Inbound,
            ani: Some("0891234567".into()),
            dnis: Some("8000".into()),
            other: Some("0891234567".into()),
            parties: vec!["201".into(), "0891234567".into()],
            related: None,
            variables: Default::default(),
            started: t,
            answered: Some(t),
            ended: None,
            visit: 1,
        };
        hub.on_event(&Event {
            kind: EventKind::CallTransferred,
            time: t,
            link: "pbx1".into(),
            device: Some("201".into()),
            body: Body::Call {
                call,
                cause: Some("transfer".into()),
                extra: CallExtra {
                    from: Some("202".into()),
                    replaces: vec!["c-0".into()],
                    ..CallExtra::default()
                },
            },
        });
        assert_eq!(
            &*ra.recv().await.unwrap(),
            r#"{"type":"event","event":"call.transferred","seq":1,"time":"2026-11-21T10:00:00.000Z","link":"pbx1","device":"201","call":{"id":"c-1","pbx_call_id":"0042","state":"connected","type":"inbound","ani":"0891234567","dnis":"8000","other":"0891234567","parties":["201","0891234567"],"related":null,"variables":{},"started":"2026-11-21T10:00:00.000Z","answered":"2026-11-21T10:00:00.000Z","ended":null,"visit":1},"cause":"transfer","from":"202","replaces":"c-0"}"#
        );
        // a link event, to every client, and an event kind that needs escaping
        hub.publish_at(t, "pbx1", None, "x\"y", Map::new());
        assert_eq!(
            &*ra.recv().await.unwrap(),
            r#"{"type":"event","event":"x\"y","seq":2,"time":"2026-11-21T10:00:00.000Z","link":"pbx1"}"#
        );
    }

    #[tokio::test]
    async fn fan_out_replay_and_lagged() {
        let hub = Hub::new(&limits(2, 2, 3));
        let (a, mut ra, sa) = hub.register(true).unwrap();
        let (b, mut rb, _) = hub.register(true).unwrap();
        assert!(hub.register(true).is_none(), "max_clients");
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
            hub.register(true).unwrap()
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
