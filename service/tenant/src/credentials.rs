//! Encrypted credentials: `secureData/encryptData.json`, sealed with AES-256-GCM.
//!
//! The key is `SORS_CREDENTIAL_KEY` (base64 of 32 bytes) when set, else the 32 raw bytes of
//! `secureData/key`, which must be readable by its owner only and is created (mode 0600) on the
//! first save. Every secret is sealed with a fresh random 96-bit nonce on every save, with its
//! field name as associated data, so values cannot be swapped between fields. User names and the
//! OAuth client id are stored in clear (they are shown by `sors credentials show` and on the
//! login pages). A `key_check` value tells a wrong key apart from a modified file.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
/// The environment variable that holds the key (base64 of 32 bytes); wins over the key file.
pub const KEY_ENV: &str = "SORS_CREDENTIAL_KEY";

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

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `SORS_CREDENTIAL_KEY`.
    Env,
    /// The key file (it may not exist yet: it is created on the first save).
    File(PathBuf),
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
    /// The key file does not hold exactly 32 bytes.
    #[error("the key file {} holds {len} bytes; a key is exactly 32 bytes", path.display())]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// There is a credential file but no key to open it.
    #[error(
        "{} exists but there is no key to open it: set {KEY_ENV} or restore {}",
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
        "the key does not open {}: it is not the key the credentials were saved with ({key})",
        path.display()
    )]
    WrongKey {
        /// The credential file.
        path: PathBuf,
        /// Where the key came from, e.g. "key from SORS_CREDENTIAL_KEY".
        key: String,
    },
    /// A sealed value fails its integrity check although the key is right.
    #[error(
        "{} was modified: the value of `{field}` fails its integrity check; enter those credentials again",
        path.display()
    )]
    Tampered {
        /// The credential file.
        path: PathBuf,
        /// The field, e.g. `salesforce.password`.
        field: String,
    },
    /// The file is not a sors credential file (or is damaged).
    #[error("{} is not a readable sors credential file: {reason}", path.display())]
    Format {
        /// The credential file.
        path: PathBuf,
        /// What is wrong (never a value from the file).
        reason: String,
    },
    /// The file was written by a newer sors.
    #[error("{} has format version {found}; this sors reads version {VERSION}", path.display())]
    UnsupportedVersion {
        /// The credential file.
        path: PathBuf,
        /// The version found.
        found: u64,
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

/// The credentials of one tenant directory.
#[derive(Debug)]
pub struct CredentialStore {
    dir: PathBuf,
    origin: KeyOrigin,
    key: OnceLock<Key>,
}

impl CredentialStore {
    /// Opens the store of tenant directory `dir`, with the key from the process environment or
    /// the key file. Nothing is created until [`CredentialStore::save`].
    pub fn open(dir: &Path) -> Result<Self, CredentialError> {
        Self::open_with(dir, &ProcessEnv)
    }

    /// [`CredentialStore::open`] with the environment taken from `env`.
    pub fn open_with(dir: &Path, env: &dyn Source) -> Result<Self, CredentialError> {
        let key = OnceLock::new();
        let origin = match env.var(KEY_ENV) {
            Some(text) => {
                let _ = key.set(key_from_base64(&text)?);
                KeyOrigin::Env
            }
            None => {
                let path = dir.join(SECURE_DIR).join(KEY_FILE);
                if let Some(found) = read_key_file(&path)? {
                    let _ = key.set(found);
                }
                KeyOrigin::File(path)
            }
        };
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

    /// Moves a credential file that cannot be read (damaged or modified) out of the way, to
    /// `encryptData.json.refused-<time>` beside it, so that credentials can be entered again.
    /// Nothing is deleted: the refused file is kept for inspection. Returns its new path.
    pub fn set_aside(&self) -> Result<PathBuf, CredentialError> {
        let path = self.path();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let kept = path.with_file_name(format!("{CREDENTIAL_FILE}.refused-{stamp}"));
        fs::rename(&path, &kept).map_err(|source| CredentialError::Io {
            action: "move aside",
            path: path.clone(),
            source,
        })?;
        Ok(kept)
    }

    /// Where the key comes from.
    pub fn key_origin(&self) -> &KeyOrigin {
        &self.origin
    }

    /// Reads and decrypts the credentials; no file means no credentials yet.
    pub fn load(&self) -> Result<Credentials, CredentialError> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Credentials::default()),
            Err(source) => {
                return Err(CredentialError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let Some(key) = self.key.get() else {
            return Err(CredentialError::NoKey {
                file: path,
                key_path: self.dir.join(SECURE_DIR).join(KEY_FILE),
            });
        };
        let file = parse_file(&path, &text)?;
        let cipher = Aes256Gcm::new(&key.0.into());
        let opener = Opener {
            cipher: &cipher,
            path: &path,
        };
        if opener
            .open_raw(&file.key_check, KEY_CHECK_FIELD)
            .is_none_or(|plain| plain != KEY_CHECK_PLAINTEXT)
        {
            return Err(CredentialError::WrongKey {
                path,
                key: self.key_description(),
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

    /// Encrypts and saves the credentials atomically (mode 0600), creating `secureData/` (0700)
    /// and, when there is no key yet, the key file (0600).
    pub fn save(&self, credentials: &Credentials) -> Result<(), CredentialError> {
        let secure_dir = self.dir.join(SECURE_DIR);
        create_secure_dir(&secure_dir)?;
        let key = match self.key.get() {
            Some(key) => key.clone(),
            None => {
                let created = create_key_file(&secure_dir.join(KEY_FILE))?;
                self.key.get_or_init(|| created).clone()
            }
        };
        let cipher = Aes256Gcm::new(&key.0.into());
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
        let path = self.path();
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| CredentialError::Format {
            path: path.clone(),
            reason: format!("cannot encode: {}", e.classify_name()),
        })?;
        json.push(b'\n');
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

    fn key_description(&self) -> String {
        match &self.origin {
            KeyOrigin::Env => format!("key from {KEY_ENV}"),
            KeyOrigin::File(path) => format!("key from {}", path.display()),
        }
    }
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
            serde_json::error::Category::Eof => "the file ends too early",
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

fn read_key_file(path: &Path) -> Result<Option<Key>, CredentialError> {
    let io_error = |source| CredentialError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let meta = file.metadata().map_err(io_error)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialError::InsecureKeyFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() != 32 {
        return Err(CredentialError::BadKeyFile {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut key = [0u8; 32];
    file.read_exact(&mut key).map_err(io_error)?;
    Ok(Some(Key(key)))
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
    let mut key = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| CredentialError::Random(e.to_string()))?;
    let io_error = |source| CredentialError::Io {
        action: "create",
        path: path.to_path_buf(),
        source,
    };
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(&key).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
            Ok(Key(key))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_key_file(path)?.ok_or_else(|| io_error(e))
        }
        Err(e) => Err(io_error(e)),
    }
}
