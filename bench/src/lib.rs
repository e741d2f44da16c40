//! Shared helpers for tundra's benchmarks: deterministic bench data shaped like a real cluster
//! (route tables, packets of a given size) and a mirror of the egress loop's per-batch work.
//!
//! Nothing here sends anything: the benches are pure computation. All addresses come from
//! ranges set aside for this: overlay prefixes in 10.0.0.0/8 and fd00::/8, underlay peers in
//! 198.18.0.0/15.
//!
//! The cluster model ([`routes`]): node `i` owns one subnet per family and is reached at
//! [`peer_addr`]`(i)`. IPv4 node subnets fill 10.0.0.0/9, a /24 each up to 32768 nodes and
//! longer beyond (a /26 each at 100k nodes, as GKE sizes 32-pod nodes); IPv6 node subnets are
//! /64s in fd10::/32. Each family also has [`COVERING`] shorter prefixes (an aggregate over the
//! node space and three other sites) and an uncovered region that [`Addrs::miss`] draws from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use datapath::batch;
/// Bytes per slot buffer in the I/O loops: packets of a batch sit this far apart, which
/// matters for the caches.
pub use datapath::batch::SLOT_SIZE;
use datapath::{Encapsulator, SharedTable, Table};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use socket2::SockAddr;

/// The UDP port every peer listens on.
pub const PORT: u16 = 8285;
/// Covering (shorter) prefixes per family, on top of the node subnets.
pub const COVERING: usize = 4;

/// Overlay address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

/// A small deterministic PRNG (xorshift64*): the same bench data on every run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` for bench data. `n` must not be 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Prefix length of the IPv4 node subnets for a cluster of `nodes`: /24, or the longest that
/// fits them all in 10.0.0.0/9.
fn v4_node_len(nodes: usize) -> u8 {
    let mut len = 24u8;
    while (1usize << (len - 9)) < nodes {
        len += 1;
    }
    assert!(len <= 30, "too many nodes for 10.0.0.0/9: {nodes}");
    len
}

/// Node `i`'s overlay subnet of `family` in a cluster of `nodes`.
pub fn node_subnet(family: Family, i: usize, nodes: usize) -> IpNet {
    match family {
        Family::V4 => {
            let len = v4_node_len(nodes);
            let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
            let net = base + ((i as u32) << (32 - len));
            IpNet::V4(Ipv4Net::new(net.into(), len).expect("length at most 30"))
        }
        Family::V6 => {
            let base = u128::from("fd10::".parse::<Ipv6Addr>().expect("literal"));
            let net = base + ((i as u128) << 64);
            IpNet::V6(Ipv6Net::new(net.into(), 64).expect("length 64"))
        }
    }
}

/// Node `i`'s underlay socket address: 198.18.0.1 onwards (room for 131000 nodes).
pub fn peer_addr(i: usize) -> SocketAddr {
    assert!(i < 131_000, "no room for node {i} in 198.18.0.0/15");
    let ip = u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i as u32;
    SocketAddr::new(IpAddr::V4(ip.into()), PORT)
}

/// The [`COVERING`] shorter prefixes of `family`, each to its own gateway in 198.19.255.0/24.
pub fn covering_routes(family: Family) -> Vec<datapath::Route> {
    let prefixes: [&str; COVERING] = match family {
        // The node space's aggregate, then three other sites; 10.144.0.0/12 and 10.224.0.0/11
        // stay uncovered.
        Family::V4 => [
            "10.0.0.0/9",
            "10.128.0.0/12",
            "10.160.0.0/11",
            "10.192.0.0/11",
        ],
        // Everything from fd14:: up stays uncovered, but for the local fd1f:0:0:1::/64.
        Family::V6 => ["fd10::/32", "fd11::/32", "fd12::/31", "fd13::/32"],
    };
    prefixes
        .iter()
        .enumerate()
        .map(|(k, p)| datapath::Route {
            prefix: p.parse().expect("literal prefix"),
            peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 255, 1 + k as u8)), PORT),
            mac: None,
        })
        .collect()
}

/// `nodes` node subnets of `family` (to their own peers) followed by the covering prefixes:
/// `nodes + COVERING` routes.
pub fn routes(family: Family, nodes: usize) -> Vec<datapath::Route> {
    let mut routes: Vec<datapath::Route> = (0..nodes)
        .map(|i| datapath::Route {
            prefix: node_subnet(family, i, nodes),
            peer: peer_addr(i),
            mac: None,
        })
        .collect();
    routes.extend(covering_routes(family));
    routes
}

