//! Raft wiring: the network over dchan's own connections, the timing, when to snapshot.
//!
//! All of Raft sits here, in [`store`] (the log and the state machine: the registry) and in
//! [`election`] (dchan times elections itself); its type configuration is shared vocabulary,
//! in [`crate::rpc`]. Raft RPCs travel as [`Request`]s on the same peer links
//! as channel data ([`crate::link::peer`]); openraft asks for a new network client on every election, so
//! clients are thin handles on the pooled [`Peer`] and never own a connection.

pub(crate) mod election;
pub(crate) mod store;

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::ids::NodeId;
use crate::link::peer::{Peer, Peers};
pub(crate) use crate::rpc::{MemberNode, TypeConfig};
use crate::rpc::{Request, Response};

/// The Raft handle of one node.
pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// Raft's timing, from the round trip expected between nodes (`NodeBuilder::round_trip`).
/// openraft gives an AppendEntries one heartbeat interval to be answered, so the heartbeat is
/// twice the round trip, and never under 100 ms (ten a second on a LAN). A voter that hears no
/// leader for the leader lease (`election_timeout_max`: 5 heartbeats) and a random part
/// campaigns, timed by [`election`] since openraft's own election timer is off; it first asks the
/// others (a pre-vote, given 2 heartbeats). A member silent for 10 heartbeats, and at least 2 s,
/// is taken for dead unless the builder says otherwise. The node's other waits that cross the
/// network follow the round trip too, above what a LAN needs: see [`Timing::handshake`],
/// [`Timing::join_attempt`], [`Timing::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) heartbeat: Duration,
    pub(crate) pre_vote: Duration,
    pub(crate) failure_timeout: Duration,
    /// The round trip it was made for.
    pub(crate) round_trip: Duration,
}

impl Timing {
    pub(crate) fn for_round_trip(round_trip: Duration) -> Self {
        let heartbeat = (round_trip * 2).max(Duration::from_millis(100));
        Timing {
            heartbeat,
            pre_vote: heartbeat * 2,
            failure_timeout: (heartbeat * 10).max(Duration::from_secs(2)),
            round_trip,
        }
    }

    /// A connection's set-up (TCP, TLS, the cookie handshake: about five round trips): 5 s,
    /// or 8 round trips on a slower network.
    pub(crate) fn handshake(&self) -> Duration {
        crate::link::handshake::HANDSHAKE_TIMEOUT.max(self.round_trip * 8)
    }

    /// One attempt to join through a seed (a connection, the request passed on to the leader,
    /// the learner committed): 5 s, or 16 round trips.
    pub(crate) fn join_attempt(&self) -> Duration {
        Duration::from_secs(5).max(self.round_trip * 16)
    }

    /// A registry write or a membership change, to its commit here (passed on to the leader,
    /// replicated, applied, retried while a leader is elected): 10 s, or 20 round trips.
    pub(crate) fn write(&self) -> Duration {
        Duration::from_secs(10).max(self.round_trip * 20)
    }

    /// The leader lease: how long voters refuse to vote after a leader's heartbeat.
    pub(crate) fn lease(&self) -> Duration {
        self.heartbeat * 5
    }
}

pub(crate) fn config(timing: Timing) -> openraft::Config {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    openraft::Config {
        cluster_name: "dchan".into(),
        heartbeat_interval: ms(timing.heartbeat),
        election_timeout_min: ms(timing.heartbeat * 3),
        election_timeout_max: ms(timing.lease()),
        enable_elect: false,
        // Snapshots are asked for as the registry grows (see `Snapshots`).
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 500,
        ..Default::default()
    }
}

#[cfg(test)]
#[test]
fn a_lan_keeps_the_timing_it_had_and_a_wan_stretches_it() {
    let lan = Timing::for_round_trip(Duration::ZERO);
    let c = config(lan);
    assert_eq!(
        (c.heartbeat_interval, c.election_timeout_min, c.election_timeout_max),
        (100, 300, 500)
    );
    assert_eq!(
        (lan.pre_vote, lan.failure_timeout),
        (Duration::from_millis(200), Duration::from_secs(2))
    );
    let wan = Timing::for_round_trip(Duration::from_millis(300));
    assert_eq!(config(wan).heartbeat_interval, 600, "an AppendEntries outlives a round trip");
    assert_eq!(wan.failure_timeout, Duration::from_secs(6));
    // The waits that cross the network: a LAN's until the round trip asks for more.
    let waits = |t: Timing| (t.handshake(), t.join_attempt(), t.write());
    let secs = Duration::from_secs;
    assert_eq!(waits(lan), (secs(5), secs(5), secs(10)));
    assert_eq!(waits(wan), (secs(5), secs(5), secs(10)));
    let far = Timing::for_round_trip(secs(2));
    assert_eq!(waits(far), (secs(16), secs(32), secs(40)));
}

/// The fewest log entries between two snapshots.
const MIN_LOGS_PER_SNAPSHOT: u64 = 2000;

/// Whether a snapshot is due, `since` entries after the last one, with `endpoints` registered:
/// every 2,000 entries, or every `endpoints / 8` once that is more. Writing a snapshot costs
/// O(registry), so one every O(registry) entries costs O(1) per entry however large the registry
/// grows (a fixed interval made each snapshot of a 100,000-endpoint registry a pause every 2,000
/// registrations), while the log between snapshots stays an eighth of the registry at most.
fn snapshot_due(since: u64, endpoints: usize) -> bool {
    since >= MIN_LOGS_PER_SNAPSHOT.max(endpoints as u64 / 8)
}

/// Asks Raft for a snapshot when one is due ([`snapshot_due`]): Raft's own policy is off.
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    /// The snapshot index when this node last asked: asked once per snapshot.
    asked: Option<u64>,
}

impl Snapshots {
    /// After an apply: ask for a snapshot if one is due with `endpoints` registered.
    pub(crate) async fn ask_if_due(&mut self, raft: &Raft, endpoints: usize) {
        let (applied, snapshot) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.last_applied.map_or(0, |l| l.index), m.snapshot.map_or(0, |l| l.index))
        };
        if self.asked == Some(snapshot)
            || !snapshot_due(applied.saturating_sub(snapshot), endpoints)
        {
            return;
        }
        self.asked = Some(snapshot);
        if let Err(e) = raft.trigger().snapshot().await {
            tracing::debug!(error = %e, "no snapshot: raft has stopped");
        }
    }
}

/// Hands openraft a client for any member, backed by the node's pooled peers.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> Client {
        Client { peer: self.peers.get(target, &node.addr) }
    }
}

/// One peer as openraft sees it.
#[derive(Debug)]
pub(crate) struct Client {
    peer: Arc<Peer>,
}

type RpcResult<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, MemberNode, E>>;

impl Client {
    async fn call<T, E: std::error::Error>(
        &self,
        req: Request,
        option: &RPCOption,
        pick: impl FnOnce(Response) -> Option<Result<T, E>>,
    ) -> RpcResult<T, E> {
        let resp = self
            .peer
            .request(req, option.hard_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        match pick(resp) {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.peer.id, e))),
            None => Err(RPCError::Network(NetworkError::new(&std::io::Error::other(
                "answer does not match the request",
            )))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(Request::AppendEntries(rpc), &option, |r| match r {
            Response::AppendEntries(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(Request::InstallSnapshot(rpc), &option, |r| match r {
            Response::InstallSnapshot(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(Request::Vote(rpc), &option, |r| match r {
            Response::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}
