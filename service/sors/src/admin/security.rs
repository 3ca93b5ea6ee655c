//! What keeps the admin pages for the administrator: the first-run setup token, the admin
//! password's hash file, the in-memory sessions, the CSRF tokens and the login rate limit.
//!
//! Every secret here is a [`Secret`] or stays inside this module; every comparison of a token
//! or password with what a client sent runs in constant time.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sors_core::Secret;
use subtle::ConstantTimeEq as _;

/// The session cookie.
pub const SESSION_COOKIE: &str = "sors_admin";
/// The pre-session CSRF cookie of `/setup` and `/login` (double submit).
pub const CSRF_COOKIE: &str = "sors_csrf";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The admin password's hash, inside the tenant's `secureData/`.
pub const ADMIN_FILE: &str = "admin";
/// The shortest admin password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Failed logins allowed per client address within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_ALLOWED: usize = 5;
/// The window of the login rate limit.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 1000;
/// Client addresses the rate limit remembers at most.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Why the admin password could not be stored or read. No variant holds a password.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the admin password is already set")]
    AlreadySet,
    #[error("{} is not an admin password hash (delete it to run the first-run setup again)", path.display())]
    BadHash { path: PathBuf },
    #[error("the admin password could not be hashed: {0}")]
    Hash(String),
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// `n` random bytes from the operating system.
fn random_bytes<const N: usize>() -> Result<[u8; N], SecurityError> {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| SecurityError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A random token: 256 bits, URL-safe base64 (session ids, CSRF tokens).
pub fn random_token() -> Result<Secret, SecurityError> {
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)))
}

/// The one-time setup token: 128 bits, hexadecimal (easy to copy from a console).
pub fn setup_token() -> Result<Secret, SecurityError> {
    let bytes = random_bytes::<16>()?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// Compares a secret with what a client sent, in time independent of where they differ.
pub fn same(expected: &Secret, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.expose().as_bytes().ct_eq(given.as_bytes()))
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict; Path=/; Secure` (browsers treat
/// `http://127.0.0.1` and `localhost` as secure), for `max_age` (zero: delete it).
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Secure; Max-Age={}",
        max_age.as_secs()
    )
}

/// The admin password's argon2id hash (PHC string) in `secureData/admin`, mode 0600.
#[derive(Debug, Clone)]
pub struct PasswordFile {
    path: PathBuf,
}

impl PasswordFile {
    pub fn new(tenant_dir: &Path) -> PasswordFile {
        PasswordFile {
            path: tenant_dir
                .join(sors_tenant::credentials::SECURE_DIR)
                .join(ADMIN_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Stores the hash of `password`; fails if a password is already set (two setups at once:
    /// the first wins).
    pub fn create(&self, password: &Secret) -> Result<(), SecurityError> {
        let salt = SaltString::encode_b64(&random_bytes::<16>()?)
            .map_err(|e| SecurityError::Hash(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map_err(|e| SecurityError::Hash(e.to_string()))?
            .to_string();
        let io = |action, source| SecurityError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("create the directory of", e))?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    SecurityError::AlreadySet
                } else {
                    io("create", e)
                }
            })?;
        let written = file
            .write_all(format!("{hash}\n").as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&self.path);
            return Err(io("write", e));
        }
        Ok(())
    }

    /// Whether `password` is the admin password (argon2 compares in constant time).
    pub fn verify(&self, password: &str) -> Result<bool, SecurityError> {
        let text = fs::read_to_string(&self.path).map_err(|source| SecurityError::Io {
            action: "read",
            path: self.path.clone(),
            source,
        })?;
        let hash = PasswordHash::new(text.trim()).map_err(|_| SecurityError::BadHash {
            path: self.path.clone(),
        })?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok())
    }
}

/// A signed-in administrator.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Secret,
    /// The CSRF token of every form of this session.
    pub csrf: Secret,
}

struct SessionEntry {
    id: Secret,
    csrf: Secret,
    expires: Instant,
}

