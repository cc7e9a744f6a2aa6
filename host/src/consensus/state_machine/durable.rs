//! A store plugin's state file as the durable copy of the machine: the
//! machine checkpoints it now and then (the host's part written with the
//! plugin's, see [`crate::plugin::store::durable`]), and on start resumes
//! from it instead of the newest snapshot when the log still holds every
//! entry after it. Anything doubtful falls back to the snapshot.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogReader, RaftLogStorage};

use super::{StateMachineStore, effective_limits};
use crate::consensus::LogStore;
use crate::consensus::host_state::HostState;
use crate::consensus::plugin_history::{PluginHistory, RetainedPlugin};
use crate::consensus::snapshot::{SnapshotBody, StoredSnapshot, decode_stored, encode_current};
use crate::consensus::types::{LogId, SnapshotMeta};
use crate::limits::{
    PluginLimits, STORE_CHECKPOINT_COST_MULTIPLE, STORE_CHECKPOINT_EVERY_BYTES,
    STORE_CHECKPOINT_EVERY_ENTRIES, STORE_CHECKPOINT_INTERVAL,
};
use crate::plugin::code::PluginDigest;
use crate::plugin::store::{SideRecord, StateFile, durable};
use crate::plugin::{PluginEngine, PluginHandle};

/// Where a node keeps its state file, and its log, to judge it by.
pub struct DurableStore {
    /// The directory of the state file.
    pub dir: PathBuf,
    /// The node's Raft log.
    pub log: LogStore,
}

/// What has been applied since the last checkpoint.
#[derive(Debug, Clone)]
pub(super) struct CheckpointClock {
    since: Instant,
    entries: u64,
    /// Due at the next chance whatever the counts (after a deploy).
    forced: bool,
    /// How long the last checkpoint took.
    cost: Duration,
    /// The plugins kept for rollback as last encoded, by their versions and
    /// sizes: they change only at deploys, and may be large.
    retained: Option<(Vec<(u64, usize)>, SideRecord)>,
}

impl CheckpointClock {
    pub(super) fn start() -> Self {
        Self {
            since: Instant::now(),
            entries: 0,
            forced: false,
            cost: Duration::ZERO,
            retained: None,
        }
    }

    /// A checkpoint taking `cost` was written: count from now.
    fn restart(&mut self, cost: Duration) {
        *self = Self {
            retained: self.retained.take(),
            cost,
            ..Self::start()
        };
    }

    /// `retained` as a side record, encoded again only when it changed.
    fn retained_record(&mut self, retained: &[RetainedPlugin]) -> io::Result<SideRecord> {
        let key: Vec<(u64, usize)> = retained
            .iter()
            .map(|plugin| (plugin.version, plugin.bytes.len()))
            .collect();
        if let Some((cached, record)) = &self.retained
            && *cached == key
        {
            return Ok(record.clone());
        }
        let bytes = postcard::to_stdvec(retained).map_err(io::Error::other)?;
        let record = SideRecord::of(bytes);
        self.retained = Some((key, record.clone()));
        Ok(record)
    }

    pub(super) fn applied(&mut self, entries: u64) {
        self.entries = self.entries.saturating_add(entries);
    }

    pub(super) fn force(&mut self) {
        self.forced = true;
    }
}

/// Whether a checkpoint is due, with `clock` counting the entries applied
/// since the last one, `write_bytes` store bytes written and `elapsed`.
fn checkpoint_due(clock: &CheckpointClock, write_bytes: u64, elapsed: Duration) -> bool {
    clock.entries > 0
        && (clock.forced
            || clock.entries >= STORE_CHECKPOINT_EVERY_ENTRIES
            || write_bytes >= STORE_CHECKPOINT_EVERY_BYTES
            || elapsed
                >= STORE_CHECKPOINT_INTERVAL.max(clock.cost * STORE_CHECKPOINT_COST_MULTIPLE))
}

