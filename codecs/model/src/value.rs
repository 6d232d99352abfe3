//! The decoded form of any ECMA-285 / ACSE value: a tree that names its components, keeps
//! unknown elements and vendor data as raw octets, and re-encodes canonically.

use bytes::Bytes;

/// One component of a SEQUENCE or SET, in wire order. `name` is the ASN.1 component name,
/// or [`UNKNOWN`] for an element the type does not define (an extension or vendor
/// addition), whose whole TLV is kept in a [`Value::Raw`] and re-encoded unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: &'static str,
    pub value: Value,
}

/// Name of members that the type does not define.
pub const UNKNOWN: &str = "";

/// A decoded value of any type of the table.
///
/// `repr(u64)`: a word-sized tag puts every field at offset 8, so values (and
/// `Result<Value, _>`, still 40 octets) move as five whole words; with the default layout
/// the `bool` of `Boolean` sits at offset 1 and every move of a value is done piecewise
/// (about 2.5 % of the instructions of a decode, 5 % of its time; BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq)]
#[repr(u64)]
pub enum Value {
    Boolean(bool),
    /// INTEGER (named numbers are just values).
    Integer(i64),
    /// ENUMERATED: the number, known or not (open enumeration, house habit 5).
    Enumerated(i64),
    Null,
    /// OCTET STRING.
    Octets(Bytes),
    /// BIT STRING content octets: the unused-bits octet, then the bits (X.690 §8.6.2);
    /// see [`Value::bits`] and [`Value::bits_parts`].
    Bits(Bytes),
    /// OBJECT IDENTIFIER content octets.
    Oid(Bytes),
    /// A character string's octets (validated for its string type on input).
    Str(Bytes),
    /// GeneralizedTime / UTCTime octets (ASCII).
    Time(Bytes),
    /// SEQUENCE or SET.
    Seq(Vec<Member>),
    /// SEQUENCE OF or SET OF.
    List(Vec<Value>),
    /// A CHOICE: the alternative's name and value.
    Choice(&'static str, Box<Value>),
    /// A whole TLV kept as it came: ANY, an unknown CHOICE alternative, an unknown element.
    Raw(Bytes),
    /// The whole TLV of a value whose type is not in the table (media attachment,
    /// physical device, voice unit events), re-encoded as it came.
    Opaque(Bytes),
}

impl Value {
    /// What kind of value this is, for messages (`SEQUENCE`, `character string`, …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Boolean(_) => "BOOLEAN",
            Value::Integer(_) => "INTEGER",
            Value::Enumerated(_) => "ENUMERATED",
            Value::Null => "NULL",
            Value::Octets(_) => "OCTET STRING",
            Value::Bits(_) => "BIT STRING",
            Value::Oid(_) => "OBJECT IDENTIFIER",
            Value::Str(_) => "character string",
            Value::Time(_) => "time",
            Value::Seq(_) => "SEQUENCE",
            Value::List(_) => "SEQUENCE OF",
            Value::Choice(..) => "CHOICE alternative",
            Value::Raw(_) => "unknown element (raw TLV)",
            Value::Opaque(_) => "opaque content",
        }
    }
    /// The component `name` of a SEQUENCE/SET value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Seq(m) => m.iter().find(|m| m.name == name).map(|m| &m.value),
            _ => None,
        }
    }
    /// Follow a dotted path of component and alternative names (`callingDevice.deviceIdentifier`);
    /// a CHOICE step matches its alternative's name, and `*` any alternative.
    pub fn path(&self, path: &str) -> Option<&Value> {
        let mut v = self;
        for step in path.split('.') {
            v = match v {
                Value::Seq(_) => v.get(step)?,
                Value::Choice(n, inner) if *n == step || step == "*" => inner,
                _ => return None,
            };
        }
        Some(v)
    }
    /// The alternative of a CHOICE value.
    pub fn choice(&self) -> Option<(&'static str, &Value)> {
        match self {
            Value::Choice(n, v) => Some((n, v)),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) | Value::Enumerated(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }
    /// Octets of an OCTET STRING, character string, time or raw value.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Octets(b) | Value::Str(b) | Value::Time(b) | Value::Raw(b) | Value::Oid(b) => {
                Some(b)
            }
            _ => None,
        }
    }
    /// A character string as text (IA5 and the other 7-bit strings are ASCII by
    /// validation; others are read as UTF-8, lossily).
    pub fn as_str(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Value::Str(b) | Value::Time(b) => Some(String::from_utf8_lossy(b)),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    /// Members of a SEQUENCE/SET value.
    pub fn members(&self) -> &[Member] {
        match self {
            Value::Seq(m) => m,
            _ => &[],
        }
    }

    // -- builders --
    pub fn str(s: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(s.as_bytes()))
    }
    pub fn octets(b: impl AsRef<[u8]>) -> Value {
        Value::Octets(Bytes::copy_from_slice(b.as_ref()))
    }
    pub fn alt(name: &'static str, v: Value) -> Value {
        Value::Choice(name, Box::new(v))
    }
    /// A SEQUENCE value from (name, value) pairs in schema order.
    pub fn seq<I: IntoIterator<Item = (&'static str, Value)>>(members: I) -> Value {
        Value::Seq(
            members
                .into_iter()
                .map(|(name, value)| Member { name, value })
                .collect(),
        )
    }
    /// BIT STRING from the numbers of the bits that are set (named-bit list, minimal length).
    pub fn bits_from(set: &[u32]) -> Value {
        let nbits = set.iter().map(|b| b + 1).max().unwrap_or(0) as usize;
        let mut data = vec![0u8; nbits.div_ceil(8)];
        for b in set {
            data[*b as usize / 8] |= 0x80 >> (b % 8);
        }
        let unused = ((8 - nbits % 8) % 8) as u8;
        Value::bits(unused, &data)
    }
    /// BIT STRING from its unused-bit count and octets.
    pub fn bits(unused: u8, data: &[u8]) -> Value {
        let mut c = Vec::with_capacity(data.len() + 1);
        c.push(unused);
        c.extend_from_slice(data);
        Value::Bits(Bytes::from(c))
    }
    /// A BIT STRING's unused-bit count and octets.
    pub fn bits_parts(&self) -> Option<(u8, &[u8])> {
        match self {
            Value::Bits(c) if !c.is_empty() => Some((c[0], &c[1..])),
            _ => None,
        }
    }
    /// The numbers of the bits that are set in a BIT STRING value.
    pub fn bits_set(&self) -> Vec<u32> {
        match self {
            Value::Bits(_) => {
                let Some((unused, data)) = self.bits_parts() else {
                    return Vec::new();
                };
                let total = (data.len() * 8).saturating_sub(unused as usize);
                (0..total as u32)
                    .filter(|b| data[*b as usize / 8] & (0x80 >> (b % 8)) != 0)
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Octets as lower-case hex (`a1b2`): how opaque octets (call ids, cross references) are
/// shown in logs and keys.
pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

/// Builder helpers that keep call sites short: `seq![("a", v), ...]`.
#[macro_export]
macro_rules! seq {
    ($(($name:expr, $v:expr)),* $(,)?) => {
        $crate::value::Value::Seq(vec![$($crate::value::Member { name: $name, value: $v }),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_five_words() {
        assert_eq!(std::mem::size_of::<Value>(), 40);
        assert_eq!(std::mem::size_of::<Option<Value>>(), 40);
    }
}
