//! Churn end to end, on every stack this host can run that has a different underlay: peers
//! removed and re-added on both sides, a node leaving and joining, an interface bounced, a
//! key update and a restart, all under load. Each cold connect delivers its first object,
//! TLS stacks really resume and send 0-RTT, the underlay's steps are timed, and nothing the
//! events do is counted as a stream error.

mod common;

use common::{require_namespaces, serial};
use stackbench::controller::Faults;

/// Four nodes; node 0 cycles node 2 five times (full, full with no ticket yet, 0-RTT, full,
/// resumed on TLS stacks), node 3 leaves and rejoins, node 1's interface goes down and up
/// and it updates its keys, node 2 restarts.
const CHURN: &str = r#"
name = "churn-test"
seed = 5
duration = "6s"
warmup = "1s"
drain = "1500ms"
stacks = ["quic-tls"]

[topology]
nodes = 4

[links]
probe = "500ms"

[churn]
window = "200ms"
timeline = "100ms"
tls_handshakes = ["full", "resumed", "0rtt"]
lifecycle_samples = 3

[transport]
stream_credit = 1000

[[event]]
kind = "peer_remove"
node = 0
peer = 2
at = "1.2s"
every = "600ms"
count = 5

[[event]]
kind = "peer_add"
node = 0
peer = 2
at = "1.4s"
every = "600ms"
count = 5

[[event]]
kind = "node_leave"
node = 3
at = "4.2s"

[[event]]
kind = "node_join"
node = 3
at = "4.6s"

[[event]]
kind = "iface_down"
node = 1
at = "5s"

[[event]]
kind = "iface_up"
node = 1
at = "5.2s"

[[event]]
kind = "key_update"
node = 1
at = "5.4s"

[[event]]
kind = "node_restart"
node = 2
at = "5.8s"

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "constant", rate = "50/s" }

[[class]]
name = "tx"
priority = 0
size = "1KiB"
arrival = { process = "poisson", rate = "100/s" }
"#;

/// One stack per kind of underlay: plain UDP, in-process (each library), each TUN daemon.
/// GotaTun's device logs every packet it cannot write while its interface is down: the
/// interface bounce here is what once blocked it on a full stderr pipe.
const STACKS: &[&str] = &[
    "quic-tls",
    "quic-null+wg-inproc",
    "quic-null+wg-gotatun",
    "quic-tls+wg-boringtun",
    "quic-null+wg-gotatun-tun",
    "quic-null+wg-go",
    "sctp+wg-inproc",
    "sctp+wg-boringtun",
];

