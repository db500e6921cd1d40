//! Memory and descriptors over a run: the controller's and each node's resident memory
//! and open file descriptors, sampled through the repetition. A leak shows as a slope; a
//! soak is read here.

use crate::{links::TableFn, schema::ResourceSample, LoadedRun};

/// Fewest samples a series needs before its slope says anything.
const MIN_SAMPLES: usize = 3;
/// Processes warm up (buffers, connection tables, allocator arenas): slopes are taken
/// after this many seconds where enough samples are left.
const WARM_UP_S: f64 = 60.0;

/// Least-squares slope of `y` over `t`, per hour.
fn slope_per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mt, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (t, y)| (a + t / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (t, y)| {
        (num + (t - mt) * (y - my), den + (t - mt) * (t - mt))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den * 3600.0
    }
}

/// First, last and largest value, and the slope per hour, of one measure of a series.
struct Trend {
    first: f64,
    last: f64,
    max: f64,
    per_hour: f64,
    /// The slope over the second half of the process's life: a rise that is levelling off
    /// (allocator high-water marks, connection tables filling) shows here as much less
    /// than `per_hour`; a leak does not.
    late_per_hour: Option<f64>,
}

/// The points of `samples` after the process's warm-up.
fn warm_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let start = points.first().map_or(0.0, |p| p.0);
    points
        .iter()
        .copied()
        .filter(|p| p.0 >= start + WARM_UP_S)
        .collect()
}

/// How long a process was sampled, in seconds.
fn span_s(samples: &[ResourceSample]) -> f64 {
    match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => b.t_s - a.t_s,
        _ => 0.0,
    }
}

/// Whether a process lived long enough for its slope to say anything about a leak: past
/// its warm-up with samples to spare, and at least half as long as the longest-lived
/// node (a node's memory rises for minutes after it starts, so a late recovery's
/// start-up would otherwise always be "steepest").
fn has_long_trend(samples: &[ResourceSample], longest_s: f64) -> bool {
    let warm = samples
        .iter()
        .filter(|s| s.t_s >= samples[0].t_s + WARM_UP_S)
        .count();
    warm >= MIN_SAMPLES && span_s(samples) >= longest_s / 2.0
}

fn trend(samples: &[ResourceSample], f: impl Fn(&ResourceSample) -> f64) -> Trend {
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.t_s, f(s))).collect();
    let warm = warm_points(&points);
    let middle = points.first().map_or(0.0, |p| p.0) + span_s(samples) / 2.0;
    let late: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 >= middle).collect();
    Trend {
        first: points.first().map_or(0.0, |p| p.1),
        last: points.last().map_or(0.0, |p| p.1),
        max: points.iter().map(|p| p.1).fold(0.0, f64::max),
        per_hour: slope_per_hour(if warm.len() >= MIN_SAMPLES {
            &warm
        } else {
            &points
        }),
        late_per_hour: (late.len() >= MIN_SAMPLES).then(|| slope_per_hour(&late)),
    }
}

fn row(stack: &str, rep: u32, who: &str, samples: &[ResourceSample]) -> Vec<String> {
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let rss = trend(samples, |s| mib(s.rss_bytes as f64));
    let fds = trend(samples, |s| f64::from(s.fds));
    vec![
        stack.into(),
        rep.to_string(),
        who.into(),
        samples.len().to_string(),
        format!("{:.1} → {:.1} (max {:.1})", rss.first, rss.last, rss.max),
        format!("{:+.2}", rss.per_hour),
        rss.late_per_hour.map_or("–".into(), |s| format!("{s:+.2}")),
        format!("{:.0} → {:.0} (max {:.0})", fds.first, fds.last, fds.max),
        format!("{:+.1}", fds.per_hour),
    ]
}

