//! Simulator configuration (`ctigate sim --config sim.toml`): the dial plan, the outside
//! world and the link rules. Every key is optional; [`SimConfig::default`] is the embedded
//! dial plan that `ctigate sim` uses without a file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a switch of this kind allows (issue: "dialect profiles that mimic real limits").
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// Event reports per second and association (0 = unlimited). Excess reports wait in a
    /// bounded queue (`event_queue` entries); when it is full the oldest are dropped and a
    /// systemStatus `messagesLost` is sent.
    pub events_per_s: u32,
    /// Requests per second and association (0 = unlimited); excess requests get
    /// performanceManagement/performanceLimitExceeded.
    pub requests_per_s: u32,
    /// Requests in progress at once per association (0 = unlimited); excess requests get
    /// subscribedResourceAvailability/outstandingReqLimitExceeded.
    pub max_outstanding: u32,
    /// Every response is sent this many milliseconds after the request.
    pub response_delay_ms: u64,
}

impl Profile {
    /// A named profile: `default` (no limits) or `oxo` (a small Alcatel OmniPCX Office:
    /// 10 events/s, 2 requests/s, one outstanding request, 100 ms per answer).
    pub fn named(name: &str) -> Option<Profile> {
        match name {
            "default" => Some(Profile::default()),
            "oxo" => Some(Profile {
                events_per_s: 10,
                requests_per_s: 2,
                max_outstanding: 1,
                response_delay_ms: 100,
            }),
            _ => None,
        }
    }
}

/// Which call id the call that results from a transfer or conference carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultingCallId {
    /// The held (primary, original) call keeps its id.
    Held,
    /// The active (consultation) call's id survives.
    Active,
    /// A new id is assigned (the hardest case for an application).
    New,
}

/// What an external number does when it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FarEnd {
    /// Answers after `ring_ms`.
    Answer,
    /// Rings until told (control port `answer` / `hangup`).
    Ring,
    /// Is busy: the call fails with cause busy.
    Busy,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Application context names accepted in the AARQ (others get an AARE rejection with
    /// diagnostic application-context-name-not-supported).
    pub contexts: Vec<String>,
    /// When set, the AARQ must carry this calling-authentication-value (charstring);
    /// missing gives diagnostic authentication-required, wrong authentication-failure.
    pub password: Option<String>,
    /// Seconds between the switch's systemStatus keep-alives (0 = none).
    pub keepalive_s: u64,
    /// Consecutive unanswered keep-alives after which the switch drops the association
    /// (an answer to any keep-alive starts the count again).
    pub keepalive_misses: u32,
    /// Send systemStatus(normal) right after the AARE, as real switches do (clients wait
    /// for it); it counts as a keep-alive.
    pub status_at_association: bool,
    /// Monitors per association.
    pub max_monitors: usize,
    /// Monitors in the whole switch.
    pub max_monitors_total: usize,
    /// Associations (TCP connections) at once.
    pub max_associations: usize,
    /// The header before each PDU: `length` (2-octet length) or `hipath` (Siemens HiPath
    /// `26 8x xx`).
    #[serde(with = "crate::config::framing_name")]
    pub framing: crate::config::Framing,
    /// Expect the pre-association byte `B` and answer `P` (OmniPCX Office).
    pub handshake: bool,
    /// Seconds a connection may stay without a valid AARQ.
    pub aarq_timeout_s: u64,
    /// After our RLRQ (fault `release`, or the simulator stopping), milliseconds to wait for
    /// the RLRE before aborting (ABRT).
    pub release_timeout_ms: u64,
    /// Event reports waiting for a rate-limited association.
    pub event_queue: usize,
    /// How SnapshotDevice answers give the calls (ECMA-269 allows each): `compound` (the
    /// connection states, this device's last), `simple` (a SimpleCallState), `unknown`, or
    /// `reference` (a serviceCrossRefID; the calls follow in Snapshot Device Data
    /// invocations, `snapshot_segment_calls` a segment, compound states).
    pub snapshot_form: SnapshotForm,
    /// The form for some devices: `{ "201" = "simple" }`.
    pub snapshot_forms: BTreeMap<String, SnapshotForm>,
    /// Calls per Snapshot Device Data segment (form `reference`).
    pub snapshot_segment_calls: usize,
}

