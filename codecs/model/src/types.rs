//! Typed views of the ECMA-285 identifier and common types (device and connection
//! identifiers, cross reference ids, connection states, event causes, common arguments,
//! universal failure, agent states).
//!
//! Every type converts from the schema-driven [`Value`] tree with `from_value` (which never
//! panics: a value of the wrong shape gives a [`TypeError`] naming the type and the
//! component) and back with `to_value`. Component names are the ASN.1 names; tags are the
//! schema codec's business.
//!
//! The machinery shared by [`crate::ops`] and [`crate::events`] lives here as well: the
//! `typed_struct!` macro builds a struct with typed fields for some components of a
//! SEQUENCE and a `rest: Vec<Member>` for all the others, so that
//! `to_value(from_value(v))` re-encodes byte for byte (see [`Fields`] and [`Build`] for the
//! placement rule of unknown elements).

use crate::payload::Payload;
use crate::schema::{self, def, ty, Kind, TypeId};
use crate::value::{Member, Value, UNKNOWN};
use bytes::Bytes;
use std::fmt;

// ---- errors --------------------------------------------------------------------------------

/// A [`Value`] that does not have the shape of the typed view asked for: names the ASN.1
/// type, the path of components leading to it and what was wrong, e.g.
/// `connection: ConnectionID: neither callID nor deviceID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// The ASN.1 type whose value was wrong.
    pub ty: &'static str,
    pub message: String,
    /// Component names, innermost first.
    path: Vec<&'static str>,
}

impl TypeError {
    pub fn new(ty: &'static str, message: impl Into<String>) -> TypeError {
        TypeError {
            ty,
            message: message.into(),
            path: Vec::new(),
        }
    }
    /// Record one more enclosing component while the error unwinds (innermost first).
    pub fn within(mut self, name: &'static str) -> TypeError {
        if !name.is_empty() {
            self.path.push(name);
        }
        self
    }
    /// Dotted path from the outermost component to the failing one (may be empty).
    pub fn path(&self) -> String {
        let v: Vec<&str> = self.path.iter().rev().copied().collect();
        v.join(".")
    }
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.ty, self.message)
        } else {
            write!(f, "{}: {}: {}", self.path(), self.ty, self.message)
        }
    }
}

impl std::error::Error for TypeError {}

fn shape(ty: &'static str, expected: &str, v: &Value) -> TypeError {
    TypeError::new(ty, format!("expected {expected}, found {}", v.kind_name()))
}

// ---- conversion trait and helpers ----------------------------------------------------------

/// Conversion between a typed view and its [`Value`] (implemented by every type of this
/// module, of [`crate::ops`] and of [`crate::events`], and by the plain Rust types used for
/// simple components: `Bytes` = OCTET STRING, `String` = character string, `i64` = INTEGER,
/// `bool` = BOOLEAN, `Value` = kept as it is, `Vec<T>` = SEQUENCE OF).
pub trait Typed: Sized {
    fn from_value(v: &Value) -> Result<Self, TypeError>;
    fn to_value(&self) -> Value;
}

impl Typed for Bytes {
    fn from_value(v: &Value) -> Result<Self, TypeError> {
        match v {
            Value::Octets(b) => Ok(b.clone()),
            _ => Err(shape("OCTET STRING", "OCTET STRING", v)),
        }
    }
    fn to_value(&self) -> Value {
        Value::Octets(self.clone())
    }
}

impl Typed for String {
    fn from_value(v: &Value) -> Result<Self, TypeError> {
        match v {
            Value::Str(b) => String::from_utf8(b.to_vec())
                .map_err(|_| TypeError::new("character string", "octets are not UTF-8")),
            _ => Err(shape("character string", "a character string", v)),
        }
    }
    fn to_value(&self) -> Value {
        Value::str(self)
    }
}

impl Typed for i64 {
    fn from_value(v: &Value) -> Result<Self, TypeError> {
        match v {
            Value::Integer(i) => Ok(*i),
            _ => Err(shape("INTEGER", "INTEGER", v)),
        }
    }
    fn to_value(&self) -> Value {
        Value::Integer(*self)
    }
}

impl Typed for bool {
    fn from_value(v: &Value) -> Result<Self, TypeError> {
        match v {
            Value::Boolean(b) => Ok(*b),
            _ => Err(shape("BOOLEAN", "BOOLEAN", v)),
        }
    }
    fn to_value(&self) -> Value {
        Value::Boolean(*self)
    }
}

impl Typed for Value {
    fn from_value(v: &Value) -> Result<Self, TypeError> {
        Ok(v.clone())
    }
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<T: Typed> Typed for Vec<T> {
    fn from_value(v: &Value) -> Result<Self, TypeError> {
        match v {
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| T::from_value(it).map_err(|e| e.within(index_name(i))))
                .collect(),
            _ => Err(shape("SEQUENCE OF", "SEQUENCE OF", v)),
        }
    }
    fn to_value(&self) -> Value {
        Value::List(self.iter().map(T::to_value).collect())
    }
}

fn index_name(i: usize) -> &'static str {
    const N: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    ];
    N.get(i).copied().unwrap_or("[n]")
}

/// The named values of an ENUMERATED type (through tags), else an empty slice.
pub fn enum_table(id: TypeId) -> &'static [(&'static str, i64)] {
    match &def(schema::untagged(id)).kind {
        Kind::Enumerated(t) => t,
        _ => &[],
    }
}

fn enum_name(id: TypeId, n: i64) -> Option<&'static str> {
    enum_table(id)
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(s, _)| *s)
}

fn enum_value(id: TypeId, name: &str) -> Option<i64> {
    enum_table(id)
        .iter()
        .find(|(s, _)| *s == name)
        .map(|(_, v)| *v)
}

// ---- SEQUENCE split / rebuild ---------------------------------------------------------------

/// The components of a SEQUENCE value split into the ones a typed struct reads (by name)
/// and `rest`: every other component, in wire order.
///
/// Placement rule for unknown elements (members named [`UNKNOWN`]) so that a rebuilt value
/// keeps the wire order exactly: an unknown element kept in `rest` under the name
/// [`UNKNOWN`] is re-emitted just before the next *named* entry of `rest` (or at the end
/// when none follows). When the element was followed on the wire by a component that the
/// struct types, it is kept in `rest` under that component's name instead (a typed
/// component's name never names a real member of `rest`) and re-emitted right before it.
pub struct Fields<'a> {
    ty: &'static str,
    typed: Vec<(&'static str, &'a Value)>,
    pub rest: Vec<Member>,
}

