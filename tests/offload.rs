//! TUN/UDP offloads (`--offload`), for real, once per I/O engine. Needs root.
//!
//! - **Transfers** ([`transfers_v4_underlay`], [`transfers_v6_underlay`]): three nodes through
//!   a bridge, nodes 1 and 3 with offloads (the default, `auto`), node 2 with `--offload off`.
//!   Six 256 MiB TCP streams per underlay family, compared byte for byte: offload to offload,
//!   offload to off and off to offload, each with IPv4 and with IPv6 inner (the first
//!   direction reversed for IPv6). `stats --json` must show the offloads granted on nodes 1
//!   and 3 and none on node 2, and the TUN counters must show super-packets where offloads are
//!   on (the stream would arrive intact without them: TCP resends). Afterwards no node
//!   namespace may have counted a checksum error (`/proc/net/snmp`, `netstat`, `snmp6`).
//! - **Unsafe to merge** ([`unsafe_to_merge_arrives_intact`]): crafted TCP segments that must
//!   not, or may only partly, be merged into one super-packet: IPv4 options (IPv6: a
//!   destination options header), an ECN CE mark and a CWR flag among plain segments, segments
//!   out of order, two interleaved flows, PSH and FIN; plus a plain run that must be merged
//!   (the control that proves the merging path is taken at all). IPv4 and IPv6 inner.
//!   What node 2 writes into its TUN is captured there with an `AF_PACKET` socket: every
//!   segment must arrive exactly once, a segment that must stand alone as sent (every byte but
//!   the TCP checksum, which a lone packet may carry as partial), and a merged packet must hold
//!   a run that was safe to merge, with the first segment's header and the payloads in order.
//!   The receiver's kernel checks the checksums (no checksum error may be counted).
//!   The segments reach node 2 in two ways:
//!   1. the wire, by hand: before tundra runs on node 1, the test binds node 1's tundra
//!      address (198.18.0.1:8285) and sends each case as one UDP GSO send, one inner packet
//!      per datagram (the wire format). Node 2's socket (UDP_GRO) then receives each case in
//!      one receive, so what tundra may merge is decided by the case alone, not by timing:
//!      this is the deterministic part, and the only one that asserts a merge happens;
//!   2. the real path: tundra then runs on node 1 too, and the same cases, written with a raw
//!      socket (`IP_HDRINCL`, IPv6 `IPPROTO_RAW`) in node 1, go through its TUN and egress.
//!      How they are batched depends on timing, so only correctness is asserted there.
//!
//!   Captured rather than sent through iperf3 and `netem` reordering: a TCP stream survives
//!   a bad merge (it resends), the capture does not; and it needs no `sch_netem` module.
//! - **GSO refused** ([`gso_fallback_tx_checksum_off`], [`gso_refused_path_mtu`]): two
//!   offload nodes; once tundra runs, node 1's UDP GSO sends are made to be refused, then a
//!   64 MiB stream from node 1 to node 2 must arrive intact, and where the kernel refused a
//!   send node 1 must have fallen back (`gso_fallbacks` >= 1) and logged the warning once per
//!   fallback. Two ways (see [`Refusal`]): `ethtool -K eth0 tx off` (needs `ethtool`), which
//!   only older kernels refuse (EIO; since Linux 6.11 and in stable kernels the segments are
//!   checksummed in software, so there the test checks that nothing was refused instead); and
//!   a route to node 2 with a path MTU below the segment size, which every kernel refuses
//!   (EINVAL, now EMSGSIZE): the one that exercises the fallback on a current kernel.
//!
//! - **Small datagrams coalesced** ([`udp_datagrams_are_coalesced`]): bursts of equal-size
//!   UDP datagrams from node 1's pod to node 2's, IPv4 then IPv6 inner, must arrive complete,
//!   in order and intact; node 1 must have sent some of them as one UDP GSO send (seen on node
//!   2's underlay as one packet longer than a datagram), and node 2 must have written some as
//!   one UDP super-packet (`GSO_UDP_L4`: its TUN counted fewer packets than tundra received).
//!
//! Address plan as in `shared/TESTBED.md`; namespaces are cleaned up by the harness's guard.

mod common;

use std::collections::BTreeMap;
use std::io::{IoSlice, Read};
use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use etherparse::{IpEcn, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel, Ipv6Header, TcpHeader};
use serde_json::Value;
use socket2::{Domain, MsgHdr, Protocol, SockAddr, Socket, Type};

use common::*;

per_io_mode!(
    transfers_v4_underlay,
    transfers_v6_underlay,
    unsafe_to_merge_arrives_intact,
    gso_fallback_tx_checksum_off,
    gso_refused_path_mtu,
    udp_datagrams_are_coalesced,
);

// ---------------------------------------------------------------------------------------------
// 256 MiB transfers between offload and non-offload nodes.

const BIG: u64 = 256 << 20;
/// Generous: a debug build on a loaded 2-core machine; one datagram per packet on node 2.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(240);
const TCP_PORT: u16 = 5201;
/// The node that runs with `--offload off`; the others run with the default (`auto`).
const OFF_NODE: u8 = 2;

/// Every pairing, both inner families: offload to offload, offload to off, off to offload.
const PLAN: [(u8, u8, bool); 6] = [
    (1, 3, false),
    (1, 2, false),
    (2, 3, false),
    (3, 1, true),
    (3, 2, true),
    (2, 1, true),
];

fn transfers_v4_underlay(io: Io) {
    transfers(io, Underlay::V4, &PLAN);
}

fn transfers_v6_underlay(io: Io) {
    transfers(io, Underlay::V6, &PLAN);
}

