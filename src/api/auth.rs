//! Users, tokens, roles and device rights (`[[user]]`, docs/PROTOCOL.md "Authentication"),
//! the limits that go with them (connections and requests per user, the `agent.login`
//! backoff) and the audit records (target `audit`).
//!
//! Who a connection is stays an explicit value of the session ([`super::session::SessionInfo`]
//! `user`): the `auth` request sets it from a token; a transport that knows the peer
//! otherwise (a client certificate) may set it by the user's name ([`Users::named`]).
//!
//! Tokens: 256 random bits from the OS (`getrandom`), base64url without padding; the
//! configuration holds only their SHA-256, compared in constant time with every user's
//! (the time taken does not depend on which user, if any, matched). A token is never
//! logged, echoed or kept.

use super::protocol::ApiError;
use super::request::Op;
use super::session::{Auth, SessionInfo};
use crate::config::UserSection;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tracing::{info, warn};

/// What a user may do. Ordered: each role may do what the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Events and snapshots of its devices (`monitor.*`, `snapshot`, `agent.state`, a
    /// `status` limited to its devices).
    Monitor,
    /// Also call and agent requests on its devices.
    Control,
    /// Also the full `status`: every device, client and link.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Monitor => "monitor",
            Role::Control => "control",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "monitor" => Ok(Role::Monitor),
            "control" => Ok(Role::Control),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "unknown role `{s}`: one of monitor, control, admin"
            )),
        }
    }
}

/// The role an operation needs; `None`: anyone, authenticated or not (`ping`, `auth`).
pub fn needed_role(op: &Op) -> Option<Role> {
    match op {
        Op::Ping(_) | Op::Login(_) => None,
        Op::Status(_)
        | Op::MonitorStart(_)
        | Op::MonitorStop(_)
        | Op::Snapshot(_)
        | Op::AgentStateQuery(_) => Some(Role::Monitor),
        _ => Some(Role::Control),
    }
}

/// The device an operation is on, if any.
pub fn op_device(op: &Op) -> Option<&str> {
    Some(match op {
        Op::Ping(_) | Op::Login(_) | Op::Status(_) => return None,
        Op::MonitorStart(p) => &p.device,
        Op::MonitorStop(p) => &p.device,
        Op::Snapshot(p) => &p.device,
        Op::CallMake(p) => &p.device,
        Op::CallAnswer(p) => &p.device,
        Op::CallHold(p) => &p.device,
        Op::CallRetrieve(p) => &p.device,
        Op::CallHangup(p) => &p.device,
        Op::CallClear(p) => &p.device,
        Op::CallConsult(p) => &p.device,
        Op::CallTransfer(p) => &p.device,
        Op::CallConference(p) => &p.device,
        Op::CallAlternate(p) => &p.device,
        Op::CallReconnect(p) => &p.device,
        Op::CallBlindTransfer(p) => &p.device,
        Op::CallDropParty(p) => &p.device,
        Op::CallDtmf(p) => &p.device,
        Op::AgentLogin(p) => &p.device,
        Op::AgentReady(p) => &p.device,
        Op::AgentNotReady(p) => &p.device,
        Op::AgentAfterCallWork(p) => &p.device,
        Op::AgentLogout(p) => &p.device,
        Op::AgentStateQuery(p) => &p.device,
    })
}

/// The call an operation names, if any (for the audit record).
pub fn op_call(op: &Op) -> Option<&str> {
    match op {
        Op::CallAnswer(p) => p.call.as_deref(),
        Op::CallHold(p) => p.call.as_deref(),
        Op::CallRetrieve(p) => p.call.as_deref(),
        Op::CallHangup(p) => p.call.as_deref(),
        Op::CallClear(p) => Some(&p.call),
        Op::CallConsult(p) => p.call.as_deref(),
        Op::CallTransfer(p) => p.call.as_deref(),
        Op::CallConference(p) => p.call.as_deref(),
        Op::CallAlternate(p) => p.call.as_deref(),
        Op::CallReconnect(p) => p.call.as_deref(),
        Op::CallBlindTransfer(p) => p.call.as_deref(),
        Op::CallDropParty(p) => p.call.as_deref(),
        Op::CallDtmf(p) => p.call.as_deref(),
        _ => None,
    }
}

