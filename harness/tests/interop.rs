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
        let v: Vec<u64> = text
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        let (intervals, count, p50, p99, max) = (v[0], v[1], v[2], v[3], v[4]);
        assert_eq!(intervals, 1, "{file}");
        assert_eq!(count, expect.count, "{file}: count");
        assert_eq!(p50, expect.p50, "{file}: p50");
        // Percentile rounding differs slightly between implementations; precision is 0.1%.
        assert!(
            p99.abs_diff(expect.p99) * 100 <= expect.p99.max(1),
            "{file}: p99 {p99} vs {}",
            expect.p99
        );
        assert!(
            max.abs_diff(expect.max) * 1000 <= expect.max.max(1),
            "{file}: max {max} vs {}",
            expect.max
        );
    }
}
