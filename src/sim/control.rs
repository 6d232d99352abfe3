//! The simulator's control commands: one JSON object per line on the control port, or one
//! per line of a scenario file (`ctigate sim --scenario FILE`). They drive the outside
//! world (inbound calls, far ends answering, hanging up, being busy), inject faults, run
//! the load generator and report status. Every command gets one JSON answer:
//! `{"ok":true,...}` or `{"ok":false,"error":"..."}`.

use super::config::FarEnd;
use super::model::{CallNo, LoadSpec};
use super::switch::Switch;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;

/// One control command (`{"cmd": "...", ...}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// An inbound trunk call: caller `ani` dials `dnis` (a group, a station or a routed
    /// number); `user_data` / `correlator_data` are the IVR's variables (text).
    Inbound {
        ani: String,
        dnis: String,
        #[serde(default)]
        user_data: Option<String>,
        #[serde(default)]
        correlator_data: Option<String>,
    },
    /// A station dials by itself (off-hook and dial, no CTI request).
    Dial { from: String, to: String },
    /// A device answers its alerting call (a station, or an external far end).
    Answer {
        device: String,
        #[serde(default)]
        call: Option<String>,
    },
    /// A device hangs up (its connection clears).
    Hangup {
        device: String,
        #[serde(default)]
        call: Option<String>,
    },
    /// A station puts its call on hold / takes it back.
    Hold {
        device: String,
        #[serde(default)]
        call: Option<String>,
    },
    Retrieve {
        device: String,
        #[serde(default)]
        call: Option<String>,
    },
    /// How an external number behaves when called (`answer`, `ring`, `busy`; absent: the
    /// configured default again).
    FarEnd {
        number: String,
        #[serde(default)]
        behaviour: Option<FarEnd>,
    },
    /// Make a device busy for new calls (or free again).
    Busy { device: String, on: bool },
    /// A fault: close, abort, release (RLRQ), garble, stop_keepalive, resume_keepalive,
    /// delay (`ms`), hang, lose_events, resume, status (`status`: a SystemStatus name),
    /// forget_monitor / renumber_monitor (`device`), restart (`keep_links`: monitors lost
    /// but the links stay up), side_down / side_up (`side`: a listen address of the
    /// simulator stops taking connections and its associations are aborted, or takes them
    /// again).
    Fault {
        fault: String,
        #[serde(default)]
        assoc: Option<u64>,
        #[serde(default)]
        side: Option<usize>,
        #[serde(default)]
        ms: u64,
        #[serde(default)]
        keep_links: bool,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        device: Option<String>,
    },
    /// Start (or with calls_per_s 0 stop) the load generator.
    Load(LoadSpec),
    /// Associations, monitors, calls, agents, counters.
    Status,
    /// The dial plan.
    Dialplan,
    /// Wait (scenario files and the control port).
    Sleep { ms: u64 },
    /// Wait until an application is associated (and monitors `device`, when given).
    WaitFor {
        #[serde(default)]
        device: Option<String>,
        #[serde(default = "default_wait")]
        timeout_ms: u64,
    },
}

fn default_wait() -> u64 {
    30_000
}

/// Parse a control line; the error says what is wrong and what is allowed.
pub fn parse(line: &str) -> Result<Command, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    if !v.get("cmd").is_some_and(Value::is_string) {
        return Err(
            "missing \"cmd\": use inbound, dial, answer, hangup, hold, retrieve, far_end, busy, fault, load, status, dialplan, sleep or wait_for"
                .into(),
        );
    }
    let c: Command = serde_json::from_value(v).map_err(|e| format!("bad command: {e}"))?;
    if let Command::Fault {
        fault,
        assoc,
        side,
        ms,
        keep_links,
        status,
        device,
    } = &c
    {
        let other = status.is_some() || device.is_some();
        check_fault(fault, *assoc, *side, *ms, *keep_links || other)
            .map_err(|e| format!("bad command: {e}"))?;
    }
    Ok(c)
}

