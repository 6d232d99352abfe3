//! The normalized views the tracker hands out: [`CallView`] (one per device and
//! interaction, PROTOCOL.md "The call view") and [`AgentView`] (`agent.state`), with their
//! state names and the timestamp format.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

macro_rules! names {
    ($(#[$m:meta])* pub enum $t:ident { $($(#[$vm:meta])* $v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $t {
            $($(#[$vm])* #[serde(rename = $s)] $v),*
        }

        impl $t {
            /// The protocol name.
            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s),* }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<$t, UnknownName> {
                match s {
                    $($s => Ok($t::$v),)*
                    _ => Err(UnknownName(s.chars().take(64).collect())),
                }
            }
        }
    };
}

/// A state or type name the protocol does not define (from [`FromStr`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName(pub String);

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown name `{}`", self.0)
    }
}

impl std::error::Error for UnknownName {}

names! {
    /// The state of a call at one device (PROTOCOL.md `state`). Roughly the ECMA-269 (clause
    /// 6) local connection state of the device's connection, with the caller's side split
    /// into `dialing` (initiated, far end not yet alerting) and `ringback` (far end
    /// alerting).
    pub enum CallState {
        /// The call alerts at the device (LocalConnectionState alerting).
        Offering = "offering",
        /// The device started the call (initiated, or connected before the far end alerts).
        Dialing = "dialing",
        /// The far end of a call this device made is alerting.
        Ringback = "ringback",
        /// The device's connection is established.
        Connected = "connected",
        /// The device holds the call.
        Held = "held",
        /// Queued (at an ACD group device, or the caller's call waits in a queue).
        Queued = "queued",
        /// The call failed (busy, invalid number, ...); the view stays until cleared.
        Failed = "failed",
        /// The call ended at the device (only in `call.released` and what precedes it).
        Released = "released",
    }
}

names! {
    /// The kind of interaction (PROTOCOL.md `type`).
    pub enum CallType {
        /// The calling party is outside the PBX and called in.
        Inbound = "inbound",
        /// A device of the PBX called an outside number.
        Outbound = "outbound",
        /// Between internal devices.
        Internal = "internal",
        /// A consultation leg (ECMA-269 ConsultationCall, cause consultation).
        Consult = "consult",
    }
}

names! {
    /// An agent's state (PROTOCOL.md `agent.state`; ECMA-269 agent states).
    pub enum AgentState {
        LoggedOut = "logged_out",
        NotReady = "not_ready",
        Ready = "ready",
        Busy = "busy",
        AfterCallWork = "after_call_work",
    }
}

names! {
    /// The kind of an event the gateway publishes (PROTOCOL.md "Events"): the call events
    /// the tracker emits, `agent.state`, and the link and device events.
    pub enum EventKind {
        CallOffering = "call.offering",
        CallDialing = "call.dialing",
        CallRingback = "call.ringback",
        CallConnected = "call.connected",
        CallHeld = "call.held",
        CallRetrieved = "call.retrieved",
        CallQueued = "call.queued",
        CallDiverted = "call.diverted",
        CallFailed = "call.failed",
        CallTransferred = "call.transferred",
        CallConferenced = "call.conferenced",
        CallPartyLeft = "call.party_left",
        CallReleased = "call.released",
        CallDtmf = "call.dtmf",
        CallUpdated = "call.updated",
        AgentState = "agent.state",
        LinkUp = "link.up",
        LinkDown = "link.down",
        DeviceOutOfService = "device.out_of_service",
        DeviceInService = "device.in_service",
        DeviceUnconfirmed = "device.unconfirmed",
        DeviceConfirmed = "device.confirmed",
    }
}

