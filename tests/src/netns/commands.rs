//! Running `ip` and `tc`: one command line, its stdout, and a failure that
//! names the command and carries its stderr.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// `ip arguments`; see [`run`].
pub(super) fn ip(arguments: &str) -> Result<String> {
    run("ip", arguments)
}

/// `tc arguments`; see [`run`].
pub(super) fn tc(arguments: &str) -> Result<String> {
    run("tc", arguments)
}

/// `ip -json arguments`, parsed.
pub(super) fn ip_json(arguments: &str) -> Result<Value> {
    let output = run("ip", &format!("-json {arguments}"))?;
    if output.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&output)
        .with_context(|| format!("`ip -json {arguments}` printed {output}"))
}

/// Run `program` with `arguments` split at whitespace (names and addresses
/// here have none) and return its stdout. A failure names the command line
/// and carries its stderr.
fn run(program: &str, arguments: &str) -> Result<String> {
    let output = Command::new(program)
        .args(arguments.split_whitespace())
        .output()
        .with_context(|| format!("run `{program} {arguments}`"))?;
    ensure!(
        output.status.success(),
        "`{program} {arguments}` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `program arguments` exits successfully (its output discarded).
pub(super) fn succeeds(program: &str, arguments: &str) -> bool {
    Command::new(program)
        .args(arguments.split_whitespace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
