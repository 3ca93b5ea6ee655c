//! The `sors` command.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sors::say;
use sors_tenant::ProcessEnv;
use sors_tenant::cli::{secret_from_env, secret_from_reader};
use sors_tenant::credentials::Secret;

#[derive(Parser)]
#[command(
    name = "sors",
    version,
    about = "Salesforce Object Routing Server: routes Email-to-Case cases to CIC workgroups"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Routes a burst of cases through the fakes and prints what it cost.
    #[cfg(feature = "testbed")]
    Bench {
        /// Cases in the burst.
        #[arg(long, default_value_t = 1000)]
        rows: usize,
        #[arg(long, default_value_t = 32)]
        max_in_flight: usize,
        #[arg(long, default_value_t = 50)]
        batch_window_ms: u64,
    },
    /// Runs the routing service of one tenant directory.
    Serve {
        #[arg(long)]
        tenant: PathBuf,
    },
    /// Checks config, logins on both sides, mappings, workgroups and skills; prints what is wrong.
    Check {
        #[arg(long)]
        tenant: PathBuf,
    },
    /// Runs everything locally: fake Salesforce, fake CIC pair, a router, and demo traffic.
    #[cfg(feature = "testbed")]
    Demo {
        /// The tenant directory the demo sets up (overwritten).
        #[arg(long, default_value = "demo-tenant")]
        tenant: PathBuf,
        /// Where the status endpoints listen.
        #[arg(long, default_value = "127.0.0.1:3000")]
        http: String,
        /// Start quietly, without demo traffic.
        #[arg(long)]
        no_traffic: bool,
    },
    /// Sets or shows the encrypted credentials of a tenant directory.
    #[command(subcommand)]
    Credentials(Credentials),
    /// The scenario suite: TOML stories replayed against fresh fakes and a fresh router.
    #[cfg(feature = "testbed")]
    #[command(subcommand)]
    Scenario(Scenario),
}

#[cfg(feature = "testbed")]
#[derive(Subcommand)]
enum Scenario {
    /// Runs scenario files (none given: every scenario of the suite); exits 1 on any failure.
    Run {
        /// Scenario files; default: every *.toml of --dir.
        files: Vec<PathBuf>,
        /// Where the suite's scenarios are (default: the scenarios/ directory of the source tree).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Scenarios run at once (default: SORS_SCENARIO_JOBS or 3).
        #[arg(long)]
        jobs: Option<usize>,
    },
}

#[derive(Subcommand)]
enum Credentials {
    /// Sets the Salesforce integration user (and OAuth client, if used).
    SetSalesforce {
        #[command(flatten)]
        tenant: TenantArg,
        #[arg(long)]
        username: String,
        #[command(flatten)]
        password: PasswordArg,
        /// Environment variable holding the security token (empty when the IP is trusted).
        #[arg(long)]
        token_env: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        /// Environment variable holding the OAuth client secret.
        #[arg(long)]
        client_secret_env: Option<String>,
    },
    /// Sets the CIC (ICWS) user.
    SetCic {
        #[command(flatten)]
        tenant: TenantArg,
        #[arg(long)]
        user: String,
        #[command(flatten)]
        password: PasswordArg,
    },
    /// Shows which credentials are stored (never the secrets).
    Show {
        #[command(flatten)]
        tenant: TenantArg,
    },
}

#[derive(Args)]
struct TenantArg {
    #[arg(long)]
    tenant: PathBuf,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct PasswordArg {
    /// Environment variable holding the password.
    #[arg(long)]
    password_env: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordArg {
    fn read(&self) -> anyhow::Result<Secret> {
        Ok(match &self.password_env {
            Some(var) => secret_from_env(&ProcessEnv, var)?,
            None => secret_from_reader(&mut std::io::stdin().lock() as &mut dyn BufRead)?,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Serve { tenant } => rt.block_on(sors::serve::serve(&tenant)),
        Command::Check { tenant } => {
            let problems = rt.block_on(sors::check::check(&tenant))?;
            if problems.is_empty() {
                say!("\nAll checks passed.");
                Ok(())
            } else {
                say!("\n{} problem(s):", problems.len());
                for p in &problems {
                    say!("  - {p}");
                }
                std::process::exit(1);
            }
        }
        #[cfg(feature = "testbed")]
        Command::Demo {
            tenant,
            http,
            no_traffic,
        } => rt.block_on(sors_testbed::demo::run(sors_testbed::demo::DemoOptions {
            tenant,
            http,
            traffic: !no_traffic,
        })),
        Command::Credentials(c) => credentials(c),
        #[cfg(feature = "testbed")]
        Command::Bench {
            rows,
            max_in_flight,
            batch_window_ms,
        } => {
            let report = rt.block_on(sors_testbed::bench::run(
                sors_testbed::bench::BenchOptions {
                    rows,
                    max_in_flight,
                    batch_window: std::time::Duration::from_millis(batch_window_ms),
                },
            ))?;
            sors::say_raw!("{report}");
            Ok(())
        }
        #[cfg(feature = "testbed")]
        Command::Scenario(Scenario::Run { files, dir, jobs }) => scenario_run(&files, dir, jobs),
    }
}

#[cfg(feature = "testbed")]
fn scenario_run(
    files: &[PathBuf],
    dir: Option<PathBuf>,
    jobs: Option<usize>,
) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(sors_scenarios::default_dir);
    let scenarios = match sors_scenarios::load_all(&dir, files) {
        Ok(s) => s,
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            eprintln!("{} scenario file(s) could not be read", errs.len());
            std::process::exit(2);
        }
    };
    if scenarios.is_empty() {
        anyhow::bail!("no scenario files in {}", dir.display());
    }
    let mut opts = sors_scenarios::RunOptions::default();
    if let Some(j) = jobs {
        opts.jobs = j.max(1);
    }
    let reports = sors_scenarios::run_all(scenarios, &opts);
    for r in &reports {
        say!("{}", r.render());
    }
    say!("{}", sors_scenarios::summary_line(&reports));
    if reports.iter().any(|r| r.failed()) {
        std::process::exit(1);
    }
    Ok(())
}

fn credentials(c: Credentials) -> anyhow::Result<()> {
    match c {
        Credentials::SetSalesforce {
            tenant,
            username,
            password,
            token_env,
            client_id,
            client_secret_env,
        } => {
            let token = match token_env {
                Some(var) => secret_from_env(&ProcessEnv, &var)?,
                None => Secret::new(""),
            };
            let client_secret = client_secret_env
                .map(|var| secret_from_env(&ProcessEnv, &var))
                .transpose()?;
            let saved = sors_tenant::cli::set_salesforce(
                &tenant.tenant,
                &username,
                password.read()?,
                token,
                client_id.as_deref(),
                client_secret,
            )?;
            say!("Salesforce credentials saved.");
            note_set_aside(&saved);
        }
        Credentials::SetCic {
            tenant,
            user,
            password,
        } => {
            let saved = sors_tenant::cli::set_cic(&tenant.tenant, &user, password.read()?)?;
            say!("CIC credentials saved.");
            note_set_aside(&saved);
        }
        Credentials::Show { tenant } => say!("{}", sors_tenant::cli::show(&tenant.tenant)?),
    }
    Ok(())
}

fn note_set_aside(saved: &sors_tenant::cli::Saved) {
    if let Some(kept) = &saved.set_aside {
        say!(
            "The old credential file could not be read and was kept as {}; enter the other side's credentials again too.",
            kept.display()
        );
    }
}
