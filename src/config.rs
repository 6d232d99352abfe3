//! The gateway configuration (`ctigate run --config FILE`, TOML). Everything but one
//! `[[link]]` with a name and an address is optional; every default is documented here and
//! in README.md, and every mistake names its key and the fix.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use ctigate_csta::framing::Framing;

/// A [`Framing`] in a TOML file by its name (`"length"`, `"hipath"`); a wrong name is
/// refused with the names that work. For the gateway's links and the simulator.
pub mod framing_name {
    use super::Framing;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &Framing, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(f.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Framing, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A configuration mistake.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Where adapters connect (NDJSON).
    pub listen: String,
    /// Client connections at once; more are refused with an error line.
    pub max_clients: usize,
    /// Longest request line in octets.
    pub max_line: usize,
    /// Events waiting for one client; a client whose queue is full when an event comes
    /// gets `lagged` and is disconnected.
    pub client_queue: usize,
    /// Events kept for `monitor.start` with `after` (replay), at most this many,
    pub replay_buffer: usize,
    /// ... none older than this many seconds,
    pub replay_age_s: u64,
    /// ... and at most this many octets of event lines.
    pub replay_bytes: usize,
    /// Requests per second and client (0 = unlimited); more get `busy`/`rate_limited`.
    pub requests_per_s: u32,
    /// Devices one connection may monitor at once; one more: `busy`/`client_monitor_limit`.
    pub max_monitors_per_client: usize,
    /// A write to a client that takes longer than this many seconds ends its session.
    pub write_timeout_s: u64,
    /// A client written to less than this many milliseconds ago gets its next events
    /// together when this much time has passed since that write (at most one write of
    /// events per client per this much time; 0 = every event at once). Responses are never
    /// held back, and held events go at once when they fill half of `client_queue`.
    pub write_coalesce_ms: u64,
    /// The same while the gateway is behind a link's events (one waited `behind_lag_ms`
    /// or more between the PBX socket and the event pump, until none has for
    /// `behind_hold_s`): batched writes cost less, so the gateway catches up instead of
    /// falling further behind. The larger of the two applies then; 0 = no batching for
    /// being behind.
    pub write_coalesce_behind_ms: u64,
    /// A link's events are behind from one that waited this many milliseconds or more
    /// between the PBX socket and the event pump ...
    pub behind_lag_ms: u64,
    /// ... until none has for this many seconds.
    pub behind_hold_s: u64,
    /// Behind this many seconds without a break: a warning (near capacity).
    pub behind_warn_s: u64,
    /// A client silent this many seconds (no line from it) gets a `ping` line (0 = never).
    pub idle_ping_s: u64,
    /// A client silent this many seconds is disconnected (0 = never).
    pub idle_timeout_s: u64,
    /// TLS on the client port: the server's certificate chain (PEM) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    /// ... and its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
    /// Mutual TLS: clients must show a certificate issued by this CA (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<String>,
    /// A TLS handshake not finished within this many milliseconds closes the connection.
    pub tls_handshake_timeout_ms: u64,
    /// Listen on a non-loopback address without any `[[user]]` (everyone who reaches the
    /// port may watch and act on every device): only when set knowingly.
    pub insecure: bool,
    /// More `[[user]]` entries from a file of the same shape (relative to the configuration
    /// file's directory), e.g. for a secret store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_file: Option<String>,
    /// With users: a connection that has not authenticated within this many seconds gets
    /// `auth`/`auth_timeout` and is closed.
    pub auth_timeout_s: u64,
    /// With users: failed `auth` requests after which the connection is closed.
    pub auth_attempts: u32,
    /// A failed `agent.login` (the PBX said no) blocks the next one on the same device, and
    /// from the same connection, for this many milliseconds, doubling with each further
    /// failure (0 = no backoff).
    pub agent_login_backoff_ms: u64,
    /// The longest such block, in seconds.
    pub agent_login_backoff_max_s: u64,
}

impl ApiConfig {
    /// `write_timeout_s` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_s)
    }

    /// `write_coalesce_ms` as a duration.
    pub fn write_coalesce(&self) -> Duration {
        Duration::from_millis(self.write_coalesce_ms)
    }

    /// The behind rule: `behind_lag_ms`, `behind_hold_s`, `behind_warn_s`.
    pub fn behind_rule(&self) -> crate::gateway::BehindRule {
        crate::gateway::BehindRule {
            lag: Duration::from_millis(self.behind_lag_ms),
            hold: Duration::from_secs(self.behind_hold_s),
            warn: Duration::from_secs(self.behind_warn_s),
        }
    }

    /// `write_coalesce_behind_ms` as a duration.
    pub fn write_coalesce_behind(&self) -> Duration {
        Duration::from_millis(self.write_coalesce_behind_ms)
    }

    /// `tls_handshake_timeout_ms` as a duration.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }

