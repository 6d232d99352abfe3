//! Typed errors of the codec layer (house habit 3: say where it failed).

use crate::schema::Tag;
use std::fmt;

/// What went wrong while decoding BER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The input ends inside a TLV (X.690 §8.1.1): `needed` more octets at least.
    Truncated { needed: usize },
    /// A length octet sequence is malformed or the length exceeds the enclosing value.
    BadLength,
    /// A value is longer than the configured limit, checked before any allocation.
    TooLarge { limit: usize },
    /// Constructed values nested deeper than the limit.
    TooDeep { limit: u32 },
    /// Indefinite length on a primitive value, or an end-of-contents octet pair out of place.
    BadIndefinite,
    /// A TLV whose tag does not fit the type expected here.
    UnexpectedTag { found: Tag, constructed: bool },
    /// A mandatory SEQUENCE component is absent.
    MissingField(&'static str),
    /// Primitive/constructed form not allowed for this type.
    BadForm,
    /// Content octets that are not a valid value of the type.
    InvalidValue(&'static str),
    /// INTEGER/ENUMERATED outside the i64 range.
    IntegerTooLarge,
    /// Octets left after the PDU, or inside an EXPLICIT tag after its one value.
    TrailingData,
    /// An empty frame.
    Empty,
}

/// A decode error: kind, octet offset in the PDU and the ASN.1 path to the failing value,
/// e.g. `MakeCallArgument.callingDevice.deviceIdentifier`. Boxed, so that the decoder's
/// `Result`s stay small on the success path; the fields read through `Deref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(Box<DecodeErrorInner>);

/// The fields of a [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeErrorInner {
    pub kind: DecodeErrorKind,
    pub offset: usize,
    path: Vec<&'static str>,
    /// ROSE invokeId of the APDU when it was read before the failure (to reject it).
    pub invoke_id: Option<i64>,
}

impl std::ops::Deref for DecodeError {
    type Target = DecodeErrorInner;
    fn deref(&self) -> &DecodeErrorInner {
        &self.0
    }
}

impl std::ops::DerefMut for DecodeError {
    fn deref_mut(&mut self) -> &mut DecodeErrorInner {
        &mut self.0
    }
}

impl DecodeError {
    #[cold]
    pub fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        DecodeError(Box::new(DecodeErrorInner {
            kind,
            offset,
            path: Vec::new(),
            invoke_id: None,
        }))
    }
    /// Record one more enclosing component while the error unwinds (innermost first).
    pub fn within(mut self, name: &'static str) -> Self {
        self.path.push(name);
        self
    }
    /// The path from the outermost type down to the failing component.
    pub fn path(&self) -> String {
        let p: Vec<&str> = self
            .path
            .iter()
            .rev()
            .copied()
            .filter(|s| !s.is_empty())
            .collect();
        p.join(".")
    }
    /// A short machine-readable name of the error kind.
    pub fn code(&self) -> &'static str {
        match self.kind {
            DecodeErrorKind::Truncated { .. } => "truncated",
            DecodeErrorKind::BadLength => "bad_length",
            DecodeErrorKind::TooLarge { .. } => "too_large",
            DecodeErrorKind::TooDeep { .. } => "too_deep",
            DecodeErrorKind::BadIndefinite => "bad_indefinite",
            DecodeErrorKind::UnexpectedTag { .. } => "unexpected_tag",
            DecodeErrorKind::MissingField(_) => "missing_field",
            DecodeErrorKind::BadForm => "bad_form",
            DecodeErrorKind::InvalidValue(_) => "invalid_value",
            DecodeErrorKind::IntegerTooLarge => "integer_too_large",
            DecodeErrorKind::TrailingData => "trailing_data",
            DecodeErrorKind::Empty => "empty",
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::Truncated { needed } => write!(
                f,
                "input ends early: at least {needed} more octet(s) needed"
            ),
            DecodeErrorKind::BadLength => {
                write!(f, "malformed length or length beyond the enclosing value")
            }
            DecodeErrorKind::TooLarge { limit } => {
                write!(f, "value larger than the limit of {limit} octets")
            }
            DecodeErrorKind::TooDeep { limit } => {
                write!(f, "nesting deeper than the limit of {limit}")
            }
            DecodeErrorKind::BadIndefinite => {
                write!(f, "misplaced indefinite length or end-of-contents")
            }
            DecodeErrorKind::UnexpectedTag { found, constructed } => {
                write!(
                    f,
                    "unexpected tag {found}{}",
                    if *constructed { " (constructed)" } else { "" }
                )
            }
            DecodeErrorKind::MissingField(n) => write!(f, "mandatory component `{n}` is missing"),
            DecodeErrorKind::BadForm => write!(f, "wrong primitive/constructed form"),
            DecodeErrorKind::InvalidValue(w) => write!(f, "invalid value: {w}"),
            DecodeErrorKind::IntegerTooLarge => write!(f, "integer does not fit in 64 bits"),
            DecodeErrorKind::TrailingData => write!(f, "unexpected octets after the value"),
            DecodeErrorKind::Empty => write!(f, "empty PDU"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path();
        if p.is_empty() {
            write!(f, "{} at offset {}", self.kind, self.offset)
        } else {
            write!(f, "{p}: {} at offset {}", self.kind, self.offset)
        }
    }
}

impl std::error::Error for DecodeError {}

/// Building a PDU from a value that does not fit its type (a programming error on our
/// side, or a hand-built value): never produced by values the decoder returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    pub message: String,
    path: Vec<&'static str>,
}

impl EncodeError {
    pub fn new(message: impl Into<String>) -> Self {
        EncodeError {
            message: message.into(),
            path: Vec::new(),
        }
    }
    pub fn within(mut self, name: &'static str) -> Self {
        self.path.push(name);
        self
    }
    pub fn path(&self) -> String {
        let p: Vec<&str> = self
            .path
            .iter()
            .rev()
            .copied()
            .filter(|s| !s.is_empty())
            .collect();
        p.join(".")
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode {}: {}", self.path(), self.message)
    }
}

impl std::error::Error for EncodeError {}