fn transfers(io: Io, underlay: Underlay, plan: &[(u8, u8, bool)]) {
    let _heavy = heavy_lock();
    let mut c = Cluster::new(3);
    for i in 1..=3 {
        let mut extra = vec!["--io", io.as_arg()];
        if i == OFF_NODE {
            extra.extend(["--offload", "off"]);
        }
        c.start_tundra_with(i, underlay, &extra);
    }
    for i in 1..=3 {
        let offload = &c.stats_json(i)["offload"];
        if i == OFF_NODE {
            for key in ["tun_tso", "tun_uso", "udp_gso", "udp_gro"] {
                assert_eq!(
                    offload[key],
                    Value::Bool(false),
                    "node {i} runs with --offload off, yet stats --json says: {offload}"
                );
            }
        } else {
            // USO needs Linux 6.2; TSO and UDP GSO/GRO are what these streams need.
            for key in ["tun_tso", "udp_gso", "udp_gro"] {
                assert_eq!(
                    offload[key],
                    Value::Bool(true),
                    "node {i} (--offload auto) was not granted {key}: {offload}"
                );
            }
        }
    }
    for (k, &(from, to, v6)) in plan.iter().enumerate() {
        transfer_checked(&mut c, io, underlay, from, to, v6, TCP_PORT + k as u16);
    }
    for i in 1..=3 {
        assert_no_csum_errors(&c.ns(i), &format!("node {i} after the transfers"));
    }
    c.shutdown();
}