/// One device's view of one interaction (PROTOCOL.md "The call view").
///
/// `variables` holds the call's user data (`uui`, ECMA-269 UserData) and correlator data
/// (`correlator`, ECMA-269 CorrelatorData) as text when the octets are UTF-8; octets that
/// are not UTF-8 are given as lowercase hex under `uui_hex` / `correlator_hex` instead, so a
/// value is never ambiguous.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct CallView {
    /// The interaction id: stable across hold, consultation, transfer and conference.
    pub id: String,
    /// The switch's current callID, lowercase hex (may change on transfer/conference).
    pub pbx_call_id: String,
    pub state: CallState,
    #[serde(rename = "type")]
    pub r#type: CallType,
    /// Calling number of the interaction (null when the switch did not give one).
    pub ani: Option<String>,
    /// Called number of the interaction (as dialled, before any routing).
    pub dnis: Option<String>,
    /// The far party as this device sees it.
    pub other: Option<String>,
    /// The device first, then the other parties known to be in the call.
    pub parties: Vec<String>,
    /// For a consultation leg: the interaction it was made from.
    pub related: Option<String>,
    pub variables: BTreeMap<String, String>,
    /// When the call appeared at this device (serialized as RFC 3339 UTC, milliseconds).
    #[serde(serialize_with = "ser_time")]
    pub started: SystemTime,
    /// When this device's call got connected (answered here, or the far end answered).
    #[serde(serialize_with = "ser_opt_time")]
    pub answered: Option<SystemTime>,
    /// When the call ended at this device (set in `call.released`).
    #[serde(serialize_with = "ser_opt_time")]
    pub ended: Option<SystemTime>,
    /// This device's how-many-th view of the interaction: 1, and 2, 3, ... when the call
    /// comes back to the device (a blind transfer back, a conference rejoin) after its
    /// `call.released` there. `call.offering` is once per visit.
    pub visit: u32,
}

/// The fields a call event carries besides the view and the cause (PROTOCOL.md
/// "Refinements", event fields); only those set are serialized.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CallExtra {
    /// `call.dtmf`: the digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digits: Option<String>,
    /// `call.party_left`, `call.dtmf`: the other party.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub party: Option<String>,
    /// `call.diverted`, `call.transferred`: where the call was and where it went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `call.conferenced`: who conferenced and who was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conferencing: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<String>,
    /// The interaction ids this view took over (transfer, conference): one is given as a
    /// string, several as a list.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_replaces")]
    pub replaces: Vec<String>,
    /// `call.released`: how long the call was at the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

