//! usrsctp in memory: two sockets on one link, packets moved by hand.

use super::engine::{tick, Scheduler};
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
    let prio = bulk_before_block(Scheduler::Priority);
    let shared = bulk_before_block(Scheduler::RoundRobin);
    eprintln!("bulk bytes before the block completed: priority {prio}, round-robin {shared}");
    assert!(prio < 32 << 10, "priority: {prio} B of bulk first");
    assert!(shared > 96 << 10, "round-robin: {shared} B of bulk first");
}
