//! Following every other node's lease: list the prefix, then watch it from the next revision;
//! turn the leases into one complete, valid route set, and hand it on whenever it changes.
//!
//! [`Book`] is the pure part: the leases known, and the routes they make. [`run`] is the
//! watcher thread: it keeps the book in step with etcd and survives what etcd does to a watch.
//! A watch that breaks (etcd restarted, a member lost its leader, the connection died) or whose
//! start revision was compacted away is replaced by listing again: the new list replaces the
//! book at once, so routes still in etcd never go missing in between, and deletes that
//! happened meanwhile are seen.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use datapath::{Mac, Route};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::etcd::{Client, Event, Kv, WatchEnd};
use super::format::{parse_subnet_key, Backend, LeaseAttrs};
use super::{RouteSet, Status, Update};

/// Backoff between attempts to reach etcd again after a watch broke.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A lease under `<prefix>/subnets/`, as far as it could be read.
#[derive(Clone, Debug)]
enum Entry {
    Node {
        v4: Ipv4Net,
        v6: Option<Ipv6Net>,
        attrs: LeaseAttrs,
    },
    /// Refused when read (bad key or value), with the reason; `mod_revision` keeps a relist
    /// from logging the same refusal again.
    Bad { mod_revision: i64, reason: String },
}

/// What a lease contributes to the route set.
enum Contribution {
    Routes(Vec<Route>),
    /// Another backend's lease.
    Ignored(String),
    Refused(String),
}

/// The leases of the other nodes and the route set they make.
pub(crate) struct Book {
    backend: Backend,
    ipv6: bool,
    /// `<prefix>/subnets/`
    subnets: String,
    own_key: String,
    own_ip: IpAddr,
    local: Vec<IpNet>,
    leases: BTreeMap<String, Entry>,
    /// Set when our own key was written or deleted by someone.
    own_touched: bool,
    routes: Vec<Route>,
    /// Refused and ignored leases as of the last [`Book::routes`], with the reason or type.
    refused: BTreeMap<String, String>,
    ignored: BTreeMap<String, String>,
    refused_total: u64,
}

impl Book {
    pub fn new(
        backend: Backend,
        ipv6: bool,
        subnets: String,
        own_key: String,
        own_ip: IpAddr,
        local: Vec<IpNet>,
    ) -> Book {
        Book {
            backend,
            ipv6,
            subnets,
            own_key,
            own_ip,
            local,
            leases: BTreeMap::new(),
            own_touched: false,
            routes: Vec::new(),
            refused: BTreeMap::new(),
            ignored: BTreeMap::new(),
            refused_total: 0,
        }
    }

    /// Reads a key written (from a list or a watch event).
    pub fn put(&mut self, kv: Kv) {
        if kv.key == self.own_key {
            self.own_touched = true;
            return;
        }
        let Some(name) = kv.key.strip_prefix(&self.subnets) else {
            return;
        };
        let entry = match parse_subnet_key(name) {
            Err(e) => Err(e.to_string()),
            Ok((v4, v6)) => match LeaseAttrs::parse(&kv.value) {
                Ok(attrs) => Ok(Entry::Node { v4, v6, attrs }),
                Err(e) => Err(format!("bad lease value: {e}")),
            },
        };
        let entry = entry.unwrap_or_else(|reason| {
            let again = matches!(self.leases.get(&kv.key),
                Some(Entry::Bad { mod_revision, .. }) if *mod_revision == kv.mod_revision);
            if !again {
                tracing::warn!(key = %kv.key, %reason, "etcd lease refused");
                self.refused_total += 1;
            }
            Entry::Bad {
                mod_revision: kv.mod_revision,
                reason,
            }
        });
        self.leases.insert(kv.key, entry);
    }

    /// Forgets a key deleted (or expired).
    pub fn delete(&mut self, key: &str) {
        if key == self.own_key {
            self.own_touched = true;
        }
        self.leases.remove(key);
    }

    /// Replaces everything known by a complete list.
    pub fn reset(&mut self, kvs: Vec<Kv>) {
        let old = std::mem::take(&mut self.leases);
        // Our own key may have gone while we were not watching: the renewer checks.
        self.own_touched = true;
        // Keep the refusals of unchanged keys, so that they are not logged again.
        for kv in kvs {
            if let Some(bad @ Entry::Bad { mod_revision, .. }) = old.get(&kv.key) {
                if *mod_revision == kv.mod_revision {
                    self.leases.insert(kv.key, bad.clone());
                    continue;
                }
            }
            self.put(kv);
        }
    }

