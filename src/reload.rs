//! Configuration reload (SIGHUP, `systemctl reload`): the file is read and checked again;
//! what can change on the running gateway is applied, what cannot is reported with its
//! key as waiting for a restart. A file with a mistake changes nothing. Links and clients
//! that a change does not concern are not touched (docs/CONFIG.md, "Reloading").
//!
//! One place decides which keys are live: [`API_LIVE`], [`LINK_LIVE`], the users, the log
//! filter, the TLS files; every other changed key is "needs a restart".

use crate::api::auth::{UserChanges, Users};
use crate::api::session::{Auth, Open};
use crate::api::Api;
use crate::config::{self, Config, LinkSection};
use crate::gateway::LinkLimits;
use crate::logging::LogFilter;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{error, info, warn};

/// `[api]` keys a reload applies (the others need a restart).
pub const API_LIVE: &[&str] = &[
    "requests_per_s",
    "max_clients",
    "max_monitors_per_client",
    "write_timeout_s",
    "write_coalesce_ms",
    "write_coalesce_behind_ms",
    "behind_lag_ms",
    "behind_hold_s",
    "behind_warn_s",
    "idle_ping_s",
    "idle_timeout_s",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "tls_handshake_timeout_ms",
    "insecure",
    "users_file",
    "auth_timeout_s",
    "auth_attempts",
    "agent_login_backoff_ms",
    "agent_login_backoff_max_s",
];

/// `[[link]]` keys a reload applies to a running link (the others need a restart; a link
/// added or removed is started or released).
pub const LINK_LIVE: &[&str] = &[
    "monitor",
    "max_monitors",
    "max_outstanding",
    "requests_per_s",
];

/// Keys whose values are never shown.
const SECRET: &[&str] = &["password", "token_sha256"];

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// What was applied, one line each (`api.requests_per_s: 50 -> 10`).
    pub applied: Vec<String>,
    /// Changed keys that take effect after a restart, one line each.
    pub restart: Vec<String>,
}

/// Where a reload reads from and what it may change besides the gateway.
pub struct Setup {
    /// The configuration file the gateway started from.
    pub path: PathBuf,
    /// The installed log filter, when there is one to change.
    pub log: Option<LogFilter>,
    /// `--log` or `CTIGATE_LOG` was given: it decides the log filter, not `log.level`.
    pub log_from_flag: bool,
}

/// Re-reads the configuration file and applies it to a running gateway.
pub struct Reloader {
    path: PathBuf,
    api: Arc<Api>,
    /// The configuration in effect: as started, with every reload's live changes.
    running: Config,
    log: Option<LogFilter>,
    /// `--log` or `CTIGATE_LOG` was given: it decides the log filter, not `log.level`.
    log_from_flag: bool,
}

impl Reloader {
    /// For a gateway (`api`) started from `running`, read from `setup.path`.
    pub fn new(setup: Setup, api: Arc<Api>, running: Config) -> Reloader {
        Reloader {
            path: setup.path,
            api,
            running,
            log: setup.log,
            log_from_flag: setup.log_from_flag,
        }
    }

    /// The audit file the log writes to (`[audit] file`), which SIGHUP opens again.
    pub fn audit_file(&self) -> Option<crate::logging::AuditFile> {
        self.log.as_ref().and_then(LogFilter::audit_file)
    }

    /// Read the file again and apply it; the error (nothing changed) when it cannot be
    /// read or has a mistake. Logs what it did either way.
    pub async fn reload(&mut self) -> Result<Report, String> {
        info!(file = %self.path.display(), "reloading the configuration");
        match config::load(&self.path) {
            Ok(next) => Ok(self.apply(next).await),
            Err(e) => {
                self.api.metrics.reloaded(None);
                error!(file = %self.path.display(), "configuration reload refused, nothing changed: {e}");
                Err(e.to_string())
            }
        }
    }

    /// Apply a checked configuration.
    pub async fn apply(&mut self, next: Config) -> Report {
        let mut r = Report::default();
        self.log_level(&next, &mut r);
        self.api_and_users(&next, &mut r);
        self.links(&next, &mut r).await;
        for (section, old, new) in [
            (
                "metrics",
                table(&self.running.metrics),
                table(&next.metrics),
            ),
            ("audit", table(&self.running.audit), table(&next.audit)),
        ] {
            for (k, a, b) in diff(&old, &new) {
                r.restart.push(change(&format!("{section}.{k}"), a, b));
            }
        }
        for line in &r.applied {
            info!("reload: {line}");
        }
        for line in &r.restart {
            warn!("reload: {line}: takes effect after a restart");
        }
        self.api.metrics.reloaded(Some(r.restart.len()));
        info!(
            applied = r.applied.len(),
            restart_needed = r.restart.len(),
            "configuration reloaded"
        );
        r
    }

