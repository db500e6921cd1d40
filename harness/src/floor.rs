//! The machine's floor, measured once per run before any stack: how long raw UDP takes
//! between two of the scenario's own namespaces on the scenario's own schedule, and what
//! waking an idle thread costs here. A stack's latency above this floor is what the stack
//! costs; the floor itself is the machine (on a 2-core AMD EPYC VM, a 200 B object's
//! one-way p50 fell from 510 µs at 20/s to 93 µs at 10 000/s with nothing but the rate
//! changed).

use crate::{
    aggregate::percentiles,
    link::probe::{in_netns, NodeAddr},
    metrics::{monotonic_ns, new_histogram, record},
    scenario::Arrival,
    workload::{Schedule, WorkloadPlan},
};
use stackbench_core::schema::{FloorClass, MachineFloor, WakeupCost, SCHEMA_VERSION};
use std::{
    io,
    net::{SocketAddrV4, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// Objects up to this size fit one datagram; larger classes have no raw-UDP floor.
pub const SMALL_MAX: u32 = 1200;
const FLOOR_PORT: u16 = 4503;
/// How long the sender sleeps before spinning to the due time, as the node's timer does.
const SPIN: Duration = Duration::from_micros(100);
/// The sparse ping-pong's gap: long enough for a CPU to go idle (ping's 5 ms here).
const SPARSE_GAP: Duration = Duration::from_millis(5);
const SPARSE_ROUNDS: u32 = 200;
const DENSE_ROUNDS: u32 = 2000;

/// Datagrams the floor sends at most, however high the scenario's rates.
const MAX_DATAGRAMS: u64 = 50_000;

/// The small classes' schedule at one origin (node 0 of the plan): the scenario's rates and
/// sizes, from time 0, long enough for about 200 samples of the sparsest class (1 to 3 s),
/// and no longer than [`MAX_DATAGRAMS`] take.
fn floor_plan(plan: &WorkloadPlan) -> Option<WorkloadPlan> {
    let mut p = plan.clone();
    p.classes
        .retain(|c| c.size_max <= SMALL_MAX && !matches!(c.arrival, Arrival::Backlog { .. }));
    let sparsest = p
        .classes
        .iter()
        .filter_map(|c| match c.arrival {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => Some(rate.0),
            Arrival::Backlog { .. } => None,
        })
        .fold(f64::INFINITY, f64::min);
    if !sparsest.is_finite() {
        return None;
    }
    for c in &mut p.classes {
        c.origins = vec![0];
    }
    let total: f64 = p
        .classes
        .iter()
        .filter_map(|c| match c.arrival {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => Some(rate.0),
            Arrival::Backlog { .. } => None,
        })
        .sum();
    p.warmup = Duration::ZERO;
    p.duration = Duration::from_secs_f64(
        (200.0 / sparsest)
            .clamp(1.0, 3.0)
            .min(MAX_DATAGRAMS as f64 / total),
    );
    Some(p)
}

fn bind(node: &NodeAddr, port: u16) -> io::Result<UdpSocket> {
    let ip = node.ip;
    in_netns(&node.netns, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(ip, port))?;
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(s)
    })
}

/// Sleeps until `due` (monotonic ns), the last [`SPIN`] awake, as a node's sender does.
fn wait_until(due: u64) {
    let now = monotonic_ns();
    if due > now + SPIN.as_nanos() as u64 {
        std::thread::sleep(Duration::from_nanos(due - now) - SPIN);
    }
    while monotonic_ns() < due {
        std::hint::spin_loop();
    }
}

/// One-way latency of each small class's datagrams, sent on their schedule from `from`
/// and timed by a receiver thread that wakes for each, as a node's would.
fn class_floors(
    from: &NodeAddr,
    to: &NodeAddr,
    plan: &WorkloadPlan,
) -> io::Result<Vec<FloorClass>> {
    let rx = bind(to, FLOOR_PORT)?;
    let tx = bind(from, 0)?;
    let dest = SocketAddrV4::new(to.ip, FLOOR_PORT);
    let mut schedule = Schedule::new(plan, 0);
    let classes = plan.classes.len();
    let stop = AtomicBool::new(false);
    let start = monotonic_ns() + 20_000_000;
    let hists = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut h: Vec<_> = (0..classes).map(|_| new_histogram()).collect();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = rx.recv(&mut buf) else { continue };
                let now = monotonic_ns();
                if n < 9 || buf[0] as usize >= classes {
                    continue;
                }
                let intended = u64::from_le_bytes(buf[1..9].try_into().unwrap_or([0; 8]));
                record(&mut h[buf[0] as usize], now.saturating_sub(intended) / 1000);
            }
            h
        });
        let mut pkt = vec![0u8; SMALL_MAX as usize];
        let mut result = Ok(());
        while let Some(due) = schedule.next_due() {
            let intended = start + due.as_nanos() as u64;
            wait_until(intended);
            let Some(e) = schedule.pop_due(due) else {
                break;
            };
            pkt[0] = e.class;
            pkt[1..9].copy_from_slice(&intended.to_le_bytes());
            if let Err(err) = tx.send_to(&pkt[..(e.size as usize).clamp(9, pkt.len())], dest) {
                result = Err(err);
                break;
            }
        }
        // Long enough for the last datagrams to cross an intercontinental path.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let h = receiver.join().unwrap_or_default();
        result.map(|()| h)
    })?;
    Ok(plan
        .classes
        .iter()
        .zip(hists)
        .map(|(c, h)| FloorClass {
            class: c.name.clone(),
            rate_per_sec: match c.arrival {
                Arrival::Constant { rate } | Arrival::Poisson { rate } => rate.0,
                Arrival::Backlog { .. } => 0.0,
            },
            size_bytes: [c.size_min, c.size_max],
            one_way_us: percentiles(&h),
        })
        .collect())
}

