//! A linearizability checker for histories of kv plugin operations, as
//! recorded by fault-injection scenarios (in the style of Jepsen and
//! Porcupine): [`Recorder`] collects [`Operation`]s, [`check`] decides.
//!
//! Model: every key is an independent register holding an optional string
//! (linearizability is compositional, so keys are checked one at a time);
//! `put`, `delete`, `cas` and `get` act on it as `plugins/kv` does. An
//! operation that [`Outcome::Failed`] never took effect and is dropped. One
//! whose outcome is [`Outcome::Unknown`] never returns: it may take effect at
//! any moment after its invocation, or never, and its result is unconstrained.
//!
//! Algorithm: Wing & Gong's search with Lowe's just-in-time linearization
//! and memoization, as in Porcupine. Invocations and returns are sorted by
//! time into a linked list. A depth-first search repeatedly takes out
//! ("lifts") a pending invocation whose result fits the register's value,
//! until it meets the return of an operation it has not placed; then it
//! backtracks. A cache of the (set of operations placed, register value)
//! pairs already explored cuts repeated work; operations are numbered by
//! invocation so a set is stored as its short tail past the fully placed
//! prefix. A write of unknown outcome is dropped once every operation that
//! reports or expects its value has returned: placing it later explains
//! nothing. The search is bounded per key ([`Limits`]) and answers
//! [`CheckResult::Undecided`] when a bound is hit.
//!
//! Times are nanoseconds from any origin the whole history shares. At equal
//! times invocations sort before returns, so an operation that returns at
//! the instant another is invoked counts as concurrent with it: ties never
//! produce a false violation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Most search steps (looks at one invocation or return) for one key. A
/// history of a few clients needs a few steps per operation; running out
/// means one key had too many concurrent or unknown-outcome operations to
/// decide. About a second of work in an optimized build.
pub const SEARCH_STEPS_MAX_PER_KEY: u64 = 10_000_000;

/// Most bytes the memo cache of one key may hold (approximately: the sets
/// and values stored, not the hash table's slack). Each new set placed costs
/// one bit per operation on the key.
pub const CACHE_BYTES_MAX_PER_KEY: usize = 256 * 1024 * 1024;

/// Operations shown on each side of the one that could not be linearized.
pub const NEARBY_OPERATIONS: usize = 3;

/// Bounds on the search for one key; [`check`] uses [`Limits::DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most search steps for one key.
    pub search_steps_max: u64,
    /// Most bytes, approximately, of memo cache for one key.
    pub cache_bytes_max: usize,
}

impl Limits {
    /// [`SEARCH_STEPS_MAX_PER_KEY`] and [`CACHE_BYTES_MAX_PER_KEY`].
    pub const DEFAULT: Limits = Limits {
        search_steps_max: SEARCH_STEPS_MAX_PER_KEY,
        cache_bytes_max: CACHE_BYTES_MAX_PER_KEY,
    };
}

/// What a client asked the kv plugin to do, with the kv plugin's JSON shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Set `key` to `value`; answers the previous value.
    Put {
        /// The key written.
        key: String,
        /// The value written.
        value: String,
    },
    /// Remove `key`; answers the previous value.
    Delete {
        /// The key removed.
        key: String,
    },
    /// Set `key` to `value` if it holds `expected` (`None`: absent); answers
    /// whether it swapped and the value after the operation.
    Cas {
        /// The key compared and written.
        key: String,
        /// The value required for the swap; `None` requires the key absent.
        expected: Option<String>,
        /// The value written on a swap.
        value: String,
    },
    /// Read `key` (a linearizable query); answers its value.
    Get {
        /// The key read.
        key: String,
    },
}

/// What the kv plugin answered to a [`Call`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// `put` and `delete`: the value before the operation.
    Previous(Option<String>),
    /// `cas`: whether it swapped, and the value after the operation.
    Swapped {
        /// Whether the value was swapped.
        ok: bool,
        /// The value after the operation.
        current: Option<String>,
    },
    /// `get`: the value read.
    Value(Option<String>),
}

/// How an operation ended, as far as its client knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Took effect, answering this.
    Ok(Output),
    /// Definitely did not take effect (refused before it was proposed).
    Failed,
    /// May or may not have taken effect, at any time after invocation (a
    /// timeout, a broken connection): treated as never returning.
    Unknown,
}

/// One client operation: what was called, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Which client issued it; shown in reports only.
    pub client: u64,
    /// When the client sent it, in nanoseconds from the history's origin.
    pub invoked_ns: u64,
    /// When the client got its answer (or gave up), in nanoseconds from the
    /// history's origin. Required for [`Outcome::Ok`]; ignored otherwise.
    pub completed_ns: Option<u64>,
    /// What was asked.
    pub call: Call,
    /// How it ended.
    pub outcome: Outcome,
}

/// An operation with its position in the history checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedOperation {
    /// Position in the history slice given to [`check`].
    pub index: usize,
    /// The operation.
    pub operation: Operation,
}

/// A history that cannot be checked: a recording mistake, not a
/// linearizability violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The output is of another call's kind (a `get` answered with a swap).
    #[error("operation #{index}: {call} cannot answer {output}")]
    MismatchedOutput {
        /// Position in the history.
        index: usize,
        /// The call.
        call: Call,
        /// The output recorded for it.
        output: Output,
    },
    /// An [`Outcome::Ok`] operation without a completion time.
    #[error("operation #{index} succeeded but has no completion time")]
    MissingCompletion {
        /// Position in the history.
        index: usize,
    },
    /// An operation that completed before it was invoked.
    #[error(
        "operation #{index} completed at {completed_ns} ns, before its invocation at {invoked_ns} ns"
    )]
    CompletedBeforeInvoked {
        /// Position in the history.
        index: usize,
        /// When it was invoked.
        invoked_ns: u64,
        /// When it completed.
        completed_ns: u64,
    },
}

/// The verdict on one key, or on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Some order of the operations, each placed between its invocation and
    /// its return, explains every result.
    Linearizable,
    /// No such order exists.
    Violation(Violation),
    /// The search hit a [`Limits`] bound before deciding.
    Undecided {
        /// The key whose search stopped.
        key: String,
        /// Which bound was hit.
        reason: String,
    },
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key whose history is not linearizable.
    pub key: String,
    /// The operation that could not be placed: the earliest-returning one
    /// pending where the longest consistent partial order got stuck.
    pub first_unlinearizable: IndexedOperation,
    /// How many operations that partial order placed.
    pub partial_linearization_len: usize,
    /// Why the operation could not be placed, in words.
    pub explanation: String,
    /// Operations on the key around it, by invocation time, itself included.
    pub nearby: Vec<IndexedOperation>,
}

/// The verdict on a history: overall and per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The first violation (by completion of the operation that could not be
    /// placed) if any; else the first undecided key if any; else linearizable.
    pub overall: CheckResult,
    /// The verdict on each key.
    pub keys: BTreeMap<String, CheckResult>,
    /// Search steps taken over all keys.
    pub search_steps: u64,
}

/// Check `history` with [`Limits::DEFAULT`].
pub fn check(history: &[Operation]) -> Result<Report, HistoryError> {
    check_with_limits(history, Limits::DEFAULT)
}

/// Check `history`, each key on its own, within `limits` per key.
pub fn check_with_limits(history: &[Operation], limits: Limits) -> Result<Report, HistoryError> {
    validate(history)?;
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, operation) in history.iter().enumerate() {
        by_key.entry(operation.call.key()).or_default().push(index);
    }
    let mut keys = BTreeMap::new();
    let mut search_steps = 0;
    for (key, indices) in by_key {
        let (result, steps) = check_key(history, key, &indices, limits);
        search_steps += steps;
        keys.insert(key.to_string(), result);
    }
    Ok(Report {
        overall: overall(&keys),
        keys,
        search_steps,
    })
}

/// Check `history` and panic, printing the verdict, unless it is
/// linearizable (an undecided history fails too: it was not shown correct).
/// Write the history to a file first (see [`write_history`]) to keep it.
pub fn assert_linearizable(history: &[Operation]) -> Report {
    let report = check(history).unwrap_or_else(|error| panic!("malformed history: {error}"));
    assert!(
        report.overall == CheckResult::Linearizable,
        "history of {} operations: {report}",
        history.len()
    );
    report
}

impl Call {
    /// The key the call acts on.
    pub fn key(&self) -> &str {
        match self {
            Call::Put { key, .. }
            | Call::Delete { key }
            | Call::Cas { key, .. }
            | Call::Get { key } => key,
        }
    }

