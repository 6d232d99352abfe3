//! Resynchronising a device with the switch's SnapshotDevice answer (after a link outage, a
//! switch restart, lost messages, a new monitor).
//!
//! The snapshot is taken while events keep coming, so the tracker marks the device first
//! ([`Tracker::begin_resync`]) and applies the answer later ([`Tracker::apply_resync`]):
//! whatever events did to the device's calls after the mark wins over the snapshot (a
//! call an event created, changed or released in between is left as the events made it).
//! A call is released with cause `resync` only when the answer positively shows it is
//! gone: it was read completely (every entry names its call) and does not list the call,
//! or lists it with this device's connection `null`. A call whose state the answer does not
//! give (`unknown`, an unreadable form) keeps its state; a new one is created (offered
//! once) with what SnapshotCall told of it.

use super::calls::state_of;
use super::tracker::{Out, Seed, Tracker};
use super::view::{CallExtra, CallState, EventKind};
use bytes::Bytes;
use ctigate_csta_model::ops::{
    SnapshotCallInfo, SnapshotCallResult, SnapshotData, SnapshotDeviceResult, SnapshotState,
};
use ctigate_csta_model::types::Party;
use ctigate_csta_model::types::{ConnectionId, LocalConnectionState};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// At most this many resyncs in progress are remembered (a mark beyond evicts the oldest,
/// whose answer then changes nothing: the caller retries).
const MAX_MARKS: usize = 4096;
/// Call ids released during one resync that are remembered for it.
const MAX_RELEASED: usize = 1024;

/// A resync in progress (see [`Tracker::begin_resync`]).
#[derive(Debug)]
pub(super) struct Mark {
    id: u64,
    device: String,
    /// The device's views when the resync began: (key, state, callID).
    before: Vec<(u64, CallState, Bytes)>,
    /// CallIDs whose view at the device ended (released, merged) since.
    pub(super) released: Vec<Bytes>,
    /// CallIDs an event at the device was about since (the events know better than the
    /// snapshot, even when the view's state did not change).
    touched: Vec<Bytes>,
}

/// The resyncs in progress, found by device (every event at a device looks for its marks:
/// no scan of the others) and by id (oldest first).
#[derive(Debug, Default)]
pub(super) struct Marks {
    by_device: crate::FastMap<String, Vec<Mark>>,
    by_id: BTreeMap<u64, String>,
}

impl Marks {
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn push(&mut self, m: Mark) {
        self.by_id.insert(m.id, m.device.clone());
        self.by_device.entry(m.device.clone()).or_default().push(m);
    }

    fn remove(&mut self, id: u64) -> Option<Mark> {
        let device = self.by_id.remove(&id)?;
        let list = self.by_device.get_mut(&device)?;
        let pos = list.iter().position(|m| m.id == id)?;
        let m = list.remove(pos);
        if list.is_empty() {
            self.by_device.remove(&device);
        }
        Some(m)
    }

    fn oldest(&self) -> Option<u64> {
        self.by_id.keys().next().copied()
    }

    fn at(&mut self, device: &str) -> impl Iterator<Item = &mut Mark> {
        self.by_device.get_mut(device).into_iter().flatten()
    }

    /// Forget every mark of `device` (its monitor stopped).
    pub(super) fn forget(&mut self, device: &str) {
        for m in self.by_device.remove(device).unwrap_or_default() {
            self.by_id.remove(&m.id);
        }
    }
}

/// One call of a SnapshotDevice answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapEntry {
    /// The device's connection in the call (`connectionIdentifier`).
    pub conn: ConnectionId,
    /// The device's connection state, as far as the answer tells it.
    pub state: SnapshotState,
    /// What SnapshotCall told of the call (asked for calls the tracker does not know).
    pub call: Option<SnapCall>,
}

impl SnapEntry {
    pub fn new(conn: ConnectionId, state: SnapshotState) -> SnapEntry {
        SnapEntry {
            conn,
            state,
            call: None,
        }
    }

