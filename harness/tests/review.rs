//! `stackbench review`: a quick review measures its parts, writes review.md, review.html and
//! review.json, and a second call resumes instead of measuring again. The suite's scenarios
//! are swapped for tiny ones of the same names (`--scenarios`), so that the test is short.

mod common;

use common::{require_namespaces, serial, votes_toml};
use std::{path::Path, process::Command};

fn review(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stackbench"))
        .arg("review")
        .args(args)
        .output()
        .expect("run stackbench review")
}

/// The report's way of writing µs (summary::fmt_us).
fn fmt_us(us: u64) -> String {
    match us {
        0..=9_999 => format!("{us}µs"),
        10_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn statuses(out: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("review.json")).expect("review.json"))
            .expect("json");
    v.as_array()
        .expect("a list of parts")
        .iter()
        .map(|p| {
            (
                p["scenario"].as_str().unwrap_or("").to_owned(),
                p["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_quick_review_measures_its_parts_writes_the_review_and_resumes() {
    let _g = serial();
    require_namespaces();
    let dir = tempfile::tempdir().expect("tempdir");
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).expect("mkdir");
    std::fs::write(
        scenarios.join("lan.toml"),
        votes_toml("lan", 2, "1s", "200ms", "300ms", 50),
    )
    .expect("write");
    // Without emulated links: a virtual machine's steal can fail their self-check, and the
    // links are not this test's subject (tests/links.rs has them).
    std::fs::write(
        scenarios.join("wan-continental.toml"),
        votes_toml("wan-continental", 2, "1s", "200ms", "300ms", 50),
    )
    .expect("write");
    let out = dir.path().join("review");
    let args = [
        "--quick",
        "--no-progress",
        "--scenarios",
        scenarios.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ];
    let first = review(&args);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    let parts = statuses(&out);
    assert_eq!(parts.len(), 13, "{parts:?}");
    assert_eq!(parts[0], ("lan".into(), "measured".into()), "{err}");
    assert_eq!(
        parts[1],
        ("wan-continental".into(), "measured".into()),
        "{err}"
    );
    assert!(parts[2..].iter().all(|(_, s)| s == "skipped"), "{parts:?}");
    let md = std::fs::read_to_string(out.join("review.md")).expect("review.md");
    assert!(
        md.contains("LAN: vote p99 is lowest with") && md.contains("continental WAN: vote p99"),
        "{md}"
    );
    // The answer's figures are the runs': quic-tls's vote p99 mean over its two repetitions.
    let lan_run = std::fs::read_dir(out.join("runs/lan"))
        .expect("runs/lan")
        .flatten()
        .next()
        .expect("the LAN run")
        .path();
    let p99s: Vec<f64> = (0..2)
        .map(|r| {
            let s: serde_json::Value = serde_json::from_slice(
                &std::fs::read(lan_run.join(format!("quic-tls/{r}/summary.json")))
                    .expect("summary.json"),
            )
            .expect("json");
            s["classes"][0]["latency_us"]["p99"].as_f64().expect("p99")
        })
        .collect();
    let mean = ((p99s[0] + p99s[1]) / 2.0).round() as u64;
    assert!(
        md.contains(&fmt_us(mean)),
        "quic-tls vote p99 {mean} µs is not in the review:\n{md}"
    );
    for section in [
        "Q1.",
        "Q3.",
        "Q7.",
        "Recommendation matrix",
        "The environment",
    ] {
        assert!(md.contains(section), "{section}");
    }
    let html = std::fs::read_to_string(out.join("review.html")).expect("review.html");
    assert!(
        html.contains("<p class=answer>") && html.contains("<svg"),
        "{html}"
    );

    // Again: both parts are complete, so nothing is measured.
    let second = review(&args);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let parts = statuses(&out);
    assert_eq!(parts[0].1, "resumed");
    assert_eq!(parts[1].1, "resumed");
    assert_eq!(
        std::fs::read_dir(out.join("runs/lan"))
            .expect("runs/lan")
            .count(),
        1,
        "no second LAN run"
    );
}

#[test]
fn bad_input_to_a_review_is_a_usage_error_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = review(&["--no-run", "--from", dir.path().to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not a run folder (no run.json in it)"),
        "{err}"
    );

    // A broken scenario of the suite is named with its place, and nothing is written.
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).expect("mkdir");
    std::fs::write(
        scenarios.join("lan.toml"),
        votes_toml("lan", 2, "1s", "200ms", "300ms", 50).replace("seed = 3", "seed = \"x\""),
    )
    .expect("write");
    let review_dir = dir.path().join("review");
    let out = review(&[
        "--quick",
        "--scenarios",
        scenarios.to_str().expect("utf-8"),
        "--out",
        review_dir.to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("lan.toml:3:8"), "{err}");
    assert!(!review_dir.exists(), "a refused review writes nothing");
}
