//! The test bed: the fake Salesforce, the fake CIC pair and a routing service wired to them,
//! with short timings. Used by the end-to-end tests, the scenario runner, the property tests
//! against the fakes and the crash tests.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chrono::TimeDelta;
use serde_json::{Value, json};
use sors_core::router::Settings;
use sors_fake_icws::{FakeIcws, FakeIcwsConfig, InteractionInfo, SiteSpec};
use sors_fake_salesforce::{FakeSalesforce, FakeSalesforceConfig, OrgSpec};
use sors_icws::IcwsConfig;
use sors_salesforce::{Auth, LoginConfig, Names, Secret};

use sors::runtime::Options;
use sors::serve::{Service, ServiceSpec};
use sors::status::StatusView;

/// Router timings for tests: everything in (milli)seconds instead of minutes.
pub fn fast_options() -> Options {
    Options {
        settings: Settings {
            route_timeout: TimeDelta::seconds(5),
            retry_backoff: TimeDelta::milliseconds(300),
            max_attempts: 10,
            max_write_backoff: TimeDelta::seconds(2),
            reconcile_interval: Some(TimeDelta::seconds(3)),
            ..Settings::default()
        },
        sweep_interval: Duration::from_secs(2),
        sweep_grace: Duration::from_secs(1),
        batch_window: Duration::from_millis(20),
        tick: Duration::from_millis(100),
        backlog_chunk: sors::runtime::BACKLOG_CHUNK,
    }
}

/// What a bed is made of.
#[derive(Clone)]
pub struct BedOptions {
    pub router: Options,
    pub org: OrgSpec,
    pub site: SiteSpec,
    /// How long the fake holds a CometD connect (Salesforce: 110 s).
    pub connect_hold: Duration,
}

impl Default for BedOptions {
    fn default() -> Self {
        BedOptions {
            router: fast_options(),
            org: OrgSpec::demo(),
            site: SiteSpec::demo(),
            connect_hold: Duration::from_secs(1),
        }
    }
}

/// The SOQL that reads every routing row, oldest first.
pub const ROWS_SOQL: &str = "SELECT Id, Case__c, Event__c, Status__c, Interaction_Id__c, Error__c, Attempts__c, Workgroup__c, Skills__c, Salesforce_Queue_Id__c, CreatedDate FROM Object_Routing_Queue__c ORDER BY CreatedDate, Id";

pub struct Bed {
    pub sf: FakeSalesforce,
    pub cic: FakeIcws,
    pub service: Option<Service>,
    pub options: Options,
}

impl Bed {
    /// Starts both fakes and a router, and waits until the router is up.
    pub async fn start(opts: BedOptions) -> anyhow::Result<Bed> {
        let mut bed = Bed::start_fakes(opts).await?;
        bed.start_service().await?;
        Ok(bed)
    }

    /// Starts both fakes only.
    pub async fn start_fakes(opts: BedOptions) -> anyhow::Result<Bed> {
        let mut sfc = FakeSalesforceConfig {
            org: opts.org,
            ..FakeSalesforceConfig::default()
        };
        sfc.streaming.connect_hold = opts.connect_hold;
        sfc.streaming.reconnect_expiry = opts.connect_hold * 5;
        let sf = FakeSalesforce::start(sfc)
            .await
            .context("fake Salesforce")?;
        let cic = FakeIcws::start(FakeIcwsConfig {
            site: opts.site,
            ..FakeIcwsConfig::default()
        })
        .await
        .context("fake ICWS")?;
        Ok(Bed {
            sf,
            cic,
            service: None,
            options: opts.router,
        })
    }

    /// The service settings that point at this bed's fakes.
    pub fn spec(&self) -> ServiceSpec {
        let mut login = LoginConfig::new(
            self.sf.base_url(),
            Auth::Soap {
                username: "router@sors.demo".into(),
                password: Secret::new("demoTOKEN"),
            },
        );
        login.streaming.backoff_base_ms = 100;
        login.streaming.backoff_max_ms = 1000;
        login.streaming.refused_delay_ms = 500;
        login.streaming.watchdog_margin_ms = 3000;
        login.retry.base_delay_ms = 50;
        login.retry.max_delay_ms = 500;
        let icws = IcwsConfig {
            servers: vec![self.cic.primary_url(), self.cic.backup_url()],
            user: "sors".into(),
            password: sors_icws::Secret::new("sors"),
            reconnect_backoff_base: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(1),
            ..IcwsConfig::default()
        };
        ServiceSpec {
            tenant: "test".into(),
            options: self.options.clone(),
            salesforce: login,
            names: Names::default(),
            icws,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cors_origins: vec![],
        }
    }

    /// Starts a router (a fresh one: no memory of any earlier one) and waits until it is up.
    pub async fn start_service(&mut self) -> anyhow::Result<()> {
        let service = Service::start(self.spec()).await?;
        self.service = Some(service);
        self.wait_for("the router to be up", Duration::from_secs(20), |b| {
            b.service.as_ref().is_some_and(|s| s.shared.is_ready())
        })
        .await
        .map_err(anyhow::Error::msg)
    }

    /// Stops the router gracefully.
    pub async fn stop_service(&mut self) {
        if let Some(s) = self.service.take() {
            s.stop().await;
        }
    }

    /// Kills the router abruptly: nothing is flushed, in-flight rows stay as they are.
    pub fn kill_service(&mut self) {
        if let Some(s) = self.service.take() {
            s.abort();
        }
    }

    pub fn status(&self) -> Option<StatusView> {
        self.service.as_ref().map(|s| s.shared.snapshot())
    }

    /// Polls `cond` every 50 ms until it holds, or fails with `what` after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Bed) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn queue(&self, name: &str) -> anyhow::Result<String> {
        self.sf
            .queue_id(name)
            .with_context(|| format!("no queue named '{name}'"))
    }

    /// A customer email becomes a case in `queue` (Email-to-Case runs as the integration user).
    pub fn new_case(&self, queue: &str, skills: &str) -> anyhow::Result<String> {
        let owner = self.queue(queue)?;
        Ok(self.sf.act_as("router@sors.demo")?.create(
            "Case",
            json!({"Subject": "Printer on fire", "OwnerId": owner, "Status": "New",
                   "SuppliedEmail": "pat@example.com", "SuppliedName": "Pat",
                   "ObjectRouting_Skills__c": skills}),
        )?)
    }

    /// Every routing row, oldest first, as the fake's JSON records.
    pub fn rows(&self) -> Vec<Value> {
        self.sf.query(ROWS_SOQL).unwrap_or_default()
    }

    pub fn rows_of(&self, case: &str) -> Vec<Value> {
        self.rows()
            .into_iter()
            .filter(|r| r["Case__c"] == case)
            .collect()
    }

    pub fn all_final(&self) -> bool {
        self.rows()
            .iter()
            .all(|r| r["Status__c"] == "Processed" || r["Status__c"] == "Failed")
    }

    pub fn live(&self, case: &str) -> Vec<InteractionInfo> {
        self.cic.live_interactions_for_case(case)
    }

    pub async fn shutdown(mut self) {
        self.stop_service().await;
        self.sf.shutdown().await;
        self.cic.shutdown().await;
    }
}