    /// The client port's TLS configuration, when `tls_cert` and `tls_key` are set (files
    /// read and checked now).
    pub fn tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => crate::tls::server(c, k, self.tls_client_ca.as_deref())
                .map(Some)
                .map_err(ConfigError),
            _ => Ok(None),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:7700".into(),
            max_clients: 256,
            max_line: 64 * 1024,
            client_queue: 1024,
            replay_buffer: 10_000,
            replay_age_s: 600,
            replay_bytes: 64 << 20,
            requests_per_s: 50,
            max_monitors_per_client: 10_000,
            write_timeout_s: 10,
            write_coalesce_ms: 0,
            write_coalesce_behind_ms: 30,
            behind_lag_ms: 5,
            behind_hold_s: 10,
            behind_warn_s: 60,
            idle_ping_s: 60,
            idle_timeout_s: 120,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_handshake_timeout_ms: 10_000,
            insecure: false,
            users_file: None,
            auth_timeout_s: 10,
            auth_attempts: 3,
            agent_login_backoff_ms: 1000,
            agent_login_backoff_max_s: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkSection {
    /// The link's name: events carry it, requests name it when there are several.
    pub name: String,
    /// The PBX's CSTA address, `host:port` (or `addresses`, not both).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// The PBX's sides (A, B, ...), `host:port` each: the link moves to the next one when
    /// the current one fails, round-robin.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// ACSE application context name.
    pub context: String,
    /// CSTAVersion bits announced (default: ECMA-285 editions 1 to 4: 2, 4, 14, 18).
    pub versions: Vec<u32>,
    /// ACSE calling-authentication-value, when the PBX wants one.
    pub password: Option<String>,
    /// The header before each PDU: `length` (2-octet length) or `hipath` (`26 8x xx`).
    #[serde(with = "framing_name")]
    pub framing: Framing,
    /// Send the pre-association byte `B` and expect `P` (Alcatel OmniPCX Office).
    pub handshake: bool,
    /// Every request is answered within this time (else `link`/`timeout`).
    pub request_timeout_ms: u64,
    /// Our keep-alive (systemStatus) after this much silence.
    pub keepalive_idle_s: u64,
    /// Unanswered keep-alives after which the link is declared dead.
    pub keepalive_misses: u32,
    /// Reconnect backoff, doubling from min to max.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// How much of each reconnect delay is random, percent (0 to 100).
    pub reconnect_jitter_percent: u8,
    /// A link up this long starts the backoff at reconnect_min_ms again.
    pub reconnect_reset_s: u64,
    /// Largest frame accepted from the PBX, in octets; a longer announced length means
    /// the framing is lost and the link is reset (at most 65535).
    pub max_frame: usize,
    /// Numbers of at most this many digits are internal (call type).
    pub internal_max_len: usize,
    /// Numbers starting with one of these are internal too.
    pub internal_prefixes: Vec<String>,
    /// Devices monitored from the start, whether or not a client watches them.
    pub monitor: Vec<String>,
    /// Calls a SnapshotDevice answered by reference may bring (its Snapshot Device Data
    /// segments); a larger snapshot fails and the device stays unconfirmed.
    pub snapshot_max_calls: usize,
    /// SnapshotCall requests per snapshot for the calls it found that the gateway did not
    /// know (for their parties).
    pub resync_snapshot_calls: usize,
    /// The longest wait between the retries of a failed snapshot, in seconds.
    pub resync_retry_max_s: u64,
    /// Switch events waiting for the gateway's event pump (tracker, fan-out); when it is
    /// full the link sheds events and resynchronises their devices afterwards, and never
    /// stops reading the switch.
    pub event_queue: usize,
    /// CSTA over TLS to this switch.
    pub tls: bool,
    /// With `tls`: the CA that issued the switch's certificate (PEM file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
    /// With `tls`: the name the switch's certificate must carry, when not the host of its
    /// address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Devices monitored on the PBX at once through this link (configured and
    /// client-requested); one more: `busy`/`monitor_limit` naming `link.max_monitors`.
    pub max_monitors: usize,
    /// Requests outstanding on the PBX at once (the window); more wait for room, at most
    /// `request_timeout_ms`.
    pub max_outstanding: usize,
    /// Requests sent to the PBX per second (0 = unlimited); more wait for their turn, at
    /// most `request_timeout_ms`.
    pub requests_per_s: u32,
    /// Calls tracked at one device at once; one more evicts the oldest (failed first) with
    /// `call.released` cause `evicted` and a warning naming this key.
    pub max_calls_per_device: usize,
    /// KiB read from the PBX socket ahead of the link's driver at most (the socket is read
    /// on a thread of its own); a driver that far behind leaves the socket unread until it
    /// catches up, with a warning naming this key.
    pub read_ahead_kb: usize,
}

impl Default for LinkSection {
    /// The link layer's own defaults ([`crate::link::LinkConfig::default`]), in the units of
    /// the file.
    fn default() -> Self {
        let l = crate::link::LinkConfig::default();
        let internal = crate::model::InternalRule::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        LinkSection {
            name: String::new(),
            address: String::new(),
            addresses: Vec::new(),
            context: l.context,
            versions: l.versions,
            password: l.password,
            framing: l.framing,
            handshake: l.handshake,
            request_timeout_ms: ms(l.request_timeout),
            keepalive_idle_s: l.keepalive_idle.as_secs(),
            keepalive_misses: l.keepalive_misses,
            reconnect_min_ms: ms(l.reconnect_min),
            reconnect_max_ms: ms(l.reconnect_max),
            reconnect_jitter_percent: l.reconnect_jitter_percent,
            reconnect_reset_s: l.reconnect_reset.as_secs(),
            max_frame: l.max_frame,
            internal_max_len: internal.max_len,
            internal_prefixes: internal.prefixes,
            monitor: Vec::new(),
            snapshot_max_calls: l.snapshot_max_calls,
            resync_snapshot_calls: 64,
            resync_retry_max_s: 30,
            event_queue: crate::gateway::EVENT_QUEUE,
            tls: false,
            tls_ca: None,
            tls_server_name: None,
            max_monitors: l.max_monitors,
            max_outstanding: l.max_outstanding,
            requests_per_s: l.requests_per_s,
            max_calls_per_device: crate::model::MAX_CALLS_PER_DEVICE,
            read_ahead_kb: l.read_ahead / 1024,
        }
    }
}

impl LinkSection {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The link's sides: `addresses`, or the one `address`.
    pub fn sides(&self) -> Vec<String> {
        if self.addresses.is_empty() {
            vec![self.address.clone()]
        } else {
            self.addresses.clone()
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (docs/METRICS.md).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` and `GET /healthz` are served (HTTP); empty = no endpoint.
    pub listen: String,
    /// HTTP connections at once; more wait (in the listen backlog) until one closes.
    pub max_connections: usize,
    /// A connection that sends or takes nothing for this many seconds is closed.
    pub idle_timeout_s: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: String::new(),
            max_connections: 16,
            idle_timeout_s: 30,
        }
    }
}

impl MetricsConfig {
    /// `idle_timeout_s` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }

    /// The endpoint's address, when one is configured.
    pub fn listen(&self) -> Option<&str> {
        let l = self.listen.trim();
        (!l.is_empty()).then_some(l)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSection>,
    /// The users of the client port (`[[user]]`); none: no authentication (loopback only,
    /// or `api.insecure`).
    #[serde(default, rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserSection>,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[log]`: what the gateway logs (to stderr).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// The log filter (tracing env-filter syntax: `info`, `debug`, `ctigate=debug,info`);
    /// `--log` and `CTIGATE_LOG` take precedence. Changed by a reload (SIGHUP).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// One `[[user]]`: who may connect with which token, and do what on which devices.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct UserSection {
    /// The user's name (audit log, `auth` answer).
    pub name: String,
    /// The SHA-256 of the user's token, 64 hex digits (`ctigate token` makes both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// Or: the environment variable that holds that hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_sha256_env: Option<String>,
    /// `monitor` (events and snapshots), `control` (also call and agent requests) or
    /// `admin` (also the status of every device, client and link).
    pub role: String,
    /// The devices the user may monitor and act on: numbers, ranges (`"201-220"`), `"*"`.
    pub devices: Vec<String>,
    /// Connections with this user at once (absent: only `api.max_clients`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clients: Option<usize>,
    /// Requests per second of all of this user's connections together (absent: only the
    /// per-connection `api.requests_per_s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_s: Option<u32>,
}

/// `[audit]`: where the audit records (target `audit`) go besides the log.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Append the audit records to this file, one JSON object per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A file of `[[user]]` entries (`api.users_file`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<UserSection>,
}

/// Whether `listen` (an address that parses) is a loopback address.
pub fn is_loopback(listen: &str) -> bool {
    listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

impl Config {
    /// Parse and check a TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            ConfigError(format!(
                "{}\n(docs/CONFIG.md lists every key and its default)",
                mask_secrets(e.to_string().trim_end())
            ))
        })?;
        c.validate()?;
        Ok(c)
    }

    /// The configuration as `check-config` prints it: every key with its value, defaults
    /// filled in, secret values masked.
    pub fn effective_toml(&self) -> String {
        let mut c = self.clone();
        for l in &mut c.links {
            if l.password.is_some() {
                l.password = Some(MASK.into());
            }
        }
        for u in &mut c.users {
            if u.token_sha256.is_some() {
                u.token_sha256 = Some(MASK.into());
            }
        }
        toml::to_string(&c).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = |s: String| Err(ConfigError(s));
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return e(format!(
                "api.listen: `{}` is not an address like \"127.0.0.1:7700\"",
                self.api.listen
            ));
        }
        if self.api.max_line < 1024 {
            return e("api.max_line: must be at least 1024 octets".into());
        }
        if self.api.max_monitors_per_client == 0 {
            return e("api.max_monitors_per_client: at least 1".into());
        }
        if self.api.client_queue == 0 || self.api.max_clients == 0 {
            return e("api.client_queue and api.max_clients: must be at least 1".into());
        }
        if self.api.write_timeout_s == 0 {
            return e("api.write_timeout_s: at least 1".into());
        }
        for (key, ms) in [
            ("write_coalesce_ms", self.api.write_coalesce_ms),
            (
                "write_coalesce_behind_ms",
                self.api.write_coalesce_behind_ms,
            ),
        ] {
            if ms > 1000 {
                return e(format!("api.{key}: at most 1000 (milliseconds), not {ms}"));
            }
        }
        for (key, v, max) in [
            ("behind_lag_ms", self.api.behind_lag_ms, 10_000),
            ("behind_hold_s", self.api.behind_hold_s, 3600),
            ("behind_warn_s", self.api.behind_warn_s, 86_400),
        ] {
            if !(1..=max).contains(&v) {
                return e(format!("api.{key}: 1 to {max}, not {v}"));
            }
        }
        if self.api.idle_ping_s > 0
            && self.api.idle_timeout_s > 0
            && self.api.idle_ping_s >= self.api.idle_timeout_s
        {
            return e(format!(
                "api.idle_ping_s: {} must be below api.idle_timeout_s ({}), or 0 for no ping",
                self.api.idle_ping_s, self.api.idle_timeout_s
            ));
        }
        if self.api.tls_cert.is_some() != self.api.tls_key.is_some() {
            return e("api.tls_cert and api.tls_key: set both (the certificate chain and its private key, PEM files) or neither".into());
        }
        if self.api.tls_client_ca.is_some() && self.api.tls_cert.is_none() {
            return e(
                "api.tls_client_ca: mutual TLS needs api.tls_cert and api.tls_key too".into(),
            );
        }
        if self.api.tls_handshake_timeout_ms == 0 || self.api.tls_handshake_timeout_ms > 600_000 {
            return e("api.tls_handshake_timeout_ms: between 1 and 600000".into());
        }
        self.api.tls()?;
        if let Some(l) = self.metrics.listen() {
            if l.parse::<std::net::SocketAddr>().is_err() {
                return e(format!(
                    "metrics.listen: `{l}` is not an address like \"127.0.0.1:9700\" (or \"\" for no metrics endpoint)"
                ));
            }
        }
        if self.metrics.max_connections == 0 {
            return e("metrics.max_connections: at least 1".into());
        }
        if self.metrics.idle_timeout_s == 0 {
            return e("metrics.idle_timeout_s: at least 1".into());
        }
        if self.api.auth_timeout_s == 0 || self.api.auth_attempts == 0 {
            return e("api.auth_timeout_s and api.auth_attempts: must be at least 1".into());
        }
        if let Err(m) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return e(format!(
                "log.level: `{}` is not a log filter ({m}); e.g. \"info\", \"debug\" or \"ctigate=debug,info\"",
                self.log.level
            ));
        }
        if self.api.agent_login_backoff_max_s > 3600 {
            return e("api.agent_login_backoff_max_s: at most 3600".into());
        }
        if self.users.is_empty()
            && self.api.users_file.is_none()
            && !self.api.insecure
            && !is_loopback(&self.api.listen)
        {
            return e(format!(
                "api.listen: {} is reachable from other machines and no [[user]] is configured: anyone reaching the port could watch and act on every device. Add a user (`ctigate token --name NAME --role control` prints a token and the [[user]] lines to paste), listen on 127.0.0.1, or set [api] insecure = true knowingly",
                self.api.listen
            ));
        }
        self.validate_users()?;
        if self.links.is_empty() {
            return e("no [[link]]: add one with a name and the PBX's address, e.g.\n[[link]]\nname = \"pbx1\"\naddress = \"127.0.0.1:2555\"".into());
        }
        let mut names = BTreeSet::new();
        for (i, l) in self.links.iter().enumerate() {
            let k = format!("link[{i}]");
            if l.name.is_empty()
                || !l
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return e(format!(
                    "{k}.name: give the link a name of letters, digits, - and _ (e.g. \"pbx1\")"
                ));
            }
            if !names.insert(&l.name) {
                return e(format!("{k}.name: `{}` is used by two links", l.name));
            }
            let not_host_port = |a: &str| {
                a.rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            };
            match (l.address.is_empty(), l.addresses.is_empty()) {
                (false, false) => {
                    return e(format!(
                        "{k}: give either address or addresses, not both (addresses = [\"pbx-a:2555\", \"pbx-b:2555\"] lists every side, the first one first)"
                    ))
                }
                (true, true) => {
                    return e(format!(
                        "{k}.address: missing: the PBX's CSTA port, e.g. address = \"127.0.0.1:2555\" (or addresses = [...] for several sides)"
                    ))
                }
                (false, true) if not_host_port(&l.address) => {
                    return e(format!(
                        "{k}.address: `{}` is not host:port, e.g. \"127.0.0.1:2555\"",
                        l.address
                    ));
                }
                _ => {}
            }
            if l.addresses.len() > MAX_SIDES {
                return e(format!(
                    "{k}.addresses: at most {MAX_SIDES} sides, not {}",
                    l.addresses.len()
                ));
            }
            for (j, a) in l.addresses.iter().enumerate() {
                if not_host_port(a) {
                    return e(format!(
                        "{k}.addresses[{j}]: `{a}` is not host:port, e.g. \"127.0.0.1:2555\""
                    ));
                }
            }
            let distinct: BTreeSet<&String> = l.addresses.iter().collect();
            if distinct.len() != l.addresses.len() {
                return e(format!("{k}.addresses: an address is listed twice"));
            }
            if l.context.parse::<ctigate_csta::Oid>().is_err() {
                return e(format!(
                    "{k}.context: `{}` is not an object identifier like \"1.3.12.0.218\"",
                    l.context
                ));
            }
            if l.versions.iter().any(|v| *v > 23) {
                return e(format!("{k}.versions: CSTAVersion bits are 0 to 23"));
            }
            if l.request_timeout_ms == 0 || l.request_timeout_ms > 600_000 {
                return e(format!("{k}.request_timeout_ms: between 1 and 600000"));
            }
            if !crate::link::READ_AHEAD_KB_RANGE.contains(&l.read_ahead_kb) {
                return e(format!(
                    "{k}.read_ahead_kb: {} to {}, not {}",
                    crate::link::READ_AHEAD_KB_RANGE.start(),
                    crate::link::READ_AHEAD_KB_RANGE.end(),
                    l.read_ahead_kb
                ));
            }
            if l.snapshot_max_calls == 0 {
                return e(format!("{k}.snapshot_max_calls: at least 1"));
            }
            match (l.tls, &l.tls_ca) {
                (true, None) => {
                    return e(format!("{k}.tls_ca: needed with tls = true: the CA certificate (PEM file) that issued the switch's certificate"))
                }
                (true, Some(ca)) => {
                    crate::tls::client(ca, &k).map_err(ConfigError)?;
                    if let Some(n) = &l.tls_server_name {
                        crate::tls::server_name("", Some(n))
                            .map_err(|m| ConfigError(format!("{k}.tls_server_name: {m}")))?;
                    }
                }
                (false, Some(_)) => {
                    return e(format!("{k}.tls_ca: set tls = true to use it"));
                }
                (false, None) => {}
            }
            if !(64..=1 << 20).contains(&l.event_queue) {
                return e(format!("{k}.event_queue: 64 to 1048576"));
            }
            if !(1..=3600).contains(&l.resync_retry_max_s) {
                return e(format!("{k}.resync_retry_max_s: 1 to 3600"));
            }
            if !(1..=MAX_MONITORS_LIMIT).contains(&l.max_monitors) {
                return e(format!(
                    "{k}.max_monitors: 1 to {MAX_MONITORS_LIMIT}, not {}",
                    l.max_monitors
                ));
            }
            if !(1..=MAX_OUTSTANDING_LIMIT).contains(&l.max_outstanding) {
                return e(format!(
                    "{k}.max_outstanding: 1 to {MAX_OUTSTANDING_LIMIT}, not {}",
                    l.max_outstanding
                ));
            }
            if !(1..=4096).contains(&l.max_calls_per_device) {
                return e(format!(
                    "{k}.max_calls_per_device: 1 to 4096, not {}",
                    l.max_calls_per_device
                ));
            }
            if l.keepalive_misses == 0 {
                return e(format!("{k}.keepalive_misses: at least 1"));
            }
            if l.reconnect_min_ms == 0 || l.reconnect_min_ms > l.reconnect_max_ms {
                return e(format!(
                    "{k}.reconnect_min_ms: at least 1 and not above reconnect_max_ms"
                ));
            }
            if l.reconnect_max_ms > MAX_RECONNECT_MS {
                return e(format!(
                    "{k}.reconnect_max_ms: at most {MAX_RECONNECT_MS} (an hour), not {}",
                    l.reconnect_max_ms
                ));
            }
            if l.reconnect_reset_s > MAX_RECONNECT_RESET_S {
                return e(format!(
                    "{k}.reconnect_reset_s: at most {MAX_RECONNECT_RESET_S} (a day), not {}",
                    l.reconnect_reset_s
                ));
            }
            if l.reconnect_jitter_percent > 100 {
                return e(format!(
                    "{k}.reconnect_jitter_percent: 0 to 100, not {}",
                    l.reconnect_jitter_percent
                ));
            }
            if !(64..=65_535).contains(&l.max_frame) {
                return e(format!("{k}.max_frame: between 64 and 65535"));
            }
            if l.monitor.len() > l.max_monitors {
                return e(format!(
                    "{k}.monitor: {} devices, more than max_monitors = {}; raise max_monitors",
                    l.monitor.len(),
                    l.max_monitors
                ));
            }
            for d in &l.monitor {
                if d.is_empty() || d.len() > 32 {
                    return e(format!("{k}.monitor: `{d}` is not a device number"));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// Check every `[[user]]`: a name, one hash (or its variable), a role, device rights.
    fn validate_users(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let k = format!("user[{i}]");
            if u.name.is_empty()
                || u.name.len() > 64
                || !u
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
            {
                return Err(ConfigError(format!(
                    "{k}.name: give the user a name of letters, digits, - _ . @ (at most 64), e.g. \"crm\""
                )));
            }
            if !names.insert(&u.name) {
                return Err(ConfigError(format!(
                    "{k}.name: `{}` is used by two users",
                    u.name
                )));
            }
            match (&u.token_sha256, &u.token_sha256_env) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError(format!(
                        "{k}: give either token_sha256 or token_sha256_env, not both"
                    )))
                }
                (None, None) => {
                    return Err(ConfigError(format!(
                        "{k}.token_sha256: missing: `ctigate token --name {}` prints a token and its hash",
                        u.name
                    )))
                }
                (Some(h), None) if crate::api::auth::parse_sha256(h).is_none() => {
                    return Err(ConfigError(format!(
                        "{k}.token_sha256: not 64 hex digits (the SHA-256 of the token, as `ctigate token` prints it; never the token itself)"
                    )))
                }
                (None, Some(v)) if v.is_empty() => {
                    return Err(ConfigError(format!(
                        "{k}.token_sha256_env: the name of an environment variable"
                    )))
                }
                _ => {}
            }
            if u.role.parse::<crate::api::auth::Role>().is_err() {
                return Err(ConfigError(format!(
                    "{k}.role: `{}`: one of \"monitor\", \"control\", \"admin\"",
                    u.role
                )));
            }
            if u.devices.is_empty() {
                return Err(ConfigError(format!(
                    "{k}.devices: missing: the devices this user may use, e.g. [\"201-220\", \"8000\"], or [\"*\"] for all"
                )));
            }
            if let Err(m) = crate::api::auth::DeviceSet::parse(&u.devices) {
                return Err(ConfigError(format!("{k}.devices: {m}")));
            }
            if u.max_clients == Some(0) || u.requests_per_s == Some(0) {
                return Err(ConfigError(format!(
                    "{k}: max_clients and requests_per_s must be at least 1 (leave them out for no per-user limit)"
                )));
            }
        }
        Ok(())
    }

    /// Bring in what the file refers to: the users of `api.users_file` (relative to
    /// `dir`) and the hashes held by environment variables (`token_sha256_env`, read with
    /// `env`). Checked again afterwards.
    pub fn resolve_users(
        &mut self,
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(f) = &self.api.users_file {
            let path = dir.join(f);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError(format!(
                    "api.users_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let more: UsersFile = toml::from_str(&text).map_err(|e| {
                ConfigError(format!(
                    "api.users_file: in {}: {}",
                    path.display(),
                    mask_secrets(e.to_string().trim_end())
                ))
            })?;
            if more.users.is_empty() {
                return Err(ConfigError(format!(
                    "api.users_file: {} has no [[user]]",
                    path.display()
                )));
            }
            self.users.extend(more.users);
        }
        for (i, u) in self.users.iter_mut().enumerate() {
            if let Some(var) = u.token_sha256_env.take() {
                match env(&var).map(|v| v.trim().to_string()) {
                    Some(v) if !v.is_empty() => u.token_sha256 = Some(v),
                    _ => {
                        return Err(ConfigError(format!(
                            "user[{i}].token_sha256_env: the environment variable {var} is not set"
                        )))
                    }
                }
            }
        }
        self.validate()
    }
}

