//! The monitor table: which devices the owner wants monitored and, while the association
//! lasts, the MonitorCrossRefID the switch gave each (ECMA-285 monitor-start:
//! `MonitorStartResult ::= SEQUENCE { crossRefIdentifier MonitorCrossRefID, ... }`,
//! `MonitorCrossRefID ::= [APPLICATION 21] IMPLICIT OCTET STRING`). Event reports carry
//! the cross reference; this table turns it back into the device.
//!
//! A device is *remembered* once a MonitorStart for it succeeded: it is monitored again
//! after every reconnect or switch restart until the owner unmonitors it or the switch
//! refuses it.

use ctigate_csta_model::types::MonitorCrossRefId;
use std::collections::BTreeMap;

/// Where one device's monitor stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorState {
    /// MonitorStart sent with this invoke id; waiting for its answer.
    ExpectStartResult { invoke: i64 },
    /// Monitored: events carry this cross reference.
    Active(MonitorCrossRefId),
    /// Remembered but not monitored now: waiting for the association (or for the switch to
    /// come back from a restart) to be monitored again.
    ExpectRemonitor,
}

#[derive(Debug, Clone)]
struct Entry {
    remembered: bool,
    state: MonitorState,
}

/// Devices and their cross references; both directions kept in step.
#[derive(Debug, Default)]
pub struct MonitorTable {
    devices: BTreeMap<String, Entry>,
    xrefs: crate::FastMap<MonitorCrossRefId, String>,
}

impl MonitorTable {
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn state(&self, device: &str) -> Option<&MonitorState> {
        self.devices.get(device).map(|e| &e.state)
    }

    /// Whether the device is kept across reconnects.
    pub fn remembered(&self, device: &str) -> bool {
        self.devices.get(device).is_some_and(|e| e.remembered)
    }

    /// The device a cross reference belongs to.
    pub fn device_of(&self, xref: &MonitorCrossRefId) -> Option<&str> {
        self.xrefs.get(xref).map(String::as_str)
    }

    /// The cross reference of an active monitor.
    pub fn xref_of(&self, device: &str) -> Option<&MonitorCrossRefId> {
        match self.state(device)? {
            MonitorState::Active(x) => Some(x),
            _ => None,
        }
    }

    /// A MonitorStart went out for `device` (new, or remembered and being re-established).
    pub fn starting(&mut self, device: &str, invoke: i64) {
        self.unlink(device);
        let e = self
            .devices
            .entry(device.to_string())
            .or_insert_with(|| Entry {
                remembered: false,
                state: MonitorState::ExpectRemonitor,
            });
        e.state = MonitorState::ExpectStartResult { invoke };
    }

    /// MonitorStart succeeded: the device is active with `xref` and remembered.
    pub fn activate(&mut self, device: &str, xref: MonitorCrossRefId) {
        // a copy of its own: the decoded cross reference is a slice of the frame it came
        // in, and would keep the whole read buffer alive for as long as the monitor lasts
        // (kilobytes per device when few answers share a read)
        let xref = MonitorCrossRefId::new(&xref.0);
        self.unlink(device);
        if let Some(old) = self.xrefs.insert(xref.clone(), device.to_string()) {
            // the switch reused a cross reference: the older monitor is gone
            if old != device {
                if let Some(e) = self.devices.get_mut(&old) {
                    e.state = MonitorState::ExpectRemonitor;
                }
            }
        }
        let e = self
            .devices
            .entry(device.to_string())
            .or_insert_with(|| Entry {
                remembered: true,
                state: MonitorState::ExpectRemonitor,
            });
        e.remembered = true;
        e.state = MonitorState::Active(xref);
    }

    /// The device waits to be monitored again (its cross reference is forgotten).
    pub fn suspend(&mut self, device: &str) {
        self.unlink(device);
        if let Some(e) = self.devices.get_mut(device) {
            e.state = MonitorState::ExpectRemonitor;
        }
    }

    /// Every remembered device waits to be monitored again; the others are dropped. Returns
    /// the devices that were active.
    pub fn suspend_all(&mut self) -> Vec<String> {
        self.xrefs.clear();
        self.devices.retain(|_, e| e.remembered);
        let mut was_active = Vec::new();
        for (d, e) in self.devices.iter_mut() {
            if matches!(e.state, MonitorState::Active(_)) {
                was_active.push(d.clone());
            }
            e.state = MonitorState::ExpectRemonitor;
        }
        was_active
    }

    /// Forget a device; its state before.
    pub fn remove(&mut self, device: &str) -> Option<MonitorState> {
        self.unlink(device);
        self.devices.remove(device).map(|e| e.state)
    }

    /// The devices waiting to be monitored again.
    pub fn waiting(&self) -> impl Iterator<Item = &str> {
        self.devices
            .iter()
            .filter(|(_, e)| e.state == MonitorState::ExpectRemonitor)
            .map(|(d, _)| d.as_str())
    }

    /// The active devices.
    pub fn active(&self) -> impl Iterator<Item = &str> {
        self.devices
            .iter()
            .filter(|(_, e)| matches!(e.state, MonitorState::Active(_)))
            .map(|(d, _)| d.as_str())
    }

    fn unlink(&mut self, device: &str) {
        if let Some(Entry {
            state: MonitorState::Active(x),
            ..
        }) = self.devices.get(device)
        {
            if self.xrefs.get(x).is_some_and(|d| d == device) {
                self.xrefs.remove(x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(n: u8) -> MonitorCrossRefId {
        MonitorCrossRefId::new([0, 0, 0, n])
    }

    #[test]
    fn both_directions_stay_in_step() {
        let mut t = MonitorTable::default();
        t.starting("201", 1);
        assert_eq!(
            t.state("201"),
            Some(&MonitorState::ExpectStartResult { invoke: 1 })
        );
        assert!(!t.remembered("201"));
        t.activate("201", x(1));
        assert_eq!(t.device_of(&x(1)), Some("201"));
        assert_eq!(t.xref_of("201"), Some(&x(1)));
        assert!(t.remembered("201"));
        // a first-time start that never succeeded is dropped on suspend_all
        t.starting("202", 2);
        assert_eq!(t.suspend_all(), vec!["201".to_string()]);
        assert_eq!(t.device_of(&x(1)), None);
        assert_eq!(t.state("202"), None);
        assert_eq!(t.waiting().collect::<Vec<_>>(), vec!["201"]);
        // monitored again with a new cross reference
        t.starting("201", 3);
        t.activate("201", x(9));
        assert_eq!(t.device_of(&x(9)), Some("201"));
        assert_eq!(t.active().collect::<Vec<_>>(), vec!["201"]);
        assert_eq!(t.remove("201"), Some(MonitorState::Active(x(9))));
        assert_eq!(t.device_of(&x(9)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_reused_cross_reference_moves_to_the_new_device() {
        let mut t = MonitorTable::default();
        t.activate("201", x(1));
        t.activate("202", x(1));
        assert_eq!(t.device_of(&x(1)), Some("202"));
        assert_eq!(t.state("201"), Some(&MonitorState::ExpectRemonitor));
        t.suspend("202");
        assert_eq!(t.device_of(&x(1)), None);
        assert_eq!(t.len(), 2);
    }
}
