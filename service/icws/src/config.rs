//! Client configuration and server address parsing.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sors_core::proxy::{ProxyPolicy, ProxySource};
use url::Url;

use crate::error::IcwsError;

/// The ICWS HTTPS port, used when a server is given as a bare host name.
pub const DEFAULT_HTTPS_PORT: u16 = 8019;
/// The ICWS plain-HTTP port: `host:8018` means `http://host:8018`.
pub const DEFAULT_HTTP_PORT: u16 = 8018;

pub use sors_core::Secret;

/// How messages are read from the session's message queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessagingMode {
    /// Server-sent events when the server offers feature `messaging` version 2 or later,
    /// short polling otherwise.
    #[default]
    Auto,
    /// Server-sent events; falls back to polling if the server does not answer with a stream.
    Sse,
    /// Short polling every `poll_interval`.
    Poll,
}

/// Configuration of the ICWS client. Durations accept a number of seconds (`1.5`) or a string
/// with a unit (`"500ms"`, `"30s"`, `"2m"`).
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct IcwsConfig {
    /// Primary first, then backup(s). `"host"` (→ `https://host:8019`), `"host:port"`
    /// (→ `https://host:port`, or `http://` when the port is 8018), or a full
    /// `http(s)://host[:port][/prefix]` URL taken literally.
    pub servers: Vec<String>,
    pub user: String,
    pub password: Secret,
    pub application_name: String,
    pub messaging: MessagingMode,
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// Timeout of every ordinary request (not of the SSE stream).
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// First delay between two failed connect rounds; doubles up to `reconnect_backoff_max`.
    #[serde(deserialize_with = "de_duration")]
    pub reconnect_backoff_base: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub reconnect_backoff_max: Duration,
    /// How many 503 redirections one connect round follows.
    pub max_redirects: u32,
    /// How long a request made while the session is down waits for a reconnection.
    #[serde(deserialize_with = "de_duration")]
    pub session_wait: Duration,
    /// While reading by SSE, how often the session is checked with `GET …/connection`
    /// (a silent dead server would otherwise go unnoticed).
    #[serde(deserialize_with = "de_duration")]
    pub health_check_interval: Duration,
    /// Which proxy each request goes through, judged by the request's own URL (so `NO_PROXY`
    /// applies to the backup and to redirect targets as to the primary). Default: none (the
    /// wiring fills it from `[cic] proxy` and the environment).
    #[serde(skip)]
    pub proxy: ProxyPolicy,
    /// When set, the proxy policy comes from here instead of `proxy`, read at every connection
    /// round: a policy set while the client runs applies from the next (re)connection on (the
    /// HTTP pool is rebuilt when the policy changed).
    #[serde(skip)]
    pub proxy_source: Option<ProxySource>,
    /// Extra trusted root certificate(s), PEM, for CIC servers with a private or self-signed
    /// certificate (added to the built-in roots).
    pub ca_file: Option<PathBuf>,
    /// Told the kind and latency of every ICWS request (an empty slot by default; the service
    /// fills it with its histograms).
    #[serde(skip)]
    pub observer: sors_core::observe::Observer,
}

impl fmt::Debug for IcwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A proxy URL may carry credentials: ProxyPolicy's Debug never shows them.
        let proxy = &self.proxy;
        f.debug_struct("IcwsConfig")
            .field("servers", &self.servers)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("application_name", &self.application_name)
            .field("messaging", &self.messaging)
            .field("poll_interval", &self.poll_interval)
            .field("request_timeout", &self.request_timeout)
            .field("reconnect_backoff_base", &self.reconnect_backoff_base)
            .field("reconnect_backoff_max", &self.reconnect_backoff_max)
            .field("max_redirects", &self.max_redirects)
            .field("session_wait", &self.session_wait)
            .field("health_check_interval", &self.health_check_interval)
            .field("proxy", &proxy)
            .field("proxy_source", &self.proxy_source)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Default for IcwsConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            user: String::new(),
            password: Secret::default(),
            application_name: "Salesforce Object Routing Server".to_owned(),
            messaging: MessagingMode::Auto,
            poll_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            reconnect_backoff_base: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(60),
            max_redirects: 8,
            session_wait: Duration::from_secs(30),
            health_check_interval: Duration::from_secs(30),
            proxy: ProxyPolicy::default(),
            proxy_source: None,
            ca_file: None,
            observer: sors_core::observe::Observer::default(),
        }
    }
}

impl IcwsConfig {
    /// The proxy policy to build a connection pool with, and its version: `proxy_source`'s
    /// current one when set, else `proxy` (version 0, never changes).
    pub(crate) fn proxy_now(&self) -> (u64, Arc<ProxyPolicy>) {
        match &self.proxy_source {
            Some(source) => source.current(),
            None => (0, Arc::new(self.proxy.clone())),
        }
    }

    /// Parses `servers` into base URLs (always ending in `/`).
    pub(crate) fn server_urls(&self) -> Result<Vec<Url>, IcwsError> {
        if self.servers.is_empty() {
            return Err(IcwsError::Config("no CIC server configured".into()));
        }
        self.servers.iter().map(|s| parse_server(s)).collect()
    }
}