    /// Whether the call is a query (`get`) rather than a command to apply.
    pub fn is_query(&self) -> bool {
        matches!(self, Call::Get { .. })
    }

    /// The kv plugin's encoding of the call: a command for `apply`, or for a
    /// `get` a query (see [`Call::is_query`]).
    pub fn request(&self) -> Vec<u8> {
        let request = match self {
            Call::Put { key, value } => json!({"put": {"key": key, "value": value}}),
            Call::Delete { key } => json!({"delete": {"key": key}}),
            Call::Cas {
                key,
                expected,
                value,
            } => json!({"cas": {"key": key, "expected": expected, "value": value}}),
            Call::Get { key } => json!({"get": {"key": key}}),
        };
        request.to_string().into_bytes()
    }

    /// The kv plugin's JSON answer to this call as an [`Output`], or `None`
    /// if it is not the answer this call gets.
    pub fn parse_response(&self, response: &Value) -> Option<Output> {
        match self {
            Call::Put { .. } | Call::Delete { .. } => {
                optional_string(response.get("prev")?).map(Output::Previous)
            }
            Call::Cas { .. } => Some(Output::Swapped {
                ok: response.get("ok")?.as_bool()?,
                current: optional_string(response.get("current")?)?,
            }),
            Call::Get { .. } => optional_string(response.get("value")?).map(Output::Value),
        }
    }
}

/// A JSON string or null as an optional string.
fn optional_string(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(string) => Some(Some(string.clone())),
        _ => None,
    }
}

impl Output {
    /// Whether this is the kind of answer `call` gets.
    fn answers(&self, call: &Call) -> bool {
        matches!(
            (call, self),
            (Call::Put { .. } | Call::Delete { .. }, Output::Previous(_))
                | (Call::Cas { .. }, Output::Swapped { .. })
                | (Call::Get { .. }, Output::Value(_))
        )
    }
}

/// Records operations from concurrent clients as they happen. Clones share
/// one history. Times are read from the monotonic clock, relative to the
/// origin given, so several recorders (or a fault schedule) can share it.
#[derive(Clone, Debug)]
pub struct Recorder {
    origin: Instant,
    finished: Arc<Mutex<Vec<Operation>>>,
}

/// An operation sent and not yet answered. Finish it with [`Invocation::ok`],
/// [`Invocation::failed`] or [`Invocation::unknown`]; one dropped unfinished
/// (its task cancelled or panicking) is recorded as [`Outcome::Unknown`].
#[derive(Debug)]
#[must_use = "finish the invocation with ok, failed or unknown"]
pub struct Invocation {
    recorder: Recorder,
    operation: Option<Operation>,
}

impl Recorder {
    /// A recorder whose times are nanoseconds since `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            finished: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Note that `client` sends `call` now; call just before sending.
    pub fn invoke(&self, client: u64, call: Call) -> Invocation {
        Invocation {
            recorder: self.clone(),
            operation: Some(Operation {
                client,
                invoked_ns: self.now_ns(),
                completed_ns: None,
                call,
                outcome: Outcome::Unknown,
            }),
        }
    }

    /// Every operation finished (or abandoned) so far, by invocation time.
    pub fn history(&self) -> Vec<Operation> {
        // A client task that panicked while holding the lock poisons it;
        // the operations recorded before are still worth checking.
        let finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        let mut history = finished.clone();
        history.sort_by_key(|operation| operation.invoked_ns);
        history
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Invocation {
    /// The operation took effect and answered `output`; call as soon as the
    /// answer arrives.
    pub fn ok(mut self, output: Output) {
        self.finish(Outcome::Ok(output));
    }

    /// The operation definitely did not take effect.
    pub fn failed(mut self) {
        self.finish(Outcome::Failed);
    }

    /// The operation may or may not have taken effect.
    pub fn unknown(mut self) {
        self.finish(Outcome::Unknown);
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(mut operation) = self.operation.take() {
            operation.completed_ns = Some(self.recorder.now_ns());
            operation.outcome = outcome;
            let mut finished = self
                .recorder
                .finished
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            finished.push(operation);
        }
    }
}

impl Drop for Invocation {
    fn drop(&mut self) {
        self.finish(Outcome::Unknown);
    }
}

/// Write `history` to `path` as JSON Lines: one [`Operation`] per line.
pub fn write_history(path: &Path, history: &[Operation]) -> anyhow::Result<()> {
    let file = fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut writer = BufWriter::new(file);
    for operation in history {
        serde_json::to_writer(&mut writer, operation)
            .with_context(|| format!("write {}", path.display()))?;
        writer
            .write_all(b"\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    writer
        .flush()
        .with_context(|| format!("write {}", path.display()))
}

/// Read a history written by [`write_history`]; blank lines are skipped.
pub fn read_history(path: &Path) -> anyhow::Result<Vec<Operation>> {
    let file = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut history = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let operation = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}", path.display(), number + 1))?;
        history.push(operation);
    }
    Ok(history)
}

/// Reject histories the checker cannot interpret.
fn validate(history: &[Operation]) -> Result<(), HistoryError> {
    for (index, operation) in history.iter().enumerate() {
        let Outcome::Ok(output) = &operation.outcome else {
            continue;
        };
        if !output.answers(&operation.call) {
            return Err(HistoryError::MismatchedOutput {
                index,
                call: operation.call.clone(),
                output: output.clone(),
            });
        }
        let Some(completed_ns) = operation.completed_ns else {
            return Err(HistoryError::MissingCompletion { index });
        };
        if completed_ns < operation.invoked_ns {
            return Err(HistoryError::CompletedBeforeInvoked {
                index,
                invoked_ns: operation.invoked_ns,
                completed_ns,
            });
        }
    }
    Ok(())
}

/// The verdict on a history from the verdicts on its keys.
fn overall(keys: &BTreeMap<String, CheckResult>) -> CheckResult {
    let first_violation = keys
        .values()
        .filter_map(|result| match result {
            CheckResult::Violation(violation) => Some(violation),
            _ => None,
        })
        .min_by_key(|violation| {
            let stuck = &violation.first_unlinearizable;
            (stuck.operation.completed_ns, stuck.index)
        });
    if let Some(violation) = first_violation {
        return CheckResult::Violation(violation.clone());
    }
    keys.values()
        .find(|result| matches!(result, CheckResult::Undecided { .. }))
        .cloned()
        .unwrap_or(CheckResult::Linearizable)
}

/// Check the operations on `key` (at `indices` in `history`); also returns
/// the search steps taken.
fn check_key(
    history: &[Operation],
    key: &str,
    indices: &[usize],
    limits: Limits,
) -> (CheckResult, u64) {
    let model = KeyModel::new(history, indices);
    let mut search = Search::new(&model.operations);
    let result = match search.run(limits) {
        SearchOutcome::Linearizable => CheckResult::Linearizable,
        SearchOutcome::Exhausted(mut reason) => {
            if let Some(stuck) = search.deepest {
                let index = model.operations[stuck.operation].index;
                reason.push_str(&format!(
                    "; furthest order found: {} operations, then no way to place #{index}",
                    stuck.depth
                ));
            }
            CheckResult::Undecided {
                key: key.to_string(),
                reason,
            }
        }
        SearchOutcome::Stuck(stuck) => {
            CheckResult::Violation(model.violation(history, key, indices, &stuck))
        }
    };
    (result, search.steps)
}

/// A value of one key, interned: the search compares small integers.
type ValueId = usize;

/// The register's content: a value, or absent.
type Register = Option<ValueId>;

/// What an operation does to the register.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Put(ValueId),
    Delete,
    Cas { expected: Register, value: ValueId },
    Get,
}

/// What an operation reported, interned like the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Observation {
    Previous(Register),
    Swapped { ok: bool, current: Register },
    Value(Register),
}

/// Until when an operation may be placed.
#[derive(Clone, Copy, Debug)]
enum End {
    /// It returned at this time: it is placed by then.
    Returns(u64),
    /// Its outcome is unknown, and placing it after this time could explain
    /// nothing more (see [`bound_unknown_writes`]): dropped there.
    RelevantUntil(u64),
    /// Its outcome is unknown; it may be placed at any time.
    Never,
}

/// One operation as the search sees it.
#[derive(Clone, Copy, Debug)]
struct RegisterOperation {
    /// Position in the whole history.
    index: usize,
    effect: Effect,
    /// `None`: the result is unconstrained (outcome unknown).
    observed: Option<Observation>,
    invoked_ns: u64,
    end: End,
}

