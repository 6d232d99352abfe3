//! Schema-driven BER decoder and canonical encoder (X.690).
//!
//! Input: BER as PBXs send it: definite or indefinite lengths, non-minimal length
//! octets, DEFAULT values present, unknown trailing elements and vendor CHOICE
//! alternatives (kept as raw TLVs). Output: definite minimal lengths, DEFAULT values
//! omitted (X.690 §11.5), everything unknown re-emitted byte for byte.

use crate::ber::{self, read_tlv, Children, Limits, Tlv};
use crate::error::{DecodeError, DecodeErrorKind as K, EncodeError};
use crate::schema::{self, def, Alt, DefaultValue, Field, Kind, StringKind, Tag, TypeId};
use crate::value::{Member, Value, UNKNOWN};
use bytes::Bytes;

/// Decode one complete value of type `ty` that fills `buf` exactly.
pub fn decode(ty: TypeId, buf: &Bytes) -> Result<Value, DecodeError> {
    decode_with(ty, buf, &Limits::DEFAULT)
}

pub fn decode_with(ty: TypeId, buf: &Bytes, limits: &Limits) -> Result<Value, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::new(K::Empty, 0));
    }
    if buf.len() > limits.max_pdu {
        return Err(DecodeError::new(
            K::TooLarge {
                limit: limits.max_pdu,
            },
            0,
        ));
    }
    let d = Decoder { buf, limits };
    let tlv = read_tlv(buf, 0, buf.len(), 1, limits).map_err(|e| e.within(def(ty).name))?;
    if !schema::accepts_code(ty, tlv.tag_code()) && !is_open_choice(ty) {
        return Err(DecodeError::new(
            K::UnexpectedTag {
                found: tlv.tag(),
                constructed: tlv.constructed(),
            },
            0,
        )
        .within(def(ty).name));
    }
    let v = d.value(ty, &tlv, 1).map_err(|e| e.within(def(ty).name))?;
    if tlv.end != buf.len() {
        return Err(DecodeError::new(K::TrailingData, tlv.end).within(def(ty).name));
    }
    Ok(v)
}

/// Decode the value of type `ty` in an already located TLV of `buf` (used by ROSE to
/// decode an argument in place without copying).
pub fn decode_tlv(
    ty: TypeId,
    buf: &Bytes,
    tlv: &Tlv,
    depth: u32,
    limits: &Limits,
) -> Result<Value, DecodeError> {
    let d = Decoder { buf, limits };
    if !schema::accepts_code(ty, tlv.tag_code()) && !is_open_choice(ty) {
        return Err(DecodeError::new(
            K::UnexpectedTag {
                found: tlv.tag(),
                constructed: tlv.constructed(),
            },
            tlv.start,
        )
        .within(def(ty).name));
    }
    d.value(ty, tlv, depth).map_err(|e| e.within(def(ty).name))
}

fn is_open_choice(ty: TypeId) -> bool {
    matches!(def(ty).kind, Kind::Choice(_))
}

struct Decoder<'a> {
    buf: &'a Bytes,
    limits: &'a Limits,
}

