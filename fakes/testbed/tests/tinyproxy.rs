//! The router through a real forward proxy, Debian's tinyproxy (`sors_testbed::tinyproxy`): all
//! traffic through it, `NO_PROXY` sending one side direct, proxy authentication, a refusing and a
//! stopped proxy, and a policy changed at runtime that applies at the next reconnect.
//!
//! Every test starts its own tinyproxy on a free loopback port and reads what it carried from its
//! log. Without tinyproxy installed these tests fail (never skip): `ci/proxy-test` installs it.
//! The fakes listen on 127.0.0.1 over plain HTTP, so the proxy sees every request line.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Bed, BedOptions, wait};
use sors::serve::{Service, ServiceSpec};
use sors_core::proxy::{ProxyPolicy, ProxySource};
use sors_fake_icws::Which;
use sors_tenant::LoggingConfig;
use sors_tenant::proxy::proxy_policy;
use sors_testbed::tinyproxy::{ProxiedRequest, Tinyproxy, TinyproxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTE_SECS: u64 = 30;

/// The log directory of this test process: every test's router logs there (debug level), so a
/// test can look for a secret in every log line.
fn log_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tenant = std::env::temp_dir().join(format!(
            "sors-tinyproxy-tests-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let config = LoggingConfig {
            level: "info,sors=debug,sors_salesforce=debug,sors_icws=debug,reqwest=debug".into(),
            ..LoggingConfig::default()
        };
        let env: HashMap<String, String> = HashMap::new();
        let guard = sors_tenant::logging::init_with(
            &config,
            &tenant,
            "tinyproxy-tests",
            &env,
            &tenant.join("no-journal"),
        )
        .expect("logging");
        let dir = guard.log_dir().to_owned();
        // Lives as long as the process: the file writer runs until the end.
        Box::leak(Box::new(guard));
        dir
    })
    .clone()
}

fn logs() -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(log_dir()).into_iter().flatten().flatten() {
        all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    all
}

async fn fakes() -> Bed {
    log_dir();
    Bed::start_fakes(BedOptions::default())
        .await
        .expect("fakes")
}

/// `127.0.0.1:PORT` of the fake Salesforce, the primary and the backup CIC server.
fn addrs(bed: &Bed) -> (String, String, String) {
    (
        bed.sf.local_addr().to_string(),
        bed.cic.addr(Which::Primary).to_string(),
        bed.cic.addr(Which::Backup).to_string(),
    )
}

/// A tinyproxy that may `CONNECT` to the fakes' ports only.
fn proxy_config(bed: &Bed) -> TinyproxyConfig {
    TinyproxyConfig {
        connect_ports: vec![
            bed.sf.local_addr().port(),
            bed.cic.addr(Which::Primary).port(),
            bed.cic.addr(Which::Backup).port(),
        ],
        ..TinyproxyConfig::default()
    }
}

async fn tinyproxy(config: TinyproxyConfig) -> Tinyproxy {
    match Tinyproxy::start(config).await {
        Ok(p) => p,
        Err(e) => panic!("{e:#}"),
    }
}

/// The bed's router settings with both sides' proxy policy from `sf` and `cic`, and short
/// request timeouts.
fn spec(bed: &Bed, sf: &ProxySource, cic: &ProxySource) -> ServiceSpec {
    let mut spec = bed.spec();
    spec.salesforce.proxy_source = Some(sf.clone());
    spec.salesforce.request_timeout_ms = 5_000;
    spec.icws.proxy_source = Some(cic.clone());
    spec.icws.request_timeout = Duration::from_secs(5);
    spec.icws.session_wait = Duration::from_secs(5);
    spec
}

async fn start_router(bed: &mut Bed, spec: ServiceSpec) {
    bed.service = Some(Service::start(spec).await.expect("service"));
}

async fn wait_ready(bed: &Bed) {
    wait(bed, "the router to be up", ROUTE_SECS, |b| {
        b.service.as_ref().is_some_and(|s| s.shared.is_ready())
    })
    .await;
}

fn processed(bed: &Bed, case: &str) -> bool {
    bed.rows_of(case)
        .iter()
        .any(|r| r["Status__c"] == "Processed")
}

/// A new case, routed end to end.
async fn route_a_case(bed: &Bed) -> String {
    let case = bed.new_case("Support EN", "English").expect("case");
    wait(bed, "the case to be routed", ROUTE_SECS, |b| {
        processed(b, &case)
    })
    .await;
    case
}