/// Both families' [`routes`]: a dual-stack cluster where node `i` is one peer.
pub fn dual_stack_routes(nodes: usize) -> Vec<datapath::Route> {
    let mut all = routes(Family::V4, nodes);
    all.extend(routes(Family::V6, nodes));
    all
}

/// This node's own subnets, outside every route: 10.255.255.0/24 and fd1f:0:0:1::/64.
pub fn local_subnets() -> Vec<IpNet> {
    vec![
        "10.255.255.0/24".parse().expect("literal"),
        "fd1f:0:0:1::/64".parse().expect("literal"),
    ]
}

/// A table for `nodes` nodes: [`routes`] of one family, or of both with `None`.
pub fn table(family: Option<Family>, nodes: usize) -> Table {
    let routes = match family {
        Some(f) => routes(f, nodes),
        None => dual_stack_routes(nodes),
    };
    Table::new(&local_subnets(), &routes).expect("bench routes are valid")
}

/// Addresses to look up in a cluster of `nodes`.
#[derive(Clone, Debug)]
pub struct Addrs {
    family: Family,
    nodes: usize,
    rng: Rng,
}

impl Addrs {
    pub fn new(family: Family, nodes: usize, seed: u64) -> Self {
        Addrs {
            family,
            nodes,
            rng: Rng::new(seed),
        }
    }

    /// A random address inside node `i`'s subnet.
    pub fn in_node(&mut self, i: usize) -> IpAddr {
        match node_subnet(self.family, i, self.nodes) {
            IpNet::V4(n) => {
                let hosts = 1u64 << (32 - n.prefix_len());
                let host = self.rng.below(hosts) as u32;
                IpAddr::V4((u32::from(n.network()) + host).into())
            }
            IpNet::V6(n) => {
                let host = u128::from(self.rng.next_u64());
                IpAddr::V6((u128::from(n.network()) + host).into())
            }
        }
    }

    /// A random address of a random node's subnet: the lookup finds that node.
    pub fn hit(&mut self) -> (IpAddr, usize) {
        let i = self.rng.below(self.nodes as u64) as usize;
        (self.in_node(i), i)
    }

    /// A random address that no route covers: 10.224.0.0/12 or fd1e::/16.
    pub fn miss(&mut self) -> IpAddr {
        match self.family {
            Family::V4 => {
                let base = u32::from(Ipv4Addr::new(10, 224, 0, 0));
                IpAddr::V4((base + self.rng.below(1 << 20) as u32).into())
            }
            Family::V6 => {
                let base = u128::from("fd1e::".parse::<Ipv6Addr>().expect("literal"));
                let host =
                    (u128::from(self.rng.next_u64()) << 64) | u128::from(self.rng.next_u64());
                IpAddr::V6((base + (host >> 16)).into())
            }
        }
    }
}

/// One's-complement sum of `data` as big-endian 16-bit words, added to `sum`.
fn ones_sum(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A UDP packet of exactly `len` bytes (IP header included) from `src` to `dst` (both of the
/// same family), TTL / hop limit 64, IPv4 with DF set, checksums valid.
///
/// # Panics
/// If the families differ, `len` is too short for the headers (28 / 48 bytes) or above 65535.
pub fn udp_packet(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    let ip_len = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 20,
        (IpAddr::V6(_), IpAddr::V6(_)) => 40,
        _ => panic!("udp_packet: {src} and {dst} are of different families"),
    };
    assert!(
        len >= ip_len + 8 && len <= 65535,
        "udp_packet: bad length {len}"
    );
    let udp_len = len - ip_len;
    let mut p = vec![0u8; len];
    for (k, b) in p[ip_len + 8..].iter_mut().enumerate() {
        *b = (k % 251) as u8;
    }
    p[ip_len..ip_len + 2].copy_from_slice(&40000u16.to_be_bytes());
    p[ip_len + 2..ip_len + 4].copy_from_slice(&5201u16.to_be_bytes());
    p[ip_len + 4..ip_len + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // The pseudo-header sum: addresses, protocol, UDP length.
    let mut pseudo = 17 + udp_len as u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
            p[6] = 0x40; // DF
            p[8] = 64;
            p[9] = 17;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            let hc = !fold(ones_sum(0, &p[..20]));
            p[10..12].copy_from_slice(&hc.to_be_bytes());
            pseudo = ones_sum(pseudo, &p[12..20]);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            p[6] = 17;
            p[7] = 64;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            pseudo = ones_sum(pseudo, &p[8..40]);
        }
        _ => unreachable!("families checked above"),
    }
    let mut ck = !fold(ones_sum(pseudo, &p[ip_len..]));
    if ck == 0 {
        ck = 0xffff;
    }
    p[ip_len + 6..ip_len + 8].copy_from_slice(&ck.to_be_bytes());
    p
}

