//! A test bed: both fakes and a routing service wired to them, with short timings.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Value, json};
use sors::runtime::Options;
use sors::serve::{Service, ServiceSpec};
use sors_core::router::Settings;
use sors_fake_icws::{FakeIcws, FakeIcwsConfig};
use sors_fake_salesforce::{FakeSalesforce, FakeSalesforceConfig};
use sors_icws::IcwsConfig;
use sors_salesforce::{Auth, LoginConfig, Names, Secret};

pub struct Bed {
    pub sf: FakeSalesforce,
    pub cic: FakeIcws,
    pub service: Option<Service>,
    pub options: Options,
}

pub fn options() -> Options {
    Options {
        settings: Settings {
            route_timeout: TimeDelta::seconds(5),
            retry_backoff: TimeDelta::milliseconds(300),
            max_attempts: 10,
            ..Settings::default()
        },
        sweep_interval: Duration::from_secs(2),
        sweep_grace: Duration::from_secs(1),
        batch_window: Duration::from_millis(20),
        tick: Duration::from_millis(100),
    }
}

impl Bed {
    pub async fn start() -> Bed {
        Bed::start_with(options()).await
    }

    pub async fn start_with(options: Options) -> Bed {
        let mut sfc = FakeSalesforceConfig::default();
        sfc.streaming.connect_hold = Duration::from_secs(1);
        sfc.streaming.reconnect_expiry = Duration::from_secs(5);
        let sf = FakeSalesforce::start(sfc).await.expect("fake Salesforce");
        let cic = FakeIcws::start(FakeIcwsConfig::default())
            .await
            .expect("fake ICWS");
        let mut bed = Bed {
            sf,
            cic,
            service: None,
            options,
        };
        bed.start_service().await;
        bed
    }

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
        login.streaming.watchdog_margin_ms = 3000;
        login.retry.base_delay_ms = 50;
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

    pub async fn start_service(&mut self) {
        let service = Service::start(self.spec()).await.expect("service");
        self.service = Some(service);
        self.wait("the service is up", 20, |b| {
            b.service.as_ref().is_some_and(|s| s.shared.is_ready())
        })
        .await;
    }

    pub async fn stop_service(&mut self) {
        if let Some(s) = self.service.take() {
            s.stop().await;
        }
    }

    /// Polls `cond` until it holds, failing the test after `secs` seconds.
    pub async fn wait(&self, what: &str, secs: u64, cond: impl Fn(&Bed) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if cond(self) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for: {what}\nrows: {:#}",
                    json!(self.rows())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn queue(&self, name: &str) -> String {
        self.sf.queue_id(name).expect("queue")
    }

    /// A customer email becomes a case in `queue` (Email-to-Case runs as the integration user).
    pub fn new_case(&self, queue: &str, skills: &str) -> String {
        let owner = self.queue(queue);
        self.sf
            .act_as("router@sors.demo")
            .unwrap()
            .create(
                "Case",
                json!({"Subject": "Printer on fire", "OwnerId": owner, "Status": "New",
                       "SuppliedEmail": "pat@example.com", "SuppliedName": "Pat",
                       "ObjectRouting_Skills__c": skills}),
            )
            .expect("case")
    }

    pub fn rows(&self) -> Vec<Value> {
        self.sf
            .query("SELECT Id, Case__c, Event__c, Status__c, Interaction_Id__c, Error__c, Attempts__c, Workgroup__c, Skills__c FROM Object_Routing_Queue__c ORDER BY CreatedDate")
            .unwrap_or_default()
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

    pub fn live(&self, case: &str) -> Vec<sors_fake_icws::InteractionInfo> {
        self.cic.live_interactions_for_case(case)
    }
}