/// Addresses (sides) of one link at most.
pub const MAX_SIDES: usize = 16;
/// The largest `max_monitors` a link accepts.
pub const MAX_MONITORS_LIMIT: usize = 10_000_000;
/// The largest `max_outstanding` a link accepts (far below the 32767 invoke ids).
pub const MAX_OUTSTANDING_LIMIT: usize = 8192;
/// The longest reconnect delay that may be configured (an hour).
pub const MAX_RECONNECT_MS: u64 = 3_600_000;
/// The longest stable period that may be configured (a day).
pub const MAX_RECONNECT_RESET_S: u64 = 86_400;

/// What a secret value is shown as.
pub const MASK: &str = "********";

/// Keys whose values are secrets: never echoed in errors, logs or `check-config`.
fn is_secret_key(key: &str) -> bool {
    let k = key.trim().trim_matches('"').to_ascii_lowercase();
    ["password", "token", "secret"]
        .iter()
        .any(|s| k.contains(s))
}

/// Mask the value of every `secret_key = value` in a text (the TOML parser's error quotes
/// the offending line of the file): at the start of a line (`password = "..."`, also after
/// the parser's `3 | ` margin) and inside inline tables and arrays (`{name = "x",
/// token_sha256 = "..."}`). A value runs to its closing quote, or for a bare value to the
/// next `,`, `}`, `]` or white space; an unterminated quoted value to the end of the line.
pub fn mask_secrets(text: &str) -> String {
    text.split('\n')
        .map(mask_line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn mask_line(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'=' {
            i += 1;
            continue;
        }
        // the key before this `=`: back over white space, then the key's characters
        let mut k_end = i;
        while k_end > 0 && b[k_end - 1] == b' ' {
            k_end -= 1;
        }
        let mut k_start = k_end;
        while k_start > 0
            && (b[k_start - 1].is_ascii_alphanumeric() || b"_-.\"'".contains(&b[k_start - 1]))
        {
            k_start -= 1;
        }
        let key = &line[k_start..k_end];
        let key = key.rsplit('.').next().unwrap_or(key);
        if !is_secret_key(key) {
            i += 1;
            continue;
        }
        // the value after it
        let mut v = i + 1;
        while v < b.len() && b[v] == b' ' {
            v += 1;
        }
        let end = match b.get(v) {
            Some(q @ (b'"' | b'\'')) => {
                let mut e = v + 1;
                while e < b.len() && b[e] != *q {
                    e += if b[e] == b'\\' && *q == b'"' { 2 } else { 1 };
                }
                (e + 1).min(b.len())
            }
            _ => {
                let mut e = v;
                while e < b.len() && !b" ,}]\t\r".contains(&b[e]) {
                    e += 1;
                }
                e
            }
        };
        out.push_str(&line[copied..i]);
        out.push_str(&format!("= \"{MASK}\""));
        copied = end;
        i = end.max(i + 1);
    }
    out.push_str(&line[copied.min(line.len())..]);
    out
}

/// Where the gateway's configuration file is, in this order: `--config`, then
/// `$CTIGATE_CONFIG`, then [`SYSTEM_CONFIG`] if it exists (a packaged install needs no flag).
pub fn locate(
    flag: Option<&Path>,
    env: Option<std::ffi::OsString>,
    system: &Path,
) -> Result<PathBuf, ConfigError> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return Ok(PathBuf::from(e));
    }
    if system.exists() {
        return Ok(system.to_path_buf());
    }
    Err(ConfigError(format!(
        "no configuration: pass --config FILE, set CTIGATE_CONFIG, or create {} (docs/CONFIG.md; the minimal file is an [api] listen and one [[link]] with name and address)",
        system.display()
    )))
}

