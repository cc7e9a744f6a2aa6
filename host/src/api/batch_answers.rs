//! The leader's stream of answers to one forwarded batch, bounded: the
//! commands run on a task of their own (as calls of their own would, however
//! slowly the caller reads), and the stream ends when the caller stops
//! taking answers or its time is up, so a caller that never reads cannot
//! hold a batch's answers (up to 64 of 4 MiB) for ever.
//!
//! Ending the stream drops the commands still running and the answers
//! handed but not yet taken (the transport polls the stream only as the
//! caller reads, so a caller that reads nothing would otherwise keep them
//! for as long as its connection lives): those already proposed apply all
//! the same, and the caller reads every command it got no answer for as
//! "outcome unknown" (the stream's last item says so, and see
//! [`super::forward_codec`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clusterhost_client::proto;
use futures::stream::{Stream, StreamExt};
use prost::Message;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tonic::Status;
use tracing::Instrument;

use super::leader::outcome_unknown;
use super::writes::AnswerStream;
use crate::limits::{
    FORWARD_BATCH_ANSWERS_WAITING_BYTES_MAX, FORWARD_BATCH_CALLER_STALL_MAX,
    FORWARD_BATCH_STREAM_TIMEOUT,
};

/// The bounds on one stream of answers.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The whole stream ends after this long.
    pub stream_time: Duration,
    /// Bytes of answers ready but not yet taken by the caller's transport.
    pub waiting_bytes: usize,
    /// With `waiting_bytes` waiting, the stream ends when the caller takes
    /// none for this long.
    pub stall_time: Duration,
}

impl Bounds {
    /// The bounds from [`crate::limits`].
    pub const LIMITS: Bounds = Bounds {
        stream_time: FORWARD_BATCH_STREAM_TIMEOUT,
        waiting_bytes: FORWARD_BATCH_ANSWERS_WAITING_BYTES_MAX,
        stall_time: FORWARD_BATCH_CALLER_STALL_MAX,
    };

    /// What `answer` counts for against `waiting_bytes`: its encoded size,
    /// at most the whole allowance (so any single answer can go).
    pub fn cost(&self, answer: &proto::ForwardedAnswer) -> u32 {
        let cost = answer.encoded_len().clamp(1, self.waiting_bytes.max(1));
        u32::try_from(cost).unwrap_or(u32::MAX)
    }
}

/// `answers` as the stream a caller reads, within `bounds`.
pub fn bounded<Answers>(answers: Answers, bounds: Bounds) -> AnswerStream
where
    Answers: Stream<Item = proto::ForwardedAnswer> + Send + 'static,
{
    start(answers, bounds).0
}

/// [`bounded`], with the allowance the answers waiting hold permits of
/// (whole again once none waits).
fn start<Answers>(answers: Answers, bounds: Bounds) -> (AnswerStream, Arc<Semaphore>)
where
    Answers: Stream<Item = proto::ForwardedAnswer> + Send + 'static,
{
    let handed = Arc::new(Handed::default());
    let room = Arc::new(Semaphore::new(bounds.waiting_bytes.max(1)));
    // Dropped with the stream: the caller went away.
    let (reading, caller_gone) = oneshot::channel::<()>();
    let span = tracing::debug_span!("forward_batch_answers");
    let delivery = deliver(answers, handed.clone(), room.clone(), bounds, caller_gone);
    tokio::spawn(delivery.instrument(span));
    let stream = futures::stream::unfold((handed, reading), |(handed, reading)| async move {
        let item = handed.take().await?;
        Some((item, (handed, reading)))
    });
    (stream.boxed(), room)
}

type Delivery = (proto::ForwardedAnswer, OwnedSemaphorePermit);

/// The answers handed to the caller and not yet taken, and how delivery
/// ended. Shared by the delivering task and the caller's stream, so the
/// task can drop what waits without the caller polling.
#[derive(Default)]
struct Handed {
    state: Mutex<HandedState>,
    /// One waiter only (the stream); a notice given while it is not
    /// waiting is kept for its next wait.
    changed: Notify,
}

#[derive(Default)]
struct HandedState {
    // Unbounded in count only: one item per command of the batch (at most
    // FORWARD_BATCH_COMMANDS_MAX), and its bytes are bounded by `room`.
    waiting: VecDeque<Delivery>,
    ended: Option<Ended>,
}

enum Ended {
    /// Every answer was handed: the stream ends once they are taken.
    Finished,
    /// Delivery gave up: what waited was dropped; the caller reads why
    /// next (taken then), then the stream ends.
    GaveUp(Option<Status>),
}