impl RegisterOperation {
    /// The register after this operation applied to `register`, or `None`
    /// if the operation could not have reported what it did.
    fn step(&self, register: Register) -> Option<Register> {
        let (after, observation) = match self.effect {
            Effect::Put(value) => (Some(value), Observation::Previous(register)),
            Effect::Delete => (None, Observation::Previous(register)),
            Effect::Cas { expected, value } => {
                let ok = register == expected;
                let after = if ok { Some(value) } else { register };
                let current = after;
                (after, Observation::Swapped { ok, current })
            }
            Effect::Get => (register, Observation::Value(register)),
        };
        match self.observed {
            Some(observed) if observed != observation => None,
            _ => Some(after),
        }
    }

    fn returns(&self) -> bool {
        matches!(self.end, End::Returns(_))
    }

    /// The value it writes, if it writes (a cas only if it swaps).
    fn written(&self) -> Option<Register> {
        match self.effect {
            Effect::Put(value) | Effect::Cas { value, .. } => Some(Some(value)),
            Effect::Delete => Some(None),
            Effect::Get => None,
        }
    }

    /// The values its result reports or its call expects.
    fn mentioned(&self) -> impl Iterator<Item = Register> {
        let reported = self.observed.map(|observed| match observed {
            Observation::Previous(register)
            | Observation::Value(register)
            | Observation::Swapped {
                current: register, ..
            } => register,
        });
        let expected = match self.effect {
            Effect::Cas { expected, .. } => Some(expected),
            _ => None,
        };
        reported.into_iter().chain(expected)
    }
}

/// Which operations mention a value: when the last one that returned did,
/// and whether one of unknown outcome does.
#[derive(Clone, Copy, Debug, Default)]
struct Mentions {
    last_returned_ns: Option<u64>,
    by_unknown: bool,
}

/// Bound when each write of unknown outcome may be placed. Say one writes
/// `w` and is placed after every operation that mentions `w` (reports it or
/// expects it in a cas), none of them of unknown outcome. Up to the next
/// write, an operation placed either mentions `w`, and there is none left,
/// or is a cas of unknown outcome that does not swap, which can be left out
/// too. The next write cannot mention `w` either, so it is a put or delete of
/// unknown outcome, whose effect does not depend on `w`. Taking the write
/// out leaves an order just as valid. So a write of `w` is dropped once the
/// last operation mentioning `w` returned, left out if that was before its
/// invocation or none does, and kept to the end if an operation of unknown
/// outcome (a cas) expects `w`.
fn bound_unknown_writes(operations: &mut Vec<RegisterOperation>) {
    let mut mentions: HashMap<Register, Mentions> = HashMap::new();
    for operation in operations.iter() {
        for register in operation.mentioned() {
            let mention = mentions.entry(register).or_default();
            match operation.end {
                End::Returns(returned_ns) => {
                    mention.last_returned_ns = mention.last_returned_ns.max(Some(returned_ns));
                }
                End::RelevantUntil(_) | End::Never => mention.by_unknown = true,
            }
        }
    }
    operations.retain_mut(|operation| {
        let (End::Never, Some(written)) = (operation.end, operation.written()) else {
            return true;
        };
        let mention = mentions.get(&written).copied().unwrap_or_default();
        if mention.by_unknown {
            return true;
        }
        match mention.last_returned_ns {
            Some(last_ns) if last_ns >= operation.invoked_ns => {
                operation.end = End::RelevantUntil(last_ns);
                true
            }
            _ => false,
        }
    });
}

/// The register operations of one key and its interned values.
struct KeyModel<'h> {
    /// By invocation time, so the placed ones are mostly a prefix.
    operations: Vec<RegisterOperation>,
    /// `ValueId` → value.
    values: Vec<&'h str>,
}

impl<'h> KeyModel<'h> {
    /// Failed operations, and reads of unknown outcome, are left out: they
    /// neither change the register nor constrain it.
    fn new(history: &'h [Operation], indices: &[usize]) -> Self {
        let mut interner = Interner::default();
        let mut operations: Vec<RegisterOperation> = indices
            .iter()
            .filter_map(|&index| {
                let operation = history.get(index)?;
                let (observed, end) = match (&operation.outcome, operation.completed_ns) {
                    (Outcome::Failed, _) => return None,
                    (Outcome::Unknown, _) if operation.call.is_query() => return None,
                    (Outcome::Unknown, _) | (Outcome::Ok(_), None) => (None, End::Never),
                    (Outcome::Ok(output), Some(completed_ns)) => (
                        Some(interner.observation(output)),
                        End::Returns(completed_ns),
                    ),
                };
                Some(RegisterOperation {
                    index,
                    effect: interner.effect(&operation.call),
                    observed,
                    invoked_ns: operation.invoked_ns,
                    end,
                })
            })
            .collect();
        bound_unknown_writes(&mut operations);
        operations.sort_by_key(|operation| (operation.invoked_ns, operation.index));
        Self {
            operations,
            values: interner.values,
        }
    }

    /// Describe where the search for `key` got stuck.
    fn violation(
        &self,
        history: &[Operation],
        key: &str,
        indices: &[usize],
        stuck: &Stuck,
    ) -> Violation {
        let register_operation = &self.operations[stuck.operation];
        let index = register_operation.index;
        let operation = history[index].clone();
        let held = show(stuck.register.and_then(|id| self.values.get(id).copied()));
        let depth = stuck.depth;
        let explanation = if register_operation.step(stuck.register).is_some() {
            format!(
                "its result fits the value {held} the longest consistent order found \
                 ({depth} operations) leaves, but no operation that returned after it \
                 can then be placed"
            )
        } else {
            format!(
                "no order of the operations before its return explains every result up to \
                 it: in the longest consistent order found ({depth} operations) the key held \
                 {held} when it had to take effect, but {}",
                requirement(&operation)
            )
        };
        Violation {
            key: key.to_string(),
            first_unlinearizable: IndexedOperation { index, operation },
            partial_linearization_len: depth,
            explanation,
            nearby: nearby(history, indices, index),
        }
    }
}

/// What an operation's result says about the value it found, in words.
fn requirement(operation: &Operation) -> String {
    match (&operation.call, &operation.outcome) {
        (_, Outcome::Ok(Output::Value(value))) => format!("it read {}", show(value.as_deref())),
        (_, Outcome::Ok(Output::Previous(previous))) => {
            format!(
                "it reported the previous value {}",
                show(previous.as_deref())
            )
        }
        (Call::Cas { expected, .. }, Outcome::Ok(Output::Swapped { ok: true, .. })) => {
            format!("it swapped, which needs {}", show(expected.as_deref()))
        }
        (_, Outcome::Ok(Output::Swapped { current, .. })) => {
            format!("it did not swap and reported {}", show(current.as_deref()))
        }
        _ => "its result does not fit".to_string(),
    }
}

/// The operations of a key around the one at `index`, by invocation time.
fn nearby(history: &[Operation], indices: &[usize], index: usize) -> Vec<IndexedOperation> {
    let mut by_time = indices.to_vec();
    by_time.sort_by_key(|&other| (history[other].invoked_ns, other));
    let position = by_time
        .iter()
        .position(|&other| other == index)
        .unwrap_or(0);
    let start = position.saturating_sub(NEARBY_OPERATIONS);
    let end = by_time.len().min(position + NEARBY_OPERATIONS + 1);
    by_time[start..end]
        .iter()
        .map(|&other| IndexedOperation {
            index: other,
            operation: history[other].clone(),
        })
        .collect()
}

/// Gives each distinct value of a key a small integer.
#[derive(Default)]
struct Interner<'h> {
    ids: HashMap<&'h str, ValueId>,
    values: Vec<&'h str>,
}

impl<'h> Interner<'h> {
    fn id(&mut self, value: &'h str) -> ValueId {
        *self.ids.entry(value).or_insert_with(|| {
            self.values.push(value);
            self.values.len() - 1
        })
    }

    fn register(&mut self, value: &'h Option<String>) -> Register {
        value.as_deref().map(|value| self.id(value))
    }

    fn effect(&mut self, call: &'h Call) -> Effect {
        match call {
            Call::Put { value, .. } => Effect::Put(self.id(value)),
            Call::Delete { .. } => Effect::Delete,
            Call::Cas {
                expected, value, ..
            } => Effect::Cas {
                expected: self.register(expected),
                value: self.id(value),
            },
            Call::Get { .. } => Effect::Get,
        }
    }

    fn observation(&mut self, output: &'h Output) -> Observation {
        match output {
            Output::Previous(previous) => Observation::Previous(self.register(previous)),
            Output::Swapped { ok, current } => Observation::Swapped {
                ok: *ok,
                current: self.register(current),
            },
            Output::Value(value) => Observation::Value(self.register(value)),
        }
    }
}

