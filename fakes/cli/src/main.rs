//! `sors-fakes`: the test bed's fakes on their own, from the command line.
//!
//! `sors-fakes salesforce --listen 127.0.0.1:8443 [--org org.toml] [--connect-hold-secs N]`
//! `sors-fakes icws --primary 127.0.0.1:8018 --backup 127.0.0.1:8019 [--site site.toml]`
//!
//! Each prints its URL(s) once ready and serves until Ctrl-C (or SIGTERM, or with
//! `--exit-on-stdin-eof` until its standard input ends: a parent that started it with a pipe went
//! away, as `sors bench` does). Their control APIs are under `/__fake/` (see
//! fakes/salesforce/README.md and fakes/icws/README.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sors_fake_icws::{FakeIcws, FakeIcwsConfig, SiteSpec};
use sors_fake_salesforce::{FakeSalesforce, FakeSalesforceConfig, OrgSpec};

#[derive(Parser)]
#[command(
    name = "sors-fakes",
    version,
    about = "Fake Salesforce and fake CIC (ICWS) servers for testing sors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Also stop when standard input reaches end of file (the parent that holds the pipe ended).
    #[arg(long, global = true)]
    exit_on_stdin_eof: bool,
}

#[derive(Subcommand)]
enum Command {
    /// A fake Salesforce org: login, REST, SOQL subset, Streaming (CometD), our trigger.
    Salesforce {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Org description (TOML); the demo org when absent.
        #[arg(long)]
        org: Option<PathBuf>,
        /// How long a CometD /meta/connect is held (Salesforce: 110).
        #[arg(long, default_value_t = 110)]
        connect_hold_secs: u64,
    },
    /// A fake CIC switchover pair (ICWS) with the routing handler and an ACD.
    Icws {
        #[arg(long, default_value = "127.0.0.1:0")]
        primary: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:0")]
        backup: SocketAddr,
        /// Site description (TOML); the demo site when absent.
        #[arg(long)]
        site: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Colour codes only on a terminal: redirected output stays plain text.
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let stop = stop_signal(cli.exit_on_stdin_eof);
    match cli.command {
        Command::Salesforce {
            listen,
            org,
            connect_hold_secs,
        } => {
            let org = match org {
                Some(p) => OrgSpec::from_toml_file(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => OrgSpec::demo(),
            };
            let mut cfg = FakeSalesforceConfig {
                listen,
                org,
                ..FakeSalesforceConfig::default()
            };
            cfg.streaming.connect_hold = Duration::from_secs(connect_hold_secs);
            let sf = FakeSalesforce::start(cfg).await?;
            println!("{}", sf.base_url());
            stop.await;
            sf.shutdown().await;
        }
        Command::Icws {
            primary,
            backup,
            site,
        } => {
            let site = match site {
                Some(p) => SiteSpec::from_toml_file(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => SiteSpec::demo(),
            };
            let cic = FakeIcws::start(FakeIcwsConfig {
                primary,
                backup,
                site,
            })
            .await?;
            println!("primary {}", cic.primary_url());
            println!("backup {}", cic.backup_url());
            stop.await;
            cic.shutdown().await;
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM. With `stdin_eof`, a thread also ends the process when
/// standard input reaches end of file (a blocking read on a thread of its own, so it never holds
/// up the runtime's shutdown).
async fn stop_signal(stdin_eof: bool) {
    if stdin_eof {
        std::thread::spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            std::process::exit(0);
        });
    }
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
