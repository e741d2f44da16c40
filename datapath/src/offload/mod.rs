//! TUN offloads: the virtio-net header that starts every TUN read and write once the device is
//! opened with `IFF_VNET_HDR`, and the packet work it asks for.
//!
//! With `TUNSETOFFLOAD(CSUM | TSO4 | TSO6 | USO4 | USO6)` the kernel hands us packets whose work
//! it skipped, and takes packets whose work we skip:
//! - egress, a read is either a GSO super-packet of up to 64 KiB (TCP or UDP), which [`segment`]
//!   splits into complete inner packets whose headers it builds apart while their payloads stay
//!   in the read buffer, or a normal packet that may still lack its transport checksum
//!   ([`complete_checksum`]);
//! - ingress, [`GroRun`] merges consecutive TCP segments (or UDP datagrams) of one flow into
//!   one super-packet, so that one write (and one pass through the kernel's stack) carries up
//!   to 64 KiB.
//!
//! Every function here takes bytes straight from the kernel or the network, checks each length
//! before use and answers malformed input with an error or a refusal, never a panic. None of
//! them allocates.

mod csum;
mod gro;
mod gso;
#[cfg(test)]
pub(crate) mod testpkt;

pub use gro::GroRun;
pub use gso::{segment, Segment, Segmented, MAX_SEGMENTS, MAX_SEG_HDR};

/// Length of the legacy `struct virtio_net_hdr` (no `num_buffers`): TUN's default
/// `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 10;

/// Why an offload could not be done. Tiny and `Copy`: it is returned on the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// Shorter than a virtio-net header, or than the IP and transport headers it must hold.
    Truncated,
    /// An IP length field (IPv4 IHL or total length, IPv6 payload length) disagrees with the
    /// buffer length or with the minimum header.
    BadLength,
    /// A virtio-net header we did not negotiate or cannot honour: unknown flags or GSO type,
    /// UFO, the ECN bit, GSO with a zero `gso_size`, or a checksum position outside the packet.
    BadVnetHdr,
    /// The packet is not what its GSO type says (IP version, transport protocol), is an IP
    /// fragment, has IPv6 extension headers other than hop-by-hop and destination options, or
    /// headers longer than [`MAX_SEG_HDR`].
    NotSegmentable,
    /// More segments than [`MAX_SEGMENTS`] or than the caller's arrays hold, or a tunnel MTU
    /// that leaves no room for payload after the headers.
    TooManySegments,
    /// The output buffer cannot hold what is to be written.
    BufferTooSmall,
}

