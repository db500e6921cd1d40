//! One class's latency timeline at a node: a histogram per step of intended send time.
//! Only the newest steps are live; once sending has moved well past a step it is sealed
//! (encoded, a few hundred bytes to 1.5 KB) and handed out, to the node's record log or
//! its report. A node's memory therefore stays flat however long the run:
//! - a live histogram of this build's range is 172 KB, and a 30-minute soak at 10 s steps
//!   grew each node by 100 MB when every step stayed live;
//! - a sealed histogram is reset and used again for the next step rather than freed: the
//!   turnover of 172 KB allocations between small ones fragmented the heap (soak nodes grew
//!   about 8 MiB an hour with nothing live growing).

use crate::metrics::{self, HistogramCodecError};
use hdrhistogram::Histogram;
use std::{collections::BTreeMap, time::Duration};

/// How much of the newest intended send time stays live: late deliveries land there.
const LIVE_SPAN: Duration = Duration::from_secs(16);
/// At least this many steps stay live, however long a step.
const MIN_LIVE_STEPS: usize = 2;

/// Sealed steps as (step, histogram encoded).
pub type Sealed = Vec<(usize, String)>;

pub struct Timeline {
    /// How long a step is (1 ms at least).
    step: Duration,
    /// Steps so far: one past the newest step anything landed in.
    steps: usize,
    live_steps: usize,
    live: BTreeMap<usize, Histogram<u64>>,
    /// Sealed histograms, reset, for the next steps.
    spare: Vec<Histogram<u64>>,
    /// Sealed steps not yet taken.
    sealed: Sealed,
}

impl Timeline {
    /// A timeline of steps of `step` each.
    pub fn new(step: Duration) -> Timeline {
        let step = step.max(Duration::from_millis(1));
        Timeline {
            step,
            steps: 0,
            live_steps: (LIVE_SPAN.as_nanos().div_ceil(step.as_nanos()) as usize)
                .max(MIN_LIVE_STEPS),
            live: BTreeMap::new(),
            spare: vec![],
            sealed: vec![],
        }
    }

    /// The step holding objects intended `since_warmup` after the measured window began.
    pub fn step_of(&self, since_warmup: Duration) -> usize {
        (since_warmup.as_nanos() / self.step.as_nanos()) as usize
    }

    /// Records `latency_us` in step `step`, then seals what is now far behind. A very late
    /// delivery into a sealed step opens the step again: it is sealed again with what
    /// arrived since, and the step's parts add up.
    pub fn record(&mut self, step: usize, latency_us: u64) -> Result<(), HistogramCodecError> {
        self.steps = self.steps.max(step + 1);
        let spare = &mut self.spare;
        let h = self
            .live
            .entry(step)
            .or_insert_with(|| spare.pop().unwrap_or_else(metrics::new_histogram));
        metrics::record(h, latency_us);
        let keep_from = self.steps.saturating_sub(self.live_steps);
        while let Some(entry) = self.live.first_entry() {
            if *entry.key() >= keep_from {
                break;
            }
            let (step, mut h) = entry.remove_entry();
            self.sealed.push((step, metrics::encode_histogram(&h)?));
            h.reset();
            self.spare.push(h);
        }
        Ok(())
    }

    /// The steps sealed since the last call, as (step, histogram).
    pub fn take_sealed(&mut self) -> Sealed {
        std::mem::take(&mut self.sealed)
    }

    /// One entry per step (the live ones' histograms, an empty histogram elsewhere), and
    /// the sealed steps not taken.
    pub fn finish(&mut self) -> Result<(Vec<String>, Sealed), HistogramCodecError> {
        let empty = metrics::encode_histogram(&metrics::new_histogram())?;
        let mut steps = vec![empty; self.steps];
        for (&step, h) in &self.live {
            steps[step] = metrics::encode_histogram(h)?;
        }
        Ok((steps, self.take_sealed()))
    }

    /// How many histograms the timeline holds, live or spare.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.live.len() + self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each step's latencies: its entry and its sealed parts added up.
    fn merged(t: &mut Timeline) -> Vec<Histogram<u64>> {
        let (steps, sealed) = t.finish().expect("encodes");
        let mut out: Vec<Histogram<u64>> = steps
            .iter()
            .map(|e| metrics::decode_histogram(e).expect("decodes"))
            .collect();
        for (step, e) in sealed {
            out[step]
                .add(metrics::decode_histogram(&e).expect("decodes"))
                .expect("adds");
        }
        out
    }

    #[test]
    fn old_steps_are_sealed_and_their_histograms_used_again() {
        let mut t = Timeline::new(Duration::from_secs(1));
        assert_eq!(t.live_steps, 16);
        for step in 0..100 {
            t.record(step, 1000 + step as u64).expect("records");
        }
        assert_eq!(t.live.len(), 16, "old steps are sealed");
        assert_eq!(
            t.held(),
            17,
            "one spare at most: sealed histograms are reused"
        );
        t.record(3, 5).expect("a late delivery");
        assert_eq!(t.held(), 17);
        let steps = merged(&mut t);
        assert_eq!(steps.len(), 100);
        let third = &steps[3];
        assert_eq!((third.len(), third.min(), third.max()), (2, 5, 1003));
        assert_eq!(steps[99].len(), 1);
    }

    #[test]
    fn taken_steps_leave_the_timeline() {
        let mut t = Timeline::new(Duration::from_secs(10));
        assert_eq!(t.live_steps, MIN_LIVE_STEPS);
        for step in 0..10 {
            t.record(step, 7).expect("records");
        }
        let taken = t.take_sealed();
        assert_eq!(
            taken.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        let (steps, sealed) = t.finish().expect("encodes");
        assert!(sealed.is_empty(), "taken once only");
        let empty = metrics::decode_histogram(&steps[0]).expect("decodes");
        assert_eq!((steps.len(), empty.len()), (10, 0));
    }

    #[test]
    fn a_node_that_starts_late_holds_only_the_live_steps() {
        let mut t = Timeline::new(Duration::from_secs(1));
        t.record(1000, 7).expect("records");
        assert_eq!(t.held(), 1, "the skipped steps hold nothing");
        t.record(10, 9)
            .expect("a late delivery into a skipped step");
        let steps = merged(&mut t);
        assert_eq!(steps.len(), 1001);
        assert_eq!(steps[500].len(), 0);
        assert_eq!((steps[10].len(), steps[10].max()), (1, 9));
    }
}
