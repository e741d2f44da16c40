//! The vxlan wire format (`--encap vxlan`) against the Linux kernel's VXLAN, for real. Needs
//! root.
//!
//! - **Mixed clusters** ([`mixed_v4_underlay`], [`mixed_v6_underlay`]): three nodes through a
//!   bridge: tundra on node 1 (io_uring) and node 2 (poll), kernel VXLAN set up as flannel
//!   does on node 3. Every pair pings over IPv4 and IPv6 inner; 256 MiB TCP streams, compared
//!   byte for byte, go from each tundra node to the kernel node and back (IPv4 inner one way,
//!   IPv6 the other). Over the IPv6 underlay with a VNI and port other than flannel's.
//!   Afterwards no tundra has dropped anything on receive.
//! - **Another VNI** ([`another_vni_is_isolated`]): a tundra node on VNI 2 among VNI 1 nodes
//!   (one tundra, one kernel) reaches none of them and none reaches it; tundra counts what it
//!   gets from the other VNI.
//! - **Drop reasons** ([`every_drop_reason_is_counted`]): frames crafted in the namespace of
//!   a known peer (whose VTEP is down) and sent to tundra's port, one per way to be wrong; each
//!   is counted under its reason and nothing reaches the TUN, while the same frame made right
//!   does.
//!
//! Address plan as in `shared/TESTBED.md`; namespaces are cleaned up by the harness's guard.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

const BIG: u64 = 256 << 20;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(240);
const TCP_PORT: u16 = 5201;

fn pod(i: u8, v6: bool) -> IpAddr {
    if v6 {
        pod_v6(i).into()
    } else {
        pod_v4(i).into()
    }
}

/// A 256 MiB stream from node `from`'s pod to node `to`'s, checked byte for byte.
fn transfer(c: &Cluster, from: u8, to: u8, v6: bool) {
    let src = SocketAddr::new(pod(from, v6), 0);
    let dst = SocketAddr::new(pod(to, v6), TCP_PORT);
    let t = tcp_transfer(&c.ns(from), src, &c.ns(to), dst, BIG, TRANSFER_TIMEOUT)
        .unwrap_or_else(|e| panic!("node {from} -> {to} (IPv6 inner: {v6}): {e}"));
    eprintln!(
        "node {from} -> {to} (IPv6 inner: {v6}): {} MiB in {:?}, {:.0} Mbit/s",
        t.bytes >> 20,
        t.elapsed,
        t.mbit_s()
    );
}

fn mixed(underlay: Underlay, vx: Vxlan) {
    let _heavy = heavy_lock();
    let mut c = Cluster::new(3);
    c.start_tundra_vxlan(1, underlay, vx, &["--io", "uring"]);
    c.start_tundra_vxlan(2, underlay, vx, &["--io", "poll"]);
    c.kernel_vxlan(3, underlay, vx);
    for i in 1..=3 {
        for j in (1..=3).filter(|&j| j != i) {
            c.wait_pods(i, j);
        }
    }
    for tundra in [1, 2] {
        let json = c.stats_json(tundra);
        assert_eq!(json["encap"]["format"], "vxlan", "{json}");
        assert_eq!(json["encap"]["vni"], vx.vni, "{json}");
        assert_eq!(json["encap"]["vtep_mac"], vtep_mac(tundra), "{json}");
        assert_eq!(link_mtu(&c.ns(tundra), TUN), link_mtu(&c.ns(3), "vx0"));
    }
    let before = [c.stats(1), c.stats(2)];
    for (tundra, v6) in [(1, false), (2, true)] {
        transfer(&c, tundra, 3, v6);
        transfer(&c, 3, tundra, !v6);
    }
    for (k, tundra) in [1, 2].into_iter().enumerate() {
        let s = c.stats(tundra).since(&before[k]);
        let drops: Vec<_> = s
            .drops
            .as_map()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        assert!(drops.is_empty(), "node {tundra} dropped {drops:?}");
        assert!(
            s.rx_bytes >= BIG,
            "node {tundra} received {} bytes",
            s.rx_bytes
        );
    }
}

#[test]
fn mixed_v4_underlay() {
    mixed(Underlay::V4, Vxlan::default());
}

#[test]
fn mixed_v6_underlay() {
    mixed(
        Underlay::V6,
        Vxlan {
            vni: 4242,
            port: 4789,
        },
    );
}

/// Pings from node `i`'s pod to node `j`'s: `true` if any answer came.
fn reaches(c: &Cluster, i: u8, j: u8) -> bool {
    let p = ping(
        &c.ns(i),
        &[
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            &pod_v4(i).to_string(),
            &pod_v4(j).to_string(),
        ],
    );
    p.all_ok()
}

