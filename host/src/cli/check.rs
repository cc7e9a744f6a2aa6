//! `clusterhost plugin check FILE --commands FILE [--against OLD] [--json]`:
//! reading the files, printing the report, and the exit code.

use std::path::Path;
use std::sync::Arc;

use super::{CliError, ExitCode};
use crate::limits::PluginLimits;
use crate::plugin::PluginEngine;
use crate::plugin::check::{self, Report, script};
use crate::plugin::code::PluginCode;

/// Run `plugin check` and print its report; a failed check exits with
/// [`ExitCode::CheckFailed`].
pub fn check(
    file: &Path,
    commands: &Path,
    against: Option<&Path>,
    json: bool,
) -> Result<(), CliError> {
    let text = std::fs::read_to_string(commands).map_err(|error| {
        CliError::new(
            ExitCode::InvalidInput,
            format!("cannot read {}: {error}", commands.display()),
        )
    })?;
    let steps = script::parse(&text).map_err(|error| {
        CliError::new(
            ExitCode::InvalidInput,
            format!("{} is not a command file: {error}", commands.display()),
        )
    })?;
    let engine = PluginEngine::new(None)?;
    let code = load(&engine, file)?;
    let old = against.map(|path| load(&engine, path)).transpose()?;
    let report = check::check(&code, old.as_ref(), &steps, PluginLimits::default())
        .map_err(|error| CliError::new(ExitCode::CheckFailed, error.to_string()))?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
    }
    match report.checks.iter().find(|result| !result.passed) {
        None => Ok(()),
        Some(failed) => Err(CliError::new(
            ExitCode::CheckFailed,
            format!("{} failed the {} check", file.display(), failed.name),
        )),
    }
}

fn load(engine: &PluginEngine, path: &Path) -> Result<PluginCode, CliError> {
    let bytes = std::fs::read(path).map_err(|error| {
        CliError::new(
            ExitCode::InvalidInput,
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    engine.load(Arc::from(bytes)).map_err(|error| {
        CliError::new(
            ExitCode::InvalidInput,
            format!("{} is not a valid plugin: {error}", path.display()),
        )
    })
}

/// The report as text: one line a check, the diff under a failed one, then
/// what the plugin used against the host's bounds.
pub fn render(report: &Report) -> String {
    let mut text = format!("{} steps\n", report.steps);
    for result in &report.checks {
        let verdict = if result.passed { "ok  " } else { "FAIL" };
        text.push_str(&format!("{verdict} {}\n", result.name));
        if let Some(mismatch) = &result.mismatch {
            text.push_str(&format!(
                "     {} differs at step {}\n     expected: {}\n     actual:   {}\n",
                mismatch.what, mismatch.step, mismatch.expected, mismatch.actual
            ));
        }
        if let Some(note) = &result.note {
            text.push_str(&format!("     {note}\n"));
        }
    }
    let (usage, limits) = (&report.usage, &report.limits);
    text.push_str(&format!(
        "fuel      {} at step {} (limit {} per call); snapshot {} (limit {})\n",
        usage.fuel_max,
        usage.fuel_max_step,
        limits.fuel_per_call,
        usage.snapshot_fuel_max,
        limits.fuel_per_bulk_call
    ));
    text.push_str(&format!(
        "response  {} bytes at step {} (limit {})\n",
        usage.response_bytes_max, usage.response_bytes_max_step, limits.response_bytes_max
    ));
    text.push_str(&format!(
        "snapshot  {} bytes (limit {})\nmemory    {} bytes (limit {})\n",
        usage.snapshot_bytes_max,
        limits.snapshot_bytes_max,
        usage.memory_bytes_max,
        limits.memory_bytes_max
    ));
    text
}
