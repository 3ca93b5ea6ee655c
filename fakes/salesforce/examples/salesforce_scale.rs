//! Cost per operation of the fake Salesforce as the routing table grows.
//!
//! ```sh
//! cargo run --release -p sors-fake-salesforce --example scale             # 100 … 100,000
//! cargo run --release -p sors-fake-salesforce --example scale -- 100 1000  # chosen sizes
//! ```
//!
//! The demo org with the router's PushTopic. At each size N the org holds N cases in a
//! monitored queue and their N routing rows, all `Processed` except the 50 newest (`New`). Per
//! operation, the median of up to 200 calls (at most ~3 s per operation); REST calls go over
//! loopback HTTP like the router's, the trigger operations through `OrgActor` (UI users):
//!
//! - `case`: an agent creates a case in a monitored queue (trigger writes a `New` row, the
//!   PushTopic publishes it);
//! - `reply`: an agent sends an email on an old case (the trigger looks up the case's last
//!   row for an `AgentReply` row);
//! - `pending`: `WHERE Status__c IN ('New','Processing') ORDER BY CreatedDate, Id` (50 rows);
//! - `ids`: `WHERE Id IN (…200 ids…)`;
//! - `cases`: `WHERE Case__c IN (…200 case ids…) AND Status__c IN ('New','Processing')`;
//! - `limit`: `WHERE Status__c = 'Processed' ORDER BY CreatedDate DESC LIMIT 10`;
//! - `patch`: `PATCH composite/sobjects` of 200 rows, `allOrNone` false / true;
//! - `page`: one `nextRecordsUrl` page (2000 rows) of `SELECT Id, Status__c` over the table.
//!
//! It prints a Markdown table; timings are wall-clock and machine-dependent, never asserted.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sors_fake_salesforce::{FakeSalesforce, FakeSalesforceConfig, OrgActor, OrgSpec};

