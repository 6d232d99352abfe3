//! `ctigate-csta`: a sans-IO codec for CSTA Phase III links (ECMA-285 BER in X.880 ROSE
//! after X.227 ACSE, over the 2-byte length framing PBXs use).
//!
//! Layers, bottom up: [`ber`] (TLV, limits), [`schema`] (the ECMA-285 type table generated
//! from the ASN.1 modules), [`codec`] (schema-driven decode and canonical encode of a
//! [`Value`]), [`rose`] and [`acse`] (APDUs), [`apdu`] (one enum for a link PDU),
//! [`types`], [`ops`] and [`events`] (typed views), [`json`] (the `ctigate decode` form)
//! and [`framing`] (tokio-util codecs).
#![forbid(unsafe_code)]

pub mod acse;
pub mod apdu;
pub mod ber;
pub mod codec;
pub mod error;
pub mod events;
pub mod framing;
pub mod json;
pub mod oid;
pub mod ops;
pub mod rose;
pub mod schema;
pub mod types;
pub mod value;

pub use apdu::Apdu;
pub use ber::Limits;
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use oid::Oid;
pub use value::{Member, Value};

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
