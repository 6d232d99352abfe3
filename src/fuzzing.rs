//! The properties the gateway's fuzz targets check (one-line shims in `fuzz/`, replayed by
//! `tests/fuzz_regressions.rs`): arbitrary bytes into each parser of outside input the
//! gateway and the simulator have beyond the codec. Each function panics only when a
//! property breaks; a panic inside the code under test is the bug libFuzzer reports.

use crate::api::protocol::ok_line;
use crate::api::request::parse_request;
use crate::sim::control::{parse as parse_control, Command};
use crate::sim::switch::{Output, Switch};
use crate::sim::SimConfig;
use bytes::Bytes;
use ctigate_csta::acse::{AarqParams, Acse};
use ctigate_csta::framing::Frame;
use ctigate_csta::Apdu;
use std::time::{Duration, Instant};

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
