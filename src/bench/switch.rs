//! The bench's switch: a minimal CSTA Phase III peer over BER (2-octet length framing) that
//! accepts the gateway's association, answers every request at monitor time after a fixed
//! delay (MonitorStart with a fresh cross reference, SnapshotDevice with no calls,
//! systemStatus, anything else `serviceNotSupported`), and, when told, sends event reports
//! at a fixed rate for the devices the bench's clients watch: per call on a device
//! Delivered, Established, ConnectionCleared (each call a fresh callID).
//!
//! Writes are batched: every millisecond what is due (answers and events) goes out as one
//! buffer, and the time each write is blocked (the gateway not reading the socket) is
//! measured. The send time of each event goes into its device's FIFO, which the clients pop
//! for the end-to-end latency.

use bytes::{BufMut, Bytes, BytesMut};
use ctigate_csta::acse::{Acse, AcseKind};
use ctigate_csta::apdu::Apdu;
use ctigate_csta::framing::{Frame, U16Codec};
use ctigate_csta::rose::{Code, Rose};
use ctigate_csta::rose_ext::{self, FromInvoke, ToInvoke, ToReturnError, ToReturnResult};
use ctigate_csta::Oid;
use ctigate_csta_model::events::{
    ConnectionClearedEvent, DeliveredEvent, EstablishedEvent, Event, EventReport,
};
use ctigate_csta_model::ops::{
    Argument, MonitorStartResult, Operation, OperationResult, SnapshotData, SnapshotDeviceResult,
};
use ctigate_csta_model::types::{
    ConnectionId, CstaObject, EventCause, LocalConnectionState, MonitorCrossRefId, Party,
    Redirection, UniversalFailure,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_util::codec::Decoder;
use tracing::{debug, warn};

/// The first device number; device `i` of the bench is `DEVICE_BASE + i` (7 digits).
pub const DEVICE_BASE: u32 = 2_000_000;
/// The most devices one bench monitors.
pub const MAX_DEVICES: usize = 1_000_000;
/// The calling party of every generated call (an external number: inbound calls).
pub const CALLER: &str = "0891234567";
/// Events of one call at a device, in order; the client events they give
/// ([`super::clients::EXPECTED`]).
pub const EVENTS_PER_CALL: u64 = 3;
/// A write to the gateway blocked at least this long counts as a stall.
pub const STALL: Duration = Duration::from_millis(10);
/// Send times kept per device for the latency (events sent, not yet seen by the client):
/// beyond it the oldest is dropped and counted (`latency_fifo_overflow`).
pub const FIFO_CAP: usize = 65_536;
/// Answers waiting for their delay, at most.
const ANSWER_QUEUE: usize = 65_536;
/// The generator's tick.
const TICK: Duration = Duration::from_millis(1);
/// The generator never catches up more than this much of its schedule in one go (after a
/// blocked write): beyond it the schedule slips (counted).
const MAX_CATCH_UP: Duration = Duration::from_millis(100);

/// The device number of bench device `i`.
pub fn device_number(i: usize) -> String {
    (DEVICE_BASE as u64 + i as u64).to_string()
}

/// The bench device index of a device number (`None`: not one of the bench's).
pub fn device_index(n: &[u8], devices: usize) -> Option<usize> {
    if n.len() != 7 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in n {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    let i = v.checked_sub(u64::from(DEVICE_BASE))? as usize;
    (i < devices).then_some(i)
}

/// State shared by the switch, the clients and the orchestrator.
pub struct Shared {
    /// Devices monitored on the link in all (watched by clients first, then configured).
    pub devices: usize,
    /// Devices `0..watched` get events (the clients watch them).
    pub watched: usize,
    /// The cross reference of each device's monitor (0: none yet).
    xrefs: Vec<AtomicU32>,
    /// Distinct devices with a monitor.
    pub monitored: AtomicU64,
    pub monitor_starts: AtomicU64,
    pub snapshots: AtomicU64,
    /// Requests answered with an error (anything but MonitorStart, SnapshotDevice,
    /// systemStatus), and MonitorStarts of devices not the bench's.
    pub other_requests: AtomicU64,
    /// Per watched device: send times of events in flight.
    pub fifos: Vec<Mutex<VecDeque<Sent>>>,
    pub fifo_overflow: AtomicU64,
    /// Per watched device: events sent.
    pub sent: Vec<AtomicU64>,
    pub events_sent: AtomicU64,
    /// Target rate (events/s; 0: no events).
    pub rate: AtomicU64,
    pub schedule_slips: AtomicU64,
    pub write_stalls: AtomicU64,
    pub longest_write_us: AtomicU64,
    /// The AARQ arrived (the gateway is up and connecting).
    pub aarq_seen: Notify,
    pub aarq: AtomicBool,
    /// The bench allows the association (it measured the gateway before it).
    pub associate: Notify,
    pub associate_allowed: AtomicBool,
    /// When the AARE went out (link up), since `epoch`.
    pub link_up_us: AtomicU64,
    pub connections: AtomicU64,
    /// The link went down after being up (the connection closed or was aborted).
    pub link_drops: AtomicU64,
    /// How long the gateway leaves the link's socket unread (the writes, the samples).
    pub unread: Arc<super::unread::Unread>,
    pub epoch: Instant,
}

impl Shared {
    pub fn new(devices: usize, watched: usize) -> Shared {
        Shared {
            devices,
            watched,
            xrefs: (0..devices).map(|_| AtomicU32::new(0)).collect(),
            monitored: AtomicU64::new(0),
            monitor_starts: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            other_requests: AtomicU64::new(0),
            fifos: (0..watched).map(|_| Mutex::new(VecDeque::new())).collect(),
            fifo_overflow: AtomicU64::new(0),
            sent: (0..watched).map(|_| AtomicU64::new(0)).collect(),
            events_sent: AtomicU64::new(0),
            rate: AtomicU64::new(0),
            schedule_slips: AtomicU64::new(0),
            write_stalls: AtomicU64::new(0),
            longest_write_us: AtomicU64::new(0),
            aarq_seen: Notify::new(),
            aarq: AtomicBool::new(false),
            associate: Notify::new(),
            associate_allowed: AtomicBool::new(false),
            link_up_us: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            link_drops: AtomicU64::new(0),
            unread: Arc::default(),
            epoch: Instant::now(),
        }
    }

    /// Microseconds since the epoch.
    pub fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// The send time of the event of watched device `i` with this call and phase (the
    /// index of its kind in the call's events); the events sent for the device before it
    /// are dropped from the FIFO (lost, or told otherwise: a resync's events), so a loss
    /// never shifts the latency of the events after it. `None` when it was not sent (or
    /// taken already).
    pub fn take_sent(&self, i: usize, call: u32, phase: u8) -> Option<Instant> {
        let mut q = self.fifos.get(i)?.lock().ok()?;
        let k = q.iter().position(|s| s.call == call && s.phase == phase)?;
        q.drain(..k);
        q.pop_front().map(|s| s.at)
    }
}

/// An event sent, for the latency: its call and phase, and when.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub call: u32,
    pub phase: u8,
    pub at: Instant,
}

/// Listen on 127.0.0.1:0; serve the gateway's connections one after the other.
pub async fn start(
    shared: Arc<Shared>,
    delay: Duration,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (s, peer) = match l.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "bench switch: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            debug!(%peer, "bench switch: gateway connected");
            shared.connections.fetch_add(1, Relaxed);
            if let Ok(me) = s.local_addr() {
                shared.unread.connected(me, peer);
            }
            let _ = s.set_nodelay(true);
            serve(s, shared.clone(), delay).await;
            if shared.link_up_us.load(Relaxed) > 0 {
                shared.link_drops.fetch_add(1, Relaxed);
            }
        }
    });
    Ok((addr, task))
}

