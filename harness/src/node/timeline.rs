//! One class's latency timeline at a node: a histogram per step of intended send time.
//! A step's histogram is sealed (encoded, a few hundred bytes) once sending has moved well
//! past it, so a node's memory stays flat however long the run: a live histogram of this
//! build's range is 172 KB, and a 30-minute soak at 10 s steps grew each node by 100 MB
//! when every step stayed live.

use crate::metrics::{self, HistogramCodecError};
use hdrhistogram::Histogram;

/// How many of the newest steps stay live: late deliveries land in recent steps.
const LIVE_STEPS: usize = 16;

enum Step {
    /// Nothing recorded yet: a node that starts late (a recovered one, minutes into the
    /// run) skips many steps at once, and making each of those live held hundreds of
    /// histograms at once (a recovered soak node rose to 43 MB in 160 s).
    Empty,
    Live(Histogram<u64>),
    Sealed(String),
}

#[derive(Default)]
pub struct Timeline {
    steps: Vec<Step>,
    /// Steps below this index are sealed.
    sealed: usize,
}

impl Timeline {
    /// Records `latency_us` in step `step`, then seals what is now far behind.
    pub fn record(&mut self, step: usize, latency_us: u64) -> Result<(), HistogramCodecError> {
        while self.steps.len() <= step {
            self.steps.push(Step::Empty);
        }
        // A step is opened when something lands in it; a very late delivery into a sealed
        // step opens it again (rare).
        match &self.steps[step] {
            Step::Sealed(enc) => {
                self.steps[step] = Step::Live(metrics::decode_histogram(enc)?);
                self.sealed = self.sealed.min(step);
            }
            Step::Empty => {
                self.steps[step] = Step::Live(metrics::new_histogram());
                self.sealed = self.sealed.min(step);
            }
            Step::Live(_) => {}
        }
        if let Step::Live(h) = &mut self.steps[step] {
            metrics::record(h, latency_us);
        }
        let keep_from = self.steps.len().saturating_sub(LIVE_STEPS);
        while self.sealed < keep_from {
            if let Step::Live(h) = &self.steps[self.sealed] {
                self.steps[self.sealed] = Step::Sealed(metrics::encode_histogram(h)?);
            }
            self.sealed += 1;
        }
        Ok(())
    }

    /// Every step, encoded.
    pub fn encode(&self) -> Result<Vec<String>, HistogramCodecError> {
        let empty = metrics::encode_histogram(&metrics::new_histogram())?;
        self.steps
            .iter()
            .map(|s| match s {
                Step::Empty => Ok(empty.clone()),
                Step::Live(h) => metrics::encode_histogram(h),
                Step::Sealed(enc) => Ok(enc.clone()),
            })
            .collect()
    }

    /// How many steps hold a live histogram.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Live(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_steps_keep_their_samples_and_a_late_one_reopens_its_step() {
        let mut t = Timeline::default();
        for step in 0..100 {
            t.record(step, 1000 + step as u64).expect("records");
        }
        assert_eq!(t.live(), LIVE_STEPS, "old steps are sealed");
        t.record(3, 5).expect("a late delivery");
        let enc = t.encode().expect("encodes");
        assert_eq!(enc.len(), 100);
        let third = metrics::decode_histogram(&enc[3]).expect("decodes");
        assert_eq!((third.len(), third.min(), third.max()), (2, 5, 1003));
        let last = metrics::decode_histogram(&enc[99]).expect("decodes");
        assert_eq!(last.len(), 1);
    }

    #[test]
    fn a_node_that_starts_late_keeps_only_the_live_steps() {
        let mut t = Timeline::default();
        t.record(1000, 7).expect("records");
        assert_eq!(t.live(), 1, "the skipped steps hold nothing");
        t.record(10, 9)
            .expect("a late delivery into a skipped step");
        let enc = t.encode().expect("encodes");
        assert_eq!(enc.len(), 1001);
        let skipped = metrics::decode_histogram(&enc[500]).expect("decodes");
        assert_eq!(skipped.len(), 0);
        let late = metrics::decode_histogram(&enc[10]).expect("decodes");
        assert_eq!((late.len(), late.max()), (1, 9));
    }
}
