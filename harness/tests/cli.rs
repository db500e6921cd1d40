//! The command line as a user meets it: exit codes and messages for bad input.

use std::{path::PathBuf, process::Command};

fn stackbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stackbench"))
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn repo(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
}

#[test]
fn validate_points_at_each_broken_file_precisely() {
    let cases = [
        ("1-bad-unit.toml", "3:12", "invalid duration \"5 seconds\""),
        ("2-unknown-field.toml", "12:1", "unknown field `colour`"),
        ("3-unknown-stack.toml", "4:23", "unknown stack \"quic-tsl\""),
        (
            "4-origin-out-of-range.toml",
            "14:15",
            "origin node 7 does not exist",
        ),
        ("5-bad-arrival.toml", "13:23", "unknown variant `bursty`"),
        (
            "6-mix-without-a-shared-stack.toml",
            "12:8",
            "are neighbours but share no stack",
        ),
    ];
    for (file, at, message) in cases {
        let path = data("broken").join(file);
        let out = stackbench()
            .arg("validate")
            .arg(&path)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(
            err.starts_with(&format!("{}:{at}: ", path.display())),
            "{file}: {err}"
        );
        assert!(err.contains(message), "{file}: {err}");
        assert!(err.contains('^'), "{file}: no caret under the fault: {err}");
    }
}

#[test]
fn shipped_scenarios_validate() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("scenarios"))
        .expect("scenarios/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let out = stackbench()
        .arg("validate")
        .args(&files)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ok: "))
            .count(),
        files.len()
    );
}

#[test]
fn usage_errors_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["run".into(), "no/such/scenario.toml".into()],
            "cannot read scenario no/such/scenario.toml",
        ),
        (
            vec![
                "run".into(),
                repo("scenarios/quick.toml").display().to_string(),
                "--stacks".into(),
                "quic-bogus".into(),
            ],
            "--stacks: unknown stack \"quic-bogus\"",
        ),
        (
            vec!["run".into(), "--frobnicate".into()],
            "unexpected argument '--frobnicate'",
        ),
        (vec!["explode".into()], "unrecognized subcommand 'explode'"),
        (
            vec!["vm".into(), "run".into(), "no/such/scenario.toml".into()],
            "cannot read scenario no/such/scenario.toml",
        ),
        (
            vec![
                "vm".into(),
                "run".into(),
                repo("scenarios/quick-vm.toml").display().to_string(),
                "--accel".into(),
                "warp".into(),
            ],
            "invalid value 'warp' for '--accel",
        ),
        (
            vec![
                "run".into(),
                repo("scenarios/quick.toml").display().to_string(),
                "--require-complete".into(),
                "--require-delivery".into(),
            ],
            "'--require-complete' cannot be used with '--require-delivery'",
        ),
        (vec!["validate".into()], "required"),
        (
            vec![
                "scale".into(),
                repo("scenarios/gossip-64.toml").display().to_string(),
                "--nodes".into(),
                "64,16".into(),
            ],
            "smallest first",
        ),
        (
            vec![
                "scale".into(),
                repo("scenarios/gossip-64.toml").display().to_string(),
                "--nodes".into(),
                "8".into(),
            ],
            "at 8 nodes: ",
        ),
    ];
    for (args, needle) in cases {
        let out = stackbench()
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "a usage error wrote files"
    );
}

#[test]
fn list_names_every_stack_of_the_design() {
    let out = stackbench().arg("list").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for s in stackbench::stack::names() {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(s.as_str())),
            "{s} missing:\n{text}"
        );
    }
    assert!(
        text.contains("INSECURE"),
        "the insecure control is labelled"
    );
}

#[test]
fn check_json_reports_every_stack_with_a_reason_when_unavailable() {
    let out = stackbench()
        .args(["check", "--json"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let stacks = v["stacks"].as_array().expect("stacks array");
    assert_eq!(stacks.len(), stackbench::stack::names().len());
    for s in stacks {
        assert!(
            s["needs"].as_str().is_some_and(|n| !n.is_empty()),
            "what the stack needs: {s}"
        );
        let a = &s["availability"];
        match a["status"].as_str() {
            Some("available") => {}
            Some("unavailable") => {
                assert!(a["reason"].as_str().is_some_and(|r| !r.is_empty()), "{s}")
            }
            other => panic!("bad status {other:?} in {s}"),
        }
    }
    assert!(v["host"]["privileges"].is_string());
    // The fingerprint says which wireguard-go build the stack runs and where it came from
    // (the binary's own version line lags its releases).
    if let Some(line) = v["host"]["tools"]["wireguard-go"]["Ok"].as_str() {
        assert!(
            line.contains("Debian package") || line.contains("not from a Debian package"),
            "{line}"
        );
    }
    let old = stackbench()
        .args(["check", "--json"])
        .env("STACKBENCH_WIREGUARD_GO", "/nonexistent/wireguard-go")
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&old.stdout).expect("JSON");
    let err = v["host"]["tools"]["wireguard-go"]["Err"]
        .as_str()
        .unwrap_or("");
    assert!(err.contains("/nonexistent/wireguard-go not found"), "{v}");
}

/// A copy of the committed quick baseline in a temporary folder.
fn baseline_copy(dir: &std::path::Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo("results/baselines/quick"))
        .arg(&to)
        .status()
        .expect("cp");
    assert!(status.success());
    to
}

