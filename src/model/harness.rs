//! A test harness (house habit 1 and 10): a real link [`Session`] associated with the
//! simulator's sans-IO [`Switch`] in virtual time, and the [`Tracker`] fed with every event
//! report the session routes, as the gateway's event pump does. The session's frames go to
//! the switch and the switch's back, until both are quiet; nothing here knows invoke ids or
//! crossRefIDs: the session allocates and correlates them, the switch assigns them.
//!
//! The session is built only with `Session::new(cfg, now)` and driven only through its
//! public methods (`poll_output`, `connected`, `handle_frame`, `transport_closed`,
//! `poll_timeout`, `handle_timeout`, `request`, `monitor`).

use super::{Out, SnapCall, SnapEntry, Tracker, TrackerConfig};
use crate::link::{self, Answer, LinkConfig, LinkEvent, Session, Token};
use crate::sim::config::SimConfig;
use crate::sim::switch::{AssocId, Output, Switch};
use ctigate_csta::framing::Frame;
use ctigate_csta::ops::{Argument, OperationResult, SnapshotCallArgument, SnapshotDeviceArgument};
use ctigate_csta::types::{ConnectionId, DeviceId};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// Rounds of one pump before the harness calls it a livelock.
const MAX_STEPS: usize = 100_000;

/// The switch, one link session associated with it, and the tracker behind the session.
pub(crate) struct Pbx {
    pub sw: Switch,
    pub link: Session,
    /// The switch's association of the session's transport (None while it has none).
    assoc: Option<AssocId>,
    start: Instant,
    /// Wall-clock time at `start` (what the tracker is given: `t0 + (now - start)`).
    t0: SystemTime,
    pub now: Instant,
    next_token: Token,
    answers: HashMap<Token, Answer>,
    /// The session's events other than reports (`Up`, `Monitored`, ...), oldest first.
    pub link_events: Vec<LinkEvent>,
    pub tracker: Tracker,
    /// The tracker's events, oldest first.
    pub out: Vec<Out>,
}

impl Pbx {
    /// A switch for `sim`, a session to it (link `pbx1`, default timers) brought up, and a
    /// tracker; `t0` is the wall-clock time the tracker is given at the start.
    pub fn new(sim: SimConfig, t0: SystemTime) -> Pbx {
        let start = Instant::now();
        let cfg = LinkConfig {
            name: "pbx1".into(),
            ..LinkConfig::default()
        };
        let mut p = Pbx {
            sw: Switch::new(sim),
            link: Session::new(cfg, start),
            assoc: None,
            start,
            t0,
            now: start,
            next_token: 1,
            answers: HashMap::new(),
            link_events: Vec::new(),
            tracker: Tracker::new(TrackerConfig {
                link: "pbx1".into(),
                ..TrackerConfig::default()
            }),
            out: Vec::new(),
        };
        p.pump();
        assert_eq!(
            p.link_events.drain(..).collect::<Vec<_>>(),
            [
                LinkEvent::Up {
                    side: link::Side {
                        index: 0,
                        address: LinkConfig::default().addresses[0].clone()
                    }
                },
                LinkEvent::SystemStatus {
                    status: "normal".into()
                }
            ],
            "the session associates with the switch, which says it is up at once"
        );
        assert!(p.link.is_associated());
        p
    }

    /// The wall-clock time now (virtual).
    pub fn time(&self) -> SystemTime {
        self.t0 + (self.now - self.start)
    }

    /// Move everything both sides want to send, until both are quiet. Event reports go to
    /// the tracker with the device the session names (a report for an unknown monitor
    /// fails the test).
    pub fn pump(&mut self) {
        for _ in 0..MAX_STEPS {
            let mut moved = false;
            while let Some(o) = self.link.poll_output() {
                moved = true;
                self.on_link(o);
            }
            while let Some(o) = self.sw.poll_output() {
                moved = true;
                self.on_switch(o);
            }
            if !moved {
                return;
            }
        }
        panic!("the session and the switch do not settle");
    }

    fn on_link(&mut self, o: link::Out) {
        let now = self.now;
        match o {
            link::Out::Connect => {
                let a = self.sw.connect("pbx1", now).expect("the switch accepts");
                self.assoc = Some(a);
                self.link.connected(now);
            }
            link::Out::Transmit(f) => {
                if let Some(a) = self.assoc {
                    self.sw.receive(a, f, now);
                }
            }
            link::Out::Close => {
                if let Some(a) = self.assoc.take() {
                    self.sw.disconnected(a);
                }
            }
            link::Out::Answer { token, answer } => {
                assert!(
                    self.answers.insert(token, answer).is_none(),
                    "token {token} answered twice"
                );
            }
            link::Out::Event(LinkEvent::Report { device, report }) => {
                let device =
                    device.unwrap_or_else(|| panic!("a report for an unknown monitor: {report:?}"));
                let at = self.time();
                let outs = self.tracker.on_event(&device, &report.event, at);
                self.out.extend(outs);
            }
            link::Out::Event(e) => self.link_events.push(e),
        }
    }

    fn on_switch(&mut self, o: Output) {
        let now = self.now;
        match o {
            Output::Pdu { assoc, pdu } if Some(assoc) == self.assoc => {
                self.link.handle_frame(Frame::Pdu(pdu), now)
            }
            Output::Raw { assoc, bytes } if Some(assoc) == self.assoc => match bytes[..] {
                [b] => self.link.handle_frame(Frame::Handshake(b), now),
                _ => panic!("raw octets from the switch: not framed by this harness"),
            },
            Output::Close { assoc, reason } if Some(assoc) == self.assoc => {
                self.assoc = None;
                self.sw.disconnected(assoc);
                self.link.transport_closed(now, &reason);
            }
            _ => {} // for a transport already gone
        }
    }

