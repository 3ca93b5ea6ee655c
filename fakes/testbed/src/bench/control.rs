//! The fakes' `/__fake/` control APIs over HTTP (the bench never reaches into a fake's memory).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Fake Salesforce's control API.
#[derive(Clone)]
pub struct SfControl {
    http: reqwest::Client,
    base: String,
}

/// Routing rows by status (`GET /__fake/row-counts`).
#[derive(Clone, Debug, Default)]
pub struct RowCounts {
    pub total: u64,
    pub by_status: BTreeMap<String, u64>,
}

impl RowCounts {
    pub fn status(&self, s: &str) -> u64 {
        self.by_status.get(s).copied().unwrap_or(0)
    }

    /// Rows in a final state (`Processed` or `Failed`).
    pub fn done(&self) -> u64 {
        self.status("Processed") + self.status("Failed")
    }
}

async fn json_of(resp: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {body}");
    }
    Ok(body)
}

impl SfControl {
    pub fn new(http: reqwest::Client, base: &str) -> SfControl {
        SfControl {
            http,
            base: format!("{base}/__fake"),
        }
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST /__fake/{path}"))?;
        json_of(resp, &format!("POST /__fake/{path}")).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}/{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET /__fake/{path}"))?;
        json_of(resp, &format!("GET /__fake/{path}")).await
    }

    /// `count` new cases owned by `queue` (trigger, rows, pushes as for a user's save).
    pub async fn cases(&self, count: usize, queue: &str) -> anyhow::Result<usize> {
        let v = self
            .post("cases", json!({"count": count, "queue": queue}))
            .await?;
        Ok(v["created"].as_u64().unwrap_or(0) as usize)
    }

    pub async fn row_counts(&self) -> anyhow::Result<RowCounts> {
        let v = self.get("row-counts").await?;
        let by_status = v["byStatus"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RowCounts {
            total: v["total"].as_u64().unwrap_or(0),
            by_status,
        })
    }

    /// Every record of an uncounted query.
    pub async fn query(&self, soql: &str) -> anyhow::Result<Vec<Value>> {
        let v = self.post("query", json!({"soql": soql})).await?;
        match v.get("records") {
            Some(Value::Array(a)) => Ok(a.clone()),
            _ => bail!("POST /__fake/query: no records in {v}"),
        }
    }

    /// `{"api": {kind: n}, "api_total", "api_usage", "events": {…}}`.
    pub async fn counters(&self) -> anyhow::Result<Value> {
        self.get("counters").await
    }

    pub async fn latency(&self, ms: u64) -> anyhow::Result<()> {
        self.post("latency", json!({"ms": ms})).await.map(drop)
    }
}

/// Fake CIC's control API (either server answers it; the bench asks the primary).
#[derive(Clone)]
pub struct CicControl {
    http: reqwest::Client,
    base: String,
}

impl CicControl {
    pub fn new(http: reqwest::Client, primary: &str) -> CicControl {
        CicControl {
            http,
            base: format!("{primary}/__fake"),
        }
    }

    /// `{handler_notifications, interactions_created, duplicates_suppressed, …}`.
    pub async fn counters(&self) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}/counters", self.base))
            .send()
            .await
            .context("GET /__fake/counters (CIC)")?;
        json_of(resp, "GET /__fake/counters (CIC)").await
    }

    pub async fn latency(&self, ms: u64) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/latency", self.base))
            .json(&json!({"ms": ms}))
            .send()
            .await
            .context("POST /__fake/latency (CIC)")?;
        json_of(resp, "POST /__fake/latency (CIC)").await.map(drop)
    }
}

/// Salesforce API calls by kind between two counter snapshots (`api` of `/__fake/counters`),
/// streaming requests apart (they are not API calls).
pub fn api_delta(before: &Value, after: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Some(m) = after["api"].as_object() {
        for (k, v) in m {
            if k == "streaming" {
                continue;
            }
            let d = v
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(before["api"][k].as_u64().unwrap_or(0));
            if d > 0 {
                out.insert(k.clone(), d);
            }
        }
    }
    out
}