/// One rule of a user's `devices`.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    All,
    Exact(String),
    /// Numbers from `lo` to `hi` (inclusive); `width`: the digits of both bounds when they
    /// have as many, and a number with a leading zero matches only with that many digits.
    Range {
        lo: u128,
        hi: u128,
        width: usize,
    },
}

/// The devices a user may monitor and act on: numbers, ranges `"201-220"`, `"*"`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSet(Vec<Rule>);

/// The longest range bound (digits): fits in a u128.
const MAX_RANGE_DIGITS: usize = 38;

impl DeviceSet {
    /// Parse `devices` of a `[[user]]`; the error names the entry and the forms allowed.
    pub fn parse(entries: &[String]) -> Result<DeviceSet, String> {
        let mut rules = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.trim();
            let bad = || {
                format!(
                    "`{e}` is not a device number, a range of numbers like \"201-220\", or \"*\""
                )
            };
            if e == "*" {
                rules.push(Rule::All);
            } else if let Some((a, b)) = e.split_once('-') {
                let digits = |s: &str| {
                    !s.is_empty()
                        && s.len() <= MAX_RANGE_DIGITS
                        && s.bytes().all(|c| c.is_ascii_digit())
                };
                if !digits(a) || !digits(b) {
                    return Err(bad());
                }
                let (lo, hi) = (
                    a.parse::<u128>().map_err(|_| bad())?,
                    b.parse::<u128>().map_err(|_| bad())?,
                );
                if lo > hi {
                    return Err(format!("`{e}`: the range's first number is above its last"));
                }
                let width = if a.len() == b.len() { a.len() } else { 0 };
                rules.push(Rule::Range { lo, hi, width });
            } else if crate::api::request::is_device_number(e) {
                rules.push(Rule::Exact(e.to_string()));
            } else {
                return Err(bad());
            }
        }
        Ok(DeviceSet(rules))
    }

    /// Every device.
    pub fn all() -> DeviceSet {
        DeviceSet(vec![Rule::All])
    }

    pub fn is_all(&self) -> bool {
        self.0.contains(&Rule::All)
    }

    /// Whether `device` is in the set.
    pub fn contains(&self, device: &str) -> bool {
        self.0.iter().any(|r| match r {
            Rule::All => true,
            Rule::Exact(d) => d == device,
            Rule::Range { lo, hi, width } => {
                if device.is_empty()
                    || device.len() > MAX_RANGE_DIGITS
                    || !device.bytes().all(|c| c.is_ascii_digit())
                {
                    return false;
                }
                // "0201" is not "201": a leading zero only where the bounds have the width
                let leading_zero = device.len() > 1 && device.starts_with('0');
                if (*width > 0 && device.len() != *width) || (*width == 0 && leading_zero) {
                    return false;
                }
                device
                    .parse::<u128>()
                    .is_ok_and(|v| (*lo..=*hi).contains(&v))
            }
        })
    }
}

/// The SHA-256 of a token.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A hash written as 64 hex digits (either case).
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let h = hex.trim().as_bytes();
    if h.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in h.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A new token: 256 bits from the operating system's CSPRNG, base64url without padding
/// (43 characters).
pub fn new_token() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// What `ctigate token` prints: the token and the `[[user]]` lines to paste.
pub fn token_text(token: &str, name: &str, role: Role, devices: &[String]) -> String {
    let devices: Vec<String> = devices.iter().map(|d| json!(d).to_string()).collect();
    format!(
        "token: {token}\n\
         # give the token to the client (it sends {{\"id\":1,\"op\":\"auth\",\"token\":\"...\"}});\n\
         # it is stored nowhere. Paste the lines below into the configuration (only its SHA-256):\n\
         \n\
         [[user]]\n\
         name = {}\n\
         token_sha256 = \"{}\"\n\
         role = \"{}\"\n\
         devices = [{}]\n",
        json!(name),
        hex(&token_sha256(token)),
        role.name(),
        devices.join(", ")
    )
}

