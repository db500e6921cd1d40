//! What each piece of a stack costs, in isolation: WireGuard's per-packet crypto, QUIC's
//! packet protection per cipher suite, handshakes, the in-process stack's synthetic header,
//! and the harness's own per-object bookkeeping. Scenario results say *what* a stack costs;
//! these say *why*. Everything runs in memory on one core: no sockets, no scheduling.
//!
//! `cargo bench --bench costs` (add a filter such as `wg/` to run a subset).

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use quinn_proto::{ClientConfig, ServerConfig, TransportConfig};
use stackbench::{
    node::Recorder,
    scenario::Scenario,
    stack::{
        memory::{ip_packet, quic_packet_keys, QuicPair, WgPair, WG_INITIATOR_ADDR},
        null,
        sctp::{engine::Scheduler, memory::SctpPair},
        tls, transport_config, wg_socket,
        wg_tunnel::{WgLibrary, WgTunnel, HANDSHAKE_ROOM},
    },
    workload::{ObjectHeader, WorkloadPlan},
};
use std::{
    hint::black_box,
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
    time::{Duration, Instant},
};

/// Inner IP packet sizes for WireGuard: a vote, a small transaction, a typical and a full
/// QUIC datagram (with the 28 B header), and a GSO-sized super-packet.
const WG_SIZES: [usize; 5] = [64, 256, 1200, 1400, 8192];
/// QUIC packet payload sizes.
const QUIC_SIZES: [usize; 4] = [64, 256, 1200, 1400];

