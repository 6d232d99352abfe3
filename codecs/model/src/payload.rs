//! An operation argument, result or error parameter as the link carries it: the ECMA-285
//! type it has (the ARGUMENT, RESULT or PARAMETER of the X.880 `OPERATION`/`ERROR` object
//! of its code) and its value. Wire-neutral: the BER crate encodes it inside ROSE, a
//! CSTA-XML dialect would write it as the element of the same name.

use crate::schema::{self, TypeId};
use crate::value::Value;

/// An argument, result or error parameter: typed when the code is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The ECMA-285 type, or `None` for an unknown code (then `value` is [`Value::Raw`]).
    pub ty: Option<TypeId>,
    pub value: Value,
}

impl Payload {
    pub fn typed(ty: TypeId, value: Value) -> Payload {
        Payload {
            ty: Some(ty),
            value,
        }
    }
    /// The `noData NULL` alternative of the simple results (`CHOICE { extensions, noData }`).
    pub fn no_data(ty: TypeId) -> Payload {
        let v = match schema::alternatives(ty).iter().any(|a| a.name == "noData") {
            true => Value::alt("noData", Value::Null),
            false => Value::Null,
        };
        Payload {
            ty: Some(ty),
            value: v,
        }
    }
}
