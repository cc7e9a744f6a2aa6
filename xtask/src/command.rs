//! Running child processes: every command is printed before it runs, and a
//! failure names the command and its exit status, so a broken step in a long
//! xtask run is obvious without re-running it verbosely.

use anyhow::{Context, Result, bail};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a time-bounded child is polled for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A shell-like rendering of `command`, for logs and error messages.
pub fn describe(command: &Command) -> String {
    let mut text = String::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            text.push_str(&format!(
                "{}={} ",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    text.push_str(&command.get_program().to_string_lossy());
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    if let Some(directory) = command.get_current_dir() {
        text.push_str(&format!("  (in {})", directory.display()));
    }
    text
}

/// Run `command` with inherited stdio; fail unless it exits successfully.
pub fn run(command: &mut Command) -> Result<()> {
    let description = describe(command);
    eprintln!("$ {description}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{description}`"))?;
    check(status, &description)
}

/// Run `command` and return its stdout; fail unless it exits successfully.
/// Not echoed: used for quiet probes such as `rustup target list`.
pub fn output(command: &mut Command) -> Result<String> {
    let description = describe(command);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{description}`"))?;
    check(output.status, &description)?;
    String::from_utf8(output.stdout).with_context(|| format!("`{description}` printed non-UTF-8"))
}

/// Run `command` with inherited stdio, killing it if it outlives `limit`.
pub fn run_with_timeout(command: &mut Command, limit: Duration) -> Result<()> {
    let description = describe(command);
    eprintln!("$ {description}   (time limit {} s)", limit.as_secs());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{description}`"))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for child")? {
            return check(status, &description);
        }
        if Instant::now() >= deadline {
            // Kill only the child we started; reap it so it is not left a zombie.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{description}` did not finish within {} s and was killed",
                limit.as_secs()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn check(status: ExitStatus, description: &str) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("`{description}` failed ({status})")
    }
}

#[cfg(test)]
mod tests {
    //! Goal: failures and timeouts are reported with the command that caused
    //! them, and a timed-out child is killed rather than waited for.
    use super::*;

    #[test]
    fn failing_command_is_named_in_the_error() {
        let error = run(Command::new("false").arg("--flag"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`false --flag` failed"), "{error}");
    }

    #[test]
    fn output_returns_stdout() {
        assert_eq!(output(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }

    #[test]
    fn timed_out_child_is_killed() {
        let started = Instant::now();
        let error = run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(error.contains("did not finish within"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the child was waited for, not killed"
        );
    }

    #[test]
    fn describe_shows_environment_and_directory() {
        let mut command = Command::new("cargo");
        command
            .env("RUSTC_BOOTSTRAP", "1")
            .arg("build")
            .current_dir("/tmp");
        assert_eq!(
            describe(&command),
            "RUSTC_BOOTSTRAP=1 cargo build  (in /tmp)"
        );
    }
}
