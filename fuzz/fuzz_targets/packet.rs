//! The inner packet view (`datapath::wire`) and the per-packet decisions of both directions
//! (`datapath::tunnel`) against the fixed table of `tundra_fuzz`.
//!
//! Input: `[mtu:2][sender:1][flags:1][packet...]`.
//!
//! Asserts: `IpPacket::new_checked` accepts exactly what its contract says (version 4 or 6,
//! header and total lengths consistent with the buffer) and its accessors read the header;
//! decrementing the hop limit changes that byte (and the IPv4 checksum, kept valid) only;
//! `encapsulate` and `decapsulate` reach the verdict of a reference written from their docs
//! (checks in order, naive longest-prefix match), and a reply is an ICMP error to the sender.

#![no_main]

use std::net::IpAddr;

use datapath::icmp::MAX_LEN;
use datapath::stats::DropReason;
use datapath::wire::IpPacket;
use datapath::{decapsulate, Egress, Encapsulator, Ingress, Table, WireFormat};
use libfuzzer_sys::fuzz_target;
use tundra_fuzz::{naive_lpm, naive_sum, routes, sender, table, Input};

thread_local! {
    static TABLES: [Table; 2] = [table(WireFormat::Udp), table(WireFormat::Vxlan)];
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mtu = usize::from(input.u16());
    let from = input.u8();
    let flags = input.u8();
    let packet = input.rest();
    let format = usize::from(flags & 1);

    let checked = check_view(packet);
    TABLES.with(|tables| {
        let t = &tables[format];
        let port = if format == 0 { 8285 } else { 8472 };
        egress(t, packet, checked, mtu, flags & 2 != 0, port);
        ingress(t, packet, checked, from, port);
    });
});

/// `IpPacket` against its contract; returns whether the packet is valid.
fn check_view(b: &[u8]) -> bool {
    let be16 = |at: usize| usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
    let expected = match b.first().map(|v| v >> 4) {
        Some(4) if b.len() >= 20 => {
            let ihl = usize::from(b[0] & 0x0f) * 4;
            ihl >= 20 && ihl <= b.len() && be16(2) == b.len()
        }
        Some(6) if b.len() >= 40 => be16(4) + 40 == b.len(),
        _ => false,
    };
    let Ok(pkt) = IpPacket::new_checked(b) else {
        assert!(!expected, "refused a valid packet");
        return false;
    };
    assert!(expected, "accepted an invalid packet");
    let v6 = b[0] >> 4 == 6;
    assert_eq!(pkt.is_ipv6(), v6);
    assert_eq!(pkt.len(), b.len());
    assert!(!pkt.is_empty());
    assert!(pkt.header_len() <= pkt.len());
    let (src, dst, hop): (IpAddr, IpAddr, u8) = if v6 {
        let a = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&b[at..at + 16]).unwrap());
        (a(8), a(24), b[7])
    } else {
        let a = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&b[at..at + 4]).unwrap());
        (a(12), a(16), b[8])
    };
    assert_eq!(
        (pkt.src_addr(), pkt.dst_addr(), pkt.hop_limit()),
        (src, dst, hop)
    );
    assert_eq!(pkt.dont_fragment(), v6 || b[6] & 0x40 != 0);
    // A non-first IPv4 fragment is never answered.
    if !v6 && be16(6) & 0x1fff != 0 {
        assert!(pkt.is_icmp_error_or_fragment());
    }

    let mut copy = b.to_vec();
    let mut pkt = IpPacket::new_checked(&mut copy[..]).expect("checked above");
    pkt.decrement_hop_limit();
    let (hop_at, csum) = if v6 { (7, None) } else { (8, Some(10..12)) };
    assert_eq!(copy[hop_at], hop.saturating_sub(1));
    for (i, (x, y)) in b.iter().zip(&copy).enumerate() {
        if i != hop_at && !csum.as_ref().is_some_and(|c| c.contains(&i)) {
            assert_eq!(x, y, "byte {i} changed");
        }
    }
    if !v6 {
        let ihl = usize::from(b[0] & 0x0f) * 4;
        if naive_sum(&b[..ihl]) == 0xffff && hop > 0 {
            assert_eq!(naive_sum(&copy[..ihl]), 0xffff, "IPv4 checksum broken");
        }
    }
    true
}

