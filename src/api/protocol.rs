//! The client protocol's wire forms (docs/PROTOCOL.md): requests, responses, errors, event
//! lines. One JSON object per line.

use serde_json::{json, Map, Value};

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

/// A parsed request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed in the response (number or string).
    pub id: Value,
    pub op: String,
    pub params: Map<String, Value>,
}

/// Parse a request line. On error, the id (when one could be read) and the error.
pub fn parse_request(line: &str) -> Result<Request, Box<(Value, ApiError)>> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        Box::new((
            Value::Null,
            ApiError::request("bad_json", format!("not a JSON object: {e}")),
        ))
    })?;
    let Value::Object(mut m) = v else {
        return Err(Box::new((
            Value::Null,
            ApiError::request("bad_json", "a request is a JSON object"),
        )));
    };
    let id = m.remove("id").unwrap_or(Value::Null);
    if !(id.is_number() || id.is_string()) {
        return Err(Box::new((
            id,
            ApiError::request("missing_field", "`id` (a number or a string) is required"),
        )));
    }
    let op = match m.remove("op") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(Box::new((id, ApiError::invalid("op", "a string")))),
        None => return Err(Box::new((id, ApiError::missing("op")))),
    };
    Ok(Request { id, op, params: m })
}

impl Request {
    /// A required string parameter.
    pub fn str(&self, key: &str) -> Result<&str, ApiError> {
        match self.params.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::Null) | None => Err(ApiError::missing(key)),
            Some(_) => Err(ApiError::invalid(key, "a non-empty string")),
        }
    }
    /// An optional string parameter.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(key, "a non-empty string")),
        }
    }
    /// An optional non-negative integer.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| ApiError::invalid(key, "a non-negative integer")),
        }
    }
    /// `variables`: an object of strings (`uui`, `correlator`).
    pub fn variables(&self) -> Result<Map<String, Value>, ApiError> {
        match self.params.get("variables") {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(m.clone()),
            Some(_) => Err(ApiError::invalid(
                "variables",
                "an object of strings, e.g. {\"uui\": \"case=42\"}",
            )),
        }
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
        let r = parse_request(r#"{"id":7,"op":"call.answer","device":"4001"}"#).unwrap();
        assert_eq!(r.id, json!(7));
        assert_eq!(r.str("device").unwrap(), "4001");
        assert_eq!(r.opt_str("call").unwrap(), None);
        assert_eq!(r.str("call").unwrap_err().code, "missing_field");
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
