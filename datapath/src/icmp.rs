//! ICMP (IPv4) and ICMPv6 error messages that tundra, acting as a router hop, writes back into
//! the TUN device towards the sender of a packet it cannot forward.

use std::net::IpAddr;

/// Largest error message [`build`] writes: IPv6's minimum MTU (RFC 4443 §2.4 (c)); IPv4 errors
/// are cut at 576 bytes (RFC 1812 §4.3.2.3).
pub const MAX_LEN: usize = 1280;

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
pub fn build(kind: IcmpKind, router: IpAddr, orig: &[u8], out: &mut [u8]) -> Option<usize> {
    let _ = (kind, router, orig, out);
    todo!()
}
