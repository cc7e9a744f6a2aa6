//! When session commands may share one plugin batch.
//!
//! Session decisions are made one entry at a time in log order: admit, apply,
//! record. A batch admits several before any of them is recorded. Replicas
//! batch entries differently, so a batch must decide exactly what one entry
//! at a time would, or the replicas diverge. Two things can differ:
//!
//! - a command of a client already in the batch (a retry of a queued command
//!   must be answered from the first one's record, which does not exist yet);
//! - the bound on kept bytes: a queued command's record raises them, which
//!   can make a later admission "too many outstanding" or a later record
//!   "not kept".
//!
//! So a batch holds at most one command per client, and only as many as
//! cannot reach the bound whatever they answer: counted from the kept bytes
//! before the batch's first admission, each at the largest response kept.
//! Between records nothing but the queued records raises the kept bytes
//! (admissions and expiry only drop responses), so within that room every
//! admission and record decides as it would alone.

use std::collections::BTreeSet;

use super::sessions::Sessions;
use crate::limits::{
    SESSION_KEPT_ENTRY_OVERHEAD_BYTES, SESSION_RESPONSE_BYTES_KEPT_MAX, SESSIONS_RETAINED_BYTES_MAX,
};

/// The most one queued session command can add to the kept bytes.
const KEPT_BYTES_PER_COMMAND_MAX: usize =
    SESSION_KEPT_ENTRY_OVERHEAD_BYTES + SESSION_RESPONSE_BYTES_KEPT_MAX;

/// The session commands queued for the plugin and not yet recorded.
#[derive(Debug, Default)]
pub struct SessionBatch {
    /// The clients with a command queued.
    clients: BTreeSet<u64>,
    /// The kept bytes before the first queued command was admitted.
    kept_bytes_before: usize,
}

impl SessionBatch {
    /// Whether a command of `client_id` may be admitted into this batch
    /// (otherwise the batch is applied and recorded first). The first one
    /// always may: alone, it is decided as it would be alone.
    pub fn admits(&self, client_id: u64) -> bool {
        if self.clients.is_empty() {
            return true;
        }
        let queued_after = self.clients.len() + 1;
        !self.clients.contains(&client_id)
            && queued_after
                .checked_mul(KEPT_BYTES_PER_COMMAND_MAX)
                .and_then(|room| room.checked_add(self.kept_bytes_before))
                .is_some_and(|worst| worst <= SESSIONS_RETAINED_BYTES_MAX)
    }

    /// Note that a command of `client_id` is about to be admitted into the
    /// batch (call before [`Sessions::admit`]).
    pub fn join(&mut self, sessions: &Sessions, client_id: u64) {
        if self.clients.is_empty() {
            self.kept_bytes_before = sessions.kept_bytes();
        }
        self.clients.insert(client_id);
    }

    /// The batch was applied and recorded.
    pub fn clear(&mut self) {
        self.clients.clear();
        self.kept_bytes_before = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::sessions::{Admission, SessionStamp};

    #[test]
    fn the_first_command_always_joins() {
        let batch = SessionBatch::default();
        assert!(batch.admits(7));
    }

    #[test]
    fn one_command_per_client() {
        let sessions = Sessions::default();
        let mut batch = SessionBatch::default();
        batch.join(&sessions, 7);
        assert!(!batch.admits(7), "a second command of client 7");
        assert!(batch.admits(8));
        batch.clear();
        assert!(batch.admits(7), "a new batch");
    }

    /// How many commands of distinct clients one batch takes.
    fn batch_room(sessions: &Sessions) -> usize {
        let mut batch = SessionBatch::default();
        let mut joined = 0;
        for client_id in 1..=SESSIONS_RETAINED_BYTES_MAX as u64 {
            if !batch.admits(client_id) {
                break;
            }
            batch.join(sessions, client_id);
            joined += 1;
        }
        joined
    }

    #[test]
    fn only_as_many_as_cannot_reach_the_kept_bound() {
        let room = SESSIONS_RETAINED_BYTES_MAX / KEPT_BYTES_PER_COMMAND_MAX;
        assert_eq!(batch_room(&Sessions::default()), room);

        // One kept response of the largest kept size leaves room for one less.
        let mut sessions = Sessions::default();
        let client_id = 1;
        sessions.open(client_id, std::time::Duration::from_secs(60));
        let stamp = SessionStamp {
            client_id,
            sequence: 1,
            first_outstanding: 1,
        };
        assert_eq!(sessions.admit(stamp, &[0; 32]), Admission::Apply);
        let answer = Ok(vec![0; SESSION_RESPONSE_BYTES_KEPT_MAX]);
        sessions.record(stamp, [0; 32], 2, &answer);
        assert_eq!(sessions.kept_bytes(), KEPT_BYTES_PER_COMMAND_MAX);
        assert_eq!(batch_room(&sessions), room - 1);
    }
}
