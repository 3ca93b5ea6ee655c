//! `sors demo`: the fake Salesforce, the fake CIC pair and a routing service in one process,
//! with a tenant directory it sets up itself and a gentle stream of demo traffic.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::json;
use sors_fake_icws::{FakeIcws, FakeIcwsConfig};
use sors_fake_salesforce::{FakeSalesforce, FakeSalesforceConfig};
use sors_tenant::Config;
use sors_tenant::credentials::Secret;

use sors::say;
use sors::serve::{Service, spec_from_tenant, wait_for_signal};

pub struct DemoOptions {
    pub tenant: PathBuf,
    pub http: String,
    pub traffic: bool,
}

/// Writes a tenant directory pointing at the fakes (config and encrypted credentials).
pub fn write_tenant(dir: &Path, sf_url: &str, cic: [String; 2], http: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cfg = Config::default();
    cfg.tenant.name = "demo".into();
    cfg.salesforce.login_url = sf_url.to_owned();
    cfg.cic.servers = cic.to_vec();
    cfg.http.listen = http.to_owned();
    cfg.routing.sweep_interval_secs = 30;
    cfg.routing.sweep_grace_secs = 20;
    cfg.write(dir)?;
    sors_tenant::cli::set_salesforce(
        dir,
        "router@sors.demo",
        Secret::new("demo"),
        Secret::new("TOKEN"),
        Some("sors-demo"),
        Some(Secret::new("sors-demo-secret")),
    )?;
    sors_tenant::cli::set_cic(dir, "sors", Secret::new("sors"))?;
    Ok(())
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let sf = FakeSalesforce::start(FakeSalesforceConfig::default()).await?;
    let cic = FakeIcws::start(FakeIcwsConfig::default()).await?;
    write_tenant(
        &opts.tenant,
        &sf.base_url(),
        [cic.primary_url(), cic.backup_url()],
        &opts.http,
    )?;
    let (cfg, spec) = spec_from_tenant(&opts.tenant)?;
    let _guard = sors_tenant::logging::init(&cfg.logging, &opts.tenant, "demo")?;
    let service = Service::start(spec).await?;
    let http = service.http_addr;

    say!(
        r#"
sors demo is running. Ctrl-C stops it.

  Routing service  status   http://{http}/heartbeat   (also /metrics, /healthz, /readyz)
                   tenant   {tenant}   (config.toml, secureData/, logs/)
  Fake Salesforce           {sf}
                   login    router@sors.demo / demo, security token TOKEN (password demoTOKEN)
                   agents   agent1@sors.demo … agent4@sors.demo, same password and token
                   OAuth    client id sors-demo, secret sors-demo-secret
                   control  {sf}/__fake/counters, {sf}/__fake/dump
  Fake CIC         primary  {p}
                   backup   {b}
                   ICWS     user sors / password sors
                   control  {p}/__fake/interactions, {p}/__fake/counters
  Queues Support EN, Support FR, Billing → workgroups Support_EN, Support_FR, Billing;
  Unrouted is not monitored.
"#,
        tenant = opts.tenant.display(),
        sf = sf.base_url(),
        p = cic.primary_url(),
        b = cic.backup_url(),
    );

    let sf = Arc::new(sf);
    let cic = Arc::new(cic);
    let traffic = opts
        .traffic
        .then(|| tokio::spawn(traffic(sf.clone(), cic.clone())));
    wait_for_signal().await;
    if let Some(t) = traffic {
        t.abort();
        let _ = t.await;
    }
    service.stop().await;
    if let (Ok(sf), Ok(cic)) = (Arc::try_unwrap(sf), Arc::try_unwrap(cic)) {
        sf.shutdown().await;
        cic.shutdown().await;
    }
    Ok(())
}

/// A traffic step every 3 s; every 40th (two minutes) is a CIC switchover.
const SWITCHOVER_EVERY: u64 = 40;
const SWITCHOVER: u8 = u8::MAX;

const QUEUES: [&str; 4] = ["Support EN", "Support FR", "Billing", "Unrouted"];
const SKILLS: [&str; 5] = ["", "English", "French", "Billing", "English;Premium"];

