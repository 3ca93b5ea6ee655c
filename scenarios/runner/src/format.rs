//! The scenario file format: parsing and validation. Every step and expectation is a plain
//! struct with `deny_unknown_fields`, so a misspelt key is an error naming the file, the step's
//! line and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sors_fake_icws::{SiteSpec, Which};
use sors_fake_salesforce::{InjectedError, OrgSpec};

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Toml { file: PathBuf, message: String },
    #[error("{file}: step {step} (line {line}): {message}")]
    Step {
        file: PathBuf,
        step: usize,
        line: usize,
        message: String,
    },
    #[error("{file}: [{section}]: {message}")]
    Section {
        file: PathBuf,
        section: &'static str,
        message: String,
    },
}

/// One parsed scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub file: PathBuf,
    /// The file name without `.toml`.
    pub name: String,
    pub title: String,
    pub description: String,
    /// Set when the router is known to get this story wrong: a failure is reported, not fatal.
    pub known_failure: Option<String>,
    /// Default deadline of expectations.
    pub timeout: Duration,
    pub org: OrgSpec,
    pub site: SiteSpec,
    pub router: RouterSettings,
    /// Start the router before the first step (default true).
    pub start_router: bool,
    pub steps: Vec<Step>,
}

/// One step: what it does, an optional one-line comment, and where it is in the file.
#[derive(Clone, Debug)]
pub struct Step {
    pub line: usize,
    pub say: Option<String>,
    pub kind: StepKind,
}

#[derive(Clone, Debug)]
pub enum StepKind {
    Do(Action),
    Expect(Expectation),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    title: String,
    description: String,
    known_failure: Option<String>,
    /// Seconds.
    timeout: Option<u64>,
    org: Option<toml::Table>,
    site: Option<toml::Table>,
    router: Option<toml::Table>,
    #[serde(default)]
    step: Vec<toml::Spanned<toml::Table>>,
}

/// Router settings a scenario may change (`[router]`, `do = "router_set"`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    /// Start from the production defaults (`sors serve` with an empty `[routing]`) instead of
    /// the test bed's fast timings; the other keys still apply on top. For measurements.
    pub production_timings: Option<bool>,
    pub auto_disconnect_on_reply: Option<bool>,
    pub reroute_lost_on_switchover: Option<bool>,
    pub max_attempts: Option<u32>,
    pub route_timeout_ms: Option<u64>,
    pub retry_backoff_ms: Option<u64>,
    pub sweep_interval_ms: Option<u64>,
    /// Milliseconds between reconciliations; 0 turns them off.
    pub reconcile_interval_ms: Option<u64>,
}

impl RouterSettings {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k} = {v}"));
            }
        };
        add(
            "production_timings",
            self.production_timings.map(|v| v.to_string()),
        );
        add(
            "auto_disconnect_on_reply",
            self.auto_disconnect_on_reply.map(|v| v.to_string()),
        );
        add(
            "reroute_lost_on_switchover",
            self.reroute_lost_on_switchover.map(|v| v.to_string()),
        );
        add("max_attempts", self.max_attempts.map(|v| v.to_string()));
        add(
            "route_timeout_ms",
            self.route_timeout_ms.map(|v| v.to_string()),
        );
        add(
            "retry_backoff_ms",
            self.retry_backoff_ms.map(|v| v.to_string()),
        );
        add(
            "sweep_interval_ms",
            self.sweep_interval_ms.map(|v| v.to_string()),
        );
        add(
            "reconcile_interval_ms",
            self.reconcile_interval_ms.map(|v| v.to_string()),
        );
        parts.join(", ")
    }
}

