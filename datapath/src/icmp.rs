//! ICMP (IPv4) and ICMPv6 error messages that tundra, acting as a router hop, writes back into
//! the TUN device towards the sender of a packet it cannot forward.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::{checksum_add, fold, proto, IpPacket};

/// Largest error message [`build`] writes: IPv6's minimum MTU (RFC 4443 §2.4 (c)); IPv4 errors
/// are cut at 576 bytes (RFC 1812 §4.3.2.3).
pub const MAX_LEN: usize = 1280;

/// Largest ICMP (IPv4) error message (RFC 1812 §4.3.2.3).
pub const MAX_LEN_V4: usize = 576;

/// Hop limit / TTL of the errors we originate.
const HOP_LIMIT: u8 = 64;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;

/// Which error to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpKind {
    /// ICMP type 3 code 0 (net unreachable) / ICMPv6 type 1 code 0 (no route to destination).
    NoRoute,
    /// ICMP type 11 code 0 / ICMPv6 type 3 code 0: TTL or hop limit exceeded in transit.
    TimeExceeded,
    /// ICMP type 3 code 4 (fragmentation needed, next-hop MTU) / ICMPv6 type 2 (packet too big).
    TooBig { mtu: u16 },
}

/// Writes the error message answering `orig` into `out` and returns its length, or `None` when
/// no error may be sent: `orig` is itself an ICMP error or a non-first fragment, its source is
/// unspecified, multicast, broadcast or loopback, or `router` is of the other IP version.
///
/// `router` is the source address of the error (this node's address on the overlay); the
/// destination is `orig`'s source. `orig` must be a packet that passed
/// [`crate::wire::IpPacket::new_checked`]. `out` must hold at least [`MAX_LEN`] bytes.
///
/// Also `None` when `orig` does not pass `new_checked`, when `out` cannot hold even the headers,
/// or (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)) when `orig` went to a multicast or broadcast
/// destination, except that ICMPv6 Packet Too Big does answer multicast. As much of `orig` is
/// quoted as fits [`MAX_LEN_V4`] (IPv4) or [`MAX_LEN`] (IPv6) and `out`.
pub fn build(kind: IcmpKind, router: IpAddr, orig: &[u8], out: &mut [u8]) -> Option<usize> {
    let pkt = IpPacket::new_checked(orig).ok()?;
    if pkt.is_icmp_error_or_fragment() {
        return None;
    }
    match (router, pkt.src_addr(), pkt.dst_addr()) {
        (IpAddr::V4(router), IpAddr::V4(src), IpAddr::V4(dst)) => {
            if !v4_answerable(src) || dst.is_multicast() || dst.is_broadcast() {
                return None;
            }
            build_v4(kind, router, src, orig, out)
        }
        (IpAddr::V6(router), IpAddr::V6(src), IpAddr::V6(dst)) => {
            if !v6_answerable(src) {
                return None;
            }
            if dst.is_multicast() && !matches!(kind, IcmpKind::TooBig { .. }) {
                return None;
            }
            build_v6(kind, router, src, orig, out)
        }
        _ => None,
    }
}

/// A source an error may be sent to: a unicast address that is not ours-by-definition.
fn v4_answerable(src: Ipv4Addr) -> bool {
    !(src.is_unspecified() || src.is_multicast() || src.is_broadcast() || src.is_loopback())
}

fn v6_answerable(src: Ipv6Addr) -> bool {
    !(src.is_unspecified() || src.is_multicast() || src.is_loopback())
}

fn build_v4(
    kind: IcmpKind,
    router: Ipv4Addr,
    dst: Ipv4Addr,
    orig: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let cap = MAX_LEN_V4.min(out.len());
    let hdrs = IPV4_HEADER_LEN + ICMP_HEADER_LEN;
    let quote = orig.len().min(cap.checked_sub(hdrs)?);
    let total = hdrs + quote;
    let out = out.get_mut(..total)?;
    let (ip, rest) = out.split_at_mut(IPV4_HEADER_LEN);

    let (ty, code, rest_of_header) = match kind {
        IcmpKind::NoRoute => (3, 0, [0; 4]),
        IcmpKind::TimeExceeded => (11, 0, [0; 4]),
        // RFC 1191: next-hop MTU in the low 16 bits of the second word.
        IcmpKind::TooBig { mtu } => {
            let m = mtu.to_be_bytes();
            (3, 4, [0, 0, m[0], m[1]])
        }
    };
    rest[0] = ty;
    rest[1] = code;
    rest[2..4].fill(0);
    rest[4..8].copy_from_slice(&rest_of_header);
    rest[ICMP_HEADER_LEN..].copy_from_slice(&orig[..quote]);
    let csum = !fold(checksum_add(0, rest));
    rest[2..4].copy_from_slice(&csum.to_be_bytes());

    // total <= 576, so it fits in u16.
    let total_len = (total as u16).to_be_bytes();
    ip[0] = 0x45;
    // DSCP CS6 (internetwork control), as routers send their ICMP.
    ip[1] = 0xc0;
    ip[2..4].copy_from_slice(&total_len);
    ip[4..8].fill(0); // identification, flags, fragment offset
    ip[8] = HOP_LIMIT;
    ip[9] = proto::ICMP;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&router.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let csum = !fold(checksum_add(0, ip));
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    Some(total)
}

