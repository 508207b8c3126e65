//! The outbox: everything one node has to say to one peer, batched into frames.
//!
//! A [`Sender`](crate::Sender) that picks a remote receiver encodes the message straight into the
//! open [`Frame::Data`](crate::link::wire::Frame::Data) of that peer's outbox: consecutive messages for
//! the same receiver share one frame, and no allocation is made per message. The peer's writer
//! task ([`crate::link::connection`]) takes everything queued at once, feeds it to the socket and flushes
//! only when the outbox has run dry, so many messages share one syscall.
//!
//! Every data frame is also kept, per receiver, until the receiver says its messages were taken
//! ([`Outbox::release`]); what is left when a receiver goes away comes back with
//! [`Outbox::take_kept`], to be delivered elsewhere. Every frame but Raft's own is numbered and
//! kept until the peer acknowledges it, so that a new connection resends what a broken one lost
//! ([`Outbox::resume`]).
//!
//! Credit for a sending node is coalesced per receiver and is *lazy*: a small grant does not wake
//! the writer but rides along with the next frame going to that peer (in a request/reply
//! exchange, with the reply), or goes out on its own after [`LAZY_ACK_DELAY`]. Credit a node
//! waits for, or a whole batch of it, is sent at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio::sync::{watch, Notify};

use crate::ids::EndpointId;
use crate::link::wire::{Frame, VERSION};

/// The longest a lazy ack waits for a frame to ride along with.
pub(crate) const LAZY_ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// The most bytes of control frames queued for one peer and not yet written before its
/// requests stop being read (see [`Outbox::room_for_answers`]).
pub(crate) const MAX_CONTROL_BACKLOG: usize = 16 * 1024 * 1024;

/// The most bytes of reliable frames written to one peer and not yet acknowledged by it: past
/// this, the writer sends only the link's and Raft's own frames until the peer acknowledges
/// (a peer that never acknowledges cannot make this node keep everything it sent).
pub(crate) const MAX_UNACKED: usize = 64 * 1024 * 1024;

/// A data frame is closed once it holds this many bytes, so a batch never grows without bound.
const DATA_FRAME_TARGET: usize = 64 * 1024;

/// Header of a data frame up to the message count: `[1, {"Data": {"to": <u64>, "msgs": [`.
const fn data_header(to: EndpointId) -> [u8; 25] {
    let t = to.to_be_bytes();
    [
        0x92, VERSION, 0x81, 0xa4, b'D', b'a', b't', b'a', 0x82, 0xa2, b't', b'o', 0xcf, t[0],
        t[1], t[2], t[3], t[4], t[5], t[6], t[7], 0xa4, b'm', b's', b'g',
    ]
}

/// Why a message was not queued.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The channel was closed before the message got in.
    Closed,
    /// The message could not be encoded.
    Encode(rmp_serde::encode::Error),
    /// The encoded message does not fit in a frame: it would close the connection it went on.
    TooLarge {
        /// The frame it needs.
        size: usize,
        /// The largest frame allowed.
        max: usize,
    },
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Closed => f.write_str("channel closed"),
            PushError::Encode(e) => write!(f, "message cannot be encoded: {e}"),
            PushError::TooLarge { size, max } => {
                write!(f, "message needs a {size}-byte frame, over the maximum of {max}")
            }
        }
    }
}

/// Frames queued for one peer.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// The largest frame the connection may carry: the smaller of this node's limit and the
    /// peer's (learned in the handshake); no message is queued that would exceed it.
    max_frame: AtomicUsize,
    /// Names this node's stream of reliable frames to the peer (random, per outbox): a peer that
    /// knows another stream has not seen any frame of this one.
    stream: u64,
    inner: Mutex<Inner>,
    /// Wakes the writer when something urgent is queued.
    ready: Notify,
    /// Wakes the writer's delayed flush when lazy acks are queued.
    lazy: Notify,
    /// Wakes readers waiting in [`Outbox::room_for_answers`] when a writer took the queue.
    drained: Notify,
    /// Bytes of control frames (answers, credit, Raft's traffic) queued and not yet taken by a
    /// writer: changed under the lock, read without it by every frame a reader takes in (see
    /// [`Outbox::room_for_answers`]).
    control_bytes: AtomicUsize,
    /// How many reliable frames the peer has acknowledged: see [`Outbox::flushed`].
    acked: watch::Sender<u64>,
}