/// How the simulator answers SnapshotDevice (`[link] snapshot_form`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotForm {
    /// `snapshotData`, `compoundCallState` (the other connections, then this device's).
    #[default]
    Compound,
    /// `snapshotData`, `simpleCallState`.
    Simple,
    /// `snapshotData`, `unknown`.
    Unknown,
    /// `serviceCrossRefID`, then Snapshot Device Data segments.
    #[serde(rename = "reference")]
    CrossRef,
}

impl LinkConfig {
    /// The SnapshotDevice form for `device`.
    pub fn snapshot_form_of(&self, device: &str) -> SnapshotForm {
        self.snapshot_forms
            .get(device)
            .copied()
            .unwrap_or(self.snapshot_form)
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            contexts: vec!["1.3.12.0.218".into()],
            password: None,
            keepalive_s: 30,
            keepalive_misses: 2,
            status_at_association: true,
            max_monitors: 100,
            max_monitors_total: 1000,
            max_associations: 16,
            framing: crate::config::Framing::Length,
            handshake: false,
            aarq_timeout_s: 30,
            release_timeout_ms: 2000,
            event_queue: 1000,
            snapshot_form: SnapshotForm::Compound,
            snapshot_forms: BTreeMap::new(),
            snapshot_segment_calls: 1,
        }
    }
}

/// One ACD group.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub number: String,
    /// Agent ids (or `a-b` ranges) that may log on to this group.
    pub agents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Station extension numbers, single numbers or `a-b` ranges.
    pub stations: Vec<String>,
    pub groups: Vec<GroupConfig>,
    /// Agent passwords by agent id; an agent not listed has its id as password.
    pub agent_passwords: BTreeMap<String, String>,
    /// The trunk group that stands for the outside world.
    pub trunk: String,
    /// Simultaneous calls over the trunk.
    pub trunk_channels: usize,
    /// Numbers starting with this prefix (digits only, 3 to 20 of them) are external.
    pub external_prefix: String,
    /// Called numbers (DNIS) that route to an internal device: `"0800100200" = "8000"`.
    pub routes: BTreeMap<String, String>,
    /// What an external number does when called; per-number overrides on the control port.
    pub far_end: FarEnd,
    /// How long an external number rings before it answers (far_end = answer).
    pub far_end_ring_ms: u64,
    /// Automatic after-call work for agents after an ACD call, in ms (0 = off: the agent is
    /// ready again at once).
    pub after_call_work_ms: u64,
    /// Stations that answer alerting calls by themselves after this many ms (0 = never).
    pub auto_answer_ms: u64,
    pub resulting_call_id: ResultingCallId,
    pub link: LinkConfig,
    /// Named profile (`default`, `oxo`) applied before `limits`.
    pub profile: String,
    /// Explicit limits; a non-zero field overrides the profile's.
    pub limits: Profile,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            stations: vec!["201-220".into()],
            groups: vec![GroupConfig {
                number: "8000".into(),
                agents: vec!["1001-1010".into()],
            }],
            agent_passwords: BTreeMap::new(),
            trunk: "7000".into(),
            trunk_channels: 30,
            external_prefix: "0".into(),
            routes: [("0800100200".to_string(), "8000".to_string())]
                .into_iter()
                .collect(),
            far_end: FarEnd::Answer,
            far_end_ring_ms: 2000,
            after_call_work_ms: 0,
            auto_answer_ms: 0,
            resulting_call_id: ResultingCallId::Held,
            link: LinkConfig::default(),
            profile: "default".into(),
            limits: Profile::default(),
        }
    }
}

/// A configuration mistake: where and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The most numbers one `a-b` range may hold (a switch of a million stations is tried with
/// `stations = ["1000000-1999999"]`: a few tens of megabytes).
pub const MAX_RANGE: u64 = 1_000_000;