    fn log_level(&mut self, next: &Config, r: &mut Report) {
        let (old, new) = (&self.running.log.level, &next.log.level);
        if old == new {
            return;
        }
        match (&self.log, self.log_from_flag) {
            (Some(_), true) => {
                r.applied.push(format!(
                "log.level: {new:?} kept aside: --log/CTIGATE_LOG decides the log filter ({:?})",
                self.log.as_ref().map(LogFilter::current).unwrap_or_default()
            ))
            }
            (Some(f), false) => match f.set(new) {
                Ok(()) => r.applied.push(change(
                    "log.level",
                    Some(old.as_str().into()),
                    Some(new.as_str().into()),
                )),
                Err(e) => {
                    r.restart.push(format!("log.level: {e}"));
                    return;
                }
            },
            (None, _) => {
                r.restart.push(change(
                    "log.level",
                    Some(old.as_str().into()),
                    Some(new.as_str().into()),
                ));
                return;
            }
        }
        self.running.log.level = new.clone();
    }

    fn api_and_users(&mut self, next: &Config, r: &mut Report) {
        let (old, new) = (table(&self.running.api), table(&next.api));
        let mut merged = old.clone();
        let mut tls_files = false;
        let tls_now = self.api.tls().is_some();
        for (k, a, b) in diff(&old, &new) {
            if !API_LIVE.contains(&k.as_str()) {
                r.restart.push(change(&format!("api.{k}"), a, b));
                continue;
            }
            if k.starts_with("tls_") && k != "tls_handshake_timeout_ms" {
                tls_files = true;
                if !tls_now {
                    // a port without TLS: turning it on is reported below (restart)
                    continue;
                }
            }
            match &b {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(&k),
            };
            r.applied.push(change(&format!("api.{k}"), a, b));
        }
        let Ok(mut cfg) =
            toml::Value::Table(merged.into_iter().collect()).try_into::<config::ApiConfig>()
        else {
            // cannot happen (every value came from a checked configuration): say so, keep all
            error!("reload: the [api] settings could not be combined; [api] unchanged");
            return;
        };
        // TLS: a port without TLS cannot get it (nor the other way round) without a restart;
        // with TLS, the files are read again (a renewed certificate at the same path too)
        match (tls_now, next.api.tls()) {
            (true, Ok(Some(tls))) => {
                self.api.set_tls(Some(tls));
                if !tls_files {
                    r.applied.push("api.tls_cert, api.tls_key, api.tls_client_ca: files read again (new connections use them)".into());
                }
            }
            (true, Ok(None)) => {
                r.restart
                    .push("api.tls_cert: TLS turned off on the client port".into());
                cfg.tls_cert.clone_from(&self.running.api.tls_cert);
                cfg.tls_key.clone_from(&self.running.api.tls_key);
                cfg.tls_client_ca
                    .clone_from(&self.running.api.tls_client_ca);
            }
            (false, Ok(Some(_))) => {
                r.restart
                    .push("api.tls_cert: TLS turned on for the client port".into());
                cfg.tls_cert = None;
                cfg.tls_key = None;
                cfg.tls_client_ca = None;
            }
            (_, Ok(None)) => {}
            (_, Err(e)) => {
                // checked by load(); a file changed since: keep what runs
                r.restart.push(format!("api TLS files: {e}"));
            }
        }
        // users: the same user object where only limits changed (its connections stay)
        let auth = self.api.auth();
        let users_changed = self.running.users != next.users;
        let mut next_auth: Option<Arc<dyn Auth>> = None;
        if users_changed {
            let built = match auth.users() {
                Some(old) => Users::reload(&next.users, old),
                None => Users::reload(&next.users, &Users::none()),
            };
            match built {
                Ok((users, changes)) => {
                    describe_users(&changes, r);
                    next_auth = Some(if users.is_empty() {
                        Arc::new(Open)
                    } else {
                        Arc::new(users)
                    });
                    self.running.users = next.users.clone();
                }
                Err(e) => r.restart.push(format!("users: {e}")),
            }
        }
        if cfg != self.running.api || next_auth.is_some() {
            self.api.reconfigure(cfg.clone(), next_auth.unwrap_or(auth));
            self.running.api = cfg;
        }
    }

