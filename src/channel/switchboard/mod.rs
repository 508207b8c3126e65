//! The switchboard: on each node, what connects the stops of a message's path. It owns the
//! channel routers and the receivers' inboxes of this node, and takes what the connections'
//! readers hand up: data for an inbox ([`Switchboard::deliver`]), credit for a router's windows
//! and the release of kept messages ([`Switchboard::credit`]), requests for credit and credit
//! given back, a close fence, a receiver gone ([`Switchboard::released`]: what it did not take
//! is delivered elsewhere). When the registry changes ([`Switchboard::refresh`]) it finds the
//! channels that changed since the last registry it saw, and for those only rebuilds the router,
//! offers credit to new sending nodes, delivers elsewhere what was sent to receivers of nodes
//! that died, fences a closed channel, retires a channel gone from the registry and lets go of
//! dropped receivers' inboxes; a change of membership also revisits the links and every router
//! and inbox of this node. A node removed while alive and let back in starts over (`rejoin`):
//! it settles with every peer what its old incarnation sent, and the peers forget its books. A
//! node that leaves gracefully hands over what it holds (`leave`).
//!
//! Each concern it connects keeps its own state: credit in [`crate::channel::credit`], fences in
//! [`crate::channel::close`], kept messages in [`crate::link::outbox`], redelivery in [`crate::channel::redelivery`],
//! routing in [`crate::channel::router`].

mod frames;
mod leave;
mod refresh;
mod rejoin;
#[cfg(test)]
mod sim;
mod unnamed;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::channel::close::Fences;
use crate::channel::counters::{Counters, Counts};
use crate::channel::credit::{Credits, Departure};
use crate::channel::dead_letters::DeadLetters;
use crate::channel::inbox::ErasedInbox;
use crate::channel::router::ChannelRoute;
use crate::cluster::registry::Registry;
use crate::ids::{EndpointId, NodeId};
use crate::link::peer::Peers;
use crate::rpc::EndpointKind;
use crate::sync::{lock, HashMap};
use crate::tasks::Tasks;

/// How long a leaving node waits for its messages to reach other nodes.
pub(crate) const HAND_OVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One node's routers and inboxes, and the state of the concerns between them.
#[derive(Debug)]
pub(crate) struct Switchboard {
    me: NodeId,
    peers: Arc<Peers>,
    registry: watch::Receiver<Arc<Registry>>,
    tasks: Tasks,
    cancel: CancellationToken,
    routes: Mutex<HashMap<String, Arc<ChannelRoute>>>,
    /// Channels gone from the registry whose routers this node keeps, for the messages it
    /// still holds for them (see [`Switchboard::retire`]).
    kept: Mutex<Vec<String>>,
    /// What this node counted of each channel it used, by name, and of its unnamed channels
    /// together (see [`crate::channel::counters`]).
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    unnamed_counters: Arc<Counters>,
    inboxes: Arc<Mutex<HashMap<EndpointId, Arc<dyn ErasedInbox>>>>,
    /// The routers of other nodes' unnamed channels on this node, by receiver, that senders
    /// decoded here share (see [`unnamed`]). This node's own are found through their inboxes.
    unnamed: Mutex<HashMap<EndpointId, std::sync::Weak<ChannelRoute>>>,
    /// Wants for this node's unnamed channels from nodes it does not know as members yet (its
    /// registry lags behind theirs): answered once they are.
    deferred_wants: unnamed::Latest<(NodeId, EndpointId)>,
    /// Wants for this node's named receivers from nodes its registry no longer lists, that
    /// have not left lately as far as this node has refreshed: answered at the next refresh if
    /// they left meanwhile (a leaving node that asked between this node's applying its leave
    /// and refreshing past it), refused otherwise (see [`Switchboard::want_of`]).
    wants_of_leavers: unnamed::Latest<(NodeId, EndpointId)>,
    /// Wants for receivers of this node whose inboxes are not here yet (registered, or to be
    /// as this node's registry sees it, and not added yet): answered once they are (see
    /// [`Switchboard::want_early`]).
    early_wants: unnamed::Latest<(NodeId, EndpointId)>,
    /// Unnamed channels of other nodes closed here (this node closed them, was asked to, or
    /// was told their receiver is gone): a sender of one decoded after its last router here
    /// went is closed too.
    closed_unnamed: unnamed::Latest<EndpointId>,
    /// Closes of unnamed channels for owners this node has no link to yet (its registry lags
    /// behind the one the sender came under): sent once a refresh lists the owner.
    shuts_due: unnamed::Latest<(NodeId, EndpointId)>,
    /// The latest membership change that let this node in (0: none seen yet), kept while its
    /// registry no longer lists it (see [`Switchboard::admission`]).
    admitted: std::sync::atomic::AtomicU64,
    /// Credit towards each remote receiver.
    credits: Credits<ChannelRoute>,
    /// Fences received and sent, per closed channel.
    fences: Fences,
    /// Close fences owed and held until the node has looked for its own removal in the same
    /// registry ([`Switchboard::send_fences`]).
    fences_due: Mutex<Vec<DueFence>>,
    /// The registry at the last refresh: the next one acts on what differs from it (a member
    /// gone has left, and its link goes; a receiver gone with its node died or left, and what
    /// was sent to it is delivered elsewhere).
    last: Mutex<Arc<Registry>>,
    /// Set when this node starts leaving: its receivers leave the registry before the node
    /// leaves the membership, and that is not a removal to report.
    leaving: AtomicBool,
    /// Set once the cluster has committed this node's leave: its endpoints are out of the
    /// registry, whether or not this node's copy shows it yet (a node that is no longer a member
    /// may never be told). Its routers then target other nodes' receivers only.
    left: AtomicBool,
    /// Senders of this node the registry stopped listing since the node last looked (see
    /// [`Switchboard::take_vanished`]).
    vanished: Mutex<Vec<EndpointId>>,
    /// Members that left lately, and when this node saw it (the latest [`MAX_DEPARTED`], for
    /// [`DEPARTED_FOR`]): a leaving node hands over what it holds after its leave is committed,
    /// and gets credit for that (see [`Switchboard::want`]).
    departed: Arc<Mutex<std::collections::VecDeque<Departed>>>,
    /// Nodes that said they send nothing more (the latest [`MAX_DEPARTED`]): a node says it
    /// once, and a peer saying it again costs no walk over every receiver (see
    /// [`Switchboard::bye`]).
    said_bye: Mutex<std::collections::VecDeque<NodeId>>,
}

