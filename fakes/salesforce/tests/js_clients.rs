//! Real, unmodified JavaScript clients against the fake: jsforce 3.10.16 (SOAP login, paged
//! query, create, update) and cometd 9 + cometd-nodejs-client 2 (PushTopic subscription fed by
//! the routing trigger, recovery after the fake forgets the client).
//! Driver scripts: tests/js/fake-sf-jsforce.mjs and tests/js/fake-sf-cometd.mjs.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sors_fake_cometd::ForgetAdvice;
use sors_fake_salesforce::{FakeSalesforce, FakeSalesforceConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const TOPIC_QUERY: &str = "SELECT Id, Case__c, Event__c, Workgroup__c, Skills__c, Status__c FROM Object_Routing_Queue__c WHERE Status__c = 'New'";

fn js_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/js")).to_path_buf()
}

fn node(script: &str, args: &[&str], modules: &[&str]) -> Child {
    let dir = js_dir();
    for module in modules {
        assert!(
            dir.join("node_modules").join(module).is_dir(),
            "tests/js/node_modules/{module} is missing: run ci/test (or `npm ci` in tests/js) first"
        );
    }
    Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): install Node 20 (ci/test does) to run this test")
        })
}

async fn start(streaming: sors_fake_cometd::Config) -> FakeSalesforce {
    FakeSalesforce::start(FakeSalesforceConfig {
        streaming,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("start: {e}"))
}

#[tokio::test]
async fn jsforce_logs_in_pages_creates_and_updates() {
    let sf = start(sors_fake_cometd::Config::default()).await;
    let agent = sf
        .act_as("agent1@sors.demo")
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..450 {
        agent
            .create("Case", json!({"Subject": format!("page {i:03}")}))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let queue = sf.queue_id("Support EN").unwrap_or_default();
    let child = node(
        "fake-sf-jsforce.mjs",
        &[&sf.base_url(), "router@sors.demo", "demoTOKEN", &queue],
        &["jsforce"],
    );
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("jsforce script did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON from the script; stdout: {stdout}\nstderr: {stderr}"));
    assert!(
        out.status.success(),
        "script failed: {result}\nstderr: {stderr}"
    );

    assert_eq!(result["userId"], json!(sf.user_id("router@sors.demo")));
    assert_eq!(result["orgId"], json!(sf.org_id()));
    assert_eq!(result["instanceUrl"], json!(sf.base_url()));
    assert_eq!(result["totalSize"], 450);
    assert_eq!(result["fetched"], 450);
    assert_eq!(result["firstSubject"], "page 000");
    assert_eq!(result["rowEvent"], "New");
    assert_eq!(result["updated"], true);

    let counters = sf.counters();
    assert_eq!(counters.api.login, 1);
    assert_eq!(counters.api.query, 2);
    assert_eq!(
        counters.api.query_more, 2,
        "450 rows at batchSize=200 are 3 pages"
    );
    assert_eq!(counters.api.create, 1);
    assert_eq!(counters.api.update, 1);

    let case_id = result["caseId"].as_str().unwrap_or_default();
    let case = sf
        .query(&format!(
            "SELECT Subject, OwnerId, CreatedById FROM Case WHERE Id = '{case_id}'"
        ))
        .unwrap_or_default();
    assert_eq!(case[0]["Subject"], "Created by jsforce");
    assert_eq!(case[0]["OwnerId"], json!(queue));
    assert_eq!(
        case[0]["CreatedById"],
        json!(sf.user_id("router@sors.demo"))
    );
    let row_id = result["rowId"].as_str().unwrap_or_default();
    let row = sf
        .query(&format!("SELECT Status__c, Interaction_Id__c, Workgroup__c, Skills__c, From_Name__c FROM Object_Routing_Queue__c WHERE Id = '{row_id}'"))
        .unwrap_or_default();
    assert_eq!(row[0]["Status__c"], "Processed");
    assert_eq!(row[0]["Interaction_Id__c"], "100200300");
    assert_eq!(row[0]["Workgroup__c"], "Support_EN");
    assert_eq!(row[0]["Skills__c"], "English");
    assert_eq!(row[0]["From_Name__c"], "Jane Customer");
    sf.shutdown().await;
}

/// The node cometd process and what it printed so far.
struct CometdClient {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
    claimed: HashSet<usize>,
    stderr: Arc<Mutex<String>>,
}

impl CometdClient {
    fn start(url: &str, session: &str, channel: &str, replay: i64) -> CometdClient {
        let mut child = node(
            "fake-sf-cometd.mjs",
            &[url, session, channel, &replay.to_string()],
            &["cometd", "cometd-nodejs-client"],
        );
        let (tx, lines) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        let _ = tx.send(v);
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&String::from_utf8_lossy(buf.get(..n).unwrap_or_default()));
                    }
                }
            });
        }
        CometdClient {
            child,
            lines,
            seen: Vec::new(),
            claimed: HashSet::new(),
            stderr,
        }
    }

    /// Waits (up to 20 s) for a not-yet-returned line matching `pred`.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) =
                (0..self.seen.len()).find(|i| !self.claimed.contains(i) && pred(&self.seen[*i]))
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
                        "timed out waiting for {what}; node exit {status:?}\nlines: {:#?}\nstderr: {stderr}",
                        self.seen
                    );
                }
            }
        }
    }
}

