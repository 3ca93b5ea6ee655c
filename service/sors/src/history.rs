//! The service's recent history, kept in memory and served at `GET /history` for the dashboard's
//! state timeline, rows-per-minute chart and incident timeline.
//!
//! A pure recorder: no I/O and no clock. Every method takes `now`, so the runtime stamps events
//! with the same clock it uses for everything else and tests can walk time freely. Nothing is
//! written to disk: the history starts empty when the process starts (`started_at`) and is lost
//! when it stops, which the dashboard says.
//!
//! # What is kept
//!
//! - **Minutes**: a ring of [`MINUTES`] (24 h) one-minute buckets, each with the rows routed and
//!   failed in that minute, the backlog (rows waiting, the heartbeat's `routing.router.waiting_rows`:
//!   the last value reported in that minute, `null` if none was; the runtime reports it every tick) and the time-to-route p50 and p95 of the rows routed
//!   in it. A minute in which nothing was recorded reads as 0 routed, 0 failed, backlog and
//!   percentiles `null`. Minutes are whole UTC minutes (`floor(unix seconds / 60)`).
//! - **Transitions**: up to [`MAX_TRANSITIONS`] status changes `{at, status, reason, message}`,
//!   oldest dropped first (counted in `transitions_dropped`). Only changes are kept: a report with
//!   the same status and reason as the newest entry is not a new entry (with no reason on either,
//!   the message stands for the reason).
//! - **Incidents**: up to [`MAX_INCIDENTS`] `{at, last_at, count, kind, message}`, oldest dropped
//!   first (`incidents_dropped`). An incident of the same kind as the newest one, less than
//!   [`FOLD_SECONDS`] after that one began, is folded into it (`count` + 1, `last_at` moved,
//!   the first message kept), so that a burst of failed rows cannot push last night's switchover
//!   out of the list. What the service learns later about the same event (the reconciliation
//!   after a switchover) is added to that incident's message ([`History::amend`]), so one
//!   switchover counts once.
//! - Messages longer than [`MAX_MESSAGE`] bytes are cut at a character boundary and end in `…`.
//!
//! Time never goes backwards here: an event stamped before the newest minute already seen (the
//! wall clock was stepped back) counts in that newest minute.
//!
//! # Percentiles
//!
//! Only the open (current) minute keeps individual times, in a log-linear histogram of
//! [`BINS`] `u32` counters: exact below 32 ms, then 16 bins per power of two up to `u32::MAX` ms.
//! When the minute closes its p50 and p95 are computed and stored; the histogram is reused for
//! the next minute. A percentile is the nearest-rank one (the value at rank `ceil(p/100 × n)` of
//! the sorted times), reported as the middle of its bin and clamped to the minute's exact minimum
//! and maximum, so its relative error is at most 1/32 (3.2 %). It is exact when it falls on the
//! smallest or the largest time (so p95 is exact in a minute of fewer than 20 rows), when all the
//! times of the minute are equal, and below 32 ms. Negative times (a row stamped in the future by
//! a skewed clock) count as 0.
//!
//! # Memory
//!
//! Fixed, allocated once at start:
//! - minutes: 1440 × 40 bytes ([`Minute`]: minute number 8, routed 4, failed 4, backlog, p50 and
//!   p95 8 each as `Option<u32>`) = 57,600 bytes;
//! - the open minute's histogram: 464 × 4 = 1,856 bytes;
//! - transitions: 500 × (64 bytes inline + at most 300 bytes of message + at most 300 of
//!   reason) ≤ 332,000 bytes in the worst case, about 70 bytes each in practice (reasons are
//!   short kinds, messages a sentence);
//! - incidents: 500 × (64 bytes inline + at most 300 bytes of message) ≤ 182,000 bytes in the
//!   worst case.
//!
//! About 100 KB in practice, under 600 KB at worst. The `sizes_match_the_documented_memory_cost`
//! test checks the inline sizes.
//!
//! # The `/history` document (schema 1)
//!
//! ```json
//! {
//!   "schema": 1,
//!   "now": "2026-12-01T23:04:10Z",
//!   "started_at": "2026-12-01T22:58:03Z",
//!   "limits": { "minutes": 1440, "transitions": 500, "incidents": 500 },
//!   "minutes": {
//!     "start": "2026-12-01T22:58:00Z",
//!     "seconds": 60,
//!     "routed":  [0, 3, 12, 9, 0, 4, 1],
//!     "failed":  [0, 0, 1, 0, 0, 0, 0],
//!     "backlog": [null, 2, 7, 0, 0, 1, 0],
//!     "p50_ms":  [null, 840, 910, 870, null, 800, 795],
//!     "p95_ms":  [null, 1200, 4100, 1300, null, 950, 795]
//!   },
//!   "transitions": [
//!     { "at": "2026-12-01T22:58:03Z", "status": "degraded", "reason": null, "message": "Starting" },
//!     { "at": "2026-12-01T22:58:05Z", "status": "up", "reason": null,
//!       "message": "Successfully connected to CIC Server and Salesforce" }
//!   ],
//!   "transitions_dropped": 0,
//!   "incidents": [
//!     { "at": "2026-12-01T23:01:40Z", "last_at": "2026-12-01T23:01:40Z", "count": 1,
//!       "kind": "switchover", "message": "CIC session re-established on cic2" }
//!   ],
//!   "incidents_dropped": 0
//! }
//! ```
//!
//! - `minutes`: parallel arrays, one element per minute from `start` (the minute of `started_at`,
//!   or 1439 minutes before `now`'s minute if the process is older) to `now`'s minute inclusive;
//!   element `i` covers `[start + 60 i s, start + 60 (i + 1) s)`. The last one is still filling.
//! - `transitions` and `incidents` are oldest first. `status` is `up`, `degraded` or `down`;
//!   `reason` is the typed degraded reason's kind (`null` when there is none); `kind` is one of
//!   [`IncidentKind`] in snake case. Transitions older than 24 h are kept (within the bound) so
//!   the state at the start of the window is known; if `transitions_dropped > 0` the state before
//!   the first entry is unknown.

