//! Native state machines: Rust code with the same contract as the WIT world
//! (apply / query / snapshot / restore, bytes in and out), for programs that
//! embed clusterhost. They run in-process, unsandboxed: the determinism the
//! sandbox enforces for plugins is the implementer's duty here (see
//! [`StateMachine`]).
//!
//! In snapshots a native machine stands where a plugin's code would, as a
//! marker naming it, so a snapshot records which machine its state is for.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::instance::{EntryPosition, Fault, PluginResult};
use super::runtime::{ApplyError, RestoreError};
use super::worker::ApplyOutcome;
use crate::limits::PluginLimits;

/// Where an entry sits in the log, as a state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Log index.
    pub index: u64,
    /// Term of the leader that proposed it.
    pub term: u64,
    /// The leader's clock when it proposed the entry, ms since the Unix
    /// epoch: the only time a state machine may use.
    pub time_ms: u64,
}

/// A replicated state machine written in Rust.
///
/// Every replica calls `apply` with the same commands in the same order and
/// must end in the same state with the same answers. So an implementation
/// must not read the clock (use [`Entry::time_ms`]), draw random numbers
/// (derive them from the entry), read the environment, files or the
/// network, or depend on iteration order that can differ between processes
/// (`HashMap` with a random seed: use `BTreeMap`). It must not panic: a
/// panic is caught and fails that entry, but the state may be left half
/// changed, unlike a plugin's trap.
pub trait StateMachine: Send + 'static {
    /// Apply a committed command; `Err` rejects it (nothing may change).
    fn apply(&mut self, entry: Entry, command: &[u8]) -> Result<Vec<u8>, String>;
    /// Answer a read; must not change the state.
    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String>;
    /// The whole state as bytes.
    fn snapshot(&self) -> Result<Vec<u8>, String>;
    /// Replace the state with one `snapshot` produced.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// A state machine written with the plugin SDK (its JSON `StateMachine` or
/// its `RawStateMachine`), run natively: the same crate can be compiled
/// into a plugin or embedded.
#[derive(Debug, Default)]
pub struct SdkMachine<T>(pub T);

impl<T: clusterhost_sdk::RawStateMachine + Send + 'static> StateMachine for SdkMachine<T> {
    fn apply(&mut self, entry: Entry, command: &[u8]) -> Result<Vec<u8>, String> {
        let entry = clusterhost_sdk::Entry {
            index: entry.index,
            term: entry.term,
            time_ms: entry.time_ms,
        };
        clusterhost_sdk::RawStateMachine::apply(&mut self.0, &entry, command)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        clusterhost_sdk::RawStateMachine::query(&self.0, request)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(clusterhost_sdk::RawStateMachine::snapshot(&self.0))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0 = clusterhost_sdk::RawStateMachine::restore(snapshot)?;
        Ok(())
    }
}

/// Marks snapshot "code" that names a native machine instead of a plugin.
const NATIVE_CODE_PREFIX: &[u8] = b"clusterhost-native-state-machine:";

/// The snapshot marker for the native machine called `name`.
pub fn native_code(name: &str) -> Arc<[u8]> {
    [NATIVE_CODE_PREFIX, name.as_bytes()].concat().into()
}

/// The native machine's name, if `code` is a native marker.
pub fn native_name(code: &[u8]) -> Option<&str> {
    code.strip_prefix(NATIVE_CODE_PREFIX)
        .and_then(|name| std::str::from_utf8(name).ok())
}

/// A native state machine as the plugin worker runs it.
pub struct NativeMachine {
    name: String,
    /// Its snapshot marker, made once.
    code: Arc<[u8]>,
    machine: Box<dyn StateMachine>,
    last_applied: Option<EntryPosition>,
    response_bytes_max: usize,
    state_size_bytes: Option<usize>,
}

impl std::fmt::Debug for NativeMachine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NativeMachine")
            .field("name", &self.name)
            .field("last_applied", &self.last_applied)
            .finish()
    }
}

impl NativeMachine {
    /// `machine`, known in snapshots as `name`.
    pub fn new(name: impl Into<String>, machine: Box<dyn StateMachine>) -> Self {
        let name = name.into();
        Self {
            code: native_code(&name),
            name,
            machine,
            last_applied: None,
            response_bytes_max: PluginLimits::default().response_bytes_max,
            state_size_bytes: None,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its snapshot marker.
    pub fn code(&self) -> Arc<[u8]> {
        self.code.clone()
    }

    /// The last entry applied.
    pub fn last_applied(&self) -> Option<EntryPosition> {
        self.last_applied
    }

    /// Size of the last snapshot taken or restored.
    pub fn state_size_bytes(&self) -> Option<usize> {
        self.state_size_bytes
    }

    /// Only the response bound applies to native code.
    pub fn set_limits(&mut self, limits: PluginLimits) {
        self.response_bytes_max = limits.response_bytes_max;
    }

    /// Apply one committed command.
    pub fn apply(&mut self, position: EntryPosition, command: &[u8]) -> ApplyOutcome {
        let entry = Entry {
            index: position.index,
            term: position.term,
            time_ms: position.time_ms,
        };
        let machine = &mut self.machine;
        let outcome = guarded(|| machine.apply(entry, command));
        self.last_applied = Some(position);
        match outcome {
            Ok(Ok(bytes)) if bytes.len() > self.response_bytes_max => {
                Err(ApplyError::Fault(Fault::OversizedOutput {
                    bytes: bytes.len(),
                    max: self.response_bytes_max,
                }))
            }
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(message)) => Err(ApplyError::Rejected(message)),
            Err(fault) => Err(ApplyError::Fault(fault)),
        }
    }

    /// Answer a read.
    pub fn query(&self, request: &[u8]) -> Result<PluginResult, Fault> {
        guarded(|| self.machine.query(request))
    }

    /// The state as bytes.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, Fault> {
        let state =
            guarded(|| self.machine.snapshot())?.map_err(|message| Fault::Trapped { message })?;
        self.state_size_bytes = Some(state.len());
        Ok(state)
    }