#[test]
fn churn_is_measured_on_every_underlay() {
    let _g = serial();
    let host = require_namespaces();
    let stacks = common::available_stacks(&host);
    let scenario = common::scenario(CHURN);
    let mut ran = 0;
    for name in STACKS {
        let Some(stack) = stacks.iter().find(|s| s.id().name() == *name) else {
            eprintln!("churn: {name} is not available here");
            continue;
        };
        ran += 1;
        let id = stack.id();
        let dir = tempfile::tempdir().expect("tempdir");
        let out = common::run(&scenario, name, dir.path(), Faults::default());
        assert_eq!(
            out.manifest.status,
            stackbench_core::schema::RunStatus::Complete,
            "{name}: {:?}",
            out.manifest
        );
        let s = common::summary(&out, name);
        assert!(s.node_errors.is_empty(), "{name}: {:?}", s.node_errors);
        let c = s.churn.as_ref().expect("a churn summary");
        assert_eq!(c.events.len(), 16, "{name}");

        // 5 peer_adds, 3 dials of the joining node, 3 of the restarted one: all delivered.
        let count = |k: &str| c.cold_connect_us.get(k).map_or(0, |p| p.count);
        let total: u64 = c.cold_connect_us.values().map(|p| p.count).sum();
        assert_eq!(total, 11, "{name}: {:?}", c.cold_connect_us);
        assert_eq!(c.cold_connect_failures, 0, "{name}");
        assert_eq!(count("restart, full"), 3, "{name}: {:?}", c.cold_connect_us);
        if id.protocol == stackbench::stack::Protocol::QuicTls {
            assert_eq!(count("0rtt"), 1, "{name}: {:?}", c.cold_connect_us);
            assert_eq!(count("resumed"), 1, "{name}: {:?}", c.cold_connect_us);
            // Each mode was timed (one sample each: too few to compare them in a test).
            let (zero, resumed) = (&c.cold_connect_us["0rtt"], &c.cold_connect_us["resumed"]);
            assert!(zero.min > 0 && resumed.min > 0, "{name}");
        } else {
            assert_eq!(count("full"), 8, "{name}: null crypto never resumes");
        }
        assert!(
            c.dial_handshake_us.count == 11,
            "{name}: {:?}",
            c.dial_handshake_us
        );

        // Every kind of step was taken and timed, or said why not.
        for k in ["remove_peer", "add_peer", "add_peer_dialler", "restart"] {
            assert!(
                c.apply_us.contains_key(k),
                "{name}: no {k} in {:?}",
                c.apply_us
            );
        }
        let is_quic = id.protocol.is_quic();
        assert_eq!(c.apply_us.contains_key("key_update"), is_quic, "{name}");
        let has_iface = id.has_interface();
        assert_eq!(c.apply_us.contains_key("iface_down"), has_iface, "{name}");
        let not_applicable = |what: &str| {
            c.step_notes
                .iter()
                .any(|n| n.contains(what) && n.contains("not applicable"))
        };
        assert_eq!(
            not_applicable("iface"),
            !has_iface,
            "{name}: {:?}",
            c.step_notes
        );
        assert_eq!(
            not_applicable("key_update"),
            !is_quic,
            "{name}: {:?}",
            c.step_notes
        );

        // Disruption: deliveries both inside and outside the windows, per class.
        let vote = c
            .disruption
            .iter()
            .find(|d| d.class == "vote")
            .expect("vote");
        assert!(
            vote.steady_us.count > 0 && vote.disrupted_us.count > 0,
            "{name}: {vote:?}"
        );
        assert!(
            vote.by_event_us.contains_key("peer_add"),
            "{name}: {vote:?}"
        );
        let votes = &s.classes[0];
        assert!(
            votes.delivered * 100 >= votes.sent * 99,
            "{name}: only {} of {} votes delivered",
            votes.delivered,
            votes.sent
        );

        // The lifecycle: three samples where there is an interface of the stack's own.
        let life = s
            .lifecycle
            .as_ref()
            .expect("lifecycle samples were asked for");
        if id.uses_wireguard() {
            assert_eq!(life.samples, 3, "{name}: {life:?}");
            assert!(
                life.create_us.p50 > 0 && life.total_us.p50 > 0,
                "{name}: {life:?}"
            );
        } else {
            assert_eq!(life.samples, 0, "{name}");
            assert!(life.what.contains("no interface"), "{name}: {}", life.what);
        }
        // Stacks with an interface are timed both ways, the scenario's (library) first,
        // each with a peer change; the others have one way only.
        match (&s.lifecycle_other, has_iface) {
            (Some(other), true) => {
                assert_eq!(
                    (life.automation.as_str(), other.automation.as_str()),
                    ("library", "processes"),
                    "{name}"
                );
                for l in [life, other] {
                    assert!(
                        l.samples == 3 && l.peer_change_us.count == 3 && l.peer_change_us.p50 > 0,
                        "{name}: {l:?}"
                    );
                }
            }
            (None, false) => assert!(life.automation.is_empty(), "{name}: {life:?}"),
            (other, _) => panic!("{name}: has an interface {has_iface}, other way {other:?}"),
        }

        // Raw data kept beside the summary, and the report shows the section.
        let rep = out.dir.join(name).join("0");
        assert!(rep.join("churn.json").exists(), "{name}");
        assert!(rep.join("cold-connect-full.hlog").exists(), "{name}");
        let run = stackbench_report::load_run(&out.dir).expect("the run loads");
        let md = stackbench_report::summary_markdown(&run);
        assert!(
            md.contains("### Churn") && md.contains("Cold connects"),
            "{name}"
        );
    }
    assert!(
        ran >= 2,
        "at least plain UDP and in-process WireGuard run everywhere"
    );
}
