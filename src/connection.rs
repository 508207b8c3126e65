//! Connections: length-delimited frames over TCP, the handshake, and the loops that move frames.
//!
//! A connection starts with a hello each way (who is talking, where to dial it back). It is then
//! read by [`read_loop`], which hands each frame up through [`Dispatch`] (the node implements it;
//! this module does not know the node): data, acks, fences and gones, and requests (Raft RPCs in
//! order, on a task of their own); answers go to whoever waits for them. If it is the first connection between the two nodes it also becomes the
//! peer's writer ([`write_loop`]), on both sides: one connection per pair of nodes, both ways.
//! [`keep_connected`] dials a peer only when something is queued for it and no connection writes
//! for it. The frame size is checked by the codec from the length prefix, before anything is
//! allocated; a frame that is too large or malformed closes that one connection with a logged
//! reason.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::peer::{Peer, Peers, WriterClaim};
use crate::registry::{EndpointId, NodeId};
use crate::tasks::Tasks;
use crate::wire::{self, Frame, Request, Response};
use crate::Error;

/// How long a new connection may take to say who it is.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) type FramedTcp = Framed<TcpStream, LengthDelimitedCodec>;

/// Where what a connection reads goes: the layer above, as the link sees it. The node
/// implements it; the connection hands frames up through it and knows nothing else of the node.
pub(crate) trait Dispatch: Send + Sync + 'static {
    /// Messages from node `from` for receiver `to`, in the order sent.
    fn data(&self, from: NodeId, to: EndpointId, msgs: &mut dyn Iterator<Item = Bytes>);
    /// Receiver `to` took `n` messages from this node: credit back.
    fn ack(&self, to: EndpointId, n: u32);
    /// Node `from` sends nothing more on closed `channel`.
    fn fence(&self, from: NodeId, channel: &str);
    /// Node `from` sends nothing more to removed receiver `to`.
    fn gone(&self, from: NodeId, to: EndpointId);
    /// Answer a request (a Raft RPC, a registry write, a membership change).
    fn request(self: Arc<Self>, req: Request) -> BoxFuture<'static, Response>;
}

/// What every connection of one node shares: who the node is, its limits, its peers, and where
/// frames go.
pub(crate) struct Links {
    pub(crate) me: NodeId,
    /// The address this node gives in its hello (where to dial it back).
    pub(crate) advertised: String,
    pub(crate) peers: Arc<Peers>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: Tasks,
    /// The node, weakly: links do not keep it alive.
    pub(crate) dispatch: Weak<dyn Dispatch>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").field("me", &self.me).finish_non_exhaustive()
    }
}

fn framed(stream: TcpStream, max_frame: usize) -> FramedTcp {
    // Small frames must not wait for Nagle: batching is done by the outbox, not by the kernel.
    let _ = stream.set_nodelay(true);
    Framed::new(stream, LengthDelimitedCodec::builder().max_frame_length(max_frame).new_codec())
}

fn hello(me: NodeId, my_addr: &str) -> Bytes {
    wire::encode(&Frame::Hello { node: me, addr: my_addr.to_owned() })
}

/// Read the peer's hello: its node id and listening address.
async fn read_hello(framed: &mut FramedTcp) -> Result<(NodeId, String), Error> {
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next())
        .await
        .map_err(|_| Error::Codec("no hello within the handshake timeout".into()))?;
    let buf = match first {
        Some(buf) => buf?,
        None => return Err(Error::Codec("connection closed before hello".into())),
    };
    match wire::decode(&buf) {
        Ok(Frame::Hello { node, addr }) => Ok((node, addr)),
        Ok(_) => Err(Error::Codec("first frame is not a hello".into())),
        Err(e) => Err(Error::Codec(e.to_string())),
    }
}

/// A connection this node dialed, past the handshake.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) remote: NodeId,
    pub(crate) framed: FramedTcp,
}

/// Dial `addr` and exchange hellos.
pub(crate) async fn dial(
    addr: &str,
    me: NodeId,
    my_addr: &str,
    max_frame: usize,
) -> Result<Dialed, Error> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Io(std::io::ErrorKind::TimedOut.into()))??;
    let mut framed = framed(stream, max_frame);
    framed.send(hello(me, my_addr)).await?;
    let (remote, _) = read_hello(&mut framed).await?;
    Ok(Dialed { remote, framed })
}

