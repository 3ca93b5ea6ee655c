//! A real forward HTTP proxy for tests: Debian's `tinyproxy`, one process per [`Tinyproxy`].
//!
//! Each one gets its own temporary directory with a generated config file (`Port`, `Listen
//! 127.0.0.1`, `Allow`, `ConnectPort`, optional `BasicAuth`, `LogFile` in that directory,
//! `LogLevel Info`), runs in the foreground (`tinyproxy -d -c FILE`, never a system service) on a
//! free loopback port, and is killed when stopped or dropped. [`Tinyproxy::start`] returns once
//! the proxy accepts connections (or fails, with its output, after a deadline).
//!
//! What it carried is read back from its log: every request line (`Request (file descriptor N):
//! GET http://127.0.0.1:4711/services/... HTTP/1.1`) becomes a [`ProxiedRequest`]. A missing
//! `tinyproxy` is an error that says how to install it; tests must fail on it, never skip.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long a starting tinyproxy may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// How a proxy is configured.
#[derive(Clone, Debug)]
pub struct TinyproxyConfig {
    /// The `Allow` rule: the client addresses served. `127.0.0.1` by default; anything else
    /// (`10.9.9.9`) makes the proxy refuse the tests' requests with a 403.
    pub allow: String,
    /// `ConnectPort` lines: the ports a `CONNECT` may reach (put the fakes' ports here).
    /// tinyproxy allows every port when there is none.
    pub connect_ports: Vec<u16>,
    /// `BasicAuth user password`: the proxy then wants `http://user:password@…`.
    pub basic_auth: Option<(String, String)>,
}

impl Default for TinyproxyConfig {
    fn default() -> Self {
        TinyproxyConfig {
            allow: "127.0.0.1".into(),
            connect_ports: Vec::new(),
            basic_auth: None,
        }
    }
}

/// One request tinyproxy received (whether or not it carried it on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// `GET`, `POST`, `CONNECT`, ...
    pub method: String,
    /// The request target as sent to the proxy: `http://127.0.0.1:4711/path?query`, or
    /// `host:port` for `CONNECT`.
    pub target: String,
    /// `host:port` of the target (port 80 / 443 when the URL names none).
    pub host_port: String,
}

impl ProxiedRequest {
    /// The target's path and query (empty for `CONNECT`).
    pub fn path(&self) -> &str {
        match self.target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
            None => "",
        }
    }
}

/// A running tinyproxy. Killed (and its directory removed) when dropped.
pub struct Tinyproxy {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    config: TinyproxyConfig,
}

