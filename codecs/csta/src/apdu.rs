//! One PDU of a CSTA link: an ACSE APDU or a ROSE APDU (WIRE.md §1: dispatch on the
//! first octet of the frame payload, 0x60..0x7f ACSE, 0xa1..0xa4 ROSE).

use crate::acse::Acse;
use crate::ber::Limits;
use crate::error::{DecodeError, DecodeErrorKind as K, EncodeError};
use crate::rose::{Code, Rose};
use crate::schema::{self, Class, Tag};
use crate::value::Value;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq)]
pub enum Apdu {
    Acse(Acse),
    Rose(Rose),
}

impl Apdu {
    /// Decode one unframed PDU with the default limits.
    pub fn decode(buf: &Bytes) -> Result<Apdu, DecodeError> {
        Apdu::decode_with(buf, &Limits::DEFAULT)
    }

    pub fn decode_with(buf: &Bytes, limits: &Limits) -> Result<Apdu, DecodeError> {
        let Some(&first) = buf.first() else {
            return Err(DecodeError::new(K::Empty, 0));
        };
        if buf.len() > limits.max_pdu {
            return Err(DecodeError::new(
                K::TooLarge {
                    limit: limits.max_pdu,
                },
                0,
            ));
        }
        match first & 0xe0 {
            0x60 => Acse::decode(buf, limits).map(Apdu::Acse),
            0xa0 => Rose::decode(buf, limits).map(Apdu::Rose),
            _ => {
                let class = [
                    Class::Universal,
                    Class::Application,
                    Class::Context,
                    Class::Private,
                ][(first >> 6) as usize];
                Err(DecodeError::new(
                    K::UnexpectedTag {
                        found: Tag::new(class, u32::from(first & 0x1f)),
                        constructed: first & 0x20 != 0,
                    },
                    0,
                )
                .within("APDU"))
            }
        }
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Apdu::Acse(a) => a.encode_into(out),
            Apdu::Rose(r) => r.encode_into(out),
        }
    }

    /// `aarq`, `aare`, `rlrq`, `rlre`, `abrt`, `invoke`, `result`, `error` or `reject`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Apdu::Acse(a) => a.kind.name(),
            Apdu::Rose(r) => r.kind(),
        }
    }

    pub fn rose(&self) -> Option<&Rose> {
        match self {
            Apdu::Rose(r) => Some(r),
            Apdu::Acse(_) => None,
        }
    }

    /// The ECMA-285 operation value name of an invoke or result (`makeCall`).
    pub fn operation_name(&self) -> Option<&'static str> {
        let code = self.rose()?.opcode()?.local()?;
        schema::operation(code).map(|o| o.name)
    }

    /// For a cSTAEventReport invoke: (family, event) alternative names, e.g.
    /// (`callControlEvents`, `delivered`).
    pub fn event_name(&self) -> Option<(&'static str, &'static str)> {
        match self.rose()? {
            Rose::Invoke(i) if i.opcode == Code::Local(crate::opcode::CSTA_EVENT_REPORT) => {
                let arg = &i.argument.as_ref()?.value;
                let (family, inner) = arg.get("eventSpecificInfo")?.choice()?;
                match inner {
                    Value::Choice(event, _) => Some((family, event)),
                    _ => Some((family, "")),
                }
            }
            _ => None,
        }
    }
}

impl From<Rose> for Apdu {
    fn from(r: Rose) -> Apdu {
        Apdu::Rose(r)
    }
}

impl From<Acse> for Apdu {
    fn from(a: Acse) -> Apdu {
        Apdu::Acse(a)
    }
}