/// A member that left lately (see [`Switchboard::departed`]).
#[derive(Debug)]
struct Departed {
    node: NodeId,
    /// When this node saw it leave.
    at: tokio::time::Instant,
}

/// How many members that left lately a node remembers (see [`Switchboard::departed`]): as many
/// as the registry remembers graceful leaves, so that a scale-down that large gets credit to
/// hand over on every node. (It was 64.)
const MAX_DEPARTED: usize = crate::cluster::registry::MAX_GRACEFUL;

/// How long after a member left it still gets credit to hand over what it held: the hand-over's
/// own limit, twice.
const DEPARTED_FOR: std::time::Duration = HAND_OVER_TIMEOUT.saturating_mul(2);

// The credit granted to a node that left goes over its link, which lasts as long (3 s once:
// credit granted later was dropped, and a hand-over to a receiver that had no room for 3 s
// timed out and lost what it held, `tests/shutdown.rs`).
const _: () = assert!(crate::link::peer::LEAVE_GRACE.as_millis() >= DEPARTED_FOR.as_millis());

/// A close fence owed, held until [`Switchboard::send_fences`].
#[derive(Debug)]
struct DueFence {
    /// The encoded [`Frame::Fence`](crate::link::wire::Frame::Fence).
    frame: Bytes,
    /// The nodes with receivers of the channel.
    peers: Vec<Arc<crate::link::peer::Peer>>,
    /// The channel's router on this node, if any: the fence waits for its redeliveries.
    route: Option<Arc<ChannelRoute>>,
}

impl Switchboard {
    pub(crate) fn new(
        me: NodeId,
        peers: Arc<Peers>,
        registry: watch::Receiver<Arc<Registry>>,
        tasks: Tasks,
        cancel: CancellationToken,
    ) -> Self {
        Switchboard {
            me,
            peers,
            registry,
            tasks,
            cancel,
            routes: Mutex::default(),
            kept: Mutex::default(),
            counters: Mutex::default(),
            unnamed_counters: Arc::default(),
            inboxes: Arc::default(),
            unnamed: Mutex::default(),
            deferred_wants: unnamed::Latest::default(),
            wants_of_leavers: unnamed::Latest::default(),
            early_wants: unnamed::Latest::default(),
            closed_unnamed: unnamed::Latest::default(),
            shuts_due: unnamed::Latest::default(),
            admitted: std::sync::atomic::AtomicU64::new(0),
            credits: Credits::default(),
            fences: Fences::default(),
            fences_due: Mutex::default(),
            last: Mutex::default(),
            leaving: AtomicBool::new(false),
            left: AtomicBool::new(false),
            vanished: Mutex::default(),
            departed: Arc::default(),
            said_bye: Mutex::default(),
        }
    }

