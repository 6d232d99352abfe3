//! Call control and call associated events (ECMA-269 clauses 17 and 18; ECMA-285 `CallControlEvents`,
//! `CallAssociatedEvents`) into `call.*` events, per monitored device.
//!
//! Every event names a subject connection (`connection`, `heldConnection`, ...). When its
//! device is the monitored device the event is about the device's own connection ("at the
//! device"); else it tells the device what happened to another party of its call. The
//! local connection state an event carries (ECMA-269 clause 6, `localConnectionInfo`) is
//! the monitored device's own and is used where it settles a doubt.

use super::tracker::{cause_name, Out, Seed, Tracker};
use super::view::{CallExtra, CallState, EventKind};
use bytes::Bytes;
use ctigate_csta_model::events::Event;
use ctigate_csta_model::types::{
    ConnectionId, ConnectionListEntry, DeviceIdentifier, EventCause, LocalConnectionState, Party,
    PublicTon,
};

use std::time::SystemTime;

/// What the handlers use of a call event.
struct Facts<'a> {
    /// The subject connection.
    conn: &'a ConnectionId,
    /// The device the event is about (alerting, answering, holding, releasing ...).
    subject: Option<&'a Party>,
    calling: Option<&'a Party>,
    called: Option<&'a Party>,
    cause: EventCause,
    lcs: Option<LocalConnectionState>,
    uui: Option<&'a Bytes>,
    corr: Option<&'a Bytes>,
    /// The switch says the caller came over a trunk (networkCallingDevice or
    /// associatedCallingDevice present).
    trunk: bool,
}

impl<'a> Facts<'a> {
    fn new(conn: &'a ConnectionId, subject: &'a Party, cause: EventCause) -> Facts<'a> {
        Facts {
            conn,
            subject: Some(subject),
            calling: None,
            called: None,
            cause,
            lcs: None,
            uui: None,
            corr: None,
            trunk: false,
        }
    }

    /// Whether the subject connection is the monitored device's own.
    fn here(&self, device: &str) -> bool {
        match self.conn.device_number() {
            Some(n) => n == device,
            None => self.subject.and_then(Party::number) == Some(device),
        }
    }

    fn subject_number(&self) -> Option<String> {
        self.conn
            .device_number()
            .or_else(|| self.subject.and_then(Party::number))
            .map(str::to_string)
    }

    fn calling_number(&self) -> Option<&'a str> {
        self.calling.and_then(Party::number)
    }

    fn called_number(&self) -> Option<&'a str> {
        self.called.and_then(Party::number)
    }

    /// What a new view learns from the event about its interaction.
    fn seed(&self, inside: bool) -> Seed {
        Seed {
            ani: self.calling_number().map(str::to_string),
            ani_external: if self.trunk {
                Some(true)
            } else {
                self.calling.and_then(external_hint)
            },
            dnis: self.called_number().map(str::to_string),
            consult: self.cause == EventCause::CONSULTATION,
            inside,
            fresh: false,
        }
    }
}

/// The switch's own indication of whether a party is outside the PBX: the type of number
/// of its DeviceID (ECMA-285 `DeviceID`: private numbering plan = internal, public
/// international / national / subscriber number = external).
fn external_hint(p: &Party) -> Option<bool> {
    match &p.device()?.id {
        DeviceIdentifier::ImplicitPrivate(_) | DeviceIdentifier::ExplicitPrivate { .. } => {
            Some(false)
        }
        DeviceIdentifier::ExplicitPublic {
            ton: PublicTon::International | PublicTon::National | PublicTon::Subscriber,
            ..
        } => Some(true),
        _ => None,
    }
}

/// The view state of a connection state (`None`: null or not given: not a call state).
pub(super) fn state_of(lcs: Option<LocalConnectionState>) -> Option<CallState> {
    Some(match lcs? {
        LocalConnectionState::Initiated => CallState::Dialing,
        LocalConnectionState::Alerting => CallState::Offering,
        LocalConnectionState::Connected => CallState::Connected,
        LocalConnectionState::Hold => CallState::Held,
        LocalConnectionState::Queued => CallState::Queued,
        LocalConnectionState::Fail => CallState::Failed,
        _ => return None,
    })
}

