//! Agent events (ECMA-269 clause 21, logical device feature events: agentLoggedOn, agentLoggedOff,
//! agentReady, agentNotReady, agentBusy, agentWorkingAfterCall) into `agent.state`.

use super::tracker::{Out, Tracker, MAX_MEMBERS_PER_DEVICE};
use super::view::{AgentState, AgentView};
use bytes::Bytes;
use ctigate_csta_model::events::Event;
use ctigate_csta_model::types::{CommonArguments, DeviceId, Party, PrivateData};

/// The longest reason code taken from private data.
const MAX_REASON: usize = 64;

/// What an agent event says.
struct AgentFacts<'a> {
    device: &'a Party,
    agent: Option<&'a Bytes>,
    group: Option<&'a DeviceId>,
    state: AgentState,
    extensions: Option<&'a CommonArguments>,
}

/// A reason code in the event's private data: the first `string` alternative that is
/// short printable UTF-8 (how the gateway sends reason codes where the dialect has no
/// field of its own).
fn reason(ext: Option<&CommonArguments>) -> Option<String> {
    ext?.private_data.iter().find_map(|p| match p {
        PrivateData::String(b) => std::str::from_utf8(b)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= MAX_REASON)
            .filter(|s| s.chars().all(|c| !c.is_control()))
            .map(str::to_string),
        _ => None,
    })
}

impl Tracker {
    /// Whether `event` is an agent event (handled here).
    pub(super) fn on_agent_event(&mut self, dev: &str, event: &Event, out: &mut Vec<Out>) -> bool {
        let f = match event {
            Event::AgentLoggedOn(e) => AgentFacts {
                device: &e.agent_device,
                agent: e.agent_id.as_ref(),
                group: e.acd_group.as_ref(),
                // ECMA-269 Agent Logged On: the agent is not ready until told (or the switch says)
                state: AgentState::NotReady,
                extensions: e.extensions.as_ref(),
            },
            Event::AgentLoggedOff(e) => AgentFacts {
                device: &e.agent_device,
                agent: e.agent_id.as_ref(),
                group: e.acd_group.as_ref(),
                state: AgentState::LoggedOut,
                extensions: e.extensions.as_ref(),
            },
            Event::AgentReady(e) => AgentFacts {
                device: &e.agent_device,
                agent: e.agent_id.as_ref(),
                group: e.acd_group.as_ref(),
                state: AgentState::Ready,
                extensions: e.extensions.as_ref(),
            },
            Event::AgentNotReady(e) => AgentFacts {
                device: &e.agent_device,
                agent: e.agent_id.as_ref(),
                group: e.acd_group.as_ref(),
                state: AgentState::NotReady,
                extensions: e.extensions.as_ref(),
            },
            Event::AgentBusy(e) => AgentFacts {
                device: &e.agent_device,
                agent: e.agent_id.as_ref(),
                group: e.acd_group.as_ref(),
                state: AgentState::Busy,
                extensions: e.extensions.as_ref(),
            },
            Event::AgentWorkingAfterCall(e) => AgentFacts {
                device: &e.agent_device,
                agent: e.agent_id.as_ref(),
                group: e.acd_group.as_ref(),
                state: AgentState::AfterCallWork,
                extensions: e.extensions.as_ref(),
            },
            _ => return false,
        };
        self.agent_change(dev, &f, out);
        true
    }

    /// The agent's new state: `agent.state` when it differs from the known one. Fields
    /// the event leaves out keep their known value (the reason only while the state
    /// stays the same).
    fn agent_change(&mut self, dev: &str, f: &AgentFacts<'_>, out: &mut Vec<Out>) {
        let station = f.device.number().unwrap_or(dev).to_string();
        let own = station == dev;
        let d = self.devices.entry(dev.to_string()).or_default();
        // a pending request's reason, when this is the state it asked for (any other
        // change but busy, the call it waited for, ends the wait)
        let pending = match &d.pending {
            Some((s, r)) if own && *s == f.state => Some(r.clone()),
            _ => None,
        };
        if own && f.state != AgentState::Busy {
            d.pending = None;
        }
        let prev = if own {
            d.agent.as_ref()
        } else {
            d.members.get(&station)
        };
        let agent = f
            .agent
            .and_then(|a| std::str::from_utf8(a).ok())
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .or_else(|| prev.map(|p| p.agent.clone()))
            .unwrap_or_else(|| station.clone());
        let view = AgentView {
            agent,
            state: f.state,
            reason: reason(f.extensions).or(pending).or_else(|| {
                prev.filter(|p| p.state == f.state)
                    .and_then(|p| p.reason.clone())
            }),
            group: f
                .group
                .and_then(DeviceId::number)
                .map(str::to_string)
                .or_else(|| prev.and_then(|p| p.group.clone())),
        };
        if prev == Some(&view) {
            return;
        }
        if own {
            d.agent = Some(view.clone());
        } else if view.state == AgentState::LoggedOut {
            d.members.remove(&station);
        } else {
            if d.members.len() >= MAX_MEMBERS_PER_DEVICE && !d.members.contains_key(&station) {
                if let Some(k) = d.members.keys().next().cloned() {
                    d.members.remove(&k);
                }
            }
            d.members.insert(station, view.clone());
        }
        out.push(Out::Agent {
            device: dev.to_string(),
            agent: view,
        });
    }
}
