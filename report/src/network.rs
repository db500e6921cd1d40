//! Reach across the network, per stack and class: how long an object took to reach 90% and
//! all of the nodes, over how many hops, with how many duplicate copies per useful delivery,
//! beside what the simulator predicts for the same graph and links before any stack's cost.
//! With two or more repetitions each figure carries its bootstrap 95% interval.

use crate::{
    schema::{ClassSummary, RepetitionSummary, SimulatedClass},
    stats::{self, Estimate},
    summary::{fmt_us, LoadedRun},
};

pub const HEADERS: [&str; 10] = [
    "stack",
    "class",
    "reach 90% p50",
    "reach 90% p99",
    "reach 100% p50",
    "reach 100% p99",
    "predicted 90% / 100% p50",
    "hops mean (max)",
    "duplicates per delivery",
    "objects short of 100%",
];

/// Measured over predicted beyond which a row gets an explanation.
const FAR_FROM_PREDICTION: f64 = 2.0;
/// A simulated reach this close to the prediction (as a share of it) agrees with it.
const WITHIN_PREDICTION: f64 = 0.05;

pub(crate) fn reach(c: &ClassSummary, share: &str, p99: bool) -> Option<f64> {
    let p = c.reach_us.get(share)?;
    (p.count > 0).then_some(if p99 { p.p99 } else { p.p50 } as f64)
}

fn mean_hops(c: &ClassSummary) -> Option<f64> {
    let n: u64 = c.hops.values().sum();
    (n > 0).then(|| {
        c.hops
            .iter()
            .map(|(h, k)| *h as f64 * *k as f64)
            .sum::<f64>()
            / n as f64
    })
}

fn duplicates_per_delivery(c: &ClassSummary) -> Option<f64> {
    (c.delivered > 0).then(|| c.duplicates as f64 / c.delivered as f64)
}

fn us(e: &Estimate) -> String {
    match e.ci95 {
        Some((lo, hi)) => format!(
            "{} ({}–{})",
            fmt_us(e.point as u64),
            fmt_us(lo as u64),
            fmt_us(hi as u64)
        ),
        None => fmt_us(e.point as u64),
    }
}

fn plain(e: &Estimate, digits: usize) -> String {
    match e.ci95 {
        Some((lo, hi)) => format!("{:.digits$} ({lo:.digits$}–{hi:.digits$})", e.point),
        None => format!("{:.digits$}", e.point),
    }
}

/// Each repetition's value for `stack` and `class`, as an estimate; "–" when none has one.
fn across(
    reps: &[&RepetitionSummary],
    class: &str,
    f: impl Fn(&ClassSummary) -> Option<f64>,
    show: impl Fn(&Estimate) -> String,
) -> String {
    let v: Vec<f64> = reps
        .iter()
        .filter_map(|r| r.classes.iter().find(|c| c.name == class))
        .filter_map(&f)
        .collect();
    if v.is_empty() {
        "–".into()
    } else {
        show(&stats::estimate(&v))
    }
}

fn predicted<'a>(run: &'a LoadedRun, class: &str) -> Option<&'a SimulatedClass> {
    run.simulation
        .as_ref()?
        .classes
        .iter()
        .find(|c| c.class == class)
}

fn predicted_cell(p: Option<&SimulatedClass>) -> String {
    let Some(p) = p else { return "–".into() };
    let at = |share: &str| p.reach_us.get(share).filter(|r| r.count > 0).map(|r| r.p50);
    match (at("90%"), at("100%")) {
        (Some(a), Some(b)) => format!("{} / {}", fmt_us(a), fmt_us(b)),
        _ => "–".into(),
    }
}

/// The stacks of the run in order, each with its repetitions.
fn by_stack(run: &LoadedRun) -> Vec<(String, Vec<&RepetitionSummary>)> {
    let mut out: Vec<(String, Vec<&RepetitionSummary>)> = vec![];
    for r in &run.repetitions {
        match out.iter_mut().find(|(s, _)| *s == r.stack) {
            Some((_, v)) => v.push(r),
            None => out.push((r.stack.clone(), vec![r])),
        }
    }
    out
}

