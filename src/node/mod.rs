//! The node: one per process (or more, in tests), owning the listener, the peers, Raft and the
//! local endpoints. Everything a node starts is tracked and stopped by [`Node::shutdown`].
//!
//! On the message path the node is the switchboard: [`Core::deliver`] hands a data frame's
//! messages to the receiver's inbox, [`Core::ack`] gives credit back to a router's window, and the
//! registry watcher brings the routers of the channels that changed up to date (see
//! [`crate::channel::switchboard`]) and has Raft snapshot the registry when one is due.

pub(crate) mod cluster_watch;
pub(crate) mod control;
pub(crate) mod endpoint;
pub(crate) mod stats;

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channel::inbox::Inbox;
use crate::channel::receiver::Receiver;
use crate::channel::router::ChannelRoute;
use crate::channel::sender::Sender;
use crate::channel::switchboard::Switchboard;
use crate::cluster::membership::{Membership, DEFAULT_FAILURE_TIMEOUT, DEFAULT_VOTERS};
use crate::cluster::raft::election::Elections;
use crate::cluster::raft::store::{LogStore, StateMachine};
use crate::cluster::raft::{Network, Raft};
use crate::cluster::registry::Registry;
use crate::cluster::view::{ClusterInfo, Member, Role};
use crate::ids::{EndpointId, NodeId};
use crate::link::connection::{Dispatch, Links};
use crate::link::handshake::Secret;
use crate::link::peer::Peers;
use crate::link::transport::TlsConfig;
use crate::link::wire;
use crate::rpc::EndpointKind;
use crate::rpc::{Request, Response};
use crate::tasks::Tasks;
use crate::Error;
use cluster_watch::ClusterWatch;

/// A receiver's default capacity.
pub const DEFAULT_CAPACITY: usize = 1024;

/// How long `start` keeps trying to join through the seeds, by default.
const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one join attempt waits for the answer before the next is made.
const JOIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node shares between its tasks, its endpoints and its handles.
pub(crate) struct Core {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    /// The address other nodes dial for this one (the bound address unless told otherwise).
    pub(crate) advertised: String,
    /// This node never votes ([`NodeBuilder::non_voting`]).
    pub(crate) non_voting: bool,
    pub(crate) raft: Raft,
    pub(crate) registry: watch::Receiver<Arc<Registry>>,
    pub(crate) peers: Arc<Peers>,
    /// Joins, leaves, failure detection and the voter count, carried out while this node leads.
    pub(crate) membership: Arc<Membership>,
    /// When this node last heard from a leader; starts elections when that is too long ago.
    pub(crate) elections: Arc<Elections>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: Tasks,
    /// The node's span, for tasks started from outside it (a handle dropped anywhere).
    pub(crate) span: tracing::Span,
    /// Set when `shutdown` starts.
    pub(crate) leaving: AtomicBool,
    /// This node's routers and inboxes, and what connects them (see [`crate::channel::switchboard`]).
    pub(crate) switch: Switchboard,
    /// What this node's connections share; they hand frames up through [`Dispatch`].
    pub(crate) links: Arc<Links>,
}

/// The connections' readers hand each frame to the node here: data, credit, fences and releases
/// to the switchboard, requests to the control path.
impl Dispatch for Core {
    fn data(&self, from: NodeId, to: EndpointId, msgs: &mut dyn Iterator<Item = Bytes>) {
        self.switch.deliver(from, to, msgs);
    }

    fn credit(&self, from: NodeId, to: EndpointId, taken: u32, grant: u32) {
        self.switch.credit(from, to, taken, grant);
    }

    fn want(&self, from: NodeId, to: EndpointId) {
        self.switch.want(from, to);
    }

    fn reclaim(&self, from: NodeId, to: EndpointId) {
        self.switch.reclaim(from, to);
    }

    fn returned(&self, from: NodeId, to: EndpointId, n: u32) {
        self.switch.returned(from, to, n);
    }

    fn fence(&self, from: NodeId, channel: &str, created: EndpointId) {
        self.switch.fence(from, channel, created);
    }

    fn released(&self, from: NodeId, to: EndpointId) {
        self.switch.released(from, to);
    }

