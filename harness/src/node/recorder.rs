//! Receiver-side bookkeeping: per-class latency histograms, counts, inversions and the
//! per-object deliveries from which reach times are computed.

use crate::{
    control::ClassCounters,
    metrics::{self, HistogramCodecError},
    workload::{InversionTracker, ObjectHeader, WorkloadPlan},
};
use hdrhistogram::Histogram;
use stackbench_core::record_log::{Delivery, Logged};
use std::{collections::HashMap, time::Duration};

const KEPT_ERRORS: usize = 5;

pub struct Recorder {
    plan: WorkloadPlan,
    /// The receiving node.
    index: u32,
    start_ns: u64,
    /// Per class, under churn: deliveries in an event's window from a reconfigured node to
    /// another, and deliveries outside every window.
    disrupted: Vec<std::collections::BTreeMap<&'static str, Histogram<u64>>>,
    steady: Vec<Histogram<u64>>,
    pub churn: crate::control::NodeChurn,
    classes: Vec<ClassCounters>,
    hists: Vec<Histogram<u64>>,
    /// Per class, one histogram per second of the measured window.
    timeline: Vec<super::timeline::Timeline>,
    /// First deliveries of open-loop classes, kept here until the report when the node
    /// keeps no record log.
    deliveries: Vec<Delivery>,
    /// Where first deliveries and sealed timeline steps go as they happen, if anywhere.
    log: Option<super::record_log::RecordLog>,
    inversions: HashMap<u32, InversionTracker>,
    pub send_lag: Histogram<u64>,
    /// Per class: the last hop's latency of first deliveries.
    hop_latency: Vec<Histogram<u64>>,
    pub error_count: u64,
    pub errors: Vec<String>,
    /// Bytes of every object received, measured or not.
    pub all_received_bytes: u64,
}

impl Recorder {
    pub fn new(plan: WorkloadPlan, index: u32, start_ns: u64) -> Self {
        let n = plan.classes.len();
        let step = plan.churn.timeline;
        Recorder {
            plan,
            index,
            start_ns,
            disrupted: vec![Default::default(); n],
            steady: (0..n).map(|_| metrics::new_histogram()).collect(),
            churn: Default::default(),
            classes: vec![ClassCounters::default(); n],
            hists: (0..n).map(|_| metrics::new_histogram()).collect(),
            timeline: (0..n)
                .map(|_| super::timeline::Timeline::new(step))
                .collect(),
            deliveries: Vec::new(),
            log: None,
            inversions: HashMap::new(),
            send_lag: metrics::new_histogram(),
            hop_latency: (0..n).map(|_| metrics::new_histogram()).collect(),
            error_count: 0,
            errors: Vec::new(),
            all_received_bytes: 0,
        }
    }

    fn measured(&self, intended_ns: u64) -> bool {
        let offset = intended_ns.saturating_sub(self.start_ns);
        intended_ns >= self.start_ns
            && self
                .plan
                .is_measured(std::time::Duration::from_nanos(offset))
    }

    /// An object scheduled for `receivers` peers at `intended_ns`.
    pub fn scheduled(&mut self, class: u8, size: u32, intended_ns: u64, receivers: u64) {
        if self.measured(intended_ns) {
            let c = &mut self.classes[class as usize];
            c.sent += receivers;
            c.sent_bytes += size as u64 * receivers;
        }
    }

    /// `count` objects of `class`, each for `receivers` peers, that the generator dropped
    /// because it had fallen too far behind its schedule.
    pub fn not_sent_in_time(&mut self, class: u8, count: u64, receivers: u64) {
        self.classes[class as usize].not_sent_in_time += count * receivers;
    }

