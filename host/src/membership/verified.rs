//! The edge of [`super::identity`]: dial the addresses gossip names, keep
//! what each presented, and hand the autopilot only the gossip entries whose
//! claims hold. Everything the autopilot does with addresses (adding a
//! learner, recording a new address, the address book Raft dials first)
//! then starts from a verified one. Without TLS every entry is believed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clusterhost_client::ClientTls;
use tokio::task::JoinSet;

use super::bindings_file;
use super::identity::{Bindings, Claim, Verdict, judge};
use crate::consensus::NodeId;
use crate::consensus::transport::sender::Vouched;
use crate::consensus::view::MemberView;
use crate::discovery::{Peer, newest};
use crate::limits::{
    IDENTITY_CONTENDER_MEMORY, IDENTITY_DIAL_TIMEOUT, IDENTITY_DIALS_IN_FLIGHT_MAX,
    IDENTITY_RECHECK_AFTER, IDENTITY_RETRY_AFTER,
};
use crate::metrics::Metrics;
use crate::security::peer::PeerIdentity;
use crate::security::presented::{answered_node_id, own_identity, presented_identity};

/// What an address presented when last dialed: the certificate, and the
/// node id its server reports for itself.
struct Presented {
    identity: Result<PeerIdentity, String>,
    node_id: Option<NodeId>,
    checked_at: Instant,
}

/// How the id of the node at an address is asked, over mutual TLS (see
/// [`answered_node_id`]); tests, whose servers only complete handshakes,
/// answer from a table.
pub type AskNodeId = Arc<
    dyn Fn(String, Arc<ClientTls>) -> futures::future::BoxFuture<'static, Result<NodeId, String>>
        + Send
        + Sync,
>;

/// One finished dial: the address, and what it presented.
type Dialed = (String, Result<(PeerIdentity, NodeId), String>);

/// The production [`AskNodeId`].
fn ask_status() -> AskNodeId {
    Arc::new(|addr: String, tls: Arc<ClientTls>| {
        Box::pin(async move { answered_node_id(&addr, &tls, IDENTITY_DIAL_TIMEOUT).await })
    })
}

/// The identity checks one node keeps between rounds.
pub struct IdentityCheck {
    node_id: NodeId,
    tls: Option<Arc<ClientTls>>,
    own_name: Option<String>,
    bindings: Bindings,
    /// Where the bindings are kept across restarts (`None`: in memory only).
    bindings_file: Option<PathBuf>,
    /// What the file holds (a failed write is tried again next round).
    persisted: Bindings,
    /// Whether the last write failed (logged once per failure streak).
    store_failing: bool,
    /// Whether members with no bound name may be named on first use: not
    /// when the stored bindings could not be read.
    first_use_allowed: bool,
    /// Whether the cluster records names (no first use then).
    names_recorded: bool,
    /// Ids outside the membership: when each was first seen or last alive.
    contenders_seen: HashMap<NodeId, Instant>,
    presented: HashMap<String, Presented>,
    /// Refusals already logged (once per id and address).
    refused: HashSet<(NodeId, String)>,
    /// Dials under way (dropped with this, which aborts them).
    dials: JoinSet<Dialed>,
    /// How a dial asks the id of the node at an address.
    ask_node_id: AskNodeId,
    /// Their addresses.
    dialing: HashSet<String>,
    metrics: Metrics,
    /// Where the names verified are published for the Raft service.
    vouched: Option<Arc<tokio::sync::watch::Sender<Vouched>>>,
}

impl IdentityCheck {
    /// Checks for node `node_id`, dialing with `tls` (`None`: no checks).
    pub fn new(node_id: NodeId, tls: Option<Arc<ClientTls>>, metrics: Metrics) -> Self {
        let own_name = tls.as_deref().and_then(|tls| own_identity(tls).node_name);
        Self {
            node_id,
            tls,
            own_name,
            bindings: Bindings::default(),
            bindings_file: None,
            persisted: Bindings::default(),
            store_failing: false,
            first_use_allowed: true,
            names_recorded: false,
            contenders_seen: HashMap::new(),
            presented: HashMap::new(),
            refused: HashSet::new(),
            dials: JoinSet::new(),
            ask_node_id: ask_status(),
            dialing: HashSet::new(),
            metrics,
            vouched: None,
        }
    }