fn ser_replaces<S: serde::Serializer>(r: &[String], s: S) -> Result<S::Ok, S::Error> {
    match r {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

/// An agent's state at a device (PROTOCOL.md `agent.state`).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct AgentView {
    /// The agent id (ECMA-269 AgentID); the device number when the switch gave none.
    pub agent: String,
    pub state: AgentState,
    /// The reason code of the last change (request or private data), if any.
    pub reason: Option<String>,
    /// The ACD group the agent is logged on to, if known.
    pub group: Option<String>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(Stamp::new(*t).as_str())
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(Stamp::new(*t).as_str()),
        None => s.serialize_none(),
    }
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-21T10:00:00.123Z`); times before
/// 1970 are given as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    Stamp::new(t).as_str().to_string()
}

/// [`rfc3339`] without an allocation (every event line carries two or three times).
pub struct Stamp {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, or a longer year's text in `wide`.
    b: [u8; 24],
    wide: Option<String>,
}

impl Stamp {
    pub fn new(t: SystemTime) -> Stamp {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let ms = d.subsec_millis();
        // the text up to the seconds of the last second formatted on this thread (an event
        // line's times are mostly within a second of each other and of the last line's)
        thread_local! {
            static LAST: std::cell::Cell<(u64, [u8; 24])> =
                const { std::cell::Cell::new((u64::MAX, [0; 24])) };
        }
        let (last, text) = LAST.get();
        if last == secs {
            let mut b = text;
            b[20] = b'0' + (ms / 100) as u8;
            b[21] = b'0' + (ms / 10 % 10) as u8;
            b[22] = b'0' + (ms % 10) as u8;
            return Stamp { b, wide: None };
        }
        let s = Stamp::compute(secs, ms);
        if s.wide.is_none() {
            LAST.set((secs, s.b));
        }
        s
    }

    fn compute(secs: u64, ms: u32) -> Stamp {
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let rem = secs % 86_400;
        let (y, m, day) = civil_from_days(days);
        let (h, min, sec) = (rem / 3600, (rem / 60) % 60, rem % 60);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        if !(0..=9999).contains(&y) {
            let wide = format!("{y:04}-{m:02}-{day:02}T{h:02}:{min:02}:{sec:02}.{ms:03}Z");
            return Stamp {
                b,
                wide: Some(wide),
            };
        }
        // written digit by digit, not through `format!`
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y as u64);
        put(5, 2, u64::from(m));
        put(8, 2, u64::from(day));
        put(11, 2, h);
        put(14, 2, min);
        put(17, 2, sec);
        put(20, 3, u64::from(ms));
        Stamp { b, wide: None }
    }

    pub fn as_str(&self) -> &str {
        match &self.wide {
            Some(w) => w,
            // ASCII digits and separators only
            None => std::str::from_utf8(&self.b).unwrap_or("1970-01-01T00:00:00.000Z"),
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m as u32, d as u32)
}

/// Put user or correlator data into `vars` under `key` (UTF-8) or `key_hex` (other
/// octets), removing the other form; whether anything changed.
pub(crate) fn set_variable(vars: &mut BTreeMap<String, String>, key: &str, octets: &[u8]) -> bool {
    let hex_key = format!("{key}_hex");
    let (k, other, v) = match std::str::from_utf8(octets) {
        Ok(s) => (key.to_string(), hex_key, s.to_string()),
        Err(_) => (
            hex_key,
            key.to_string(),
            ctigate_csta_model::value::hex(octets),
        ),
    };
    let removed = vars.remove(&other).is_some();
    if vars.get(&k) == Some(&v) {
        return removed;
    }
    vars.insert(k, v);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_255_200_123);
        assert_eq!(rfc3339(t), "2026-11-21T10:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
        // the last second of a year, every field at its widest; and beyond year 9999
        let t = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
        assert_eq!(rfc3339(t), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339(t + Duration::from_millis(1)),
            "10000-01-01T00:00:00.000Z"
        );
        let t = UNIX_EPOCH + Duration::from_millis(1_704_067_199_050);
        assert_eq!(rfc3339(t), "2023-12-31T23:59:59.050Z");
    }

    #[test]
    fn timestamps_in_the_same_second_reuse_its_text_and_only_its_text() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_255_200_000);
        // the first of a second computes it; the rest of that second reuse it
        for ms in [0u64, 7, 45, 123, 999, 5, 500] {
            let s = rfc3339(t + Duration::from_millis(ms));
            assert_eq!(s, format!("2026-11-21T10:00:00.{ms:03}Z"));
        }
        // another second (and back): never the cached text
        assert_eq!(
            rfc3339(t + Duration::from_millis(1_001)),
            "2026-11-21T10:00:01.001Z"
        );
        assert_eq!(
            rfc3339(t + Duration::from_millis(998)),
            "2026-11-21T10:00:00.998Z"
        );
        assert_eq!(
            rfc3339(t - Duration::from_millis(1)),
            "2026-11-21T09:59:59.999Z"
        );
        // beyond year 9999 (not cached), then a cached second again
        let far = UNIX_EPOCH + Duration::from_millis(253_402_300_800_002);
        assert_eq!(rfc3339(far), "10000-01-01T00:00:00.002Z");
        assert_eq!(rfc3339(far), "10000-01-01T00:00:00.002Z");
        assert_eq!(
            rfc3339(t + Duration::from_millis(42)),
            "2026-11-21T10:00:00.042Z"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in [
            "logged_out",
            "not_ready",
            "ready",
            "busy",
            "after_call_work",
        ] {
            assert_eq!(s.parse::<AgentState>().unwrap().as_str(), s);
        }
        assert!("away".parse::<AgentState>().is_err());
        assert_eq!(
            serde_json::to_string(&CallState::Ringback).unwrap(),
            "\"ringback\""
        );
        assert_eq!(CallType::Consult.to_string(), "consult");
    }

    #[test]
    fn variables_text_or_hex() {
        let mut v = BTreeMap::new();
        assert!(set_variable(&mut v, "uui", b"case=42"));
        assert!(!set_variable(&mut v, "uui", b"case=42"));
        assert!(set_variable(&mut v, "uui", &[0xff, 0x00]));
        assert_eq!(v.get("uui_hex").map(String::as_str), Some("ff00"));
        assert!(!v.contains_key("uui"));
    }
}