impl<'a> Fields<'a> {
    pub fn new(
        v: &'a Value,
        id: TypeId,
        typed_names: &[&'static str],
    ) -> Result<Fields<'a>, TypeError> {
        let tname = def(id).name;
        let Value::Seq(members) = v else {
            return Err(shape(tname, "SEQUENCE", v));
        };
        let mut typed: Vec<(&'static str, &'a Value)> = Vec::with_capacity(typed_names.len());
        let mut rest = Vec::new();
        for (i, m) in members.iter().enumerate() {
            if m.name == UNKNOWN {
                let next = members[i + 1..].iter().find(|n| n.name != UNKNOWN);
                let name = match next {
                    Some(n) if typed_names.contains(&n.name) => n.name,
                    _ => UNKNOWN,
                };
                rest.push(Member {
                    name,
                    value: m.value.clone(),
                });
            } else if typed_names.contains(&m.name) {
                if typed.iter().any(|(n, _)| *n == m.name) {
                    return Err(TypeError::new(
                        tname,
                        format!("component `{}` appears twice", m.name),
                    ));
                }
                typed.push((m.name, &m.value));
            } else {
                rest.push(m.clone());
            }
        }
        Ok(Fields {
            ty: tname,
            typed,
            rest,
        })
    }

    /// The value of the typed component `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.typed.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// A mandatory component.
    pub fn req<T: Typed>(&self, name: &'static str) -> Result<T, TypeError> {
        match self.get(name) {
            Some(v) => T::from_value(v).map_err(|e| e.within(name)),
            None => Err(TypeError::new(
                self.ty,
                format!("mandatory component `{name}` is missing"),
            )),
        }
    }

    /// An optional component.
    pub fn opt<T: Typed>(&self, name: &'static str) -> Result<Option<T>, TypeError> {
        self.get(name)
            .map(|v| T::from_value(v).map_err(|e| e.within(name)))
            .transpose()
    }
}

/// Rebuilds a SEQUENCE value in schema order from typed components and a `rest` list
/// (placement rule: see [`Fields`]).
pub struct Build {
    id: TypeId,
    typed_names: &'static [&'static str],
    typed: Vec<Member>,
}

impl Build {
    pub fn new(id: TypeId, typed_names: &'static [&'static str]) -> Build {
        Build {
            id,
            typed_names,
            typed: Vec::with_capacity(typed_names.len()),
        }
    }
    pub fn put<T: Typed>(&mut self, name: &'static str, v: &T) {
        self.typed.push(Member {
            name,
            value: v.to_value(),
        });
    }
    pub fn put_opt<T: Typed>(&mut self, name: &'static str, v: &Option<T>) {
        if let Some(v) = v {
            self.put(name, v);
        }
    }
    pub fn put_value(&mut self, name: &'static str, v: Value) {
        self.typed.push(Member { name, value: v });
    }
    pub fn finish(mut self, rest: &[Member]) -> Value {
        let fields = schema::fields(self.id);
        let mut out = Vec::with_capacity(self.typed.len() + rest.len());
        let mut done = vec![false; rest.len()];
        for f in fields {
            if self.typed_names.contains(&f.name) {
                // unknown elements that came right before this typed component
                for (j, m) in rest.iter().enumerate() {
                    if !done[j] && m.name == f.name {
                        out.push(Member {
                            name: UNKNOWN,
                            value: m.value.clone(),
                        });
                        done[j] = true;
                    }
                }
                if let Some(p) = self.typed.iter().position(|m| m.name == f.name) {
                    out.push(self.typed.swap_remove(p));
                }
            } else {
                for j in 0..rest.len() {
                    if done[j] || rest[j].name != f.name {
                        continue;
                    }
                    for k in 0..j {
                        if !done[k] && rest[k].name == UNKNOWN {
                            out.push(rest[k].clone());
                            done[k] = true;
                        }
                    }
                    out.push(rest[j].clone());
                    done[j] = true;
                }
            }
        }
        for (j, m) in rest.iter().enumerate() {
            if !done[j] {
                let name = if self.typed_names.contains(&m.name) {
                    UNKNOWN
                } else {
                    m.name
                };
                out.push(Member {
                    name,
                    value: m.value.clone(),
                });
            }
        }
        // typed members whose name the type does not define: left for the encoder to report
        out.append(&mut self.typed);
        Value::Seq(out)
    }
}

