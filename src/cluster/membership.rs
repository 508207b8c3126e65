//! Membership: which nodes are in the cluster and which of them vote, changed one step at a time
//! by the Raft leader; and failure detection.
//!
//! Beside the message path, on the control path. Joins and leaves reach the leader's
//! [`Membership`] (forwarded there by [`crate::node::control`]). Every change takes one lock, so two
//! never overlap (openraft refuses a change while another is under way), and each first reads the
//! current membership, so a join or leave that is retried (its answer was lost) changes nothing
//! twice. The leader's keeper task ([`Membership::keep`]) does the rest, each step under the same
//! lock:
//!
//! - finishes a joint configuration that a lost leader left half done;
//! - removes a node that has not answered for the failure timeout (the leader hears from every
//!   member at each heartbeat, so silence means the node or the path to it is gone), with all its
//!   endpoints, logged once;
//! - promotes learners that have caught up while the voters are fewer than the target, so the
//!   voter count comes back after a voter leaves or dies: two at a time from an odd count, so
//!   that a growing cluster never has two voters that both must answer ([`promotions`]).
//!
//! A voter's leave promotes a learner in its place only if the learner answers a ping now, and
//! removes first a voter that stays and does not answer (silent for the failure timeout): a
//! change whose new voters cannot commit it would hold the lock, and the cluster, for good.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};

use crate::cluster::raft::MemberNode;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::raft::Raft;
use crate::ids::NodeId;
use crate::link::peer::Peers;
use crate::rpc::{Command, Request, Response};

/// How often the leader's keeper looks at the membership when nothing wakes it.
const KEEPER_TICK: Duration = Duration::from_millis(100);

/// A learner is promoted when its log is at most this many entries behind the leader's.
const CAUGHT_UP: u64 = 16;

/// The default number of voters.
pub(crate) const DEFAULT_VOTERS: usize = 3;

/// The membership policy of one node, acted on while it leads.
pub(crate) struct Membership {
    me: NodeId,
    raft: Raft,
    peers: Arc<Peers>,
    /// How many voters the cluster keeps when it has enough members.
    voters: usize,
    /// How long a member may stay silent before the leader removes it.
    failure_timeout: Duration,
    /// Held by each change: one at a time.
    changing: tokio::sync::Mutex<()>,
    /// Wakes the keeper (a node joined: promote it without waiting for the tick).
    kick: Notify,
    /// Nodes this node removed, while leading, for not answering (for metrics).
    removed: std::sync::atomic::AtomicU64,
    /// Since when this node leads, as its keeper saw it (`None`: it does not): a new leader has
    /// heard from no one yet, and gives every member a failure timeout from then.
    leading_since: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", &self.me)
            .field("voters", &self.voters)
            .field("failure_timeout", &self.failure_timeout)
            .finish_non_exhaustive()
    }
}

type Result<T = ()> = std::result::Result<T, String>;

impl Membership {
    pub(crate) fn new(
        me: NodeId,
        raft: Raft,
        peers: Arc<Peers>,
        voters: usize,
        failure_timeout: Duration,
    ) -> Self {
        Membership {
            me,
            raft,
            peers,
            voters,
            failure_timeout,
            changing: tokio::sync::Mutex::new(()),
            kick: Notify::new(),
            removed: std::sync::atomic::AtomicU64::new(0),
            leading_since: std::sync::Mutex::new(None),
        }
    }