/// A point in time where an operation (its index into the key's
/// operations) is invoked, returns, or stops being relevant.
#[derive(Clone, Copy, Debug)]
enum Event {
    Invoke(usize),
    Return(usize),
    Deadline(usize),
}

/// No node: the end of the list.
const END: usize = usize::MAX;

/// Events by time in a doubly linked list that operations can be lifted out
/// of and put back into in reverse order (as in dancing links). Nodes are
/// event positions; the head is an extra node after the last event.
struct EntryList {
    events: Vec<Event>,
    next: Vec<usize>,
    previous: Vec<usize>,
    invoke_node: Vec<usize>,
    /// The node of each operation's return or deadline, if any.
    end_node: Vec<Option<usize>>,
}

impl EntryList {
    fn new(operations: &[RegisterOperation]) -> Self {
        // At equal times: invocations, then returns, then deadlines (after
        // the returns they wait for).
        let mut timed = Vec::with_capacity(operations.len() * 2);
        for (id, operation) in operations.iter().enumerate() {
            timed.push((operation.invoked_ns, 0, id, Event::Invoke(id)));
            match operation.end {
                End::Returns(time_ns) => timed.push((time_ns, 1, id, Event::Return(id))),
                End::RelevantUntil(time_ns) => timed.push((time_ns, 2, id, Event::Deadline(id))),
                End::Never => {}
            }
        }
        timed.sort_unstable_by_key(|&(time_ns, rank, id, _)| (time_ns, rank, id));
        let events: Vec<Event> = timed.into_iter().map(|(.., event)| event).collect();
        let head = events.len();
        // head -> 0 -> 1 -> ... -> head - 1 -> END.
        let next = (0..=head)
            .map(|node| match node {
                _ if node == head && head > 0 => 0,
                _ if node + 1 < head => node + 1,
                _ => END,
            })
            .collect();
        let previous = (0..=head)
            .map(|node| if node == 0 { head } else { node - 1 })
            .collect();
        let mut invoke_node = vec![head; operations.len()];
        let mut end_node = vec![None; operations.len()];
        for (node, event) in events.iter().enumerate() {
            match *event {
                Event::Invoke(id) => invoke_node[id] = node,
                Event::Return(id) | Event::Deadline(id) => end_node[id] = Some(node),
            }
        }
        Self {
            events,
            next,
            previous,
            invoke_node,
            end_node,
        }
    }

    fn first(&self) -> usize {
        self.next[self.events.len()]
    }

    fn event(&self, node: usize) -> Option<Event> {
        self.events.get(node).copied()
    }

    fn unlink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = next;
        if next != END {
            self.previous[next] = previous;
        }
    }

    /// Undo [`Self::unlink`]: the node still knows its neighbours.
    fn relink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = node;
        if next != END {
            self.previous[next] = node;
        }
    }

    fn lift(&mut self, id: usize) {
        self.unlink(self.invoke_node[id]);
        if let Some(node) = self.end_node[id] {
            self.unlink(node);
        }
    }

    fn unlift(&mut self, id: usize) {
        if let Some(node) = self.end_node[id] {
            self.relink(node);
        }
        self.relink(self.invoke_node[id]);
    }
}

/// Which operations of a key are placed, one bit each, with the bounds of
/// its short form kept up to date.
struct Bitset {
    words: Vec<u64>,
    /// Leading words with every bit set.
    full: usize,
    /// One past the last word with a bit set (at least `full`).
    end: usize,
}

impl Bitset {
    fn new(bits: usize) -> Self {
        Self {
            words: vec![0; bits.div_ceil(64)],
            full: 0,
            end: 0,
        }
    }

    fn set(&mut self, bit: usize) {
        let word = bit / 64;
        self.words[word] |= 1 << (bit % 64);
        self.end = self.end.max(word + 1);
        while self.words.get(self.full) == Some(&u64::MAX) {
            self.full += 1;
        }
    }

    fn clear(&mut self, bit: usize) {
        let word = bit / 64;
        self.words[word] &= !(1 << (bit % 64));
        self.full = self.full.min(word);
        while self.end > self.full && self.words[self.end - 1] == 0 {
            self.end -= 1;
        }
    }

    /// The set in a canonical short form: the number of full words, then the
    /// words up to the last one with a bit set. Operations are numbered by
    /// invocation, so this is about as long as the window of pending ones
    /// rather than the whole history.
    fn short_form(&self, into: &mut Vec<u64>) {
        into.clear();
        into.push(self.full as u64);
        into.extend_from_slice(&self.words[self.full..self.end]);
    }
}

/// Bytes the cache counts for a new set, besides the set's own words.
const CACHE_ENTRY_OVERHEAD_BYTES: usize =
    size_of::<Vec<u64>>() + size_of::<Vec<Register>>() + size_of::<Register>();

/// The (placed set, register) pairs already explored.
#[derive(Default)]
struct Cache {
    seen: HashMap<Vec<u64>, Vec<Register>>,
    /// The short form looked up, kept to save an allocation per step.
    key: Vec<u64>,
    bytes: usize,
}

impl Cache {
    /// Remember the pair; `false` if it was already there.
    fn insert(&mut self, placed: &Bitset, register: Register) -> bool {
        placed.short_form(&mut self.key);
        if let Some(registers) = self.seen.get_mut(self.key.as_slice()) {
            if registers.contains(&register) {
                return false;
            }
            registers.push(register);
            self.bytes += size_of::<Register>();
            return true;
        }
        self.bytes += size_of_val(self.key.as_slice()) + CACHE_ENTRY_OVERHEAD_BYTES;
        self.seen.insert(self.key.clone(), vec![register]);
        true
    }
}

/// An operation placed (or dropped at its deadline), and the register
/// before it.
struct Frame {
    id: usize,
    register_before: Register,
    dropped: bool,
}

/// Where a search could go no further: the return of `operation` was
/// reached with `depth` operations placed and the register at `register`.
#[derive(Clone, Copy, Debug)]
struct Stuck {
    operation: usize,
    depth: usize,
    register: Register,
}

enum SearchOutcome {
    Linearizable,
    /// The deepest place the search got stuck.
    Stuck(Stuck),
    /// A bound was hit; why.
    Exhausted(String),
}

/// The depth-first search over one key's events.
struct Search<'k> {
    operations: &'k [RegisterOperation],
    entries: EntryList,
    placed: Bitset,
    cache: Cache,
    stack: Vec<Frame>,
    /// Frames on the stack that dropped an operation rather than placed it.
    dropped: usize,
    register: Register,
    /// Operations that return and are not placed yet; done at zero.
    returning_left: usize,
    steps: u64,
    deepest: Option<Stuck>,
}

impl<'k> Search<'k> {
    fn new(operations: &'k [RegisterOperation]) -> Self {
        Self {
            operations,
            entries: EntryList::new(operations),
            placed: Bitset::new(operations.len()),
            cache: Cache::default(),
            stack: Vec::new(),
            dropped: 0,
            register: None,
            returning_left: operations.iter().filter(|op| op.returns()).count(),
            steps: 0,
            deepest: None,
        }
    }

    /// Search until every returning operation is placed (operations of
    /// unknown outcome still pending are left out: they never took effect),
    /// every order is ruled out, or a bound is hit.
    fn run(&mut self, limits: Limits) -> SearchOutcome {
        let mut node = self.entries.first();
        while self.returning_left > 0 {
            self.steps += 1;
            if self.steps > limits.search_steps_max {
                return SearchOutcome::Exhausted(format!(
                    "search stopped after {} steps",
                    limits.search_steps_max
                ));
            }
            if self.cache.bytes > limits.cache_bytes_max {
                return SearchOutcome::Exhausted(format!(
                    "search stopped with {} bytes of memo cache after {} steps",
                    self.cache.bytes, self.steps
                ));
            }
            // While a returning operation is unplaced its return is in the
            // list, so the walk meets it before the end.
            let Some(event) = self.entries.event(node) else {
                unreachable!("walked past every pending return");
            };
            let next = match event {
                Event::Invoke(id) => Some(self.try_place(id, node)),
                Event::Deadline(id) => self.try_drop(id),
                Event::Return(id) => {
                    self.note_stuck(id);
                    None
                }
            };
            node = match next.or_else(|| self.backtrack()) {
                Some(node) => node,
                None => return self.stuck(),
            };
        }
        SearchOutcome::Linearizable
    }

    /// Place operation `id` (its invocation at `node`) next if its result
    /// fits and the state it leads to is new; returns the node to look at.
    fn try_place(&mut self, id: usize, node: usize) -> usize {
        let operation = &self.operations[id];
        if let Some(after) = operation.step(self.register) {
            self.placed.set(id);
            if self.cache.insert(&self.placed, after) {
                self.push(id, after, false);
                return self.entries.first();
            }
            self.placed.clear(id);
        }
        self.entries.next[node]
    }

