//! The io_uring engine: every TUN read, TUN write, `sendmsg` and `recvmsg` is a queued
//! operation on a slot the ring owns; one `io_uring_enter` submits a whole batch and collects
//! whatever has completed.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use datapath::batch::{group_shape, send_groups, EgressBatch, IngressBatch, Piece, MAX_SPANS};
use datapath::DropReason;

use super::{gso_refused, Ctx, DropLog, Sched, BATCH, SUPER_BATCH, SUPER_BYTES, TICK};
use crate::sys::mmsg;
use crate::sys::uring::{Completion, File, Op, Ring, MMSGS};

/// Slots per ring: reads (or receives) kept in flight plus room for sends and writes in flight.
const SLOTS: usize = 4 * BATCH;
const ENTRIES: u32 = 2 * SLOTS as u32;

/// Whether io_uring can be set up here (a ring of the size the loops use).
pub fn probe() -> io::Result<()> {
    Ring::new(ENTRIES, 1, &[]).map(drop)
}

/// Reads (or receives) kept in flight: a fixed number, not [`super::BatchSize`]'s, because
/// every read or receive armed on an empty TUN or socket is one more wait-queue entry that
/// each packet arriving there wakes (docs/profiling.md), and with offloads 4 are as fast as
/// 64 and a packet waits behind less. A burst of single datagrams is taken with one
/// `recvmmsg` instead ([`drain_udp`]), a burst of small packets with `read`s ([`drain_tun`]).
fn in_flight(ctx: &Ctx) -> usize {
    if ctx.offloads.tun.tso {
        SUPER_BATCH
    } else {
        BATCH
    }
}

/// The files every ring registers ([`Slots::new`]).
const TUN: File = File(0);
const UDP: File = File(1);

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

/// A loop's ring and the slots it does not use.
struct Slots {
    ring: Ring,
    free: FreeSlots,
    done: Vec<Completion>,
}

impl Slots {
    /// A ring with the TUN and the UDP socket registered as [`TUN`] and [`UDP`].
    fn new(ctx: &Ctx) -> io::Result<Slots> {
        let files = [ctx.tun.as_raw_fd(), ctx.udp.as_raw_fd()];
        Ok(Slots {
            ring: Ring::new(ENTRIES, SLOTS, &files)?,
            free: FreeSlots::all(SLOTS),
            done: Vec::with_capacity(2 * SLOTS),
        })
    }

    /// Submits, waits for completions (at most [`TICK`]) and collects them.
    fn round(&mut self) -> io::Result<()> {
        self.ring.submit_and_wait(TICK)?;
        self.done.clear();
        self.ring.completions(&mut self.done);
        Ok(())
    }

    /// Frees the slot of `c` if that was its last operation in flight.
    fn release(&mut self, c: &Completion) {
        if c.idle {
            self.free.push(c.slot);
        }
    }
}