/// The numbers of a list of numbers and `a-b` ranges (same length, digits only, at most
/// [`MAX_RANGE`] numbers each).
pub fn expand(items: &[String], key: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for it in items {
        let it = it.trim();
        if let Some((a, b)) = it.split_once('-') {
            let (a, b) = (a.trim(), b.trim());
            let bad = || {
                ConfigError(format!(
                    "{key}: `{it}` is not a range like \"201-220\" (two numbers of the same length, the first not larger, at most {MAX_RANGE} numbers)"
                ))
            };
            if a.len() != b.len() || !is_digits(a) || !is_digits(b) || a.len() > 18 {
                return Err(bad());
            }
            let (x, y): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if x > y || y - x >= MAX_RANGE {
                return Err(bad());
            }
            out.extend((x..=y).map(|n| format!("{n:0w$}", w = a.len())));
        } else if is_number(it) {
            out.push(it.to_string());
        } else {
            return Err(ConfigError(format!(
                "{key}: `{it}` is not a number (digits, * and # only, 1 to 20 of them)"
            )));
        }
    }
    Ok(out)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A dialable number: 1 to 20 of `0-9 * #`.
pub fn is_number(s: &str) -> bool {
    (1..=20).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

impl SimConfig {
    /// Parse a TOML file's text; every mistake names its key.
    pub fn from_toml(text: &str) -> Result<SimConfig, ConfigError> {
        let cfg: SimConfig = toml::from_str(text).map_err(|e| {
            ConfigError(format!(
                "{}\n(see README.md, section \"Switch simulator\", for every key and its default)",
                e.to_string().trim_end()
            ))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The limits in force: the named profile, then every non-zero explicit limit.
    pub fn effective_limits(&self) -> Profile {
        let mut p = Profile::named(&self.profile).unwrap_or_default();
        let l = &self.limits;
        if l.events_per_s > 0 {
            p.events_per_s = l.events_per_s;
        }
        if l.requests_per_s > 0 {
            p.requests_per_s = l.requests_per_s;
        }
        if l.max_outstanding > 0 {
            p.max_outstanding = l.max_outstanding;
        }
        if l.response_delay_ms > 0 {
            p.response_delay_ms = l.response_delay_ms;
        }
        p
    }

    /// Check what serde cannot: numbers, ranges, duplicates, routes, the profile name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.link.release_timeout_ms == 0 || self.link.release_timeout_ms > 600_000 {
            return Err(ConfigError(
                "link.release_timeout_ms: between 1 and 600000".into(),
            ));
        }
        let stations = expand(&self.stations, "stations")?;
        let mut seen = std::collections::BTreeSet::new();
        let mut dup = |n: &str, key: &str| -> Result<(), ConfigError> {
            if !seen.insert(n.to_string()) {
                return Err(ConfigError(format!(
                    "{key}: number {n} is used twice; every station, group and the trunk need their own number"
                )));
            }
            Ok(())
        };
        for s in &stations {
            dup(s, "stations")?;
        }
        for (i, g) in self.groups.iter().enumerate() {
            if !is_number(&g.number) {
                return Err(ConfigError(format!(
                    "groups[{i}].number: `{}` is not a number",
                    g.number
                )));
            }
            dup(&g.number, &format!("groups[{i}].number"))?;
            expand(&g.agents, &format!("groups[{i}].agents"))?;
        }
        if !is_number(&self.trunk) {
            return Err(ConfigError(format!(
                "trunk: `{}` is not a number",
                self.trunk
            )));
        }
        dup(&self.trunk, "trunk")?;
        if self.external_prefix.is_empty() || !is_digits(&self.external_prefix) {
            return Err(ConfigError(
                "external_prefix: must be one or more digits, e.g. \"0\"".into(),
            ));
        }
        for s in &stations {
            if s.starts_with(&self.external_prefix) {
                return Err(ConfigError(format!(
                    "stations: {s} starts with external_prefix \"{}\" and would be dialled as an outside number; change one of them",
                    self.external_prefix
                )));
            }
        }
        for (dnis, target) in &self.routes {
            if !is_number(dnis) {
                return Err(ConfigError(format!("routes: `{dnis}` is not a number")));
            }
            if !stations.contains(target) && !self.groups.iter().any(|g| &g.number == target) {
                return Err(ConfigError(format!(
                    "routes.\"{dnis}\": target {target} is neither a station nor a group"
                )));
            }
        }
        if Profile::named(&self.profile).is_none() {
            return Err(ConfigError(format!(
                "profile: unknown profile `{}`; use \"default\" or \"oxo\"",
                self.profile
            )));
        }
        if self.trunk_channels == 0 {
            return Err(ConfigError("trunk_channels: must be at least 1".into()));
        }
        for c in &self.link.contexts {
            if c.parse::<ctigate_csta::Oid>().is_err() {
                return Err(ConfigError(format!(
                    "link.contexts: `{c}` is not an object identifier like \"1.3.12.0.218\""
                )));
            }
        }
        if self.link.keepalive_s > 0 && self.link.keepalive_misses == 0 {
            return Err(ConfigError(
                "link.keepalive_misses: must be at least 1 when keep-alives are on".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_and_mistakes_name_the_key() {
        assert_eq!(
            expand(&["201-203".into(), "300".into()], "stations").unwrap(),
            ["201", "202", "203", "300"]
        );
        assert_eq!(expand(&["08-10".into()], "x").unwrap(), ["08", "09", "10"]);
        let e = expand(&["220-201".into()], "stations").unwrap_err();
        assert!(e.0.starts_with("stations: `220-201`"), "{e}");
        assert!(expand(&["2a1".into()], "stations").is_err());
    }

    #[test]
    fn framing_and_release_timeout() {
        let c = SimConfig::from_toml("[link]\nframing = \"hipath\"\nrelease_timeout_ms = 300\n")
            .unwrap();
        assert_eq!(c.link.framing, crate::config::Framing::Hipath);
        assert_eq!(c.link.release_timeout_ms, 300);
        let e = SimConfig::from_toml("[link]\nframing = \"xml\"\n").unwrap_err();
        assert!(e.0.contains("unknown framing \"xml\""), "{e}");
        let e = SimConfig::from_toml("[link]\nrelease_timeout_ms = 0\n").unwrap_err();
        assert!(e.0.contains("link.release_timeout_ms"), "{e}");
    }

    #[test]
    fn default_is_valid_and_toml_errors_are_clear() {
        SimConfig::default().validate().unwrap();
        let c = SimConfig::from_toml("stations = [\"301-305\"]\nfar_end = \"busy\"\n").unwrap();
        assert_eq!(c.stations, ["301-305"]);
        assert_eq!(c.far_end, FarEnd::Busy);
        assert_eq!(c.trunk, "7000");
        let e = SimConfig::from_toml("stationz = [\"1\"]").unwrap_err();
        assert!(e.0.contains("stationz"), "{e}");
        let e = SimConfig::from_toml("profile = \"nec\"").unwrap_err();
        assert!(e.0.contains("profile: unknown profile `nec`"), "{e}");
        let e = SimConfig::from_toml("[routes]\n\"0800\" = \"999\"").unwrap_err();
        assert!(e.0.contains("target 999"), "{e}");
        let e = SimConfig::from_toml("stations = [\"201-202\", \"202\"]").unwrap_err();
        assert!(e.0.contains("202 is used twice"), "{e}");
    }

    #[test]
    fn profiles_combine_with_explicit_limits() {
        let mut c = SimConfig {
            profile: "oxo".into(),
            ..SimConfig::default()
        };
        assert_eq!(c.effective_limits().requests_per_s, 2);
        c.limits.requests_per_s = 5;
        let p = c.effective_limits();
        assert_eq!(
            (p.events_per_s, p.requests_per_s, p.max_outstanding),
            (10, 5, 1)
        );
    }
}
