//! The per-batch decisions (`datapath::batch`): `EgressBatch::push` and `IngressBatch::push`
//! with any bytes and any receive metadata, in both wire formats.
//!
//! Input: `[flags:1][len:2][stride:2][sender:1][mtu:2][bytes...]`; flags pick the direction,
//! the format (udp, or vxlan with the fixed VNI and MAC), the virtio-net header and GSO (on a
//! receive: whether the TUN takes UDP super-packets).
//! The bytes go where the engine would read or receive them (a vnet header first, if any);
//! with flag 64 a receive is cut into `stride`-byte datagrams, each received into a slot of
//! its own (as from a veth), so that runs merge across slots, and a read into `stride`-byte
//! packets, each read into a slot of its own, so that small datagrams group into GSO sends.
//!
//! Asserts: no panic; every span of every send, reply and write lies inside its slot buffer;
//! a send's spans add up to its bytes plus one wire header per datagram, and each of its
//! datagrams passes the receiving side's `Encap::decap` and holds one valid IP packet;
//! `send_groups` keeps every send, in order, and groups only single datagrams of one length
//! within the GSO limits (and only with GSO); a write
//! is a virtio-net header (with offloads) followed by one valid IP packet for a local address,
//! and the writes carry every packet the batch counted as received.

#![no_main]

use datapath::batch::{
    group_shape, send_groups, EgressBatch, IngressBatch, RecvMeta, Send, Span, MAX_GSO_BYTES,
    MAX_GSO_SEGMENTS, SCRATCH, SLOT_SIZE,
};
use datapath::offload::{VnetHdr, VNET_HDR_LEN};
use datapath::wire::IpPacket;
use datapath::{DropReason, Encap, Encapsulator, Peer, Table, WireFormat};
use libfuzzer_sys::fuzz_target;
use tundra_fuzz::{sender, table, Input, OURS, VNI};

thread_local! {
    static TABLES: [Table; 2] = [table(WireFormat::Udp), table(WireFormat::Vxlan)];
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let len = usize::from(input.u16());
    let stride = usize::from(input.u16());
    let from = input.u8();
    let mtu = usize::from(input.u16());
    let bytes = input.rest();

    let vxlan = flags & 2 != 0;
    let vnet = flags & 4 != 0;
    let gso = flags & 8 != 0;
    let encap = if vxlan {
        Encap::Vxlan {
            vni: VNI,
            mac: OURS,
        }
    } else {
        Encap::Udp
    };
    TABLES.with(|tables| {
        let t = &tables[usize::from(vxlan)];
        if flags & 1 == 0 {
            let stride = (flags & 64 != 0).then_some(stride);
            egress(t, encap, vnet, gso, bytes, len, stride, mtu);
        } else {
            let port = if flags & 16 != 0 {
                40000
            } else if vxlan {
                8472
            } else {
                8285
            };
            let meta = RecvMeta {
                len,
                from: (from != 0xff).then(|| sender(from, port)),
                truncated: flags & 32 != 0,
                stride,
            };
            if flags & 64 != 0 {
                ingress_slots(t, encap, vnet, gso, bytes, meta);
            } else {
                ingress(t, encap, vnet, gso, &mut vec![0u8; SLOT_SIZE], bytes, meta);
            }
        }
    });
});

/// How many slots a batch cut into datagrams or packets (flag 64) fills at most.
const SLOTS: usize = 16;

