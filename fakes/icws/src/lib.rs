//! A fake CIC switchover pair speaking ICWS, with the SORS routing handler and a small ACD.
//!
//! Two HTTP servers (primary and backup) share one simulated site; one is active, the other
//! answers connects with 503 and the active server's address. See the README for the
//! endpoints, the control API under `/__fake/`, the site file format and every decision taken
//! where the ICWS notes were silent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sors_fake_icws::Error> {
//! let fake = sors_fake_icws::FakeIcws::start(Default::default()).await?;
//! println!("primary at {}", fake.primary_url());
//! fake.shutdown().await;
//! # Ok(()) }
//! ```

mod acd;
mod control;
mod error;
mod http;
mod site;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use site::{AgentSpec, IcwsUser, SiteError, SiteSpec, SkillLevel, Timings, WorkgroupSpec};
pub use state::{CallKind, Counters, FailRule, HistoryEntry, HistoryEvent, InteractionInfo, Which};

use state::SiteState;

/// Errors of the fake's public API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Site(#[from] SiteError),
    #[error("unknown agent {0}")]
    UnknownAgent(String),
    #[error("fail-next status must be 401, 403, 500 or 503, not {0}")]
    InvalidFailStatus(u16),
    #[error("the {0} server did not close its listener in time")]
    StopTimeout(&'static str),
}

/// How to start the pair.
#[derive(Clone, Debug)]
pub struct FakeIcwsConfig {
    /// Listen address of the primary (initially active) server.
    pub primary: SocketAddr,
    /// Listen address of the backup (initially standby) server.
    pub backup: SocketAddr,
    /// The site, including its timings (`site.timings`).
    pub site: SiteSpec,
}

impl Default for FakeIcwsConfig {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeIcwsConfig {
            primary: any,
            backup: any,
            site: SiteSpec::demo(),
        }
    }
}

/// A running listener: the shutdown trigger and a receiver that resolves once the listener
/// socket is closed.
struct Running {
    shutdown: oneshot::Sender<()>,
    closed: oneshot::Receiver<()>,
}

/// The listener wrapper whose drop reports that the socket is closed.
struct ClosingListener {
    inner: TcpListener,
    _closed: oneshot::Sender<()>,
}

impl axum::serve::Listener for ClosingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        // Without it, an event-stream chunk written after another waits for the client's
        // delayed ACK (Nagle): up to 40 ms a message, a stall no real server adds.
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
        }
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// State shared by both servers and the handle.
pub(crate) struct Shared {
    state: Mutex<SiteState>,
    servers: tokio::sync::Mutex<[Option<Running>; 2]>,
    addrs: [SocketAddr; 2],
    runtime: tokio::runtime::Handle,
}