impl Decoder<'_> {
    fn raw(&self, tlv: &Tlv) -> Bytes {
        self.buf.slice(tlv.start..tlv.end)
    }
    fn content(&self, tlv: &Tlv) -> Bytes {
        self.buf.slice(tlv.content_start..tlv.content_end)
    }
    fn children<'s>(&'s self, tlv: &Tlv, depth: u32) -> Children<'s> {
        Children::new(self.buf, tlv, depth, self.limits)
    }

    /// A value of type `ty` whose TLV (tag already matched by the caller) is `tlv`.
    /// Inlined into its callers, so that most values go straight to `content_of`.
    #[inline(always)]
    fn value(&self, ty: TypeId, tlv: &Tlv, depth: u32) -> Result<Value, DecodeError> {
        match &def(ty).kind {
            Kind::Choice(alts) => self.choice(alts, tlv, depth),
            Kind::Any => Ok(Value::Raw(self.raw(tlv))),
            _ => self.content_of(ty, tlv, depth),
        }
    }

    /// A CHOICE value: the first alternative that takes the tag.
    fn choice(&self, alts: &'static [Alt], tlv: &Tlv, depth: u32) -> Result<Value, DecodeError> {
        for a in alts.iter() {
            if schema::accepts_code(a.ty, tlv.tag_code()) {
                let v = self.value(a.ty, tlv, depth).map_err(|e| e.within(a.name))?;
                return Ok(Value::Choice(a.name, Box::new(v)));
            }
        }
        // open CHOICE (vendor alternatives, later editions): keep the TLV
        Ok(Value::Raw(self.raw(tlv)))
    }

    /// The content of `tlv` read as type `ty`, whatever tag the TLV carried (implicit tagging).
    fn content_of(&self, ty: TypeId, tlv: &Tlv, depth: u32) -> Result<Value, DecodeError> {
        let primitive = |tlv: &Tlv| -> Result<(), DecodeError> {
            if tlv.constructed() {
                Err(DecodeError::new(K::BadForm, tlv.start))
            } else {
                Ok(())
            }
        };
        let constructed = |tlv: &Tlv| -> Result<(), DecodeError> {
            if tlv.constructed() {
                Ok(())
            } else {
                Err(DecodeError::new(K::BadForm, tlv.start))
            }
        };
        let c = &self.buf[tlv.content_start..tlv.content_end];
        // implicit tags only replace the tag: go straight to the underlying type
        let mut ty = ty;
        while let Kind::Tagged {
            explicit: false,
            inner,
            ..
        } = &def(ty).kind
        {
            ty = *inner;
        }
        match &def(ty).kind {
            Kind::Tagged {
                explicit: true,
                inner,
                ..
            } => {
                constructed(tlv)?;
                let mut kids = self.children(tlv, depth);
                let child = match kids.next() {
                    Some(c) => c?,
                    None => {
                        // an EXPLICIT tag with nothing inside
                        return Err(DecodeError::new(
                            K::MissingField(def(*inner).name),
                            tlv.content_start,
                        ));
                    }
                };
                if !schema::accepts_code(*inner, child.tag_code()) && !is_open_choice(*inner) {
                    return Err(DecodeError::new(
                        K::UnexpectedTag {
                            found: child.tag(),
                            constructed: child.constructed(),
                        },
                        child.start,
                    ));
                }
                let v = self.value(*inner, &child, depth + 1)?;
                // the one value normally fills the tag (then there is no next child to read)
                if child.end != tlv.content_end {
                    if let Some(extra) = kids.next() {
                        let at = match extra {
                            Ok(t) => t.start,
                            Err(e) => e.offset,
                        };
                        return Err(DecodeError::new(K::TrailingData, at));
                    }
                }
                Ok(v)
            }
            // resolved by the loop above; kept for exhaustiveness
            Kind::Tagged {
                explicit: false, ..
            } => Err(DecodeError::new(K::BadForm, tlv.start)),
            Kind::Choice(_) | Kind::Any => {
                // cannot be implicitly tagged (X.680 31.2.7); the table never asks for it
                Err(DecodeError::new(K::BadForm, tlv.start))
            }
            Kind::Opaque => Ok(Value::Opaque(self.raw(tlv))),
            Kind::Boolean => {
                primitive(tlv)?;
                if c.len() != 1 {
                    return Err(DecodeError::new(
                        K::InvalidValue("BOOLEAN must have one content octet"),
                        tlv.start,
                    ));
                }
                Ok(Value::Boolean(c[0] != 0))
            }
            Kind::Integer(_) => {
                primitive(tlv)?;
                Ok(Value::Integer(ber::parse_integer(c, tlv.start)?))
            }
            Kind::Enumerated(_) => {
                primitive(tlv)?;
                Ok(Value::Enumerated(ber::parse_integer(c, tlv.start)?))
            }
            Kind::Null => {
                primitive(tlv)?;
                if !c.is_empty() {
                    return Err(DecodeError::new(
                        K::InvalidValue("NULL with content octets"),
                        tlv.start,
                    ));
                }
                Ok(Value::Null)
            }
            Kind::OctetString => {
                primitive(tlv)?;
                Ok(Value::Octets(self.content(tlv)))
            }
            Kind::BitString(_) => {
                primitive(tlv)?;
                if c.is_empty() || c[0] > 7 || (c.len() == 1 && c[0] != 0) {
                    return Err(DecodeError::new(
                        K::InvalidValue("BIT STRING unused-bits octet"),
                        tlv.start,
                    ));
                }
                Ok(Value::Bits(self.content(tlv)))
            }
            Kind::ObjectIdentifier => {
                primitive(tlv)?;
                if c.is_empty() || c[c.len() - 1] & 0x80 != 0 {
                    return Err(DecodeError::new(
                        K::InvalidValue("OBJECT IDENTIFIER subidentifiers"),
                        tlv.start,
                    ));
                }
                Ok(Value::Oid(self.content(tlv)))
            }
            Kind::String(k) => {
                primitive(tlv)?;
                let ok = match k {
                    StringKind::IA5String => c.is_ascii(),
                    StringKind::NumericString => c.iter().all(|b| b.is_ascii_digit() || *b == b' '),
                    StringKind::PrintableString | StringKind::VisibleString => {
                        c.iter().all(|b| (0x20..0x7f).contains(b))
                    }
                    StringKind::UTF8String => std::str::from_utf8(c).is_ok(),
                    _ => true,
                };
                if !ok {
                    return Err(DecodeError::new(
                        K::InvalidValue("characters outside the string type"),
                        tlv.start,
                    ));
                }
                Ok(Value::Str(self.content(tlv)))
            }
            Kind::Time(_) => {
                primitive(tlv)?;
                if !c.iter().all(|b| b.is_ascii_graphic()) || c.len() < 10 {
                    return Err(DecodeError::new(K::InvalidValue("time string"), tlv.start));
                }
                Ok(Value::Time(self.content(tlv)))
            }
            Kind::Sequence(fields) => {
                constructed(tlv)?;
                self.sequence(fields, tlv, depth)
            }
            Kind::Set(fields) => {
                constructed(tlv)?;
                self.set(fields, tlv, depth)
            }
            Kind::SequenceOf(el) | Kind::SetOf(el) => {
                constructed(tlv)?;
                let mut out = Vec::new();
                for (i, child) in self.children(tlv, depth).enumerate() {
                    let child = child?;
                    if !schema::accepts(*el, child.tag()) && !is_open_choice(*el) {
                        return Err(DecodeError::new(
                            K::UnexpectedTag {
                                found: child.tag(),
                                constructed: child.constructed(),
                            },
                            child.start,
                        )
                        .within(index_name(i)));
                    }
                    out.push(
                        self.value(*el, &child, depth + 1)
                            .map_err(|e| e.within(index_name(i)))?,
                    );
                }
                Ok(Value::List(out))
            }
        }
    }

    fn sequence(
        &self,
        fields: &'static [Field],
        tlv: &Tlv,
        depth: u32,
    ) -> Result<Value, DecodeError> {
        let mut members = Vec::with_capacity(fields.len().min(8));
        let mut next = 0usize; // first field not yet passed
        for child in self.children(tlv, depth) {
            let child = child?;
            // the first field at or after `next` that takes this tag, passing only optional ones
            let mut found = None;
            for (j, f) in fields.iter().enumerate().skip(next) {
                if schema::accepts_code(f.ty, child.tag_code()) {
                    found = Some(j);
                    break;
                }
                if !f.optional {
                    // a mandatory open CHOICE takes an unknown alternative here
                    if is_open_choice(f.ty)
                        && !fields
                            .iter()
                            .any(|g| schema::accepts_code(g.ty, child.tag_code()))
                    {
                        found = Some(j);
                    }
                    break;
                }
            }
            if found.is_none() {
                // an element carrying the tag of one of this type's components, out of place
                // or repeated, is not an extension: keeping it would change its meaning on
                // re-encoding (it could land where an omitted DEFAULT component was)
                if let Some(k) = fields
                    .iter()
                    .position(|f| schema::accepts_code(f.ty, child.tag_code()))
                {
                    if k >= next {
                        // a later component arrived while a mandatory one is still missing
                        let missing = fields[next..k]
                            .iter()
                            .find(|f| !f.optional)
                            .map_or(fields[k].name, |f| f.name);
                        return Err(DecodeError::new(K::MissingField(missing), child.start));
                    }
                    return Err(DecodeError::new(
                        K::UnexpectedTag {
                            found: child.tag(),
                            constructed: child.constructed(),
                        },
                        child.start,
                    )
                    .within(fields[k].name));
                }
            }
            match found {
                Some(j) => {
                    let f = &fields[j];
                    let v = self
                        .value(f.ty, &child, depth + 1)
                        .map_err(|e| e.within(f.name))?;
                    members.push(Member {
                        name: f.name,
                        value: v,
                    });
                    next = j + 1;
                }
                None => members.push(Member {
                    name: UNKNOWN,
                    value: Value::Raw(self.raw(&child)),
                }),
            }
        }
        if let Some(f) = fields.iter().skip(next).find(|f| !f.optional) {
            return Err(DecodeError::new(K::MissingField(f.name), tlv.content_end));
        }
        Ok(Value::Seq(members))
    }

    fn set(&self, fields: &'static [Field], tlv: &Tlv, depth: u32) -> Result<Value, DecodeError> {
        let mut members: Vec<Member> = Vec::new();
        for child in self.children(tlv, depth) {
            let child = child?;
            let pos = fields.iter().position(|f| {
                schema::accepts_code(f.ty, child.tag_code())
                    && !members.iter().any(|m| m.name == f.name)
            });
            match pos {
                Some(j) => {
                    let f = &fields[j];
                    let v = self
                        .value(f.ty, &child, depth + 1)
                        .map_err(|e| e.within(f.name))?;
                    members.push(Member {
                        name: f.name,
                        value: v,
                    });
                }
                None if fields
                    .iter()
                    .any(|f| schema::accepts_code(f.ty, child.tag_code())) =>
                {
                    // a repeated component
                    return Err(DecodeError::new(
                        K::UnexpectedTag {
                            found: child.tag(),
                            constructed: child.constructed(),
                        },
                        child.start,
                    ));
                }
                None => members.push(Member {
                    name: UNKNOWN,
                    value: Value::Raw(self.raw(&child)),
                }),
            }
        }
        if let Some(f) = fields
            .iter()
            .find(|f| !f.optional && !members.iter().any(|m| m.name == f.name))
        {
            return Err(DecodeError::new(K::MissingField(f.name), tlv.content_end));
        }
        Ok(Value::Seq(members))
    }
}