/// A story a minute or so long, over and over: new cases, comments, customer emails, agent
/// replies, queue changes, closes, and now and then a CIC switchover.
async fn traffic(sf: Arc<FakeSalesforce>, cic: Arc<FakeIcws>) {
    let mut cases: Vec<String> = Vec::new();
    let mut step: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        step += 1;
        let action = {
            let mut rng = rand::rng();
            if step.is_multiple_of(SWITCHOVER_EVERY) {
                SWITCHOVER
            } else if cases.len() < 3 {
                0
            } else {
                rng.random_range(0..10u8)
            }
        };
        let pick = |cases: &Vec<String>| cases.choose(&mut rand::rng()).cloned();
        let result: Result<String, String> = match action {
            0..=3 => {
                let (queue, skills) = {
                    let mut rng = rand::rng();
                    (*QUEUES.choose(&mut rng).unwrap_or(&"Support EN"), *SKILLS.choose(&mut rng).unwrap_or(&""))
                };
                let owner = sf.queue_id(queue).unwrap_or_default();
                sf.act_as("router@sors.demo")
                    .and_then(|a| {
                        a.create(
                            "Case",
                            json!({"Subject": format!("Demo case {step}"), "OwnerId": owner, "Status": "New",
                                   "SuppliedEmail": format!("customer{step}@example.com"),
                                   "SuppliedName": format!("Customer {step}"), "ObjectRouting_Skills__c": skills}),
                        )
                        .map_err(Into::into)
                    })
                    .map(|id| {
                        cases.push(id.clone());
                        format!("new case {id} in '{queue}' with skills '{skills}'")
                    })
                    .map_err(|e| e.to_string())
            }
            4 | 5 => match pick(&cases) {
                Some(case) => sf
                    .act_as("agent1@sors.demo")
                    .and_then(|a| {
                        a.create("EmailMessage", json!({"ParentId": case, "Incoming": false,
                            "FromAddress": "agent1@sors.demo", "FromName": "Agent One", "Subject": "Re: your case"}))
                            .map_err(Into::into)
                    })
                    .map(|_| format!("agent replied on case {case}"))
                    .map_err(|e| e.to_string()),
                None => continue,
            },
            6 => match pick(&cases) {
                Some(case) => sf
                    .act_as("router@sors.demo")
                    .and_then(|a| {
                        a.create("EmailMessage", json!({"ParentId": case, "Incoming": true,
                            "FromAddress": "customer@example.com", "FromName": "Customer", "Subject": "Any news?"}))
                            .map_err(Into::into)
                    })
                    .map(|_| format!("customer wrote again on case {case}"))
                    .map_err(|e| e.to_string()),
                None => continue,
            },
            7 => match pick(&cases) {
                Some(case) => {
                    let queue = *QUEUES.choose(&mut rand::rng()).unwrap_or(&"Billing");
                    let owner = sf.queue_id(queue).unwrap_or_default();
                    sf.act_as("router@sors.demo")
                        .and_then(|a| a.update("Case", &case, json!({"OwnerId": owner})).map_err(Into::into))
                        .map(|_| format!("case {case} moved to '{queue}'"))
                        .map_err(|e| e.to_string())
                }
                None => continue,
            },
            8 => match pick(&cases) {
                Some(case) => sf
                    .act_as("agent2@sors.demo")
                    .and_then(|a| {
                        a.create("CaseComment", json!({"ParentId": case, "CommentBody": "Looking into it"}))
                            .map_err(Into::into)
                    })
                    .map(|_| format!("agent2 commented on case {case}"))
                    .map_err(|e| e.to_string()),
                None => continue,
            },
            SWITCHOVER => {
                // Alternate: one switchover loses live interactions (the router re-routes them),
                // the next keeps them (CIC's interaction recovery).
                let recovery = step.is_multiple_of(2 * SWITCHOVER_EVERY);
                let now = cic.switchover(Some(recovery));
                Ok(format!(
                    "CIC switchover to {now:?} (interaction recovery {})",
                    if recovery { "on" } else { "off" }
                ))
            }
            _ => match pick(&cases) {
                Some(case) => {
                    cases.retain(|c| *c != case);
                    sf.act_as("agent3@sors.demo")
                        .and_then(|a| a.update("Case", &case, json!({"Status": "Closed"})).map_err(Into::into))
                        .map(|_| format!("case {case} closed"))
                        .map_err(|e| e.to_string())
                }
                None => continue,
            },
        };
        match result {
            Ok(line) => say!("demo traffic: {line}"),
            Err(e) => say!("demo traffic: (skipped: {e})"),
        }
        if cases.len() > 30 {
            cases.remove(0);
        }
    }
}
