//! The hot loops: egress (TUN → UDP) and ingress (UDP → TUN), one thread each, over io_uring
//! ([`uring`]) or, where io_uring cannot be set up, readiness with mmsg batches ([`poll`]).
//!
//! Both engines share one decision step, `datapath::batch`: collect what completed, load the
//! route table once, hand every slot to the batch, then move the bytes it asks for (sends
//! grouped by peer, GSO sends, TUN writes of merged super-packets) and fold the batch's
//! counters into the shared ones once. An engine decides nothing itself.

pub mod poll;
mod sched;
pub mod uring;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datapath::batch::{EgressBatch, IngressBatch};
use datapath::{Counters, DropReason, LocalCounters, SharedTable};
use socket2::SockAddr;

use crate::config::{CpuList, Priority};
use crate::tun::Tun;

use sched::Sched;

/// Packets decided per batch at most, and messages per `sendmmsg`/`recvmmsg`.
pub const BATCH: usize = 64;
/// The same while the traffic is super-packets and GRO trains, each up to 64 KiB: a batch is
/// what a packet waits behind, and 64 of them would be 4 MiB, milliseconds at 10 Gb/s.
pub const SUPER_BATCH: usize = 4;
/// Reads (or receives) averaging more than this are super-packets or GRO trains.
pub(crate) const SUPER_BYTES: usize = 16 << 10;
/// ICMP errors per second each egress thread may send.
const ICMP_PER_SEC: u32 = 100;
/// How long a loop sleeps at most before it looks at the stop flag again.
const TICK: Duration = Duration::from_millis(100);

/// The offloads a dataplane uses: what the kernel granted the TUN and the UDP socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    pub tun: crate::tun::TunOffloads,
    /// Sends may carry `UDP_SEGMENT`.
    pub udp_gso: bool,
    /// Receives may be coalesced (`UDP_GRO`).
    pub udp_gro: bool,
}

impl Offloads {
    /// Whether anything was granted.
    pub fn any(&self) -> bool {
        self.tun.tso || self.tun.uso || self.udp_gso || self.udp_gro
    }
}

/// A UDP send that the kernel refused because it cannot segment it: the batch falls back to
/// one datagram per segment (once, logged). EIO and EINVAL: no segmentation on this path
/// (older kernels without software checksums for GSO); EMSGSIZE: the path MTU dropped below
/// the segment size, and only single datagrams may be fragmented.
fn gso_refused(batch: &mut EgressBatch, errno: i32) {
    if batch.gso() && matches!(errno, libc::EIO | libc::EINVAL | libc::EMSGSIZE) {
        tracing::warn!(
            "the kernel refused a UDP GSO send ({}); sending one datagram per segment from now on",
            io::Error::from_raw_os_error(errno)
        );
        batch.disable_gso();
    }
}

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
    /// The offloads in use.
    pub offloads: Offloads,
    /// The wire format.
    pub encap: datapath::Encap,
    /// How the datapath threads are scheduled.
    pub priority: Priority,
    /// The CPUs the datapath threads run on; `None`: any.
    pub cpus: Option<CpuList>,
    pub epoch: Instant,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn egress_batch(&self) -> EgressBatch {
        let enc = datapath::Encapsulator::new(self.tunnel_mtu, ICMP_PER_SEC);
        EgressBatch::new(
            enc,
            self.encap,
            self.offloads.tun.tso,
            self.offloads.udp_gso,
        )
    }

    fn ingress_batch(&self) -> IngressBatch {
        IngressBatch::new(self.encap, self.offloads.tun.tso, self.offloads.tun.uso)
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

/// How many reads (or receives) the readiness engine's next batch takes: [`BATCH`] small
/// packets, or [`SUPER_BATCH`] when the last batch carried super-packets or GRO trains, so
/// small packets keep their large batches and big ones do not make a packet wait behind
/// megabytes.
struct BatchSize(usize);

impl BatchSize {
    fn new() -> Self {
        BatchSize(BATCH)
    }

    fn get(&self) -> usize {
        self.0
    }

    /// After a batch of `n` reads (or receives) of `bytes` in all.
    fn update(&mut self, n: usize, bytes: usize) {
        if let Some(average) = bytes.checked_div(n) {
            self.0 = if average > SUPER_BYTES {
                SUPER_BATCH
            } else {
                BATCH
            };
        }
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