/// The caller's states before the far end answers.
fn early(s: CallState) -> bool {
    matches!(
        s,
        CallState::Dialing | CallState::Ringback | CallState::Queued
    )
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

/// `from` and `to` of a diversion or transfer.
fn from_to(from: Option<&str>, to: Option<&str>) -> CallExtra {
    CallExtra {
        from: owned(from),
        to: owned(to),
        ..CallExtra::default()
    }
}

/// A Transferred or Conferenced event.
struct Join<'a> {
    transfer: bool,
    primary: &'a ConnectionId,
    secondary: Option<&'a ConnectionId>,
    /// transferringDevice / conferencingDevice.
    actor: &'a Party,
    /// transferredToDevice / addedParty.
    target: &'a Party,
    list: &'a [ConnectionListEntry],
    cause: EventCause,
    lcs: Option<LocalConnectionState>,
    uui: Option<&'a Bytes>,
    corr: Option<&'a Bytes>,
}

fn entry_device(e: &ConnectionListEntry) -> Option<&str> {
    e.new_connection
        .as_ref()
        .and_then(ConnectionId::device_number)
        .or_else(|| e.endpoint.as_ref().and_then(Party::number))
}

impl Tracker {
    pub(super) fn on_call_event(
        &mut self,
        dev: &str,
        event: &Event,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) {
        // the call an event is about: a resync in progress at the device leaves it to the
        // events (even one that changed nothing in the view: the snapshot may be older)
        let primary = match event {
            Event::ServiceInitiated(e) => Some(&e.initiated_connection),
            Event::Originated(e) => Some(&e.originated_connection),
            Event::Delivered(e) => Some(&e.connection),
            Event::Offered(e) => Some(&e.offered_connection),
            Event::Established(e) => Some(&e.established_connection),
            Event::Held(e) => Some(&e.held_connection),
            Event::Retrieved(e) => Some(&e.retrieved_connection),
            Event::Queued(e) => Some(&e.queued_connection),
            Event::Diverted(e) => Some(&e.connection),
            Event::Failed(e) => Some(&e.failed_connection),
            Event::ConnectionCleared(e) => Some(&e.dropped_connection),
            _ => None,
        };
        if let Some(call) = primary.and_then(ConnectionId::call_id) {
            let call = call.clone();
            self.note_touched(dev, &call);
        }
        match event {
            Event::ServiceInitiated(e) => {
                let mut f = Facts::new(&e.initiated_connection, &e.initiating_device, e.cause);
                f.called = e.called_device.as_ref();
                f.lcs = e.local_connection_info;
                f.corr = e.correlator_data.as_ref();
                self.initiated(dev, &f, false, now, out);
            }
            Event::Originated(e) => {
                let mut f = Facts::new(&e.originated_connection, &e.calling_device, e.cause);
                f.calling = Some(&e.calling_device);
                f.called = Some(&e.called_device);
                f.lcs = e.local_connection_info;
                f.corr = e.correlator_data.as_ref();
                self.initiated(dev, &f, true, now, out);
            }
            Event::Delivered(e) => {
                let mut f = Facts::new(&e.connection, &e.alerting_device, e.cause);
                f.calling = Some(&e.calling_device);
                f.called = Some(&e.called_device);
                f.lcs = e.local_connection_info;
                f.uui = e.user_data.as_ref();
                f.corr = e.correlator_data.as_ref();
                f.trunk =
                    e.network_calling_device.is_some() || e.associated_calling_device.is_some();
                self.alerting(dev, &f, now, out);
            }
            Event::Offered(e) => {
                let mut f = Facts::new(&e.offered_connection, &e.offered_device, e.cause);
                f.calling = Some(&e.calling_device);
                f.called = Some(&e.called_device);
                f.lcs = e.local_connection_info;
                f.uui = e.user_data.as_ref();
                f.corr = e.correlator_data.as_ref();
                f.trunk =
                    e.network_calling_device.is_some() || e.associated_calling_device.is_some();
                self.alerting(dev, &f, now, out);
            }
            Event::Established(e) => {
                let mut f = Facts::new(&e.established_connection, &e.answering_device, e.cause);
                f.calling = Some(&e.calling_device);
                f.called = Some(&e.called_device);
                f.lcs = e.local_connection_info;
                f.uui = e.user_data.as_ref();
                f.corr = e.correlator_data.as_ref();
                f.trunk =
                    e.network_calling_device.is_some() || e.associated_calling_device.is_some();
                self.established(dev, &f, now, out);
            }
            Event::Held(e) => {
                let mut f = Facts::new(&e.held_connection, &e.holding_device, e.cause);
                f.lcs = e.local_connection_info;
                f.corr = e.correlator_data.as_ref();
                self.hold_change(dev, &f, true, now, out);
            }
            Event::Retrieved(e) => {
                let mut f = Facts::new(&e.retrieved_connection, &e.retrieving_device, e.cause);
                f.lcs = e.local_connection_info;
                f.corr = e.correlator_data.as_ref();
                self.hold_change(dev, &f, false, now, out);
            }
            Event::Queued(e) => {
                let mut f = Facts::new(&e.queued_connection, &e.queue, e.cause);
                f.calling = Some(&e.calling_device);
                f.called = Some(&e.called_device);
                f.lcs = e.local_connection_info;
                f.uui = e.user_data.as_ref();
                f.corr = e.correlator_data.as_ref();
                f.trunk =
                    e.network_calling_device.is_some() || e.associated_calling_device.is_some();
                self.queued(dev, &f, now, out);
            }
            Event::Diverted(e) => {
                let mut f = Facts::new(&e.connection, &e.diverting_device, e.cause);
                f.calling = e.calling_device.as_ref();
                f.called = e.called_device.as_ref();
                f.lcs = e.local_connection_info;
                f.uui = e.user_data.as_ref();
                f.corr = e.correlator_data.as_ref();
                self.diverted(dev, &f, &e.new_destination, now, out);
            }
            Event::Failed(e) => {
                let mut f = Facts::new(&e.failed_connection, &e.failing_device, e.cause);
                f.calling = Some(&e.calling_device);
                f.called = Some(&e.called_device);
                f.lcs = e.local_connection_info;
                f.uui = e.user_data.as_ref();
                f.corr = e.correlator_data.as_ref();
                self.failed(dev, &f, now, out);
            }
            Event::ConnectionCleared(e) => {
                let mut f = Facts::new(&e.dropped_connection, &e.releasing_device, e.cause);
                f.lcs = e.local_connection_info;
                self.connection_cleared(dev, &f, now, out);
            }
            Event::CallCleared(e) => {
                if let Some(call) = e.cleared_call.call_id() {
                    // ended everywhere: a resync in progress must not bring it back
                    self.note_gone(dev, call);
                    let mut ids = Vec::new();
                    while let Some(k) = self.find(dev, call) {
                        ids.push(self.iid(dev, k));
                        self.release(dev, k, cause_name(e.cause), now, CallExtra::default(), out);
                    }
                    self.call_cleared(call, &ids);
                }
            }
            Event::Transferred(e) => self.joined(
                dev,
                &Join {
                    transfer: true,
                    primary: &e.primary_old_call,
                    secondary: e.secondary_old_call.as_ref(),
                    actor: &e.transferring_device,
                    target: &e.transferred_to_device,
                    list: &e.transferred_connections,
                    cause: e.cause,
                    lcs: e.local_connection_info,
                    uui: e.user_data.as_ref(),
                    corr: e.correlator_data.as_ref(),
                },
                now,
                out,
            ),
            Event::Conferenced(e) => self.joined(
                dev,
                &Join {
                    transfer: false,
                    primary: &e.primary_old_call,
                    secondary: e.secondary_old_call.as_ref(),
                    actor: &e.conferencing_device,
                    target: &e.added_party,
                    list: &e.conference_connections,
                    cause: e.cause,
                    lcs: e.local_connection_info,
                    uui: e.user_data.as_ref(),
                    corr: e.correlator_data.as_ref(),
                },
                now,
                out,
            ),
            Event::DigitsGenerated(e) => {
                let Some(k) = e.connection.call_id().and_then(|c| self.find(dev, c)) else {
                    return;
                };
                let party = e.connection.device_number().filter(|n| *n != dev);
                let x = CallExtra {
                    digits: Some(e.digit_generated_list.clone()),
                    party: owned(party),
                    ..CallExtra::default()
                };
                self.emit(dev, k, EventKind::CallDtmf, None, x, out);
            }
            Event::CallInformation(e) => {
                let Some(k) = e.connection.call_id().and_then(|c| self.find(dev, c)) else {
                    return;
                };
                let Some(id) = self.view(dev, k).map(|v| v.interaction.clone()) else {
                    return;
                };
                if self.absorb(&id, e.user_data.as_ref(), e.correlator_data.as_ref()) {
                    self.emit(
                        dev,
                        k,
                        EventKind::CallUpdated,
                        None,
                        CallExtra::default(),
                        out,
                    );
                }
            }
            other => {
                tracing::trace!(
                    device = dev,
                    event = other.name(),
                    "not a call state change"
                );
            }
        }
    }

