//! The properties the gateway's fuzz targets check (one-line shims in `fuzz/`, replayed by
//! `tests/fuzz_regressions.rs`): arbitrary bytes into each parser of outside input the
//! gateway and the simulator have beyond the codec. Each function panics only when a
//! property breaks; a panic inside the code under test is the bug libFuzzer reports.

use crate::api::protocol::ok_line;
use crate::api::request::parse_request;
use crate::link::session::{Out, Session, Token, MAX_IN_FLIGHT};
use crate::link::{LinkConfig, LinkCounters};
use crate::model::{EventKind, Out as TrackerOut, SnapEntry, Tracker, TrackerConfig};
use crate::sim::control::{parse as parse_control, Command};
use crate::sim::switch::{Output, Switch};
use crate::sim::SimConfig;
use bytes::Bytes;
use ctigate_csta::acse::{AarqParams, Acse};
use ctigate_csta::events::{
    CallClearedEvent, ConferencedEvent, ConnectionClearedEvent, DeliveredEvent, DivertedEvent,
    EstablishedEvent, Event as CstaEvent, FailedEvent, HeldEvent, OriginatedEvent, QueuedEvent,
    RetrievedEvent, ServiceInitiatedEvent, TransferredEvent,
};
use ctigate_csta::framing::Frame;
use ctigate_csta::ops::{Argument, HoldCallArgument, SnapshotState, SystemStatus, SystemStatusArg};
use ctigate_csta::rose::Rose;
use ctigate_csta::types::{
    ConnectionId, ConnectionListEntry, DeviceId, EventCause, LocalConnectionState, LocalDeviceId,
    Party, Redirection,
};
use ctigate_csta::Apdu;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// `request`: a client's NDJSON line. Decoding never panics; an error names a kind and a
/// code (what the client is told); a decoded request has an op name from the enum; the
/// response line echoing its id (or `null`) is one JSON object whose `id` is the request's
/// id, a number or a string.
pub fn request_line(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let id = match parse_request(&line) {
        Ok(r) => {
            assert!(!r.op.name().is_empty());
            let v: serde_json::Value = serde_json::from_str(r.id.as_str()).expect("the id is JSON");
            assert!(v.is_number() || v.is_string(), "{v}");
            r.id
        }
        Err(bad) => {
            let (id, e) = *bad;
            assert!(!e.kind.is_empty() && !e.code.is_empty(), "{e:?}");
            id
        }
    };
    let out = ok_line(&id, serde_json::json!({}));
    let v: serde_json::Value = serde_json::from_str(&out).expect("a response line is JSON");
    assert_eq!(
        v["id"],
        serde_json::from_str::<serde_json::Value>(id.as_str()).expect("the id is JSON"),
        "{out}"
    );
}

/// `config_secrets`: a configuration file's text with a secret line put in it (a link's
/// `password`, a user's `token_sha256`, at a place the input chooses). Parsing and checking
/// never panic, and no error message contains the secret; `mask_secrets` keeps the line
/// count; the `[[user]]` parsers (`devices` entries, hashes) never panic on any line.
pub fn config_secrets(data: &[u8]) {
    use crate::api::auth::{parse_sha256, DeviceSet};
    use crate::config::{mask_secrets, Config};
    let (pick, rest) = data.split_first().unwrap_or((&0, &[]));
    let text = String::from_utf8_lossy(rest);
    const SECRET: &str = "Zq9SecretValue7";
    let secret = match pick % 3 {
        0 => format!("password = \"{SECRET}\""),
        1 => format!("token_sha256 = \"{SECRET}\""),
        _ => format!("token_sha256 = '{SECRET}'"),
    };
    let lines: Vec<&str> = text.lines().collect();
    let at = usize::from(pick / 3) % (lines.len() + 1);
    let mut doc = lines[..at].join("\n");
    doc.push('\n');
    doc.push_str(&secret);
    doc.push('\n');
    doc.push_str(&lines[at..].join("\n"));
    // the secret is only a secret where it is a value of its own (not inside another
    // key's multi-line string, where the input makes it an ordinary value)
    // (and not written by the input itself)
    let own_line = !text.contains("\"\"\"") && !text.contains("\'\'\'") && !text.contains(SECRET);
    if let Err(e) = Config::from_toml(&doc) {
        if own_line {
            assert!(!e.0.contains(SECRET), "the secret in an error: {e}");
        }
    }
    let masked = mask_secrets(&text);
    assert_eq!(masked.split('\n').count(), text.split('\n').count());
    if !text.contains('=') {
        assert_eq!(masked, text);
    }
    for l in text.lines() {
        let _ = DeviceSet::parse(&[l.to_string()]).map(|s| s.contains(l));
        let _ = parse_sha256(l);
    }
}

