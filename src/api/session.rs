//! One client session, whatever carries its lines: `hello` first, then requests and the
//! subscribed events, until the client goes or the gateway shuts down.
//!
//! A transport gives the session a [`LineSource`] (lines in, each bounded) and a
//! [`LineSink`] (lines out) and calls [`run`]; the session does everything else: the
//! client limit, hello, the [`Auth`] hook, the rate limit, the in-order application of
//! requests, the deadline on each, `lagged`, replay (`after`, in `monitor.start`), the
//! monitor release when the client goes, and the `shutdown` line. The TCP adapter is
//! [`super::server`]; a WebSocket adapter (text frame = one line) goes beside it and
//! calls [`run`] the same way.
//!
//! Order (PROTOCOL.md "Order"): requests that act ([`Op::in_order`]) are run one after
//! another, in the order received; `ping`, `status` and lines rejected before running
//! (bad JSON, unknown op, a bad field, rate limit, auth) are answered at once. The
//! deadline counts from receipt: a request still waiting when it passes is answered
//! `link`/`timeout` without being run. Responses
//! are never dropped (reading stops while [`IN_FLIGHT`] requests wait); a client whose
//! event queue is full when an event comes is cut: what is queued, `lagged`, close.

use super::auth::{self as acl, Strikes, User, UserSlot};
use super::hub::{ClientId, ClientShared, Hub};
use super::ops::{self, Cx};
use super::protocol::{error_line, ok_line, ApiError, Id, PROTOCOL};
use super::request::{parse_request, Op, Request};
use super::Api;
use crate::lines::Line;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Requests of one client waiting to run; beyond them the session stops reading.
pub const IN_FLIGHT: usize = 32;

/// Lines from the client.
pub trait LineSource: Send + 'static {
    /// The next line: text (without its newline), too long (skipped), or the end.
    fn next_line(&mut self) -> impl Future<Output = std::io::Result<Line>> + Send;
}

/// Lines to the client.
pub trait LineSink: Send + 'static {
    /// Write `lines` (each without its newline) in order; an error ends the session.
    fn send(&mut self, lines: &[Arc<str>]) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Close the connection after the last lines.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Who the session is, for the [`Auth`] hook.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub client: ClientId,
    /// The transport's name for the peer (`127.0.0.1:50412`).
    pub peer: String,
    /// The user of the connection, once known: set by the `auth` request, or from the
    /// start when the transport vouches for one ([`super::Api::spawn_session_as`], e.g. a
    /// client certificate's subject); `None` before.
    pub user: Option<Arc<User>>,
}

/// The auth hook: may this session run this request? Called for every request before it
/// runs; an error (kind `auth`: `unauthenticated`, `forbidden`) is its answer. The
/// `[[user]]` list ([`super::auth::Users`]) decides here when there is one.
pub trait Auth: Send + Sync + 'static {
    fn authorize(&self, session: &SessionInfo, op: &Op) -> Result<(), ApiError>;

    /// Whether a connection must authenticate (`hello` says `"auth":"required"`).
    fn required(&self) -> bool {
        false
    }

    /// The user with this token (the `auth` request), if any.
    fn login(&self, _token: &str) -> Option<Arc<User>> {
        None
    }

    /// The user of this name, for a transport that authenticated the peer itself.
    fn named(&self, _name: &str) -> Option<Arc<User>> {
        None
    }

    /// The configured users, when this is them (a reload builds on them).
    fn users(&self) -> Option<&super::auth::Users> {
        None
    }
}

/// Everyone may do everything (the protocol v1 default).
pub struct Open;

