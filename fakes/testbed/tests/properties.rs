//! Property tests of the router's invariants (routing.md) against the real fakes and a real
//! router: proptest generates stories of Salesforce actions, CIC actions, faults and router
//! stops, kills and restarts; each story runs on a fresh `sors_testbed::Bed` and is checked
//! against a reference model after every step and at quiescence.
//!
//! `harness = false`, so the command line is ours:
//!
//! ```text
//! cargo test -p sors --test properties                       # CI: a bounded number of stories
//! cargo test -p sors --test properties -- --soak 600         # random stories for 600 s
//! SORS_PROPS_SEED=0x1234abcd cargo test -p sors --test properties   # replay one story
//! ```
//!
//! Also `SORS_SOAK_SECS` (same as `--soak`), `SORS_PROPS_CASES` (stories in a bounded run,
//! default 12) and `SORS_PROPS_SHRINK_SECS` (time allowed for shrinking, default 90).
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

#[path = "properties/checks.rs"]
mod checks;
#[path = "properties/model.rs"]
mod model;
#[path = "properties/ops.rs"]
mod ops;
#[path = "properties/story.rs"]
mod story;

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// Operations per story, at most.
const MAX_OPS: usize = 12;
const DEFAULT_CASES: u32 = 12;
const DEFAULT_SHRINK_SECS: u64 = 90;

struct Args {
    soak: Option<Duration>,
    cases: u32,
    seed: Option<u64>,
    shrink: Duration,
}

fn env_u64(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(v) => parse_u64(&v)
            .map(Some)
            .ok_or_else(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(None),
    }
}

/// Decimal, or hexadecimal with `0x` (the seeds are printed that way).
fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn args() -> Result<Args, String> {
    let mut soak = env_u64("SORS_SOAK_SECS")?;
    let mut argv = std::env::args().skip(1);
    while let Some(a) = argv.next() {
        if a == "--soak" {
            let v = argv.next().ok_or("--soak needs a number of seconds")?;
            soak = Some(parse_u64(&v).ok_or_else(|| format!("--soak {v:?}: not a number"))?);
        } else if let Some(v) = a.strip_prefix("--soak=") {
            soak = Some(parse_u64(v).ok_or_else(|| format!("--soak={v:?}: not a number"))?);
        }
        // Anything else (libtest flags, name filters) is for other test binaries.
    }
    let cases = env_u64("SORS_PROPS_CASES")?.unwrap_or(u64::from(DEFAULT_CASES));
    Ok(Args {
        soak: soak.map(Duration::from_secs),
        cases: u32::try_from(cases).map_err(|_| "SORS_PROPS_CASES is too large")?,
        seed: env_u64("SORS_PROPS_SEED")?,
        shrink: Duration::from_secs(
            env_u64("SORS_PROPS_SHRINK_SECS")?.unwrap_or(DEFAULT_SHRINK_SECS),
        ),
    })
}

/// Runs the story proptest generates from `seed`; on failure shrinks it and returns the report.
fn run_seed(
    rt: &tokio::runtime::Runtime,
    seed: u64,
    shrink: Duration,
) -> Result<story::Covered, String> {
    let config = Config {
        cases: 1,
        max_shrink_iters: 256,
        max_shrink_time: u32::try_from(shrink.as_millis()).unwrap_or(u32::MAX),
        failure_persistence: None,
        ..Config::default()
    };
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let first: Mutex<Option<Vec<ops::Op>>> = Mutex::new(None);
    let covered: Mutex<Option<story::Covered>> = Mutex::new(None);
    let tried = Mutex::new(0u32);
    let result = runner.run(&ops::story(MAX_OPS), |ops| {
        let n = {
            let mut t = tried.lock().unwrap_or_else(|p| p.into_inner());
            *t += 1;
            *t
        };
        if n > 1 {
            eprintln!("  shrinking: run {n} ({} ops)", ops.len());
        }
        match rt.block_on(story::play(&ops)) {
            Ok(c) => {
                *covered.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                Ok(())
            }
            Err(report) => {
                first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(ops);
                Err(TestCaseError::fail(report))
            }
        }
    });
    match result {
        Ok(()) => covered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| "proptest ran no story".to_owned()),
        Err(TestError::Abort(why)) => Err(format!("proptest aborted: {why}")),
        Err(TestError::Fail(report, shrunk)) => {
            let mut out = format!(
                "seed 0x{seed:016x} (replay: SORS_PROPS_SEED=0x{seed:016x} cargo test -p sors --test properties)\n"
            );
            if let Some(original) = first.lock().unwrap_or_else(|p| p.into_inner()).take() {
                out.push_str(&format!(
                    "original sequence ({} ops): {original:#?}\n",
                    original.len()
                ));
            }
            out.push_str(&format!(
                "shrunk sequence ({} ops): {shrunk:#?}\n",
                shrunk.len()
            ));
            out.push_str(report.message());
            Err(out)
        }
    }
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("properties: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("properties: no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut next = 0u32;
    loop {
        let seed = match (args.seed, args.soak) {
            (Some(s), _) if next == 0 => s,
            (Some(_), _) => break,
            (None, Some(soak)) if started.elapsed() >= soak => break,
            (None, None) if next >= args.cases => break,
            (None, _) => rand::random(),
        };
        next += 1;
        let t = Instant::now();
        match run_seed(&rt, seed, args.shrink) {
            Ok(c) => {
                passed += 1;
                println!(
                    "story {next}: seed 0x{seed:016x} ok in {:.1} s: {} cases ({} checked live once), {} rows ({} SwitchoverRecovery), {} interactions ({} lost or gone in a switchover)",
                    t.elapsed().as_secs_f64(),
                    c.cases,
                    c.live_checked,
                    c.rows,
                    c.recovery_rows,
                    c.interactions,
                    c.lost
                );
            }
            Err(report) => {
                failed += 1;
                println!(
                    "story {next}: FAILED after {:.1} s\n{report}",
                    t.elapsed().as_secs_f64()
                );
                break;
            }
        }
    }
    if args.soak.is_some() {
        println!(
            "soak: {} stories ran in {:.0} s",
            passed + failed,
            started.elapsed().as_secs_f64()
        );
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