    /// Was our own key written or deleted since the last call?
    pub fn take_own_touched(&mut self) -> bool {
        std::mem::take(&mut self.own_touched)
    }

    /// The route set the leases make now, if it differs from the last one returned.
    ///
    /// Every lease is taken in key order; a lease is refused (logged once, counted, shown in
    /// [`Status::refused`]) when the route table could not take it: its subnet overlaps ours
    /// or is routed already, its peer is this node, or (vxlan) its VTEP MAC is missing, not
    /// unicast, or differs from the one an earlier lease gave the same peer. So the set always
    /// builds into a table.
    pub fn routes(&mut self) -> Option<Vec<Route>> {
        let mut routes: Vec<Route> = Vec::new();
        let mut by_prefix: HashMap<IpNet, &str> = HashMap::new();
        let mut macs: HashMap<SocketAddr, (Option<Mac>, &str)> = HashMap::new();
        let mut refused = BTreeMap::new();
        let mut ignored = BTreeMap::new();
        for (key, entry) in &self.leases {
            let contribution = match entry {
                Entry::Bad { reason, .. } => {
                    refused.insert(key.clone(), reason.clone());
                    continue;
                }
                Entry::Node { v4, v6, attrs } => self.contribution(*v4, *v6, attrs),
            };
            let mine = match contribution {
                Contribution::Routes(r) => r,
                Contribution::Ignored(kind) => {
                    ignored.insert(key.clone(), kind);
                    continue;
                }
                Contribution::Refused(reason) => {
                    refused.insert(key.clone(), reason);
                    continue;
                }
            };
            let conflict = mine.iter().find_map(|r| {
                if let Some(l) = self.local.iter().find(|l| overlaps(l, &r.prefix)) {
                    return Some(format!("subnet {} overlaps our subnet {l}", r.prefix));
                }
                if let Some(other) = by_prefix.get(&r.prefix) {
                    return Some(format!("subnet {} is leased by {other} already", r.prefix));
                }
                if r.peer.ip() == self.own_ip {
                    return Some(format!("its peer {} is this node", r.peer));
                }
                match macs.get(&r.peer) {
                    Some((mac, other)) if *mac != r.mac => Some(format!(
                        "peer {} has VTEP MAC {} here but {} in {other}",
                        r.peer,
                        show(r.mac),
                        show(*mac)
                    )),
                    _ => None,
                }
            });
            if let Some(reason) = conflict {
                refused.insert(key.clone(), reason);
                continue;
            }
            for r in &mine {
                by_prefix.insert(r.prefix, key);
                macs.insert(r.peer, (r.mac, key));
            }
            routes.extend(mine);
        }
        for (key, reason) in &refused {
            let known = self.refused.get(key) == Some(reason);
            let logged_at_read = matches!(self.leases.get(key), Some(Entry::Bad { .. }));
            if !known && !logged_at_read {
                tracing::warn!(%key, %reason, "etcd lease refused");
                self.refused_total += 1;
            }
        }
        for (key, kind) in &ignored {
            if self.ignored.get(key) != Some(kind) {
                tracing::info!(%key, backend = %kind, ours = self.backend.name(),
                    "etcd lease of another backend type: ignored");
            }
        }
        self.refused = refused;
        self.ignored = ignored;
        routes.sort_by_key(|r| r.prefix);
        if routes == self.routes {
            return None;
        }
        self.routes = routes.clone();
        Some(routes)
    }

