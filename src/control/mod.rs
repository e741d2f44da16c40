//! The control side: one thread owns the writer side of the route table and the kernel routes
//! through the TUN. Everything that changes routes (the library's [`Controller::routes`], the
//! control socket, a config reload) is a transaction sent to that thread, which validates it
//! completely, applies the kernel side, and publishes a new table version in one atomic step.
//!
//! Transactions that arrive together are published together: under a storm of single-route
//! changes the thread builds one table per burst, not one per change, while each transaction
//! still succeeds or fails on its own.

pub mod client;
pub mod metrics;
pub mod protocol;
pub mod socket;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use datapath::route::{canonical_addr, check_route};
use datapath::{
    Counters, DropReason, LocalCounters, Mac, PeerTotals, Route, SharedTable, Table, TableError,
    WireFormat,
};
use ipnet::IpNet;

use crate::config::{Config, IoMode};
use crate::io::Offloads;
use crate::netdev::{NetConfig, NetdevError};

/// Most transactions folded into one published version.
const MAX_BURST: usize = 4096;

/// A transaction waiting in a burst, and where its result goes.
type Pending = (Vec<RouteOp>, Sender<Result<Applied, ControlError>>);

/// One change inside a route transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// Routes `prefix` to `peer`, replacing the peer if the prefix is already routed.
    Insert(Route),
    /// Removes the route to a prefix; an error if it is not routed.
    Remove(IpNet),
    /// Replaces every route (a resync).
    ReplaceAll(Vec<Route>),
}

/// Why a route transaction was refused. A refused transaction changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Invalid(#[from] TableError),
    #[error("{0} is not routed")]
    NotRouted(IpNet),
    #[error("{0} is routed twice in this transaction")]
    Duplicate(IpNet),
    #[error(transparent)]
    Kernel(#[from] NetdevError),
    #[error("peer {0}: a VTEP MAC applies to the vxlan format only (this dataplane runs udp)")]
    MacNotVxlan(SocketAddr),
    #[error("{0} cannot change while running; restart tundra to change it")]
    NeedsRestart(&'static str),
    #[error("the dataplane is shutting down")]
    Closed,
}

/// What a committed transaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The table version that contains the change.
    pub version: u64,
    pub added: usize,
    pub removed: usize,
    /// Prefixes that moved to another peer.
    pub changed: usize,
    /// Routes in the table afterwards.
    pub routes: usize,
}

/// A peer and its traffic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// Its VTEP MAC (vxlan); left out of the JSON when `None`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "mac_text")]
    pub mac: Option<Mac>,
    pub prefixes: Vec<IpNet>,
    #[serde(flatten)]
    pub totals: PeerTotals,
}

/// A MAC as its text, `aa:bb:cc:dd:ee:ff`.
fn mac_text<S: serde::Serializer>(mac: &Option<Mac>, s: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(mac) => s.collect_str(mac),
        None => s.serialize_none(),
    }
}

/// What a flannel node's lease source reports (`Dataplane::follow_leases`), in `stats` and
/// `health` as `"lease"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LeaseInfo {
    /// Our lease's etcd key and its subnets (the local subnets).
    pub key: String,
    pub subnets: Vec<IpNet>,
    /// The route set applied last: its version (1: the initial list) and the etcd revision it
    /// reflects.
    pub version: u64,
    pub revision: i64,
    /// Other nodes' leases known, and the routes made from them.
    pub leases: usize,
    pub routes: usize,
    /// Leases refused now (bad value, conflict), refusals since start, leases of another
    /// backend ignored now.
    pub refused: usize,
    pub refused_total: u64,
    pub ignored: usize,
    /// Times the leases were listed again (a watch broke, etcd restarted, compaction).
    pub relists: u64,
    /// Route sets the control thread refused (retried; 0 unless the kernel refused a route).
    pub apply_errors: u64,
    /// Set when another node took our subnet: the node must stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

/// Called for the current [`LeaseInfo`] whenever stats or health are asked for.
pub(crate) type LeaseReport = Arc<dyn Fn() -> LeaseInfo + Send + Sync>;

