//! The node: one per process (or more, in tests), owning the listener, the peers, Raft and the
//! local endpoints. Everything a node starts is tracked and stopped by [`Node::shutdown`].
//!
//! On the message path the node is the switchboard: [`Core::deliver`] hands a data frame's
//! messages to the receiver's inbox, [`Core::ack`] gives credit back to a router's window, and the
//! registry watcher ([`Core::refresh`]) rebuilds every router when the registry changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::{ClusterInfo, Member, Role};
use crate::inbox::{ErasedInbox, Inbox};
use crate::peer::{lock, Peers};
use crate::raft::store::{LogStore, StateMachine};
use crate::raft::{Network, Raft};
use crate::receiver::Receiver;
use crate::registry::{Command, EndpointId, EndpointKind, NodeId, Outcome, Registry};
use crate::router::{ChannelRoute, Target, Window};
use crate::sender::Sender;
use crate::wire::{self, Frame, Request, Response};
use crate::Error;

/// How long a registration may wait for a leader and a commit before failing.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a leaving node waits for its messages to reach other nodes.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(5);

/// A receiver's default capacity.
pub const DEFAULT_CAPACITY: usize = 1024;

/// How many messages for endpoints this node does not know yet may wait for them.
const MAX_PARKED: usize = 1 << 16;

/// Data parked for endpoints not known yet, and how many messages that is in all.
#[derive(Debug, Default)]
struct Parked {
    count: usize,
    by_endpoint: HashMap<EndpointId, Vec<(NodeId, Bytes)>>,
}

/// The credit towards one remote receiver, and the route to wake when it comes back.
type Credit = (Arc<Window>, Arc<ChannelRoute>);

/// What the node shares between its tasks, its endpoints and its handles.
pub(crate) struct Core {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) raft: Raft,
    pub(crate) registry: watch::Receiver<Arc<Registry>>,
    pub(crate) peers: Arc<Peers>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// The node's span, for tasks started from outside it (a handle dropped anywhere).
    span: tracing::Span,
    /// Set when `shutdown` starts.
    leaving: AtomicBool,
    routes: Mutex<HashMap<String, Arc<ChannelRoute>>>,
    inboxes: Mutex<HashMap<EndpointId, Arc<dyn ErasedInbox>>>,
    /// Data for receivers on this node whose registration this node has not seen yet.
    parked: Mutex<Parked>,
    /// Credit towards each remote receiver, and the route to wake when it comes back.
    windows: Mutex<HashMap<EndpointId, Credit>>,
    /// Fences received, per channel.
    fences: Mutex<HashMap<String, BTreeSet<NodeId>>>,
    /// Channels whose close this node has fenced.
    fenced: Mutex<HashSet<String>>,
    /// The members at the last refresh: a node that drops out of them has left, and its link goes.
    members: Mutex<BTreeSet<NodeId>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A member of a dchan cluster.
///
/// Cheap to clone: clones share one node. Create it with [`Node::builder`].
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) core: Arc<Core>,
}

/// Configures and starts a [`Node`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct NodeBuilder {
    listen: String,
    bootstrap: bool,
    join: Vec<String>,
    max_frame: usize,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            listen: "127.0.0.1:0".into(),
            bootstrap: false,
            join: Vec::new(),
            max_frame: wire::DEFAULT_MAX_FRAME,
        }
    }
}

impl NodeBuilder {
    /// The address to listen on for Raft and data (default `127.0.0.1:0`: any free port).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Start a new cluster with this node as its only member.
    pub fn bootstrap(mut self) -> Self {
        self.bootstrap = true;
        self
    }

    /// Join an existing cluster through any of these members' addresses.
    pub fn join<I, A>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: ToString,
    {
        self.join = seeds.into_iter().map(|a| a.to_string()).collect();
        self
    }