    /// The interaction id of a view.
    fn iid(&self, dev: &str, key: u64) -> String {
        self.view(dev, key)
            .map(|v| v.interaction.clone())
            .unwrap_or_default()
    }

    /// A view at `dev` for a call the device placed, created when the events that start
    /// it were missed.
    fn outgoing_view(
        &mut self,
        dev: &str,
        call: &Bytes,
        f: &Facts<'_>,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) -> Option<u64> {
        if let Some(k) = self.find(dev, call) {
            return Some(k);
        }
        if f.calling_number() != Some(dev) {
            return None;
        }
        let k = self.create(dev, call, f.seed(true), CallState::Dialing, out, now);
        let called = f.called_number().map(str::to_string);
        if let Some(v) = self.view_mut(dev, k) {
            v.outgoing = true;
            if let Some(c) = called {
                v.add_party(&c);
                v.other = Some(c);
            }
        }
        Some(k)
    }

    /// ServiceInitiated / Originated (ECMA-269 clause 17 events): the device starts a
    /// call, `call.dialing`; Originated after ServiceInitiated adds the called number
    /// (`call.updated`).
    fn initiated(
        &mut self,
        dev: &str,
        f: &Facts<'_>,
        originated: bool,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) {
        let Some(call) = f.conn.call_id() else { return };
        if !f.here(dev) {
            return;
        }
        let called = f.called_number().map(str::to_string);
        let mut fresh = false;
        let mut key = self.find(dev, call);
        if let Some(k) = key {
            let st = self.view(dev, k).map(|v| v.state);
            if !originated && st != Some(CallState::Dialing) {
                // a new call with the callID of a call still here: its end was missed
                self.release(dev, k, "superseded".into(), now, CallExtra::default(), out);
                key = None;
                fresh = true;
            }
        }
        match key {
            None => {
                let mut seed = f.seed(true);
                seed.ani = Some(dev.to_string());
                seed.ani_external = None;
                seed.fresh = fresh;
                let k = self.create(dev, call, seed, CallState::Dialing, out, now);
                if let Some(v) = self.view_mut(dev, k) {
                    v.outgoing = true;
                    v.conn = Some(f.conn.clone());
                    if let Some(c) = &called {
                        v.add_party(c);
                        v.other = Some(c.clone());
                    }
                }
                let id = self.iid(dev, k);
                self.absorb(&id, f.uui, f.corr);
                self.emit(
                    dev,
                    k,
                    EventKind::CallDialing,
                    Some(cause_name(f.cause)),
                    CallExtra::default(),
                    out,
                );
            }
            Some(k) => {
                let id = self.iid(dev, k);
                let mut changed = self.absorb(&id, f.uui, f.corr);
                if let (Some(c), Some(i)) = (&called, self.interactions.get_mut(&id)) {
                    if i.dnis.is_none() {
                        i.dnis = Some(c.clone());
                        changed = true;
                    }
                }
                if let Some(v) = self.view_mut(dev, k) {
                    v.conn = Some(f.conn.clone());
                    if let Some(c) = &called {
                        if early(v.state) && v.other.is_none() {
                            v.other = Some(c.clone());
                            v.add_party(c);
                            changed = true;
                        }
                    }
                }
                if changed {
                    self.emit(
                        dev,
                        k,
                        EventKind::CallUpdated,
                        None,
                        CallExtra::default(),
                        out,
                    );
                }
            }
        }
    }