    fn request(
        self: Arc<Self>,
        from: NodeId,
        req: Request,
    ) -> BoxFuture<'static, Option<Response>> {
        Box::pin(async move { self.handle_request(from, req).await })
    }
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
/// Cheap to clone: clones share one node. Create it with [`Node::builder`], inside an actix
/// system (`#[actix::main]`, `#[actix_rt::test]` or `actix_rt::System::new().block_on(..)`):
/// each receiver has an actix actor, and `Actor::start` panics outside a system.
///
/// # Examples
///
/// ```
/// # #[actix::main]
/// # async fn main() -> Result<(), dchan::Error> {
/// let first = dchan::Node::builder().listen("127.0.0.1:0").bootstrap().start().await?;
/// let second = dchan::Node::builder().join([first.addr()]).start().await?;
/// let view = second.cluster();
/// assert_eq!(view.members.len(), 2);
/// assert_eq!(view.leader, Some(first.id()));
/// second.shutdown().await?;
/// first.shutdown().await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) core: Arc<Core>,
}

/// Configures and starts a [`Node`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct NodeBuilder {
    listen: String,
    advertise: Option<String>,
    bootstrap: bool,
    join: Vec<String>,
    max_frame: usize,
    voters: usize,
    failure_timeout: Duration,
    join_timeout: Duration,
    non_voting: bool,
    cookie: Option<Secret>,
    tls: Option<TlsConfig>,
    insecure: bool,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            listen: "127.0.0.1:0".into(),
            advertise: None,
            bootstrap: false,
            join: Vec::new(),
            max_frame: wire::DEFAULT_MAX_FRAME,
            voters: DEFAULT_VOTERS,
            failure_timeout: DEFAULT_FAILURE_TIMEOUT,
            join_timeout: DEFAULT_JOIN_TIMEOUT,
            non_voting: false,
            cookie: None,
            tls: None,
            insecure: false,
        }
    }
}

impl NodeBuilder {
    /// The address to listen on for Raft and data (default `127.0.0.1:0`: any free port).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// The address other nodes dial to reach this one (default: the bound address). Needed when
    /// the node listens on `0.0.0.0`, or behind NAT, a proxy or a container port mapping.
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
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

