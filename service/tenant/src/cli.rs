//! The core of the non-interactive `sors credentials …` commands. The binary parses the
//! arguments, reads each secret with [`secret_from_env`] or [`secret_from_reader`] (never from
//! a command-line argument, which other users can see in `ps`), and calls these functions:
//!
//! ```text
//! sors credentials set-salesforce --tenant DIR --username U --password-env VAR --token-env VAR
//!                                 [--client-id ID --client-secret-env VAR]
//! sors credentials set-cic        --tenant DIR --user U --password-env VAR
//! sors credentials show           --tenant DIR
//! sors credentials set-aside      --tenant DIR
//! ```
//!
//! A credential file that does not open (modified, damaged, another format or key) is refused
//! by every command and never overwritten; `set-aside` moves it to
//! `encryptData.json.refused-<time>` so that credentials can be entered again.
//!
//! `--password-stdin` replaces `--password-env VAR`: the password is the first line of standard
//! input.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::credentials::{
    CicCredentials, CredentialError, CredentialStore, CredentialSummary, SalesforceCredentials,
    Secret,
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

/// Moves the credential file of tenant directory `dir` aside (to
/// `encryptData.json.refused-<time>`, kept for inspection) so that credentials can be entered
/// again. Only a file that does not open is moved: one that opens with the current key is left
/// alone ([`CredentialError::NotRefused`]), and so is a missing one ([`CredentialError::NoFile`]).
/// Returns where the file is kept, and why it was refused.
pub fn set_aside(dir: &Path) -> Result<(PathBuf, CredentialError), CredentialError> {
    let store = CredentialStore::open(dir)?;
    let path = store.path();
    if !path.exists() {
        return Err(CredentialError::NoFile {
            path,
            what: "nothing to set aside",
        });
    }
    let refused = match store.load() {
        Ok(_) => {
            return Err(CredentialError::NotRefused {
                path,
                key: store.key_origin().to_string(),
            });
        }
        Err(e @ CredentialError::Io { .. }) => return Err(e),
        Err(e) => e,
    };
    let kept = store.set_aside()?;
    tracing::warn!(
        event = "credentials.set_aside",
        refused = %refused,
        kept = %kept.display(),
        "The refused credential file was moved aside; credentials can be entered again"
    );
    Ok((kept, refused))
}

fn not_empty(secret: &Secret, what: &'static str) -> Result<(), CredentialError> {
    if secret.is_empty() {
        Err(CredentialError::EmptySecret { what })
    } else {
        Ok(())
    }
}

/// Replaces the Salesforce credentials of tenant directory `dir` (the CIC ones are kept). A
/// credential file that does not open is refused (see [`set_aside`]).
/// The password (and a client secret, when given) must not be empty; the security token may
/// be (an org that trusts the router's address needs none).
pub fn set_salesforce(
    dir: &Path,
    username: &str,
    password: Secret,
    security_token: Secret,
    client_id: Option<&str>,
    client_secret: Option<Secret>,
) -> Result<(), CredentialError> {
    not_empty(&password, "Salesforce password")?;
    if let Some(cs) = &client_secret {
        not_empty(cs, "Salesforce client secret")?;
    }
    let store = CredentialStore::open(dir)?;
    // A file that does not open is refused here (and by save), never overwritten.
    let mut credentials = store.load()?;
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
    Ok(())
}

/// Replaces the CIC credentials of tenant directory `dir` (the Salesforce ones are kept). A
/// credential file that does not open is refused (see [`set_aside`]).
pub fn set_cic(dir: &Path, user: &str, password: Secret) -> Result<(), CredentialError> {
    not_empty(&password, "CIC password")?;
    let store = CredentialStore::open(dir)?;
    let mut credentials = store.load()?;
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
    Ok(())
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
    out.push_str(&format!("key: {}\n", s.key_origin));
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
