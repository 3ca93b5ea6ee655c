//! `sors bench`: routes a burst of cases through the fakes and prints what it cost: time to
//! route (from the row's creation to its `Processed_At__c`), throughput, Salesforce API calls per
//! routed row by kind, ICWS handler notifications, and the process's peak memory.
//!
//! Speed is measured here, never asserted in tests.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{Bed, BedOptions};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Cases created, one routing row each.
    pub rows: usize,
    /// Router batch window (production default 50 ms).
    pub batch_window: Duration,
    /// Router concurrency (`max_in_flight`).
    pub max_in_flight: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            rows: 1000,
            batch_window: Duration::from_millis(50),
            max_in_flight: 32,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub rows: usize,
    pub max_in_flight: usize,
    pub batch_window: Duration,
    /// From the first case created to the last row processed.
    pub elapsed: Duration,
    pub time_to_route_ms: Percentiles,
    /// Salesforce REST calls made by the router during the burst, by kind.
    pub api_calls: Vec<(String, u64)>,
    pub handler_notifications: u64,
    pub interactions_created: u64,
    /// Peak resident memory of this process (router and fakes together), from /proc.
    pub peak_rss_kib: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Percentiles {
    pub p50: i64,
    pub p90: i64,
    pub p99: i64,
    pub max: i64,
}

impl Percentiles {
    fn of(mut v: Vec<i64>) -> Percentiles {
        v.sort_unstable();
        let at = |q: f64| -> i64 {
            if v.is_empty() {
                return 0;
            }
            let i = ((v.len() as f64 - 1.0) * q).round() as usize;
            v.get(i).copied().unwrap_or(0)
        };
        Percentiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: v.last().copied().unwrap_or(0),
        }
    }
}

pub async fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    let mut bed_opts = BedOptions::default();
    bed_opts.router.batch_window = opts.batch_window;
    bed_opts.router.settings.max_in_flight = opts.max_in_flight;
    bed_opts.router.settings.route_timeout = chrono::TimeDelta::seconds(30);
    // The sweep would only add scans: keep it out of the measurement.
    bed_opts.router.sweep_interval = Duration::from_secs(3600);
    let bed = Bed::start(bed_opts).await?;
    let before = bed.sf.counters().api;
    let queues = [
        bed.queue("Support EN")?,
        bed.queue("Support FR")?,
        bed.queue("Billing")?,
    ];
    let actor = bed.sf.act_as("router@sors.demo")?;
    let started = Instant::now();
    for i in 0..opts.rows {
        let owner = &queues[i % queues.len()];
        actor
            .create(
                "Case",
                json!({"Subject": format!("Bench {i}"), "OwnerId": owner, "Status": "New",
                       "SuppliedEmail": "bench@example.com", "SuppliedName": "Bench"}),
            )
            .context("creating a case")?;
    }
    let timeout = Duration::from_secs(60 + opts.rows as u64 / 10);
    bed.wait_for("every row to be processed", timeout, |b| {
        let rows = b.rows();
        rows.len() == opts.rows && rows.iter().all(|r| r["Status__c"] == "Processed")
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let elapsed = started.elapsed();
    let after = bed.sf.counters().api;

    let rows = bed
        .sf
        .query("SELECT CreatedDate, Processed_At__c FROM Object_Routing_Queue__c")?;
    let ttr: Vec<i64> = rows
        .iter()
        .filter_map(|r| {
            let c = r["CreatedDate"].as_str()?.parse::<DateTime<Utc>>().ok()?;
            let p = r["Processed_At__c"]
                .as_str()?
                .parse::<DateTime<Utc>>()
                .ok()?;
            Some((p - c).num_milliseconds())
        })
        .collect();
    let api_calls = [
        ("login", after.login - before.login),
        ("query", after.query - before.query),
        ("query_more", after.query_more - before.query_more),
        ("create", after.create - before.create),
        ("update", after.update - before.update),
        ("composite", after.composite - before.composite),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let cic = bed.cic.counters();
    let report = BenchReport {
        rows: opts.rows,
        max_in_flight: opts.max_in_flight,
        batch_window: opts.batch_window,
        elapsed,
        time_to_route_ms: Percentiles::of(ttr),
        api_calls,
        handler_notifications: cic.handler_notifications,
        interactions_created: cic.interactions_created,
        peak_rss_kib: peak_rss_kib(),
    };
    bed.shutdown().await;
    Ok(report)
}

/// `VmHWM` of /proc/self/status (Linux); `None` elsewhere.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self.api_calls.iter().map(|(_, n)| n).sum();
        let secs = self.elapsed.as_secs_f64().max(f64::EPSILON);
        writeln!(
            f,
            "sors bench: {} rows, max_in_flight {}, batch window {:?}",
            self.rows, self.max_in_flight, self.batch_window
        )?;
        writeln!(
            f,
            "  elapsed              {:.2} s ({:.0} rows/s)",
            secs,
            self.rows as f64 / secs
        )?;
        let t = &self.time_to_route_ms;
        writeln!(
            f,
            "  time to route (ms)   p50 {}  p90 {}  p99 {}  max {}",
            t.p50, t.p90, t.p99, t.max
        )?;
        writeln!(
            f,
            "  Salesforce API calls {total} ({:.3} per routed row)",
            total as f64 / self.rows.max(1) as f64
        )?;
        for (kind, n) in &self.api_calls {
            if *n > 0 {
                writeln!(f, "    {kind:<18} {n}")?;
            }
        }
        writeln!(
            f,
            "  CIC handler notifications {} for {} interactions created",
            self.handler_notifications, self.interactions_created
        )?;
        match self.peak_rss_kib {
            Some(k) => writeln!(
                f,
                "  peak memory          {:.1} MiB (router and both fakes, one process)",
                k as f64 / 1024.0
            ),
            None => writeln!(f, "  peak memory          unknown on this platform"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let p = Percentiles::of((1..=100).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.max), (51, 90, 99, 100));
        let empty = Percentiles::of(vec![]);
        assert_eq!(empty.max, 0);
    }
}
