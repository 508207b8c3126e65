//! [`NodeBuilder`]: a node's configuration, and [`NodeBuilder::start`], which binds the listener,
//! starts Raft, the connections and the registry watcher on the node's own runtime, and then
//! bootstraps or joins (see `join`).

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::telemetry::Telemetry;
use super::{Core, Node};
use crate::channel::switchboard::Switchboard;
use crate::cluster::membership::{Membership, DEFAULT_VOTERS};
use crate::cluster::raft::election::Elections;
use crate::cluster::raft::store::{LogStore, StateMachine};
use crate::cluster::raft::Timing;
use crate::cluster::raft::{Network, Raft};
use crate::error::Cause;
use crate::ids::NodeId;
use crate::link::connection::Links;
use crate::link::dispatch::Dispatch;
use crate::link::handshake::Secret;
use crate::link::peer::Peers;
use crate::link::transport::TlsConfig;
use crate::link::wire;
use crate::tasks::Tasks;
use crate::Error;

/// How long `start` keeps trying to join through the seeds, by default.
pub(super) const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Node {
    /// Configure a new node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }
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
    /// Set by the builder; otherwise from the round trip (see [`Timing`]).
    failure_timeout: Option<Duration>,
    round_trip: Duration,
    join_timeout: Duration,
    non_voting: bool,
    name: Option<String>,
    cookie: Option<Secret>,
    tls: Option<TlsConfig>,
    insecure: bool,
    /// Where to serve metrics and probes (`NodeBuilder::metrics`).
    #[cfg(feature = "prometheus")]
    metrics: Option<String>,
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
            failure_timeout: None,
            round_trip: Duration::ZERO,
            join_timeout: DEFAULT_JOIN_TIMEOUT,
            non_voting: false,
            name: None,
            cookie: None,
            tls: None,
            insecure: false,
            #[cfg(feature = "prometheus")]
            metrics: None,
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
    /// learners until there are this many voters, two at a time from an odd count, so that a
    /// cluster growing to 3 goes from one voter straight to three (two voters could commit
    /// nothing with either gone). The rest replicate the registry as learners. Applies while this
    /// node leads, so give every node the same value.
    pub fn voters(mut self, voters: usize) -> Self {
        self.voters = voters.max(1);
        self
    }

    /// How long a member may stop answering before the leader removes it from the cluster, with
    /// all its endpoints (default 2 s, or 10 heartbeats on a slow network: see
    /// [`round_trip`](NodeBuilder::round_trip)). Raft heartbeats go out every 100 ms on a LAN,
    /// so anything much below a second mistakes a busy network for a dead node.
    pub fn failure_timeout(mut self, timeout: Duration) -> Self {
        self.failure_timeout = Some(timeout);
        self
    }

    /// The round trip expected between this cluster's nodes (default: a LAN, well under 50 ms).
    /// Raft's timing follows from it: a heartbeat every twice the round trip (at least 100 ms),
    /// which is also the time a leader gives a follower to answer; elections after 3 to 5
    /// heartbeats without a leader; the failure timeout's default, 10 heartbeats (at least 2 s).
    /// The node's other waits across the network stretch with it once it passes what a LAN
    /// needs: a connection's set-up 8 round trips (at least 5 s), one join attempt 16 (5 s), a
    /// registration or membership change 20 (10 s: [`Error::NoQuorum`] after that). The join
    /// timeout is the caller's to set ([`join_timeout`](NodeBuilder::join_timeout)).
    /// Give every node of a cluster the same value: across regions, the largest round trip
    /// between two of them (`Duration::from_millis(300)` for 150 ms each way). At most
    /// a minute: `start` refuses more.
    pub fn round_trip(mut self, round_trip: Duration) -> Self {
        self.round_trip = round_trip;
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

    /// What this node is, for people looking at the cluster: `dchan status`, `dchan node`'s
    /// log and [`Member::name`](crate::Member::name) show it beside the node's id (NATS's
    /// connection name). The `dchan` command names its own nodes after what they do
    /// (`send jobs`, `recv jobs`). One line of text, at most 128 bytes; unnamed by default.
    ///
    /// ```
    /// # #[actix_rt::main]
    /// # async fn main() -> Result<(), dchan::Error> {
    /// let node = dchan::Node::builder().name("billing worker").bootstrap().start().await?;
    /// let me = node.cluster().members.into_iter().find(|m| m.id == node.id()).unwrap();
    /// assert_eq!(me.name.as_deref(), Some("billing worker"));
    /// node.shutdown().await
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
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

    /// Serve this node's metrics and probes over HTTP on `addr` (`"127.0.0.1:9100"`; port 0
    /// picks one: see [`Node::metrics_addr`]): `GET /metrics` in Prometheus' text format, from
    /// a recorder of this node's own; `GET /healthz`, 200 while the node runs; `GET /readyz`, 200
    /// once it is a member that knows a leader, 503 with the reason otherwise. Needs the cargo
    /// feature `prometheus`. Without it, the node's figures go to the process' global
    /// [`metrics`] recorder, whichever exporter the application installed.
    ///
    /// ```
    /// # #[actix::main]
    /// # async fn main() -> Result<(), dchan::Error> {
    /// let node = dchan::Node::builder().bootstrap().metrics("127.0.0.1:0").start().await?;
    /// println!("metrics on http://{}/metrics", node.metrics_addr().expect("served"));
    /// node.shutdown().await
    /// # }
    /// ```
    #[cfg(feature = "prometheus")]
    pub fn metrics(mut self, addr: impl Into<String>) -> Self {
        self.metrics = Some(addr.into());
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
            return Err(Error::config("call exactly one of `bootstrap()` or `join([..])`"));
        }
        if self.bootstrap && self.non_voting {
            return Err(Error::config("a non-voting node cannot bootstrap a cluster"));
        }
        if let Some(name) = &self.name {
            crate::cluster::membership::check_name(name).map_err(Error::config)?;
        }
        if self.round_trip > MAX_ROUND_TRIP {
            return Err(Error::config(format!(
                "a round trip of {:?} between nodes: at most {MAX_ROUND_TRIP:?} (Raft's timing \
                 is a multiple of it)",
                self.round_trip
            )));
        }
        if self.cookie.as_ref().is_some_and(Secret::is_empty) {
            return Err(Error::config("the cookie is empty"));
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
                    return Err(Error::config(format!(
                        "listening on {addr} without a cluster secret would let anyone who \
                         reaches it in: give every node the same cookie \
                         (`NodeBuilder::cookie`, `--cookie`, DCHAN_COOKIE) or TLS, or call \
                         `insecure()` to run without one"
                    )));
                }
            }
        }
        let listener = TcpListener::bind(&self.listen).await.map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", self.listen),
            ))
        })?;
        let addr = listener.local_addr()?;
        #[cfg(feature = "prometheus")]
        let served = match &self.metrics {
            Some(at) => Some(super::probes::Served::bind(at).await?),
            None => None,
        };
        #[cfg(feature = "prometheus")]
        let (telemetry, metrics_addr) = match &served {
            Some(s) => (Telemetry::with_recorder(s.recorder.clone()), Some(s.addr)),
            None => (Telemetry::default(), None),
        };
        #[cfg(not(feature = "prometheus"))]
        let (telemetry, metrics_addr) = (Telemetry::default(), None);
        let id = random_id(addr);
        let span = tracing::info_span!("node", id);
        async move {
            let cancel = CancellationToken::new();
            let tasks = Tasks::here();
            let peers = Arc::new(Peers::new(id, self.max_frame, cancel.clone(), tasks.clone()));
            let (sm, registry) = StateMachine::new();
            let timing = Timing::for_round_trip(self.round_trip);
            let config = crate::cluster::raft::config(timing)
                .validate()
                .map_err(|e| Error::config(Cause::of(e)))?;
            let log = LogStore::default();
            let elections = Arc::new(Elections::new(timing, log.clone()));
            let raft =
                Raft::new(id, Arc::new(config), Network { peers: peers.clone() }, log.clone(), sm)
                    .await
                    .map_err(|e| Error::registry(Cause::of(e)))?;
            let membership = Arc::new(Membership::new(
                id,
                raft.clone(),
                peers.clone(),
                self.voters,
                self.failure_timeout.unwrap_or(timing.failure_timeout),
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
                    handshake_timeout: timing.handshake(),
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
                    name: self.name.clone(),
                    raft,
                    timing,
                    registry,
                    peers,
                    membership: membership.clone(),
                    elections: elections.clone(),
                    cancel,
                    tasks: tasks.clone(),
                    span: tracing::Span::current(),
                    leaving: AtomicBool::new(false),
                    shutdown: super::ShutDown::default(),
                    deregistrations: Arc::new(tokio::sync::Semaphore::new(
                        super::MAX_DEREGISTRATIONS,
                    )),
                    switch,
                    endpoints: Default::default(),
                    links,
                    unnamed: std::sync::OnceLock::new(),
                    telemetry,
                    log,
                    metrics_addr,
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
            let weak = Arc::downgrade(&core);
            tasks.spawn(
                super::telemetry::publish_every(weak, core.cancel.clone()).in_current_span(),
            );
            #[cfg(feature = "prometheus")]
            if let Some(served) = served {
                tasks.spawn(served.serve(Arc::downgrade(&core)).in_current_span());
            }
            let node = Node { core };
            let joined = if self.bootstrap {
                node.bootstrap().await
            } else {
                node.join(&self.join, self.join_timeout).await
            };
            if let Err(e) = joined {
                node.core.stop().await;
                return Err(e);
            }
            tracing::info!(%addr, "node started");
            Ok(node)
        }
        .instrument(span)
        .await
    }
}

