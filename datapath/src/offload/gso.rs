//! Egress: splitting a GSO super-packet read from the TUN device into complete inner packets,
//! each small enough for the tunnel and sent as one UDP datagram.
//!
//! The payload is never copied: each segment is a header built in the caller's scratch area
//! plus a range of the super-packet, ready for one `iovec` each.

use core::ops::Range;

use super::{
    be16, be32, csum, field, len16, put16, put32, set_ip_len, IpLayout, OffloadError, VnetHdr,
};

/// Room for one segment's IP + transport header: IPv4 with options (60) + TCP with options (60)
/// fits, and so do IPv6 extension headers up to this length.
pub const MAX_SEG_HDR: usize = 128;

/// Most segments one super-packet is split into: a 64 KiB packet at an MSS of 512 or more.
pub const MAX_SEGMENTS: usize = 128;

/// One inner packet of a split super-packet: `headers[header_range()]` followed by
/// `packet[payload_range()]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Offset of this segment's header in the `headers` area passed to [`segment`].
    pub header_start: usize,
    pub header_len: usize,
    /// Offset of this segment's payload in the super-packet.
    pub payload_start: usize,
    pub payload_len: usize,
}

impl Segment {
    pub fn header_range(&self) -> Range<usize> {
        self.header_start..self.header_start + self.header_len
    }

    pub fn payload_range(&self) -> Range<usize> {
        self.payload_start..self.payload_start + self.payload_len
    }

    /// The inner packet's length.
    pub fn len(&self) -> usize {
        self.header_len + self.payload_len
    }

    /// `true` only for the default value: a segment has at least its header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`segment`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segmented {
    /// Segments written to the front of `segs`.
    pub count: usize,
    /// Length of every segment but the last, which may be shorter: the `UDP_SEGMENT` size for
    /// sending them all in one GSO send.
    pub segment_size: usize,
}

