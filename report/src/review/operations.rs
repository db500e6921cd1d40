//! Q3 (what churn costs), Q4 (automation from code), Q5 (privileges) and Q7 (upgrading a
//! live network).

use super::{
    facts::{self, source, table, urgent_class},
    render, Block, Inputs, Role, Section,
};
use crate::{churn::p50_p99, schema::churn::Lifecycle, summary::fmt_us, LoadedRun};

/// Interface setups and teardowns a week, the seed's order of magnitude ("tens a week").
const CHANGES_PER_WEEK: u64 = 30;

/// Per stack of `run`: its first repetition's lifecycle (an interface of its own).
fn lifecycles(run: &LoadedRun) -> Vec<(String, &Lifecycle)> {
    let mut out: Vec<(String, &Lifecycle)> = vec![];
    for r in &run.repetitions {
        if let Some(l) = r.lifecycle.as_ref().filter(|l| l.total_us.count > 0) {
            if !out.iter().any(|(s, _)| *s == r.stack) {
                out.push((r.stack.clone(), l));
            }
        }
    }
    out
}

/// The run that measured interface lifecycles: churn's, else any.
fn lifecycle_run(inputs: &Inputs) -> Option<(Role, &LoadedRun)> {
    inputs
        .get(Role::Churn)
        .map(|(_, r)| (Role::Churn, r))
        .filter(|(_, r)| !lifecycles(r).is_empty())
        .or_else(|| {
            inputs
                .runs
                .iter()
                .find(|(_, _, r)| !lifecycles(r).is_empty())
                .map(|(_, role, r)| (*role, r))
        })
}

/// Q3: cold connects, interface lifecycles, peer changes and rekeys, in the seed's terms.
pub fn churn(inputs: &Inputs) -> Section {
    let id = "q3-churn";
    let title = "Q3. What does churn cost: new peers, interface setup and teardown, peers changed under load, rekeys?";
    let Some((_, run)) = inputs.get(Role::Churn) else {
        return facts::unanswered(id, title, &[Role::Churn]);
    };
    let class = urgent_class(run).unwrap_or_default();
    let mut rows = vec![];
    let mut weekly: Vec<(String, f64)> = vec![];
    for r in &run.repetitions {
        let Some(c) = &r.churn else { continue };
        // A full handshake is what follows a new interface; else the first kind measured.
        let cold = c
            .cold_connect_us
            .get_key_value("full")
            .or_else(|| {
                c.cold_connect_us
                    .iter()
                    .find(|(how, _)| !how.starts_with("restart"))
            })
            .map(|(how, p)| (how.clone(), p.p50));
        let life = r.lifecycle.as_ref().filter(|l| l.total_us.count > 0);
        let d = c.disruption.iter().find(|d| d.class == class);
        rows.push(vec![
            format!("{} #{}", r.stack, r.repetition),
            cold.as_ref()
                .map_or("–".into(), |(how, p)| format!("{} ({how})", fmt_us(*p))),
            life.map_or("no interface".into(), |l| p50_p99(&l.total_us)),
            life.filter(|l| l.peer_change_us.count > 0)
                .map_or("–".into(), |l| p50_p99(&l.peer_change_us)),
            d.map_or("–".into(), |d| {
                format!(
                    "{} → {}",
                    fmt_us(d.steady_us.p99),
                    fmt_us(d.disrupted_us.p99)
                )
            }),
            c.wg_rekeys_s.len().to_string(),
        ]);
        if r.repetition == 0 {
            // Degraded delivery per change: the interface's whole lifecycle, then a
            // cold connect before the first object arrives again.
            let per_change = life.map_or(0, |l| l.total_us.p50) + cold.map_or(0, |(_, p)| p);
            weekly.push((r.stack.clone(), per_change as f64 / 1e6));
        }
    }
    let lo = weekly.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let hi = weekly.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    let answer = match (lo, hi) {
        (Some(lo), Some(hi)) => format!(
            "{CHANGES_PER_WEEK} interface setups and teardowns a week cost {:.2} s ({}) to {:.2} s ({}) of degraded delivery on the changed link per week: each is the interface's lifecycle (median) and a cold connect before its first object.",
            lo.1 * CHANGES_PER_WEEK as f64,
            lo.0,
            hi.1 * CHANGES_PER_WEEK as f64,
            hi.0
        ),
        _ => "The churn run recorded no churn summary.".into(),
    };
    let mut body = vec![
        Block::Text(source(Role::Churn, run)),
        table(
            &[
                "stack",
                "cold connect p50",
                "interface lifecycle p50/p99",
                "peer change p50/p99",
                &format!("{class} p99 steady → near an event"),
                "rekeys seen",
            ],
            rows,
        ),
    ];
    body.extend(render::embed(|t| crate::churn::section(run, t)));
    Section {
        id,
        title: title.into(),
        answer,
        body,
        conditions: vec![format!(
            "The weekly figure scales with the number of changes ({CHANGES_PER_WEEK} assumed); it is per changed link, and the other links of a gossip network carry on meanwhile."
        )],
        charts: vec![],
    }
}

