//! [`Cluster`]: a client for a whole cluster. It knows several nodes, sends
//! to the leader when it knows it (any node forwards otherwise), moves on to
//! another node when one is down, and writes within a session, so a write
//! retried after a lost answer is applied once.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Code;

use crate::client::{Client, ClientError};
use crate::endpoints::Endpoints;
use crate::headers;
use crate::limits::{CLIENT_GRACE, DEPLOY_TIMEOUT};
use crate::proto::{self, apply_response, query_response};
use crate::tls::ClientTls;

/// How long a call may keep retrying, across nodes, by default.
pub const RETRY_BUDGET_DEFAULT: Duration = Duration::from_secs(30);

/// Longest pause between two attempts.
pub const RETRY_PAUSE_MAX: Duration = Duration::from_millis(500);

/// First pause between two attempts (doubled each time up to the max).
pub const RETRY_PAUSE_MIN: Duration = Duration::from_millis(25);

/// Read consistency.
pub use proto::Consistency;

/// Why a call failed, by what it means for the command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No node could serve the call within the retry budget; a write was
    /// surely not applied.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A write may or may not have been applied, and retrying could not
    /// settle it (the session expired meanwhile, or the budget ran out).
    #[error("outcome unknown: {0}")]
    Ambiguous(String),
    /// The plugin refused the command or query (its `err`); nothing changed.
    #[error("rejected by the plugin: {0}")]
    Rejected(String),
    /// The plugin trapped or ran out of a limit; nothing changed.
    #[error("plugin fault: {0}")]
    Fault(String),
    /// The command was applied, once, but its answer is no longer available
    /// (too large to keep for a retry, or already acknowledged).
    #[error("applied, but the answer is lost: {0}")]
    AnswerLost(String),
    /// The request itself is wrong (too large, empty, malformed).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Over a limit: too large, past the state quota, too many commands
    /// outstanding in the session. Nothing changed.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The caller's certificate does not allow this call.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The cluster refused the call in its current state.
    #[error("refused: {0}")]
    Refused(String),
    /// JSON could not be encoded or decoded.
    #[error("JSON: {0}")]
    Json(String),
}

/// An applied write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The log index it applied at.
    pub index: u64,
    /// What the plugin answered.
    pub response: Vec<u8>,
}

/// How a [`Cluster`] behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long one call may keep retrying across nodes.
    pub retry_budget: Duration,
    /// Whether writes go through a session (exactly once). Needs a cluster at
    /// protocol level 2; without it a retried write may apply twice.
    pub sessions: bool,
    /// A session's timeout, by the log's clock (`None`: the cluster's
    /// default).
    pub session_timeout: Option<Duration>,
    /// Whether to send to the leader directly once known (saves the hop of
    /// forwarding); otherwise calls go to the nodes given, in order.
    pub follow_leader: bool,
    /// The CA and client certificate for a cluster running mutual TLS.
    pub tls: Option<ClientTls>,
    /// How long one attempt may take before it is given up (a write then
    /// counts as possibly applied, and is retried in its session).
    pub request_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retry_budget: RETRY_BUDGET_DEFAULT,
            sessions: true,
            session_timeout: None,
            follow_leader: true,
            tls: None,
            request_timeout: DEPLOY_TIMEOUT + CLIENT_GRACE,
        }
    }
}

/// The session writes go through.
#[derive(Debug, Clone, Copy)]
struct Session {
    client_id: u64,
    next_sequence: u64,
}

/// A client of a whole cluster. Calls take `&mut self`: one call at a time
/// per `Cluster`; use one per task for concurrency.
pub struct Cluster {
    /// The nodes known, and the one tried first: the leader, when known.
    endpoints: Endpoints,
    options: Options,
    session: Option<Session>,
}

/// How a call treats an attempt that got no answer.
#[derive(Clone, Copy)]
enum Repeat {
    /// Repeat it; its effect, if any, does not matter to the caller.
    Freely,
    /// Repeat it; if none is answered, the change may have happened.
    Change,
    /// Do not repeat it: the call's outcome is unknown.
    Never,
}

