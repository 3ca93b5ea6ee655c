//! `config.toml`: the tenant's settings (never secrets).
//!
//! Every key has a default, so a missing file or a missing key is fine; an unknown key is an
//! error (a typo must not be silently ignored). `config.example.toml` beside this crate lists
//! every key with its default and is checked against [`Config::default`] by a test.

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::env::{ProcessEnv, Source};
use crate::fsutil;

/// The file name of the settings inside a tenant directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Prefix of the environment variables that override config keys: `SORS_<SECTION>_<KEY>`.
pub const ENV_PREFIX: &str = "SORS_";

/// Keys whose default is "not set" (so they do not appear when the defaults are serialized).
/// A test checks that this list and the struct agree.
const OPTIONAL_KEYS: [&str; 5] = [
    "salesforce.proxy",
    "cic.proxy",
    "http.tls_cert",
    "http.tls_key",
    "logging.dir",
];

/// All the settings of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[tenant]`
    pub tenant: TenantConfig,
    /// `[salesforce]`
    pub salesforce: SalesforceConfig,
    /// `[cic]`
    pub cic: CicConfig,
    /// `[routing]`
    pub routing: RoutingConfig,
    /// `[http]`
    pub http: HttpConfig,
    /// `[logging]`
    pub logging: LoggingConfig,
}

/// `[tenant]`: who this tenant is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name, used in log paths (`$ININ_TRACE_ROOT/<name>`), the journal identifier
    /// (`sors-<name>`) and the status endpoint. Letters, digits, `.`, `_`, `-`; at most 64.
    /// Default `""`: [`Config::load`] uses the tenant directory's name.
    pub name: String,
}

/// How the router logs in to Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SalesforceAuth {
    /// SOAP `login()` with username, password and security token (what the original did).
    #[default]
    Soap,
    /// OAuth 2.0 username-password flow (client id + secret + username + password + token).
    OauthPassword,
    /// OAuth 2.0 client-credentials flow (client id + secret; the run-as user is set on the
    /// connected app). Needs a My Domain `login_url`.
    ClientCredentials,
}

/// `[salesforce]`: the Salesforce org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SalesforceConfig {
    /// Where to log in: `https://login.salesforce.com` (production, the default),
    /// `https://test.salesforce.com` (sandbox) or a My Domain URL
    /// (`https://example.my.salesforce.com`).
    pub login_url: String,
    /// `"soap"` (default), `"oauth-password"` or `"client-credentials"`.
    pub auth: SalesforceAuth,
    /// REST and Streaming API version. Default `"62.0"`.
    pub api_version: String,
    /// SOAP (partner) API version used by the SOAP login. Default `"64.0"`.
    pub soap_api_version: String,
    /// Proxy for Salesforce traffic (`http://host:port`, `https://…`, `socks5://…`). Not set by
    /// default: `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` apply (see [`crate::proxy`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Timeout of one ordinary REST/SOAP request, in seconds (not the Bayeux long poll, which
    /// has its own). Default 30.
    pub request_timeout_secs: u64,
    /// `[salesforce.names]`: object and field API names.
    pub names: SalesforceNames,
}

impl Default for SalesforceConfig {
    fn default() -> Self {
        Self {
            login_url: "https://login.salesforce.com".into(),
            auth: SalesforceAuth::Soap,
            api_version: sors_core::model::SALESFORCE_API_VERSION.into(),
            soap_api_version: sors_core::model::SALESFORCE_SOAP_API_VERSION.into(),
            proxy: None,
            request_timeout_secs: 30,
            names: SalesforceNames::default(),
        }
    }
}

