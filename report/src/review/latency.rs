//! Q1 (latency per class, LAN and WAN), Q2 (userspace against kernel WireGuard) and Q6
//! (what TLS inside WireGuard costs).

use super::{
    facts::{self, candidates, change, est, lat, pct, source, table, urgent_class, verdict},
    Block, Inputs, Role, Section,
};
use crate::{
    plots::{Bar, Chart},
    stats::{Estimate, Metric},
    summary::fmt_us,
    LoadedRun,
};

/// The roles whose runs answer Q1, in the order their evidence is shown.
const LATENCY_ROLES: [Role; 5] = [
    Role::Lan,
    Role::WanContinental,
    Role::WanIntercontinental,
    Role::Lossy,
    Role::Congested,
];

/// The floor's one-way p50 for `class`, where the run measured one.
fn floor_p50(run: &LoadedRun, class: &str) -> Option<u64> {
    run.floor
        .as_ref()?
        .classes
        .iter()
        .find(|c| c.class == class && c.one_way_us.count > 0)
        .map(|c| c.one_way_us.p50)
}

/// One sentence on `run`'s most urgent class: QUIC+TLS's p99, and the lowest and highest.
fn sentence(role: Role, run: &LoadedRun) -> Option<String> {
    let class = urgent_class(run)?;
    let p99: Vec<(String, Estimate)> = candidates(run)
        .into_iter()
        .filter_map(|s| Some((s.clone(), est(run, &s, &class, Metric::P99)?)))
        .collect();
    let best = p99.iter().min_by(|a, b| a.1.point.total_cmp(&b.1.point))?;
    let worst = p99.iter().max_by(|a, b| a.1.point.total_cmp(&b.1.point))?;
    let mut s = format!(
        "{}: {class} p99 is lowest with {} ({}) and highest with {} ({})",
        role.describe(),
        best.0,
        lat(&best.1),
        worst.0,
        lat(&worst.1)
    );
    if let Some((_, tls)) = p99.iter().find(|(n, _)| n == "quic-tls") {
        if best.0 != "quic-tls" {
            let c = change(run, "quic-tls", &best.0, &class, Metric::P99)?;
            // Its figure is already in the sentence when it is the highest.
            let figure = if worst.0 == "quic-tls" {
                String::new()
            } else {
                format!("QUIC+TLS has {}, and ", lat(tls))
            };
            s.push_str(&format!("; {figure}{}", verdict(&c, &best.0, "quic-tls")));
        }
    }
    s.push('.');
    let cpu: Vec<(String, Estimate)> = candidates(run)
        .into_iter()
        .filter_map(|st| Some((st.clone(), est(run, &st, "", Metric::CpuPerMb)?)))
        .collect();
    if let (Some(lo), Some(hi)) = (
        cpu.iter().min_by(|a, b| a.1.point.total_cmp(&b.1.point)),
        cpu.iter().max_by(|a, b| a.1.point.total_cmp(&b.1.point)),
    ) {
        s.push_str(&format!(
            " CPU per delivered MB there: {} lowest ({}), {} highest ({}).",
            lo.0,
            per_mb(&lo.1),
            hi.0,
            per_mb(&hi.1)
        ));
    }
    Some(s)
}

/// CPU ms per delivered MB with its interval.
fn per_mb(e: &Estimate) -> String {
    match e.ci95 {
        Some((lo, hi)) => format!("{:.1} [{lo:.1}, {hi:.1}] ms/MB", e.point),
        None => format!("{:.1} ms/MB (n={})", e.point, e.n),
    }
}

