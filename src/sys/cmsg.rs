//! The control messages of UDP GSO and GRO: `UDP_SEGMENT` on a send (the segment size),
//! `UDP_GRO` on a receive (the size the kernel coalesced datagrams at).

/// Control-message space for one `int`-sized message (`UDP_SEGMENT` takes a `u16`, `UDP_GRO`
/// gives an `int`; both fit), aligned as `cmsghdr` must be.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct CmsgBuf([u8; 32]);

impl CmsgBuf {
    pub const fn new() -> CmsgBuf {
        CmsgBuf([0; 32])
    }
}

/// Attaches `UDP_SEGMENT = size` to `hdr` using `buf`, or no control message for `size` 0.
///
/// `buf` must stay where it is until the kernel has read `hdr`.
pub fn set_segment_size(hdr: &mut libc::msghdr, buf: &mut CmsgBuf, size: u16) {
    if size == 0 {
        hdr.msg_control = std::ptr::null_mut();
        hdr.msg_controllen = 0;
        return;
    }
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
    // SAFETY: msg_control points at `buf`, aligned for cmsghdr and larger than CMSG_SPACE(2),
    // so the first header and its 2 data bytes are inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
    }
}

/// Prepares `hdr` to receive a `UDP_GRO` control message into `buf`.
pub fn expect_gro(hdr: &mut libc::msghdr, buf: &mut CmsgBuf) {
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = buf.0.len() as _;
}

/// The `UDP_GRO` segment size the kernel reported in `hdr`'s control messages, or 0.
pub fn gro_size(hdr: &libc::msghdr) -> usize {
    if hdr.msg_control.is_null() {
        return 0;
    }
    // SAFETY: after a receive, msg_control/msg_controllen describe the control messages the
    // kernel wrote into our buffer; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen, and the
    // data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(size).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    0
}
