//! The operator's defaults are `sors-tenant`'s config defaults (the router's come from
//! `sors_core::router::Settings::default()`, the API versions from `sors_core::model`). The
//! client crates keep `Default` impls for library use; these tests pin that a tenant whose
//! config sets nothing gets exactly those values, so the two cannot drift apart.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use std::time::Duration;

use sors::runtime::Options;
use sors::wiring;
use sors_core::router::Settings;
use sors_icws::IcwsConfig;
use sors_salesforce::{Auth, LoginConfig, Secret};
use sors_tenant::Config;
use sors_tenant::credentials::{CicCredentials, Credentials, SalesforceCredentials};

fn creds() -> Credentials {
    Credentials {
        salesforce: Some(SalesforceCredentials {
            username: "u".into(),
            password: Secret::new("p".to_owned()),
            ..SalesforceCredentials::default()
        }),
        cic: Some(CicCredentials {
            user: "c".into(),
            password: Secret::new("q".to_owned()),
        }),
    }
}

#[test]
fn a_tenant_that_sets_nothing_gets_the_clients_defaults() {
    let cfg = Config::default();
    let (login, _) = wiring::salesforce_config(&cfg, &creds()).unwrap();
    let lib = LoginConfig::new(
        login.login_url.clone(),
        Auth::Soap {
            username: "u".into(),
            password: Secret::new("p".to_owned()),
        },
    );
    assert_eq!(login.api_version, lib.api_version);
    assert_eq!(login.soap_api_version, lib.soap_api_version);
    assert_eq!(login.request_timeout_ms, lib.request_timeout_ms);

    let icws = wiring::icws_config(&cfg, &creds()).unwrap();
    let lib = IcwsConfig::default();
    assert_eq!(icws.poll_interval, lib.poll_interval);
    assert_eq!(icws.request_timeout, lib.request_timeout);
    assert_eq!(icws.messaging, lib.messaging);
}

#[test]
fn a_tenant_that_sets_nothing_gets_the_routers_defaults() {
    let opts = Options::default();
    let s = Settings::default();
    assert_eq!(opts.settings.max_in_flight, s.max_in_flight);
    assert_eq!(opts.settings.max_attempts, s.max_attempts);
    assert_eq!(opts.settings.route_timeout, s.route_timeout);
    assert_eq!(opts.settings.retry_backoff, s.retry_backoff);
    assert_eq!(opts.settings.reconcile_interval, s.reconcile_interval);
    assert_eq!(opts.settings.reconcile_lookback, s.reconcile_lookback);
    assert_eq!(
        opts.settings.auto_disconnect_on_reply,
        s.auto_disconnect_on_reply
    );
    assert_eq!(opts.settings.field_names, s.field_names);
    assert_eq!(opts.sweep_interval, Duration::from_secs(60));
}
