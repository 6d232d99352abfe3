//! The properties the fuzz targets check, one function per target.
//!
//! Shared by the libFuzzer binaries in `fuzz_targets/` and by the root crate's
//! `tests/fuzz_regressions.rs` (which includes this file with `#[path]`), so a committed
//! corpus or regression input is replayed through exactly the same asserts under plain
//! `cargo test`. Keep it free of inner attributes and of anything the root crate's tests
//! cannot name (`ctigate`, `ctigate-csta`, `bytes`, `tokio-util`, `serde_json`).
//!
//! Every check takes arbitrary bytes and panics only when the codec breaks a property:
//! decoders must not panic, framing must be exact, and canonical re-encoding must be a
//! fixpoint (`encode(decode(encode(decode(x)))) == encode(decode(x))`).

use bytes::{Bytes, BytesMut};
use ctigate_csta::acse::Acse;
use ctigate_csta::framing::{Frame, Framing, U16Codec, Xml8Codec, XmlFrame, HANDSHAKE_SWITCH};
use ctigate_csta::json::apdu_json;
use ctigate_csta::{Apdu, Limits};
use tokio_util::codec::{Decoder, Encoder};

/// The fuzz targets, by the name of their binary and corpus directory.
pub const TARGETS: [&str; 11] = [
    "frame",
    "acse",
    "apdu",
    "roundtrip",
    "hot_event",
    "request",
    "sim_control",
    "sim_switch",
    "link_session",
    "tracker",
    "config_secrets",
];

/// Run the check of `target` on `data`; `false` for an unknown target name.
pub fn check(target: &str, data: &[u8]) -> bool {
    match target {
        "frame" => check_frame(data),
        "acse" => check_acse(data),
        "apdu" => check_apdu(data),
        "roundtrip" => check_roundtrip(data),
        "hot_event" => check_hot_event(data),
        // the gateway's and the simulator's parsers (src/fuzzing.rs)
        "request" => ctigate::fuzzing::request_line(data),
        "sim_control" => ctigate::fuzzing::sim_control(data),
        "sim_switch" => ctigate::fuzzing::sim_switch(data),
        "link_session" => ctigate::fuzzing::link_session(data),
        "tracker" => ctigate::fuzzing::tracker(data),
        "config_secrets" => ctigate::fuzzing::config_secrets(data),
        _ => return false,
    }
    true
}

fn hex(b: &[u8]) -> String {
    ctigate_csta::json::hex(b)
}

/// Assert two octet strings are equal, showing both in hex if not (formatted only then).
fn same(a: &[u8], b: &[u8], what: &str) {
    if a != b {
        panic!("{what}:\n  left: {}\n right: {}", hex(a), hex(b));
    }
}

// ---- frame ------------------------------------------------------------------------------

/// Feed `input` to a decoder `chunk` octets at a time, decoding after each piece until
/// `Ok(None)` or an error. Returns the items, whether it stopped on an error, and how many
/// octets the decoder consumed.
fn drain<D: Decoder>(codec: &mut D, input: &[u8], chunk: usize) -> (Vec<D::Item>, bool, usize) {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut fed = 0;
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(_) => return (items, true, fed - buf.len()),
            }
        }
    }
    (items, false, fed - buf.len())
}

