//! The batching decisions for commands forwarded to one leader, without any
//! I/O: when a batch is sent and which queued commands go in it.
//!
//! Batching is natural: a command that arrives while fewer than
//! [`FORWARD_BATCHES_IN_FLIGHT_MAX`] batches are in flight is sent at once
//! (so one client pays no extra latency); the rest queue and leave together
//! as soon as a batch in flight comes back. A batch never exceeds
//! [`FORWARD_BATCH_COMMANDS_MAX`] commands or [`FORWARD_BATCH_BYTES_MAX`]
//! bytes, except that a single command always goes (it passed the command
//! size limit already). The queue holds at most
//! [`FORWARD_LANE_QUEUED_BYTES_MAX`] bytes: when it is full, commands whose
//! clients went away are dropped, and if it is still full the new command
//! is handed back to go in a call of its own.

use std::collections::VecDeque;

use crate::limits::{
    FORWARD_BATCH_BYTES_MAX, FORWARD_BATCH_COMMANDS_MAX, FORWARD_BATCHES_IN_FLIGHT_MAX,
    FORWARD_COMMAND_OVERHEAD_BYTES, FORWARD_LANE_QUEUED_BYTES_MAX,
};

/// A command waiting in a lane, as the lane needs to see it.
pub trait Queued {
    /// Its command's size in bytes.
    fn command_bytes(&self) -> usize;
    /// Whether the one waiting for its answer has gone (the client
    /// cancelled): it is dropped instead of sent.
    fn abandoned(&self) -> bool;
}

/// What became of a submitted command.
#[derive(Debug, PartialEq)]
pub enum Submitted<Item> {
    /// Queued; the caller must start a new sender (which then calls
    /// [`Lane::next_batch`] until it returns `None`).
    StartSender,
    /// Queued for a sender already running.
    Queued,
    /// Not queued: the queue is full. Nothing was sent.
    Full(Item),
}

/// The commands queued for one leader and the batches in flight to it.
#[derive(Debug)]
pub struct Lane<Item> {
    queue: VecDeque<Item>,
    /// Bytes of the queued commands, with their overhead.
    queued_bytes: usize,
    in_flight: usize,
}

impl<Item> Default for Lane<Item> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: 0,
        }
    }
}

/// What a command counts for in a batch and in the queue.
fn cost(item: &impl Queued) -> usize {
    item.command_bytes() + FORWARD_COMMAND_OVERHEAD_BYTES
}

impl<Item: Queued> Lane<Item> {
    /// Queue `item`, unless the queue is full.
    pub fn submit(&mut self, item: Item) -> Submitted<Item> {
        let cost = cost(&item);
        if self.queued_bytes + cost > FORWARD_LANE_QUEUED_BYTES_MAX {
            self.drop_abandoned();
        }
        // An empty queue takes any command (it passed the size limit).
        if !self.queue.is_empty() && self.queued_bytes + cost > FORWARD_LANE_QUEUED_BYTES_MAX {
            return Submitted::Full(item);
        }
        self.queued_bytes += cost;
        self.queue.push_back(item);
        if self.in_flight < FORWARD_BATCHES_IN_FLIGHT_MAX {
            self.in_flight += 1;
            Submitted::StartSender
        } else {
            Submitted::Queued
        }
    }

    /// Drop every queued command whose client went away: never sent.
    fn drop_abandoned(&mut self) {
        let mut dropped_bytes = 0;
        self.queue.retain(|item| {
            let abandoned = item.abandoned();
            if abandoned {
                dropped_bytes += cost(item);
            }
            !abandoned
        });
        self.queued_bytes -= dropped_bytes;
    }

    /// The front command, taken off the queue.
    fn pop(&mut self) -> Option<Item> {
        let item = self.queue.pop_front()?;
        self.queued_bytes -= cost(&item);
        Some(item)
    }

