//! The etcd lease source (`tundra::lease`) against a real etcd (Debian's `etcd-server`), each
//! test with its own etcd in a namespace of its own (`common::etcd`). Needs root.
//!
//! - **Acquire**: a fresh subnet, written byte for byte as flanneld writes it (udp; dual-stack
//!   vxlan), bound to a 24 h etcd lease; the same subnet again by `PublicIP` after a stop (the
//!   lease is kept), and from the subnet file once the lease is gone; concurrent acquirers get
//!   distinct subnets (conflicts retried) until the range is used up.
//! - **Watch**: leases written by hand in flanneld's format become routes within 2 s (udp; vxlan
//!   with its VTEP MAC); deleted and expired ones go within 2 s; other backends are ignored, bad
//!   values refused with a clear reason while the watch goes on; our own lease is never a
//!   route; every route set builds a table.
//! - **etcd restarted**: no route lost, later changes seen. A compacted watch is reported.
//! - **Renewal**: a short TTL is kept alive; a deleted key is written again; a key taken by
//!   another node is reported as lost.
//! - **Unreachable etcd**: a clear error after the start deadline, not before.
//! - **TLS**: https with a CA of its own and client certificates required; refused without.
//! - **Scale**: 1,000 leases load as the first route set; 100 written together make one set.
//! - **subnet.env** as flanneld writes it.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::etcd::{Etcd, ENDPOINT};
use common::{underlay_v4, underlay_v6};
use tundra::datapath::{Route, Table};
use tundra::lease::{
    self, Config, Error, Lease, LeaseSource, NetworkConfig, Origin, RouteSet, Update,
};

const PREFIX: &str = "/coreos.com/network";
const UDP_NET: &str =
    r#"{"Network": "198.19.0.0/16", "SubnetLen": 24, "Backend": {"Type": "udp"}}"#;
const VXLAN_NET: &str = r#"{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1}}"#;
/// The bound the issue sets on a lease change reaching the routes.
const WITHIN: Duration = Duration::from_secs(2);

/// Node i's VTEP MAC (the cluster tests' plan: 0a:58:c6:13:<i>:00).
fn vtep_mac(i: u8) -> String {
    format!("0a:58:c6:13:{i:02x}:00")
}

fn key(subnet: &str) -> String {
    format!("{PREFIX}/subnets/{subnet}")
}

