//! The route table: overlay prefixes (IPv4 and IPv6, any length) mapped to the peer node that
//! owns them, looked up by longest-prefix match, and published lock-free.
//!
//! A [`Table`] is immutable once built. The control side builds a complete new version and
//! [`SharedTable::publish`]es it in one atomic step (RCU style); the datapath threads
//! [`SharedTable::load`] once per batch and see the old or the new version, never a mix.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use crate::encap::{Mac, WireFormat};
use crate::stats::PeerCounters;

/// Index of a peer in its [`Table`]. Only meaningful with the table that returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// A peer node: where its packets go on the underlay.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Its VTEP MAC (vxlan).
    pub mac: Option<Mac>,
    /// Shared with the versions before and after this one that also route to `addr`.
    pub counters: Arc<PeerCounters>,
}

/// One route: everything inside `prefix` belongs to the node reachable at `peer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub prefix: IpNet,
    pub peer: SocketAddr,
    /// The peer's VTEP MAC; required by a vxlan table, unused by a udp one.
    pub mac: Option<Mac>,
}

impl Route {
    /// A route without a MAC (the udp format).
    pub fn new(prefix: IpNet, peer: SocketAddr) -> Route {
        Route {
            prefix,
            peer,
            mac: None,
        }
    }
}

/// Why a table could not be built. Nothing is published when building fails.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("prefix {0} has host bits set (did you mean {trunc}?)", trunc = .0.trunc())]
    HostBitsSet(IpNet),
    #[error("prefix {0} is routed twice")]
    Duplicate(IpNet),
    #[error("route {route} overlaps local subnet {local}")]
    OverlapsLocal { route: IpNet, local: IpNet },
    #[error("local subnets {0} and {1} overlap")]
    LocalOverlap(IpNet, IpNet),
    #[error("peer address {0} is not a usable unicast address")]
    BadPeer(SocketAddr),
    #[error("vxlan peer {0} has no VTEP MAC (give it as ,mac=MAC)")]
    NoMac(SocketAddr),
    #[error("peer {0}: VTEP MAC {1} is not a unicast MAC")]
    BadMac(SocketAddr, Mac),
    #[error("peer {peer} is given two VTEP MACs, {first} and {second}")]
    TwoMacs {
        peer: SocketAddr,
        first: Mac,
        second: Mac,
    },
    #[error(
        "vxlan peers {0} and {1} share an address: a vxlan peer is known by its address alone"
    )]
    SharedAddress(SocketAddr, SocketAddr),
}

/// One immutable version of the routing state: local subnets, routes and peers.
#[derive(Debug)]
pub struct Table {
    /// Longest-prefix-match tries, one per family, mapping a route's prefix to its peer.
    v4: PrefixMap<Ipv4Net, PeerId>,
    v6: PrefixMap<Ipv6Net, PeerId>,
    /// Indexed by `PeerId.0`; addresses canonical (see [`canonical_addr`]).
    peers: Vec<Peer>,
    /// Canonical underlay address to peer.
    by_addr: HashMap<SocketAddr, PeerId>,
    /// Underlay IP alone to peer (vxlan).
    by_ip: HashMap<IpAddr, PeerId>,
    format: WireFormat,
    local: Vec<IpNet>,
    routes: Vec<Route>,
}

impl Table {
    /// Builds and validates a table. Prefixes must be canonical (no host bits), routes must not
    /// overlap the local subnets, local subnets must not overlap each other. Routes to the same
    /// peer address share one [`PeerId`].
    ///
    /// Peer addresses are canonicalised first (IPv4-mapped IPv6 becomes IPv4; the IPv6 flow info
    /// is cleared, and so is the scope id of a non-link-local address), so two spellings of the
    /// same address share a peer and [`Peer::addr`] holds the canonical one.
    ///
    /// # Errors
    /// The first problem found, checking the local subnets first, then each route in order. A
    /// route "overlaps" a local subnet when either contains the other, so a route covering a
    /// local subnet (such as a default route next to a local subnet of its family) is rejected.
    /// A peer address is unusable when its IP is unspecified, multicast or the IPv4 broadcast
    /// address, or its port is 0.
    pub fn new(local_subnets: &[IpNet], routes: &[Route]) -> Result<Table, TableError> {
        Self::new_after(local_subnets, routes, None)
    }

