//! The typed requests (PROTOCOL.md "Operations"): one [`Op`] variant per operation, tagged by
//! `op`, with its parameters typed. Adding an operation is one line in `ops!` below plus its
//! parameter struct and its handler ([`super::ops::Handle`]); the operation names for
//! `unknown_op`, the decoding and the dispatch all come from that one list.
//!
//! Field errors keep the protocol's codes and messages: a field that is absent or `null`
//! is `missing_field` ("`device` is required"), one of the wrong type `invalid_field`
//! ("`device` must be a non-empty string").

use super::protocol::{ApiError, Id};
use serde::de::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A decoded request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed in the response exactly as sent (a number or a string).
    pub id: Id,
    pub op: Op,
}

macro_rules! ops {
    ($($(#[$m:meta])* $name:literal => $v:ident,)*) => {
        /// Every operation, tagged by `op`.
        #[derive(serde::Deserialize, Debug, Clone, PartialEq)]
        #[serde(tag = "op")]
        pub enum Op {
            $($(#[$m])* #[serde(rename = $name)] $v($v),)*
        }

        impl Op {
            /// The operation names, in protocol order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// This operation's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Op::$v(_) => $name,)*
                }
            }

            /// Run the operation's handler.
            pub(crate) async fn dispatch(
                self,
                cx: &super::ops::Cx<'_>,
            ) -> Result<Value, ApiError> {
                use super::ops::Handle;
                match self {
                    $(Op::$v(p) => p.handle(cx).await,)*
                }
            }
        }
    };
}

ops! {
    "ping" => Ping,
    "auth" => Login,
    "status" => Status,
    "monitor.start" => MonitorStart,
    "monitor.stop" => MonitorStop,
    "snapshot" => Snapshot,
    "call.make" => CallMake,
    "call.answer" => CallAnswer,
    "call.hold" => CallHold,
    "call.retrieve" => CallRetrieve,
    "call.hangup" => CallHangup,
    "call.clear" => CallClear,
    "call.consult" => CallConsult,
    "call.transfer" => CallTransfer,
    "call.conference" => CallConference,
    "call.alternate" => CallAlternate,
    "call.reconnect" => CallReconnect,
    "call.blind_transfer" => CallBlindTransfer,
    "call.drop_party" => CallDropParty,
    "call.dtmf" => CallDtmf,
    "agent.login" => AgentLogin,
    "agent.ready" => AgentReady,
    "agent.not_ready" => AgentNotReady,
    "agent.after_call_work" => AgentAfterCallWork,
    "agent.logout" => AgentLogout,
    "agent.state" => AgentStateQuery,
}

impl Op {
    /// Whether the request acts on the gateway or the PBX, and so takes effect in order
    /// with the connection's other requests (PROTOCOL.md "Order"); `ping` and `status`
    /// do not and are answered at once.
    pub fn in_order(&self) -> bool {
        !matches!(self, Op::Ping(_) | Op::Status(_) | Op::Login(_))
    }
}

/// Parse a request line. On error, the id (when one could be read) and the error.
pub fn parse_request(line: &str) -> Result<Request, Box<(Id, ApiError)>> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        Box::new((
            Id::null(),
            ApiError::request("bad_json", format!("not a JSON object: {e}")),
        ))
    })?;
    let Value::Object(mut m) = v else {
        return Err(Box::new((
            Id::null(),
            ApiError::request("bad_json", "a request is a JSON object"),
        )));
    };
    let id = m.remove("id").unwrap_or(Value::Null);
    if !(id.is_number() || id.is_string()) {
        return Err(Box::new((
            Id::null(),
            ApiError::request("missing_field", "`id` (a number or a string) is required"),
        )));
    }
    // the line parsed as an object above, so its fields parse again
    let id = raw_id(line).unwrap_or_else(Id::null);
    match m.get("op") {
        Some(Value::String(s)) if Op::NAMES.contains(&s.as_str()) => {}
        Some(Value::String(s)) => {
            let e = ApiError::request(
                "unknown_op",
                format!("unknown op `{s}`; ops: {}", Op::NAMES.join(", ")),
            );
            return Err(Box::new((id, e)));
        }
        Some(_) => return Err(Box::new((id, ApiError::invalid("op", "a string")))),
        None => return Err(Box::new((id, ApiError::missing("op")))),
    }
    match serde_json::from_value::<Op>(Value::Object(m)) {
        Ok(op) => Ok(Request { id, op }),
        Err(e) => Err(Box::new((id, field_error(&e.to_string())))),
    }
}

