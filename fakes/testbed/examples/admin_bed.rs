//! A live bed for the admin pages' browser test (`tests/browser/`): the fake Salesforce and the
//! fake CIC pair in this process, and the real `sors serve --tenant DIR` binary as a child
//! process, started on an empty tenant directory (a `config.toml` pointing at the fakes, short
//! timeouts, no credentials), so the pages' first-run setup is what the browser meets.
//!
//! ```text
//! cargo build -p sors-cli -p sors-testbed --bin sors --example admin_bed
//! SORS_BIN=target/debug/sors target/debug/examples/admin_bed [--dir TENANT_DIR]
//! ```
//!
//! `--dir` must be missing or empty (default: a fresh directory under the system's temp dir).
//! The child's stdout and stderr go to `TENANT_DIR/sors.stdout.log` and `sors.stderr.log`; the
//! one-time setup token is read from them (or from the service's log files). Then one JSON line
//! on stdout: `{"ready": true, "status_url", "port", "setup_token", "tenant_dir", "config",
//! "stdout_log", "stderr_log", "log_dir", "sors_pid", "salesforce": {...}, "cic": {...}}` with
//! the fakes' URLs and control endpoints and the credentials they accept (fresh random secrets
//! every run, so a leak check can search for them), or `{"ready": false, "error": "..."}`.
//!
//! Then it reads one command a line from stdin and answers each with one JSON line
//! (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`):
//!
//! - `new_case [N] [QUEUE...]`: N (default 1) customer emails become cases (default queue
//!   `Support EN`, skills `English`); answers `{"cases": [ids]}`.
//! - `rows`: the routing rows, `{"rows": {"Processed": 2}, "list": [{id, case, event, status,
//!   interaction, error}]}`.
//! - `case ID`: the routing rows of one case, `{"list": [...]}`.
//! - `sors`: `{"running": bool, "pid"}`.
//! - `quit`.
//!
//! Should the child exit on its own, a line `{"event": "sors_exited", "status": "..."}` is
//! printed. When stdin closes, on `quit`, SIGINT or SIGTERM, the child gets SIGTERM (SIGKILL
//! after 10 s) and the fakes stop. Only 127.0.0.1 is used.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use serde_json::{Value, json};
use sors_fake_icws::{IcwsUser, SiteSpec};
use sors_fake_salesforce::OrgSpec;
use sors_tenant::Config;
use sors_testbed::{Bed, BedOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the child may take to print its setup token and open its status port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the child may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The integration user (the bed's `new_case` creates cases as this user).
const SF_USER: &str = "router@sors.demo";
const CIC_USER: &str = "sors";
/// A second ICWS login, for "the credentials change while routing runs" (the fake CIC has no
/// control call to change a user's password).
const CIC_ROTATED_USER: &str = "sors-rotated";
const QUEUE: &str = "Support EN";
const SKILLS: &str = "English";

/// A random secret: `prefix` + 16 hex digits (+ `suffix`), different every run.
fn secret(prefix: &str, suffix: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("{prefix}{n:016x}{suffix}")
}

struct Secrets {
    sf_password: String,
    sf_token: String,
    sf_wrong_token: String,
    sf_client_secret: String,
    cic_password: String,
    cic_wrong_password: String,
    cic_rotated_password: String,
}

impl Secrets {
    fn new() -> Secrets {
        // Characters a form, a SOAP envelope or a JSON body must carry faithfully.
        Secrets {
            sf_password: secret("Sf<pw>&", "!"),
            sf_token: secret("TOK", "").to_uppercase(),
            sf_wrong_token: secret("BAD", "").to_uppercase(),
            sf_client_secret: secret("cs-", ""),
            cic_password: secret("Cic pw&+%", "\"#"),
            cic_wrong_password: secret("wrong-", ""),
            cic_rotated_password: secret("Rot@ted ", "="),
        }
    }
}

struct Options {
    dir: PathBuf,
    bin: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(args.next().context("--dir DIR")?)),
            other => bail!("unknown argument {other:?} (usage: admin_bed [--dir TENANT_DIR])"),
        }
    }
    let dir = match dir {
        Some(d) => d,
        None => {
            let n: u32 = rand::rng().random();
            std::env::temp_dir().join(format!("sors-admin-bed-{}-{n:08x}", std::process::id()))
        }
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} is not empty", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let bin =
        PathBuf::from(std::env::var("SORS_BIN").unwrap_or_else(|_| "target/debug/sors".into()));
    if !bin.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p sors-cli` (or set SORS_BIN)",
            bin.display()
        );
    }
    Ok(Options { dir, bin })
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// `http://127.0.0.1:PORT` → `127.0.0.1:PORT`.
fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