/// `[salesforce.names]`: every object and field API name the router uses (routing.md §2), so a
/// site with other names (a namespace prefix, the vendor's managed package) maps them here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SalesforceNames {
    /// The routing table. Default `Object_Routing_Queue__c`.
    pub routing_object: String,
    /// Routing table: the case lookup. Default `Case__c`.
    pub case: String,
    /// Routing table: case number. Default `Case_Number__c`.
    pub case_number: String,
    /// Routing table: subject. Default `Subject__c`.
    pub subject: String,
    /// Routing table: sender address. Default `From_Address__c`.
    pub from_address: String,
    /// Routing table: sender name. Default `From_Name__c`.
    pub from_name: String,
    /// Routing table: event. Default `Event__c`.
    pub event: String,
    /// Routing table: the monitored queue's id. Default `Salesforce_Queue_Id__c`.
    pub queue_id: String,
    /// Routing table: the CIC workgroup. Default `Workgroup__c`.
    pub workgroup: String,
    /// Routing table: required skills. Default `Skills__c`.
    pub skills: String,
    /// Routing table: status. Default `Status__c`.
    pub status: String,
    /// Routing table: the CIC interaction id. Default `Interaction_Id__c`.
    pub interaction_id: String,
    /// Routing table: attempts. Default `Attempts__c`.
    pub attempts: String,
    /// Routing table: error text. Default `Error__c`.
    pub error: String,
    /// Routing table: when processed. Default `Processed_At__c`.
    pub processed_at: String,
    /// The queue → workgroup mapping object. Default `Interaction_Routing_Queue__c`.
    pub mapping_object: String,
    /// Mapping object: Salesforce queue name. Default `Salesforce_Queue_Name__c`.
    pub queue_name: String,
    /// Mapping object: CIC workgroup name. Default `CIC_Workgroup_Name__c`.
    pub mapping_workgroup: String,
    /// Mapping object: the queue id filled by the trigger. Default `Queue_Id__c`.
    pub mapping_queue_id: String,
    /// Case field with the required skills. Default `ObjectRouting_Skills__c`.
    pub case_skills: String,
    /// The PushTopic's name (at most 25 characters). Default `ObjectRoutingQueue`.
    pub push_topic: String,
}

impl Default for SalesforceNames {
    fn default() -> Self {
        Self {
            routing_object: "Object_Routing_Queue__c".into(),
            case: "Case__c".into(),
            case_number: "Case_Number__c".into(),
            subject: "Subject__c".into(),
            from_address: "From_Address__c".into(),
            from_name: "From_Name__c".into(),
            event: "Event__c".into(),
            queue_id: "Salesforce_Queue_Id__c".into(),
            workgroup: "Workgroup__c".into(),
            skills: "Skills__c".into(),
            status: "Status__c".into(),
            interaction_id: "Interaction_Id__c".into(),
            attempts: "Attempts__c".into(),
            error: "Error__c".into(),
            processed_at: "Processed_At__c".into(),
            mapping_object: "Interaction_Routing_Queue__c".into(),
            queue_name: "Salesforce_Queue_Name__c".into(),
            mapping_workgroup: "CIC_Workgroup_Name__c".into(),
            mapping_queue_id: "Queue_Id__c".into(),
            case_skills: "ObjectRouting_Skills__c".into(),
            push_topic: "ObjectRoutingQueue".into(),
        }
    }
}

impl SalesforceNames {
    /// Every name with its key, for validation and display.
    pub fn entries(&self) -> [(&'static str, &str); 21] {
        [
            ("routing_object", &self.routing_object),
            ("case", &self.case),
            ("case_number", &self.case_number),
            ("subject", &self.subject),
            ("from_address", &self.from_address),
            ("from_name", &self.from_name),
            ("event", &self.event),
            ("queue_id", &self.queue_id),
            ("workgroup", &self.workgroup),
            ("skills", &self.skills),
            ("status", &self.status),
            ("interaction_id", &self.interaction_id),
            ("attempts", &self.attempts),
            ("error", &self.error),
            ("processed_at", &self.processed_at),
            ("mapping_object", &self.mapping_object),
            ("queue_name", &self.queue_name),
            ("mapping_workgroup", &self.mapping_workgroup),
            ("mapping_queue_id", &self.mapping_queue_id),
            ("case_skills", &self.case_skills),
            ("push_topic", &self.push_topic),
        ]
    }
}

/// How the ICWS client receives messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CicMessaging {
    /// Server-sent events when the server offers them, else short polling.
    #[default]
    Auto,
    /// Server-sent events only.
    Sse,
    /// Short polling of `GET /messaging/messages` only.
    Poll,
}

