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
//! are never dropped (reading stops while [`IN_FLIGHT`] requests wait); events beyond
//! the client's queue are dropped and reported with `lagged`.

use super::hub::{ClientId, ClientShared, EventLine, Hub};
use super::ops::{self, Cx};
use super::protocol::{error_line, ok_line, ApiError, PROTOCOL};
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
/// A write slower than this drops the client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
pub async fn run<S: LineSource, K: LineSink>(api: Arc<Api>, peer: String, mut src: S, mut sink: K) {
    let stop = api.gateway.shutdown_token();
    let Some((id, events, shared)) = api.hub.register() else {
        warn!(%peer, "client refused: too many clients");
        let line = error_line(
            &Value::Null,
            &ApiError::new(
                "busy",
                "too_many_clients",
                "the gateway serves its maximum number of clients; try later",
            ),
        );
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(&[line.into()])).await;
        sink.close().await;
        return;
    };
    info!(client = id, %peer, "client connected");
    let info = SessionInfo { client: id, peer };
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
    loop {
        let line = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = &mut writer => { writer_done = true; break } // the client stopped reading or went away
            l = src.next_line() => l,
        };
        let text = match line {
            Ok(Line::Text(t)) => t,
            Ok(Line::TooLong) => {
                let e = ApiError::request(
                    "line_too_long",
                    format!("a request line may be at most {} octets", api.cfg.max_line),
                );
                if resp_tx
                    .send(error_line(&Value::Null, &e).into())
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
        let checked = parse_request(&text)
            .and_then(|r| match api.auth.authorize(&info, &r.op) {
                Ok(()) => Ok(r),
                Err(e) => Err(Box::new((r.id, e))),
            })
            .and_then(|r| match rate.admit(Instant::now()) {
                Ok(()) => Ok(r),
                Err(e) => Err(Box::new((r.id, e))),
            });
        let req = match checked {
            Ok(r) => r,
            Err(bad) => {
                let (rid, e) = *bad;
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
    let subs = api.hub.unregister(id);
    if !shutting_down {
        // the link's release on shutdown ends every PBX monitor at once
        for (link, device) in subs {
            if let Some(s) = api.gateway.links.get(&link) {
                api.gateway.monitor_release(s, &device).await;
            }
        }
    }
    drop(resp_tx);
    if !writer_done
        && tokio::time::timeout(WRITE_TIMEOUT * 2, &mut writer)
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
    match res {
        Ok(v) => ok_line(&req.id, v),
        Err(e) => error_line(&req.id, &e),
    }
    .into()
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

/// The writer: hello, then responses first, then events; `lagged` before the next event
/// after a drop; on shutdown, what is queued, then the `shutdown` line, then close.
async fn write_loop<K: LineSink>(
    mut sink: K,
    hello: Arc<str>,
    mut responses: mpsc::Receiver<Arc<str>>,
    mut events: mpsc::Receiver<EventLine>,
    shared: Arc<ClientShared>,
    api: Arc<Api>,
    stop: CancellationToken,
) {
    let mut out: Vec<Arc<str>> = vec![hello];
    if !write(&mut sink, &mut out).await {
        sink.close().await;
        return;
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                flush_for_shutdown(&mut out, &mut responses, &mut events, &shared, &api.hub);
                write(&mut sink, &mut out).await;
                break;
            }
            r = responses.recv() => match r {
                Some(line) => out.push(line),
                None => break,
            },
            e = events.recv() => match e {
                Some((seq, line)) => {
                    lagged(&shared, Some(seq), &mut out);
                    out.push(line);
                }
                None => break,
            },
        }
        if !write(&mut sink, &mut out).await {
            break;
        }
    }
    sink.close().await;
}

/// Everything queued for the client, then the `shutdown` line.
fn flush_for_shutdown(
    out: &mut Vec<Arc<str>>,
    responses: &mut mpsc::Receiver<Arc<str>>,
    events: &mut mpsc::Receiver<EventLine>,
    shared: &ClientShared,
    hub: &Hub,
) {
    while let Ok(line) = responses.try_recv() {
        out.push(line);
    }
    // the shutdown line's seq comes after every event this client could still get
    let last = hub.close();
    while let Ok((seq, line)) = events.try_recv() {
        lagged(shared, Some(seq), out);
        out.push(line);
    }
    lagged(shared, None, out);
    out.push(last);
}

/// The `lagged` line, if events were dropped for the client, before the event `next` (None:
/// the end of the stream). Only before an event published after the first dropped one:
/// events queued before the drop come first, so the stream's seq keeps increasing.
fn lagged(shared: &ClientShared, next: Option<u64>, out: &mut Vec<Arc<str>>) {
    let from = {
        let mut l = shared.lagged_from.lock().unwrap_or_else(|p| p.into_inner());
        match (*l, next) {
            (Some(from), Some(next)) if next < from => None,
            _ => l.take(),
        }
    };
    if let Some(seq) = from {
        let l = json!({"type": "event", "event": "lagged", "seq": seq,
                       "message": "you fell behind: events from this seq on were dropped for you; re-monitor with `after`"});
        out.push(l.to_string().into());
    }
}

async fn write<K: LineSink>(sink: &mut K, out: &mut Vec<Arc<str>>) -> bool {
    let ok = matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.send(out)).await,
        Ok(Ok(()))
    );
    out.clear();
    ok
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
