//! The router under test as a separate process: the test binary runs itself as the child
//! (`SORS_CRASH_CHILD=<tenant dir>`), which serves that tenant exactly as `sors serve` does.

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::HarnessError;

/// The environment variable that turns the test binary into the router process.
pub const CHILD_ENV: &str = "SORS_CRASH_CHILD";

/// Exit code of a child whose parent went away (its stdin reached end of file).
pub const ORPHAN_EXIT: i32 = 70;

/// The line `sors::serve::serve` prints once the status endpoints listen.
const SERVING_MARK: &str = "serving status on http://";

/// The child role: serves the tenant in `dir` like `sors serve --tenant DIR`, until SIGTERM or
/// Ctrl-C. The child also exits as soon as its stdin reaches end of file, which happens when
/// the parent dies in any way (even SIGKILL), so it never outlives the test.
pub fn run_child(dir: &Path) -> i32 {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(ORPHAN_EXIT);
    });
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crash child: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(sors::serve::serve(dir)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crash child: sors serve failed: {e:#}");
            1
        }
    }
}

/// How a life of the router process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifeEnd {
    /// Still running.
    Running,
    /// SIGKILL from the test.
    Killed,
    /// SIGTERM from the test, then a clean exit.
    Terminated,
    /// It exited by itself (a crash of the router: a finding).
    Exited,
}

/// One run of the router process, for the timeline.
#[derive(Clone, Debug)]
pub struct Life {
    pub index: usize,
    pub pid: u32,
    pub started: DateTime<Utc>,
    /// When `/readyz` first answered 200 (logged in on both sides and subscribed).
    pub ready: Option<DateTime<Utc>>,
    pub ended: Option<DateTime<Utc>>,
    pub end: LifeEnd,
    /// Routing rows `New` and `Processing` right after it ended (filled in by the caller).
    pub rows_new_at_end: Option<usize>,
    pub rows_processing_at_end: Option<usize>,
    /// Its stdout and stderr (the service's log lines).
    pub log: PathBuf,
}

/// The router process, restarted as often as the test likes. Dropping it kills the running
/// child, so no exit path of the test (a panic included) leaves a router behind.
pub struct RouterProcess {
    dir: PathBuf,
    exe: PathBuf,
    child: Option<(Child, ChildStdin)>,
    lives: Vec<Life>,
}

impl RouterProcess {
    /// A router for the tenant directory `dir`, not started yet.
    pub fn new(dir: PathBuf) -> Result<RouterProcess, HarnessError> {
        let exe =
            std::env::current_exe().map_err(|e| HarnessError::io("finding the test binary", e))?;
        Ok(RouterProcess {
            dir,
            exe,
            child: None,
            lives: Vec::new(),
        })
    }

