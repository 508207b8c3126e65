//! Many messages taken at once ([`Receiver::recv_many`]): the same last step as
//! [`Inbox::poll_recv`], with the inbox's lock, the credit books and the wake-up of waiting
//! senders once for the batch instead of once per message. Only for a receiver without manual
//! acknowledgement: every message taken is delivered, as by `recv`.
//!
//! [`Receiver::recv_many`]: crate::Receiver::recv_many

use std::task::{Context, Poll, Waker};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{owner, Inbox, Item};
use crate::channel::credit::Outgoing;
use crate::channel::{decoding, trace};
use crate::error::TryRecvError;
use crate::ids::NodeId;
use crate::link::envelope;

impl<T: Serialize + DeserializeOwned + Send + 'static> Inbox<T> {
    /// Take up to `limit` messages, appended to `out`, or register `cx` to be woken when there
    /// is one: `Ready(0)` once the inbox has ended (or at once if `limit` is 0), as tokio's
    /// `recv_many`. One unit of tokio's cooperative budget per batch.
    pub(crate) fn poll_recv_many(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<T>,
        limit: usize,
    ) -> Poll<usize> {
        if limit == 0 {
            return Poll::Ready(0);
        }
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        match self.next_many(Some(cx.waker()), out, limit) {
            Ok(n) => {
                coop.made_progress();
                Poll::Ready(n)
            }
            Err(TryRecvError::Closed) => {
                coop.made_progress();
                Poll::Ready(0)
            }
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }

    /// Take up to `limit` messages ready now (at least one), appended to `out`; when there are
    /// none, leave `waker` to be woken (see [`Inbox::nothing_to_take`]). Each is taken as
    /// `next` takes it: booked as taken, decoded outside the lock, a message that cannot be
    /// decoded kept as a dead letter.
    fn next_many(
        &self,
        waker: Option<&Waker>,
        out: &mut Vec<T>,
        limit: usize,
    ) -> Result<usize, TryRecvError> {
        loop {
            let (items, credit) = {
                let mut st = self.lock();
                debug_assert!(st.unacked.is_none(), "recv_many takes no manual acknowledgement");
                let mut items = Vec::with_capacity(limit.min(st.buf.len()));
                // Taken from one node in a row, booked together.
                let mut run: Option<(Option<NodeId>, u32)> = None;
                let mut held_back = false;
                while items.len() < limit {
                    let from = match st.buf.front() {
                        None => break,
                        Some(Item::Value(_)) => None,
                        Some(Item::Encoded { from, .. }) => *from,
                    };
                    if st.leaving && from.is_some() {
                        // (Its node is leaving and told what was taken: see `next`.)
                        held_back = true;
                        break;
                    }
                    let Some(item) = st.buf.pop_front() else { break };
                    items.push(item);
                    run = match run {
                        Some((f, n)) if f == from => Some((f, n + 1)),
                        Some((f, n)) => {
                            st.grants.taken(f, n);
                            Some((from, 1))
                        }
                        None => Some((from, 1)),
                    };
                }
                let Some((last, n)) = run else {
                    return Err(self.nothing_to_take(st, waker, held_back));
                };
                st.grants.taken(last, n);
                let idle = st.buf.is_empty();
                // (As in `next`: settled once per batch.)
                let quiet = st.closing.is_none() && !st.detached && st.grants.quiet(idle);
                let credit = if quiet {
                    Outgoing::default()
                } else {
                    self.settle_books(&mut st, idle, last, false)
                };
                (items, credit)
            };
            let taken = self.decode_into(items, out);
            // (What settling says goes once the reply handles in the messages are decoded, as in
            // `next`.)
            self.route.counters.received_many(taken as u64);
            self.send(credit);
            self.route.wake();
            if taken > 0 {
                return Ok(taken);
            }
        }
    }

    /// A message taken that does not decode as `T` (from an untyped sender, or a broken peer),
    /// kept as a dead letter of the channel, with why; its sending node lets go of it.
    pub(super) fn dead_letter(&self, from: Option<NodeId>, error: String, msg: bytes::Bytes) {
        let expected = std::any::type_name::<T>();
        self.route.dead_letters().keep(self.route.name(), from, expected, error, msg);
    }

    /// Decode taken messages into `out`, in order; those that cannot be decoded become dead
    /// letters. Returns how many were delivered.
    fn decode_into(&self, items: Vec<Item<T>>, out: &mut Vec<T>) -> usize {
        let before = out.len();
        let context = self.owner.get().map(owner::Owner::context);
        for item in items {
            match item {
                Item::Value(v) => out.push(v),
                Item::Encoded { msg, from, .. } => {
                    // After its header, if any (see `link::envelope`).
                    let header = envelope::split(&msg);
                    let (traceparent, at) = header.as_ref().map_or((None, 0), |h| *h);
                    let decoded =
                        decoding::with_from(context, from, || rmp_serde::from_slice(&msg[at..]));
                    match decoded {
                        Ok(v) => {
                            // Its `receive` span, opened and closed, as by `recv`.
                            #[cfg_attr(
                                not(feature = "opentelemetry"),
                                expect(
                                    clippy::let_unit_value,
                                    reason = "a span, with the feature"
                                )
                            )]
                            let _span = trace::received(traceparent, self.route.label());
                            out.push(v);
                        }
                        Err(e) => {
                            let error =
                                header.err().map_or_else(|| e.to_string(), |h| h.to_string());
                            self.dead_letter(from, error, msg.slice(at..));
                        }
                    }
                }
            }
        }
        out.len() - before
    }
}
