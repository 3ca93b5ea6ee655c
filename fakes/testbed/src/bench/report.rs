//! The bench report: one table (each figure with its target, met or missed by how much, the
//! ceiling's figure and the fraction of the ceiling), notes, the exactly-once result; and the
//! same as JSON with the raw measurements.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::{BenchOptions, Drain, Economy, Startup, Steady, SteadyResult, total};

/// Whether a figure meets its target.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// No target.
    Info,
    Met,
    /// Missed by this much.
    Missed(String),
    /// The figure could not be measured.
    Error,
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Line {
    pub figure: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
    pub ceiling: String,
    /// How close to the ceiling, 1.0 = as good as the ceiling: router ÷ ceiling for a rate,
    /// ceiling ÷ router for a cost (time, calls).
    pub fraction: Option<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub machine: Value,
    pub options: Value,
    pub lines: Vec<Line>,
    pub notes: Vec<String>,
    /// What the exactly-once check (or a failed scenario) found; empty: all good.
    pub violations: Vec<String>,
    /// Rows routed and checked, over every scenario (router and ceiling).
    pub rows_checked: u64,
    pub raw: BTreeMap<String, Value>,
    pub json_path: Option<PathBuf>,
    /// The run's directory (logs, tenant directories), kept when something went wrong.
    pub kept_dir: Option<PathBuf>,
    b1_first: Option<(usize, f64)>,
}

const MIB: f64 = 1024.0;

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / MIB)
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `value ≤ target`, else missed by the difference (and by how many per cent).
fn at_most(value: f64, target: f64, unit: &str) -> Verdict {
    if value <= target {
        Verdict::Met
    } else {
        Verdict::Missed(format!(
            "{} {unit} (+{:.0}%)",
            trim(value - target),
            (value / target.max(f64::EPSILON) - 1.0) * 100.0
        ))
    }
}

/// `value ≥ target`, else missed by the difference.
fn at_least(value: f64, target: f64, unit: &str) -> Verdict {
    if value >= target {
        Verdict::Met
    } else {
        Verdict::Missed(format!(
            "{} {unit} (−{:.0}%)",
            trim(target - value),
            (1.0 - value / target.max(f64::EPSILON)) * 100.0
        ))
    }
}

