//! tundra as a node of a flannel network: started with the etcd flags only, it takes its subnet
//! from etcd and finds every other node there. A real etcd (Debian's `etcd-server`) runs on a
//! host of the cluster's switch (`common::etcd::Etcd::start_on`), reachable from every node
//! namespace. Needs root.
//!
//! - **udp, dual stack** (`EnableIPv6`): three tundra nodes find each other, every pair pings
//!   over IPv4 and IPv6; leases and the subnet file are flanneld's, byte for byte; a node of
//!   flanneld's udp format (a lease written by hand, served by a tundra with static routes)
//!   is routed within 2 s of its lease appearing and unrouted within 2 s of it going (the
//!   latencies are measured and printed); a stopped node keeps its lease, gets its subnet back
//!   when it restarts, loses its route within 2 s once its lease is deleted, and is routed
//!   within 2 s when it comes back; a node whose lease another node takes stops with exit
//!   status 1.
//! - **vxlan** (VNI and port from the network config): two tundra nodes and a kernel VXLAN node
//!   with a lease written by hand, set up from the tundra nodes' leases as flanneld would; all
//!   pairs ping; etcd is restarted while a TCP transfer flows: the flow completes with no
//!   packet lost to a missing route, and a lease written after the restart is routed.
//! - **etcd unreachable**: exit status 1 with a clear error after `--etcd-start-timeout`;
//!   SIGTERM while waiting ends tundra at once.
//! - **Embedded** (the library path of `examples/flannel-node.rs`): lease source, dataplane and
//!   follower started in this process inside two node namespaces; the nodes reach each other,
//!   and a node that leaves is unrouted.
//! - **1,000 leases** make the first table version (and 1,000 kernel routes); 100 more written
//!   together make one more (the times are printed).
//!
//! Latencies are taken from tundra's own log ("routes from etcd applied", with the revision)
//! against the time of the write; the 2 s bounds are checked on the kernel's routes, polled.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::{
    heavy_lock, ip, link_mtu, ns_cmd, pod_v4, run_cmd, tcp_transfer, underlay_v4, underlay_v6,
    vtep_mac, wait_ping, Cluster, CMD_TIMEOUT, CONVERGE_TIMEOUT, TUN, UNDERLAY_DEV,
};

const PREFIX: &str = "/coreos.com/network";
/// The switch host that runs etcd: 198.18.0.10.
const ETCD_HOST: u8 = 10;
/// The bound the issue sets on a lease change reaching the routes of the other nodes.
const WITHIN: Duration = Duration::from_secs(2);
/// Bound on a node coming up (etcd reached, lease taken, TUN configured, peers routed).
const UP_TIMEOUT: Duration = Duration::from_secs(30);

const UDP_DUAL: &str = r#"{"Network": "198.19.0.0/16", "SubnetLen": 24,
    "EnableIPv6": true, "IPv6Network": "fd19::/48", "IPv6SubnetLen": 64,
    "Backend": {"Type": "udp"}}"#;
const VXLAN_42: &str =
    r#"{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "VNI": 42, "Port": 4789}}"#;

/// A cluster of `n` nodes with etcd on a host of its switch, holding `network` as the network
/// config.
fn setup(n: u8, network: &str) -> (Cluster, Etcd) {
    let mut c = Cluster::new(n);
    let host = c.add_host(ETCD_HOST);
    let etcd = Etcd::start_on(&host, underlay_v4(ETCD_HOST));
    etcd.put(&format!("{PREFIX}/config"), network, 0);
    (c, etcd)
}

fn subnet_file(c: &Cluster, i: u8) -> PathBuf {
    c.dir().join(format!("subnet-{i}.env"))
}

/// A subnet file as a previous run of node `i` would have left it: the next start asks for
/// the plan's subnets 198.19.i.0/24 (and fd19:0:0:i::/64), so that the pod addresses fit.
fn pin(c: &Cluster, i: u8, dual: bool) {
    let mut text = format!("FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.{i}.1/24\n");
    if dual {
        text.push_str(&format!(
            "FLANNEL_IPV6_NETWORK=fd19::/48\nFLANNEL_IPV6_SUBNET=fd19:0:0:{i:x}::1/64\n"
        ));
    }
    text.push_str("FLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n");
    std::fs::write(subnet_file(c, i), text).expect("write subnet file");
}

