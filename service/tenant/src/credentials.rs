//! Encrypted credentials: `secureData/encryptData.json`, sealed with AES-256-GCM.
//!
//! # The key
//!
//! One 32-byte key opens the file. It is looked for in this order; the first source that is
//! present is used and the others are not read:
//!
//! 1. `SORS_CREDENTIAL_KEY`: the key itself, base64 of 32 bytes.
//! 2. `SORS_CREDENTIAL_KEY_FILE`: the path of a key file anywhere (e.g. `/etc/sors/keys/acme.key`).
//!    It must be readable by its owner only (mode 0600 or 0400): a file that group or others can
//!    access is refused, and so is a path that does not exist.
//! 3. The systemd credential `sors-credential-key`: `$CREDENTIALS_DIRECTORY/sors-credential-key`,
//!    present when the unit says `LoadCredential=sors-credential-key:/etc/sors/keys/%i.key`
//!    (systemd reads the source as root, so it can be private to root). The packaged unit also
//!    says `SetCredential=sors-credential-key:none`, systemd's fallback when that source does not
//!    exist: the content `none` means "no key here", so the next source is used. systemd makes
//!    the directory private to the unit, so no mode check applies.
//! 4. `secureData/key` of the tenant directory, readable by its owner only, created (mode 0600)
//!    by the first save when no other source is set.
//!
//! So the key need not sit beside the ciphertext. A key file (2 to 4) holds the 32 raw bytes or
//! their base64 (one line). [`KeyOrigin`] says which source was used; `sors credentials show`
//! prints it, and every error about the key names it. [`CredentialStore::rotate_key`] replaces
//! the key and re-encrypts the file (`sors credentials rotate-key`).
//!
//! # The file
//!
//! Every secret is sealed with a fresh random 96-bit nonce on every save, with its field name as
//! associated data, so values cannot be swapped between fields. User names and the OAuth client
//! id are stored in clear (they are shown by `sors credentials show` and on the login pages). A
//! `key_check` value tells a wrong key apart from a modified file.
//!
//! A file that does not open (modified, truncated, empty, of another format, or sealed with
//! another key) is refused with an error naming it and saying what to do, and it is never
//! overwritten: [`CredentialStore::save`] refuses too, until the operator restores it or moves
//! it aside ([`CredentialStore::set_aside`], `sors credentials set-aside`), which keeps it as
//! `encryptData.json.refused-<time>`.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::env::{ProcessEnv, Source};
use crate::fsutil;

/// The directory holding the credential file and the key file.
pub const SECURE_DIR: &str = "secureData";
/// The credential file, inside [`SECURE_DIR`] (the original product's path).
pub const CREDENTIAL_FILE: &str = "encryptData.json";
/// The key file, inside [`SECURE_DIR`].
pub const KEY_FILE: &str = "key";
/// The environment variable that holds the key (base64 of 32 bytes); wins over every file.
pub const KEY_ENV: &str = "SORS_CREDENTIAL_KEY";
/// The environment variable that names a key file anywhere; second in the order.
pub const KEY_FILE_ENV: &str = "SORS_CREDENTIAL_KEY_FILE";
/// The variable systemd sets to the unit's credential directory.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// The systemd credential (`LoadCredential=sors-credential-key:…`); third in the order.
pub const SYSTEMD_CREDENTIAL: &str = "sors-credential-key";
/// The content of the systemd credential that means "no key here" (the packaged unit's
/// `SetCredential=` fallback for a missing `LoadCredential=` source).
pub const SYSTEMD_CREDENTIAL_NONE: &str = "none";
/// The order the key sources are tried in, for messages.
const KEY_ORDER: &str = "SORS_CREDENTIAL_KEY, then the file named by SORS_CREDENTIAL_KEY_FILE, then the systemd credential sors-credential-key, then secureData/key";

const FORMAT: &str = "sors-credentials";
const VERSION: u64 = 1;
const CIPHER: &str = "AES-256-GCM";
const KEY_CHECK_FIELD: &str = "key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"sors credential key check";

pub use sors_core::Secret;

/// Salesforce login data. Which fields are used depends on `[salesforce] auth`: `soap` uses
/// username, password and token; `oauth-password` all five; `client-credentials` only the
/// client id and secret (the others may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SalesforceCredentials {
    /// The Salesforce user name (stored in clear).
    pub username: String,
    /// The password.
    pub password: Secret,
    /// The security token (empty when the org trusts the host's IP range).
    pub security_token: Secret,
    /// The connected app's consumer key (stored in clear), for the OAuth flows.
    pub client_id: Option<String>,
    /// The connected app's consumer secret, for the OAuth flows.
    pub client_secret: Option<Secret>,
}