/// The system-wide configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/ctigate/ctigate.toml";

/// Read and check the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let mut c =
        Config::from_toml(&text).map_err(|e| ConfigError(format!("in {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    c.resolve_users(dir, |v| std::env::var(v).ok())
        .map_err(|e| ConfigError(format!("in {}: {e}", path.display())))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_echoed() {
        // a syntax error on the password line: the parser quotes the line, we mask it
        let e = Config::from_toml(
            "[[link]]\nname = \"p\"\naddress = \"h:1\"\npassword = \"hunter2\" x\n",
        )
        .unwrap_err()
        .0;
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains(MASK), "{e}");
        let c = Config::from_toml(
            "[[link]]\nname = \"p\"\naddress = \"h:1\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        let t = c.effective_toml();
        assert!(!t.contains("hunter2") && t.contains(MASK), "{t}");
        assert_eq!(
            mask_secrets("3 | token_sha256 = \"ab\""),
            format!("3 | token_sha256 = \"{MASK}\"")
        );
        assert_eq!(mask_secrets("tls_key = \"k.pem\""), "tls_key = \"k.pem\"");
        // inline tables, several on a line, unterminated and bare values
        assert_eq!(
            mask_secrets(
                r#"5 | user = [{name = "x", token_sha256 = "abc", role = "admin"}, {password="p\"q"}]"#
            ),
            format!(
                r#"5 | user = [{{name = "x", token_sha256 = "{MASK}", role = "admin"}}, {{password= "{MASK}"}}]"#
            )
        );
        assert_eq!(
            mask_secrets("password = \"hunter2"),
            format!("password = \"{MASK}\"")
        );
        assert_eq!(
            mask_secrets("link.password = hunter2 x"),
            format!("link.password = \"{MASK}\" x")
        );
        assert_eq!(mask_secrets("a = b = c"), "a = b = c");
        let e = Config::from_toml(
            "[[link]]\nname = \"p\"\naddress = \"h:1\"\n[[user]]\nname = \"u\"\nrole = \"x\"\ndevices = [\"*\"]\ntoken_sha256 = \"00ff\" junk\n",
        )
        .unwrap_err()
        .0;
        assert!(!e.contains("00ff"), "{e}");
        // a wrong user is named, never with its hash
        let e = Config::from_toml(
            "[[link]]\nname = \"p\"\naddress = \"h:1\"\n[[user]]\nname = \"u\"\nrole = \"x\"\ndevices = [\"*\"]\ntoken_sha256 = \"00ff\"\n",
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("user[0].token_sha256") && !e.contains("00ff"),
            "{e}"
        );
    }

    #[test]
    fn framing_by_name() {
        let c =
            Config::from_toml("[[link]]\nname = \"p\"\naddress = \"h:1\"\nframing = \"hipath\"\n")
                .unwrap();
        assert_eq!(c.links[0].framing, Framing::Hipath);
        assert!(c.effective_toml().contains("framing = \"hipath\""));
        assert_eq!(
            crate::gateway::link_config(&c.links[0]).framing,
            Framing::Hipath
        );
        let e = Config::from_toml("[[link]]\nname = \"p\"\naddress = \"h:1\"\nframing = \"u16\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("unknown framing \"u16\""), "{e}");
    }

    #[test]
    fn write_coalescing_is_off_by_default_and_bounded() {
        let link = "[[link]]\nname = \"p\"\naddress = \"h:1\"\n";
        let c = Config::from_toml(link).unwrap();
        assert_eq!(c.api.write_coalesce(), Duration::ZERO);
        let c = Config::from_toml(&format!("[api]\nwrite_coalesce_ms = 1000\n{link}")).unwrap();
        assert_eq!(c.api.write_coalesce(), Duration::from_secs(1));
        // while behind: 30 ms by default, 0 turns it off
        assert_eq!(c.api.write_coalesce_behind(), Duration::from_millis(30));
        let c = Config::from_toml(&format!("[api]\nwrite_coalesce_behind_ms = 0\n{link}")).unwrap();
        assert_eq!(c.api.write_coalesce_behind(), Duration::ZERO);
        // both bounded, each refusal naming its key
        for key in ["write_coalesce_ms", "write_coalesce_behind_ms"] {
            let e = Config::from_toml(&format!("[api]\n{key} = 1001\n{link}"))
                .unwrap_err()
                .0;
            assert!(
                e.contains(&format!("api.{key}: at most 1000 (milliseconds), not 1001")),
                "{e}"
            );
        }
    }

    #[test]
    fn the_monitoring_limits_are_checked_and_named() {
        let base = "[[link]]\nname = \"p\"\naddress = \"h:1\"\n";
        let c = Config::from_toml(base).unwrap();
        assert_eq!(
            (
                c.links[0].max_monitors,
                c.links[0].max_outstanding,
                c.links[0].requests_per_s
            ),
            (200_000, 256, 0)
        );
        let lc = crate::gateway::link_config(&c.links[0]);
        assert_eq!((lc.max_monitors, lc.max_outstanding), (200_000, 256));
        let e = Config::from_toml(&format!("{base}max_outstanding = 0\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("link[0].max_outstanding: 1 to 8192, not 0"),
            "{e}"
        );
        let e = Config::from_toml(&format!("{base}max_monitors = 0\n"))
            .unwrap_err()
            .0;
        assert!(e.contains("link[0].max_monitors"), "{e}");
        let e = Config::from_toml(&format!(
            "{base}max_monitors = 1\nmonitor = [\"201\", \"202\"]\n"
        ))
        .unwrap_err()
        .0;
        assert!(
            e.contains("link[0].monitor: 2 devices, more than max_monitors = 1"),
            "{e}"
        );
    }

    #[test]
    fn the_behind_rule_is_configuration_checked_and_named() {
        let link = "[[link]]\nname = \"p\"\naddress = \"h:1\"\n";
        let rule = |toml: &str| {
            let r = Config::from_toml(&format!("{toml}{link}"))
                .unwrap()
                .api
                .behind_rule();
            (r.lag.as_millis(), r.hold.as_secs(), r.warn.as_secs())
        };
        assert_eq!(rule(""), (5, 10, 60));
        assert_eq!(
            rule("[api]\nbehind_lag_ms = 50\nbehind_hold_s = 2\nbehind_warn_s = 600\n"),
            (50, 2, 600)
        );
        for (key, bad, says) in [
            ("behind_lag_ms", 0, "api.behind_lag_ms: 1 to 10000, not 0"),
            (
                "behind_lag_ms",
                10_001,
                "api.behind_lag_ms: 1 to 10000, not 10001",
            ),
            ("behind_hold_s", 0, "api.behind_hold_s: 1 to 3600, not 0"),
            (
                "behind_warn_s",
                86_401,
                "api.behind_warn_s: 1 to 86400, not 86401",
            ),
        ] {
            let e = Config::from_toml(&format!("[api]\n{key} = {bad}\n{link}"))
                .unwrap_err()
                .0;
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn the_effective_configuration_reads_back_the_same() {
        let c =
            Config::from_toml("[[link]]\nname = \"p\"\naddress = \"h:1\"\nmonitor = [\"201\"]\n")
                .unwrap();
        assert_eq!(Config::from_toml(&c.effective_toml()).unwrap(), c);
    }

    #[test]
    fn search_order() {
        let dir = std::env::temp_dir().join(format!("ctigate-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sys = dir.join("ctigate.toml");
        let flag = Path::new("/x/flag.toml");
        assert_eq!(
            locate(Some(flag), Some("/x/env.toml".into()), &sys).unwrap(),
            flag
        );
        assert_eq!(
            locate(None, Some("/x/env.toml".into()), &sys).unwrap(),
            Path::new("/x/env.toml")
        );
        let e = locate(None, Some("".into()), &sys).unwrap_err().0;
        assert!(
            e.contains("--config") && e.contains("CTIGATE_CONFIG"),
            "{e}"
        );
        std::fs::write(&sys, "").unwrap();
        assert_eq!(locate(None, None, &sys).unwrap(), sys);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_checked() {
        let link = "[[link]]\nname = \"pbx1\"\naddress = \"127.0.0.1:2555\"\n";
        let c = Config::from_toml(link).unwrap();
        assert_eq!(c.metrics.listen(), None);
        let c = Config::from_toml(&format!("[metrics]\nlisten = \"\"\n{link}")).unwrap();
        assert_eq!(c.metrics.listen(), None);
        let c =
            Config::from_toml(&format!("[metrics]\nlisten = \"127.0.0.1:9700\"\n{link}")).unwrap();
        assert_eq!(c.metrics.listen(), Some("127.0.0.1:9700"));
        let e = Config::from_toml(&format!("[metrics]\nlisten = \"9700\"\n{link}"))
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("metrics.listen: `9700` is not an address"),
            "{e}"
        );
        let e = Config::from_toml(&format!("[metrics]\nport = 9700\n{link}"))
            .unwrap_err()
            .0;
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn the_minimal_file_is_enough() {
        let c = Config::from_toml(
            "[api]\nlisten = \"127.0.0.1:7700\"\n[[link]]\nname = \"pbx1\"\naddress = \"127.0.0.1:2555\"\n",
        )
        .unwrap();
        assert_eq!(c.links[0].context, "1.3.12.0.218");
        assert_eq!(c.links[0].request_timeout_ms, 5000);
        assert_eq!(c.api.max_line, 65536);
    }

    #[test]
    fn mistakes_name_the_key_and_the_fix() {
        let err = |t: &str| Config::from_toml(t).unwrap_err().0;
        assert!(err("").contains("no [[link]]"));
        assert!(err("[[link]]\nname = \"p\"\naddress = \"nohost\"").contains("link[0].address"));
        assert!(err("[[link]]\nname = \"p\"\naddres = \"x:1\"").contains("addres"));
        assert!(
            err("[api]\nlisten = \"x\"\n[[link]]\nname = \"p\"\naddress = \"h:1\"")
                .contains("api.listen")
        );
        assert_eq!(
            err("[api]\nidle_ping_s = 60\nidle_timeout_s = 60\n[[link]]\nname = \"p\"\naddress = \"h:1\""),
            "api.idle_ping_s: 60 must be below api.idle_timeout_s (60), or 0 for no ping"
        );
        assert!(Config::from_toml(
            "[api]\nidle_ping_s = 0\nidle_timeout_s = 0\n[[link]]\nname = \"p\"\naddress = \"h:1\""
        )
        .is_ok());
        assert!(err(
            "[[link]]\nname = \"p\"\naddress = \"h:1\"\n[[link]]\nname = \"p\"\naddress = \"h:2\""
        )
        .contains("used by two links"));
        assert!(
            err("[[link]]\nname = \"p\"\naddress = \"h:1\"\ncontext = \"x.y\"")
                .contains("link[0].context")
        );
        assert!(err("[[link]]\nname = \"p\"").contains("link[0].address: missing"));
        assert!(
            err("[[link]]\nname = \"p\"\naddress = \"h:1\"\naddresses = [\"h:1\", \"h:2\"]")
                .contains("link[0]: give either address or addresses, not both")
        );
        assert!(err("[[link]]\nname = \"p\"\naddresses = [\"h:1\", \"h2\"]")
            .contains("link[0].addresses[1]: `h2` is not host:port"));
        assert!(
            err("[[link]]\nname = \"p\"\naddresses = [\"h:1\", \"h:1\"]").contains("listed twice")
        );
        assert!(
            err("[[link]]\nname = \"p\"\naddress = \"h:1\"\nreconnect_jitter_percent = 101")
                .contains("link[0].reconnect_jitter_percent")
        );
        assert!(err(
            "[[link]]\nname = \"p\"\naddress = \"h:1\"\nreconnect_max_ms = 18446744073709551615"
        )
        .contains("link[0].reconnect_max_ms: at most 3600000"));
        assert!(
            err("[[link]]\nname = \"p\"\naddress = \"h:1\"\nreconnect_reset_s = 86401")
                .contains("link[0].reconnect_reset_s: at most 86400")
        );
        for bad in [0, 63, 65536] {
            assert!(
                err(&format!(
                    "[[link]]\nname = \"p\"\naddress = \"h:1\"\nmax_frame = {bad}"
                ))
                .contains("link[0].max_frame: between 64 and 65535"),
                "{bad}"
            );
        }
        let ok = "[[link]]\nname = \"p\"\naddress = \"h:1\"\nmax_frame = 65535";
        let c = Config::from_toml(ok).unwrap();
        assert_eq!(crate::gateway::link_config(&c.links[0]).max_frame, 65535);
    }

    #[test]
    fn sides_from_address_or_addresses() {
        let c = Config::from_toml("[[link]]\nname = \"p\"\naddress = \"h:1\"\n").unwrap();
        assert_eq!(c.links[0].sides(), ["h:1"]);
        let c =
            Config::from_toml("[[link]]\nname = \"p\"\naddresses = [\"a:1\", \"b:1\"]\n").unwrap();
        assert_eq!(c.links[0].sides(), ["a:1", "b:1"]);
        // check-config prints what was given, and it reads back the same
        let t = c.effective_toml();
        assert!(
            t.contains("addresses = [\"a:1\", \"b:1\"]") && !t.contains("address ="),
            "{t}"
        );
        assert_eq!(Config::from_toml(&t).unwrap(), c);
    }
}