/// The request's `id` exactly as written (the last one, as for every other field).
fn raw_id(line: &str) -> Option<Id> {
    let fields: HashMap<String, &RawValue> = serde_json::from_str(line).ok()?;
    fields.get("id").map(|r| Id::raw(r))
}

/// Our field errors travel through serde as "`code`: message".
const MISSING: &str = "missing_field: ";
const INVALID: &str = "invalid_field: ";

fn field_error(m: &str) -> ApiError {
    if let Some(rest) = m.strip_prefix(MISSING) {
        return ApiError::request("missing_field", rest);
    }
    if let Some(rest) = m.strip_prefix(INVALID) {
        return ApiError::request("invalid_field", rest);
    }
    // serde's own: a required field that is absent
    if let Some(f) = m
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return ApiError::missing(f);
    }
    ApiError::request("invalid_field", m.to_string())
}

fn missing<E: serde::de::Error>(field: &str) -> E {
    E::custom(format!("{MISSING}{}", ApiError::missing(field).message))
}

fn invalid<E: serde::de::Error>(field: &str, what: &str) -> E {
    E::custom(format!(
        "{INVALID}{}",
        ApiError::invalid(field, what).message
    ))
}

fn text<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Ok(s),
        Value::Null => Err(missing(field)),
        _ => Err(invalid(field, "a non-empty string")),
    }
}

fn opt_text<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Ok(Some(s)),
        Value::Null => Ok(None),
        _ => Err(invalid(field, "a non-empty string")),
    }
}

/// The longest device number (ECMA-269: a DeviceID's dialing string is at most 64).
pub const MAX_NUMBER: usize = 64;

/// What [`is_device_number`] accepts, for error messages and docs/PROTOCOL.md.
pub const NUMBER_CHARS: &str =
    "1 to 64 of the dialing characters 0-9 * # A-D + and the dial-string controls ! P T W , @ $ ;";

/// A device number as a CSTA switch takes it (ECMA-269 dialable string): 1 to
/// [`MAX_NUMBER`] ASCII characters, each a dialing digit (`0-9 * # A-D`), the international
/// prefix `+`, or a dial-string control (`!` flash, `P` pulse, `T` tone, `W` wait for dial
/// tone, `,` pause, `@` wait for quiet answer, `$` wait for the billing tone, `;` more
/// digits follow). Anything else (`é`, fullwidth digits, emoji, spaces, lower case) would
/// only be refused by the PBX.
pub fn is_device_number(s: &str) -> bool {
    (1..=MAX_NUMBER).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"*#ABCD+!PTW,@$;".contains(&b))
}

fn number<E: serde::de::Error>(s: String, field: &str) -> Result<String, E> {
    if is_device_number(&s) {
        Ok(s)
    } else {
        Err(invalid(field, &format!("a device number: {NUMBER_CHARS}")))
    }
}

