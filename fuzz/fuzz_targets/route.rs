//! The route table (`datapath::Table`) against a naive reference: a list of routes scanned
//! for the longest prefix that contains the address.
//!
//! Input: `[format:1][n_local:1][n_routes:1]`, then 6 bytes per prefix (family and length,
//! 4 address bytes, spread over IPv6 so that prefixes nest), 2 bytes per route's peer, and
//! 5 bytes per address to look up, until the input ends.
//!
//! Asserts: for a table `Table::build` accepts, `lookup` of every address finds the peer of the
//! naive longest match; `is_local` is a scan of the local subnets; every route's peer is found
//! by its address; `routes()` gives the routes back.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use datapath::route::canonical_addr;
use datapath::{Mac, Route, Table, WireFormat};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tundra_fuzz::{naive_lpm, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let format = if input.bool() {
        WireFormat::Vxlan
    } else {
        WireFormat::Udp
    };
    let n_local = usize::from(input.u8() % 4);
    let n_routes = usize::from(input.u8() % 32);
    let prefix = |input: &mut Input| -> IpNet {
        let sel = input.u8();
        let addr = addr(sel & 0x80 != 0, input.u32());
        let len = sel & 0x7f;
        let net = IpNet::new(addr, len % (if addr.is_ipv4() { 33 } else { 129 })).unwrap();
        // Mostly canonical: let a few host bits through, which the table must refuse.
        if input.u8() == 0xff {
            net
        } else {
            net.trunc()
        }
    };
    let local: Vec<IpNet> = (0..n_local).map(|_| prefix(&mut input)).collect();
    let mut routes = Vec::new();
    for _ in 0..n_routes {
        let p = prefix(&mut input);
        let peer = input.u8();
        let port = input.u8();
        routes.push(Route {
            prefix: p,
            peer: SocketAddr::new(
                addr(peer & 0x80 != 0, u32::from(peer & 0x0f)),
                u16::from(port),
            ),
            mac: (port & 0x80 == 0 || format == WireFormat::Vxlan).then_some(Mac([
                0x02,
                0,
                0,
                0,
                0,
                peer & 0x0f,
            ])),
        });
    }
    let Ok(table) = Table::build(format, &local, &routes, None) else {
        return;
    };
    let given = table.routes();
    assert_eq!(given.len(), routes.len());
    assert!(given.iter().all(|r| routes.contains(r)));
    for r in &routes {
        let id = table
            .peer_by_addr(r.peer)
            .expect("every route's peer is known");
        assert_eq!(table.peer(id).addr, canonical_addr(r.peer));
        assert_eq!(table.peer(id).mac, r.mac);
    }
    // Look up every prefix's first address, and fuzzed ones.
    let prefixes = routes.iter().map(|r| r.prefix).chain(local.iter().copied());
    let mut lookups: Vec<IpAddr> = prefixes
        .flat_map(|p| [p.network(), p.broadcast()])
        .collect();
    while !input.is_empty() {
        let sel = input.u8();
        lookups.push(addr(sel & 1 != 0, input.u32()));
    }
    for a in lookups {
        let expected = naive_lpm(&routes, a).map(|r| canonical_addr(r.peer));
        assert_eq!(
            table.lookup(a).map(|id| table.peer(id).addr),
            expected,
            "{a}"
        );
        assert_eq!(table.is_local(a), local.iter().any(|l| l.contains(&a)));
    }
});

/// An address of either family from 32 bits: IPv4 as is; IPv6 with the bits spread over the
/// top of the address (so that short prefixes of different inputs nest) and a fixed tail.
fn addr(v6: bool, bits: u32) -> IpAddr {
    if v6 {
        let b = bits.to_be_bytes();
        IpAddr::V6(Ipv6Addr::from([
            0xfd,
            b[0],
            b[1],
            0,
            b[2],
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            b[3] & 0x0f,
            b[3],
        ]))
    } else {
        IpAddr::V4(Ipv4Addr::from(bits))
    }
}