    /// Nodes this node removed, while leading, for not answering.
    pub(crate) fn removed(&self) -> u64 {
        self.removed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long a member may stay silent before the leader removes it.
    pub(crate) fn failure_timeout(&self) -> Duration {
        self.failure_timeout
    }

    /// The membership as this node has it now (never held across an await).
    fn current(&self) -> openraft::Membership<NodeId, MemberNode> {
        self.raft.metrics().borrow().membership_config.membership().clone()
    }

    /// How many voters this node keeps the cluster at while it leads.
    pub(crate) fn voters_wanted(&self) -> usize {
        self.voters
    }

    /// On the leader: let `node`, listening at `addr`, in as a learner. The keeper promotes it to
    /// voter once it has caught up, if voters are missing. A node already in is answered at once.
    #[tracing::instrument(name = "admit", level = "info", skip(self, addr, non_voting, name))]
    pub(crate) async fn join(
        &self,
        node: NodeId,
        addr: &str,
        non_voting: bool,
        name: Option<String>,
    ) -> Result {
        if let Some(name) = &name {
            check_name(name)?;
        }
        let _one = self.changing.lock().await;
        let m = self.current();
        if m.get_node(&node).is_some() {
            return Ok(()); // a retried join whose first answer was lost
        }
        // A member at the same address is an earlier incarnation of a restarted node: it is
        // gone for good, and its address cannot be dialed for it any more.
        let stale: Vec<NodeId> =
            m.nodes().filter(|(id, n)| **id != node && n.addr == addr).map(|(id, _)| *id).collect();
        for old in stale {
            tracing::info!(node = old, %addr, by = node, "a node restarted at this address: the earlier one is removed");
            self.remove_locked(old, false, true).await?;
        }
        self.raft
            .add_learner(node, MemberNode::new(addr, non_voting, name), false)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(%addr, "node joined as a learner");
        self.kick.notify_one();
        Ok(())
    }

    /// On the leader: remove `node` and its endpoints (`graceful`: it asked to leave itself).
    /// A node already gone is answered at once. Answers with the log index of the node's
    /// removal from the registry (0: it was gone).
    #[tracing::instrument(name = "remove", level = "info", skip(self))]
    pub(crate) async fn leave(&self, node: NodeId, graceful: bool) -> Result<u64> {
        let _one = self.changing.lock().await;
        self.remove_locked(node, graceful, true).await
    }

    /// Remove `node` (see [`Membership::leave`]); with `clear`, first the voters that stay and
    /// are gone, if the others are too few to commit the change (see
    /// [`Membership::clear_the_way`]).
    async fn remove_locked(&self, node: NodeId, graceful: bool, clear: bool) -> Result<u64> {
        let m = self.current();
        if m.get_node(&node).is_none() {
            return Ok(0);
        }
        // Endpoints first: senders stop picking the node's receivers as soon as this applies.
        let removed = self
            .raft
            .client_write(Command::RemoveNode { node, graceful })
            .await
            .map_err(|e| e.to_string())?
            .log_id
            .index;
        let mut voters: BTreeSet<NodeId> = m.voter_ids().collect();
        if voters.contains(&node) {
            // A learner takes the voter's place first, so that the voters never shrink to
            // nothing (the last voter leaving) and a quorum stays as large as it can be.
            if let Some(learner) = self.best_learner(&m, node).await {
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([learner])), true)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(node = learner, replaces = node, "learner promoted to voter");
                voters.insert(learner);
            }
        }
        if clear && voters.contains(&node) {
            self.clear_the_way(node, &mut voters).await?;
        }
        if voters.len() == 1 && voters.contains(&node) {
            return Ok(removed); // the last voter stays a member: the cluster ends with it
        }
        if node == self.me && voters.contains(&node) {
            // A leader that removed itself outright could stop before the final configuration
            // reached the others, leaving them in a joint one that needs it to vote. It steps
            // down to learner instead (and keeps running); the next leader removes it.
            return match self
                .raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([node])), true)
                .await
            {
                Ok(_) | Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Err("stepped down: the next leader removes this node".into())
                }
                Err(e) => Err(e.to_string()),
            };
        }
        let change = if voters.contains(&node) {
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        };
        self.raft.change_membership(change, false).await.map_err(|e| e.to_string())?;
        Ok(removed)
    }

    /// The learner (other than `except`) best placed to become a voter: of those that answer
    /// now, the one heard from lately and furthest along in the log. `None` if none answers:
    /// a learner killed a moment ago is still "heard from lately", and promoted it would be a
    /// voter that never votes, which the next voter to leave needs to commit its removal
    /// (`tests/failover.rs`, a voter leaving just after the learner was killed).
    async fn best_learner(
        &self,
        m: &openraft::Membership<NodeId, MemberNode>,
        except: NodeId,
    ) -> Option<NodeId> {
        let matched = matched(&self.raft.metrics().borrow());
        let votes = |l: &NodeId| m.get_node(l).is_some_and(|n| !n.non_voting);
        let learners = m.learner_ids().filter(|l| *l != except && votes(l));
        let live =
            |l: &NodeId| self.peers.find(*l).is_some_and(|p| p.silent_for() < self.failure_timeout);
        let mut learners: Vec<NodeId> = learners.collect();
        learners
            .sort_by_key(|l| (!live(l), std::cmp::Reverse(matched.get(l).copied().unwrap_or(0))));
        for learner in learners {
            if self.answers(learner).await {
                return Some(learner);
            }
        }
        None
    }

    /// Before `node` leaves the voters: those that stay must commit that without it. If the
    /// ones that answer a ping now are not a majority of them, those that do not (killed a
    /// moment ago, before the failure detector saw it) would hold the change, and every one
    /// after it, for good: each is removed first once silent for the failure timeout, as the
    /// keeper would remove it (the keeper waits for this change's lock).
    async fn clear_the_way(&self, node: NodeId, voters: &mut BTreeSet<NodeId>) -> Result {
        let stay: Vec<NodeId> = voters.iter().copied().filter(|v| *v != node).collect();
        let others = stay.iter().copied().filter(|v| *v != self.me);
        let asked =
            futures::future::join_all(others.map(|v| async move { (v, self.answers(v).await) }));
        let silent: Vec<NodeId> =
            asked.await.into_iter().filter(|(_, answered)| !answered).map(|(v, _)| v).collect();
        if stay.len() - silent.len() > stay.len() / 2 {
            return Ok(());
        }
        for v in silent {
            if self.dead(v).await {
                tracing::warn!(node = v, "a voter that stays does not answer: removing it first");
                Box::pin(self.remove_locked(v, false, false)).await?;
                self.removed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                voters.remove(&v);
            }
        }
        Ok(())
    }

    /// Whether `node` is gone: it does not answer a ping, and nothing comes from it until it
    /// has been silent for the failure timeout (the failure detector's rule). At most a
    /// quarter of the failure timeout and the failure timeout itself.
    async fn dead(&self, node: NodeId) -> bool {
        if self.answers(node).await {
            return false;
        }
        let Some(peer) = self.peers.find(node) else { return true };
        let deadline = Instant::now() + self.failure_timeout;
        // (As the keeper counts it: a new leader gives every member a failure timeout.)
        let silent = || {
            let led =
                crate::sync::lock(&self.leading_since).map_or(Duration::ZERO, |t| t.elapsed());
            peer.silent_for().min(led)
        };
        while silent() < self.failure_timeout {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(self.failure_timeout / 20).await;
        }
        true
    }

    /// Whether `node` answers a ping within a quarter of the failure timeout.
    async fn answers(&self, node: NodeId) -> bool {
        let Some(peer) = self.peers.find(node) else { return false };
        let answer = peer.request(Request::Ping, self.failure_timeout / 4).await;
        matches!(answer, Ok(Response::Pong))
    }

    /// The keeper: while this node leads, finish joint configurations, remove silent nodes and
    /// keep the voters at their target. Runs until `cancel`.
    pub(crate) async fn keep(self: Arc<Self>, cancel: CancellationToken) {
        // When this leader first saw each member: a node is given the failure timeout from then,
        // since a new leader has not heard from anyone yet.
        let mut seen: HashMap<NodeId, Instant> = HashMap::new();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(KEEPER_TICK) => {}
                _ = self.kick.notified() => {}
            }
            let leading = {
                let m = self.raft.metrics();
                let m = m.borrow();
                m.state == ServerState::Leader && m.current_leader == Some(self.me)
            };
            {
                let mut since = crate::sync::lock(&self.leading_since);
                *since = leading.then(|| since.unwrap_or_else(Instant::now));
            }
            if !leading {
                seen.clear();
                continue;
            }
            if let Err(e) = self.keep_once(&mut seen).await {
                tracing::debug!(error = %e, "membership upkeep will be retried");
            }
        }
    }

    async fn keep_once(&self, seen: &mut HashMap<NodeId, Instant>) -> Result {
        let (membership, last_index, matched) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.membership_config.membership().clone(), m.last_log_index.unwrap_or(0), matched(&m))
        };
        let configs = membership.get_joint_config();
        if configs.len() > 1 {
            let last = configs.last().cloned().unwrap_or_default();
            tracing::info!(voters = ?last, "finishing a membership change left half done");
            let _one = self.changing.lock().await;
            self.raft
                .change_membership(ChangeMembers::ReplaceAllVoters(last), true)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }

        let now = Instant::now();
        seen.retain(|id, _| membership.get_node(id).is_some());
        for (id, _) in membership.nodes() {
            seen.entry(*id).or_insert(now);
        }
        let silent_for = |id: NodeId| {
            let since_seen = now - seen[&id];
            self.peers.find(id).map_or(since_seen, |p| p.silent_for().min(since_seen))
        };
        let dead = membership
            .nodes()
            .map(|(id, _)| *id)
            .find(|id| *id != self.me && silent_for(*id) >= self.failure_timeout);
        if let Some(node) = dead {
            tracing::warn!(
                node,
                timeout = ?self.failure_timeout,
                "node stopped answering: removing it and its endpoints from the cluster"
            );
            // (Counted only if still a member under the lock: a leave may have removed it
            // first, and counted it, while this waited.)
            let _one = self.changing.lock().await;
            if self.current().get_node(&node).is_none() {
                return Ok(());
            }
            let span = tracing::info_span!("remove", node, graceful = false);
            self.remove_locked(node, false, true).instrument(span).await?;
            self.removed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }

        let voters = membership.voter_ids().count();
        let ready: Vec<NodeId> = membership
            .learner_ids()
            .filter(|l| {
                membership.get_node(l).is_some_and(|n| !n.non_voting)
                    && matched.get(l).is_some_and(|m| m + CAUGHT_UP >= last_index)
                    && silent_for(*l) < self.failure_timeout / 2
            })
            .collect();
        let count = promotions(voters, self.voters, ready.len());
        if count == 0 {
            return Ok(());
        }
        let mut promote = BTreeSet::new();
        for learner in ready {
            if promote.len() < count && self.answers(learner).await {
                promote.insert(learner);
            }
        }
        if promote.len() < count {
            return Ok(());
        }
        let _one = self.changing.lock().await;
        if self.current().voter_ids().count() == voters {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(promote.clone()), true)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(nodes = ?promote, "learners promoted to voters");
        }
        Ok(())
    }
}