impl StateMachineStore {
    /// Checkpoint the plugin's state file if one is due.
    pub(super) async fn checkpoint_if_due(&mut self) -> io::Result<()> {
        let Some(write_bytes) = self.plugin.unsaved_write_bytes() else {
            return Ok(());
        };
        if checkpoint_due(
            &self.checkpoints,
            write_bytes,
            self.checkpoints.since.elapsed(),
        ) {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Make the plugin's state file durable with the whole state at the
    /// last applied entry (nothing without a state file).
    pub(super) async fn checkpoint(&mut self) -> io::Result<()> {
        let Some(last_applied) = self.last_applied else {
            return Ok(());
        };
        if self.plugin.unsaved_write_bytes().is_none() {
            return Ok(());
        }
        let started = Instant::now();
        let (host, side) = self.host_record()?;
        self.plugin
            .checkpoint(last_applied.index, host, side)
            .await
            .map_err(io::Error::other)?;
        tracing::debug!(
            index = last_applied.index,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpointed the plugin store"
        );
        self.checkpoints.restart(started.elapsed());
        Ok(())
    }

    /// The host's part of a checkpoint: everything a snapshot holds but the
    /// plugin, at the last applied entry; the plugins kept for rollback go
    /// in the side record.
    pub(super) fn host_record(&mut self) -> io::Result<(Vec<u8>, SideRecord)> {
        let host = &self.host;
        let history = PluginHistory {
            cluster_version: host.history.cluster_version,
            records: host.history.records.clone(),
            retained: Vec::new(),
        };
        let host = HostState {
            history,
            settings: host.settings,
            digest: host.digest.clone(),
            alarms: host.alarms.clone(),
            sessions: host.sessions.clone(),
            signers: host.signers.clone(),
        };
        let record = encode_current(&StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
            },
            body: SnapshotBody { plugin: None, host },
        })?;
        let side = self
            .checkpoints
            .retained_record(&self.host.history.retained)?;
        Ok((record, side))
    }
}

/// The log as a resume needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogBounds {
    last_purged: Option<LogId>,
    /// The id of the log's entry at the checkpoint's index, if it holds one.
    at_checkpoint: Option<LogId>,
    /// The index of the log's last entry (0 when empty).
    last_index: u64,
}

impl LogBounds {
    async fn read(log: &LogStore, index: u64) -> io::Result<Self> {
        let mut log = log.clone();
        let state = log.get_log_state().await?;
        let entries = log.try_get_log_entries(index..index + 1).await?;
        Ok(Self {
            last_purged: state.last_purged_log_id,
            at_checkpoint: entries.first().map(|entry| entry.log_id),
            last_index: state.last_log_id.map_or(0, |log_id| log_id.index),
        })
    }
}

/// Why a checkpoint at `checkpoint` cannot be resumed from, with the newest
/// snapshot at `snapshot_index` and the log as in `log`; `None`: it can.
fn refusal(checkpoint: Option<LogId>, snapshot_index: u64, log: &LogBounds) -> Option<String> {
    let Some(checkpoint) = checkpoint else {
        return Some("the checkpoint holds no applied entry".to_string());
    };
    let index = checkpoint.index;
    if snapshot_index > index {
        return Some(format!(
            "the newest snapshot ({snapshot_index}) is past the checkpoint ({index})"
        ));
    }
    let purged = log.last_purged.map_or(0, |log_id| log_id.index);
    if purged > index {
        return Some(format!(
            "the log is purged to {purged}, past the checkpoint ({index})"
        ));
    }
    // The entry the checkpoint ends with must be the log's (same term), as
    // an applied entry always is.
    if log.last_purged != Some(checkpoint) && log.at_checkpoint != Some(checkpoint) {
        return Some(format!(
            "the log does not hold the checkpoint's entry {index} as applied"
        ));
    }
    None
}

/// Why `code`, the plugin in a state file, is not the plugin `history`
/// (the checkpoint's) says the cluster ran at the checkpoint; `None`: it
/// is, or no successful deploy is on record to compare with. Resuming a
/// store under other code than the log's would apply the entries after it
/// differently from every other replica.
fn code_refusal(history: &PluginHistory, code: &[u8]) -> Option<String> {
    let running = history
        .records
        .iter()
        .rev()
        .find(|record| record.version.is_some())?;
    let digest = PluginDigest::of(code).to_hex();
    (running.digest != digest).then(|| {
        format!(
            "its plugin code ({digest}) is not the plugin the cluster ran at the checkpoint ({})",
            running.digest
        )
    })
}

