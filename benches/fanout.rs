//! `cargo bench --bench fanout`: the hub's side of one event (BENCHMARKS.md "Fan-out"):
//! `Hub::on_event` of a typical `call.connected` (serialize once, buffer for replay, queue
//! for the subscribers) with 1, 100 and 1 000 clients connected, each subscribed to its own
//! device, the events going round-robin to the devices; and the same with every client
//! subscribed to the one device the events are for (the wallboard case). The clients'
//! queues are emptied outside the measurement.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctigate::api::hub::Hub;
use ctigate::config::ApiConfig;
use ctigate::gateway::{Body, Event, Subscriber};
use ctigate::model::{CallExtra, CallState, CallType, CallView, EventKind};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant, UNIX_EPOCH};

fn event(device: &str, n: u64) -> Event {
    let t = UNIX_EPOCH + Duration::from_secs(1_795_255_200);
    Event {
        kind: EventKind::CallConnected,
        time: t,
        link: "pbx1".into(),
        device: Some(device.into()),
        body: Body::Call {
            call: CallView {
                id: format!("c-{n}"),
                pbx_call_id: format!("{n:04x}"),
                state: CallState::Connected,
                r#type: CallType::Inbound,
                ani: Some("0891234567".into()),
                dnis: Some("8000".into()),
                other: Some("0891234567".into()),
                parties: vec![device.into(), "0891234567".into()],
                related: None,
                variables: BTreeMap::new(),
                started: t,
                answered: Some(t),
                ended: None,
                visit: 1,
            },
            cause: Some("newCall".into()),
            extra: CallExtra::default(),
        },
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for (clients, shared) in [(1usize, false), (100, false), (1000, false), (100, true)] {
        let hub = Hub::new(&ApiConfig {
            max_clients: clients,
            client_queue: 100_000,
            ..ApiConfig::default()
        });
        let mut rxs = Vec::new();
        let devices: Vec<String> = (0..clients).map(|i| format!("{}", 10_000 + i)).collect();
        for d in &devices {
            let (id, rx, _) = hub.register(true).unwrap();
            let dev = if shared { &devices[0] } else { d };
            hub.subscribe(id, ("pbx1".into(), dev.clone()), None);
            rxs.push(rx);
        }
        // one event per device (or all for the shared one), made before measuring
        let events: Vec<Event> = (0..clients.max(100))
            .map(|i| event(&devices[if shared { 0 } else { i % clients }], i as u64))
            .collect();
        let name = if shared {
            format!("{clients}_clients_one_device")
        } else {
            format!("{clients}_clients")
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = (iters - done).min(10_000);
                    let start = Instant::now();
                    for i in 0..n {
                        hub.on_event(black_box(&events[(done + i) as usize % events.len()]));
                    }
                    spent += start.elapsed();
                    done += n;
                    for rx in &mut rxs {
                        while rx.try_recv().is_ok() {}
                    }
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
