//! Gathering items into calls only while a call is busy: the runtime's one batcher, for pushed
//! row ids (into fetches) and row writes (into sObject Collections calls). Pure: the caller
//! passes the time.

use std::time::Duration;

use tokio::time::Instant;

/// Items gathered only while there is a queue: due at once when the call they feed is idle,
/// else when `max` are held or `window` has passed since the first one came. So a lone row
/// never waits for a window, and a burst still shares calls.
pub struct Batcher<T> {
    items: Vec<T>,
    due: Option<Instant>,
    window: Duration,
    max: usize,
}

impl<T> Batcher<T> {
    pub fn new(window: Duration, max: usize) -> Self {
        Batcher {
            items: Vec::new(),
            due: None,
            window,
            max,
        }
    }

    pub fn add(&mut self, now: Instant, items: impl IntoIterator<Item = T>) {
        self.items.extend(items);
        if self.due.is_none() && !self.items.is_empty() {
            self.due = Some(now + self.window);
        }
    }

    /// When the batch must go: nothing held, never; at once when full or when the call it
    /// feeds is not `busy`; else when its window ends.
    pub fn due(&self, now: Instant, busy: bool) -> Option<Instant> {
        if self.items.is_empty() {
            None
        } else if self.items.len() >= self.max || !busy {
            Some(now)
        } else {
            self.due
        }
    }

    /// Takes up to `max` items; what is left over is due at once.
    pub fn take(&mut self, now: Instant) -> Vec<T> {
        let rest = if self.items.len() > self.max {
            self.items.split_off(self.max)
        } else {
            Vec::new()
        };
        let batch = std::mem::replace(&mut self.items, rest);
        self.due = (!self.items.is_empty()).then_some(now);
        batch
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_only_while_its_call_is_busy() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut b: Batcher<u32> = Batcher::new(ms(50), 3);
        assert_eq!(b.due(t0, false), None, "nothing held, nothing due");
        assert_eq!(b.due(t0, true), None);
        b.add(t0, [1]);
        assert_eq!(b.due(t0, false), Some(t0), "idle: a lone item goes at once");
        assert_eq!(
            b.due(t0, true),
            Some(t0 + ms(50)),
            "busy: it waits for the window"
        );
        b.add(t0 + ms(20), [2]);
        assert_eq!(
            b.due(t0 + ms(20), true),
            Some(t0 + ms(50)),
            "the window runs from the first item"
        );
        let t1 = t0 + ms(30);
        b.add(t1, [3, 4, 5, 6, 7]);
        assert_eq!(
            b.due(t1, true),
            Some(t1),
            "full: due at once, even when busy"
        );
        assert_eq!(b.take(t1), vec![1, 2, 3]);
        assert_eq!(b.due(t1, true), Some(t1), "left-overs go next");
        assert_eq!(b.take(t1), vec![4, 5, 6]);
        assert_eq!(
            b.due(t1, true),
            Some(t1),
            "left-overs go next, even when not full"
        );
        assert_eq!(b.take(t1), vec![7]);
        assert!(b.is_empty());
        assert_eq!(b.due(t1, true), None);
        assert!(b.take(t1).is_empty());
        b.add(t1 + ms(5), [8]);
        assert_eq!(
            b.due(t1 + ms(5), true),
            Some(t1 + ms(55)),
            "a new window after a take"
        );
    }
}
