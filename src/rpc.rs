//! What one node asks another, and the words for it: Raft's RPCs (with Raft's type
//! configuration), registry writes ([`Command`]) and their [`Outcome`]s, joins and leaves, and
//! reports. Shared vocabulary at the bottom of the crate, as openraft's raft-kv-memstore keeps its
//! `TypeConfig` at its root: the link carries [`Request`]s and [`Response`]s between nodes without
//! looking inside them (but for [`Request::is_reliable`]); the cluster and the node make and
//! answer them.

use std::io::Cursor;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::ids::{EndpointId, NodeId};
use crate::report::{DeadLetter, NodeStats};

openraft::declare_raft_types!(
    /// dchan's Raft types: the log carries registry [`Command`]s, applying one gives an [`Outcome`].
    pub(crate) TypeConfig:
        D = Command,
        R = Outcome,
        Node = MemberNode,
);

/// A member as Raft's membership records it (replicated, so every leader knows it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MemberNode {
    /// Where to dial it.
    pub(crate) addr: String,
    /// It replicates the registry and never votes (a short-lived client such as `dchan send`):
    /// never promoted, so its exit never costs the cluster a voter.
    pub(crate) non_voting: bool,
    /// What it is, as its program named it ([`crate::NodeBuilder::name`]).
    #[serde(default)]
    pub(crate) name: Option<String>,
}

impl MemberNode {
    pub(crate) fn new(addr: impl Into<String>, non_voting: bool, name: Option<String>) -> Self {
        MemberNode { addr: addr.into(), non_voting, name }
    }
}

/// A change to the registry, committed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Add a sender or receiver to `channel`, creating the channel if it does not exist.
    Register {
        /// The channel's name.
        channel: String,
        /// The Rust type name of the messages the endpoint carries.
        type_name: String,
        /// Sender or receiver.
        kind: EndpointKind,
        /// The node the endpoint lives on.
        node: NodeId,
        /// How many unreceived messages a receiver holds (0 for senders).
        capacity: u32,
        /// Drawn once per registration by the registering node: a write retried after its
        /// answer was lost registers nothing twice.
        token: u64,
    },
    /// Remove one endpoint (its handle was dropped, or it was closed).
    Deregister {
        /// The channel's name.
        channel: String,
        /// The endpoint's id.
        id: EndpointId,
    },
    /// Close `channel`: every send fails from now on; receivers drain, then end.
    Close {
        /// The channel's name.
        channel: String,
    },
    /// Withdraw the registration `node` made with `token`: the registering node gave up waiting
    /// for it (no quorum in time), so nobody owns the endpoint if it was, or will be, committed.
    /// Removes the endpoint if it exists; otherwise a later `Register` with that token is refused.
    Withdraw {
        /// The node that registered.
        node: NodeId,
        /// The registration's token.
        token: u64,
    },
    /// Remove every endpoint that lives on `node` (it left the cluster).
    RemoveNode {
        /// The node that left.
        node: NodeId,
        /// It asked to leave (a graceful shutdown, which hands over what it holds after the
        /// leave, on credit it may have had before), rather than being removed for not
        /// answering (see [`crate::cluster::registry::Registry::left_gracefully`]).
        #[serde(default)]
        graceful: bool,
    },
}

/// What applying a [`Command`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The endpoint was registered under this id.
    Registered(EndpointId),
    /// The channel carries another type.
    TypeMismatch {
        /// The channel's type.
        existing: String,
    },
    /// The channel is closed.
    Closed,
    /// The registration was refused: the node has [`MAX_ENDPOINTS_PER_NODE`](crate::cluster::registry::MAX_ENDPOINTS_PER_NODE) endpoints, or the
    /// name is not a channel name.
    Refused(String),
    /// Applied (deregistration, close, node removal, membership change).
    Done,
    /// The registration was withdrawn before it applied.
    Withdrawn,
}

/// Which end of a channel an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EndpointKind {
    /// Puts messages into the channel.
    Sender,
    /// Takes messages out of the channel.
    Receiver,
}