    /// Member `node` left (this node's registry no longer lists it). Once [`DEPARTED_FOR`] has
    /// passed, unless it is a member again (or left again since), every receiver of this node
    /// forgets it for good: the credit it had when it left, or was given since to hand over
    /// what it held, is free again (a node that left gracefully gives back what it does not
    /// use long before; one that died with credit, or with a request for credit on its way,
    /// never would). Before, only receivers that granted it credit after it left forgot it,
    /// and every other kept its credit (a few bytes each, the latest 64 nodes) for ever: the
    /// switchboard simulation's seed 2774, once it bounded the tables.
    pub(super) fn departed(&self, node: NodeId) {
        let at = tokio::time::Instant::now();
        {
            let mut departed = lock(&self.departed);
            departed.retain(|d| d.node != node);
            if departed.len() == MAX_DEPARTED {
                departed.pop_front();
            }
            departed.push_back(Departed { node, at });
        }
        let (inboxes, departed) = (self.inboxes.clone(), self.departed.clone());
        let (registry, cancel) = (self.registry.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                () = tokio::time::sleep_until(at + DEPARTED_FOR) => {
                    // (Skipped only for a newer departure of the node, which has its own
                    // timer: an entry pushed out of the list by 64 later departures still
                    // counts, or a dead node's credit stayed out for ever.)
                    // Under the list's lock, as a want of the node's is answered (`want`):
                    // credit granted to it on a want read just before its time was up is
                    // freed here, not out for ever.
                    let departed = lock(&departed);
                    let newer = departed.iter().any(|d| d.node == node && d.at > at);
                    if !newer && !registry.borrow().nodes.contains_key(&node) {
                        let inboxes: Vec<_> = lock(&inboxes).values().cloned().collect();
                        for inbox in inboxes {
                            inbox.node_left(node, true, Departure::Removed);
                        }
                    }
                }
            }
        });
    }

    /// Whether `node` left the membership lately (it may be handing over what it held).
    pub(super) fn left_lately(&self, node: NodeId) -> bool {
        Self::lately(&lock(&self.departed), node)
    }

    /// Whether `node` is in `departed` and its time is not up.
    fn lately(departed: &std::collections::VecDeque<Departed>, node: NodeId) -> bool {
        let now = tokio::time::Instant::now();
        departed.iter().any(|d| d.node == node && now.duration_since(d.at) < DEPARTED_FOR)
    }

    /// Senders of this node the registry stopped listing since the last call: those whose
    /// handles were dropped, and those removed with this node while it was alive.
    pub(crate) fn take_vanished(&self) -> Vec<EndpointId> {
        std::mem::take(&mut *lock(&self.vanished))
    }

    /// The node is stopping: every router refuses, every inbox ends after what it holds.
    pub(crate) fn close_all(&self) {
        for route in lock(&self.routes).values() {
            route.close();
        }
        self.close_unnamed();
        for inbox in lock(&self.inboxes).values() {
            inbox.stopping();
            inbox.close(BTreeSet::new());
        }
    }

    /// Let go of every inbox (the node has stopped).
    pub(crate) fn clear(&self) {
        lock(&self.inboxes).clear();
    }
}

impl Switchboard {
    /// What this node counts of `channel`'s messages.
    pub(crate) fn counters(&self, channel: &str) -> Arc<Counters> {
        lock(&self.counters).entry(channel.to_owned()).or_default().clone()
    }

    /// Whether this node keeps counts of `channel` (for tests: forgotten once it is gone).
    pub(crate) fn counts_channel(&self, channel: &str) -> bool {
        lock(&self.counters).contains_key(channel)
    }

    /// What this node counts of its unnamed channels' messages, together.
    pub(crate) fn unnamed_counters(&self) -> Arc<Counters> {
        self.unnamed_counters.clone()
    }

    /// Every count of this node: per channel it used, and its unnamed channels together
    /// (named `None`). A channel no router of this node counts for any more (it left the
    /// registry, and nothing of it is held here) is read a last time and forgotten: a channel
    /// per job leaves no count behind. (Its name used again counts from 0.)
    pub(crate) fn counts(&self) -> Vec<(Option<String>, Counts)> {
        let mut counters = lock(&self.counters);
        let mut all: Vec<_> = counters.iter().map(|(n, c)| (Some(n.clone()), c.read())).collect();
        counters.retain(|_, c| Arc::strong_count(c) > 1);
        drop(counters);
        all.push((None, self.unnamed_counters.read()));
        all
    }

