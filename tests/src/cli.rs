//! Running the real `clusterhost` command line and checking what it printed.

use std::ffi::OsStr;
use std::time::Duration;

use crate::paths::clusterhost_binary;

/// Longest a client command (`apply`, `status`, ...) may take before the
/// harness kills it and fails: well above the host's 10 s request timeout.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit codes the CLI documents (`host/src/cli/mod.rs`).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Anything else.
    pub const FAILURE: i32 = 1;
    /// Bad flags or arguments.
    pub const USAGE: i32 = 2;
    /// The plugin rejected the command or trapped on it.
    pub const REJECTED: i32 = 3;
    /// Node or cluster unreachable, or no leader.
    pub const UNAVAILABLE: i32 = 4;
    /// Input refused before anything happened.
    pub const INVALID_INPUT: i32 = 5;
    /// The command may or may not have been applied.
    pub const OUTCOME_UNKNOWN: i32 = 6;
    /// The caller's certificate does not allow the call.
    pub const PERMISSION_DENIED: i32 = 7;
    /// `plugin check` found a problem.
    pub const CHECK_FAILED: i32 = 8;
}

/// What one CLI invocation did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command_line: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl CliOutput {
    /// Assert success and return stdout.
    #[track_caller]
    pub fn success(&self) -> &str {
        assert_eq!(self.code, Some(exit::OK), "expected success from {self}");
        &self.stdout
    }

    /// Assert success and parse stdout as JSON.
    #[track_caller]
    pub fn success_json(&self) -> serde_json::Value {
        let stdout = self.success();
        serde_json::from_str(stdout)
            .unwrap_or_else(|error| panic!("stdout of {self} is not JSON: {error}"))
    }

    /// Assert the command failed with `code`, printed one `Error: ` line
    /// containing every one of `needles` (case-insensitive), and nothing on
    /// stdout.
    #[track_caller]
    pub fn failure(&self, code: i32, needles: &[&str]) {
        assert_eq!(self.code, Some(code), "unexpected exit code from {self}");
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| line.starts_with("Error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected one `Error: ` line on stderr of {self}"
        );
        let error = errors[0].to_lowercase();
        for needle in needles {
            assert!(
                error.contains(&needle.to_lowercase()),
                "`Error:` line of {self} does not mention {needle:?}"
            );
        }
        assert!(
            self.stdout.trim().is_empty(),
            "a failing command printed on stdout: {self}"
        );
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "`{}` (exit {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command_line,
            self.code,
            tail(&self.stdout, 4096),
            tail(&self.stderr, 4096)
        )
    }
}

/// The last `bytes_max` bytes of `text` (on a character boundary).
pub fn tail(text: &str, bytes_max: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes_max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Run `clusterhost ARGS` with `envs` and wait for it, at most `timeout`
/// (then it is killed and this panics: a command that should finish did not).
/// `CLUSTERHOST_ENDPOINT` from the caller's environment is never inherited.
pub async fn run_cli<I, S>(args: I, envs: &[(&str, &str)], timeout: Duration) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|arg| arg.as_ref().to_owned())
        .collect();
    let command_line = std::iter::once("clusterhost".to_string())
        .chain(args.iter().map(|arg| arg.to_string_lossy().into_owned()))
        .map(|arg| tail(&arg, 200).to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = tokio::process::Command::new(clusterhost_binary());
    command
        .args(&args)
        .env_remove("CLUSTERHOST_ENDPOINT")
        .env_remove("CLUSTERHOST_CACERT")
        .env_remove("CLUSTERHOST_CERT")
        .env_remove("CLUSTERHOST_KEY")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (key, value) in envs {
        command.env(key, value);
    }
    let child = command.output();
    let output = match tokio::time::timeout(timeout, child).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => panic!("cannot run `{command_line}`: {error}"),
        Err(_) => panic!("`{command_line}` did not finish within {timeout:?}"),
    };
    CliOutput {
        command_line,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