impl Auth for Open {
    fn authorize(&self, _: &SessionInfo, _: &Op) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Log lines about requests refused for a rate limit: at most one a second.
static RATE_LOG: std::sync::LazyLock<acl::LogLimit> = std::sync::LazyLock::new(acl::LogLimit::new);
/// Log lines about connections refused for `api.max_clients`: at most one a second.
static REFUSED_LOG: std::sync::LazyLock<acl::LogLimit> =
    std::sync::LazyLock::new(acl::LogLimit::new);
/// Log lines about failed logins and per-user refusals: at most one a second.
static AUTH_LOG: std::sync::LazyLock<acl::LogLimit> = std::sync::LazyLock::new(acl::LogLimit::new);

/// Serve one client until it goes or the gateway shuts down. `user`: the name of a user
/// the transport authenticated (None: the client authenticates with `auth`, if needed).
pub async fn run<S: LineSource, K: LineSink>(
    api: Arc<Api>,
    peer: String,
    user: Option<String>,
    mut src: S,
    mut sink: K,
) {
    let stop = api.gateway.shutdown_token();
    let required = api.auth().required();
    let Some((id, events, shared)) = api.hub.register(!required) else {
        if let Some(left_out) = REFUSED_LOG.allow() {
            warn!(%peer, limit = "api.max_clients", max = api.cfg().max_clients, left_out,
                  "client refused: too many clients (lines like this one left out in the last second: {left_out})");
        }
        let line = error_line(
            &Id::null(),
            &ApiError::new(
                "busy",
                "too_many_clients",
                "the gateway serves its maximum number of clients; try later",
            ),
        );
        let _ = tokio::time::timeout(api.cfg().write_timeout(), sink.send(&[line.into()])).await;
        sink.close().await;
        return;
    };
    info!(client = id, %peer, "client connected");
    let mut info = SessionInfo {
        client: id,
        peer,
        user: None,
    };
    // a user the transport vouches for counts as authenticated from the start
    let mut slot: Option<UserSlot> = None;
    if let Some(name) = user.filter(|_| required) {
        match api.auth().named(&name).map(|u| (u.enter(), u)) {
            Some((Some(s), u)) => {
                info!(target: "audit", user = %u.name, client = id, peer = %info.peer,
                      op = "auth", result = "ok", code = "", "authenticated by the transport");
                slot = Some(s);
                info.user = Some(u);
            }
            Some((None, u)) => warn!(client = id, user = %u.name, limit = "user.max_clients",
                                     "the transport's user has all its connections: authenticate with auth"),
            None => warn!(client = id, user = %name, "the transport's user is not configured"),
        }
    }
    // the seq the hello says: events come after it
    let seq = if required && info.user.is_some() {
        api.hub.admit(&shared)
    } else {
        shared.registered_after
    };
    let hello: Arc<str> = if shared.is_admitted() {
        let mut h = json!({
            "type": "hello", "protocol": PROTOCOL, "version": env!("CARGO_PKG_VERSION"),
            "auth": if required { "required" } else { "none" },
            "links": ops::link_states(&api.gateway), "seq": seq,
        });
        if let Some(u) = &info.user {
            h["user"] = json!(u.name);
        }
        h
    } else {
        // before the client has authenticated: the links' names and states (for health
        // checks), not the PBX's addresses or counters
        let links: Vec<Value> = ops::link_states(&api.gateway)
            .as_array()
            .map(|a| a.iter().map(|l| json!({"name": l["name"], "state": l["state"]})).collect())
            .unwrap_or_default();
        json!({
            "type": "hello", "protocol": PROTOCOL, "version": env!("CARGO_PKG_VERSION"),
            "auth": "required", "links": links, "seq": seq,
            "message": format!("authenticate within {} s: {{\"id\":1,\"op\":\"auth\",\"token\":\"...\"}}", api.cfg().auth_timeout_s),
        })
    }
    .to_string()
    .into();
    let (resp_tx, resp_rx) = mpsc::channel::<Arc<str>>(IN_FLIGHT);
    let mut writer = tokio::spawn(write_loop(
        sink,
        hello,
        resp_rx,
        events,
        shared.clone(),
        api.clone(),
        stop.clone(),
        id,
    ));
    // the requests that act, one after another
    let gone = CancellationToken::new();
    let (req_tx, req_rx) = mpsc::channel::<(Request, Instant, SessionInfo)>(IN_FLIGHT);
    let exec = tokio::spawn(exec_loop(
        api.clone(),
        req_rx,
        resp_tx.clone(),
        gone.clone(),
    ));
    let mut rate = RateLimit::new(api.cfg().requests_per_s);
    let mut writer_done = false;
    // lines are read by a task of their own, so that waiting for one can be interrupted
    // (idle ping) without losing half a line
    let (line_tx, mut lines) = mpsc::channel::<std::io::Result<Line>>(1);
    let reader = tokio::spawn(async move {
        loop {
            let l = src.next_line().await;
            let more = matches!(l, Ok(Line::Text(_) | Line::TooLong));
            if line_tx.send(l).await.is_err() || !more {
                break;
            }
        }
    });
    let mut idle = Idle::new(&api.cfg());
    let mut reloads = api.reloads();
    let auth_deadline = Instant::now() + Duration::from_secs(api.cfg().auth_timeout_s);
    let mut failed_logins: u32 = 0;
    loop {
        let line = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = &mut writer => { writer_done = true; break } // the client stopped reading or went away
            r = reloads.changed() => {
                if r.is_err() {
                    break;
                }
                // a configuration reload (before the next line: a removed user's requests stop
                // at once): the new limits, and still the same user?
                let cfg = api.cfg();
                rate.set(cfg.requests_per_s);
                idle.set(&cfg);
                if let Some(e) = credentials_changed(&api, &info, shared.is_admitted()) {
                    info!(target: "audit", user = %info.user.as_ref().map_or("", |u| u.name.as_str()),
                          client = id, peer = %info.peer, op = "reload", result = "disconnected",
                          code = e.code, "{}", e.message);
                    let _ = resp_tx.send(error_line(&Id::null(), &e).into()).await;
                    break;
                }
                continue;
            }
            l = lines.recv() => {
                idle.heard(Instant::now());
                l.unwrap_or(Ok(Line::Eof))
            }
            _ = tokio::time::sleep_until(auth_deadline), if !shared.is_admitted() => {
                if let Some(left_out) = AUTH_LOG.allow() {
                    info!(client = id, peer = %info.peer, limit = "api.auth_timeout_s", left_out,
                          "client did not authenticate within {} s: disconnected", api.cfg().auth_timeout_s);
                }
                let e = ApiError::new("auth", "auth_timeout", format!(
                    "not authenticated within {} s (api.auth_timeout_s): disconnected; send {{\"id\":1,\"op\":\"auth\",\"token\":\"...\"}} first",
                    api.cfg().auth_timeout_s));
                let _ = resp_tx.send(error_line(&Id::null(), &e).into()).await;
                break;
            }
            _ = tokio::time::sleep_until(idle.next()), if idle.on() => {
                if let Some(line) = idle.due(Instant::now()) {
                    let last = idle.reaped;
                    if last {
                        info!(client = id, limit = "api.idle_timeout_s",
                              "client silent for {} s: disconnected", api.cfg().idle_timeout_s);
                    }
                    if resp_tx.send(line).await.is_err() || last {
                        break;
                    }
                }
                continue;
            }
        };
        let text = match line {
            Ok(Line::Text(t)) => t,
            Ok(Line::TooLong) => {
                let e = ApiError::request(
                    "line_too_long",
                    format!(
                        "a request line may be at most {} octets",
                        api.cfg().max_line
                    ),
                );
                api.metrics
                    .request(crate::metrics::OP_INVALID, Some(e.kind));
                if resp_tx
                    .send(error_line(&Id::null(), &e).into())
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            Ok(Line::Eof) | Err(_) => break,
        };
        if text.trim().is_empty() {
            continue;
        }
        let mut op = crate::metrics::OP_INVALID;
        let checked = parse_request(&text)
            .and_then(|r| {
                op = r.op.name();
                match api.auth().authorize(&info, &r.op) {
                    Ok(()) => Ok(r),
                    Err(e) => {
                        if acl::audited(&r.op) {
                            acl::audit(&info, &r.op, Err(&e));
                        }
                        Err(Box::new((r.id, e)))
                    }
                }
            })
            .and_then(|r| match rate.admit(Instant::now()) {
                Ok(()) => Ok(r),
                Err(e) => Err(Box::new((r.id, e))),
            })
            .and_then(
                |r| match info.user.as_ref().map(|u| u.admit(Instant::now())) {
                    Some(Err(e)) => Err(Box::new((r.id, e))),
                    _ => Ok(r),
                },
            );
        let req = match checked {
            Ok(r) => r,
            Err(bad) => {
                let (rid, e) = *bad;
                api.metrics.request(op, Some(e.kind));
                if resp_tx.send(error_line(&rid, &e).into()).await.is_err() {
                    break;
                }
                continue;
            }
        };
        debug!(client = id, op = req.op.name(), "request");
        if let Op::Login(login) = &req.op {
            let (line, close) = auth_request(
                &api,
                &mut info,
                &mut slot,
                &mut failed_logins,
                &req.id,
                &login.token,
                &shared,
            );
            if resp_tx.send(line).await.is_err() || close {
                break;
            }
            continue;
        }
        if req.op.in_order() {
            // waits while IN_FLIGHT requests are queued (stops reading this client)
            let sent = tokio::select! {
                _ = stop.cancelled() => break,
                s = req_tx.send((req, Instant::now(), info.clone())) => s,
            };
            if sent.is_err() {
                break;
            }
        } else {
            let line = run_one(&api, &info, req, Instant::now(), &mut Strikes::default()).await;
            if resp_tx.send(line).await.is_err() {
                break;
            }
        }
    }
    reader.abort();
    // no more requests. At the end of input the queued ones still run and are answered
    // (the client may only have closed its sending side); all of them within the deadline
    // from receipt. A client that is gone gets only the running one finished.
    drop(req_tx);
    if writer_done {
        gone.cancel();
    }
    let shutting_down = stop.is_cancelled();
    if shutting_down {
        exec.abort();
    } else {
        let _ = exec.await;
    }
    // no more events for it; every monitor count it took is given back (also those of a
    // request cut off half-way), then it stops counting as a client
    api.hub.unsubscribe_all(id);
    if !shutting_down {
        // the link's release on shutdown ends every PBX monitor at once
        for s in api.gateway.links().values() {
            api.gateway.monitor_release_all(s, id).await;
        }
    }
    api.hub.unregister(id);
    drop(slot);
    drop(resp_tx);
    if !writer_done
        && tokio::time::timeout(api.cfg().write_timeout() * 2, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    info!(client = id, peer = %info.peer, "client gone");
}

/// After a reload: the error that ends a session whose user was changed (token, role or
/// devices) or removed, or that has not authenticated while authentication is now
/// required; `None` when the session goes on as it is.
fn credentials_changed(api: &Api, info: &SessionInfo, authed: bool) -> Option<ApiError> {
    let auth = api.auth();
    let msg = match &info.user {
        Some(u) => match auth.named(&u.name) {
            Some(now) if Arc::ptr_eq(&now, u) => return None,
            Some(_) => format!("user {} was changed by a configuration reload (token, role or devices): disconnected; connect again and authenticate", u.name),
            None => format!("user {} was removed by a configuration reload: disconnected", u.name),
        },
        None if authed && auth.required() => "the gateway requires authentication since a configuration reload: disconnected; connect again and send {\"id\":1,\"op\":\"auth\",\"token\":\"...\"}".to_string(),
        None => return None,
    };
    Some(ApiError::new("auth", "credentials_changed", msg))
}

/// The `auth` request: the answer line, and whether the connection closes (too many
/// failures, or the user has all its connections).
fn auth_request(
    api: &Api,
    info: &mut SessionInfo,
    slot: &mut Option<UserSlot>,
    failures: &mut u32,
    rid: &Id,
    token: &str,
    shared: &ClientShared,
) -> (Arc<str>, bool) {
    let audit = |info: &SessionInfo, user: &str, result: &str, code: &str| {
        info!(target: "audit", user, client = info.client, peer = %info.peer, op = "auth",
              result, code, "request");
    };
    if !api.auth().required() {
        return (
            ok_line(rid, json!({"auth": "none", "user": null})).into(),
            false,
        );
    }
    if let Some(u) = &info.user {
        let e = ApiError::new(
            "auth",
            "already_authenticated",
            format!(
                "this connection is user {} already; a new login takes a new connection",
                u.name
            ),
        );
        return (error_line(rid, &e).into(), false);
    }
    let Some(user) = api.auth().login(token) else {
        *failures += 1;
        let max = api.cfg().auth_attempts;
        let close = *failures >= max;
        audit(info, "", "auth", "bad_token");
        if let Some(left_out) = AUTH_LOG.allow() {
            warn!(client = info.client, peer = %info.peer, failures = *failures,
                  limit = "api.auth_attempts", left_out, "failed login (the token is not shown)");
        }
        let msg = if close {
            format!("unknown token; {max} failed attempts (api.auth_attempts): disconnected")
        } else {
            format!(
                "unknown token ({} of {max} attempts, api.auth_attempts)",
                *failures
            )
        };
        return (
            error_line(rid, &ApiError::new("auth", "bad_token", msg)).into(),
            close,
        );
    };
    let Some(s) = user.enter() else {
        audit(info, &user.name, "busy", "user_max_clients");
        if let Some(left_out) = AUTH_LOG.allow() {
            warn!(client = info.client, peer = %info.peer, user = %user.name, limit = "user.max_clients",
                  max = user.max_clients(), left_out, "login refused: the user has all its connections");
        }
        let e = ApiError::new(
            "busy",
            "user_max_clients",
            format!(
                "user {} has {} connections already ([[user]] max_clients): disconnected",
                user.name,
                user.max_clients().unwrap_or_default()
            ),
        );
        return (error_line(rid, &e).into(), true);
    };
    audit(info, &user.name, "ok", "");
    info!(client = info.client, user = %user.name, role = user.role.name(), "client authenticated");
    let v = json!({
        "user": user.name, "role": user.role.name(),
        "devices": if user.devices.is_all() { json!("*") } else { json!("restricted") },
        "links": acl::links_for(user.role, ops::link_states(&api.gateway)),
        // admitted to events now: the ones it gets come after this seq, and none after it
        // is missed (a link event that raced this answer)
        "seq": api.hub.admit(shared),
    });
    *slot = Some(s);
    info.user = Some(user);
    (ok_line(rid, v).into(), false)
}

/// Run one request received at `received` within the deadline from then; its response
/// line. A request whose deadline passed while it waited is not run. Control requests
/// are audited; `agent.login` goes through the backoff (`strikes`: this connection's).
async fn run_one(
    api: &Api,
    info: &SessionInfo,
    req: Request,
    received: Instant,
    strikes: &mut Strikes,
) -> Arc<str> {
    let cx = Cx {
        gw: &api.gateway,
        hub: &api.hub,
        client: info.client,
    };
    let op = req.op.name();
    let audited = acl::audited(&req.op);
    let audit_op = audited.then(|| req.op.clone());
    let status = matches!(req.op, Op::Status(_));
    let login = match &req.op {
        Op::AgentLogin(a) => Some((a.link.clone(), a.device.clone())),
        _ => None,
    };
    if let Some((link, device)) = &login {
        if let Err(e) = api
            .logins
            .check(link.as_deref(), device, strikes, Instant::now())
        {
            if let Some(op) = &audit_op {
                acl::audit(info, op, Err(&e));
            }
            api.metrics.answered(op, Some(e.kind), received.elapsed());
            return error_line(&req.id, &e).into();
        }
    }
    let left = api.deadline().saturating_sub(received.elapsed());
    let res = if left.is_zero() {
        Err(ApiError::new(
            "link",
            "timeout",
            "not carried out: the requests before it on this connection took its time",
        ))
    } else {
        match tokio::time::timeout(left, ops::handle(&cx, req.op)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::new(
                "link",
                "timeout",
                "the request took too long",
            )),
        }
    };
    if let Some((link, device)) = &login {
        let refused = matches!(&res, Err(e) if e.kind == "switch");
        if res.is_ok() || refused {
            api.logins
                .record(link.as_deref(), device, strikes, refused, Instant::now());
        }
    }
    if let Some(op) = &audit_op {
        acl::audit(info, op, res.as_ref().map(|_| ()));
    }
    let res = match (res, &info.user) {
        (Ok(v), Some(u)) if status => Ok(acl::redact_status(v, u)),
        (r, _) => r,
    };
    let kind = res.as_ref().err().map(|e| e.kind);
    let line = match res {
        Ok(v) => ok_line(&req.id, v),
        Err(e) => error_line(&req.id, &e),
    };
    api.metrics.answered(op, kind, received.elapsed());
    line.into()
}

async fn exec_loop(
    api: Arc<Api>,
    mut rx: mpsc::Receiver<(Request, Instant, SessionInfo)>,
    tx: mpsc::Sender<Arc<str>>,
    gone: CancellationToken,
) {
    let mut strikes = Strikes::default();
    while let Some((req, received, info)) = rx.recv().await {
        if gone.is_cancelled() {
            break;
        }
        let line = run_one(&api, &info, req, received, &mut strikes).await;
        if tx.send(line).await.is_err() {
            break;
        }
    }
}

/// The writer: hello, then responses first, then events (what is queued, in one write);
/// when the hub cut the client (its queue was full), what is queued, then `lagged`, then
/// close; on shutdown, what is queued, then the `shutdown` line, then close.
#[allow(clippy::too_many_arguments)]
async fn write_loop<K: LineSink>(
    mut sink: K,
    hello: Arc<str>,
    mut responses: mpsc::Receiver<Arc<str>>,
    mut events: mpsc::Receiver<Arc<str>>,
    shared: Arc<ClientShared>,
    api: Arc<Api>,
    stop: CancellationToken,
    client: ClientId,
) {
    // read once, not per event: `client_queue` needs a restart to change, and a reload's
    // `write_timeout_s` and `write_coalesce_ms` are taken at the next reload notice
    let queue = api.cfg().client_queue;
    let mut write_timeout = api.cfg().write_timeout();
    let mut coalesce = api.cfg().write_coalesce();
    let mut coalesce_behind = api.cfg().write_coalesce_behind();
    let mut out: Vec<Arc<str>> = vec![hello];
    if !write(&mut sink, &mut out, write_timeout).await {
        sink.close().await;
        return;
    }
    // made once, not per event (each registers with its token or channel when made anew)
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let cut = shared.cut.cancelled();
    tokio::pin!(cut);
    let mut reload = next_reload(api.reloads());
    let mut last_write = Instant::now();
    loop {
        // events for a client written to less than the hold ago wait for the rest of it,
        // and go in one write with those that come meanwhile: at most one write of events
        // per client per hold, so a busy client costs the gateway (and itself) a system
        // call per batch, not per event. The hold is `write_coalesce_ms`, or while the
        // gateway is behind a link's events `write_coalesce_behind_ms` (when longer). The
        // queued events do not wake this task during a hold: a client with a hold running
        // waits for its end *before* it waits for events, so a busy one wakes once per
        // write (its timer), not also for its first event; a half-full queue (the hub's
        // `flush`), a response, a cut or the shutdown end the wait at once.
        let until = last_write + hold(&api, coalesce, coalesce_behind);
        let held = Instant::now() < until;
        // a response in `out`: written at once, with the events queued before it
        let mut answer = false;
        // the hold is over (its timer, or the flush): write what is queued
        let mut due = false;
        tokio::select! {
            biased;
            _ = &mut stopped => {
                flush_for_shutdown(&mut out, &mut responses, &mut events, &shared, &api.hub, &api.metrics);
                write(&mut sink, &mut out, write_timeout).await;
                break;
            }
            rx = &mut reload => {
                write_timeout = api.cfg().write_timeout();
                coalesce = api.cfg().write_coalesce();
                coalesce_behind = api.cfg().write_coalesce_behind();
                reload = match rx {
                    Some(rx) => next_reload(rx),
                    None => Box::pin(std::future::pending()), // no more reloads
                };
                continue;
            }
            r = responses.recv() => match r {
                Some(line) => {
                    // after the events queued before it (held ones too)
                    take_queued(&mut events, &mut out, queue);
                    out.push(line);
                    answer = true;
                }
                None => break,
            },
            _ = &mut cut => {
                warn!(client, limit = "api.client_queue", queue = queue,
                      "client cut: it did not read its events fast enough");
                while let Ok(line) = responses.try_recv() {
                    out.push(line);
                }
                while let Ok(line) = events.try_recv() {
                    out.push(line);
                }
                if lagged(&shared, queue, &mut out) {
                    api.metrics.lagged();
                }
                write(&mut sink, &mut out, write_timeout).await;
                break;
            }
            _ = shared.flush.notified(), if held => due = true,
            _ = tokio::time::sleep_until(until), if held => due = true,
            // (events come once the client is admitted: `Hub::admit`)
            e = events.recv(), if !held => match e {
                Some(line) => out.push(line),
                None => break,
            },
        }
        // the first event after a hold ran out (or with none running): the hold that
        // applies now, from the last write
        if !answer && !due {
            let until = last_write + hold(&api, coalesce, coalesce_behind);
            if Instant::now() < until {
                tokio::select! {
                    biased;
                    _ = &mut stopped => {}
                    _ = &mut cut => {}
                    r = responses.recv() => if let Some(line) = r {
                        take_queued(&mut events, &mut out, queue);
                        out.push(line);
                    },
                    _ = shared.flush.notified() => {}
                    _ = tokio::time::sleep_until(until) => {}
                }
            }
        }
        // and what else is queued, in the same write
        take_queued(&mut events, &mut out, queue);
        if out.is_empty() {
            // a hold ran out with nothing queued: wait for the next event
            continue;
        }
        if !write(&mut sink, &mut out, write_timeout).await {
            break;
        }
        last_write = Instant::now();
    }
    sink.close().await;
}

/// The events queued for the client, into `out` (up to `queue` lines in it).
fn take_queued(events: &mut mpsc::Receiver<Arc<str>>, out: &mut Vec<Arc<str>>, queue: usize) {
    while out.len() < queue {
        match events.try_recv() {
            Ok(line) => out.push(line),
            Err(_) => break,
        }
    }
}

/// How long a client's events wait after its last write: `write_coalesce_ms`, or while the
/// gateway is behind a link's events `write_coalesce_behind_ms` when that is longer.
fn hold(api: &Api, coalesce: Duration, coalesce_behind: Duration) -> Duration {
    if api.gateway.is_behind() {
        coalesce.max(coalesce_behind)
    } else {
        coalesce
    }
}

/// The next reload notice: the receiver again, or `None` when no more can come.
type NextReload =
    std::pin::Pin<Box<dyn Future<Output = Option<tokio::sync::watch::Receiver<u64>>> + Send>>;

fn next_reload(mut rx: tokio::sync::watch::Receiver<u64>) -> NextReload {
    Box::pin(async move { rx.changed().await.ok().map(|()| rx) })
}

/// Everything queued for the client, then the `shutdown` line.
fn flush_for_shutdown(
    out: &mut Vec<Arc<str>>,
    responses: &mut mpsc::Receiver<Arc<str>>,
    events: &mut mpsc::Receiver<Arc<str>>,
    shared: &ClientShared,
    hub: &Hub,
    metrics: &crate::metrics::ApiMetrics,
) {
    while let Ok(line) = responses.try_recv() {
        out.push(line);
    }
    // the shutdown line's seq comes after every event this client could still get
    let last = hub.close();
    while let Ok(line) = events.try_recv() {
        out.push(line);
    }
    // a client cut just now: told so before the shutdown line
    if lagged(shared, hub.queue(), out) {
        metrics.lagged();
    }
    out.push(last);
}

/// The `lagged` line, when the hub cut the client: the first seq it did not get, and the
/// limit (`api.client_queue`) by its name. True when the client was cut (told now).
fn lagged(shared: &ClientShared, queue: usize, out: &mut Vec<Arc<str>>) -> bool {
    let from = shared
        .lagged_from
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(seq) = from {
        let l = json!({"type": "event", "event": "lagged", "seq": seq, "limit": "api.client_queue",
                       "message": format!("you fell behind: {queue} events (api.client_queue) waited for you when event {seq} came; it and every later one were not sent, and the connection closes: reconnect and re-monitor with `after` = {}", seq - 1)});
        out.push(l.to_string().into());
        return true;
    }
    false
}

/// Write `out` within `limit` (`write_timeout_s`); false when the session should end.
async fn write<K: LineSink>(sink: &mut K, out: &mut Vec<Arc<str>>, limit: Duration) -> bool {
    let ok = match tokio::time::timeout(limit, sink.send(out)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            debug!(error = %e, "client write failed");
            false
        }
        Err(_) => {
            warn!(
                limit = "api.write_timeout_s",
                seconds = limit.as_secs(),
                "a write to the client took too long: disconnected"
            );
            false
        }
    };
    out.clear();
    ok
}

