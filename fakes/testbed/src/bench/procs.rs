//! The processes of a bench run: `sors-fakes salesforce`, `sors-fakes icws` and `sors serve`,
//! each started on free loopback ports and waited for with a deadline, and what `/proc` says
//! about them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sors_tenant::Config;
use sors_tenant::credentials::Secret;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The two binaries a run starts.
#[derive(Clone, Debug)]
pub struct Bins {
    /// `sors` (this binary): `sors serve --tenant DIR`.
    pub sors: PathBuf,
    /// `sors-fakes`.
    pub fakes: PathBuf,
}

impl Bins {
    /// `sors` is `router` or the running binary; `sors-fakes` is `fakes` or the one beside the
    /// running binary.
    pub fn locate(fakes: Option<PathBuf>, router: Option<PathBuf>) -> anyhow::Result<Bins> {
        let running = std::env::current_exe().context("finding the running sors binary")?;
        let fakes = match fakes {
            Some(p) => p,
            None => running
                .parent()
                .context("the sors binary has no directory")?
                .join("sors-fakes"),
        };
        let sors = router.unwrap_or(running);
        if !sors.is_file() {
            bail!("no sors binary at {} (--router-bin)", sors.display());
        }
        if !fakes.is_file() {
            bail!(
                "no sors-fakes binary at {} (build it: cargo build --release -p sors-fakes, or pass --fakes-bin PATH)",
                fakes.display()
            );
        }
        Ok(Bins { sors, fakes })
    }
}

/// Environment variables a child must not inherit: another tenant's overrides, a log filter,
/// proxies (loopback calls must not go through one). The credential key variables stay, so the
/// child opens the store with the key this process sealed it with.
fn scrub(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let upper = k.to_ascii_uppercase();
        let keep = matches!(
            k,
            "SORS_CREDENTIAL_KEY" | "SORS_CREDENTIAL_KEY_FILE" | "CREDENTIALS_DIRECTORY"
        );
        if !keep
            && (k.starts_with("SORS_")
                || upper == "RUST_LOG"
                || upper.ends_with("_PROXY")
                || upper == "ININ_TRACE_ROOT")
        {
            cmd.env_remove(k);
        }
    }
}

/// A child process with its output going to a log file (after the lines we waited for).
pub struct Proc {
    child: Child,
    pub pid: u32,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program args`, reads its stdout until `done` has seen what it needs (the lines
    /// go to the log too), then keeps copying stdout and stderr into `log`.
    async fn spawn<T>(
        name: &'static str,
        program: &Path,
        args: &[&str],
        log: PathBuf,
        deadline: Duration,
        mut done: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<(Proc, T)> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        scrub(&mut cmd);
        cmd.env("RUST_LOG", "warn");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let pid = child.id().context("the child has no pid")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let mut file = tokio::fs::File::create(&log)
            .await
            .with_context(|| format!("creating {}", log.display()))?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Some(line) = lines.next_line().await? {
                file.write_all(line.as_bytes()).await?;
                file.write_all(b"\n").await?;
                if let Some(t) = done(&line) {
                    return Ok::<_, std::io::Error>(Some(t));
                }
            }
            Ok(None)
        };
        let found = match tokio::time::timeout(deadline, wait).await {
            Ok(Ok(Some(t))) => t,
            Ok(Ok(None)) => bail!("{name} ended before it was ready; see {}", log.display()),
            Ok(Err(e)) => bail!("reading the output of {name}: {e}"),
            Err(_) => bail!(
                "{name} was not ready after {deadline:?}; see {}",
                log.display()
            ),
        };
        let rest = lines.into_inner();
        tokio::spawn(copy_into(rest, stderr, file));
        Ok((Proc { child, pid, log }, found))
    }

    /// What `/proc` says about the process now.
    pub fn stats(&self) -> Option<ProcStats> {
        ProcStats::read(self.pid)
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL.
    pub async fn stop(mut self, grace: Duration) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// SIGKILL (the fakes: nothing to flush).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Whether it has exited by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

async fn copy_into(
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    mut file: tokio::fs::File,
) {
    let mut out = BufReader::new(stdout).lines();
    let mut err = BufReader::new(stderr).lines();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let line = tokio::select! {
            l = out.next_line(), if out_open => match l { Ok(Some(l)) => l, _ => { out_open = false; continue } },
            l = err.next_line(), if err_open => match l { Ok(Some(l)) => l, _ => { err_open = false; continue } },
        };
        if file.write_all(line.as_bytes()).await.is_err() || file.write_all(b"\n").await.is_err() {
            return;
        }
    }
    let _ = file.flush().await;
}

/// Memory and CPU of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat` (Linux).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStats {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set since the process started.
    pub hwm_kib: u64,
    /// `utime + stime`, in seconds.
    pub cpu_secs: f64,
}

impl ProcStats {
    pub fn read(pid: u32) -> Option<ProcStats> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces and parentheses): state is
        // field 3, utime 14, stime 15.
        let after = stat.get(stat.rfind(')')? + 1..)?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
        let cpu = ticks(11)? + ticks(12)?;
        Some(ProcStats {
            rss_kib: kib("VmRSS:")?,
            hwm_kib: kib("VmHWM:")?,
            cpu_secs: cpu as f64 / clock_ticks() as f64,
        })
    }
}

