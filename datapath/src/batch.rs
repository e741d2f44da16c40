//! The per-batch decisions of both directions, shared by every I/O engine: an engine reads or
//! receives into slot buffers, hands each one to [`EgressBatch::push`] or
//! [`IngressBatch::push`], and then only moves bytes: the sends and TUN writes come back as
//! lists of [`Span`]s of the slot buffers (iovecs to be), each send already grouped by peer.
//!
//! A slot buffer is laid out as `[HEADROOM | DATA | SCRATCH]`: a packet (or a GRO receive)
//! starts at [`HEADROOM`], so headers can be put in front of it without moving it (the
//! virtio-net header now, VXLAN + Ethernet later), and [`SCRATCH`] holds the headers a batch
//! builds (the segment headers of a TSO packet, the merged header of a GRO run). A send points
//! only into its own slot; a TUN write of a run merged across receives gathers from every slot
//! the run's packets came in, and its header lives in the first one's scratch area: a slot is
//! busy until every operation that points into it has completed.

use std::net::SocketAddr;

use crate::encap::{self, Encap};
use crate::offload::{self, GroRun, Segment, VnetHdr, MAX_SEGMENTS, MAX_SEG_HDR, VNET_HDR_LEN};
use crate::route::{Peer, PeerId, Table};
use crate::stats::{DropReason, LocalCounters};
use crate::tunnel::{Decapsulator, Egress, Encapsulator, Ingress};

/// Bytes in front of a packet: room for the headers that go before it (the virtio-net header
/// of a read, or the wire format's header of a send).
pub const HEADROOM: usize = 32;
const _: () = assert!(HEADROOM >= VNET_HDR_LEN && HEADROOM >= encap::MAX_HEADER);
/// Bytes for one read, receive or super-packet: any IP packet, or a 64 KiB GRO receive.
pub const DATA: usize = 65536;
/// Where the scratch area starts, and its size: one built header per segment.
pub const SCRATCH: usize = HEADROOM + DATA;
pub const SCRATCH_LEN: usize = MAX_SEGMENTS * MAX_SEG_HDR;
/// The size of every slot buffer.
pub const SLOT_SIZE: usize = SCRATCH + SCRATCH_LEN;
/// The most spans one slot's operations use (the wire format's header, the segment header and
/// the payload of each segment).
pub const MAX_SPANS: usize = 3 * MAX_SEGMENTS + 2;
/// The most datagrams in one UDP GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// The most bytes in one UDP GSO send: it is built as one UDP datagram of up to 64 KiB, outer
/// IPv6 and UDP headers included, before the kernel splits it.
pub const MAX_GSO_BYTES: usize = 65535 - 40 - 8;

/// A byte range of a slot buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    fn new(start: usize, len: usize) -> Span {
        Span {
            start: start as u32,
            len: len as u32,
        }
    }

    /// The bytes of `buf` this span covers.
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..(self.start + self.len) as usize]
    }
}

/// One UDP send: one datagram, or one UDP GSO send of `datagrams` segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Send {
    pub peer: PeerId,
    /// Position in the batch: sorting by `(peer, seq)` groups by peer and keeps each peer's
    /// packets in read order, without the allocation of a stable sort.
    pub seq: u16,
    pub slot: u16,
    /// Which send of its slot this is (a super-packet of more than [`MAX_GSO_SEGMENTS`]
    /// segments takes two).
    pub part: u16,
    /// Range of [`EgressBatch::spans`].
    pub spans: (u32, u32),
    /// `UDP_SEGMENT` size, or 0 for a single datagram.
    pub segment_size: u16,
    pub datagrams: u16,
    pub bytes: u32,
}

impl Send {
    /// This send's spans, out of its batch's `spans` ([`EgressBatch::for_each_peer_run`]).
    pub fn spans_of<'a>(&self, spans: &'a [Span]) -> &'a [Span] {
        &spans[self.spans.0 as usize..self.spans.1 as usize]
    }
}

/// An egress batch: packets read from the TUN become sends to peers and ICMP errors back.
#[derive(Debug)]
pub struct EgressBatch {
    enc: Encapsulator,
    encap: Encap,
    vnet: bool,
    gso: bool,
    seq: u16,
    sends: Vec<Send>,
    spans: Vec<Span>,
    replies: Vec<(u16, Span)>,
    reply: Box<[u8]>,
    segs: Box<[Segment]>,
    /// What this batch did, for the engine to absorb.
    pub local: LocalCounters,
}

impl EgressBatch {
    /// `encap`: the wire format. `vnet`: the TUN prefixes each packet with a virtio-net header
    /// (offloads granted). `gso`: sends may use UDP GSO.
    pub fn new(enc: Encapsulator, encap: Encap, vnet: bool, gso: bool) -> EgressBatch {
        EgressBatch {
            enc,
            encap,
            vnet,
            gso,
            seq: 0,
            sends: Vec::with_capacity(MAX_SEGMENTS * 2),
            spans: Vec::with_capacity(MAX_SPANS * 64),
            replies: Vec::with_capacity(64),
            reply: vec![0u8; crate::icmp::MAX_LEN].into_boxed_slice(),
            segs: vec![Segment::default(); MAX_SEGMENTS].into_boxed_slice(),
            local: LocalCounters::default(),
        }
    }

    /// Where in a slot buffer the engine reads a packet from the TUN to, and how many bytes.
    pub fn read_range(&self) -> (usize, usize) {
        let vnet = if self.vnet { VNET_HDR_LEN } else { 0 };
        (HEADROOM - vnet, DATA + vnet)
    }

    /// Stops using UDP GSO from the next batch on: the kernel refused a GSO send (it cannot
    /// segment on this path, or the path MTU dropped below the segment size). Counted;
    /// segments then go out as one datagram each.
    pub fn disable_gso(&mut self) {
        if self.gso {
            self.gso = false;
            self.local.gso_fallbacks += 1;
        }
    }

    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Empties the batch for the next round.
    pub fn clear(&mut self) {
        self.seq = 0;
        self.sends.clear();
        self.spans.clear();
        self.replies.clear();
    }

