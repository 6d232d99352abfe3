//! The event bus: the gateway publishes typed [`Event`]s; subscribers (the NDJSON hub,
//! later the history writer, metrics, cluster publishing) receive them.
//!
//! # Delivery policy
//! A [`Subscriber`] is a synchronous, in-order hook: [`Bus::publish`] calls every
//! subscriber with every event, one event at a time, under one lock, so all subscribers
//! see the same total order and none can miss an event. A hook must not block (it runs on
//! the publisher's task): it updates its state or queues the event and returns.
//!
//! A subscriber that does slow work (writing a database) takes a [`BusQueue`]
//! ([`Bus::queue`]): a bounded queue of its own. When it is full, events are not queued
//! but counted, and the next [`BusQueue::recv`] reports [`Delivery::Lost`] with the count
//! before the events that follow: a loss is never silent, and never slows the publisher
//! or the other subscribers.

use crate::link::Side;
use crate::model::{AgentView, CallExtra, CallView, EventKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// One event of the normalized model, as the gateway publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// When the gateway published it.
    pub time: SystemTime,
    /// The link's name.
    pub link: String,
    /// The monitored device it is for; `None` for link events (every client gets them).
    pub device: Option<String>,
    pub body: Body,
}

/// What an event carries besides its kind, link and device.
// Most events are call events: boxing their view would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `call.*`: the device's view of the call, the ECMA-285 cause name, and the event's
    /// own fields ([`crate::model::Out::Call`]).
    Call {
        call: CallView,
        cause: Option<String>,
        extra: CallExtra,
    },
    /// `agent.state`.
    Agent(AgentView),
    /// `link.up`: the side (address) the link is associated with.
    LinkUp { side: Side },
    /// `link.down`: why, and the side that failed (the link tries the next one).
    LinkDown { reason: String, side: Side },
    /// `device.unconfirmed`: why the snapshot failed, when it is tried again.
    Unconfirmed { reason: String, retry_in_ms: u64 },
    /// `device.out_of_service`, `device.in_service`, `device.confirmed`.
    Empty,
}

/// A synchronous, in-order event hook (see the module's delivery policy).
pub trait Subscriber: Send + Sync + 'static {
    /// Called for every event in publish order; must not block nor call back into the bus.
    fn on_event(&self, event: &Event);
}

/// Events published before the first subscriber (the links start before the API layer
/// subscribes: the first `link.up` must not be lost) are kept, at most this many, and given
/// to the first subscriber.
pub const EARLY_EVENTS: usize = 4096;

/// The bus. Cheap to share (`Arc`); subscribers stay until the bus is dropped.
#[derive(Default)]
pub struct Bus {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    subscribers: Vec<Arc<dyn Subscriber>>,
    /// Published before anyone subscribed (bounded by [`EARLY_EVENTS`]).
    early: Vec<Event>,
    /// Early events beyond the bound (logged once when the first subscriber comes).
    early_lost: u64,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a hook; it gets every event published from now on (the first one also gets the
    /// events published before it, see [`EARLY_EVENTS`]).
    pub fn subscribe(&self, s: Arc<dyn Subscriber>) {
        let mut i = self.lock();
        if i.subscribers.is_empty() {
            for e in std::mem::take(&mut i.early) {
                s.on_event(&e);
            }
            if i.early_lost > 0 {
                tracing::warn!(
                    lost = i.early_lost,
                    limit = EARLY_EVENTS,
                    "events published before anyone subscribed were beyond the bound"
                );
                i.early_lost = 0;
            }
        }
        i.subscribers.push(s);
    }

    /// A bounded queue of its own for a slow subscriber (at least 1 event).
    pub fn queue(&self, capacity: usize) -> BusQueue {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.subscribe(Arc::new(QueueHook {
            tx,
            lost: AtomicU64::new(0),
        }));
        BusQueue { rx }
    }

    /// Give `event` to every subscriber, in order with every other publish.
    pub fn publish(&self, event: Event) {
        let mut i = self.lock();
        if i.subscribers.is_empty() {
            if i.early.len() < EARLY_EVENTS {
                i.early.push(event);
            } else {
                i.early_lost += 1;
            }
            return;
        }
        for s in i.subscribers.iter() {
            s.on_event(&event);
        }
    }
}

struct QueueHook {
    tx: mpsc::Sender<Delivery>,
    /// Events not queued since the last `Lost` was queued (calls are serialized by the bus).
    lost: AtomicU64,
}

impl Subscriber for QueueHook {
    fn on_event(&self, event: &Event) {
        let lost = self.lost.load(Ordering::Acquire);
        if lost > 0 {
            if self.tx.try_send(Delivery::Lost(lost)).is_err() {
                self.lost.store(lost + 1, Ordering::Release);
                return;
            }
            self.lost.store(0, Ordering::Release);
        }
        if self
            .tx
            .try_send(Delivery::Event(Arc::new(event.clone())))
            .is_err()
        {
            self.lost.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// What a [`BusQueue`] delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Event(Arc<Event>),
    /// This many events were not queued (the queue was full) just before the next one.
    Lost(u64),
}

/// The receiving end of [`Bus::queue`].
pub struct BusQueue {
    rx: mpsc::Receiver<Delivery>,
}

impl BusQueue {
    /// The next event, or the count of those lost before the next one; `None` when the bus
    /// is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;
    use std::time::SystemTime;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Subscriber for Seen {
        fn on_event(&self, e: &Event) {
            self.0
                .lock()
                .unwrap()
                .push(e.device.clone().unwrap_or_default());
        }
    }

    fn ev(device: &str) -> Event {
        Event {
            kind: EventKind::DeviceInService,
            time: SystemTime::UNIX_EPOCH,
            link: "pbx1".into(),
            device: Some(device.into()),
            body: Body::Empty,
        }
    }

    #[test]
    fn events_before_the_first_subscriber_go_to_it_and_no_further() {
        let bus = Bus::new();
        bus.publish(ev("1"));
        bus.publish(ev("2"));
        let first = Arc::new(Seen::default());
        bus.subscribe(first.clone());
        bus.publish(ev("3"));
        let second = Arc::new(Seen::default());
        bus.subscribe(second.clone());
        bus.publish(ev("4"));
        assert_eq!(*first.0.lock().unwrap(), ["1", "2", "3", "4"]);
        assert_eq!(*second.0.lock().unwrap(), ["4"]);
        // bounded: beyond EARLY_EVENTS they are counted, not kept
        let bus = Bus::new();
        for i in 0..EARLY_EVENTS + 3 {
            bus.publish(ev(&i.to_string()));
        }
        assert_eq!(bus.lock().early_lost, 3);
        let s = Arc::new(Seen::default());
        bus.subscribe(s.clone());
        assert_eq!(s.0.lock().unwrap().len(), EARLY_EVENTS);
    }
}
