//! One running `clusterhost run` process: spawned with its output appended
//! to a log file, killed for sure when dropped.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

/// A child process the harness owns. Cloning shares the same process.
#[derive(Clone)]
pub struct Process {
    child: Arc<Mutex<Child>>,
    pid: u32,
}

impl Process {
    /// Spawn `binary args`, appending stdout and stderr to `log`.
    pub fn spawn(binary: &Path, args: &[String], log: &Path) -> std::io::Result<Self> {
        Self::spawn_command(Command::new(binary), args, log)
    }

    /// Spawn `command` (a program, perhaps already set to run inside a
    /// network namespace) with `args`, appending its output to `log`.
    pub fn spawn_command(
        mut command: Command,
        args: &[String],
        log: &Path,
    ) -> std::io::Result<Self> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        writeln!(file, "==== clusterhost {} ====", args.join(" "))?;
        command
            .args(args)
            .env_remove("CLUSTERHOST_ENDPOINT")
            .env_remove("RUST_LOG")
            // Plain text logs: they are read by people and by `contains`.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        die_with_parent(&mut command);
        let child = command.spawn()?;
        Ok(Self {
            pid: child.id(),
            child: Arc::new(Mutex::new(child)),
        })
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    /// SIGKILL the process and reap it. Harmless if it already exited.
    pub fn kill(&self) -> ExitStatus {
        let mut child = self.lock();
        let _ = child.kill();
        child.wait().expect("wait for a killed child")
    }

    /// Send SIGTERM (graceful shutdown) without waiting. Harmless if the
    /// process already exited.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM, "SIGTERM");
    }

    /// Send SIGHUP (a node reloads its gossip keys).
    pub fn hangup(&self) {
        self.signal(libc::SIGHUP, "SIGHUP");
    }

    /// Freeze the process (SIGSTOP): it keeps its sockets but does nothing,
    /// as a long GC pause or an overloaded machine would.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP, "SIGSTOP");
    }

    /// Let a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT, "SIGCONT");
    }

    fn signal(&self, signal: libc::c_int, name: &str) {
        let mut child = self.lock();
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory effects. The child is not reaped (we
        // hold the only handle that reaps it), so the pid still names it.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            sent,
            0,
            "{name} to {pid}: {}",
            std::io::Error::last_os_error()
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Ask Linux to SIGKILL the child if the thread that spawned it dies, so that
/// even a test process killed outright (no unwinding, no `Drop`) leaves no
/// nodes behind. Tests spawn from their own thread, which outlives the nodes.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}
