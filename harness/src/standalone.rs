//! Inputs for nodes that run without a controller: everything the controller would send
//! each node (the resolved plan, its peers' addresses and pinned keys), the node's own keys,
//! and a shared wall-clock start. Only stacks whose underlay needs nothing prepared outside
//! the node can run this way.

use crate::{
    control::{NodeInputs, NodeSetup, PeerInfo, SlotSetup},
    scenario::Scenario,
    stack::tls::NodeIdentity,
    workload::WorkloadPlan,
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// Stacks a node can run without a controller preparing its underlay: QUIC on UDP, and
/// every stack over WireGuard inside the node process.
pub const STANDALONE_STACKS: [&str; 8] = [
    "quic-tls",
    "quic-null",
    "sctp",
    "quic-tls+wg-inproc",
    "quic-null+wg-inproc",
    "quic-tls+wg-gotatun",
    "quic-null+wg-gotatun",
    "sctp+wg-inproc",
];

/// Where node `index` listens, given its own address `at`: the transport on `at` itself, or
/// on its tunnel address with the in-process WireGuard on `at`. (transport, WireGuard.)
fn placement(stack: &str, index: u32, at: SocketAddr) -> (SocketAddr, Option<SocketAddr>) {
    if stack.ends_with("+wg-inproc") || stack.ends_with("+wg-gotatun") {
        let tunnel = std::net::SocketAddrV4::new(
            crate::stack::wg_socket::virtual_ip(index),
            crate::topology::QUIC_PORT,
        );
        (SocketAddr::V4(tunnel), Some(at))
    } else {
        (at, None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The request cannot be met (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The inputs file of node `index` in `out`.
pub fn inputs_file(out: &Path, index: u32) -> PathBuf {
    out.join(format!("node-{index}.inputs.json"))
}

/// Writes one inputs file per node of `scenario` into `out`; returns their paths.
pub fn write_inputs(
    scenario: &Scenario,
    stack: &str,
    addresses: &[SocketAddr],
    start_in: Duration,
    out: &Path,
) -> Result<Vec<PathBuf>, InputsError> {
    if !STANDALONE_STACKS.contains(&stack) {
        return Err(InputsError::Usage(format!(
            "--stack {stack}: only {} run without a controller (the others' underlays are prepared by `stackbench run`)",
            STANDALONE_STACKS.join(", ")
        )));
    }
    let start_unix_ns = (SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(anyhow::Error::from)?
        + start_in)
        .as_nanos() as u64;
    write_inputs_at(scenario, stack, addresses, start_unix_ns, false, out)
}

/// [`write_inputs`] with the start as a wall-clock instant (a simulator's clock, say) and
/// `simulated` set for nodes that run under a network simulator.
pub fn write_inputs_at(
    scenario: &Scenario,
    stack: &str,
    addresses: &[SocketAddr],
    start_unix_ns: u64,
    simulated: bool,
    out: &Path,
) -> Result<Vec<PathBuf>, InputsError> {
    let nodes = scenario.node_count();
    if addresses.len() != nodes as usize {
        return Err(InputsError::Usage(format!(
            "--addresses: the scenario has {nodes} nodes, got {} addresses",
            addresses.len()
        )));
    }
    let mut plan = WorkloadPlan::from_scenario(scenario).map_err(anyhow::Error::from)?;
    plan.network = crate::workload::network::NetworkPlan::single(stack, nodes);
    let identities = (0..nodes)
        .map(NodeIdentity::generate)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::from)?;
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    let mut files = vec![];
    for i in 0..nodes {
        let peers = plan
            .fanout
            .graph
            .neighbours(i)
            .iter()
            .map(|&j| {
                let (addr, wg_endpoint) = placement(stack, j, addresses[j as usize]);
                PeerInfo {
                    index: j,
                    addr,
                    spki: identities[j as usize].spki.clone(),
                    wg_public: identities[j as usize].wg_public(),
                    wg_endpoint,
                }
            })
            .collect();
        let (bind, wg_listen) = placement(stack, i, addresses[i as usize]);
        let mut setup = NodeSetup::single(
            plan.clone(),
            SlotSetup {
                stack: stack.to_owned(),
                bind,
                wg_listen,
                wg_uapi: None,
                peers,
            },
        );
        setup.simulated = simulated;
        let inputs = NodeInputs {
            index: i,
            keys: identities[i as usize].export(),
            setup,
            start_unix_ns,
        };
        let path = inputs_file(out, i);
        crate::results::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&inputs).map_err(anyhow::Error::from)?,
        )?;
        files.push(path);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::STANDALONE_STACKS;
    use crate::stack::StackId;

    #[test]
    fn every_standalone_stack_is_a_stack_of_the_registry() {
        for name in STANDALONE_STACKS {
            assert!(StackId::parse(name).is_some(), "{name}");
        }
    }
}
