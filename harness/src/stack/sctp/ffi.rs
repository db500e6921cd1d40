//! usrsctp 0.9 (Debian's `libusrsctp2`), loaded when first used rather than linked: a
//! machine without it builds and runs every other stack, and reports the SCTP stacks
//! unavailable with the command that installs it.

use libloading::Library;
use std::ffi::{c_int, c_uint, c_void};

/// The shared library's name, and how to get it.
pub const LIBRARY: &str = "libusrsctp.so.2";
pub const INSTALL: &str = "apt-get install libusrsctp2";

/// usrsctp's address family for connections it does not carry itself: its packets go to
/// and come from the caller (here a UDP socket or an in-process WireGuard tunnel).
pub const AF_CONN: c_int = 123;
pub const IPPROTO_SCTP: c_int = 132;
pub const SOCK_STREAM: c_int = 1;

// Socket options (usrsctp's numbering, which differs from Linux's for the same options).
pub const SCTP_INITMSG: c_int = 0x03;
pub const SCTP_NODELAY: c_int = 0x04;
pub const SCTP_FRAGMENT_INTERLEAVE: c_int = 0x10;
pub const SCTP_PARTIAL_DELIVERY_POINT: c_int = 0x11;
pub const SCTP_RECVRCVINFO: c_int = 0x1f;
pub const SCTP_PLUGGABLE_SS: c_int = 0x1203;
pub const SCTP_SS_VALUE: c_int = 0x1204;
pub const SCTP_INTERLEAVING_SUPPORTED: c_int = 0x1206;
pub const SCTP_RTOINFO: c_int = 0x01;
pub const SCTP_PEER_ADDR_PARAMS: c_int = 0x0a;
pub const SCTP_EVENT: c_int = 0x1e;
pub const SCTP_STATUS: c_int = 0x100;
/// `spp_flags`: the path MTU is the one given, never discovered.
pub const SPP_PMTUD_DISABLE: u32 = 0x10;
// Notifications: an association's changes of state.
pub const SCTP_ASSOC_CHANGE: u16 = 0x0001;
pub const SCTP_COMM_UP: u16 = 0x0001;
pub const SCTP_COMM_LOST: u16 = 0x0002;
pub const SCTP_RESTART: u16 = 0x0003;
pub const SCTP_SHUTDOWN_COMP: u16 = 0x0004;
pub const SCTP_CANT_STR_ASSOC: u16 = 0x0005;
/// `SCTP_FRAGMENT_INTERLEAVE` level 2: fragments of messages on different streams may
/// interleave, which I-DATA (RFC 8260) needs.
pub const SCTP_FRAG_LEVEL_2: c_int = 2;
// Stream schedulers.
pub const SCTP_SS_ROUND_ROBIN: u32 = 1;
pub const SCTP_SS_PRIORITY: u32 = 3;
pub const SCTP_SS_FIRST_COME: u32 = 5;
// sendv/recvv info types and flags.
pub const SCTP_SENDV_SNDINFO: c_uint = 1;
pub const MSG_EOR: c_int = 0x80;
/// `snd_flags`: abort the association.
#[cfg(test)]
pub const SCTP_ABORT: u16 = 0x0200;
pub const MSG_NOTIFICATION: c_int = 0x2000;

#[repr(C)]
pub struct SockaddrConn {
    pub sconn_family: u16,
    pub sconn_port: u16,
    pub sconn_addr: *mut c_void,
}

#[repr(C)]
#[derive(Default)]
pub struct SndInfo {
    pub snd_sid: u16,
    pub snd_flags: u16,
    pub snd_ppid: u32,
    pub snd_context: u32,
    pub snd_assoc_id: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct RcvInfo {
    pub rcv_sid: u16,
    pub rcv_ssn: u16,
    pub rcv_flags: u16,
    pub rcv_ppid: u32,
    pub rcv_tsn: u32,
    pub rcv_cumtsn: u32,
    pub rcv_context: u32,
    pub rcv_assoc_id: u32,
}

#[repr(C)]
pub struct AssocValue {
    pub assoc_id: u32,
    pub assoc_value: u32,
}

#[repr(C)]
pub struct StreamValue {
    pub assoc_id: u32,
    pub stream_id: u16,
    pub stream_value: u16,
}

#[repr(C)]
pub struct InitMsg {
    pub num_ostreams: u16,
    pub max_instreams: u16,
    pub max_attempts: u16,
    pub max_init_timeo: u16,
}

/// `struct sctp_event`: subscribes a socket to one kind of notification.
#[repr(C)]
pub struct EventSubscription {
    pub assoc_id: u32,
    pub event_type: u16,
    pub on: u8,
}

/// `struct sctp_rtoinfo`, ms.
#[repr(C)]
pub struct RtoInfo {
    pub assoc_id: u32,
    pub initial: u32,
    pub max: u32,
    pub min: u32,
}

/// `struct sctp_paddrparams`; an all-zero address means every path of the association.
#[repr(C)]
pub struct PaddrParams {
    /// `struct sockaddr_storage` (128 bytes, 8-aligned).
    pub address: [u64; 16],
    pub assoc_id: u32,
    pub hb_interval: u32,
    pub path_mtu: u32,
    pub flags: u32,
    pub ipv6_flowlabel: u32,
    pub path_max_rxt: u16,
    pub dscp: u8,
}

/// `struct sctp_status`.
#[repr(C)]
pub struct Status {
    pub assoc_id: u32,
    pub state: i32,
    pub rwnd: u32,
    /// Chunks sent and not yet acknowledged.
    pub unackdata: u16,
    /// Chunks queued and not yet sent.
    pub penddata: u16,
    pub instrms: u16,
    pub outstrms: u16,
    pub fragmentation_point: u32,
    pub primary: PaddrInfo,
}

/// `struct sctp_paddrinfo`: one path of an association.
#[repr(C)]
pub struct PaddrInfo {
    pub address: [u64; 16],
    pub assoc_id: u32,
    pub state: i32,
    pub cwnd: u32,
    /// Smoothed round-trip time, ms.
    pub srtt: u32,
    pub rto: u32,
    pub mtu: u32,
}

/// usrsctp's `struct socket`, only ever behind a pointer.
pub enum RawSocket {}

/// Called by usrsctp with each packet to send: (connection address, packet, length, tos,
/// don't-fragment).
pub type OutputFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, u8, u8) -> c_int;