/// Defines a struct with typed fields for some components of a SEQUENCE type plus
/// `rest: Vec<Member>`, with `new` (required fields), `from_value`, `to_value` and
/// [`Typed`].
macro_rules! typed_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = $ty:expr;
        required { $( $(#[$rm:meta])* $rf:ident : $rt:ty = $rn:literal ),* $(,)? }
        optional { $( $(#[$om:meta])* $of:ident : $ot:ty = $on:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$rm])* #[doc = concat!("`", $rn, "`")] pub $rf: $rt, )*
            $( $(#[$om])* #[doc = concat!("`", $on, "` (OPTIONAL)")] pub $of: Option<$ot>, )*
            /// The components not typed above and unknown elements, in wire order
            /// (re-emitted in schema order by `to_value`).
            pub rest: Vec<$crate::value::Member>,
        }

        #[allow(clippy::new_without_default)]
        impl $name {
            /// The ASN.1 type.
            pub const TYPE: $crate::schema::TypeId = $ty;
            /// The components this view types (every other one is kept in `rest`).
            pub const TYPED: &'static [&'static str] = &[$($rn,)* $($on,)*];

            /// The required components; every optional one absent.
            #[allow(clippy::too_many_arguments)]
            pub fn new($($rf: $rt),*) -> $name {
                $name { $($rf,)* $($of: None,)* rest: Vec::new() }
            }

            pub fn from_value(
                v: &$crate::value::Value,
            ) -> Result<$name, $crate::types::TypeError> {
                let r = $crate::types::Fields::new(v, $ty, Self::TYPED)?;
                Ok($name {
                    $($rf: r.req($rn)?,)*
                    $($of: r.opt($on)?,)*
                    rest: r.rest,
                })
            }

            pub fn to_value(&self) -> $crate::value::Value {
                #[allow(unused_mut)]
                let mut w = $crate::types::Build::new($ty, Self::TYPED);
                $( w.put($rn, &self.$rf); )*
                $( w.put_opt($on, &self.$of); )*
                w.finish(&self.rest)
            }
        }

        impl $crate::types::Typed for $name {
            fn from_value(
                v: &$crate::value::Value,
            ) -> Result<$name, $crate::types::TypeError> {
                $name::from_value(v)
            }
            fn to_value(&self) -> $crate::value::Value {
                $name::to_value(self)
            }
        }
    };
}
pub(crate) use typed_struct;

/// An ENUMERATED type as a Rust enum with `Other(n)` for values the standard does not name
/// (enumerations are open: house habit 5).
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident = $asn:literal {
            $( $(#[$vm:meta])* $v:ident = $n:literal $s:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vm])* #[doc = concat!("`", $s, "` (", stringify!($n), ")")] $v, )*
            /// A value the standard does not name.
            Other(i64),
        }

        impl $name {
            pub fn from_i64(n: i64) -> $name {
                match n {
                    $( $n => $name::$v, )*
                    o => $name::Other(o),
                }
            }
            pub fn to_i64(self) -> i64 {
                match self {
                    $( $name::$v => $n, )*
                    $name::Other(o) => o,
                }
            }
            /// The ASN.1 name of the value, when it has one.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$v => Some($s), )*
                    $name::Other(_) => None,
                }
            }
            pub fn from_name(s: &str) -> Option<$name> {
                match s {
                    $( $s => Some($name::$v), )*
                    _ => None,
                }
            }
            pub fn from_value(
                v: &$crate::value::Value,
            ) -> Result<$name, $crate::types::TypeError> {
                match v {
                    $crate::value::Value::Enumerated(n) => Ok($name::from_i64(*n)),
                    _ => Err($crate::types::TypeError::new($asn, "expected ENUMERATED")),
                }
            }
            pub fn to_value(&self) -> $crate::value::Value {
                $crate::value::Value::Enumerated(self.to_i64())
            }
        }

        impl $crate::types::Typed for $name {
            fn from_value(
                v: &$crate::value::Value,
            ) -> Result<$name, $crate::types::TypeError> {
                $name::from_value(v)
            }
            fn to_value(&self) -> $crate::value::Value {
                $name::to_value(self)
            }
        }
    };
}
pub(crate) use open_enum;

/// Implements [`Typed`] by the inherent `from_value` / `to_value`.
macro_rules! typed_by_inherent {
    ($($t:ty),* $(,)?) => {$(
        impl Typed for $t {
            fn from_value(v: &Value) -> Result<Self, TypeError> {
                <$t>::from_value(v)
            }
            fn to_value(&self) -> Value {
                <$t>::to_value(self)
            }
        }
    )*};
}

fn choice<'v>(tname: &'static str, v: &'v Value) -> Result<(&'static str, &'v Value), TypeError> {
    match v {
        Value::Choice(n, inner) => Ok((n, inner)),
        _ => Err(shape(tname, "a CHOICE alternative", v)),
    }
}

fn text(tname: &'static str, v: &Value) -> Result<String, TypeError> {
    match v {
        Value::Str(b) => String::from_utf8(b.to_vec())
            .map_err(|_| TypeError::new(tname, "string octets are not UTF-8")),
        _ => Err(shape(tname, "a character string", v)),
    }
}

fn octets(tname: &'static str, v: &Value) -> Result<Bytes, TypeError> {
    match v {
        Value::Octets(b) => Ok(b.clone()),
        _ => Err(shape(tname, "OCTET STRING", v)),
    }
}

// ---- device identifiers ----------------------------------------------------------------------

/// A closed set of ASN.1 alternative names (no numbers on the wire: the TON alternatives
/// of `PublicTON` / `PrivateTON` are CHOICE alternatives), with `name` and `from_name`.
macro_rules! named_alternatives {
    ($(#[$m:meta])* pub enum $t:ident { $($v:ident = $n:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $t { $($v),* }

        impl $t {
            /// The ASN.1 alternative name.
            pub fn name(self) -> &'static str {
                match self { $($t::$v => $n),* }
            }
            pub fn from_name(s: &str) -> Option<$t> {
                match s { $($n => Some($t::$v),)* _ => None }
            }
        }
    };
}

named_alternatives! {
    /// Type of number of a public number (`PublicTON`).
    pub enum PublicTon {
        Unknown = "unknown",
        International = "international",
        National = "national",
        NetworkSpecific = "networkspecific",
        Subscriber = "subscriber",
        Abbreviated = "abbreviated",
    }
}

named_alternatives! {
    /// Type of number of a private number (`PrivateTON`).
    pub enum PrivateTon {
        Unknown = "unknown",
        Level3RegionalNumber = "level3RegionalNumber",
        Level2RegionalNumber = "level2RegionalNumber",
        Level1RegionalNumber = "level1RegionalNumber",
        PtnSpecificNumber = "pTNSpecificNumber",
        LocalNumber = "localNumber",
        Abbreviated = "abbreviated",
    }
}

/// `DeviceID.deviceIdentifier`: every form of ECMA-285 §12.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceIdentifier {
    /// `dialingNumber [0] IMPLICIT NumberDigits` (the usual form: "201").
    DialingNumber(String),
    /// `deviceNumber [1] IMPLICIT DeviceNumber` (switch-internal).
    DeviceNumber(i64),
    /// `implicitPublic [2] IMPLICIT NumberDigits`.
    ImplicitPublic(String),
    /// `explicitPublic [3] PublicTON`.
    ExplicitPublic { ton: PublicTon, number: String },
    /// `implicitPrivate [4] IMPLICIT NumberDigits`.
    ImplicitPrivate(String),
    /// `explicitPrivate [5] PrivateTON`.
    ExplicitPrivate { ton: PrivateTon, number: String },
    /// `other [6] IMPLICIT OtherPlan`.
    Other(Bytes),
    /// An alternative this edition does not define, as its whole TLV.
    Unknown(Bytes),
}