    async fn links(&mut self, next: &Config, r: &mut Report) {
        let gw = self.api.gateway.clone();
        let old: BTreeMap<String, LinkSection> = self
            .running
            .links
            .iter()
            .map(|l| (l.name.clone(), l.clone()))
            .collect();
        let mut running = Vec::new();
        for l in &next.links {
            let Some(was) = old.get(&l.name) else {
                if gw.add_link(l) {
                    r.applied.push(format!(
                        "link {}: added, connecting to {}",
                        l.name,
                        l.sides().join(", then ")
                    ));
                    running.push(l.clone());
                }
                continue;
            };
            let mut now = was.clone();
            let (a, b) = (table(was), table(l));
            let mut limits = false;
            for (k, va, vb) in diff(&a, &b) {
                let key = format!("link {}.{k}", l.name);
                match k.as_str() {
                    "monitor" => {
                        let Some(slot) = gw.link(&l.name) else {
                            continue;
                        };
                        let c = gw.set_configured(&slot, &l.monitor).await;
                        now.monitor = l.monitor.clone();
                        r.applied.push(format!(
                            "{key}: {} added, {} removed{}",
                            c.added.len(),
                            c.removed.len(),
                            if c.retried.is_empty() {
                                String::new()
                            } else {
                                format!(", {} refused before tried again", c.retried.len())
                            }
                        ));
                    }
                    k if LINK_LIVE.contains(&k) => {
                        limits = true;
                        r.applied.push(change(&key, va, vb));
                    }
                    _ => r.restart.push(change(&key, va, vb)),
                }
            }
            if limits {
                now.max_monitors = l.max_monitors;
                now.max_outstanding = l.max_outstanding;
                now.requests_per_s = l.requests_per_s;
                if let Some(slot) = gw.link(&l.name) {
                    slot.set_limits(LinkLimits {
                        max_monitors: l.max_monitors,
                        max_outstanding: l.max_outstanding,
                        requests_per_s: l.requests_per_s,
                    })
                    .await;
                }
            }
            running.push(now);
        }
        for name in old.keys() {
            if next.links.iter().any(|l| &l.name == name) {
                continue;
            }
            if gw.remove_link(name).await {
                // its clients' subscriptions end with it (a link of that name added later
                // starts without them)
                let subs = self.api.hub.forget_link(name);
                r.applied.push(format!(
                    "link {name}: removed, released ({subs} client subscriptions ended)"
                ));
            }
        }
        self.running.links = running;
        // a link added with a longer request timeout: requests may take that long
        self.api
            .set_deadline(crate::api::request_deadline(&self.running).max(self.api.deadline()));
    }
}

fn describe_users(c: &UserChanges, r: &mut Report) {
    let list = |v: &[String]| v.join(", ");
    if !c.added.is_empty() {
        r.applied.push(format!("users added: {}", list(&c.added)));
    }
    if !c.removed.is_empty() {
        r.applied.push(format!(
            "users removed (their connections end): {}",
            list(&c.removed)
        ));
    }
    if !c.changed.is_empty() {
        r.applied.push(format!(
            "users changed in token, role or devices (their connections end): {}",
            list(&c.changed)
        ));
    }
    if !c.limits.is_empty() {
        r.applied.push(format!(
            "user limits (max_clients, requests_per_s) changed, connections kept: {}",
            list(&c.limits)
        ));
    }
}

/// A section as its keys and values (as the file has them).
fn table(v: &impl Serialize) -> BTreeMap<String, toml::Value> {
    match toml::Value::try_from(v) {
        Ok(toml::Value::Table(t)) => t.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// The keys whose values differ: (key, old, new); `None` where absent.
fn diff(
    a: &BTreeMap<String, toml::Value>,
    b: &BTreeMap<String, toml::Value>,
) -> Vec<(String, Option<toml::Value>, Option<toml::Value>)> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
        .collect()
}

/// `key: old -> new`, secrets masked, long lists counted.
fn change(key: &str, a: Option<toml::Value>, b: Option<toml::Value>) -> String {
    let secret = SECRET.iter().any(|s| key.ends_with(s));
    let show = |v: Option<toml::Value>| match v {
        None => "(unset)".to_string(),
        Some(_) if secret => config::MASK.to_string(),
        Some(toml::Value::Array(a)) if a.len() > 8 => format!("[{} entries]", a.len()),
        Some(v) => v.to_string(),
    };
    format!("{key}: {} -> {}", show(a), show(b))
}