/// CIC (ICWS) login data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CicCredentials {
    /// The CIC user (stored in clear).
    pub user: String,
    /// The password.
    pub password: Secret,
}

/// Everything in the credential file; a side is `None` until it is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// Salesforce login data.
    pub salesforce: Option<SalesforceCredentials>,
    /// CIC login data.
    pub cic: Option<CicCredentials>,
}

/// Where the key came from (the sources in the order they are tried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `SORS_CREDENTIAL_KEY`.
    Env,
    /// The key file named by `SORS_CREDENTIAL_KEY_FILE`.
    EnvFile(PathBuf),
    /// The systemd credential `$CREDENTIALS_DIRECTORY/sors-credential-key`.
    SystemdCredential(PathBuf),
    /// The tenant's key file `secureData/key` (it may not exist yet: it is created on the first
    /// save).
    File(PathBuf),
}

impl KeyOrigin {
    /// The key file this process may replace (`secureData/key` or `SORS_CREDENTIAL_KEY_FILE`);
    /// `None` for the environment variable and the systemd credential (read-only to us).
    pub fn owned_file(&self) -> Option<&Path> {
        match self {
            KeyOrigin::EnvFile(path) | KeyOrigin::File(path) => Some(path),
            KeyOrigin::Env | KeyOrigin::SystemdCredential(_) => None,
        }
    }
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::Env => write!(f, "{KEY_ENV} (environment variable)"),
            KeyOrigin::EnvFile(path) => write!(f, "{} (named by {KEY_FILE_ENV})", path.display()),
            KeyOrigin::SystemdCredential(path) => {
                write!(
                    f,
                    "systemd credential {SYSTEMD_CREDENTIAL} ({})",
                    path.display()
                )
            }
            KeyOrigin::File(path) => write!(f, "{} (the tenant's key file)", path.display()),
        }
    }
}

/// What the credential file holds, without any secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSummary {
    /// The Salesforce user name, when Salesforce credentials are present.
    pub salesforce_username: Option<String>,
    /// The OAuth client id, when present.
    pub salesforce_client_id: Option<String>,
    /// Whether a Salesforce security token is present (not empty).
    pub salesforce_has_token: bool,
    /// Whether an OAuth client secret is present.
    pub salesforce_has_client_secret: bool,
    /// The CIC user, when CIC credentials are present.
    pub cic_user: Option<String>,
    /// Where the key came from.
    pub key_origin: KeyOrigin,
}

impl Credentials {
    /// A description of what is present, without secrets.
    pub fn summary(&self, key_origin: KeyOrigin) -> CredentialSummary {
        let sf = self.salesforce.as_ref();
        CredentialSummary {
            salesforce_username: sf.map(|s| s.username.clone()),
            salesforce_client_id: sf.and_then(|s| s.client_id.clone()),
            salesforce_has_token: sf.is_some_and(|s| !s.security_token.is_empty()),
            salesforce_has_client_secret: sf.is_some_and(|s| s.client_secret.is_some()),
            cic_user: self.cic.as_ref().map(|c| c.user.clone()),
            key_origin,
        }
    }
}

/// What to do about a credential file that does not open: the same advice in every refusal.
struct Advice<'a>(&'a Path);

impl fmt::Display for Advice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // <tenant>/secureData/encryptData.json -> <tenant>
        let tenant = self
            .0
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| Path::new("DIR"));
        write!(
            f,
            "nothing was changed: restore the file (an {CREDENTIAL_FILE}.bak-* beside it is a copy from before a key rotation), or move it aside with `sors credentials set-aside --tenant {}` and enter the credentials again",
            tenant.display()
        )
    }
}