    /// A request through the session; its answer (the switch answers without time passing).
    pub fn request(&mut self, arg: impl Into<Argument>) -> Answer {
        let token = self.next_token;
        self.next_token += 1;
        self.link.request(token, arg.into(), self.now);
        self.pump();
        self.answers
            .remove(&token)
            .expect("the request is answered at once")
    }

    /// A request that must succeed: its result.
    pub fn ok(&mut self, arg: impl Into<Argument>) -> Option<OperationResult> {
        let arg = arg.into();
        match self.request(arg.clone()) {
            Ok(Ok(r)) => r,
            a => panic!("{arg:?}: expected a result, got {a:?}"),
        }
    }

    /// Monitor `device` through the session; it must succeed.
    pub fn monitor(&mut self, device: &str) {
        let token = self.next_token;
        self.next_token += 1;
        self.link.monitor(token, device, self.now);
        self.pump();
        assert_eq!(
            self.answers.remove(&token),
            Some(Ok(Ok(None))),
            "monitor {device}"
        );
        assert_eq!(
            self.link_events.pop(),
            Some(LinkEvent::Monitored {
                device: device.into(),
                again: false
            })
        );
    }

    /// A simulator control command that must succeed; its answer.
    pub fn control(&mut self, cmd: &str) -> serde_json::Value {
        let c = crate::sim::control::parse(cmd).expect("a control command");
        let r = self.sw.control(c, self.now);
        assert_eq!(r["ok"], true, "{cmd}: {r}");
        self.pump();
        r
    }

    /// Let `d` pass: every timer of the switch and the session due by then fires at its
    /// time, in order, with the traffic it causes.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let next = |p: &Pbx| {
            [p.sw.poll_timeout(), p.link.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
        };
        while let Some(t) = next(self).filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.sw.handle_timeout(self.now);
            self.link.handle_timeout(self.now);
            self.pump();
            assert!(
                next(self).is_none_or(|n| n > self.now),
                "a deadline stays due after its timeout ran"
            );
        }
        self.now = end;
        self.sw.handle_timeout(self.now);
        self.link.handle_timeout(self.now);
        self.pump();
    }

    /// Resync `device` as the gateway does: mark, SnapshotDevice (by reference too: the
    /// session collects the segments), SnapshotCall for the calls the tracker does not
    /// know, apply. The snapshot must succeed.
    pub fn resync(&mut self, device: &str) -> Vec<Out> {
        let mark = self.tracker.begin_resync(device);
        let arg = SnapshotDeviceArgument::new(DeviceId::dialing(device));
        let mut entries = match self.ok(arg) {
            Some(OperationResult::SnapshotDevice(r)) => {
                SnapEntry::from_result(&r).expect("the session collects the segments")
            }
            r => panic!("snapshot of {device}: {r:?}"),
        };
        let unknown: Vec<ConnectionId> = self
            .tracker
            .unknown_calls(device, &entries)
            .into_iter()
            .cloned()
            .collect();
        for conn in unknown {
            let info = match self.request(SnapshotCallArgument::new(conn.clone())) {
                Ok(Ok(Some(OperationResult::SnapshotCall(r)))) => Some(SnapCall::from_result(&r)),
                _ => None,
            };
            if let Some(e) = entries.iter_mut().find(|e| e.conn == conn) {
                e.call = info;
            }
        }
        self.tracker.apply_resync(mark, &entries, self.time())
    }

    /// The tracker's events for `device` since the last look.
    pub fn take(&mut self, device: &str) -> Vec<Out> {
        let (mine, rest) = std::mem::take(&mut self.out)
            .into_iter()
            .partition(|o| o.device() == device);
        self.out = rest;
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctigate_csta::ops::{AnswerCallArgument, MakeCallArgument};

    #[test]
    fn invoke_ids_and_cross_references_come_from_the_session_and_the_switch() {
        let mut p = Pbx::new(SimConfig::default(), SystemTime::UNIX_EPOCH);
        for d in ["201", "202"] {
            p.monitor(d);
        }
        // the monitor table holds what the switch assigned
        assert_eq!(p.link.monitors().len(), 2);
        p.ok(MakeCallArgument::new(
            DeviceId::dialing("201"),
            DeviceId::dialing("202"),
        ));
        assert_eq!(p.take("202").len(), 1, "the offering at 202");
        // the switch saying no is data
        match p.request(AnswerCallArgument::new(ConnectionId::dialing(
            [0x77, 0x77],
            "201",
        ))) {
            Ok(Err(e)) => assert_eq!(e.to_string(), "operation/invalidCallID"),
            a => panic!("{a:?}"),
        }
        // an hour of silence: keep-alives both ways, the link stays up, events still flow
        p.advance(Duration::from_secs(3600));
        assert!(p.link.is_associated());
        assert!(!p.link_events.is_empty(), "the switch's keep-alives");
        assert!(
            p.link_events.iter().all(|e| *e
                == LinkEvent::SystemStatus {
                    status: "normal".into()
                }),
            "nothing but keep-alives: {:?}",
            p.link_events
        );
        p.ok(AnswerCallArgument::new(
            p.tracker
                .pick("202", None, super::super::Want::Alerting)
                .unwrap(),
        ));
        assert_eq!(
            p.take("201").len(),
            4,
            "dialing, updated, ringback, connected"
        );
        assert_eq!(p.take("202").len(), 1, "connected");
    }
}