/// Requests between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Raft log replication and heartbeats.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft election.
    Vote(VoteRequest<NodeId>),
    /// Raft snapshot transfer (one chunk).
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A registry command, to be committed by the leader.
    Write(Command),
    /// Add the sending node to the cluster (learner, promoted to voter while voters are few).
    Join {
        /// The joining node.
        node: NodeId,
        /// Its listening address.
        addr: String,
        /// It never votes (see [`crate::NodeBuilder::non_voting`]).
        non_voting: bool,
        /// What it is (see [`crate::NodeBuilder::name`]).
        #[serde(default)]
        name: Option<String>,
    },
    /// Remove a node from the cluster and from the registry.
    Leave {
        /// The leaving node.
        node: NodeId,
    },
    /// Would the receiving voter take part in an election now (it has heard from no leader for a
    /// while)? Asked before campaigning, so that a node cut off from the leader alone does not
    /// disrupt the others with ever higher terms (a pre-vote). It would only for a candidate
    /// whose log is at least as up to date as its own, as in a vote: a voter whose log is behind
    /// (it missed the last entry the old leader committed) then never raises the term, which
    /// would make the up-to-date voter's campaign clash with its own, round after round.
    PreVote {
        /// The asking node's last log entry.
        last_log: Option<openraft::LogId<NodeId>>,
    },
    /// What the receiving node holds, per channel ([`crate::NodeStats`]).
    Stats,
    /// Whether the receiving node answers now (the leader asks a learner before promoting it).
    Ping,
    /// The dead letters of a channel the receiving node keeps.
    DeadLetters {
        /// The channel.
        channel: String,
    },
    /// The asking node was removed from the cluster while alive (paused, or cut off, past the
    /// failure timeout) and let back in: it starts over as a new incarnation. The receiving node
    /// forgets its books of the asker's old incarnation and answers, per receiver of its own,
    /// how many of the messages the asker sent before and was not told were taken it has taken
    /// in (it delivers them; the asker delivers the rest again). Credit granted to the asker
    /// before is void, and its receivers of before are gone. Answered once the receiving node
    /// has applied the log up to `at` (the asker's own applied index when it started over, its
    /// removal included): a removal applied after the answer would forget the new
    /// incarnation's books as the old one's.
    Rejoined {
        /// The index of the last log entry the asker had applied when it started over.
        at: u64,
    },
    /// Let go of these dead letters of a channel (read and dealt with).
    RemoveDeadLetters {
        /// The channel.
        channel: String,
        /// Their numbers.
        seqs: Vec<u64>,
    },
}

/// Answers to [`Request`]s.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    /// Answer to [`Request::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`Request::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`Request::InstallSnapshot`].
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Answer to [`Request::Write`]: the log index it was committed at, and its outcome.
    Write(Result<(u64, Outcome), String>),
    /// Answer to [`Request::Join`] and [`Request::Leave`]: for a leave, the log index of the
    /// node's removal from the registry (0 for a join, or a node already gone).
    Membership(Result<u64, String>),
    /// Answer to [`Request::PreVote`]: whether this node would vote.
    PreVote(bool),
    /// Answer to [`Request::Stats`].
    Stats(NodeStats),
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::DeadLetters`].
    DeadLetters(Vec<DeadLetter>),
    /// Answer to [`Request::RemoveDeadLetters`]: how many were held.
    Removed(u64),
    /// Answer to [`Request::Rejoined`]: per receiver of the answering node, how many of the
    /// asker's earlier messages, from the first it was not told of, it has taken in.
    Rejoined(Vec<(EndpointId, u32)>),
}

impl Request {
    /// Whether the request (and its answer) must survive a broken link: everything but Raft's
    /// own RPCs and reads that the asker gives up on after a timeout.
    pub(crate) fn is_reliable(&self) -> bool {
        !matches!(
            self,
            Request::AppendEntries(_)
                | Request::Vote(_)
                | Request::InstallSnapshot(_)
                | Request::PreVote { .. }
                | Request::Stats
                | Request::Ping
                | Request::DeadLetters { .. }
        )
    }
}

impl Response {
    /// See [`Request::is_reliable`].
    pub(crate) fn is_reliable(&self) -> bool {
        !matches!(
            self,
            Response::AppendEntries(_)
                | Response::Vote(_)
                | Response::InstallSnapshot(_)
                | Response::PreVote(_)
                | Response::Stats(_)
                | Response::Pong
                | Response::DeadLetters(_)
        )
    }
}
