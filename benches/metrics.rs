//! `cargo bench --bench metrics`: what the metrics add per PBX event on the hot path (the
//! link driver's per-kind counter, the event pump's latency observation) and per request,
//! next to the decode of the same event report (the `codec` bench's `delivered_event`) for
//! scale. Figures in BENCHMARKS.md ("Metrics").

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctigate::csta::apdu::Apdu;
use ctigate::csta::rose::Rose;
use ctigate::csta::rose_ext::ReportFromInvoke;
use ctigate::metrics::{ApiMetrics, Histogram, EVENT_LATENCY_BUCKETS};
use ctigate_csta_model::events::EventReport;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `vectors.tsv` row delivered_event (as in benches/codec.rs).
const DELIVERED: &str = "a1480201090201153040550400000001a038a4366b0f300d80020042a10730058003323032630730058003323032610730058003323031620730058003323032640287004e01020a0116";

fn unhex(s: &str) -> Bytes {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>()
        .into()
}

fn bench(c: &mut Criterion) {
    let bytes = unhex(DELIVERED);
    let Apdu::Rose(Rose::Invoke(inv)) = Apdu::decode(&bytes).unwrap() else {
        panic!("an invoke")
    };
    let report = EventReport::from_invoke_lenient(&inv).unwrap();
    let kinds: Vec<AtomicU64> = (0..ctigate::link::EVENT_KINDS)
        .map(|_| AtomicU64::new(0))
        .collect();
    let latency = Histogram::new(EVENT_LATENCY_BUCKETS);
    let api = ApiMetrics::new();
    let mut g = c.benchmark_group("metrics");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    // per event, in the driver: the kind's counter
    g.bench_function("event_kind_count", |b| {
        b.iter(|| kinds[black_box(&report).event.kind_index()].fetch_add(1, Ordering::Relaxed))
    });
    // per event, in the pump: the start instant and the observation at the end
    g.bench_function("event_latency_observe", |b| {
        b.iter(|| {
            let taken = Instant::now();
            latency.observe(black_box(taken).elapsed())
        })
    });
    // per request: count by op and result, observe the duration
    g.bench_function("request_answered", |b| {
        b.iter(|| api.answered(black_box("call.make"), None, Duration::from_micros(1500)))
    });
    // for scale: decoding the same event report
    g.bench_function("decode_delivered_event", |b| {
        b.iter(|| Apdu::decode(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