/// Counters of the whole dataplane and of each peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub totals: LocalCounters,
    pub peers: Vec<PeerInfo>,
    pub routes: usize,
    pub version: u64,
    pub uptime: Duration,
    pub io: IoMode,
    pub offloads: Offloads,
    /// The wire format with its parameters (the VTEP MAC in use with `vxlan`).
    pub encap: datapath::Encap,
    /// The UDP socket's port.
    pub port: u16,
    /// A flannel node's lease and the route sets applied from etcd; `None` without etcd.
    pub lease: Option<LeaseInfo>,
}

impl Stats {
    /// The stats as JSON: totals, drops by reason, and per-peer counters.
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.totals;
        let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
            .iter()
            .map(|r| (r.as_str().to_owned(), c.drops[*r as usize].into()))
            .collect();
        let mut json = serde_json::json!({
            "tx_packets": c.tx_packets,
            "tx_bytes": c.tx_bytes,
            "rx_packets": c.rx_packets,
            "rx_bytes": c.rx_bytes,
            "icmp_sent": c.icmp_sent,
            "gso_fallbacks": c.gso_fallbacks,
            "drops": drops,
            "routes": self.routes,
            "version": self.version,
            "uptime_secs": self.uptime.as_secs_f64(),
            "io": self.io.to_string(),
            "offload": offloads_json(self.offloads),
            "encap": encap_json(self.encap, self.port),
            "peers": self.peers,
        });
        if let Some(lease) = &self.lease {
            json["lease"] = serde_json::json!(lease);
        }
        json
    }
}

/// The wire format, as `stats --json` and health show it: `{"format":"udp"}`, or
/// `{"format":"vxlan","vni":1,"vtep_mac":"0a:..","port":8472}`.
pub(crate) fn encap_json(encap: datapath::Encap, port: u16) -> serde_json::Value {
    match encap {
        datapath::Encap::Udp => serde_json::json!({"format": "udp"}),
        datapath::Encap::Vxlan { vni, mac } => serde_json::json!({
            "format": "vxlan",
            "vni": vni,
            "vtep_mac": mac.to_string(),
            "port": port,
        }),
    }
}

/// What the kernel granted, as `stats --json` and health show it.
pub(crate) fn offloads_json(o: Offloads) -> serde_json::Value {
    serde_json::json!({
        "tun_tso": o.tun.tso,
        "tun_uso": o.tun.uso,
        "udp_gso": o.udp_gso,
        "udp_gro": o.udp_gro,
    })
}

enum Request {
    Routes(Vec<RouteOp>, Sender<Result<Applied, ControlError>>),
    /// Stop serving; later requests are answered [`ControlError::Closed`].
    Close,
}

struct Shared {
    table: Arc<SharedTable>,
    counters: Arc<Counters>,
    version: AtomicU64,
    started: Instant,
    io: IoMode,
    offloads: Offloads,
    encap: datapath::Encap,
    /// The UDP socket's address (peers must be of a family it reaches).
    listen: SocketAddr,
    /// Datapath threads that ended while the dataplane was not stopping.
    failed: Mutex<Vec<&'static str>>,
    /// A flannel node's lease report.
    lease: Mutex<Option<LeaseReport>>,
}

/// A cheap, cloneable handle to a running dataplane's control side. `Send + Sync`: use it from
/// any thread; its calls block only while the control thread applies the change (kernel route
/// updates included), which from an async program belongs in `spawn_blocking`.
#[derive(Clone)]
pub struct Controller {
    tx: Sender<Request>,
    shared: Arc<Shared>,
}

