//! How the clients report the latency of their calls without knowing who listens.
//!
//! A client holds an [`Observer`] (a slot, empty by default) and tells it the kind and duration
//! of every request it sends; the service fills the slot with something that records (the
//! Prometheus histograms of `sors::metrics`). Nothing here measures time: the caller does.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Receives one finished call: its kind (e.g. `query`, `update`, `POST interactions`) and how
/// long it took, failures included.
pub trait CallObserver: Send + Sync {
    fn call(&self, kind: &str, elapsed: Duration);
}

/// A shared slot for a [`CallObserver`]; clones share the slot, so a client built from a
/// config can be given its observer later.
#[derive(Clone, Default)]
pub struct Observer(Arc<RwLock<Option<Arc<dyn CallObserver>>>>);

impl Observer {
    /// Puts `observer` in the slot (replacing any previous one).
    pub fn set(&self, observer: Arc<dyn CallObserver>) {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        *slot = Some(observer);
    }

    /// Tells the observer, if there is one, about a finished call.
    pub fn call(&self, kind: &str, elapsed: Duration) {
        let slot = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = slot.as_ref() {
            o.call(kind, elapsed);
        }
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self
            .0
            .read()
            .map(|s| s.is_some())
            .unwrap_or_else(|p| p.into_inner().is_some());
        f.debug_struct("Observer").field("set", &set).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<(String, Duration)>>);

    impl CallObserver for Log {
        fn call(&self, kind: &str, elapsed: Duration) {
            self.0.lock().unwrap().push((kind.to_owned(), elapsed));
        }
    }

    #[test]
    fn an_empty_slot_ignores_calls_and_a_filled_one_shared_by_clones_hears_them() {
        let slot = Observer::default();
        let client_copy = slot.clone();
        client_copy.call("query", Duration::from_millis(1));
        let log = Arc::new(Log::default());
        slot.set(log.clone());
        client_copy.call("update", Duration::from_millis(7));
        assert_eq!(
            *log.0.lock().unwrap(),
            vec![("update".to_owned(), Duration::from_millis(7))]
        );
        assert_eq!(format!("{slot:?}"), "Observer { set: true }");
    }
}
