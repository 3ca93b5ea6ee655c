//! Login (SOAP partner `login()` or OAuth token endpoint) and the shared token store with a
//! single-flight re-login, used by both REST and streaming.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use quick_xml::events::Event;
use reqwest::header::{PROXY_AUTHENTICATE, VIA};
use sors_core::proxy::ProxyPolicy;
use tracing::{error, info};

use crate::config::{Auth, LoginConfig, Secret};
use crate::error::{Result, SfError};
use crate::stats::StatsCell;

/// Who we are logged in as. Carries no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// `scheme://host[:port]` of the login answer's `serverUrl` / `instance_url`.
    pub instance_url: String,
    pub org_id: String,
    pub user_id: String,
}

/// A live session: the token and the generation that produced it.
pub(crate) struct Session {
    pub token: Secret,
    pub info: SessionInfo,
    /// Increases by one on every login; a caller that saw generation `g` rejected asks for a
    /// re-login "newer than g", so N concurrent failures cause one login.
    pub generation: u64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// The HTTP pool of login and REST, built for one version of the proxy policy.
#[derive(Clone)]
pub(crate) struct Http {
    pub client: reqwest::Client,
    /// The policy `client` was built with: errors name the proxy a request went through.
    pub proxy: Arc<ProxyPolicy>,
    version: u64,
}

impl Http {
    fn build(cfg: &LoginConfig) -> Result<Http> {
        let (version, proxy) = cfg.proxy_now();
        let client = crate::http_builder(cfg, &proxy)?
            .timeout(cfg.request_timeout())
            .build()
            .map_err(|e| SfError::Config(format!("HTTP client: {e}")))?;
        Ok(Http {
            client,
            proxy,
            version,
        })
    }

    /// A transport error of a request to `url`, naming the proxy it went through (never the
    /// proxy's credentials).
    pub(crate) fn transport(&self, url: &str, e: &reqwest::Error) -> SfError {
        match (SfError::transport(e), self.proxy.shown_for(url)) {
            (SfError::Transport(m), Some(p)) => {
                SfError::Transport(format!("{m} (through proxy {p})"))
            }
            (e, _) => e,
        }
    }

    /// The proxy's own refusal of the request to `url`, when `resp` is one. With `by_via`
    /// false only a 407 or a `Proxy-Authenticate` challenge counts (REST: a 401 of Salesforce
    /// through a proxy that adds no `Via` must still mean "log in again").
    pub(crate) fn refusal(
        &self,
        url: &str,
        resp: &reqwest::Response,
        by_via: bool,
    ) -> Option<SfError> {
        let h = resp.headers();
        self.proxy
            .refusal(
                url,
                resp.status().as_u16(),
                h.contains_key(PROXY_AUTHENTICATE),
                h.contains_key(VIA) || !by_via,
            )
            .map(SfError::Transport)
    }
}

pub(crate) struct TokenStore {
    cfg: Arc<LoginConfig>,
    /// Rebuilt by a login when the proxy policy changed since it was built.
    http: RwLock<Http>,
    stats: Arc<StatsCell>,
    current: RwLock<Option<Arc<Session>>>,
    /// Held while a login runs: everyone else waits for it, then reuses its result.
    gate: tokio::sync::Mutex<()>,
}

impl TokenStore {
    pub(crate) fn new(cfg: Arc<LoginConfig>, stats: Arc<StatsCell>) -> Result<Self> {
        Ok(Self {
            http: RwLock::new(Http::build(&cfg)?),
            cfg,
            stats,
            current: RwLock::new(None),
            gate: tokio::sync::Mutex::new(()),
        })
    }

