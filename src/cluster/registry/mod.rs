//! The registry: which nodes and channels exist, and which endpoints each channel has.
//!
//! This is the data that Raft replicates. It sits beside the message path, not on it: a
//! [`Command`] is committed through Raft (see [`crate::cluster::raft`]), every node applies it to its own
//! copy of [`Registry`], and each node's [`crate::channel::router`] reads that copy to pick a receiver for
//! each message. Applying is deterministic: endpoint ids come from a counter in the registry itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use imbl::ordmap::DiffItem;
use imbl::{OrdMap, OrdSet};

use serde::{Deserialize, Serialize};

use crate::ids::{EndpointId, NodeId};
use crate::rpc::EndpointKind;
use crate::rpc::{Command, Outcome};

/// The longest channel name, in bytes.
pub(crate) const MAX_NAME: usize = 255;

/// The most endpoints one node may have registered at once: past it, a registration is refused,
/// so that one member cannot grow the registry (and every node's copy of it) without bound.
#[cfg(not(test))]
pub(crate) const MAX_ENDPOINTS_PER_NODE: u32 = 1_000_000;
/// Smaller in unit tests, which fill it.
#[cfg(test)]
pub(crate) const MAX_ENDPOINTS_PER_NODE: u32 = 10_000;

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

/// The type an endpoint of `T` registers with: its Rust type name, or [`UNTYPED`] for
/// `dchan::Value`.
pub(crate) fn type_of<T: 'static>() -> String {
    static_type_of::<T>().to_owned()
}

/// [`type_of`], borrowed (a sender keeps it without an allocation of its own).
pub(crate) fn static_type_of<T: 'static>() -> &'static str {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<crate::Value>() {
        UNTYPED
    } else {
        std::any::type_name::<T>()
    }
}

/// One channel as the registry knows it: what [`crate::Node::cluster`] shows.
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

/// One channel in the replicated registry: kept small, since every node holds every channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Channel {
    /// The Rust type name of its messages, or [`UNTYPED`] (shared by the channels of one type).
    pub(crate) type_name: Arc<str>,
    /// Once the channel is closed, the member nodes at the close (see
    /// [`ChannelInfo::closed_by`]).
    pub(crate) closed: Option<Arc<BTreeSet<NodeId>>>,
    /// Its endpoints, in id order (ids only grow, so a registration appends).
    pub(crate) endpoints: Vec<EndpointInfo>,
    /// The id of the endpoint whose registration created it: a channel that left the registry
    /// and one made since under its name differ in it.
    pub(crate) created: EndpointId,
}

impl Channel {
    /// Whether the channel has been closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Whether the channel was closed while `node` was a member (and `node` has not left since).
    pub(crate) fn closed_by(&self, node: NodeId) -> bool {
        self.closed.as_ref().is_some_and(|by| by.contains(&node))
    }

    /// The receivers of the channel, in id order.
    pub(crate) fn receivers(&self) -> impl Iterator<Item = &EndpointInfo> {
        self.endpoints.iter().filter(|e| e.kind == EndpointKind::Receiver)
    }

    /// Endpoint `id` of this channel.
    pub(crate) fn endpoint(&self, id: EndpointId) -> Option<&EndpointInfo> {
        self.endpoints.binary_search_by_key(&id, |e| e.id).ok().map(|i| &self.endpoints[i])
    }

    /// The public view of this channel, called `name`.
    pub(crate) fn info(&self, name: &str) -> ChannelInfo {
        ChannelInfo {
            name: name.to_owned(),
            type_name: self.type_name.to_string(),
            closed: self.is_closed(),
            closed_by: self.closed.as_deref().cloned().unwrap_or_default(),
            endpoints: self.endpoints.iter().map(|e| (e.id, e.clone())).collect(),
        }
    }
}

/// The type names channels use, each stored once and counted by the channels that use it.
#[derive(Debug, Clone, Default)]
struct Types(OrdMap<Arc<str>, u32>);

impl Types {
    /// The shared copy of `name`, counted once more.
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some((shared, n)) = self.0.get_key_value(name) {
            let (shared, n) = (shared.clone(), *n);
            self.0.insert(shared.clone(), n + 1);
            return shared;
        }
        let shared: Arc<str> = Arc::from(name);
        self.0.insert(shared.clone(), 1);
        shared
    }

    /// A channel no longer uses `name`.
    fn release(&mut self, name: &str) {
        match self.0.get(name).copied() {
            Some(n) if n > 1 => {
                if let Some(count) = self.0.get_mut(name) {
                    *count = n - 1;
                }
            }
            Some(_) => {
                self.0.remove(name);
            }
            None => {}
        }
    }
}

