//! `OrgSpec`: the users, queues, queue mappings, OAuth clients and settings an org starts with.
//! Read from a TOML file (`--org`), or [`OrgSpec::demo`].

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    /// `organizationName` in the login response.
    #[serde(default = "default_name")]
    pub name: String,
    /// `sandbox` in the login response.
    #[serde(default)]
    pub sandbox: bool,
    /// `DailyApiRequests.Max`: REST calls beyond it get `403 REQUEST_LIMIT_EXCEEDED`.
    #[serde(default = "default_daily_api_requests")]
    pub daily_api_requests: u64,
    /// When false, the OAuth `password` grant answers `invalid_grant` (orgs created since
    /// Summer '23 block it by default).
    #[serde(default = "yes")]
    pub allow_username_password_flow: bool,
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub queues: Vec<QueueSpec>,
    #[serde(default)]
    pub mappings: Vec<MappingSpec>,
    #[serde(default)]
    pub oauth_clients: Vec<OAuthClientSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub username: String,
    pub password: String,
    /// Appended to the password at login; empty means "trusted IP range", password alone.
    #[serde(default)]
    pub security_token: String,
    #[serde(default)]
    pub first_name: Option<String>,
    pub last_name: String,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    pub name: String,
}

/// One `Interaction_Routing_Queue__c` row: Salesforce queue name → CIC workgroup name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    pub queue: String,
    pub workgroup: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientSpec {
    pub client_id: String,
    pub client_secret: String,
    /// The user a `client_credentials` token runs as.
    pub run_as: String,
}

fn default_name() -> String {
    "SORS Demo".to_owned()
}
fn default_daily_api_requests() -> u64 {
    100_000
}
fn yes() -> bool {
    true
}

impl OrgSpec {
    /// The demo org (README "Demo org").
    pub fn demo() -> Self {
        let user = |username: &str, first: &str, last: &str| UserSpec {
            username: username.to_owned(),
            password: "demo".to_owned(),
            security_token: "TOKEN".to_owned(),
            first_name: Some(first.to_owned()),
            last_name: last.to_owned(),
            email: Some(username.to_owned()),
        };
        let mut users = vec![user("router@sors.demo", "SORS", "Router")];
        for i in 1..=4 {
            users.push(user(
                &format!("agent{i}@sors.demo"),
                "Agent",
                &i.to_string(),
            ));
        }
        let queue = |n: &str| QueueSpec { name: n.to_owned() };
        let map = |q: &str, w: &str| MappingSpec {
            queue: q.to_owned(),
            workgroup: w.to_owned(),
        };
        OrgSpec {
            name: default_name(),
            sandbox: false,
            daily_api_requests: default_daily_api_requests(),
            allow_username_password_flow: true,
            users,
            queues: vec![
                queue("Support EN"),
                queue("Support FR"),
                queue("Billing"),
                queue("Unrouted"),
            ],
            mappings: vec![
                map("Support EN", "Support_EN"),
                map("Support FR", "Support_FR"),
                map("Billing", "Billing"),
            ],
            oauth_clients: vec![OAuthClientSpec {
                client_id: "sors-demo".to_owned(),
                client_secret: "sors-demo-secret".to_owned(),
                run_as: "router@sors.demo".to_owned(),
            }],
        }
    }

    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        let spec: OrgSpec = toml::from_str(text)?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::OrgFile {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Checks what the TOML schema cannot: unique names and existing references. (Mappings
    /// naming a missing queue are rejected by the trigger when the org is built.)
    pub fn validate(&self) -> Result<(), Error> {
        if self.users.is_empty() {
            return Err(Error::OrgSpec("an org needs at least one user".into()));
        }
        let mut names: Vec<String> = self
            .users
            .iter()
            .map(|u| u.username.to_lowercase())
            .collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::OrgSpec(format!("duplicate username {}", w[0])));
        }
        for c in &self.oauth_clients {
            if !self
                .users
                .iter()
                .any(|u| u.username.eq_ignore_ascii_case(&c.run_as))
            {
                return Err(Error::OrgSpec(format!(
                    "OAuth client {} runs as unknown user {}",
                    c.client_id, c.run_as
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_org_file_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/org.toml");
        let spec = OrgSpec::from_toml_file(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(spec.users.len() >= 2);
        assert!(!spec.mappings.is_empty());
        assert!(!spec.oauth_clients.is_empty());
    }

    #[test]
    fn demo_round_trips_through_toml() {
        let text = toml::to_string(&OrgSpec::demo()).unwrap_or_default();
        let back = OrgSpec::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, OrgSpec::demo());
    }

    #[test]
    fn bad_files_are_rejected_with_a_reason() {
        let e = OrgSpec::from_toml_str("users = []")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("at least one user")));
        let e = OrgSpec::from_toml_str("bogus = 1\nusers = []")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("bogus")));
        let dup = r#"
            [[users]]
            username = "a@x"
            password = "p"
            last_name = "A"
            [[users]]
            username = "A@x"
            password = "p"
            last_name = "B"
        "#;
        let e = OrgSpec::from_toml_str(dup).err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("duplicate username")));
    }
}