/// The legacy virtio-net header (virtio spec 1.2 §5.1.6, `include/uapi/linux/virtio_net.h`).
///
/// Multi-byte fields are little-endian: TUN uses native order for a legacy header, and every
/// target tundra runs on is little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers before the payload (a hint: [`segment`] does not trust it).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed region starts (the transport header), with `NEEDS_CSUM`.
    pub csum_start: u16,
    /// Where in that region the checksum field is (16 for TCP, 6 for UDP).
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The transport checksum is partial: complete it over `[csum_start..]`.
    pub const NEEDS_CSUM: u8 = 1;
    /// The checksum is known good (ingress only; we never set it).
    pub const DATA_VALID: u8 = 2;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    /// UFO (IP fragmentation of UDP): never negotiated, rejected.
    pub const GSO_UDP: u8 = 3;
    pub const GSO_TCPV6: u8 = 4;
    /// UDP segmentation (`UDP_SEGMENT`), one datagram per `gso_size` bytes.
    pub const GSO_UDP_L4: u8 = 5;
    /// The sender saw CWR: only with `TSO_ECN`, which we do not negotiate, so rejected.
    pub const GSO_ECN: u8 = 0x80;

    /// Reads the header at the start of `b` (a whole TUN read is fine).
    ///
    /// # Errors
    /// [`OffloadError::Truncated`] when `b` is shorter than [`VNET_HDR_LEN`];
    /// [`OffloadError::BadVnetHdr`] for unknown flags, a GSO type other than none, TCPv4, TCPv6
    /// and UDP L4 (UFO and the ECN bit included), or GSO with `gso_size` 0. The checksum
    /// offsets are checked against the packet by [`complete_checksum`].
    pub fn parse(b: &[u8]) -> Result<Self, OffloadError> {
        let Some(b) = b.first_chunk::<VNET_HDR_LEN>() else {
            return Err(OffloadError::Truncated);
        };
        let le16 = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let hdr = Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le16(2),
            gso_size: le16(4),
            csum_start: le16(6),
            csum_offset: le16(8),
        };
        let known_flags = hdr.flags & !(Self::NEEDS_CSUM | Self::DATA_VALID) == 0;
        let known_gso = match hdr.gso_type {
            Self::GSO_NONE => true,
            Self::GSO_TCPV4 | Self::GSO_TCPV6 | Self::GSO_UDP_L4 => hdr.gso_size > 0,
            _ => false,
        };
        if known_flags && known_gso {
            Ok(hdr)
        } else {
            Err(OffloadError::BadVnetHdr)
        }
    }

    /// Writes the header in wire form.
    pub fn emit(&self, out: &mut [u8; VNET_HDR_LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// `true` when the packet after this header is a super-packet for [`segment`].
    pub fn is_gso(&self) -> bool {
        self.gso_type != Self::GSO_NONE
    }
}

/// Completes the transport checksum of a `NEEDS_CSUM` packet in place: the field at
/// `csum_start + csum_offset` holds the pseudo-header sum, and the checksum covers
/// `packet[csum_start..]`. For a non-GSO packet; [`segment`] computes its own checksums.
///
/// A result of 0 is written as 0xffff, as the kernel does (`CSUM_MANGLED_0`): the same value in
/// one's complement, and for UDP 0 would mean "no checksum".
///
/// # Errors
/// [`OffloadError::BadVnetHdr`] when the checksum field is not inside the packet or is at an odd
/// offset from `csum_start`.
pub fn complete_checksum(
    packet: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), OffloadError> {
    let at = csum_start
        .checked_add(csum_offset)
        .filter(|at| csum_offset % 2 == 0 && at.checked_add(2).is_some_and(|e| e <= packet.len()))
        .ok_or(OffloadError::BadVnetHdr)?;
    let csum = match !csum::fold(csum::add(0, &packet[csum_start..])) {
        0 => 0xffff,
        c => c,
    };
    packet[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// IP protocol numbers and header offsets used by both directions.
mod field {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_HOP_BY_HOP: u8 = 0;
    pub const IPV6_DEST_OPTS: u8 = 60;

    pub const V4_HEADER_LEN: usize = 20;
    pub const V4_TOTAL_LEN: usize = 2;
    pub const V4_ID: usize = 4;
    pub const V4_FLAGS_FRAG: usize = 6;
    pub const V4_PROTOCOL: usize = 9;
    pub const V4_CHECKSUM: usize = 10;
    pub const V4_ADDRS: core::ops::Range<usize> = 12..20;
    /// More fragments and the fragment offset.
    pub const V4_FRAG_MASK: u16 = 0x3fff;
    /// Don't fragment, in the byte at `V4_FLAGS_FRAG`.
    pub const V4_DF: u8 = 0x40;

    pub const V6_HEADER_LEN: usize = 40;
    pub const V6_PAYLOAD_LEN: usize = 4;
    pub const V6_NEXT_HEADER: usize = 6;
    pub const V6_ADDRS: core::ops::Range<usize> = 8..40;

    pub const TCP_HEADER_LEN: usize = 20;
    pub const TCP_SEQ: usize = 4;
    pub const TCP_DATA_OFFSET: usize = 12;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CHECKSUM: usize = 16;
    pub const TCP_FIN: u8 = 0x01;
    pub const TCP_PSH: u8 = 0x08;
    pub const TCP_ACK: u8 = 0x10;
    pub const TCP_CWR: u8 = 0x80;

    pub const UDP_HEADER_LEN: usize = 8;
    pub const UDP_LEN: usize = 4;
    pub const UDP_CHECKSUM: usize = 6;
}

/// Where an inner packet's IP header(s) end and what follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IpLayout {
    ipv6: bool,
    /// Offset of the transport header: IPv4 IHL × 4, or past the IPv6 extension headers.
    l4: usize,
    proto: u8,
}

impl IpLayout {
    /// Checks the IP header(s) of a whole, unfragmented packet against the buffer length.
    /// IPv6 hop-by-hop and destination options are walked (they change no address the
    /// checksum depends on) as long as the headers stay within [`MAX_SEG_HDR`].
    fn parse(b: &[u8]) -> Result<Self, OffloadError> {
        let Some(&first) = b.first() else {
            return Err(OffloadError::Truncated);
        };
        match first >> 4 {
            4 => {
                let ihl = usize::from(first & 0x0f) * 4;
                if b.len() < field::V4_HEADER_LEN || b.len() < ihl {
                    return Err(OffloadError::Truncated);
                }
                if ihl < field::V4_HEADER_LEN
                    || usize::from(be16(b, field::V4_TOTAL_LEN)) != b.len()
                {
                    return Err(OffloadError::BadLength);
                }
                if be16(b, field::V4_FLAGS_FRAG) & field::V4_FRAG_MASK != 0 {
                    return Err(OffloadError::NotSegmentable);
                }
                let proto = b[field::V4_PROTOCOL];
                Ok(Self {
                    ipv6: false,
                    l4: ihl,
                    proto,
                })
            }
            6 => {
                if b.len() < field::V6_HEADER_LEN {
                    return Err(OffloadError::Truncated);
                }
                if usize::from(be16(b, field::V6_PAYLOAD_LEN)) + field::V6_HEADER_LEN != b.len() {
                    return Err(OffloadError::BadLength);
                }
                let mut proto = b[field::V6_NEXT_HEADER];
                let mut l4 = field::V6_HEADER_LEN;
                while matches!(proto, field::IPV6_HOP_BY_HOP | field::IPV6_DEST_OPTS) {
                    let (Some(&next), Some(&len)) = (b.get(l4), b.get(l4 + 1)) else {
                        return Err(OffloadError::Truncated);
                    };
                    proto = next;
                    l4 += (usize::from(len) + 1) * 8;
                    if l4 > MAX_SEG_HDR {
                        return Err(OffloadError::NotSegmentable);
                    }
                }
                Ok(Self {
                    ipv6: true,
                    l4,
                    proto,
                })
            }
            _ => Err(OffloadError::NotSegmentable),
        }
    }

    /// Source and destination addresses, adjacent in both versions.
    fn addrs(self) -> core::ops::Range<usize> {
        if self.ipv6 {
            field::V6_ADDRS
        } else {
            field::V4_ADDRS
        }
    }
}

/// Sets the IP length field of a header whose packet is `total` bytes long and, for IPv4,
/// recomputes the header checksum. `h` holds at least the IP header(s) of `layout`.
fn set_ip_len(h: &mut [u8], layout: IpLayout, total: usize) -> Result<(), OffloadError> {
    if layout.ipv6 {
        let payload = total.saturating_sub(field::V6_HEADER_LEN);
        put16(h, field::V6_PAYLOAD_LEN, len16(payload)?);
    } else {
        put16(h, field::V4_TOTAL_LEN, len16(total)?);
        put16(h, field::V4_CHECKSUM, 0);
        let csum = !csum::fold(csum::add(0, &h[..layout.l4]));
        put16(h, field::V4_CHECKSUM, csum);
    }
    Ok(())
}

/// A length for a 16-bit field.
#[inline]
fn len16(n: usize) -> Result<u16, OffloadError> {
    u16::try_from(n).map_err(|_| OffloadError::BadLength)
}

/// Big-endian u16 at `at`. Callers pass offsets inside a checked header.
#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use testpkt::*;

    #[test]
    fn vnet_hdr_round_trip() {
        let hdr = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV6,
            hdr_len: 86,
            gso_size: 1428,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        hdr.emit(&mut b);
        assert_eq!(b, [1, 4, 86, 0, 0x94, 0x05, 40, 0, 16, 0]);
        assert_eq!(VnetHdr::parse(&b), Ok(hdr));
        assert!(hdr.is_gso());
        // Trailing packet bytes are not the header's business.
        let mut read = b.to_vec();
        read.extend_from_slice(&[0x45; 30]);
        assert_eq!(VnetHdr::parse(&read), Ok(hdr));
        // The all-zero header: a plain packet.
        let plain = VnetHdr::parse(&[0; VNET_HDR_LEN]).unwrap();
        assert_eq!(plain, VnetHdr::default());
        assert!(!plain.is_gso());
        let valid = VnetHdr::parse(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(valid.flags, VnetHdr::DATA_VALID);
    }

    #[test]
    fn vnet_hdr_rejects() {
        assert_eq!(VnetHdr::parse(&[]), Err(OffloadError::Truncated));
        assert_eq!(VnetHdr::parse(&[0; 9]), Err(OffloadError::Truncated));
        let with = |flags: u8, gso_type: u8, gso_size: u16| {
            let mut b = [0u8; VNET_HDR_LEN];
            VnetHdr {
                flags,
                gso_type,
                gso_size,
                ..Default::default()
            }
            .emit(&mut b);
            VnetHdr::parse(&b)
        };
        for flags in [4, 8, 0x80, 0xff] {
            assert_eq!(with(flags, 0, 0), Err(OffloadError::BadVnetHdr), "{flags}");
        }
        for gso in [2, 3, 6, 0x7f, 0x80, 0x81, 0x84, 0x85, 0xff] {
            assert_eq!(with(1, gso, 1400), Err(OffloadError::BadVnetHdr), "{gso}");
        }
        for gso in [1, 4, 5] {
            assert_eq!(with(1, gso, 0), Err(OffloadError::BadVnetHdr), "{gso}");
            assert!(with(1, gso, 1).is_ok());
        }
    }

    #[test]
    fn complete_checksum_tcp_and_udp() {
        for v6 in [false, true] {
            let full = tcp_packet(&Tcp {
                v6,
                payload_len: 1001,
                ..Tcp::default()
            });
            let l4 = if v6 { 40 } else { 20 };
            let mut partial = full.clone();
            set_partial_checksum(&mut partial, l4, 16, 6);
            assert_ne!(partial, full);
            complete_checksum(&mut partial, l4, 16).unwrap();
            assert_eq!(partial, full, "v6 {v6}");

            let full = udp_packet(v6, 777);
            let mut partial = full.clone();
            set_partial_checksum(&mut partial, l4, 6, 17);
            complete_checksum(&mut partial, l4, 6).unwrap();
            assert_eq!(partial, full, "v6 {v6}");
        }
    }

    #[test]
    fn complete_checksum_rejects_offsets_outside() {
        let mut p = udp_packet(false, 10);
        let len = p.len();
        let before = p.clone();
        for (start, off) in [
            (len, 0),
            (len - 1, 0),
            (20, len - 21),
            (20, 7),
            (usize::MAX, 2),
            (2, usize::MAX - 1),
        ] {
            assert_eq!(
                complete_checksum(&mut p, start, off),
                Err(OffloadError::BadVnetHdr),
                "{start} {off}"
            );
        }
        assert_eq!(p, before);
        // The field may be the last two bytes.
        assert!(complete_checksum(&mut p, 20, len - 22).is_ok());
    }

    /// A TSO or USO super-packet as the kernel hands it over (partial checksum), segmented and
    /// merged back, is the same bytes under the same virtio-net header.
    mod round_trip {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn segment_then_merge(
                v6: bool,
                psh: bool,
                mss in 1usize..3000,
                full_segments in 1usize..=MAX_SEGMENTS,
                tail: usize,
                options_words in 0usize..=10,
                options_byte: u8,
                seq: u32,
                id: u16,
            ) {
                let t = Tcp {
                    v6,
                    psh,
                    seq,
                    id,
                    options: vec![options_byte; options_words * 4],
                    // Up to one segment too many; within the 64 KiB a TUN read holds.
                    payload_len: (full_segments * mss + 1 + tail % mss).min(60_000),
                    ..Tcp::default()
                };
                let mut original = tcp_packet(&t);
                let l4 = if v6 { 40 } else { 20 };
                let hdr_len = l4 + 20 + t.options.len();
                set_partial_checksum(&mut original, l4, 16, 6);
                let vnet = VnetHdr {
                    flags: VnetHdr::NEEDS_CSUM,
                    gso_type: if v6 { VnetHdr::GSO_TCPV6 } else { VnetHdr::GSO_TCPV4 },
                    hdr_len: hdr_len as u16,
                    gso_size: mss as u16,
                    csum_start: l4 as u16,
                    csum_offset: 16,
                };
                segmented_and_merged_back(&original, &vnet, t.payload_len.div_ceil(mss))?;
            }

            #[test]
            fn uso_segment_then_merge(
                v6: bool,
                df: bool,
                gso_size in 1usize..3000,
                full_segments in 1usize..=MAX_SEGMENTS,
                tail: usize,
                id: u16,
            ) {
                let u = Udp {
                    v6,
                    df,
                    id,
                    payload_len: (full_segments * gso_size + 1 + tail % gso_size).min(60_000),
                    ..Udp::default()
                };
                let mut original = udp_datagram(&u);
                let l4 = if v6 { 40 } else { 20 };
                set_partial_checksum(&mut original, l4, 6, 17);
                let vnet = VnetHdr {
                    flags: VnetHdr::NEEDS_CSUM,
                    gso_type: VnetHdr::GSO_UDP_L4,
                    hdr_len: (l4 + 8) as u16,
                    gso_size: gso_size as u16,
                    csum_start: l4 as u16,
                    csum_offset: 6,
                };
                segmented_and_merged_back(&original, &vnet, u.payload_len.div_ceil(gso_size))?;
            }
        }

        /// Segments `original` as `vnet` says (into `count` segments, or refused when that is
        /// more than [`MAX_SEGMENTS`]) and merges the segments again: the same bytes under the
        /// same virtio-net header.
        fn segmented_and_merged_back(
            original: &[u8],
            vnet: &VnetHdr,
            count: usize,
        ) -> Result<(), TestCaseError> {
            let mut headers = vec![0u8; MAX_SEGMENTS * MAX_SEG_HDR];
            let mut segs = [Segment::default(); MAX_SEGMENTS];
            let res = segment(original, vnet, 65535, &mut headers, &mut segs);
            if count > MAX_SEGMENTS {
                prop_assert_eq!(res, Err(OffloadError::TooManySegments));
                return Ok(());
            }
            prop_assert_eq!(res.unwrap().count, count);

            let packets: Vec<Vec<u8>> = segs[..count]
                .iter()
                .map(|s| [&headers[s.header_range()], &original[s.payload_range()]].concat())
                .collect();
            let mut run = GroRun::start(&packets[0], true).unwrap();
            for p in &packets[1..] {
                prop_assert!(run.push(p));
            }
            prop_assert_eq!(run.count(), count);
            prop_assert_eq!(run.header_len(), usize::from(vnet.hdr_len));

            let mut out = [0u8; VNET_HDR_LEN + MAX_SEG_HDR];
            let n = run.emit_header(&mut out).unwrap();
            prop_assert_eq!(n, VNET_HDR_LEN + run.header_len());
            prop_assert_eq!(VnetHdr::parse(&out).unwrap(), *vnet);
            let mut merged = out[VNET_HDR_LEN..n].to_vec();
            for p in &packets {
                merged.extend_from_slice(&p[run.header_len()..]);
            }
            prop_assert_eq!(merged, original);
            Ok(())
        }
    }

    /// No input makes a public function panic.
    mod no_panic {
        use proptest::prelude::*;

        use super::*;

        /// Mostly well-formed packets with a few bytes flipped, and plain noise.
        fn mangled() -> impl Strategy<Value = Vec<u8>> {
            let near = (
                any::<bool>(),
                any::<bool>(),
                prop_oneof![0usize..64, 0usize..3000],
                proptest::collection::vec((0usize..200, any::<u8>()), 0..4),
            )
                .prop_map(|(v6, udp, len, flips)| {
                    let mut p = if udp {
                        udp_packet(v6, len)
                    } else {
                        tcp_packet(&Tcp {
                            v6,
                            payload_len: len,
                            ..Tcp::default()
                        })
                    };
                    for (at, b) in flips {
                        if let Some(x) = p.get_mut(at) {
                            *x = b;
                        }
                    }
                    p
                });
            prop_oneof![near, proptest::collection::vec(any::<u8>(), 0..200)]
        }

        proptest! {
            #[test]
            fn arbitrary_bytes(
                a in mangled(),
                b in mangled(),
                vnet in proptest::array::uniform10(any::<u8>()),
                mtu in 0usize..3000,
                room in 0usize..8,
                out_len in 0usize..200,
            ) {
                let hdr = VnetHdr::parse(&vnet);
                let mut emitted = [0u8; VNET_HDR_LEN];
                if let Ok(h) = hdr {
                    h.emit(&mut emitted);
                    prop_assert_eq!(emitted, vnet);
                }
                let raw = VnetHdr {
                    flags: vnet[0],
                    gso_type: vnet[1],
                    hdr_len: u16::from_le_bytes([vnet[2], vnet[3]]),
                    gso_size: u16::from_le_bytes([vnet[4], vnet[5]]),
                    csum_start: u16::from_le_bytes([vnet[6], vnet[7]]),
                    csum_offset: u16::from_le_bytes([vnet[8], vnet[9]]),
                };
                let mut headers = vec![0u8; room * MAX_SEG_HDR + 7];
                let mut segs = vec![Segment::default(); room];
                for gso_type in [raw.gso_type, 1, 4, 5] {
                    let v = VnetHdr { gso_type, ..raw };
                    if let Ok(done) = segment(&a, &v, mtu, &mut headers, &mut segs) {
                        for s in &segs[..done.count] {
                            prop_assert!(headers.get(s.header_range()).is_some());
                            prop_assert!(a.get(s.payload_range()).is_some());
                        }
                    }
                }
                let mut p = a.clone();
                let _ = complete_checksum(&mut p, usize::from(raw.csum_start), usize::from(raw.csum_offset));
                let _ = complete_checksum(&mut p, 20, 16);
                if let Some(mut run) = GroRun::start(&a, true) {
                    run.push(&b);
                    run.push(&a);
                    let mut out = vec![0u8; out_len];
                    let _ = run.emit_header(&mut out);
                    prop_assert!(run.header_len() <= a.len());
                }
            }
        }
    }
}
