//! Networks of several stacks: mixes at steady state beside their stacks alone (does the
//! slower stack set the pace?), and rolling upgrades, strategy against strategy: what each
//! lost, how far reach times moved during the transition against steady state before and
//! after, how long it took, and what running two stacks cost.

use crate::{
    plots::{Axis, Chart, Series},
    schema::{
        network::{PhaseSummary, UpgradeSummary},
        RepetitionSummary,
    },
    stats,
    summary::{fmt_us, LoadedRun},
};

pub const STRATEGY_HEADERS: [&str; 9] = [
    "upgrade",
    "strategy",
    "took",
    "deliveries lost during",
    "new connections (failed)",
    "handshake on new stack p50",
    "host CPU before / during / after",
    "node CPU during vs steady",
    "wire bytes during vs steady",
];

pub const PHASE_HEADERS: [&str; 9] = [
    "upgrade",
    "class",
    "phase",
    "objects",
    "deliveries lost (partition model)",
    "latency p99",
    "reach 90% p50",
    "reach 90% p99",
    "reach 100% p99 (objects short)",
];

pub const MIX_HEADERS: [&str; 5] = [
    "network",
    "nodes",
    "class",
    "reach 90% p50",
    "reach 100% p50",
];

fn upgrades(run: &LoadedRun) -> Vec<(&RepetitionSummary, &UpgradeSummary)> {
    run.repetitions
        .iter()
        .filter_map(|r| Some((r, r.network.as_ref()?.upgrade.as_ref()?)))
        .collect()
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// `during` against the mean of `before` and `after`, as a signed percentage.
fn vs_steady(u: &UpgradeSummary, f: impl Fn(&PhaseSummary) -> f64) -> String {
    let (Some(b), Some(d), Some(a)) = (u.phase("before"), u.phase("during"), u.phase("after"))
    else {
        return "–".into();
    };
    let steady = (f(b) + f(a)) / 2.0;
    if steady <= 0.0 {
        return "–".into();
    }
    format!("{:+.0}%", (f(d) / steady - 1.0) * 100.0)
}

fn lost_during(u: &UpgradeSummary) -> u64 {
    u.phase("during")
        .map_or(0, |p| p.classes.iter().map(|c| c.lost).sum())
}

/// What the partition model says the transition must lose at least.
fn predicted_during(u: &UpgradeSummary) -> u64 {
    u.phase("during")
        .map_or(0, |p| p.classes.iter().map(|c| c.predicted_lost).sum())
}

pub fn strategy_rows(run: &LoadedRun) -> Vec<Vec<String>> {
    upgrades(run)
        .into_iter()
        .map(|(r, u)| {
            let host = |name: &str| {
                u.phase(name)
                    .map_or("–".into(), |p| pct(p.host_cpu_fraction))
            };
            vec![
                format!("{} rep {}", r.stack, r.repetition),
                format!("{} ({} → {})", u.strategy, u.from, u.to),
                if u.unfinished_nodes > 0 {
                    format!("unfinished at {} nodes", u.unfinished_nodes)
                } else {
                    format!("{:.2} s", u.duration_s())
                },
                lost_during(u).to_string(),
                format!("{} ({})", u.connections, u.dial_failures),
                fmt_us(u.handshake_us.p50),
                format!(
                    "{} / {} / {}",
                    host("before"),
                    host("during"),
                    host("after")
                ),
                vs_steady(u, |p| p.node_cpu_cores),
                vs_steady(u, |p| p.wire_bytes_per_s),
            ]
        })
        .collect()
}

pub fn phase_rows(run: &LoadedRun) -> Vec<Vec<String>> {
    let mut out = vec![];
    for (r, u) in upgrades(run) {
        let classes: Vec<&str> = u
            .phases
            .first()
            .map(|p| p.classes.iter().map(|c| c.class.as_str()).collect())
            .unwrap_or_default();
        for class in classes {
            for p in &u.phases {
                let Some(c) = p.classes.iter().find(|c| c.class == class) else {
                    continue;
                };
                let at = |x: &crate::schema::Percentiles, v: u64| {
                    if x.count > 0 {
                        fmt_us(v)
                    } else {
                        "–".into()
                    }
                };
                out.push(vec![
                    format!("{} rep {}", r.stack, r.repetition),
                    class.to_owned(),
                    format!("{} ({:.1}–{:.1} s)", p.phase, p.from_s, p.to_s),
                    c.objects.to_string(),
                    format!("{} of {} ({})", c.lost, c.expected, c.predicted_lost),
                    at(&c.latency_us, c.latency_us.p99),
                    at(&c.reach_90_us, c.reach_90_us.p50),
                    at(&c.reach_90_us, c.reach_90_us.p99),
                    format!(
                        "{} ({})",
                        at(&c.reach_100_us, c.reach_100_us.p99),
                        c.unreached_100
                    ),
                ]);
            }
        }
    }
    out
}

/// Each mix beside the stacks it is made of, when the run measured them alone too.
pub fn mix_rows(run: &LoadedRun) -> Vec<Vec<String>> {
    let mixes: Vec<&RepetitionSummary> = run
        .repetitions
        .iter()
        .filter(|r| r.network.as_ref().is_some_and(|n| n.upgrade.is_none()))
        .collect();
    let mut names: Vec<(String, String)> = vec![];
    for m in &mixes {
        let n = m
            .network
            .as_ref()
            .map(|n| n.composition.clone())
            .unwrap_or_default();
        if !names.iter().any(|(s, _)| *s == m.stack) {
            names.push((m.stack.clone(), n));
        }
        for s in m.network.iter().flat_map(|n| &n.stacks) {
            if !names.iter().any(|(x, _)| x == s) && run.repetitions.iter().any(|r| r.stack == *s) {
                names.push((s.clone(), "every node".into()));
            }
        }
    }
    let mut out = vec![];
    let classes: Vec<String> = mixes
        .first()
        .map(|m| {
            m.classes
                .iter()
                .filter(|c| !c.bulk)
                .map(|c| c.name.clone())
                .collect()
        })
        .unwrap_or_default();
    for class in &classes {
        for (stack, nodes) in &names {
            let reach = |share: &str| {
                let v: Vec<f64> = run
                    .repetitions
                    .iter()
                    .filter(|r| r.stack == *stack)
                    .filter_map(|r| r.classes.iter().find(|c| c.name == *class))
                    .filter_map(|c| c.reach_us.get(share).filter(|p| p.count > 0))
                    .map(|p| p.p50 as f64)
                    .collect();
                if v.is_empty() {
                    return "–".to_string();
                }
                let e = stats::estimate(&v);
                match e.ci95 {
                    Some((lo, hi)) => format!(
                        "{} ({}–{})",
                        fmt_us(e.point as u64),
                        fmt_us(lo as u64),
                        fmt_us(hi as u64)
                    ),
                    None => fmt_us(e.point as u64),
                }
            };
            out.push(vec![
                stack.clone(),
                nodes.clone(),
                class.clone(),
                reach("90%"),
                reach("100%"),
            ]);
        }
    }
    out
}

/// Setup dials that fell back from a node's preferred stack, per repetition.
pub fn fallbacks(run: &LoadedRun) -> Vec<String> {
    run.repetitions
        .iter()
        .filter_map(|r| Some((r, r.network.as_ref()?)))
        .filter(|(_, n)| !n.fallbacks.is_empty())
        .map(|(r, n)| {
            format!(
                "{} rep {}: {} setup dial(s) failed on the preferred stack and fell back; the first: {}",
                r.stack,
                r.repetition,
                n.fallbacks.len(),
                n.fallbacks[0]
            )
        })
        .collect()
}

/// One sentence per upgrade: what it lost and how far reach moved, for the terminal and
/// the top of the section.
/// "took 7.60 s", or how many nodes it had not reached.
fn how_long(u: &UpgradeSummary) -> String {
    if u.unfinished_nodes > 0 {
        format!("did not finish at {} nodes", u.unfinished_nodes)
    } else {
        format!("took {:.2} s", u.duration_s())
    }
}

/// One short clause per upgrade: its strategy, how long it took and what it lost.
pub fn briefs(run: &LoadedRun) -> Vec<String> {
    upgrades(run)
        .into_iter()
        .map(|(r, u)| {
            format!(
                "{} ({} → {}, {}) {} and lost {} deliveries while it ran, against {} the plan itself rules out",
                u.strategy,
                u.from,
                u.to,
                r.stack,
                how_long(u),
                lost_during(u),
                predicted_during(u)
            )
        })
        .collect()
}

pub fn sentences(run: &LoadedRun) -> Vec<String> {
    upgrades(run)
        .into_iter()
        .map(|(r, u)| {
            let first = u
                .phases
                .first()
                .and_then(|p| p.classes.first())
                .map(|c| c.class.clone())
                .unwrap_or_default();
            let r90 = |name: &str| {
                u.phase(name)
                    .and_then(|p| p.classes.iter().find(|c| c.class == first))
                    .filter(|c| c.reach_90_us.count > 0)
                    .map_or("–".into(), |c| fmt_us(c.reach_90_us.p99))
            };
            format!(
                "upgrade {} rep {} ({}, {} → {}): {} and lost {} deliveries while it ran (a partition model of the plan: {}); {first} reach 90% p99 {} before, {} during, {} after; node CPU during {} and wire bytes {} against steady state.",
                r.stack,
                r.repetition,
                u.strategy,
                u.from,
                u.to,
                how_long(u),
                lost_during(u),
                predicted_during(u),
                r90("before"),
                r90("during"),
                r90("after"),
                vs_steady(u, |p| p.node_cpu_cores),
                vs_steady(u, |p| p.wire_bytes_per_s),
            )
        })
        .collect()
}

/// The section, tables drawn by `table`; `None` when no network mixed stacks.
pub fn section(run: &LoadedRun, table: crate::links::TableFn) -> Option<String> {
    let mixes = mix_rows(run);
    let strategies = strategy_rows(run);
    if mixes.is_empty() && strategies.is_empty() {
        return None;
    }
    let mut s = String::new();
    if !mixes.is_empty() {
        s.push_str("Mixed networks at steady state, beside each of their stacks on every node: a node runs the stacks listed in preference order and dials a neighbour on the first one both speak, so whether the slower stack sets the pace shows in how far the mix's reach times sit from each stack's own.\n\n");
        s.push_str(&table(&MIX_HEADERS, &mixes));
    }
    for line in fallbacks(run) {
        s.push_str(&format!("\n{line}\n"));
    }
    if !strategies.is_empty() {
        s.push_str("\nRolling upgrades, strategy against strategy. Phases split objects by their intended send time: before the first node began, until the last was done (dual: its old stack dropped; restart: its last connection on the new stack up), and after. \"vs steady\" compares the transition with the mean of before and after. The partition model counts the deliveries the plan itself rules out: receivers with no path of neighbours sharing a stack to the origin when the object was due (a restart cuts nodes off; dual never does); measured losses above it are the stacks' and the reconnects'.\n\n");
        for line in sentences(run) {
            s.push_str(&format!("{line}\n\n"));
        }
        s.push_str(&table(&STRATEGY_HEADERS, &strategies));
        s.push_str("\nPer class and phase:\n\n");
        s.push_str(&table(&PHASE_HEADERS, &phase_rows(run)));
    }
    Some(s)
}

/// One line per upgrade for the terminal.
pub fn terminal_lines(run: &LoadedRun) -> String {
    sentences(run)
        .into_iter()
        .chain(fallbacks(run))
        .map(|l| l + "\n")
        .collect()
}

/// The upgrades' progress: share of nodes on the new stack, and running both, over time.
pub fn timeline_chart(run: &LoadedRun) -> Option<Chart> {
    let mut series = vec![];
    let mut markers = vec![];
    for (r, u) in upgrades(run).into_iter().filter(|(r, _)| r.repetition == 0) {
        let step = |f: &dyn Fn(&crate::schema::network::UpgradePoint) -> f64| {
            let mut pts: Vec<(f64, f64)> = vec![];
            for p in &u.timeline {
                if let Some(last) = pts.last().copied() {
                    pts.push((p.t_s, last.1));
                }
                pts.push((p.t_s, f(p) * 100.0));
            }
            if let Some(last) = pts.last().copied() {
                pts.push((u.phases.last().map_or(last.0, |p| p.to_s), last.1));
            }
            pts
        };
        series.push(Series {
            name: format!("{}: on {}", r.stack, u.to),
            points: step(&|p| p.on_new),
        });
        if u.strategy == "dual" {
            series.push(Series {
                name: format!("{}: running both", r.stack),
                points: step(&|p| p.dual),
            });
        }
        markers.extend([u.began_s, u.finished_s]);
    }
    (!series.is_empty()).then(|| Chart::Lines {
        title: "Upgrade: share of nodes on the new stack (start and end marked)".into(),
        x_desc: "s from the start of sending".into(),
        y_desc: "% of nodes".into(),
        x_axis: Axis::Linear,
        y_axis: Axis::Linear,
        series,
        markers,
    })
}

/// Where the upgrades began and ended on the latency timeline's axis (s after warm-up).
pub fn timeline_marks(run: &LoadedRun) -> Vec<f64> {
    upgrades(run)
        .into_iter()
        .filter(|(r, _)| r.repetition == 0)
        .flat_map(|(_, u)| {
            let warmup = u.phases.first().map_or(0.0, |p| p.from_s);
            [u.began_s - warmup, u.finished_s - warmup]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{
        network::{NetworkSummary, PhaseClass, UpgradePoint},
        ClassSummary, Percentiles, RunManifest,
    };

    fn phase(name: &str, from: f64, to: f64, lost: u64, cpu: f64) -> PhaseSummary {
        PhaseSummary {
            phase: name.into(),
            from_s: from,
            to_s: to,
            host_cpu_fraction: cpu / 2.0,
            node_cpu_cores: cpu,
            wire_bytes_per_s: 1000.0,
            classes: vec![PhaseClass {
                class: "block".into(),
                objects: 10,
                expected: 150,
                delivered: 150 - lost,
                lost,
                reach_90_us: Percentiles {
                    count: 10,
                    p50: 5000,
                    p99: 9000,
                    ..Default::default()
                },
                ..Default::default()
            }],
        }
    }

    fn rep(stack: &str, strategy: &str, lost: u64) -> RepetitionSummary {
        RepetitionSummary {
            stack: stack.into(),
            network: Some(NetworkSummary {
                stacks: vec!["quic-tls".into(), "quic-null+wg-inproc".into()],
                composition: "16 × quic-tls".into(),
                edges: Default::default(),
                fallbacks: vec![],
                upgrade: Some(UpgradeSummary {
                    from: "quic-tls".into(),
                    to: "quic-null+wg-inproc".into(),
                    strategy: strategy.into(),
                    nodes: 16,
                    began_s: 5.0,
                    finished_s: 13.0,
                    connections: 32,
                    phases: vec![
                        phase("before", 2.0, 5.0, 0, 0.3),
                        phase("during", 5.0, 13.0, lost, 0.45),
                        phase("after", 13.0, 22.0, 0, 0.3),
                    ],
                    timeline: vec![
                        UpgradePoint::default(),
                        UpgradePoint {
                            t_s: 5.0,
                            on_new: 1.0,
                            dual: 1.0,
                        },
                    ],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    fn run(reps: Vec<RepetitionSummary>) -> LoadedRun {
        LoadedRun {
            manifest: RunManifest::default(),
            repetitions: reps,
            links: None,
            floor: None,
            simulation: None,
        }
    }

    #[test]
    fn strategies_show_loss_duration_and_overhead_against_steady_state() {
        let r = run(vec![
            rep("up-dual", "dual", 0),
            rep("up-restart", "restart", 40),
        ]);
        let rows = strategy_rows(&r);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][2], "8.00 s");
        assert_eq!(rows[0][3], "0");
        assert_eq!(rows[1][3], "40");
        assert_eq!(rows[0][7], "+50%", "0.45 against (0.3 + 0.3) / 2");
        assert_eq!(rows[0][8], "+0%");
        let said = sentences(&r);
        assert!(said[1].contains("lost 40 deliveries"), "{}", said[1]);
        assert!(said[0].contains("9000µs before"), "{}", said[0]);
        assert_eq!(phase_rows(&r).len(), 6);
        assert!(section(&r, &|_, rows| format!("{} rows\n", rows.len())).is_some());
        assert!(timeline_chart(&r).is_some());
        assert_eq!(timeline_marks(&r), vec![3.0, 11.0, 3.0, 11.0]);
    }

    #[test]
    fn a_mix_sits_beside_its_stacks_and_a_plain_run_has_no_section() {
        let class = |p50: u64| ClassSummary {
            name: "block".into(),
            reach_us: [(
                "90%".to_string(),
                Percentiles {
                    count: 5,
                    p50,
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let single = |stack: &str, p50| RepetitionSummary {
            stack: stack.into(),
            classes: vec![class(p50)],
            ..Default::default()
        };
        let mut mix = single("mixed", 7000);
        mix.network = Some(NetworkSummary {
            stacks: vec!["quic-tls".into(), "quic-null+wg-inproc".into()],
            composition: "8 × quic-tls, 8 × quic-null+wg-inproc + quic-tls".into(),
            edges: Default::default(),
            fallbacks: vec![
                "node 0: connecting to node 1: no answer; fell back to quic-tls".into(),
            ],
            upgrade: None,
        });
        let plain = run(vec![single("quic-tls", 9000)]);
        assert!(section(&plain, &|_, _| String::new()).is_none());
        let r = run(vec![
            single("quic-tls", 9000),
            single("quic-null+wg-inproc", 5000),
            mix,
        ]);
        let rows = mix_rows(&r);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0], "mixed");
        assert_eq!(rows[0][3], "7000µs");
        assert_eq!(rows[1][1], "every node");
        assert_eq!(rows[2][3], "5000µs");
        let said = fallbacks(&r);
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("1 setup dial(s) failed"), "{}", said[0]);
    }
}
