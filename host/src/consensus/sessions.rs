//! Client sessions: what makes a retried write apply once (the Raft
//! dissertation, §6.3). A client opens a session through the log and gets
//! its id (the index of that entry); each command then carries the session,
//! a sequence number and the lowest sequence whose response the client still
//! waits for. Every replica keeps, per session, the responses the client may
//! still ask for again; a retry gets the kept response instead of a second
//! apply.
//!
//! Everything here is decided by log content alone: time is the largest
//! leader stamp seen so far (never a node's clock), so every replica opens,
//! answers and expires the same sessions at the same entries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::digest::DigestBytes;
use crate::limits::{
    SESSION_KEPT_ENTRY_OVERHEAD_BYTES, SESSION_OUTSTANDING_MAX, SESSION_RESPONSE_BYTES_KEPT_MAX,
    SESSION_TIMEOUT_MAX, SESSION_TIMEOUT_MIN, SESSIONS_MAX, SESSIONS_RETAINED_BYTES_MAX,
};
use crate::plugin::{ApplyError, ApplyOutcome};

/// Which session a command belongs to and where it stands in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SessionStamp {
    /// The session's id: the log index of the entry that opened it.
    pub client_id: u64,
    /// This command's number in the session (from 1, one per command).
    pub sequence: u64,
    /// The lowest sequence the client has no response for yet: responses
    /// below it are no longer kept.
    pub first_outstanding: u64,
}

/// Why a session command is not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SessionRefusal {
    /// No such session: never opened, or expired.
    NotOpen,
    /// The client already said it received this command's response.
    Acknowledged,
    /// The session has too many commands whose responses are kept.
    TooManyOutstanding,
    /// The command was applied, but its response was too large to keep.
    ResponseNotKept,
    /// The stamp contradicts itself (sequence 0, or below first outstanding).
    Invalid,
    /// This sequence was applied with a different command: the client
    /// reused a sequence number.
    Mismatch,
}

impl SessionRefusal {
    /// A message for the client.
    pub fn message(self) -> &'static str {
        match self {
            SessionRefusal::NotOpen => {
                "the session is not open (it expired or never existed): open a new one"
            }
            SessionRefusal::Acknowledged => {
                "this command's response was already acknowledged by the client; it was applied once"
            }
            SessionRefusal::TooManyOutstanding => {
                "the session has too many commands without an acknowledged response"
            }
            SessionRefusal::ResponseNotKept => {
                "this command was applied once, but its response was too large to keep for a retry"
            }
            SessionRefusal::Invalid => {
                "the session stamp is invalid: sequence numbers start at 1 and are not below first_outstanding"
            }
            SessionRefusal::Mismatch => {
                "this sequence number was applied with a different command; a new command needs a new sequence number"
            }
        }
    }
}

/// What to do with a session command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Apply it (then [`Sessions::record`] its outcome).
    Apply,
    /// It was applied before at `index`: answer with its kept outcome.
    Replay {
        /// The entry it was applied at.
        index: u64,
        /// Its outcome then.
        outcome: ApplyOutcome,
    },
    /// Refuse it, changing nothing in the plugin.
    Refuse(SessionRefusal),
}

/// What is kept of an applied command: the digest of its bytes (a retry
/// must carry the same command) and its outcome, if it was small enough.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Kept {
    command: DigestBytes,
    /// `None`: applied, but the response was too large to keep.
    outcome: Option<(u64, ApplyOutcome)>,
}

impl Kept {
    /// What it counts against [`SESSIONS_RETAINED_BYTES_MAX`]: its bytes
    /// and a fixed overhead, so that many tiny entries are bounded too.
    fn size_bytes(&self) -> usize {
        SESSION_KEPT_ENTRY_OVERHEAD_BYTES
            + self
                .outcome
                .as_ref()
                .map_or(0, |(_, outcome)| outcome_size_bytes(outcome))
    }
}

