//! usrsctp in memory: two sockets on one link, packets moved by hand.

use super::engine::{tick, Link, Scheduler, SctpSocket};

const BLOCK: u16 = 0;
const BULK: u16 = 1;

/// A client and a server association joined over one in-memory link.
struct Pair {
    link: Link,
    client: SctpSocket,
    server: SctpSocket,
    /// Kept open so the association is not refused; it accepted `server`.
    _listener: SctpSocket,
}

impl Pair {
    fn new(scheduler: Scheduler, port: u16) -> Pair {
        let link = Link::new().expect("usrsctp loads");
        let listener = SctpSocket::new(4, scheduler).expect("socket");
        listener.bind(&link, port).expect("bind");
        listener.listen().expect("listen");
        let client = SctpSocket::new(4, scheduler).expect("socket");
        client.bind(&link, port + 1).expect("bind");
        client.connect(&link, port).expect("connect");
        let mut server = None;
        for _ in 0..100 {
            Self::deliver(&link, usize::MAX);
            if let Some(s) = listener.accept().expect("accept") {
                server = Some(s);
                break;
            }
            tick(10).expect("timers");
        }
        let server = server.expect("the 4-way handshake completes");
        // The COOKIE ACK, which completes the client's side.
        while Self::deliver(&link, usize::MAX) > 0 {}
        Pair {
            link,
            client,
            server,
            _listener: listener,
        }
    }

    /// Moves at most `max` packets across the link; returns how many moved.
    fn deliver(link: &Link, max: usize) -> usize {
        let packets = link.take_output();
        let n = packets.len().min(max);
        for (i, p) in packets.iter().enumerate() {
            if i < max {
                link.input(p).expect("input");
            }
        }
        n
    }
}

/// Sends one 1 MiB bulk message, then a 128 KiB block on a stream of higher priority, and
/// returns how many bytes of the bulk message had arrived when the block was complete.
fn bulk_before_block(scheduler: Scheduler, port: u16) -> usize {
    let pair = Pair::new(scheduler, port);
    if scheduler == Scheduler::Priority {
        pair.client.set_priority(BLOCK, 20).expect("priority");
        pair.client.set_priority(BULK, -10).expect("priority");
    }
    let bulk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let block = vec![7u8; 128 << 10];
    assert_eq!(
        pair.client.send(BULK, &bulk).expect("send"),
        Some(bulk.len())
    );
    assert_eq!(
        pair.client.send(BLOCK, &block).expect("send"),
        Some(block.len())
    );
    let mut buf = vec![0u8; 2 << 20];
    let (mut bulk_got, mut block_got, mut block_done_at) = (vec![], 0, None);
    for _ in 0..100_000 {
        // A narrow wire: a few packets per step, so the sender's scheduler decides the order.
        Pair::deliver(&pair.link, 4);
        while let Some(r) = pair.server.recv(&mut buf).expect("recv") {
            match r.stream {
                BULK => bulk_got.extend_from_slice(&buf[..r.len]),
                _ => {
                    block_got += r.len;
                    if r.end_of_message {
                        block_done_at = Some(bulk_got.len());
                    }
                }
            }
        }
        if bulk_got.len() == bulk.len() && block_done_at.is_some() {
            break;
        }
        tick(1).expect("timers");
    }
    assert_eq!(block_got, block.len(), "the block arrives whole");
    assert!(bulk_got == bulk, "the bulk message arrives intact");
    block_done_at.expect("the block completes")
}

/// Strict priority with I-DATA: a block sent after a 1 MiB bulk message overtakes it, with
/// at most what was already in flight of the bulk message arriving first. Round-robin
/// shares the link between the two streams, so about the block's size of bulk arrives
/// first. Both run, so the test can fail.
#[test]
fn a_block_overtakes_bulk_only_with_the_priority_scheduler() {
    let prio = bulk_before_block(Scheduler::Priority, 5000);
    let shared = bulk_before_block(Scheduler::RoundRobin, 5010);
    eprintln!("bulk bytes before the block completed: priority {prio}, round-robin {shared}");
    assert!(prio < 32 << 10, "priority: {prio} B of bulk first");
    assert!(shared > 96 << 10, "round-robin: {shared} B of bulk first");
}