fn index_name(i: usize) -> &'static str {
    const N: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    ];
    N.get(i).copied().unwrap_or("[n]")
}

// ---- encoder ----------------------------------------------------------------------------

/// Encode a value of type `ty` canonically.
pub fn encode(ty: TypeId, v: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    encode_into(ty, v, &mut out)?;
    Ok(out)
}

/// Append the canonical encoding of `v` as type `ty` to `out`.
pub fn encode_into(ty: TypeId, v: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    enc(ty, v, out, None).map_err(|e| e.within(def(ty).name))
}

fn enc(ty: TypeId, v: &Value, out: &mut Vec<u8>, tag: Option<Tag>) -> Result<(), EncodeError> {
    let d = def(ty);
    let mismatch = || {
        EncodeError::new(format!(
            "value {} does not fit type {}",
            v.kind_name(),
            d.name
        ))
    };
    // raw values (ANY, unknown CHOICE alternatives) carry their own tag: copied as they came
    if let (Value::Raw(b), Kind::Any | Kind::Choice(_), None) = (v, &d.kind, tag) {
        out.extend_from_slice(b);
        return Ok(());
    }
    match &d.kind {
        Kind::Tagged {
            tag: t,
            explicit: true,
            inner,
        } => {
            let m = ber::begin(out, tag.unwrap_or(*t), true);
            enc(*inner, v, out, None)?;
            ber::finish(out, m);
            Ok(())
        }
        Kind::Tagged {
            tag: t,
            explicit: false,
            inner,
        } => enc(*inner, v, out, Some(tag.unwrap_or(*t))),
        Kind::Choice(alts) => match v {
            Value::Choice(name, inner) if tag.is_none() => {
                let a = alts.iter().find(|a| a.name == *name).ok_or_else(mismatch)?;
                enc(a.ty, inner, out, None).map_err(|e| e.within(a.name))
            }
            _ => Err(mismatch()),
        },
        Kind::Any => Err(mismatch()),
        Kind::Opaque => match v {
            Value::Opaque(tlv) => {
                out.extend_from_slice(tlv);
                Ok(())
            }
            _ => Err(mismatch()),
        },
        kind => {
            let t = tag.or_else(|| schema::outer_tag(ty)).ok_or_else(mismatch)?;
            match (kind, v) {
                (Kind::Boolean, Value::Boolean(b)) => {
                    ber::write_primitive(out, t, &[if *b { 0xff } else { 0 }])
                }
                (Kind::Integer(_), Value::Integer(i))
                | (Kind::Enumerated(_), Value::Enumerated(i)) => {
                    let (b, s) = ber::integer_content(*i);
                    ber::write_primitive(out, t, &b[s..])
                }
                (Kind::Null, Value::Null) => ber::write_primitive(out, t, &[]),
                (Kind::OctetString, Value::Octets(b)) => ber::write_primitive(out, t, b),
                (Kind::ObjectIdentifier, Value::Oid(b)) => ber::write_primitive(out, t, b),
                (Kind::String(_), Value::Str(b)) => ber::write_primitive(out, t, b),
                (Kind::Time(_), Value::Time(b)) => ber::write_primitive(out, t, b),
                (Kind::BitString(_), Value::Bits(c)) => {
                    if c.is_empty() || c[0] > 7 || (c.len() == 1 && c[0] != 0) {
                        return Err(EncodeError::new("BIT STRING unused bits out of range"));
                    }
                    ber::write_primitive(out, t, c);
                }
                (Kind::Sequence(fields), Value::Seq(members))
                | (Kind::Set(fields), Value::Seq(members)) => {
                    let m = ber::begin(out, t, true);
                    enc_members(fields, members, out)?;
                    ber::finish(out, m);
                }
                (Kind::SequenceOf(el), Value::List(items))
                | (Kind::SetOf(el), Value::List(items)) => {
                    let m = ber::begin(out, t, true);
                    for (i, it) in items.iter().enumerate() {
                        enc(*el, it, out, None).map_err(|e| e.within(index_name(i)))?;
                    }
                    ber::finish(out, m);
                }
                _ => return Err(mismatch()),
            }
            Ok(())
        }
    }
}