/// What one failed attempt means for the call.
enum Retry {
    /// Try again (another node, after a pause); nothing was applied.
    Again(String),
    /// Try again with the same stamp: it may have been applied.
    Unsure(String),
    /// The session is gone (expired): open another.
    SessionNotOpen(String),
    /// Stop with this error.
    Stop(Error),
}

impl Cluster {
    /// A client of the cluster these nodes (`host:port`) belong to. Fails
    /// only when none answers (with [`Options::follow_leader`] off it does
    /// not ask before the first call).
    pub async fn connect<I, S>(endpoints: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::connect_with(endpoints, Options::default()).await
    }

    /// [`Self::connect`] with options.
    pub async fn connect_with<I, S>(endpoints: I, options: Options) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let endpoints: Vec<String> = endpoints.into_iter().map(Into::into).collect();
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoint given".to_string()));
        }
        let mut cluster = Self {
            endpoints: Endpoints::new(endpoints),
            options,
            session: None,
        };
        // Finding the leader is the only reason to ask before the first
        // call; a client bound to the nodes it was given connects lazily.
        if cluster.options.follow_leader {
            cluster.status().await?;
        }
        Ok(cluster)
    }

    /// Apply `command` (once, within this client's session) and return the
    /// plugin's answer.
    pub async fn apply(&mut self, command: Vec<u8>) -> Result<Applied, Error> {
        if !self.options.sessions {
            let response = self
                .call_once_at_most(|mut node| {
                    let command = command.clone();
                    async move { node.apply(command).await }
                })
                .await?;
            return self.applied(response);
        }
        let deadline = Instant::now() + self.options.retry_budget;
        let mut stamp = self.next_stamp().await?;
        let mut maybe_applied = false;
        let mut pause = RETRY_PAUSE_MIN;
        loop {
            let attempt = self.on_preferred(|mut node| {
                let command = command.clone();
                async move { node.apply_stamped(command, stamp).await }
            });
            let failure = match attempt.await {
                Ok(response) => return self.applied(response),
                Err(error) => classify(&error),
            };
            match failure {
                Retry::SessionNotOpen(reason) => {
                    if maybe_applied {
                        return Err(Error::Ambiguous(format!(
                            "the session expired while the command's outcome was unknown: {reason}"
                        )));
                    }
                    // This attempt was answered "not open": it applied
                    // nothing, and no earlier one may have. A new session.
                    self.give_up_after(deadline, &reason, false)?;
                    self.session = None;
                    stamp = self.next_stamp().await?;
                }
                // Once an attempt may have applied the command, a refusal of
                // a later one says nothing about it.
                Retry::Stop(error) if maybe_applied => {
                    return Err(Error::Ambiguous(format!(
                        "an earlier attempt may have applied the command; the retry was refused: {error}"
                    )));
                }
                Retry::Stop(error) => return Err(error),
                Retry::Unsure(reason) => {
                    maybe_applied = true;
                    self.give_up_after(deadline, &reason, maybe_applied)?;
                }
                Retry::Again(reason) => self.give_up_after(deadline, &reason, maybe_applied)?,
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// [`Self::apply`] with a JSON command and answer.
    pub async fn apply_json<C: Serialize, R: DeserializeOwned>(
        &mut self,
        command: &C,
    ) -> Result<R, Error> {
        let bytes = serde_json::to_vec(command).map_err(|error| Error::Json(error.to_string()))?;
        let applied = self.apply(bytes).await?;
        serde_json::from_slice(&applied.response).map_err(|error| Error::Json(error.to_string()))
    }

    /// Run a query with the given consistency.
    pub async fn query(
        &mut self,
        request: Vec<u8>,
        consistency: Consistency,
    ) -> Result<Vec<u8>, Error> {
        let response = self
            .call(|mut node| {
                let request = request.clone();
                async move { node.query(request, consistency).await }
            })
            .await?;
        match response.result {
            Some(query_response::Result::Ok(bytes)) => Ok(bytes),
            Some(query_response::Result::Rejected(message)) => Err(Error::Rejected(message)),
            Some(query_response::Result::Fault(message)) => Err(Error::Fault(message)),
            None => Err(Error::Refused(
                "the node answered without a result".to_string(),
            )),
        }
    }

    /// [`Self::query`] (linearizable) with a JSON request and answer.
    pub async fn query_json<Q: Serialize, R: DeserializeOwned>(
        &mut self,
        request: &Q,
    ) -> Result<R, Error> {
        let bytes = serde_json::to_vec(request).map_err(|error| Error::Json(error.to_string()))?;
        let answer = self.query(bytes, Consistency::Linearizable).await?;
        serde_json::from_slice(&answer).map_err(|error| Error::Json(error.to_string()))
    }

    /// The status of a node that answers (the leader when known); the
    /// leader it names is preferred from then on.
    pub async fn status(&mut self) -> Result<proto::StatusResponse, Error> {
        let status = self
            .call(|mut node| async move { node.status().await })
            .await?;
        self.prefer(&status.leader_addr);
        Ok(status)
    }

    /// Every member, as a node that answers sees them.
    pub async fn members(&mut self) -> Result<proto::MembersResponse, Error> {
        self.call(|mut node| async move { node.members().await })
            .await
    }

    /// Deploy a plugin to the whole cluster.
    pub async fn deploy(&mut self, plugin: Vec<u8>) -> Result<proto::DeployResponse, Error> {
        self.call_repeating_change(|mut node| {
            let plugin = plugin.clone();
            async move { node.deploy_plugin(plugin).await }
        })
        .await
    }

    /// The session's next stamp, opening a session first if there is none.
    async fn next_stamp(&mut self) -> Result<proto::SessionStamp, Error> {
        let session = match self.session {
            Some(session) => session,
            None => {
                let timeout_ms = self
                    .options
                    .session_timeout
                    .map_or(0, |timeout| timeout.as_millis().max(1) as u64);
                let opened = self
                    .call(|mut node| async move { node.open_session(timeout_ms).await })
                    .await?;
                Session {
                    client_id: opened.client_id,
                    next_sequence: 1,
                }
            }
        };
        let sequence = session.next_sequence;
        self.session = Some(Session {
            next_sequence: sequence + 1,
            ..session
        });
        // One call at a time: every earlier answer was received.
        Ok(proto::SessionStamp {
            client_id: session.client_id,
            sequence,
            first_outstanding: sequence,
        })
    }

    /// Run `call` until it answers, moving across nodes, within the budget.
    /// For calls whose repeats change nothing the caller waits for (reads,
    /// opening a session): when the budget runs out the call was
    /// [`Error::Unavailable`], whatever an unanswered attempt did.
    async fn call<T, F, Fut>(&mut self, call: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.retrying(call, Repeat::Freely).await
    }

    /// Like [`Self::call`], for a change that may be repeated: when the
    /// budget runs out after an unanswered attempt, [`Error::Ambiguous`].
    async fn call_repeating_change<T, F, Fut>(&mut self, call: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.retrying(call, Repeat::Change).await
    }

    /// Like [`Self::call`], but an attempt that may have been applied is
    /// not repeated: it ends the call as [`Error::Ambiguous`].
    async fn call_once_at_most<T, F, Fut>(&mut self, call: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.retrying(call, Repeat::Never).await
    }

    async fn retrying<T, F, Fut>(&mut self, call: F, repeat: Repeat) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + self.options.retry_budget;
        let mut pause = RETRY_PAUSE_MIN;
        loop {
            match self.on_preferred(&call).await {
                Ok(answer) => return Ok(answer),
                Err(error) => match classify(&error) {
                    Retry::Stop(error) => return Err(error),
                    Retry::Again(reason) => self.give_up_after(deadline, &reason, false)?,
                    Retry::Unsure(reason) => match repeat {
                        Repeat::Freely => self.give_up_after(deadline, &reason, false)?,
                        Repeat::Change => self.give_up_after(deadline, &reason, true)?,
                        Repeat::Never => return Err(Error::Ambiguous(reason)),
                    },
                    Retry::SessionNotOpen(reason) => return Err(Error::Refused(reason)),
                },
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// One attempt on the preferred node; on a connection failure the next
    /// node becomes preferred.
    async fn on_preferred<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let endpoint = self.endpoints.preferred().to_string();
        let node = match self.endpoints.connection() {
            Some(node) => node,
            None => match Client::connect_with(&endpoint, self.options.tls.as_ref()).await {
                Ok(node) => {
                    self.endpoints.set_connection(Some(node.clone()));
                    node
                }
                Err(error) => {
                    self.endpoints.unreachable(Instant::now());
                    return Err(error);
                }
            },
        };
        let answer = match tokio::time::timeout(self.options.request_timeout, call(node)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Status(tonic::Status::deadline_exceeded(
                format!(
                    "no answer from {endpoint} within {:?}",
                    self.options.request_timeout
                ),
            ))),
        };
        if let Err(error) = &answer
            && should_move_on(error)
        {
            self.endpoints.set_connection(None);
            self.endpoints.move_on();
        }
        answer
    }

    /// The endpoint the next call goes to first: the leader, once known
    /// (from [`Self::status`] or from an answer that was forwarded to it).
    pub fn preferred_endpoint(&self) -> &str {
        self.endpoints.preferred()
    }

    /// The answer to an apply; a forwarded one names the leader, which is
    /// preferred from then on.
    fn applied(&mut self, response: proto::ApplyResponse) -> Result<Applied, Error> {
        self.prefer(&response.leader_addr);
        applied(response)
    }

    /// Prefer the leader at `rpc_addr` (see [`Endpoints::prefer`]).
    fn prefer(&mut self, rpc_addr: &str) {
        if self.options.follow_leader {
            self.endpoints.prefer(rpc_addr, Instant::now());
        }
    }

    fn give_up_after(
        &self,
        deadline: Instant,
        reason: &str,
        maybe_applied: bool,
    ) -> Result<(), Error> {
        if Instant::now() < deadline {
            return Ok(());
        }
        Err(if maybe_applied {
            Error::Ambiguous(reason.to_string())
        } else {
            Error::Unavailable(reason.to_string())
        })
    }
}

fn applied(response: proto::ApplyResponse) -> Result<Applied, Error> {
    match response.result {
        Some(apply_response::Result::Ok(bytes)) => Ok(Applied {
            index: response.index,
            response: bytes,
        }),
        Some(apply_response::Result::Rejected(message)) => Err(Error::Rejected(message)),
        Some(apply_response::Result::Fault(message)) => Err(Error::Fault(message)),
        None => Err(Error::Refused(
            "the node answered without a result".to_string(),
        )),
    }
}

/// Whether the node itself is the problem: try another.
fn should_move_on(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable { .. } => true,
        ClientError::Status(status) => matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::DeadlineExceeded
        ),
    }
}

