//! Cost per operation of the fake CIC as the number of interactions it holds grows.
//!
//! ```sh
//! cargo run --release -p sors-fake-icws --example scale            # 100 … 100,000
//! cargo run --release -p sors-fake-icws --example scale -- 100 1000 # chosen sizes
//! ```
//!
//! Everything goes over loopback HTTP, as the router drives the fake, with one session that
//! subscribes to the handler results and watches `Support_EN` (what the router does). At each
//! size N the site holds N interactions: half disconnected (history), half waiting in
//! `Support_EN` behind four busy agents (utilization 1). Then, per operation, the median of
//! up to 200 calls (at most ~3 s per operation):
//!
//! - `route`: a `RouteCase` handler notification (a new interaction that has to wait);
//! - `disconnect`: disconnecting an agent's interaction, after which the ACD hands that agent
//!   the oldest waiting interaction;
//! - `read`: `GET …/interactions/{id}?select=…` of an old interaction;
//! - `watch`: a queue watch on one agent's user queue (its snapshot holds one interaction);
//! - `case`: `FakeIcws::live_interactions_for_case` (what the test bed asks all the time).
//!
//! It prints a Markdown table; timings are wall-clock and machine-dependent, never asserted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sors_fake_icws::{FakeIcws, FakeIcwsConfig, SiteSpec};

const ICWS_JSON: &str = "application/vnd.inin.icws+json";
const AGENTS: [&str; 4] = ["agent1", "agent2", "agent3", "agent4"];
const MAX_CALLS: usize = 200;
const BUDGET: Duration = Duration::from_secs(3);
const FIRST_ID: u64 = 1_001_000_000;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Session {
    http: reqwest::Client,
    base: String,
    sid: String,
    csrf: String,
    cookie: String,
}

impl Session {
    async fn connect(base: &str) -> Res<Session> {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/icws/connection"))
            .header("Content-Type", ICWS_JSON)
            .body(
                json!({
                    "__type": "urn:inin.com:connection:icAuthConnectionRequestSettings",
                    "applicationName": "scale", "userID": "sors", "password": "sors",
                })
                .to_string(),
            )
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(format!("connect: {}", resp.status()).into());
        }
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .ok_or("no cookie")?
            .to_owned();
        let body: Value = resp.json().await?;
        Ok(Session {
            http,
            base: base.to_owned(),
            sid: body["sessionId"].as_str().ok_or("no sessionId")?.to_owned(),
            csrf: body["csrfToken"].as_str().ok_or("no csrfToken")?.to_owned(),
            cookie,
        })
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Res<StatusCode> {
        let mut req = self
            .http
            .request(method, format!("{}/icws/{}/{path}", self.base, self.sid))
            .header("Cookie", &self.cookie)
            .header("ININ-ICWS-CSRF-Token", &self.csrf);
        if let Some(b) = body {
            req = req.header("Content-Type", ICWS_JSON).body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status();
        let _ = resp.bytes().await?;
        if !status.is_success() {
            return Err(format!("{path}: {status}").into());
        }
        Ok(status)
    }

    async fn route(&self, n: u64) -> Res<()> {
        let (entry, case) = (format!("E{n}"), format!("500C{n}"));
        let data = [
            "1",
            &entry,
            &case,
            "00001001",
            "Support_EN",
            "English",
            "Printer on fire",
            "jo@example.com",
            "Jo Customer",
        ];
        self.send(
            Method::POST,
            "system/handler-notification",
            Some(json!({"objectId": "SalesforceObjectRouting", "eventId": "RouteCase", "data": data})),
        )
        .await
        .map(drop)
    }

    async fn disconnect(&self, id: u64) -> Res<()> {
        self.send(Method::POST, &format!("interactions/{id}/disconnect"), None)
            .await
            .map(drop)
    }

    async fn watch(&self, sub: &str, queue_type: u8, name: &str) -> Res<()> {
        self.send(
            Method::PUT,
            &format!("messaging/subscriptions/queues/{sub}"),
            Some(json!({"queueIds": [{"queueType": queue_type, "queueName": name}],
                        "attributeNames": ["Eic_State", "Eic_UserName", "SF_CaseId", "SF_RoutingEntryId"]})),
        )
        .await
        .map(drop)
    }

    /// Empties the session's message queue (not measured).
    async fn drain(&self) -> Res<()> {
        let resp = self
            .http
            .get(format!(
                "{}/icws/{}/messaging/messages",
                self.base, self.sid
            ))
            .header("Cookie", &self.cookie)
            .send()
            .await?;
        let _ = resp.bytes().await?;
        Ok(())
    }
}

async fn availability(base: &str, available: bool) -> Res<()> {
    let http = reqwest::Client::new();
    for a in AGENTS {
        let resp = http
            .post(format!("{base}/__fake/agents/{a}/availability"))
            .json(&json!({"available": available}))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(format!("availability {a}: {}", resp.status()).into());
        }
    }
    Ok(())
}