/// The section, for repetitions long enough to have a trend: the controller, and each
/// node whose slope is steepest, for memory and for descriptors.
pub fn section(run: &LoadedRun, table: TableFn) -> Option<String> {
    let mut rows = vec![];
    for r in &run.repetitions {
        let Some(res) = &r.resources else { continue };
        if res.controller.len() < MIN_SAMPLES {
            continue;
        }
        rows.push(row(&r.stack, r.repetition, "controller", &res.controller));
        rows.extend(
            steepest_nodes(&res.nodes)
                .into_iter()
                .map(|(what, i, s)| row(&r.stack, r.repetition, &format!("node {i} ({what})"), s)),
        );
    }
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "Each process sampled its resident memory (RSS) and open file descriptors every {:.0} s. Flat lines are what a long run should show; the table gives the controller and, of the nodes, the one whose memory grew fastest and the one whose descriptors did. Slopes are least-squares fits per hour after each process's first {:.0} s (its warm-up), where at least {MIN_SAMPLES} samples are left, and over the second half of each process's life: a rise that levels off (allocator high-water marks, connection and stream tables reaching their size) is much smaller there, a leak is not. A recovered or restarted node's samples start again with its new process; only processes that lived {MIN_SAMPLES} samples past their warm-up and at least half as long as the longest-lived node are candidates for the steepest node, since a node's memory rises for minutes after it starts and a start-up is not a leak.\n\n{}",
        crate::schema::RESOURCE_INTERVAL_S,
        WARM_UP_S,
        table(
            &[
                "stack",
                "rep",
                "process",
                "samples",
                "RSS MiB first → last",
                "RSS MiB/h",
                "RSS MiB/h, 2nd half",
                "fds first → last",
                "fds/h",
            ],
            &rows,
        )
    ))
}

/// Of the node processes that lived long (see [`has_long_trend`]), the ones with the steepest memory
/// and descriptor slopes (one if it is both).
fn steepest_nodes(
    nodes: &[(u32, Vec<ResourceSample>)],
) -> Vec<(&'static str, u32, &[ResourceSample])> {
    let longest_s = nodes.iter().map(|(_, s)| span_s(s)).fold(0.0, f64::max);
    let long: Vec<&(u32, Vec<ResourceSample>)> = nodes
        .iter()
        .filter(|(_, s)| has_long_trend(s, longest_s))
        .collect();
    let steepest = |f: fn(&ResourceSample) -> f64| {
        long.iter()
            .max_by(|a, b| trend(&a.1, f).per_hour.total_cmp(&trend(&b.1, f).per_hour))
            .map(|(i, s)| (*i, s.as_slice()))
    };
    let mem = steepest(|s| s.rss_bytes as f64);
    let fds = steepest(|s| f64::from(s.fds));
    match (mem, fds) {
        (Some(m), Some(f)) if m.0 == f.0 => vec![("steepest memory and fds", m.0, m.1)],
        (m, f) => m
            .map(|m| ("steepest memory", m.0, m.1))
            .into_iter()
            .chain(f.map(|f| ("steepest fds", f.0, f.1)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rise_is_its_slope_and_noise_is_not() {
        let rising: Vec<(f64, f64)> = (0..10).map(|i| (i as f64 * 10.0, i as f64)).collect();
        assert!((slope_per_hour(&rising) - 360.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 10.0, if i % 2 == 0 { 5.0 } else { 6.0 }))
            .collect();
        assert!(slope_per_hour(&flat).abs() < 20.0);
        assert_eq!(slope_per_hour(&[(1.0, 3.0)]), 0.0);
    }

    fn series(from_s: f64, rss: impl Fn(f64) -> u64, samples: usize) -> Vec<ResourceSample> {
        (0..samples)
            .map(|i| {
                let t_s = from_s + i as f64 * 10.0;
                ResourceSample {
                    t_s,
                    rss_bytes: rss(t_s - from_s),
                    fds: 16,
                }
            })
            .collect()
    }

    #[test]
    fn a_late_start_up_is_not_the_steepest_node() {
        let mib = 1 << 20;
        let nodes = vec![
            // Lived the whole run, rising slowly after its warm-up.
            (0, series(0.0, |t| 16 * mib + (t as u64) * 100, 60)),
            // Recovered 160 s before the end: past its warm-up, but still starting up.
            (5, series(430.0, |t| 8 * mib + (t as u64) * mib / 100, 17)),
            // Lived long enough, flat.
            (7, series(0.0, |_| 20 * mib, 60)),
        ];
        let picked: Vec<(&str, u32)> = steepest_nodes(&nodes)
            .into_iter()
            .map(|(what, i, _)| (what, i))
            .collect();
        assert_eq!(picked[0], ("steepest memory", 0), "{picked:?}");
        assert!(picked.iter().all(|p| p.1 != 5), "{picked:?}");
        // Long is relative to the repetition: alone, node 5 is the longest life.
        let alone: Vec<_> = nodes.into_iter().filter(|n| n.0 == 5).collect();
        assert_eq!(steepest_nodes(&alone)[0].1, 5);
        let short = vec![(5, series(0.0, |_| mib, 7))];
        assert!(steepest_nodes(&short).is_empty(), "no samples past warm-up");
    }
}
