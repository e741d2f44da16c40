//! Packets for the offload tests, built with etherparse (test builds only).

use etherparse::{IpHeaders, Ipv4Header, Ipv4Options, Ipv6Header, PacketBuilder};

use crate::testutil::{payload, V4_A, V4_B, V6_A, V6_B};

/// A TCP packet to build; the default is a full-sized ACK with timestamps.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub v6: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub psh: bool,
    pub fin: bool,
    pub cwr: bool,
    /// Raw TCP option bytes, a multiple of 4 long.
    pub options: Vec<u8>,
    /// Raw IPv4 option bytes, a multiple of 4 long.
    pub ip_options: Vec<u8>,
    pub id: u16,
    pub ttl: u8,
    pub payload_len: usize,
    /// Where in the recognisable payload pattern this packet's payload starts.
    pub payload_offset: usize,
}

impl Default for Tcp {
    fn default() -> Self {
        Self {
            v6: false,
            src_port: 40000,
            dst_port: 5201,
            seq: 1_000_000,
            ack: 77_777,
            window: 501,
            psh: false,
            fin: false,
            cwr: false,
            // NOP, NOP, timestamps.
            options: vec![1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78],
            ip_options: vec![],
            id: 0x4321,
            ttl: 64,
            payload_len: 1000,
            payload_offset: 0,
        }
    }
}

/// The packet `t` describes, with valid IPv4 header and TCP checksums.
pub fn tcp_packet(t: &Tcp) -> Vec<u8> {
    let ip = if t.v6 {
        IpHeaders::Ipv6(
            Ipv6Header {
                source: V6_A,
                destination: V6_B,
                hop_limit: t.ttl,
                ..Default::default()
            },
            Default::default(),
        )
    } else {
        IpHeaders::Ipv4(
            Ipv4Header {
                source: V4_A,
                destination: V4_B,
                time_to_live: t.ttl,
                dont_fragment: true,
                identification: t.id,
                options: Ipv4Options::try_from(&t.ip_options[..]).unwrap(),
                ..Default::default()
            },
            Default::default(),
        )
    };
    let mut b = PacketBuilder::ip(ip)
        .tcp(t.src_port, t.dst_port, t.seq, t.window)
        .ack(t.ack);
    if t.psh {
        b = b.psh();
    }
    if t.fin {
        b = b.fin();
    }
    if t.cwr {
        b = b.cwr();
    }
    let b = b.options_raw(&t.options).unwrap();
    let body = payload(t.payload_offset + t.payload_len);
    let mut out = Vec::new();
    b.write(&mut out, &body[t.payload_offset..]).unwrap();
    out
}

/// A UDP packet to build; the default is a 1000-byte datagram with DF.
#[derive(Clone, Debug)]
pub struct Udp {
    pub v6: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub id: u16,
    pub df: bool,
    pub ttl: u8,
    pub payload_len: usize,
    /// Where in the recognisable payload pattern this packet's payload starts.
    pub payload_offset: usize,
}

impl Default for Udp {
    fn default() -> Self {
        Self {
            v6: false,
            src_port: 40000,
            dst_port: 5353,
            id: 0x1234,
            df: true,
            ttl: 64,
            payload_len: 1000,
            payload_offset: 0,
        }
    }
}

/// The datagram `u` describes, with valid IPv4 header and UDP checksums.
pub fn udp_datagram(u: &Udp) -> Vec<u8> {
    let ip = if u.v6 {
        IpHeaders::Ipv6(
            Ipv6Header {
                source: V6_A,
                destination: V6_B,
                hop_limit: u.ttl,
                ..Default::default()
            },
            Default::default(),
        )
    } else {
        IpHeaders::Ipv4(
            Ipv4Header {
                source: V4_A,
                destination: V4_B,
                time_to_live: u.ttl,
                dont_fragment: u.df,
                identification: u.id,
                ..Default::default()
            },
            Default::default(),
        )
    };
    let body = payload(u.payload_offset + u.payload_len);
    let mut out = Vec::new();
    PacketBuilder::ip(ip)
        .udp(u.src_port, u.dst_port)
        .write(&mut out, &body[u.payload_offset..])
        .unwrap();
    out
}

/// A UDP packet with `payload_len` bytes of payload and a valid checksum.
pub fn udp_packet(v6: bool, payload_len: usize) -> Vec<u8> {
    udp_datagram(&Udp {
        v6,
        payload_len,
        ..Udp::default()
    })
}

/// The big-endian one's-complement sum of `data`, the slow, obvious way.
pub fn naive_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for (i, &b) in data.iter().enumerate() {
        sum += u64::from(b) << if i % 2 == 0 { 8 } else { 0 };
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Replaces the transport checksum at `l4 + csum_offset` with the pseudo-header sum, as the
/// kernel leaves it for `NEEDS_CSUM`.
pub fn set_partial_checksum(p: &mut [u8], l4: usize, csum_offset: usize, proto: u8) {
    let addrs = if p[0] >> 4 == 6 { 8..40 } else { 12..20 };
    let mut pseudo = p[addrs].to_vec();
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&u16::try_from(p.len() - l4).unwrap().to_be_bytes());
    let at = l4 + csum_offset;
    p[at..at + 2].copy_from_slice(&naive_sum(&pseudo).to_be_bytes());
}

/// Recomputes the IPv4 header checksum after a test changed a header byte.
pub fn fix_ipv4_checksum(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[10..12].fill(0);
    let c = !naive_sum(&p[..ihl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}