/// A number with as many decimals as it needs to be read.
fn trim(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn kinds(api: &BTreeMap<String, u64>) -> String {
    if api.is_empty() {
        return "none".into();
    }
    api.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// This machine, for the report's header.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_total_mib": mem_kib / 1024,
        "kernel": kernel.trim(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

fn drain_json(d: &anyhow::Result<Drain>) -> Value {
    match d {
        Ok(d) => json!({
            "rows": d.rows, "secs": d.secs, "rows_per_sec": d.rows_per_sec(),
            "peak_rss_kib": d.stats.map(|s| s.hwm_kib), "rss_kib_at_end": d.stats.map(|s| s.rss_kib),
            "cpu_secs": d.stats.map(|s| s.cpu_secs), "salesforce_api_calls": d.api, "cic_counters": d.cic,
            "problems": d.problems, "router_metrics": d.metrics, "unfinished_rows_done": d.unfinished,
        }),
        Err(e) => json!({"error": format!("{e:#}")}),
    }
}

fn steady_json(s: &anyhow::Result<SteadyResult>) -> Value {
    match s {
        Ok(s) => json!({
            "rows": s.rows, "p50_ms": s.pct(0.5), "p95_ms": s.pct(0.95), "p99_ms": s.pct(0.99),
            "max_ms": s.ttr_ms.last(), "salesforce_api_calls": s.api,
            "peak_rss_kib": s.stats.map(|s| s.hwm_kib), "cpu_secs": s.stats.map(|s| s.cpu_secs),
            "problems": s.problems, "router_metrics": s.metrics,
        }),
        Err(e) => json!({"error": format!("{e:#}")}),
    }
}

fn economy_json(e: &anyhow::Result<Economy>) -> Value {
    match e {
        Ok(e) => json!({
            "burst": e.burst, "burst_api_calls": e.burst_api,
            "trickle": e.trickle, "trickle_api_calls": e.trickle_api, "problems": e.problems,
        }),
        Err(err) => json!({"error": format!("{err:#}")}),
    }
}

impl Report {
    pub fn new(opts: &BenchOptions, sizes: &[usize]) -> Report {
        Report {
            machine: machine(),
            options: json!({"rows": sizes, "quick": opts.quick, "only": opts.only}),
            ..Report::default()
        }
    }

    fn line(
        &mut self,
        figure: String,
        value: String,
        target: &str,
        verdict: Verdict,
        ceiling: String,
        fraction: Option<f64>,
    ) {
        self.lines.push(Line {
            figure,
            value,
            target: target.to_owned(),
            verdict,
            ceiling,
            fraction,
        });
    }

    /// A scenario that could not run: a line saying so, and a violation (the run fails).
    pub fn error(&mut self, figure: &str, e: &anyhow::Error) {
        self.line(
            figure.to_owned(),
            "error".into(),
            "",
            Verdict::Error,
            String::new(),
            None,
        );
        self.violations.push(format!("{figure}: {e:#}"));
    }

    fn problems(&mut self, problems: &[String], rows: u64) {
        if problems.is_empty() {
            self.rows_checked += rows;
        }
        self.violations.extend(problems.iter().cloned());
    }

    pub fn startup(&mut self, s: &Startup, b4: bool, b5: bool) {
        self.raw.insert(
            "B4_B5".into(),
            json!({"ready_ms": s.ready_ms, "rest_rss_kib": s.rest_rss_kib,
                   "ceiling_connect_ms": s.ceiling_connect_ms}),
        );
        let n = s.ready_ms.len();
        if b5 {
            let r = median(&s.ready_ms);
            let c = median(&s.ceiling_connect_ms);
            self.line(
                format!("B5 start-up to /readyz 200 (median of {n})"),
                format!("{r:.0} ms"),
                "≤ 300 ms",
                at_most(r, 300.0, "ms"),
                format!("{c:.0} ms"),
                Some(c / r.max(f64::EPSILON)),
            );
        }
        if b4 {
            let rss: Vec<f64> = s.rest_rss_kib.iter().map(|k| *k as f64).collect();
            let m = median(&rss);
            self.line(
                format!("B4 RSS at rest after start-up (median of {n})"),
                mib(m as u64),
                "≤ 12 MiB",
                at_most(m / MIB, 12.0, "MiB"),
                "–".into(),
                None,
            );
        }
    }

    pub fn economy(
        &mut self,
        burst: usize,
        trickle: usize,
        router: anyhow::Result<Economy>,
        ceiling: anyhow::Result<Economy>,
    ) {
        self.raw.insert(
            "B3".into(),
            json!({"router": economy_json(&router), "ceiling": economy_json(&ceiling)}),
        );
        let rows = (burst + trickle) as u64;
        let (r, c) = match (router, ceiling) {
            (Ok(r), Ok(c)) => (r, c),
            (r, c) => {
                for (side, res) in [("router", r), ("ceiling", c)] {
                    if let Err(e) = res {
                        self.error(&format!("B3 ({side})"), &e);
                    }
                }
                return;
            }
        };
        self.problems(&r.problems, rows);
        self.problems(&c.problems, rows);
        let per = |api: &BTreeMap<String, u64>, n: usize| total(api) as f64 / n.max(1) as f64;
        for (label, target, limit, rv, cv, rk, ck) in [
            (
                format!("B3 burst of {}: SF API calls per row", thousands(burst)),
                "≤ 0.05",
                0.05,
                per(&r.burst_api, burst),
                per(&c.burst_api, burst),
                &r.burst_api,
                &c.burst_api,
            ),
            (
                format!("B3 trickle of {trickle}, one at a time: calls/row"),
                "≤ 2",
                2.0,
                per(&r.trickle_api, trickle),
                per(&c.trickle_api, trickle),
                &r.trickle_api,
                &c.trickle_api,
            ),
        ] {
            self.notes.push(format!(
                "{label}: router {}; ceiling {}",
                kinds(rk),
                kinds(ck)
            ));
            self.line(
                label,
                format!("{rv:.3}"),
                target,
                at_most(rv, limit, "calls/row"),
                format!("{cv:.3}"),
                Some(cv / rv.max(f64::EPSILON)),
            );
        }
    }

    pub fn steady(
        &mut self,
        load: &Steady,
        router: anyhow::Result<SteadyResult>,
        ceiling: anyhow::Result<SteadyResult>,
    ) {
        let key = format!("B2_sf{}ms_cic{}ms", load.sf_ms, load.cic_ms);
        self.raw.insert(
            key,
            json!({"per_sec": load.per_sec, "secs": load.secs, "salesforce_latency_ms": load.sf_ms,
                   "icws_latency_ms": load.cic_ms,
                   "router": steady_json(&router), "ceiling": steady_json(&ceiling)}),
        );
        let what = if load.sf_ms == 0 && load.cic_ms == 0 {
            "no added latency".to_owned()
        } else {
            format!("+{} ms SF, +{} ms ICWS", load.sf_ms, load.cic_ms)
        };
        let (r, c) = match (router, ceiling) {
            (Ok(r), Ok(c)) => (r, c),
            (r, c) => {
                for (side, res) in [("router", r), ("ceiling", c)] {
                    if let Err(e) = res {
                        self.error(&format!("B2 {what} ({side})"), &e);
                    }
                }
                return;
            }
        };
        self.problems(&r.problems, r.rows as u64);
        self.problems(&c.problems, c.rows as u64);
        let p99_target = if load.sf_ms == 0 { 20 } else { 4 * load.sf_ms };
        for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)] {
            let (rv, cv) = (r.pct(q), c.pct(q));
            let (target, verdict) = if name == "p99" {
                (
                    format!("≤ {p99_target} ms"),
                    at_most(rv as f64, p99_target as f64, "ms"),
                )
            } else {
                ("".into(), Verdict::Info)
            };
            self.line(
                format!(
                    "B2 {what}: time to route {name} ({}/s for {} s)",
                    load.per_sec, load.secs
                ),
                format!("{rv} ms"),
                &target,
                verdict,
                format!("{cv} ms"),
                Some(if rv <= 0 {
                    1.0
                } else {
                    cv.max(0) as f64 / rv as f64
                }),
            );
        }
        self.notes.push(format!(
            "B2 {what}: Salesforce calls router {} ({:.3}/row); ceiling {} ({:.3}/row)",
            kinds(&r.api),
            total(&r.api) as f64 / r.rows.max(1) as f64,
            kinds(&c.api),
            total(&c.api) as f64 / c.rows.max(1) as f64,
        ));
    }

    pub fn drain(
        &mut self,
        rows: usize,
        router: anyhow::Result<Drain>,
        ceiling: anyhow::Result<Drain>,
    ) {
        self.raw.insert(
            format!("B1_{rows}"),
            json!({"router": drain_json(&router), "ceiling": drain_json(&ceiling)}),
        );
        let n = thousands(rows);
        let (r, c) = match (router, ceiling) {
            (Ok(r), Ok(c)) => (r, c),
            (r, c) => {
                for (side, res) in [("router", r), ("ceiling", c)] {
                    if let Err(e) = res {
                        self.error(&format!("B1 {n} rows ({side})"), &e);
                    }
                }
                return;
            }
        };
        self.problems(&r.problems, r.unfinished.unwrap_or(rows as u64));
        self.problems(&c.problems, rows as u64);
        if let Some(done) = r.unfinished {
            self.notes.push(format!(
                "B1 {n} rows: the router did not finish: {} of {n} rows final after {:.0} s (the drain's deadline, 60 s + 1 s per 300 rows); its figures are for that part",
                thousands(done as usize),
                r.secs
            ));
        }
        self.line(
            format!(
                "B1 {n} rows: time to drain{}",
                if r.unfinished.is_some() {
                    " (unfinished)"
                } else {
                    ""
                }
            ),
            format!("{:.2} s", r.secs),
            "",
            Verdict::Info,
            format!("{:.2} s", c.secs),
            Some(c.secs / r.secs.max(f64::EPSILON)),
        );
        let (rps, cps) = (r.rows_per_sec(), c.rows_per_sec());
        let fraction = rps / cps.max(f64::EPSILON);
        let (target, verdict) = match self.b1_first {
            None => {
                self.b1_first = Some((rows, rps));
                (
                    "≥ 0.5 of ceiling".to_owned(),
                    at_least(fraction, 0.5, "of ceiling"),
                )
            }
            Some((first, first_rps)) => (
                format!("≥ {first_rps:.0} (as at {})", thousands(first)),
                at_least(rps, first_rps, "rows/s"),
            ),
        };
        self.line(
            format!("B1 {n} rows: rows per second"),
            format!("{rps:.0}"),
            &target,
            verdict,
            format!("{cps:.0}"),
            Some(fraction),
        );
        if let Some(s) = r.stats {
            let (target, verdict) = if rows == 10_000 {
                ("≤ 40 MiB", at_most(s.hwm_kib as f64 / MIB, 40.0, "MiB"))
            } else {
                ("", Verdict::Info)
            };
            self.line(
                format!("B1 {n} rows: router peak RSS (B4)"),
                mib(s.hwm_kib),
                target,
                verdict,
                "–".into(),
                None,
            );
            self.line(
                format!("B1 {n} rows: router CPU s per 1,000 rows"),
                format!(
                    "{:.3}",
                    s.cpu_secs * 1000.0 / r.unfinished.unwrap_or(rows as u64).max(1) as f64
                ),
                "",
                Verdict::Info,
                "–".into(),
                None,
            );
        }
        let per = |api: &BTreeMap<String, u64>, n: u64| total(api) as f64 / n.max(1) as f64;
        let (rp, cp) = (
            per(&r.api, r.unfinished.unwrap_or(rows as u64)),
            per(&c.api, rows as u64),
        );
        self.line(
            format!("B1 {n} rows: SF API calls per row"),
            format!("{rp:.3}"),
            "",
            Verdict::Info,
            format!("{cp:.3}"),
            Some(cp / rp.max(f64::EPSILON)),
        );
        self.notes.push(format!(
            "B1 {n} rows: Salesforce calls router {}; ceiling {}; CIC router {}",
            kinds(&r.api),
            kinds(&c.api),
            cic_summary(&r.cic)
        ));
    }

    pub fn to_json(&self) -> Value {
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                let (verdict, missed_by) = match &l.verdict {
                    Verdict::Info => ("", None),
                    Verdict::Met => ("met", None),
                    Verdict::Missed(by) => ("missed", Some(by.clone())),
                    Verdict::Error => ("error", None),
                };
                json!({"figure": l.figure, "router": l.value, "target": l.target,
                       "verdict": verdict, "missed_by": missed_by, "ceiling": l.ceiling,
                       "of_ceiling": l.fraction})
            })
            .collect();
        json!({
            "machine": self.machine,
            "options": self.options,
            "lines": lines,
            "notes": self.notes,
            "exactly_once": {"ok": self.violations.is_empty(), "rows_checked": self.rows_checked,
                             "violations": self.violations},
            "scenarios": self.raw,
        })
    }
}