/// One PDU with its 2-octet length.
fn frame(out: &mut BytesMut, pdu: &[u8]) {
    out.put_u16(pdu.len() as u16);
    out.put_slice(pdu);
}

fn encode(apdu: &Apdu) -> Option<Vec<u8>> {
    match apdu.encode() {
        Ok(b) if b.len() <= usize::from(u16::MAX) => Some(b),
        Ok(_) => {
            warn!("bench switch: a PDU over 65535 octets (bug): not sent");
            None
        }
        Err(e) => {
            warn!(error = %e, "bench switch: cannot encode a PDU (bug)");
            None
        }
    }
}

fn failure(category: &str, value: &str) -> UniversalFailure {
    UniversalFailure::from_names(category, value).unwrap_or(UniversalFailure {
        category: "unspecified",
        value: 0,
    })
}

async fn serve(s: TcpStream, shared: Arc<Shared>, delay: Duration) {
    let (mut r, w) = s.into_split();
    let (tx, rx) = mpsc::channel::<(Instant, Bytes)>(ANSWER_QUEUE);
    let writer = tokio::spawn(write_loop(w, rx, shared.clone()));
    let mut codec = U16Codec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            let f = match codec.decode(&mut buf) {
                Ok(Some(Frame::Pdu(p))) => p,
                Ok(Some(Frame::Handshake(_))) => continue,
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "bench switch: framing lost");
                    break 'read;
                }
            };
            match on_pdu(&f, &shared, delay).await {
                Step::Answer(pdu, due) => {
                    let mut out = BytesMut::with_capacity(pdu.len() + 2);
                    frame(&mut out, &pdu);
                    if tx.send((due, out.freeze())).await.is_err() {
                        break 'read;
                    }
                }
                Step::Nothing => {}
                Step::Close => break 'read,
            }
        }
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

