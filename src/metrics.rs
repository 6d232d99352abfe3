//! Prometheus metrics (docs/METRICS.md lists every series).
//!
//! Hot paths stay cheap: what happens per frame, event or request is one relaxed atomic
//! add where it happens (the link driver's [`crate::link::LinkCounters`], the
//! [`Histogram`]s here, [`ApiMetrics`]); everything else is read when Prometheus scrapes
//! ([`gather`]: link states, monitors, clients, queue depths, the hub's counts). The
//! exposition format is prometheus-client's: [`render`] registers one [`Scrape`] (a
//! prometheus-client [`Collector`]) in a registry prefixed `ctigate` and encodes it.
//!
//! Everything is per gateway instance (several run in one test process): the event latency
//! lives in the [`crate::gateway::Gateway`], the request figures in the
//! [`crate::api::Api`].

use crate::api::request::Op;
use crate::api::Api;
use crate::gateway::LinkSlot;
use crate::link::LinkCounters;
use ctigate_csta_model::events::Event as CstaEvent;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of `ctigate_event_latency_seconds`: 10 µs to 1 s.
pub const EVENT_LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds (seconds) of `ctigate_request_duration_seconds`: 100 µs to 10 s (the
/// request deadline is a few link timeouts).
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `result` label of `ctigate_requests_total`: `ok`, or the error kind of
/// docs/PROTOCOL.md ("Error kinds"); `other` for a kind not listed here.
pub const RESULTS: &[&str] = &["ok", "switch", "link", "request", "auth", "busy", "other"];

/// The `op` label for a request line that could not be read as a request (bad JSON,
/// unknown operation, a line too long).
pub const OP_INVALID: &str = "invalid";

/// A histogram of durations with fixed buckets: three relaxed atomic adds per
/// observation, no lock. Encoded by prometheus-client ([`HistogramSnapshot`]).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in seconds (as exposed) and in nanoseconds (as compared).
    bounds: &'static [f64],
    bounds_ns: Box<[u64]>,
    /// One more than the bounds: the last is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

/// A histogram as read at one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Seconds.
    pub sum: f64,
    pub count: u64,
    /// (upper bound, observations in this bucket alone); the last bound is `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// A histogram with these upper bounds (seconds, ascending; `+Inf` is added).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            bounds_ns: bounds.iter().map(|b| (b * 1e9).round() as u64).collect(),
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Count one duration.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self
            .bounds_ns
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(self.bounds_ns.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts now (the count is the buckets' total, so the two always agree).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|b| b.1).sum(),
            buckets,
        }
    }
}

/// What the API layer counts: requests by operation and result, their durations, lagged
/// clients. Owned by the [`Api`].
#[derive(Debug)]
pub struct ApiMetrics {
    /// Per operation of [`Op::NAMES`] and then [`OP_INVALID`], per [`RESULTS`].
    requests: Box<[[AtomicU64; RESULTS.len()]]>,
    /// Per operation of [`Op::NAMES`]: received -> answered.
    durations: Box<[Histogram]>,
    lagged_clients: AtomicU64,
    /// Configuration reloads applied, and refused (the file had a mistake).
    reloads: [AtomicU64; 2],
    /// Changes in the file that wait for a restart (after the last reload).
    restart_needed: AtomicU64,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics::new()
    }
}

impl ApiMetrics {
    pub fn new() -> ApiMetrics {
        ApiMetrics {
            requests: (0..=Op::NAMES.len())
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            durations: Op::NAMES
                .iter()
                .map(|_| Histogram::new(REQUEST_DURATION_BUCKETS))
                .collect(),
            lagged_clients: AtomicU64::new(0),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            restart_needed: AtomicU64::new(0),
        }
    }

    fn op_index(op: &str) -> usize {
        Op::NAMES
            .iter()
            .position(|n| *n == op)
            .unwrap_or(Op::NAMES.len())
    }

    /// A request answered: `op` (a name of [`Op::NAMES`], or [`OP_INVALID`]), `error` its
    /// error kind (`None`: ok).
    pub fn request(&self, op: &str, error: Option<&str>) {
        let r = match error {
            None => 0,
            Some(k) => RESULTS[1..]
                .iter()
                .position(|x| *x == k)
                .map_or(RESULTS.len() - 1, |i| i + 1),
        };
        self.requests[ApiMetrics::op_index(op)][r].fetch_add(1, Ordering::Relaxed);
    }

