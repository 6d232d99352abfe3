//! The bench's NDJSON clients: each connects, `monitor.start`s its devices, then reads
//! event lines. Lines are scanned, not parsed (the `"event":"`, `"device":"` and `"seq":`
//! fields found by search), each event checked against its device's expected sequence and
//! timed against the send time the switch recorded (the device's FIFO).

use super::switch::{device_index, device_number, Shared};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The client events of one generated call at its device, in order (Delivered,
/// Established, ConnectionCleared).
pub const EXPECTED: [&str; 3] = ["call.offering", "call.connected", "call.released"];
/// The longest line a bench client accepts (longer: counted as an error, connection ends).
pub const MAX_LINE: usize = 1 << 20;
/// A `monitor.start` answered `busy` (the gateway's request limits: "slow down and retry")
/// is sent again after this, at most [`MAX_RETRIES`] times per device (counted).
const RETRY_AFTER: Duration = Duration::from_millis(200);
pub const MAX_RETRIES: u32 = 100;
/// Each client's read buffer (a thousand clients: 16 MiB).
const READ_CHUNK: usize = 16 * 1024;
/// Connecting and the hello line, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The value of a string field: the text between `"key":"` and the next `"` (no escapes
/// in the fields the bench reads).
pub fn str_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut pat = String::with_capacity(key.len() + 4);
    pat.push('"');
    pat.push_str(key);
    pat.push_str("\":\"");
    let at = line.find(&pat)? + pat.len();
    let rest = &line[at..];
    rest.find('"').map(|e| &rest[..e])
}

/// The value of a number field `"key":N`.
pub fn num_field(line: &str, key: &str) -> Option<u64> {
    let mut pat = String::with_capacity(key.len() + 3);
    pat.push('"');
    pat.push_str(key);
    pat.push_str("\":");
    let at = line.find(&pat)? + pat.len();
    let digits = line[at..].bytes().take_while(u8::is_ascii_digit).count();
    line[at..at + digits].parse().ok()
}

/// A latency histogram in microseconds: exact below 1024 µs, then 64 buckets per power of
/// two (under 1.6 % error), up to 2^40 µs; bounded size whatever the sample count.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    pub n: u64,
    pub max_us: u64,
}

const SUB: u64 = 64;
const LINEAR: u64 = 1024;
const TOP_POW: u32 = 40;

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        let buckets = LINEAR + u64::from(TOP_POW - 10) * SUB;
        Histogram {
            counts: vec![0; buckets as usize],
            n: 0,
            max_us: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let v = v.min((1 << TOP_POW) - 1);
        let p = 63 - v.leading_zeros(); // 10..TOP_POW-1
        let sub = (v >> (p - 6)) & (SUB - 1);
        (LINEAR + u64::from(p - 10) * SUB + sub) as usize
    }

    /// The largest value of bucket `i`.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            return i;
        }
        let p = (i - LINEAR) / SUB + 10;
        let sub = (i - LINEAR) % SUB;
        ((SUB + sub + 1) << (p - 6)) - 1
    }

    pub fn record(&mut self, us: u64) {
        let i = Histogram::index(us);
        self.counts[i] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.max_us = self.max_us.max(o.max_us);
    }

    /// The value at quantile `q` (0..=1): the upper bound of its bucket, never above the
    /// maximum seen; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Histogram::upper(i).min(self.max_us));
            }
        }
        Some(self.max_us)
    }
}

/// Counters of every client together.
pub struct Stats {
    /// Per watched device: events received.
    pub received: Vec<AtomicU64>,
    pub events_out: AtomicU64,
    /// Events not in their device's expected order, or of a device not watched.
    pub unexpected: AtomicU64,
    pub lagged: AtomicU64,
    /// Connections that ended before the bench stopped them.
    pub disconnected: AtomicU64,
    pub connected: AtomicU64,
    pub monitors_ok: AtomicU64,
    pub monitors_failed: AtomicU64,
    /// `monitor.start`s sent again after a `busy` answer.
    pub monitor_retries: AtomicU64,
    pub pings: AtomicU64,
    /// `device.*` events (device.unconfirmed, device.confirmed, ...).
    pub device_events: AtomicU64,
    pub first_device_event: std::sync::Mutex<Option<String>>,
    pub other_lines: AtomicU64,
    /// Latency is recorded for events sent in [from, to) (µs since the switch's epoch).
    pub measure_from_us: AtomicU64,
    pub measure_to_us: AtomicU64,
    pub first_error: std::sync::Mutex<Option<String>>,
    /// The first event out of order (or of a device not watched), as received.
    pub first_unexpected: std::sync::Mutex<Option<String>>,
}

impl Stats {
    pub fn new(watched: usize) -> Stats {
        Stats {
            received: (0..watched).map(|_| AtomicU64::new(0)).collect(),
            events_out: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            monitors_ok: AtomicU64::new(0),
            monitors_failed: AtomicU64::new(0),
            monitor_retries: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            device_events: AtomicU64::new(0),
            first_device_event: std::sync::Mutex::new(None),
            other_lines: AtomicU64::new(0),
            measure_from_us: AtomicU64::new(u64::MAX),
            measure_to_us: AtomicU64::new(u64::MAX),
            first_error: std::sync::Mutex::new(None),
            first_unexpected: std::sync::Mutex::new(None),
        }
    }