impl Tinyproxy {
    /// The `tinyproxy` executable: from `PATH`, else `/usr/bin` or `/usr/sbin`. An error that
    /// says how to install it when there is none.
    pub fn binary() -> anyhow::Result<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("tinyproxy"))
            .find(|p| p.is_file())
            .context(
                "tinyproxy is not installed: the proxy tests need it \
                 (`apt-get install -y tinyproxy`; ci/proxy-test installs it)",
            )
    }

    /// Starts a tinyproxy on a free loopback port and waits until it accepts connections.
    pub async fn start(config: TinyproxyConfig) -> anyhow::Result<Tinyproxy> {
        let binary = Self::binary()?;
        let dir = temp_dir()?;
        let mut last = None;
        // A free port can be taken between our probe and tinyproxy's bind: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let mut proxy = Tinyproxy {
                child: None,
                port,
                dir: dir.clone(),
                config: config.clone(),
            };
            match proxy.spawn(&binary).await {
                Ok(()) => return Ok(proxy),
                Err(e) => {
                    // Keep the directory for the next try: only this handle's process goes.
                    proxy.kill();
                    proxy.dir = PathBuf::new();
                    last = Some(e);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| anyhow::anyhow!("tinyproxy did not start")))
    }

    /// The port it listens on (kept across [`Tinyproxy::stop`] and [`Tinyproxy::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `http://user:password@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr())
    }

    pub fn config(&self) -> &TinyproxyConfig {
        &self.config
    }

    /// The directory of its config and log files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the process: connections to the port are refused until [`Tinyproxy::restart`].
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Stops it if running and starts it again on the same port with `config` (the log file
    /// goes on: earlier requests stay in it).
    pub async fn restart(&mut self, config: TinyproxyConfig) -> anyhow::Result<()> {
        self.kill();
        self.config = config;
        let binary = Self::binary()?;
        self.spawn(&binary).await
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The whole log file so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Every request it received, oldest first.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        parse_requests(&self.log())
    }

    /// The requests it received for `host_port` (`127.0.0.1:4711`).
    pub fn requests_to(&self, host_port: &str) -> Vec<ProxiedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.host_port == host_port)
            .collect()
    }

    /// A position in the log, for [`Tinyproxy::requests_since`].
    pub fn mark(&self) -> usize {
        self.log().len()
    }

    /// The requests it received after `mark`.
    pub fn requests_since(&self, mark: usize) -> Vec<ProxiedRequest> {
        let log = self.log();
        parse_requests(log.get(mark..).unwrap_or_default())
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("tinyproxy.log")
    }

    fn config_text(&self) -> String {
        let c = &self.config;
        let mut text = format!(
            "Port {}\nListen 127.0.0.1\nAllow {}\nTimeout 60\nMaxClients 200\n\
             LogFile \"{}\"\nLogLevel Info\n",
            self.port,
            c.allow,
            self.log_file().display()
        );
        for port in &c.connect_ports {
            text.push_str(&format!("ConnectPort {port}\n"));
        }
        if let Some((user, password)) = &c.basic_auth {
            text.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        text
    }

    async fn spawn(&mut self, binary: &Path) -> anyhow::Result<()> {
        let conf = self.dir.join("tinyproxy.conf");
        std::fs::write(&conf, self.config_text()).context("writing tinyproxy.conf")?;
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("output.txt"))
            .context("tinyproxy output file")?;
        let child = Command::new(binary)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(output.try_clone().context("tinyproxy output file")?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "tinyproxy exited at start ({status}): {}\n{}",
                    self.output(),
                    self.log()
                );
            }
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "tinyproxy did not accept connections on {} within {START_DEADLINE:?}: {}\n{}",
                    self.addr(),
                    self.output(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.txt")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The request lines of a tinyproxy log (`… Request (file descriptor 5): GET http://… HTTP/1.1`).
pub fn parse_requests(log: &str) -> Vec<ProxiedRequest> {
    log.lines()
        .filter_map(|line| {
            let (_, request) = line.split_once("Request (file descriptor ")?;
            let (_, request) = request.split_once("): ")?;
            let mut parts = request.split(' ');
            let method = parts.next()?.to_owned();
            let target = parts.next()?.to_owned();
            let host_port = host_port(&target)?;
            Some(ProxiedRequest {
                method,
                target,
                host_port,
            })
        })
        .collect()
}

fn host_port(target: &str) -> Option<String> {
    let (default_port, rest) = match target.split_once("://") {
        Some(("https", rest)) => (443, rest),
        Some((_, rest)) => (80, rest),
        None => return Some(target.to_owned()),
    };
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    Some(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    })
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("probing a free port")?;
    Ok(listener.local_addr().context("probing a free port")?.port())
}

fn temp_dir() -> anyhow::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sors-tinyproxy-{}-{}-{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed() {
        let log = "\
CONNECT   Dec 02 02:00:41.398 [2986]: Connect (file descriptor 5): 127.0.0.1
CONNECT   Dec 02 02:00:41.402 [2986]: Request (file descriptor 5): GET http://127.0.0.1:38882/x?y=1 HTTP/1.1
INFO      Dec 02 02:00:41.406 [2986]: No upstream proxy for 127.0.0.1
CONNECT   Dec 02 02:00:41.471 [2986]: Request (file descriptor 7): POST http://localhost/abc HTTP/1.1
CONNECT   Dec 02 02:00:41.471 [2986]: Request (file descriptor 8): CONNECT example.com:443 HTTP/1.1
";
        let r = parse_requests(log);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].method, "GET");
        assert_eq!(r[0].host_port, "127.0.0.1:38882");
        assert_eq!(r[0].path(), "/x?y=1");
        assert_eq!(r[1].host_port, "localhost:80");
        assert_eq!(r[2].method, "CONNECT");
        assert_eq!(r[2].host_port, "example.com:443");
        assert_eq!(r[2].path(), "");
    }
}