impl DeviceIdentifier {
    pub fn from_value(v: &Value) -> Result<DeviceIdentifier, TypeError> {
        const T: &str = "DeviceID.deviceIdentifier";
        if let Value::Raw(b) = v {
            return Ok(DeviceIdentifier::Unknown(b.clone()));
        }
        let (alt, inner) = choice(T, v)?;
        let e = |e: TypeError| e.within(alt);
        Ok(match alt {
            "dialingNumber" => DeviceIdentifier::DialingNumber(text(T, inner).map_err(e)?),
            "deviceNumber" => DeviceIdentifier::DeviceNumber(i64::from_value(inner).map_err(e)?),
            "implicitPublic" => DeviceIdentifier::ImplicitPublic(text(T, inner).map_err(e)?),
            "implicitPrivate" => DeviceIdentifier::ImplicitPrivate(text(T, inner).map_err(e)?),
            "explicitPublic" => {
                let (t, n) = choice("PublicTON", inner).map_err(e)?;
                let ton = PublicTon::from_name(t).ok_or_else(|| {
                    e(TypeError::new(
                        "PublicTON",
                        format!("unknown alternative `{t}`"),
                    ))
                })?;
                DeviceIdentifier::ExplicitPublic {
                    ton,
                    number: text("PublicTON", n).map_err(|x| e(x.within(t)))?,
                }
            }
            "explicitPrivate" => {
                let (t, n) = choice("PrivateTON", inner).map_err(e)?;
                let ton = PrivateTon::from_name(t).ok_or_else(|| {
                    e(TypeError::new(
                        "PrivateTON",
                        format!("unknown alternative `{t}`"),
                    ))
                })?;
                DeviceIdentifier::ExplicitPrivate {
                    ton,
                    number: text("PrivateTON", n).map_err(|x| e(x.within(t)))?,
                }
            }
            "other" => DeviceIdentifier::Other(octets(T, inner).map_err(e)?),
            _ => return Err(TypeError::new(T, format!("unknown alternative `{alt}`"))),
        })
    }

    pub fn to_value(&self) -> Value {
        match self {
            DeviceIdentifier::DialingNumber(s) => Value::alt("dialingNumber", Value::str(s)),
            DeviceIdentifier::DeviceNumber(n) => Value::alt("deviceNumber", Value::Integer(*n)),
            DeviceIdentifier::ImplicitPublic(s) => Value::alt("implicitPublic", Value::str(s)),
            DeviceIdentifier::ExplicitPublic { ton, number } => {
                Value::alt("explicitPublic", Value::alt(ton.name(), Value::str(number)))
            }
            DeviceIdentifier::ImplicitPrivate(s) => Value::alt("implicitPrivate", Value::str(s)),
            DeviceIdentifier::ExplicitPrivate { ton, number } => Value::alt(
                "explicitPrivate",
                Value::alt(ton.name(), Value::str(number)),
            ),
            DeviceIdentifier::Other(b) => Value::alt("other", Value::Octets(b.clone())),
            DeviceIdentifier::Unknown(b) => Value::Raw(b.clone()),
        }
    }
}

/// `DeviceID ::= SEQUENCE { deviceIdentifier CHOICE {…}, privateNumber [0] OPTIONAL,
/// privateName [1] OPTIONAL, mediaCallCharacteristics OPTIONAL }`.
///
/// Unknown elements inside a DeviceID are not kept: `from_value` reports them as an error.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceId {
    pub id: DeviceIdentifier,
    /// `privateNumber [0] NumberDigits`.
    pub private_number: Option<String>,
    /// `privateName [1] IA5String`.
    pub private_name: Option<String>,
    /// `mediaCallCharacteristics MediaCallCharacteristics`, as its value.
    pub media_call_characteristics: Option<Value>,
}

impl DeviceId {
    /// A DeviceID with a `dialingNumber`.
    pub fn dialing(number: &str) -> DeviceId {
        DeviceId::from(DeviceIdentifier::DialingNumber(number.to_owned()))
    }

    /// The digits of any string form (dialing, implicit/explicit public/private);
    /// `None` for deviceNumber, other and unknown forms.
    pub fn number(&self) -> Option<&str> {
        match &self.id {
            DeviceIdentifier::DialingNumber(s)
            | DeviceIdentifier::ImplicitPublic(s)
            | DeviceIdentifier::ImplicitPrivate(s)
            | DeviceIdentifier::ExplicitPublic { number: s, .. }
            | DeviceIdentifier::ExplicitPrivate { number: s, .. } => Some(s),
            _ => None,
        }
    }

    pub fn from_value(v: &Value) -> Result<DeviceId, TypeError> {
        const T: &str = "DeviceID";
        let Value::Seq(ms) = v else {
            return Err(shape(T, "SEQUENCE", v));
        };
        let mut id = None;
        let mut d = DeviceId::from(DeviceIdentifier::Other(Bytes::new()));
        for m in ms {
            match m.name {
                "deviceIdentifier" if id.is_none() => {
                    id = Some(
                        DeviceIdentifier::from_value(&m.value)
                            .map_err(|e| e.within("deviceIdentifier"))?,
                    )
                }
                "privateNumber" if d.private_number.is_none() => {
                    d.private_number =
                        Some(text(T, &m.value).map_err(|e| e.within("privateNumber"))?)
                }
                "privateName" if d.private_name.is_none() => {
                    d.private_name = Some(text(T, &m.value).map_err(|e| e.within("privateName"))?)
                }
                "mediaCallCharacteristics" if d.media_call_characteristics.is_none() => {
                    d.media_call_characteristics = Some(m.value.clone())
                }
                UNKNOWN => return Err(TypeError::new(T, "unknown element")),
                n => return Err(TypeError::new(T, format!("unexpected component `{n}`"))),
            }
        }
        d.id = id.ok_or_else(|| {
            TypeError::new(T, "mandatory component `deviceIdentifier` is missing")
        })?;
        Ok(d)
    }

    pub fn to_value(&self) -> Value {
        let mut m = vec![Member {
            name: "deviceIdentifier",
            value: self.id.to_value(),
        }];
        if let Some(s) = &self.private_number {
            m.push(Member {
                name: "privateNumber",
                value: Value::str(s),
            });
        }
        if let Some(s) = &self.private_name {
            m.push(Member {
                name: "privateName",
                value: Value::str(s),
            });
        }
        if let Some(v) = &self.media_call_characteristics {
            m.push(Member {
                name: "mediaCallCharacteristics",
                value: v.clone(),
            });
        }
        Value::Seq(m)
    }
}

