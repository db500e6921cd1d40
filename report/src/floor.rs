//! The machine's floor beside each stack: a small class's latency as measured, the raw-UDP
//! floor on the same namespaces and schedule, and the part above the floor, which is what
//! the stack costs. On a machine whose idle wake-up is expensive, sparse classes sit far
//! above zero before any stack runs; without the floor a reader would charge that to the
//! stack.

use crate::{
    schema::{MachineFloor, Percentiles},
    summary::{fmt_us, LoadedRun},
};

pub const HEADERS: [&str; 9] = [
    "stack",
    "rep",
    "class",
    "p50",
    "floor p50",
    "above floor p50",
    "p99",
    "floor p99",
    "above floor p99",
];

/// Signed µs difference, short.
fn above(measured: u64, floor: u64) -> String {
    let d = measured as i64 - floor as i64;
    if d < 0 {
        format!("-{}", fmt_us(d.unsigned_abs()))
    } else {
        fmt_us(d as u64)
    }
}

fn floor_of<'a>(f: &'a MachineFloor, class: &str) -> Option<&'a Percentiles> {
    f.classes
        .iter()
        .find(|c| c.class == class)
        .map(|c| &c.one_way_us)
        .filter(|p| p.count > 0)
}

/// One row per stack, repetition and class that has a floor.
pub fn rows(run: &LoadedRun) -> Vec<[String; 9]> {
    let Some(f) = &run.floor else { return vec![] };
    run.repetitions
        .iter()
        .flat_map(|r| {
            r.classes.iter().filter_map(move |c| {
                let fl = floor_of(f, &c.name)?;
                let l = &c.latency_us;
                Some([
                    r.stack.clone(),
                    r.repetition.to_string(),
                    c.name.clone(),
                    fmt_us(l.p50),
                    fmt_us(fl.p50),
                    above(l.p50, fl.p50),
                    fmt_us(l.p99),
                    fmt_us(fl.p99),
                    above(l.p99, fl.p99),
                ])
            })
        })
        .collect()
}

/// One sentence: the idle wake-up cost.
pub fn wakeup_line(f: &MachineFloor) -> String {
    let w = &f.wakeup;
    format!(
        "Idle wake-up: raw UDP one way between two threads of n{} p50 {} with {} ms idle between messages, {} back to back; going idle costs each delivery about {}.",
        f.from,
        fmt_us(w.sparse_one_way_us.p50),
        w.sparse_gap_us / 1000,
        fmt_us(w.back_to_back_one_way_us.p50),
        fmt_us(w.cost_us.max(0.0) as u64)
    )
}

/// The section, its table drawn by `table`; `None` for runs without a floor.
pub fn section(run: &LoadedRun, table: crate::links::TableFn) -> Option<String> {
    let f = run.floor.as_ref()?;
    let mut s = String::from(
        "What the machine costs before any stack: raw UDP between two of the run's namespaces at each small class's rate and sizes. The part above the floor is the stack's.\n\n",
    );
    let rows = rows(run);
    if rows.is_empty() {
        s.push_str("No class fits one datagram, so no class has a raw-UDP floor.\n");
    } else {
        s.push_str(&table(
            &HEADERS,
            &rows.into_iter().map(Vec::from).collect::<Vec<_>>(),
        ));
    }
    s.push_str(&format!("\n{}\n\nMethod: {}.\n", wakeup_line(f), f.method));
    Some(s)
}

/// Lines for the terminal: each small class's floor, and the wake-up cost.
pub fn terminal_lines(run: &LoadedRun) -> String {
    let Some(f) = &run.floor else {
        return String::new();
    };
    let classes: Vec<String> = f
        .classes
        .iter()
        .map(|c| match c.one_way_us.count {
            0 => format!("{} no samples (too few objects at its rate)", c.class),
            _ => format!(
                "{} p50 {} p99 {}",
                c.class,
                fmt_us(c.one_way_us.p50),
                fmt_us(c.one_way_us.p99)
            ),
        })
        .collect();
    let mut s = String::new();
    if !classes.is_empty() {
        s.push_str(&format!(
            "floor (raw UDP, no stack): {}\n",
            classes.join("; ")
        ));
    }
    s.push_str(&format!("{}\n", wakeup_line(f)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ClassSummary, FloorClass, RepetitionSummary, RunManifest};

    fn p(p50: u64, p99: u64) -> Percentiles {
        Percentiles {
            count: 100,
            p50,
            p99,
            ..Default::default()
        }
    }

    #[test]
    fn the_part_above_the_floor_is_the_stacks() {
        let run = LoadedRun {
            manifest: RunManifest::default(),
            repetitions: vec![RepetitionSummary {
                stack: "quic-tls".into(),
                classes: vec![
                    ClassSummary {
                        name: "vote".into(),
                        latency_us: p(510, 900),
                        ..Default::default()
                    },
                    ClassSummary {
                        name: "block".into(),
                        latency_us: p(5000, 9000),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            links: None,
            simulation: None,
            floor: Some(MachineFloor {
                classes: vec![FloorClass {
                    class: "vote".into(),
                    one_way_us: p(420, 1000),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        let rows = rows(&run);
        assert_eq!(rows.len(), 1, "only the class with a floor");
        assert_eq!(rows[0][2], "vote");
        assert_eq!(rows[0][5], "90µs");
        assert_eq!(
            rows[0][8], "-100µs",
            "a p99 under the floor's stays visible"
        );
        let md = section(&run, &|h, r| crate::summary::markdown_table(h, r)).expect("section");
        assert!(md.contains("above floor p50") && md.contains("Idle wake-up"));
    }
}