/// Idle clients (`idle_ping_s`, `idle_timeout_s`): silence counts from the last line the
/// client sent (or its connection); after `idle_ping_s` of it a `ping` line, after
/// `idle_timeout_s` an error line and the end of the session.
struct Idle {
    ping: Duration,
    timeout: Duration,
    last: Instant,
    pinged: bool,
    /// The last line was the timeout's.
    reaped: bool,
}

impl Idle {
    fn new(cfg: &crate::config::ApiConfig) -> Idle {
        Idle {
            ping: Duration::from_secs(cfg.idle_ping_s),
            timeout: Duration::from_secs(cfg.idle_timeout_s),
            last: Instant::now(),
            pinged: false,
            reaped: false,
        }
    }

    /// New `idle_ping_s` and `idle_timeout_s` (a reload), counted from the last line heard.
    fn set(&mut self, cfg: &crate::config::ApiConfig) {
        self.ping = Duration::from_secs(cfg.idle_ping_s);
        self.timeout = Duration::from_secs(cfg.idle_timeout_s);
    }

    fn on(&self) -> bool {
        !(self.ping.is_zero() && self.timeout.is_zero())
    }

    fn heard(&mut self, now: Instant) {
        self.last = now;
        self.pinged = false;
    }

    /// When the next idle step is due.
    fn next(&self) -> Instant {
        let ping = (!self.ping.is_zero() && !self.pinged).then(|| self.last + self.ping);
        let reap = (!self.timeout.is_zero()).then(|| self.last + self.timeout);
        match (ping, reap) {
            (Some(p), Some(r)) => p.min(r),
            (Some(t), None) | (None, Some(t)) => t,
            // not armed (see `on`)
            (None, None) => self.last + Duration::from_secs(86_400 * 365),
        }
    }

