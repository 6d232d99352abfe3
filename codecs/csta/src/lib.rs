//! `ctigate-csta`: a sans-IO codec for CSTA Phase III links (ECMA-285 BER in X.880 ROSE
//! after X.227 ACSE, over the 2-byte length framing PBXs use).
//!
//! Layers, bottom up: [`ber`] (TLV, limits), [`codec`] (decode and canonical encode of a
//! [`Value`], driven by the ECMA-285 type table), [`rose`] and [`acse`] (APDUs), [`apdu`]
//! (one enum for a link PDU), [`rose_ext`] (typed arguments, results and errors in ROSE
//! APDUs), [`json`] (the `ctigate decode` form) and [`framing`] (tokio-util codecs).
//!
//! The wire-neutral layer — the type table ([`schema`]), the value tree ([`value`]) and
//! the typed views ([`types`], [`ops`], [`events`]) — is the `ctigate-csta-model` crate;
//! it is re-exported here under its old paths for this crate's own code and its users
//! that only speak BER (fuzz targets, benches). The gateway imports it from the model
//! crate directly.
#![forbid(unsafe_code)]

pub mod acse;
pub mod apdu;
pub mod ber;
pub mod codec;
pub mod error;
pub mod framing;
pub mod hot;
pub mod json;
pub mod oid;
pub mod rose;
pub mod rose_ext;

pub use ctigate_csta_model::{events, opcode, ops, schema, types, value};

pub use apdu::Apdu;
pub use ber::Limits;
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use oid::Oid;
pub use value::{Member, Value};

/// The unit tests of the typed layer that need BER (fixtures, the codec, ROSE).
#[cfg(test)]
mod typed_tests;

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use bytes::Bytes;

    /// Octets from hex (white space ignored); panics on bad hex: test data only.
    pub fn hex(s: &str) -> Bytes {
        let s: String = s.split_whitespace().collect();
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
                .collect::<Vec<_>>(),
        )
    }
}
