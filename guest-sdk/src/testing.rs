//! A native stand-in for the host, so plugins are tested with plain
//! `cargo test`: [`Harness`] numbers entries like the Raft log does, stamps a
//! fixed (settable) time, passes bytes through the same [`RawStateMachine`]
//! path the component exports use, and checks snapshot round-trips and golden
//! transcripts ([`Harness::assert_transcript`]). It also keeps the
//! plugin's [`Store`](crate::store::Store) in memory, with the host's
//! semantics (see [`memory_store`]).

pub mod memory_store;
mod transcript;

use std::cell::RefCell;

use memory_store::{Access, Contents, run_call};

use crate::{Entry, RawStateMachine};
use serde::Serialize;
use serde_json::Value;

/// Time stamped on entries until a test sets another: a fixed instant, so test
/// output never depends on the real clock (2023-11-14T22:13:20Z).
pub const DEFAULT_TIME_MS: u64 = 1_700_000_000_000;
/// Term stamped on entries until a test sets another.
pub const DEFAULT_TERM: u64 = 1;
/// Index of the first applied entry, as in Raft (index 0 is "nothing").
pub const FIRST_INDEX: u64 = 1;

/// Drives one state-machine instance the way the host does.
///
/// `apply`/`query` take any serializable value (a `serde_json::json!` literal
/// or your typed message) and return the JSON response, so tests check the
/// exact wire format; the `_raw` variants work on bytes for
/// [`RawStateMachine`] plugins with their own encoding.
pub struct Harness<T> {
    machine: T,
    next_index: u64,
    term: u64,
    time_ms: u64,
    /// The store's committed contents between calls. A `RefCell` because
    /// queries take `&self` yet must lend the store to the call.
    store: RefCell<Contents>,
}

impl<T: RawStateMachine> Default for Harness<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: RawStateMachine> Harness<T> {
    /// A harness around a fresh (`Default`) instance.
    pub fn new() -> Self {
        Self::with_machine(T::default())
    }

    /// A harness around a given instance, e.g. one built by `restore`.
    pub fn with_machine(machine: T) -> Self {
        Harness {
            machine,
            next_index: FIRST_INDEX,
            term: DEFAULT_TERM,
            time_ms: DEFAULT_TIME_MS,
            store: RefCell::new(Contents::new()),
        }
    }

    /// The store's contents, for assertions.
    pub fn store_contents(&self) -> Contents {
        self.store.borrow().clone()
    }

    /// Replace the store's contents, e.g. to start from a given state.
    pub fn set_store_contents(&mut self, contents: Contents) {
        *self.store.get_mut() = contents;
    }

    /// The instance, for assertions on its fields.
    pub fn machine(&self) -> &T {
        &self.machine
    }

    /// Time stamped on the following entries.
    pub fn set_time_ms(&mut self, time_ms: u64) {
        self.time_ms = time_ms;
    }

    /// Move the stamped time forward.
    pub fn advance_time_ms(&mut self, delta_ms: u64) {
        self.time_ms = self.time_ms.saturating_add(delta_ms);
    }

    /// Term stamped on the following entries.
    pub fn set_term(&mut self, term: u64) {
        self.term = term;
    }

    /// The entry the next `apply` will see.
    pub fn next_entry(&self) -> Entry {
        Entry {
            index: self.next_index,
            term: self.term,
            time_ms: self.time_ms,
        }
    }

    /// Apply raw command bytes as the next log entry. The entry is consumed
    /// even if the plugin returns `Err`: a rejected command is still committed.
    pub fn apply_raw(&mut self, command: &[u8]) -> Result<Vec<u8>, String> {
        let entry = self.next_entry();
        self.apply_raw_at(entry, command)
    }

    /// Apply raw command bytes with an explicit entry. Panics if the index
    /// does not increase, which the host guarantees never happens.
    pub fn apply_raw_at(&mut self, entry: Entry, command: &[u8]) -> Result<Vec<u8>, String> {
        assert!(
            entry.index >= self.next_index,
            "entry index {} does not increase (next is {})",
            entry.index,
            self.next_index
        );
        self.next_index = entry.index + 1;
        // A panic (the native trap) rolls the entry's store writes back
        // before it reaches the test, as the host discards a trapped entry's.
        let machine = &mut self.machine;
        run_call(self.store.get_mut(), Access::ReadWrite, || {
            machine.apply(&entry, command)
        })
    }