/// The entry points used, resolved from the loaded library.
pub struct Usrsctp {
    pub init_nothreads: unsafe extern "C" fn(u16, OutputFn, *const c_void),
    pub socket: unsafe extern "C" fn(
        c_int,
        c_int,
        c_int,
        *const c_void,
        *const c_void,
        u32,
        *mut c_void,
    ) -> *mut RawSocket,
    pub setsockopt: unsafe extern "C" fn(*mut RawSocket, c_int, c_int, *const c_void, u32) -> c_int,
    pub getsockopt:
        unsafe extern "C" fn(*mut RawSocket, c_int, c_int, *mut c_void, *mut u32) -> c_int,
    pub bind: unsafe extern "C" fn(*mut RawSocket, *const SockaddrConn, u32) -> c_int,
    pub listen: unsafe extern "C" fn(*mut RawSocket, c_int) -> c_int,
    pub accept: unsafe extern "C" fn(*mut RawSocket, *mut c_void, *mut u32) -> *mut RawSocket,
    pub connect: unsafe extern "C" fn(*mut RawSocket, *const SockaddrConn, u32) -> c_int,
    pub set_non_blocking: unsafe extern "C" fn(*mut RawSocket, c_int) -> c_int,
    pub sendv: unsafe extern "C" fn(
        *mut RawSocket,
        *const c_void,
        usize,
        *const c_void,
        c_int,
        *const c_void,
        u32,
        c_uint,
        c_int,
    ) -> isize,
    pub recvv: unsafe extern "C" fn(
        *mut RawSocket,
        *mut c_void,
        usize,
        *mut c_void,
        *mut u32,
        *mut c_void,
        *mut u32,
        *mut c_uint,
        *mut c_int,
    ) -> isize,
    pub close: unsafe extern "C" fn(*mut RawSocket),
    pub conninput: unsafe extern "C" fn(*mut c_void, *const c_void, usize, u8),
    pub register_address: unsafe extern "C" fn(*mut c_void),
    pub deregister_address: unsafe extern "C" fn(*mut c_void),
    pub handle_timers: unsafe extern "C" fn(u32),
    pub sysctl_set_ecn_enable: unsafe extern "C" fn(u32) -> c_int,
    pub sysctl_set_sendspace: unsafe extern "C" fn(u32) -> c_int,
    pub sysctl_set_recvspace: unsafe extern "C" fn(u32) -> c_int,
    pub sysctl_set_default_frag_interleave: unsafe extern "C" fn(u32) -> c_int,
    /// Keeps the entry points valid: never unloaded.
    _library: Library,
}

impl Usrsctp {
    /// Loads the library and resolves every entry point.
    pub fn load() -> Result<Self, String> {
        // SAFETY: loading runs the library's initialisers; usrsctp's only set up its globals.
        let library = unsafe { Library::new(LIBRARY) }
            .map_err(|e| format!("{LIBRARY} could not be loaded ({e}); install it: {INSTALL}"))?;
        macro_rules! resolve {
            ($name:literal) => {
                // SAFETY: the declared type is usrsctp 0.9's prototype for this symbol
                // (usrsctp.h), and the library outlives the pointer (kept in `_library`).
                *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{LIBRARY} lacks {}: {e}", $name))?
            };
        }
        Ok(Self {
            init_nothreads: resolve!("usrsctp_init_nothreads"),
            socket: resolve!("usrsctp_socket"),
            setsockopt: resolve!("usrsctp_setsockopt"),
            getsockopt: resolve!("usrsctp_getsockopt"),
            bind: resolve!("usrsctp_bind"),
            listen: resolve!("usrsctp_listen"),
            accept: resolve!("usrsctp_accept"),
            connect: resolve!("usrsctp_connect"),
            set_non_blocking: resolve!("usrsctp_set_non_blocking"),
            sendv: resolve!("usrsctp_sendv"),
            recvv: resolve!("usrsctp_recvv"),
            close: resolve!("usrsctp_close"),
            conninput: resolve!("usrsctp_conninput"),
            register_address: resolve!("usrsctp_register_address"),
            deregister_address: resolve!("usrsctp_deregister_address"),
            handle_timers: resolve!("usrsctp_handle_timers"),
            sysctl_set_ecn_enable: resolve!("usrsctp_sysctl_set_sctp_ecn_enable"),
            sysctl_set_sendspace: resolve!("usrsctp_sysctl_set_sctp_sendspace"),
            sysctl_set_recvspace: resolve!("usrsctp_sysctl_set_sctp_recvspace"),
            sysctl_set_default_frag_interleave: resolve!(
                "usrsctp_sysctl_set_sctp_default_frag_interleave"
            ),
            _library: library,
        })
    }
}
