//! The runtime behind [`export_state_machine!`](crate::export_state_machine):
//! where the plugin instance lives between calls. Kept out of the macro so the
//! macro body stays small and this logic is unit-tested natively.

#[doc(hidden)]
pub mod __private {
    use crate::{Entry, RawStateMachine};
    use std::cell::RefCell;

    /// Holds the one state-machine instance of a component instance. Created
    /// lazily with `Default`, because a `thread_local!` initializer must be
    /// `const` to avoid a lazy-init check on every call.
    pub struct Slot<T> {
        machine: RefCell<Option<T>>,
    }

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<T> Slot<T> {
        /// An empty slot; the machine is created on first use.
        pub const fn new() -> Self {
            Slot {
                machine: RefCell::new(None),
            }
        }
    }

    impl<T: RawStateMachine> Slot<T> {
        /// Run `f` on the machine, creating it first if needed. The host never
        /// calls into an instance re-entrantly, so the borrow cannot fail.
        fn with_machine<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            let mut machine = self.machine.borrow_mut();
            f(machine.get_or_insert_with(T::default))
        }

        /// The `apply` export.
        pub fn apply(&self, entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
            self.with_machine(|machine| machine.apply(entry, command))
        }

        /// The `query` export.
        pub fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
            self.with_machine(|machine| machine.query(request))
        }

        /// The `snapshot` export.
        pub fn snapshot(&self) -> Vec<u8> {
            self.with_machine(|machine| machine.snapshot())
        }

        /// The `restore` export: the state is replaced only if the snapshot
        /// decodes, so a failed restore leaves the instance as it was.
        pub fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
            let restored = T::restore(snapshot)?;
            *self.machine.borrow_mut() = Some(restored);
            Ok(())
        }
    }

    /// Compile-time check used by the native expansion of the export macro,
    /// so a plugin that would not export in wasm fails natively too.
    pub const fn assert_exportable<T: RawStateMachine>() {}

    #[cfg(target_arch = "wasm32")]
    impl From<crate::bindings::Entry> for Entry {
        fn from(entry: crate::bindings::Entry) -> Self {
            Entry {
                index: entry.index,
                term: entry.term,
                time_ms: entry.time_ms,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the slot behaves like the host expects an instance to: lazy
    //! default state, restore that replaces state only on success.
    use super::__private::Slot;
    use crate::{Entry, RawStateMachine};

    /// Appends every command; restore accepts anything but `b"bad"`.
    #[derive(Default)]
    struct Log(Vec<u8>);

    impl RawStateMachine for Log {
        fn apply(&mut self, _entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
            self.0.extend_from_slice(command);
            Ok(self.0.clone())
        }
        fn query(&self, _request: &[u8]) -> Result<Vec<u8>, String> {
            Ok(self.0.clone())
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0.clone()
        }
        fn restore(snapshot: &[u8]) -> Result<Self, String> {
            if snapshot == b"bad" {
                Err("bad snapshot".into())
            } else {
                Ok(Log(snapshot.to_vec()))
            }
        }
    }

    const ENTRY: Entry = Entry {
        index: 1,
        term: 1,
        time_ms: 0,
    };

    #[test]
    fn slot_starts_from_default_and_keeps_state() {
        let slot = Slot::<Log>::new();
        assert_eq!(slot.snapshot(), b"");
        assert_eq!(slot.apply(&ENTRY, b"ab"), Ok(b"ab".to_vec()));
        assert_eq!(slot.apply(&ENTRY, b"c"), Ok(b"abc".to_vec()));
        assert_eq!(slot.query(b""), Ok(b"abc".to_vec()));
    }

    #[test]
    fn failed_restore_leaves_state_untouched() {
        let slot = Slot::<Log>::new();
        slot.apply(&ENTRY, b"keep").unwrap();
        assert_eq!(slot.restore(b"bad"), Err("bad snapshot".to_string()));
        assert_eq!(slot.snapshot(), b"keep");
        assert_eq!(slot.restore(b"new"), Ok(()));
        assert_eq!(slot.snapshot(), b"new");
    }
}
