//! WireGuard's crypto cost per byte, measured at the start of a run that has in-process
//! WireGuard stacks: the `w` of [`stackbench_core::ceiling`]. Same code path as the
//! stacks and the `wg/` benchmarks (the [`WgTunnel`] interface), one core, no I/O.

use super::{
    memory::{ip_packet, WgPair, WG_INITIATOR_ADDR},
    wg_socket::{INNER_HEADER, TUNNEL_MTU, WG_OVERHEAD},
    wg_tunnel::{WgLibrary, HANDSHAKE_ROOM},
    StackId, UnderlayKind,
};
use stackbench_core::schema::{WgCryptoCosts, WgLibraryCost};
use std::time::Instant;

/// Packets per timed round, rounds per pass, and passes. The fastest round is kept: it is
/// the one the machine disturbed least (interrupts, other processes), as the cost itself is
/// fixed. Within a pass each library runs its rounds back to back (the first warms its
/// caches); the passes are spread over about a third of a second, so that a disturbance
/// shorter than that (the run's own setup winding down, a neighbour's burst) cannot slow
/// every round of one library: one such burst once read boringtun 45% dearer than it is.
const PACKETS: usize = 2000;
const ROUNDS: usize = 5;
const PASSES: usize = 3;
const PASS_GAP: std::time::Duration = std::time::Duration::from_millis(150);

/// The library an in-process underlay runs on, if `underlay` is one.
pub fn library_of(underlay: UnderlayKind) -> Option<WgLibrary> {
    match underlay {
        UnderlayKind::WgInproc => Some(WgLibrary::Boringtun),
        UnderlayKind::WgGotatun => Some(WgLibrary::Gotatun),
        _ => None,
    }
}

/// One library's tunnel pair and buffers, timed round by round.
struct CostProbe {
    lib: WgLibrary,
    pair: WgPair,
    packet: Vec<u8>,
    stride: usize,
    sealed: Vec<u8>,
    lens: Vec<usize>,
    scratch: Vec<u8>,
    /// The fastest seal and open so far, ns per packet.
    best: (f64, f64),
}

impl CostProbe {
    fn new(lib: WgLibrary, packets: usize) -> Result<Self, String> {
        let mut pair = WgPair::new(lib);
        pair.handshake().map_err(|e| e.to_string())?;
        // Each packet seals into its own slot of one buffer, allocated outside the timing.
        let stride = (TUNNEL_MTU + WG_OVERHEAD).max(HANDSHAKE_ROOM);
        Ok(Self {
            lib,
            pair,
            packet: ip_packet(TUNNEL_MTU),
            stride,
            sealed: vec![0u8; packets * stride],
            lens: vec![0usize; packets],
            scratch: vec![0u8; 65_536],
            best: (f64::INFINITY, f64::INFINITY),
        })
    }

    /// Seals every packet, then opens them all, timing each half.
    fn round(&mut self) -> Result<(), String> {
        let packets = self.lens.len();
        let t = Instant::now();
        for (slot, len) in self
            .sealed
            .chunks_mut(self.stride)
            .zip(self.lens.iter_mut())
        {
            *len = self
                .pair
                .initiator
                .seal(&self.packet, slot, &mut |_| {})?
                .ok_or("the session went away")?;
        }
        let seal = t.elapsed().as_nanos() as f64 / packets as f64;
        let mut opened = 0;
        let t = Instant::now();
        for (slot, len) in self.sealed.chunks(self.stride).zip(&self.lens) {
            self.pair.responder.open(
                WG_INITIATOR_ADDR,
                &slot[..*len],
                &mut self.scratch,
                &mut |_| {},
                &mut |_| opened += 1,
            );
        }
        let open = t.elapsed().as_nanos() as f64 / packets as f64;
        if opened != packets {
            return Err(format!("{} opened {opened} of {packets} packets", self.lib));
        }
        self.best = (self.best.0.min(seal), self.best.1.min(open));
        Ok(())
    }
}

/// The costs of the libraries `stacks` use in process; `None` when they use none.
pub fn measure(stacks: &[String]) -> Result<Option<WgCryptoCosts>, String> {
    let mut probes: Vec<(String, CostProbe)> = vec![];
    for id in stacks.iter().filter_map(|s| StackId::parse(s)) {
        let Some(lib) = library_of(id.underlay) else {
            continue;
        };
        let suffix = id.underlay.suffix().to_string();
        if !probes.iter().any(|(u, _)| *u == suffix) {
            probes.push((suffix, CostProbe::new(lib, PACKETS)?));
        }
    }
    if probes.is_empty() {
        return Ok(None);
    }
    for pass in 0..PASSES {
        if pass > 0 {
            std::thread::sleep(PASS_GAP);
        }
        for (_, probe) in &mut probes {
            for _ in 0..ROUNDS {
                probe.round()?;
            }
        }
    }
    let libraries = probes
        .into_iter()
        .map(|(underlay, p)| {
            let (seal_ns, open_ns) = p.best;
            WgLibraryCost {
                underlay,
                library: p.lib.describe(),
                seal_ns,
                open_ns,
                ns_per_quic_byte: (seal_ns + open_ns) / (TUNNEL_MTU - INNER_HEADER) as f64,
            }
        })
        .collect();
    Ok(Some(WgCryptoCosts {
        method: format!(
            "seal then open {PACKETS} packets of {TUNNEL_MTU} B (a full tunnel MTU) through the stacks' own tunnel interface on one core, the fastest of {PASSES} passes {} ms apart of {ROUNDS} rounds per library, in the controller before any stack runs",
            PASS_GAP.as_millis()
        ),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        inner_packet_bytes: TUNNEL_MTU as u32,
        quic_bytes_per_packet: (TUNNEL_MTU - INNER_HEADER) as u32,
        libraries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_in_process_stacks_are_measured_once_per_library() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(measure(&names(&["quic-tls", "quic-tls+wg-go"]))
            .expect("measures")
            .is_none());
        let c = measure(&names(&[
            "quic-tls+wg-inproc",
            "quic-null+wg-inproc",
            "quic-null+wg-gotatun",
        ]))
        .expect("measures")
        .expect("in-process stacks");
        eprintln!("{c:#?}");
        let under: Vec<_> = c.libraries.iter().map(|l| l.underlay.as_str()).collect();
        assert_eq!(under, ["+wg-inproc", "+wg-gotatun"]);
        for l in &c.libraries {
            assert!(l.seal_ns > 0.0 && l.open_ns > 0.0, "{l:?}");
            let per_byte = (l.seal_ns + l.open_ns) / 1392.0;
            assert!((l.ns_per_quic_byte - per_byte).abs() < 1e-9, "{l:?}");
        }
    }
}