/// The sessions, in memory only (a restart signs everybody out).
#[derive(Default)]
pub struct Sessions {
    entries: Mutex<Vec<SessionEntry>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SessionEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create(&self) -> Result<Session, SecurityError> {
        let session = Session {
            id: random_token()?,
            csrf: random_token()?,
        };
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|e| e.expires > now);
        if entries.len() >= MAX_SESSIONS {
            entries.remove(0);
        }
        entries.push(SessionEntry {
            id: session.id.clone(),
            csrf: session.csrf.clone(),
            expires: now + SESSION_LIFETIME,
        });
        Ok(session)
    }

    /// The live session whose id is `id` (every entry is compared, in constant time each).
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|e| e.expires > now);
        let mut found = None;
        for e in entries.iter() {
            if same(&e.id, id) {
                found = Some(Session {
                    id: e.id.clone(),
                    csrf: e.csrf.clone(),
                });
            }
        }
        found
    }

    pub fn remove(&self, id: &Secret) {
        self.lock().retain(|e| !same(&e.id, id.expose()));
    }

    pub fn count(&self) -> usize {
        let now = Instant::now();
        self.lock().iter().filter(|e| e.expires > now).count()
    }
}

/// Failed logins per client address.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(wait)` when `client` has failed too often within the window.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.lock();
        let times = map.get_mut(&client)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
        {
            times.pop_front();
        }
        if times.len() < LOGIN_FAILURES_ALLOWED {
            return None;
        }
        let oldest = *times.front()?;
        Some(LOGIN_WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    pub fn failed(&self, client: IpAddr) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED_CLIENTS {
            map.retain(|_, t| {
                t.back()
                    .is_some_and(|t| now.duration_since(*t) < LOGIN_WINDOW)
            });
        }
        let times = map.entry(client).or_default();
        times.push_back(now);
        while times.len() > LOGIN_FAILURES_ALLOWED {
            times.pop_front();
        }
    }

    pub fn succeeded(&self, client: IpAddr) {
        self.lock().remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("sors-admin-{label}-{n:016x}"));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tokens_are_random_and_long_enough() {
        let a = setup_token().unwrap();
        let b = setup_token().unwrap();
        assert_eq!(a.expose().len(), 32, "128 bits in hex");
        assert_ne!(a.expose(), b.expose());
        assert_eq!(random_token().unwrap().expose().len(), 43, "256 bits");
        assert_eq!(format!("{a}"), "***");
        assert!(same(&a, a.expose()));
        assert!(!same(&a, b.expose()));
        assert!(!same(&a, ""));
        assert!(
            !same(&Secret::new(""), ""),
            "an empty secret matches nothing"
        );
    }

    #[test]
    fn the_password_file_is_argon2id_mode_0600_and_set_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir("pw");
        let file = PasswordFile::new(&dir);
        assert!(!file.exists());
        file.create(&Secret::new("correct horse battery")).unwrap();
        let text = fs::read_to_string(file.path()).unwrap();
        assert!(text.starts_with("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        let mode = fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(file.verify("correct horse battery").unwrap());
        assert!(!file.verify("correct horse batterY").unwrap());
        assert!(matches!(
            file.create(&Secret::new("another password")),
            Err(SecurityError::AlreadySet)
        ));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn sessions_are_found_by_id_and_removed() {
        let s = Sessions::default();
        let a = s.create().unwrap();
        let b = s.create().unwrap();
        assert_eq!(s.get(a.id.expose()).unwrap().csrf.expose(), a.csrf.expose());
        assert!(s.get("nope").is_none());
        s.remove(&a.id);
        assert!(s.get(a.id.expose()).is_none());
        assert!(s.get(b.id.expose()).is_some());
        assert_eq!(s.count(), 1);
    }

    #[test]
    fn the_limiter_blocks_after_five_failures_per_address() {
        let l = LoginLimiter::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..LOGIN_FAILURES_ALLOWED {
            assert!(l.blocked(a).is_none());
            l.failed(a);
        }
        let wait = l.blocked(a).unwrap();
        assert!(wait <= LOGIN_WINDOW && wait > Duration::from_secs(50));
        assert!(l.blocked(b).is_none(), "per address");
        l.succeeded(a);
        assert!(l.blocked(a).is_none());
    }

    #[test]
    fn cookies_are_read_and_written_with_their_attributes() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; sors_admin=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            set_cookie(SESSION_COOKIE, "v", SESSION_LIFETIME),
            "sors_admin=v; HttpOnly; SameSite=Strict; Path=/; Secure; Max-Age=28800"
        );
    }
}
