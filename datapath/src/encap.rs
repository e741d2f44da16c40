//! The wire formats: what goes in front of an inner IP packet in its UDP datagram, and the
//! checks on what arrives. Chosen once at start; the batches ask it for those bytes and checks,
//! so a new format touches this module and the configuration, not the hot loops.
//!
//! - `udp`, flannel's udp backend: the UDP payload is the inner packet, nothing else.
//! - `vxlan`, RFC 7348 as Linux implements it: an 8-byte VXLAN header (flags `0x08`, the
//!   I bit, every reserved bit zero; a 24-bit VNI) and an Ethernet header (the peer's VTEP MAC,
//!   ours, ethertype IPv4 or IPv6, no VLAN tag) in front of the inner packet.

use std::fmt;
use std::str::FromStr;

use crate::route::Peer;
use crate::stats::DropReason;

/// The VXLAN header: flags, reserved, VNI, reserved.
pub const VXLAN_HDR_LEN: usize = 8;
/// An Ethernet header without a VLAN tag.
pub const ETH_HDR_LEN: usize = 14;
/// Bytes a VXLAN datagram carries in front of the inner packet.
pub const VXLAN_OVERHEAD: usize = VXLAN_HDR_LEN + ETH_HDR_LEN;
/// The most bytes any format puts in front of a packet (the batches keep room for it).
pub const MAX_HEADER: usize = VXLAN_OVERHEAD;
/// The UDP port of VXLAN in Linux and flannel (IANA's is 4789).
pub const VXLAN_PORT: u16 = 8472;
/// The largest VNI: 24 bits.
pub const MAX_VNI: u32 = (1 << 24) - 1;

const FLAG_I: u8 = 0x08;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// An Ethernet (VTEP) MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Neither multicast (nor broadcast) nor all zeros: an address a frame can be sent to.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }

    /// A locally administered unicast MAC derived from `seed` (FNV-1a): the same seed gives the
    /// same MAC on every start and every build, unlike the random one a kernel device gets.
    pub fn derived(seed: &[u8]) -> Mac {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in seed {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        Mac([(b[2] & 0xfc) | 0x02, b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (six hex byte pairs separated by colons, e.g. 0a:58:c6:13:01:00)")]
pub struct BadMac;

impl FromStr for Mac {
    type Err = BadMac;

    /// `aa:bb:cc:dd:ee:ff` (`-` separators and upper case are accepted too).
    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let mut mac = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut mac {
            let part = parts.next().ok_or(BadMac)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BadMac);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| BadMac)?;
        }
        match parts.next() {
            None => Ok(Mac(mac)),
            Some(_) => Err(BadMac),
        }
    }
}

/// Which wire format a route table serves: it decides how a receive finds its peer (by
/// address and port in `udp`; by address alone in `vxlan`, where a kernel VTEP sends from a
/// flow-hashed source port) and what a peer must carry (its VTEP MAC in `vxlan`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WireFormat {
    #[default]
    Udp,
    Vxlan,
}

/// The wire format with its parameters, as the datapath uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encap {
    #[default]
    Udp,
    /// `vni`: at most [`MAX_VNI`]; `mac`: our VTEP MAC.
    Vxlan { vni: u32, mac: Mac },
}

impl Encap {
    pub fn format(&self) -> WireFormat {
        match self {
            Encap::Udp => WireFormat::Udp,
            Encap::Vxlan { .. } => WireFormat::Vxlan,
        }
    }

    /// Bytes in front of each inner packet.
    #[inline]
    pub fn header_len(&self) -> usize {
        match self {
            Encap::Udp => 0,
            Encap::Vxlan { .. } => VXLAN_OVERHEAD,
        }
    }

