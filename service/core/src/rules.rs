//! Stateless routing rules: validation of a row's skills and workgroup, and the plan for a case's
//! backlog of pending rows (routing.md §3 "Stale and superseded rows").

use std::collections::{HashMap, HashSet};

use crate::model::{RowEvent, RowId, WorkgroupInfo};

/// Longest `Skills__c` accepted, semicolons included (the seed's limit).
pub const MAX_SKILLS_LEN: usize = 255;

/// Splits `;`-separated skills, trims them and drops empty names. A `|` anywhere or a total
/// longer than [`MAX_SKILLS_LEN`] characters is refused with a reason an administrator can act on.
pub fn parse_skills(raw: &str) -> Result<Vec<String>, String> {
    if raw.contains('|') {
        return Err(format!(
            "Skills '{}' contain '|'; separate skills with ';'",
            shorten(raw)
        ));
    }
    let len = raw.chars().count();
    if len > MAX_SKILLS_LEN {
        return Err(format!(
            "Skills are {len} characters long; at most {MAX_SKILLS_LEN} are allowed"
        ));
    }
    Ok(raw
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Checks skills against the skills CIC knows (names match exactly, as in Interaction Administrator).
pub fn check_skills_known(skills: &[String], known: &HashSet<String>) -> Result<(), String> {
    let unknown: Vec<&str> = skills
        .iter()
        .filter(|s| !known.contains(*s))
        .map(String::as_str)
        .collect();
    match unknown.len() {
        0 => Ok(()),
        1 => Err(format!("CIC has no skill named '{}'", unknown[0])),
        _ => Err(format!(
            "CIC has no skills named '{}'",
            unknown.join("', '")
        )),
    }
}

/// Checks that CIC has the workgroup and that it routes email through ACD.
pub fn check_workgroup(
    workgroup: &str,
    workgroups: &HashMap<String, WorkgroupInfo>,
) -> Result<(), String> {
    if workgroup.trim().is_empty() {
        return Err("Workgroup__c is empty".to_owned());
    }
    match workgroups.get(workgroup) {
        None => Err(format!("CIC has no workgroup named '{workgroup}'")),
        Some(wg) if !wg.acd_email => Err(format!(
            "CIC workgroup '{workgroup}' is not an ACD email workgroup (ACD email routing is off)"
        )),
        Some(_) => Ok(()),
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// What to do with a case's pending rows, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CasePlan {
    /// Rows that end `Processed` without work, with the note to write.
    pub superseded: Vec<(RowId, String)>,
    /// The disconnect row (AgentReply / CaseClosed) to run first, if any.
    pub disconnect: Option<RowId>,
    /// The route row to run after it, if any.
    pub route: Option<RowId>,
}

/// Plans a case's backlog. `rows` must be in handling order (`CreatedDate`, then id) and hold
/// only parsed events; the newest disconnect row supersedes every older row, and of the route
/// rows after it only the newest is routed.
pub fn plan_case(rows: &[(RowId, RowEvent)]) -> CasePlan {
    let mut plan = CasePlan::default();
    let last_disc = rows.iter().rposition(|(_, e)| !e.is_route());
    let last_route = rows.iter().rposition(|(_, e)| e.is_route());
    for (i, (id, _)) in rows.iter().enumerate() {
        if Some(i) == last_disc {
            plan.disconnect = Some(id.clone());
        } else if Some(i) == last_route && last_disc.is_none_or(|d| i > d) {
            plan.route = Some(id.clone());
        } else {
            let by = match last_disc {
                Some(d) if i < d => rows[d].1,
                _ => rows[last_route.unwrap_or(i)].1,
            };
            plan.superseded
                .push((id.clone(), format!("superseded by a newer {by} row")));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wgs() -> HashMap<String, WorkgroupInfo> {
        [("Support_EN", true), ("Operators", false)]
            .into_iter()
            .map(|(n, acd)| {
                (
                    n.to_owned(),
                    WorkgroupInfo {
                        name: n.to_owned(),
                        acd_email: acd,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn skills_are_split_trimmed_and_empties_dropped() {
        assert_eq!(
            parse_skills(" English ;;Premium; ").unwrap(),
            vec!["English".to_owned(), "Premium".to_owned()]
        );
        assert_eq!(parse_skills("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_skills(" ; ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn pipe_in_skills_is_refused_with_a_reason() {
        let err = parse_skills("English|French").unwrap_err();
        assert!(err.contains("'|'"), "{err}");
    }

    #[test]
    fn skills_over_255_characters_are_refused_but_255_pass() {
        let ok = "a".repeat(255);
        assert!(parse_skills(&ok).is_ok());
        let err = parse_skills(&"a".repeat(256)).unwrap_err();
        assert!(err.contains("256 characters"), "{err}");
        // characters, not bytes
        assert!(parse_skills(&"é".repeat(255)).is_ok());
    }

    #[test]
    fn unknown_skills_are_named() {
        let known: HashSet<String> = ["English".to_owned()].into();
        assert!(check_skills_known(&["English".to_owned()], &known).is_ok());
        let err = check_skills_known(&["english".to_owned()], &known).unwrap_err();
        assert_eq!(err, "CIC has no skill named 'english'");
        let err =
            check_skills_known(&["Klingon".to_owned(), "Elvish".to_owned()], &known).unwrap_err();
        assert_eq!(err, "CIC has no skills named 'Klingon', 'Elvish'");
    }

    #[test]
    fn workgroup_must_exist_and_route_email() {
        let w = wgs();
        assert!(check_workgroup("Support_EN", &w).is_ok());
        assert!(
            check_workgroup("Nope", &w)
                .unwrap_err()
                .contains("no workgroup")
        );
        assert!(
            check_workgroup("Operators", &w)
                .unwrap_err()
                .contains("not an ACD email workgroup")
        );
        assert!(check_workgroup(" ", &w).unwrap_err().contains("empty"));
        // case-sensitive, as CIC names are
        assert!(check_workgroup("support_en", &w).is_err());
    }

    fn ids(rows: &[(&str, RowEvent)]) -> Vec<(RowId, RowEvent)> {
        rows.iter().map(|(i, e)| (RowId::from(*i), *e)).collect()
    }

    #[test]
    fn only_the_newest_route_row_is_routed() {
        use RowEvent::*;
        let p = plan_case(&ids(&[("a", New), ("b", Comment), ("c", OwnerChanged)]));
        assert_eq!(p.route, Some(RowId::from("c")));
        assert_eq!(p.disconnect, None);
        let sup: Vec<&str> = p.superseded.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(sup, vec!["a", "b"]);
        assert!(p.superseded[0].1.contains("superseded"));
    }

    #[test]
    fn a_reply_supersedes_older_route_rows() {
        use RowEvent::*;
        let p = plan_case(&ids(&[("a", New), ("b", AgentReply)]));
        assert_eq!(p.route, None);
        assert_eq!(p.disconnect, Some(RowId::from("b")));
        assert_eq!(p.superseded.len(), 1);
        assert!(p.superseded[0].1.contains("AgentReply"));
    }

    #[test]
    fn a_customer_email_after_a_reply_is_routed_after_the_disconnect() {
        use RowEvent::*;
        let p = plan_case(&ids(&[
            ("a", New),
            ("b", AgentReply),
            ("c", EmailReceived),
            ("d", Comment),
        ]));
        assert_eq!(p.disconnect, Some(RowId::from("b")));
        assert_eq!(p.route, Some(RowId::from("d")));
        let sup: Vec<&str> = p.superseded.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(sup, vec!["a", "c"]);
    }

    #[test]
    fn of_several_disconnect_rows_only_the_newest_runs() {
        use RowEvent::*;
        let p = plan_case(&ids(&[("a", AgentReply), ("b", CaseClosed)]));
        assert_eq!(p.disconnect, Some(RowId::from("b")));
        assert_eq!(p.superseded.len(), 1);
        assert_eq!(p.superseded[0].0, RowId::from("a"));
    }

    #[test]
    fn empty_backlog_plans_nothing() {
        assert_eq!(plan_case(&[]), CasePlan::default());
    }
}