fn outcome_size_bytes(outcome: &ApplyOutcome) -> usize {
    match outcome {
        Ok(bytes) => bytes.len(),
        Err(ApplyError::Rejected(message)) => message.len(),
        Err(ApplyError::Fault(fault)) => fault.to_string().len(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Session {
    timeout_ms: u64,
    last_active_ms: u64,
    /// Sequences applied and not yet acknowledged, with what was kept.
    kept: BTreeMap<u64, Kept>,
    /// Every sequence below this was acknowledged by the client.
    acknowledged_below: u64,
}

impl Session {
    fn expires_at_ms(&self) -> u64 {
        self.last_active_ms.saturating_add(self.timeout_ms)
    }
}

/// Every open session, as the log made them. Only the clock and the
/// sessions are stored; the indexes derived from them are rebuilt when
/// read back, so a snapshot cannot make them disagree.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "StoredSessions", into = "StoredSessions")]
pub struct Sessions {
    /// The log's clock: the largest leader stamp applied so far.
    clock_ms: u64,
    open: BTreeMap<u64, Session>,
    /// (expiry time, client id), soonest first: expiry and eviction order.
    by_expiry: BTreeSet<(u64, u64)>,
    /// Bytes of kept responses across all sessions.
    kept_bytes: usize,
}

/// What a snapshot holds of [`Sessions`].
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct StoredSessions {
    clock_ms: u64,
    open: BTreeMap<u64, Session>,
}

impl From<Sessions> for StoredSessions {
    fn from(sessions: Sessions) -> Self {
        Self {
            clock_ms: sessions.clock_ms,
            open: sessions.open,
        }
    }
}

impl From<StoredSessions> for Sessions {
    fn from(stored: StoredSessions) -> Self {
        let by_expiry = stored
            .open
            .iter()
            .map(|(client_id, session)| (session.expires_at_ms(), *client_id))
            .collect();
        let kept_bytes = stored
            .open
            .values()
            .flat_map(|session| session.kept.values())
            .map(Kept::size_bytes)
            .sum();
        Self {
            clock_ms: stored.clock_ms,
            open: stored.open,
            by_expiry,
            kept_bytes,
        }
    }
}

/// A requested timeout, clamped to the allowed range.
fn clamp_timeout(requested: Duration) -> Duration {
    requested.clamp(SESSION_TIMEOUT_MIN, SESSION_TIMEOUT_MAX)
}

impl Sessions {
    /// Sessions open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Bytes of kept responses across all sessions, overhead included.
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    /// Move the log's clock to an entry's stamp and expire every session
    /// idle longer than its timeout. Stamps from a new leader may be behind
    /// the old one's: the clock never goes back.
    pub fn advance_clock(&mut self, time_ms: u64) {
        self.clock_ms = self.clock_ms.max(time_ms);
        while let Some(&(expires_at_ms, client_id)) = self.by_expiry.first() {
            if expires_at_ms >= self.clock_ms {
                break;
            }
            self.close(client_id);
        }
    }

    /// Open a session at entry `index` (its id), after
    /// [`Self::advance_clock`] for that entry; the timeout it got, in ms
    /// (clamped to the allowed range). At [`SESSIONS_MAX`], the session
    /// closest to expiry is closed first.
    pub fn open(&mut self, index: u64, timeout: Duration) -> u64 {
        if self.open.len() >= SESSIONS_MAX
            && let Some(&(_, soonest)) = self.by_expiry.first()
        {
            self.close(soonest);
        }
        let session = Session {
            timeout_ms: u64::try_from(clamp_timeout(timeout).as_millis()).unwrap_or(u64::MAX),
            last_active_ms: self.clock_ms,
            kept: BTreeMap::new(),
            acknowledged_below: 1,
        };
        let timeout_ms = session.timeout_ms;
        self.by_expiry.insert((session.expires_at_ms(), index));
        self.open.insert(index, session);
        timeout_ms
    }

    /// Decide what a session command (with bytes of digest `command`) does,
    /// after [`Self::advance_clock`] for its entry. Refreshes the session
    /// and drops the responses the client acknowledged.
    pub fn admit(&mut self, stamp: SessionStamp, command: &DigestBytes) -> Admission {
        if stamp.sequence == 0 || stamp.sequence < stamp.first_outstanding {
            return Admission::Refuse(SessionRefusal::Invalid);
        }
        let clock_ms = self.clock_ms;
        let Some(session) = self.open.get_mut(&stamp.client_id) else {
            return Admission::Refuse(SessionRefusal::NotOpen);
        };
        self.by_expiry
            .remove(&(session.expires_at_ms(), stamp.client_id));
        session.last_active_ms = clock_ms;
        self.by_expiry
            .insert((session.expires_at_ms(), stamp.client_id));
        if stamp.first_outstanding > session.acknowledged_below {
            let still_kept = session.kept.split_off(&stamp.first_outstanding);
            let dropped: usize = session.kept.values().map(Kept::size_bytes).sum();
            session.kept = still_kept;
            session.acknowledged_below = stamp.first_outstanding;
            self.kept_bytes = self.kept_bytes.saturating_sub(dropped);
        }
        if stamp.sequence < session.acknowledged_below {
            return Admission::Refuse(SessionRefusal::Acknowledged);
        }
        let full = session.kept.len() >= SESSION_OUTSTANDING_MAX
            || self.kept_bytes + SESSION_KEPT_ENTRY_OVERHEAD_BYTES > SESSIONS_RETAINED_BYTES_MAX;
        match session.kept.get(&stamp.sequence) {
            Some(kept) if kept.command != *command => Admission::Refuse(SessionRefusal::Mismatch),
            Some(Kept {
                outcome: Some((index, outcome)),
                ..
            }) => Admission::Replay {
                index: *index,
                outcome: outcome.clone(),
            },
            Some(Kept { outcome: None, .. }) => Admission::Refuse(SessionRefusal::ResponseNotKept),
            None if full => Admission::Refuse(SessionRefusal::TooManyOutstanding),
            None => Admission::Apply,
        }
    }

    /// Keep the outcome of a command [`Self::admit`] let through, applied
    /// at `index`. A response over the per-response or total bound is
    /// recorded as applied without its bytes.
    pub fn record(
        &mut self,
        stamp: SessionStamp,
        command: DigestBytes,
        index: u64,
        outcome: &ApplyOutcome,
    ) {
        let Some(session) = self.open.get_mut(&stamp.client_id) else {
            return;
        };
        if stamp.sequence < session.acknowledged_below {
            return;
        }
        let size_bytes = outcome_size_bytes(outcome);
        let fits = size_bytes <= SESSION_RESPONSE_BYTES_KEPT_MAX
            && self.kept_bytes + SESSION_KEPT_ENTRY_OVERHEAD_BYTES + size_bytes
                <= SESSIONS_RETAINED_BYTES_MAX;
        let kept = Kept {
            command,
            outcome: fits.then(|| (index, outcome.clone())),
        };
        self.kept_bytes += kept.size_bytes();
        session.kept.insert(stamp.sequence, kept);
    }

    fn close(&mut self, client_id: u64) {
        if let Some(session) = self.open.remove(&client_id) {
            self.by_expiry.remove(&(session.expires_at_ms(), client_id));
            let freed: usize = session.kept.values().map(Kept::size_bytes).sum();
            self.kept_bytes = self.kept_bytes.saturating_sub(freed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const COMMAND: DigestBytes = [7; 32];

    fn stamp(client_id: u64, sequence: u64, first_outstanding: u64) -> SessionStamp {
        SessionStamp {
            client_id,
            sequence,
            first_outstanding,
        }
    }

    fn opened() -> (Sessions, u64) {
        let mut sessions = Sessions::default();
        sessions.advance_clock(1_000);
        let id = 7;
        sessions.open(id, HOUR);
        (sessions, id)
    }

    #[test]
    fn a_retry_is_answered_from_the_kept_response() {
        let (mut sessions, id) = opened();
        assert_eq!(sessions.admit(stamp(id, 1, 1), &COMMAND), Admission::Apply);
        sessions.record(stamp(id, 1, 1), COMMAND, 9, &Ok(b"one".to_vec()));
        assert_eq!(
            sessions.admit(stamp(id, 1, 1), &COMMAND),
            Admission::Replay {
                index: 9,
                outcome: Ok(b"one".to_vec())
            }
        );
        assert_eq!(sessions.admit(stamp(id, 2, 1), &COMMAND), Admission::Apply);
    }

    #[test]
    fn an_acknowledged_sequence_is_refused_never_applied_again() {
        let (mut sessions, id) = opened();
        sessions.admit(stamp(id, 1, 1), &COMMAND);
        sessions.record(stamp(id, 1, 1), COMMAND, 9, &Ok(vec![1]));
        assert_eq!(sessions.admit(stamp(id, 2, 2), &COMMAND), Admission::Apply);
        assert_eq!(
            sessions.admit(stamp(id, 1, 1), &COMMAND),
            Admission::Refuse(SessionRefusal::Acknowledged)
        );
        assert_eq!(sessions.kept_bytes, 0);
    }

    #[test]
    fn sessions_expire_by_log_time_only() {
        let (mut sessions, id) = opened();
        // A stamp from a new leader whose clock is behind changes nothing.
        sessions.advance_clock(500);
        sessions.advance_clock(1_000 + 3_600_000);
        assert_eq!(sessions.open_count(), 1, "expires only after the timeout");
        sessions.advance_clock(1_000 + 3_600_001);
        assert_eq!(sessions.open_count(), 0);
        assert_eq!(
            sessions.admit(stamp(id, 1, 1), &COMMAND),
            Admission::Refuse(SessionRefusal::NotOpen)
        );
    }

    #[test]
    fn activity_keeps_a_session_open() {
        let (mut sessions, id) = opened();
        sessions.advance_clock(1_000 + 3_000_000);
        assert_eq!(sessions.admit(stamp(id, 1, 1), &COMMAND), Admission::Apply);
        sessions.advance_clock(1_000 + 6_000_000);
        assert_eq!(sessions.open_count(), 1);
    }

    #[test]
    fn a_session_opened_by_a_lagging_leader_is_not_born_expired() {
        let mut sessions = Sessions::default();
        sessions.advance_clock(10_000_000);
        sessions.advance_clock(1_000); // stamped by a leader whose clock is behind
        let id = 3;
        sessions.open(id, Duration::from_secs(1));
        assert_eq!(sessions.admit(stamp(id, 1, 1), &COMMAND), Admission::Apply);
    }

    #[test]
    fn timeouts_are_clamped() {
        assert_eq!(clamp_timeout(Duration::ZERO), SESSION_TIMEOUT_MIN);
        assert_eq!(clamp_timeout(Duration::MAX), SESSION_TIMEOUT_MAX);
    }

    #[test]
    fn outstanding_commands_are_bounded() {
        let (mut sessions, id) = opened();
        for sequence in 1..=SESSION_OUTSTANDING_MAX as u64 {
            assert_eq!(
                sessions.admit(stamp(id, sequence, 1), &COMMAND),
                Admission::Apply
            );
            sessions.record(stamp(id, sequence, 1), COMMAND, sequence, &Ok(vec![]));
        }
        let next = SESSION_OUTSTANDING_MAX as u64 + 1;
        assert_eq!(
            sessions.admit(stamp(id, next, 1), &COMMAND),
            Admission::Refuse(SessionRefusal::TooManyOutstanding)
        );
        assert_eq!(
            sessions.admit(stamp(id, next, next), &COMMAND),
            Admission::Apply
        );
    }

    #[test]
    fn a_large_response_is_applied_once_but_not_kept() {
        let (mut sessions, id) = opened();
        sessions.admit(stamp(id, 1, 1), &COMMAND);
        let large = vec![0; SESSION_RESPONSE_BYTES_KEPT_MAX + 1];
        sessions.record(stamp(id, 1, 1), COMMAND, 9, &Ok(large));
        assert_eq!(
            sessions.admit(stamp(id, 1, 1), &COMMAND),
            Admission::Refuse(SessionRefusal::ResponseNotKept)
        );
        assert_eq!(sessions.kept_bytes, SESSION_KEPT_ENTRY_OVERHEAD_BYTES);
    }

    #[test]
    fn the_least_recently_active_session_makes_room() {
        let mut sessions = Sessions::default();
        for index in 1..=SESSIONS_MAX as u64 {
            sessions.advance_clock(index);
            sessions.open(index, HOUR);
        }
        sessions.advance_clock(SESSIONS_MAX as u64 + 1);
        sessions.admit(stamp(1, 1, 1), &COMMAND); // session 1 is active again
        sessions.open(SESSIONS_MAX as u64 + 1, HOUR);
        assert_eq!(sessions.open_count(), SESSIONS_MAX);
        assert_ne!(
            sessions.admit(stamp(1, 2, 1), &COMMAND),
            Admission::Refuse(SessionRefusal::NotOpen)
        );
        assert_eq!(
            sessions.admit(stamp(2, 1, 1), &COMMAND),
            Admission::Refuse(SessionRefusal::NotOpen)
        );
    }

    #[test]
    fn invalid_stamps_are_refused() {
        let (mut sessions, id) = opened();
        assert_eq!(
            sessions.admit(stamp(id, 0, 0), &COMMAND),
            Admission::Refuse(SessionRefusal::Invalid)
        );
        assert_eq!(
            sessions.admit(stamp(id, 3, 4), &COMMAND),
            Admission::Refuse(SessionRefusal::Invalid)
        );
    }

    #[test]
    fn kept_bytes_follow_what_is_kept() {
        let (mut sessions, id) = opened();
        sessions.admit(stamp(id, 1, 1), &COMMAND);
        sessions.record(stamp(id, 1, 1), COMMAND, 9, &Ok(vec![0; 100]));
        assert_eq!(sessions.kept_bytes, 100 + SESSION_KEPT_ENTRY_OVERHEAD_BYTES);
        sessions.advance_clock(u64::MAX);
        assert_eq!(sessions.kept_bytes, 0, "closing a session frees its bytes");
    }

    #[test]
    fn a_retry_with_other_bytes_is_refused_not_answered() {
        let (mut sessions, id) = opened();
        sessions.admit(stamp(id, 1, 1), &COMMAND);
        sessions.record(stamp(id, 1, 1), COMMAND, 9, &Ok(vec![1]));
        assert_eq!(
            sessions.admit(stamp(id, 1, 1), &[8; 32]),
            Admission::Refuse(SessionRefusal::Mismatch)
        );
    }

    #[test]
    fn many_tiny_responses_are_bounded_in_all() {
        let mut sessions = Sessions::default();
        sessions.advance_clock(1);
        let entries_max = SESSIONS_RETAINED_BYTES_MAX / SESSION_KEPT_ENTRY_OVERHEAD_BYTES;
        let sessions_needed = entries_max / SESSION_OUTSTANDING_MAX + 1;
        let mut refused = false;
        'fill: for session in 1..=sessions_needed as u64 {
            let id = session;
            sessions.open(id, HOUR);
            for sequence in 1..=SESSION_OUTSTANDING_MAX as u64 {
                match sessions.admit(stamp(id, sequence, 1), &COMMAND) {
                    Admission::Apply => {
                        sessions.record(stamp(id, sequence, 1), COMMAND, 1, &Ok(vec![]))
                    }
                    Admission::Refuse(SessionRefusal::TooManyOutstanding) => {
                        refused = true;
                        break 'fill;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(
            refused,
            "the total bound refuses before memory grows further"
        );
        assert!(sessions.kept_bytes <= SESSIONS_RETAINED_BYTES_MAX);
    }

    #[test]
    fn derived_indexes_are_rebuilt_from_a_snapshot() {
        let (mut sessions, id) = opened();
        sessions.admit(stamp(id, 1, 1), &COMMAND);
        sessions.record(stamp(id, 1, 1), COMMAND, 9, &Ok(vec![0; 10]));
        let bytes = postcard::to_stdvec(&sessions).expect("encode");
        let read: Sessions = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(read, sessions);
    }
}
