//! Frames kept for redelivery: every data frame sent to a receiver stays, per receiver, until
//! the receiver says its messages were taken ([`Outbox::release`]); what is left when the
//! receiver goes away comes back with [`Outbox::take_kept`], to be delivered elsewhere.

use bytes::Bytes;

use super::Outbox;
use crate::ids::EndpointId;
use crate::link::wire::Frame;

/// The most frames the emptied list kept for reuse has room for (see [`Outbox::release`]): a
/// burst's room is not held for good.
const SPARE_ROOM: usize = 16;

impl Outbox {
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
            // Its list's room is kept for the next receiver's first frame (a request and its
            // answer each emptied one and made one: an allocation and a free a round trip).
            let list = inner.kept.remove(&to).unwrap_or_default();
            if list.capacity() <= SPARE_ROOM {
                inner.spare_kept = list;
            }
        }
    }

    /// How many messages sent to receiver `to` it has not taken yet.
    pub(crate) fn kept_count(&self, to: EndpointId) -> u64 {
        let inner = self.lock();
        let kept: u64 =
            inner.kept.get(&to).map_or(0, |k| k.iter().map(|k| u64::from(k.count - k.taken)).sum());
        kept + inner.open.iter().filter(|o| o.to == to).map(|o| u64::from(o.count)).sum::<u64>()
    }

    /// Every message sent to receiver `to` and not taken, oldest first, to be delivered
    /// elsewhere (the receiver is gone), and apart, with `copies`, the broadcast copies kept for
    /// it (this node starts over and sends them to `to` again; without, they are left out: they
    /// were for it alone). Nothing is kept for it any more. `counted` is told how many, under
    /// the lock [`Outbox::kept_count`] takes: whoever counts what is kept and then what
    /// `counted` counted never misses them in between.
    pub(crate) fn take_kept(
        &self,
        to: EndpointId,
        copies: bool,
        counted: impl FnOnce(usize),
    ) -> (Vec<Bytes>, Vec<Bytes>) {
        let kept = {
            let mut inner = self.lock();
            inner.finish_open();
            let kept = inner.kept.remove(&to).unwrap_or_default();
            let wanted = |k: &&super::Kept| copies || !k.broadcast;
            counted(kept.iter().filter(wanted).map(|k| (k.count - k.taken) as usize).sum());
            kept
        };
        let (mut msgs, mut bcast) = (Vec::new(), Vec::new());
        for k in kept.into_iter().filter(|k| copies || !k.broadcast) {
            let into = if k.broadcast { &mut bcast } else { &mut msgs };
            match crate::link::wire::decode(&k.frame) {
                Ok(Frame::Data { msgs: all, .. }) => {
                    into.extend(all.iter().skip(k.taken as usize).map(|m| k.frame.slice_ref(m)));
                }
                _ => tracing::error!(receiver = to, "a kept data frame does not decode"),
            }
        }
        (msgs, bcast)
    }
}
