//! The seeded, open-loop send schedule of one origin node.

use super::{ClassPlan, WorkloadPlan};
use crate::scenario::Arrival;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Poisson};
use std::time::Duration;

/// One object to send: which class, its sequence number within (origin, class), when it is
/// meant to leave (offset from the run's start) and its total size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emit {
    pub class: u8,
    pub seq: u64,
    pub intended: Duration,
    pub size: u32,
}

#[derive(Debug)]
struct ClassStream {
    class: u8,
    size_min: u32,
    size_max: u32,
    gap: Gap,
    next: Duration,
    seq: u64,
    rng: ChaCha8Rng,
}

#[derive(Debug)]
enum Gap {
    Constant(Duration),
    /// The exponential gap and its rate per second.
    Poisson(Exp<f64>, f64),
    /// Closed loop: times are set by the caller as capacity frees up.
    Backlog,
}

impl ClassStream {
    fn size(&mut self) -> u32 {
        self.rng.gen_range(self.size_min..=self.size_max)
    }

    fn take(&mut self, intended: Duration) -> Emit {
        let e = Emit {
            class: self.class,
            seq: self.seq,
            intended,
            size: self.size(),
        };
        self.seq += 1;
        e
    }

    fn advance(&mut self) {
        let gap = match &self.gap {
            Gap::Constant(d) => *d,
            Gap::Poisson(exp, _) => Duration::from_secs_f64(exp.sample(&mut self.rng)),
            Gap::Backlog => return,
        };
        self.next += gap;
    }
}

/// What one origin sends, in intended-time order. Open-loop classes follow their arrival
/// process whatever the network does; backlog classes are drawn on demand.
#[derive(Debug)]
pub struct Schedule {
    streams: Vec<ClassStream>,
    end: Duration,
}

