//! ctigate: a CTI gateway between a PBX's CSTA Phase III link and NDJSON adapters.
//!
//! # Layout
//!
//! Events flow one way, from the PBX up to the clients; requests flow back down. A layer
//! knows the layers below it and never those above.
//!
//! ```text
//! codecs/model  ctigate-csta-model: typed CSTA operations, results, errors, events
//!               (wire-neutral; every dialect fills them)
//! codecs/csta   ctigate-csta: the BER dialect's codec (BER, ACSE, ROSE, framing)
//!      |
//! link          the PBX link: a sans-IO Session generic over a wire Dialect (link::ber
//!               today), correlation, keep-alive, monitors, backoff; a tokio driver
//!      |
//! model         the call tracker: CSTA events -> normalized call and agent views
//!      |
//! gateway       links + trackers + shared monitors; publishes typed events on the Bus
//!      |        (subscribers: the hub today; history, metrics, cluster later)
//! api           JSON starts here: typed requests (request::Op, one handler each in
//!      |        ops), the hub (seq, replay, lagged), one Session for every transport
//! transport     api::server (TCP NDJSON lines); WebSocket goes beside it
//! ```
//!
//! Beside them: [`sim`] (a switch simulator speaking the same wire protocol), [`config`],
//! [`decode`], [`demo`], [`bench`] (the one-command benchmark), [`client`], [`logging`], [`soak`] (the chaos run and the
//! call-view bookkeeping the chaos tests share). Where each kind of change goes:
//! `docs/ARCHITECTURE.md`.

pub mod api;
pub mod bench;
pub mod client;
pub mod config;
pub mod decode;
pub mod demo;
pub mod fuzzing;
pub mod gateway;
pub mod http;
pub mod lines;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod reload;
pub mod sim;
pub mod soak;
pub mod tls;

#[cfg(test)]
mod test_util;

pub use ctigate_csta as csta;

/// The hash map of the event path (the tracker's calls and interactions, the hub's
/// subscribers, the monitor table): foldhash, seeded at random per map, instead of
/// SipHash. Its keys (callIDs, device numbers, cross references) come from the switch and
/// from authenticated clients' `monitor.start`, whose count `max_monitors_per_client`
/// bounds.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
