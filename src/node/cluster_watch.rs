//! [`ClusterWatch`]: the cluster as this node knows it ([`Node::cluster`]), each time it changes,
//! driven by the node's registry and Raft state. Read-only; not on the message path.

use std::sync::Arc;

use tokio::sync::watch;

use super::Node;
use crate::cluster::registry::Registry;
use crate::cluster::view::ClusterInfo;
use crate::rpc::MemberNode;

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
    pub(crate) node: Node,
    pub(crate) registry: watch::Receiver<Arc<Registry>>,
    pub(crate) metrics: watch::Receiver<openraft::RaftMetrics<u64, MemberNode>>,
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
                biased;
                r = self.registry.changed() => r.ok()?,
                r = self.metrics.changed() => r.ok()?,
            }
        }
    }
}

impl Node {
    /// The cluster as this node knows it, each time it changes (see [`ClusterWatch`]).
    pub fn watch_cluster(&self) -> ClusterWatch {
        ClusterWatch {
            node: self.clone(),
            registry: self.core.registry.clone(),
            metrics: self.core.raft.metrics(),
            last: None,
        }
    }
}
