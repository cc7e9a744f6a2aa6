//! The command line: `clusterhost run|apply|query|status|snapshot|plugin|backup`.
//!
//! Errors print as `Error: …` on stderr; the exit code tells the failure
//! class (see [`ExitCode`]).

pub mod args;
pub mod backup;
pub mod certs;
pub mod check;
pub mod commands;
pub mod config_file;
pub mod gossip;
pub mod output;
pub mod security_args;
pub mod signing;

pub use args::Cli;

/// Exit codes, one per failure class, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// Anything not covered below.
    Failure = 1,
    /// Bad flags or arguments (clap's own code).
    Usage = 2,
    /// The plugin rejected the command or query, or trapped on it.
    Rejected = 3,
    /// The node or cluster could not be reached or has no leader.
    Unavailable = 4,
    /// The input was refused before anything happened (too large, invalid).
    InvalidInput = 5,
    /// The command may or may not have been applied (the node lost track:
    /// a timeout, a leader change at the wrong moment).
    OutcomeUnknown = 6,
    /// The caller's certificate does not allow the call (mutual TLS).
    PermissionDenied = 7,
    /// `plugin check` found the plugin would make replicas disagree (or
    /// could not upgrade from the older plugin).
    CheckFailed = 8,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    /// What to print after `Error: `.
    pub message: String,
    /// The exit code.
    pub code: ExitCode,
}

impl CliError {
    /// An error of class `code`.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }
}

impl From<clusterhost_client::ClientError> for CliError {
    fn from(error: clusterhost_client::ClientError) -> Self {
        use clusterhost_client::ClientError;
        use tonic::Code;
        let code = match &error {
            ClientError::Unreachable { .. } => ExitCode::Unavailable,
            ClientError::Status(status) => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded => ExitCode::Unavailable,
                Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange => {
                    ExitCode::InvalidInput
                }
                Code::FailedPrecondition => ExitCode::Rejected,
                Code::PermissionDenied => ExitCode::PermissionDenied,
                Code::Unknown if status.metadata().contains_key("x-clusterhost-outcome") => {
                    ExitCode::OutcomeUnknown
                }
                _ => ExitCode::Failure,
            },
        };
        CliError::new(code, error.to_string())
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        CliError::new(ExitCode::Failure, format!("{error:#}"))
    }
}