    /// Drop operation `id` at its deadline unless the state that leads to
    /// was seen; returns the node to look at, or `None` to backtrack.
    fn try_drop(&mut self, id: usize) -> Option<usize> {
        self.placed.set(id);
        if self.cache.insert(&self.placed, self.register) {
            self.push(id, self.register, true);
            return Some(self.entries.first());
        }
        self.placed.clear(id);
        None
    }

    /// Record operation `id` (its bit already set) as placed or dropped,
    /// leaving the register at `after`.
    fn push(&mut self, id: usize, after: Register, dropped: bool) {
        self.stack.push(Frame {
            id,
            register_before: self.register,
            dropped,
        });
        self.register = after;
        self.entries.lift(id);
        self.dropped += usize::from(dropped);
        if self.operations[id].returns() {
            self.returning_left -= 1;
        }
    }

    /// Take back placements up to the last one with an alternative left;
    /// returns the node after its invocation, or `None` if there is none.
    /// A dropped operation has no alternative: keeping it pending past its
    /// deadline would only repeat the orders explored without it.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let frame = self.stack.pop()?;
            self.entries.unlift(frame.id);
            self.placed.clear(frame.id);
            self.register = frame.register_before;
            self.dropped -= usize::from(frame.dropped);
            if self.operations[frame.id].returns() {
                self.returning_left += 1;
            }
            if !frame.dropped {
                return Some(self.entries.next[self.entries.invoke_node[frame.id]]);
            }
        }
    }

    fn note_stuck(&mut self, id: usize) {
        let depth = self.stack.len() - self.dropped;
        if self.deepest.is_none_or(|deepest| depth > deepest.depth) {
            self.deepest = Some(Stuck {
                operation: id,
                depth,
                register: self.register,
            });
        }
    }

    fn stuck(&self) -> SearchOutcome {
        match self.deepest {
            Some(stuck) => SearchOutcome::Stuck(stuck),
            // Every failed branch ends at a return, which is noted.
            None => unreachable!("the search gave up without meeting a return"),
        }
    }
}

/// A value as shown to people: quoted, or `absent`.
fn show(value: Option<&str>) -> String {
    match value {
        Some(value) => format!("{value:?}"),
        None => "absent".to_string(),
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Put { key, value } => write!(f, "put({key:?}, {value:?})"),
            Call::Delete { key } => write!(f, "delete({key:?})"),
            Call::Cas {
                key,
                expected,
                value,
            } => write!(f, "cas({key:?}, {}, {value:?})", show(expected.as_deref())),
            Call::Get { key } => write!(f, "get({key:?})"),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Previous(previous) => write!(f, "previous {}", show(previous.as_deref())),
            Output::Swapped { ok, current } => {
                let swapped = if *ok { "swapped" } else { "not swapped" };
                write!(f, "{swapped}, now {}", show(current.as_deref()))
            }
            Output::Value(value) => write!(f, "{}", show(value.as_deref())),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(output) => write!(f, "{output}"),
            Outcome::Failed => write!(f, "failed"),
            Outcome::Unknown => write!(f, "unknown"),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed = match self.completed_ns {
            Some(completed_ns) => format!("{completed_ns} ns"),
            None => "-".to_string(),
        };
        write!(
            f,
            "client {} [{} ns, {completed}] {} -> {}",
            self.client, self.invoked_ns, self.call, self.outcome
        )
    }
}

