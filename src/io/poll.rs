//! The readiness fallback: mio (epoll, edge-triggered) and batches of `recvmmsg`/`sendmmsg` on
//! the UDP socket, with GSO and GRO where granted. A TUN has no batch call: each packet (or
//! super-packet, with offloads) is one `read` or `writev` there, which is what io_uring saves.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use datapath::DropReason;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{gso_refused, BatchSize, Ctx, DropLog, Sched, BATCH, TICK};
use crate::sys::mmsg::{self, RecvBatch, SendBatch, Slots};

fn wait(poll: &mut Poll, events: &mut Events) -> io::Result<()> {
    match poll.poll(events, Some(TICK)) {
        Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
        _ => Ok(()),
    }
}

fn register(fd: &impl AsRawFd) -> io::Result<(Poll, Events)> {
    let poll = Poll::new()?;
    let raw = fd.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&raw), Token(0), Interest::READABLE)?;
    Ok((poll, Events::with_capacity(4)))
}

/// TUN → peers, until the stop flag is set. The TUN descriptor must be non-blocking.
pub fn egress(ctx: Ctx) -> io::Result<()> {
    let (mut poll, mut events) = register(&*ctx.tun)?;
    let tun = ctx.tun.as_fd();
    let udp = ctx.udp.as_fd();
    let mut batch = ctx.egress_batch();
    let (at, max) = batch.read_range();
    let mut slots = Slots::new(BATCH);
    let mut lens = [0usize; BATCH];
    let mut size = BatchSize::new();
    let mut out = SendBatch::new(BATCH);
    let mut unsent = Vec::with_capacity(BATCH);
    let mut log = DropLog::new("egress");
    let mut sched = Sched::start("egress", &ctx);

    while !ctx.stopped() {
        wait(&mut poll, &mut events)?;
        // Edge-triggered: drain the TUN until it would block.
        loop {
            let (mut n, limit) = (0, size.get());
            while n < limit {
                match mmsg::read(tun, &mut slots.get_mut(n)[at..at + max]) {
                    Ok(len) => {
                        lens[n] = len;
                        n += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // The device is gone (EBADFD) or broken: the dataplane stops with it.
                    Err(e) => return Err(super::tun_error(e)),
                }
            }
            let now = ctx.now_ns();
            // Also with nothing read (a timeout): a thread lowered in a flood is raised again
            // while idle.
            sched.tick(now, n);
            if n == 0 {
                break;
            }
            size.update(n, lens[..n].iter().sum());

            let table = ctx.table.load();
            batch.clear();
            for (i, &len) in lens[..n].iter().enumerate() {
                let _ = batch.push(&table, i as u16, slots.get_mut(i), len, now);
            }
            let replies = batch.replies().iter();
            let sent = replies
                .filter(|(slot, span)| {
                    mmsg::writev(tun, slots.get(usize::from(*slot)), &[*span]).is_ok()
                })
                .count();
            batch.local.icmp_sent += sent as u64;
            unsent.clear();
            let gso = batch.gso();
            batch.for_each_peer_run(&table, |peer, run, spans| {
                let addr = ctx.peer_sockaddr(peer.addr);
                unsent.push(out.send(udp, |s| slots.get(s), run, spans, &addr, gso));
            });
            for u in &unsent {
                batch.local.drops[DropReason::SendError as usize] += u.datagrams;
                if let Some(errno) = u.gso_errno {
                    gso_refused(&mut batch, errno);
                }
            }
            log.note(&batch.local);
            ctx.counters.absorb(&mut batch.local);
            if n < limit {
                break;
            }
        }
    }
    Ok(())
}

/// Peers → TUN, until the stop flag is set.
pub fn ingress(ctx: Ctx) -> io::Result<()> {
    let (mut poll, mut events) = register(&*ctx.udp)?;
    let tun = ctx.tun.as_fd();
    let udp = ctx.udp.as_fd();
    let mut batch = ctx.ingress_batch();
    let mut size = BatchSize::new();
    let mut recv = RecvBatch::new(BATCH, batch.recv_range());
    let mut log = DropLog::new("ingress");
    let mut sched = Sched::start("ingress", &ctx);

    while !ctx.stopped() {
        wait(&mut poll, &mut events)?;
        // Edge-triggered: drain the socket until it would block.
        loop {
            let limit = size.get();
            let n = match recv.recv(udp, limit) {
                Ok(n) => n,
                Err(e) => {
                    // A queued ICMP error (ECONNREFUSED and the like) ends no dataplane; the
                    // next datagram wakes the loop again.
                    tracing::debug!("UDP receive failed: {e}");
                    break;
                }
            };
            // Also with nothing received (a timeout): see egress.
            sched.tick(ctx.now_ns(), n);
            if n == 0 {
                break;
            }
            let table = ctx.table.load();
            batch.clear();
            let mut bytes = 0;
            for i in 0..n {
                if let Some((buf, meta)) = recv.get(i) {
                    bytes += meta.len;
                    let _ = batch.push(&table, i as u16, buf, meta);
                }
            }
            size.update(n, bytes);
            batch.finish(|slot, at, bytes| {
                if let Some(to) = recv
                    .slot_mut(usize::from(slot))
                    .get_mut(at..at + bytes.len())
                {
                    to.copy_from_slice(bytes);
                }
            });
            let mut failed = 0;
            for w in batch.writes() {
                let pieces = batch.pieces(w);
                if mmsg::writev_pieces(tun, pieces, |s| recv.slot(usize::from(s))).is_err() {
                    failed += u64::from(w.packets);
                }
            }
            batch.local.drops[DropReason::TunWriteError as usize] += failed;
            batch.count_peers(&table);
            log.note(&batch.local);
            ctx.counters.absorb(&mut batch.local);
            if n < limit {
                break;
            }
        }
    }
    Ok(())
}