/// One 256 MiB stream from node `from`'s pod to node `to`'s, with what the counters must say.
fn transfer_checked(
    c: &mut Cluster,
    io: Io,
    underlay: Underlay,
    from: u8,
    to: u8,
    v6: bool,
    port: u16,
) {
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        (pod_v6(from).into(), pod_v6(to).into())
    } else {
        (pod_v4(from).into(), pod_v4(to).into())
    };
    let offload = |i: u8| if i == OFF_NODE { "off" } else { "offload" };
    let what = format!(
        "--io {}, {underlay:?} underlay, {} inner, node {from} ({}) -> node {to} ({})",
        io.as_arg(),
        if v6 { "IPv6" } else { "IPv4" },
        offload(from),
        offload(to)
    );
    wait_ping(
        &c.ns(from),
        &src.to_string(),
        &dst.to_string(),
        CONVERGE_TIMEOUT,
    );
    let before = (c.stats(from), c.stats(to));
    let tun_before = (link_packets(&c.ns(from), TUN), link_packets(&c.ns(to), TUN));

    let t = tcp_transfer(
        &c.ns(from),
        (src, 0).into(),
        &c.ns(to),
        (dst, port).into(),
        BIG,
        TRANSFER_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!(
        "[{}] {what}: {} bytes in {:.1?} ({:.0} Mbit/s, for information only)",
        c.prefix(),
        t.bytes,
        t.elapsed,
        t.mbit_s()
    );

    let (d_from, d_to) = (c.stats(from).since(&before.0), c.stats(to).since(&before.1));
    // The TUN's counters: tx is what the kernel handed tundra (TSO super-packets count one),
    // rx what tundra wrote (a merged super-packet counts one).
    let tun_tx = link_packets(&c.ns(from), TUN).1 - tun_before.0 .1;
    let tun_rx = link_packets(&c.ns(to), TUN).0 - tun_before.1 .0;
    assert!(
        d_from.tx_bytes >= BIG && d_to.rx_bytes >= BIG,
        "{what}: tunneled {} bytes out and {} in, less than the stream",
        d_from.tx_bytes,
        d_to.rx_bytes
    );
    for (i, d) in [(from, d_from), (to, d_to)] {
        assert_eq!(
            (d.drops.receive_checks(), d.drops.tun_write_error),
            (0, 0),
            "{what}: node {i} dropped packets of the stream (receive checks, TUN writes): {d:?}"
        );
    }
    eprintln!(
        "[{}] {what}: sender read {tun_tx} TUN packets for {} datagrams; receiver wrote {tun_rx} TUN packets for {} datagrams",
        c.prefix(),
        d_from.tx_packets,
        d_to.rx_packets
    );
    if from != OFF_NODE {
        assert!(
            tun_tx * 2 <= d_from.tx_packets,
            "{what}: the sender read {tun_tx} packets from its TUN for {} datagrams: no TSO super-packets?",
            d_from.tx_packets
        );
    }
    if from != OFF_NODE && to != OFF_NODE {
        assert!(
            tun_rx * 2 <= d_to.rx_packets,
            "{what}: the receiver wrote {tun_rx} packets to its TUN for {} datagrams: no merged super-packets?",
            d_to.rx_packets
        );
    }
    if from == OFF_NODE {
        // One datagram per segment, each its own receive (a veth does no GRO): only merging
        // across the receives of a batch writes fewer packets than arrived.
        assert!(
            tun_rx < d_to.rx_packets,
            "{what}: the receiver wrote {tun_rx} packets to its TUN for {} datagrams: nothing merged across receives?",
            d_to.rx_packets
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Checksum error counters of a namespace.

/// Every `*CsumErrors` counter in `ns`: `/proc/net/snmp` and `/proc/net/netstat` as
/// `Section.Field` (header and value lines come in pairs), `/proc/net/snmp6` by its own name.
fn csum_counters(ns: &str) -> BTreeMap<String, u64> {
    let read = |path: &str| {
        let out = ns_cmd(ns, "cat", &[path]);
        assert!(out.success(), "cannot read {path} in {ns}:\n{out}");
        out.stdout
    };
    let mut counters = BTreeMap::new();
    for path in ["/proc/net/snmp", "/proc/net/netstat"] {
        let text = read(path);
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else {
                panic!("{path} in {ns}: odd number of lines:\n{text}");
            };
            let (Some((section, names)), Some((section2, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                panic!("{path} in {ns}: not `Section: ...` lines:\n{names}\n{values}");
            };
            assert_eq!(section, section2, "{path} in {ns}: unpaired lines");
            let (names, values): (Vec<&str>, Vec<&str>) = (
                names.split_whitespace().collect(),
                values.split_whitespace().collect(),
            );
            assert_eq!(names.len(), values.len(), "{path} in {ns}: {section}");
            for (name, value) in names.iter().zip(&values) {
                if name.ends_with("CsumErrors") {
                    let v = value
                        .parse()
                        .unwrap_or_else(|e| panic!("{path}: {section} {name} = {value}: {e}"));
                    counters.insert(format!("{section}.{name}"), v);
                }
            }
        }
    }
    for line in read("/proc/net/snmp6").lines() {
        if let Some((name, value)) = line.split_once(char::is_whitespace) {
            if name.ends_with("CsumErrors") {
                let v = value
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("/proc/net/snmp6: {name} = {value}: {e}"));
                counters.insert(name.to_owned(), v);
            }
        }
    }
    counters
}

/// Panics unless every checksum error counter of `ns` is 0 (and the main ones exist at all).
fn assert_no_csum_errors(ns: &str, what: &str) {
    let counters = csum_counters(ns);
    for key in [
        "Icmp.InCsumErrors",
        "Tcp.InCsumErrors",
        "Udp.InCsumErrors",
        "IpExt.InCsumErrors",
        "Icmp6InCsumErrors",
        "Udp6InCsumErrors",
    ] {
        assert!(
            counters.contains_key(key),
            "{what}: no {key} counter in {ns}: {counters:?}"
        );
    }
    let errors: BTreeMap<&String, &u64> = counters.iter().filter(|(_, &v)| v > 0).collect();
    assert!(
        errors.is_empty(),
        "{what}: the kernel counted checksum errors: {errors:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Segments that are unsafe to merge.

/// The closed port every crafted segment goes to (node 2's kernel answers with RSTs).
const CRAFT_DPORT: u16 = 5399;
/// Inner packet length of every crafted segment, so that a case fits one UDP GSO send.
const CRAFT_LEN_V4: usize = 1040;
const CRAFT_LEN_V6: usize = 1060;
/// IPv4 options: NOP, NOP, NOP, end of list.
const V4_OPTIONS: [u8; 4] = [1, 1, 1, 0];
/// IPv6 destination options: one PadN of 4 bytes (with the next-header and length bytes, 8).
const V6_DEST_OPTIONS: [u8; 6] = [1, 4, 0, 0, 0, 0];
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);
/// `UDP_SEGMENT` (include/uapi/linux/udp.h): the GSO segment size of a send.
const UDP_SEGMENT: i32 = 103;

/// How one crafted segment differs from a plain ACK segment of its flow.
#[derive(Clone, Copy, Debug, Default)]
struct Spec {
    /// 0 or 1: the flow (source port) within the case.
    flow: u16,
    /// Its place in the flow's sequence space (0, 1, ...), whatever the sending order.
    k: usize,
    psh: bool,
    fin: bool,
    cwr: bool,
    /// ECN codepoint (IPv4 TOS, IPv6 traffic class); plain segments are ECT(0).
    ecn: u8,
    /// IPv4 options or an IPv6 destination options header.
    opts: bool,
    /// A correct merge may append it to the segment sent just before it.
    joins: bool,
}

fn seg(flow: u16, k: usize, joins: bool) -> Spec {
    Spec {
        flow,
        k,
        ecn: 0b10,
        joins,
        ..Spec::default()
    }
}

/// One case: its segments in sending order.
struct Case {
    name: &'static str,
    specs: Vec<Spec>,
    /// The case must come out with at least one merged packet (when sent as one GSO send).
    must_merge: bool,
}

/// The cases: a plain run (must merge), then what must not be merged, or only in part.
fn cases() -> Vec<Case> {
    let plain = |k| seg(0, k, k > 0);
    vec![
        Case {
            name: "plain run",
            specs: (0..6)
                .map(|k| Spec {
                    psh: k == 5,
                    ..plain(k)
                })
                .collect(),
            must_merge: true,
        },
        Case {
            name: "IP options",
            specs: vec![
                seg(0, 0, false),
                Spec {
                    opts: true,
                    ..seg(0, 1, false)
                },
                Spec {
                    opts: true,
                    ..seg(0, 2, false)
                },
                seg(0, 3, false),
                seg(0, 4, true),
            ],
            must_merge: false,
        },
        Case {
            name: "ECN CE and CWR",
            specs: vec![
                seg(0, 0, false),
                seg(0, 1, true),
                Spec {
                    ecn: 0b11,
                    ..seg(0, 2, false)
                },
                seg(0, 3, false),
                Spec {
                    cwr: true,
                    ..seg(0, 4, false)
                },
                seg(0, 5, false),
            ],
            must_merge: false,
        },
        Case {
            name: "reordered",
            specs: vec![
                seg(0, 0, false),
                seg(0, 1, true),
                seg(0, 3, false),
                seg(0, 2, false),
                seg(0, 4, false),
                seg(0, 5, true),
            ],
            must_merge: false,
        },
        Case {
            name: "two interleaved flows",
            specs: vec![
                seg(0, 0, false),
                seg(1, 0, false),
                seg(0, 1, false),
                seg(1, 1, false),
                seg(0, 2, false),
                seg(1, 2, false),
                seg(0, 3, false),
                seg(0, 4, true),
                seg(1, 3, false),
                seg(1, 4, true),
            ],
            must_merge: false,
        },
        Case {
            name: "PSH and FIN",
            specs: vec![
                seg(0, 0, false),
                Spec {
                    psh: true,
                    ..seg(0, 1, true)
                },
                seg(0, 2, false),
                Spec {
                    fin: true,
                    ..seg(0, 3, false)
                },
            ],
            must_merge: false,
        },
    ]
}

/// A crafted segment: its bytes and what identifies it.
#[derive(Clone, Debug)]
struct Crafted {
    spec: Spec,
    sport: u16,
    seq: u32,
    /// The whole IP packet as sent.
    bytes: Vec<u8>,
    /// The whole IP packet as node 2 must receive it: as sent, but for the TTL (hop limit)
    /// that a tundra sending it decremented.
    delivered: Vec<u8>,
    /// Offset of the TCP header; the payload starts 20 bytes later.
    l4: usize,
}

impl Crafted {
    fn payload(&self) -> &[u8] {
        &self.bytes[self.l4 + 20..]
    }

    /// Node 2 receives it through a tundra sender, which decrements the TTL like a router.
    fn forwarded(mut self) -> Crafted {
        if self.v6() {
            self.delivered[7] -= 1;
        } else {
            let (mut ip, _) = Ipv4Header::from_slice(&self.delivered).expect("crafted IPv4");
            ip.time_to_live -= 1;
            ip.header_checksum = ip.calc_header_checksum();
            self.delivered[..ip.header_len()].copy_from_slice(&ip.to_bytes());
        }
        self
    }

    fn v6(&self) -> bool {
        self.bytes[0] >> 4 == 6
    }
}

/// The byte at sequence number `seq` of the flow from `sport`: a mix of both, so a payload at
/// the wrong place (or of the wrong flow) does not match.
fn pattern(sport: u16, seq: u32) -> u8 {
    let x = (u64::from(seq) << 16 | u64::from(sport)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8
}

/// Builds a case's segments from node 1's pod to node 2's, ports `sport0 + flow`, every
/// packet [`CRAFT_LEN_V4`] / [`CRAFT_LEN_V6`] bytes long (those with options carry less).
fn craft(case: &Case, v6: bool, sport0: u16) -> Vec<Crafted> {
    let packet_len = if v6 { CRAFT_LEN_V6 } else { CRAFT_LEN_V4 };
    let hdr_len = |s: &Spec| match (v6, s.opts) {
        (false, false) => 40,
        (false, true) => 40 + V4_OPTIONS.len(),
        (true, false) => 60,
        (true, true) => 60 + V6_DEST_OPTIONS.len() + 2,
    };
    // Sequence numbers: each flow's segments laid end to end in `k` order.
    let seq_of = |s: &Spec| -> u32 {
        let before: usize = case
            .specs
            .iter()
            .filter(|o| o.flow == s.flow && o.k < s.k)
            .map(|o| packet_len - hdr_len(o))
            .sum();
        0x1000_0000 + before as u32
    };
    case.specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let sport = sport0 + s.flow;
            let seq = seq_of(s);
            let payload: Vec<u8> = (0..packet_len - hdr_len(s))
                .map(|j| pattern(sport, seq.wrapping_add(j as u32)))
                .collect();
            let mut tcp = TcpHeader::new(sport, CRAFT_DPORT, seq, 502);
            tcp.ack = true;
            tcp.acknowledgment_number = 0x2000_0000;
            (tcp.psh, tcp.fin, tcp.cwr) = (s.psh, s.fin, s.cwr);
            let ecn = IpEcn::try_new(s.ecn).expect("a 2-bit ECN codepoint");
            let mut bytes = Vec::with_capacity(packet_len);
            if v6 {
                let (src, dst) = (pod_v6(1).octets(), pod_v6(2).octets());
                tcp.checksum = tcp
                    .calc_checksum_ipv6_raw(src, dst, &payload)
                    .expect("small payload");
                let ip = Ipv6Header {
                    traffic_class: ecn.value(),
                    flow_label: Ipv6FlowLabel::try_new(0x1_2345).expect("20 bits"),
                    payload_length: (packet_len - 40) as u16,
                    next_header: if s.opts {
                        IpNumber::IPV6_DESTINATION_OPTIONS
                    } else {
                        IpNumber::TCP
                    },
                    hop_limit: 64,
                    source: src,
                    destination: dst,
                };
                ip.write(&mut bytes).expect("write to a Vec");
                if s.opts {
                    bytes.extend_from_slice(&[IpNumber::TCP.0, 0]);
                    bytes.extend_from_slice(&V6_DEST_OPTIONS);
                }
            } else {
                let (src, dst) = (pod_v4(1).octets(), pod_v4(2).octets());
                tcp.checksum = tcp
                    .calc_checksum_ipv4_raw(src, dst, &payload)
                    .expect("small payload");
                let mut ip = Ipv4Header {
                    ecn,
                    total_len: packet_len as u16,
                    identification: 0x4000 + (sport0 & 0xff) * 64 + i as u16,
                    dont_fragment: true,
                    time_to_live: 64,
                    protocol: IpNumber::TCP,
                    source: src,
                    destination: dst,
                    options: if s.opts {
                        Ipv4Options::try_from(&V4_OPTIONS[..]).expect("4 bytes of options")
                    } else {
                        Ipv4Options::default()
                    },
                    ..Ipv4Header::default()
                };
                ip.header_checksum = ip.calc_header_checksum();
                ip.write(&mut bytes).expect("write to a Vec");
            }
            let l4 = bytes.len();
            tcp.write(&mut bytes).expect("write to a Vec");
            bytes.extend_from_slice(&payload);
            assert_eq!(bytes.len(), packet_len, "{}: segment {i}", case.name);
            Crafted {
                spec: *s,
                sport,
                seq,
                delivered: bytes.clone(),
                bytes,
                l4,
            }
        })
        .collect()
}

/// What the capture needs of a received TCP packet.
struct Seen {
    sport: u16,
    seq: u32,
    flags: u8,
    payload_at: usize,
}

/// Parses an IP packet as captured on node 2's TUN; `None` unless it is TCP from node 1's pod
/// to node 2's pod and [`CRAFT_DPORT`].
fn parse_seen(p: &[u8]) -> Option<Seen> {
    let (l4, proto) = match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0xf) * 4;
            let ok = p.get(12..16)? == pod_v4(1).octets() && p.get(16..20)? == pod_v4(2).octets();
            (ok.then_some(ihl)?, *p.get(9)?)
        }
        6 => {
            let ok = p.get(8..24)? == pod_v6(1).octets() && p.get(24..40)? == pod_v6(2).octets();
            if !ok {
                return None;
            }
            match *p.get(6)? {
                60 => (40 + (usize::from(*p.get(41)?) + 1) * 8, *p.get(40)?),
                next => (40, next),
            }
        }
        _ => return None,
    };
    let tcp = p.get(l4..l4 + 20)?;
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    (proto == IpNumber::TCP.0 && dport == CRAFT_DPORT).then(|| Seen {
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
        payload_at: l4 + usize::from(tcp[12] >> 4) * 4,
    })
}

