//! The fields of a call event's line after its seq, written straight from the typed view:
//! the keys as the literals they are, each string value as serde_json would write it.
//!
//! The same text as serde_json makes of the derived `Serialize` of the view (the event
//! line's shape in PROTOCOL.md, and what `status`, `monitor.start` and snapshots give
//! for a call): tests below compare the two on views with every optional part, escapes
//! and non-ASCII text. Through serde every key of every line went through serde_json's
//! escaping loop, about 20 keys and 14 values a line, a fifth of the event pump's
//! instructions (BENCHMARKS.md).

use super::hub::push_u64;
use crate::model::{CallExtra, CallView, Stamp};
use std::time::SystemTime;

/// `{"time":...,"link":...,["device":...,]"call":{...},"cause":...[, the extra fields]}`:
/// the tail of a call event's line (see `hub::tail`).
pub(crate) fn call_tail(
    time: &str,
    link: &str,
    device: Option<&str>,
    call: &CallView,
    cause: Option<&str>,
    extra: &CallExtra,
) -> String {
    let mut o = String::with_capacity(512);
    o.push_str(r#"{"time":"#);
    string(&mut o, time);
    o.push_str(r#","link":"#);
    string(&mut o, link);
    if let Some(d) = device {
        o.push_str(r#","device":"#);
        string(&mut o, d);
    }
    o.push_str(r#","call":"#);
    view(&mut o, call);
    o.push_str(r#","cause":"#);
    opt(&mut o, cause);
    extras(&mut o, extra);
    o.push('}');
    o
}

/// The view as its derived `Serialize` gives it, field for field in declaration order.
fn view(o: &mut String, v: &CallView) {
    o.push_str(r#"{"id":"#);
    string(o, &v.id);
    o.push_str(r#","pbx_call_id":"#);
    string(o, &v.pbx_call_id);
    o.push_str(r#","state":"#);
    string(o, v.state.as_str());
    o.push_str(r#","type":"#);
    string(o, v.r#type.as_str());
    o.push_str(r#","ani":"#);
    opt(o, v.ani.as_deref());
    o.push_str(r#","dnis":"#);
    opt(o, v.dnis.as_deref());
    o.push_str(r#","other":"#);
    opt(o, v.other.as_deref());
    o.push_str(r#","parties":["#);
    for (i, p) in v.parties.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        string(o, p);
    }
    o.push_str(r#"],"related":"#);
    opt(o, v.related.as_deref());
    o.push_str(r#","variables":{"#);
    for (i, (k, val)) in v.variables.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        string(o, k);
        o.push(':');
        string(o, val);
    }
    o.push_str(r#"},"started":"#);
    time(o, Some(v.started));
    o.push_str(r#","answered":"#);
    time(o, v.answered);
    o.push_str(r#","ended":"#);
    time(o, v.ended);
    o.push_str(r#","visit":"#);
    push_u64(o, u64::from(v.visit));
    o.push('}');
}

/// The fields of [`CallExtra`] that are set, as its derived `Serialize` gives them.
fn extras(o: &mut String, e: &CallExtra) {
    let CallExtra {
        digits,
        party,
        from,
        to,
        conferencing,
        added,
        replaces,
        duration_ms,
    } = e;
    for (key, val) in [
        (r#","digits":"#, digits),
        (r#","party":"#, party),
        (r#","from":"#, from),
        (r#","to":"#, to),
        (r#","conferencing":"#, conferencing),
        (r#","added":"#, added),
    ] {
        if let Some(v) = val {
            o.push_str(key);
            string(o, v);
        }
    }
    match replaces.as_slice() {
        [] => {}
        [one] => {
            o.push_str(r#","replaces":"#);
            string(o, one);
        }
        many => {
            o.push_str(r#","replaces":["#);
            for (i, r) in many.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                string(o, r);
            }
            o.push(']');
        }
    }
    if let Some(ms) = duration_ms {
        o.push_str(r#","duration_ms":"#);
        push_u64(o, *ms);
    }
}

/// `s` as a JSON string: as it is between quotes when nothing in it needs escaping (what
/// serde_json escapes: `"`, `\` and the control characters below U+0020), else as
/// serde_json writes it.
fn string(o: &mut String, s: &str) {
    if needs_escape(s.as_bytes()) {
        o.push_str(&serde_json::Value::from(s).to_string());
    } else {
        o.push('"');
        o.push_str(s);
        o.push('"');
    }
}

/// Whether an octet of `s` is `"`, `\` or below 0x20: eight at a time (the exact tests
/// for a zero octet and for one below a bound of "Bit Twiddling Hacks"), then the rest.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    /// Some octet of `x` is below `n` (at most 0x80).
    fn below(x: u64, n: u8) -> bool {
        x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH != 0
    }
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        // an octet equal to c: that octet of x ^ (c in every octet) is zero (below 1)
        if below(x, 0x20)
            || below(x ^ (ONES * u64::from(b'"')), 1)
            || below(x ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn opt(o: &mut String, s: Option<&str>) {
    match s {
        Some(s) => string(o, s),
        None => o.push_str("null"),
    }
}

fn time(o: &mut String, t: Option<SystemTime>) {
    match t {
        Some(t) => string(o, Stamp::new(t).as_str()),
        None => o.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CallState, CallType};
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    /// The same tail through serde_json and the derived `Serialize` (what the line was
    /// made with before).
    fn by_serde(
        time: &str,
        link: &str,
        device: Option<&str>,
        call: &CallView,
        cause: &Option<String>,
        extra: &CallExtra,
    ) -> String {
        #[derive(serde::Serialize)]
        struct Tail<'a> {
            time: &'a str,
            link: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            device: Option<&'a str>,
            call: &'a CallView,
            cause: &'a Option<String>,
            #[serde(flatten)]
            extra: &'a CallExtra,
        }
        serde_json::to_string(&Tail {
            time,
            link,
            device,
            call,
            cause,
            extra,
        })
        .unwrap()
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn plain_view() -> CallView {
        CallView {
            id: "0123456789abcdef".into(),
            pbx_call_id: "00004ef5".into(),
            state: CallState::Offering,
            r#type: CallType::Inbound,
            ani: Some("0891234567".into()),
            dnis: Some("2000212".into()),
            other: Some("0891234567".into()),
            parties: vec!["2000212".into(), "0891234567".into()],
            related: None,
            variables: BTreeMap::new(),
            started: at(1_796_000_000_123),
            answered: None,
            ended: None,
            visit: 1,
        }
    }

    /// Text that needs escaping, or is not ASCII, in every string the line can carry.
    const ODD: [&str; 8] = [
        "",
        "a\"b",
        "back\\slash",
        "line\nfeed\ttab\r",
        "\u{0}\u{1f}\u{7f}",
        "Zürich €",
        "😀 \u{2028}",
        "</script>",
    ];

    #[test]
    fn a_plain_call_line_is_the_serde_line() {
        let v = plain_view();
        let e = CallExtra::default();
        let cause = Some("newCall".to_string());
        for device in [Some("2000212"), None] {
            let t = "2026-12-07T07:07:04.289Z";
            assert_eq!(
                call_tail(t, "pbx1", device, &v, cause.as_deref(), &e),
                by_serde(t, "pbx1", device, &v, &cause, &e)
            );
        }
    }

    #[test]
    fn every_optional_part_and_every_escape_is_written_as_serde_writes_it() {
        for (i, s) in ODD.iter().enumerate() {
            let s = s.to_string();
            let mut v = plain_view();
            v.id = s.clone();
            v.pbx_call_id = s.clone();
            v.state = [CallState::Connected, CallState::Released, CallState::Held][i % 3];
            v.r#type = [CallType::Consult, CallType::Internal, CallType::Outbound][i % 3];
            v.ani = (i % 2 == 0).then(|| s.clone());
            v.dnis = (i % 3 == 0).then(|| s.clone());
            v.other = Some(s.clone());
            v.parties = (0..i).map(|k| format!("{s}{k}")).collect();
            v.related = Some(s.clone());
            v.variables = (0..i)
                .map(|k| (format!("{s}k{k}"), format!("v{k}{s}")))
                .collect();
            v.answered = (i % 2 == 1).then(|| at(1_796_000_001_005));
            v.ended = (i % 4 == 3).then(|| at(1_796_000_002_999));
            v.visit = i as u32 * 1000;
            let e = CallExtra {
                digits: Some(s.clone()),
                party: (i % 2 == 0).then(|| s.clone()),
                from: Some(format!("f{s}")),
                to: Some(format!("t{s}")),
                conferencing: (i % 3 == 1).then(|| s.clone()),
                added: (i % 3 == 2).then(|| s.clone()),
                replaces: (0..i % 3).map(|k| format!("{s}{k}")).collect(),
                duration_ms: (i % 2 == 1).then_some(u64::MAX - i as u64),
            };
            let cause = (i % 2 == 0).then(|| s.clone());
            let device = (i % 2 == 1).then_some(s.as_str());
            assert_eq!(
                call_tail(&s, &s, device, &v, cause.as_deref(), &e),
                by_serde(&s, &s, device, &v, &cause, &e),
                "text {s:?}"
            );
        }
    }

    /// Every character up to U+02FF alone, and at each place of an eight-octet word in
    /// longer strings (the scan takes eight octets at a time, then the rest one by one).
    #[test]
    fn each_character_escapes_as_serde_escapes_it() {
        for c in (0u32..0x300).filter_map(char::from_u32) {
            let mut texts = vec![c.to_string()];
            for at in 0..17 {
                texts.push(format!("{}{c}{}", "x".repeat(at), "y".repeat(16 - at)));
                texts.push(format!("{}{c}", "é".repeat(at)));
            }
            for s in texts {
                let mut o = String::new();
                string(&mut o, &s);
                assert_eq!(o, serde_json::to_string(&s).unwrap(), "{c:?}");
            }
        }
    }
}
