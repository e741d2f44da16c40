//! ICMP and ICMPv6 error building (`datapath::icmp::build`).
//!
//! Input: `[kind:1][mtu:2][router:1][out_len:2][orig...]`.
//!
//! Asserts: whatever `build` emits fits `out` and the RFC size limits, parses with etherparse,
//! has valid IP and ICMP checksums, goes from the router to the original sender, carries the
//! type and code of the kind asked for (and the MTU of "too big"), and quotes the start of the
//! original packet; nothing is emitted for a router of the other family or an original that is
//! an ICMP error or a non-first fragment.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use datapath::icmp::{build, IcmpKind, MAX_LEN, MAX_LEN_V4};
use datapath::wire::IpPacket;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use tundra_fuzz::{naive_sum, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let kind_sel = input.u8();
    let mtu = input.u16();
    let router_sel = input.u8();
    let out_len = usize::from(input.u16()) % (MAX_LEN + 64);
    let orig = input.rest();

    let kind = match kind_sel % 3 {
        0 => IcmpKind::NoRoute,
        1 => IcmpKind::TimeExceeded,
        _ => IcmpKind::TooBig { mtu },
    };
    let router = match router_sel % 3 {
        0 => IpAddr::V4(Ipv4Addr::new(198, 19, 1, 0)),
        1 => IpAddr::V6("fd19:0:0:1::".parse::<Ipv6Addr>().unwrap()),
        // Any address, as the router's is not checked.
        _ => IpAddr::V4(Ipv4Addr::from(u32::from(router_sel) << 24 | 0x0a0b0c)),
    };
    // Large enough for anything, or cut to a fuzzed length.
    let mut buf = [0xa5u8; MAX_LEN + 64];
    let out = if router_sel & 0x80 != 0 {
        &mut buf[..out_len]
    } else {
        &mut buf[..MAX_LEN]
    };
    let out_cap = out.len();
    let Some(n) = build(kind, router, orig, out) else {
        return;
    };

    let pkt = IpPacket::new_checked(orig).expect("an answered packet is valid");
    assert!(
        !pkt.is_icmp_error_or_fragment(),
        "answered an error or fragment"
    );
    assert_eq!(
        router.is_ipv6(),
        pkt.is_ipv6(),
        "router of the other family"
    );
    assert!(n <= out_cap);
    let reply = &buf[..n];
    let sliced = SlicedPacket::from_ip(reply).expect("the reply parses");
    match (sliced.net, sliced.transport) {
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(icmp))) => {
            assert!(n <= MAX_LEN_V4);
            let h = ip.header();
            assert_eq!(usize::from(h.total_len()), n);
            assert_eq!(h.ihl(), 5);
            assert_eq!(naive_sum(&reply[..20]), 0xffff, "IPv4 header checksum");
            assert_eq!(naive_sum(&reply[20..]), 0xffff, "ICMP checksum");
            assert_eq!(IpAddr::V4(h.source_addr()), router);
            assert_eq!(IpAddr::V4(h.destination_addr()), pkt.src_addr());
            let (ty, code, rest) = match kind {
                IcmpKind::NoRoute => (3, 0, [0; 4]),
                IcmpKind::TimeExceeded => (11, 0, [0; 4]),
                IcmpKind::TooBig { mtu } => {
                    let m = mtu.to_be_bytes();
                    (3, 4, [0, 0, m[0], m[1]])
                }
            };
            assert_eq!((icmp.type_u8(), icmp.code_u8()), (ty, code));
            assert_eq!(icmp.bytes5to8(), rest);
            assert!(orig.starts_with(icmp.payload()), "quote");
            // As much as fits 576 bytes (RFC 1812 §4.3.2.3) and `out`.
            let room = MAX_LEN_V4.min(out_cap) - 28;
            assert_eq!(icmp.payload().len(), orig.len().min(room));
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) => {
            assert!(n <= MAX_LEN);
            let h = ip.header();
            assert_eq!(usize::from(h.payload_length()) + 40, n);
            let (src, dst) = (h.source(), h.destination());
            assert_eq!(IpAddr::from(src), router);
            assert_eq!(IpAddr::from(dst), pkt.src_addr());
            assert!(icmp.is_checksum_valid(src, dst), "ICMPv6 checksum");
            let (ty, code, rest) = match kind {
                IcmpKind::NoRoute => (1, 0, [0; 4]),
                IcmpKind::TimeExceeded => (3, 0, [0; 4]),
                IcmpKind::TooBig { mtu } => (2, 0, u32::from(mtu).to_be_bytes()),
            };
            assert_eq!((icmp.type_u8(), icmp.code_u8()), (ty, code));
            assert_eq!(icmp.bytes5to8(), rest);
            assert!(orig.starts_with(icmp.payload()), "quote");
            // As much as fits the minimum MTU (RFC 4443 §2.4 (c)) and `out`.
            let room = MAX_LEN.min(out_cap) - 48;
            assert_eq!(icmp.payload().len(), orig.len().min(room));
        }
        other => panic!("not an ICMP error: {other:?}"),
    }
});