    /// An object from `peer` fully received at `now_ns`.
    pub fn delivered(&mut self, peer: u32, h: &ObjectHeader, now_ns: u64) {
        let Some(class) = self.plan.classes.get(h.class as usize) else {
            self.error(format!(
                "object from node {peer} names unknown class {}",
                h.class
            ));
            return;
        };
        let priority = class.priority;
        let open_loop = !class.arrival.is_backlog();
        self.all_received_bytes += h.len as u64;
        let inverted = self
            .inversions
            .entry(peer)
            .or_default()
            .complete(priority, h.intended_ns);
        if !self.measured(h.intended_ns) {
            return;
        }
        let latency_us = now_ns.saturating_sub(h.intended_ns) / 1000;
        let c = &mut self.classes[h.class as usize];
        c.received += 1;
        c.received_bytes += h.len as u64;
        c.inversions += inverted as u64;
        let hop = (h.hops as usize).max(1);
        if c.hops.len() < hop {
            c.hops.resize(hop, 0);
        }
        c.hops[hop - 1] += 1;
        metrics::record(
            &mut self.hop_latency[h.class as usize],
            now_ns.saturating_sub(h.sent_ns) / 1000,
        );
        metrics::record(&mut self.hists[h.class as usize], latency_us);
        let offset = Duration::from_nanos(h.intended_ns - self.start_ns);
        let churn = &self.plan.churn;
        if churn.is_active() {
            if let Some(f) = churn.window_of(h.origin as u32, self.index, offset) {
                let by_kind = &mut self.disrupted[h.class as usize];
                let hist = by_kind
                    .entry(f.kind.name())
                    .or_insert_with(metrics::new_histogram);
                metrics::record(hist, latency_us);
            } else if !churn.near_event(offset) {
                metrics::record(&mut self.steady[h.class as usize], latency_us);
            }
        }
        let line = &mut self.timeline[h.class as usize];
        match line.record(
            line.step_of(offset.saturating_sub(self.plan.warmup)),
            latency_us,
        ) {
            Err(e) => self.error(format!("the latency timeline: {e}")),
            Ok(()) => {
                if let Some(log) = &mut self.log {
                    for (step, enc) in line.take_sealed() {
                        log.step(h.class, step, &enc);
                    }
                }
            }
        }
        if open_loop {
            let d = (h.origin, h.class, h.seq, latency_us);
            match &mut self.log {
                Some(log) => log.delivery(&d),
                None => self.deliveries.push(d),
            }
        }
    }

    /// Another copy of an object this node already had: counted, then dropped.
    pub fn duplicate(&mut self, h: &ObjectHeader) {
        if self.measured(h.intended_ns) {
            if let Some(c) = self.classes.get_mut(h.class as usize) {
                c.duplicates += 1;
            }
        }
    }

    pub fn error(&mut self, e: String) {
        self.error_count += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(e);
        }
    }

    /// From now on, first deliveries and sealed timeline steps go to `log`, not memory.
    pub fn keep_log(&mut self, log: super::record_log::RecordLog) {
        self.log = Some(log);
    }

    /// The deliveries kept in memory, and what went to the record log (if any). After
    /// [`Recorder::finish`], which writes the timeline's last sealed steps.
    pub fn take_deliveries(&mut self) -> anyhow::Result<(Vec<Delivery>, Option<Logged>)> {
        let logged = self.log.as_mut().map(|l| l.finish()).transpose()?;
        Ok((std::mem::take(&mut self.deliveries), logged))
    }

    /// Class counters with encoded histograms.
    pub fn finish(&mut self) -> Result<Vec<ClassCounters>, HistogramCodecError> {
        let mut classes = std::mem::take(&mut self.classes);
        for (i, ((c, h), line)) in classes
            .iter_mut()
            .zip(&self.hists)
            .zip(&mut self.timeline)
            .enumerate()
        {
            c.latency_hist = metrics::encode_histogram(h)?;
            c.hop_latency_hist = metrics::encode_histogram(&self.hop_latency[i])?;
            if self.plan.churn.is_active() {
                for (kind, h) in &self.disrupted[i] {
                    c.disrupted_hists
                        .insert(kind.to_string(), metrics::encode_histogram(h)?);
                }
                c.steady_hist = metrics::encode_histogram(&self.steady[i])?;
            }
            let (steps, sealed) = line.finish()?;
            c.timeline_hists = steps;
            match &mut self.log {
                Some(log) => {
                    for (step, enc) in sealed {
                        log.step(i as u8, step, &enc);
                    }
                }
                None => {
                    c.timeline_sealed = sealed
                        .into_iter()
                        .map(|(step, enc)| (step as u32, enc))
                        .collect()
                }
            }
        }
        Ok(classes)
    }
}
