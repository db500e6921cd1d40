//! Results are readable by independent tools: the HdrHistogram logs decode with the Python
//! HdrHistogram implementation to the same counts and percentiles the summary reports.

mod common;

use common::{require_namespaces, run, scenario, serial, summary};
use stackbench::controller::Faults;
use std::{path::PathBuf, process::Command};

/// The interpreter with the `hdrhistogram` package: $STACKBENCH_PYTHON, the venv that
/// scripts/setup.sh makes, or python3.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("STACKBENCH_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

#[test]
fn hdr_logs_decode_with_the_python_hdrhistogram_package() {
    let _g = serial();
    require_namespaces();
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = run(
        &scenario(&common::votes_toml("interop", 3, "2s", "500ms", "1s", 300)),
        "quic-tls",
        dir.path(),
        Faults::default(),
    );
    let s = summary(&outcome, "quic-tls");
    let lat = &s.classes[0].latency_us;
    assert!(lat.count > 1000, "too few samples: {}", lat.count);
    for (file, expect) in [
        ("vote.latency.hlog", lat.clone()),
        ("vote.reach-100.hlog", s.classes[0].reach_us["100%"].clone()),
    ] {
        let path = outcome.dir.join("quic-tls/0").join(file);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/read_hlog.py");
        let out = Command::new(python())
            .arg(&script)
            .arg(&path)
            .output()
            .expect("running python");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let head: Vec<u64> = lines
            .next()
            .expect("summary line")
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        let (intervals, count, min, max, p50) = (head[0], head[1], head[2], head[3], head[4]);
        // The same file decoded by this crate's own HdrHistogram implementation.
        let log = std::fs::read(&path).expect("read hlog");
        let mut ours = stackbench::metrics::new_histogram();
        for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log) {
            if let Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(h)) = entry {
                let decoded =
                    stackbench::metrics::decode_histogram(h.encoded_histogram()).expect("decode");
                ours.add(decoded).expect("add");
            }
        }
        assert_eq!(intervals, 1, "{file}");
        assert_eq!(count, expect.count, "{file}: count");
        assert_eq!(ours.len(), expect.count, "{file}: our decoder's count");
        assert_eq!(p50, expect.p50, "{file}: p50");
        assert!(
            ours.equivalent(min, expect.min) && ours.equivalent(max, expect.max),
            "{file}: min/max {min}/{max} vs {}/{}",
            expect.min,
            expect.max
        );
        // Every recorded bucket agrees exactly. (Tail percentiles are not compared: where the
        // rank falls between sparse samples, implementations round to different neighbours.)
        let mut buckets = 0;
        for line in lines {
            let mut f = line
                .split_whitespace()
                .map(|x| x.parse::<u64>().expect("number"));
            let (value, n) = (f.next().expect("value"), f.next().expect("count"));
            assert_eq!(ours.count_at(value), n, "{file}: bucket at {value}");
            buckets += 1;
        }
        assert_eq!(
            buckets,
            ours.iter_recorded().count(),
            "{file}: recorded buckets"
        );
        assert!(buckets > 10, "{file}: a real distribution, not one bucket");
    }
}