/// Q4: which API drives each stack's interface, and what an operation costs.
pub fn automation(inputs: &Inputs) -> Section {
    let id = "q4-automation";
    let title = "Q4. Can it all be automated from code, and at what cost per operation?";
    let Some((role, run)) = lifecycle_run(inputs) else {
        return facts::unanswered(id, title, &[Role::Churn]);
    };
    let all = lifecycles(run);
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|(stack, l)| {
            vec![
                stack.clone(),
                if l.automation.is_empty() {
                    l.what.clone()
                } else {
                    format!("{} ({})", l.automation, l.what)
                },
                fmt_us(l.create_us.p50),
                fmt_us(l.configure_us.p50),
                fmt_us(l.up_us.p50),
                fmt_us(l.destroy_us.p50),
                fmt_us(l.total_us.p50),
                if l.peer_change_us.count > 0 {
                    fmt_us(l.peer_change_us.p50)
                } else {
                    "–".into()
                },
                l.samples.to_string(),
            ]
        })
        .collect();
    let slowest = all
        .iter()
        .max_by_key(|(_, l)| l.total_us.p50)
        .map(|(s, l)| format!("{s} at {}", fmt_us(l.total_us.p50)));
    let answer = match slowest {
        Some(slowest) => format!(
            "Yes: every stack with a tunnel to set up ({}) was created, configured, brought up and removed from code, {} times each; the slowest whole lifecycle (median) was {slowest}. QUIC on plain UDP has nothing to set up beyond a socket.",
            all.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", "),
            all.iter().map(|(_, l)| l.samples).min().unwrap_or(0)
        ),
        None => "No interface lifecycle was measured.".into(),
    };
    Section {
        id,
        title: title.into(),
        answer,
        body: vec![
            Block::Text(source(role, run)),
            table(
                &[
                    "stack",
                    "driven through",
                    "create",
                    "configure",
                    "up",
                    "destroy",
                    "whole lifecycle",
                    "peer change",
                    "samples",
                ],
                rows,
            ),
        ],
        conditions: vec![],
        charts: vec![],
    }
}

/// Q5: what each stack needs, as claimed and as it went on this host.
pub fn privileges(inputs: &Inputs) -> Section {
    let id = "q5-privileges";
    let title = "Q5. Which stacks need which privileges?";
    let mut rows: Vec<Vec<String>> = vec![];
    // An upgrade run's entries are strategies across two stacks, not stacks.
    for (_, role, run) in inputs.runs.iter().filter(|(_, r, _)| *r != Role::Upgrade) {
        for s in &run.manifest.stacks {
            if rows.iter().any(|r| r[0] == s.name) {
                continue;
            }
            rows.push(vec![
                s.name.clone(),
                if s.privileges.is_empty() {
                    "(not recorded by this run's version)".into()
                } else {
                    s.privileges.clone()
                },
                match &s.reason {
                    Some(r) => format!("unavailable: {r}"),
                    None => format!("ran ({})", role.describe()),
                },
            ]);
        }
    }
    if rows.is_empty() {
        return facts::unanswered(id, title, &[Role::Lan]);
    }
    let rootless: Vec<&str> = rows
        .iter()
        .filter(|r| r[1].contains("none beyond a UDP socket"))
        .map(|r| r[0].as_str())
        .collect();
    let answer = format!(
        "{} of the {} stacks seen need nothing beyond a UDP socket in production ({}); TUN-based stacks need a TUN device (CAP_NET_ADMIN once, or a persistent device), kernel WireGuard the module and CAP_NET_ADMIN. In the harness every stack also needs a network namespace, which an unprivileged user namespace provides.",
        rootless.len(),
        rows.len(),
        rootless.join(", ")
    );
    Section {
        id,
        title: title.into(),
        answer,
        body: vec![
            Block::Text("Claims as `stackbench list` states them; harness/tests/rootless.rs runs every stack whose claim is rootless as an unprivileged user, so the claims are tested on each CI run.".into()),
            table(&["stack", "needs", "on this host"], rows),
        ],
        conditions: vec![],
        charts: vec![],
    }
}

/// Q7: rolling upgrades, strategy against strategy.
pub fn upgrade(inputs: &Inputs) -> Section {
    let id = "q7-upgrade";
    let title = "Q7. Can the transport be upgraded while the network runs?";
    let Some((_, run)) = inputs.get(Role::Upgrade) else {
        return facts::unanswered(id, title, &[Role::Upgrade]);
    };
    let briefs = crate::upgrade::briefs(run);
    let answer = if briefs.is_empty() {
        "The upgrade run recorded no upgrade.".into()
    } else {
        format!("Measured while the network ran: {}.", briefs.join("; "))
    };
    let mut body = vec![Block::Text(source(Role::Upgrade, run))];
    body.extend(render::embed(|t| crate::upgrade::section(run, t)));
    Section {
        id,
        title: title.into(),
        answer,
        body,
        conditions: vec![
            "A restart upgrade cuts nodes off while they restart; a dual-stack upgrade never partitions the network but runs both stacks meanwhile (the CPU column).".into(),
        ],
        charts: vec![],
    }
}
