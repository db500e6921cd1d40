//! What crashes cost, free of I/O: the schedule is replayed for each origin's lives (a
//! crashed process sends nothing; a recovered one goes on from its recovery), every
//! (object, receiver) pair is sorted into delivered, lost to a crash, unobserved (the
//! receiver's records died with it) or lost by the stack, and reach times are split into
//! objects due while a node was down and the rest.

use crate::{
    control::NodeReport,
    schema::crash::{ClassCrashAccount, CrashRecord, CrashSummary, PeerNotice},
    schema::Percentiles,
    workload::{reach_times, Schedule, WorkloadPlan},
};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

/// A crash as the controller saw it; times from the shared start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedCrash {
    pub node: u32,
    pub scheduled: bool,
    pub at: Duration,
    /// When the process started again (its schedule resumes from here).
    pub recovered: Option<Duration>,
}

type ObjectKey = (u16, u8, u64);

/// Every measured open-loop object `origin` was due to send in its lives (`[from, to)`
/// spans of the run), with its intended time. A recovered process skips what fell due
/// while it was down, as the node runtime does.
pub fn scheduled_objects(
    plan: &WorkloadPlan,
    origin: u32,
    lives: &[(Duration, Duration)],
) -> Vec<(u8, u64, Duration)> {
    let mut out = vec![];
    for &(from, to) in lives {
        let mut schedule = Schedule::new(plan, origin);
        if !from.is_zero() {
            schedule.skip_until(from);
        }
        while let Some(e) = schedule.pop_due(to.saturating_sub(Duration::from_nanos(1))) {
            if plan.is_measured(e.intended) && e.intended >= from {
                out.push((e.class, e.seq, e.intended));
            }
        }
    }
    out
}

/// The spans of the run in which `node` was alive.
fn lives(node: u32, crashes: &[ObservedCrash], end: Duration) -> Vec<(Duration, Duration)> {
    let mut spans = vec![];
    let mut from = Some(Duration::ZERO);
    let mut mine: Vec<&ObservedCrash> = crashes.iter().filter(|c| c.node == node).collect();
    mine.sort_by_key(|c| c.at);
    for c in mine {
        if let Some(f) = from.take() {
            spans.push((f, c.at));
        }
        from = c.recovered;
    }
    if let Some(f) = from {
        spans.push((f, end));
    }
    spans
}

/// A repetition's objects seen through its crashes: what each origin sent, when each
/// receiver was down, and whose records survive.
pub struct CrashView<'a> {
    plan: &'a WorkloadPlan,
    crashes: &'a [ObservedCrash],
    /// Per class: every object sent (its origin alive when it fell due), with its time.
    sent: Vec<Vec<(ObjectKey, Duration)>>,
    /// Per class: objects that fell due while their origin was down. For a Poisson class
    /// the count is the uninterrupted schedule's: what the node would have sent.
    never_sent: Vec<u64>,
    intended: HashMap<ObjectKey, Duration>,
    delivered: HashSet<(ObjectKey, u32)>,
    by_object: HashMap<ObjectKey, Vec<u64>>,
    first_arrival: BTreeMap<u32, Duration>,
    /// (node, from the crash, until it had an object again).
    outages: Vec<(u32, Duration, Duration)>,
}

