//! `sors bench`: the router measured as production runs it. The fakes (`sors-fakes salesforce`,
//! `sors-fakes icws`) and the router (`sors serve --tenant DIR`, this binary) run as separate
//! processes on free loopback ports; the bench drives the fakes only over HTTP (their REST and
//! `/__fake/` APIs) and reads the router's memory and CPU from `/proc`. Every figure is measured
//! twice in the same run: once for the router, once for the ceiling client (`ceiling`: the calls
//! a row needs, no routing logic), so each is also a fraction of what the fakes allow on this
//! machine. `BENCHMARKS.md` says what each figure means and holds the report.
//!
//! Every scenario starts fresh fakes, so the counters of the fakes belong to it alone, and ends
//! with the exactly-once check: every row `Processed` with an interaction id of its own, and
//! the fake CIC's interactions created and handler notifications equal to the rows. Speed is
//! reported, never asserted.

mod ceiling;
mod control;
mod procs;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;

use ceiling::Ceiling;
use control::{CicControl, RowCounts, SfControl, api_delta};
use procs::{Bins, ProcStats};
pub use report::{Line, Report, Verdict};

/// What `sors bench` runs.
#[derive(Clone, Debug, Default)]
pub struct BenchOptions {
    /// B1 backlog sizes; empty: 10,000 and 100,000 (`quick`: 200).
    pub rows: Vec<usize>,
    /// A seconds-long run for CI: B1 at 200 rows, B2 for 3 s, B3 100 + 10, B4, B5 (one start).
    pub quick: bool,
    /// Only these figures (`B1` … `B5`); empty: all.
    pub only: Vec<String>,
    /// Where the JSON report is written.
    pub json: PathBuf,
    /// The `sors-fakes` binary; default: beside the running binary.
    pub fakes_bin: Option<PathBuf>,
    /// The `sors` binary run as the router (`sors serve`); default: the running binary. E.g. the
    /// production build the package ships (`--no-default-features`, profile `dist`).
    pub router_bin: Option<PathBuf>,
}

/// The queue every bench case lands in (mapped to the CIC workgroup `Support_EN`).
const QUEUE: &str = "Support EN";
/// How often the bench asks the fake for the routing rows by status while it waits.
const POLL: Duration = Duration::from_millis(20);

/// Runs the bench; the report says what was measured and what the exactly-once check found.
pub async fn run(opts: BenchOptions) -> anyhow::Result<Report> {
    let bins = Bins::locate(opts.fakes_bin.clone(), opts.router_bin.clone())?;
    let dir = std::env::temp_dir().join(format!("sors-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .context("HTTP client")?;
    let run = Run {
        bins,
        dir: dir.clone(),
        http,
        next: AtomicUsize::new(0),
    };
    let wanted =
        |f: &str| opts.only.is_empty() || opts.only.iter().any(|o| o.eq_ignore_ascii_case(f));
    let sizes = if !opts.rows.is_empty() {
        opts.rows.clone()
    } else if opts.quick {
        vec![200]
    } else {
        vec![10_000, 100_000]
    };
    let mut report = Report::new(&opts, &sizes);
    // The JSON is rewritten after every scenario, so a long run that is stopped keeps its part.
    let save = |report: &Report| -> anyhow::Result<()> {
        if let Some(parent) = opts.json.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = serde_json::to_string_pretty(&report.to_json()).context("the JSON report")?;
        std::fs::write(&opts.json, text).with_context(|| format!("writing {}", opts.json.display()))
    };
    let b2_secs = if opts.quick { 3 } else { 60 };

    if wanted("B5") || wanted("B4") {
        let starts = if opts.quick { 1 } else { 3 };
        note(&format!(
            "B4/B5: {starts} start(s) of sors serve on fresh fakes"
        ));
        match startup(&run, starts).await {
            Ok(s) => report.startup(&s, wanted("B4"), wanted("B5")),
            Err(e) => report.error("B4/B5 start-up", &e),
        }
        save(&report)?;
    }
    if wanted("B3") {
        let (burst, trickle) = if opts.quick { (100, 10) } else { (1000, 20) };
        note(&format!(
            "B3: a burst of {burst}, then {trickle} rows one at a time"
        ));
        let router = economy(&run, Side::Router, burst, trickle).await;
        let ceiling = economy(&run, Side::Ceiling, burst, trickle).await;
        report.economy(burst, trickle, router, ceiling);
        save(&report)?;
    }
    if wanted("B2") {
        for (sf_ms, cic_ms) in [(0, 0), (50, 5)] {
            note(&format!(
                "B2: 50 cases/s for {b2_secs} s, latency Salesforce {sf_ms} ms, ICWS {cic_ms} ms"
            ));
            let load = Steady {
                per_sec: 50,
                secs: b2_secs,
                sf_ms,
                cic_ms,
            };
            let router = steady(&run, Side::Router, &load).await;
            let ceiling = steady(&run, Side::Ceiling, &load).await;
            report.steady(&load, router, ceiling);
            save(&report)?;
        }
    }
    if wanted("B1") {
        for &rows in &sizes {
            note(&format!("B1: drain a backlog of {rows} rows"));
            let router = drain(&run, Side::Router, rows).await;
            let ceiling = drain(&run, Side::Ceiling, rows).await;
            report.drain(rows, router, ceiling);
            save(&report)?;
        }
    }
    save(&report)?;
    report.json_path = Some(opts.json.clone());
    if report.violations.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        report.kept_dir = Some(dir);
    }
    Ok(report)
}

fn note(line: &str) {
    eprintln!("sors bench: {line}");
}

/// Who routes the rows of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Router,
    Ceiling,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Router => "router",
            Side::Ceiling => "ceiling",
        }
    }
}

