//! The trigger rules of TRIGGER.md, as data: every case of `salesforce/rules/trigger-rules.toml`
//! run through a fake org, with the public API only (an org built from an org file, `act_as`
//! writes, `query`). The same file generates the Apex package's `TriggerRulesGeneratedTest`
//! (salesforce/scripts/generate-apex-tests.mjs), so a rule changed there fails here until the
//! fake follows.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sors_fake_salesforce::{FakeSalesforce, FakeSalesforceConfig, OrgActor, OrgSpec};

// ------------------------------------------------------------------ the rules file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rules {
    schema: u32,
    queue: Vec<QueueDef>,
    #[serde(default)]
    group: Vec<GroupDef>,
    case: Vec<RuleCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueDef {
    key: String,
    name: String,
    workgroup: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDef {
    key: String,
    name: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleCase {
    id: String,
    rule: String,
    title: String,
    step: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    InsertCase,
    UpdateCase,
    DeleteCase,
    InsertComment,
    InsertEmail,
    InsertMapping,
    UpdateMapping,
    DeleteMapping,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(rename = "do")]
    action: Option<Action>,
    #[serde(rename = "as")]
    actor: Option<String>,
    case: Option<String>,
    mapping: Option<String>,
    owner: Option<String>,
    status: Option<String>,
    subject: Option<String>,
    supplied_email: Option<String>,
    supplied_name: Option<String>,
    skills: Option<String>,
    incoming: Option<bool>,
    queue_name: Option<String>,
    workgroup: Option<String>,
    queue_id: Option<String>,
    rows: Option<Vec<ExpectedRow>>,
    error: Option<String>,
    error_field: Option<String>,
    mapping_queue: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedRow {
    event: String,
    queue: String,
    workgroup: String,
}

impl Action {
    /// The name the rules file uses (`do = "..."`).
    fn name(self) -> &'static str {
        match self {
            Action::InsertCase => "insert_case",
            Action::UpdateCase => "update_case",
            Action::DeleteCase => "delete_case",
            Action::InsertComment => "insert_comment",
            Action::InsertEmail => "insert_email",
            Action::InsertMapping => "insert_mapping",
            Action::UpdateMapping => "update_mapping",
            Action::DeleteMapping => "delete_mapping",
        }
    }
}

impl std::fmt::Display for ExpectedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.event, self.queue, self.workgroup)
    }
}

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

const RULES_FILE: &str = "salesforce/rules/trigger-rules.toml";

