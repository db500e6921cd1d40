//! Records what the binary was built from, for the environment fingerprint of every run.

use std::process::Command;

const CRATES: &[&str] = &[
    "quinn",
    "quinn-proto",
    "rustls",
    "ring",
    "rcgen",
    "tokio",
    "hdrhistogram",
];

fn main() {
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let lock = std::fs::read_to_string("../Cargo.lock").unwrap_or_default();
    let mut versions = vec![];
    for block in lock.split("[[package]]") {
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .map(|v| v.trim_end_matches('"').to_owned())
        };
        if let (Some(name), Some(version)) = (field("name"), field("version")) {
            if CRATES.contains(&name.as_str()) {
                versions.push(format!("{name}={version}"));
            }
        }
    }
    versions.sort();
    println!(
        "cargo:rustc-env=STACKBENCH_CRATE_VERSIONS={}",
        versions.join(",")
    );
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    // Built again whenever HEAD moves (a commit, a checkout), so the revision a run records
    // is the one it was built from. In a worktree, HEAD lives in its own git dir and branch
    // refs in the common one.
    let git_dir = out("git", &["rev-parse", "--absolute-git-dir"]);
    let common = out(
        "git",
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    );
    if git_dir != "unknown" {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        let common = std::path::Path::new(&common);
        let head_ref = out("git", &["symbolic-ref", "-q", "HEAD"]);
        // Only files that exist: cargo reruns a build script on every build when one is
        // missing. (A detached HEAD has no branch ref; its HEAD file holds the commit.)
        let mut files = vec![common.join("packed-refs")];
        if head_ref != "unknown" {
            files.push(common.join(&head_ref));
        }
        for file in files.iter().filter(|f| f.is_file()) {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    let mut rev = out("git", &["rev-parse", "--short=12", "HEAD"]);
    if !out("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty()
        && rev != "unknown"
    {
        rev.push_str("-dirty");
    }
    println!("cargo:rustc-env=STACKBENCH_GIT_REV={rev}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    println!("cargo:rustc-env=STACKBENCH_RUSTC={}", out(&rustc, &["-V"]));
}
