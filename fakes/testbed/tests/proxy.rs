//! The proxy is chosen per request host (issue 9's bug): with `NO_PROXY` naming the hosts that
//! the clients learn after start-up (the Salesforce instance host, the backup CIC server), those
//! requests go direct while the others go through the proxy.
//!
//! The fakes listen on 127.0.0.1. The router is configured with the name `localhost` for the
//! Salesforce login URL and the primary CIC server, so the two differ from the instance URL the
//! fake Salesforce announces (127.0.0.1) and from the backup server (127.0.0.1): `NO_PROXY =
//! 127.0.0.1` then tells them apart.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::BedOptions;
use sors::serve::Service;
use sors_core::proxy::ProxyPolicy;
use sors_testbed::Bed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A forward HTTP proxy that records the `host:port` of every request it carries. One request
/// per connection: it answers, then closes.
async fn recording_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let _ = carry(client, log).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

async fn carry(mut client: TcpStream, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (method, uri) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Ok(url) = url::Url::parse(uri) else {
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(target.clone());
    let length: usize = lines
        .clone()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for l in lines.filter(|l| !l.is_empty()) {
        let name = l.split(':').next().unwrap_or_default();
        if !name.eq_ignore_ascii_case("connection")
            && !name.eq_ignore_ascii_case("proxy-connection")
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(&target).await?;
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(&buf[head_end..]).await?;
    // Streamed as it comes: an ICWS event stream (SSE) never ends.
    tokio::io::copy(&mut upstream, &mut client).await?;
    client.shutdown().await
}

fn via_localhost(url: &str) -> String {
    url.replace("127.0.0.1", "localhost")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_applies_to_the_instance_host_and_the_backup_server() {
    let bed = Bed::start_fakes(BedOptions::default())
        .await
        .expect("fakes");
    let (proxy, seen) = recording_proxy().await;
    let policy = ProxyPolicy {
        https_proxy: Some(proxy.clone()),
        http_proxy: Some(proxy.clone()),
        no_proxy: Some("127.0.0.1".into()),
        ..ProxyPolicy::default()
    };
    let mut spec = bed.spec();
    spec.salesforce.login_url = via_localhost(&spec.salesforce.login_url);
    spec.salesforce.proxy = policy.clone();
    spec.icws.servers = vec![via_localhost(&bed.cic.primary_url()), bed.cic.backup_url()];
    spec.icws.proxy = policy;
    let service = Service::start(spec).await.expect("service");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !service.shared.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the router never came up: {:?}",
            service.shared.snapshot().reasons
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sf_port = url::Url::parse(&bed.sf.base_url())
        .ok()
        .and_then(|u| u.port())
        .unwrap_or_default();
    let cic_port = url::Url::parse(&bed.cic.primary_url())
        .ok()
        .and_then(|u| u.port())
        .unwrap_or_default();
    let hosts =
        |seen: &Arc<Mutex<Vec<String>>>| seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let through = hosts(&seen);
    assert!(
        through.contains(&format!("localhost:{sf_port}")),
        "the Salesforce login goes through the proxy: {through:?}"
    );
    assert!(
        through.contains(&format!("localhost:{cic_port}")),
        "the primary CIC server is reached through the proxy: {through:?}"
    );
    assert!(
        through.iter().all(|h| !h.starts_with("127.0.0.1")),
        "the instance host is reached directly: {through:?}"
    );
    assert!(
        service.shared.snapshot().salesforce.api_calls > 0,
        "REST calls were made (to the instance, directly)"
    );

    // A switchover: the primary turns standby, the router follows to the backup, directly.
    bed.cic.switchover(None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = service.shared.snapshot();
        if v.cic.connected && v.cic.backup {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the router never reached the backup: {:?}",
            v.cic
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let through = hosts(&seen);
    assert!(
        through.iter().all(|h| !h.starts_with("127.0.0.1")),
        "the backup server is reached directly: {through:?}"
    );
    service.stop().await;
    bed.shutdown().await;
}
