//! The admin pages on the status port: first-run setup, admin login, the CIC (`/loginIc`) and
//! Salesforce (`/loginSf`) connection pages of the original product, and `/status` (readiness,
//! reasons and the mapping check). The contract the pages follow (routes, field names, ids,
//! status codes) is the project's pages contract; see `service/sors/README.md`.
//!
//! Invariants:
//! - **No secret in any response or log line.** Passwords, security tokens, client secrets,
//!   session ids and CSRF tokens are [`Secret`]s (they print as `***`); a saved secret is never
//!   sent back (its input stays empty, `placeholder="saved"`); error texts come from the
//!   clients' errors, which carry none, and from the sentences of [`validate`]. The one
//!   exception is deliberate: the first-run setup token is printed on the console and logged
//!   once at start, while no admin password exists (it is never stored).
//! - **Every POST is CSRF-checked**, in constant time: against the session's token, or for
//!   `/setup` and `/login` against the pre-session cookie `sors_csrf` (double submit). Without
//!   a session an admin page answers `303 /login` (GET) or `403` (POST).
//! - **No durable state besides config and credentials.** The admin password is a credential:
//!   its argon2id hash (PHC string) is kept in `secureData/admin`, mode 0600, beside the
//!   encrypted credentials (routing.md §1 allows config and credentials as the only durable
//!   state). Sessions, the setup token and the login rate limit live in memory only: a restart
//!   signs everyone out.
//! - Entered credentials are saved only after a real connection with them worked (a temporary
//!   ICWS or Salesforce client); then the routing supervisor restarts routing with them.

mod pages;
pub mod security;
pub mod settings;
pub mod validate;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use sors_core::Secret;
use sors_tenant::config::SalesforceAuth;
use sors_tenant::{CicCredentials, Config, CredentialStore, Credentials, SalesforceCredentials};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::check::{self, CheckReport};
use crate::status::Shared;
use crate::wiring::{self, Tuning};
use pages::{CicForm, Errors, MappingTable, SalesforceForm};
use security::{
    CSRF_COOKIE, LoginLimiter, MIN_PASSWORD_CHARS, PasswordFile, SESSION_COOKIE, SESSION_LIFETIME,
    Session, Sessions, same, set_cookie,
};
use settings::Setting;

/// A refusal page (boxed: a response is large).
type Refused = Box<Response>;

/// The policy of every admin page.
pub const ADMIN_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How long a validation connection may take by default.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the `/status` page waits for the mapping check's CIC session.
const CHECK_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long a mapping check is shown before it is run again.
const CHECK_MAX_AGE: Duration = Duration::from_secs(30);
/// The largest form body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

const PRODUCTION: &str = "https://login.salesforce.com";
const SANDBOX: &str = "https://test.salesforce.com";

/// How the admin pages are set up.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    /// Applied to the validation clients and the mapping check (the test bed's timings).
    pub tuning: Tuning,
    /// The first-run setup token; `None`: a random one (production). Only used while no admin
    /// password exists.
    pub setup_token: Option<Secret>,
    /// How long a validation connection may take.
    pub validate_timeout: Duration,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            tuning: Tuning::default(),
            setup_token: None,
            validate_timeout: VALIDATE_TIMEOUT,
        }
    }
}

/// The admin pages of one tenant.
pub struct Admin {
    dir: PathBuf,
    tenant: String,
    shared: Arc<Shared>,
    opts: AdminOptions,
    password: PasswordFile,
    setup_token: Mutex<Option<Secret>>,
    sessions: Sessions,
    limiter: LoginLimiter,
    /// Bumped after every save: the routing supervisor restarts routing.
    reload: watch::Sender<u64>,
    /// One save (validation included) at a time.
    saving: tokio::sync::Mutex<()>,
    check: tokio::sync::Mutex<Option<(Instant, CheckReport)>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("dir", &self.dir)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// The admin pages of tenant directory `dir`. While no admin password exists a setup token
    /// is made, printed on the console and logged.
    pub fn new(
        dir: &Path,
        tenant: &str,
        shared: Arc<Shared>,
        opts: AdminOptions,
        reload: watch::Sender<u64>,
    ) -> Result<Arc<Admin>, security::SecurityError> {
        let password = PasswordFile::new(dir);
        let token = if password.exists() {
            None
        } else {
            let token = match &opts.setup_token {
                Some(t) => t.clone(),
                None => security::setup_token()?,
            };
            crate::say!(
                "sors: tenant {tenant} has no admin password yet: open /setup on the status port and enter the setup token {}",
                token.expose()
            );
            info!(
                event = "admin.setup_token",
                tenant,
                "No admin password yet: open /setup on the status port and enter the setup token {}",
                token.expose()
            );
            Some(token)
        };
        Ok(Arc::new(Admin {
            dir: dir.to_path_buf(),
            tenant: tenant.to_owned(),
            shared,
            opts,
            password,
            setup_token: Mutex::new(token),
            sessions: Sessions::default(),
            limiter: LoginLimiter::default(),
            reload,
            saving: tokio::sync::Mutex::new(()),
            check: tokio::sync::Mutex::new(None),
        }))
    }

