//! Configuration: how to log in, which API names to use, retry and streaming timing.
//!
//! Every type here is `serde::Deserialize`, so the router reads it straight from its TOML file.
//! Durations are plain integers in milliseconds (`*_ms`), which reads well in TOML.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sors_core::backoff::Backoff;
use sors_core::proxy::{ProxyPolicy, ProxySource};

use crate::error::SfError;

pub use sors_core::Secret;

/// How to log in. In TOML: `auth = { kind = "soap", username = "...", password = "..." }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Auth {
    /// SOAP partner `login()`; `password` is the password with the security token appended.
    #[serde(rename = "soap")]
    Soap { username: String, password: Secret },
    /// OAuth 2.0 username-password flow (blocked by default in orgs created since Summer '23).
    #[serde(rename = "oauth_password")]
    OAuthPassword {
        client_id: String,
        client_secret: Secret,
        username: String,
        password: Secret,
    },
    /// OAuth 2.0 client-credentials flow (use the org's My Domain URL as `login_url`).
    #[serde(rename = "client_credentials")]
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
}

/// Login and transport settings.
#[derive(Clone, Debug, Deserialize)]
pub struct LoginConfig {
    /// `https://login.salesforce.com`, `https://test.salesforce.com`, a My Domain URL, or a
    /// fake's base URL. The instance URL always comes from the login answer, never from here.
    pub login_url: String,
    pub auth: Auth,
    /// Version of the SOAP login endpoint (`/services/Soap/u/{v}`): 64.0 is the last with `login()`.
    #[serde(default = "default_soap_api_version")]
    pub soap_api_version: String,
    /// Version of REST (`/services/data/v{v}`) and Streaming (`/cometd/{v}`).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Which proxy each Salesforce request (login, REST, streaming) goes through, judged by the
    /// request's own URL (so `NO_PROXY` applies to the instance host as to the login host).
    /// Default: none (the wiring fills it from `[salesforce] proxy` and the environment).
    #[serde(skip)]
    pub proxy: ProxyPolicy,
    /// When set, the proxy policy comes from here instead of `proxy`, read at every login
    /// (re-logins too) and streaming handshake: a policy set while the client runs applies to
    /// the next connection (the HTTP pool is rebuilt when the policy changed).
    #[serde(skip)]
    pub proxy_source: Option<ProxySource>,
    /// Timeout of one login or REST request, and of Bayeux requests other than `/meta/connect`.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `Sforce-Query-Options: batchSize=N` (200..=2000).
    #[serde(default = "default_query_batch_size")]
    pub query_batch_size: u32,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub streaming: StreamingConfig,
    /// Told the kind and latency of every login and REST call (an empty slot by default; the
    /// service fills it with its histograms).
    #[serde(skip)]
    pub observer: sors_core::observe::Observer,
}

impl LoginConfig {
    /// A config with every default and the given login URL and credentials.
    pub fn new(login_url: impl Into<String>, auth: Auth) -> Self {
        Self {
            login_url: login_url.into(),
            auth,
            soap_api_version: default_soap_api_version(),
            api_version: default_api_version(),
            proxy: ProxyPolicy::default(),
            proxy_source: None,
            request_timeout_ms: default_request_timeout_ms(),
            query_batch_size: default_query_batch_size(),
            retry: RetryPolicy::default(),
            streaming: StreamingConfig::default(),
            observer: sors_core::observe::Observer::default(),
        }
    }

    /// The proxy policy to build a connection pool with, and its version: `proxy_source`'s
    /// current one when set, else `proxy` (version 0, never changes).
    pub(crate) fn proxy_now(&self) -> (u64, Arc<ProxyPolicy>) {
        match &self.proxy_source {
            Some(source) => source.current(),
            None => (0, Arc::new(self.proxy.clone())),
        }
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), SfError> {
        url::Url::parse(&self.login_url)
            .map_err(|e| SfError::Config(format!("login_url {:?}: {e}", self.login_url)))?;
        for (what, v) in [
            ("soap_api_version", &self.soap_api_version),
            ("api_version", &self.api_version),
        ] {
            if v.parse::<f64>().is_err() || !v.contains('.') {
                return Err(SfError::Config(format!(
                    "{what} must look like \"62.0\", got {v:?}"
                )));
            }
        }
        if !(200..=2000).contains(&self.query_batch_size) {
            return Err(SfError::Config(format!(
                "query_batch_size must be in 200..=2000, got {}",
                self.query_batch_size
            )));
        }
        if self.retry.max_attempts == 0 {
            return Err(SfError::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn default_soap_api_version() -> String {
    sors_core::model::SALESFORCE_SOAP_API_VERSION.into()
}
fn default_api_version() -> String {
    sors_core::model::SALESFORCE_API_VERSION.into()
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_query_batch_size() -> u32 {
    2000
}

/// Retries of REST calls on 503, 429, 403 `REQUEST_LIMIT_EXCEEDED` and `UNABLE_TO_LOCK_ROW`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Total attempts of one request, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles on each retry, with jitter (50..100 %).
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// The schedule: `base_delay_ms`, doubling per retry, capped at `max_delay_ms`.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.base_delay_ms),
            Duration::from_millis(self.max_delay_ms),
        )
    }

    /// The delay before retry number `retry` (1 = first retry), with jitter (50..100 %).
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        self.backoff().jittered(retry, rand::random::<f64>())
    }
}

/// Timing of the Bayeux (Streaming API) client. The server decides how long it holds a
/// `/meta/connect` (`advice.timeout`); these are the client's own margins.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct StreamingConfig {
    /// A held `/meta/connect` with no answer within `advice.timeout` + this margin is a stall:
    /// the HTTP connection pool is dropped (cookies kept) and the client re-handshakes.
    pub watchdog_margin_ms: u64,
    /// Hold time assumed before the server has given `advice.timeout` (Salesforce: 110 s).
    pub default_connect_timeout_ms: u64,
    /// Back-off after transport errors and refusals: base, doubling, capped, with jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Minimum wait after the server refused us with `reconnect: none` for a reason other than
    /// authentication (e.g. the org's concurrent-client limit).
    pub refused_delay_ms: u64,
    /// Capacity of the event channel to the router. When the router lags so far behind that it
    /// is full, events are dropped and a `ResyncNeeded` follows (the loop never waits).
    pub channel_capacity: usize,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            watchdog_margin_ms: 30_000,
            default_connect_timeout_ms: 110_000,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            refused_delay_ms: 30_000,
            channel_capacity: 10_000,
        }
    }
}

