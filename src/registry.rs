//! The registry: which nodes and channels exist, and which endpoints each channel has.
//!
//! This is the data that Raft replicates. It sits beside the message path, not on it: a
//! [`Command`] is committed through Raft (see [`crate::raft`]), every node applies it to its own
//! copy of [`Registry`], and each node's [`crate::router`] reads that copy to pick a receiver for
//! each message. Applying is deterministic: endpoint ids come from a counter in the registry itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A node's id in the cluster.
pub(crate) type NodeId = u64;

/// An endpoint's id, unique in the cluster for its lifetime (assigned when its registration applies).
pub(crate) type EndpointId = u64;

/// The longest channel name, in bytes.
pub(crate) const MAX_NAME: usize = 255;

/// The most endpoints one node may have registered at once: past it, a registration is refused,
/// so that one member cannot grow the registry (and every node's copy of it) without bound.
pub(crate) const MAX_ENDPOINTS_PER_NODE: u32 = 100_000;

/// Whether `name` can name a channel: 1 to [`MAX_NAME`] bytes, no whitespace or control
/// characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a channel name has 1 to {MAX_NAME} bytes, not {}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("a channel name has no whitespace or control characters ({c:?})"));
    }
    Ok(())
}

/// A fresh registration token (see [`Command::Register`]).
pub(crate) fn token() -> u64 {
    crate::clock::random_u64()
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
    /// The registration was refused: the node has [`MAX_ENDPOINTS_PER_NODE`] endpoints, or the
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

/// One registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// The endpoint's id.
    pub id: EndpointId,
    /// The node it lives on.
    pub node: NodeId,
    /// Sender or receiver.
    pub kind: EndpointKind,
    /// For a receiver, how many unreceived messages it holds at most.
    pub capacity: u32,
}

/// The type name registered by untyped endpoints ([`crate::Value`]): they join a channel of
/// any type, and a channel only they have used takes the type of its first typed endpoint.
pub const UNTYPED: &str = "*";

/// One channel as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// The Rust type name of its messages (from its first typed endpoint), or [`UNTYPED`]
    /// while only untyped endpoints ([`crate::Value`]) have used it.
    pub type_name: String,
    /// Whether the channel has been closed.
    pub closed: bool,
    /// The member nodes when the channel was closed: receivers wait for each of them to confirm
    /// (with a fence) that nothing it sent before the close is still on the way.
    pub closed_by: BTreeSet<NodeId>,
    /// Its endpoints, by id.
    pub endpoints: BTreeMap<EndpointId, EndpointInfo>,
}

impl ChannelInfo {
    /// The receivers of the channel, in id order.
    pub fn receivers(&self) -> impl Iterator<Item = &EndpointInfo> {
        self.endpoints.values().filter(|e| e.kind == EndpointKind::Receiver)
    }

    /// The senders of the channel, in id order.
    pub fn senders(&self) -> impl Iterator<Item = &EndpointInfo> {
        self.endpoints.values().filter(|e| e.kind == EndpointKind::Sender)
    }
}

/// The replicated registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Registry {
    /// Every channel, by name.
    pub channels: BTreeMap<String, ChannelInfo>,
    /// The address of every member node (learners included), from Raft's membership.
    pub nodes: BTreeMap<NodeId, String>,
    /// The nodes that vote.
    pub voters: BTreeSet<NodeId>,
    /// The next endpoint id to hand out.
    next_endpoint: EndpointId,
    /// The registration token of every endpoint, both ways: a repeated `Register` finds the
    /// endpoint its first copy made.
    by_token: BTreeMap<(NodeId, u64), EndpointId>,
    token_of: BTreeMap<EndpointId, (NodeId, u64)>,
    /// Registrations withdrawn before they applied (forgotten when their node leaves).
    withdrawn: BTreeSet<(NodeId, u64)>,
    /// How many endpoints each node has registered.
    #[serde(default)]
    per_node: BTreeMap<NodeId, u32>,
}