/// `frame`: the first octet selects the setup (bit 0: expect the `P` handshake; bits 1-4:
/// a smaller maximum; bits 5-7: log2 of the size of the pieces fed in the streaming pass), the rest
/// is the byte stream. [`U16Codec`] (with each [`Framing`]: 2-octet length, HiPath) and
/// [`Xml8Codec`] must: decode the same items and
/// consume the same octets whether the stream arrives at once or in pieces, never return
/// an item over their maximum, and re-encode the items to exactly the octets consumed,
/// which decode again to the same items.
pub fn check_frame(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let handshake = mode & 1 != 0;
    let max = match (mode >> 1) & 0x0f {
        0 => ctigate_csta::framing::MAX_U16_FRAME,
        n => usize::from(n) * 23, // 23..=345: small enough for the fuzzer to cross
    };
    let chunk = 1usize << (mode >> 5); // 1, 2, 4 .. 128

    // -- length-prefixed framings: the 2-octet length and the HiPath header (26 8x xx)
    for framing in Framing::ALL {
        let u16_codec = || {
            let c = U16Codec::new().with_max(max).with_framing(framing);
            if handshake {
                c.expecting_handshake(HANDSHAKE_SWITCH)
            } else {
                c
            }
        };
        let (items, err, used) = drain(&mut u16_codec(), stream, stream.len());
        let streamed = drain(&mut u16_codec(), stream, chunk);
        assert_eq!(
            (&items, err, used),
            (&streamed.0, streamed.1, streamed.2),
            "U16Codec ({framing}): fed at once vs in pieces of {chunk}"
        );
        let cmax = u16_codec().max();
        let mut out = BytesMut::new();
        let mut enc = u16_codec();
        for (i, item) in items.iter().enumerate() {
            match item {
                Frame::Pdu(p) => assert!(
                    p.len() <= cmax,
                    "U16Codec ({framing}) item of {} octets over the max {cmax}",
                    p.len()
                ),
                Frame::Handshake(b) => assert!(
                    i == 0 && handshake && *b == HANDSHAKE_SWITCH,
                    "unexpected handshake item"
                ),
            }
            enc.encode(item.clone(), &mut out)
                .expect("U16Codec re-encode of a decoded item");
        }
        same(
            &out,
            &stream[..used],
            "U16Codec re-encoding differs from the octets consumed",
        );
        let (again, err2, used2) = drain(&mut u16_codec(), &out, out.len());
        assert!(
            !err2 && used2 == out.len() && again == items,
            "U16Codec ({framing}): re-encoded stream decodes differently"
        );
    }

    // -- 8-octet CSTA-XML header framing
    let (items, err, used) = drain(&mut Xml8Codec::with_max(max), stream, stream.len());
    let streamed = drain(&mut Xml8Codec::with_max(max), stream, chunk);
    assert_eq!(
        (&items, err, used),
        (&streamed.0, streamed.1, streamed.2),
        "Xml8Codec: fed at once vs in pieces of {chunk}"
    );
    let mut out = BytesMut::new();
    let mut enc = Xml8Codec::with_max(max);
    for XmlFrame { invoke_id, body } in &items {
        assert!(
            body.len() + 8 <= max,
            "Xml8Codec item of {} octets over the max {max}",
            body.len() + 8
        );
        assert!(*invoke_id <= 9999);
        enc.encode(
            XmlFrame {
                invoke_id: *invoke_id,
                body: body.clone(),
            },
            &mut out,
        )
        .expect("Xml8Codec re-encode");
    }
    same(
        &out,
        &stream[..used],
        "Xml8Codec re-encoding differs from the octets consumed",
    );
    let (again, err2, used2) = drain(&mut Xml8Codec::with_max(max), &out, out.len());
    assert!(
        !err2 && used2 == out.len() && again == items,
        "Xml8Codec: re-encoded stream decodes differently"
    );
}

// ---- acse -------------------------------------------------------------------------------

/// `acse`: [`Acse::decode`] must not panic; what it accepts must encode, and the encoding
/// must decode to an APDU that encodes to the same octets (canonical fixpoint).
pub fn check_acse(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    let Ok(a) = Acse::decode(&buf, &Limits::DEFAULT) else {
        return;
    };
    let e1 = a
        .encode()
        .unwrap_or_else(|e| panic!("encode of a decoded ACSE APDU failed: {e}"));
    let mut e1b = Vec::new();
    a.encode_into(&mut e1b)
        .unwrap_or_else(|e| panic!("encode_into failed: {e}"));
    same(&e1, &e1b, "Acse::encode and Acse::encode_into differ");
    let b = Acse::decode(&Bytes::from(e1.clone()), &Limits::DEFAULT)
        .unwrap_or_else(|e| panic!("canonical ACSE encoding {} does not decode: {e}", hex(&e1)));
    let e2 = b
        .encode()
        .unwrap_or_else(|e| panic!("re-encode failed: {e}"));
    same(&e1, &e2, "ACSE canonical encoding is not a fixpoint");
    let _ = (
        a.context_name(),
        a.result(),
        a.diagnostic(),
        a.csta_user_info(),
        a.authentication(),
    );
}

// ---- apdu -------------------------------------------------------------------------------

