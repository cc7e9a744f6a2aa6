//! The replay journal: a base state plus every entry applied since, each
//! with the outcome it had, so that a fresh instance can be brought to the
//! same state by replay and the replay checked against the original run.

use super::code::PluginCode;
use super::instance::{EntryPosition, Fault, PluginInstance, PluginResult};
use super::runtime::RebuildError;
use super::store::{StoreSnapshot, StoreView};
use crate::limits::{
    PluginLimits, REPLAY_JOURNAL_BASE_MULTIPLE, REPLAY_JOURNAL_BYTES_MAX, REPLAY_JOURNAL_BYTES_MIN,
    REPLAY_JOURNAL_ENTRY_OVERHEAD_BYTES,
};

/// How a journaled entry ended. Only calls that ran to completion are
/// journaled (a trap changes nothing), and a replay must end the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin returned `ok`.
    Accepted,
    /// The plugin returned `err`.
    Rejected,
    /// The plugin returned more than the host accepts; the call still ran.
    OversizedOutput,
}

impl Outcome {
    /// The outcome of an `apply` that returned `result`; `None` when the call
    /// faulted in a way that discards the instance (it is not journaled).
    pub fn of(result: &Result<PluginResult, Fault>) -> Option<Self> {
        match result {
            Ok(Ok(_)) => Some(Outcome::Accepted),
            Ok(Err(_)) => Some(Outcome::Rejected),
            Err(Fault::OversizedOutput { .. }) => Some(Outcome::OversizedOutput),
            Err(_) => None,
        }
    }
}

/// One entry applied since the base.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// Where it sits in the log.
    pub position: EntryPosition,
    /// The command, as applied.
    pub command: Vec<u8>,
    /// How it ended the first time.
    pub outcome: Outcome,
    /// The digest of the store writes it kept the first time (`None`: none).
    pub writes: Option<[u8; 32]>,
    /// The limits it first ran under: a replay runs it under the same, so
    /// a change of the cluster's limits since cannot change how it ends.
    pub limits: PluginLimits,
}

/// A base snapshot and the entries applied since.
#[derive(Debug, Default)]
pub struct Journal {
    /// Snapshot bytes and the position they were taken at; `None` means
    /// the empty state of a fresh instance.
    base: Option<(EntryPosition, Vec<u8>)>,
    /// The plugin store at the base, for a plugin that uses one: replays
    /// read it (plus their own writes), never the live store.
    store_base: Option<StoreSnapshot>,
    /// The limits the base was taken under, to restore it under the same.
    base_limits: PluginLimits,
    /// The limits in force now, recorded with every entry pushed.
    limits: PluginLimits,
    entries: Vec<JournalEntry>,
    /// What the entries cost, counted as in [`Journal::push`].
    bytes: usize,
    /// `bytes` at which the next base is due.
    base_due_at_bytes: usize,
}

impl Journal {
    /// An empty journal over `base` (`None`: a fresh instance's state),
    /// with `limits` in force.
    pub fn new(base: Option<(EntryPosition, Vec<u8>)>, limits: PluginLimits) -> Self {
        let base_bytes = base.as_ref().map_or(0, |(_, bytes)| bytes.len());
        Self {
            base,
            store_base: None,
            base_limits: limits,
            limits,
            entries: Vec::new(),
            bytes: 0,
            base_due_at_bytes: budget_bytes(base_bytes),
        }
    }

    /// Entries pushed from now on run under `limits` (the cluster's
    /// settings changed at this point of the log).
    pub fn set_limits(&mut self, limits: PluginLimits) {
        self.limits = limits;
    }

    /// The store at the base is `snapshot` (set with every base).
    pub fn set_store_base(&mut self, snapshot: Option<StoreSnapshot>) {
        self.store_base = snapshot;
    }

    /// The store at the base, for a plugin that uses one.
    pub fn store_base(&self) -> Option<&StoreSnapshot> {
        self.store_base.as_ref()
    }

    /// Record an entry that ran to completion.
    pub fn push(&mut self, position: EntryPosition, command: Vec<u8>, outcome: Outcome) {
        self.push_with_writes(position, command, outcome, None, 0);
    }

    /// Record an entry that ran to completion and kept `write_bytes` of store
    /// writes with digest `writes`; a replay must keep the same. The writes
    /// count toward the budget: a replay holds every write since the base in
    /// memory, over the store as it was at the base.
    pub fn push_with_writes(
        &mut self,
        position: EntryPosition,
        command: Vec<u8>,
        outcome: Outcome,
        writes: Option<[u8; 32]>,
        write_bytes: usize,
    ) {
        self.bytes = self
            .bytes
            .saturating_add(command.len() + REPLAY_JOURNAL_ENTRY_OVERHEAD_BYTES)
            .saturating_add(write_bytes);
        self.entries.push(JournalEntry {
            position,
            command,
            outcome,
            writes,
            limits: self.limits,
        });
    }

