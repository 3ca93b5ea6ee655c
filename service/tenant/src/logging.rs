//! Logging: human-readable lines on stdout, daily log files, and the operational events in the
//! system journal.
//!
//! - Filter: `[logging] level`, or `RUST_LOG` when set.
//! - Files: `application.YYYY-MM-DD.log` (UTC date, a new file each UTC day) in the directory
//!   chosen by [`log_dir`]; files older than `retention_days` days are removed at start and
//!   checked again every hour ([`prune_logs`]).
//! - Journal: with `[logging] journal = true`, every event at info level or above whose field
//!   `event` starts with `salesforce.`, `icws.` or `router.` (but the per-hop events of one row,
//!   [`FILE_ONLY_EVENTS`]) is also sent as an RFC 3164 datagram
//!   to `/dev/log` (read by systemd-journald or a syslog daemon), identifier `sors-<tenant>`,
//!   facility daemon. Without `/dev/log` a warning is written once and logging carries on.

use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, IsTerminal};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt as tfmt};

use crate::config::LoggingConfig;
use crate::env::{ProcessEnv, Source};

/// Log file name prefix: files are `application.YYYY-MM-DD.log`.
pub const FILE_PREFIX: &str = "application";
/// Log file name suffix.
pub const FILE_SUFFIX: &str = "log";
/// The system log socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// Prefixes of the `event` field values that also go to the journal.
pub const OPERATIONAL_PREFIXES: [&str; 3] = ["salesforce.", "icws.", "router."];
/// The per-hop events of one row (they let a grep of the log file follow a row): in the log
/// files only, never in the journal, which would drown in them during a backlog.
pub const FILE_ONLY_EVENTS: [&str; 4] = [
    "router.pushed",
    "router.rows_fetched",
    "router.raised",
    "router.rows_written",
];

const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Log lines queued for the file writer before new ones are dropped.
pub const FILE_QUEUE_LINES: usize = 16_384;
/// Longest datagram sent to the journal; longer messages are cut.
const MAX_DATAGRAM: usize = 8192;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log directory could not be created.
    #[error("cannot create the log directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The daily log file could not be opened.
    #[error("cannot open the log file in {}: {message}", path.display())]
    Appender {
        /// The directory.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A global subscriber is already installed.
    #[error("logging is already set up in this process: {0}")]
    AlreadyInitialized(String),
    /// The pruning thread could not be started.
    #[error("cannot start the log pruning thread: {0}")]
    Spawn(io::Error),
}

/// Keeps logging running: flushes the log file and stops pruning when dropped. Keep it alive
/// for the life of the process.
pub struct LogGuard {
    log_dir: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    pruner: Option<JoinHandle<()>>,
    _file: WorkerGuard,
}

impl LogGuard {
    /// The directory the log files are written to.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }
}

impl fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogGuard")
            .field("log_dir", &self.log_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(pruner) = self.pruner.take() {
            let _ = pruner.join();
        }
    }
}

/// Sets up logging for the process (once): stdout, daily files, journal. Reads `RUST_LOG` and
/// `ININ_TRACE_ROOT` from the process environment.
pub fn init(
    config: &LoggingConfig,
    tenant_dir: &Path,
    tenant_name: &str,
) -> Result<LogGuard, LoggingError> {
    init_with(
        config,
        tenant_dir,
        tenant_name,
        &ProcessEnv,
        Path::new(SYSLOG_SOCKET),
    )
}

/// [`init`] with the environment from `env` and the journal socket at `journal_socket`.
pub fn init_with(
    config: &LoggingConfig,
    tenant_dir: &Path,
    tenant_name: &str,
    env: &dyn Source,
    journal_socket: &Path,
) -> Result<LogGuard, LoggingError> {
    let dir = log_dir(config, tenant_dir, tenant_name, env);
    fs::create_dir_all(&dir).map_err(|source| LoggingError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(FILE_PREFIX)
        .filename_suffix(FILE_SUFFIX)
        .build(&dir)
        .map_err(|e| LoggingError::Appender {
            path: dir.clone(),
            message: e.to_string(),
        })?;
    // The writer's queue is allocated whole up front: tracing-appender's default of 128,000
    // lines is 4 MB resident in every tenant's process at rest. FILE_QUEUE_LINES still takes a
    // backlog's burst of per-hop lines while the disk catches up; beyond it lines are dropped
    // (and counted by tracing-appender), never blocking routing.
    let (file_writer, file_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(FILE_QUEUE_LINES)
        .finish(appender);

    let (stdout_filter, filter_warning) = filter(config, env);
    let (file_filter, _) = filter(config, env);
    let stdout = tfmt::layer()
        .with_ansi(io::stdout().is_terminal())
        .with_filter(stdout_filter);
    let file = tfmt::layer()
        .with_ansi(false)
        .with_writer(file_writer)
        .with_filter(file_filter);
    let (journal, journal_warning) = if config.journal {
        let layer = JournalLayer::new(journal_socket, tenant_name);
        let warning = layer.connect_now().err();
        (Some(layer.with_filter(LevelFilter::INFO)), warning)
    } else {
        (None, None)
    };
    tracing_subscriber::registry()
        .with(stdout)
        .with(file)
        .with(journal)
        .try_init()
        .map_err(|e| LoggingError::AlreadyInitialized(e.to_string()))?;

    if let Some(warning) = filter_warning {
        tracing::warn!(event = "logging.filter_invalid", "{warning}");
    }
    if let Some(warning) = journal_warning {
        tracing::warn!(
            event = "logging.journal_unavailable",
            socket = %journal_socket.display(),
            "operational events go to the log file only: {warning}"
        );
    }

    let retention = config.retention_days;
    prune_and_report(&dir, retention);
    let (stop, stopped) = mpsc::channel::<()>();
    let prune_dir = dir.clone();
    let pruner = thread::Builder::new()
        .name("sors-log-prune".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PRUNE_EVERY) {
                prune_and_report(&prune_dir, retention);
            }
        })
        .map_err(LoggingError::Spawn)?;
    tracing::info!(
        event = "logging.started",
        log_dir = %dir.display(),
        retention_days = retention,
        journal = config.journal,
        "logging started"
    );
    Ok(LogGuard {
        log_dir: dir,
        stop: Some(stop),
        pruner: Some(pruner),
        _file: file_guard,
    })
}