fn rules() -> Rules {
    let path = repo_file(RULES_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{RULES_FILE}: {e}"))
}

const ACTORS: [&str; 2] = ["admin", "agent"];
const STATUSES: [&str; 2] = ["New", "Closed"];
const CASE_FIELDS: [&str; 6] = [
    "owner",
    "status",
    "subject",
    "supplied_email",
    "supplied_name",
    "skills",
];

/// What the file must say for both implementations to read it the same way (the Apex
/// generator makes the same checks).
fn check_rules_file(r: &Rules) -> Vec<String> {
    let mut bad = Vec::new();
    if r.schema != 1 {
        bad.push(format!("schema {} (this test reads schema 1)", r.schema));
    }
    let queues: BTreeSet<&str> = r.queue.iter().map(|q| q.key.as_str()).collect();
    let mut ids = BTreeSet::new();
    for c in &r.case {
        let at = |i: usize, msg: String| format!("case {} step {}: {msg}", c.id, i + 1);
        let snake = c.id.split('_').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        }) && c.id.starts_with(|ch: char| ch.is_ascii_lowercase());
        if !snake || c.id.len() > 100 {
            bad.push(format!(
                "case id {:?} is not snake_case (≤ 100 chars)",
                c.id
            ));
        }
        if !ids.insert(c.id.as_str()) {
            bad.push(format!("case id {:?} is used twice", c.id));
        }
        if c.title.trim().is_empty() {
            bad.push(format!("case {} has no title", c.id));
        }
        if c.step.is_empty() {
            bad.push(format!("case {} has no step", c.id));
        }
        let mut cases = BTreeSet::new();
        let mut mappings = BTreeSet::new();
        for (i, s) in c.step.iter().enumerate() {
            let Some(action) = s.action else {
                bad.push(at(i, "no `do`".into()));
                continue;
            };
            if let Some(a) = &s.actor
                && !ACTORS.contains(&a.as_str())
            {
                bad.push(at(i, format!("unknown user {a:?}")));
            }
            match (&s.rows, &s.error) {
                (Some(_), Some(_)) => bad.push(at(i, "both `rows` and `error`".into())),
                (None, None) => bad.push(at(i, "says neither `rows` nor `error`".into())),
                _ => {}
            }
            if s.error_field.is_some() && s.error.is_none() {
                bad.push(at(i, "`error_field` without `error`".into()));
            }
            for row in s.rows.iter().flatten() {
                if !queues.contains(row.queue.as_str()) {
                    bad.push(at(i, format!("row names unknown queue {:?}", row.queue)));
                }
            }
            let is_case_step = matches!(
                action,
                Action::InsertCase
                    | Action::UpdateCase
                    | Action::DeleteCase
                    | Action::InsertComment
                    | Action::InsertEmail
            );
            let has = |name: &str| match name {
                "case" => s.case.is_some(),
                "mapping" => s.mapping.is_some(),
                "owner" => s.owner.is_some(),
                "status" => s.status.is_some(),
                "subject" => s.subject.is_some(),
                "supplied_email" => s.supplied_email.is_some(),
                "supplied_name" => s.supplied_name.is_some(),
                "skills" => s.skills.is_some(),
                "incoming" => s.incoming.is_some(),
                "queue_name" => s.queue_name.is_some(),
                "workgroup" => s.workgroup.is_some(),
                "queue_id" => s.queue_id.is_some(),
                "mapping_queue" => s.mapping_queue.is_some(),
                _ => false,
            };
            let allowed: &[&str] = match action {
                Action::InsertCase | Action::UpdateCase => &[
                    "case",
                    "owner",
                    "status",
                    "subject",
                    "supplied_email",
                    "supplied_name",
                    "skills",
                ],
                Action::DeleteCase | Action::InsertComment => &["case"],
                Action::InsertEmail => &["case", "incoming"],
                Action::InsertMapping => &[
                    "mapping",
                    "queue_name",
                    "workgroup",
                    "queue_id",
                    "mapping_queue",
                ],
                Action::UpdateMapping => &["mapping", "queue_name", "workgroup", "mapping_queue"],
                Action::DeleteMapping => &["mapping"],
            };
            for name in [
                "case",
                "mapping",
                "owner",
                "status",
                "subject",
                "supplied_email",
                "supplied_name",
                "skills",
                "incoming",
                "queue_name",
                "workgroup",
                "queue_id",
                "mapping_queue",
            ] {
                if has(name) && !allowed.contains(&name) {
                    bad.push(at(i, format!("`{name}` does not belong to {action:?}")));
                }
            }
            let required: &[&str] = match action {
                Action::InsertEmail => &["case", "incoming"],
                Action::InsertMapping => &["mapping", "queue_name", "workgroup"],
                _ if is_case_step => &["case"],
                _ => &["mapping"],
            };
            for name in required {
                if !has(name) {
                    bad.push(at(i, format!("{action:?} needs `{name}`")));
                }
            }
            if action == Action::UpdateCase && !CASE_FIELDS.iter().any(|f| has(f)) {
                bad.push(at(i, "update_case changes nothing".into()));
            }
            if let Some(st) = &s.status
                && !STATUSES.contains(&st.as_str())
            {
                bad.push(at(i, format!("status {st:?} is not one of {STATUSES:?}")));
            }
            if let Some(o) = &s.owner {
                let ok = match o.split_once(':') {
                    Some(("queue", k)) => queues.contains(k),
                    Some(("user", u)) => ACTORS.contains(&u),
                    _ => false,
                };
                if !ok {
                    bad.push(at(
                        i,
                        format!("owner {o:?} is not queue:KEY or user:admin|agent"),
                    ));
                }
            }
            if let Some(q) = &s.mapping_queue
                && !queues.contains(q.as_str())
            {
                bad.push(at(i, format!("mapping_queue names unknown queue {q:?}")));
            }
            if let Some(label) = &s.case {
                let known = cases.contains(label.as_str());
                match action {
                    Action::InsertCase if known => {
                        bad.push(at(i, format!("case {label:?} is inserted twice")))
                    }
                    Action::InsertCase => {
                        cases.insert(label.as_str());
                    }
                    _ if !known => {
                        bad.push(at(i, format!("case {label:?} is not inserted before")))
                    }
                    _ => {}
                }
            }
            if let Some(label) = &s.mapping {
                match label.strip_prefix("world:") {
                    Some(k) => {
                        let mapped = r.queue.iter().any(|q| q.key == k && q.workgroup.is_some());
                        if action == Action::InsertMapping || !mapped {
                            bad.push(at(
                                i,
                                format!("{label:?} is not a world mapping to {action:?}"),
                            ));
                        }
                    }
                    None if action == Action::InsertMapping => {
                        mappings.insert(label.as_str());
                    }
                    None if !mappings.contains(label.as_str()) => {
                        bad.push(at(i, format!("mapping {label:?} is not inserted before")))
                    }
                    None => {}
                }
            }
        }
    }
    bad
}