/// `[cic]`: the CIC server(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CicConfig {
    /// CIC servers, primary first, then backup(s): each `"host"`, `"host:port"` or a URL
    /// (`https://host:8019`). Default empty: not configured yet (the `/loginIc` page sets it).
    pub servers: Vec<String>,
    /// The ICWS `applicationName` sent at connect. Default `"sors"`.
    pub application_name: String,
    /// `"auto"` (default), `"sse"` or `"poll"`.
    pub messaging: CicMessaging,
    /// Short-polling interval in milliseconds (100 to 60000). Default 1000.
    pub poll_interval_ms: u64,
    /// Timeout of one ICWS request, in seconds. Default 30.
    pub request_timeout_secs: u64,
    /// Proxy for CIC traffic; like `salesforce.proxy`. Not set by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

impl Default for CicConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            application_name: "sors".into(),
            messaging: CicMessaging::Auto,
            poll_interval_ms: 1000,
            request_timeout_secs: 30,
            proxy: None,
        }
    }
}

/// `[routing]`: the router's behaviour (routing.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Disconnect the case's live interactions when an agent replies. Default true.
    pub auto_disconnect_on_reply: bool,
    /// After a CIC switchover, re-route interactions that were lost. Default true.
    pub reroute_lost_on_switchover: bool,
    /// Handler notifications (rows of different cases) waiting for CIC at once, and as many
    /// more claimed ahead; 1 to 1000. Default 32.
    pub max_in_flight: u32,
    /// Seconds to wait for the handler's result and the interaction. Default 30.
    pub route_timeout_secs: u64,
    /// Attempts before a row ends `Failed`, at least 1. Default 5.
    pub max_attempts: u32,
    /// Seconds between attempts (grows with each attempt). Default 5.
    pub retry_backoff_secs: u64,
    /// Seconds between sweeps for missed `New` rows, at least 1. Default 60.
    pub sweep_interval_secs: u64,
    /// Age in seconds a `New` row must reach before the sweep takes it. Default 120.
    pub sweep_grace_secs: u64,
    /// Milliseconds to gather ready rows into one bookkeeping batch, 0 to 10000. Default 50.
    pub batch_window_ms: u64,
    /// Seconds between reconciliations of Salesforce with CIC (cases that should have a live
    /// interaction and have none are re-routed; interactions of deleted or closed cases are
    /// disconnected), 0 to turn them off, else 10 to 86400. The first runs at start-up.
    /// Default 300.
    pub reconcile_interval_secs: u64,
    /// Reconciliation looks at open cases created within this many days (and at the case of
    /// every live interaction, however old), 1 to 365. Default 7.
    pub reconcile_lookback_days: u64,
}

/// The router's own defaults are `sors_core::router::Settings::default()`, defined there once;
/// the runtime's (sweep, batching) are defined here.
impl Default for RoutingConfig {
    fn default() -> Self {
        let s = sors_core::router::Settings::default();
        let secs = |d: chrono::TimeDelta| u64::try_from(d.num_seconds()).unwrap_or(0);
        Self {
            auto_disconnect_on_reply: s.auto_disconnect_on_reply,
            reroute_lost_on_switchover: s.reroute_lost_on_switchover,
            max_in_flight: u32::try_from(s.max_in_flight).unwrap_or(u32::MAX),
            route_timeout_secs: secs(s.route_timeout),
            max_attempts: s.max_attempts,
            retry_backoff_secs: secs(s.retry_backoff),
            sweep_interval_secs: 60,
            sweep_grace_secs: 120,
            batch_window_ms: 50,
            reconcile_interval_secs: s.reconcile_interval.map_or(0, secs),
            reconcile_lookback_days: u64::try_from(s.reconcile_lookback.num_days()).unwrap_or(0),
        }
    }
}