    /// The entries since the base, oldest first.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// Whether the journal has outgrown its budget, so a new base is due.
    pub fn wants_base(&self) -> bool {
        self.bytes >= self.base_due_at_bytes
    }

    /// Make `snapshot`, the state after `position`, the new base; the
    /// entries it includes are dropped.
    pub fn rebase(&mut self, position: EntryPosition, snapshot: Vec<u8>) {
        self.base_due_at_bytes = budget_bytes(snapshot.len());
        self.base = Some((position, snapshot));
        self.base_limits = self.limits;
        self.entries.clear();
        self.bytes = 0;
    }

    /// Taking a new base failed; the state is `state_bytes` large if known.
    /// The next attempt waits until the journal has grown by another budget:
    /// a state that cannot be snapshotted (too large, too slow) must not
    /// cost a whole snapshot on every entry.
    pub fn base_failed(&mut self, state_bytes: Option<usize>) {
        let base_bytes = self.base.as_ref().map_or(0, |(_, bytes)| bytes.len());
        let state_bytes = state_bytes.unwrap_or(0).max(base_bytes);
        self.base_due_at_bytes = self.bytes + budget_bytes(state_bytes);
    }

    /// A fresh instance holding the base state, restored under the limits
    /// it was taken under.
    fn restore_base(&self, code: &PluginCode) -> Result<PluginInstance, RebuildError> {
        let mut instance = PluginInstance::new(code, self.base_limits)
            .map_err(|fault| RebuildError(fault.to_string()))?;
        if let Some(snapshot) = &self.store_base {
            *instance.store_view_mut() = StoreView::at(snapshot)
                .map_err(|error| RebuildError(format!("reading the store's base: {error}")))?;
        }
        if let Some((position, bytes)) = &self.base {
            instance
                .restore(*position, bytes)
                .map_err(|fault| RebuildError(format!("restoring the base: {fault}")))?
                .map_err(|refusal| RebuildError(format!("restoring the base: {refusal}")))?;
        }
        Ok(instance)
    }

    /// A fresh instance holding the state after the last journaled entry,
    /// running under `limits` from then on.
    pub fn rebuild(
        &self,
        code: &PluginCode,
        limits: PluginLimits,
    ) -> Result<PluginInstance, RebuildError> {
        let mut instance = self.restore_base(code)?;
        replay(&mut instance, &self.entries)?;
        instance.set_limits(limits);
        Ok(instance)
    }
}

/// A new base costs a snapshot of the whole state; a long journal costs
/// replay time. Taking a base once the journal outgrows a multiple of the
/// state keeps the snapshot cost per entry constant however large the state,
/// and a replay proportional to it.
fn budget_bytes(state_bytes: usize) -> usize {
    state_bytes
        .saturating_mul(REPLAY_JOURNAL_BASE_MULTIPLE)
        .clamp(REPLAY_JOURNAL_BYTES_MIN, REPLAY_JOURNAL_BYTES_MAX)
}

/// Apply `entries` to `instance`, each under the limits it first ran
/// under, checking that each ends as it did the first time. The instance
/// runs under its own limits again afterwards.
pub fn replay(instance: &mut PluginInstance, entries: &[JournalEntry]) -> Result<(), RebuildError> {
    let own_limits = instance.limits();
    let replayed = replay_each(instance, entries);
    if instance.limits() != own_limits {
        instance.set_limits(own_limits);
    }
    replayed
}

fn replay_each(
    instance: &mut PluginInstance,
    entries: &[JournalEntry],
) -> Result<(), RebuildError> {
    for entry in entries {
        if instance.limits() != entry.limits {
            instance.set_limits(entry.limits);
        }
        // The response was reported when the entry first applied.
        let replayed = instance.apply(entry.position, &entry.command);
        check_replay(entry, &replayed)?;
        if instance.last_writes_digest() != entry.writes {
            return Err(RebuildError(format!(
                "entry {} wrote other store keys or values on replay than the first time",
                entry.position.index
            )));
        }
    }
    Ok(())
}

/// A replayed entry must end as it first did: with the same outcome, and
/// without a trap. Anything else means the plugin is not deterministic.
pub fn check_replay(
    entry: &JournalEntry,
    replayed: &Result<PluginResult, Fault>,
) -> Result<(), RebuildError> {
    match (Outcome::of(replayed), replayed) {
        (Some(outcome), _) if outcome == entry.outcome => Ok(()),
        (Some(outcome), _) => Err(RebuildError(format!(
            "entry {} ended {outcome:?} on replay, {:?} the first time",
            entry.position.index, entry.outcome
        ))),
        (None, Err(fault)) => Err(RebuildError(format!(
            "entry {} failed on replay ({fault}), {:?} the first time",
            entry.position.index, entry.outcome
        ))),
        (None, Ok(_)) => unreachable!("a completed call always has an outcome"),
    }
}