    /// The calls of a SnapshotDevice result; `None` for an answer by reference (the link
    /// gives the collected segments as `snapshotData`, so this means they were not).
    pub fn from_result(r: &SnapshotDeviceResult) -> Option<Vec<SnapEntry>> {
        match &r.data {
            SnapshotData::Data(l) => Some(
                l.iter()
                    .map(|i| SnapEntry::new(i.connection_identifier.clone(), i.state()))
                    .collect(),
            ),
            SnapshotData::ServiceCrossRefId(_) => None,
        }
    }
}

impl SnapCall {
    /// What a SnapshotCall result tells: the calling and called numbers, the devices on the
    /// call with their states (none for an answer by reference, which this gateway does
    /// not collect).
    pub fn from_result(r: &SnapshotCallResult) -> SnapCall {
        let number = |p: &Party| p.number().map(str::to_string);
        let parties = match &r.data {
            SnapshotCallInfo::Data(l) => l
                .iter()
                .filter_map(|i| Some((number(&i.device_on_call)?, i.local_connection_state)))
                .collect(),
            SnapshotCallInfo::ServiceCrossRefId(_) => Vec::new(),
        };
        SnapCall {
            calling: r.calling_device.as_ref().and_then(number),
            called: r.called_device.as_ref().and_then(number),
            parties,
        }
    }
}

/// The SnapshotCall answer for one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapCall {
    /// callingDevice, calledDevice (numbers; `None` when not known).
    pub calling: Option<String>,
    pub called: Option<String>,
    /// The devices on the call with their connection states.
    pub parties: Vec<(String, Option<LocalConnectionState>)>,
}

impl Tracker {
    /// Mark `device` before its snapshot is asked for; the mark's id for
    /// [`Tracker::apply_resync`] (or [`Tracker::cancel_resync`] when no answer comes).
    pub fn begin_resync(&mut self, device: &str) -> u64 {
        if self.marks.len() >= MAX_MARKS {
            if let Some(oldest) = self.marks.oldest() {
                tracing::warn!(
                    device,
                    "too many resyncs in progress: the oldest is given up"
                );
                self.marks.remove(oldest);
            }
        }
        self.next_mark += 1;
        let before = self.devices.get(device).map_or_else(Vec::new, |d| {
            d.calls
                .iter()
                .map(|v| (v.key, v.state, v.call.clone()))
                .collect()
        });
        self.marks.push(Mark {
            id: self.next_mark,
            device: device.to_string(),
            before,
            released: Vec::new(),
            touched: Vec::new(),
        });
        self.next_mark
    }

    /// Forget a resync that got no answer.
    pub fn cancel_resync(&mut self, mark: u64) {
        self.marks.remove(mark);
    }

    /// Resyncs in progress (for tests and status).
    pub fn resyncs_in_progress(&self) -> usize {
        self.marks.len()
    }

    /// A view of `call` at `device` ended: the resyncs in progress there must not bring it
    /// back.
    pub(super) fn note_gone(&mut self, device: &str, call: &Bytes) {
        self.note(device, call, |m| &mut m.released);
    }

    /// An event at `device` was about `call`: the resyncs in progress there leave its view
    /// to the events.
    pub(super) fn note_touched(&mut self, device: &str, call: &Bytes) {
        self.note(device, call, |m| &mut m.touched);
    }

    /// Add `call` to a list of every resync in progress at `device` (once, bounded).
    fn note(&mut self, device: &str, call: &Bytes, list: impl Fn(&mut Mark) -> &mut Vec<Bytes>) {
        for m in self.marks.at(device) {
            let l = list(m);
            if l.len() < MAX_RELEASED && !l.contains(call) {
                l.push(call.clone());
            }
        }
    }

