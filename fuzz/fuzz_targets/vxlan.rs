//! The VXLAN wire format (`datapath::encap::Encap`) and the MAC parser.
//!
//! Input: `[sel:1][vni:3][datagram...]`; the datagram is also read as text for the MAC parser.
//! Seeds are frames captured from the kernel's VXLAN (VNI 42, `datapath/fixtures/vxlan`).
//!
//! Asserts: `decap` agrees with a reference written from RFC 7348 and its doc (each check and
//! its drop reason, in order), so `Ok(22)` means flags 0x08, our VNI, our MAC, an IP ethertype
//! matching the inner version; udp decaps nothing; a header we write is one we accept;
//! a MAC that parses is six hex pairs and prints back to what was parsed, case and separator
//! aside.

#![no_main]

use std::sync::Arc;

use datapath::encap::{MAX_VNI, VXLAN_OVERHEAD};
use datapath::stats::DropReason;
use datapath::{Encap, Mac, Peer};
use libfuzzer_sys::fuzz_target;
use tundra_fuzz::{Input, OURS, VNI};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.u8();
    let vni_bytes = input.bytes(3);
    let datagram = input.rest();

    let vni = if sel & 1 == 0 {
        VNI
    } else {
        let mut b = [0u8; 4];
        b[1..1 + vni_bytes.len()].copy_from_slice(vni_bytes);
        u32::from_be_bytes(b) & MAX_VNI
    };
    let mac = if sel & 2 == 0 { OURS } else { Mac([sel; 6]) };
    let encap = Encap::Vxlan { vni, mac };

    assert_eq!(encap.decap(datagram), reference(vni, mac, datagram));
    assert_eq!(Encap::Udp.decap(datagram), Ok(0));

    // What we write in front of a packet, the peer we wrote it for accepts.
    let peer = Peer {
        addr: "198.18.0.2:8472".parse().unwrap(),
        mac: Some(mac),
        counters: Arc::default(),
    };
    let inner = datagram.get(VXLAN_OVERHEAD..).unwrap_or_default();
    let ipv6 = inner.first().is_some_and(|b| b >> 4 == 6);
    let mut framed = vec![0u8; VXLAN_OVERHEAD];
    encap.write_header(&peer, ipv6, &mut framed);
    framed.extend_from_slice(inner);
    let ok_version = inner.first().is_none_or(|b| matches!(b >> 4, 4 | 6));
    let expected = if ok_version {
        Ok(VXLAN_OVERHEAD)
    } else {
        Err(DropReason::Malformed)
    };
    assert_eq!(encap.decap(&framed), expected);

    if let Ok(text) = std::str::from_utf8(datagram) {
        mac_parser(text);
    }
});

/// RFC 7348 as Linux's VXLAN driver applies it, in the order `Encap::decap` documents.
fn reference(vni: u32, mac: Mac, d: &[u8]) -> Result<usize, DropReason> {
    if d.len() < 22 {
        return Err(DropReason::VxlanTruncated);
    }
    // Flags: the I bit (0x08) alone; the 24 reserved bits and the last reserved byte zero.
    if d[0] != 0x08 || d[1] != 0 || d[2] != 0 || d[3] != 0 || d[7] != 0 {
        return Err(DropReason::VxlanFlags);
    }
    if (u32::from(d[4]) << 16 | u32::from(d[5]) << 8 | u32::from(d[6])) != vni {
        return Err(DropReason::VxlanVni);
    }
    if d[8..14] != mac.0 {
        return Err(DropReason::VxlanMac);
    }
    let version = match (d[20], d[21]) {
        (0x08, 0x00) => 4,
        (0x86, 0xdd) => 6,
        _ => return Err(DropReason::VxlanEthertype),
    };
    match d.get(22) {
        Some(b) if b >> 4 != version => Err(DropReason::Malformed),
        _ => Ok(22),
    }
}

fn mac_parser(text: &str) {
    let parsed = text.parse::<Mac>();
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(parsed.is_ok(), valid, "{text:?}");
    if let Ok(mac) = parsed {
        let shown = mac.to_string();
        assert_eq!(shown, text.to_ascii_lowercase().replace('-', ":"));
        assert_eq!(shown.parse::<Mac>(), Ok(mac));
    }
}