impl StreamingConfig {
    /// The back-off schedule: `backoff_base_ms`, doubling, capped at `backoff_max_ms`.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.backoff_base_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }
}

/// Every object and field API name the router uses (routing.md §2). Each field defaults to
/// the project's package name, so a site with another namespace overrides only what differs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Names {
    /// The routing table.
    pub routing_object: String,
    pub row_case: String,
    pub row_case_number: String,
    pub row_subject: String,
    pub row_from_address: String,
    pub row_from_name: String,
    pub row_event: String,
    pub row_queue_id: String,
    pub row_workgroup: String,
    pub row_skills: String,
    pub row_status: String,
    pub row_interaction_id: String,
    pub row_attempts: String,
    pub row_error: String,
    pub row_processed_at: String,
    /// The queue → workgroup mapping object.
    pub mapping_object: String,
    pub mapping_queue_name: String,
    pub mapping_workgroup: String,
    pub mapping_queue_id: String,
    /// The Case's required-skills field.
    pub case_skills: String,
    /// The PushTopic name (channel `/topic/{push_topic}`).
    pub push_topic: String,
    /// Length of the routing table's `Error__c` field: longer texts are truncated to it.
    pub error_max_len: usize,
}

impl Default for Names {
    fn default() -> Self {
        Self {
            routing_object: "Object_Routing_Queue__c".into(),
            row_case: "Case__c".into(),
            row_case_number: "Case_Number__c".into(),
            row_subject: "Subject__c".into(),
            row_from_address: "From_Address__c".into(),
            row_from_name: "From_Name__c".into(),
            row_event: "Event__c".into(),
            row_queue_id: "Salesforce_Queue_Id__c".into(),
            row_workgroup: "Workgroup__c".into(),
            row_skills: "Skills__c".into(),
            row_status: "Status__c".into(),
            row_interaction_id: "Interaction_Id__c".into(),
            row_attempts: "Attempts__c".into(),
            row_error: "Error__c".into(),
            row_processed_at: "Processed_At__c".into(),
            mapping_object: "Interaction_Routing_Queue__c".into(),
            mapping_queue_name: "Salesforce_Queue_Name__c".into(),
            mapping_workgroup: "CIC_Workgroup_Name__c".into(),
            mapping_queue_id: "Queue_Id__c".into(),
            case_skills: "ObjectRouting_Skills__c".into(),
            push_topic: "ObjectRoutingQueue".into(),
            error_max_len: 255,
        }
    }
}

impl Names {
    /// Names end up in SOQL and URLs: only API-name characters are allowed.
    pub(crate) fn validate(&self) -> Result<(), SfError> {
        let all = [
            &self.routing_object,
            &self.row_case,
            &self.row_case_number,
            &self.row_subject,
            &self.row_from_address,
            &self.row_from_name,
            &self.row_event,
            &self.row_queue_id,
            &self.row_workgroup,
            &self.row_skills,
            &self.row_status,
            &self.row_interaction_id,
            &self.row_attempts,
            &self.row_error,
            &self.row_processed_at,
            &self.mapping_object,
            &self.mapping_queue_name,
            &self.mapping_workgroup,
            &self.mapping_queue_id,
            &self.case_skills,
            &self.push_topic,
        ];
        for name in all {
            let ok = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            if !ok {
                return Err(SfError::Config(format!(
                    "{name:?} is not a valid Salesforce API name"
                )));
            }
        }
        if self.push_topic.len() > 25 {
            return Err(SfError::Config(format!(
                "PushTopic name {:?} is longer than 25 characters",
                self.push_topic
            )));
        }
        if self.error_max_len == 0 {
            return Err(SfError::Config("error_max_len must be positive".into()));
        }
        Ok(())
    }

    /// The streaming channel of the PushTopic.
    pub fn channel(&self) -> String {
        format!("/topic/{}", self.push_topic)
    }

    /// The PushTopic query of routing.md §2, built from these names.
    pub fn push_topic_query(&self) -> String {
        format!(
            "SELECT Id, {}, {}, {}, {}, {} FROM {} WHERE {} = 'New'",
            self.row_case,
            self.row_event,
            self.row_workgroup,
            self.row_skills,
            self.row_status,
            self.routing_object,
            self.row_status
        )
    }
}