/// The fields a fault takes: `side` for side_down and side_up (and nothing else), not for
/// the others.
fn check_fault(
    fault: &str,
    assoc: Option<u64>,
    side: Option<usize>,
    ms: u64,
    // keep_links, or a fault's `status` / `device`
    keep_links: bool,
) -> Result<(), String> {
    match fault {
        "side_down" | "side_up" if assoc.is_some() || ms != 0 || keep_links => Err(format!(
            "{fault} takes only \"side\" (not assoc, ms, keep_links, status or device)"
        )),
        "side_down" | "side_up" if side.is_none() => Err(format!(
            "{fault} needs \"side\": the index of the simulator's listen address (0, 1, ...)"
        )),
        "side_down" | "side_up" => Ok(()),
        _ if side.is_some() => Err(format!(
            "\"side\" is for the faults side_down and side_up, not {fault:?}"
        )),
        _ => Ok(()),
    }
}

fn call_no(s: &Option<String>) -> Result<Option<CallNo>, String> {
    s.as_deref()
        .map(|c| {
            u16::from_str_radix(c, 16).map_err(|_| {
                format!("call {c:?} is not a call id (4 hex digits, as in the events)")
            })
        })
        .transpose()
}

fn ok(v: Value) -> Value {
    let mut o = json!({"ok": true});
    if let (Some(m), Value::Object(extra)) = (o.as_object_mut(), v) {
        m.extend(extra);
    }
    o
}

fn err(e: impl Into<String>) -> Value {
    json!({"ok": false, "error": e.into()})
}

impl Switch {
    /// Run a control command (not `sleep` / `wait_for`: those wait, see the server).
    pub fn control(&mut self, cmd: Command, now: Instant) -> Value {
        match self.control_inner(cmd, now) {
            Ok(v) => ok(v),
            Err(e) => err(e),
        }
    }

    fn control_inner(&mut self, cmd: Command, now: Instant) -> Result<Value, String> {
        match cmd {
            Command::Inbound {
                ani,
                dnis,
                user_data,
                correlator_data,
            } => {
                let ud = user_data.map(|s| Bytes::from(s.into_bytes()));
                let cd = correlator_data.map(|s| Bytes::from(s.into_bytes()));
                let id = self.world(now, |m| m.inbound(&ani, &dnis, ud, cd, now))?;
                Ok(json!({"call": format!("{id:04x}")}))
            }
            Command::Dial { from, to } => {
                let c = self.world(now, |m| m.make_call(&from, &to, None, None, true, now));
                let c = c.map_err(|f| format!("{from} cannot call {to}: {f}"))?;
                let id = c
                    .call_id()
                    .map(|b| ctigate_csta::json::hex(b))
                    .unwrap_or_default();
                Ok(json!({"call": id}))
            }
            Command::Answer { device, call } => {
                let call = call_no(&call)?;
                let c = self.model.pick(&device, call)?;
                self.world(now, |m| m.answer(c, &device, now))
                    .map_err(|f| format!("{device} cannot answer: {f}"))?;
                Ok(json!({"call": format!("{c:04x}")}))
            }
            Command::Hangup { device, call } => {
                let call = call_no(&call)?;
                let c = self.model.pick(&device, call)?;
                self.world(now, |m| {
                    m.clear_connection(
                        c,
                        &device,
                        ctigate_csta_model::types::EventCause::NORMAL_CLEARING,
                        now,
                    )
                })
                .map_err(|f| format!("{device} cannot hang up: {f}"))?;
                Ok(json!({"call": format!("{c:04x}")}))
            }
            Command::Hold { device, call } => {
                let call = call_no(&call)?;
                let c = self.model.pick(&device, call)?;
                self.world(now, |m| {
                    m.hold(c, &device, ctigate_csta_model::types::EventCause::NORMAL)
                })
                .map_err(|f| format!("{device} cannot hold: {f}"))?;
                Ok(json!({"call": format!("{c:04x}")}))
            }
            Command::Retrieve { device, call } => {
                let call = call_no(&call)?;
                let c = self.model.pick(&device, call)?;
                self.world(now, |m| m.retrieve(c, &device))
                    .map_err(|f| format!("{device} cannot retrieve: {f}"))?;
                Ok(json!({"call": format!("{c:04x}")}))
            }
            Command::FarEnd { number, behaviour } => {
                if !self.model.is_external(&number) {
                    return Err(format!(
                        "{number} is not an external number (digits starting with {:?})",
                        self.model.external_prefix()
                    ));
                }
                self.model.set_far_end(&number, behaviour);
                Ok(json!({}))
            }
            Command::Busy { device, on } => {
                if self.model.kind(&device).is_none() {
                    return Err(format!("unknown device {device}"));
                }
                self.model.set_forced_busy(&device, on);
                Ok(json!({}))
            }
            Command::Fault {
                fault,
                assoc,
                side,
                ms,
                keep_links,
                status,
                device,
            } => {
                let other = status.is_some() || device.is_some();
                check_fault(&fault, assoc, side, ms, keep_links || other)?;
                let n = match fault.as_str() {
                    "side_down" | "side_up" => self.side_fault(fault == "side_up", side)?,
                    _ => {
                        let spec = super::switch::FaultSpec {
                            kind: fault,
                            assoc,
                            ms,
                            keep_links,
                            status,
                            device,
                        };
                        self.fault(&spec, now)?
                    }
                };
                Ok(json!({"associations": n}))
            }
            Command::Load(spec) => {
                let cleared = self.world(now, |m| m.start_load(spec, now))?;
                self.handle_timeout(now);
                Ok(json!({"cleared": cleared}))
            }
            Command::Status => Ok(self.status()),
            Command::Dialplan => Ok(json!({"dialplan": self.dialplan()})),
            Command::Sleep { .. } | Command::WaitFor { .. } => {
                Err("sleep and wait_for are handled by the server".into())
            }
        }
    }