    /// Apply a command encoded as JSON; returns the JSON response.
    pub fn apply<C: Serialize + ?Sized>(&mut self, command: &C) -> Result<Value, String> {
        let bytes = self.apply_raw(&to_json(command))?;
        Ok(from_json(&bytes, "apply response"))
    }

    /// Query with raw bytes.
    pub fn query_raw(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        self.query_on(&self.machine, request)
    }

    /// Run `machine`'s query with this harness's store, read-only.
    fn query_on(&self, machine: &T, request: &[u8]) -> Result<Vec<u8>, String> {
        let mut store = self.store.borrow_mut();
        run_call(&mut store, Access::ReadOnly, || machine.query(request))
    }

    /// Query with a request encoded as JSON; returns the JSON response.
    pub fn query<Q: Serialize + ?Sized>(&self, query: &Q) -> Result<Value, String> {
        let bytes = self.query_raw(&to_json(query))?;
        Ok(from_json(&bytes, "query response"))
    }

    /// The instance's snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        self.machine.snapshot()
    }

    /// Restore a snapshot into a fresh instance and use it from now on, as the
    /// host does; on `Err` the current instance stays, as in the host.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.machine = T::restore(snapshot)?;
        Ok(())
    }

    /// Check that snapshot → restore into a fresh instance → snapshot gives
    /// the same bytes. Returns the restored instance for further checks.
    pub fn assert_snapshot_roundtrip(&self) -> T {
        let snapshot = self.snapshot();
        let restored = match T::restore(&snapshot) {
            Ok(restored) => restored,
            Err(error) => panic!(
                "restore rejected this instance's own snapshot: {error}\nsnapshot: {}",
                String::from_utf8_lossy(&snapshot)
            ),
        };
        let again = restored.snapshot();
        assert!(
            again == snapshot,
            "snapshot changed across restore\nbefore: {}\nafter:  {}",
            String::from_utf8_lossy(&snapshot),
            String::from_utf8_lossy(&again)
        );
        restored
    }

    /// [`assert_snapshot_roundtrip`](Self::assert_snapshot_roundtrip), then
    /// check that the restored instance answers every query exactly as this
    /// one does (same bytes, or the same error).
    pub fn assert_snapshot_roundtrip_with_queries<Q: Serialize>(&self, queries: &[Q]) -> T {
        let restored = self.assert_snapshot_roundtrip();
        for query in queries {
            let request = to_json(query);
            assert_eq!(
                self.query_on(&restored, &request),
                self.query_on(&self.machine, &request),
                "restored instance answers {} differently",
                String::from_utf8_lossy(&request)
            );
        }
        restored
    }
}

/// Encode a test's message; failing here is a bug in the test, so it panics.
fn to_json<M: Serialize + ?Sized>(message: &M) -> Vec<u8> {
    match serde_json::to_vec(message) {
        Ok(bytes) => bytes,
        Err(error) => panic!("test message does not encode as JSON: {error}"),
    }
}