/// Every PDU the switch sends must be valid BER that our codec reads.
fn drain(sw: &mut Switch) {
    while let Some(o) = sw.poll_output() {
        if let Output::Pdu { pdu, .. } = o {
            if let Err(e) = Apdu::decode(&pdu) {
                panic!("the simulator sent an undecodable PDU ({e}): {pdu:02x?}");
            }
        }
    }
}

/// `sim_control`: lines of control commands (a scenario file or the control port) parsed
/// and applied to a switch, with time moving on between them. No input crashes the
/// switch; every command parsed is answered `ok` true or false.
pub fn sim_control(data: &[u8]) {
    let mut sw = Switch::new(SimConfig::default());
    let mut now = Instant::now();
    for line in String::from_utf8_lossy(data).lines().take(64) {
        let Ok(cmd) = parse_control(line) else {
            continue;
        };
        if matches!(cmd, Command::Sleep { .. } | Command::WaitFor { .. }) {
            continue; // waits of the server, not of the switch
        }
        let v = sw.control(cmd, now);
        assert!(v["ok"].is_boolean(), "{v}");
        now += Duration::from_millis(250);
        sw.handle_timeout(now);
        drain(&mut sw);
    }
    // and an hour later, every timer the commands set has run
    sw.handle_timeout(now + Duration::from_secs(3600));
    drain(&mut sw);
}

/// `sim_switch`: arbitrary frames from an associated application (`[len][octets]`
/// repeated; a length of 0 is a pre-association handshake octet) with a second between
/// them. No frame crashes the switch, and everything it answers is valid BER.
pub fn sim_switch(data: &[u8]) {
    let mut sw = Switch::new(SimConfig::default());
    let mut now = Instant::now();
    let a = sw
        .connect("fuzz", now)
        .expect("the first association is accepted");
    let aarq = Apdu::Acse(Acse::aarq(&AarqParams::default()).expect("the default AARQ"));
    let aarq = Bytes::from(aarq.encode().expect("the default AARQ encodes"));
    sw.receive(a, Frame::Pdu(aarq), now);
    drain(&mut sw);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        // a handshake takes the one octet after it; a PDU `len` octets (or what is left)
        let n = usize::from(len).max(1).min(tail.len());
        let frame = match len {
            0 => Frame::Handshake(tail.first().copied().unwrap_or(b'B')),
            _ => Frame::Pdu(Bytes::copy_from_slice(&tail[..n])),
        };
        rest = &tail[n..];
        sw.receive(a, frame, now);
        drain(&mut sw);
        now += Duration::from_secs(1);
        sw.handle_timeout(now);
        drain(&mut sw);
    }
}

// ---- tracker ------------------------------------------------------------------------------

