//! The NDJSON listener and client sessions: `hello` first, then requests (each answered
//! exactly once, concurrently, within the link timeout) and subscribed events. Responses
//! and events share the socket through one writer task; responses are never dropped (a
//! session stops reading while its responses wait), events beyond the client's queue are
//! dropped and reported with `lagged`.

use super::hub::ClientShared;
use super::protocol::{error_line, ok_line, parse_request, ApiError, PROTOCOL};
use super::{ops, Gateway};
use crate::lines::{read_line, Line};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

/// Requests of one client in progress at once.
const IN_FLIGHT: usize = 32;
/// A write slower than this drops the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind the API port.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {addr}: {e} (is another ctigate running? change [api] listen)"
            ),
        )
    })
}

/// Serve clients until the listener fails.
pub async fn serve(gw: Arc<Gateway>, l: TcpListener) {
    loop {
        match l.accept().await {
            Ok((s, peer)) => {
                let gw = gw.clone();
                tokio::spawn(async move { session(gw, s, peer).await });
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn session(gw: Arc<Gateway>, s: TcpStream, peer: SocketAddr) {
    let _ = s.set_nodelay(true);
    let (r, mut w) = s.into_split();
    let Some((id, mut events, shared)) = gw.hub.register() else {
        warn!(%peer, "client refused: too many clients");
        let line = error_line(
            &Value::Null,
            &ApiError::new(
                "busy",
                "too_many_clients",
                "the gateway serves its maximum number of clients; try later",
            ),
        );
        let _ =
            tokio::time::timeout(WRITE_TIMEOUT, w.write_all(format!("{line}\n").as_bytes())).await;
        return;
    };
    info!(client = id, %peer, "client connected");
    let (resp_tx, mut resp_rx) = mpsc::channel::<String>(IN_FLIGHT);
    let hello = json!({
        "type": "hello", "protocol": PROTOCOL, "version": env!("CARGO_PKG_VERSION"),
        "links": gw.link_states(), "seq": gw.hub.last_seq(),
    })
    .to_string();
    // the writer: responses first, then events; `lagged` before the next event after a drop
    let mut writer = tokio::spawn(async move {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(hello.as_bytes());
        out.push(b'\n');
        if !write(&mut w, &mut out).await {
            return;
        }
        loop {
            tokio::select! {
                biased;
                r = resp_rx.recv() => match r {
                    Some(line) => { out.extend_from_slice(line.as_bytes()); out.push(b'\n'); }
                    None => break,
                },
                e = events.recv() => match e {
                    Some(line) => {
                        lagged(&shared, &mut out);
                        out.extend_from_slice(line.as_bytes());
                        out.push(b'\n');
                    }
                    None => break,
                },
            }
            if !write(&mut w, &mut out).await {
                break;
            }
        }
    });
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut r = BufReader::new(r);
    let max = gw.cfg.api.max_line;
    let rate = gw.cfg.api.requests_per_s;
    let mut window: std::collections::VecDeque<tokio::time::Instant> = Default::default();
    loop {
        let line = tokio::select! {
            l = read_line(&mut r, max) => l,
            _ = &mut writer => break, // the client stopped reading or went away
        };
        let text = match line {
            Ok(Line::Text(t)) => t,
            Ok(Line::TooLong) => {
                let e = ApiError::request(
                    "line_too_long",
                    format!("a request line may be at most {max} octets"),
                );
                if resp_tx.send(error_line(&Value::Null, &e)).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(Line::Eof) | Err(_) => break,
        };
        if text.trim().is_empty() {
            continue;
        }
        let req = match parse_request(&text) {
            Ok(r) => r,
            Err(bad) => {
                let (rid, e) = *bad;
                if resp_tx.send(error_line(&rid, &e)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        if rate > 0 {
            let now = tokio::time::Instant::now();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                window.pop_front();
            }
            if window.len() >= rate as usize {
                let e = ApiError::new(
                    "busy",
                    "rate_limited",
                    format!("at most {rate} requests a second per client"),
                );
                if resp_tx.send(error_line(&req.id, &e)).await.is_err() {
                    break;
                }
                continue;
            }
            window.push_back(now);
        }
        // bounded concurrency: wait for a slot (stops reading this client meanwhile)
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (gw, tx) = (gw.clone(), resp_tx.clone());
        let limit = request_deadline(&gw);
        tokio::spawn(async move {
            debug!(client = id, op = %req.op, "request");
            let res = match tokio::time::timeout(limit, ops::handle(&gw, id, &req)).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::new(
                    "link",
                    "timeout",
                    "the request took too long",
                )),
            };
            let line = match res {
                Ok(v) => ok_line(&req.id, v),
                Err(e) => error_line(&req.id, &e),
            };
            let _ = tx.send(line).await;
            drop(permit);
        });
    }
    drop(resp_tx);
    writer.abort();
    for (link, device) in gw.hub.unregister(id) {
        if let Some(s) = gw.links.get(&link) {
            ops::release(s, &device).await;
        }
    }
    info!(client = id, %peer, "client gone");
}

/// Every request is answered within this time, whatever the PBX does: a few link
/// timeouts (monitor.start makes two requests) plus a margin.
fn request_deadline(gw: &Gateway) -> Duration {
    let t = gw
        .cfg
        .links
        .iter()
        .map(|l| l.request_timeout())
        .max()
        .unwrap_or(Duration::from_secs(5));
    t * 2 + Duration::from_secs(1)
}

fn lagged(shared: &ClientShared, out: &mut Vec<u8>) {
    let from = shared
        .lagged_from
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(seq) = from {
        let l = json!({"type": "event", "event": "lagged", "seq": seq,
                       "message": "you fell behind: events from this seq on were dropped for you; re-monitor with `after`"});
        out.extend_from_slice(l.to_string().as_bytes());
        out.push(b'\n');
    }
}

async fn write(w: &mut tokio::net::tcp::OwnedWriteHalf, out: &mut Vec<u8>) -> bool {
    let ok = matches!(
        tokio::time::timeout(WRITE_TIMEOUT, w.write_all(out)).await,
        Ok(Ok(()))
    );
    out.clear();
    ok
}