impl Outbox {
    pub(crate) fn new(max_frame: usize) -> Self {
        Outbox {
            max_frame: AtomicUsize::new(max_frame),
            stream: crate::clock::random_u64(),
            inner: Mutex::default(),
            ready: Notify::new(),
            lazy: Notify::new(),
            drained: Notify::new(),
            control_bytes: AtomicUsize::new(0),
            acked: watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Finished frames, oldest first, each marked reliable (numbered, kept until the peer has it)
    /// or not (Raft's own traffic, which Raft retries: dropped when the link breaks).
    frames: VecDeque<(Bytes, bool)>,
    /// The reliable frames taken by a writer and not yet acknowledged by the peer, oldest first:
    /// what a new connection resends.
    sent: VecDeque<Bytes>,
    /// The number of the first frame in `sent`.
    first_sent: u64,
    /// Bytes in `sent`: at most about [`MAX_UNACKED`].
    sent_bytes: usize,
    /// The number the next reliable frame taken gets.
    next_seq: u64,
    /// How many of the peer's reliable frames (of which stream of the peer's) this node has
    /// taken in: told to the peer (lazily), so that it can let go of them.
    received: Option<(u64, u64)>,
    /// The data frames being filled, one per receiver that has messages queued: messages for
    /// several receivers on one node, interleaved, still travel many to a frame.
    open: Vec<Open>,
    /// Per receiver: messages taken and credit granted, not yet put in a frame.
    acks: Vec<(EndpointId, u32, u32)>,
    /// Per remote receiver: the data frames sent to it, kept until it has taken every message in
    /// them, so that what it had not taken can go to another receiver if it goes away.
    kept: HashMap<EndpointId, VecDeque<Kept>>,
    /// Something that must go out now is queued (the writer has been or is being woken).
    urgent: bool,
    /// Lazy acks are queued and the writer's delayed flush has been armed.
    lazy_armed: bool,
}

/// A data frame kept for its receiver until every message in it is taken.
#[derive(Debug)]
struct Kept {
    frame: Bytes,
    /// Messages in the frame.
    count: u32,
    /// Messages at its front already taken.
    taken: u32,
    /// The frame holds broadcast copies: they are not delivered elsewhere.
    broadcast: bool,
}

/// A data frame being filled for one receiver.
#[derive(Debug)]
struct Open {
    to: EndpointId,
    /// It carries broadcast copies (a frame holds one kind or the other).
    broadcast: bool,
    buf: BytesMut,
    /// Where the 4-byte message count sits in `buf`.
    count_at: usize,
    count: u32,
}

impl Open {
    fn new(to: EndpointId, broadcast: bool) -> Self {
        let mut buf = BytesMut::with_capacity(1024);
        buf.put_slice(&data_header(to));
        buf.put_u8(b's');
        buf.put_u8(0xdd); // array32: the count is patched as messages are added
        let count_at = buf.len();
        buf.put_u32(0);
        Open { to, broadcast, buf, count_at, count: 0 }
    }
}

impl Inner {
    /// Number a reliable frame and keep it until the peer acknowledges it.
    fn keep_sent(&mut self, frame: Bytes) {
        self.sent_bytes += frame.len();
        self.sent.push_back(frame);
        self.next_seq += 1;
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.open.is_empty() && self.acks.is_empty()
    }

    /// Queue every frame being filled, in the order they were opened.
    fn finish_open(&mut self) {
        for open in std::mem::take(&mut self.open) {
            self.queue_data(open);
        }
    }

    /// Queue a finished data frame, and keep it for its receiver.
    fn queue_data(&mut self, open: Open) {
        let frame = open.buf.freeze();
        let kept =
            Kept { frame: frame.clone(), count: open.count, taken: 0, broadcast: open.broadcast };
        self.kept.entry(open.to).or_default().push_back(kept);
        self.frames.push_back((frame, true));
    }

    /// The index of the frame being filled for `to` with messages of kind `broadcast`, opening
    /// one if needed (a full one, or one of the other kind, is queued first: messages for one
    /// receiver stay in order).
    fn open_for(&mut self, to: EndpointId, broadcast: bool) -> usize {
        match self.open.iter().position(|o| o.to == to) {
            Some(i)
                if self.open[i].buf.len() < DATA_FRAME_TARGET
                    && self.open[i].broadcast == broadcast =>
            {
                i
            }
            Some(i) => {
                let done = std::mem::replace(&mut self.open[i], Open::new(to, broadcast));
                self.queue_data(done);
                i
            }
            None => {
                self.open.push(Open::new(to, broadcast));
                self.open.len() - 1
            }
        }
    }

    /// Append one message to `to`'s frame, written by `write` after a bin32 header. A message
    /// that would take the frame over `max` starts a frame of its own; one that is too large even
    /// alone is refused, leaving everything as it was.
    fn append(
        &mut self,
        to: EndpointId,
        broadcast: bool,
        max: usize,
        write: impl Fn(&mut BytesMut) -> Result<(), PushError>,
    ) -> Result<(), PushError> {
        loop {
            let i = self.open_for(to, broadcast);
            let open = &mut self.open[i];
            let mark = open.buf.len();
            open.buf.put_u8(0xc6);
            open.buf.put_u32(0);
            let written = write(&mut open.buf);
            let size = open.buf.len();
            let refused = match written {
                Ok(()) if size <= max => {
                    let len = (size - mark - 5) as u32;
                    open.buf[mark + 1..mark + 5].copy_from_slice(&len.to_be_bytes());
                    open.count += 1;
                    let at = open.count_at;
                    let count = open.count;
                    open.buf[at..at + 4].copy_from_slice(&count.to_be_bytes());
                    return Ok(());
                }
                Ok(()) if open.count > 0 => {
                    // Too much for this frame: queue it with what it has, and go again.
                    open.buf.truncate(mark);
                    let full = std::mem::replace(open, Open::new(to, broadcast));
                    self.queue_data(full);
                    continue;
                }
                Ok(()) => PushError::TooLarge { size, max },
                Err(e) => e,
            };
            open.buf.truncate(mark);
            // A frame opened for this message alone goes too: an empty outbox must stay empty,
            // or the writer would not be woken by the next push.
            if open.count == 0 {
                self.open.swap_remove(i);
            }
            return Err(refused);
        }
    }
}

impl Outbox {
    /// Encode `msg` for receiver `to`, unless `closed` is set. `closed` is read under the outbox
    /// lock, and [`Outbox::push_frame`] of a fence takes the same lock after the flag is set, so
    /// no message can slip in behind a channel's fence.
    pub(crate) fn push_data<T: Serialize>(
        &self,
        to: EndpointId,
        msg: &T,
        closed: &AtomicBool,
    ) -> Result<(), PushError> {
        let max = self.max_frame();
        self.push(closed, |inner| {
            inner.append(to, false, max, |buf| {
                rmp_serde::encode::write_named(&mut buf.writer(), msg).map_err(PushError::Encode)
            })
        })
    }

    /// Queue an already encoded message for receiver `to`: a `broadcast` copy, or a message
    /// delivered again.
    pub(crate) fn push_encoded(
        &self,
        to: EndpointId,
        msg: &[u8],
        broadcast: bool,
        closed: &AtomicBool,
    ) -> Result<(), PushError> {
        let max = self.max_frame();
        self.push(closed, |inner| {
            inner.append(to, broadcast, max, |buf| {
                buf.put_slice(msg);
                Ok(())
            })
        })
    }

    /// The largest frame the peer takes.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.load(Ordering::Relaxed)
    }

    /// The peer takes frames up to `max` bytes (its hello said so): never queue larger ones.
    pub(crate) fn limit_frames(&self, max: usize) {
        self.max_frame.fetch_min(max, Ordering::Relaxed);
    }

    /// Queue a control frame behind everything queued so far: `reliable` ones are numbered and
    /// resent after a reconnect until the peer has them; the others (Raft's own traffic, which
    /// Raft retries) are dropped if the link breaks first.
    pub(crate) fn push_frame(&self, frame: Bytes, reliable: bool) {
        static OPEN: AtomicBool = AtomicBool::new(false);
        if frame.len() > self.max_frame() {
            // It would break the connection for everything queued behind it.
            tracing::error!(
                size = frame.len(),
                max = self.max_frame(),
                "control frame too large, dropped"
            );
            return;
        }
        let len = frame.len();
        let _ = self.push(&OPEN, |inner| {
            inner.finish_open();
            inner.frames.push_back((frame, reliable));
            self.control_bytes.fetch_add(len, Ordering::Relaxed);
            Ok(())
        });
    }

    /// Wait until the control frames queued for this peer and not yet written are under
    /// [`MAX_CONTROL_BACKLOG`] bytes. A connection's reader waits here before it takes in the
    /// peer's next request: a peer that asks and never reads the answers stops being read,
    /// rather than growing this queue.
    pub(crate) async fn room_for_answers(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.control_bytes.load(Ordering::Relaxed) < MAX_CONTROL_BACKLOG {
                return;
            }
            drained.await;
        }
    }