    /// Decides the `len` bytes read from the TUN into `buf`, slot `slot`'s buffer, at
    /// [`EgressBatch::read_range`]. Returns `true` when the slot now carries sends or a reply
    /// (it stays busy until they complete), `false` when it is free again.
    pub fn push(&mut self, table: &Table, slot: u16, buf: &mut [u8], len: usize, now: u64) -> bool {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let (head, scratch) = buf.split_at_mut(SCRATCH);
        let (vnet, packet) = if self.vnet {
            let at = HEADROOM - VNET_HDR_LEN;
            let Some(len) = len.checked_sub(VNET_HDR_LEN) else {
                self.local.drop(DropReason::Malformed);
                return false;
            };
            match VnetHdr::parse(&head[at..HEADROOM]) {
                Ok(v) => (v, &mut head[HEADROOM..HEADROOM + len.min(DATA)]),
                Err(_) => {
                    self.local.drop(DropReason::Malformed);
                    return false;
                }
            }
        } else {
            (
                VnetHdr::default(),
                &mut head[HEADROOM..HEADROOM + len.min(DATA)],
            )
        };
        let gso = vnet.is_gso();
        if !gso && vnet.flags & VnetHdr::NEEDS_CSUM != 0 {
            let (start, offset) = (usize::from(vnet.csum_start), usize::from(vnet.csum_offset));
            if offload::complete_checksum(packet, start, offset).is_err() {
                self.local.drop(DropReason::Malformed);
                return false;
            }
        }
        let plen = packet.len();
        let verdict = if gso {
            self.enc
                .encapsulate_gso(table, packet, &mut self.reply, now)
        } else {
            self.enc.encapsulate(table, packet, &mut self.reply, now)
        };
        match verdict {
            Egress::Send(peer) => {
                // The wire format's header goes in front, over the virtio-net header, which
                // has been read.
                let at = HEADROOM - self.encap.header_len();
                let ipv6 = head[HEADROOM] >> 4 == 6;
                self.encap
                    .write_header(table.peer(peer), ipv6, &mut head[at..HEADROOM]);
                if gso {
                    let packet = &head[HEADROOM..HEADROOM + plen];
                    return self.push_segments(peer, seq, slot, &vnet, packet, scratch);
                }
                let span = Span::new(at, HEADROOM - at + plen);
                self.push_send(peer, seq, slot, 0, &[span], 0, plen);
                true
            }
            Egress::Reply { len, reason } => {
                self.local.drop(reason);
                let (at, _) = self.read_range();
                head[HEADROOM..HEADROOM + len].copy_from_slice(&self.reply[..len]);
                head[at..HEADROOM].fill(0);
                self.replies
                    .push((slot, Span::new(at, HEADROOM - at + len)));
                true
            }
            Egress::Drop(reason) => {
                self.local.drop(reason);
                false
            }
        }
    }

    /// Splits `packet`, a super-packet at `HEADROOM`, into segments whose headers are built in the
    /// slot's scratch area, and queues them as GSO sends (or one datagram each without GSO).
    /// Every segment starts with the one wire-format header written in front of `packet`.
    fn push_segments(
        &mut self,
        peer: PeerId,
        seq: u16,
        slot: u16,
        vnet: &VnetHdr,
        packet: &[u8],
        scratch: &mut [u8],
    ) -> bool {
        let mtu = self.enc.tunnel_mtu();
        let segmented = match offload::segment(packet, vnet, mtu, scratch, &mut self.segs) {
            Ok(s) => s,
            Err(_) => {
                self.local.drop(DropReason::Malformed);
                return false;
            }
        };
        // TCP segments are cut to the tunnel MTU; UDP ones keep the application's datagram
        // size, and one that does not fit is dropped like any packet too big.
        if segmented.segment_size > mtu {
            self.local.drop(DropReason::TooBig);
            return false;
        }
        // Taken out for the loop (an empty box allocates nothing), put back after it.
        let all = std::mem::take(&mut self.segs);
        let segs = &all[..segmented.count];
        let hlen = self.encap.header_len();
        let datagram_size = hlen + segmented.segment_size;
        let per_send = if self.gso {
            (MAX_GSO_BYTES / datagram_size.max(1)).clamp(1, MAX_GSO_SEGMENTS)
        } else {
            1
        };
        let wire = Span::new(HEADROOM - hlen, hlen);
        let mut spans = [Span::default(); 3 * MAX_GSO_SEGMENTS];
        for (part, chunk) in segs.chunks(per_send).enumerate() {
            let mut bytes = 0;
            let mut n = 0;
            for s in chunk {
                if hlen > 0 {
                    spans[n] = wire;
                    n += 1;
                }
                spans[n] = Span::new(SCRATCH + s.header_start, s.header_len);
                spans[n + 1] = Span::new(HEADROOM + s.payload_start, s.payload_len);
                n += 2;
                bytes += s.len();
            }
            let size = if self.gso && chunk.len() > 1 {
                datagram_size as u16
            } else {
                0
            };
            let spans = &spans[..n];
            self.push_send(peer, seq, slot, part as u16, spans, size, bytes);
        }
        self.segs = all;
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn push_send(
        &mut self,
        peer: PeerId,
        seq: u16,
        slot: u16,
        part: u16,
        spans: &[Span],
        segment_size: u16,
        bytes: usize,
    ) {
        let start = self.spans.len() as u32;
        self.spans.extend_from_slice(spans);
        let per_datagram = if self.encap.header_len() > 0 { 3 } else { 2 };
        let datagrams = if segment_size == 0 {
            1
        } else {
            (spans.len() / per_datagram) as u16
        };
        self.local.tx_packets += u64::from(datagrams);
        self.local.tx_bytes += bytes as u64;
        self.sends.push(Send {
            peer,
            seq,
            slot,
            part,
            spans: (start, start + spans.len() as u32),
            segment_size,
            datagrams,
            bytes: bytes as u32,
        });
    }

    /// The ICMP errors to write back into the TUN: `(slot, span)`.
    pub fn replies(&self) -> &[(u16, Span)] {
        &self.replies
    }

    /// The spans a send covers.
    pub fn spans(&self, send: &Send) -> &[Span] {
        send.spans_of(&self.spans)
    }

    /// Sorts the sends into runs by peer, adds each run to its peer's counters, and calls `f`
    /// once per run. `table` must be the version the batch was decided with.
    pub fn for_each_peer_run(&mut self, table: &Table, mut f: impl FnMut(&Peer, &[Send], &[Span])) {
        self.sends.sort_unstable_by_key(|s| (s.peer, s.seq, s.part));
        let mut rest = &self.sends[..];
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|s| s.peer == first.peer).count();
            let (run, tail) = rest.split_at(n);
            let peer = table.peer(first.peer);
            let packets = run.iter().map(|s| u64::from(s.datagrams)).sum();
            let bytes = run.iter().map(|s| u64::from(s.bytes)).sum();
            peer.counters.add_tx(packets, bytes);
            f(peer, run, &self.spans);
            rest = tail;
        }
    }
}

/// The bytes of a send: a single datagram's length, or a GSO send's whole payload.
fn send_len(send: &Send, spans: &[Span]) -> usize {
    send.spans_of(spans).iter().map(|s| s.len as usize).sum()
}