    fn error(&self, e: String) {
        keep_first(&self.first_error, e);
    }

    fn unexpected(&self, e: String) {
        self.unexpected.fetch_add(1, Relaxed);
        keep_first(&self.first_unexpected, e);
    }
}

fn keep_first(slot: &std::sync::Mutex<Option<String>>, e: String) {
    if let Ok(mut f) = slot.lock() {
        if f.is_none() {
            *f = Some(e);
        }
    }
}

/// One client: watches devices `first..first + count`; runs until `stop` says true (then
/// returns its latency histogram) or the connection ends.
pub async fn run(
    addr: std::net::SocketAddr,
    first: usize,
    count: usize,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) -> Histogram {
    let mut h = Histogram::new();
    let s = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            stats.error(format!("client cannot connect to {addr}: {e}"));
            stats.disconnected.fetch_add(1, Relaxed);
            return h;
        }
        Err(_) => {
            stats.error(format!(
                "client: no connection to {addr} within {CONNECT_TIMEOUT:?}"
            ));
            stats.disconnected.fetch_add(1, Relaxed);
            return h;
        }
    };
    let _ = s.set_nodelay(true);
    stats.connected.fetch_add(1, Relaxed);
    let (mut r, mut w) = s.into_split();
    let mut req = String::new();
    for i in first..first + count {
        req.push_str(&monitor_start(i));
    }
    // the gateway reads at most 32 waiting requests ahead; the rest wait in the socket
    let writer = tokio::spawn(async move {
        let ok = w.write_all(req.as_bytes()).await.is_ok();
        (w, ok)
    });
    let mut w = None;
    let mut writer = Some(writer);
    // per device of this client: the index of its next expected event in EXPECTED
    let mut phase = vec![0u8; count];
    // monitor.start answered busy: sent again at `retry_at`
    let mut retries = vec![0u32; count];
    let mut again: Vec<usize> = Vec::new();
    let mut retry_at: Option<Instant> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut start = 0; // where the unscanned bytes begin
    let mut chunk = vec![0u8; READ_CHUNK];
    let stopped = loop {
        if let Some(t) = writer.as_mut() {
            if t.is_finished() {
                if let Ok((half, ok)) = writer.take().expect("checked above").await {
                    if ok {
                        w = Some(half);
                    }
                }
            }
        }
        let wake = retry_at.filter(|_| w.is_some());
        let got = tokio::select! {
            r = r.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break false,
                Ok(n) => Some(n),
            },
            r = stop.wait_for(|s| *s) => {
                drop(r);
                break true;
            }
            _ = sleep_until_opt(wake) => None,
        };
        let Some(n) = got else {
            // the monitor.starts answered busy, again
            retry_at = None;
            let mut req = String::new();
            for i in again.drain(..) {
                req.push_str(&monitor_start(i));
            }
            if let Some(w) = w.as_mut() {
                if w.write_all(req.as_bytes()).await.is_err() {
                    break false;
                }
            }
            continue;
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut pong = false;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + nl];
            start += nl + 1;
            let Ok(line) = std::str::from_utf8(line) else {
                stats.other_lines.fetch_add(1, Relaxed);
                continue;
            };
            pong |= on_line(
                line,
                first,
                count,
                &mut phase,
                &mut retries,
                &mut again,
                &shared,
                &stats,
                &mut h,
            );
        }
        buf.drain(..start);
        start = 0;
        if buf.len() > MAX_LINE {
            stats.error(format!("client: a line over {MAX_LINE} octets"));
            break false;
        }
        if !again.is_empty() && retry_at.is_none() {
            retry_at = Some(Instant::now() + RETRY_AFTER);
        }
        if pong {
            if let Some(w) = w.as_mut() {
                let _ = w
                    .write_all(b"{\"id\":\"bench-ping\",\"op\":\"ping\"}\n")
                    .await;
            }
        }
    };
    if !stopped {
        stats.disconnected.fetch_add(1, Relaxed);
    }
    h
}

