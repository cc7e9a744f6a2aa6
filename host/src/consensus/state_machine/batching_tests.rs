//! Replicas hand the state machine the same entries in batches of their
//! own: whatever the batching, every replica must decide every session
//! command the same way and end with the same sessions and applied digest.

use futures::stream;
use openraft::entry::RaftEntry as _;
use openraft::storage::RaftStateMachine as _;
use openraft::testing::log_id;
use tempfile::TempDir;

use super::StateMachineStore;
use crate::consensus::sessions::SessionStamp;
use crate::consensus::snapshot::Snapshots;
use crate::consensus::types::{Entry, Request, TypeConfig};
use crate::limits::{
    PluginLimits, SESSION_KEPT_ENTRY_OVERHEAD_BYTES, SESSION_RESPONSE_BYTES_KEPT_MAX,
    SESSION_TIMEOUT_MIN, SESSIONS_RETAINED_BYTES_MAX,
};
use crate::plugin::native::Entry as Position;
use crate::plugin::{Machine, NativeMachine, PluginEngine, PluginHandle, StateMachine};

/// Clients in the generated log.
const CLIENTS: u64 = 24;
/// Session commands in the generated log: enough at the largest kept
/// response to pass the bound on kept bytes across all sessions.
const COMMANDS: u64 = 12_000;

/// Answers each command with as many bytes as its first four give, or
/// rejects it, by its fifth.
#[derive(Default)]
struct Echo;

impl StateMachine for Echo {
    fn apply(&mut self, _entry: Position, command: &[u8]) -> Result<Vec<u8>, String> {
        let length = command
            .first_chunk::<4>()
            .map(|bytes| u32::from_le_bytes(*bytes))
            .ok_or("short command")?;
        let tag = command[4];
        if tag % 7 == 3 {
            return Err(format!("rejected {tag}"));
        }
        Ok(vec![tag; length as usize])
    }
    fn query(&self, _request: &[u8]) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }
    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// A small deterministic generator, so the log is the same every run.
struct Draws(u64);