fn enc_members(
    fields: &'static [Field],
    members: &[Member],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    for m in members {
        if m.name == UNKNOWN {
            match &m.value {
                Value::Raw(b) => out.extend_from_slice(b),
                _ => return Err(EncodeError::new("unknown element must be a raw TLV")),
            }
            continue;
        }
        let f = fields
            .iter()
            .find(|f| f.name == m.name)
            .ok_or_else(|| EncodeError::new(format!("no component `{}` in this type", m.name)))?;
        if let Some(dv) = f.default {
            if is_default(&m.value, dv) {
                continue; // X.690 §11.5: DEFAULT values are not encoded
            }
        }
        enc(f.ty, &m.value, out, None).map_err(|e| e.within(f.name))?;
    }
    // mandatory components must be present
    if let Some(f) = fields
        .iter()
        .find(|f| !f.optional && !members.iter().any(|m| m.name == f.name))
    {
        return Err(EncodeError::new(format!(
            "mandatory component `{}` is missing",
            f.name
        )));
    }
    Ok(())
}

/// Whether `v` equals a DEFAULT value (named bit lists compare by the bits set).
pub fn is_default(v: &Value, d: DefaultValue) -> bool {
    match (v, d) {
        (Value::Boolean(a), DefaultValue::Boolean(b)) => *a == b,
        (Value::Integer(a), DefaultValue::Integer(b)) => *a == b,
        (Value::Enumerated(a), DefaultValue::Enumerated(b)) => *a == b,
        (Value::Bits(_), DefaultValue::Bits(set)) => v.bits_set() == set,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ty;

    use crate::test_util::hex;

    #[test]
    fn make_call_argument_round_trips() {
        let b = hex("301530058003323031300c800a30383931323334353637");
        let v = decode(ty::MakeCallArgument, &b).unwrap();
        assert_eq!(
            v.path("callingDevice.deviceIdentifier.dialingNumber")
                .unwrap()
                .as_str()
                .unwrap(),
            "201"
        );
        assert_eq!(encode(ty::MakeCallArgument, &v).unwrap(), b.to_vec());
    }

    #[test]
    fn default_present_on_input_is_omitted_on_output() {
        // autoOriginate [3] IMPLICIT DEFAULT prompt(0) sent explicitly
        let b = hex("301830058003323031300580033230328301000a0100");
        let b = Bytes::from(b.to_vec()[..].to_vec());
        let mut with = b.to_vec();
        with.truncate(2 + 7 + 7);
        with.extend([0x83, 0x01, 0x00]);
        with[1] = (with.len() - 2) as u8;
        let v = decode(ty::MakeCallArgument, &Bytes::from(with.clone())).unwrap();
        assert_eq!(v.get("autoOriginate"), Some(&Value::Enumerated(0)));
        let out = encode(ty::MakeCallArgument, &v).unwrap();
        assert_eq!(
            out,
            hex("300e30058003323031300580033230 32"
                .replace(' ', "")
                .as_str())
            .to_vec()
        );
    }

    #[test]
    fn unknown_trailing_element_is_kept() {
        let b = hex("3013300580033230313005800332303299035a5a5a");
        let v = decode(ty::MakeCallArgument, &b).unwrap();
        assert_eq!(v.members().last().unwrap().name, UNKNOWN);
        assert_eq!(encode(ty::MakeCallArgument, &v).unwrap(), b.to_vec());
    }

    #[test]
    fn indefinite_input_gives_definite_output() {
        let b = hex("308030058003323031300580033230320000");
        let v = decode(ty::MakeCallArgument, &b).unwrap();
        assert_eq!(
            encode(ty::MakeCallArgument, &v).unwrap(),
            hex("300e3005800332303130058003323032").to_vec()
        );
    }

    #[test]
    fn missing_field_names_the_path() {
        let e = decode(ty::MakeCallArgument, &hex("300730058003323031")).unwrap_err();
        assert_eq!(e.kind, K::MissingField("calledDirectoryNumber"));
        assert_eq!(
            e.to_string(),
            "MakeCallArgument: mandatory component `calledDirectoryNumber` is missing at offset 9"
        );
        // dialingNumber with a non-ASCII octet
        let e = decode(
            ty::MakeCallArgument,
            &hex("300e3005800332303130058003ff3032"),
        )
        .unwrap_err();
        assert_eq!(
            e.path(),
            "MakeCallArgument.calledDirectoryNumber.deviceIdentifier.dialingNumber"
        );
        assert!(matches!(e.kind, K::InvalidValue(_)));
        // length says 0x20 but only 14 octets follow
        let e = decode(
            ty::MakeCallArgument,
            &hex("30203005800332303130058003323032"),
        )
        .unwrap_err();
        assert!(matches!(e.kind, K::Truncated { .. }));
        // trailing octets after the value
        let e = decode(
            ty::MakeCallArgument,
            &hex("300e300580033230313005800332303200"),
        )
        .unwrap_err();
        assert_eq!(e.kind, K::TrailingData);
    }
}

#[cfg(test)]
mod misplaced_tests {
    use super::*;
    use crate::schema::ty;

    #[test]
    fn repeated_component_is_rejected_not_kept() {
        // AARQ: protocol-version (DEFAULT, present) then a second [0]: keeping it as unknown
        // would let it become protocol-version once the DEFAULT is omitted on output
        let b = Bytes::from_static(&[
            0x60, 0x0b, 0x80, 0x02, 0x07, 0x80, 0x80, 0x00, 0xa1, 0x03, 0x06, 0x01, 0x00,
        ]);
        let e = decode(ty::ACSE_apdu, &b).unwrap_err();
        assert!(matches!(e.kind, K::UnexpectedTag { .. }), "{e}");
        assert!(e.path().ends_with("protocol-version"), "{e}");
        // a later component while a mandatory one is missing names the missing one
        let b = Bytes::from_static(&[0x61, 0x08, 0xa1, 0x03, 0x06, 0x01, 0x00, 0xa3, 0x01, 0x00]);
        let e = decode(ty::ACSE_apdu, &b).unwrap_err();
        assert_eq!(e.kind, K::MissingField("result"), "{e}");
    }
}