    /// Run `add` under the lock unless `closed`, and wake the writer if the outbox was empty.
    fn push(
        &self,
        closed: &AtomicBool,
        add: impl FnOnce(&mut Inner) -> Result<(), PushError>,
    ) -> Result<(), PushError> {
        let mut inner = self.lock();
        if closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        let added = add(&mut inner);
        // A failed `add` leaves no trace (see `Inner::append`): nothing to wake the writer for.
        let wake = added.is_ok() && !std::mem::replace(&mut inner.urgent, added.is_ok());
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
        added
    }

    /// Tell the sending node that receiver `to` took `taken` more of its messages and grants it
    /// `grant` more credit. Coalesced per receiver; sent at once if `urgent` (the node waits
    /// for it) or `urgent_at` messages were taken or granted, otherwise with the next frame or
    /// after [`LAZY_ACK_DELAY`].
    pub(crate) fn push_credit(
        &self,
        to: EndpointId,
        taken: u32,
        grant: u32,
        urgent: bool,
        urgent_at: u32,
    ) {
        if taken == 0 && grant == 0 {
            return;
        }
        let mut inner = self.lock();
        let (t, g) = match inner.acks.iter_mut().find(|(id, _, _)| *id == to) {
            Some((_, t, g)) => {
                *t += taken;
                *g += grant;
                (*t, *g)
            }
            None => {
                inner.acks.push((to, taken, grant));
                (taken, grant)
            }
        };
        let (wake, arm) = if urgent || g >= urgent_at || t >= urgent_at {
            (!std::mem::replace(&mut inner.urgent, true), false)
        } else {
            (false, !inner.urgent && !std::mem::replace(&mut inner.lazy_armed, true))
        };
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
        if arm {
            self.lazy.notify_one();
        }
    }

