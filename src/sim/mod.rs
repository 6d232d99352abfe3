//! `ctigate sim`: a CSTA Phase III (ECMA-285 BER) switch simulator on real TCP.
//!
//! - [`model`]: the call model (devices, calls, connections, agents) and the services;
//! - [`switch`]: the sans-IO switch (associations, ROSE, monitors, keep-alives, limits,
//!   faults) — bytes in, bytes out, `now` passed in;
//! - [`control`]: the control commands (control port, scenario files);
//! - [`ctl`]: `ctigate sim ctl`, the control port's client (JSON or short words);
//! - [`server`]: the tokio driver (CSTA listener, control port, scenario runner);
//! - [`config`]: the dial plan and link rules (`--config sim.toml`).

pub mod config;
pub mod control;
pub mod ctl;
pub mod model;
pub mod server;
pub mod switch;

pub use config::SimConfig;
pub use server::Sim;
pub use switch::Switch;

#[cfg(test)]
mod tests;
