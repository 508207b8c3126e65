//! Election timing, done by dchan rather than by openraft.
//!
//! openraft 0.9 draws a node's random election timeout once, when the node starts, and keeps it
//! for life (fixed upstream only in 0.10): two voters that drew close values can split their
//! votes round after round, and every failover waits the same long draw. So openraft's own
//! election timer is off (`enable_elect: false`) and [`Elections::run`] triggers elections
//! instead, drawing a fresh wait each time. A voter campaigns once it has heard nothing from a
//! leader (and granted no vote) for the leader lease plus a random part: the lease is how long
//! the other voters refuse a vote after the last heartbeat, so campaigning earlier cannot win.
//!
//! Before campaigning it asks the other voters whether they would take part (a pre-vote: they
//! would if they have not heard from a leader for two heartbeats and the asker's log is at least
//! as up to date as theirs), and campaigns only with a majority. A node cut off from the leader,
//! alone or in one direction, so never raises the term and never unseats a leader the others
//! still follow when it comes back. Nor does a voter that missed the last entry the old leader
//! committed: openraft refuses its vote by the log without taking up its term, so the up-to-date
//! voter's next campaign would carry the same term as the laggard's and be refused too, round
//! after round while the laggard's timer fires first (on a 300 ms link, for good: each campaign
//! sets off the other's before its request arrives).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use openraft::LogId;

use super::store::LogStore;
use super::Raft;
use crate::clock::{now_ms, random_u64};
use crate::ids::NodeId;
use crate::link::peer::Peers;
use crate::rpc::{Request, Response};

/// How often the timer looks.
const TICK: Duration = Duration::from_millis(20);

/// When this node last heard from a leader or granted a vote, for one node.
#[derive(Debug)]
pub(crate) struct Elections {
    last_contact: AtomicU64,
    /// When a leader (this node included) was last heard from: how long this node has been
    /// without one, which is how a node cut off long enough to be removed finds out.
    leader_heard: AtomicU64,
    /// How long voters refuse to vote after a leader's heartbeat (openraft's leader lease,
    /// which is its `election_timeout_max`).
    lease: Duration,
    /// How long without a leader before this node would take part in an election, and how
    /// long a pre-vote is given (see [`super::Timing`]).
    pre_vote: Duration,
    /// This node's log: a pre-vote compares the asker's last entry with its last.
    log: LogStore,
}

impl Elections {
    pub(crate) fn new(timing: super::Timing, log: LogStore) -> Self {
        Elections {
            last_contact: AtomicU64::new(now_ms()),
            leader_heard: AtomicU64::new(now_ms()),
            lease: timing.lease(),
            pre_vote: timing.pre_vote,
            log,
        }
    }

    /// A leader was heard from (an AppendEntries was accepted) or a vote was granted: the next
    /// election waits a whole timeout from now.
    pub(crate) fn contact(&self) {
        self.last_contact.store(now_ms(), Ordering::Relaxed);
    }

    /// An AppendEntries from the leader was accepted.
    pub(crate) fn heard_leader(&self) {
        self.leader_heard.store(now_ms(), Ordering::Relaxed);
        self.contact();
    }