    /// Receiver `to` took `n` more of the messages sent to it: let go of them.
    pub(crate) fn release(&self, to: EndpointId, mut n: u32) {
        let mut inner = self.lock();
        let Some(kept) = inner.kept.get_mut(&to) else { return };
        while n > 0 {
            let Some(front) = kept.front_mut() else { break };
            let step = n.min(front.count - front.taken);
            front.taken += step;
            n -= step;
            if front.taken == front.count {
                kept.pop_front();
            }
        }
        if kept.is_empty() {
            inner.kept.remove(&to);
        }
    }

    /// How many messages sent to receiver `to` it has not taken yet.
    pub(crate) fn kept_count(&self, to: EndpointId) -> u64 {
        let inner = self.lock();
        let kept: u64 =
            inner.kept.get(&to).map_or(0, |k| k.iter().map(|k| u64::from(k.count - k.taken)).sum());
        kept + inner.open.iter().filter(|o| o.to == to).map(|o| u64::from(o.count)).sum::<u64>()
    }

    /// Receiver `to` is gone: every message sent to it and not taken, oldest first (broadcast
    /// copies left out: they were for it alone). Nothing is kept for it any more. `counted` is
    /// told how many, under the lock [`Outbox::kept_count`] takes: whoever counts what is kept
    /// and then what `counted` counted never misses them in between.
    pub(crate) fn take_kept(&self, to: EndpointId, counted: impl FnOnce(usize)) -> Vec<Bytes> {
        let kept = {
            let mut inner = self.lock();
            inner.finish_open();
            let kept = inner.kept.remove(&to).unwrap_or_default();
            counted(
                kept.iter().filter(|k| !k.broadcast).map(|k| (k.count - k.taken) as usize).sum(),
            );
            kept
        };
        let mut msgs = Vec::new();
        for k in kept.into_iter().filter(|k| !k.broadcast) {
            match crate::link::wire::decode(&k.frame) {
                Ok(Frame::Data { msgs: all, .. }) => {
                    msgs.extend(all.iter().skip(k.taken as usize).map(|m| k.frame.slice_ref(m)));
                }
                _ => tracing::error!(receiver = to, "a kept data frame does not decode"),
            }
        }
        msgs
    }