/// What a group of [`send_groups`] goes out as: (`UDP_SEGMENT` size, 0 for a single
/// datagram; datagrams).
pub fn group_shape(group: &[Send], spans: &[Span]) -> (u16, u16) {
    match group {
        [s] => (s.segment_size, s.datagrams),
        _ => (send_len(&group[0], spans) as u16, group.len() as u16),
    }
}

/// Splits a peer's run of sends (from [`EgressBatch::for_each_peer_run`]) into what goes out
/// as one `sendmsg` each: a send as it is, or, where UDP GSO may be used (`gso`), consecutive
/// single datagrams of one length, at most [`MAX_GSO_SEGMENTS`] and [`MAX_GSO_BYTES`], as one
/// GSO send whose segments are those datagrams. The wire is the same (each datagram still
/// carries one packet); a flood of small packets costs the kernel one send, and the peer's
/// kernel one GRO train, per group instead of per packet.
pub fn send_groups<'a>(
    run: &'a [Send],
    spans: &'a [Span],
    gso: bool,
) -> impl Iterator<Item = &'a [Send]> + 'a {
    let mut rest = run;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let n = if gso && first.segment_size == 0 {
            let len = send_len(first, spans);
            let most = (MAX_GSO_BYTES / len.max(1)).clamp(1, MAX_GSO_SEGMENTS);
            rest.iter()
                .take(most)
                .take_while(|s| s.segment_size == 0 && send_len(s, spans) == len)
                .count()
        } else {
            1
        };
        let (group, tail) = rest.split_at(n);
        rest = tail;
        Some(group)
    })
}

/// A byte range of one slot's buffer. A TUN write gathers its pieces from every slot its
/// packets were received in: a merged run may span several receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Piece {
    pub slot: u16,
    pub span: Span,
}

impl Piece {
    fn new(slot: u16, start: usize, len: usize) -> Piece {
        Piece {
            slot,
            span: Span::new(start, len),
        }
    }
}

/// One TUN write: one packet, or a GRO run written as one super-packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// The slot of the first piece, which holds the write's header.
    pub slot: u16,
    /// Range of [`IngressBatch::pieces`].
    pub pieces: (u32, u32),
    pub packets: u16,
}

/// What a receive said about its datagram(s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    pub len: usize,
    pub from: Option<SocketAddr>,
    /// The datagram was larger than the buffer.
    pub truncated: bool,
    /// The GRO segment size when the kernel coalesced several datagrams (each `stride` bytes,
    /// the last one possibly shorter); 0 for one datagram.
    pub stride: usize,
}

/// An ingress batch: received datagrams are checked and become TUN writes.
///
/// Consecutive TCP segments of a flow are merged across the receives of a batch, not only
/// within one GRO train: where the underlay hands over one datagram per receive (a veth, a
/// NIC without GRO), a batch of receives is the only train there is. So a write may point
/// into several slots, and [`IngressBatch::finish`] must run before the writes are made.
#[derive(Debug)]
pub struct IngressBatch {
    encap: Encap,
    vnet: bool,
    uso: bool,
    writes: Vec<Write>,
    pieces: Vec<Piece>,
    /// The run being merged, which the next packet may still join.
    open: Option<OpenRun>,
    /// Closed runs of two or more: (write index, where its header goes, the run).
    headers: Vec<(usize, Piece, GroRun)>,
    tally: Vec<(PeerId, u64, u64)>,
    /// What this batch did, for the engine to absorb.
    pub local: LocalCounters,
}

/// A GRO run being built: its state, its first packet, the room reserved for its header in
/// the scratch area of the slot it started in, and the index of that header's piece.
#[derive(Debug)]
struct OpenRun {
    run: GroRun,
    first: Piece,
    hdr: Piece,
    at: usize,
}

impl IngressBatch {
    /// `encap`: the wire format. `vnet`: every TUN write starts with a virtio-net header, and
    /// TCP runs may be merged. `uso`: the TUN takes UDP super-packets too (it granted USO), so
    /// UDP runs may be merged as well (only with `vnet`).
    pub fn new(encap: Encap, vnet: bool, uso: bool) -> IngressBatch {
        IngressBatch {
            encap,
            vnet,
            uso: vnet && uso,
            writes: Vec::with_capacity(64 * MAX_SEGMENTS),
            pieces: Vec::with_capacity(64 * MAX_SPANS),
            open: None,
            headers: Vec::with_capacity(64),
            tally: Vec::with_capacity(64),
            local: LocalCounters::default(),
        }
    }

    /// Where in a slot buffer the engine receives a datagram to, and how many bytes.
    pub fn recv_range(&self) -> (usize, usize) {
        (HEADROOM, DATA)
    }

    pub fn clear(&mut self) {
        self.writes.clear();
        self.pieces.clear();
        self.open = None;
        self.headers.clear();
    }

    /// Checks what was received into `buf` (slot `slot`'s buffer) as `meta` says: each
    /// datagram as [`crate::decapsulate`] does, then queues the TUN writes of those that pass,
    /// merging consecutive TCP segments (and UDP datagrams) of a flow where the TUN takes
    /// super-packets. Returns `true` when the batch now points into the slot: it must stay
    /// untouched until the batch's writes are done.
    pub fn push(&mut self, table: &Table, slot: u16, buf: &mut [u8], meta: RecvMeta) -> bool {
        // Every datagram of a GRO receive came from the same address.
        let Some(peer) = meta.from.and_then(|a| table.peer_of(a)) else {
            self.local.drop(DropReason::UnknownPeer);
            return false;
        };
        if meta.truncated {
            self.local.drop(DropReason::Malformed);
            return false;
        }
        let (head, scratch) = buf.split_at_mut(SCRATCH);
        let data = &head[HEADROOM..HEADROOM + meta.len.min(DATA)];
        let stride = match meta.stride {
            0 => data.len().max(1),
            s => s,
        };
        let mut decap = Decapsulator::new(table, peer);
        let mut cursor = 0;
        let mut used = false;
        let mut delivered = (0u64, 0u64);
        // An empty datagram is one (malformed) packet too.
        let count = data.len().div_ceil(stride).max(1);
        for i in 0..count {
            let datagram = &data[i * stride..((i + 1) * stride).min(data.len())];
            let off = match self.encap.decap(datagram) {
                Ok(off) => off,
                Err(reason) => {
                    self.local.drop(reason);
                    continue;
                }
            };
            let at = HEADROOM + i * stride + off;
            let packet = &datagram[off..];
            if let Ingress::Drop(reason) = decap.check(packet) {
                self.local.drop(reason);
                continue;
            }
            delivered = (delivered.0 + 1, delivered.1 + packet.len() as u64);
            let whole = Piece::new(slot, at, packet.len());
            if !self.vnet {
                self.push_write(&[whole], 1);
                used = true;
                continue;
            }
            if let Some(o) = &mut self.open {
                if o.run.push(packet) {
                    let off = o.run.header_len();
                    self.pieces
                        .push(Piece::new(slot, at + off, packet.len() - off));
                    used = true;
                    continue;
                }
            }
            self.close_run();
            match GroRun::start(packet, self.uso) {
                Some(run) if cursor + VNET_HDR_LEN + run.header_len() <= scratch.len() => {
                    let off = run.header_len();
                    let n = VNET_HDR_LEN + off;
                    // Zeroed now: a run that stays one packet is written behind it as it came.
                    scratch[cursor..cursor + VNET_HDR_LEN].fill(0);
                    let hdr = Piece::new(slot, SCRATCH + cursor, n);
                    cursor += n;
                    let at_hdr = self.pieces.len();
                    // The header's piece is filled in when the run closes.
                    self.pieces.push(hdr);
                    self.pieces
                        .push(Piece::new(slot, at + off, packet.len() - off));
                    self.open = Some(OpenRun {
                        run,
                        first: whole,
                        hdr,
                        at: at_hdr,
                    });
                    used = true;
                }
                _ => {
                    if let Some(next) = self.plain_write(whole, scratch, cursor) {
                        cursor = next;
                        used = true;
                    }
                }
            }
        }
        if delivered.0 > 0 {
            self.tally(peer, delivered.0, delivered.1);
        }
        used
    }