#[cfg(test)]
mod tests {
    //! Goal: replay accepts exactly the outcome an entry first had, and the
    //! journal asks for a new base once it outgrows its budget.
    use super::*;

    fn entry(outcome: Outcome) -> JournalEntry {
        JournalEntry {
            position: EntryPosition {
                index: 7,
                term: 1,
                time_ms: 0,
            },
            command: b"c".to_vec(),
            outcome,
            writes: None,
            limits: PluginLimits::default(),
        }
    }

    fn oversized() -> Fault {
        Fault::OversizedOutput { bytes: 5, max: 4 }
    }

    #[test]
    fn replay_accepts_the_same_outcome_only() {
        let accepted = Ok(Ok(b"r".to_vec()));
        let rejected = Ok(Err("no".to_string()));
        let too_large = Err(oversized());
        let trapped = Err(Fault::Trapped {
            message: "unreachable".to_string(),
        });
        assert!(check_replay(&entry(Outcome::Accepted), &accepted).is_ok());
        assert!(check_replay(&entry(Outcome::Rejected), &rejected).is_ok());
        assert!(check_replay(&entry(Outcome::OversizedOutput), &too_large).is_ok());
        assert!(check_replay(&entry(Outcome::Accepted), &rejected).is_err());
        assert!(check_replay(&entry(Outcome::OversizedOutput), &accepted).is_err());
        assert!(check_replay(&entry(Outcome::Rejected), &too_large).is_err());
        for outcome in [Outcome::Accepted, Outcome::OversizedOutput] {
            let error = check_replay(&entry(outcome), &trapped).unwrap_err();
            assert!(error.0.contains("entry 7"), "{error}");
        }
    }

    /// Push 1000-byte commands until a base is due; how many it took.
    fn fill_until_due(journal: &mut Journal) -> usize {
        let command = vec![0; 1000];
        let mut pushed = 0;
        while !journal.wants_base() {
            let position = EntryPosition {
                index: journal.entries().len() as u64 + 1,
                term: 1,
                time_ms: 0,
            };
            journal.push(position, command.clone(), Outcome::Accepted);
            pushed += 1;
        }
        pushed
    }

    #[test]
    fn a_new_base_is_due_once_the_journal_outgrows_its_budget() {
        let per_entry = 1000 + REPLAY_JOURNAL_ENTRY_OVERHEAD_BYTES;
        let mut journal = Journal::new(None, PluginLimits::default());
        let pushed = fill_until_due(&mut journal);
        assert_eq!(pushed, REPLAY_JOURNAL_BYTES_MIN.div_ceil(per_entry));
        let last = journal.entries().last().expect("entries").position;
        journal.rebase(last, vec![0; REPLAY_JOURNAL_BYTES_MIN]);
        assert!(journal.entries().is_empty() && !journal.wants_base());
        let budget = REPLAY_JOURNAL_BYTES_MIN * REPLAY_JOURNAL_BASE_MULTIPLE;
        assert_eq!(fill_until_due(&mut journal), budget.div_ceil(per_entry));
    }

    #[test]
    fn after_a_failed_base_the_next_waits_for_another_budget() {
        let per_entry = 1000 + REPLAY_JOURNAL_ENTRY_OVERHEAD_BYTES;
        let mut journal = Journal::new(None, PluginLimits::default());
        let first = fill_until_due(&mut journal);
        journal.base_failed(None);
        assert!(!journal.wants_base(), "retried on the very next entry");
        let second = fill_until_due(&mut journal);
        assert_eq!(second, REPLAY_JOURNAL_BYTES_MIN.div_ceil(per_entry));
        // A state known to be huge waits the largest budget.
        journal.base_failed(Some(usize::MAX / 2));
        let third = fill_until_due(&mut journal);
        assert_eq!(third, REPLAY_JOURNAL_BYTES_MAX.div_ceil(per_entry));
        assert_eq!(journal.entries().len(), first + second + third);
    }

    #[test]
    fn store_writes_count_toward_the_budget() {
        let per_entry = 1000 + REPLAY_JOURNAL_ENTRY_OVERHEAD_BYTES;
        let write_bytes = 9 * per_entry;
        let mut journal = Journal::new(None, PluginLimits::default());
        let mut pushed = 0;
        while !journal.wants_base() {
            let position = EntryPosition {
                index: pushed as u64 + 1,
                term: 1,
                time_ms: 0,
            };
            journal.push_with_writes(
                position,
                vec![0; 1000],
                Outcome::Accepted,
                Some([0; 32]),
                write_bytes,
            );
            pushed += 1;
        }
        let costs = per_entry + write_bytes;
        assert_eq!(pushed, REPLAY_JOURNAL_BYTES_MIN.div_ceil(costs));
    }
}