impl Registry {
    /// Apply one command. Deterministic: every node gets the same registry from the same log.
    pub(crate) fn apply(&mut self, cmd: &Command) -> Outcome {
        match cmd {
            Command::Register { channel, type_name, kind, node, capacity, token } => {
                if let Some(id) = self.by_token.get(&(*node, *token)) {
                    return Outcome::Registered(*id);
                }
                if self.withdrawn.contains(&(*node, *token)) {
                    return Outcome::Withdrawn;
                }
                if let Err(why) = check_name(channel) {
                    return Outcome::Refused(why);
                }
                if self.per_node.get(node).copied().unwrap_or(0) >= MAX_ENDPOINTS_PER_NODE {
                    return Outcome::Refused(format!(
                        "node {node} has {MAX_ENDPOINTS_PER_NODE} endpoints, the most one node may register"
                    ));
                }
                let ch = self.channels.entry(channel.clone()).or_insert_with(|| ChannelInfo {
                    name: channel.clone(),
                    type_name: type_name.clone(),
                    closed: false,
                    closed_by: BTreeSet::new(),
                    endpoints: BTreeMap::new(),
                });
                // An untyped endpoint joins a channel of any type and fixes none; the first
                // typed endpoint fixes the type of a channel only untyped ones have used.
                if ch.type_name == UNTYPED {
                    ch.type_name = type_name.clone();
                } else if *type_name != UNTYPED && ch.type_name != *type_name {
                    return Outcome::TypeMismatch { existing: ch.type_name.clone() };
                }
                if ch.closed {
                    return Outcome::Closed;
                }
                self.next_endpoint += 1;
                let id = self.next_endpoint;
                ch.endpoints
                    .insert(id, EndpointInfo { id, node: *node, kind: *kind, capacity: *capacity });
                self.by_token.insert((*node, *token), id);
                self.token_of.insert(id, (*node, *token));
                *self.per_node.entry(*node).or_default() += 1;
                Outcome::Registered(id)
            }
            Command::Deregister { channel, id } => {
                if let Some(ch) = self.channels.get_mut(channel) {
                    ch.endpoints.remove(id);
                }
                self.forget_token(*id);
                Outcome::Done
            }
            Command::Close { channel } => {
                if let Some(ch) = self.channels.get_mut(channel) {
                    if !ch.closed {
                        ch.closed = true;
                        ch.closed_by = self.nodes.keys().copied().collect();
                    }
                }
                Outcome::Done
            }
            Command::Withdraw { node, token } => {
                match self.by_token.get(&(*node, *token)).copied() {
                    Some(id) => {
                        for ch in self.channels.values_mut() {
                            ch.endpoints.remove(&id);
                        }
                        self.forget_token(id);
                    }
                    None => {
                        self.withdrawn.insert((*node, *token));
                    }
                }
                Outcome::Done
            }
            Command::RemoveNode { node } => {
                for ch in self.channels.values_mut() {
                    ch.endpoints.retain(|_, e| e.node != *node);
                    ch.closed_by.remove(node);
                }
                let gone: Vec<EndpointId> = self
                    .by_token
                    .range((*node, 0)..=(*node, u64::MAX))
                    .map(|(_, id)| *id)
                    .collect();
                for id in gone {
                    self.forget_token(id);
                }
                self.withdrawn.retain(|(n, _)| n != node);
                Outcome::Done
            }
        }
    }

    /// Whether endpoint id `id` has been handed out by this registry (it may be gone since).
    pub(crate) fn issued(&self, id: EndpointId) -> bool {
        id <= self.next_endpoint
    }

    fn forget_token(&mut self, id: EndpointId) {
        if let Some(t) = self.token_of.remove(&id) {
            self.by_token.remove(&t);
            if let Some(n) = self.per_node.get_mut(&t.0) {
                *n -= 1;
                if *n == 0 {
                    self.per_node.remove(&t.0);
                }
            }
        }
    }

