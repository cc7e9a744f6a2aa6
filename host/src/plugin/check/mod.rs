//! `clusterhost plugin check`: run a plugin through a command file in the
//! host's own sandbox, with no cluster, and find what would make replicas
//! disagree before any cluster runs it.
//!
//! - [`script`]: the command file.
//! - [`compare`]: pure comparisons and short diffs.
//! - `run`: running steps through fresh instances.
//!
//! The checks: replay determinism (two fresh instances, same answers and
//! snapshots), snapshot round trip (at several points, restore into a fresh
//! instance: same snapshot, same answers to the rest), query purity (leaving
//! the queries out changes no command's answer or snapshot), the limits used,
//! and with an old plugin, upgrade (the new one restores the old one's
//! snapshot and answers the file's queries the same).

pub mod compare;
pub mod run;
pub mod script;

use serde::Serialize;

use self::compare::{Answered, Mismatch, first_answer_difference, first_snapshot_difference};
use self::run::{Run, RunError, RunPlan, Usage, applied_before, fresh, position, run};
use self::script::Step;
use crate::limits::{CHECK_ROUND_TRIP_POINTS, PluginLimits};
use crate::plugin::code::PluginCode;

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// `determinism`, `round_trip`, `query_purity` or `upgrade`.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// Where it failed, when two runs differ.
    pub mismatch: Option<Mismatch>,
    /// Why it failed when it is not a difference (a refused restore), or
    /// what it could not check.
    pub note: Option<String>,
}

impl CheckResult {
    fn from_mismatch(name: &'static str, mismatch: Option<Mismatch>) -> Self {
        Self {
            name,
            passed: mismatch.is_none(),
            mismatch,
            note: None,
        }
    }

    fn failed(name: &'static str, note: String) -> Self {
        Self {
            name,
            passed: false,
            mismatch: None,
            note: Some(note),
        }
    }
}

/// The host's bounds, reported next to what the plugin used.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    /// Fuel for one `apply` or `query`.
    pub fuel_per_call: u64,
    /// Fuel for one `snapshot` or `restore`.
    pub fuel_per_bulk_call: u64,
    /// Bytes of memory one instance may hold.
    pub memory_bytes_max: usize,
    /// Largest response.
    pub response_bytes_max: usize,
    /// Largest snapshot.
    pub snapshot_bytes_max: usize,
}

/// Everything `plugin check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Steps in the command file.
    pub steps: usize,
    /// Each check's outcome.
    pub checks: Vec<CheckResult>,
    /// The most the plugin used of each bound, in the reference run.
    pub usage: Usage,
    /// The bounds.
    pub limits: LimitsView,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }
}

/// Run every check of `code` over `steps`; `old` adds the upgrade check.
pub fn check(
    code: &PluginCode,
    old: Option<&PluginCode>,
    steps: &[Step],
    limits: PluginLimits,
) -> Result<Report, RunError> {
    let points = script::round_trip_points(steps, CHECK_ROUND_TRIP_POINTS);
    let mut snapshot_after = points.clone();
    snapshot_after.push(steps.len());
    let plan = RunPlan {
        steps,
        from: 0,
        snapshot_after: &snapshot_after,
        queries: true,
    };
    let reference = run(fresh(code, limits)?, &plan);
    let again = run(fresh(code, limits)?, &plan);
    let mut checks = vec![CheckResult::from_mismatch(
        "determinism",
        first_answer_difference(&reference.answers, &again.answers)
            .or_else(|| first_snapshot_difference(&reference.snapshots, &again.snapshots)),
    )];
    checks.push(round_trip(code, limits, &plan, &reference, &points)?);
    let without_queries = run(
        fresh(code, limits)?,
        &RunPlan {
            queries: false,
            ..plan
        },
    );
    let commands_only: Vec<Answered> = reference
        .answers
        .iter()
        .filter(|answered| !steps[answered.step - 1].is_query())
        .cloned()
        .collect();
    checks.push(CheckResult::from_mismatch(
        "query_purity",
        first_answer_difference(&commands_only, &without_queries.answers).or_else(|| {
            first_snapshot_difference(&reference.snapshots, &without_queries.snapshots)
        }),
    ));
    if let Some(old) = old {
        checks.push(upgrade(code, old, limits, steps)?);
    }
    Ok(Report {
        steps: steps.len(),
        checks,
        usage: reference.usage,
        limits: LimitsView {
            fuel_per_call: limits.fuel_per_call,
            fuel_per_bulk_call: limits.fuel_per_bulk_call,
            memory_bytes_max: limits.memory_bytes_max,
            response_bytes_max: limits.response_bytes_max,
            snapshot_bytes_max: limits.snapshot_bytes_max,
        },
    })
}

