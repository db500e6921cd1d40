//! One process's usrsctp, driven without threads of its own: the caller feeds it packets
//! ([`Link::input`]), takes the packets it sends ([`Link::take_output`]) and advances its
//! timers ([`tick`]). Each link is one lower-layer path (a UDP socket or an in-process
//! WireGuard tunnel to one peer); the SCTP ports on it tell its associations apart.

use super::ffi::{self, RawSocket, Usrsctp};
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};

/// Why an SCTP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SctpError {
    #[error("SCTP is unavailable: {0}")]
    Unavailable(String),
    #[error("the SCTP handshake did not complete: {0}")]
    Handshake(String),
    #[error("the SCTP association is closed: {0}")]
    Closed(&'static str),
    #[error("more than {0} priorities: each is a stream of its own")]
    Lanes(u16),
    #[error("usrsctp {call} failed: {source}")]
    Call {
        call: &'static str,
        source: std::io::Error,
    },
}

/// How an association picks the next stream to send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Strict priority by stream (`SCTP_SS_PRIORITY`); equal priorities share round-robin.
    Priority,
    /// Every stream in turn (`SCTP_SS_ROUND_ROBIN`).
    RoundRobin,
    /// Messages in the order they were sent, whatever their stream (`SCTP_SS_FIRST_COME`).
    FirstCome,
}

/// Send and receive buffer of every association: room for a few 1 MiB objects in flight.
const BUFFER_BYTES: u32 = 8 << 20;
/// A message is handed up in pieces of at least this much as it arrives, instead of being
/// held until whole (the receiver reassembles objects itself, and sees progress).
const PARTIAL_DELIVERY_BYTES: u32 = 16 << 10;

static USRSCTP: OnceLock<Result<Usrsctp, String>> = OnceLock::new();
/// Packets usrsctp has sent, per link (the link's address as usrsctp knows it).
static OUTPUT: LazyLock<Mutex<HashMap<usize, VecDeque<Vec<u8>>>>> = LazyLock::new(Default::default);

fn output_queue() -> std::sync::MutexGuard<'static, HashMap<usize, VecDeque<Vec<u8>>>> {
    OUTPUT.lock().unwrap_or_else(PoisonError::into_inner)
}

unsafe extern "C" fn output(
    link: *mut c_void,
    packet: *mut c_void,
    len: usize,
    _: u8,
    _: u8,
) -> c_int {
    // SAFETY: usrsctp passes a packet of `len` bytes, valid for the call.
    let bytes = unsafe { std::slice::from_raw_parts(packet as *const u8, len) }.to_vec();
    output_queue()
        .entry(link as usize)
        .or_default()
        .push_back(bytes);
    0
}

/// The process's usrsctp, loaded and started on first use (no threads, no UDP of its own,
/// no ECN, I-DATA's fragment interleaving on by default).
pub fn usrsctp() -> Result<&'static Usrsctp, SctpError> {
    USRSCTP
        .get_or_init(|| {
            let u = Usrsctp::load()?;
            // SAFETY: called once (OnceLock); port 0 means usrsctp opens no UDP socket.
            unsafe {
                (u.init_nothreads)(0, output, std::ptr::null());
                (u.sysctl_set_ecn_enable)(0);
                (u.sysctl_set_sendspace)(BUFFER_BYTES);
                (u.sysctl_set_recvspace)(BUFFER_BYTES);
                (u.sysctl_set_default_frag_interleave)(ffi::SCTP_FRAG_LEVEL_2 as u32);
            }
            Ok(u)
        })
        .as_ref()
        .map_err(|e| SctpError::Unavailable(e.clone()))
}

/// Advances usrsctp's timers by `elapsed_ms` (retransmission, SACK delay, heartbeats).
pub fn tick(elapsed_ms: u32) -> Result<(), SctpError> {
    let u = usrsctp()?;
    // SAFETY: usrsctp is initialised.
    unsafe { (u.handle_timers)(elapsed_ms) };
    Ok(())
}

