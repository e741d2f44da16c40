//! Two nodes, no kernel: packets read from node 1's TUN are encapsulated by node 1 and
//! decapsulated by node 2 (and back), with every decision checked on real packet bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use datapath::icmp::MAX_LEN;
use datapath::route::canonical_addr;
use datapath::{decapsulate, DropReason, Egress, Encapsulator, Ingress, Route, Table};
use etherparse::{IpHeaders, Ipv4Header, Ipv6Header, PacketBuilder, SlicedPacket, TransportSlice};
use ipnet::IpNet;

const TUNNEL_MTU: usize = 1422;
const NOW: u64 = 1_000_000_000;

struct Node {
    underlay: SocketAddr,
    table: Table,
    enc: Encapsulator,
}

/// What happened to a packet pushed through the pair.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Written to the receiving node's TUN: these bytes.
    Delivered(Vec<u8>),
    /// Dropped by the receiving node.
    DroppedOnIngress(DropReason),
    /// Not sent by the sending node.
    DroppedOnEgress(DropReason),
    /// Answered by the sending node with this ICMP error.
    Replied(DropReason, Vec<u8>),
}

struct Pair {
    nodes: [Node; 2],
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

impl Pair {
    fn new() -> Self {
        let addr1: SocketAddr = "198.18.0.1:8285".parse().unwrap();
        let addr2: SocketAddr = "198.18.0.2:8285".parse().unwrap();
        let node = |underlay, local: [&str; 2], remote: [&str; 2], peer| Node {
            underlay,
            table: Table::new(
                &[net(local[0]), net(local[1])],
                &remote.map(|p| Route::new(net(p), peer)),
            )
            .unwrap(),
            enc: Encapsulator::new(TUNNEL_MTU, 100),
        };
        Pair {
            nodes: [
                node(
                    addr1,
                    ["198.19.1.0/24", "fd19:0:0:1::/64"],
                    ["198.19.2.0/24", "fd19:0:0:2::/64"],
                    addr2,
                ),
                node(
                    addr2,
                    ["198.19.2.0/24", "fd19:0:0:2::/64"],
                    ["198.19.1.0/24", "fd19:0:0:1::/64"],
                    addr1,
                ),
            ],
        }
    }

    /// Node `from` reads `packet` from its TUN; if it sends it, the node at the peer address
    /// receives it as coming from `from`'s underlay address.
    fn send(&mut self, from: usize, packet: &[u8]) -> Outcome {
        let sender_addr = self.nodes[from].underlay;
        self.send_as(from, sender_addr, packet)
    }

    /// Like [`Pair::send`], but the receiver sees the datagram as coming from `seen_from`.
    fn send_as(&mut self, from: usize, seen_from: SocketAddr, packet: &[u8]) -> Outcome {
        let mut buf = packet.to_vec();
        let mut reply = [0u8; MAX_LEN];
        let sender = &mut self.nodes[from];
        let peer = match sender
            .enc
            .encapsulate(&sender.table, &mut buf, &mut reply, NOW)
        {
            Egress::Send(peer) => sender.table.peer(peer).addr,
            Egress::Reply { len, reason } => {
                return Outcome::Replied(reason, reply[..len].to_vec())
            }
            Egress::Drop(reason) => return Outcome::DroppedOnEgress(reason),
        };
        let receiver = self
            .nodes
            .iter()
            .find(|n| n.underlay == peer)
            .expect("peer is a node");
        receive(receiver, seen_from, &buf)
    }
}

fn receive(node: &Node, from: SocketAddr, datagram: &[u8]) -> Outcome {
    match decapsulate(&node.table, from, datagram) {
        Ingress::Deliver(peer) => {
            assert_eq!(
                node.table.peer(peer).addr,
                canonical_addr(from),
                "delivered from the sender"
            );
            Outcome::Delivered(datagram.to_vec())
        }
        Ingress::Drop(reason) => Outcome::DroppedOnIngress(reason),
    }
}

fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}
fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

fn udp4(src: &str, dst: &str, ttl: u8, payload_len: usize) -> Vec<u8> {
    let ip = Ipv4Header {
        source: v4(src),
        destination: v4(dst),
        time_to_live: ttl,
        dont_fragment: true,
        identification: 7,
        ..Default::default()
    };
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let mut out = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv4(ip, Default::default()))
        .udp(33000, 7)
        .write(&mut out, &payload)
        .unwrap();
    out
}

