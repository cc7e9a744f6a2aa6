//! What the metrics' labels may say: the outcomes and roles the recording
//! side names, and the label sets the families are keyed by.

use prometheus_client::encoding::EncodeLabelSet;

/// Raft roles, as the `role` label names them.
pub const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

/// How a proposal ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Committed and applied.
    Ok,
    /// This node was not the leader.
    NotLeader,
    /// May or may not have committed (timeout, lost from the log).
    Ambiguous,
    /// Raft refused it.
    Refused,
}

impl ProposalOutcome {
    pub(super) fn label(self) -> &'static str {
        match self {
            ProposalOutcome::Ok => "ok",
            ProposalOutcome::NotLeader => "not_leader",
            ProposalOutcome::Ambiguous => "ambiguous",
            ProposalOutcome::Refused => "refused",
        }
    }
}

/// How a plugin call ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The plugin answered `ok`.
    Ok,
    /// The plugin answered `err`.
    Rejected,
    /// It trapped or hit a limit (fuel, memory, response size).
    Trapped,
}

impl CallOutcome {
    pub(super) fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Trapped => "trapped",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RoleLabels {
    pub(super) role: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodLabels {
    pub(super) method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodCodeLabels {
    pub(super) method: String,
    pub(super) code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ExportLabels {
    pub(super) export: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ExportOutcomeLabels {
    pub(super) export: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PeerCallOutcomeLabels {
    pub(super) peer: u64,
    pub(super) call: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PeerCallLabels {
    pub(super) peer: u64,
    pub(super) call: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PeerLabels {
    pub(super) peer: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct InstanceLabels {
    pub(super) instance: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ActionLabels {
    pub(super) action: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LivenessLabels {
    pub(super) liveness: &'static str,
}