impl<'a> CrashView<'a> {
    pub fn new(
        plan: &'a WorkloadPlan,
        crashes: &'a [ObservedCrash],
        reports: &[NodeReport],
    ) -> CrashView<'a> {
        let end = plan.send_end();
        let mut sent: Vec<Vec<(ObjectKey, Duration)>> = vec![vec![]; plan.classes.len()];
        let mut never_sent = vec![0u64; plan.classes.len()];
        let mut intended: HashMap<ObjectKey, Duration> = HashMap::new();
        for origin in 0..plan.nodes {
            let alive = lives(origin, crashes, end);
            for (class, seq, t) in scheduled_objects(plan, origin, &alive) {
                let key = (origin as u16, class, seq);
                intended.insert(key, t);
                sent[class as usize].push((key, t));
            }
            if alive != [(Duration::ZERO, end)] {
                for (class, _, t) in scheduled_objects(plan, origin, &[(Duration::ZERO, end)]) {
                    if !alive_at(&alive, t) {
                        never_sent[class as usize] += 1;
                    }
                }
            }
        }
        let mut delivered: HashSet<(ObjectKey, u32)> = HashSet::new();
        let mut by_object: HashMap<ObjectKey, Vec<u64>> = HashMap::new();
        let mut first_arrival: BTreeMap<u32, Duration> = BTreeMap::new();
        for r in reports {
            for &(o, c, s, us) in &r.deliveries {
                delivered.insert(((o, c, s), r.index));
                by_object.entry((o, c, s)).or_default().push(us);
                if let Some(t) = intended.get(&(o, c, s)) {
                    let arrived = *t + Duration::from_micros(us);
                    let e = first_arrival.entry(r.index).or_insert(arrived);
                    *e = (*e).min(arrived);
                }
            }
        }
        // A surviving report covers only its node's last life: the outage that ends it runs
        // until the node had an object again; an earlier one until its recovery (what the
        // life after it received died with it, and counts as unobserved).
        let last_life =
            |c: &ObservedCrash| !crashes.iter().any(|o| o.node == c.node && o.at > c.at);
        let outages = crashes
            .iter()
            .map(|c| {
                let back = match c.recovered {
                    Some(rec) if last_life(c) => first_arrival
                        .get(&c.node)
                        .copied()
                        .filter(|t| *t >= rec)
                        .unwrap_or(end),
                    Some(rec) => rec,
                    None => end,
                };
                (c.node, c.at, back)
            })
            .collect();
        CrashView {
            plan,
            crashes,
            sent,
            never_sent,
            intended,
            delivered,
            by_object,
            first_arrival,
            outages,
        }
    }

    /// Whether receiver `r` was down for an object due at `t`.
    fn receiver_down(&self, r: u32, t: Duration) -> bool {
        self.outages
            .iter()
            .any(|&(n, a, b)| n == r && t >= a && t < b)
    }

    /// Whether `r`'s records of an object due at `t` died with a process that crashed.
    fn unobserved(&self, r: u32, t: Duration) -> bool {
        self.crashes.iter().any(|c| c.node == r && t < c.at)
    }

    fn any_down(&self, t: Duration) -> bool {
        self.outages.iter().any(|&(_, a, b)| t >= a && t < b)
    }

    /// Due within the window before an outage, or during it.
    fn near(&self, t: Duration) -> bool {
        let window = self.plan.churn.window;
        self.outages
            .iter()
            .any(|&(_, a, b)| t + window >= a && t < b)
    }

    /// The receivers an object could reach and be seen to: every node but its origin,
    /// less those down when it fell due and those whose records of it died. Reach times
    /// are shares of these. `None` for an object the schedule does not know.
    pub fn reachable(&self, key: (u16, u8, u64)) -> Option<u32> {
        let t = *self.intended.get(&key)?;
        Some(
            (0..self.plan.nodes)
                .filter(|&r| r != u32::from(key.0))
                .filter(|&r| !self.receiver_down(r, t) && !self.unobserved(r, t))
                .count() as u32,
        )
    }
}

