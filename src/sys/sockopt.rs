//! Socket options that socket2 does not offer.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Reads the path MTU the kernel knows for a *connected* socket: `IP_MTU` for an IPv4
/// socket, `IPV6_MTU` for an IPv6 one (the MTU of the route towards the connected peer,
/// or a smaller one learned from ICMP "fragmentation needed" / "packet too big").
///
/// # Errors
///
/// `ENOTCONN` if the socket is not connected; any other `getsockopt` error.
pub fn path_mtu(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<u32> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is a live descriptor for the duration of the borrow; `mtu` and `len` are
    // valid, writable and outlive the call, and `len` holds the size of `mtu`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut mtu).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(mtu).map_err(|_| io::Error::other(format!("kernel reported MTU {mtu}")))
}