/// `[http]`: the heartbeat / status / login port (the admin pages are served there too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on. Default `127.0.0.1:3000`. An address other than the
    /// loopback (`127.0.0.1`, `::1`) needs `tls_cert` and `tls_key`, or
    /// `allow_plain_http_on_network = true`.
    pub listen: String,
    /// Origins allowed to read the status endpoints from a browser (the dashboard): `"*"`,
    /// `"null"` (a dashboard opened from a file) or `scheme://host[:port]`. Default `["*"]`.
    pub cors_origins: Vec<String>,
    /// PEM file with the certificate chain (server certificate first) for HTTPS on the status
    /// port; relative paths are relative to the tenant directory. Set with `tls_key`. Not set
    /// by default: plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    /// PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1); readable by the
    /// service user only. Not set by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
    /// Serve plain HTTP on an address other than the loopback (admin passwords and the login
    /// pages would cross the network unencrypted: only behind a TLS-terminating proxy on the
    /// same host or network segment). Default false.
    pub allow_plain_http_on_network: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3000".into(),
            cors_origins: vec!["*".into()],
            tls_cert: None,
            tls_key: None,
            allow_plain_http_on_network: false,
        }
    }
}

impl HttpConfig {
    /// The listen address; [`Config::load`] has checked that it parses.
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }

    /// Whether HTTPS is configured (both `tls_cert` and `tls_key`).
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The certificate and key paths, resolved against the tenant directory `dir`.
    pub fn tls_paths(&self, dir: &Path) -> Option<(PathBuf, PathBuf)> {
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((resolve(c), resolve(k))),
            _ => None,
        }
    }

    /// Why this listen address may not be served as configured: plain HTTP on an address
    /// other than the loopback without `allow_plain_http_on_network`. `None` when it is fine
    /// (or the address does not parse, which is reported on its own).
    pub fn plain_http_problem(&self) -> Option<String> {
        let addr = self.listen_addr().ok()?;
        if addr.ip().is_loopback() || self.tls_enabled() || self.allow_plain_http_on_network {
            return None;
        }
        Some(format!(
            "listening on {addr} (beyond this host) needs HTTPS: set tls_cert and tls_key, or allow_plain_http_on_network = true if a TLS proxy protects the port"
        ))
    }
}

/// `[logging]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Level or filter directives (`"info"`, `"debug"`, `"info,sors_icws=debug"`); `RUST_LOG`
    /// overrides it. Default `"info"`.
    pub level: String,
    /// Days of daily log files kept, 1 to 3650. Default 14.
    pub retention_days: u32,
    /// Log directory. Not set by default: `$ININ_TRACE_ROOT/<tenant>` when that variable is set,
    /// else `<tenant dir>/logs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Also send the operational events (`salesforce.*`, `icws.*`, `router.*`) to the system
    /// journal / syslog through `/dev/log`. Default false.
    pub journal: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            retention_days: 14,
            dir: None,
            journal: false,
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a key (`routing.max_in_flight`), an env var, or the file.
    pub key: String,
    /// What is wrong and what is allowed, in plain words.
    pub message: String,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why the configuration could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The tenant directory does not exist.
    #[error("tenant directory {} does not exist", path.display())]
    NoTenantDir {
        /// The directory.
        path: PathBuf,
    },
    /// The file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not TOML.
    #[error("{} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// The settings are wrong; every problem found is listed.
    #[error("{} has {} problem(s):\n{}", path.display(), problems.len(), list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem.
        problems: Vec<Problem>,
    },
    /// The settings could not be turned into TOML.
    #[error("cannot write the configuration as TOML: {0}")]
    Serialize(String),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The kind of value of a config key, to parse an environment override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Text,
    Integer,
    Boolean,
    List,
}

