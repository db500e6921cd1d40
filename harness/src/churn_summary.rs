//! Turns what the nodes saw of churn into the repetition's churn summary, its cold-connect
//! HdrHistogram logs and `churn.json` (every step and cold connect, raw).

use crate::{
    aggregate::{hlog, percentiles},
    control::NodeReport,
    metrics::{self, decode_histogram, new_histogram},
    workload::{events::Action, WorkloadPlan},
};
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use stackbench_core::{
    control::StepOutcome,
    scenario::churn::EventKind,
    schema::churn::{ChurnSummary, ClassDisruption, EventMark},
};
use std::{collections::BTreeMap, time::Duration};

/// A WireGuard handshake this soon after a churn step involving its pair is the step's,
/// not a rekey.
const HANDSHAKE_AFTER_STEP: Duration = Duration::from_secs(5);
/// The coarsest handshake time a device reports (`wg show dump`: whole seconds).
const HANDSHAKE_TIME_RESOLUTION: Duration = Duration::from_secs(1);

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::RemovePeer { .. } => "remove_peer",
        Action::AddPeer { dial: true, .. } => "add_peer_dialler",
        Action::AddPeer { .. } => "add_peer",
        Action::Restart => "restart",
        Action::Iface { up: true } => "iface_up",
        Action::Iface { up: false } => "iface_down",
        Action::KeyUpdate => "key_update",
        Action::Crash => "crash",
        Action::Recover => "recover",
    }
}

/// Files for a repetition's folder: (name, contents).
pub type Files = Vec<(String, String)>;

/// The churn summary and extra files for the repetition folder, or nothing for a run with
/// neither events nor WireGuard handshakes to watch.
pub fn summarize(
    plan: &WorkloadPlan,
    reports: &[NodeReport],
    comment: &str,
) -> Result<Option<(ChurnSummary, Files)>> {
    let churn = &plan.churn;
    if !churn.is_active() && !crate::workload::events::watches_handshakes(plan) {
        return Ok(None);
    }
    let warmup = plan.warmup.as_secs_f64();
    let events = churn
        .firings
        .iter()
        .map(|f| EventMark {
            at_s: f.at.as_secs_f64() - warmup,
            kind: f.kind.name().into(),
            node: f.node,
            peer: f.peer,
        })
        .collect();
    let mut cold: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut dial = new_histogram();
    let mut apply: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut notes = vec![];
    let mut dials = 0u64;
    for r in reports {
        for c in &r.churn.cold_connects {
            let key = match c.cause {
                EventKind::NodeRestart => format!("restart, {}", c.how.name()),
                _ => c.how.name().to_owned(),
            };
            metrics::record(cold.entry(key).or_insert_with(new_histogram), c.us);
        }
        for s in &r.churn.steps {
            let name = action_name(&s.action);
            if s.dialled.is_some() {
                // A dial's own record; the step that led to it has its own.
                dials += 1;
                if let Some(h) = s.handshake_us {
                    metrics::record(&mut dial, h);
                } else if notes.len() < 10 {
                    notes.push(format!("node {} dial: {}", s.node, s.outcome));
                }
                continue;
            }
            if s.outcome == StepOutcome::Ok {
                metrics::record(
                    apply.entry(name.into()).or_insert_with(new_histogram),
                    s.apply_us,
                );
            } else if notes.len() < 10 {
                notes.push(format!("node {} {name}: {}", s.node, s.outcome));
            }
        }
    }
    let delivered: u64 = cold.values().map(|h| h.len()).sum();
    let mut disruption = vec![];
    for (ci, c) in plan.classes.iter().enumerate() {
        let (mut steady, mut disrupted) = (new_histogram(), new_histogram());
        let mut by_event: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
        for r in reports {
            let cc = r
                .classes
                .get(ci)
                .context("a node reported too few classes")?;
            if !cc.steady_hist.is_empty() {
                steady
                    .add(decode_histogram(&cc.steady_hist)?)
                    .context("merging histograms")?;
            }
            for (kind, enc) in &cc.disrupted_hists {
                let h = decode_histogram(enc)?;
                disrupted.add(&h).context("merging histograms")?;
                by_event
                    .entry(kind.clone())
                    .or_insert_with(new_histogram)
                    .add(&h)
                    .context("merging histograms")?;
            }
        }
        disruption.push(ClassDisruption {
            class: c.name.clone(),
            steady_us: percentiles(&steady),
            disrupted_us: percentiles(&disrupted),
            by_event_us: by_event
                .iter()
                .map(|(k, h)| (k.clone(), percentiles(h)))
                .collect(),
            near_rekey_us: Default::default(),
            away_from_rekeys_us: Default::default(),
        });
    }
    let (rekeys, after_churn) = classify_handshakes(plan, reports);
    for (ci, d) in disruption.iter_mut().enumerate() {
        let (near, away) = around_rekeys(plan, reports, ci, &rekeys)?;
        d.near_rekey_us = percentiles(&near);
        if !rekeys.is_empty() {
            d.away_from_rekeys_us = percentiles(&away);
        }
    }
    let summary = ChurnSummary {
        events,
        cold_connect_us: cold
            .iter()
            .map(|(k, h)| (k.clone(), percentiles(h)))
            .collect(),
        cold_connect_failures: dials.saturating_sub(delivered),
        dial_handshake_us: percentiles(&dial),
        apply_us: apply
            .iter()
            .map(|(k, h)| (k.clone(), percentiles(h)))
            .collect(),
        step_notes: notes,
        disruption,
        wg_rekeys_s: rekeys,
        wg_handshakes_after_churn: after_churn,
        window_ms: churn.window.as_secs_f64() * 1e3,
    };
    let mut files = vec![];
    for (how, h) in &cold {
        files.push((
            format!("cold-connect-{how}.hlog"),
            hlog(
                h,
                how,
                &format!("{comment}: cold connect ({how})"),
                plan.duration,
            )?,
        ));
    }
    let raw: Vec<_> = reports.iter().map(|r| &r.churn).collect();
    files.push(("churn.json".into(), serde_json::to_string_pretty(&raw)?));
    Ok(Some((summary, files)))
}

