//! A simulated node: the real switchboard, peers and outboxes of one node, with what the node
//! layer does around them (`node::Core`: registry writes, the registry watcher, the endpoints'
//! registrar) done by the simulation, which commits writes to its log and applies it on each
//! node in that node's own time.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::channel::registrar::Registrar;
use crate::channel::router::ChannelRoute;
use crate::channel::switchboard::Switchboard;
use crate::cluster::registry::Registry;
use crate::error::Error;
use crate::ids::{EndpointId, NodeId};
use crate::link::connection::Links;
use crate::link::dispatch::{Dispatch, Frames};
use crate::link::peer::Peers;
use crate::rpc::{Command, Request, Response};
use crate::sync::lock;
use crate::tasks::Tasks;

/// What a node's connections and endpoints call up to (in a real node, `node::Core`).
#[derive(Debug)]
pub(super) struct Core {
    pub(super) switch: Switchboard,
    pub(super) peers: Arc<Peers>,
    pub(super) registry: watch::Sender<Arc<Registry>>,
    /// Registry writes its endpoints asked for, for the simulation to commit.
    pub(super) writes: Mutex<Vec<Command>>,
    /// Endpoints registered again after the node started over: first id -> current (as
    /// `node::rejoin::LiveEndpoints` keeps them; a handle dropped deregisters the current one).
    pub(super) current: Mutex<std::collections::HashMap<EndpointId, EndpointId>>,
}

/// As `node::Core` hands frames up: data, credit, fences and releases to the switchboard; of
/// the requests, a node starting over asks what was taken in (Raft's are not simulated).
impl Dispatch for Core {
    fn frames(&self) -> &dyn Frames {
        &self.switch
    }

    fn request(
        self: Arc<Self>,
        from: NodeId,
        req: Request,
    ) -> BoxFuture<'static, Option<Response>> {
        Box::pin(async move {
            match req {
                Request::Rejoined { at } => {
                    self.switch.rejoined(from, at).await.map(Response::Rejoined)
                }
                _ => None,
            }
        })
    }
}

/// As `node::Core` serves its endpoints: a deregistration or a close is a registry write.
impl Registrar for Core {
    fn deregister(self: Arc<Self>, channel: &str, id: EndpointId) {
        let id = lock(&self.current).remove(&id).unwrap_or(id);
        lock(&self.writes).push(Command::Deregister { channel: channel.to_owned(), id });
    }

    fn close(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>> {
        lock(&self.writes).push(Command::Close { channel: channel.to_owned() });
        Box::pin(async { Ok(()) })
    }

    fn redeliver(&self, route: &Arc<ChannelRoute>, msgs: Vec<Bytes>) {
        self.switch.redeliver(route, msgs);
    }

    fn replies(&self) -> (NodeId, &Arc<Peers>) {
        (self.peers.me(), &self.peers)
    }

    // The simulation's messages carry no senders: none is decoded, none registered so.
    fn register_sender(
        self: Arc<Self>,
        channel: String,
        _type_name: String,
    ) -> BoxFuture<'static, Result<EndpointId, Error>> {
        Box::pin(async move { Err(Error::ChannelClosed(channel)) })
    }

    fn route(&self, channel: &str) -> Arc<ChannelRoute> {
        self.switch.route(channel)
    }

    fn unnamed_route(&self, owner: NodeId, id: EndpointId, admitted: u64) -> Arc<ChannelRoute> {
        self.switch.unnamed_route(owner, id, admitted)
    }

    fn unnamed_gone(&self, route: &Arc<ChannelRoute>) {
        self.switch.unnamed_gone(route);
    }

    fn shut(&self, route: &Arc<ChannelRoute>) {
        self.switch.shut_unnamed(route);
    }

    fn admission(&self) -> u64 {
        self.switch.admission()
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        drop(task);
    }
}

/// The address a simulated node is known by (never dialed).
pub(super) fn addr(id: NodeId) -> String {
    format!("sim:{id}")
}

/// A node's switchboard and peers, and the links' shared state its connections read with.
pub(super) fn start(id: NodeId) -> (Arc<Core>, Arc<Links>, CancellationToken) {
    let cancel = CancellationToken::new();
    let tasks = Tasks::here();
    let peers = Arc::new(Peers::simulated(id, cancel.clone(), tasks.clone()));
    let registry = watch::Sender::new(Arc::new(Registry::default()));
    let switch =
        Switchboard::new(id, peers.clone(), registry.subscribe(), tasks.clone(), cancel.clone());
    let core = Arc::new(Core {
        switch,
        peers: peers.clone(),
        registry,
        writes: Mutex::default(),
        current: Mutex::default(),
    });
    let dispatch: std::sync::Weak<dyn Dispatch> = {
        let weak: std::sync::Weak<Core> = Arc::downgrade(&core);
        weak
    };
    let links = Arc::new(Links {
        me: id,
        advertised: addr(id),
        peers,
        cancel: cancel.clone(),
        tasks,
        dispatch,
        secret: crate::link::handshake::Secret::new(b""),
        tls: None,
        handshake_timeout: crate::link::handshake::HANDSHAKE_TIMEOUT,
        accepted: Arc::new(tokio::sync::Semaphore::new(1)),
        handshaking: Arc::new(tokio::sync::Semaphore::new(1)),
    });
    (core, links, cancel)
}