/// What a machine resumed from its state file starts with.
pub(super) struct Resumed {
    /// The Raft state and host state at the checkpoint.
    pub snapshot: StoredSnapshot,
    /// The running plugin's code.
    pub code: Vec<u8>,
}

/// Resume `plugin` from the node's state file in `durable` if it can be,
/// with `newest` the newest snapshot; `None` when it cannot (the file is
/// removed, and the caller restores the snapshot).
pub(super) async fn resume(
    plugin: &PluginHandle,
    engine: &PluginEngine,
    flag_limits: &PluginLimits,
    durable: &DurableStore,
    newest: Option<&StoredSnapshot>,
) -> io::Result<Option<Resumed>> {
    // redb checks every page of a file it opens here, but a file damaged
    // outside redb may still make it panic; that must cost the file, not
    // the node (a panic here would repeat at every start).
    let opened = tokio::task::block_in_place(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| durable::open(&durable.dir)))
    });
    let stored = match opened {
        Ok(Ok(None)) => return Ok(None),
        Ok(Ok(Some(stored))) => stored,
        Ok(Err(error)) => return Ok(fall_back(durable, &error.to_string())),
        Err(_) => return Ok(fall_back(durable, "reading it panicked")),
    };
    let saved = match decode_saved(&stored) {
        Ok(saved) => saved,
        // Of a cluster past this binary's protocol level: not damage, so
        // the file stays (a binary that supports the level resumes from
        // it) and this one does not start.
        Err(error) if error.kind() == io::ErrorKind::Unsupported => return Err(error),
        Err(error) => return Ok(fall_back(durable, &error.to_string())),
    };
    let checkpoint = saved.meta.last_log_id;
    let index = checkpoint.map_or(0, |log_id| log_id.index);
    let log = match LogBounds::read(&durable.log, index).await {
        Ok(log) => log,
        Err(error) => return Ok(fall_back(durable, &format!("reading the log: {error}"))),
    };
    let snapshot_index = newest.map_or(0, StoredSnapshot::index);
    if let Some(reason) = refusal(checkpoint, snapshot_index, &log) {
        return Ok(fall_back(durable, &reason));
    }
    if let Some(reason) = code_refusal(&saved.body.host.history, &stored.code) {
        return Ok(fall_back(durable, &reason));
    }
    let code_bytes = stored.code.clone();
    let code = match engine.load_to_apply(code_bytes.clone()).await {
        Ok(code) => code,
        Err(error) => return Ok(fall_back(durable, &format!("its plugin: {error}"))),
    };
    let limits = effective_limits(&saved.body.host.settings, flag_limits);
    let resumed = plugin.resume(code, stored, limits).await;
    if let Err(error) = resumed.map_err(io::Error::other)? {
        return Ok(fall_back(durable, &error.to_string()));
    }
    tracing::info!(
        resumed_index = index,
        snapshot_index,
        log_entries_after = log.last_index.saturating_sub(index),
        "resumed the plugin store from its state file; replaying only the entries after it"
    );
    Ok(Some(Resumed {
        snapshot: saved,
        code: code_bytes,
    }))
}

/// The host's part of `stored`'s checkpoint, with the plugins kept for
/// rollback from its side record.
fn decode_saved(stored: &durable::Stored) -> io::Result<StoredSnapshot> {
    let mut saved = decode_stored(&stored.checkpoint.host)?;
    saved.body.host.history.retained = postcard::from_bytes(&stored.side)
        .map_err(|error| io::Error::other(format!("its side record: {error}")))?;
    Ok(saved)
}

fn fall_back(durable: &DurableStore, reason: &str) -> Option<Resumed> {
    tracing::info!(
        "not resuming from the plugin store's state file ({reason}); rebuilding the plugin store \
         from the newest snapshot"
    );
    StateFile::discard(&durable.dir);
    None
}

