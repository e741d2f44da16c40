//! An io_uring that owns the buffers its operations use.
//!
//! The `io-uring` crate's `SubmissionQueue::push` is `unsafe` because the kernel reads and
//! writes an operation's buffers until its completion arrives. [`Ring`] holds that invariant in
//! one place: it owns a fixed array of slots (a [`SLOT_SIZE`] buffer, iovecs, message headers,
//! control buffers and a socket address each), counts a slot's operations from submission to
//! completion, hands out a slot's bytes only while none is in flight, and on drop cancels what
//! is in flight and waits for it before freeing anything. Every operation of a slot points
//! into that slot, except a TUN write that gathers a merged run from several
//! ([`Ring::writev_pieces`]): it holds each other slot it points into until its own slot is
//! idle.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use datapath::batch::{Piece, RecvMeta, Span, MAX_SPANS, SLOT_SIZE};
use datapath::offload::MAX_SEGMENTS;
use io_uring::{opcode, squeue, types, IoUring};
use socket2::SockAddr;

use super::cmsg::{self, CmsgBuf};
use super::{fill_iovs, fill_piece_iovs};

/// The kind of operation a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read = 1,
    Write = 2,
    Send = 3,
    Recv = 4,
    /// Not an operation: a slot that a gathering write held is idle again.
    Release = 5,
}

/// A file registered with a [`Ring`]: its index in the `files` given to [`Ring::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File(pub u32);

impl File {
    fn fixed(self) -> types::Fixed {
        types::Fixed(self.0)
    }
}

/// One finished operation: its slot, its kind, how many datagrams or packets it carried
/// (sends and writes) and the kernel's result (bytes, or `-errno`).
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub slot: usize,
    pub op: Op,
    pub count: u16,
    pub result: i32,
    /// This was the slot's last operation in flight: the slot is idle now.
    pub idle: bool,
}

const CANCEL_USER_DATA: u64 = u64::MAX;
/// Message headers per slot: one per datagram of a super-packet sent without GSO.
const MSGS: usize = MAX_SEGMENTS;
/// Receives [`Ring::recv_now`] takes at most in one call.
pub const MMSGS: usize = 64;

/// A slot's message state. Self-referential (headers point at the iovecs, the address and
/// the control buffers beside them), so slots live in a boxed slice that never moves.
#[repr(C)]
struct Meta {
    hdrs: [libc::msghdr; MSGS],
    cmsgs: [CmsgBuf; MSGS],
    iovs: [libc::iovec; MAX_SPANS],
    addr: libc::sockaddr_storage,
    /// iovecs taken by the operations in flight.
    iovs_used: usize,
    /// Operations in flight, and holds of gathering writes of other slots.
    pending: u32,
    /// The other slots this slot's writes point into, held until this one is idle: a write
    /// gathers a run merged across receives, and only the last run that starts in a slot
    /// can reach into later ones, so at most `MAX_SEGMENTS - 1` of them.
    holds: [u16; MAX_SEGMENTS],
    held: usize,
}

pub struct Ring {
    ring: IoUring,
    bufs: Box<[u8]>,
    metas: Box<[Meta]>,
    /// Headers for [`Ring::recv_now`]'s `recvmmsg`, copies of the slots' own.
    mmsgs: Box<[libc::mmsghdr]>,
    in_flight: usize,
}