    pub fn lives(&self) -> &[Life] {
        &self.lives
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts a fresh router process and waits (up to `deadline`) until `/readyz` says it is
    /// logged in on both sides and subscribed.
    pub async fn start(&mut self, deadline: Duration) -> Result<(), HarnessError> {
        if self.child.is_some() {
            return Err(HarnessError::Child(
                "start: the router is already running".into(),
            ));
        }
        let index = self.lives.len() + 1;
        let log = self.dir.join(format!("child-{index:02}.log"));
        let out = File::create(&log).map_err(|e| HarnessError::io("creating the child log", e))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::io("creating the child log", e))?;
        let mut child = Command::new(&self.exe)
            .env(CHILD_ENV, &self.dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| HarnessError::io("spawning the router process", e))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| HarnessError::Child("the child has no stdin pipe".into()))?;
        self.lives.push(Life {
            index,
            pid: child.id(),
            started: Utc::now(),
            ready: None,
            ended: None,
            end: LifeEnd::Running,
            rows_new_at_end: None,
            rows_processing_at_end: None,
            log: log.clone(),
        });
        self.child = Some((child, stdin));
        self.wait_ready(&log, deadline).await
    }

    async fn wait_ready(&mut self, log: &Path, deadline: Duration) -> Result<(), HarnessError> {
        let until = Instant::now() + deadline;
        let mut addr: Option<SocketAddr> = None;
        loop {
            if let Some((child, _)) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                self.end_life(LifeEnd::Exited);
                return Err(HarnessError::Child(format!(
                    "the router exited during start-up ({status}); see {}",
                    log.display()
                )));
            }
            if addr.is_none() {
                addr = serving_addr(log);
            }
            if let Some(a) = addr
                && readyz(a).await
            {
                if let Some(life) = self.lives.last_mut() {
                    life.ready = Some(Utc::now());
                }
                return Ok(());
            }
            if Instant::now() > until {
                return Err(HarnessError::Child(format!(
                    "the router was not ready after {deadline:?}; see {}",
                    log.display()
                )));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash or an OOM kill would: nothing is flushed.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        let Some((mut child, stdin)) = self.child.take() else {
            return Err(HarnessError::Child(
                "kill: the router is not running".into(),
            ));
        };
        if let Ok(Some(status)) = child.try_wait() {
            drop(stdin);
            self.end_life(LifeEnd::Exited);
            let log = self.lives.last().map(|l| l.log.display().to_string());
            return Err(HarnessError::Child(format!(
                "the router exited by itself ({status}) before the kill; see {}",
                log.unwrap_or_default()
            )));
        }
        let killed = child.kill();
        let waited = child.wait();
        drop(stdin);
        self.end_life(LifeEnd::Killed);
        killed.map_err(|e| HarnessError::io("killing the router", e))?;
        waited.map_err(|e| HarnessError::io("reaping the router", e))?;
        Ok(())
    }

    /// SIGTERM (systemd's stop), then waits up to `deadline` for the process to exit. A router
    /// that does not stop in time is killed and reported as an error.
    pub async fn terminate(&mut self, deadline: Duration) -> Result<ExitStatus, HarnessError> {
        let Some((mut child, stdin)) = self.child.take() else {
            return Err(HarnessError::Child(
                "terminate: the router is not running".into(),
            ));
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        match sent {
            Ok(s) if s.success() => {}
            Ok(s) => {
                let _ = child.kill();
                let _ = child.wait();
                self.end_life(LifeEnd::Killed);
                return Err(HarnessError::Child(format!("`kill -TERM` failed: {s}")));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                self.end_life(LifeEnd::Killed);
                return Err(HarnessError::io("running `kill -TERM`", e));
            }
        }
        let until = Instant::now() + deadline;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    drop(stdin);
                    self.end_life(LifeEnd::Terminated);
                    return Ok(status);
                }
                Ok(None) if Instant::now() <= until => sleep(Duration::from_millis(50)).await,
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.end_life(LifeEnd::Killed);
                    return Err(HarnessError::Child(format!(
                        "the router did not stop within {deadline:?} of SIGTERM (killed it)"
                    )));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.end_life(LifeEnd::Killed);
                    return Err(HarnessError::io("waiting for the router", e));
                }
            }
        }
    }

    /// Whether the running child has exited by itself (a router crash); if so its life ends
    /// `Exited` and the exit status is returned.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let (child, _) = self.child.as_mut()?;
        let status = child.try_wait().ok()??;
        self.child = None;
        self.end_life(LifeEnd::Exited);
        Some(status)
    }

    /// Records how many rows were `New` and `Processing` just after the last life ended.
    pub fn note_rows_at_end(&mut self, new: usize, processing: usize) {
        if let Some(life) = self.lives.last_mut() {
            life.rows_new_at_end = Some(new);
            life.rows_processing_at_end = Some(processing);
        }
    }

    fn end_life(&mut self, end: LifeEnd) {
        if let Some(life) = self.lives.last_mut() {
            life.ended = Some(Utc::now());
            life.end = end;
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin);
            self.end_life(LifeEnd::Killed);
        }
    }
}

/// The status address the child printed, once it has.
fn serving_addr(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    let start = text.find(SERVING_MARK)? + SERVING_MARK.len();
    let rest = text.get(start..)?;
    let end = rest.find('/')?;
    rest.get(..end)?.parse().ok()
}

/// `GET /readyz` answers 200 (a hand-written HTTP/1.1 request: loopback only, no client crate).
async fn readyz(addr: SocketAddr) -> bool {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 16];
        let n = s.read(&mut head).await.ok()?;
        Some(head.get(..n)?.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        timeout(Duration::from_secs(2), exchange).await,
        Ok(Some(true))
    )
}