#[test]
fn another_vni_is_isolated() {
    let mut c = Cluster::new(3);
    let vni1 = Vxlan::default();
    c.start_tundra_vxlan(1, Underlay::V4, vni1, &[]);
    c.kernel_vxlan(2, Underlay::V4, vni1);
    c.start_tundra_vxlan(3, Underlay::V4, Vxlan { vni: 2, ..vni1 }, &[]);
    c.wait_pods(1, 2);
    c.wait_pods(2, 1);
    let before = c.stats(1);
    for (i, j) in [(3, 1), (3, 2), (1, 3), (2, 3)] {
        assert!(!reaches(&c, i, j), "node {i} reached node {j} across VNIs");
    }
    let s = c.stats(1).since(&before);
    assert!(s.drops.vxlan_vni >= 3, "node 1 counted {:?}", s.drops);
    assert_eq!(s.rx_packets, 0, "nothing from VNI 2 was delivered");
    assert!(c.stats(3).drops.vxlan_vni >= 3);
}

const VNI: u32 = 7;

/// A VXLAN frame from node 2 to node 1 on [`VNI`] carrying an IPv4 UDP packet from node 2's
/// pod to node 1's (port 9, discard), with every header right.
fn frame() -> Vec<u8> {
    let mac = |i| -> Vec<u8> {
        vtep_mac(i)
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let mut f = vec![0x08, 0, 0, 0];
    f.extend_from_slice(&VNI.to_be_bytes()[1..]);
    f.push(0);
    f.extend(mac(1));
    f.extend(mac(2));
    f.extend([0x08, 0x00]);
    let payload = b"tundra vxlan drop test";
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend(pod_v4(2).octets());
    ip.extend(pod_v4(1).octets());
    let sum = !ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>()
        .to_be_bytes()
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>() as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    // UDP without a checksum (0: none, allowed over IPv4).
    f.extend(12345u16.to_be_bytes());
    f.extend(9u16.to_be_bytes());
    f.extend((total - 20).to_be_bytes());
    f.extend([0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn every_drop_reason_is_counted() {
    let mut c = Cluster::new(2);
    let vx = Vxlan {
        vni: VNI,
        ..Vxlan::default()
    };
    c.start_tundra_vxlan(1, Underlay::V4, vx, &[]);
    // Node 2 is a known peer whose frames are written by hand, from any source port.
    let sock = in_netns(&c.ns(2), || UdpSocket::bind((underlay_v4(2), 0))).unwrap();
    let to = SocketAddr::from((underlay_v4(1), vx.port));
    let good = frame();
    let with = |i: usize, v: u8| {
        let mut f = good.clone();
        f[i] = v;
        f
    };
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..20].to_vec(), "vxlan_truncated"),
        ("no I flag", with(0, 0), "vxlan_flags"),
        ("a reserved flag", with(0, 0x0c), "vxlan_flags"),
        ("a reserved byte", with(7, 1), "vxlan_flags"),
        ("another VNI", with(6, 8), "vxlan_vni"),
        ("another MAC", with(13, 0x99), "vxlan_mac"),
        ("ARP", with(21, 0x06), "vxlan_ethertype"),
        ("a VLAN tag", with(20, 0x81), "vxlan_ethertype"),
    ];
    let mut broadcast = good.clone();
    broadcast[8..14].fill(0xff);
    cases.push(("broadcast", broadcast, "vxlan_mac"));
    let mut multicast = good.clone();
    multicast[8..14].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
    cases.push(("multicast", multicast, "vxlan_mac"));

    let ns1 = c.ns(1);
    for (what, f, reason) in cases {
        let before = c.stats(1);
        let tun_before = link_packets(&ns1, TUN).0;
        sock.send_to(&f, to).unwrap();
        let s = c.wait_stats(1, what, STATS_TIMEOUT, |s| {
            s.since(&before).drops.as_map().values().sum::<u64>() > 0
        });
        let d = s.since(&before);
        let counted: Vec<_> = d
            .drops
            .as_map()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(counted, [(reason, 1)], "{what}");
        assert_eq!(d.rx_packets, 0, "{what}");
        assert_eq!(
            link_packets(&ns1, TUN).0,
            tun_before,
            "{what} reached the TUN"
        );
    }
    // The control: the same frame made right is delivered.
    let before = c.stats(1);
    let tun_before = link_packets(&ns1, TUN).0;
    sock.send_to(&good, to).unwrap();
    let s = c.wait_stats(1, "the good frame", STATS_TIMEOUT, |s| {
        s.rx_packets > before.rx_packets
    });
    assert_eq!(s.since(&before).drops, Drops::default());
    wait_until("the TUN counts the packet", STATS_TIMEOUT, || {
        link_packets(&ns1, TUN).0 == tun_before + 1
    });
}
