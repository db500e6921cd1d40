//! The scale sweep's verdict: per stack, the largest network the machine ran without
//! saturating its CPU, and a table a person reads at a glance.

use crate::{
    schema::{ScalePoint, ScaleSweep},
    summary::{fmt_us, markdown_table},
};

/// Whether `p` ran, completed and stayed below the saturation share, on average and in
/// its busiest second.
pub fn unsaturated(p: &ScalePoint, saturated_at: f64) -> bool {
    p.complete
        && p.cpu_busy_fraction.is_some_and(|c| c < saturated_at)
        && p.cpu_busy_peak_fraction.is_none_or(|c| c < saturated_at)
}

/// Per stack in sweep order, the largest size below saturation, or `None` when even the
/// smallest saturated or failed.
pub fn largest_unsaturated(sweep: &ScaleSweep) -> Vec<(String, Option<u32>)> {
    let mut out: Vec<(String, Option<u32>)> = vec![];
    for p in &sweep.points {
        if !out.iter().any(|(s, _)| *s == p.stack) {
            out.push((p.stack.clone(), None));
        }
        if unsaturated(p, sweep.saturated_at) {
            // The entry was pushed above.
            if let Some((_, best)) = out.iter_mut().find(|(s, _)| *s == p.stack) {
                *best = Some(best.map_or(p.nodes, |b| b.max(p.nodes)));
            }
        }
    }
    out
}

/// The sweep as Markdown: every point, then the verdict per stack.
pub fn markdown(sweep: &ScaleSweep) -> String {
    let rows: Vec<Vec<String>> = sweep
        .points
        .iter()
        .map(|p| {
            vec![
                p.stack.clone(),
                p.nodes.to_string(),
                p.cpu_busy_fraction
                    .map_or("–".into(), |c| format!("{:.0}%", c * 100.0)),
                p.cpu_busy_peak_fraction
                    .map_or("–".into(), |c| format!("{:.0}%", c * 100.0)),
                if p.complete { "yes" } else { "no" }.into(),
                p.reach_all_p50_us.map_or("–".into(), fmt_us),
                format!("{:.1}MB", p.max_rss_bytes as f64 / 1e6),
                p.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut s = format!(
        "## Scale: {}\n\nCPU busy at or above {:.0}%, on average or in the busiest second, counts as saturated.\n\n",
        sweep.scenario,
        sweep.saturated_at * 100.0
    );
    s.push_str(&markdown_table(
        &[
            "stack",
            "nodes",
            "CPU busy",
            "busiest second",
            "complete",
            "reach 100% p50",
            "RSS/node max",
            "error",
        ],
        &rows,
    ));
    s.push_str("\nLargest network without saturation:\n\n");
    for (stack, best) in largest_unsaturated(sweep) {
        s.push_str(&match best {
            Some(n) => format!("- {stack}: {n} nodes\n"),
            None => format!("- {stack}: none of the sizes tried\n"),
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(stack: &str, nodes: u32, cpu: Option<f64>, complete: bool) -> ScalePoint {
        ScalePoint {
            stack: stack.into(),
            nodes,
            cpu_busy_fraction: cpu,
            complete,
            ..Default::default()
        }
    }

    #[test]
    fn the_largest_size_below_saturation_wins() {
        let sweep = ScaleSweep {
            saturated_at: 0.9,
            points: vec![
                point("quic-tls", 16, Some(0.2), true),
                point("quic-tls", 32, Some(0.5), true),
                ScalePoint {
                    cpu_busy_peak_fraction: Some(0.97),
                    ..point("bursty", 16, Some(0.5), true)
                },
                point("quic-tls", 64, Some(0.95), true),
                point("wg-go", 16, Some(0.7), true),
                point("wg-go", 32, Some(0.6), false),
                point("slow", 16, None, false),
            ],
            ..Default::default()
        };
        assert_eq!(
            largest_unsaturated(&sweep),
            vec![
                ("quic-tls".into(), Some(32)),
                ("bursty".into(), None),
                ("wg-go".into(), Some(16)),
                ("slow".into(), None)
            ]
        );
        let md = markdown(&sweep);
        assert!(md.contains("- quic-tls: 32 nodes"), "{md}");
        assert!(md.contains("- slow: none of the sizes tried"), "{md}");
    }
}