/// What a failed attempt means.
fn classify(error: &ClientError) -> Retry {
    let status = match error {
        ClientError::Unreachable { .. } => return Retry::Again(error.to_string()),
        ClientError::Status(status) => status,
    };
    let message = status.message().to_string();
    if headers::value(status, headers::OUTCOME) == Some(headers::OUTCOME_UNKNOWN) {
        return Retry::Unsure(message);
    }
    match headers::value(status, headers::SESSION) {
        Some(headers::SESSION_NOT_OPEN) => return Retry::SessionNotOpen(message),
        Some(headers::SESSION_OUTSTANDING) => {
            return Retry::Stop(Error::ResourceExhausted(message));
        }
        Some(headers::SESSION_NOT_KEPT | headers::SESSION_ACKNOWLEDGED) => {
            return Retry::Stop(Error::AnswerLost(message));
        }
        Some(_) => return Retry::Stop(Error::Refused(message)),
        None => {}
    }
    match status.code() {
        Code::Unavailable => Retry::Again(message),
        // A broken connection mid-call: the request may have arrived.
        Code::Unknown
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::Aborted => Retry::Unsure(message),
        Code::InvalidArgument | Code::OutOfRange => Retry::Stop(Error::InvalidArgument(message)),
        Code::ResourceExhausted => Retry::Stop(Error::ResourceExhausted(message)),
        Code::PermissionDenied | Code::Unauthenticated => {
            Retry::Stop(Error::PermissionDenied(message))
        }
        _ => Retry::Stop(Error::Refused(message)),
    }
}