fn write_config(dir: &Path, sf_url: &str, cic: [String; 2], port: u16) -> anyhow::Result<()> {
    let mut cfg = Config::default();
    cfg.tenant.name = "admin-bed".into();
    cfg.salesforce.login_url = sf_url.to_owned();
    cfg.salesforce.request_timeout_secs = 5;
    cfg.cic.servers = cic.to_vec();
    cfg.cic.request_timeout_secs = 5;
    cfg.routing.route_timeout_secs = 5;
    cfg.routing.retry_backoff_secs = 1;
    cfg.routing.sweep_interval_secs = 2;
    cfg.routing.sweep_grace_secs = 1;
    cfg.routing.batch_window_ms = 20;
    cfg.routing.reconcile_interval_secs = 10;
    cfg.http.listen = format!("127.0.0.1:{port}");
    cfg.logging.level =
        std::env::var("ADMIN_BED_LOG_LEVEL").unwrap_or_else(|_| "info,sors=debug".into());
    cfg.write(dir)?;
    Ok(())
}

/// The setup token in a line such as `... setup token: AbC123...` or `.../setup?token=AbC...`.
fn token_in(line: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    if !(lower.contains("setup") && lower.contains("token")) {
        return None;
    }
    if let Some(i) = line.find("token=") {
        let rest = &line[i + "token=".len()..];
        let t: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if t.len() >= 12 {
            return Some(t);
        }
    }
    let after = lower.rfind("token").map_or(line, |i| &line[i..]);
    after
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .find(|w| w.len() >= 12 && w.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// Every file the token may be printed to: the captured output, then the service's logs.
fn token_sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join("sors.stdout.log"), dir.join("sors.stderr.log")];
    if let Ok(rd) = std::fs::read_dir(dir.join("logs")) {
        files.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    files
}

fn find_token(dir: &Path) -> Option<String> {
    token_sources(dir).iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        text.lines().find_map(token_in)
    })
}

