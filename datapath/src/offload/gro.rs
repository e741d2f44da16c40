//! Ingress: merging consecutive TCP segments (or UDP datagrams) of one flow, received as
//! separate inner packets, into one super-packet for one TUN write. The kernel's GRO does the
//! same for a NIC; packets written to a TUN device never pass through it.
//!
//! Only the header is built here: the engine writes `[virtio-net header + merged header,
//! payload 1, payload 2, ...]` in one `writev`, each payload still in its receive buffer.

use super::{
    be16, be32, csum, field, len16, put16, set_ip_len, IpLayout, OffloadError, VnetHdr,
    MAX_SEGMENTS, VNET_HDR_LEN,
};

/// Longest header of a mergeable segment: IPv6 (IPv4 without options is shorter) + TCP with
/// 40 bytes of options.
const MAX_HDR: usize = field::V6_HEADER_LEN + 60;

/// Largest merged IP packet. IPv6 could carry 40 bytes more, but the kernel's GSO limit for a
/// TUN device is 64 KiB in all.
const MAX_MERGED: usize = 65535;

/// A run of consecutive TCP segments, or UDP datagrams, of one flow being merged into one
/// super-packet (`GSO_TCPV4`/`GSO_TCPV6`, or `GSO_UDP_L4`: the kernel cuts it back into the
/// same datagrams before any socket or other device sees it).
///
/// Feed it packets in arrival order: [`GroRun::start`] with the first, [`GroRun::push`] with
/// each next one until it refuses; then write [`GroRun::emit_header`]'s bytes followed by every
/// packet's payload (`packet[header_len()..]`), and start a new run with the refused packet.
/// It remembers the first segment's header and what it needs of the last, so it allocates
/// nothing and borrows nothing.
///
/// The merged packet's checksum is left for the kernel to complete (`NEEDS_CSUM`), so the
/// segments' own TCP checksums are not verified: each inner packet was covered by the outer
/// UDP checksum in transit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroRun {
    /// The first segment's IP + TCP header: the flow's identity and the merged packet's header.
    hdr: [u8; MAX_HDR],
    hdr_len: usize,
    ip: IpLayout,
    /// The first segment's payload length: every segment but the last has exactly this much.
    gso_size: usize,
    count: usize,
    /// Length of the merged IP packet so far.
    len: usize,
    /// What the next segment must carry: the TCP sequence number; for UDP the IPv4 ID (see
    /// [`Candidate`]).
    next_seq: u32,
    last_payload: usize,
    last_psh: bool,
}

impl GroRun {
    /// A run of one, or `None` when `packet` cannot start a merge: IPv4 with options or
    /// fragmented, IPv6 with extension headers, neither TCP nor (with `udp`) UDP, no payload,
    /// TCP flags other than ACK and ACK|PSH, a UDP datagram without a checksum, or any length
    /// inconsistent with the buffer.
    pub fn start(packet: &[u8], udp: bool) -> Option<Self> {
        let seg = Candidate::parse(packet, udp)?;
        let mut hdr = [0u8; MAX_HDR];
        hdr[..seg.hdr_len].copy_from_slice(&packet[..seg.hdr_len]);
        Some(Self {
            hdr,
            hdr_len: seg.hdr_len,
            ip: seg.ip,
            gso_size: seg.payload,
            count: 1,
            len: packet.len(),
            next_seq: seg.next,
            last_payload: seg.payload,
            last_psh: seg.psh,
        })
    }

