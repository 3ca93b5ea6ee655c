//! Real JavaScript Bayeux clients against the fake endpoint: npm `cometd` 9 +
//! `cometd-nodejs-client` 2 (tests/js/fake-cometd-client.mjs) and `faye` 1.4, which jsforce
//! streams with (tests/js/fake-cometd-faye.mjs).
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sors_fake_cometd::{EventType, ForgetAdvice};
use support::{Server, TOKEN, TOPIC, test_config};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

fn js_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/js")).to_path_buf()
}

/// The node process running the driver script, and what it printed so far.
struct NodeClient {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every line printed so far, in order; `claimed` indexes those `wait_for` returned.
    seen: Vec<Value>,
    claimed: HashSet<usize>,
    stderr: Arc<Mutex<String>>,
}

const COMETD: (&str, &[&str]) = (
    "fake-cometd-client.mjs",
    &["cometd", "cometd-nodejs-client"],
);
const FAYE: (&str, &[&str]) = ("fake-cometd-faye.mjs", &["faye"]);

impl NodeClient {
    /// Runs `tests/js/<script>` with `<url> <token> <channel> <replay>`.
    fn start(script: &str, modules: &[&str], url: &str, replay: i64) -> NodeClient {
        let dir = js_dir();
        for module in modules {
            assert!(
                dir.join("node_modules").join(module).is_dir(),
                "tests/js/node_modules/{module} is missing: run ci/test (or `npm ci` in tests/js) first"
            );
        }
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args([url, TOKEN, TOPIC, &replay.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` ({e}): install Node 20 (ci/test does) to run this test")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        NodeClient {
            child,
            lines,
            seen: Vec::new(),
            claimed: HashSet::new(),
            stderr,
        }
    }

    /// Waits (up to 20 s) for a line matching `pred` that no earlier call returned, and returns
    /// it. Lines may come in any order (an event can be printed before the subscribe callback).
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let unclaimed = |i: &usize| !self.claimed.contains(i);
            if let Some(i) = (0..self.seen.len())
                .filter(unclaimed)
                .find(|&i| pred(&self.seen[i]))
            {
                self.claimed.insert(i);
                return self.seen[i].clone();
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) | Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
                    panic!(
                        "timed out waiting for {what}; node exit status {status:?}\nlines: {:#?}\nstderr: {stderr}",
                        self.seen
                    );
                }
            }
        }
    }

    fn events(&self) -> Vec<i64> {
        self.seen
            .iter()
            .filter(|l| l["kind"] == "event")
            .filter_map(|l| l["replayId"].as_i64())
            .collect()
    }
}

fn kind(line: &Value, kind: &str) -> bool {
    line["kind"] == kind
}

#[tokio::test]
async fn real_cometd_client_replays_receives_and_survives_a_forget() {
    let server = Server::start(test_config()).await;
    let publish = |n: u32| {
        server
            .streaming
            .publish(TOPIC, EventType::Created, json!({"Id": format!("a0B{n}")}))
            .expect("published")
    };
    let before = publish(0);
    let replayed = publish(1);

    let mut node = NodeClient::start(COMETD.0, COMETD.1, &server.url(), before);
    let hs = node
        .wait_for("first handshake", |l| kind(l, "handshake"))
        .await;
    assert_eq!(hs["successful"], true, "{hs}");
    let first_client = hs["clientId"].clone();
    let sub = node
        .wait_for("first subscribe", |l| kind(l, "subscribe"))
        .await;
    assert_eq!(
        sub,
        json!({"kind": "subscribe", "successful": true, "replay": before})
    );
    let ev = node
        .wait_for("the replayed event", |l| kind(l, "event"))
        .await;
    assert_eq!(
        ev["replayId"], replayed,
        "only the event after {before} is replayed"
    );
    assert_eq!(ev["type"], "created");
    assert_eq!(ev["sobject"], json!({"Id": "a0B1"}));

    let live = publish(2);
    let ev = node.wait_for("a live event", |l| kind(l, "event")).await;
    assert_eq!(ev["replayId"], live);

    server.streaming.forget_clients(ForgetAdvice::Handshake);
    let failed = node
        .wait_for("the connect refused after the forget", |l| {
            kind(l, "connect")
        })
        .await;
    assert_eq!(failed["error"], "403::Unknown client");
    assert_eq!(failed["advice"]["reconnect"], "handshake");
    let hs = node
        .wait_for("the re-handshake", |l| kind(l, "handshake"))
        .await;
    assert_eq!(hs["successful"], true, "{hs}");
    assert_ne!(hs["clientId"], first_client, "a new session");
    let sub = node
        .wait_for("the re-subscribe", |l| kind(l, "subscribe"))
        .await;
    assert_eq!(
        sub,
        json!({"kind": "subscribe", "successful": true, "replay": live}),
        "re-subscribes from the last replay id it saw"
    );

    let after = publish(3);
    let ev = node
        .wait_for("an event after the forget", |l| kind(l, "event"))
        .await;
    assert_eq!(ev["replayId"], after);
    assert_eq!(
        node.events(),
        vec![replayed, live, after],
        "no loss, no duplicate"
    );

    let counters = server.streaming.counters();
    assert_eq!(counters.handshakes, 2);
    assert_eq!(counters.active_clients, 1);
    assert_eq!(counters.delivered, 3);
}

#[tokio::test]
async fn real_cometd_client_appends_the_message_type_to_a_dotless_url() {
    // `/cometd/58` has no '.', so CometD JS posts to `/cometd/58/handshake`, `/cometd/58/connect`.
    let server = Server::start(test_config()).await;
    let mut node = NodeClient::start(
        COMETD.0,
        COMETD.1,
        &format!("{}/cometd/58", server.base),
        -1,
    );
    let hs = node.wait_for("handshake", |l| kind(l, "handshake")).await;
    assert_eq!(hs["successful"], true, "{hs}");
    let sub = node.wait_for("subscribe", |l| kind(l, "subscribe")).await;
    assert_eq!(sub["successful"], true, "{sub}");
    let id = server
        .streaming
        .publish(TOPIC, EventType::Updated, json!({"Id": "x"}))
        .expect("published");
    let ev = node.wait_for("event", |l| kind(l, "event")).await;
    assert_eq!(ev["replayId"], id);
    assert_eq!(ev["type"], "updated");
    let paths = server.paths.lock().map(|p| p.clone()).unwrap_or_default();
    // CometD JS appends only handshake/connect/disconnect; other messages go to `/cometd/58/`.
    for path in ["/cometd/58/handshake", "/cometd/58/connect", "/cometd/58/"] {
        assert!(paths.iter().any(|p| p == path), "{path} not in {paths:?}");
    }
}

#[tokio::test]
async fn faye_stays_on_long_polling_replays_and_resubscribes_after_a_forget() {
    let server = Server::start(test_config()).await;
    let publish = |n: u32| {
        server
            .streaming
            .publish(TOPIC, EventType::Created, json!({"Id": format!("a0B{n}")}))
            .expect("published")
    };
    let before = publish(0);
    let replayed = publish(1);

    let mut node = NodeClient::start(FAYE.0, FAYE.1, &server.url(), before);
    let hs = node.wait_for("handshake", |l| kind(l, "handshake")).await;
    assert_eq!(hs["successful"], true, "{hs}");
    let sub = node.wait_for("subscribe", |l| kind(l, "subscribe")).await;
    assert_eq!(sub["successful"], true, "{sub}");
    let ev = node
        .wait_for("the replayed event", |l| kind(l, "event"))
        .await;
    assert_eq!(ev["replayId"], replayed);

    let live = publish(2);
    let ev = node.wait_for("a live event", |l| kind(l, "event")).await;
    assert_eq!(ev["replayId"], live);

    server.streaming.forget_clients(ForgetAdvice::Handshake);
    let failed = node
        .wait_for("the refused connect", |l| kind(l, "connect"))
        .await;
    assert_eq!(failed["error"], "403::Unknown client");
    let hs2 = node
        .wait_for("the re-handshake", |l| kind(l, "handshake"))
        .await;
    assert_eq!(hs2["successful"], true, "{hs2}");
    assert_ne!(hs2["clientId"], hs["clientId"]);
    let sub = node
        .wait_for("faye's own re-subscribe", |l| kind(l, "subscribe"))
        .await;
    assert_eq!(sub["successful"], true, "{sub}");

    let after = publish(3);
    let ev = node
        .wait_for("an event after the forget", |l| kind(l, "event"))
        .await;
    assert_eq!(ev["replayId"], after);
    assert_eq!(node.events(), vec![replayed, live, after]);
    let transports: Vec<&Value> = node
        .seen
        .iter()
        .filter(|l| kind(l, "transport"))
        .map(|l| &l["connectionType"])
        .collect();
    assert_eq!(
        transports,
        vec![&json!("long-polling")],
        "faye never upgrades"
    );
}
