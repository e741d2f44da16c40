//! tundra as a library: dataplanes started in this process, each inside a node namespace.
//! Two dataplanes carry pod traffic and count it per peer, and shut down cleanly; a dataplane
//! is driven from an async task; route transactions are atomic, validated, and followed by the
//! kernel routes; 100,000 routes load as one version. Needs root (runs for real in CI).
//!
//! Every test holds [`heavy_lock`], so they run one at a time: the resident memory the scale
//! test prints is then that of one dataplane, not of whatever else runs in the process.

mod common;
mod inproc;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use inproc::*;
use ipnet::IpNet;
use tundra::config::Encap;
use tundra::datapath::encap::VXLAN_PORT;
use tundra::datapath::{Mac, Route};
use tundra::{ControlError, Controller};

per_io_mode!(two_dataplanes_in_one_process);

/// Nodes 1 and 2 of a two-node cluster, both in this process: pods ping each other over IPv4
/// and IPv6, each dataplane counts the traffic under the other as its peer, and `shutdown()`
/// returns `Ok` and takes the TUN devices with it.
fn two_dataplanes_in_one_process(io: Io) {
    let _heavy = heavy_lock();
    let c = Cluster::new(2);
    let (ns1, ns2) = (c.ns(1), c.ns(2));
    let d1 = start_in(&ns1, node_builder(1, &[2], io));
    let d2 = start_in(&ns2, node_builder(2, &[1], io));
    assert_eq!(d1.io(), io_mode(io));

    for (src, dst) in [
        (pod_v4(1).to_string(), pod_v4(2).to_string()),
        (pod_v6(1).to_string(), pod_v6(2).to_string()),
    ] {
        wait_ping(&ns1, &src, &dst, CONVERGE_TIMEOUT);
        let p = ping(
            &ns1,
            &["-c", "5", "-i", "0.05", "-W", "2", "-I", &src, &dst],
        );
        assert!(p.all_ok(), "{src} -> {dst}:\n{}", p.out);
    }
    let (src, dst) = (pod_v4(2).to_string(), pod_v4(1).to_string());
    let p = ping(
        &ns2,
        &["-c", "5", "-i", "0.05", "-W", "2", "-I", &src, &dst],
    );
    assert!(p.all_ok(), "node 2 -> node 1:\n{}", p.out);

    // >= 11 requests and as many replies each way (5 + 5 + 1 after convergence).
    wait_rx_from(&d1, peer_addr(2), 11, Duration::from_secs(5));
    wait_rx_from(&d2, peer_addr(1), 11, Duration::from_secs(5));
    for (d, peer, node) in [(&d1, peer_addr(2), 1), (&d2, peer_addr(1), 2)] {
        let s = d.stats();
        let p = s
            .peers
            .iter()
            .find(|p| p.addr == peer)
            .unwrap_or_else(|| panic!("node {node}: no peer {peer} in {:?}", s.peers));
        assert!(
            p.totals.tx_packets >= 11 && p.totals.rx_packets >= 11,
            "node {node}: too little traffic counted for {peer}: {:?}",
            p.totals
        );
        assert!(p.totals.tx_bytes > 0 && p.totals.rx_bytes > 0);
        assert_eq!(s.routes, 2, "node {node}: {s:?}");
        println!("node {node}: peer {peer}: {:?}", p.totals);
    }

    d1.shutdown().expect("node 1 shuts down cleanly");
    d2.shutdown().expect("node 2 shuts down cleanly");
    assert!(!tun_exists(&ns1), "{TUN} still in node 1 after shutdown");
    assert!(!tun_exists(&ns2), "{TUN} still in node 2 after shutdown");
}

// ---------------------------------------------------------------------------------------------
// From async code.

/// The smallest executor: polls one future on this thread, parking between wake-ups.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}

