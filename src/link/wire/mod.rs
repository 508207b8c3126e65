//! The wire format: what one length-delimited frame carries between two nodes.
//!
//! Every frame is a MessagePack array `[version, frame]`, so a peer speaking another version is
//! told apart from a corrupt one. Frames are Raft RPCs (request/response pairs matched by id),
//! registry writes forwarded to the leader, and the message path itself: [`Frame::Data`] carries
//! a batch of encoded messages for one receiver; [`Frame::Credit`], [`Frame::Want`],
//! [`Frame::Reclaim`] and [`Frame::Return`] move a receiver's credit between sending nodes (see
//! [`crate::channel::credit`]); [`Frame::Fence`] tells a receiving node that nothing more of a closed
//! channel is on its way from this node, and [`Frame::Released`] tells a sending node that a
//! receiver is gone and what it had not taken is to be delivered elsewhere ([`Frame::Shut`] is
//! the close of an unnamed channel, which no registry fences). Data frames are built
//! in place by [`crate::link::outbox`] without going through serde; a test of the outbox checks that serde
//! decodes them. Links number and resend every frame but their own and Raft's (see
//! [`Frame::is_reliable`]).

pub(crate) mod control;

use serde::{Deserialize, Serialize};

use crate::ids::{EndpointId, NodeId};
use crate::rpc::{Request, Response};

/// The protocol version this build speaks.
pub(crate) const VERSION: u8 = 13;