    /// The leader lease (see [`super::Timing::lease`]).
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// How long this node has gone without hearing from a leader.
    pub(crate) fn leaderless_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.leader_heard.load(Ordering::Relaxed)))
    }

    /// Whether this node would take part in an election now, for a candidate whose last log
    /// entry is `last_log` (see [`Request::PreVote`]): it has been without a leader for a while,
    /// and would grant the vote by the log (Raft's "at least as up to date").
    pub(crate) fn would_vote(&self, last_log: Option<LogId<NodeId>>) -> bool {
        self.leaderless_for() >= self.pre_vote && last_log >= self.log.last()
    }

    /// Ask the other voters whether they would take part in an election: true with a majority
    /// of all voters (this one included).
    async fn pre_vote(&self, peers: &Peers, others: Vec<(NodeId, String)>) -> bool {
        let voters = others.len() + 1;
        let last_log = self.log.last();
        let asks = others.into_iter().map(|(id, addr)| {
            let peer = peers.get(id, &addr);
            async move {
                matches!(
                    peer.request(Request::PreVote { last_log }, self.pre_vote).await,
                    Ok(Response::PreVote(true))
                )
            }
        });
        // Done as soon as a majority has said yes: a dead voter's silence is not waited for.
        let mut answers: futures::stream::FuturesUnordered<_> = asks.collect();
        let mut granted = 1;
        while let Some(yes) = futures::StreamExt::next(&mut answers).await {
            granted += usize::from(yes);
            if granted * 2 > voters {
                return true;
            }
        }
        false
    }

    /// A fresh wait: the lease, a margin for heartbeats in flight, and up to half a lease more.
    fn draw(&self) -> u64 {
        let lease = self.lease.as_millis() as u64;
        lease + 50 + random_u64() % (lease / 2).max(1)
    }

    /// Trigger elections on this node while it is a voter without a leader, until `cancel`.
    pub(crate) async fn run(
        self: Arc<Self>,
        raft: Raft,
        peers: Arc<Peers>,
        me: NodeId,
        cancel: CancellationToken,
    ) {
        let mut wait = self.draw();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let (leading, voter, others) = {
                let m = raft.metrics();
                let m = m.borrow();
                let membership = m.membership_config.membership();
                let others: Vec<(NodeId, String)> = membership
                    .voter_ids()
                    .filter(|v| *v != me)
                    .filter_map(|v| Some((v, membership.get_node(&v)?.addr.clone())))
                    .collect();
                (m.state == ServerState::Leader, membership.voter_ids().any(|v| v == me), others)
            };
            let alone = others.is_empty();
            if leading {
                self.heard_leader();
                continue;
            }
            if !voter {
                self.contact();
                continue;
            }
            let silent = now_ms().saturating_sub(self.last_contact.load(Ordering::Relaxed));
            // The only voter has nobody to wait for.
            if alone || silent >= wait {
                let term = raft.metrics().borrow().current_term;
                let span = tracing::info_span!("election", term, silent_ms = silent);
                let campaign = async {
                    if !alone && !self.pre_vote(&peers, others).await {
                        // The others still follow a leader, or cannot be reached: wait again.
                        tracing::debug!("pre-vote: no majority would take part");
                        return Ok(());
                    }
                    tracing::info!("no leader heard from: campaigning");
                    raft.trigger().elect().await.map_err(|_| ())
                };
                if campaign.instrument(span).await.is_err() {
                    return; // Raft has stopped
                }
                self.contact();
                wait = self.draw();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log_id(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    /// A pre-vote is granted as Raft grants a vote by the log: to a candidate whose last entry
    /// is at least as up to date (a later term, or the same term and as long), once this node has
    /// heard no leader for a while.
    #[test]
    fn a_pre_vote_is_refused_to_a_candidate_whose_log_is_behind() {
        let log = LogStore::default();
        log.set_last_for_test(log_id(1, 12));
        let lan = super::super::Timing::for_round_trip(Duration::ZERO);
        // (A pre-vote wanting an hour without a leader: "just now" whatever the machine's load.)
        let hour = Duration::from_secs(3600);
        let heard = Elections::new(super::super::Timing { pre_vote: hour, ..lan }, log.clone());
        assert!(!heard.would_vote(log_id(2, 3)), "a leader was heard just now");
        // Without a leader for as long as a pre-vote wants.
        let elections =
            Elections::new(super::super::Timing { pre_vote: Duration::ZERO, ..lan }, log);
        assert!(!elections.would_vote(log_id(1, 11)), "behind: it missed the last entry");
        assert!(!elections.would_vote(None), "an empty log");
        assert!(elections.would_vote(log_id(1, 12)), "as long");
        assert!(elections.would_vote(log_id(1, 13)), "longer");
        assert!(elections.would_vote(log_id(2, 3)), "a later term");
    }
}
