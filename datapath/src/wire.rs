//! A checked view of an inner IP packet (IPv4 or IPv6), as read from the TUN device or carried
//! as a UDP payload.
//!
//! [`IpPacket::new_checked`] validates the header once; after it succeeds no accessor can panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a buffer is not a well-formed inner IP packet. Tiny and `Copy`: it is returned on the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the fixed header of its version (or empty).
    Truncated,
    /// Version nibble is neither 4 nor 6.
    BadVersion,
    /// IPv4 IHL below 5, or beyond the buffer.
    BadHeaderLen,
    /// IPv4 total length / IPv6 payload length does not match the buffer length.
    BadTotalLen,
}

/// Byte offsets of the header fields this crate reads or rewrites.
mod field {
    /// IPv4 (RFC 791).
    pub mod v4 {
        pub const HEADER_LEN: usize = 20;
        pub const VER_IHL: usize = 0;
        pub const TOTAL_LEN: usize = 2;
        pub const FLAGS_FRAG: usize = 6;
        pub const TTL: usize = 8;
        pub const PROTOCOL: usize = 9;
        pub const CHECKSUM: usize = 10;
        pub const SRC: usize = 12;
        pub const DST: usize = 16;
        pub const FLAG_DF: u16 = 0x4000;
        pub const FRAG_OFFSET_MASK: u16 = 0x1fff;
    }
    /// IPv6 (RFC 8200).
    pub mod v6 {
        pub const HEADER_LEN: usize = 40;
        pub const PAYLOAD_LEN: usize = 4;
        pub const NEXT_HEADER: usize = 6;
        pub const HOP_LIMIT: usize = 7;
        pub const SRC: usize = 8;
        pub const DST: usize = 24;
    }
}

/// IP protocol numbers this module cares about.
pub(crate) mod proto {
    pub const ICMP: u8 = 1;
    pub const IPV6_HOP_BY_HOP: u8 = 0;
    pub const IPV6_ROUTING: u8 = 43;
    pub const IPV6_FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_DEST_OPTS: u8 = 60;
}

/// At most this many IPv6 extension headers are walked looking for an ICMPv6 header; a longer
/// chain is treated as "might be an error" (nothing is answered).
const MAX_EXT_HEADERS: usize = 8;