    /// Replace the state with `state`, taken after `position`.
    pub fn restore(&mut self, position: EntryPosition, state: &[u8]) -> Result<(), RestoreError> {
        let machine = &mut self.machine;
        guarded(|| machine.restore(state))
            .map_err(RestoreError::Fault)?
            .map_err(RestoreError::Refused)?;
        self.last_applied = Some(position);
        self.state_size_bytes = Some(state.len());
        Ok(())
    }
}

/// Run `call`, turning a panic into a fault.
fn guarded<T>(call: impl FnOnce() -> T) -> Result<T, Fault> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the state machine panicked".to_string());
        Fault::Trapped { message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Counter(i64);

    impl StateMachine for Counter {
        fn apply(&mut self, _entry: Entry, command: &[u8]) -> Result<Vec<u8>, String> {
            match command {
                b"panic" => panic!("asked to"),
                b"big" => Ok(vec![0; 5 * 1024 * 1024]),
                _ => {
                    self.0 += 1;
                    Ok(self.0.to_string().into_bytes())
                }
            }
        }
        fn query(&self, _request: &[u8]) -> Result<Vec<u8>, String> {
            Ok(self.0.to_string().into_bytes())
        }
        fn snapshot(&self) -> Result<Vec<u8>, String> {
            Ok(self.0.to_string().into_bytes())
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
            let text = std::str::from_utf8(snapshot).map_err(|error| error.to_string())?;
            self.0 = text.parse().map_err(|_| format!("not a count: {text}"))?;
            Ok(())
        }
    }

    fn at(index: u64) -> EntryPosition {
        EntryPosition {
            index,
            term: 1,
            time_ms: 0,
        }
    }

    #[test]
    fn a_native_machine_applies_snapshots_and_restores() {
        let mut machine = NativeMachine::new("counter", Box::<Counter>::default());
        assert_eq!(machine.apply(at(1), b"add"), Ok(b"1".to_vec()));
        let state = machine.snapshot().expect("snapshot");
        let mut other = NativeMachine::new("counter", Box::<Counter>::default());
        other.restore(at(1), &state).expect("restore");
        assert_eq!(other.query(b"get"), Ok(Ok(b"1".to_vec())));
        assert_eq!(other.last_applied(), Some(at(1)));
        assert!(matches!(
            other.restore(at(1), b"garbage"),
            Err(RestoreError::Refused(_))
        ));
    }

    #[test]
    fn a_panic_or_an_oversized_answer_fails_the_entry_not_the_node() {
        let mut machine = NativeMachine::new("counter", Box::<Counter>::default());
        assert!(matches!(
            machine.apply(at(1), b"panic"),
            Err(ApplyError::Fault(Fault::Trapped { .. }))
        ));
        assert!(matches!(
            machine.apply(at(2), b"big"),
            Err(ApplyError::Fault(Fault::OversizedOutput { .. }))
        ));
        assert_eq!(machine.apply(at(3), b"add"), Ok(b"1".to_vec()));
    }

    /// A JSON state machine written with the plugin SDK, run natively.
    #[derive(Default)]
    struct SdkCounter(i64);

    impl clusterhost_sdk::StateMachine for SdkCounter {
        type Command = i64;
        type Response = i64;
        type Query = ();
        type QueryResponse = i64;
        fn apply(&mut self, _entry: &clusterhost_sdk::Entry, add: i64) -> Result<i64, String> {
            self.0 = self.0.checked_add(add).ok_or("overflow")?;
            Ok(self.0)
        }
        fn query(&self, _query: ()) -> Result<i64, String> {
            Ok(self.0)
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0.to_string().into_bytes()
        }
        fn restore(snapshot: &[u8]) -> Result<Self, String> {
            let text = std::str::from_utf8(snapshot).map_err(|error| error.to_string())?;
            text.parse()
                .map(SdkCounter)
                .map_err(|error| error.to_string())
        }
    }

    #[test]
    fn an_sdk_state_machine_runs_natively() {
        let sdk = SdkMachine(SdkCounter::default());
        let mut machine = NativeMachine::new("sdk-counter", Box::new(sdk));
        assert_eq!(machine.apply(at(1), b"5"), Ok(b"5".to_vec()));
        assert!(matches!(
            machine.apply(at(2), b"not json"),
            Err(ApplyError::Rejected(_))
        ));
        let state = machine.snapshot().expect("snapshot");
        let mut other =
            NativeMachine::new("sdk-counter", Box::new(SdkMachine(SdkCounter::default())));
        other.restore(at(2), &state).expect("restore");
        assert_eq!(other.query(b"null"), Ok(Ok(b"5".to_vec())));
    }

    #[test]
    fn markers_name_the_machine() {
        assert_eq!(native_name(&native_code("kv")), Some("kv"));
        assert_eq!(native_name(b"\0asm"), None);
    }
}