    /// The largest frame read or written (default 16 MiB). Larger frames close the connection.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Bind, start Raft, and bootstrap or join. Returns once this node is a member.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] without `bootstrap()` or `join(..)` (or with both), [`Error::Io`] if the
    /// address cannot be bound, [`Error::Join`] if no seed lets this node in.
    pub async fn start(self) -> Result<Node, Error> {
        if self.bootstrap != self.join.is_empty() {
            return Err(Error::Config("call exactly one of `bootstrap()` or `join([..])`".into()));
        }
        let listener = TcpListener::bind(&self.listen).await?;
        let addr = listener.local_addr()?;
        let id = random_id(addr);
        let span = tracing::info_span!("node", id);
        async move {
            let cancel = CancellationToken::new();
            let tasks = TaskTracker::new();
            let peers = Arc::new(Peers::new(id, self.max_frame, cancel.clone(), tasks.clone()));
            let (sm, registry) = StateMachine::new();
            let config =
                crate::raft::config().validate().map_err(|e| Error::Config(e.to_string()))?;
            let raft = Raft::new(
                id,
                Arc::new(config),
                Network { peers: peers.clone() },
                LogStore::default(),
                sm,
            )
            .await
            .map_err(|e| Error::Registry(e.to_string()))?;
            let core = Arc::new(Core {
                id,
                addr,
                raft,
                registry,
                peers,
                cancel,
                tasks: tasks.clone(),
                span: tracing::Span::current(),
                leaving: AtomicBool::new(false),
                routes: Mutex::default(),
                inboxes: Mutex::default(),
                parked: Mutex::default(),
                windows: Mutex::default(),
                fences: Mutex::default(),
                fenced: Mutex::default(),
                members: Mutex::default(),
            });
            core.peers.set_core(Arc::downgrade(&core));
            tasks.spawn(crate::connection::accept_loop(listener, core.clone()).in_current_span());
            tasks.spawn(watch_registry(core.clone()).in_current_span());
            let node = Node { core };
            let joined =
                if self.bootstrap { node.bootstrap().await } else { node.join(&self.join).await };
            if let Err(e) = joined {
                node.stop().await;
                return Err(e);
            }
            tracing::info!(%addr, "node started");
            Ok(node)
        }
        .instrument(span)
        .await
    }
}

/// A node id that no other node will draw: a hash of the address, the time and the process.
fn random_id(addr: SocketAddr) -> NodeId {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(addr.to_string().as_bytes());
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    // Keep ids readable in logs and clear of 0.
    (h.finish() % 1_000_000_000) + 1
}

impl Node {
    /// Configure a new node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's id in the cluster.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// The address this node listens on (the bound one, if it was given port 0).
    pub fn addr(&self) -> SocketAddr {
        self.core.addr
    }

    /// A sender on channel `name`, registered cluster-wide when this returns.
    ///
    /// # Errors
    ///
    /// [`Error::TypeMismatch`] if the channel carries another type, [`Error::ChannelClosed`] if it
    /// was closed, [`Error::Registry`] if Raft could not commit the registration in time.
    pub async fn sender<T>(&self, name: &str) -> Result<Sender<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let id = self.core.register::<T>(name, EndpointKind::Sender, 0).await?;
        Ok(Sender::new(self.core.clone(), self.core.route(name), id))
    }

    /// A receiver on channel `name`; await it (optionally after [`ReceiverBuilder::capacity`]).
    /// It is registered cluster-wide when the future completes.
    pub fn receiver<T>(&self, name: &str) -> ReceiverBuilder<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        ReceiverBuilder {
            node: self.clone(),
            name: name.to_owned(),
            capacity: DEFAULT_CAPACITY,
            _t: std::marker::PhantomData,
        }
    }

    /// A snapshot of the cluster as this node knows it: members, leader, channels.
    pub fn cluster(&self) -> ClusterInfo {
        let registry = self.core.registry.borrow().clone();
        // Copy what is needed out of the metrics and drop the borrow at once: holding it would
        // block Raft's own updates.
        let leader = self.core.raft.metrics().borrow().current_leader;
        ClusterInfo {
            me: self.core.id,
            leader,
            members: registry
                .nodes
                .iter()
                .map(|(id, addr)| Member {
                    id: *id,
                    addr: addr.clone(),
                    role: if registry.voters.contains(id) { Role::Voter } else { Role::Learner },
                })
                .collect(),
            channels: registry.channels.values().cloned().collect(),
        }
    }

    /// Leave the cluster and stop every task this node started.
    ///
    /// Its endpoints are deregistered and it is removed from Raft's membership (unless it is the
    /// last voter). Receivers on this node then yield what they hold, then `None`; senders fail
    /// with `Closed`.
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] if the cluster could not be told (the node still stops).
    pub async fn shutdown(&self) -> Result<(), Error> {
        let core = &self.core;
        if core.cancel.is_cancelled() || core.leaving.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let left = core.leave().await;
        if left.is_ok() {
            core.hand_over().await;
        }
        self.stop().await;
        left
    }

    async fn stop(&self) {
        let core = &self.core;
        // First, so that nothing (a dropped handle's deregistration, a retried write) starts
        // talking to Raft while it stops.
        core.cancel.cancel();
        for route in lock(&core.routes).values() {
            route.close();
        }
        for inbox in lock(&core.inboxes).values() {
            inbox.close(BTreeSet::new());
        }
        if let Err(e) = core.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        core.tasks.close();
        core.tasks.wait().await;
        lock(&core.inboxes).clear();
        tracing::info!("node stopped");
    }

    async fn bootstrap(&self) -> Result<(), Error> {
        let core = &self.core;
        let members = BTreeMap::from([(core.id, BasicNode::new(core.addr.to_string()))]);
        core.raft.initialize(members).await.map_err(|e| Error::Registry(e.to_string()))?;
        core.wait_member(core.id).await
    }

    async fn join(&self, seeds: &[String]) -> Result<(), Error> {
        let core = &self.core;
        let mut last = String::from("no seed given");
        for seed in seeds {
            let dialed =
                match crate::connection::dial(seed, core.id, core.addr, core.peers.max_frame).await
                {
                    Ok(d) => d,
                    Err(e) => {
                        last = format!("{seed}: {e}");
                        continue;
                    }
                };
            let peer = core.peers.get(dialed.remote, seed);
            drop(dialed);
            let req = Request::Join { node: core.id, addr: core.addr.to_string() };
            match peer.request(req, WRITE_TIMEOUT).await {
                Ok(Response::Membership(Ok(()))) => return core.wait_member(core.id).await,
                Ok(Response::Membership(Err(e))) => last = format!("{seed}: {e}"),
                Ok(_) => last = format!("{seed}: unexpected answer"),
                Err(e) => last = format!("{seed}: {e}"),
            }
        }
        Err(Error::Join(last))
    }
}