/// Starts tundra on node `i` with the etcd flags only (and `extra`).
fn start_node(c: &mut Cluster, etcd: &Etcd, i: u8, extra: &[&str]) {
    let mut args: Vec<String> = vec![
        "--etcd-endpoints".into(),
        etcd.endpoint().into(),
        "--public-ip".into(),
        underlay_v4(i).to_string(),
        "--public-ipv6".into(),
        underlay_v6(i).to_string(),
        "--subnet-file".into(),
        subnet_file(c, i).to_string_lossy().into_owned(),
        "--etcd-start-timeout".into(),
        "20s".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    c.start_tundra_args(i, &args);
}

fn io_of(i: u8) -> &'static str {
    if i % 2 == 1 {
        "uring"
    } else {
        "poll"
    }
}

/// The prefixes routed through the TUN in `ns` (one family).
fn tun_routes(ns: &str, v6: bool) -> Vec<String> {
    let family = if v6 { "-6" } else { "-4" };
    let out = run_cmd(
        "ip",
        &["-n", ns, family, "-o", "route", "show", "dev", TUN],
        CMD_TIMEOUT,
    );
    out.stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Waits until each node of `nodes` routes every prefix of `present` through its TUN and none
/// of `absent` (IPv4 and IPv6 prefixes alike), polling all of them in turn. Returns, per node,
/// how long that took from the call. Panics with the node's log after `timeout`.
fn wait_routes(
    c: &Cluster,
    nodes: &[u8],
    present: &[String],
    absent: &[String],
    timeout: Duration,
) -> Vec<Duration> {
    let t0 = Instant::now();
    let v6 = present.iter().chain(absent).any(|p| p.contains(':'));
    let mut took: BTreeMap<u8, Duration> = BTreeMap::new();
    loop {
        for &i in nodes {
            if took.contains_key(&i) {
                continue;
            }
            let ns = c.ns(i);
            let mut routes = tun_routes(&ns, false);
            if v6 {
                routes.extend(tun_routes(&ns, true));
            }
            let ok = present.iter().all(|p| routes.contains(p))
                && !absent.iter().any(|p| routes.contains(p));
            if ok {
                took.insert(i, t0.elapsed());
            } else if t0.elapsed() > timeout {
                panic!(
                    "node {i}: routes through {TUN} {routes:?} after {timeout:?}: want {present:?}, \
                     not {absent:?}; stderr:\n{}",
                    c.stderr(i)
                );
            }
        }
        if took.len() == nodes.len() {
            return took.into_values().collect();
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn subnets(i: u8, dual: bool) -> Vec<String> {
    let mut v = vec![format!("198.19.{i}.0/24")];
    if dual {
        v.push(format!("fd19:0:0:{i:x}::/64"));
    }
    v
}

fn key(i: u8, dual: bool) -> String {
    if dual {
        format!("{PREFIX}/subnets/198.19.{i}.0-24&fd19:0:0:{i:x}::-64")
    } else {
        format!("{PREFIX}/subnets/198.19.{i}.0-24")
    }
}

/// A lease value read as flanneld reads it (Go's `LeaseAttrs`), with our own code.
fn flanneld_attrs(value: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(value)
        .unwrap_or_else(|e| panic!("lease value is not JSON ({e}): {value}"));
    let obj = v.as_object().expect("a lease value is a JSON object");
    for field in obj.keys() {
        assert!(
            [
                "PublicIP",
                "PublicIPv6",
                "BackendType",
                "BackendData",
                "BackendV6Data"
            ]
            .contains(&field.as_str()),
            "a field flanneld does not write: {field} in {value}"
        );
    }
    assert!(
        obj["PublicIP"]
            .as_str()
            .is_some_and(|s| s.parse::<std::net::Ipv4Addr>().is_ok()),
        "{value}"
    );
    v
}

/// Seconds since the Unix epoch of a log line's timestamp (`2026-12-02T10:37:51.615732Z`, as
/// tracing writes it in UTC).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = time.split(':');
    let (h, min, sec) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// How long after `written` (seconds since the epoch) node `i` logged that it applied a route
/// set of etcd revision `revision` or later: the route change's latency, from tundra's own
/// timestamp (finer than polling the kernel's routes).
fn applied_after(c: &Cluster, i: u8, revision: i64, written: f64) -> Duration {
    let log = c.stderr(i);
    let at = log
        .lines()
        .filter(|l| l.contains("routes from etcd applied"))
        .find_map(|l| {
            let rev: i64 = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("revision="))?
                .parse()
                .ok()?;
            (rev >= revision).then(|| log_time(l)).flatten()
        })
        .unwrap_or_else(|| panic!("node {i} logged no route set of revision {revision}:\n{log}"));
    Duration::from_secs_f64((at - written).max(0.0))
}

/// p50 and max of `samples`, in ms, for the report.
fn summary(samples: &[Duration]) -> String {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    format!(
        "n={} p50={:.0} ms max={:.0} ms",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    )
}

#[test]
fn udp_dual_stack_nodes_follow_each_other() {
    let (mut c, etcd) = setup(4, UDP_DUAL);
    let dual = true;
    for i in 1..=3 {
        pin(&c, i, dual);
        start_node(&mut c, &etcd, i, &["--io", io_of(i)]);
    }
    // Each finds the two others.
    for i in 1..=3u8 {
        let others: Vec<String> = (1..=3)
            .filter(|&j| j != i)
            .flat_map(|j| subnets(j, dual))
            .collect();
        wait_routes(&c, &[i], &others, &[], UP_TIMEOUT);
    }
    for i in 1..=3u8 {
        for j in (1..=3).filter(|&j| j != i) {
            c.wait_pods(i, j);
        }
    }

    // Leases and subnet files as flanneld writes them.
    for i in 1..=3u8 {
        let (value, lease) = etcd.get(&key(i, dual)).expect("node's lease in etcd");
        assert_eq!(
            value,
            format!(
                r#"{{"PublicIP":"{}","PublicIPv6":"{}"}}"#,
                underlay_v4(i),
                underlay_v6(i)
            )
        );
        let attrs = flanneld_attrs(&value);
        assert!(attrs.get("BackendType").is_none(), "udp writes none");
        assert_eq!(etcd.ttl(lease).0, 24 * 3600, "flanneld's TTL");
        let mtu = link_mtu(&c.ns(i), TUN);
        let expected = format!(
            "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.{i}.1/24\n\
             FLANNEL_IPV6_NETWORK=fd19::/48\nFLANNEL_IPV6_SUBNET=fd19:0:0:{i:x}::1/64\n\
             FLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=false\n"
        );
        common::wait_until("the subnet file", WITHIN, || {
            std::fs::read_to_string(subnet_file(&c, i)).is_ok_and(|t| t == expected)
        });
    }
    let stats = c.stats_json(1);
    let lease = &stats["lease"];
    assert_eq!(lease["key"], key(1, dual), "{stats}");
    assert_eq!(
        lease["subnets"],
        serde_json::json!(["198.19.1.0/24", "fd19:0:0:1::/64"])
    );
    assert_eq!(
        (lease["routes"].as_u64(), lease["refused"].as_u64()),
        (Some(4), Some(0)),
        "{stats}"
    );
    assert_eq!(stats["routes"], 4);
    assert_eq!(stats["encap"]["format"], "udp");

    // Node 4 runs flannel's udp format with routes given by hand; its lease is written by hand
    // as flanneld writes it. It comes and goes: its routes follow, each within 2 s.
    c.start_tundra(4, &["--io", "poll"]);
    let four = subnets(4, dual);
    // Latencies from the write to each node's log line saying the set is applied; the bound
    // is checked on the kernel's routes too (polled, so coarser).
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    {
        let _heavy = heavy_lock();
        for round in 0..5 {
            let written = now_epoch();
            let rev = etcd.put(
                &key(4, dual),
                r#"{"PublicIP":"198.18.0.4","PublicIPv6":null}"#,
                0,
            );
            wait_routes(&c, &[1, 2, 3], &four, &[], WITHIN);
            added.extend((1..=3).map(|i| applied_after(&c, i, rev, written)));
            if round == 0 {
                for j in [1, 3] {
                    c.wait_pods(4, j);
                    c.wait_pods(j, 4);
                }
            }
            let written = now_epoch();
            let rev = etcd.delete(&key(4, dual));
            wait_routes(&c, &[1, 2, 3], &[], &four, WITHIN);
            removed.extend((1..=3).map(|i| applied_after(&c, i, rev, written)));
        }
    }

    // Node 3 stops: its lease stays, and so does its route at the others.
    let exit = c.stop(3);
    assert!(exit.status.is_some_and(|s| s.success()), "{}", exit.stderr);
    let (value3, lease3) = etcd.get(&key(3, dual)).expect("a stop keeps the lease");
    assert!(etcd.ttl(lease3).1 > 0, "the etcd lease is alive");
    thread::sleep(Duration::from_millis(300));
    wait_routes(&c, &[1, 2], &subnets(3, dual), &[], WITHIN);
    // It restarts without its subnet file: the same subnet again, found by its PublicIP.
    std::fs::remove_file(subnet_file(&c, 3)).expect("remove node 3's subnet file");
    start_node(&mut c, &etcd, 3, &["--io", io_of(3)]);
    wait_routes(
        &c,
        &[3],
        &[subnets(1, dual), subnets(2, dual)].concat(),
        &[],
        UP_TIMEOUT,
    );
    assert_eq!(etcd.get(&key(3, dual)).map(|v| v.0), Some(value3));
    assert!(
        c.stderr(3).contains("SamePublicIp"),
        "node 3 did not take its lease back by its PublicIP:\n{}",
        c.stderr(3)
    );
    c.wait_pods(1, 3);
    c.wait_pods(3, 2);

    // It stops again and its lease is deleted (it expired): the others drop its route.
    c.stop(3);
    let written = now_epoch();
    let rev = etcd.delete(&key(3, dual));
    wait_routes(&c, &[1, 2], &[], &subnets(3, dual), WITHIN);
    removed.extend([1, 2].map(|i| applied_after(&c, i, rev, written)));
    // And comes back as a new lease (its subnet file asks for the same subnet): routed within
    // 2 s of the test seeing its key (etcd polled every 50 ms).
    start_node(&mut c, &etcd, 3, &["--io", io_of(3)]);
    common::wait_until("node 3's new lease", UP_TIMEOUT, || {
        etcd.get(&key(3, dual)).is_some()
    });
    let new_node = wait_routes(&c, &[1, 2], &subnets(3, dual), &[], WITHIN);
    wait_routes(
        &c,
        &[3],
        &[subnets(1, dual), subnets(2, dual)].concat(),
        &[],
        UP_TIMEOUT,
    );
    c.wait_pods(3, 1);
    for d in added.iter().chain(&removed) {
        assert!(*d <= WITHIN, "a route change took {d:?}");
    }
    eprintln!(
        "route applied after its lease was written: {}; after it was deleted: {}; \
         a new tundra node routed (kernel routes polled) {new_node:?} after the test saw its key",
        summary(&added),
        summary(&removed),
    );

    // Another node takes node 2's key: node 2 stops with exit status 1 and cleans up.
    etcd.put(
        &key(2, dual),
        r#"{"PublicIP":"198.18.0.99","PublicIPv6":null}"#,
        0,
    );
    let status = c.wait_exit(2, Duration::from_secs(10));
    let log = c.stderr(2);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(log.contains("error: our etcd lease"), "{log}");
    assert!(log.contains("was lost"), "{log}");
    let link = run_cmd(
        "ip",
        &["-n", &c.ns(2), "link", "show", "dev", TUN],
        CMD_TIMEOUT,
    );
    assert!(!link.success(), "node 2's TUN survived:\n{link}");

    // The others stop cleanly (exit 0, TUN gone); their leases stay.
    let exit = c.stop(1);
    assert!(exit.status.is_some_and(|s| s.success()), "{}", exit.stderr);
    assert!(etcd.get(&key(1, dual)).is_some(), "SIGTERM keeps the lease");
    c.shutdown();
}

/// Makes node `i` a kernel VXLAN node as flanneld's vxlan backend would, from the leases in
/// etcd (read with the test's own code): `vx0` with VTEP MAC `mac`, and for every other lease
/// a permanent neighbour, an FDB entry to its PublicIP and an onlink route.
fn kernel_vxlan_from_leases(c: &Cluster, etcd: &Etcd, i: u8, vni: u32, port: u16, mac: &str) {
    let ns = c.ns(i);
    let local = underlay_v4(i).to_string();
    let (vni, port) = (vni.to_string(), port.to_string());
    #[rustfmt::skip]
    ip(&["-n", &ns, "link", "add", "vx0", "address", mac, "type", "vxlan", "id", &vni,
        "dstport", &port, "local", &local, "dev", UNDERLAY_DEV, "nolearning"]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("198.19.{i}.0/32"),
        "dev",
        "vx0",
    ]);
    ip(&["-n", &ns, "link", "set", "vx0", "up"]);
    // See `Cluster::kernel_vxlan`: over veth, checksums must be filled in by the kernel.
    let out = ns_cmd(&ns, "ethtool", &["-K", UNDERLAY_DEV, "tx", "off"]);
    assert!(out.success(), "ethtool failed:\n{out}");
    let own = key(i, false);
    for k in etcd.keys(&format!("{PREFIX}/subnets/")) {
        if k == own {
            continue;
        }
        let (value, _) = etcd.get(&k).expect("listed key");
        let attrs = flanneld_attrs(&value);
        assert_eq!(attrs["BackendType"], "vxlan", "{value}");
        let their_mac = attrs["BackendData"]["VtepMAC"].as_str().expect("VtepMAC");
        let public_ip = attrs["PublicIP"].as_str().expect("PublicIP");
        let name = k.rsplit('/').next().expect("key");
        let (net, len) = name.split_once('-').expect("flannel's key: ADDR-LEN");
        ip(&[
            "-n",
            &ns,
            "neigh",
            "add",
            net,
            "lladdr",
            their_mac,
            "dev",
            "vx0",
            "nud",
            "permanent",
        ]);
        let out = run_cmd(
            "bridge",
            &[
                "-n", &ns, "fdb", "append", their_mac, "dev", "vx0", "dst", public_ip,
            ],
            CMD_TIMEOUT,
        );
        assert!(out.success(), "bridge fdb append failed:\n{out}");
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            &format!("{net}/{len}"),
            "via",
            net,
            "dev",
            "vx0",
            "onlink",
        ]);
    }
}