/// Deserializers that know their field's name (serde gives it to none).
mod f {
    use serde::Deserializer;
    macro_rules! text_fields {
        ($($f:ident),*) => {$(
            #[allow(dead_code)] // each field uses one of the two
            pub mod $f {
                use super::Deserializer;
                pub fn req<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
                    super::super::text(d, stringify!($f))
                }
                pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
                    super::super::opt_text(d, stringify!($f))
                }
            }
        )*};
    }
    text_fields!(link, call, consult, digits, agent, password, reason, token);

    /// Device numbers: text in the switch's character set ([`super::is_device_number`]).
    macro_rules! number_fields {
        ($($f:ident),*) => {$(
            #[allow(dead_code)] // each field uses one of the two
            pub mod $f {
                use super::Deserializer;
                pub fn req<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
                    super::super::number(super::super::text(d, stringify!($f))?, stringify!($f))
                }
                pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
                    super::super::opt_text(d, stringify!($f))?
                        .map(|n| super::super::number(n, stringify!($f)))
                        .transpose()
                }
            }
        )*};
    }
    number_fields!(device, to, party, group);

    pub fn devices<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        use serde::Deserialize;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(false),
            serde_json::Value::Bool(b) => Ok(b),
            _ => Err(super::invalid("devices", "true or false")),
        }
    }

    pub fn after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        use serde::Deserialize;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            v => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| super::invalid("after", "a non-negative integer")),
        }
    }

    pub fn variables<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<super::Map<String, serde_json::Value>, D::Error> {
        use serde::Deserialize;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(super::Map::new()),
            serde_json::Value::Object(m) if m.values().all(serde_json::Value::is_string) => Ok(m),
            _ => Err(super::invalid(
                "variables",
                "an object of strings, e.g. {\"uui\": \"case=42\"}",
            )),
        }
    }
}

