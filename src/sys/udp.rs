//! Options of the underlay UDP socket that socket2 does not offer.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Socket buffers of `bytes`, past `net.core.[rw]mem_max` when privileged (the `*BUFFORCE`
/// options), else as large as the limits allow: bursts of a batch must not overflow them.
pub fn set_buffers(fd: BorrowedFd<'_>, bytes: usize) {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int(fd, libc::SOL_SOCKET, force, v).is_err() {
            let _ = set_int(fd, libc::SOL_SOCKET, plain, v);
        }
    }
}

/// Lets the kernel fragment outer datagrams instead of refusing them: tundra enforces the
/// tunnel MTU itself (ICMP too big), so only an IPv4 inner packet without DF can be larger,
/// and that one is allowed to fragment.
pub fn allow_fragmentation(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        set_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        )?;
    }
    // An IPv6 socket may also carry IPv4 (dual-stack); where it does not, this fails harmlessly.
    let r = set_int(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    );
    if ipv6 {
        Ok(())
    } else {
        r
    }
}

/// Whether the kernel takes `UDP_SEGMENT` on this socket (Linux 4.18+): setting a socket-wide
/// segment size is refused where sends could not carry one. The size set here is cleared
/// again: each send that wants GSO says its own size in a control message.
pub fn probe_gso(fd: BorrowedFd<'_>) -> bool {
    let ok = set_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 1400).is_ok();
    ok && set_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok()
}

/// Asks the kernel to hand over coalesced datagrams (Linux 5.0+), each receive with a
/// `UDP_GRO` control message that gives the segment size.
///
/// # Errors
/// The `setsockopt` error: the kernel has no UDP GRO.
pub fn enable_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
}
