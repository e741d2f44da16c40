//! The per-packet decisions of both directions.
//!
//! Egress (TUN → peer): [`Encapsulator::encapsulate`] validates a packet read from the TUN,
//! finds its peer, enforces the tunnel MTU, decrements the TTL in place, or builds the ICMP
//! error that goes back into the TUN instead.
//!
//! Ingress (peer → TUN): [`decapsulate`] checks a received datagram (known peer, well-formed
//! inner packet, inner source inside the sender's subnets, inner destination local) before it
//! may be written to the TUN.

use std::net::{IpAddr, SocketAddr};

use crate::icmp::{self, IcmpKind};
use crate::ratelimit::TokenBucket;
use crate::route::{PeerId, Table};
use crate::stats::DropReason;
use crate::wire::IpPacket;

/// What to do with a packet read from the TUN.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Send the (rewritten in place) packet as one UDP datagram to this peer.
    Send(PeerId),
    /// The packet is dropped for `reason`; write the first `len` bytes of the reply buffer (an
    /// ICMP error) back into the TUN.
    Reply { len: usize, reason: DropReason },
    /// The packet is dropped for this reason, nothing to send (ICMP not allowed or rate-limited).
    Drop(DropReason),
}

/// What to do with a datagram received from the underlay.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// Write the datagram, unchanged, to the TUN; it came from this peer.
    Deliver(PeerId),
    Drop(DropReason),
}

/// Egress state: the tunnel MTU and the ICMP rate limiter. One per egress thread.
#[derive(Debug)]
pub struct Encapsulator {
    tunnel_mtu: usize,
    icmp_limit: TokenBucket,
}

impl Encapsulator {
    /// `tunnel_mtu`: the largest inner packet that fits the underlay. `icmp_per_sec`: the ICMP
    /// error budget (bursts of the same size are allowed).
    pub fn new(tunnel_mtu: usize, icmp_per_sec: u32) -> Self {
        Self {
            tunnel_mtu,
            icmp_limit: TokenBucket::new(icmp_per_sec, icmp_per_sec),
        }
    }

    /// Decides what happens to `packet`, one IP packet read from the TUN.
    ///
    /// Checks, in order: well-formed ([`DropReason::Malformed`], no reply); destination local
    /// ([`DropReason::Loop`], no reply); route ([`DropReason::NoRoute`], ICMP no route); hop
    /// limit > 1 ([`DropReason::TtlExceeded`], ICMP time exceeded); size ≤ tunnel MTU
    /// ([`DropReason::TooBig`], ICMP too big with the tunnel MTU; IPv4 without DF is sent
    /// anyway and the underlay fragments it). On [`Egress::Send`] the hop limit has been
    /// decremented in place. `reply` must hold at least [`crate::icmp::MAX_LEN`] bytes; ICMP
    /// replies are rate-limited by `now_ns`.
    pub fn encapsulate(
        &mut self,
        table: &Table,
        packet: &mut [u8],
        reply: &mut [u8],
        now_ns: u64,
    ) -> Egress {
        self.decide(table, packet, reply, now_ns, true)
    }

    /// As [`Encapsulator::encapsulate`] for a TSO/USO super-packet, whose size is not checked:
    /// it leaves as segments that each fit the tunnel MTU.
    pub fn encapsulate_gso(
        &mut self,
        table: &Table,
        packet: &mut [u8],
        reply: &mut [u8],
        now_ns: u64,
    ) -> Egress {
        self.decide(table, packet, reply, now_ns, false)
    }

    fn decide(
        &mut self,
        table: &Table,
        packet: &mut [u8],
        reply: &mut [u8],
        now_ns: u64,
        check_size: bool,
    ) -> Egress {
        let Ok(mut pkt) = IpPacket::new_checked(packet) else {
            return Egress::Drop(DropReason::Malformed);
        };
        let dst = pkt.dst_addr();
        if table.is_local(dst) {
            return Egress::Drop(DropReason::Loop);
        }
        let Some(peer) = table.lookup(dst) else {
            return self.icmp(
                table,
                IcmpKind::NoRoute,
                DropReason::NoRoute,
                &pkt,
                reply,
                now_ns,
            );
        };
        if pkt.hop_limit() <= 1 {
            let (kind, reason) = (IcmpKind::TimeExceeded, DropReason::TtlExceeded);
            return self.icmp(table, kind, reason, &pkt, reply, now_ns);
        }
        if check_size && pkt.len() > self.tunnel_mtu && pkt.dont_fragment() {
            let mtu = u16::try_from(self.tunnel_mtu).unwrap_or(u16::MAX);
            let kind = IcmpKind::TooBig { mtu };
            return self.icmp(table, kind, DropReason::TooBig, &pkt, reply, now_ns);
        }
        pkt.decrement_hop_limit();
        Egress::Send(peer)
    }

