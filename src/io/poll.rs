//! The readiness engine, for where io_uring cannot be set up (`kernel.io_uring_disabled`, or a
//! container runtime's seccomp profile): epoll through mio, `sendmmsg`/`recvmmsg` batches on
//! the UDP socket. A TUN without offloads has no batch call: each packet is one `read` or
//! `write` there, which is what io_uring saves.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use datapath::{decapsulate, DropReason, Egress, Ingress, LocalCounters};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{for_each_peer_run, Ctx, DropLog, Outgoing, PeerTally, BATCH, SLOT_SIZE, TICK};
use crate::sys::mmsg::{self, RecvBatch, SendBatch};

fn wait(poll: &mut Poll, events: &mut Events) -> io::Result<()> {
    match poll.poll(events, Some(TICK)) {
        Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
        _ => Ok(()),
    }
}

/// TUN → peers, until the stop flag is set. The TUN descriptor must be non-blocking.
pub fn egress(ctx: Ctx) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let tun_fd = ctx.tun.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&tun_fd), Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let tun = ctx.tun.as_fd();
    let udp = ctx.udp.as_fd();
    let mut enc = ctx.encapsulator();
    let mut bufs = vec![0u8; BATCH * SLOT_SIZE].into_boxed_slice();
    let mut lens = [0usize; BATCH];
    let mut sends: Vec<Outgoing> = Vec::with_capacity(BATCH);
    let mut out = SendBatch::new(BATCH);
    let mut reply = vec![0u8; datapath::icmp::MAX_LEN];
    let mut local = LocalCounters::default();
    let mut log = DropLog::new("egress");

    while !ctx.stopped() {
        wait(&mut poll, &mut events)?;
        // Edge-triggered: drain the TUN until it would block.
        loop {
            let mut n = 0;
            while n < BATCH {
                match mmsg::read(tun, &mut bufs[n * SLOT_SIZE..(n + 1) * SLOT_SIZE]) {
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
            if n == 0 {
                break;
            }

            let table = ctx.table.load();
            let now = ctx.now_ns();
            sends.clear();
            for (i, &len) in lens[..n].iter().enumerate() {
                let packet = &mut bufs[i * SLOT_SIZE..i * SLOT_SIZE + len];
                match enc.encapsulate(&table, packet, &mut reply, now) {
                    Egress::Send(peer) => sends.push(Outgoing {
                        peer,
                        seq: i as u16,
                        slot: i as u16,
                        len: len as u16,
                    }),
                    Egress::Reply { len, reason } => {
                        local.drop(reason);
                        if mmsg::write(tun, &reply[..len]).is_ok() {
                            local.icmp_sent += 1;
                        }
                    }
                    Egress::Drop(reason) => local.drop(reason),
                }
            }
            let bufs = &bufs;
            for_each_peer_run(&ctx, &table, &mut sends, |addr, run| {
                let packets = run.iter().map(|o| {
                    let at = usize::from(o.slot) * SLOT_SIZE;
                    (&bufs[at..at + usize::from(o.len)], addr)
                });
                let sent = out.send(udp, packets);
                local.tx_packets += sent.packets;
                local.tx_bytes += sent.bytes;
                local.drops[DropReason::SendError as usize] += sent.failed;
            });
            log.note(&local);
            ctx.counters.absorb(&mut local);
            if n < BATCH {
                break;
            }
        }
    }
    Ok(())
}

/// Peers → TUN, until the stop flag is set.
pub fn ingress(ctx: Ctx) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let udp_fd = ctx.udp.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&udp_fd), Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let tun = ctx.tun.as_fd();
    let udp = ctx.udp.as_fd();
    let mut batch = RecvBatch::new(BATCH, SLOT_SIZE);
    let mut local = LocalCounters::default();
    let mut log = DropLog::new("ingress");
    let mut tally = PeerTally::new();

    while !ctx.stopped() {
        wait(&mut poll, &mut events)?;
        // Edge-triggered: drain the socket until it would block.
        loop {
            let n = batch.recv(udp)?;
            if n == 0 {
                break;
            }
            let table = ctx.table.load();
            for i in 0..n {
                let Some((payload, from, truncated)) = batch.get(i) else {
                    break;
                };
                let verdict = match from {
                    _ if truncated => Ingress::Drop(DropReason::Malformed),
                    Some(from) => decapsulate(&table, from, payload),
                    None => Ingress::Drop(DropReason::UnknownPeer),
                };
                match verdict {
                    Ingress::Deliver(peer) => match mmsg::write(tun, payload) {
                        Ok(_) => {
                            tally.add(peer, payload.len());
                            local.rx_packets += 1;
                            local.rx_bytes += payload.len() as u64;
                        }
                        Err(_) => local.drop(DropReason::TunWriteError),
                    },
                    Ingress::Drop(reason) => local.drop(reason),
                }
            }
            tally.flush(&table);
            log.note(&local);
            ctx.counters.absorb(&mut local);
            if n < BATCH {
                break;
            }
        }
    }
    Ok(())
}