/// `spawn_blocking` in a few lines: runs `f` on a std thread; the future completes with its
/// result. (What an async program does with [`Controller`] calls, which block.)
fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = T> {
    struct Slot<T> {
        value: Option<T>,
        waker: Option<Waker>,
    }
    struct Task<T>(Arc<Mutex<Slot<T>>>);
    impl<T> Future for Task<T> {
        type Output = T;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
            let mut slot = self.0.lock().expect("not poisoned");
            match slot.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    let shared = slot.clone();
    thread::spawn(move || {
        let v = f();
        let mut slot = shared.lock().expect("not poisoned");
        slot.value = Some(v);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    });
    Task(slot)
}

/// An async task adds and removes a route through a [`Controller`] clone; the table and the
/// kernel routes follow, and the task sees each new version.
#[test]
fn dataplane_from_async() {
    let _heavy = heavy_lock();
    let c = Cluster::new(2);
    let ns = c.ns(1);
    let d = start_in(&ns, node_builder(1, &[2], Io::Poll));
    let prefix: IpNet = "10.3.0.0/24".parse().unwrap();
    let start_version = d.stats().version;

    let controller = d.controller().clone();
    let task = async move {
        let ctl = controller.clone();
        let added = spawn_blocking(move || {
            ctl.routes()
                .insert(prefix, SocketAddr::from(([198, 18, 0, 3], PORT)))
                .commit()
        })
        .await
        .expect("insert from async");
        let routes_then = spawn_blocking({
            let ns = ns.clone();
            move || kernel_routes(&ns)
        })
        .await;
        let ctl = controller.clone();
        let removed = spawn_blocking(move || ctl.routes().remove(prefix).commit())
            .await
            .expect("remove from async");
        (added, routes_then, removed)
    };
    let (added, routes_then, removed) = block_on(task);
    assert_eq!((added.added, added.version), (1, start_version + 1));
    assert!(routes_then.contains(&prefix), "{routes_then:?}");
    assert_eq!((removed.removed, removed.version), (1, start_version + 2));
    assert!(!kernel_routes(&c.ns(1)).contains(&prefix));
    d.shutdown().expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// Route transactions.

fn addr3() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 3], PORT))
}

/// The table's routes as a set of prefixes.
fn table_prefixes(ctl: &Controller) -> std::collections::BTreeSet<IpNet> {
    ctl.table().routes().iter().map(|r| r.prefix).collect()
}

/// Where the table sends `dst`.
fn lookup(ctl: &Controller, dst: IpAddr) -> Option<SocketAddr> {
    let table = ctl.table();
    table.lookup(dst).map(|id| table.peer(id).addr)
}