    /// This node has taken in `count` of the peer's reliable frames of its stream `stream`:
    /// said lazily, with the next frame or after [`LAZY_ACK_DELAY`].
    pub(crate) fn push_received(&self, stream: u64, count: u64) {
        let mut inner = self.lock();
        inner.received = Some((stream, count));
        let arm = !inner.urgent && !std::mem::replace(&mut inner.lazy_armed, true);
        drop(inner);
        if arm {
            self.lazy.notify_one();
        }
    }

    /// Take every queued frame, oldest first, into `into`; the reliable ones are numbered and
    /// kept until the peer acknowledges them.
    pub(crate) fn take(&self, into: &mut Vec<Bytes>) {
        let mut inner = self.lock();
        inner.finish_open();
        if let Some((stream, count)) = inner.received.take() {
            let frame = Frame::Received { stream, count };
            into.push(crate::link::wire::encode(&frame));
        }
        if inner.sent_bytes >= MAX_UNACKED {
            // The peer has not acknowledged enough: only what is not kept goes (Raft's own
            // frames, and the acknowledgements above, which the peer may be waiting for).
            let queued = std::mem::take(&mut inner.frames);
            let (unreliable, held): (VecDeque<_>, VecDeque<_>) =
                queued.into_iter().partition(|(_, reliable)| !*reliable);
            into.extend(unreliable.into_iter().map(|(f, _)| f));
            self.control_bytes.store(held.iter().map(|(f, _)| f.len()).sum(), Ordering::Relaxed);
            inner.frames = held;
            inner.urgent = false;
            inner.lazy_armed = false;
            return;
        }
        let acks = std::mem::take(&mut inner.acks);
        for (to, taken, grant) in acks {
            let frame = crate::link::wire::encode(&Frame::Credit { to, taken, grant });
            inner.keep_sent(frame.clone());
            into.push(frame);
        }
        while let Some((frame, reliable)) = inner.frames.pop_front() {
            if reliable {
                inner.keep_sent(frame.clone());
            }
            into.push(frame);
        }
        inner.urgent = false;
        inner.lazy_armed = false;
        let had = self.control_bytes.swap(0, Ordering::Relaxed);
        drop(inner);
        if had >= MAX_CONTROL_BACKLOG {
            self.drained.notify_waiters();
        }
    }

    /// The peer has taken in the first `count` reliable frames of `stream`: let them go.
    pub(crate) fn acknowledged(&self, stream: u64, count: u64) {
        if stream != self.stream {
            return;
        }
        let mut inner = self.lock();
        let count = count.min(inner.next_seq);
        let was_full = inner.sent_bytes >= MAX_UNACKED;
        while inner.first_sent < count {
            let Some(frame) = inner.sent.pop_front() else { break };
            inner.sent_bytes -= frame.len();
            inner.first_sent += 1;
        }
        // Room again: the writer goes on with what it held back.
        let resume = was_full && inner.sent_bytes < MAX_UNACKED;
        if resume {
            inner.urgent = true;
        }
        drop(inner);
        if resume {
            self.ready.notify_one();
        }
        self.acked.send_if_modified(|a| {
            let newer = count > *a;
            if newer {
                *a = count;
            }
            newer
        });
    }

