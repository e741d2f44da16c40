//! The per-packet decisions of both directions.
//!
//! Egress (TUN → peer): [`Encapsulator::encapsulate`] validates a packet read from the TUN,
//! finds its peer, enforces the tunnel MTU, decrements the TTL in place, or builds the ICMP
//! error that goes back into the TUN instead.
//!
//! Ingress (peer → TUN): [`decapsulate`] checks a received datagram (known peer, well-formed
//! inner packet, inner source inside the sender's subnets, inner destination local) before it
//! may be written to the TUN.

use std::net::SocketAddr;

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
    /// Write the datagram, unchanged, to the TUN.
    Deliver,
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
        if pkt.len() > self.tunnel_mtu && pkt.dont_fragment() {
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
    let Some(peer) = table.peer_by_addr(from) else {
        return Ingress::Drop(DropReason::UnknownPeer);
    };
    let Ok(pkt) = IpPacket::new_checked(datagram) else {
        return Ingress::Drop(DropReason::Malformed);
    };
    if table.lookup(pkt.src_addr()) != Some(peer) {
        return Ingress::Drop(DropReason::Spoofed);
    }
    if !table.is_local(pkt.dst_addr()) {
        return Ingress::Drop(DropReason::NotLocal);
    }
    Ingress::Deliver
}