fn check(call: &'static str, rc: c_int) -> Result<(), SctpError> {
    if rc < 0 {
        return Err(SctpError::Call {
            call,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The failed call's error, or `Ok(None)` when it only would have blocked.
fn unless_would_block<T>(call: &'static str) -> Result<Option<T>, SctpError> {
    let source = std::io::Error::last_os_error();
    match source.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(None),
        _ => Err(SctpError::Call { call, source }),
    }
}

/// One lower-layer path, registered with usrsctp; dropped, it is deregistered.
pub struct Link {
    /// Its heap address is the link's identity in usrsctp.
    id: Box<u8>,
}

impl Link {
    pub fn new() -> Result<Self, SctpError> {
        let u = usrsctp()?;
        let link = Self { id: Box::new(0) };
        // SAFETY: the address stays valid until Drop deregisters it.
        unsafe { (u.register_address)(link.addr()) };
        Ok(link)
    }

    fn addr(&self) -> *mut c_void {
        &*self.id as *const u8 as *mut c_void
    }

    fn sockaddr(&self, port: u16) -> ffi::SockaddrConn {
        ffi::SockaddrConn {
            sconn_family: ffi::AF_CONN as u16,
            sconn_port: port.to_be(),
            sconn_addr: self.addr(),
        }
    }

    /// Hands usrsctp a packet that arrived on this link.
    pub fn input(&self, packet: &[u8]) -> Result<(), SctpError> {
        let u = usrsctp()?;
        // SAFETY: the link is registered; usrsctp copies the packet.
        unsafe {
            (u.conninput)(
                self.addr(),
                packet.as_ptr() as *const c_void,
                packet.len(),
                0,
            )
        };
        Ok(())
    }

    /// The packets usrsctp has sent on this link since the last call.
    pub fn take_output(&self) -> VecDeque<Vec<u8>> {
        output_queue()
            .get_mut(&(self.addr() as usize))
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Ok(u) = usrsctp() {
            // SAFETY: registered in new().
            unsafe { (u.deregister_address)(self.addr()) };
        }
        output_queue().remove(&(self.addr() as usize));
    }
}

/// A message, or part of one, that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub stream: u16,
    pub len: usize,
    /// The last part of its message.
    pub end_of_message: bool,
}

/// What a read found on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    Data(Received),
    /// The association changed state (`SCTP_COMM_UP`, `SCTP_COMM_LOST`, …).
    Association(u16),
    /// The peer shut the association down: nothing more will arrive.
    Shutdown,
}

/// What an association has in flight, and its path's smoothed round-trip time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Data chunks sent and not yet acknowledged, or not yet sent.
    pub chunks: u32,
    pub srtt_ms: u32,
}

/// A non-blocking one-to-one SCTP socket; dropped, it is closed (an ABORT or SHUTDOWN).
pub struct SctpSocket {
    raw: *mut RawSocket,
    u: &'static Usrsctp,
}

impl SctpSocket {
    /// A socket with `streams` streams each way, the given scheduler and I-DATA.
    pub fn new(streams: u16, scheduler: Scheduler) -> Result<Self, SctpError> {
        let u = usrsctp()?;
        // SAFETY: usrsctp is initialised; no callbacks (the socket is polled).
        let raw = unsafe {
            (u.socket)(
                ffi::AF_CONN,
                ffi::SOCK_STREAM,
                ffi::IPPROTO_SCTP,
                std::ptr::null(),
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
            )
        };
        if raw.is_null() {
            return Err(SctpError::Call {
                call: "socket",
                source: std::io::Error::last_os_error(),
            });
        }
        let s = Self { raw, u };
        // SAFETY: a live socket.
        check("set_non_blocking", unsafe { (u.set_non_blocking)(raw, 1) })?;
        s.set(
            "SCTP_INITMSG",
            ffi::SCTP_INITMSG,
            &ffi::InitMsg {
                num_ostreams: streams,
                max_instreams: streams,
                max_attempts: 0,
                max_init_timeo: 0,
            },
        )?;
        s.set("SCTP_NODELAY", ffi::SCTP_NODELAY, &1 as &c_int)?;
        s.set("SCTP_RECVRCVINFO", ffi::SCTP_RECVRCVINFO, &1 as &c_int)?;
        s.set(
            "SCTP_EVENT",
            ffi::SCTP_EVENT,
            &ffi::EventSubscription {
                assoc_id: 0,
                event_type: ffi::SCTP_ASSOC_CHANGE,
                on: 1,
            },
        )?;
        s.set(
            "SCTP_FRAGMENT_INTERLEAVE",
            ffi::SCTP_FRAGMENT_INTERLEAVE,
            &ffi::SCTP_FRAG_LEVEL_2,
        )?;
        s.set(
            "SCTP_PARTIAL_DELIVERY_POINT",
            ffi::SCTP_PARTIAL_DELIVERY_POINT,
            &PARTIAL_DELIVERY_BYTES,
        )?;
        s.set(
            "SCTP_INTERLEAVING_SUPPORTED",
            ffi::SCTP_INTERLEAVING_SUPPORTED,
            &ffi::AssocValue {
                assoc_id: 0,
                assoc_value: 1,
            },
        )?;
        let ss = match scheduler {
            Scheduler::Priority => ffi::SCTP_SS_PRIORITY,
            Scheduler::RoundRobin => ffi::SCTP_SS_ROUND_ROBIN,
            Scheduler::FirstCome => ffi::SCTP_SS_FIRST_COME,
        };
        s.set(
            "SCTP_PLUGGABLE_SS",
            ffi::SCTP_PLUGGABLE_SS,
            &ffi::AssocValue {
                assoc_id: 0,
                assoc_value: ss,
            },
        )?;
        Ok(s)
    }

