//! Three nodes through a bridge, tundra on each, once per I/O mode: pods reach each other over
//! IPv4 and IPv6, both over an IPv4 and an IPv6 underlay, and a 256 MiB TCP stream between
//! two pods arrives byte-identical. Needs root (runs for real in CI).

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const NODES: u8 = 3;

per_io_mode!(
    ping_all_pairs,
    ping_all_pairs_v6_underlay,
    stats_balance,
    tcp_256mib_v4,
    tcp_256mib_v6
);

/// Every ordered pair of pods pings, v4 and v6. A first one-packet ping waits for
/// convergence (bounded); then `ping -c 3` must get all three answers.
fn ping_all_pairs(io: Io) {
    ping_all_pairs_over(io, Underlay::V4);
}

fn ping_all_pairs_v6_underlay(io: Io) {
    ping_all_pairs_over(io, Underlay::V6);
}

fn ping_all_pairs_over(io: Io, underlay: Underlay) {
    let mut c = Cluster::new(NODES);
    for i in 1..=NODES {
        c.start_tundra_with(i, underlay, &["--io", io.as_arg()]);
    }
    let mut jobs = Vec::new();
    for i in 1..=NODES {
        for j in (1..=NODES).filter(|&j| j != i) {
            for (src, dst) in [
                (pod_v4(i).to_string(), pod_v4(j).to_string()),
                (pod_v6(i).to_string(), pod_v6(j).to_string()),
            ] {
                let ns = c.ns(i);
                jobs.push(thread::spawn(move || {
                    wait_ping(&ns, &src, &dst, CONVERGE_TIMEOUT);
                    let p = ping(&ns, &["-c", "3", "-W", "2", "-I", &src, &dst]);
                    (src, dst, p)
                }));
            }
        }
    }
    let mut failures = Vec::new();
    for job in jobs {
        match job.join() {
            Ok((src, dst, p)) if !p.all_ok() => {
                failures.push(format!("{src} -> {dst}:\n{}", p.out))
            }
            Ok(_) => {}
            Err(_) => failures.push("a pair never converged (see the panic above)".to_owned()),
        }
    }
    assert!(
        failures.is_empty(),
        "pings failed over a {underlay:?} underlay, --io {}:\n{}",
        io.as_arg(),
        failures.join("\n")
    );

    for i in 1..=NODES {
        let s = c.stats(i);
        // 2 peers x 2 families x (>= 1 + 3) echo requests out, as many replies in.
        assert!(
            s.tx_packets >= 16 && s.rx_packets >= 16,
            "node {i} counted too little traffic: {s:?}"
        );
        assert_eq!(
            s.drops.receive_checks(),
            0,
            "node {i}: legitimate traffic hit a receive check: {s:?}"
        );
    }
    c.shutdown();
}

