//! Bad input where a run writes and a reader reads: a disk that fills during a run, two
//! writers in one folder, corrupted and truncated results folders, unreadable scenario
//! files. Each gets a clear error; no run's files are damaged; nothing half-written that
//! looks complete is left.

mod common;

use stackbench::{
    check::HostCaps,
    results::{Environment, RunWriter},
};
use std::{path::Path, process::Command};

fn stackbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stackbench"))
}

fn repo(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable").flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("under").display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// A tmpfs of `size` mounted at a fresh folder, unmounted on drop.
struct Tmpfs(tempfile::TempDir);
impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(ok.success(), "mounting a tmpfs (the test needs root)");
        Tmpfs(dir)
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

const TINY: &str = r#"
name = "tiny"
seed = 1
duration = "1s"
warmup = "200ms"
drain = "500ms"
stacks = ["quic-tls"]

[topology]
nodes = 2

[links]
probe = "500ms"

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "constant", rate = "200/s" }
"#;

#[test]
fn a_disk_that_fills_during_a_run_fails_it_clearly_and_leaves_no_half_written_files() {
    let _g = common::serial();
    common::require_namespaces();
    let disk = Tmpfs::mount("40k");
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).expect("write");
    let out = stackbench()
        .arg("run")
        .arg(&scenario)
        .args(["--no-progress", "--out"])
        .arg(disk.0.path())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let left = files(disk.0.path());
    assert!(
        !left
            .iter()
            .any(|f| f.ends_with("tmp~") || f.contains(".partial")),
        "half-written files left: {left:?}"
    );
    // The run's manifest is whole and does not claim a finished run.
    let run_dir = std::fs::read_dir(disk.0.path())
        .expect("readable")
        .flatten()
        .next()
        .expect("the run's folder")
        .path();
    let text = std::fs::read_to_string(run_dir.join("run.json")).expect("run.json");
    let manifest: stackbench_core::schema::RunManifest =
        serde_json::from_str(&text).expect("run.json is whole");
    assert_ne!(
        manifest.status,
        stackbench_core::schema::RunStatus::Complete,
        "{text}"
    );
    let report = stackbench()
        .arg("report")
        .arg(&run_dir)
        .output()
        .expect("runs");
    let rerr = String::from_utf8_lossy(&report.stderr);
    assert!(
        !report.status.success() || rerr.contains("incomplete"),
        "{rerr}"
    );
}

#[test]
fn two_writers_never_share_a_results_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = common::scenario(TINY);
    let env = || Environment::capture(HostCaps::probe_nothing(), String::new());
    let first = RunWriter::create(dir.path().to_owned(), "a", &scenario, &env()).expect("first");
    let refused = |id: &str| match RunWriter::create(dir.path().to_owned(), id, &scenario, &env()) {
        Ok(_) => panic!("a second writer was let into the folder"),
        Err(e) => e,
    };
    let second = refused("b");
    assert!(
        second
            .to_string()
            .contains("another stackbench run is writing to"),
        "{second:#}"
    );
    drop(first);
    let third = refused("c");
    assert!(
        third.to_string().contains("already holds a run"),
        "{third:#}"
    );
    let text = std::fs::read_to_string(dir.path().join("run.json")).expect("run.json");
    assert!(
        text.contains("\"run_id\": \"a\""),
        "the first run's files are untouched"
    );
    assert!(!files(dir.path()).iter().any(|f| f.contains("lock")));
}

#[test]
fn corrupted_results_folders_are_refused_naming_the_file() {
    let base = repo("results/baselines/quick");
    let summary = std::fs::read_dir(&base)
        .expect("baseline")
        .flatten()
        .map(|e| e.path().join("0").join("summary.json"))
        .find(|p| p.exists())
        .expect("a summary in the baseline");
    let stack = summary
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .expect("stack folder")
        .to_owned();
    type Corruption = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Corruption, &str)> = vec![
        (
            "a truncated summary",
            Box::new(move |d: &Path| {
                let p = d.join(&stack).join("0").join("summary.json");
                let text = std::fs::read(&p).expect("summary");
                std::fs::write(&p, &text[..text.len() / 2]).expect("truncate");
            }),
            "summary.json",
        ),
        (
            "run.json missing",
            Box::new(|d: &Path| std::fs::remove_file(d.join("run.json")).expect("rm")),
            "run.json",
        ),
        (
            "run.json not JSON",
            Box::new(|d: &Path| std::fs::write(d.join("run.json"), b"\x00\xffgarbage").expect("w")),
            "run.json",
        ),
        (
            "a stack named outside the folder",
            Box::new(|d: &Path| {
                let p = d.join("run.json");
                let text = std::fs::read_to_string(&p).expect("run.json");
                let v: serde_json::Value = serde_json::from_str(&text).expect("json");
                let mut v = v;
                v["stacks"][0]["name"] = "../../etc".into();
                std::fs::write(&p, v.to_string()).expect("w");
            }),
            "not a stack folder",
        ),
    ];
    for (what, corrupt, needle) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("run");
        assert!(Command::new("cp")
            .arg("-r")
            .arg(&base)
            .arg(&copy)
            .status()
            .expect("cp")
            .success());
        corrupt(&copy);
        for cmd in ["report", "compare"] {
            let mut c = stackbench();
            c.arg(cmd);
            if cmd == "compare" {
                c.arg("--thresholds")
                    .arg(repo("results/baselines/thresholds.toml"))
                    .arg(&base);
            }
            let out = c.arg(&copy).output().expect("runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what}: {cmd:?} accepted it");
            assert!(err.contains(needle), "{what}: {cmd:?}: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
        }
    }
}

#[test]
fn unreadable_scenarios_are_usage_errors_that_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"name = \"\xff\xfe\"\n").expect("write");
    for (path, needle) in [
        (dir.path().to_owned(), "Is a directory"),
        (binary.clone(), "UTF-8"),
    ] {
        for sub in ["run", "validate"] {
            let out = stackbench().arg(sub).arg(&path).output().expect("runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{sub} {}: {err}",
                path.display()
            );
            assert!(
                err.contains(needle) && err.contains(&*path.to_string_lossy()),
                "{sub} {}: {err}",
                path.display()
            );
        }
    }
}
