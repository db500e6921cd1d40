//! Reads the HdrHistogram interval logs a run wrote: the whole measured window of a class,
//! and its one-second timeline.

use crate::ReportError;
use base64::{engine::general_purpose::STANDARD, Engine};
use hdrhistogram::{
    serialization::{
        interval_log::{IntervalLogIterator, LogEntry},
        Deserializer,
    },
    Histogram,
};
use std::path::Path;

/// Each interval of a log: its start (seconds into the measured window) and histogram.
pub fn read_intervals(path: &Path) -> Result<Vec<(f64, Histogram<u64>)>, ReportError> {
    let bad = |e: String| ReportError::Config(path.to_owned(), e);
    let bytes = std::fs::read(path).map_err(|e| ReportError::Io(path.to_owned(), e))?;
    let mut out = vec![];
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(i) = entry.map_err(|e| bad(format!("{e:?}")))? {
            let raw = STANDARD
                .decode(i.encoded_histogram())
                .map_err(|e| bad(e.to_string()))?;
            let h: Histogram<u64> = de
                .deserialize(&mut std::io::Cursor::new(raw))
                .map_err(|e| bad(format!("{e:?}")))?;
            out.push((i.start_timestamp().as_secs_f64(), h));
        }
    }
    Ok(out)
}

/// The merged latency histogram of `class` over `reps` repetition folders of one stack.
pub fn merged_latency(stack_dir: &Path, reps: u32, class: &str) -> Option<Histogram<u64>> {
    let mut total: Option<Histogram<u64>> = None;
    for rep in 0..reps {
        let path = stack_dir
            .join(rep.to_string())
            .join(format!("{class}.latency.hlog"));
        for (_, h) in read_intervals(&path).ok()? {
            match &mut total {
                Some(t) => t.add(&h).ok()?,
                None => total = Some(h),
            }
        }
    }
    total.filter(|h| !h.is_empty())
}

/// Per second of the measured window: (second, p50, p99) of `class`, repetitions merged.
pub fn timeline(stack_dir: &Path, reps: u32, class: &str) -> Vec<(f64, f64, f64)> {
    let mut by_second: Vec<(f64, Histogram<u64>)> = vec![];
    for rep in 0..reps {
        let path = stack_dir
            .join(rep.to_string())
            .join(format!("{class}.timeline.hlog"));
        for (i, (start, h)) in read_intervals(&path)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if let Some((_, t)) = by_second.get_mut(i) {
                let _ = t.add(&h);
            } else {
                by_second.push((start, h));
            }
        }
    }
    by_second
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(s, h)| {
            (
                s,
                h.value_at_quantile(0.5) as f64,
                h.value_at_quantile(0.99) as f64,
            )
        })
        .collect()
}
