//! A node's record log, free of I/O: what a node writes to a file as the run goes rather
//! than keeping it until it reports, so that its memory stays flat however long the run.
//! Two kinds of record grow with the run: first deliveries (kept in memory they grew every
//! soak node by about 2 MiB an hour) and sealed steps of the latency timeline (a few hundred
//! bytes to 1.5 KB per class per step). The controller reads the log when the node reports
//! and puts both back into the report.
//!
//! One record per line, so a log cut off mid-write is detected:
//! `d <origin> <class> <seq> <latency µs>` and `t <class> <step> <histogram>`.

use crate::control::NodeReport;
use serde::{Deserialize, Serialize};

/// One first delivery of a measured open-loop object: (origin, class, seq, latency µs).
pub type Delivery = (u16, u8, u64, u64);

/// How many records of each kind a node wrote, as its report states them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logged {
    pub deliveries: u64,
    pub timeline_steps: u64,
}

/// Why a record log cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordLogError {
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("the last line is cut off (no newline): the log was not written out")]
    CutOff,
    #[error("{found:?} records, but the node reported writing {expected:?}")]
    Count { found: Logged, expected: Logged },
}

/// Appends a delivery's line to `out` (a buffer the writer reuses: a node writes one line
/// per first delivery, on its measured path).
pub fn push_delivery_line(out: &mut String, d: &Delivery) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = writeln!(out, "d {} {} {} {}", d.0, d.1, d.2, d.3);
}

/// Appends a sealed timeline step's line to `out`: `class`'s histogram for `step`, encoded.
pub fn push_step_line(out: &mut String, class: u8, step: u32, encoded: &str) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = writeln!(out, "t {class} {step} {encoded}");
}

/// A delivery's line.
#[cfg(test)]
fn delivery_line(d: &Delivery) -> String {
    let mut s = String::new();
    push_delivery_line(&mut s, d);
    s
}

/// Every record of a log, which the node said holds `expected` records, put back into
/// `report`: deliveries appended, sealed steps added to their class's timeline.
pub fn restore(
    text: &str,
    expected: Logged,
    report: &mut NodeReport,
) -> Result<(), RecordLogError> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(RecordLogError::CutOff);
    }
    let mut found = Logged::default();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| RecordLogError::Line {
            line: i + 1,
            why: why.to_owned(),
        };
        let mut f = line.split(' ');
        let kind = f.next();
        let mut num = |what: &str| -> Result<u64, RecordLogError> {
            f.next()
                .ok_or_else(|| bad(&format!("no {what}")))?
                .parse::<u64>()
                .map_err(|e| bad(&format!("{what}: {e}")))
        };
        match kind {
            Some("d") => {
                let origin =
                    u16::try_from(num("origin")?).map_err(|_| bad("origin out of range"))?;
                let class = u8::try_from(num("class")?).map_err(|_| bad("class out of range"))?;
                let (seq, latency) = (num("seq")?, num("latency")?);
                report.deliveries.push((origin, class, seq, latency));
                found.deliveries += 1;
            }
            Some("t") => {
                let class = num("class")? as usize;
                let step = u32::try_from(num("step")?).map_err(|_| bad("step out of range"))?;
                let encoded = f.next().ok_or_else(|| bad("no histogram"))?;
                let counters = report
                    .classes
                    .get_mut(class)
                    .ok_or_else(|| bad(&format!("class {class}: the report has no such class")))?;
                counters.timeline_sealed.push((step, encoded.to_owned()));
                found.timeline_steps += 1;
            }
            _ => return Err(bad("neither a delivery (d) nor a timeline step (t)")),
        }
        if f.next().is_some() {
            return Err(bad("more fields than its kind has"));
        }
    }
    if found != expected {
        return Err(RecordLogError::Count { found, expected });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ClassCounters;

    fn report() -> NodeReport {
        NodeReport {
            classes: vec![ClassCounters::default(); 2],
            ..Default::default()
        }
    }

    #[test]
    fn records_come_back_into_the_report() {
        let ds = [(0u16, 0u8, 0u64, 0u64), (65535, 1, u64::MAX, 123_456_789)];
        let mut text: String = ds.iter().map(delivery_line).collect();
        push_step_line(&mut text, 1, 7, "HISTFAAA");
        let mut r = report();
        let logged = Logged {
            deliveries: 2,
            timeline_steps: 1,
        };
        assert_eq!(restore(&text, logged, &mut r), Ok(()));
        assert_eq!(r.deliveries, ds.to_vec());
        assert_eq!(
            r.classes[1].timeline_sealed,
            vec![(7, "HISTFAAA".to_owned())]
        );
        assert_eq!(restore("", Logged::default(), &mut report()), Ok(()));
    }

    #[test]
    fn a_cut_off_garbled_or_short_log_is_refused_naming_the_line() {
        let text: String = [(1u16, 0u8, 3u64, 4u64); 3]
            .iter()
            .map(delivery_line)
            .collect();
        let three = Logged {
            deliveries: 3,
            timeline_steps: 0,
        };
        let err = |t: &str, l: Logged| restore(t, l, &mut report()).expect_err(t).to_string();
        assert_eq!(
            err(&text[..text.len() - 1], three),
            "the last line is cut off (no newline): the log was not written out"
        );
        assert!(err(
            &text,
            Logged {
                deliveries: 4,
                ..three
            }
        )
        .contains("node reported writing"));
        assert_eq!(
            err("d 1 0 x 4\n", three),
            "line 1: seq: invalid digit found in string"
        );
        assert_eq!(err("d 70000 0 1 4\n", three), "line 1: origin out of range");
        assert_eq!(
            err("d 1 0 1 4 5\n", three),
            "line 1: more fields than its kind has"
        );
        assert_eq!(
            err("t 2 0 HIST\n", three),
            "line 1: class 2: the report has no such class"
        );
        assert_eq!(
            err("d 1 0 1 4\nq\n", three),
            "line 2: neither a delivery (d) nor a timeline step (t)"
        );
    }
}