/// Q1: each class's latency per stack, on the LAN and over each WAN.
pub fn per_class(inputs: &Inputs) -> Section {
    let id = "q1-latency";
    let title =
        "Q1. What latency and CPU does each stack cost, per priority class, on a LAN and over a WAN?";
    let present: Vec<(Role, &LoadedRun)> = LATENCY_ROLES
        .iter()
        .filter_map(|r| inputs.get(*r).map(|(_, run)| (*r, run)))
        .collect();
    if present.is_empty() {
        return facts::unanswered(id, title, &LATENCY_ROLES);
    }
    let answer = present
        .iter()
        .filter_map(|(r, run)| sentence(*r, run))
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut body = vec![];
    let mut conditions = vec![];
    let mut charts = vec![];
    for (role, run) in &present {
        body.push(Block::Text(source(*role, run)));
        let mut rows = vec![];
        for stack in candidates(run) {
            for (class, _) in facts::classes(run) {
                let (Some(p50), Some(p99)) = (
                    est(run, &stack, &class, Metric::P50),
                    est(run, &stack, &class, Metric::P99),
                ) else {
                    continue;
                };
                let above = floor_p50(run, &class).map_or("–".into(), |f| {
                    fmt_us((p50.point - f as f64).max(0.0).round() as u64)
                });
                let cpu =
                    est(run, &stack, "", Metric::CpuPerMb).map_or("–".into(), |e| per_mb(&e));
                rows.push(vec![stack.clone(), class, lat(&p50), lat(&p99), above, cpu]);
            }
        }
        body.push(table(
            &[
                "stack",
                "class",
                "p50",
                "p99",
                "p50 above the machine floor",
                "CPU per delivered MB (all classes)",
            ],
            rows,
        ));
        conditions.extend(disturbances(*role, run));
        if let Some(class) = urgent_class(run) {
            let groups: Vec<(String, Vec<Bar>)> = candidates(run)
                .into_iter()
                .filter_map(|stack| {
                    let e = est(run, &stack, &class, Metric::P99)?;
                    let bar = Bar {
                        name: format!("{class} p99"),
                        value: e.point.max(1.0),
                        ci95: e.ci95,
                    };
                    Some((stack, vec![bar]))
                })
                .collect();
            charts.push((
                format!("q1-{}", role.scenario()),
                Chart::Bars {
                    title: format!("{}: {class} p99 per stack", role.describe()),
                    y_desc: "p99 (µs)".into(),
                    log: false,
                    groups,
                },
            ));
        }
    }
    if let (Some((_, lan)), Some((role, wan))) = (
        present.iter().find(|(r, _)| *r == Role::Lan),
        present.iter().find(|(r, _)| *r != Role::Lan),
    ) {
        if let (Some(spread), Some(base)) = (spread_p50(lan), median_p50(wan)) {
            conditions.push(format!(
                "The stacks' p50s differ by up to {} on the LAN; on the {} each object already takes {} (p50), so the path, not the stack, decides there unless the CPU saturates.",
                fmt_us(spread.round() as u64),
                role.describe(),
                fmt_us(base.round() as u64)
            ));
        }
    }
    Section {
        id,
        title: title.into(),
        answer,
        body,
        conditions,
        charts,
    }
}

/// What disturbed `run`'s repetitions, counted: a saturated CPU, and other work on the
/// host (processes, or the hypervisor's steal).
pub fn disturbances(role: Role, run: &LoadedRun) -> Vec<String> {
    use crate::summary::{CPU_SATURATED, OTHER_LOAD};
    let reps = &run.repetitions;
    let saturated = reps
        .iter()
        .filter(|r| r.cpu_busy_fraction.max(r.cpu_busy_peak_fraction) >= CPU_SATURATED)
        .count();
    let other: Vec<f64> = reps
        .iter()
        .map(|r| r.other_load_fraction)
        .filter(|f| *f >= OTHER_LOAD)
        .collect();
    let mut v = vec![];
    if saturated > 0 {
        v.push(format!(
            "{}: the CPU was saturated (at least {:.0}% busy in the busiest second) in {saturated} of {} repetitions: latencies then include waiting for a CPU, and the stacks' order may reflect that more than the stacks.",
            role.describe(),
            CPU_SATURATED * 100.0,
            reps.len()
        ));
    }
    if let (Some(lo), Some(hi)) = (
        other.iter().copied().reduce(f64::min),
        other.iter().copied().reduce(f64::max),
    ) {
        v.push(format!(
            "{}: other work (other processes, or the hypervisor taking this virtual machine's CPUs) kept {:.0}–{:.0}% of the CPUs busy in {} of {} repetitions: rerun on a quiet machine before trusting small differences.",
            role.describe(),
            lo * 100.0,
            hi * 100.0,
            other.len(),
            reps.len()
        ));
    }
    v
}

