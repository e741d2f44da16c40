//! An io_uring that owns the buffers its operations use.
//!
//! The `io-uring` crate's `SubmissionQueue::push` is `unsafe` because the kernel reads and
//! writes an operation's buffers until its completion arrives. [`Ring`] holds that invariant in
//! one place: it owns a fixed array of equal-sized slots (buffer + `msghdr` + socket address),
//! marks a slot busy from submission to completion, hands out a slot's bytes only while it is
//! not busy, and on drop cancels what is in flight and waits for it before freeing anything.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};
use socket2::SockAddr;

/// The kind of operation a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read = 1,
    Write = 2,
    Send = 3,
    Recv = 4,
}

/// One finished operation: its slot, its kind and the kernel's result (bytes, or `-errno`).
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub slot: usize,
    pub op: Op,
    pub result: i32,
}

const CANCEL_USER_DATA: u64 = u64::MAX;

/// Per-slot message header for `sendmsg`/`recvmsg`. Self-referential (the header points at the
/// iovec and the address beside it), so slots live in a boxed slice that never moves.
#[repr(C)]
struct MsgSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
}

pub struct Ring {
    ring: IoUring,
    slot_size: usize,
    bufs: Box<[u8]>,
    msgs: Box<[MsgSlot]>,
    busy: Box<[bool]>,
    in_flight: usize,
}

