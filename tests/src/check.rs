//! The two checks: SIGKILL at random moments during a burst, and a graceful SIGTERM stop with
//! rows in flight. Each starts its own fake Salesforce and fake CIC pair in this process,
//! writes a tenant directory pointing at them, and runs the router as a child process.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sors_fake_salesforce::FakeSalesforce;
use sors_testbed::{Bed, BedOptions};
use tokio::time::{Instant, sleep};

use crate::HarnessError;
use crate::child::{Life, RouterProcess};
use crate::report::{CaseState, Evidence, Report, RoutingTable, RowEvent, RowStatus};
use crate::workload::Workload;

/// How long a router process may take to be ready.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a SIGTERM stop may take.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// Nothing may change for this long before the final state is judged.
const QUIET: Duration = Duration::from_secs(3);
/// About how long a router process takes to be ready, for pacing the burst.
const START_MS: u64 = 300;
/// Latency added to every call on the fakes, as on real networks; it also keeps rows
/// `Processing` long enough for kills to land mid-flight.
const SF_LATENCY: Duration = Duration::from_millis(20);
const CIC_LATENCY: Duration = Duration::from_millis(40);

/// The SIGKILL check's parameters.
#[derive(Clone, Debug)]
pub struct CrashPlan {
    pub seed: u64,
    /// Routing rows written by the burst.
    pub rows: usize,
    /// SIGKILLs (each followed by a restart).
    pub kills: usize,
    /// How long one router process lives before its kill, at random in this range.
    pub life_ms: (u64, u64),
    /// Downtime between a kill and the restart, at random up to this.
    pub down_ms: u64,
    /// After the last restart and the end of the burst: how long everything may take to be
    /// final and quiet.
    pub settle: Duration,
    /// Router up-time after which a row counts as late.
    pub late_after: Duration,
}

impl CrashPlan {
    /// The CI run: 300 rows, 4 kills.
    pub fn short(seed: u64) -> CrashPlan {
        CrashPlan {
            seed,
            rows: 300,
            kills: 4,
            life_ms: (300, 3000),
            down_ms: 500,
            settle: Duration::from_secs(90),
            late_after: Duration::from_secs(20),
        }
    }

    /// The run: 2,000 rows, 20 kills.
    pub fn full(seed: u64) -> CrashPlan {
        CrashPlan {
            rows: 2000,
            kills: 20,
            settle: Duration::from_secs(180),
            ..CrashPlan::short(seed)
        }
    }

    /// The burst is spread over about the time the kills take, so kills land while rows are
    /// `New`, `Processing` and being marked.
    fn burst_duration(&self) -> Duration {
        let per_life = (self.life_ms.0 + self.life_ms.1) / 2 + self.down_ms / 2 + START_MS;
        Duration::from_millis(per_life * self.kills.max(1) as u64)
    }
}

/// The result of one check.
pub struct Outcome {
    pub name: &'static str,
    pub report: Report,
    pub lives: Vec<Life>,
    /// Check failures that are not row findings (a router that exited by itself, a stop that
    /// hung, a state that never settled, rows missing from the workload).
    pub problems: Vec<String>,
    /// What the burst did, for the summary.
    pub workload: String,
    pub dir: PathBuf,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        !self.report.failed() && self.problems.is_empty()
    }

    /// The report, the timeline and the problems, for the terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        let _ = writeln!(s, "{}: {verdict}", self.name);
        let _ = writeln!(s, "  workload: {}", self.workload);
        let _ = write!(s, "{}", self.report);
        let _ = writeln!(s, "  timeline (seconds from the first start):");
        let t0 = self.lives.first().map(|l| l.started);
        let at = |t: Option<DateTime<Utc>>| match (t, t0) {
            (Some(t), Some(t0)) => format!("{:7.2}", (t - t0).num_milliseconds() as f64 / 1000.0),
            _ => "      -".to_owned(),
        };
        for l in &self.lives {
            let rows = match (l.rows_new_at_end, l.rows_processing_at_end) {
                (Some(n), Some(p)) => format!("; rows then: New {n}, Processing {p}"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "    #{:02} pid {:>7}  start {}  ready {}  end {}  {:?}{rows}",
                l.index,
                l.pid,
                at(Some(l.started)),
                at(l.ready),
                at(l.ended),
                l.end
            );
        }
        for p in &self.problems {
            let _ = writeln!(s, "  problem: {p}");
        }
        if !self.passed() {
            let _ = writeln!(s, "  router logs and tenant: {}", self.dir.display());
        }
        s
    }
}

