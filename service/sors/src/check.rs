//! `sors check --tenant DIR`: everything that would stop routing, in plain words.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use sors_icws::{Icws, IcwsEvent};
use sors_salesforce::Salesforce;
use sors_tenant::{Config, CredentialStore};

use crate::wiring;

/// Runs every check and returns the problems found (empty: all good). Progress goes to stdout.
pub async fn check(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let cfg = match Config::load(dir) {
        Ok(c) => {
            say!("ok    config.toml");
            c
        }
        Err(e) => {
            problems.push(format!("config.toml: {e}"));
            return Ok(problems);
        }
    };
    let creds = match CredentialStore::open(dir).and_then(|s| s.load()) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("credentials: {e}"));
            return Ok(problems);
        }
    };

    // Salesforce: login, mappings against real queues, the PushTopic.
    let mut workgroups_needed = BTreeSet::new();
    match wiring::salesforce_config(&cfg, &creds).and_then(|(l, n)| Ok(Salesforce::new(l, n)?)) {
        Err(e) => problems.push(format!("Salesforce: {e}")),
        Ok(sf) => {
            match sf.login().await {
                Err(e) => problems.push(format!("Salesforce login failed: {e}")),
                Ok(s) => {
                    say!(
                        "ok    Salesforce login (org {}, {})",
                        s.org_id,
                        s.instance_url
                    );
                    match sf.queue_mappings().await {
                    Err(e) => problems.push(format!("cannot read the queue mappings: {e}")),
                    Ok(maps) if maps.resolved.is_empty() && maps.unresolved.is_empty() => problems.push(
                        "no Interaction Routing Queues rows: no Salesforce queue is monitored"
                            .into(),
                    ),
                    Ok(maps) => {
                        for m in maps.resolved {
                            say!("ok    queue '{}' → workgroup '{}'", m.queue_name, m.workgroup);
                            workgroups_needed.insert(m.workgroup);
                        }
                        for m in maps.unresolved {
                            workgroups_needed.insert(m.workgroup);
                            problems.push(format!(
                                "mapping names the Salesforce queue '{}', which does not exist (names are case-sensitive)",
                                m.queue_name
                            ));
                        }
                    }
                }
                }
            }
        }
    }

    // CIC: connect, workgroups and skills.
    match wiring::icws_config(&cfg, &creds) {
        Err(e) => problems.push(format!("CIC: {e}")),
        Ok(icfg) => match Icws::start(icfg) {
            Err(e) => problems.push(format!("CIC settings: {e}")),
            Ok((icws, mut events)) => {
                let connected = tokio::time::timeout(Duration::from_secs(20), async {
                    while let Some(ev) = events.recv().await {
                        if let IcwsEvent::Connected { server, .. } = ev {
                            return Some(server);
                        }
                    }
                    None
                })
                .await;
                match connected {
                    Ok(Some(server)) => {
                        say!("ok    CIC session on {server}");
                        match icws.workgroups().await {
                            Err(e) => problems.push(format!("cannot read CIC workgroups: {e}")),
                            Ok(wgs) => {
                                let by_name: HashMap<_, _> =
                                    wgs.iter().map(|w| (w.name.as_str(), w.acd_email)).collect();
                                for w in &workgroups_needed {
                                    match by_name.get(w.as_str()) {
                                        Some(true) => say!("ok    CIC workgroup '{w}' routes email through ACD"),
                                        Some(false) => problems.push(format!("CIC workgroup '{w}' is not an ACD email workgroup")),
                                        None => problems.push(format!("CIC has no workgroup named '{w}' (names are case-sensitive)")),
                                    }
                                }
                            }
                        }
                        match icws.skills().await {
                            Ok(skills) => say!("ok    CIC skills: {}", skills.join(", ")),
                            Err(e) => problems.push(format!("cannot read CIC skills: {e}")),
                        }
                    }
                    _ => problems.push(format!(
                        "could not connect to CIC ({}) within 20 s: {}",
                        cfg.cic.servers.join(", "),
                        icws.status()
                            .last_error
                            .unwrap_or_else(|| "no answer".into())
                    )),
                }
                icws.shutdown().await;
            }
        },
    }
    Ok(problems)
}
