//! The ECMA-285 type table that drives the BER codec.
//!
//! `generated.rs` is produced by `codecs/csta/gen/gen_schema.py` from the ASN.1 modules in
//! `codecs/csta/asn1/` (ECMA-285 4th edition, December 2011, plus X.227bis ACSE-1 as edited
//! by Wireshark). Tags are fully resolved there (module default EXPLICIT; X.680 §31.2.7: a
//! tag on a CHOICE or open type is always explicit), so the codec never reasons about
//! tagging environments at run time.

mod generated;

pub use generated::{ty, ERRORS, OPERATIONS, TYPES};

/// Index into [`TYPES`].
pub type TypeId = u16;

/// X.690 §8.1.2.2 tag class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Universal,
    Application,
    Context,
    Private,
}

impl Class {
    /// The two class bits of an identifier octet.
    pub const fn bits(self) -> u8 {
        match self {
            Class::Universal => 0x00,
            Class::Application => 0x40,
            Class::Context => 0x80,
            Class::Private => 0xc0,
        }
    }
}

/// A tag: class and number (X.690 §8.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    pub class: Class,
    pub number: u32,
}

impl Tag {
    pub const fn new(class: Class, number: u32) -> Tag {
        Tag { class, number }
    }
    pub const fn universal(number: u32) -> Tag {
        Tag::new(Class::Universal, number)
    }
    /// The tag as one integer: class in bits 32-33, number below (the generator's `tag_code`).
    #[inline]
    pub const fn code(self) -> u64 {
        let c = match self.class {
            Class::Universal => 0u64,
            Class::Application => 1,
            Class::Context => 2,
            Class::Private => 3,
        };
        (c << 32) | self.number as u64
    }
    /// The inverse of [`Tag::code`].
    #[inline]
    pub const fn from_code(code: u64) -> Tag {
        let class = match (code >> 32) & 3 {
            0 => Class::Universal,
            1 => Class::Application,
            2 => Class::Context,
            _ => Class::Private,
        };
        Tag {
            class,
            number: code as u32,
        }
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.class {
            Class::Universal => write!(f, "[UNIVERSAL {}]", self.number),
            Class::Application => write!(f, "[APPLICATION {}]", self.number),
            Class::Context => write!(f, "[{}]", self.number),
            Class::Private => write!(f, "[PRIVATE {}]", self.number),
        }
    }
}

/// Character string types (X.680 §41); all are kept as their octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringKind {
    IA5String,
    PrintableString,
    NumericString,
    VisibleString,
    GraphicString,
    UTF8String,
    GeneralString,
    TeletexString,
    ObjectDescriptor,
}

impl StringKind {
    pub const fn universal_tag(self) -> u32 {
        match self {
            StringKind::IA5String => 22,
            StringKind::PrintableString => 19,
            StringKind::NumericString => 18,
            StringKind::VisibleString => 26,
            StringKind::GraphicString => 25,
            StringKind::UTF8String => 12,
            StringKind::GeneralString => 27,
            StringKind::TeletexString => 20,
            StringKind::ObjectDescriptor => 7,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    GeneralizedTime,
    UTCTime,
}

/// A DEFAULT value of a SEQUENCE component (omitted on output when equal, X.690 §11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    Boolean(bool),
    Integer(i64),
    Enumerated(i64),
    /// Named-bit list: the bit numbers that are set.
    Bits(&'static [u32]),
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: TypeId,
    /// OPTIONAL or DEFAULT.
    pub optional: bool,
    pub default: Option<DefaultValue>,
}

#[derive(Debug)]
pub struct Alt {
    pub name: &'static str,
    pub ty: TypeId,
}

#[derive(Debug)]
pub enum Kind {
    Boolean,
    Integer(&'static [(&'static str, i64)]),
    Enumerated(&'static [(&'static str, i64)]),
    Null,
    OctetString,
    BitString(&'static [(&'static str, u32)]),
    ObjectIdentifier,
    String(StringKind),
    Time(TimeKind),
    /// An open type: any one TLV, kept as raw bytes.
    Any,
    /// A type from a module that is not part of the table (media attachment, physical
    /// device and voice unit events): content kept as raw bytes, re-encoded unchanged.
    Opaque,
    Sequence(&'static [Field]),
    Set(&'static [Field]),
    SequenceOf(TypeId),
    SetOf(TypeId),
    Choice(&'static [Alt]),
    Tagged {
        tag: Tag,
        explicit: bool,
        inner: TypeId,
    },
}

#[derive(Debug)]
pub struct TypeDef {
    pub name: &'static str,
    pub kind: Kind,
    /// The tags ([`Tag::code`]) a value of this type can start with, sorted (precomputed
    /// by the generator through tags and CHOICE alternatives).
    pub first: &'static [u64],
    /// ANY (or a CHOICE with an ANY alternative): every tag starts a value.
    pub open: bool,
}

/// An ECMA-285 operation (`OPERATION ::= { ARGUMENT … RESULT … CODE local: n }`).
#[derive(Debug)]
pub struct OperationDef {
    pub code: i64,
    pub name: &'static str,
    pub argument: TypeId,
    pub result: Option<TypeId>,
}

/// An ECMA-285 error (`ERROR ::= { PARAMETER … CODE local: n }`).
#[derive(Debug)]
pub struct ErrorDef {
    pub code: i64,
    pub name: &'static str,
    pub parameter: TypeId,
}

/// The node of a type id.
#[inline]
pub fn def(id: TypeId) -> &'static TypeDef {
    &TYPES[id as usize]
}

/// The operation with this local code.
pub fn operation(code: i64) -> Option<&'static OperationDef> {
    OPERATIONS.iter().find(|o| o.code == code)
}