impl Config {
    /// Loads `<dir>/config.toml` (a missing file means all defaults), applies the
    /// `SORS_<SECTION>_<KEY>` overrides from the process environment, fills an empty tenant name
    /// with the directory's name, and validates.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        Self::load_with(dir, &ProcessEnv)
    }

    /// [`Config::load`] with the environment taken from `env`.
    pub fn load_with(dir: &Path, env: &dyn Source) -> Result<Config, ConfigError> {
        if !dir.is_dir() {
            return Err(ConfigError::NoTenantDir {
                path: dir.to_path_buf(),
            });
        }
        let path = dir.join(CONFIG_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.clone(),
                    message: e.to_string().trim_end().to_owned(),
                })?;

        let mut problems = Vec::new();
        let overridden = apply_env(&mut table, env, &mut problems);
        // Without overrides, parse the text itself so that errors carry line numbers.
        let parsed = if overridden {
            toml::Value::Table(table).try_into::<Config>()
        } else {
            toml::from_str::<Config>(&text)
        };
        let mut config = match parsed {
            Ok(config) => config,
            Err(e) => {
                let place = match e.span() {
                    Some(span) if !overridden => {
                        format!("{CONFIG_FILE} line {}", line_of(&text, span.start))
                    }
                    _ => CONFIG_FILE.to_owned(),
                };
                problems.push(Problem::new(
                    place,
                    e.message().trim_end().replace('\n', " "),
                ));
                return Err(ConfigError::Invalid { path, problems });
            }
        };
        if config.tenant.name.trim().is_empty() {
            config.tenant.name = dir_name(dir);
        }
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { path, problems })
        }
    }

    /// Saves the settings to `<dir>/config.toml` atomically (comments in an existing file are
    /// not kept).
    pub fn write(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let body =
            toml::to_string_pretty(self).map_err(|e| ConfigError::Serialize(e.to_string()))?;
        let text = format!(
            "# sors tenant settings (no secrets). Every key is described in config.example.toml.\n\n{body}"
        );
        fsutil::write_atomic(&path, text.as_bytes(), 0o644).map_err(|source| ConfigError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// Every problem with the settings (empty when they are fine).
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let name = &self.tenant.name;
        if !is_tenant_name(name) {
            p.push(Problem::new(
                "tenant.name",
                format!(
                    "{name:?} is not a usable tenant name: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
                ),
            ));
        }

        let sf = &self.salesforce;
        if let Err(why) = check_http_url(&sf.login_url) {
            p.push(Problem::new(
                "salesforce.login_url",
                format!(
                    "{why}; use https://login.salesforce.com (production), https://test.salesforce.com (sandbox) or your My Domain URL"
                ),
            ));
        }
        let generic_login = url::Url::parse(&sf.login_url).is_ok_and(|u| {
            matches!(
                u.host_str(),
                Some("login.salesforce.com" | "test.salesforce.com")
            )
        });
        if sf.auth == SalesforceAuth::ClientCredentials && generic_login {
            p.push(Problem::new(
                "salesforce.login_url",
                "auth = \"client-credentials\" needs your My Domain URL (https://example.my.salesforce.com), not login.salesforce.com or test.salesforce.com",
            ));
        }
        for (key, value) in [
            ("salesforce.api_version", &sf.api_version),
            ("salesforce.soap_api_version", &sf.soap_api_version),
        ] {
            if !is_api_version(value) {
                p.push(Problem::new(
                    key,
                    format!("{value:?} is not an API version; write it like \"62.0\""),
                ));
            }
        }
        check_proxy("salesforce.proxy", sf.proxy.as_deref(), &mut p);
        check_range(
            "salesforce.request_timeout_secs",
            sf.request_timeout_secs,
            1,
            3600,
            &mut p,
        );
        for (key, value) in sf.names.entries() {
            if !is_api_name(value) {
                p.push(Problem::new(
                    format!("salesforce.names.{key}"),
                    format!(
                        "{value:?} is not a Salesforce API name: it must start with a letter and hold only letters, digits and '_'"
                    ),
                ));
            }
        }
        if sf.names.push_topic.chars().count() > 25 {
            p.push(Problem::new(
                "salesforce.names.push_topic",
                "a PushTopic name has at most 25 characters",
            ));
        }

        let cic = &self.cic;
        for (i, server) in cic.servers.iter().enumerate() {
            if let Err(why) = check_cic_server(server) {
                p.push(Problem::new(
                    format!("cic.servers[{i}]"),
                    format!(
                        "{server:?}: {why}; write \"host\", \"host:port\" or \"https://host:8019\""
                    ),
                ));
            }
        }
        if cic.application_name.trim().is_empty() {
            p.push(Problem::new("cic.application_name", "must not be empty"));
        }
        check_range(
            "cic.poll_interval_ms",
            cic.poll_interval_ms,
            100,
            60_000,
            &mut p,
        );
        check_range(
            "cic.request_timeout_secs",
            cic.request_timeout_secs,
            1,
            3600,
            &mut p,
        );
        check_proxy("cic.proxy", cic.proxy.as_deref(), &mut p);

        let r = &self.routing;
        check_range(
            "routing.max_in_flight",
            r.max_in_flight.into(),
            1,
            1000,
            &mut p,
        );
        check_range(
            "routing.route_timeout_secs",
            r.route_timeout_secs,
            1,
            3600,
            &mut p,
        );
        check_range(
            "routing.max_attempts",
            r.max_attempts.into(),
            1,
            100,
            &mut p,
        );
        check_range(
            "routing.retry_backoff_secs",
            r.retry_backoff_secs,
            0,
            3600,
            &mut p,
        );
        check_range(
            "routing.sweep_interval_secs",
            r.sweep_interval_secs,
            1,
            86_400,
            &mut p,
        );
        check_range(
            "routing.sweep_grace_secs",
            r.sweep_grace_secs,
            0,
            86_400,
            &mut p,
        );
        check_range(
            "routing.batch_window_ms",
            r.batch_window_ms,
            0,
            10_000,
            &mut p,
        );
        if r.reconcile_interval_secs != 0 {
            check_range(
                "routing.reconcile_interval_secs",
                r.reconcile_interval_secs,
                10,
                86_400,
                &mut p,
            );
        }
        check_range(
            "routing.reconcile_lookback_days",
            r.reconcile_lookback_days,
            1,
            365,
            &mut p,
        );

        if self.http.listen_addr().is_err() {
            p.push(Problem::new(
                "http.listen",
                format!(
                    "{:?} is not an address and port; write it like \"127.0.0.1:3000\" or \"0.0.0.0:3000\"",
                    self.http.listen
                ),
            ));
        }
        if let Some(why) = self.http.plain_http_problem() {
            p.push(Problem::new("http.listen", why));
        }
        match (&self.http.tls_cert, &self.http.tls_key) {
            (Some(_), None) => p.push(Problem::new(
                "http.tls_key",
                "tls_cert is set without tls_key: set both (or neither)",
            )),
            (None, Some(_)) => p.push(Problem::new(
                "http.tls_cert",
                "tls_key is set without tls_cert: set both (or neither)",
            )),
            _ => {}
        }
        for (key, value) in [
            ("http.tls_cert", &self.http.tls_cert),
            ("http.tls_key", &self.http.tls_key),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                p.push(Problem::new(
                    key,
                    "must not be empty; leave it out for plain HTTP",
                ));
            }
        }
        for (i, origin) in self.http.cors_origins.iter().enumerate() {
            if !is_cors_origin(origin) {
                p.push(Problem::new(
                    format!("http.cors_origins[{i}]"),
                    format!(
                        "{origin:?} is not an origin; use \"*\", \"null\" or scheme://host[:port] without a path"
                    ),
                ));
            }
        }

        let log = &self.logging;
        if !is_log_filter(&log.level) {
            p.push(Problem::new(
                "logging.level",
                format!(
                    "{:?} is not a log level; use trace, debug, info, warn or error (or filter directives like \"info,sors_icws=debug\")",
                    log.level
                ),
            ));
        }
        check_range(
            "logging.retention_days",
            log.retention_days.into(),
            1,
            3650,
            &mut p,
        );
        if log.dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
            p.push(Problem::new(
                "logging.dir",
                "must not be empty; leave it out to use the default",
            ));
        }
        p
    }
}

