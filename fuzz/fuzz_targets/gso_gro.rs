//! TUN offloads (`datapath::offload`): virtio-net headers, GSO segmentation, checksum
//! completion and GRO merging.
//!
//! Input: `[mode:1]...`. Mode even, raw: `[vnet:10][mtu:2][rooms:1][packet...]`, any header and
//! any bytes. Mode odd, built: the fields of a TCP super-packet as the kernel hands one over
//! (`NEEDS_CSUM`, partial checksum), its options and payload taken from the input.
//!
//! Asserts, raw: no panic; a header that parses emits the same 10 bytes; segments lie inside
//! the buffers, follow each other through the payload and each is a valid IP packet with a
//! valid transport checksum, TCP ones within the tunnel MTU. Built: the same, and the
//! segments merged again by `GroRun` give back the original bytes under the same header.

#![no_main]

use datapath::offload::{
    complete_checksum, segment, GroRun, OffloadError, Segment, VnetHdr, MAX_SEGMENTS, MAX_SEG_HDR,
    VNET_HDR_LEN,
};
use datapath::wire::IpPacket;
use libfuzzer_sys::fuzz_target;
use tundra_fuzz::{l4_checksum_ok, naive_sum, tcp_packet, Input, Tcp};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    if input.u8() & 1 == 0 {
        raw(input);
    } else {
        built(input);
    }
});

fn raw(mut input: Input) {
    let vnet_bytes: [u8; VNET_HDR_LEN] = std::array::from_fn(|_| input.u8());
    let mtu = usize::from(input.u16());
    let rooms = usize::from(input.u8()) % (MAX_SEGMENTS + 2);
    let packet = input.rest();

    if let Ok(h) = VnetHdr::parse(&vnet_bytes) {
        let mut again = [0u8; VNET_HDR_LEN];
        h.emit(&mut again);
        assert_eq!(again, vnet_bytes);
    }
    let le16 = |at: usize| u16::from_le_bytes([vnet_bytes[at], vnet_bytes[at + 1]]);
    let vnet = VnetHdr {
        flags: vnet_bytes[0],
        gso_type: vnet_bytes[1],
        hdr_len: le16(2),
        gso_size: le16(4),
        csum_start: le16(6),
        csum_offset: le16(8),
    };
    let mut headers = vec![0u8; rooms * MAX_SEG_HDR];
    let mut segs = vec![Segment::default(); rooms];
    for gso_type in [
        vnet.gso_type,
        VnetHdr::GSO_TCPV4,
        VnetHdr::GSO_TCPV6,
        VnetHdr::GSO_UDP_L4,
    ] {
        let v = VnetHdr { gso_type, ..vnet };
        if let Ok(done) = segment(packet, &v, mtu, &mut headers, &mut segs) {
            check_segments(
                packet,
                &v,
                mtu,
                &headers,
                &segs[..done.count],
                done.segment_size,
            );
        }
    }

    let mut p = packet.to_vec();
    let (start, offset) = (usize::from(vnet.csum_start), usize::from(vnet.csum_offset));
    match complete_checksum(&mut p, start, offset) {
        Ok(()) => {
            let at = start + offset;
            assert!(offset % 2 == 0 && at + 2 <= p.len());
            // The field held the pseudo-header sum; now the region sums to its complement
            // (even starts: the field is then at an even offset of the packet too).
            if start % 2 == 0 {
                let pseudo = u32::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
                let mut sum = u32::from(naive_sum(&p[start..])) + pseudo;
                sum = (sum & 0xffff) + (sum >> 16);
                assert_eq!(sum, 0xffff, "checksum completed wrongly");
            }
            assert_eq!(p[..at], packet[..at]);
            assert_eq!(p[at + 2..], packet[at + 2..]);
        }
        Err(e) => {
            assert_eq!(e, OffloadError::BadVnetHdr);
            assert_eq!(p, packet);
        }
    }

    // GRO over pieces of the input: whatever it merges stays within its limits.
    if let Some(mut run) = GroRun::start(packet, true) {
        let half = &packet[..packet.len() / 2];
        for next in [packet, half, packet] {
            let before = run;
            if !run.push(next) {
                assert_eq!(run, before, "a refused push changed the run");
            }
        }
        assert!(run.header_len() <= packet.len());
        let mut out = [0u8; VNET_HDR_LEN + MAX_SEG_HDR];
        let n = run.emit_header(&mut out).expect("room for any header");
        assert_eq!(n, VNET_HDR_LEN + run.header_len());
        VnetHdr::parse(&out).expect("GRO emits a valid virtio-net header");
    }
}

