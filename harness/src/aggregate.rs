//! Turns the nodes' reports of one repetition into its summary and HdrHistogram logs.

use crate::{
    control::NodeReport,
    metrics::{self, decode_histogram, new_histogram},
    workload::{reach_times, WorkloadPlan, REACH_PERCENTS},
};
use anyhow::{Context, Result};
use hdrhistogram::{
    serialization::{interval_log::IntervalLogWriterBuilder, V2DeflateSerializer},
    Histogram,
};
use stackbench_core::schema::{
    ClassSummary, NodeSummary, Percentiles, RepetitionSummary, SCHEMA_VERSION,
};
use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

/// The percentiles of a histogram (all zero when it is empty).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        min: h.min(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

/// One histogram as an HdrHistogram interval log (readable by HdrHistogram's own tools).
pub fn hlog(h: &Histogram<u64>, tag: &str, comment: &str, length: Duration) -> Result<String> {
    hlog_intervals(std::slice::from_ref(h), tag, comment, length)
}

/// Consecutive histograms of `interval` each, as one interval log starting at offset 0
/// (the start of the measured window).
fn hlog_intervals(
    hs: &[Histogram<u64>],
    tag: &str,
    comment: &str,
    interval: Duration,
) -> Result<String> {
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .add_comment("values are microseconds")
            .with_base_time(std::time::SystemTime::UNIX_EPOCH)
            .begin_log_with(&mut buf, &mut ser)?;
        let tag = hdrhistogram::serialization::interval_log::Tag::new(tag);
        for (i, h) in hs.iter().enumerate() {
            w.write_histogram(h, interval * i as u32, interval, tag)
                .map_err(|e| anyhow::anyhow!("writing interval log: {e:?}"))?;
        }
    }
    String::from_utf8(buf).context("interval log is ASCII")
}

/// Inputs beyond the node reports.
#[derive(Debug)]
pub struct RepetitionContext<'a> {
    pub stack: &'a str,
    pub insecure: bool,
    pub repetition: u32,
    pub plan: &'a WorkloadPlan,
    pub handshake_us: &'a [u64],
    pub host_softirq_seconds: f64,
    pub underlay_cpu_seconds: f64,
    pub host_busy_seconds: f64,
    /// The host's busiest second of the repetition, as a share of its CPUs.
    pub host_busy_peak_fraction: f64,
    /// The controller process's CPU seconds during the repetition.
    pub controller_cpu_seconds: f64,
    pub stack_config: serde_json::Value,
    pub link_emulator: Option<stackbench_core::schema::LinkEmulatorCost>,
    /// The lifecycle as the scenario's automation drives it, then the other way.
    pub lifecycle: [Option<stackbench_core::schema::churn::Lifecycle>; 2],
    /// The host's cumulative busy CPU seconds, sampled every 100 ms: (s from the start of
    /// sending, seconds).
    pub host_busy_samples: &'a [(f64, f64)],
    /// Nodes that crashed during the repetition.
    pub crashes: &'a [stackbench_core::crash::ObservedCrash],
    /// The controller's memory and descriptors through the repetition.
    pub controller_resources: &'a [stackbench_core::schema::ResourceSample],
}

/// Bytes sent on the nodes' veths per byte of object delivered.
fn wire_overhead(reports: &[NodeReport]) -> f64 {
    let wire: u64 = reports
        .iter()
        .filter_map(|r| r.net.get(crate::topology::NODE_IFACE))
        .map(|c| c.tx_bytes)
        .sum();
    let delivered: u64 = reports.iter().map(|r| r.all_received_bytes).sum();
    if delivered == 0 {
        0.0
    } else {
        wire as f64 / delivered as f64
    }
}