    /// Ends the batch: closes the last run and builds the merged headers, handing each to
    /// `put(slot, at, bytes)` to copy into that slot's buffer at `at` (room its scratch area
    /// kept for it). Call once after the last [`IngressBatch::push`], before the writes are
    /// made.
    pub fn finish(&mut self, mut put: impl FnMut(u16, usize, &[u8])) {
        self.close_run();
        let mut hdr = [0u8; VNET_HDR_LEN + MAX_SEG_HDR];
        let mut failed = false;
        for (w, at, run) in self.headers.drain(..) {
            match run.emit_header(&mut hdr) {
                Ok(n) if n == at.span.len as usize => {
                    put(at.slot, at.span.start as usize, &hdr[..n])
                }
                // Cannot happen (the room was reserved for this header), but a write without
                // its header must not be made.
                _ => {
                    let write = &mut self.writes[w];
                    self.local.drops[DropReason::TunWriteError as usize] +=
                        u64::from(write.packets);
                    write.packets = 0;
                    failed = true;
                }
            }
        }
        if failed {
            self.writes.retain(|w| w.packets > 0);
        }
    }

    /// Queues the open run as one write: a merged super-packet (its header built in
    /// [`IngressBatch::finish`]), or the packet as it came.
    fn close_run(&mut self) {
        let Some(o) = self.open.take() else { return };
        let count = o.run.count();
        if count >= 2 {
            self.pieces[o.at] = o.hdr;
            self.headers.push((self.writes.len(), o.hdr, o.run));
            self.writes.push(Write {
                slot: o.hdr.slot,
                pieces: (o.at as u32, self.pieces.len() as u32),
                packets: count as u16,
            });
        } else {
            // The run's pieces are the last ones: nothing is queued while a run is open.
            self.pieces.truncate(o.at);
            let vnet = Piece::new(o.hdr.slot, o.hdr.span.start as usize, VNET_HDR_LEN);
            self.push_write(&[vnet, o.first], 1);
        }
    }

    /// Queues `packet` as it came, behind a zeroed virtio-net header in the scratch area of
    /// its slot (`scratch`, from `cursor` on); returns the cursor after it, or `None` (and
    /// counts a drop) when the scratch area is full.
    fn plain_write(&mut self, packet: Piece, scratch: &mut [u8], cursor: usize) -> Option<usize> {
        let Some(hdr) = scratch.get_mut(cursor..cursor + VNET_HDR_LEN) else {
            self.local.drop(DropReason::TunWriteError);
            return None;
        };
        hdr.fill(0);
        let vnet = Piece::new(packet.slot, SCRATCH + cursor, VNET_HDR_LEN);
        self.push_write(&[vnet, packet], 1);
        Some(cursor + VNET_HDR_LEN)
    }

    fn push_write(&mut self, pieces: &[Piece], packets: u16) {
        let start = self.pieces.len() as u32;
        self.pieces.extend_from_slice(pieces);
        self.writes.push(Write {
            slot: pieces[0].slot,
            pieces: (start, self.pieces.len() as u32),
            packets,
        });
    }

    /// Counts what one receive from `peer` delivered (every datagram of a GRO receive came
    /// from the same peer, so this runs once per receive, not per packet).
    fn tally(&mut self, peer: PeerId, packets: u64, bytes: u64) {
        self.local.rx_packets += packets;
        self.local.rx_bytes += bytes;
        // A batch holds few distinct peers: a linear scan beats hashing.
        match self.tally.iter_mut().find(|(p, _, _)| *p == peer) {
            Some(entry) => {
                entry.1 += packets;
                entry.2 += bytes;
            }
            None => self.tally.push((peer, packets, bytes)),
        }
    }

    /// The TUN writes of the batch, in arrival order (complete after
    /// [`IngressBatch::finish`]).
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// The pieces a write gathers, in order.
    pub fn pieces(&self, write: &Write) -> &[Piece] {
        &self.pieces[write.pieces.0 as usize..write.pieces.1 as usize]
    }

    /// Adds the batch's receive counts to the peers of `table` (the version the batch was
    /// decided with). Call once per batch.
    pub fn count_peers(&mut self, table: &Table) {
        for &(peer, packets, bytes) in &self.tally {
            table.peer(peer).counters.add_rx(packets, bytes);
        }
        self.tally.clear();
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{Ipv4HeaderSlice, SlicedPacket, TransportSlice};

    use super::*;
    use crate::encap::{Mac, WireFormat, VXLAN_OVERHEAD};
    use crate::offload::testpkt::{fix_ipv4_checksum, set_partial_checksum, tcp_packet, Tcp};
    use crate::route::Route;
    use crate::testutil::{ipv4_udp, V4_A, V4_B};

    const MTU: usize = 1400;

    /// Node 1 (198.19.1.0/24, the V4_A side) with node 2 (V4_B) as its one peer, and the
    /// mirror table of node 2.
    fn tables() -> (Table, Table) {
        let net = |s: &str| s.parse().unwrap();
        let route = |p: &str, a: &str| Route {
            prefix: net(p),
            peer: a.parse().unwrap(),
            mac: None,
        };
        let n1 = Table::new(
            &[net("198.19.1.0/24")],
            &[route("198.19.2.0/24", "198.18.0.2:8285")],
        );
        let n2 = Table::new(
            &[net("198.19.2.0/24")],
            &[route("198.19.1.0/24", "198.18.0.1:8285")],
        );
        (n1.unwrap(), n2.unwrap())
    }

    fn egress(vnet: bool, gso: bool) -> EgressBatch {
        EgressBatch::new(Encapsulator::new(MTU, 10), Encap::Udp, vnet, gso)
    }

    /// A slot buffer holding `packet` as a TUN read puts it, behind `vnet` if given.
    fn read_into(batch: &EgressBatch, vnet: Option<VnetHdr>, packet: &[u8]) -> (Vec<u8>, usize) {
        let mut buf = vec![0u8; SLOT_SIZE];
        let (at, _) = batch.read_range();
        let mut len = packet.len();
        if let Some(v) = vnet {
            let mut h = [0u8; VNET_HDR_LEN];
            v.emit(&mut h);
            buf[at..HEADROOM].copy_from_slice(&h);
            len += VNET_HDR_LEN;
        }
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        (buf, len)
    }

    /// A TSO super-packet as the kernel hands it over: `n` full segments of payload, partial
    /// checksum, and its virtio-net header.
    fn super_packet(n: usize, mss: usize) -> (Vec<u8>, VnetHdr) {
        let mut p = tcp_packet(&Tcp {
            payload_len: n * mss,
            psh: true,
            ..Tcp::default()
        });
        set_partial_checksum(&mut p, 20, 16, 6);
        let vnet = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 52,
            gso_size: mss as u16,
            csum_start: 20,
            csum_offset: 16,
        };
        (p, vnet)
    }