/// Largest frame a node reads or writes by default (16 MiB).
pub(crate) const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// One frame, borrowing message payloads from the received buffer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame<'a> {
    /// The dialer's first frame (see [`crate::link::handshake`]): who is talking, and a fresh nonce
    /// for the acceptor to prove it knows the cluster secret with.
    Hello {
        /// The dialer's node id.
        node: NodeId,
        /// The address the dialer listens on (used by no one until the membership lists it).
        addr: String,
        /// The largest frame the dialer reads.
        max_frame: u64,
        /// 32 random bytes.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
    },
    /// The acceptor's answer to a hello: who it is, its own nonce, and its proof.
    Challenge {
        /// The acceptor's node id.
        node: NodeId,
        /// The largest frame the acceptor reads.
        max_frame: u64,
        /// 32 random bytes.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        /// HMAC-SHA256 of both nonces and both ids under the cluster secret, as the acceptor.
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// The dialer's proof, once the acceptor's checked out.
    Proof {
        /// HMAC-SHA256 of both nonces and both ids under the cluster secret, as the dialer.
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
        /// How many reliable frames of which of the acceptor's streams the dialer has taken in
        /// (`None`: it knows no stream of the acceptor's).
        received: Option<(u64, u64)>,
    },
    /// The acceptor let the dialer in: the connection carries everything else from now on.
    Welcome {
        /// Like [`Frame::Proof`]'s, the acceptor's view of the dialer's stream.
        received: Option<(u64, u64)>,
    },
    /// The handshake failed on the side that sends this, for this reason; the connection closes.
    Refused {
        /// Why, for a person to read.
        reason: String,
    },
    /// Sent once by a connection that is to carry the sender's reliable frames, before any of
    /// them: the next reliable frame on this connection is number `from` of stream `stream`
    /// (frames the receiver already has are resent after a reconnect: it skips them).
    Resume {
        /// The sender's stream of reliable frames to the receiver.
        stream: u64,
        /// The number of the next reliable frame on this connection.
        from: u64,
    },
    /// The sender has taken in the first `count` reliable frames of the receiver's stream
    /// `stream`: the receiver may let go of them.
    Received {
        /// The receiver's stream.
        stream: u64,
        /// How many of its frames were taken in.
        count: u64,
    },
    /// A request to be answered with a [`Frame::Response`] of the same id.
    Request {
        /// Matches the response to the request.
        id: u64,
        /// The request.
        body: Box<Request>,
    },
    /// The answer to [`Frame::Request`] `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: Box<Response>,
    },
    /// Encoded messages for receiver `to`, in the order they were sent.
    Data {
        /// The receiving endpoint.
        to: EndpointId,
        /// Broadcast copies, for this receiver alone: a receiving node that holds them as its
        /// own (their sending node left) never delivers them to another receiver.
        copies: bool,
        /// Each message, MessagePack-encoded with field names.
        #[serde(borrow)]
        msgs: DataMsgs<'a>,
    },
    /// From a receiving node: receiver `to` took `taken` more of the messages the node this
    /// frame goes to sent it (that node lets go of them), and grants it `grant` more credit (it
    /// may have that many more messages on their way to the receiver).
    Credit {
        /// The receiving endpoint.
        to: EndpointId,
        /// Messages taken by the receiving application, in the order they were sent.
        taken: u32,
        /// New credit.
        grant: u32,
    },
    /// From a sending node: it has messages waiting for a receiver of `to`'s channel and no credit
    /// with `to`.
    Want {
        /// The receiving endpoint.
        to: EndpointId,
    },
    /// From a receiving node: another node wants credit with `to` and none is free: give back
    /// what is unused.
    Reclaim {
        /// The receiving endpoint.
        to: EndpointId,
    },
    /// From a sending node: `n` unused credits with `to` given back (the answer to a reclaim,
    /// or a leaving node's).
    Return {
        /// The receiving endpoint.
        to: EndpointId,
        /// The credits given back.
        n: u32,
        /// The sending node has handed over and is leaving: whatever it wanted of `to` it no
        /// longer does (a grant answering a want of before would be counted out to a node that
        /// has stopped, for as long as its departure is remembered).
        #[serde(default)]
        last: bool,
    },
    /// The sending node has handed over and stops: it sends nothing more, on any credit (every
    /// message it sent came before this). Its receivers' grants to it are void, those still on
    /// their way to it too.
    Bye {},
    /// The sending node applied the close of `channel`: no more data of it follows.
    Fence {
        /// The closed channel.
        channel: String,
        /// The endpoint id that created it (a later channel of the same name has another).
        created: u64,
    },
    /// From a receiving node: receiver `to` is gone and takes nothing more. Everything the node
    /// this frame goes to sent it and has not been told was taken (by a [`Frame::Credit`] before
    /// this one) is to go to another receiver; anything still on its way is dropped on arrival.
    Released {
        /// The receiver that is gone.
        to: EndpointId,
    },
    /// Unnamed channel `to` (see `Node::channel`) is closed. To its receiver's node, from a
    /// node that closed it or was asked to: nothing more of it follows from the sending node.
    /// From the receiver's node, to a node it granted credit: close it and answer with the
    /// same frame, behind everything sent before (the receiver ends once every answer is in).
    Shut {
        /// The unnamed channel's receiver.
        to: EndpointId,
        /// From the owner: close and answer. Otherwise: closed, nothing more follows.
        ask: bool,
    },
    /// Answers to reply handles of the node this frame goes to (see
    /// [`crate::link::replies`]), from whichever node held each: the handle's id and token
    /// there (an answer with another token is refused), and the answer, MessagePack-encoded
    /// (`None`: the handle was dropped unanswered). Coalesced: the answers queued for a peer
    /// when its writer runs travel in one frame.
    Answers {
        #[serde(borrow)]
        answers: Vec<(u64, u64, Option<&'a serde_bytes::Bytes>)>,
    },
    /// Reply handle `id` of the node this frame goes to is held by the sending node now: it
    /// decoded the handle from a message, `hop` messages away from the asking node. If the
    /// sending node leaves the cluster and no other node claims the handle within a grace
    /// period (a request redelivered elsewhere), the asker is told the handle is lost.
    Held {
        /// The handle's id on the asking node.
        id: u64,
        /// The handle's token: a claim with another is ignored.
        token: u64,
        /// How many messages the handle crossed to get here (a later claim of a handle passed
        /// on has a higher one; a redelivered copy the same).
        hop: u32,
        /// The asking node, when it is not the node this frame goes to: that node sent the
        /// message the handle came in, and passes the claim on to the asker (see
        /// `Peers::held`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        asker: Option<NodeId>,
        /// The node that holds the handle, when it is not the node this frame comes from (a
        /// claim passed on).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<NodeId>,
    },
}