    /// A new router for `channel`, made under the routers' table lock (refusing once leaving).
    pub(super) fn new_route(&self, channel: &str) -> Arc<ChannelRoute> {
        let r = Arc::new(ChannelRoute::new(channel, self.counters(channel)));
        self.refuse_if_leaving(&r);
        r
    }

    /// A router made while this node leaves refuses its application's sends from the start
    /// (called under the lock of the table it goes in, which [`Switchboard::leaving`] takes
    /// too: one or the other sees it).
    pub(super) fn refuse_if_leaving(&self, route: &ChannelRoute) {
        if self.leaving.load(Ordering::SeqCst) {
            route.refuse_sends();
        }
    }

    /// This node's router for `channel`.
    pub(crate) fn route(&self, channel: &str) -> Arc<ChannelRoute> {
        let route = {
            let mut routes = lock(&self.routes);
            if let Some(r) = routes.get(channel) {
                return r.clone();
            }
            let r = self.new_route(channel);
            routes.insert(channel.to_owned(), r.clone());
            r
        };
        // Under the refresh lock: a refresh running meanwhile must not set targets it read before
        // this router existed (they would stand until the channel changes again).
        let _refreshing = lock(&self.last);
        let registry = self.registry.borrow().clone();
        self.refresh_route(&route, &registry);
        route
    }

    pub(crate) fn add_inbox(&self, inbox: Arc<dyn ErasedInbox>) {
        // Under the refresh lock, as in `route`: a refresh that read the inboxes before this one
        // was added would otherwise set targets without it.
        let _refreshing = lock(&self.last);
        lock(&self.inboxes).insert(inbox.id(), inbox.clone());
        let registry = self.registry.borrow().clone();
        self.refresh_route(inbox.channel(), &registry);
        let id = inbox.id();
        if registry.issued(id) && !registry.is_registered(id) {
            // Removed already, with this node (cut off while its registration was on its way):
            // it grants nothing under this id, which no other node counts any more, and waits
            // to be registered again (offered, the credit stayed out under its next id: the
            // switchboard simulation's seed 104967).
            inbox.restart();
            // (Wants kept for it go: the asking nodes settle their windows by the registry.)
            self.early_wants.take(|(_, to)| *to == id);
            return;
        }
        inbox.offer(&self.sending_nodes(inbox.channel().name(), &registry));
        self.answer_early_wants(id);
    }

    /// Endpoint `id` of this node was deregistered (its handle dropped): if its inbox is still
    /// here and the registry no longer lists it, the inbox goes. (Usually the refresh that
    /// applies the deregistration removes it; a receiver the registry had dropped before, with
    /// its node, changes no channel when it is deregistered.)
    pub(crate) fn deregistered(&self, id: EndpointId) {
        let registry = self.registry.borrow().clone();
        if registry.is_registered(id) {
            return;
        }
        let mut inboxes = lock(&self.inboxes);
        if inboxes.get(&id).is_some_and(|i| i.is_detached()) {
            inboxes.remove(&id);
        }
    }

    /// The other nodes with senders of `channel`: those offered credit before they ask.
    fn sending_nodes(&self, channel: &str, registry: &Registry) -> Vec<NodeId> {
        let Some(ch) = registry.channel(channel) else { return Vec::new() };
        let nodes: BTreeSet<NodeId> = ch
            .endpoints
            .iter()
            .filter(|e| e.kind == EndpointKind::Sender && e.node != self.me)
            .map(|e| e.node)
            .collect();
        // (Not a node that said it sends nothing more, its sender not deregistered here yet:
        // offered, the room was out to a node that had stopped.)
        nodes.into_iter().filter(|n| !self.said_bye(*n)).collect()
    }

    fn inbox(&self, id: EndpointId) -> Option<Arc<dyn ErasedInbox>> {
        lock(&self.inboxes).get(&id).cloned()
    }

    /// Deliver `msgs` to other receivers of `route`'s channel, in the background (see
    /// [`crate::channel::redelivery`]). The caller has counted them as re-routing on the route.
    /// On credit granted from now on, also once the node has handed over (`Credits::reopen`: a
    /// release read while its hand-over waited for a dead peer's acknowledgement had every
    /// grant go back, and timed out, the switchboard simulation's seed 56072).
    pub(crate) fn redeliver(&self, route: &Arc<ChannelRoute>, msgs: Vec<Bytes>) {
        self.credits.reopen();
        crate::channel::redelivery::redeliver(
            route.clone(),
            msgs,
            Arc::downgrade(&self.peers),
            &self.tasks,
            self.cancel.clone(),
        );
    }

