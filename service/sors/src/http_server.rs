//! The HTTP server of the status port, hardened so that no client of it can starve routing:
//! a cap on concurrent connections (further ones are closed at once), a deadline for a request's
//! headers (a client that never finishes its request is dropped), and a longest life per
//! connection (an idle keep-alive connection is closed). `axum::serve` has none of these.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Limits of the status port.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; the next ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// A request's headers must arrive within this time (also bounds an idle keep-alive wait).
    pub header_read_timeout: Duration,
    /// A connection is closed (gracefully, then for good) after this long.
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(120),
        }
    }
}

/// How long a connection asked to close may still finish its request.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, for one: wait a moment rather than spin.
                warn!(event = "http.accept_failed", error = %e, "Could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(event = "http.connection_refused", %peer, "Too many connections to the status port");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, service, limits, stop).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: TowerToHyperService<Router>,
    limits: Limits,
    stop: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let end = tokio::time::sleep(limits.connection_lifetime);
    tokio::pin!(end);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(event = "http.connection_error", %peer, error = %e, "Status connection ended with an error");
            }
            return;
        }
        _ = &mut end => {}
        _ = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/heartbeat", get(|| async { "ok" }));
        let tx = CancellationToken::new();
        let rx = tx.clone();
        tokio::spawn(serve(listener, app, limits, rx));
        (addr, tx)
    }

    /// Reads until the server closes the connection (or the deadline passes: `None`).
    async fn read_to_close(s: &mut TcpStream, deadline: Duration) -> Option<String> {
        let mut buf = Vec::new();
        match tokio::time::timeout(deadline, s.read_to_end(&mut buf)).await {
            Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
            Err(_) => None,
        }
    }

    async fn get_heartbeat(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        read_to_close(&mut s, Duration::from_secs(5))
            .await
            .expect("an answer")
    }

    #[tokio::test]
    async fn half_open_requests_are_timed_out_and_extra_connections_refused() {
        let limits = Limits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(1),
            connection_lifetime: Duration::from_secs(60),
        };
        let (addr, _stop) = start(limits).await;
        // Four clients that never finish their request (no final CRLF).
        let mut half_open = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET /heartbeat HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("write");
            half_open.push(s);
        }
        // Give the server time to take all four (it accepts them one by one).
        let mut extra = None;
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET /heartbeat HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .ok();
            match read_to_close(&mut s, Duration::from_secs(2)).await {
                Some(body) if body.is_empty() => {
                    extra = Some(());
                    break;
                }
                _ => continue,
            }
        }
        assert!(
            extra.is_some(),
            "a fifth connection is closed without an answer"
        );
        // The half-open ones are dropped after the header deadline...
        for s in &mut half_open {
            let closed = read_to_close(s, Duration::from_secs(5)).await;
            assert!(closed.is_some(), "a half-open request is timed out");
        }
        // ...and the port serves again.
        assert!(get_heartbeat(addr).await.contains("200 OK"));
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_its_lifetime() {
        let limits = Limits {
            max_connections: 8,
            header_read_timeout: Duration::from_secs(30),
            connection_lifetime: Duration::from_millis(300),
        };
        let (addr, _stop) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /heartbeat HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let answer = read_to_close(&mut s, Duration::from_secs(10))
            .await
            .expect("closed after its lifetime");
        assert!(answer.contains("200 OK"), "{answer}");
    }
}