/// The messages of a [`Frame::Data`], in the order sent, borrowed from the frame.
///
/// A frame as the outbox builds it ([`data_header`], then each message as a bin32) is read in
/// place, without serde ([`decode`]'s fast path: serde's visit of every message, and the list
/// it made per frame, cost about 110 instructions a message). Any other encoding of the same
/// frame (MessagePack has several) is read by serde into a list.
#[derive(Debug, Clone)]
pub(crate) enum DataMsgs<'a> {
    /// `count` messages, each `[0xc6, length (u32, big-endian), bytes]`, back to back in
    /// `body`: checked to be exactly that when decoded.
    Packed { count: u32, body: &'a [u8] },
    /// As serde decoded them.
    List(Vec<&'a [u8]>),
}

impl<'a> DataMsgs<'a> {
    /// How many messages the frame carries.
    pub(crate) fn len(&self) -> usize {
        match self {
            DataMsgs::Packed { count, .. } => *count as usize,
            DataMsgs::List(list) => list.len(),
        }
    }

    /// Each message, in order.
    pub(crate) fn iter(&self) -> MsgsIter<'a, '_> {
        match self {
            DataMsgs::Packed { count, body } => {
                MsgsIter { body, packed: *count as usize, list: [].iter() }
            }
            DataMsgs::List(list) => MsgsIter { body: &[], packed: 0, list: list.iter() },
        }
    }

    /// Each message, in order, as bytes of its own cut from `frame`, the bytes this was decoded
    /// from: by its offset, without the checks of `Bytes::slice_ref` that it lies within them
    /// (about 10 instructions a message on the receiver: issue 21).
    pub(crate) fn cut_from<'f>(
        &self,
        frame: &'f bytes::Bytes,
    ) -> impl ExactSizeIterator<Item = bytes::Bytes> + use<'a, '_, 'f> {
        let base = frame.as_ptr() as usize;
        self.iter().map(move |m| {
            // (An empty one need not point into the frame: empty bytes, as `slice_ref` made.)
            if m.is_empty() {
                return bytes::Bytes::new();
            }
            let at = (m.as_ptr() as usize).wrapping_sub(base);
            frame.slice(at..at.saturating_add(m.len()))
        })
    }
}

/// The messages of a [`DataMsgs`], in order (exactly as many as it says: see
/// [`Iterator::size_hint`]).
pub(crate) struct MsgsIter<'a, 'b> {
    /// Packed messages not read yet, and how many.
    body: &'a [u8],
    packed: usize,
    list: std::slice::Iter<'b, &'a [u8]>,
}

impl<'a> Iterator for MsgsIter<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.packed == 0 {
            return self.list.next().copied();
        }
        // Checked when decoded: a bin32 header, then as many bytes as it says.
        let (&[_, l0, l1, l2, l3], rest) = self.body.split_first_chunk::<5>()?;
        let (msg, rest) = rest.split_at_checked(u32::from_be_bytes([l0, l1, l2, l3]) as usize)?;
        self.body = rest;
        self.packed -= 1;
        Some(msg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.packed + self.list.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for MsgsIter<'_, '_> {}

impl Serialize for DataMsgs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(serde_bytes::Bytes::new))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for DataMsgs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list: Vec<&'de serde_bytes::Bytes> = Deserialize::deserialize(d)?;
        Ok(DataMsgs::List(list.into_iter().map(|b| &**b).collect()))
    }
}

/// Header of a data frame as the outbox builds it, up to the message count:
/// `[VERSION, {"Data": {"to": <u64>, "copies": <bool>, "msgs": [`. An array32 marker (0xdd)
/// and the count (u32) follow, then the messages, each a bin32.
pub(crate) const fn data_header(to: EndpointId, copies: bool) -> [u8; 34] {
    let t = to.to_be_bytes();
    let c = if copies { 0xc3 } else { 0xc2 };
    [
        0x92, VERSION, 0x81, 0xa4, b'D', b'a', b't', b'a', 0x83, 0xa2, b't', b'o', 0xcf, t[0],
        t[1], t[2], t[3], t[4], t[5], t[6], t[7], 0xa6, b'c', b'o', b'p', b'i', b'e', b's', c,
        0xa4, b'm', b's', b'g', b's',
    ]
}

/// A data frame as the outbox builds it, read in place; `None` for anything else, serde's to
/// read (or refuse) as before: another encoding of the frame, or one that does not add up.
/// Every message is checked here, so that [`DataMsgs::iter`] finds them.
fn packed_data(buf: &[u8]) -> Option<Frame<'_>> {
    let header = data_header(0, false);
    let (head, rest) = buf.split_at_checked(header.len())?;
    // The receiver's id (13..21) and the copies flag (28) vary; the rest is fixed.
    let fixed = |r: std::ops::Range<usize>| head[r.clone()] == header[r];
    if !(fixed(0..13) && fixed(21..28) && fixed(29..34)) {
        return None;
    }
    let copies = match head[28] {
        0xc2 => false,
        0xc3 => true,
        _ => return None,
    };
    let to = u64::from_be_bytes(head[13..21].try_into().ok()?);
    let (&[0xdd, c0, c1, c2, c3], body) = rest.split_first_chunk::<5>()? else { return None };
    let count = u32::from_be_bytes([c0, c1, c2, c3]);
    let mut left = body;
    for _ in 0..count {
        let (&[0xc6, l0, l1, l2, l3], rest) = left.split_first_chunk::<5>()? else { return None };
        left = rest.get(u32::from_be_bytes([l0, l1, l2, l3]) as usize..)?;
    }
    left.is_empty().then_some(Frame::Data { to, copies, msgs: DataMsgs::Packed { count, body } })
}

