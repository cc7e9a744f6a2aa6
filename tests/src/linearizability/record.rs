//! Recording a history as it happens ([`Recorder`]), and keeping it in a
//! file as JSON Lines.

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context;

use super::history::{Call, Operation, Outcome, Output};

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