    /// A new connection is to write this outbox: the peer's hello said it has taken in `count`
    /// reliable frames of `stream` (`None`: nothing of it). Returns the frames to write before
    /// anything else: a [`Frame::Resume`] saying where the numbering goes on, then every
    /// reliable frame the peer may not have. Queued unreliable frames are kept.
    pub(crate) fn resume(&self, received: Option<(u64, u64)>) -> Vec<Bytes> {
        if let Some((stream, count)) = received {
            self.acknowledged(stream, count);
        }
        let inner = self.lock();
        let from = inner.first_sent;
        let mut frames = Vec::with_capacity(inner.sent.len() + 1);
        frames.push(crate::link::wire::encode(&Frame::Resume { stream: self.stream, from }));
        frames.extend(inner.sent.iter().cloned());
        frames
    }

    /// The link broke before a new connection could be made: drop the unreliable frames queued
    /// (Raft retries its own), keep the rest. Returns how many were dropped.
    pub(crate) fn drop_unreliable(&self) -> usize {
        let mut inner = self.lock();
        inner.finish_open();
        let before = inner.frames.len();
        inner.frames.retain(|(_, reliable)| *reliable);
        let left: usize = inner.frames.iter().map(|(f, _)| f.len()).sum();
        self.control_bytes.fetch_min(left, Ordering::Relaxed);
        before - inner.frames.len()
    }

    /// Whether a link is needed: something is queued, or sent and not yet acknowledged.
    pub(crate) fn has_work(&self) -> bool {
        let inner = self.lock();
        inner.urgent
            || !inner.sent.is_empty()
            || !inner.frames.is_empty()
            || !inner.open.is_empty()
            || !inner.acks.is_empty()
    }

    /// Wait until every reliable frame pushed before this call has been acknowledged by the peer.
    /// Used by shutdown (under its own timeout), so that it loses nothing queued.
    pub(crate) async fn flushed(&self) {
        let target = {
            let mut inner = self.lock();
            inner.finish_open();
            let queued = inner.frames.iter().filter(|(_, reliable)| *reliable).count();
            inner.next_seq + (queued + inner.acks.len()) as u64
        };
        let mut acked = self.acked.subscribe();
        let _ = acked.wait_for(|a| *a >= target).await;
    }

    /// Wake whoever waits in [`Outbox::ready`] (a wake-up that went to the wrong waiter).
    pub(crate) fn kick(&self) {
        self.ready.notify_one();
    }

    /// Wait until a link is needed (see [`Outbox::has_work`]).
    pub(crate) async fn wanted(&self) {
        while !self.has_work() {
            tokio::select! {
                _ = self.ready() => {}
                _ = self.lazy_due() => {}
            }
        }
    }

    /// Wait until something that must go out now is queued (at once if something already is).
    pub(crate) async fn ready(&self) {
        if self.lock().urgent {
            return;
        }
        self.ready.notified().await
    }

    /// Wait until lazy acks have waited [`LAZY_ACK_DELAY`] for a frame to ride along with.
    pub(crate) async fn lazy_due(&self) {
        self.lazy.notified().await;
        tokio::time::sleep(LAZY_ACK_DELAY).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::wire::{decode, Frame};

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Job {
        id: u64,
        name: String,
    }

    #[test]
    fn consecutive_messages_share_a_frame_that_serde_decodes() {
        let out = Outbox::new(crate::link::wire::DEFAULT_MAX_FRAME);
        let open = AtomicBool::new(false);
        for id in 0..3 {
            out.push_data(9, &Job { id, name: "x".into() }, &open).unwrap();
        }
        out.push_encoded(4, b"\xc0", false, &open).unwrap();
        out.push_frame(crate::link::wire::encode(&Frame::Released { to: 1 }), true);
        let mut frames = Vec::new();
        out.take(&mut frames);
        assert_eq!(frames.len(), 3);
        let Frame::Data { to, msgs } = decode(&frames[0]).unwrap() else { panic!("not data") };
        assert_eq!(to, 9);
        let jobs: Vec<Job> = msgs.iter().map(|m| rmp_serde::from_slice(m).unwrap()).collect();
        assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(
            matches!(decode(&frames[1]), Ok(Frame::Data { to: 4, ref msgs }) if msgs.len() == 1)
        );
        assert!(matches!(decode(&frames[2]), Ok(Frame::Released { to: 1 })));
    }

    struct Unencodable;

    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }

