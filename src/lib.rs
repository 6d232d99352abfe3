//! ctigate: a CTI gateway between a PBX's CSTA Phase III link and NDJSON adapters.
//!
//! This crate holds the command-line tools; the wire codec is the `ctigate-csta` crate
//! in `codecs/csta`.

pub mod api;
pub mod client;
pub mod config;
pub mod decode;
pub mod demo;
pub mod gateway;
pub mod lines;
pub mod link;
pub mod logging;
pub mod model;
pub mod sim;

#[cfg(test)]
mod test_util;

pub use ctigate_csta as csta;