/// Something the scenario does (`do = "…"`).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    // --- Salesforce: people and customers ---
    /// Email-to-Case creates a case owned by `queue` (or by the user `owner`).
    NewCase {
        case: String,
        queue: Option<String>,
        owner: Option<String>,
        #[serde(default)]
        skills: String,
        subject: Option<String>,
        #[serde(rename = "as")]
        actor: Option<String>,
    },
    /// `count` cases named `{prefix}1` … `{prefix}{count}` in `queue`, created back to back.
    Burst {
        prefix: String,
        count: u32,
        queue: String,
        #[serde(default)]
        skills: String,
    },
    /// The case's owner becomes a queue or a user.
    Assign {
        case: String,
        queue: Option<String>,
        user: Option<String>,
        #[serde(rename = "as")]
        actor: Option<String>,
    },
    /// A CaseComment written by `as`.
    Comment {
        case: String,
        #[serde(rename = "as")]
        actor: String,
    },
    /// The customer writes again (incoming EmailMessage).
    IncomingEmail {
        case: String,
    },
    /// An agent answers the customer (outgoing EmailMessage written by `as`).
    AgentReply {
        case: String,
        #[serde(rename = "as")]
        actor: String,
    },
    SetSkills {
        case: String,
        skills: String,
        #[serde(rename = "as")]
        actor: Option<String>,
    },
    CloseCase {
        case: String,
        #[serde(rename = "as")]
        actor: Option<String>,
    },
    DeleteCase {
        case: String,
    },
    /// An admin adds an `Interaction_Routing_Queue__c` row (the router reads mappings at every
    /// sweep).
    AddMapping {
        queue: String,
        workgroup: String,
    },

    // --- CIC ---
    /// The standby takes over; `recovery` overrides the site's interaction recovery once.
    Switchover {
        recovery: Option<bool>,
    },
    StopServer {
        server: Server,
    },
    StartServer {
        server: Server,
    },
    AgentAvailable {
        agent: String,
        available: bool,
    },
    /// Every ICWS session is dropped without a message.
    EndCicSessions,

    // --- faults ---
    ExpireSessions,
    ForgetStreaming {
        #[serde(default)]
        advice: Advice,
    },
    DropPushes {
        on: bool,
    },
    SandboxRefresh,
    DeletePushtopic,
    /// The channel's retained events are cleared and every streaming client forgotten, so the
    /// router's next subscribe carries a replay id Salesforce no longer knows.
    InvalidateReplay,
    SfLatency {
        ms: u64,
    },
    CicLatency {
        ms: u64,
    },
    SfFailNext {
        kind: sors_fake_salesforce::CallKind,
        #[serde(default = "one")]
        count: u32,
        error: SfError,
    },
    CicFailNext {
        kind: sors_fake_icws::CallKind,
        #[serde(default = "one")]
        count: u32,
        status: u16,
    },

    // --- the router ---
    RouterStart,
    RouterStop,
    RouterKill,
    RouterRestart,
    /// Changes settings; a running router is restarted gracefully to take them.
    RouterSet(RouterSettings),

    // --- time ---
    /// Lets time pass (for faults that last "a while"); never used to assert.
    Wait {
        seconds: f64,
    },
}

fn one() -> u32 {
    1
}

/// The errors the fake Salesforce can inject, as written in scenario files.
#[derive(Clone, Copy, Debug, Deserialize)]
pub enum SfError {
    #[serde(rename = "503")]
    ServiceUnavailable,
    #[serde(rename = "REQUEST_LIMIT_EXCEEDED")]
    RequestLimitExceeded,
    #[serde(rename = "UNABLE_TO_LOCK_ROW")]
    UnableToLockRow,
}

