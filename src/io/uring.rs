//! The io_uring engine: every TUN read, TUN write, `sendmsg` and `recvmsg` is a queued
//! operation on a slot the ring owns; one `io_uring_enter` submits a whole batch and collects
//! whatever has completed.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use datapath::{decapsulate, DropReason, Ingress, LocalCounters};

use super::{for_each_peer_run, Ctx, DropLog, Outgoing, PeerTally, BATCH, SLOT_SIZE, TICK};
use crate::sys::uring::{Completion, Op, Ring};

/// Slots per ring: reads (or receives) kept in flight plus room for sends and writes in flight.
const SLOTS: usize = 4 * BATCH;
const ENTRIES: u32 = 2 * SLOTS as u32;

/// Whether io_uring can be set up here (a ring of the size the loops use).
pub fn probe() -> io::Result<()> {
    Ring::new(ENTRIES, 1, 64).map(drop)
}

/// Slots not in flight, as a stack.
struct FreeSlots(Vec<u16>);

impl FreeSlots {
    fn all(n: usize) -> Self {
        FreeSlots((0..n as u16).rev().collect())
    }
    fn pop(&mut self) -> Option<usize> {
        self.0.pop().map(usize::from)
    }
    fn push(&mut self, slot: usize) {
        self.0.push(slot as u16);
    }
}

/// TUN → peers, until the stop flag is set.
///
/// Keeps up to [`BATCH`] TUN reads in flight; each round decides every completed read, queues
/// the sends grouped by peer (and any ICMP error back into the TUN), re-arms the reads, and
/// submits it all with one `io_uring_enter`.
pub fn egress(ctx: Ctx) -> io::Result<()> {
    let mut egress = EgressLoop {
        ring: Ring::new(ENTRIES, SLOTS, SLOT_SIZE)?,
        tun: ctx.tun.as_raw_fd(),
        udp: ctx.udp.as_raw_fd(),
        enc: ctx.encapsulator(),
        free: FreeSlots::all(SLOTS),
        reads: 0,
        done: Vec::with_capacity(2 * SLOTS),
        ready: Vec::with_capacity(SLOTS),
        sends: Vec::with_capacity(SLOTS),
        reply: vec![0u8; datapath::icmp::MAX_LEN],
        local: LocalCounters::default(),
        log: DropLog::new("egress"),
        ctx,
    };
    while !egress.ctx.stopped() {
        egress.round()?;
    }
    Ok(())
}

/// The egress loop's state; every buffer is allocated once, before the first round.
struct EgressLoop {
    ctx: Ctx,
    ring: Ring,
    tun: RawFd,
    udp: RawFd,
    enc: datapath::Encapsulator,
    free: FreeSlots,
    /// TUN reads in flight.
    reads: usize,
    done: Vec<Completion>,
    /// `(slot, length)` of the packets read this round.
    ready: Vec<(usize, usize)>,
    sends: Vec<Outgoing>,
    reply: Vec<u8>,
    local: LocalCounters,
    log: DropLog,
}

impl EgressLoop {
    fn round(&mut self) -> io::Result<()> {
        while self.reads < BATCH {
            let Some(slot) = self.free.pop() else { break };
            self.ring.read(self.tun, slot)?;
            self.reads += 1;
        }
        self.ring.submit_and_wait(TICK)?;
        self.done.clear();
        self.ring.completions(&mut self.done);

        self.ready.clear();
        for c in &self.done {
            match c.op {
                Op::Read => {
                    self.reads -= 1;
                    if c.result > 0 {
                        self.ready.push((c.slot, c.result as usize));
                        continue;
                    }
                    if c.result < 0 && ![-libc::EAGAIN, -libc::EINTR].contains(&c.result) {
                        // The device is gone (EBADFD) or broken: end the thread, so the
                        // dataplane stops with this error instead of re-arming failing reads.
                        return Err(super::tun_error(io::Error::from_raw_os_error(-c.result)));
                    }
                }
                Op::Send => {
                    if c.result >= 0 {
                        self.local.tx_packets += 1;
                        self.local.tx_bytes += c.result as u64;
                    } else {
                        self.local.drop(DropReason::SendError);
                    }
                }
                Op::Write => {
                    if c.result >= 0 {
                        self.local.icmp_sent += 1;
                    }
                }
                Op::Recv => {}
            }
            self.free.push(c.slot);
        }
        if !self.ready.is_empty() {
            self.decide()?;
        }
        // Every round, also one with only send or ICMP completions, so the counters never lag.
        self.log.note(&self.local);
        self.ctx.counters.absorb(&mut self.local);
        Ok(())
    }