fn class_seed(seed: u64, node: u32, class: usize) -> u64 {
    // SplitMix-style mixing so neighbouring (node, class) pairs get unrelated streams.
    let mut z = seed ^ ((node as u64) << 32 | class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Schedule {
    /// The schedule of node `node`: only the classes it originates.
    pub fn new(plan: &WorkloadPlan, node: u32) -> Schedule {
        let streams = plan
            .classes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.origins.contains(&node))
            .map(|(i, c)| Self::stream(plan.seed, node, i, c))
            .collect();
        Schedule {
            streams,
            end: plan.send_end(),
        }
    }

    fn stream(seed: u64, node: u32, index: usize, c: &ClassPlan) -> ClassStream {
        let mut rng = ChaCha8Rng::seed_from_u64(class_seed(seed, node, index));
        let (gap, next) = match c.arrival {
            Arrival::Constant { rate } => {
                let period = Duration::from_secs_f64(1.0 / rate.0);
                // A seeded phase, so origins do not all fire at the same instant.
                (Gap::Constant(period), period.mul_f64(rng.gen::<f64>()))
            }
            Arrival::Poisson { rate } => {
                // Exp::new only fails for a negative rate; validation requires rate > 0.
                let exp = Exp::new(rate.0).unwrap_or_else(|_| unreachable!("rate validated > 0"));
                let first = Duration::from_secs_f64(exp.sample(&mut rng));
                (Gap::Poisson(exp, rate.0), first)
            }
            Arrival::Backlog { .. } => (Gap::Backlog, Duration::ZERO),
        };
        ClassStream {
            class: index as u8,
            size_min: c.size_min,
            size_max: c.size_max,
            gap,
            next,
            seq: 0,
            rng,
        }
    }

    fn open_loop(&self) -> impl Iterator<Item = (usize, &ClassStream)> {
        self.streams
            .iter()
            .enumerate()
            .filter(|(_, s)| !matches!(s.gap, Gap::Backlog))
            .filter(|(_, s)| s.next < self.end)
    }

    /// When the next open-loop object is due, or `None` when the schedule is exhausted.
    pub fn next_due(&self) -> Option<Duration> {
        self.open_loop().map(|(_, s)| s.next).min()
    }

    /// The earliest open-loop object due at or before `now`, if any.
    pub fn pop_due(&mut self, now: Duration) -> Option<Emit> {
        let (i, _) = self
            .open_loop()
            .filter(|(_, s)| s.next <= now)
            .min_by_key(|(_, s)| s.next)?;
        let s = &mut self.streams[i];
        let e = s.take(s.next);
        s.advance();
        Some(e)
    }

    /// Drops every open-loop object intended before `until` without drawing each one: for a
    /// node that has fallen so far behind that sending them would only bury what is due
    /// now. Returns how many objects each class (by index) dropped. The streams go on as
    /// if those objects had been sent (a Poisson stream is memoryless, so its next arrival
    /// after `until` is a fresh exponential gap).
    pub fn skip_until(&mut self, until: Duration) -> Vec<(u8, u64)> {
        let until = until.min(self.end);
        let mut skipped = vec![];
        for s in self.streams.iter_mut().filter(|s| s.next < until) {
            let count = match &s.gap {
                Gap::Backlog => continue,
                Gap::Constant(period) => {
                    let n = ((until - s.next).as_nanos() / period.as_nanos().max(1)) as u64 + 1;
                    s.next += period.saturating_mul(n as u32);
                    n
                }
                Gap::Poisson(exp, rate) => {
                    let mean = rate * (until - s.next).as_secs_f64();
                    // Poisson::new fails only for a mean that is not positive and finite.
                    let more = Poisson::new(mean.max(1e-9))
                        .map(|p| p.sample(&mut s.rng) as u64)
                        .unwrap_or(0);
                    s.next = until + Duration::from_secs_f64(exp.sample(&mut s.rng));
                    1 + more
                }
            };
            s.seq += count;
            skipped.push((s.class, count));
        }
        skipped
    }

    /// The next object of backlog class `class`, meant to leave at `now`; `None` when `class`
    /// is not a backlog class of this node or sending has ended.
    pub fn backlog_next(&mut self, class: u8, now: Duration) -> Option<Emit> {
        if now >= self.end {
            return None;
        }
        let s = self
            .streams
            .iter_mut()
            .find(|s| s.class == class && matches!(s.gap, Gap::Backlog))?;
        Some(s.take(now))
    }

    /// Backlog classes this node originates, with their outstanding count per peer.
    pub fn backlog_classes(plan: &WorkloadPlan, node: u32) -> Vec<(u8, u32)> {
        plan.classes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.origins.contains(&node))
            .filter_map(|(i, c)| match c.arrival {
                Arrival::Backlog { outstanding } => Some((i as u8, outstanding)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::example_plan;

    fn drain(mut s: Schedule) -> Vec<Emit> {
        let mut out = vec![];
        while let Some(t) = s.next_due() {
            out.push(s.pop_due(t).expect("an object is due at next_due"));
        }
        out
    }

    #[test]
    fn a_node_far_behind_skips_in_bulk_and_goes_on_from_now() {
        // example_plan: node 0 sends "block" at 10/s (constant) and "tx" at 200/s (Poisson)
        // for 5 s.
        let plan = example_plan();
        let mut s = Schedule::new(&plan, 0);
        let skipped = s.skip_until(Duration::from_secs(3));
        let count = |class| skipped.iter().find(|(c, _)| *c == class).map_or(0, |x| x.1);
        assert_eq!(count(0), 30, "10/s for 3 s");
        let tx = count(1) as f64;
        assert!(
            (480.0..720.0).contains(&tx),
            "about 600 Poisson arrivals: {tx}"
        );
        let next = s.next_due().expect("objects remain");
        assert!(next >= Duration::from_secs(3), "{next:?}");
        let rest = drain(s);
        let blocks = rest.iter().filter(|e| e.class == 0).count();
        assert_eq!(blocks, 20, "the remaining 2 s of blocks are sent");
        assert_eq!(rest.iter().find(|e| e.class == 0).map(|e| e.seq), Some(30));
        // Nothing to skip before the first object; nothing past the end.
        let mut fresh = Schedule::new(&plan, 0);
        assert!(fresh.skip_until(Duration::ZERO).is_empty());
        let all = fresh.skip_until(Duration::from_secs(60));
        assert_eq!(all.iter().find(|(c, _)| *c == 0).map(|x| x.1), Some(50));
        assert_eq!(fresh.next_due(), None);
    }

    #[test]
    fn same_seed_same_schedule_different_seed_different() {
        let plan = example_plan();
        let a = drain(Schedule::new(&plan, 0));
        let b = drain(Schedule::new(&plan, 0));
        assert_eq!(a, b);
        let other = WorkloadPlan {
            seed: 8,
            ..plan.clone()
        };
        assert_ne!(a, drain(Schedule::new(&other, 0)));
        assert_ne!(
            a,
            drain(Schedule::new(&plan, 1)),
            "nodes get distinct streams"
        );
    }

    #[test]
    fn respects_rates_origins_order_and_end() {
        let plan = example_plan();
        let sent = drain(Schedule::new(&plan, 0));
        assert!(
            sent.windows(2).all(|w| w[0].intended <= w[1].intended),
            "time order"
        );
        assert!(sent.iter().all(|e| e.intended < plan.send_end()));
        let blocks: Vec<_> = sent.iter().filter(|e| e.class == 0).collect();
        // 10/s constant over 5 s of sending: exactly 50, evenly spaced, seq 0..50.
        assert_eq!(blocks.len(), 50);
        assert!(blocks
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64 && e.size == 1000));
        let gaps: Vec<_> = blocks
            .windows(2)
            .map(|w| w[1].intended - w[0].intended)
            .collect();
        assert!(gaps
            .iter()
            .all(|g| g.abs_diff(Duration::from_millis(100)) < Duration::from_micros(1)));
        // Poisson 200/s over 5 s: 1000 expected; 5 sigma is about 160.
        let tx = sent.iter().filter(|e| e.class == 1).count();
        assert!((840..1160).contains(&tx), "poisson count {tx}");
        assert!(sent
            .iter()
            .filter(|e| e.class == 1)
            .all(|e| (100..=400).contains(&e.size)));
        // Node 2 originates no blocks.
        assert!(drain(Schedule::new(&plan, 2)).iter().all(|e| e.class == 1));
    }

    #[test]
    fn pop_due_waits_for_time() {
        let plan = example_plan();
        let mut s = Schedule::new(&plan, 0);
        let first = s.next_due().expect("schedule not empty");
        assert_eq!(
            s.pop_due(first.saturating_sub(Duration::from_nanos(1))),
            None
        );
        assert!(s.pop_due(first).is_some());
    }

    #[test]
    fn backlog_is_drawn_on_demand_until_the_end() {
        let plan = example_plan();
        assert_eq!(Schedule::backlog_classes(&plan, 1), vec![(2, 2)]);
        assert!(Schedule::backlog_classes(&plan, 0).is_empty());
        let mut s = Schedule::new(&plan, 1);
        let a = s
            .backlog_next(2, Duration::from_secs(2))
            .expect("backlog class");
        let b = s
            .backlog_next(2, Duration::from_secs(2))
            .expect("backlog class");
        assert_eq!((a.seq, b.seq, a.size), (0, 1, 65536));
        assert_eq!(s.backlog_next(2, plan.send_end()), None);
        assert_eq!(
            s.backlog_next(0, Duration::ZERO),
            None,
            "not a backlog class"
        );
    }
}
