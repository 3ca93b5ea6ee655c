#![allow(clippy::unwrap_used)] // a test: a panic is the failure report
mod common;

use std::fs;

use common::TempDir;
use sors_tenant::config::{CicMessaging, Config, ConfigError, SalesforceAuth, env_overrides};

const EXAMPLE: &str = include_str!("../config.example.toml");

fn no_env() -> [(&'static str, &'static str); 0] {
    []
}

fn problems(err: ConfigError) -> Vec<String> {
    match err {
        ConfigError::Invalid { problems, .. } => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn example_file_is_exactly_the_defaults() {
    let parsed: Config = toml::from_str(EXAMPLE).expect("config.example.toml parses");
    assert_eq!(parsed, Config::default());
}

#[test]
fn example_file_lists_every_key() {
    for (key, _) in env_overrides() {
        let last = key.rsplit('.').next().unwrap_or(&key);
        let listed = EXAMPLE
            .lines()
            .map(|l| l.trim_start_matches('#').trim_start())
            .any(|l| l.starts_with(&format!("{last} =")));
        assert!(listed, "config.example.toml does not list `{key}`");
    }
}

#[test]
fn missing_file_gives_defaults_and_the_directory_name() {
    let dir = TempDir::new("cfg-missing");
    let config = Config::load_with(dir.path(), &no_env()).expect("defaults load");
    let mut expected = Config::default();
    expected.tenant.name = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert_eq!(config, expected);
}

#[test]
fn missing_directory_is_an_error() {
    let dir = TempDir::new("cfg-nodir");
    let err = Config::load_with(&dir.path().join("nope"), &no_env()).unwrap_err();
    assert!(matches!(err, ConfigError::NoTenantDir { .. }), "{err}");
}

#[test]
fn file_values_and_env_overrides() {
    let dir = TempDir::new("cfg-env");
    fs::write(
        dir.path().join("config.toml"),
        r#"
[tenant]
name = "acme"
[salesforce]
login_url = "https://test.salesforce.com"
auth = "oauth-password"
[salesforce.names]
case = "ns__Case__c"
[cic]
servers = ["cic1"]
messaging = "poll"
[routing]
max_in_flight = 8
auto_disconnect_on_reply = false
"#,
    )
    .unwrap();
    let env = [
        ("SORS_ROUTING_MAX_IN_FLIGHT", "64"),
        (
            "SORS_CIC_SERVERS",
            "cic1.example.com, https://cic2.example.com:8019",
        ),
        ("SORS_ROUTING_REROUTE_LOST_ON_SWITCHOVER", "no"),
        ("SORS_SALESFORCE_NAMES_PUSH_TOPIC", "NsRoutingQueue"),
        ("SORS_SALESFORCE_PROXY", "http://proxy:3128"),
        ("SORS_LOGGING_DIR", "/var/log/sors/acme"),
        ("SORS_CREDENTIAL_KEY", "not a config key, ignored here"),
    ];
    let config = Config::load_with(dir.path(), &env).expect("loads");
    assert_eq!(config.tenant.name, "acme");
    assert_eq!(config.salesforce.login_url, "https://test.salesforce.com");
    assert_eq!(config.salesforce.auth, SalesforceAuth::OauthPassword);
    assert_eq!(config.salesforce.names.case, "ns__Case__c");
    assert_eq!(config.salesforce.names.push_topic, "NsRoutingQueue");
    assert_eq!(
        config.salesforce.names.routing_object,
        "Object_Routing_Queue__c"
    );
    assert_eq!(
        config.salesforce.proxy.as_deref(),
        Some("http://proxy:3128")
    );
    assert_eq!(
        config.cic.servers,
        ["cic1.example.com", "https://cic2.example.com:8019"]
    );
    assert_eq!(config.cic.messaging, CicMessaging::Poll);
    assert_eq!(config.routing.max_in_flight, 64, "env wins over the file");
    assert!(!config.routing.auto_disconnect_on_reply, "file value kept");
    assert!(!config.routing.reroute_lost_on_switchover);
    assert_eq!(config.logging.dir.as_deref(), Some("/var/log/sors/acme"));
}

#[test]
fn a_typo_is_an_error_naming_the_key() {
    let dir = TempDir::new("cfg-typo");
    fs::write(
        dir.path().join("config.toml"),
        "[routing]\nmax_inflight = 3\n",
    )
    .unwrap();
    let err = Config::load_with(dir.path(), &no_env()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("max_inflight"), "{text}");
    assert!(
        text.contains("max_in_flight"),
        "lists the allowed keys: {text}"
    );
    assert!(text.contains("line 2"), "points at the line: {text}");

    fs::write(dir.path().join("config.toml"), "[routnig]\n").unwrap();
    let text = Config::load_with(dir.path(), &no_env())
        .unwrap_err()
        .to_string();
    assert!(text.contains("routnig"), "{text}");
}

#[test]
fn a_wrong_enum_value_lists_the_allowed_ones() {
    let dir = TempDir::new("cfg-enum");
    let env = [("SORS_SALESFORCE_AUTH", "password")];
    let text = Config::load_with(dir.path(), &env).unwrap_err().to_string();
    assert!(text.contains("password"), "{text}");
    assert!(text.contains("client-credentials"), "{text}");
}

#[test]
fn client_credentials_need_my_domain() {
    let dir = TempDir::new("cfg-cc");
    let env = [("SORS_SALESFORCE_AUTH", "client-credentials")];
    let found = problems(Config::load_with(dir.path(), &env).unwrap_err());
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("salesforce.login_url") && p.contains("My Domain")),
        "{found:?}"
    );
    let env = [
        ("SORS_SALESFORCE_AUTH", "client-credentials"),
        (
            "SORS_SALESFORCE_LOGIN_URL",
            "https://acme.my.salesforce.com",
        ),
    ];
    let config = Config::load_with(dir.path(), &env).expect("My Domain is fine");
    assert_eq!(config.salesforce.auth, SalesforceAuth::ClientCredentials);
}