/// A claim of a reply handle queued for a peer ([`Frame::Held`]):
/// this node holds it (`asker` `None`: the peer asked), or passes on another node's claim.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    pub(crate) id: u64,
    pub(crate) token: u64,
    pub(crate) hop: u32,
    /// The asking node, if not the peer (the peer passes the claim on to it).
    pub(crate) asker: Option<NodeId>,
    /// The holder, if not this node (a claim passed on).
    pub(crate) holder: Option<NodeId>,
}

impl Claim {
    pub(crate) fn frame(&self) -> bytes::Bytes {
        let Claim { id, token, hop, asker, holder } = *self;
        encode(&Frame::Held { id, token, hop, asker, holder })
    }
}

impl Frame<'_> {
    /// Whether the frame is numbered and resent until acknowledged (everything but the link's
    /// own frames and Raft's traffic, which Raft retries by itself).
    pub(crate) fn is_reliable(&self) -> bool {
        match self {
            Frame::Hello { .. }
            | Frame::Challenge { .. }
            | Frame::Proof { .. }
            | Frame::Welcome { .. }
            | Frame::Refused { .. }
            | Frame::Resume { .. }
            | Frame::Received { .. } => false,
            Frame::Request { body, .. } => body.is_reliable(),
            Frame::Response { body, .. } => body.is_reliable(),
            Frame::Data { .. }
            | Frame::Credit { .. }
            | Frame::Want { .. }
            | Frame::Reclaim { .. }
            | Frame::Return { .. }
            | Frame::Bye { .. }
            | Frame::Fence { .. }
            | Frame::Released { .. }
            | Frame::Shut { .. }
            | Frame::Answers { .. }
            | Frame::Held { .. } => true,
        }
    }
}

/// Why a received frame was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("peer speaks protocol version {0}, this node speaks {VERSION}")]
    Version(u8),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encode a control frame (everything but data, which [`crate::link::outbox`] builds in place).
pub(crate) fn encode(frame: &Frame<'_>) -> bytes::Bytes {
    if let Some(fixed) = control::write(frame) {
        return fixed;
    }
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail, and every frame type serializes.
    if let Err(e) = rmp_serde::encode::write_named(&mut out, &(VERSION, frame)) {
        tracing::error!(error = %e, "could not encode a control frame");
    }
    out.into()
}

/// Decode one frame, borrowing payloads from `buf`.
pub(crate) fn decode(buf: &[u8]) -> Result<Frame<'_>, FrameError> {
    // [0x92, version, ...]: a two-element array whose first element is a positive fixint.
    match buf {
        [0x92, v, ..] if *v == VERSION => {}
        [0x92, v, ..] if *v < 0x80 => return Err(FrameError::Version(*v)),
        _ => return Err(FrameError::Malformed("not a versioned envelope".into())),
    }
    if let Some(frame) = packed_data(buf) {
        return Ok(frame);
    }
    if let Some(frame) = control::read(buf) {
        return Ok(frame);
    }
    let (_, frame): (u8, Frame<'_>) =
        rmp_serde::from_slice(buf).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(frame)
}

/// What the fuzz target checks of any input (see `fuzz/`): decoding never panics, and a frame
/// decoded from it decodes the same from its own encoding (a data frame: the same messages).
pub(crate) fn fuzz_decode(bytes: &[u8]) {
    if let Ok(frame) = decode(bytes) {
        if let Frame::Data { to, copies, msgs } = &frame {
            assert_eq!(msgs.iter().count(), msgs.len(), "a data frame's count");
            let again = encode(&frame);
            let Ok(Frame::Data { to: t, copies: c, msgs: back }) = decode(&again) else {
                panic!("a data frame's own encoding decodes");
            };
            assert!(
                (t, c) == (*to, *copies) && back.iter().eq(msgs.iter()),
                "decoded unfaithfully"
            );
        } else {
            let again = encode(&frame);
            let back = decode(&again).expect("a frame's own encoding decodes");
            assert_eq!(format!("{frame:?}"), format!("{back:?}"), "decoded unfaithfully");
        }
    }
}

#[cfg(test)]
mod tests;
