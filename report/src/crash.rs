//! The crash part of a report: each crash and how its neighbours found out, where every
//! (object, receiver) pair went, and reach times while a node was down beside the rest.

use crate::{
    churn::p50_p99,
    links::TableFn,
    plots::{Axis, Chart, Series},
    schema::{
        crash::{ClassCrashAccount, CrashRecord, CrashSummary},
        RepetitionSummary,
    },
    summary::fmt_us,
    LoadedRun,
};

fn ms(v: f64) -> String {
    fmt_us((v * 1e3).round() as u64)
}

/// One row per repetition and class: stack, repetition, class, then `cells`.
fn class_rows(
    reps: &[(&RepetitionSummary, &CrashSummary)],
    cells: impl Fn(&ClassCrashAccount) -> Vec<String>,
) -> Vec<Vec<String>> {
    reps.iter()
        .flat_map(|(r, c)| {
            c.classes.iter().map(|a| {
                let mut row = vec![r.stack.clone(), r.repetition.to_string(), a.class.clone()];
                row.extend(cells(a));
                row
            })
        })
        .collect()
}

/// Appends a table of [`class_rows`], whose first columns are stack, rep and class.
fn push_class_table(s: &mut String, table: TableFn, headers: &[&str], rows: &[Vec<String>]) {
    let all: Vec<&str> = ["stack", "rep", "class"]
        .into_iter()
        .chain(headers.iter().copied())
        .collect();
    push_table(s, table, &all, rows);
}

/// Appends a table, a blank line before it.
fn push_table(s: &mut String, table: TableFn, headers: &[&str], rows: &[Vec<String>]) {
    s.push('\n');
    s.push_str(&table(headers, rows));
}

fn with_crashes(run: &LoadedRun) -> Vec<(&RepetitionSummary, &CrashSummary)> {
    run.repetitions
        .iter()
        .filter_map(|r| r.crashes.as_ref().map(|c| (r, c)))
        .collect()
}

/// The crash section: prose and tables (each table drawn by `table`).
pub fn section(run: &LoadedRun, table: TableFn) -> Option<String> {
    let reps = with_crashes(run);
    let (_, first) = reps.first()?;
    let mut s = format!(
        "A crash is SIGKILL: nothing drains and no connection is closed; the neighbours find out when their transport gives the connection up. A recovered node's process starts again with its keys, dials its neighbours and resumes its schedule. Every (object, receiver) pair is counted once: delivered; **lost to the crash** (the receiver was down, from the crash until it had an object again, or the origin was down when the object fell due); **unobserved** (the receiver crashed later, and its records died with it); lost near a crash (due within {:.0} ms before an outage or during it, to a node that was up: in flight through the crashed node); or **lost by the stack**. Reach times count only receivers that were up and observed.\n",
        first.window_ms
    );
    let mut rows = vec![];
    for (r, c) in &reps {
        for k in &c.crashes {
            let noticed = if k.noticed.is_empty() {
                "–".to_owned()
            } else {
                let mut hows: Vec<&str> = k.noticed.iter().map(|n| n.how.as_str()).collect();
                hows.sort_unstable();
                hows.dedup();
                format!(
                    "{} of {}: p50 {} max {} ({})",
                    k.noticed.len(),
                    k.noticed.len() + k.not_noticed.len(),
                    fmt_us(k.noticed_us.p50),
                    fmt_us(k.noticed_us.max),
                    hows.join(", ")
                )
            };
            rows.push(vec![
                r.stack.clone(),
                r.repetition.to_string(),
                k.node.to_string(),
                if k.scheduled {
                    "scheduled"
                } else {
                    "UNSCHEDULED"
                }
                .into(),
                format!("{:.2} s", k.at_s),
                k.recovered_at_s
                    .map_or("never".into(), |t| format!("{t:.2} s")),
                noticed,
                match first_object(k, &c.crashes) {
                    Ok(f) => ms(f),
                    Err("not back") => "–".into(),
                    Err(why) => why.into(),
                },
                p50_p99(&k.reconnect_us),
            ]);
        }
    }
    push_table(
        &mut s,
        table,
        &[
            "stack",
            "rep",
            "node",
            "crash",
            "at",
            "recovered",
            "neighbours noticed after",
            "recovery → 1st object",
            "reconnect p50 / p99",
        ],
        &rows,
    );
    let rows = class_rows(&reps, |a| {
        [
            a.expected,
            a.delivered,
            a.lost_to_crash,
            a.unobserved,
            a.lost_near_crash,
            a.lost_by_stack,
        ]
        .map(|n| n.to_string())
        .to_vec()
    });
    push_class_table(
        &mut s,
        table,
        &[
            "pairs expected",
            "delivered",
            "lost to the crash",
            "unobserved",
            "lost near a crash",
            "lost by the stack",
        ],
        &rows,
    );
    let rows = class_rows(&reps, |a| {
        vec![
            p50_p99(&a.steady_reach90_us),
            p50_p99(&a.down_reach90_us),
            p50_p99(&a.steady_reach100_us),
            p50_p99(&a.down_reach100_us),
            a.down_unreached90.to_string(),
        ]
    });
    push_class_table(
        &mut s,
        table,
        &[
            "reach 90% p50 / p99, no node down",
            "… while a node was down",
            "reach 100%, no node down",
            "… while a node was down",
            "objects due while down that never reached 90%",
        ],
        &rows,
    );
    Some(s)
}