/// Open-loop classes of the run (backlog is per link and never relayed).
fn classes(run: &LoadedRun) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for c in run.repetitions.iter().flat_map(|r| &r.classes) {
        if !c.bulk && !out.contains(&c.name) {
            out.push(c.name.clone());
        }
    }
    out
}

pub fn rows(run: &LoadedRun) -> Vec<[String; 10]> {
    let mut out = vec![];
    for (stack, reps) in by_stack(run) {
        for class in classes(run) {
            let short = reps
                .iter()
                .filter_map(|r| r.classes.iter().find(|c| c.name == class))
                .filter_map(|c| c.unreached.get("100%"))
                .sum::<u64>();
            out.push([
                stack.clone(),
                class.clone(),
                across(&reps, &class, |c| reach(c, "90%", false), us),
                across(&reps, &class, |c| reach(c, "90%", true), us),
                across(&reps, &class, |c| reach(c, "100%", false), us),
                across(&reps, &class, |c| reach(c, "100%", true), us),
                predicted_cell(predicted(run, &class)),
                {
                    let max = reps
                        .iter()
                        .filter_map(|r| r.classes.iter().find(|c| c.name == class))
                        .filter_map(|c| c.hops.keys().max())
                        .max();
                    let mean = across(&reps, &class, mean_hops, |e| plain(e, 2));
                    match max {
                        Some(m) => format!("{mean} ({m})"),
                        None => mean,
                    }
                },
                across(&reps, &class, duplicates_per_delivery, |e| plain(e, 2)),
                short.to_string(),
            ]);
        }
    }
    out
}

/// Why a stack's measured reach is far above the prediction, where it is.
pub fn explanations(run: &LoadedRun) -> Vec<String> {
    let Some(sim) = &run.simulation else {
        return vec![];
    };
    let mut out = vec![];
    for (stack, reps) in by_stack(run) {
        if is_simulated(&stack) {
            // No CPU to wait for: the comparison with namespaces explains these.
            continue;
        }
        for p in &sim.classes {
            let Some(predicted) = p.reach_us.get("100%").filter(|r| r.count > 0) else {
                continue;
            };
            let measured: Vec<f64> = reps
                .iter()
                .filter_map(|r| r.classes.iter().find(|c| c.name == p.class))
                .filter_map(|c| reach(c, "100%", false))
                .collect();
            if measured.is_empty() || predicted.p50 == 0 {
                continue;
            }
            let m = stats::estimate(&measured).point;
            let ratio = m / predicted.p50 as f64;
            if ratio < FAR_FROM_PREDICTION {
                continue;
            }
            let busy = reps.iter().map(|r| r.cpu_busy_fraction).sum::<f64>() / reps.len() as f64;
            let hop = reps
                .iter()
                .filter_map(|r| r.classes.iter().find(|c| c.name == p.class))
                .map(|c| c.hop_latency_us.p50)
                .max()
                .unwrap_or(0);
            out.push(format!(
                "{stack} {}: reach 100% p50 {} is {ratio:.1}× the prediction {}. The simulator charges the links' delay, serialization on the uplinks and {:.0} µs per object sent or received; each measured hop took {} (p50), and the run kept {:.0}% of the CPUs busy. The simulator leaves out congestion control (an object larger than an idle connection's window waits for round trips), loss recovery, waiting for a CPU and the stack's own processing per hop; the difference is theirs.",
                p.class,
                fmt_us(m as u64),
                fmt_us(predicted.p50),
                sim.per_object_us,
                fmt_us(hop),
                busy * 100.0,
            ));
        }
    }
    out
}

/// Whether a combined report's entry ran on a simulated network.
fn is_simulated(label: &str) -> bool {
    label.contains(&format!("@{}", crate::document::SIMULATED_MARK))
}

/// The stack of a combined report's entry ("quic-tls @shadow 2026…" is quic-tls).
fn stack_of(label: &str) -> &str {
    label.split(" @").next().unwrap_or(label)
}

