//! The cost of the applied digest (the divergence check's running hash):
//! what one entry adds to the apply path — the sha256 of its command and
//! the fold of (index, term, time, command digest, outcome) into the
//! chain — for a 256 B and a 4 KiB command. Set against the CPU one write
//! costs the whole cluster (`cargo xtask bench`'s "CPU per 1k writes"),
//! this is the digest's share of write throughput; the digest has no off
//! switch, since a replica without it could not be compared.
//!
//! Run: `cargo bench -p clusterhost --bench applied_digest`. `cargo xtask
//! bench` runs it too.

use clusterhost::consensus::digest::{Applied, AppliedDigest, command_digest};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The response a put answers with, as the kv plugin does.
const RESPONSE: &[u8] = br#"{"ok":null}"#;

fn fold_one_entry(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("applied_digest");
    group.throughput(Throughput::Elements(1));
    for (name, size) in [("entry_256B", 256), ("entry_4KiB", 4096)] {
        let command = vec![b'x'; size];
        let mut digest = AppliedDigest::default();
        let mut index = 0u64;
        group.bench_function(name, |bench| {
            bench.iter(|| {
                index += 1;
                let hashed = command_digest(std::hint::black_box(&command));
                digest.apply(
                    index,
                    1,
                    Applied::Command {
                        time_ms: index,
                        command: &hashed,
                        outcome: Ok(RESPONSE),
                        store_writes: None,
                    },
                );
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fold_one_entry);
criterion_main!(benches);