enum Step {
    Answer(Vec<u8>, Instant),
    Nothing,
    Close,
}

async fn on_pdu(pdu: &Bytes, shared: &Shared, delay: Duration) -> Step {
    let apdu = match Apdu::decode(pdu) {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "bench switch: undecodable PDU from the gateway");
            return Step::Nothing;
        }
    };
    match apdu {
        Apdu::Acse(a) => match a.kind {
            AcseKind::Aarq => {
                shared.aarq.store(true, Relaxed);
                shared.aarq_seen.notify_one();
                // the bench measures the gateway before its link is up (bounded there);
                // a later association (the gateway reconnecting) is answered at once
                while !shared.associate_allowed.load(Relaxed) {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(50),
                        shared.associate.notified(),
                    )
                    .await;
                }
                let ctx = a
                    .context_name()
                    .unwrap_or_else(|| Oid(Bytes::from_static(&[0x2b, 0x0c, 0x00, 0x81, 0x5a])));
                let ours = ctigate_csta::acse::version::PHASE3_ALL;
                let versions: Vec<u32> = match a.csta_user_info().map(|u| u.versions) {
                    Some(v) if v.iter().any(|x| ours.contains(x)) => {
                        v.into_iter().filter(|x| ours.contains(x)).collect()
                    }
                    _ => ours.to_vec(),
                };
                let Ok(aare) = Acse::aare(&ctx, 0, 0, Some(&versions)) else {
                    return Step::Close;
                };
                let now = Instant::now();
                shared.link_up_us.store(shared.us(now).max(1), Relaxed);
                match encode(&Apdu::Acse(aare)) {
                    Some(p) => Step::Answer(p, now),
                    None => Step::Close,
                }
            }
            AcseKind::Rlrq => match encode(&Apdu::Acse(Acse::rlre(0))) {
                Some(p) => Step::Answer(p, Instant::now()),
                None => Step::Close,
            },
            _ => Step::Close,
        },
        Apdu::Rose(Rose::Invoke(inv)) => {
            let Some(id) = inv.invoke_id.value() else {
                return Step::Nothing;
            };
            let op = match inv.opcode {
                Code::Local(n) => Operation::from_code(n),
                Code::Global(_) => None,
            };
            let due = Instant::now() + delay;
            if op == Some(Operation::SystemStatus) {
                return match rose_ext::no_data_result(Operation::SystemStatus, id)
                    .and_then(|r| encode(&Apdu::Rose(r)))
                {
                    Some(p) => Step::Answer(p, Instant::now()),
                    None => Step::Nothing,
                };
            }
            let answer: Result<OperationResult, UniversalFailure> =
                match Argument::from_invoke(&inv) {
                    Ok(Argument::MonitorStart(m)) => {
                        shared.monitor_starts.fetch_add(1, Relaxed);
                        let idx = match &m.monitor_object {
                            CstaObject::Device(d) => d
                                .number()
                                .and_then(|n| device_index(n.as_bytes(), shared.devices)),
                            CstaObject::Call(_) => None,
                        };
                        // cross references: device index + 1 (fresh for every device; a
                        // device monitored again gets the same, which the gateway accepts)
                        let xref = match idx {
                            Some(i) => {
                                let x = i as u32 + 1;
                                if shared.xrefs[i].swap(x, Relaxed) == 0 {
                                    shared.monitored.fetch_add(1, Relaxed);
                                }
                                x
                            }
                            None => {
                                shared.other_requests.fetch_add(1, Relaxed);
                                (MAX_DEVICES + 1) as u32
                            }
                        };
                        Ok(
                            MonitorStartResult::new(MonitorCrossRefId::new(xref.to_be_bytes()))
                                .into(),
                        )
                    }
                    Ok(Argument::SnapshotDevice(_)) => {
                        shared.snapshots.fetch_add(1, Relaxed);
                        Ok(SnapshotDeviceResult::new(SnapshotData::Data(Vec::new())).into())
                    }
                    Ok(Argument::MonitorStop(_)) => Ok(OperationResult::Simple {
                        op: Operation::MonitorStop,
                        extensions: None,
                    }),
                    _ => {
                        shared.other_requests.fetch_add(1, Relaxed);
                        Err(failure("operation", "serviceNotSupported"))
                    }
                };
            let rose = match answer {
                Ok(r) => r.return_result(id),
                Err(f) => f.return_error(id),
            };
            match encode(&Apdu::Rose(rose)) {
                Some(p) => Step::Answer(p, due),
                None => Step::Nothing,
            }
        }
        Apdu::Rose(_) => Step::Nothing, // answers to our keep-alives (none sent), rejects
    }
}