impl From<DeviceIdentifier> for DeviceId {
    fn from(id: DeviceIdentifier) -> DeviceId {
        DeviceId {
            id,
            private_number: None,
            private_name: None,
            media_call_characteristics: None,
        }
    }
}

/// The party wrappers `CallingDeviceID`, `CalledDeviceID`, `SubjectDeviceID`,
/// `AssociatedCallingDeviceID`, `AssociatedCalledDeviceID`, `NetworkCallingDeviceID`,
/// `NetworkCalledDeviceID` (all `CHOICE { deviceIdentifier DeviceID, notKnown [7] IMPLICIT
/// NULL, restricted [8] IMPLICIT NULL }` under their own application tag).
#[derive(Debug, Clone, PartialEq)]
pub enum Party {
    Device(DeviceId),
    NotKnown,
    Restricted,
}

impl Party {
    /// A party with a `dialingNumber`.
    pub fn dialing(number: &str) -> Party {
        Party::Device(DeviceId::dialing(number))
    }
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Party::Device(d) => Some(d),
            _ => None,
        }
    }
    /// The digits of the device, when known and in a string form.
    pub fn number(&self) -> Option<&str> {
        self.device().and_then(DeviceId::number)
    }

    pub fn from_value(v: &Value) -> Result<Party, TypeError> {
        Party::from_alts(v, "deviceIdentifier", "party (SubjectDeviceID …)")
    }

    pub fn to_value(&self) -> Value {
        self.to_alts("deviceIdentifier")
    }

    /// Same shape with another name for the device alternative (`ConnectionList` endpoint
    /// and associatedNID use `deviceID`).
    pub(crate) fn from_alts(
        v: &Value,
        device_alt: &str,
        tname: &'static str,
    ) -> Result<Party, TypeError> {
        let (alt, inner) = choice(tname, v)?;
        match alt {
            a if a == device_alt => Ok(Party::Device(
                DeviceId::from_value(inner).map_err(|e| e.within(a))?,
            )),
            "notKnown" => Ok(Party::NotKnown),
            "restricted" => Ok(Party::Restricted),
            _ => Err(TypeError::new(
                tname,
                format!("unknown alternative `{alt}`"),
            )),
        }
    }

    pub(crate) fn to_alts(&self, device_alt: &'static str) -> Value {
        match self {
            Party::Device(d) => Value::alt(device_alt, d.to_value()),
            Party::NotKnown => Value::alt("notKnown", Value::Null),
            Party::Restricted => Value::alt("restricted", Value::Null),
        }
    }
}

/// `RedirectionDeviceID ::= [APPLICATION 4] CHOICE { numberdialed DeviceID, notKnown [7],
/// notRequired [8], notSpecified [9], restricted [10] }`.
#[derive(Debug, Clone, PartialEq)]
pub enum Redirection {
    NumberDialed(DeviceId),
    NotKnown,
    NotRequired,
    NotSpecified,
    Restricted,
}

impl Redirection {
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Redirection::NumberDialed(d) => Some(d),
            _ => None,
        }
    }

    pub fn from_value(v: &Value) -> Result<Redirection, TypeError> {
        const T: &str = "RedirectionDeviceID";
        let (alt, inner) = choice(T, v)?;
        Ok(match alt {
            "numberdialed" => {
                Redirection::NumberDialed(DeviceId::from_value(inner).map_err(|e| e.within(alt))?)
            }
            "notKnown" => Redirection::NotKnown,
            "notRequired" => Redirection::NotRequired,
            "notSpecified" => Redirection::NotSpecified,
            "restricted" => Redirection::Restricted,
            _ => return Err(TypeError::new(T, format!("unknown alternative `{alt}`"))),
        })
    }

    pub fn to_value(&self) -> Value {
        let n = |a| Value::alt(a, Value::Null);
        match self {
            Redirection::NumberDialed(d) => Value::alt("numberdialed", d.to_value()),
            Redirection::NotKnown => n("notKnown"),
            Redirection::NotRequired => n("notRequired"),
            Redirection::NotSpecified => n("notSpecified"),
            Redirection::Restricted => n("restricted"),
        }
    }
}

// ---- call and connection identifiers --------------------------------------------------------

/// `CallID ::= OCTET STRING` (switch-assigned, opaque).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId(pub Bytes);

impl CallId {
    pub fn new(b: impl AsRef<[u8]>) -> CallId {
        CallId(Bytes::copy_from_slice(b.as_ref()))
    }
    pub fn from_value(v: &Value) -> Result<CallId, TypeError> {
        octets("CallID", v).map(CallId)
    }
    pub fn to_value(&self) -> Value {
        Value::Octets(self.0.clone())
    }
}

/// `LocalDeviceID ::= CHOICE { staticID DeviceID, dynamicID [3] IMPLICIT OCTET STRING }`.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalDeviceId {
    Static(DeviceId),
    Dynamic(Bytes),
}

impl LocalDeviceId {
    pub fn from_value(v: &Value) -> Result<LocalDeviceId, TypeError> {
        const T: &str = "LocalDeviceID";
        let (alt, inner) = choice(T, v)?;
        match alt {
            "staticID" => Ok(LocalDeviceId::Static(
                DeviceId::from_value(inner).map_err(|e| e.within(alt))?,
            )),
            "dynamicID" => Ok(LocalDeviceId::Dynamic(
                octets(T, inner).map_err(|e| e.within(alt))?,
            )),
            _ => Err(TypeError::new(T, format!("unknown alternative `{alt}`"))),
        }
    }
    pub fn to_value(&self) -> Value {
        match self {
            LocalDeviceId::Static(d) => Value::alt("staticID", d.to_value()),
            LocalDeviceId::Dynamic(b) => Value::alt("dynamicID", Value::Octets(b.clone())),
        }
    }
}

/// `ConnectionID ::= [APPLICATION 11] CHOICE { callID [0] IMPLICIT CallID, deviceID [1]
/// LocalDeviceID, both SEQUENCE { callID, deviceID } }`: `both` when both are present.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionId {
    pub call: Option<CallId>,
    pub device: Option<LocalDeviceId>,
}

