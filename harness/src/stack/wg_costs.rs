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

/// Packets per timed round, and rounds. The fastest round is kept: it is the one the
/// machine disturbed least (interrupts, other processes), as the cost itself is fixed.
const PACKETS: usize = 2000;
const ROUNDS: usize = 15;

/// The library an in-process underlay runs on, if `underlay` is one.
pub fn library_of(underlay: UnderlayKind) -> Option<WgLibrary> {
    match underlay {
        UnderlayKind::WgInproc => Some(WgLibrary::Boringtun),
        UnderlayKind::WgGotatun => Some(WgLibrary::Gotatun),
        _ => None,
    }
}

fn least(v: Vec<f64>) -> f64 {
    v.into_iter().fold(f64::INFINITY, f64::min)
}

/// Seal and open cost of one full tunnel packet, ns each (the fastest round).
fn packet_costs(lib: WgLibrary) -> Result<(f64, f64), String> {
    let mut pair = WgPair::new(lib);
    pair.handshake().map_err(|e| e.to_string())?;
    let packet = ip_packet(TUNNEL_MTU);
    // Each packet seals into its own slot of one buffer, allocated outside the timing.
    let stride = (TUNNEL_MTU + WG_OVERHEAD).max(HANDSHAKE_ROOM);
    let mut sealed = vec![0u8; PACKETS * stride];
    let mut lens = vec![0usize; PACKETS];
    let mut scratch = vec![0u8; 65_536];
    let (mut seal, mut open) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for (slot, len) in sealed.chunks_mut(stride).zip(lens.iter_mut()) {
            *len = pair
                .initiator
                .seal(&packet, slot, &mut |_| {})?
                .ok_or("the session went away")?;
        }
        seal.push(t.elapsed().as_nanos() as f64 / PACKETS as f64);
        let mut opened = 0;
        let t = Instant::now();
        for (slot, len) in sealed.chunks(stride).zip(&lens) {
            pair.responder.open(
                WG_INITIATOR_ADDR,
                &slot[..*len],
                &mut scratch,
                &mut |_| {},
                &mut |_| opened += 1,
            );
        }
        open.push(t.elapsed().as_nanos() as f64 / PACKETS as f64);
        if opened != PACKETS {
            return Err(format!("{lib} opened {opened} of {PACKETS} packets"));
        }
    }
    Ok((least(seal), least(open)))
}

/// The costs of the libraries `stacks` use in process; `None` when they use none.
pub fn measure(stacks: &[String]) -> Result<Option<WgCryptoCosts>, String> {
    let mut libraries = vec![];
    for id in stacks.iter().filter_map(|s| StackId::parse(s)) {
        let Some(lib) = library_of(id.underlay) else {
            continue;
        };
        let suffix = id.underlay.suffix().to_string();
        if libraries
            .iter()
            .any(|l: &WgLibraryCost| l.underlay == suffix)
        {
            continue;
        }
        let (seal_ns, open_ns) = packet_costs(lib)?;
        libraries.push(WgLibraryCost {
            underlay: suffix,
            library: lib.describe(),
            seal_ns,
            open_ns,
            ns_per_quic_byte: (seal_ns + open_ns) / (TUNNEL_MTU - INNER_HEADER) as f64,
        });
    }
    if libraries.is_empty() {
        return Ok(None);
    }
    Ok(Some(WgCryptoCosts {
        method: format!(
            "seal then open {PACKETS} packets of {TUNNEL_MTU} B (a full tunnel MTU) through the stacks' own tunnel interface on one core, the fastest of {ROUNDS} rounds, in the controller before any stack runs"
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