/// The invoke ids of the generated event reports: all encoded in 4 octets (an INTEGER
/// from 0x0080_0000 on), so that every report of a kind has the same length.
const INVOKE_FIRST: u32 = 0x0080_0000;
const INVOKE_LAST: u32 = 0x7fff_ffff;

/// The fields of a generated event report that change from one report to the next.
#[derive(Clone, Copy)]
struct Fields {
    xref: u32,
    call: u32,
    device: u32,
    invoke: u32,
}

/// The generator's event of `phase` (0 Delivered, 1 Established, 2 ConnectionCleared) of
/// the call `call` at the device `dev`, typed (as the gateway's link hands it to the event
/// pump; `benches/pump.rs` feeds the pump these).
pub fn event(phase: u8, call: u32, dev: &str) -> Event {
    let conn = ConnectionId::dialing(call.to_be_bytes(), dev);
    let caller = Party::dialing(CALLER);
    match phase {
        0 => {
            let mut e = DeliveredEvent::new(
                conn,
                Party::dialing(dev),
                caller,
                Party::dialing(dev),
                Redirection::NotKnown,
                EventCause::NEW_CALL,
            );
            e.local_connection_info = Some(LocalConnectionState::Alerting);
            e.into()
        }
        1 => {
            let mut e = EstablishedEvent::new(
                conn,
                Party::dialing(dev),
                caller,
                Party::dialing(dev),
                Redirection::NotKnown,
                EventCause::NORMAL,
            );
            e.local_connection_info = Some(LocalConnectionState::Connected);
            e.into()
        }
        _ => {
            let mut e =
                ConnectionClearedEvent::new(conn, Party::dialing(dev), EventCause::NORMAL_CLEARING);
            e.local_connection_info = Some(LocalConnectionState::Null);
            e.into()
        }
    }
}