/// Where an endpoint is registered: its channel and its registration token (its node is in the
/// channel's entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Registration {
    channel: Arc<str>,
    token: u64,
}

/// The replicated registry.
///
/// Its maps are persistent (`imbl`): a copy shares its structure with the original, so the state
/// machine publishes each new registry in O(1), a change copies only the path to what it names
/// (O(log n)), and a reader finds what changed between two registries by
/// [`Registry::changed_channels`] without visiting what they share.
///
/// A channel leaves the registry when its last endpoint goes (deregistered, withdrawn, or
/// removed with its node), open or closed, and its name can name a new channel, of any type. (A
/// closed channel with no endpoint left when closed goes at once.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Registry {
    /// Every channel, by name.
    pub(crate) channels: OrdMap<Arc<str>, Arc<Channel>>,
    /// The address of every member node (learners included), from Raft's membership.
    pub(crate) nodes: BTreeMap<NodeId, String>,
    /// The nodes that vote.
    pub(crate) voters: BTreeSet<NodeId>,
    /// Per member, which membership change let it in (see [`Registry::admitted`]).
    #[serde(default)]
    admitted: BTreeMap<NodeId, u64>,
    /// How many membership changes added or removed a node.
    #[serde(default)]
    membership_changes: u64,
    /// The next endpoint id to hand out.
    next_endpoint: EndpointId,
    /// The endpoint each registration token made: a repeated `Register` finds the endpoint its
    /// first copy made.
    by_token: OrdMap<(NodeId, u64), EndpointId>,
    /// Every endpoint's channel, node and token.
    registrations: OrdMap<EndpointId, Registration>,
    /// Registrations withdrawn before they applied (forgotten when their node leaves).
    withdrawn: OrdSet<(NodeId, u64)>,
    /// How many endpoints each node has registered.
    per_node: BTreeMap<NodeId, u32>,
    /// The closed channels (which a node's removal takes out of `closed_by`).
    closed: OrdSet<Arc<str>>,
    /// The latest [`MAX_GRACEFUL`] nodes that left gracefully (see
    /// [`Registry::left_gracefully`]), oldest first. Shared between the registries published
    /// (a clone copies nothing), as the maps are.
    #[serde(default)]
    graceful: imbl::Vector<NodeId>,
    /// The type names in use, each shared by its channels (not replicated: a cache).
    #[serde(skip)]
    types: Types,
    /// Counts the registries this node's state machine published (not replicated): a reader
    /// tells a newer registry from an older one by it.
    #[serde(skip)]
    pub(crate) version: u64,
    /// The index of the last Raft log entry this registry includes: the same entry has the same
    /// index on every node, so a node tells by it whether it has applied what another node has
    /// (see [`crate::rpc::Request::Rejoined`]). Set by the state machine (not replicated).
    #[serde(skip)]
    pub(crate) applied: u64,
}

/// How many nodes that left gracefully a registry remembers: a scale-down of up to this many
/// nodes at once hands over in the log's order. (One that fell off the list counts as removed:
/// what another node holds of it goes back to it, stopped, and is lost. It was 64.)
pub(crate) const MAX_GRACEFUL: usize = 1024;

impl Registry {
    /// Whether node `node`'s last removal was its own graceful leave (it hands over what it
    /// holds after the leave is committed, on credit it may have had before: a receiver keeps
    /// counting that credit, see `Grants::forget`), not a removal for not answering.
    pub(crate) fn left_gracefully(&self, node: NodeId) -> bool {
        self.graceful.contains(&node)
    }

