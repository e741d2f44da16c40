//! Building one send batch: the egress loop's per-batch work (load the shared table once,
//! encapsulate every packet, group the sends by peer with one address conversion per run),
//! swept over the batch size and the number of distinct peers in the batch.
//!
//! Packets are 1400-byte IPv4 UDP, in slots 64 KiB apart as in the real loops, to peers of a
//! dual-stack table of 1000 nodes, in shuffled order. The "send" only touches the address and
//! the packet length: the syscall is not part of this.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use datapath::SharedTable;
use tundra_bench::{table, EgressBatch};

mod common;

const NODES: usize = 1000;
const BATCH_SIZES: [usize; 5] = [1, 8, 32, 64, 128];
const PEERS: [usize; 3] = [1, 4, 16];
const PACKET_LEN: usize = 1400;

fn batch(c: &mut Criterion) {
    let shared = SharedTable::new(table(None, NODES));
    for peers in PEERS {
        let mut group = c.benchmark_group(format!("batch/peers={peers}"));
        for size in BATCH_SIZES {
            if peers > size {
                continue;
            }
            group.throughput(Throughput::Elements(size as u64));
            let mut b = EgressBatch::new(size, peers, NODES, PACKET_LEN, 0xba7c);
            group.bench_function(BenchmarkId::from_parameter(size), |bench| {
                bench.iter(|| {
                    b.reset();
                    b.run(&shared, 0, |addr, packet| {
                        black_box((addr.len(), packet.len()));
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = batch
}
criterion_main!(benches);
