//! The client protocol's wire forms (docs/PROTOCOL.md): responses, errors, the lines the
//! session writes itself. One JSON object per line. Requests are in [`super::request`].

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

/// A success response line.
pub fn ok_line(id: &Value, result: Value) -> String {
    json!({"type": "response", "id": id, "ok": true, "result": result}).to_string()
}

/// An error response line.
pub fn error_line(id: &Value, e: &ApiError) -> String {
    json!({"type": "response", "id": id, "ok": false,
           "error": {"kind": e.kind, "code": e.code, "message": e.message}})
    .to_string()
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
        assert_eq!(r.id, json!(7));
        let Op::CallAnswer(CallAnswer { device, call, .. }) = &r.op else {
            panic!("{r:?}")
        };
        assert_eq!(device, "4001");
        assert_eq!(*call, None);
        let (_, e) = *parse_request(r#"{"id":7,"op":"call.clear","device":"4001"}"#).unwrap_err();
        assert_eq!(e.code, "missing_field");
        let (id, e) = *parse_request("{nope").unwrap_err();
        assert_eq!((id, e.code.as_str()), (Value::Null, "bad_json"));
        let (id, e) = *parse_request(r#"{"id":"a","op":3}"#).unwrap_err();
        assert_eq!((id, e.code.as_str()), (json!("a"), "invalid_field"));
        assert_eq!(parse_request(r#"[1]"#).unwrap_err().1.code, "bad_json");
        assert_eq!(
            error_line(&json!(7), &ApiError::request("unknown_op", "x")),
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
