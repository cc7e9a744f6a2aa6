//! The leader's stream of answers to one forwarded batch, bounded: the
//! commands run on a task of their own (as calls of their own would, however
//! slowly the caller reads), and the stream ends when the caller stops
//! taking answers or its time is up, so a caller that never reads cannot
//! hold a batch's answers (up to 64 of 4 MiB) for ever.
//!
//! Ending the stream drops the commands still running: those already
//! proposed apply all the same, and the caller reads every command it got
//! no answer for as "outcome unknown" (see [`super::forward_codec`]).

use std::sync::Arc;
use std::time::Duration;

use clusterhost_client::proto;
use futures::stream::{Stream, StreamExt};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::Instrument;

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
    // Unbounded in count only: one item per command of the batch (at most
    // FORWARD_BATCH_COMMANDS_MAX), and its bytes are bounded by `room`.
    let (sender, receiver) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(bounds.waiting_bytes.max(1)));
    let span = tracing::debug_span!("forward_batch_answers");
    tokio::spawn(deliver(answers, sender, room, bounds).instrument(span));
    futures::stream::unfold(receiver, |mut receiver| async move {
        let (answer, permit): (proto::ForwardedAnswer, OwnedSemaphorePermit) =
            receiver.recv().await?;
        // Taken by the transport: its bytes no longer wait.
        drop(permit);
        Some((Ok(answer), receiver))
    })
    .boxed()
}

type Delivery = (proto::ForwardedAnswer, OwnedSemaphorePermit);

/// Hand each answer to the caller as it completes, until all are handed,
/// the caller went away, stalled, or the stream's time is up.
async fn deliver<Answers>(
    answers: Answers,
    sender: mpsc::UnboundedSender<Delivery>,
    room: Arc<Semaphore>,
    bounds: Bounds,
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
                return;
            };
            if sender.send((answer, permit)).is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = handing => {}
        () = sender.closed() => {}
        () = tokio::time::sleep(bounds.stream_time) => {
            tracing::warn!(
                "a forwarded batch was not answered within {:?}: its stream ends",
                bounds.stream_time
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! Goal: a reading caller gets every answer however large in all; one
    //! that reads nothing sees its stream end after the stall time, and a
    //! command that never completes ends the stream at the stream time.
    use super::*;
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

    async fn positions(stream: AnswerStream) -> Vec<u32> {
        let read = stream.map(|answer| answer.expect("an answer").position);
        tokio::time::timeout(TEST_WAIT, read.collect::<Vec<_>>())
            .await
            .expect("the stream ends")
    }

    #[tokio::test]
    async fn a_reading_caller_gets_every_answer_beyond_the_waiting_bytes() {
        let answers = (0..10).map(|position| answer(position, 600));
        let stream = bounded(futures::stream::iter(answers), SMALL);
        assert_eq!(positions(stream).await, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_caller_that_reads_nothing_sees_its_stream_end_after_the_stall_time() {
        let answers = (0..10).map(|position| answer(position, 600));
        let mut stream = bounded(futures::stream::iter(answers), SMALL);
        // Reading nothing is the point: time passes, well past the stall.
        tokio::time::sleep(SMALL.stall_time * 3).await;
        let mut read = Vec::new();
        while let Some(answer) = tokio::time::timeout(TEST_WAIT, stream.next())
            .await
            .expect("the stream ends")
        {
            read.push(answer.expect("an answer").position);
        }
        // Only what fitted the waiting bytes was handed: one answer (the
        // second did not fit beside it), then the stream ended.
        assert_eq!(read, vec![0]);
    }

    #[tokio::test]
    async fn a_command_that_never_completes_ends_the_stream_at_the_stream_time() {
        let first = futures::stream::iter([answer(0, 10)]);
        let stream = bounded(first.chain(futures::stream::pending()), SMALL);
        let started = std::time::Instant::now();
        assert_eq!(positions(stream).await, vec![0]);
        assert!(started.elapsed() >= SMALL.stream_time);
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
