//! Counters shared by login, REST and streaming, read by the router's status page.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A snapshot of the client's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// From the last `Sforce-Limit-Info: api-usage=N/M` header.
    pub api_used: Option<u64>,
    pub api_max: Option<u64>,
    /// REST requests sent (retries included), logins excluded.
    pub calls: u64,
    /// REST requests re-sent after 503 / 429 / limit / lock errors.
    pub retries: u64,
    /// Successful logins (the first one and every re-login).
    pub logins: u64,
    /// Re-logins triggered by a rejected session (REST 401 or Bayeux authentication errors).
    pub relogins: u64,
    pub last_login_at: Option<DateTime<Utc>>,
    /// The last error seen (login, REST or streaming), without secrets.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct StatsCell(Mutex<Stats>);

impl StatsCell {
    pub(crate) fn update(&self, f: impl FnOnce(&mut Stats)) {
        // A poisoned lock only means another thread panicked mid-update: the counters are
        // still usable.
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn error(&self, e: &impl ToString) {
        let msg = e.to_string();
        self.update(|s| s.last_error = Some(msg));
    }

    /// Reads `api-usage=N/M` out of a `Sforce-Limit-Info` header value.
    pub(crate) fn record_limit_info(&self, header: &str) {
        if let Some((used, max)) = parse_api_usage(header) {
            self.update(|s| {
                s.api_used = Some(used);
                s.api_max = Some(max);
            });
        }
    }
}

pub(crate) fn parse_api_usage(header: &str) -> Option<(u64, u64)> {
    header.split([';', ',']).find_map(|part| {
        let value = part.trim().strip_prefix("api-usage=")?;
        let (used, max) = value.split_once('/')?;
        Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::parse_api_usage;

    #[test]
    fn parses_api_usage_among_other_parts() {
        assert_eq!(
            parse_api_usage("api-usage=10018/100000"),
            Some((10018, 100000))
        );
        assert_eq!(
            parse_api_usage("per-app-api-usage=17/250(appName=x); api-usage=25/15000"),
            Some((25, 15000))
        );
        assert_eq!(parse_api_usage("api-usage=abc/1"), None);
        assert_eq!(parse_api_usage(""), None);
    }
}
