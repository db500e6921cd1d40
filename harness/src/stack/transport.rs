//! The QUIC transport settings every stack shares, so stacks differ only in crypto and
//! underlay.

use std::{net::SocketAddr, os::fd::AsRawFd, sync::Arc};

pub use stackbench_core::transport::{TransportPlan, MAX_UNI_STREAMS};

/// Transport settings with the scenario defaults; `max_udp_payload` caps datagrams to fit a
/// tunnel's MTU.
pub fn transport_config(max_udp_payload: Option<u16>) -> Arc<quinn::TransportConfig> {
    transport_config_with(max_udp_payload, &TransportPlan::default())
}

/// [`transport_config`] with a scenario's `[transport]` settings.
pub fn transport_config_with(
    max_udp_payload: Option<u16>,
    plan: &TransportPlan,
) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_uni_streams(plan.stream_credit.into())
        .initial_rtt(plan.initial_rtt)
        .max_concurrent_bidi_streams(0u32.into())
        // Validation bounds the timeout far below what a VarInt of ms can hold.
        .max_idle_timeout(quinn::IdleTimeout::try_from(plan.idle_timeout).ok())
        .keep_alive_interval(Some(plan.keep_alive))
        .send_fairness(plan.send_fairness);
    if let Some(p) = max_udp_payload {
        t.initial_mtu(p).mtu_discovery_config(None);
    }
    Arc::new(t)
}

/// Socket buffer size every stack asks for. The kernel default (~208 KiB) overflows when a
/// receiver is briefly descheduled during a burst, which turns into losses and latency tails
/// that belong to the host's tuning rather than to the stack.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr` with [`SOCKET_BUFFER`]-sized buffers (forced past
/// net.core.rmem_max where we hold CAP_NET_ADMIN), and the effective receive buffer size.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, usize)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int(&s, force, SOCKET_BUFFER).is_err() {
            set_int(&s, plain, SOCKET_BUFFER)?;
        }
    }
    s.bind(&addr.into())?;
    let effective = s.recv_buffer_size()?;
    Ok((s.into(), effective))
}

/// Sets the `SOL_SOCKET` integer option `opt` (what socket2 has no setter for, such as
/// `SO_RCVBUFFORCE`).
pub(crate) fn set_int(s: &socket2::Socket, opt: libc::c_int, value: usize) -> std::io::Result<()> {
    let v = value as libc::c_int;
    // SAFETY: valid socket fd, pointer to an owned c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