    /// The largest frame read or written (default 16 MiB; at least 4 KiB, what a handshake
    /// needs). Larger frames close the connection.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame = bytes.max(crate::link::handshake::HANDSHAKE_MAX_FRAME);
        self
    }

    /// How many members vote in Raft (default 3; 3 or 5 make sense): the leader promotes caught-up
    /// learners until there are this many voters. The rest replicate the registry as learners.
    /// Applies while this node leads, so give every node the same value.
    pub fn voters(mut self, voters: usize) -> Self {
        self.voters = voters.max(1);
        self
    }

    /// How long a member may stop answering before the leader removes it from the cluster, with
    /// all its endpoints (default 2 s). Raft heartbeats go out every 100 ms, so anything much
    /// below a second mistakes a busy network for a dead node.
    pub fn failure_timeout(mut self, timeout: Duration) -> Self {
        self.failure_timeout = timeout;
        self
    }

    /// How long [`start`](NodeBuilder::start) keeps asking the seeds to let this node in
    /// (default 30 s): seeds that are not up yet, or a leader being elected, are waited for,
    /// retrying with backoff.
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Make this node a member that replicates the registry and never votes: it is never
    /// promoted to voter, so its going away never costs the cluster a voter or its quorum. For
    /// short-lived or unreliable processes (the `dchan` command's `send`, `recv` and `status`
    /// join this way). Only with [`join`](NodeBuilder::join): a cluster needs a voter to start.
    pub fn non_voting(mut self) -> Self {
        self.non_voting = true;
        self
    }

    /// The cluster secret (the cookie): every node of the cluster is given the same. Each
    /// connection starts with a challenge-response in which both nodes prove they know it
    /// (HMAC-SHA256 over fresh nonces from both sides and both node ids; the secret itself never
    /// travels), and a connection that cannot prove it is refused before any Raft or data frame
    /// is read. Long and random is best: `head -c 32 /dev/urandom | base64`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), dchan::Error> {
    /// let secret = std::env::var("DCHAN_COOKIE").expect("set DCHAN_COOKIE");
    /// let node = dchan::Node::builder()
    ///     .listen("0.0.0.0:7001")
    ///     .advertise("10.0.0.5:7001")
    ///     .cookie(secret)
    ///     .bootstrap()
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cookie(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.cookie = Some(Secret::new(secret.as_ref()));
        self
    }

    /// TLS under every connection of this node, mutual: each node shows a certificate signed by
    /// the cluster's certificate authority, and a node dialed must hold a certificate for the
    /// address it is dialed at (see [`TlsConfig`]). Every node of the cluster needs it. The
    /// cookie handshake, if a cookie is set too, runs inside TLS.
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Let this node listen on an address other than loopback without a
    /// [cookie](NodeBuilder::cookie) or [TLS](NodeBuilder::tls): any process that can reach its port is then trusted with
    /// everything (for a private network you control, or a test). Without this, such a node
    /// refuses to start.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Bind, start Raft, and bootstrap or join. Returns once this node is a member.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] without `bootstrap()` or `join(..)` (or with both), with an empty
    /// cookie, or listening on an address other than loopback with neither a cookie nor
    /// [`insecure`](NodeBuilder::insecure); [`Error::Io`] if the address cannot be bound;
    /// [`Error::Auth`] if a seed does not share this node's cookie; [`Error::Join`] if no seed
    /// lets this node in.
    pub async fn start(self) -> Result<Node, Error> {
        if self.bootstrap != self.join.is_empty() {
            return Err(Error::Config("call exactly one of `bootstrap()` or `join([..])`".into()));
        }
        if self.bootstrap && self.non_voting {
            return Err(Error::Config("a non-voting node cannot bootstrap a cluster".into()));
        }
        if self.cookie.as_ref().is_some_and(Secret::is_empty) {
            return Err(Error::Config("the cookie is empty".into()));
        }
        if self.cookie.as_ref().is_some_and(|c| c.len() < 16) {
            // A node answers a hello with a proof: a short cookie can be guessed offline.
            tracing::warn!(
                "the cookie is shorter than 16 bytes: easy to guess; use a long random one"
            );
        }
        // Checked before binding: a refused configuration never opens its port.
        if self.cookie.is_none() && self.tls.is_none() && !self.insecure {
            for addr in tokio::net::lookup_host(&self.listen).await? {
                if !addr.ip().is_loopback() {
                    return Err(Error::Config(format!(
                        "listening on {addr} without a cluster secret would let anyone who \
                         reaches it in: give every node the same cookie \
                         (`NodeBuilder::cookie`, `--cookie`, DCHAN_COOKIE) or TLS, or call \
                         `insecure()` to run without one"
                    )));
                }
            }
        }
        let listener = TcpListener::bind(&self.listen).await?;
        let addr = listener.local_addr()?;
        let id = random_id(addr);
        let span = tracing::info_span!("node", id);
        async move {
            let cancel = CancellationToken::new();
            let tasks = Tasks::here();
            let peers = Arc::new(Peers::new(id, self.max_frame, cancel.clone(), tasks.clone()));
            let (sm, registry) = StateMachine::new();
            let config = crate::cluster::raft::config()
                .validate()
                .map_err(|e| Error::Config(e.to_string()))?;
            let elections =
                Arc::new(Elections::new(Duration::from_millis(config.election_timeout_max)));
            let raft = Raft::new(
                id,
                Arc::new(config),
                Network { peers: peers.clone() },
                LogStore::default(),
                sm,
            )
            .await
            .map_err(|e| Error::Registry(e.to_string()))?;
            let membership = Arc::new(Membership::new(
                id,
                raft.clone(),
                peers.clone(),
                self.voters,
                self.failure_timeout,
            ));
            let switch = Switchboard::new(
                id,
                peers.clone(),
                registry.clone(),
                tasks.clone(),
                cancel.clone(),
            );
            let advertised = self.advertise.clone().unwrap_or_else(|| addr.to_string());
            let core = Arc::new_cyclic(|me: &std::sync::Weak<Core>| {
                let dispatch: std::sync::Weak<dyn Dispatch> = me.clone();
                let links = Arc::new(Links {
                    me: id,
                    advertised: advertised.clone(),
                    peers: peers.clone(),
                    cancel: cancel.clone(),
                    tasks: tasks.clone(),
                    dispatch,
                    secret: self.cookie.clone().unwrap_or_else(|| Secret::new(b"")),
                    tls: self.tls.clone(),
                    accepted: Arc::new(tokio::sync::Semaphore::new(
                        crate::link::connection::MAX_CONNECTIONS,
                    )),
                    handshaking: Arc::new(tokio::sync::Semaphore::new(
                        crate::link::connection::MAX_HANDSHAKES,
                    )),
                });
                Core {
                    id,
                    addr,
                    advertised,
                    non_voting: self.non_voting,
                    raft,
                    registry,
                    peers,
                    membership: membership.clone(),
                    elections: elections.clone(),
                    cancel,
                    tasks: tasks.clone(),
                    span: tracing::Span::current(),
                    leaving: AtomicBool::new(false),
                    switch,
                    links,
                }
            });
            core.peers.set_links(Arc::downgrade(&core.links));
            let links = core.links.clone();
            tasks.spawn(crate::link::connection::accept_loop(listener, links).in_current_span());
            tasks.spawn(watch_registry(core.clone()).in_current_span());
            tasks.spawn(membership.keep(core.cancel.clone()).in_current_span());
            let (raft, peers) = (core.raft.clone(), core.peers.clone());
            tasks.spawn(elections.run(raft, peers, id, core.cancel.clone()).in_current_span());
            tasks.spawn(core.clone().stay_member().in_current_span());
            let node = Node { core };
            let joined = if self.bootstrap {
                node.bootstrap().await
            } else {
                node.join(&self.join, self.join_timeout).await
            };
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
    /// was closed, [`Error::NoQuorum`] if Raft could not commit the registration in time (this
    /// node is cut off from the majority, or too many voters are down).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the registration is carried out on the node's runtime, and one that commits
    /// after the future was dropped is removed again, so nothing stays registered without a handle.
    pub async fn sender<T>(&self, name: &str) -> Result<Sender<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let id = self.core.register::<T>(name, EndpointKind::Sender, 0).await?.claim();
        Ok(Sender::new(self.core.clone(), self.core.switch.route(name), id))
    }

    /// A receiver on channel `name`; await it (optionally after [`ReceiverBuilder::capacity`]).
    /// It is registered cluster-wide when the future completes. Errors and cancel safety are as
    /// for [`sender`](Node::sender).
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

    /// Not part of the API (for dchan's tests): how many receiver inboxes this node holds,
    /// including those of dropped receivers that are still re-routing late arrivals.
    #[doc(hidden)]
    pub fn __inbox_count(&self) -> usize {
        self.core.switch.inbox_count()
    }

    /// Not part of the API (for dchan's tests): the index of the last entry in this node's Raft
    /// log, to check that an idle cluster writes nothing.
    #[doc(hidden)]
    pub fn __last_log_index(&self) -> Option<u64> {
        self.core.raft.metrics().borrow().last_log_index
    }

    /// A snapshot of the cluster as this node knows it: members, leader, channels.
    ///
    /// A copy made for the caller: it costs O(endpoints in the registry), unlike a registration
    /// (see the README's registry benchmark), so call it to look, not in a loop per message.
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
            channels: registry.channels.iter().map(|(name, c)| c.info(name)).collect(),
        }
    }

    /// The cluster as this node knows it, each time it changes (see [`ClusterWatch`]).
    pub fn watch_cluster(&self) -> ClusterWatch {
        ClusterWatch {
            node: self.clone(),
            registry: self.core.registry.clone(),
            metrics: self.core.raft.metrics(),
            last: None,
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
    /// [`Error::Registry`] or [`Error::NoQuorum`] if the cluster could not be told (the node
    /// still stops).
    pub async fn shutdown(&self) -> Result<(), Error> {
        let core = &self.core;
        if core.cancel.is_cancelled() || core.leaving.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        core.switch.leaving();
        core.switch.tell_taken().await;
        let left = core.leave().await;
        if left.is_ok() {
            core.switch.hand_over().await;
        }
        self.stop().await;
        left
    }

    async fn stop(&self) {
        let core = &self.core;
        // First, so that nothing (a dropped handle's deregistration, a retried write) starts
        // talking to Raft while it stops.
        core.cancel.cancel();
        core.switch.close_all();
        if let Err(e) = core.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        core.tasks.close_and_wait().await;
        core.switch.clear();
        tracing::info!("node stopped");
    }

    async fn bootstrap(&self) -> Result<(), Error> {
        let core = &self.core;
        let members = BTreeMap::from([(
            core.id,
            crate::cluster::raft::MemberNode::new(core.advertised.clone(), false),
        )]);
        core.raft.initialize(members).await.map_err(|e| Error::Registry(e.to_string()))?;
        core.wait_member(core.id).await
    }

    /// Ask the seeds, in turn and again with backoff, to let this node in, until it is a member
    /// or `timeout` has passed. The leader answers a repeated join as it did the first, and a
    /// node whose answer was lost is in as soon as its own registry lists it.
    async fn join(&self, seeds: &[String], timeout: Duration) -> Result<(), Error> {
        let core = &self.core;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut registry = core.registry.clone();
        let me = core.id;
        let member = registry.wait_for(|r| r.nodes.contains_key(&me));
        tokio::pin!(member);
        let mut last = String::from("no seed given");
        let mut backoff = Duration::from_millis(50);
        loop {
            // Seeds that refused this node in this round.
            let mut refused = 0;
            for seed in seeds {
                let attempt = async {
                    let intro = core.links.intro();
                    let dialed = crate::link::connection::dial(seed, &intro, None).await?;
                    let peer = core.peers.get_or_add(dialed.hello.node, seed);
                    crate::link::connection::adopt(&core.links, &peer, dialed);
                    let (node, addr, non_voting) = (core.id, intro.addr, core.non_voting);
                    let req = Request::Join { node, addr, non_voting };
                    match peer.request(req, JOIN_ATTEMPT_TIMEOUT).await {
                        Ok(Response::Membership(r)) => r.map_err(Error::Join),
                        Ok(_) => Err(Error::Join("unexpected answer".into())),
                        Err(e) => Err(Error::Join(e.to_string())),
                    }
                };
                tokio::select! {
                    joined = &mut member => return joined.map(|_| ()).map_err(|_| Error::Shutdown),
                    answer = tokio::time::timeout_at(deadline, attempt) => match answer {
                        Ok(Ok(())) => {
                            return match tokio::time::timeout_at(deadline, &mut member).await {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err(_)) => Err(Error::Shutdown),
                                Err(_) => Err(Error::Join(format!(
                                    "{seed} let this node in, but the membership did not reach it within {timeout:?}"
                                ))),
                            };
                        }
                        // Trying again will not change the secret: said at once if every seed
                        // refuses this node (one that does may be something else at its address).
                        Ok(Err(e @ Error::Auth(_))) => {
                            tracing::warn!(%seed, error = %e, "refused by a seed");
                            refused += 1;
                            if refused == seeds.len() {
                                return Err(e);
                            }
                            last = format!("{seed}: {e}");
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%seed, error = %e, "join attempt failed");
                            last = match e {
                                // Said by this function's own error: not twice.
                                Error::Join(e) => format!("{seed}: {e}"),
                                e => format!("{seed}: {e}"),
                            };
                        }
                        Err(_) => return Err(Error::Join(format!("{last} (gave up after {timeout:?})"))),
                    },
                }
            }
            tokio::select! {
                joined = &mut member => return joined.map(|_| ()).map_err(|_| Error::Shutdown),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Join(format!("{last} (gave up after {timeout:?})")))
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
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
    /// How many messages may be sent to the receiver and not yet taken by it, counted over every
    /// sending node together (default 1024): the (n+1)-th waits in its sender.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.clamp(1, u32::MAX as usize);
        self
    }

    /// Hand out each message as a [`Delivery`](crate::Delivery) to acknowledge explicitly after
    /// processing (see [`AckReceiver`](crate::AckReceiver)).
    pub fn manual_ack(self) -> AckReceiverBuilder<T> {
        AckReceiverBuilder(self)
    }

    /// Register the receiver; its inbox is added to the node.
    async fn register(self, manual_ack: bool) -> Result<(Arc<Inbox<T>>, Arc<ChannelRoute>), Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let core = &self.node.core;
        let id = core
            .register::<T>(&self.name, EndpointKind::Receiver, self.capacity as u32)
            .await?
            .claim();
        let route = core.switch.route(&self.name);
        let inbox = Arc::new(Inbox::<T>::new(
            id,
            route.clone(),
            self.capacity,
            manual_ack,
            Arc::downgrade(&core.peers),
        ));
        core.switch.add_inbox(inbox.clone());
        Ok((inbox, route))
    }
}

