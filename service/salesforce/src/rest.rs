//! The thin REST layer: one `call` with shared re-login and retry/back-off, and the typed
//! operations on top of it (query with paging, update, sObject Collections update, create,
//! delete, limits).

use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tracing::{error, warn};

use crate::auth::TokenStore;
use crate::config::LoginConfig;
use crate::error::{Result, SfError};
use crate::stats::StatsCell;

/// sObject Collections accept at most 200 records per call.
pub(crate) const COLLECTION_MAX: usize = 200;

pub(crate) type Record = Map<String, Value>;

pub(crate) struct Rest {
    pub(crate) tokens: Arc<TokenStore>,
    cfg: Arc<LoginConfig>,
    stats: Arc<StatsCell>,
}

struct Reply {
    status: u16,
    body: bytes::Bytes,
}

/// One page of a query answer. The records stay unparsed text (borrowed from the body) until
/// each is handed on, so a page of 2,000 records never exists as 2,000 JSON trees at once.
#[derive(Deserialize)]
struct QueryPage<'a> {
    #[serde(default = "yes")]
    done: bool,
    #[serde(default, rename = "nextRecordsUrl")]
    next_records_url: Option<String>,
    #[serde(default, borrow)]
    records: Vec<&'a RawValue>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct SaveResult {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<SaveError>,
}

#[derive(Deserialize)]
struct SaveError {
    #[serde(default, alias = "errorCode", rename = "statusCode")]
    status_code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    fields: Vec<String>,
}

impl SaveResult {
    fn into_error(self) -> SfError {
        match self.errors.into_iter().next() {
            Some(e) => SfError::Record {
                code: e.status_code,
                message: e.message,
                fields: e.fields,
            },
            None => SfError::Record {
                code: "UNKNOWN_ERROR".into(),
                message: "the record was not saved and no reason was given".into(),
                fields: vec![],
            },
        }
    }
}

/// One entry of `GET /limits`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Limit {
    #[serde(rename = "Max")]
    pub max: i64,
    #[serde(rename = "Remaining")]
    pub remaining: i64,
}

/// Record ids end up in URL paths: only letters and digits are accepted.
pub(crate) fn check_id(id: &str) -> Result<()> {
    if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(SfError::Config(format!(
            "{id:?} is not a Salesforce record id"
        )))
    }
}

/// The first entry of a Salesforce error array (`[{"errorCode","message","fields"}]`), or a
/// readable fallback for other bodies.
fn api_error(status: u16, body: &[u8]) -> SfError {
    #[derive(Deserialize)]
    struct ApiErr {
        #[serde(default, rename = "errorCode")]
        error_code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        fields: Vec<String>,
    }
    if let Ok(mut list) = serde_json::from_slice::<Vec<ApiErr>>(body)
        && !list.is_empty()
    {
        let first = list.swap_remove(0);
        return SfError::Api {
            status,
            code: first.error_code,
            message: first.message,
            fields: first.fields,
        };
    }
    if let Ok(one) = serde_json::from_slice::<ApiErr>(body)
        && !one.error_code.is_empty()
    {
        return SfError::Api {
            status,
            code: one.error_code,
            message: one.message,
            fields: one.fields,
        };
    }
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    SfError::Api {
        status,
        code: format!("HTTP_{status}"),
        message: text,
        fields: vec![],
    }
}

fn is_retryable(err: &SfError) -> bool {
    match err {
        SfError::Api { status, code, .. } => {
            *status == 503
                || *status == 429
                || (*status == 403 && code == "REQUEST_LIMIT_EXCEEDED")
                || code == "UNABLE_TO_LOCK_ROW"
        }
        _ => false,
    }
}

impl Rest {
    pub(crate) fn new(
        tokens: Arc<TokenStore>,
        cfg: Arc<LoginConfig>,
        stats: Arc<StatsCell>,
    ) -> Self {
        Self { tokens, cfg, stats }
    }

    fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}/{rest}", self.cfg.api_version)
    }

    /// Sends one request to `{instance_url}{path}`: re-login once on 401, retry with back-off
    /// on 503 / 429 / 403 `REQUEST_LIMIT_EXCEEDED` / `UNABLE_TO_LOCK_ROW` (and on transport
    /// errors, except for POST which is not idempotent).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        with_batch_size: bool,
    ) -> Result<Reply> {
        let policy = &self.cfg.retry;
        let mut attempt = 1u32;
        let mut relogged = false;
        loop {
            let session = self.tokens.session().await?;
            let url = format!("{}{}", session.info.instance_url, path);
            // The pool of the current login: a new proxy policy applies from a login on.
            let http = self.tokens.http();
            let mut req = http
                .client
                .request(method.clone(), &url)
                .bearer_auth(session.token.expose())
                .header("Accept", "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if with_batch_size {
                req = req.header(
                    "Sforce-Query-Options",
                    format!("batchSize={}", self.cfg.query_batch_size),
                );
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            self.stats.update(|s| s.calls += 1);
            // A proxy's own refusal is no answer of Salesforce (no re-login for its 401).
            let started = std::time::Instant::now();
            let sent = match req.send().await {
                Ok(resp) => http.refusal(&url, &resp, false).map_or(Ok(resp), Err),
                Err(e) => Err(http.transport(&url, &e)),
            };
            // Time to the answer's headers, failures included.
            self.cfg
                .observer
                .call(call_kind(&method, path), started.elapsed());
            let outcome = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if let Some(limit) = resp
                        .headers()
                        .get("Sforce-Limit-Info")
                        .and_then(|v| v.to_str().ok())
                    {
                        self.stats.record_limit_info(limit);
                    }
                    match resp.bytes().await {
                        Ok(body) if (200..300).contains(&status) => {
                            return Ok(Reply { status, body });
                        }
                        Ok(body) => api_error(status, &body),
                        Err(e) => http.transport(&url, &e),
                    }
                }
                Err(e) => e,
            };
            if outcome.status() == Some(401) {
                if relogged {
                    error!(
                        event = "salesforce.session.rejected",
                        method = %method, path, error = %outcome,
                        "Salesforce rejected the session again right after a fresh login"
                    );
                    let err = SfError::SessionRejected(outcome.to_string());
                    self.stats.error(&err);
                    return Err(err);
                }
                relogged = true;
                warn!(
                    event = "salesforce.session.invalid",
                    method = %method, path, generation = session.generation, error = %outcome,
                    "Salesforce session rejected"
                );
                self.tokens.relogin(session.generation).await?;
                continue;
            }
            let transport_retry =
                matches!(outcome, SfError::Transport(_)) && method != Method::POST;
            if (is_retryable(&outcome) || transport_retry) && attempt < policy.max_attempts {
                let delay = policy.delay(attempt);
                warn!(
                    event = "salesforce.rest.retry",
                    method = %method, path, attempt, delay_ms = delay.as_millis() as u64,
                    error = %outcome,
                    "Retrying Salesforce request"
                );
                self.stats.update(|s| s.retries += 1);
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            self.stats.error(&outcome);
            return Err(outcome);
        }
    }

    /// Runs a SOQL query and pages through `nextRecordsUrl` until `done`.
    pub(crate) async fn query(&self, soql: &str) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        self.query_each(soql, |r| records.push(r)).await?;
        Ok(records)
    }

    /// Runs a SOQL query and hands each record to `each`, a page at a time: only one page's
    /// JSON is held at once (a page is up to 2,000 records), however long the answer is.
    pub(crate) async fn query_each(&self, soql: &str, mut each: impl FnMut(Record)) -> Result<()> {
        let mut reply = self
            .call(
                Method::GET,
                &self.data_path("query"),
                &[("q", soql)],
                None,
                true,
            )
            .await?;
        loop {
            let page: QueryPage = serde_json::from_slice(&reply.body)
                .map_err(|e| SfError::Protocol(format!("query answer: {e}")))?;
            for raw in page.records {
                match serde_json::from_str::<Record>(raw.get()) {
                    Ok(m) => each(m),
                    Err(_) => warn!(
                        event = "salesforce.query.bad_record",
                        record = raw.get(),
                        "Skipping a query record that is not an object"
                    ),
                }
            }
            if page.done {
                return Ok(());
            }
            let next = page.next_records_url.ok_or_else(|| {
                SfError::Protocol("query answer has done=false but no nextRecordsUrl".into())
            })?;
            if !next.starts_with("/services/data/") {
                return Err(SfError::Protocol(format!(
                    "unexpected nextRecordsUrl {next:?}"
                )));
            }
            reply = self.call(Method::GET, &next, &[], None, true).await?;
        }
    }

    /// PATCH one record (204).
    pub(crate) async fn update(&self, object: &str, id: &str, fields: &Record) -> Result<()> {
        check_id(id)?;
        self.call(
            Method::PATCH,
            &self.data_path(&format!("sobjects/{object}/{id}")),
            &[],
            Some(&Value::Object(fields.clone())),
            false,
        )
        .await
        .map(drop)
    }

    /// PATCH many records through sObject Collections, `allOrNone=false`, at most 200 per call.
    /// Records failing with `UNABLE_TO_LOCK_ROW` are retried alone, with back-off. The result
    /// has one entry per input, in input order.
    pub(crate) async fn update_many(
        &self,
        object: &str,
        records: Vec<(String, Record)>,
    ) -> Vec<(String, Result<()>)> {
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_MAX) {
            let results = self.update_chunk(object, chunk).await;
            out.extend(chunk.iter().map(|(id, _)| id.clone()).zip(results));
        }
        out
    }

    async fn update_chunk(&self, object: &str, chunk: &[(String, Record)]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = vec![None; chunk.len()];
        let mut pending: Vec<usize> = Vec::new();
        for (i, (id, _)) in chunk.iter().enumerate() {
            match check_id(id) {
                Ok(()) => pending.push(i),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let mut attempt = 1u32;
        while !pending.is_empty() {
            let body_records: Vec<Value> = pending
                .iter()
                .map(|&i| {
                    let (id, fields) = &chunk[i];
                    let mut m = fields.clone();
                    m.insert("attributes".into(), json!({ "type": object }));
                    m.insert("id".into(), Value::String(id.clone()));
                    Value::Object(m)
                })
                .collect();
            let body = json!({ "allOrNone": false, "records": body_records });
            let parsed = match self
                .call(
                    Method::PATCH,
                    &self.data_path("composite/sobjects"),
                    &[],
                    Some(&body),
                    false,
                )
                .await
            {
                Ok(reply) => serde_json::from_slice::<Vec<SaveResult>>(&reply.body)
                    .map_err(|e| SfError::Protocol(format!("collections answer: {e}")))
                    .and_then(|list| {
                        if list.len() == pending.len() {
                            Ok(list)
                        } else {
                            Err(SfError::Protocol(format!(
                                "collections answer has {} results for {} records",
                                list.len(),
                                pending.len()
                            )))
                        }
                    }),
                Err(e) => Err(e),
            };
            let list = match parsed {
                Ok(list) => list,
                Err(e) => {
                    for &i in &pending {
                        results[i] = Some(Err(e.clone()));
                    }
                    break;
                }
            };
            let mut locked = Vec::new();
            for (&i, r) in pending.iter().zip(list) {
                if r.success {
                    results[i] = Some(Ok(()));
                    continue;
                }
                let err = r.into_error();
                if err.code() == Some("UNABLE_TO_LOCK_ROW") && attempt < self.cfg.retry.max_attempts
                {
                    locked.push(i);
                } else {
                    results[i] = Some(Err(err));
                }
            }
            if !locked.is_empty() {
                let delay = self.cfg.retry.delay(attempt);
                warn!(
                    event = "salesforce.rest.retry",
                    object,
                    records = locked.len(),
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "Retrying locked records"
                );
                self.stats.update(|s| s.retries += 1);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            pending = locked;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SfError::Protocol("no result".into()))))
            .collect()
    }

    /// POST a new record (201); returns its id.
    pub(crate) async fn create(&self, object: &str, fields: &Record) -> Result<String> {
        let reply = self
            .call(
                Method::POST,
                &self.data_path(&format!("sobjects/{object}")),
                &[],
                Some(&Value::Object(fields.clone())),
                false,
            )
            .await?;
        let r: SaveResult = serde_json::from_slice(&reply.body).map_err(|e| {
            SfError::Protocol(format!("create answer (HTTP {}): {e}", reply.status))
        })?;
        match r.id.clone() {
            Some(id) if r.success || r.errors.is_empty() => Ok(id),
            _ => Err(r.into_error()),
        }
    }

    /// `GET /limits`: entries that have `Max` and `Remaining`.
    pub(crate) async fn limits(&self) -> Result<std::collections::BTreeMap<String, Limit>> {
        let reply = self
            .call(Method::GET, &self.data_path("limits"), &[], None, false)
            .await?;
        let all: Map<String, Value> = serde_json::from_slice(&reply.body)
            .map_err(|e| SfError::Protocol(format!("limits answer: {e}")))?;
        Ok(all
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_value::<Limit>(v).ok()?)))
            .collect())
    }
}