#[test]
fn not_toml_is_a_syntax_error() {
    let dir = TempDir::new("cfg-syntax");
    fs::write(dir.path().join("config.toml"), "[routing\n").unwrap();
    let err = Config::load_with(dir.path(), &no_env()).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = TempDir::new("cfg-many");
    fs::write(
        dir.path().join("config.toml"),
        r#"
[tenant]
name = "bad name!"
[salesforce]
login_url = "ftp://login.salesforce.com"
api_version = "62"
[salesforce.names]
case = "Case Number"
push_topic = "AVeryLongPushTopicNameThatIsTooLong"
[cic]
servers = ["cic1", "ftp://cic2"]
poll_interval_ms = 5
[routing]
max_in_flight = 0
[http]
listen = "localhost"
cors_origins = ["https://dash.example.com/index.html"]
[logging]
level = "loud"
retention_days = 0
"#,
    )
    .unwrap();
    let env = [("SORS_ROUTING_MAX_ATTEMPTS", "five")];
    let found = problems(Config::load_with(dir.path(), &env).unwrap_err());
    for key in [
        "SORS_ROUTING_MAX_ATTEMPTS",
        "tenant.name",
        "salesforce.login_url",
        "salesforce.api_version",
        "salesforce.names.case",
        "salesforce.names.push_topic",
        "cic.servers[1]",
        "cic.poll_interval_ms",
        "routing.max_in_flight",
        "http.listen",
        "http.cors_origins[0]",
        "logging.level",
        "logging.retention_days",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(key)),
            "no problem for {key} in {found:#?}"
        );
    }
    assert!(!found.iter().any(|p| p.starts_with("cic.servers[0]")));
    let range = found
        .iter()
        .find(|p| p.starts_with("routing.max_in_flight"))
        .unwrap();
    assert!(range.contains("1 to 1000"), "says what is allowed: {range}");
}

#[test]
fn write_then_load_round_trips() {
    let dir = TempDir::new("cfg-write");
    let mut config = Config::default();
    config.tenant.name = "acme".into();
    config.cic.servers = vec!["cic1".into(), "cic2:8019".into()];
    config.cic.proxy = Some("http://proxy:8080".into());
    config.routing.auto_disconnect_on_reply = false;
    config.http.listen = "0.0.0.0:3001".into();
    config.http.allow_plain_http_on_network = true;
    config.salesforce.names.case = "ns__Case__c".into();
    config.write(dir.path()).expect("writes");
    let loaded = Config::load_with(dir.path(), &no_env()).expect("loads");
    assert_eq!(loaded, config);
    // Overwriting works too and leaves no temporary file behind.
    config.routing.max_in_flight = 7;
    config.write(dir.path()).expect("overwrites");
    assert_eq!(Config::load_with(dir.path(), &no_env()).unwrap(), config);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["config.toml"]);
}

#[test]
fn listening_beyond_the_loopback_needs_tls_or_the_explicit_allowance() {
    let dir = TempDir::new("cfg-http-tls");
    let load = |text: &str| {
        fs::write(dir.path().join("config.toml"), text).unwrap();
        Config::load_with(dir.path(), &no_env())
    };
    for fine in [
        "[http]\nlisten = \"127.0.0.1:3000\"\n",
        "[http]\nlisten = \"[::1]:3000\"\n",
        "[http]\nlisten = \"0.0.0.0:3000\"\nallow_plain_http_on_network = true\n",
        "[http]\nlisten = \"0.0.0.0:3000\"\ntls_cert = \"secureData/c.pem\"\ntls_key = \"secureData/k.pem\"\n",
    ] {
        let cfg = load(fine).unwrap_or_else(|e| panic!("{fine}: {e}"));
        assert!(cfg.http.plain_http_problem().is_none(), "{fine}");
    }
    let refused = problems(load("[http]\nlisten = \"0.0.0.0:3000\"\n").unwrap_err());
    assert!(
        refused.iter().any(|p| p.starts_with("http.listen")
            && p.contains("tls_cert")
            && p.contains("allow_plain_http_on_network")),
        "{refused:?}"
    );
    let one_sided =
        problems(load("[http]\nlisten = \"0.0.0.0:3000\"\ntls_cert = \"c.pem\"\n").unwrap_err());
    assert!(
        one_sided.iter().any(|p| p.starts_with("http.tls_key")),
        "{one_sided:?}"
    );
    assert!(
        one_sided.iter().any(|p| p.starts_with("http.listen")),
        "{one_sided:?}"
    );
    let empty = problems(load("[http]\ntls_cert = \"\"\ntls_key = \"k.pem\"\n").unwrap_err());
    assert!(
        empty.iter().any(|p| p.starts_with("http.tls_cert")),
        "{empty:?}"
    );

    let cfg = load("[http]\ntls_cert = \"secureData/c.pem\"\ntls_key = \"/etc/k.pem\"\n").unwrap();
    assert!(cfg.http.tls_enabled());
    let (cert, key) = cfg.http.tls_paths(dir.path()).unwrap();
    assert_eq!(cert, dir.path().join("secureData/c.pem"));
    assert_eq!(key, std::path::PathBuf::from("/etc/k.pem"));
}