    /// The HTTP pool of login and REST.
    pub(crate) fn http(&self) -> Http {
        self.http.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A new pool when the proxy policy changed since the current one was built (called by
    /// every login, so a new policy applies from the next login on).
    fn refresh_http(&self) {
        if self.cfg.proxy_now().0 == self.http().version {
            return;
        }
        match Http::build(&self.cfg) {
            Ok(http) => {
                info!(event = "salesforce.proxy.changed", proxy = ?http.proxy,
                      "Salesforce proxy settings changed: new connections use them");
                *self.http.write().unwrap_or_else(|p| p.into_inner()) = http;
            }
            Err(e) => error!(event = "salesforce.proxy.unusable", error = %e,
                             "New Salesforce proxy settings unusable; keeping the old ones"),
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<Session>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current session, logging in first when there is none yet.
    pub(crate) async fn session(&self) -> Result<Arc<Session>> {
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let _gate = self.gate.lock().await;
        if let Some(s) = self.current() {
            return Ok(s);
        }
        self.do_login(false).await
    }

    /// A fresh login, whatever the current state.
    pub(crate) async fn login(&self) -> Result<Arc<Session>> {
        let _gate = self.gate.lock().await;
        self.do_login(false).await
    }

    /// Called by whoever saw the session of generation `stale` rejected. Waits for a running
    /// login; logs in only when no session newer than `stale` exists.
    pub(crate) async fn relogin(&self, stale: u64) -> Result<Arc<Session>> {
        let _gate = self.gate.lock().await;
        if let Some(s) = self.current()
            && s.generation > stale
        {
            return Ok(s);
        }
        info!(
            event = "salesforce.relogin",
            stale_generation = stale,
            "Re-logging to Salesforce"
        );
        self.do_login(true).await
    }

    async fn do_login(&self, relogin: bool) -> Result<Arc<Session>> {
        self.refresh_http();
        let http = self.http();
        let result = match &self.cfg.auth {
            Auth::Soap { username, password } => {
                soap_login(&http, &self.cfg, username, password).await
            }
            Auth::OAuthPassword {
                client_id,
                client_secret,
                username,
                password,
            } => {
                let form = [
                    ("grant_type", "password"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose()),
                    ("username", username.as_str()),
                    ("password", password.expose()),
                ];
                oauth_login(&http, &self.cfg, &form).await
            }
            Auth::ClientCredentials {
                client_id,
                client_secret,
            } => {
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose()),
                ];
                oauth_login(&http, &self.cfg, &form).await
            }
        };
        match result {
            Ok((token, info)) => {
                let generation = self.current().map_or(0, |s| s.generation) + 1;
                let session = Arc::new(Session {
                    token,
                    info,
                    generation,
                });
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(session.clone());
                self.stats.update(|s| {
                    s.logins += 1;
                    if relogin {
                        s.relogins += 1;
                    }
                    s.last_login_at = Some(chrono::Utc::now());
                });
                info!(
                    event = "salesforce.login.ok",
                    instance_url = %session.info.instance_url,
                    org_id = %session.info.org_id,
                    user_id = %session.info.user_id,
                    generation,
                    "Logged in successfully to Salesforce"
                );
                Ok(session)
            }
            Err(e) => {
                error!(event = "salesforce.login.failed", error = %e, "Salesforce login failed");
                self.stats.error(&e);
                Err(e)
            }
        }
    }
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// `scheme://host[:port]` of a URL from a login answer.
fn origin_of(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| SfError::Login(format!("bad URL {url:?} in answer: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(SfError::Login(format!("bad URL {url:?} in answer")));
    }
    Ok(parsed.origin().ascii_serialization())
}

async fn soap_login(
    http: &Http,
    cfg: &LoginConfig,
    username: &str,
    password: &Secret,
) -> Result<(Secret, SessionInfo)> {
    let url = format!(
        "{}/services/Soap/u/{}",
        base(&cfg.login_url),
        cfg.soap_api_version
    );
    let envelope = format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
            r#"xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Header/><soapenv:Body><urn:login>"#,
            "<urn:username>{}</urn:username><urn:password>{}</urn:password>",
            "</urn:login></soapenv:Body></soapenv:Envelope>"
        ),
        quick_xml::escape::escape(username),
        quick_xml::escape::escape(password.expose())
    );
    let started = std::time::Instant::now();
    let sent = http
        .client
        .post(&url)
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "login")
        .body(envelope)
        .send()
        .await;
    cfg.observer.call("login", started.elapsed());
    let resp = sent.map_err(|e| http.transport(&url, &e))?;
    if let Some(refused) = http.refusal(&url, &resp, true) {
        return Err(refused);
    }
    let status = resp.status();
    let body = resp.text().await.map_err(|e| http.transport(&url, &e))?;
    let fields = xml_fields(&body);
    if let Some(fault) = fields.get("faultstring") {
        return Err(SfError::Login(fault.clone()));
    }
    if !status.is_success() {
        return Err(SfError::Login(format!(
            "HTTP {} from the SOAP login endpoint",
            status.as_u16()
        )));
    }
    let get = |name: &str| {
        fields
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| SfError::Login(format!("the login answer has no {name}")))
    };
    if fields.get("passwordExpired").is_some_and(|v| v == "true") {
        return Err(SfError::Login(
            "the password has expired: set a new one in Salesforce".into(),
        ));
    }
    let server_url = get("serverUrl")?;
    let token = Secret::new(get("sessionId")?);
    let info = SessionInfo {
        instance_url: origin_of(&server_url)?,
        user_id: get("userId")?,
        org_id: get("organizationId")?,
    };
    Ok((token, info))
}

/// Text content of each element, keyed by local name (first occurrence wins). Good enough for
/// the flat SOAP login answer and fault.
fn xml_fields(xml: &str) -> HashMap<String, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut out: HashMap<String, String> = HashMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Ok(Event::Text(t)) => {
                if let Ok(s) = t.decode() {
                    text.push_str(&s);
                }
            }
            Ok(Event::CData(t)) => {
                if let Ok(s) = t.decode() {
                    text.push_str(&s);
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Ok(name) = r.decode()
                    && let Some(s) = quick_xml::escape::resolve_predefined_entity(&name)
                {
                    text.push_str(s);
                }
            }
            Ok(Event::End(_)) => {
                if let Some(name) = stack.pop() {
                    if !text.is_empty() {
                        out.entry(name).or_insert_with(|| text.clone());
                    }
                    text.clear();
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    out
}

async fn oauth_login(
    http: &Http,
    cfg: &LoginConfig,
    form: &[(&str, &str)],
) -> Result<(Secret, SessionInfo)> {
    let url = format!("{}/services/oauth2/token", base(&cfg.login_url));
    let started = std::time::Instant::now();
    let sent = http.client.post(&url).form(form).send().await;
    cfg.observer.call("login", started.elapsed());
    let resp = sent.map_err(|e| http.transport(&url, &e))?;
    if let Some(refused) = http.refusal(&url, &resp, true) {
        return Err(refused);
    }
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| http.transport(&url, &e))?;
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let str_of = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    if let Some(err) = str_of("error") {
        return Err(SfError::Login(match str_of("error_description") {
            Some(d) => format!("{err}: {d}"),
            None => err,
        }));
    }
    if !status.is_success() {
        return Err(SfError::Login(format!(
            "HTTP {} from the OAuth token endpoint",
            status.as_u16()
        )));
    }
    let token = str_of("access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SfError::Login("the token answer has no access_token".into()))?;
    let instance = str_of("instance_url")
        .ok_or_else(|| SfError::Login("the token answer has no instance_url".into()))?;
    // `id` = https://login.salesforce.com/id/<orgId>/<userId>
    let (org_id, user_id) = str_of("id")
        .and_then(|id| {
            let mut parts = id.trim_end_matches('/').rsplit('/');
            let user = parts.next()?.to_owned();
            let org = parts.next()?.to_owned();
            Some((org, user))
        })
        .unwrap_or_default();
    Ok((
        Secret::new(token),
        SessionInfo {
            instance_url: origin_of(&instance)?,
            org_id,
            user_id,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_fields_reads_local_names_and_entities() {
        let xml = r#"<a:Envelope xmlns:a="x"><a:Body><loginResponse><result>
            <serverUrl>https://na1.example.com:8443/services/Soap/u/64.0/00D</serverUrl>
            <sessionId>00D!A&amp;B</sessionId><userInfo><organizationId>00Dx</organizationId>
            </userInfo></result></loginResponse></a:Body></a:Envelope>"#;
        let f = xml_fields(xml);
        assert_eq!(f.get("sessionId").map(String::as_str), Some("00D!A&B"));
        assert_eq!(f.get("organizationId").map(String::as_str), Some("00Dx"));
        assert_eq!(
            origin_of(f.get("serverUrl").map(String::as_str).unwrap_or_default()).ok(),
            Some("https://na1.example.com:8443".to_string())
        );
    }

    #[test]
    fn session_debug_hides_token() {
        let s = Session {
            token: Secret::new("00D!SECRET"),
            info: SessionInfo {
                instance_url: "https://x".into(),
                org_id: "o".into(),
                user_id: "u".into(),
            },
            generation: 1,
        };
        assert!(!format!("{s:?}").contains("SECRET"));
    }
}