/// The longest round trip a node may be told ([`NodeBuilder::round_trip`]): Raft's heartbeat is
/// twice it, its failure timeout twenty times.
pub(crate) const MAX_ROUND_TRIP: Duration = Duration::from_secs(60);

/// A node id that no other node will draw: a hash of the address, the time and the process.
pub(super) fn random_id(addr: SocketAddr) -> NodeId {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(addr.to_string().as_bytes());
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    // Keep ids readable in logs and clear of 0.
    (h.finish() % 1_000_000_000) + 1
}

/// Bring the routers up to date each time the registry changes, and have Raft snapshot the
/// registry when one is due ([`crate::cluster::raft::Snapshots`]), until shutdown.
pub(super) async fn watch_registry(core: Arc<Core>) {
    let mut rx = core.registry.clone();
    let mut snapshots = crate::cluster::raft::Snapshots::default();
    loop {
        tokio::select! {
            biased;
            _ = core.cancel.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
        let registry = rx.borrow_and_update().clone();
        core.switch.refresh(&registry);
        // Its own removal first: a start-over begun here holds back the fences this registry
        // made due, until what the old incarnation sent has gone again.
        core.check_removed(&registry);
        core.switch.send_fences();
        snapshots.ask_if_due(&core.raft, registry.endpoint_count()).await;
    }
}