impl Controller {
    /// A route transaction: add changes, then [`RouteTxn::commit`].
    pub fn routes(&self) -> RouteTxn<'_> {
        RouteTxn {
            controller: self,
            ops: Vec::new(),
        }
    }

    /// Applies `ops` as one transaction.
    ///
    /// # Errors
    /// The first invalid change, or a kernel route the kernel refused; nothing is applied then.
    pub fn apply(&self, ops: Vec<RouteOp>) -> Result<Applied, ControlError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Request::Routes(ops, reply))
            .map_err(|_| ControlError::Closed)?;
        rx.recv().map_err(|_| ControlError::Closed)?
    }

    /// Asks the control thread to stop (the dataplane is shutting down).
    pub(crate) fn close(&self) {
        let _ = self.tx.send(Request::Close);
    }

    /// The current table version (immutable; a later change publishes a new one).
    pub fn table(&self) -> Arc<Table> {
        self.shared.table.snapshot()
    }

    /// Every peer with its prefixes and counters, ordered by address.
    pub fn peers(&self) -> Vec<PeerInfo> {
        peers_of(&self.table())
    }

    /// The local address of the UDP socket (a peer's address family must be one it reaches).
    pub fn listen(&self) -> SocketAddr {
        self.shared.listen
    }

    /// The wire format with its parameters: it decides a route's default port and whether it
    /// needs a MAC.
    pub fn encap(&self) -> datapath::Encap {
        self.shared.encap
    }

    /// The datapath threads that have ended on their own (failed or panicked), if any: the
    /// dataplane is degraded then.
    pub fn failed_threads(&self) -> Vec<&'static str> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A guard for datapath thread `name`: if it is dropped (the thread returned or panicked)
    /// while `stop` is unset, the thread is recorded as failed.
    pub(crate) fn watch(&self, name: &'static str, stop: Arc<AtomicBool>) -> ThreadWatch {
        ThreadWatch {
            shared: self.shared.clone(),
            name,
            stop,
        }
    }

    /// Makes stats and health carry `report()` as `"lease"` (`None`: no more).
    pub(crate) fn set_lease_report(&self, report: Option<LeaseReport>) {
        *self.shared.lease.lock().unwrap_or_else(|e| e.into_inner()) = report;
    }

    /// The lease report, if this dataplane follows etcd leases.
    pub fn lease(&self) -> Option<LeaseInfo> {
        let report = self
            .shared
            .lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        report.map(|f| f())
    }

    pub fn stats(&self) -> Stats {
        let table = self.table();
        Stats {
            totals: self.shared.counters.snapshot(),
            routes: table.routes().len(),
            peers: peers_of(&table),
            version: self.shared.version.load(Ordering::Relaxed),
            uptime: self.shared.started.elapsed(),
            io: self.shared.io,
            offloads: self.shared.offloads,
            encap: self.shared.encap,
            port: self.shared.listen.port(),
            lease: self.lease(),
        }
    }
}

/// See [`Controller::watch`].
pub(crate) struct ThreadWatch {
    shared: Arc<Shared>,
    name: &'static str,
    stop: Arc<AtomicBool>,
}

impl Drop for ThreadWatch {
    fn drop(&mut self) {
        if !self.stop.load(Ordering::Relaxed) {
            self.shared
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.name);
        }
    }
}

fn peers_of(table: &Table) -> Vec<PeerInfo> {
    let mut prefixes: HashMap<SocketAddr, Vec<IpNet>> = HashMap::new();
    for route in table.routes() {
        prefixes
            .entry(datapath::route::canonical_addr(route.peer))
            .or_default()
            .push(route.prefix);
    }
    let mut peers: Vec<PeerInfo> = table
        .peers()
        .iter()
        .map(|p| {
            let mut prefixes = prefixes.remove(&p.addr).unwrap_or_default();
            prefixes.sort();
            PeerInfo {
                addr: p.addr,
                mac: p.mac,
                prefixes,
                totals: p.counters.snapshot(),
            }
        })
        .collect();
    peers.sort_by_key(|p| p.addr);
    peers
}

/// A route transaction under construction. Nothing happens until [`RouteTxn::commit`].
#[must_use = "a route transaction does nothing until it is committed"]
pub struct RouteTxn<'a> {
    controller: &'a Controller,
    ops: Vec<RouteOp>,
}