    /// Ask node ids with `ask` instead of a `Status` call.
    #[cfg(test)]
    fn asking_with(mut self, ask: AskNodeId) -> Self {
        self.ask_node_id = ask;
        self
    }

    /// Whether the cluster records names in its membership (protocol
    /// level 4): then members recorded without one are not named on first
    /// use (see [`super::identity`]).
    pub fn set_names_recorded(&mut self, names_recorded: bool) {
        self.names_recorded = names_recorded;
    }

    /// Publish the names verified each round to `vouched` (the Raft
    /// service checks senders against them).
    pub fn publishing_to(mut self, vouched: Arc<tokio::sync::watch::Sender<Vouched>>) -> Self {
        self.vouched = Some(vouched);
        self
    }

    /// Publish the names bound, and the ones read where `believed` entries
    /// are, if they changed.
    fn publish(&self, believed: &BTreeMap<NodeId, Peer>) {
        let Some(vouched) = &self.vouched else {
            return;
        };
        let now = Vouched {
            bound: self
                .bindings
                .iter()
                .map(|(id, name)| (id, name.to_string()))
                .collect(),
            believed: self.verified_names(believed),
        };
        vouched.send_if_modified(|published| {
            let changed = *published != now;
            *published = now;
            changed
        });
    }

    /// Keep the bindings in `path`, starting from the ones stored there. An
    /// unreadable file fails closed: it is left as it is (for the operator
    /// to inspect), no name is bound on first use while this node runs, and
    /// names are learned only from the membership records and at recorded
    /// addresses, and kept in memory.
    pub fn with_bindings_file(mut self, path: PathBuf) -> Self {
        match bindings_file::load(&path) {
            Ok(bindings) => {
                self.persisted = bindings.clone();
                self.bindings = bindings;
                self.bindings_file = Some(path);
            }
            Err(error) => {
                tracing::error!(
                    "the node names verified before cannot be read ({error}); until the file is \
                     repaired or removed, members recorded without a name are believed only at \
                     their recorded address (no name is bound on first use)"
                );
                self.first_use_allowed = false;
            }
        }
        self
    }

    /// Store the bindings if they differ from what the file holds: a
    /// failed write is tried again next round.
    fn persist(&mut self) {
        let Some(path) = &self.bindings_file else {
            return;
        };
        if self.bindings == self.persisted {
            return;
        }
        match bindings_file::store(path, &self.bindings) {
            Ok(()) => {
                self.persisted = self.bindings.clone();
                if std::mem::take(&mut self.store_failing) {
                    tracing::info!("the verified node names are kept again");
                }
            }
            Err(error) if !self.store_failing => {
                self.store_failing = true;
                tracing::warn!(
                    "cannot keep the verified node names (tried again each round): {error}"
                );
            }
            Err(_) => {}
        }
    }

    /// The names the certificates of `peers` (entries [`Self::select`]
    /// believed) presented at their addresses: what the leader records.
    pub fn verified_names(&self, peers: &BTreeMap<NodeId, Peer>) -> BTreeMap<NodeId, String> {
        peers
            .iter()
            .filter_map(|(id, peer)| {
                let name = self.presented_name(&peer.announcement.rpc_addr)?;
                Some((*id, name.to_string()))
            })
            .collect()
    }

    /// The node name the certificate at `rpc_addr` presented when last
    /// read (`None` without TLS, or before it was read).
    pub fn presented_name(&self, rpc_addr: &str) -> Option<&str> {
        let seen = self.presented.get(rpc_addr)?;
        seen.identity.as_ref().ok()?.node_name.as_deref()
    }