/// One event report of the generator, encoded the long way (the typed model, ROSE, BER).
fn encode_event(phase: u8, f: Fields) -> Option<Vec<u8>> {
    let ev = event(phase, f.call, &f.device.to_string());
    let rep = EventReport::new(MonitorCrossRefId::new(f.xref.to_be_bytes()), ev);
    encode(&Apdu::Rose(rep.invoke(i64::from(f.invoke))))
}

/// A generated event report of one kind, encoded once with marker values, and where each
/// changing field sits in it: a report is the template with the fields written in (the
/// generator's cost per event is a copy, not the typed model's encoding, so that the
/// bench's own switch takes as little of the machine as it can). Checked against the long
/// way when made ([`Template::new`]); `None` falls back to the long way.
struct Template {
    pdu: Vec<u8>,
    xref: Vec<usize>,
    call: Vec<usize>,
    device: Vec<usize>,
    invoke: Vec<usize>,
}

impl Template {
    const MARK: Fields = Fields {
        xref: 0xA1B2_C3D4,
        call: 0xC5D6_E7F8,
        device: 2_987_654,
        invoke: 0x7A6B_5C4D,
    };

    fn new(phase: u8) -> Option<Template> {
        let m = Self::MARK;
        let pdu = encode_event(phase, m)?;
        let find = |needle: &[u8]| -> Vec<usize> {
            pdu.windows(needle.len())
                .enumerate()
                .filter(|(_, w)| *w == needle)
                .map(|(i, _)| i)
                .collect()
        };
        let (xref, call) = (find(&m.xref.to_be_bytes()), find(&m.call.to_be_bytes()));
        let device = find(m.device.to_string().as_bytes());
        let invoke = find(&m.invoke.to_be_bytes());
        let t = Template {
            xref,
            call,
            device,
            invoke,
            pdu,
        };
        // the template must give exactly what the long way gives, for other values too
        let probes = [
            Fields {
                xref: 1,
                call: 1,
                device: DEVICE_BASE,
                invoke: INVOKE_FIRST,
            },
            Fields {
                xref: 0x00FF_FF00,
                call: 0xFFFF_FFFF,
                device: 2_999_999,
                invoke: INVOKE_LAST,
            },
            Fields {
                xref: 77,
                call: 0x0102_0304,
                device: 2_000_457,
                invoke: 0x0123_4567,
            },
        ];
        let ok = !t.xref.is_empty()
            && !t.call.is_empty()
            && !t.device.is_empty()
            && t.invoke.len() == 1
            && probes.iter().all(|&f| {
                let mut out = Vec::new();
                t.write(&mut out, f);
                encode_event(phase, f).is_some_and(|long| long == out)
            });
        if !ok {
            warn!(phase, "bench switch: an event template does not match its encoding (bug): encoding each event");
        }
        ok.then_some(t)
    }

    /// The report with `f` written in (the PDU, without its frame length).
    fn write(&self, out: &mut Vec<u8>, f: Fields) {
        let at = out.len();
        out.extend_from_slice(&self.pdu);
        let p = &mut out[at..];
        let mut digits = [0u8; 7];
        let mut d = f.device;
        for c in digits.iter_mut().rev() {
            *c = b'0' + (d % 10) as u8;
            d /= 10;
        }
        for &i in &self.xref {
            p[i..i + 4].copy_from_slice(&f.xref.to_be_bytes());
        }
        for &i in &self.call {
            p[i..i + 4].copy_from_slice(&f.call.to_be_bytes());
        }
        for &i in &self.device {
            p[i..i + 7].copy_from_slice(&digits);
        }
        for &i in &self.invoke {
            p[i..i + 4].copy_from_slice(&f.invoke.to_be_bytes());
        }
    }
}