/// Median reach-90% time of `class` over the run, per stack, with each crash and recovery
/// marked: the excursion a crash causes.
pub fn reach_timeline(run: &LoadedRun, class: &str) -> Option<Chart> {
    let reps = with_crashes(run);
    let (_, first) = reps.first()?;
    let mut markers: Vec<f64> = first.crashes.iter().map(|k| k.at_s).collect();
    markers.extend(first.crashes.iter().filter_map(|k| k.recovered_at_s));
    let series: Vec<Series> = reps
        .iter()
        .filter(|(r, _)| r.repetition == 0)
        .filter_map(|(r, c)| {
            let a = c.classes.iter().find(|a| a.class == class)?;
            let step = a.timeline_step_ms / 1e3;
            let points: Vec<(f64, f64)> = a
                .reach90_timeline_ms
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as f64 * step, v * 1e3)))
                .collect();
            (!points.is_empty()).then(|| Series {
                name: r.stack.clone(),
                points,
            })
        })
        .collect();
    (!series.is_empty()).then(|| Chart::Lines {
        title: format!(
            "{class}: median time to reach 90% of the nodes up, crashes and recoveries marked"
        ),
        x_desc: "s of intended send time".into(),
        y_desc: "reach 90% (µs)".into(),
        x_axis: Axis::Linear,
        y_axis: Axis::Log,
        series,
        markers,
    })
}

/// From `k`'s recovery to the recovered node's first object, ms, or why there is none: a
/// recovered life that crashed again took its records with it, so its first object was
/// not observed (rather than never received).
fn first_object(k: &CrashRecord, all: &[CrashRecord]) -> Result<f64, &'static str> {
    let crashed_again = all.iter().any(|o| o.node == k.node && o.at_s > k.at_s);
    match (k.recovered_at_s, k.first_delivery_ms) {
        (None, _) => Err("not back"),
        (Some(_), Some(f)) => Ok(f),
        (Some(_), None) if crashed_again => Err("1st object not observed (it crashed again)"),
        (Some(_), None) => Err("no object since"),
    }
}

/// One line per repetition with crashes, for the terminal.
pub fn terminal_lines(run: &LoadedRun) -> String {
    let mut s = String::new();
    for (r, c) in with_crashes(run) {
        let each: Vec<String> = c
            .crashes
            .iter()
            .map(|k| {
                format!(
                    "node {} at {:.2} s{}, {} of {} neighbours noticed (p50 {} later), {}",
                    k.node,
                    k.at_s,
                    if k.scheduled { "" } else { " (UNSCHEDULED)" },
                    k.noticed.len(),
                    k.noticed.len() + k.not_noticed.len(),
                    fmt_us(k.noticed_us.p50),
                    match k.recovered_at_s {
                        Some(t) => match first_object(k, &c.crashes) {
                            Ok(f) => format!("back at {t:.2} s, 1st object {} later", ms(f)),
                            Err(why) => format!("back at {t:.2} s, {why}"),
                        },
                        None => "not back".into(),
                    }
                )
            })
            .collect();
        let lost: u64 = c.classes.iter().map(|a| a.lost_to_crash).sum();
        let by_stack: u64 = c.classes.iter().map(|a| a.lost_by_stack).sum();
        s.push_str(&format!(
            "crashes: {} #{}: {}; pairs lost to crashes {lost}, by the stack {by_stack}\n",
            r.stack,
            r.repetition,
            each.join("; ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_life_that_crashed_again_has_its_first_object_unobserved_not_missing() {
        let crash = |at_s: f64, first: Option<f64>| CrashRecord {
            node: 5,
            at_s,
            recovered_at_s: Some(at_s + 20.0),
            first_delivery_ms: first,
            ..Default::default()
        };
        let all = [crash(60.0, None), crash(180.0, Some(42.1))];
        assert_eq!(
            first_object(&all[0], &all),
            Err("1st object not observed (it crashed again)")
        );
        assert_eq!(first_object(&all[1], &all), Ok(42.1));
        let last = [crash(60.0, None)];
        assert_eq!(first_object(&last[0], &last), Err("no object since"));
        let gone = CrashRecord {
            recovered_at_s: None,
            ..crash(60.0, None)
        };
        assert_eq!(first_object(&gone, &[]), Err("not back"));
    }
}