    #[test]
    fn a_message_that_fails_to_encode_leaves_no_trace() {
        let out = Outbox::new(crate::link::wire::DEFAULT_MAX_FRAME);
        let open = AtomicBool::new(false);
        assert!(matches!(out.push_data(1, &Unencodable, &open), Err(PushError::Encode(_))));
        assert!(
            out.lock().is_empty(),
            "an empty outbox stays empty, so the next push wakes the writer"
        );
        out.push_data(1, &5u8, &open).unwrap();
        assert!(matches!(out.push_data(1, &Unencodable, &open), Err(PushError::Encode(_))));
        out.push_data(1, &6u8, &open).unwrap();
        let mut frames = Vec::new();
        out.take(&mut frames);
        let Frame::Data { msgs, .. } = decode(&frames[0]).unwrap() else { panic!("not data") };
        let got: Vec<u8> = msgs.iter().map(|m| rmp_serde::from_slice(m).unwrap()).collect();
        assert_eq!(got, [5, 6]);
    }

    #[test]
    fn frames_stay_under_the_maximum_and_a_message_too_large_for_any_is_refused() {
        let out = Outbox::new(200);
        let open = AtomicBool::new(false);
        for _ in 0..4 {
            out.push_encoded(1, &[0xc0; 60], false, &open).unwrap();
        }
        let err = out.push_encoded(1, &[0xc0; 300], false, &open).unwrap_err();
        assert!(matches!(err, PushError::TooLarge { max: 200, .. }), "{err}");
        let mut frames = Vec::new();
        out.take(&mut frames);
        assert!(frames.iter().all(|f| f.len() <= 200), "a frame over the maximum");
        let total: usize = frames
            .iter()
            .map(|f| match decode(f).unwrap() {
                Frame::Data { msgs, .. } => msgs.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 4, "the refused message took nothing else with it");
    }

    #[test]
    fn interleaved_receivers_each_get_one_frame_in_order() {
        let out = Outbox::new(crate::link::wire::DEFAULT_MAX_FRAME);
        let open = AtomicBool::new(false);
        for i in 0..10u8 {
            out.push_data(1 + u64::from(i % 2), &i, &open).unwrap();
        }
        let mut frames = Vec::new();
        out.take(&mut frames);
        assert_eq!(frames.len(), 2, "one frame per receiver, not one per message");
        for f in &frames {
            let Frame::Data { to, msgs } = decode(f).unwrap() else { panic!("not data") };
            let got: Vec<u8> = msgs.iter().map(|m| rmp_serde::from_slice(m).unwrap()).collect();
            let want: Vec<u8> = (0..10).filter(|i| 1 + u64::from(i % 2) == to).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_new_connection_resends_what_the_peer_has_not_acknowledged() {
        let out = Outbox::new(crate::link::wire::DEFAULT_MAX_FRAME);
        let open = AtomicBool::new(false);
        let mut frames = Vec::new();
        for i in 0..3u8 {
            out.push_data(1, &i, &open).unwrap();
            out.push_frame(crate::link::wire::encode(&Frame::Want { to: 9 }), false);
            out.take(&mut frames);
        }
        assert_eq!(frames.len(), 6, "three data frames, three unreliable ones");
        frames.clear();
        // The peer has the first frame of this stream: the other two are resent, numbered on.
        let again = out.resume(Some((out.stream, 1)));
        assert!(matches!(decode(&again[0]), Ok(Frame::Resume { from: 1, .. })));
        assert_eq!(again.len(), 3);
        let Frame::Data { msgs, .. } = decode(&again[1]).unwrap() else { panic!("not data") };
        assert_eq!(rmp_serde::from_slice::<u8>(msgs[0]).unwrap(), 1);
        // A peer that knows another stream of this node's gets everything kept.
        assert_eq!(out.resume(Some((out.stream ^ 1, 3))).len(), 3);
        out.acknowledged(out.stream, 3);
        assert_eq!(out.resume(None).len(), 1, "acknowledged frames are let go");
        assert!(!out.has_work());
    }

    #[test]
    fn data_frames_are_kept_until_taken_and_what_is_left_comes_back_in_order() {
        let out = Outbox::new(crate::link::wire::DEFAULT_MAX_FRAME);
        let open = AtomicBool::new(false);
        let mut frames = Vec::new();
        for i in 0..3u64 {
            out.push_data(1, &i, &open).unwrap();
        }
        out.take(&mut frames);
        out.push_encoded(1, &rmp_serde::to_vec(&100u64).unwrap(), true, &open).unwrap();
        for i in 3..5u64 {
            out.push_data(1, &i, &open).unwrap();
        }
        out.push_data(2, &9u64, &open).unwrap();
        out.release(1, 2);
        let left: Vec<u64> = out
            .take_kept(1, |n| assert_eq!(n, 3))
            .iter()
            .map(|m| rmp_serde::from_slice(m).unwrap())
            .collect();
        assert_eq!(left, [2, 3, 4], "the broadcast copy stays with the receiver it was for");
        assert!(out.take_kept(1, |n| assert_eq!(n, 0)).is_empty());
        assert_eq!(out.take_kept(2, |_| ()).len(), 1);
    }

    #[test]
    fn nothing_gets_in_once_closed() {
        let out = Outbox::new(crate::link::wire::DEFAULT_MAX_FRAME);
        let closed = AtomicBool::new(true);
        assert!(matches!(out.push_data(1, &1u8, &closed), Err(PushError::Closed)));
        let mut frames = Vec::new();
        out.take(&mut frames);
        assert!(frames.is_empty());
    }

    #[test]
    fn a_peer_that_does_not_read_its_answers_stops_being_read() {
        use futures::FutureExt;
        let out = Outbox::new(crate::link::wire::DEFAULT_MAX_FRAME);
        let answer = Bytes::from(vec![0u8; 1024 * 1024]);
        for _ in 0..MAX_CONTROL_BACKLOG / answer.len() - 1 {
            out.push_frame(answer.clone(), false);
        }
        assert!(out.room_for_answers().now_or_never().is_some(), "under the limit");
        out.push_frame(answer.clone(), true);
        let mut waiting = Box::pin(out.room_for_answers());
        assert!(waiting.as_mut().now_or_never().is_none(), "at the limit: the reader waits");
        let mut frames = Vec::new();
        out.take(&mut frames);
        assert!(waiting.now_or_never().is_some(), "written: room again");
    }

    #[test]
    fn a_peer_that_does_not_acknowledge_gets_only_unkept_frames_until_it_does() {
        let out = Outbox::new(crate::link::wire::DEFAULT_MAX_FRAME);
        let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
        let mut frames = Vec::new();
        for _ in 0..MAX_UNACKED / chunk.len() {
            out.push_frame(chunk.clone(), true);
        }
        out.take(&mut frames);
        assert_eq!(frames.len(), MAX_UNACKED / chunk.len());
        frames.clear();
        out.push_frame(Bytes::from_static(b"kept"), true);
        out.push_frame(Bytes::from_static(b"raft"), false);
        out.push_received(5, 1);
        out.take(&mut frames);
        assert_eq!(frames.len(), 2, "the acknowledgement and Raft's frame, not the kept one");
        assert_eq!(frames[1], Bytes::from_static(b"raft"));
        frames.clear();
        out.acknowledged(out.stream, 1);
        assert!(out.lock().urgent, "the writer is woken");
        out.take(&mut frames);
        assert_eq!(frames, [Bytes::from_static(b"kept")], "held back, not lost, in order");
    }
}