/// A validated inner IP packet over a buffer that holds exactly that packet.
#[derive(Debug)]
pub struct IpPacket<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Validates version, header length and total length against `buf.len()` (which must be equal:
    /// a TUN read and a UDP payload both carry exactly one packet).
    ///
    /// # Errors
    /// [`WireError`] says which check failed; IPv6 jumbograms (payload length 0 with a
    /// hop-by-hop jumbo option) are not supported and fail with [`WireError::BadTotalLen`].
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        let Some(&first) = b.first() else {
            return Err(WireError::Truncated);
        };
        match first >> 4 {
            4 => {
                if b.len() < field::v4::HEADER_LEN {
                    return Err(WireError::Truncated);
                }
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < field::v4::HEADER_LEN || ihl > b.len() {
                    return Err(WireError::BadHeaderLen);
                }
                if usize::from(be16(b, field::v4::TOTAL_LEN)) != b.len() {
                    return Err(WireError::BadTotalLen);
                }
            }
            6 => {
                if b.len() < field::v6::HEADER_LEN {
                    return Err(WireError::Truncated);
                }
                let payload = usize::from(be16(b, field::v6::PAYLOAD_LEN));
                if payload + field::v6::HEADER_LEN != b.len() {
                    return Err(WireError::BadTotalLen);
                }
            }
            _ => return Err(WireError::BadVersion),
        }
        Ok(Self { buf })
    }

    /// `true` for IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.bytes()[0] >> 4 == 6
    }

    pub fn src_addr(&self) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::V6(v6_addr(self.bytes(), field::v6::SRC))
        } else {
            IpAddr::V4(v4_addr(self.bytes(), field::v4::SRC))
        }
    }

    pub fn dst_addr(&self) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::V6(v6_addr(self.bytes(), field::v6::DST))
        } else {
            IpAddr::V4(v4_addr(self.bytes(), field::v4::DST))
        }
    }

    /// TTL (IPv4) or hop limit (IPv6).
    pub fn hop_limit(&self) -> u8 {
        if self.is_ipv6() {
            self.bytes()[field::v6::HOP_LIMIT]
        } else {
            self.bytes()[field::v4::TTL]
        }
    }

    /// IPv4 Don't Fragment flag; always `true` for IPv6 (routers never fragment IPv6).
    pub fn dont_fragment(&self) -> bool {
        self.is_ipv6() || be16(self.bytes(), field::v4::FLAGS_FRAG) & field::v4::FLAG_DF != 0
    }

    /// `true` when this is an ICMP/ICMPv6 error message (to which no ICMP error may be sent) or a
    /// non-first IPv4 fragment.
    ///
    /// For IPv6 the extension header chain is walked (a bounded number of headers): a non-first
    /// fragment also counts, and so does a chain that cannot be followed to its end, since then
    /// nothing proves the packet is not an ICMPv6 error.
    pub fn is_icmp_error_or_fragment(&self) -> bool {
        let b = self.bytes();
        if self.is_ipv6() {
            return ipv6_is_icmp_error_or_fragment(b);
        }
        if be16(b, field::v4::FLAGS_FRAG) & field::v4::FRAG_OFFSET_MASK != 0 {
            return true;
        }
        if b[field::v4::PROTOCOL] != proto::ICMP {
            return false;
        }
        // A first fragment or a whole packet: the ICMP type follows the header. A packet too
        // short to carry it is not answered either.
        let ihl = usize::from(b[field::v4::VER_IHL] & 0x0f) * 4;
        b.get(ihl).is_none_or(|&ty| is_icmpv4_error(ty))
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Always `false` for a checked packet; here because a `len` without it surprises readers.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// The IPv4 header length (IHL × 4), or 40 for IPv6 (extension headers not included).
    pub fn header_len(&self) -> usize {
        if self.is_ipv6() {
            field::v6::HEADER_LEN
        } else {
            usize::from(self.bytes()[field::v4::VER_IHL] & 0x0f) * 4
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IpPacket<T> {
    /// Decrements TTL / hop limit by one, updating the IPv4 header checksum incrementally
    /// (RFC 1624). The caller checks `hop_limit() > 1` first; a hop limit of 0 is left as is.
    pub fn decrement_hop_limit(&mut self) {
        let ipv6 = self.is_ipv6();
        let b = self.buf.as_mut();
        if ipv6 {
            let hl = &mut b[field::v6::HOP_LIMIT];
            *hl = hl.saturating_sub(1);
            return;
        }
        let ttl = b[field::v4::TTL];
        if ttl == 0 {
            return;
        }
        // The 16-bit word holding TTL (high byte) and protocol (low byte).
        let old = be16(b, field::v4::TTL);
        let new = old - 0x0100;
        b[field::v4::TTL] = ttl - 1;
        // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
        let hc = be16(b, field::v4::CHECKSUM);
        let sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
        let new_hc = !fold(sum);
        b[field::v4::CHECKSUM..field::v4::CHECKSUM + 2].copy_from_slice(&new_hc.to_be_bytes());
    }
}

/// ICMP (v4) types that are error messages (RFC 792, RFC 1812 §4.3.2.7).
fn is_icmpv4_error(ty: u8) -> bool {
    // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// Walks the IPv6 extension headers (at most [`MAX_EXT_HEADERS`]) to the upper-layer header.
fn ipv6_is_icmp_error_or_fragment(b: &[u8]) -> bool {
    let mut next = b[field::v6::NEXT_HEADER];
    let mut off = field::v6::HEADER_LEN;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            // ICMPv6 types below 128 are errors (RFC 4443 §2.1); no type byte: do not answer.
            proto::ICMPV6 => return b.get(off).is_none_or(|&ty| ty < 128),
            proto::IPV6_FRAGMENT => {
                let Some(h) = b.get(off..off + 8) else {
                    return true;
                };
                let frag_offset = u16::from_be_bytes([h[2], h[3]]) >> 3;
                if frag_offset != 0 {
                    return true;
                }
                next = h[0];
                off += 8;
            }
            proto::IPV6_HOP_BY_HOP | proto::IPV6_ROUTING | proto::IPV6_DEST_OPTS => {
                let Some(h) = b.get(off..off + 2) else {
                    return true;
                };
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
            proto::AH => {
                let Some(h) = b.get(off..off + 2) else {
                    return true;
                };
                next = h[0];
                off += (usize::from(h[1]) + 2) * 4;
            }
            _ => return false,
        }
    }
    true
}

/// Folds a one's-complement sum to 16 bits (end-around carry).
#[inline]
pub(crate) fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Adds `data` to a one's-complement sum as big-endian 16-bit words (an odd last byte is padded
/// with zero). Sums up to 64 KiB without overflow.
pub(crate) fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    // Keep headroom for the caller's next additions.
    u32::from(fold(sum))
}

/// Big-endian u16 at `at`. Callers pass offsets inside a validated header.
#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn v4_addr(b: &[u8], at: usize) -> Ipv4Addr {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    Ipv4Addr::from(a)
}

#[inline]
fn v6_addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// UDP/IPv4 198.18.0.1:1024 -> 198.19.2.20:53, TTL 64, DF, 4 bytes of payload; header
    /// checksum 0x00c5 (computed by hand, confirmed with etherparse below).
    const V4_BYTES: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0xab, 0xcd, 0x40, 0x00, 0x40, 0x11, 0x00, 0xc5, 198, 18, 0, 1, 198,
        19, 2, 20, // IPv4 header
        0x04, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, // UDP header (no checksum)
        0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn deconstruct_ipv4() {
        let p = IpPacket::new_checked(&V4_BYTES[..]).unwrap();
        assert!(!p.is_ipv6());
        assert_eq!(p.src_addr(), IpAddr::from([198, 18, 0, 1]));
        assert_eq!(p.dst_addr(), IpAddr::from([198, 19, 2, 20]));
        assert_eq!(p.hop_limit(), 64);
        assert!(p.dont_fragment());
        assert!(!p.is_icmp_error_or_fragment());
        assert_eq!(p.len(), 32);
        assert!(!p.is_empty());
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.as_bytes(), &V4_BYTES[..]);
        assert_eq!(ipv4_header_checksum(&V4_BYTES), 0x00c5);
    }

    #[test]
    fn deconstruct_ipv6() {
        let bytes = ipv6_udp(V6_A, V6_B, 17, 10);
        let p = IpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.is_ipv6());
        assert_eq!(p.src_addr(), IpAddr::from(V6_A));
        assert_eq!(p.dst_addr(), IpAddr::from(V6_B));
        assert_eq!(p.hop_limit(), 17);
        assert!(p.dont_fragment());
        assert!(!p.is_icmp_error_or_fragment());
        assert_eq!(p.len(), 40 + 8 + 10);
        assert_eq!(p.header_len(), 40);
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(
            IpPacket::new_checked(&[][..]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            IpPacket::new_checked(&V4_BYTES[..19]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            IpPacket::new_checked(&[0x45][..]).unwrap_err(),
            WireError::Truncated
        );
        let v6 = ipv6_udp(V6_A, V6_B, 64, 0);
        assert_eq!(
            IpPacket::new_checked(&v6[..39]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            IpPacket::new_checked(&[0x60][..]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn rejects_bad_version() {
        for version in [0u8, 1, 5, 7, 15] {
            let mut b = V4_BYTES;
            b[0] = version << 4 | 5;
            assert_eq!(
                IpPacket::new_checked(&b[..]).unwrap_err(),
                WireError::BadVersion
            );
        }
    }

    #[test]
    fn rejects_bad_ihl() {
        for ihl in 0..5 {
            let mut b = V4_BYTES;
            b[0] = 0x40 | ihl;
            assert_eq!(
                IpPacket::new_checked(&b[..]).unwrap_err(),
                WireError::BadHeaderLen
            );
        }
        // IHL 9 = 36 bytes, beyond the 32-byte buffer.
        let mut b = V4_BYTES;
        b[0] = 0x49;
        assert_eq!(
            IpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
        // IHL 8 = 32 bytes: the whole buffer is header, which is fine.
        b[0] = 0x48;
        let p = IpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 32);
    }

    #[test]
    fn rejects_total_len_mismatch() {
        let mut b = V4_BYTES;
        b[3] = 0x21; // says 33, buffer has 32
        assert_eq!(
            IpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadTotalLen
        );
        b[3] = 0x1f; // says 31
        assert_eq!(
            IpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadTotalLen
        );
        // Trailing bytes after a correct packet are rejected too.
        let mut long = V4_BYTES.to_vec();
        long.push(0);
        assert_eq!(
            IpPacket::new_checked(&long[..]).unwrap_err(),
            WireError::BadTotalLen
        );
        // So is a short buffer with a consistent-looking header.
        assert_eq!(
            IpPacket::new_checked(&V4_BYTES[..28]).unwrap_err(),
            WireError::BadTotalLen
        );
    }

    #[test]
    fn rejects_ipv6_payload_len_mismatch() {
        let good = ipv6_udp(V6_A, V6_B, 64, 12);
        let mut b = good.clone();
        b[5] += 1;
        assert_eq!(
            IpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadTotalLen
        );
        assert_eq!(
            IpPacket::new_checked(&good[..good.len() - 1]).unwrap_err(),
            WireError::BadTotalLen
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            IpPacket::new_checked(&long[..]).unwrap_err(),
            WireError::BadTotalLen
        );
        // Payload length 0 with data (a jumbogram) is not supported.
        b = good.clone();
        b[4] = 0;
        b[5] = 0;
        assert_eq!(
            IpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadTotalLen
        );
        // A bare header with payload length 0 is fine.
        let bare = ipv6_raw(V6_A, V6_B, 59, &[]);
        assert!(IpPacket::new_checked(&bare[..]).is_ok());
    }

    #[test]
    fn accepts_ipv4_options() {
        let mut b = vec![0x46, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        b.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        b.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        b.extend_from_slice(&[0; 4]);
        let p = IpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dst_addr(), IpAddr::from([198, 18, 0, 2]));
    }

    #[test]
    fn dont_fragment_flag() {
        let df = ipv4_udp(V4_A, V4_B, 64, true, 8);
        let no_df = ipv4_udp(V4_A, V4_B, 64, false, 8);
        assert!(IpPacket::new_checked(&df[..]).unwrap().dont_fragment());
        assert!(!IpPacket::new_checked(&no_df[..]).unwrap().dont_fragment());
    }

    #[test]
    fn decrement_ipv4_matches_full_recompute() {
        // Every TTL, a spread of header contents (identification, protocol, DF, addresses).
        for ttl in 1..=255u8 {
            for (i, df) in [(0u8, false), (1, true), (77, false), (255, true)] {
                let mut b = ipv4_udp([198, 18, i, 1], [198, 19, 255 - i, ttl], ttl, df, 20);
                b[4] = i;
                b[5] = ttl;
                let csum = ipv4_header_checksum(&b);
                b[10..12].copy_from_slice(&csum.to_be_bytes());
                let mut p = IpPacket::new_checked(&mut b[..]).unwrap();
                p.decrement_hop_limit();
                assert_eq!(p.hop_limit(), ttl - 1);
                let b = p.into_inner();
                let got = u16::from_be_bytes([b[10], b[11]]);
                assert_eq!(got, ipv4_header_checksum(b), "ttl {ttl} variant {i}");
            }
        }
    }

    #[test]
    fn decrement_ipv4_checksum_edge_values() {
        // Headers whose checksum is at or near 0x0000 / 0xffff before or after the decrement.
        for id in 0..=u16::MAX {
            let mut b = V4_BYTES;
            b[4..6].copy_from_slice(&id.to_be_bytes());
            let csum = ipv4_header_checksum(&b);
            if !(csum <= 0x0101 || csum >= 0xfefe) {
                continue;
            }
            b[10..12].copy_from_slice(&csum.to_be_bytes());
            let mut p = IpPacket::new_checked(&mut b[..]).unwrap();
            p.decrement_hop_limit();
            assert_eq!(
                u16::from_be_bytes([b[10], b[11]]),
                ipv4_header_checksum(&b),
                "id {id}"
            );
        }
    }

    #[test]
    fn decrement_ttl_one_and_zero() {
        let mut b = ipv4_udp(V4_A, V4_B, 1, true, 0);
        let mut p = IpPacket::new_checked(&mut b[..]).unwrap();
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 0);
        assert_eq!(u16::from_be_bytes([b[10], b[11]]), ipv4_header_checksum(&b));

        // Zero stays zero (no wrap to 255), and the checksum stays valid.
        let mut b = ipv4_udp(V4_A, V4_B, 0, true, 0);
        let before = b.clone();
        IpPacket::new_checked(&mut b[..])
            .unwrap()
            .decrement_hop_limit();
        assert_eq!(b, before);

        let mut b = ipv6_udp(V6_A, V6_B, 0, 0);
        let mut p = IpPacket::new_checked(&mut b[..]).unwrap();
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 0);
    }

    #[test]
    fn decrement_ipv6() {
        let mut b = ipv6_udp(V6_A, V6_B, 64, 4);
        let before = b.clone();
        let mut p = IpPacket::new_checked(&mut b[..]).unwrap();
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 63);
        // Only the hop limit byte changed.
        let diff: Vec<usize> = (0..b.len()).filter(|&i| b[i] != before[i]).collect();
        assert_eq!(diff, vec![7]);
    }

    #[test]
    fn icmpv4_errors_and_fragments() {
        let is = |b: Vec<u8>| {
            IpPacket::new_checked(&b[..])
                .unwrap()
                .is_icmp_error_or_fragment()
        };
        for ty in [3, 4, 5, 11, 12] {
            assert!(is(ipv4_icmp(V4_A, V4_B, ty, 0)), "type {ty}");
        }
        for ty in [0, 8, 13, 14] {
            assert!(!is(ipv4_icmp(V4_A, V4_B, ty, 0)), "type {ty}");
        }
        assert!(!is(ipv4_udp(V4_A, V4_B, 64, false, 8)));
        assert!(is(ipv4_fragment(V4_A, V4_B, 185, true)));
        assert!(is(ipv4_fragment(V4_A, V4_B, 1, false)));
        // First fragment: offset 0, more fragments set.
        assert!(!is(ipv4_fragment(V4_A, V4_B, 0, true)));
        // ICMP with no room for a type byte: not answered.
        let mut bare = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0];
        bare.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        assert!(is(bare));
    }

    #[test]
    fn icmpv6_errors_and_fragments() {
        let is = |b: Vec<u8>| {
            IpPacket::new_checked(&b[..])
                .unwrap()
                .is_icmp_error_or_fragment()
        };
        for ty in [1, 2, 3, 4, 127] {
            assert!(is(ipv6_icmp(V6_A, V6_B, ty, 0)), "type {ty}");
        }
        for ty in [128, 129, 135, 136] {
            assert!(!is(ipv6_icmp(V6_A, V6_B, ty, 0)), "type {ty}");
        }
        // Fragment header, offset 0, then ICMPv6 destination unreachable / UDP.
        let frag = |next: u8, offset: u16, upper: &[u8]| {
            let o = (offset << 3 | 1).to_be_bytes();
            let mut rest = vec![next, 0, o[0], o[1], 0, 0, 0, 1];
            rest.extend_from_slice(upper);
            ipv6_raw(V6_A, V6_B, 44, &rest)
        };
        assert!(is(frag(58, 0, &[1, 0, 0, 0, 0, 0, 0, 0])));
        assert!(!is(frag(58, 0, &[128, 0, 0, 0, 0, 0, 0, 0])));
        assert!(!is(frag(17, 0, &[0; 8])));
        // Non-first fragment: whatever follows.
        assert!(is(frag(17, 100, &[0; 8])));
        // Hop-by-hop (8 bytes) then destination options (16 bytes) then ICMPv6 echo / error.
        let chain = |ty: u8| {
            let mut rest = vec![60, 0, 1, 4, 0, 0, 0, 0];
            rest.extend_from_slice(&[58, 1, 1, 4, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0]);
            rest.extend_from_slice(&[ty, 0, 0, 0, 0, 0, 0, 0]);
            ipv6_raw(V6_A, V6_B, 0, &rest)
        };
        assert!(!is(chain(128)));
        assert!(is(chain(3)));
        // A chain that runs off the end of the packet: not answered.
        assert!(is(ipv6_raw(V6_A, V6_B, 0, &[60, 4, 0, 0, 0, 0, 0, 0])));
        assert!(is(ipv6_raw(V6_A, V6_B, 44, &[17, 0, 0])));
        assert!(is(ipv6_raw(V6_A, V6_B, 58, &[])));
        // No next header: not an error.
        assert!(!is(ipv6_raw(V6_A, V6_B, 59, &[])));
        // A chain longer than we walk: not answered.
        let mut long = Vec::new();
        for _ in 0..MAX_EXT_HEADERS {
            long.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        long.extend_from_slice(&[128, 0, 0, 0, 0, 0, 0, 0]);
        assert!(is(ipv6_raw(V6_A, V6_B, 60, &long)));
    }

    #[test]
    fn checksum_helpers() {
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0x2_ffff), 0x0002);
        // Odd length pads with zero.
        assert_eq!(checksum_add(0, &[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        // The header checksum of V4_BYTES verifies: its words sum to 0xffff.
        assert_eq!(fold(checksum_add(0, &V4_BYTES[..20])), 0xffff);
    }
}
