//! The route table: overlay prefixes (IPv4 and IPv6, any length) mapped to the peer node that
//! owns them, looked up by longest-prefix match, and published lock-free.
//!
//! A [`Table`] is immutable once built. The control side builds a complete new version and
//! [`SharedTable::publish`]es it in one atomic step (RCU style); the datapath threads
//! [`SharedTable::load`] once per batch and see the old or the new version, never a mix.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

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
    // Implementation-defined: prefix tries per family, peers, peer-by-address map, local subnets.
}

impl Table {
    /// Builds and validates a table. Prefixes must be canonical (no host bits), routes must not
    /// overlap the local subnets, local subnets must not overlap each other. Routes to the same
    /// peer address share one [`PeerId`].
    pub fn new(local_subnets: &[IpNet], routes: &[Route]) -> Result<Table, TableError> {
        let _ = (local_subnets, routes);
        todo!()
    }

    /// Longest-prefix match of `dst` among the routes.
    pub fn lookup(&self, dst: IpAddr) -> Option<PeerId> {
        let _ = dst;
        todo!()
    }

    /// The peer behind `id`.
    ///
    /// # Panics
    /// If `id` did not come from this table.
    pub fn peer(&self, id: PeerId) -> &Peer {
        let _ = id;
        todo!()
    }

    /// All peers, indexed by `PeerId.0`.
    pub fn peers(&self) -> &[Peer] {
        todo!()
    }

    /// The peer whose underlay address is `addr` (IPv4-mapped IPv6 addresses are treated as IPv4).
    pub fn peer_by_addr(&self, addr: SocketAddr) -> Option<PeerId> {
        let _ = addr;
        todo!()
    }

    /// `true` when `addr` lies in one of this node's local subnets.
    pub fn is_local(&self, addr: IpAddr) -> bool {
        let _ = addr;
        todo!()
    }

    /// This node's overlay address of the given family (the first address of its first local
    /// subnet of that family): the address the TUN device carries and ICMP errors come from.
    pub fn router_addr(&self, ipv6: bool) -> Option<IpAddr> {
        let _ = ipv6;
        todo!()
    }

    pub fn local_subnets(&self) -> &[IpNet] {
        todo!()
    }

    /// Every route, in no particular order.
    pub fn routes(&self) -> Vec<Route> {
        todo!()
    }
}

/// The published table: many lock-free readers, one writer at a time.
#[derive(Debug)]
pub struct SharedTable {
    current: arc_swap::ArcSwap<Table>,
}

impl SharedTable {
    pub fn new(table: Table) -> Self {
        Self { current: arc_swap::ArcSwap::from_pointee(table) }
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
