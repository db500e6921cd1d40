//! Figures the review's sections share: which stacks are candidates, the most urgent class,
//! estimates with their intervals, and how they read.

use super::{Block, Role, Section};
use crate::{
    stats::{self, Estimate, Metric},
    summary::fmt_us,
    LoadedRun,
};

/// Stacks that ran in `run`, the insecure control excluded, in the run's order.
pub fn candidates(run: &LoadedRun) -> Vec<String> {
    run.manifest
        .stacks
        .iter()
        .filter(|s| s.repetitions_done > 0 && !s.insecure)
        .map(|s| s.name.clone())
        .collect()
}

/// The run's classes, most urgent (highest priority) first.
pub fn classes(run: &LoadedRun) -> Vec<(String, bool)> {
    let mut v: Vec<(i32, String, bool)> = run
        .repetitions
        .first()
        .map(|r| {
            r.classes
                .iter()
                .map(|c| (c.priority, c.name.clone(), c.bulk))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|(p, _, _)| -p);
    v.into_iter().map(|(_, n, b)| (n, b)).collect()
}

/// The most urgent class that is not bulk: what the review's sentences are about.
pub fn urgent_class(run: &LoadedRun) -> Option<String> {
    classes(run)
        .into_iter()
        .find(|(_, bulk)| !bulk)
        .map(|(n, _)| n)
}

/// The class whose reach across a network the review is about: blocks where the scenario
/// has them, else the most urgent.
pub fn reach_class(run: &LoadedRun) -> Option<String> {
    classes(run)
        .into_iter()
        .find(|(n, _)| n == "block")
        .map(|(n, _)| n)
        .or_else(|| urgent_class(run))
}

/// Each repetition's p50 time for `stack`'s objects of `class` to reach `share` of the nodes.
pub fn reach_values(run: &LoadedRun, stack: &str, class: &str, share: &str) -> Vec<f64> {
    run.repetitions
        .iter()
        .filter(|r| r.stack == stack)
        .filter_map(|r| r.classes.iter().find(|c| c.name == class))
        .filter_map(|c| crate::network::reach(c, share, false))
        .collect()
}

/// The mean over repetitions of `metric`, with its interval; `None` where nothing was
/// delivered.
pub fn est(run: &LoadedRun, stack: &str, class: &str, metric: Metric) -> Option<Estimate> {
    let v = stats::values(run, stack, class, metric);
    (!v.is_empty()).then(|| stats::estimate(&v))
}

/// `new` against `base` (0.1 = 10% higher), with its interval.
pub fn change(
    run: &LoadedRun,
    base: &str,
    new: &str,
    class: &str,
    metric: Metric,
) -> Option<Estimate> {
    let b = stats::values(run, base, class, metric);
    let n = stats::values(run, new, class, metric);
    (!b.is_empty() && !n.is_empty()).then(|| stats::relative_change(&b, &n))
}

/// Whether an interval excludes zero (a change) or exists at all.
pub fn significant(e: &Estimate) -> bool {
    e.ci95.is_some_and(|(lo, hi)| lo * hi > 0.0)
}

/// A latency estimate: "1.2ms [1.1ms, 1.4ms]", or "(n=1)" without an interval.
pub fn lat(e: &Estimate) -> String {
    let us = |x: f64| fmt_us(x.max(0.0).round() as u64);
    match e.ci95 {
        Some((lo, hi)) => format!("{} [{}, {}]", us(e.point), us(lo), us(hi)),
        None => format!("{} (n={})", us(e.point), e.n),
    }
}

/// A relative change: "+12% [+4%, +20%]", or "+12% (n=1, no interval)".
pub fn pct(e: &Estimate) -> String {
    let p = |x: f64| format!("{:+.0}%", x * 100.0);
    match e.ci95 {
        Some((lo, hi)) => format!("{} [{}, {}]", p(e.point), p(lo), p(hi)),
        None => format!("{} (n={}, no interval)", p(e.point), e.n),
    }
}

/// How `e` (a change of `new` against `base`) reads in a sentence.
pub fn verdict(e: &Estimate, new: &str, base: &str) -> String {
    if significant(e) {
        format!(
            "{new} is {} than {base} ({})",
            if e.point > 0.0 { "higher" } else { "lower" },
            pct(e)
        )
    } else {
        format!(
            "{new} and {base} show no significant difference ({})",
            pct(e)
        )
    }
}

/// Where a run came from, for the evidence's first line.
pub fn source(role: Role, run: &LoadedRun) -> String {
    format!(
        "{}: run {} (scenario {}, {} repetition(s) per stack){}",
        role.describe(),
        run.manifest.run_id,
        run.manifest.scenario,
        run.manifest
            .stacks
            .iter()
            .map(|s| s.repetitions_done)
            .max()
            .unwrap_or(0),
        match (&run.manifest.emulated_cpu, &run.manifest.simulated_network) {
            (Some(_), _) => "; EMULATED CPU: compare ratios only",
            (_, Some(_)) => "; SIMULATED NETWORK: CPU modelled as infinitely fast",
            _ => "",
        }
    )
}

/// A section for a question whose runs are missing: which scenarios answer it.
pub fn unanswered(id: &'static str, title: &str, roles: &[Role]) -> Section {
    let which: Vec<String> = roles
        .iter()
        .filter_map(|r| Role::SUITE.iter().find(|(s, _)| s == r))
        .map(|(_, scenario)| format!("scenarios/{scenario}.toml"))
        .collect();
    Section {
        id,
        title: title.to_owned(),
        answer: format!(
            "Not answered: no run here measured it. `stackbench review` runs {}; or pass such a run with --from.",
            which.join(", ")
        ),
        body: vec![],
        conditions: vec![],
        charts: vec![],
    }
}

/// A table block from string rows.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> Block {
    Block::Table {
        headers: headers.iter().map(|h| h.to_string()).collect(),
        rows,
    }
}
