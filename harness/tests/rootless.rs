//! The rootless claims of `stackbench list`, tested as a user without root: every stack
//! that needs no kernel module runs to completion as `nobody`, through the user + network
//! + mount namespace `run` re-executes itself in, and its results belong to that user.

mod common;

use std::{os::unix::fs::MetadataExt, os::unix::fs::PermissionsExt, process::Command};

/// `nobody` on Debian and Ubuntu.
const NOBODY: u32 = 65534;

#[test]
fn every_stack_without_a_kernel_module_runs_as_an_unprivileged_user() {
    let _g = common::serial();
    let host = common::require_namespaces();
    if std::env::var_os("STACKBENCH_ROOTLESS").is_some() {
        // Run by a normal user: this binary is itself inside the user namespace the
        // claims are about, and every namespace test of the suite ran there.
        eprintln!("rootless: the whole suite runs without root here; nothing to switch to");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "switching to nobody needs root"
    );
    let stacks: Vec<String> = common::available_stacks(&host)
        .iter()
        .map(|s| s.id().name())
        .filter(|n| !n.contains("kernel"))
        .collect();
    assert!(stacks.len() >= 3, "too few stacks to test: {stacks:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = dir.path().join("stackbench");
    std::fs::copy(env!("CARGO_BIN_EXE_stackbench"), &exe).expect("copy the binary");
    let scenario = dir.path().join("rootless.toml");
    std::fs::write(
        &scenario,
        format!(
            "{}\n[links]\nprobe = \"500ms\"\n",
            common::votes_toml("rootless", 2, "1s", "300ms", "500ms", 100)
        ),
    )
    .expect("scenario");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("out");
    let chown = Command::new("chown")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(&out_dir)
        .status()
        .expect("chown");
    assert!(chown.success());
    let as_nobody = |args: &[&std::ffi::OsStr]| {
        Command::new("setpriv")
            .args([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".into(),
            ])
            .arg("env")
            .arg(format!("HOME={}", out_dir.display()))
            .arg(&exe)
            .args(args)
            .output()
            .expect("setpriv runs")
    };
    let check = as_nobody(&["check".as_ref(), "--json".as_ref()]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("check --json");
    let privileges = v["host"]["privileges"].to_string();
    assert!(!privileges.contains("\"root\""), "{privileges}");
    let joined = stacks.join(",");
    let run = as_nobody(&[
        "run".as_ref(),
        scenario.as_os_str(),
        "--stacks".as_ref(),
        joined.as_ref(),
        "--no-progress".as_ref(),
        "--out".as_ref(),
        out_dir.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{err}");
    let run_dir = std::fs::read_dir(&out_dir)
        .expect("out")
        .flatten()
        .next()
        .expect("a run folder")
        .path();
    let manifest: stackbench_core::schema::RunManifest =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).expect("run.json"))
            .expect("parses");
    assert_eq!(
        manifest.status,
        stackbench_core::schema::RunStatus::Complete
    );
    for name in &stacks {
        let s = manifest
            .stacks
            .iter()
            .find(|s| &s.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(s.repetitions_done, 1, "{name} as nobody: {:?}", s);
    }
    let meta = std::fs::metadata(run_dir.join("run.json")).expect("run.json");
    assert_eq!(meta.uid(), NOBODY, "the results belong to the user who ran");
}