struct Run {
    bins: Bins,
    dir: PathBuf,
    http: reqwest::Client,
    next: AtomicUsize,
}

/// Both fakes of one scenario, as processes.
struct Fakes {
    sf: procs::Proc,
    cic: procs::Proc,
    sf_url: String,
    cic_urls: [String; 2],
    sf_ctl: SfControl,
    cic_ctl: CicControl,
    dir: PathBuf,
}

impl Run {
    async fn fakes(&self, label: &str) -> anyhow::Result<Fakes> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = self.dir.join(format!("{n:02}-{label}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (sf, sf_url) = procs::fake_salesforce(&self.bins, &dir).await?;
        let (cic, cic_urls) = procs::fake_icws(&self.bins, &dir).await?;
        Ok(Fakes {
            sf_ctl: SfControl::new(self.http.clone(), &sf_url),
            cic_ctl: CicControl::new(self.http.clone(), &cic_urls[0]),
            sf,
            cic,
            sf_url,
            cic_urls,
            dir,
        })
    }

    async fn router(&self, f: &Fakes) -> anyhow::Result<procs::Router> {
        let tenant = f.dir.join("tenant");
        procs::write_tenant(&tenant, &f.sf_url, &f.cic_urls)?;
        procs::router(&self.bins, &tenant, &self.http, Duration::from_secs(30)).await
    }
}

impl Fakes {
    async fn stop(self) {
        self.sf.kill().await;
        self.cic.kill().await;
    }