/// An address inside this node's own subnet of `family` (a source of egress packets, the
/// destination of ingress ones).
pub fn local_addr(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(10, 255, 255, 10)),
        Family::V6 => "fd1f:0:0:1::10".parse().expect("literal"),
    }
}

/// Bytes of the IP header that encapsulation rewrites (TTL / hop limit and the IPv4 checksum)
/// fall inside the first this many bytes; restoring them undoes an [`Encapsulator`] pass.
pub const REWRITTEN: usize = 12;

// ---------------------------------------------------------------------------------------------
// The egress loop's per-batch work: `datapath::batch::EgressBatch`, which both I/O engines
// call, then the socket-address conversion `src/io/mod.rs` does once per run.
// ---------------------------------------------------------------------------------------------

/// The socket address a peer is sent to; `map_v4` when the socket is IPv6 dual-stack.
pub fn peer_sockaddr(addr: SocketAddr, map_v4: bool) -> SockAddr {
    match addr {
        SocketAddr::V4(v4) if map_v4 => {
            SockAddr::from(SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()))
        }
        a => SockAddr::from(a),
    }
}

/// One egress batch ready to be decided over and over: `size` IPv4 packets of `packet_len`
/// bytes in slot buffers as the engines lay them out, their destinations spread over `peers`
/// nodes in a shuffled order.
pub struct EgressBatch {
    bufs: Box<[u8]>,
    lens: Vec<usize>,
    /// The first [`REWRITTEN`] bytes of each packet as read, to undo the TTL rewrite.
    headers: Vec<[u8; REWRITTEN]>,
    batch: batch::EgressBatch,
    map_v4: bool,
}

/// What one [`EgressBatch::run`] produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// Packets to send, and runs of consecutive sends to one peer (one `sendmmsg` each).
    pub sent: usize,
    pub runs: usize,
    /// Bytes handed to the "send" (summed over the runs).
    pub bytes: usize,
}

impl EgressBatch {
    /// `peers` distinct nodes of a cluster of `nodes` (`peers <= nodes`), `size` packets at most
    /// 65535 bytes each.
    pub fn new(size: usize, peers: usize, nodes: usize, packet_len: usize, seed: u64) -> Self {
        assert!(peers >= 1 && peers <= nodes && size <= usize::from(u16::MAX));
        let mut rng = Rng::new(seed);
        let mut addrs = Addrs::new(Family::V4, nodes, seed ^ 0x5eed);
        // The peers of this batch: `peers` distinct nodes spread over the cluster.
        let chosen: Vec<usize> = (0..peers).map(|k| k * (nodes / peers)).collect();
        let mut order: Vec<usize> = (0..size).map(|k| chosen[k % peers]).collect();
        // Fisher-Yates: packets to the same peer are not adjacent, as with interleaved flows.
        for k in (1..order.len()).rev() {
            order.swap(k, rng.below(k as u64 + 1) as usize);
        }
        let mut bufs = vec![0u8; size * SLOT_SIZE].into_boxed_slice();
        let mut lens = Vec::with_capacity(size);
        let mut headers = Vec::with_capacity(size);
        for (k, &node) in order.iter().enumerate() {
            let pkt = udp_packet(local_addr(Family::V4), addrs.in_node(node), packet_len);
            let at = k * SLOT_SIZE + batch::HEADROOM;
            bufs[at..at + pkt.len()].copy_from_slice(&pkt);
            lens.push(pkt.len());
            headers.push(
                pkt[..REWRITTEN]
                    .try_into()
                    .expect("packet longer than header"),
            );
        }
        let enc = Encapsulator::new(batch::DATA - 1, 100);
        EgressBatch {
            bufs,
            lens,
            headers,
            batch: batch::EgressBatch::new(enc, datapath::Encap::Udp, false, false),
            map_v4: false,
        }
    }

    /// Treats the underlay socket as IPv6 dual-stack (IPv4 peers become IPv4-mapped).
    pub fn map_v4(mut self, on: bool) -> Self {
        self.map_v4 = on;
        self
    }

    /// Puts every packet back as it was read (a fresh TUN read would overwrite it the same way).
    pub fn reset(&mut self) {
        for (k, h) in self.headers.iter().enumerate() {
            let at = k * SLOT_SIZE + batch::HEADROOM;
            self.bufs[at..at + REWRITTEN].copy_from_slice(h);
        }
    }

