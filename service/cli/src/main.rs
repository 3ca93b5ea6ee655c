//! The `sors` command.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use sors::say;
use sors_tenant::ProcessEnv;
use sors_tenant::cli::{secret_from_env, secret_from_reader};
use sors_tenant::credentials::{CredentialStore, KeyOrigin, RotateOptions, Secret};

#[derive(Parser)]
#[command(
    name = "sors",
    version,
    about = "Salesforce Object Routing Server: routes Email-to-Case cases to CIC workgroups",
    long_about = "Salesforce Object Routing Server: routes Email-to-Case cases to CIC workgroups.\n\n\
        One process per tenant directory DIR: DIR/config.toml (settings, no secrets; every key \
        with its default is in /usr/share/sors/config.toml.example), DIR/secureData/encryptData.json \
        (the encrypted credentials), DIR/logs/ (daily logs). Under systemd: sors@<tenant>.service \
        runs /var/lib/sors/<tenant>.\n\n\
        The credential key is the first of: SORS_CREDENTIAL_KEY (base64 of 32 bytes), the file \
        named by SORS_CREDENTIAL_KEY_FILE, the systemd credential sors-credential-key, \
        DIR/secureData/key; `sors credentials show` says which one is used."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks the router as production runs it (fakes and `sors serve` as separate
    /// processes); prints the report table and writes it as JSON (see BENCHMARKS.md). Exits 1
    /// when a row was not routed exactly once.
    #[cfg(feature = "testbed")]
    Bench {
        /// B1 backlog sizes, comma-separated (default 10000,100000; with --quick 200).
        #[arg(long, value_delimiter = ',')]
        rows: Vec<usize>,
        /// A seconds-long run (CI): B1 at 200 rows, B2 for 3 s, B3 100 + 10 rows, B4, B5.
        #[arg(long)]
        quick: bool,
        /// Only these figures, e.g. B1,B3 (default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Where the JSON report is written.
        #[arg(long, default_value = "target/bench/report.json")]
        json: PathBuf,
        /// The sors-fakes binary (default: the one next to this binary).
        #[arg(long)]
        fakes_bin: Option<PathBuf>,
        /// The sors binary run as the router (default: this binary), e.g. the production build.
        #[arg(long)]
        router_bin: Option<PathBuf>,
    },
    /// Runs the routing service of one tenant directory.
    Serve {
        /// The tenant directory (config.toml, secureData/, logs/).
        #[arg(long, value_name = "DIR")]
        tenant: PathBuf,
    },
    /// Checks config, logins on both sides, mappings, workgroups and skills; prints what is wrong.
    Check {
        /// The tenant directory (config.toml, secureData/, logs/).
        #[arg(long, value_name = "DIR")]
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
    /// Sets, shows, sets aside or re-keys the encrypted credentials of a tenant directory.
    #[command(subcommand)]
    Credentials(Credentials),
    /// Prints the man page (roff), or writes it and one page per subcommand to --dir.
    #[command(hide = true)]
    Man {
        /// Write sors.1 and sors-<subcommand>.1 pages into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
        /// The Salesforce user name.
        #[arg(long)]
        username: String,
        #[command(flatten)]
        password: PasswordArg,
        /// Environment variable holding the security token (empty when the IP is trusted).
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
        /// The connected app's consumer key (OAuth flows).
        #[arg(long)]
        client_id: Option<String>,
        /// Environment variable holding the OAuth client secret.
        #[arg(long, value_name = "VAR")]
        client_secret_env: Option<String>,
    },
    /// Sets the CIC (ICWS) user.
    SetCic {
        #[command(flatten)]
        tenant: TenantArg,
        /// The CIC user.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        password: PasswordArg,
    },
    /// Shows which credentials are stored and where the key came from (never the secrets).
    Show {
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Moves a credential file that cannot be read (modified, damaged, another key) aside, to
    /// encryptData.json.refused-<time>, so that credentials can be entered again.
    SetAside {
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Replaces the key with a new random one and re-encrypts the credentials with it.
    ///
    /// When the key came from a file (secureData/key or SORS_CREDENTIAL_KEY_FILE) the new key
    /// replaces it. When it came from SORS_CREDENTIAL_KEY or the systemd credential, the new key
    /// is written to --new-key-file (or printed with --print) and you install it where the old
    /// one came from; the old credential file is kept as encryptData.json.bak-<time> until then.
    /// The key is never printed without --print. Restart the service afterwards.
    RotateKey {
        #[command(flatten)]
        tenant: TenantArg,
        /// Also write the new key (32 bytes, mode 0600) to this new file. Required when the key
        /// comes from SORS_CREDENTIAL_KEY or the systemd credential, unless --print is given.
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<PathBuf>,
        /// Print the new key (base64) on standard output.
        #[arg(long)]
        print: bool,
    },
}

#[derive(Args)]
struct TenantArg {
    /// The tenant directory (config.toml, secureData/, logs/).
    #[arg(long, value_name = "DIR")]
    tenant: PathBuf,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct PasswordArg {
    /// Environment variable holding the password.
    #[arg(long, value_name = "VAR")]
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
        Command::Man { dir } => man(dir),
        #[cfg(feature = "testbed")]
        Command::Bench {
            rows,
            quick,
            only,
            json,
            fakes_bin,
            router_bin,
        } => {
            let report = rt.block_on(sors_testbed::bench::run(
                sors_testbed::bench::BenchOptions {
                    rows,
                    quick,
                    only,
                    json,
                    fakes_bin,
                    router_bin,
                },
            ))?;
            sors::say_raw!("{report}");
            if !report.violations.is_empty() {
                std::process::exit(1);
            }
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
            sors_tenant::cli::set_salesforce(
                &tenant.tenant,
                &username,
                password.read()?,
                token,
                client_id.as_deref(),
                client_secret,
            )?;
            say!("Salesforce credentials saved.");
        }
        Credentials::SetCic {
            tenant,
            user,
            password,
        } => {
            sors_tenant::cli::set_cic(&tenant.tenant, &user, password.read()?)?;
            say!("CIC credentials saved.");
        }
        Credentials::Show { tenant } => say!("{}", sors_tenant::cli::show(&tenant.tenant)?),
        Credentials::SetAside { tenant } => {
            let (kept, why) = sors_tenant::cli::set_aside(&tenant.tenant)?;
            say!("The credential file was refused: {why}");
            say!(
                "It is kept as {}. Enter the credentials of both sides again (sors credentials set-salesforce, set-cic).",
                kept.display()
            );
        }
        Credentials::RotateKey {
            tenant,
            new_key_file,
            print,
        } => rotate_key(&tenant.tenant, new_key_file, print)?,
    }
    Ok(())
}

fn rotate_key(tenant: &Path, new_key_file: Option<PathBuf>, print: bool) -> anyhow::Result<()> {
    let store = CredentialStore::open(tenant)?;
    let file = store.path();
    let rotated = store.rotate_key(&RotateOptions {
        new_key_file,
        reveal: print,
        ..RotateOptions::default()
    })?;
    let name = tenant
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "<tenant>".into());
    match &rotated.key_written {
        Some(key) => say!(
            "The credentials in {} are now sealed with a new key, which replaced the old one in {} (mode 0600).",
            file.display(),
            key.display()
        ),
        None => say!(
            "The credentials in {} are now sealed with a new key; the old key, from {}, no longer opens them.",
            file.display(),
            rotated.origin
        ),
    }
    if let Some(copy) = &rotated.new_key_file {
        say!("The new key is in {} (mode 0600).", copy.display());
    }
    if let Some(key) = &rotated.revealed {
        say!("New key (base64): {}", key.expose());
    }
    let new_key = match &rotated.new_key_file {
        Some(path) => path.display().to_string(),
        None => "the printed key".to_owned(),
    };
    match &rotated.origin {
        KeyOrigin::Env => say!(
            "Now set {} to the new key's base64 (`base64 -w0 {new_key}`) where it is defined (the package's unit reads /etc/sors/{name}.env), then restart the service: systemctl restart sors@{name}",
            sors_tenant::credentials::KEY_ENV
        ),
        KeyOrigin::SystemdCredential(_) => say!(
            "Now install {new_key} as the source of the unit's LoadCredential={} (the package's unit: /etc/sors/keys/{name}.key), e.g. `install -m 600 -o root -g root {new_key} /etc/sors/keys/{name}.key`, then restart the service: systemctl restart sors@{name}",
            sors_tenant::credentials::SYSTEMD_CREDENTIAL
        ),
        KeyOrigin::EnvFile(_) | KeyOrigin::File(_) => {
            say!("Restart the service so that it reads the new key: systemctl restart sors@{name}")
        }
    }
    if let Some(backup) = &rotated.backup {
        say!(
            "Until the new key is installed, the old file is kept as {}: to undo, `mv {} {}`; delete it once the service runs with the new key.",
            backup.display(),
            backup.display(),
            file.display()
        );
    }
    Ok(())
}

/// The man page, from the same definitions as `--help`: `sors.1`, and with `dir` also one page
/// per subcommand (`sors-credentials-rotate-key.1`), as the SUBCOMMANDS section refers to them.
fn man(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let pages = man_pages().context("rendering the man pages")?;
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, page) in &pages {
                let path = dir.join(name);
                std::fs::write(&path, page)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            if let Some((_, page)) = pages.iter().find(|(name, _)| name == "sors.1") {
                sors::say_raw!("{}", String::from_utf8_lossy(page));
            }
        }
    }
    Ok(())
}

/// Every page as (file name, roff), the main page last.
fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    fn walk(
        cmd: &clap::Command,
        source: &str,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, source, out)?;
        }
        let man = clap_mangen::Man::new(cmd.clone()).source(source);
        let mut page = Vec::new();
        man.render(&mut page)?;
        out.push((man.get_filename(), page));
        Ok(())
    }
    // As clap_mangen::generate_to does: `help` has no page; building names the subcommands
    // `sors-credentials-rotate-key` and so on.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let source = format!("sors {}", env!("CARGO_PKG_VERSION"));
    let mut pages = Vec::new();
    walk(&cmd, &source, &mut pages)?;
    Ok(pages)
}