const V: &str = "v58.0";
const MAX_CALLS: usize = 200;
const BUDGET: Duration = Duration::from_secs(3);
const NEW_ROWS: usize = 50;
const ROW: &str = "Object_Routing_Queue__c";
const ROW_FIELDS: &str = "Id, Case__c, Event__c, Status__c, Interaction_Id__c, Error__c, Attempts__c, Workgroup__c, Skills__c, Salesforce_Queue_Id__c, CreatedDate";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Rest {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Rest {
    async fn new(sf: &FakeSalesforce) -> Res<Rest> {
        let http = reqwest::Client::new();
        let body: Value = http
            .post(format!("{}/services/oauth2/token", sf.base_url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "sors-demo"),
                ("client_secret", "sors-demo-secret"),
            ])
            .send()
            .await?
            .json()
            .await?;
        Ok(Rest {
            http,
            base: sf.base_url(),
            token: body["access_token"]
                .as_str()
                .ok_or("no access_token")?
                .to_owned(),
        })
    }

    async fn get(&self, path_and_query: &str) -> Res<Value> {
        let resp = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if status != StatusCode::OK {
            return Err(format!("GET {path_and_query}: {status} {body}").into());
        }
        Ok(body)
    }

    async fn query(&self, soql: &str) -> Res<Value> {
        let q: String = url_encode(soql);
        self.get(&format!("/services/data/{V}/query?q={q}")).await
    }

    async fn patch(&self, records: Vec<Value>, all_or_none: bool) -> Res<()> {
        let resp = self
            .http
            .patch(format!(
                "{}/services/data/{V}/composite/sobjects",
                self.base
            ))
            .bearer_auth(&self.token)
            .json(&json!({"allOrNone": all_or_none, "records": records}))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        let ok = body
            .as_array()
            .is_some_and(|a| a.iter().all(|r| r["success"] == true));
        if status != StatusCode::OK || !ok {
            return Err(format!("PATCH composite: {status} {body}").into());
        }
        Ok(())
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn soql_list<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let quoted: Vec<String> = ids.map(|i| format!("'{i}'")).collect();
    format!("({})", quoted.join(", "))
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

/// What the harness knows about the org.
struct Model {
    cases: Vec<String>,
    rows: Vec<String>,
    known: HashSet<String>,
    /// Rows still `New`, oldest first.
    fresh: Vec<String>,
}

/// Every `New` row, oldest first.
fn new_rows(sf: &FakeSalesforce) -> Res<Vec<String>> {
    let recs = sf.query(&format!(
        "SELECT Id, Case__c FROM {ROW} WHERE Status__c = 'New' ORDER BY CreatedDate, Id"
    ))?;
    Ok(recs
        .iter()
        .filter_map(|r| r["Id"].as_str().map(str::to_owned))
        .collect::<Vec<_>>())
}

fn mark_processed(router: &OrgActor, ids: &[String]) -> Res<()> {
    for id in ids {
        router.update(
            ROW,
            id,
            json!({"Status__c": "Processed", "Interaction_Id__c": "1001000001",
                   "Processed_At__c": "2026-01-01T00:00:00Z"}),
        )?;
    }
    Ok(())
}

/// Grows the org to `size` cases and rows; afterwards exactly NEW_ROWS rows are `New`.
fn grow(
    sf: &FakeSalesforce,
    agent: &OrgActor,
    router: &OrgActor,
    queue: &str,
    m: &mut Model,
    size: usize,
) -> Res<()> {
    while m.cases.len() < size {
        let id = agent.create(
            "Case",
            json!({"Subject": format!("Case {}", m.cases.len()), "OwnerId": queue,
                   "SuppliedEmail": "jo@example.com", "ObjectRouting_Skills__c": "English"}),
        )?;
        m.cases.push(id);
        if m.cases.len().is_multiple_of(1000) {
            settle(sf, router, m)?;
        }
    }
    settle(sf, router, m)
}

/// Records the new rows and keeps only the newest NEW_ROWS of them `New`.
fn settle(sf: &FakeSalesforce, router: &OrgActor, m: &mut Model) -> Res<()> {
    let all_new = new_rows(sf)?;
    for id in &all_new {
        if m.known.insert(id.clone()) {
            m.rows.push(id.clone());
        }
    }
    let keep_from = all_new.len().saturating_sub(NEW_ROWS);
    mark_processed(router, &all_new[..keep_from])?;
    m.fresh = all_new[keep_from..].to_vec();
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let sizes: Vec<usize> = {
        let given: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.replace([',', '_'], "").parse().ok())
            .collect();
        if given.is_empty() {
            vec![100, 1_000, 10_000, 100_000]
        } else {
            given
        }
    };
    let mut org = OrgSpec::demo();
    org.daily_api_requests = u64::MAX / 2;
    let sf = FakeSalesforce::start(FakeSalesforceConfig {
        org,
        ..Default::default()
    })
    .await?;
    let router = sf.act_as("router@sors.demo")?;
    let agent = sf.act_as("agent1@sors.demo")?;
    router.create(
        "PushTopic",
        json!({"Name": "ObjectRoutingQueue", "ApiVersion": 58.0,
               "Query": "SELECT Id, Case__c, Event__c, Workgroup__c, Skills__c, Status__c FROM Object_Routing_Queue__c WHERE Status__c = 'New'"}),
    )?;
    let queue = sf.queue_id("Support EN").ok_or("no Support EN queue")?;
    let rest = Rest::new(&sf).await?;
    let mut m = Model {
        cases: Vec::new(),
        rows: Vec::new(),
        known: HashSet::new(),
        fresh: Vec::new(),
    };

    println!(
        "| rows | case | reply | pending | ids | cases | limit | patch | patch allOrNone | page |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        let t = Instant::now();
        grow(&sf, &agent, &router, &queue, &mut m, size)?;
        let setup = t.elapsed();
        let n = m.cases.len();
        let pick = |i: usize, k: usize| (i * 7919 + k * 104_729) % n;

        let case = measure(|i| {
            let r = agent
                .create(
                    "Case",
                    json!({"Subject": format!("Measured {i}"), "OwnerId": queue}),
                )
                .map(drop)
                .map_err(Into::into);
            async move { r }
        })
        .await?;
        let reply = measure(|i| {
            let parent = &m.cases[pick(i, 0)];
            let r = agent
                .create(
                    "EmailMessage",
                    json!({"ParentId": parent, "Incoming": false, "Subject": "Re"}),
                )
                .map(drop)
                .map_err(Into::into);
            async move { r }
        })
        .await?;
        // Back to exactly NEW_ROWS `New` rows.
        let extra = sf.query(&format!(
            "SELECT Id FROM {ROW} WHERE Status__c = 'New' ORDER BY CreatedDate, Id"
        ))?;
        let extra: Vec<String> = extra
            .iter()
            .filter_map(|r| r["Id"].as_str().map(str::to_owned))
            .filter(|id| !m.fresh.contains(id))
            .collect();
        mark_processed(&router, &extra)?;

        let rest = &rest;
        let pending = measure(|_| async move {
            let body = rest
                .query(&format!("SELECT {ROW_FIELDS} FROM {ROW} WHERE Status__c IN ('New', 'Processing') ORDER BY CreatedDate, Id"))
                .await?;
            if body["totalSize"] != NEW_ROWS {
                return Err(format!("pending: {} rows", body["totalSize"]).into());
            }
            Ok(())
        })
        .await?;
        let by_ids = measure(|i| {
            let ids: Vec<&String> = (0..200)
                .map(|k| &m.rows[pick(i, k) % m.rows.len()])
                .collect();
            let soql = format!(
                "SELECT {ROW_FIELDS} FROM {ROW} WHERE Id IN {} ORDER BY CreatedDate, Id",
                soql_list(ids.into_iter())
            );
            async move { rest.query(&soql).await.map(drop) }
        })
        .await?;
        let by_cases = measure(|i| {
            let ids: Vec<&String> = (0..200).map(|k| &m.cases[pick(i, k)]).collect();
            let soql = format!(
                "SELECT {ROW_FIELDS} FROM {ROW} WHERE Case__c IN {} AND Status__c IN ('New', 'Processing') ORDER BY CreatedDate, Id",
                soql_list(ids.into_iter())
            );
            async move { rest.query(&soql).await.map(drop) }
        })
        .await?;
        let limit = measure(|_| async move {
            rest.query(&format!("SELECT {ROW_FIELDS} FROM {ROW} WHERE Status__c = 'Processed' ORDER BY CreatedDate DESC LIMIT 10"))
                .await
                .map(drop)
        })
        .await?;
        let patch_body = |i: usize| -> Vec<Value> {
            (0..200)
                .map(|k| {
                    json!({"attributes": {"type": ROW}, "id": m.rows[pick(i, k) % m.rows.len()],
                           "Attempts__c": (i % 7) as f64})
                })
                .collect()
        };
        let patch = measure(|i| {
            let body = patch_body(i);
            async move { rest.patch(body, false).await }
        })
        .await?;
        let patch_all = measure(|i| {
            let body = patch_body(i + 1);
            async move { rest.patch(body, true).await }
        })
        .await?;
        let page = if n > 2000 {
            let first = rest
                .query(&format!("SELECT Id, Status__c FROM {ROW}"))
                .await?;
            let next = first["nextRecordsUrl"]
                .as_str()
                .ok_or("no nextRecordsUrl")?
                .to_owned();
            let pages = (n - 1) / 2000;
            let page = measure(|i| {
                // nextRecordsUrl of page i+1: same locator, offset (i+1)*2000.
                let (loc, _) = next.rsplit_once('-').unwrap_or((&next, ""));
                let url = format!("{loc}-{}", 2000 * (1 + i % pages.max(1)));
                async move { rest.get(&url).await.map(drop) }
            })
            .await?;
            format!("{page:.0} µs")
        } else {
            "–".to_owned()
        };
        println!(
            "| {size} | {case:.0} µs | {reply:.0} µs | {pending:.0} µs | {by_ids:.0} µs | {by_cases:.0} µs | {limit:.0} µs | {patch:.0} µs | {patch_all:.0} µs | {page} |"
        );
        eprintln!("  (size {size}: setup {:.1} s)", setup.as_secs_f64());
    }
    sf.shutdown().await;
    Ok(())
}
