//! The churn part of a report: cold connects, what each underlay step took, disruption of
//! a reconfigured node's other traffic, interface lifecycles and WireGuard rekeys. Tables
//! for Markdown and HTML, event markers for the timeline and the disruption chart.

use crate::{
    links::TableFn,
    plots::{Bar, Chart},
    schema::{Percentiles, RepetitionSummary},
    summary::fmt_us,
    LoadedRun, Report,
};

pub(crate) fn p50_p99(p: &Percentiles) -> String {
    if p.count == 0 {
        return "–".into();
    }
    format!("{} / {}", fmt_us(p.p50), fmt_us(p.p99))
}

/// Event times (s into the measured window) of the run's churn, from its first repetition
/// that has any: every stack runs the same scenario.
pub fn event_times(run: &LoadedRun) -> Vec<f64> {
    run.repetitions
        .iter()
        .find_map(|r| r.churn.as_ref())
        .map(|c| c.events.iter().map(|e| e.at_s).collect())
        .unwrap_or_default()
}

/// p99 latency of `class` outside every event's window beside within one, per stack.
pub fn disruption_bars(report: &Report, class: &str) -> Option<Chart> {
    let mut groups = vec![];
    for e in &report.entries {
        let reps: Vec<&RepetitionSummary> = report
            .run
            .repetitions
            .iter()
            .filter(|r| r.stack == e.label)
            .collect();
        let pick = |steady: bool| -> Vec<f64> {
            reps.iter()
                .filter_map(|r| r.churn.as_ref())
                .filter_map(|c| c.disruption.iter().find(|d| d.class == class))
                .map(|d| {
                    if steady {
                        &d.steady_us
                    } else {
                        &d.disrupted_us
                    }
                })
                .filter(|p| p.count > 0)
                .map(|p| p.p99 as f64)
                .collect()
        };
        let bars: Vec<Bar> = [
            ("p99 steady", pick(true)),
            ("p99 during churn", pick(false)),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(name, v)| {
            let est = crate::stats::estimate(&v);
            Bar {
                name: name.into(),
                value: est.point,
                ci95: est.ci95,
            }
        })
        .collect();
        if !bars.is_empty() {
            groups.push((e.label.clone(), bars));
        }
    }
    (!groups.is_empty()).then(|| Chart::Bars {
        title: format!("{class}: p99 from a reconfigured node to its other peers"),
        y_desc: "latency (µs)".into(),
        log: true,
        groups,
    })
}

