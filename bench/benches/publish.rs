//! Publishing a new table version, and what it costs the readers.
//!
//! - `publish/new+publish`: `Table::new` on a prepared route list plus `SharedTable::publish`
//!   (which also drops the previous version), by number of routes (IPv4 node subnets plus the
//!   covering prefixes); `publish/new_after+publish` the same through `Table::new_after` as the
//!   control plane builds it, keeping the previous version's peer counters.
//! - `load/*`: one `SharedTable::load` (and a read through the guard, then its drop) as each
//!   datapath thread does once per batch: with no writer, and while another thread publishes
//!   new versions back to back (a 10-route or a 1000-route table each time).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use datapath::{SharedTable, Table};
use tundra_bench::{local_subnets, routes, table, Family, COVERING};

mod common;

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

fn publish(c: &mut Criterion) {
    let local = local_subnets();
    let shared = SharedTable::new(table(Some(Family::V4), 1));
    let mut group = c.benchmark_group("publish");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for nodes in SIZES {
        let routes = routes(Family::V4, nodes);
        group.throughput(Throughput::Elements(routes.len() as u64));
        group.bench_function(BenchmarkId::new("new+publish", nodes + COVERING), |b| {
            b.iter(|| {
                let t = Table::new(&local, black_box(&routes)).expect("valid routes");
                shared.publish(t);
            })
        });
        // As the control plane does it: every peer looked up in the previous version to keep
        // its counters (here all of them are found).
        shared.publish(Table::new(&local, &routes).expect("valid routes"));
        group.bench_function(
            BenchmarkId::new("new_after+publish", nodes + COVERING),
            |b| {
                b.iter(|| {
                    let previous = shared.snapshot();
                    let t = Table::new_after(&local, black_box(&routes), Some(&previous))
                        .expect("valid routes");
                    shared.publish(t);
                })
            },
        );
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let shared = SharedTable::new(table(None, 1000));
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Elements(1));
    group.bench_function("no-writer", |b| {
        b.iter(|| black_box(shared.load().peers().len()))
    });
    for writer_nodes in [10, 1000] {
        let local = local_subnets();
        let routes = routes(Family::V4, writer_nodes);
        let stop = AtomicBool::new(false);
        let published = AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    shared.publish(Table::new(&local, &routes).expect("valid routes"));
                    published.fetch_add(1, Ordering::Relaxed);
                }
            });
            let name = format!("writer-{}-routes", routes.len());
            group.bench_function(name.as_str(), |b| {
                b.iter(|| black_box(shared.load().peers().len()))
            });
            stop.store(true, Ordering::Relaxed);
        });
        eprintln!(
            "load/writer-{}-routes: {} versions published meanwhile",
            routes.len(),
            published.load(Ordering::Relaxed)
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = publish, load
}
criterion_main!(benches);