/// Decode a plugin's response; a non-JSON response fails the test.
fn from_json(bytes: &[u8], what: &str) -> Value {
    match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(error) => {
            panic!(
                "{what} is not JSON ({error}): {}",
                String::from_utf8_lossy(bytes)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the harness numbers entries like the host, goes through the JSON
    //! adapter (so malformed input is an `Err`), and its round-trip check
    //! catches non-canonical snapshots.
    use super::*;
    use crate::StateMachine;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// Records the entry of every command under the command's name.
    #[derive(Default)]
    struct Recorder {
        seen: BTreeMap<String, Entry>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Command {
        Record(String),
        Fail,
    }

    impl StateMachine for Recorder {
        type Command = Command;
        type Response = [u64; 3];
        type Query = String;
        type QueryResponse = Option<u64>;

        fn apply(&mut self, entry: &Entry, command: Command) -> Result<[u64; 3], String> {
            match command {
                Command::Record(name) => {
                    self.seen.insert(name, *entry);
                    Ok([entry.index, entry.term, entry.time_ms])
                }
                Command::Fail => Err("failed on purpose".into()),
            }
        }

        fn query(&self, name: String) -> Result<Option<u64>, String> {
            Ok(self.seen.get(&name).map(|entry| entry.index))
        }

        fn snapshot(&self) -> Vec<u8> {
            let names: Vec<(&String, u64)> = self
                .seen
                .iter()
                .map(|(name, entry)| (name, entry.index))
                .collect();
            serde_json::to_vec(&names).unwrap_or_default()
        }

        fn restore(snapshot: &[u8]) -> Result<Self, String> {
            let names: Vec<(String, u64)> =
                serde_json::from_slice(snapshot).map_err(|error| error.to_string())?;
            let seen = names
                .into_iter()
                .map(|(name, index)| {
                    (
                        name,
                        Entry {
                            index,
                            term: 0,
                            time_ms: 0,
                        },
                    )
                })
                .collect();
            Ok(Recorder { seen })
        }
    }

    #[test]
    fn entries_are_numbered_and_stamped() {
        let mut harness = Harness::<Recorder>::new();
        assert_eq!(
            harness.apply(&json!({"record": "a"})),
            Ok(json!([1, 1, DEFAULT_TIME_MS]))
        );
        assert_eq!(
            harness.apply(&json!("fail")),
            Err("failed on purpose".to_string())
        );
        harness.set_term(3);
        harness.set_time_ms(5);
        harness.advance_time_ms(2);
        // The rejected command still consumed index 2.
        assert_eq!(harness.apply(&json!({"record": "b"})), Ok(json!([3, 3, 7])));
        assert_eq!(
            harness.next_entry(),
            Entry {
                index: 4,
                term: 3,
                time_ms: 7
            }
        );
        assert_eq!(harness.query(&json!("b")), Ok(json!(3)));
        assert_eq!(harness.query(&json!("zzz")), Ok(json!(null)));
    }

    #[test]
    fn malformed_command_is_an_error_naming_it() {
        let mut harness = Harness::<Recorder>::new();
        let error = harness.apply_raw(b"{\"record\":").unwrap_err();
        assert!(error.starts_with("malformed command:"), "{error}");
    }

    #[test]
    fn unknown_command_is_an_error_naming_the_variant() {
        let mut harness = Harness::<Recorder>::new();
        let error = harness.apply(&json!({"unknown": 1})).unwrap_err();
        assert!(error.contains("unknown variant"), "{error}");
    }

    #[test]
    fn malformed_query_is_an_error_naming_it() {
        let harness = Harness::<Recorder>::new();
        let error = harness.query_raw(&[0xff]).unwrap_err();
        assert!(error.starts_with("malformed query:"), "{error}");
    }

    #[test]
    fn explicit_entries_must_increase() {
        let mut harness = Harness::<Recorder>::new();
        let entry = Entry {
            index: 10,
            term: 2,
            time_ms: 1,
        };
        assert_eq!(
            harness.apply_raw_at(entry, b"{\"record\":\"x\"}"),
            Ok(b"[10,2,1]".to_vec())
        );
        assert_eq!(harness.next_entry().index, 11);
        let result = std::panic::catch_unwind(move || {
            harness.apply_raw_at(
                Entry {
                    index: 10,
                    term: 2,
                    time_ms: 1,
                },
                b"\"fail\"",
            )
        });
        assert!(result.is_err(), "a repeated index must panic");
    }

    #[test]
    fn roundtrip_and_restore() {
        let mut harness = Harness::<Recorder>::new();
        harness.apply(&json!({"record": "a"})).unwrap();
        harness.apply(&json!({"record": "b"})).unwrap();
        let restored = harness.assert_snapshot_roundtrip_with_queries(&["a", "b", "c"]);
        assert_eq!(restored.seen.len(), 2);

        let snapshot = harness.snapshot();
        let mut other = Harness::<Recorder>::new();
        assert!(other.restore(b"garbage").is_err());
        assert_eq!(other.restore(&snapshot), Ok(()));
        assert_eq!(other.query(&"a"), Ok(json!(1)));
    }

    /// Snapshots in insertion order: equal states can differ in bytes.
    #[derive(Default)]
    struct Unordered(Vec<u8>);

    impl RawStateMachine for Unordered {
        fn apply(&mut self, _entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
            self.0.extend_from_slice(command);
            Ok(Vec::new())
        }
        fn query(&self, _request: &[u8]) -> Result<Vec<u8>, String> {
            Ok(Vec::new())
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0.clone()
        }
        fn restore(snapshot: &[u8]) -> Result<Self, String> {
            // Non-canonical on purpose: restore reverses the bytes.
            Ok(Unordered(snapshot.iter().rev().copied().collect()))
        }
    }

    #[test]
    #[should_panic(expected = "snapshot changed across restore")]
    fn roundtrip_catches_non_canonical_snapshots() {
        let mut harness = Harness::<Unordered>::new();
        harness.apply_raw(b"ab").unwrap();
        harness.assert_snapshot_roundtrip();
    }
}