    /// The node name this node's certificate carries, to gossip.
    pub fn own_name(&self) -> Option<&str> {
        self.own_name.as_deref()
    }

    /// One peer per node id: the newest incarnation whose claim holds.
    /// `members` is the Raft membership as this node knows it.
    pub fn select(
        &mut self,
        mut candidates: Vec<Peer>,
        members: &BTreeMap<NodeId, MemberView>,
    ) -> BTreeMap<NodeId, Peer> {
        let Some(tls) = self.tls.clone() else {
            return newest(candidates);
        };
        let node_id = self.node_id;
        // A removed (or replaced) node's name is free again. Not before the
        // membership is known (at start, or outside any cluster): that
        // would forget every stored name.
        if !members.is_empty() {
            self.bindings
                .retain(|id| id == node_id || members.contains_key(&id));
        }
        self.take_recorded(members);
        if let Some(own) = self.own_name.clone() {
            self.bindings.bind(node_id, own);
        }
        self.dial_due(&candidates, &tls);
        // Refusals are logged again only for entries gossip dropped and
        // brought back; the set stays as small as gossip.
        let entries: HashSet<(NodeId, &str)> = candidates
            .iter()
            .map(|peer| (peer.node_id, peer.announcement.rpc_addr.as_str()))
            .collect();
        self.refused
            .retain(|(id, addr)| entries.contains(&(*id, addr.as_str())));
        // Entries at their recorded address first: they name members (the
        // only place a member's name is learned) before other entries are
        // judged against those names.
        candidates.sort_by_key(|peer| {
            let recorded = at_recorded_address(peer, members);
            (!recorded, std::cmp::Reverse(peer.generation))
        });
        let contenders = self.contenders(&candidates, members, Instant::now());
        let crowding = Crowding {
            contested: contested_ids(&candidates),
            shared: self.shared_new_ids(&contenders),
        };
        let believed: Vec<Peer> = candidates
            .into_iter()
            .filter(|peer| self.believe(peer, members, &crowding))
            .collect();
        self.persist();
        let believed = newest(believed);
        self.publish(&believed);
        believed
    }

    /// Bind the names the membership records, logging the new ones.
    fn take_recorded(&mut self, members: &BTreeMap<NodeId, MemberView>) {
        let recorded: Vec<(NodeId, &str)> = members
            .iter()
            .filter_map(|(id, member)| Some((*id, member.name.as_deref()?)))
            .collect();
        for (id, name) in &recorded {
            if self.bindings.name_of(*id) != Some(*name) {
                tracing::info!(
                    node = id,
                    "node {id} is {name} (recorded in the membership)"
                );
            }
        }
        self.bindings.take_recorded(recorded);
    }

    /// Take in the dials that finished, and start dials, in the background,
    /// of the live addresses not read recently: a round never waits for a
    /// handshake (an address is judged in the round after its dial ends).
    fn dial_due(&mut self, candidates: &[Peer], tls: &Arc<ClientTls>) {
        while let Some(finished) = self.dials.try_join_next() {
            self.take_in(finished);
        }
        let now = Instant::now();
        let addresses: HashSet<&str> = candidates
            .iter()
            .map(|peer| peer.announcement.rpc_addr.as_str())
            .collect();
        self.presented
            .retain(|addr, _| addresses.contains(addr.as_str()));
        let due: HashSet<String> = candidates
            .iter()
            .filter(|peer| peer.alive)
            .map(|peer| peer.announcement.rpc_addr.clone())
            .filter(|addr| !self.dialing.contains(addr))
            .filter(|addr| self.presented.get(addr).is_none_or(|seen| seen.due(now)))
            .collect();
        let room = IDENTITY_DIALS_IN_FLIGHT_MAX.saturating_sub(self.dialing.len());
        for addr in due.into_iter().take(room) {
            let tls = tls.clone();
            let ask = self.ask_node_id.clone();
            self.dialing.insert(addr.clone());
            self.dials.spawn(async move {
                let identity = match presented_identity(&addr, &tls, IDENTITY_DIAL_TIMEOUT).await {
                    Ok(identity) => ask(addr.clone(), tls)
                        .await
                        .map(|node_id| (identity, node_id)),
                    Err(error) => Err(error.to_string()),
                };
                (addr, identity)
            });
        }
    }