    /// The line due at `now`, if any: the ping, or the timeout's error (then `reaped`).
    fn due(&mut self, now: Instant) -> Option<Arc<str>> {
        let silent = now.saturating_duration_since(self.last);
        if !self.timeout.is_zero() && silent >= self.timeout {
            self.reaped = true;
            let e = ApiError::request(
                "idle_timeout",
                format!(
                    "nothing from you for {} s (api.idle_timeout_s): disconnected; answer a `ping` line with any request, e.g. {{\"id\":1,\"op\":\"ping\"}}",
                    self.timeout.as_secs()
                ),
            );
            return Some(error_line(&Id::null(), &e).into());
        }
        if !self.ping.is_zero() && !self.pinged && silent >= self.ping {
            self.pinged = true;
            let left = self.timeout.saturating_sub(silent).as_secs();
            let msg = if self.timeout.is_zero() {
                "are you there? send any request, e.g. {\"id\":1,\"op\":\"ping\"}".to_string()
            } else {
                format!("are you there? send any request, e.g. {{\"id\":1,\"op\":\"ping\"}}, within {left} s or the connection closes (api.idle_timeout_s)")
            };
            return Some(json!({"type": "ping", "message": msg}).to_string().into());
        }
        None
    }
}

/// At most `n` requests in any second (0: unlimited).
pub(crate) struct RateLimit {
    n: u32,
    window: VecDeque<Instant>,
    /// Whose limit, for the error: `None` per client, else the user's name.
    user: Option<String>,
}