fn kind(line: &Value, k: &str) -> bool {
    line["kind"] == k
}

async fn oauth_session(sf: &FakeSalesforce) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sf.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sors-demo"),
            ("client_secret", "sors-demo-secret"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    body["access_token"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn cometd_client_receives_trigger_pushes_and_recovers_after_forget() {
    let sf = start(sors_fake_cometd::Config {
        connect_hold: Duration::from_secs(1),
        reconnect_expiry: Duration::from_secs(10),
        ..Default::default()
    })
    .await;
    let router = sf
        .act_as("router@sors.demo")
        .unwrap_or_else(|e| panic!("{e}"));
    router
        .create("PushTopic", json!({"Name": "ObjectRoutingQueue", "Query": TOPIC_QUERY, "ApiVersion": 58.0,
            "NotifyForOperationCreate": true, "NotifyForOperationUpdate": true, "NotifyForFields": "Referenced"}))
        .unwrap_or_else(|e| panic!("{e}"));
    let session = oauth_session(&sf).await;
    let url = format!("{}/cometd/58.0", sf.base_url());
    let mut client = CometdClient::start(&url, &session, "/topic/ObjectRoutingQueue", -1);
    let hs = client.wait_for("handshake", |l| kind(l, "handshake")).await;
    assert_eq!(hs["successful"], true, "{hs}");
    let sub = client.wait_for("subscribe", |l| kind(l, "subscribe")).await;
    assert_eq!(sub["successful"], true, "{sub}");

    // An email-to-case Case lands in a monitored queue: the trigger writes a row, the PushTopic fires.
    let agent = sf
        .act_as("agent1@sors.demo")
        .unwrap_or_else(|e| panic!("{e}"));
    let en = sf.queue_id("Support EN").unwrap_or_default();
    let case1 = agent
        .create(
            "Case",
            json!({"Subject": "first", "OwnerId": en, "ObjectRouting_Skills__c": "English"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let ev = client
        .wait_for("the New row event", |l| {
            kind(l, "event") && l["sobject"]["Case__c"] == json!(case1)
        })
        .await;
    assert_eq!(ev["type"], "created");
    assert_eq!(ev["sobject"]["Event__c"], "New");
    assert_eq!(ev["sobject"]["Workgroup__c"], "Support_EN");
    assert_eq!(ev["sobject"]["Skills__c"], "English");
    assert_eq!(ev["sobject"]["Status__c"], "New");
    let mut keys: Vec<String> = ev["sobject"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(
        keys,
        [
            "Case__c",
            "Event__c",
            "Id",
            "Skills__c",
            "Status__c",
            "Workgroup__c"
        ]
    );
    assert!(ev["replayId"].as_i64().is_some());

    // The fake forgets the client: it is told to rehandshake, resubscribes, and gets the next push.
    sf.forget_streaming(ForgetAdvice::Handshake);
    let failed = client
        .wait_for("403::Unknown client", |l| {
            kind(l, "connect") && l["error"].as_str().is_some_and(|e| e.starts_with("403::"))
        })
        .await;
    assert_eq!(failed["advice"]["reconnect"], "handshake", "{failed}");
    let hs = client
        .wait_for("rehandshake", |l| kind(l, "handshake"))
        .await;
    assert_eq!(hs["successful"], true, "{hs}");
    let sub = client
        .wait_for("resubscribe", |l| kind(l, "subscribe"))
        .await;
    assert_eq!(sub["successful"], true, "{sub}");
    let case2 = agent
        .create(
            "Case",
            json!({"Subject": "second", "OwnerId": sf.queue_id("Support FR").unwrap_or_default()}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let ev = client
        .wait_for("the event after recovery", |l| {
            kind(l, "event") && l["sobject"]["Case__c"] == json!(case2)
        })
        .await;
    assert_eq!(ev["sobject"]["Workgroup__c"], "Support_FR");

    // Claiming the row (Status__c leaves 'New') produces no further event (WHERE no longer matches).
    let before = sf.counters().events.published;
    assert!(before >= 2, "{before}");
    let row = ev["sobject"]["Id"].as_str().unwrap_or_default();
    router
        .update(
            "Object_Routing_Queue__c",
            row,
            json!({"Status__c": "Processing"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let counters = sf.counters();
    assert_eq!(counters.events.published, before, "{counters:?}");
    assert!(counters.api.streaming > 0);
    drop(client.child.stdin.take());
    sf.shutdown().await;
}