fn paths(requests: &[ProxiedRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect()
}

fn has_path(requests: &[ProxiedRequest], prefix: &str) -> bool {
    requests.iter().any(|r| r.path().starts_with(prefix))
}

/// Salesforce login, REST and streaming, all seen by the proxy.
fn assert_salesforce_through(requests: &[ProxiedRequest]) {
    for (what, prefix) in [
        ("the login", "/services/Soap/u/"),
        ("REST", "/services/data/"),
        ("streaming", "/cometd/"),
    ] {
        assert!(
            has_path(requests, prefix),
            "Salesforce {what} ({prefix}) went through the proxy: {:?}",
            paths(requests)
        );
    }
}

/// The ICWS connection and session requests, seen by the proxy.
fn assert_icws_through(requests: &[ProxiedRequest]) {
    assert!(
        has_path(requests, "/icws/connection"),
        "the ICWS connection went through the proxy: {:?}",
        paths(requests)
    );
    assert!(
        requests
            .iter()
            .any(|r| r.path().starts_with("/icws/") && !r.path().starts_with("/icws/connection")),
        "ICWS session requests went through the proxy: {:?}",
        paths(requests)
    );
}

/// Waits until both sides' last errors satisfy `cond`; on timeout, fails showing them.
async fn wait_errors(bed: &Bed, what: &str, cond: impl Fn(&str, &str) -> bool) {
    let r = bed
        .wait_for(what, Duration::from_secs(ROUTE_SECS), |b| {
            let (sf, cic) = last_errors(b);
            cond(&sf, &cic)
        })
        .await;
    if let Err(e) = r {
        let (sf, cic) = last_errors(bed);
        panic!("{e}\nSalesforce: {sf}\nCIC: {cic}");
    }
}

fn last_errors(bed: &Bed) -> (String, String) {
    let v = bed.status().expect("a router");
    (
        v.salesforce.last_error.unwrap_or_default(),
        v.cic.last_error.unwrap_or_default(),
    )
}

/// The body of `GET path` on the router's status port.
async fn status_body(service: &Service, path: &str) -> String {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(service.http_addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .expect("status port answers in time")
        .expect("status port")
}

/// No secret in any status body, in the router's log lines or in the proxy's log.
async fn assert_secrets_nowhere(bed: &Bed, proxy: &Tinyproxy, secrets: &[&str]) {
    let service = bed.service.as_ref().expect("a router");
    let mut places = vec![(
        "status snapshot",
        format!("{:?}", service.shared.snapshot()),
    )];
    for path in ["/heartbeat", "/history", "/metrics", "/readyz", "/healthz"] {
        places.push((path, status_body(service, path).await));
    }
    places.push(("the router's log", logs()));
    places.push(("tinyproxy's log", proxy.log()));
    for (place, text) in &places {
        for secret in secrets {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("a proxy password shows in {place}: {line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_traffic_goes_through_the_proxy() {
    let mut bed = fakes().await;
    let proxy = tinyproxy(proxy_config(&bed)).await;
    let (sf, cic, _) = addrs(&bed);
    let url = proxy.url();
    let policy = proxy_policy(
        None,
        &[("HTTP_PROXY", url.as_str()), ("HTTPS_PROXY", url.as_str())],
    );
    let source = ProxySource::new(policy);
    let spec = spec(&bed, &source, &source);
    start_router(&mut bed, spec).await;
    wait_ready(&bed).await;
    route_a_case(&bed).await;
    assert_salesforce_through(&proxy.requests_to(&sf));
    assert_icws_through(&proxy.requests_to(&cic));
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_by_address_and_port_sends_salesforce_direct() {
    let mut bed = fakes().await;
    let proxy = tinyproxy(proxy_config(&bed)).await;
    let (sf, cic, _) = addrs(&bed);
    let url = proxy.url();
    let policy = proxy_policy(
        None,
        &[("HTTP_PROXY", url.as_str()), ("NO_PROXY", sf.as_str())],
    );
    let source = ProxySource::new(policy);
    let spec = spec(&bed, &source, &source);
    start_router(&mut bed, spec).await;
    wait_ready(&bed).await;
    route_a_case(&bed).await;
    let through = proxy.requests_to(&sf);
    assert!(
        through.is_empty(),
        "Salesforce ({sf}) goes direct: {:?}",
        paths(&through)
    );
    assert_icws_through(&proxy.requests_to(&cic));
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_by_name_sends_cic_direct() {
    let mut bed = fakes().await;
    let proxy = tinyproxy(proxy_config(&bed)).await;
    let (sf, _, _) = addrs(&bed);
    let url = proxy.url();
    // CIC by the name `localhost` (Salesforce stays 127.0.0.1): `NO_PROXY=localhost` tells
    // them apart.
    let policy = proxy_policy(
        None,
        &[
            ("http_proxy", url.as_str()),
            ("no_proxy", ".localhost,localhost"),
        ],
    );
    let source = ProxySource::new(policy);
    let mut spec = spec(&bed, &source, &source);
    spec.icws.servers = vec![
        bed.cic.primary_url().replace("127.0.0.1", "localhost"),
        bed.cic.backup_url().replace("127.0.0.1", "localhost"),
    ];
    start_router(&mut bed, spec).await;
    wait_ready(&bed).await;
    route_a_case(&bed).await;
    let to_cic: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.host_port.starts_with("localhost:") || r.path().starts_with("/icws/"))
        .collect();
    assert!(to_cic.is_empty(), "CIC goes direct: {:?}", paths(&to_cic));
    assert_salesforce_through(&proxy.requests_to(&sf));
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_authentication_wrong_then_right() {
    let mut bed = fakes().await;
    let user = "sorsproxy";
    let password = format!("right{:08x}", rand::random::<u32>());
    let wrong = format!("wrong{:08x}", rand::random::<u32>());
    let proxy = tinyproxy(TinyproxyConfig {
        basic_auth: Some((user.into(), password.clone())),
        ..proxy_config(&bed)
    })
    .await;
    let wrong_url = proxy.url_with(user, &wrong);
    let right_url = proxy.url_with(user, &password);
    let sf_source = ProxySource::new(ProxyPolicy::always(&wrong_url));
    let cic_source = ProxySource::new(ProxyPolicy::always(&wrong_url));
    let spec = spec(&bed, &sf_source, &cic_source);
    start_router(&mut bed, spec).await;
    // Written while the proxy refuses, routed once it is corrected.
    let case = bed.new_case("Support EN", "English").expect("case");

    // A clear error, naming the proxy without its credentials: Salesforce first (the router
    // logs in there before it looks at CIC), then CIC once Salesforce is corrected.
    let shown = format!("proxy {} refused the request", proxy.url());
    wait_errors(&bed, "Salesforce to report the proxy's refusal", |sf, _| {
        sf.contains(&shown)
    })
    .await;
    assert!(sf_source.set(ProxyPolicy::always(&right_url)));
    wait_errors(&bed, "CIC to report the proxy's refusal", |_, cic| {
        cic.contains(&shown)
    })
    .await;
    let v = bed.status().expect("status");
    assert!(v.salesforce.logged_in && !v.cic.connected);
    let cic_error = v.cic.last_error.clone().unwrap_or_default();
    assert!(
        cic_error.contains("proxy authentication failed"),
        "{cic_error}"
    );
    assert!(
        !format!("{:?}", v.reasons).contains("CicAuthFailing"),
        "a proxy refusal is not taken for CIC refusing the user: {:?}",
        v.reasons
    );
    wait(&bed, "the refusals in the router's log", 10, |_| {
        logs().contains(&shown)
    })
    .await;
    assert!(!logs().contains(user), "no proxy user in the log");
    assert_secrets_nowhere(&bed, &proxy, &[&password, &wrong]).await;

    assert!(cic_source.set(ProxyPolicy::always(&right_url)));
    wait_ready(&bed).await;
    wait(&bed, "the case to be routed", ROUTE_SECS, |b| {
        processed(b, &case)
    })
    .await;
    route_a_case(&bed).await;
    assert_secrets_nowhere(&bed, &proxy, &[&password, &wrong]).await;
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_is_named_and_nothing_is_lost() {
    let mut bed = fakes().await;
    let serving = proxy_config(&bed);
    // Serves some other client only: every request of ours is refused.
    let mut proxy = tinyproxy(TinyproxyConfig {
        allow: "10.9.9.9".into(),
        ..serving.clone()
    })
    .await;
    let sf_source = ProxySource::new(ProxyPolicy::always(proxy.url()));
    let cic_source = ProxySource::new(ProxyPolicy::always(proxy.url()));
    let spec = spec(&bed, &sf_source, &cic_source);
    start_router(&mut bed, spec).await;
    let shown = format!("proxy {} refused the request (HTTP 403)", proxy.url());
    wait_errors(&bed, "Salesforce to name the refusing proxy", |sf, _| {
        sf.contains(&shown)
    })
    .await;
    // Salesforce direct: the router gets on to CIC, which still goes through the proxy.
    assert!(sf_source.set(ProxyPolicy::direct()));
    wait_errors(&bed, "CIC to name the refusing proxy", |_, cic| {
        cic.contains(&shown)
    })
    .await;
    let case = bed.new_case("Support EN", "English").expect("case");
    proxy.restart(serving).await.expect("tinyproxy again");
    wait(&bed, "the case to be routed", ROUTE_SECS, |b| {
        processed(b, &case)
    })
    .await;
    assert_eq!(bed.live(&case).len(), 1, "one interaction for the case");
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_proxy_is_named_and_nothing_is_lost() {
    let mut bed = fakes().await;
    let config = proxy_config(&bed);
    let mut proxy = tinyproxy(config.clone()).await;
    let user = "sorsproxy";
    let password = format!("pw{:08x}", rand::random::<u32>());
    let proxy_with_auth = TinyproxyConfig {
        basic_auth: Some((user.into(), password.clone())),
        ..config
    };
    proxy
        .restart(proxy_with_auth.clone())
        .await
        .expect("tinyproxy with auth");
    let source = ProxySource::new(ProxyPolicy::always(proxy.url_with(user, &password)));
    let spec = spec(&bed, &source, &source);
    start_router(&mut bed, spec).await;
    wait_ready(&bed).await;
    let first = route_a_case(&bed).await;

    proxy.stop();
    let shown = format!("(through proxy {})", proxy.url());
    wait_errors(
        &bed,
        "both sides to name the proxy they cannot reach",
        |sf, cic| sf.contains(&shown) && cic.contains(&shown),
    )
    .await;
    let case = bed.new_case("Support EN", "English").expect("case");
    assert_secrets_nowhere(&bed, &proxy, &[&password]).await;

    proxy
        .restart(proxy_with_auth)
        .await
        .expect("tinyproxy again");
    wait(&bed, "the case to be routed", ROUTE_SECS, |b| {
        processed(b, &case)
    })
    .await;
    assert_eq!(bed.live(&case).len(), 1, "one interaction for the new case");
    assert_eq!(bed.live(&first).len(), 1, "the first case keeps its one");
    assert_secrets_nowhere(&bed, &proxy, &[&password]).await;
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_applies_at_the_next_reconnect() {
    let mut bed = fakes().await;
    let proxy = tinyproxy(proxy_config(&bed)).await;
    let (sf, cic, backup) = addrs(&bed);
    let sf_source = ProxySource::new(ProxyPolicy::direct());
    let cic_source = ProxySource::new(ProxyPolicy::direct());
    let spec = spec(&bed, &sf_source, &cic_source);
    start_router(&mut bed, spec).await;
    wait_ready(&bed).await;
    route_a_case(&bed).await;
    assert!(
        proxy.requests().is_empty(),
        "direct at first: {:?}",
        paths(&proxy.requests())
    );

    // A new policy at runtime (what an admin page or a reload does), then a reconnect of each
    // side: CIC loses its session, Salesforce its token.
    let mark = proxy.mark();
    assert!(sf_source.set(ProxyPolicy::always(proxy.url())));
    assert!(cic_source.set(ProxyPolicy::always(proxy.url())));
    let sessions = bed.status().map_or(0, |v| v.cic.sessions);
    bed.cic.end_sessions();
    bed.sf.expire_sessions();
    wait(
        &bed,
        "a new CIC session and a new Salesforce login",
        ROUTE_SECS,
        |b| {
            let since = proxy.requests_since(mark);
            b.status()
                .is_some_and(|v| v.cic.sessions > sessions && v.cic.connected)
                && has_path(&since, "/services/Soap/u/")
                && has_path(&since, "/cometd/")
                && has_path(&since, "/icws/connection")
        },
    )
    .await;
    route_a_case(&bed).await;
    let since = proxy.requests_since(mark);
    let to_sf: Vec<_> = since
        .iter()
        .filter(|r| r.host_port == sf)
        .cloned()
        .collect();
    let to_cic: Vec<_> = since
        .iter()
        .filter(|r| r.host_port == cic || r.host_port == backup)
        .cloned()
        .collect();
    assert_salesforce_through(&to_sf);
    assert_icws_through(&to_cic);
    bed.shutdown().await;
}