/// Half the round trip of a 200 B ping-pong between two threads in `node`'s namespace, over
/// its own address (no link: the machine alone), sparse (a [`SPARSE_GAP`] between rounds, so
/// both threads go idle) and back to back (each round starts when the last one ends).
fn wakeup(node: &NodeAddr) -> io::Result<WakeupCost> {
    let echo = bind(node, FLOOR_PORT + 1)?;
    let tx = bind(node, 0)?;
    tx.connect(SocketAddrV4::new(node.ip, FLOOR_PORT + 1))?;
    let stop = AtomicBool::new(false);
    let (sparse, dense) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], peer);
                }
            }
        });
        let rounds = |count: u32, gap: Duration| -> io::Result<_> {
            let mut h = new_histogram();
            let pkt = [0u8; 200];
            let mut buf = [0u8; 256];
            for _ in 0..count {
                std::thread::sleep(gap);
                let t0 = monotonic_ns();
                tx.send(&pkt)?;
                if tx.recv(&mut buf).is_ok() {
                    record(&mut h, (monotonic_ns() - t0) / 2000);
                }
            }
            Ok(percentiles(&h))
        };
        let r = rounds(SPARSE_ROUNDS, SPARSE_GAP)
            .and_then(|sparse| Ok((sparse, rounds(DENSE_ROUNDS, Duration::ZERO)?)));
        stop.store(true, Ordering::Relaxed);
        r
    })?;
    Ok(WakeupCost {
        sparse_gap_us: SPARSE_GAP.as_micros() as u64,
        cost_us: sparse.p50 as f64 - dense.p50 as f64,
        sparse_one_way_us: sparse,
        back_to_back_one_way_us: dense,
    })
}

/// Measures the floor between the first small class's first origin and the next node.
pub fn measure(nodes: &[NodeAddr], plan: &WorkloadPlan) -> io::Result<MachineFloor> {
    let origin = plan
        .classes
        .iter()
        .find(|c| c.size_max <= SMALL_MAX)
        .and_then(|c| c.origins.first().copied())
        .unwrap_or(0);
    let to = (origin + 1) % nodes.len() as u32;
    let (a, b) = (&nodes[origin as usize], &nodes[to as usize]);
    let classes = match floor_plan(plan) {
        Some(p) => class_floors(a, b, &p)?,
        None => vec![],
    };
    Ok(MachineFloor {
        schema: SCHEMA_VERSION,
        from: origin,
        to,
        method: format!(
            "raw UDP, no stack: each class of at most {SMALL_MAX} B on its own rate and sizes, sent on time (the sender spins its last {} us as a node does), timed from the intended send time by a receiver thread that wakes for each datagram; wake-up: half the RTT of a 200 B ping-pong between two threads in one node's namespace over its own address (the machine, no link), {SPARSE_ROUNDS} rounds {} ms apart against {DENSE_ROUNDS} back to back",
            SPIN.as_micros(),
            SPARSE_GAP.as_millis()
        ),
        classes,
        wakeup: wakeup(a)?,
        wireguard: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_plan_keeps_small_open_loop_classes_at_their_rates() {
        let plan = crate::workload::example_plan();
        let small: Vec<_> = plan
            .classes
            .iter()
            .filter(|c| c.size_max <= SMALL_MAX && !matches!(c.arrival, Arrival::Backlog { .. }))
            .map(|c| c.name.clone())
            .collect();
        match floor_plan(&plan) {
            None => assert!(small.is_empty()),
            Some(p) => {
                let names: Vec<_> = p.classes.iter().map(|c| c.name.clone()).collect();
                assert_eq!(names, small);
                assert!(p.classes.iter().all(|c| c.origins == vec![0]));
                assert!(
                    p.duration >= Duration::from_secs(1) && p.duration <= Duration::from_secs(3)
                );
                assert_eq!(p.warmup, Duration::ZERO);
            }
        }
    }
}