/// TUN → peers, until the stop flag is set.
///
/// Keeps [`in_flight`] TUN reads in flight; each round hands every completed read (and in a
/// flood what is queued behind them) to the egress batch, queues the sends it asks for
/// (grouped by peer) and any ICMP error back into the TUN, re-arms the reads, and submits it
/// all with one `io_uring_enter`.
pub fn egress(ctx: Ctx) -> io::Result<()> {
    let mut slots = Slots::new(&ctx)?;
    let mut batch = ctx.egress_batch();
    let range = batch.read_range();
    let (mut reads, size) = (0, in_flight(&ctx));
    let mut pieces = Vec::with_capacity(MAX_SPANS);
    let mut log = DropLog::new("egress");
    let mut sched = Sched::start("egress", &ctx);
    while !ctx.stopped() {
        while reads < size {
            let Some(slot) = slots.free.pop() else { break };
            slots.ring.read(TUN, slot, range)?;
            reads += 1;
        }
        slots.round()?;
        let table = ctx.table.load();
        let now = ctx.now_ns();
        batch.clear();
        let (mut got, mut bytes) = (0, 0);
        for i in 0..slots.done.len() {
            let c = slots.done[i];
            match c.op {
                Op::Read => {
                    reads -= 1;
                    if c.result > 0 {
                        (got, bytes) = (got + 1, bytes + c.result as usize);
                        let buf = slots.ring.buf_mut(c.slot);
                        if batch.push(&table, c.slot as u16, buf, c.result as usize, now) {
                            continue;
                        }
                    } else if c.result < 0 && ![-libc::EAGAIN, -libc::EINTR].contains(&c.result) {
                        // The device is gone (EBADFD) or broken: end the thread, so the
                        // dataplane stops with this error instead of re-arming failing reads.
                        return Err(super::tun_error(io::Error::from_raw_os_error(-c.result)));
                    }
                }
                Op::Send if c.result < 0 => {
                    batch.local.drops[DropReason::SendError as usize] += u64::from(c.count);
                    gso_refused(&mut batch, -c.result);
                }
                Op::Write if c.result >= 0 => batch.local.icmp_sent += 1,
                _ => {}
            }
            slots.release(&c);
        }
        // Every read in flight came back with one small packet (a flood, not a TCP stream's
        // super-packets): more may be queued behind them, and reading them now lets a batch
        // of them leave as one GSO send per peer ([`send_groups`]) instead of one per 4.
        if reads == 0 && got == size && bytes / got <= SUPER_BYTES {
            got += drain_tun(&ctx, &mut slots, &mut batch, &table, now, BATCH - got)?;
        }
        sched.tick(now, got);
        queue_egress(&ctx, &mut slots.ring, &mut batch, &table, &mut pieces)?;
        // Every round, also one with only send or ICMP completions, so the counters never lag.
        log.note(&batch.local);
        ctx.counters.absorb(&mut batch.local);
    }
    Ok(())
}

