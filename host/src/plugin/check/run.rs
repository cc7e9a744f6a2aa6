//! Running a command file through fresh plugin instances, the I/O half of
//! `plugin check`: every call goes through [`PluginInstance`], the same
//! sandbox, fuel and memory bounds a node uses.

use serde::Serialize;

use super::compare::{Answer, Answered};
use super::script::Step;
use crate::limits::PluginLimits;
use crate::plugin::code::PluginCode;
use crate::plugin::instance::{EntryPosition, Fault, PluginInstance};

/// Leader time stamped on entry 0; entry `i` is stamped `i` seconds later, so
/// every run sees the same clock at the same entry.
const TIME_BASE_MS: u64 = 1_700_000_000_000;

/// Why a check could not run at all (as opposed to finding a difference).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The component did not start.
    #[error("the plugin did not start: {0}")]
    Start(Fault),
}

/// The most a run used of each bound, and where.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Most fuel one `apply` or `query` burned.
    pub fuel_max: u64,
    /// The step that burned it.
    pub fuel_max_step: usize,
    /// Largest response, in bytes.
    pub response_bytes_max: usize,
    /// The step that returned it.
    pub response_bytes_max_step: usize,
    /// Largest snapshot, in bytes.
    pub snapshot_bytes_max: usize,
    /// Most fuel one `snapshot` burned.
    pub snapshot_fuel_max: u64,
    /// Largest the instance's memory grew to, in bytes.
    pub memory_bytes_max: usize,
}

/// What one run answered and snapshotted.
pub struct Run {
    /// Every step's answer, in order (stops after a fault that poisons the
    /// instance: a node would discard it there too).
    pub answers: Vec<Answered>,
    /// Snapshots taken after the steps asked for, as (step, bytes).
    pub snapshots: Vec<(usize, Vec<u8>)>,
    /// What it used.
    pub usage: Usage,
    /// The instance, for further calls; `None` after a poisoning fault.
    pub instance: Option<PluginInstance>,
}

/// How to run a command file.
pub struct RunPlan<'a> {
    /// Every step of the file.
    pub steps: &'a [Step],
    /// Index into `steps` of the first step to run.
    pub from: usize,
    /// Step numbers (from 1) after which to snapshot.
    pub snapshot_after: &'a [usize],
    /// Whether to run the queries too (the purity check leaves them out).
    pub queries: bool,
}

/// The entry position after `applied` commands.
pub fn position(applied: u64) -> EntryPosition {
    EntryPosition {
        index: applied,
        term: 1,
        time_ms: TIME_BASE_MS + applied * 1000,
    }
}

/// Commands among the first `count` steps.
pub fn applied_before(steps: &[Step], count: usize) -> u64 {
    steps[..count]
        .iter()
        .filter(|step| !step.is_query())
        .count() as u64
}

/// A fresh instance of `code`.
pub fn fresh(code: &PluginCode, limits: PluginLimits) -> Result<PluginInstance, RunError> {
    PluginInstance::new(code, limits).map_err(RunError::Start)
}

/// Run `plan` on `instance`.
pub fn run(instance: PluginInstance, plan: &RunPlan<'_>) -> Run {
    let mut applied = applied_before(plan.steps, plan.from);
    let mut run = Run {
        answers: Vec::new(),
        snapshots: Vec::new(),
        usage: Usage::default(),
        instance: Some(instance),
    };
    for (index, step) in plan.steps.iter().enumerate().skip(plan.from) {
        let number = index + 1;
        let Some(instance) = run.instance.as_mut() else {
            break;
        };
        let result = match step {
            Step::Query(_) if !plan.queries => None,
            Step::Query(request) => Some(instance.query(position(applied), request)),
            Step::Apply(command) => {
                applied += 1;
                Some(instance.apply(position(applied), command))
            }
        };
        if let Some(result) = result {
            note_call(&mut run.usage, instance, number, &result);
            let poisoned = matches!(&result, Err(fault) if fault.poisons_instance());
            run.answers.push(Answered {
                step: number,
                answer: answer(result),
            });
            if poisoned {
                run.instance = None;
                break;
            }
        }
        if plan.snapshot_after.contains(&number) {
            take_snapshot(&mut run, number, applied);
        }
    }
    run
}

fn note_call(
    usage: &mut Usage,
    instance: &PluginInstance,
    step: usize,
    result: &Result<Result<Vec<u8>, String>, Fault>,
) {
    if instance.fuel_used() > usage.fuel_max {
        usage.fuel_max = instance.fuel_used();
        usage.fuel_max_step = step;
    }
    let bytes = match result {
        Ok(Ok(bytes)) => bytes.len(),
        Ok(Err(message)) => message.len(),
        Err(_) => 0,
    };
    if bytes > usage.response_bytes_max {
        usage.response_bytes_max = bytes;
        usage.response_bytes_max_step = step;
    }
    usage.memory_bytes_max = usage.memory_bytes_max.max(instance.memory_bytes());
}

fn take_snapshot(run: &mut Run, step: usize, applied: u64) {
    let Some(instance) = run.instance.as_mut() else {
        return;
    };
    let bytes = match instance.snapshot_with_store(position(applied)) {
        Ok(bytes) => bytes,
        Err(fault) => {
            // A snapshot that faults is a difference every comparison sees:
            // its text stands in for the bytes.
            if fault.poisons_instance() {
                run.instance = None;
            }
            format!("(snapshot failed: {fault})").into_bytes()
        }
    };
    if let Some(instance) = run.instance.as_ref() {
        run.usage.snapshot_fuel_max = run.usage.snapshot_fuel_max.max(instance.fuel_used());
        run.usage.memory_bytes_max = run.usage.memory_bytes_max.max(instance.memory_bytes());
    }
    run.usage.snapshot_bytes_max = run.usage.snapshot_bytes_max.max(bytes.len());
    run.snapshots.push((step, bytes));
}

/// The comparable form of one call's result.
pub fn answer(result: Result<Result<Vec<u8>, String>, Fault>) -> Answer {
    match result {
        Ok(Ok(bytes)) => Answer::Ok(bytes),
        Ok(Err(message)) => Answer::Err(message),
        Err(fault) => Answer::Fault(fault.to_string()),
    }
}