/// Declare parameter structs; `link` (optional) is in every one that acts on a link.
macro_rules! params {
    ($($(#[$m:meta])* $t:ident { $($(#[$fm:meta])* $field:ident : $ty:ty = $de:literal $(, $dflt:ident)?;)* })*) => {$(
        $(#[$m])*
        #[derive(serde::Deserialize, Debug, Clone, PartialEq)]
        pub struct $t {
            $(
                $(#[$fm])*
                #[serde(deserialize_with = $de $(, $dflt)?)]
                pub $field: $ty,
            )*
        }
    )*};
}

/// `ping`: no parameters.
#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
pub struct Ping {}

/// `auth`: the token of a `[[user]]` (docs/PROTOCOL.md "Authentication"). Its `Debug`
/// never shows the token.
#[derive(serde::Deserialize, Clone, PartialEq)]
pub struct Login {
    #[serde(deserialize_with = "f::token::req")]
    pub token: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Login { token: \"********\" }")
    }
}

/// `status`: `devices: true` adds every PBX monitor with its state.
#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
pub struct Status {
    #[serde(default, deserialize_with = "f::devices")]
    pub devices: bool,
}

params! {
    /// `monitor.start`.
    MonitorStart {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        /// Replay buffered events of the device with a greater seq.
        after: Option<u64> = "f::after", default;
    }
    /// `monitor.stop`.
    MonitorStop {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
    }
    /// `snapshot`.
    Snapshot {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
    }
    /// `call.make`.
    CallMake {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        to: String = "f::to::req";
        variables: Map<String, Value> = "f::variables", default;
    }
    /// `call.answer`.
    CallAnswer {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
    }
    /// `call.hold`.
    CallHold {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
    }
    /// `call.retrieve`.
    CallRetrieve {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
    }
    /// `call.hangup`.
    CallHangup {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
    }
    /// `call.clear`: the call must be named.
    CallClear {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: String = "f::call::req";
    }
    /// `call.consult`.
    CallConsult {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
        to: String = "f::to::req";
        variables: Map<String, Value> = "f::variables", default;
    }
    /// `call.transfer`.
    CallTransfer {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
        consult: Option<String> = "f::consult::opt", default;
    }
    /// `call.conference`.
    CallConference {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
        consult: Option<String> = "f::consult::opt", default;
    }
    /// `call.alternate`.
    CallAlternate {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
        consult: Option<String> = "f::consult::opt", default;
    }
    /// `call.reconnect`.
    CallReconnect {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
        consult: Option<String> = "f::consult::opt", default;
    }
    /// `call.blind_transfer`.
    CallBlindTransfer {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
        to: String = "f::to::req";
    }
    /// `call.drop_party`.
    CallDropParty {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
        party: String = "f::party::req";
    }
    /// `call.dtmf`.
    CallDtmf {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        call: Option<String> = "f::call::opt", default;
        digits: String = "f::digits::req";
    }
    /// `agent.login`.
    AgentLogin {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        agent: String = "f::agent::req";
        password: Option<String> = "f::password::opt", default;
        group: Option<String> = "f::group::opt", default;
        reason: Option<String> = "f::reason::opt", default;
    }
    /// `agent.ready`.
    AgentReady {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        agent: Option<String> = "f::agent::opt", default;
        group: Option<String> = "f::group::opt", default;
        reason: Option<String> = "f::reason::opt", default;
    }
    /// `agent.not_ready`.
    AgentNotReady {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        agent: Option<String> = "f::agent::opt", default;
        group: Option<String> = "f::group::opt", default;
        reason: Option<String> = "f::reason::opt", default;
    }
    /// `agent.after_call_work`.
    AgentAfterCallWork {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        agent: Option<String> = "f::agent::opt", default;
        group: Option<String> = "f::group::opt", default;
        reason: Option<String> = "f::reason::opt", default;
    }
    /// `agent.logout`.
    AgentLogout {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
        agent: Option<String> = "f::agent::opt", default;
        group: Option<String> = "f::group::opt", default;
        reason: Option<String> = "f::reason::opt", default;
    }
    /// `agent.state`.
    AgentStateQuery {
        link: Option<String> = "f::link::opt", default;
        device: String = "f::device::req";
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(line: &str) -> (Id, ApiError) {
        *parse_request(line).unwrap_err()
    }

    #[test]
    fn requests_decode_into_their_variant() {
        let r = parse_request(r#"{"id":7,"op":"call.answer","device":"4001"}"#).unwrap();
        assert_eq!(r.id.as_str(), "7");
        assert_eq!(
            r.op,
            Op::CallAnswer(CallAnswer {
                link: None,
                device: "4001".into(),
                call: None
            })
        );
        assert_eq!(r.op.name(), "call.answer");
        let r = parse_request(r#"{"id":"a","op":"ping","pad":1}"#).unwrap();
        assert_eq!(r.op, Op::Ping(Ping {}));
        assert!(!r.op.in_order());
        let r =
            parse_request(r#"{"id":1,"op":"monitor.start","device":"201","after":5,"link":null}"#)
                .unwrap();
        assert_eq!(
            r.op,
            Op::MonitorStart(MonitorStart {
                link: None,
                device: "201".into(),
                after: Some(5)
            })
        );
    }

    #[test]
    fn ids_are_echoed_exactly_as_sent() {
        use crate::api::protocol::{error_line, ok_line};
        for id in [
            "123456789012345678901234567890",
            "-42",
            "1.50",
            r#""a\u0041 \"b\"""#,
        ] {
            let r = parse_request(&format!(r#"{{"id": {id} ,"op":"ping"}}"#)).unwrap();
            assert_eq!(
                ok_line(&r.id, json!({})),
                format!(r#"{{"type":"response","id":{id},"ok":true,"result":{{}}}}"#)
            );
            let (rid, e) = err(&format!(r#"{{"op":"nope","id":{id}}}"#));
            assert_eq!(
                error_line(&rid, &e),
                format!(
                    r#"{{"type":"response","id":{id},"ok":false,"error":{{"kind":"request","code":"unknown_op","message":{}}}}}"#,
                    json!(e.message)
                )
            );
        }
        // the last `id` counts, as for every field
        assert_eq!(
            parse_request(r#"{"id":1,"id":2.0,"op":"ping"}"#)
                .unwrap()
                .id
                .as_str(),
            "2.0"
        );
        // no id, null, or not a number or string: no request id to echo
        for line in [
            r#"{"op":"ping"}"#,
            r#"{"id":null,"op":"ping"}"#,
            r#"{"id":[1],"op":"ping"}"#,
            r#"{"id":true,"op":"ping"}"#,
        ] {
            let (id, e) = err(line);
            assert_eq!(
                (id.as_str(), e.code.as_str(), e.message.as_str()),
                (
                    "null",
                    "missing_field",
                    "`id` (a number or a string) is required"
                ),
                "{line}"
            );
        }
    }

    #[test]
    fn device_numbers_are_checked_at_the_edge() {
        let msg = |f: &str| {
            format!("`{f}` must be a device number: 1 to 64 of the dialing characters 0-9 * # A-D + and the dial-string controls ! P T W , @ $ ;")
        };
        for bad in ["😀", "２１９", "é", "20 1", "abc", "201\n", &"1".repeat(65)] {
            let bad = serde_json::to_string(bad).unwrap();
            for (line, field) in [
                (
                    format!(r#"{{"id":1,"op":"monitor.start","device":{bad}}}"#),
                    "device",
                ),
                (
                    format!(r#"{{"id":1,"op":"call.make","device":"201","to":{bad}}}"#),
                    "to",
                ),
                (
                    format!(
                        r#"{{"id":1,"op":"call.drop_party","device":"201","call":"c","party":{bad}}}"#
                    ),
                    "party",
                ),
                (
                    format!(
                        r#"{{"id":1,"op":"agent.login","device":"201","agent":"7","group":{bad}}}"#
                    ),
                    "group",
                ),
            ] {
                let (id, e) = err(&line);
                assert_eq!(
                    (id.as_str(), e.kind, e.code.as_str(), e.message),
                    ("1", "request", "invalid_field", msg(field)),
                    "{line}"
                );
            }
        }
        for good in [
            "201",
            "0891234567",
            "+4930123",
            "*72#",
            "9,W0301234",
            "A1!",
            &"1".repeat(64),
        ] {
            let line = format!(r#"{{"id":1,"op":"call.make","device":"201","to":"{good}"}}"#);
            assert!(parse_request(&line).is_ok(), "{line}");
        }
    }

    #[test]
    fn errors_keep_their_codes_and_messages() {
        let (id, e) = err(r#"{"id":1,"op":"call.clear","device":"201"}"#);
        assert_eq!((id.as_str(), e.code.as_str()), ("1", "missing_field"));
        assert_eq!(e.message, "`call` is required");
        let e = err(r#"{"id":1,"op":"call.answer","device":null}"#).1;
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("missing_field", "`device` is required")
        );
        let e = err(r#"{"id":1,"op":"call.answer","device":201}"#).1;
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("invalid_field", "`device` must be a non-empty string")
        );
        let e = err(r#"{"id":1,"op":"call.answer","device":""}"#).1;
        assert_eq!(e.code, "invalid_field");
        let e = err(r#"{"id":1,"op":"monitor.start","device":"2","after":-1}"#).1;
        assert_eq!(e.message, "`after` must be a non-negative integer");
        let e = err(r#"{"id":1,"op":"call.make","device":"2","to":"3","variables":"x"}"#).1;
        assert_eq!(e.code, "invalid_field");
        assert!(e.message.starts_with("`variables` must be"), "{e}");
        let (id, e) = err(r#"{"id":"x","op":"nope"}"#);
        assert_eq!((id.as_str(), e.code.as_str()), ("\"x\"", "unknown_op"));
        // the list comes from the enum
        assert!(e.message.ends_with(&Op::NAMES.join(", ")), "{e}");
        assert_eq!(Op::NAMES.len(), 26);
        assert_eq!(err(r#"{"id":"a","op":3}"#).1.code, "invalid_field");
        assert_eq!(err(r#"{"id":"a"}"#).1.message, "`op` is required");
        assert_eq!(err(r#"{"op":"ping"}"#).1.code, "missing_field");
        assert_eq!(err("[1]").1.code, "bad_json");
        assert_eq!(err("{nope").1.code, "bad_json");
    }
}