    /// The calls of `entries` the tracker has no view of at `device` (to ask SnapshotCall).
    pub fn unknown_calls<'a>(
        &self,
        device: &str,
        entries: &'a [SnapEntry],
    ) -> Vec<&'a ConnectionId> {
        entries
            .iter()
            .filter(|e| e.state != SnapshotState::Known(LocalConnectionState::Null))
            .filter(|e| {
                e.conn
                    .call_id()
                    .is_some_and(|c| self.find(device, c).is_none())
            })
            .map(|e| &e.conn)
            .collect()
    }

    /// Apply the SnapshotDevice answer taken after `mark` (see the module documentation);
    /// the events it means, with cause `resync`. An unknown mark (cancelled, evicted)
    /// changes nothing.
    pub fn apply_resync(&mut self, mark: u64, entries: &[SnapEntry], now: SystemTime) -> Vec<Out> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        let Some(m) = self.marks.remove(mark) else {
            return out;
        };
        let device = m.device.as_str();
        let untouched = |key: u64, state: CallState, call: &Bytes| {
            !m.touched.contains(call)
                && m.before
                    .iter()
                    .any(|(k, s, c)| *k == key && *s == state && c == call)
        };
        // every entry names its call: a call it does not list is gone
        let complete = entries.iter().all(|e| e.conn.call_id().is_some());
        let listed = |call: &Bytes| {
            entries.iter().any(|e| {
                e.conn.call_id() == Some(call)
                    && e.state != SnapshotState::Known(LocalConnectionState::Null)
            })
        };
        let said_gone = |call: &Bytes| {
            entries.iter().any(|e| {
                e.conn.call_id() == Some(call)
                    && e.state == SnapshotState::Known(LocalConnectionState::Null)
            })
        };
        let gone: Vec<u64> = self.devices.get(device).map_or_else(Vec::new, |d| {
            d.calls
                .iter()
                .filter(|v| untouched(v.key, v.state, &v.call))
                .filter(|v| said_gone(&v.call) || (complete && !listed(&v.call)))
                .map(|v| v.key)
                .collect()
        });
        for k in gone {
            self.release(
                device,
                k,
                "resync".into(),
                now,
                CallExtra::default(),
                &mut out,
            );
        }
        for e in entries {
            let Some(call) = e.conn.call_id() else {
                continue;
            };
            let known = match e.state {
                SnapshotState::Known(LocalConnectionState::Null) => continue,
                SnapshotState::Known(s) => Some(s),
                SnapshotState::Unknown => None,
            };
            match self.find(device, call) {
                Some(key) => {
                    let Some(v) = self.view(device, key) else {
                        continue;
                    };
                    if !untouched(v.key, v.state, &v.call) {
                        continue; // events after the mark know better
                    }
                    if let Some(lcs) = known {
                        self.resync_state(device, key, lcs, &e.conn, now, &mut out);
                    }
                }
                None if m.released.iter().any(|c| c[..] == *call) => {} // ended since
                None => self.resync_new(device, e, known, now, &mut out),
            }
        }
        out
    }

    /// A known call's state as the snapshot gives it: the event of the new state.
    fn resync_state(
        &mut self,
        device: &str,
        key: u64,
        lcs: LocalConnectionState,
        conn: &ConnectionId,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) {
        let Some(st) = state_of(Some(lcs)) else {
            return;
        };
        let Some(v) = self.view_mut(device, key) else {
            return;
        };
        if v.conn.is_none() {
            v.conn = Some(conn.clone());
        }
        let was = v.state;
        // the caller's connection is connected (ECMA-269) while dialing, hearing ringback,
        // queued or hearing busy tone (failed): the snapshot cannot tell these apart
        let same = was == st
            || (st == CallState::Connected
                && v.outgoing
                && matches!(
                    was,
                    CallState::Dialing
                        | CallState::Ringback
                        | CallState::Queued
                        | CallState::Failed
                ));
        if same {
            return;
        }
        v.state = st;
        let event = match st {
            CallState::Offering if v.offered => return,
            CallState::Offering => {
                v.offered = true;
                EventKind::CallOffering
            }
            CallState::Dialing => EventKind::CallDialing,
            CallState::Connected if was == CallState::Held => EventKind::CallRetrieved,
            CallState::Connected => {
                v.answered.get_or_insert(now);
                EventKind::CallConnected
            }
            CallState::Held => EventKind::CallHeld,
            CallState::Queued => EventKind::CallQueued,
            CallState::Failed => EventKind::CallFailed,
            CallState::Ringback | CallState::Released => return,
        };
        self.emit(
            device,
            key,
            event,
            Some("resync".into()),
            CallExtra::default(),
            out,
        );
    }

    /// A call the device has that the tracker did not know: a view with what the snapshots
    /// tell, and the event of its state (`call.offering` when it alerts).
    fn resync_new(
        &mut self,
        device: &str,
        e: &SnapEntry,
        known: Option<LocalConnectionState>,
        now: SystemTime,
        out: &mut Vec<Out>,
    ) {
        let Some(call) = e.conn.call_id().cloned() else {
            return;
        };
        let info = e.call.clone().unwrap_or_default();
        // the state: the device snapshot's, else SnapshotCall's entry for the device, else
        // connected (the call is there; the next event corrects it)
        let lcs = known
            .or_else(|| {
                info.parties
                    .iter()
                    .find(|(d, _)| d == device)
                    .and_then(|(_, s)| *s)
            })
            .unwrap_or(LocalConnectionState::Connected);
        let Some(mut st) = state_of(Some(lcs)) else {
            return;
        };
        let outgoing = st == CallState::Dialing || info.calling.as_deref() == Some(device);
        let far: Vec<&(String, Option<LocalConnectionState>)> =
            info.parties.iter().filter(|(d, _)| d != device).collect();
        if st == CallState::Connected && outgoing {
            // the caller's connected connection: what the far end does says more
            match far.first().and_then(|(_, s)| *s) {
                Some(LocalConnectionState::Alerting) => st = CallState::Ringback,
                Some(LocalConnectionState::Queued) => st = CallState::Queued,
                Some(LocalConnectionState::Fail) => st = CallState::Failed,
                _ => {}
            }
        }
        let seed = Seed {
            ani: info.calling.clone(),
            dnis: info.called.clone(),
            inside: outgoing,
            ..Seed::default()
        };
        let before = self.keys(device);
        let key = self.create(device, &call, seed, st, out, now);
        if before.contains(&key) {
            // the callID belongs to an interaction the device already has a view of (under
            // another callID: a transfer it was not told of); that view now follows this
            // callID and is brought to the snapshot's state like any known call
            if let Some(lcs) = known {
                self.resync_state(device, key, lcs, &e.conn, now, out);
            }
            return;
        }
        let other = far
            .first()
            .map(|(d, _)| d.clone())
            .or_else(|| {
                if outgoing {
                    info.called.clone()
                } else {
                    info.calling.clone()
                }
            })
            .filter(|o| o != device);
        let Some(v) = self.view_mut(device, key) else {
            return;
        };
        v.conn = Some(e.conn.clone());
        v.state = st;
        v.outgoing = outgoing;
        if v.other.is_none() {
            v.other = other;
        }
        for (d, _) in &far {
            v.add_party(d);
        }
        let event = match st {
            CallState::Offering => {
                v.offered = true;
                EventKind::CallOffering
            }
            CallState::Dialing => EventKind::CallDialing,
            CallState::Ringback => EventKind::CallRingback,
            CallState::Connected => {
                v.answered.get_or_insert(now);
                EventKind::CallConnected
            }
            CallState::Held => EventKind::CallHeld,
            CallState::Queued => EventKind::CallQueued,
            CallState::Failed => EventKind::CallFailed,
            CallState::Released => return,
        };
        self.emit(
            device,
            key,
            event,
            Some("resync".into()),
            CallExtra::default(),
            out,
        );
    }

    /// Align the device with a snapshot of (connection, state) pairs in one step (no
    /// events in between): [`Tracker::begin_resync`] and [`Tracker::apply_resync`].
    pub fn resync(
        &mut self,
        device: &str,
        snapshot: &[(ConnectionId, LocalConnectionState)],
        now: SystemTime,
    ) -> Vec<Out> {
        let mark = self.begin_resync(device);
        let entries: Vec<SnapEntry> = snapshot
            .iter()
            .map(|(c, s)| SnapEntry::new(c.clone(), SnapshotState::Known(*s)))
            .collect();
        self.apply_resync(mark, &entries, now)
    }
}