fn built(mut input: Input) {
    let v6 = input.bool();
    let psh = input.bool();
    let mss = usize::from(input.u16()).max(1);
    let options_len = usize::from(input.u8() % 11) * 4;
    let mut t = Tcp {
        v6,
        tos: input.u8(),
        flow_label: input.u32(),
        id: input.u16(),
        df: input.bool(),
        ttl: input.u8(),
        ports: (input.u16(), input.u16()),
        seq: input.u32(),
        ack: input.u32(),
        flags: 0x10 | if psh { 0x08 } else { 0 },
        window: input.u16(),
        urgent: input.u16(),
        options: &[],
        payload: &[],
    };
    let options = input.bytes(options_len);
    // Repeat the payload pattern given, to reach many segments from a short input.
    let repeat = usize::from(input.u8());
    let pattern = input.rest();
    if options.len() < options_len || pattern.is_empty() {
        return;
    }
    let hdr_len = if v6 { 40 } else { 20 } + 20 + options_len;
    let payload: Vec<u8> = pattern
        .iter()
        .copied()
        .cycle()
        .take((pattern.len() * (repeat + 1)).min(65535 - hdr_len))
        .collect();
    t.options = options;
    t.payload = &payload;
    let original = tcp_packet(&t, true);
    let l4 = if v6 { 40 } else { 20 };
    let vnet = VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        gso_type: if v6 {
            VnetHdr::GSO_TCPV6
        } else {
            VnetHdr::GSO_TCPV4
        },
        hdr_len: hdr_len as u16,
        gso_size: mss as u16,
        csum_start: l4 as u16,
        csum_offset: 16,
    };

    let mut headers = vec![0u8; MAX_SEGMENTS * MAX_SEG_HDR];
    let mut segs = [Segment::default(); MAX_SEGMENTS];
    let res = segment(&original, &vnet, 65535, &mut headers, &mut segs);
    let count = payload.len().div_ceil(mss);
    if count > MAX_SEGMENTS {
        assert_eq!(res, Err(OffloadError::TooManySegments));
        return;
    }
    let done = res.expect("a valid super-packet segments");
    assert_eq!(done.count, count);
    assert_eq!(done.segment_size, hdr_len + mss.min(payload.len()));
    let segs = &segs[..count];
    check_segments(&original, &vnet, 65535, &headers, segs, done.segment_size);

    let packets: Vec<Vec<u8>> = segs
        .iter()
        .map(|s| [&headers[s.header_range()], &original[s.payload_range()]].concat())
        .collect();
    let mut run = GroRun::start(&packets[0], true).expect("a segment starts a run");
    for p in &packets[1..] {
        assert!(run.push(p), "a segment continues the run");
    }
    assert_eq!(run.count(), count);
    assert_eq!(run.header_len(), hdr_len);
    let mut out = [0u8; VNET_HDR_LEN + MAX_SEG_HDR];
    let n = run.emit_header(&mut out).expect("room");
    assert_eq!(n, VNET_HDR_LEN + hdr_len);
    let mut merged_vnet = VnetHdr::parse(&out).expect("valid");
    if count == 1 {
        // A run of one is a plain packet with a partial checksum.
        assert_eq!(merged_vnet.gso_type, VnetHdr::GSO_NONE);
        merged_vnet.gso_type = vnet.gso_type;
        merged_vnet.gso_size = vnet.gso_size;
    }
    assert_eq!(merged_vnet, vnet);
    let mut merged = out[VNET_HDR_LEN..n].to_vec();
    for p in &packets {
        merged.extend_from_slice(&p[hdr_len..]);
    }
    assert!(
        merged == original,
        "merged segments differ from the super-packet"
    );

    // Cut to a smaller tunnel MTU: every TCP segment fits it.
    let mtu = hdr_len + 1 + usize::from(t.urgent) % 1500;
    let mut segs = [Segment::default(); MAX_SEGMENTS];
    if let Ok(done) = segment(&original, &vnet, mtu, &mut headers, &mut segs) {
        assert!(done.segment_size <= mtu);
        check_segments(
            &original,
            &vnet,
            mtu,
            &headers,
            &segs[..done.count],
            done.segment_size,
        );
    }
}

/// What every successful segmentation must look like.
fn check_segments(
    packet: &[u8],
    vnet: &VnetHdr,
    mtu: usize,
    headers: &[u8],
    segs: &[Segment],
    segment_size: usize,
) {
    assert!(!segs.is_empty());
    let tcp = vnet.gso_type != VnetHdr::GSO_UDP_L4;
    let mut next_payload = None;
    for (i, s) in segs.iter().enumerate() {
        let header = headers
            .get(s.header_range())
            .expect("header inside `headers`");
        let payload = packet
            .get(s.payload_range())
            .expect("payload inside the packet");
        assert!(s.header_len <= MAX_SEG_HDR);
        if let Some(at) = next_payload {
            assert_eq!(s.payload_start, at, "segments follow each other");
        }
        next_payload = Some(s.payload_end());
        if i + 1 < segs.len() {
            assert_eq!(s.len(), segment_size);
        } else {
            assert!(s.len() <= segment_size);
            assert_eq!(
                s.payload_end(),
                packet.len(),
                "the last segment ends the packet"
            );
        }
        if tcp {
            assert!(s.len() <= mtu, "TCP segment over the MTU");
        }
        let seg = [header, payload].concat();
        let ip = IpPacket::new_checked(&seg[..]).expect("a segment is a valid IP packet");
        let l4 = l4_offset(&seg);
        assert!(l4 < s.header_len);
        if !ip.is_ipv6() {
            assert_eq!(naive_sum(&seg[..ip.header_len()]), 0xffff, "IPv4 checksum");
        }
        let proto = if tcp { 6 } else { 17 };
        assert!(l4_checksum_ok(&seg, l4, proto), "transport checksum");
    }
}

/// Where the transport header of a valid segment starts: after the IPv4 header, or after the
/// IPv6 header and its hop-by-hop and destination options headers.
fn l4_offset(seg: &[u8]) -> usize {
    if seg[0] >> 4 == 4 {
        return usize::from(seg[0] & 0x0f) * 4;
    }
    let (mut next, mut off) = (seg[6], 40);
    while next == 0 || next == 60 {
        next = seg[off];
        off += (usize::from(seg[off + 1]) + 1) * 8;
    }
    off
}

trait End {
    fn payload_end(&self) -> usize;
}

impl End for Segment {
    fn payload_end(&self) -> usize {
        self.payload_start + self.payload_len
    }
}