/// Configures an [`AckReceiver`](crate::AckReceiver); await it to register the receiver.
#[must_use = "a receiver is registered only when the builder is awaited"]
#[derive(Debug)]
pub struct AckReceiverBuilder<T>(ReceiverBuilder<T>);

impl<T> IntoFuture for AckReceiverBuilder<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type Output = Result<crate::AckReceiver<T>, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let core = self.0.node.core.clone();
            let (inbox, route) = self.0.register(true).await?;
            Ok(crate::AckReceiver::new(registrar(&core), inbox, route))
        })
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
            let core = self.node.core.clone();
            let (inbox, route) = self.register(false).await?;
            Ok(Receiver::new(registrar(&core), inbox, route))
        })
    }
}

/// Bring the routers up to date each time the registry changes, and have Raft snapshot the
/// registry when one is due ([`crate::cluster::raft::Snapshots`]), until shutdown.
async fn watch_registry(core: Arc<Core>) {
    let mut rx = core.registry.clone();
    let mut snapshots = crate::cluster::raft::Snapshots::default();
    loop {
        tokio::select! {
            _ = core.cancel.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
        let registry = rx.borrow_and_update().clone();
        core.switch.refresh(&registry);
        snapshots.ask_if_due(&core.raft, registry.endpoint_count()).await;
    }
}

/// `core` as its endpoints hold it (they must not keep the node alive).
fn registrar(core: &Arc<Core>) -> std::sync::Weak<dyn crate::channel::registrar::Registrar> {
    let weak: std::sync::Weak<Core> = Arc::downgrade(core);
    weak
}
