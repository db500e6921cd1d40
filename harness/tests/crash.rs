//! Crashes are measurements: a node SIGKILLed by its own scheduled step and started again,
//! and a node killed from outside. The run goes on; the neighbours notice as their
//! transport does; the recovered node delivers again; every (object, receiver) pair is
//! accounted to the crash or the stack; and no secret key of the run reaches its results.

mod common;

use common::{require_namespaces, serial};
use stackbench::controller::Faults;
use stackbench_core::{control::NodeKeys, schema::RunStatus};
use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// Six nodes gossiping on a degree-3 graph; node 2 crashes 1 s into the measured window
/// and comes back 1.5 s later. Peers give a silent connection up after 1 s.
fn crash_toml(events: &str, extra_churn: &str) -> String {
    format!(
        r#"
name = "crash-test"
seed = 11
duration = "5s"
warmup = "1s"
drain = "1500ms"
stacks = ["quic-tls"]

[topology]
nodes = 6
fanout = "gossip"
degree = 3

[links]
probe = "500ms"

[transport]
idle_timeout = "1s"
keep_alive = "250ms"

[churn]
window = "200ms"
timeline = "250ms"
{extra_churn}

{events}

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = {{ process = "poisson", rate = "20/s" }}

[[class]]
name = "tx"
priority = 0
size = "1KiB"
arrival = {{ process = "poisson", rate = "40/s" }}
"#
    )
}

const CRASH_AND_RECOVER: &str = r#"
[[event]]
kind = "node_crash"
node = 2
at = "2s"

[[event]]
kind = "node_recover"
node = 2
at = "3.5s"
"#;

/// One stack per kind of underlay the recovery path differs on: plain UDP, an in-process
/// tunnel that dies with the node, a TUN daemon that outlives it; and SCTP, whose new
/// association replaces the old one.
const STACKS: &[&str] = &[
    "quic-tls",
    "quic-null+wg-inproc",
    "quic-tls+wg-boringtun",
    "sctp+wg-inproc",
];

/// Where WireGuard daemons listen for configuration.
const UAPI_DIR: &str = "/var/run/wireguard";

/// Copies every node key file under the run state directory while `running`, by path, and
/// notes every UAPI socket's mode and owner (checked once the run's prefix is known).
fn collect_keys(
    running: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<PathBuf, Vec<u8>>>>,
    sockets: Arc<Mutex<BTreeMap<PathBuf, (u32, u32)>>>,
) {
    let state = Path::new(stackbench::runid::STATE_DIR);
    while running.load(Ordering::Relaxed) {
        for f in std::fs::read_dir(UAPI_DIR).into_iter().flatten().flatten() {
            if let Ok(meta) = std::fs::symlink_metadata(f.path()) {
                sockets
                    .lock()
                    .expect("lock")
                    .insert(f.path(), (meta.permissions().mode() & 0o777, meta.uid()));
            }
        }
        for dir in std::fs::read_dir(state).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "records") {
                    // A node's record log: what it received, the runner's alone too.
                    if let Ok(meta) = std::fs::metadata(&p) {
                        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
                        assert_eq!(meta.uid(), unsafe { libc::geteuid() }, "{}", p.display());
                    }
                }
                if p.extension().is_some_and(|e| e == "key") {
                    let meta = std::fs::metadata(&p);
                    if let (Ok(meta), Ok(bytes)) = (meta, std::fs::read(&p)) {
                        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
                        assert_eq!(meta.uid(), unsafe { libc::geteuid() }, "{}", p.display());
                        let dir_mode =
                            std::fs::metadata(dir.path()).map(|m| m.permissions().mode());
                        assert_eq!(dir_mode.ok().map(|m| m & 0o777), Some(0o700));
                        seen.lock().expect("lock").insert(p, bytes);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every form a key might be written in: raw, hex, base64, and serde's list of numbers.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let list = serde_json::to_string(secret).expect("serializes");
    vec![
        secret.to_vec(),
        hex.into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
        list.into_bytes(),
    ]
}

/// Fails if any file under `dir` holds any form of any of `secrets`.
fn assert_no_secret(dir: &Path, secrets: &[Vec<u8>]) {
    let needles: Vec<Vec<u8>> = secrets.iter().flat_map(|s| forms(s)).collect();
    let mut files = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&p).expect("readable");
            for n in &needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                    "{} holds a secret key of the run",
                    p.display()
                );
            }
        }
    }
    assert!(files > 10, "the results folder has only {files} files");
}