    /// The datagrams of the batch's sends, in send order, each the bytes of its spans.
    fn datagrams(batch: &mut EgressBatch, table: &Table, buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        batch.for_each_peer_run(table, |_, run, spans| {
            for s in run {
                let spans = s.spans_of(spans);
                let bytes: Vec<u8> = spans.iter().flat_map(|sp| sp.of(buf).to_vec()).collect();
                out.push((s.segment_size, bytes));
            }
        });
        out
    }

    /// The group sizes `send_groups` makes of one batch of packets read into slots of their own.
    fn group_sizes(packets: &[(Vec<u8>, VnetHdr)], vnet: bool, gso: bool) -> Vec<usize> {
        let (t, _) = tables();
        let mut b = egress(vnet, gso);
        for (i, (p, hdr)) in packets.iter().enumerate() {
            let (mut buf, len) = read_into(&b, vnet.then_some(*hdr), p);
            assert!(
                b.push(&t, i as u16, &mut buf, len, 0),
                "{:?}",
                b.local.drops
            );
        }
        let gso = b.gso();
        let mut sizes = Vec::new();
        b.for_each_peer_run(&t, |_, run, spans| {
            sizes.extend(send_groups(run, spans, gso).map(<[Send]>::len));
        });
        sizes
    }

    #[test]
    fn single_datagrams_of_one_length_go_as_one_gso_send() {
        let plain = |payload| (ipv4_udp(V4_A, V4_B, 64, true, payload), VnetHdr::default());
        // 1228-byte packets: 53 fit in 64 KiB.
        let (small, other, big) = (plain(36), plain(37), plain(1200));
        assert_eq!(group_sizes(&vec![small.clone(); 5], true, true), [5]);
        // A length change starts a new group; without GSO each datagram is its own send.
        let mixed = [small.clone(), small.clone(), other, small.clone()];
        assert_eq!(group_sizes(&mixed, true, true), [2, 1, 1]);
        assert_eq!(group_sizes(&mixed, true, false), [1, 1, 1, 1]);
        // At most 64 datagrams, and at most 64 KiB.
        assert_eq!(group_sizes(&vec![small.clone(); 70], false, true), [64, 6]);
        assert_eq!(group_sizes(&vec![big; 60], false, true), [53, 7]);
        // A super-packet's send stays alone, and so does the datagram after it.
        let both = [super_packet(4, 1000), small];
        assert_eq!(group_sizes(&both, true, true), [1, 1]);
    }