/// A lease as flanneld's udp backend writes it.
fn flannel_udp(i: u8) -> String {
    format!(r#"{{"PublicIP":"{}","PublicIPv6":null}}"#, underlay_v4(i))
}

/// A lease as flanneld's vxlan backend writes it (IPv4 only).
fn flannel_vxlan(i: u8) -> String {
    format!(
        r#"{{"PublicIP":"{}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
        underlay_v4(i),
        vtep_mac(i)
    )
}

/// A temporary file path under the test's target directory.
fn temp_path(etcd: &Etcd, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(&etcd.ns)
        .join(name)
}

/// Node i's settings: a subnet file that pins it to 198.19.i.0/24 (when `pin`).
fn config(etcd: &Etcd, i: u8, pin: bool) -> Config {
    let mut cfg = Config::new(vec![ENDPOINT.into()], underlay_v4(i));
    cfg.start_deadline = Duration::from_secs(20);
    cfg.request_timeout = Duration::from_secs(3);
    cfg.subnet_file = None;
    if pin {
        let path = temp_path(etcd, &format!("subnet-{i}.env"));
        lease::subnet_file::write(
            &path,
            &format!("FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.{i}.1/24\n"),
        )
        .expect("write subnet file");
        cfg.subnet_file = Some(path);
    }
    cfg
}

fn start(etcd: &Etcd, cfg: &Config) -> (NetworkConfig, Lease, LeaseSource) {
    etcd.run(|| LeaseSource::start(cfg))
        .unwrap_or_else(|e| panic!("lease source did not start: {e}"))
}

/// Receives route sets until one satisfies `want`; every set must build a table. Panics with
/// the last set after `timeout`. Returns the set and how long it took.
fn wait_routes(
    source: &LeaseSource,
    lease: &Lease,
    what: &str,
    timeout: Duration,
    want: impl Fn(&[Route]) -> bool,
) -> (RouteSet, Duration) {
    let t0 = Instant::now();
    let mut last = None;
    loop {
        let left = timeout.saturating_sub(t0.elapsed());
        match source.updates().recv_timeout(left) {
            Ok(Update::Routes(set)) => {
                let format = lease.encap().format();
                Table::build(format, &lease.local_subnets(), &set.routes, None)
                    .unwrap_or_else(|e| panic!("route set {set:?} does not build: {e}"));
                assert!(
                    !set.routes
                        .iter()
                        .any(|r| lease.local_subnets().contains(&r.prefix)),
                    "our own subnet routed: {set:?}"
                );
                if want(&set.routes) {
                    return (set, t0.elapsed());
                }
                last = Some(set);
            }
            Ok(other) => panic!("unexpected update while waiting for {what}: {other:?}"),
            Err(_) => panic!(
                "no route set with {what} within {timeout:?}; last: {last:?}; status: {:?}",
                source.status()
            ),
        }
    }
}

fn has(routes: &[Route], prefix: &str) -> bool {
    routes.iter().any(|r| r.prefix.to_string() == prefix)
}

fn peer(i: u8, port: u16) -> SocketAddr {
    SocketAddr::new(underlay_v4(i).into(), port)
}

#[test]
fn acquire_fresh_lease_in_flanneld_format() {
    let etcd = Etcd::start();
    etcd.put(&format!("{PREFIX}/config"), UDP_NET, 0);
    let (network, lease, source) = start(&etcd, &config(&etcd, 1, false));
    assert_eq!(network.backend, lease::Backend::Udp { port: 8285 });
    assert_eq!(lease.origin, Origin::Allocated);
    assert_eq!(lease.subnet.prefix_len(), 24);
    assert!(
        lease.subnet.network() >= Ipv4Addr::new(198, 19, 1, 0),
        "{lease:?}"
    );
    assert_eq!(
        lease.key,
        key(&format!("{}-24", lease.subnet.network())),
        "flannel's key"
    );
    let (value, id) = etcd.get(&lease.key).expect("our lease is in etcd");
    assert_eq!(value, flannel_udp(1), "flanneld's bytes");
    assert_ne!(id, 0, "bound to an etcd lease");
    assert_eq!(etcd.ttl(id).0, 24 * 3600, "flanneld's TTL");
    // The first route set is there at once: empty, as nobody else holds a lease.
    match source.updates().try_recv() {
        Ok(Update::Routes(set)) => assert_eq!((set.version, set.routes.len()), (1, 0)),
        other => panic!("no first route set: {other:?}"),
    }
    drop(source);

    // Dual-stack vxlan, in another prefix: key and value as flanneld's vxlan backend writes.
    let prefix = "/other/net";
    etcd.put(
        &format!("{prefix}/config"),
        r#"{"Network": "198.19.0.0/16", "EnableIPv6": true, "IPv6Network": "fd19::/48",
            "Backend": {"Type": "vxlan"}}"#,
        0,
    );
    let mut cfg = config(&etcd, 2, false);
    cfg.prefix = format!("{prefix}/");
    cfg.public_ipv6 = Some(underlay_v6(2));
    cfg.vtep_mac = Some(vtep_mac(2).parse().unwrap());
    let (_, lease, _source) = start(&etcd, &cfg);
    let v6 = lease.ipv6_subnet.expect("an IPv6 subnet");
    assert_eq!(
        lease.key,
        format!(
            "{prefix}/subnets/{}-24&{}-64",
            lease.subnet.network(),
            v6.network()
        )
    );
    let data = format!(r#"{{"VNI":1,"VtepMAC":"{}"}}"#, vtep_mac(2));
    assert_eq!(
        etcd.get(&lease.key).unwrap().0,
        format!(
            r#"{{"PublicIP":"198.18.0.2","PublicIPv6":"fd18::2","BackendType":"vxlan","BackendData":{data},"BackendV6Data":{data}}}"#
        )
    );
    assert_eq!(
        lease.encap(),
        tundra::datapath::Encap::Vxlan {
            vni: 1,
            mac: vtep_mac(2).parse().unwrap()
        }
    );
}

#[test]
fn reacquire_by_public_ip_then_from_subnet_file() {
    let etcd = Etcd::start();
    etcd.put(&format!("{PREFIX}/config"), UDP_NET, 0);
    let mut cfg = config(&etcd, 1, false);
    let (network, first, source) = start(&etcd, &cfg);
    // Written as flanneld writes it; the next start reads it back.
    let env = temp_path(&etcd, "subnet.env");
    lease::write_subnet_file(&env, &network, &first, 1472, false).unwrap();
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        format!(
            "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET={}/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
            Ipv4Addr::from(u32::from(first.subnet.network()) + 1)
        )
    );
    source.stop();
    assert!(etcd.get(&first.key).is_some(), "a stop keeps the lease");

    // Same PublicIP: the same lease.
    let (_, again, source) = start(&etcd, &cfg);
    assert_eq!(
        (again.subnet, again.origin),
        (first.subnet, Origin::SamePublicIp)
    );
    drop(source);

    // The lease gone (expired), the subnet file asks for the same subnet.
    etcd.delete(&first.key);
    cfg.subnet_file = Some(env.clone());
    let (_, from_file, source) = start(&etcd, &cfg);
    assert_eq!(
        (from_file.subnet, from_file.origin),
        (first.subnet, Origin::SubnetFile)
    );
    drop(source);

    // Another node with that subnet file: the subnet is held, so it gets another one.
    let mut other = config(&etcd, 2, false);
    other.subnet_file = Some(env);
    let (_, second, _source) = start(&etcd, &other);
    assert_eq!(second.origin, Origin::Allocated);
    assert_ne!(second.subnet, first.subnet);
}

