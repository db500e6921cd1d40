//! Priority inversions seen by one receiver on one connection.

use std::collections::BTreeMap;

/// Counts objects of a higher priority that completed after a lower-priority object that
/// was meant to be sent later on the same connection had already completed.
#[derive(Debug, Default)]
pub struct InversionTracker {
    /// Latest intended send time among completed objects, per priority.
    latest_done: BTreeMap<i32, u64>,
}

impl InversionTracker {
    /// Records a completed object; returns whether its completion was an inversion.
    pub fn complete(&mut self, priority: i32, intended_ns: u64) -> bool {
        let inverted = self
            .latest_done
            .range(..priority)
            .any(|(_, &later)| later > intended_ns);
        let e = self.latest_done.entry(priority).or_insert(intended_ns);
        *e = (*e).max(intended_ns);
        inverted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_low_overtaking_high() {
        let mut t = InversionTracker::default();
        assert!(!t.complete(0, 200)); // low, intended at 200, done first
        assert!(t.complete(10, 100)); // high intended earlier, done later: inversion
        assert!(!t.complete(10, 300)); // high intended after the low one: fine
    }

    #[test]
    fn in_order_and_equal_priorities_are_not_inversions() {
        let mut t = InversionTracker::default();
        assert!(!t.complete(10, 100));
        assert!(!t.complete(0, 50));
        assert!(!t.complete(0, 400));
        assert!(!t.complete(0, 300));
        assert!(!t.complete(10, 500));
    }
}