/// The first and the last `lines` lines of a file.
fn excerpt(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    if all.len() <= 2 * lines {
        return all.join("\n");
    }
    format!(
        "{}\n…\n{}",
        all[..lines].join("\n"),
        all[all.len() - lines..].join("\n")
    )
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

struct Sors {
    child: Child,
    pid: Option<u32>,
    exited: Option<String>,
}

impl Sors {
    fn spawn(opts: &Options) -> anyhow::Result<Sors> {
        let out = std::fs::File::create(opts.dir.join("sors.stdout.log"))?;
        let err = std::fs::File::create(opts.dir.join("sors.stderr.log"))?;
        let mut cmd = Command::new(&opts.bin);
        cmd.arg("serve")
            .arg("--tenant")
            .arg(&opts.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            // Logs in the tenant directory, the level of its config, a key file of its own.
            .env_remove("ININ_TRACE_ROOT")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SORS_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", opts.bin.display()))?;
        let pid = child.id();
        Ok(Sors {
            child,
            pid,
            exited: None,
        })
    }

    /// Whether it still runs (and notes how it ended if not).
    fn running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exited = Some(status.to_string());
                false
            }
            Err(e) => {
                self.exited = Some(format!("unknown ({e})"));
                false
            }
        }
    }

    /// SIGTERM (the service stops gracefully), SIGKILL if it takes too long.
    async fn stop(mut self) {
        if !self.running() {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            eprintln!("admin_bed: sors did not stop within {STOP_TIMEOUT:?}; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// Waits for the setup token and the status port; fails early if the child exits.
async fn wait_started(sors: &mut Sors, dir: &Path, port: u16) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut token = None;
    loop {
        if token.is_none() {
            token = find_token(dir);
        }
        if let Some(t) = &token
            && port_open(port).await
        {
            return Ok(t.clone());
        }
        if !sors.running() {
            bail!(
                "sors exited ({}) before it was up; its stderr:\n{}",
                sors.exited.as_deref().unwrap_or("?"),
                excerpt(&dir.join("sors.stderr.log"), 10)
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "within {START_TIMEOUT:?} sors {} (its stdout:\n{}\n)",
                if token.is_none() {
                    "printed no setup token (a line with 'setup' and 'token' and the token)"
                } else {
                    "did not open its status port"
                },
                excerpt(&dir.join("sors.stdout.log"), 10)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row_json(r: &Value) -> Value {
    json!({
        "id": r["Id"], "case": r["Case__c"], "event": r["Event__c"], "status": r["Status__c"],
        "interaction": r["Interaction_Id__c"], "error": r["Error__c"],
    })
}

fn command(bed: &Bed, sors: &mut Sors, line: &str) -> anyhow::Result<Option<Value>> {
    let mut words = line.split_whitespace();
    let Some(cmd) = words.next() else {
        return Ok(Some(json!({})));
    };
    let rest: Vec<&str> = words.collect();
    Ok(Some(match cmd {
        "quit" => return Ok(None),
        "new_case" => {
            let (n, queue) = match rest.first().map(|w| w.parse::<usize>()) {
                Some(Ok(n)) => (n, rest[1..].join(" ")),
                _ => (1, rest.join(" ")),
            };
            let queue = if queue.is_empty() {
                QUEUE.to_owned()
            } else {
                queue
            };
            let cases = (0..n)
                .map(|_| bed.new_case(&queue, SKILLS))
                .collect::<anyhow::Result<Vec<_>>>()?;
            json!({ "cases": cases })
        }
        "rows" => {
            let rows = bed.rows();
            let mut by = serde_json::Map::new();
            for r in &rows {
                let s = r["Status__c"].as_str().unwrap_or("?").to_owned();
                let n = by.get(&s).and_then(Value::as_u64).unwrap_or(0);
                by.insert(s, json!(n + 1));
            }
            json!({ "rows": by, "list": rows.iter().map(row_json).collect::<Vec<_>>() })
        }
        "case" => {
            let case = rest.first().context("case ID")?;
            json!({ "list": bed.rows_of(case).iter().map(row_json).collect::<Vec<_>>() })
        }
        "sors" => json!({ "running": sors.running(), "pid": sors.pid, "exited": sors.exited }),
        other => bail!("unknown command {other:?} (new_case, rows, case, sors, quit)"),
    }))
}

fn say(v: Value) {
    println!("{v}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            say(json!({ "ready": false, "error": format!("{e:#}") }));
            eprintln!("admin_bed: {e:#}");
            std::process::exit(1);
        }
    };
    let s = Secrets::new();

    let mut org = OrgSpec::demo();
    org.name = "SORS Admin Bed".into();
    for u in org.users.iter_mut().filter(|u| u.username == SF_USER) {
        u.password = s.sf_password.clone();
        u.security_token = s.sf_token.clone();
    }
    for c in &mut org.oauth_clients {
        c.client_secret = s.sf_client_secret.clone();
    }
    let client_id = org.oauth_clients.first().map(|c| c.client_id.clone());
    let mut site = SiteSpec::demo();
    site.users = vec![
        IcwsUser {
            user_id: CIC_USER.into(),
            password: s.cic_password.clone(),
            display_name: "SORS Service".into(),
        },
        IcwsUser {
            user_id: CIC_ROTATED_USER.into(),
            password: s.cic_rotated_password.clone(),
            display_name: "SORS Service (rotated)".into(),
        },
    ];
    site.timings.answer_delay = Duration::from_millis(500);
    let bed = Bed::start_fakes(BedOptions {
        org,
        site,
        ..BedOptions::default()
    })
    .await?;

    let sf_url = bed.sf.base_url();
    let (primary, backup) = (bed.cic.primary_url(), bed.cic.backup_url());
    let port = free_port()?;
    let started = async {
        write_config(&opts.dir, &sf_url, [primary.clone(), backup.clone()], port)?;
        let mut sors = Sors::spawn(&opts)?;
        match wait_started(&mut sors, &opts.dir, port).await {
            Ok(token) => Ok((sors, token)),
            Err(e) => {
                sors.stop().await;
                Err(e)
            }
        }
    }
    .await;
    let (mut sors, token) = match started {
        Ok(v) => v,
        Err(e) => {
            say(json!({ "ready": false, "error": format!("{e:#}"), "tenant_dir": opts.dir }));
            eprintln!("admin_bed: {e:#}");
            bed.shutdown().await;
            std::process::exit(1);
        }
    };

    let status_url = format!("http://127.0.0.1:{port}");
    say(json!({
        "ready": true,
        "status_url": status_url,
        "port": port,
        "heartbeat_url": format!("{status_url}/heartbeat"),
        "setup_token": token,
        "tenant_dir": opts.dir,
        "config": opts.dir.join("config.toml"),
        "stdout_log": opts.dir.join("sors.stdout.log"),
        "stderr_log": opts.dir.join("sors.stderr.log"),
        "log_dir": opts.dir.join("logs"),
        "sors_pid": sors.pid,
        "salesforce": {
            "url": sf_url,
            "login_url": sf_url,
            "control": format!("{sf_url}/__fake/"),
            "dump": format!("{sf_url}/__fake/dump"),
            "username": SF_USER,
            "password": s.sf_password,
            "security_token": s.sf_token,
            "wrong_security_token": s.sf_wrong_token,
            "client_id": client_id,
            "client_secret": s.sf_client_secret,
            "queue": QUEUE,
        },
        "cic": {
            "primary": primary,
            "backup": backup,
            "primary_host": host_port(&primary),
            "backup_host": host_port(&backup),
            "control": [format!("{primary}/__fake/"), format!("{backup}/__fake/")],
            "user": CIC_USER,
            "password": s.cic_password,
            "wrong_password": s.cic_wrong_password,
            "rotated_user": CIC_ROTATED_USER,
            "rotated_password": s.cic_rotated_password,
        },
    }));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut watch = tokio::time::interval(Duration::from_millis(200));
    let signal = sors::serve::wait_for_signal();
    tokio::pin!(signal);
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = &mut signal => break,
            _ = watch.tick() => {
                if sors.exited.is_none() && !sors.running() {
                    say(json!({ "event": "sors_exited", "status": sors.exited }));
                }
                continue;
            }
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                eprintln!("admin_bed: reading stdin: {e}");
                break;
            }
        };
        match command(&bed, &mut sors, line.trim()) {
            Ok(Some(mut v)) => {
                v["ok"] = json!(true);
                say(v);
            }
            Ok(None) => {
                say(json!({ "ok": true, "bye": true }));
                break;
            }
            Err(e) => say(json!({ "ok": false, "error": format!("{e:#}") })),
        }
    }
    sors.stop().await;
    bed.shutdown().await;
    Ok(())
}
