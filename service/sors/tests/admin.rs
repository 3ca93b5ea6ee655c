//! The admin pages without the fakes: setup, sessions, CSRF, the login rate limit, the
//! security headers, the not-configured status, and the TLS / plain-HTTP rules of the status
//! port. (Flows that need a CIC or Salesforce are in fakes/testbed/tests/admin.rs.)
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use sors::admin::AdminOptions;
use sors::serve::{Service, TenantOptions};
use sors_core::Secret;
use sors_tenant::Config;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const PASSWORD: &str = "a long admin passphrase";

struct Tenant {
    dir: PathBuf,
}

impl Tenant {
    fn new(label: &str) -> Tenant {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("sors-admin-{label}-{n:016x}"));
        std::fs::create_dir_all(&dir).unwrap();
        Tenant { dir }
    }

    fn config(&self, extra: &str) -> Config {
        std::fs::write(
            self.dir.join("config.toml"),
            format!(
                "# my comment\n[tenant]\nname = \"acme\"\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}"
            ),
        )
        .unwrap();
        Config::load(&self.dir).unwrap()
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn options() -> TenantOptions {
    TenantOptions {
        admin: AdminOptions {
            setup_token: Some(Secret::new(TOKEN)),
            validate_timeout: Duration::from_secs(3),
            ..AdminOptions::default()
        },
        ..TenantOptions::default()
    }
}

async fn start(t: &Tenant) -> Service {
    let cfg = t.config("");
    Service::start_tenant(&t.dir, &cfg, options())
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The value of the hidden `csrf` input.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        self.body[at..].split('"').next().unwrap().to_owned()
    }
}