    /// Whether node `a` left gracefully, and before node `b` did or while `b` has not (as far
    /// as this registry has applied: the log's order, the same on every node, a leave written
    /// again keeping its place). Of two nodes leaving at once, what the first sent the second
    /// holds, the second delivers; what the second sent the first holds, the second delivers
    /// elsewhere (see `Departure`).
    pub(crate) fn left_gracefully_before(&self, a: NodeId, b: NodeId) -> bool {
        let at = |n: NodeId| self.graceful.iter().position(|g| *g == n);
        match (at(a), at(b)) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

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
                if self.endpoints_of(*node) >= MAX_ENDPOINTS_PER_NODE {
                    return Outcome::Refused(format!(
                        "node {node} has {MAX_ENDPOINTS_PER_NODE} endpoints, the most one node may register"
                    ));
                }
                if let Some(ch) = self.channels.get(channel.as_str()) {
                    // An untyped endpoint joins a channel of any type and fixes none; the first
                    // typed endpoint fixes the type of a channel only untyped ones have used.
                    if &*ch.type_name != UNTYPED
                        && type_name != UNTYPED
                        && *ch.type_name != **type_name
                    {
                        return Outcome::TypeMismatch { existing: ch.type_name.to_string() };
                    }
                    if ch.is_closed() {
                        return Outcome::Closed;
                    }
                }
                self.next_endpoint += 1;
                let id = self.next_endpoint;
                let endpoint = EndpointInfo { id, node: *node, kind: *kind, capacity: *capacity };
                let name = match self.channels.get_key_value(channel.as_str()) {
                    Some((name, _)) => name.clone(),
                    None => Arc::from(channel.as_str()),
                };
                match self.channels.get_mut(channel.as_str()) {
                    Some(ch) => {
                        // Copies the channel only if a published registry shares it.
                        let c = Arc::make_mut(ch);
                        if &*c.type_name == UNTYPED && type_name != UNTYPED {
                            let typed = self.types.intern(type_name);
                            let untyped = std::mem::replace(&mut c.type_name, typed);
                            self.types.release(&untyped);
                        }
                        c.endpoints.push(endpoint);
                    }
                    None => {
                        let ch = Channel {
                            type_name: self.types.intern(type_name),
                            closed: None,
                            endpoints: vec![endpoint],
                            created: id,
                        };
                        self.channels.insert(name.clone(), Arc::new(ch));
                    }
                }
                self.by_token.insert((*node, *token), id);
                self.registrations.insert(id, Registration { channel: name, token: *token });
                *self.per_node.entry(*node).or_default() += 1;
                Outcome::Registered(id)
            }
            Command::Deregister { channel, id } => {
                if self.registrations.get(id).is_some_and(|r| *r.channel == **channel) {
                    self.remove_endpoint(*id);
                }
                Outcome::Done
            }
            Command::Close { channel } => {
                if let Some((name, ch)) = self.channels.get_key_value(channel.as_str()) {
                    if ch.endpoints.is_empty() {
                        // Nothing to drain: it goes at once.
                        let name = name.clone();
                        if let Some(ch) = self.channels.remove(&name) {
                            self.types.release(&ch.type_name);
                        }
                    } else if !ch.is_closed() {
                        let (name, mut ch) = (name.clone(), ch.clone());
                        let c = Arc::make_mut(&mut ch);
                        c.closed = Some(Arc::new(self.nodes.keys().copied().collect()));
                        self.channels.insert(name.clone(), ch);
                        self.closed.insert(name);
                    }
                }
                Outcome::Done
            }
            Command::Withdraw { node, token } => {
                match self.by_token.get(&(*node, *token)).copied() {
                    Some(id) => self.remove_endpoint(id),
                    None => {
                        self.withdrawn.insert((*node, *token));
                    }
                }
                Outcome::Done
            }
            Command::RemoveNode { node, graceful } => {
                // A leave written again keeps its place (a leader that leaves steps down, and
                // the next one removes it again, after other nodes' leaves perhaps).
                if !*graceful {
                    self.graceful.retain(|n| n != node);
                } else if !self.graceful.contains(node) {
                    if self.graceful.len() == MAX_GRACEFUL {
                        self.graceful.pop_front();
                    }
                    self.graceful.push_back(*node);
                }
                let gone: Vec<EndpointId> = self
                    .by_token
                    .range((*node, 0)..=(*node, u64::MAX))
                    .map(|(_, id)| *id)
                    .collect();
                for id in gone {
                    self.remove_endpoint(id);
                }
                let closed: Vec<Arc<str>> = self.closed.iter().cloned().collect();
                for name in closed {
                    if let Some(ch) = self.channels.get_mut(&name) {
                        if ch.closed_by(*node) {
                            if let Some(by) = &mut Arc::make_mut(ch).closed {
                                Arc::make_mut(by).remove(node);
                            }
                        }
                    }
                }
                let withdrawn: Vec<(NodeId, u64)> =
                    self.withdrawn.range((*node, 0)..=(*node, u64::MAX)).copied().collect();
                for w in withdrawn {
                    self.withdrawn.remove(&w);
                }
                Outcome::Done
            }
        }
    }

    /// Remove endpoint `id`, and its channel if it was the last and the channel is closed.
    fn remove_endpoint(&mut self, id: EndpointId) {
        let Some(r) = self.registrations.remove(&id) else { return };
        let Some(ch) = self.channels.get_mut(&r.channel) else { return };
        if let Some(node) = ch.endpoint(id).map(|e| e.node) {
            self.by_token.remove(&(node, r.token));
            if let Some(n) = self.per_node.get_mut(&node) {
                *n -= 1;
                if *n == 0 {
                    self.per_node.remove(&node);
                }
            }
        }
        // Its last endpoint: the channel leaves, open or closed (a channel without endpoints
        // holds nothing the registry must keep; what a node still holds for it waits for the
        // name's next receiver there: `Switchboard::retire`).
        if ch.endpoints.len() == 1 && ch.endpoints[0].id == id {
            if let Some(ch) = self.channels.remove(&r.channel) {
                self.types.release(&ch.type_name);
            }
            self.closed.remove(&r.channel);
            return;
        }
        let c = Arc::make_mut(ch);
        if let Ok(i) = c.endpoints.binary_search_by_key(&id, |e| e.id) {
            c.endpoints.remove(i);
        }
    }

    /// After deserializing: channels of one type share its name again.
    pub(crate) fn share_types(&mut self) {
        let names: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        for name in names {
            if let Some(ch) = self.channels.get_mut(&name) {
                let shared = self.types.intern(&ch.type_name);
                Arc::make_mut(ch).type_name = shared;
            }
        }
    }

    /// Whether endpoint id `id` has been handed out by this registry (it may be gone since).
    pub(crate) fn issued(&self, id: EndpointId) -> bool {
        id <= self.next_endpoint
    }

    /// Whether endpoint `id` is registered.
    /// Registered endpoint `id`: its node, kind and capacity.
    pub(crate) fn endpoint(&self, id: EndpointId) -> Option<&EndpointInfo> {
        let r = self.registrations.get(&id)?;
        self.channels.get(&r.channel)?.endpoint(id)
    }

    /// Whether endpoint `id` is registered (see [`Registry::endpoint`] for which it is).
    pub(crate) fn is_registered(&self, id: EndpointId) -> bool {
        self.registrations.contains_key(&id)
    }

    /// How many endpoints are registered.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.registrations.len()
    }

    /// How many endpoints node `node` has registered.
    pub(crate) fn endpoints_of(&self, node: NodeId) -> u32 {
        self.per_node.get(&node).copied().unwrap_or(0)
    }

    /// Channel `name`.
    pub(crate) fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels.get(name)
    }

    /// The channels that differ between `before` and this registry (added, changed or gone),
    /// found without visiting what the two share: O(changes x log n) when this registry was
    /// made from `before` by applying commands.
    pub(crate) fn changed_channels(&self, before: &Registry) -> Vec<Arc<str>> {
        before
            .channels
            .diff(&self.channels)
            .map(|d| match d {
                DiffItem::Add(k, _) | DiffItem::Remove(k, _) => k.clone(),
                DiffItem::Update { new: (k, _), .. } => k.clone(),
            })
            .collect()
    }

    /// Which membership change let member `node` in (`None`: not a member). A node that finds
    /// another number than it saw before was removed and let in again since, even if it never
    /// saw a registry without itself (its copy may jump from before the removal to after the
    /// return): its peers forgot its books, and it starts over.
    pub(crate) fn admitted(&self, node: NodeId) -> Option<u64> {
        self.admitted.get(&node).copied()
    }

    /// How many membership changes this registry has seen (what [`Registry::admitted`]
    /// numbers): one that has seen change `n` knows of every node admitted up to it.
    pub(crate) fn membership_changes(&self) -> u64 {
        self.membership_changes
    }

    /// Take Raft's new membership: the member nodes and their addresses, and who votes.
    pub(crate) fn set_membership(
        &mut self,
        nodes: impl IntoIterator<Item = (NodeId, String)>,
        voters: impl IntoIterator<Item = NodeId>,
    ) {
        let nodes: BTreeMap<NodeId, String> = nodes.into_iter().collect();
        // Counted only when a node comes or goes: taking the same membership again (a snapshot
        // installed) changes nothing, so every node counts alike.
        if !nodes.keys().eq(self.nodes.keys()) {
            self.membership_changes += 1;
            let change = self.membership_changes;
            self.admitted.retain(|n, _| nodes.contains_key(n));
            for n in nodes.keys() {
                self.admitted.entry(*n).or_insert(change);
            }
            // A node let in again (its id configured) has not left, until it leaves again.
            let admitted = &self.admitted;
            self.graceful.retain(|n| admitted.get(n) != Some(&change));
        }
        self.nodes = nodes;
        self.voters = voters.into_iter().collect();
        // A node no longer a member sends no fence: closed channels stop waiting for it. (Its
        // removal takes it out too, but a close committed between its removal and its
        // membership change listed it again: the switchboard simulation's seed 4412, whose
        // receivers waited for ever.)
        let closed: Vec<Arc<str>> = self.closed.iter().cloned().collect();
        for name in closed {
            let Some(ch) = self.channels.get_mut(&name) else { continue };
            let gone =
                ch.closed.as_ref().is_some_and(|by| by.iter().any(|n| !self.nodes.contains_key(n)));
            if gone {
                if let Some(by) = &mut Arc::make_mut(ch).closed {
                    let members = &self.nodes;
                    Arc::make_mut(by).retain(|n| members.contains_key(n));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[allow(unsafe_code)]
mod memory;
