//! The readiness fallback's batched I/O: `recvmmsg`/`sendmmsg` on the UDP socket (with the
//! GSO and GRO control messages), and one `read` or `writev` per packet or super-packet on the
//! TUN descriptor (a TUN has no batch call).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

use datapath::batch::{
    group_shape, send_groups, Piece, RecvMeta, Send, Span, MAX_SPANS, SLOT_SIZE,
};
use socket2::SockAddr;

use super::cmsg::{self, CmsgBuf};
use super::{cvt, fill_iovs, fill_piece_iovs};

/// Reads one packet from `fd` into `buf`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
    let n = cvt(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// Writes the `spans` of `buf` to `fd` as one packet.
pub fn writev(fd: BorrowedFd<'_>, buf: &[u8], spans: &[Span]) -> io::Result<usize> {
    let mut iovs = [zeroed::<libc::iovec>(); MAX_SPANS];
    let n = fill_iovs(buf, spans, &mut iovs);
    // SAFETY: the first `n` iovecs point into `buf`, borrowed for the call; the kernel only
    // reads them.
    let n = cvt(unsafe { libc::writev(fd.as_raw_fd(), iovs.as_ptr(), n as libc::c_int) })?;
    Ok(n as usize)
}

/// `writev(2)` of `pieces`, each in the buffer `buf` gives for its slot (a run merged across
/// receives gathers from several).
pub fn writev_pieces<'a>(
    fd: BorrowedFd<'_>,
    pieces: &[Piece],
    buf: impl Fn(u16) -> &'a [u8],
) -> io::Result<usize> {
    let mut iovs = [zeroed::<libc::iovec>(); MAX_SPANS];
    let n = fill_piece_iovs(pieces, buf, &mut iovs);
    // SAFETY: the first `n` iovecs point into buffers borrowed for the call; the kernel only
    // reads them.
    let n = cvt(unsafe { libc::writev(fd.as_raw_fd(), iovs.as_ptr(), n as libc::c_int) })?;
    Ok(n as usize)
}