    /// Like [`Table::new`], as the version that follows `previous`: a peer that `previous` also
    /// has keeps its [`PeerCounters`].
    pub fn new_after(
        local_subnets: &[IpNet],
        routes: &[Route],
        previous: Option<&Table>,
    ) -> Result<Table, TableError> {
        Self::build(WireFormat::Udp, local_subnets, routes, previous)
    }

    /// Like [`Table::new_after`], for a wire format: in `vxlan` every peer needs a unicast MAC,
    /// no two peers may share an IP address (a receive is matched by address alone), and
    /// [`Table::peer_of`] ignores the sender's port. In every format all routes to one peer
    /// give it the same MAC (or none).
    pub fn build(
        format: WireFormat,
        local_subnets: &[IpNet],
        routes: &[Route],
        previous: Option<&Table>,
    ) -> Result<Table, TableError> {
        for (i, &local) in local_subnets.iter().enumerate() {
            if local != local.trunc() {
                return Err(TableError::HostBitsSet(local));
            }
            if let Some(&earlier) = local_subnets[..i].iter().find(|e| overlaps(e, &local)) {
                return Err(TableError::LocalOverlap(earlier, local));
            }
        }

        let mut table = Table {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            peers: Vec::new(),
            by_addr: HashMap::new(),
            by_ip: HashMap::new(),
            format,
            local: local_subnets.to_vec(),
            routes: routes.to_vec(),
        };
        for route in routes {
            check_route(local_subnets, route)?;
            let prefix = route.prefix;
            let addr = canonical_addr(route.peer);
            if let Some(mac) = route.mac.filter(|m| !m.is_unicast()) {
                return Err(TableError::BadMac(addr, mac));
            }
            if format == WireFormat::Vxlan && route.mac.is_none() {
                return Err(TableError::NoMac(addr));
            }
            let id = match table.by_addr.get(&addr) {
                Some(&id) => {
                    let first = table.peers[id.0 as usize].mac;
                    if first != route.mac {
                        let mac = |m: Option<Mac>| m.unwrap_or_default();
                        return Err(TableError::TwoMacs {
                            peer: addr,
                            first: mac(first),
                            second: mac(route.mac),
                        });
                    }
                    id
                }
                None => {
                    let id =
                        PeerId(u32::try_from(table.peers.len()).expect("fewer than 2^32 routes"));
                    let counters = previous
                        .and_then(|p| p.peer_by_addr(addr).map(|id| p.peer(id).counters.clone()))
                        .unwrap_or_default();
                    if let Some(other) = table.by_ip.insert(addr.ip(), id) {
                        if format == WireFormat::Vxlan {
                            let other = table.peers[other.0 as usize].addr;
                            return Err(TableError::SharedAddress(other, addr));
                        }
                    }
                    table.peers.push(Peer {
                        addr,
                        mac: route.mac,
                        counters,
                    });
                    table.by_addr.insert(addr, id);
                    id
                }
            };
            let previous = match prefix {
                IpNet::V4(p) => table.v4.insert(p, id),
                IpNet::V6(p) => table.v6.insert(p, id),
            };
            if previous.is_some() {
                return Err(TableError::Duplicate(prefix));
            }
        }
        Ok(table)
    }

