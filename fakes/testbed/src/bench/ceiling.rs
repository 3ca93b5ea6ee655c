//! The ceiling: the simplest client that makes the calls a routing row needs, with no routing
//! logic, so a bench figure can be read as a fraction of what the fakes allow on this machine.
//!
//! Per row: the row is read (one SOQL query per page of `New` rows, or per batch of pushed ids),
//! one `RouteCase` handler notification is raised through ICWS and its result awaited (32 at
//! once), and the row is written `Processed` with the interaction id (sObject Collections, up to
//! 200 rows per call, one write in flight). No claim write, no case reads, no checks, no
//! retries. It speaks HTTP and JSON to the fakes directly (OAuth password login, REST, Bayeux
//! long polling, ICWS with server-sent events) and shares no code with the product's clients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

const V: &str = "v62.0";
const COMETD: &str = "62.0";
const ROW: &str = "Object_Routing_Queue__c";
const FIELDS: &str = "Id, Case__c, Case_Number__c, Workgroup__c, Skills__c, Subject__c, From_Address__c, From_Name__c";
/// Route requests in flight (the router's `max_in_flight` default).
pub const IN_FLIGHT: usize = 32;
const TOPIC: &str = "SorsBenchCeiling";
/// The longest a handler result is waited for.
const RESULT_TIMEOUT: Duration = Duration::from_secs(30);

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Result<String, String>>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A logged-in ceiling client.
pub struct Ceiling {
    http: reqwest::Client,
    instance: String,
    token: String,
    /// `{cic}/icws/{sessionId}`.
    icws: String,
    csrf: String,
    waiters: Waiters,
    sse: JoinHandle<()>,
    /// From the start of `connect` to a session on both sides with the results subscribed.
    pub connect_time: Duration,
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        self.sse.abort();
    }
}

