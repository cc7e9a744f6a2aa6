//! How much Raft traffic fits in one message and how long it may take,
//! decided purely: batches of entries are cut by bytes, and a transfer is
//! given time in proportion to its size.

use std::time::Duration;

use openraft::EntryPayload;

use crate::consensus::types::{Entry, Request};
use crate::limits::{
    COMMAND_BYTES_MAX, PLUGIN_BYTES_MAX, RAFT_RPC_TIMEOUT_MIN, RAFT_TRANSFER_BYTES_PER_SECOND_MIN,
};

/// What an entry adds to a message beyond its payload bytes (log id,
/// enum tags, length prefixes), generously.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// About how many bytes `entry` takes on the wire.
pub fn entry_bytes(entry: &Entry) -> usize {
    ENTRY_OVERHEAD_BYTES
        + match &entry.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Normal(
                Request::Command { bytes, .. } | Request::SessionCommand { bytes, .. },
            ) => bytes.len(),
            EntryPayload::Normal(Request::Deploy { plugin, .. }) => plugin.len(),
            EntryPayload::Normal(
                Request::Settings(_) | Request::Alarm(_) | Request::OpenSession { .. },
            ) => 0,
            EntryPayload::Membership(membership) => membership
                .nodes()
                .map(|(_, member)| member.rpc_addr.len() + 16)
                .sum(),
        }
}

/// Why `entries`, as received from a leader, cannot be from a healthy
/// one: a command above [`COMMAND_BYTES_MAX`] or a plugin above
/// [`PLUGIN_BYTES_MAX`], which no leader proposes whatever the cluster's
/// settings (the settings can only lower them). Refused before openraft
/// sees them, so nothing of the message is stored.
pub fn oversized_entry(entries: &[Entry]) -> Option<String> {
    entries.iter().find_map(|entry| {
        let (what, bytes, max) = match &entry.payload {
            EntryPayload::Normal(
                Request::Command { bytes, .. } | Request::SessionCommand { bytes, .. },
            ) => ("command", bytes.len(), COMMAND_BYTES_MAX),
            EntryPayload::Normal(Request::Deploy { plugin, .. }) => {
                ("plugin", plugin.len(), PLUGIN_BYTES_MAX)
            }
            _ => return None,
        };
        (bytes > max).then(|| {
            format!(
                "entry {} holds a {bytes}-byte {what}, above the {max}-byte limit",
                entry.log_id.index
            )
        })
    })
}

/// How many of `entries` (from the first) fit in `budget` bytes; at least
/// one, so an entry larger than the budget still goes, alone.
pub fn first_part_len(entries: &[Entry], budget: usize) -> usize {
    let mut total = 0;
    for (count, entry) in entries.iter().enumerate() {
        total += entry_bytes(entry);
        if total > budget {
            return count.max(1);
        }
    }
    entries.len()
}

/// Time to allow an RPC carrying `bytes`, asked to take `requested`: at
/// least the floor, and enough for `bytes` at the slowest link allowed.
pub fn transfer_timeout(bytes: usize, requested: Duration) -> Duration {
    let for_size =
        Duration::from_secs_f64(bytes as f64 / RAFT_TRANSFER_BYTES_PER_SECOND_MIN as f64);
    requested.max(RAFT_RPC_TIMEOUT_MIN).max(for_size)
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry as _;
    use openraft::testing::log_id;

    use super::*;
    use crate::consensus::types::TypeConfig;

    fn command(index: u64, bytes: usize) -> Entry {
        Entry::new_normal(
            log_id::<TypeConfig>(1, 1, index),
            Request::Command {
                time_ms: 0,
                bytes: vec![0; bytes],
            },
        )
    }

    #[test]
    fn batches_are_cut_by_bytes_and_a_large_entry_goes_alone() {
        let entries: Vec<Entry> = (1..=10).map(|index| command(index, 1000)).collect();
        assert_eq!(first_part_len(&entries, 100_000), 10, "all fit");
        assert_eq!(first_part_len(&entries, 3_500), 3);
        let large = vec![command(1, 50_000), command(2, 10)];
        assert_eq!(first_part_len(&large, 1_000), 1, "alone, over budget");
        assert_eq!(first_part_len(&[], 1_000), 0);
    }

    #[test]
    fn large_transfers_get_time_in_proportion_to_their_size() {
        let small = transfer_timeout(10, Duration::from_millis(50));
        assert_eq!(small, RAFT_RPC_TIMEOUT_MIN);
        let large = transfer_timeout(100 * RAFT_TRANSFER_BYTES_PER_SECOND_MIN, Duration::ZERO);
        assert_eq!(large, Duration::from_secs(100));
    }

    #[test]
    fn entries_larger_than_any_leader_proposes_are_named() {
        let fine = vec![command(1, 10), command(2, COMMAND_BYTES_MAX)];
        assert_eq!(oversized_entry(&fine), None);
        let over = vec![command(1, 10), command(2, COMMAND_BYTES_MAX + 1)];
        let refusal = oversized_entry(&over).expect("refused");
        assert!(refusal.starts_with("entry 2 holds a"), "{refusal}");
        let deploy = Entry::new_normal(
            log_id::<TypeConfig>(1, 1, 3),
            Request::Deploy {
                time_ms: 0,
                plugin: vec![0; PLUGIN_BYTES_MAX + 1],
            },
        );
        let refusal = oversized_entry(&[deploy]).expect("refused");
        assert!(refusal.contains("-byte plugin"), "{refusal}");
    }
}
