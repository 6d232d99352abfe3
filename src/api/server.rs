//! The TCP transport: NDJSON lines over a socket, handed to the transport-agnostic
//! [`super::session`]. A WebSocket transport is the same few lines: a [`LineSource`] and
//! a [`LineSink`] over its text frames, and [`super::session::run`].

use super::session::{LineSink, LineSource};
use super::Api;
use crate::lines::{read_line, Line};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tracing::{info, warn};

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

/// Serve clients until the gateway shuts down (then the listener closes).
pub async fn serve(api: Arc<Api>, l: TcpListener) {
    accept_loop(api, l, false).await
}

/// [`serve`] over TLS (`[api] tls_cert`, `tls_key`, `tls_client_ca`): each connection's
/// handshake runs in a task of its own within `api.tls_handshake_timeout_ms`; one that fails
/// (a plain-TCP client, garbage, a certificate the CA did not issue) or stalls costs a log
/// line and its socket, nothing else. At most `api.max_clients` handshakes run at once.
/// The certificate files are those of `tls` until a reload re-reads them
/// ([`Api::set_tls`]): each handshake takes the newest.
pub async fn serve_tls(api: Arc<Api>, l: TcpListener, tls: Arc<rustls::ServerConfig>) {
    api.set_tls(Some(tls));
    accept_loop(api, l, true).await
}

async fn accept_loop(api: Arc<Api>, l: TcpListener, tls: bool) {
    let stop = api.gateway.shutdown_token();
    // handshakes under way, at most `api.max_clients` as it is now (a reload may change it)
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refused = super::auth::LogLimit::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = l.accept() => a,
        };
        match accepted {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                if !tls {
                    let (r, w) = s.into_split();
                    let (src, sink) = lines(&api, r, w);
                    api.spawn_session(peer.to_string(), src, sink);
                    continue;
                }
                // a TLS port never serves in the clear: without its configuration, nothing
                let Some(tls) = api.tls() else {
                    continue;
                };
                let max = api.cfg().max_clients.max(1);
                let Some(permit) = Handshake::enter(&handshakes, max) else {
                    if let Some(left_out) = refused.allow() {
                        warn!(%peer, left_out, limit = "api.max_clients",
                              "connection refused: that many TLS handshakes already under way");
                    }
                    continue;
                };
                let tls = tokio_rustls::TlsAcceptor::from(tls);
                let (api, stop) = (api.clone(), stop.clone());
                tokio::spawn(async move {
                    let limit = api.cfg().tls_handshake_timeout();
                    let shake = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = tokio::time::timeout(limit, tls.accept(s)) => r,
                    };
                    drop(permit);
                    let stream = match shake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            info!(%peer, error = %e, "TLS handshake failed (a plain-TCP client on the TLS port, or a certificate the CA did not issue): connection closed");
                            return;
                        }
                        Err(_) => {
                            info!(%peer, limit = "api.tls_handshake_timeout_ms", ms = limit.as_millis() as u64,
                                  "TLS handshake not finished in time: connection closed");
                            return;
                        }
                    };
                    let subject = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(crate::tls::subject);
                    if let Some(s) = &subject {
                        info!(%peer, certificate = %s, "client certificate verified");
                    }
                    let (r, w) = tokio::io::split(stream);
                    let (src, sink) = lines(&api, r, w);
                    // a verified certificate's subject stands for the user of that name
                    api.spawn_session_as(peer.to_string(), subject, src, sink);
                });
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    info!("API listener closed");
}

/// One TLS handshake under way, counted while it lives.
struct Handshake(Arc<std::sync::atomic::AtomicUsize>);

impl Handshake {
    /// Count one more, unless `max` are under way already.
    fn enter(n: &Arc<std::sync::atomic::AtomicUsize>, max: usize) -> Option<Handshake> {
        use std::sync::atomic::Ordering;
        n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| {
            (k < max).then_some(k + 1)
        })
        .ok()
        .map(|_| Handshake(n.clone()))
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The line source and sink of a connection's two halves.
fn lines<R: AsyncRead + Unpin + Send + 'static, W: AsyncWrite + Unpin + Send + 'static>(
    api: &Api,
    r: R,
    w: W,
) -> (TcpLines<R>, TcpSink<W>) {
    (
        TcpLines {
            r: BufReader::new(r),
            max: api.cfg().max_line,
        },
        TcpSink {
            w,
            buf: Vec::new(),
            close_within: api.cfg().write_timeout(),
        },
    )
}

/// Lines from a connection (TCP, or TLS over it), each at most `max` octets.
pub struct TcpLines<R = OwnedReadHalf> {
    r: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin + Send + 'static> LineSource for TcpLines<R> {
    async fn next_line(&mut self) -> std::io::Result<Line> {
        read_line(&mut self.r, self.max).await
    }
}

/// The largest write buffer a connection keeps between writes.
const SINK_BUFFER_KEPT: usize = 64 * 1024;

/// Lines to a connection, newline-terminated, written together.
pub struct TcpSink<W = OwnedWriteHalf> {
    w: W,
    buf: Vec<u8>,
    /// `write_timeout_s`, for the close.
    close_within: Duration,
}

impl<W: AsyncWrite + Unpin + Send + 'static> LineSink for TcpSink<W> {
    async fn send(&mut self, lines: &[Arc<str>]) -> std::io::Result<()> {
        self.buf.clear();
        for l in lines {
            self.buf.extend_from_slice(l.as_bytes());
            self.buf.push(b'\n');
        }
        self.w.write_all(&self.buf).await?;
        // a burst (a client catching up writes up to client_queue lines at once) does not
        // keep its buffer: a thousand clients would hold hundreds of megabytes
        if self.buf.capacity() > SINK_BUFFER_KEPT {
            self.buf = Vec::new();
        }
        // TLS buffers what it encrypts: push it out with the lines
        self.w.flush().await
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(self.close_within, self.w.shutdown()).await;
    }
}