/// Why the credentials could not be read or written. No variant ever holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// `SORS_CREDENTIAL_KEY` is set but is not a base64 32-byte key.
    #[error(
        "{KEY_ENV} is not a base64-encoded 32-byte key ({reason}); make one with `head -c 32 /dev/urandom | base64`"
    )]
    BadEnvKey {
        /// What is wrong, without the value.
        reason: String,
    },
    /// `SORS_CREDENTIAL_KEY_FILE` is set but names no file.
    #[error(
        "{KEY_FILE_ENV} names '{}', which does not exist: point it at the key file (32 bytes, mode 0600) or unset it",
        path.display()
    )]
    MissingKeyFile {
        /// The path the variable names.
        path: PathBuf,
    },
    /// The key file can be read or written by group or others.
    #[error(
        "refusing to use the key file {}: its mode is {mode:03o}, so group or others can access it; run `chmod 600 {}` (and check who could have copied it)",
        path.display(), path.display()
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file holds neither 32 bytes nor their base64.
    #[error(
        "the key file {} holds {len} bytes; a key is exactly 32 bytes (or their base64 on one line)",
        path.display()
    )]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// There is a credential file but no key to open it.
    #[error(
        "{} exists but there is no key to open it: the key is looked for in {KEY_ORDER} ({} does not exist); provide the key the credentials were saved with in one of them",
        file.display(), key_path.display()
    )]
    NoKey {
        /// The credential file.
        file: PathBuf,
        /// Where the key file was looked for.
        key_path: PathBuf,
    },
    /// The key is not the one the file was saved with.
    #[error(
        "the key does not open {}: it is not the key the credentials were saved with (key from {key}), or the file's key_check was modified; provide the right key (the order is {KEY_ORDER}), or if it is lost: {}",
        path.display(), Advice(path)
    )]
    WrongKey {
        /// The credential file.
        path: PathBuf,
        /// Where the key came from, e.g. "SORS_CREDENTIAL_KEY (environment variable)".
        key: String,
    },
    /// The key file does not open the credential file, but the new key an interrupted
    /// `sors credentials rotate-key` left beside it does.
    #[error(
        "the key does not open {}, but {} does: a key rotation was interrupted; finish it with `mv {} {}`",
        path.display(), pending.display(), pending.display(), key_path.display()
    )]
    InterruptedRotation {
        /// The credential file.
        path: PathBuf,
        /// The new key left by the rotation.
        pending: PathBuf,
        /// The key file it replaces.
        key_path: PathBuf,
    },
    /// A sealed value fails its integrity check although the key is right.
    #[error(
        "{} was modified: the value of `{field}` fails its integrity check; {}",
        path.display(), Advice(path)
    )]
    Tampered {
        /// The credential file.
        path: PathBuf,
        /// The field, e.g. `salesforce.password`.
        field: String,
    },
    /// The file is not a sors credential file (or is damaged: truncated, empty).
    #[error("{} is not a readable sors credential file: {reason}; {}", path.display(), Advice(path))]
    Format {
        /// The credential file.
        path: PathBuf,
        /// What is wrong (never a value from the file).
        reason: String,
    },
    /// The file was written by a newer sors.
    #[error(
        "{} has format version {found}; this sors reads version {VERSION}: run the newer sors, or {}",
        path.display(), Advice(path)
    )]
    UnsupportedVersion {
        /// The credential file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// There is no credential file (for an operation that needs one).
    #[error("there is no credential file {}: {what}", path.display())]
    NoFile {
        /// Where it was looked for.
        path: PathBuf,
        /// What this means for the operation.
        what: &'static str,
    },
    /// The credential file opens fine, so it is not moved aside.
    #[error(
        "{} opens with the key from {key}: it is not refused, so it is not moved aside (set-aside is for a file that cannot be read)",
        path.display()
    )]
    NotRefused {
        /// The credential file.
        path: PathBuf,
        /// Where the key came from.
        key: String,
    },
    /// A key rotation would leave the new key nowhere.
    #[error(
        "the key comes from {origin}, which sors cannot write: give --new-key-file PATH (the new key is written there, mode 0600) or --print, then install the new key where the old one came from; nothing was changed"
    )]
    NoKeyDestination {
        /// Where the current key came from.
        origin: String,
    },
    /// A file that must be new already exists.
    #[error("{} already exists: choose another path; nothing was changed", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A password or secret given to be saved is empty.
    #[error("the {what} is empty: nothing was saved")]
    EmptySecret {
        /// Which secret, e.g. "CIC password".
        what: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// A 32-byte AES key.
#[derive(Clone)]
struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    fn random() -> Result<Self, CredentialError> {
        let mut key = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| CredentialError::Random(e.to_string()))?;
        Ok(Key(key))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

/// What [`CredentialStore::rotate_key`] should do besides re-encrypting.
#[derive(Debug, Default)]
pub struct RotateOptions {
    /// Also write the new key (32 raw bytes, mode 0600) to this file, which must not exist.
    /// Required when the current key comes from the environment or from systemd (unless
    /// `reveal`), so the new key is never lost.
    pub new_key_file: Option<PathBuf>,
    /// Return the new key (base64) in [`Rotated::revealed`], for `--print`.
    pub reveal: bool,
    /// Tests only: fail as if the step after this one failed.
    #[doc(hidden)]
    pub fail_after: Option<RotateStep>,
}

/// The steps of a key rotation, in order (for failure tests).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateStep {
    /// The new key is written beside the key file (`<key>.new`) and to `--new-key-file`.
    KeyStaged,
    /// The old credential file is copied to `encryptData.json.bak-<time>`.
    BackupWritten,
    /// The new credential file is in place (the key file not yet replaced).
    CredentialsReplaced,
}