/// Every config key (`section.key`, `salesforce.names.key`) with the environment variable
/// that overrides it, e.g. `("routing.max_in_flight", "SORS_ROUTING_MAX_IN_FLIGHT")`.
pub fn env_overrides() -> Vec<(String, String)> {
    known_keys()
        .into_iter()
        .map(|(key, _)| {
            let var = env_var_name(&key);
            (key, var)
        })
        .collect()
}

fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_uppercase())
}

fn known_keys() -> Vec<(String, Kind)> {
    let mut keys = Vec::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(Config::default()) {
        flatten("", &table, &mut keys);
    }
    keys.extend(OPTIONAL_KEYS.iter().map(|k| ((*k).to_owned(), Kind::Text)));
    keys.sort();
    keys
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, Kind)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let kind = match value {
            toml::Value::Table(inner) => {
                flatten(&key, inner, out);
                continue;
            }
            toml::Value::Integer(_) => Kind::Integer,
            toml::Value::Boolean(_) => Kind::Boolean,
            toml::Value::Array(_) => Kind::List,
            _ => Kind::Text,
        };
        out.push((key, kind));
    }
}

/// Applies every `SORS_…` override found in `env` to `table`. Returns whether any applied.
fn apply_env(table: &mut toml::Table, env: &dyn Source, problems: &mut Vec<Problem>) -> bool {
    let mut applied = false;
    for (key, kind) in known_keys() {
        let var = env_var_name(&key);
        let Some(raw) = env.var(&var) else { continue };
        let value = match kind {
            Kind::Text => Ok(toml::Value::String(raw.clone())),
            Kind::Integer => raw
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| format!("{raw:?} is not a whole number")),
            Kind::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
                "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
                _ => Err(format!("{raw:?} is not true or false")),
            },
            Kind::List => Ok(toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            )),
        };
        match value.and_then(|v| set_path(table, &key, v)) {
            Ok(()) => applied = true,
            Err(why) => problems.push(Problem::new(format!("{var} (overrides {key})"), why)),
        }
    }
    applied
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let mut segments: Vec<&str> = key.split('.').collect();
    let last = segments.pop().unwrap_or(key);
    let mut current = table;
    for segment in segments {
        let entry = current
            .entry(segment.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(format!(
                    "config.toml has `{segment}` as a value, not a section"
                ));
            }
        };
    }
    current.insert(last.to_owned(), value);
    Ok(())
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.bytes().take(at).filter(|b| *b == b'\n').count() + 1
}