/// The kind of a REST call, for the latency histogram's `kind` label.
fn call_kind(method: &Method, path: &str) -> &'static str {
    if path.contains("/composite/") {
        "composite"
    } else if path.ends_with("/query") || path.contains("/query/") {
        "query"
    } else if path.ends_with("/limits") {
        "limits"
    } else if *method == Method::PATCH {
        "update"
    } else if *method == Method::POST {
        "create"
    } else if *method == Method::DELETE {
        "delete"
    } else {
        "get"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_reads_the_first_entry_or_falls_back() {
        let e = api_error(
            401,
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(e.code(), Some("INVALID_SESSION_ID"));
        assert_eq!(e.status(), Some(401));
        let e = api_error(502, b"<html>bad gateway</html>");
        assert_eq!(e.code(), Some("HTTP_502"));
        assert!(is_retryable(&api_error(
            400,
            br#"[{"message":"x","errorCode":"UNABLE_TO_LOCK_ROW"}]"#
        )));
        assert!(!is_retryable(&api_error(
            403,
            br#"[{"message":"x","errorCode":"INSUFFICIENT_ACCESS"}]"#
        )));
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("a0B5g00000XyZabEAF").is_ok());
        assert!(check_id("../x").is_err());
        assert!(check_id("").is_err());
    }
}