impl Ring {
    /// A ring with `entries` submission entries and `slots` slots, and `files` registered
    /// with it: an operation names one by its index ([`File`]), and the kernel skips taking
    /// and dropping a reference to the file on every operation (`IOSQE_FIXED_FILE`).
    ///
    /// # Errors
    /// When io_uring cannot be set up: kernel without it, `kernel.io_uring_disabled`, or a
    /// seccomp profile that forbids `io_uring_setup` (EPERM / ENOSYS).
    pub fn new(entries: u32, slots: usize, files: &[RawFd]) -> io::Result<Ring> {
        let cq = entries.max(slots as u32) * 2;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_cqsize(cq)
            .build(entries)
            .or_else(|_| IoUring::builder().setup_cqsize(cq).build(entries))?;
        if !files.is_empty() {
            ring.submitter().register_files(files)?;
        }
        let metas: Box<[Meta]> = (0..slots)
            .map(|_| {
                // SAFETY: msghdr, iovec and sockaddr_storage are plain C structs and the
                // rest integers or byte arrays: all-zero bytes are a valid (empty) value.
                unsafe { mem::zeroed() }
            })
            .collect();
        let mmsgs = (0..MMSGS)
            .map(|_| {
                // SAFETY: mmsghdr is a plain C struct: all-zero bytes are a valid (empty) value.
                unsafe { mem::zeroed() }
            })
            .collect();
        Ok(Ring {
            ring,
            bufs: super::slot_memory(slots * SLOT_SIZE),
            metas,
            mmsgs,
            in_flight: 0,
        })
    }

    /// The bytes of an idle slot, to write into.
    ///
    /// # Panics
    /// If the slot has an operation in flight (a bug in the caller's slot bookkeeping).
    pub fn buf_mut(&mut self, slot: usize) -> &mut [u8] {
        assert_eq!(self.metas[slot].pending, 0, "slot {slot} is in flight");
        &mut self.bufs[slot * SLOT_SIZE..(slot + 1) * SLOT_SIZE]
    }

    /// Queues a read from `file` into `slot` at `range` (offset, length).
    pub fn read(&mut self, file: File, slot: usize, range: (usize, usize)) -> io::Result<()> {
        let ptr = self.bufs[slot * SLOT_SIZE + range.0..].as_mut_ptr();
        let sqe = opcode::Read::new(file.fixed(), ptr, range.1 as u32).build();
        self.push(sqe, Op::Read, slot, 1)
    }

    /// Queues a `writev` of `spans` of `slot` to `file`, one packet or a super-packet of
    /// `packets`.
    pub fn writev(
        &mut self,
        file: File,
        slot: usize,
        packets: u16,
        spans: &[Span],
    ) -> io::Result<()> {
        let (iov, n) = self.take_iovs(slot, spans)?;
        let sqe = opcode::Writev::new(file.fixed(), iov, n as u32).build();
        self.push(sqe, Op::Write, slot, packets)
    }

    /// Queues a `writev` of `pieces` to `file`: one packet, or a super-packet of `packets`
    /// merged from several receives. The first piece's slot owns the operation; every other
    /// slot it points into is held (busy) until that slot is idle again.
    pub fn writev_pieces(&mut self, file: File, packets: u16, pieces: &[Piece]) -> io::Result<()> {
        let (owner, iov, n, before) = self.take_piece_iovs(pieces)?;
        let sqe = opcode::Writev::new(file.fixed(), iov, n as u32).build();
        self.push_held(sqe, Op::Write, owner, packets, before)
    }

