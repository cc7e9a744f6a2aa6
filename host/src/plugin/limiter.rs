//! What one plugin instance may allocate, counted over everything its
//! component creates: all its linear memories together, all its tables
//! together, and how many instances, tables and memories it has.
//!
//! wasmtime's own `StoreLimits` caps each memory and each table on its own,
//! so a component with many memories could take that many times the cap. A
//! growth past a total fails with a trap, which depends only on the sizes
//! asked for, so it happens at the same instruction on every replica.

use wasmtime::ResourceLimiter;

use crate::limits::{
    PLUGIN_INSTANCES_MAX, PLUGIN_MEMORIES_MAX, PLUGIN_TABLE_ELEMENTS_MAX, PLUGIN_TABLES_MAX,
};

/// A growth the limiter refused: the trap it raises carries this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// All linear memories together would pass the cap.
    #[error("plugin memories would total {bytes} bytes, more than the {max} byte limit")]
    Memory { bytes: usize, max: usize },
    /// All tables together would pass the cap.
    #[error("plugin tables would total {elements} elements, more than the {max} element limit")]
    Table { elements: usize, max: usize },
}

/// Running totals of one store's memories and tables against their caps.
#[derive(Debug)]
pub struct PluginLimiter {
    memory_bytes_max: usize,
    table_elements_max: usize,
    memory_bytes: usize,
    table_elements: usize,
}

impl PluginLimiter {
    /// Limits for a store whose memories may total `memory_bytes_max`, with
    /// the table limit of [`PLUGIN_TABLE_ELEMENTS_MAX`].
    pub fn new(memory_bytes_max: usize) -> Self {
        Self::with_table_elements_max(memory_bytes_max, PLUGIN_TABLE_ELEMENTS_MAX)
    }

    fn with_table_elements_max(memory_bytes_max: usize, table_elements_max: usize) -> Self {
        Self {
            memory_bytes_max,
            table_elements_max,
            memory_bytes: 0,
            table_elements: 0,
        }
    }

    /// Cap the memories at `memory_bytes_max` from now on (memory already
    /// grown stays; further growth past the cap fails).
    pub fn set_memory_bytes_max(&mut self, memory_bytes_max: usize) {
        self.memory_bytes_max = memory_bytes_max;
    }

    /// Bytes of all memories so far.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Elements of all tables so far.
    pub fn table_elements(&self) -> usize {
        self.table_elements
    }
}

/// The new total when one of several items grows from `current` to
/// `desired`, or `None` past `max`.
fn grown_total(total: usize, current: usize, desired: usize, max: usize) -> Option<usize> {
    let grown = total.saturating_add(desired.saturating_sub(current));
    (grown <= max).then_some(grown)
}

impl ResourceLimiter for PluginLimiter {
    /// Called for every memory a component creates (from 0 bytes) and every
    /// `memory.grow`.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the memory's own declared maximum, `memory.grow` returns -1
        // as the wasm spec says (equally deterministic); nothing is counted.
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        match grown_total(self.memory_bytes, current, desired, self.memory_bytes_max) {
            Some(total) => {
                self.memory_bytes = total;
                Ok(true)
            }
            None => Err(wasmtime::Error::new(LimitExceeded::Memory {
                bytes: self
                    .memory_bytes
                    .saturating_add(desired.saturating_sub(current)),
                max: self.memory_bytes_max,
            })),
        }
    }

    /// The host could not perform a growth: trap rather than let the plugin
    /// see an answer that may differ between replicas. The instance is
    /// discarded after a trap, so the count need not be undone.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    /// Called for every table a component creates (from 0 elements) and
    /// every `table.grow`.
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        match grown_total(
            self.table_elements,
            current,
            desired,
            self.table_elements_max,
        ) {
            Some(total) => {
                self.table_elements = total;
                Ok(true)
            }
            None => Err(wasmtime::Error::new(LimitExceeded::Table {
                elements: self
                    .table_elements
                    .saturating_add(desired.saturating_sub(current)),
                max: self.table_elements_max,
            })),
        }
    }

    /// As for memories.
    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn instances(&self) -> usize {
        PLUGIN_INSTANCES_MAX
    }

    fn tables(&self) -> usize {
        PLUGIN_TABLES_MAX
    }

    fn memories(&self) -> usize {
        PLUGIN_MEMORIES_MAX
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the limiter counts totals across memories and tables, refuses
    //! with a trap past a total, and leaves declared maximums to wasm.
    use super::*;

    fn refusal(result: wasmtime::Result<bool>) -> LimitExceeded {
        let error = result.expect_err("the growth must trap");
        error
            .downcast_ref::<LimitExceeded>()
            .expect("the trap carries LimitExceeded")
            .clone()
    }

    #[test]
    fn memories_count_against_one_total() {
        let mut limiter = PluginLimiter::new(40);
        // Two memories created, then each grown.
        assert!(limiter.memory_growing(0, 10, None).unwrap());
        assert!(limiter.memory_growing(0, 15, None).unwrap());
        assert!(limiter.memory_growing(10, 20, None).unwrap());
        assert_eq!(limiter.memory_bytes(), 35);
        assert_eq!(
            refusal(limiter.memory_growing(15, 21, None)),
            LimitExceeded::Memory { bytes: 41, max: 40 }
        );
        assert_eq!(
            limiter.memory_bytes(),
            35,
            "a refused growth is not counted"
        );
        assert!(limiter.memory_growing(15, 20, None).unwrap());
        assert_eq!(limiter.memory_bytes(), 40);
        assert!(
            limiter.memory_growing(0, 0, None).unwrap(),
            "empty memories fit"
        );
    }

    #[test]
    fn a_declared_maximum_fails_growth_without_a_trap() {
        let mut limiter = PluginLimiter::new(40);
        assert!(!limiter.memory_growing(10, 30, Some(20)).unwrap());
        assert!(!limiter.table_growing(1, 3, Some(2)).unwrap());
        assert_eq!((limiter.memory_bytes(), limiter.table_elements()), (0, 0));
    }

    #[test]
    fn tables_count_against_one_total() {
        let mut limiter = PluginLimiter::with_table_elements_max(40, 100);
        assert!(limiter.table_growing(0, 60, None).unwrap());
        assert!(limiter.table_growing(0, 30, None).unwrap());
        assert_eq!(
            refusal(limiter.table_growing(30, 41, None)),
            LimitExceeded::Table {
                elements: 101,
                max: 100
            }
        );
        assert!(limiter.table_growing(60, 70, None).unwrap());
        assert_eq!(limiter.table_elements(), 100);
    }

    #[test]
    fn huge_requests_are_refused_not_overflowed() {
        let mut limiter = PluginLimiter::new(40);
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        let refused = refusal(limiter.memory_growing(0, usize::MAX, None));
        assert_eq!(
            refused,
            LimitExceeded::Memory {
                bytes: usize::MAX,
                max: 40
            }
        );
    }

    #[test]
    fn counts_are_the_named_limits() {
        let limiter = PluginLimiter::new(40);
        assert_eq!(limiter.instances(), PLUGIN_INSTANCES_MAX);
        assert_eq!(limiter.tables(), PLUGIN_TABLES_MAX);
        assert_eq!(limiter.memories(), PLUGIN_MEMORIES_MAX);
    }
}
