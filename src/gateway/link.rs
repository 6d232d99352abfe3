//! The gateway's view of a PBX link: the [`PbxLink`] trait the request handlers and the
//! monitor bookkeeping talk to. [`crate::link::Link`] implements it; tests implement it
//! with a scripted double (answers and errors from a script, link events pushed by hand).

use crate::link::{Answer, CstaError, Link, LinkCounters, LinkError};
use ctigate_csta::ops::Argument;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, for the object-safe [`PbxLink`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a monitor start or stop answers: the link could not carry it (outer), or the switch
/// refused it (inner).
pub type MonitorAnswer = Result<Result<(), CstaError>, LinkError>;

/// One PBX link as the gateway uses it. Every call is bounded in time by the
/// implementation (the link's request timeout).
///
/// The link tells what happens (up, down, event reports, re-monitors) on the channel the
/// gateway gives it when it is made ([`super::Gateway::with_links`]).
pub trait PbxLink: Send + Sync + 'static {
    /// Any ECMA-285 request.
    fn request(&self, arg: Argument) -> BoxFuture<'_, Answer>;
    /// MonitorStart on `device` (kept across reconnects).
    fn monitor<'a>(&'a self, device: &'a str) -> BoxFuture<'a, MonitorAnswer>;
    /// MonitorStop on `device`.
    fn unmonitor<'a>(&'a self, device: &'a str) -> BoxFuture<'a, MonitorAnswer>;
    /// Associated right now.
    fn is_up(&self) -> bool;
    /// Release the association (RLRQ) and stop; bounded.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// Malformed frames from the switch and rejects sent to it, so far (zero for a link
    /// that does not count them).
    fn counters(&self) -> LinkCounters {
        LinkCounters::default()
    }
    /// How long the switch's octets the link decoded last had waited for it since they
    /// were read from the PBX socket (zero for a link that does not read ahead).
    fn read_waited(&self) -> Duration {
        Duration::ZERO
    }
    /// New `max_monitors`, `max_outstanding` and `requests_per_s` (a configuration
    /// reload); a link without such limits ignores them.
    fn set_limits(&self, _limits: LinkLimits) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The limits of a link that a reload changes while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    pub max_monitors: usize,
    pub max_outstanding: usize,
    pub requests_per_s: u32,
}

impl PbxLink for Link {
    fn request(&self, arg: Argument) -> BoxFuture<'_, Answer> {
        Box::pin(Link::request(self, arg))
    }
    fn monitor<'a>(&'a self, device: &'a str) -> BoxFuture<'a, MonitorAnswer> {
        Box::pin(Link::monitor(self, device))
    }
    fn unmonitor<'a>(&'a self, device: &'a str) -> BoxFuture<'a, MonitorAnswer> {
        Box::pin(Link::unmonitor(self, device))
    }
    fn is_up(&self) -> bool {
        Link::is_up(self)
    }
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(Link::shutdown(self))
    }
    fn counters(&self) -> LinkCounters {
        Link::counters(self)
    }
    fn read_waited(&self) -> Duration {
        Link::read_waited(self)
    }
    fn set_limits(&self, l: LinkLimits) -> BoxFuture<'_, ()> {
        Box::pin(Link::set_limits(
            self,
            l.max_monitors,
            l.max_outstanding,
            l.requests_per_s,
        ))
    }
}