/// A packet socket in `ns` that sees every packet of every device (link headers cut off).
fn capture_socket(ns: &str) -> Socket {
    in_netns(ns, || {
        let all = Protocol::from(i32::from((libc::ETH_P_ALL as u16).to_be()));
        let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(all)).expect("AF_PACKET socket");
        s.set_recv_buffer_size(4 << 20).expect("SO_RCVBUF");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("SO_RCVTIMEO");
        s
    })
}

/// Reads captured packets of the crafted flows until `want` payload bytes of them have come
/// (and 300 ms more, to catch duplicates) or [`CAPTURE_TIMEOUT`] has passed.
fn capture(sock: Socket, want: usize) -> thread::JoinHandle<Vec<Vec<u8>>> {
    thread::spawn(move || {
        let deadline = Instant::now() + CAPTURE_TIMEOUT;
        let mut grace: Option<Instant> = None;
        let (mut got, mut packets) = (0, Vec::new());
        let mut buf = vec![0u8; 1 << 17];
        while Instant::now() < deadline && grace.is_none_or(|g| Instant::now() < g) {
            let n = match (&sock).read(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            if let Some(seen) = parse_seen(&buf[..n]) {
                got += n.saturating_sub(seen.payload_at);
                packets.push(buf[..n].to_vec());
                if got >= want && grace.is_none() {
                    grace = Some(Instant::now() + Duration::from_millis(300));
                }
            }
        }
        packets
    })
}

/// Checks what node 2 wrote into its TUN against the crafted cases (`all[c]`: case `c`'s
/// segments in sending order). Returns, per case, how many received packets were merged ones.
fn check_capture(cases: &[Case], all: &[Vec<Crafted>], received: &[Vec<u8>]) -> Vec<usize> {
    let mut times_seen: Vec<Vec<usize>> = all.iter().map(|c| vec![0; c.len()]).collect();
    let mut merged = vec![0; all.len()];
    let describe = |p: &[u8]| match parse_seen(p) {
        Some(s) => format!(
            "port {} seq {:#x} flags {:#04x} len {}",
            s.sport,
            s.seq,
            s.flags,
            p.len() - s.payload_at
        ),
        None => "unparsable".to_owned(),
    };
    let all_described = || {
        received
            .iter()
            .map(|p| describe(p))
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    for p in received {
        let seen = parse_seen(p).expect("captured packets are parsed ones");
        let found = all.iter().enumerate().find_map(|(c, segs)| {
            segs.iter()
                .position(|s| s.sport == seen.sport && s.seq == seen.seq)
                .map(|i| (c, i))
        });
        let Some((c, first)) = found else {
            panic!(
                "node 2 received a packet that starts no crafted segment: {}\nall received:\n  {}",
                describe(p),
                all_described()
            );
        };
        let (name, segs) = (cases[c].name, &all[c]);
        // The segments this packet holds: from `first` on, in sending order, as far as its
        // payload goes.
        let mut payload = &p[seen.payload_at..];
        let mut last = first;
        loop {
            let s = &segs[last];
            let len = s.payload().len();
            assert!(
                s.sport == seen.sport && payload.len() >= len && payload[..len] == *s.payload(),
                "{name}: a packet received at segment {first} ({}) does not hold segment {last}'s payload next (sequence {:#x}); all received:\n  {}",
                describe(p),
                s.seq,
                all_described()
            );
            times_seen[c][last] += 1;
            payload = &payload[len..];
            if payload.is_empty() {
                break;
            }
            last += 1;
            assert!(
                last < segs.len(),
                "{name}: a packet ({}) holds more than the case's segments",
                describe(p)
            );
        }
        let s = &segs[first];
        if last == first {
            // Alone: as sent, but for the TCP checksum (a lone packet may go as partial).
            let mut want = s.delivered.clone();
            let mut got = p.clone();
            for b in [&mut want, &mut got] {
                b[s.l4 + 16..s.l4 + 18].fill(0);
            }
            assert!(
                got == want,
                "{name}: segment {first} ({}) arrived changed:\n  sent {:02x?}\n  got  {:02x?}",
                describe(p),
                &want[..s.l4 + 20],
                &got[..(s.l4 + 20).min(got.len())]
            );
            continue;
        }
        merged[c] += 1;
        let bad: Vec<usize> = (first + 1..=last)
            .filter(|&i| !segs[i].spec.joins)
            .collect();
        assert!(
            bad.is_empty(),
            "{name}: segments {first}..={last} were merged into one packet ({}), but segment(s) {bad:?} must not be appended to the one before; all received:\n  {}",
            describe(p),
            all_described()
        );
        // The merged header is the first segment's, but for the lengths, the checksums and
        // PSH (the last segment's).
        let mut want = s.delivered[..seen.payload_at].to_vec();
        let mut got = p[..seen.payload_at].to_vec();
        let psh = segs[last].bytes[segs[last].l4 + 13] & 0x08;
        want[s.l4 + 13] = (want[s.l4 + 13] & !0x08) | psh;
        for b in [&mut want, &mut got] {
            if !s.v6() {
                b[2..4].fill(0); // total length
                b[10..12].fill(0); // header checksum
            } else {
                b[4..6].fill(0); // payload length
            }
            b[s.l4 + 16..s.l4 + 18].fill(0);
        }
        assert!(
            got == want,
            "{name}: the packet merged from segments {first}..={last} has a header other than the first segment's:\n  want {want:02x?}\n  got  {got:02x?}"
        );
    }
    for (c, counts) in times_seen.iter().enumerate() {
        assert!(
            counts.iter().all(|&n| n == 1),
            "{}: times each segment arrived (in sending order): {counts:?}; all received:\n  {}",
            cases[c].name,
            all_described()
        );
    }
    merged
}

/// Sends one GSO send of `packets` (all the same length) as datagrams from `sock` to `to`.
fn gso_send(sock: &Socket, to: SocketAddr, packets: &[Crafted]) {
    let size = packets[0].bytes.len();
    assert!(packets.iter().all(|p| p.bytes.len() == size));
    // One `struct cmsghdr` (length, level, type) with a u16 and its padding: built by hand
    // (the cmsg macros are unsafe). The length field is a size_t (glibc) or a u32 with padding
    // (musl), both the same bytes on a little-endian machine.
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    assert_eq!(hdr, 16, "a cmsghdr of 16 bytes (64-bit Linux)");
    let mut cmsg = vec![0u8; hdr + 8];
    cmsg[..8].copy_from_slice(&((hdr + 2) as u64).to_ne_bytes());
    cmsg[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
    cmsg[12..16].copy_from_slice(&UDP_SEGMENT.to_ne_bytes());
    cmsg[16..18].copy_from_slice(&(size as u16).to_ne_bytes());
    let bufs: Vec<IoSlice<'_>> = packets.iter().map(|p| IoSlice::new(&p.bytes)).collect();
    let addr = SockAddr::from(to);
    let msg = MsgHdr::new()
        .with_addr(&addr)
        .with_buffers(&bufs)
        .with_control(&cmsg);
    let sent = sock.sendmsg(&msg, 0).expect("UDP GSO send");
    assert_eq!(sent, size * packets.len());
}

/// How the crafted cases reach node 2.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// One UDP GSO send per case from node 1's underlay address, without tundra on node 1.
    Wire,
    /// A raw socket in node 1, through node 1's tundra.
    Tundra,
}

/// Crafts every case in one inner family, sends them by `path`, captures them on node 2's TUN
/// and checks them; returns how many merged packets each case came out with.
fn run_cases(c: &Cluster, path: Path, v6: bool, wire: Option<&Socket>) -> Vec<usize> {
    let cases = cases();
    let base = 40000 + 100 * (matches!(path, Path::Tundra) as u16) + 50 * (v6 as u16);
    let all: Vec<Vec<Crafted>> = cases
        .iter()
        .enumerate()
        .map(|(k, case)| {
            let segs = craft(case, v6, base + 2 * k as u16);
            match path {
                Path::Wire => segs,
                Path::Tundra => segs.into_iter().map(Crafted::forwarded).collect(),
            }
        })
        .collect();
    let want: usize = all.iter().flatten().map(|s| s.payload().len()).sum();
    let capturing = capture(capture_socket(&c.ns(2)), want);
    // Let the capture thread start reading (it only reads; the socket already queues).
    thread::sleep(Duration::from_millis(50));
    match path {
        Path::Wire => {
            let sock = wire.expect("the wire path sends from a socket");
            let to = SocketAddr::from((underlay_v4(2), PORT));
            for segs in &all {
                gso_send(sock, to, segs);
            }
        }
        Path::Tundra => in_netns(&c.ns(1), || {
            let (domain, dst): (Domain, SocketAddr) = if v6 {
                (Domain::IPV6, (pod_v6(2), 0).into())
            } else {
                (Domain::IPV4, (pod_v4(2), 0).into())
            };
            let raw = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
                .expect("raw socket");
            if !v6 {
                raw.set_header_included_v4(true).expect("IP_HDRINCL");
            }
            for s in all.iter().flatten() {
                raw.send_to(&s.bytes, &dst.into()).expect("raw send");
            }
        }),
    }
    let received = capturing.join().expect("capture thread panicked");
    let merged = check_capture(&cases, &all, &received);
    let family = if v6 { "IPv6" } else { "IPv4" };
    eprintln!(
        "[{}] {path:?} path, {family}: {} packets for {} segments; merged packets per case: {:?}",
        c.prefix(),
        received.len(),
        all.iter().map(Vec::len).sum::<usize>(),
        cases
            .iter()
            .map(|k| k.name)
            .zip(&merged)
            .collect::<Vec<_>>()
    );
    for (case, &m) in cases.iter().zip(&merged) {
        if case.must_merge && matches!(path, Path::Wire) {
            assert!(
                m > 0,
                "{family} {}: sent as one GSO send to a tundra with offloads, yet nothing was merged",
                case.name
            );
        }
    }
    merged
}

fn unsafe_to_merge_arrives_intact(io: Io) {
    let mut c = Cluster::new(2);
    c.start_tundra(2, &["--io", io.as_arg()]);
    let offload = &c.stats_json(2)["offload"];
    for key in ["tun_tso", "udp_gro"] {
        assert_eq!(offload[key], Value::Bool(true), "node 2: {offload}");
    }
    let (u1, u2) = (underlay_v4(1).to_string(), underlay_v4(2).to_string());
    wait_ping(&c.ns(1), &u1, &u2, CONVERGE_TIMEOUT);

    // 1. The wire by hand: node 1's tundra address, no tundra there yet.
    let wire = in_netns(&c.ns(1), || {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("UDP socket");
        s.bind(&SocketAddr::from((underlay_v4(1), PORT)).into())
            .expect("bind node 1's tundra address");
        s
    });
    for v6 in [false, true] {
        run_cases(&c, Path::Wire, v6, Some(&wire));
    }
    drop(wire);

    // 2. Through tundra on node 1.
    c.start_tundra(1, &["--io", io.as_arg()]);
    c.wait_pods(1, 2);
    for v6 in [false, true] {
        run_cases(&c, Path::Tundra, v6, None);
    }

    let s = c.stats(2);
    assert_eq!(
        (s.drops.receive_checks(), s.drops.tun_write_error),
        (0, 0),
        "node 2 dropped crafted packets (receive checks, TUN writes): {s:?}"
    );
    assert_no_csum_errors(&c.ns(2), "node 2 after the crafted segments");
    c.shutdown();
}

// ---------------------------------------------------------------------------------------------
// GSO refused: one datagram per segment.

const FALLBACK_BYTES: u64 = 64 << 20;
/// A stalled stream fails at this bound (at 100 Mbit/s the stream needs 6 s).
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(60);
const GSO_WARNING: &str = "the kernel refused a UDP GSO send";
/// The path MTU node 1 gets towards node 2 in [`gso_refused_path_mtu`], below the underlay
/// MTU (1500) that tundra sized its tunnel for at start.
const LOWER_PATH_MTU: u16 = 1400;

/// How the kernel is made to refuse node 1's UDP GSO sends, once tundra runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// `ethtool -K eth0 tx off`: before Linux 6.11 a GSO send without checksum offload fails
    /// with EIO; since ("udp: Allow GSO transmit from devices with no checksum offload",
    /// also in stable kernels) the kernel checksums the segments in software and accepts it.
    TxChecksumOff,
    /// A route to node 2 with a path MTU below the segment size: the kernel refuses GSO sends
    /// whose segments exceed it (EINVAL; EMSGSIZE since "udp: gso: do not drop small packets
    /// when PMTU reduces", also in stable kernels), while one datagram per segment is sent
    /// fragmented (tundra's socket does not set DF on the underlay).
    PathMtu,
}

fn gso_fallback_tx_checksum_off(io: Io) {
    gso_fallback(io, Refusal::TxChecksumOff);
}

fn gso_refused_path_mtu(io: Io) {
    gso_fallback(io, Refusal::PathMtu);
}

/// Two offload nodes; node 1's GSO sends are made to be refused (see [`Refusal`]) before a
/// 64 MiB stream from node 1 to node 2, which must arrive intact. Where the kernel refused a
/// send, node 1 must have fallen back (`gso_fallbacks`) and logged it once per fallback.
fn gso_fallback(io: Io, refusal: Refusal) {
    let _heavy = heavy_lock();
    let mut c = Cluster::new(2);
    for i in 1..=2 {
        c.start_tundra(i, &["--io", io.as_arg()]);
    }
    let offload = &c.stats_json(1)["offload"];
    for key in ["tun_tso", "udp_gso"] {
        assert_eq!(offload[key], Value::Bool(true), "node 1: {offload}");
    }
    let ns1 = c.ns(1);
    match refusal {
        Refusal::TxChecksumOff => {
            let out = ns_cmd(&ns1, "ethtool", &["-K", UNDERLAY_DEV, "tx", "off"]);
            assert!(out.success(), "ethtool (package ethtool) failed:\n{out}");
            let out = ns_cmd(&ns1, "ethtool", &["-k", UNDERLAY_DEV]);
            assert!(
                out.stdout.contains("tx-checksumming: off"),
                "tx checksumming is still on:\n{out}"
            );
        }
        Refusal::PathMtu => {
            ip(&[
                "-n",
                &ns1,
                "route",
                "add",
                &format!("{}/32", underlay_v4(2)),
                "dev",
                UNDERLAY_DEV,
                "mtu",
                &LOWER_PATH_MTU.to_string(),
            ]);
        }
    }
    let (src, dst) = (pod_v4(1), pod_v4(2));
    wait_ping(&ns1, &src.to_string(), &dst.to_string(), CONVERGE_TIMEOUT);
    let before = c.stats(1);
    let what = format!("--io {}, {refusal:?}", io.as_arg());
    let result = tcp_transfer(
        &ns1,
        (IpAddr::from(src), 0).into(),
        &c.ns(2),
        (IpAddr::from(dst), TCP_PORT).into(),
        FALLBACK_BYTES,
        FALLBACK_TIMEOUT,
    );
    let d = c.stats(1).since(&before);
    let fallbacks = c.stats_json(1)["gso_fallbacks"]
        .as_u64()
        .expect("gso_fallbacks in stats --json");
    let log = c.stderr(1);
    let warnings = log.lines().filter(|l| l.contains(GSO_WARNING)).count() as u64;
    let t = result.unwrap_or_else(|e| {
        panic!(
            "{what}: {e}\nnode 1 since the stream started: {d:?}, gso_fallbacks {fallbacks}; stderr:\n{log}"
        )
    });
    eprintln!(
        "[{}] {what}: {} bytes in {:.1?} ({:.0} Mbit/s, for information only); {} sends refused, gso_fallbacks {fallbacks}",
        c.prefix(),
        t.bytes,
        t.elapsed,
        t.mbit_s(),
        d.drops.send_error
    );
    // The refused sends themselves count as send errors (TCP sends those segments again).
    let other_drops: u64 = d
        .drops
        .as_map()
        .iter()
        .filter(|(k, _)| **k != "send_error")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(other_drops, 0, "{what}: node 1 dropped packets: {d:?}");
    let refused = d.drops.send_error > 0;
    if refusal == Refusal::PathMtu || refused {
        assert!(
            refused && fallbacks >= 1,
            "{what}: expected refused GSO sends and a fallback; send errors {}, gso_fallbacks {fallbacks}; stderr:\n{log}",
            d.drops.send_error
        );
    } else {
        eprintln!("[{}] {what}: this kernel accepts GSO sends without checksum offload: no fallback needed", c.prefix());
    }
    assert_eq!(
        warnings, fallbacks,
        "{what}: one `{GSO_WARNING}` line per fallback; stderr:\n{log}"
    );
    for i in 1..=2 {
        assert_no_csum_errors(&c.ns(i), &format!("node {i}, {what}"));
    }
    c.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Single datagrams of one length to one peer leave as UDP GSO sends.

const BURSTS: u32 = 40;
const BURST: u32 = 64;
const DATAGRAM_PAYLOAD: usize = 200;

/// The payload of datagram `seq` of the bursts.
fn burst_payload(seq: u32) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((4..DATAGRAM_PAYLOAD).map(|i| (seq as usize * 7 + i) as u8));
    p
}

/// Bursts of [`BURST`] datagrams of [`DATAGRAM_PAYLOAD`] bytes from node 1's pod to node 2's,
/// each burst received before the next is sent (so no queue can overflow): every datagram
/// must arrive once, in order and intact. In IPv4, node 2's underlay must have seen a packet
/// from node 1's tundra longer than one datagram of the wire format (a GSO send that crossed
/// the veth whole), so the coalescing path was taken; in both families node 2 must have
/// written fewer packets into its TUN than it received (UDP super-packets the kernel cut back
/// into the datagrams the sink read).
fn udp_datagrams_are_coalesced(io: Io) {
    let mut c = Cluster::new(2);
    for i in 1..=2 {
        c.start_tundra(i, &["--io", io.as_arg()]);
    }
    let offload = &c.stats_json(1)["offload"];
    assert_eq!(offload["udp_gso"], Value::Bool(true), "node 1: {offload}");
    let offload = &c.stats_json(2)["offload"];
    assert_eq!(offload["tun_uso"], Value::Bool(true), "node 2: {offload}");
    let ns2 = c.ns(2);

    // The wire: the longest UDP packet from node 1's tundra that node 2's devices saw.
    let wire = capture_socket(&ns2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = stop.clone();
    let from = underlay_v4(1).octets();
    let watcher = thread::spawn(move || {
        let (mut longest, mut buf) = (0, vec![0u8; 1 << 17]);
        while !watching.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(n) = (&wire).read(&mut buf) else {
                continue;
            };
            let p = &buf[..n];
            let ihl = usize::from(p.first().map_or(0, |b| b & 0x0f)) * 4;
            let udp_from_tundra = n > ihl + 8
                && p[0] >> 4 == 4
                && p[9] == 17
                && p[12..16] == from
                && u16::from_be_bytes([p[ihl], p[ihl + 1]]) == PORT;
            if udp_from_tundra {
                longest = longest.max(n);
            }
        }
        longest
    });
    let (rx, tun_rx) = udp_bursts(&mut c, io, pod_v4(1).into(), pod_v4(2).into());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let longest = watcher.join().expect("watcher");
    // One datagram on the underlay: outer IPv4 and UDP, inner IPv4 and UDP, the payload.
    let one = 20 + 8 + 20 + 8 + DATAGRAM_PAYLOAD;
    assert!(
        longest > one,
        "--io {}: no GSO send seen on the underlay (longest packet {longest} bytes, one datagram is {one})",
        io.as_arg()
    );
    let (rx6, tun_rx6) = udp_bursts(&mut c, io, pod_v6(1).into(), pod_v6(2).into());
    for (family, rx, tun_rx) in [("IPv4", rx, tun_rx), ("IPv6", rx6, tun_rx6)] {
        assert!(
            tun_rx < rx,
            "--io {}, {family}: node 2 wrote {tun_rx} packets into its TUN for {rx} it received: no UDP super-packets",
            io.as_arg()
        );
    }
    // A GSO send still counts each datagram (the pings of wait_ping are a few more).
    let sent = u64::from(2 * BURSTS * BURST);
    let s1 = c.stats(1);
    assert!(
        s1.tx_packets >= sent,
        "node 1 counted {} datagrams sent",
        s1.tx_packets
    );
    assert_eq!(s1.drops.send_error, 0, "node 1: {s1:?}");
    assert_eq!(c.stats(2).drops.tun_write_error, 0, "node 2");
    assert_no_csum_errors(&ns2, "node 2");
}

/// Sends the bursts from `src` in node 1's pod to `dst` in node 2's and checks what the sink
/// reads; returns how many packets node 2's tundra received meanwhile and how many its TUN
/// took.
fn udp_bursts(c: &mut Cluster, io: Io, src: IpAddr, dst: IpAddr) -> (u64, u64) {
    let (ns1, ns2) = (c.ns(1), c.ns(2));
    wait_ping(&ns1, &src.to_string(), &dst.to_string(), CONVERGE_TIMEOUT);
    let sink = in_netns(&ns2, || {
        std::net::UdpSocket::bind((dst, 9100)).expect("bind sink")
    });
    sink.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("SO_RCVTIMEO");
    let sender = in_netns(&ns1, || {
        std::net::UdpSocket::bind((src, 0)).expect("bind sender")
    });
    let before = (c.stats(2).rx_packets, link_packets(&ns2, TUN).0);
    let mut buf = [0u8; 2048];
    for burst in 0..BURSTS {
        let first = burst * BURST;
        for seq in first..first + BURST {
            sender
                .send_to(&burst_payload(seq), (dst, 9100))
                .expect("send");
        }
        for seq in first..first + BURST {
            let n = sink.recv(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "--io {}, {dst}: datagram {seq} did not arrive: {e}",
                    io.as_arg()
                )
            });
            let got = u32::from_be_bytes(buf[..4].try_into().unwrap());
            assert_eq!(
                got,
                seq,
                "--io {}, {dst}: out of order or lost",
                io.as_arg()
            );
            assert_eq!(
                buf[..n],
                burst_payload(seq)[..],
                "datagram {seq} to {dst} corrupted"
            );
        }
    }
    (
        c.stats(2).rx_packets - before.0,
        link_packets(&ns2, TUN).0 - before.1,
    )
}
