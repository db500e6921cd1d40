//! Probing paths for one-way delay, jitter, loss and reordering: one thread sends every
//! path's probes on one schedule, one thread receives on every node's socket, and the
//! kernel stamps each arrival. Two threads whatever the network's size, so that on a
//! 2-core machine the probe does not compete with itself (one thread per node made 16
//! nodes look jittery and 32 look slow).

use super::net::{poll_readable, realtime_ns, recv_stamped};
use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

pub const PATH_PORT: u16 = 4501;
const PROBE_LEN: usize = 64;

/// One received probe.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub seq: u32,
    pub delay_ns: i64,
}

/// Sends `count` probes on each of `pairs` (`(from, to)` node indices, `from == to` for a
/// loopback path inside one namespace), one every `gap` per pair, the pairs spread evenly
/// over the gap; returns each pair's arrivals in arrival order.
pub fn probe_paths(
    socks: &[UdpSocket],
    ips: &[Ipv4Addr],
    pairs: &[(u32, u32)],
    count: u32,
    gap: Duration,
    drain: Duration,
) -> io::Result<Vec<Vec<Arrival>>> {
    for s in socks {
        s.set_nonblocking(true)?;
    }
    let send = |pair: usize, seq: u32| -> io::Result<()> {
        let (from, to) = pairs[pair];
        let mut pkt = [0u8; PROBE_LEN];
        pkt[0..4].copy_from_slice(&(pair as u32).to_le_bytes());
        pkt[4..8].copy_from_slice(&seq.to_le_bytes());
        let dest = SocketAddrV4::new(ips[to as usize], PATH_PORT);
        loop {
            pkt[8..16].copy_from_slice(&realtime_ns().to_le_bytes());
            match socks[from as usize].send_to(&pkt, dest) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => return Err(e),
            }
        }
    };
    // One unmeasured probe per pair first, so that address resolution is done before the
    // measured ones.
    for p in 0..pairs.len() {
        send(p, u32::MAX)?;
    }
    std::thread::sleep(Duration::from_millis(50));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let receiver = s.spawn(|| -> io::Result<Vec<Vec<Arrival>>> {
            let mut got: Vec<Vec<Arrival>> = vec![Vec::new(); pairs.len()];
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                for i in poll_readable(socks, Duration::from_millis(20))? {
                    while let Some(d) = recv_stamped(&socks[i], &mut buf)? {
                        if d.len < 16 {
                            continue;
                        }
                        let word = |k: usize| {
                            u32::from_le_bytes([buf[k], buf[k + 1], buf[k + 2], buf[k + 3]])
                        };
                        let (pair, seq) = (word(0) as usize, word(4));
                        let sent = i64::from_le_bytes(buf[8..16].try_into().unwrap_or([0; 8]));
                        if pair < pairs.len() && pairs[pair].1 as usize == i && seq < count {
                            got[pair].push(Arrival {
                                seq,
                                delay_ns: d.at_ns - sent,
                            });
                        }
                    }
                }
            }
            Ok(got)
        });
        let total = count as u64 * pairs.len() as u64;
        let step = gap.as_nanos() as u64 / pairs.len().max(1) as u64;
        let start = realtime_ns() + 1_000_000;
        let mut result = Ok(());
        for k in 0..total {
            let due = start + (k * step) as i64;
            let now = realtime_ns();
            if due > now {
                std::thread::sleep(Duration::from_nanos((due - now) as u64));
            }
            if let Err(e) = send(
                (k % pairs.len() as u64) as usize,
                (k / pairs.len() as u64) as u32,
            ) {
                result = Err(e);
                break;
            }
        }
        std::thread::sleep(drain);
        stop.store(true, Ordering::Relaxed);
        let got = receiver
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("probe receiver panicked")));
        result.and(got)
    })
}