/// Turns a configured server string into a base URL ending in `/`.
pub(crate) fn parse_server(s: &str) -> Result<Url, IcwsError> {
    let s = s.trim();
    let bad = || IcwsError::Config(format!("invalid CIC server address {s:?}"));
    if s.is_empty() {
        return Err(bad());
    }
    let mut url = if s.contains("://") {
        Url::parse(s).map_err(|_| bad())?
    } else {
        let mut url = Url::parse(&format!("https://{s}")).map_err(|_| bad())?;
        match url.port() {
            None => url.set_port(Some(DEFAULT_HTTPS_PORT)).map_err(|_| bad())?,
            Some(DEFAULT_HTTP_PORT) => url.set_scheme("http").map_err(|_| bad())?,
            Some(_) => {}
        }
        url
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Resolves one `alternateHostList` entry against the server that sent it: a bare host keeps
/// that server's scheme, port and path prefix; `host:port` keeps its scheme and prefix; a full
/// URL is taken as it is.
pub(crate) fn resolve_alternate(from: &Url, alt: &str) -> Option<Url> {
    let alt = alt.trim();
    if alt.is_empty() {
        return None;
    }
    if alt.contains("://") {
        return parse_server(alt).ok();
    }
    let probe = Url::parse(&format!("{}://{alt}", from.scheme())).ok()?;
    let host = probe.host_str()?;
    let mut url = from.clone();
    url.set_host(Some(host)).ok()?;
    if let Some(port) = probe.port() {
        url.set_port(Some(port)).ok()?;
    }
    Some(url)
}

/// `host:port` of a base URL, for logs and [`crate::Status`].
pub(crate) fn display_server(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        _ => url.to_string(),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(f64),
        Text(String),
    }
    let secs = match Raw::deserialize(d)? {
        Raw::Secs(s) => s,
        Raw::Text(t) => parse_duration_secs(&t)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {t:?}")))?,
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(serde::de::Error::custom(
            "duration must be a non-negative number",
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_duration_secs(t: &str) -> Option<f64> {
    let t = t.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_gets_https_and_8019() {
        let u = parse_server("cicA").unwrap();
        assert_eq!(u.as_str(), "https://cica:8019/");
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_server("cicA:9000").unwrap().as_str(),
            "https://cica:9000/"
        );
        assert_eq!(
            parse_server("cicA:8018").unwrap().as_str(),
            "http://cica:8018/"
        );
        assert_eq!(
            parse_server("http://10.0.0.1:8018").unwrap().as_str(),
            "http://10.0.0.1:8018/"
        );
        assert_eq!(
            parse_server("https://proxy.example/apps/api/cicA")
                .unwrap()
                .as_str(),
            "https://proxy.example/apps/api/cicA/"
        );
        assert!(parse_server("ftp://x").is_err());
        assert!(parse_server("").is_err());
        assert!(parse_server("a b").is_err());
    }

    #[test]
    fn alternates_keep_scheme_and_port_when_bare() {
        let from = parse_server("http://127.0.0.1:4567").unwrap();
        assert_eq!(
            resolve_alternate(&from, "cicB").unwrap().as_str(),
            "http://cicb:4567/"
        );
        assert_eq!(
            resolve_alternate(&from, "cicB:9999").unwrap().as_str(),
            "http://cicb:9999/"
        );
        assert_eq!(
            resolve_alternate(&from, "https://cicC:1").unwrap().as_str(),
            "https://cicc:1/"
        );
        assert!(resolve_alternate(&from, " ").is_none());
    }

    #[test]
    fn secret_is_never_printed() {
        let cfg = IcwsConfig {
            password: Secret::new("hunter2"),
            proxy: ProxyPolicy::always("http://u:proxypw@proxy:3128"),
            ..IcwsConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!dbg.contains("proxypw"), "{dbg}");
        assert_eq!(format!("{}", cfg.password), "***");
    }

    #[test]
    fn deserializes_with_defaults_and_durations() {
        let cfg: IcwsConfig = serde_json::from_value(serde_json::json!({
            "servers": ["cicA", "cicB"],
            "user": "sors",
            "password": "pw",
            "messaging": "poll",
            "poll_interval": "500ms",
            "request_timeout": 10,
            "reconnect_backoff_max": "2m"
        }))
        .unwrap();
        assert_eq!(cfg.application_name, "Salesforce Object Routing Server");
        assert_eq!(cfg.messaging, MessagingMode::Poll);
        assert_eq!(cfg.poll_interval, Duration::from_millis(500));
        assert_eq!(cfg.request_timeout, Duration::from_secs(10));
        assert_eq!(cfg.reconnect_backoff_max, Duration::from_secs(120));
        assert_eq!(cfg.max_redirects, 8);
        assert_eq!(cfg.password.expose(), "pw");
        assert!(
            serde_json::from_value::<IcwsConfig>(serde_json::json!({"poll_interval": "x"}))
                .is_err()
        );
    }
}
