//! The Linux kernel's SCTP socket API as stackbench uses it (RFC 6458 as `linux/sctp.h`
//! defines it): one-to-one (`SOCK_STREAM`) sockets, the options set on them, and messages
//! sent and received with their stream in `SCTP_SNDINFO` / `SCTP_RCVINFO`.

use socket2::{Domain, Protocol, Socket, Type};
use std::{io, mem, net::SocketAddr, os::fd::AsRawFd};

const IPPROTO_SCTP: libc::c_int = 132;
const SOL_SCTP: libc::c_int = 132;
const SCTP_RTOINFO: libc::c_int = 0;
const SCTP_INITMSG: libc::c_int = 2;
const SCTP_NODELAY: libc::c_int = 3;
const SCTP_STATUS: libc::c_int = 14;
const SCTP_FRAGMENT_INTERLEAVE: libc::c_int = 18;
const SCTP_RECVRCVINFO: libc::c_int = 32;
const SCTP_GET_ASSOC_STATS: libc::c_int = 112;
const SCTP_STREAM_SCHEDULER: libc::c_int = 123;
const SCTP_STREAM_SCHEDULER_VALUE: libc::c_int = 124;
const SCTP_INTERLEAVING_SUPPORTED: libc::c_int = 125;
const SCTP_EVENT: libc::c_int = 127;
/// `enum sctp_sched_type`: strict priority by stream value, lowest value first.
const SCTP_SS_PRIO: u32 = 1;
/// cmsg types (`enum sctp_cmsg_type`).
const SCTP_SNDINFO: libc::c_int = 2;
const SCTP_RCVINFO: libc::c_int = 3;
/// `SCTP_SN_TYPE_BASE + 1`: association state changes.
pub const SCTP_ASSOC_CHANGE: u16 = 0x8001;
/// `sac_state` values.
pub const SCTP_COMM_UP: u16 = 0;
pub const SCTP_COMM_LOST: u16 = 1;
pub const SCTP_SHUTDOWN_COMP: u16 = 3;
pub const SCTP_CANT_STR_ASSOC: u16 = 4;
/// Where the per-network-namespace switch for I-DATA (RFC 8260) lives.
pub const INTERLEAVE_SYSCTL: &str = "/proc/sys/net/sctp/intl_enable";

#[repr(C)]
struct InitMsg {
    num_ostreams: u16,
    max_instreams: u16,
    max_attempts: u16,
    max_init_timeo: u16,
}

#[repr(C)]
struct RtoInfo {
    assoc_id: i32,
    initial: u32,
    max: u32,
    min: u32,
}

#[repr(C)]
struct AssocValue {
    assoc_id: i32,
    value: u32,
}

#[repr(C)]
struct StreamValue {
    assoc_id: i32,
    stream_id: u16,
    stream_value: u16,
}

#[repr(C)]
struct Event {
    assoc_id: i32,
    kind: u16,
    on: u8,
}

#[repr(C)]
struct SndInfo {
    sid: u16,
    flags: u16,
    ppid: u32,
    context: u32,
    assoc_id: i32,
}

#[repr(C)]
#[allow(dead_code)] // the C layout, read in part
struct RcvInfo {
    sid: u16,
    ssn: u16,
    flags: u16,
    ppid: u32,
    tsn: u32,
    cumtsn: u32,
    context: u32,
    assoc_id: i32,
}

/// `struct sctp_status`; `primary` is the packed `struct sctp_paddrinfo` (152 bytes, 4-aligned).
#[repr(C)]
#[allow(dead_code)] // the C layout, read in part
struct Status {
    assoc_id: i32,
    state: i32,
    rwnd: u32,
    unackdata: u16,
    penddata: u16,
    instrms: u16,
    outstrms: u16,
    frag_point: u32,
    primary: [u32; 38],
}
/// `spinfo_srtt`'s index in `Status::primary` (after the assoc id, a sockaddr_storage, the
/// state and the cwnd).
const PRIMARY_SRTT: usize = (4 + 128 + 4 + 4) / 4;

#[repr(C)]
#[allow(dead_code)] // the C layout, read in part
struct AssocStats {
    assoc_id: i32,
    obs_rto_ipaddr: libc::sockaddr_storage,
    maxrto: u64,
    isacks: u64,
    osacks: u64,
    opackets: u64,
    ipackets: u64,
    rtxchunks: u64,
    outofseqtsns: u64,
    idupchunks: u64,
    gapcnt: u64,
    ouodchunks: u64,
    iuodchunks: u64,
    oodchunks: u64,
    iodchunks: u64,
    octrlchunks: u64,
    ictrlchunks: u64,
}

/// What the association reports of itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssocStatus {
    /// DATA chunks sent and not yet acknowledged, and queued and not yet sent.
    pub unacked: u16,
    pub pending: u16,
    pub srtt_ms: u32,
}