    /// The next batch for a sender to send, or `None` when nothing is
    /// queued: that sender then stops (its slot is released).
    pub fn next_batch(&mut self) -> Option<Vec<Item>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(item) = self.queue.front() {
            if item.abandoned() {
                self.pop();
                continue;
            }
            let cost = cost(item);
            let full = batch.len() >= FORWARD_BATCH_COMMANDS_MAX
                || (!batch.is_empty() && bytes + cost > FORWARD_BATCH_BYTES_MAX);
            if full {
                break;
            }
            bytes += cost;
            batch.extend(self.pop());
        }
        if batch.is_empty() {
            assert!(
                self.in_flight > 0,
                "a sender stopped that was never started"
            );
            self.in_flight -= 1;
            return None;
        }
        Some(batch)
    }

    /// Batches being sent now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Commands waiting for a sender.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes of the commands waiting, with their overhead.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the lane sends at once when idle, queues behind a full
    //! pipeline, and cuts batches at the count and byte limits.
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item {
        bytes: usize,
        gone: bool,
    }

    impl Queued for Item {
        fn command_bytes(&self) -> usize {
            self.bytes
        }
        fn abandoned(&self) -> bool {
            self.gone
        }
    }

    fn item(bytes: usize) -> Item {
        Item { bytes, gone: false }
    }

    /// The largest command one batch carries.
    const LARGEST: usize = FORWARD_BATCH_BYTES_MAX - FORWARD_COMMAND_OVERHEAD_BYTES;

    /// Queue largest commands until the next would not fit.
    fn fill(lane: &mut Lane<Item>, gone: bool) {
        let mut count = 0;
        while lane.queued_bytes() + FORWARD_BATCH_BYTES_MAX <= FORWARD_LANE_QUEUED_BYTES_MAX {
            let _ = lane.submit(Item {
                bytes: LARGEST,
                gone,
            });
            count += 1;
            assert!(
                count <= FORWARD_LANE_QUEUED_BYTES_MAX,
                "the queue never fills"
            );
        }
    }

    #[test]
    fn an_idle_lane_sends_the_first_command_alone_at_once() {
        let mut lane = Lane::default();
        assert_eq!(lane.submit(item(10)), Submitted::StartSender);
        assert_eq!(lane.next_batch(), Some(vec![item(10)]));
        assert_eq!(lane.next_batch(), None);
        assert_eq!(lane.in_flight(), 0);
    }

    #[test]
    fn commands_arriving_while_the_pipeline_is_full_leave_together() {
        let mut lane = Lane::default();
        for _ in 0..FORWARD_BATCHES_IN_FLIGHT_MAX {
            assert_eq!(lane.submit(item(1)), Submitted::StartSender);
            assert!(lane.next_batch().is_some());
        }
        for _ in 0..5 {
            assert_eq!(
                lane.submit(item(1)),
                Submitted::Queued,
                "no sender beyond the pipeline"
            );
        }
        assert_eq!(lane.queued(), 5);
        // The first sender comes back and takes all five in one batch.
        assert_eq!(lane.next_batch().map(|batch| batch.len()), Some(5));
        assert_eq!(lane.next_batch(), None);
        assert_eq!(lane.in_flight(), FORWARD_BATCHES_IN_FLIGHT_MAX - 1);
    }

    #[test]
    fn a_batch_stops_at_the_command_count() {
        let mut lane = Lane::default();
        for _ in 0..FORWARD_BATCH_COMMANDS_MAX + 3 {
            lane.submit(item(1));
        }
        assert_eq!(
            lane.next_batch().map(|batch| batch.len()),
            Some(FORWARD_BATCH_COMMANDS_MAX)
        );
        assert_eq!(lane.next_batch().map(|batch| batch.len()), Some(3));
    }

    #[test]
    fn a_batch_stops_before_the_byte_limit_but_a_large_command_still_goes() {
        let mut lane = Lane::default();
        let half = FORWARD_BATCH_BYTES_MAX / 2;
        lane.submit(item(half));
        lane.submit(item(half));
        lane.submit(item(
            FORWARD_BATCH_BYTES_MAX - FORWARD_COMMAND_OVERHEAD_BYTES,
        ));
        assert_eq!(lane.next_batch(), Some(vec![item(half)]));
        assert_eq!(lane.next_batch(), Some(vec![item(half)]));
        assert_eq!(
            lane.next_batch(),
            Some(vec![item(
                FORWARD_BATCH_BYTES_MAX - FORWARD_COMMAND_OVERHEAD_BYTES
            )])
        );
    }

    #[test]
    fn abandoned_commands_are_dropped_unsent() {
        let mut lane = Lane::default();
        lane.submit(Item {
            bytes: 1,
            gone: true,
        });
        lane.submit(item(2));
        let started = lane.in_flight();
        assert_eq!(lane.next_batch(), Some(vec![item(2)]));
        // Every sender finds nothing more (the abandoned one was dropped).
        for _ in 0..started {
            assert_eq!(lane.next_batch(), None);
        }
        assert_eq!(lane.in_flight(), 0);
        assert_eq!(lane.queued(), 0);
    }

    #[test]
    fn a_full_queue_hands_the_command_back_unsent() {
        let mut lane = Lane::default();
        fill(&mut lane, false);
        let queued = lane.queued();
        assert_eq!(lane.submit(item(LARGEST)), Submitted::Full(item(LARGEST)));
        assert_eq!(lane.queued(), queued, "nothing was queued");
        // Taking a batch makes room again.
        assert!(lane.next_batch().is_some());
        assert_eq!(lane.submit(item(LARGEST)), Submitted::Queued);
    }

    #[test]
    fn a_full_queue_drops_commands_whose_clients_went_away() {
        let mut lane = Lane::default();
        fill(&mut lane, true);
        assert_eq!(lane.submit(item(LARGEST)), Submitted::Queued);
        assert_eq!(lane.queued(), 1, "the abandoned commands were dropped");
        assert_eq!(
            lane.queued_bytes(),
            FORWARD_BATCH_BYTES_MAX,
            "their bytes with them"
        );
        assert_eq!(lane.next_batch(), Some(vec![item(LARGEST)]));
        assert_eq!(lane.queued_bytes(), 0);
    }

    #[test]
    fn an_empty_queue_takes_any_command() {
        let mut lane = Lane::default();
        let huge = FORWARD_LANE_QUEUED_BYTES_MAX * 2;
        assert_eq!(lane.submit(item(huge)), Submitted::StartSender);
        assert_eq!(lane.next_batch(), Some(vec![item(huge)]));
    }
}
