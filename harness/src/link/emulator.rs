//! The userspace link emulator, for kernels without netem: it replaces the switch. Running in
//! the switch namespace, it reads each frame from the port it arrived on (AF_PACKET), asks
//! the path's [`PathModel`] for its fate, holds it in a timer queue and writes it to the
//! destination node's port when due. Frames that are not IPv4 to a node (ARP) are flooded
//! at once. Like mahimahi, but between namespaces.
//!
//! The controller talks to it over stdin/stdout: a line `stats` asks for an
//! [`EmulatorStats`] JSON line; end of input ends it, so it cannot outlive the controller.

use super::{model::Fate, model::PathModel, plan::LinkPlan};
use crate::metrics::{encode_histogram, monotonic_ns};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::{
    collections::BinaryHeap,
    io::{BufRead, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// Largest frame read; with the node's segmentation offloads off, frames are ≤ MTU + 14.
const FRAME_MAX: usize = 65_536;
/// Frames read from one port before looking at the others and the clock.
const RX_BURST: usize = 64;
const ETH_P_ALL: u16 = 0x0003;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// What the emulator is told to do (written to a file by the controller).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmulatorConfig {
    pub plan: LinkPlan,
    /// Switch-side port of each node, in node order.
    pub ports: Vec<String>,
    pub seed: u64,
}

/// Cumulative counters since the emulator started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmulatorStats {
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_packets: u64,
    pub reordered_packets: u64,
    pub flooded_frames: u64,
    /// Frames the destination port refused (its queue was full).
    pub send_errors: u64,
    /// How late frames left against their release time, µs (HdrHistogram V2, base64).
    pub lateness_us: String,
    /// The scheduling class it got: "SCHED_FIFO" or why not.
    pub scheduling: String,
}

struct Held {
    release_ns: u64,
    seq: u64,
    to: usize,
    frame: Vec<u8>,
}
impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.release_ns, self.seq) == (o.release_ns, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    /// Reversed, so the max-heap pops the earliest release first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.release_ns, o.seq).cmp(&(self.release_ns, self.seq))
    }
}

fn packet_socket(port: &str) -> Result<OwnedFd> {
    let name = std::ffi::CString::new(port)?;
    // SAFETY: if_nametoindex reads a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {port} in this namespace");
    }
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            (ETH_P_ALL.to_be()) as libc::c_int,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("AF_PACKET socket (needs CAP_NET_RAW)");
    }
    // SAFETY: fd is a fresh, valid descriptor we own from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: addr is a valid sockaddr_ll of the stated size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("binding to {port}"));
    }
    let one: libc::c_int = 1;
    let buf: libc::c_int = 8 << 20;
    for (level, opt, val) in [
        (libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &one),
        (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buf),
        (libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &buf),
    ] {
        // SAFETY: val points to a c_int that lives through the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                val as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if rc != 0 && opt == PACKET_IGNORE_OUTGOING {
            return Err(std::io::Error::last_os_error())
                .context("PACKET_IGNORE_OUTGOING (needs Linux 4.20 or later)");
        }
    }
    Ok(fd)
}

/// Asks for real-time scheduling so held frames leave on time while nodes keep the CPUs busy,
/// as netem's timers would; says what it got.
fn realtime() -> String {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes a plain integer; 1 ns makes sleeps exact.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: param is a valid sched_param; pid 0 is this thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        "SCHED_FIFO".into()
    } else {
        format!(
            "normal (SCHED_FIFO refused: {})",
            std::io::Error::last_os_error()
        )
    }
}

/// The node a frame is for, if it is IPv4 to a node address (198.18.0.<node+1>).
fn destination(frame: &[u8], nodes: usize) -> Option<usize> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let dst = &frame[30..34];
    (dst[..3] == [198, 18, 0] && dst[3] >= 1 && (dst[3] as usize) <= nodes)
        .then(|| dst[3] as usize - 1)
}