/// Insert, move, remove and replace_all, each one version; the kernel routes through the TUN
/// follow the table after each step; a replace_all of 5,000 node subnets is one version.
#[test]
fn route_transactions() {
    let _heavy = heavy_lock();
    let c = Cluster::new(2);
    let ns = c.ns(1);
    let d = start_in(&ns, node_builder(1, &[2], Io::Poll));
    let ctl = d.controller().clone();
    let follows = |what: &str| {
        assert_eq!(
            kernel_routes(&ns),
            table_prefixes(&ctl),
            "kernel routes differ from the table after {what}"
        );
    };
    follows("start");
    let v0 = d.stats().version;
    let p: IpNet = "10.1.0.0/24".parse().unwrap();

    let a = d.routes().insert(p, peer_addr(2)).commit().expect("insert");
    assert_eq!(
        (a.version, a.added, a.removed, a.changed),
        (v0 + 1, 1, 0, 0)
    );
    assert_eq!(a.routes, 3);
    assert_eq!(
        lookup(&ctl, "10.1.0.7".parse().unwrap()),
        Some(peer_addr(2))
    );
    follows("insert");

    let a = d.routes().insert(p, addr3()).commit().expect("move");
    assert_eq!(
        (a.version, a.added, a.removed, a.changed),
        (v0 + 2, 0, 0, 1)
    );
    assert_eq!(lookup(&ctl, "10.1.0.7".parse().unwrap()), Some(addr3()));
    follows("move");

    let a = d.routes().remove(p).commit().expect("remove");
    assert_eq!(
        (a.version, a.added, a.removed, a.changed),
        (v0 + 3, 0, 1, 0)
    );
    assert_eq!(lookup(&ctl, "10.1.0.7".parse().unwrap()), None);
    follows("remove");

    // Several changes in one transaction: one version.
    let q: IpNet = "10.2.0.0/16".parse().unwrap();
    let a = d
        .routes()
        .insert(p, peer_addr(2))
        .insert(q, addr3())
        .remove(subnet_v6(2).parse().unwrap())
        .commit()
        .expect("three changes");
    assert_eq!((a.version, a.added, a.removed), (v0 + 4, 2, 1));
    follows("a three-change transaction");

    // 5,000 node subnets in one replace_all: exactly one new version.
    let nodes: Vec<Route> = (0..5000u32)
        .map(|k| Route {
            prefix: IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (k << 8))), 24).unwrap(),
            peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc612_0100 + k % 200 + 1)), PORT),
            mac: None,
        })
        .collect();
    let before = d.stats().version;
    let started = Instant::now();
    let a = d
        .routes()
        .replace_all(nodes.iter().copied())
        .commit()
        .expect("replace_all of 5,000");
    println!(
        "MEASURE replace_all 5000 routes (kernel routes on): {:?}",
        started.elapsed()
    );
    assert_eq!(
        a.version,
        before + 1,
        "one version for the whole replace_all"
    );
    assert_eq!(d.stats().version, before + 1);
    assert_eq!((a.routes, d.stats().routes), (5000, 5000));
    // 10.1.0.0/24 was routed already (to node 2; now to 198.18.1.57); 198.19.2.0/24 and
    // 10.2.0.0/16 are not in the new set.
    assert_eq!((a.added, a.removed, a.changed), (4999, 2, 1));
    for r in nodes.iter().step_by(97) {
        assert_eq!(lookup(&ctl, r.prefix.addr()), Some(r.peer), "{}", r.prefix);
    }
    follows("replace_all of 5,000");

    // replace_all with later changes on top, still one version.
    let a = d
        .routes()
        .replace_all(nodes[..10].iter().copied())
        .insert(subnet_v4(2).parse().unwrap(), peer_addr(2))
        .remove(nodes[0].prefix)
        .commit()
        .expect("replace_all then insert and remove");
    assert_eq!((a.version, a.routes), (before + 2, 10));
    follows("replace_all with changes on top");
    d.shutdown().expect("clean shutdown");
}

/// Each kind of invalid transaction is refused whole: the version, the table and the kernel
/// routes stay exactly as they were, even for the valid changes in front of the bad one.
#[test]
fn invalid_transactions_change_nothing() {
    let _heavy = heavy_lock();
    let c = Cluster::new(2);
    let ns = c.ns(1);
    let d = start_in(&ns, node_builder(1, &[2], Io::Poll));
    let ctl = d.controller().clone();
    let good: IpNet = "10.7.0.0/24".parse().unwrap();
    d.routes()
        .insert("10.8.0.0/24".parse().unwrap(), peer_addr(2))
        .commit()
        .expect("a valid route to start from");
    let version = d.stats().version;
    let table = ctl.table().routes();
    let kernel = kernel_routes(&ns);

    let dup: IpNet = "10.9.0.0/24".parse().unwrap();
    let cases: Vec<(&str, Result<_, ControlError>)> = vec![
        (
            "host bits",
            d.routes()
                .insert(good, peer_addr(2))
                .insert("10.9.0.1/24".parse().unwrap(), peer_addr(2))
                .commit(),
        ),
        (
            "overlaps the local IPv4 subnet",
            d.routes()
                .insert(good, peer_addr(2))
                .insert("198.19.0.0/16".parse().unwrap(), peer_addr(2))
                .commit(),
        ),
        (
            "inside the local IPv6 subnet",
            d.routes()
                .insert(good, peer_addr(2))
                .insert("fd19:0:0:1:8000::/65".parse().unwrap(), peer_addr(2))
                .commit(),
        ),
        (
            "removing a prefix that is not routed",
            d.routes()
                .insert(good, peer_addr(2))
                .remove("10.250.0.0/24".parse().unwrap())
                .commit(),
        ),
        (
            "a prefix inserted twice",
            d.routes()
                .insert(good, peer_addr(2))
                .insert(dup, peer_addr(2))
                .insert(dup, addr3())
                .commit(),
        ),
        (
            "a duplicate inside replace_all",
            d.routes()
                .remove(subnet_v4(2).parse().unwrap())
                .replace_all([
                    Route {
                        prefix: dup,
                        peer: peer_addr(2),
                        mac: None,
                    },
                    Route {
                        prefix: dup,
                        peer: addr3(),
                        mac: None,
                    },
                ])
                .commit(),
        ),
        (
            "an unusable peer address",
            d.routes()
                .insert(good, SocketAddr::from(([0, 0, 0, 0], PORT)))
                .commit(),
        ),
        (
            "an IPv6 prefix with host bits",
            d.routes()
                .insert(
                    IpNet::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)), 64).unwrap(),
                    peer_addr(2),
                )
                .commit(),
        ),
    ];
    for (what, result) in cases {
        let e = match result {
            Ok(a) => panic!("{what}: accepted ({a:?})"),
            Err(e) => e,
        };
        println!("{what}: refused: {e}");
        assert_eq!(d.stats().version, version, "{what}: the version moved");
        assert_eq!(ctl.table().routes(), table, "{what}: the table changed");
        assert_eq!(
            kernel_routes(&ns),
            kernel,
            "{what}: the kernel routes changed"
        );
    }
    // The same valid change alone goes through.
    d.routes()
        .insert(good, peer_addr(2))
        .commit()
        .expect("valid");
    assert_eq!(d.stats().version, version + 1);
    assert!(kernel_routes(&ns).contains(&good));
    d.shutdown().expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// Scale.

