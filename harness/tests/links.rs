//! Link emulation end to end: the userspace emulator applies what a scenario asks (delay,
//! jitter, loss, reordering) to the workload's own packets, the self-check measures it
//! before the run, and a run whose links are out of tolerance refuses to start.

mod common;

use common::{require_namespaces, serial};
use stackbench::controller::Faults;
use stackbench_core::schema::LinkCheck;

fn none() -> Faults {
    Faults::default()
}

/// Two nodes sending votes, with `links` as the `[links]` table.
fn wan(links: &str) -> String {
    format!(
        "{}\n[links]\n{links}\n",
        common::votes_toml("links", 2, "2s", "500ms", "1s", 50)
    )
}

fn links_json(dir: &std::path::Path) -> LinkCheck {
    let text = std::fs::read_to_string(dir.join("links.json")).expect("links.json");
    serde_json::from_str(&text).expect("links.json parses")
}

#[test]
fn delay_and_jitter_reach_the_workload_without_reordering() {
    let _g = serial();
    require_namespaces();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::scenario(&wan("delay = \"20ms\"\njitter = \"1ms\"\nprobe = \"1s\""));
    let out = common::run(&s, "quic-tls", dir.path(), none());
    let check = links_json(&out.dir);
    assert!(
        check.mechanism.contains("userspace emulator"),
        "{}",
        check.mechanism
    );
    assert!(check.failures.is_empty(), "{:?}", check.failures);
    assert_eq!(check.paths.len(), 2);
    for p in &check.paths {
        assert!(p.delay_us.ok && p.jitter_us.ok, "{p:?}");
        assert!((p.delay_us.measured - 20_000.0).abs() < 1_000.0, "{p:?}");
        // Jitter is on, reordering is off: not one probe may overtake another.
        assert_eq!(p.reorder.measured, 0.0, "{p:?}");
        assert!(p.probes_received > 100, "{p:?}");
    }
    let ping = check.ping.expect("a ping cross-check");
    let rtt = ping
        .ping_rtt_us
        .unwrap_or_else(|| panic!("{:?}", ping.ping_error));
    assert!((rtt[1] - 40_000.0).abs() < 4_000.0, "ping avg {rtt:?}");
    // The votes themselves crossed the emulated path: one way is at least 20 ms.
    let summary = common::summary(&out, "quic-tls");
    let vote = &summary.classes[0];
    assert_eq!(vote.delivered, vote.sent);
    assert!(
        (20_000..26_000).contains(&vote.latency_us.p50),
        "vote p50 {} us",
        vote.latency_us.p50
    );
    let emu = summary
        .link_emulator
        .expect("the emulator's cost is recorded");
    assert!(emu.forwarded_packets > 100, "{emu:?}");
    assert_eq!(
        (emu.dropped_packets, emu.reordered_packets, emu.send_errors),
        (0, 0, 0)
    );
    assert!(emu.cpu_seconds > 0.0);
}

#[test]
fn loss_and_reordering_happen_at_their_rates() {
    let _g = serial();
    require_namespaces();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::scenario(&wan(
        "delay = \"5ms\"\nloss = \"10%\"\nreorder = \"5%\"\nprobe = \"2s\"",
    ));
    let out = common::run(&s, "quic-tls", dir.path(), none());
    let check = links_json(&out.dir);
    assert!(check.failures.is_empty(), "{:?}", check.failures);
    for p in &check.paths {
        assert!(p.loss.ok && p.reorder.ok, "{p:?}");
        assert!((0.05..0.15).contains(&p.loss.measured), "{p:?}");
        assert!(p.reorder.measured > 0.01, "{p:?}");
    }
    let summary = common::summary(&out, "quic-tls");
    let emu = summary.link_emulator.expect("emulator cost");
    assert!(
        emu.dropped_packets > 0 && emu.reordered_packets > 0,
        "{emu:?}"
    );
    // QUIC recovers every loss: the votes still all arrive.
    assert_eq!(summary.classes[0].delivered, summary.classes[0].sent);
}

/// `stackbench run` with `extra` flags on links no emulator can meet (5 ms to within 1 ns).
fn run_out_of_tolerance(extra: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        wan("delay = \"5ms\"\nprobe = \"1s\"\ntolerance = { relative = \"0%\", absolute = \"1ns\" }"),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stackbench"))
        .args(["run", "--no-progress", "--out"])
        .arg(dir.path().join("runs"))
        .args(extra)
        .arg(&file)
        .output()
        .expect("run stackbench");
    (dir, out)
}

#[test]
fn links_out_of_tolerance_refuse_the_run_and_write_nothing() {
    let _g = serial();
    require_namespaces();
    let (dir, out) = run_out_of_tolerance(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the links are not what the scenario asks")
            && err.contains("path n0->n1: one-way delay measured")
            && err.contains("configured 5000 us"),
        "{err}"
    );
    // Refused only after every probe found it off: one bad probe may be host noise.
    assert!(
        err.contains("self-check attempt 1 of 3 found the links off, probing again")
            && err.contains("self-check attempt 2 of 3")
            && !err.contains("attempt 3 of 3")
            && err.contains("Every one of 3 probes found values off")
            && err.contains("the hypervisor took"),
        "{err}"
    );
    let written = std::fs::read_dir(dir.path().join("runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(written, 0, "a refused run leaves no results folder");
}

#[test]
fn unchecked_links_run_anyway_and_every_output_says_so() {
    let _g = serial();
    require_namespaces();
    let (dir, out) = run_out_of_tolerance(&["--unchecked-links"]);
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("LINKS NOT VERIFIED"), "{err}");
    assert!(stdout.contains("*** LINKS NOT VERIFIED"), "{stdout}");
    let run = std::fs::read_dir(dir.path().join("runs"))
        .expect("runs")
        .next()
        .expect("one run")
        .expect("entry")
        .path();
    for file in ["summary.md", "report.html", "run.json"] {
        let text = std::fs::read_to_string(run.join(file)).expect(file);
        assert!(
            text.contains("LINKS NOT VERIFIED") || text.contains("--unchecked-links"),
            "{file}"
        );
        assert!(
            text.contains("one-way delay measured"),
            "{file} names what was off"
        );
    }
    let check = links_json(&run);
    assert!(check.unchecked && !check.failures.is_empty());
    assert_eq!(check.discarded_attempts.len(), 2, "{check:?}");
    assert!(check.discarded_attempts[0].contains("the hypervisor took"));
    let summary = std::fs::read_to_string(run.join("summary.md")).expect("summary.md");
    assert!(summary.contains("Probe 2 was discarded"), "{summary}");
}