fn slot(which: Which) -> usize {
    match which {
        Which::Primary => 0,
        Which::Backup => 1,
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SiteState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` under the site lock, then starts the answer timers it scheduled.
    pub(crate) fn with_state<R>(self: &Arc<Self>, f: impl FnOnce(&mut SiteState) -> R) -> R {
        let (r, answers, delay) = {
            let mut st = self.lock();
            let r = f(&mut st);
            (r, st.take_pending_answers(), st.spec.timings.answer_delay)
        };
        self.start_answer_timers(answers, delay);
        r
    }

    fn start_answer_timers(self: &Arc<Self>, answers: Vec<(String, String)>, delay: Duration) {
        for (ix, agent) in answers {
            let me = self.clone();
            self.runtime.spawn(async move {
                tokio::time::sleep(delay).await;
                let more = {
                    let mut st = me.lock();
                    st.answer(&ix, &agent);
                    st.take_pending_answers()
                };
                me.start_answer_timers(more, delay);
            });
        }
    }

    pub(crate) fn addr(&self, which: Which) -> SocketAddr {
        self.addrs[slot(which)]
    }

    /// `host:port` of a server, as put in `alternateHostList`.
    pub(crate) fn host(&self, which: Which) -> String {
        self.addr(which).to_string()
    }

    pub(crate) async fn is_running(&self, which: Which) -> bool {
        self.servers.lock().await[slot(which)].is_some()
    }

    async fn serve(self: &Arc<Self>, which: Which, listener: TcpListener) -> Running {
        let (shutdown, signal) = oneshot::channel::<()>();
        let (closed_tx, closed) = oneshot::channel::<()>();
        let listener = ClosingListener {
            inner: listener,
            _closed: closed_tx,
        };
        let app = http::router(self.clone(), which).merge(control::router(self.clone(), which));
        self.runtime.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Either an explicit stop or the handle going away.
                    let _ = signal.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(server = which.as_str(), error = %e, "fake ICWS server ended with an error");
            }
        });
        tracing::info!(server = which.as_str(), addr = %self.addr(which), "fake ICWS server listening");
        Running { shutdown, closed }
    }

    pub(crate) async fn start_server(self: &Arc<Self>, which: Which) -> Result<(), Error> {
        let mut servers = self.servers.lock().await;
        if servers[slot(which)].is_some() {
            return Ok(());
        }
        let addr = self.addr(which);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        servers[slot(which)] = Some(self.serve(which, listener).await);
        Ok(())
    }

    /// Closes the listener (connections are refused from now on), ends the sessions of this
    /// server and lets in-flight requests finish.
    pub(crate) async fn stop_server(self: &Arc<Self>, which: Which) -> Result<(), Error> {
        let mut servers = self.servers.lock().await;
        let Some(running) = servers[slot(which)].take() else {
            return Ok(());
        };
        self.with_state(|st| st.drop_sessions(Some(which)));
        let _ = running.shutdown.send(());
        // The sender side is dropped with the listener: Err(RecvError) is the signal.
        let closed = tokio::time::timeout(Duration::from_secs(10), running.closed).await;
        tracing::info!(server = which.as_str(), "fake ICWS server stopped");
        match closed {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::StopTimeout(which.as_str())),
        }
    }

    pub(crate) fn fail_next(self: &Arc<Self>, rule: FailRule) -> Result<(), Error> {
        if ![401, 403, 500, 503].contains(&rule.status) {
            return Err(Error::InvalidFailStatus(rule.status));
        }
        self.with_state(|st| st.add_fail_rule(rule));
        Ok(())
    }

    pub(crate) fn switchover(self: &Arc<Self>, recovery: Option<bool>) -> Which {
        self.with_state(|st| {
            let recovery = recovery.unwrap_or(st.spec.interaction_recovery);
            st.switchover(recovery)
        })
    }

    pub(crate) fn set_agent_available(
        self: &Arc<Self>,
        agent: &str,
        available: bool,
    ) -> Result<(), Error> {
        if self.with_state(|st| st.set_agent_available(agent, available)) {
            Ok(())
        } else {
            Err(Error::UnknownAgent(agent.to_owned()))
        }
    }
}

/// The running pair. Dropping it without [`FakeIcws::shutdown`] stops the listeners too.
pub struct FakeIcws {
    shared: Arc<Shared>,
}

impl FakeIcws {
    /// Validates the site, binds both servers (primary active) and starts serving.
    pub async fn start(cfg: FakeIcwsConfig) -> Result<FakeIcws, Error> {
        cfg.site.validate()?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })
        };
        let primary = bind(cfg.primary).await?;
        let backup = bind(cfg.backup).await?;
        let local = |l: &TcpListener, addr: SocketAddr| {
            l.local_addr()
                .map_err(|source| Error::Bind { addr, source })
        };
        let addrs = [local(&primary, cfg.primary)?, local(&backup, cfg.backup)?];
        let shared = Arc::new(Shared {
            state: Mutex::new(SiteState::new(cfg.site)),
            servers: tokio::sync::Mutex::new([None, None]),
            addrs,
            runtime: tokio::runtime::Handle::current(),
        });
        let p = shared.serve(Which::Primary, primary).await;
        let b = shared.serve(Which::Backup, backup).await;
        *shared.servers.lock().await = [Some(p), Some(b)];
        Ok(FakeIcws { shared })
    }

    /// Base URL of a server, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self, which: Which) -> String {
        format!("http://{}", self.shared.addr(which))
    }

    pub fn primary_url(&self) -> String {
        self.url(Which::Primary)
    }

    pub fn backup_url(&self) -> String {
        self.url(Which::Backup)
    }

    pub fn addr(&self, which: Which) -> SocketAddr {
        self.shared.addr(which)
    }

    /// The server currently accepting connections.
    pub fn active(&self) -> Which {
        self.shared.lock().active
    }

    /// Makes the standby active. `recovery` overrides the site's `interaction_recovery` once.
    /// Returns the new active server.
    pub fn switchover(&self, recovery: Option<bool>) -> Which {
        self.shared.switchover(recovery)
    }

    /// Closes a server's listener (connection refused) and ends its sessions.
    pub async fn stop_server(&self, which: Which) -> Result<(), Error> {
        self.shared.stop_server(which).await
    }

    /// Listens again on the same address.
    pub async fn start_server(&self, which: Which) -> Result<(), Error> {
        self.shared.start_server(which).await
    }

    pub async fn is_running(&self, which: Which) -> bool {
        self.shared.is_running(which).await
    }

    /// Ends every session at once, without any message: their next call gets 401.
    /// Returns how many sessions ended.
    pub fn end_sessions(&self) -> usize {
        self.shared.with_state(|st| st.drop_sessions(None))
    }

    /// Changes a user's password (as an administrator would in CIC). Sessions already open
    /// stay; the next connect needs the new password. False when there is no such user.
    pub fn set_password(&self, user_id: &str, password: &str) -> bool {
        self.shared
            .with_state(|st| st.set_password(user_id, password))
    }

    /// Delay added before every ICWS call (not the control API).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.with_state(|st| st.latency = latency);
    }

    /// The next `rule.count` ICWS calls of `rule.kind` answer `rule.status` (401/403/500/503).
    pub fn fail_next(&self, rule: FailRule) -> Result<(), Error> {
        self.shared.fail_next(rule)
    }

    /// Changes an agent's ACD availability (re-runs assignment).
    pub fn set_agent_available(&self, agent: &str, available: bool) -> Result<(), Error> {
        self.shared.set_agent_available(agent, available)
    }

    /// Every interaction ever created, oldest first.
    pub fn interactions(&self) -> Vec<InteractionInfo> {
        self.shared.lock().interactions()
    }

    pub fn counters(&self) -> Counters {
        self.shared.lock().counters()
    }

    /// The case's interactions that are live (in their workgroup queue, not disconnected).
    pub fn live_interactions_for_case(&self, case_id: &str) -> Vec<InteractionInfo> {
        self.shared.lock().live_interactions_for_case(case_id)
    }

    /// Stops both servers.
    pub async fn shutdown(self) {
        for which in [Which::Primary, Which::Backup] {
            if let Err(e) = self.shared.stop_server(which).await {
                tracing::warn!(error = %e, "fake ICWS shutdown");
            }
        }
    }
}

impl Drop for FakeIcws {
    fn drop(&mut self) {
        self.shared.with_state(|st| st.drop_sessions(None));
        if let Ok(mut servers) = self.shared.servers.try_lock() {
            for running in servers.iter_mut().filter_map(Option::take) {
                let _ = running.shutdown.send(());
            }
        }
    }
}
