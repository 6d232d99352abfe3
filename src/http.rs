//! The gateway's HTTP endpoint (axum): `GET /metrics` (Prometheus, docs/METRICS.md) and
//! `GET /healthz` (200 `ok` while the gateway runs). Later HTTP routes (WebSocket
//! transport, an agent toolbar) merge into [`router`]'s `Router` before [`serve`].
//!
//! Started by `ctigate run` when `[metrics] listen` is set; stops with the gateway's
//! shutdown token.

use crate::api::Api;
use crate::metrics::{self, Format};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn};

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
    match metrics::render(&api, format).await {
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

/// Serve `router` on `l` until the gateway shuts down (then open connections get
/// [`STOP_BOUND`] to finish).
pub async fn serve(api: &Arc<Api>, l: TcpListener, router: Router) {
    let stop = api.gateway.shutdown_token();
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

/// Bind `addr` and serve the metrics routes of `api` in a task of their own; the bound
/// address (port 0 picks one) and the task.
pub async fn start(
    api: &Arc<Api>,
    addr: &str,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let l = bind(addr).await?;
    let bound = l.local_addr()?;
    let api = api.clone();
    let task = tokio::spawn(async move {
        let r = router(api.clone());
        serve(&api, l, r).await
    });
    info!(address = %bound, "metrics endpoint: GET /metrics, GET /healthz");
    Ok((bound, task))
}
