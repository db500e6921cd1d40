//! The probe's sockets: made inside a node's namespace (a socket stays in the namespace it
//! was made in, whichever thread uses it later), stamped by the kernel on arrival, so that
//! the probe's own threads waking late cannot add delay or jitter to what it measures.

use std::{
    io,
    mem::MaybeUninit,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

/// Where the probe finds each node.
pub struct NodeAddr {
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// Runs `f` on a thread inside namespace `netns`; sockets it makes stay in that namespace.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns on this thread only, with a namespace fd we hold open.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("probe thread panicked")))
    })
}

fn set_int(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to an int that lives for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A UDP socket bound in `node`'s namespace to `port` (0: any), with kernel receive
/// timestamps, a drop counter, and a receive buffer of `rcvbuf` bytes where the kernel
/// allows it (forced past `rmem_max` when the process may).
pub fn bind_in(node: &NodeAddr, port: u16, rcvbuf: usize) -> io::Result<UdpSocket> {
    let ip = node.ip;
    in_netns(&node.netns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        let fd = s.as_raw_fd();
        if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf as i32).is_err() {
            s.set_recv_buffer_size(rcvbuf)?;
        }
        set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
        set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)?;
        s.bind(&SocketAddrV4::new(ip, port).into())?;
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(s)
    })
}

/// Lets the kernel cut each `send` of up to 64 KiB into datagrams of `segment` bytes (UDP
/// GSO): one system call for dozens of datagrams. Fails where the kernel has no UDP GSO.
pub fn enable_gso(sock: &UdpSocket, segment: u16) -> io::Result<()> {
    const UDP_SEGMENT: i32 = 103;
    set_int(
        sock.as_raw_fd(),
        libc::IPPROTO_UDP,
        UDP_SEGMENT,
        segment as i32,
    )
}

/// `CLOCK_REALTIME` in ns: the clock the kernel stamps arrivals with. Every namespace shares
/// it, so a sender's stamp and a receiver's kernel stamp give one-way delay directly.
pub fn realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// One datagram as the kernel received it.
#[derive(Debug, Clone, Copy)]
pub struct Stamped {
    pub len: usize,
    /// When the kernel received it (`CLOCK_REALTIME`, ns).
    pub at_ns: i64,
    /// The socket's count of datagrams dropped for want of buffer, so far.
    pub dropped: u32,
}

/// Receives one datagram with its kernel arrival time. `Ok(None)` when none came within the
/// socket's read timeout (or none is waiting, on a non-blocking socket).
pub fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<Stamped>> {
    let mut control = [MaybeUninit::<u64>::uninit(); 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: a valid fd and a msghdr whose buffers are live.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Ok(None)
            }
            _ => Err(e),
        };
    }
    let mut out = Stamped {
        len: n as usize,
        at_ns: 0,
        dropped: 0,
    };
    // SAFETY: the CMSG macros walk the control buffer the kernel filled in, within
    // msg_controllen; each payload is read unaligned at its stated type.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    let ts = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                    out.at_ns = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
                }
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                    out.dropped = std::ptr::read_unaligned(data.cast::<u32>());
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if out.at_ns == 0 {
        // No stamp (should not happen with SO_TIMESTAMPNS): the time of reading will do.
        out.at_ns = realtime_ns();
    }
    Ok(Some(out))
}

/// Waits until one of `socks` is readable or `timeout` passes; returns the readable ones.
pub fn poll_readable(socks: &[UdpSocket], timeout: Duration) -> io::Result<Vec<usize>> {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: fds is a live array of pollfd of the stated length.
    let rc = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as i32,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(vec![])
        } else {
            Err(e)
        };
    }
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, f)| f.revents & libc::POLLIN != 0)
        .map(|(i, _)| i)
        .collect())
}