const SCALE_V4: u32 = 60_000;
const SCALE_V6: u32 = 40_000;
const SCALE_PEERS: u32 = 1000;

/// 60k IPv4 /24s in 10.0.0.0/8 and 40k IPv6 /64s in fd00::/16 over 1,000 peer addresses in
/// 198.18.1.0/24..198.18.4.0/24 (table entries only: nothing is sent to them).
fn scale_routes() -> Vec<Route> {
    let peer = |k: u32| {
        let n = k % SCALE_PEERS;
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                198,
                18,
                1 + (n / 250) as u8,
                1 + (n % 250) as u8,
            )),
            PORT,
        )
    };
    let v4 = (0..SCALE_V4).map(|k| Route {
        prefix: IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (k << 8))), 24).unwrap(),
        peer: peer(k),
        mac: None,
    });
    let v6 = (0..SCALE_V4 + SCALE_V6).skip(SCALE_V4 as usize).map(|k| {
        let j = k - SCALE_V4;
        Route {
            prefix: IpNet::new(
                IpAddr::V6(Ipv6Addr::new(
                    0xfd00,
                    0,
                    (j >> 16) as u16,
                    j as u16,
                    0,
                    0,
                    0,
                    0,
                )),
                64,
            )
            .unwrap(),
            peer: peer(k),
            mac: None,
        }
    });
    v4.chain(v6).collect()
}