    /// Appends `packet` to the run if it continues it, else returns `false` and leaves the run
    /// as it was.
    ///
    /// It continues the run when, besides passing [`GroRun::start`]'s checks: it is of the
    /// first one's protocol, its header has the first one's length and the same addresses,
    /// ports, IPv4 TOS (ECN included), DF and TTL, or IPv6 traffic class, flow label and hop
    /// limit, and for TCP the same ACK number, window and option bytes; a TCP segment's
    /// sequence number follows the previous segment's payload, an IPv4 UDP datagram without DF
    /// has the previous one's ID + 1 (the kernel numbers the datagrams it cuts that way); the
    /// previous segment was full (the first one's payload size, a smaller one may only be
    /// last) and had no PSH (a PSH ends a run); its payload is no larger than the first; and
    /// the merged packet stays within 65535 bytes and [`MAX_SEGMENTS`] segments.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let Some(seg) = Candidate::parse(packet, self.ip.proto == field::UDP) else {
            return false;
        };
        let continues = self.count < MAX_SEGMENTS
            && !self.last_psh
            && self.last_payload == self.gso_size
            && seg.payload <= self.gso_size
            && seg.seq == self.next_seq
            && self.len + seg.payload <= MAX_MERGED
            && seg.hdr_len == self.hdr_len
            && seg.ip == self.ip
            && same_flow(&self.hdr[..self.hdr_len], &packet[..seg.hdr_len], self.ip);
        if continues {
            self.count += 1;
            self.len += seg.payload;
            self.next_seq = seg.next;
            self.last_payload = seg.payload;
            self.last_psh = seg.psh;
        }
        continues
    }

    /// Segments in the run (at least 1).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Length of every segment's IP + TCP (or UDP) header: its payload is
    /// `packet[header_len()..]`.
    pub fn header_len(&self) -> usize {
        self.hdr_len
    }

    /// Writes the virtio-net header followed by the merged IP + TCP (or UDP) header to the
    /// front of `out` and returns the bytes written.
    ///
    /// The merged header is the first segment's with the IP length of the whole run (the IPv4
    /// header checksum recomputed), PSH as the last segment had it (UDP: the length of the
    /// whole run), and in the transport checksum field the pseudo-header sum, folded but not
    /// complemented, as `NEEDS_CSUM` asks (`CHECKSUM_PARTIAL`). The virtio-net header says
    /// `NEEDS_CSUM` at that checksum and, for two segments or more, TCPv4/TCPv6 or UDP L4 GSO
    /// with the first payload size as `gso_size`. A run of one is a plain packet with a
    /// partial checksum (though the engine may as well write such a packet as it came).
    ///
    /// # Errors
    /// [`OffloadError::BufferTooSmall`] when `out` is shorter than [`VNET_HDR_LEN`] +
    /// [`GroRun::header_len`].
    pub fn emit_header(&self, out: &mut [u8]) -> Result<usize, OffloadError> {
        let n = VNET_HDR_LEN + self.hdr_len;
        let (vnet, h) = out
            .get_mut(..n)
            .and_then(|o| o.split_first_chunk_mut::<VNET_HDR_LEN>())
            .ok_or(OffloadError::BufferTooSmall)?;
        let udp = self.ip.proto == field::UDP;
        let (gso_type, gso_size) = match (self.count > 1, udp, self.ip.ipv6) {
            (false, _, _) => (VnetHdr::GSO_NONE, 0),
            (true, true, _) => (VnetHdr::GSO_UDP_L4, len16(self.gso_size)?),
            (true, false, false) => (VnetHdr::GSO_TCPV4, len16(self.gso_size)?),
            (true, false, true) => (VnetHdr::GSO_TCPV6, len16(self.gso_size)?),
        };
        let csum_offset = if udp {
            field::UDP_CHECKSUM
        } else {
            field::TCP_CHECKSUM
        };
        VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type,
            hdr_len: len16(self.hdr_len)?,
            gso_size,
            csum_start: len16(self.ip.l4)?,
            csum_offset: csum_offset as u16,
        }
        .emit(vnet);

        h.copy_from_slice(&self.hdr[..self.hdr_len]);
        set_ip_len(h, self.ip, self.len)?;
        let l4_len = len16(self.len - self.ip.l4)?;
        let addrs = &self.hdr[self.ip.addrs()];
        let (src, dst) = addrs.split_at(addrs.len() / 2);
        let partial = csum::fold(csum::pseudo_header(src, dst, self.ip.proto, l4_len));
        let th = &mut h[self.ip.l4..];
        if udp {
            put16(th, field::UDP_LEN, l4_len);
        } else {
            th[field::TCP_FLAGS] = field::TCP_ACK | if self.last_psh { field::TCP_PSH } else { 0 };
        }
        put16(th, csum_offset, partial);
        Ok(n)
    }
}

/// What a run needs to know of one segment that may join it.
struct Candidate {
    ip: IpLayout,
    hdr_len: usize,
    /// TCP: the sequence number. UDP: the IPv4 ID where the kernel will number the datagrams it
    /// cuts from the merged packet one by one from the first's (IPv4 without DF), else 0: an
    /// ID with DF means nothing (RFC 6864) and IPv6 has none.
    seq: u32,
    /// What the next segment's `seq` must be.
    next: u32,
    payload: usize,
    psh: bool,
}