    fn contribution(&self, v4: Ipv4Net, v6: Option<Ipv6Net>, attrs: &LeaseAttrs) -> Contribution {
        let v6 = v6.filter(|_| self.ipv6);
        match self.backend {
            Backend::Udp { port } => {
                if !attrs.is_udp() {
                    return Contribution::Ignored(attrs.backend_type.clone());
                }
                // One peer per node: the udp format carries both families over IPv4.
                let peer = SocketAddr::new(attrs.public_ip.into(), port);
                let mut routes = vec![Route::new(v4.into(), peer)];
                routes.extend(v6.map(|v6| Route::new(v6.into(), peer)));
                Contribution::Routes(routes)
            }
            Backend::Vxlan { vni, port } => {
                if attrs.backend_type != "vxlan" {
                    return Contribution::Ignored(if attrs.backend_type.is_empty() {
                        "udp".into()
                    } else {
                        attrs.backend_type.clone()
                    });
                }
                let data = match attrs.vxlan() {
                    Ok(d) => d,
                    Err(e) => return Contribution::Refused(e.to_string()),
                };
                let mut routes = vec![Route {
                    prefix: v4.into(),
                    peer: SocketAddr::new(attrs.public_ip.into(), port),
                    mac: Some(data.vtep_mac),
                }];
                // As flannel's IPv6 VXLAN device: the IPv6 subnet behind the node's IPv6
                // address and its IPv6 VTEP.
                if let Some(v6) = v6 {
                    let (Some(ip6), Ok(d6)) = (attrs.public_ipv6, attrs.vxlan_v6()) else {
                        return Contribution::Refused(
                            "a dual-stack vxlan lease needs PublicIPv6 and BackendV6Data".into(),
                        );
                    };
                    if ip6.is_unspecified() || ip6.is_multicast() {
                        return Contribution::Refused(format!(
                            "PublicIPv6 {ip6} is not a node address"
                        ));
                    }
                    routes.push(Route {
                        prefix: v6.into(),
                        peer: SocketAddr::new(ip6.into(), port),
                        mac: Some(d6.vtep_mac),
                    });
                    if d6.vni != vni {
                        return Contribution::Refused(format!(
                            "BackendV6Data VNI {} is not the network's {vni}",
                            d6.vni
                        ));
                    }
                }
                if data.vni != vni {
                    return Contribution::Refused(format!(
                        "BackendData VNI {} is not the network's {vni}",
                        data.vni
                    ));
                }
                if let Some(r) = routes
                    .iter()
                    .find(|r| !r.mac.is_some_and(|m| m.is_unicast()))
                {
                    return Contribution::Refused(format!(
                        "VTEP MAC {} is not a unicast MAC",
                        show(r.mac)
                    ));
                }
                Contribution::Routes(routes)
            }
        }
    }