/// What a key rotation did.
#[derive(Debug)]
pub struct Rotated {
    /// Where the old key came from.
    pub origin: KeyOrigin,
    /// The key file that now holds the new key, when the old one came from a file we own.
    pub key_written: Option<PathBuf>,
    /// The `--new-key-file` written.
    pub new_key_file: Option<PathBuf>,
    /// The old credential file, kept when the old key still exists elsewhere (environment,
    /// systemd) so the change can be undone until the new key is installed.
    pub backup: Option<PathBuf>,
    /// The new key, base64, only when [`RotateOptions::reveal`] was set.
    pub revealed: Option<Secret>,
}

/// The credentials of one tenant directory.
#[derive(Debug)]
pub struct CredentialStore {
    dir: PathBuf,
    origin: KeyOrigin,
    key: OnceLock<Key>,
}

impl CredentialStore {
    /// Opens the store of tenant directory `dir`, with the key from the first source present
    /// (see the module documentation for the order). Nothing is created until
    /// [`CredentialStore::save`].
    pub fn open(dir: &Path) -> Result<Self, CredentialError> {
        Self::open_with(dir, &ProcessEnv)
    }

    /// [`CredentialStore::open`] with the environment taken from `env`.
    pub fn open_with(dir: &Path, env: &dyn Source) -> Result<Self, CredentialError> {
        let key = OnceLock::new();
        let (origin, found) = find_key(dir, env)?;
        if let Some(found) = found {
            let _ = key.set(found);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            origin,
            key,
        })
    }

    /// The credential file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(SECURE_DIR).join(CREDENTIAL_FILE)
    }

    /// Moves the credential file out of the way, to `encryptData.json.refused-<time>` beside
    /// it, so that credentials can be entered again. Nothing is deleted: the moved file is kept
    /// for inspection. Returns its new path. It does not look at the file: callers decide that
    /// it is refused first (`cli::set_aside` does).
    pub fn set_aside(&self) -> Result<PathBuf, CredentialError> {
        let path = self.path();
        let kept = path.with_file_name(format!("{CREDENTIAL_FILE}.refused-{}", stamp()));
        fs::rename(&path, &kept).map_err(|source| CredentialError::Io {
            action: "move aside",
            path: path.clone(),
            source,
        })?;
        sync_dir(&path)?;
        Ok(kept)
    }

    /// Where the key comes from.
    pub fn key_origin(&self) -> &KeyOrigin {
        &self.origin
    }

    /// Reads and decrypts the credentials; no file means no credentials yet.
    pub fn load(&self) -> Result<Credentials, CredentialError> {
        match self.read()? {
            None => Ok(Credentials::default()),
            Some(bytes) => self.decode(&bytes),
        }
    }

    /// Encrypts and saves the credentials atomically (mode 0600), creating `secureData/` (0700)
    /// and, when there is no key yet, the key file (0600).
    ///
    /// An existing file that does not open with the store's key (modified, damaged, another
    /// format, another key, or no key at all) is refused, never overwritten: restore it or
    /// move it aside ([`CredentialStore::set_aside`]) first.
    pub fn save(&self, credentials: &Credentials) -> Result<(), CredentialError> {
        if let Some(bytes) = self.read()? {
            self.decode(&bytes)?;
        }
        let secure_dir = self.dir.join(SECURE_DIR);
        create_secure_dir(&secure_dir)?;
        let key = match self.key.get() {
            Some(key) => key.clone(),
            None => {
                let created = create_key_file(&secure_dir.join(KEY_FILE))?;
                self.key.get_or_init(|| created).clone()
            }
        };
        let json = self.encode(credentials, &key)?;
        let path = self.path();
        fsutil::write_atomic(&path, &json, 0o600).map_err(|source| CredentialError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// Loads the credentials to prove the key and file are good, and describes what is present.
    pub fn check(&self) -> Result<CredentialSummary, CredentialError> {
        Ok(self.load()?.summary(self.origin.clone()))
    }

    /// Replaces the key with a new random one and re-encrypts the credential file with it.
    ///
    /// The file must open with the current key (else nothing is done). When the key came from a
    /// file we own (`secureData/key`, `SORS_CREDENTIAL_KEY_FILE`), the new key replaces it (same
    /// owner and mode 0600); otherwise (environment, systemd) the new key goes only to
    /// `options.new_key_file` and/or [`Rotated::revealed`], one of which is required, and the
    /// operator installs it where the old one came from.
    ///
    /// Steps: the new key is written beside the key file as `<key>.new` (and to the new key
    /// file), the old credential file is copied to `encryptData.json.bak-<time>`, the new one
    /// is written to a temporary file, flushed and renamed over it, then `<key>.new` is renamed
    /// over the key file. On any failure the steps done are undone: the old file is back in
    /// place and the old key still opens it. A crash between the two renames leaves
    /// `<key>.new`, which [`CredentialStore::load`] names ([`CredentialError::InterruptedRotation`]).
    /// After success the backup is removed when the old key was replaced (it opens with nothing
    /// any more), and kept otherwise (the old key still exists: the backup undoes the rotation
    /// until the new key is installed).
    pub fn rotate_key(self, options: &RotateOptions) -> Result<Rotated, CredentialError> {
        let path = self.path();
        let Some(old_bytes) = self.read()? else {
            return Err(CredentialError::NoFile {
                path,
                what: "nothing to re-encrypt (the first save creates a key)",
            });
        };
        let credentials = self.decode(&old_bytes)?;
        let owned = self.origin.owned_file().map(Path::to_path_buf);
        if owned.is_none() && options.new_key_file.is_none() && !options.reveal {
            return Err(CredentialError::NoKeyDestination {
                origin: self.origin.to_string(),
            });
        }
        if let Some(target) = &options.new_key_file
            && fs::symlink_metadata(target).is_ok()
        {
            return Err(CredentialError::Exists {
                path: target.clone(),
            });
        }
        let new_key = Key::random()?;
        let new_bytes = self.encode(&credentials, &new_key)?;
        // The new file must open with the new key before anything is touched.
        if decode_with(&path, &new_bytes, &new_key)? != credentials {
            return Err(CredentialError::Format {
                path,
                reason: "re-encrypting did not round-trip (nothing written)".into(),
            });
        }
        let fault = |step: RotateStep| -> Result<(), CredentialError> {
            if options.fail_after == Some(step) {
                Err(CredentialError::Io {
                    action: "continue after (injected failure)",
                    path: path.clone(),
                    source: io::Error::other("injected failure"),
                })
            } else {
                Ok(())
            }
        };

        // Everything written so far, removed again on failure.
        let mut undo = Undo::default();
        let result = (|| {
            let pending = owned.as_deref().map(pending_key_path);
            if let (Some(key_path), Some(pending)) = (owned.as_deref(), pending.as_deref()) {
                remove_stale(pending)?;
                write_new_file(pending, &new_key.0, owner_of(key_path)?)?;
                undo.files.push(pending.to_path_buf());
            }
            if let Some(target) = &options.new_key_file {
                write_new_file(target, &new_key.0, None)?;
                undo.files.push(target.clone());
            }
            fault(RotateStep::KeyStaged)?;
            let backup = path.with_file_name(format!("{CREDENTIAL_FILE}.bak-{}", stamp()));
            write_new_file(&backup, &old_bytes, owner_of(&path)?)?;
            undo.files.push(backup.clone());
            fault(RotateStep::BackupWritten)?;
            // From here on a failure puts the backup (an exact copy) back over the file, whether
            // or not the new file got in place.
            undo.restore = Some(backup.clone());
            write_replacing(&path, &new_bytes, owner_of(&path)?)?;
            fault(RotateStep::CredentialsReplaced)?;
            if let (Some(key_path), Some(pending)) = (owned.as_deref(), pending.as_deref()) {
                fs::rename(pending, key_path).map_err(|source| CredentialError::Io {
                    action: "replace the key file with",
                    path: pending.to_path_buf(),
                    source,
                })?;
                // Done: the new key and the new file are in place. Not flushing the directory
                // is no reason to undo them.
                let _ = sync_dir(key_path);
            }
            Ok(backup)
        })();
        let backup = match result {
            Ok(backup) => backup,
            Err(e) => {
                undo.run(&path);
                return Err(e);
            }
        };
        let backup = if owned.is_some() {
            // The old key is gone: the backup opens with nothing any more.
            let _ = fs::remove_file(&backup);
            let _ = sync_dir(&backup);
            None
        } else {
            Some(backup)
        };
        Ok(Rotated {
            origin: self.origin.clone(),
            key_written: owned,
            new_key_file: options.new_key_file.clone(),
            backup,
            revealed: options.reveal.then(|| Secret::new(B64.encode(new_key.0))),
        })
    }

    /// The credential file's bytes; `None` when there is none.
    fn read(&self) -> Result<Option<Vec<u8>>, CredentialError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CredentialError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Opens the file's bytes with the store's key.
    fn decode(&self, bytes: &[u8]) -> Result<Credentials, CredentialError> {
        let path = self.path();
        let Some(key) = self.key.get() else {
            return Err(CredentialError::NoKey {
                file: path,
                key_path: self.dir.join(SECURE_DIR).join(KEY_FILE),
            });
        };
        match decode_with(&path, bytes, key) {
            Err(CredentialError::WrongKey { .. }) => Err(self.wrong_key(&path, bytes)),
            other => other,
        }
    }

    /// The error for a key that does not open the file: an interrupted rotation when the key
    /// it left beside the key file opens it, else a wrong key.
    fn wrong_key(&self, path: &Path, bytes: &[u8]) -> CredentialError {
        if let Some(key_path) = self.origin.owned_file() {
            let pending = pending_key_path(key_path);
            if let Ok(Some(new_key)) = read_key_file(&pending, true)
                && decode_with(path, bytes, &new_key).is_ok()
            {
                return CredentialError::InterruptedRotation {
                    path: path.to_path_buf(),
                    pending,
                    key_path: key_path.to_path_buf(),
                };
            }
        }
        CredentialError::WrongKey {
            path: path.to_path_buf(),
            key: self.origin.to_string(),
        }
    }

    /// The file's bytes for `credentials` sealed with `key`.
    fn encode(&self, credentials: &Credentials, key: &Key) -> Result<Vec<u8>, CredentialError> {
        let cipher = key.cipher();
        let file = File {
            format: FORMAT.into(),
            version: VERSION,
            cipher: CIPHER.into(),
            key_check: seal(&cipher, KEY_CHECK_PLAINTEXT, KEY_CHECK_FIELD)?,
            salesforce: match &credentials.salesforce {
                None => None,
                Some(sf) => Some(SalesforceFile {
                    username: sf.username.clone(),
                    password: seal_secret(&cipher, &sf.password, "salesforce.password")?,
                    security_token: seal_secret(
                        &cipher,
                        &sf.security_token,
                        "salesforce.security_token",
                    )?,
                    client_id: sf.client_id.clone(),
                    client_secret: sf
                        .client_secret
                        .as_ref()
                        .map(|s| seal_secret(&cipher, s, "salesforce.client_secret"))
                        .transpose()?,
                }),
            },
            cic: match &credentials.cic {
                None => None,
                Some(cic) => Some(CicFile {
                    user: cic.user.clone(),
                    password: seal_secret(&cipher, &cic.password, "cic.password")?,
                }),
            },
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| CredentialError::Format {
            path: self.path(),
            reason: format!("cannot encode: {}", e.classify_name()),
        })?;
        json.push(b'\n');
        Ok(json)
    }
}

/// Opens the bytes of credential file `path` with `key`.
fn decode_with(path: &Path, bytes: &[u8], key: &Key) -> Result<Credentials, CredentialError> {
    let file = parse_file(path, bytes)?;
    let cipher = key.cipher();
    let opener = Opener {
        cipher: &cipher,
        path,
    };
    if opener
        .open_raw(&file.key_check, KEY_CHECK_FIELD)
        .is_none_or(|plain| plain != KEY_CHECK_PLAINTEXT)
    {
        // A key that opens another value is the right key: then key_check itself was changed.
        return Err(if opener.opens_any(&file) {
            CredentialError::Tampered {
                path: path.to_path_buf(),
                field: KEY_CHECK_FIELD.into(),
            }
        } else {
            CredentialError::WrongKey {
                path: path.to_path_buf(),
                key: String::new(),
            }
        });
    }
    let salesforce = match file.salesforce {
        None => None,
        Some(sf) => Some(SalesforceCredentials {
            username: sf.username,
            password: opener.open(&sf.password, "salesforce.password")?,
            security_token: opener.open(&sf.security_token, "salesforce.security_token")?,
            client_id: sf.client_id,
            client_secret: sf
                .client_secret
                .map(|s| opener.open(&s, "salesforce.client_secret"))
                .transpose()?,
        }),
    };
    let cic = match file.cic {
        None => None,
        Some(cic) => Some(CicCredentials {
            user: cic.user,
            password: opener.open(&cic.password, "cic.password")?,
        }),
    };
    Ok(Credentials { salesforce, cic })
}

/// Files a failed rotation removes again, and the backup it puts back.
#[derive(Default)]
struct Undo {
    files: Vec<PathBuf>,
    restore: Option<PathBuf>,
}

impl Undo {
    fn run(self, path: &Path) {
        if let Some(backup) = &self.restore {
            // The new file is in place: put the old one back (the backup is its exact copy).
            if fs::rename(backup, path).is_err() {
                // Keep the backup: it is the only copy of the old file now.
                tracing::error!(
                    event = "credentials.rotate.undo_failed",
                    file = %path.display(),
                    backup = %backup.display(),
                    "Could not put the old credential file back; it is kept as the backup"
                );
            }
        }
        for file in &self.files {
            if Some(file) != self.restore.as_ref() {
                let _ = fs::remove_file(file);
            }
        }
        let _ = sync_dir(path);
    }
}

fn stamp() -> impl fmt::Display {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
}

/// Where a rotation stages the new key: `<key file>.new`.
fn pending_key_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    key_path.with_file_name(name)
}