/// On a lossless underlay with no stray traffic, every datagram one tundra sends another
/// receives: summed over the nodes, tx equals rx (packets and bytes), both in a SIGUSR1
/// snapshot once traffic has stopped and in the lines printed at shutdown.
fn stats_balance(io: Io) {
    let mut c = Cluster::new(NODES);
    for i in 1..=NODES {
        c.start_tundra(i, &["--io", io.as_arg()]);
    }
    for i in 1..=NODES {
        for j in (1..=NODES).filter(|&j| j != i) {
            for (src, dst) in [
                (pod_v4(i).to_string(), pod_v4(j).to_string()),
                (pod_v6(i).to_string(), pod_v6(j).to_string()),
            ] {
                wait_ping(&c.ns(i), &src, &dst, CONVERGE_TIMEOUT);
                let p = ping(
                    &c.ns(i),
                    &["-c", "5", "-i", "0.05", "-W", "2", "-I", &src, &dst],
                );
                assert!(
                    p.all_ok(),
                    "--io {}: {src} -> {dst}:\n{}",
                    io.as_arg(),
                    p.out
                );
            }
        }
    }
    let sum = |stats: &[Stats]| {
        stats.iter().fold((0, 0, 0, 0), |(tp, tb, rp, rb), s| {
            (
                tp + s.tx_packets,
                tb + s.tx_bytes,
                rp + s.rx_packets,
                rb + s.rx_bytes,
            )
        })
    };
    // Counters are folded per batch: give them a moment, bounded, to catch up.
    let deadline = Instant::now() + Duration::from_secs(5);
    let snapshot = loop {
        let stats: Vec<Stats> = (1..=NODES).map(|i| c.stats(i)).collect();
        let (tp, tb, rp, rb) = sum(&stats);
        if (tp == rp && tb == rb) || Instant::now() >= deadline {
            break stats;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let (tp, tb, rp, rb) = sum(&snapshot);
    // Each node: 2 peers x 2 families x >= 6 requests, as many replies.
    assert!(
        tp.max(rp) >= 3 * 2 * 2 * 6 * 2,
        "--io {}: too few packets counted: {snapshot:?}",
        io.as_arg()
    );
    assert_eq!(
        (tp, tb),
        (rp, rb),
        "--io {}: idle cluster, SIGUSR1 stats: (tx packets, tx bytes) summed over the nodes differ from (rx packets, rx bytes): {snapshot:#?}",
        io.as_arg()
    );
    for (i, s) in (1..=NODES).zip(&snapshot) {
        assert_eq!(s.drops.receive_checks(), 0, "node {i}: {s:?}");
    }
    let finals: Vec<Stats> = c
        .shutdown()
        .into_iter()
        .map(|e| e.final_stats.expect("shutdown() checked it"))
        .collect();
    let (tp, tb, rp, rb) = sum(&finals);
    assert_eq!(
        (tp, tb),
        (rp, rb),
        "--io {}: stats printed at shutdown: (tx packets, tx bytes) summed over the nodes differ from (rx packets, rx bytes): {finals:#?}",
        io.as_arg()
    );
}

// ---------------------------------------------------------------------------------------------
// 256 MiB over TCP.

const TRANSFER_BYTES: u64 = 256 << 20;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
const TCP_PORT: u16 = 5201;

fn tcp_256mib_v4(io: Io) {
    tcp_transfer(io, false);
}

fn tcp_256mib_v6(io: Io) {
    tcp_transfer(io, true);
}

/// A sender in node 1 streams 256 MiB from its pod address to a receiver on node 2's pod
/// address; the receiver counts, hashes and compares against the expected stream
/// ([`common::tcp_transfer`]).
fn tcp_transfer(io: Io, v6: bool) {
    let _heavy = heavy_lock();
    let mut c = Cluster::new(NODES);
    for i in 1..=NODES {
        c.start_tundra(i, &["--io", io.as_arg()]);
    }
    let (src, dst): (SocketAddr, SocketAddr) = if v6 {
        ((pod_v6(1), 0).into(), (pod_v6(2), TCP_PORT).into())
    } else {
        ((pod_v4(1), 0).into(), (pod_v4(2), TCP_PORT).into())
    };
    wait_ping(
        &c.ns(1),
        &src.ip().to_string(),
        &dst.ip().to_string(),
        CONVERGE_TIMEOUT,
    );
    let before = [c.stats(1), c.stats(2)];

    let t = common::tcp_transfer(
        &c.ns(1),
        src,
        &c.ns(2),
        dst,
        TRANSFER_BYTES,
        TRANSFER_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("--io {}: {e}", io.as_arg()));
    eprintln!(
        "[{}] --io {} {}: {} bytes in {:.1?} ({:.0} Mbit/s, for information only)",
        c.prefix(),
        io.as_arg(),
        if v6 { "IPv6" } else { "IPv4" },
        t.bytes,
        t.elapsed,
        t.mbit_s()
    );

    let (d1, d2) = (c.stats(1).since(&before[0]), c.stats(2).since(&before[1]));
    assert!(
        d1.tx_bytes >= TRANSFER_BYTES,
        "node 1 tunneled {} bytes out, less than the stream",
        d1.tx_bytes
    );
    assert!(
        d2.rx_bytes >= TRANSFER_BYTES,
        "node 2 tunneled {} bytes in, less than the stream",
        d2.rx_bytes
    );
    for (i, d) in [(1, d1), (2, d2)] {
        assert_eq!(
            d.drops.receive_checks(),
            0,
            "node {i}: the stream hit a receive check: {d:?}"
        );
    }
    c.shutdown();
}

/// The transfers' receiving check itself: a stream fed in uneven pieces passes and hashes as
/// the sender does; one changed byte is reported at its offset.
#[test]
fn stream_check_finds_the_first_changed_byte() {
    use std::hash::Hasher as _;

    let mut sent = vec![0u8; 200_000];
    Stream::new().fill(&mut sent);
    let mut sender_hash = std::collections::hash_map::DefaultHasher::new();
    sender_hash.write(&sent);

    let mut check = StreamCheck::new();
    for piece in sent.chunks(65_521) {
        check.check(piece).expect("the same stream");
    }
    assert_eq!(check.bytes, sent.len() as u64);
    assert_eq!(check.hash(), sender_hash.finish());

    let mut changed = sent.clone();
    changed[123_457] ^= 1;
    let mut check = StreamCheck::new();
    let err = changed
        .chunks(1000)
        .try_for_each(|piece| check.check(piece))
        .expect_err("a changed byte");
    assert!(err.contains("offset 123457"), "{err}");
}