impl RouteTxn<'_> {
    /// Routes `prefix` to `peer` (replacing its peer if it is routed already), in the `udp`
    /// format; a `vxlan` peer needs [`RouteTxn::insert_with_mac`].
    pub fn insert(mut self, prefix: IpNet, peer: SocketAddr) -> Self {
        self.ops.push(RouteOp::Insert(Route::new(prefix, peer)));
        self
    }

    /// Routes `prefix` to `peer` whose VTEP MAC is `mac` (`vxlan`; every route to one peer
    /// gives it the same MAC, so moving a peer to a new MAC changes all its routes at once).
    pub fn insert_with_mac(mut self, prefix: IpNet, peer: SocketAddr, mac: Mac) -> Self {
        self.ops.push(RouteOp::Insert(Route {
            prefix,
            peer,
            mac: Some(mac),
        }));
        self
    }

    /// Removes the route to `prefix`.
    pub fn remove(mut self, prefix: IpNet) -> Self {
        self.ops.push(RouteOp::Remove(prefix));
        self
    }

    /// Replaces every route with `routes`; later changes in the same transaction apply on top.
    pub fn replace_all(mut self, routes: impl IntoIterator<Item = Route>) -> Self {
        self.ops
            .push(RouteOp::ReplaceAll(routes.into_iter().collect()));
        self
    }

    /// Applies the transaction as one table version.
    ///
    /// # Errors
    /// As [`Controller::apply`]: nothing is applied.
    pub fn commit(self) -> Result<Applied, ControlError> {
        self.controller.apply(self.ops)
    }
}

/// Where a prefix goes: the peer's address as given, and its MAC.
type Dest = (SocketAddr, Option<Mac>);

/// The authoritative routes, with what a table checks across routes kept countable, so that a
/// transaction is checked in the time of its own changes, not of the whole table.
#[derive(Default)]
struct RouteMap {
    routes: HashMap<IpNet, Dest>,
    /// Routes per canonical peer address and MAC: one MAC per peer between transactions.
    macs: HashMap<SocketAddr, HashMap<Option<Mac>, usize>>,
    /// Routes per underlay IP and canonical peer address: one address per IP between
    /// transactions in `vxlan`, where a receive is matched by IP alone.
    addrs: HashMap<IpAddr, HashMap<SocketAddr, usize>>,
}

impl RouteMap {
    fn new(routes: &[Route]) -> RouteMap {
        let mut map = RouteMap::default();
        for r in routes {
            map.insert(r.prefix, (r.peer, r.mac));
        }
        map
    }

    fn get(&self, prefix: &IpNet) -> Option<&Dest> {
        self.routes.get(prefix)
    }

    fn len(&self) -> usize {
        self.routes.len()
    }

    fn insert(&mut self, prefix: IpNet, dest: Dest) -> Option<Dest> {
        let old = self.routes.insert(prefix, dest);
        if let Some(old) = old {
            self.count(old, false);
        }
        self.count(dest, true);
        old
    }

    fn remove(&mut self, prefix: &IpNet) -> Option<Dest> {
        let old = self.routes.remove(prefix);
        if let Some(old) = old {
            self.count(old, false);
        }
        old
    }

    /// Removes every route and returns them.
    fn take_all(&mut self) -> Vec<(IpNet, Dest)> {
        self.macs.clear();
        self.addrs.clear();
        self.routes.drain().collect()
    }

    fn routes(&self) -> Vec<Route> {
        self.routes
            .iter()
            .map(|(&prefix, &(peer, mac))| Route { prefix, peer, mac })
            .collect()
    }

    fn count(&mut self, (peer, mac): Dest, add: bool) {
        fn step<K: Eq + std::hash::Hash>(counts: &mut HashMap<K, usize>, key: K, add: bool) {
            if add {
                *counts.entry(key).or_default() += 1;
            } else if let Some(n) = counts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&key);
                }
            }
        }
        let addr = canonical_addr(peer);
        let macs = self.macs.entry(addr).or_default();
        step(macs, mac, add);
        if macs.is_empty() {
            self.macs.remove(&addr);
        }
        let addrs = self.addrs.entry(addr.ip()).or_default();
        step(addrs, addr, add);
        if addrs.is_empty() {
            self.addrs.remove(&addr.ip());
        }
    }

    /// What a table would refuse about `dest`, a destination routed now, given the other
    /// routes: another MAC for its peer; in `vxlan`, another peer on its IP.
    fn conflict(&self, (peer, mac): Dest, format: WireFormat) -> Option<TableError> {
        let addr = canonical_addr(peer);
        let macs = self.macs.get(&addr)?;
        if !macs.contains_key(&mac) {
            return None;
        }
        if let Some(&other) = macs.keys().find(|&&m| m != mac) {
            return Some(TableError::TwoMacs {
                peer: addr,
                first: other.unwrap_or_default(),
                second: mac.unwrap_or_default(),
            });
        }
        if format == WireFormat::Vxlan {
            let addrs = self.addrs.get(&addr.ip())?;
            if let Some(&other) = addrs.keys().find(|&&a| a != addr) {
                return Some(TableError::SharedAddress(other, addr));
            }
        }
        None
    }
}