/// Packets the association sent and received.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssocPackets {
    pub sent: u64,
    pub received: u64,
}

/// One `recvmsg`: a piece of a message (the whole of it when `end`), or a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    Data {
        stream: u16,
        len: usize,
        end: bool,
    },
    Notification {
        kind: u16,
        state: u16,
    },
    /// The peer shut the association down and everything has been read.
    Eof,
}

/// What every association is given: streams, timers, I-DATA and the priority scheduler.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub streams: u16,
    /// Retransmission timeout, ms: initial, min, max.
    pub rto_ms: (u32, u32, u32),
    /// Send and receive buffer, bytes.
    pub buffer: usize,
}

fn setopt<T>(s: &Socket, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` is a live, initialized `T` whose layout is the option's C struct, and
    // the length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            SOL_SCTP,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

fn getopt<T>(s: &Socket, name: libc::c_int, value: &mut T, what: &str) -> io::Result<()> {
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live `T` of `len` bytes (plain integers, valid for any bits); the
    // kernel writes at most `len` of them.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            SOL_SCTP,
            name,
            (value as *mut T).cast(),
            &mut len,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// A non-blocking one-to-one SCTP socket for `addr`'s family, configured with `o`.
pub fn socket(addr: &SocketAddr, o: &Options) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::from(IPPROTO_SCTP)),
    )?;
    s.set_nonblocking(true)?;
    s.set_reuse_address(true)?;
    // Root may exceed net.core.[rw]mem_max; otherwise the kernel caps the request.
    if set_buffer_force(&s, o.buffer).is_err() {
        let _ = s.set_send_buffer_size(o.buffer);
        let _ = s.set_recv_buffer_size(o.buffer);
    }
    setopt(
        &s,
        SCTP_INITMSG,
        &InitMsg {
            num_ostreams: o.streams,
            max_instreams: o.streams,
            max_attempts: 0,
            max_init_timeo: 0,
        },
        "SCTP_INITMSG",
    )?;
    setopt(&s, SCTP_NODELAY, &1i32, "SCTP_NODELAY")?;
    let (initial, min, max) = o.rto_ms;
    setopt(
        &s,
        SCTP_RTOINFO,
        &RtoInfo {
            assoc_id: 0,
            initial,
            max,
            min,
        },
        "SCTP_RTOINFO",
    )?;
    // I-DATA needs full fragment interleave on the receiving side first (RFC 8260 and
    // linux/net/sctp/socket.c), and the namespace's net.sctp.intl_enable.
    setopt(
        &s,
        SCTP_FRAGMENT_INTERLEAVE,
        &2i32,
        "SCTP_FRAGMENT_INTERLEAVE",
    )?;
    setopt(
        &s,
        SCTP_INTERLEAVING_SUPPORTED,
        &AssocValue {
            assoc_id: 0,
            value: 1,
        },
        "SCTP_INTERLEAVING_SUPPORTED (needs net.sctp.intl_enable = 1)",
    )?;
    setopt(&s, SCTP_RECVRCVINFO, &1i32, "SCTP_RECVRCVINFO")?;
    subscribe(&s)?;
    set_scheduler(&s)?;
    Ok(s)
}

fn set_buffer_force(s: &Socket, bytes: usize) -> io::Result<()> {
    let bytes = bytes.min(i32::MAX as usize);
    crate::stack::transport::set_int(s, libc::SO_SNDBUFFORCE, bytes)?;
    crate::stack::transport::set_int(s, libc::SO_RCVBUFFORCE, bytes)
}

/// An accepted socket: non-blocking, with what `socket` sets for receiving and scheduling
/// (the kernel copies a listener's options to the sockets it accepts; these say so anyway).
pub fn configure_accepted(s: &Socket) -> io::Result<()> {
    s.set_nonblocking(true)?;
    setopt(
        s,
        SCTP_FRAGMENT_INTERLEAVE,
        &2i32,
        "SCTP_FRAGMENT_INTERLEAVE",
    )?;
    setopt(s, SCTP_RECVRCVINFO, &1i32, "SCTP_RECVRCVINFO")?;
    subscribe(s)?;
    set_scheduler(s)
}

/// Association changes (up, lost, shut down) arrive as notifications among the data.
fn subscribe(s: &Socket) -> io::Result<()> {
    setopt(
        s,
        SCTP_EVENT,
        &Event {
            assoc_id: 0,
            kind: SCTP_ASSOC_CHANGE,
            on: 1,
        },
        "SCTP_EVENT(SCTP_ASSOC_CHANGE)",
    )
}

/// Strict priority between streams (`SCTP_SS_PRIO`): on a socket before it connects, for its
/// future association; on an accepted one, for its own.
fn set_scheduler(s: &Socket) -> io::Result<()> {
    setopt(
        s,
        SCTP_STREAM_SCHEDULER,
        &AssocValue {
            assoc_id: 0,
            value: SCTP_SS_PRIO,
        },
        "SCTP_STREAM_SCHEDULER(SCTP_SS_PRIO)",
    )
}

/// Gives `stream` the scheduler value `value` (lower is sent first).
pub fn set_stream_value(s: &Socket, stream: u16, value: u16) -> io::Result<()> {
    setopt(
        s,
        SCTP_STREAM_SCHEDULER_VALUE,
        &StreamValue {
            assoc_id: 0,
            stream_id: stream,
            stream_value: value,
        },
        "SCTP_STREAM_SCHEDULER_VALUE",
    )
}

pub fn status(s: &Socket) -> io::Result<AssocStatus> {
    // SAFETY: `Status` is plain integers; all-zero is a valid value.
    let mut st: Status = unsafe { mem::zeroed() };
    getopt(s, SCTP_STATUS, &mut st, "SCTP_STATUS")?;
    Ok(AssocStatus {
        unacked: st.unackdata,
        pending: st.penddata,
        srtt_ms: st.primary[PRIMARY_SRTT],
    })
}

pub fn packets(s: &Socket) -> io::Result<AssocPackets> {
    // SAFETY: `AssocStats` is plain integers and a sockaddr_storage; all-zero is valid.
    let mut st: AssocStats = unsafe { mem::zeroed() };
    getopt(s, SCTP_GET_ASSOC_STATS, &mut st, "SCTP_GET_ASSOC_STATS")?;
    Ok(AssocPackets {
        sent: st.opackets,
        received: st.ipackets,
    })
}

/// Space for one cmsg carrying `T`, 8-aligned.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Sends one message on `stream`: `head`, then `len - head.len()` bytes of `zeros`.
/// All or nothing: `WouldBlock` while the send buffer is full.
pub fn send(s: &Socket, stream: u16, head: &[u8], zeros: &[u8]) -> io::Result<()> {
    let mut iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: zeros.as_ptr() as *mut libc::c_void,
            iov_len: zeros.len(),
        },
    ];
    let info = SndInfo {
        sid: stream,
        flags: 0,
        ppid: 0,
        context: 0,
        assoc_id: 0,
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: CMSG_SPACE of a small constant size.
    let space = unsafe { libc::CMSG_SPACE(mem::size_of::<SndInfo>() as u32) } as usize;
    // SAFETY: an all-zero msghdr is valid; its pointers are set below to live buffers.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if zeros.is_empty() { 1 } else { 2 };
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: `msg` points at `cbuf`, which holds `space` (<= 64) bytes, so the first cmsg
    // header and its data fit; the data is written unaligned.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = IPPROTO_SCTP;
        (*c).cmsg_type = SCTP_SNDINFO;
        (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<SndInfo>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<SndInfo>(), info);
    }
    // SAFETY: `msg` and everything it points at live across the call.
    let r = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives the next piece into `buf`.
pub fn recv(s: &Socket, buf: &mut [u8]) -> io::Result<Piece> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is valid; its pointers are set below to live buffers.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len();
    // SAFETY: `msg` and the buffers it points at live across the call.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n == 0 {
        return Ok(Piece::Eof);
    }
    let end = msg.msg_flags & libc::MSG_EOR != 0;
    if msg.msg_flags & MSG_NOTIFICATION != 0 {
        // struct sctp_assoc_change: type u16, flags u16, length u32, state u16, ...
        let kind = u16::from_ne_bytes([buf[0], buf[1]]);
        let state = if n >= 10 {
            u16::from_ne_bytes([buf[8], buf[9]])
        } else {
            u16::MAX
        };
        return Ok(Piece::Notification { kind, state });
    }
    let mut stream = None;
    // SAFETY: the kernel filled `msg_controllen` bytes of `cbuf` with well-formed cmsgs;
    // CMSG_FIRSTHDR/NXTHDR stay inside them, and data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == IPPROTO_SCTP && (*c).cmsg_type == SCTP_RCVINFO {
                let info: RcvInfo = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stream = Some(info.sid);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let stream = stream.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a message arrived without its SCTP_RCVINFO (stream)",
        )
    })?;
    Ok(Piece::Data {
        stream,
        len: n,
        end,
    })
}

/// `MSG_NOTIFICATION` (linux/sctp.h; the same bit as MSG_MORE).
const MSG_NOTIFICATION: libc::c_int = 0x8000;

/// Turns on I-DATA for the calling thread's network namespace.
pub fn enable_interleaving() -> io::Result<()> {
    match std::fs::read_to_string(INTERLEAVE_SYSCTL) {
        Ok(v) if v.trim() == "1" => Ok(()),
        _ => std::fs::write(INTERLEAVE_SYSCTL, "1").map_err(|e| {
            io::Error::new(e.kind(), format!("writing 1 to {INTERLEAVE_SYSCTL}: {e}"))
        }),
    }
}