/// The harness's own model of the site: which interactions wait, which agents hold.
struct Model {
    created: u64,
    waiting: VecDeque<u64>,
    held: VecDeque<u64>,
}

impl Model {
    fn next_id(&mut self) -> u64 {
        self.created += 1;
        FIRST_ID + self.created
    }
}

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// Runs `op` up to MAX_CALLS times (at least 3, at most ~BUDGET); median µs per call.
async fn measure<F, Fut>(mut op: F) -> Res<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let start = Instant::now();
    let mut samples = Vec::new();
    for i in 0..MAX_CALLS {
        let t = Instant::now();
        op(i).await?;
        samples.push(t.elapsed());
        if i >= 2 && start.elapsed() > BUDGET {
            break;
        }
    }
    Ok(median_us(samples))
}

/// Grows the site to `size` interactions: half disconnected, half waiting.
async fn grow(s: &Session, base: &str, m: &mut Model, size: u64) -> Res<()> {
    availability(base, false).await?;
    let mut fresh = Vec::new();
    while m.created < size {
        let id = m.next_id();
        s.route(id - FIRST_ID).await?;
        fresh.push(id);
        if fresh.len() % 1000 == 0 {
            s.drain().await?;
        }
    }
    // Every second new interaction becomes history.
    for (i, id) in fresh.iter().enumerate() {
        if i % 2 == 0 {
            s.disconnect(*id).await?;
        } else {
            m.waiting.push_back(*id);
        }
        if i % 1000 == 0 {
            s.drain().await?;
        }
    }
    availability(base, true).await?;
    // Free agents take the oldest waiting interactions.
    while m.held.len() < AGENTS.len() {
        let Some(id) = m.waiting.pop_front() else {
            break;
        };
        m.held.push_back(id);
    }
    s.drain().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let sizes: Vec<u64> = {
        let given: Vec<u64> = std::env::args()
            .skip(1)
            .filter_map(|a| a.replace([',', '_'], "").parse().ok())
            .collect();
        if given.is_empty() {
            vec![100, 1_000, 10_000, 100_000]
        } else {
            given
        }
    };
    let mut site = SiteSpec::demo();
    site.timings.answer_delay = Duration::from_secs(3600);
    site.timings.session_idle_ttl = Duration::from_secs(3600);
    let fake = FakeIcws::start(FakeIcwsConfig {
        site,
        ..Default::default()
    })
    .await?;
    let base = fake.primary_url();
    let s = Session::connect(&base).await?;
    s.send(
        Method::PUT,
        "messaging/subscriptions/system/handler-sent-notifications",
        Some(json!({"headers": [{"objectId": "SalesforceObjectRouting", "eventIds": ["RouteCaseResult"]}]})),
    )
    .await?;
    s.watch("wg", 2, "Support_EN").await?;
    let mut m = Model {
        created: 0,
        waiting: VecDeque::new(),
        held: VecDeque::new(),
    };

    println!(
        "| interactions | route | disconnect + reassign | read | watch (user queue) | live for case |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        let t = Instant::now();
        grow(&s, &base, &mut m, size).await?;
        let setup = t.elapsed();

        let route = measure(|_| {
            let id = m.next_id();
            m.waiting.push_back(id);
            let s = &s;
            async move { s.route(id - FIRST_ID).await }
        })
        .await?;
        s.drain().await?;

        let disconnect = measure(|_| {
            let id = m.held.pop_front();
            if let Some(next) = m.waiting.pop_front() {
                m.held.push_back(next);
            }
            let s = &s;
            async move { s.disconnect(id.ok_or("nobody holds anything")?).await }
        })
        .await?;
        s.drain().await?;

        let old = FIRST_ID + 2; // waiting or held since the first size
        let read = measure(|_| {
            let s = &s;
            async move {
                s.send(
                    Method::GET,
                    &format!("interactions/{old}?select=Eic_State,SF_CaseId,Eic_UserName"),
                    None,
                )
                .await
                .map(drop)
            }
        })
        .await?;

        let watch = measure(|i| {
            let s = &s;
            async move { s.watch(&format!("user{}", i % 4), 1, AGENTS[i % 4]).await }
        })
        .await?;
        s.drain().await?;

        let fake = &fake;
        let case = measure(|i| {
            let n = 1 + (i as u64 * 7919) % m.created;
            async move {
                let _ = fake.live_interactions_for_case(&format!("500C{n}"));
                Ok(())
            }
        })
        .await?;

        println!(
            "| {size} | {route:.0} µs | {disconnect:.0} µs | {read:.0} µs | {watch:.0} µs | {case:.1} µs |"
        );
        eprintln!("  (size {size}: setup {:.1} s)", setup.as_secs_f64());
    }
    fake.shutdown().await;
    Ok(())
}
