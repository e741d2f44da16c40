//! Packet builders shared by the unit tests (test builds only).

use etherparse::{IpFragOffset, IpHeaders, Ipv4Header, Ipv6Header, PacketBuilder};

/// `len` bytes of recognisable payload.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A UDP/IPv4 packet with `payload_len` bytes of payload.
pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], ttl: u8, df: bool, payload_len: usize) -> Vec<u8> {
    let ip = Ipv4Header {
        source: src,
        destination: dst,
        time_to_live: ttl,
        dont_fragment: df,
        identification: 0x1234,
        ..Default::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv4(ip, Default::default()))
        .udp(40000, 5353)
        .write(&mut out, &payload(payload_len))
        .unwrap();
    out
}

/// A UDP/IPv4 packet that is a fragment at `offset` (in 8-byte units).
pub fn ipv4_fragment(src: [u8; 4], dst: [u8; 4], offset: u16, more: bool) -> Vec<u8> {
    let ip = Ipv4Header {
        source: src,
        destination: dst,
        time_to_live: 64,
        more_fragments: more,
        fragment_offset: IpFragOffset::try_new(offset).unwrap(),
        ..Default::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv4(ip, Default::default()))
        .udp(40000, 5353)
        .write(&mut out, &payload(16))
        .unwrap();
    out
}

/// An ICMP/IPv4 message of the given type and code with 28 bytes of payload.
pub fn ipv4_icmp(src: [u8; 4], dst: [u8; 4], ty: u8, code: u8) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .icmpv4_raw(ty, code, [0; 4])
        .write(&mut out, &payload(28))
        .unwrap();
    out
}

/// A UDP/IPv6 packet with `payload_len` bytes of payload.
pub fn ipv6_udp(src: [u8; 16], dst: [u8; 16], hop_limit: u8, payload_len: usize) -> Vec<u8> {
    let ip = Ipv6Header {
        source: src,
        destination: dst,
        hop_limit,
        ..Default::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv6(ip, Default::default()))
        .udp(40000, 5353)
        .write(&mut out, &payload(payload_len))
        .unwrap();
    out
}

/// An ICMPv6 message of the given type and code with 28 bytes of payload.
pub fn ipv6_icmp(src: [u8; 16], dst: [u8; 16], ty: u8, code: u8) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .icmpv6_raw(ty, code, [0; 4])
        .write(&mut out, &payload(28))
        .unwrap();
    out
}

/// An IPv6 packet written by hand: fixed header, then `rest` (extension headers and upper
/// layer) after next header `next`.
pub fn ipv6_raw(src: [u8; 16], dst: [u8; 16], next: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&u16::try_from(rest.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&[next, 64]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    out.extend_from_slice(rest);
    out
}

/// IPv4 header checksum recomputed from scratch (etherparse's).
pub fn ipv4_header_checksum(packet: &[u8]) -> u16 {
    etherparse::Ipv4HeaderSlice::from_slice(packet)
        .unwrap()
        .to_header()
        .calc_header_checksum()
}

pub const V4_A: [u8; 4] = [198, 19, 1, 10];
pub const V4_B: [u8; 4] = [198, 19, 2, 20];
pub const V6_A: [u8; 16] = [0xfd, 0x19, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10];
pub const V6_B: [u8; 16] = [0xfd, 0x19, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x20];