impl Candidate {
    fn parse(packet: &[u8], udp: bool) -> Option<Self> {
        let ip = IpLayout::parse(packet).ok()?;
        // IPv4 options and IPv6 extension headers are rare in bulk flows and would all have to
        // be compared: such packets go through unmerged.
        let plain = if ip.ipv6 {
            field::V6_HEADER_LEN
        } else {
            field::V4_HEADER_LEN
        };
        if ip.l4 != plain {
            return None;
        }
        match ip.proto {
            field::TCP => Self::tcp(packet, ip),
            field::UDP if udp => Self::udp(packet, ip),
            _ => None,
        }
    }

    fn tcp(packet: &[u8], ip: IpLayout) -> Option<Self> {
        let tcp = packet.get(ip.l4..)?;
        let doff = usize::from(tcp.get(field::TCP_DATA_OFFSET)? >> 4) * 4;
        if doff < field::TCP_HEADER_LEN || doff > tcp.len() {
            return None;
        }
        // SYN, FIN, RST and URG must reach the stack as sent; CWR and ECE carry ECN signals a
        // merge would blur.
        let psh = match tcp[field::TCP_FLAGS] {
            field::TCP_ACK => false,
            f if f == field::TCP_ACK | field::TCP_PSH => true,
            _ => return None,
        };
        let payload = tcp.len() - doff;
        let seq = be32(tcp, field::TCP_SEQ);
        (payload > 0).then(|| Self {
            ip,
            hdr_len: ip.l4 + doff,
            seq,
            // Sequence numbers wrap; a payload is below 64 KiB, so the cast is exact.
            next: seq.wrapping_add(payload as u32),
            payload,
            psh,
        })
    }

    fn udp(packet: &[u8], ip: IpLayout) -> Option<Self> {
        let udp = packet.get(ip.l4..ip.l4 + field::UDP_HEADER_LEN)?;
        let len = usize::from(be16(udp, field::UDP_LEN));
        // A datagram without a checksum (IPv4's 0) would leave the merge with one: as sent is
        // how it must arrive.
        if len != packet.len() - ip.l4 || be16(udp, field::UDP_CHECKSUM) == 0 {
            return None;
        }
        let numbered = !ip.ipv6 && packet[field::V4_FLAGS_FRAG] & field::V4_DF == 0;
        let seq = if numbered {
            u32::from(be16(packet, field::V4_ID))
        } else {
            0
        };
        let payload = len - field::UDP_HEADER_LEN;
        (payload > 0).then(|| Self {
            ip,
            hdr_len: ip.l4 + field::UDP_HEADER_LEN,
            seq,
            next: if numbered { (seq + 1) & 0xffff } else { 0 },
            payload,
            psh: false,
        })
    }
}

