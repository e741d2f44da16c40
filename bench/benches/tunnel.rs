//! Encapsulation and decapsulation of one packet, by packet size and family: the per-packet
//! decisions of both directions (`Encapsulator::encapsulate`, `decapsulate`) on a dual-stack
//! table of 1000 nodes.
//!
//! The UDP wire format adds no header bytes, so neither direction touches the payload: the cost
//! should not grow with the size, and the bytes-per-second figure with it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use datapath::{decapsulate, Egress, Encapsulator, Ingress};
use tundra_bench::{local_addr, peer_addr, table, udp_packet, Addrs, Family, REWRITTEN};

mod common;

const NODES: usize = 1000;
const SIZES: [usize; 4] = [64, 576, 1400, 9000];
/// A jumbo-frame underlay: every size above fits.
const TUNNEL_MTU: usize = 9000;

fn tunnel(c: &mut Criterion) {
    let t = table(None, NODES);
    let mut reply = vec![0u8; datapath::icmp::MAX_LEN];
    for family in Family::BOTH {
        let mut group = c.benchmark_group(format!("tunnel/{}", family.name()));
        for len in SIZES {
            group.throughput(Throughput::ElementsAndBytes {
                elements: 1,
                bytes: len as u64,
            });
            let (remote, node) = Addrs::new(family, NODES, 0x7e11).hit();

            // Egress: a packet read from the TUN, to a remote pod.
            let mut pkt = udp_packet(local_addr(family), remote, len);
            let header: [u8; REWRITTEN] = pkt[..REWRITTEN].try_into().expect("long enough");
            let mut enc = Encapsulator::new(TUNNEL_MTU, 100);
            group.bench_function(BenchmarkId::new("encap", len), |b| {
                b.iter(|| {
                    // Undo the previous pass's TTL decrement (12 bytes, as a TUN read would).
                    pkt[..REWRITTEN].copy_from_slice(&header);
                    let verdict = enc.encapsulate(&t, black_box(&mut pkt), &mut reply, 0);
                    debug_assert!(matches!(verdict, Egress::Send(_)));
                    verdict
                })
            });

            // Ingress: a datagram from that pod's node, to a local pod.
            let datagram = udp_packet(remote, local_addr(family), len);
            let from = peer_addr(node);
            assert!(matches!(
                decapsulate(&t, from, &datagram),
                Ingress::Deliver(_)
            ));
            group.bench_function(BenchmarkId::new("decap", len), |b| {
                b.iter(|| decapsulate(&t, black_box(from), black_box(&datagram)))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = tunnel
}
criterion_main!(benches);
