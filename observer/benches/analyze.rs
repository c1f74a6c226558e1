//! The whole analyze path (capture file → transactions and summary) on a generated
//! capture: `cargo bench --bench analyze`. Figures go to docs/performance.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use observer::runtime::{self, PipelineConfig};
use observer::synth;

fn analyze(c: &mut Criterion) {
    // Four peers polling each other for ten minutes: ~1,400 transactions with state
    // changes, timeouts, order-matched peers and multicast traffic.
    let (_, bytes) = synth::long_four_peers(600).expect("render capture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.pcap");
    std::fs::write(&path, &bytes).expect("write capture");

    let mut group = c.benchmark_group("analyze");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(20);
    // The default reorder window holds every frame (as an offset into the mapped
    // file); a zero window hands frames on as read: the difference is its cost.
    let mut in_file_order = PipelineConfig::default();
    in_file_order.reorder.window_ns = 0;
    for (name, cfg) in [
        ("four-peers-600s", PipelineConfig::default()),
        ("four-peers-600s-no-reorder", in_file_order),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let analysis = runtime::analyze(std::slice::from_ref(&path), cfg.clone(), false);
                black_box(analysis.result.transactions.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, analyze);
criterion_main!(benches);
