//! `sors serve --tenant DIR`: one routing service for one tenant directory.
//!
//! Two ways to start one. [`Service::start`] routes at once with a resolved [`ServiceSpec`]
//! (the test bed, the scenario runner). [`Service::start_tenant`] is `sors serve`: the status
//! port with the admin pages comes up first, whatever is configured, and a small supervisor
//! owns the routing runtime: it starts one once both credentials exist and, whenever the
//! pages save new credentials or settings, stops it gracefully and starts a new one from the
//! tenant directory as it is then. Until then the status is `down`, reason `not_configured`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sors_icws::{Icws, IcwsConfig};
use sors_salesforce::{LoginConfig, Names, Salesforce};
use sors_tenant::{Config, CredentialStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{error, info, warn};

use crate::admin::{Admin, AdminOptions};
use crate::http_server;
use crate::runtime::{self, Options};
use crate::status::{Shared, http_router};
use crate::wiring::{self, Tuning};

/// A running service: the runtime and its status endpoints.
pub struct Service {
    pub shared: Arc<Shared>,
    pub http_addr: SocketAddr,
    /// Whether the status port speaks HTTPS.
    pub tls: bool,
    /// The admin pages ([`Service::start_tenant`] only).
    pub admin: Option<Arc<Admin>>,
    shutdown: CancellationToken,
    /// The routing runtime, or the supervisor that owns it.
    runtime: JoinHandle<()>,
    http: JoinHandle<()>,
}

/// How [`Service::start_tenant`] is set up beyond the tenant directory.
#[derive(Clone, Debug, Default)]
pub struct TenantOptions {
    /// Applied to every client configuration and to the runtime options (test timings).
    pub tuning: Tuning,
    /// The admin pages' options (the validation clients get `tuning` too).
    pub admin: AdminOptions,
}

/// Why `sors serve` refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("refusing to serve the status and admin pages on {listen} over plain HTTP: {why}")]
    PlainHttpOnNetwork { listen: String, why: String },
    #[error("HTTPS on the status port: {0}")]
    Tls(#[from] http_server::TlsError),
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
            tls: false,
            admin: None,
            shutdown,
            runtime,
            http,
        })
    }

    /// `sors serve`: the status port with the admin pages on `cfg.http` (HTTPS when
    /// configured; plain HTTP beyond the loopback only when explicitly allowed), and the
    /// routing supervisor, which routes as soon as (and whenever) both credentials are saved.
    pub async fn start_tenant(
        dir: &Path,
        cfg: &Config,
        opts: TenantOptions,
    ) -> anyhow::Result<Service> {
        let listen = cfg.http.listen_addr().context("[http] listen")?;
        if let Some(why) = cfg.http.plain_http_problem() {
            return Err(StartError::PlainHttpOnNetwork {
                listen: cfg.http.listen.clone(),
                why,
            }
            .into());
        }
        let tls = match cfg.http.tls_paths(dir) {
            Some((cert, key)) => {
                Some(http_server::tls_acceptor(&cert, &key).map_err(StartError::from)?)
            }
            None => None,
        };
        let tenant = cfg.tenant.name.clone();
        let shared = Shared::new(&tenant);
        let (reload_tx, reload_rx) = watch::channel(0u64);
        let mut admin_opts = opts.admin.clone();
        admin_opts.tuning = opts.tuning.clone();
        let admin = Admin::new(dir, &tenant, shared.clone(), admin_opts, reload_tx)
            .context("the admin pages")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let http_addr = listener.local_addr()?;
        let app = http_router(shared.clone(), &cfg.http.cors_origins).merge(admin.router());
        let shutdown = CancellationToken::new();
        let is_tls = tls.is_some();
        let http = tokio::spawn(http_server::serve_with(
            listener,
            app,
            http_server::Limits::default(),
            shutdown.clone(),
            tls,
        ));
        let runtime = tokio::spawn(supervise(
            dir.to_path_buf(),
            opts.tuning,
            shared.clone(),
            reload_rx,
            shutdown.clone(),
        ));
        info!(event = "router.started", tenant = %tenant, http = %http_addr, tls = is_tls, "Service started");
        Ok(Service {
            shared,
            http_addr,
            tls: is_tls,
            admin: Some(admin),
            shutdown,
            runtime,
            http,
        })
    }

    /// The status port's base URL (`http://` or `https://`).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// Kills the service abruptly, as a crash would: no pending write is flushed, no session is
    /// closed politely; rows in flight stay as they are in Salesforce.
    pub fn abort(self) {
        self.runtime.abort();
        self.http.abort();
        // The status port's open (keep-alive) connections run as tasks of their own: without
        // this they would go on answering for a service that is gone. The aborted runtime never
        // sees it.
        self.shutdown.cancel();
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
    let service = Service::start_tenant(dir, &cfg, TenantOptions::default()).await?;
    crate::say!(
        "sors: tenant {} serving status on {}/heartbeat (admin pages at {}/)",
        cfg.tenant.name,
        service.base_url(),
        service.base_url()
    );
    service.run_until_signal().await
}