/// Removes a `<key>.new` left by an earlier rotation that stopped before replacing the
/// credential file (the current file opens with the current key, so it is not needed).
fn remove_stale(pending: &Path) -> Result<(), CredentialError> {
    match fs::remove_file(pending) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CredentialError::Io {
            action: "remove the stale",
            path: pending.to_path_buf(),
            source,
        }),
    }
}

/// The owner and group of `path`, to give its replacement (a rotation run as root keeps the
/// service user's files the service user's).
fn owner_of(path: &Path) -> Result<Option<(u32, u32)>, CredentialError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some((meta.uid(), meta.gid()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CredentialError::Io {
            action: "read the owner of",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates `path` (which must not exist), mode 0600, with `bytes`, flushed to disk.
fn write_new_file(
    path: &Path,
    bytes: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<(), CredentialError> {
    let io_error = |source| CredentialError::Io {
        action: "create",
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                CredentialError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_error(e)
            }
        })?;
    let result = (|| {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result.map_err(io_error).and_then(|()| sync_dir(path)) {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Replaces `path` atomically with `bytes` (mode 0600, owner kept): a temporary file in the same
/// directory, flushed, renamed over it, the directory flushed.
fn write_replacing(
    path: &Path,
    bytes: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<(), CredentialError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    write_new_file(&tmp, bytes, owner)?;
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(CredentialError::Io {
            action: "replace",
            path: path.to_path_buf(),
            source,
        });
    }
    sync_dir(path)
}

/// Flushes the directory holding `path`, making a create, rename or removal in it durable.
fn sync_dir(path: &Path) -> Result<(), CredentialError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| CredentialError::Io {
            action: "flush the directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// The first key source present, in the documented order, and its key (`None` only for
/// `secureData/key` before the first save).
fn find_key(dir: &Path, env: &dyn Source) -> Result<(KeyOrigin, Option<Key>), CredentialError> {
    if let Some(text) = env.var(KEY_ENV) {
        return Ok((KeyOrigin::Env, Some(key_from_base64(&text)?)));
    }
    if let Some(path) = env.var(KEY_FILE_ENV) {
        let path = PathBuf::from(path);
        return match read_key_file(&path, true)? {
            Some(key) => Ok((KeyOrigin::EnvFile(path), Some(key))),
            None => Err(CredentialError::MissingKeyFile { path }),
        };
    }
    if let Some(creds) = env.var(CREDENTIALS_DIRECTORY_ENV).filter(|d| !d.is_empty()) {
        let path = Path::new(&creds).join(SYSTEMD_CREDENTIAL);
        if let Some(key) = read_key_file(&path, false)? {
            return Ok((KeyOrigin::SystemdCredential(path), Some(key)));
        }
    }
    let path = dir.join(SECURE_DIR).join(KEY_FILE);
    let key = read_key_file(&path, true)?;
    Ok((KeyOrigin::File(path), key))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "unexpected content",
            serde_json::error::Category::Eof => "the file ends too early (it was cut short)",
        }
    }
}

/// One sealed value: base64 nonce and base64 ciphertext (with the GCM tag).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    version: u64,
    cipher: String,
    key_check: Sealed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salesforce: Option<SalesforceFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cic: Option<CicFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SalesforceFile {
    username: String,
    password: Sealed,
    security_token: Sealed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<Sealed>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CicFile {
    user: String,
    password: Sealed,
}

/// Parses the file, checking format and version first. Error texts never quote file content
/// (a hand-edited file could hold a clear-text password).
fn parse_file(path: &Path, text: &[u8]) -> Result<File, CredentialError> {
    let format_error = |reason: String| CredentialError::Format {
        path: path.to_path_buf(),
        reason,
    };
    if text.trim_ascii().is_empty() {
        return Err(format_error(
            "the file is empty (it was cut short, e.g. by a full disk or a copy that failed)"
                .into(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
        format_error(format!(
            "{} at line {} column {}",
            e.classify_name(),
            e.line(),
            e.column()
        ))
    })?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(format_error(format!(
            "it has no \"format\": \"{FORMAT}\" (a file from the original product cannot be read: enter the credentials again with `sors credentials set-salesforce` and `set-cic`)"
        )));
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(VERSION) => {}
        Some(found) => {
            return Err(CredentialError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
            });
        }
        None => return Err(format_error("it has no numeric \"version\"".into())),
    }
    if value.get("cipher").and_then(|c| c.as_str()) != Some(CIPHER) {
        return Err(format_error(format!("its cipher is not {CIPHER}")));
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        // "missing field `x`" and "unknown field `x`" name only fields; other serde messages
        // may quote a value, so they are replaced by a generic description.
        let reason = if text.starts_with("missing field") || text.starts_with("unknown field") {
            text
        } else {
            "a value has the wrong type or form".into()
        };
        format_error(reason)
    })
}

fn aad(field: &str) -> Vec<u8> {
    format!("{FORMAT}/v{VERSION}/{field}").into_bytes()
}

fn seal(cipher: &Aes256Gcm, plaintext: &[u8], field: &str) -> Result<Sealed, CredentialError> {
    let mut nonce = [0u8; 12];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|e| CredentialError::Random(e.to_string()))?;
    let aad = aad(field);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| CredentialError::Random("AES-GCM encryption failed".into()))?;
    Ok(Sealed {
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(ciphertext),
    })
}

fn seal_secret(
    cipher: &Aes256Gcm,
    secret: &Secret,
    field: &str,
) -> Result<Sealed, CredentialError> {
    seal(cipher, secret.expose().as_bytes(), field)
}

struct Opener<'a> {
    cipher: &'a Aes256Gcm,
    path: &'a Path,
}

impl Opener<'_> {
    /// Decrypts a sealed value; `None` when it is malformed or fails authentication.
    fn open_raw(&self, sealed: &Sealed, field: &str) -> Option<Vec<u8>> {
        let nonce = B64.decode(&sealed.nonce).ok()?;
        if nonce.len() != 12 {
            return None;
        }
        let ciphertext = B64.decode(&sealed.ciphertext).ok()?;
        let aad = aad(field);
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .ok()
    }

    fn open(&self, sealed: &Sealed, field: &str) -> Result<Secret, CredentialError> {
        let tampered = || CredentialError::Tampered {
            path: self.path.to_path_buf(),
            field: field.to_owned(),
        };
        let plain = self.open_raw(sealed, field).ok_or_else(tampered)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| tampered())
    }

    /// Whether any sealed value besides `key_check` opens (then the key is right).
    fn opens_any(&self, file: &File) -> bool {
        let mut sealed: Vec<(&Sealed, &str)> = Vec::new();
        if let Some(sf) = &file.salesforce {
            sealed.push((&sf.password, "salesforce.password"));
            sealed.push((&sf.security_token, "salesforce.security_token"));
            if let Some(cs) = &sf.client_secret {
                sealed.push((cs, "salesforce.client_secret"));
            }
        }
        if let Some(cic) = &file.cic {
            sealed.push((&cic.password, "cic.password"));
        }
        sealed
            .into_iter()
            .any(|(value, field)| self.open_raw(value, field).is_some())
    }
}

