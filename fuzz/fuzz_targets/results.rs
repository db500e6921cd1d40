//! The results reader on corrupted folders: a folder of the files a run writes, each
//! possibly truncated, mangled or missing, read the way `report` and `compare` read it.
//! Every folder must load or be refused with an error; a loaded one must render its
//! summary and compare against itself without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::{path::Path, sync::OnceLock};

/// The files of a run folder of one stack and one repetition.
const FILES: &[&str] = &[
    "run.json",
    "links.json",
    "floor.json",
    "simulation.json",
    "quic-tls/0/summary.json",
    "env.json",
];

/// The input: the files' contents in `FILES` order, separated by NUL bytes; a part that
/// is exactly `-` is a file that is missing. (Plain text, so a real run folder is a seed.)
const MISSING: &[u8] = b"-";

/// One scratch folder per process, on tmpfs where there is one.
fn scratch() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            Path::new("/dev/shm").to_owned()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("stackbench-fuzz-results-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("quic-tls/0")).expect("a scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let mut parts = data.split(|b| *b == 0);
    for f in FILES {
        let path = dir.join(f);
        match parts.next() {
            Some(part) if part != MISSING => {
                std::fs::write(path, part).expect("scratch is writable")
            }
            _ => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let Ok(run) = stackbench_report::load_run(dir) else {
        return;
    };
    let _ = stackbench_report::summary_markdown(&run);
    let th = stackbench_report::compare::Thresholds {
        p50: 0.1,
        p99: 0.2,
        p999: 0.3,
        goodput: 0.1,
        cpu_per_mb: 0.2,
    };
    let c = stackbench_report::compare::compare(&run, &run, &th);
    let _ = stackbench_report::compare::markdown("a", "b", &c);
});
