//! From a tenant directory (config + credentials) to running clients and runtime options.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::TimeDelta;
use sors_core::router::{FieldNames, Settings};
use sors_icws::{IcwsConfig, MessagingMode};
use sors_salesforce::{Auth, LoginConfig, Names, Secret};
use sors_tenant::config::{CicMessaging, SalesforceAuth};
use sors_tenant::proxy::ProxySource;
use sors_tenant::{Config, Credentials, ProcessEnv, proxy_policy};

use crate::runtime::Options;

/// A change applied to a client configuration.
pub type Adjust<T> = Arc<dyn Fn(&mut T) + Send + Sync>;

/// Adjustments applied to every client configuration and runtime option built from the tenant
/// directory (the routing supervisor's, the login pages' and the mapping check's): the test
/// bed's short timings. Empty (nothing changed) in production.
#[derive(Clone, Default)]
pub struct Tuning {
    /// Replaces the runtime options of the config's `[routing]`.
    pub options: Option<Options>,
    pub icws: Option<Adjust<IcwsConfig>>,
    pub salesforce: Option<Adjust<LoginConfig>>,
}

impl fmt::Debug for Tuning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tuning")
            .field("options", &self.options)
            .field("icws", &self.icws.is_some())
            .field("salesforce", &self.salesforce.is_some())
            .finish()
    }
}

impl Tuning {
    pub fn icws(&self, mut cfg: IcwsConfig) -> IcwsConfig {
        if let Some(f) = &self.icws {
            f(&mut cfg);
        }
        cfg
    }

    pub fn salesforce(&self, mut login: LoginConfig, names: Names) -> (LoginConfig, Names) {
        if let Some(f) = &self.salesforce {
            f(&mut login);
        }
        (login, names)
    }

    pub fn options(&self, cfg: &Config) -> Options {
        self.options.clone().unwrap_or_else(|| options(cfg))
    }
}

pub fn salesforce_config(
    cfg: &Config,
    creds: &Credentials,
) -> anyhow::Result<(LoginConfig, Names)> {
    let sc = &cfg.salesforce;
    let Some(c) = &creds.salesforce else {
        bail!(
            "no Salesforce credentials in the tenant directory: run `sors credentials set-salesforce`"
        );
    };
    let password = || {
        Secret::new(format!(
            "{}{}",
            c.password.expose(),
            c.security_token.expose()
        ))
    };
    let client = || -> anyhow::Result<(String, Secret)> {
        let id = c
            .client_id
            .clone()
            .context("the auth method needs an OAuth client id")?;
        let secret = c
            .client_secret
            .as_ref()
            .context("the auth method needs an OAuth client secret")?;
        Ok((id, secret.clone()))
    };
    let auth = match sc.auth {
        SalesforceAuth::Soap => Auth::Soap {
            username: c.username.clone(),
            password: password(),
        },
        SalesforceAuth::OauthPassword => {
            let (client_id, client_secret) = client()?;
            Auth::OAuthPassword {
                client_id,
                client_secret,
                username: c.username.clone(),
                password: password(),
            }
        }
        SalesforceAuth::ClientCredentials => {
            let (client_id, client_secret) = client()?;
            Auth::ClientCredentials {
                client_id,
                client_secret,
            }
        }
    };
    let mut login = LoginConfig::new(sc.login_url.clone(), auth);
    login.api_version = sc.api_version.clone();
    login.soap_api_version = sc.soap_api_version.clone();
    login.request_timeout_ms = sc.request_timeout_secs.saturating_mul(1000);
    login.proxy = proxy_policy(sc.proxy.as_deref(), &ProcessEnv);
    // Replaceable at runtime (`ProxySource::set`): the client reads it at every login.
    login.proxy_source = Some(ProxySource::new(login.proxy.clone()));
    let n = &sc.names;
    let names = Names {
        routing_object: n.routing_object.clone(),
        row_case: n.case.clone(),
        row_case_number: n.case_number.clone(),
        row_subject: n.subject.clone(),
        row_from_address: n.from_address.clone(),
        row_from_name: n.from_name.clone(),
        row_event: n.event.clone(),
        row_queue_id: n.queue_id.clone(),
        row_workgroup: n.workgroup.clone(),
        row_skills: n.skills.clone(),
        row_status: n.status.clone(),
        row_interaction_id: n.interaction_id.clone(),
        row_attempts: n.attempts.clone(),
        row_error: n.error.clone(),
        row_processed_at: n.processed_at.clone(),
        mapping_object: n.mapping_object.clone(),
        mapping_queue_name: n.queue_name.clone(),
        mapping_workgroup: n.mapping_workgroup.clone(),
        mapping_queue_id: n.mapping_queue_id.clone(),
        case_skills: n.case_skills.clone(),
        push_topic: n.push_topic.clone(),
        ..Names::default()
    };
    Ok((login, names))
}

pub fn icws_config(cfg: &Config, creds: &Credentials) -> anyhow::Result<IcwsConfig> {
    let Some(c) = &creds.cic else {
        bail!("no CIC credentials in the tenant directory: run `sors credentials set-cic`");
    };
    let cc = &cfg.cic;
    let proxy = proxy_policy(cc.proxy.as_deref(), &ProcessEnv);
    Ok(IcwsConfig {
        servers: cc.servers.clone(),
        user: c.user.clone(),
        password: c.password.clone(),
        application_name: cc.application_name.clone(),
        messaging: match cc.messaging {
            CicMessaging::Auto => MessagingMode::Auto,
            CicMessaging::Sse => MessagingMode::Sse,
            CicMessaging::Poll => MessagingMode::Poll,
        },
        poll_interval: Duration::from_millis(cc.poll_interval_ms),
        request_timeout: Duration::from_secs(cc.request_timeout_secs),
        // Replaceable at runtime (`ProxySource::set`): read at every connection round.
        proxy_source: Some(ProxySource::new(proxy.clone())),
        proxy,
        ..IcwsConfig::default()
    })
}

pub fn options(cfg: &Config) -> Options {
    let r = &cfg.routing;
    Options {
        settings: Settings {
            auto_disconnect_on_reply: r.auto_disconnect_on_reply,
            reroute_lost_on_switchover: r.reroute_lost_on_switchover,
            max_in_flight: r.max_in_flight as usize,
            route_timeout: TimeDelta::seconds(r.route_timeout_secs as i64),
            max_attempts: r.max_attempts,
            retry_backoff: TimeDelta::seconds(r.retry_backoff_secs as i64),
            reconcile_interval: (r.reconcile_interval_secs > 0)
                .then(|| TimeDelta::seconds(r.reconcile_interval_secs as i64)),
            reconcile_lookback: TimeDelta::days(r.reconcile_lookback_days as i64),
            field_names: FieldNames {
                event: cfg.salesforce.names.event.clone(),
                case: cfg.salesforce.names.case.clone(),
                workgroup: cfg.salesforce.names.workgroup.clone(),
            },
            ..Settings::default()
        },
        sweep_interval: Duration::from_secs(r.sweep_interval_secs),
        sweep_grace: Duration::from_secs(r.sweep_grace_secs),
        batch_window: Duration::from_millis(r.batch_window_ms),
        tick: Duration::from_secs(1),
        backlog_chunk: crate::runtime::BACKLOG_CHUNK,
    }
}
