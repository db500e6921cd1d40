//! Which charts a report has, built from one or more runs: per class, the percentile
//! distribution, the CDF, p50/p99/p99.9 bars with 95% intervals, time to reach N% of the
//! nodes and the latency timeline; per stack, CPU per delivered MB.

use crate::{
    hist,
    plots::{Axis, Bar, Chart, Series},
    stats::{self, Metric},
    Report,
};

/// Points of a histogram's percentile distribution, x = 1/(1-q) (the nines axis).
fn percentile_points(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(2)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64))
        .filter(|(q, _)| *q < 0.999_999)
        .map(|(q, v)| (1.0 / (1.0 - q), v.max(1.0)))
        .collect();
    pts.dedup_by(|a, b| a.0 == b.0);
    pts
}

fn cdf_points(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    h.iter_quantiles(2)
        .map(|v| {
            (
                (v.value_iterated_to() as f64).max(1.0),
                v.quantile_iterated_to(),
            )
        })
        .collect()
}

/// The simulator's median reach times for `class`, as a line beside the measured ones.
fn predicted_reach(report: &Report, class: &str) -> Option<Series> {
    let sim = report.run.simulation.as_ref()?;
    let c = sim.classes.iter().find(|k| k.class == class)?;
    let points: Vec<(f64, f64)> = ["50", "90", "99", "100"]
        .iter()
        .filter_map(|n| {
            let p = c.reach_us.get(&format!("{n}%")).filter(|p| p.count > 0)?;
            Some((n.parse().unwrap_or(0.0), (p.p50 as f64).max(1.0)))
        })
        .collect();
    (!points.is_empty()).then(|| Series {
        name: "predicted (simulator)".into(),
        points,
    })
}

/// Every chart of the report, each with a short id for file names.
pub fn build(report: &Report) -> Vec<(String, Chart)> {
    let mut out = vec![];
    for class in &report.classes {
        let c = class.name.as_str();
        let mut pct = vec![];
        let mut cdf = vec![];
        let mut timeline = vec![];
        for e in &report.entries {
            if let Some(h) = hist::merged_latency(&e.dir, e.reps, c) {
                pct.push(Series {
                    name: e.label.clone(),
                    points: percentile_points(&h),
                });
                cdf.push(Series {
                    name: e.label.clone(),
                    points: cdf_points(&h),
                });
            }
            let t = hist::timeline(&e.dir, e.reps, c);
            if !t.is_empty() {
                timeline.push(Series {
                    name: format!("{} p99", e.label),
                    points: t.iter().map(|(s, _, p99)| (*s, p99.max(1.0))).collect(),
                });
            }
        }
        let lines =
            |title: String, x_desc: &str, y_desc: &str, x: Axis, y: Axis, s: Vec<Series>| {
                Chart::Lines {
                    title,
                    x_desc: x_desc.into(),
                    y_desc: y_desc.into(),
                    x_axis: x,
                    y_axis: y,
                    series: s,
                    markers: vec![],
                }
            };
        out.push((
            format!("{c}-percentiles"),
            lines(
                format!("{c}: latency by percentile"),
                "percentile",
                "latency (µs)",
                Axis::Nines,
                Axis::Log,
                pct,
            ),
        ));
        out.push((
            format!("{c}-cdf"),
            lines(
                format!("{c}: latency CDF"),
                "latency (µs)",
                "fraction of deliveries",
                Axis::Log,
                Axis::Linear,
                cdf,
            ),
        ));
        let groups = report
            .entries
            .iter()
            .map(|e| {
                let bars = [Metric::P50, Metric::P99, Metric::P999]
                    .into_iter()
                    .filter_map(|m| {
                        let v = stats::values(&report.run, &e.label, c, m);
                        (!v.is_empty()).then(|| {
                            let est = stats::estimate(&v);
                            Bar {
                                name: m.name().into(),
                                value: est.point,
                                ci95: est.ci95,
                            }
                        })
                    })
                    .collect();
                (e.label.clone(), bars)
            })
            .collect();
        out.push((
            format!("{c}-bars"),
            Chart::Bars {
                title: format!("{c}: p50, p99, p99.9 (mean of repetitions, 95% CI)"),
                y_desc: "latency (µs)".into(),
                log: true,
                groups,
            },
        ));
        if !class.bulk {
            let reach: Vec<Series> = report
                .entries
                .iter()
                .map(|e| Series {
                    name: e.label.clone(),
                    points: ["50", "90", "99", "100"]
                        .iter()
                        .filter_map(|n| {
                            let v: Vec<f64> = report
                                .run
                                .repetitions
                                .iter()
                                .filter(|r| r.stack == e.label)
                                .filter_map(|r| r.classes.iter().find(|k| k.name == c))
                                .filter_map(|k| {
                                    k.reach_us.get(&format!("{n}%")).map(|p| p.p50 as f64)
                                })
                                .filter(|v| *v > 0.0)
                                .collect();
                            (!v.is_empty())
                                .then(|| (n.parse().unwrap_or(0.0), stats::estimate(&v).point))
                        })
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .chain(predicted_reach(report, c))
                .collect();
            out.push((
                format!("{c}-reach"),
                lines(
                    format!("{c}: median time to reach N% of nodes"),
                    "N (% of receiving nodes)",
                    "time (µs)",
                    Axis::Linear,
                    Axis::Log,
                    reach,
                ),
            ));
        }
        let mut chart = lines(
            format!("{c}: p99 latency over the measured window"),
            "second of intended send time",
            "latency (µs)",
            Axis::Linear,
            Axis::Log,
            timeline,
        );
        let events = crate::churn::event_times(&report.run);
        let upgrades = crate::upgrade::timeline_marks(&report.run);
        if let Chart::Lines { title, markers, .. } = &mut chart {
            if !events.is_empty() {
                *title = format!("{c}: p99 latency, churn events marked");
                *markers = events;
            } else if !upgrades.is_empty() {
                *title = format!("{c}: p99 latency, upgrades' start and end marked");
                *markers = upgrades;
            }
        }
        out.push((format!("{c}-timeline"), chart));
        if let Some(bars) = crate::churn::disruption_bars(report, c) {
            out.push((format!("{c}-disruption"), bars));
        }
        if let Some(chart) = crate::crash::reach_timeline(&report.run, c) {
            out.push((format!("{c}-crash-reach"), chart));
        }
    }
    let cpu = report
        .entries
        .iter()
        .map(|e| {
            let v = stats::values(&report.run, &e.label, "", Metric::CpuPerMb);
            let est = stats::estimate(&v);
            (
                e.label.clone(),
                vec![Bar {
                    name: "CPU ms per delivered MB".into(),
                    value: est.point,
                    ci95: est.ci95,
                }],
            )
        })
        .collect();
    if let Some(chart) = crate::upgrade::timeline_chart(&report.run) {
        out.push(("upgrade-timeline".into(), chart));
    }
    out.push((
        "cpu-per-mb".into(),
        Chart::Bars {
            title: "CPU per delivered MB (nodes + underlay + softirq; 95% CI)".into(),
            y_desc: "CPU ms per MB".into(),
            log: false,
            groups: cpu,
        },
    ));
    out
}