#[test]
fn concurrent_acquirers_get_distinct_subnets() {
    let etcd = Etcd::start();
    // Four subnets for four nodes: picks collide, the losers retry.
    etcd.put(
        &format!("{PREFIX}/config"),
        r#"{"Network": "198.19.0.0/16", "SubnetMin": "198.19.1.0", "SubnetMax": "198.19.4.0"}"#,
        0,
    );
    let barrier = Barrier::new(4);
    let leases: Vec<Lease> = thread::scope(|s| {
        let handles: Vec<_> = (1..=4u8)
            .map(|i| {
                let (etcd, barrier) = (&etcd, &barrier);
                s.spawn(move || {
                    let cfg = config(etcd, i, false);
                    etcd.run(|| {
                        barrier.wait();
                        let (_, lease, source) =
                            LeaseSource::start(&cfg).unwrap_or_else(|e| panic!("node {i}: {e}"));
                        drop(source);
                        lease
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut subnets: Vec<_> = leases.iter().map(|l| l.subnet.to_string()).collect();
    subnets.sort();
    assert_eq!(
        subnets,
        [
            "198.19.1.0/24",
            "198.19.2.0/24",
            "198.19.3.0/24",
            "198.19.4.0/24"
        ]
    );
    assert_eq!(etcd.keys(&format!("{PREFIX}/subnets/")).len(), 4);
    // A fifth node finds the range used up: a clear error at once.
    let cfg = config(&etcd, 5, false);
    let err = etcd
        .run(|| LeaseSource::start(&cfg))
        .err()
        .expect("no subnet left");
    assert!(matches!(err, Error::OutOfSubnets { .. }), "{err}");
    assert!(err.to_string().contains("198.19.1.0..=198.19.4.0"), "{err}");
}

#[test]
fn watch_follows_leases_within_2s() {
    let etcd = Etcd::start();
    etcd.put(&format!("{PREFIX}/config"), UDP_NET, 0);
    // Node 3 is there before we start: the first set has it.
    let l3 = etcd.grant(600);
    etcd.put(&key("198.19.3.0-24"), &flannel_udp(3), l3);
    let (_, lease, source) = start(&etcd, &config(&etcd, 1, true));
    assert_eq!(lease.subnet.to_string(), "198.19.1.0/24");
    let (set, _) = wait_routes(&source, &lease, "node 3", WITHIN, |r| {
        has(r, "198.19.3.0/24")
    });
    assert_eq!(set.version, 1);
    assert_eq!(
        set.routes,
        vec![Route::new("198.19.3.0/24".parse().unwrap(), peer(3, 8285))]
    );

    // Added.
    let l2 = etcd.grant(600);
    etcd.put(&key("198.19.2.0-24"), &flannel_udp(2), l2);
    let (set, took_add) = wait_routes(&source, &lease, "node 2 added", WITHIN, |r| {
        has(r, "198.19.2.0/24")
    });
    assert!(set
        .routes
        .contains(&Route::new("198.19.2.0/24".parse().unwrap(), peer(2, 8285))));
    // Deleted.
    etcd.delete(&key("198.19.2.0-24"));
    let (_, took_del) = wait_routes(&source, &lease, "node 2 deleted", WITHIN, |r| {
        !has(r, "198.19.2.0/24") && has(r, "198.19.3.0/24")
    });
    // Expired: a 2 s etcd lease not renewed.
    let short = etcd.grant(2);
    etcd.put(&key("198.19.4.0-24"), &flannel_udp(4), short);
    let put_at = Instant::now();
    wait_routes(&source, &lease, "node 4 added", WITHIN, |r| {
        has(r, "198.19.4.0/24")
    });
    wait_routes(
        &source,
        &lease,
        "node 4 expired",
        Duration::from_secs(2) + WITHIN,
        |r| !has(r, "198.19.4.0/24"),
    );
    let expired_after = put_at.elapsed();
    eprintln!("add seen after {took_add:?}, delete after {took_del:?}, 2 s lease gone after {expired_after:?}");
    let status = source.status();
    assert_eq!((status.routes, status.refused_total), (1, 0), "{status:?}");
}

#[test]
fn vxlan_flanneld_leases_used_and_bad_ones_refused() {
    let etcd = Etcd::start();
    etcd.put(&format!("{PREFIX}/config"), VXLAN_NET, 0);
    let mut cfg = config(&etcd, 1, true);
    cfg.vtep_mac = Some(vtep_mac(1).parse().unwrap());
    let (_, lease, source) = start(&etcd, &cfg);
    // Our own lease is flanneld's vxlan format.
    assert_eq!(etcd.get(&lease.key).unwrap().0, flannel_vxlan(1));

    etcd.put(&key("198.19.2.0-24"), &flannel_vxlan(2), 0);
    let (set, _) = wait_routes(&source, &lease, "vxlan node 2", WITHIN, |r| {
        has(r, "198.19.2.0/24")
    });
    assert_eq!(
        set.routes,
        vec![Route {
            prefix: "198.19.2.0/24".parse().unwrap(),
            peer: peer(2, 8472),
            mac: Some(vtep_mac(2).parse().unwrap()),
        }]
    );
    // A udp node: ignored. Bad values: refused, the watch goes on.
    etcd.put(&key("198.19.3.0-24"), &flannel_udp(3), 0);
    etcd.put(&key("198.19.4.0-24"), r#"{"PublicIP": "198.18.0.4", "#, 0);
    etcd.put(
        &key("198.19.5.0-24"),
        &flannel_vxlan(5).replace(&vtep_mac(5), "not-a-mac"),
        0,
    );
    etcd.put(&key("198.19.6.0-24"), &flannel_vxlan(6), 0);
    let (set, _) = wait_routes(&source, &lease, "vxlan node 6", WITHIN, |r| {
        has(r, "198.19.6.0/24")
    });
    assert_eq!(set.routes.len(), 2, "{set:?}");
    let status = source.status();
    assert_eq!(
        status
            .ignored
            .get(&key("198.19.3.0-24"))
            .map(String::as_str),
        Some("udp"),
        "{status:?}"
    );
    let reason = |k: &str| status.refused.get(&key(k)).cloned().unwrap_or_default();
    assert!(
        reason("198.19.4.0-24").contains("bad lease value: not JSON"),
        "{status:?}"
    );
    assert!(
        reason("198.19.5.0-24").contains("\"not-a-mac\" is not a MAC address"),
        "{status:?}"
    );
    assert_eq!(status.refused_total, 2);
    // Fixed: used.
    etcd.put(&key("198.19.4.0-24"), &flannel_vxlan(4), 0);
    wait_routes(&source, &lease, "node 4 fixed", WITHIN, |r| {
        has(r, "198.19.4.0/24")
    });
    assert!(!source.status().refused.contains_key(&key("198.19.4.0-24")));
}

#[test]
fn etcd_restart_keeps_routes_and_later_changes_are_seen() {
    let mut etcd = Etcd::start();
    etcd.put(&format!("{PREFIX}/config"), UDP_NET, 0);
    etcd.put(&key("198.19.2.0-24"), &flannel_udp(2), 0);
    let (_, lease, source) = start(&etcd, &config(&etcd, 1, true));
    wait_routes(&source, &lease, "node 2", WITHIN, |r| {
        has(r, "198.19.2.0/24")
    });

    etcd.restart(Duration::from_millis(500));
    // Nothing was lost: every set handed on meanwhile still has node 2.
    while let Ok(update) = source.updates().try_recv() {
        match update {
            Update::Routes(set) => assert!(has(&set.routes, "198.19.2.0/24"), "{set:?}"),
            other => panic!("{other:?}"),
        }
    }
    etcd.put(&key("198.19.3.0-24"), &flannel_udp(3), 0);
    let (_, took) = wait_routes(
        &source,
        &lease,
        "node 3 after the restart",
        Duration::from_secs(15),
        |r| has(r, "198.19.3.0/24") && has(r, "198.19.2.0/24"),
    );
    eprintln!("change after the restart seen after {took:?}");
    etcd.delete(&key("198.19.2.0-24"));
    wait_routes(&source, &lease, "node 2 deleted", WITHIN, |r| {
        !has(r, "198.19.2.0/24")
    });
    assert!(source.status().relists >= 1, "{:?}", source.status());
    assert!(etcd.get(&lease.key).is_some(), "our lease survived");
}

#[test]
fn compacted_watch_is_reported() {
    let etcd = Etcd::start();
    let mut rev = 0;
    for i in 0..5 {
        rev = etcd.put(&key(&format!("198.19.{i}.0-24")), &flannel_udp(i), 0);
    }
    etcd.compact(rev);
    let msgs = etcd.run(|| {
        let client = lease::etcd::Client::new(
            &[ENDPOINT.into()],
            &lease::Tls::default(),
            Duration::from_secs(3),
        )
        .unwrap();
        let mut watch = client
            .watch(&format!("{PREFIX}/subnets/"), 2, Duration::from_secs(10))
            .unwrap();
        (0..2).map(|_| watch.recv().unwrap()).collect::<Vec<_>>()
    });
    let canceled = msgs
        .iter()
        .find(|m| m.canceled)
        .expect("the watch is canceled");
    assert_eq!(canceled.compact_revision, rev, "{msgs:?}");
}

#[test]
fn short_lease_is_renewed_retaken_and_reported_lost() {
    let etcd = Etcd::start();
    etcd.put(&format!("{PREFIX}/config"), UDP_NET, 0);
    let mut cfg = config(&etcd, 1, true);
    cfg.lease_ttl = Duration::from_secs(2);
    let (_, lease, source) = start(&etcd, &cfg);
    let (_, id) = etcd.get(&lease.key).unwrap();
    assert_eq!(etcd.ttl(id).0, 2);
    // Three TTLs later it is still there, on the same etcd lease.
    thread::sleep(Duration::from_secs(6));
    assert_eq!(etcd.get(&lease.key).map(|(_, l)| l), Some(id), "renewed");

    // Deleted by hand: written again.
    etcd.delete(&lease.key);
    let t0 = Instant::now();
    let back = loop {
        if let Some(v) = etcd.get(&lease.key) {
            break v;
        }
        assert!(t0.elapsed() < WITHIN, "our lease was not written again");
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(back.0, flannel_udp(1));

    // Another node's value in our key: lost, and said so.
    etcd.put(&lease.key, &flannel_udp(7), 0);
    let t0 = Instant::now();
    loop {
        match source
            .updates()
            .recv_timeout(WITHIN.saturating_sub(t0.elapsed()))
        {
            Ok(Update::LeaseLost { key, reason }) => {
                assert_eq!(key, lease.key);
                assert!(reason.contains("198.18.0.7"), "{reason}");
                break;
            }
            Ok(Update::Routes(set)) => assert!(set.routes.is_empty(), "{set:?}"),
            Err(e) => panic!("no LeaseLost within {WITHIN:?}: {e}"),
        }
    }
}

#[test]
fn unreachable_etcd_is_an_error_after_the_deadline() {
    let etcd = Etcd::without_server();
    let mut cfg = config(&etcd, 1, false);
    // The second endpoint has no route at all in the namespace.
    cfg.endpoints.push("http://198.18.0.250:2379".into());
    cfg.start_deadline = Duration::from_secs(2);
    let t0 = Instant::now();
    let err = etcd
        .run(|| LeaseSource::start(&cfg))
        .err()
        .expect("no etcd");
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(
        took < Duration::from_secs(2) + cfg.request_timeout * 2,
        "{took:?}"
    );
    let text = err.to_string();
    assert!(matches!(err, Error::Deadline { .. }), "{text}");
    for want in [
        "reading the network config: gave up after",
        "no etcd endpoint answered",
        "http://127.0.0.1:2379",
    ] {
        assert!(text.contains(want), "{want:?} missing: {text}");
    }
}

/// Puts `leases` (subnet key name, value) in one transaction: one revision.
fn put_together(etcd: &Etcd, leases: &[(String, String)]) {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ops: Vec<_> = leases
        .iter()
        .map(
            |(k, v)| serde_json::json!({ "request_put": { "key": b64(&key(k)), "value": b64(v) } }),
        )
        .collect();
    etcd.call("/v3/kv/txn", serde_json::json!({ "success": ops }));
}

/// 1,000 leases load as the first route set; 100 written together arrive as one new set.
#[test]
fn many_leases_load_as_one_version() {
    let etcd = Etcd::start();
    etcd.put(
        &format!("{PREFIX}/config"),
        r#"{"Network": "10.0.0.0/8", "SubnetLen": 24}"#,
        0,
    );
    let lease_of = |n: u32| {
        let (b, c) = (n / 256, n % 256);
        (
            format!("10.{b}.{c}.0-24"),
            format!(r#"{{"PublicIP":"172.16.{b}.{c}","PublicIPv6":null}}"#),
        )
    };
    let all: Vec<_> = (300..1300).map(lease_of).collect();
    for chunk in all.chunks(100) {
        put_together(&etcd, chunk);
    }
    let mut cfg = config(&etcd, 1, false);
    cfg.public_ip = Ipv4Addr::new(172, 31, 0, 1);
    let t0 = Instant::now();
    let (_, lease, source) = start(&etcd, &cfg);
    let started = t0.elapsed();
    let (set, _) = wait_routes(&source, &lease, "1,000 routes", WITHIN, |r| r.len() == 1000);
    assert_eq!(set.version, 1, "one table version");
    let more: Vec<_> = (1300..1400).map(lease_of).collect();
    let t1 = Instant::now();
    put_together(&etcd, &more);
    let (set, took) = wait_routes(&source, &lease, "1,100 routes", WITHIN, |r| r.len() == 1100);
    assert_eq!(
        set.version, 2,
        "100 leases written together make one version"
    );
    eprintln!(
        "start with 1,000 leases (config, acquire, list, first set): {started:?}; \
         100 more in one set after {took:?} ({:?} since the write)",
        t1.elapsed()
    );
}

/// etcd with TLS and client certificates, as flanneld's `--etcd-cafile/certfile/keyfile`.
#[test]
fn tls_with_client_certificates() {
    let (etcd, files) = Etcd::start_tls();
    etcd.put(&format!("{PREFIX}/config"), UDP_NET, 0);
    let mut cfg = config(&etcd, 1, false);
    cfg.endpoints = vec!["https://127.0.0.1:2379".into()];
    cfg.tls = lease::Tls {
        ca_file: Some(files.ca.clone()),
        cert_file: Some(files.client_cert.clone()),
        key_file: Some(files.client_key.clone()),
    };
    let (_, lease, source) = start(&etcd, &cfg);
    assert_eq!(etcd.get(&lease.key).unwrap().0, flannel_udp(1));
    etcd.put(&key("198.19.250.0-24"), &flannel_udp(2), 0);
    wait_routes(&source, &lease, "node 2 over TLS", WITHIN, |r| {
        has(r, "198.19.250.0/24")
    });
    drop(source);

    // Without a client certificate etcd refuses the handshake: unreachable, until the deadline.
    cfg.tls.cert_file = None;
    cfg.tls.key_file = None;
    cfg.start_deadline = Duration::from_millis(500);
    let err = etcd
        .run(|| LeaseSource::start(&cfg))
        .err()
        .expect("refused");
    assert!(matches!(err, Error::Deadline { .. }), "{err}");
}