fn dir_name(dir: &Path) -> String {
    let absolute = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check_range(key: &str, value: u64, min: u64, max: u64, problems: &mut Vec<Problem>) {
    if value < min || value > max {
        problems.push(Problem::new(
            key,
            format!("{value} is out of range; allowed: {min} to {max}"),
        ));
    }
}

fn check_proxy(key: &str, value: Option<&str>, problems: &mut Vec<Problem>) {
    let Some(value) = value else { return };
    let ok = url::Url::parse(value).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") && u.host().is_some()
    });
    if !ok {
        problems.push(Problem::new(
            key,
            format!(
                "{value:?} is not a proxy URL; write it like \"http://proxy.example.com:8080\" (http, https, socks5 or socks5h)"
            ),
        ));
    }
}

/// Checks that `value` is an absolute http(s) URL with a host.
fn check_http_url(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{value:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{value:?} is not an http(s) URL with a host"));
    }
    Ok(())
}

/// Checks a CIC server entry: `host`, `host:port`, `[v6]:port` or an http(s) URL.
pub fn check_cic_server(value: &str) -> Result<(), String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("empty".into());
    }
    let url = if value.contains("://") {
        value.to_owned()
    } else {
        format!("https://{value}")
    };
    let parsed = url::Url::parse(&url).map_err(|e| format!("not a host or URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".into());
    }
    if parsed.host().is_none() {
        return Err("no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold a user name or password".into());
    }
    if !matches!(parsed.path(), "" | "/" | "/icws" | "/icws/")
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err("must not hold a path (other than /icws) or query".into());
    }
    Ok(())
}

