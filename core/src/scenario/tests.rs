use super::*;
use std::path::PathBuf;

const KNOWN: &[&str] = &["quic-tls", "quic-null"];

const GOOD: &str = r#"
name = "t"
seed = 1
duration = "5s"
warmup = "1s"
stacks = ["quic-tls"]

[topology]
nodes = 3
uplink = "20Mbit"

[[class]]
name = "block"
priority = 10
size = "1KiB..4KiB"
arrival = { process = "poisson", rate = "20/s" }
origins = [0]

[[class]]
name = "bulk"
priority = 0
size = "64KiB"
arrival = { process = "backlog", outstanding = 4 }
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&PathBuf::from("s.toml"), text, KNOWN)
}

/// Parses `text` expecting an error at `line:col` whose message contains `needle`.
fn assert_error(text: &str, line: usize, col: usize, needle: &str) {
    match parse(text) {
        Err(ScenarioError::Invalid(l)) => {
            let shown = l.to_string();
            assert_eq!((l.line, l.col), (line, col), "location of: {shown}");
            assert!(shown.contains(needle), "{shown:?} lacks {needle:?}");
            assert!(
                shown.starts_with(&format!("s.toml:{line}:{col}: ")),
                "{shown}"
            );
        }
        other => panic!("expected an error containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn good_scenario_resolves_defaults_and_round_trips() {
    let s = parse(GOOD).expect("valid scenario");
    assert_eq!(s.node_count(), 3);
    assert_eq!(s.drain.0, Duration::from_secs(2), "default drain");
    assert_eq!(*s.repetitions.get_ref(), 1, "default repetitions");
    assert!(s.classes[1].arrival.is_backlog());
    assert!(s.classes[0].originates_at(0) && !s.classes[0].originates_at(1));
    assert!(s.classes[1].originates_at(2), "no origins means every node");
    let resolved = s.to_resolved_toml();
    let again = parse(&resolved).expect("resolved scenario parses again");
    assert_eq!(again.to_resolved_toml(), resolved);
    assert!(resolved.contains("drain = \"2s\""), "{resolved}");
}

#[test]
fn unknown_field_is_located() {
    let text = GOOD.replace("uplink = \"20Mbit\"", "uplnk = \"20Mbit\"");
    assert_error(&text, 10, 1, "unknown field `uplnk`");
}

#[test]
fn bad_unit_is_located() {
    let text = GOOD.replace("\"20Mbit\"", "\"20MB\"");
    assert_error(&text, 10, 10, "invalid bit rate \"20MB\"");
}

#[test]
fn bad_arrival_process_is_reported() {
    let text = GOOD.replace("process = \"poisson\"", "process = \"bursty\"");
    match parse(&text) {
        Err(ScenarioError::Invalid(l)) => {
            assert_eq!((l.line, l.col), (16, 23), "{l}");
            assert!(
                l.message.contains("bursty") && l.message.contains("poisson"),
                "{l}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_stack_lists_known_ones() {
    let text = GOOD.replace("[\"quic-tls\"]", "[\"quic-tls\", \"quic-tsl\"]");
    assert_error(
        &text,
        6,
        23,
        "unknown stack \"quic-tsl\"; known stacks: quic-tls, quic-null",
    );
}

#[test]
fn origin_out_of_range_is_located() {
    let text = GOOD.replace("origins = [0]", "origins = [0, 3]");
    assert_error(
        &text,
        17,
        15,
        "origin node 3 does not exist; nodes are numbered 0..2",
    );
}

#[test]
fn semantic_errors_are_located() {
    assert_error(
        &GOOD.replace("nodes = 3", "nodes = 1"),
        9,
        9,
        "between 2 and",
    );
    assert_error(
        &GOOD.replace("warmup = \"1s\"", "warmup = \"5s\""),
        5,
        10,
        "must be shorter than duration",
    );
    assert_error(
        &GOOD.replace("\"64KiB\"", "\"16B\""),
        22,
        8,
        "object size must be between 36B",
    );
    let dup = GOOD.replace("name = \"bulk\"", "name = \"block\"");
    assert_error(&dup, 20, 8, "duplicate class name \"block\"");
    assert_error(
        &GOOD.replace("outstanding = 4", "outstanding = 0"),
        20,
        8,
        "at least 1",
    );
    assert_error(
        &GOOD.replace("[\"quic-tls\"]", "[]"),
        6,
        10,
        "at least one stack",
    );
}

#[test]
fn syntax_error_is_located() {
    assert_error(&GOOD.replace("seed = 1", "seed = = 1"), 3, 8, "");
}

#[test]
fn error_display_shows_line_and_caret() {
    let Err(ScenarioError::Invalid(l)) = parse(&GOOD.replace("nodes = 3", "nodes = 1")) else {
        panic!("expected an error");
    };
    let shown = l.to_string();
    assert!(shown.contains("9 | nodes = 1\n  |         ^"), "{shown}");
}

#[test]
fn links_regions_and_node_classes_parse() {
    let text = GOOD.replace(
        "[[class]]\nname = \"block\"",
        "[links]\ndelay = \"30ms\"\njitter = \"1ms\"\nloss = \"1%\"\nbursty_loss = { p = \"0.1%\", r = \"25%\" }\n\
         [regions]\nnames = [\"eu\", \"us\"]\ndelay = [[\"1ms\", \"40ms\"], [\"40ms\", \"1ms\"]]\n\
         [[node_class]]\nname = \"dc\"\nshare = \"20%\"\nuplink = \"1Gbit\"\n\
         [[node_class]]\nname = \"home\"\nshare = \"80%\"\n\
         [[class]]\nname = \"block\"",
    );
    let s = parse(&text).expect("valid");
    assert_eq!(s.links.get_ref().loss.0, 0.01);
    assert_eq!(s.node_classes.len(), 2);
    // The resolved scenario reads back the same.
    let again = parse(&s.to_resolved_toml()).expect("resolved scenario parses");
    assert_eq!(again.links.get_ref().delay, s.links.get_ref().delay);
}

#[test]
fn link_mistakes_point_at_the_value() {
    let with = |extra: &str| {
        GOOD.replace(
            "[[class]]\nname = \"block\"",
            &format!("{extra}[[class]]\nname = \"block\""),
        )
    };
    // Line numbers: GOOD's [topology] table ends on line 10; inserted text starts at line 12.
    assert_error(
        &with("[links]\nloss = \"1\"\n"),
        13,
        8,
        "expected a number followed by %",
    );
    assert_error(
        &with("[links]\njiter = \"1ms\"\n"),
        13,
        1,
        "unknown field `jiter`",
    );
    assert_error(
        &with("[regions]\nnames = [\"a\", \"b\"]\ndelay = [[\"1ms\", \"2ms\"], [\"3ms\"]]\n"),
        14,
        26,
        "one delay per region (2), got 1",
    );
    assert_error(
        &with("[regions]\nnames = [\"a\"]\ndelay = [[\"1ms\"]]\nassign = [0, 0, 1]\n"),
        15,
        17,
        "region 1 does not exist",
    );
    assert_error(
        &with("[[node_class]]\nname = \"a\"\nshare = \"30%\"\n[[node_class]]\nname = \"b\"\nshare = \"30%\"\n"),
        14,
        9,
        "must add up to 100%, got 60%",
    );
}

const CHURN: &str = r#"
name = "t"
seed = 1
duration = "5s"
warmup = "1s"
stacks = ["quic-tls"]

[topology]
nodes = 3

[churn]
window = "200ms"
timeline = "100ms"
tls_handshakes = ["full", "0rtt"]
lifecycle_samples = 5

[transport]
stream_credit = 500
initial_rtt = "50ms"
idle_timeout = "20s"

[[event]]
kind = "peer_remove"
node = 0
peer = 2
at = "1s"
every = "1s"
count = 3

[[event]]
kind = "peer_add"
node = 0
peer = 2
at = "1.3s"
every = "1s"
count = 3

[[class]]
name = "vote"
priority = 10
size = "200B"
arrival = { process = "constant", rate = "10/s" }
"#;

#[test]
fn churn_events_expand_into_both_sides_steps() {
    let s = parse(CHURN).expect("valid churn scenario");
    let plan = crate::workload::WorkloadPlan::from_scenario(&s).expect("a plan");
    let churn = &plan.churn;
    assert_eq!(churn.firings.len(), 6);
    assert_eq!(churn.steps.len(), 12, "every change acts on both nodes");
    assert_eq!(churn.window, Duration::from_millis(200));
    assert_eq!(churn.timeline, Duration::from_millis(100));
    assert_eq!(plan.transport.stream_credit, 500);
    assert_eq!(plan.transport.initial_rtt, Duration::from_millis(50));
    assert_eq!(plan.transport.idle_timeout, Duration::from_secs(20));
    assert!(plan.transport.send_fairness, "the default");
    assert!(churn.resumes(), "0rtt asks TLS servers for tickets");
    assert_eq!(s.churn.lifecycle_samples, 5);
    let resolved = parse(&s.to_resolved_toml()).expect("resolved churn round-trips");
    assert_eq!(resolved.events.len(), 2);
}

#[test]
fn churn_mistakes_point_at_the_event() {
    let peerless = CHURN.replacen("peer = 2\nat = \"1s\"", "at = \"1s\"", 1);
    assert_error(&peerless, 23, 8, "peer_remove needs a peer");
    let twice = CHURN.replacen("kind = \"peer_add\"", "kind = \"peer_remove\"", 1);
    assert_error(&twice, 31, 8, "already apart");
    let late = CHURN.replacen("count = 3\n\n[[class]]", "count = 9\n\n[[class]]", 1);
    assert_error(&late, 34, 6, "not before sending ends");
    let stranger = CHURN.replacen("peer = 2", "peer = 7", 1);
    assert_error(&stranger, 25, 8, "event peer 7 does not exist");
    let unknown = CHURN.replacen("kind = \"peer_add\"", "kind = \"peer_swap\"", 1);
    assert_error(&unknown, 31, 8, "unknown variant `peer_swap`");
    let coarse = CHURN.replacen("timeline = \"100ms\"", "timeline = \"1ms\"", 1);
    assert_error(&coarse, 13, 12, "at least 10ms");
    let none = CHURN.replacen("[\"full\", \"0rtt\"]", "[]", 1);
    assert_error(&none, 14, 18, "at least one of");
    let typo = CHURN.replacen("lifecycle_samples", "lifecycle_sample", 1);
    assert_error(&typo, 15, 1, "unknown field `lifecycle_sample`");
}

#[test]
fn gossip_needs_a_degree_that_fits() {
    let gossip = |topology: &str| GOOD.replacen("nodes = 3\n", topology, 1);
    let ok = parse(&gossip("nodes = 16\nfanout = \"gossip\"\ndegree = 4\n")).expect("gossip");
    let plan = crate::workload::WorkloadPlan::from_scenario(&ok).expect("a plan");
    assert!(plan.fanout.relay);
    assert_eq!(plan.fanout.graph.neighbours(0).len(), 4);
    assert_error(
        &gossip("nodes = 16\nfanout = \"gossip\"\n"),
        9,
        9,
        "needs topology.degree",
    );
    assert_error(
        &gossip("nodes = 5\nfanout = \"gossip\"\ndegree = 3\n"),
        11,
        10,
        "must be even",
    );
    assert_error(
        &gossip("nodes = 4\nfanout = \"gossip\"\ndegree = 4\n"),
        11,
        10,
        "between 2 and nodes - 1",
    );
    assert_error(&gossip("nodes = 4\ndegree = 2\n"), 10, 10, "gossip\" only");
    let validate = GOOD.replacen("origins = [0]\n", "origins = [0]\nvalidate = \"5ms\"\n", 1);
    assert_error(&validate, 13, 8, "validate applies");
}