    /// The device's view of `call`, or a new one offering at it (the caller as the other
    /// party) when the call is new here.
    fn find_or_offered(
        &mut self,
        dev: &str,
        call: &Bytes,
        f: &Facts<'_>,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) -> u64 {
        if let Some(k) = self.find(dev, call) {
            return k;
        }
        let k = self.create(dev, call, f.seed(false), CallState::Offering, out, now);
        let calling = f.calling_number().map(str::to_string);
        if let (Some(v), Some(c)) = (self.view_mut(dev, k), calling) {
            v.add_party(&c);
            v.other = Some(c);
        }
        k
    }

    /// Delivered / Offered (ECMA-269 clause 17 events): at the device, `call.offering`
    /// (once per interaction); elsewhere, for the caller, `call.ringback`.
    fn alerting(&mut self, dev: &str, f: &Facts<'_>, now: SystemTime, out: &mut Vec<Out>) {
        let Some(call) = f.conn.call_id() else { return };
        if f.here(dev) {
            let key = self.find_or_offered(dev, call, f, now, out);
            let id = self.iid(dev, key);
            let changed = self.absorb(&id, f.uui, f.corr);
            let Some(v) = self.view_mut(dev, key) else {
                return;
            };
            v.conn = Some(f.conn.clone());
            if v.state == CallState::Queued {
                v.state = CallState::Offering;
            }
            if !v.offered {
                v.offered = true;
                self.emit(
                    dev,
                    key,
                    EventKind::CallOffering,
                    Some(cause_name(f.cause)),
                    CallExtra::default(),
                    out,
                );
            } else if changed {
                self.emit(
                    dev,
                    key,
                    EventKind::CallUpdated,
                    None,
                    CallExtra::default(),
                    out,
                );
            }
            return;
        }
        let Some(key) = self.outgoing_view(dev, call, f, now, out) else {
            return;
        };
        let id = self.iid(dev, key);
        let mut changed = self.absorb(&id, f.uui, f.corr);
        let alerting = f.subject_number();
        let Some(v) = self.view_mut(dev, key) else {
            return;
        };
        if v.outgoing && matches!(v.state, CallState::Dialing | CallState::Queued) {
            v.state = CallState::Ringback;
            if let Some(a) = &alerting {
                v.parties.truncate(1);
                v.add_party(a);
                v.other = Some(a.clone());
            }
            self.emit(
                dev,
                key,
                EventKind::CallRingback,
                Some(cause_name(f.cause)),
                CallExtra::default(),
                out,
            );
            return;
        }
        if let Some(a) = &alerting {
            if v.outgoing && v.state == CallState::Ringback {
                changed |= v.other.as_deref() != Some(a.as_str());
                v.parties.truncate(1);
                v.add_party(a);
                v.other = Some(a.clone());
            } else {
                changed |= v.add_party(a);
            }
        }
        if changed {
            self.emit(
                dev,
                key,
                EventKind::CallUpdated,
                None,
                CallExtra::default(),
                out,
            );
        }
    }