impl ConnectionId {
    /// The `both` form with a static device.
    pub fn new(call: impl AsRef<[u8]>, device: DeviceId) -> ConnectionId {
        ConnectionId {
            call: Some(CallId::new(call)),
            device: Some(LocalDeviceId::Static(device)),
        }
    }
    /// The `both` form with a static device given by its dialing number.
    pub fn dialing(call: impl AsRef<[u8]>, number: &str) -> ConnectionId {
        ConnectionId::new(call, DeviceId::dialing(number))
    }
    /// The `callID` form.
    pub fn call_only(call: impl AsRef<[u8]>) -> ConnectionId {
        ConnectionId {
            call: Some(CallId::new(call)),
            device: None,
        }
    }
    /// The `deviceID` form.
    pub fn device_only(device: LocalDeviceId) -> ConnectionId {
        ConnectionId {
            call: None,
            device: Some(device),
        }
    }
    /// The call id octets.
    pub fn call_id(&self) -> Option<&Bytes> {
        self.call.as_ref().map(|c| &c.0)
    }
    /// The static device, if any.
    pub fn static_device(&self) -> Option<&DeviceId> {
        match &self.device {
            Some(LocalDeviceId::Static(d)) => Some(d),
            _ => None,
        }
    }
    /// The digits of the static device.
    pub fn device_number(&self) -> Option<&str> {
        self.static_device().and_then(DeviceId::number)
    }

    pub fn from_value(v: &Value) -> Result<ConnectionId, TypeError> {
        const T: &str = "ConnectionID";
        let (alt, inner) = choice(T, v)?;
        match alt {
            "callID" => Ok(ConnectionId {
                call: Some(CallId::from_value(inner).map_err(|e| e.within(alt))?),
                device: None,
            }),
            "deviceID" => Ok(ConnectionId {
                call: None,
                device: Some(LocalDeviceId::from_value(inner).map_err(|e| e.within(alt))?),
            }),
            "both" => {
                let Value::Seq(ms) = inner else {
                    return Err(shape(T, "SEQUENCE", inner).within(alt));
                };
                let mut c = ConnectionId {
                    call: None,
                    device: None,
                };
                for m in ms {
                    match m.name {
                        "callID" if c.call.is_none() => {
                            c.call = Some(
                                CallId::from_value(&m.value)
                                    .map_err(|e| e.within("callID").within(alt))?,
                            )
                        }
                        "deviceID" if c.device.is_none() => {
                            c.device = Some(
                                LocalDeviceId::from_value(&m.value)
                                    .map_err(|e| e.within("deviceID").within(alt))?,
                            )
                        }
                        _ => return Err(TypeError::new(T, "unexpected element in `both`")),
                    }
                }
                match (&c.call, &c.device) {
                    (Some(_), Some(_)) => Ok(c),
                    (None, None) => Err(TypeError::new(T, "neither callID nor deviceID")),
                    (None, _) => Err(TypeError::new(T, "`both` without callID")),
                    (_, None) => Err(TypeError::new(T, "`both` without deviceID")),
                }
            }
            _ => Err(TypeError::new(T, format!("unknown alternative `{alt}`"))),
        }
    }

    /// The CHOICE value, or an error when neither part is present.
    pub fn try_to_value(&self) -> Result<Value, TypeError> {
        match (&self.call, &self.device) {
            (Some(c), Some(d)) => Ok(Value::alt(
                "both",
                Value::seq([("callID", c.to_value()), ("deviceID", d.to_value())]),
            )),
            (Some(c), None) => Ok(Value::alt("callID", c.to_value())),
            (None, Some(d)) => Ok(Value::alt("deviceID", d.to_value())),
            (None, None) => Err(TypeError::new(
                "ConnectionID",
                "neither callID nor deviceID",
            )),
        }
    }

    /// The CHOICE value; with neither part present, `Value::Null`, which the encoder
    /// rejects (use [`ConnectionId::try_to_value`] to get the error here).
    pub fn to_value(&self) -> Value {
        self.try_to_value().unwrap_or(Value::Null)
    }
}

/// One entry of `ConnectionList ::= SEQUENCE OF SEQUENCE { newConnection [0] ConnectionID
/// OPTIONAL, oldConnection [1] OPTIONAL, endpoint [2] CHOICE { deviceID DeviceID, notKnown
/// NULL, restricted [1] NULL } OPTIONAL, associatedNID [3] CHOICE { deviceID, notKnown }
/// OPTIONAL, resultingConnectionInfo ConnectionInformation OPTIONAL }`.
///
/// `endpoint` and `associatedNID` are read as [`Party`] (their device alternative is named
/// `deviceID`; associatedNID has no `restricted`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionListEntry {
    pub new_connection: Option<ConnectionId>,
    pub old_connection: Option<ConnectionId>,
    pub endpoint: Option<Party>,
    pub associated_nid: Option<Party>,
    pub resulting_connection_info: Option<Value>,
    /// Unknown elements (placement rule: [`Fields`]).
    pub rest: Vec<Member>,
}

/// `ConnectionList` as the typed fields use it.
pub type ConnectionList = Vec<ConnectionListEntry>;

impl ConnectionListEntry {
    const TYPED: &'static [&'static str] = &[
        "newConnection",
        "oldConnection",
        "endpoint",
        "associatedNID",
        "resultingConnectionInfo",
    ];
    /// The SEQUENCE type of one entry.
    fn entry_type() -> TypeId {
        match &def(schema::untagged(ty::ConnectionList)).kind {
            Kind::SequenceOf(e) => *e,
            _ => ty::ConnectionList,
        }
    }

    pub fn from_value(v: &Value) -> Result<ConnectionListEntry, TypeError> {
        let r = Fields::new(v, Self::entry_type(), Self::TYPED)?;
        let party = |name: &'static str| -> Result<Option<Party>, TypeError> {
            r.get(name)
                .map(|v| {
                    Party::from_alts(v, "deviceID", "ConnectionList.endpoint")
                        .map_err(|e| e.within(name))
                })
                .transpose()
        };
        Ok(ConnectionListEntry {
            new_connection: r.opt("newConnection")?,
            old_connection: r.opt("oldConnection")?,
            endpoint: party("endpoint")?,
            associated_nid: party("associatedNID")?,
            resulting_connection_info: r.opt("resultingConnectionInfo")?,
            rest: r.rest,
        })
    }

    pub fn to_value(&self) -> Value {
        let mut w = Build::new(Self::entry_type(), Self::TYPED);
        w.put_opt("newConnection", &self.new_connection);
        w.put_opt("oldConnection", &self.old_connection);
        if let Some(p) = &self.endpoint {
            w.put_value("endpoint", p.to_alts("deviceID"));
        }
        if let Some(p) = &self.associated_nid {
            w.put_value("associatedNID", p.to_alts("deviceID"));
        }
        w.put_opt("resultingConnectionInfo", &self.resulting_connection_info);
        w.finish(&self.rest)
    }
}