/// `apdu`: [`Apdu::decode`] (ACSE/ROSE dispatch, typed CSTA argument) and everything that
/// renders its result ([`apdu_json`], names, the error's `Display`) must not panic.
pub fn check_apdu(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    match Apdu::decode(&buf) {
        Ok(a) => {
            let j = serde_json::Value::Object(apdu_json(&a));
            let _ = j.to_string();
            let _ = (a.kind_name(), a.operation_name(), a.event_name());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // a tight depth limit exercises the limit checks on the same input
    let tight = Limits {
        max_pdu: data.len(),
        max_depth: 4,
    };
    if let Err(e) = Apdu::decode_with(&buf, &tight) {
        let _ = e.to_string();
    }
}

// ---- hot_event --------------------------------------------------------------------------

/// `hot_event`: whenever the hot path ([`ctigate_csta::hot::event_report`]) reads an input,
/// the general path must read it too and give the same typed report: the hot path never
/// decides what a PDU means on its own.
pub fn check_hot_event(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    let Some(hot) = ctigate_csta::hot::event_report(&buf) else {
        return;
    };
    let Some(general) = ctigate_csta::hot::general_event_report(&buf) else {
        panic!(
            "the hot path read {} but the general path does not decode it as an event report",
            hex(data)
        );
    };
    match general {
        Ok(g) if g == hot => {}
        g => panic!(
            "the hot path and the general path differ on {}:\n   hot: {hot:?}\n general: {g:?}",
            hex(data)
        ),
    }
}

// ---- roundtrip --------------------------------------------------------------------------

/// `roundtrip`: for every input [`Apdu::decode`] accepts, `e1 = encode()` must succeed, `e1`
/// must decode, re-encode to itself (fixpoint), and render to the same JSON as the input
/// (JSON fills in DEFAULT values, so omitting them in `e1` does not show; BIT STRINGs are
/// compared as the set of bits they hold, see [`named_bits`]).
pub fn check_roundtrip(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    let Ok(a) = Apdu::decode(&buf) else {
        return;
    };
    let e1 = a
        .encode()
        .unwrap_or_else(|e| panic!("encode of a decoded APDU failed: {e}"));
    let b = Apdu::decode(&Bytes::from(e1.clone()))
        .unwrap_or_else(|e| panic!("canonical encoding {} does not decode: {e}", hex(&e1)));
    let e2 = b
        .encode()
        .unwrap_or_else(|e| panic!("re-encode failed: {e}"));
    same(&e1, &e2, "canonical encoding is not a fixpoint");
    let (ja, jb) = (
        named_bits(serde_json::Value::Object(apdu_json(&a))),
        named_bits(serde_json::Value::Object(apdu_json(&b))),
    );
    assert!(
        ja == jb,
        "JSON of the input and of its canonical encoding {} differ:\n input: {}\n canon: {}",
        hex(&e1),
        ja,
        jb
    );
}

/// `{"$bits", "$len"}` rewritten as the set of bits it holds: trailing 0 bits and unused
/// bits past `$len` removed. X.680 §22.7 lets encoders add or drop trailing 0 bits of a
/// named bit list, and the encoder omits a value equal to its DEFAULT by the bits set
/// (`{version1}` sent as `06 80`, two bits), while JSON shows the bits as they came.
fn named_bits(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Object(m) => {
            if let (Some(J::String(h)), Some(n)) =
                (m.get("$bits"), m.get("$len").and_then(J::as_u64))
            {
                let bytes: Vec<u8> = (0..h.len() / 2)
                    .filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                let set = |i: usize| bytes.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
                let len = (0..(n as usize).min(bytes.len() * 8))
                    .rev()
                    .find(|&i| set(i))
                    .map_or(0, |i| i + 1);
                let mut out = vec![0u8; len.div_ceil(8)];
                for i in (0..len).filter(|&i| set(i)) {
                    out[i / 8] |= 0x80 >> (i % 8);
                }
                return serde_json::json!({"$bits": hex(&out), "$len": len});
            }
            J::Object(m.into_iter().map(|(k, x)| (k, named_bits(x))).collect())
        }
        J::Array(a) => J::Array(a.into_iter().map(named_bits).collect()),
        x => x,
    }
}