    /// Established (ECMA-269 clause 17 event): the device answered, or the far end of its call
    /// did: `call.connected`.
    fn established(&mut self, dev: &str, f: &Facts<'_>, now: SystemTime, out: &mut Vec<Out>) {
        let Some(call) = f.conn.call_id() else { return };
        if f.here(dev) {
            let key = self.find_or_offered(dev, call, f, now, out);
            let id = self.iid(dev, key);
            self.absorb(&id, f.uui, f.corr);
            let Some(v) = self.view_mut(dev, key) else {
                return;
            };
            v.conn = Some(f.conn.clone());
            if v.state == CallState::Connected {
                return;
            }
            // the alerting was never reported: the screen pop comes now
            let pop = !v.offered && !v.outgoing;
            v.offered |= pop;
            if pop {
                self.emit(
                    dev,
                    key,
                    EventKind::CallOffering,
                    Some(cause_name(f.cause)),
                    CallExtra::default(),
                    out,
                );
            }
            let Some(v) = self.view_mut(dev, key) else {
                return;
            };
            v.state = CallState::Connected;
            v.answered.get_or_insert(now);
            self.emit(
                dev,
                key,
                EventKind::CallConnected,
                Some(cause_name(f.cause)),
                CallExtra::default(),
                out,
            );
            return;
        }
        let Some(key) = self.outgoing_view(dev, call, f, now, out) else {
            return;
        };
        let id = self.iid(dev, key);
        let mut changed = self.absorb(&id, f.uui, f.corr);
        let answering = f.subject_number();
        let Some(v) = self.view_mut(dev, key) else {
            return;
        };
        if v.outgoing && early(v.state) {
            v.state = CallState::Connected;
            v.answered.get_or_insert(now);
            if let Some(a) = &answering {
                v.parties.truncate(1);
                v.add_party(a);
                v.other = Some(a.clone());
            }
            self.emit(
                dev,
                key,
                EventKind::CallConnected,
                Some(cause_name(f.cause)),
                CallExtra::default(),
                out,
            );
            return;
        }
        if let Some(a) = &answering {
            changed |= v.add_party(a);
        }
        if changed {
            self.emit(
                dev,
                key,
                EventKind::CallUpdated,
                None,
                CallExtra::default(),
                out,
            );
        }
    }

