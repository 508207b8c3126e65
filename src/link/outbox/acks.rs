//! Lazy acknowledgements: credit and "taken" for a sending node, coalesced per receiver, and this
//! node's count of the peer's reliable frames. A small one does not wake the writer but rides
//! along with the next frame to that peer, or goes out on its own within [`LAZY_ACK_DELAY`](super::LAZY_ACK_DELAY).

use super::Outbox;
use crate::ids::EndpointId;

/// What a claim queued counts against the control backlog (its frame, about).
pub(super) const CLAIM_BYTES: usize = 32;

impl Outbox {
    /// Tell the sending node that receiver `to` took `taken` more of its messages and grants it
    /// `grant` more credit. Coalesced per receiver; sent at once if `urgent` (the node waits
    /// for it) or `urgent_at` messages were taken or granted, otherwise with the next frame or
    /// within [`LAZY_ACK_DELAY`](super::LAZY_ACK_DELAY).
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
        if inner.barrier {
            // Behind the barrier, not ahead of it: a control frame of its own.
            let frame = inner.control_frame(&crate::link::wire::Frame::Credit { to, taken, grant });
            drop(inner);
            self.push_frame(frame, true);
            return;
        }
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

    /// This node holds reply handle `id` (with `token`, `hop` messages from the peer, which
    /// asked): claimed lazily, with the next frame or within
    /// [`LAZY_ACK_DELAY`](super::LAZY_ACK_DELAY), and not at all if the handle is answered
    /// first ([`Outbox::push_answer`]): most are, and a claim matters only to a holder that dies
    /// holding it.
    pub(crate) fn push_claim(&self, claim: crate::link::wire::Claim) {
        let mut inner = self.lock();
        inner.claims.push(claim);
        // (Counted with the control frames: bounded like them, see `room_for_answers`.)
        self.control_bytes.fetch_add(CLAIM_BYTES, std::sync::atomic::Ordering::Relaxed);
        let arm = !inner.urgent && !std::mem::replace(&mut inner.lazy_armed, true);
        drop(inner);
        if arm {
            self.lazy.notify_one();
        }
    }

    /// Answer the peer's reply handle `id` (with `token`): `body`, or `None` (dropped
    /// unanswered). Its claim, if still queued, is not needed any more. Sent at once, together
    /// with the other answers queued for the peer by then, in one frame.
    pub(crate) fn push_answer(&self, id: u64, token: u64, body: Option<bytes::Bytes>) {
        let mut inner = self.lock();
        if !inner.claims.is_empty() {
            inner.claims.retain(|c| c.id != id || c.asker.is_some());
        }
        let len = body.as_ref().map_or(0, bytes::Bytes::len) + crate::link::peer::ANSWER_OVERHEAD;
        self.control_bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        inner.answers.push((id, token, body));
        let wake = !std::mem::replace(&mut inner.urgent, true);
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
    }

    /// This node has taken in `count` of the peer's reliable frames of its stream `stream`:
    /// said lazily, with the next frame or within [`LAZY_ACK_DELAY`](super::LAZY_ACK_DELAY).
    pub(crate) fn push_received(&self, stream: u64, count: u64) {
        let mut inner = self.lock();
        inner.received = Some((stream, count));
        let arm = !inner.urgent && !std::mem::replace(&mut inner.lazy_armed, true);
        drop(inner);
        if arm {
            self.lazy.notify_one();
        }
    }
}