/// 100,000 routes as one version, with and without kernel routes. Prints the load time and
/// this process's resident memory; asserts only the behaviour.
#[test]
fn scale_100k_routes() {
    let _heavy = heavy_lock();
    let c = Cluster::new(2);
    let ns = c.ns(1);
    let routes = scale_routes();
    for configure in [false, true] {
        let label = if configure {
            "kernel routes on"
        } else {
            "table only"
        };
        let rss_before = rss_kib();
        let d = start_in(&ns, node_builder(1, &[], Io::Poll).configure(configure));
        let version = d.stats().version;
        let started = Instant::now();
        let a = d
            .routes()
            .replace_all(routes.iter().copied())
            .commit()
            .expect("100k routes load");
        let took = started.elapsed();
        let rss_after = rss_kib();
        println!(
            "MEASURE scale 100k ({label}): replace_all {:.3} s; VmRSS before start {} MiB, after load {} MiB (+{} MiB)",
            took.as_secs_f64(),
            rss_before / 1024,
            rss_after / 1024,
            rss_after.saturating_sub(rss_before) / 1024
        );
        assert_eq!(a.version, version + 1, "{label}: one version");
        assert_eq!((a.added, a.routes), (routes.len(), routes.len()));
        let ctl = d.controller().clone();
        assert_eq!(ctl.table().routes().len(), routes.len());
        assert_eq!(ctl.peers().len(), SCALE_PEERS as usize);
        for r in routes.iter().step_by(997) {
            let inside = match r.prefix.addr() {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + 77)),
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) + 77)),
            };
            assert_eq!(lookup(&ctl, inside), Some(r.peer), "{label}: {inside}");
        }
        assert_eq!(lookup(&ctl, "11.0.0.1".parse().unwrap()), None);
        if configure {
            let kernel = kernel_routes(&ns);
            assert_eq!(kernel.len(), routes.len(), "{label}: kernel route count");
            assert!(routes
                .iter()
                .step_by(101)
                .all(|r| kernel.contains(&r.prefix)));
        }
        let started = Instant::now();
        d.shutdown().expect("clean shutdown");
        println!(
            "MEASURE scale 100k ({label}): shutdown {:.3} s",
            started.elapsed().as_secs_f64()
        );
        assert!(!tun_exists(&ns));
    }
}

// ---------------------------------------------------------------------------------------------
// The vxlan wire format.

/// Node `i`'s VTEP MAC in these tests.
fn lib_vtep_mac(i: u8) -> Mac {
    Mac([0x0a, 0x58, 0xc6, 0x13, i, 0x01])
}

/// Node `i` in vxlan mode: VNI 7, its VTEP MAC given (node 1) or derived (node 2), the other
/// node's two subnets routed to it with its MAC; the listen port left to the format (8472).
fn vxlan_builder(i: u8, j: u8) -> tundra::Builder {
    let addr = SocketAddr::new(IpAddr::V4(underlay_v4(j)), VXLAN_PORT);
    let mac_j = match j {
        1 => lib_vtep_mac(1),
        _ => tundra::config::default_vtep_mac(&[
            subnet_v4(j).parse().unwrap(),
            subnet_v6(j).parse().unwrap(),
        ]),
    };
    let mut b = tundra::Dataplane::builder()
        .tun(TUN)
        .io(io_mode(Io::Poll))
        .encap(Encap::Vxlan)
        .vni(7)
        .local_subnet(subnet_v4(i).parse().unwrap())
        .local_subnet(subnet_v6(i).parse().unwrap())
        .peer_with_mac(subnet_v4(j).parse().unwrap(), addr, mac_j)
        .peer_with_mac(subnet_v6(j).parse().unwrap(), addr, mac_j);
    if i == 1 {
        b = b.vtep_mac(lib_vtep_mac(1));
    }
    b
}

