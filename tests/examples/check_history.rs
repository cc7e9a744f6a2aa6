//! Check a recorded history again: `cargo run -p clusterhost-tests
//! --example check_history -- target/faults/<run>/history.jsonl` prints the
//! verdict (and, for a violation, the first operation that cannot be
//! linearized with the operations around it).

use clusterhost_tests::linearizability::{check, read_history};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: check_history HISTORY.jsonl"))?;
    let history = read_history(std::path::Path::new(&path))?;
    let report = check(&history)?;
    println!("{} operations: {}", history.len(), report.overall);
    Ok(())
}