    /// The egress loop's per-batch work: load the table once, decide every packet, group the
    /// sends by peer with one address conversion per run. `send` stands for the `sendmmsg` (or
    /// the queued `sendmsg`s) of one run. Call [`EgressBatch::reset`] between runs.
    pub fn run(
        &mut self,
        shared: &SharedTable,
        now_ns: u64,
        mut send: impl FnMut(&SockAddr, &[u8]),
    ) -> BatchResult {
        let table = shared.load();
        self.batch.clear();
        for (k, &len) in self.lens.iter().enumerate() {
            let buf = &mut self.bufs[k * SLOT_SIZE..(k + 1) * SLOT_SIZE];
            assert!(
                self.batch.push(&table, k as u16, buf, len, now_ns),
                "bench packet {k} not sent"
            );
        }
        let mut result = BatchResult::default();
        let (bufs, map_v4) = (&self.bufs, self.map_v4);
        self.batch.for_each_peer_run(&table, |peer, run, spans| {
            let addr = peer_sockaddr(peer.addr, map_v4);
            result.runs += 1;
            for s in run {
                let slot = &bufs[usize::from(s.slot) * SLOT_SIZE..];
                for span in &spans[s.spans.0 as usize..s.spans.1 as usize] {
                    let packet = span.of(slot);
                    send(&addr, packet);
                    result.sent += 1;
                    result.bytes += packet.len();
                }
            }
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use datapath::{decapsulate, Egress, Ingress};

    use super::*;

    #[test]
    fn tables_build_and_route_as_planned() {
        for family in Family::BOTH {
            for nodes in [1, 10, 1000, 40_000] {
                let t = table(Some(family), nodes);
                let mut a = Addrs::new(family, nodes, 7);
                for _ in 0..200 {
                    let (dst, i) = a.hit();
                    let peer = t.lookup(dst).expect("hit");
                    assert_eq!(t.peer(peer).addr, peer_addr(i), "{dst}");
                    assert_eq!(t.lookup(a.miss()), None);
                }
            }
        }
        assert_eq!(v4_node_len(32768), 24);
        assert_eq!(v4_node_len(100_000), 26);
        let big = table(None, 100_000);
        assert_eq!(big.peers().len(), 100_000 + COVERING);
    }

    #[test]
    fn packets_pass_both_directions() {
        let t = table(None, 100);
        let mut enc = Encapsulator::new(9000, 10);
        let mut reply = vec![0u8; datapath::icmp::MAX_LEN];
        for family in Family::BOTH {
            for len in [64, 576, 1400, 9000] {
                let (dst, i) = Addrs::new(family, 100, 3).hit();
                let mut pkt = udp_packet(local_addr(family), dst, len);
                assert_eq!(pkt.len(), len);
                let verdict = enc.encapsulate(&t, &mut pkt, &mut reply, 0);
                let Egress::Send(peer) = verdict else {
                    panic!("{family:?} {len}: {verdict:?}");
                };
                assert_eq!(t.peer(peer).addr, peer_addr(i));
                let back = udp_packet(dst, local_addr(family), len);
                let from = peer_addr(i);
                let id = t.peer_by_addr(from).expect("known peer");
                assert_eq!(decapsulate(&t, from, &back), Ingress::Deliver(id));
            }
        }
        // The IPv4 header checksum is valid.
        let p = udp_packet(
            local_addr(Family::V4),
            Addrs::new(Family::V4, 10, 1).hit().0,
            64,
        );
        assert_eq!(fold(ones_sum(0, &p[..20])), 0xffff);
    }

    #[test]
    fn egress_batch_groups_by_peer() {
        let shared = SharedTable::new(table(None, 1000));
        for (size, peers) in [(1, 1), (8, 4), (128, 16), (5, 16)] {
            let mut b = EgressBatch::new(size, peers.min(size), 1000, 1400, 9);
            let mut last: Option<SockAddr> = None;
            let mut switches = 0;
            let r = b.run(&shared, 0, |addr, _| {
                if last.as_ref() != Some(addr) {
                    switches += 1;
                    last = Some(addr.clone());
                }
            });
            assert_eq!(r.sent, size);
            assert_eq!(r.runs, peers.min(size));
            assert_eq!(switches, r.runs);
            assert_eq!(r.bytes, size * 1400);
            b.reset();
            assert_eq!(b.run(&shared, 0, |_, _| {}), r, "reset restores the batch");
        }
    }
}
