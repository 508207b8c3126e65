//! What [`Node::cluster`](crate::Node::cluster) returns: a snapshot of the registry as one node
//! has applied it, plus who leads; and [`ClusterWatch`], the same snapshot each time it changes.
//! Read-only; it is not on the message path.

use std::sync::Arc;

use tokio::sync::watch;

use crate::registry::Registry;

pub use crate::registry::{ChannelInfo, EndpointInfo};
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
}

/// A member's part in Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Votes in elections and commits.
    Voter,
    /// Replicates the registry without voting.
    Learner,
}

/// The cluster as one node knows it, each time it changes: made by
/// [`Node::watch_cluster`](crate::Node::watch_cluster).
///
/// Driven by the node's registry and Raft state, not by polling: [`changed`](ClusterWatch::changed)
/// returns when an endpoint, channel, member or the leader changed.
///
/// ```
/// # #[actix::main]
/// # async fn main() -> Result<(), dchan::Error> {
/// let node = dchan::Node::builder().bootstrap().start().await?;
/// let mut watch = node.watch_cluster();
/// let first = watch.changed().await.expect("a running node");
/// let rx = node.receiver::<u64>("jobs").await?;
/// let next = watch.changed().await.expect("a running node");
/// assert!(first.channel("jobs").is_none() && next.channel("jobs").is_some());
/// # drop(rx);
/// node.shutdown().await
/// # }
/// ```
pub struct ClusterWatch {
    pub(crate) node: crate::Node,
    pub(crate) registry: watch::Receiver<Arc<Registry>>,
    pub(crate) metrics: watch::Receiver<openraft::RaftMetrics<u64, crate::raft::MemberNode>>,
    pub(crate) last: Option<ClusterInfo>,
}

impl std::fmt::Debug for ClusterWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterWatch").field("last", &self.last).finish_non_exhaustive()
    }
}

impl ClusterWatch {
    /// The cluster now, the first time; then the next one that differs from the last returned.
    /// `None` once the node has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a change seen by a cancelled call is returned by the next.
    pub async fn changed(&mut self) -> Option<ClusterInfo> {
        loop {
            let now = self.node.cluster();
            if self.last.as_ref() != Some(&now) {
                self.last = Some(now.clone());
                return Some(now);
            }
            tokio::select! {
                r = self.registry.changed() => r.ok()?,
                r = self.metrics.changed() => r.ok()?,
            }
        }
    }
}