/// The churn section: prose lines and tables (each table one line, from `table`).
pub fn section(run: &LoadedRun, table: TableFn) -> Option<String> {
    let reps: Vec<(&RepetitionSummary, &crate::churn_schema::ChurnSummary)> = run
        .repetitions
        .iter()
        .filter_map(|r| r.churn.as_ref().map(|c| (r, c)))
        .collect();
    let lifecycles: Vec<&RepetitionSummary> = run
        .repetitions
        .iter()
        .filter(|r| r.lifecycle.is_some())
        .collect();
    if reps.is_empty() && lifecycles.is_empty() {
        return None;
    }
    let mut s = String::new();
    if let Some((_, c)) = reps.first() {
        let mut kinds: Vec<(String, usize)> = vec![];
        for e in &c.events {
            match kinds.iter_mut().find(|(k, _)| *k == e.kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((e.kind.clone(), 1)),
            }
        }
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n}× {k}")).collect();
        s.push_str(&format!(
            "Events during each repetition: {}. Cold connect runs from the dialler's step (the peer configured on both sides) to the first object's receipt; disruption compares a reconfigured node's objects to its other peers within {:.0} ms of an event against every object outside all windows. Objects in flight on a connection that churn closes are lost and count as lost above.\n",
            list.join(", "),
            c.window_ms
        ));
    }
    // Event kinds in the order the disruption table shows them.
    let mut kinds: Vec<String> = vec![];
    for (_, c) in &reps {
        for e in &c.events {
            if !kinds.contains(&e.kind) {
                kinds.push(e.kind.clone());
            }
        }
    }
    let mut cold = vec![];
    let mut steps = vec![];
    let mut disruption = vec![];
    let mut rekeys = vec![];
    let mut notes = vec![];
    for (r, c) in &reps {
        let who = format!("{} #{}", r.stack, r.repetition);
        for (how, p) in &c.cold_connect_us {
            cold.push(vec![
                who.clone(),
                how.clone(),
                p.count.to_string(),
                fmt_us(p.p50),
                fmt_us(p.p99),
                fmt_us(p.max),
                c.cold_connect_failures.to_string(),
            ]);
        }
        let step = |k: &str| c.apply_us.get(k).map_or("–".into(), p50_p99);
        steps.push(vec![
            who.clone(),
            step("remove_peer"),
            step("add_peer"),
            step("add_peer_dialler"),
            step("iface_down"),
            step("iface_up"),
            step("restart"),
            step("key_update"),
            p50_p99(&c.dial_handshake_us),
        ]);
        for d in &c.disruption {
            let mut row = vec![
                who.clone(),
                d.class.clone(),
                p50_p99(&d.steady_us),
                p50_p99(&d.disrupted_us),
            ];
            row.extend(kinds.iter().map(|k| {
                d.by_event_us.get(k).map_or("–".into(), |p| {
                    format!("{} (n={})", fmt_us(p.p99), p.count)
                })
            }));
            disruption.push(row);
        }
        let mut list: Vec<String> = c
            .wg_rekeys_s
            .iter()
            .take(12)
            .map(|t| format!("{t:.1}s"))
            .collect();
        if c.wg_rekeys_s.len() > 12 {
            list.push(format!("… {} in all", c.wg_rekeys_s.len()));
        }
        let around: Vec<String> = c
            .disruption
            .iter()
            .filter(|d| d.near_rekey_us.count > 0)
            .map(|d| {
                format!(
                    "{} p99 {} near, {} away",
                    d.class,
                    fmt_us(d.near_rekey_us.p99),
                    fmt_us(d.away_from_rekeys_us.p99)
                )
            })
            .collect();
        rekeys.push(vec![
            who.clone(),
            c.wg_handshakes_after_churn.to_string(),
            if list.is_empty() {
                "none".into()
            } else {
                list.join(", ")
            },
            if around.is_empty() {
                "–".into()
            } else {
                around.join("; ")
            },
        ]);
        notes.extend(c.step_notes.iter().map(|n| format!("{who}: {n}")));
    }
    if !cold.is_empty() {
        s.push_str("Cold connects, by what the handshake turned out to be:\n");
        s.push_str(&table(
            &["stack", "handshake", "n", "p50", "p99", "max", "failed"],
            &cold,
        ));
        s.push('\n');
    }
    if !steps.is_empty() {
        s.push_str("What each underlay step took (p50 / p99), and the dialler's handshake:\n");
        s.push_str(&table(
            &[
                "stack",
                "remove peer",
                "add peer (acceptor)",
                "add peer (dialler)",
                "iface down",
                "iface up",
                "restart",
                "key update",
                "handshake",
            ],
            &steps,
        ));
        s.push('\n');
    }
    if !disruption.is_empty() {
        s.push_str("Disruption: latency from a reconfigured node to its other peers, p50 / p99 outside every window and within any, then p99 by the event's kind:\n");
        let mut head = vec!["stack", "class", "steady", "near any event"];
        head.extend(kinds.iter().map(String::as_str));
        s.push_str(&table(&head, &disruption));
        s.push('\n');
    }
    if !rekeys.is_empty() {
        s.push_str(
            "WireGuard handshakes seen completing (the devices' own times, read every 5 s):\n",
        );
        s.push_str(&table(
            &[
                "stack",
                "after a churn step",
                "rekeys at",
                "latency within 0.5 s of a rekey",
            ],
            &rekeys,
        ));
        s.push('\n');
    }
    let mut life = vec![];
    for r in &lifecycles {
        for l in [&r.lifecycle, &r.lifecycle_other].into_iter().flatten() {
            let peer_change = if l.peer_change_us.count > 0 {
                p50_p99(&l.peer_change_us)
            } else {
                "-".into()
            };
            life.push(vec![
                format!("{} #{}", r.stack, r.repetition),
                if l.automation.is_empty() {
                    "-".into()
                } else {
                    l.automation.clone()
                },
                l.samples.to_string(),
                p50_p99(&l.create_us),
                p50_p99(&l.configure_us),
                p50_p99(&l.up_us),
                peer_change,
                p50_p99(&l.destroy_us),
                p50_p99(&l.total_us),
                l.what.clone(),
            ]);
        }
    }
    if !life.is_empty() {
        s.push_str("Interface lifecycle (p50 / p99), beside the run's own interfaces, driven from code (library) and by spawning ip and wg (processes); the first row of each stack is the scenario's automation, which churn used:\n");
        s.push_str(&table(
            &[
                "stack",
                "automation",
                "n",
                "create",
                "configure",
                "up",
                "peer change",
                "destroy",
                "total",
                "phases",
            ],
            &life,
        ));
        s.push('\n');
    }
    for n in notes {
        s.push_str(&format!("Note: {n}\n"));
    }
    Some(s)
}

/// One line per repetition for the terminal: cold connects and the top class's disruption.
pub fn terminal_lines(run: &LoadedRun) -> String {
    let mut s = String::new();
    for r in &run.repetitions {
        let Some(c) = &r.churn else { continue };
        let cold: Vec<String> = c
            .cold_connect_us
            .iter()
            .map(|(how, p)| format!("{how} p50 {} (n={})", fmt_us(p.p50), p.count))
            .collect();
        let top = c
            .disruption
            .iter()
            .find(|d| d.disrupted_us.count > 0)
            .map(|d| {
                format!(
                    "; {} p99 {} steady, {} near events",
                    d.class,
                    fmt_us(d.steady_us.p99),
                    fmt_us(d.disrupted_us.p99)
                )
            })
            .unwrap_or_default();
        s.push_str(&format!(
            "churn: {} #{}: cold connect {}{top}\n",
            r.stack,
            r.repetition,
            if cold.is_empty() {
                "none".into()
            } else {
                cold.join(", ")
            }
        ));
    }
    s
}