/// `CSTAObject ::= CHOICE { deviceObject DeviceID, callObject ConnectionID }`.
#[derive(Debug, Clone, PartialEq)]
pub enum CstaObject {
    Device(DeviceId),
    Call(ConnectionId),
}

impl CstaObject {
    pub fn from_value(v: &Value) -> Result<CstaObject, TypeError> {
        const T: &str = "CSTAObject";
        let (alt, inner) = choice(T, v)?;
        match alt {
            "deviceObject" => Ok(CstaObject::Device(
                DeviceId::from_value(inner).map_err(|e| e.within(alt))?,
            )),
            "callObject" => Ok(CstaObject::Call(
                ConnectionId::from_value(inner).map_err(|e| e.within(alt))?,
            )),
            _ => Err(TypeError::new(T, format!("unknown alternative `{alt}`"))),
        }
    }
    pub fn to_value(&self) -> Value {
        match self {
            CstaObject::Device(d) => Value::alt("deviceObject", d.to_value()),
            CstaObject::Call(c) => Value::alt("callObject", c.to_value()),
        }
    }
}

/// `MonitorCrossRefID ::= [APPLICATION 21] IMPLICIT OCTET STRING`: ties event reports to
/// the monitor that MonitorStart created.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MonitorCrossRefId(pub Bytes);

impl MonitorCrossRefId {
    pub fn new(b: impl AsRef<[u8]>) -> MonitorCrossRefId {
        MonitorCrossRefId(Bytes::copy_from_slice(b.as_ref()))
    }
    pub fn from_value(v: &Value) -> Result<MonitorCrossRefId, TypeError> {
        octets("MonitorCrossRefID", v).map(MonitorCrossRefId)
    }
    pub fn to_value(&self) -> Value {
        Value::Octets(self.0.clone())
    }
}

open_enum! {
    /// `LocalConnectionState ::= [APPLICATION 14] IMPLICIT ENUMERATED`.
    pub enum LocalConnectionState = "LocalConnectionState" {
        Null = 0 "null",
        Initiated = 1 "initiated",
        Alerting = 2 "alerting",
        Connected = 3 "connected",
        Hold = 4 "hold",
        Queued = 5 "queued",
        Fail = 6 "fail",
    }
}

/// `EventCause ::= ENUMERATED` (open: unknown values are kept). Names come from the schema
/// table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventCause(pub i64);

impl EventCause {
    pub const CALL_CANCELLED: EventCause = EventCause(5);
    pub const CONSULTATION: EventCause = EventCause(37);
    pub const CONFERENCE: EventCause = EventCause(63);
    pub const MAKE_CALL: EventCause = EventCause(44);
    pub const NEW_CALL: EventCause = EventCause(22);
    pub const NORMAL_CLEARING: EventCause = EventCause(48);
    pub const NORMAL: EventCause = EventCause(78);
    pub const TRANSFER: EventCause = EventCause(32);
    pub const SINGLE_STEP_TRANSFER: EventCause = EventCause(52);
    pub const BUSY: EventCause = EventCause(3);
    pub const DEST_NOT_OBTAINABLE: EventCause = EventCause(13);

    /// The ASN.1 name (`newCall`), when the value is one the standard names.
    pub fn name(self) -> Option<&'static str> {
        enum_name(ty::EventCause, self.0)
    }
    pub fn from_name(name: &str) -> Option<EventCause> {
        enum_value(ty::EventCause, name).map(EventCause)
    }
    pub fn from_value(v: &Value) -> Result<EventCause, TypeError> {
        match v {
            Value::Enumerated(n) => Ok(EventCause(*n)),
            _ => Err(shape("EventCause", "ENUMERATED", v)),
        }
    }
    pub fn to_value(&self) -> Value {
        Value::Enumerated(self.0)
    }
}

/// `CorrelatorData ::= OCTET STRING` (typed fields hold the octets).
pub type CorrelatorData = Bytes;
/// `UserData ::= [APPLICATION 29] OCTET STRING` (typed fields hold the octets).
pub type UserData = Bytes;

/// The octets of a CorrelatorData value.
pub fn correlator_data(v: &Value) -> Result<CorrelatorData, TypeError> {
    octets("CorrelatorData", v)
}
/// The octets of a UserData value.
pub fn user_data(v: &Value) -> Result<UserData, TypeError> {
    octets("UserData", v)
}

// ---- common arguments ----------------------------------------------------------------------

/// `CSTAPrivateData ::= CHOICE { string OCTET STRING, private NULL }`; vendors replace
/// `private` with their own ASN.1 (kept as its whole TLV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateData {
    String(Bytes),
    Private,
    /// A vendor alternative: the whole TLV as it came.
    Vendor(Bytes),
}

impl PrivateData {
    pub fn from_value(v: &Value) -> Result<PrivateData, TypeError> {
        const T: &str = "CSTAPrivateData";
        if let Value::Raw(b) = v {
            return Ok(PrivateData::Vendor(b.clone()));
        }
        let (alt, inner) = choice(T, v)?;
        match alt {
            "string" => Ok(PrivateData::String(
                octets(T, inner).map_err(|e| e.within(alt))?,
            )),
            "private" => Ok(PrivateData::Private),
            _ => Err(TypeError::new(T, format!("unknown alternative `{alt}`"))),
        }
    }
    pub fn to_value(&self) -> Value {
        match self {
            PrivateData::String(b) => Value::alt("string", Value::Octets(b.clone())),
            PrivateData::Private => Value::alt("private", Value::Null),
            PrivateData::Vendor(b) => Value::Raw(b.clone()),
        }
    }
}

