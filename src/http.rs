//! The gateway's HTTP endpoint (axum): `GET /metrics` (Prometheus, docs/METRICS.md) and
//! `GET /healthz` (200 `ok` while the gateway runs). Later HTTP routes (WebSocket
//! transport, an agent toolbar) merge into [`router`]'s `Router` before [`serve`].
//!
//! Started by `ctigate run` when `[metrics] listen` is set; stops with the gateway's
//! shutdown token.

use crate::api::Api;
use crate::config::MetricsConfig;
use crate::metrics::{self, Format};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tracing::{debug, info, warn};

/// How long the server may take to close its connections once the gateway stops.
pub const STOP_BOUND: Duration = Duration::from_secs(5);

/// Bind the metrics port; the error names `metrics.listen`.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "metrics.listen: cannot listen on {addr}: {e} (is another ctigate running? change [metrics] listen, or set it to \"\" for no metrics endpoint)"
            ),
        )
    })
}

/// The routes: `/metrics` and `/healthz`.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(healthz))
        .with_state(api)
}

async fn get_metrics(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    match metrics::render(&api, format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            warn!(error = %e, "cannot encode the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
                .into_response()
        }
    }
}

async fn healthz(State(api): State<Arc<Api>>) -> Response {
    if api.gateway.shutdown_token().is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// The bounds on the HTTP connections (`[metrics] max_connections`, `idle_timeout_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl From<&MetricsConfig> for Limits {
    fn from(c: &MetricsConfig) -> Limits {
        Limits {
            max_connections: c.max_connections.max(1),
            idle_timeout: c.idle_timeout(),
        }
    }
}

/// A listener with at most `max_connections` connections open: at the limit, the next
/// connection is accepted only when one closes (it waits in the listen backlog); each
/// connection is closed after `idle_timeout` without a byte read or written.
struct Bounded {
    l: TcpListener,
    permits: Arc<Semaphore>,
    limits: Limits,
}

impl axum::serve::Listener for Bounded {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                warn!(
                    limit = "metrics.max_connections",
                    max = self.limits.max_connections,
                    "HTTP connections at the limit: the next waits until one closes"
                );
                match self.permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    // the semaphore is never closed
                    Err(_) => std::future::pending().await,
                }
            }
        };
        loop {
            match self.l.accept().await {
                Ok((io, peer)) => {
                    let _ = io.set_nodelay(true);
                    let idle = self.limits.idle_timeout;
                    let conn = Conn {
                        io,
                        idle,
                        deadline: Box::pin(tokio::time::sleep(idle)),
                        _permit: permit,
                    };
                    return (conn, peer);
                }
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.l.local_addr()
    }
}

/// An HTTP connection: its socket, its idle deadline (moved on by every byte read or
/// written), its place among `max_connections`.
struct Conn {
    io: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Err once the connection was idle too long (the task is woken when it is).
    fn idle_check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            debug!(
                limit = "metrics.idle_timeout_s",
                "HTTP connection idle: closed"
            );
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle longer than metrics.idle_timeout_s",
            ));
        }
        Ok(())
    }

    fn progress(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle_check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.idle_check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serve `router` on `l` until the gateway shuts down (then open connections get
/// [`STOP_BOUND`] to finish).
pub async fn serve(api: &Arc<Api>, l: TcpListener, router: Router, limits: Limits) {
    let stop = api.gateway.shutdown_token();
    let l = Bounded {
        l,
        permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        limits,
    };
    let server = axum::serve(l, router).with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        r = &mut server => {
            if let Err(e) = r {
                warn!(error = %e, "the HTTP server stopped");
            }
            return;
        }
        _ = stop.cancelled() => {}
    }
    if tokio::time::timeout(STOP_BOUND, server).await.is_err() {
        warn!(bound = ?STOP_BOUND, "HTTP connections still open at shutdown: dropped");
    }
    info!("HTTP listener closed");
}

/// Bind `cfg.listen` and serve the metrics routes of `api` in a task of their own; the
/// bound address (port 0 picks one) and the task.
pub async fn start(
    api: &Arc<Api>,
    cfg: &MetricsConfig,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let l = bind(cfg.listen.trim()).await?;
    let bound = l.local_addr()?;
    let api = api.clone();
    let limits = Limits::from(cfg);
    let task = tokio::spawn(async move {
        let r = router(api.clone());
        serve(&api, l, r, limits).await
    });
    info!(address = %bound, "metrics endpoint: GET /metrics, GET /healthz");
    Ok((bound, task))
}