    /// Held / Retrieved (ECMA-269 clause 17 events) of the device's own connection:
    /// `call.held` / `call.retrieved`. The far party holding is not reported.
    fn hold_change(
        &mut self,
        dev: &str,
        f: &Facts<'_>,
        held: bool,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) {
        let Some(call) = f.conn.call_id() else { return };
        if !f.here(dev) {
            return;
        }
        let (from, to, event) = if held {
            (CallState::Connected, CallState::Held, EventKind::CallHeld)
        } else {
            (
                CallState::Held,
                CallState::Connected,
                EventKind::CallRetrieved,
            )
        };
        let key = match self.find(dev, call) {
            Some(k) => k,
            None => self.create(dev, call, Seed::default(), from, out, now),
        };
        let id = self.iid(dev, key);
        self.absorb(&id, f.uui, f.corr);
        let Some(v) = self.view_mut(dev, key) else {
            return;
        };
        v.conn = Some(f.conn.clone());
        if v.state == to {
            return;
        }
        v.state = to;
        if !held {
            v.answered.get_or_insert(now);
        }
        self.emit(
            dev,
            key,
            event,
            Some(cause_name(f.cause)),
            CallExtra::default(),
            out,
        );
    }

    /// Queued (ECMA-269 clause 17 event): at the device (an ACD group) or the caller's call
    /// waits in a queue: `call.queued`.
    fn queued(&mut self, dev: &str, f: &Facts<'_>, now: SystemTime, out: &mut Vec<Out>) {
        let Some(call) = f.conn.call_id() else { return };
        let queue = f.subject_number();
        let key = if f.here(dev) {
            let key = match self.find(dev, call) {
                Some(k) => k,
                None => {
                    let k = self.create(dev, call, f.seed(false), CallState::Released, out, now);
                    let calling = f.calling_number().map(str::to_string);
                    if let Some(v) = self.view_mut(dev, k) {
                        if let Some(c) = calling {
                            v.add_party(&c);
                            v.other = Some(c);
                        }
                    }
                    k
                }
            };
            if let Some(v) = self.view_mut(dev, key) {
                v.conn = Some(f.conn.clone());
                if matches!(v.state, CallState::Queued | CallState::Connected) {
                    return;
                }
            }
            key
        } else {
            let Some(key) = self.outgoing_view(dev, call, f, now, out) else {
                return;
            };
            match self.view_mut(dev, key) {
                Some(v)
                    if v.outgoing
                        && matches!(v.state, CallState::Dialing | CallState::Ringback) =>
                {
                    if let Some(q) = &queue {
                        v.parties.truncate(1);
                        v.add_party(q);
                        v.other = Some(q.clone());
                    }
                }
                _ => return,
            }
            key
        };
        let id = self.iid(dev, key);
        self.absorb(&id, f.uui, f.corr);
        if let Some(v) = self.view_mut(dev, key) {
            v.state = CallState::Queued;
        }
        self.emit(
            dev,
            key,
            EventKind::CallQueued,
            Some(cause_name(f.cause)),
            CallExtra::default(),
            out,
        );
    }

    /// Diverted (ECMA-269 clause 17 event): away from the device, `call.diverted` then
    /// `call.released`; elsewhere (the caller's call was redirected), `call.diverted`
    /// with the new far party.
    fn diverted(
        &mut self,
        dev: &str,
        f: &Facts<'_>,
        to: &Party,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) {
        let Some(key) = f.conn.call_id().and_then(|c| self.find(dev, c)) else {
            return;
        };
        let id = self.iid(dev, key);
        self.absorb(&id, f.uui, f.corr);
        let to = to.number().map(str::to_string);
        let from = f.subject_number();
        let x = from_to(from.as_deref(), to.as_deref());
        let cause = cause_name(f.cause);
        if f.here(dev) {
            self.emit(
                dev,
                key,
                EventKind::CallDiverted,
                Some(cause.clone()),
                x,
                out,
            );
            self.release(dev, key, cause, now, CallExtra::default(), out);
            return;
        }
        if let (Some(v), Some(t)) = (self.view_mut(dev, key), &to) {
            if v.outgoing && early(v.state) {
                v.parties.truncate(1);
                v.other = Some(t.clone());
            } else {
                if let Some(fr) = &from {
                    v.parties.retain(|p| p != fr);
                }
                if v.parties.len() <= 2 {
                    v.other = Some(t.clone());
                }
            }
            v.add_party(t);
        }
        self.emit(dev, key, EventKind::CallDiverted, Some(cause), x, out);
    }