/// The `monitor.start` of bench device `i` (its request id is `i`).
fn monitor_start(i: usize) -> String {
    format!(
        "{{\"id\":{i},\"op\":\"monitor.start\",\"device\":\"{}\"}}\n",
        device_number(i)
    )
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// One line; true when it asks for an answer (the gateway's idle `ping`).
#[allow(clippy::too_many_arguments)]
fn on_line(
    line: &str,
    first: usize,
    count: usize,
    phase: &mut [u8],
    retries: &mut [u32],
    again: &mut Vec<usize>,
    shared: &Shared,
    stats: &Stats,
    h: &mut Histogram,
) -> bool {
    if line.starts_with("{\"type\":\"event\"") {
        let Some(ev) = str_field(line, "event") else {
            stats.other_lines.fetch_add(1, Relaxed);
            return false;
        };
        if ev == "lagged" {
            stats.lagged.fetch_add(1, Relaxed);
            stats.error(format!("a client got `lagged`: {line}"));
            return false;
        }
        if ev.starts_with("link.") {
            return false;
        }
        if ev.starts_with("device.") {
            // the gateway's word on a device's snapshot (unconfirmed, confirmed) or service:
            // not one of the generated calls' events; counted and reported
            stats.device_events.fetch_add(1, Relaxed);
            keep_first(&stats.first_device_event, line.to_string());
            return false;
        }
        stats.events_out.fetch_add(1, Relaxed);
        let idx =
            str_field(line, "device").and_then(|d| device_index(d.as_bytes(), shared.watched));
        let Some(i) = idx.filter(|i| (first..first + count).contains(i)) else {
            stats.unexpected.fetch_add(1, Relaxed);
            stats.error(format!(
                "an event of a device this client does not watch: {line}"
            ));
            return false;
        };
        // the latency by the event's own call and phase (its callID and kind), whatever
        // came before it
        let call = str_field(line, "pbx_call_id").and_then(|h| u32::from_str_radix(h, 16).ok());
        let kind = EXPECTED.iter().position(|e| *e == ev);
        if let (Some(call), Some(kind)) = (call, kind) {
            if let Some(sent) = shared.take_sent(i, call, kind as u8) {
                let at = shared.us(sent);
                if at >= stats.measure_from_us.load(Relaxed)
                    && at < stats.measure_to_us.load(Relaxed)
                {
                    h.record(Instant::now().saturating_duration_since(sent).as_micros() as u64);
                }
            }
        }
        let p = &mut phase[i - first];
        if EXPECTED[*p as usize] != ev {
            stats.unexpected(format!(
                "device {}: expected {}, got: {line}",
                device_number(i),
                EXPECTED[*p as usize]
            ));
            return false;
        }
        *p = (*p + 1) % EXPECTED.len() as u8;
        stats.received[i].fetch_add(1, Relaxed);
        false
    } else if line.starts_with("{\"type\":\"response\"") {
        if line.contains("\"id\":\"bench-ping\"") {
            return false;
        }
        if line.contains("\"ok\":true") {
            stats.monitors_ok.fetch_add(1, Relaxed);
            return false;
        }
        let id = num_field(line, "id").map(|i| i as usize);
        if let Some(i) = id.filter(|i| (first..first + count).contains(i)) {
            if line.contains("\"kind\":\"busy\"") && retries[i - first] < MAX_RETRIES {
                retries[i - first] += 1;
                stats.monitor_retries.fetch_add(1, Relaxed);
                again.push(i);
                return false;
            }
        }
        stats.monitors_failed.fetch_add(1, Relaxed);
        stats.error(format!("monitor.start failed: {line}"));
        false
    } else if line.starts_with("{\"type\":\"ping\"") {
        stats.pings.fetch_add(1, Relaxed);
        true
    } else {
        if !line.starts_with("{\"type\":\"hello\"") {
            stats.other_lines.fetch_add(1, Relaxed);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_finds_the_fields() {
        let l = r#"{"type":"event","event":"call.offering","seq":1042,"time":"2026-11-21T10:00:00.123Z","link":"bench","device":"2000004","call":{"id":"3f","parties":["2000004","0891234567"]}}"#;
        assert_eq!(str_field(l, "event"), Some("call.offering"));
        assert_eq!(str_field(l, "device"), Some("2000004"));
        assert_eq!(num_field(l, "seq"), Some(1042));
        assert_eq!(str_field(l, "missing"), None);
        assert_eq!(num_field(l, "device"), None);
        assert_eq!(str_field(r#"{"event":"unterminated"#, "event"), None);
        assert_eq!(device_index(b"2000004", 10), Some(4));
        assert_eq!(device_index(b"2000010", 10), None);
        assert_eq!(device_index(b"1999999", 10), None);
        assert_eq!(device_index(b"20000x4", 10), None);
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(500));
        assert_eq!(h.quantile(0.99), Some(990));
        assert_eq!(h.quantile(1.0), Some(1000));
        // above 1024 µs: within 1/64 of the value, never above the maximum
        let mut h = Histogram::new();
        for v in [2_000u64, 50_000, 1_000_000] {
            h.record(v);
        }
        for (q, want) in [(0.3, 2_000u64), (0.6, 50_000), (1.0, 1_000_000)] {
            let got = h.quantile(q).unwrap();
            assert!(
                got >= want && got <= want + want / 64,
                "{q}: {got} vs {want}"
            );
        }
        let mut m = Histogram::new();
        m.record(7);
        m.merge(&h);
        assert_eq!((m.n, m.max_us), (4, 1_000_000));
        assert_eq!(m.quantile(0.25), Some(7));
        // huge values stay in range
        let mut h = Histogram::new();
        h.record(u64::MAX);
        assert_eq!(h.quantile(0.5), Some((1 << TOP_POW) - 1));
        for i in 0..Histogram::new().counts.len() {
            assert_eq!(Histogram::index(Histogram::upper(i)), i, "bucket {i}");
        }
    }
}