fn urgent_p50s(run: &LoadedRun) -> Vec<f64> {
    let Some(class) = urgent_class(run) else {
        return vec![];
    };
    candidates(run)
        .iter()
        .filter_map(|s| est(run, s, &class, Metric::P50))
        .map(|e| e.point)
        .collect()
}

/// The largest difference between two stacks' p50 of the most urgent class.
fn spread_p50(run: &LoadedRun) -> Option<f64> {
    let v = urgent_p50s(run);
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    Some(hi - lo)
}

fn median_p50(run: &LoadedRun) -> Option<f64> {
    let mut v = urgent_p50s(run);
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// The protocol part of a stack's name ("quic-tls" of "quic-tls+wg-kernel").
fn protocol(stack: &str) -> &str {
    stack.split('+').next().unwrap_or(stack)
}

/// Q2: userspace WireGuard against kernel WireGuard, from the VM run.
pub fn kernel_vs_userspace(inputs: &Inputs) -> Section {
    let id = "q2-kernel";
    let title = "Q2. How much slower is userspace WireGuard (no root) than kernel WireGuard?";
    let Some((_, run)) = inputs.get(Role::KernelVm) else {
        let mut s = facts::unanswered(id, title, &[Role::KernelVm]);
        s.conditions.extend(host_kernel_note(inputs));
        return s;
    };
    let Some(class) = urgent_class(run) else {
        return facts::unanswered(id, title, &[Role::KernelVm]);
    };
    let stacks = candidates(run);
    let mut rows = vec![];
    let mut ratios: Vec<(String, Estimate)> = vec![];
    for kernel in stacks.iter().filter(|s| s.ends_with("+wg-kernel")) {
        for user in stacks.iter().filter(|s| {
            protocol(s) == protocol(kernel) && s.contains("+wg-") && !s.ends_with("+wg-kernel")
        }) {
            let (Some(k), Some(u)) = (
                est(run, kernel, &class, Metric::P50),
                est(run, user, &class, Metric::P50),
            ) else {
                continue;
            };
            let Some(c50) = change(run, kernel, user, &class, Metric::P50) else {
                continue;
            };
            let c99 = change(run, kernel, user, &class, Metric::P99);
            let cpu = change(run, kernel, user, "", Metric::CpuPerMb);
            rows.push(vec![
                user.clone(),
                kernel.clone(),
                lat(&u),
                lat(&k),
                ratio(&c50),
                c99.map_or("–".into(), |c| ratio(&c)),
                cpu.map_or("–".into(), |c| ratio(&c)),
            ]);
            ratios.push((user.clone(), c50));
        }
    }
    let answer = match (
        ratios.iter().min_by(|a, b| a.1.point.total_cmp(&b.1.point)),
        ratios.iter().max_by(|a, b| a.1.point.total_cmp(&b.1.point)),
    ) {
        (Some(lo), Some(hi)) => format!(
            "In the VM{}, userspace WireGuard's {class} p50 is {} ({}) to {} ({}) kernel WireGuard's over the same protocol.",
            if run.manifest.emulated_cpu.is_some() {
                " (emulated CPU: read the ratios, not the times)"
            } else {
                ""
            },
            ratio(&lo.1),
            lo.0,
            ratio(&hi.1),
            hi.0
        ),
        _ => format!(
            "Not answered: the VM run {} has no pair of a kernel and a userspace WireGuard stack over the same protocol.",
            run.manifest.run_id
        ),
    };
    let mut conditions = host_kernel_note(inputs);
    conditions.push("Kernel WireGuard's advantage is per-packet CPU: it grows with load and shrinks where the path's delay dominates.".into());
    Section {
        id,
        title: title.into(),
        answer,
        body: vec![
            Block::Text(source(Role::KernelVm, run)),
            table(
                &[
                    "userspace",
                    "kernel",
                    "userspace p50",
                    "kernel p50",
                    "p50 ratio",
                    "p99 ratio",
                    "CPU per MB ratio",
                ],
                rows,
            ),
        ],
        conditions,
        charts: vec![],
    }
}

/// A relative change as a ratio: "1.42× [1.30, 1.55]".
fn ratio(e: &Estimate) -> String {
    match e.ci95 {
        Some((lo, hi)) => format!("{:.2}× [{:.2}, {:.2}]", 1.0 + e.point, 1.0 + lo, 1.0 + hi),
        None => format!("{:.2}× (n={})", 1.0 + e.point, e.n),
    }
}

/// Whether kernel WireGuard ran on the host, and why not.
fn host_kernel_note(inputs: &Inputs) -> Vec<String> {
    inputs
        .runs
        .iter()
        .filter(|(_, role, _)| *role != Role::KernelVm)
        .flat_map(|(_, _, run)| run.manifest.stacks.iter())
        .find(|s| s.name.ends_with("+wg-kernel"))
        .map(|s| match &s.reason {
            Some(r) => format!("Kernel WireGuard did not run on the host: {r}. On a host whose kernel has it, the same scenarios measure it in absolute terms."),
            None => format!("{} ran on the host too; its absolute figures are in the LAN and WAN runs.", s.name),
        })
        .into_iter()
        .collect()
}

/// Q6: TLS inside WireGuard against null crypto inside the same WireGuard.
pub fn double_encryption(inputs: &Inputs) -> Section {
    let id = "q6-double-encryption";
    let title = "Q6. What does double encryption (TLS inside WireGuard) cost?";
    let mut rows = vec![];
    let mut first: Option<String> = None;
    let mut body = vec![];
    for role in [Role::Lan, Role::Bulk, Role::WanContinental, Role::KernelVm] {
        let Some((_, run)) = inputs.get(role) else {
            continue;
        };
        let stacks = candidates(run);
        let mut any = false;
        for tls in stacks.iter().filter(|s| s.starts_with("quic-tls+wg-")) {
            let null = tls.replacen("quic-tls", "quic-null", 1);
            let tls = tls.clone();
            if !stacks.contains(&null) {
                continue;
            }
            any = true;
            let cpu = change(run, &null, &tls, "", Metric::CpuPerMb);
            for (class, _) in facts::classes(run) {
                let Some(c) = change(run, &null, &tls, &class, Metric::P50) else {
                    continue;
                };
                let c99 = change(run, &null, &tls, &class, Metric::P99);
                if first.is_none() {
                    first = Some(format!(
                        "{}: {} against {}, {class} p50 {}{}.",
                        role.describe(),
                        tls,
                        null,
                        pct(&c),
                        cpu.as_ref()
                            .map(|c| format!(", CPU per delivered MB {}", pct(c)))
                            .unwrap_or_default()
                    ));
                }
                rows.push(vec![
                    role.describe().to_owned(),
                    tls.clone(),
                    class,
                    pct(&c),
                    c99.map_or("–".into(), |c| pct(&c)),
                    cpu.as_ref().map_or("–".into(), pct),
                ]);
            }
        }
        if any {
            body.push(Block::Text(source(role, run)));
        }
    }
    if rows.is_empty() {
        return facts::unanswered(id, title, &[Role::Lan, Role::Bulk]);
    }
    body.push(table(
        &[
            "network",
            "TLS inside WireGuard",
            "class",
            "p50 vs null crypto",
            "p99 vs null crypto",
            "CPU per MB vs null crypto",
        ],
        rows,
    ));
    Section {
        id,
        title: title.into(),
        answer: first.unwrap_or_default() + " Certificates buy nothing here (keys are authenticated out of band), so this is the price of TLS alone.",
        body,
        conditions: vec!["The difference is CPU: it matters at bulk rates and on a saturated CPU, and vanishes into the path's delay on a WAN.".into()],
        charts: vec![],
    }
}

/// Mean delivered object size of `class` over the run, bytes.
fn mean_size(run: &LoadedRun, class: &str) -> f64 {
    let (bytes, n) = run
        .repetitions
        .iter()
        .flat_map(|r| &r.classes)
        .filter(|c| c.name == class)
        .fold((0u64, 0u64), |(b, n), c| {
            (b + c.delivered_bytes, n + c.delivered)
        });
    bytes as f64 / n.max(1) as f64
}

/// Does stream priority survive the tunnel: under a congested uplink, does the most urgent
/// small class stay ahead of the least urgent class, the one that fills the queue?
pub fn priority(inputs: &Inputs) -> Section {
    let id = "priority";
    let title = "Does stream priority survive the tunnel?";
    // Only where a queue forms: on an idle LAN every class is fast, whatever its priority.
    let role = Role::Congested;
    let Some((_, run)) = inputs.get(role) else {
        return facts::unanswered(id, title, &[role]);
    };
    // Most urgent first. The least urgent class (bulk included) is the one that fills the
    // queues, which a class ahead of it in priority should not wait in: comparing two classes
    // that both pass an uncongested queue says nothing about priority.
    let all: Vec<String> = facts::classes(run).into_iter().map(|(n, _)| n).collect();
    let Some(low) = all.last().filter(|_| all.len() > 1) else {
        return facts::unanswered(id, title, &[role]);
    };
    // The most urgent of the small classes (no larger than twice the smallest): a large
    // block's p99 includes sending it, which no priority removes.
    let smallest = all
        .iter()
        .map(|c| mean_size(run, c))
        .fold(f64::INFINITY, f64::min);
    let Some(high) = all
        .iter()
        .find(|c| *c != low && mean_size(run, c) <= 2.0 * smallest)
    else {
        return facts::unanswered(id, title, &[role]);
    };
    let mut rows = vec![];
    let (mut kept, mut lost) = (vec![], vec![]);
    for stack in candidates(run) {
        let (Some(h99), Some(l50)) = (
            est(run, &stack, high, Metric::P99),
            est(run, &stack, low, Metric::P50),
        ) else {
            continue;
        };
        let inversions: u64 = run
            .repetitions
            .iter()
            .filter(|r| r.stack == stack)
            .flat_map(|r| &r.classes)
            .map(|c| c.inversions)
            .sum();
        let ahead = h99.point < l50.point;
        if ahead {
            kept.push(stack.clone());
        } else {
            lost.push(stack.clone());
        }
        rows.push(vec![
            stack,
            lat(&h99),
            lat(&l50),
            if ahead { "yes" } else { "no" }.into(),
            inversions.to_string(),
        ]);
    }
    let answer = format!(
        "On the {}, {} of {} stacks keep {high} ahead of {low} (its p99 below {low}'s p50){}{}.",
        role.describe(),
        kept.len(),
        kept.len() + lost.len(),
        if kept.is_empty() {
            String::new()
        } else {
            format!(": {}", kept.join(", "))
        },
        if lost.is_empty() {
            String::new()
        } else {
            format!("; not {}", lost.join(", "))
        }
    );
    Section {
        id,
        title: title.into(),
        answer,
        body: vec![
            Block::Text(source(role, run)),
            table(
                &[
                    "stack",
                    &format!("{high} p99"),
                    &format!("{low} p50"),
                    &format!("{high} ahead"),
                    "priority inversions",
                ],
                rows,
            ),
        ],
        conditions: vec![
            "Priority acts where a queue forms: in the sender's streams and the uplink. Over WireGuard every stream shares one UDP flow, so a queue below the tunnel (the kernel's, the emulated link's) serves them in arrival order.".into(),
            format!("{low}'s p50 includes sending one of its objects, which {high}'s objects do not wait for when priority works; where {low}'s objects are large and its queue short, compare with the equal-priority control (scenarios/constrained-equal.toml)."),
        ],
        charts: vec![],
    }
}
