//! tundra as a router: the ICMP errors a sender gets back, once per I/O mode. Two nodes on a
//! veth pair (a 1500-byte underlay); `ping` (iputils) on node 1 is the sender and its output
//! is what is checked, along with tundra's drop counters.
//!
//! What iputils ping prints for each error (checked against a kernel router on this machine):
//! - `From 198.19.1.0 icmp_seq=1 Destination Net Unreachable`
//! - `From fd19:0:0:1:: icmp_seq=1 Destination unreachable: No route`
//! - `From 198.19.1.0 icmp_seq=1 Time to live exceeded`
//! - `From fd19:0:0:1:: icmp_seq=1 Time exceeded: Hop limit`
//! - `From 198.19.1.0 icmp_seq=1 Frag needed and DF set (mtu = 1472)`
//! - `From fd19:0:0:1:: icmp_seq=1 Packet too big: mtu=1472`
//! - once the kernel has learnt a path MTU: `ping: local error: message too long, mtu=1472`
//!   (IPv6: `mtu: 1472`).

mod common;

use std::time::Duration;

use common::*;

per_io_mode!(net_unreachable, time_exceeded, too_big, default_mtu);

/// Two nodes with tundra; returns once pods reach each other over both families.
fn two_nodes(io: Io, extra: &[&str]) -> Cluster {
    let mut c = Cluster::new(2);
    let mut args = vec!["--io", io.as_arg()];
    args.extend_from_slice(extra);
    c.start_tundra(1, &args);
    c.start_tundra(2, &args);
    c.wait_pods(1, 2);
    c
}

/// Waits until node `i`'s counter reaches `before + delta`, then checks it did not go further.
fn assert_counter(
    c: &mut Cluster,
    i: u8,
    before: &Stats,
    counter: &str,
    delta: u64,
    ctx: &str,
) -> Stats {
    let want = before.drops.as_map()[counter] + delta;
    let what = format!("{counter} to reach {want}");
    let s = c.wait_stats(i, &what, Duration::from_secs(10), |s| {
        s.drops.as_map()[counter] >= want
    });
    assert_eq!(
        s.drops.as_map()[counter],
        want,
        "{ctx}: counter {counter} went up by more than {delta}: {s:?}"
    );
    s
}

/// A packet the kernel routes into the TUN but tundra has no peer for: ICMP net unreachable /
/// ICMPv6 no route, from the node's own overlay address.
fn net_unreachable(io: Io) {
    let mut c = two_nodes(io, &[]);
    let n1 = c.ns(1);
    ip(&["-n", &n1, "route", "add", "198.19.0.0/16", "dev", TUN]);
    ip(&["-n", &n1, "-6", "route", "add", "fd19::/16", "dev", TUN]);

    for (src, dst, from, msg) in [
        (
            pod_v4(1).to_string(),
            "198.19.99.1",
            node_v4(1).to_string(),
            "Destination Net Unreachable",
        ),
        (
            pod_v6(1).to_string(),
            "fd19:0:0:99::1",
            node_v6(1).to_string(),
            "Destination unreachable: No route",
        ),
    ] {
        let before = c.stats(1);
        let p = ping(&n1, &["-c", "3", "-W", "2", "-I", &src, dst]);
        let ctx = format!("--io {}: ping {dst}", io.as_arg());
        let expected = format!("From {from} icmp_seq=");
        let errors: Vec<String> = p.lines_with(msg);
        assert!(
            p.received == 0,
            "{ctx}: got an echo reply from nowhere:\n{}",
            p.out
        );
        assert!(
            !errors.is_empty(),
            "{ctx}: expected `{expected}.. {msg}`, got:\n{}",
            p.out
        );
        assert!(
            errors.iter().all(|l| l.starts_with(&expected)),
            "{ctx}: the error must come from {from}:\n{}",
            p.out
        );
        let after = assert_counter(&mut c, 1, &before, "no_route", 3, &ctx);
        let sent = after.since(&before).icmp_sent;
        assert!(
            sent >= errors.len() as u64,
            "{ctx}: ping saw {} errors but icmp_sent rose by {sent}; stats {after:?}\n{}",
            errors.len(),
            p.out
        );
    }
    // The covering route does not hide the more specific peer routes.
    let p = ping(
        &n1,
        &[
            "-c",
            "2",
            "-W",
            "2",
            "-I",
            &pod_v4(1).to_string(),
            &pod_v4(2).to_string(),
        ],
    );
    assert!(
        p.all_ok(),
        "--io {}: pod-to-pod ping with the covering route in place:\n{}",
        io.as_arg(),
        p.out
    );
    c.shutdown();
}

