//! The network-level answer (reach at 64 and 1 000 nodes), what was not measured, and the
//! environment the numbers come from.

use super::{
    facts::{self, candidates, source, table},
    render, Block, Inputs, Role, Section,
};
use crate::{
    plots::{Bar, Chart},
    stats,
    summary::fmt_us,
    LoadedRun,
};

const NETWORK_ROLES: [Role; 3] = [Role::Gossip64, Role::Regions64, Role::Gossip1000];

/// Mean over repetitions of the p50 time to reach `share` of the nodes, with its interval.
fn reach(run: &LoadedRun, stack: &str, class: &str, share: &str) -> Option<stats::Estimate> {
    let v = facts::reach_values(run, stack, class, share);
    (!v.is_empty()).then(|| stats::estimate(&v))
}

/// How long a block takes to reach 90% and 100% of a gossip network, per stack.
pub fn network(inputs: &Inputs) -> Section {
    let id = "network";
    let title = "Network level: how long does a block take to reach 90% and 100% of the network?";
    let present: Vec<(Role, &LoadedRun)> = NETWORK_ROLES
        .iter()
        .filter_map(|r| inputs.get(*r).map(|(_, run)| (*r, run)))
        .collect();
    if present.is_empty() {
        return facts::unanswered(id, title, &NETWORK_ROLES);
    }
    let mut sentences = vec![];
    let mut body = vec![];
    let mut charts = vec![];
    for (role, run) in &present {
        let Some(class) = facts::reach_class(run) else {
            continue;
        };
        let mut rows = vec![];
        // (stack, reach 90%, reach 100%) of every candidate with both.
        let mut reached: Vec<(String, stats::Estimate, stats::Estimate)> = vec![];
        for stack in candidates(run) {
            let (Some(r90), Some(r100)) = (
                reach(run, &stack, &class, "90%"),
                reach(run, &stack, &class, "100%"),
            ) else {
                continue;
            };
            reached.push((stack.clone(), r90, r100));
            rows.push(vec![stack.clone(), facts::lat(&r90), facts::lat(&r100)]);
        }
        charts.push((
            format!("network-{}", role.scenario()),
            Chart::Bars {
                title: format!("{}: {class} reach 90% / 100%, p50", role.describe()),
                y_desc: "µs".into(),
                log: false,
                // 90% before 100%: the smaller bar drawn in front of the larger.
                groups: reached
                    .iter()
                    .map(|(stack, r90, r100)| {
                        let bar = |name: &str, e: &stats::Estimate| Bar {
                            name: name.into(),
                            value: e.point.max(1.0),
                            ci95: e.ci95,
                        };
                        (stack.clone(), vec![bar("90%", r90), bar("100%", r100)])
                    })
                    .collect(),
            },
        ));
        let us = |e: &stats::Estimate| fmt_us(e.point.round() as u64);
        let fastest = reached
            .iter()
            .min_by(|a, b| a.2.point.total_cmp(&b.2.point));
        let slowest = reached
            .iter()
            .max_by(|a, b| a.2.point.total_cmp(&b.2.point));
        if let (Some(f), Some(s)) = (fastest, slowest) {
            let mut sentence = format!(
                "{}: a {class} reaches 90% of the nodes in {} and all of them in {} with {} (p50 over objects)",
                role.describe(),
                us(&f.1),
                us(&f.2),
                f.0
            );
            if s.0 != f.0 {
                sentence.push_str(&format!(
                    ", and in {} and {} with {}, the slowest of {}",
                    us(&s.1),
                    us(&s.2),
                    s.0,
                    reached.len()
                ));
            }
            sentences.push(sentence);
        }
        body.push(Block::Text(source(*role, run)));
        body.push(table(
            &["stack", &format!("{class} reach 90% p50"), "reach 100% p50"],
            rows,
        ));
        body.extend(render::embed(|t| crate::network::section(run, t)));
    }
    Section {
        id,
        title: title.into(),
        answer: sentences.join("; ") + ".",
        body,
        conditions: vec!["In namespaces every node shares this machine's CPUs, so reach there includes waiting for a CPU; Shadow's network leaves CPU out entirely. The two bracket a real deployment, where each node has CPUs of its own.".into()],
        charts,
    }
}

/// What this review did not measure, and how to measure it.
pub fn not_measured(inputs: &Inputs) -> Section {
    let mut body = vec![];
    let missing = inputs.missing();
    if !missing.is_empty() {
        body.push(table(
            &["not in these runs", "measured by"],
            missing
                .iter()
                .map(|(role, scenario)| {
                    vec![
                        role.describe().to_owned(),
                        format!("stackbench run scenarios/{scenario}.toml (or stackbench review)"),
                    ]
                })
                .collect(),
        ));
    }
    let mut unavailable: Vec<Vec<String>> = vec![];
    for (_, role, run) in &inputs.runs {
        for s in run.manifest.stacks.iter().filter(|s| s.reason.is_some()) {
            unavailable.push(vec![
                s.name.clone(),
                role.describe().to_owned(),
                s.reason.clone().unwrap_or_default(),
            ]);
        }
    }
    if !unavailable.is_empty() {
        body.push(table(&["stack", "in", "unavailable because"], unavailable));
    }
    body.push(Block::Text("Never measured here: kernel WireGuard's absolute cost on real hardware (this host's kernel lacks it, and the VM's CPU is emulated: run the suite on a host whose kernel has WireGuard); NIC offloads and interrupt coalescing of real network cards; networks spread over many machines, each with CPUs of its own.".into()));
    Section {
        id: "not-measured",
        title: "What was not measured here".into(),
        answer: format!(
            "{} of the suite's {} parts are missing from these runs; the rest is below.",
            missing.len(),
            Role::SUITE.len()
        ),
        body,
        conditions: vec![],
        charts: vec![],
    }
}

/// The machine: each run's environment fingerprint, and the machine floor.
pub fn environment(inputs: &Inputs) -> Section {
    let mut rows: Vec<Vec<String>> = vec![];
    for (dir, role, run) in &inputs.runs {
        let env: serde_json::Value = std::fs::read_to_string(dir.join("env.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let field = |k: &str| match &env[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "–".into(),
            v => v.to_string(),
        };
        rows.push(vec![
            role.describe().to_owned(),
            run.manifest.run_id.clone(),
            field("cpu_model"),
            field("cores"),
            field("kernel"),
            field("virtualization"),
            field("stackbench_git_rev"),
        ]);
    }
    let mut body = vec![table(
        &[
            "part",
            "run",
            "CPU",
            "cores",
            "kernel",
            "virtualization",
            "stackbench",
        ],
        rows,
    )];
    let floor = inputs
        .get(Role::Lan)
        .map(|(_, r)| r)
        .filter(|r| r.floor.is_some())
        .or_else(|| {
            inputs
                .runs
                .iter()
                .map(|(_, _, r)| r)
                .find(|r| r.floor.is_some())
        });
    let answer = match floor.and_then(|r| r.floor.as_ref()) {
        Some(f) => {
            body.extend(render::embed(|t| crate::floor::section(floor?, t)));
            crate::floor::wakeup_line(f)
        }
        None => "No run here measured the machine floor.".into(),
    };
    Section {
        id: "environment",
        title: "The environment".into(),
        answer,
        body,
        conditions: vec![],
        charts: vec![],
    }
}