    /// The routes of the admin pages (merged into the status port's router).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/setup", get(setup_page).post(setup_post))
            .route("/login", get(login_page).post(login_post))
            .route("/logout", post(logout))
            .route("/loginIc", get(cic_page).post(cic_post))
            .route("/loginSf", get(salesforce_page).post(salesforce_post))
            .route("/status", get(status_page).post(no_form))
            .route("/admin.css", get(stylesheet))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(self.clone())
    }

    /// Whether an admin password is set.
    pub fn has_password(&self) -> bool {
        self.password.exists()
    }

    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = security::cookie(headers, SESSION_COOKIE)?;
        self.sessions.get(&id)
    }

    fn page(&self, status: StatusCode, markup: Markup) -> Response {
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response()
    }

    fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        let link = match status {
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => Some(("/login", "Log in")),
            _ => Some(("/", "Start page")),
        };
        self.page(status, pages::message(&self.tenant, title, text, link))
    }

    fn refuse(&self, text: &str) -> Refused {
        Box::new(self.forbidden(text))
    }

    fn refuse_internal(&self, what: &str, e: &dyn std::fmt::Display) -> Refused {
        Box::new(self.internal(what, e))
    }

    fn forbidden(&self, text: &str) -> Response {
        self.message(StatusCode::FORBIDDEN, "Not allowed", text)
    }

    fn internal(&self, what: &str, e: &dyn std::fmt::Display) -> Response {
        error!(event = "admin.save_failed", tenant = %self.tenant, what, error = %e, "An admin page could not do its work");
        self.message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            &format!("{what}: {e}"),
        )
    }

    /// A POST of a signed-in administrator: the session and its CSRF token, else a 403 page.
    fn authorize(&self, req: &Form) -> Result<Session, Refused> {
        let Some(session) = self.session(&req.headers) else {
            warn!(event = "admin.session_missing", tenant = %self.tenant, client = %req.client, path = %req.path, "A form was sent without an admin session");
            return Err(self.refuse(
                "You are not logged in (or your session has ended). Log in, then send the form again.",
            ));
        };
        if !same(&session.csrf, req.get("csrf")) {
            warn!(event = "admin.csrf_refused", tenant = %self.tenant, client = %req.client, path = %req.path, "A form's CSRF token did not match");
            return Err(self.refuse(
                "This form did not come from this service's own page (its security token does not match). Open the page again and send the form from there.",
            ));
        }
        Ok(session)
    }

    /// A POST of `/setup` or `/login`: the pre-session cookie and the form's token must match.
    fn authorize_presession(&self, req: &Form) -> Result<(), Refused> {
        let cookie = security::cookie(&req.headers, CSRF_COOKIE).unwrap_or_default();
        if cookie.is_empty() || !same(&Secret::new(cookie), req.get("csrf")) {
            warn!(event = "admin.csrf_refused", tenant = %self.tenant, client = %req.client, path = %req.path, "A form's CSRF token did not match");
            return Err(self.refuse(
                "This form did not come from this service's own page (its security token does not match). Open the page again and send the form from there.",
            ));
        }
        Ok(())
    }

    fn start_session(&self, to: &str) -> Response {
        match self.sessions.create() {
            Ok(s) => {
                let mut res = see_other(to);
                add_cookie(
                    &mut res,
                    &set_cookie(SESSION_COOKIE, s.id.expose(), SESSION_LIFETIME),
                );
                add_cookie(&mut res, &set_cookie(CSRF_COOKIE, "", Duration::ZERO));
                res
            }
            Err(e) => self.internal("starting a session", &e),
        }
    }

    fn load(&self) -> Result<(Config, CredentialStore, Credentials), Refused> {
        let cfg = Config::load(&self.dir)
            .map_err(|e| self.refuse_internal("config.toml cannot be used", &e))?;
        let store = CredentialStore::open(&self.dir)
            .map_err(|e| self.refuse_internal("the credentials cannot be opened", &e))?;
        let creds = store
            .load()
            .map_err(|e| self.refuse_internal("the credentials cannot be read", &e))?;
        Ok((cfg, store, creds))
    }

    /// Saves settings, then credentials (settings put back if the credentials fail), and has
    /// routing restarted.
    fn save(
        &self,
        store: &CredentialStore,
        old_cfg_text: Option<String>,
        settings: &[Setting],
        creds: &Credentials,
    ) -> Result<(), Refused> {
        settings::save(&self.dir, settings)
            .map_err(|e| self.refuse_internal("config.toml could not be saved", &e))?;
        if let Err(e) = store.save(creds) {
            let path = self.dir.join(sors_tenant::config::CONFIG_FILE);
            match old_cfg_text {
                Some(t) => {
                    let _ = settings::save_text(&path, &t);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            return Err(self.refuse_internal("the credentials could not be saved", &e));
        }
        self.check_cache_clear();
        if creds.cic.is_some() && creds.salesforce.is_some() {
            // Shown at once (the next page is /status); the supervisor says the same as soon
            // as it has started the new runtime.
            self.shared.runtime_starting();
        }
        self.reload.send_modify(|n| *n += 1);
        Ok(())
    }

    fn check_cache_clear(&self) {
        if let Ok(mut c) = self.check.try_lock() {
            *c = None;
        }
    }

    fn csrf_cookie(&self, headers: &HeaderMap) -> Result<(String, bool), Refused> {
        match security::cookie(headers, CSRF_COOKIE).filter(|c| c.len() == 43) {
            Some(c) => Ok((c, false)),
            None => security::random_token()
                .map(|t| (t.expose().to_owned(), true))
                .map_err(|e| self.refuse_internal("making a form token", &e)),
        }
    }

    fn presession_page(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        render: impl FnOnce(&str) -> Markup,
    ) -> Response {
        let (csrf, fresh) = match self.csrf_cookie(headers) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let mut res = self.page(status, render(&csrf));
        if fresh {
            add_cookie(&mut res, &set_cookie(CSRF_COOKIE, &csrf, SESSION_LIFETIME));
        }
        res
    }
}

/// A request's headers, client address, path, query and form fields.
struct Form {
    headers: HeaderMap,
    client: IpAddr,
    path: String,
    fields: HashMap<String, String>,
}

impl Form {
    async fn read(req: Request) -> Form {
        let client = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let path = req.uri().path().to_owned();
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .unwrap_or_default();
        let fields = url::form_urlencoded::parse(&bytes).into_owned().collect();
        Form {
            headers: parts.headers,
            client,
            path,
            fields,
        }
    }

    fn get(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    fn trimmed(&self, name: &str) -> String {
        self.get(name).trim().to_owned()
    }

    fn checked(&self, name: &str) -> bool {
        matches!(self.get(name), "on" | "true" | "1" | "yes")
    }
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

fn add_cookie(res: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, ADMIN_CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        pages::CSS,
    )
        .into_response()
}

/// A POST to a page without a form: refused like any POST without a session.
async fn no_form(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if a.session(&headers).is_none() {
        return a.forbidden(
            "You are not logged in (or your session has ended). Log in, then send the form again.",
        );
    }
    a.message(
        StatusCode::METHOD_NOT_ALLOWED,
        "Not a form",
        "This page has no form to send.",
    )
}

async fn index(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if !a.has_password() {
        see_other("/setup")
    } else if a.session(&headers).is_some() {
        see_other("/status")
    } else {
        see_other("/login")
    }
}

async fn setup_page(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if a.has_password() {
        return see_other("/login");
    }
    let tenant = a.tenant.clone();
    a.presession_page(&headers, StatusCode::OK, |csrf| {
        pages::setup(&tenant, csrf, &Errors::default())
    })
}

async fn setup_post(State(a): State<Arc<Admin>>, req: Request) -> Response {
    if a.has_password() {
        return see_other("/login");
    }
    let form = Form::read(req).await;
    if let Err(r) = a.authorize_presession(&form) {
        return *r;
    }
    if let Some(wait) = a.limiter.blocked(form.client) {
        return rate_limited(&a, &form, wait);
    }
    let mut errors = Errors::default();
    let token_ok = {
        let token = a.setup_token.lock().unwrap_or_else(|p| p.into_inner());
        token
            .as_ref()
            .is_some_and(|t| same(t, form.get("token").trim()))
    };
    if !token_ok {
        a.limiter.failed(form.client);
        warn!(event = "admin.setup_refused", tenant = %a.tenant, client = %form.client, "First-run setup with a wrong setup token");
        errors.field(
            "token",
            "This is not the setup token. Copy it from the line with \"setup token\" that the service printed (or logged) when it started.",
        );
    }
    let password = form.get("password");
    if password.chars().count() < MIN_PASSWORD_CHARS {
        errors.field(
            "password",
            format!("Use at least {MIN_PASSWORD_CHARS} characters."),
        );
    } else if password != form.get("password2") {
        errors.field("password2", "The two passwords are not the same.");
    }
    if !errors.is_empty() {
        errors.form = Some("The admin password was not set: see below.".into());
        let tenant = a.tenant.clone();
        return a.presession_page(&form.headers, StatusCode::UNPROCESSABLE_ENTITY, |csrf| {
            pages::setup(&tenant, csrf, &errors)
        });
    }
    let file = a.password.clone();
    let secret = Secret::new(password);
    let created = tokio::task::spawn_blocking(move || file.create(&secret)).await;
    match created {
        Ok(Ok(())) => {}
        Ok(Err(security::SecurityError::AlreadySet)) => return see_other("/login"),
        Ok(Err(e)) => return a.internal("the admin password could not be saved", &e),
        Err(e) => return a.internal("the admin password could not be saved", &e),
    }
    *a.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    a.limiter.succeeded(form.client);
    info!(event = "admin.setup_done", tenant = %a.tenant, client = %form.client, path = %a.password.path().display(), "Admin password set");
    a.start_session("/loginIc")
}

fn rate_limited(a: &Admin, form: &Form, wait: Duration) -> Response {
    warn!(event = "admin.login_rate_limited", tenant = %a.tenant, client = %form.client, "Too many failed logins from one address");
    let secs = wait.as_secs().max(1);
    let mut res = a.message(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!(
            "Too many wrong passwords from this address. Wait {secs} seconds, then try again."
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

async fn login_page(
    State(a): State<Arc<Admin>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if !a.has_password() {
        return see_other("/setup");
    }
    if a.session(&headers).is_some() {
        return see_other("/status");
    }
    let tenant = a.tenant.clone();
    let errors = Errors {
        notice: query_has(&uri, "logged_out").then(|| "You are logged out.".to_owned()),
        ..Errors::default()
    };
    a.presession_page(&headers, StatusCode::OK, |csrf| {
        pages::login(&tenant, csrf, &errors)
    })
}

/// Whether the request's query names `key` (e.g. `?logged_out=1`).
fn query_has(uri: &axum::http::Uri, key: &str) -> bool {
    query_value(uri, key).is_some()
}

fn query_value(uri: &axum::http::Uri, key: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The confirmation after a save, from the redirect's query (`saved`, `via`, `standby`): only
/// fixed texts and the server name the service itself connected to.
fn saved_notice(uri: &axum::http::Uri) -> Option<String> {
    let via = query_value(uri, "via").filter(|v| v.len() <= 300);
    let standby = query_has(uri, "standby");
    match query_value(uri, "saved").as_deref() {
        Some("cic") => Some(match (via, standby) {
            (Some(server), true) => format!(
                "CIC connection saved. The primary server did not take the connection (a standby answers 503), so the service connected to {server}; it moves between the two by itself."
            ),
            (Some(server), false) => format!("CIC connection saved: connected to {server}."),
            (None, _) => "CIC connection saved.".to_owned(),
        }),
        Some("salesforce") => {
            Some("Salesforce connection saved; routing restarted with it.".to_owned())
        }
        _ => None,
    }
}

async fn login_post(State(a): State<Arc<Admin>>, req: Request) -> Response {
    if !a.has_password() {
        return see_other("/setup");
    }
    let form = Form::read(req).await;
    if let Err(r) = a.authorize_presession(&form) {
        return *r;
    }
    if let Some(wait) = a.limiter.blocked(form.client) {
        return rate_limited(&a, &form, wait);
    }
    let file = a.password.clone();
    let given = form.get("password").to_owned();
    let verified = tokio::task::spawn_blocking(move || file.verify(&given)).await;
    match verified {
        Ok(Ok(true)) => {
            a.limiter.succeeded(form.client);
            info!(event = "admin.login_ok", tenant = %a.tenant, client = %form.client, "Admin logged in");
            a.start_session("/status")
        }
        Ok(Ok(false)) => {
            a.limiter.failed(form.client);
            warn!(event = "admin.login_failed", tenant = %a.tenant, client = %form.client, "Admin login with a wrong password");
            let errors = Errors {
                form: Some("That is not the admin password.".into()),
                ..Errors::default()
            };
            let tenant = a.tenant.clone();
            a.presession_page(&form.headers, StatusCode::UNPROCESSABLE_ENTITY, |csrf| {
                pages::login(&tenant, csrf, &errors)
            })
        }
        Ok(Err(e)) => a.internal("the admin password cannot be checked", &e),
        Err(e) => a.internal("the admin password cannot be checked", &e),
    }
}

async fn logout(State(a): State<Arc<Admin>>, req: Request) -> Response {
    let form = Form::read(req).await;
    let session = match a.authorize(&form) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    a.sessions.remove(&session.id);
    info!(event = "admin.logout", tenant = %a.tenant, client = %form.client, "Admin logged out");
    let mut res = see_other("/login?logged_out=1");
    add_cookie(&mut res, &set_cookie(SESSION_COOKIE, "", Duration::ZERO));
    res
}

/// `host[:port]` of a server as entered or as connected (`https://cic1:8019/` → `cic1:8019`),
/// lower-cased, for telling whether the connection went to the primary.
fn server_host(server: &str) -> String {
    let s = server.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    s.trim_end_matches('/').to_ascii_lowercase()
}

fn listen_port(cfg: &Config) -> String {
    cfg.http
        .listen_addr()
        .map(|a| a.port().to_string())
        .unwrap_or_default()
}

fn cic_form(cfg: &Config, creds: &Credentials) -> CicForm {
    CicForm {
        user: creds
            .cic
            .as_ref()
            .map(|c| c.user.clone())
            .unwrap_or_default(),
        password_saved: creds.cic.as_ref().is_some_and(|c| !c.password.is_empty()),
        server: cfg.cic.servers.first().cloned().unwrap_or_default(),
        backup_server: cfg.cic.servers.get(1).cloned().unwrap_or_default(),
        status_port: listen_port(cfg),
        auto_disconnect: cfg.routing.auto_disconnect_on_reply,
        reroute_after_switchover: cfg.routing.reroute_lost_on_switchover,
    }
}

async fn cic_page(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let Some(session) = a.session(&headers) else {
        return see_other("/login");
    };
    let (cfg, _, creds) = match a.load() {
        Ok(x) => x,
        Err(r) => return *r,
    };
    a.page(
        StatusCode::OK,
        pages::login_ic(
            &a.tenant,
            session.csrf.expose(),
            &cic_form(&cfg, &creds),
            &Errors::default(),
        ),
    )
}

async fn cic_post(State(a): State<Arc<Admin>>, req: Request) -> Response {
    let form = Form::read(req).await;
    let session = match a.authorize(&form) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let _saving = a.saving.lock().await;
    let (cfg, store, creds) = match a.load() {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let saved = creds.cic.clone();
    let entered = CicForm {
        user: form.trimmed("user"),
        password_saved: saved.as_ref().is_some_and(|c| !c.password.is_empty()),
        server: form.trimmed("server"),
        backup_server: form.trimmed("backup_server"),
        status_port: form.trimmed("status_port"),
        auto_disconnect: form.checked("auto_disconnect"),
        reroute_after_switchover: form.checked("reroute_after_switchover"),
    };
    let password = form.get("password");
    let mut errors = Errors::default();
    if entered.user.is_empty() {
        errors.field("user", "Enter the CIC user name.");
    }
    let same_user = saved.as_ref().is_some_and(|c| c.user == entered.user);
    let password = match (&saved, password.is_empty()) {
        (_, false) => Some(Secret::new(password)),
        (Some(c), true) if same_user && !c.password.is_empty() => Some(c.password.clone()),
        _ => {
            errors.field("password", "Enter the password of this CIC user.");
            None
        }
    };
    if entered.server.is_empty() {
        errors.field("server", "Enter the CIC server name.");
    } else if let Err(why) = sors_tenant::config::check_cic_server(&entered.server) {
        errors.field(
            "server",
            format!(
                "This is not a server name ({why}): write host, host:port or https://host:8019."
            ),
        );
    }
    if !entered.backup_server.is_empty()
        && let Err(why) = sors_tenant::config::check_cic_server(&entered.backup_server)
    {
        errors.field(
            "backup_server",
            format!(
                "This is not a server name ({why}): write host, host:port or https://host:8019."
            ),
        );
    }
    let port = entered.status_port.parse::<u16>().ok().filter(|p| *p > 0);
    if port.is_none() {
        errors.field("status_port", "Enter a port number from 1 to 65535.");
    }
    let render = |errors: &Errors| {
        a.page(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::login_ic(&a.tenant, session.csrf.expose(), &entered, errors),
        )
    };
    let (Some(password), Some(port), true) = (password, port, errors.is_empty()) else {
        errors.form = Some("Nothing was saved: see below.".into());
        return render(&errors);
    };
    let mut servers = vec![entered.server.clone()];
    if !entered.backup_server.is_empty() {
        servers.push(entered.backup_server.clone());
    }
    let mut new_cfg = cfg.clone();
    new_cfg.cic.servers = servers.clone();
    let new_creds = Credentials {
        cic: Some(CicCredentials {
            user: entered.user.clone(),
            password,
        }),
        ..creds.clone()
    };
    let icfg = match wiring::icws_config(&new_cfg, &new_creds) {
        Ok(c) => a.opts.tuning.icws(c),
        Err(e) => {
            errors.form = Some(format!("Nothing was saved: {e}"));
            return render(&errors);
        }
    };
    let shown = servers.join(", ");
    let connected = match validate::try_cic(icfg, a.opts.validate_timeout).await {
        Ok(server) => {
            info!(event = "admin.cic_validated", tenant = %a.tenant, user = %entered.user, server = %server, "The entered CIC credentials work");
            server
        }
        Err(problem) => {
            warn!(event = "admin.cic_validation_failed", tenant = %a.tenant, user = %entered.user, servers = %shown, problem = ?problem, "The entered CIC credentials were not saved");
            errors.form = Some(format!("Nothing was saved. {}", problem.words(&shown)));
            return render(&errors);
        }
    };
    let mut changes = Vec::new();
    if cfg.cic.servers != servers {
        changes.push(Setting::List("cic", "servers", servers));
    }
    if cfg.routing.auto_disconnect_on_reply != entered.auto_disconnect {
        changes.push(Setting::Bool(
            "routing",
            "auto_disconnect_on_reply",
            entered.auto_disconnect,
        ));
    }
    if cfg.routing.reroute_lost_on_switchover != entered.reroute_after_switchover {
        changes.push(Setting::Bool(
            "routing",
            "reroute_lost_on_switchover",
            entered.reroute_after_switchover,
        ));
    }
    if let Ok(mut listen) = cfg.http.listen_addr()
        && listen.port() != port
    {
        listen.set_port(port);
        changes.push(Setting::Text("http", "listen", listen.to_string()));
    }
    let old_text = a.config_text();
    if let Err(r) = a.save(&store, old_text, &changes, &new_creds) {
        return *r;
    }
    info!(event = "admin.cic_saved", tenant = %a.tenant, user = %entered.user, servers = %shown, "CIC settings and credentials saved; routing restarts with them");
    // Said on the next page: where it connected, and whether the primary was the standby.
    let primary = server_host(&entered.server);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("saved", "cic")
        .append_pair("via", &connected);
    if !primary.is_empty() && server_host(&connected) != primary {
        query.append_pair("standby", "1");
    }
    let query = query.finish();
    if new_creds.salesforce.is_none() {
        see_other(&format!("/loginSf?{query}"))
    } else {
        see_other(&format!("/status?{query}"))
    }
}

impl Admin {
    fn config_text(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join(sors_tenant::config::CONFIG_FILE)).ok()
    }
}

fn auth_name(auth: SalesforceAuth) -> &'static str {
    match auth {
        SalesforceAuth::Soap => "soap",
        SalesforceAuth::OauthPassword => "oauth-password",
        SalesforceAuth::ClientCredentials => "client-credentials",
    }
}

fn host_of(login_url: &str) -> (&'static str, String) {
    let url = login_url.trim_end_matches('/');
    if url == PRODUCTION {
        ("production", String::new())
    } else if url == SANDBOX {
        ("sandbox", String::new())
    } else {
        ("my_domain", url.to_owned())
    }
}

fn salesforce_form(cfg: &Config, creds: &Credentials) -> SalesforceForm {
    let sf = creds.salesforce.as_ref();
    let (host, my_domain) = host_of(&cfg.salesforce.login_url);
    SalesforceForm {
        auth: auth_name(cfg.salesforce.auth).to_owned(),
        username: sf.map(|s| s.username.clone()).unwrap_or_default(),
        password_saved: sf.is_some_and(|s| !s.password.is_empty()),
        token_saved: sf.is_some_and(|s| !s.security_token.is_empty()),
        login_host: host.to_owned(),
        my_domain_url: my_domain,
        client_id: sf.and_then(|s| s.client_id.clone()).unwrap_or_default(),
        secret_saved: sf.is_some_and(|s| s.client_secret.as_ref().is_some_and(|c| !c.is_empty())),
    }
}

async fn salesforce_page(
    State(a): State<Arc<Admin>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let Some(session) = a.session(&headers) else {
        return see_other("/login");
    };
    let (cfg, _, creds) = match a.load() {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let errors = Errors {
        notice: saved_notice(&uri),
        ..Errors::default()
    };
    a.page(
        StatusCode::OK,
        pages::login_sf(
            &a.tenant,
            session.csrf.expose(),
            &salesforce_form(&cfg, &creds),
            &errors,
        ),
    )
}

async fn salesforce_post(State(a): State<Arc<Admin>>, req: Request) -> Response {
    let form = Form::read(req).await;
    let session = match a.authorize(&form) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let _saving = a.saving.lock().await;
    let (cfg, store, creds) = match a.load() {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let saved = creds.salesforce.clone().unwrap_or_default();
    let shown = salesforce_form(&cfg, &creds);
    let entered = SalesforceForm {
        auth: form.trimmed("auth"),
        username: form.trimmed("username"),
        login_host: form.trimmed("login_host"),
        my_domain_url: form.trimmed("my_domain_url"),
        client_id: form.trimmed("client_id"),
        ..shown
    };
    let mut errors = Errors::default();
    let auth = match entered.auth.as_str() {
        "soap" => Some(SalesforceAuth::Soap),
        "client-credentials" => Some(SalesforceAuth::ClientCredentials),
        "oauth-password" => Some(SalesforceAuth::OauthPassword),
        _ => {
            errors.field("auth", "Choose how to log in.");
            None
        }
    };
    let login_url = match entered.login_host.as_str() {
        "production" => Some(PRODUCTION.to_owned()),
        "sandbox" => Some(SANDBOX.to_owned()),
        "my_domain" => match url::Url::parse(&entered.my_domain_url) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {
                Some(u.origin().ascii_serialization())
            }
            _ => {
                errors.field(
                    "my_domain_url",
                    "Enter your My Domain address, like https://yourcompany.my.salesforce.com.",
                );
                None
            }
        },
        _ => {
            errors.field("login_host", "Choose where to log in.");
            None
        }
    };
    if auth == Some(SalesforceAuth::ClientCredentials)
        && matches!(entered.login_host.as_str(), "production" | "sandbox")
    {
        errors.field(
            "login_host",
            validate::SalesforceProblem::NeedsMyDomain.words(""),
        );
    }
    let uses_user = matches!(
        auth,
        Some(SalesforceAuth::Soap | SalesforceAuth::OauthPassword)
    );
    let uses_client = matches!(
        auth,
        Some(SalesforceAuth::ClientCredentials | SalesforceAuth::OauthPassword)
    );
    let same_user = !saved.username.is_empty() && saved.username == entered.username;
    let kept = |given: &str, old: &Secret, keep: bool| -> Option<Secret> {
        if !given.is_empty() {
            Some(Secret::new(given))
        } else if keep && !old.is_empty() {
            Some(old.clone())
        } else {
            None
        }
    };
    let password = kept(form.get("password"), &saved.password, same_user);
    let token =
        kept(form.get("security_token"), &saved.security_token, same_user).unwrap_or_default();
    let no_secret = Secret::default();
    let client_secret = kept(
        form.get("client_secret"),
        saved.client_secret.as_ref().unwrap_or(&no_secret),
        saved.client_id.as_deref() == Some(entered.client_id.as_str()),
    );
    if uses_user {
        if entered.username.is_empty() {
            errors.field("username", "Enter the Salesforce user name.");
        }
        if password.is_none() {
            errors.field("password", "Enter the password of this Salesforce user.");
        }
    }
    if uses_client {
        if entered.client_id.is_empty() {
            errors.field(
                "client_id",
                "Enter the connected app's client id (consumer key).",
            );
        }
        if client_secret.is_none() {
            errors.field(
                "client_secret",
                "Enter the connected app's client secret (consumer secret).",
            );
        }
    }
    let render = |errors: &Errors| {
        a.page(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::login_sf(&a.tenant, session.csrf.expose(), &entered, errors),
        )
    };
    let (Some(auth), Some(login_url), true) = (auth, login_url, errors.is_empty()) else {
        errors.form = Some("Nothing was saved: see below.".into());
        return render(&errors);
    };
    let new_sf = SalesforceCredentials {
        username: if entered.username.is_empty() {
            saved.username.clone()
        } else {
            entered.username.clone()
        },
        password: password.unwrap_or_else(|| saved.password.clone()),
        security_token: token,
        client_id: if entered.client_id.is_empty() {
            saved.client_id.clone()
        } else {
            Some(entered.client_id.clone())
        },
        client_secret: client_secret.or(saved.client_secret.clone()),
    };
    let new_creds = Credentials {
        salesforce: Some(new_sf),
        ..creds.clone()
    };
    let mut new_cfg = cfg.clone();
    new_cfg.salesforce.login_url = login_url.clone();
    new_cfg.salesforce.auth = auth;
    let (login, names) = match wiring::salesforce_config(&new_cfg, &new_creds) {
        Ok((l, n)) => a.opts.tuning.salesforce(l, n),
        Err(e) => {
            errors.form = Some(format!("Nothing was saved: {e}"));
            return render(&errors);
        }
    };
    match validate::try_salesforce(login, names, a.opts.validate_timeout).await {
        Ok(org) => {
            info!(event = "admin.salesforce_validated", tenant = %a.tenant, login_url = %login_url, org_id = %org, "The entered Salesforce credentials work");
        }
        Err(problem) => {
            warn!(event = "admin.salesforce_validation_failed", tenant = %a.tenant, login_url = %login_url, problem = ?problem, "The entered Salesforce credentials were not saved");
            errors.form = Some(format!("Nothing was saved. {}", problem.words(&login_url)));
            return render(&errors);
        }
    }
    let mut changes = Vec::new();
    if cfg.salesforce.login_url != login_url {
        changes.push(Setting::Text("salesforce", "login_url", login_url.clone()));
    }
    if cfg.salesforce.auth != auth {
        changes.push(Setting::Text(
            "salesforce",
            "auth",
            auth_name(auth).to_owned(),
        ));
    }
    let old_text = a.config_text();
    if let Err(r) = a.save(&store, old_text, &changes, &new_creds) {
        return *r;
    }
    info!(event = "admin.salesforce_saved", tenant = %a.tenant, login_url = %login_url, "Salesforce settings and credentials saved; routing restarts with them");
    see_other("/status?saved=salesforce")
}

async fn status_page(State(a): State<Arc<Admin>>, req: Request) -> Response {
    let Some(session) = a.session(req.headers()) else {
        return see_other("/login");
    };
    let recheck = req.uri().query().is_some_and(|q| q.contains("recheck"));
    let saved = saved_notice(req.uri());
    let view = a.shared.snapshot();
    let loaded = Config::load(&a.dir).ok().and_then(|cfg| {
        let creds = CredentialStore::open(&a.dir).and_then(|s| s.load()).ok()?;
        (creds.cic.is_some() && creds.salesforce.is_some() && !cfg.cic.servers.is_empty())
            .then_some((cfg, creds))
    });
    let Some((cfg, creds)) = loaded else {
        return a.page(
            StatusCode::OK,
            pages::status(
                &a.tenant,
                session.csrf.expose(),
                &view,
                MappingTable::NotConfigured,
                saved.as_deref(),
            ),
        );
    };
    let mut cache = a.check.lock().await;
    let fresh = cache
        .as_ref()
        .is_some_and(|(at, _)| at.elapsed() < CHECK_MAX_AGE);
    if recheck || !fresh {
        let report = check::report_for(&cfg, &creds, &a.opts.tuning, CHECK_CONNECT_WAIT).await;
        *cache = Some((Instant::now(), report));
    }
    let Some((at, report)) = cache.as_ref() else {
        return a.internal("the mapping check", &"no result");
    };
    a.page(
        StatusCode::OK,
        pages::status(
            &a.tenant,
            session.csrf.expose(),
            &view,
            MappingTable::Report {
                report,
                age_secs: at.elapsed().as_secs(),
            },
            saved.as_deref(),
        ),
    )
}