/// What the supervisor can start from the tenant directory now.
enum Plan {
    Route(Box<ServiceSpec>),
    /// Not configured yet, in words for the status.
    Wait(String),
}

fn plan(dir: &Path, tuning: &Tuning) -> Plan {
    let cfg = match Config::load(dir) {
        Ok(c) => c,
        Err(e) => return Plan::Wait(format!("Not configured: config.toml cannot be used: {e}")),
    };
    let creds = match CredentialStore::open(dir).and_then(|s| s.load()) {
        Ok(c) => c,
        Err(e) => {
            return Plan::Wait(format!(
                "Not configured: the saved credentials cannot be read: {e}"
            ));
        }
    };
    let mut missing = Vec::new();
    if creds.cic.is_none() || cfg.cic.servers.is_empty() {
        missing.push("the CIC connection (/loginIc)");
    }
    if creds.salesforce.is_none() {
        missing.push("the Salesforce connection (/loginSf)");
    }
    if !missing.is_empty() {
        return Plan::Wait(format!(
            "Not configured: enter {} on the admin pages",
            missing.join(" and ")
        ));
    }
    match spec_from_config(dir, &cfg) {
        Ok(mut spec) => {
            spec.options = tuning.options(&cfg);
            spec.icws = tuning.icws(spec.icws);
            let (login, names) = tuning.salesforce(spec.salesforce, spec.names);
            spec.salesforce = login;
            spec.names = names;
            Plan::Route(Box::new(spec))
        }
        Err(e) => Plan::Wait(format!("Not configured: {e:#}")),
    }
}

/// A running routing runtime: its stop signal and its task (aborted if dropped).
struct Running {
    stop: CancellationToken,
    task: AbortOnDropHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn start_runtime(
    spec: ServiceSpec,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) -> Result<Running, String> {
    let sf = Salesforce::new(spec.salesforce, spec.names)
        .map_err(|e| format!("Salesforce settings: {e}"))?;
    let (icws, events) = Icws::start(spec.icws).map_err(|e| format!("CIC settings: {e}"))?;
    let stop = shutdown.child_token();
    shared.runtime_starting();
    let task = AbortOnDropHandle::new(tokio::spawn(runtime::run(
        spec.options,
        sf,
        icws,
        events,
        shared.clone(),
        stop.clone(),
    )));
    Ok(Running { stop, task })
}

/// Owns the routing runtime of a tenant directory: starts it when both credentials exist,
/// restarts it (graceful stop, then a new one from the directory as it is now) on every
/// `reload`, stops it on `shutdown`. Dropped (a kill), it takes the runtime with it.
async fn supervise(
    dir: PathBuf,
    tuning: Tuning,
    shared: Arc<Shared>,
    mut reload: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let tenant = shared.snapshot().tenant;
    loop {
        let running = match plan(&dir, &tuning) {
            Plan::Route(spec) => match start_runtime(*spec, &shared, &shutdown) {
                Ok(r) => {
                    info!(event = "router.routing_started", tenant = %tenant, "Routing started with the saved credentials");
                    Some(r)
                }
                Err(why) => {
                    warn!(event = "router.not_configured", tenant = %tenant, reason = %why, "Routing not started");
                    shared.not_configured(&format!("Not configured: {why}"));
                    None
                }
            },
            Plan::Wait(why) => {
                info!(event = "router.not_configured", tenant = %tenant, reason = %why, "Routing waits for configuration");
                shared.not_configured(&why);
                None
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                if let Some(r) = running {
                    r.stop().await;
                }
                return;
            }
            changed = reload.changed() => {
                if let Some(r) = running {
                    info!(event = "router.restarting", tenant = %tenant, "New credentials or settings saved: stopping routing gracefully to start it again");
                    r.stop().await;
                }
                if changed.is_err() {
                    // The admin pages are gone: nothing can change any more.
                    shutdown.cancelled().await;
                    return;
                }
            }
        }
    }
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