impl Handed {
    fn state(&self) -> std::sync::MutexGuard<'_, HandedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hand(&self, delivery: Delivery) {
        self.state().waiting.push_back(delivery);
        self.changed.notify_one();
    }

    fn finish(&self) {
        self.state().ended = Some(Ended::Finished);
        self.changed.notify_one();
    }

    /// Drop every answer waiting (and its permit) and end the stream
    /// with `status`.
    fn give_up(&self, status: Status) {
        let dropped = {
            let mut state = self.state();
            state.ended = Some(Ended::GaveUp(Some(status)));
            std::mem::take(&mut state.waiting)
        };
        drop(dropped);
        self.changed.notify_one();
    }

    /// The caller's next item: an answer, why delivery gave up, or the
    /// end of the stream.
    async fn take(&self) -> Option<Result<proto::ForwardedAnswer, Status>> {
        loop {
            {
                let mut state = self.state();
                if let Some(Ended::GaveUp(why)) = &mut state.ended {
                    // Said once, then the stream ends.
                    return why.take().map(Err);
                }
                if let Some((answer, permit)) = state.waiting.pop_front() {
                    // Taken by the transport: its bytes no longer wait.
                    drop(permit);
                    return Some(Ok(answer));
                }
                if state.ended.is_some() {
                    return None;
                }
            }
            self.changed.notified().await;
        }
    }
}

/// Hand each answer to the caller as it completes, until all are handed,
/// the caller went away, stalled, or the stream's time is up; in the last
/// two cases, drop what the caller was handed and did not take.
async fn deliver<Answers>(
    answers: Answers,
    handed: Arc<Handed>,
    room: Arc<Semaphore>,
    bounds: Bounds,
    caller_gone: oneshot::Receiver<()>,
) where
    Answers: Stream<Item = proto::ForwardedAnswer> + Send + 'static,
{
    let handing = async {
        let mut answers = std::pin::pin!(answers);
        while let Some(answer) = answers.next().await {
            let waiting = room.clone().acquire_many_owned(bounds.cost(&answer));
            let Ok(Ok(permit)) = tokio::time::timeout(bounds.stall_time, waiting).await else {
                tracing::warn!(
                    "a forwarded batch's caller took no answer for {:?}: its stream ends",
                    bounds.stall_time
                );
                return Some(outcome_unknown(&format!(
                    "the leader ended the batch: its answers were not taken for {:?}",
                    bounds.stall_time
                )));
            };
            handed.hand((answer, permit));
        }
        None
    };
    let gave_up = tokio::select! {
        gave_up = handing => gave_up,
        // Nothing to tell: what waits goes with the last handle.
        _ = caller_gone => None,
        () = tokio::time::sleep(bounds.stream_time) => {
            tracing::warn!(
                "a forwarded batch was not answered within {:?}: its stream ends",
                bounds.stream_time
            );
            Some(outcome_unknown(&format!(
                "the leader ended the batch: it was not answered within {:?}",
                bounds.stream_time
            )))
        }
    };
    match gave_up {
        Some(status) => handed.give_up(status),
        None => {
            handed.finish();
            drop_untaken(&handed, bounds.stall_time).await;
        }
    }
}

/// Once every answer was handed: drop what still waits when the caller
/// takes none of it for `stall_time`, as while handing (the transport
/// polls the stream only as the caller reads, so a caller that never reads
/// would otherwise hold it for as long as its connection lives).
async fn drop_untaken(handed: &Handed, stall_time: Duration) {
    let mut waiting = handed.state().waiting.len();
    while waiting > 0 {
        tokio::time::sleep(stall_time).await;
        let now = handed.state().waiting.len();
        if now == waiting {
            tracing::warn!(
                "a forwarded batch's caller took no answer for {stall_time:?}: its stream ends"
            );
            handed.give_up(outcome_unknown(&format!(
                "the leader ended the batch: its answers were not taken for {stall_time:?}"
            )));
            return;
        }
        waiting = now;
    }
}

#[cfg(test)]
mod tests {
    //! Goal: a reading caller gets every answer however large in all; for
    //! one that reads nothing, the answers waiting for it are dropped after
    //! the stall time (their bytes no longer held) and its stream ends with
    //! "outcome unknown"; a command that never completes ends the stream at
    //! the stream time.
    use super::*;
    use clusterhost_client::headers::OUTCOME;
    use proto::forwarded_answer::Outcome;

    /// Bounds small enough for a test to see them act.
    const SMALL: Bounds = Bounds {
        stream_time: Duration::from_millis(400),
        waiting_bytes: 1000,
        stall_time: Duration::from_millis(100),
    };
    /// Longest a test waits for a stream to end (well past every bound).
    const TEST_WAIT: Duration = Duration::from_secs(10);

    fn answer(position: u32, bytes: usize) -> proto::ForwardedAnswer {
        proto::ForwardedAnswer {
            position,
            outcome: Some(Outcome::Applied(proto::ApplyResponse {
                index: u64::from(position),
                result: Some(proto::apply_response::Result::Ok(vec![7; bytes])),
                replayed: false,
                leader_addr: String::new(),
            })),
        }
    }