/// The filter from `RUST_LOG` (when set and valid) or the configured level, plus a warning when
/// `RUST_LOG` was unusable.
fn filter(config: &LoggingConfig, env: &dyn Source) -> (EnvFilter, Option<String>) {
    let configured = || {
        EnvFilter::builder()
            .parse(&config.level)
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    match env.var("RUST_LOG").filter(|v| !v.trim().is_empty()) {
        Some(directives) => match EnvFilter::builder().parse(&directives) {
            Ok(filter) => (filter, None),
            Err(e) => (
                configured(),
                Some(format!(
                    "RUST_LOG is not a valid filter ({e}); using [logging] level {:?}",
                    config.level
                )),
            ),
        },
        None => (configured(), None),
    }
}

/// The log directory: `[logging] dir` (relative to the tenant directory) when set, else
/// `$ININ_TRACE_ROOT/<tenant>` when that variable is set, else `<tenant dir>/logs`.
pub fn log_dir(
    config: &LoggingConfig,
    tenant_dir: &Path,
    tenant_name: &str,
    env: &dyn Source,
) -> PathBuf {
    if let Some(dir) = &config.dir {
        return tenant_dir.join(dir);
    }
    match env.var("ININ_TRACE_ROOT").filter(|v| !v.trim().is_empty()) {
        Some(root) => PathBuf::from(root).join(tenant_name),
        None => tenant_dir.join("logs"),
    }
}

fn prune_and_report(dir: &Path, retention_days: u32) {
    match prune_logs(dir, retention_days, Utc::now().date_naive()) {
        Ok(removed) if !removed.is_empty() => tracing::info!(
            event = "logging.pruned",
            removed = removed.len(),
            "removed log files older than {retention_days} days"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            event = "logging.prune_failed",
            log_dir = %dir.display(),
            "cannot remove old log files: {e}"
        ),
    }
}

/// Removes the daily log files in `dir` dated `retention_days` or more days before `today`
/// (so `today` and the `retention_days - 1` days before it are kept). Only files named
/// `application.YYYY-MM-DD.log` (or the original product's `application-YYYY-MM-DD.log`) are
/// touched. Returns the removed files.
pub fn prune_logs(dir: &Path, retention_days: u32, today: NaiveDate) -> io::Result<Vec<PathBuf>> {
    let keep_from = today
        .checked_sub_days(chrono::Days::new(u64::from(
            retention_days.saturating_sub(1),
        )))
        .unwrap_or(NaiveDate::MIN);
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(date) = name.to_str().and_then(log_file_date) else {
            continue;
        };
        if date < keep_from && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

/// The date of a daily log file name, or `None` when the name is not one.
fn log_file_date(name: &str) -> Option<NaiveDate> {
    let rest = name.strip_prefix(FILE_PREFIX)?;
    let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix('-'))?;
    let date = rest.strip_suffix(FILE_SUFFIX)?.strip_suffix('.')?;
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

/// Whether an `event` field value is an operational event (journal-worthy).
pub fn is_operational(event: &str) -> bool {
    OPERATIONAL_PREFIXES.iter().any(|p| event.starts_with(p)) && !FILE_ONLY_EVENTS.contains(&event)
}

/// A layer that sends operational events to the system log socket as RFC 3164 datagrams:
/// `<PRI>Mmm dd hh:mm:ss sors-<tenant>[pid]: <message> event=<name> key=value…`.
pub struct JournalLayer {
    socket_path: PathBuf,
    ident: String,
    socket: Mutex<Option<UnixDatagram>>,
    warned: AtomicBool,
}

impl fmt::Debug for JournalLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalLayer")
            .field("socket_path", &self.socket_path)
            .field("ident", &self.ident)
            .finish_non_exhaustive()
    }
}