    /// Longest-prefix match of `dst` among the routes.
    pub fn lookup(&self, dst: IpAddr) -> Option<PeerId> {
        match dst {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, &id)| id),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, &id)| id),
        }
    }

    /// The peer behind `id`.
    ///
    /// # Panics
    /// If `id` did not come from this table.
    pub fn peer(&self, id: PeerId) -> &Peer {
        &self.peers[id.0 as usize]
    }

    /// All peers, indexed by `PeerId.0`.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The peer whose underlay address is `addr` (IPv4-mapped IPv6 addresses are treated as IPv4).
    pub fn peer_by_addr(&self, addr: SocketAddr) -> Option<PeerId> {
        self.by_addr.get(&canonical_addr(addr)).copied()
    }

    /// The peer a datagram from `from` came from: the peer at that address and port in `udp`,
    /// the peer at that address in `vxlan`.
    #[inline]
    pub fn peer_of(&self, from: SocketAddr) -> Option<PeerId> {
        match self.format {
            WireFormat::Udp => self.peer_by_addr(from),
            WireFormat::Vxlan => self.by_ip.get(&canonical_addr(from).ip()).copied(),
        }
    }

    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// `true` when `addr` lies in one of this node's local subnets.
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.local.iter().any(|net| net.contains(&addr))
    }

    /// This node's overlay address of the given family (the first address of its first local
    /// subnet of that family): the address the TUN device carries and ICMP errors come from.
    ///
    /// "First address" is the network address: 198.19.1.0 for 198.19.1.0/24 (as flannel's UDP
    /// backend numbers its TUN device), fd19:0:0:1:: for fd19:0:0:1::/64.
    pub fn router_addr(&self, ipv6: bool) -> Option<IpAddr> {
        self.local
            .iter()
            .find(|net| matches!(net, IpNet::V6(_)) == ipv6)
            .map(IpNet::network)
    }

    pub fn local_subnets(&self) -> &[IpNet] {
        &self.local
    }

    /// Every route, in no particular order (peer addresses as they were given to [`Table::new`]).
    pub fn routes(&self) -> Vec<Route> {
        self.routes.clone()
    }
}

/// `true` when one of the two prefixes contains the other.
/// Checks one route on its own, as [`Table::new`] does for each: canonical prefix, usable peer
/// address, no overlap with a local subnet. (Duplicates are a property of a whole table.)
pub fn check_route(local_subnets: &[IpNet], route: &Route) -> Result<(), TableError> {
    let prefix = route.prefix;
    if prefix != prefix.trunc() {
        return Err(TableError::HostBitsSet(prefix));
    }
    if !usable_peer(canonical_addr(route.peer)) {
        return Err(TableError::BadPeer(route.peer));
    }
    if let Some(&local) = local_subnets.iter().find(|l| overlaps(l, &prefix)) {
        return Err(TableError::OverlapsLocal {
            route: prefix,
            local,
        });
    }
    Ok(())
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// A peer address that a datagram can be sent to.
fn usable_peer(addr: SocketAddr) -> bool {
    let ip_ok = match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    };
    ip_ok && addr.port() != 0
}

/// The form an underlay address is stored and looked up in: an IPv4-mapped IPv6 address (as a
/// dual-stack socket reports IPv4 senders) becomes IPv4; an IPv6 address loses its flow info,
/// and its scope id unless it is link-local (where the scope id tells the links apart).
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => addr,
        SocketAddr::V6(a) => {
            if let Some(v4) = a.ip().to_ipv4_mapped() {
                return SocketAddr::new(IpAddr::V4(v4), a.port());
            }
            let scope_id = if a.ip().is_unicast_link_local() {
                a.scope_id()
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(*a.ip(), a.port(), 0, scope_id))
        }
    }
}

/// The published table: many lock-free readers, one writer at a time.
#[derive(Debug)]
pub struct SharedTable {
    current: arc_swap::ArcSwap<Table>,
}

impl SharedTable {
    pub fn new(table: Table) -> Self {
        Self {
            current: arc_swap::ArcSwap::from_pointee(table),
        }
    }

