//! The cross-check: `ping`'s idle RTT between two nodes, beside the probe's own figure.

use super::net::NodeAddr;
use crate::link::plan::LinkPlan;
use stackbench_core::schema::{PathCheck, PingCheck};

/// `ping` from node 0 to node 1, beside the probe's RTT for the same pair.
pub fn ping_check(nodes: &[NodeAddr], plan: &LinkPlan, paths: &[PathCheck]) -> PingCheck {
    let one_way = |from: u32, to: u32| {
        paths
            .iter()
            .find(|p| p.from == from && p.to == to)
            .map_or(0.0, |p| p.delay_us.measured)
    };
    let configured = (plan.path(0, 1).delay_ns + plan.path(1, 0).delay_ns) as f64 / 1e3;
    let mut check = PingCheck {
        from: 0,
        to: 1,
        ping_rtt_us: None,
        ping_error: None,
        probe_rtt_us: one_way(0, 1) + one_way(1, 0),
        configured_rtt_us: configured,
    };
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &nodes[0].netns,
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-q",
            "-W",
            "5",
        ])
        .arg(nodes[1].ip.to_string())
        .output();
    match out {
        Err(e) => check.ping_error = Some(format!("cannot run ping: {e}")),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            match parse_ping(&text) {
                Some(v) => check.ping_rtt_us = Some(v),
                None => {
                    let err = String::from_utf8_lossy(&o.stderr);
                    check.ping_error = Some(
                        if err.contains("No such file") || err.contains("not found") {
                            "ping not found; install it with: apt-get install iputils-ping".into()
                        } else {
                            format!("ping gave no RTT: {}", err.trim())
                        },
                    );
                }
            }
        }
    }
    check
}

/// min/avg/max/mdev in µs from ping's summary line.
fn parse_ping(text: &str) -> Option<[f64; 4]> {
    let line = text.lines().find(|l| l.contains("min/avg/max"))?;
    let values = line.split('=').nth(1)?.trim().split(' ').next()?;
    let v: Vec<f64> = values
        .split('/')
        .filter_map(|x| x.parse::<f64>().ok())
        .map(|ms| ms * 1e3)
        .collect();
    (v.len() == 4).then(|| [v[0], v[1], v[2], v[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summaries_parse() {
        let t = "--- 198.18.0.2 ping statistics ---\n10 packets transmitted, 10 received, 0% packet loss, time 1803ms\nrtt min/avg/max/mdev = 60.101/60.220/60.512/0.110 ms\n";
        assert_eq!(parse_ping(t), Some([60101.0, 60220.0, 60512.0, 110.0]));
        assert_eq!(parse_ping("100% packet loss"), None);
    }
}