/// The number at `path` in node `i`'s `stats --json`.
fn stat(c: &mut Cluster, i: u8, path: &[&str]) -> u64 {
    let stats = c.stats_json(i);
    let v = path.iter().fold(&stats, |v, k| &v[*k]);
    v.as_u64()
        .unwrap_or_else(|| panic!("node {i}: no number at {path:?} in {stats}"))
}

#[test]
fn vxlan_with_a_kernel_node_survives_an_etcd_restart() {
    let (mut c, mut etcd) = setup(3, VXLAN_42);
    let dual = false;
    pin(&c, 1, dual);
    pin(&c, 2, dual);
    // Node 1 publishes the VTEP MAC derived from its public IP, node 2 the one it is given.
    start_node(&mut c, &etcd, 1, &["--io", "uring"]);
    start_node(
        &mut c,
        &etcd,
        2,
        &["--io", "poll", "--vtep-mac", &vtep_mac(2)],
    );
    wait_routes(&c, &[1], &subnets(2, dual), &[], UP_TIMEOUT);
    wait_routes(&c, &[2], &subnets(1, dual), &[], UP_TIMEOUT);

    // Their leases are flanneld's vxlan leases, with the network's VNI.
    let (value2, _) = etcd.get(&key(2, dual)).expect("node 2's lease");
    assert_eq!(
        value2,
        format!(
            r#"{{"PublicIP":"198.18.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":42,"VtepMAC":"{}"}}}}"#,
            vtep_mac(2)
        )
    );
    let (value1, _) = etcd.get(&key(1, dual)).expect("node 1's lease");
    let attrs1 = flanneld_attrs(&value1);
    assert_eq!(attrs1["BackendData"]["VNI"], 42);
    let mac1 = attrs1["BackendData"]["VtepMAC"]
        .as_str()
        .expect("VtepMAC")
        .to_owned();
    let stats = c.stats_json(1);
    assert_eq!(
        stats["encap"],
        serde_json::json!({"format": "vxlan", "vni": 42, "vtep_mac": mac1, "port": 4789}),
        "node 1 runs the network's backend with the MAC it published"
    );

    // Node 3 is a kernel VXLAN node with a lease written by hand in flanneld's format, set up
    // from the tundra nodes' leases as flanneld would.
    etcd.put(
        &key(3, dual),
        &format!(
            r#"{{"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":42,"VtepMAC":"{}"}}}}"#,
            vtep_mac(3)
        ),
        0,
    );
    kernel_vxlan_from_leases(&c, &etcd, 3, 42, 4789, &vtep_mac(3));
    wait_routes(&c, &[1, 2], &subnets(3, dual), &[], WITHIN);
    for (i, j) in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)] {
        let (src, dst) = (pod_v4(i).to_string(), pod_v4(j).to_string());
        wait_ping(&c.ns(i), &src, &dst, CONVERGE_TIMEOUT);
    }

    // etcd restarts while a TCP transfer from node 1 to node 2 flows. The transfer is sized
    // to last about 5 s on this machine, several times what the restart and the relist take.
    let _heavy = heavy_lock();
    let (ns1, ns2) = (c.ns(1), c.ns(2));
    let src = SocketAddr::new(pod_v4(1).into(), 0);
    let probe = tcp_transfer(
        &ns1,
        src,
        &ns2,
        SocketAddr::new(pod_v4(2).into(), 5201),
        32 << 20,
        Duration::from_secs(60),
    )
    .expect("a short transfer");
    let bytes = ((probe.mbit_s() * 1e6 / 8.0 * 5.0) as u64).clamp(64 << 20, 4 << 30);
    let no_route = |c: &mut Cluster| {
        (
            stat(c, 1, &["drops", "no_route"]),
            stat(c, 2, &["drops", "no_route"]),
        )
    };
    let before = no_route(&mut c);
    let (a, b) = (ns1.clone(), ns2.clone());
    let flow = thread::spawn(move || {
        tcp_transfer(
            &a,
            src,
            &b,
            SocketAddr::new(pod_v4(2).into(), 5202),
            bytes,
            Duration::from_secs(120),
        )
    });
    thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    etcd.restart(Duration::from_millis(500));
    let back_up = t0.elapsed();
    // Both nodes list the leases again.
    common::wait_until(
        "both nodes to list the leases again",
        Duration::from_secs(20),
        || {
            stat(&mut c, 1, &["lease", "relists"]) >= 1
                && stat(&mut c, 2, &["lease", "relists"]) >= 1
        },
    );
    let relisted = t0.elapsed();
    let flowing = !flow.is_finished();
    // A change after the restart is seen.
    let t1 = Instant::now();
    etcd.put(
        &format!("{PREFIX}/subnets/198.19.5.0-24"),
        &format!(
            r#"{{"PublicIP":"198.18.0.5","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":42,"VtepMAC":"{}"}}}}"#,
            vtep_mac(5)
        ),
        0,
    );
    let seen = wait_routes(&c, &[1, 2], &subnets(5, dual), &[], WITHIN);
    let put_to_route = t1.elapsed();
    let transfer = flow
        .join()
        .expect("transfer thread")
        .unwrap_or_else(|e| panic!("the flow broke across the etcd restart: {e}"));
    assert!(
        flowing,
        "the transfer ({bytes} bytes, {:.0} Mbit/s measured) ended before both nodes had listed \
         the leases again ({relisted:?} after the restart began): make it longer",
        probe.mbit_s()
    );
    assert_eq!(
        no_route(&mut c),
        before,
        "packets were dropped for want of a route"
    );
    eprintln!(
        "etcd restart: back up after {back_up:?}, both nodes relisted after {relisted:?}; \
         transfer of {} MiB across it at {:.0} Mbit/s; a lease written after the restart \
         routed after {seen:?} ({put_to_route:?} with the write)",
        transfer.bytes >> 20,
        transfer.mbit_s()
    );
    drop(_heavy);
    // The kernel node is still reached, both ways.
    wait_ping(&ns1, &pod_v4(1).to_string(), &pod_v4(3).to_string(), WITHIN);
    wait_ping(
        &c.ns(3),
        &pod_v4(3).to_string(),
        &pod_v4(2).to_string(),
        WITHIN,
    );
    let stats = c.stats_json(2);
    assert_eq!(stats["lease"]["routes"], 3, "{stats}");
    assert_eq!(stats["lease"]["refused"], 0, "{stats}");
    c.shutdown();
}

