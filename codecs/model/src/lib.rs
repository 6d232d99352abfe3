//! `ctigate-csta-model`: the wire-neutral CSTA Phase III layer that every wire dialect
//! fills — ECMA-285 BER in X.880 ROSE (the `ctigate-csta` crate) today, ECMA-323 CSTA-XML
//! later.
//!
//! Modules, bottom up: [`schema`] (the ECMA-285 abstract syntax: a table of named types
//! generated from the ASN.1 modules), [`value`] (a decoded value as a tree of named
//! components), [`payload`] (a value with its type, as an operation carries it),
//! [`types`], [`ops`] and [`events`] (typed views of the ECMA-269 services and events),
//! [`opcode`] (named ECMA-285 operation values), [`reject`] (why a request was rejected).
//!
//! The `typed_struct!` invocations of [`events`] and [`ops`] (`events/generated.rs`,
//! `ops/generated.rs`) are generated from the ASN.1 by `codecs/csta/gen/gen_typed.py`: the
//! components each struct types, with their docs, are chosen in its table
//! (`gen_typed_table.py`); required/optional, order, field names and Rust types come from
//! the ASN.1. The rest of those modules is written by hand.
//!
//! No byte of any encoding is produced or read here (no asn1-rs, no nom): a dialect
//! decodes its wire form into a [`Value`] of a [`schema`] type and the typed views read it
//! from there; the way back is `to_value` and the dialect's encoder.
//!
//! ## Why the schema table lives here
//!
//! The generated table (`schema/generated.rs`, from `codecs/csta/gen/gen_schema.py`) is the
//! ASN.1 *abstract syntax* of ECMA-285: type names, SEQUENCE/SET components (names,
//! OPTIONAL, DEFAULT), CHOICE alternatives, named numbers and bits, and the operation and
//! error tables. The typed layer is name-based and walks it (component order, alternatives,
//! enumeration names), and an XML dialect needs exactly those names (ECMA-323 element names
//! are the ASN.1 identifiers). The table also records each type's tags (X.680 §31: tags are
//! part of the ASN.1 type notation) and the first-tag sets the generator precomputes; only
//! BER uses them (XER ignores tags), but splitting one generated table in two would make
//! every type id a pair. So: one table, here; the BER crate holds everything that reads or
//! writes BER (`ber`, `codec`, `rose`, `acse`, `apdu`, `framing`, `json`).
#![forbid(unsafe_code)]

pub mod events;
pub mod opcode;
pub mod ops;
pub mod payload;
pub mod reject;
pub mod schema;
pub mod types;
pub mod value;

pub use payload::Payload;
pub use value::{Member, Value};