    /// Waits until at least `rows` routing rows exist and all are final; the counts then.
    async fn wait_done(&self, rows: u64, deadline: Duration) -> anyhow::Result<RowCounts> {
        let until = Instant::now() + deadline;
        loop {
            let c = self.sf_ctl.row_counts().await?;
            if c.total >= rows && c.done() == c.total {
                return Ok(c);
            }
            if Instant::now() > until {
                bail!(
                    "after {deadline:?}: {} rows, {:?} (wanted {rows} final)",
                    c.total,
                    c.by_status
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every row routed exactly once: `Processed` with an interaction id of its own, and as many
    /// interactions created and handler notifications as rows. What is wrong, if anything.
    async fn exactly_once(&self, rows: u64, who: &str) -> anyhow::Result<Vec<String>> {
        let records = self
            .sf_ctl
            .query("SELECT Id, Status__c, Interaction_Id__c FROM Object_Routing_Queue__c")
            .await?;
        let mut problems = Vec::new();
        if records.len() as u64 != rows {
            problems.push(format!(
                "{who}: {} routing rows, expected {rows}",
                records.len()
            ));
        }
        let not_processed = records
            .iter()
            .filter(|r| r["Status__c"] != "Processed")
            .count();
        if not_processed > 0 {
            problems.push(format!("{who}: {not_processed} rows not Processed"));
        }
        let mut ids: Vec<&str> = records
            .iter()
            .filter_map(|r| r["Interaction_Id__c"].as_str())
            .filter(|s| !s.is_empty())
            .collect();
        if ids.len() != records.len() {
            problems.push(format!(
                "{who}: {} rows without an interaction id",
                records.len() - ids.len()
            ));
        }
        ids.sort_unstable();
        let distinct = {
            let mut d = ids.clone();
            d.dedup();
            d.len()
        };
        if distinct != ids.len() {
            problems.push(format!(
                "{who}: {} rows share an interaction id with another row",
                ids.len() - distinct
            ));
        }
        let cic = self.cic_ctl.counters().await?;
        for key in ["interactions_created", "handler_notifications"] {
            let n = cic[key].as_u64().unwrap_or(0);
            if n != rows {
                problems.push(format!("{who}: CIC {key} = {n}, expected {rows}"));
            }
        }
        let dup = cic["duplicates_suppressed"].as_u64().unwrap_or(0);
        if dup > 0 {
            problems.push(format!(
                "{who}: CIC suppressed {dup} duplicate RouteCase notifications"
            ));
        }
        Ok(problems)
    }

    /// Milliseconds from each row's creation to its `Processed` write, both stamped by the fake
    /// (`CreatedDate`, `LastModifiedDate`: the `Processed` write is a row's last).
    async fn times_to_route(&self) -> anyhow::Result<Vec<i64>> {
        let rows = self
            .sf_ctl
            .query("SELECT CreatedDate, LastModifiedDate, Status__c FROM Object_Routing_Queue__c")
            .await?;
        Ok(rows
            .iter()
            .filter(|r| r["Status__c"] == "Processed")
            .filter_map(|r| {
                let c = sf_time(r["CreatedDate"].as_str()?)?;
                let m = sf_time(r["LastModifiedDate"].as_str()?)?;
                Some((m - c).num_milliseconds())
            })
            .collect())
    }
}

/// `2024-01-01T10:00:00.000+0000`.
fn sf_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The router's `/metrics` text, kept in the JSON report for the analysis.
async fn metrics(http: &reqwest::Client, router: &procs::Router) -> String {
    match http
        .get(format!("{}/metrics", router.status_url))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => format!("(no /metrics: {e})"),
    }
}

// ------------------------------------------------------------------------------------ B4, B5

/// Start-ups of the router on fresh fakes (B5), its memory at rest after each (B4), and the
/// ceiling client's connect time on the same fakes.
#[derive(Clone, Debug, Default)]
pub struct Startup {
    pub ready_ms: Vec<f64>,
    pub rest_rss_kib: Vec<u64>,
    pub ceiling_connect_ms: Vec<f64>,
}

async fn startup(run: &Run, starts: usize) -> anyhow::Result<Startup> {
    let mut out = Startup::default();
    for _ in 0..starts {
        let f = run.fakes("startup").await?;
        let router = run.router(&f).await?;
        out.ready_ms.push(router.ready_after.as_secs_f64() * 1000.0);
        // At rest: start-up done (the first reconciliation included), nothing to route.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stats = router.proc.stats().unwrap_or_default();
        out.rest_rss_kib.push(stats.rss_kib);
        router.proc.stop(Duration::from_secs(10)).await;
        let c = Ceiling::connect(&f.sf_url, &f.cic_urls[0]).await?;
        out.ceiling_connect_ms
            .push(c.connect_time.as_secs_f64() * 1000.0);
        drop(c);
        f.stop().await;
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------ B1

/// One backlog drain.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    pub rows: usize,
    /// From the router's spawn (the ceiling's connect) to the last row final.
    pub secs: f64,
    /// The router process only.
    pub stats: Option<ProcStats>,
    pub api: BTreeMap<String, u64>,
    pub cic: Value,
    pub problems: Vec<String>,
    pub metrics: String,
    /// Rows final when the drain's deadline passed (`None`: all of them, in time).
    pub unfinished: Option<u64>,
}

impl Drain {
    /// Rows per second; for an unfinished drain, the rows it finished in its time.
    pub fn rows_per_sec(&self) -> f64 {
        self.unfinished.unwrap_or(self.rows as u64) as f64 / self.secs.max(f64::EPSILON)
    }
}

async fn drain(run: &Run, side: Side, rows: usize) -> anyhow::Result<Drain> {
    let f = run.fakes(&format!("b1-{rows}-{}", side.name())).await?;
    let made = f.sf_ctl.cases(rows, QUEUE).await?;
    if made != rows {
        bail!("the fake made {made} cases, not {rows}");
    }
    let before = f.sf_ctl.counters().await?;
    // Long enough for 300 rows/s: a slower drain is reported unfinished, with the rows it did.
    let deadline = Duration::from_secs(60) + Duration::from_secs_f64(rows as f64 / 300.0);
    let started = Instant::now();
    let mut out = Drain {
        rows,
        ..Drain::default()
    };
    match side {
        Side::Router => {
            let router = run.router(&f).await?;
            let waited = f.wait_done(rows as u64, deadline).await;
            out.secs = started.elapsed().as_secs_f64();
            out.stats = router.proc.stats();
            out.metrics = metrics(&run.http, &router).await;
            router.proc.stop(Duration::from_secs(10)).await;
            if let Err(e) = waited {
                // Too slow is a figure, not a failure: report what it did; check no duplicates.
                let c = f.sf_ctl.row_counts().await?;
                note(&format!("B1 {rows}: the router did not finish: {e:#}"));
                out.unfinished = Some(c.done());
                let after = f.sf_ctl.counters().await?;
                out.api = api_delta(&before, &after);
                out.cic = f.cic_ctl.counters().await?;
                let dup = out.cic["duplicates_suppressed"].as_u64().unwrap_or(0);
                if dup > 0 {
                    out.problems.push(format!(
                        "router: CIC suppressed {dup} duplicate RouteCase notifications"
                    ));
                }
                f.stop().await;
                return Ok(out);
            }
        }
        Side::Ceiling => {
            let c = std::sync::Arc::new(Ceiling::connect(&f.sf_url, &f.cic_urls[0]).await?);
            let written = c.drain().await?;
            f.wait_done(rows as u64, deadline).await?;
            out.secs = started.elapsed().as_secs_f64();
            if written != rows {
                out.problems
                    .push(format!("ceiling: wrote {written} rows, expected {rows}"));
            }
        }
    }
    let after = f.sf_ctl.counters().await?;
    out.api = api_delta(&before, &after);
    out.cic = f.cic_ctl.counters().await?;
    out.problems
        .extend(f.exactly_once(rows as u64, side.name()).await?);
    f.stop().await;
    Ok(out)
}

// ------------------------------------------------------------------------------------ B2

/// B2's load: `per_sec` new cases a second for `secs`, with latency added by the fakes.
#[derive(Clone, Debug)]
pub struct Steady {
    pub per_sec: u32,
    pub secs: u32,
    pub sf_ms: u64,
    pub cic_ms: u64,
}

/// Time to route under a steady load.
#[derive(Clone, Debug, Default)]
pub struct SteadyResult {
    pub rows: usize,
    /// Milliseconds, sorted.
    pub ttr_ms: Vec<i64>,
    pub stats: Option<ProcStats>,
    pub api: BTreeMap<String, u64>,
    pub problems: Vec<String>,
    pub metrics: String,
}

impl SteadyResult {
    /// Nearest-rank percentile.
    pub fn pct(&self, q: f64) -> i64 {
        percentile(&self.ttr_ms, q)
    }
}

/// Nearest rank of sorted `v` (0 when empty).
pub fn percentile(v: &[i64], q: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len()) - 1).copied().unwrap_or(0)
}

async fn steady(run: &Run, side: Side, load: &Steady) -> anyhow::Result<SteadyResult> {
    let f = run
        .fakes(&format!("b2-{}ms-{}", load.sf_ms, side.name()))
        .await?;
    f.sf_ctl.latency(load.sf_ms).await?;
    f.cic_ctl.latency(load.cic_ms).await?;
    let mut router = None;
    let mut follower = None;
    match side {
        Side::Router => router = Some(run.router(&f).await?),
        Side::Ceiling => {
            let c = std::sync::Arc::new(Ceiling::connect(&f.sf_url, &f.cic_urls[0]).await?);
            follower = Some(c.follow().await?);
        }
    }
    // Start-up settles (the router's first reconciliation) before the load begins.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = f.sf_ctl.counters().await?;
    let n = (load.per_sec * load.secs) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(load.per_sec)));
    for _ in 0..n {
        tick.tick().await;
        f.sf_ctl.cases(1, QUEUE).await?;
    }
    let waited = f.wait_done(n as u64, Duration::from_secs(60)).await;
    let mut out = SteadyResult {
        rows: n,
        ..SteadyResult::default()
    };
    if let Some(r) = router {
        out.stats = r.proc.stats();
        out.metrics = metrics(&run.http, &r).await;
        r.proc.stop(Duration::from_secs(10)).await;
    }
    if let Some(fl) = follower {
        let written = fl.stop().await?;
        if written != n {
            out.problems
                .push(format!("ceiling: wrote {written} rows, expected {n}"));
        }
    }
    waited?;
    let after = f.sf_ctl.counters().await?;
    out.api = api_delta(&before, &after);
    out.ttr_ms = f.times_to_route().await?;
    out.ttr_ms.sort_unstable();
    out.problems
        .extend(f.exactly_once(n as u64, side.name()).await?);
    f.stop().await;
    Ok(out)
}

// ------------------------------------------------------------------------------------ B3

/// Salesforce API calls while routing a burst and a trickle.
#[derive(Clone, Debug, Default)]
pub struct Economy {
    pub burst: usize,
    pub trickle: usize,
    pub burst_api: BTreeMap<String, u64>,
    pub trickle_api: BTreeMap<String, u64>,
    pub problems: Vec<String>,
}

pub fn total(api: &BTreeMap<String, u64>) -> u64 {
    api.values().sum()
}

async fn economy(run: &Run, side: Side, burst: usize, trickle: usize) -> anyhow::Result<Economy> {
    let f = run.fakes(&format!("b3-{}", side.name())).await?;
    let mut router = None;
    let mut follower = None;
    match side {
        Side::Router => router = Some(run.router(&f).await?),
        Side::Ceiling => {
            let c = std::sync::Arc::new(Ceiling::connect(&f.sf_url, &f.cic_urls[0]).await?);
            follower = Some(c.follow().await?);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settle = Duration::from_millis(300);
    let mut out = Economy {
        burst,
        trickle,
        ..Economy::default()
    };
    let result = async {
        let c0 = f.sf_ctl.counters().await?;
        f.sf_ctl.cases(burst, QUEUE).await?;
        f.wait_done(burst as u64, Duration::from_secs(120)).await?;
        tokio::time::sleep(settle).await;
        let c1 = f.sf_ctl.counters().await?;
        for i in 1..=trickle {
            f.sf_ctl.cases(1, QUEUE).await?;
            f.wait_done((burst + i) as u64, Duration::from_secs(30))
                .await?;
            tokio::time::sleep(settle).await;
        }
        let c2 = f.sf_ctl.counters().await?;
        Ok::<_, anyhow::Error>((api_delta(&c0, &c1), api_delta(&c1, &c2)))
    }
    .await;
    if let Some(r) = router {
        r.proc.stop(Duration::from_secs(10)).await;
    }
    if let Some(fl) = follower {
        fl.stop().await?;
    }
    (out.burst_api, out.trickle_api) = result?;
    out.problems.extend(
        f.exactly_once((burst + trickle) as u64, side.name())
            .await?,
    );
    f.stop().await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(
            (
                percentile(&v, 0.5),
                percentile(&v, 0.95),
                percentile(&v, 0.99),
                percentile(&v, 1.0)
            ),
            (50, 95, 99, 100)
        );
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.99), 7);
    }

    #[test]
    fn salesforce_times_parse() {
        let t = sf_time("2024-01-01T10:00:00.250+0000");
        assert_eq!(
            t.map(|t| t.timestamp_millis() % 1000),
            Some(250),
            "milliseconds kept"
        );
    }
}
