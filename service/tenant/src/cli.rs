//! The core of the non-interactive `sors credentials …` commands. The binary parses the
//! arguments, reads each secret with [`secret_from_env`] or [`secret_from_reader`] (never from
//! a command-line argument, which other users can see in `ps`), and calls these functions:
//!
//! ```text
//! sors credentials set-salesforce --tenant DIR --username U --password-env VAR --token-env VAR
//!                                 [--client-id ID --client-secret-env VAR]
//! sors credentials set-cic        --tenant DIR --user U --password-env VAR
//! sors credentials show           --tenant DIR
//! ```
//!
//! `--password-stdin` replaces `--password-env VAR`: the password is the first line of standard
//! input.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::credentials::{
    CicCredentials, CredentialError, CredentialStore, CredentialSummary, Credentials, KeyOrigin,
    SalesforceCredentials, Secret,
};
use crate::env::Source;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretInputError {
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// Standard input could not be read.
    #[error("cannot read the secret from standard input: {0}")]
    Stdin(std::io::Error),
    /// Standard input was empty.
    #[error("standard input is empty; write the secret followed by a newline")]
    StdinEmpty,
}

/// Reads a secret from environment variable `var` (it may be empty, e.g. a security token
/// that the org does not need).
pub fn secret_from_env(env: &dyn Source, var: &str) -> Result<Secret, SecretInputError> {
    env.var(var)
        .map(Secret::new)
        .ok_or_else(|| SecretInputError::EnvMissing(var.to_owned()))
}

/// Reads a secret as the first line of `input` (for `--password-stdin`), without its line end.
pub fn secret_from_reader(input: &mut dyn BufRead) -> Result<Secret, SecretInputError> {
    let mut line = String::new();
    let read = input
        .read_line(&mut line)
        .map_err(SecretInputError::Stdin)?;
    if read == 0 {
        return Err(SecretInputError::StdinEmpty);
    }
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(Secret::new(line))
}

/// What saving credentials did besides saving them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// A credential file that was refused (modified or damaged) was moved here first; the
    /// other side's credentials, which were in it, must be entered again too.
    pub set_aside: Option<PathBuf>,
}

/// The saved credentials to update: those of the file, or none when the file is refused as
/// modified or damaged (it is then set aside, never overwritten). A wrong or missing key is
/// still an error: the file is probably fine and the key is what needs restoring.
fn load_for_update(store: &CredentialStore) -> Result<(Credentials, Saved), CredentialError> {
    match store.load() {
        Ok(c) => Ok((c, Saved::default())),
        Err(e @ (CredentialError::Tampered { .. } | CredentialError::Format { .. })) => {
            let kept = store.set_aside()?;
            tracing::warn!(
                event = "credentials.set_aside",
                refused = %e,
                kept = %kept.display(),
                "The credential file was refused; it is kept aside and new credentials are saved"
            );
            Ok((
                Credentials::default(),
                Saved {
                    set_aside: Some(kept),
                },
            ))
        }
        Err(e) => Err(e),
    }
}

fn not_empty(secret: &Secret, what: &'static str) -> Result<(), CredentialError> {
    if secret.is_empty() {
        Err(CredentialError::EmptySecret { what })
    } else {
        Ok(())
    }
}

/// Replaces the Salesforce credentials of tenant directory `dir` (the CIC ones are kept).
/// The password (and a client secret, when given) must not be empty; the security token may
/// be (an org that trusts the router's address needs none).
pub fn set_salesforce(
    dir: &Path,
    username: &str,
    password: Secret,
    security_token: Secret,
    client_id: Option<&str>,
    client_secret: Option<Secret>,
) -> Result<Saved, CredentialError> {
    not_empty(&password, "Salesforce password")?;
    if let Some(cs) = &client_secret {
        not_empty(cs, "Salesforce client secret")?;
    }
    let store = CredentialStore::open(dir)?;
    let (mut credentials, saved) = load_for_update(&store)?;
    credentials.salesforce = Some(SalesforceCredentials {
        username: username.to_owned(),
        password,
        security_token,
        client_id: client_id.map(str::to_owned),
        client_secret,
    });
    store.save(&credentials)?;
    tracing::info!(
        event = "credentials.salesforce.saved",
        tenant_dir = %dir.display(),
        username,
        "Salesforce credentials saved"
    );
    Ok(saved)
}

/// Replaces the CIC credentials of tenant directory `dir` (the Salesforce ones are kept).
pub fn set_cic(dir: &Path, user: &str, password: Secret) -> Result<Saved, CredentialError> {
    not_empty(&password, "CIC password")?;
    let store = CredentialStore::open(dir)?;
    let (mut credentials, saved) = load_for_update(&store)?;
    credentials.cic = Some(CicCredentials {
        user: user.to_owned(),
        password,
    });
    store.save(&credentials)?;
    tracing::info!(
        event = "credentials.cic.saved",
        tenant_dir = %dir.display(),
        user,
        "CIC credentials saved"
    );
    Ok(saved)
}

/// Describes which credentials tenant directory `dir` holds: user names, never secrets. Fails
/// when the key is wrong or the file damaged, so it doubles as a check.
pub fn show(dir: &Path) -> Result<String, CredentialError> {
    let store = CredentialStore::open(dir)?;
    Ok(format_summary(&store.path(), &store.check()?))
}

fn format_summary(file: &Path, s: &CredentialSummary) -> String {
    let present = |yes: bool| if yes { "present" } else { "not set" };
    let mut out = format!("credential file: {}\n", file.display());
    out.push_str(&match &s.key_origin {
        KeyOrigin::Env => "key: from SORS_CREDENTIAL_KEY\n".to_owned(),
        KeyOrigin::File(path) => format!("key: {}\n", path.display()),
    });
    match &s.salesforce_username {
        Some(user) => {
            out.push_str(&format!(
                "salesforce: user {user:?}, password present, security token {}",
                present(s.salesforce_has_token)
            ));
            if let Some(id) = &s.salesforce_client_id {
                out.push_str(&format!(", client id {id:?}"));
            }
            out.push_str(&format!(
                ", client secret {}\n",
                present(s.salesforce_has_client_secret)
            ));
        }
        None => out.push_str("salesforce: not set\n"),
    }
    match &s.cic_user {
        Some(user) => out.push_str(&format!("cic: user {user:?}, password present\n")),
        None => out.push_str("cic: not set\n"),
    }
    out
}
