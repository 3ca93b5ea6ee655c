//! The Bayeux client against two real Bayeux servers from npm (faye 1.4 and
//! cometd-nodejs-server 1.2), run as node child processes on 127.0.0.1.
//!
//! Each server forgets the client mid-stream; they answer with `401:nope:Unknown client` (faye)
//! and `402::session_unknown` (cometd), both with `reconnect: handshake` advice.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sors_core::model::RowId;
use sors_salesforce::{Names, Salesforce, StreamEvent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use wiremock::MockServer;

const CHANNEL: &str = "/topic/ObjectRoutingQueue";

struct NodeServer {
    _child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl NodeServer {
    async fn start(script: &str, arg: &str) -> NodeServer {
        let js_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/js"));
        assert!(
            js_dir.join("node_modules/faye").is_dir()
                && js_dir.join("node_modules/cometd-nodejs-server").is_dir(),
            "the JS test peers are missing: run `npm ci` in {} (ci/test does it)",
            js_dir.display()
        );
        let mut child = Command::new("node")
            .arg(js_dir.join(script))
            .arg(arg)
            .current_dir(&js_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` (needed by this test; ci/test installs it): {e}")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut rd = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = rd.next_line().await {
                sink.lock().expect("lines").push(line);
            }
        });
        let mut server = NodeServer {
            _child: child,
            stdin,
            lines,
            port: 0,
        };
        let port_line = server.wait_line(20, |l| l.starts_with("PORT ")).await;
        server.port = port_line
            .trim_start_matches("PORT ")
            .parse()
            .expect("port number");
        server
    }

    fn has_line(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .find(|l| pred(l))
            .cloned()
    }

    async fn wait_line(&self, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let ok = wait_until(secs, || self.has_line(&pred).is_some()).await;
        assert!(
            ok,
            "node server never printed the expected line; got {:?}",
            self.lines.lock().expect("lines")
        );
        self.has_line(&pred).unwrap_or_default()
    }

    async fn send(&mut self, cmd: &str) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("write to node");
        self.stdin.flush().await.expect("flush");
    }
}

/// A Salesforce client whose SOAP login (wiremock) points the instance at the node server.
async fn client_for(port: u16) -> (MockServer, Salesforce) {
    init_tracing();
    let login = MockServer::start().await;
    mount_soap_login(&login, &format!("http://127.0.0.1:{port}"), "00D!TOKEN").await;
    let mut cfg = config(&login.uri());
    cfg.streaming.watchdog_margin_ms = 5_000;
    cfg.streaming.default_connect_timeout_ms = 5_000;
    cfg.streaming.backoff_base_ms = 50;
    cfg.streaming.backoff_max_ms = 500;
    cfg.streaming.refused_delay_ms = 100;
    let sf = Salesforce::new(cfg, Names::default()).expect("config");
    (login, sf)
}

/// Waits for an event matching `pred`, returning it and the events skipped on the way.
async fn next_event(
    rx: &mut mpsc::Receiver<StreamEvent>,
    secs: u64,
    pred: impl Fn(&StreamEvent) -> bool,
) -> (StreamEvent, Vec<StreamEvent>) {
    let mut skipped = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return (ev, skipped),
            Ok(Some(ev)) => skipped.push(ev),
            Ok(None) => panic!("stream ended; skipped {skipped:?}"),
            Err(_) => panic!("no matching event in {secs}s; got {skipped:?}"),
        }
    }
}

fn is_push(id: &str) -> impl Fn(&StreamEvent) -> bool + '_ {
    move |e| matches!(e, StreamEvent::Push { row_id, .. } if row_id.as_str() == id)
}

async fn stream_receive_and_recover(script: &str, arg: &str) -> NodeServer {
    let mut node = NodeServer::start(script, arg).await;
    let (_login, sf) = client_for(node.port).await;
    let (handle, mut rx) = sf.stream(-1);

    let (ev, _) = next_event(&mut rx, 20, |e| matches!(e, StreamEvent::Subscribed { .. })).await;
    assert_eq!(ev, StreamEvent::Subscribed { replay_from: -1 });
    node.wait_line(20, |l| l.starts_with("SUBSCRIBE ") && l.contains(CHANNEL))
        .await;

    node.send(&format!("publish {CHANNEL} 5 a01")).await;
    let (ev, _) = next_event(&mut rx, 20, is_push("a01")).await;
    assert_eq!(
        ev,
        StreamEvent::Push {
            row_id: RowId::from("a01"),
            replay_id: 5,
        }
    );

    // The server forgets us: re-handshake and re-subscribe with the last seen replay id.
    node.send("forget").await;
    let (_, before) =
        next_event(&mut rx, 20, |e| matches!(e, StreamEvent::Subscribed { .. })).await;
    assert!(
        before
            .iter()
            .any(|e| matches!(e, StreamEvent::Disconnected { .. })),
        "a Disconnected precedes the new subscription: {before:?}"
    );
    assert!(
        before
            .iter()
            .any(|e| matches!(e, StreamEvent::ResyncNeeded { .. })),
        "these servers do not replay, so the router is told to scan: {before:?}"
    );
    node.wait_line(20, |l| {
        l.starts_with("SUBSCRIBE ") && l.contains(r#"{"replay":{"/topic/ObjectRoutingQueue":5}}"#)
    })
    .await;

    node.send(&format!("publish {CHANNEL} 6 a02")).await;
    next_event(&mut rx, 20, is_push("a02")).await;
    assert_eq!(
        sf.stats().relogins,
        0,
        "an unknown client is not a reason to re-login"
    );

    handle.shutdown().await;
    node.wait_line(20, |l| l.starts_with("META_DISCONNECT "))
        .await;
    // The channel closes once the stream task ends.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while rx.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "event channel closed after shutdown");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faye_server_handshake_subscribe_receive_and_recover() {
    stream_receive_and_recover("sf-client-faye.mjs", "2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cometd_server_handshake_subscribe_receive_and_recover() {
    let node = stream_receive_and_recover("sf-client-cometd-server.mjs", "2000").await;
    assert!(
        node.has_line(|l| l.starts_with("COOKIE ") && l.contains("BAYEUX_BROWSER="))
            .is_some(),
        "the client sends the BAYEUX_BROWSER cookie back"
    );
}