/// The crash part of a repetition's summary. `reports` are the surviving ones (a
/// recovered node's covers its life after recovery).
pub fn summarize(
    plan: &WorkloadPlan,
    crashes: &[ObservedCrash],
    reports: &[NodeReport],
) -> CrashSummary {
    let view = CrashView::new(plan, crashes, reports);
    let nodes = plan.nodes;
    let window = plan.churn.window;
    let step = plan.churn.timeline.max(Duration::from_millis(10));
    let buckets = (plan.duration.as_nanos() / step.as_nanos()) as usize + 1;
    let classes = plan
        .classes
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.arrival.is_backlog())
        .map(|(ci, c)| {
            let receivers = u64::from(nodes - 1);
            let mut a = ClassCrashAccount {
                class: c.name.clone(),
                timeline_step_ms: step.as_secs_f64() * 1e3,
                expected: view.never_sent[ci] * receivers,
                lost_to_crash: view.never_sent[ci] * receivers,
                ..Default::default()
            };
            let (mut steady90, mut down90, mut steady100, mut down100) =
                (vec![], vec![], vec![], vec![]);
            let mut timeline: Vec<Vec<u64>> = vec![vec![]; buckets];
            for &(key, t) in &view.sent[ci] {
                for r in (0..nodes).filter(|&r| r != u32::from(key.0)) {
                    a.expected += 1;
                    if view.delivered.contains(&(key, r)) {
                        a.delivered += 1;
                    } else if view.receiver_down(r, t) {
                        a.lost_to_crash += 1;
                    } else if view.unobserved(r, t) {
                        a.unobserved += 1;
                    } else if view.near(t) {
                        a.lost_near_crash += 1;
                    } else {
                        a.lost_by_stack += 1;
                    }
                }
                let mut lats = view.by_object.get(&key).cloned().unwrap_or_default();
                let reachable = view.reachable(key).unwrap_or(nodes - 1);
                let [_, r90, _, r100] = reach_times(&mut lats, reachable);
                let down = view.any_down(t);
                match (r90, down) {
                    (Some(v), true) => down90.push(v),
                    (Some(v), false) => steady90.push(v),
                    (None, true) => a.down_unreached90 += 1,
                    (None, false) => {}
                }
                match (r100, down) {
                    (Some(v), true) => down100.push(v),
                    (Some(v), false) => steady100.push(v),
                    (None, _) => {}
                }
                if let Some(v) = r90 {
                    let b = (t.saturating_sub(plan.warmup).as_nanos() / step.as_nanos()) as usize;
                    if let Some(slot) = timeline.get_mut(b) {
                        slot.push(v);
                    }
                }
            }
            a.steady_reach90_us = Percentiles::from_samples(&mut steady90);
            a.down_reach90_us = Percentiles::from_samples(&mut down90);
            a.steady_reach100_us = Percentiles::from_samples(&mut steady100);
            a.down_reach100_us = Percentiles::from_samples(&mut down100);
            a.reach90_timeline_ms = timeline
                .into_iter()
                .map(|mut v| {
                    (!v.is_empty()).then(|| Percentiles::from_samples(&mut v).p50 as f64 / 1e3)
                })
                .collect();
            a
        })
        .collect();
    let records = crashes
        .iter()
        .map(|c| crash_record(plan, c, crashes, reports, &view.first_arrival))
        .collect();
    CrashSummary {
        crashes: records,
        classes,
        window_ms: window.as_secs_f64() * 1e3,
    }
}

/// Whether `t` falls in one of the `lives`.
fn alive_at(lives: &[(Duration, Duration)], t: Duration) -> bool {
    lives.iter().any(|&(a, b)| t >= a && t < b)
}