    /// Queues a `sendmsg` of `pieces` to `addr` on socket `file`, with message header `msg` of
    /// the first piece's slot (each send of a slot in flight needs its own), which owns the
    /// operation; every other slot it points into is held (busy) until that slot is idle again
    /// (as [`Ring::writev_pieces`]). `shape` = (`UDP_SEGMENT` size, 0 for one datagram;
    /// datagrams carried, the count a failed send drops), as `datapath::batch::group_shape`
    /// gives it.
    pub fn send(
        &mut self,
        file: File,
        msg: usize,
        pieces: &[Piece],
        addr: &SockAddr,
        (segment_size, datagrams): (u16, u16),
    ) -> io::Result<()> {
        if msg >= MSGS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "message index"));
        }
        let (owner, iov, n, before) = self.take_piece_iovs(pieces)?;
        let hdr = self.message(owner, msg, addr, iov, n, segment_size);
        let sqe = opcode::SendMsg::new(file.fixed(), hdr).build();
        self.push_held(sqe, Op::Send, owner, datagrams, before)
    }

    /// The iovecs of `pieces` in their first slot's list, and the other slots they point into
    /// added to its holds: (owner, iovecs, count, holds before). Undone by
    /// [`Ring::push_held`] if the operation is not queued.
    fn take_piece_iovs(
        &mut self,
        pieces: &[Piece],
    ) -> io::Result<(usize, *mut libc::iovec, usize, usize)> {
        let Some(owner) = pieces.first().map(|p| usize::from(p.slot)) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no pieces"));
        };
        let m = &mut self.metas[owner];
        let at = m.iovs_used;
        if at + pieces.len() > MAX_SPANS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many spans",
            ));
        }
        let before = m.held;
        for p in pieces {
            if usize::from(p.slot) != owner && !m.holds[..m.held].contains(&p.slot) {
                let Some(h) = m.holds.get_mut(m.held) else {
                    m.held = before;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "too many slots",
                    ));
                };
                *h = p.slot;
                m.held += 1;
            }
        }
        let bufs = &self.bufs;
        let n = fill_piece_iovs(
            pieces,
            |s| &bufs[usize::from(s) * SLOT_SIZE..(usize::from(s) + 1) * SLOT_SIZE],
            &mut m.iovs[at..],
        );
        m.iovs_used = at + n;
        Ok((owner, &raw mut m.iovs[at], n, before))
    }

    /// Pushes an operation of `owner` whose pieces [`Ring::take_piece_iovs`] took, and marks
    /// the slots it holds busy; if it cannot be queued, drops the holds it added.
    fn push_held(
        &mut self,
        sqe: squeue::Entry,
        op: Op,
        owner: usize,
        count: u16,
        before: usize,
    ) -> io::Result<()> {
        if let Err(e) = self.push(sqe, op, owner, count) {
            self.metas[owner].held = before;
            return Err(e);
        }
        for i in before..self.metas[owner].held {
            let h = usize::from(self.metas[owner].holds[i]);
            self.metas[h].pending += 1;
        }
        Ok(())
    }

    /// Whether `slot` has nothing in flight and is held by no write.
    pub fn is_idle(&self, slot: usize) -> bool {
        self.metas[slot].pending == 0
    }

    /// Queues a `recvmsg` of one (GRO: coalesced) datagram on socket `file` into `slot` at
    /// `range`; [`Ring::recv_meta`] tells about it after the completion.
    pub fn recv(&mut self, file: File, slot: usize, range: (usize, usize)) -> io::Result<()> {
        let hdr = self.recv_header(slot, range);
        let sqe = opcode::RecvMsg::new(file.fixed(), hdr).build();
        self.push(sqe, Op::Recv, slot, 1)
    }

    /// Sets up `slot`'s first message header to receive one datagram (or GRO train) at
    /// `range` of its buffer, with its source address and the `UDP_GRO` control message.
    fn recv_header(&mut self, slot: usize, range: (usize, usize)) -> *mut libc::msghdr {
        let ptr = self.bufs[slot * SLOT_SIZE + range.0..].as_mut_ptr();
        let m = &mut self.metas[slot];
        m.iovs[0] = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: range.1,
        };
        let hdr = &mut m.hdrs[0];
        hdr.msg_name = (&raw mut m.addr).cast();
        hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_iov = &raw mut m.iovs[0];
        hdr.msg_iovlen = 1;
        hdr.msg_flags = 0;
        cmsg::expect_gro(hdr, &mut m.cmsgs[0]);
        hdr
    }

    /// Receives what is queued on socket `fd` now, without waiting: one `recvmmsg` into the
    /// idle `slots` (at most [`MMSGS`]), each at `range`; slot `slots[i]` gets `lens[i]`
    /// bytes, and [`Ring::recv_meta`] tells the rest. Returns how many slots were filled.
    /// Meant for a socket with no receive of this ring in flight, so that nothing overtakes.
    ///
    /// # Errors
    /// The receive's error, but for EAGAIN and EINTR (nothing received); `InvalidInput` when
    /// a slot is in flight.
    pub fn recv_now(
        &mut self,
        fd: BorrowedFd<'_>,
        slots: &[usize],
        range: (usize, usize),
        lens: &mut [usize],
    ) -> io::Result<usize> {
        let k = slots.len().min(lens.len()).min(self.mmsgs.len());
        for (i, &slot) in slots[..k].iter().enumerate() {
            if self.metas[slot].pending > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "slot in flight",
                ));
            }
            self.recv_header(slot, range);
            self.mmsgs[i] = libc::mmsghdr {
                msg_hdr: self.metas[slot].hdrs[0],
                msg_len: 0,
            };
        }
        // SAFETY: each of the first `k` headers is a copy of an idle slot's own, pointing at
        // that slot's iovec (into its buffer), address storage and control buffer, all owned
        // by the ring, sized as the header says and touched by nothing else during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.mmsgs.as_mut_ptr(),
                k as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = match super::cvt(n) {
            Ok(n) => n as usize,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        for (i, &slot) in slots[..n].iter().enumerate() {
            let got = &self.mmsgs[i];
            let hdr = &mut self.metas[slot].hdrs[0];
            hdr.msg_namelen = got.msg_hdr.msg_namelen;
            hdr.msg_controllen = got.msg_hdr.msg_controllen;
            hdr.msg_flags = got.msg_hdr.msg_flags;
            lens[i] = got.msg_len as usize;
        }
        Ok(n)
    }

    /// What the finished receive of `len` bytes into `slot` said: source, truncation, GRO size.
    pub fn recv_meta(&self, slot: usize, len: usize) -> RecvMeta {
        let m = &self.metas[slot];
        assert_eq!(m.pending, 0, "slot {slot} is in flight");
        let hdr = &m.hdrs[0];
        RecvMeta {
            len,
            from: super::socket_addr(&m.addr, hdr.msg_namelen),
            truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
            stride: cmsg::gro_size(hdr),
        }
    }

    /// Submits what is queued and waits until at least one completion is there or `timeout`
    /// passes. Interrupted and timed-out waits are not errors.
    pub fn submit_and_wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves every available completion into `out` (appending); a slot whose last operation
    /// completed is idle again.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        let start = out.len();
        self.collect(out);
        // A slot gone idle lets go of the slots its writes gathered from, which may go idle
        // in turn: `out` is the work list.
        let mut i = start;
        while i < out.len() {
            if out[i].idle {
                self.release_holds(out[i].slot, out);
            }
            i += 1;
        }
    }

    fn release_holds(&mut self, slot: usize, out: &mut Vec<Completion>) {
        let (holds, held) = (self.metas[slot].holds, self.metas[slot].held);
        self.metas[slot].held = 0;
        for &h in &holds[..held] {
            let m = &mut self.metas[usize::from(h)];
            if m.pending > 0 {
                m.pending -= 1;
                if m.pending == 0 {
                    m.iovs_used = 0;
                    out.push(Completion {
                        slot: usize::from(h),
                        op: Op::Release,
                        count: 0,
                        result: 0,
                        idle: true,
                    });
                }
            }
        }
    }

    fn collect(&mut self, out: &mut Vec<Completion>) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let data = cqe.user_data();
            if data == CANCEL_USER_DATA {
                continue;
            }
            let slot = (data & 0xffff_ffff) as usize;
            let count = ((data >> 32) & 0xffff) as u16;
            let op = match data >> 48 {
                1 => Op::Read,
                2 => Op::Write,
                3 => Op::Send,
                _ => Op::Recv,
            };
            let mut idle = false;
            if let Some(m) = self.metas.get_mut(slot) {
                if m.pending > 0 {
                    m.pending -= 1;
                    self.in_flight -= 1;
                    if m.pending == 0 {
                        m.iovs_used = 0;
                        idle = true;
                    }
                }
            }
            out.push(Completion {
                slot,
                op,
                count,
                result: cqe.result(),
                idle,
            });
        }
    }

    /// Sets up message header `msg` of `slot` to send `iov` (`n` iovecs) to `addr`, with
    /// `UDP_SEGMENT = segment_size` unless it is 0.
    fn message(
        &mut self,
        slot: usize,
        msg: usize,
        addr: &SockAddr,
        iov: *mut libc::iovec,
        n: usize,
        segment_size: u16,
    ) -> *mut libc::msghdr {
        let m = &mut self.metas[slot];
        let alen = (addr.len() as usize).min(mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: both pointers are valid for `alen` bytes (SockAddr's storage is a
        // sockaddr_storage, and alen is clamped to its size) and do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                (&raw mut m.addr).cast::<u8>(),
                alen,
            );
        }
        let hdr = &mut m.hdrs[msg];
        hdr.msg_name = (&raw mut m.addr).cast();
        hdr.msg_namelen = alen as libc::socklen_t;
        hdr.msg_iov = iov;
        hdr.msg_iovlen = n;
        hdr.msg_flags = 0;
        cmsg::set_segment_size(hdr, &mut m.cmsgs[msg], segment_size);
        hdr
    }

    /// Points the slot's next free iovecs at `spans` of its buffer.
    fn take_iovs(&mut self, slot: usize, spans: &[Span]) -> io::Result<(*mut libc::iovec, usize)> {
        let m = &mut self.metas[slot];
        let at = m.iovs_used;
        if at + spans.len() > MAX_SPANS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many spans",
            ));
        }
        let buf = &self.bufs[slot * SLOT_SIZE..(slot + 1) * SLOT_SIZE];
        let n = fill_iovs(buf, spans, &mut m.iovs[at..]);
        m.iovs_used = at + n;
        Ok((&raw mut m.iovs[at], n))
    }

    fn push(&mut self, sqe: squeue::Entry, op: Op, slot: usize, count: u16) -> io::Result<()> {
        let data = ((op as u64) << 48) | (u64::from(count) << 32) | slot as u64;
        let sqe = sqe.user_data(data);
        if self.ring.submission().is_full() {
            self.ring.submit()?;
        }
        // SAFETY: the entry points into `self.bufs` and `self.metas[slot]`, which live as long
        // as the ring and do not move (boxed slices); the slot counts the operation as pending
        // below, so nothing hands out or rewrites its memory until the completion arrives, and
        // `Drop` waits for every in-flight operation before the memory is freed.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::new(io::ErrorKind::WouldBlock, "submission queue full"))?;
        self.metas[slot].pending += 1;
        self.in_flight += 1;
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.cancel_in_flight();
        // The kernel tears a ring down later, in a worker, and drops its registered files
        // there: without this, a TUN would outlive the close of its last descriptor.
        let _ = self.ring.submitter().unregister_files();
    }
}

impl Ring {
    /// Cancels what is in flight and waits (at most 2 s) for it to finish.
    fn cancel_in_flight(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(CANCEL_USER_DATA);
        // SAFETY: a cancel request carries no buffer.
        let _ = unsafe { self.ring.submission().push(&cancel) };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut sink = Vec::new();
        while self.in_flight > 0 && Instant::now() < deadline {
            let _ = self.submit_and_wait(Duration::from_millis(50));
            sink.clear();
            self.completions(&mut sink);
        }
        if self.in_flight > 0 {
            // The kernel may still write into the slots: leak them rather than free memory
            // that is in use.
            mem::forget(mem::take(&mut self.bufs));
            mem::forget(mem::take(&mut self.metas));
        }
    }
}
