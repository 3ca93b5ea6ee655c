//! The admin pages against the fakes: real validation of entered credentials (wrong CIC
//! password, a standby's 503 followed, wrong Salesforce token, unreachable hosts), nothing
//! saved when it fails, routing started by a good save without a restart, and a live change of
//! the CIC login picked up by the running router. No saved secret ever appears in a page.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use sors::admin::AdminOptions;
use sors::serve::{Service, TenantOptions};
use sors::wiring::Tuning;
use sors_core::Secret;
use sors_fake_icws::{IcwsUser, SiteSpec};
use sors_tenant::{Config, CredentialStore};
use sors_testbed::{Bed, BedOptions};

const TOKEN: &str = "fedcba9876543210fedcba9876543210";
const ADMIN_PW: &str = "the admin passphrase";
const CIC_PW: &str = "cic-Secret-4711";
const CIC_ROTATED_USER: &str = "sors-rotated";
const CIC_ROTATED_PW: &str = "rotated-Secret-0815";
/// The rotated user's password after the CIC administrator changed it.
const CIC_CHANGED_PW: &str = "Changed-in-CIC-7";
const SF_PW: &str = "demo";
const SF_TOKEN: &str = "TOKEN";

fn tenant_dir() -> PathBuf {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("sors-admin-bed-{n:016x}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Page {
    status: StatusCode,
    location: String,
    body: String,
}

impl Page {
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        self.body[at..].split('"').next().unwrap().to_owned()
    }

    fn form_error(&self) -> String {
        let at = self
            .body
            .find("id=\"form-error\"")
            .unwrap_or_else(|| panic!("no form error in {}", self.body));
        let rest = &self.body[at..];
        rest[rest.find('>').unwrap() + 1..rest.find("</p>").unwrap()].to_owned()
    }
}

struct Browser {
    c: reqwest::Client,
    base: String,
    /// Every page body seen, for the leak check.
    seen: Vec<String>,
}

impl Browser {
    async fn get(&mut self, path: &str) -> Page {
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        self.page(r).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .c
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        self.page(r).await
    }

    async fn page(&mut self, r: reqwest::Response) -> Page {
        let status = r.status();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = r.text().await.unwrap();
        self.seen.push(body.clone());
        Page {
            status,
            location,
            body,
        }
    }

    async fn cic(&mut self, user: &str, password: &str, server: &str, backup: &str) -> Page {
        let csrf = self.get("/loginIc").await.csrf();
        self.post(
            "/loginIc",
            &[
                ("csrf", &csrf),
                ("user", user),
                ("password", password),
                ("server", server),
                ("backup_server", backup),
                ("status_port", "3000"),
                ("auto_disconnect", "on"),
                ("reroute_after_switchover", "on"),
            ],
        )
        .await
    }

    async fn salesforce(&mut self, url: &str, password: &str, token: &str) -> Page {
        let csrf = self.get("/loginSf").await.csrf();
        self.post(
            "/loginSf",
            &[
                ("csrf", &csrf),
                ("auth", "soap"),
                ("login_host", "my_domain"),
                ("my_domain_url", url),
                ("username", "router@sors.demo"),
                ("password", password),
                ("security_token", token),
            ],
        )
        .await
    }
}

fn credential_bytes(dir: &std::path::Path) -> Option<Vec<u8>> {
    std::fs::read(dir.join("secureData/encryptData.json")).ok()
}