impl Ring {
    /// A ring with `entries` submission entries and `slots` buffers of `slot_size` bytes.
    ///
    /// # Errors
    /// When io_uring cannot be set up: kernel without it, `kernel.io_uring_disabled`, or a
    /// seccomp profile that forbids `io_uring_setup` (EPERM / ENOSYS).
    pub fn new(entries: u32, slots: usize, slot_size: usize) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_cqsize(entries.max(slots as u32) * 2)
            .build(entries)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(entries.max(slots as u32) * 2)
                    .build(entries)
            })?;
        // SAFETY: msghdr, iovec and sockaddr_storage are plain C structs for which all-zero
        // bytes are a valid (empty) value.
        let empty: MsgSlot = unsafe { mem::zeroed() };
        let mut msgs: Box<[MsgSlot]> = (0..slots).map(|_| empty_copy(&empty)).collect();
        let mut bufs = vec![0u8; slots * slot_size].into_boxed_slice();
        for (i, m) in msgs.iter_mut().enumerate() {
            m.iov.iov_base = bufs[i * slot_size..].as_mut_ptr().cast();
            m.iov.iov_len = slot_size;
            m.hdr.msg_iov = &mut m.iov;
            m.hdr.msg_iovlen = 1;
            m.hdr.msg_name = (&mut m.addr as *mut libc::sockaddr_storage).cast();
        }
        Ok(Ring {
            ring,
            slot_size,
            bufs,
            msgs,
            busy: vec![false; slots].into_boxed_slice(),
            in_flight: 0,
        })
    }

    /// The bytes of an idle slot.
    ///
    /// # Panics
    /// If the slot has an operation in flight (a bug in the caller's slot bookkeeping).
    pub fn buf(&self, slot: usize) -> &[u8] {
        assert!(!self.busy[slot], "slot {slot} is in flight");
        &self.bufs[slot * self.slot_size..(slot + 1) * self.slot_size]
    }

    /// The bytes of an idle slot, to write into. Panics like [`Ring::buf`].
    pub fn buf_mut(&mut self, slot: usize) -> &mut [u8] {
        assert!(!self.busy[slot], "slot {slot} is in flight");
        &mut self.bufs[slot * self.slot_size..(slot + 1) * self.slot_size]
    }

    /// Queues a read of one packet from `fd` into `slot`.
    pub fn read(&mut self, fd: RawFd, slot: usize) -> io::Result<()> {
        let ptr = self.claim(slot)?;
        let sqe = opcode::Read::new(types::Fd(fd), ptr, self.slot_size as u32).build();
        self.push(sqe, Op::Read, slot)
    }

    /// Queues a write of the first `len` bytes of `slot` to `fd`.
    pub fn write(&mut self, fd: RawFd, slot: usize, len: usize) -> io::Result<()> {
        let len = len.min(self.slot_size);
        let ptr = self.claim(slot)?;
        let sqe = opcode::Write::new(types::Fd(fd), ptr, len as u32).build();
        self.push(sqe, Op::Write, slot)
    }

    /// Queues a `sendmsg` of the first `len` bytes of `slot` to `addr` on socket `fd`.
    pub fn send_to(
        &mut self,
        fd: RawFd,
        slot: usize,
        len: usize,
        addr: &SockAddr,
    ) -> io::Result<()> {
        self.claim(slot)?;
        let m = &mut self.msgs[slot];
        m.iov.iov_len = len.min(self.slot_size);
        let alen = (addr.len() as usize).min(mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: both pointers are valid for `alen` bytes (SockAddr's storage is a
        // sockaddr_storage, and alen is clamped to its size) and do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                (&mut m.addr as *mut libc::sockaddr_storage).cast::<u8>(),
                alen,
            );
        }
        m.hdr.msg_namelen = alen as libc::socklen_t;
        m.hdr.msg_flags = 0;
        let sqe = opcode::SendMsg::new(types::Fd(fd), &m.hdr).build();
        self.push(sqe, Op::Send, slot)
    }

    /// Queues a `recvmsg` of one datagram on socket `fd` into `slot`; its source is
    /// [`Ring::source`] after the completion.
    pub fn recv_from(&mut self, fd: RawFd, slot: usize) -> io::Result<()> {
        self.claim(slot)?;
        let m = &mut self.msgs[slot];
        m.iov.iov_len = self.slot_size;
        m.hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        m.hdr.msg_flags = 0;
        let sqe = opcode::RecvMsg::new(types::Fd(fd), &mut m.hdr).build();
        self.push(sqe, Op::Recv, slot)
    }

    /// The source address of the datagram a finished `recv_from` put into `slot`, and whether it
    /// was truncated (larger than the slot). `None` for an address that is not IP.
    pub fn source(&self, slot: usize) -> Option<(SocketAddr, bool)> {
        assert!(!self.busy[slot], "slot {slot} is in flight");
        let m = &self.msgs[slot];
        let truncated = m.hdr.msg_flags & libc::MSG_TRUNC != 0;
        super::socket_addr(&m.addr, m.hdr.msg_namelen).map(|a| (a, truncated))
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

    /// Moves every available completion into `out` (appending) and frees their slots.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let data = cqe.user_data();
            if data == CANCEL_USER_DATA {
                continue;
            }
            let slot = (data & 0xffff_ffff) as usize;
            let op = match data >> 32 {
                1 => Op::Read,
                2 => Op::Write,
                3 => Op::Send,
                _ => Op::Recv,
            };
            if slot < self.busy.len() && self.busy[slot] {
                self.busy[slot] = false;
                self.in_flight -= 1;
            }
            out.push(Completion {
                slot,
                op,
                result: cqe.result(),
            });
        }
    }

    fn claim(&mut self, slot: usize) -> io::Result<*mut u8> {
        if slot >= self.busy.len() || self.busy[slot] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "slot busy or out of range",
            ));
        }
        Ok(self.bufs[slot * self.slot_size..].as_mut_ptr())
    }

    fn push(&mut self, sqe: squeue::Entry, op: Op, slot: usize) -> io::Result<()> {
        let sqe = sqe.user_data(((op as u64) << 32) | slot as u64);
        if self.ring.submission().is_full() {
            self.ring.submit()?;
        }
        // SAFETY: the entry points into `self.bufs` / `self.msgs[slot]`, which live as long as
        // the ring and do not move (boxed slices); the slot is marked busy below, so nothing
        // hands out or rewrites its memory until the completion frees it, and `Drop` waits for
        // every in-flight operation before the memory is freed.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::new(io::ErrorKind::WouldBlock, "submission queue full"))?;
        self.busy[slot] = true;
        self.in_flight += 1;
        Ok(())
    }
}

fn empty_copy(m: &MsgSlot) -> MsgSlot {
    // SAFETY: MsgSlot is plain old data (raw pointers and integers); a bitwise copy of the
    // zeroed template is a valid zeroed slot.
    unsafe { std::ptr::read(m) }
}

impl Drop for Ring {
    fn drop(&mut self) {
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
            mem::forget(mem::take(&mut self.msgs));
        }
    }
}