    /// Every item until the stream ends: the answers' positions, and the
    /// status it ended with, if any.
    async fn read_all(mut stream: AnswerStream) -> (Vec<u32>, Option<Status>) {
        let reading = async {
            let mut positions = Vec::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(answer) => positions.push(answer.position),
                    Err(status) => {
                        assert!(stream.next().await.is_none(), "nothing after the status");
                        return (positions, Some(status));
                    }
                }
            }
            (positions, None)
        };
        tokio::time::timeout(TEST_WAIT, reading)
            .await
            .expect("the stream ends")
    }

    fn assert_outcome_unknown(status: Option<Status>) {
        let status = status.expect("the stream ends with a status");
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert!(status.metadata().contains_key(OUTCOME), "{status:?}");
    }

    #[tokio::test]
    async fn a_reading_caller_gets_every_answer_beyond_the_waiting_bytes() {
        let answers = (0..10).map(|position| answer(position, 600));
        let stream = bounded(futures::stream::iter(answers), SMALL);
        let (positions, ended) = read_all(stream).await;
        assert_eq!(positions, (0..10).collect::<Vec<_>>());
        assert!(ended.is_none(), "{ended:?}");
    }

    #[tokio::test]
    async fn the_answers_a_caller_never_reads_are_dropped_after_the_stall_time() {
        // The first answer is handed; the second does not fit beside it.
        let (second_pulled, pulled) = oneshot::channel();
        let second = futures::stream::once(async move {
            let _ = second_pulled.send(());
            answer(1, 600)
        });
        let answers = futures::stream::iter([answer(0, 600)]).chain(second);
        let started = std::time::Instant::now();
        let (stream, room) = start(answers, SMALL);
        // Delivery pulls the second answer once the first is handed.
        pulled.await.expect("delivery runs");
        // The first answer's bytes are held (the rest of the allowance goes
        // to the second as it waits).
        assert!(room.available_permits() < SMALL.waiting_bytes);
        assert_dropped_unread(stream, &room, started).await;
    }

    /// Without the caller reading anything, the whole allowance comes back
    /// (what was handed was dropped with its permits) no sooner than the
    /// stall time after `started`; reading then gives no answer, only why
    /// the stream ended.
    async fn assert_dropped_unread(
        stream: AnswerStream,
        room: &Semaphore,
        started: std::time::Instant,
    ) {
        let whole = u32::try_from(SMALL.waiting_bytes).expect("small");
        let released = tokio::time::timeout(TEST_WAIT, room.acquire_many(whole)).await;
        assert!(released.expect("released in time").is_ok());
        assert!(started.elapsed() >= SMALL.stall_time);
        let (positions, ended) = read_all(stream).await;
        assert_eq!(positions, Vec::<u32>::new());
        assert_outcome_unknown(ended);
    }

    #[tokio::test]
    async fn answers_all_handed_but_never_read_are_dropped_after_the_stall_time() {
        // One small answer: handed at once, and delivery is done (it
        // looks for a next one only once the first is handed).
        let (handed_first, first_handed) = oneshot::channel();
        let end = futures::stream::once(async move {
            let _ = handed_first.send(());
        })
        .filter_map(|()| async { None });
        let started = std::time::Instant::now();
        let (stream, room) = start(futures::stream::iter([answer(0, 10)]).chain(end), SMALL);
        first_handed.await.expect("delivery runs");
        assert!(room.available_permits() < SMALL.waiting_bytes);
        assert_dropped_unread(stream, &room, started).await;
    }

    #[tokio::test]
    async fn a_command_that_never_completes_ends_the_stream_at_the_stream_time() {
        let first = futures::stream::iter([answer(0, 10)]);
        let stream = bounded(first.chain(futures::stream::pending()), SMALL);
        let started = std::time::Instant::now();
        let (positions, ended) = read_all(stream).await;
        assert_eq!(positions, vec![0]);
        assert_outcome_unknown(ended);
        assert!(started.elapsed() >= SMALL.stream_time);
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_releases_the_waiting_answers() {
        let answers = (0..10).map(|position| answer(position, 600));
        let (mut stream, room) = start(
            futures::stream::iter(answers).chain(futures::stream::pending()),
            SMALL,
        );
        // Taking the first makes room for the second, handed next.
        let first = tokio::time::timeout(TEST_WAIT, stream.next()).await;
        let first = first
            .expect("in time")
            .expect("an item")
            .expect("an answer");
        assert_eq!(first.position, 0);
        drop(stream);
        let whole = u32::try_from(SMALL.waiting_bytes).expect("small");
        let released = tokio::time::timeout(TEST_WAIT, room.acquire_many(whole)).await;
        assert!(released.expect("released in time").is_ok());
    }

    #[test]
    fn an_answer_counts_its_size_up_to_the_whole_allowance() {
        assert_eq!(
            SMALL.cost(&answer(0, 10)) as usize,
            answer(0, 10).encoded_len()
        );
        assert_eq!(SMALL.cost(&answer(0, 5000)) as usize, SMALL.waiting_bytes);
    }
}
