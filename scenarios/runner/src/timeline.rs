//! What happened during a scenario, in time order: the steps, the router's structured events
//! (tracing events with an `event` field, captured per scenario thread), its alerts, the routing
//! rows in Salesforce and the interactions in CIC with their history.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sors::status::Alert;
use sors_fake_icws::InteractionInfo;
use sors_testbed::table::Row;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// One captured router event.
#[derive(Clone, Debug)]
pub struct Captured {
    pub at: DateTime<Utc>,
    pub level: tracing::Level,
    pub event: String,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// A tracing layer that keeps every event carrying an `event` field.
#[derive(Clone, Default)]
pub struct Capture {
    events: Arc<Mutex<Vec<Captured>>>,
}

impl Capture {
    pub fn events(&self) -> Vec<Captured> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[derive(Default)]
struct Fields {
    event: Option<String>,
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "event" => self.event = Some(value),
            "message" => self.message = value,
            name => self.rest.push((name.to_owned(), value)),
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        if let Some(name) = f.event {
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Captured {
                    at: Utc::now(),
                    level: *event.metadata().level(),
                    event: name,
                    message: f.message,
                    fields: f.rest,
                });
        }
    }
}

/// Everything known at the end of a scenario.
pub struct Material {
    pub started: DateTime<Utc>,
    pub steps: Vec<(DateTime<Utc>, String)>,
    pub events: Vec<Captured>,
    pub alerts: Vec<Alert>,
    /// Routing rows, in creation order.
    pub rows: Vec<Row>,
    pub interactions: Vec<InteractionInfo>,
    /// Case id → scenario name.
    pub names: BTreeMap<String, String>,
    /// Final counters, one line each.
    pub counters: Vec<String>,
}

impl Material {
    fn case_name(&self, id: &str) -> String {
        self.names
            .get(id)
            .map(|n| format!("{n} ({id})"))
            .unwrap_or_else(|| id.to_owned())
    }

    /// The failure report: final rows and interactions, then every happening in time order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "  routing rows (oldest first):");
        if self.rows.is_empty() {
            let _ = writeln!(out, "    (none)");
        }
        for r in &self.rows {
            let _ = writeln!(
                out,
                "    {} case {} event={} status={} attempts={} interaction={} workgroup={} skills={:?} created={} error={:?}",
                r.name,
                self.case_name(&r.case_id),
                r.event,
                r.status,
                r.attempts,
                r.interaction(),
                r.workgroup,
                r.skills,
                r.created.format("%Y-%m-%dT%H:%M:%S%.3f%z"),
                r.error_text(),
            );
        }
        let _ = writeln!(out, "  CIC interactions:");
        if self.interactions.is_empty() {
            let _ = writeln!(out, "    (none)");
        }
        for i in &self.interactions {
            let _ = writeln!(
                out,
                "    {} case {} workgroup={} state={} agent={} live={} lost={} entry={}",
                i.id,
                self.case_name(&i.case_id),
                i.workgroup,
                i.state,
                i.agent.as_deref().unwrap_or("-"),
                i.live,
                i.lost,
                i.entry_id,
            );
        }
        if !self.counters.is_empty() {
            let _ = writeln!(out, "  counters:");
            for c in &self.counters {
                let _ = writeln!(out, "    {c}");
            }
        }
        let _ = writeln!(out, "  timeline (seconds since the scenario started):");
        for (at, line) in self.entries() {
            let secs = (at - self.started).num_milliseconds() as f64 / 1000.0;
            let _ = writeln!(out, "    {secs:>8.3}  {line}");
        }
        out
    }

    fn entries(&self) -> Vec<(DateTime<Utc>, String)> {
        let mut all: Vec<(DateTime<Utc>, String)> = Vec::new();
        for (at, s) in &self.steps {
            all.push((*at, format!("STEP    {s}")));
        }
        for e in &self.events {
            let fields: Vec<String> = e
                .fields
                .iter()
                .map(|(k, v)| {
                    let v = if k == "case" {
                        self.case_name(v)
                    } else {
                        v.clone()
                    };
                    format!("{k}={v}")
                })
                .collect();
            all.push((
                e.at,
                format!(
                    "ROUTER  {} {} {} {}",
                    e.level,
                    e.event,
                    e.message,
                    fields.join(" ")
                ),
            ));
        }
        for a in &self.alerts {
            all.push((a.at, format!("ALERT   {:?}: {}", a.kind, a.message)));
        }
        for r in &self.rows {
            let name = &r.name;
            let case = self.case_name(&r.case_id);
            all.push((
                r.created,
                format!(
                    "SF      row {name} written: case {case} event={} workgroup={}",
                    r.event, r.workgroup
                ),
            ));
            if let Some(at) = r.processed_at {
                all.push((
                    at,
                    format!(
                        "SF      row {name} finished: {} interaction={} {}",
                        r.status,
                        r.interaction(),
                        r.error_text()
                    ),
                ));
            }
        }
        for i in &self.interactions {
            for h in &i.history {
                all.push((
                    h.at,
                    format!(
                        "CIC     interaction {} {:?}{} (case {}, {})",
                        i.id,
                        h.event,
                        h.agent
                            .as_deref()
                            .map(|a| format!(" agent={a}"))
                            .unwrap_or_default(),
                        self.case_name(&i.case_id),
                        i.workgroup
                    ),
                ));
            }
        }
        all.sort_by_key(|(at, _)| *at);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn only_events_with_an_event_field_are_captured() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(event = "router.routed", row = "a01", "Routed");
            tracing::info!("no event field");
        });
        let got = capture.events();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, "router.routed");
        assert_eq!(got[0].message, "Routed");
        assert_eq!(got[0].fields, vec![("row".to_owned(), "a01".to_owned())]);
    }
}
