//! Route lookup against table size: longest-prefix match of destinations that hit a node
//! subnet and of destinations no route covers, in IPv4 and IPv6 tables of 10 to 100k nodes
//! (plus the covering prefixes, see `tundra_bench::routes`).
//!
//! Each iteration looks up [`KEYS`] addresses spread over the whole table, so the figure is
//! lookups per second on a table that does not sit in L1 (as on a busy node).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tundra_bench::{table, Addrs, Family};

mod common;

/// Addresses looked up per iteration.
const KEYS: usize = 1024;
const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

fn lookup(c: &mut Criterion) {
    for family in Family::BOTH {
        let mut group = c.benchmark_group(format!("lookup/{}", family.name()));
        group.throughput(Throughput::Elements(KEYS as u64));
        for nodes in SIZES {
            let t = table(Some(family), nodes);
            let mut addrs = Addrs::new(family, nodes, 0x100c + nodes as u64);
            let hits: Vec<IpAddr> = (0..KEYS).map(|_| addrs.hit().0).collect();
            let misses: Vec<IpAddr> = (0..KEYS).map(|_| addrs.miss()).collect();
            for (kind, keys) in [("hit", &hits), ("miss", &misses)] {
                group.bench_with_input(BenchmarkId::new(kind, nodes), keys, |b, keys| {
                    b.iter(|| {
                        let mut found = 0u32;
                        for &dst in keys {
                            found += u32::from(t.lookup(black_box(dst)).is_some());
                        }
                        found
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = lookup
}
criterion_main!(benches);