fn udp6(src: &str, dst: &str, hop_limit: u8, payload_len: usize) -> Vec<u8> {
    let ip = Ipv6Header {
        source: v6(src),
        destination: v6(dst),
        hop_limit,
        ..Default::default()
    };
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let mut out = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv6(ip, Default::default()))
        .udp(33000, 7)
        .write(&mut out, &payload)
        .unwrap();
    out
}

/// The delivered bytes, checked with etherparse: a valid IPv4 header checksum and the UDP
/// payload intact.
fn assert_delivered(outcome: Outcome, sent: &[u8], hop_limit: u8) {
    let Outcome::Delivered(bytes) = outcome else {
        panic!("not delivered: {outcome:?}")
    };
    assert_eq!(bytes.len(), sent.len());
    let sliced = SlicedPacket::from_ip(&bytes).expect("delivered packet parses");
    match sliced.net.unwrap() {
        etherparse::NetSlice::Ipv4(ip) => {
            let h = ip.header();
            assert_eq!(h.ttl(), hop_limit);
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        }
        etherparse::NetSlice::Ipv6(ip) => assert_eq!(ip.header().hop_limit(), hop_limit),
        _ => panic!("not IP"),
    }
    let Some(TransportSlice::Udp(udp)) = sliced.transport else {
        panic!("not UDP")
    };
    let sent_udp = SlicedPacket::from_ip(sent).unwrap();
    let Some(TransportSlice::Udp(sent_udp)) = sent_udp.transport else {
        unreachable!()
    };
    assert_eq!(udp.slice(), sent_udp.slice());
}

#[test]
fn ipv4_both_ways() {
    let mut pair = Pair::new();
    let p = udp4("198.19.1.10", "198.19.2.20", 64, 100);
    assert_delivered(pair.send(0, &p), &p, 63);
    let p = udp4("198.19.2.20", "198.19.1.10", 2, 1000);
    assert_delivered(pair.send(1, &p), &p, 1);
}

#[test]
fn ipv6_both_ways() {
    let mut pair = Pair::new();
    let p = udp6("fd19:0:0:1::10", "fd19:0:0:2::20", 64, 100);
    assert_delivered(pair.send(0, &p), &p, 63);
    let p = udp6("fd19:0:0:2::20", "fd19:0:0:1::10", 255, 1000);
    assert_delivered(pair.send(1, &p), &p, 254);
}

#[test]
fn full_size_packets_pass() {
    let mut pair = Pair::new();
    let p = udp4("198.19.1.10", "198.19.2.20", 64, TUNNEL_MTU - 28);
    assert_delivered(pair.send(0, &p), &p, 63);
    let p = udp6("fd19:0:0:1::10", "fd19:0:0:2::20", 64, TUNNEL_MTU - 48);
    assert_delivered(pair.send(0, &p), &p, 63);
}

#[test]
fn dual_stack_sender_address_is_accepted() {
    let mut pair = Pair::new();
    let mapped: SocketAddr = "[::ffff:198.18.0.1]:8285".parse().unwrap();
    let p = udp4("198.19.1.10", "198.19.2.20", 64, 10);
    assert_delivered(pair.send_as(0, mapped, &p), &p, 63);
}

#[test]
fn spoofed_source_is_dropped() {
    let mut pair = Pair::new();
    // Node 1 sends a packet whose source is not in node 1's subnets: node 1 routes it by
    // destination alone, node 2 catches it.
    for src in ["198.19.3.10", "198.19.2.99"] {
        let p = udp4(src, "198.19.2.20", 64, 10);
        assert_eq!(
            pair.send(0, &p),
            Outcome::DroppedOnIngress(DropReason::Spoofed),
            "{src}"
        );
    }
    let p = udp6("fd19:0:0:3::10", "fd19:0:0:2::20", 64, 10);
    assert_eq!(
        pair.send(0, &p),
        Outcome::DroppedOnIngress(DropReason::Spoofed)
    );
    // A source inside the receiver's own subnet.
    let p = udp6("fd19:0:0:2::10", "fd19:0:0:2::20", 64, 10);
    assert_eq!(
        pair.send(0, &p),
        Outcome::DroppedOnIngress(DropReason::Spoofed)
    );
}

#[test]
fn unknown_peer_is_dropped() {
    let pair = Pair::new();
    let p = udp4("198.19.1.10", "198.19.2.20", 63, 10);
    for from in ["198.18.0.9:8285", "198.18.0.1:8286", "[fd18::1]:8285"] {
        let from: SocketAddr = from.parse().unwrap();
        assert_eq!(
            receive(&pair.nodes[1], from, &p),
            Outcome::DroppedOnIngress(DropReason::UnknownPeer),
            "{from}"
        );
    }
}