    /// The current version, for the duration of one batch. Never locks, never waits.
    pub fn load(&self) -> arc_swap::Guard<Arc<Table>> {
        self.current.load()
    }

    /// The current version, to keep beyond a batch (the control side).
    pub fn snapshot(&self) -> Arc<Table> {
        self.current.load_full()
    }

    /// Replaces the current version in one atomic step.
    pub fn publish(&self, table: Table) {
        self.current.store(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn route(prefix: &str, peer: &str) -> Route {
        Route {
            prefix: net(prefix),
            peer: sa(peer),
            mac: None,
        }
    }
    fn peer_addr(t: &Table, dst: &str) -> Option<SocketAddr> {
        t.lookup(ip(dst)).map(|id| t.peer(id).addr)
    }

    fn vxlan(prefix: &str, peer: &str, mac: &str) -> Route {
        Route {
            mac: Some(mac.parse().unwrap()),
            ..route(prefix, peer)
        }
    }

    #[test]
    fn vxlan_tables_match_by_address_and_need_macs() {
        const MAC2: &str = "0a:58:c6:13:02:00";
        let local = [net("198.19.1.0/24")];
        let build = |routes: &[Route]| Table::build(WireFormat::Vxlan, &local, routes, None);
        let t = build(&[
            vxlan("198.19.2.0/24", "198.18.0.2:8472", MAC2),
            vxlan("fd19:0:0:2::/64", "198.18.0.2:8472", MAC2),
        ])
        .unwrap();
        let id = t.lookup(ip("198.19.2.1")).unwrap();
        assert_eq!(t.peer(id).mac, Some(MAC2.parse().unwrap()));
        // A kernel VTEP sends from any source port.
        assert_eq!(t.peer_of(sa("198.18.0.2:41234")), Some(id));
        assert_eq!(t.peer_of(sa("[::ffff:198.18.0.2]:1")), Some(id));
        assert_eq!(t.peer_of(sa("198.18.0.3:8472")), None);
        assert_eq!(t.format(), WireFormat::Vxlan);

        let addr = sa("198.18.0.2:8472");
        assert_eq!(
            build(&[route("198.19.2.0/24", "198.18.0.2:8472")]).unwrap_err(),
            TableError::NoMac(addr)
        );
        let err = build(&[
            vxlan("198.19.2.0/24", "198.18.0.2:8472", MAC2),
            vxlan("198.19.3.0/24", "198.18.0.2:4789", "0a:58:c6:13:03:00"),
        ])
        .unwrap_err();
        assert_eq!(err, TableError::SharedAddress(addr, sa("198.18.0.2:4789")));
        let err = build(&[
            vxlan("198.19.2.0/24", "198.18.0.2:8472", MAC2),
            vxlan("198.19.3.0/24", "198.18.0.2:8472", "0a:58:c6:13:03:00"),
        ])
        .unwrap_err();
        assert!(matches!(err, TableError::TwoMacs { .. }), "{err}");
        let err = build(&[vxlan(
            "198.19.2.0/24",
            "198.18.0.2:8472",
            "ff:ff:ff:ff:ff:ff",
        )]);
        assert!(matches!(err, Err(TableError::BadMac(..))));
    }

    #[test]
    fn udp_tables_match_by_address_and_port() {
        let t = Table::new(
            &[net("198.19.1.0/24")],
            &[vxlan(
                "198.19.2.0/24",
                "198.18.0.2:8285",
                "0a:58:c6:13:02:00",
            )],
        )
        .unwrap();
        assert!(t.peer_of(sa("198.18.0.2:8285")).is_some());
        assert_eq!(t.peer_of(sa("198.18.0.2:41234")), None);
        assert_eq!(t.format(), WireFormat::Udp);
    }

    #[test]
    fn peers_are_deduplicated() {
        let t = Table::new(
            &[net("198.19.1.0/24")],
            &[
                route("198.19.2.0/24", "198.18.0.2:8285"),
                route("fd19:0:0:2::/64", "198.18.0.2:8285"),
                route("198.19.3.0/24", "198.18.0.3:8285"),
                // Same IP, other port: another peer.
                route("198.19.4.0/24", "198.18.0.3:8286"),
            ],
        )
        .unwrap();
        assert_eq!(t.peers().len(), 3);
        let p2 = t.lookup(ip("198.19.2.1")).unwrap();
        assert_eq!(t.lookup(ip("fd19:0:0:2::9")), Some(p2));
        assert_eq!(t.peer(p2).addr, sa("198.18.0.2:8285"));
        assert_eq!(t.peer_by_addr(sa("198.18.0.2:8285")), Some(p2));
        assert_ne!(t.lookup(ip("198.19.3.1")), t.lookup(ip("198.19.4.1")));
        assert_eq!(t.peer_by_addr(sa("198.18.0.2:8286")), None);
        assert_eq!(t.peer_by_addr(sa("198.18.0.9:8285")), None);
        for (i, p) in t.peers().iter().enumerate() {
            assert_eq!(t.peer_by_addr(p.addr), Some(PeerId(i as u32)));
        }
    }

    #[test]
    fn v4_mapped_peer_addresses_are_ipv4() {
        let t = Table::new(
            &[],
            &[
                route("198.19.2.0/24", "[::ffff:198.18.0.2]:8285"),
                route("198.19.3.0/24", "198.18.0.2:8285"),
                route("198.19.4.0/24", "[fd18::4]:8285"),
            ],
        )
        .unwrap();
        assert_eq!(t.peers().len(), 2);
        let id = t.lookup(ip("198.19.2.1")).unwrap();
        assert_eq!(t.lookup(ip("198.19.3.1")), Some(id));
        assert_eq!(t.peer(id).addr, sa("198.18.0.2:8285"));
        // A dual-stack socket reports IPv4 senders as mapped addresses.
        assert_eq!(t.peer_by_addr(sa("[::ffff:198.18.0.2]:8285")), Some(id));
        assert_eq!(t.peer_by_addr(sa("198.18.0.2:8285")), Some(id));
        // Routes keep the spelling they were given.
        assert!(t
            .routes()
            .contains(&route("198.19.2.0/24", "[::ffff:198.18.0.2]:8285")));

        // Flow info (and the scope id of a global address) do not identify a peer.
        let v6 = t.lookup(ip("198.19.4.1")).unwrap();
        let ip6: Ipv6Addr = "fd18::4".parse().unwrap();
        let with_flow = SocketAddr::V6(SocketAddrV6::new(ip6, 8285, 0xabcde, 3));
        assert_eq!(t.peer_by_addr(with_flow), Some(v6));
    }

    #[test]
    fn link_local_peers_keep_their_scope() {
        let ll: Ipv6Addr = "fe80::2".parse().unwrap();
        let on_if2 = SocketAddr::V6(SocketAddrV6::new(ll, 8285, 0, 2));
        let t = Table::new(
            &[],
            &[Route {
                prefix: net("198.19.2.0/24"),
                peer: on_if2,
                mac: None,
            }],
        )
        .unwrap();
        assert!(t.peer_by_addr(on_if2).is_some());
        assert_eq!(
            t.peer_by_addr(SocketAddr::V6(SocketAddrV6::new(ll, 8285, 0, 3))),
            None
        );
    }

    #[test]
    fn lpm_ipv4_nested() {
        let t = Table::new(
            &[],
            &[
                route("198.0.0.0/8", "198.18.0.8:1"),
                route("198.19.0.0/16", "198.18.0.16:1"),
                route("198.19.7.0/24", "198.18.0.24:1"),
                route("198.19.7.7/32", "198.18.0.32:1"),
            ],
        )
        .unwrap();
        assert_eq!(peer_addr(&t, "198.1.2.3"), Some(sa("198.18.0.8:1")));
        assert_eq!(peer_addr(&t, "198.19.8.1"), Some(sa("198.18.0.16:1")));
        assert_eq!(peer_addr(&t, "198.19.7.0"), Some(sa("198.18.0.24:1")));
        assert_eq!(peer_addr(&t, "198.19.7.6"), Some(sa("198.18.0.24:1")));
        assert_eq!(peer_addr(&t, "198.19.7.8"), Some(sa("198.18.0.24:1")));
        assert_eq!(peer_addr(&t, "198.19.7.255"), Some(sa("198.18.0.24:1")));
        assert_eq!(peer_addr(&t, "198.19.7.7"), Some(sa("198.18.0.32:1")));
        assert_eq!(peer_addr(&t, "199.19.7.7"), None);
        assert_eq!(peer_addr(&t, "0.0.0.0"), None);
        // A v4-mapped IPv6 destination is IPv6, and there is no IPv6 route.
        assert_eq!(peer_addr(&t, "::ffff:198.19.7.7"), None);
    }

    #[test]
    fn lpm_ipv6_nested() {
        let t = Table::new(
            &[],
            &[
                route("fd19:0:1::/48", "[fd18::48]:1"),
                route("fd19:0:1:2::/64", "[fd18::64]:1"),
                route("fd19:0:1:2::5/128", "[fd18::128]:1"),
            ],
        )
        .unwrap();
        assert_eq!(peer_addr(&t, "fd19:0:1:3::5"), Some(sa("[fd18::48]:1")));
        assert_eq!(
            peer_addr(&t, "fd19:0:1:ffff:ffff::"),
            Some(sa("[fd18::48]:1"))
        );
        assert_eq!(peer_addr(&t, "fd19:0:1:2::4"), Some(sa("[fd18::64]:1")));
        assert_eq!(
            peer_addr(&t, "fd19:0:1:2:ffff::5"),
            Some(sa("[fd18::64]:1"))
        );
        assert_eq!(peer_addr(&t, "fd19:0:1:2::5"), Some(sa("[fd18::128]:1")));
        assert_eq!(peer_addr(&t, "fd19:0:2::5"), None);
        assert_eq!(peer_addr(&t, "198.19.1.1"), None);
    }

    #[test]
    fn default_routes() {
        let t = Table::new(
            &[net("fd19:0:0:1::/64")],
            &[
                route("0.0.0.0/0", "198.18.0.1:8285"),
                route("198.19.2.0/24", "198.18.0.2:8285"),
                route("fd18:0:5::/48", "[fd18::3]:8285"),
            ],
        )
        .unwrap();
        assert_eq!(peer_addr(&t, "198.19.2.200"), Some(sa("198.18.0.2:8285")));
        assert_eq!(peer_addr(&t, "198.19.3.1"), Some(sa("198.18.0.1:8285")));
        assert_eq!(peer_addr(&t, "0.0.0.0"), Some(sa("198.18.0.1:8285")));
        assert_eq!(
            peer_addr(&t, "255.255.255.255"),
            Some(sa("198.18.0.1:8285"))
        );
        assert_eq!(peer_addr(&t, "fd18:0:5:2::1"), Some(sa("[fd18::3]:8285")));
        assert_eq!(peer_addr(&t, "fd19:0:0:2::1"), None);

        let t = Table::new(&[], &[route("::/0", "[fd18::1]:8285")]).unwrap();
        assert_eq!(peer_addr(&t, "fd19::1"), Some(sa("[fd18::1]:8285")));
        assert_eq!(peer_addr(&t, "198.19.3.1"), None);
    }

    #[test]
    fn lookup_matches_a_naive_scan() {
        // Deterministic pseudo-random routes inside 198.18.0.0/15 of every length 15..=32.
        let mut x: u32 = 0x2545_f491;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        let mut routes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while routes.len() < 300 {
            let len = 15 + (next() % 18) as u8;
            let addr = Ipv4Addr::from(base | (next() & 0x1_ffff));
            let prefix = IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc());
            if seen.insert(prefix) {
                let peer = SocketAddr::from(([198, 18, 0, (routes.len() % 200) as u8 + 1], 8285));
                routes.push(Route::new(prefix, peer));
            }
        }
        let t = Table::new(&[], &routes).unwrap();
        for _ in 0..20_000 {
            let addr = IpAddr::V4(Ipv4Addr::from(base | (next() & 0x1_ffff)));
            let naive = routes
                .iter()
                .filter(|r| r.prefix.contains(&addr))
                .max_by_key(|r| r.prefix.prefix_len())
                .map(|r| r.peer);
            assert_eq!(t.lookup(addr).map(|id| t.peer(id).addr), naive, "{addr}");
        }
    }

    #[test]
    fn local_subnets_and_router_addr() {
        let t = Table::new(
            &[
                net("198.19.1.0/24"),
                net("fd19:0:0:1::/64"),
                net("198.19.9.0/24"),
            ],
            &[route("198.19.2.0/24", "198.18.0.2:8285")],
        )
        .unwrap();
        assert!(t.is_local(ip("198.19.1.0")));
        assert!(t.is_local(ip("198.19.1.255")));
        assert!(t.is_local(ip("198.19.9.4")));
        assert!(t.is_local(ip("fd19:0:0:1:ffff::1")));
        assert!(!t.is_local(ip("198.19.2.1")));
        assert!(!t.is_local(ip("fd19:0:0:2::1")));
        assert!(!t.is_local(ip("::ffff:198.19.1.1")));
        assert_eq!(t.router_addr(false), Some(ip("198.19.1.0")));
        assert_eq!(t.router_addr(true), Some(ip("fd19:0:0:1::")));
        assert_eq!(t.local_subnets().len(), 3);
        assert_eq!(t.routes(), vec![route("198.19.2.0/24", "198.18.0.2:8285")]);

        let t = Table::new(&[net("fd19:0:0:1::/64")], &[]).unwrap();
        assert_eq!(t.router_addr(false), None);
        assert!(t.peers().is_empty());
        assert_eq!(t.lookup(ip("198.19.1.1")), None);
    }

    #[test]
    fn validation_errors() {
        let locals = [net("198.19.1.0/24"), net("fd19:0:0:1::/64")];
        let err = |locals: &[IpNet], routes: &[Route]| Table::new(locals, routes).unwrap_err();

        assert_eq!(
            err(&[net("198.19.1.1/24")], &[]),
            TableError::HostBitsSet(net("198.19.1.1/24"))
        );
        assert_eq!(
            err(&locals, &[route("198.19.2.7/24", "198.18.0.2:1")]),
            TableError::HostBitsSet(net("198.19.2.7/24"))
        );
        assert_eq!(
            err(&locals, &[route("fd19:0:0:2::1/64", "198.18.0.2:1")]),
            TableError::HostBitsSet(net("fd19:0:0:2::1/64"))
        );
        assert_eq!(
            err(
                &locals,
                &[
                    route("198.19.2.0/24", "198.18.0.2:1"),
                    route("198.19.2.0/24", "198.18.0.3:1")
                ]
            ),
            TableError::Duplicate(net("198.19.2.0/24"))
        );
        assert_eq!(
            err(
                &locals,
                &[
                    route("fd19:0:0:2::/64", "198.18.0.2:1"),
                    route("fd19:0:0:2::/64", "198.18.0.2:1")
                ]
            ),
            TableError::Duplicate(net("fd19:0:0:2::/64"))
        );
        // Inside, equal to, and covering a local subnet.
        for prefix in [
            "198.19.1.128/25",
            "198.19.1.0/24",
            "198.18.0.0/15",
            "0.0.0.0/0",
        ] {
            assert_eq!(
                err(&locals, &[route(prefix, "198.18.0.2:1")]),
                TableError::OverlapsLocal {
                    route: net(prefix),
                    local: net("198.19.1.0/24")
                }
            );
        }
        assert_eq!(
            err(&locals, &[route("::/0", "198.18.0.2:1")]),
            TableError::OverlapsLocal {
                route: net("::/0"),
                local: net("fd19:0:0:1::/64")
            }
        );
        assert_eq!(
            err(
                &[net("198.19.0.0/16"), net("fd19::/16"), net("198.19.4.0/24")],
                &[]
            ),
            TableError::LocalOverlap(net("198.19.0.0/16"), net("198.19.4.0/24"))
        );
        assert_eq!(
            err(&[net("198.19.1.0/24"), net("198.19.1.0/24")], &[]),
            TableError::LocalOverlap(net("198.19.1.0/24"), net("198.19.1.0/24"))
        );
        for peer in [
            "0.0.0.0:8285",
            "[::]:8285",
            "224.0.0.1:8285",
            "[ff02::1]:8285",
            "255.255.255.255:8285",
            "198.18.0.2:0",
            "[::ffff:0.0.0.0]:8285",
        ] {
            assert_eq!(
                err(&locals, &[route("198.19.2.0/24", peer)]),
                TableError::BadPeer(sa(peer)),
                "{peer}"
            );
        }
        // Messages name the problem.
        assert_eq!(
            TableError::HostBitsSet(net("198.19.1.1/24")).to_string(),
            "prefix 198.19.1.1/24 has host bits set (did you mean 198.19.1.0/24?)"
        );
    }

    #[test]
    fn shared_table_publishes_atomically() {
        let shared = SharedTable::new(Table::new(&[net("198.19.1.0/24")], &[]).unwrap());
        let old = shared.snapshot();
        assert_eq!(shared.load().lookup(ip("198.19.2.1")), None);
        shared.publish(
            Table::new(
                &[net("198.19.1.0/24")],
                &[route("198.19.2.0/24", "198.18.0.2:8285")],
            )
            .unwrap(),
        );
        assert!(shared.load().lookup(ip("198.19.2.1")).is_some());
        assert_eq!(old.lookup(ip("198.19.2.1")), None);
    }

    #[test]
    fn peer_counters_survive_new_versions() {
        let local: IpNet = "198.19.1.0/24".parse().unwrap();
        let a: SocketAddr = "198.18.0.2:8285".parse().unwrap();
        let b: SocketAddr = "198.18.0.3:8285".parse().unwrap();
        let route = |p: &str, peer| Route::new(p.parse().unwrap(), peer);
        let v1 = Table::new(
            &[local],
            &[route("198.19.2.0/24", a), route("198.19.3.0/24", b)],
        )
        .unwrap();
        v1.peer(v1.peer_by_addr(a).unwrap()).counters.add_tx(3, 300);
        v1.peer(v1.peer_by_addr(b).unwrap()).counters.add_rx(5, 500);
        // b loses its routes, a keeps one and gains another, c is new.
        let c: SocketAddr = "198.18.0.4:8285".parse().unwrap();
        let routes = [
            route("198.19.2.0/24", a),
            route("198.19.5.0/24", a),
            route("198.19.4.0/24", c),
        ];
        let v2 = Table::new_after(&[local], &routes, Some(&v1)).unwrap();
        let a2 = v2.peer(v2.peer_by_addr(a).unwrap()).counters.snapshot();
        assert_eq!((a2.tx_packets, a2.tx_bytes), (3, 300));
        assert_eq!(
            v2.peer(v2.peer_by_addr(c).unwrap()).counters.snapshot(),
            Default::default()
        );
        assert!(v2.peer_by_addr(b).is_none());
        // A version built from scratch starts at zero.
        let v3 = Table::new(&[local], &routes).unwrap();
        assert_eq!(
            v3.peer(v3.peer_by_addr(a).unwrap()).counters.snapshot(),
            Default::default()
        );
    }
}