fn crash_record(
    plan: &WorkloadPlan,
    c: &ObservedCrash,
    crashes: &[ObservedCrash],
    reports: &[NodeReport],
    first_arrival: &BTreeMap<u32, Duration>,
) -> CrashRecord {
    let warmup = plan.warmup.as_secs_f64();
    let neighbours = plan.fanout.graph.neighbours(c.node);
    let until = c.recovered.unwrap_or(plan.send_end() + plan.drain);
    let mut noticed = vec![];
    for r in reports.iter().filter(|r| neighbours.contains(&r.index)) {
        let at = |ns: u64| Duration::from_nanos(ns.saturating_sub(r.start_ns));
        // The first loss of the connection to the crashed node after the crash.
        if let Some(lost) = r
            .churn
            .peers_lost
            .iter()
            .filter(|l| l.peer == c.node && at(l.at_ns) >= c.at && at(l.at_ns) <= until)
            .min_by_key(|l| l.at_ns)
        {
            noticed.push(PeerNotice {
                peer: r.index,
                after_ms: (at(lost.at_ns) - c.at).as_secs_f64() * 1e3,
                how: lost.how.clone(),
            });
        }
    }
    let not_noticed = reports
        .iter()
        .filter(|r| neighbours.contains(&r.index))
        .map(|r| r.index)
        .filter(|i| !noticed.iter().any(|n| n.peer == *i))
        .collect();
    let recovered_firing = plan
        .churn
        .crashes()
        .into_iter()
        .find(|s| s.node == c.node && s.at.abs_diff(c.at) < Duration::from_secs(1))
        .and_then(|s| s.recover.map(|(f, _)| f));
    let mut reconnect: Vec<u64> = reports
        .iter()
        .flat_map(|r| &r.churn.cold_connects)
        .filter(|cc| Some(cc.firing) == recovered_firing && cc.dialler == c.node)
        .map(|cc| cc.us)
        .collect();
    CrashRecord {
        node: c.node,
        scheduled: c.scheduled,
        at_s: c.at.as_secs_f64() - warmup,
        recovered_at_s: c.recovered.map(|r| r.as_secs_f64() - warmup),
        not_noticed,
        noticed_us: Percentiles::from_samples(
            &mut noticed
                .iter()
                .map(|n| (n.after_ms * 1e3) as u64)
                .collect::<Vec<_>>(),
        ),
        noticed,
        // Seen only for the node's last life: an earlier one's records died with it.
        first_delivery_ms: c
            .recovered
            .filter(|_| !crashes.iter().any(|o| o.node == c.node && o.at > c.at))
            .and_then(|rec| {
                first_arrival
                    .get(&c.node)
                    .filter(|t| **t >= rec)
                    .map(|t| (*t - rec).as_secs_f64() * 1e3)
            }),
        reconnect_us: Percentiles::from_samples(&mut reconnect),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{ClassCounters, PeerLost};
    use crate::workload::example_plan;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Reports in which every object sent reaches every node alive 1 ms later, except the
    /// pairs `drop` names; node 1's report is its life after `back`.
    fn reports(
        plan: &WorkloadPlan,
        crashes: &[ObservedCrash],
        back: Duration,
        drop: impl Fn(u32, u16, Duration) -> bool,
    ) -> Vec<NodeReport> {
        let mut out: Vec<NodeReport> = (0..plan.nodes)
            .map(|i| NodeReport {
                index: i,
                classes: vec![ClassCounters::default(); plan.classes.len()],
                ..Default::default()
            })
            .collect();
        for origin in 0..plan.nodes {
            let alive = lives(origin, crashes, plan.send_end());
            for (class, seq, t) in scheduled_objects(plan, origin, &alive) {
                for r in out.iter_mut().filter(|r| r.index != origin) {
                    let after_crash_life = r.index != 1 || t >= back;
                    if after_crash_life && !drop(r.index, origin as u16, t) {
                        r.deliveries.push((origin as u16, class, seq, 1000));
                    }
                }
            }
        }
        out
    }

    fn count(plan: &WorkloadPlan, class: u8, origin: u32, from: Duration, to: Duration) -> u64 {
        scheduled_objects(plan, origin, &[(Duration::ZERO, plan.send_end())])
            .iter()
            .filter(|(c, _, t)| *c == class && *t >= from && *t < to)
            .count() as u64
    }

    #[test]
    fn every_pair_is_sorted_once_and_the_outage_is_the_crashs_cost() {
        let plan = example_plan();
        let crash = ObservedCrash {
            node: 1,
            scheduled: true,
            at: S(2),
            recovered: Some(S(3)),
        };
        let back = MS(3100);
        let mut reps = reports(&plan, &[crash], back, |_, _, _| false);
        reps[0].churn.peers_lost.push(PeerLost {
            peer: 1,
            at_ns: MS(2500).as_nanos() as u64,
            how: "timed out".into(),
        });
        let s = summarize(&plan, &[crash], &reps);
        assert_eq!(
            s.classes.len(),
            2,
            "the backlog class has no schedule to account"
        );
        let block = &s.classes[0];
        // Origin 0's blocks to node 1: unobserved before the crash (its records died),
        // lost from the crash until its first object after recovery.
        let first_block_back = scheduled_objects(&plan, 0, &[(Duration::ZERO, plan.send_end())])
            .iter()
            .filter(|(c, _, t)| *c == 0 && *t >= back)
            .map(|(_, _, t)| *t)
            .min()
            .expect("blocks after the recovery");
        assert_eq!(block.unobserved, count(&plan, 0, 0, plan.warmup, S(2)));
        assert!(block.lost_to_crash >= count(&plan, 0, 0, S(2), first_block_back));
        assert_eq!(block.lost_by_stack, 0);
        assert_eq!(block.lost_near_crash, 0);
        for c in &s.classes {
            assert_eq!(
                c.delivered + c.lost_to_crash + c.unobserved + c.lost_near_crash + c.lost_by_stack,
                c.expected,
                "{}",
                c.class
            );
        }
        // Origin 1's transactions due while it was down were never sent: two receivers each.
        let tx = &s.classes[1];
        assert!(tx.lost_to_crash >= 2 * count(&plan, 1, 1, S(2), S(3)));
        assert!(tx.down_reach90_us.count > 0 && tx.steady_reach90_us.count > 0);
        let record = &s.crashes[0];
        assert_eq!(record.noticed.len(), 1);
        assert_eq!(record.noticed[0].after_ms, 500.0);
        assert_eq!(
            record.not_noticed,
            [2],
            "node 2 never gave the connection up"
        );
        let first = record.first_delivery_ms.expect("recovered and delivered");
        assert!((100.0..200.0).contains(&first), "{first}");
        assert_eq!(record.at_s, 1.0, "from the start of the measured window");
    }

    #[test]
    fn a_node_that_crashes_twice_is_down_only_until_each_recovery_that_is_not_its_last() {
        let plan = example_plan();
        let first = ObservedCrash {
            node: 1,
            scheduled: true,
            at: MS(1500),
            recovered: Some(S(2)),
        };
        let second = ObservedCrash {
            at: S(3),
            recovered: Some(MS(3500)),
            ..first
        };
        let crashes = [first, second];
        // Node 1's surviving report is its last life, from 3.6 s.
        let reps = reports(&plan, &crashes, MS(3600), |_, _, _| false);
        let s = summarize(&plan, &crashes, &reps);
        let block = &s.classes[0];
        let down = count(&plan, 0, 0, MS(1500), S(2)) + count(&plan, 0, 0, S(3), MS(3600));
        assert_eq!(
            block.lost_to_crash, down,
            "the two outages, not 1.5 s to 3.6 s"
        );
        assert_eq!(
            block.unobserved,
            count(&plan, 0, 0, plan.warmup, MS(1500)) + count(&plan, 0, 0, S(2), S(3)),
            "before the first crash, and the life between the two"
        );
        assert_eq!(
            s.crashes[0].first_delivery_ms, None,
            "that life's records died"
        );
        assert!(s.crashes[1].first_delivery_ms.is_some());
    }

    #[test]
    fn a_pair_missing_far_from_any_crash_is_the_stacks_loss() {
        let plan = example_plan();
        let crash = ObservedCrash {
            node: 1,
            scheduled: false,
            at: S(4),
            recovered: None,
        };
        let reps = reports(&plan, &[crash], S(99), |r, o, t| {
            r == 2 && o == 0 && t >= MS(1500) && t < MS(1800)
        });
        let reps: Vec<NodeReport> = reps.into_iter().filter(|r| r.index != 1).collect();
        let s = summarize(&plan, &[crash], &reps);
        let block = &s.classes[0];
        assert_eq!(block.lost_by_stack, count(&plan, 0, 0, MS(1500), MS(1800)));
        // Node 1 never came back: everything to it from the crash on is the crash's.
        assert_eq!(
            block.lost_to_crash,
            count(&plan, 0, 0, S(4), plan.send_end())
        );
        assert!(!s.crashes[0].scheduled && s.crashes[0].recovered_at_s.is_none());
    }
}