async fn get(c: &reqwest::Client, base: &str, path: &str) -> Page {
    let r = c.get(format!("{base}{path}")).send().await.unwrap();
    Page {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

async fn post(c: &reqwest::Client, base: &str, path: &str, form: &[(&str, &str)]) -> Page {
    let r = c
        .post(format!("{base}{path}"))
        .form(form)
        .send()
        .await
        .unwrap();
    Page {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

fn assert_security_headers(p: &Page, what: &str) {
    let h = |n: &str| p.headers.get(n).map(|v| v.to_str().unwrap()).unwrap_or("");
    assert_eq!(
        h("content-security-policy"),
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "{what}"
    );
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(h("cache-control"), "no-store", "{what}");
}

/// Setup done; returns the signed-in client.
async fn set_up(base: &str) -> reqwest::Client {
    let c = client();
    let page = get(&c, base, "/setup").await;
    let csrf = page.csrf();
    let done = post(
        &c,
        base,
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", TOKEN),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    c
}

#[tokio::test]
async fn setup_needs_the_token_and_pages_need_a_session_and_csrf() {
    let t = Tenant::new("setup");
    let service = start(&t).await;
    let base = service.base_url();
    let c = client();

    let root = get(&c, &base, "/").await;
    assert_eq!(
        (root.status, root.location()),
        (StatusCode::SEE_OTHER, "/setup")
    );
    let setup = get(&c, &base, "/setup").await;
    assert_eq!(setup.status, StatusCode::OK);
    assert_security_headers(&setup, "/setup");
    assert!(setup.body.contains("First-run setup"));
    assert!(!setup.body.contains(TOKEN), "the token is not on the page");
    let csrf = setup.csrf();
    let cookie = setup
        .headers
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("sors_csrf="));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(cookie.contains(attr), "{cookie}");
    }

    // A wrong token, a missing or wrong CSRF token, a short or mismatched password.
    let wrong = post(
        &c,
        &base,
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", "0123456789abcdef0123456789abcdee"),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("id=\"error-token\""), "{}", wrong.body);
    assert!(wrong.body.contains("id=\"form-error\""));
    assert!(
        !wrong.body.contains(PASSWORD),
        "the password is never sent back"
    );
    let no_csrf = post(
        &c,
        &base,
        "/setup",
        &[
            ("token", TOKEN),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_security_headers(&no_csrf, "403");
    let bad_csrf = post(
        &c,
        &base,
        "/setup",
        &[
            ("csrf", "x"),
            ("token", TOKEN),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
    )
    .await;
    assert_eq!(bad_csrf.status, StatusCode::FORBIDDEN);
    let short = post(
        &c,
        &base,
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", TOKEN),
            ("password", "short"),
            ("password2", "short"),
        ],
    )
    .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.body.contains("id=\"error-password\""));
    let differ = post(
        &c,
        &base,
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", TOKEN),
            ("password", PASSWORD),
            ("password2", "a long admin passphrasE"),
        ],
    )
    .await;
    assert_eq!(differ.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(differ.body.contains("id=\"error-password2\""));
    let hash_file = t.dir.join("secureData/admin");
    assert!(!hash_file.exists(), "nothing saved yet");

    // Admin pages without a session.
    for path in ["/loginIc", "/loginSf", "/status"] {
        let p = get(&c, &base, path).await;
        assert_eq!(
            (p.status, p.location()),
            (StatusCode::SEE_OTHER, "/login"),
            "{path}"
        );
        let p = post(&c, &base, path, &[("csrf", &csrf)]).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}");
    }
    let p = post(&c, &base, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);

    // The right token: the hash is stored, a session starts.
    let ok = post(
        &c,
        &base,
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", TOKEN),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        (ok.status, ok.location()),
        (StatusCode::SEE_OTHER, "/loginIc")
    );
    let session_cookie = ok
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("sors_admin="))
        .unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Secure",
        "Max-Age=28800",
    ] {
        assert!(session_cookie.contains(attr), "{session_cookie}");
    }
    let hash = std::fs::read_to_string(&hash_file).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    let mode = std::fs::metadata(&hash_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = get(&c, &base, "/setup").await;
    assert_eq!(
        (again.status, again.location()),
        (StatusCode::SEE_OTHER, "/login")
    );

    // Signed in: the pages, their CSRF checks, the not-configured status.
    let ic = get(&c, &base, "/loginIc").await;
    assert_eq!(ic.status, StatusCode::OK);
    assert_security_headers(&ic, "/loginIc");
    for field in [
        "name=\"user\"",
        "name=\"password\"",
        "name=\"server\"",
        "name=\"backup_server\"",
        "name=\"status_port\"",
        "name=\"auto_disconnect\"",
        "name=\"reroute_after_switchover\"",
    ] {
        assert!(ic.body.contains(field), "{field}");
    }
    let session_csrf = ic.csrf();
    let sf = get(&c, &base, "/loginSf").await;
    assert_eq!(sf.status, StatusCode::OK);
    for field in [
        "name=\"auth\"",
        "name=\"username\"",
        "name=\"security_token\"",
        "name=\"login_host\"",
        "name=\"my_domain_url\"",
        "name=\"client_id\"",
        "name=\"client_secret\"",
    ] {
        assert!(sf.body.contains(field), "{field}");
    }
    for path in ["/loginIc", "/loginSf", "/logout"] {
        let p = post(&c, &base, path, &[("user", "x")]).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path} without csrf");
        let p = post(&c, &base, path, &[("csrf", &csrf), ("user", "x")]).await;
        assert_eq!(
            p.status,
            StatusCode::FORBIDDEN,
            "{path} with the pre-session token"
        );
    }
    let invalid = post(
        &c,
        &base,
        "/loginIc",
        &[
            ("csrf", &session_csrf),
            ("user", ""),
            ("password", ""),
            ("server", "ftp://x"),
            ("status_port", "0"),
        ],
    )
    .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in [
        "error-user",
        "error-password",
        "error-server",
        "error-status_port",
        "form-error",
    ] {
        assert!(
            invalid.body.contains(&format!("id=\"{id}\"")),
            "{id}: {}",
            invalid.body
        );
    }
    let status = get(&c, &base, "/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert!(
        status.body.contains("id=\"readiness\" class=\"down\""),
        "{}",
        status.body
    );
    assert!(status.body.contains("id=\"reasons\""));
    assert!(status.body.contains("id=\"mappings\""));
    assert!(status.body.contains("Not configured"));
    let hb: serde_json::Value = c
        .get(format!("{base}/heartbeat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hb["status"], "down");
    assert_eq!(hb["reasons"][0]["kind"], "not_configured");
    let css = get(&c, &base, "/admin.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );

    // Logout ends the session.
    let out = post(&c, &base, "/logout", &[("csrf", &session_csrf)]).await;
    assert_eq!(
        (out.status, out.location()),
        (StatusCode::SEE_OTHER, "/login?logged_out=1")
    );
    let login = get(&c, &base, out.location()).await;
    assert!(
        login.body.contains(r#"id="notice""#) && login.body.contains("You are logged out."),
        "{}",
        login.body
    );
    let after = get(&c, &base, "/status").await;
    assert_eq!(
        (after.status, after.location()),
        (StatusCode::SEE_OTHER, "/login")
    );
    service.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_client_address() {
    let t = Tenant::new("ratelimit");
    let service = start(&t).await;
    let base = service.base_url();
    drop(set_up(&base).await);

    let c = client();
    let page = get(&c, &base, "/login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_security_headers(&page, "/login");
    let csrf = page.csrf();
    assert_eq!(
        post(&c, &base, "/login", &[("password", PASSWORD)])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    for i in 0..5 {
        let p = post(
            &c,
            &base,
            "/login",
            &[("csrf", &csrf), ("password", "not the password")],
        )
        .await;
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "attempt {i}");
        assert!(p.body.contains("id=\"form-error\""));
    }
    let limited = post(
        &c,
        &base,
        "/login",
        &[("csrf", &csrf), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(limited.body.contains("Too many"), "a readable page");
    assert_security_headers(&limited, "429");
    service.stop().await;

    // A restart forgets the limit (memory only) and the session, not the password.
    let service = Service::start_tenant(&t.dir, &Config::load(&t.dir).unwrap(), options())
        .await
        .unwrap();
    let base = service.base_url();
    let c = client();
    let csrf = get(&c, &base, "/login").await.csrf();
    let ok = post(
        &c,
        &base,
        "/login",
        &[("csrf", &csrf), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(
        (ok.status, ok.location()),
        (StatusCode::SEE_OTHER, "/status")
    );
    assert_eq!(get(&c, &base, "/status").await.status, StatusCode::OK);
    service.stop().await;
}

#[tokio::test]
async fn plain_http_beyond_the_loopback_is_refused_unless_allowed() {
    let t = Tenant::new("plain");
    let mut cfg = t.config("");
    cfg.http.listen = "0.0.0.0:0".into();
    let err = Service::start_tenant(&t.dir, &cfg, options())
        .await
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("refusing")
            && text.contains("tls_cert")
            && text.contains("allow_plain_http_on_network"),
        "{text}"
    );
    // The same at load: sors serve never gets that far.
    std::fs::write(
        t.dir.join("config.toml"),
        "[http]\nlisten = \"0.0.0.0:3999\"\n",
    )
    .unwrap();
    let load = Config::load(&t.dir).unwrap_err().to_string();
    assert!(load.contains("http.listen"), "{load}");
    let err = sors::serve::serve(&t.dir).await.unwrap_err();
    assert!(format!("{err:#}").contains("needs HTTPS"), "{err:#}");

    cfg.http.allow_plain_http_on_network = true;
    let service = Service::start_tenant(&t.dir, &cfg, options())
        .await
        .unwrap();
    let port = service.http_addr.port();
    let p = get(&client(), &format!("http://127.0.0.1:{port}"), "/healthz").await;
    assert_eq!(p.status, StatusCode::OK);
    service.stop().await;
}

#[tokio::test]
async fn the_status_port_serves_https_with_the_configured_certificate() {
    let t = Tenant::new("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::create_dir_all(t.dir.join("secureData")).unwrap();
    std::fs::write(t.dir.join("secureData/status.crt"), cert.cert.pem()).unwrap();
    std::fs::write(
        t.dir.join("secureData/status.key"),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    let mut cfg =
        t.config("tls_cert = \"secureData/status.crt\"\ntls_key = \"secureData/status.key\"\n");
    // TLS is what makes an address beyond the loopback acceptable.
    cfg.http.listen = "0.0.0.0:0".into();
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let service = Service::start_tenant(&t.dir, &cfg, options())
        .await
        .unwrap();
    assert!(service.tls);
    let port = service.http_addr.port();
    let base = format!("https://localhost:{port}");
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .unwrap();
    let setup = get(&c, &base, "/setup").await;
    assert_eq!(setup.status, StatusCode::OK);
    let csrf = setup.csrf();
    let done = post(
        &c,
        &base,
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", TOKEN),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        (done.status, done.location()),
        (StatusCode::SEE_OTHER, "/loginIc")
    );
    assert_eq!(
        get(&c, &base, "/loginIc").await.status,
        StatusCode::OK,
        "the Secure session cookie comes back over HTTPS"
    );
    // Plain HTTP on the TLS port gets no page.
    let plain = client()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::builder()
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    service.stop().await;
}

#[tokio::test]
async fn a_bad_certificate_file_stops_the_start_with_its_path() {
    let t = Tenant::new("badtls");
    std::fs::write(t.dir.join("c.pem"), "not a certificate").unwrap();
    std::fs::write(t.dir.join("k.pem"), "not a key").unwrap();
    let cfg = t.config("tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n");
    let err = Service::start_tenant(&t.dir, &cfg, options())
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("c.pem"), "{err:#}");
}