impl Draws {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Every fourth client's session times out after the shortest timeout
/// allowed, the others after an hour.
fn timeout_ms(client: u64) -> u64 {
    if client.is_multiple_of(4) {
        SESSION_TIMEOUT_MIN.as_millis() as u64
    } else {
        3_600_000
    }
}

/// A jump of the log's clock past the shortest session timeout.
const TIME_JUMP_MS: u64 = 1_200;

/// Sessions opened, then commands of many clients: retries (some in the
/// same batch as the first try), acknowledgements, responses small, at the
/// largest kept size, over it, and rejections; sessions expiring by log
/// time and new ones opened in between.
fn log() -> Vec<Entry> {
    let mut draws = Draws(7);
    let mut entries = Vec::new();
    let mut index = 0;
    let mut next = |payload: Request| {
        index += 1;
        Entry::new_normal(log_id::<TypeConfig>(1, 1, index), payload)
    };
    let mut now_ms = 1_000;
    let mut sequences = Vec::new();
    for client in 0..CLIENTS {
        entries.push(next(Request::OpenSession {
            time_ms: now_ms,
            timeout_ms: timeout_ms(client),
        }));
        sequences.push((entries.len() as u64, 0_u64, 1_u64));
    }
    for _ in 0..COMMANDS {
        now_ms += 1;
        // Now and then the log's clock jumps past the short timeouts, so
        // idle short sessions expire in the middle of whatever batch.
        if draws.below(600) == 0 {
            now_ms += TIME_JUMP_MS;
        }
        let client = draws.below(CLIENTS) as usize;
        // Now and then a client starts over with a new session.
        if draws.below(200) == 0 {
            entries.push(next(Request::OpenSession {
                time_ms: now_ms,
                timeout_ms: timeout_ms(client as u64),
            }));
            sequences[client] = (entries.len() as u64, 0, 1);
        }
        let (client_id, sequence, first_outstanding) = &mut sequences[client];
        let retry = *sequence > 0 && draws.below(8) == 0;
        if !retry {
            *sequence += 1;
            if draws.below(512) == 0 {
                *first_outstanding = *sequence;
            }
        }
        let length = match draws.below(4) {
            0 => 8,
            1 | 2 => SESSION_RESPONSE_BYTES_KEPT_MAX,
            _ => SESSION_RESPONSE_BYTES_KEPT_MAX + 1,
        } as u32;
        let mut bytes = length.to_le_bytes().to_vec();
        bytes.push((*sequence % 251) as u8);
        entries.push(next(Request::SessionCommand {
            time_ms: now_ms,
            session: SessionStamp {
                client_id: *client_id,
                sequence: *sequence,
                first_outstanding: *first_outstanding,
            },
            bytes,
        }));
        if draws.below(64) == 0 {
            entries.push(next(Request::Command {
                time_ms: now_ms,
                bytes: vec![8, 0, 0, 0, 1],
            }));
        }
    }
    entries
}

/// The marker a cluster of [`machine`]s deploys first.
pub(super) fn echo_marker() -> std::sync::Arc<[u8]> {
    NativeMachine::new("echo", Box::new(Echo)).code()
}

/// A state machine running the native `Echo`, as a replica would.
pub(super) async fn machine() -> (TempDir, StateMachineStore) {
    let directory = tempfile::tempdir().expect("temp dir");
    let native = NativeMachine::new("echo", Box::new(Echo));
    let code = native.code();
    let plugin = PluginHandle::spawn(
        Some(Machine::Native(native)),
        PluginLimits::default(),
        "batching".to_string(),
    )
    .expect("plugin worker");
    let snapshots = Snapshots::open(&directory.path().join("snapshots")).expect("snapshot dir");
    let engine = PluginEngine::new(None).expect("engine");
    let machine = StateMachineStore::open(
        plugin,
        engine,
        snapshots,
        PluginLimits::default(),
        Some(code),
    )
    .await
    .expect("state machine");
    (directory, machine)
}

/// Apply `entries` in batches of the sizes `batch_len` draws; the machine
/// and the most bytes its sessions kept after any batch.
async fn apply_in_batches(
    entries: &[Entry],
    mut batch_len: impl FnMut() -> usize,
) -> (StateMachineStore, usize) {
    let (_directory, mut machine) = machine().await;
    let mut kept_bytes_max = 0;
    let mut rest = entries;
    while !rest.is_empty() {
        let (batch, after) = rest.split_at(batch_len().clamp(1, rest.len()));
        let items = batch.iter().cloned().map(|entry| Ok((entry, None)));
        machine
            .apply(stream::iter(items))
            .await
            .expect("apply a batch");
        kept_bytes_max = kept_bytes_max.max(machine.host.sessions.kept_bytes());
        rest = after;
    }
    (machine, kept_bytes_max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_decisions_do_not_depend_on_batching() {
    // Goal: one entry at a time, the whole log at once and batches of
    // arbitrary sizes all end in the same sessions and applied digest, with
    // the kept bytes driven past their bound on the way.
    let entries = log();
    let (alone, kept_bytes_max) = apply_in_batches(&entries, || 1).await;
    assert!(
        kept_bytes_max + SESSION_KEPT_ENTRY_OVERHEAD_BYTES > SESSIONS_RETAINED_BYTES_MAX,
        "the log fills the kept bytes until admissions are refused: at most {kept_bytes_max}"
    );
    let opened = entries
        .iter()
        .filter(|entry| {
            matches!(
                entry.payload,
                openraft::EntryPayload::Normal(Request::OpenSession { .. })
            )
        })
        .count();
    assert!(
        alone.host.sessions.open_count() < opened,
        "sessions expire on the way: {} of {opened} open",
        alone.host.sessions.open_count()
    );
    let (all_at_once, _) = apply_in_batches(&entries, || usize::MAX).await;
    let mut draws = Draws(11);
    let (ragged, _) = apply_in_batches(&entries, || draws.below(300) as usize).await;
    for (name, other) in [("all at once", &all_at_once), ("ragged", &ragged)] {
        // Compared whole, but not printed: the sessions hold megabytes.
        assert!(
            alone.host.sessions == other.host.sessions,
            "sessions differ {name}: kept bytes {} one at a time, {} {name}",
            alone.host.sessions.kept_bytes(),
            other.host.sessions.kept_bytes()
        );
        assert_eq!(alone.host.digest, other.host.digest, "digest, {name}");
    }
}