/// Reads the fuzz input as small choices; zeros once it runs out.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// One of `n` (n > 0).
    fn pick(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }
    fn flag(&mut self) -> bool {
        self.byte() & 1 != 0
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The devices of the tracker's world: four stations, an ACD group, an outside number.
const DEVICES: [&str; 6] = ["201", "202", "203", "204", "8000", "0891234567"];
/// The devices whose monitors report events (the outside number never does).
const MONITORED: usize = 5;
/// Steps of one `tracker` or `link_session` input at most.
const MAX_STEPS: usize = 512;

/// `tracker`: a sequence of well-formed CSTA call events (delivered, established, held,
/// retrieved, connectionCleared, callCleared, transferred, conferenced, diverted, failed,
/// queued, originated, serviceInitiated) between devices 201-204, an ACD group 8000 and an
/// outside number, about callIDs 1-4, with plausible fields, reported for one of the
/// monitored devices; now and then a SnapshotDevice resync or a monitor stop; time moves
/// on by 0 to 64 s between them. After every step ([`check_tracker`]): the tracker's own
/// audit ([`Tracker::audit`]: no call in two states at a device, counts and indexes
/// consistent, maps bounded), every released call gone from the views, every call with
/// an event and no release since still there (and no view without an event), and at most
/// one `call.offering` per interaction and device visit (from its first event to its
/// release).
pub fn tracker(data: &[u8]) {
    let mut t = Tracker::new(TrackerConfig::default());
    let mut now = UNIX_EPOCH + Duration::from_secs(1_795_255_200);
    let mut c = Choices(data);
    let mut visits = Visits::new();
    let mut resyncs: Vec<(u64, Vec<SnapEntry>)> = Vec::new();
    let mut steps = 0;
    while !c.is_empty() && steps < MAX_STEPS {
        steps += 1;
        now += Duration::from_millis(u64::from(c.byte()) * 250);
        let at = DEVICES[c.pick(MONITORED)];
        let op = c.pick(16);
        let outs = match op {
            0..=13 => {
                let e = tracker_event(op, at, &mut c);
                t.on_event(at, &e, now)
            }
            14 => {
                // a snapshot asked for now, applied now or after later events (at most 4
                // in flight): entries in a known state, `unknown`, or without their callID
                if c.byte() & 1 == 0 && !resyncs.is_empty() || resyncs.len() >= 4 {
                    let (mark, entries) = resyncs.remove(0);
                    t.apply_resync(mark, &entries, now)
                } else {
                    let entries: Vec<SnapEntry> = (0..c.pick(4))
                        .map(|_| {
                            let call = call_id(&mut c);
                            let conn = if c.pick(8) == 0 {
                                ConnectionId::device_only(LocalDeviceId::Static(DeviceId::dialing(
                                    at,
                                )))
                            } else {
                                ConnectionId::dialing(call, at)
                            };
                            let state = if c.pick(4) == 0 {
                                SnapshotState::Unknown
                            } else {
                                SnapshotState::Known(lcs(&mut c))
                            };
                            SnapEntry::new(conn, state)
                        })
                        .collect();
                    let mark = t.begin_resync(at);
                    if c.byte() & 1 == 0 {
                        t.apply_resync(mark, &entries, now)
                    } else {
                        resyncs.push((mark, entries));
                        Vec::new()
                    }
                }
            }
            _ => {
                t.forget_device(at);
                visits.retain(|(d, _), _| d != at);
                Vec::new()
            }
        };
        check_tracker(&t, &outs, &mut visits, steps);
    }
}

/// (device, interaction) -> whether this visit had its `call.offering`.
type Visits = std::collections::HashMap<(String, String), bool>;

fn check_tracker(t: &Tracker, outs: &[TrackerOut], visits: &mut Visits, steps: usize) {
    let sizes = t
        .audit()
        .unwrap_or_else(|e| panic!("tracker audit after step {steps}: {e}\n{outs:#?}"));
    assert!(
        sizes.interactions <= sizes.views + sizes.orphans && sizes.views <= steps * 4,
        "tracker grows past what is live: {sizes:?} after {steps} steps"
    );
    for o in outs {
        let TrackerOut::Call {
            event,
            device,
            call,
            extra,
            ..
        } = o
        else {
            continue;
        };
        let key = (device.clone(), call.id.clone());
        // the views this one was merged from (a transfer, a conference) end here, and
        // their visit goes on as this one
        for r in &extra.replaces {
            if let Some(offered) = visits.remove(&(device.clone(), r.clone())) {
                *visits.entry(key.clone()).or_insert(false) |= offered;
            }
        }
        match event {
            EventKind::CallReleased => {
                assert!(
                    visits.remove(&key).is_some(),
                    "call.released of {} at {device} without an event before: {outs:#?}",
                    call.id
                );
            }
            EventKind::CallOffering => {
                let offered = visits.entry(key).or_insert(false);
                assert!(
                    !*offered,
                    "a second call.offering of {} at {device} in one visit: {outs:#?}",
                    call.id
                );
                *offered = true;
            }
            _ => {
                visits.entry(key).or_insert(false);
            }
        }
    }
    for d in &DEVICES[..MONITORED] {
        let views = t.calls(d);
        for v in &views {
            assert!(
                visits.contains_key(&(d.to_string(), v.id.clone())),
                "{} at {d} is a view with no event about it (step {steps}): {outs:#?}",
                v.id
            );
        }
        for (dev, id) in visits.keys().filter(|(dev, _)| dev == d) {
            assert!(
                views.iter().any(|v| &v.id == id),
                "{id} at {dev} had events and no call.released, and is gone (step {steps}): {outs:#?}"
            );
        }
    }
}

fn call_id(c: &mut Choices) -> [u8; 2] {
    (1 + c.pick(4) as u16).to_be_bytes()
}

fn lcs(c: &mut Choices) -> LocalConnectionState {
    [
        LocalConnectionState::Null,
        LocalConnectionState::Initiated,
        LocalConnectionState::Alerting,
        LocalConnectionState::Connected,
        LocalConnectionState::Hold,
        LocalConnectionState::Queued,
        LocalConnectionState::Fail,
    ][c.pick(7)]
}

fn cause(c: &mut Choices) -> EventCause {
    [
        EventCause::NEW_CALL,
        EventCause::NORMAL,
        EventCause::NORMAL_CLEARING,
        EventCause::TRANSFER,
        EventCause::SINGLE_STEP_TRANSFER,
        EventCause::CONFERENCE,
        EventCause::CONSULTATION,
        EventCause::MAKE_CALL,
        EventCause::BUSY,
        EventCause::CALL_CANCELLED,
        EventCause::DEST_NOT_OBTAINABLE,
        EventCause(i64::from(c.byte())),
    ][c.pick(12)]
}

/// One well-formed call event of kind `op` (0..=13), mostly about `at`.
fn tracker_event(op: usize, at: &str, c: &mut Choices) -> CstaEvent {
    let call = call_id(c);
    // the device the event is about: mostly the monitored one
    let dev = if c.pick(4) == 0 {
        DEVICES[c.pick(DEVICES.len())]
    } else {
        at
    };
    let other = DEVICES[c.pick(DEVICES.len())];
    let conn = ConnectionId::dialing(call, dev);
    let p = Party::dialing;
    let why = cause(c);
    let (from, to) = if c.flag() { (other, dev) } else { (dev, other) };
    let uui = c.flag().then(|| Bytes::from(format!("case={}", c.pick(4))));
    let info = if c.flag() { Some(lcs(c)) } else { None };
    match op {
        0 => {
            let mut e =
                DeliveredEvent::new(conn, p(dev), p(from), p(to), Redirection::NotKnown, why);
            e.local_connection_info = info.or(Some(LocalConnectionState::Alerting));
            e.user_data = uui;
            e.into()
        }
        1 => {
            let mut e =
                EstablishedEvent::new(conn, p(dev), p(from), p(to), Redirection::NotKnown, why);
            e.local_connection_info = info;
            e.user_data = uui;
            e.into()
        }
        2 => HeldEvent::new(conn, p(dev), why).into(),
        3 => RetrievedEvent::new(conn, p(dev), why).into(),
        4 => ConnectionClearedEvent::new(conn, p(dev), why).into(),
        5 => CallClearedEvent::new(ConnectionId::call_only(call), why).into(),
        6 | 7 => {
            // the calls `call` (and a second) become `result`, with 1 to 3 parties
            let second = call_id(c);
            let result = call_id(c);
            let list: Vec<ConnectionListEntry> = (0..1 + c.pick(3))
                .map(|_| {
                    let d = DEVICES[c.pick(DEVICES.len())];
                    ConnectionListEntry {
                        new_connection: Some(ConnectionId::dialing(result, d)),
                        old_connection: c.flag().then(|| ConnectionId::dialing(second, d)),
                        endpoint: Some(p(d)),
                        ..ConnectionListEntry::default()
                    }
                })
                .collect();
            let secondary = c.flag().then(|| ConnectionId::dialing(second, dev));
            if op == 6 {
                let mut e = TransferredEvent::new(conn, p(dev), p(other), list, why);
                e.secondary_old_call = secondary;
                e.local_connection_info = info;
                e.user_data = uui;
                e.into()
            } else {
                let mut e = ConferencedEvent::new(conn, p(dev), p(other), list, why);
                e.secondary_old_call = secondary;
                e.local_connection_info = info;
                e.into()
            }
        }
        8 => {
            let mut e = DivertedEvent::new(conn, p(from), p(to), Redirection::NotKnown, why);
            e.local_connection_info = info;
            e.into()
        }
        9 => {
            let mut e = FailedEvent::new(conn, p(dev), p(from), p(to), Redirection::NotKnown, why);
            e.local_connection_info = info;
            e.into()
        }
        10 => {
            let mut e =
                QueuedEvent::new(conn, p("8000"), p(from), p(to), Redirection::NotKnown, why);
            e.local_connection_info = info.or(Some(LocalConnectionState::Queued));
            e.user_data = uui;
            e.into()
        }
        11 => {
            let mut e = OriginatedEvent::new(conn, p(dev), p(other), why);
            e.local_connection_info = info;
            e.into()
        }
        _ => {
            let mut e = ServiceInitiatedEvent::new(conn, p(dev), why);
            e.local_connection_info = info.or(Some(LocalConnectionState::Initiated));
            e.into()
        }
    }
}

// ---- link_session ---------------------------------------------------------------------------

/// The real Panasonic AARE (WIRE.md §3.4), accepted.
const AARE: &[u8] = &[
    0x61, 0x2f, 0x80, 0x02, 0x07, 0x80, 0xa1, 0x07, 0x06, 0x05, 0x2b, 0x0c, 0x00, 0x81, 0x5a, 0xa2,
    0x03, 0x02, 0x01, 0x00, 0xa3, 0x05, 0xa1, 0x03, 0x02, 0x01, 0x01, 0xbe, 0x14, 0x28, 0x12, 0x06,
    0x07, 0x2b, 0x0c, 0x00, 0x82, 0x1d, 0x81, 0x48, 0xa0, 0x07, 0xa0, 0x05, 0x03, 0x03, 0x00, 0x08,
    0x00,
];

/// `a1 L 02 n <id> 02 01 15 <report>`: a deliveredEvent on crossRefIdentifier `00000001`
/// (monitorStart results below give that one), without its invoke id.
const DELIVERED_BODY: &[u8] = &[
    0x02, 0x01, 0x15, 0x30, 0x40, 0x55, 0x04, 0x00, 0x00, 0x00, 0x01, 0xa0, 0x38, 0xa4, 0x36, 0x6b,
    0x0f, 0x30, 0x0d, 0x80, 0x02, 0x00, 0x42, 0xa1, 0x07, 0x30, 0x05, 0x80, 0x03, 0x32, 0x30, 0x32,
    0x63, 0x07, 0x30, 0x05, 0x80, 0x03, 0x32, 0x30, 0x32, 0x61, 0x07, 0x30, 0x05, 0x80, 0x03, 0x32,
    0x30, 0x31, 0x62, 0x07, 0x30, 0x05, 0x80, 0x03, 0x32, 0x30, 0x32, 0x64, 0x02, 0x87, 0x00, 0x4e,
    0x01, 0x02, 0x0a, 0x01, 0x16,
];

/// A BER TLV with a short or long definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    match content.len() {
        n @ 0..=0x7f => v.push(n as u8),
        n @ 0x80..=0xff => v.extend([0x81, n as u8]),
        n => v.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    v.extend_from_slice(content);
    v
}

