//! Grouping an egress batch by peer: the sends of one batch are sorted into runs, one per peer
//! (each a candidate for one `sendmmsg` or, later, one GSO send), keeping every peer's packets
//! in the order they were read.

use crate::route::{Peer, PeerId, Table};

/// A packet of an egress batch that goes to a peer: where it is (`slot`, `len`) and its
/// position in the batch (`seq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub peer: PeerId,
    /// Sorting by `(peer, seq)` groups by peer and keeps each peer's packets in order, without
    /// the allocation of a stable sort.
    pub seq: u16,
    pub slot: u16,
    pub len: u16,
}

/// Sorts `sends` into runs by peer, adds each run to its peer's counters, and calls `f` once per
/// run. `table` must be the version the batch was decided with.
pub fn for_each_peer_run(
    table: &Table,
    sends: &mut [Outgoing],
    mut f: impl FnMut(&Peer, &[Outgoing]),
) {
    sends.sort_unstable_by_key(|o| (o.peer, o.seq));
    let mut rest = &sends[..];
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|o| o.peer == first.peer).count();
        let (run, tail) = rest.split_at(n);
        let peer = table.peer(first.peer);
        let bytes = run.iter().map(|o| u64::from(o.len)).sum();
        peer.counters.add_tx(n as u64, bytes);
        f(peer, run);
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Route;

    #[test]
    fn runs_by_peer_in_read_order_and_counted() {
        let local = ["198.19.1.0/24".parse().unwrap()];
        let route = |p: &str, a: &str| Route {
            prefix: p.parse().unwrap(),
            peer: a.parse().unwrap(),
        };
        let table = Table::new(
            &local,
            &[
                route("198.19.2.0/24", "198.18.0.2:8285"),
                route("198.19.3.0/24", "198.18.0.3:8285"),
            ],
        )
        .unwrap();
        let (a, b) = (PeerId(0), PeerId(1));
        let mut sends: Vec<Outgoing> = [b, a, b, a, a]
            .iter()
            .enumerate()
            .map(|(i, &peer)| Outgoing {
                peer,
                seq: i as u16,
                slot: 10 + i as u16,
                len: 100,
            })
            .collect();
        let mut runs = Vec::new();
        for_each_peer_run(&table, &mut sends, |peer, run| {
            runs.push((peer.addr, run.iter().map(|o| o.slot).collect::<Vec<_>>()))
        });
        assert_eq!(
            runs,
            [
                (table.peer(a).addr, vec![11, 13, 14]),
                (table.peer(b).addr, vec![10, 12]),
            ]
        );
        assert_eq!(table.peer(a).counters.snapshot().tx_packets, 3);
        assert_eq!(table.peer(b).counters.snapshot().tx_bytes, 200);
    }
}
