//! The distributions behind `/metrics`: time to route and the latency of every Salesforce and
//! ICWS call, as Prometheus histograms (`prometheus-client`), one registry per service so
//! several tenants in one process never mix.
//!
//! Buckets (seconds), chosen for what an operator asks:
//! - `sors_time_to_route_seconds` (row created → interaction created): 0.005 0.01 0.02 0.05
//!   0.1 0.25 0.5 1 2.5 5 10 30 60 300. The low end resolves the 20 ms a healthy router needs;
//!   the high end shows rows held by an outage or by retries (30 s route timeout, 5 min).
//! - `sors_salesforce_call_seconds{kind}` and `sors_icws_call_seconds{kind}` (request sent →
//!   answer's headers, failures included): 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30.
//!   Salesforce answers in 50–300 ms from most regions; 30 s is the request timeout.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sors_core::observe::CallObserver;

pub const TIME_TO_ROUTE_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
pub const CALL_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    kind: String,
}

type CallFamily = Family<CallLabels, Histogram, fn() -> Histogram>;

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

/// One service's histograms.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    time_to_route: Histogram,
    salesforce: CallFamily,
    icws: CallFamily,
}

impl Metrics {
    pub fn new(tenant: &str) -> Metrics {
        let mut registry = Registry::with_labels(
            [(Cow::Borrowed("tenant"), Cow::Owned(tenant.to_owned()))].into_iter(),
        );
        let time_to_route = Histogram::new(TIME_TO_ROUTE_BUCKETS);
        registry.register(
            "sors_time_to_route_seconds",
            "Time from a routing row's creation to its interaction",
            time_to_route.clone(),
        );
        let salesforce = CallFamily::new_with_constructor(call_histogram);
        registry.register(
            "sors_salesforce_call_seconds",
            "Latency of Salesforce login and REST calls, by kind",
            salesforce.clone(),
        );
        let icws = CallFamily::new_with_constructor(call_histogram);
        registry.register(
            "sors_icws_call_seconds",
            "Latency of ICWS requests, by method and first path segment",
            icws.clone(),
        );
        Metrics {
            registry,
            time_to_route,
            salesforce,
            icws,
        }
    }

    pub fn routed(&self, millis: i64) {
        self.time_to_route.observe(millis.max(0) as f64 / 1000.0);
    }

    /// What the Salesforce client is given to report its calls to.
    pub fn salesforce_observer(&self) -> Arc<dyn CallObserver> {
        Arc::new(Calls(self.salesforce.clone()))
    }

    /// What the ICWS client is given to report its calls to.
    pub fn icws_observer(&self) -> Arc<dyn CallObserver> {
        Arc::new(Calls(self.icws.clone()))
    }

    /// The histograms in the Prometheus text format (classic exposition: no `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        match out.strip_suffix("# EOF\n") {
            Some(body) => body.to_owned(),
            None => out,
        }
    }
}

struct Calls(CallFamily);

impl CallObserver for Calls {
    fn call(&self, kind: &str, elapsed: Duration) {
        self.0
            .get_or_create(&CallLabels {
                kind: kind.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_with_the_tenant_label_and_cumulative_buckets() {
        let m = Metrics::new("acme");
        m.routed(15);
        m.routed(40);
        m.routed(-3);
        m.salesforce_observer()
            .call("query", Duration::from_millis(70));
        m.icws_observer()
            .call("POST interactions", Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("# TYPE sors_time_to_route_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(r#"sors_time_to_route_seconds_bucket{tenant="acme",le="0.005"} 1"#),
            "a negative age counts as 0: {text}"
        );
        assert!(
            text.contains(r#"sors_time_to_route_seconds_bucket{tenant="acme",le="0.02"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sors_time_to_route_seconds_bucket{tenant="acme",le="0.05"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"sors_time_to_route_seconds_count{tenant="acme"} 3"#));
        assert!(
            text.contains(
                r#"sors_salesforce_call_seconds_bucket{tenant="acme",le="0.05",kind="query"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sors_salesforce_call_seconds_bucket{tenant="acme",le="0.1",kind="query"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"kind="POST interactions""#), "{text}");
        assert!(!text.contains("# EOF"));
    }
}