    /// The tunnel MTU this encapsulator enforces.
    pub fn tunnel_mtu(&self) -> usize {
        self.tunnel_mtu
    }

    /// Builds the ICMP error answering `pkt` into `reply`, if one may be sent and the budget
    /// allows it; otherwise the packet is simply dropped.
    fn icmp(
        &mut self,
        table: &Table,
        kind: IcmpKind,
        reason: DropReason,
        pkt: &IpPacket<&mut [u8]>,
        reply: &mut [u8],
        now_ns: u64,
    ) -> Egress {
        let Some(router) = table.router_addr(pkt.is_ipv6()) else {
            return Egress::Drop(reason);
        };
        let Some(len) = icmp::build(kind, router, pkt.as_bytes(), reply) else {
            return Egress::Drop(reason);
        };
        if !self.icmp_limit.allow(now_ns) {
            return Egress::Drop(reason);
        }
        Egress::Reply { len, reason }
    }
}

/// Decides whether `datagram`, the payload of a UDP datagram from `from`, may be written to the
/// TUN. Checks, in order: `from` is a known peer ([`DropReason::UnknownPeer`]); the payload is a
/// well-formed IP packet ([`DropReason::Malformed`]); its source routes to that same peer
/// ([`DropReason::Spoofed`]); its destination is in a local subnet ([`DropReason::NotLocal`]).
pub fn decapsulate(table: &Table, from: SocketAddr, datagram: &[u8]) -> Ingress {
    match table.peer_of(from) {
        Some(peer) => Decapsulator::new(table, peer).check(datagram),
        None => Ingress::Drop(DropReason::UnknownPeer),
    }
}

/// [`decapsulate`] for the datagrams of one (GRO) receive, whose sender is found once. The
/// datagrams of a train are mostly one flow's, so an address pair that passed is not looked
/// up again: two route lookups per datagram were the ingress thread's largest cost of its own.
pub struct Decapsulator<'t> {
    table: &'t Table,
    peer: PeerId,
    passed: Option<(IpAddr, IpAddr)>,
}

impl<'t> Decapsulator<'t> {
    pub fn new(table: &'t Table, peer: PeerId) -> Self {
        Decapsulator {
            table,
            peer,
            passed: None,
        }
    }