#[test]
fn a_crash_is_measured_and_the_recovered_node_delivers_again() {
    let _g = serial();
    let host = require_namespaces();
    let stacks = common::available_stacks(&host);
    let scenario = common::scenario(&crash_toml(CRASH_AND_RECOVER, ""));
    let mut ran = 0;
    for name in STACKS {
        if !stacks.iter().any(|s| s.id().name() == *name) {
            eprintln!("crash: {name} is not available here");
            continue;
        }
        ran += 1;
        let dir = tempfile::tempdir().expect("tempdir");
        let running = Arc::new(AtomicBool::new(true));
        let keys = Arc::new(Mutex::new(BTreeMap::new()));
        let sockets = Arc::new(Mutex::new(BTreeMap::new()));
        let watcher = {
            let (running, keys, sockets) = (running.clone(), keys.clone(), sockets.clone());
            std::thread::spawn(move || collect_keys(running, keys, sockets))
        };
        let out = common::run(&scenario, name, dir.path(), Faults::default());
        running.store(false, Ordering::Relaxed);
        watcher.join().expect("the key watcher passed");
        assert_eq!(
            out.manifest.status,
            RunStatus::Complete,
            "{name}: {:?}",
            out.manifest
        );
        let s = common::summary(&out, name);
        assert!(s.node_errors.is_empty(), "{name}: {:?}", s.node_errors);
        let c = s.crashes.as_ref().expect("a crash summary");
        assert_eq!(c.crashes.len(), 1, "{name}");
        let k = &c.crashes[0];
        assert!(k.scheduled && k.node == 2, "{name}: {k:?}");
        assert_eq!((k.at_s, k.recovered_at_s), (1.0, Some(2.5)), "{name}");
        // Three neighbours. QUIC's gave the silent connection up: not before the idle
        // timeout, and before the recovery replaced it. SCTP's peers notice by heartbeat
        // retransmission limits, which can outlast this 1.5 s outage (seen in CI): there
        // the new association replacing the old one is what is asserted (reconnects below).
        assert_eq!(k.noticed.len() + k.not_noticed.len(), 3, "{name}: {k:?}");
        let sctp = name.starts_with("sctp");
        assert!(
            sctp || !k.noticed.is_empty(),
            "{name}: nobody noticed: {k:?}"
        );
        for n in k.noticed.iter().filter(|_| !sctp) {
            assert!(n.after_ms >= 990.0 && n.after_ms <= 1500.0, "{name}: {n:?}");
        }
        assert!(k.first_delivery_ms.is_some(), "{name}: {k:?}");
        assert_eq!(
            k.reconnect_us.count, 3,
            "{name}: every neighbour redialled: {k:?}"
        );
        for a in &c.classes {
            assert_eq!(
                a.delivered + a.lost_to_crash + a.unobserved + a.lost_near_crash + a.lost_by_stack,
                a.expected,
                "{name}: {a:?}"
            );
            assert!(a.lost_to_crash > 0 && a.unobserved > 0, "{name}: {a:?}");
            assert_eq!(a.lost_by_stack, 0, "{name}: {a:?}");
            assert!(a.down_reach90_us.count > 0, "{name}: {a:?}");
        }
        // The recovered node's report is there, and it received objects after recovery.
        assert!(s.nodes.iter().any(|n| n.index == 2), "{name}");
        // Keys: one file per node, the same one read again by the recovered process; none
        // of them anywhere in the results, and none left behind.
        let keys = keys.lock().expect("lock");
        let prefix = format!("sb{}", out.manifest.run_id.rsplit('-').next().unwrap_or(""));
        let mine: Vec<(&PathBuf, &Vec<u8>)> = keys
            .iter()
            .filter(|(p, _)| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|d| *d == *prefix)
            })
            .collect();
        assert_eq!(mine.len(), 6, "{name}: {:?}", keys.keys());
        let mut secrets = vec![];
        for (p, bytes) in &mine {
            assert!(!p.exists(), "{name}: {} outlived the run", p.display());
            let k: NodeKeys = serde_json::from_slice(bytes).expect("a key file");
            secrets.push(k.wg_secret.to_vec());
            secrets.push(k.key_pkcs8.clone());
        }
        assert_no_secret(&out.dir, &secrets);
        // A TUN daemon's configuration socket: the runner's alone (0600 from the devices in
        // this binary; wireguard-go's own umask makes 0700, and a socket's x bit grants
        // nothing), and gone after the run.
        let ours: Vec<(PathBuf, (u32, u32))> = sockets
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| {
                p.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(&prefix))
            })
            .map(|(p, m)| (p.clone(), *m))
            .collect();
        let has_daemon = stacks
            .iter()
            .find(|s| s.id().name() == *name)
            .is_some_and(|s| s.id().has_interface());
        assert_eq!(
            !ours.is_empty(),
            has_daemon,
            "{name}: UAPI sockets {ours:?}"
        );
        for (p, (mode, uid)) in ours {
            assert_eq!(mode & 0o077, 0, "{}: mode {mode:o}", p.display());
            assert_eq!(uid, unsafe { libc::geteuid() }, "{}", p.display());
            assert!(!p.exists(), "{name}: {} outlived the run", p.display());
        }
    }
    assert!(ran > 0, "no crash stack ran here");
}

#[test]
fn a_node_killed_from_outside_is_an_unscheduled_crash_or_fails_the_run() {
    let _g = serial();
    require_namespaces();
    let kill = Faults {
        kill_node: Some((4, Duration::from_secs(2))),
        ..Faults::default()
    };
    // No event: the kill is a crash the scenario does not know.
    let scenario = common::scenario(&crash_toml("", ""));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::run(&scenario, "quic-tls", dir.path(), kill.clone());
    assert_eq!(
        out.manifest.status,
        RunStatus::Complete,
        "{:?}",
        out.manifest
    );
    let s = common::summary(&out, "quic-tls");
    let c = s.crashes.as_ref().expect("a crash summary");
    assert_eq!(c.crashes.len(), 1);
    let k = &c.crashes[0];
    assert!(
        !k.scheduled && k.node == 4 && k.recovered_at_s.is_none(),
        "{k:?}"
    );
    assert!((0.9..1.5).contains(&k.at_s), "{k:?}");
    assert!(
        s.nodes.iter().all(|n| n.index != 4),
        "a killed node has no report"
    );
    for a in &c.classes {
        assert!(a.lost_to_crash > 0, "{a:?}");
    }

    // Asked to, the run fails instead, naming the node.
    let scenario = common::scenario(&crash_toml("", "on_unscheduled_crash = \"fail\""));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::run(&scenario, "quic-tls", dir.path(), kill);
    assert_eq!(out.manifest.status, RunStatus::Failed, "{:?}", out.manifest);
    let error = out.manifest.stacks[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("node 4")
            && error.contains("SIGKILL")
            && error.contains("on_unscheduled_crash"),
        "{error}"
    );
}
