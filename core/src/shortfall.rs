//! Which nodes an open-loop class's objects never reached, and the likeliest why: from the
//! nodes' own reports, without I/O.

use crate::{control::NodeReport, schema::NodeShortfall, workload::WorkloadPlan};

/// Nodes listed at most per class, the ones that missed most first.
pub const LISTED: usize = 10;

/// For open-loop class `class`: every node that received fewer of the measured objects than
/// were meant for it, with how many it missed and why, most first (at most [`LISTED`]).
pub fn nodes_short(plan: &WorkloadPlan, reports: &[NodeReport], class: u8) -> Vec<NodeShortfall> {
    let receivers = plan.receivers_per_object().max(1) as u64;
    let originated = |r: &NodeReport| {
        r.classes
            .get(class as usize)
            .map_or(0, |c| c.sent / receivers)
    };
    let total: u64 = reports.iter().map(originated).sum();
    let mut short: Vec<NodeShortfall> = reports
        .iter()
        .filter_map(|r| {
            let got = r.classes.get(class as usize).map_or(0, |c| c.received);
            let missed = total.saturating_sub(originated(r)).saturating_sub(got);
            (missed > 0).then(|| NodeShortfall {
                node: r.index,
                missed,
                why: why(plan, r),
            })
        })
        .collect();
    short.sort_by(|a, b| b.missed.cmp(&a.missed).then(a.node.cmp(&b.node)));
    short.truncate(LISTED);
    short
}

fn why(plan: &WorkloadPlan, r: &NodeReport) -> String {
    if r.error_count > 0 {
        return format!(
            "{} stream errors at the node (first: {})",
            r.error_count,
            r.errors.first().map_or("", String::as_str)
        );
    }
    let steps = plan.churn.steps_of(r.index).count();
    if steps > 0 {
        return format!("churn reconfigured it {steps} times: peers were away for a while");
    }
    match plan.fanout.graph.neighbours(r.index).len() {
        0 => "it has no peers on the graph".into(),
        _ => "no copy arrived before the drain ended: still in flight behind slower hops".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{control::ClassCounters, workload::example_plan};

    fn report(index: u32, sent: u64, received: u64, errors: &[&str]) -> NodeReport {
        let mut classes = vec![ClassCounters::default(); 3];
        classes[0].sent = sent;
        classes[0].received = received;
        NodeReport {
            index,
            classes,
            error_count: errors.len() as u64,
            errors: errors.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_nodes_that_missed_objects_are_named_with_a_reason() {
        // 3 nodes; node 0 originated 10 objects, each meant for 2 receivers.
        let plan = example_plan();
        let reports = [
            report(0, 20, 0, &[]),
            report(1, 0, 10, &[]),
            report(2, 0, 7, &["receiving from node 0: reset"]),
        ];
        let short = nodes_short(&plan, &reports, 0);
        assert_eq!(short.len(), 1);
        assert_eq!((short[0].node, short[0].missed), (2, 3));
        assert!(short[0].why.contains("1 stream errors"), "{}", short[0].why);
        let quiet = [
            report(0, 20, 0, &[]),
            report(1, 0, 9, &[]),
            report(2, 0, 10, &[]),
        ];
        let short = nodes_short(&plan, &quiet, 0);
        assert_eq!((short[0].node, short[0].missed), (1, 1));
        assert!(short[0].why.contains("drain"), "{}", short[0].why);
    }
}
