//! Dataplanes started in this test process through the library API, each inside a node
//! namespace of a [`Cluster`]: `start()` runs on a thread that has entered the namespace, so the
//! TUN, the socket, the netlink socket and every thread the dataplane spawns live there.
//!
//! Declare the [`Cluster`] before the dataplanes: they are then dropped (stopped) first, and the
//! namespaces deleted after, on success and on panic alike.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tundra::config::IoMode;
use tundra::{Builder, Dataplane};

use crate::common::*;

pub fn io_mode(io: Io) -> IoMode {
    match io {
        Io::Uring => IoMode::Uring,
        Io::Poll => IoMode::Poll,
    }
}

/// Node `i`'s settings: TUN [`TUN`] on port [`PORT`] (IPv4 underlay), local subnets
/// 198.19.i.0/24 and fd19:0:0:i::/64, and both subnets of each of `peers` as routes.
pub fn node_builder(i: u8, peers: &[u8], io: Io) -> Builder {
    let mut b = Dataplane::builder()
        .tun(TUN)
        .listen(SocketAddr::from(([0, 0, 0, 0], PORT)))
        .io(io_mode(io))
        .local_subnet(subnet_v4(i).parse().expect("valid subnet"))
        .local_subnet(subnet_v6(i).parse().expect("valid subnet"));
    for &j in peers {
        let addr = peer_addr(j);
        b = b
            .peer(subnet_v4(j).parse().expect("valid subnet"), addr)
            .peer(subnet_v6(j).parse().expect("valid subnet"), addr);
    }
    b
}

/// Node `j`'s tundra on the IPv4 underlay.
pub fn peer_addr(j: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(underlay_v4(j)), PORT)
}

/// Starts `builder` inside namespace `ns`; panics with the error if it does not start.
pub fn start_in(ns: &str, builder: Builder) -> Dataplane {
    in_netns(ns, move || {
        builder
            .start()
            .unwrap_or_else(|e| panic!("dataplane in {ns} did not start: {e}"))
    })
}

/// The routes tundra added through [`TUN`] in `ns` (`proto static`, both families).
pub fn kernel_routes(ns: &str) -> BTreeSet<IpNet> {
    let mut routes = BTreeSet::new();
    for family in ["-4", "-6"] {
        let out = ip(&[
            "-n", ns, family, "route", "show", "dev", TUN, "proto", "static",
        ]);
        for line in out.lines() {
            let dst = line.split_whitespace().next().unwrap_or_default();
            let parsed = if dst.contains('/') {
                dst.parse().ok()
            } else {
                dst.parse::<IpAddr>().ok().map(IpNet::from)
            };
            routes.insert(parsed.unwrap_or_else(|| panic!("route `{line}`: bad destination")));
        }
    }
    routes
}

/// Whether [`TUN`] exists in `ns`.
pub fn tun_exists(ns: &str) -> bool {
    run_cmd("ip", &["-n", ns, "link", "show", "dev", TUN], CMD_TIMEOUT).success()
}

/// This process's resident memory in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Waits until `dataplane` has counted at least `packets` received from `peer`.
pub fn wait_rx_from(dataplane: &Dataplane, peer: SocketAddr, packets: u64, timeout: Duration) {
    wait_until(
        &format!("{packets} packets received from {peer}"),
        timeout,
        || {
            dataplane
                .stats()
                .peers
                .iter()
                .any(|p| p.addr == peer && p.totals.rx_packets >= packets)
        },
    );
}
