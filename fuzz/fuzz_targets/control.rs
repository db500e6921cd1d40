//! The control protocol's decoder as the controller uses it: lines from a node that may be
//! misbehaving or half-dead (cut off, garbage, well-formed nonsense). Each line decodes or
//! is refused; a decoded report is checked, and one that passes is summarised as the
//! controller would, without a panic. The same bytes are read as a node's record log too,
//! alone and into each decoded report that says it kept one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stackbench_core::{
    control::{decode, NodeReport, ToController, ToNode},
    crash::{summarize, ObservedCrash},
    record_log::{restore, Logged},
    shortfall::nodes_short,
    workload::example_plan,
};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let plan = example_plan();
    let text = String::from_utf8_lossy(data);
    let mut blank = NodeReport {
        classes: vec![Default::default(); plan.classes.len()],
        ..Default::default()
    };
    let _ = restore(&text, Logged::default(), &mut blank);
    for line in text.lines() {
        let _ = decode::<ToNode>(line);
        let Ok(ToController::Report(report)) = decode::<ToController>(line) else {
            continue;
        };
        let mut report = *report;
        if let Some(logged) = report.logged {
            if restore(&text, logged, &mut report).is_err() {
                continue;
            }
        }
        if report.check(&plan, report.index).is_err() || report.index >= plan.nodes {
            continue;
        }
        let reports = [report];
        for class in 0..plan.classes.len() as u8 {
            let _ = nodes_short(&plan, &reports, class);
        }
        let crash = ObservedCrash {
            node: (reports[0].index + 1) % plan.nodes,
            scheduled: true,
            at: Duration::from_secs(2),
            recovered: Some(Duration::from_secs(3)),
        };
        let _ = summarize(&plan, &[crash], &reports);
    }
});