// ------------------------------------------------------------------ running a case in the fake

const ADMIN: &str = "admin@rules.sors.test";
const AGENT: &str = "agent@rules.sors.test";
const ROW_FIELDS: &str = "Id, Case__c, Event__c, Status__c, Attempts__c, Salesforce_Queue_Id__c, Workgroup__c, Skills__c, Case_Number__c, Subject__c, From_Address__c, From_Name__c, Interaction_Id__c, Error__c, CreatedById";
/// Row field ← case field, copied "from the case as it is at that moment".
const COPIED: [(&str, &str); 5] = [
    ("Case_Number__c", "CaseNumber"),
    ("Subject__c", "Subject"),
    ("From_Address__c", "SuppliedEmail"),
    ("From_Name__c", "SuppliedName"),
    ("Skills__c", "ObjectRouting_Skills__c"),
];

/// The org file (README "Org file") of the rules' world.
#[derive(Serialize)]
struct OrgFile {
    name: String,
    users: Vec<OrgUser>,
    queues: Vec<OrgQueue>,
    mappings: Vec<OrgMapping>,
}

#[derive(Serialize)]
struct OrgUser {
    username: String,
    password: String,
    last_name: String,
}

#[derive(Serialize)]
struct OrgQueue {
    name: String,
}

#[derive(Serialize)]
struct OrgMapping {
    queue: String,
    workgroup: String,
}

fn world_org(r: &Rules) -> OrgSpec {
    let user = |username: &str, last: &str| OrgUser {
        username: username.into(),
        password: "rules".into(),
        last_name: last.into(),
    };
    let file = OrgFile {
        name: "SORS trigger rules".into(),
        // The first user creates the org's records: "admin".
        users: vec![user(ADMIN, "Admin"), user(AGENT, "Agent")],
        queues: r
            .queue
            .iter()
            .map(|q| OrgQueue {
                name: q.name.clone(),
            })
            .collect(),
        mappings: r
            .queue
            .iter()
            .filter_map(|q| {
                Some(OrgMapping {
                    queue: q.name.clone(),
                    workgroup: q.workgroup.clone()?,
                })
            })
            .collect(),
    };
    let text = toml::to_string(&file).unwrap_or_else(|e| panic!("org file: {e}"));
    OrgSpec::from_toml_str(&text).unwrap_or_else(|e| panic!("org file: {e}\n{text}"))
}

struct World {
    sf: FakeSalesforce,
    actors: HashMap<&'static str, OrgActor>,
    users: HashMap<&'static str, String>,
    queues: BTreeMap<String, String>,
    mappings: HashMap<String, String>,
    cases: HashMap<String, String>,
    deleted_cases: BTreeSet<String>,
}

fn field(v: &Value, f: &str) -> Value {
    v.get(f).cloned().unwrap_or(Value::Null)
}

