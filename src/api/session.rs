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

use super::hub::{ClientId, ClientShared, Hub};
use super::ops::{self, Cx};
use super::protocol::{error_line, ok_line, ApiError, Id, PROTOCOL};
use super::request::{parse_request, Op, Request};
use super::Api;
use crate::lines::Line;
use serde_json::json;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub client: ClientId,
    /// The transport's name for the peer (`127.0.0.1:50412`).
    pub peer: String,
    /// The subject (common name) of the client certificate the transport verified (mutual
    /// TLS), if any.
    pub certificate: Option<String>,
}

/// The auth hook: may this session run this request? Called for every request before it
/// runs; an error (kind `auth`: `unauthenticated`, `forbidden`) is its answer. The token
/// login of a later version decides here.
pub trait Auth: Send + Sync + 'static {
    fn authorize(&self, session: &SessionInfo, op: &Op) -> Result<(), ApiError>;
}

/// Everyone may do everything (the protocol v1 default).
pub struct Open;

impl Auth for Open {
    fn authorize(&self, _: &SessionInfo, _: &Op) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Serve one client until it goes or the gateway shuts down.
pub async fn run<S: LineSource, K: LineSink>(
    api: Arc<Api>,
    peer: String,
    certificate: Option<String>,
    mut src: S,
    mut sink: K,
) {
    let stop = api.gateway.shutdown_token();
    let Some((id, events, shared)) = api.hub.register() else {
        warn!(%peer, "client refused: too many clients");
        let line = error_line(
            &Id::null(),
            &ApiError::new(
                "busy",
                "too_many_clients",
                "the gateway serves its maximum number of clients; try later",
            ),
        );
        let _ = tokio::time::timeout(api.cfg.write_timeout(), sink.send(&[line.into()])).await;
        sink.close().await;
        return;
    };
    match &certificate {
        Some(c) => info!(client = id, %peer, certificate = %c, "client connected"),
        None => info!(client = id, %peer, "client connected"),
    }
    let info = SessionInfo {
        client: id,
        peer,
        certificate,
    };
    let hello: Arc<str> = json!({
        "type": "hello", "protocol": PROTOCOL, "version": env!("CARGO_PKG_VERSION"),
        "links": ops::link_states(&api.gateway), "seq": api.hub.last_seq(),
    })
    .to_string()
    .into();
    let (resp_tx, resp_rx) = mpsc::channel::<Arc<str>>(IN_FLIGHT);
    let mut writer = tokio::spawn(write_loop(
        sink,
        hello,
        resp_rx,
        events,
        shared,
        api.clone(),
        stop.clone(),
        id,
    ));
    // the requests that act, one after another
    let gone = CancellationToken::new();
    let (req_tx, req_rx) = mpsc::channel::<(Request, Instant)>(IN_FLIGHT);
    let exec = tokio::spawn(exec_loop(
        api.clone(),
        id,
        req_rx,
        resp_tx.clone(),
        gone.clone(),
    ));
    let mut rate = RateLimit::new(api.cfg.requests_per_s);
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
    let mut idle = Idle::new(&api.cfg);
    loop {
        let line = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = &mut writer => { writer_done = true; break } // the client stopped reading or went away
            l = lines.recv() => {
                idle.heard(Instant::now());
                l.unwrap_or(Ok(Line::Eof))
            }
            _ = tokio::time::sleep_until(idle.next()), if idle.on() => {
                if let Some(line) = idle.due(Instant::now()) {
                    let last = idle.reaped;
                    if last {
                        info!(client = id, limit = "api.idle_timeout_s",
                              "client silent for {} s: disconnected", api.cfg.idle_timeout_s);
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
                    format!("a request line may be at most {} octets", api.cfg.max_line),
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
                match api.auth.authorize(&info, &r.op) {
                    Ok(()) => Ok(r),
                    Err(e) => Err(Box::new((r.id, e))),
                }
            })
            .and_then(|r| match rate.admit(Instant::now()) {
                Ok(()) => Ok(r),
                Err(e) => Err(Box::new((r.id, e))),
            });
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
        if req.op.in_order() {
            // waits while IN_FLIGHT requests are queued (stops reading this client)
            let sent = tokio::select! {
                _ = stop.cancelled() => break,
                s = req_tx.send((req, Instant::now())) => s,
            };
            if sent.is_err() {
                break;
            }
        } else {
            let line = run_one(&api, id, req, Instant::now()).await;
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
        for s in api.gateway.links.values() {
            api.gateway.monitor_release_all(s, id).await;
        }
    }
    api.hub.unregister(id);
    drop(resp_tx);
    if !writer_done
        && tokio::time::timeout(api.cfg.write_timeout() * 2, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    info!(client = id, peer = %info.peer, "client gone");
}

/// Run one request received at `received` within the deadline from then; its response
/// line. A request whose deadline passed while it waited is not run.
async fn run_one(api: &Api, client: ClientId, req: Request, received: Instant) -> Arc<str> {
    let cx = Cx {
        gw: &api.gateway,
        hub: &api.hub,
        client,
    };
    let op = req.op.name();
    let left = api.deadline.saturating_sub(received.elapsed());
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
    client: ClientId,
    mut rx: mpsc::Receiver<(Request, Instant)>,
    tx: mpsc::Sender<Arc<str>>,
    gone: CancellationToken,
) {
    while let Some((req, received)) = rx.recv().await {
        if gone.is_cancelled() {
            break;
        }
        let line = run_one(&api, client, req, received).await;
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
    let mut out: Vec<Arc<str>> = vec![hello];
    if !write(&mut sink, &mut out, api.cfg.write_timeout()).await {
        sink.close().await;
        return;
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                flush_for_shutdown(&mut out, &mut responses, &mut events, &shared, &api.hub, &api.metrics);
                write(&mut sink, &mut out, api.cfg.write_timeout()).await;
                break;
            }
            r = responses.recv() => match r {
                Some(line) => out.push(line),
                None => break,
            },
            _ = shared.cut.cancelled() => {
                warn!(client, limit = "api.client_queue", queue = api.cfg.client_queue,
                      "client cut: it did not read its events fast enough");
                while let Ok(line) = responses.try_recv() {
                    out.push(line);
                }
                while let Ok(line) = events.try_recv() {
                    out.push(line);
                }
                if lagged(&shared, api.cfg.client_queue, &mut out) {
                    api.metrics.lagged();
                }
                write(&mut sink, &mut out, api.cfg.write_timeout()).await;
                break;
            }
            e = events.recv() => match e {
                Some(line) => {
                    out.push(line);
                    // and what else is queued, in the same write
                    while out.len() < api.cfg.client_queue {
                        match events.try_recv() {
                            Ok(line) => out.push(line),
                            Err(_) => break,
                        }
                    }
                }
                None => break,
            },
        }
        if !write(&mut sink, &mut out, api.cfg.write_timeout()).await {
            break;
        }
    }
    sink.close().await;
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
struct RateLimit {
    n: u32,
    window: VecDeque<Instant>,
}

impl RateLimit {
    fn new(n: u32) -> RateLimit {
        RateLimit {
            n,
            window: VecDeque::new(),
        }
    }

    fn admit(&mut self, now: Instant) -> Result<(), ApiError> {
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
            return Err(ApiError::new(
                "busy",
                "rate_limited",
                format!("at most {} requests a second per client", self.n),
            ));
        }
        self.window.push_back(now);
        Ok(())
    }
}
