//! tundra's receive checks against hand-made datagrams, once per I/O mode.
//!
//! Nodes 1 and 2 run tundra; node 3 is a configured peer of both but runs none, so the test
//! itself binds 198.18.0.3:8285 in node 3's namespace and speaks for it; a bare host on the
//! bridge at 198.18.0.9 is nobody's peer. Each bad datagram must be dropped under exactly its
//! reason (the counter goes up by exactly one), must not reach node 1's stack (node 1's TUN
//! receives only what tundra writes; a UDP socket on node 1's pod sees only the legitimate
//! control packets), and legitimate node 1 <-> node 2 traffic keeps working throughout.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use etherparse::PacketBuilder;

per_io_mode!(receive_checks);

/// UDP port of the sink sockets on node 1's pod addresses.
const SINK_PORT: u16 = 9999;
/// How many times each bad datagram is repeated while pings run.
const BURST: u64 = 10;

fn udp_packet(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
    let builder = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families {src} -> {dst}"),
    }
    .udp(4000, SINK_PORT);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).expect("build packet");
    out
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().expect("IPv4 literal"))
}
fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("IPv6 literal"))
}

/// Recomputes an IPv4 header checksum in place (after a field was broken on purpose).
fn fix_ipv4_checksum(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let ihl = ihl.clamp(20, p.len());
    p[10] = 0;
    p[11] = 0;
    let mut sum: u32 = p[..ihl]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Who sends a datagram to node 1's tundra.
#[derive(Clone, Copy, Debug)]
enum Sender {
    /// 198.18.0.3:8285, node 3 as configured.
    Node3,
    /// 198.18.0.3:8286: node 3's address but not its port.
    Node3WrongPort,
    /// 198.18.0.9:8285, a host on the underlay that is nobody's peer.
    Stranger,
}

struct Case {
    what: &'static str,
    from: Sender,
    datagram: Vec<u8>,
    /// The drop counter that must go up by one.
    counter: &'static str,
}

fn bad_cases() -> Vec<Case> {
    let pod1_4 = IpAddr::V4(pod_v4(1));
    let pod1_6 = IpAddr::V6(pod_v6(1));
    let pod3_4 = IpAddr::V4(pod_v4(3));
    let pod3_6 = IpAddr::V6(pod_v6(3));
    let case = |what, from, datagram, counter| Case {
        what,
        from,
        datagram,
        counter,
    };

    let mut long4 = udp_packet(pod3_4, pod1_4, b"bad-length-v4");
    let total = u16::from_be_bytes([long4[2], long4[3]]) + 100;
    long4[2..4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut long4);
    let mut short_ihl = udp_packet(pod3_4, pod1_4, b"bad-ihl-v4");
    short_ihl[0] = 0x44;
    fix_ipv4_checksum(&mut short_ihl);
    let mut long6 = udp_packet(pod3_6, pod1_6, b"bad-length-v6");
    let plen = u16::from_be_bytes([long6[4], long6[5]]) + 100;
    long6[4..6].copy_from_slice(&plen.to_be_bytes());

    vec![
        case(
            "v4, inner source in node 2's subnet",
            Sender::Node3,
            udp_packet(v4("198.19.2.5"), pod1_4, b"spoofed"),
            "spoofed",
        ),
        case(
            "v4, inner source in node 1's own subnet",
            Sender::Node3,
            udp_packet(v4("198.19.1.7"), pod1_4, b"spoofed"),
            "spoofed",
        ),
        case(
            "v4, inner source in nobody's subnet",
            Sender::Node3,
            udp_packet(v4("198.19.77.5"), pod1_4, b"spoofed"),
            "spoofed",
        ),
        case(
            "v6, inner source in node 2's subnet",
            Sender::Node3,
            udp_packet(v6("fd19:0:0:2::5"), pod1_6, b"spoofed"),
            "spoofed",
        ),
        case(
            "v6, inner source in node 1's own subnet",
            Sender::Node3,
            udp_packet(v6("fd19:0:0:1::7"), pod1_6, b"spoofed"),
            "spoofed",
        ),
        case(
            "v6, inner source in nobody's subnet",
            Sender::Node3,
            udp_packet(v6("fd19:0:0:77::5"), pod1_6, b"spoofed"),
            "spoofed",
        ),
        case(
            "garbage (version nibble 13)",
            Sender::Node3,
            b"\xde\xad\xbe\xef".repeat(10),
            "malformed",
        ),
        case("empty datagram", Sender::Node3, Vec::new(), "malformed"),
        case(
            "truncated IPv4 header",
            Sender::Node3,
            udp_packet(pod3_4, pod1_4, b"x")[..12].to_vec(),
            "malformed",
        ),
        case(
            "IPv4 header length 16 bytes",
            Sender::Node3,
            short_ihl,
            "malformed",
        ),
        case(
            "IPv4 total length past the datagram",
            Sender::Node3,
            long4,
            "malformed",
        ),
        case(
            "truncated IPv6 header",
            Sender::Node3,
            udp_packet(pod3_6, pod1_6, b"x")[..30].to_vec(),
            "malformed",
        ),
        case(
            "IPv6 payload length past the datagram",
            Sender::Node3,
            long6,
            "malformed",
        ),
        case(
            "v4, inner destination in nobody's subnet",
            Sender::Node3,
            udp_packet(pod3_4, v4("198.19.77.1"), b"not-local"),
            "not_local",
        ),
        case(
            "v4, inner destination on node 2 (no relaying)",
            Sender::Node3,
            udp_packet(pod3_4, IpAddr::V4(pod_v4(2)), b"not-local"),
            "not_local",
        ),
        case(
            "v6, inner destination in nobody's subnet",
            Sender::Node3,
            udp_packet(pod3_6, v6("fd19:0:0:77::1"), b"not-local"),
            "not_local",
        ),
        case(
            "v6, inner destination on node 2 (no relaying)",
            Sender::Node3,
            udp_packet(pod3_6, IpAddr::V6(pod_v6(2)), b"not-local"),
            "not_local",
        ),
        case(
            "v4, from a host that is nobody's peer",
            Sender::Stranger,
            udp_packet(pod3_4, pod1_4, b"unknown-peer"),
            "unknown_peer",
        ),
        case(
            "v6, from a host that is nobody's peer",
            Sender::Stranger,
            udp_packet(pod3_6, pod1_6, b"unknown-peer"),
            "unknown_peer",
        ),
        case(
            "v4, from node 3's address but another port",
            Sender::Node3WrongPort,
            udp_packet(pod3_4, pod1_4, b"unknown-peer"),
            "unknown_peer",
        ),
    ]
}

struct Injectors {
    node3: UdpSocket,
    node3_wrong_port: UdpSocket,
    stranger: UdpSocket,
    target: SocketAddr,
}

impl Injectors {
    fn send(&self, from: Sender, datagram: &[u8]) {
        let sock = match from {
            Sender::Node3 => &self.node3,
            Sender::Node3WrongPort => &self.node3_wrong_port,
            Sender::Stranger => &self.stranger,
        };
        let sent = sock
            .send_to(datagram, self.target)
            .unwrap_or_else(|e| panic!("inject {from:?}: {e}"));
        assert_eq!(sent, datagram.len());
    }
}

/// Reads datagrams from the sinks until every one of `want` arrived (bounded), then 300 ms
/// more; returns all payloads seen.
fn drain_sinks(sinks: &[&UdpSocket], want: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_until: Option<Instant> = None;
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if quiet_until.is_some_and(|t| now >= t) || (quiet_until.is_none() && now >= deadline) {
            return seen;
        }
        for sink in sinks {
            if let Ok(n) = sink.recv(&mut buf) {
                seen.push(buf[..n].to_vec());
            }
        }
        if quiet_until.is_none() && want.iter().all(|w| seen.iter().any(|s| s == w)) {
            quiet_until = Some(Instant::now() + Duration::from_millis(300));
        }
    }
}

