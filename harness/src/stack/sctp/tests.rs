//! usrsctp in memory: two sockets on one link, packets moved by hand.

use super::engine::{tick, Arrival, Scheduler};
use super::memory::SctpPair;

const BLOCK: u16 = 0;
const BULK: u16 = 1;

/// Sends one 1 MiB bulk message, then a 128 KiB block on a stream of higher priority, and
/// returns how many bytes of the bulk message had arrived when the block was complete.
fn bulk_before_block(scheduler: Scheduler) -> usize {
    let pair = SctpPair::new(4, scheduler).expect("an in-memory association");
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
        // A narrow wire with a short queue: four packets a step, the rest dropped (SCTP
        // retransmits them), so the sender's scheduler decides what goes first.
        pair.link.deliver(4).expect("input");
        while let Some(a) = pair.server.recv(&mut buf).expect("recv") {
            let Arrival::Data(r) = a else { continue };
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
    let prio = bulk_before_block(Scheduler::Priority);
    let shared = bulk_before_block(Scheduler::RoundRobin);
    eprintln!("bulk bytes before the block completed: priority {prio}, round-robin {shared}");
    assert!(prio < 32 << 10, "priority: {prio} B of bulk first");
    assert!(shared > 96 << 10, "round-robin: {shared} B of bulk first");
}

/// Two endpoints on UDP sockets of this host: a dial, an accept, and messages both ways,
/// whole and in order per stream.
#[test]
fn endpoints_over_udp_carry_messages_both_ways() {
    use super::endpoint::SctpEndpoint;
    use quinn::Runtime;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    tokio::task::LocalSet::new().block_on(&rt, async {
        let socket = || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
            let addr = s.local_addr().expect("its address");
            (
                quinn::TokioRuntime.wrap_udp_socket(s).expect("wrapped"),
                addr,
            )
        };
        let ((a, _), (b, b_addr)) = (socket(), socket());
        let a = SctpEndpoint::new(a, Scheduler::Priority, 1200, 8).expect("endpoint a");
        let b = SctpEndpoint::new(b, Scheduler::Priority, 1200, 8).expect("endpoint b");
        let dial = a.connect(b_addr).expect("dial");
        let (ca, cb) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::join!(dial, b.accept())
        })
        .await
        .expect("the handshake completes");
        let (ca, cb) = (ca.expect("dialled"), cb.expect("accepted"));
        // Priorities take streams in the order first sent: 10 is stream 0, 0 is stream 1.
        for (k, priority, len) in [(0u8, 10, 100usize), (1, 0, 1 << 20), (2, 10, 5)] {
            ca.send(priority, &[k; 8], len).await.expect("sent");
        }
        cb.send(0, b"answer..", 64).await.expect("sent back");
        let mut got = vec![];
        for _ in 0..3 {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), cb.next_message())
                .await
                .expect("a message within 5 s")
                .expect("the association is up");
            got.push((m.stream, m.head[0], m.len));
        }
        got.sort();
        assert_eq!(got, vec![(0, 0, 100), (0, 2, 5), (1, 1, 1 << 20)]);
        let back = ca.next_message().await.expect("the answer");
        assert_eq!(
            (back.stream, &back.head[..], back.len),
            (0, &b"answer.."[..], 64)
        );
        ca.acknowledged().await.expect("everything acknowledged");
        let (sent, _) = ca.stats();
        assert!(
            sent.sent > 800,
            "1 MiB takes over 800 datagrams of 1200 B: {sent:?}"
        );
        assert_eq!(
            sent.largest_sent, 1200,
            "datagrams fill the path MTU and no more"
        );
        ca.close();
        assert_eq!(
            cb.next_message().await,
            None,
            "the peer's shutdown ends the association"
        );
    });
}

/// A peer that aborted the association (as a restarted peer's new endpoint answers the old
/// one's packets): once its ABORT has arrived, a send fails with an error that says the
/// association is lost, which is how a node tells a restarted peer from a broken stack.
#[test]
fn a_send_after_the_peer_aborted_says_the_association_is_lost() {
    use super::endpoint::Ended;
    use super::engine::SctpError;
    let pair = SctpPair::new(4, Scheduler::Priority).expect("an in-memory association");
    assert_eq!(pair.client.send(0, b"before").expect("send"), Some(6));
    pair.link.deliver(usize::MAX).expect("input");
    pair.server.abort().expect("abort");
    assert!(
        pair.link.deliver(usize::MAX).expect("input") > 0,
        "the ABORT goes out"
    );
    let err = pair
        .client
        .send(0, b"after")
        .expect_err("the association is gone");
    let SctpError::Call { source, .. } = &err else {
        panic!("not an error of a call: {err}")
    };
    eprintln!("send after the peer's ABORT: {source}");
    assert_eq!(Ended::by_send_error(source), Some(Ended::Lost), "{err}");
}