/// A minimal BER INTEGER.
fn int(v: i64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let mut i = 0;
    while i < 7 && ((b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0)) {
        i += 1;
    }
    tlv(0x02, &b[i..])
}

/// What the switch answers to our invoke `id` of `opcode`, as the fuzz input chooses: a
/// returnResult (monitorStart: crossRefIdentifier 00000001 to 00000004), a returnError
/// universalFailure, or a reject.
fn answer_to(id: i64, opcode: i64, c: &mut Choices) -> Vec<u8> {
    match c.pick(4) {
        0 | 1 if opcode == ctigate_csta_model::opcode::MONITOR_START => {
            let xref = tlv(0x55, &[0, 0, 0, 1 + c.pick(4) as u8]);
            let result = [int(opcode), tlv(0x30, &xref)].concat();
            tlv(0xa2, &[int(id), tlv(0x30, &result)].concat())
        }
        0 | 1 => tlv(0xa2, &int(id)),
        2 => tlv(
            0xa3,
            &[int(id), int(1), tlv(0xa0, &[0x0a, 0x01, c.byte()])].concat(),
        ),
        _ => tlv(0xa4, &[int(id), vec![0x81, 0x01, c.byte() % 8]].concat()),
    }
}

/// `link_session`: the BER link [`Session`] associated with a switch, then driven by the
/// input: arbitrary frames (and handshake octets), well-formed answers to our invokes in
/// flight (results, monitorStart results, universalFailure, rejects) and event reports,
/// time moving on (0 to 25.5 s), requests, monitor starts and stops of devices 201-204,
/// lost framing, a transport that closes and reconnects, shutdown. After every step
/// ([`check_session`]): every request is answered exactly once, or is still waiting
/// within its deadline; the callers waiting are at most [`MAX_IN_FLIGHT`] and the
/// pending map bounded; every frame the session sends is valid BER our codec reads; the
/// counters never go back. An hour after the input, every request has its answer.
pub fn link_session(data: &[u8]) {
    let cfg = LinkConfig {
        name: "fuzz".into(),
        versions: vec![ctigate_csta::acse::version::ECMA_285_ED2],
        keepalive_misses: 2,
        ..LinkConfig::default()
    };
    let timeout = cfg.request_timeout;
    let mut now = Instant::now();
    let mut f = SessionFuzz {
        s: Session::new(cfg, now),
        waiting: std::collections::HashMap::new(),
        sent: Vec::new(),
        next_token: 0,
        counters: LinkCounters::default(),
        connect_asked: false,
    };
    f.drain(now);
    f.s.connected(now);
    f.drain(now);
    f.s.handle_frame(Frame::Pdu(Bytes::from_static(AARE)), now);
    f.drain(now);
    assert!(f.s.is_associated(), "the AARE brings the link up");
    let mut c = Choices(data);
    let mut steps = 0;
    while !c.is_empty() && steps < MAX_STEPS {
        steps += 1;
        match c.pick(12) {
            0 | 1 => {
                let n = c.pick(64);
                let mut b = Vec::with_capacity(n);
                for _ in 0..n {
                    b.push(c.byte());
                }
                f.s.handle_frame(Frame::Pdu(Bytes::from(b)), now);
            }
            2 => f.s.handle_frame(Frame::Handshake(c.byte()), now),
            3 if !f.sent.is_empty() => {
                let (id, opcode) = f.sent.remove(c.pick(f.sent.len()));
                let pdu = answer_to(id, opcode, &mut c);
                f.s.handle_frame(Frame::Pdu(Bytes::from(pdu)), now);
            }
            3 | 4 => {
                // an event report (its invoke id is the switch's own)
                let body = [int(i64::from(c.byte())), DELIVERED_BODY.to_vec()].concat();
                f.s.handle_frame(Frame::Pdu(Bytes::from(tlv(0xa1, &body))), now);
            }
            5 => {
                now += Duration::from_millis(u64::from(c.byte()) * 100);
                f.s.handle_timeout(now);
            }
            6 => {
                let t = f.token(now + timeout);
                let arg: Argument = if c.flag() {
                    HoldCallArgument::new(ConnectionId::dialing([0, 1], "201")).into()
                } else {
                    SystemStatusArg::new(SystemStatus::Normal).into()
                };
                f.s.request(t, arg, now);
            }
            7 | 8 => {
                let t = f.token(now + timeout);
                f.s.monitor(t, DEVICES[c.pick(4)], now);
            }
            9 => {
                let t = f.token(now + timeout);
                f.s.unmonitor(t, DEVICES[c.pick(4)], now);
            }
            10 => match c.pick(4) {
                0 => f.s.framing_lost(now, "fuzz"),
                1 => f.s.transport_closed(now, "fuzz"),
                2 => f.s.shutdown(now),
                _ => {
                    if f.connect_asked {
                        f.connect_asked = false;
                        f.s.connected(now);
                        f.drain(now);
                        f.s.handle_frame(Frame::Pdu(Bytes::from_static(AARE)), now);
                    }
                }
            },
            _ => {
                // a re-association after a backoff
                now += Duration::from_secs(1);
                f.s.handle_timeout(now);
            }
        }
        f.drain(now);
    }
    // an hour later every request has its answer (a link that is down answers at once)
    for _ in 0..4 {
        now += Duration::from_secs(900);
        f.s.handle_timeout(now);
        f.drain(now);
    }
    assert!(
        f.waiting.is_empty(),
        "requests never answered: {:?}",
        f.waiting
    );
}