    /// A request that ran: counted, and its time from receipt to answer observed.
    pub fn answered(&self, op: &str, error: Option<&str>, took: Duration) {
        self.request(op, error);
        if let Some(h) = self.durations.get(ApiMetrics::op_index(op)) {
            h.observe(took);
        }
    }

    /// A configuration reload: applied (with this many changes waiting for a restart), or
    /// refused (`None`).
    pub fn reloaded(&self, restart_needed: Option<usize>) {
        match restart_needed {
            Some(n) => {
                self.reloads[0].fetch_add(1, Ordering::Relaxed);
                self.restart_needed.store(n as u64, Ordering::Relaxed);
            }
            None => {
                self.reloads[1].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reloads (applied, refused) and the changes waiting for a restart.
    pub fn reloads(&self) -> (u64, u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
            self.restart_needed.load(Ordering::Relaxed),
        )
    }

    /// A client was cut for not reading its events (`lagged`).
    pub fn lagged(&self) {
        self.lagged_clients.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests so far: (op, result, count), zero counts left out.
    pub fn requests(&self) -> Vec<(&'static str, &'static str, u64)> {
        let ops = Op::NAMES.iter().copied().chain([OP_INVALID]);
        let mut v = Vec::new();
        for (op, row) in ops.zip(self.requests.iter()) {
            for (result, n) in RESULTS.iter().zip(row.iter()) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    v.push((op, *result, n));
                }
            }
        }
        v
    }

    /// Request durations of the operations that ran at least once.
    pub fn durations(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        Op::NAMES
            .iter()
            .zip(self.durations.iter())
            .map(|(op, h)| (*op, h.snapshot()))
            .filter(|(_, s)| s.count > 0)
            .collect()
    }

    pub fn lagged_clients(&self) -> u64 {
        self.lagged_clients.load(Ordering::Relaxed)
    }
}

/// One link's figures at a scrape.
#[derive(Debug, Clone)]
pub struct LinkFigures {
    pub name: String,
    pub up: bool,
    pub counters: LinkCounters,
    /// By state ([`monitor_states`]).
    pub monitors: [(&'static str, u64); 6],
    pub resync_failures: u64,
    /// Resyncs asked for that wait for their turn (at most one per device).
    pub resyncs_waiting: u64,
    /// The gateway is behind the link's events now ([`crate::gateway::Gateway::is_behind`]) ...
    pub behind: bool,
    /// ... and how often it fell behind them.
    pub behind_periods: u64,
}

/// Everything one scrape shows, read at once ([`gather`]); a prometheus-client
/// [`Collector`].
#[derive(Debug, Clone)]
pub struct Scrape {
    /// When the gateway started (Unix time, seconds).
    pub start_time: f64,
    pub links: Vec<LinkFigures>,
    pub requests: Vec<(&'static str, &'static str, u64)>,
    pub durations: Vec<(&'static str, HistogramSnapshot)>,
    pub event_latency: HistogramSnapshot,
    pub clients: u64,
    pub queue_depth_max: u64,
    pub queue_capacity: u64,
    pub lagged_clients: u64,
    pub dropped_events: u64,
    pub events_published: u64,
    /// Configuration reloads (applied, refused) and the changes waiting for a restart.
    pub reloads: (u64, u64, u64),
}

/// A link's monitors: the PBX monitors by state (`pending`: to start, or the link is down;
/// `active`; `retrying`: a start failed for a while and is tried again; `refused`: the
/// switch said no for good), then `configured` (the link's `monitor` list, whatever their
/// state) and `unconfirmed` (monitored devices whose last snapshot failed; retried). The
/// one place that decides these states.
pub fn monitor_states(slot: &LinkSlot) -> [(&'static str, u64); 6] {
    let [a, b, c, d] = slot.monitor_counts();
    [
        (a.0, a.1 as u64),
        (b.0, b.1 as u64),
        (c.0, c.1 as u64),
        (d.0, d.1 as u64),
        ("configured", slot.pinned().len() as u64),
        ("unconfirmed", slot.unconfirmed().len() as u64),
    ]
}

/// Read every figure of `api` now.
pub fn gather(api: &Api) -> Scrape {
    let mut links = Vec::new();
    for s in api.gateway.links().values() {
        links.push(LinkFigures {
            name: s.name.clone(),
            up: s.link.is_up(),
            counters: s.link.counters(),
            monitors: monitor_states(s),
            resync_failures: s.resync_failures(),
            resyncs_waiting: s.resyncs_waiting() as u64,
            behind: s.behind.load(std::sync::atomic::Ordering::Relaxed),
            behind_periods: s.behind_periods.load(std::sync::atomic::Ordering::Relaxed),
        });
    }
    let start_time = std::time::SystemTime::now()
        .checked_sub(api.gateway.started.elapsed())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Scrape {
        start_time,
        links,
        requests: api.metrics.requests(),
        durations: api.metrics.durations(),
        event_latency: api.gateway.event_latency.snapshot(),
        clients: api.hub.clients() as u64,
        queue_depth_max: api.hub.max_queue_depth() as u64,
        queue_capacity: api.hub.queue() as u64,
        lagged_clients: api.metrics.lagged_clients(),
        dropped_events: api.hub.dropped(),
        events_published: api.hub.last_seq(),
        reloads: api.metrics.reloads(),
    }
}

/// The exposition formats served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (what `curl` gets).
    Prometheus,
    /// OpenMetrics 1.0 text (when the scraper asks for it in `Accept`).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The exposition of `scrape` in `format`, by prometheus-client.
pub fn encode(scrape: Scrape, format: Format) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("ctigate");
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

/// Gather and encode: the body of `GET /metrics`.
pub fn render(api: &Api, format: Format) -> Result<String, std::fmt::Error> {
    encode(gather(api), format)
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)
}

/// Counters per link: `f` picks the value.
fn per_link(
    e: &mut DescriptorEncoder,
    links: &[LinkFigures],
    name: &str,
    help: &str,
    kind: MetricType,
    f: impl Fn(&LinkFigures) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for l in links {
        let labels = [("link", l.name.as_str())];
        let v = f(l);
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(m.encode_family(&labels)?)?,
            _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
                .encode(m.encode_family(&labels)?)?,
        }
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let l = &self.links;
        {
            let mut m = e.encode_descriptor(
                "build",
                "The running ctigate's version (always 1).",
                None,
                MetricType::Info,
            )?;
            m.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        }
        {
            let m = e.encode_descriptor(
                "start_time",
                "When the gateway started, Unix time (a change means a restart).",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            ConstGauge::new(self.start_time).encode(m)?;
        }
        per_link(
            &mut e,
            l,
            "link_up",
            "Whether the PBX link is associated now (1) or not (0).",
            MetricType::Gauge,
            |l| u64::from(l.up),
        )?;
        per_link(
            &mut e,
            l,
            "link_reconnects",
            "Associations established after the link's first one (reconnects, failovers to another side).",
            MetricType::Counter,
            |l| l.counters.reconnects,
        )?;
        per_link(
            &mut e,
            l,
            "pbx_frames_received",
            "Frames read from the PBX (readable or not).",
            MetricType::Counter,
            |l| l.counters.frames_received,
        )?;
        per_link(
            &mut e,
            l,
            "pbx_undecodable_frames",
            "Frames from the PBX that could not be read (logged with their hex, rejected where X.880 says so).",
            MetricType::Counter,
            |l| l.counters.malformed_frames,
        )?;
        per_link(
            &mut e,
            l,
            "pbx_rejects_sent",
            "X.880 rejects sent to the PBX.",
            MetricType::Counter,
            |l| l.counters.rejects_sent,
        )?;
        per_link(
            &mut e,
            l,
            "pbx_events_shed",
            "Events from the PBX shed because the gateway fell behind (link.event_queue full); their devices were resynchronised.",
            MetricType::Counter,
            |l| l.counters.events_shed,
        )?;
        per_link(
            &mut e,
            l,
            "pbx_read_ahead_full",
            "Times the link's read-ahead was full (link.read_ahead_kb): the PBX socket was left unread until the link's decoding caught up.",
            MetricType::Counter,
            |l| l.counters.read_ahead_full,
        )?;
        per_link(
            &mut e,
            l,
            "link_behind",
            "Whether the gateway is behind the link's events now (1 from an event that waited 5 ms or more between the PBX socket and the event pump until none has for 10 s; writes to busy clients are batched meanwhile).",
            MetricType::Gauge,
            |l| u64::from(l.behind),
        )?;
        per_link(
            &mut e,
            l,
            "link_behind_periods",
            "Times the gateway fell behind the link's events (see ctigate_link_behind).",
            MetricType::Counter,
            |l| l.behind_periods,
        )?;
        per_link(
            &mut e,
            l,
            "resync_failures",
            "Snapshots (resyncs) that failed: the device stays unconfirmed and is retried.",
            MetricType::Counter,
            |l| l.resync_failures,
        )?;
        per_link(
            &mut e,
            l,
            "resyncs_waiting",
            "Devices whose resync (a snapshot after shed events or a link loss) waits for its turn (link.max_outstanding).",
            MetricType::Gauge,
            |l| l.resyncs_waiting,
        )?;
        {
            let mut m = e.encode_descriptor(
                "pbx_events",
                "CSTA event reports from the PBX, per event kind (ECMA-269 event name; other: any other event).",
                None,
                MetricType::Counter,
            )?;
            for link in l {
                for (kind, n) in CstaEvent::KINDS.iter().zip(link.counters.events.0) {
                    if n > 0 {
                        let labels = [("link", link.name.as_str()), ("kind", kind)];
                        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                    }
                }
            }
        }
        {
            let mut m = e.encode_descriptor(
                "monitors",
                "Device monitors per link and state: configured (the link's monitor list), active (monitored now), failed (last snapshot failed: unconfirmed, retried).",
                None,
                MetricType::Gauge,
            )?;
            for link in l {
                for (state, n) in link.monitors {
                    let labels = [("link", link.name.as_str()), ("state", state)];
                    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                        .encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = e.encode_descriptor(
                "requests",
                "Client requests answered, per operation and result (ok or the error kind; op invalid: a line that is no request).",
                None,
                MetricType::Counter,
            )?;
            for (op, result, n) in &self.requests {
                let labels = [("op", *op), ("result", *result)];
                ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "request_duration",
                "Time from a client request's receipt to its answer, per operation.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (op, h) in &self.durations {
                let labels = [("op", *op)];
                m.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
            }
        }
        {
            let h = &self.event_latency;
            let mut m = e.encode_descriptor(
                "event_latency",
                "Time from the gateway taking a PBX event report to its events being queued to the clients.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            m.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        gauge(&mut e, "clients", "Client connections now.", self.clients)?;
        gauge(
            &mut e,
            "client_queue_depth_max",
            "Events waiting in the fullest client queue now.",
            self.queue_depth_max,
        )?;
        gauge(
            &mut e,
            "client_queue_capacity",
            "Events that may wait for one client (api.client_queue); one more and the client is cut (lagged).",
            self.queue_capacity,
        )?;
        counter(
            &mut e,
            "lagged_clients",
            "Clients cut for not reading their events in time (lagged, api.client_queue).",
            self.lagged_clients,
        )?;
        counter(
            &mut e,
            "dropped_events",
            "Event deliveries lost to clients whose queue was full (each cut client once).",
            self.dropped_events,
        )?;
        counter(
            &mut e,
            "events_published",
            "Events the gateway published to its clients (the last seq).",
            self.events_published,
        )?;
        {
            let mut m = e.encode_descriptor(
                "config_reloads",
                "Configuration reloads (SIGHUP): applied, or refused because the file had a mistake (the running configuration stays).",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(self.reloads.0).encode(m.encode_family(&[("result", "applied")])?)?;
            ConstCounter::new(self.reloads.1).encode(m.encode_family(&[("result", "refused")])?)?;
        }
        gauge(
            &mut e,
            "config_restart_needed",
            "Changed settings of the configuration file that take effect only after a restart (as of the last reload; logged with their keys).",
            self.reloads.2,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Scrape {
        Scrape {
            start_time: 1_780_000_000.5,
            links: vec![LinkFigures {
                name: "pbx1".into(),
                up: true,
                counters: LinkCounters {
                    frames_received: 7,
                    ..LinkCounters::default()
                },
                monitors: [
                    ("pending", 0),
                    ("active", 2),
                    ("retrying", 0),
                    ("refused", 0),
                    ("configured", 1),
                    ("unconfirmed", 0),
                ],
                resync_failures: 0,
                resyncs_waiting: 4,
                behind: true,
                behind_periods: 2,
            }],
            requests: vec![("monitor.start", "ok", 1)],
            durations: vec![],
            event_latency: Histogram::new(EVENT_LATENCY_BUCKETS).snapshot(),
            clients: 1,
            queue_depth_max: 0,
            queue_capacity: 1024,
            lagged_clients: 0,
            dropped_events: 0,
            events_published: 3,
            reloads: (2, 1, 3),
        }
    }

    #[test]
    fn histogram_buckets_sum_and_count() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on the bound: in it (le)
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets, vec![(0.001, 2), (0.01, 1), (f64::INFINITY, 1)]);
        assert!((s.sum - 2.0065).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn requests_by_op_and_result() {
        let m = ApiMetrics::new();
        m.answered("monitor.start", None, Duration::from_millis(2));
        m.answered("monitor.start", Some("switch"), Duration::from_millis(3));
        m.request(OP_INVALID, Some("request"));
        m.request("ping", Some("nonsense"));
        assert_eq!(
            m.requests(),
            vec![
                ("ping", "other", 1),
                ("monitor.start", "ok", 1),
                ("monitor.start", "switch", 1),
                (OP_INVALID, "request", 1)
            ]
        );
        let d = m.durations();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].0, d[0].1.count), ("monitor.start", 2));
    }

    #[test]
    fn event_kinds_index_their_names() {
        // typed events are checked end to end (tests/metrics.rs: delivered, established, ...)
        let o = CstaEvent::Other {
            family: "",
            name: "",
            value: ctigate_csta_model::value::Value::Null,
        };
        assert_eq!(CstaEvent::KINDS[o.kind_index()], "other");
        assert_eq!(o.kind_index(), CstaEvent::KINDS.len() - 1);
        assert_eq!(crate::link::EVENT_KINDS, CstaEvent::KINDS.len());
        for k in [
            "delivered",
            "established",
            "connectionCleared",
            "agentReady",
        ] {
            assert!(CstaEvent::KINDS.contains(&k), "{k}");
        }
    }

    /// The Prometheus text format as prometheus-client writes it: HELP and TYPE before
    /// every family, counters with `_total`, the histogram's buckets cumulative up to
    /// `+Inf`, its count equal to `+Inf`'s.
    #[test]
    fn prometheus_text_exposition() {
        let mut s = empty();
        let h = Histogram::new(EVENT_LATENCY_BUCKETS);
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(2));
        s.event_latency = h.snapshot();
        let text = encode(s, Format::Prometheus).unwrap();
        for line in [
            "# TYPE ctigate_link_up gauge",
            "ctigate_link_up{link=\"pbx1\"} 1",
            "# TYPE ctigate_pbx_frames_received_total counter",
            "ctigate_pbx_frames_received_total{link=\"pbx1\"} 7",
            "ctigate_requests_total{op=\"monitor.start\",result=\"ok\"} 1",
            "ctigate_monitors{link=\"pbx1\",state=\"active\"} 2",
            "# TYPE ctigate_pbx_read_ahead_full_total counter",
            "ctigate_pbx_read_ahead_full_total{link=\"pbx1\"} 0",
            "# TYPE ctigate_link_behind gauge",
            "ctigate_link_behind{link=\"pbx1\"} 1",
            "# TYPE ctigate_link_behind_periods_total counter",
            "ctigate_link_behind_periods_total{link=\"pbx1\"} 2",
            "# TYPE ctigate_resyncs_waiting gauge",
            "ctigate_resyncs_waiting{link=\"pbx1\"} 4",
            "# TYPE ctigate_event_latency_seconds histogram",
            "ctigate_event_latency_seconds_bucket{le=\"5e-05\"} 1",
            "ctigate_event_latency_seconds_bucket{le=\"0.0025\"} 2",
            "ctigate_event_latency_seconds_bucket{le=\"+Inf\"} 2",
            "ctigate_event_latency_seconds_count 2",
            "ctigate_clients 1",
            "ctigate_events_published_total 3",
            "# TYPE ctigate_config_reloads_total counter",
            "ctigate_config_reloads_total{result=\"applied\"} 2",
            "ctigate_config_reloads_total{result=\"refused\"} 1",
            "ctigate_config_restart_needed 3",
            "# TYPE ctigate_start_time_seconds gauge",
            "ctigate_start_time_seconds 1780000000.5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains(&format!(
            "ctigate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        // every sample line: name{labels} value, the value a number
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn openmetrics_exposition_ends_with_eof() {
        let text = encode(empty(), Format::OpenMetrics).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE ctigate_pbx_frames_received counter"));
        assert!(text.contains("ctigate_pbx_frames_received_total{link=\"pbx1\"} 7"));
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
    }
}
