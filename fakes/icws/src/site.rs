//! The simulated CIC site: ICWS login users, skills, workgroups, agents, timings and flags.
//!
//! A site comes from [`SiteSpec::demo`] or from a TOML file (format in the README and in
//! `examples/site.toml`). The spec is validated when it is parsed: every agent skill and
//! workgroup skill must be a declared skill, every workgroup member a declared agent.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Errors reading or validating a site description.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("cannot read site file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid site TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid site: {0}")]
    Invalid(String),
}

/// An ICWS login (the account the router connects with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcwsUser {
    pub user_id: String,
    pub password: String,
    pub display_name: String,
}

/// One skill held by an agent or attached to a workgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkillLevel {
    pub name: String,
    pub proficiency: u32,
    pub desire_to_use: u32,
}

/// A CIC workgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkgroupSpec {
    pub name: String,
    pub has_queue: bool,
    /// 0 None, 1 Custom, 2 GroupRing, 3 Sequential, 4 RoundRobin, 5 ACD.
    pub queue_type: u8,
    pub acd_email_routing: bool,
    /// Agent names.
    pub members: Vec<String>,
    pub skills: Vec<SkillLevel>,
}

impl WorkgroupSpec {
    /// "ACD email routing enabled" ⇔ hasQueue && queueType == 5 && isAcdEmailRoutingActive.
    pub fn routes_acd_email(&self) -> bool {
        self.has_queue && self.queue_type == 5 && self.acd_email_routing
    }
}

/// A CIC user who takes ACD interactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    pub name: String,
    pub display_name: String,
    pub skills: Vec<SkillLevel>,
    /// Available for ACD at start.
    pub available: bool,
    /// How many email interactions the agent takes at once.
    pub utilization: u32,
}

/// Timings of the simulation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timings {
    /// Delay between an interaction being assigned (alerting) and the agent answering it.
    pub answer_delay: Duration,
    /// A session with no request and no open event stream for this long expires (401).
    pub session_idle_ttl: Duration,
    /// Interval of the `:ping` keep-alive comments on event streams.
    pub sse_keepalive: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            answer_delay: Duration::from_secs(3),
            session_idle_ttl: Duration::from_secs(300),
            sse_keepalive: Duration::from_secs(15),
        }
    }
}

/// The whole simulated site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    /// `icServer` reported by the primary / backup server.
    pub primary_name: String,
    pub backup_name: String,
    pub users: Vec<IcwsUser>,
    pub skills: Vec<String>,
    pub workgroups: Vec<WorkgroupSpec>,
    pub agents: Vec<AgentSpec>,
    /// Live interactions survive a switchover (CIC Interaction Recovery).
    pub interaction_recovery: bool,
    /// Live sessions receive a `connectionStateChangeMessage` at a switchover before their 401s.
    pub announce_switchover: bool,
    pub timings: Timings,
}

impl Default for SiteSpec {
    fn default() -> Self {
        SiteSpec::demo()
    }
}

fn skill(name: &str, proficiency: u32) -> SkillLevel {
    SkillLevel {
        name: name.to_owned(),
        proficiency,
        desire_to_use: 50,
    }
}

