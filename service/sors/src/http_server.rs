//! The HTTP server of the status port, hardened so that no client of it can starve routing:
//! a cap on concurrent connections (further ones are closed at once), a deadline for a request's
//! headers (a client that never finishes its request is dropped), and a longest life per
//! connection (an idle keep-alive connection is closed). `axum::serve` has none of these.
//!
//! With a [`TlsAcceptor`] every connection is HTTPS (the handshake must finish within the
//! header deadline). Every request carries the client's address as
//! `axum::extract::ConnectInfo<SocketAddr>` (the admin pages' login rate limit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::path::Path;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
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

/// Why the TLS certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: std::path::PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: std::path::PathBuf },
    #[error("the certificate and key cannot be used together: {0}")]
    Rustls(String),
}

/// A TLS acceptor for the status port from PEM files (a certificate chain, server certificate
/// first, and its private key), HTTP/1.1 only.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key.to_path_buf(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (plain HTTP) until `stop` is cancelled.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    serve_with(listener, app, limits, stop, None).await;
}

/// Serves `app` on `listener` until `stop` is cancelled: HTTPS when `tls` is given.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    tls: Option<TlsAcceptor>,
) {
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
        let app = app.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, app, limits, stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(tls_stream, peer, app, limits, stop).await;
                        }
                        Ok(Err(e)) => {
                            debug!(event = "http.tls_handshake_failed", %peer, error = %e, "TLS handshake with a status client failed");
                        }
                        Err(_) => {
                            debug!(event = "http.tls_handshake_failed", %peer, error = "timed out", "TLS handshake with a status client failed");
                        }
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
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
