//! The API layer: the client protocol of docs/PROTOCOL.md. JSON exists here and only here.
//!
//! One direction of flow: link → gateway (tracker, bus) → api (hub, session) → transport.
//!
//! - [`protocol`]: response and error lines, error kinds;
//! - [`request`]: the typed requests ([`request::Op`], one variant per operation);
//! - [`ops`]: one handler per operation, mapped onto CSTA services;
//! - [`hub`]: the bus subscriber that makes event lines: seq numbers, replay buffer,
//!   subscriptions, bounded fan-out, `lagged`;
//! - [`session`]: one client session over any transport (lines in, lines out);
//! - [`server`]: the TCP transport (NDJSON over a socket).

pub mod auth;
mod call_line;
pub mod hub;
pub mod ops;
pub mod protocol;
pub mod request;
pub mod server;
pub mod session;

use crate::config::{self, ApiConfig, Config};
use crate::gateway::Gateway;
use hub::Hub;
use session::{Auth, LineSink, LineSource, Open};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// The client side of a gateway: the hub on its bus, the sessions, the auth hook.
pub struct Api {
    pub gateway: Arc<Gateway>,
    pub hub: Arc<Hub>,
    /// The `[api]` settings and the users in effect: a reload ([`Api::reconfigure`])
    /// replaces them.
    live: std::sync::RwLock<Live>,
    /// Counts the reloads: sessions watch it to take the new settings (and to end when
    /// their user was changed or removed).
    reloaded: tokio::sync::watch::Sender<u64>,
    /// Every request is answered within this time, whatever the PBX does (milliseconds;
    /// a reload that adds a link with a longer request timeout raises it).
    deadline_ms: std::sync::atomic::AtomicU64,
    /// Requests by operation and result, their durations, lagged clients (`/metrics`).
    pub metrics: Arc<crate::metrics::ApiMetrics>,
    /// Failed `agent.login`s per device (`api.agent_login_backoff_ms`).
    pub(crate) logins: auth::LoginBackoff,
    sessions: Sessions,
}

/// The `[api]` settings and users in effect.
#[derive(Clone)]
struct Live {
    cfg: Arc<ApiConfig>,
    auth: Arc<dyn Auth>,
    /// The client port's TLS (certificate, key, client CA), when it has TLS.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The running sessions: each holds a sender; shutdown waits until every one is dropped.
struct Sessions {
    alive: Mutex<Option<mpsc::Sender<()>>>,
    ended: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

impl Sessions {
    fn new() -> Sessions {
        let (tx, rx) = mpsc::channel(1);
        Sessions {
            alive: Mutex::new(Some(tx)),
            ended: tokio::sync::Mutex::new(rx),
        }
    }

    /// A token for a new session; `None` once shutting down.
    fn enter(&self) -> Option<mpsc::Sender<()>> {
        self.alive.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// No new sessions; wait until the running ones have ended.
    async fn close_and_wait(&self) {
        self.alive.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = self.ended.lock().await.recv().await;
    }
}

/// Start a gateway from the configuration (links and all) and its API; with `[[user]]`
/// entries, connections must authenticate ([`auth::Users`]).
pub fn start(cfg: Config) -> Arc<Api> {
    let gateway = Gateway::start(&cfg);
    let auth: Arc<dyn Auth> = match auth::Users::new(&cfg.users) {
        Ok(u) if !u.is_empty() => Arc::new(u),
        Ok(_) => Arc::new(Open),
        Err(e) => {
            // a checked configuration has none of these; refuse everyone rather than no one
            error!("the users cannot be read ({e}): every request is refused");
            Arc::new(auth::Users::none())
        }
    };
    if cfg.api.tls_cert.is_none() && !config::is_loopback(&cfg.api.listen) {
        warn!(listen = %cfg.api.listen, "the client port is reachable from other machines without TLS: tokens and events cross the network in the clear; set [api] tls_cert and tls_key (docs/CONFIG.md, \"TLS on the client port\"), or keep it on a trusted network");
    }
    Api::with_auth(gateway, cfg.api.clone(), request_deadline(&cfg), auth)
}

/// Every request is answered within this time: a few link timeouts (monitor.start makes
/// two requests) plus a margin.
pub fn request_deadline(cfg: &Config) -> Duration {
    let t = cfg
        .links
        .iter()
        .map(|l| l.request_timeout())
        .max()
        .unwrap_or(Duration::from_secs(5));
    t * 2 + Duration::from_secs(1)
}

impl Api {
    /// The API of `gateway`: its hub subscribes to the gateway's bus.
    pub fn new(gateway: Arc<Gateway>, cfg: ApiConfig, deadline: Duration) -> Arc<Api> {
        Api::with_auth(gateway, cfg, deadline, Arc::new(Open))
    }

