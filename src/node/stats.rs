//! What a node can tell about the messages it holds: per channel, how many wait in its
//! receivers' buffers, how many it sent that are not taken yet, and its dead letters. Read
//! locally with [`Node::stats`], or from every member with [`Node::member_stats`] (a request to
//! each, answered from its own counters). Beside the message path, not on it.

use std::time::Duration;

use futures::future::join_all;

use crate::error::Cause;
use crate::error::Error;
use crate::node::Node;
use crate::report::{DeadLetter, NodeStats};
use crate::rpc::{Request, Response};

/// How long a member has to answer a stats or dead-letter request.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    /// What this node holds, per channel.
    pub fn stats(&self) -> NodeStats {
        self.core.stats()
    }

    /// Every member's [`stats`](Node::stats), asked of each (this node answers for itself). A
    /// member that does not answer within two seconds gets an error in its place: that is how
    /// `dchan status` tells which members are reachable.
    pub async fn member_stats(&self) -> Vec<(u64, Result<NodeStats, Error>)> {
        let members: Vec<u64> = self.core.registry.borrow().nodes.keys().copied().collect();
        join_all(members.into_iter().map(|id| async move {
            if id == self.core.id {
                return (id, Ok(self.stats()));
            }
            let answer = match self.ask(id, Request::Stats).await {
                Ok(Response::Stats(s)) => Ok(s),
                Ok(_) => Err(Error::registry("unexpected answer to a stats request")),
                Err(e) => Err(e),
            };
            (id, answer)
        }))
        .await
    }

    /// The dead letters of `channel`, from every member that answers (oldest first per node):
    /// messages a typed receiver could not decode. See [`DeadLetter`].
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] if some member did not answer (the letters of those that did are lost
    /// to this call, not to the cluster: they stay where they are).
    pub async fn dead_letters(&self, channel: &str) -> Result<Vec<DeadLetter>, Error> {
        let members: Vec<u64> = self.core.registry.borrow().nodes.keys().copied().collect();
        let answers = join_all(members.into_iter().map(|id| async move {
            if id == self.core.id {
                return Ok(self.core.local_dead_letters(channel));
            }
            match self.ask(id, Request::DeadLetters { channel: channel.to_owned() }).await {
                Ok(Response::DeadLetters(l)) => Ok(l),
                Ok(_) => Err(Error::registry("unexpected answer to a dead-letter request")),
                Err(e) => Err(e),
            }
        }))
        .await;
        let mut all = Vec::new();
        for a in answers {
            all.extend(a?);
        }
        Ok(all)
    }

    /// Let go of dead letters that were read and dealt with (each on the node that keeps it).
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] if a node keeping some of them did not answer; they stay there.
    pub async fn remove_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), Error> {
        let mut by_node: std::collections::BTreeMap<(u64, &str), Vec<u64>> = Default::default();
        for l in letters {
            by_node.entry((l.node, l.channel.as_str())).or_default().push(l.seq);
        }
        for ((node, channel), seqs) in by_node {
            if node == self.core.id {
                self.core.remove_dead_letters(channel, &seqs);
                continue;
            }
            let req = Request::RemoveDeadLetters { channel: channel.to_owned(), seqs };
            match self.ask(node, req).await? {
                Response::Removed(_) => {}
                _ => return Err(Error::registry("unexpected answer to a removal")),
            }
        }
        Ok(())
    }

    async fn ask(&self, id: u64, req: Request) -> Result<Response, Error> {
        let peer = self
            .core
            .peers
            .reach(id)
            .ok_or_else(|| Error::registry(format!("node {id} is not a member")))?;
        peer.request(req, ASK_TIMEOUT)
            .await
            .map_err(|e| Error::registry(Cause::new(format!("node {id} did not answer: {e}"), e)))
    }
}
