//! JSON rendering of decoded values: the form `ctigate decode` prints.
//!
//! Conventions (the same as the independent oracle's, so both can be compared as is):
//! SEQUENCE/SET → object of the components present (absent DEFAULT components filled in
//! with their default); CHOICE → `{"$choice": name, "$value": v}`; OCTET STRING →
//! `{"$hex": "…"}`; BIT STRING → `{"$bits": "hex", "$len": n}`; character strings →
//! strings; ENUMERATED → the name (a number when unknown); INTEGER → number; NULL → null;
//! OBJECT IDENTIFIER → dotted string; GeneralizedTime → `{"$time": ISO 8601}`; ANY →
//! `{"$hex": whole TLV}`. Elements the type does not define: `"$extensions": [{"$raw": …}]`
//! in their SEQUENCE; unknown CHOICE alternatives and opaque content: `{"$raw": "…"}`.

use crate::acse::Acse;
use crate::apdu::Apdu;
use crate::codec::is_default;
use crate::oid::Oid;
use crate::rose::{Code, InvokeId, LinkedId, Payload, Rose};
use crate::schema::{self, def, DefaultValue, Kind, TypeId};
use crate::value::{Value, UNKNOWN};
use serde_json::{json, Map, Value as Json};

pub fn hex(b: &[u8]) -> String {
    ctigate_csta_model::value::hex(b)
}

/// JSON of `v` read as type `ty`.
pub fn value_json(ty: TypeId, v: &Value) -> Json {
    let d = def(schema::untagged(ty));
    if let Value::Raw(b) = v {
        return match d.kind {
            Kind::Any => json!({"$hex": hex(b)}),
            _ => json!({"$raw": hex(b)}),
        };
    }
    match (&d.kind, v) {
        (Kind::Tagged { .. }, _) => Json::Null, // untagged above
        (Kind::Choice(alts), Value::Choice(name, inner)) => {
            match alts.iter().find(|a| a.name == *name) {
                Some(a) => json!({"$choice": name, "$value": value_json(a.ty, inner)}),
                None => json!({"$choice": name, "$value": Json::Null}),
            }
        }
        (Kind::Sequence(fields) | Kind::Set(fields), Value::Seq(members)) => {
            let mut m = Map::new();
            let mut ext = Vec::new();
            for mem in members {
                if mem.name == UNKNOWN {
                    ext.push(value_json(ty_any(), &mem.value));
                    continue;
                }
                if let Some(f) = fields.iter().find(|f| f.name == mem.name) {
                    m.insert(f.name.to_string(), value_json(f.ty, &mem.value));
                }
            }
            for f in fields.iter() {
                if let (Some(dv), false) = (f.default, m.contains_key(f.name)) {
                    m.insert(f.name.to_string(), default_json(f.ty, dv));
                }
            }
            if !ext.is_empty() {
                m.insert("$extensions".into(), Json::Array(ext));
            }
            Json::Object(m)
        }
        (Kind::SequenceOf(el) | Kind::SetOf(el), Value::List(items)) => {
            Json::Array(items.iter().map(|i| value_json(*el, i)).collect())
        }
        (Kind::Enumerated(names), Value::Enumerated(n)) => match names.iter().find(|(_, v)| v == n)
        {
            Some((name, _)) => json!(name),
            None => json!(n),
        },
        (_, Value::Boolean(b)) => json!(b),
        (_, Value::Integer(i)) | (_, Value::Enumerated(i)) => json!(i),
        (_, Value::Null) => Json::Null,
        (_, Value::Octets(b)) => json!({"$hex": hex(b)}),
        (_, Value::Bits(_)) => {
            let (unused, data) = v.bits_parts().unwrap_or((0, &[]));
            json!({"$bits": hex(data), "$len": (data.len() * 8).saturating_sub(unused as usize)})
        }
        (_, Value::Oid(b)) => json!(Oid(b.clone()).to_string()),
        (_, Value::Str(b)) => json!(String::from_utf8_lossy(b)),
        (_, Value::Time(b)) => json!({"$time": iso_time(&String::from_utf8_lossy(b))}),
        (_, Value::Opaque(tlv)) => json!({"$raw": hex(tlv)}),
        (_, Value::Choice(name, _)) => json!({"$choice": name, "$value": Json::Null}),
        (_, Value::Seq(_)) | (_, Value::List(_)) | (_, Value::Raw(_)) => Json::Null,
    }
}

fn ty_any() -> TypeId {
    // any node of kind Any will do for rendering raw members: find it once
    static ANY: std::sync::OnceLock<TypeId> = std::sync::OnceLock::new();
    *ANY.get_or_init(|| {
        schema::TYPES
            .iter()
            .position(|t| matches!(t.kind, Kind::Opaque))
            .unwrap_or(0) as TypeId
    })
}

fn default_json(ty: TypeId, d: DefaultValue) -> Json {
    let v = match d {
        DefaultValue::Boolean(b) => Value::Boolean(b),
        DefaultValue::Integer(i) => Value::Integer(i),
        DefaultValue::Enumerated(e) => Value::Enumerated(e),
        DefaultValue::Bits(set) => Value::bits_from(set),
    };
    debug_assert!(is_default(&v, d));
    value_json(ty, &v)
}