    fn set<T>(&self, name: &'static str, option: c_int, value: &T) -> Result<(), SctpError> {
        // SAFETY: `value` is the option's C struct (or int), read for its size only.
        let rc = unsafe {
            (self.u.setsockopt)(
                self.raw,
                ffi::IPPROTO_SCTP,
                option,
                value as *const T as *const c_void,
                std::mem::size_of::<T>() as u32,
            )
        };
        check(name, rc)
    }

    /// Fixes the path MTU (the largest SCTP packet) at `mtu` instead of discovering it: the
    /// link below has a known MTU (a tunnel's, less the UDP that carries SCTP).
    pub fn set_path_mtu(&self, mtu: u32) -> Result<(), SctpError> {
        self.set(
            "SCTP_PEER_ADDR_PARAMS",
            ffi::SCTP_PEER_ADDR_PARAMS,
            &ffi::PaddrParams {
                address: [0; 16],
                assoc_id: 0,
                hb_interval: 0,
                path_mtu: mtu,
                flags: ffi::SPP_PMTUD_DISABLE,
                ipv6_flowlabel: 0,
                path_max_rxt: 0,
                dscp: 0,
            },
        )
    }

    /// Sets the retransmission timeout's initial value and bounds, ms.
    pub fn set_rto(&self, initial: u32, min: u32, max: u32) -> Result<(), SctpError> {
        self.set(
            "SCTP_RTOINFO",
            ffi::SCTP_RTOINFO,
            &ffi::RtoInfo {
                assoc_id: 0,
                initial,
                max,
                min,
            },
        )
    }

    /// What the association has in flight now.
    pub fn in_flight(&self) -> Result<InFlight, SctpError> {
        // SAFETY: sctp_status is plain data; all-zero is a valid value.
        let mut st: ffi::Status = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<ffi::Status>() as u32;
        // SAFETY: a live socket; usrsctp writes at most `len` bytes into `st`.
        let rc = unsafe {
            (self.u.getsockopt)(
                self.raw,
                ffi::IPPROTO_SCTP,
                ffi::SCTP_STATUS,
                &mut st as *mut ffi::Status as *mut c_void,
                &mut len,
            )
        };
        check("SCTP_STATUS", rc)?;
        Ok(InFlight {
            chunks: u32::from(st.unackdata) + u32::from(st.penddata),
            srtt_ms: st.primary.srtt,
        })
    }

    pub fn bind(&self, link: &Link, port: u16) -> Result<(), SctpError> {
        let a = link.sockaddr(port);
        // SAFETY: a live socket and a sockaddr_conn of the right size.
        check("bind", unsafe {
            (self.u.bind)(
                self.raw,
                &a,
                std::mem::size_of::<ffi::SockaddrConn>() as u32,
            )
        })
    }

    pub fn listen(&self) -> Result<(), SctpError> {
        // SAFETY: a live socket.
        check("listen", unsafe { (self.u.listen)(self.raw, 16) })
    }

