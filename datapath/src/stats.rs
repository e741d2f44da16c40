//! Drop reasons and counters.
//!
//! Each datapath thread counts into its own [`LocalCounters`] (plain integers, no atomics on the
//! per-packet path) and folds them into the shared [`Counters`] once per batch.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was not forwarded. Every drop is counted under exactly one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Received: the datagram's source is no known peer.
    UnknownPeer,
    /// Received or read: not a well-formed IP packet (version, header length, total length).
    Malformed,
    /// Received: inner source outside the sending peer's subnets.
    Spoofed,
    /// Received: inner destination outside this node's local subnets.
    NotLocal,
    /// Read from the TUN: no route for the destination.
    NoRoute,
    /// Read from the TUN: TTL / hop limit ran out.
    TtlExceeded,
    /// Read from the TUN: larger than the tunnel MTU.
    TooBig,
    /// Read from the TUN: destination inside a local subnet (would loop back to us).
    Loop,
    /// The UDP send failed.
    SendError,
    /// Writing to the TUN failed.
    TunWriteError,
    /// Received (vxlan): shorter than the VXLAN and Ethernet headers.
    VxlanTruncated,
    /// Received (vxlan): the I flag missing, or a reserved bit set.
    VxlanFlags,
    /// Received (vxlan): another VNI.
    VxlanVni,
    /// Received (vxlan): the inner destination MAC is not ours (broadcast and multicast too).
    VxlanMac,
    /// Received (vxlan): the inner ethertype is neither IPv4 nor IPv6.
    VxlanEthertype,
}

impl DropReason {
    pub const COUNT: usize = 15;
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::UnknownPeer,
        Self::Malformed,
        Self::Spoofed,
        Self::NotLocal,
        Self::NoRoute,
        Self::TtlExceeded,
        Self::TooBig,
        Self::Loop,
        Self::SendError,
        Self::TunWriteError,
        Self::VxlanTruncated,
        Self::VxlanFlags,
        Self::VxlanVni,
        Self::VxlanMac,
        Self::VxlanEthertype,
    ];

    /// Stable snake_case name, for logs, stats output and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownPeer => "unknown_peer",
            Self::Malformed => "malformed",
            Self::Spoofed => "spoofed",
            Self::NotLocal => "not_local",
            Self::NoRoute => "no_route",
            Self::TtlExceeded => "ttl_exceeded",
            Self::TooBig => "too_big",
            Self::Loop => "loop",
            Self::SendError => "send_error",
            Self::TunWriteError => "tun_write_error",
            Self::VxlanTruncated => "vxlan_truncated",
            Self::VxlanFlags => "vxlan_flags",
            Self::VxlanVni => "vxlan_vni",
            Self::VxlanMac => "vxlan_mac",
            Self::VxlanEthertype => "vxlan_ethertype",
        }
    }
}

/// One thread's counts since its last [`Counters::absorb`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalCounters {
    /// Packets read from the TUN and sent to a peer, and their inner bytes.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets received from peers and written to the TUN, and their inner bytes.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// ICMP errors written back into the TUN.
    pub icmp_sent: u64,
    /// Times the kernel refused a UDP GSO send and segments went out one datagram each since.
    pub gso_fallbacks: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl LocalCounters {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
}

/// Totals shared between the datapath threads and whoever reads stats.
#[derive(Debug, Default)]
pub struct Counters {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    icmp_sent: AtomicU64,
    gso_fallbacks: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
}

impl Counters {
    /// Adds `local` to the totals and zeroes it. Call once per batch.
    pub fn absorb(&self, local: &mut LocalCounters) {
        fn add(a: &AtomicU64, v: u64) {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        }
        add(&self.tx_packets, local.tx_packets);
        add(&self.tx_bytes, local.tx_bytes);
        add(&self.rx_packets, local.rx_packets);
        add(&self.rx_bytes, local.rx_bytes);
        add(&self.icmp_sent, local.icmp_sent);
        add(&self.gso_fallbacks, local.gso_fallbacks);
        for (a, v) in self.drops.iter().zip(local.drops) {
            add(a, v);
        }
        *local = LocalCounters::default();
    }

    /// A consistent-enough copy of the totals (each counter read once, relaxed).
    pub fn snapshot(&self) -> LocalCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LocalCounters {
            tx_packets: get(&self.tx_packets),
            tx_bytes: get(&self.tx_bytes),
            rx_packets: get(&self.rx_packets),
            rx_bytes: get(&self.rx_bytes),
            icmp_sent: get(&self.icmp_sent),
            gso_fallbacks: get(&self.gso_fallbacks),
            drops: std::array::from_fn(|i| get(&self.drops[i])),
        }
    }
}

/// Packets and bytes sent to and received from one peer, kept across route-table versions for as
/// long as the peer has routes. The egress thread adds to `tx`, the ingress thread to `rx`, once
/// per batch; the two halves sit on separate cache lines so the threads do not contend.
#[derive(Debug, Default)]
pub struct PeerCounters {
    tx: Half,
    rx: Half,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Half {
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// A copy of one peer's [`PeerCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PeerTotals {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

impl PeerCounters {
    /// Packets handed to the kernel for this peer (send errors are counted as drops).
    #[inline]
    pub fn add_tx(&self, packets: u64, bytes: u64) {
        self.tx.packets.fetch_add(packets, Ordering::Relaxed);
        self.tx.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Packets from this peer written to the TUN.
    #[inline]
    pub fn add_rx(&self, packets: u64, bytes: u64) {
        self.rx.packets.fetch_add(packets, Ordering::Relaxed);
        self.rx.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PeerTotals {
        PeerTotals {
            tx_packets: self.tx.packets.load(Ordering::Relaxed),
            tx_bytes: self.tx.bytes.load(Ordering::Relaxed),
            rx_packets: self.rx.packets.load(Ordering::Relaxed),
            rx_bytes: self.rx.bytes.load(Ordering::Relaxed),
        }
    }
}
