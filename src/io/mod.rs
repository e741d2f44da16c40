//! The hot loops: egress (TUN → UDP) and ingress (UDP → TUN), one thread each, over io_uring
//! ([`uring`]) or, where io_uring cannot be set up, readiness with mmsg batches ([`poll`]).
//!
//! Both engines share the shape of a batch: collect what completed, load the route table once,
//! decide every packet with the pure `datapath` functions, group the sends by peer, submit them
//! together, and fold the batch's counters into the shared ones once.

pub mod poll;
pub mod uring;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datapath::batch::Outgoing;
use datapath::{Counters, DropReason, LocalCounters, PeerId, SharedTable, Table};
use socket2::SockAddr;

use crate::netdev::Tun;

/// Packets decided per batch at most, and datagrams per `sendmmsg`/`recvmmsg`.
pub const BATCH: usize = 64;
/// Bytes per packet buffer: any IP packet fits (MTU up to 65535).
pub const SLOT_SIZE: usize = 65536;
/// ICMP errors per second each egress thread may send.
const ICMP_PER_SEC: u32 = 100;
/// How long a loop sleeps at most before it looks at the stop flag again.
const TICK: Duration = Duration::from_millis(100);

/// A TUN read error, saying where it came from. Any but EAGAIN/EINTR ends the egress thread:
/// the device is gone (EBADFD) or broken, and re-trying would spin.
fn tun_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("reading the TUN device: {e}"))
}

/// What a datapath thread needs; cloned into each.
#[derive(Clone)]
pub struct Ctx {
    pub tun: Arc<Tun>,
    pub udp: Arc<std::net::UdpSocket>,
    pub table: Arc<SharedTable>,
    pub counters: Arc<Counters>,
    pub stop: Arc<AtomicBool>,
    /// The largest inner packet the underlay carries without fragmenting.
    pub tunnel_mtu: usize,
    /// The socket is IPv6 dual-stack: IPv4 peers are addressed as IPv4-mapped IPv6.
    pub map_v4: bool,
    pub epoch: Instant,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn encapsulator(&self) -> datapath::Encapsulator {
        datapath::Encapsulator::new(self.tunnel_mtu, ICMP_PER_SEC)
    }

    /// The socket address a peer is sent to on this socket.
    fn peer_sockaddr(&self, addr: SocketAddr) -> SockAddr {
        match addr {
            SocketAddr::V4(v4) if self.map_v4 => {
                SockAddr::from(SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()))
            }
            a => SockAddr::from(a),
        }
    }
}

/// Groups a batch's sends into runs by peer (counted on the peer) and calls `f` once per run
/// with the peer's socket address, converted once per run, not per packet.
fn for_each_peer_run(
    ctx: &Ctx,
    table: &Table,
    sends: &mut [Outgoing],
    mut f: impl FnMut(&SockAddr, &[Outgoing]),
) {
    datapath::batch::for_each_peer_run(table, sends, |peer, run| {
        f(&ctx.peer_sockaddr(peer.addr), run)
    });
}

/// Per-peer receive counts of one ingress batch, added to the peers' counters once per batch.
struct PeerTally(Vec<(PeerId, u64, u64)>);

impl PeerTally {
    fn new() -> Self {
        PeerTally(Vec::with_capacity(BATCH))
    }

    fn add(&mut self, peer: PeerId, bytes: usize) {
        // A batch holds few distinct peers: a linear scan beats hashing.
        match self.0.iter_mut().find(|(p, _, _)| *p == peer) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += bytes as u64;
            }
            None => self.0.push((peer, 1, bytes as u64)),
        }
    }

    /// Adds the batch to the peers of `table` (the version the batch was decided with).
    fn flush(&mut self, table: &Table) {
        for &(peer, packets, bytes) in &self.0 {
            table.peer(peer).counters.add_rx(packets, bytes);
        }
        self.0.clear();
    }
}

/// Logs drops at a bounded rate: at most one summary line per second per thread, with the
/// counts since the previous line.
struct DropLog {
    name: &'static str,
    last: Instant,
    pending: [u64; DropReason::COUNT],
}

impl DropLog {
    fn new(name: &'static str) -> Self {
        DropLog {
            name,
            last: Instant::now(),
            pending: [0; DropReason::COUNT],
        }
    }

    /// Call with the batch's counters just before they are absorbed.
    fn note(&mut self, local: &LocalCounters) {
        for (p, d) in self.pending.iter_mut().zip(local.drops) {
            *p += d;
        }
        if self.pending.iter().all(|&d| d == 0) || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        let summary: Vec<String> = DropReason::ALL
            .iter()
            .zip(self.pending)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        tracing::warn!(path = self.name, "dropped packets: {}", summary.join(" "));
        self.pending = [0; DropReason::COUNT];
        self.last = Instant::now();
    }
}
