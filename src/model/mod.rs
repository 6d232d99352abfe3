//! The normalized model and the call tracker: CSTA event reports in, PROTOCOL.md call and
//! agent events out.
//!
//! [`Tracker`] is sans-IO (no sockets, no clock: `now` is passed in). The link layer gives
//! it every event report with the monitored device the report came for
//! ([`Tracker::on_event`]); it keeps, per monitored device, a view of each call the device
//! takes part in ([`CallView`]) and the device's agent state ([`AgentView`]), and returns
//! the protocol events ([`Out`]) the report means for that device. The API layer uses the
//! same views for snapshots and to pick the CSTA connection a request acts on
//! ([`Tracker::pick`]).
//!
//! # Interactions
//! An interaction is what a CRM keeps one record for: it gets an id (16 hex digits: 4 from
//! the link name, 12 from a counter seeded from the clock, so ids do not repeat across
//! restarts) when a monitored device first sees its call, and keeps it through hold,
//! consultation (the consultation leg is an interaction of its own, type `consult`, with
//! `related` = the interaction it was made from and a copy of its variables), transfer and
//! conference: the resulting call (ECMA-269 Transferred / Conferenced events, whose
//! connection lists map old connections to new ones) carries the original interaction's id
//! and variables at every device, also at a transfer target whose view was a consultation
//! leg (its `call.transferred` / `call.conferenced` then carries `"replaces"`: the id it had
//! before). A callID the switch reuses after the call cleared is a new interaction.
//!
//! # Decisions where PROTOCOL.md is silent
//! - `call.offering` is emitted once per visit (interaction, device and `visit`: a call that
//!   comes back to the device after its `call.released` there is a new visit), on the first
//!   Delivered/Offered at the device, whatever came before (queued, diverted, a repeat);
//!   when the switch never reported the alerting but reports the device answering, the
//!   offering is emitted just before `call.connected`, so the screen pop is not lost.
//! - Every view ends with exactly one `call.released` (cause, `duration_ms`, `ended`):
//!   after `call.diverted` away from the device (cause = the diversion cause, e.g.
//!   `distributed`), after `call.transferred` at the transferring device (that event
//!   already shows state `released`; cause `transfer` or `singleStepTransfer`; its
//!   consultation leg is released too), on its own ConnectionCleared or on CallCleared,
//!   and with cause `resync`, `superseded` (the device starts a call with the callID of a
//!   call whose end was never reported) or `evicted` (more than [`MAX_CALLS_PER_DEVICE`]
//!   calls at the device). A view merged into another by a conference or transfer is not
//!   released: the surviving view's event says `"replaces"`.
//! - One view per device and interaction: `call.*` events of a device never carry two
//!   calls with the same `id`.
//! - Diverted elsewhere (the far end forwards the device's call): `call.diverted` with the
//!   new `other`, the view stays. The caller's side of a call queued at a group is
//!   `queued`; the far end holding the device's call is not reported.
//! - A call that goes on where no monitored device sees it (diverted to an unmonitored
//!   station, transferred away) keeps its interaction for 30 s (at most 1024 such), so a
//!   monitored device it reaches next joins it; seen later, its callID is taken as reused
//!   and starts a new interaction.
//! - Type: a call placed by the device (ServiceInitiated / Originated) has an internal
//!   caller whatever its number's length; an unknown or restricted caller is outside.
//! - ConnectionCleared of another party: `call.party_left` (extra `party`) when the view
//!   had more than two parties; in a two-party call nothing (the call's end comes with
//!   CallCleared or the device's own ConnectionCleared).
//! - Agent events reported at a device for an agent at another device (an ACD group's
//!   monitor sees its members' events) give `agent.state` for the monitored device; only
//!   the device's own agent is kept for [`Tracker::agent`].
//! - Events the tracker does not use (media, maintenance, private, unknown) give nothing.

mod agents;
mod calls;
mod resync;
mod tracker;
mod view;

pub use resync::{SnapCall, SnapEntry};
pub use tracker::{
    InternalRule, Out, PickError, Tracker, TrackerConfig, TrackerSizes, Want, MAX_CALLS_PER_DEVICE,
    MAX_MEMBERS_PER_DEVICE,
};
pub use view::{
    rfc3339, AgentState, AgentView, CallExtra, CallState, CallType, CallView, EventKind, Stamp,
    UnknownName,
};

#[cfg(test)]
pub(crate) mod harness;
#[cfg(test)]
mod tests;