/// Reads `bytes` from the TUN as one packet (its length `len` if the top bit is set), or with
/// `stride` set cut into `stride`-byte packets, each read into a slot of its own, as one batch.
#[allow(clippy::too_many_arguments)]
fn egress(
    t: &Table,
    encap: Encap,
    vnet: bool,
    gso: bool,
    bytes: &[u8],
    len: usize,
    stride: Option<usize>,
    mtu: usize,
) {
    let mut batch = EgressBatch::new(Encapsulator::new(mtu, 1000), encap, vnet, gso);
    let (at, room) = batch.read_range();
    let chunks: Vec<&[u8]> = match stride {
        Some(stride) => bytes.chunks(stride.clamp(1, room)).take(SLOTS).collect(),
        None => vec![&bytes[..bytes.len().min(room)]],
    };
    let mut bufs = vec![vec![0u8; SLOT_SIZE]; chunks.len()];
    let mut busy = vec![false; chunks.len()];
    for (i, chunk) in chunks.iter().enumerate() {
        bufs[i][at..at + chunk.len()].copy_from_slice(chunk);
        // The read length: what was copied, or a fuzzed one within the read range.
        let len = match stride {
            None if len & 0x8000 != 0 => (len & 0x7fff).min(room),
            _ => chunk.len(),
        };
        busy[i] = batch.push(t, i as u16, &mut bufs[i], len, 1);
    }
    let mut used = vec![false; bufs.len()];
    batch.for_each_peer_run(t, |peer, run, spans| {
        for send in run {
            used[usize::from(send.slot)] = true;
            check_send(t, encap, peer, send, spans, &bufs[usize::from(send.slot)]);
        }
        check_groups(run, spans, gso);
    });
    for (slot, span) in batch.replies() {
        used[usize::from(*slot)] = true;
        let reply = inside(span, &bufs[usize::from(*slot)]);
        let skip = if vnet { VNET_HDR_LEN } else { 0 };
        assert!(
            reply[..skip].iter().all(|&b| b == 0),
            "a zero virtio-net header"
        );
        IpPacket::new_checked(&reply[skip..]).expect("a reply is a valid packet");
    }
    assert_eq!(
        busy, used,
        "push says which slots the sends and replies point into"
    );
}

/// A send's spans add up to its bytes plus one wire header per datagram, and each of its
/// datagrams passes the receiving side's `Encap::decap` and holds one valid IP packet for a
/// remote address.
fn check_send(t: &Table, encap: Encap, peer: &Peer, send: &Send, spans: &[Span], buf: &[u8]) {
    let hlen = encap.header_len();
    let spans = send.spans_of(spans);
    let total: usize = spans.iter().map(|s| inside(s, buf).len()).sum();
    let datagrams = usize::from(send.datagrams);
    assert!(datagrams >= 1);
    assert_eq!(total, send.bytes as usize + datagrams * hlen);
    // Split the send into datagrams (GSO: every one but the last `segment_size`).
    let wire: Vec<u8> = spans.iter().flat_map(|s| s.of(buf)).copied().collect();
    let size = match send.segment_size {
        0 => wire.len(),
        s => usize::from(s),
    };
    assert_eq!(wire.len().div_ceil(size.max(1)), datagrams);
    let receiver = match encap {
        Encap::Udp => Encap::Udp,
        Encap::Vxlan { vni, .. } => Encap::Vxlan {
            vni,
            mac: peer.mac.expect("a vxlan peer has a MAC"),
        },
    };
    for datagram in wire.chunks(size.max(1)) {
        let off = receiver
            .decap(datagram)
            .expect("the peer accepts our header");
        assert_eq!(off, hlen);
        let inner = IpPacket::new_checked(&datagram[off..]).expect("a valid packet");
        assert!(!t.is_local(inner.dst_addr()));
    }
}

/// `send_groups` cuts a peer's run into groups in order, leaving nothing out; a group of more
/// than one send (only with GSO) is single datagrams of one length, at most
/// `MAX_GSO_SEGMENTS` and `MAX_GSO_BYTES`, and `group_shape` gives what each goes out as.
fn check_groups(run: &[Send], spans: &[Span], gso: bool) {
    let mut at = 0;
    for group in send_groups(run, spans, gso) {
        assert!(!group.is_empty());
        assert_eq!(group, &run[at..at + group.len()], "groups in order");
        at += group.len();
        let (size, n) = group_shape(group, spans);
        let len = |s: &Send| {
            s.spans_of(spans)
                .iter()
                .map(|p| p.len as usize)
                .sum::<usize>()
        };
        if let [s] = group {
            assert_eq!((size, n), (s.segment_size, s.datagrams));
            continue;
        }
        assert!(gso, "no groups without GSO");
        assert!(group.len() <= MAX_GSO_SEGMENTS);
        assert!(group
            .iter()
            .all(|s| s.segment_size == 0 && s.datagrams == 1));
        assert!(group.iter().all(|s| len(s) == usize::from(size)));
        assert!(group.len() * usize::from(size) <= MAX_GSO_BYTES);
        assert_eq!(usize::from(n), group.len());
    }
    assert_eq!(at, run.len(), "every send in a group");
}