/// A configured user, with its counters.
pub struct User {
    pub name: String,
    pub role: Role,
    pub devices: DeviceSet,
    hash: [u8; 32],
    /// `max_clients` and `requests_per_s` (a reload changes them in place: the user's
    /// connections stay).
    limits: Mutex<UserLimits>,
    clients: AtomicUsize,
}

/// A user's limits, and the rate limiter of all its connections together.
struct UserLimits {
    max_clients: Option<usize>,
    requests_per_s: Option<u32>,
    rate: Option<super::session::RateLimit>,
}

impl UserLimits {
    fn of(u: &UserSection) -> UserLimits {
        UserLimits {
            max_clients: u.max_clients,
            requests_per_s: u.requests_per_s,
            rate: u
                .requests_per_s
                .map(|n| super::session::RateLimit::per_user(n, &u.name)),
        }
    }
}

/// What a reload did to the users (names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Token, role or devices changed: the user's connections end.
    pub changed: Vec<String>,
    /// Only `max_clients` or `requests_per_s` changed: applied to its connections.
    pub limits: Vec<String>,
}

impl UserChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.limits.is_empty()
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// One of a user's connections: counted while it lives.
#[derive(Debug)]
pub struct UserSlot(Arc<User>);

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

impl User {
    fn from_section(u: &UserSection) -> Result<User, String> {
        let hash = u
            .token_sha256
            .as_deref()
            .and_then(parse_sha256)
            .ok_or_else(|| format!("user {}: no valid token_sha256", u.name))?;
        Ok(User {
            name: u.name.clone(),
            role: u.role.parse()?,
            devices: DeviceSet::parse(&u.devices)?,
            hash,
            limits: Mutex::new(UserLimits::of(u)),
            clients: AtomicUsize::new(0),
        })
    }

    fn limits(&self) -> std::sync::MutexGuard<'_, UserLimits> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `[[user]] max_clients`, if set.
    pub fn max_clients(&self) -> Option<usize> {
        self.limits().max_clients
    }

    /// Same token, role and devices as `other` (a reload keeps such a user's connections).
    fn same_rights(&self, other: &User) -> bool {
        self.hash == other.hash && self.role == other.role && self.devices == other.devices
    }

    /// Take the limits of `u` (a reload); false when they were the same already. The
    /// request rate's window starts afresh only when `requests_per_s` changed.
    fn set_limits(&self, u: &UserSection) -> bool {
        let mut l = self.limits();
        if l.max_clients == u.max_clients && l.requests_per_s == u.requests_per_s {
            return false;
        }
        if l.requests_per_s != u.requests_per_s {
            *l = UserLimits::of(u);
        } else {
            l.max_clients = u.max_clients;
        }
        true
    }

    /// Count one more connection of this user; `None` when it has `max_clients` already.
    pub fn enter(self: &Arc<User>) -> Option<UserSlot> {
        let max = self.max_clients().unwrap_or(usize::MAX);
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| UserSlot(self.clone()))
    }

    /// Connections of this user now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Acquire)
    }

    /// The per-user request rate (`[[user]] requests_per_s`), shared by its connections.
    pub fn admit(&self, now: Instant) -> Result<(), ApiError> {
        match &mut self.limits().rate {
            Some(r) => r.admit(now),
            None => Ok(()),
        }
    }

    /// May this user run `op`? `forbidden` names what is missing.
    pub fn allows(&self, op: &Op) -> Result<(), ApiError> {
        if let Some(need) = needed_role(op) {
            if self.role < need {
                return Err(ApiError::new(
                    "auth",
                    "forbidden",
                    format!(
                        "`{}` needs the role {} or above; user {} has the role {}",
                        op.name(),
                        need.name(),
                        self.name,
                        self.role.name()
                    ),
                ));
            }
        }
        if let Some(d) = op_device(op) {
            if !self.devices.contains(d) {
                return Err(ApiError::new(
                    "auth",
                    "forbidden",
                    format!("device {d} is not among the devices of user {}", self.name),
                ));
            }
        }
        Ok(())
    }
}