    /// Record what a finished dial read.
    fn take_in(&mut self, finished: Result<Dialed, tokio::task::JoinError>) {
        let Ok((addr, dialed)) = finished else {
            return;
        };
        if let Err(error) = &dialed {
            tracing::debug!("no certificate or node id read at {addr}: {error}");
        }
        self.dialing.remove(&addr);
        let (identity, node_id) = match dialed {
            Ok((identity, node_id)) => (Ok(identity), Some(node_id)),
            Err(error) => (Err(error), None),
        };
        let checked_at = Instant::now();
        self.presented.insert(
            addr,
            Presented {
                identity,
                node_id,
                checked_at,
            },
        );
    }

    /// Whether the server at `peer`'s address reported `peer`'s id: only
    /// then does its entry speak for the node there.
    fn at_verified_address(&self, peer: &Peer) -> bool {
        self.presented
            .get(&peer.announcement.rpc_addr)
            .and_then(|seen| seen.node_id)
            == Some(peer.node_id)
    }

    /// Wait for every dial under way (each is bounded by
    /// [`IDENTITY_DIAL_TIMEOUT`]).
    #[cfg(test)]
    async fn settle(&mut self) {
        while let Some(finished) = self.dials.join_next().await {
            self.take_in(finished);
        }
    }

    /// The entries outside the membership that contend for an address or
    /// a name this round: the live ones, and the others first seen or last
    /// alive within [`IDENTITY_CONTENDER_MEMORY`].
    fn contenders<'a>(
        &mut self,
        candidates: &'a [Peer],
        members: &BTreeMap<NodeId, MemberView>,
        now: Instant,
    ) -> Vec<&'a Peer> {
        let outside: Vec<&Peer> = candidates
            .iter()
            .filter(|peer| !members.contains_key(&peer.node_id))
            .collect();
        let ids: HashSet<NodeId> = outside.iter().map(|peer| peer.node_id).collect();
        self.contenders_seen.retain(|id, _| ids.contains(id));
        for peer in &outside {
            let seen = self.contenders_seen.entry(peer.node_id).or_insert(now);
            if peer.alive {
                *seen = now;
            }
        }
        outside
            .into_iter()
            .filter(|peer| {
                peer.alive
                    || self.contenders_seen.get(&peer.node_id).is_some_and(|seen| {
                        now.saturating_duration_since(*seen) < IDENTITY_CONTENDER_MEMORY
                    })
            })
            .collect()
    }

    /// The ids among `contenders` that share their address, or a name (the
    /// certificate's read there; for an entry not alive, the one it
    /// gossips), with another id. Only entries whose address answered
    /// their id count: an entry at another node's address, or one never
    /// alive, would otherwise keep that node out for as long as it is
    /// gossiped.
    fn shared_new_ids(&self, contenders: &[&Peer]) -> HashSet<NodeId> {
        let mut by_addr: HashMap<&str, HashSet<NodeId>> = HashMap::new();
        let mut by_name: HashMap<&str, HashSet<NodeId>> = HashMap::new();
        let verified = contenders
            .iter()
            .filter(|peer| self.at_verified_address(peer));
        for peer in verified {
            let rpc_addr = peer.announcement.rpc_addr.as_str();
            by_addr.entry(rpc_addr).or_default().insert(peer.node_id);
            let gossiped = Some(peer.announcement.node_name.as_str())
                .filter(|name| !peer.alive && !name.is_empty());
            for name in [self.presented_name(rpc_addr), gossiped]
                .into_iter()
                .flatten()
            {
                by_name.entry(name).or_default().insert(peer.node_id);
            }
        }
        by_addr
            .into_values()
            .chain(by_name.into_values())
            .filter(|ids| ids.len() > 1)
            .flatten()
            .collect()
    }

    /// Whether to believe `peer`'s entry, binding or logging as judged. An
    /// entry at the address its membership records is believed until its
    /// certificate was read (it changes no address); once read, every
    /// entry is believed only if its claim holds, so an entry naming a
    /// member's id and address but another certificate's name (another
    /// process speaking for that member) is ignored, and the member's own
    /// entry stands.
    fn believe(
        &mut self,
        peer: &Peer,
        members: &BTreeMap<NodeId, MemberView>,
        crowding: &Crowding,
    ) -> bool {
        let recorded = members
            .get(&peer.node_id)
            .map(|member| member.rpc_addr.as_str());
        let trusted = at_recorded_address(peer, members);
        let rpc_addr = peer.announcement.rpc_addr.as_str();
        let Some(Presented {
            identity: Ok(identity),
            node_id: Some(answered_id),
            ..
        }) = self.presented.get(rpc_addr)
        else {
            return trusted;
        };
        let name = Some(peer.announcement.node_name.as_str()).filter(|name| !name.is_empty());
        let claim = Claim {
            node_id: peer.node_id,
            name,
            rpc_addr,
            contested: crowding.contested.contains(&peer.node_id),
            shared: crowding.shared.contains(&peer.node_id),
            first_use_allowed: self.first_use_allowed,
            names_recorded: self.names_recorded,
            answered_id: *answered_id,
        };
        match judge(claim, identity, recorded, &self.bindings) {
            Verdict::Accept => {
                self.refused.remove(&(peer.node_id, rpc_addr.to_string()));
                true
            }
            Verdict::AcceptAndBind(name) => {
                tracing::info!(node = peer.node_id, %rpc_addr, "node {} is {name} (certificate verified)", peer.node_id);
                self.bindings.bind(peer.node_id, name);
                true
            }
            Verdict::Refuse(mismatch) => {
                if self.refused.insert((peer.node_id, rpc_addr.to_string())) {
                    tracing::warn!(
                        node = peer.node_id,
                        %rpc_addr,
                        "gossip about node {} ignored: {mismatch}",
                        peer.node_id
                    );
                    let action = if recorded.is_some() {
                        "set_address"
                    } else {
                        "add_learner"
                    };
                    self.metrics.autopilot_action(action, "refused_identity");
                }
                false
            }
        }
    }
}