/// Each stack and class that ran both in namespaces and on Shadow's simulated network: the
/// two reach times and the prediction, and what the differences are made of.
pub fn cross_validation(run: &LoadedRun) -> Vec<String> {
    let stacks = by_stack(run);
    let mut out = vec![];
    for (label, reps) in stacks.iter().filter(|(l, _)| !is_simulated(l)) {
        let Some((_, sim_reps)) = stacks
            .iter()
            .find(|(l, _)| is_simulated(l) && stack_of(l) == stack_of(label))
        else {
            continue;
        };
        for class in classes(run) {
            let at = |reps: &[&RepetitionSummary]| -> Option<f64> {
                let v: Vec<f64> = reps
                    .iter()
                    .filter_map(|r| r.classes.iter().find(|c| c.name == class))
                    .filter_map(|c| reach(c, "100%", false))
                    .collect();
                (!v.is_empty()).then(|| stats::estimate(&v).point)
            };
            let (Some(ns), Some(sh)) = (at(reps), at(sim_reps)) else {
                continue;
            };
            let predicted = predicted(run, &class)
                .and_then(|p| p.reach_us.get("100%").filter(|r| r.count > 0))
                .map(|r| r.p50 as f64);
            let cpu = ns - sh;
            let mut line = format!(
                "{} {class}: reach 100% p50 {} in namespaces, {} on Shadow's network",
                stack_of(label),
                fmt_us(ns.max(0.0) as u64),
                fmt_us(sh.max(0.0) as u64),
            );
            if let Some(p) = predicted {
                line.push_str(&format!(", {} predicted", fmt_us(p as u64)));
            }
            line.push_str(&format!(
                ". The {}, {} ({:.0}% of the namespace time), is CPU: waiting for a core, crypto and each hop's processing, which Shadow models as free",
                if cpu >= 0.0 { "difference" } else { "difference (Shadow slower)" },
                fmt_us(cpu.abs() as u64),
                100.0 * cpu / ns.max(1.0),
            ));
            match predicted {
                Some(p) if (sh - p).abs() <= WITHIN_PREDICTION * p => line.push_str(&format!(
                    "; Shadow is within {:.0}% of the prediction: with the CPU free, the simulator's model of links and relaying holds.",
                    WITHIN_PREDICTION * 100.0
                )),
                Some(p) => line.push_str(&format!(
                    "; Shadow's {} {} the prediction is the transport's own (handshakes, congestion control, loss recovery), which the simulator leaves out.",
                    fmt_us((sh - p).abs() as u64),
                    if sh > p { "above" } else { "below" }
                )),
                None => line.push('.'),
            }
            out.push(line);
        }
    }
    out
}

/// One line per stack, repetition and class whose objects missed nodes: which, and why.
pub fn shortfalls(run: &LoadedRun) -> Vec<String> {
    run.repetitions
        .iter()
        .flat_map(|r| {
            r.classes
                .iter()
                .filter(|c| !c.nodes_short.is_empty())
                .map(move |c| {
                    let nodes: Vec<String> = c
                        .nodes_short
                        .iter()
                        .map(|n| format!("node {} missed {} ({})", n.node, n.missed, n.why))
                        .collect();
                    format!(
                        "{} rep {} {}: objects that never reached every node: {}.",
                        r.stack,
                        r.repetition,
                        c.name,
                        nodes.join("; ")
                    )
                })
        })
        .collect()
}

/// The section, tables drawn by `table`; `None` when no class reached more than one node.
pub fn section(run: &LoadedRun, table: crate::links::TableFn) -> Option<String> {
    let rows = rows(run);
    let any_reach = run
        .repetitions
        .iter()
        .flat_map(|r| &r.classes)
        .any(|c| !c.reach_us.is_empty());
    if rows.is_empty() || !any_reach {
        return None;
    }
    let mut s = String::from(
        "Time for one object to reach 90% and 100% of the other nodes (p50 and p99 over objects), from its intended send at the origin; hops and duplicate copies per useful delivery; and the simulator's prediction for the same graph and links, before any stack's cost.\n\n",
    );
    s.push_str(&table(
        &HEADERS,
        &rows.into_iter().map(Vec::from).collect::<Vec<_>>(),
    ));
    if let Some(sim) = &run.simulation {
        s.push_str(&format!(
            "\nThe simulator ran the same node logic over the link plan in {:.2} s.\n",
            sim.wall_seconds
        ));
    }
    let cross = cross_validation(run);
    if !cross.is_empty() {
        s.push_str("\nNamespaces against Shadow (the same scenario; entries labelled @shadow ran on its simulated network):\n");
        for c in cross {
            s.push_str(&format!("\n{c}\n"));
        }
    }
    for e in explanations(run) {
        s.push_str(&format!("\n{e}\n"));
    }
    for line in shortfalls(run) {
        s.push_str(&format!("\n{line}\n"));
    }
    Some(s)
}

