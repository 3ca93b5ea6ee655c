//! `sors check --tenant DIR`: everything that would stop routing, in plain words.
//!
//! The checks produce one structured [`CheckReport`] (what works, the mapping table queue ↔
//! workgroup ↔ skills with what is wrong in each row, and the problems of neither row); the
//! command prints it, and the admin `/status` page shows the same report as a table.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use sors_icws::{Icws, IcwsEvent};
use sors_salesforce::Salesforce;
use sors_tenant::{Config, CredentialStore, Credentials};

use crate::wiring::{self, Tuning};

/// How long the command waits for a CIC session.
const CLI_CONNECT_WAIT: Duration = Duration::from_secs(20);

/// One mapping row (`Interaction_Routing_Queue__c`) and what is wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MappingCheck {
    /// The Salesforce queue's name, as the mapping names it.
    pub queue: String,
    /// The CIC workgroup the mapping names.
    pub workgroup: String,
    /// The queue does not exist in Salesforce.
    pub queue_problem: Option<String>,
    /// The workgroup does not exist in CIC or does not route email through ACD (`None` also
    /// when CIC could not be asked: see [`CheckReport::cic_checked`]).
    pub workgroup_problem: Option<String>,
    /// The CIC skills (which cases of this queue may require) could not be read.
    pub skills_problem: Option<String>,
}

impl MappingCheck {
    /// Everything wrong with this mapping, in plain words (`None`: fine).
    pub fn problem(&self) -> Option<String> {
        let all: Vec<&str> = [
            &self.queue_problem,
            &self.workgroup_problem,
            &self.skills_problem,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
        (!all.is_empty()).then(|| all.join("; "))
    }
}

/// What `sors check` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// What works, one line each ("Salesforce login (org …)").
    pub ok: Vec<String>,
    /// Problems that belong to no mapping row (config, credentials, logins, reading).
    pub problems: Vec<String>,
    /// One row per mapping.
    pub mappings: Vec<MappingCheck>,
    /// Whether CIC answered, so that the workgroup column means something.
    pub cic_checked: bool,
    /// The skills CIC knows, when they could be read.
    pub cic_skills: Option<Vec<String>>,
}