impl JournalLayer {
    /// A layer writing to the datagram socket at `socket_path` (normally `/dev/log`) with the
    /// identifier `sors-<tenant>`. It connects on first use and reconnects after a failure.
    pub fn new(socket_path: impl Into<PathBuf>, tenant: &str) -> Self {
        Self {
            socket_path: socket_path.into(),
            ident: format!("sors-{tenant}"),
            socket: Mutex::new(None),
            warned: AtomicBool::new(false),
        }
    }

    /// Connects now; on failure the reason is returned and no further warning is printed.
    pub fn connect_now(&self) -> Result<(), String> {
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        match self.connect() {
            Ok(s) => {
                *socket = Some(s);
                Ok(())
            }
            Err(e) => {
                self.warned.store(true, Ordering::Relaxed);
                Err(format!("cannot reach {}: {e}", self.socket_path.display()))
            }
        }
    }

    /// A non-blocking socket: a busy journal must never stall the thread that logs.
    fn connect(&self) -> io::Result<UnixDatagram> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(&self.socket_path)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    fn send(&self, datagram: &[u8]) {
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        if socket.is_none() {
            match self.connect() {
                Ok(s) => *socket = Some(s),
                Err(e) => return self.warn_once(&e),
            }
        }
        if let Some(s) = socket.as_ref() {
            match s.send(datagram) {
                Ok(_) => {}
                // The journal's queue is full: this event is dropped, the socket kept.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.warn_once(&e),
                Err(e) => {
                    *socket = None;
                    self.warn_once(&e);
                }
            }
        }
    }

    /// Inside a layer, tracing events would be dropped (no re-entrance), so this goes to stderr.
    fn warn_once(&self, error: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "sors: cannot write to the system log at {} ({error}); operational events that cannot be sent go to the log file only",
                self.socket_path.display()
            );
        }
    }
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(name) = fields.event.take().filter(|n| is_operational(n)) else {
            return;
        };
        let timestamp = chrono::Local::now().format("%b %e %H:%M:%S").to_string();
        let line = format_syslog(
            level,
            &timestamp,
            &self.ident,
            std::process::id(),
            &name,
            &fields,
        );
        self.send(line.as_bytes());
    }
}

/// The fields of one event: its message, its `event` name, and the rest as `key=value`.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    event: Option<String>,
    others: String,
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "event" => self.event = Some(value),
            name => {
                let value = one_line(&value);
                if value.is_empty() || value.contains([' ', '"', '=']) {
                    let _ = write!(self.others, " {name}={value:?}");
                } else {
                    let _ = write!(self.others, " {name}={value}");
                }
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Syslog severity of a tracing level (facility daemon = 3).
fn priority(level: Level) -> u8 {
    let severity = match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    };
    3 * 8 + severity
}

fn format_syslog(
    level: Level,
    timestamp: &str,
    ident: &str,
    pid: u32,
    event_name: &str,
    fields: &Fields,
) -> String {
    let mut line = format!(
        "<{}>{timestamp} {ident}[{pid}]: {} event={event_name}{}",
        priority(level),
        one_line(&fields.message),
        fields.others
    );
    if line.len() > MAX_DATAGRAM {
        let mut cut = MAX_DATAGRAM;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_names() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day);
        assert_eq!(log_file_date("application.2024-03-05.log"), d(2024, 3, 5));
        assert_eq!(log_file_date("application-2024-03-05.log"), d(2024, 3, 5));
        assert_eq!(log_file_date("application.2024-13-05.log"), None);
        assert_eq!(log_file_date("application.log"), None);
        assert_eq!(log_file_date("other.2024-03-05.log"), None);
        assert_eq!(log_file_date("application.2024-03-05.log.gz"), None);
    }

    #[test]
    fn priorities() {
        assert_eq!(priority(Level::ERROR), 27);
        assert_eq!(priority(Level::WARN), 28);
        assert_eq!(priority(Level::INFO), 30);
    }

    #[test]
    fn operational_prefixes() {
        assert!(is_operational("icws.connected"));
        assert!(is_operational("salesforce.login.ok"));
        assert!(is_operational("router.push_lost"));
        assert!(!is_operational("logging.started"));
        assert!(!is_operational("icwsconnected"));
        assert!(
            !is_operational("router.rows_written"),
            "per-hop events stay in the files"
        );
        assert!(!is_operational("router.pushed"));
        assert!(is_operational("router.routed"));
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let fields = Fields {
            message: "é".repeat(MAX_DATAGRAM),
            event: None,
            others: String::new(),
        };
        let line = format_syslog(
            Level::INFO,
            "Jan  1 00:00:00",
            "sors-t",
            1,
            "icws.x",
            &fields,
        );
        assert!(line.len() <= MAX_DATAGRAM);
        assert!(line.starts_with("<30>Jan  1 00:00:00 sors-t[1]: éé"));
    }
}
