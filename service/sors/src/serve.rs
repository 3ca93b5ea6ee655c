//! `sors serve --tenant DIR`: one routing service for one tenant directory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sors_icws::{Icws, IcwsConfig};
use sors_salesforce::{LoginConfig, Names, Salesforce};
use sors_tenant::{Config, CredentialStore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::http_server;
use crate::runtime::{self, Options};
use crate::status::{Shared, http_router};
use crate::wiring;

/// A running service: the runtime and its status endpoints.
pub struct Service {
    pub shared: Arc<Shared>,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    runtime: JoinHandle<()>,
    http: JoinHandle<()>,
}

/// What a service needs, already resolved from config and credentials.
pub struct ServiceSpec {
    pub tenant: String,
    pub options: Options,
    pub salesforce: LoginConfig,
    pub names: Names,
    pub icws: IcwsConfig,
    pub http_listen: SocketAddr,
    pub cors_origins: Vec<String>,
}

impl Service {
    pub async fn start(spec: ServiceSpec) -> anyhow::Result<Service> {
        let shared = Shared::new(&spec.tenant);
        let sf = Salesforce::new(spec.salesforce, spec.names).context("Salesforce settings")?;
        let (icws, icws_events) = Icws::start(spec.icws).context("CIC settings")?;
        let listener = tokio::net::TcpListener::bind(spec.http_listen)
            .await
            .with_context(|| format!("cannot listen on {}", spec.http_listen))?;
        let http_addr = listener.local_addr()?;
        let app = http_router(shared.clone(), &spec.cors_origins);
        let shutdown = CancellationToken::new();
        let http = tokio::spawn(http_server::serve(
            listener,
            app,
            http_server::Limits::default(),
            shutdown.clone(),
        ));
        let runtime = tokio::spawn(runtime::run(
            spec.options,
            sf,
            icws,
            icws_events,
            shared.clone(),
            shutdown.clone(),
        ));
        info!(event = "router.started", tenant = %spec.tenant, http = %http_addr, "Service started");
        Ok(Service {
            shared,
            http_addr,
            shutdown,
            runtime,
            http,
        })
    }

    /// Kills the service abruptly, as a crash would: no pending write is flushed, no session is
    /// closed politely; rows in flight stay as they are in Salesforce.
    pub fn abort(self) {
        self.runtime.abort();
        self.http.abort();
    }

    /// Stops gracefully: pending writes are flushed, the PushTopic client disconnects, the CIC
    /// session is closed; rows in flight stay `Processing` for the next start.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.runtime.await;
        let _ = self.http.await;
    }

    /// Runs until a stop signal (then stops gracefully) or until the status port ends by itself
    /// (a service nobody can watch is not left running silently: it stops, and the error makes
    /// systemd restart it).
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = wait_for_signal() => {
                self.stop().await;
                Ok(())
            }
            ended = &mut self.http => {
                error!(event = "router.status_port_down", outcome = ?ended, "The status port stopped; stopping the service");
                self.shutdown.cancel();
                let _ = self.runtime.await;
                anyhow::bail!("the status port stopped unexpectedly ({ended:?})")
            }
        }
    }
}

/// Loads a tenant directory into a [`ServiceSpec`].
pub fn spec_from_tenant(dir: &Path) -> anyhow::Result<(Config, ServiceSpec)> {
    let cfg = Config::load(dir)
        .with_context(|| format!("reading {}", dir.join("config.toml").display()))?;
    let spec = spec_from_config(dir, &cfg)?;
    Ok((cfg, spec))
}

/// The [`ServiceSpec`] of an already loaded configuration (credentials read from `dir`).
pub fn spec_from_config(dir: &Path, cfg: &Config) -> anyhow::Result<ServiceSpec> {
    let creds = CredentialStore::open(dir)?.load()?;
    let (salesforce, names) = wiring::salesforce_config(cfg, &creds)?;
    let icws = wiring::icws_config(cfg, &creds)?;
    let spec = ServiceSpec {
        tenant: cfg.tenant.name.clone(),
        options: wiring::options(cfg),
        salesforce,
        names,
        icws,
        http_listen: cfg.http.listen_addr().context("[http] listen")?,
        cors_origins: cfg.http.cors_origins.clone(),
    };
    Ok(spec)
}

pub async fn serve(dir: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(dir)
        .with_context(|| format!("reading {}", dir.join("config.toml").display()))?;
    let _guard = sors_tenant::logging::init(&cfg.logging, dir, &cfg.tenant.name)?;
    let spec = spec_from_config(dir, &cfg)?;
    let service = Service::start(spec).await?;
    crate::say!(
        "sors: tenant {} serving status on http://{}/heartbeat",
        cfg.tenant.name,
        service.http_addr
    );
    service.run_until_signal().await
}

/// Ctrl-C or SIGTERM (systemd's stop).
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