    pub fn status(&self) -> Value {
        let calls: Vec<Value> = self
            .model
            .calls
            .values()
            .map(|c| {
                json!({
                    "call": format!("{:04x}", c.id),
                    "calling": c.calling,
                    "called": c.called,
                    "connections": c.conns,
                    "user_data": c.user_data.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
                    "correlator_data": c.correlator.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
                })
            })
            .collect();
        let agents: Vec<&super::model::Agent> = self
            .model
            .agents
            .values()
            .filter(|a| a.station.is_some())
            .collect();
        json!({
            "sides": self.sides_status(),
            "associations": self.associations(),
            "calls": calls,
            "agents": agents,
            "counters": self.counters,
            "load": self.model.load_stats().map(|(spec, stats)| json!({"spec": spec, "stats": stats})),
        })
    }

    /// The dial plan as text (printed at start, `dialplan` command).
    pub fn dialplan(&self) -> String {
        let m = &self.model;
        let stations: Vec<&String> = m.stations().collect();
        let range = |v: &[&String]| match (v.first(), v.last()) {
            (Some(a), Some(b)) if v.len() > 1 => format!("{a}-{b} ({} numbers)", v.len()),
            (Some(a), _) => a.to_string(),
            _ => "none".into(),
        };
        let mut s = format!("stations    {}\n", range(&stations));
        for g in m.group_numbers() {
            let agents: Vec<&String> = m.group_members(g).iter().collect();
            s += &format!("ACD group   {g}: agents {}\n", range(&agents));
        }
        s += "agents      log on with SetAgentState at a station; password = agent id unless configured\n";
        s += &format!(
            "outside     numbers starting with {} (3-20 digits) go out on trunk {}\n",
            m.external_prefix(),
            m.trunk()
        );
        for (d, t) in m.routes() {
            s += &format!("route       {d} -> {t}\n");
        }
        let l = self.limits();
        s += &format!(
            "link        contexts {}; framing {}; keep-alive every {} s; limits: {} events/s, {} requests/s, {} outstanding (0 = none)\n",
            self.cfg.link.contexts.join(", "),
            self.cfg.link.framing,
            self.cfg.link.keepalive_s,
            l.events_per_s,
            l.requests_per_s,
            l.max_outstanding
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::SnapshotForm;

    #[test]
    fn commands_parse_and_errors_say_what_to_do() {
        assert_eq!(
            parse(r#"{"cmd":"inbound","ani":"0891234567","dnis":"8000","user_data":"case=42"}"#)
                .unwrap(),
            Command::Inbound {
                ani: "0891234567".into(),
                dnis: "8000".into(),
                user_data: Some("case=42".into()),
                correlator_data: None
            }
        );
        assert!(parse("{").unwrap_err().starts_with("bad JSON"));
        assert!(parse(r#"{"ani":"1"}"#)
            .unwrap_err()
            .contains("missing \"cmd\""));
        let e = parse(r#"{"cmd":"inbound","ani":"1","dnis":"2","colour":"red"}"#).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse(r#"{"cmd":"teleport"}"#).unwrap_err();
        assert!(e.contains("teleport"), "{e}");
        match parse(r#"{"cmd":"load","calls_per_s":5,"ring_ms":[100,200]}"#).unwrap() {
            Command::Load(s) => {
                assert_eq!(s.calls_per_s, 5.0);
                assert_eq!(s.ring_ms, [100, 200]);
                assert_eq!(s.dnis, "8000");
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(call_no(&Some("00a1".into())).unwrap(), Some(0xa1));
        assert!(call_no(&Some("xyz".into())).is_err());
    }

    fn run(sw: &mut Switch, line: &str, now: Instant) -> Value {
        sw.control(parse(line).unwrap(), now)
    }

    #[test]
    fn out_of_range_control_input_is_refused_not_a_crash() {
        let mut sw = Switch::new(super::super::SimConfig::default());
        let now = Instant::now();
        for (line, says) in [
            (r#"{"cmd":"load","calls_per_s":1e-300}"#, "calls_per_s"),
            (r#"{"cmd":"load","calls_per_s":-1}"#, "calls_per_s"),
            (r#"{"cmd":"load","calls_per_s":5000}"#, "calls_per_s"),
            (
                r#"{"cmd":"load","calls_per_s":1,"ring_ms":[0,18446744073709551615]}"#,
                "ring_ms",
            ),
            (
                r#"{"cmd":"load","calls_per_s":1,"talk_ms":[86400001,1]}"#,
                "talk_ms",
            ),
            (
                r#"{"cmd":"load","calls_per_s":1,"hold_percent":101}"#,
                "hold_percent",
            ),
            (
                r#"{"cmd":"fault","fault":"delay","ms":18446744073709551615}"#,
                "ms must be",
            ),
        ] {
            let v = run(&mut sw, line, now);
            assert_eq!(v["ok"], false, "{line}: {v}");
            assert!(v["error"].as_str().unwrap().contains(says), "{line}: {v}");
        }
        // the switch still works
        assert_eq!(run(&mut sw, r#"{"cmd":"status"}"#, now)["ok"], true);
    }

    #[test]
    fn stopping_load_clears_the_calls_it_started() {
        let mut sw = Switch::new(super::super::SimConfig::default());
        let t0 = Instant::now();
        let v = run(
            &mut sw,
            r#"{"cmd":"load","calls_per_s":20,"ring_ms":[60000,60000],"talk_ms":[60000,60000]}"#,
            t0,
        );
        assert_eq!(v, json!({"ok": true, "cleared": 0}));
        // one second of load: about 20 calls, every one still up (a minute of ringing)
        let mut now = t0;
        while now < t0 + std::time::Duration::from_secs(1) {
            now = sw.poll_timeout().unwrap().max(now);
            sw.handle_timeout(now);
        }
        // a call a device placed by itself is not the generator's
        assert_eq!(
            run(
                &mut sw,
                r#"{"cmd":"dial","from":"220","to":"0891234567"}"#,
                now
            )["ok"],
            true
        );
        let up = sw.model.calls.len();
        assert!(up > 10, "{up} calls");
        let v = run(&mut sw, r#"{"cmd":"load","calls_per_s":0}"#, now);
        assert_eq!(v["cleared"].as_u64(), Some(up as u64 - 1), "{v}");
        assert_eq!(sw.model.calls.len(), 1, "only the dialled call is left");
        // stopping again clears nothing
        assert_eq!(
            run(&mut sw, r#"{"cmd":"load","calls_per_s":0}"#, now)["cleared"],
            0
        );
    }

    #[test]
    fn a_busy_target_does_not_list_the_failed_call() {
        let mut sw = Switch::new(super::super::SimConfig::default());
        let now = Instant::now();
        assert_eq!(
            run(&mut sw, r#"{"cmd":"busy","device":"202","on":true}"#, now)["ok"],
            true
        );
        assert_eq!(
            run(&mut sw, r#"{"cmd":"dial","from":"201","to":"202"}"#, now)["ok"],
            true
        );
        assert_eq!(
            sw.model.snapshot("201", SnapshotForm::Compound).len(),
            1,
            "the caller has its call"
        );
        assert!(
            sw.model.snapshot("202", SnapshotForm::Compound).is_empty(),
            "the busy device never saw it"
        );
    }
}