/// Splits the GSO super-packet `packet` (an IP packet, without its virtio-net header) that
/// `vnet` describes into complete inner packets.
///
/// Each segment's header (IP + TCP/UDP, taken from the packet itself: `vnet.hdr_len` and the
/// checksum offsets are not trusted) is written to `headers[i * MAX_SEG_HDR..]`, and `segs[i]`
/// says where it and its payload are. Per segment: the IPv4 total length, identification (the
/// first one's + i) and header checksum, or the IPv6 payload length; for TCP the sequence
/// number, FIN and PSH on the last segment only, CWR on the first only (as Linux's
/// `tcp_gso_segment`); for UDP the length; and a full transport checksum (the partial one in
/// the super-packet is ignored), computed over the payload where it lies.
///
/// TCP payload is cut at `min(vnet.gso_size, tunnel_mtu - header length)`, so every segment
/// fits `tunnel_mtu`. UDP payload is cut at `vnet.gso_size` whatever `tunnel_mtu` says: each
/// piece is one of the application's datagrams and must stay whole, so a segment may exceed
/// `tunnel_mtu` and then meets the same MTU check as any other packet.
///
/// A super-packet with no payload yields one segment of headers only.
///
/// # Errors
/// - [`OffloadError::BadVnetHdr`]: a GSO type other than TCPv4, TCPv6 and UDP L4, or
///   `gso_size` 0;
/// - [`OffloadError::Truncated`], [`OffloadError::BadLength`], [`OffloadError::NotSegmentable`]:
///   the packet is malformed or not what the GSO type says (see [`OffloadError`]);
/// - [`OffloadError::TooManySegments`]: more than [`MAX_SEGMENTS`] segments, or than `segs`
///   and `headers` have room for (`segs.len()`, `headers.len() / MAX_SEG_HDR`), or no room
///   for payload under `tunnel_mtu`.
///
/// On error, `headers` and `segs` may have been partly written and mean nothing.
pub fn segment(
    packet: &[u8],
    vnet: &VnetHdr,
    tunnel_mtu: usize,
    headers: &mut [u8],
    segs: &mut [Segment],
) -> Result<Segmented, OffloadError> {
    let (proto, version) = match vnet.gso_type {
        VnetHdr::GSO_TCPV4 => (field::TCP, Some(false)),
        VnetHdr::GSO_TCPV6 => (field::TCP, Some(true)),
        VnetHdr::GSO_UDP_L4 => (field::UDP, None),
        _ => return Err(OffloadError::BadVnetHdr),
    };
    if vnet.gso_size == 0 {
        return Err(OffloadError::BadVnetHdr);
    }
    let ip = IpLayout::parse(packet)?;
    if ip.proto != proto || version.is_some_and(|v6| v6 != ip.ipv6) {
        return Err(OffloadError::NotSegmentable);
    }
    let tcp = proto == field::TCP;
    let l4_hdr_len = if tcp {
        let doff = packet
            .get(ip.l4 + field::TCP_DATA_OFFSET)
            .ok_or(OffloadError::Truncated)?;
        let len = usize::from(doff >> 4) * 4;
        if len < field::TCP_HEADER_LEN {
            return Err(OffloadError::NotSegmentable);
        }
        len
    } else {
        field::UDP_HEADER_LEN
    };
    let hdr_len = ip.l4 + l4_hdr_len;
    if hdr_len > packet.len() {
        return Err(OffloadError::Truncated);
    }
    if hdr_len > MAX_SEG_HDR {
        return Err(OffloadError::NotSegmentable);
    }

    let gso_size = usize::from(vnet.gso_size);
    let mss = if tcp {
        gso_size.min(tunnel_mtu.saturating_sub(hdr_len))
    } else {
        gso_size
    };
    if mss == 0 {
        return Err(OffloadError::TooManySegments);
    }
    let payload = packet.len() - hdr_len;
    let count = payload.div_ceil(mss).max(1);
    let room = MAX_SEGMENTS
        .min(segs.len())
        .min(headers.len() / MAX_SEG_HDR);
    if count > room {
        return Err(OffloadError::TooManySegments);
    }

    let template = &packet[..hdr_len];
    let addrs = &packet[ip.addrs()];
    let (src, dst) = addrs.split_at(addrs.len() / 2);
    let id = be16(packet, field::V4_ID);
    let (seq, flags) = if tcp {
        let th = &packet[ip.l4..hdr_len];
        (be32(th, field::TCP_SEQ), th[field::TCP_FLAGS])
    } else {
        (0, 0)
    };
    let slots = segs.iter_mut().zip(headers.chunks_exact_mut(MAX_SEG_HDR));
    for (i, (seg, slot)) in slots.take(count).enumerate() {
        let first = i == 0;
        let last = i + 1 == count;
        let offset = i * mss;
        let payload_start = hdr_len + offset;
        let body = &packet[payload_start..packet.len().min(payload_start + mss)];
        let h = &mut slot[..hdr_len];
        h.copy_from_slice(template);

        if !ip.ipv6 {
            // Linux numbers TSO segments the same way (unless it was told the ID is fixed).
            put16(h, field::V4_ID, id.wrapping_add(i as u16));
        }
        set_ip_len(h, ip, hdr_len + body.len())?;
        let l4_len = len16(l4_hdr_len + body.len())?;
        let th = &mut h[ip.l4..];
        let csum_at = if tcp {
            // Sequence numbers wrap; the casts keep the low 32 bits on purpose.
            put32(th, field::TCP_SEQ, seq.wrapping_add(offset as u32));
            let mut f = flags;
            if !last {
                f &= !(field::TCP_FIN | field::TCP_PSH);
            }
            if !first {
                f &= !field::TCP_CWR;
            }
            th[field::TCP_FLAGS] = f;
            field::TCP_CHECKSUM
        } else {
            put16(th, field::UDP_LEN, l4_len);
            field::UDP_CHECKSUM
        };
        put16(th, csum_at, 0);
        let sum = csum::pseudo_header(src, dst, proto, l4_len);
        let c = !csum::fold(csum::add(csum::add(sum, th), body));
        // UDP has no checksum when the field is 0; 0xffff is the same value in one's complement.
        put16(th, csum_at, if c == 0 && !tcp { 0xffff } else { c });

        *seg = Segment {
            header_start: i * MAX_SEG_HDR,
            header_len: hdr_len,
            payload_start,
            payload_len: body.len(),
        };
    }
    Ok(Segmented {
        count,
        segment_size: hdr_len + mss.min(payload),
    })
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::super::testpkt::*;
    use super::*;

    /// `segment` with room for [`MAX_SEGMENTS`], returning each segment's bytes.
    fn split(
        packet: &[u8],
        vnet: &VnetHdr,
        mtu: usize,
    ) -> Result<(Segmented, Vec<Vec<u8>>), OffloadError> {
        let mut headers = vec![0u8; MAX_SEGMENTS * MAX_SEG_HDR];
        let mut segs = [Segment::default(); MAX_SEGMENTS];
        let done = segment(packet, vnet, mtu, &mut headers, &mut segs)?;
        let packets = segs[..done.count]
            .iter()
            .map(|s| {
                assert_eq!(s.header_start % MAX_SEG_HDR, 0);
                [&headers[s.header_range()], &packet[s.payload_range()]].concat()
            })
            .collect();
        Ok((done, packets))
    }

    fn tso(v6: bool, gso_size: u16) -> VnetHdr {
        VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: if v6 {
                VnetHdr::GSO_TCPV6
            } else {
                VnetHdr::GSO_TCPV4
            },
            gso_size,
            csum_start: if v6 { 40 } else { 20 },
            csum_offset: 16,
            ..VnetHdr::default()
        }
    }

    fn uso(v6: bool, gso_size: u16) -> VnetHdr {
        VnetHdr {
            gso_type: VnetHdr::GSO_UDP_L4,
            csum_offset: 6,
            ..tso(v6, gso_size)
        }
    }

    /// Checks with etherparse that `seg` is a whole, valid packet; returns its transport slice.
    fn check_ip(seg: &[u8]) -> SlicedPacket<'_> {
        let sliced = SlicedPacket::from_ip(seg).expect("parses");
        match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                assert_eq!(usize::from(h.total_len()), seg.len());
                assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            }
            Some(NetSlice::Ipv6(ip)) => {
                assert_eq!(usize::from(ip.header().payload_length()) + 40, seg.len());
            }
            _ => panic!("not IP"),
        }
        sliced
    }

    fn addrs(sliced: &SlicedPacket<'_>) -> (Vec<u8>, Vec<u8>) {
        match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => (
                ip.header().source().to_vec(),
                ip.header().destination().to_vec(),
            ),
            Some(NetSlice::Ipv6(ip)) => (
                ip.header().source().to_vec(),
                ip.header().destination().to_vec(),
            ),
            _ => panic!("not IP"),
        }
    }

    /// Segments a TCP super-packet and checks every segment against etherparse.
    fn check_tcp(t: &Tcp, gso_size: u16, mtu: usize) -> Vec<Vec<u8>> {
        let mut original = tcp_packet(t);
        let l4 = if t.v6 { 40 } else { 20 + t.ip_options.len() };
        set_partial_checksum(&mut original, l4, 16, 6);
        let hdr_len = l4 + 20 + t.options.len();
        let payload = &original[hdr_len..];
        let (done, segs) = split(&original, &tso(t.v6, gso_size), mtu).unwrap();
        let mss = usize::from(gso_size).min(mtu - hdr_len);
        assert_eq!(done.count, payload.len().div_ceil(mss));
        assert_eq!(done.segment_size, hdr_len + mss.min(payload.len()));

        let mut seen = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            assert!(seg.len() <= mtu);
            if !last {
                assert_eq!(seg.len(), done.segment_size);
            }
            let sliced = check_ip(seg);
            if let Some(NetSlice::Ipv4(ip)) = &sliced.net {
                assert_eq!(ip.header().identification(), t.id.wrapping_add(i as u16));
                assert!(ip.header().dont_fragment());
                assert_eq!(ip.header().options(), &t.ip_options[..]);
            }
            let (src, dst) = addrs(&sliced);
            let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
                panic!("not TCP")
            };
            let want = if t.v6 {
                tcp.calc_checksum_ipv6(src.try_into().unwrap(), dst.try_into().unwrap())
            } else {
                tcp.calc_checksum_ipv4(src.try_into().unwrap(), dst.try_into().unwrap())
            };
            assert_eq!(tcp.checksum(), want.unwrap(), "segment {i}");
            assert_eq!(tcp.sequence_number(), t.seq.wrapping_add((i * mss) as u32));
            assert_eq!(tcp.acknowledgment_number(), t.ack);
            assert_eq!(tcp.options(), &t.options[..]);
            assert!(tcp.ack());
            assert_eq!(tcp.psh(), t.psh && last);
            assert_eq!(tcp.fin(), t.fin && last);
            assert_eq!(tcp.cwr(), t.cwr && i == 0);
            seen.extend_from_slice(tcp.payload());
        }
        assert_eq!(seen, payload);
        segs
    }

    #[test]
    fn tcp_v4_with_timestamps() {
        let t = Tcp {
            payload_len: 10_000,
            psh: true,
            seq: u32::MAX - 3000, // wraps
            ..Tcp::default()
        };
        // The MTU is the limit: 1400 - 52 = 1348 bytes of payload.
        let segs = check_tcp(&t, 1448, 1400);
        assert_eq!(segs.len(), 8);
        assert_eq!(segs[0].len(), 1400);
        // gso_size is the limit.
        assert_eq!(check_tcp(&t, 1000, 1400).len(), 10);
        // A tail of one byte.
        let t = Tcp {
            payload_len: 2001,
            ..t
        };
        let segs = check_tcp(&t, 1000, 1500);
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[2].len(), 52 + 1);
    }

    #[test]
    fn tcp_v6_fin_and_cwr() {
        let t = Tcp {
            v6: true,
            payload_len: 30_000,
            fin: true,
            cwr: true,
            id: 0xffff,
            ..Tcp::default()
        };
        check_tcp(&t, 1428, 1500);
        check_tcp(&t, 1428, 1280);
        let t = Tcp {
            options: vec![],
            psh: true,
            ..t
        };
        check_tcp(&t, 536, 9000);
    }

    #[test]
    fn tcp_v4_with_ip_options_and_id_wrap() {
        let t = Tcp {
            ip_options: vec![1, 1, 1, 0, 0x94, 4, 0, 0], // NOPs, EOL, router alert
            id: 0xfffe,
            fin: true,
            payload_len: 5000,
            ..Tcp::default()
        };
        check_tcp(&t, 1200, 1500);
    }

    #[test]
    fn tcp_single_segment_and_no_payload() {
        let t = Tcp {
            payload_len: 700,
            ..Tcp::default()
        };
        assert_eq!(check_tcp(&t, 1448, 1500).len(), 1);
        let t = Tcp {
            payload_len: 0,
            ..t
        };
        let packet = tcp_packet(&t);
        let (done, segs) = split(&packet, &tso(false, 1448), 1500).unwrap();
        assert_eq!(done.count, 1);
        assert_eq!(done.segment_size, packet.len());
        assert_eq!(segs[0], packet);
    }

    fn check_udp(v6: bool, payload_len: usize, gso_size: u16) {
        let mut original = udp_packet(v6, payload_len);
        let l4 = if v6 { 40 } else { 20 };
        set_partial_checksum(&mut original, l4, 6, 17);
        let (done, segs) = split(&original, &uso(v6, gso_size), 1500).unwrap();
        let gso = usize::from(gso_size);
        assert_eq!(done.count, payload_len.div_ceil(gso).max(1));
        assert_eq!(done.segment_size, l4 + 8 + gso.min(payload_len));
        let mut seen = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            if i + 1 < segs.len() {
                assert_eq!(seg.len(), done.segment_size);
            }
            let sliced = check_ip(seg);
            let (src, dst) = addrs(&sliced);
            let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
                panic!("not UDP")
            };
            assert_eq!(usize::from(udp.length()), seg.len() - l4);
            let h = udp.to_header();
            let want = if v6 {
                h.calc_checksum_ipv6_raw(
                    src.try_into().unwrap(),
                    dst.try_into().unwrap(),
                    udp.payload(),
                )
            } else {
                h.calc_checksum_ipv4_raw(
                    src.try_into().unwrap(),
                    dst.try_into().unwrap(),
                    udp.payload(),
                )
            };
            assert_eq!(udp.checksum(), want.unwrap());
            seen.extend_from_slice(udp.payload());
        }
        assert_eq!(seen, original[l4 + 8..]);
    }

    #[test]
    fn udp_l4() {
        for v6 in [false, true] {
            check_udp(v6, 12_000, 1200);
            check_udp(v6, 12_001, 1200);
            check_udp(v6, 1000, 1200);
            check_udp(v6, 0, 1200);
            check_udp(v6, 64_000, 1000);
        }
    }

    #[test]
    fn udp_datagrams_are_not_cut_to_the_mtu() {
        let packet = udp_packet(false, 6000);
        let (done, segs) = split(&packet, &uso(false, 2000), 1400).unwrap();
        assert_eq!(done.count, 3);
        assert_eq!(done.segment_size, 2028);
        assert!(segs.iter().all(|s| s.len() == 2028));
    }

    #[test]
    fn udp_checksum_zero_is_sent_as_ffff() {
        // Find a payload whose UDP checksum comes out as 0 by adjusting two bytes.
        let mut packet = udp_packet(false, 4);
        let (_, segs) = split(&packet, &uso(false, 100), 1500).unwrap();
        let c = u16::from_be_bytes([segs[0][26], segs[0][27]]);
        // Adding the checksum's value to the payload makes the sum 0xffff: checksum 0.
        let p = u16::from_be_bytes([packet[28], packet[29]]);
        let (s, carry) = p.overflowing_add(c);
        packet[28..30].copy_from_slice(&(s + u16::from(carry)).to_be_bytes());
        let (_, segs) = split(&packet, &uso(false, 100), 1500).unwrap();
        assert_eq!(segs[0][26..28], [0xff, 0xff]);
        check_ip(&segs[0]);
    }

    #[test]
    fn segment_only_the_promised_protocol() {
        let v4 = tcp_packet(&Tcp {
            payload_len: 3000,
            ..Tcp::default()
        });
        let v6 = tcp_packet(&Tcp {
            v6: true,
            payload_len: 3000,
            ..Tcp::default()
        });
        let udp = udp_packet(false, 3000);
        let not = Err(OffloadError::NotSegmentable);
        assert_eq!(split(&v4, &tso(true, 1000), 1500).map(|r| r.0), not);
        assert_eq!(split(&v6, &tso(false, 1000), 1500).map(|r| r.0), not);
        assert_eq!(split(&udp, &tso(false, 1000), 1500).map(|r| r.0), not);
        assert_eq!(split(&v4, &uso(false, 1000), 1500).map(|r| r.0), not);
        let bad = Err(OffloadError::BadVnetHdr);
        for gso_type in [0, 3, 0x81, 0x84] {
            let vnet = VnetHdr {
                gso_type,
                ..tso(false, 1000)
            };
            assert_eq!(split(&v4, &vnet, 1500).map(|r| r.0), bad);
        }
        assert_eq!(split(&v4, &tso(false, 0), 1500).map(|r| r.0), bad);
    }

    #[test]
    fn segment_rejects_fragments_and_extension_headers() {
        let mut frag = tcp_packet(&Tcp {
            payload_len: 3000,
            ..Tcp::default()
        });
        frag[6] |= 0x20; // more fragments
        assert_eq!(
            split(&frag, &tso(false, 1000), 1500).map(|r| r.0),
            Err(OffloadError::NotSegmentable)
        );
        // IPv6 destination options (8 bytes) are walked; a routing header is not.
        let t = Tcp {
            v6: true,
            payload_len: 3000,
            ..Tcp::default()
        };
        let plain = tcp_packet(&t);
        let with_ext = |next: u8| {
            let mut p = plain[..40].to_vec();
            p[6] = next;
            p[5] += 8;
            p.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
            p.extend_from_slice(&plain[40..]);
            p
        };
        let mut dest_opts = with_ext(60);
        set_partial_checksum(&mut dest_opts, 48, 16, 6);
        let (done, segs) = split(&dest_opts, &tso(true, 1000), 1500).unwrap();
        assert_eq!(done.count, 3);
        for seg in &segs {
            assert_eq!(seg[40..48], [6, 0, 1, 4, 0, 0, 0, 0]);
            check_ip(seg);
        }
        assert_eq!(
            split(&with_ext(43), &tso(true, 1000), 1500).map(|r| r.0),
            Err(OffloadError::NotSegmentable)
        );
    }

    #[test]
    fn segment_rejects_bad_lengths() {
        let p = tcp_packet(&Tcp {
            payload_len: 3000,
            ..Tcp::default()
        });
        let vnet = tso(false, 1000);
        assert_eq!(
            split(&p[..p.len() - 1], &vnet, 1500).map(|r| r.0),
            Err(OffloadError::BadLength)
        );
        assert_eq!(
            split(&p[..30], &vnet, 1500).map(|r| r.0),
            Err(OffloadError::BadLength)
        );
        assert_eq!(
            split(&[], &vnet, 1500).map(|r| r.0),
            Err(OffloadError::Truncated)
        );
        assert_eq!(
            split(&p[..19], &vnet, 1500).map(|r| r.0),
            Err(OffloadError::Truncated)
        );
        // A data offset pointing past the packet, or below 5 words.
        let mut short = tcp_packet(&Tcp {
            payload_len: 0,
            options: vec![],
            ..Tcp::default()
        });
        short[32] = 0x60;
        assert_eq!(
            split(&short, &vnet, 1500).map(|r| r.0),
            Err(OffloadError::Truncated)
        );
        short[32] = 0x40;
        assert_eq!(
            split(&short, &vnet, 1500).map(|r| r.0),
            Err(OffloadError::NotSegmentable)
        );
    }

    #[test]
    fn segment_limits() {
        let p = tcp_packet(&Tcp {
            payload_len: 60_000,
            options: vec![],
            ..Tcp::default()
        });
        // 60000 / 468 = 128.2: one too many.
        assert_eq!(
            split(&p, &tso(false, 468), 1500).map(|r| r.0),
            Err(OffloadError::TooManySegments)
        );
        assert_eq!(split(&p, &tso(false, 469), 1500).unwrap().0.count, 128);
        // No room for payload under the MTU.
        assert_eq!(
            split(&p, &tso(false, 1000), 40).map(|r| r.0),
            Err(OffloadError::TooManySegments)
        );
        assert_eq!(
            split(&p, &tso(false, 1000), 41).map(|r| r.0),
            Err(OffloadError::TooManySegments)
        );
        // The caller's arrays bound the count too.
        let mut headers = vec![0u8; 10 * MAX_SEG_HDR];
        let mut segs = [Segment::default(); 60];
        assert_eq!(
            segment(&p, &tso(false, 6000), 9000, &mut headers, &mut segs).map(|r| r.count),
            Ok(10)
        );
        assert_eq!(
            segment(&p, &tso(false, 5999), 9000, &mut headers, &mut segs),
            Err(OffloadError::TooManySegments)
        );
        assert_eq!(
            segment(&p, &tso(false, 6000), 9000, &mut headers, &mut segs[..9]),
            Err(OffloadError::TooManySegments)
        );
    }
}