#[cfg(test)]
mod tests {
    //! Goal: a checkpoint is resumed from only when the log holds every
    //! entry after it and its last entry as applied, and no snapshot is
    //! newer; checkpoints come due by entries, bytes or time.
    use super::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId {
            leader_id: openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 },
            index,
        }
    }

    #[test]
    fn a_checkpoint_is_resumed_only_where_the_log_continues_it() {
        let at = |purged: Option<LogId>, entry: Option<LogId>| LogBounds {
            last_purged: purged,
            at_checkpoint: entry,
            last_index: 50,
        };
        let checkpoint = Some(log_id(2, 50));
        assert_eq!(refusal(checkpoint, 40, &at(None, checkpoint)), None);
        assert_eq!(refusal(checkpoint, 50, &at(checkpoint, None)), None);
        let refused = [
            refusal(None, 0, &at(None, None)),
            refusal(checkpoint, 60, &at(None, checkpoint)),
            refusal(checkpoint, 40, &at(Some(log_id(2, 51)), None)),
            refusal(checkpoint, 40, &at(None, None)),
            refusal(checkpoint, 40, &at(None, Some(log_id(3, 50)))),
        ];
        for (case, reason) in refused.iter().enumerate() {
            assert!(reason.is_some(), "case {case} was resumed");
        }
    }

    #[test]
    fn a_state_file_is_resumed_only_under_the_plugin_its_checkpoint_ran() {
        use crate::consensus::plugin_history::DeployRecord;
        let deployed = |code: &[u8], version: Option<u64>| DeployRecord {
            version,
            digest: PluginDigest::of(code).to_hex(),
            size_bytes: code.len() as u64,
            index: 3,
            time_ms: 0,
            failure: version.is_none().then(|| "refused".to_string()),
        };
        let mut history = PluginHistory::default();
        assert_eq!(code_refusal(&history, b"v1"), None, "nothing on record");
        history.records.push(deployed(b"v1", Some(1)));
        assert_eq!(code_refusal(&history, b"v1"), None);
        // A failed deploy after it leaves v1 running.
        history.records.push(deployed(b"v2", None));
        assert_eq!(code_refusal(&history, b"v1"), None);
        let refused = code_refusal(&history, b"v2").expect("v2 never ran");
        assert!(
            refused.contains("not the plugin the cluster ran"),
            "{refused}"
        );
        history.records.push(deployed(b"v2", Some(2)));
        assert!(code_refusal(&history, b"v1").is_some(), "v1 was replaced");
    }

    #[test]
    fn checkpoints_come_due_by_entries_bytes_or_time() {
        let mut clock = CheckpointClock::start();
        let soon = Duration::from_millis(1);
        assert!(!checkpoint_due(&clock, u64::MAX, STORE_CHECKPOINT_INTERVAL));
        clock.applied(1);
        assert!(!checkpoint_due(&clock, 0, soon));
        assert!(checkpoint_due(&clock, STORE_CHECKPOINT_EVERY_BYTES, soon));
        assert!(checkpoint_due(&clock, 0, STORE_CHECKPOINT_INTERVAL));
        clock.applied(STORE_CHECKPOINT_EVERY_ENTRIES);
        assert!(checkpoint_due(&clock, 0, soon));
        // A costly checkpoint stretches the interval, not the other bounds.
        let mut slow = CheckpointClock::start();
        slow.restart(STORE_CHECKPOINT_INTERVAL);
        slow.applied(1);
        assert!(!checkpoint_due(&slow, 0, 2 * STORE_CHECKPOINT_INTERVAL));
        let stretched = STORE_CHECKPOINT_INTERVAL * STORE_CHECKPOINT_COST_MULTIPLE;
        assert!(checkpoint_due(&slow, 0, stretched));
        assert!(checkpoint_due(&slow, STORE_CHECKPOINT_EVERY_BYTES, soon));
        let mut forced = CheckpointClock::start();
        forced.applied(1);
        forced.force();
        assert!(checkpoint_due(&forced, 0, soon));
    }

    /// A machine opened on `dir` (empty log and snapshots, no plugin) with
    /// its state file judged; whether the file is still there after.
    async fn open_on(dir: &std::path::Path) -> bool {
        opened_on(dir).await.0
    }

    async fn opened_on(dir: &std::path::Path) -> (bool, StateMachineStore) {
        let machine = try_open(dir).await.expect("the machine starts");
        assert_eq!(machine.last_applied, None, "started from nothing");
        let exists = dir.join(crate::plugin::store::STATE_FILE_NAME).exists();
        (exists, machine)
    }

    async fn try_open(dir: &std::path::Path) -> io::Result<StateMachineStore> {
        let plugin =
            PluginHandle::spawn(None, PluginLimits::default(), "durable".to_string()).unwrap();
        let snapshots =
            crate::consensus::snapshot::Snapshots::open(&dir.join("snapshots")).unwrap();
        let durable = DurableStore {
            dir: dir.to_path_buf(),
            log: LogStore::open(&dir.join("raft.redb")).unwrap(),
        };
        let engine = PluginEngine::new(None).unwrap();
        let limits = PluginLimits::default();
        StateMachineStore::open_with(plugin, engine, snapshots, limits, None, Some(durable)).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_checkpoints_host_part_and_side_record_give_back_the_host_state() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut machine) = opened_on(dir.path()).await;
        machine.last_applied = Some(log_id(3, 12));
        machine.host.history.cluster_version = 2;
        machine.host.history.retained = vec![RetainedPlugin {
            version: 1,
            bytes: vec![7; 1000],
        }];
        let (host, side) = machine.host_record().unwrap();
        assert!(
            host.len() < 1000,
            "the retained plugin is not in the host part"
        );
        let (_, again) = machine.host_record().unwrap();
        assert_eq!(again, side, "an unchanged side record is reused");
        let stored = durable::Stored {
            file: StateFile::create(None).unwrap(),
            checkpoint: durable::Checkpoint {
                index: 12,
                position: None,
                plugin_part: Vec::new(),
                store_bytes: 0,
                host,
            },
            code: Vec::new(),
            side: side.bytes.to_vec(),
        };
        let saved = decode_saved(&stored).unwrap();
        assert_eq!(saved.body.host, machine.host);
        assert_eq!(saved.meta.last_log_id, machine.last_applied);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_state_file_that_cannot_be_resumed_is_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::plugin::store::STATE_FILE_NAME);
        std::fs::write(&path, b"not a database").unwrap();
        assert!(!open_on(dir.path()).await, "a damaged file is removed");
        // A whole checkpoint at entry 5, which the (empty) log does not hold.
        write_checkpoint(dir.path(), &StoredSnapshot::default());
        assert!(path.exists());
        assert!(
            !open_on(dir.path()).await,
            "a checkpoint past the log is removed"
        );
    }

    /// A whole state file in `dir` with a checkpoint at entry 5 whose host
    /// part is `saved`'s.
    fn write_checkpoint(dir: &std::path::Path, saved: &StoredSnapshot) {
        let mut file = StateFile::create(Some(dir)).unwrap();
        file.fill(&crate::plugin::store::envelope::Entries::NONE, b"code")
            .unwrap();
        file.promote().unwrap();
        let mut saved = saved.clone();
        saved.meta.last_log_id = Some(log_id(1, 5));
        let checkpoint = durable::Checkpoint {
            index: 5,
            position: None,
            plugin_part: Vec::new(),
            store_bytes: 0,
            host: encode_current(&saved).unwrap(),
        };
        let side = SideRecord::of(postcard::to_stdvec(&Vec::<RetainedPlugin>::new()).unwrap());
        file.checkpoint(5, Some((&checkpoint.encode(), &side)))
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_checkpoint_above_the_supported_level_stops_the_start_and_is_kept() {
        use crate::consensus::settings::PROTOCOL_LEVEL_SUPPORTED;
        let dir = tempfile::tempdir().unwrap();
        let mut saved = StoredSnapshot::default();
        saved.body.host.settings.protocol_level = PROTOCOL_LEVEL_SUPPORTED + 1;
        write_checkpoint(dir.path(), &saved);
        let error = try_open(dir.path())
            .await
            .err()
            .expect("the start is refused");
        assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}");
        let path = dir.path().join(crate::plugin::store::STATE_FILE_NAME);
        assert!(path.exists(), "kept for a binary that supports the level");
    }
}
