//! The TCP transport: NDJSON lines over a socket, handed to the transport-agnostic
//! [`super::session`]. A WebSocket transport is the same few lines: a [`LineSource`] and
//! a [`LineSink`] over its text frames, and [`super::session::run`].

use super::session::{LineSink, LineSource};
use super::Api;
use crate::lines::{read_line, Line};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
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
    let stop = api.gateway.shutdown_token();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = l.accept() => a,
        };
        match accepted {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                let src = TcpLines {
                    r: BufReader::new(r),
                    max: api.cfg.max_line,
                };
                let sink = TcpSink {
                    w,
                    buf: Vec::new(),
                    close_within: api.cfg.write_timeout(),
                };
                api.spawn_session(peer.to_string(), src, sink);
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    info!("API listener closed");
}

/// Lines from a socket, each at most `max` octets.
pub struct TcpLines {
    r: BufReader<OwnedReadHalf>,
    max: usize,
}

impl LineSource for TcpLines {
    async fn next_line(&mut self) -> std::io::Result<Line> {
        read_line(&mut self.r, self.max).await
    }
}

/// Lines to a socket, newline-terminated, written together.
pub struct TcpSink {
    w: OwnedWriteHalf,
    buf: Vec<u8>,
    /// `write_timeout_s`, for the close.
    close_within: Duration,
}

impl LineSink for TcpSink {
    async fn send(&mut self, lines: &[Arc<str>]) -> std::io::Result<()> {
        self.buf.clear();
        for l in lines {
            self.buf.extend_from_slice(l.as_bytes());
            self.buf.push(b'\n');
        }
        self.w.write_all(&self.buf).await
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(self.close_within, self.w.shutdown()).await;
    }
}