/// Keep a link to `peer` while there is something to send and no other connection writes for it:
/// dial, run the connection until it breaks, and start again, until the node shuts down or the
/// peer leaves.
pub(crate) async fn keep_connected(links: Weak<Links>, peer: Arc<Peer>) {
    let stop = peer.stop.clone();
    let mut backoff = Duration::from_millis(20);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = async { peer.writer_free().await; peer.outbox.ready().await } => {}
        }
        let Some(claim) = peer.claim_writer() else {
            // An accepted connection became the writer meanwhile: the wake-up was its.
            peer.outbox.kick();
            continue;
        };
        let Some(node) = links.upgrade() else { return };
        let (me, max_frame) = (node.me, node.peers.max_frame);
        let my_addr = node.advertised.clone();
        let addr = peer.addr();
        let run = async {
            let conn = dial(&addr, me, &my_addr, max_frame).await?;
            if conn.remote != peer.id {
                return Err(Error::Join(format!(
                    "{addr} is node {}, expected node {}",
                    conn.remote, peer.id
                )));
            }
            tracing::debug!(%addr, "connected");
            backoff = Duration::from_millis(20);
            run(&node, conn.framed, &peer, Some(claim)).await
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            res = run => if let Err(e) = res {
                tracing::debug!(error = %e, "link down");
            },
        }
        drop(node);
        // Requests in flight are left to their own timeouts: after a graceful leave, Raft drops
        // its replication to the node that left before they expire, and has nothing to report.
        // Frames for a peer that cannot be reached would pile up: drop them. Raft retries its
        // own; lost data is what the failure handling (re-routing unacked messages) is for.
        let mut dropped = Vec::new();
        let mark = peer.outbox.take(&mut dropped);
        peer.outbox.mark_written(mark);
        if !dropped.is_empty() {
            tracing::debug!(frames = dropped.len(), "dropped frames for an unreachable peer");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Accept connections until the node shuts down.
pub(crate) async fn accept_loop(listener: TcpListener, core: Arc<Links>) {
    loop {
        let (stream, from) = tokio::select! {
            _ = core.cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let span = tracing::info_span!("conn", node = core.me, %from);
        let c = core.clone();
        core.tasks.spawn(
            async move {
                if let Err(e) = serve(stream, &c).await {
                    tracing::info!(reason = %e, "connection closed");
                }
            }
            .instrument(span),
        );
    }
}

/// Handshake on an accepted connection, then run it: as the peer's writer too if no other
/// connection is.
async fn serve(stream: TcpStream, core: &Arc<Links>) -> Result<(), Error> {
    let mut framed = framed(stream, core.peers.max_frame);
    let (remote, addr) = read_hello(&mut framed).await?;
    framed.send(hello(core.me, &core.advertised)).await?;
    let peer = core.peers.get_or_add(remote, &addr);
    let claim = peer.claim_writer();
    run(core, framed, &peer, claim).await
}

/// Read (and, holding the claim, write) one connection until it breaks or the node stops.
async fn run(
    core: &Arc<Links>,
    framed: FramedTcp,
    peer: &Arc<Peer>,
    claim: Option<WriterClaim>,
) -> Result<(), Error> {
    let (sink, stream) = framed.split();
    let writing = claim.is_some();
    let result = tokio::select! {
        _ = core.cancel.cancelled() => Ok(()),
        _ = peer.stop.cancelled() => Ok(()),
        r = read_loop(core, stream, peer) => r,
        w = write_loop(sink, &peer.outbox), if writing => w,
    };
    drop(claim);
    result
}

/// Write whatever the outbox holds, batched: feed every queued frame, then flush once.
/// Returns when the connection breaks.
async fn write_loop(
    mut sink: futures::stream::SplitSink<FramedTcp, Bytes>,
    outbox: &crate::outbox::Outbox,
) -> Result<(), Error> {
    let mut frames = Vec::new();
    loop {
        tokio::select! {
            _ = outbox.ready() => {}
            _ = outbox.lazy_due() => {}
        }
        let mark = outbox.take(&mut frames);
        for f in frames.drain(..) {
            sink.feed(f).await?;
        }
        sink.flush().await?;
        outbox.mark_written(mark);
    }
}

/// Dispatch every frame the peer sends until the connection closes.
async fn read_loop(
    core: &Arc<Links>,
    mut stream: futures::stream::SplitStream<FramedTcp>,
    peer: &Arc<Peer>,
) -> Result<(), Error> {
    let remote = peer.id;
    // Raft RPCs are answered in the order they came, on a task of their own, so that a slow
    // append never holds up the data behind it on this connection.
    let (rpc_tx, rpc_rx) = mpsc::unbounded_channel();
    let mut rpc_rx = Some(rpc_rx);
    while let Some(buf) = stream.next().await {
        let buf = buf?.freeze();
        peer.heard();
        let frame = wire::decode(&buf).map_err(|e| Error::Codec(e.to_string()))?;
        // The node is gone (dropped without a shutdown): nothing to hand frames to.
        let Some(up) = core.dispatch.upgrade() else { return Ok(()) };
        match frame {
            Frame::Data { to, msgs } => {
                up.data(remote, to, &mut msgs.iter().map(|m| buf.slice_ref(m)));
            }
            Frame::Ack { to, n } => up.ack(to, n),
            Frame::Fence { channel } => up.fence(remote, &channel),
            Frame::Gone { to } => up.gone(remote, to),
            Frame::Response { id, body } => peer.complete(id, *body),
            Frame::Request { id, body } => match *body {
                req @ (Request::AppendEntries(_)
                | Request::Vote(_)
                | Request::InstallSnapshot(_)) => {
                    if let Some(rx) = rpc_rx.take() {
                        let task = answer_in_order(core.clone(), peer.clone(), rx);
                        core.tasks.spawn(task.in_current_span());
                    }
                    let _ = rpc_tx.send((id, req));
                }
                // Writes and membership changes may wait for a commit: answered concurrently.
                req => {
                    let (answer, p) = (up.request(req), peer.clone());
                    core.tasks.spawn(
                        async move {
                            respond(&p, id, answer.await);
                        }
                        .in_current_span(),
                    );
                }
            },
            Frame::Hello { .. } => {
                return Err(Error::Codec("second hello on one connection".into()))
            }
        }
    }
    Ok(())
}

async fn answer_in_order(
    core: Arc<Links>,
    peer: Arc<Peer>,
    mut rx: mpsc::UnboundedReceiver<(u64, Request)>,
) {
    while let Some((id, req)) = rx.recv().await {
        let Some(up) = core.dispatch.upgrade() else { return };
        let resp = tokio::select! {
            _ = core.cancel.cancelled() => return,
            r = up.request(req) => r,
        };
        respond(&peer, id, resp);
    }
}

fn respond(peer: &Peer, id: u64, resp: wire::Response) {
    peer.outbox.push_frame(wire::encode(&Frame::Response { id, body: Box::new(resp) }));
}