impl Presented {
    fn due(&self, now: Instant) -> bool {
        let after = if self.identity.is_ok() {
            IDENTITY_RECHECK_AFTER
        } else {
            IDENTITY_RETRY_AFTER
        };
        now.saturating_duration_since(self.checked_at) >= after
    }
}

/// The ids gossip claims at more than one gRPC address this round.
fn contested_ids(candidates: &[Peer]) -> HashSet<NodeId> {
    let mut addresses: HashMap<NodeId, HashSet<&str>> = HashMap::new();
    for peer in candidates {
        addresses
            .entry(peer.node_id)
            .or_default()
            .insert(peer.announcement.rpc_addr.as_str());
    }
    addresses
        .into_iter()
        .filter(|(_, addresses)| addresses.len() > 1)
        .map(|(node_id, _)| node_id)
        .collect()
}

/// What other entries of the round say about an entry's id.
struct Crowding {
    /// Ids claimed at more than one address.
    contested: HashSet<NodeId>,
    /// New ids sharing an address or certificate name with another.
    shared: HashSet<NodeId>,
}

fn at_recorded_address(peer: &Peer, members: &BTreeMap<NodeId, MemberView>) -> bool {
    members
        .get(&peer.node_id)
        .is_some_and(|member| member.rpc_addr == peer.announcement.rpc_addr)
}

#[cfg(test)]
mod tests;