    /// Failed (ECMA-269 clause 17 event): the device's call cannot go on (busy, invalid number):
    /// `call.failed`; the view stays until the device clears.
    fn failed(&mut self, dev: &str, f: &Facts<'_>, now: SystemTime, out: &mut Vec<Out>) {
        let Some(call) = f.conn.call_id() else { return };
        let here = f.here(dev);
        let key = match self.find(dev, call) {
            Some(k) => k,
            None if here => self.create(dev, call, f.seed(false), CallState::Offering, out, now),
            None => match self.outgoing_view(dev, call, f, now, out) {
                Some(k) => k,
                None => return,
            },
        };
        let id = self.iid(dev, key);
        self.absorb(&id, f.uui, f.corr);
        let failing = f.subject_number();
        let Some(v) = self.view_mut(dev, key) else {
            return;
        };
        if v.state == CallState::Failed {
            return;
        }
        v.state = CallState::Failed;
        if !here && v.outgoing {
            if let Some(fl) = &failing {
                v.parties.truncate(1);
                v.add_party(fl);
                v.other = Some(fl.clone());
            }
        }
        self.emit(
            dev,
            key,
            EventKind::CallFailed,
            Some(cause_name(f.cause)),
            CallExtra::default(),
            out,
        );
    }

    /// ConnectionCleared (ECMA-269 clause 17 event): the device's own connection, `call.released`;
    /// another party of a conference, `call.party_left`.
    fn connection_cleared(
        &mut self,
        dev: &str,
        f: &Facts<'_>,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) {
        let Some(call) = f.conn.call_id() else {
            return;
        };
        let here = f.here(dev) || f.lcs == Some(LocalConnectionState::Null);
        let Some(key) = self.find(dev, call) else {
            if here {
                // a call the device has no view of (yet) ended there: a resync in progress
                // whose snapshot lists it must not bring it back
                let call = call.clone();
                self.note_gone(dev, &call);
            }
            return;
        };
        if here {
            self.release(
                dev,
                key,
                cause_name(f.cause),
                now,
                CallExtra::default(),
                out,
            );
            return;
        }
        let Some(party) = f.subject_number() else {
            return;
        };
        let Some(v) = self.view_mut(dev, key) else {
            return;
        };
        if v.parties.len() <= 2 || !v.parties.contains(&party) {
            return;
        }
        v.parties.retain(|p| *p != party);
        if v.parties.len() == 2 {
            v.other = v.parties.get(1).cloned();
        } else if v.other.as_deref() == Some(party.as_str()) {
            v.other = None;
        }
        let x = CallExtra {
            party: Some(party.clone()),
            ..CallExtra::default()
        };
        self.emit(
            dev,
            key,
            EventKind::CallPartyLeft,
            Some(cause_name(f.cause)),
            x,
            out,
        );
    }