/// The control thread's state: the authoritative route map, and the kernel side.
pub(crate) struct ControlThread {
    rx: Receiver<Request>,
    shared: Arc<Shared>,
    local: Vec<IpNet>,
    format: WireFormat,
    routes: RouteMap,
    netconfig: Option<NetConfig>,
}

/// Creates the control side of a dataplane whose table is `table`; run the returned thread
/// state with [`ControlThread::run`].
pub(crate) fn new(
    config: &Config,
    table: Arc<SharedTable>,
    counters: Arc<Counters>,
    io: IoMode,
    offloads: Offloads,
    encap: datapath::Encap,
    netconfig: Option<NetConfig>,
) -> (Controller, ControlThread) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        table,
        counters,
        version: AtomicU64::new(1),
        started: Instant::now(),
        io,
        offloads,
        encap,
        listen: config.listen,
        failed: Mutex::new(Vec::new()),
        lease: Mutex::new(None),
    });
    let thread = ControlThread {
        rx,
        shared: shared.clone(),
        local: config.local_subnets.clone(),
        format: encap.format(),
        routes: RouteMap::new(&config.peers),
        netconfig,
    };
    (Controller { tx, shared }, thread)
}

impl ControlThread {
    /// Serves transactions until every [`Controller`] is gone; returns the kernel configuration
    /// so the caller removes it after the datapath threads have stopped.
    pub(crate) fn run(mut self) -> Option<NetConfig> {
        let mut burst: Vec<Pending> = Vec::new();
        let mut closing = false;
        while !closing {
            match self.rx.recv() {
                Ok(Request::Routes(ops, reply)) => burst.push((ops, reply)),
                Ok(Request::Close) | Err(_) => break,
            }
            while burst.len() < MAX_BURST {
                match self.rx.try_recv() {
                    Ok(Request::Routes(ops, reply)) => burst.push((ops, reply)),
                    Ok(Request::Close) => {
                        closing = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.apply_burst(&mut burst);
        }
        self.netconfig
    }

    /// Applies each transaction of the burst on its own (a refused one changes nothing), then
    /// publishes one version with all that succeeded, then answers them all.
    fn apply_burst(&mut self, burst: &mut Vec<Pending>) {
        let mut results = Vec::with_capacity(burst.len());
        for (ops, _) in burst.iter() {
            results.push(self.apply_one(ops));
        }
        let mut version = self.shared.version.load(Ordering::Relaxed);
        if results.iter().any(Result::is_ok) {
            let routes = self.routes.routes();
            let previous = self.shared.table.snapshot();
            match Table::build(self.format, &self.local, &routes, Some(&previous)) {
                Ok(table) => {
                    version += 1;
                    self.shared.table.publish(table);
                    self.shared.version.store(version, Ordering::Relaxed);
                }
                Err(e) => {
                    // Each change was checked on its own, so this is a bug; keep serving the
                    // published version and say so.
                    tracing::error!("route table rebuild failed after checks passed: {e}");
                    self.routes = RouteMap::new(&previous.routes());
                    for r in results.iter_mut() {
                        if r.is_ok() {
                            *r = Err(ControlError::Invalid(e.clone()));
                        }
                    }
                }
            }
        }
        let total = self.routes.len();
        for ((_, reply), result) in burst.drain(..).zip(results) {
            let _ = reply.send(result.map(|a| Applied {
                version,
                routes: total,
                ..a
            }));
        }
    }

    /// Applies one transaction to the route map and the kernel, or nothing of it.
    fn apply_one(&mut self, ops: &[RouteOp]) -> Result<Applied, ControlError> {
        // The value of each touched prefix before this transaction: the undo log, and the diff.
        let mut before: HashMap<IpNet, Option<Dest>> = HashMap::new();
        if let Err(e) = self.apply_ops(ops, &mut before) {
            self.undo(before);
            return Err(e);
        }
        let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), 0);
        for (prefix, old) in &before {
            match (old, self.routes.get(prefix)) {
                (None, Some(_)) => added.push(*prefix),
                (Some(_), None) => removed.push(*prefix),
                (Some(a), Some(b)) if a != b => changed += 1,
                _ => {}
            }
        }
        if let Some(netconfig) = self.netconfig.as_mut() {
            if let Err(e) = kernel_apply(netconfig, &added, &removed) {
                self.undo(before);
                return Err(e);
            }
        }
        Ok(Applied {
            version: 0,
            added: added.len(),
            removed: removed.len(),
            changed,
            routes: 0,
        })
    }

    fn apply_ops(
        &mut self,
        ops: &[RouteOp],
        before: &mut HashMap<IpNet, Option<Dest>>,
    ) -> Result<(), ControlError> {
        let mut seen = HashSet::new();
        // Every destination given, to check against the others once all ops are applied (a
        // transaction may move a peer to a new MAC route by route).
        let mut given: HashSet<Dest> = HashSet::new();
        for op in ops {
            match op {
                RouteOp::Insert(route) => {
                    check_route(&self.local, route)?;
                    self.check_mac(route)?;
                    if !seen.insert(route.prefix) {
                        return Err(ControlError::Duplicate(route.prefix));
                    }
                    let old = self.routes.insert(route.prefix, (route.peer, route.mac));
                    before.entry(route.prefix).or_insert(old);
                    given.insert((route.peer, route.mac));
                }
                RouteOp::Remove(prefix) => {
                    let old = self
                        .routes
                        .remove(prefix)
                        .ok_or(ControlError::NotRouted(*prefix))?;
                    before.entry(*prefix).or_insert(Some(old));
                }
                RouteOp::ReplaceAll(routes) => {
                    let mut unique = HashSet::with_capacity(routes.len());
                    for route in routes {
                        check_route(&self.local, route)?;
                        self.check_mac(route)?;
                        if !unique.insert(route.prefix) {
                            return Err(ControlError::Duplicate(route.prefix));
                        }
                    }
                    for (prefix, dest) in self.routes.take_all() {
                        before.entry(prefix).or_insert(Some(dest));
                    }
                    for route in routes {
                        self.routes.insert(route.prefix, (route.peer, route.mac));
                        before.entry(route.prefix).or_insert(None);
                        given.insert((route.peer, route.mac));
                    }
                    seen.clear();
                }
            }
        }
        for &dest in &given {
            if let Some(e) = self.routes.conflict(dest, self.format) {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// A route's MAC against the format, as a table checks it: unicast; required by `vxlan`;
    /// and (tundra's rule, not the table's) not given in `udp`, where it would do nothing.
    fn check_mac(&self, route: &Route) -> Result<(), ControlError> {
        let addr = canonical_addr(route.peer);
        match (self.format, route.mac) {
            (_, Some(mac)) if !mac.is_unicast() => Err(TableError::BadMac(addr, mac).into()),
            (WireFormat::Vxlan, None) => Err(TableError::NoMac(addr).into()),
            (WireFormat::Udp, Some(_)) => Err(ControlError::MacNotVxlan(addr)),
            _ => Ok(()),
        }
    }

    fn undo(&mut self, before: HashMap<IpNet, Option<Dest>>) {
        for (prefix, old) in before {
            match old {
                Some(dest) => self.routes.insert(prefix, dest),
                None => self.routes.remove(&prefix),
            };
        }
    }
}

/// Adds then removes kernel routes; on a refusal, undoes what it did and returns the error.
fn kernel_apply(
    netconfig: &mut NetConfig,
    added: &[IpNet],
    removed: &[IpNet],
) -> Result<(), ControlError> {
    for (i, &prefix) in added.iter().enumerate() {
        if let Err(e) = netconfig.add_route(prefix) {
            for &done in &added[..i] {
                let _ = netconfig.del_route(done);
            }
            return Err(e.into());
        }
    }
    for (i, &prefix) in removed.iter().enumerate() {
        if let Err(e) = netconfig.del_route(prefix) {
            for &done in &removed[..i] {
                let _ = netconfig.add_route(done);
            }
            for &done in added {
                let _ = netconfig.del_route(done);
            }
            return Err(e.into());
        }
    }
    Ok(())
}