/// `CSTACommonArguments ::= [APPLICATION 30] IMPLICIT SEQUENCE { security [0] IMPLICIT
/// CSTASecurityData OPTIONAL, privateData [1] IMPLICIT SEQUENCE OF CSTAPrivateData OPTIONAL }`
/// (the `extensions` component of most arguments, results and events).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommonArguments {
    /// `security`, as its value.
    pub security: Option<Value>,
    /// `privateData` (absent when empty).
    pub private_data: Vec<PrivateData>,
    /// Unknown elements, and `privateData` when it came present but empty.
    pub rest: Vec<Member>,
}

impl CommonArguments {
    /// Extensions carrying just private data.
    pub fn private(private_data: Vec<PrivateData>) -> CommonArguments {
        CommonArguments {
            private_data,
            ..CommonArguments::default()
        }
    }

    pub fn from_value(v: &Value) -> Result<CommonArguments, TypeError> {
        let empty_list = matches!(v.get("privateData"), Some(Value::List(l)) if l.is_empty());
        let typed: &[&'static str] = if empty_list {
            &["security"]
        } else {
            &["security", "privateData"]
        };
        let r = Fields::new(v, ty::CSTACommonArguments, typed)?;
        Ok(CommonArguments {
            security: r.opt("security")?,
            private_data: r.opt("privateData")?.unwrap_or_default(),
            rest: r.rest,
        })
    }

    pub fn to_value(&self) -> Value {
        // an empty list is not typed: `rest` may hold a present-but-empty privateData
        let typed: &'static [&'static str] = if self.private_data.is_empty() {
            &["security"]
        } else {
            &["security", "privateData"]
        };
        let mut w = Build::new(ty::CSTACommonArguments, typed);
        w.put_opt("security", &self.security);
        if !self.private_data.is_empty() {
            w.put("privateData", &self.private_data);
        }
        w.finish(&self.rest)
    }
}

// ---- errors of operations --------------------------------------------------------------------

/// `UniversalFailure` (the parameter of returnError `universalFailure`, local 1): the
/// CHOICE alternative (`operation`, `security`, `stateIncompatibility`,
/// `systemResourceAvailability`, `subscribedResourceAvailability`, `performanceManagement`,
/// `privateData`, `unspecified`) and the ENUMERATED value (0 for `unspecified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UniversalFailure {
    pub category: &'static str,
    pub value: i64,
}

impl UniversalFailure {
    /// The error code of universalFailure.
    pub const ERROR_CODE: i64 = crate::opcode::UNIVERSAL_FAILURE;

    /// From the alternative and value names, e.g. `("operation", "invalidDeviceID")`;
    /// `("unspecified", _)` gives the NULL alternative.
    pub fn from_names(category: &str, value: &str) -> Option<UniversalFailure> {
        let alt = schema::alternatives(ty::UniversalFailure)
            .iter()
            .find(|a| a.name == category)?;
        if alt.name == "unspecified" {
            return Some(UniversalFailure {
                category: alt.name,
                value: 0,
            });
        }
        Some(UniversalFailure {
            category: alt.name,
            value: enum_value(alt.ty, value)?,
        })
    }

    /// The name of the value within its category (`invalidDeviceID`).
    pub fn value_name(&self) -> Option<&'static str> {
        let alt = schema::alternatives(ty::UniversalFailure)
            .iter()
            .find(|a| a.name == self.category)?;
        enum_name(alt.ty, self.value)
    }

    pub fn from_value(v: &Value) -> Result<UniversalFailure, TypeError> {
        const T: &str = "UniversalFailure";
        let (alt, inner) = choice(T, v)?;
        if !schema::alternatives(ty::UniversalFailure)
            .iter()
            .any(|a| a.name == alt)
        {
            return Err(TypeError::new(T, format!("unknown alternative `{alt}`")));
        }
        match inner {
            Value::Enumerated(n) => Ok(UniversalFailure {
                category: alt,
                value: *n,
            }),
            Value::Null if alt == "unspecified" => Ok(UniversalFailure {
                category: alt,
                value: 0,
            }),
            _ => Err(shape(T, "ENUMERATED", inner).within(alt)),
        }
    }

    pub fn to_value(&self) -> Value {
        if self.category == "unspecified" {
            Value::alt(self.category, Value::Null)
        } else {
            Value::alt(self.category, Value::Enumerated(self.value))
        }
    }

    /// The returnError parameter.
    pub fn payload(&self) -> Payload {
        Payload::typed(ty::UniversalFailure, self.to_value())
    }
}

impl fmt::Display for UniversalFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value_name() {
            Some(n) => write!(f, "{}/{}", self.category, n),
            None if self.category == "unspecified" => f.write_str("unspecified"),
            None => write!(f, "{}/{}", self.category, self.value),
        }
    }
}

// ---- agent states ---------------------------------------------------------------------------

open_enum! {
    /// `AgentState ::= ENUMERATED` (GetAgentState result).
    pub enum AgentState = "AgentState" {
        NotReady = 0 "agentNotReady",
        Null = 1 "agentNull",
        Ready = 2 "agentReady",
        Busy = 3 "agentBusy",
        WorkingAfterCall = 4 "agentWorkingAfterCall",
    }
}

open_enum! {
    /// `ReqAgentState ::= ENUMERATED` (SetAgentState argument).
    pub enum ReqAgentState = "ReqAgentState" {
        LoggedOn = 0 "loggedOn",
        LoggedOff = 1 "loggedOff",
        NotReady = 2 "notReady",
        Ready = 3 "ready",
        WorkingAfterCall = 4 "workingAfterCall",
    }
}

open_enum! {
    /// `PendingAgentState ::= ENUMERATED`.
    pub enum PendingAgentState = "PendingAgentState" {
        NotReady = 0 "agentNotReady",
        Null = 1 "agentNull",
        Ready = 2 "agentReady",
        WorkingAfterCall = 3 "agentWorkingAfterCall",
    }
}

typed_by_inherent!(
    DeviceIdentifier,
    DeviceId,
    Party,
    Redirection,
    CallId,
    LocalDeviceId,
    ConnectionId,
    ConnectionListEntry,
    CstaObject,
    MonitorCrossRefId,
    EventCause,
    PrivateData,
    CommonArguments,
    UniversalFailure,
);
