//! What `GET /healthz` and `GET /readyz` answer, decided purely from what
//! the listener observed; the storage probe is the one piece of I/O.
//!
//! - healthz: the process runs, Raft has not stopped, and the data dir
//!   takes a write (an orchestrator restarts a node that fails it).
//! - readyz: this node is a member of a cluster, knows its leader, and
//!   has applied within [`READY_APPLY_LAG_ENTRIES_MAX`] of what it knows
//!   committed (a load balancer sends clients only to ready nodes).

use std::io::Write;
use std::path::Path;

use crate::consensus::{ConsensusView, Role};
use crate::limits::READY_APPLY_LAG_ENTRIES_MAX;

/// A verdict: `Ok(what is fine)` or `Err(what is not)`.
pub type Verdict = Result<String, String>;

/// Whether this node is healthy, given whether its data dir took a write.
pub fn healthz(view: &ConsensusView, storage: Result<(), String>) -> Verdict {
    if view.role == Role::Shutdown {
        return Err("raft has stopped".to_string());
    }
    storage.map_err(|why| format!("the data dir takes no writes: {why}"))?;
    Ok("alive; the data dir takes writes".to_string())
}

/// Whether this node should get client traffic.
pub fn readyz(view: &ConsensusView) -> Verdict {
    if !view.members.contains_key(&view.node_id) {
        return Err("not a member of a cluster (yet)".to_string());
    }
    let Some(leader) = view.leader else {
        return Err("no leader known".to_string());
    };
    let lag = view.committed_index.saturating_sub(view.applied_index);
    if lag > READY_APPLY_LAG_ENTRIES_MAX {
        return Err(format!(
            "applied index {} is {lag} entries behind the committed {} (at most \
             {READY_APPLY_LAG_ENTRIES_MAX} for ready)",
            view.applied_index, view.committed_index
        ));
    }
    Ok(format!(
        "member; leader {leader}; applied {} of committed {}",
        view.applied_index, view.committed_index
    ))
}

/// Name of the file the storage probe writes and removes.
const PROBE_FILE: &str = ".healthz-probe";

/// Write, fsync and remove a small file in `data_dir`.
pub fn probe_storage(data_dir: &Path) -> Result<(), String> {
    let path = data_dir.join(PROBE_FILE);
    let written = std::fs::File::create(&path)
        .and_then(|mut file| {
            file.write_all(b"ok")?;
            file.sync_all()
        })
        .and_then(|()| std::fs::remove_file(&path));
    written.map_err(|error| format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::consensus::view::MemberView;

    fn member_view() -> ConsensusView {
        ConsensusView {
            node_id: 1,
            role: Role::Follower,
            term: 3,
            leader: Some(2),
            last_log_index: 50,
            committed_index: 50,
            applied_index: 48,
            snapshot_index: None,
            purged_index: 0,
            members: BTreeMap::from([(
                1,
                MemberView {
                    rpc_addr: "a:1".to_string(),
                    name: None,
                    voter: true,
                },
            )]),
            change_in_flight: false,
            joint_committed: false,
            matched: BTreeMap::new(),
            heartbeat_age: BTreeMap::new(),
        }
    }

    #[test]
    fn a_member_that_follows_a_leader_and_keeps_up_is_ready() {
        assert!(readyz(&member_view()).is_ok());
    }

    #[test]
    fn not_ready_without_membership_a_leader_or_while_far_behind() {
        let mut outsider = member_view();
        outsider.members.clear();
        assert!(readyz(&outsider).expect_err("not ready").contains("member"));

        let mut leaderless = member_view();
        leaderless.leader = None;
        assert!(
            readyz(&leaderless)
                .expect_err("not ready")
                .contains("leader")
        );

        let mut behind = member_view();
        behind.committed_index = 5_000;
        behind.applied_index = 5_000 - READY_APPLY_LAG_ENTRIES_MAX - 1;
        assert!(readyz(&behind).expect_err("not ready").contains("behind"));
        behind.applied_index += 1;
        assert!(readyz(&behind).is_ok(), "exactly at the bound is ready");
    }

    #[test]
    fn unhealthy_when_raft_stopped_or_storage_fails() {
        assert!(healthz(&member_view(), Ok(())).is_ok());
        assert!(healthz(&member_view(), Err("read-only".to_string())).is_err());
        let mut stopped = member_view();
        stopped.role = Role::Shutdown;
        assert!(healthz(&stopped, Ok(())).is_err());
    }

    #[test]
    fn the_probe_writes_into_a_directory_and_fails_without_one() {
        let directory = tempfile::tempdir().expect("temp dir");
        assert_eq!(probe_storage(directory.path()), Ok(()));
        assert!(!directory.path().join(PROBE_FILE).exists());
        assert!(probe_storage(&directory.path().join("missing")).is_err());
    }
}
