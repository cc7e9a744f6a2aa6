//! The events of one key's operations by time, in a linked list the search
//! lifts operations out of and puts them back into.

use super::model::{End, RegisterOperation};

/// A point in time where an operation (its index into the key's
/// operations) is invoked, returns, or stops being relevant.
#[derive(Clone, Copy, Debug)]
pub(super) enum Event {
    Invoke(usize),
    Return(usize),
    Deadline(usize),
}

/// No node: the end of the list.
const END: usize = usize::MAX;

/// Events by time in a doubly linked list that operations can be lifted out
/// of and put back into in reverse order (as in dancing links). Nodes are
/// event positions; the head is an extra node after the last event.
pub(super) struct EntryList {
    events: Vec<Event>,
    pub(super) next: Vec<usize>,
    previous: Vec<usize>,
    pub(super) invoke_node: Vec<usize>,
    /// The node of each operation's return or deadline, if any.
    end_node: Vec<Option<usize>>,
}

impl EntryList {
    pub(super) fn new(operations: &[RegisterOperation]) -> Self {
        // At equal times: invocations, then returns, then deadlines (after
        // the returns they wait for).
        let mut timed = Vec::with_capacity(operations.len() * 2);
        for (id, operation) in operations.iter().enumerate() {
            timed.push((operation.invoked_ns, 0, id, Event::Invoke(id)));
            match operation.end {
                End::Returns(time_ns) => timed.push((time_ns, 1, id, Event::Return(id))),
                End::RelevantUntil(time_ns) => timed.push((time_ns, 2, id, Event::Deadline(id))),
                End::Never => {}
            }
        }
        timed.sort_unstable_by_key(|&(time_ns, rank, id, _)| (time_ns, rank, id));
        let events: Vec<Event> = timed.into_iter().map(|(.., event)| event).collect();
        let head = events.len();
        // head -> 0 -> 1 -> ... -> head - 1 -> END.
        let next = (0..=head)
            .map(|node| match node {
                _ if node == head && head > 0 => 0,
                _ if node + 1 < head => node + 1,
                _ => END,
            })
            .collect();
        let previous = (0..=head)
            .map(|node| if node == 0 { head } else { node - 1 })
            .collect();
        let mut invoke_node = vec![head; operations.len()];
        let mut end_node = vec![None; operations.len()];
        for (node, event) in events.iter().enumerate() {
            match *event {
                Event::Invoke(id) => invoke_node[id] = node,
                Event::Return(id) | Event::Deadline(id) => end_node[id] = Some(node),
            }
        }
        Self {
            events,
            next,
            previous,
            invoke_node,
            end_node,
        }
    }

    pub(super) fn first(&self) -> usize {
        self.next[self.events.len()]
    }

    pub(super) fn event(&self, node: usize) -> Option<Event> {
        self.events.get(node).copied()
    }

    fn unlink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = next;
        if next != END {
            self.previous[next] = previous;
        }
    }

    /// Undo [`Self::unlink`]: the node still knows its neighbours.
    fn relink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = node;
        if next != END {
            self.previous[next] = node;
        }
    }

    pub(super) fn lift(&mut self, id: usize) {
        self.unlink(self.invoke_node[id]);
        if let Some(node) = self.end_node[id] {
            self.unlink(node);
        }
    }

    pub(super) fn unlift(&mut self, id: usize) {
        if let Some(node) = self.end_node[id] {
            self.relink(node);
        }
        self.relink(self.invoke_node[id]);
    }
}