    /// The verdict on one datagram from the peer, checked as [`decapsulate`] says.
    pub fn check(&mut self, datagram: &[u8]) -> Ingress {
        let Ok(pkt) = IpPacket::new_checked(datagram) else {
            return Ingress::Drop(DropReason::Malformed);
        };
        let pair = (pkt.src_addr(), pkt.dst_addr());
        if self.passed != Some(pair) {
            if self.table.lookup(pair.0) != Some(self.peer) {
                return Ingress::Drop(DropReason::Spoofed);
            }
            if !self.table.is_local(pair.1) {
                return Ingress::Drop(DropReason::NotLocal);
            }
            self.passed = Some(pair);
        }
        Ingress::Deliver(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{Icmpv4Slice, Icmpv6Slice, Ipv4HeaderSlice};
    use ipnet::IpNet;

    use super::*;
    use crate::icmp::MAX_LEN;
    use crate::route::Route;
    use crate::testutil::*;

    const SEC: u64 = 1_000_000_000;
    const NOW: u64 = 100 * SEC;
    const PEER: &str = "198.18.0.2:8285";

    fn table() -> Table {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let peer = PEER.parse().unwrap();
        Table::new(
            &[net("198.19.1.0/24"), net("fd19:0:0:1::/64")],
            &[
                Route::new(net("198.19.2.0/24"), peer),
                Route::new(net("fd19:0:0:2::/64"), peer),
            ],
        )
        .unwrap()
    }

    fn v4_only_table() -> Table {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let peer = PEER.parse().unwrap();
        Table::new(
            &[net("198.19.1.0/24")],
            &[Route::new(net("fd19:0:0:2::/64"), peer)],
        )
        .unwrap()
    }

    /// Runs `encapsulate` on a copy of `packet`; returns the verdict, the packet afterwards and
    /// the reply bytes.
    fn encap(enc: &mut Encapsulator, t: &Table, packet: &[u8]) -> (Egress, Vec<u8>, Vec<u8>) {
        let mut pkt = packet.to_vec();
        let mut reply = [0u8; MAX_LEN];
        let verdict = enc.encapsulate(t, &mut pkt, &mut reply, NOW);
        let reply_len = match verdict {
            Egress::Reply { len, .. } => len,
            _ => 0,
        };
        (verdict, pkt, reply[..reply_len].to_vec())
    }

    fn icmpv4_type_code(reply: &[u8]) -> (u8, u8, [u8; 4]) {
        let ip = Ipv4HeaderSlice::from_slice(reply).unwrap();
        assert_eq!(
            ip.source_addr(),
            "198.19.1.0".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(ip.destination(), V4_A);
        let icmp = Icmpv4Slice::from_slice(&reply[20..]).unwrap();
        (icmp.type_u8(), icmp.code_u8(), icmp.bytes5to8())
    }

    #[test]
    fn sends_and_decrements() {
        let t = table();
        let mut enc = Encapsulator::new(1400, 10);
        let orig = ipv4_udp(V4_A, V4_B, 64, true, 100);
        let (verdict, pkt, _) = encap(&mut enc, &t, &orig);
        assert_eq!(
            verdict,
            Egress::Send(t.peer_by_addr(PEER.parse().unwrap()).unwrap())
        );
        assert_eq!(pkt[8], 63);
        assert_eq!(
            u16::from_be_bytes([pkt[10], pkt[11]]),
            ipv4_header_checksum(&pkt)
        );
        assert_eq!(pkt[12..], orig[12..]);

        let orig = ipv6_udp(V6_A, V6_B, 2, 100);
        let (verdict, pkt, _) = encap(&mut enc, &t, &orig);
        assert!(matches!(verdict, Egress::Send(_)));
        assert_eq!(pkt[7], 1);
    }

    #[test]
    fn malformed_and_loop_are_silent() {
        let t = table();
        let mut enc = Encapsulator::new(1400, 10);
        let orig = ipv4_udp(V4_A, V4_B, 64, true, 100);
        let (verdict, _, reply) = encap(&mut enc, &t, &orig[..50]);
        assert_eq!(verdict, Egress::Drop(DropReason::Malformed));
        assert!(reply.is_empty());
        assert_eq!(
            encap(&mut enc, &t, &[]).0,
            Egress::Drop(DropReason::Malformed)
        );
        let local = ipv4_udp(V4_A, [198, 19, 1, 99], 64, true, 8);
        assert_eq!(
            encap(&mut enc, &t, &local).0,
            Egress::Drop(DropReason::Loop)
        );
        let local6 = ipv6_udp(V6_A, V6_A, 64, 8);
        assert_eq!(
            encap(&mut enc, &t, &local6).0,
            Egress::Drop(DropReason::Loop)
        );
        // Loop wins over TTL.
        let local = ipv4_udp(V4_A, [198, 19, 1, 99], 1, true, 8);
        assert_eq!(
            encap(&mut enc, &t, &local).0,
            Egress::Drop(DropReason::Loop)
        );
    }

    #[test]
    fn no_route_replies_unreachable() {
        let t = table();
        let mut enc = Encapsulator::new(1400, 10);
        // TTL 1 as well: the route is checked first.
        let orig = ipv4_udp(V4_A, [198, 19, 3, 1], 1, true, 30);
        let (verdict, pkt, reply) = encap(&mut enc, &t, &orig);
        assert_eq!(
            verdict,
            Egress::Reply {
                len: reply.len(),
                reason: DropReason::NoRoute
            }
        );
        assert_eq!(pkt, orig, "the packet is not rewritten");
        assert_eq!(icmpv4_type_code(&reply), (3, 0, [0; 4]));
        assert_eq!(&reply[28..], &orig[..]);

        let mut dst = V6_B;
        dst[7] = 3;
        let orig = ipv6_udp(V6_A, dst, 64, 30);
        let (verdict, _, reply) = encap(&mut enc, &t, &orig);
        assert_eq!(
            verdict,
            Egress::Reply {
                len: reply.len(),
                reason: DropReason::NoRoute
            }
        );
        let icmp = Icmpv6Slice::from_slice(&reply[40..]).unwrap();
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (1, 0));
        let mut router = [0u8; 16];
        router[..8].copy_from_slice(&V6_A[..8]);
        assert!(icmp.is_checksum_valid(router, V6_A));
    }

    #[test]
    fn ttl_exceeded() {
        let t = table();
        let mut enc = Encapsulator::new(1400, 10);
        for ttl in [0, 1] {
            let orig = ipv4_udp(V4_A, V4_B, ttl, true, 30);
            let (verdict, pkt, reply) = encap(&mut enc, &t, &orig);
            assert_eq!(
                verdict,
                Egress::Reply {
                    len: reply.len(),
                    reason: DropReason::TtlExceeded
                }
            );
            assert_eq!(pkt, orig);
            assert_eq!(icmpv4_type_code(&reply).0, 11);
            let orig = ipv6_udp(V6_A, V6_B, ttl, 30);
            let (verdict, _, reply) = encap(&mut enc, &t, &orig);
            assert_eq!(
                verdict,
                Egress::Reply {
                    len: reply.len(),
                    reason: DropReason::TtlExceeded
                }
            );
            assert_eq!(reply[40], 3);
        }
    }

    #[test]
    fn too_big() {
        let t = table();
        let mut enc = Encapsulator::new(1400, 10);
        // Exactly the MTU passes.
        let fits = ipv4_udp(V4_A, V4_B, 64, true, 1400 - 28);
        assert!(matches!(encap(&mut enc, &t, &fits).0, Egress::Send(_)));
        let big = ipv4_udp(V4_A, V4_B, 64, true, 1400 - 27);
        let (verdict, pkt, reply) = encap(&mut enc, &t, &big);
        assert_eq!(
            verdict,
            Egress::Reply {
                len: 576,
                reason: DropReason::TooBig
            }
        );
        assert_eq!(pkt, big);
        assert_eq!(icmpv4_type_code(&reply), (3, 4, [0, 0, 0x05, 0x78]));
        // Without DF the underlay fragments it.
        let big = ipv4_udp(V4_A, V4_B, 64, false, 1400);
        assert!(matches!(encap(&mut enc, &t, &big).0, Egress::Send(_)));
        // IPv6 is never fragmented by routers.
        let big6 = ipv6_udp(V6_A, V6_B, 64, 1400);
        let (verdict, _, reply) = encap(&mut enc, &t, &big6);
        assert_eq!(
            verdict,
            Egress::Reply {
                len: 1280,
                reason: DropReason::TooBig
            }
        );
        assert_eq!(reply[40], 2);
        assert_eq!(reply[44..48], 1400u32.to_be_bytes());
        // TTL is checked before size.
        let big = ipv4_udp(V4_A, V4_B, 1, true, 1500);
        assert_eq!(
            encap(&mut enc, &t, &big).0,
            Egress::Reply {
                len: 576,
                reason: DropReason::TtlExceeded
            }
        );
    }

    #[test]
    fn icmp_not_allowed_becomes_drop() {
        let mut enc = Encapsulator::new(1400, 10);
        // No router address of the family.
        let t = v4_only_table();
        let orig = ipv6_udp(V6_A, V6_B, 1, 8);
        assert_eq!(
            encap(&mut enc, &t, &orig).0,
            Egress::Drop(DropReason::TtlExceeded)
        );
        // The packet is itself an ICMP error.
        let t = table();
        let orig = ipv4_icmp(V4_A, [198, 19, 3, 1], 3, 1);
        assert_eq!(
            encap(&mut enc, &t, &orig).0,
            Egress::Drop(DropReason::NoRoute)
        );
        // Its source may not be answered.
        let orig = ipv4_udp([0, 0, 0, 0], [198, 19, 3, 1], 64, true, 8);
        assert_eq!(
            encap(&mut enc, &t, &orig).0,
            Egress::Drop(DropReason::NoRoute)
        );
        // The reply buffer is too small.
        let orig = ipv4_udp(V4_A, [198, 19, 3, 1], 64, true, 8);
        let mut pkt = orig.clone();
        let mut small = [0u8; 10];
        assert_eq!(
            enc.encapsulate(&t, &mut pkt, &mut small, NOW),
            Egress::Drop(DropReason::NoRoute)
        );
    }

    #[test]
    fn icmp_is_rate_limited() {
        let t = table();
        let mut enc = Encapsulator::new(1400, 2);
        let orig = ipv4_udp(V4_A, [198, 19, 3, 1], 64, true, 8);
        let mut reply = [0u8; MAX_LEN];
        let mut at = |now: u64| enc.encapsulate(&t, &mut orig.clone(), &mut reply, now);
        assert!(matches!(at(NOW), Egress::Reply { .. }));
        assert!(matches!(at(NOW), Egress::Reply { .. }));
        assert_eq!(at(NOW), Egress::Drop(DropReason::NoRoute));
        assert_eq!(at(NOW + SEC / 4), Egress::Drop(DropReason::NoRoute));
        assert!(matches!(at(NOW + SEC / 2), Egress::Reply { .. }));

        let mut silent = Encapsulator::new(1400, 0);
        let mut pkt = orig.clone();
        assert_eq!(
            silent.encapsulate(&t, &mut pkt, &mut reply, NOW),
            Egress::Drop(DropReason::NoRoute)
        );
        assert_eq!(silent.tunnel_mtu(), 1400);
    }

    #[test]
    fn a_train_is_checked_datagram_by_datagram() {
        let t = table();
        let id = t.peer_by_addr(PEER.parse().unwrap()).unwrap();
        let good = ipv4_udp(V4_B, V4_A, 63, true, 8);
        let spoofed = ipv4_udp([198, 19, 3, 1], V4_A, 63, true, 8);
        let foreign = ipv4_udp(V4_B, [198, 19, 4, 1], 63, true, 8);
        let mut decap = Decapsulator::new(&t, id);
        // A pair that passed is remembered; one that differs in either address is checked.
        let verdicts: Vec<Ingress> = [&good, &good, &spoofed, &good, &foreign, &good[..10], &good]
            .map(|d| decap.check(d))
            .into();
        let deliver = Ingress::Deliver(id);
        assert_eq!(
            verdicts,
            [
                deliver,
                deliver,
                Ingress::Drop(DropReason::Spoofed),
                deliver,
                Ingress::Drop(DropReason::NotLocal),
                Ingress::Drop(DropReason::Malformed),
                deliver
            ]
        );
    }

    #[test]
    fn decapsulate_checks_in_order() {
        let t = table();
        let peer: SocketAddr = PEER.parse().unwrap();
        let stranger: SocketAddr = "198.18.0.9:8285".parse().unwrap();
        let good = ipv4_udp(V4_B, V4_A, 63, true, 8);
        let id = t.peer_by_addr(peer).unwrap();
        assert_eq!(decapsulate(&t, peer, &good), Ingress::Deliver(id));
        // Unknown peer before malformed.
        assert_eq!(
            decapsulate(&t, stranger, &good[..10]),
            Ingress::Drop(DropReason::UnknownPeer)
        );
        assert_eq!(
            decapsulate(&t, peer, &good[..10]),
            Ingress::Drop(DropReason::Malformed)
        );
        // Spoofed before not local.
        let spoofed_and_foreign = ipv4_udp([198, 19, 3, 1], [198, 19, 4, 1], 63, true, 8);
        assert_eq!(
            decapsulate(&t, peer, &spoofed_and_foreign),
            Ingress::Drop(DropReason::Spoofed)
        );
        let foreign = ipv4_udp(V4_B, [198, 19, 4, 1], 63, true, 8);
        assert_eq!(
            decapsulate(&t, peer, &foreign),
            Ingress::Drop(DropReason::NotLocal)
        );
        // A source in our own subnet never routes to a peer.
        let own = ipv4_udp([198, 19, 1, 2], V4_A, 63, true, 8);
        assert_eq!(
            decapsulate(&t, peer, &own),
            Ingress::Drop(DropReason::Spoofed)
        );
        // IPv6 the same way.
        assert_eq!(
            decapsulate(&t, peer, &ipv6_udp(V6_B, V6_A, 63, 8)),
            Ingress::Deliver(id)
        );
        assert_eq!(
            decapsulate(&t, peer, &ipv6_udp(V6_A, V6_A, 63, 8)),
            Ingress::Drop(DropReason::Spoofed)
        );
    }

    #[test]
    fn mutated_packets_never_panic() {
        let t = table();
        let peer: SocketAddr = PEER.parse().unwrap();
        let seeds = [
            ipv4_udp(V4_A, V4_B, 64, true, 40),
            ipv4_icmp(V4_A, [198, 19, 3, 1], 8, 0),
            ipv6_udp(V6_A, V6_B, 64, 40),
            ipv6_raw(
                V6_A,
                V6_B,
                0,
                &[44, 0, 1, 4, 0, 0, 0, 0, 58, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0],
            ),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut enc = Encapsulator::new(60, 1_000_000);
        let mut reply = [0u8; MAX_LEN];
        for round in 0..50_000u64 {
            let mut pkt = seeds[(round % 4) as usize].clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % pkt.len();
                pkt[i] = next() as u8;
            }
            // Keep the length fields consistent half of the time so the deeper checks run.
            if round % 2 == 0 {
                let len = pkt.len();
                if pkt[0] >> 4 == 4 {
                    pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                } else {
                    pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
                }
            }
            pkt.truncate(pkt.len() - (next() as usize % 3));
            let _ = decapsulate(&t, peer, &pkt);
            let _ = crate::icmp::build(
                IcmpKind::NoRoute,
                t.router_addr(false).unwrap(),
                &pkt,
                &mut reply,
            );
            let _ = enc.encapsulate(&t, &mut pkt, &mut reply, NOW + round);
        }
    }
}