/// One line per stack and class for the terminal: reach 90% and 100% p50 beside the
/// prediction.
pub fn terminal_lines(run: &LoadedRun) -> String {
    let any_relay = run
        .repetitions
        .iter()
        .flat_map(|r| &r.classes)
        .any(|c| c.hops.keys().any(|h| *h > 1));
    if !any_relay {
        return String::new();
    }
    rows(run)
        .into_iter()
        .map(|r| {
            format!(
                "reach {} {}: 90% p50 {}, 100% p50 {} (predicted {}); hops {}; duplicates/delivery {}\n",
                r[0], r[1], r[2], r[4], r[6], r[7], r[8]
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Percentiles, RunManifest, Simulation};

    fn p50(v: u64) -> Percentiles {
        Percentiles {
            count: 10,
            p50: v,
            p99: v * 2,
            ..Default::default()
        }
    }

    fn run(measured_100: u64) -> LoadedRun {
        let class = ClassSummary {
            name: "block".into(),
            delivered: 630,
            duplicates: 1260,
            hops: [(1, 63), (2, 400), (3, 167)].into_iter().collect(),
            reach_us: [
                ("90%".into(), p50(7000)),
                ("100%".into(), p50(measured_100)),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        LoadedRun {
            manifest: RunManifest::default(),
            repetitions: vec![RepetitionSummary {
                stack: "quic-tls".into(),
                classes: vec![class],
                cpu_busy_fraction: 0.4,
                ..Default::default()
            }],
            links: None,
            floor: None,
            simulation: Some(Simulation {
                per_object_us: 20.0,
                classes: vec![SimulatedClass {
                    class: "block".into(),
                    reach_us: [("90%".into(), p50(900)), ("100%".into(), p50(1000))]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn rows_show_hops_duplicates_and_the_prediction() {
        let r = &rows(&run(8000))[0];
        assert_eq!(r[7], "2.17 (3)", "mean hops (63 + 800 + 501) / 630, max 3");
        assert_eq!(r[8], "2.00");
        assert_eq!(r[6], "900µs / 1000µs");
    }

    #[test]
    fn a_large_difference_is_explained_and_a_small_one_is_not() {
        let far = explanations(&run(8000));
        assert_eq!(far.len(), 1);
        assert!(far[0].contains("8.0×"), "{}", far[0]);
        assert!(far[0].contains("40%"), "{}", far[0]);
        assert!(explanations(&run(1500)).is_empty());
    }

    /// A stack measured in namespaces and on Shadow: the difference is put down to CPU,
    /// Shadow's excess over the prediction to the transport; the Shadow row gets no CPU
    /// explanation of its own.
    #[test]
    fn namespaces_and_shadow_are_set_side_by_side() {
        let mut r = run(8000);
        let mut shadow = run(3000).repetitions.remove(0);
        shadow.stack = format!("quic-tls @{}2026", crate::document::SIMULATED_MARK);
        r.repetitions[0].stack = "quic-tls @2026".into();
        r.repetitions.push(shadow);
        let lines = cross_validation(&r);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert!(l.starts_with("quic-tls block: reach 100% p50 8000µs in namespaces, 3000µs on Shadow's network, 1000µs predicted"), "{l}");
        assert!(
            l.contains("difference, 5000µs (62% of the namespace time), is CPU"),
            "{l}"
        );
        assert!(l.contains("Shadow's 2000µs above the prediction"), "{l}");
        let explained = explanations(&r);
        assert_eq!(explained.len(), 1, "only the namespace row: {explained:?}");
        assert!(
            explained[0].starts_with("quic-tls @2026"),
            "{}",
            explained[0]
        );
        // Shadow at the prediction agrees with it.
        r.repetitions[1].classes[0]
            .reach_us
            .insert("100%".into(), p50(1030));
        let l = &cross_validation(&r)[0];
        assert!(l.contains("Shadow is within 5% of the prediction"), "{l}");
    }
}