/// `Encapsulator::encapsulate` against its documented checks.
fn egress(t: &Table, packet: &[u8], valid: bool, mtu: usize, gso: bool, port: u16) {
    let mut enc = Encapsulator::new(mtu, 1000);
    let mut p = packet.to_vec();
    let mut reply = [0u8; MAX_LEN];
    let verdict = if gso {
        enc.encapsulate_gso(t, &mut p, &mut reply, 1)
    } else {
        enc.encapsulate(t, &mut p, &mut reply, 1)
    };
    if !valid {
        assert_eq!(verdict, Egress::Drop(DropReason::Malformed));
        assert_eq!(p, packet);
        return;
    }
    let pkt = IpPacket::new_checked(packet).expect("valid");
    let dst = pkt.dst_addr();
    let routes = routes(port);
    let expected = if t.is_local(dst) {
        Err(DropReason::Loop)
    } else if let Some(route) = naive_lpm(&routes, dst) {
        if pkt.hop_limit() <= 1 {
            Err(DropReason::TtlExceeded)
        } else if !gso && pkt.len() > mtu && pkt.dont_fragment() {
            Err(DropReason::TooBig)
        } else {
            Ok(route.peer)
        }
    } else {
        Err(DropReason::NoRoute)
    };
    match (verdict, expected) {
        (Egress::Send(peer), Ok(addr)) => {
            assert_eq!(t.peer(peer).addr, addr);
            let hop = if pkt.is_ipv6() { 7 } else { 8 };
            assert_eq!(p[hop], packet[hop] - 1);
            assert_eq!(p.len(), packet.len());
        }
        (Egress::Reply { len, reason }, Err(expected)) => {
            assert_eq!(reason, expected);
            assert!(matches!(
                reason,
                DropReason::NoRoute | DropReason::TtlExceeded | DropReason::TooBig
            ));
            assert_eq!(p, packet);
            let reply = &reply[..len];
            let to = IpPacket::new_checked(reply).expect("a reply is a valid packet");
            assert_eq!(to.dst_addr(), pkt.src_addr());
            assert_eq!(Some(to.src_addr()), t.router_addr(pkt.is_ipv6()));
        }
        (Egress::Drop(reason), Err(expected)) => {
            assert_eq!(reason, expected);
            assert_eq!(p, packet);
        }
        (verdict, expected) => panic!("verdict {verdict:?}, expected {expected:?}"),
    }
}

/// `decapsulate` against its documented checks.
fn ingress(t: &Table, packet: &[u8], valid: bool, from: u8, port: u16) {
    let from_port = if from & 0x80 != 0 { 40000 } else { port };
    let addr = sender(from & 0x7f, from_port);
    let verdict = decapsulate(t, addr, packet);
    let routes = routes(port);
    // A sender is a peer when a route names its address (and its port in udp).
    let canonical = datapath::route::canonical_addr(addr);
    let peer = routes.iter().find(|r| match t.format() {
        WireFormat::Udp => r.peer == canonical,
        WireFormat::Vxlan => r.peer.ip() == canonical.ip(),
    });
    let expected = match peer {
        None => Err(DropReason::UnknownPeer),
        Some(_) if !valid => Err(DropReason::Malformed),
        Some(peer) => {
            let pkt = IpPacket::new_checked(packet).expect("valid");
            if naive_lpm(&routes, pkt.src_addr()).map(|r| r.peer) != Some(peer.peer) {
                Err(DropReason::Spoofed)
            } else if !t.is_local(pkt.dst_addr()) {
                Err(DropReason::NotLocal)
            } else {
                Ok(peer.peer)
            }
        }
    };
    match (verdict, expected) {
        (Ingress::Deliver(id), Ok(addr)) => assert_eq!(t.peer(id).addr, addr),
        (Ingress::Drop(reason), Err(expected)) => assert_eq!(reason, expected),
        (verdict, expected) => panic!("verdict {verdict:?}, expected {expected:?}"),
    }
}