    #[test]
    fn a_plain_packet_is_one_datagram_in_place() {
        let (t, _) = tables();
        let mut b = egress(false, true);
        let packet = ipv4_udp(V4_A, V4_B, 64, true, 100);
        let (mut buf, len) = read_into(&b, None, &packet);
        assert!(b.push(&t, 0, &mut buf, len, 0));
        assert_eq!(b.local.tx_packets, 1);
        let sent = datagrams(&mut b, &t, &buf);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 0, "no segment size");
        assert_eq!(sent[0].1[8], 63, "TTL decremented");
        assert_eq!(sent[0].1[12..], packet[12..]);
    }

    #[test]
    fn a_super_packet_leaves_as_gso_sends_of_valid_segments() {
        let (t, _) = tables();
        let mss = MTU - 52;
        for gso in [true, false] {
            let mut b = egress(true, gso);
            let (packet, vnet) = super_packet(47, mss);
            let (mut buf, len) = read_into(&b, Some(vnet), &packet);
            assert!(b.push(&t, 3, &mut buf, len, 0));
            assert_eq!(b.local.tx_packets, 47);
            let sent = datagrams(&mut b, &t, &buf);
            let mut payload = Vec::new();
            let mut count = 0;
            for (size, bytes) in &sent {
                assert!(bytes.len() <= MAX_GSO_BYTES);
                let segs: Vec<&[u8]> = if *size == 0 {
                    vec![&bytes[..]]
                } else {
                    assert!(gso, "no GSO send after disable_gso");
                    bytes.chunks(usize::from(*size)).collect()
                };
                for seg in segs {
                    assert!(seg.len() <= MTU);
                    let ip = Ipv4HeaderSlice::from_slice(seg).unwrap();
                    assert_eq!(usize::from(ip.total_len()), seg.len());
                    assert_eq!(ip.ttl(), 63);
                    let sliced = SlicedPacket::from_ip(seg).unwrap();
                    let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
                        panic!("not TCP")
                    };
                    let sum = tcp.calc_checksum_ipv4(V4_A, V4_B).unwrap();
                    assert_eq!(tcp.checksum(), sum, "full TCP checksum");
                    payload.extend_from_slice(tcp.payload());
                    count += 1;
                }
            }
            assert_eq!(count, 47);
            assert_eq!(payload, packet[52..], "every payload byte, in order");
            if gso {
                // 47 segments of 1400 bytes are more than one 64 KiB GSO send.
                assert_eq!(sent.len(), 2);
            } else {
                assert_eq!(sent.len(), 47);
            }
        }
    }

    #[test]
    fn payload_is_pointed_at_not_copied() {
        let (t, _) = tables();
        let mut b = egress(true, true);
        let (packet, vnet) = super_packet(4, 1000);
        let (mut buf, len) = read_into(&b, Some(vnet), &packet);
        assert!(b.push(&t, 0, &mut buf, len, 0));
        b.for_each_peer_run(&t, |_, run, spans| {
            let spans = &spans[run[0].spans.0 as usize..run[0].spans.1 as usize];
            for (i, s) in spans.iter().enumerate() {
                let at = s.start as usize;
                if i % 2 == 0 {
                    assert!(at >= SCRATCH, "header {i} built in the scratch area");
                } else {
                    assert_eq!(at, HEADROOM + 52 + (i / 2) * 1000, "payload {i} in place");
                }
            }
        });
    }

    #[test]
    fn disable_gso_counts_once() {
        let mut b = egress(true, true);
        b.disable_gso();
        b.disable_gso();
        assert!(!b.gso());
        assert_eq!(b.local.gso_fallbacks, 1);
    }

    #[test]
    fn an_icmp_reply_goes_back_behind_a_zero_vnet_header() {
        let (t, _) = tables();
        let mut b = egress(true, true);
        let packet = ipv4_udp(V4_A, [198, 19, 9, 9], 64, true, 100);
        let vnet = VnetHdr::default();
        let (mut buf, len) = read_into(&b, Some(vnet), &packet);
        assert!(b.push(&t, 0, &mut buf, len, 0));
        let &[(slot, span)] = b.replies() else {
            panic!("one reply")
        };
        assert_eq!(slot, 0);
        let reply = span.of(&buf);
        assert_eq!(reply[..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
        assert_eq!(reply[VNET_HDR_LEN] >> 4, 4, "an IPv4 ICMP error follows");
        assert_eq!(b.local.drops[DropReason::NoRoute as usize], 1);
    }

    #[test]
    fn a_gro_receive_is_checked_per_packet_and_merged() {
        let (n1, n2) = tables();
        // Node 1 sends a super-packet; node 2 receives its datagrams as one GRO train.
        let (packet, stride, train) = sent_train(&n1, 8, 1000);

        let mut rx = IngressBatch::new(Encap::Udp, true, true);
        let slot = receive_train(&mut rx, &n2, 5, &train, stride);
        assert_eq!(rx.local.rx_packets, 8);
        let &[w] = rx.writes() else {
            panic!("one write")
        };
        assert_eq!((w.slot, w.packets), (5, 8));
        let written = gathered(&rx, &w, &slot);
        let hdr = VnetHdr::parse(&written[..VNET_HDR_LEN]).unwrap();
        assert_eq!(hdr.gso_type, VnetHdr::GSO_TCPV4);
        assert_eq!(hdr.gso_size, 1000);
        // The super-packet again, but for the TTL the hop took.
        let merged = &written[VNET_HDR_LEN..];
        assert_eq!(merged.len(), packet.len());
        assert_eq!(merged[8], 63);
        assert_eq!(merged[12..], packet[12..]);
    }

    /// Node 1 reads a TSO super-packet of `n` segments of `mss` bytes and sends it: the
    /// super-packet, and the UDP GSO send's segment size and datagrams.
    fn sent_train(n1: &Table, n: usize, mss: usize) -> (Vec<u8>, usize, Vec<u8>) {
        let mut b = egress(true, true);
        let (packet, vnet) = super_packet(n, mss);
        let (mut buf, len) = read_into(&b, Some(vnet), &packet);
        assert!(b.push(n1, 0, &mut buf, len, 0));
        let sent = datagrams(&mut b, n1, &buf);
        (packet, usize::from(sent[0].0), sent[0].1.clone())
    }

    /// `train` received from node 1 into slot `slot` as one GRO receive of `stride`-byte
    /// datagrams, the batch finished; returns the slot's buffer.
    fn receive_train(
        rx: &mut IngressBatch,
        table: &Table,
        slot: u16,
        train: &[u8],
        stride: usize,
    ) -> Vec<u8> {
        let mut buf = vec![0u8; SLOT_SIZE];
        buf[HEADROOM..HEADROOM + train.len()].copy_from_slice(train);
        let meta = RecvMeta {
            len: train.len(),
            from: Some("198.18.0.1:8285".parse().unwrap()),
            truncated: false,
            stride,
        };
        assert!(rx.push(table, slot, &mut buf, meta));
        finish(rx, &mut buf);
        buf
    }

    /// [`IngressBatch::finish`] for a batch of one slot.
    fn finish(rx: &mut IngressBatch, slot: &mut [u8]) {
        rx.finish(|_, at, bytes| slot[at..at + bytes.len()].copy_from_slice(bytes));
    }

    /// The bytes a write gathers, all from `slot`.
    fn gathered(rx: &IngressBatch, w: &Write, slot: &[u8]) -> Vec<u8> {
        rx.pieces(w)
            .iter()
            .flat_map(|p| p.span.of(slot).to_vec())
            .collect()
    }

    /// Each datagram received into a slot of its own (slot `first + i`), as from a veth, one
    /// batch; the batch finished and every write's bytes gathered from the slots.
    fn receive_one_per_slot(
        table: &Table,
        datagrams: &[Vec<u8>],
        first: u16,
    ) -> (IngressBatch, Vec<Vec<u8>>) {
        let mut rx = IngressBatch::new(Encap::Udp, true, true);
        let mut slots = vec![vec![0u8; SLOT_SIZE]; usize::from(first) + datagrams.len()];
        for (i, d) in datagrams.iter().enumerate() {
            let slot = first + i as u16;
            let buf = &mut slots[usize::from(slot)];
            buf[HEADROOM..HEADROOM + d.len()].copy_from_slice(d);
            let meta = RecvMeta {
                len: d.len(),
                from: Some("198.18.0.1:8285".parse().unwrap()),
                ..RecvMeta::default()
            };
            assert!(rx.push(table, slot, buf, meta), "datagram {i} is written");
        }
        rx.finish(|slot, at, bytes| {
            slots[usize::from(slot)][at..at + bytes.len()].copy_from_slice(bytes);
        });
        let written = rx
            .writes()
            .iter()
            .map(|w| {
                rx.pieces(w)
                    .iter()
                    .flat_map(|p| p.span.of(&slots[usize::from(p.slot)]).to_vec())
                    .collect()
            })
            .collect();
        (rx, written)
    }

    #[test]
    fn segments_of_separate_receives_are_merged_across_slots() {
        let (n1, n2) = tables();
        let (packet, stride, train) = sent_train(&n1, 8, 1000);
        let one_by_one: Vec<Vec<u8>> = train.chunks(stride).map(<[u8]>::to_vec).collect();
        assert_eq!(one_by_one.len(), 8);

        let (rx, written) = receive_one_per_slot(&n2, &one_by_one, 10);
        let &[w] = rx.writes() else {
            panic!("one write: {:?}", rx.writes())
        };
        assert_eq!((w.slot, w.packets), (10, 8), "owned by the first slot");
        let slots: Vec<u16> = rx.pieces(&w).iter().map(|p| p.slot).collect();
        assert_eq!(slots, [10, 10, 11, 12, 13, 14, 15, 16, 17]);
        let hdr = VnetHdr::parse(&written[0][..VNET_HDR_LEN]).unwrap();
        assert_eq!((hdr.gso_type, hdr.gso_size), (VnetHdr::GSO_TCPV4, 1000));
        let merged = &written[0][VNET_HDR_LEN..];
        assert_eq!(merged.len(), packet.len());
        assert_eq!(merged[8], 63);
        assert_eq!(merged[12..], packet[12..]);
    }

    #[test]
    fn a_packet_between_segments_splits_the_run_and_keeps_its_place() {
        let (n1, n2) = tables();
        let (packet, stride, train) = sent_train(&n1, 6, 1000);
        let mut datagrams: Vec<Vec<u8>> = train.chunks(stride).map(<[u8]>::to_vec).collect();
        let udp = ipv4_udp(V4_A, V4_B, 64, true, 72);
        // Segments 1-3, a UDP packet, segment 4 alone before another UDP packet, segments 5-6.
        datagrams.insert(3, udp.clone());
        datagrams.insert(5, udp.clone());

        let (rx, written) = receive_one_per_slot(&n2, &datagrams, 0);
        let packets: Vec<u16> = rx.writes().iter().map(|w| w.packets).collect();
        assert_eq!(packets, [3, 1, 1, 1, 2], "in arrival order");
        for (i, w) in written.iter().enumerate() {
            let hdr = VnetHdr::parse(&w[..VNET_HDR_LEN]).unwrap();
            assert_eq!(hdr.is_gso(), packets[i] > 1, "write {i}");
        }
        assert_eq!(written[1][VNET_HDR_LEN..], udp);
        assert_eq!(written[3][VNET_HDR_LEN..], udp);
        // The lone segment is written as it came, behind a zeroed header.
        assert_eq!(written[2][..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
        assert_eq!(written[2][VNET_HDR_LEN..], datagrams[4]);
        // Every payload byte arrives once, in order.
        let payload: Vec<u8> = [0, 2, 4]
            .iter()
            .flat_map(|&i| written[i][VNET_HDR_LEN + 52..].to_vec())
            .collect();
        assert_eq!(payload, packet[52..]);
    }

    #[test]
    fn a_receive_with_a_bad_packet_in_the_middle() {
        let (_, n2) = tables();
        let good = ipv4_udp(V4_A, V4_B, 64, true, 72);
        let spoofed = ipv4_udp([198, 19, 7, 7], V4_B, 64, true, 72);
        let mut train = good.clone();
        train.extend_from_slice(&spoofed);
        train.extend_from_slice(&good);
        for uso in [false, true] {
            let mut rx = IngressBatch::new(Encap::Udp, true, uso);
            let slot = receive_train(&mut rx, &n2, 0, &train, good.len());
            assert_eq!(rx.local.drops[DropReason::Spoofed as usize], 1);
            assert_eq!(rx.local.rx_packets, 2);
            if uso {
                // The dropped packet leaves nothing between the two: they merge.
                let &[w] = rx.writes() else {
                    panic!("one write")
                };
                assert_eq!(w.packets, 2);
                let written = gathered(&rx, &w, &slot);
                let hdr = VnetHdr::parse(&written).unwrap();
                assert_eq!(hdr.gso_type, VnetHdr::GSO_UDP_L4);
                assert_eq!(usize::from(hdr.gso_size), good.len() - 28);
                assert_eq!(
                    written[VNET_HDR_LEN + 28..],
                    [&good[28..], &good[28..]].concat()
                );
            } else {
                assert_eq!(rx.writes().len(), 2, "without USO, packet by packet");
                for w in rx.writes() {
                    let pieces = rx.pieces(w);
                    assert_eq!(pieces[0].span.of(&slot), [0; VNET_HDR_LEN]);
                    assert_eq!(pieces[1].span.of(&slot), good);
                }
            }
        }
    }

    #[test]
    fn udp_datagrams_of_a_flow_are_merged_where_the_tun_takes_uso() {
        let (_, n2) = tables();
        let datagram = |i: u16, len: usize| {
            let mut d = ipv4_udp(V4_A, V4_B, 64, false, len);
            // Without DF the kernel numbers what it cuts: the IDs must follow each other.
            d[4..6].copy_from_slice(&(0x1234 + i).to_be_bytes());
            fix_ipv4_checksum(&mut d);
            d
        };
        // Five of one size and a shorter last, then two whose IDs do not follow.
        let mut datagrams: Vec<Vec<u8>> = (0..5).map(|i| datagram(i, 600)).collect();
        datagrams.push(datagram(5, 100));
        datagrams.push(datagram(9, 600));
        datagrams.push(datagram(11, 600));
        let (rx, written) = receive_one_per_slot(&n2, &datagrams, 0);
        let packets: Vec<u16> = rx.writes().iter().map(|w| w.packets).collect();
        assert_eq!(packets, [6, 1, 1]);
        let hdr = VnetHdr::parse(&written[0]).unwrap();
        assert_eq!(
            hdr,
            VnetHdr {
                flags: VnetHdr::NEEDS_CSUM,
                gso_type: VnetHdr::GSO_UDP_L4,
                hdr_len: 28,
                gso_size: 600,
                csum_start: 20,
                csum_offset: 6,
            }
        );
        // The kernel cuts the super-packet back into the datagrams that were merged.
        let mut headers = vec![0u8; MAX_SEGMENTS * MAX_SEG_HDR];
        let mut segs = [Segment::default(); MAX_SEGMENTS];
        let merged = &written[0][VNET_HDR_LEN..];
        let done = offload::segment(merged, &hdr, 65535, &mut headers, &mut segs).unwrap();
        assert_eq!(done.count, 6);
        for (s, want) in segs[..done.count].iter().zip(&datagrams) {
            let mut again = headers[s.header_range()].to_vec();
            again.extend_from_slice(&merged[s.payload_range()]);
            assert_eq!(&again, want);
        }
        assert_eq!(written[1][VNET_HDR_LEN..], datagrams[6]);
        assert_eq!(written[2][VNET_HDR_LEN..], datagrams[7]);
    }

    #[test]
    fn empty_truncated_and_unknown_receives_are_dropped() {
        let (_, n2) = tables();
        let mut rx = IngressBatch::new(Encap::Udp, false, true);
        let mut slot = vec![0u8; SLOT_SIZE];
        let from = Some("198.18.0.1:8285".parse().unwrap());
        let cases = [
            (
                RecvMeta {
                    from,
                    ..RecvMeta::default()
                },
                DropReason::Malformed,
            ),
            (
                RecvMeta {
                    len: 100,
                    from,
                    truncated: true,
                    stride: 0,
                },
                DropReason::Malformed,
            ),
            (RecvMeta::default(), DropReason::UnknownPeer),
        ];
        for (meta, reason) in cases {
            rx.local = LocalCounters::default();
            assert!(!rx.push(&n2, 0, &mut slot, meta));
            assert_eq!(rx.local.drops[reason as usize], 1, "{meta:?}");
        }
        assert!(rx.writes().is_empty());
    }

    const MAC1: Mac = Mac([0x0a, 0x58, 0xc6, 0x13, 0x01, 0x00]);
    const MAC2: Mac = Mac([0x0a, 0x58, 0xc6, 0x13, 0x02, 0x00]);

    /// [`tables`] in vxlan, each node knowing the other's VTEP MAC.
    fn vxlan_tables() -> (Table, Table) {
        let net = |s: &str| s.parse().unwrap();
        let route = |p: &str, a: &str, mac| Route {
            prefix: net(p),
            peer: a.parse().unwrap(),
            mac: Some(mac),
        };
        let vx = WireFormat::Vxlan;
        let n1 = Table::build(
            vx,
            &[net("198.19.1.0/24")],
            &[route("198.19.2.0/24", "198.18.0.2:8472", MAC2)],
            None,
        );
        let n2 = Table::build(
            vx,
            &[net("198.19.2.0/24")],
            &[route("198.19.1.0/24", "198.18.0.1:8472", MAC1)],
            None,
        );
        (n1.unwrap(), n2.unwrap())
    }

    #[test]
    fn vxlan_super_packet_round_trip() {
        let (n1, n2) = vxlan_tables();
        let (tx, rx_encap) = (
            Encap::Vxlan { vni: 7, mac: MAC1 },
            Encap::Vxlan { vni: 7, mac: MAC2 },
        );
        // The segment size leaves room for the 22 bytes of VXLAN and Ethernet.
        let mtu = MTU - VXLAN_OVERHEAD;
        let mss = mtu - 52;
        let mut b = EgressBatch::new(Encapsulator::new(mtu, 10), tx, true, true);
        let (packet, vnet) = super_packet(20, mss);
        let (mut buf, len) = read_into(&b, Some(vnet), &packet);
        assert!(b.push(&n1, 0, &mut buf, len, 0));
        let sent = datagrams(&mut b, &n1, &buf);
        let &[(size, ref train)] = &sent[..] else {
            panic!("one GSO send: {sent:?}")
        };
        assert_eq!(
            usize::from(size),
            MTU,
            "each datagram: headers and one segment"
        );
        let mut header = [0u8; VXLAN_OVERHEAD];
        tx.write_header(n1.peer(n1.lookup(V4_B.into()).unwrap()), false, &mut header);
        for datagram in train.chunks(MTU) {
            assert_eq!(
                datagram[..VXLAN_OVERHEAD],
                header,
                "every segment has its headers"
            );
            assert_eq!(datagram[VXLAN_OVERHEAD] >> 4, 4);
        }

        // Received as one GRO train from a kernel VTEP's ephemeral port, with one datagram of
        // another VNI in the middle.
        let mut bad = train[..MTU].to_vec();
        bad[6] = 8;
        let mut rx_train = train[..3 * MTU].to_vec();
        rx_train.extend_from_slice(&bad);
        rx_train.extend_from_slice(&train[3 * MTU..]);
        let mut rx = IngressBatch::new(rx_encap, true, true);
        let mut slot = vec![0u8; SLOT_SIZE];
        slot[HEADROOM..HEADROOM + rx_train.len()].copy_from_slice(&rx_train);
        let meta = RecvMeta {
            len: rx_train.len(),
            from: Some("198.18.0.1:39112".parse().unwrap()),
            truncated: false,
            stride: MTU,
        };
        assert!(rx.push(&n2, 0, &mut slot, meta));
        finish(&mut rx, &mut slot);
        assert_eq!(rx.local.rx_packets, 20);
        assert_eq!(rx.local.drops[DropReason::VxlanVni as usize], 1);
        let written: Vec<u8> = rx
            .writes()
            .iter()
            .flat_map(|w| gathered(&rx, w, &slot))
            .collect();
        // One merged run of 20 segments (the foreign datagram was dropped between
        // segments 3 and 4, which are still adjacent), and the super-packet again.
        assert_eq!(rx.writes().len(), 1);
        let merged = &written[VNET_HDR_LEN..];
        assert_eq!(merged.len(), packet.len());
        assert_eq!(merged[12..], packet[12..]);

        // A udp node does not understand it: it is no known peer (wrong port).
        let mut udp = IngressBatch::new(Encap::Udp, true, true);
        let (_, udp_n2) = tables();
        assert!(!udp.push(&udp_n2, 0, &mut slot, meta));
        assert_eq!(udp.local.drops[DropReason::UnknownPeer as usize], 1);
    }

    #[test]
    fn a_vxlan_plain_packet_is_one_datagram_behind_its_headers() {
        let (n1, n2) = vxlan_tables();
        let tx = Encap::Vxlan { vni: 1, mac: MAC1 };
        let mut b = EgressBatch::new(Encapsulator::new(MTU, 10), tx, true, true);
        let packet = ipv4_udp(V4_A, V4_B, 64, true, 100);
        let (mut buf, len) = read_into(&b, Some(VnetHdr::default()), &packet);
        assert!(b.push(&n1, 0, &mut buf, len, 0));
        let sent = datagrams(&mut b, &n1, &buf);
        assert_eq!(sent.len(), 1);
        let d = &sent[0].1;
        assert_eq!(d.len(), VXLAN_OVERHEAD + packet.len());
        assert_eq!(d[..8], [0x08, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(d[8..14], MAC2.0);
        assert_eq!(d[14..20], MAC1.0);
        assert_eq!(d[VXLAN_OVERHEAD + 12..], packet[12..]);

        let mut rx = IngressBatch::new(Encap::Vxlan { vni: 1, mac: MAC2 }, false, true);
        let mut slot = vec![0u8; SLOT_SIZE];
        slot[HEADROOM..HEADROOM + d.len()].copy_from_slice(d);
        let meta = RecvMeta {
            len: d.len(),
            from: Some("198.18.0.1:8472".parse().unwrap()),
            ..RecvMeta::default()
        };
        assert!(rx.push(&n2, 0, &mut slot, meta));
        finish(&mut rx, &mut slot);
        let &[w] = rx.writes() else {
            panic!("one write")
        };
        let &[Piece { span, .. }] = rx.pieces(&w) else {
            panic!("one piece")
        };
        assert_eq!(
            span.start as usize,
            HEADROOM + VXLAN_OVERHEAD,
            "written in place"
        );
        assert_eq!(span.of(&slot)[12..], packet[12..]);
    }
}