fn ingress(
    t: &Table,
    encap: Encap,
    vnet: bool,
    uso: bool,
    buf: &mut [u8],
    bytes: &[u8],
    meta: RecvMeta,
) {
    let mut batch = IngressBatch::new(encap, vnet, uso);
    let (at, room) = batch.recv_range();
    let n = bytes.len().min(room);
    buf[at..at + n].copy_from_slice(&bytes[..n]);
    let meta = RecvMeta {
        len: if meta.len & 0x8000 != 0 {
            meta.len & 0x7fff
        } else {
            n
        },
        ..meta
    };
    let busy = batch.push(t, 3, buf, meta);
    batch.finish(|slot, at, bytes| {
        assert_eq!(slot, 3);
        inside_mut(at, bytes.len(), buf).copy_from_slice(bytes);
    });
    assert_eq!(busy, !batch.writes().is_empty());
    for write in batch.writes() {
        assert_eq!(write.slot, 3);
        let pieces = batch.pieces(write);
        assert!(pieces.iter().all(|p| p.slot == 3));
        let bytes: Vec<u8> = pieces
            .iter()
            .flat_map(|p| inside(&p.span, buf))
            .copied()
            .collect();
        check_write(t, vnet, write.packets, &bytes);
    }
    batch.count_peers(t);
}

/// Receives `bytes` cut into `meta.stride`-byte datagrams, each into its own slot (at most
/// [`SLOTS`]), as one batch.
fn ingress_slots(t: &Table, encap: Encap, vnet: bool, uso: bool, bytes: &[u8], meta: RecvMeta) {
    let mut batch = IngressBatch::new(encap, vnet, uso);
    let (at, room) = batch.recv_range();
    let mut bufs = vec![vec![0u8; SLOT_SIZE]; SLOTS];
    let mut busy = [false; SLOTS];
    for (i, chunk) in bytes
        .chunks(meta.stride.clamp(1, room))
        .take(SLOTS)
        .enumerate()
    {
        bufs[i][at..at + chunk.len()].copy_from_slice(chunk);
        let meta = RecvMeta {
            len: chunk.len(),
            stride: 0,
            ..meta
        };
        busy[i] = batch.push(t, i as u16, &mut bufs[i], meta);
    }
    batch.finish(|slot, at, bytes| {
        let buf = &mut bufs[usize::from(slot)];
        inside_mut(at, bytes.len(), buf).copy_from_slice(bytes);
    });
    let mut packets = 0;
    let mut used = [false; SLOTS];
    for write in batch.writes() {
        let pieces = batch.pieces(write);
        assert_eq!(
            write.slot, pieces[0].slot,
            "a write belongs to its first piece's slot"
        );
        let bytes: Vec<u8> = pieces
            .iter()
            .flat_map(|p| {
                used[usize::from(p.slot)] = true;
                inside(&p.span, &bufs[usize::from(p.slot)]).to_vec()
            })
            .collect();
        check_write(t, vnet, write.packets, &bytes);
        packets += u64::from(write.packets);
    }
    assert_eq!(busy, used, "push says which slots the writes point into");
    assert_eq!(
        packets + batch.local.drops[DropReason::TunWriteError as usize],
        batch.local.rx_packets,
        "every packet received is written or counted"
    );
}

/// A write's bytes: a virtio-net header (with offloads, saying GSO for a merged run) and one
/// valid IP packet for a local address.
fn check_write(t: &Table, vnet: bool, packets: u16, bytes: &[u8]) {
    let packet = if vnet {
        let hdr = VnetHdr::parse(bytes).expect("a valid virtio-net header");
        assert_eq!(hdr.is_gso(), packets > 1);
        &bytes[VNET_HDR_LEN..]
    } else {
        assert_eq!(packets, 1);
        bytes
    };
    let ip = IpPacket::new_checked(packet).expect("a write is one valid packet");
    assert!(t.is_local(ip.dst_addr()));
}

/// The bytes of `span`, which must lie inside the slot buffer.
fn inside<'a>(span: &Span, buf: &'a [u8]) -> &'a [u8] {
    let start = span.start as usize;
    let end = start + span.len as usize;
    assert!(end <= buf.len(), "span {span:?} outside the slot buffer");
    &buf[start..end]
}

/// The `len` bytes at `at`, which must lie inside the slot buffer's scratch area.
fn inside_mut(at: usize, len: usize, buf: &mut [u8]) -> &mut [u8] {
    assert!(
        at >= SCRATCH && at + len <= buf.len(),
        "header at {at}+{len} outside the scratch area"
    );
    &mut buf[at..at + len]
}