/// Completes the UDP checksum of an IPv4 frame. Frames leave a node with the checksum only
/// started (offloaded to the "NIC"); the emulator is that NIC. Fragments and UDP without a
/// checksum are left alone.
fn finish_udp_checksum(frame: &mut [u8]) {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
        return;
    }
    let ihl = ((frame[14] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    let fragmented = u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0;
    let udp = 14 + ihl;
    if fragmented || ihl < 20 || 14 + total > frame.len() || total < ihl + 8 {
        return;
    }
    let udp_len = total - ihl;
    if frame[udp + 6..udp + 8] == [0, 0] {
        return;
    }
    frame[udp + 6] = 0;
    frame[udp + 7] = 0;
    let mut sum: u64 = 17 + udp_len as u64;
    for pair in frame[26..34].chunks(2) {
        sum += u16::from_be_bytes([pair[0], pair[1]]) as u64;
    }
    let mut words = frame[udp..udp + udp_len].chunks_exact(2);
    for w in words.by_ref() {
        sum += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [last] = words.remainder() {
        sum += (*last as u64) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    frame[udp + 6..udp + 8].copy_from_slice(&csum.to_be_bytes());
}

struct Emulator {
    ports: Vec<OwnedFd>,
    /// Where frames are read into before being copied to a buffer of their own size.
    scratch: Vec<u8>,
    models: Vec<Vec<PathModel>>,
    held: BinaryHeap<Held>,
    seq: u64,
    pool: Vec<Vec<u8>>,
    stats: EmulatorStats,
    lateness: Histogram<u64>,
}

impl Emulator {
    fn send(&mut self, to: usize, frame: &[u8]) -> bool {
        // SAFETY: frame is a valid buffer of frame.len() bytes; the socket is bound to the port.
        let n = unsafe {
            libc::send(
                self.ports[to].as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if n < 0 {
            self.stats.send_errors += 1;
        }
        n >= 0
    }

    fn receive(&mut self, from: usize) {
        for _ in 0..RX_BURST {
            // SAFETY: scratch has FRAME_MAX writable bytes.
            let n = unsafe {
                libc::recv(
                    self.ports[from].as_raw_fd(),
                    self.scratch.as_mut_ptr() as *mut libc::c_void,
                    FRAME_MAX,
                    0,
                )
            };
            if n <= 0 {
                return;
            }
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(&self.scratch[..(n as usize).min(FRAME_MAX)]);
            finish_udp_checksum(&mut buf);
            let now = monotonic_ns();
            match destination(&buf, self.ports.len()).filter(|&to| to != from) {
                None => {
                    self.stats.flooded_frames += 1;
                    for to in (0..self.ports.len()).filter(|&to| to != from) {
                        self.send(to, &buf);
                    }
                    self.pool.push(buf);
                }
                Some(to) => match self.models[from][to].admit(now) {
                    Fate::Drop => {
                        self.stats.dropped_packets += 1;
                        self.pool.push(buf);
                    }
                    fate @ (Fate::SendNow | Fate::Overtake) => {
                        if fate == Fate::Overtake {
                            self.stats.reordered_packets += 1;
                        }
                        self.forward(to, &buf);
                        self.pool.push(buf);
                    }
                    Fate::SendAt(release_ns) => {
                        self.seq += 1;
                        self.held.push(Held {
                            release_ns,
                            seq: self.seq,
                            to,
                            frame: buf,
                        });
                    }
                },
            }
        }
    }

    fn forward(&mut self, to: usize, frame: &[u8]) {
        if self.send(to, frame) {
            self.stats.forwarded_packets += 1;
            self.stats.forwarded_bytes += frame.len() as u64;
        }
    }

    /// Sends every held frame that is due; returns ns until the next one, if any.
    fn release_due(&mut self) -> Option<u64> {
        loop {
            let now = monotonic_ns();
            match self.held.peek() {
                None => return None,
                Some(h) if h.release_ns > now => return Some(h.release_ns - now),
                Some(_) => {}
            }
            // The peek above saw an element.
            let h = self.held.pop()?;
            let _ = self.lateness.record((now - h.release_ns) / 1_000);
            self.forward(h.to, &h.frame);
            self.pool.push(h.frame);
        }
    }

    fn snapshot(&self) -> EmulatorStats {
        EmulatorStats {
            lateness_us: encode_histogram(&self.lateness).unwrap_or_default(),
            ..self.stats.clone()
        }
    }
}

/// Runs the emulator until its standard input ends.
pub fn run(config_path: &std::path::Path) -> Result<()> {
    let config: EmulatorConfig = serde_json::from_slice(
        &std::fs::read(config_path)
            .with_context(|| format!("reading {}", config_path.display()))?,
    )
    .context("parsing the emulator config")?;
    let n = config.ports.len();
    if n != config.plan.nodes.len() {
        bail!("{n} ports for {} nodes", config.plan.nodes.len());
    }
    let ports = config
        .ports
        .iter()
        .map(|p| packet_socket(p))
        .collect::<Result<Vec<_>>>()?;
    let models = (0..n)
        .map(|from| {
            (0..n)
                .map(|to| {
                    PathModel::new(
                        config.plan.paths[from][to],
                        config.seed ^ ((from as u64) << 32 | to as u64),
                    )
                })
                .collect()
        })
        .collect();
    let mut emu = Emulator {
        ports,
        scratch: vec![0; FRAME_MAX],
        models,
        held: BinaryHeap::new(),
        seq: 0,
        pool: Vec::new(),
        stats: EmulatorStats {
            scheduling: realtime(),
            ..Default::default()
        },
        lateness: Histogram::new_with_bounds(1, 60_000_000, 3).context("lateness histogram")?,
    };
    let stdin = std::io::stdin();
    let mut control = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut fds: Vec<libc::pollfd> = emu
        .ports
        .iter()
        .map(|p| p.as_raw_fd())
        .chain([libc::STDIN_FILENO])
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    writeln!(out, "ready")?;
    out.flush()?;
    loop {
        let wait = emu.release_due();
        let ts = wait.map(|ns| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        // SAFETY: fds is a valid array of pollfd; ts_ptr is null or points at a live timespec.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as _, ts_ptr, std::ptr::null()) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("ppoll");
        }
        for (port, fd) in fds[..n].iter().enumerate() {
            if fd.revents != 0 {
                emu.receive(port);
            }
        }
        if fds[n].revents != 0 {
            let mut line = String::new();
            if control.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line.trim() == "stats" {
                serde_json::to_writer(&mut out, &emu.snapshot())?;
                writeln!(out)?;
                out.flush()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{destination, finish_udp_checksum};

    #[test]
    fn udp_checksums_are_completed() {
        // 198.18.0.1:4433 -> 198.18.0.2:4433, payload "hi", with a checksum only started.
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ]);
        f.extend_from_slice(&[0x11, 0x51, 0x11, 0x51, 0, 10, 0x12, 0x34, b'h', b'i']);
        finish_udp_checksum(&mut f);
        // Verify: the one's-complement sum over pseudo-header and datagram is 0xffff.
        let mut sum: u32 = 17 + 10;
        for p in f[26..34].chunks(2).chain(f[34..44].chunks(2)) {
            sum += u16::from_be_bytes([p[0], p[1]]) as u32;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        assert_ne!(&f[40..42], &[0x12, 0x34]);
    }

    #[test]
    fn only_ipv4_to_node_addresses_is_routed() {
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[30..34].copy_from_slice(&[198, 18, 0, 3]);
        assert_eq!(destination(&f, 3), Some(2));
        assert_eq!(destination(&f, 2), None, "no node 2 in a 2-node run");
        f[30..34].copy_from_slice(&[198, 18, 0, 255]);
        assert_eq!(destination(&f, 3), None, "broadcast is flooded");
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(destination(&f, 3), None, "ARP is flooded");
    }
}