pub fn summarize(
    ctx: &RepetitionContext<'_>,
    reports: &[NodeReport],
) -> Result<(RepetitionSummary, Vec<(String, String)>)> {
    let plan = ctx.plan;
    let measured = plan.duration.as_secs_f64();
    let receivers = plan.receivers_per_object();
    let mut by_object: HashMap<(u16, u8, u64), Vec<u64>> = HashMap::new();
    for r in reports {
        for &(origin, class, seq, us) in &r.deliveries {
            by_object.entry((origin, class, seq)).or_default().push(us);
        }
    }
    let crash_view = (!ctx.crashes.is_empty())
        .then(|| stackbench_core::crash::CrashView::new(plan, ctx.crashes, reports));
    let mut hlogs = vec![];
    let mut classes = vec![];
    for (ci, c) in plan.classes.iter().enumerate() {
        let mut lat = new_histogram();
        let mut timeline: Vec<Histogram<u64>> = vec![];
        let (mut sent, mut delivered, mut bytes, mut inversions) = (0, 0, 0, 0);
        let mut not_sent_in_time = 0;
        let (mut duplicates, mut hops, mut hop_lat) = (0, BTreeMap::new(), new_histogram());
        for r in reports {
            let cc = r
                .classes
                .get(ci)
                .with_context(|| format!("node {} reported too few classes", r.index))?;
            lat.add(decode_histogram(&cc.latency_hist)?)
                .context("merging histograms")?;
            for (i, enc) in cc.timeline_parts() {
                while timeline.len() <= i {
                    timeline.push(new_histogram());
                }
                timeline[i]
                    .add(decode_histogram(enc)?)
                    .context("merging timeline histograms")?;
            }
            duplicates += cc.duplicates;
            for (i, n) in cc.hops.iter().enumerate().filter(|(_, n)| **n > 0) {
                *hops.entry(i as u32 + 1).or_default() += n;
            }
            if !cc.hop_latency_hist.is_empty() {
                hop_lat
                    .add(decode_histogram(&cc.hop_latency_hist)?)
                    .context("merging hop histograms")?;
            }
            sent += cc.sent;
            not_sent_in_time += cc.not_sent_in_time;
            delivered += cc.received;
            bytes += cc.received_bytes;
            inversions += cc.inversions;
        }
        let comment = format!(
            "stackbench {} rep {} class {}",
            ctx.stack, ctx.repetition, c.name
        );
        hlogs.push((
            format!("{}.latency.hlog", c.name),
            hlog(&lat, &c.name, &comment, plan.duration)?,
        ));
        hlogs.push((
            format!("{}.timeline.hlog", c.name),
            hlog_intervals(
                &timeline,
                &c.name,
                &format!(
                    "{comment}, one interval per {} of intended send time",
                    crate::units::Dur(plan.churn.timeline)
                ),
                plan.churn.timeline,
            )?,
        ));
        let mut reach_us = BTreeMap::new();
        let mut unreached = BTreeMap::new();
        if !c.arrival.is_backlog() {
            let objects = sent / receivers as u64;
            let mut hists: Vec<Histogram<u64>> =
                REACH_PERCENTS.iter().map(|_| new_histogram()).collect();
            let mut reached = [0u64; 4];
            for (key, lats) in by_object.iter_mut() {
                if key.1 as usize != ci {
                    continue;
                }
                // Under crashes, shares of the receivers that were up and whose records
                // survive.
                let receivers = crash_view
                    .as_ref()
                    .and_then(|v| v.reachable(*key))
                    .unwrap_or(receivers);
                for (k, t) in reach_times(lats, receivers).iter().enumerate() {
                    if let Some(t) = t {
                        metrics::record(&mut hists[k], *t);
                        reached[k] += 1;
                    }
                }
            }
            for (k, pct) in REACH_PERCENTS.iter().enumerate() {
                let key = format!("{pct}%");
                reach_us.insert(key.clone(), percentiles(&hists[k]));
                unreached.insert(key, objects.saturating_sub(reached[k]));
                hlogs.push((
                    format!("{}.reach-{pct}.hlog", c.name),
                    hlog(
                        &hists[k],
                        &c.name,
                        &format!("{comment}: time to reach {pct}% of receivers"),
                        plan.duration,
                    )?,
                ));
            }
        }
        classes.push(ClassSummary {
            name: c.name.clone(),
            priority: c.priority,
            bulk: c.arrival.is_backlog(),
            sent,
            delivered,
            lost: sent.saturating_sub(delivered),
            not_sent_in_time,
            delivered_bytes: bytes,
            goodput_bytes_per_sec: bytes as f64 / measured,
            inversions,
            latency_us: percentiles(&lat),
            reach_us,
            unreached,
            duplicates,
            hops,
            hop_latency_us: percentiles(&hop_lat),
            nodes_short: match c.arrival.is_backlog() {
                true => vec![],
                false => stackbench_core::shortfall::nodes_short(plan, reports, ci as u8),
            },
        });
    }
    let mut lag = new_histogram();
    let mut handshake = new_histogram();
    for &us in ctx.handshake_us {
        metrics::record(&mut handshake, us);
    }
    let mut node_errors = vec![];
    for r in reports {
        lag.add(decode_histogram(&r.send_lag_hist)?)
            .context("merging histograms")?;
        if r.error_count > 0 {
            node_errors.push(format!(
                "node {}: {} stream errors, first: {}",
                r.index,
                r.error_count,
                r.errors.join(" | ")
            ));
        }
    }
    let nodes = reports
        .iter()
        .map(|r| NodeSummary {
            index: r.index,
            cpu_user_seconds: r.cpu_user_us as f64 / 1e6,
            generator_spin_seconds: r.generator_spin_us as f64 / 1e6,
            cpu_sys_seconds: r.cpu_sys_us as f64 / 1e6,
            max_rss_bytes: r.max_rss_bytes,
            interfaces: r.net.clone(),
            transport: r.transport,
        })
        .collect();
    let node_cpu: f64 = reports
        .iter()
        .map(|r| (r.cpu_user_us + r.cpu_sys_us) as f64 / 1e6)
        .sum();
    let window = (plan.send_end() + plan.drain).as_secs_f64();
    let emulator_cpu = ctx.link_emulator.as_ref().map_or(0.0, |e| e.cpu_seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let churn = crate::churn_summary::summarize(
        plan,
        reports,
        &format!("stackbench {} rep {}", ctx.stack, ctx.repetition),
    )?;
    let churn = churn.map(|(summary, files)| {
        hlogs.extend(files);
        summary
    });
    let crashes = (!ctx.crashes.is_empty())
        .then(|| stackbench_core::crash::summarize(plan, ctx.crashes, reports));
    if let Some(c) = &crashes {
        // A crashed process's counters died with it: the stack's loss is what the crash
        // accounting leaves to it, not sent minus delivered.
        for (class, account) in classes.iter_mut().filter(|c| !c.bulk).zip(&c.classes) {
            class.lost = account.lost_by_stack;
        }
    }
    let summary = RepetitionSummary {
        schema: SCHEMA_VERSION,
        stack: ctx.stack.to_owned(),
        repetition: ctx.repetition,
        insecure: ctx.insecure,
        measured_seconds: measured,
        classes,
        nodes,
        host_softirq_seconds: ctx.host_softirq_seconds,
        underlay_cpu_seconds: ctx.underlay_cpu_seconds,
        cpu_busy_fraction: (node_cpu
            + ctx.underlay_cpu_seconds
            + ctx.host_softirq_seconds
            + emulator_cpu)
            / (cores * window),
        cpu_busy_peak_fraction: ctx.host_busy_peak_fraction,
        harness_cpu_fraction: (ctx.controller_cpu_seconds
            + emulator_cpu
            + reports
                .iter()
                .map(|r| r.generator_spin_us as f64 / 1e6)
                .sum::<f64>())
            / (cores * window),
        wire_bytes_per_delivered_byte: wire_overhead(reports),
        other_load_fraction: ((ctx.host_busy_seconds
            - node_cpu
            - ctx.underlay_cpu_seconds
            - ctx.host_softirq_seconds
            - emulator_cpu)
            / (cores * window))
            .max(0.0),
        handshake_us: percentiles(&handshake),
        send_lag_us: percentiles(&lag),
        stack_config: ctx.stack_config.clone(),
        runtime: crate::node::RUNTIME_FLAVOUR.into(),
        node_errors,
        link_emulator: ctx.link_emulator.clone(),
        churn,
        lifecycle: ctx.lifecycle[0].clone(),
        lifecycle_other: ctx.lifecycle[1].clone(),
        crashes,
        resources: Some(stackbench_core::schema::ResourceSummary {
            controller: ctx.controller_resources.to_vec(),
            nodes: reports
                .iter()
                .map(|r| (r.index, r.resources.clone()))
                .collect(),
        }),
        network: stackbench_core::upgrade::summarize(
            plan,
            reports,
            ctx.host_busy_samples,
            std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        ),
    };
    Ok((summary, hlogs))
}
