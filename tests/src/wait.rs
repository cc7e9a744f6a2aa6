//! `wait_for`: poll a condition until it holds or a deadline passes. Tests
//! wait for what they need (a leader, an index, a process exit), never for a
//! fixed time.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a condition returns: ready with a value, or not yet (with a reason
/// that is reported if the deadline passes).
pub trait Readiness {
    /// The value handed back once the condition holds.
    type Value;
    /// `Ok(value)` when ready, `Err(why not)` otherwise.
    fn readiness(self) -> Result<Self::Value, String>;
}

impl Readiness for bool {
    type Value = ();
    fn readiness(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("condition is false".to_string())
        }
    }
}

impl<T> Readiness for Option<T> {
    type Value = T;
    fn readiness(self) -> Result<T, String> {
        self.ok_or_else(|| "condition returned None".to_string())
    }
}

impl<T, E: Display> Readiness for Result<T, E> {
    type Value = T;
    fn readiness(self) -> Result<T, String> {
        self.map_err(|error| error.to_string())
    }
}

/// Poll `condition` every [`POLL_INTERVAL`] until it is ready and return its
/// value. Panics after `timeout` with `description` and the last reason the
/// condition gave, so a hung test names what it was waiting for.
pub async fn wait_for<F, Fut, R>(description: &str, timeout: Duration, mut condition: F) -> R::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
    R: Readiness,
{
    let started = Instant::now();
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        let last = match condition().await.readiness() {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        if started.elapsed() >= timeout {
            panic!(
                "timed out after {:.1?} ({attempts} attempts) waiting for: {description}; last: {last}",
                started.elapsed()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
