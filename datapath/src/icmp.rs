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