/// Configures a [`Receiver`]; await it to register the receiver.
#[must_use = "a receiver is registered only when the builder is awaited"]
pub struct ReceiverBuilder<T> {
    node: Node,
    name: String,
    capacity: usize,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ReceiverBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverBuilder")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> ReceiverBuilder<T> {
    /// How many unreceived messages the receiver holds at most (default 1024). It is also the
    /// window each sending node may have on the way to it.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.clamp(1, u32::MAX as usize);
        self
    }
}

impl<T> IntoFuture for ReceiverBuilder<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type Output = Result<Receiver<T>, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let core = &self.node.core;
            let id = core
                .register::<T>(&self.name, EndpointKind::Receiver, self.capacity as u32)
                .await?;
            let route = core.route(&self.name);
            let inbox =
                Arc::new(Inbox::<T>::new(id, route.clone(), self.capacity, Arc::downgrade(core)));
            core.add_inbox(inbox.clone());
            Ok(Receiver::new(core, inbox, route))
        })
    }
}

impl Core {
    /// Commit a registry command through the leader, and wait until this node has applied it.
    pub(crate) async fn write(&self, cmd: Command) -> Result<Outcome, Error> {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Shutdown);
            }
            let attempt = match self.leader().await {
                Some((leader, _)) if leader == self.id => self.write_here(cmd.clone()).await,
                Some((leader, addr)) => {
                    let peer = self.peers.get(leader, &addr);
                    match peer.request(Request::Write(cmd.clone()), WRITE_TIMEOUT).await {
                        Ok(Response::Write(r)) => r,
                        Ok(_) => Err("unexpected answer".into()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                None => Err("no leader".into()),
            };
            match attempt {
                Ok((index, outcome)) => {
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.raft
                        .wait(Some(remaining.max(Duration::from_secs(1))))
                        .applied_index_at_least(Some(index), "registry write applied here")
                        .await
                        .map_err(|e| Error::Registry(e.to_string()))?;
                    // Routers reflect the write before it returns (the watcher may not have run
                    // yet): a close fails the next send here, a new receiver is a target at once.
                    let registry = self.registry.borrow().clone();
                    self.refresh(&registry);
                    return Ok(outcome);
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Registry(e))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "registry write will be retried");
                    self.wait_leader_change().await;
                }
            }
        }
    }

    /// Commit on this node, which believes it leads.
    async fn write_here(&self, cmd: Command) -> Result<(u64, Outcome), String> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok((resp.log_id.index, resp.data)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The current leader and its address, waiting a little for an election if there is none.
    async fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self
            .raft
            .wait(Some(Duration::from_secs(2)))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .ok()?;
        let leader = metrics.current_leader?;
        let addr = metrics.membership_config.membership().get_node(&leader)?.addr.clone();
        Some((leader, addr))
    }

    /// Wait (briefly) for Raft's view to change before retrying a write.
    async fn wait_leader_change(&self) {
        let mut m = self.raft.metrics();
        m.borrow_and_update();
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::timeout(Duration::from_millis(200), m.changed()) => {}
        }
    }

    async fn wait_member(&self, id: NodeId) -> Result<(), Error> {
        let mut reg = self.registry.clone();
        tokio::time::timeout(WRITE_TIMEOUT, reg.wait_for(|r| r.nodes.contains_key(&id)))
            .await
            .map_err(|_| Error::Join("membership was not applied in time".into()))?
            .map_err(|_| Error::Shutdown)?;
        Ok(())
    }

    async fn register<T>(
        &self,
        channel: &str,
        kind: EndpointKind,
        capacity: u32,
    ) -> Result<EndpointId, Error> {
        let requested = std::any::type_name::<T>().to_owned();
        let cmd = Command::Register {
            channel: channel.to_owned(),
            type_name: requested.clone(),
            kind,
            node: self.id,
            capacity,
        };
        match self.write(cmd).await? {
            Outcome::Registered(id) => Ok(id),
            Outcome::TypeMismatch { existing } => {
                Err(Error::TypeMismatch { channel: channel.to_owned(), existing, requested })
            }
            Outcome::Closed => Err(Error::ChannelClosed(channel.to_owned())),
            Outcome::Done => Err(Error::Registry("registration applied without an id".into())),
        }
    }

    /// Deregister an endpoint in the background (its handle was dropped; `Drop` cannot wait).
    pub(crate) fn deregister(self: &Arc<Self>, channel: &str, id: EndpointId) {
        // A leaving node's endpoints are removed all at once by its leave.
        if self.cancel.is_cancelled()
            || self.leaving.load(Ordering::SeqCst)
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        let core = self.clone();
        let cmd = Command::Deregister { channel: channel.to_owned(), id };
        self.tasks.spawn(
            async move {
                if let Err(e) = core.write(cmd).await {
                    tracing::debug!(error = %e, "deregistration failed");
                }
            }
            .instrument(self.span.clone()),
        );
    }

    /// This node's router for `channel`.
    pub(crate) fn route(&self, channel: &str) -> Arc<ChannelRoute> {
        let route = {
            let mut routes = lock(&self.routes);
            if let Some(r) = routes.get(channel) {
                return r.clone();
            }
            let r = Arc::new(ChannelRoute::new(channel));
            routes.insert(channel.to_owned(), r.clone());
            r
        };
        let registry = self.registry.borrow().clone();
        self.refresh_route(&route, &registry);
        route
    }

    fn add_inbox(&self, inbox: Arc<dyn ErasedInbox>) {
        let id = inbox.id();
        lock(&self.inboxes).insert(id, inbox.clone());
        let parked = {
            let mut p = lock(&self.parked);
            let msgs = p.by_endpoint.remove(&id).unwrap_or_default();
            p.count -= msgs.len();
            msgs
        };
        for (from, msg) in parked {
            let n = inbox.push_remote(from, &mut std::iter::once(msg));
            self.send_ack(from, id, n);
        }
        let registry = self.registry.borrow().clone();
        self.refresh_route(inbox.channel(), &registry);
    }

    /// Messages from node `from` for receiver `to` (called by the connection reader).
    pub(crate) fn deliver(
        &self,
        from: NodeId,
        to: EndpointId,
        mut msgs: impl Iterator<Item = Bytes>,
    ) {
        let inbox = lock(&self.inboxes).get(&to).cloned();
        match inbox {
            Some(inbox) => {
                let n = inbox.push_remote(from, &mut msgs);
                self.send_ack(from, to, n);
            }
            None => {
                let mut p = lock(&self.parked);
                let Parked { count, by_endpoint } = &mut *p;
                let slot = by_endpoint.entry(to).or_default();
                for m in msgs {
                    if *count >= MAX_PARKED {
                        tracing::warn!(endpoint = to, "dropped data for an unknown endpoint");
                        break;
                    }
                    slot.push((from, m));
                    *count += 1;
                }
            }
        }
    }

    /// Tell node `to_node` that receiver `receiver` took `n` of its messages.
    pub(crate) fn send_ack(&self, to_node: NodeId, receiver: EndpointId, n: u32) {
        if n == 0 {
            return;
        }
        let peer = self.peers.find(to_node).or_else(|| {
            let addr = self.registry.borrow().nodes.get(&to_node).cloned()?;
            Some(self.peers.get(to_node, &addr))
        });
        match peer {
            Some(p) => p.outbox.push_frame(wire::encode(&Frame::Ack { to: receiver, n })),
            None => tracing::debug!(node = to_node, "ack for an unknown node dropped"),
        }
    }

    /// Credit back from a remote receiver (called by the connection reader).
    pub(crate) fn ack(&self, to: EndpointId, n: u32) {
        let entry = lock(&self.windows).get(&to).cloned();
        if let Some((window, route)) = entry {
            window.release(n);
            route.wake();
        }
    }

    /// Node `from` fenced `channel` (called by the connection reader).
    pub(crate) fn fence(&self, from: NodeId, channel: &str) {
        lock(&self.fences).entry(channel.to_owned()).or_default().insert(from);
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        for inbox in inboxes.iter().filter(|i| i.channel().name == channel) {
            inbox.fence(from);
        }
    }

    /// Answer a request from a peer.
    pub(crate) async fn handle_request(self: &Arc<Self>, req: Request) -> Response {
        match req {
            Request::AppendEntries(r) => Response::AppendEntries(self.raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                Response::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            Request::Write(cmd) => Response::Write(self.write_here(cmd).await),
            Request::Join { node, addr } => {
                Response::Membership(self.on_leader(Request::Join { node, addr }).await)
            }
            Request::Leave { node } => {
                Response::Membership(self.on_leader(Request::Leave { node }).await)
            }
        }
    }

    /// Run a membership change on the leader: here if this node leads, else forwarded.
    async fn on_leader(self: &Arc<Self>, req: Request) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        loop {
            let res = match self.leader().await {
                Some((leader, _)) if leader == self.id => match &req {
                    Request::Join { node, addr } => self.add_member(*node, addr).await,
                    Request::Leave { node } => self.remove_member(*node).await,
                    _ => Err("not a membership request".into()),
                },
                Some((leader, addr)) => {
                    let fwd = match &req {
                        Request::Join { node, addr } => {
                            Request::Join { node: *node, addr: addr.clone() }
                        }
                        Request::Leave { node } => Request::Leave { node: *node },
                        _ => return Err("not a membership request".into()),
                    };
                    match self.peers.get(leader, &addr).request(fwd, WRITE_TIMEOUT).await {
                        Ok(Response::Membership(r)) => r,
                        Ok(_) => Err("unexpected answer".into()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                None => Err("no leader".into()),
            };
            match res {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "membership change will be retried");
                    self.wait_leader_change().await;
                }
            }
        }
    }

    /// On the leader: add `node` as a learner, and promote it while there are fewer than 3 voters.
    async fn add_member(&self, node: NodeId, addr: &str) -> Result<(), String> {
        self.raft.add_learner(node, BasicNode::new(addr), true).await.map_err(|e| e.to_string())?;
        let voters =
            self.raft.metrics().borrow().membership_config.membership().voter_ids().count();
        if voters < 3 {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// On the leader: remove `node`'s endpoints, then the node itself, keeping up the voters.
    async fn remove_member(&self, node: NodeId) -> Result<(), String> {
        self.write_here(Command::RemoveNode { node }).await?;
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&node) {
            if voters.len() == 1 {
                return Ok(()); // the last voter cannot be removed; the cluster ends with it
            }
            if let Some(learner) = membership.learner_ids().find(|l| *l != node) {
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([learner])), true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        };
        match self.raft.change_membership(change, false).await {
            Ok(_) => Ok(()),
            // The leader removing itself may lose leadership as the change commits.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) if node == self.id => {
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn leave(self: &Arc<Self>) -> Result<(), Error> {
        self.on_leader(Request::Leave { node: self.id }).await.map_err(Error::Registry)?;
        // Routers follow: this node's receivers are no longer anyone's targets, its own included.
        let mut rx = self.registry.clone();
        let me = self.id;
        let gone = |r: &Arc<Registry>| {
            !r.channels.values().any(|c| c.endpoints.values().any(|e| e.node == me))
        };
        if tokio::time::timeout(HAND_OVER_TIMEOUT, rx.wait_for(gone)).await.is_err() {
            tracing::warn!("this node's endpoints were not removed in time");
        }
        let registry = self.registry.borrow().clone();
        self.refresh(&registry);
        Ok(())
    }

    /// Hand what this node's receivers hold to receivers on other nodes, and flush every outbox,
    /// within [`HAND_OVER_TIMEOUT`]. A channel with no receiver elsewhere keeps its messages
    /// here: its receivers yield them, then `None`.
    async fn hand_over(&self) {
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        let mut routes = Vec::new();
        for inbox in inboxes {
            if inbox.channel().receiver_count() > 0 {
                inbox.hand_over();
                routes.push(inbox.channel().clone());
            }
        }
        let done = async {
            for route in &routes {
                route.rerouting_done().await;
            }
            for peer in self.peers.all() {
                peer.outbox.flushed().await;
            }
        };
        if tokio::time::timeout(HAND_OVER_TIMEOUT, done).await.is_err() {
            tracing::warn!("shutdown: messages still on their way after {HAND_OVER_TIMEOUT:?}");
        }
    }

    /// The registry changed: rebuild every router, and process closes.
    fn refresh(&self, registry: &Registry) {
        let now: BTreeSet<NodeId> = registry.nodes.keys().copied().collect();
        let before = std::mem::replace(&mut *lock(&self.members), now.clone());
        for gone in before.difference(&now).filter(|n| **n != self.id) {
            self.peers.remove(*gone);
        }
        let routes: Vec<_> = lock(&self.routes).values().cloned().collect();
        for route in &routes {
            self.refresh_route(route, registry);
        }
        // Windows of receivers that are gone.
        lock(&self.windows).retain(|id, (_, route)| {
            registry.channels.get(&route.name).is_some_and(|c| c.endpoints.contains_key(id))
        });
        // Fence every closed channel once: nothing more of it will leave this node.
        for ch in registry.channels.values().filter(|c| c.closed && c.closed_by.contains(&self.id))
        {
            if !lock(&self.fenced).insert(ch.name.clone()) {
                continue;
            }
            let peers: Vec<_> = ch
                .receivers()
                .map(|e| e.node)
                .filter(|n| *n != self.id)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter_map(|n| Some(self.peers.get(n, registry.nodes.get(&n)?)))
                .collect();
            let frame = wire::encode(&Frame::Fence { channel: ch.name.clone() });
            let route = lock(&self.routes).get(&ch.name).cloned();
            match route {
                // Messages of dropped receivers still being re-routed go out before the fence.
                Some(route) => {
                    route.close();
                    let cancel = self.cancel.clone();
                    self.tasks.spawn(async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = route.rerouting_done() => {
                                for p in peers {
                                    p.outbox.push_frame(frame.clone());
                                }
                            }
                        }
                    });
                }
                None => {
                    for p in peers {
                        p.outbox.push_frame(frame.clone());
                    }
                }
            }
        }
    }

    fn refresh_route(&self, route: &Arc<ChannelRoute>, registry: &Registry) {
        let Some(ch) = registry.channels.get(&route.name) else {
            route.set_targets(Vec::new());
            return;
        };
        if ch.closed {
            route.close();
        }
        let inboxes = lock(&self.inboxes);
        let mut windows = lock(&self.windows);
        let mut targets = Vec::new();
        for e in ch.receivers() {
            if e.node == self.id {
                if let Some(inbox) = inboxes.get(&e.id) {
                    targets.push(Target::Local(inbox.clone()));
                }
            } else if let Some(addr) = registry.nodes.get(&e.node) {
                let window = windows
                    .entry(e.id)
                    .or_insert_with(|| (Arc::new(Window::new(e.capacity)), route.clone()))
                    .0
                    .clone();
                targets.push(Target::Remote {
                    id: e.id,
                    peer: self.peers.get(e.node, addr),
                    window,
                });
            }
        }
        drop(windows);
        if ch.closed {
            let fences = lock(&self.fences).get(&ch.name).cloned().unwrap_or_default();
            let waiting: BTreeSet<NodeId> = ch
                .closed_by
                .iter()
                .filter(|n| **n != self.id && !fences.contains(n))
                .copied()
                .collect();
            for inbox in inboxes.values().filter(|i| i.channel().name == ch.name) {
                inbox.close(waiting.clone());
            }
        }
        drop(inboxes);
        route.set_targets(targets);
    }
}

/// Rebuild the routers each time the registry changes, until shutdown.
async fn watch_registry(core: Arc<Core>) {
    let mut rx = core.registry.clone();
    loop {
        tokio::select! {
            _ = core.cancel.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
        let registry = rx.borrow_and_update().clone();
        core.refresh(&registry);
    }
}