/// Per watched device: where its current call is.
struct Gen {
    /// Next event of each device: 0 Delivered, 1 Established, 2 ConnectionCleared.
    phase: Vec<u8>,
    call: Vec<u32>,
    next_call: u32,
    /// The next device to get an event (round robin).
    next_device: usize,
    invoke: u32,
    /// Per phase: the template, or `None` (encoded the long way).
    templates: Vec<Option<Template>>,
    pdu: Vec<u8>,
}

impl Gen {
    fn new(watched: usize) -> Gen {
        Gen {
            phase: vec![0; watched],
            call: vec![0; watched],
            next_call: 0,
            next_device: 0,
            invoke: INVOKE_FIRST - 1,
            templates: (0..EVENTS_PER_CALL as u8).map(Template::new).collect(),
            pdu: Vec::with_capacity(512),
        }
    }

    fn event(&mut self, shared: &Shared, out: &mut BytesMut, now: Instant) -> bool {
        let i = self.next_device;
        self.next_device = (self.next_device + 1) % shared.watched;
        let xref = shared.xrefs[i].load(Relaxed);
        if xref == 0 {
            return false; // not monitored (yet): nothing to send for it
        }
        let phase = self.phase[i];
        if phase == 0 {
            self.next_call = self.next_call.wrapping_add(1).max(1);
            self.call[i] = self.next_call;
        }
        self.phase[i] = (phase + 1) % EVENTS_PER_CALL as u8;
        self.invoke = if self.invoke >= INVOKE_LAST {
            INVOKE_FIRST
        } else {
            self.invoke + 1
        };
        let f = Fields {
            xref,
            call: self.call[i],
            device: DEVICE_BASE + i as u32,
            invoke: self.invoke,
        };
        self.pdu.clear();
        match &self.templates[usize::from(phase)] {
            Some(t) => t.write(&mut self.pdu, f),
            None => match encode_event(phase, f) {
                Some(p) => self.pdu = p,
                None => return false,
            },
        }
        frame(out, &self.pdu);
        if let Ok(mut q) = shared.fifos[i].lock() {
            if q.len() >= FIFO_CAP {
                q.pop_front();
                shared.fifo_overflow.fetch_add(1, Relaxed);
            }
            q.push_back(Sent {
                call: self.call[i],
                phase,
                at: now,
            });
        }
        shared.sent[i].fetch_add(1, Relaxed);
        true
    }
}

async fn write_loop(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::Receiver<(Instant, Bytes)>,
    shared: Arc<Shared>,
) {
    let mut pending: VecDeque<(Instant, Bytes)> = VecDeque::new();
    let mut gen = Gen::new(shared.watched);
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut next_tick = Instant::now() + TICK;
    // the schedule: events due since `start` at `rate`
    let mut sched: Option<(Instant, u64, u64)> = None; // (start, rate, sent since start)
    let mut open = true;
    loop {
        let wake = pending
            .front()
            .map_or(next_tick, |(d, _)| (*d).min(next_tick));
        if open {
            tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(m) => {
                        pending.push_back(m);
                        while pending.len() < ANSWER_QUEUE {
                            match rx.try_recv() {
                                Ok(m) => pending.push_back(m),
                                Err(_) => break,
                            }
                        }
                    }
                    None => open = false,
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        } else if pending.is_empty() {
            return;
        } else {
            tokio::time::sleep_until(wake.into()).await;
        }
        let now = Instant::now();
        while pending.front().is_some_and(|(d, _)| *d <= now) {
            if let Some((_, b)) = pending.pop_front() {
                out.extend_from_slice(&b);
            }
        }
        if now >= next_tick {
            next_tick = (next_tick + TICK).max(now);
            let rate = shared.rate.load(Relaxed);
            if rate == 0 || shared.watched == 0 {
                sched = None;
            } else {
                let (mut start, r, mut done) = match sched {
                    Some(s) if s.1 == rate => s,
                    _ => (now, rate, 0),
                };
                let due = (now.duration_since(start).as_secs_f64() * r as f64) as u64;
                let mut n = due.saturating_sub(done);
                let cap = (r as f64 * MAX_CATCH_UP.as_secs_f64()).max(1.0) as u64;
                if n > cap {
                    // too far behind (a blocked write): send a bounded batch and start
                    // the schedule again from here, counted
                    shared.schedule_slips.fetch_add(1, Relaxed);
                    n = cap;
                    start = now;
                    done = 0;
                } else {
                    done += n;
                }
                let mut sent = 0;
                for _ in 0..n {
                    if gen.event(&shared, &mut out, now) {
                        sent += 1;
                    }
                }
                shared.events_sent.fetch_add(sent, Relaxed);
                sched = Some((start, r, done));
            }
        }
        if !out.is_empty() {
            if !write_timed(&mut w, &out, &shared).await {
                return;
            }
            out.clear();
        }
    }
}