impl RateLimit {
    fn new(n: u32) -> RateLimit {
        RateLimit {
            n,
            window: VecDeque::new(),
            user: None,
        }
    }

    /// A new limit (a reload); the requests of the last second still count.
    fn set(&mut self, n: u32) {
        self.n = n;
    }

    /// The limit of all of one user's connections together.
    pub(crate) fn per_user(n: u32, user: &str) -> RateLimit {
        RateLimit {
            user: Some(user.to_string()),
            ..RateLimit::new(n)
        }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), ApiError> {
        if self.n == 0 {
            return Ok(());
        }
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.window.pop_front();
        }
        if self.window.len() >= self.n as usize {
            let msg = match &self.user {
                None => format!(
                    "at most {} requests a second per client (api.requests_per_s)",
                    self.n
                ),
                Some(u) => format!(
                    "at most {} requests a second for all connections of user {u} ([[user]] requests_per_s)",
                    self.n
                ),
            };
            if let Some(left_out) = RATE_LOG.allow() {
                warn!(
                    user = self.user.as_deref().unwrap_or(""),
                    max = self.n,
                    left_out,
                    limit = if self.user.is_some() {
                        "user.requests_per_s"
                    } else {
                        "api.requests_per_s"
                    },
                    "request refused: rate limit"
                );
            }
            return Err(ApiError::new("busy", "rate_limited", msg));
        }
        self.window.push_back(now);
        Ok(())
    }
}
