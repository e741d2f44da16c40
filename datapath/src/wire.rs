//! A checked view of an inner IP packet (IPv4 or IPv6), as read from the TUN device or carried
//! as a UDP payload.
//!
//! [`IpPacket::new_checked`] validates the header once; after it succeeds no accessor can panic.

use std::net::IpAddr;

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

/// A validated inner IP packet over a buffer that holds exactly that packet.
#[derive(Debug)]
pub struct IpPacket<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Validates version, header length and total length against `buf.len()` (which must be equal:
    /// a TUN read and a UDP payload both carry exactly one packet).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let _ = buf;
        todo!()
    }

    /// `true` for IPv6.
    pub fn is_ipv6(&self) -> bool {
        todo!()
    }
    pub fn src_addr(&self) -> IpAddr {
        todo!()
    }
    pub fn dst_addr(&self) -> IpAddr {
        todo!()
    }
    /// TTL (IPv4) or hop limit (IPv6).
    pub fn hop_limit(&self) -> u8 {
        todo!()
    }
    /// IPv4 Don't Fragment flag; always `true` for IPv6 (routers never fragment IPv6).
    pub fn dont_fragment(&self) -> bool {
        todo!()
    }
    /// `true` when this is an ICMP/ICMPv6 error message (to which no ICMP error may be sent) or a
    /// non-first IPv4 fragment.
    pub fn is_icmp_error_or_fragment(&self) -> bool {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IpPacket<T> {
    /// Decrements TTL / hop limit by one, updating the IPv4 header checksum incrementally
    /// (RFC 1624). The caller checks `hop_limit() > 1` first.
    pub fn decrement_hop_limit(&mut self) {
        todo!()
    }
}