fn is_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_api_version(value: &str) -> bool {
    match value.split_once('.') {
        Some((major, minor)) => {
            !major.is_empty()
                && !minor.is_empty()
                && major.chars().all(|c| c.is_ascii_digit())
                && minor.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

fn is_api_name(value: &str) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && value.len() <= 80
}

/// A level, or filter directives in which every bare word is a level (a bare `loud` would be
/// a valid directive for a target named "loud": almost surely a mistake here).
fn is_log_filter(value: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let directives: Vec<&str> = value.split(',').map(str::trim).collect();
    !value.trim().is_empty()
        && directives.iter().all(|d| {
            d.contains('=') || d.contains('[') || LEVELS.contains(&d.to_ascii_lowercase().as_str())
        })
        && tracing_subscriber::EnvFilter::builder()
            .parse(value)
            .is_ok()
}

fn is_cors_origin(value: &str) -> bool {
    if value == "*" || value == "null" {
        return true;
    }
    url::Url::parse(value).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.origin().ascii_serialization() == value.trim_end_matches('/')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_keys_match_the_struct() {
        let mut full = Config::default();
        full.salesforce.proxy = Some("http://p:1".into());
        full.cic.proxy = Some("http://p:1".into());
        full.http.tls_cert = Some("c.pem".into());
        full.http.tls_key = Some("k.pem".into());
        full.logging.dir = Some("/x".into());
        let mut keys = Vec::new();
        if let Ok(toml::Value::Table(table)) = toml::Value::try_from(full) {
            flatten("", &table, &mut keys);
        }
        keys.sort();
        assert_eq!(keys, known_keys());
        assert!(keys.len() > 40, "{keys:?}");
    }

    #[test]
    fn env_var_names_follow_the_pattern() {
        let overrides = env_overrides();
        assert!(overrides.contains(&(
            "routing.max_in_flight".into(),
            "SORS_ROUTING_MAX_IN_FLIGHT".into()
        )));
        assert!(overrides.contains(&(
            "salesforce.names.push_topic".into(),
            "SORS_SALESFORCE_NAMES_PUSH_TOPIC".into()
        )));
        assert!(overrides.contains(&("cic.servers".into(), "SORS_CIC_SERVERS".into())));
        // No two keys share a variable.
        let mut vars: Vec<_> = overrides.iter().map(|(_, v)| v.clone()).collect();
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), overrides.len());
    }

    #[test]
    fn cic_server_forms() {
        for ok in [
            "cic1",
            "cic1.example.com:8019",
            "https://cic1:8019",
            "http://10.0.0.1:8018/icws",
            "[::1]:8019",
        ] {
            assert!(check_cic_server(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://cic1",
            "https://u:p@cic1",
            "cic1:99999",
            "https://cic1/other",
        ] {
            assert!(check_cic_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn small_checks() {
        assert!(is_api_version("62.0"));
        assert!(!is_api_version("62"));
        assert!(!is_api_version("v62.0"));
        assert!(is_api_name("ns__Object_Routing_Queue__c"));
        assert!(!is_api_name("1abc"));
        assert!(!is_api_name("Case Number"));
        assert!(is_cors_origin("https://dash.example.com"));
        assert!(is_cors_origin("http://127.0.0.1:8080"));
        assert!(!is_cors_origin("https://dash.example.com/index.html"));
        assert!(is_log_filter("info"));
        assert!(is_log_filter("WARN"));
        assert!(is_log_filter("info,sors_icws=debug"));
        assert!(!is_log_filter("loud"));
        assert!(!is_log_filter(""));
        assert!(!is_log_filter("info,sors_icws=loud"));
        assert!(is_tenant_name("acme-prod_1"));
        assert!(!is_tenant_name("../etc"));
        assert!(!is_tenant_name(""));
    }
}