    /// [`Api::new`] with an auth hook.
    pub fn with_auth(
        gateway: Arc<Gateway>,
        cfg: ApiConfig,
        deadline: Duration,
        auth: Arc<dyn Auth>,
    ) -> Arc<Api> {
        let hub = Arc::new(Hub::new(&cfg));
        gateway.bus.subscribe(hub.clone());
        gateway.set_behind_rule(cfg.behind_rule());
        Arc::new(Api {
            gateway,
            hub,
            logins: auth::LoginBackoff::new(&cfg),
            live: std::sync::RwLock::new(Live {
                cfg: Arc::new(cfg),
                auth,
                tls: None,
            }),
            reloaded: tokio::sync::watch::Sender::new(0),
            deadline_ms: std::sync::atomic::AtomicU64::new(
                u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            ),
            metrics: Arc::new(crate::metrics::ApiMetrics::new()),
            sessions: Sessions::new(),
        })
    }

    /// The `[api]` settings in effect (those a reload changes, the others as started).
    pub fn cfg(&self) -> Arc<ApiConfig> {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cfg
            .clone()
    }

    /// The users in effect (or [`Open`] without any).
    pub fn auth(&self) -> Arc<dyn Auth> {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .auth
            .clone()
    }

    /// Take new `[api]` settings and users (a configuration reload): the limits apply to
    /// new requests and connections at once, and every session takes them (a session
    /// whose user was changed or removed ends, see docs/CONFIG.md "Reloading").
    pub fn reconfigure(&self, cfg: ApiConfig, auth: Arc<dyn Auth>) {
        self.hub
            .set_limits(cfg.max_clients, cfg.max_monitors_per_client);
        self.logins.set(&cfg);
        self.gateway.set_behind_rule(cfg.behind_rule());
        {
            let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
            live.cfg = Arc::new(cfg);
            live.auth = auth;
        }
        self.reloaded.send_modify(|n| *n += 1);
    }

    /// Every request is answered within this time, whatever the PBX does.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// A new request deadline ([`request_deadline`] of the links as they are now).
    pub fn set_deadline(&self, d: Duration) {
        self.deadline_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The client port's TLS configuration now (new connections' handshakes use it).
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .tls
            .clone()
    }

    /// A new TLS configuration for the client port (at start, and when a reload re-reads
    /// the certificate files): for the next handshakes; connections stay as they are.
    pub fn set_tls(&self, tls: Option<Arc<rustls::ServerConfig>>) {
        self.live.write().unwrap_or_else(|p| p.into_inner()).tls = tls;
    }

    /// Changes with every [`Api::reconfigure`].
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloaded.subscribe()
    }

    /// Run a session over a transport's lines as a task of this API (shutdown waits for
    /// it).
    pub fn spawn_session<S: LineSource, K: LineSink>(
        self: &Arc<Api>,
        peer: String,
        src: S,
        sink: K,
    ) {
        self.spawn_session_as(peer, None, src, sink)
    }

    /// [`Api::spawn_session`] for a transport that authenticated the peer itself (e.g. a
    /// client certificate): `user` names the `[[user]]` it stands for; the connection is
    /// that user from the start, without `auth`.
    pub fn spawn_session_as<S: LineSource, K: LineSink>(
        self: &Arc<Api>,
        peer: String,
        user: Option<String>,
        src: S,
        sink: K,
    ) {
        let Some(alive) = self.sessions.enter() else {
            return; // shutting down: the transport's connection is dropped
        };
        let api = self.clone();
        tokio::spawn(async move {
            session::run(api, peer, user, src, sink).await;
            drop(alive);
        });
    }

    /// Shut down: every session writes what it has queued and the `shutdown` line and
    /// closes, listeners close, then every link is released (RLRQ). Bounded.
    pub async fn shutdown(&self) {
        info!("shutting down: clients first, then the PBX links");
        // the shutdown line's seq: after every event published, nothing after it
        self.hub.close();
        self.gateway.shutdown_token().cancel();
        if tokio::time::timeout(
            self.cfg().write_timeout() * 3,
            self.sessions.close_and_wait(),
        )
        .await
        .is_err()
        {
            warn!("some client sessions did not end in time");
        }
        self.gateway.shutdown().await;
    }
}