/// A zeroed C struct of the kinds used here.
fn zeroed<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` is only implemented for plain C structs (integers and raw pointers)
    // for which all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}

trait Zeroable {}
impl Zeroable for libc::iovec {}
impl Zeroable for libc::sockaddr_storage {}
impl Zeroable for libc::mmsghdr {}

/// Slot buffers of [`SLOT_SIZE`] bytes, allocated once.
pub struct Slots(Box<[u8]>);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots(super::slot_memory(n * SLOT_SIZE))
    }

    pub fn get(&self, slot: usize) -> &[u8] {
        &self.0[slot * SLOT_SIZE..(slot + 1) * SLOT_SIZE]
    }

    pub fn get_mut(&mut self, slot: usize) -> &mut [u8] {
        &mut self.0[slot * SLOT_SIZE..(slot + 1) * SLOT_SIZE]
    }
}

/// Up to `n` receives with one `recvmmsg`, each into its own slot at `range`, with room for
/// the `UDP_GRO` control message.
///
/// The message headers point into the batch's own boxed slices, which never move.
pub struct RecvBatch {
    slots: Slots,
    /// Only pointed to by `hdrs`; kept alive here.
    _iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    cmsgs: Box<[CmsgBuf]>,
    hdrs: Box<[libc::mmsghdr]>,
    count: usize,
}

impl RecvBatch {
    pub fn new(n: usize, range: (usize, usize)) -> RecvBatch {
        let mut slots = Slots::new(n);
        let mut iovs: Box<[libc::iovec]> = (0..n).map(|_| zeroed()).collect();
        let mut addrs: Box<[libc::sockaddr_storage]> = (0..n).map(|_| zeroed()).collect();
        let cmsgs: Box<[CmsgBuf]> = (0..n).map(|_| CmsgBuf::new()).collect();
        let mut hdrs: Box<[libc::mmsghdr]> = (0..n).map(|_| zeroed()).collect();
        for i in 0..n {
            iovs[i].iov_base = slots.get_mut(i)[range.0..].as_mut_ptr().cast();
            iovs[i].iov_len = range.1;
            hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        }
        RecvBatch {
            slots,
            _iovs: iovs,
            addrs,
            cmsgs,
            hdrs,
            count: 0,
        }
    }

    /// Receives what is waiting, up to `limit` messages (at most the batch size), without
    /// blocking. `Ok(0)`: nothing was waiting.
    pub fn recv(&mut self, fd: BorrowedFd<'_>, limit: usize) -> io::Result<usize> {
        self.count = 0;
        for (h, c) in self.hdrs.iter_mut().zip(self.cmsgs.iter_mut()) {
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            cmsg::expect_gro(&mut h.msg_hdr, c);
            h.msg_len = 0;
        }
        // SAFETY: every header points at this batch's own iovec, buffer, address storage and
        // control buffer, sized as the header says, all alive and unaliased for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                limit.min(self.hdrs.len()) as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match cvt(n) {
            Ok(n) => self.count = n as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(self.count)
    }

    /// The buffer of slot `i`.
    pub fn slot(&self, i: usize) -> &[u8] {
        self.slots.get(i)
    }

    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        self.slots.get_mut(i)
    }

    /// Receive `i` of the last [`RecvBatch::recv`]: its slot buffer and what the kernel said.
    pub fn get(&mut self, i: usize) -> Option<(&mut [u8], RecvMeta)> {
        if i >= self.count {
            return None;
        }
        let h = &self.hdrs[i];
        let meta = RecvMeta {
            len: h.msg_len as usize,
            from: super::socket_addr(&self.addrs[i], h.msg_hdr.msg_namelen),
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            stride: cmsg::gro_size(&h.msg_hdr),
        };
        Some((self.slots.get_mut(i), meta))
    }
}

/// Scratch space for [`SendBatch::send`]: headers, iovecs and control buffers for up to `n`
/// messages.
pub struct SendBatch {
    iovs: Box<[libc::iovec]>,
    cmsgs: Box<[CmsgBuf]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Per header: the datagrams it carries, and whether it is a GSO send.
    carries: Box<[(u16, bool)]>,
}

/// What a [`SendBatch::send`] could not send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unsent {
    /// Datagrams the kernel refused.
    pub datagrams: u64,
    /// The error of a refused GSO send, if one was.
    pub gso_errno: Option<i32>,
}

impl SendBatch {
    pub fn new(n: usize) -> SendBatch {
        SendBatch {
            iovs: (0..n * MAX_SPANS).map(|_| zeroed()).collect(),
            cmsgs: (0..n).map(|_| CmsgBuf::new()).collect(),
            hdrs: (0..n).map(|_| zeroed()).collect(),
            carries: vec![(0, false); n].into_boxed_slice(),
        }
    }

    /// Sends every one of `sends` to `addr` with as few `sendmmsg` calls as the batch size
    /// allows; a send's bytes are its `spans` of the buffer `slot(send.slot)`. Where `gso`,
    /// single datagrams of one length go as one GSO send ([`send_groups`]). A send the kernel
    /// refuses is counted and skipped; the rest go on.
    pub fn send<'a>(
        &mut self,
        fd: BorrowedFd<'_>,
        slot: impl Fn(usize) -> &'a [u8],
        sends: &[Send],
        spans: &[Span],
        addr: &SockAddr,
        gso: bool,
    ) -> Unsent {
        let mut unsent = Unsent::default();
        let mut groups = send_groups(sends, spans, gso).peekable();
        while groups.peek().is_some() {
            let (mut n, mut iov_at) = (0, 0);
            while n < self.hdrs.len() {
                let Some(group) = groups.next() else { break };
                let start = iov_at;
                for s in group {
                    let buf = slot(usize::from(s.slot));
                    iov_at += fill_iovs(buf, s.spans_of(spans), &mut self.iovs[iov_at..]);
                }
                let (size, datagrams) = group_shape(group, spans);
                let h = &mut self.hdrs[n].msg_hdr;
                h.msg_iov = &mut self.iovs[start];
                h.msg_iovlen = iov_at - start;
                h.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_namelen = addr.len();
                cmsg::set_segment_size(h, &mut self.cmsgs[n], size);
                self.carries[n] = (datagrams, size != 0);
                n += 1;
            }
            let mut done = 0;
            while done < n {
                // SAFETY: headers done..n point at the slot buffers borrowed for `'a` and at
                // the address, both outliving this call, and at iovecs and control buffers in
                // `self`; the kernel only reads them.
                let r = unsafe {
                    libc::sendmmsg(
                        fd.as_raw_fd(),
                        self.hdrs[done..n].as_mut_ptr(),
                        (n - done) as libc::c_uint,
                        0,
                    )
                };
                match cvt(r) {
                    Ok(r) => done += r as usize,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let (datagrams, gso) = self.carries[done];
                        unsent.datagrams += u64::from(datagrams);
                        if gso {
                            unsent.gso_errno = e.raw_os_error();
                        }
                        done += 1;
                    }
                }
            }
        }
        unsent
    }
}
