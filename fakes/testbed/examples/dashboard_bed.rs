//! Live tenants for the dashboard's browser tests (and for looking at the page by hand): each
//! tenant is a test bed of its own (`sors_testbed`: a fake Salesforce, a fake CIC pair and a
//! routing service with fast timings, status port on 127.0.0.1), driven over stdin.
//!
//! ```text
//! cargo run -p sors --example dashboard_bed -- [KEY ...]     # default: acme globex
//! ```
//!
//! Starts one tenant per KEY, then prints one JSON line on stdout:
//! `{"ready": true, "tenants": [TENANT, ...]}` where TENANT is
//! `{"tenant", "name", "address", "port", "status_url", "heartbeat_url", "history_url",
//! "dashboard_url", "salesforce_control", "cic_control": [primary, backup]}`. Then it reads one
//! command a line and answers each with one JSON line, `{"ok": true, ...}` or
//! `{"ok": false, "error": "..."}`:
//!
//! - `add KEY [NAME...]`: a new tenant (NAME, default KEY, is its heartbeat's `tenant`); answers
//!   `{"ok": true, "tenant": TENANT}` once its router is up.
//! - `stop KEY`: stops its service gracefully (its status port refuses connections).
//! - `kill KEY`: kills its service abruptly.
//! - `start KEY`: starts a fresh service on the same status port; answers once it is up.
//! - `drop_pushes KEY on|off`: the fake Salesforce swallows PushTopic events (or not).
//! - `new_case KEY [N]`: N (default 1) customer emails become cases in `Support EN`.
//! - `traffic KEY MS|off`: a new case every MS milliseconds (at least 100), or no more.
//! - `switchover KEY [keep|lose]`: the fake CIC's standby becomes active, keeping or losing
//!   the interactions (default: as the site says, which keeps them); answers `{"active": ...}`.
//! - `rows KEY`: the routing rows by status, e.g. `{"rows": {"Processed": 3}}`.
//! - `close KEY`: stops the tenant's service and both fakes for good.
//! - `list`: every tenant, as in the first line.
//!
//! Exits (stopping everything) when stdin closes or on `quit`. Only 127.0.0.1 is used; nothing
//! printed holds a secret (the fakes' demo passwords stay in the process).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use sors::serve::Service;
use sors_testbed::{Bed, BedOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long a started service may take to be up.
const UP_TIMEOUT: Duration = Duration::from_secs(30);

struct Tenant {
    key: String,
    name: String,
    bed: Bed,
    /// The status port, kept across stops and starts so the page keeps polling the same address.
    port: u16,
    /// A new case every this often, and when the next one is due.
    traffic: Option<(Duration, tokio::time::Instant)>,
}

impl Tenant {
    async fn start(key: &str, name: &str) -> anyhow::Result<Tenant> {
        let mut opts = BedOptions::default();
        opts.org.name = name.to_owned();
        let bed = Bed::start_fakes(opts).await?;
        let mut t = Tenant {
            key: key.to_owned(),
            name: name.to_owned(),
            bed,
            port: 0,
            traffic: None,
        };
        t.start_service().await?;
        Ok(t)
    }

    async fn start_service(&mut self) -> anyhow::Result<()> {
        if self.bed.service.is_some() {
            bail!("the service of {} is running already", self.key);
        }
        let mut spec = self.bed.spec();
        spec.tenant = self.name.clone();
        spec.http_listen = SocketAddr::from(([127, 0, 0, 1], self.port));
        let service = Service::start(spec).await?;
        self.port = service.http_addr.port();
        self.bed.service = Some(service);
        self.bed
            .wait_for("the router to be up", UP_TIMEOUT, |b| {
                b.service.as_ref().is_some_and(|s| s.shared.is_ready())
            })
            .await
            .map_err(|e| anyhow!(e))
    }

    fn describe(&self) -> Value {
        let status = format!("http://127.0.0.1:{}", self.port);
        json!({
            "tenant": self.key,
            "name": self.name,
            "address": "127.0.0.1",
            "port": self.port,
            "status_url": status,
            "heartbeat_url": format!("{status}/heartbeat"),
            "history_url": format!("{status}/history"),
            "dashboard_url": format!("{status}/dashboard/"),
            "running": self.bed.service.is_some(),
            "salesforce_control": format!("{}/__fake/", self.bed.sf.base_url()),
            "cic_control": [
                format!("{}/__fake/", self.bed.cic.primary_url()),
                format!("{}/__fake/", self.bed.cic.backup_url()),
            ],
        })
    }

    fn new_cases(&self, n: usize) -> anyhow::Result<Vec<String>> {
        (0..n)
            .map(|_| self.bed.new_case("Support EN", "English"))
            .collect()
    }
}

struct Beds {
    tenants: BTreeMap<String, Tenant>,
}

impl Beds {
    fn get(&mut self, key: Option<&str>) -> anyhow::Result<&mut Tenant> {
        let key = key.context("which tenant?")?;
        self.tenants
            .get_mut(key)
            .with_context(|| format!("no tenant {key}"))
    }

    async fn add(&mut self, key: &str, name: &str) -> anyhow::Result<Value> {
        if self.tenants.contains_key(key) {
            bail!("a tenant {key} exists already");
        }
        let t = Tenant::start(key, name).await?;
        let d = t.describe();
        self.tenants.insert(key.to_owned(), t);
        Ok(d)
    }

    fn list(&self) -> Vec<Value> {
        self.tenants.values().map(Tenant::describe).collect()
    }

    async fn command(&mut self, line: &str) -> anyhow::Result<Option<Value>> {
        let mut words = line.split_whitespace();
        let Some(cmd) = words.next() else {
            return Ok(Some(json!({})));
        };
        let key = words.next();
        let rest: Vec<&str> = words.collect();
        let answer = match cmd {
            "quit" => return Ok(None),
            "list" => json!({ "tenants": self.list() }),
            "add" => {
                let key = key.context("add KEY [NAME]")?;
                let name = if rest.is_empty() {
                    key.to_owned()
                } else {
                    rest.join(" ")
                };
                json!({ "tenant": self.add(key, &name).await? })
            }
            "stop" => {
                let t = self.get(key)?;
                t.bed.stop_service().await;
                json!({})
            }
            "kill" => {
                let t = self.get(key)?;
                t.bed.kill_service();
                json!({})
            }
            "start" => {
                let t = self.get(key)?;
                t.start_service().await?;
                json!({ "tenant": t.describe() })
            }
            "drop_pushes" => {
                let t = self.get(key)?;
                let on = match rest.first().copied() {
                    Some("on") => true,
                    Some("off") => false,
                    _ => bail!("drop_pushes KEY on|off"),
                };
                t.bed.sf.set_drop_pushes(on);
                json!({ "drop_pushes": on })
            }
            "new_case" => {
                let t = self.get(key)?;
                let n = match rest.first() {
                    Some(n) => n.parse().context("new_case KEY [N]")?,
                    None => 1,
                };
                json!({ "cases": t.new_cases(n)? })
            }
            "traffic" => {
                let t = self.get(key)?;
                t.traffic = match rest.first().copied() {
                    Some("off") => None,
                    Some(ms) => {
                        let ms: u64 = ms.parse().context("traffic KEY MS|off")?;
                        let every = Duration::from_millis(ms.max(100));
                        Some((every, tokio::time::Instant::now()))
                    }
                    None => bail!("traffic KEY MS|off"),
                };
                json!({ "traffic_ms": t.traffic.map(|(d, _)| d.as_millis() as u64) })
            }
            "switchover" => {
                let t = self.get(key)?;
                let recovery = match rest.first().copied() {
                    None => None,
                    Some("keep") => Some(true),
                    Some("lose") => Some(false),
                    Some(_) => bail!("switchover KEY [keep|lose]"),
                };
                let active = t.bed.cic.switchover(recovery);
                json!({ "active": format!("{active:?}").to_lowercase() })
            }
            "rows" => {
                let t = self.get(key)?;
                let mut by: BTreeMap<String, u64> = BTreeMap::new();
                for r in t.bed.rows() {
                    let s = r["Status__c"].as_str().unwrap_or("?").to_owned();
                    *by.entry(s).or_default() += 1;
                }
                json!({ "rows": by })
            }
            "close" => {
                let key = key.context("close KEY")?;
                let t = self
                    .tenants
                    .remove(key)
                    .with_context(|| format!("no tenant {key}"))?;
                t.bed.shutdown().await;
                json!({})
            }
            other => bail!(
                "unknown command {other:?} (add, stop, kill, start, drop_pushes, new_case, traffic, switchover, rows, close, list, quit)"
            ),
        };
        Ok(Some(answer))
    }

    /// Makes the cases the `traffic` commands asked for; the time the next one is due.
    fn traffic(&mut self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let mut next: Option<tokio::time::Instant> = None;
        for t in self.tenants.values_mut() {
            let Some((every, due)) = t.traffic else {
                continue;
            };
            let due = if due <= now {
                if let Err(e) = t.bed.new_case("Support EN", "English") {
                    eprintln!("dashboard_bed: {}: a new case failed: {e:#}", t.key);
                }
                now + every
            } else {
                due
            };
            t.traffic = Some((every, due));
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        next
    }

    async fn shutdown(self) {
        for (_, t) in self.tenants {
            t.bed.shutdown().await;
        }
    }
}

fn say(v: Value) {
    println!("{v}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut keys: Vec<String> = std::env::args().skip(1).collect();
    if keys.is_empty() {
        keys = vec!["acme".into(), "globex".into()];
    }
    let mut beds = Beds {
        tenants: BTreeMap::new(),
    };
    for key in &keys {
        if let Err(e) = beds.add(key, key).await {
            say(json!({ "ready": false, "error": format!("{key}: {e:#}") }));
            beds.shutdown().await;
            return Err(e);
        }
    }
    say(json!({ "ready": true, "tenants": beds.list() }));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let next = beds.traffic();
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => continue,
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                eprintln!("dashboard_bed: reading stdin: {e}");
                break;
            }
        };
        match beds.command(line.trim()).await {
            Ok(Some(mut v)) => {
                v["ok"] = json!(true);
                say(v);
            }
            Ok(None) => {
                say(json!({ "ok": true, "bye": true }));
                break;
            }
            Err(e) => say(json!({ "ok": false, "error": format!("{e:#}") })),
        }
    }
    beds.shutdown().await;
    Ok(())
}