use std::collections::VecDeque;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

/// Minutes kept: 24 h.
pub const MINUTES: usize = 1440;
/// Status transitions kept.
pub const MAX_TRANSITIONS: usize = 500;
/// Incidents kept.
pub const MAX_INCIDENTS: usize = 500;
/// An incident of the same kind as the newest, within this many seconds of its start, folds into it.
pub const FOLD_SECONDS: i64 = 60;
/// Longest message (or reason) kept, in bytes.
pub const MAX_MESSAGE: usize = 300;
/// Bins of the time-to-route histogram.
pub const BINS: usize = 16 + 28 * 16;
/// The version of the `/history` document.
pub const SCHEMA: u32 = 1;

/// The service's status, as the heartbeat's `status` and the dashboard's colours: the one
/// readiness type of `status`.
pub use crate::status::Readiness as State;

/// What happened, for the incident timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A CIC switchover (the session came back on the same or the other server).
    Switchover,
    /// The CIC session was lost.
    CicLost,
    /// Re-logged in to Salesforce.
    Relogin,
    /// The sweep found rows no push announced.
    PushLost,
    /// The PushTopic was missing or different and has been fixed.
    PushTopicRepaired,
    /// The streaming client had to re-subscribe / resync.
    Resync,
    /// Rows ended `Failed`.
    FailedRows,
    /// The configuration in Salesforce or CIC differs from what the service expects.
    ConfigDrift,
    /// The Salesforce API allowance is nearly used.
    ApiLimit,
    /// Reconciliation found Salesforce and CIC apart and mended it.
    Reconciled,
    /// Evidence of another router on the same tenant.
    OtherRouter,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub status: State,
    /// The typed degraded reason's kind, e.g. `push_loss_suspected`.
    pub reason: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Incident {
    pub at: DateTime<Utc>,
    /// When the last incident folded into this one happened (`at` when `count` is 1).
    pub last_at: DateTime<Utc>,
    pub count: u32,
    pub kind: IncidentKind,
    pub message: String,
}

/// One minute's bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Minute {
    /// `floor(unix seconds / 60)`; `i64::MIN` for a slot never used.
    minute: i64,
    routed: u32,
    failed: u32,
    backlog: Option<u32>,
    p50: Option<u32>,
    p95: Option<u32>,
}

impl Minute {
    const EMPTY: Minute = Minute {
        minute: i64::MIN,
        routed: 0,
        failed: 0,
        backlog: None,
        p50: None,
        p95: None,
    };
}