async fn ok_json(resp: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text().await.with_context(|| format!("{what}: body"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

impl Ceiling {
    /// Logs in to Salesforce (OAuth password flow of the demo org), connects to the CIC primary,
    /// subscribes to the handler's results and opens the message stream.
    pub async fn connect(sf_url: &str, cic_primary: &str) -> anyhow::Result<Ceiling> {
        let started = Instant::now();
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .no_proxy()
            .pool_max_idle_per_host(64)
            .build()
            .context("HTTP client")?;
        let login = ok_json(
            http.post(format!("{sf_url}/services/oauth2/token"))
                .form(&[
                    ("grant_type", "password"),
                    ("client_id", "sors-demo"),
                    ("client_secret", "sors-demo-secret"),
                    ("username", "router@sors.demo"),
                    ("password", "demoTOKEN"),
                ])
                .send()
                .await
                .context("Salesforce login")?,
            "Salesforce login",
        )
        .await?;
        let connection = ok_json(
            http.post(format!("{cic_primary}/icws/connection"))
                .json(&json!({
                    "__type": "urn:inin.com:connection:icAuthConnectionRequestSettings",
                    "applicationName": "sors bench ceiling",
                    "userID": "sors",
                    "password": "sors",
                }))
                .send()
                .await
                .context("ICWS connect")?,
            "ICWS connect",
        )
        .await?;
        let icws = format!("{cic_primary}/icws/{}", s(&connection["sessionId"]));
        let csrf = s(&connection["csrfToken"]).to_owned();
        ok_json(
            http.put(format!(
                "{icws}/messaging/subscriptions/system/handler-sent-notifications"
            ))
            .header("ININ-ICWS-CSRF-Token", &csrf)
            .json(&json!({"headers": [{"objectId": "SalesforceObjectRouting", "eventIds": ["RouteCaseResult"]}]}))
            .send()
            .await
            .context("ICWS handler subscription")?,
            "ICWS handler subscription",
        )
        .await?;
        let stream = http
            .get(format!("{icws}/messaging/messages"))
            .header("Accept", "text/event-stream")
            .send()
            .await
            .context("ICWS message stream")?;
        if !stream.status().is_success() {
            bail!("ICWS message stream: HTTP {}", stream.status());
        }
        let waiters: Waiters = Arc::default();
        let sse = tokio::spawn(read_results(stream, waiters.clone()));
        Ok(Ceiling {
            http,
            instance: s(&login["instance_url"]).to_owned(),
            token: s(&login["access_token"]).to_owned(),
            icws,
            csrf,
            waiters,
            sse,
            connect_time: started.elapsed(),
        })
    }

    async fn get(&self, url: &str, what: &str) -> anyhow::Result<Value> {
        ok_json(
            self.http
                .get(url)
                .bearer_auth(&self.token)
                .send()
                .await
                .with_context(|| what.to_owned())?,
            what,
        )
        .await
    }

    /// One SOQL query, every page.
    async fn query(&self, soql: &str, out: &mpsc::Sender<Value>) -> anyhow::Result<()> {
        let mut url = reqwest::Url::parse_with_params(
            &format!("{}/services/data/{V}/query", self.instance),
            &[("q", soql)],
        )
        .context("query URL")?
        .to_string();
        loop {
            let page = self.get(&url, "SOQL query").await?;
            if let Some(records) = page["records"].as_array() {
                for r in records {
                    if out.send(r.clone()).await.is_err() {
                        return Ok(());
                    }
                }
            }
            match page["nextRecordsUrl"].as_str() {
                Some(next) => url = format!("{}{next}", self.instance),
                None => return Ok(()),
            }
        }
    }

    /// Raises `RouteCase` for a row and waits for its result: the interaction id.
    async fn route(&self, row: &Value) -> anyhow::Result<(String, String)> {
        let id = s(&row["Id"]).to_owned();
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(id.clone(), tx);
        let data: Vec<&str> = [
            "Case__c",
            "Case_Number__c",
            "Workgroup__c",
            "Skills__c",
            "Subject__c",
            "From_Address__c",
            "From_Name__c",
        ]
        .iter()
        .map(|f| s(&row[*f]))
        .collect();
        let mut items = vec!["1", id.as_str()];
        items.extend(data);
        let sent = ok_json(
            self.http
                .post(format!("{}/system/handler-notification", self.icws))
                .header("ININ-ICWS-CSRF-Token", &self.csrf)
                .json(&json!({"objectId": "SalesforceObjectRouting", "eventId": "RouteCase", "data": items}))
                .send()
                .await
                .context("handler notification")?,
            "handler notification",
        )
        .await;
        if let Err(e) = sent {
            lock(&self.waiters).remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(RESULT_TIMEOUT, rx).await {
            Ok(Ok(Ok(interaction))) => Ok((id, interaction)),
            Ok(Ok(Err(message))) => bail!("the handler refused row {id}: {message}"),
            Ok(Err(_)) => bail!("the ICWS message stream ended"),
            Err(_) => {
                lock(&self.waiters).remove(&id);
                bail!("no handler result for row {id} within {RESULT_TIMEOUT:?}")
            }
        }
    }

    /// Writes rows `Processed` with their interaction ids (one sObject Collections call).
    async fn write(&self, done: &[(String, String)]) -> anyhow::Result<()> {
        let now = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let records: Vec<Value> = done
            .iter()
            .map(|(id, interaction)| {
                json!({"attributes": {"type": ROW}, "id": id, "Status__c": "Processed",
                       "Interaction_Id__c": interaction, "Processed_At__c": now})
            })
            .collect();
        let results = ok_json(
            self.http
                .patch(format!(
                    "{}/services/data/{V}/composite/sobjects",
                    self.instance
                ))
                .bearer_auth(&self.token)
                .json(&json!({"allOrNone": false, "records": records}))
                .send()
                .await
                .context("row write")?,
            "row write",
        )
        .await?;
        let failed = results
            .as_array()
            .map(|a| a.iter().filter(|r| r["success"] != true).count())
            .unwrap_or(done.len());
        if failed > 0 {
            bail!("{failed} of {} row writes refused: {results}", done.len());
        }
        Ok(())
    }

    /// Routes every row that comes out of `rows`: 32 routes in flight, one write in flight.
    /// Returns how many rows were written.
    async fn pipeline(self: &Arc<Self>, mut rows: mpsc::Receiver<Value>) -> anyhow::Result<usize> {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, String)>();
        let me = self.clone();
        let writer = tokio::spawn(async move {
            let mut written = 0usize;
            while let Some(first) = done_rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 200 {
                    match done_rx.try_recv() {
                        Ok(d) => batch.push(d),
                        Err(_) => break,
                    }
                }
                me.write(&batch).await?;
                written += batch.len();
            }
            Ok::<_, anyhow::Error>(written)
        });
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut routes: JoinSet<anyhow::Result<()>> = JoinSet::new();
        let mut first_error: Option<anyhow::Error> = None;
        while let Some(row) = rows.recv().await {
            let permit = permits.clone().acquire_owned().await?;
            let (me, tx) = (self.clone(), done_tx.clone());
            routes.spawn(async move {
                let routed = me.route(&row).await;
                drop(permit);
                let _ = tx.send(routed?);
                Ok(())
            });
            while let Some(r) = routes.try_join_next() {
                if let Err(e) = r.map_err(anyhow::Error::from).and_then(|r| r) {
                    first_error.get_or_insert(e);
                }
            }
        }
        while let Some(r) = routes.join_next().await {
            if let Err(e) = r.map_err(anyhow::Error::from).and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        drop(done_tx);
        let written = writer.await??;
        match first_error {
            Some(e) => Err(e.context("ceiling client")),
            None => Ok(written),
        }
    }

    /// B1's ceiling: every `New` row, read page by page, routed and written.
    pub async fn drain(self: &Arc<Self>) -> anyhow::Result<usize> {
        let (tx, rx) = mpsc::channel(4000);
        let me = self.clone();
        let reader = tokio::spawn(async move {
            me.query(
                &format!("SELECT {FIELDS} FROM {ROW} WHERE Status__c = 'New' ORDER BY CreatedDate"),
                &tx,
            )
            .await
        });
        let written = self.pipeline(rx).await?;
        reader.await??;
        Ok(written)
    }

    /// B2's and B3's ceiling: a PushTopic of its own, then every pushed row read (one query per
    /// batch of pushed ids), routed and written, until [`Follower::stop`].
    pub async fn follow(self: &Arc<Self>) -> anyhow::Result<Follower> {
        ok_json(
            self.http
                .post(format!(
                    "{}/services/data/{V}/sobjects/PushTopic",
                    self.instance
                ))
                .bearer_auth(&self.token)
                .json(
                    &json!({"Name": TOPIC, "ApiVersion": 62.0, "NotifyForFields": "Referenced",
                    "Query": format!("SELECT Id, Status__c FROM {ROW} WHERE Status__c = 'New'")}),
                )
                .send()
                .await
                .context("creating the ceiling's PushTopic")?,
            "creating the ceiling's PushTopic",
        )
        .await?;
        let bayeux = Bayeux::handshake(self, &format!("/topic/{TOPIC}")).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(4000);
        let me = self.clone();
        let stopping = stop.clone();
        let listener = tokio::spawn(async move {
            while !stopping.load(Ordering::Relaxed) {
                let ids = bayeux.connect(&me).await?;
                if ids.is_empty() {
                    continue;
                }
                for chunk in ids.chunks(200) {
                    let list = chunk
                        .iter()
                        .map(|i| format!("'{i}'"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    me.query(
                        &format!(
                            "SELECT {FIELDS} FROM {ROW} WHERE Id IN ({list}) ORDER BY CreatedDate"
                        ),
                        &tx,
                    )
                    .await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        });
        let me = self.clone();
        let pipeline = tokio::spawn(async move { me.pipeline(rx).await });
        Ok(Follower {
            stop,
            listener,
            pipeline,
        })
    }
}

/// The push-driven ceiling, running.
pub struct Follower {
    stop: Arc<AtomicBool>,
    listener: JoinHandle<anyhow::Result<()>>,
    pipeline: JoinHandle<anyhow::Result<usize>>,
}

impl Follower {
    /// Stops listening (the held connect is dropped), finishes what was read; rows written.
    pub async fn stop(self) -> anyhow::Result<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.listener.abort();
        if let Ok(Err(e)) = self.listener.await {
            return Err(e);
        }
        self.pipeline.await?
    }
}

/// A Bayeux long-polling session on one channel.
struct Bayeux {
    url: String,
    client_id: String,
}

impl Bayeux {
    async fn post(&self, c: &Ceiling, msg: Value) -> anyhow::Result<Vec<Value>> {
        let v = ok_json(
            c.http
                .post(&self.url)
                .bearer_auth(&c.token)
                .json(&json!([msg]))
                .send()
                .await
                .context("Bayeux request")?,
            "Bayeux request",
        )
        .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    async fn handshake(c: &Ceiling, channel: &str) -> anyhow::Result<Bayeux> {
        let mut b = Bayeux {
            url: format!("{}/cometd/{COMETD}", c.instance),
            client_id: String::new(),
        };
        let reply = b
            .post(
                c,
                json!({"channel": "/meta/handshake", "version": "1.0",
                       "supportedConnectionTypes": ["long-polling"]}),
            )
            .await?;
        b.client_id = reply
            .iter()
            .find_map(|m| m["clientId"].as_str())
            .context("Bayeux handshake: no clientId")?
            .to_owned();
        let reply = b
            .post(
                c,
                json!({"channel": "/meta/subscribe", "clientId": b.client_id, "subscription": channel}),
            )
            .await?;
        if !reply.iter().any(|m| m["successful"] == true) {
            bail!("Bayeux subscribe refused: {reply:?}");
        }
        Ok(b)
    }

    /// One `/meta/connect`: the row ids of the events it brought.
    async fn connect(&self, c: &Ceiling) -> anyhow::Result<Vec<String>> {
        let reply = self
            .post(
                c,
                json!({"channel": "/meta/connect", "clientId": self.client_id,
                       "connectionType": "long-polling"}),
            )
            .await?;
        let mut ids = Vec::new();
        for m in &reply {
            if m["channel"] == "/meta/connect" {
                if m["successful"] != true {
                    bail!("Bayeux connect refused: {m}");
                }
            } else if let Some(id) = m["data"]["sobject"]["Id"].as_str() {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }
}

/// Reads the ICWS message stream (server-sent events) and hands each `RouteCaseResult` to the
/// route waiting for it.
async fn read_results(mut stream: reqwest::Response, waiters: Waiters) {
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = stream.chunk().await {
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let Ok(msg) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            if msg["eventId"] != "RouteCaseResult" {
                continue;
            }
            let d = &msg["data"];
            let entry = s(&d[1]).to_owned();
            let result = if d[2] == "ok" {
                Ok(s(&d[3]).to_owned())
            } else {
                Err(s(&d[3]).to_owned())
            };
            if let Some(tx) = lock(&waiters).remove(&entry) {
                let _ = tx.send(result);
            }
        }
    }
    // The stream ended: every waiting route learns it (its sender is dropped).
    lock(&waiters).clear();
}