fn text(v: &Value, f: &str) -> String {
    v.get(f)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl World {
    async fn start(r: &Rules) -> World {
        let cfg = FakeSalesforceConfig {
            org: world_org(r),
            ..FakeSalesforceConfig::default()
        };
        let sf = FakeSalesforce::start(cfg)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        let mut actors = HashMap::new();
        let mut users = HashMap::new();
        for (key, username) in [("admin", ADMIN), ("agent", AGENT)] {
            actors.insert(key, sf.act_as(username).unwrap_or_else(|e| panic!("{e}")));
            users.insert(key, sf.user_id(username).unwrap_or_default());
        }
        let mut queues = BTreeMap::new();
        for q in &r.queue {
            let id = sf
                .queue_id(&q.name)
                .unwrap_or_else(|| panic!("queue {} missing", q.name));
            queues.insert(q.key.clone(), id);
        }
        for g in &r.group {
            actors["admin"]
                .create("Group", json!({"Name": g.name, "Type": "Regular"}))
                .unwrap_or_else(|e| panic!("group {}: {e}", g.key));
        }
        let mut mappings = HashMap::new();
        let found = sf
            .query("SELECT Id, Salesforce_Queue_Name__c FROM Interaction_Routing_Queue__c")
            .unwrap_or_else(|e| panic!("{e}"));
        for m in &found {
            let name = text(m, "Salesforce_Queue_Name__c");
            if let Some(q) = r.queue.iter().find(|q| q.name == name) {
                mappings.insert(format!("world:{}", q.key), text(m, "Id"));
            }
        }
        World {
            sf,
            actors,
            users,
            queues,
            mappings,
            cases: HashMap::new(),
            deleted_cases: BTreeSet::new(),
        }
    }

    fn rows(&self) -> Vec<Value> {
        self.sf
            .query(&format!(
                "SELECT {ROW_FIELDS} FROM Object_Routing_Queue__c ORDER BY CreatedDate"
            ))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn case_record(&self, id: &str) -> Option<Value> {
        self.sf
            .query(&format!("SELECT Id, CaseNumber, Subject, SuppliedEmail, SuppliedName, ObjectRouting_Skills__c FROM Case WHERE Id = '{id}'"))
            .ok()?
            .into_iter()
            .next()
    }

    fn owner(&self, o: &str) -> Result<String, String> {
        match o.split_once(':') {
            Some(("queue", k)) => self.queues.get(k).cloned(),
            Some(("user", u)) => self.users.get(u).cloned(),
            _ => None,
        }
        .ok_or_else(|| format!("unknown owner {o:?}"))
    }

    fn case_id(&self, label: &Option<String>) -> Result<String, String> {
        let label = label.as_deref().unwrap_or_default();
        self.cases
            .get(label)
            .cloned()
            .ok_or_else(|| format!("case {label:?} was never inserted"))
    }

    fn mapping_id(&self, label: &Option<String>) -> Result<String, String> {
        let label = label.as_deref().unwrap_or_default();
        self.mappings
            .get(label)
            .cloned()
            .ok_or_else(|| format!("mapping {label:?} does not exist"))
    }

    fn case_fields(&self, s: &Step) -> Result<Value, String> {
        let mut m = Map::new();
        if let Some(o) = &s.owner {
            m.insert("OwnerId".into(), json!(self.owner(o)?));
        }
        for (v, f) in [
            (&s.status, "Status"),
            (&s.subject, "Subject"),
            (&s.supplied_email, "SuppliedEmail"),
            (&s.supplied_name, "SuppliedName"),
            (&s.skills, "ObjectRouting_Skills__c"),
        ] {
            if let Some(v) = v {
                m.insert(f.into(), json!(v));
            }
        }
        Ok(Value::Object(m))
    }

    /// Does the step. `Ok(Err(e))` is a save the org rejected; `Err` a broken case.
    fn perform(
        &mut self,
        s: &Step,
    ) -> Result<(Option<String>, Result<(), sors_fake_salesforce::ApiError>), String> {
        let actor_key = s.actor.as_deref().unwrap_or("admin");
        let actor = self
            .actors
            .get(actor_key)
            .ok_or_else(|| format!("unknown user {actor_key:?}"))?
            .clone();
        let action = s.action.ok_or("no action")?;
        let mut case_of_step = None;
        let result = match action {
            Action::InsertCase => {
                let r = actor.create("Case", self.case_fields(s)?);
                if let Ok(id) = &r {
                    self.cases
                        .insert(s.case.clone().unwrap_or_default(), id.clone());
                    case_of_step = Some(id.clone());
                }
                r.map(|_| ())
            }
            Action::UpdateCase => {
                let id = self.case_id(&s.case)?;
                case_of_step = Some(id.clone());
                actor.update("Case", &id, self.case_fields(s)?)
            }
            Action::DeleteCase => {
                let id = self.case_id(&s.case)?;
                self.deleted_cases.insert(id.clone());
                actor.delete("Case", &id)
            }
            Action::InsertComment => {
                let id = self.case_id(&s.case)?;
                case_of_step = Some(id.clone());
                actor
                    .create(
                        "CaseComment",
                        json!({"ParentId": id, "CommentBody": "SORS rules test"}),
                    )
                    .map(|_| ())
            }
            Action::InsertEmail => {
                let id = self.case_id(&s.case)?;
                case_of_step = Some(id.clone());
                let incoming = s.incoming.unwrap_or_default();
                actor
                    .create(
                        "EmailMessage",
                        json!({"ParentId": id, "Incoming": incoming, "Subject": "SORS rules test", "FromAddress": "customer@example.com"}),
                    )
                    .map(|_| ())
            }
            Action::InsertMapping => {
                let mut m = Map::new();
                for (v, f) in [
                    (&s.queue_name, "Salesforce_Queue_Name__c"),
                    (&s.workgroup, "CIC_Workgroup_Name__c"),
                    (&s.queue_id, "Queue_Id__c"),
                ] {
                    if let Some(v) = v {
                        m.insert(f.into(), json!(v));
                    }
                }
                let r = actor.create("Interaction_Routing_Queue__c", Value::Object(m));
                if let Ok(id) = &r {
                    self.mappings
                        .insert(s.mapping.clone().unwrap_or_default(), id.clone());
                }
                r.map(|_| ())
            }
            Action::UpdateMapping => {
                let id = self.mapping_id(&s.mapping)?;
                let mut m = Map::new();
                for (v, f) in [
                    (&s.queue_name, "Salesforce_Queue_Name__c"),
                    (&s.workgroup, "CIC_Workgroup_Name__c"),
                ] {
                    if let Some(v) = v {
                        m.insert(f.into(), json!(v));
                    }
                }
                actor.update("Interaction_Routing_Queue__c", &id, Value::Object(m))
            }
            Action::DeleteMapping => {
                let id = self.mapping_id(&s.mapping)?;
                let r = actor.delete("Interaction_Routing_Queue__c", &id);
                self.mappings
                    .remove(s.mapping.as_deref().unwrap_or_default());
                r
            }
        };
        Ok((case_of_step, result))
    }

    /// Runs one step and checks everything it must (see the rules file's header).
    fn step(&mut self, s: &Step) -> Result<(), String> {
        let actor_key = s.actor.as_deref().unwrap_or("admin");
        let before = self.rows();
        let (case_id, result) = self.perform(s)?;
        let after = self.rows();
        let old_ids: BTreeSet<String> = before.iter().map(|r| text(r, "Id")).collect();
        let written: Vec<&Value> = after
            .iter()
            .filter(|r| !old_ids.contains(&text(r, "Id")))
            .collect();
        // The trigger never updates or deletes rows (rows of a deleted case are not checked).
        for old in &before {
            if self.deleted_cases.contains(&text(old, "Case__c")) {
                continue;
            }
            match after.iter().find(|r| text(r, "Id") == text(old, "Id")) {
                None => return Err(format!("row {} was deleted", text(old, "Id"))),
                Some(now) if now != old => {
                    return Err(format!(
                        "row {} was changed: {old} → {now}",
                        text(old, "Id")
                    ));
                }
                Some(_) => {}
            }
        }
        match (&s.error, result) {
            (Some(code), Ok(())) => {
                return Err(format!(
                    "the save succeeded; expected it to fail with {code}"
                ));
            }
            (Some(code), Err(e)) => {
                if &e.code != code {
                    return Err(format!(
                        "failed with {} ({}); expected {code}",
                        e.code, e.message
                    ));
                }
                if let Some(f) = &s.error_field {
                    let fields = e.fields.clone().unwrap_or_default();
                    if !fields.contains(f) {
                        return Err(format!(
                            "the error names fields {fields:?}; expected {f} ({})",
                            e.message
                        ));
                    }
                }
                if !written.is_empty() {
                    return Err(format!("a failed save wrote {} row(s)", written.len()));
                }
            }
            (None, Err(e)) => return Err(format!("the save failed: {} {}", e.code, e.message)),
            (None, Ok(())) => {}
        }
        let expected = s.rows.clone().unwrap_or_default();
        let key_of = |id: &str| {
            self.queues
                .iter()
                .find(|(_, q)| q.as_str() == id)
                .map_or_else(|| format!("<{id}>"), |(k, _)| k.clone())
        };
        let got: Vec<ExpectedRow> = written
            .iter()
            .map(|r| ExpectedRow {
                event: text(r, "Event__c"),
                queue: key_of(&text(r, "Salesforce_Queue_Id__c")),
                workgroup: text(r, "Workgroup__c"),
            })
            .collect();
        if got != expected {
            let show = |v: &[ExpectedRow]| {
                let s: Vec<String> = v.iter().map(ToString::to_string).collect();
                format!("[{}]", s.join(", "))
            };
            return Err(format!(
                "rows written {}; expected {}",
                show(&got),
                show(&expected)
            ));
        }
        if !written.is_empty() {
            let case_id = case_id.ok_or("rows written by a step without a case")?;
            let case = self
                .case_record(&case_id)
                .ok_or_else(|| format!("case {case_id} is gone"))?;
            let user = &self.users[actor_key];
            for r in &written {
                let id = text(r, "Id");
                let checks = [
                    ("Case__c", field(r, "Case__c"), json!(case_id)),
                    ("Status__c", field(r, "Status__c"), json!("New")),
                    (
                        "Attempts__c",
                        json!(field(r, "Attempts__c").as_f64()),
                        json!(Some(0.0)),
                    ),
                    ("CreatedById", field(r, "CreatedById"), json!(user)),
                ];
                for (name, got, want) in checks {
                    if got != want {
                        return Err(format!("row {id}: {name} = {got}, expected {want}"));
                    }
                }
                for (row_field, case_field) in COPIED {
                    let (got, want) = (field(r, row_field), field(&case, case_field));
                    if got != want {
                        return Err(format!(
                            "row {id}: {row_field} = {got}, expected the case's {case_field} = {want}"
                        ));
                    }
                }
            }
        }
        if let Some(q) = &s.mapping_queue {
            let id = self.mapping_id(&s.mapping)?;
            let m = self
                .sf
                .query(&format!(
                    "SELECT Queue_Id__c FROM Interaction_Routing_Queue__c WHERE Id = '{id}'"
                ))
                .map_err(|e| e.to_string())?;
            let got = m
                .first()
                .map(|m| text(m, "Queue_Id__c"))
                .unwrap_or_default();
            if Some(&got) != self.queues.get(q) {
                return Err(format!(
                    "Queue_Id__c = {got:?}, expected the id of {q} ({:?})",
                    self.queues.get(q)
                ));
            }
        }
        Ok(())
    }
}

async fn run_case(r: &Rules, c: &RuleCase) -> Result<(), String> {
    let mut world = World::start(r).await;
    for (i, s) in c.step.iter().enumerate() {
        let what = format!(
            "{} {}",
            s.action.map_or("?", Action::name),
            s.case
                .as_deref()
                .or(s.mapping.as_deref())
                .unwrap_or_default()
        );
        world
            .step(s)
            .map_err(|e| format!("{} (rule {}), step {} ({what}): {e}", c.id, c.rule, i + 1))?;
    }
    world.sf.shutdown().await;
    Ok(())
}

// ------------------------------------------------------------------ tests

#[test]
fn rules_file_is_well_formed() {
    let bad = check_rules_file(&rules());
    assert!(bad.is_empty(), "{RULES_FILE}:\n  {}", bad.join("\n  "));
}

/// Every rule of TRIGGER.md's table (and the mapping rules) has at least one case, and every
/// case names a rule of the table.
#[test]
fn every_rule_of_trigger_md_has_a_case() {
    let path = repo_file("fakes/salesforce/TRIGGER.md");
    let md = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut in_table: BTreeSet<String> = md
        .lines()
        .filter_map(|l| {
            let n = l.strip_prefix("| ")?.split(" |").next()?.trim();
            n.parse::<u32>().ok().map(|n| n.to_string())
        })
        .collect();
    assert_eq!(
        in_table.len(),
        9,
        "expected the 9 rows of TRIGGER.md's table, found {in_table:?}"
    );
    in_table.insert("mapping".into());
    let covered: BTreeSet<String> = rules().case.iter().map(|c| c.rule.clone()).collect();
    let missing: Vec<&String> = in_table.difference(&covered).collect();
    let unknown: Vec<&String> = covered.difference(&in_table).collect();
    assert!(missing.is_empty(), "rules without a case: {missing:?}");
    assert!(
        unknown.is_empty(),
        "cases naming no rule of TRIGGER.md: {unknown:?}"
    );
}

#[tokio::test]
async fn every_case_of_the_rules_file_holds_in_the_fake() {
    let r = rules();
    let mut failures = Vec::new();
    for c in &r.case {
        if let Err(e) = run_case(&r, c).await {
            failures.push(e);
        }
    }
    let steps: usize = r.case.iter().map(|c| c.step.len()).sum();
    println!(
        "{} cases, {steps} steps of {RULES_FILE} run through the fake",
        r.case.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases of {RULES_FILE} fail in the fake:\n  {}",
        failures.len(),
        r.case.len(),
        failures.join("\n  ")
    );
}

/// The harness catches a wrong expectation (so a green run means something): each kind of
/// mistake below, made in a copy of a real case, must fail.
#[tokio::test]
async fn a_wrong_expectation_fails() {
    let r = rules();
    let find = |id: &str| {
        r.case
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("case {id} is gone from the rules file"))
    };
    let mut mutants: Vec<(&str, RuleCase)> = Vec::new();
    let mut c = find("rule2_moved_between_monitored_queues_is_queue_changed");
    c.step[1].rows = Some(vec![ExpectedRow {
        event: "OwnerChanged".into(),
        queue: "FR".into(),
        workgroup: "Support_FR".into(),
    }]);
    mutants.push(("wrong event", c));
    let mut c = find("rule8_move_and_close_in_one_save_writes_both_in_order");
    if let Some(rows) = c.step[1].rows.as_mut() {
        rows.reverse();
    }
    mutants.push(("wrong order", c));
    let mut c = find("rule4_agent_taking_ownership_writes_nothing");
    c.step[1].rows = Some(vec![ExpectedRow {
        event: "OwnerChanged".into(),
        queue: "EN".into(),
        workgroup: "Support_EN".into(),
    }]);
    mutants.push(("a row where none is written", c));
    let mut c = find("mapping_second_mapping_for_a_queue_fails");
    c.step[0].error = Some("FIELD_CUSTOM_VALIDATION_EXCEPTION".into());
    mutants.push(("wrong error code", c));
    let mut c = find("mapping_queue_names_are_case_sensitive");
    c.step[0].error = None;
    c.step[0].error_field = None;
    c.step[0].rows = Some(vec![]);
    mutants.push(("a success where the save fails", c));
    let mut c = find("mapping_fills_queue_id_from_the_queue_name");
    c.step[0].mapping_queue = Some("EN".into());
    mutants.push(("wrong queue id", c));
    let mut c = find("rule7_agent_reply_keeps_the_rows_workgroup_after_a_mapping_change");
    if let Some(row) = c.step[2].rows.as_mut().and_then(|r| r.first_mut()) {
        row.workgroup = "Support_EN_2".into();
    }
    mutants.push(("wrong workgroup", c));
    for (what, c) in mutants {
        assert!(
            run_case(&r, &c).await.is_err(),
            "{what}: the mutated case {} passed",
            c.id
        );
    }
}