/// How many of `ready` caught-up learners the keeper promotes at once when `voters` vote and the
/// cluster keeps `target`: the count stays odd on the way up. An even count survives no more
/// losses than the odd one below it and needs one more vote for each commit; worse, two voters
/// where one was a moment before cannot commit without both, so a node killed while a cluster
/// grows from one voter to three (the second promoted, the third not yet) stopped the cluster
/// for good, its own removal included. From an odd count, two learners go in one change (a
/// joint configuration: the old voters and a majority of the new ones commit it); from an even
/// count (a voter died or left), one. An even `target` is reached by its last single step.
fn promotions(voters: usize, target: usize, ready: usize) -> usize {
    if voters >= target {
        0
    } else if voters.is_multiple_of(2) || voters + 1 == target {
        ready.min(1)
    } else if ready >= 2 {
        2
    } else {
        0
    }
}

#[cfg(test)]
#[test]
fn voters_are_promoted_to_an_odd_count() {
    // One voter and one learner stay so: two voters would survive no more than one.
    assert_eq!(promotions(1, 3, 1), 0);
    assert_eq!(promotions(1, 3, 2), 2);
    assert_eq!(promotions(1, 3, 5), 2);
    // A voter lost: one learner brings the count back.
    assert_eq!(promotions(2, 3, 1), 1);
    assert_eq!(promotions(2, 5, 3), 1);
    assert_eq!(promotions(3, 5, 1), 0);
    assert_eq!(promotions(3, 5, 2), 2);
    assert_eq!(promotions(4, 5, 1), 1);
    // An even target asked for is reached; none beyond it.
    assert_eq!(promotions(1, 2, 1), 1);
    assert_eq!(promotions(3, 4, 1), 1);
    assert_eq!(promotions(3, 3, 4), 0);
    assert_eq!(promotions(5, 3, 1), 0);
    assert_eq!(promotions(0, 3, 0), 0);
}

/// How far the leader knows each follower's log to match its own (empty on a non-leader).
fn matched(m: &openraft::RaftMetrics<NodeId, MemberNode>) -> HashMap<NodeId, u64> {
    m.replication.iter().flatten().map(|(id, log)| (*id, log.map_or(0, |l| l.index))).collect()
}

/// The longest name a node may give itself, in bytes.
pub(crate) const MAX_NAME: usize = 128;

/// Whether `name` may name a member: a line of text of at most [`MAX_NAME`] bytes.
pub(crate) fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!("a node's name has at most {MAX_NAME} bytes, not {}", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "a node's name is one line of text, without control characters: {name:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[test]
fn a_name_is_one_short_line() {
    assert!(check_name("send jobs").is_ok());
    assert!(check_name(&"x".repeat(MAX_NAME)).is_ok());
    assert!(check_name(&"x".repeat(MAX_NAME + 1)).unwrap_err().contains("at most 128 bytes"));
    assert!(check_name("two\nlines").unwrap_err().contains("control characters"));
}