fn cic_summary(cic: &Value) -> String {
    [
        "handler_notifications",
        "interactions_created",
        "duplicates_suppressed",
    ]
    .iter()
    .map(|k| format!("{k} {}", cic[*k].as_u64().unwrap_or(0)))
    .collect::<Vec<_>>()
    .join(", ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        writeln!(
            f,
            "sors bench ({} build): {} CPUs ({}), {} MiB, Linux {}",
            m["build"].as_str().unwrap_or(""),
            m["cpus"],
            m["cpu_model"].as_str().unwrap_or(""),
            m["mem_total_mib"],
            m["kernel"].as_str().unwrap_or(""),
        )?;
        writeln!(
            f,
            "router: `sors serve` as a process; fakes: `sors-fakes` processes; ceiling: the simplest client, no routing logic"
        )?;
        writeln!(f)?;
        let verdict = |v: &Verdict| match v {
            Verdict::Info => String::new(),
            Verdict::Met => "met".into(),
            Verdict::Missed(by) => format!("missed by {by}"),
            Verdict::Error => "ERROR".into(),
        };
        let rows: Vec<[String; 6]> = self
            .lines
            .iter()
            .map(|l| {
                [
                    l.figure.clone(),
                    l.value.clone(),
                    l.target.clone(),
                    verdict(&l.verdict),
                    l.ceiling.clone(),
                    l.fraction.map(|x| format!("{x:.2}")).unwrap_or_default(),
                ]
            })
            .collect();
        let head = [
            "figure",
            "router",
            "target",
            "result",
            "ceiling",
            "of ceiling",
        ]
        .map(str::to_owned);
        let mut width = [0usize; 6];
        for r in std::iter::once(&head).chain(rows.iter()) {
            for (w, c) in width.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let pad = |s: &str, w: usize, right: bool| {
            let n = w.saturating_sub(s.chars().count());
            if right {
                format!("{}{s}", " ".repeat(n))
            } else {
                format!("{s}{}", " ".repeat(n))
            }
        };
        let render = |r: &[String; 6]| -> String {
            let cells: Vec<String> = r
                .iter()
                .zip(width.iter())
                .enumerate()
                .map(|(i, (c, w))| pad(c, *w, matches!(i, 1 | 4 | 5)))
                .collect();
            format!("| {} |", cells.join(" | "))
        };
        writeln!(f, "{}", render(&head))?;
        let rule: Vec<String> = width
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if matches!(i, 1 | 4 | 5) {
                    format!("{}:", "-".repeat(w + 1))
                } else {
                    "-".repeat(w + 2)
                }
            })
            .collect();
        writeln!(f, "|{}|", rule.join("|"))?;
        for r in &rows {
            writeln!(f, "{}", render(r))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "of ceiling: 1.00 = as good as the ceiling client (router ÷ ceiling for rows/s, ceiling ÷ router for times and calls)"
        )?;
        for n in &self.notes {
            writeln!(f, "- {n}")?;
        }
        writeln!(f)?;
        if self.violations.is_empty() {
            writeln!(
                f,
                "exactly once: OK, {} rows over every scenario, each Processed once with an interaction of its own",
                thousands(self.rows_checked as usize)
            )?;
        } else {
            writeln!(f, "exactly once: FAILED")?;
            for v in &self.violations {
                writeln!(f, "  - {v}")?;
            }
        }
        if let Some(p) = &self.json_path {
            writeln!(f, "JSON report: {}", p.display())?;
        }
        if let Some(d) = &self.kept_dir {
            writeln!(f, "logs and tenant directories kept in {}", d.display())?;
        }
        Ok(())
    }
}