/// The operation with this ASN.1 value name (`makeCall`).
pub fn operation_by_name(name: &str) -> Option<&'static OperationDef> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// The error with this local code.
pub fn error(code: i64) -> Option<&'static ErrorDef> {
    ERRORS.iter().find(|e| e.code == code)
}

/// The tag a value of this type carries on the wire, or `None` when it depends on the
/// value (untagged CHOICE), is open (ANY) or unknown (opaque).
pub fn outer_tag(id: TypeId) -> Option<Tag> {
    match &def(id).kind {
        Kind::Tagged { tag, .. } => Some(*tag),
        Kind::Boolean => Some(Tag::universal(1)),
        Kind::Integer(_) => Some(Tag::universal(2)),
        Kind::BitString(_) => Some(Tag::universal(3)),
        Kind::OctetString => Some(Tag::universal(4)),
        Kind::Null => Some(Tag::universal(5)),
        Kind::ObjectIdentifier => Some(Tag::universal(6)),
        Kind::Enumerated(_) => Some(Tag::universal(10)),
        Kind::String(k) => Some(Tag::universal(k.universal_tag())),
        Kind::Time(TimeKind::UTCTime) => Some(Tag::universal(23)),
        Kind::Time(TimeKind::GeneralizedTime) => Some(Tag::universal(24)),
        Kind::Sequence(_) | Kind::SequenceOf(_) => Some(Tag::universal(16)),
        Kind::Set(_) | Kind::SetOf(_) => Some(Tag::universal(17)),
        Kind::Choice(_) | Kind::Any | Kind::Opaque => None,
    }
}

/// Whether a TLV with `tag` can start a value of this type. Opaque types accept nothing
/// by themselves (they only appear implicitly tagged); ANY accepts every tag.
#[inline]
pub fn accepts(id: TypeId, tag: Tag) -> bool {
    accepts_code(id, tag.code())
}

/// [`accepts`] with the tag as [`Tag::code`].
#[inline]
pub fn accepts_code(id: TypeId, code: u64) -> bool {
    let d = def(id);
    // most types start with one tag; the other sets are short, and a plain scan measured
    // fewer instructions than `contains` (which unrolls for long slices)
    #[allow(clippy::manual_contains)]
    match d.first {
        [one] => *one == code || d.open,
        set => d.open || set.iter().any(|c| *c == code),
    }
}

/// Fields of a SEQUENCE/SET type (through tags), else an empty slice.
pub fn fields(id: TypeId) -> &'static [Field] {
    match &def(id).kind {
        Kind::Sequence(f) | Kind::Set(f) => f,
        Kind::Tagged {
            explicit: false,
            inner,
            ..
        } => fields(*inner),
        _ => &[],
    }
}

/// Alternatives of a CHOICE type (through tags), else an empty slice.
pub fn alternatives(id: TypeId) -> &'static [Alt] {
    match &def(id).kind {
        Kind::Choice(a) => a,
        Kind::Tagged { inner, .. } => alternatives(*inner),
        _ => &[],
    }
}

/// Strip tags: the id of the underlying (untagged) type.
pub fn untagged(mut id: TypeId) -> TypeId {
    while let Kind::Tagged { inner, .. } = &def(id).kind {
        id = *inner;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, t) in TYPES.iter().enumerate() {
            let check = |id: TypeId| assert!((id as usize) < TYPES.len(), "{i} {}", t.name);
            match &t.kind {
                Kind::Sequence(f) | Kind::Set(f) => f.iter().for_each(|f| check(f.ty)),
                Kind::Choice(a) => a.iter().for_each(|a| check(a.ty)),
                Kind::SequenceOf(e) | Kind::SetOf(e) => check(*e),
                Kind::Tagged {
                    inner, explicit, ..
                } => {
                    check(*inner);
                    // X.680 31.2.7: implicit tagging of an untagged CHOICE/ANY is not allowed
                    if !explicit {
                        assert!(
                            outer_tag(*inner).is_some() || matches!(def(*inner).kind, Kind::Opaque),
                            "{}",
                            t.name
                        );
                    }
                }
                _ => {}
            }
        }
        assert_eq!(operation(10).unwrap().name, "makeCall");
        assert_eq!(operation(211).unwrap().name, "systemStatus");
        assert_eq!(error(1).unwrap().name, "universalFailure");
        assert_eq!(OPERATIONS.len(), 24);
    }
}