#[test]
fn not_local_destination_is_dropped() {
    let pair = Pair::new();
    // Node 1 would never send this (198.19.3.0/24 has no route), but a buggy or hostile peer can.
    let p = udp4("198.19.1.10", "198.19.3.20", 63, 10);
    assert_eq!(
        receive(&pair.nodes[1], pair.nodes[0].underlay, &p),
        Outcome::DroppedOnIngress(DropReason::NotLocal)
    );
    let p = udp6("fd19:0:0:1::10", "fd19:0:0:1::20", 63, 10);
    assert_eq!(
        receive(&pair.nodes[1], pair.nodes[0].underlay, &p),
        Outcome::DroppedOnIngress(DropReason::NotLocal)
    );
}

#[test]
fn malformed_is_dropped_on_both_sides() {
    let mut pair = Pair::new();
    let good = udp4("198.19.1.10", "198.19.2.20", 64, 40);
    let mut bad_ihl = good.clone();
    bad_ihl[0] = 0x44;
    let mut bad_len = good.clone();
    bad_len[3] += 1;
    let good6 = udp6("fd19:0:0:1::10", "fd19:0:0:2::20", 64, 40);
    let mut bad_len6 = good6.clone();
    bad_len6[5] -= 1;
    let junk: [&[u8]; 6] = [&[], &good[..19], &bad_ihl, &bad_len, &bad_len6, &[0x51; 40]];
    for bytes in junk {
        assert_eq!(
            pair.send(0, bytes),
            Outcome::DroppedOnEgress(DropReason::Malformed)
        );
        assert_eq!(
            receive(&pair.nodes[1], pair.nodes[0].underlay, bytes),
            Outcome::DroppedOnIngress(DropReason::Malformed)
        );
    }
}

#[test]
fn sender_answers_what_it_cannot_forward() {
    let mut pair = Pair::new();
    // No route.
    let p = udp4("198.19.1.10", "198.19.7.1", 64, 10);
    let Outcome::Replied(DropReason::NoRoute, reply) = pair.send(0, &p) else {
        panic!()
    };
    let sliced = SlicedPacket::from_ip(&reply).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
        panic!()
    };
    assert_eq!(
        IpAddr::from(ip.header().source()),
        pair.nodes[0].table.router_addr(false).unwrap()
    );
    assert_eq!(ip.header().destination(), v4("198.19.1.10"));
    // The reply goes back into node 1's own TUN, towards a local address: node 1 would not
    // encapsulate it (it is local), so it cannot loop.
    assert_eq!(
        pair.send(0, &reply),
        Outcome::DroppedOnEgress(DropReason::Loop)
    );

    // Hop limit.
    let p = udp6("fd19:0:0:1::10", "fd19:0:0:2::20", 1, 10);
    let Outcome::Replied(DropReason::TtlExceeded, reply) = pair.send(0, &p) else {
        panic!()
    };
    let sliced = SlicedPacket::from_ip(&reply).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = sliced.transport else {
        panic!()
    };
    assert!(icmp.is_checksum_valid(v6("fd19:0:0:1::"), v6("fd19:0:0:1::10")));

    // Too big.
    let p = udp4("198.19.1.10", "198.19.2.20", 64, TUNNEL_MTU);
    let Outcome::Replied(DropReason::TooBig, reply) = pair.send(0, &p) else {
        panic!()
    };
    let sliced = SlicedPacket::from_ip(&reply).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = sliced.transport else {
        panic!()
    };
    assert_eq!(icmp.bytes5to8()[2..], (TUNNEL_MTU as u16).to_be_bytes());
}

#[test]
fn ttl_one_is_answered_not_forwarded() {
    let mut pair = Pair::new();
    // Each hop decrements once: 2 arrives as 1 ...
    let p = udp4("198.19.1.10", "198.19.2.20", 2, 10);
    let Outcome::Delivered(arrived) = pair.send(0, &p) else {
        panic!()
    };
    assert_eq!(arrived[8], 1);
    // ... and 1 is not sent on: the sender answers from its own router address.
    let p = udp4("198.19.2.20", "198.19.1.10", 1, 10);
    let Outcome::Replied(DropReason::TtlExceeded, reply) = pair.send(1, &p) else {
        panic!()
    };
    let sliced = SlicedPacket::from_ip(&reply).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), v4("198.19.2.0"));
    assert_eq!(ip.header().destination(), v4("198.19.2.20"));
    let Some(TransportSlice::Icmpv4(icmp)) = sliced.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (11, 0));
    assert_eq!(icmp.payload(), &p[..]);
}