impl SfError {
    pub fn injected(self) -> InjectedError {
        match self {
            SfError::ServiceUnavailable => InjectedError::ServiceUnavailable,
            SfError::RequestLimitExceeded => InjectedError::RequestLimitExceeded,
            SfError::UnableToLockRow => InjectedError::UnableToLockRow,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Advice {
    #[default]
    Handshake,
    None,
}

/// A CIC server: by role or by name.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Server {
    Primary,
    Backup,
    /// Whichever is active when the step runs.
    Active,
    Standby,
}

impl Server {
    pub fn resolve(self, active: Which) -> Which {
        let other = match active {
            Which::Primary => Which::Backup,
            Which::Backup => Which::Primary,
        };
        match self {
            Server::Primary => Which::Primary,
            Server::Backup => Which::Backup,
            Server::Active => active,
            Server::Standby => other,
        }
    }
}

/// Something that must become true before a deadline (`expect = "…"`). A `case` ending in `*`
/// matches every case whose name starts with the rest (e.g. `b*` for a burst).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "expect", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// One routing row of the case: the `nth` (1 = oldest; default the newest).
    Row {
        case: String,
        nth: Option<usize>,
        /// How many rows the case has.
        rows: Option<usize>,
        event: Option<String>,
        status: Option<String>,
        /// Text `Error__c` must contain.
        error: Option<String>,
        attempts: Option<u64>,
        /// `live` (the case's one live interaction), `none` (empty), `set` (any), or
        /// `row N` (the same id as the case's row N).
        interaction: Option<String>,
        within: Option<f64>,
        hold: Option<f64>,
    },
    /// Every routing row (of `case`, or of the whole org).
    Rows {
        case: Option<String>,
        count: Option<usize>,
        status: Option<String>,
        #[serde(default)]
        all_final: bool,
        within: Option<f64>,
        hold: Option<f64>,
    },
    /// The case's live interactions in CIC.
    Live {
        case: String,
        #[serde(default = "one_usize")]
        count: usize,
        workgroup: Option<String>,
        skills: Option<String>,
        /// The agent it is offered to / connected with; `"nobody"` = waiting in the queue.
        agent: Option<String>,
        not_agent: Option<String>,
        within: Option<f64>,
        hold: Option<f64>,
    },
    /// Interactions ever created in CIC (live, disconnected or lost) for a case, or in all.
    Interactions {
        case: Option<String>,
        created: Option<usize>,
        lost: Option<usize>,
        within: Option<f64>,
        hold: Option<f64>,
    },
    /// An alert on the router's status (kind: push_lost, switchover, resync, push_topic,
    /// relogin, failed_row, reconciled, other_router, config_drift).
    Alert {
        kind: Option<String>,
        contains: Option<String>,
        within: Option<f64>,
    },
    /// A counter: `cic.<name>`, `sf.api.<kind>`, `sf.events.<name>`, `sf.api_total`,
    /// `router.<path in the heartbeat document>`.
    Counter {
        name: String,
        equals: Option<u64>,
        at_least: Option<u64>,
        at_most: Option<u64>,
        within: Option<f64>,
        hold: Option<f64>,
    },
    /// The PushTopic record in Salesforce.
    Pushtopic { exists: bool, within: Option<f64> },
    /// The router's own status: `status` (`up`/`degraded`), `streaming`, `cic_server`.
    Router {
        status: Option<String>,
        streaming: Option<String>,
        cic_backup: Option<bool>,
        within: Option<f64>,
    },
}

fn one_usize() -> usize {
    1
}

impl Expectation {
    /// (deadline, hold) in seconds, if the step set them.
    pub fn timing(&self) -> (Option<f64>, Option<f64>) {
        match self {
            Expectation::Row { within, hold, .. }
            | Expectation::Rows { within, hold, .. }
            | Expectation::Live { within, hold, .. }
            | Expectation::Interactions { within, hold, .. }
            | Expectation::Counter { within, hold, .. } => (*within, *hold),
            Expectation::Alert { within, .. }
            | Expectation::Pushtopic { within, .. }
            | Expectation::Router { within, .. } => (*within, None),
        }
    }
}

/// Reads and validates one scenario file.
pub fn load(path: &Path) -> Result<Scenario, FormatError> {
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Read {
        file: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses scenario text; `path` names it in errors and anchors relative `file = …` paths.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, FormatError> {
    let file = path.to_owned();
    let spec: FileSpec = toml::from_str(text).map_err(|e| FormatError::Toml {
        file: file.clone(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let org = match spec.org {
        None => OrgSpec::demo(),
        Some(t) => load_org(base, t).map_err(|message| FormatError::Section {
            file: file.clone(),
            section: "org",
            message,
        })?,
    };
    let site = match spec.site {
        None => SiteSpec::demo(),
        Some(t) => load_site(base, t).map_err(|message| FormatError::Section {
            file: file.clone(),
            section: "site",
            message,
        })?,
    };
    if org.users.is_empty() || site.users.is_empty() {
        return Err(FormatError::Section {
            file,
            section: "org",
            message:
                "the org and the site need at least one user (the router logs in as the first)"
                    .into(),
        });
    }
    let mut steps = Vec::new();
    for (i, spanned) in spec.step.into_iter().enumerate() {
        let line = line_of(text, spanned.span().start);
        let step_err = |message: String| FormatError::Step {
            file: file.clone(),
            step: i + 1,
            line,
            message,
        };
        let mut table = spanned.into_inner();
        let say = match table.remove("say") {
            None => None,
            Some(toml::Value::String(s)) => Some(s),
            Some(_) => return Err(step_err("`say` must be a string".into())),
        };
        let kind = match (table.contains_key("do"), table.contains_key("expect")) {
            (true, false) => StepKind::Do(
                Action::deserialize(toml::Value::Table(table))
                    .map_err(|e| step_err(e.to_string().trim_end().to_owned()))?,
            ),
            (false, true) => StepKind::Expect(
                Expectation::deserialize(toml::Value::Table(table))
                    .map_err(|e| step_err(e.to_string().trim_end().to_owned()))?,
            ),
            _ => {
                return Err(step_err(
                    "a step needs exactly one of `do = \"…\"` or `expect = \"…\"`".into(),
                ));
            }
        };
        check_step(&kind).map_err(step_err)?;
        steps.push(Step { line, say, kind });
    }
    if steps.is_empty() {
        return Err(FormatError::Toml {
            file,
            message: "no [[step]]: a scenario needs at least one step".into(),
        });
    }
    let (start_router, router) = match spec.router {
        None => (true, RouterSettings::default()),
        Some(mut t) => {
            let section_err = |message: String| FormatError::Section {
                file: file.clone(),
                section: "router",
                message,
            };
            let start = match t.remove("start") {
                None => true,
                Some(toml::Value::Boolean(b)) => b,
                Some(_) => return Err(section_err("`start` must be true or false".into())),
            };
            let settings = RouterSettings::deserialize(toml::Value::Table(t))
                .map_err(|e| section_err(e.to_string().trim_end().to_owned()))?;
            (start, settings)
        }
    };
    Ok(Scenario {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        file,
        title: spec.title,
        description: spec.description,
        known_failure: spec.known_failure,
        timeout: Duration::from_secs(spec.timeout.unwrap_or(20)),
        org,
        site,
        router,
        start_router,
        steps,
    })
}

/// Rules serde cannot express: exactly one owner, sane numbers.
fn check_step(kind: &StepKind) -> Result<(), String> {
    match kind {
        StepKind::Do(Action::NewCase { queue, owner, .. })
            if queue.is_some() == owner.is_some() =>
        {
            Err("new_case needs exactly one of `queue` or `owner`".into())
        }
        StepKind::Do(Action::Assign { queue, user, .. }) if queue.is_some() == user.is_some() => {
            Err("assign needs exactly one of `queue` or `user`".into())
        }
        StepKind::Do(Action::Wait { seconds }) if !(0.0..=600.0).contains(seconds) => {
            Err("wait: `seconds` must be between 0 and 600".into())
        }
        StepKind::Do(Action::Burst { count, .. }) if *count == 0 || *count > 500 => {
            Err("burst: `count` must be between 1 and 500".into())
        }
        StepKind::Expect(e) => {
            let (within, hold) = e.timing();
            for (k, v) in [("within", within), ("hold", hold)] {
                if let Some(v) = v
                    && !(0.0..=600.0).contains(&v)
                {
                    return Err(format!("`{k}` must be between 0 and 600 seconds"));
                }
            }
            if let Expectation::Row { nth: Some(0), .. } = e {
                return Err("`nth` counts from 1 (the oldest row)".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn load_org(base: &Path, t: toml::Table) -> Result<OrgSpec, String> {
    match file_key(&t)? {
        Some(f) => OrgSpec::from_toml_file(base.join(f)).map_err(|e| e.to_string()),
        None => {
            let text = toml::to_string(&t).map_err(|e| e.to_string())?;
            OrgSpec::from_toml_str(&text).map_err(|e| e.to_string())
        }
    }
}

fn load_site(base: &Path, t: toml::Table) -> Result<SiteSpec, String> {
    match file_key(&t)? {
        Some(f) => SiteSpec::from_toml_file(base.join(f)).map_err(|e| e.to_string()),
        None => {
            let text = toml::to_string(&t).map_err(|e| e.to_string())?;
            SiteSpec::from_toml_str(&text).map_err(|e| e.to_string())
        }
    }
}

/// `file = "…"` alone, or an inline description without `file`.
fn file_key(t: &toml::Table) -> Result<Option<&str>, String> {
    match t.get("file") {
        None => Ok(None),
        Some(toml::Value::String(f)) if t.len() == 1 => Ok(Some(f)),
        Some(toml::Value::String(_)) => {
            Err("`file` cannot be mixed with inline keys: use one or the other".into())
        }
        Some(_) => Err("`file` must be a path string".into()),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|s| s.matches('\n').count() + 1)
        .unwrap_or(1)
}

/// Every `*.toml` scenario in `dir` (not `Cargo.toml`), sorted by name.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, FormatError> {
    let entries = std::fs::read_dir(dir).map_err(|source| FormatError::Read {
        file: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.file_name().is_some_and(|n| n != "Cargo.toml")
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
title = "t"
description = "d"

[[step]]
say = "a case"
do = "new_case"
case = "c1"
queue = "Support EN"

[[step]]
expect = "row"
case = "c1"
status = "Processed"
"#;

    #[test]
    fn a_minimal_file_parses_with_the_demo_org_and_site() {
        let s = parse(Path::new("x/min.toml"), MINIMAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, "min");
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].line, 5);
        assert_eq!(s.steps[1].line, 11);
        assert_eq!(s.steps[0].say.as_deref(), Some("a case"));
        assert!(matches!(
            s.steps[1].kind,
            StepKind::Expect(Expectation::Row { .. })
        ));
        assert_eq!(s.org, OrgSpec::demo());
        assert!(s.start_router);
    }

    #[test]
    fn an_unknown_key_in_a_step_names_file_line_and_key() {
        let text = MINIMAL.replace("status = \"Processed\"", "statsu = \"Processed\"");
        let err = parse(Path::new("x/bad.toml"), &text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("x/bad.toml"), "{err}");
        assert!(err.contains("line 11"), "{err}");
        assert!(err.contains("statsu"), "{err}");
    }

    #[test]
    fn an_unknown_top_level_key_names_the_line() {
        let text = format!("colour = \"blue\"\n{MINIMAL}");
        let err = parse(Path::new("bad.toml"), &text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn an_unknown_step_kind_is_an_error_not_a_panic() {
        let text = MINIMAL.replace("do = \"new_case\"", "do = \"make_coffee\"");
        let err = parse(Path::new("bad.toml"), &text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("make_coffee"), "{err}");
        assert!(err.contains("step 1 (line 5)"), "{err}");
    }

    #[test]
    fn malformed_toml_is_an_error() {
        let err = parse(Path::new("bad.toml"), "title = \n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bad.toml") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_step_with_both_do_and_expect_is_refused() {
        let text = MINIMAL.replace("expect = \"row\"", "expect = \"row\"\ndo = \"wait\"");
        let err = parse(Path::new("bad.toml"), &text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("exactly one of"), "{err}");
    }

    #[test]
    fn router_settings_and_an_inline_site_parse() {
        let text = format!(
            "{MINIMAL}\n[router]\nauto_disconnect_on_reply = false\n\n[site]\nskills = [\"English\"]\n[[site.users]]\nuser_id = \"sors\"\npassword = \"sors\"\n"
        );
        let s = parse(Path::new("x.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.router.auto_disconnect_on_reply, Some(false));
        assert_eq!(s.site.skills, vec!["English".to_owned()]);
        let bad = format!("{MINIMAL}\n[router]\nauto_disconect_on_reply = false\n");
        let err = parse(Path::new("x.toml"), &bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("auto_disconect_on_reply"), "{err}");
    }
}
