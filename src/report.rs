//! What a node reports of the messages it holds: per channel, how many wait in its receivers'
//! buffers, how many it sent that are not taken yet, and its dead letters. Records shared by the
//! node that counts them ([`Node::stats`](crate::Node::stats)) and by the link that carries them
//! to a member that asks ([`Node::member_stats`](crate::Node::member_stats)).

use serde::{Deserialize, Serialize};

/// What one node holds of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChannelStats {
    /// The channel.
    pub name: String,
    /// Messages in the buffers of this node's receivers, not yet taken.
    pub buffered: u64,
    /// Messages this node sent to receivers on other nodes and kept until they are taken.
    pub in_flight: u64,
    /// Dead letters kept on this node now.
    pub dead_letters: u64,
    /// Dead letters this node ever had for the channel (kept, read or pushed out).
    pub dead_letters_total: u64,
    /// Messages this node's senders placed (each broadcast copy counts), ever.
    #[serde(default)]
    pub sent: u64,
    /// Messages this node's receivers took, ever.
    #[serde(default)]
    pub received: u64,
    /// Messages this node delivered again (their receiver went without taking them), ever.
    #[serde(default)]
    pub redelivered: u64,
    /// Sends on this node waiting now for room in a receiver (or for a receiver).
    #[serde(default)]
    pub blocked: u64,
}

/// What one node holds, per channel it has seen used on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStats {
    /// The node.
    pub node: u64,
    /// Its channels, by name.
    pub channels: Vec<ChannelStats>,
    /// How many voters it keeps the cluster at while it leads
    /// ([`NodeBuilder::voters`](crate::NodeBuilder::voters)).
    #[serde(default)]
    pub voters_wanted: usize,
}

impl NodeStats {
    /// The figures for `channel`, if this node has any.
    pub fn channel(&self, name: &str) -> Option<&ChannelStats> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// A message that a receiver could not decode as its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The channel it was sent on.
    pub channel: String,
    /// The node that keeps it (where its receiver was).
    pub node: u64,
    /// The node that sent it (`None`: a sender on the keeping node).
    pub from: Option<u64>,
    /// Its number among the dead letters of this channel on the keeping node (from 1).
    pub seq: u64,
    /// The type the receiver expected.
    pub expected: String,
    /// Why it did not decode.
    pub error: String,
    /// The message, MessagePack-encoded as it arrived.
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
}

impl DeadLetter {
    /// The message as an untyped value, if it is well-formed MessagePack.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`](crate::Error::Codec) if it is not.
    pub fn value(&self) -> Result<crate::Value, crate::Error> {
        rmp_serde::from_slice(&self.message)
            .map_err(|e| crate::Error::codec(crate::error::Cause::of(e)))
    }
}
