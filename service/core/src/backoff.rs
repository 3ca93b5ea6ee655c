//! The one back-off schedule of sors: bounded exponential, with optional jitter.
//!
//! Pure like the rest of this crate: it never sleeps and never draws a random number. Callers
//! that sleep (the Salesforce and ICWS clients, the runtime) ask it for the next delay and pass
//! a uniform sample in `[0, 1)` when they want jitter; the router uses the unjittered delay so
//! its timers stay deterministic in tests.

use std::time::Duration;

/// `min(base * 2^(n-1), max)` for the `n`-th consecutive failure (n = 1 is the first retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max }
    }

    /// The delay before retry `n` (1 = the first retry), without jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The delay before retry `n`, scaled into 50..100 % by `sample`, a uniform draw in `[0, 1)`
    /// (so many clients failing together do not retry together).
    pub fn jittered(&self, n: u32, sample: f64) -> Duration {
        let sample = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.delay(n).mul_f64(0.5 + sample / 2.0)
    }
}

/// Consecutive failures counted against a [`Backoff`]: `failed` after each failure, `reset`
/// after a success.
#[derive(Clone, Debug)]
pub struct Retry {
    policy: Backoff,
    failures: u32,
}

impl Retry {
    pub const fn new(policy: Backoff) -> Self {
        Retry {
            policy,
            failures: 0,
        }
    }

    /// Counts a failure and returns the (jittered) delay before the next try.
    pub fn failed(&mut self, sample: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.jittered(self.failures, sample)
    }

    /// Counts a failure and returns the delay before the next try, without jitter.
    pub fn failed_exact(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_base_and_stops_at_max() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let got: Vec<u128> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(0), 100 * MS, "n = 0 is treated as the first retry");
        assert_eq!(b.delay(u32::MAX), 1000 * MS, "no overflow at huge n");
    }

    #[test]
    fn jitter_scales_into_half_to_full() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        assert_eq!(b.jittered(2, 0.0), 100 * MS);
        assert_eq!(b.jittered(2, 0.5), 150 * MS);
        assert_eq!(b.jittered(2, 1.0), 200 * MS);
        assert_eq!(b.jittered(2, f64::NAN), 200 * MS);
        assert_eq!(b.jittered(2, -3.0), 100 * MS);
    }

    #[test]
    fn retry_counts_failures_and_resets() {
        let mut r = Retry::new(Backoff::new(10 * MS, 40 * MS));
        assert_eq!(r.failed_exact(), 10 * MS);
        assert_eq!(r.failed_exact(), 20 * MS);
        assert_eq!(r.failed(1.0), 40 * MS);
        assert_eq!(r.failed_exact(), 40 * MS);
        assert_eq!(r.failures(), 4);
        r.reset();
        assert_eq!(r.failures(), 0);
        assert_eq!(r.failed_exact(), 10 * MS);
    }
}