/// GeneralizedTime `YYYYMMDDHH[MM[SS[.f]]][Z|±hhmm]` as ISO 8601 (`2024-01-02T03:04:05+00:00`);
/// anything else is returned as it is.
pub fn iso_time(s: &str) -> String {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|x| x.iter().all(u8::is_ascii_digit))
            .map(|_| &s[r])
    };
    let (Some(y), Some(mo), Some(d), Some(h)) =
        (digits(0..4), digits(4..6), digits(6..8), digits(8..10))
    else {
        return s.to_string();
    };
    let mut i = 10;
    let mi = digits(10..12).inspect(|_| i = 12).unwrap_or("00");
    let se = if i == 12 {
        digits(12..14).inspect(|_| i = 14).unwrap_or("00")
    } else {
        "00"
    };
    let mut frac = String::new();
    if i == 14 && matches!(b.get(14), Some(b'.') | Some(b',')) {
        let mut j = 15;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let f = &s[15..j];
        if !f.is_empty() {
            let mut f6: String = f.chars().take(6).collect();
            while f6.len() < 6 {
                f6.push('0');
            }
            if f6 != "000000" {
                // as Python's isoformat: no fraction when it is zero
                frac = format!(".{f6}");
            }
        }
        i = j;
    }
    let tz = match &s[i..] {
        "" => String::new(),
        "Z" => "+00:00".to_string(),
        t if t.len() == 5 && (t.starts_with('+') || t.starts_with('-')) => {
            format!("{}:{}", &t[..3], &t[3..])
        }
        _ => return s.to_string(),
    };
    format!("{y}-{mo}-{d}T{h}:{mi}:{se}{frac}{tz}")
}

fn payload_json(p: &Payload) -> Json {
    match p.ty {
        Some(t) => value_json(t, &p.value),
        None => match &p.value {
            Value::Raw(b) => json!({"$hex": hex(b)}),
            _ => Json::Null,
        },
    }
}

fn code_json(c: &Code) -> Json {
    match c {
        Code::Local(i) => json!(i),
        Code::Global(o) => json!(Oid(o.clone()).to_string()),
    }
}

fn invoke_id_json(i: InvokeId) -> Json {
    match i {
        InvokeId::Present(v) => json!(v),
        InvokeId::Absent => Json::Null,
    }
}

fn op_name(c: &Code) -> Json {
    match c.local().and_then(schema::operation) {
        Some(o) => json!(o.name),
        None => code_json(c),
    }
}

/// The object `ctigate decode` prints for one PDU (without `reencoded`): `apdu`,
/// `invoke_id`, `operation`, `event` (with `family`), `value` and kind-specific keys.
pub fn apdu_json(a: &Apdu) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("apdu".into(), json!(a.kind_name()));
    match a {
        Apdu::Acse(Acse { kind, value }) => {
            let alt = schema::alternatives(schema::ty::ACSE_apdu)
                .iter()
                .find(|x| x.name == kind.name());
            m.insert(
                "value".into(),
                alt.map(|x| value_json(x.ty, value)).unwrap_or(Json::Null),
            );
        }
        Apdu::Rose(r) => {
            m.insert("invoke_id".into(), invoke_id_json(r.invoke_id()));
            match r {
                Rose::Invoke(i) => {
                    m.insert("operation".into(), op_name(&i.opcode));
                    if let Some(l) = i.linked_id {
                        m.insert(
                            "linked_id".into(),
                            match l {
                                LinkedId::Present(v) => json!(v),
                                LinkedId::Absent => Json::Null,
                            },
                        );
                    }
                    if i.opcode == Code::Local(crate::opcode::CSTA_EVENT_REPORT) {
                        // an event report always says its family and event (null when unknown)
                        let (family, event) = a.event_name().unwrap_or(("", ""));
                        let name = |x: &str| if x.is_empty() { Json::Null } else { json!(x) };
                        m.insert("family".into(), name(family));
                        m.insert("event".into(), name(event));
                    }
                    m.insert(
                        "value".into(),
                        i.argument.as_ref().map(payload_json).unwrap_or(Json::Null),
                    );
                }
                Rose::ReturnResult(rr) => match &rr.result {
                    Some((code, p)) => {
                        m.insert("operation".into(), op_name(code));
                        m.insert("value".into(), payload_json(p));
                    }
                    None => {
                        m.insert("operation".into(), Json::Null);
                        m.insert("value".into(), Json::Null);
                    }
                },
                Rose::ReturnError(e) => {
                    let name = e
                        .errcode
                        .local()
                        .and_then(schema::error)
                        .map(|x| json!(x.name));
                    m.insert(
                        "errcode".into(),
                        name.unwrap_or_else(|| code_json(&e.errcode)),
                    );
                    m.insert(
                        "value".into(),
                        e.parameter.as_ref().map(payload_json).unwrap_or(Json::Null),
                    );
                }
                Rose::Reject(rj) => {
                    m.insert("problem".into(), json!(rj.problem.kind()));
                    m.insert(
                        "value".into(),
                        json!({"$choice": rj.problem.kind(), "$value": match rj.problem.name() {
                            Some(n) => json!(n),
                            None => json!(rj.problem.value()),
                        }}),
                    );
                }
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn times() {
        assert_eq!(iso_time("20240102030405Z"), "2024-01-02T03:04:05+00:00");
        assert_eq!(
            iso_time("20240102030405.5+0130"),
            "2024-01-02T03:04:05.500000+01:30"
        );
        assert_eq!(iso_time("2024010203"), "2024-01-02T03:00:00");
        assert_eq!(iso_time("20240102030405.0Z"), "2024-01-02T03:04:05+00:00");
        assert_eq!(iso_time("garbage"), "garbage");
    }
}