    /// Decides every packet read this round; queues ICMP errors back into the TUN and the sends
    /// grouped by peer.
    fn decide(&mut self) -> io::Result<()> {
        let table = self.ctx.table.load();
        let now = self.ctx.now_ns();
        self.sends.clear();
        for (seq, &(slot, len)) in self.ready.iter().enumerate() {
            let packet = &mut self.ring.buf_mut(slot)[..len];
            match self.enc.encapsulate(&table, packet, &mut self.reply, now) {
                datapath::Egress::Send(peer) => {
                    let (seq, slot, len) = (seq as u16, slot as u16, len as u16);
                    self.sends.push(Outgoing {
                        peer,
                        seq,
                        slot,
                        len,
                    });
                    continue;
                }
                datapath::Egress::Reply { len, reason } => {
                    self.local.drop(reason);
                    self.ring.buf_mut(slot)[..len].copy_from_slice(&self.reply[..len]);
                    self.ring.write(self.tun, slot, len)?;
                    continue;
                }
                datapath::Egress::Drop(reason) => self.local.drop(reason),
            }
            self.free.push(slot);
        }
        let (ring, udp) = (&mut self.ring, self.udp);
        let mut res = Ok(());
        for_each_peer_run(&self.ctx, &table, &mut self.sends, |addr, run| {
            for o in run {
                if res.is_ok() {
                    res = ring.send_to(udp, usize::from(o.slot), usize::from(o.len), addr);
                }
            }
        });
        res
    }
}

/// Peers → TUN, until the stop flag is set.
///
/// Keeps up to [`BATCH`] receives in flight; each round checks every received datagram, queues
/// the TUN writes of those that pass, re-arms the receives, and submits it all at once.
pub fn ingress(ctx: Ctx) -> io::Result<()> {
    let mut ring = Ring::new(ENTRIES, SLOTS, SLOT_SIZE)?;
    let tun: RawFd = ctx.tun.as_raw_fd();
    let udp: RawFd = ctx.udp.as_raw_fd();
    let mut free = FreeSlots::all(SLOTS);
    let mut recvs = 0usize;
    let mut done: Vec<Completion> = Vec::with_capacity(2 * SLOTS);
    let mut local = LocalCounters::default();
    let mut log = DropLog::new("ingress");
    let mut tally = PeerTally::new();

    while !ctx.stopped() {
        while recvs < BATCH {
            let Some(slot) = free.pop() else { break };
            ring.recv_from(udp, slot)?;
            recvs += 1;
        }
        ring.submit_and_wait(TICK)?;
        done.clear();
        ring.completions(&mut done);
        if done.is_empty() {
            continue;
        }

        let table = ctx.table.load();
        for c in &done {
            match c.op {
                Op::Recv => {
                    recvs -= 1;
                    if c.result >= 0 {
                        let len = c.result as usize;
                        let verdict = match ring.source(c.slot) {
                            Some((from, false)) => {
                                decapsulate(&table, from, &ring.buf(c.slot)[..len])
                            }
                            Some((_, true)) => Ingress::Drop(DropReason::Malformed),
                            None => Ingress::Drop(DropReason::UnknownPeer),
                        };
                        match verdict {
                            Ingress::Deliver(peer) => {
                                tally.add(peer, len);
                                ring.write(tun, c.slot, len)?;
                                continue;
                            }
                            Ingress::Drop(reason) => local.drop(reason),
                        }
                    } else if c.result != -libc::EAGAIN && c.result != -libc::EINTR {
                        tracing::debug!(
                            "UDP receive failed: {}",
                            io::Error::from_raw_os_error(-c.result)
                        );
                    }
                }
                Op::Write => {
                    if c.result >= 0 {
                        local.rx_packets += 1;
                        local.rx_bytes += c.result as u64;
                    } else {
                        local.drop(DropReason::TunWriteError);
                    }
                }
                Op::Read | Op::Send => {}
            }
            free.push(c.slot);
        }
        tally.flush(&table);
        log.note(&local);
        ctx.counters.absorb(&mut local);
    }
    Ok(())
}
