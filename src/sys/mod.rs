//! Every `unsafe` block of the crate lives below this module.

pub mod cmsg;
pub mod mmsg;
pub mod sched;
pub mod sockopt;
pub mod udp;
pub mod uring;

use std::io;
use std::net::SocketAddr;

/// Turns a libc return value into a result: -1 is the thread's `errno`.
fn cvt<T: Copy + PartialEq + From<i8>>(rc: T) -> io::Result<T> {
    if rc == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// iovecs for `spans` of `buf`, written into `iovs` (which must be at least as long).
fn fill_iovs(buf: &[u8], spans: &[datapath::batch::Span], iovs: &mut [libc::iovec]) -> usize {
    for (iov, span) in iovs.iter_mut().zip(spans) {
        let bytes = span.of(buf);
        iov.iov_base = bytes.as_ptr() as *mut libc::c_void;
        iov.iov_len = bytes.len();
    }
    spans.len().min(iovs.len())
}

/// Points `iovs` at `pieces`, each in the buffer `buf` gives for its slot; returns how many.
fn fill_piece_iovs<'a>(
    pieces: &[datapath::batch::Piece],
    buf: impl Fn(u16) -> &'a [u8],
    iovs: &mut [libc::iovec],
) -> usize {
    for (iov, piece) in iovs.iter_mut().zip(pieces) {
        let bytes = piece.span.of(buf(piece.slot));
        iov.iov_base = bytes.as_ptr() as *mut libc::c_void;
        iov.iov_len = bytes.len();
    }
    pieces.len().min(iovs.len())
}

/// The IP socket address the kernel wrote into `storage` (`len` bytes), if it is one.
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let mut raw = socket2::SockAddrStorage::zeroed();
    let len = len.min(std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t);
    // SAFETY: SockAddrStorage is a transparent wrapper of sockaddr_storage, so viewing it as one
    // is exact; the copy is a plain value copy; `len` is clamped to the storage size, and the
    // bytes up to it were written by the kernel as one socket address.
    let addr = unsafe {
        *raw.view_as::<libc::sockaddr_storage>() = *storage;
        socket2::SockAddr::new(raw, len)
    };
    addr.as_socket()
}

/// Zeroed slot memory of `len` bytes, backed by transparent huge pages where the kernel has
/// them (`MADV_HUGEPAGE`; most distributions enable THP only on request). Every payload byte
/// is copied into and out of these buffers by the kernel; with 4 KiB pages a 64 KiB
/// super-packet spans 16 TLB entries, and in a VM each miss is a two-level page walk.
pub fn slot_memory(len: usize) -> Box<[u8]> {
    const HUGE: usize = 2 << 20;
    let mut buf = vec![0u8; len].into_boxed_slice();
    let start = buf.as_mut_ptr() as usize;
    let (first, end) = (start.next_multiple_of(HUGE), start + len);
    if end >= first + HUGE {
        let whole = (end - first) / HUGE * HUGE;
        // SAFETY: [first, first + whole) lies inside `buf`, which this function owns, and is
        // page-aligned; MADV_HUGEPAGE only changes how the kernel backs those pages, never
        // their content (still zero) or their addresses. Failure (no THP here) is harmless.
        unsafe { libc::madvise(first as *mut libc::c_void, whole, libc::MADV_HUGEPAGE) };
    }
    buf
}

/// Runs `f` with the process's file mode creation mask set to `mask`, then restores the old
/// one. The mask is process-wide: files other threads create meanwhile get it too (it can only
/// make them more private than asked).
pub fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask(2) cannot fail and touches no memory; it only swaps the process's mask.
    let old = unsafe { libc::umask(mask) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    result
}
