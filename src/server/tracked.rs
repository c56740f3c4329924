//! The ScaledObjects the scaler reports on in /metrics. One that stops calling (deleted,
//! or moved to another scaler replica) is forgotten after a while, and the number kept
//! is capped, so the series count stays bounded however many come and go.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

/// Forgotten after this long without a call (KEDA calls every 15 to 30 s).
pub const IDLE_AFTER: Duration = Duration::from_secs(600);

/// At most this many are kept; past it the least recently seen go first.
pub const MAX_TRACKED: usize = 10_000;

/// How often idle entries are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A ScaledObject: (namespace, name).
pub type Key = (String, String);

/// When each ScaledObject was last seen.
pub struct Tracked {
    seen: HashMap<Key, Instant>,
    last_sweep: Instant,
    idle_after: Duration,
    max: usize,
}

impl Default for Tracked {
    fn default() -> Self {
        Self::new(IDLE_AFTER, MAX_TRACKED)
    }
}

impl Tracked {
    /// Forgets a ScaledObject not seen for `idle_after`, and keeps at most `max`.
    pub fn new(idle_after: Duration, max: usize) -> Self {
        Self {
            seen: HashMap::new(),
            last_sweep: Instant::now(),
            idle_after,
            max,
        }
    }

    /// Records a call; returns the ScaledObjects to forget.
    pub fn seen(&mut self, namespace: &str, name: &str) -> Vec<Key> {
        let now = Instant::now();
        let key = (namespace.to_owned(), name.to_owned());
        let new = self.seen.insert(key, now).is_none();
        let mut forgotten = Vec::new();
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            let idle_after = self.idle_after;
            self.seen.retain(|key, last| {
                let keep = now.duration_since(*last) < idle_after;
                if !keep {
                    forgotten.push(key.clone());
                }
                keep
            });
        }
        if new && self.seen.len() > self.max {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, last)| **last)
                .map(|(key, _)| key.clone())
                .expect("more than max entries");
            self.seen.remove(&oldest);
            forgotten.push(oldest);
        }
        forgotten
    }

    /// The ScaledObjects tracked.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_scaled_objects_are_forgotten() {
        let mut tracked = Tracked::new(Duration::from_secs(600), 100);
        assert!(tracked.seen("ns", "old").is_empty());
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(tracked.seen("ns", "recent").is_empty());
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(
            tracked.seen("ns", "recent"),
            vec![("ns".to_owned(), "old".to_owned())]
        );
        assert_eq!(tracked.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_the_least_recently_seen_goes() {
        let mut tracked = Tracked::new(Duration::from_secs(600), 2);
        tracked.seen("ns", "a");
        tokio::time::advance(Duration::from_secs(1)).await;
        tracked.seen("ns", "b");
        tokio::time::advance(Duration::from_secs(1)).await;
        tracked.seen("ns", "a");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            tracked.seen("ns", "c"),
            vec![("ns".to_owned(), "b".to_owned())]
        );
        assert_eq!(tracked.len(), 2);
    }
}