fn key_from_base64(text: &str) -> Result<Key, CredentialError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| CredentialError::BadEnvKey {
            reason: "not valid base64".into(),
        })?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| CredentialError::BadEnvKey {
            reason: format!("it decodes to {} bytes", bytes.len()),
        })?;
    Ok(Key(key))
}

/// The key in a key file: 32 raw bytes, or their base64 on one line.
fn key_from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Key, CredentialError> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Ok(Key(raw));
    }
    let bad = || CredentialError::BadKeyFile {
        path: path.to_path_buf(),
        len: bytes.len() as u64,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
    let decoded = B64.decode(text.trim()).map_err(|_| bad())?;
    <[u8; 32]>::try_from(decoded.as_slice())
        .map(Key)
        .map_err(|_| bad())
}

/// Reads a key file; `None` when it does not exist (or, for the systemd credential, holds the
/// "none" fallback). With `owner_only`, a file that group or others can access is refused.
fn read_key_file(path: &Path, owner_only: bool) -> Result<Option<Key>, CredentialError> {
    // Longer than any key file, so a wrong path (a log, a device) is not read whole.
    const MAX_LEN: u64 = 256;
    let io_error = |source| CredentialError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let meta = file.metadata().map_err(io_error)?;
    let mode = meta.permissions().mode() & 0o777;
    if owner_only && mode & 0o077 != 0 {
        return Err(CredentialError::InsecureKeyFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_LEN {
        return Err(CredentialError::BadKeyFile {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(64);
    file.take(MAX_LEN)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if !owner_only && bytes.trim_ascii() == SYSTEMD_CREDENTIAL_NONE.as_bytes() {
        return Ok(None);
    }
    key_from_file_bytes(path, &bytes).map(Some)
}

fn create_secure_dir(path: &Path) -> Result<(), CredentialError> {
    match DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(source) => Err(CredentialError::Io {
            action: "create",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates a new random key file (0600). When another process created it first, uses theirs.
fn create_key_file(path: &Path) -> Result<Key, CredentialError> {
    let key = Key::random()?;
    match write_new_file(path, &key.0, None) {
        Ok(()) => Ok(key),
        Err(CredentialError::Exists { .. }) => {
            read_key_file(path, true)?.ok_or_else(|| CredentialError::Io {
                action: "create",
                path: path.to_path_buf(),
                source: io::ErrorKind::NotFound.into(),
            })
        }
        Err(e) => Err(e),
    }
}