    /// Other nodes' leases known (refused and ignored ones included).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn refused(&self) -> &BTreeMap<String, String> {
        &self.refused
    }

    pub fn ignored(&self) -> &BTreeMap<String, String> {
        &self.ignored
    }

    pub fn refused_total(&self) -> u64 {
        self.refused_total
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

fn show(mac: Option<Mac>) -> String {
    mac.map_or_else(|| "none".into(), |m| m.to_string())
}

/// The watcher thread's state.
pub(crate) struct Watcher {
    pub client: Arc<Client>,
    pub book: Book,
    /// The revision to watch from.
    pub next_rev: i64,
    /// The route set's version, counted from 1 (the initial list).
    pub version: u64,
    pub lifetime: Duration,
    pub updates: Sender<Update>,
    /// Disconnected when the source stops.
    pub stop: Receiver<()>,
    /// Tells the renewer that our own key changed.
    pub own_touched: Sender<()>,
    pub status: Arc<Mutex<Status>>,
}

impl Watcher {
    /// Hands on the route set if it changed, and refreshes the status (first, so that a
    /// receiver of the set finds the status as new as the set).
    pub fn publish(&mut self, revision: i64) {
        let changed = self.book.routes();
        if changed.is_some() {
            self.version += 1;
        }
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.revision = revision;
            s.version = self.version;
            s.leases = self.book.len();
            s.routes = self.book.routes.len();
            s.refused = self.book.refused().clone();
            s.ignored = self.book.ignored().clone();
            s.refused_total = self.book.refused_total();
        }
        if let Some(routes) = changed {
            tracing::debug!(
                version = self.version,
                revision,
                routes = routes.len(),
                "route set"
            );
            // The receiver gone means nobody listens any more: nothing to do about it.
            let _ = self.updates.send(Update::Routes(RouteSet {
                version: self.version,
                revision,
                routes,
            }));
        }
        if self.book.take_own_touched() {
            let _ = self.own_touched.try_send(());
        }
    }

    /// Sleeps `d` unless the source stops first; whether it stops.
    fn sleep(&self, d: Duration) -> bool {
        matches!(
            self.stop.recv_timeout(d),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    }

    fn stopping(&self) -> bool {
        matches!(
            self.stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }
}

/// The watcher thread: watch, apply, publish; list again when the watch cannot go on.
pub(crate) fn run(mut w: Watcher) {
    let prefix = w.book.subnets.clone();
    let mut backoff = BACKOFF_MIN;
    let mut relist = false;
    let mut revision = w.next_rev - 1;
    loop {
        if w.stopping() {
            return;
        }
        if relist {
            match w.client.list(&prefix) {
                Ok((kvs, rev)) => {
                    tracing::info!(
                        leases = kvs.len(),
                        revision = rev,
                        "etcd leases listed again"
                    );
                    w.book.reset(kvs);
                    revision = rev;
                    w.next_rev = rev + 1;
                    w.publish(revision);
                    w.status.lock().unwrap_or_else(|e| e.into_inner()).relists += 1;
                    relist = false;
                }
                Err(e) => {
                    if w.stopping() {
                        return;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot list the etcd leases");
                    if w.sleep(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        let mut watch = match w.client.watch(&prefix, w.next_rev, w.lifetime) {
            Ok(watch) => watch,
            Err(e) => {
                if w.stopping() {
                    return;
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot watch the etcd leases");
                relist = true;
                if w.sleep(backoff) {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        loop {
            match watch.recv() {
                Ok(msg) => {
                    if msg.canceled {
                        if msg.compact_revision > 0 {
                            tracing::warn!(
                                from = w.next_rev,
                                compacted = msg.compact_revision,
                                "etcd compacted the revisions the watch needed: listing again"
                            );
                        } else {
                            tracing::warn!(reason = %msg.cancel_reason,
                                "etcd canceled the watch: listing again");
                        }
                        relist = true;
                        break;
                    }
                    if msg.created {
                        backoff = BACKOFF_MIN;
                    }
                    for event in msg.events {
                        match event {
                            Event::Put(kv) => {
                                w.next_rev = w.next_rev.max(kv.mod_revision + 1);
                                w.book.put(kv);
                            }
                            Event::Delete { key, mod_revision } => {
                                w.next_rev = w.next_rev.max(mod_revision + 1);
                                w.book.delete(&key);
                            }
                        }
                    }
                    revision = revision.max(msg.revision).max(w.next_rev - 1);
                    // Changes that arrived together make one route set.
                    if !watch.has_buffered() {
                        w.publish(revision);
                    }
                }
                Err(WatchEnd::Expired) => {
                    w.publish(revision);
                    break;
                }
                Err(WatchEnd::Broken(why)) => {
                    w.publish(revision);
                    if w.stopping() {
                        return;
                    }
                    tracing::warn!(reason = %why, retry_in = ?backoff,
                        "etcd watch broke: listing again");
                    relist = true;
                    if w.sleep(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use datapath::{Table, WireFormat};

    use super::*;

    const P: &str = "/coreos.com/network/subnets/";

    fn kv(name: &str, value: &str, rev: i64) -> Kv {
        Kv {
            key: format!("{P}{name}"),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
            lease: 1,
        }
    }

    fn book(backend: Backend) -> Book {
        Book::new(
            backend,
            true,
            P.into(),
            format!("{P}10.0.1.0-24&fd00:0:0:1::-64"),
            "192.0.2.1".parse().unwrap(),
            vec![
                "10.0.1.0/24".parse().unwrap(),
                "fd00:0:0:1::/64".parse().unwrap(),
            ],
        )
    }

    fn vx(ip: &str, mac: &str) -> String {
        format!(
            r#"{{"PublicIP":"{ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac}"}}}}"#
        )
    }

    fn builds(backend: Backend, book: &Book, routes: &[Route]) {
        let format = match backend {
            Backend::Udp { .. } => WireFormat::Udp,
            Backend::Vxlan { .. } => WireFormat::Vxlan,
        };
        Table::build(format, &book.local, routes, None).expect("the route set builds a table");
    }

    #[test]
    fn udp_routes_one_peer_per_node() {
        let be = Backend::Udp { port: 8285 };
        let mut b = book(be);
        b.put(kv(
            "10.0.2.0-24&fd00:0:0:2::-64",
            r#"{"PublicIP":"192.0.2.2","PublicIPv6":null}"#,
            5,
        ));
        b.put(kv(
            "10.0.3.0-24",
            r#"{"PublicIP":"192.0.2.3","BackendType":"udp"}"#,
            6,
        ));
        b.put(kv("10.0.4.0-24", &vx("192.0.2.4", "02:00:00:00:00:04"), 7));
        let routes = b.routes().unwrap();
        let peer2: SocketAddr = "192.0.2.2:8285".parse().unwrap();
        let peer3: SocketAddr = "192.0.2.3:8285".parse().unwrap();
        assert_eq!(
            routes,
            vec![
                Route::new("10.0.2.0/24".parse().unwrap(), peer2),
                Route::new("10.0.3.0/24".parse().unwrap(), peer3),
                Route::new("fd00:0:0:2::/64".parse().unwrap(), peer2),
            ]
        );
        assert_eq!(b.ignored().len(), 1, "the vxlan lease is ignored");
        builds(be, &b, &routes);
        // Nothing changed: no new set.
        assert_eq!(b.routes(), None);
        b.delete(&format!("{P}10.0.3.0-24"));
        assert_eq!(b.routes().unwrap().len(), 2);
    }

    #[test]
    fn vxlan_routes_carry_macs_and_refusals_are_counted() {
        let be = Backend::Vxlan { vni: 1, port: 8472 };
        let mut b = book(be);
        b.ipv6 = false;
        b.put(kv("10.0.2.0-24", &vx("192.0.2.2", "02:00:00:00:00:02"), 5));
        b.put(kv("10.0.3.0-24", r#"{"PublicIP":"192.0.2.3"}"#, 6)); // udp: ignored
        b.put(kv("10.0.4.0-24", "{not json", 7));
        b.put(kv("10.0.5.0-24", &vx("192.0.2.2", "02:00:00:00:00:05"), 8)); // two MACs
        b.put(kv("10.0.1.0-25", &vx("192.0.2.6", "02:00:00:00:00:06"), 9)); // overlaps ours
        b.put(kv("10.0.7.0-24", &vx("192.0.2.1", "02:00:00:00:00:07"), 10)); // our IP
        b.put(kv("10.0.8.0-24", &vx("192.0.2.8", "03:00:00:00:00:08"), 11)); // multicast MAC
        b.put(kv(
            "10.0.9.0-24",
            &vx("192.0.2.9", "02:00:00:00:00:09").replace("\"VNI\":1", "\"VNI\":2"),
            12,
        ));
        b.put(kv("bogus", "{}", 13));
        let routes = b.routes().unwrap();
        assert_eq!(
            routes,
            vec![Route {
                prefix: "10.0.2.0/24".parse().unwrap(),
                peer: "192.0.2.2:8472".parse().unwrap(),
                mac: Some("02:00:00:00:00:02".parse().unwrap()),
            }]
        );
        builds(be, &b, &routes);
        let refused: Vec<_> = b
            .refused()
            .keys()
            .map(|k| k.strip_prefix(P).unwrap())
            .collect();
        assert_eq!(
            refused,
            [
                "10.0.1.0-25",
                "10.0.4.0-24",
                "10.0.5.0-24",
                "10.0.7.0-24",
                "10.0.8.0-24",
                "10.0.9.0-24",
                "bogus"
            ]
        );
        let reasons = format!("{:?}", b.refused());
        for want in [
            "overlaps our subnet",
            "not JSON",
            "has VTEP MAC",
            "is this node",
            "not a unicast",
            "VNI 2",
            "not a subnet key",
        ] {
            assert!(reasons.contains(want), "{want} missing in {reasons}");
        }
        assert_eq!(b.refused_total(), 7);
        // A relist of the same leases logs and counts nothing again.
        let same: Vec<Kv> = vec![
            kv("10.0.4.0-24", "{not json", 7),
            kv("10.0.2.0-24", &vx("192.0.2.2", "02:00:00:00:00:02"), 5),
        ];
        b.reset(same);
        b.routes();
        assert_eq!(b.refused_total(), 7);
        // The conflicting lease goes: the one it conflicted with stays; a later one is taken.
        b.put(kv("10.0.5.0-24", &vx("192.0.2.5", "02:00:00:00:00:05"), 14));
        assert_eq!(b.routes().unwrap().len(), 2);
    }

    #[test]
    fn dual_stack_vxlan_follows_flannel() {
        let be = Backend::Vxlan { vni: 1, port: 8472 };
        let mut b = book(be);
        let dual = r#"{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:02"},"BackendV6Data":{"VNI":1,"VtepMAC":"02:00:00:00:06:02"}}"#;
        b.put(kv("10.0.2.0-24&fd00:0:0:2::-64", dual, 5));
        b.put(kv(
            "10.0.3.0-24&fd00:0:0:3::-64",
            &vx("192.0.2.3", "02:00:00:00:00:03"),
            6,
        ));
        let routes = b.routes().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1].peer, "[2001:db8::2]:8472".parse().unwrap());
        assert_eq!(routes[1].mac, Some("02:00:00:00:06:02".parse().unwrap()));
        assert!(b
            .refused()
            .contains_key(&format!("{P}10.0.3.0-24&fd00:0:0:3::-64")));
        builds(be, &b, &routes);
    }

    #[test]
    fn own_key_is_not_a_route_but_is_noticed() {
        let mut b = book(Backend::Udp { port: 8285 });
        b.put(kv(
            "10.0.1.0-24&fd00:0:0:1::-64",
            r#"{"PublicIP":"192.0.2.1"}"#,
            5,
        ));
        assert_eq!(b.routes(), None);
        assert!(b.take_own_touched());
        assert!(!b.take_own_touched());
        b.delete(&format!("{P}10.0.1.0-24&fd00:0:0:1::-64"));
        assert!(b.take_own_touched());
    }
}