    /// Take Raft's new membership: the member nodes and their addresses, and who votes.
    pub(crate) fn set_membership(
        &mut self,
        nodes: impl IntoIterator<Item = (NodeId, String)>,
        voters: impl IntoIterator<Item = NodeId>,
    ) {
        self.nodes = nodes.into_iter().collect();
        self.voters = voters.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(channel: &str, ty: &str, kind: EndpointKind, node: NodeId) -> Command {
        static TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let token = TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Command::Register {
            channel: channel.into(),
            type_name: ty.into(),
            kind,
            node,
            capacity: 8,
            token,
        }
    }

    #[test]
    fn a_withdrawn_registration_is_gone_whichever_applies_first() {
        let mut r = Registry::default();
        let late = register("jobs", "A", EndpointKind::Receiver, 1);
        let Command::Register { token, .. } = late else { unreachable!() };
        assert_eq!(r.apply(&Command::Withdraw { node: 1, token }), Outcome::Done);
        assert_eq!(r.apply(&late), Outcome::Withdrawn, "withdrawn before it applied");
        let early = register("jobs", "A", EndpointKind::Receiver, 1);
        let Command::Register { token, .. } = early else { unreachable!() };
        assert!(matches!(r.apply(&early), Outcome::Registered(_)));
        r.apply(&Command::Withdraw { node: 1, token });
        assert_eq!(r.channels["jobs"].endpoints.len(), 0, "withdrawn after it applied");
        r.apply(&Command::RemoveNode { node: 1 });
        assert!(r.withdrawn.is_empty());
    }

    #[test]
    fn a_node_registers_at_most_its_share_and_names_are_checked() {
        let mut r = Registry::default();
        let reg = |r: &mut Registry, channel: &str, node: NodeId, token: u64| {
            r.apply(&Command::Register {
                channel: channel.into(),
                type_name: "T".into(),
                kind: EndpointKind::Sender,
                node,
                capacity: 1,
                token,
            })
        };
        for t in 0..u64::from(MAX_ENDPOINTS_PER_NODE) {
            assert!(matches!(reg(&mut r, "c", 1, t), Outcome::Registered(_)));
        }
        assert!(matches!(reg(&mut r, "c", 1, u64::MAX), Outcome::Refused(_)), "one too many");
        assert!(matches!(reg(&mut r, "c", 2, 0), Outcome::Registered(_)), "another node's own");
        let first = *r.channels["c"].endpoints.keys().next().expect("one");
        r.apply(&Command::Deregister { channel: "c".into(), id: first });
        assert!(matches!(reg(&mut r, "c", 1, u64::MAX), Outcome::Registered(_)), "room again");
        r.apply(&Command::RemoveNode { node: 1 });
        assert_eq!(r.per_node.get(&1), None, "nothing counted for a node that left");
        for bad in ["", "a b", "tab\t", &"x".repeat(MAX_NAME + 1)] {
            assert!(matches!(reg(&mut r, bad, 2, 9), Outcome::Refused(_)), "{bad:?}");
        }
        assert!(matches!(reg(&mut r, "orders.eu-west/1", 2, 10), Outcome::Registered(_)));
    }

    #[test]
    fn a_repeated_registration_registers_once() {
        let mut r = Registry::default();
        let cmd = register("jobs", "A", EndpointKind::Receiver, 1);
        assert_eq!(r.apply(&cmd), Outcome::Registered(1));
        assert_eq!(r.apply(&cmd), Outcome::Registered(1), "the retry finds the first");
        assert_eq!(r.channels["jobs"].endpoints.len(), 1);
        r.apply(&Command::RemoveNode { node: 1 });
        assert!(r.by_token.is_empty() && r.token_of.is_empty(), "tokens go with their endpoints");
    }

    #[test]
    fn a_channel_keeps_the_type_of_its_first_endpoint() {
        let mut r = Registry::default();
        assert_eq!(
            r.apply(&register("jobs", "A", EndpointKind::Receiver, 1)),
            Outcome::Registered(1)
        );
        assert_eq!(
            r.apply(&register("jobs", "B", EndpointKind::Sender, 2)),
            Outcome::TypeMismatch { existing: "A".into() }
        );
        assert_eq!(
            r.apply(&register("jobs", "A", EndpointKind::Sender, 2)),
            Outcome::Registered(2)
        );
    }

    #[test]
    fn untyped_endpoints_join_any_channel_and_fix_no_type() {
        let mut r = Registry::default();
        assert!(matches!(
            r.apply(&register("jobs", UNTYPED, EndpointKind::Sender, 1)),
            Outcome::Registered(_)
        ));
        assert_eq!(r.channels["jobs"].type_name, UNTYPED);
        assert!(matches!(
            r.apply(&register("jobs", "A", EndpointKind::Receiver, 2)),
            Outcome::Registered(_)
        ));
        assert_eq!(r.channels["jobs"].type_name, "A", "the first typed endpoint fixes it");
        assert_eq!(
            r.apply(&register("jobs", "B", EndpointKind::Sender, 2)),
            Outcome::TypeMismatch { existing: "A".into() }
        );
        assert!(matches!(
            r.apply(&register("jobs", UNTYPED, EndpointKind::Receiver, 3)),
            Outcome::Registered(_)
        ));
        assert_eq!(r.channels["jobs"].type_name, "A");
    }

    #[test]
    fn close_remembers_the_members_and_refuses_new_endpoints() {
        let mut r = Registry::default();
        r.set_membership([(1, "a".into()), (3, "c".into())], [1]);
        r.apply(&register("jobs", "A", EndpointKind::Sender, 1));
        r.apply(&register("jobs", "A", EndpointKind::Sender, 3));
        r.apply(&register("jobs", "A", EndpointKind::Receiver, 2));
        r.apply(&Command::Close { channel: "jobs".into() });
        let ch = &r.channels["jobs"];
        assert!(ch.closed);
        assert_eq!(ch.closed_by, BTreeSet::from([1, 3]));
        assert_eq!(r.apply(&register("jobs", "A", EndpointKind::Receiver, 2)), Outcome::Closed);
        r.apply(&Command::RemoveNode { node: 3 });
        assert_eq!(r.channels["jobs"].closed_by, BTreeSet::from([1]));
    }
}