/// TTL / hop limit 1: tundra, a router, answers with time exceeded.
fn time_exceeded(io: Io) {
    let mut c = two_nodes(io, &[]);
    let n1 = c.ns(1);
    for (src, dst, v6, msg) in [
        (
            pod_v4(1).to_string(),
            pod_v4(2).to_string(),
            false,
            "Time to live exceeded",
        ),
        (
            pod_v6(1).to_string(),
            pod_v6(2).to_string(),
            true,
            "Time exceeded: Hop limit",
        ),
    ] {
        let before = c.stats(1);
        let mut args = vec!["-c", "2", "-W", "2", "-t", "1", "-I", &src, &dst];
        if v6 {
            args.insert(0, "-6");
        }
        let p = ping(&n1, &args);
        let ctx = format!("--io {}: ping -t 1 {dst}", io.as_arg());
        assert!(
            p.received == 0,
            "{ctx}: a TTL-1 packet crossed the tunnel:\n{}",
            p.out
        );
        assert!(
            !p.lines_with(msg).is_empty(),
            "{ctx}: expected `{msg}`, got:\n{}",
            p.out
        );
        assert_counter(&mut c, 1, &before, "ttl_exceeded", 2, &ctx);
        // And TTL 2 is enough (tundra decrements once, the receiving stack takes it).
        let mut args = vec!["-c", "1", "-W", "2", "-t", "2", "-I", &src, &dst];
        if v6 {
            args.insert(0, "-6");
        }
        let p = ping(&n1, &args);
        assert!(
            p.all_ok(),
            "--io {}: ping -t 2 {dst} should get through:\n{}",
            io.as_arg(),
            p.out
        );
    }
    c.shutdown();
}

/// `--mtu 1500` on a 1500-byte underlay: the TUN takes 1500-byte packets, the tunnel carries
/// at most 1472, and tundra answers bigger DF packets with frag needed / packet too big.
fn too_big(io: Io) {
    let mut c = two_nodes(io, &["--mtu", "1500"]);
    let n1 = c.ns(1);
    assert_eq!(
        link_mtu(&n1, TUN),
        1500,
        "--mtu 1500 must set the TUN's MTU"
    );
    for (src, dst, v6, size, msg, learnt) in [
        (
            pod_v4(1).to_string(),
            pod_v4(2).to_string(),
            false,
            1472,
            "Frag needed and DF set (mtu = 1472)",
            "mtu=1472",
        ),
        (
            pod_v6(1).to_string(),
            pod_v6(2).to_string(),
            true,
            1452,
            "Packet too big: mtu=1472",
            "mtu: 1472",
        ),
    ] {
        let ctx = format!("--io {}: ping -M do -s {size} {dst}", io.as_arg());
        let size_arg = size.to_string();
        let mut args = vec![
            "-c", "1", "-W", "3", "-M", "do", "-s", &size_arg, "-I", &src, &dst,
        ];
        if v6 {
            args.insert(0, "-6");
        }
        let before = c.stats(1);
        let p = ping(&n1, &args);
        assert!(
            p.received == 0,
            "{ctx}: a 1500-byte packet crossed a 1472-byte tunnel:\n{}",
            p.out
        );
        assert!(
            !p.lines_with(msg).is_empty(),
            "{ctx}: expected `{msg}`, got:\n{}",
            p.out
        );
        assert_counter(&mut c, 1, &before, "too_big", 1, &ctx);
        // The kernel took the error in: the next such ping fails locally, at the learnt MTU.
        let p = ping(&n1, &args);
        assert!(
            !p.lines_with(learnt).is_empty(),
            "{ctx}: second ping should fail locally with `{learnt}`, got:\n{}",
            p.out
        );
        // And exactly 1472 bytes (28 / 48 bytes of headers) get through.
        let fits = (size - 28).to_string();
        let mut args = vec![
            "-c", "2", "-W", "2", "-M", "do", "-s", &fits, "-I", &src, &dst,
        ];
        if v6 {
            args.insert(0, "-6");
        }
        let p = ping(&n1, &args);
        assert!(
            p.all_ok(),
            "--io {}: a 1472-byte ping to {dst} should get through:\n{}",
            io.as_arg(),
            p.out
        );
    }
    c.shutdown();
}

/// Without `--mtu`, the TUN's MTU is the underlay's (1500) less 28, and a packet of exactly
/// that size crosses.
fn default_mtu(io: Io) {
    let c = two_nodes(io, &[]);
    let n1 = c.ns(1);
    assert_eq!(
        link_mtu(&n1, TUN),
        1472,
        "default TUN MTU on a 1500-byte IPv4 underlay"
    );
    for (src, dst, v6, fits) in [
        (pod_v4(1).to_string(), pod_v4(2).to_string(), false, "1444"),
        (pod_v6(1).to_string(), pod_v6(2).to_string(), true, "1424"),
    ] {
        let mut args = vec![
            "-c", "2", "-W", "2", "-M", "do", "-s", fits, "-I", &src, &dst,
        ];
        if v6 {
            args.insert(0, "-6");
        }
        let p = ping(&n1, &args);
        assert!(
            p.all_ok(),
            "--io {}: a 1472-byte ping to {dst} should get through:\n{}",
            io.as_arg(),
            p.out
        );
    }
    c.shutdown();
}