/// Write all of `buf`; the time blocked (the socket's send buffer full: the gateway not
/// reading) is measured from the first write that would block until the last octet is
/// written, so task scheduling alone never counts as a stall. False when the connection
/// is gone.
async fn write_timed(w: &mut OwnedWriteHalf, buf: &[u8], shared: &Shared) -> bool {
    let mut at = 0;
    let mut blocked: Option<Instant> = None;
    while at < buf.len() {
        match w.try_write(&buf[at..]) {
            Ok(0) => return false,
            Ok(n) => {
                at += n;
                shared.unread.wrote(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked.get_or_insert_with(Instant::now);
                if w.as_ref().writable().await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    if let Some(t) = blocked {
        let took = t.elapsed();
        if took >= STALL {
            shared.write_stalls.fetch_add(1, Relaxed);
        }
        shared
            .longest_write_us
            .fetch_max(took.as_micros() as u64, Relaxed);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_event_does_not_shift_the_latency_of_the_next() {
        let shared = Shared::new(2, 2);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        for (n, (call, phase)) in [(7, 0), (7, 1), (7, 2), (8, 0)].into_iter().enumerate() {
            shared.fifos[1].lock().unwrap().push_back(Sent {
                call,
                phase,
                at: at(n as u64 * 10),
            });
        }
        // (7, 1) lost: (7, 2) is paired with its own send time, (7, 1) is gone
        assert_eq!(shared.take_sent(1, 7, 0), Some(at(0)));
        assert_eq!(shared.take_sent(1, 7, 2), Some(at(20)));
        assert_eq!(shared.take_sent(1, 7, 1), None);
        // an event never sent (a resync's) leaves the FIFO as it is
        assert_eq!(shared.take_sent(1, 9, 0), None);
        assert_eq!(shared.take_sent(0, 8, 0), None, "another device's");
        assert_eq!(shared.take_sent(1, 8, 0), Some(at(30)));
        assert!(shared.fifos[1].lock().unwrap().is_empty());
    }

    /// Every generated report kind has a template, and a report written from it is the
    /// report the typed model encodes (and the oracle-checked codec decodes back).
    #[test]
    fn templates_give_the_typed_encoding() {
        for phase in 0..EVENTS_PER_CALL as u8 {
            let t = Template::new(phase).expect("a template for every generated report");
            for k in 0..500u32 {
                let f = Fields {
                    xref: k.wrapping_mul(2_654_435_761) | 1,
                    call: k.wrapping_mul(40_503).wrapping_add(1),
                    device: DEVICE_BASE + k * 1999 % MAX_DEVICES as u32,
                    invoke: INVOKE_FIRST + k * 4_000_000,
                };
                let mut out = Vec::new();
                t.write(&mut out, f);
                assert_eq!(
                    Some(out.clone()),
                    encode_event(phase, f),
                    "phase {phase} {k}"
                );
                let Ok(Apdu::Rose(Rose::Invoke(inv))) = Apdu::decode(&Bytes::from(out.clone()))
                else {
                    panic!("not an invoke: {out:02x?}");
                };
                assert_eq!(inv.invoke_id.value(), Some(i64::from(f.invoke)));
            }
        }
    }
}
