//! Connections: length-delimited frames over TCP, the handshake, and the loops that move frames.
//!
//! A dialed connection ([`dial`], then [`write_loop`]) carries this node's outbox for one peer;
//! an accepted one ([`accept_loop`], then `serve`) is read and dispatched: data to the receiving
//! endpoint's inbox, acks to the sending side's windows, Raft RPCs to Raft (in order, on a task of
//! their own), answers to whoever waits for them. The frame size is checked by the codec from the
//! length prefix, before anything is allocated; a frame that is too large or malformed closes that
//! one connection with a logged reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::Instrument;

use crate::node::Core;
use crate::peer::Peer;
use crate::registry::NodeId;
use crate::wire::{self, Frame, Request};
use crate::Error;

/// How long a new connection may take to say who it is.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) type FramedTcp = Framed<TcpStream, LengthDelimitedCodec>;

fn framed(stream: TcpStream, max_frame: usize) -> FramedTcp {
    // Small frames must not wait for Nagle: batching is done by the outbox, not by the kernel.
    let _ = stream.set_nodelay(true);
    Framed::new(stream, LengthDelimitedCodec::builder().max_frame_length(max_frame).new_codec())
}

fn hello(me: NodeId, my_addr: SocketAddr) -> Bytes {
    wire::encode(&Frame::Hello { node: me, addr: my_addr.to_string() })
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
    my_addr: SocketAddr,
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

/// Write whatever the outbox holds, batched: feed every queued frame, then flush once.
/// Returns when the connection breaks.
pub(crate) async fn write_loop(
    framed: FramedTcp,
    outbox: &crate::outbox::Outbox,
) -> Result<(), Error> {
    let (mut sink, mut stream) = framed.split();
    let mut frames = Vec::new();
    loop {
        tokio::select! {
            _ = outbox.ready() => {}
            // The other side never writes after its hello; reading tells us when it goes away.
            r = stream.next() => match r {
                None => return Err(Error::Io(std::io::ErrorKind::ConnectionReset.into())),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(_)) => continue,
            },
        }
        let mark = outbox.take(&mut frames);
        for f in frames.drain(..) {
            sink.feed(f).await?;
        }
        sink.flush().await?;
        outbox.mark_written(mark);
    }
}

/// Accept connections until the node shuts down.
pub(crate) async fn accept_loop(listener: TcpListener, core: Arc<Core>) {
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
        let span = tracing::info_span!("conn", node = core.id, %from);
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

/// Read one accepted connection until it or the node closes.
async fn serve(stream: TcpStream, core: &Arc<Core>) -> Result<(), Error> {
    let mut framed = framed(stream, core.peers.max_frame);
    let (remote, addr) = read_hello(&mut framed).await?;
    framed.send(hello(core.id, core.addr)).await?;
    // Answers go back through this node's own link to the peer, made when the first request
    // needs one (a connection that sends junk after its hello costs no link).
    let peer = std::sync::OnceLock::new();
    let peer = || peer.get_or_init(|| core.peers.get(remote, &addr)).clone();

    // Raft RPCs are answered in the order they came, on a task of their own, so that a slow
    // append never holds up the data behind it on this connection.
    let (rpc_tx, rpc_rx) = mpsc::unbounded_channel();
    let mut rpc_rx = Some(rpc_rx);

    loop {
        let buf = tokio::select! {
            _ = core.cancel.cancelled() => return Ok(()),
            next = framed.next() => match next {
                None => return Ok(()),
                Some(buf) => buf?.freeze(),
            },
        };
        let frame = wire::decode(&buf).map_err(|e| Error::Codec(e.to_string()))?;
        match frame {
            Frame::Data { to, msgs } => {
                core.deliver(remote, to, msgs.iter().map(|m| buf.slice_ref(m)));
            }
            Frame::Ack { to, n } => core.ack(to, n),
            Frame::Fence { channel } => core.fence(remote, &channel),
            Frame::Response { id, body } => {
                if let Some(p) = core.peers.find(remote) {
                    p.complete(id, *body);
                }
            }
            Frame::Request { id, body } => match *body {
                req @ (Request::AppendEntries(_)
                | Request::Vote(_)
                | Request::InstallSnapshot(_)) => {
                    if let Some(rx) = rpc_rx.take() {
                        let task = answer_in_order(core.clone(), peer(), rx);
                        core.tasks.spawn(task.in_current_span());
                    }
                    let _ = rpc_tx.send((id, req));
                }
                // Writes and membership changes may wait for a commit: answered concurrently.
                req => {
                    let (c, p) = (core.clone(), peer());
                    core.tasks.spawn(
                        async move {
                            let resp = c.handle_request(req).await;
                            respond(&p, id, resp);
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
}

async fn answer_in_order(
    core: Arc<Core>,
    peer: Arc<Peer>,
    mut rx: mpsc::UnboundedReceiver<(u64, Request)>,
) {
    while let Some((id, req)) = rx.recv().await {
        let resp = tokio::select! {
            _ = core.cancel.cancelled() => return,
            r = core.handle_request(req) => r,
        };
        respond(&peer, id, resp);
    }
}

fn respond(peer: &Peer, id: u64, resp: wire::Response) {
    peer.outbox.push_frame(wire::encode(&Frame::Response { id, body: Box::new(resp) }));
}