/// The `[[user]]` list: the [`Auth`] of a gateway with users.
pub struct Users {
    users: Vec<Arc<User>>,
}

impl Users {
    /// From the configuration's (checked) `[[user]]` entries.
    pub fn new(sections: &[UserSection]) -> Result<Users, String> {
        Ok(Users {
            users: sections
                .iter()
                .map(|u| User::from_section(u).map(Arc::new))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The users of `sections` for a reload of `old`: a user whose token, role and devices
    /// are unchanged is the same [`User`] (its connections stay, its counters too; new
    /// limits apply to it at once); the others are new.
    pub fn reload(sections: &[UserSection], old: &Users) -> Result<(Users, UserChanges), String> {
        let mut changes = UserChanges::default();
        let mut users = Vec::with_capacity(sections.len());
        for sec in sections {
            let fresh = User::from_section(sec)?;
            match old.users.iter().find(|u| u.name == sec.name) {
                Some(o) if o.same_rights(&fresh) => {
                    if o.set_limits(sec) {
                        changes.limits.push(sec.name.clone());
                    }
                    users.push(o.clone());
                }
                Some(_) => {
                    changes.changed.push(sec.name.clone());
                    users.push(Arc::new(fresh));
                }
                None => {
                    changes.added.push(sec.name.clone());
                    users.push(Arc::new(fresh));
                }
            }
        }
        changes.removed = old
            .users
            .iter()
            .filter(|o| !sections.iter().any(|s| s.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        Ok((Users { users }, changes))
    }

    /// No user at all, yet authentication required: every login fails.
    pub fn none() -> Users {
        Users { users: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// `auth` is answered by the session itself (it changes who the connection is); the
/// dispatch never gets it.
impl super::ops::Handle for super::request::Login {
    async fn handle(self, _: &super::ops::Cx<'_>) -> Result<Value, ApiError> {
        Err(ApiError::request(
            "unknown_op",
            "`auth` is answered by the session",
        ))
    }
}

impl Auth for Users {
    fn required(&self) -> bool {
        true
    }

    fn login(&self, token: &str) -> Option<Arc<User>> {
        let h = token_sha256(token);
        // every user's hash is compared, in constant time: the time does not tell which
        let mut found = None;
        for u in &self.users {
            if bool::from(u.hash.ct_eq(&h)) {
                found = Some(u.clone());
            }
        }
        found
    }

    fn named(&self, name: &str) -> Option<Arc<User>> {
        self.users.iter().find(|u| u.name == name).cloned()
    }

    fn users(&self) -> Option<&Users> {
        Some(self)
    }

    fn authorize(&self, session: &SessionInfo, op: &Op) -> Result<(), ApiError> {
        if needed_role(op).is_none() {
            return Ok(());
        }
        match &session.user {
            None => Err(ApiError::new(
                "auth",
                "unauthenticated",
                "authenticate first: {\"id\":1,\"op\":\"auth\",\"token\":\"...\"}",
            )),
            Some(u) => u.allows(op),
        }
    }
}

/// The links as `role` may see them: below `admin` each link's `name`, `state` and
/// `reason` (not the PBX's address or the link's counters).
pub fn links_for(role: Role, links: Value) -> Value {
    if role >= Role::Admin {
        return links;
    }
    match links {
        Value::Array(a) => Value::Array(
            a.into_iter()
                .map(|l| {
                    let mut m = serde_json::Map::new();
                    for k in ["name", "state", "reason"] {
                        if let Some(v) = l.get(k) {
                            m.insert(k.into(), v.clone());
                        }
                    }
                    Value::Object(m)
                })
                .collect(),
        ),
        other => other,
    }
}

/// `status` as a user below `admin` sees it: the gateway's version, uptime, links and seq,
/// the monitors of its own devices, and nothing about other clients or devices.
pub fn redact_status(v: Value, user: &User) -> Value {
    if user.role >= Role::Admin {
        return v;
    }
    let Value::Object(mut m) = v else { return v };
    let mut out = serde_json::Map::new();
    for k in ["version", "uptime_s", "seq"] {
        if let Some(x) = m.remove(k) {
            out.insert(k.into(), x);
        }
    }
    if let Some(l) = m.remove("links") {
        out.insert("links".into(), links_for(user.role, l));
    }
    if let Some(Value::Array(mons)) = m.remove("monitors") {
        let mine: Vec<Value> = mons
            .into_iter()
            .filter(|x| {
                x["device"]
                    .as_str()
                    .is_some_and(|d| user.devices.contains(d))
            })
            .collect();
        out.insert("monitors".into(), Value::Array(mine));
    }
    out.insert("user".into(), json!(user.name));
    out.insert("role".into(), json!(user.role.name()));
    Value::Object(out)
}

pub use crate::logging::LogLimit;

/// Failed `agent.login`s: a growing block per device (`api.agent_login_backoff_ms`,
/// doubling, at most `api.agent_login_backoff_max_s`); the same per connection is a
/// [`Strikes`] of the session.
pub struct LoginBackoff {
    /// `(base, max)`: a reload changes them.
    limits: Mutex<(Duration, Duration)>,
    devices: Mutex<HashMap<String, Strikes>>,
    /// Its log lines (failures, refusals): at most one a second.
    log: LogLimit,
}

/// Devices with a failed login kept at most (older, expired ones go first).
const BACKOFF_DEVICES_SWEEP: usize = 1024;

/// Consecutive failures and the end of the current block.
#[derive(Debug, Clone, Copy, Default)]
pub struct Strikes {
    failures: u32,
    until: Option<Instant>,
}

impl Strikes {
    /// The wait left at `now`, if blocked.
    pub fn blocked(&self, now: Instant) -> Option<Duration> {
        self.until.filter(|u| *u > now).map(|u| u - now)
    }

    /// One more failure at `now`.
    pub fn fail(&mut self, now: Instant, base: Duration, max: Duration) {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(20);
        let d = base.saturating_mul(1u32 << shift).min(max);
        self.until = Some(now + d);
    }

    /// Whether this no longer matters at `now` (its block ended `max` ago).
    fn stale(&self, now: Instant, max: Duration) -> bool {
        self.until.is_none_or(|u| u + max <= now)
    }
}

impl LoginBackoff {
    pub fn new(cfg: &crate::config::ApiConfig) -> LoginBackoff {
        LoginBackoff {
            limits: Mutex::new(Self::limits_of(cfg)),
            devices: Mutex::new(HashMap::new()),
            log: LogLimit::new(),
        }
    }

    fn limits_of(cfg: &crate::config::ApiConfig) -> (Duration, Duration) {
        let base = Duration::from_millis(cfg.agent_login_backoff_ms);
        (
            base,
            Duration::from_secs(cfg.agent_login_backoff_max_s).max(base),
        )
    }

    /// New limits (a reload): for the next failures; blocks running now stay.
    pub fn set(&self, cfg: &crate::config::ApiConfig) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = Self::limits_of(cfg);
    }

    fn base_max(&self) -> (Duration, Duration) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn on(&self) -> bool {
        !self.base_max().0.is_zero()
    }

    fn key(link: Option<&str>, device: &str) -> String {
        format!("{}\u{0}{device}", link.unwrap_or(""))
    }

    /// Refuse a login on `device` (or from a connection with `client` strikes) while
    /// blocked: `busy`/`login_backoff`.
    pub fn check(
        &self,
        link: Option<&str>,
        device: &str,
        client: &Strikes,
        now: Instant,
    ) -> Result<(), ApiError> {
        if !self.on() {
            return Ok(());
        }
        let dev = self
            .devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Self::key(link, device))
            .and_then(|s| s.blocked(now));
        let (wait, what) = match (dev, client.blocked(now)) {
            (Some(d), Some(c)) if c > d => (c, "this connection"),
            (Some(d), _) => (d, "this device"),
            (None, Some(c)) => (c, "this connection"),
            (None, None) => return Ok(()),
        };
        if let Some(left_out) = self.log.allow() {
            warn!(
                device,
                limit = "api.agent_login_backoff_ms",
                left_out,
                "agent.login refused: failed before on {what}, blocked for {} ms more",
                wait.as_millis()
            );
        }
        Err(ApiError::new(
            "busy",
            "login_backoff",
            format!(
                "agent.login failed before on {what}: try again in {} ms (api.agent_login_backoff_ms, doubling up to api.agent_login_backoff_max_s)",
                wait.as_millis().max(1)
            ),
        ))
    }

    /// The outcome of a login sent to the PBX: `failed` when the PBX refused it.
    pub fn record(
        &self,
        link: Option<&str>,
        device: &str,
        client: &mut Strikes,
        failed: bool,
        now: Instant,
    ) {
        let (base, max) = self.base_max();
        if base.is_zero() {
            return;
        }
        let key = Self::key(link, device);
        let mut m = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if failed {
            client.fail(now, base, max);
            if m.len() >= BACKOFF_DEVICES_SWEEP {
                m.retain(|_, s| !s.stale(now, max));
            }
            let s = m.entry(key).or_default();
            s.fail(now, base, max);
            if let Some(left_out) = self.log.allow() {
                warn!(
                    device,
                    failures = s.failures,
                    limit = "api.agent_login_backoff_ms",
                    left_out,
                    "agent.login refused by the PBX: next try on this device in {} ms",
                    s.blocked(now).unwrap_or_default().as_millis()
                );
            }
        } else {
            *client = Strikes::default();
            m.remove(&key);
        }
    }
}

/// The audit record of a request (target `audit`): who (user, client, address), what
/// (operation, device, call) and the result (`ok` or the error's kind and code).
pub fn audit(info: &SessionInfo, op: &Op, result: Result<(), &ApiError>) {
    let user = info.user.as_ref().map(|u| u.name.as_str()).unwrap_or("");
    let (result, code) = match result {
        Ok(()) => ("ok", ""),
        Err(e) => (e.kind, e.code.as_str()),
    };
    info!(
        target: "audit",
        user,
        client = info.client,
        peer = %info.peer,
        op = op.name(),
        device = op_device(op).unwrap_or(""),
        call = op_call(op).unwrap_or(""),
        result,
        code,
        "request"
    );
}

/// Whether a request is audited: every control request (role `control` and above).
pub fn audited(op: &Op) -> bool {
    needed_role(op).is_some_and(|r| r >= Role::Control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::parse_request;

    fn set(d: &[&str]) -> DeviceSet {
        DeviceSet::parse(&d.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn op(line: &str) -> Op {
        parse_request(line).unwrap().op
    }

    fn user(role: &str, devices: &[&str], token: &str) -> UserSection {
        UserSection {
            name: format!("u-{role}"),
            token_sha256: Some(hex(&token_sha256(token))),
            role: role.into(),
            devices: devices.iter().map(|s| s.to_string()).collect(),
            ..UserSection::default()
        }
    }

    #[test]
    fn device_rights_ranges_exact_and_all() {
        let s = set(&["201-220", "8000", "+4930"]);
        for d in ["201", "210", "220", "8000", "+4930"] {
            assert!(s.contains(d), "{d}");
        }
        for d in [
            "200", "221", "0201", "2010", "80000", "800", "*", "", "20a", "+4931",
        ] {
            assert!(!s.contains(d), "{d}");
        }
        let wide = set(&["1-999"]);
        assert!(wide.contains("7") && wide.contains("999") && wide.contains("42"));
        assert!(!wide.contains("0042") && !wide.contains("1000") && !wide.contains("0"));
        let zero = set(&["0100-0199"]);
        assert!(zero.contains("0150") && !zero.contains("150") && !zero.contains("00150"));
        let all = set(&["*"]);
        assert!(all.is_all() && all.contains("201") && all.contains("+49 anything"));
        // 38 digits fit, longer numbers simply do not match a range
        assert!(!set(&["1-9"]).contains(&"9".repeat(60)));
        for bad in [
            "",
            "20-10",
            "a-b",
            "201-",
            "-5",
            "20 1",
            "é",
            &"9".repeat(39),
        ] {
            let r = DeviceSet::parse(&[format!("{bad}-1"), bad.to_string()]);
            assert!(r.is_err(), "{bad}");
        }
        assert!(DeviceSet::parse(&["220-201".into()])
            .unwrap_err()
            .contains("above its last"));
    }

    #[test]
    fn roles_and_devices_decide() {
        let users = Users::new(&[
            user("monitor", &["201-205"], "tm"),
            user("control", &["201-205", "8000"], "tc"),
            user("admin", &["*"], "ta"),
        ])
        .unwrap();
        let mon = users.login("tm").unwrap();
        let ctl = users.login("tc").unwrap();
        let adm = users.login("ta").unwrap();
        assert_eq!(
            (mon.role, ctl.role, adm.role),
            (Role::Monitor, Role::Control, Role::Admin)
        );
        let watch = op(r#"{"id":1,"op":"monitor.start","device":"203"}"#);
        let answer = op(r#"{"id":1,"op":"call.answer","device":"203"}"#);
        let login = op(r#"{"id":1,"op":"agent.login","device":"8000","agent":"7"}"#);
        let far = op(r#"{"id":1,"op":"snapshot","device":"301"}"#);
        let status = op(r#"{"id":1,"op":"status"}"#);
        assert!(mon.allows(&watch).is_ok() && mon.allows(&status).is_ok());
        let e = mon.allows(&answer).unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), ("auth", "forbidden"));
        assert!(e.message.contains("control"), "{e}");
        assert!(ctl.allows(&answer).is_ok() && ctl.allows(&login).is_ok());
        assert!(mon.allows(&login).is_err());
        let e = ctl.allows(&far).unwrap_err();
        assert!(e.message.contains("device 301"), "{e}");
        assert!(adm.allows(&far).is_ok() && adm.allows(&answer).is_ok());
        // before auth: only ping and auth
        let anon = SessionInfo {
            client: 1,
            peer: "p".into(),
            user: None,
        };
        let ping = op(r#"{"id":1,"op":"ping"}"#);
        let auth = op(r#"{"id":1,"op":"auth","token":"x"}"#);
        assert!(users.authorize(&anon, &ping).is_ok());
        assert!(users.authorize(&anon, &auth).is_ok());
        for o in [&watch, &status, &answer] {
            let e = users.authorize(&anon, o).unwrap_err();
            assert_eq!((e.kind, e.code.as_str()), ("auth", "unauthenticated"));
        }
        let known = SessionInfo {
            user: Some(mon.clone()),
            ..anon
        };
        assert!(users.authorize(&known, &watch).is_ok());
        assert!(users.authorize(&known, &answer).is_err());
        assert!(audited(&answer) && audited(&login) && !audited(&watch) && !audited(&ping));
    }

    #[test]
    fn tokens_hash_compare_and_never_show() {
        let users = Users::new(&[user("control", &["*"], "secret-token")]).unwrap();
        assert!(users.login("secret-token").is_some());
        for wrong in ["", "secret-toke", "secret-token ", "SECRET-TOKEN"] {
            assert!(users.login(wrong).is_none(), "{wrong}");
        }
        // the SHA-256 of "test" (a known vector), either case
        let h = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(hex(&token_sha256("test")), h);
        assert_eq!(parse_sha256(&h.to_uppercase()), Some(token_sha256("test")));
        assert_eq!(parse_sha256(&h[1..]), None);
        assert_eq!(parse_sha256(&format!("{}zz", &h[2..])), None);
        // new tokens: 256 bits, URL-safe, different each time
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let text = token_text(&a, "crm", Role::Control, &["201-220".into()]);
        assert!(text.contains(&hex(&token_sha256(&a))), "{text}");
        assert!(text.starts_with(&format!("token: {a}\n")), "{text}");
        let block = &text[text.find("[[user]]").unwrap()..];
        assert!(!block.contains(&a));
        let c = crate::config::Config::from_toml(&format!(
            "[[link]]\nname = \"p\"\naddress = \"h:1\"\n{block}"
        ))
        .unwrap();
        let u = Users::new(&c.users).unwrap();
        assert_eq!(u.login(&a).unwrap().name, "crm");
        // the request's Debug does not show the token
        let o = op(r#"{"id":1,"op":"auth","token":"secret-token"}"#);
        assert!(!format!("{o:?}").contains("secret-token"));
    }

    #[test]
    fn max_clients_per_user() {
        let mut s = user("monitor", &["*"], "t");
        s.max_clients = Some(2);
        let users = Users::new(&[s]).unwrap();
        let u = users.login("t").unwrap();
        let a = u.enter().unwrap();
        let b = u.enter().unwrap();
        assert!(u.enter().is_none());
        assert_eq!(u.clients(), 2);
        drop(a);
        let _c = u.enter().unwrap();
        drop(b);
        assert_eq!(u.clients(), 1);
    }

    #[test]
    fn login_backoff_doubles_per_device_and_connection() {
        let cfg = crate::config::ApiConfig {
            agent_login_backoff_ms: 100,
            agent_login_backoff_max_s: 1,
            ..Default::default()
        };
        let b = LoginBackoff::new(&cfg);
        let t0 = Instant::now();
        let mut c1 = Strikes::default();
        let c2 = Strikes::default();
        assert!(b.check(None, "201", &c1, t0).is_ok());
        b.record(None, "201", &mut c1, true, t0);
        // blocked for that device from any connection, and for that connection on any device
        let e = b.check(None, "201", &c2, t0).unwrap_err();
        assert_eq!(e.code, "login_backoff");
        assert!(b.check(None, "202", &c1, t0).is_err());
        assert!(b.check(None, "202", &c2, t0).is_ok());
        assert!(b.check(Some("other"), "201", &c2, t0).is_ok());
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.check(None, "201", &c2, t1).is_ok());
        b.record(None, "201", &mut c1, true, t1);
        assert!(b
            .check(None, "201", &c2, t1 + Duration::from_millis(150))
            .is_err());
        assert!(b
            .check(None, "201", &c2, t1 + Duration::from_millis(200))
            .is_ok());
        // capped, and a success clears it
        for _ in 0..30 {
            b.record(None, "201", &mut c1, true, t1);
        }
        assert!(b
            .check(None, "201", &c2, t1 + Duration::from_secs(1))
            .is_ok());
        b.record(None, "201", &mut c1, false, t1);
        assert!(b.check(None, "201", &c1, t1).is_ok());
    }

    #[test]
    fn status_redacted_below_admin() {
        let users = Users::new(&[user("control", &["201-205"], "t")]).unwrap();
        let u = users.login("t").unwrap();
        let v = json!({"version": "1", "uptime_s": 3, "seq": 9, "clients": 40,
            "links": [{"name": "pbx1", "state": "up", "side": 0, "address": "10.0.0.5:2555", "events_shed": 0}],
            "events_dropped_for_slow_clients": 2,
            "monitors": [{"device": "201", "clients": 3}, {"device": "301", "clients": 1}],
            "resync": []});
        let r = redact_status(v, &u);
        assert_eq!(
            r,
            json!({"version": "1", "uptime_s": 3, "links": [{"name": "pbx1", "state": "up"}], "seq": 9,
                   "monitors": [{"device": "201", "clients": 3}], "user": "u-control", "role": "control"})
        );
    }
}
