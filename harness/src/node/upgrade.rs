//! A node's part in a rolling upgrade. At its turn it moves from the old stack to the new:
//! either it restarts into the new one, or it speaks both, moves each peer over as both
//! ends speak the new one, and drops the old once every neighbour has. What the plan
//! decides (when, whom to dial) comes from `NetworkPlan`; this is the I/O.

use super::{churn::accept_loop, session::Node, session::CHURN_CLOSE};
use crate::{control::NodeUpgrade, metrics::monotonic_ns, scenario::network::Strategy};
use anyhow::{anyhow, Result};
use stackbench_core::workload::network::{Slot, UpgradePlan};
use std::{rc::Rc, time::Duration};

/// How long a dial on the new stack may take before it counts as failed.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a neighbour's new stack is due a node waits before dialling it there: the
/// endpoint takes milliseconds to come up, and a tunnel's first handshake sent to a port not
/// yet bound is retried only after 5 s (WireGuard's REKEY_TIMEOUT).
const SETTLE: Duration = Duration::from_millis(100);

fn since_start(node: &Node, t: u64) -> u64 {
    t.saturating_sub(node.start_ns) / 1000
}

fn record(node: &Node, f: impl FnOnce(&mut NodeUpgrade)) {
    if let Some(u) = node.upgrade.borrow_mut().as_mut() {
        f(u);
    }
}

/// Waits for this node's turn, then upgrades it.
pub async fn run(node: Rc<Node>) {
    let Some(plan) = node.plan().network.upgrade.clone() else {
        return;
    };
    let due = node.start_ns + plan.at[node.index as usize].as_nanos() as u64;
    tokio::time::sleep(Duration::from_nanos(due.saturating_sub(monotonic_ns()))).await;
    let began = monotonic_ns();
    *node.upgrade.borrow_mut() = Some(NodeUpgrade {
        began_us: since_start(&node, began),
        ..Default::default()
    });
    if let Err(e) = switch(&node, &plan).await {
        node.rec
            .borrow_mut()
            .error(format!("node {}: upgrade: {e:#}", node.index));
        return;
    }
    record(&node, |u| u.endpoint_us = (monotonic_ns() - began) / 1000);
    let grace = (plan.strategy == Strategy::Dual).then_some(plan.grace);
    let net = &node.plan().network;
    for peer in net.upgrade_dials(node.plan(), node.index) {
        // The neighbour moved earlier, or in the same batch: its new stack is up once its
        // own turn (and any downtime) is over.
        let up = net.new_stack_up_at(peer).unwrap_or_default() + SETTLE;
        let ready = node.start_ns + up.as_nanos() as u64;
        tokio::task::spawn_local(dial(node.clone(), plan.to, peer, grace, ready));
    }
    check_done(&node, &plan);
}

/// Brings up the new stack's endpoint: beside the old one (dual), or in its place after
/// closing it and waiting out the downtime (restart).
async fn switch(node: &Rc<Node>, plan: &UpgradePlan) -> Result<()> {
    if plan.strategy == Strategy::Restart {
        node.conn_slots.borrow_mut().clear();
        let peers: Vec<u32> = std::mem::take(&mut *node.conns.borrow_mut())
            .into_iter()
            .map(|(p, c)| {
                c.close(CHURN_CLOSE, b"upgrade restart");
                p
            })
            .collect();
        for p in peers {
            node.peer_down(p);
        }
        let old = node.eps.borrow_mut()[plan.from as usize].take();
        if let Some(old) = old {
            old.endpoint.close(CHURN_CLOSE, b"upgrade restart");
        }
        tokio::time::sleep(plan.downtime).await;
    }
    let ep = super::build_endpoint(node.index, &node.identity, &node.setup, plan.to)?;
    let endpoint = ep.endpoint.clone();
    node.eps.borrow_mut()[plan.to as usize] = Some(ep);
    let grace = (plan.strategy == Strategy::Dual).then_some(plan.grace);
    tokio::task::spawn_local(accept_loop(node.clone(), plan.to, endpoint, grace));
    Ok(())
}

/// Dials `peer` on the new stack (slot `to`) once its endpoint there is up (at `ready`,
/// CLOCK_MONOTONIC ns) and moves it there. Where the dial fails, a dual node keeps the old
/// connection: it falls back to the stack both still speak.
async fn dial(node: Rc<Node>, to: Slot, peer: u32, grace: Option<Duration>, ready: u64) {
    tokio::time::sleep(Duration::from_nanos(ready.saturating_sub(monotonic_ns()))).await;
    let t0 = monotonic_ns();
    match connect(&node, to, peer).await {
        Ok(conn) => {
            record(&node, |u| {
                u.dialled += 1;
                u.handshake_us.push((monotonic_ns() - t0) / 1000);
            });
            node.install(peer, to, conn, grace);
            connected(&node, peer);
        }
        Err(e) => {
            record(&node, |u| u.dial_failures += 1);
            node.rec.borrow_mut().error(format!(
                "node {}: upgrade: dialling node {peer} on the new stack: {e:#}",
                node.index
            ));
        }
    }
}

async fn connect(node: &Node, to: Slot, peer: u32) -> Result<crate::stack::Conn> {
    let (endpoint, d, addr) = node.dial_target(to, peer)?;
    let connecting = endpoint.connect(d.as_ref(), false, addr)?;
    tokio::time::timeout(DIAL_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow!("no handshake within {DIAL_TIMEOUT:?}"))?
}

/// A later node connected to this one on the new stack.
pub fn accepted(node: &Rc<Node>, peer: u32) {
    record(node, |u| u.accepted += 1);
    connected(node, peer);
}

fn connected(node: &Rc<Node>, _peer: u32) {
    let now = since_start(node, monotonic_ns());
    record(node, |u| u.last_connected_us = Some(now));
    if let Some(plan) = node.plan().network.upgrade.clone() {
        check_done(node, &plan);
    }
}

/// Dual: once every neighbour is on the new stack, the old endpoint closes, after the
/// grace that lets what is in flight on the old connections arrive.
fn check_done(node: &Rc<Node>, plan: &UpgradePlan) {
    if plan.strategy != Strategy::Dual {
        return;
    }
    let all_moved = {
        let slots = node.conn_slots.borrow();
        node.plan()
            .fanout
            .graph
            .neighbours(node.index)
            .iter()
            .all(|p| slots.get(p) == Some(&plan.to))
    };
    if !all_moved {
        return;
    }
    // Taken now, so that this happens once; held until the grace is over.
    let Some(old) = node.eps.borrow_mut()[plan.from as usize].take() else {
        return;
    };
    let (node, grace) = (node.clone(), plan.grace);
    tokio::task::spawn_local(async move {
        tokio::time::sleep(grace).await;
        old.endpoint.close(CHURN_CLOSE, b"old stack dropped");
        let now = since_start(&node, monotonic_ns());
        record(&node, |u| u.old_dropped_us = Some(now));
    });
}
