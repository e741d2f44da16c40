//! The vxlan format against frames the Linux kernel's VXLAN sent (captured by
//! `scripts/capture-vxlan-fixtures`: VNI 42, port 8472, node 1's vx0 0a:58:c6:13:01:00 at
//! 198.18.0.1, node 2's 0a:58:c6:13:02:00 at 198.18.0.2; pings over IPv4 and IPv6 and a TCP
//! connection between the pods 198.19.1.1 and 198.19.2.1). Each fixture is one UDP payload.

use std::net::SocketAddr;

use datapath::batch::{EgressBatch, IngressBatch, RecvMeta, HEADROOM, SLOT_SIZE};
use datapath::encap::VXLAN_OVERHEAD;
use datapath::{DropReason, Encap, Encapsulator, Mac, Route, Table, WireFormat};

const VNI: u32 = 42;
const MACS: [Mac; 2] = [
    Mac([0x0a, 0x58, 0xc6, 0x13, 0x01, 0x00]),
    Mac([0x0a, 0x58, 0xc6, 0x13, 0x02, 0x00]),
];

/// `(sender index, bytes)` of every fixture, in capture order.
fn fixtures() -> Vec<(usize, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/vxlan");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "fixtures missing in {dir}");
    names
        .into_iter()
        .map(|n| {
            let sender = if n.contains("from-198.18.0.1-") { 0 } else { 1 };
            (sender, std::fs::read(format!("{dir}/{n}")).unwrap())
        })
        .collect()
}

/// Node `i`'s vxlan table (0-based): its pod subnets local, the other node's routed.
fn table(i: usize) -> Table {
    let j = 1 - i;
    let net = |s: String| s.parse().unwrap();
    let route = |prefix| Route {
        prefix,
        peer: SocketAddr::from(([198, 18, 0, j as u8 + 1], 8472)),
        mac: Some(MACS[j]),
    };
    Table::build(
        WireFormat::Vxlan,
        &[
            net(format!("198.19.{}.0/24", i + 1)),
            net(format!("fd19:0:0:{}::/64", i + 1)),
        ],
        &[
            route(net(format!("198.19.{}.0/24", j + 1))),
            route(net(format!("fd19:0:0:{}::/64", j + 1))),
        ],
        None,
    )
    .unwrap()
}

fn encap(i: usize) -> Encap {
    Encap::Vxlan {
        vni: VNI,
        mac: MACS[i],
    }
}

#[test]
fn our_headers_are_the_kernels_byte_for_byte() {
    let all = fixtures();
    assert!(
        all.iter().any(|(_, f)| f[VXLAN_OVERHEAD] >> 4 == 6),
        "an IPv6 one"
    );
    for (sender, frame) in all {
        let t = table(sender);
        let ipv6 = frame[VXLAN_OVERHEAD] >> 4 == 6;
        let mut ours = [0u8; VXLAN_OVERHEAD];
        encap(sender).write_header(&t.peers()[0], ipv6, &mut ours);
        assert_eq!(ours, frame[..VXLAN_OVERHEAD]);
    }
}

#[test]
fn kernel_frames_are_received_and_delivered_in_place() {
    for (sender, frame) in fixtures() {
        let receiver = 1 - sender;
        let t = table(receiver);
        let mut rx = IngressBatch::new(encap(receiver), false, false);
        let mut slot = vec![0u8; SLOT_SIZE];
        slot[HEADROOM..HEADROOM + frame.len()].copy_from_slice(&frame);
        // A kernel VTEP sends from a flow-hashed source port.
        let meta = RecvMeta {
            len: frame.len(),
            from: Some(SocketAddr::from(([198, 18, 0, sender as u8 + 1], 51234))),
            ..RecvMeta::default()
        };
        assert!(rx.push(&t, 0, &mut slot, meta), "{:?}", rx.local);
        rx.finish(|_, _, _| panic!("no header to build without offloads"));
        let w = rx.writes()[0];
        let written: Vec<u8> = rx
            .pieces(&w)
            .iter()
            .flat_map(|p| p.span.of(&slot).to_vec())
            .collect();
        assert_eq!(written, frame[VXLAN_OVERHEAD..]);

        // The same frame at the wrong node, or with another VNI, goes nowhere.
        let mut wrong = IngressBatch::new(encap(sender), false, false);
        assert!(!wrong.push(&t, 0, &mut slot, meta));
        assert_eq!(wrong.local.drops[DropReason::VxlanMac as usize], 1);
        let mut other_vni = IngressBatch::new(
            Encap::Vxlan {
                vni: 1,
                mac: MACS[receiver],
            },
            false,
            false,
        );
        assert!(!other_vni.push(&t, 0, &mut slot, meta));
        assert_eq!(other_vni.local.drops[DropReason::VxlanVni as usize], 1);
    }
}

#[test]
fn what_we_send_for_a_kernel_packet_is_the_kernels_frame_one_hop_later() {
    for (sender, frame) in fixtures() {
        let t = table(sender);
        let inner = &frame[VXLAN_OVERHEAD..];
        let mut b = EgressBatch::new(Encapsulator::new(1450, 10), encap(sender), false, false);
        let mut slot = vec![0u8; SLOT_SIZE];
        slot[HEADROOM..HEADROOM + inner.len()].copy_from_slice(inner);
        assert!(b.push(&t, 0, &mut slot, inner.len(), 0));
        let mut sent = Vec::new();
        b.for_each_peer_run(&t, |peer, run, spans| {
            assert_eq!(peer.addr.port(), 8472);
            let s = &spans[run[0].spans.0 as usize..run[0].spans.1 as usize];
            sent = s.iter().flat_map(|s| s.of(&slot).to_vec()).collect();
        });
        assert_eq!(sent.len(), frame.len());
        assert_eq!(sent[..VXLAN_OVERHEAD], frame[..VXLAN_OVERHEAD]);
        // tundra is a router hop: the TTL (and the IPv4 header checksum) differ, nothing else.
        let (ttl, rest) = if inner[0] >> 4 == 4 { (8, 12) } else { (7, 8) };
        assert_eq!(sent[VXLAN_OVERHEAD + ttl], inner[ttl] - 1);
        assert_eq!(sent[VXLAN_OVERHEAD + rest..], inner[rest..]);
    }
}