/// `CLK_TCK` (`getconf CLK_TCK`; 100 on every Linux this runs on when that fails).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// `sors-fakes salesforce` on a free port.
pub async fn fake_salesforce(bins: &Bins, dir: &Path) -> anyhow::Result<(Proc, String)> {
    Proc::spawn(
        "sors-fakes salesforce",
        &bins.fakes,
        &[
            "salesforce",
            "--listen",
            "127.0.0.1:0",
            "--exit-on-stdin-eof",
        ],
        dir.join("fake-salesforce.log"),
        Duration::from_secs(20),
        |line| line.starts_with("http://").then(|| line.trim().to_owned()),
    )
    .await
}

/// `sors-fakes icws` (a primary and a backup) on free ports: the two URLs.
pub async fn fake_icws(bins: &Bins, dir: &Path) -> anyhow::Result<(Proc, [String; 2])> {
    let mut primary: Option<String> = None;
    Proc::spawn(
        "sors-fakes icws",
        &bins.fakes,
        &[
            "icws",
            "--primary",
            "127.0.0.1:0",
            "--backup",
            "127.0.0.1:0",
            "--exit-on-stdin-eof",
        ],
        dir.join("fake-icws.log"),
        Duration::from_secs(20),
        move |line| {
            if let Some(p) = line.strip_prefix("primary ") {
                primary = Some(p.trim().to_owned());
                None
            } else if let Some(b) = line.strip_prefix("backup ") {
                primary.clone().map(|p| [p, b.trim().to_owned()])
            } else {
                None
            }
        },
    )
    .await
}

/// Writes a tenant directory for `sors serve` pointing at the fakes: production settings
/// except the status port (a free one), quiet logging and the bench's name.
pub fn write_tenant(dir: &Path, sf_url: &str, cic: &[String; 2]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cfg = Config::default();
    cfg.tenant.name = "bench".into();
    cfg.salesforce.login_url = sf_url.to_owned();
    cfg.cic.servers = cic.to_vec();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.logging.level = "warn".into();
    cfg.write(dir)?;
    sors_tenant::cli::set_salesforce(
        dir,
        "router@sors.demo",
        Secret::new("demo"),
        Secret::new("TOKEN"),
        None,
        None,
    )?;
    sors_tenant::cli::set_cic(dir, "sors", Secret::new("sors"))?;
    Ok(())
}

/// The line `sors serve` prints once its status port listens.
const SERVING_MARK: &str = "serving status on http://";

/// A running `sors serve`.
pub struct Router {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub status_url: String,
    /// From the spawn to the first `/readyz` 200 (B5).
    pub ready_after: Duration,
}

/// Starts `sors serve --tenant DIR` and waits until `/readyz` answers 200 (polled every 2 ms).
pub async fn router(
    bins: &Bins,
    tenant: &Path,
    http: &reqwest::Client,
    deadline: Duration,
) -> anyhow::Result<Router> {
    let started = Instant::now();
    let tenant_arg = tenant.to_string_lossy().into_owned();
    let (mut proc, addr) = Proc::spawn(
        "sors serve",
        &bins.sors,
        &["serve", "--tenant", &tenant_arg],
        tenant.join("sors-serve.log"),
        deadline,
        |line| {
            let at = line.find(SERVING_MARK)? + SERVING_MARK.len();
            let rest = line.get(at..)?;
            Some(rest.get(..rest.find('/')?)?.to_owned())
        },
    )
    .await?;
    let status_url = format!("http://{addr}");
    let readyz = format!("{status_url}/readyz");
    loop {
        if let Ok(r) = http.get(&readyz).send().await
            && r.status().is_success()
        {
            break;
        }
        if let Some(status) = proc.exited() {
            bail!(
                "sors serve exited during start-up ({status}); see {}",
                proc.log.display()
            );
        }
        if started.elapsed() > deadline {
            bail!(
                "sors serve was not ready after {deadline:?}; see {}",
                proc.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Router {
        ready_after: started.elapsed(),
        proc,
        status_url,
    })
}
