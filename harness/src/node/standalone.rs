//! A node without a controller: it reads everything a controller would have sent from a
//! file (`stackbench node-inputs` writes one per node), connects to its peers, starts at the
//! shared wall-clock instant, and writes its report to a folder. This is how nodes run where
//! there are no namespaces and no controller beside them: under a network simulator, or on
//! other hosts.

use super::{build_endpoints, connect_all, session};
use crate::{control::NodeInputs, metrics::monotonic_ns, stack::tls::NodeIdentity};
use anyhow::{bail, Context, Result};
use std::{path::Path, rc::Rc, time::SystemTime};

/// The file a standalone node writes its report to, in the results folder.
pub fn report_file(index: u32) -> String {
    format!("node-{index}.report.json")
}

pub async fn run(inputs: &Path, results: &Path) -> Result<()> {
    let text = std::fs::read_to_string(inputs)
        .with_context(|| format!("reading the node's inputs {}", inputs.display()))?;
    let inputs: NodeInputs = serde_json::from_str(&text)
        .with_context(|| format!("parsing the node's inputs {}", inputs.display()))?;
    let index = inputs.index;
    let identity = Rc::new(NodeIdentity::import(&inputs.keys)?);
    let eps = build_endpoints(index, &identity, &inputs.setup)?;
    // Peers may still be starting: a dial to a port nobody listens on yet is answered once
    // the peer binds, when QUIC resends its Initial (within a second or two) or WireGuard
    // its handshake initiation (5 s later, REKEY_TIMEOUT).
    let connected = connect_all(index, &eps, &inputs.setup).await?;
    let now_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the wall clock is before 1970")?
        .as_nanos() as u64;
    if inputs.start_unix_ns <= now_unix {
        bail!(
            "node {index}: the start instant passed {:.3} s before the node was connected; write the inputs with a later start (--start-in; over WireGuard, a handshake sent before its peer listened is retried only 5 s later)",
            (now_unix - inputs.start_unix_ns) as f64 / 1e9
        );
    }
    let start_ns = monotonic_ns() + (inputs.start_unix_ns - now_unix);
    let node = session::Node::new(index, identity, &inputs.setup, eps, connected, start_ns)?;
    let report = session::workload(&node).await?;
    std::fs::create_dir_all(results).with_context(|| format!("creating {}", results.display()))?;
    crate::results::write_atomic(
        &results.join(report_file(index)),
        &serde_json::to_vec(&report)?,
    )
}