/// Times to route of the open minute: exact below 32 ms, then 16 bins per power of two.
#[derive(Clone, Debug)]
struct Histogram {
    counts: [u32; BINS],
    n: u64,
    min: u32,
    max: u32,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: [0; BINS],
            n: 0,
            min: u32::MAX,
            max: 0,
        }
    }

    fn clear(&mut self) {
        *self = Histogram::new();
    }

    fn bin(v: u32) -> usize {
        if v < 16 {
            return v as usize;
        }
        let e = 31 - v.leading_zeros(); // 4..=31
        let sub = (v >> (e - 4)) & 15;
        16 + (e as usize - 4) * 16 + sub as usize
    }

    /// The smallest value of bin `i` and its width.
    fn range(i: usize) -> (u64, u64) {
        if i < 16 {
            return (i as u64, 1);
        }
        let shift = (i - 16) / 16;
        let sub = ((i - 16) % 16) as u64;
        ((16 + sub) << shift, 1 << shift)
    }

    fn add(&mut self, v: u32) {
        let c = &mut self.counts[Histogram::bin(v)];
        *c = c.saturating_add(1);
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Nearest-rank percentile `p` (0..=100), the middle of its bin clamped to [min, max].
    fn percentile(&self, p: u64) -> Option<u32> {
        if self.n == 0 {
            return None;
        }
        let rank = (p * self.n).div_ceil(100).max(1);
        if rank >= self.n {
            return Some(self.max);
        }
        if rank == 1 {
            return Some(self.min);
        }
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (lo, width) = Histogram::range(i);
                let mid = lo + (width - 1) / 2;
                let v = mid.clamp(u64::from(self.min), u64::from(self.max));
                return Some(v as u32);
            }
        }
        Some(self.max)
    }
}

/// The recorder. One per service, written by the runtime, read by `GET /history`.
#[derive(Clone, Debug)]
pub struct History {
    started_at: DateTime<Utc>,
    ring: Vec<Minute>,
    /// The newest minute seen, whose percentiles are still in `hist`.
    open: Option<i64>,
    hist: Histogram,
    transitions: VecDeque<Transition>,
    transitions_dropped: u64,
    incidents: VecDeque<Incident>,
    incidents_dropped: u64,
}

/// The `/history` document (see the module documentation for its schema).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryView {
    pub schema: u32,
    pub now: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub limits: Limits,
    pub minutes: MinutesView,
    pub transitions: Vec<Transition>,
    pub transitions_dropped: u64,
    pub incidents: Vec<Incident>,
    pub incidents_dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub minutes: usize,
    pub transitions: usize,
    pub incidents: usize,
}

/// Per-minute series, parallel arrays from `start`, one element per minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MinutesView {
    pub start: DateTime<Utc>,
    pub seconds: u32,
    pub routed: Vec<u32>,
    pub failed: Vec<u32>,
    pub backlog: Vec<Option<u32>>,
    pub p50_ms: Vec<Option<u32>>,
    pub p95_ms: Vec<Option<u32>>,
}

fn minute_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