/// SIGKILL at random moments during a burst, restarting each time; then waits until every row
/// is final and quiet and classifies the result.
pub async fn crash_sigkill(plan: &CrashPlan, dir: &Path) -> Result<Outcome, HarnessError> {
    let bed = start_bed(dir).await?;
    let mut router = RouterProcess::new(dir.to_path_buf())?;
    router.start(START_DEADLINE).await?;
    let mut workload = Workload::new(plan.seed);
    let mut rng = StdRng::seed_from_u64(plan.seed.rotate_left(32) ^ 0x5eed);
    let burst = workload.burst(&bed.sf, plan.rows, plan.burst_duration());
    let kills = kill_loop(&mut router, &bed.sf, &mut rng, plan);
    tokio::try_join!(burst, kills)?;
    let outcome = judge(
        "crash_sigkill",
        &bed,
        &mut router,
        &workload,
        plan.settle,
        plan.late_after,
        Vec::new(),
        dir,
    )
    .await;
    drop(router);
    bed.shutdown().await;
    outcome
}

async fn kill_loop(
    router: &mut RouterProcess,
    sf: &FakeSalesforce,
    rng: &mut StdRng,
    plan: &CrashPlan,
) -> Result<(), HarnessError> {
    for _ in 0..plan.kills {
        sleep(Duration::from_millis(
            rng.random_range(plan.life_ms.0..=plan.life_ms.1),
        ))
        .await;
        router.kill()?;
        let (new, processing) = pending(sf)?;
        router.note_rows_at_end(new, processing);
        sleep(Duration::from_millis(rng.random_range(0..=plan.down_ms))).await;
        router.start(START_DEADLINE).await?;
    }
    Ok(())
}

/// A graceful stop (SIGTERM) while rows are in flight, more rows written while the router is
/// down, then a restart: nothing may be lost or duplicated, and the stop must be clean.
pub async fn graceful_sigterm(seed: u64, dir: &Path) -> Result<Outcome, HarnessError> {
    let bed = start_bed(dir).await?;
    let mut router = RouterProcess::new(dir.to_path_buf())?;
    router.start(START_DEADLINE).await?;
    let mut workload = Workload::new(seed);
    let mut problems = Vec::new();
    let burst = workload.burst(&bed.sf, 80, Duration::from_secs(4));
    let stop = async {
        // Stop once some rows are in flight (claimed, not yet marked).
        let until = Instant::now() + Duration::from_secs(20);
        let mut in_flight = 0;
        while in_flight == 0 && Instant::now() < until {
            sleep(Duration::from_millis(10)).await;
            in_flight = pending(&bed.sf)?.1;
        }
        let status = router.terminate(STOP_DEADLINE).await?;
        let (new, processing) = pending(&bed.sf)?;
        router.note_rows_at_end(new, processing);
        Ok::<_, HarnessError>((status, in_flight))
    };
    let ((), (status, in_flight)) = tokio::try_join!(burst, stop)?;
    println!("graceful_sigterm: SIGTERM sent with {in_flight} row(s) Processing");
    if !status.success() {
        problems.push(format!(
            "the router did not exit cleanly on SIGTERM: {status}"
        ));
    }
    if in_flight == 0 {
        problems.push(
            "no row was Processing within 20 s: the check could not stop the router mid-flight"
                .into(),
        );
    }
    router.start(START_DEADLINE).await?;
    judge_and_stop("graceful_sigterm", bed, router, &workload, problems, dir).await
}

/// Judges after a one-restart check (60 s to settle, late after 20 s), then stops everything.
async fn judge_and_stop(
    name: &'static str,
    bed: Bed,
    mut router: RouterProcess,
    workload: &Workload,
    problems: Vec<String>,
    dir: &Path,
) -> Result<Outcome, HarnessError> {
    let outcome = judge(
        name,
        &bed,
        &mut router,
        workload,
        Duration::from_secs(60),
        Duration::from_secs(20),
        problems,
        dir,
    )
    .await;
    drop(router);
    bed.shutdown().await;
    outcome
}

/// Issue 8, item 2: CIC switches over without interaction recovery while the router is down
/// (killed after a burst has been routed). No running router saw the loss; the restarted one
/// must find it from Salesforce and CIC alone and re-route every case that should be live.
pub async fn switchover_while_down(seed: u64, dir: &Path) -> Result<Outcome, HarnessError> {
    let bed = start_bed(dir).await?;
    let mut router = RouterProcess::new(dir.to_path_buf())?;
    router.start(START_DEADLINE).await?;
    let mut workload = Workload::new(seed);
    workload.burst(&bed.sf, 60, Duration::from_secs(3)).await?;
    let until = Instant::now() + Duration::from_secs(60);
    while pending(&bed.sf)? != (0, 0) {
        if Instant::now() > until {
            return Err(HarnessError::Setup(
                "the burst was not routed within 60 s".into(),
            ));
        }
        sleep(Duration::from_millis(100)).await;
    }
    router.kill()?;
    router.note_rows_at_end(0, 0);
    let live_before = bed.cic.interactions().iter().filter(|i| i.live).count();
    bed.cic.switchover(Some(false));
    println!(
        "switchover_while_down: {live_before} live interaction(s) lost while the router was down"
    );
    let mut problems = Vec::new();
    if live_before == 0 {
        problems.push("nothing was live before the switchover: the check tested nothing".into());
    }
    router.start(START_DEADLINE).await?;
    judge_and_stop(
        "switchover_while_down",
        bed,
        router,
        &workload,
        problems,
        dir,
    )
    .await
}