#[test]
fn etcd_unreachable_is_an_error_after_the_start_timeout() {
    // A namespace with nothing listening on 127.0.0.1:2379.
    let ns = Etcd::without_server();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-cli", ns.ns));
    std::fs::create_dir_all(&dir).expect("dir");
    let subnet_file = dir.join("subnet.env");
    let args = |timeout: &str| {
        vec![
            "netns".to_owned(),
            "exec".into(),
            ns.ns.clone(),
            env!("CARGO_BIN_EXE_tundra").into(),
            "run".into(),
            "--tun".into(),
            TUN.into(),
            "--control".into(),
            "none".into(),
            "--etcd-endpoints".into(),
            "http://127.0.0.1:2379".into(),
            "--public-ip".into(),
            "198.18.0.1".into(),
            "--subnet-file".into(),
            subnet_file.to_string_lossy().into_owned(),
            "--etcd-start-timeout".into(),
            timeout.into(),
        ]
    };
    let t0 = Instant::now();
    let a = args("1s");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = run_cmd("ip", &a, Duration::from_secs(30));
    let took = t0.elapsed();
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(took >= Duration::from_secs(1), "gave up early: {took:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: etcd: reading the network config: gave up after"),
        "{out}"
    );
    assert!(last.contains("http://127.0.0.1:2379"), "{out}");
    assert!(out.stderr.contains("retry_in"), "tries are logged: {out}");
    assert!(!subnet_file.exists(), "no subnet file without a lease");
    let link = run_cmd("ip", &["-n", &ns.ns, "link", "show", TUN], CMD_TIMEOUT);
    assert!(!link.success(), "a TUN was created:\n{link}");

    // SIGTERM while waiting for etcd ends it at once.
    let mut child = std::process::Command::new("ip")
        .args(args("60s"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tundra");
    thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let _ = run_cmd("kill", &["-TERM", &child.id().to_string()], CMD_TIMEOUT);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("tundra waiting for etcd ignored SIGTERM for 5 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Puts `leases` (key, value) in one etcd transaction: one revision, which it returns.
fn put_together(etcd: &Etcd, leases: &[(String, String)]) -> i64 {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ops: Vec<_> = leases
        .iter()
        .map(|(k, v)| serde_json::json!({ "request_put": { "key": b64(k), "value": b64(v) } }))
        .collect();
    let reply = etcd.call("/v3/kv/txn", serde_json::json!({ "success": ops }));
    reply["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {reply}"))
}

#[test]
fn a_thousand_leases_load_as_one_table_version() {
    // /28 subnets: 4096 of them in the plan's 198.19.0.0/16. Nothing is sent to the leases'
    // PublicIPs (in the benchmarking range 198.18.0.0/15, off the cluster's underlay subnet).
    let (mut c, etcd) = setup(
        3,
        r#"{"Network": "198.19.0.0/16", "SubnetLen": 28, "SubnetMin": "198.19.1.0",
            "Backend": {"Type": "udp"}}"#,
    );
    let lease_of = |n: u32| {
        (
            format!("{PREFIX}/subnets/198.19.{}.{}-28", n / 16, (n % 16) * 16),
            format!(
                r#"{{"PublicIP":"198.18.{}.{}","PublicIPv6":null}}"#,
                1 + n / 250,
                1 + n % 250
            ),
        )
    };
    // Subnets 198.19.32.0/28 on; node 1 takes one of the free ones below.
    let all: Vec<_> = (512..1512).map(lease_of).collect();
    for chunk in all.chunks(100) {
        put_together(&etcd, chunk);
    }
    let written = now_epoch();
    start_node(&mut c, &etcd, 1, &["--io", "poll"]);
    let ns = c.ns(1);
    common::wait_until("1,000 routes through the TUN", UP_TIMEOUT, || {
        tun_routes(&ns, false).len() == 1000
    });
    let stats = c.stats_json(1);
    assert_eq!(
        (stats["routes"].as_u64(), stats["version"].as_u64()),
        (Some(1000), Some(1)),
        "1,000 leases make the first table version: {}",
        stats["lease"]
    );
    let log = c.stderr(1);
    let at = |what: &str| {
        log.lines()
            .find(|l| l.contains(what))
            .and_then(log_time)
            .unwrap_or_else(|| panic!("no {what:?} in the log:\n{log}"))
    };
    let loaded = at("etcd leases loaded") - written;
    let running = at("dataplane running") - written;

    // 100 more written together: one more table version.
    let more: Vec<_> = (1512..1612).map(lease_of).collect();
    let written = now_epoch();
    let rev = put_together(&etcd, &more);
    common::wait_until("1,100 routes through the TUN", WITHIN, || {
        tun_routes(&ns, false).len() == 1100
    });
    let took = applied_after(&c, 1, rev, written);
    let stats = c.stats_json(1);
    assert_eq!(
        (stats["routes"].as_u64(), stats["version"].as_u64()),
        (Some(1100), Some(2)),
        "100 leases written together make one table version"
    );
    eprintln!(
        "1,000 leases: listed {:.0} ms after tundra was started, first table version (1,000 \
         kernel routes) running after {:.0} ms; 100 more in one write applied after {took:?}",
        loaded * 1e3,
        running * 1e3
    );
    c.shutdown();
}

/// The library path an embedding daemon takes (`examples/flannel-node.rs`): in each of two
/// node namespaces, this process starts a lease source, a dataplane built from the lease
/// (`Builder::flannel`) and lets it follow the leases (`Dataplane::follow_leases`); the two
/// nodes then reach each other's pods, and a node that leaves is unrouted.
#[test]
fn an_embedding_daemon_follows_the_leases_through_the_library() {
    use tundra::lease::{self, LeaseSource};
    use tundra::Dataplane;

    // Three nodes for the switch etcd needs; the third stays empty.
    let (c, etcd) = setup(
        3,
        r#"{"Network": "198.19.0.0/16", "Backend": {"Type": "udp"}}"#,
    );
    let start = |i: u8| {
        pin(&c, i, false);
        let mut cfg = lease::Config::new(vec![etcd.endpoint().into()], underlay_v4(i));
        cfg.subnet_file = Some(subnet_file(&c, i));
        common::in_netns(&c.ns(i), move || {
            let (network, our, source) = LeaseSource::start(&cfg).expect("lease");
            assert_eq!(our.subnet.to_string(), format!("198.19.{i}.0/24"));
            let mut dp = Dataplane::builder()
                .tun(TUN)
                .flannel(&network, &our)
                .start()
                .expect("dataplane");
            dp.follow_leases(source, &our).expect("follow");
            dp
        })
    };
    let one = start(1);
    let two = start(2);
    for (i, j) in [(1, 2), (2, 1)] {
        let (src, dst) = (pod_v4(i).to_string(), pod_v4(j).to_string());
        wait_ping(&c.ns(i), &src, &dst, CONVERGE_TIMEOUT);
    }
    // Node 2 goes and its lease is deleted: node 1 drops the route.
    two.shutdown().expect("node 2 stops");
    etcd.delete(&key(2, false));
    wait_routes(&c, &[1], &[], &subnets(2, false), WITHIN);
    assert!(one.lease_lost().is_none());
    one.shutdown().expect("node 1 stops");
}
