//! The readiness fallback's batched I/O: `recvmmsg`/`sendmmsg` on the UDP socket, and single
//! reads and writes on the TUN descriptor (a TUN without offloads moves one packet per call).

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockAddr;

/// Reads one packet from `fd` into `buf`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes one packet to `fd`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
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

/// Up to `n` datagrams received with one `recvmmsg`, in buffers this batch owns.
///
/// The message headers point into the batch's own boxed slices, which never move.
pub struct RecvBatch {
    slot_size: usize,
    bufs: Box<[u8]>,
    /// Only pointed to by `hdrs`; kept alive here.
    _iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
    count: usize,
}

impl RecvBatch {
    pub fn new(n: usize, slot_size: usize) -> RecvBatch {
        let mut bufs = vec![0u8; n * slot_size].into_boxed_slice();
        let mut iovs: Box<[libc::iovec]> = (0..n).map(|_| zeroed()).collect();
        let mut addrs: Box<[libc::sockaddr_storage]> = (0..n).map(|_| zeroed()).collect();
        let mut hdrs: Box<[libc::mmsghdr]> = (0..n).map(|_| zeroed()).collect();
        for i in 0..n {
            iovs[i].iov_base = bufs[i * slot_size..].as_mut_ptr().cast();
            iovs[i].iov_len = slot_size;
            hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        }
        RecvBatch {
            slot_size,
            bufs,
            _iovs: iovs,
            addrs,
            hdrs,
            count: 0,
        }
    }

    /// Receives what is waiting, up to the batch size, without blocking. `Ok(0)`: nothing was
    /// waiting.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.count = 0;
        for h in self.hdrs.iter_mut() {
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at this batch's own iovec, buffer and address storage,
        // sized as the header says, all alive and unaliased for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.count = n as usize;
        Ok(self.count)
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: payload, source, truncated.
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>, bool)> {
        if i >= self.count {
            return None;
        }
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.slot_size);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let from = super::socket_addr(&self.addrs[i], h.msg_hdr.msg_namelen);
        Some((
            &self.bufs[i * self.slot_size..i * self.slot_size + len],
            from,
            truncated,
        ))
    }
}

/// Scratch space for [`SendBatch::send`]: headers and iovecs for up to `n` datagrams.
pub struct SendBatch {
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

/// What a [`SendBatch::send`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub packets: u64,
    pub bytes: u64,
    pub failed: u64,
}

impl SendBatch {
    pub fn new(n: usize) -> SendBatch {
        SendBatch {
            iovs: (0..n).map(|_| zeroed()).collect(),
            hdrs: (0..n).map(|_| zeroed()).collect(),
        }
    }

    /// Sends every `(payload, destination)` with as few `sendmmsg` calls as the batch size
    /// allows. A datagram the kernel refuses is counted as failed and skipped; the rest go on.
    pub fn send<'a>(
        &mut self,
        fd: BorrowedFd<'_>,
        packets: impl IntoIterator<Item = (&'a [u8], &'a SockAddr)>,
    ) -> Sent {
        let mut sent = Sent::default();
        let mut packets = packets.into_iter().peekable();
        while packets.peek().is_some() {
            let mut n = 0;
            while n < self.hdrs.len() {
                let Some((payload, addr)) = packets.next() else {
                    break;
                };
                self.iovs[n].iov_base = payload.as_ptr() as *mut libc::c_void;
                self.iovs[n].iov_len = payload.len();
                let h = &mut self.hdrs[n].msg_hdr;
                h.msg_iov = &mut self.iovs[n];
                h.msg_iovlen = 1;
                h.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_namelen = addr.len();
                n += 1;
            }
            let mut done = 0;
            while done < n {
                // SAFETY: headers 0..n point at payloads and addresses borrowed for `'a`, which
                // outlives this call, and at iovecs in `self`; the kernel only reads them.
                let r = unsafe {
                    libc::sendmmsg(
                        fd.as_raw_fd(),
                        self.hdrs[done..n].as_mut_ptr(),
                        (n - done) as libc::c_uint,
                        0,
                    )
                };
                if r < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    sent.failed += 1;
                    done += 1;
                } else {
                    for h in &self.hdrs[done..done + r as usize] {
                        sent.packets += 1;
                        sent.bytes += u64::from(h.msg_len);
                    }
                    done += r as usize;
                }
            }
        }
        sent
    }
}
