//! What the fuzz targets share: a reader for structured input, the fixed route tables the
//! packet decisions run against, a naive longest-prefix match, the Internet checksum the slow
//! way, and a builder of TCP super-packets. Each target is one file in `fuzz_targets/`.

use std::net::{IpAddr, SocketAddr};

use datapath::{Mac, Route, Table, WireFormat};
use ipnet::IpNet;

/// Reads fixed-size fields off the front of a fuzz input; zeros once it runs out, so every
/// input is valid and a seed is a few selector bytes followed by real packet bytes.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// This node's subnets.
pub const LOCAL: [&str; 2] = ["198.19.1.0/24", "fd19:0:0:1::/64"];

/// The routes of the fixed table: nested prefixes (longest match matters), both families,
/// three peers (one with an IPv6 underlay address).
pub const ROUTES: [(&str, &str, u8); 8] = [
    ("198.19.2.0/24", "198.18.0.2", 2),
    ("198.19.0.0/24", "198.18.0.3", 3),
    ("198.20.0.0/16", "198.18.0.3", 3),
    ("198.20.7.0/24", "198.18.0.2", 2),
    ("198.20.7.128/25", "fd18::3", 4),
    ("fd19:0:0:2::/64", "198.18.0.2", 2),
    ("fd20::/16", "198.18.0.3", 3),
    ("fd20:0:7::/48", "fd18::3", 4),
];

/// Underlay addresses a datagram may come from: every peer, and strangers.
pub const SENDERS: [&str; 6] = [
    "198.18.0.2",
    "198.18.0.3",
    "fd18::3",
    "::ffff:198.18.0.2",
    "198.18.0.9",
    "fd18::9",
];

/// Our VTEP MAC, and a peer's (`mac(n)` for the peer whose address ends in `n`).
pub const OURS: Mac = Mac([0x0a, 0x58, 0xc6, 0x13, 0x01, 0x00]);
pub const VNI: u32 = 42;

pub fn mac(n: u8) -> Mac {
    Mac([0x0a, 0x58, 0xc6, 0x13, n, 0x00])
}

pub fn net(s: &str) -> IpNet {
    s.parse().expect("a valid CIDR in the fixed table")
}

pub fn local() -> Vec<IpNet> {
    LOCAL.iter().map(|s| net(s)).collect()
}

/// The fixed routes, with peers at `port`.
pub fn routes(port: u16) -> Vec<Route> {
    ROUTES
        .iter()
        .map(|&(prefix, peer, n)| Route {
            prefix: net(prefix),
            peer: SocketAddr::new(peer.parse().expect("a valid address"), port),
            mac: Some(mac(n)),
        })
        .collect()
}

/// The fixed table in `format` (udp peers on 8285, vxlan peers on 8472).
pub fn table(format: WireFormat) -> Table {
    let port = match format {
        WireFormat::Udp => 8285,
        WireFormat::Vxlan => 8472,
    };
    Table::build(format, &local(), &routes(port), None).expect("the fixed table is valid")
}

/// The sender `n` (mod [`SENDERS`]) at `port`.
pub fn sender(n: u8, port: u16) -> SocketAddr {
    let ip: IpAddr = SENDERS[usize::from(n) % SENDERS.len()]
        .parse()
        .expect("a valid address");
    SocketAddr::new(ip, port)
}

/// The longest prefix among `routes` that contains `addr`, found by scanning them all.
pub fn naive_lpm(routes: &[Route], addr: IpAddr) -> Option<&Route> {
    routes
        .iter()
        .filter(|r| r.prefix.contains(&addr))
        .max_by_key(|r| r.prefix.prefix_len())
}

/// The big-endian one's-complement sum of `data`, folded, the slow, obvious way.
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

/// `true` when the transport checksum of `packet` (TCP, UDP or ICMPv6 at `l4`, over the
/// pseudo-header of the addresses in the IP header) is valid.
pub fn l4_checksum_ok(packet: &[u8], l4: usize, proto: u8) -> bool {
    let addrs = if packet[0] >> 4 == 6 { 8..40 } else { 12..20 };
    let len = u16::try_from(packet.len() - l4).expect("a packet below 64 KiB");
    let mut pseudo = packet[addrs].to_vec();
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&packet[l4..]);
    naive_sum(&pseudo) == 0xffff
}

/// A TCP packet to build: IPv4 without options or IPv6 without extension headers, as a run
/// that GRO may merge.
#[derive(Clone, Debug, Default)]
pub struct Tcp<'a> {
    pub v6: bool,
    /// IPv4 TOS or IPv6 traffic class.
    pub tos: u8,
    pub flow_label: u32,
    pub id: u16,
    pub df: bool,
    pub ttl: u8,
    pub ports: (u16, u16),
    pub seq: u32,
    pub ack: u32,
    /// Raw TCP flags.
    pub flags: u8,
    pub window: u16,
    pub urgent: u16,
    /// Option bytes, a multiple of 4, at most 40.
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

/// The packet `t` describes, with a valid IPv4 header checksum and, in the TCP checksum field,
/// the pseudo-header sum a `NEEDS_CSUM` packet from the kernel carries (`partial`), or the full
/// checksum.
pub fn tcp_packet(t: &Tcp, partial: bool) -> Vec<u8> {
    let l4 = if t.v6 { 40 } else { 20 };
    let tcp_len = 20 + t.options.len() + t.payload.len();
    let mut p = vec![0u8; l4 + tcp_len];
    if t.v6 {
        let word = (6u32 << 28) | (u32::from(t.tos) << 20) | (t.flow_label & 0xf_ffff);
        p[0..4].copy_from_slice(&word.to_be_bytes());
        p[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        p[6] = 6;
        p[7] = t.ttl;
        p[8..24].copy_from_slice(&[0xfd, 0x19, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        p[24..40].copy_from_slice(&[0xfd, 0x19, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x20]);
    } else {
        p[0] = 0x45;
        p[1] = t.tos;
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[4..6].copy_from_slice(&t.id.to_be_bytes());
        p[6] = if t.df { 0x40 } else { 0 };
        p[8] = t.ttl;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 19, 1, 10]);
        p[16..20].copy_from_slice(&[198, 19, 2, 20]);
        let c = !naive_sum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let th = &mut p[l4..];
    th[0..2].copy_from_slice(&t.ports.0.to_be_bytes());
    th[2..4].copy_from_slice(&t.ports.1.to_be_bytes());
    th[4..8].copy_from_slice(&t.seq.to_be_bytes());
    th[8..12].copy_from_slice(&t.ack.to_be_bytes());
    th[12] = (((20 + t.options.len()) / 4) as u8) << 4;
    th[13] = t.flags;
    th[14..16].copy_from_slice(&t.window.to_be_bytes());
    th[18..20].copy_from_slice(&t.urgent.to_be_bytes());
    th[20..20 + t.options.len()].copy_from_slice(t.options);
    th[20 + t.options.len()..].copy_from_slice(t.payload);
    let addrs = if t.v6 { 8..40 } else { 12..20 };
    let mut pseudo = p[addrs].to_vec();
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    let csum = if partial {
        naive_sum(&pseudo)
    } else {
        pseudo.extend_from_slice(&p[l4..]);
        !naive_sum(&pseudo)
    };
    p[l4 + 16..l4 + 18].copy_from_slice(&csum.to_be_bytes());
    p
}