fn receive_checks(io: Io) {
    let mut c = Cluster::new(3);
    let stranger_ns = c.add_host(9);
    c.start_tundra(1, &["--io", io.as_arg()]);
    c.start_tundra(2, &["--io", io.as_arg()]);
    let (n1, n2, n3) = (c.ns(1), c.ns(2), c.ns(3));
    c.wait_pods(1, 2);

    let (sink4, sink6) = in_netns(&n1, || {
        let s4 = UdpSocket::bind((pod_v4(1), SINK_PORT)).expect("bind v4 sink");
        let s6 = UdpSocket::bind((pod_v6(1), SINK_PORT)).expect("bind v6 sink");
        for s in [&s4, &s6] {
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
        }
        (s4, s6)
    });
    let inj = Injectors {
        node3: in_netns(&n3, || {
            UdpSocket::bind((underlay_v4(3), PORT)).expect("bind node 3's tundra port")
        }),
        node3_wrong_port: in_netns(&n3, || {
            UdpSocket::bind((underlay_v4(3), PORT + 1)).expect("bind node 3, other port")
        }),
        stranger: in_netns(&stranger_ns, || {
            UdpSocket::bind((underlay_v4(9), PORT)).expect("bind stranger")
        }),
        target: (underlay_v4(1), PORT).into(),
    };
    let legit4 = udp_packet(IpAddr::V4(pod_v4(3)), IpAddr::V4(pod_v4(1)), b"legit-v4");
    let legit6 = udp_packet(IpAddr::V6(pod_v6(3)), IpAddr::V6(pod_v6(1)), b"legit-v6");
    let cases = bad_cases();

    // Phase 1, quiet: one datagram at a time, each counted under exactly its reason.
    let start = c.stats(1);
    let (tun_rx_before, _) = link_packets(&n1, TUN);
    let mut failures = Vec::new();
    for case in &cases {
        let before = c.stats(1);
        inj.send(case.from, &case.datagram);
        let want = before.drops.as_map()[case.counter] + 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = c.stats(1);
        while after.drops.as_map()[case.counter] < want && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            after = c.stats(1);
        }
        // Let a wrong extra count show up, too.
        thread::sleep(Duration::from_millis(100));
        let after = c.stats(1);
        let d = after.since(&before).drops;
        let mut expected = Drops::default().as_map();
        expected.insert(case.counter, 1);
        let checks = ["unknown_peer", "malformed", "spoofed", "not_local"];
        let got: Vec<_> = d
            .as_map()
            .into_iter()
            .filter(|(k, _)| checks.contains(k))
            .collect();
        let exp: Vec<_> = expected
            .into_iter()
            .filter(|(k, _)| checks.contains(k))
            .collect();
        if got != exp {
            failures.push(format!(
                "{} ({:?}, {} bytes): expected {} +1, receive-check counters moved by {got:?}",
                case.what,
                case.from,
                case.datagram.len(),
                case.counter
            ));
        }
    }
    // The legitimate control datagrams, from node 3 as configured, do arrive.
    inj.send(Sender::Node3, &legit4);
    inj.send(Sender::Node3, &legit6);
    let seen = drain_sinks(&[&sink4, &sink6], &[b"legit-v4", b"legit-v6"]);
    let after = c.stats(1);
    let (tun_rx_after, _) = link_packets(&n1, TUN);
    let phase1 = after.since(&start);
    assert!(
        failures.is_empty(),
        "--io {}: receive checks miscounted:\n{}",
        io.as_arg(),
        failures.join("\n")
    );
    assert!(
        seen.iter().any(|p| p == b"legit-v4") && seen.iter().any(|p| p == b"legit-v6"),
        "--io {}: the legitimate datagrams from node 3 never reached node 1's pod; got {:?}; stats delta {phase1:?}",
        io.as_arg(),
        seen.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>()
    );
    let leaked: Vec<_> = seen
        .iter()
        .filter(|p| !p.starts_with(b"legit"))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(
        leaked.is_empty(),
        "--io {}: injected datagrams reached node 1's pod: {leaked:?}",
        io.as_arg()
    );
    // tundra writes into node 1's TUN only the two control datagrams and its own ICMP errors.
    let tun_rx = tun_rx_after - tun_rx_before;
    assert_eq!(
        tun_rx,
        2 + phase1.icmp_sent,
        "--io {}: node 1's TUN received {tun_rx} packets while 2 legitimate ones (+{} ICMP errors of tundra's) were sent: injected packets reached the stack",
        io.as_arg(),
        phase1.icmp_sent
    );

    // Phase 2: bursts of every bad datagram while pods on nodes 1 and 2 ping each other.
    let before = c.stats(1);
    let pingers = [
        (n1.clone(), pod_v4(1).to_string(), pod_v4(2).to_string()),
        (n2.clone(), pod_v6(2).to_string(), pod_v6(1).to_string()),
    ]
    .map(|(ns, src, dst)| {
        thread::spawn(move || ping(&ns, &["-c", "20", "-i", "0.2", "-W", "2", "-I", &src, &dst]))
    });
    for _ in 0..BURST {
        for case in &cases {
            inj.send(case.from, &case.datagram);
            thread::sleep(Duration::from_millis(2));
        }
        thread::sleep(Duration::from_millis(100));
    }
    for p in pingers {
        let p = p.join().expect("ping thread");
        assert!(
            p.all_ok(),
            "--io {}: legitimate ping failed during the injection:\n{}",
            io.as_arg(),
            p.out
        );
    }
    let mut expected = before.drops.as_map();
    for case in &cases {
        *expected.get_mut(case.counter).expect("known counter") += BURST;
    }
    let checks = ["unknown_peer", "malformed", "spoofed", "not_local"];
    let done = |s: &Stats| {
        let m = s.drops.as_map();
        checks.iter().all(|k| m[k] >= expected[k])
    };
    c.wait_stats(1, "the bursts to be counted", Duration::from_secs(20), done);
    thread::sleep(Duration::from_millis(200));
    let after = c.stats(1).drops.as_map();
    for k in checks {
        assert_eq!(
            after[k],
            expected[k],
            "--io {}: counter {k} after {BURST} bursts",
            io.as_arg()
        );
    }
    let leaked = drain_sinks(&[&sink4, &sink6], &[]);
    assert!(
        leaked.is_empty(),
        "--io {}: injected datagrams reached node 1's pod: {leaked:?}",
        io.as_arg()
    );

    // Phase 3: and after it, both ways, both families.
    for (ns, src, dst) in [
        (&n1, pod_v4(1).to_string(), pod_v4(2).to_string()),
        (&n2, pod_v4(2).to_string(), pod_v4(1).to_string()),
        (&n1, pod_v6(1).to_string(), pod_v6(2).to_string()),
        (&n2, pod_v6(2).to_string(), pod_v6(1).to_string()),
    ] {
        let p = ping(ns, &["-c", "3", "-W", "2", "-I", &src, &dst]);
        assert!(
            p.all_ok(),
            "--io {}: ping after the injection failed:\n{}",
            io.as_arg(),
            p.out
        );
    }
    c.shutdown();
}
