//! The numbered stream: every reliable frame taken by a writer gets the next number and is kept
//! until the peer acknowledges it ([`Frame::Received`]), so that a new connection resends what a
//! broken one lost ([`Outbox::resume`]); frames the peer already has are skipped by its
//! numbering. A peer that never acknowledges holds at most [`MAX_UNACKED`] bytes here. The two
//! control frames of every stream (credit, received) are cut here from one shared buffer.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Inner, Outbox, MAX_CONTROL_BACKLOG, MAX_UNACKED};
use crate::link::wire::Frame;

/// The room given at a time to the buffer control frames are cut from: about 90 frames.
const CONTROL_ROOM: usize = 4096;

impl Inner {
    /// `frame`, a credit or received frame, cut from one buffer many share: each frame a
    /// reference to it, where one of its own took two allocations (its bytes, and their
    /// share count once a clone was kept to resend; a round trip writes two). When its room
    /// runs out, the buffer is used again if every frame cut from it is gone (acknowledged by
    /// the peer), else a new one is made: in a stream of round trips, the latest credit frame
    /// is still unacknowledged then, so one allocation every 90 frames or so.
    pub(super) fn control_frame(&mut self, frame: &Frame<'_>) -> Bytes {
        if self.control.capacity() < crate::link::wire::control::MAX_LEN {
            self.control.reserve(CONTROL_ROOM);
        }
        if crate::link::wire::control::write_into(&mut self.control, frame) {
            self.control.split().freeze()
        } else {
            crate::link::wire::encode(frame)
        }
    }

    /// Number a reliable frame and keep it until the peer acknowledges it.
    pub(super) fn keep_sent(&mut self, frame: Bytes) {
        self.sent_bytes += frame.len();
        self.sent.push_back(frame);
        self.next_seq += 1;
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
            && self.open.is_empty()
            && self.acks.is_empty()
            && self.claims.is_empty()
            && self.answers.is_empty()
    }
}

/// `answers` as frames of at most `max` bytes (each answer fits one: see
/// [`crate::link::peer::ANSWER_OVERHEAD`]).
pub(super) fn answer_frames(answers: &[(u64, u64, Option<Bytes>)], max: usize) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut batch = Vec::new();
    let mut size = 0;
    for (id, token, body) in answers {
        let len = body.as_ref().map_or(0, Bytes::len) + crate::link::peer::ANSWER_OVERHEAD;
        if !batch.is_empty() && size + len > max {
            frames.push(crate::link::wire::encode(&Frame::Answers {
                answers: std::mem::take(&mut batch),
            }));
            size = 0;
        }
        batch.push((*id, *token, body.as_deref().map(serde_bytes::Bytes::new)));
        size += len;
    }
    if !batch.is_empty() {
        frames.push(crate::link::wire::encode(&Frame::Answers { answers: batch }));
    }
    frames
}

impl Outbox {
    /// Whether a writer would take anything now (the simulation's writers write only then).
    #[cfg(test)]
    pub(crate) fn has_queued(&self) -> bool {
        let inner = self.lock();
        !inner.is_empty() || inner.received.is_some()
    }

    /// Take every queued frame, oldest first, into `into`; the reliable ones are numbered and
    /// kept until the peer acknowledges them.
    pub(crate) fn take(&self, into: &mut Vec<Bytes>) {
        let mut inner = self.lock();
        inner.finish_open();
        if let Some((stream, count)) = inner.received.take() {
            into.push(inner.control_frame(&Frame::Received { stream, count }));
        }
        if inner.sent_bytes >= MAX_UNACKED {
            // The peer has not acknowledged enough: only what is not kept goes (Raft's own
            // frames, and the acknowledgements above, which the peer may be waiting for).
            let queued = std::mem::take(&mut inner.frames);
            let (unreliable, held): (VecDeque<_>, VecDeque<_>) =
                queued.into_iter().partition(|(_, reliable)| !*reliable);
            into.extend(unreliable.into_iter().map(|(f, _)| f));
            // (Claims and answers wait too, and count: the backlog stays bounded while stalled.)
            let pending = inner.claims.len() * super::acks::CLAIM_BYTES
                + inner
                    .answers
                    .iter()
                    .map(|(_, _, b)| {
                        b.as_ref().map_or(0, Bytes::len) + crate::link::peer::ANSWER_OVERHEAD
                    })
                    .sum::<usize>();
            let held_bytes: usize = held.iter().map(|(f, _)| f.len()).sum();
            self.control_bytes.store(held_bytes + pending, Ordering::Relaxed);
            inner.frames = held;
            inner.urgent = false;
            inner.lazy_armed = false;
            return;
        }
        // Claims and answers before the credit that says their messages were taken: a node
        // that reads the one has read the other, and the asker of a request sent from the node
        // they go to is never left unclaimed and unanswered by a receiving node that dies just
        // after (the sending node read the take, and delivers nowhere again; the claim or the
        // answer behind it was lost with the connection: the switchboard simulation's seeds
        // 3677, a claim, and 156914, an answer then an `ack`, with reply handles).
        // (The lists keep their room, up to a point: see `emptied`.)
        let mut claims = std::mem::take(&mut inner.claims);
        for claim in claims.drain(..) {
            let frame = claim.frame();
            inner.keep_sent(frame.clone());
            into.push(frame);
        }
        inner.claims = super::emptied(claims);
        if !inner.answers.is_empty() {
            let answers = std::mem::take(&mut inner.answers);
            for frame in answer_frames(&answers, self.max_frame()) {
                inner.keep_sent(frame.clone());
                into.push(frame);
            }
        }
        let mut acks = std::mem::take(&mut inner.acks);
        for (to, taken, grant) in acks.drain(..) {
            let frame = inner.control_frame(&Frame::Credit { to, taken, grant });
            inner.keep_sent(frame.clone());
            into.push(frame);
        }
        inner.acks = super::emptied(acks);
        while let Some((frame, reliable)) = inner.frames.pop_front() {
            if reliable {
                inner.keep_sent(frame.clone());
            }
            into.push(frame);
        }
        inner.barrier = false;
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
        // Waiters are told only if there are any (it is most often nobody: notifying nobody
        // cost about 330 instructions an ack). Counted under the watch's lock, which a new
        // waiter's first look at the count takes after counting itself: none is missed.
        self.acked.send_if_modified(|a| {
            let newer = count > *a;
            if newer {
                *a = count;
            }
            newer && self.acked.receiver_count() > 0
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
}