/// Each in-process WireGuard library's per-packet costs, through the interface the
/// in-process socket calls (so GotaTun's pooled-buffer copies count, as in its stacks).
/// GotaTun's crypto backend is the one this build chose (`scripts/bench-wg-backends.sh`
/// runs each).
fn wireguard(c: &mut Criterion) {
    let mut g = c.benchmark_group("wg");
    for lib in WgLibrary::ALL {
        for size in WG_SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let mut pair = WgPair::new(lib);
            pair.handshake().expect("Noise IK in memory");
            let packet = ip_packet(size);
            let mut sealed = vec![0u8; size + 32 + HANDSHAKE_ROOM];
            let mut seal = move |tunnel: &mut dyn WgTunnel, packet: &[u8]| -> Vec<u8> {
                let n = tunnel
                    .seal(packet, &mut sealed, &mut |_| panic!("{lib}: no session"))
                    .expect("seals")
                    .expect("a session exists");
                sealed[..n].to_vec()
            };
            let mut out = vec![0u8; size + 32 + HANDSHAKE_ROOM];
            let mut scratch = vec![0u8; 65_536];
            g.bench_with_input(
                BenchmarkId::new(format!("{lib}/encapsulate"), size),
                &size,
                |b, _| {
                    b.iter(|| {
                        pair.initiator
                            .seal(black_box(&packet), &mut out, &mut |_| {})
                            .expect("seals")
                    })
                },
            );
            // Each ciphertext opens once (replay protection), so every iteration gets a
            // fresh one, sealed outside the timing.
            g.bench_with_input(
                BenchmarkId::new(format!("{lib}/decapsulate"), size),
                &size,
                |b, _| {
                    b.iter_batched(
                        || seal(&mut *pair.initiator, &packet),
                        |ct| {
                            let mut n = 0;
                            pair.responder.open(
                                WG_INITIATOR_ADDR,
                                &ct,
                                &mut scratch,
                                &mut |_| {},
                                &mut |p| n = p.len(),
                            );
                            assert_eq!(n, size, "{lib}: opened");
                            n
                        },
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
    g.finish();
}

fn quic_packet_protection(c: &mut Criterion) {
    let mut g = c.benchmark_group("quic-aead");
    const HEADER: usize = 20;
    for keys in quic_packet_keys() {
        for size in QUIC_SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let tag = keys.seal.tag_len();
            let mut packet = vec![0u8; HEADER + size + tag];
            g.bench_with_input(
                BenchmarkId::new(format!("seal/{}", keys.name), size),
                &size,
                |b, _| b.iter(|| keys.seal.encrypt(black_box(42), &mut packet, HEADER)),
            );
            keys.seal.encrypt(42, &mut packet, HEADER);
            let (header, body) = packet.split_at(HEADER);
            g.bench_with_input(
                BenchmarkId::new(format!("open/{}", keys.name), size),
                &size,
                |b, _| {
                    b.iter_batched(
                        || BytesMut::from(body),
                        |mut p| keys.open.decrypt(42, header, &mut p).expect("opens"),
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
    g.finish();
}

/// Client and server configurations for `crypto`, both with `transport`.
fn quic_pair(
    crypto: &str,
    resumption: tls::Resumption,
    transport: Arc<TransportConfig>,
) -> QuicPair {
    let (mut client, mut server) = if crypto == "quic-null" {
        (
            ClientConfig::new(Arc::new(null::NullClient)),
            ServerConfig::with_crypto(Arc::new(null::NullServer)),
        )
    } else {
        let a = tls::NodeIdentity::generate(0).expect("keygen");
        let b = tls::NodeIdentity::generate(1).expect("keygen");
        let pin = |id: &tls::NodeIdentity, index| tls::PinnedPeer {
            index,
            spki: id.spki.clone(),
        };
        (
            ClientConfig::new(
                tls::client_crypto_with(&a, pin(&b, 1), resumption.clone()).expect("client config"),
            ),
            ServerConfig::with_crypto(
                tls::server_crypto_with(&b, vec![pin(&a, 0)], resumption).expect("server config"),
            ),
        )
    };
    client.transport_config(transport.clone());
    server.transport_config(transport);
    QuicPair::new(client, server, tls::server_name(1))
}

/// Handshakes with the stacks' transport settings (20 000 concurrent uni streams, for
/// which quinn sets up stream state at connection setup) and with quinn's defaults (100),
/// which isolates the crypto.
fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    let transports = [
        ("stack-transport", transport_config(None)),
        ("default-transport", Arc::new(TransportConfig::default())),
    ];
    for (tname, transport) in transports {
        let mut full = quic_pair("quic-tls", tls::Resumption::Off, transport.clone());
        g.bench_function(format!("quic-tls/full/{tname}"), |b| {
            b.iter(|| full.handshake().expect("full handshake"))
        });
        let on = tls::Resumption::on();
        let mut resumed = quic_pair("quic-tls", on.clone(), transport.clone());
        resumed
            .handshake()
            .expect("a first handshake earns a ticket");
        // A filter may skip this bench; the proof below applies only when it ran.
        let mut ran = false;
        g.bench_function(format!("quic-tls/resumed/{tname}"), |b| {
            ran = true;
            b.iter(|| resumed.handshake().expect("resumed handshake"))
        });
        if let (true, tls::Resumption::On(store)) = (ran, &on) {
            // Proof that the resumed bench measured resumptions, not full handshakes.
            assert!(store.resumed() > 0, "no handshake was resumed");
        }
        let mut null_pair = quic_pair("quic-null", tls::Resumption::Off, transport);
        g.bench_function(format!("quic-null/{tname}"), |b| {
            b.iter(|| null_pair.handshake().expect("null handshake"))
        });
    }
    // SCTP's 4-way handshake (usrsctp, in memory, no crypto): sockets, bind, listen,
    // connect and accept included, as a cold connect would pay them, and the close.
    if let Err(e) = stackbench::stack::sctp::engine::usrsctp() {
        eprintln!("handshake/sctp-4way: skipped: {e}");
    } else {
        g.bench_function("sctp-4way/usrsctp", |b| {
            b.iter(|| SctpPair::new(4, Scheduler::Priority).expect("4-way handshake"))
        });
    }
    for lib in WgLibrary::ALL {
        g.bench_function(format!("wg-noise-ik/{lib}"), |b| {
            b.iter_batched(
                || WgPair::new(lib),
                |mut pair| pair.handshake().expect("Noise IK"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn inproc_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("inproc-header");
    let src = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 1), 4433);
    let dst = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 2), 4433);
    let mut packet = vec![0u8; 1420];
    g.bench_function("wrap", |b| {
        b.iter(|| wg_socket::write_inner_header(&mut packet, black_box(src), dst, 1392))
    });
    g.bench_function("unwrap", |b| {
        b.iter(|| wg_socket::read_inner_packet(black_box(&packet)).map(|(_, p)| p.len()))
    });
    g.finish();
}

const QUICK: &str = include_str!("../../scenarios/quick.toml");

fn recording(c: &mut Criterion) {
    let known = stackbench::stack::names();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let scenario = Scenario::parse(std::path::Path::new("quick.toml"), QUICK, &known)
        .expect("quick.toml parses");
    let plan = WorkloadPlan::from_scenario(&scenario).expect("quick.toml has a plan");
    let start = 1_000_000_000u64;
    let measured_at = start + plan.warmup.as_nanos() as u64 + 1_000_000;
    c.bench_function("recorder/delivered", |b| {
        // A fresh recorder per 100k objects bounds the memory its delivery log takes.
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let chunk = (iters - done).min(100_000);
                let mut r = Recorder::new(plan.clone(), 0, start);
                let t0 = Instant::now();
                for seq in 0..chunk {
                    let h = ObjectHeader {
                        origin: (seq % 3) as u16,
                        class: 1,
                        len: 200,
                        seq,
                        intended_ns: measured_at + seq,
                        hops: 1,
                        sent_ns: measured_at + seq,
                    };
                    r.delivered(1, black_box(&h), measured_at + seq + 150_000);
                }
                total += t0.elapsed();
                done += chunk;
            }
            total
        })
    });
}

criterion_group! {
    name = costs;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = wireguard, quic_packet_protection, handshakes, inproc_header, recording
}
criterion_main!(costs);
