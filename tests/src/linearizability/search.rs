//! The depth-first search for an order of one key's operations (Wing &
//! Gong with Lowe's just-in-time linearization and memoization).

use super::checker::Limits;
use super::entries::{EntryList, Event};
use super::memo::{Bitset, Cache};
use super::model::{Register, RegisterOperation};

/// An operation placed (or dropped at its deadline), and the register
/// before it.
struct Frame {
    id: usize,
    register_before: Register,
    dropped: bool,
}

/// Where a search could go no further: the return of `operation` was
/// reached with `depth` operations placed and the register at `register`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stuck {
    pub(super) operation: usize,
    pub(super) depth: usize,
    pub(super) register: Register,
}

pub(super) enum SearchOutcome {
    Linearizable,
    /// The deepest place the search got stuck.
    Stuck(Stuck),
    /// A bound was hit; why.
    Exhausted(String),
}

/// The depth-first search over one key's events.
pub(super) struct Search<'k> {
    operations: &'k [RegisterOperation],
    entries: EntryList,
    placed: Bitset,
    cache: Cache,
    stack: Vec<Frame>,
    /// Frames on the stack that dropped an operation rather than placed it.
    dropped: usize,
    register: Register,
    /// Operations that return and are not placed yet; done at zero.
    returning_left: usize,
    pub(super) steps: u64,
    pub(super) deepest: Option<Stuck>,
}

impl<'k> Search<'k> {
    pub(super) fn new(operations: &'k [RegisterOperation]) -> Self {
        Self {
            operations,
            entries: EntryList::new(operations),
            placed: Bitset::new(operations.len()),
            cache: Cache::default(),
            stack: Vec::new(),
            dropped: 0,
            register: None,
            returning_left: operations.iter().filter(|op| op.returns()).count(),
            steps: 0,
            deepest: None,
        }
    }

    /// Search until every returning operation is placed (operations of
    /// unknown outcome still pending are left out: they never took effect),
    /// every order is ruled out, or a bound is hit.
    pub(super) fn run(&mut self, limits: Limits) -> SearchOutcome {
        let mut node = self.entries.first();
        while self.returning_left > 0 {
            self.steps += 1;
            if self.steps > limits.search_steps_max {
                return SearchOutcome::Exhausted(format!(
                    "search stopped after {} steps",
                    limits.search_steps_max
                ));
            }
            if self.cache.bytes > limits.cache_bytes_max {
                return SearchOutcome::Exhausted(format!(
                    "search stopped with {} bytes of memo cache after {} steps",
                    self.cache.bytes, self.steps
                ));
            }
            // While a returning operation is unplaced its return is in the
            // list, so the walk meets it before the end.
            let Some(event) = self.entries.event(node) else {
                unreachable!("walked past every pending return");
            };
            let next = match event {
                Event::Invoke(id) => Some(self.try_place(id, node)),
                Event::Deadline(id) => self.try_drop(id),
                Event::Return(id) => {
                    self.note_stuck(id);
                    None
                }
            };
            node = match next.or_else(|| self.backtrack()) {
                Some(node) => node,
                None => return self.stuck(),
            };
        }
        SearchOutcome::Linearizable
    }

    /// Place operation `id` (its invocation at `node`) next if its result
    /// fits and the state it leads to is new; returns the node to look at.
    fn try_place(&mut self, id: usize, node: usize) -> usize {
        let operation = &self.operations[id];
        if let Some(after) = operation.step(self.register) {
            self.placed.set(id);
            if self.cache.insert(&self.placed, after) {
                self.push(id, after, false);
                return self.entries.first();
            }
            self.placed.clear(id);
        }
        self.entries.next[node]
    }

    /// Drop operation `id` at its deadline unless the state that leads to
    /// was seen; returns the node to look at, or `None` to backtrack.
    fn try_drop(&mut self, id: usize) -> Option<usize> {
        self.placed.set(id);
        if self.cache.insert(&self.placed, self.register) {
            self.push(id, self.register, true);
            return Some(self.entries.first());
        }
        self.placed.clear(id);
        None
    }

    /// Record operation `id` (its bit already set) as placed or dropped,
    /// leaving the register at `after`.
    fn push(&mut self, id: usize, after: Register, dropped: bool) {
        self.stack.push(Frame {
            id,
            register_before: self.register,
            dropped,
        });
        self.register = after;
        self.entries.lift(id);
        self.dropped += usize::from(dropped);
        if self.operations[id].returns() {
            self.returning_left -= 1;
        }
    }

    /// Take back placements up to the last one with an alternative left;
    /// returns the node after its invocation, or `None` if there is none.
    /// A dropped operation has no alternative: keeping it pending past its
    /// deadline would only repeat the orders explored without it.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let frame = self.stack.pop()?;
            self.entries.unlift(frame.id);
            self.placed.clear(frame.id);
            self.register = frame.register_before;
            self.dropped -= usize::from(frame.dropped);
            if self.operations[frame.id].returns() {
                self.returning_left += 1;
            }
            if !frame.dropped {
                return Some(self.entries.next[self.entries.invoke_node[frame.id]]);
            }
        }
    }

    fn note_stuck(&mut self, id: usize) {
        let depth = self.stack.len() - self.dropped;
        if self.deepest.is_none_or(|deepest| depth > deepest.depth) {
            self.deepest = Some(Stuck {
                operation: id,
                depth,
                register: self.register,
            });
        }
    }

    fn stuck(&self) -> SearchOutcome {
        match self.deepest {
            Some(stuck) => SearchOutcome::Stuck(stuck),
            // Every failed branch ends at a return, which is noted.
            None => unreachable!("the search gave up without meeting a return"),
        }
    }
}