    /// This node's registry once `ready` says so, within `within` (`None`: not by then).
    pub(super) async fn registry_when(
        &self,
        within: std::time::Duration,
        ready: impl Fn(&Registry) -> bool,
    ) -> Option<Arc<Registry>> {
        let mut watch = self.registry.clone();
        let ready = async { watch.wait_for(|r| ready(r)).await.map(|r| r.clone()).ok() };
        tokio::time::timeout(within, ready).await.ok().flatten()
    }

    /// What this node holds of each channel it has a router for.
    pub(crate) fn stats(&self) -> Vec<crate::report::ChannelStats> {
        let routes: Vec<Arc<ChannelRoute>> = lock(&self.routes).values().cloned().collect();
        let mut buffered: HashMap<*const ChannelRoute, u64> = HashMap::default();
        for inbox in lock(&self.inboxes).values().filter(|i| !i.is_detached()) {
            *buffered.entry(Arc::as_ptr(inbox.channel())).or_default() += inbox.buffered() as u64;
        }
        let mut out: Vec<_> = routes
            .iter()
            .map(|r| {
                let dead = r.dead().map(DeadLetters::counts).unwrap_or_default();
                let counts = r.counters.read();
                crate::report::ChannelStats {
                    sent: counts.sent,
                    received: counts.received,
                    redelivered: counts.redelivered,
                    blocked: counts.blocked,
                    name: r.name().to_owned(),
                    buffered: buffered.get(&Arc::as_ptr(r)).copied().unwrap_or(0),
                    in_flight: r.in_flight(),
                    dead_letters: dead.held,
                    dead_letters_total: dead.total,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The router of `channel`, if this node has one.
    pub(crate) fn find_route(&self, channel: &str) -> Option<Arc<ChannelRoute>> {
        lock(&self.routes).get(channel).cloned()
    }

    /// Entries this node keeps per channel, receiver and other node (routers, inboxes and their
    /// books, windows, departed receivers, peers): for tests that check that churn leaves
    /// nothing behind.
    pub(crate) fn entries(&self) -> usize {
        let t = self.tables();
        t.routes
            + t.unnamed
            + t.departed
            + t.inboxes
            + t.books_total
            + t.windows
            + t.early
            + t.peers
    }

    /// [`Switchboard::entries`] by table (for the simulation's bounds, and a churn test's
    /// report).
    pub(crate) fn tables(&self) -> Tables {
        let routes: Vec<Arc<ChannelRoute>> = lock(&self.routes).values().cloned().collect();
        let inboxes: Vec<Arc<dyn ErasedInbox>> = lock(&self.inboxes).values().cloned().collect();
        let books: Vec<usize> = inboxes.iter().map(|i| i.entries()).collect();
        let early = self.credits.early_count();
        Tables {
            routes: routes.len(),
            unnamed: self.unnamed_count(),
            departed: routes.iter().map(|r| r.departed_count()).sum(),
            inboxes: inboxes.len(),
            books: books.iter().copied().max().unwrap_or(0),
            books_total: books.iter().sum(),
            windows: self.credits.entries() - early,
            early,
            peers: self.peers.entries(),
        }
    }

    /// How many receivers' inboxes this node holds, dropped ones not yet deregistered included.
    pub(crate) fn inbox_count(&self) -> usize {
        lock(&self.inboxes).len()
    }
}

/// What [`Switchboard::tables`] counts.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code, reason = "outside the simulation, read through Debug"))]
pub(crate) struct Tables {
    /// Channels with a router here, and the receivers they keep as departed (not yet settled).
    pub(crate) routes: usize,
    pub(crate) departed: usize,
    /// Routers of unnamed channels: owned here, or used by senders decoded here.
    pub(crate) unnamed: usize,
    /// Receivers' inboxes, the most entries one's books keep (per sending node), and all of
    /// theirs together.
    pub(crate) inboxes: usize,
    pub(crate) books: usize,
    pub(crate) books_total: usize,
    /// Credit windows for receivers, and grants kept for receivers not applied yet.
    pub(crate) windows: usize,
    pub(crate) early: usize,
    /// Peers and their address book.
    pub(crate) peers: usize,
}
