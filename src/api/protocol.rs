//! The client protocol's wire forms (docs/PROTOCOL.md): responses, errors, the lines the
//! session writes itself. One JSON object per line. Requests are in [`super::request`].

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

pub const PROTOCOL: &str = "ctigate/1";

/// An error answer: `kind` for the adapter to branch on, `code` to switch on, `message` to
/// log (PROTOCOL.md "Error kinds").
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: &'static str,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: &'static str, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn request(code: &str, message: impl Into<String>) -> Self {
        ApiError::new("request", code, message)
    }
    pub fn missing(field: &str) -> Self {
        ApiError::request("missing_field", format!("`{field}` is required"))
    }
    pub fn invalid(field: &str, what: &str) -> Self {
        ApiError::request("invalid_field", format!("`{field}` must be {what}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.kind, self.code, self.message)
    }
}

/// A request id exactly as the client wrote it (a number or a string; `null` when the
/// request has none): echoed byte for byte, so `123456789012345678901234567890` and `1.50`
/// come back as sent, not as a float.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Id(Box<RawValue>);

impl Id {
    /// No request id (bad JSON, a line too long, an id that is not a number or a string).
    pub fn null() -> Id {
        Id(RawValue::NULL.to_owned())
    }

    /// The id from its JSON text (as found in the request line).
    pub fn raw(r: &RawValue) -> Id {
        Id(r.to_owned())
    }

    /// The id's JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Id {
    fn eq(&self, o: &Id) -> bool {
        self.as_str() == o.as_str()
    }
}

#[derive(Serialize)]
struct Response<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a Id,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

fn response(r: Response<'_>) -> String {
    // a struct of strings, a raw value and JSON values: serializing it cannot fail
    serde_json::to_string(&r).unwrap_or_default()
}

/// A success response line.
pub fn ok_line(id: &Id, result: Value) -> String {
    response(Response {
        kind: "response",
        id,
        ok: true,
        result: Some(result),
        error: None,
    })
}

/// An error response line.
pub fn error_line(id: &Id, e: &ApiError) -> String {
    response(Response {
        kind: "response",
        id,
        ok: false,
        result: None,
        error: Some(json!({"kind": e.kind, "code": e.code, "message": e.message})),
    })
}

/// Event times: RFC 3339 UTC with milliseconds (`2026-11-21T10:00:00.123Z`), as in the
/// call views.
pub use crate::model::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn requests_parse_and_errors_are_typed() {
        use crate::api::request::{parse_request, CallAnswer, Op};
        let r = parse_request(r#"{"id":7,"op":"call.answer","device":"4001"}"#).unwrap();
        assert_eq!(r.id.as_str(), "7");
        let Op::CallAnswer(CallAnswer { device, call, .. }) = &r.op else {
            panic!("{r:?}")
        };
        assert_eq!(device, "4001");
        assert_eq!(*call, None);
        let (_, e) = *parse_request(r#"{"id":7,"op":"call.clear","device":"4001"}"#).unwrap_err();
        assert_eq!(e.code, "missing_field");
        let (id, e) = *parse_request("{nope").unwrap_err();
        assert_eq!((id.as_str(), e.code.as_str()), ("null", "bad_json"));
        let (id, e) = *parse_request(r#"{"id":"a","op":3}"#).unwrap_err();
        assert_eq!((id.as_str(), e.code.as_str()), ("\"a\"", "invalid_field"));
        assert_eq!(parse_request(r#"[1]"#).unwrap_err().1.code, "bad_json");
        assert_eq!(
            error_line(
                &Id::raw(&RawValue::from_string("7".into()).unwrap()),
                &ApiError::request("unknown_op", "x")
            ),
            r#"{"type":"response","id":7,"ok":false,"error":{"kind":"request","code":"unknown_op","message":"x"}}"#
        );
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_255_200_123);
        assert_eq!(rfc3339(t), "2026-11-21T10:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }
}
