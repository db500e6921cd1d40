use super::{sections, Inputs, Role};
use crate::{
    schema::{
        ClassSummary, Percentiles, RepetitionSummary, RunManifest, StackOutcome, StackStatus,
    },
    LoadedRun,
};
use std::path::PathBuf;

/// One repetition of `stack` whose vote class has these latencies.
fn rep(stack: &str, repetition: u32, p50: u64, p99: u64) -> RepetitionSummary {
    RepetitionSummary {
        stack: stack.into(),
        repetition,
        insecure: stack == "quic-null",
        classes: vec![ClassSummary {
            name: "vote".into(),
            priority: 10,
            sent: 100,
            delivered: 100,
            delivered_bytes: 20_000,
            latency_us: Percentiles {
                count: 100,
                p50,
                p99,
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A run of scenario `name` with `reps` repetitions of each (stack, p50s, p99s).
fn run(name: &str, stacks: &[(&str, &[u64], &[u64])]) -> LoadedRun {
    let mut repetitions = vec![];
    for (stack, p50s, p99s) in stacks {
        for (i, (p50, p99)) in p50s.iter().zip(*p99s).enumerate() {
            repetitions.push(rep(stack, i as u32, *p50, *p99));
        }
    }
    LoadedRun {
        manifest: RunManifest {
            run_id: format!("run-{name}"),
            scenario: name.into(),
            stacks: stacks
                .iter()
                .map(|(s, p50s, _)| StackOutcome {
                    name: s.to_string(),
                    insecure: *s == "quic-null",
                    status: StackStatus::Available,
                    reason: None,
                    repetitions_done: p50s.len() as u32,
                    error: None,
                    privileges: if s.contains("inproc") {
                        "none beyond a UDP socket".into()
                    } else {
                        "network namespace".into()
                    },
                })
                .collect(),
            ..Default::default()
        },
        repetitions,
        links: None,
        floor: None,
        simulation: None,
    }
}

fn inputs(runs: Vec<LoadedRun>) -> Inputs {
    Inputs {
        runs: runs
            .into_iter()
            .map(|r| (PathBuf::from("/nonexistent"), Role::of(&r), r))
            .collect(),
    }
}

fn lan() -> LoadedRun {
    run(
        "lan",
        &[
            ("quic-tls", &[500, 520, 510], &[1000, 1100, 1050]),
            ("quic-tls+wg-inproc", &[900, 920, 910], &[2000, 2100, 2050]),
            ("quic-null+wg-inproc", &[800, 820, 810], &[1990, 2110, 2060]),
            ("quic-null", &[100, 100, 100], &[200, 200, 200]),
        ],
    )
}

fn section(inputs: &Inputs, id: &str) -> super::Section {
    sections(inputs)
        .into_iter()
        .find(|s| s.id == id)
        .expect("the section")
}

#[test]
fn the_latency_answer_is_read_from_the_runs_and_leaves_out_the_insecure_control() {
    let q1 = section(&inputs(vec![lan()]), "q1-latency");
    // Means over the three repetitions: 1050, 2050 and 2053.3 µs.
    assert!(
        q1.answer.contains("lowest with quic-tls (1050µs [")
            && q1
                .answer
                .contains("highest with quic-null+wg-inproc (2053µs ["),
        "{}",
        q1.answer
    );
    assert!(!q1.answer.contains("quic-null ("), "{}", q1.answer);
}

#[test]
fn a_winner_is_named_only_where_its_lead_excludes_zero() {
    let matrix = section(&inputs(vec![lan()]), "matrix");
    let super::Block::Table { rows, .. } = &matrix.body[1] else {
        panic!("a table");
    };
    let winners = rows.last().expect("the winner row");
    // vote p99: quic-tls leads clearly; CPU per MB has no CPU figures here.
    assert!(winners[1].starts_with("quic-tls ("), "{winners:?}");
    let tls = rows.iter().find(|r| r[0] == "quic-tls").expect("row");
    assert!(tls[1].ends_with('★'), "{tls:?}");
    // Two stacks whose intervals overlap have no winner.
    let close = run(
        "lan",
        &[
            ("quic-tls+wg-inproc", &[900, 920, 910], &[2000, 2100, 2050]),
            ("quic-null+wg-inproc", &[800, 820, 810], &[1990, 2110, 2060]),
        ],
    );
    let matrix = section(&inputs(vec![close]), "matrix");
    let super::Block::Table { rows, .. } = &matrix.body[1] else {
        panic!("a table");
    };
    let winners = rows.last().expect("the winner row");
    assert!(
        winners[1].starts_with("no significant difference"),
        "{winners:?}"
    );
    assert!(!rows.iter().flatten().any(|c| c.contains('★')), "{rows:?}");
    assert!(matrix.answer.starts_with("0 of "), "{}", matrix.answer);
}

#[test]
fn double_encryption_compares_tls_and_null_crypto_over_the_same_wireguard() {
    let q6 = section(&inputs(vec![lan()]), "q6-double-encryption");
    // 910 µs against 810 µs: +12%.
    assert!(
        q6.answer
            .contains("quic-tls+wg-inproc against quic-null+wg-inproc, vote p50 +12% ["),
        "{}",
        q6.answer
    );
}

#[test]
fn missing_parts_are_named_with_the_scenario_that_measures_them() {
    let i = inputs(vec![lan()]);
    assert_eq!(i.missing().len(), Role::SUITE.len() - 1);
    let q3 = section(&i, "q3-churn");
    assert!(
        q3.answer.starts_with("Not answered") && q3.answer.contains("scenarios/churn.toml"),
        "{}",
        q3.answer
    );
    let q5 = section(&i, "q5-privileges");
    assert!(
        q5.answer
            .starts_with("2 of the 4 stacks seen need nothing beyond a UDP socket"),
        "{}",
        q5.answer
    );
}

#[test]
fn runs_fill_roles_by_scenario_and_engine() {
    assert_eq!(Role::of(&lan()), Role::Lan);
    assert_eq!(Role::of(&run("quick-vm", &[])), Role::KernelVm);
    let mut simulated = run("regions-64", &[]);
    simulated.manifest.simulated_network = Some("Shadow".into());
    assert_eq!(Role::of(&simulated), Role::Other, "a cross-validation run");
    simulated.manifest.scenario = "gossip-1000".into();
    assert_eq!(Role::of(&simulated), Role::Gossip1000);
}

#[test]
fn priority_survives_where_the_urgent_class_stays_ahead_of_the_class_that_fills_the_queue() {
    // Votes against bulk (large objects, least urgent, filling the uplink); tx, as small as a
    // vote and less urgent, passes the same uncongested part of the queue, so its p50 is
    // below the votes' p99 on every stack and says nothing about priority.
    let with_bulk = |stack: &str, repetition: u32, vote_p99: u64, bulk_p50: u64| {
        let mut r = rep(stack, repetition, vote_p99 / 2, vote_p99);
        let mut tx = r.classes[0].clone();
        tx.name = "tx".into();
        tx.priority = 0;
        tx.latency_us.p50 = vote_p99 / 3;
        let mut bulk = r.classes[0].clone();
        bulk.name = "bulk".into();
        bulk.priority = -10;
        bulk.bulk = true;
        bulk.delivered_bytes = 100 * 256 * 1024;
        bulk.latency_us.p50 = bulk_p50;
        bulk.latency_us.p99 = bulk_p50 * 2;
        r.classes.extend([tx, bulk]);
        r
    };
    let mut congested = run(
        "congested",
        &[
            ("quic-tls", &[1, 1], &[1, 1]),
            ("quic-null+wg-inproc", &[1, 1], &[1, 1]),
        ],
    );
    congested.repetitions = vec![
        with_bulk("quic-tls", 0, 100, 500),
        with_bulk("quic-tls", 1, 120, 520),
        with_bulk("quic-null+wg-inproc", 0, 900, 500),
        with_bulk("quic-null+wg-inproc", 1, 950, 480),
    ];
    let s = section(&inputs(vec![congested]), "priority");
    assert!(
        s.answer.starts_with(
            "On the congested uplink, 1 of 2 stacks keep vote ahead of bulk (its p99 below bulk's p50): quic-tls; not quic-null+wg-inproc."
        ),
        "{}",
        s.answer
    );
}

#[test]
fn the_network_answer_gives_reach_90_and_100_for_the_fastest_and_slowest_stack() {
    let with_reach = |stack: &str, r90: u64, r100: u64| {
        let mut r = rep(stack, 0, 1, 1);
        r.classes[0].name = "block".into();
        for (share, p50) in [("90%", r90), ("100%", r100)] {
            r.classes[0].reach_us.insert(
                share.into(),
                Percentiles {
                    count: 10,
                    p50,
                    ..Default::default()
                },
            );
        }
        r
    };
    let mut gossip = run(
        "gossip-64",
        &[
            ("quic-tls", &[1], &[1]),
            ("quic-null+wg-inproc", &[1], &[1]),
        ],
    );
    gossip.repetitions = vec![
        with_reach("quic-tls", 300_000, 400_000),
        with_reach("quic-null+wg-inproc", 250_000, 350_000),
    ];
    let s = section(&inputs(vec![gossip]), "network");
    assert_eq!(
        s.answer,
        "gossip, 64 nodes: a block reaches 90% of the nodes in 250.0ms and all of them in 350.0ms with quic-null+wg-inproc (p50 over objects), and in 300.0ms and 400.0ms with quic-tls, the slowest of 2."
    );
}

/// An upgrade run's entries are strategies (restart, dual, the mixed network), not stacks:
/// Q5 counts the stacks of the other runs only.
#[test]
fn the_privileges_answer_counts_stacks_not_upgrade_strategies() {
    let upgrade = run(
        "upgrade",
        &[
            ("quic-tls", &[500], &[1000]),
            ("upgrade-dual", &[500], &[1000]),
        ],
    );
    let q5 = section(&inputs(vec![lan(), upgrade]), "q5-privileges");
    assert!(
        q5.answer
            .starts_with("2 of the 4 stacks seen need nothing beyond a UDP socket"),
        "{}",
        q5.answer
    );
    assert!(!q5.answer.contains("upgrade-dual"), "{}", q5.answer);
}

/// Where QUIC+TLS is the slowest, its figure is given once (as the highest), then the lead.
#[test]
fn the_latency_answer_gives_quic_tls_once_when_it_is_the_highest() {
    let wan = run(
        "wan-continental",
        &[
            ("quic-tls", &[500, 520], &[3000, 3100]),
            ("quic-null+wg-inproc", &[400, 410], &[1000, 1010]),
        ],
    );
    let q1 = section(&inputs(vec![wan]), "q1-latency");
    assert!(
        q1.answer.contains("highest with quic-tls (3050µs [")
            && !q1.answer.contains("QUIC+TLS has")
            && q1
                .answer
                .contains("; quic-null+wg-inproc is lower than quic-tls ("),
        "{}",
        q1.answer
    );
}