/// WireGuard handshakes away from every churn step of their pair (rekeys, s into the
/// measured window), and the count of those that followed a step.
fn classify_handshakes(plan: &WorkloadPlan, reports: &[NodeReport]) -> (Vec<f64>, u64) {
    let mut rekeys = vec![];
    let mut after = 0;
    for r in reports {
        for &(peer, at_ns) in &r.churn.wg_handshakes {
            let near_step = plan.churn.steps.iter().any(|s| {
                let involved = match s.action {
                    Action::Restart | Action::Crash | Action::Recover => {
                        s.node == r.index || s.node == peer
                    }
                    Action::AddPeer { peer: p, .. } | Action::RemovePeer { peer: p } => {
                        (s.node == r.index && p == peer) || (s.node == peer && p == r.index)
                    }
                    Action::Iface { .. } => s.node == r.index || s.node == peer,
                    Action::KeyUpdate => false,
                };
                involved && {
                    let step_ns = r.start_ns + s.at.as_nanos() as u64;
                    // Kernel WireGuard gives handshake times in whole seconds.
                    at_ns + HANDSHAKE_TIME_RESOLUTION.as_nanos() as u64 >= step_ns
                        && at_ns < step_ns + HANDSHAKE_AFTER_STEP.as_nanos() as u64
                }
            });
            if near_step {
                after += 1;
            } else {
                let offset = at_ns.saturating_sub(r.start_ns) as f64 / 1e9;
                rekeys.push(offset - plan.warmup.as_secs_f64());
            }
        }
    }
    rekeys.sort_by(f64::total_cmp);
    (rekeys, after)
}

/// How far either side of a rekey the timeline's intervals count as "near" it.
const NEAR_REKEY: f64 = 0.5;

/// Class `ci`'s latency in the timeline intervals within [`NEAR_REKEY`] of a rekey, and in
/// every other interval. Rekeys of all pairs come close together (every pair's first
/// handshake was at setup), so the node-wide timeline shows them.
fn around_rekeys(
    plan: &WorkloadPlan,
    reports: &[NodeReport],
    ci: usize,
    rekeys: &[f64],
) -> Result<(Histogram<u64>, Histogram<u64>)> {
    let (mut near, mut away) = (new_histogram(), new_histogram());
    let step = plan.churn.timeline.as_secs_f64();
    for r in reports {
        let Some(cc) = r.classes.get(ci) else {
            continue;
        };
        for (i, enc) in cc.timeline_parts() {
            let (t0, t1) = (i as f64 * step, (i + 1) as f64 * step);
            let close = rekeys
                .iter()
                .any(|&t| t1 > t - NEAR_REKEY && t0 < t + NEAR_REKEY);
            let into = if close { &mut near } else { &mut away };
            into.add(decode_histogram(enc)?)
                .context("merging histograms")?;
        }
    }
    Ok((near, away))
}