/// The bed's short timings for every client the service builds.
fn tuning(bed: &Bed) -> Tuning {
    let spec = bed.spec();
    let icws = spec.icws.clone();
    let sf = spec.salesforce.clone();
    Tuning {
        options: Some(bed.options.clone()),
        icws: Some(Arc::new(move |c: &mut sors_icws::IcwsConfig| {
            c.reconnect_backoff_base = icws.reconnect_backoff_base;
            c.reconnect_backoff_max = icws.reconnect_backoff_max;
            c.request_timeout = Duration::from_secs(3);
        })),
        salesforce: Some(Arc::new(move |l: &mut sors_salesforce::LoginConfig| {
            l.streaming = sf.streaming.clone();
            l.retry = sf.retry.clone();
            l.request_timeout_ms = 3000;
        })),
    }
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_validate_save_and_start_routing_live() {
    let mut site = SiteSpec::demo();
    site.users = vec![
        IcwsUser {
            user_id: "sors".into(),
            password: CIC_PW.into(),
            display_name: "SORS".into(),
        },
        IcwsUser {
            user_id: CIC_ROTATED_USER.into(),
            password: CIC_ROTATED_PW.into(),
            display_name: "SORS rotated".into(),
        },
    ];
    let bed = Bed::start_fakes(BedOptions {
        site,
        ..BedOptions::default()
    })
    .await
    .unwrap();
    let dir = tenant_dir();
    std::fs::write(
        dir.join("config.toml"),
        "# Acme tenant: comments stay.\n[tenant]\nname = \"acme\"\n[http]\nlisten = \"127.0.0.1:0\" # the status port\n",
    )
    .unwrap();
    let cfg = Config::load(&dir).unwrap();
    let service = Service::start_tenant(
        &dir,
        &cfg,
        TenantOptions {
            tuning: tuning(&bed),
            admin: AdminOptions {
                setup_token: Some(Secret::new(TOKEN)),
                validate_timeout: Duration::from_secs(10),
                ..AdminOptions::default()
            },
        },
    )
    .await
    .unwrap();
    let shared = service.shared.clone();
    let mut b = Browser {
        c: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: service.base_url(),
        seen: Vec::new(),
    };
    assert_eq!(shared.snapshot().reasons[0].kind.as_str(), "not_configured");

    let csrf = b.get("/setup").await.csrf();
    let done = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", TOKEN),
                ("password", ADMIN_PW),
                ("password2", ADMIN_PW),
            ],
        )
        .await;
    assert_eq!(done.location, "/loginIc");

    let primary = bed.cic.primary_url();
    let backup = bed.cic.backup_url();

    // A wrong CIC password: said plainly, nothing saved.
    let wrong = b.cic("sors", "not-the-password", &primary, &backup).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong
            .form_error()
            .contains("refused the user name or password"),
        "{}",
        wrong.form_error()
    );
    assert!(
        wrong.body.contains(&format!("value=\"{primary}\"")),
        "the entered values come back"
    );
    assert!(!wrong.body.contains("not-the-password"));
    assert_eq!(credential_bytes(&dir), None, "nothing saved");
    // An unreachable server.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let unreachable = b
        .cic("sors", CIC_PW, &format!("http://{closed_addr}"), "")
        .await;
    assert_eq!(unreachable.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unreachable.form_error().contains("cannot be reached"),
        "{}",
        unreachable.form_error()
    );
    // Something that is not ICWS (the fake Salesforce answers HTTP).
    let not_icws = b.cic("sors", CIC_PW, &bed.sf.base_url(), "").await;
    assert_eq!(not_icws.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        not_icws.form_error().contains("not the CIC web services"),
        "{}",
        not_icws.form_error()
    );
    assert_eq!(credential_bytes(&dir), None, "nothing saved");

    // Only the standby named: its 503 is followed to the active server; saved.
    let standby_only = b.cic("sors", CIC_PW, &backup, "").await;
    assert_eq!(
        standby_only.status,
        StatusCode::SEE_OTHER,
        "{}",
        standby_only.body
    );
    assert!(
        standby_only.location.starts_with("/loginSf?saved=cic&via=")
            && standby_only.location.ends_with("&standby=1"),
        "the next page says the standby was passed over: {}",
        standby_only.location
    );
    let told = b.get(&standby_only.location).await;
    assert!(
        told.body.contains(r#"id="notice""#) && told.body.contains("did not take the connection"),
        "{}",
        told.body
    );
    // Then the pair, primary first.
    let pair = b.cic("sors", "", &primary, &backup).await;
    assert!(
        pair.location.starts_with("/loginSf?saved=cic&via=") && !pair.location.contains("standby"),
        "an empty password keeps the saved one, and the primary took the connection: {} {}",
        pair.location,
        pair.body
    );
    let saved = CredentialStore::open(&dir).unwrap().load().unwrap();
    assert_eq!(saved.cic.as_ref().unwrap().password.expose(), CIC_PW);
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        text.starts_with("# Acme tenant: comments stay.\n"),
        "{text}"
    );
    assert!(
        text.contains("listen = \"127.0.0.1:3000\" # the status port"),
        "{text}"
    );
    let cfg = Config::load(&dir).unwrap();
    assert_eq!(cfg.cic.servers, vec![primary.clone(), backup.clone()]);
    let page = b.get("/loginIc").await;
    assert!(
        page.body
            .contains("name=\"password\" value=\"\" placeholder=\"saved\""),
        "{}",
        page.body
    );
    assert_eq!(
        shared.snapshot().reasons[0].kind.as_str(),
        "not_configured",
        "Salesforce still missing"
    );

    // Salesforce: a wrong token, an unreachable host: nothing saved (byte for byte).
    let before = credential_bytes(&dir).unwrap();
    let sf_url = bed.sf.base_url();
    let wrong = b.salesforce(&sf_url, SF_PW, "WRONG").await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong.form_error().contains("INVALID_LOGIN"),
        "{}",
        wrong.form_error()
    );
    let unreachable = b
        .salesforce(&format!("http://{closed_addr}"), SF_PW, SF_TOKEN)
        .await;
    assert_eq!(unreachable.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unreachable.form_error().contains("cannot be reached"),
        "{}",
        unreachable.form_error()
    );
    let cc = {
        let csrf = b.get("/loginSf").await.csrf();
        b.post(
            "/loginSf",
            &[
                ("csrf", &csrf),
                ("auth", "client-credentials"),
                ("login_host", "production"),
                ("client_id", "sors-demo"),
                ("client_secret", "x"),
            ],
        )
        .await
    };
    assert_eq!(cc.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(cc.body.contains("id=\"error-login_host\""));
    assert_eq!(
        credential_bytes(&dir).unwrap(),
        before,
        "the credential file is unchanged"
    );
    assert_eq!(shared.snapshot().reasons[0].kind.as_str(), "not_configured");

    // The right ones: saved, and routing starts without a restart.
    let ok = b.salesforce(&sf_url, SF_PW, SF_TOKEN).await;
    assert_eq!(
        (ok.status, ok.location.as_str()),
        (StatusCode::SEE_OTHER, "/status?saved=salesforce"),
        "{}",
        ok.body
    );
    wait_until("routing to be up", Duration::from_secs(30), || {
        shared.is_ready()
    })
    .await;
    let case = bed.new_case("Support EN", "English").unwrap();
    let routed = |bed: &Bed, case: &str| {
        bed.rows_of(case)
            .iter()
            .any(|r| r["Status__c"] == "Processed")
    };
    wait_until(
        "the first case to be routed",
        Duration::from_secs(30),
        || routed(&bed, &case),
    )
    .await;
    let status = b.get("/status").await;
    assert!(
        status.body.contains("id=\"readiness\" class=\"up\""),
        "{}",
        status.body
    );
    assert!(status.body.contains("<table id=\"mappings\">"));
    assert!(
        status.body.contains("Support EN"),
        "the mapping check lists the queues"
    );
    let sf_page = b.get("/loginSf").await;
    assert!(
        sf_page
            .body
            .contains("name=\"security_token\" value=\"\" placeholder=\"saved\"")
    );

    // The CIC login changes while routing runs: the router reconnects with the new one.
    let connects = bed.cic.counters().connects;
    let sessions = shared.snapshot().cic.sessions;
    let rotated = b
        .cic(CIC_ROTATED_USER, CIC_ROTATED_PW, &primary, &backup)
        .await;
    assert_eq!(rotated.status, StatusCode::SEE_OTHER, "{}", rotated.body);
    assert!(
        rotated.location.starts_with("/status?saved=cic&via="),
        "{}",
        rotated.location
    );
    let saved = CredentialStore::open(&dir).unwrap().load().unwrap();
    assert_eq!(saved.cic.as_ref().unwrap().user, CIC_ROTATED_USER);
    wait_until("the router to reconnect", Duration::from_secs(30), || {
        shared.snapshot().cic.sessions > sessions && shared.is_ready()
    })
    .await;
    assert!(
        bed.cic.counters().connects >= connects + 2,
        "the validation and the new router connected"
    );
    let case2 = bed.new_case("Support EN", "English").unwrap();
    wait_until(
        "a case to be routed after the change",
        Duration::from_secs(30),
        || routed(&bed, &case2),
    )
    .await;

    // The CIC administrator changes that user's password: the running router's next connect
    // is refused, the status says so, and the new password entered on /loginIc mends it live.
    assert!(bed.cic.set_password(CIC_ROTATED_USER, CIC_CHANGED_PW));
    bed.cic.end_sessions();
    wait_until(
        "the router to report the refused password",
        Duration::from_secs(30),
        || {
            shared
                .snapshot()
                .reasons
                .iter()
                .any(|r| r.kind.as_str() == "cic_auth_failing")
        },
    )
    .await;
    let sessions = shared.snapshot().cic.sessions;
    let changed = b
        .cic(CIC_ROTATED_USER, CIC_CHANGED_PW, &primary, &backup)
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    wait_until(
        "the router to reconnect with the new password",
        Duration::from_secs(30),
        || shared.snapshot().cic.sessions > sessions && shared.is_ready(),
    )
    .await;
    let case3 = bed.new_case("Support EN", "English").unwrap();
    wait_until(
        "a case to be routed after the password change",
        Duration::from_secs(30),
        || routed(&bed, &case3),
    )
    .await;

    // No saved secret ever reached a page.
    for body in &b.seen {
        for secret in [
            CIC_PW,
            CIC_ROTATED_PW,
            CIC_CHANGED_PW,
            ADMIN_PW,
            TOKEN,
            "demoTOKEN",
        ] {
            assert!(!body.contains(secret), "{secret} in a page");
        }
    }
    service.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    bed.shutdown().await;
}