/// Reads up to `want` packets queued on the TUN now, one `read` each into free slots, and
/// hands them to the batch behind the round's own; returns how many it read. Only while no
/// read is in flight, so that nothing overtakes.
fn drain_tun(
    ctx: &Ctx,
    slots: &mut Slots,
    batch: &mut EgressBatch,
    table: &datapath::Table,
    now: u64,
    want: usize,
) -> io::Result<usize> {
    let (at, room) = batch.read_range();
    let mut n = 0;
    while n < want {
        let Some(slot) = slots.free.pop() else { break };
        let buf = slots.ring.buf_mut(slot);
        match mmsg::read(ctx.tun.as_fd(), &mut buf[at..at + room]) {
            Ok(len) => {
                n += 1;
                if batch.push(table, slot as u16, buf, len, now) {
                    continue;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                slots.free.push(slot);
                break;
            }
            Err(e) => return Err(super::tun_error(e)),
        }
        slots.free.push(slot);
    }
    Ok(n)
}

/// Queues the batch's ICMP errors into the TUN and its sends, grouped by peer; single
/// datagrams of one length to one peer go as one GSO send that points into all their slots
/// ([`send_groups`]). `pieces` is room for a send's pieces.
fn queue_egress(
    ctx: &Ctx,
    ring: &mut Ring,
    batch: &mut EgressBatch,
    table: &datapath::Table,
    pieces: &mut Vec<Piece>,
) -> io::Result<()> {
    for &(slot, span) in batch.replies() {
        ring.writev(TUN, usize::from(slot), 1, &[span])?;
    }
    let gso = batch.gso();
    let mut res = Ok(());
    batch.for_each_peer_run(table, |peer, run, spans| {
        let addr = ctx.peer_sockaddr(peer.addr);
        for group in send_groups(run, spans, gso) {
            if res.is_err() {
                return;
            }
            pieces.clear();
            for s in group {
                let of_slot = |&span| Piece { slot: s.slot, span };
                pieces.extend(s.spans_of(spans).iter().map(of_slot));
            }
            let (part, shape) = (usize::from(group[0].part), group_shape(group, spans));
            res = ring.send(UDP, part, pieces, &addr, shape);
        }
    });
    res
}

/// Peers → TUN, until the stop flag is set.
///
/// Keeps up to [`BATCH`] receives in flight (fewer for GRO trains); each round hands every
/// received datagram (or GRO train) to the ingress batch, queues the TUN writes it asks for,
/// re-arms the receives, and submits it all at once.
pub fn ingress(ctx: Ctx) -> io::Result<()> {
    let mut slots = Slots::new(&ctx)?;
    let mut batch = ctx.ingress_batch();
    let range = batch.recv_range();
    let (mut recvs, size) = (0, in_flight(&ctx));
    let mut kept = Vec::with_capacity(SLOTS);
    let mut log = DropLog::new("ingress");
    let mut sched = Sched::start("ingress", &ctx);
    while !ctx.stopped() {
        while recvs < size {
            let Some(slot) = slots.free.pop() else { break };
            slots.ring.recv(UDP, slot, range)?;
            recvs += 1;
        }
        slots.round()?;
        if slots.done.is_empty() {
            // A timeout: a thread lowered in a flood is raised again while idle.
            sched.tick(ctx.now_ns(), 0);
            continue;
        }
        let table = ctx.table.load();
        batch.clear();
        let (mut got, mut bytes) = (0, 0);
        for i in 0..slots.done.len() {
            let c = slots.done[i];
            match c.op {
                Op::Recv => {
                    recvs -= 1;
                    if c.result > 0 {
                        (got, bytes) = (got + 1, bytes + c.result as usize);
                    }
                    if c.result >= 0 {
                        let meta = slots.ring.recv_meta(c.slot, c.result as usize);
                        let buf = slots.ring.buf_mut(c.slot);
                        if batch.push(&table, c.slot as u16, buf, meta) {
                            kept.push(c.slot);
                            continue;
                        }
                    } else if c.result != -libc::EAGAIN && c.result != -libc::EINTR {
                        // A queued ICMP error (ECONNREFUSED and the like) ends no dataplane.
                        let e = io::Error::from_raw_os_error(-c.result);
                        tracing::debug!("UDP receive failed: {e}");
                    }
                }
                Op::Write if c.result < 0 => {
                    batch.local.drops[DropReason::TunWriteError as usize] += u64::from(c.count);
                }
                _ => {}
            }
            slots.release(&c);
        }
        // Every receive came back with a single datagram (not a GRO train): more may be
        // queued behind them, and one `recvmmsg` takes a batch of it.
        if recvs == 0 && got > 0 && bytes / got <= SUPER_BYTES {
            got += drain_udp(&ctx, &mut slots, &mut batch, &table, &mut kept, BATCH - got);
        }
        sched.tick(ctx.now_ns(), got);
        let ring = &mut slots.ring;
        batch.finish(|slot, at, bytes| {
            if let Some(to) = ring
                .buf_mut(usize::from(slot))
                .get_mut(at..at + bytes.len())
            {
                to.copy_from_slice(bytes);
            }
        });
        queue_ingress(&mut slots.ring, &batch)?;
        // A kept slot that no write points into after all is free again; the others are
        // freed by the completion that leaves them idle.
        for slot in kept.drain(..) {
            if slots.ring.is_idle(slot) {
                slots.free.push(slot);
            }
        }
        batch.count_peers(&table);
        log.note(&batch.local);
        ctx.counters.absorb(&mut batch.local);
    }
    Ok(())
}

/// Receives up to `want` datagrams queued on the socket now, with one `recvmmsg` into free
/// slots, and hands them to the batch behind the round's own; returns how many it took.
fn drain_udp(
    ctx: &Ctx,
    slots: &mut Slots,
    batch: &mut IngressBatch,
    table: &datapath::Table,
    kept: &mut Vec<usize>,
    want: usize,
) -> usize {
    let (mut take, mut lens) = ([0usize; MMSGS], [0usize; MMSGS]);
    let mut k = 0;
    while k < want.min(MMSGS) {
        let Some(slot) = slots.free.pop() else { break };
        take[k] = slot;
        k += 1;
    }
    let range = batch.recv_range();
    let n = slots
        .ring
        .recv_now(ctx.udp.as_fd(), &take[..k], range, &mut lens[..k])
        .unwrap_or_else(|e| {
            tracing::debug!("UDP receive failed: {e}");
            0
        });
    for (&slot, &len) in take[..n].iter().zip(&lens) {
        let meta = slots.ring.recv_meta(slot, len);
        if batch.push(table, slot as u16, slots.ring.buf_mut(slot), meta) {
            kept.push(slot);
        } else {
            slots.free.push(slot);
        }
    }
    for &slot in &take[n..k] {
        slots.free.push(slot);
    }
    n
}

fn queue_ingress(ring: &mut Ring, batch: &IngressBatch) -> io::Result<()> {
    for w in batch.writes() {
        ring.writev_pieces(TUN, w.packets, batch.pieces(w))?;
    }
    Ok(())
}