fn minute_start(m: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(m.saturating_mul(60), 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn slot(m: i64) -> usize {
    m.rem_euclid(MINUTES as i64) as usize
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let mut end = MAX_MESSAGE - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl History {
    pub fn new(now: DateTime<Utc>) -> History {
        History {
            started_at: now,
            ring: vec![Minute::EMPTY; MINUTES],
            open: None,
            hist: Histogram::new(),
            transitions: VecDeque::with_capacity(MAX_TRANSITIONS),
            transitions_dropped: 0,
            incidents: VecDeque::with_capacity(MAX_INCIDENTS),
            incidents_dropped: 0,
        }
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// The bucket of `now`'s minute (or of the newest minute, if `now` is older), opening it
    /// (and closing the previous one) if needed.
    fn bucket(&mut self, now: DateTime<Utc>) -> &mut Minute {
        let mut m = minute_of(now);
        if let Some(open) = self.open {
            m = m.max(open);
        }
        if self.open != Some(m) {
            self.close_open();
            self.open = Some(m);
            self.ring[slot(m)] = Minute {
                minute: m,
                ..Minute::EMPTY
            };
        }
        &mut self.ring[slot(m)]
    }

    fn close_open(&mut self) {
        if let Some(open) = self.open {
            let b = &mut self.ring[slot(open)];
            if b.minute == open {
                b.p50 = self.hist.percentile(50);
                b.p95 = self.hist.percentile(95);
            }
        }
        self.hist.clear();
    }

    /// A row routed (an interaction made for it), `time_to_route_ms` after the row was created.
    pub fn routed(&mut self, now: DateTime<Utc>, time_to_route_ms: i64) {
        let b = self.bucket(now);
        b.routed = b.routed.saturating_add(1);
        let ms = time_to_route_ms.clamp(0, i64::from(u32::MAX)) as u32;
        self.hist.add(ms);
    }

    /// `rows` rows ended `Failed`.
    pub fn failed(&mut self, now: DateTime<Utc>, rows: u32) {
        let b = self.bucket(now);
        b.failed = b.failed.saturating_add(rows);
    }

    /// The backlog now: rows waiting their turn (the heartbeat's `routing.router.waiting_rows`).
    /// The last report of a minute is its value.
    pub fn backlog(&mut self, now: DateTime<Utc>, rows: usize) {
        self.bucket(now).backlog = Some(u32::try_from(rows).unwrap_or(u32::MAX));
    }

    /// The status as the heartbeat shows it now. Recorded only when it differs from the newest
    /// transition (status, or reason; with no reason on either side, message). Returns whether it
    /// was recorded.
    pub fn status(
        &mut self,
        now: DateTime<Utc>,
        status: State,
        reason: Option<&str>,
        message: &str,
    ) -> bool {
        let reason = reason.map(bounded);
        let message = bounded(message);
        if let Some(last) = self.transitions.back() {
            let same_reason = match (&last.reason, &reason) {
                (None, None) => last.message == message,
                (a, b) => a == b,
            };
            if last.status == status && same_reason {
                return false;
            }
        }
        if self.transitions.len() == MAX_TRANSITIONS {
            self.transitions.pop_front();
            self.transitions_dropped += 1;
        }
        let at = self.monotonic(now, self.transitions.back().map(|t| t.at));
        self.transitions.push_back(Transition {
            at,
            status,
            reason,
            message,
        });
        true
    }

    /// Something the operator should see in the incident timeline.
    pub fn incident(&mut self, now: DateTime<Utc>, kind: IncidentKind, message: &str) {
        let at = self.monotonic(now, self.incidents.back().map(|i| i.last_at));
        if let Some(last) = self.incidents.back_mut()
            && last.kind == kind
            && (at - last.at).num_seconds() < FOLD_SECONDS
        {
            last.count = last.count.saturating_add(1);
            last.last_at = at;
            return;
        }
        if self.incidents.len() == MAX_INCIDENTS {
            self.incidents.pop_front();
            self.incidents_dropped += 1;
        }
        self.incidents.push_back(Incident {
            at,
            last_at: at,
            count: 1,
            kind,
            message: bounded(message),
        });
    }

    /// More about the newest incident of `kind` (the caller knows it is the same event, e.g. the
    /// reconciliation after a switchover): `message` is appended to its message (`first; more`,
    /// cut to [`MAX_MESSAGE`]) without counting another incident. Returns false, changing
    /// nothing, when there is no incident of `kind`.
    pub fn amend(&mut self, kind: IncidentKind, message: &str) -> bool {
        match self.incidents.iter_mut().rev().find(|i| i.kind == kind) {
            Some(i) => {
                i.message = bounded(&format!("{}; {message}", i.message));
                true
            }
            None => false,
        }
    }

    /// `now`, or the previous entry's time if the clock went back, so that lists stay ordered.
    fn monotonic(&self, now: DateTime<Utc>, previous: Option<DateTime<Utc>>) -> DateTime<Utc> {
        match previous {
            Some(p) if p > now => p,
            _ => now,
        }
    }

    /// The `/history` document at `now`.
    pub fn snapshot(&self, now: DateTime<Utc>) -> HistoryView {
        let mut last = minute_of(now);
        if let Some(open) = self.open {
            last = last.max(open);
        }
        let first = minute_of(self.started_at).max(last - (MINUTES as i64 - 1));
        let len = usize::try_from(last - first + 1).unwrap_or(0);
        let mut v = MinutesView {
            start: minute_start(first),
            seconds: 60,
            routed: Vec::with_capacity(len),
            failed: Vec::with_capacity(len),
            backlog: Vec::with_capacity(len),
            p50_ms: Vec::with_capacity(len),
            p95_ms: Vec::with_capacity(len),
        };
        for m in first..=last {
            let b = self.ring[slot(m)];
            let b = if b.minute == m { b } else { Minute::EMPTY };
            let (p50, p95) = if Some(m) == self.open {
                (self.hist.percentile(50), self.hist.percentile(95))
            } else {
                (b.p50, b.p95)
            };
            v.routed.push(b.routed);
            v.failed.push(b.failed);
            v.backlog.push(b.backlog);
            v.p50_ms.push(p50);
            v.p95_ms.push(p95);
        }
        HistoryView {
            schema: SCHEMA,
            now,
            started_at: self.started_at,
            limits: Limits {
                minutes: MINUTES,
                transitions: MAX_TRANSITIONS,
                incidents: MAX_INCIDENTS,
            },
            minutes: v,
            transitions: self.transitions.iter().cloned().collect(),
            transitions_dropped: self.transitions_dropped,
            incidents: self.incidents.iter().cloned().collect(),
            incidents_dropped: self.incidents_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    /// 2026-12-01T10:00:00Z, a minute boundary.
    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
    }

    fn secs(s: i64) -> DateTime<Utc> {
        t0() + Duration::seconds(s)
    }

    #[test]
    fn events_land_in_their_minute() {
        let mut h = History::new(secs(5));
        h.routed(secs(5), 20);
        h.routed(secs(59), 30);
        h.failed(secs(59), 2);
        h.routed(secs(60), 1000); // the next minute starts at exactly 60 s
        h.backlog(secs(61), 4);
        h.backlog(secs(119), 7); // the last report of the minute counts
        let v = h.snapshot(secs(130)).minutes;
        assert_eq!(v.start, t0());
        assert_eq!(v.seconds, 60);
        assert_eq!(v.routed, vec![2, 1, 0]);
        assert_eq!(v.failed, vec![2, 0, 0]);
        assert_eq!(v.backlog, vec![None, Some(7), None]);
        assert_eq!(v.p50_ms, vec![Some(20), Some(1000), None]);
        assert_eq!(v.p95_ms, vec![Some(30), Some(1000), None]);
    }

    #[test]
    fn the_open_minute_shows_its_percentiles_before_it_closes() {
        let mut h = History::new(t0());
        for ms in [10, 20, 30, 40] {
            h.routed(secs(1), ms);
        }
        let v = h.snapshot(secs(2)).minutes;
        assert_eq!(v.routed, vec![4]);
        assert_eq!(v.p50_ms, vec![Some(20)]);
        assert_eq!(v.p95_ms, vec![Some(40)]);
        // Closing it (by the next minute's event) stores the same values.
        h.routed(secs(61), 5);
        let v = h.snapshot(secs(62)).minutes;
        assert_eq!(v.p50_ms, vec![Some(20), Some(5)]);
        assert_eq!(v.p95_ms, vec![Some(40), Some(5)]);
    }

    #[test]
    fn a_gap_of_several_minutes_reads_as_empty_minutes() {
        let mut h = History::new(t0());
        h.routed(secs(0), 500);
        h.backlog(secs(0), 3);
        h.routed(secs(5 * 60 + 1), 700);
        let v = h.snapshot(secs(6 * 60)).minutes;
        assert_eq!(v.routed, vec![1, 0, 0, 0, 0, 1, 0]);
        assert_eq!(v.backlog, vec![Some(3), None, None, None, None, None, None]);
        assert_eq!(
            v.p50_ms,
            vec![Some(500), None, None, None, None, Some(700), None]
        );
    }

    #[test]
    fn the_window_is_24_hours_and_older_minutes_are_forgotten() {
        let mut h = History::new(t0());
        for m in 0..(MINUTES as i64 + 10) {
            h.routed(secs(m * 60), m);
        }
        let now = secs((MINUTES as i64 + 9) * 60 + 30);
        let v = h.snapshot(now).minutes;
        assert_eq!(v.routed.len(), MINUTES);
        assert_eq!(v.start, secs(10 * 60));
        assert!(v.routed.iter().all(|&r| r == 1));
        assert_eq!(v.p50_ms[0], Some(10));
        assert_eq!(v.p50_ms[MINUTES - 1], Some(MINUTES as u32 + 9));
    }

    #[test]
    fn a_gap_longer_than_24_hours_leaves_no_stale_minutes() {
        let mut h = History::new(t0());
        h.routed(secs(30), 100);
        h.failed(secs(90), 1);
        // 24 h and one minute later: the ring slots of minutes 0 and 1 are reused or stale.
        let later = secs(30 + (MINUTES as i64 + 1) * 60);
        h.backlog(later, 2);
        let v = h.snapshot(later).minutes;
        assert_eq!(v.routed.len(), MINUTES);
        assert_eq!(v.start, secs(2 * 60));
        assert!(v.routed.iter().all(|&r| r == 0), "{:?}", &v.routed[..3]);
        assert!(v.failed.iter().all(|&r| r == 0));
        assert!(v.p50_ms.iter().all(Option::is_none));
        assert_eq!(v.backlog[MINUTES - 1], Some(2));
        assert_eq!(v.backlog.iter().filter(|b| b.is_some()).count(), 1);
        // Exactly one ring length later: the same slot, a different minute.
        let mut h = History::new(t0());
        h.routed(secs(10), 100);
        let same_slot = secs(10 + MINUTES as i64 * 60);
        let v = h.snapshot(same_slot).minutes;
        assert_eq!(
            v.routed.iter().sum::<u32>(),
            0,
            "minute 0 is outside the window"
        );
        h.failed(same_slot, 1);
        let v = h.snapshot(same_slot).minutes;
        assert_eq!(v.routed.iter().sum::<u32>(), 0);
        assert_eq!(v.failed[MINUTES - 1], 1);
        assert_eq!(
            v.p50_ms[MINUTES - 1],
            None,
            "the old minute's times are gone"
        );
    }

    #[test]
    fn the_series_starts_at_process_start() {
        let h = History::new(secs(3 * 60 + 20));
        let v = h.snapshot(secs(5 * 60 + 1));
        assert_eq!(v.started_at, secs(3 * 60 + 20));
        assert_eq!(v.minutes.start, secs(3 * 60));
        assert_eq!(v.minutes.routed, vec![0, 0, 0]);
        assert!(v.transitions.is_empty() && v.incidents.is_empty());
    }

    #[test]
    fn a_clock_stepped_back_counts_in_the_newest_minute() {
        let mut h = History::new(t0());
        h.routed(secs(130), 100);
        h.routed(secs(10), 200); // an earlier minute: counted in minute 2
        h.failed(secs(70), 1);
        let v = h.snapshot(secs(20)).minutes;
        assert_eq!(v.routed, vec![0, 0, 2]);
        assert_eq!(v.failed, vec![0, 0, 1]);
        assert_eq!(v.p95_ms, vec![None, None, Some(200)]);
        h.status(secs(100), State::Up, None, "up");
        h.status(secs(50), State::Degraded, None, "down a bit");
        let t = h.snapshot(secs(130)).transitions;
        assert!(t[0].at <= t[1].at);
    }

    /// Exact nearest-rank percentile of a sample.
    fn exact(sorted: &[u32], p: u64) -> u32 {
        let rank = (p * sorted.len() as u64).div_ceil(100).max(1);
        sorted[rank as usize - 1]
    }

    #[test]
    fn percentiles_are_nearest_rank_within_one_32nd() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let n = 1 + (next() % 400) as usize;
            // Mixed scales: a few ms to an hour, the long tail of a backlog.
            let sample: Vec<u32> = (0..n)
                .map(|_| {
                    let scale = 1u64 << (next() % 22);
                    (next() % (scale * 4)) as u32
                })
                .collect();
            let mut hist = Histogram::new();
            for &v in &sample {
                hist.add(v);
            }
            let mut sorted = sample.clone();
            sorted.sort_unstable();
            for p in [50, 95, 1, 100] {
                let want = exact(&sorted, p);
                let got = hist.percentile(p).unwrap();
                let err = (f64::from(got) - f64::from(want)).abs();
                assert!(
                    err <= f64::from(want) / 32.0 + 0.5,
                    "round {round}: p{p} of {n} values: got {got}, exact {want}"
                );
                if want < 32 {
                    assert_eq!(got, want, "exact below 32 ms");
                }
            }
        }
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut hist = Histogram::new();
        assert_eq!(hist.percentile(50), None);
        for v in 1..=100 {
            hist.add(v);
        }
        // Nearest rank: p50 is the 50th value, p95 the 95th (each within 1/32).
        let p50 = hist.percentile(50).unwrap();
        let p95 = hist.percentile(95).unwrap();
        assert!((49..=51).contains(&p50), "{p50}");
        assert!((92..=98).contains(&p95), "{p95}");
        // 19 fast and one slow row: p95 is still a fast one; 18 and 2 make it the slow one.
        let mut h = History::new(t0());
        for _ in 0..19 {
            h.routed(secs(1), 20);
        }
        h.routed(secs(1), 60_000);
        assert_eq!(h.snapshot(secs(1)).minutes.p95_ms, vec![Some(20)]);
        let mut h = History::new(t0());
        for _ in 0..18 {
            h.routed(secs(1), 20);
        }
        h.routed(secs(1), 60_000);
        h.routed(secs(1), 60_000);
        assert_eq!(h.snapshot(secs(1)).minutes.p95_ms, vec![Some(60_000)]);
        assert_eq!(h.snapshot(secs(1)).minutes.p50_ms, vec![Some(20)]);
        // Above 32 ms a value reads as the middle of its bin: 800 is in [800, 832).
        let mut h = History::new(t0());
        h.routed(secs(1), 800);
        h.routed(secs(1), 810);
        h.routed(secs(1), 5_000);
        assert_eq!(h.snapshot(secs(1)).minutes.p50_ms, vec![Some(815)]);
        // Negative times count as 0; huge ones stay in range.
        let mut h = History::new(t0());
        h.routed(secs(1), -5);
        h.routed(secs(1), i64::MAX);
        let v = h.snapshot(secs(1)).minutes;
        assert_eq!(v.p50_ms, vec![Some(0)]);
        assert_eq!(v.p95_ms, vec![Some(u32::MAX)]);
    }

    #[test]
    fn histogram_bins_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..70_000u32).chain([u32::MAX / 2, u32::MAX - 1, u32::MAX]) {
            let b = Histogram::bin(v);
            assert!(b < BINS);
            assert!(b >= last, "bins are monotonic");
            last = b;
            let (lo, width) = Histogram::range(b);
            assert!(
                lo <= u64::from(v) && u64::from(v) < lo + width,
                "{v} in bin {b}"
            );
            assert!(
                width == 1 || width * 16 <= lo,
                "bin {b} width {width} lo {lo}"
            );
        }
        assert_eq!(Histogram::bin(u32::MAX), BINS - 1);
    }

    #[test]
    fn the_same_status_twice_is_one_transition() {
        let mut h = History::new(t0());
        assert!(h.status(secs(0), State::Degraded, None, "Starting"));
        assert!(!h.status(secs(1), State::Degraded, None, "Starting"));
        assert!(h.status(secs(2), State::Degraded, None, "Not connected to CIC"));
        assert!(h.status(secs(3), State::Up, None, "Successfully connected"));
        assert!(!h.status(secs(4), State::Up, None, "Successfully connected"));
        assert!(h.status(
            secs(5),
            State::Degraded,
            Some("push_loss_suspected"),
            "the sweep found 2 rows"
        ));
        // Same reason, different wording: the same state.
        assert!(!h.status(
            secs(6),
            State::Degraded,
            Some("push_loss_suspected"),
            "the sweep found 3 rows"
        ));
        assert!(h.status(
            secs(7),
            State::Degraded,
            Some("cic_reconnecting"),
            "Reconnecting to CIC"
        ));
        assert!(h.status(secs(8), State::Down, Some("cic_reconnecting"), "Down"));
        // A→B→A is three entries: only consecutive duplicates are folded.
        assert!(h.status(secs(9), State::Up, None, "Successfully connected"));
        let v = h.snapshot(secs(10));
        let got: Vec<(i64, State, Option<&str>)> = v
            .transitions
            .iter()
            .map(|t| ((t.at - t0()).num_seconds(), t.status, t.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, State::Degraded, None),
                (2, State::Degraded, None),
                (3, State::Up, None),
                (5, State::Degraded, Some("push_loss_suspected")),
                (7, State::Degraded, Some("cic_reconnecting")),
                (8, State::Down, Some("cic_reconnecting")),
                (9, State::Up, None),
            ]
        );
        assert_eq!(v.transitions[3].message, "the sweep found 2 rows");
    }

    #[test]
    fn transitions_are_bounded_oldest_dropped() {
        let mut h = History::new(t0());
        for i in 0..(MAX_TRANSITIONS as i64 + 25) {
            let s = if i % 2 == 0 {
                State::Up
            } else {
                State::Degraded
            };
            assert!(h.status(secs(i), s, None, "x"));
        }
        let v = h.snapshot(secs(10_000));
        assert_eq!(v.transitions.len(), MAX_TRANSITIONS);
        assert_eq!(v.transitions_dropped, 25);
        assert_eq!(v.transitions[0].at, secs(25));
        assert_eq!(
            v.transitions.last().unwrap().at,
            secs(MAX_TRANSITIONS as i64 + 24)
        );
    }

    #[test]
    fn incidents_fold_bursts_of_one_kind_and_are_bounded() {
        let mut h = History::new(t0());
        h.incident(secs(0), IncidentKind::FailedRows, "row a1 failed");
        h.incident(secs(30), IncidentKind::FailedRows, "row a2 failed");
        h.incident(secs(59), IncidentKind::FailedRows, "row a3 failed");
        h.incident(secs(60), IncidentKind::FailedRows, "row a4 failed"); // 60 s after the first
        h.incident(secs(61), IncidentKind::Switchover, "CIC switchover");
        h.incident(secs(62), IncidentKind::FailedRows, "row a5 failed"); // another kind between
        let v = h.snapshot(secs(70));
        let got: Vec<(IncidentKind, u32, i64, i64, &str)> = v
            .incidents
            .iter()
            .map(|i| {
                (
                    i.kind,
                    i.count,
                    (i.at - t0()).num_seconds(),
                    (i.last_at - t0()).num_seconds(),
                    i.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (IncidentKind::FailedRows, 3, 0, 59, "row a1 failed"),
                (IncidentKind::FailedRows, 1, 60, 60, "row a4 failed"),
                (IncidentKind::Switchover, 1, 61, 61, "CIC switchover"),
                (IncidentKind::FailedRows, 1, 62, 62, "row a5 failed"),
            ]
        );

        let mut h = History::new(t0());
        for i in 0..(MAX_INCIDENTS as i64 + 7) {
            let kind = if i % 2 == 0 {
                IncidentKind::Relogin
            } else {
                IncidentKind::PushLost
            };
            h.incident(secs(i), kind, &format!("n{i}"));
        }
        let v = h.snapshot(secs(10_000));
        assert_eq!(v.incidents.len(), MAX_INCIDENTS);
        assert_eq!(v.incidents_dropped, 7);
        assert_eq!(v.incidents[0].message, "n7");
        assert_eq!(
            v.incidents.last().unwrap().message,
            format!("n{}", MAX_INCIDENTS + 6)
        );
    }

    #[test]
    fn an_amendment_adds_to_the_newest_incident_of_its_kind() {
        let mut h = History::new(t0());
        assert!(!h.amend(IncidentKind::Switchover, "nothing to amend"));
        h.incident(
            secs(0),
            IncidentKind::Switchover,
            "CIC session re-established on cic2",
        );
        h.incident(secs(1), IncidentKind::FailedRows, "row a1 failed");
        assert!(h.amend(IncidentKind::Switchover, "2 interaction(s) lost"));
        let v = h.snapshot(secs(2));
        assert_eq!(v.incidents.len(), 2);
        assert_eq!(v.incidents[0].count, 1);
        assert_eq!(
            v.incidents[0].message,
            "CIC session re-established on cic2; 2 interaction(s) lost"
        );
        assert_eq!(v.incidents[1].message, "row a1 failed");
        assert!(h.amend(IncidentKind::Switchover, &"x".repeat(400)));
        assert!(h.snapshot(secs(2)).incidents[0].message.len() <= MAX_MESSAGE);
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let mut h = History::new(t0());
        let long = "é".repeat(400); // 800 bytes
        h.incident(secs(0), IncidentKind::ConfigDrift, &long);
        h.status(secs(0), State::Degraded, Some(&long), &long);
        let v = h.snapshot(secs(0));
        for m in [
            &v.incidents[0].message,
            &v.transitions[0].message,
            v.transitions[0].reason.as_ref().unwrap(),
        ] {
            assert!(m.len() <= MAX_MESSAGE, "{}", m.len());
            assert!(m.ends_with('…'));
            assert!(m.len() > MAX_MESSAGE - 6);
        }
    }

    #[test]
    fn the_document_has_the_documented_shape() {
        let mut h = History::new(secs(30));
        h.status(secs(30), State::Degraded, None, "Starting");
        h.status(
            secs(40),
            State::Degraded,
            Some("push_topic_missing"),
            "PushTopic missing",
        );
        h.incident(
            secs(45),
            IncidentKind::PushTopicRepaired,
            "PushTopic was missing and has been created",
        );
        h.routed(secs(70), 840);
        h.backlog(secs(70), 2);
        let json = serde_json::to_value(h.snapshot(secs(90))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "schema": 1,
                "now": "2026-12-01T10:01:30Z",
                "started_at": "2026-12-01T10:00:30Z",
                "limits": {"minutes": 1440, "transitions": 500, "incidents": 500},
                "minutes": {
                    "start": "2026-12-01T10:00:00Z",
                    "seconds": 60,
                    "routed": [0, 1],
                    "failed": [0, 0],
                    "backlog": [null, 2],
                    "p50_ms": [null, 840],
                    "p95_ms": [null, 840],
                },
                "transitions": [
                    {"at": "2026-12-01T10:00:30Z", "status": "degraded", "reason": null, "message": "Starting"},
                    {"at": "2026-12-01T10:00:40Z", "status": "degraded", "reason": "push_topic_missing", "message": "PushTopic missing"},
                ],
                "transitions_dropped": 0,
                "incidents": [
                    {"at": "2026-12-01T10:00:45Z", "last_at": "2026-12-01T10:00:45Z", "count": 1,
                     "kind": "push_topic_repaired", "message": "PushTopic was missing and has been created"},
                ],
                "incidents_dropped": 0,
            })
        );
        for (k, s) in [
            (IncidentKind::Switchover, "switchover"),
            (IncidentKind::CicLost, "cic_lost"),
            (IncidentKind::Relogin, "relogin"),
            (IncidentKind::PushLost, "push_lost"),
            (IncidentKind::Resync, "resync"),
            (IncidentKind::FailedRows, "failed_rows"),
            (IncidentKind::ConfigDrift, "config_drift"),
            (IncidentKind::ApiLimit, "api_limit"),
            (IncidentKind::Reconciled, "reconciled"),
            (IncidentKind::OtherRouter, "other_router"),
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), s);
        }
        assert_eq!(serde_json::to_value(State::Down).unwrap(), "down");
        assert_eq!(serde_json::to_value(State::Up).unwrap(), "up");
        assert_eq!(serde_json::to_value(State::Degraded).unwrap(), "degraded");
    }

    #[test]
    fn sizes_match_the_documented_memory_cost() {
        assert_eq!(std::mem::size_of::<Minute>(), 40);
        assert_eq!(std::mem::size_of::<[u32; BINS]>(), 1856);
        assert!(std::mem::size_of::<Transition>() <= 64);
        assert!(std::mem::size_of::<Incident>() <= 64);
        let h = History::new(t0());
        assert_eq!(h.ring.len() * std::mem::size_of::<Minute>(), 57_600);
        assert!(h.transitions.capacity() >= MAX_TRANSITIONS);
        assert!(h.incidents.capacity() >= MAX_INCIDENTS);
    }
}