/// The fakes, and a tenant directory pointing at them with test timings.
async fn start_bed(dir: &Path) -> Result<Bed, HarnessError> {
    let bed = Bed::start_fakes(BedOptions::default())
        .await
        .map_err(|e| HarnessError::Setup(format!("starting the fakes: {e:#}")))?;
    bed.sf.set_latency(SF_LATENCY);
    bed.cic.set_latency(CIC_LATENCY);
    sors_testbed::demo::write_tenant(
        dir,
        &bed.sf.base_url(),
        [bed.cic.primary_url(), bed.cic.backup_url()],
        "127.0.0.1:0",
    )
    .map_err(|e| HarnessError::Setup(format!("writing the tenant directory: {e:#}")))?;
    let mut cfg = sors_tenant::Config::load(dir)
        .map_err(|e| HarnessError::Setup(format!("reading the tenant config: {e}")))?;
    cfg.tenant.name = "crash".into();
    cfg.routing.route_timeout_secs = 5;
    cfg.routing.retry_backoff_secs = 1;
    cfg.routing.sweep_interval_secs = 2;
    cfg.routing.sweep_grace_secs = 1;
    cfg.routing.batch_window_ms = 20;
    cfg.write(dir)
        .map_err(|e| HarnessError::Setup(format!("writing the tenant config: {e}")))?;
    Ok(bed)
}

/// Rows `New` and `Processing` right now.
fn pending(sf: &FakeSalesforce) -> Result<(usize, usize), HarnessError> {
    let p = RoutingTable::read(sf)
        .map_err(|e| HarnessError::Record(e.to_string()))?
        .pending();
    Ok((p.new, p.processing))
}

/// Everything the report looks at, read now.
struct State {
    table: RoutingTable,
    cases: Vec<CaseState>,
    interactions: Vec<sors_fake_icws::InteractionInfo>,
}

impl State {
    fn read(bed: &Bed) -> Result<State, HarnessError> {
        let record = |e: sors_testbed::TableError| HarnessError::Record(e.to_string());
        Ok(State {
            table: RoutingTable::read(&bed.sf).map_err(record)?,
            cases: CaseState::read_all(&bed.sf).map_err(record)?,
            interactions: bed.cic.interactions(),
        })
    }

    /// What must stop changing before the state is judged.
    fn signature(&self) -> (BTreeMap<RowStatus, usize>, usize, usize, usize) {
        let live = self.interactions.iter().filter(|i| i.live).count();
        let disconnected = self.interactions.iter().filter(|i| i.state == "I").count();
        (
            self.table.by_status(),
            self.interactions.len(),
            live,
            disconnected,
        )
    }

    fn all_final(&self) -> bool {
        self.table.all_final()
    }
}

/// Waits until every row is final and nothing changes for [`QUIET`] (or `settle` runs out),
/// then classifies.
#[allow(clippy::too_many_arguments)]
async fn judge(
    name: &'static str,
    bed: &Bed,
    router: &mut RouterProcess,
    workload: &Workload,
    settle: Duration,
    late_after: Duration,
    mut problems: Vec<String>,
    dir: &Path,
) -> Result<Outcome, HarnessError> {
    let until = Instant::now() + settle;
    let mut state = State::read(bed)?;
    let mut quiet_since = Instant::now();
    loop {
        sleep(Duration::from_millis(250)).await;
        let next = State::read(bed)?;
        if next.signature() != state.signature() {
            quiet_since = Instant::now();
        }
        state = next;
        if state.all_final() && quiet_since.elapsed() >= QUIET {
            break;
        }
        if Instant::now() > until {
            problems.push(format!(
                "not every row was final and quiet {settle:?} after the last restart"
            ));
            break;
        }
    }
    if let Some(status) = router.exited() {
        problems.push(format!(
            "the last router process exited by itself ({status})"
        ));
    } else if !router.is_running() {
        problems.push("the last router process is not running at the end".into());
    }
    let recovery = state.table.count_event(&RowEvent::SwitchoverRecovery);
    if state.table.len() != workload.done + recovery {
        problems.push(format!(
            "the burst did {} actions (one routing row each) but there are {} rows",
            workload.done,
            state.table.len()
        ));
    }
    let lives = router.lives().to_vec();
    let report = Report::classify(&Evidence {
        table: &state.table,
        cases: &state.cases,
        interactions: &state.interactions,
        lives: &lives,
        expected_failed: &workload.refused,
        late_after,
        now: Utc::now(),
    });
    let actions = workload
        .by_action
        .iter()
        .map(|(a, n)| format!("{a:?} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Outcome {
        name,
        report,
        lives,
        problems,
        workload: format!(
            "{} actions on {} cases ({} with refused skills): {actions}",
            workload.done,
            workload.cases,
            workload.refused.len()
        ),
        dir: dir.to_path_buf(),
    })
}