impl SiteSpec {
    /// The demo site (see the README): user `sors`/`sors`, workgroups Support_EN, Support_FR,
    /// Billing (ACD email) and Operators (ACD, no email routing), skills English, French,
    /// Billing, Premium, agents agent1…agent4, all available.
    pub fn demo() -> SiteSpec {
        let wg =
            |name: &str, email: bool, members: &[&str], skills: Vec<SkillLevel>| WorkgroupSpec {
                name: name.to_owned(),
                has_queue: true,
                queue_type: 5,
                acd_email_routing: email,
                members: members.iter().map(|m| (*m).to_owned()).collect(),
                skills,
            };
        let agent = |name: &str, display: &str, skills: Vec<SkillLevel>| AgentSpec {
            name: name.to_owned(),
            display_name: display.to_owned(),
            skills,
            available: true,
            utilization: 1,
        };
        SiteSpec {
            primary_name: "cic-primary".to_owned(),
            backup_name: "cic-backup".to_owned(),
            users: vec![IcwsUser {
                user_id: "sors".to_owned(),
                password: "sors".to_owned(),
                display_name: "SORS Service".to_owned(),
            }],
            skills: ["English", "French", "Billing", "Premium"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            workgroups: vec![
                wg(
                    "Support_EN",
                    true,
                    &["agent1", "agent2", "agent3", "agent4"],
                    vec![skill("English", 50)],
                ),
                wg("Support_FR", true, &["agent3"], vec![skill("French", 50)]),
                wg(
                    "Billing",
                    true,
                    &["agent4", "agent2"],
                    vec![skill("Billing", 50)],
                ),
                wg("Operators", false, &["agent1", "agent2"], vec![]),
            ],
            agents: vec![
                agent("agent1", "Agent One", vec![skill("English", 80)]),
                agent(
                    "agent2",
                    "Agent Two",
                    vec![skill("English", 60), skill("Premium", 90)],
                ),
                agent(
                    "agent3",
                    "Agent Three",
                    vec![skill("French", 90), skill("English", 40)],
                ),
                agent(
                    "agent4",
                    "Agent Four",
                    vec![skill("Billing", 90), skill("English", 50)],
                ),
            ],
            interaction_recovery: true,
            announce_switchover: true,
            timings: Timings::default(),
        }
    }

    /// Reads and validates a site TOML file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<SiteSpec, SiteError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SiteError::Read {
            path: path.display().to_string(),
            source,
        })?;
        SiteSpec::from_toml_str(&text)
    }

    /// Parses and validates a site TOML document.
    pub fn from_toml_str(text: &str) -> Result<SiteSpec, SiteError> {
        let file: SiteFile = toml::from_str(text)?;
        let spec = file.into_spec();
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the cross references (skills, members) and name uniqueness.
    pub fn validate(&self) -> Result<(), SiteError> {
        let invalid = |m: String| Err(SiteError::Invalid(m));
        if self.users.is_empty() {
            return invalid("at least one [[users]] entry is needed".into());
        }
        let skills: HashSet<&str> = self.skills.iter().map(String::as_str).collect();
        if skills.len() != self.skills.len() {
            return invalid("duplicate skill name".into());
        }
        let mut agents = HashSet::new();
        for a in &self.agents {
            if !agents.insert(a.name.as_str()) {
                return invalid(format!("duplicate agent {}", a.name));
            }
            if a.utilization == 0 {
                return invalid(format!("agent {}: utilization must be at least 1", a.name));
            }
            for s in &a.skills {
                if !skills.contains(s.name.as_str()) {
                    return invalid(format!("agent {}: unknown skill {}", a.name, s.name));
                }
            }
        }
        let mut wgs = HashSet::new();
        for w in &self.workgroups {
            if !wgs.insert(w.name.as_str()) {
                return invalid(format!("duplicate workgroup {}", w.name));
            }
            for m in &w.members {
                if !agents.contains(m.as_str()) {
                    return invalid(format!("workgroup {}: unknown member {m}", w.name));
                }
            }
            for s in &w.skills {
                if !skills.contains(s.name.as_str()) {
                    return invalid(format!("workgroup {}: unknown skill {}", w.name, s.name));
                }
            }
        }
        Ok(())
    }
}

