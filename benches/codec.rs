//! `cargo bench --bench codec`: decode and canonical encode of three typical PDUs.
//! Results and the comparison with the asn1tools oracle (scripts/bench_oracle.py) are in
//! BENCHMARKS.md. Short measurement (1 s warm-up, 2 s per bench) so the whole run takes
//! about a minute; on a noisy machine compare ratios, not absolute figures.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctigate::csta::Apdu;
use std::hint::black_box;
use std::time::Duration;

/// (name, unframed PDU hex).
const PDUS: [(&str, &str); 3] = [
    // ../shared/spec/captures/vectors.tsv row delivered_event: cSTAEventReport (invokeId 9,
    // op 21) delivered, connection both(0042, 202), cause newCall; 74 octets
    (
        "delivered_event",
        "a1480201090201153040550400000001a038a4366b0f300d80020042a10730058003323032630730058003\
         323032610730058003323031620730058003323032640287004e01020a0116",
    ),
    // vectors.tsv row make_call_invoke: invokeId 1, op 10, 201 -> 0891234567; 31 octets
    (
        "make_call_invoke",
        "a11d02010102010a301530058003323031300c800a30383931323334353637",
    ),
    // cSTAEventReport transferred with 3 transferredConnections; 174 octets. Made with the
    // oracle (run in ../shared/spec):
    //   import cstapeer
    //   ei = cstapeer.event_info('transferred', call='0042', call2='0043', device='201', to='203',
    //       state='connected', connections=[('0044','202'), ('0045','203'), ('0046','204')])
    //   cstapeer.encode({'invoke': {'invokeId': 12, 'opcode': 21, 'argument': {
    //       'crossRefIdentifier': {'$hex': '00000001'}, 'eventSpecificInfo': ei}}}).hex()
    (
        "transferred_event_3conn",
        "a181ab02010c0201153081a2550400000001a08199b181966b0f300d80020042a10730058003323031a00f\
         300d80020043a10730058003323031630730058003323031630730058003323033a15a301ca0116b0f300d\
         80020044a10730058003323032a20730058003323032301ca0116b0f300d80020045a10730058003323033\
         a20730058003323033301ca0116b0f300d80020046a10730058003323034a207300580033230344e01030a\
         0120",
    ),
];

fn unhex(s: &str) -> Bytes {
    let s: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect::<Vec<u8>>()
        .into()
}

fn pdus() -> Vec<(&'static str, Bytes, Apdu)> {
    PDUS.iter()
        .map(|(name, hx)| {
            let b = unhex(hx);
            let a = Apdu::decode(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
            // all three are canonical: encode must give the input back
            assert_eq!(a.encode().unwrap(), &b[..], "{name}: not canonical");
            (*name, b, a)
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, bytes, _) in pdus() {
        g.bench_function(name, |b| {
            b.iter(|| Apdu::decode(black_box(&bytes)).unwrap())
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    for (name, _, apdu) in pdus() {
        g.bench_function(name, |b| b.iter(|| black_box(&apdu).encode().unwrap()));
    }
    g.finish();
}

/// What the link does with an event report: the typed report, by the general path (the
/// schema decoder's value tree, then the typed view) and by the hot path
/// (`ctigate_csta::hot`, straight to the typed view) on the same PDU.
fn typed(c: &mut Criterion) {
    let mut g = c.benchmark_group("typed");
    g.throughput(Throughput::Elements(1));
    let (_, bytes, _) = pdus().into_iter().next().unwrap();
    g.bench_function("delivered_event_general", |b| {
        b.iter(|| ctigate_csta::hot::general_event_report(black_box(&bytes)).unwrap())
    });
    g.bench_function("delivered_event_hot", |b| {
        b.iter(|| ctigate_csta::hot::event_report(black_box(&bytes)).unwrap())
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, encode, typed
}
criterion_main!(benches);
