//! `cargo bench --bench pump`: the event pump's work for one switch event (BENCHMARKS.md,
//! "This stop: ... the pump counted"): the tracker's normalization of a decoded event
//! report (`Tracker::on_event`) and the hub's side of what it gives (`Hub::on_event`:
//! serialize once, buffer for replay, queue for the subscribers), as the pump does for the
//! load of `ctigate bench` and `tests/load/run.py`: per call Delivered, Established and
//! ConnectionCleared at one device, a fresh callID each call, round robin over 1 000
//! devices, each with one client subscribed. The events are those of `ctigate bench`'s
//! switch (`ctigate::bench::switch::event`), typed as the link hands them to the pump; the
//! clients' queues are emptied outside the measurement.

use criterion::{criterion_group, Criterion, Throughput};
use ctigate::api::hub::Hub;
use ctigate::bench::switch::event;
use ctigate::config::ApiConfig;
use ctigate::gateway::{event_parts, Event, Subscriber};
use ctigate::model::{Tracker, TrackerConfig};
use ctigate_csta_model::events::Event as CstaEvent;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

/// The gateway's allocator (src/main.rs), so that the figures are the gateway's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEVICES: usize = 1000;

/// What the pump does with one report: track it, publish what the tracker gives.
fn pump_one(tracker: &mut Tracker, hub: &Hub, device: &str, ev: &CstaEvent) {
    for o in tracker.on_event(device, ev, SystemTime::now()) {
        let (device, kind, body) = event_parts(o);
        hub.on_event(&Event {
            kind,
            time: SystemTime::now(),
            link: "pbx1".to_string(),
            device: Some(device),
            body,
        });
    }
}

/// The hub with one client per device, the tracker, and the next event to make.
struct Load {
    hub: Hub,
    devices: Vec<String>,
    rxs: Vec<tokio::sync::mpsc::Receiver<std::sync::Arc<str>>>,
    tracker: Tracker,
    call: u32,
    next: usize,
}

impl Load {
    fn new() -> Load {
        let hub = Hub::new(&ApiConfig {
            max_clients: DEVICES,
            client_queue: 100_000,
            ..ApiConfig::default()
        });
        let devices: Vec<String> = (0..DEVICES).map(|i| format!("{}", 20_000 + i)).collect();
        let mut rxs = Vec::new();
        for d in &devices {
            let (id, rx, _) = hub.register(true).expect("room for the clients");
            hub.subscribe(id, ("pbx1".into(), d.clone()), None);
            rxs.push(rx);
        }
        let tracker = Tracker::new(TrackerConfig {
            link: "pbx1".into(),
            ..TrackerConfig::default()
        });
        Load {
            hub,
            devices,
            rxs,
            tracker,
            call: 0,
            next: 0,
        }
    }

    /// The next `n` events (device index, event): the device round robin, the phase by the
    /// round, the call ids growing so that every call is new to the tracker.
    fn events(&mut self, n: usize) -> Vec<(usize, CstaEvent)> {
        (0..n)
            .map(|_| {
                let dev = self.next % DEVICES;
                let phase = ((self.next / DEVICES) % 3) as u8;
                if dev == 0 && phase == 0 {
                    self.call += DEVICES as u32;
                }
                self.next += 1;
                (
                    dev,
                    event(phase, self.call + dev as u32, &self.devices[dev]),
                )
            })
            .collect()
    }

    fn pump(&mut self, batch: &[(usize, CstaEvent)]) {
        for (dev, ev) in batch {
            pump_one(
                &mut self.tracker,
                &self.hub,
                black_box(&self.devices[*dev]),
                ev,
            );
        }
    }

    fn drain(&mut self) {
        for rx in &mut self.rxs {
            while rx.try_recv().is_ok() {}
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pump");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    let mut load = Load::new();
    g.bench_function("1000_devices_one_client_each", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(9_000);
                let batch = load.events(n as usize);
                let start = Instant::now();
                load.pump(&batch);
                spent += start.elapsed();
                done += n;
                load.drain();
            }
            spent
        })
    });
    g.finish();
}

/// `PUMP_EVENTS=N`: no criterion; N events through the pump and out, for an instruction
/// count that the machine's noise does not change (`valgrind --tool=callgrind`; the
/// difference of two counts over the difference of their N is the cost per event,
/// BENCHMARKS.md).
fn fixed(n: usize) {
    let mut load = Load::new();
    let mut done = 0;
    while done < n {
        let batch = load.events((n - done).min(9_000));
        load.pump(&batch);
        done += batch.len();
        load.drain();
    }
    println!("{done} events");
}

fn main() {
    if let Some(n) = std::env::var("PUMP_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        fixed(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group!(benches, bench);