/// At each point: restore the reference's snapshot into a fresh instance,
/// snapshot it again, and run the rest of the file on it.
fn round_trip(
    code: &PluginCode,
    limits: PluginLimits,
    plan: &RunPlan<'_>,
    reference: &Run,
    points: &[usize],
) -> Result<CheckResult, RunError> {
    const NAME: &str = "round_trip";
    for &step in points {
        let Some((_, snapshot)) = reference.snapshots.iter().find(|(at, _)| *at == step) else {
            // The reference stopped at a fault before this point.
            continue;
        };
        let at = position(applied_before(plan.steps, step));
        let mut restored = fresh(code, limits)?;
        match restored.restore_with_store(at, snapshot, code.uses_store()) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Ok(CheckResult::failed(
                    NAME,
                    format!("restore of the snapshot taken after step {step} refused: {message}"),
                ));
            }
            Err(fault) => {
                return Ok(CheckResult::failed(
                    NAME,
                    format!("restore of the snapshot taken after step {step} faulted: {fault}"),
                ));
            }
        }
        let again = restored
            .snapshot_with_store(at)
            .unwrap_or_else(|fault| format!("(snapshot failed: {fault})").into_bytes());
        let rest = run(
            restored,
            &RunPlan {
                from: step,
                ..*plan
            },
        );
        let later = |run: &Run| -> (Vec<Answered>, Vec<(usize, Vec<u8>)>) {
            let answers = run.answers.iter().filter(|a| a.step > step).cloned();
            let snapshots = run.snapshots.iter().filter(|(at, _)| *at > step).cloned();
            (answers.collect(), snapshots.collect())
        };
        let (expected_answers, expected_snapshots) = later(reference);
        let mismatch = compare::snapshot_difference(step, snapshot, &again)
            .or_else(|| first_answer_difference(&expected_answers, &rest.answers))
            .or_else(|| first_snapshot_difference(&expected_snapshots, &rest.snapshots));
        if mismatch.is_some() {
            let mut result = CheckResult::from_mismatch(NAME, mismatch);
            result.note = Some(format!(
                "expected: the run that was never restored; actual: restored from the snapshot taken after step {step}"
            ));
            return Ok(result);
        }
    }
    Ok(CheckResult::from_mismatch(NAME, None))
}

/// The old plugin runs the file; the new one restores its final snapshot;
/// both answer the file's queries.
fn upgrade(
    code: &PluginCode,
    old: &PluginCode,
    limits: PluginLimits,
    steps: &[Step],
) -> Result<CheckResult, RunError> {
    const NAME: &str = "upgrade";
    let last = [steps.len()];
    let old_run = run(
        fresh(old, limits)?,
        &RunPlan {
            steps,
            from: 0,
            snapshot_after: &last,
            queries: true,
        },
    );
    let (Some(mut old_instance), Some((_, snapshot))) =
        (old_run.instance, old_run.snapshots.first())
    else {
        return Ok(CheckResult::failed(
            NAME,
            "the old plugin faulted on the command file; nothing to upgrade from".into(),
        ));
    };
    let at = position(applied_before(steps, steps.len()));
    let mut new_instance = fresh(code, limits)?;
    match new_instance.restore_with_store(at, snapshot, old.uses_store()) {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            return Ok(CheckResult::failed(
                NAME,
                format!("the new plugin refused the old plugin's snapshot: {message}"),
            ));
        }
        Err(fault) => {
            return Ok(CheckResult::failed(
                NAME,
                format!("the new plugin faulted restoring the old plugin's snapshot: {fault}"),
            ));
        }
    }
    let ask = |instance: &mut crate::plugin::instance::PluginInstance| -> Vec<Answered> {
        steps
            .iter()
            .enumerate()
            .filter_map(|(index, step)| match step {
                Step::Query(request) => Some(Answered {
                    step: index + 1,
                    answer: run::answer(instance.query(at, request)),
                }),
                Step::Apply(_) => None,
            })
            .collect()
    };
    let expected = ask(&mut old_instance);
    let actual = ask(&mut new_instance);
    let mut result = CheckResult::from_mismatch(NAME, first_answer_difference(&expected, &actual));
    if expected.is_empty() {
        result.note = Some("the command file has no queries to compare".into());
    }
    Ok(result)
}