struct SessionFuzz {
    s: Session,
    /// Requests not answered yet, with their deadline.
    waiting: std::collections::HashMap<Token, Instant>,
    /// Our invokes the switch has not answered (invoke id, opcode).
    sent: Vec<(i64, i64)>,
    next_token: Token,
    counters: LinkCounters,
    connect_asked: bool,
}

impl SessionFuzz {
    fn token(&mut self, deadline: Instant) -> Token {
        self.next_token += 1;
        self.waiting.insert(self.next_token, deadline);
        self.next_token
    }

    /// Take what the session produced and check it ([`link_session`]).
    fn drain(&mut self, now: Instant) {
        while let Some(o) = self.s.poll_output() {
            match o {
                Out::Answer { token, .. } => {
                    assert!(
                        self.waiting.remove(&token).is_some(),
                        "request {token} answered twice, or never asked"
                    );
                }
                Out::Transmit(Frame::Pdu(p)) => match Apdu::decode(&p) {
                    Ok(Apdu::Rose(Rose::Invoke(inv))) => {
                        if let (Some(id), Some(op)) = (inv.invoke_id.value(), inv.opcode.local()) {
                            if self.sent.len() < 4 * MAX_IN_FLIGHT {
                                self.sent.push((id, op));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("the session sent an undecodable PDU ({e}): {p:02x?}"),
                },
                Out::Transmit(Frame::Handshake(_)) => {}
                Out::Connect => self.connect_asked = true,
                Out::Close => self.sent.clear(),
                Out::Event(_) => {}
            }
        }
        for (t, d) in &self.waiting {
            assert!(
                *d > now,
                "request {t} is past its deadline and not answered"
            );
        }
        assert!(
            self.waiting.len() <= MAX_IN_FLIGHT,
            "{} callers waiting",
            self.waiting.len()
        );
        // callers, re-monitors, stops of given-up monitors, keep-alives
        assert!(
            self.s.pending() <= 2 * MAX_IN_FLIGHT + 4,
            "{} invokes pending",
            self.s.pending()
        );
        let c = self.s.counters();
        assert!(
            c.malformed_frames >= self.counters.malformed_frames
                && c.rejects_sent >= self.counters.rejects_sent,
            "counters went back: {c:?} after {:?}",
            self.counters
        );
        self.counters = c;
    }
}