impl fmt::Display for IndexedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.index, self.operation)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stuck = &self.first_unlinearizable;
        writeln!(
            f,
            "key {:?}: operation #{} cannot be linearized (longest consistent order: {} operations)",
            self.key, stuck.index, self.partial_linearization_len
        )?;
        writeln!(f, "  {stuck}")?;
        writeln!(f, "  {}", self.explanation)?;
        write!(f, "  operations on {:?} by invocation time:", self.key)?;
        for operation in &self.nearby {
            let marker = if operation.index == stuck.index {
                ">>"
            } else {
                "  "
            };
            write!(f, "\n  {marker} {operation}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Linearizable => write!(f, "linearizable"),
            CheckResult::Violation(violation) => write!(f, "not linearizable: {violation}"),
            CheckResult::Undecided { key, reason } => write!(f, "undecided: key {key:?}: {reason}"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys, {} search steps: {}",
            self.keys.len(),
            self.search_steps,
            self.overall
        )
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the checker accepts every history a linearizable kv store can
    //! produce (concurrency, failures, unknown outcomes) and rejects stale
    //! reads, lost writes, reads going back in time and impossible swaps,
    //! naming the operation at fault.
    use super::*;

    fn put(key: &str, value: &str) -> Call {
        Call::Put {
            key: key.to_string(),
            value: value.to_string(),
        }
    }

    fn delete(key: &str) -> Call {
        Call::Delete {
            key: key.to_string(),
        }
    }

    fn cas(key: &str, expected: Option<&str>, value: &str) -> Call {
        Call::Cas {
            key: key.to_string(),
            expected: expected.map(str::to_string),
            value: value.to_string(),
        }
    }

    fn get(key: &str) -> Call {
        Call::Get {
            key: key.to_string(),
        }
    }

    fn previous(value: Option<&str>) -> Output {
        Output::Previous(value.map(str::to_string))
    }

    fn swapped(ok: bool, current: Option<&str>) -> Output {
        Output::Swapped {
            ok,
            current: current.map(str::to_string),
        }
    }

    fn read(value: Option<&str>) -> Output {
        Output::Value(value.map(str::to_string))
    }

    /// An operation by `client` over `[invoked_ns, completed_ns]` that
    /// answered `output`.
    fn ok(client: u64, span_ns: (u64, u64), call: Call, output: Output) -> Operation {
        Operation {
            client,
            invoked_ns: span_ns.0,
            completed_ns: Some(span_ns.1),
            call,
            outcome: Outcome::Ok(output),
        }
    }

    fn failed(client: u64, span_ns: (u64, u64), call: Call) -> Operation {
        Operation {
            client,
            invoked_ns: span_ns.0,
            completed_ns: Some(span_ns.1),
            call,
            outcome: Outcome::Failed,
        }
    }

    fn unknown(client: u64, invoked_ns: u64, call: Call) -> Operation {
        Operation {
            client,
            invoked_ns,
            completed_ns: None,
            call,
            outcome: Outcome::Unknown,
        }
    }

    fn verdict(history: &[Operation]) -> CheckResult {
        check(history).expect("a well-formed history").overall
    }

    /// The violation found in `history`, with the index of the operation
    /// that could not be placed.
    fn violation(history: &[Operation]) -> Violation {
        match verdict(history) {
            CheckResult::Violation(violation) => violation,
            other => panic!("expected a violation, got {other}"),
        }
    }

    #[test]
    fn sequential_valid_history_passes() {
        // Goal: one client's operations, each seeing the one before, pass.
        let history = [
            ok(1, (0, 10), get("k"), read(None)),
            ok(1, (20, 30), put("k", "a"), previous(None)),
            ok(1, (40, 50), put("k", "b"), previous(Some("a"))),
            ok(1, (60, 70), get("k"), read(Some("b"))),
            ok(
                1,
                (80, 90),
                cas("k", Some("b"), "c"),
                swapped(true, Some("c")),
            ),
            ok(
                1,
                (100, 110),
                cas("k", Some("b"), "d"),
                swapped(false, Some("c")),
            ),
            ok(1, (120, 130), delete("k"), previous(Some("c"))),
            ok(1, (140, 150), delete("k"), previous(None)),
            ok(1, (160, 170), cas("k", None, "e"), swapped(true, Some("e"))),
            ok(1, (180, 190), get("k"), read(Some("e"))),
        ];
        assert_eq!(verdict(&history), CheckResult::Linearizable);
    }

    #[test]
    fn overlapping_put_and_get_may_be_ordered_either_way() {
        // Goal: a read concurrent with a put may see the old or new value.
        for seen in [Some("old"), Some("new")] {
            let history = [
                ok(1, (0, 10), put("k", "old"), previous(None)),
                ok(1, (20, 60), put("k", "new"), previous(Some("old"))),
                ok(2, (30, 50), get("k"), read(seen)),
            ];
            assert_eq!(verdict(&history), CheckResult::Linearizable, "{seen:?}");
        }
    }

    #[test]
    fn touching_intervals_count_as_concurrent() {
        // Goal: a read invoked at the instant a put returns may precede it.
        let history = [
            ok(1, (0, 10), put("k", "a"), previous(None)),
            ok(2, (10, 20), get("k"), read(None)),
        ];
        assert_eq!(verdict(&history), CheckResult::Linearizable);
    }

    #[test]
    fn stale_read_is_a_violation() {
        // Goal: a read that starts after a put completed must see it.
        let history = [
            ok(1, (0, 10), put("k", "old"), previous(None)),
            ok(1, (20, 30), put("k", "new"), previous(Some("old"))),
            ok(2, (40, 50), get("k"), read(Some("old"))),
        ];
        let violation = violation(&history);
        assert_eq!(violation.key, "k");
        assert_eq!(violation.first_unlinearizable.index, 2);
        assert_eq!(violation.partial_linearization_len, 2);
        assert!(
            violation.explanation.contains("held \"new\"")
                && violation.explanation.contains("it read \"old\""),
            "{}",
            violation.explanation
        );
    }

    #[test]
    fn lost_acknowledged_write_is_a_violation() {
        // Goal: an acknowledged put must be visible to every later read.
        for seen in [None, Some("older")] {
            let mut history = vec![
                ok(1, (20, 30), put("k", "acknowledged"), previous(seen)),
                ok(2, (40, 50), get("k"), read(seen)),
            ];
            if seen.is_some() {
                history.insert(0, ok(1, (0, 10), put("k", "older"), previous(None)));
            }
            let violation = violation(&history);
            assert_eq!(violation.first_unlinearizable.index, history.len() - 1);
        }
    }

    #[test]
    fn read_going_back_in_time_is_a_violation() {
        // Goal: once a read saw the new value, a later read may not see the
        // old one, even while the put is still in flight.
        let history = [
            ok(1, (0, 10), put("k", "old"), previous(None)),
            ok(1, (20, 100), put("k", "new"), previous(Some("old"))),
            ok(2, (30, 40), get("k"), read(Some("new"))),
            ok(3, (50, 60), get("k"), read(Some("old"))),
        ];
        let violation = violation(&history);
        assert_eq!(violation.first_unlinearizable.index, 3);
        // The same reads the other way round are fine.
        let mut forward = history.clone();
        forward[2].outcome = Outcome::Ok(read(Some("old")));
        forward[3].outcome = Outcome::Ok(read(Some("new")));
        assert_eq!(verdict(&forward), CheckResult::Linearizable);
    }

    #[test]
    fn unknown_put_may_be_seen_or_not() {
        // Goal: a put of unknown outcome may take effect at any time after
        // its invocation, or never; later reads may agree with either.
        for seen in [Some("a"), Some("maybe")] {
            let history = [
                ok(1, (0, 10), put("k", "a"), previous(None)),
                unknown(1, 20, put("k", "maybe")),
                ok(2, (1_000, 1_010), get("k"), read(seen)),
                ok(2, (2_000, 2_010), get("k"), read(seen)),
            ];
            assert_eq!(verdict(&history), CheckResult::Linearizable, "{seen:?}");
        }
        // Not before it was invoked, though.
        let early = [
            ok(2, (0, 10), get("k"), read(Some("maybe"))),
            unknown(1, 20, put("k", "maybe")),
        ];
        assert!(matches!(verdict(&early), CheckResult::Violation(_)));
    }

    #[test]
    fn unknown_put_seen_then_unseen_is_a_violation() {
        // Goal: once a read saw an unknown put's value, it took effect, and
        // a later read may not miss it.
        let history = [
            ok(1, (0, 10), put("k", "a"), previous(None)),
            unknown(1, 20, put("k", "maybe")),
            ok(2, (1_000, 1_010), get("k"), read(Some("maybe"))),
            ok(2, (2_000, 2_010), get("k"), read(Some("a"))),
        ];
        assert_eq!(violation(&history).first_unlinearizable.index, 3);
    }

    #[test]
    fn unknown_writes_seen_only_through_a_cas_can_take_effect() {
        // Goal: a cas expecting an unknown write's value may rely on it,
        // also when that cas is of unknown outcome itself.
        let history = [
            unknown(1, 0, put("k", "maybe")),
            ok(
                2,
                (100, 110),
                cas("k", Some("maybe"), "next"),
                swapped(true, Some("next")),
            ),
        ];
        assert_eq!(verdict(&history), CheckResult::Linearizable);
        let chained = [
            unknown(1, 0, put("k", "a")),
            unknown(1, 10, cas("k", Some("a"), "b")),
            ok(2, (100, 110), get("k"), read(Some("b"))),
        ];
        assert_eq!(verdict(&chained), CheckResult::Linearizable);
    }

    #[test]
    fn unknown_writes_nobody_sees_cost_no_search() {
        // Goal: hundreds of unknown puts whose values nobody reads are left
        // out up front and do not slow the search.
        let mut history = Vec::new();
        for n in 0..300 {
            let at_ns = n * 100;
            let earlier = (n > 0).then(|| format!("v{}", n - 1));
            history.push(unknown(1, at_ns, put("k", &format!("lost{n}"))));
            history.push(ok(
                2,
                (at_ns, at_ns + 50),
                put("k", &format!("v{n}")),
                Output::Previous(earlier),
            ));
            history.push(ok(
                3,
                (at_ns + 60, at_ns + 70),
                get("k"),
                read(Some(&format!("v{n}"))),
            ));
        }
        let limits = Limits {
            search_steps_max: 2 * history.len() as u64,
            ..Limits::DEFAULT
        };
        let report = check_with_limits(&history, limits).expect("a well-formed history");
        assert_eq!(report.overall, CheckResult::Linearizable, "{report}");
    }

    #[test]
    fn failed_operations_never_take_effect() {
        // Goal: a failed put is invisible; a read that sees it is a violation.
        let unseen = [
            ok(1, (0, 10), put("k", "a"), previous(None)),
            failed(1, (20, 30), put("k", "rejected")),
            failed(1, (40, 50), delete("k")),
            ok(2, (60, 70), get("k"), read(Some("a"))),
        ];
        assert_eq!(verdict(&unseen), CheckResult::Linearizable);
        let mut seen = unseen.clone();
        seen[3].outcome = Outcome::Ok(read(Some("rejected")));
        assert_eq!(violation(&seen).first_unlinearizable.index, 3);
    }

    #[test]
    fn cas_results_are_checked() {
        // Goal: a cas swaps exactly when the value matches, and reports the
        // value after it; any other report is a violation.
        let base = [
            ok(1, (0, 10), put("k", "a"), previous(None)),
            ok(
                1,
                (20, 30),
                cas("k", Some("a"), "b"),
                swapped(true, Some("b")),
            ),
        ];
        assert_eq!(verdict(&base), CheckResult::Linearizable);
        let impossible = [
            (cas("k", Some("x"), "c"), swapped(true, Some("c"))),
            (cas("k", None, "c"), swapped(true, Some("c"))),
            (cas("k", Some("b"), "c"), swapped(false, Some("b"))),
            (cas("k", Some("x"), "c"), swapped(false, Some("a"))),
            (cas("k", Some("b"), "c"), swapped(true, Some("b"))),
        ];
        for (call, output) in impossible {
            let mut history = base.to_vec();
            history.push(ok(2, (40, 50), call.clone(), output.clone()));
            let violation = violation(&history);
            assert_eq!(
                violation.first_unlinearizable.index, 2,
                "{call} -> {output}"
            );
        }
        // A failed cas leaves the value alone for later readers.
        let mut unchanged = base.to_vec();
        unchanged.push(ok(
            2,
            (40, 50),
            cas("k", Some("x"), "c"),
            swapped(false, Some("b")),
        ));
        unchanged.push(ok(2, (60, 70), get("k"), read(Some("b"))));
        assert_eq!(verdict(&unchanged), CheckResult::Linearizable);
    }

    #[test]
    fn concurrent_cas_race_has_one_winner() {
        // Goal: two concurrent cas from the same value cannot both win.
        let race = |second_ok: bool| {
            let current = if second_ok { "c" } else { "b" };
            [
                ok(1, (0, 10), put("k", "a"), previous(None)),
                ok(
                    1,
                    (20, 50),
                    cas("k", Some("a"), "b"),
                    swapped(true, Some("b")),
                ),
                ok(
                    2,
                    (20, 50),
                    cas("k", Some("a"), "c"),
                    swapped(second_ok, Some(current)),
                ),
            ]
        };
        assert_eq!(verdict(&race(false)), CheckResult::Linearizable);
        assert!(matches!(verdict(&race(true)), CheckResult::Violation(_)));
    }

    #[test]
    fn keys_are_checked_independently() {
        // Goal: a violation on one key is reported under that key, and the
        // other keys stay linearizable.
        let history = [
            ok(1, (0, 10), put("a", "1"), previous(None)),
            ok(1, (20, 30), put("b", "1"), previous(None)),
            ok(2, (40, 50), get("a"), read(Some("1"))),
            ok(2, (60, 70), get("b"), read(None)),
        ];
        let report = check(&history).expect("a well-formed history");
        assert_eq!(report.keys["a"], CheckResult::Linearizable);
        let CheckResult::Violation(violation) = &report.overall else {
            panic!("expected a violation, got {report}");
        };
        assert_eq!(violation.key, "b");
        assert_eq!(report.keys["b"], report.overall);
    }

    #[test]
    fn display_names_the_operation_and_its_neighbours() {
        // Goal: the report shows the stuck operation, marked, among nearby
        // operations of its key, and why it could not be placed.
        let mut history: Vec<Operation> = (0..10)
            .map(|n| {
                let previous_value = (n > 0).then(|| format!("v{}", n - 1));
                ok(
                    1,
                    (n * 100, n * 100 + 10),
                    put("k", &format!("v{n}")),
                    Output::Previous(previous_value),
                )
            })
            .collect();
        history.push(ok(2, (550, 560), get("k"), read(Some("v2"))));
        let shown = verdict(&history).to_string();
        assert!(
            shown.starts_with("not linearizable: key \"k\": operation #10"),
            "{shown}"
        );
        assert!(
            shown.contains(">> #10 client 2 [550 ns, 560 ns] get(\"k\") -> \"v2\""),
            "{shown}"
        );
        assert!(shown.contains("held \"v5\""), "{shown}");
        let (_, listed) = shown
            .split_once("by invocation time:")
            .expect("a list of nearby operations");
        assert_eq!(
            listed.lines().skip(1).count(),
            2 * NEARBY_OPERATIONS + 1,
            "{shown}"
        );
    }

    #[test]
    fn malformed_histories_are_rejected() {
        // Goal: recording mistakes are errors, not verdicts.
        let mismatched = [ok(1, (0, 10), get("k"), previous(None))];
        assert!(matches!(
            check(&mismatched),
            Err(HistoryError::MismatchedOutput { index: 0, .. })
        ));
        let mut incomplete = ok(1, (0, 10), get("k"), read(None));
        incomplete.completed_ns = None;
        assert_eq!(
            check(&[incomplete]),
            Err(HistoryError::MissingCompletion { index: 0 })
        );
        let backwards = [ok(1, (10, 5), get("k"), read(None))];
        assert!(matches!(
            check(&backwards),
            Err(HistoryError::CompletedBeforeInvoked { index: 0, .. })
        ));
    }

    #[test]
    fn search_bound_gives_undecided() {
        // Goal: a search that runs out of steps says so instead of guessing.
        let history: Vec<Operation> = (0..20)
            .map(|n| ok(n, (0, 100), put("k", &format!("v{n}")), previous(None)))
            .collect();
        let limits = Limits {
            search_steps_max: 50,
            ..Limits::DEFAULT
        };
        let report = check_with_limits(&history, limits).expect("a well-formed history");
        assert!(
            matches!(&report.overall, CheckResult::Undecided { key, .. } if key == "k"),
            "{report}"
        );
    }

    #[test]
    fn calls_use_the_kv_wire_format() {
        // Goal: requests are the kv plugin's JSON and its answers parse back.
        let request = |call: &Call| String::from_utf8(call.request()).expect("utf-8");
        assert_eq!(
            request(&put("k", "v")),
            r#"{"put":{"key":"k","value":"v"}}"#
        );
        assert_eq!(request(&delete("k")), r#"{"delete":{"key":"k"}}"#);
        assert_eq!(
            request(&cas("k", None, "v")),
            r#"{"cas":{"expected":null,"key":"k","value":"v"}}"#
        );
        assert_eq!(request(&get("k")), r#"{"get":{"key":"k"}}"#);
        assert!(get("k").is_query() && !put("k", "v").is_query());
        assert_eq!(
            put("k", "v").parse_response(&json!({"prev": "u"})),
            Some(previous(Some("u")))
        );
        assert_eq!(
            cas("k", None, "v").parse_response(&json!({"ok": false, "current": null})),
            Some(swapped(false, None))
        );
        assert_eq!(
            get("k").parse_response(&json!({"value": "v"})),
            Some(read(Some("v")))
        );
        assert_eq!(get("k").parse_response(&json!({"prev": "v"})), None);
        assert_eq!(delete("k").parse_response(&json!({"prev": 3})), None);
    }

    #[test]
    fn histories_round_trip_through_json_lines() {
        // Goal: a history written to a file reads back unchanged.
        let history = vec![
            ok(1, (0, 10), cas("k", None, "v"), swapped(true, Some("v"))),
            failed(2, (5, 6), delete("k")),
            unknown(3, 7, put("k", "w")),
        ];
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("history.jsonl");
        write_history(&path, &history).expect("write history");
        assert_eq!(read_history(&path).expect("read history"), history);
    }

    #[test]
    fn recorder_keeps_outcomes_and_abandoned_calls_are_unknown() {
        // Goal: a recorded history has each outcome given, and an invocation
        // dropped unfinished becomes unknown.
        let recorder = Recorder::new(Instant::now());
        recorder.invoke(1, put("k", "a")).ok(previous(None));
        recorder.invoke(1, put("k", "b")).failed();
        drop(recorder.invoke(2, put("k", "c")));
        recorder.invoke(1, get("k")).ok(read(Some("a")));
        let history = recorder.history();
        let outcomes: Vec<&Outcome> = history.iter().map(|op| &op.outcome).collect();
        assert_eq!(
            outcomes,
            [
                &Outcome::Ok(previous(None)),
                &Outcome::Failed,
                &Outcome::Unknown,
                &Outcome::Ok(read(Some("a")))
            ]
        );
        assert!(
            history
                .windows(2)
                .all(|pair| pair[0].invoked_ns <= pair[1].invoked_ns)
        );
        assert_linearizable(&history);
    }

    /// SplitMix64: a small deterministic generator for simulated histories.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    /// Shape of a simulated history.
    struct Simulation {
        seed: u64,
        operations: u64,
        keys: u64,
        clients: u64,
        /// Share of operations that fail, in percent.
        failed_percent: u64,
        /// Share of operations of unknown outcome, in percent; two thirds
        /// of them take effect.
        unknown_percent: u64,
    }

    /// An operation planned by the simulation, when it takes effect on the
    /// simulated store (`None`: never), and whether its client learns the
    /// result.
    struct Planned {
        operation: Operation,
        takes_effect_ns: Option<u64>,
        answered: bool,
    }

    /// A history of clients running one operation at a time against a
    /// linearizable store: each operation takes effect at a point inside its
    /// interval, or, of unknown outcome, maybe later or never.
    fn simulated_history(simulation: &Simulation) -> Vec<Operation> {
        let mut random = SplitMix64(simulation.seed);
        let mut clocks_ns = vec![0; simulation.clients as usize];
        let mut written: Vec<Vec<String>> = vec![Vec::new(); simulation.keys as usize];
        let mut planned = Vec::new();
        for number in 0..simulation.operations {
            let client = number % simulation.clients;
            let key = random.below(simulation.keys) as usize;
            let call = random_call(&mut random, &format!("k{key}"), number, &mut written[key]);
            let invoked_ns = clocks_ns[client as usize] + 1 + random.below(50);
            let takes_effect_ns = invoked_ns + random.below(200);
            let completed_ns = takes_effect_ns + random.below(200);
            clocks_ns[client as usize] = completed_ns;
            let fate = random.below(100);
            let failed = fate < simulation.failed_percent;
            let unknown = !failed && fate < simulation.failed_percent + simulation.unknown_percent;
            let takes_effect_ns = if failed {
                None
            } else if unknown {
                let later_ns = invoked_ns + random.below(2_000);
                (random.below(3) > 0).then_some(later_ns)
            } else {
                Some(takes_effect_ns)
            };
            let outcome = if failed {
                Outcome::Failed
            } else {
                // Answered operations get their output when applied.
                Outcome::Unknown
            };
            planned.push(Planned {
                operation: Operation {
                    client,
                    invoked_ns,
                    completed_ns: Some(completed_ns),
                    call,
                    outcome,
                },
                takes_effect_ns,
                answered: !failed && !unknown,
            });
        }
        apply_in_order(&mut planned);
        planned.into_iter().map(|plan| plan.operation).collect()
    }

    fn random_call(
        random: &mut SplitMix64,
        key: &str,
        number: u64,
        written: &mut Vec<String>,
    ) -> Call {
        let value = format!("v{number}");
        match random.below(100) {
            0..35 => get(key),
            35..65 => {
                written.push(value.clone());
                put(key, &value)
            }
            65..75 => delete(key),
            choice => {
                let expected = match (choice % 3, written.last()) {
                    (0, _) | (_, None) => None,
                    (1, Some(last)) => Some(last.clone()),
                    (_, Some(_)) => {
                        let pick = random.below(written.len() as u64) as usize;
                        Some(written[pick].clone())
                    }
                };
                written.push(value.clone());
                cas(key, expected.as_deref(), &value)
            }
        }
    }

    /// `call` applied to the value of its key, as the kv plugin does it.
    fn kv_step(register: &mut Option<String>, call: &Call) -> Output {
        match call {
            Call::Put { value, .. } => Output::Previous(register.replace(value.clone())),
            Call::Delete { .. } => Output::Previous(register.take()),
            Call::Cas {
                expected, value, ..
            } => {
                let ok = register == expected;
                if ok {
                    *register = Some(value.clone());
                }
                Output::Swapped {
                    ok,
                    current: register.clone(),
                }
            }
            Call::Get { .. } => Output::Value(register.clone()),
        }
    }

    /// Apply the planned operations to the store in the order they take
    /// effect, recording the outputs of those answered.
    fn apply_in_order(planned: &mut [Planned]) {
        let mut order: Vec<usize> = (0..planned.len())
            .filter(|&n| planned[n].takes_effect_ns.is_some())
            .collect();
        order.sort_by_key(|&n| (planned[n].takes_effect_ns, n));
        let mut store: BTreeMap<String, Option<String>> = BTreeMap::new();
        for n in order {
            let plan = &mut planned[n];
            let key = plan.operation.call.key().to_string();
            let output = kv_step(store.entry(key).or_default(), &plan.operation.call);
            if plan.answered {
                plan.operation.outcome = Outcome::Ok(output);
            }
        }
    }

    /// Whether some order of `history` (of one key) explains every result,
    /// by trying every order: the slow definition the checker must agree with.
    fn brute_force_linearizable(history: &[Operation]) -> bool {
        let operations: Vec<&Operation> = history
            .iter()
            .filter(|operation| match operation.outcome {
                Outcome::Failed => false,
                Outcome::Unknown => !operation.call.is_query(),
                Outcome::Ok(_) => true,
            })
            .collect();
        let mut placed = vec![false; operations.len()];
        extends(&operations, &mut placed, &None)
    }

    /// Whether the unplaced operations can follow the placed ones, starting
    /// from `register`. Operations of unknown outcome may stay unplaced.
    fn extends(operations: &[&Operation], placed: &mut [bool], register: &Option<String>) -> bool {
        let must_place = |placed: &[bool], n: usize| {
            !placed[n] && !matches!(operations[n].outcome, Outcome::Unknown)
        };
        if (0..operations.len()).all(|n| !must_place(placed, n)) {
            return true;
        }
        for candidate in 0..operations.len() {
            let invoked_ns = operations[candidate].invoked_ns;
            let blocked = (0..operations.len()).any(|other| {
                must_place(placed, other) && operations[other].completed_ns < Some(invoked_ns)
            });
            if placed[candidate] || blocked {
                continue;
            }
            let mut after = register.clone();
            let output = kv_step(&mut after, &operations[candidate].call);
            if matches!(&operations[candidate].outcome, Outcome::Ok(seen) if *seen != output) {
                continue;
            }
            placed[candidate] = true;
            if extends(operations, placed, &after) {
                return true;
            }
            placed[candidate] = false;
        }
        false
    }

    /// Replace the output of one answered operation with a random output of
    /// the same kind, from the values the history mentions.
    fn perturb(random: &mut SplitMix64, history: &mut [Operation]) {
        let mut values: Vec<Option<String>> = vec![None];
        values.extend(
            history
                .iter()
                .filter_map(|operation| match &operation.call {
                    Call::Put { value, .. } | Call::Cas { value, .. } => Some(Some(value.clone())),
                    _ => None,
                }),
        );
        let answered: Vec<usize> = (0..history.len())
            .filter(|&n| matches!(history[n].outcome, Outcome::Ok(_)))
            .collect();
        if answered.is_empty() {
            return;
        }
        let target = answered[random.below(answered.len() as u64) as usize];
        let value = values[random.below(values.len() as u64) as usize].clone();
        let output = match history[target].call {
            Call::Put { .. } | Call::Delete { .. } => Output::Previous(value),
            Call::Cas { .. } => Output::Swapped {
                ok: random.below(2) == 0,
                current: value,
            },
            Call::Get { .. } => Output::Value(value),
        };
        history[target].outcome = Outcome::Ok(output);
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        // Goal: on many small one-key histories, some altered to break
        // them, the checker's verdict is that of trying every order.
        let mut verdicts = [0; 2];
        for seed in 0..1_000 {
            let simulation = Simulation {
                seed,
                operations: 9,
                keys: 1,
                clients: 3,
                failed_percent: 10,
                unknown_percent: 20,
            };
            let mut history = simulated_history(&simulation);
            let mut random = SplitMix64(seed);
            if random.below(2) == 0 {
                perturb(&mut random, &mut history);
            }
            let expected = brute_force_linearizable(&history);
            let report = check(&history).expect("a well-formed history");
            assert_eq!(
                report.overall == CheckResult::Linearizable,
                expected,
                "seed {seed}: {report}\n{history:#?}"
            );
            verdicts[usize::from(expected)] += 1;
        }
        assert!(verdicts.iter().all(|&count| count > 200), "{verdicts:?}");
    }

    /// Whether `operation` definitely wrote its key.
    fn definite_write(operation: &Operation) -> bool {
        match (&operation.call, &operation.outcome) {
            (Call::Put { .. } | Call::Delete { .. }, Outcome::Ok(_)) => true,
            (Call::Cas { .. }, Outcome::Ok(Output::Swapped { ok, .. })) => *ok,
            _ => false,
        }
    }

    /// Make a read in the second half of `history` return a value that was
    /// overwritten (by a write that completed before the read began) after
    /// the put that wrote it completed. Returns the read's index.
    fn corrupt_one_read(history: &mut [Operation]) -> usize {
        for index in history.len() / 2..history.len() {
            let reading = &history[index];
            let (Call::Get { key }, Outcome::Ok(_)) = (&reading.call, &reading.outcome) else {
                continue;
            };
            let on_key = |operation: &&Operation| operation.call.key() == key;
            let Some(overwrite) = history
                .iter()
                .filter(on_key)
                .filter(|operation| {
                    definite_write(operation) && operation.completed_ns < Some(reading.invoked_ns)
                })
                .max_by_key(|operation| operation.completed_ns)
            else {
                continue;
            };
            let stale = history
                .iter()
                .filter(on_key)
                .filter(|operation| operation.completed_ns < Some(overwrite.invoked_ns))
                .filter_map(|operation| match (&operation.call, &operation.outcome) {
                    (Call::Put { value, .. }, Outcome::Ok(_)) => Some(value.clone()),
                    _ => None,
                })
                .next_back();
            if let Some(stale) = stale {
                history[index].outcome = Outcome::Ok(read(Some(&stale)));
                return index;
            }
        }
        panic!("no read to corrupt");
    }

    #[test]
    fn many_concurrent_operations_on_many_keys_finish_fast() {
        // Goal: 2000 operations of 5 concurrent clients over 10 keys from a
        // simulated linearizable store pass within a small search budget,
        // and the same history with one stale read fails on that read.
        let simulation = Simulation {
            seed: 7,
            operations: 2_000,
            keys: 10,
            clients: 5,
            failed_percent: 3,
            unknown_percent: 3,
        };
        let limits = Limits {
            search_steps_max: 20_000,
            ..Limits::DEFAULT
        };
        let mut history = simulated_history(&simulation);
        let report = check_with_limits(&history, limits).expect("a well-formed history");
        assert_eq!(report.overall, CheckResult::Linearizable, "{report}");
        eprintln!("linearizable: {report}");

        let corrupted = corrupt_one_read(&mut history);
        let report = check_with_limits(&history, limits).expect("a well-formed history");
        eprintln!("corrupted #{corrupted}: {report}");
        let CheckResult::Violation(violation) = &report.overall else {
            panic!("expected a violation, got {report}");
        };
        assert_eq!(violation.key, history[corrupted].call.key());
        assert_eq!(violation.first_unlinearizable.index, corrupted, "{report}");
    }
}