/// Multiplies every latency percentile in a run's summaries by `factor`.
fn slow_down(run: &std::path::Path, factor: f64) {
    for rep in 0..3 {
        let p = run.join(format!("quic-tls/{rep}/summary.json"));
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).expect("summary")).expect("JSON");
        for c in v["classes"].as_array_mut().expect("classes") {
            for key in ["p50", "p99", "p999"] {
                let x = c["latency_us"][key].as_f64().expect("percentile");
                c["latency_us"][key] = serde_json::json!((x * factor) as u64);
            }
        }
        std::fs::write(&p, serde_json::to_vec(&v).expect("JSON")).expect("write");
    }
}

#[test]
fn compare_flags_a_regression_with_exit_3_and_passes_an_identical_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let same = baseline_copy(dir.path(), "same");
    let out = stackbench()
        .arg("compare")
        .arg(repo("results/baselines/quick"))
        .arg(&same)
        .arg("--thresholds")
        .arg(repo("results/baselines/thresholds.toml"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("0 regressed, 0 improved"), "{text}");
    let slow = baseline_copy(dir.path(), "slow");
    slow_down(&slow, 4.0);
    let out = stackbench()
        .arg("compare")
        .arg(repo("results/baselines/quick"))
        .arg(&slow)
        .arg("--thresholds")
        .arg(repo("results/baselines/thresholds.toml"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("| quic-tls | vote | p50 |") && text.contains("REGRESSED"),
        "{text}"
    );
    assert!(slow.join("compare.md").exists() && slow.join("compare.json").exists());
    // A thresholds file with a typo is an error that names the file and line.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "p50 = 1.5\np99 = 1.0\np999 = 1.5\ngoodput = 0.25\ncpu_per_mb = 0.5\np95 = 1\n",
    )
    .expect("write");
    let out = stackbench()
        .arg("compare")
        .arg(repo("results/baselines/quick"))
        .arg(&slow)
        .arg("--thresholds")
        .arg(&bad)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("unknown field `p95`"),
        "{err}"
    );
}

#[test]
fn a_simulated_run_against_a_real_one_is_a_usage_error_that_names_the_way_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let simulated = baseline_copy(dir.path(), "simulated");
    let manifest = simulated.join("run.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("run.json")).expect("JSON");
    v["simulated_network"] = serde_json::json!("Shadow 3.3.0");
    std::fs::write(&manifest, serde_json::to_vec(&v).expect("JSON")).expect("write");
    std::fs::remove_file(simulated.join("compare.md")).expect("the copy's old verdict");
    let out = stackbench()
        .arg("compare")
        .arg(repo("results/baselines/quick"))
        .arg(&simulated)
        .arg("--thresholds")
        .arg(repo("results/baselines/thresholds.toml"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the baseline ran in namespaces and the run on a simulated network")
            && err.contains("sets them side by side"),
        "{err}"
    );
    assert!(!simulated.join("compare.md").exists(), "no verdict written");
}

#[test]
fn report_writes_a_self_contained_page_plots_and_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = baseline_copy(dir.path(), "run");
    let out = stackbench().arg("report").arg(&run).output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(run.join("report.html")).expect("report.html");
    assert!(
        html.contains("<h2>Findings</h2>") && html.contains("<svg"),
        "no findings or plots"
    );
    assert!(
        !html.contains("src=\"http"),
        "the page must not load anything"
    );
    for class in ["block", "vote", "tx", "bulk"] {
        assert!(
            run.join(format!("plots/{class}-percentiles.svg")).exists(),
            "{class}"
        );
        assert!(
            run.join(format!("plots/{class}-percentiles.png")).exists(),
            "{class}"
        );
    }
    let csv = std::fs::read_to_string(run.join("report.csv")).expect("report.csv");
    assert!(
        csv.lines().any(|l| l.starts_with("quic-tls,vote,p99,µs,")),
        "{csv}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).expect("report.json"))
            .expect("JSON");
    assert!(json
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f["estimate"]["ci95"].is_array())));
}
