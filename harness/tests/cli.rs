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
        (vec!["validate".into()], "required"),
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
}