fn build_v6(
    kind: IcmpKind,
    router: Ipv6Addr,
    dst: Ipv6Addr,
    orig: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let cap = MAX_LEN.min(out.len());
    let hdrs = IPV6_HEADER_LEN + ICMP_HEADER_LEN;
    let quote = orig.len().min(cap.checked_sub(hdrs)?);
    let total = hdrs + quote;
    let out = out.get_mut(..total)?;
    let (ip, rest) = out.split_at_mut(IPV6_HEADER_LEN);

    let (ty, code, rest_of_header) = match kind {
        IcmpKind::NoRoute => (1, 0, [0; 4]),
        IcmpKind::TimeExceeded => (3, 0, [0; 4]),
        IcmpKind::TooBig { mtu } => (2, 0, u32::from(mtu).to_be_bytes()),
    };
    // rest.len() <= 1240, so it fits in u16.
    let payload_len = rest.len() as u16;
    rest[0] = ty;
    rest[1] = code;
    rest[2..4].fill(0);
    rest[4..8].copy_from_slice(&rest_of_header);
    rest[ICMP_HEADER_LEN..].copy_from_slice(&orig[..quote]);
    // Pseudo-header (RFC 8200 §8.1): source, destination, upper-layer length, next header.
    let mut sum = checksum_add(0, &router.octets());
    sum = checksum_add(sum, &dst.octets());
    sum += u32::from(payload_len);
    sum += u32::from(proto::ICMPV6);
    sum = checksum_add(sum, rest);
    let csum = !fold(sum);
    rest[2..4].copy_from_slice(&csum.to_be_bytes());

    ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
    ip[6] = proto::ICMPV6;
    ip[7] = HOP_LIMIT;
    ip[8..24].copy_from_slice(&router.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    Some(total)
}

#[cfg(test)]
mod tests {
    use etherparse::{
        icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, NetSlice, SlicedPacket,
        TransportSlice,
    };

    use super::*;
    use crate::testutil::*;

    const ROUTER4: [u8; 4] = [198, 19, 1, 0];
    const ROUTER6: [u8; 16] = [0xfd, 0x19, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];

    /// One's-complement sum of `data` computed the slow, obvious way.
    fn naive_sum(data: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for (i, &byte) in data.iter().enumerate() {
            sum += u64::from(byte) << if i % 2 == 0 { 8 } else { 0 };
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// Parses a generated ICMP/IPv4 error, checks both checksums and the addresses, returns
    /// (type, payload).
    fn parse_v4(reply: &[u8], to: [u8; 4]) -> (Icmpv4Type, Vec<u8>) {
        let sliced = SlicedPacket::from_ip(reply).expect("parses");
        let Some(NetSlice::Ipv4(ip)) = sliced.net else {
            panic!("not IPv4")
        };
        let h = ip.header();
        assert_eq!(h.total_len() as usize, reply.len());
        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        assert_eq!(h.source(), ROUTER4);
        assert_eq!(h.destination(), to);
        assert_eq!(h.ttl(), 64);
        assert_eq!(naive_sum(&reply[..20]), 0xffff);
        let Some(TransportSlice::Icmpv4(icmp)) = sliced.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type().calc_checksum(icmp.payload())
        );
        assert_eq!(naive_sum(&reply[20..]), 0xffff);
        (icmp.icmp_type(), icmp.payload().to_vec())
    }

    fn parse_v6(reply: &[u8], to: [u8; 16]) -> (Icmpv6Type, Vec<u8>) {
        let sliced = SlicedPacket::from_ip(reply).expect("parses");
        let Some(NetSlice::Ipv6(ip)) = sliced.net else {
            panic!("not IPv6")
        };
        let h = ip.header();
        assert_eq!(h.payload_length() as usize + 40, reply.len());
        assert_eq!(h.source(), ROUTER6);
        assert_eq!(h.destination(), to);
        assert_eq!(h.hop_limit(), 64);
        let Some(TransportSlice::Icmpv6(icmp)) = sliced.transport else {
            panic!("not ICMPv6")
        };
        assert!(icmp.is_checksum_valid(ROUTER6, to));
        (icmp.icmp_type(), icmp.payload().to_vec())
    }

    fn build_v4(kind: IcmpKind, orig: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; MAX_LEN];
        build(kind, IpAddr::from(ROUTER4), orig, &mut out).map(|n| out[..n].to_vec())
    }

    fn build_v6(kind: IcmpKind, orig: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; MAX_LEN];
        build(kind, IpAddr::from(ROUTER6), orig, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn v4_no_route_quotes_whole_small_packet() {
        let orig = ipv4_udp(V4_A, V4_B, 64, true, 40);
        let reply = build_v4(IcmpKind::NoRoute, &orig).unwrap();
        assert_eq!(reply.len(), 20 + 8 + orig.len());
        let (ty, payload) = parse_v4(&reply, V4_A);
        assert_eq!(
            ty,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Network)
        );
        assert_eq!(payload, orig);
    }

    #[test]
    fn v4_time_exceeded() {
        let orig = ipv4_udp(V4_A, V4_B, 1, false, 3);
        let reply = build_v4(IcmpKind::TimeExceeded, &orig).unwrap();
        let (ty, payload) = parse_v4(&reply, V4_A);
        assert!(matches!(ty, Icmpv4Type::TimeExceeded(_)));
        assert_eq!(reply[20..22], [11, 0]);
        assert_eq!(payload, orig);
    }

    #[test]
    fn v4_too_big_carries_mtu_and_is_cut_at_576() {
        let orig = ipv4_udp(V4_A, V4_B, 64, true, 1400);
        let reply = build_v4(IcmpKind::TooBig { mtu: 1380 }, &orig).unwrap();
        assert_eq!(reply.len(), MAX_LEN_V4);
        let (ty, payload) = parse_v4(&reply, V4_A);
        assert_eq!(
            ty,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1380
            })
        );
        assert_eq!(payload, orig[..MAX_LEN_V4 - 28]);
    }

    #[test]
    fn v4_answers_echo_request() {
        let orig = ipv4_icmp(V4_A, V4_B, 8, 0);
        let reply = build_v4(IcmpKind::NoRoute, &orig).unwrap();
        assert_eq!(parse_v4(&reply, V4_A).1, orig);
    }

    #[test]
    fn v6_no_route_and_time_exceeded() {
        let orig = ipv6_udp(V6_A, V6_B, 64, 100);
        let reply = build_v6(IcmpKind::NoRoute, &orig).unwrap();
        assert_eq!(reply.len(), 48 + orig.len());
        let (ty, payload) = parse_v6(&reply, V6_A);
        assert_eq!(
            ty,
            Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::NoRoute)
        );
        assert_eq!(payload, orig);

        let reply = build_v6(IcmpKind::TimeExceeded, &orig).unwrap();
        let (ty, _) = parse_v6(&reply, V6_A);
        assert_eq!(
            ty,
            Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded)
        );
    }

    #[test]
    fn v6_too_big_is_cut_at_1280() {
        let orig = ipv6_udp(V6_A, V6_B, 64, 1452);
        let reply = build_v6(IcmpKind::TooBig { mtu: 1400 }, &orig).unwrap();
        assert_eq!(reply.len(), MAX_LEN);
        let (ty, payload) = parse_v6(&reply, V6_A);
        assert_eq!(ty, Icmpv6Type::PacketTooBig { mtu: 1400 });
        assert_eq!(payload, orig[..MAX_LEN - 48]);
    }

    #[test]
    fn quote_shrinks_to_fit_a_small_buffer() {
        let orig = ipv4_udp(V4_A, V4_B, 64, true, 200);
        let mut out = [0u8; 100];
        let n = build(IcmpKind::NoRoute, IpAddr::from(ROUTER4), &orig, &mut out).unwrap();
        assert_eq!(n, 100);
        assert_eq!(parse_v4(&out, V4_A).1, orig[..72]);
        // Not even the headers fit.
        let mut tiny = [0u8; 27];
        assert_eq!(
            build(IcmpKind::NoRoute, IpAddr::from(ROUTER4), &orig, &mut tiny),
            None
        );
        let mut tiny = [0u8; 47];
        let orig6 = ipv6_udp(V6_A, V6_B, 64, 0);
        assert_eq!(
            build(IcmpKind::NoRoute, IpAddr::from(ROUTER6), &orig6, &mut tiny),
            None
        );
    }

    #[test]
    fn never_answers_icmp_errors_or_fragments() {
        for ty in [3, 4, 5, 11, 12] {
            assert_eq!(
                build_v4(IcmpKind::NoRoute, &ipv4_icmp(V4_A, V4_B, ty, 1)),
                None
            );
        }
        for ty in [1, 2, 3, 4] {
            assert_eq!(
                build_v6(IcmpKind::NoRoute, &ipv6_icmp(V6_A, V6_B, ty, 0)),
                None
            );
        }
        assert_eq!(
            build_v4(IcmpKind::TimeExceeded, &ipv4_fragment(V4_A, V4_B, 10, true)),
            None
        );
        // The first fragment is answered.
        assert!(build_v4(IcmpKind::TimeExceeded, &ipv4_fragment(V4_A, V4_B, 0, true)).is_some());
        let frag6 = ipv6_raw(V6_A, V6_B, 44, &[17, 0, 0x01, 0x01, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(build_v6(IcmpKind::NoRoute, &frag6), None);
    }

    #[test]
    fn never_answers_unusable_sources() {
        let v4_sources = [
            [0, 0, 0, 0],
            [224, 0, 0, 1],
            [239, 1, 2, 3],
            [255, 255, 255, 255],
            [127, 0, 0, 1],
        ];
        for src in v4_sources {
            let orig = ipv4_udp(src, V4_B, 64, true, 8);
            assert_eq!(build_v4(IcmpKind::NoRoute, &orig), None, "{src:?}");
        }
        let mut v6_sources = [[0u8; 16]; 3];
        v6_sources[1][0] = 0xff; // ff00::
        v6_sources[1][1] = 0x02;
        v6_sources[1][15] = 1;
        v6_sources[2][15] = 1; // ::1
        for src in v6_sources {
            let orig = ipv6_udp(src, V6_B, 64, 8);
            assert_eq!(build_v6(IcmpKind::NoRoute, &orig), None, "{src:?}");
        }
    }

    #[test]
    fn multicast_and_broadcast_destinations() {
        for dst in [[224, 0, 0, 5], [255, 255, 255, 255]] {
            let orig = ipv4_udp(V4_A, dst, 1, true, 8);
            assert_eq!(build_v4(IcmpKind::TimeExceeded, &orig), None);
        }
        let mut mcast = [0u8; 16];
        mcast[0] = 0xff;
        mcast[1] = 0x0e;
        mcast[15] = 0x42;
        let orig = ipv6_udp(V6_A, mcast, 64, 1300);
        assert_eq!(build_v6(IcmpKind::NoRoute, &orig), None);
        // RFC 4443 §2.4 (e.2): Packet Too Big does answer a multicast destination.
        let reply = build_v6(IcmpKind::TooBig { mtu: 1280 }, &orig).unwrap();
        assert!(matches!(
            parse_v6(&reply, V6_A).0,
            Icmpv6Type::PacketTooBig { mtu: 1280 }
        ));
    }

    #[test]
    fn router_of_the_other_family_or_malformed_orig() {
        let mut out = [0u8; MAX_LEN];
        let v4 = ipv4_udp(V4_A, V4_B, 64, true, 8);
        let v6 = ipv6_udp(V6_A, V6_B, 64, 8);
        assert_eq!(
            build(IcmpKind::NoRoute, IpAddr::from(ROUTER6), &v4, &mut out),
            None
        );
        assert_eq!(
            build(IcmpKind::NoRoute, IpAddr::from(ROUTER4), &v6, &mut out),
            None
        );
        assert_eq!(
            build(
                IcmpKind::NoRoute,
                IpAddr::from(ROUTER4),
                &v4[..30],
                &mut out
            ),
            None
        );
        assert_eq!(
            build(IcmpKind::NoRoute, IpAddr::from(ROUTER4), &[], &mut out),
            None
        );
    }
}