/// Two vxlan dataplanes in one process reach each other on port 8472; each reports its VNI and
/// VTEP MAC (node 2's derived from its subnets), takes an MTU 50 below the underlay's, and
/// takes routes with MACs through transactions.
#[test]
fn vxlan_dataplanes() {
    let _heavy = heavy_lock();
    let c = Cluster::new(2);
    let (ns1, ns2) = (c.ns(1), c.ns(2));
    let b1 = vxlan_builder(1, 2);
    assert_eq!(b1.config().listen, "0.0.0.0:8472".parse().unwrap());
    let d1 = start_in(&ns1, b1);
    let d2 = start_in(&ns2, vxlan_builder(2, 1));
    assert_eq!(
        d1.encap(),
        tundra::datapath::Encap::Vxlan {
            vni: 7,
            mac: lib_vtep_mac(1)
        }
    );
    let derived = tundra::config::default_vtep_mac(&[
        subnet_v4(2).parse().unwrap(),
        subnet_v6(2).parse().unwrap(),
    ]);
    assert_eq!(
        d2.encap(),
        tundra::datapath::Encap::Vxlan {
            vni: 7,
            mac: derived
        }
    );
    c.wait_pods(1, 2);
    c.wait_pods(2, 1);
    let peer2 = SocketAddr::new(IpAddr::V4(underlay_v4(2)), VXLAN_PORT);
    wait_rx_from(&d1, peer2, 2, Duration::from_secs(5));

    let mtu = link_mtu(&ns1, TUN);
    assert_eq!(
        mtu,
        link_mtu(&ns1, UNDERLAY_DEV) - 50,
        "TUN MTU in vxlan mode"
    );
    assert_eq!(u64::from(d1.mtu().0), mtu);
    let stats = d1.stats();
    let json = stats.to_json();
    assert_eq!(json["encap"]["format"], "vxlan", "{json}");
    assert_eq!(json["encap"]["vni"], 7, "{json}");
    assert_eq!(json["encap"]["vtep_mac"], lib_vtep_mac(1).to_string());
    assert_eq!(json["encap"]["port"], VXLAN_PORT);
    let p = stats
        .peers
        .iter()
        .find(|p| p.addr == peer2)
        .expect("peer 2");
    assert_eq!(p.mac, Some(derived));

    // Transactions: a route without a MAC is refused and changes nothing; with one it goes.
    let version = d1.stats().version;
    let extra: IpNet = "10.1.0.0/24".parse().unwrap();
    let e = d1.routes().insert(extra, peer2).commit().unwrap_err();
    assert!(e.to_string().contains("has no VTEP MAC"), "{e}");
    let e = d1
        .routes()
        .insert_with_mac(extra, peer2, lib_vtep_mac(9))
        .commit()
        .unwrap_err();
    assert!(e.to_string().contains("two VTEP MACs"), "{e}");
    assert_eq!(d1.stats().version, version);
    let a = d1
        .routes()
        .insert_with_mac(extra, peer2, derived)
        .commit()
        .expect("a route with the peer's MAC");
    assert_eq!((a.version, a.added), (version + 1, 1));
    assert!(kernel_routes(&ns1).contains(&extra));

    d1.shutdown().expect("node 1 shuts down cleanly");
    d2.shutdown().expect("node 2 shuts down cleanly");
}

/// The builder refuses vxlan settings that cannot work, before anything is set up.
#[test]
fn vxlan_builder_errors() {
    let local: IpNet = "198.19.1.0/24".parse().unwrap();
    let prefix: IpNet = "198.19.2.0/24".parse().unwrap();
    let addr: SocketAddr = "198.18.0.2:8472".parse().unwrap();
    let refused = |b: tundra::Builder| match b.start() {
        Ok(_) => panic!("started"),
        Err(e) => e.to_string(),
    };
    let base = || {
        tundra::Dataplane::builder()
            .tun("tdrbuilderr0")
            .local_subnet(local)
    };
    let e = refused(base().encap(Encap::Vxlan).peer(prefix, addr));
    assert!(
        e.contains("peer 198.19.2.0/24=198.18.0.2:8472") && e.contains("VTEP MAC"),
        "{e}"
    );
    let e = refused(base().peer_with_mac(prefix, addr, lib_vtep_mac(2)));
    assert!(e.contains("applies to --encap vxlan only"), "{e}");
    let e = refused(base().vtep_mac(lib_vtep_mac(1)));
    assert!(e.contains("vtep_mac") && e.contains("vxlan only"), "{e}");
    let e = refused(base().encap(Encap::Vxlan).vtep_mac(Mac([0xff; 6])));
    assert!(e.contains("not a unicast MAC"), "{e}");
    let e = refused(base().encap(Encap::Vxlan).vni(1 << 24));
    assert!(e.contains("VNI out of range"), "{e}");
    // An explicit listen address wins over the format's port, in either order.
    let b = base()
        .listen("0.0.0.0:4789".parse().unwrap())
        .encap(Encap::Vxlan);
    assert_eq!(b.config().listen.port(), 4789);
    let b = base()
        .encap(Encap::Vxlan)
        .listen("0.0.0.0:4789".parse().unwrap());
    assert_eq!(b.config().listen.port(), 4789);
    assert_eq!(base().config().listen.port(), 8285);
}
