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

/// Index of a peer in its [`Table`]. Only meaningful with the table that returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// A peer node: where its packets go on the underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
}

/// One route: everything inside `prefix` belongs to the node reachable at `peer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub prefix: IpNet,
    pub peer: SocketAddr,
}

/// Why a table could not be built. Nothing is published when building fails.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
            local: local_subnets.to_vec(),
            routes: routes.to_vec(),
        };
        for route in routes {
            let prefix = route.prefix;
            if prefix != prefix.trunc() {
                return Err(TableError::HostBitsSet(prefix));
            }
            let addr = canonical_addr(route.peer);
            if !usable_peer(addr) {
                return Err(TableError::BadPeer(route.peer));
            }
            if let Some(&local) = local_subnets.iter().find(|l| overlaps(l, &prefix)) {
                return Err(TableError::OverlapsLocal {
                    route: prefix,
                    local,
                });
            }
            let id = match table.by_addr.get(&addr) {
                Some(&id) => id,
                None => {
                    let id =
                        PeerId(u32::try_from(table.peers.len()).expect("fewer than 2^32 routes"));
                    table.peers.push(Peer { addr });
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
