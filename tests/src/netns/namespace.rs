//! Running inside a host of a [`TestNetwork`]: a program spawned into its
//! network namespace, or a thread that enters it.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::{NETNS_DIRECTORY, TestNetwork};

impl TestNetwork {
    /// The name of `host`'s network namespace (for `ip netns exec` by hand).
    pub fn namespace(&self, host: usize) -> String {
        self.assert_host(host);
        format!("{}-{host}", self.name)
    }

    /// A command running `program` inside `host`'s namespace. The child
    /// enters the namespace between fork and exec (`setns`), so the spawned
    /// process is `program` itself: its pid is the one to SIGKILL, SIGSTOP
    /// or SIGCONT. Spawning fails if the network was torn down.
    pub fn command(&self, host: usize, program: &Path) -> Command {
        let path = namespace_c_path(&self.namespace(host));
        let mut command = Command::new(program);
        // SAFETY: the closure only calls open, setns and close, which are
        // async-signal-safe, on a path allocated before the fork.
        unsafe {
            command.pre_exec(move || enter_namespace(&path));
        }
        command
    }

    /// Run `work` on a thread inside `host`'s namespace and return its
    /// result. Sockets it creates stay in that namespace after it returns,
    /// so a test can bind or connect "as" a host. A panic in `work` is
    /// propagated.
    pub fn run_in_host<T, F>(&self, host: usize, work: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let namespace = self.namespace(host);
        let path = namespace_c_path(&namespace);
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                enter_namespace(&path).with_context(|| format!("enter namespace {namespace}"))?;
                Ok(work())
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

pub(super) fn namespace_c_path(namespace: &str) -> CString {
    let path = Path::new(NETNS_DIRECTORY).join(namespace);
    CString::new(path.as_os_str().as_bytes()).expect("namespace path has no NUL")
}

/// Move the calling thread into the network namespace at `path`. Only
/// async-signal-safe calls: it runs between fork and exec.
pub(super) fn enter_namespace(path: &CStr) -> std::io::Result<()> {
    // SAFETY: `path` is a valid C string; the descriptor is closed below.
    let descriptor = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if descriptor == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: setns on a descriptor we own; it changes only this thread.
    let entered = unsafe { libc::setns(descriptor, libc::CLONE_NEWNET) };
    let result = if entered == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: we opened it and nothing else uses it.
    unsafe { libc::close(descriptor) };
    result
}