    /// Transferred / Conferenced (ECMA-269 clause 17 events): the calls become one that
    /// keeps the original interaction (the primary one, or the one the other was a
    /// consultation of). The transferring device leaves (`call.transferred`, then
    /// `call.released` for its calls); every other device's view now shows the resulting
    /// call with that interaction's id and variables (`call.transferred` /
    /// `call.conferenced`, `replaces` when the view's id changed).
    fn joined(&mut self, dev: &str, j: &Join<'_>, now: SystemTime, out: &mut Vec<Out>) {
        let px = j.primary.call_id().cloned();
        let sx = j.secondary.and_then(ConnectionId::call_id).cloned();
        let Some(rx) = j
            .list
            .iter()
            .find_map(|e| e.new_connection.as_ref()?.call_id().cloned())
            .or_else(|| px.clone())
        else {
            return;
        };
        let ip = px.as_ref().and_then(|c| self.old_interaction(dev, c));
        let is = sx.as_ref().and_then(|c| self.old_interaction(dev, c));
        let related_of = |t: &Tracker, x: &str| -> Option<String> {
            t.interactions.get(x).and_then(|i| i.related.clone())
        };
        let (survivor, other) = match (ip, is) {
            (Some(p), Some(s)) if p == s => (Some(p), None),
            (Some(p), Some(s)) => {
                if related_of(self, &p).as_deref() == Some(s.as_str())
                    && related_of(self, &s).as_deref() != Some(p.as_str())
                {
                    (Some(s), Some(p))
                } else {
                    (Some(p), Some(s))
                }
            }
            (Some(p), None) => (Some(p), None),
            (None, s) => (s, None),
        };
        let olds: Vec<&Bytes> = px.iter().chain(sx.iter()).collect();
        if let Some(s) = &survivor {
            self.merge(s, other.as_deref(), &olds, &rx);
            self.absorb(s, j.uui, j.corr);
        }
        let cause = cause_name(j.cause);
        let actor = j
            .actor
            .number()
            .or_else(|| j.primary.device_number())
            .map(str::to_string);
        let target = j.target.number().map(str::to_string);
        let mine: Vec<u64> = self
            .keys(dev)
            .into_iter()
            .filter(|k| {
                self.view(dev, *k).is_some_and(|v| {
                    olds.iter().any(|c| **c == v.call)
                        || v.call == rx
                        || Some(&v.interaction) == survivor.as_ref()
                })
            })
            .collect();

        if j.transfer && actor.as_deref() == Some(dev) {
            // the transferring device leaves: the original interaction first
            let mut order = mine;
            order.sort_by_key(|k| {
                self.view(dev, *k)
                    .map(|v| Some(&v.interaction) != survivor.as_ref())
            });
            for (n, k) in order.into_iter().enumerate() {
                if n == 0 {
                    if let Some(v) = self.view(dev, k) {
                        out.push(Out::Call {
                            event: EventKind::CallTransferred,
                            device: dev.to_string(),
                            call: self.render(v, Some(CallState::Released), Some(now)),
                            cause: Some(cause.clone()),
                            extra: from_to(Some(dev), target.as_deref()),
                        });
                    }
                }
                self.release(dev, k, cause.clone(), now, CallExtra::default(), out);
            }
            return;
        }

        let my_conn = j
            .list
            .iter()
            .find(|e| entry_device(e) == Some(dev))
            .and_then(|e| e.new_connection.clone());
        let keep = match mine
            .iter()
            .copied()
            .find(|k| self.view(dev, *k).map(|v| Some(&v.interaction)) == Some(survivor.as_ref()))
            .or_else(|| mine.first().copied())
        {
            Some(k) => k,
            None if my_conn.is_some() => {
                // the device joins a call it had not seen
                let seed = Seed::default();
                self.create(dev, &rx, seed, CallState::Connected, out, now)
            }
            None => return,
        };
        // the device was offered the merged call if it was offered any of its views
        let offered = mine
            .iter()
            .any(|k| self.view(dev, *k).is_some_and(|v| v.offered));
        let mut replaced: Vec<String> = Vec::new();
        for k in mine.iter().copied().filter(|k| *k != keep) {
            if let Some(id) = self.drop_view(dev, k) {
                if Some(&id) != survivor.as_ref() && !replaced.contains(&id) {
                    replaced.push(id);
                }
            }
        }
        if let Some(s) = &survivor {
            if let Some(old) = self.repoint(dev, keep, s) {
                if !replaced.contains(&old) {
                    replaced.insert(0, old);
                }
            }
        }
        let mut parties: Vec<String> = vec![dev.to_string()];
        for e in j.list {
            if let Some(n) = entry_device(e) {
                let leaving = j.transfer && actor.as_deref() == Some(n);
                if !leaving && !parties.iter().any(|p| p == n) {
                    parties.push(n.to_string());
                }
            }
        }
        let Some(v) = self.view_mut(dev, keep) else {
            return;
        };
        v.call = rx.clone();
        v.conn = my_conn;
        v.offered |= offered;
        if let Some(s) = state_of(j.lcs) {
            v.state = s;
        } else if !j.transfer {
            v.state = CallState::Connected;
        }
        if v.state == CallState::Connected {
            v.answered.get_or_insert(now);
        }
        if parties.len() > 1 {
            v.parties = parties;
        } else if let Some(a) = &actor {
            // no list: at least the transferring device is gone
            if j.transfer {
                v.parties.retain(|p| p != a);
            }
            if let Some(t) = &target {
                v.add_party(t);
            }
        }
        if v.parties.len() == 2 {
            v.other = v.parties.get(1).cloned();
        }
        let (event, mut x) = if j.transfer {
            (
                EventKind::CallTransferred,
                from_to(actor.as_deref(), target.as_deref()),
            )
        } else {
            (
                EventKind::CallConferenced,
                CallExtra {
                    conferencing: owned(actor.as_deref()),
                    added: owned(target.as_deref()),
                    ..CallExtra::default()
                },
            )
        };
        x.replaces = replaced;
        self.emit(dev, keep, event, Some(cause), x, out);
    }
}
