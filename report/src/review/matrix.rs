//! The recommendation matrix: stack × criterion, each criterion's winner named only where
//! its lead over the runner-up has a 95% interval that excludes zero.

use super::{
    facts::{self, candidates, pct},
    Block, Inputs, Role, Section,
};
use crate::{
    stats::{self, Metric},
    summary::fmt_us,
    LoadedRun,
};

/// A criterion's values for one stack of a run, one per repetition.
type Values = Box<dyn Fn(&LoadedRun, &str) -> Vec<f64>>;

/// A judged criterion: its name, verdict, each stack's values and how a value reads.
struct Column {
    name: String,
    verdict: String,
    values: Vec<(String, Vec<f64>)>,
    show: fn(f64) -> String,
}

/// One column of the matrix: where its numbers come from and which way is better.
struct Criterion {
    name: String,
    role: Role,
    /// Per repetition of a stack.
    values: Values,
    lower_is_better: bool,
    show: fn(f64) -> String,
}

fn latency(v: f64) -> String {
    fmt_us(v.max(0.0).round() as u64)
}

fn per_mb(v: f64) -> String {
    format!("{v:.1} ms/MB")
}

fn mbit(v: f64) -> String {
    format!("{v:.1} Mbit/s")
}

fn metric_criterion(inputs: &Inputs, role: Role, metric: Metric, bulk: bool) -> Option<Criterion> {
    let (_, run) = inputs.get(role)?;
    let class = if metric == Metric::CpuPerMb {
        String::new()
    } else if bulk {
        facts::classes(run)
            .into_iter()
            .find(|(_, b)| *b)
            .or_else(|| facts::classes(run).pop())?
            .0
    } else {
        facts::urgent_class(run)?
    };
    let label = if class.is_empty() {
        format!("{}: {}", role.describe(), metric.name())
    } else {
        format!("{}: {class} {}", role.describe(), metric.name())
    };
    Some(Criterion {
        name: label,
        role,
        values: Box::new(move |run, stack| stats::values(run, stack, &class, metric)),
        lower_is_better: metric.lower_is_better(),
        show: match metric {
            Metric::CpuPerMb => per_mb,
            Metric::Goodput => mbit,
            _ => latency,
        },
    })
}

fn reach_criterion(inputs: &Inputs, role: Role) -> Option<Criterion> {
    let (_, run) = inputs.get(role)?;
    let class = facts::reach_class(run)?;
    Some(Criterion {
        name: format!("{}: {class} reach 100% p50", role.describe()),
        role,
        values: Box::new(move |run, stack| facts::reach_values(run, stack, &class, "100%")),
        lower_is_better: true,
        show: latency,
    })
}

fn criteria(inputs: &Inputs) -> Vec<Criterion> {
    [
        metric_criterion(inputs, Role::Lan, Metric::P99, false),
        metric_criterion(inputs, Role::WanContinental, Metric::P99, false),
        metric_criterion(inputs, Role::WanIntercontinental, Metric::P99, false),
        metric_criterion(inputs, Role::Congested, Metric::P99, false),
        metric_criterion(inputs, Role::Lossy, Metric::P99, false),
        metric_criterion(inputs, Role::Lan, Metric::CpuPerMb, false),
        metric_criterion(inputs, Role::Bulk, Metric::Goodput, true),
        reach_criterion(inputs, Role::Gossip64),
        reach_criterion(inputs, Role::Regions64),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The winner of `c` among `stacks`, or why there is none; each stack's values.
fn judge(c: &Criterion, run: &LoadedRun) -> (String, Vec<(String, Vec<f64>)>) {
    let mut by_stack: Vec<(String, Vec<f64>)> = candidates(run)
        .into_iter()
        .map(|s| {
            let v = (c.values)(run, &s);
            (s, v)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut order: Vec<usize> = (0..by_stack.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (mean(&by_stack[a].1), mean(&by_stack[b].1));
        if c.lower_is_better {
            x.total_cmp(&y)
        } else {
            y.total_cmp(&x)
        }
    });
    let verdict = match order.as_slice() {
        [] => "no data".to_owned(),
        [only] => format!("only {} ran", by_stack[*only].0),
        [first, second, ..] => {
            let (lead, runner) = (&by_stack[*first], &by_stack[*second]);
            let change = stats::relative_change(&runner.1, &lead.1);
            if change.ci95.is_none() {
                format!(
                    "no interval with one repetition ({} leads {} by {})",
                    lead.0,
                    runner.0,
                    pct(&change)
                )
            } else if facts::significant(&change) {
                format!("{} ({} against {})", lead.0, pct(&change), runner.0)
            } else {
                format!(
                    "no significant difference ({} leads {} by {})",
                    lead.0,
                    runner.0,
                    pct(&change)
                )
            }
        }
    };
    by_stack.sort_by_key(|(s, _)| s.clone());
    (verdict, by_stack)
}

/// The matrix section.
pub fn section(inputs: &Inputs) -> Section {
    let criteria = criteria(inputs);
    let mut stacks: Vec<String> = vec![];
    let mut columns: Vec<Column> = vec![];
    for c in &criteria {
        let Some((_, run)) = inputs.get(c.role) else {
            continue;
        };
        let (verdict, values) = judge(c, run);
        for (s, _) in &values {
            if !stacks.contains(s) {
                stacks.push(s.clone());
            }
        }
        columns.push(Column {
            name: c.name.clone(),
            verdict,
            values,
            show: c.show,
        });
    }
    let mut rows: Vec<Vec<String>> = stacks
        .iter()
        .map(|s| {
            let mut row = vec![s.clone()];
            for Column {
                verdict,
                values,
                show,
                ..
            } in &columns
            {
                let cell = values
                    .iter()
                    .find(|(n, _)| n == s)
                    .map_or("–".into(), |(_, v)| {
                        let e = stats::estimate(v);
                        let mark = if verdict.starts_with(&format!("{s} (")) {
                            " ★"
                        } else {
                            ""
                        };
                        format!("{}{mark}", show(e.point))
                    });
                row.push(cell);
            }
            row
        })
        .collect();
    rows.push(
        std::iter::once("winner".to_owned())
            .chain(columns.iter().map(|c| c.verdict.clone()))
            .collect(),
    );
    let headers: Vec<String> = std::iter::once("stack".to_owned())
        .chain(columns.iter().map(|c| c.name.clone()))
        .collect();
    let winners: Vec<String> = columns
        .iter()
        .filter(|c| !c.verdict.starts_with("no ") && !c.verdict.starts_with("only "))
        .map(|c| {
            let winner = c.verdict.split(" (").next().unwrap_or(&c.verdict);
            format!("{}: {winner}", c.name)
        })
        .collect();
    let answer = if columns.is_empty() {
        "No criterion could be judged: no run of the suite is here.".to_owned()
    } else {
        format!(
            "{} of {} criteria have a winner whose lead excludes zero at 95%{}",
            winners.len(),
            columns.len(),
            if winners.is_empty() {
                ".".to_owned()
            } else {
                format!(": {}.", winners.join("; "))
            }
        )
    };
    Section {
        id: "matrix",
        title: "Recommendation matrix".into(),
        answer,
        body: vec![
            Block::Text("Means over repetitions; ★ marks a criterion's winner, named only where the 95% interval of its lead over the runner-up excludes zero. With one repetition there is no interval, so no winner.".into()),
            Block::Table { headers, rows },
        ],
        conditions: vec![],
        charts: vec![],
    }
}