    /// Writes the bytes that go in front of an inner packet (IPv6 if `ipv6`) sent to `peer`;
    /// `out` is [`Encap::header_len`] bytes long. A vxlan peer without a MAC (which a vxlan
    /// table refuses) gets the broadcast MAC, which any receiver drops.
    #[inline]
    pub fn write_header(&self, peer: &Peer, ipv6: bool, out: &mut [u8]) {
        let Encap::Vxlan { vni, mac } = self else {
            return;
        };
        let out = &mut out[..VXLAN_OVERHEAD];
        out[0] = FLAG_I;
        out[1..4].fill(0);
        out[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
        out[7] = 0;
        out[8..14].copy_from_slice(&peer.mac.unwrap_or(Mac([0xff; 6])).0);
        out[14..20].copy_from_slice(&mac.0);
        let ethertype = if ipv6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        out[20..22].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// Checks the bytes in front of the inner packet of a received datagram as the Linux VXLAN
    /// driver does, and returns where the inner packet starts. The inner packet itself is
    /// checked afterwards, as in every format.
    ///
    /// # Errors
    /// In order: a datagram too short for the headers ([`DropReason::VxlanTruncated`]); the I
    /// flag missing or a reserved bit set ([`DropReason::VxlanFlags`]); another VNI
    /// ([`DropReason::VxlanVni`]); a destination MAC other than ours, broadcast and multicast
    /// included ([`DropReason::VxlanMac`]); an ethertype other than IPv4 and IPv6 (a VLAN tag
    /// included) ([`DropReason::VxlanEthertype`]); an ethertype that does not match the inner
    /// packet's IP version ([`DropReason::Malformed`]).
    #[inline]
    pub fn decap(&self, datagram: &[u8]) -> Result<usize, DropReason> {
        let Encap::Vxlan { vni, mac } = self else {
            return Ok(0);
        };
        let Some(h) = datagram.get(..VXLAN_OVERHEAD) else {
            return Err(DropReason::VxlanTruncated);
        };
        if h[0] != FLAG_I || h[1..4] != [0; 3] || h[7] != 0 {
            return Err(DropReason::VxlanFlags);
        }
        if u32::from_be_bytes([0, h[4], h[5], h[6]]) != *vni {
            return Err(DropReason::VxlanVni);
        }
        if h[8..14] != mac.0 {
            return Err(DropReason::VxlanMac);
        }
        let version = match u16::from_be_bytes([h[20], h[21]]) {
            ETHERTYPE_IPV4 => 4,
            ETHERTYPE_IPV6 => 6,
            _ => return Err(DropReason::VxlanEthertype),
        };
        match datagram.get(VXLAN_OVERHEAD) {
            Some(b) if b >> 4 != version => Err(DropReason::Malformed),
            _ => Ok(VXLAN_OVERHEAD),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const OURS: Mac = Mac([0x0a, 0x58, 0xc6, 0x13, 0x01, 0x00]);
    const THEIRS: Mac = Mac([0x0a, 0x58, 0xc6, 0x13, 0x02, 0x00]);

    fn peer(mac: Option<Mac>) -> Peer {
        Peer {
            addr: "198.18.0.2:8472".parse().unwrap(),
            mac,
            counters: Arc::default(),
        }
    }

    #[test]
    fn macs_parse_and_print() {
        let m: Mac = "0A:58:c6:13:01:00".parse().unwrap();
        assert_eq!(m, OURS);
        assert_eq!(m.to_string(), "0a:58:c6:13:01:00");
        assert_eq!("0a-58-c6-13-01-00".parse::<Mac>(), Ok(OURS));
        for bad in [
            "",
            "0a:58:c6:13:01",
            "0a:58:c6:13:01:00:00",
            "0a:58:c6:13:01:0",
            "0a:58:c6:13:01:0g",
            "0a:58:c6:13:01:+0",
            "0a58c6130100",
        ] {
            assert_eq!(bad.parse::<Mac>(), Err(BadMac), "{bad:?}");
        }
        assert!(OURS.is_unicast());
        assert!(!Mac([0xff; 6]).is_unicast());
        assert!(!Mac([0x01, 0, 0x5e, 0, 0, 1]).is_unicast());
        assert!(!Mac::default().is_unicast());
    }

    #[test]
    fn derived_macs_are_stable_local_unicast() {
        let a = Mac::derived(b"198.19.1.0/24");
        assert_eq!(a, Mac::derived(b"198.19.1.0/24"));
        assert_ne!(a, Mac::derived(b"198.19.2.0/24"));
        assert!(a.is_unicast());
        assert_eq!(a.0[0] & 0x03, 0x02, "locally administered, unicast");
        // Pinned: the derivation must not change between releases, or a restarted node
        // would no longer match the MAC its peers have for it.
        assert_eq!(Mac::derived(b"").to_string(), "9e:e4:84:22:23:25");
    }

    #[test]
    fn udp_adds_nothing() {
        let e = Encap::Udp;
        assert_eq!(e.header_len(), 0);
        assert_eq!(e.decap(&[0x45, 0]), Ok(0));
        assert_eq!(e.decap(&[]), Ok(0));
        assert_eq!(e.format(), WireFormat::Udp);
    }

    fn frame(e: &Encap, ipv6: bool, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; VXLAN_OVERHEAD];
        e.write_header(&peer(Some(THEIRS)), ipv6, &mut out);
        out.extend_from_slice(inner);
        out
    }

    #[test]
    fn vxlan_header_is_the_kernels() {
        let e = Encap::Vxlan {
            vni: 0x12_3456,
            mac: OURS,
        };
        let f = frame(&e, false, &[0x45]);
        assert_eq!(
            f[..VXLAN_OVERHEAD],
            [
                0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, // VXLAN
                0x0a, 0x58, 0xc6, 0x13, 0x02, 0x00, // destination: the peer
                0x0a, 0x58, 0xc6, 0x13, 0x01, 0x00, // source: us
                0x08, 0x00
            ]
        );
        assert_eq!(frame(&e, true, &[0x60])[20..22], [0x86, 0xdd]);
        assert_eq!(e.format(), WireFormat::Vxlan);
        assert_eq!(e.header_len(), 22);
    }

    #[test]
    fn vxlan_receive_checks_in_order() {
        // The receiver's view: its MAC is THEIRS.
        let us = Encap::Vxlan { vni: 7, mac: OURS };
        let rx = Encap::Vxlan {
            vni: 7,
            mac: THEIRS,
        };
        let good = frame(&us, false, &[0x45, 0, 0, 20]);
        assert_eq!(rx.decap(&good), Ok(22));
        assert_eq!(rx.decap(&frame(&us, true, &[0x60])), Ok(22));
        // Only the headers: the inner checks find it malformed later.
        assert_eq!(rx.decap(&good[..22]), Ok(22));
        assert_eq!(
            rx.decap(&good[..21]),
            Err(DropReason::VxlanTruncated),
            "truncated"
        );
        let with = |i: usize, v: u8| {
            let mut f = good.clone();
            f[i] = v;
            rx.decap(&f)
        };
        assert_eq!(with(0, 0x00), Err(DropReason::VxlanFlags), "no I flag");
        assert_eq!(
            with(0, 0x0c),
            Err(DropReason::VxlanFlags),
            "a reserved flag"
        );
        for i in [1, 2, 3, 7] {
            assert_eq!(with(i, 1), Err(DropReason::VxlanFlags), "reserved byte {i}");
        }
        assert_eq!(with(6, 8), Err(DropReason::VxlanVni));
        assert_eq!(with(4, 1), Err(DropReason::VxlanVni));
        assert_eq!(with(13, 1), Err(DropReason::VxlanMac));
        let mut bcast = good.clone();
        bcast[8..14].fill(0xff);
        assert_eq!(rx.decap(&bcast), Err(DropReason::VxlanMac));
        // ARP, and a VLAN tag.
        assert_eq!(with(21, 0x06), Err(DropReason::VxlanEthertype));
        assert_eq!(with(20, 0x81), Err(DropReason::VxlanEthertype));
        assert_eq!(
            with(22, 0x60),
            Err(DropReason::Malformed),
            "IPv4 type, IPv6 inside"
        );
        // Flags are checked before the VNI, the VNI before the MAC.
        let mut f = good.clone();
        f[0] = 0;
        f[6] = 9;
        f[13] = 9;
        assert_eq!(rx.decap(&f), Err(DropReason::VxlanFlags));
        f[0] = 0x08;
        assert_eq!(rx.decap(&f), Err(DropReason::VxlanVni));
    }

    #[test]
    fn a_peer_without_a_mac_gets_broadcast_which_is_dropped() {
        let us = Encap::Vxlan { vni: 1, mac: OURS };
        let mut out = [0u8; VXLAN_OVERHEAD];
        us.write_header(&peer(None), false, &mut out);
        assert_eq!(out[8..14], [0xff; 6]);
    }
}
