//! What [`Node::cluster`](crate::Node::cluster) returns: a snapshot of the registry as one node
//! has applied it, plus who leads (the node's [`ClusterWatch`](crate::ClusterWatch) gives the same
//! snapshot each time it changes). Read-only; it is not on the message path.

pub use crate::cluster::registry::{ChannelInfo, EndpointInfo};
pub use crate::rpc::EndpointKind;

/// A snapshot of the cluster as one node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterInfo {
    /// The node this snapshot was taken on.
    pub me: u64,
    /// The Raft leader, if one is known.
    pub leader: Option<u64>,
    /// Every member, voters and learners.
    pub members: Vec<Member>,
    /// Every channel with its endpoints.
    pub channels: Vec<ChannelInfo>,
}

impl ClusterInfo {
    /// The channel called `name`, if it exists.
    pub fn channel(&self, name: &str) -> Option<&ChannelInfo> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// One member node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Its node id.
    pub id: u64,
    /// The address it listens on.
    pub addr: String,
    /// Whether it votes.
    pub role: Role,
    /// What it is, as its program named it ([`NodeBuilder::name`](crate::NodeBuilder::name)).
    pub name: Option<String>,
}

/// A member's part in Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Votes in elections and commits.
    Voter,
    /// Replicates the registry without voting.
    Learner,
}