// ---- TOML shape -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    #[serde(default = "default_primary_name")]
    primary_name: String,
    #[serde(default = "default_backup_name")]
    backup_name: String,
    #[serde(default = "yes")]
    interaction_recovery: bool,
    #[serde(default = "yes")]
    announce_switchover: bool,
    #[serde(default)]
    skills: Vec<String>,
    #[serde(default)]
    timings: TimingsFile,
    #[serde(default)]
    users: Vec<UserFile>,
    #[serde(default)]
    workgroups: Vec<WorkgroupFile>,
    #[serde(default)]
    agents: Vec<AgentFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimingsFile {
    answer_delay_ms: Option<u64>,
    session_idle_ttl_ms: Option<u64>,
    sse_keepalive_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    user_id: String,
    password: String,
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkillFile {
    name: String,
    #[serde(default = "default_level")]
    proficiency: u32,
    #[serde(default = "default_level")]
    desire_to_use: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkgroupFile {
    name: String,
    #[serde(default = "yes")]
    has_queue: bool,
    #[serde(default = "default_queue_type")]
    queue_type: u8,
    #[serde(default = "yes")]
    acd_email_routing: bool,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    skills: Vec<SkillFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    name: String,
    display_name: Option<String>,
    #[serde(default)]
    skills: Vec<SkillFile>,
    #[serde(default = "yes")]
    available: bool,
    #[serde(default = "default_utilization")]
    utilization: u32,
}

fn yes() -> bool {
    true
}
fn default_primary_name() -> String {
    "cic-primary".to_owned()
}
fn default_backup_name() -> String {
    "cic-backup".to_owned()
}
fn default_level() -> u32 {
    50
}
fn default_queue_type() -> u8 {
    5
}
fn default_utilization() -> u32 {
    1
}

fn skills(list: Vec<SkillFile>) -> Vec<SkillLevel> {
    list.into_iter()
        .map(|s| SkillLevel {
            name: s.name,
            proficiency: s.proficiency,
            desire_to_use: s.desire_to_use,
        })
        .collect()
}

impl SiteFile {
    fn into_spec(self) -> SiteSpec {
        let d = Timings::default();
        let ms = |v: Option<u64>, def: Duration| v.map(Duration::from_millis).unwrap_or(def);
        SiteSpec {
            primary_name: self.primary_name,
            backup_name: self.backup_name,
            users: self
                .users
                .into_iter()
                .map(|u| IcwsUser {
                    display_name: u.display_name.unwrap_or_else(|| u.user_id.clone()),
                    user_id: u.user_id,
                    password: u.password,
                })
                .collect(),
            skills: self.skills,
            workgroups: self
                .workgroups
                .into_iter()
                .map(|w| WorkgroupSpec {
                    name: w.name,
                    has_queue: w.has_queue,
                    queue_type: w.queue_type,
                    acd_email_routing: w.acd_email_routing,
                    members: w.members,
                    skills: skills(w.skills),
                })
                .collect(),
            agents: self
                .agents
                .into_iter()
                .map(|a| AgentSpec {
                    display_name: a.display_name.unwrap_or_else(|| a.name.clone()),
                    name: a.name,
                    skills: skills(a.skills),
                    available: a.available,
                    utilization: a.utilization,
                })
                .collect(),
            interaction_recovery: self.interaction_recovery,
            announce_switchover: self.announce_switchover,
            timings: Timings {
                answer_delay: ms(self.timings.answer_delay_ms, d.answer_delay),
                session_idle_ttl: ms(self.timings.session_idle_ttl_ms, d.session_idle_ttl),
                sse_keepalive: ms(self.timings.sse_keepalive_ms, d.sse_keepalive),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid() {
        assert!(SiteSpec::demo().validate().is_ok());
    }

    #[test]
    fn unknown_agent_skill_is_rejected() {
        let text = r#"
            skills = ["English"]
            [[users]]
            user_id = "u"
            password = "p"
            [[agents]]
            name = "a"
            skills = [{ name = "Klingon" }]
        "#;
        let err = SiteSpec::from_toml_str(text).unwrap_err();
        assert!(err.to_string().contains("Klingon"), "{err}");
    }

    #[test]
    fn unknown_member_is_rejected() {
        let text = r#"
            [[users]]
            user_id = "u"
            password = "p"
            [[workgroups]]
            name = "W"
            members = ["ghost"]
        "#;
        let err = SiteSpec::from_toml_str(text).unwrap_err();
        assert!(err.to_string().contains("ghost"), "{err}");
    }
}