    /// Starts the 4-way handshake to `port` on `link`; it completes as packets flow.
    pub fn connect(&self, link: &Link, port: u16) -> Result<(), SctpError> {
        let a = link.sockaddr(port);
        // SAFETY: as in bind. A non-blocking connect reports EINPROGRESS.
        let rc = unsafe {
            (self.u.connect)(
                self.raw,
                &a,
                std::mem::size_of::<ffi::SockaddrConn>() as u32,
            )
        };
        match check("connect", rc) {
            Err(SctpError::Call { source, .. })
                if source.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// An association that completed its handshake on this listening socket, if any.
    pub fn accept(&self) -> Result<Option<SctpSocket>, SctpError> {
        // SAFETY: a live listening socket; the peer's address is not asked for.
        let raw = unsafe { (self.u.accept)(self.raw, std::ptr::null_mut(), std::ptr::null_mut()) };
        if raw.is_null() {
            return unless_would_block("accept");
        }
        let s = SctpSocket { raw, u: self.u };
        // SAFETY: a live socket.
        check("set_non_blocking", unsafe {
            (self.u.set_non_blocking)(raw, 1)
        })?;
        Ok(Some(s))
    }

    /// Sets `stream`'s priority for the priority scheduler (other schedulers refuse it): a
    /// higher `priority` is sent first (usrsctp sends the lowest value first).
    pub fn set_priority(&self, stream: u16, priority: i32) -> Result<(), SctpError> {
        let value = scheduler_value(priority);
        self.set(
            "SCTP_SS_VALUE",
            ffi::SCTP_SS_VALUE,
            &ffi::StreamValue {
                assoc_id: 0,
                stream_id: stream,
                stream_value: value,
            },
        )
    }

    /// Queues `data` as one message on `stream`: `Ok(None)` when the send buffer has no
    /// room for it now.
    pub fn send(&self, stream: u16, data: &[u8]) -> Result<Option<usize>, SctpError> {
        let info = ffi::SndInfo {
            snd_sid: stream,
            ..Default::default()
        };
        // SAFETY: a live socket; data and info are read for their sizes only.
        let n = unsafe {
            (self.u.sendv)(
                self.raw,
                data.as_ptr() as *const c_void,
                data.len(),
                std::ptr::null(),
                0,
                &info as *const ffi::SndInfo as *const c_void,
                std::mem::size_of::<ffi::SndInfo>() as u32,
                ffi::SCTP_SENDV_SNDINFO,
                0,
            )
        };
        if n < 0 {
            return unless_would_block("sendv");
        }
        Ok(Some(n as usize))
    }

    /// Aborts the association (an ABORT chunk, no SHUTDOWN): what a peer whose state is
    /// gone looks like to the other side.
    #[cfg(test)]
    pub fn abort(&self) -> Result<(), SctpError> {
        let info = ffi::SndInfo {
            snd_flags: ffi::SCTP_ABORT,
            ..Default::default()
        };
        // usrsctp refuses a null buffer, even of no bytes.
        let nothing = [0u8; 1];
        // SAFETY: a live socket; no bytes of data, and info is read for its size only.
        let n = unsafe {
            (self.u.sendv)(
                self.raw,
                nothing.as_ptr() as *const c_void,
                0,
                std::ptr::null(),
                0,
                &info as *const ffi::SndInfo as *const c_void,
                std::mem::size_of::<ffi::SndInfo>() as u32,
                ffi::SCTP_SENDV_SNDINFO,
                0,
            )
        };
        check("sendv (abort)", n as c_int)
    }

    /// Reads what has arrived into `buf`: `Ok(None)` when nothing has.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<Arrival>, SctpError> {
        let mut info = ffi::RcvInfo::default();
        let mut info_len = std::mem::size_of::<ffi::RcvInfo>() as u32;
        let mut info_type = 0;
        let mut flags: c_int = 0;
        // SAFETY: a live socket; buf and info are written within their sizes.
        let n = unsafe {
            (self.u.recvv)(
                self.raw,
                buf.as_mut_ptr() as *mut c_void,
                buf.len(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut info as *mut ffi::RcvInfo as *mut c_void,
                &mut info_len,
                &mut info_type,
                &mut flags,
            )
        };
        if n < 0 {
            return unless_would_block("recvv");
        }
        let n = n as usize;
        if flags & ffi::MSG_NOTIFICATION != 0 {
            // struct sctp_assoc_change: type (u16), flags (u16), length (u32), state (u16).
            let field = |at: usize| {
                buf.get(at..at + 2)
                    .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            };
            return Ok(Some(match (field(0), field(8)) {
                (Some(ffi::SCTP_ASSOC_CHANGE), Some(state)) if n >= 10 => {
                    Arrival::Association(state)
                }
                // Another notification (none is subscribed to): nothing to report.
                _ => Arrival::Association(0),
            }));
        }
        if n == 0 {
            return Ok(Some(Arrival::Shutdown));
        }
        Ok(Some(Arrival::Data(Received {
            stream: info.rcv_sid,
            len: n,
            end_of_message: flags & ffi::MSG_EOR != 0,
        })))
    }
}

impl Drop for SctpSocket {
    fn drop(&mut self) {
        // SAFETY: the socket is live and closed once.
        unsafe { (self.u.close)(self.raw) };
    }
}

/// The scheduler value of a stream carrying `priority`: SCTP schedulers (usrsctp's and the
/// kernel's) send the lowest value first, and stackbench's priorities put the highest first.
pub(crate) fn scheduler_value(priority: i32) -> u16 {
    (1000 - priority).clamp(0, i32::from(u16::MAX)) as u16
}