impl CheckReport {
    /// Every problem, general ones first, then those of the mappings (each text once).
    pub fn all_problems(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        for m in &self.mappings {
            for p in [&m.queue_problem, &m.workgroup_problem, &m.skills_problem]
                .into_iter()
                .flatten()
            {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        out
    }
}

/// Runs every check and returns the problems found (empty: all good). What works is printed.
pub async fn check(dir: &Path) -> anyhow::Result<Vec<String>> {
    let report = report(dir).await;
    for line in &report.ok {
        say!("ok    {line}");
    }
    Ok(report.all_problems())
}

/// Every check of a tenant directory, as data.
pub async fn report(dir: &Path) -> CheckReport {
    let cfg = match Config::load(dir) {
        Ok(c) => c,
        Err(e) => {
            return CheckReport {
                problems: vec![format!("config.toml: {e}")],
                ..CheckReport::default()
            };
        }
    };
    let creds = match CredentialStore::open(dir).and_then(|s| s.load()) {
        Ok(c) => c,
        Err(e) => {
            return CheckReport {
                ok: vec!["config.toml".into()],
                problems: vec![format!("credentials: {e}")],
                ..CheckReport::default()
            };
        }
    };
    let mut report = report_for(&cfg, &creds, &Tuning::default(), CLI_CONNECT_WAIT).await;
    report.ok.insert(0, "config.toml".into());
    report
}

/// The checks of a loaded configuration and credentials; a CIC session must come up within
/// `connect_wait`.
pub async fn report_for(
    cfg: &Config,
    creds: &Credentials,
    tuning: &Tuning,
    connect_wait: Duration,
) -> CheckReport {
    let mut report = CheckReport::default();

    // Salesforce: login, mappings against real queues.
    match wiring::salesforce_config(cfg, creds)
        .map(|(l, n)| tuning.salesforce(l, n))
        .and_then(|(l, n)| Ok(Salesforce::new(l, n)?))
    {
        Err(e) => report.problems.push(format!("Salesforce: {e}")),
        Ok(sf) => match sf.login().await {
            Err(e) => report
                .problems
                .push(format!("Salesforce login failed: {e}")),
            Ok(s) => {
                report.ok.push(format!(
                    "Salesforce login (org {}, {})",
                    s.org_id, s.instance_url
                ));
                match sf.queue_mappings().await {
                    Err(e) => report
                        .problems
                        .push(format!("cannot read the queue mappings: {e}")),
                    Ok(maps) if maps.resolved.is_empty() && maps.unresolved.is_empty() => {
                        report.problems.push(
                            "no Interaction Routing Queues rows: no Salesforce queue is monitored"
                                .into(),
                        )
                    }
                    Ok(maps) => {
                        for m in maps.resolved {
                            report.mappings.push(MappingCheck {
                                queue: m.queue_name,
                                workgroup: m.workgroup,
                                ..MappingCheck::default()
                            });
                        }
                        for m in maps.unresolved {
                            report.mappings.push(MappingCheck {
                                queue_problem: Some(format!(
                                    "mapping names the Salesforce queue '{}', which does not exist (names are case-sensitive)",
                                    m.queue_name
                                )),
                                queue: m.queue_name,
                                workgroup: m.workgroup,
                                ..MappingCheck::default()
                            });
                        }
                    }
                }
            }
        },
    }

    // CIC: connect, workgroups and skills.
    match wiring::icws_config(cfg, creds).map(|c| tuning.icws(c)) {
        Err(e) => report.problems.push(format!("CIC: {e}")),
        Ok(icfg) => match Icws::start(icfg) {
            Err(e) => report.problems.push(format!("CIC settings: {e}")),
            Ok((icws, mut events)) => {
                let connected = tokio::time::timeout(connect_wait, async {
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
                        report.ok.push(format!("CIC session on {server}"));
                        check_cic(&icws, &mut report).await;
                    }
                    _ => report.problems.push(format!(
                        "could not connect to CIC ({}) within {} s: {}",
                        cfg.cic.servers.join(", "),
                        connect_wait.as_secs(),
                        icws.status()
                            .last_error
                            .unwrap_or_else(|| "no answer".into())
                    )),
                }
                icws.shutdown().await;
            }
        },
    }
    report
}

async fn check_cic(icws: &Icws, report: &mut CheckReport) {
    match icws.workgroups().await {
        Err(e) => report
            .problems
            .push(format!("cannot read CIC workgroups: {e}")),
        Ok(wgs) => {
            report.cic_checked = true;
            let by_name: HashMap<_, _> =
                wgs.iter().map(|w| (w.name.as_str(), w.acd_email)).collect();
            let mut fine = BTreeSet::new();
            for m in &mut report.mappings {
                let w = m.workgroup.as_str();
                match by_name.get(w) {
                    Some(true) => {
                        fine.insert(w.to_owned());
                    }
                    Some(false) => {
                        m.workgroup_problem =
                            Some(format!("CIC workgroup '{w}' is not an ACD email workgroup"));
                    }
                    None => {
                        m.workgroup_problem = Some(format!(
                            "CIC has no workgroup named '{w}' (names are case-sensitive)"
                        ));
                    }
                }
            }
            for w in fine {
                report
                    .ok
                    .push(format!("CIC workgroup '{w}' routes email through ACD"));
            }
        }
    }
    match icws.skills().await {
        Ok(skills) => {
            report.ok.push(format!("CIC skills: {}", skills.join(", ")));
            report.cic_skills = Some(skills);
        }
        Err(e) => {
            let problem = format!("cannot read CIC skills: {e}");
            if report.mappings.is_empty() {
                report.problems.push(problem);
            } else {
                for m in &mut report.mappings {
                    m.skills_problem = Some(problem.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_listed_once_general_ones_first() {
        let report = CheckReport {
            problems: vec!["Salesforce login failed: x".into()],
            mappings: vec![
                MappingCheck {
                    queue: "A".into(),
                    workgroup: "W".into(),
                    workgroup_problem: Some("CIC has no workgroup named 'W'".into()),
                    ..MappingCheck::default()
                },
                MappingCheck {
                    queue: "B".into(),
                    workgroup: "W".into(),
                    workgroup_problem: Some("CIC has no workgroup named 'W'".into()),
                    skills_problem: Some("cannot read CIC skills: y".into()),
                    ..MappingCheck::default()
                },
                MappingCheck {
                    queue: "C".into(),
                    workgroup: "V".into(),
                    ..MappingCheck::default()
                },
            ],
            ..CheckReport::default()
        };
        assert_eq!(
            report.all_problems(),
            vec![
                "Salesforce login failed: x",
                "CIC has no workgroup named 'W'",
                "cannot read CIC skills: y"
            ]
        );
        assert_eq!(
            report.mappings[1].problem().as_deref(),
            Some("CIC has no workgroup named 'W'; cannot read CIC skills: y")
        );
        assert_eq!(report.mappings[2].problem(), None);
    }
}