/// Whether two headers of one length and layout may share the merged header: every field it
/// keeps from the first must be the same in both. Lengths, IPv4 ID and checksums, sequence
/// numbers and flags are checked apart or rewritten. Linux's `inet_gro_receive`,
/// `ipv6_gro_receive`, `tcp_gro_receive` and `udp_gro_receive` compare the same fields.
fn same_flow(a: &[u8], b: &[u8], ip: IpLayout) -> bool {
    let ip_same = if ip.ipv6 {
        // Version, traffic class, flow label; next header, hop limit, addresses.
        a[..4] == b[..4] && a[6..40] == b[6..40]
    } else {
        // Version, IHL, TOS; DF and the (zero) fragment fields, TTL, protocol; addresses.
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..20] == b[12..20]
    };
    let (ta, tb) = (&a[ip.l4..], &b[ip.l4..]);
    // Ports; for TCP the ACK number and data offset, window, options (timestamps included).
    ip_same
        && ta[..4] == tb[..4]
        && (ip.proto == field::UDP
            || ta[8..13] == tb[8..13] && ta[14..16] == tb[14..16] && ta[20..] == tb[20..])
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::super::testpkt::*;
    use super::super::{complete_checksum, segment, Segment, MAX_SEG_HDR};
    use super::*;

    const MSS: usize = 1000;

    /// The `i`th full segment of a flow, changed by `f`.
    fn seg(i: usize, f: impl FnOnce(&mut Tcp)) -> Vec<u8> {
        let mut t = Tcp {
            seq: Tcp::default().seq + (i * MSS) as u32,
            payload_len: MSS,
            payload_offset: i * MSS,
            id: Tcp::default().id + i as u16,
            ..Tcp::default()
        };
        f(&mut t);
        tcp_packet(&t)
    }

    /// A run of the first `n` segments of the default flow.
    fn run_of(n: usize, f: impl Fn(&mut Tcp)) -> GroRun {
        let mut run = GroRun::start(&seg(0, &f), false).unwrap();
        for i in 1..n {
            assert!(run.push(&seg(i, &f)), "segment {i}");
        }
        run
    }

    /// `push` refuses `packet` and leaves the run as it was.
    fn refuses(run: &mut GroRun, packet: &[u8]) {
        let before = *run;
        assert!(!run.push(packet));
        assert_eq!(*run, before);
    }

    /// Writes the run as the engine would, completes the checksum as the kernel would, and
    /// checks the result with etherparse.
    fn merge_and_check(run: &GroRun, packets: &[Vec<u8>]) -> (VnetHdr, Vec<u8>) {
        let mut out = [0u8; VNET_HDR_LEN + MAX_SEG_HDR];
        let n = run.emit_header(&mut out).unwrap();
        let vnet = VnetHdr::parse(&out).unwrap();
        let mut merged = out[VNET_HDR_LEN..n].to_vec();
        for p in packets {
            merged.extend_from_slice(&p[run.header_len()..]);
        }
        let l4 = usize::from(vnet.csum_start);
        complete_checksum(&mut merged, l4, usize::from(vnet.csum_offset)).unwrap();

        check_merged(&merged);
        (vnet, merged)
    }

    /// Lengths and checksums of a merged packet, checked with etherparse.
    fn check_merged(merged: &[u8]) {
        let sliced = SlicedPacket::from_ip(merged).unwrap();
        let tcp_ok = match (&sliced.net, &sliced.transport) {
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) => {
                let h = ip.header();
                assert_eq!(usize::from(h.total_len()), merged.len());
                assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                tcp.checksum() == tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap()
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(tcp))) => {
                let h = ip.header();
                assert_eq!(usize::from(h.payload_length()) + 40, merged.len());
                tcp.checksum() == tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap()
            }
            _ => panic!("not TCP/IP"),
        };
        assert!(tcp_ok);
    }

    #[test]
    fn merges_a_flow() {
        for v6 in [false, true] {
            let tweak = |t: &mut Tcp| t.v6 = v6;
            let mut packets: Vec<_> = (0..5).map(|i| seg(i, tweak)).collect();
            // A short last segment with PSH.
            packets.push(seg(5, |t| {
                t.v6 = v6;
                t.payload_len = 123;
                t.psh = true;
            }));
            let mut run = GroRun::start(&packets[0], false).unwrap();
            for p in &packets[1..] {
                assert!(run.push(p));
            }
            assert_eq!(run.count(), 6);
            // Nothing follows a PSH.
            refuses(&mut run, &seg(6, tweak));

            let (vnet, merged) = merge_and_check(&run, &packets);
            let l4 = if v6 { 40 } else { 20 };
            assert_eq!(
                vnet,
                VnetHdr {
                    flags: VnetHdr::NEEDS_CSUM,
                    gso_type: if v6 {
                        VnetHdr::GSO_TCPV6
                    } else {
                        VnetHdr::GSO_TCPV4
                    },
                    hdr_len: (l4 + 32) as u16,
                    gso_size: MSS as u16,
                    csum_start: l4 as u16,
                    csum_offset: 16,
                }
            );
            // What one sender would have sent in one packet.
            let whole = tcp_packet(&Tcp {
                v6,
                psh: true,
                payload_len: 5 * MSS + 123,
                ..Tcp::default()
            });
            assert_eq!(merged, whole);
        }
    }

    #[test]
    fn run_of_one_is_a_plain_packet() {
        let p = seg(0, |t| t.psh = true);
        let run = GroRun::start(&p, false).unwrap();
        assert_eq!(run.count(), 1);
        let (vnet, merged) = merge_and_check(&run, std::slice::from_ref(&p));
        assert_eq!(vnet.gso_type, VnetHdr::GSO_NONE);
        assert_eq!(vnet.gso_size, 0);
        assert_eq!(vnet.flags, VnetHdr::NEEDS_CSUM);
        assert_eq!(merged, p);
    }

    #[test]
    fn start_refuses() {
        let refused = |f: &dyn Fn(&mut Tcp)| GroRun::start(&seg(0, f), false).is_none();
        assert!(!refused(&|_| {}));
        assert!(refused(&|t| t.fin = true));
        assert!(refused(&|t| t.cwr = true));
        assert!(refused(&|t| t.payload_len = 0));
        assert!(refused(&|t| t.ip_options = vec![1, 1, 1, 0]));
        // Flags other than ACK and ACK|PSH, set by hand: SYN, RST, URG, ECE, none.
        for flags in [0x12, 0x14, 0x30, 0x50, 0x00, 0x08] {
            let mut p = seg(0, |_| {});
            p[20 + 13] = flags;
            assert!(GroRun::start(&p, false).is_none(), "{flags:#x}");
        }
        let mut frag = seg(0, |_| {});
        frag[6] |= 0x20;
        fix_ipv4_checksum(&mut frag);
        assert!(GroRun::start(&frag, false).is_none());
        assert!(GroRun::start(&udp_packet(false, 100), false).is_none());
        assert!(GroRun::start(&udp_packet(true, 100), false).is_none());
        // IPv6 with a destination options header before TCP.
        let plain = seg(0, |t| t.v6 = true);
        let mut ext = plain[..40].to_vec();
        ext[5] += 8;
        ext[6] = 60;
        ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&plain[40..]);
        assert!(GroRun::start(&ext, false).is_none());
        // Lengths that disagree with the buffer.
        let p = seg(0, |_| {});
        assert!(GroRun::start(&p[..p.len() - 1], false).is_none());
        assert!(GroRun::start(&p[..40], false).is_none());
        assert!(GroRun::start(&[], false).is_none());
    }

    #[test]
    fn push_refuses_another_flow() {
        let mut run = run_of(2, |_| {});
        refuses(&mut run, &seg(2, |t| t.src_port += 1));
        refuses(&mut run, &seg(2, |t| t.dst_port += 1));
        refuses(&mut run, &seg(2, |t| t.ack += 1));
        refuses(&mut run, &seg(2, |t| t.window += 1));
        refuses(&mut run, &seg(2, |t| t.ttl -= 1));
        refuses(&mut run, &seg(2, |t| t.options[11] += 1)); // a newer timestamp
        refuses(&mut run, &seg(2, |t| t.options = vec![1, 1, 1, 1]));
        refuses(&mut run, &seg(2, |t| t.v6 = true));
        refuses(&mut run, &seg(2, |t| t.ip_options = vec![1, 1, 1, 0]));
        refuses(&mut run, &seg(2, |t| t.fin = true));
        refuses(&mut run, &seg(2, |t| t.cwr = true));
        let mut other_dst = seg(2, |_| {});
        other_dst[19] ^= 1;
        fix_ipv4_checksum(&mut other_dst);
        refuses(&mut run, &other_dst);
        // ECN CE on one packet only.
        let mut ce = seg(2, |_| {});
        ce[1] |= 0x03;
        fix_ipv4_checksum(&mut ce);
        refuses(&mut run, &ce);
        let mut no_df = seg(2, |_| {});
        no_df[6] &= !0x40;
        fix_ipv4_checksum(&mut no_df);
        refuses(&mut run, &no_df);
        // The same flow continues: the IPv4 ID and checksums are not compared.
        let mut next = seg(2, |t| t.id = 9);
        next[20 + 16] ^= 0xff;
        assert!(run.push(&next));
    }

    #[test]
    fn push_refuses_ipv6_header_differences() {
        let v6 = |t: &mut Tcp| t.v6 = true;
        let mut run = run_of(2, v6);
        for (at, bit) in [
            (0, 0x01),
            (1, 0x30),
            (3, 0x01),
            (7, 0x01),
            (39, 0x01),
            (8, 0x80),
        ] {
            let mut p = seg(2, v6);
            p[at] ^= bit;
            refuses(&mut run, &p);
        }
        assert!(run.push(&seg(2, v6)));
    }

    #[test]
    fn push_refuses_out_of_order_and_odd_sizes() {
        let mut run = run_of(2, |_| {});
        refuses(&mut run, &seg(3, |_| {})); // a gap
        refuses(&mut run, &seg(1, |_| {})); // a retransmission
        refuses(&mut run, &seg(2, |t| t.seq += 1));
        refuses(&mut run, &seg(2, |t| t.payload_len = MSS + 1)); // larger than the first
                                                                 // A smaller segment may be last only.
        assert!(run.push(&seg(2, |t| t.payload_len = MSS - 1)));
        refuses(&mut run, &seg(3, |t| t.seq -= 1));
        assert_eq!(run.count(), 3);

        // PSH ends a run.
        let mut run = run_of(1, |_| {});
        assert!(run.push(&seg(1, |t| t.psh = true)));
        refuses(&mut run, &seg(2, |_| {}));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let wrap = |t: &mut Tcp| t.seq = t.seq.wrapping_sub(Tcp::default().seq + MSS as u32 + 1);
        let run = run_of(4, wrap);
        assert_eq!(run.count(), 4);
    }

    #[test]
    fn push_stops_at_64k() {
        const BIG: usize = 5000;
        let big = |i: usize, len: usize| {
            tcp_packet(&Tcp {
                seq: 7 + (i * BIG) as u32,
                payload_len: len,
                options: vec![],
                ..Tcp::default()
            })
        };
        let mut run = GroRun::start(&big(0, BIG), false).unwrap();
        for i in 1..13 {
            assert!(run.push(&big(i, BIG)));
        }
        // 40 + 13 × 5000 = 65040; 495 more make exactly 65535.
        refuses(&mut run, &big(13, 496));
        assert!(run.push(&big(13, 495)));
        let mut out = [0u8; 128];
        run.emit_header(&mut out).unwrap();
        assert_eq!(out[VNET_HDR_LEN + 2..VNET_HDR_LEN + 4], [0xff, 0xff]);
    }

    #[test]
    fn push_stops_at_max_segments() {
        let small = |i: usize| {
            tcp_packet(&Tcp {
                seq: (i * 100) as u32,
                payload_len: 100,
                ..Tcp::default()
            })
        };
        let mut run = GroRun::start(&small(0), false).unwrap();
        for i in 1..MAX_SEGMENTS {
            assert!(run.push(&small(i)));
        }
        refuses(&mut run, &small(MAX_SEGMENTS));
        assert_eq!(run.count(), MAX_SEGMENTS);
    }

    #[test]
    fn emit_header_needs_room() {
        let run = run_of(2, |_| {});
        let need = VNET_HDR_LEN + run.header_len();
        let mut out = vec![0u8; need - 1];
        assert_eq!(run.emit_header(&mut out), Err(OffloadError::BufferTooSmall));
        assert_eq!(run.emit_header(&mut []), Err(OffloadError::BufferTooSmall));
        let mut out = vec![0u8; need + 10];
        assert_eq!(run.emit_header(&mut out), Ok(need));
    }

    /// The `i`th full datagram of a UDP flow, changed by `f`.
    fn dgram(i: usize, f: impl FnOnce(&mut Udp)) -> Vec<u8> {
        let mut u = Udp {
            id: Udp::default().id.wrapping_add(i as u16),
            payload_len: MSS,
            payload_offset: i * MSS,
            ..Udp::default()
        };
        f(&mut u);
        udp_datagram(&u)
    }

    #[test]
    fn merges_udp_datagrams() {
        for (v6, df) in [(false, true), (false, false), (true, true)] {
            let tweak = |u: &mut Udp| {
                u.v6 = v6;
                u.df = df;
            };
            let mut packets: Vec<_> = (0..5).map(|i| dgram(i, tweak)).collect();
            packets.push(dgram(5, |u| {
                tweak(u);
                u.payload_len = 77;
            }));
            let mut run = GroRun::start(&packets[0], true).unwrap();
            for p in &packets[1..] {
                assert!(run.push(p));
            }
            assert_eq!(run.count(), 6);
            // Nothing follows a shorter datagram.
            refuses(&mut run, &dgram(6, tweak));

            let mut out = [0u8; VNET_HDR_LEN + MAX_SEG_HDR];
            let n = run.emit_header(&mut out).unwrap();
            let vnet = VnetHdr::parse(&out).unwrap();
            let l4 = if v6 { 40 } else { 20 };
            assert_eq!(
                vnet,
                VnetHdr {
                    flags: VnetHdr::NEEDS_CSUM,
                    gso_type: VnetHdr::GSO_UDP_L4,
                    hdr_len: (l4 + 8) as u16,
                    gso_size: MSS as u16,
                    csum_start: l4 as u16,
                    csum_offset: 6,
                }
            );
            let mut merged = out[VNET_HDR_LEN..n].to_vec();
            for p in &packets {
                merged.extend_from_slice(&p[run.header_len()..]);
            }
            // Lengths as one datagram of everything, and a partial checksum that completes.
            let mut whole = merged.clone();
            complete_checksum(&mut whole, l4, 6).unwrap();
            let sliced = SlicedPacket::from_ip(&whole).unwrap();
            let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
                panic!("not UDP")
            };
            assert_eq!(usize::from(udp.length()), whole.len() - l4);
            let want = match &sliced.net {
                Some(NetSlice::Ipv4(ip)) => {
                    let h = ip.header();
                    assert_eq!(usize::from(h.total_len()), whole.len());
                    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                    udp.to_header()
                        .calc_checksum_ipv4(&h.to_header(), udp.payload())
                }
                Some(NetSlice::Ipv6(ip)) => udp
                    .to_header()
                    .calc_checksum_ipv6(&ip.header().to_header(), udp.payload()),
                _ => panic!("not IP"),
            };
            assert_eq!(udp.checksum(), want.unwrap());
            // And cut as the kernel cuts it, the datagrams that were merged.
            let mut headers = [0u8; MAX_SEGMENTS * MAX_SEG_HDR];
            let mut segs = [Segment::default(); MAX_SEGMENTS];
            let done = segment(&merged, &vnet, 65535, &mut headers, &mut segs).unwrap();
            assert_eq!(done.count, packets.len());
            for (s, p) in segs.iter().zip(&packets) {
                assert_eq!(
                    &[&headers[s.header_range()], &merged[s.payload_range()]].concat(),
                    p
                );
            }
        }
    }

    #[test]
    fn udp_start_and_push_refuse() {
        // Only where the TUN takes UDP super-packets, and only datagrams with a checksum.
        assert!(GroRun::start(&dgram(0, |_| {}), false).is_none());
        let mut no_csum = dgram(0, |_| {});
        no_csum[26..28].fill(0);
        assert!(GroRun::start(&no_csum, true).is_none());
        assert!(GroRun::start(&dgram(0, |u| u.payload_len = 0), true).is_none());
        let mut short = dgram(0, |_| {});
        short[25] -= 1; // a UDP length one short of the packet
        assert!(GroRun::start(&short, true).is_none());

        let mut run = GroRun::start(&dgram(0, |_| {}), true).unwrap();
        assert!(run.push(&dgram(1, |_| {})));
        refuses(&mut run, &dgram(2, |u| u.src_port += 1));
        refuses(&mut run, &dgram(2, |u| u.dst_port += 1));
        refuses(&mut run, &dgram(2, |u| u.ttl -= 1));
        refuses(&mut run, &dgram(2, |u| u.df = false));
        refuses(&mut run, &dgram(2, |u| u.v6 = true));
        refuses(&mut run, &dgram(2, |u| u.payload_len = MSS + 1));
        refuses(&mut run, &no_csum);
        refuses(&mut run, &seg(2, |t| t.payload_len = MSS));
        let mut ce = dgram(2, |_| {});
        ce[1] |= 0x03;
        fix_ipv4_checksum(&mut ce);
        refuses(&mut run, &ce);
        // With DF the ID means nothing and is not compared.
        assert!(run.push(&dgram(7, |_| {})));

        // Without DF the IDs must follow each other, across the wrap too.
        let no_df = |id: u16| dgram(0, move |u| (u.df, u.id) = (false, id));
        let mut run = GroRun::start(&no_df(0xfffe), true).unwrap();
        refuses(&mut run, &no_df(0));
        assert!(run.push(&no_df(0xffff)));
        assert!(run.push(&no_df(0)));
        refuses(&mut run, &no_df(0));

        // A TCP run takes no UDP datagram.
        let mut tcp = run_of(2, |_| {});
        refuses(&mut tcp, &dgram(2, |_| {}));
    }
}
