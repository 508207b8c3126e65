//! An encoded message placed with one receiver ([`ChannelRoute::place_one`]): the step between
//! the router and a receiver's inbox or its node's outbox, for a broadcast's copies, which
//! [`Sender::broadcast`] encodes once, and for messages re-routed from a receiver that did not
//! take them. A broadcast places every copy that finds room at once
//! ([`ChannelRoute::place_copies`]: one look at the receivers, one count of what was sent); a
//! receiver without room is left to the broadcast, which waits for it alone
//! ([`ChannelRoute::try_send_encoded`] with `only`).
//!
//! [`Sender::broadcast`]: crate::Sender::broadcast

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::{Attempt, ChannelRoute, Target};
use crate::channel::credit::Window;
use crate::channel::inbox::Refused;
use crate::ids::EndpointId;
use crate::link::outbox::{Gate, PushError};
use crate::link::peer::Peer;

/// The closing flag of a re-routed message: sent before any close, a close does not stop it.
pub(super) static NEVER_CLOSED: AtomicBool = AtomicBool::new(false);

/// What placing an encoded message with one receiver came to.
pub(super) enum Placed {
    /// Taken; this many bytes of it went to another node (0: a receiver of this node).
    Sent(usize),
    /// Its receiver on another node is gone, though the registry does not say so yet: not
    /// tried.
    Released,
    /// Its receiver on another node went meanwhile (its outbox said so).
    Gone,
    /// No room: the receiver here is full, or this node has no credit with the one there.
    Full,
    /// The receiver here has ended.
    Ended,
    /// Closed, or refused by the outbox (logged).
    Closed,
}

/// What placing the copies of one broadcast came to.
#[derive(Debug, Default)]
pub(crate) struct Copies {
    /// Receivers that got their copy.
    pub(crate) reached: usize,
    /// Receivers without room now: their copies wait.
    pub(crate) full: Vec<EndpointId>,
    /// The channel is closed (or a receiver of this node has ended with it): no more copies.
    pub(crate) closed: bool,
}

impl ChannelRoute {
    /// Place `msg` (encoded) with `target`, without waiting: a broadcast `copy` (for that
    /// receiver alone), or a message `rerouted` from a receiver that did not take it; `closed`
    /// is the flag that stops it on its way (the channel's, or none for a re-routed message).
    pub(super) fn place_one(
        &self,
        target: &Target,
        msg: &Bytes,
        closed: &AtomicBool,
        rerouted: bool,
        copy: bool,
    ) -> Placed {
        match target {
            Target::Local(inbox) => match inbox.try_push_encoded(msg.clone(), rerouted, copy) {
                Ok(()) => Placed::Sent(0),
                // (Another receiver, on another node, may not have ended, and still waits for
                // this node's fence behind this message.)
                Err(Refused::Closed(_)) => Placed::Ended,
                Err(Refused::Full(_)) => Placed::Full,
            },
            Target::Remote { id, peer, window } => {
                if window.is_released() {
                    return Placed::Released;
                }
                if !window.try_acquire() {
                    return Placed::Full;
                }
                self.push_acquired(*id, peer, window, msg, closed, copy)
            }
        }
    }

    /// The second half of placing `msg` with receiver `id` on another node, once a unit of
    /// `window` is taken for it: into that node's outbox, or the unit given back. (Between the
    /// two halves the sending thread may be preempted for as long as the scheduler likes; the
    /// switchboard simulation holds sends there, see `held`.)
    pub(super) fn push_acquired(
        &self,
        id: EndpointId,
        peer: &Peer,
        window: &Window,
        msg: &Bytes,
        closed: &AtomicBool,
        copy: bool,
    ) -> Placed {
        let gate = Gate { closed, gone: Some(window.gone()) };
        match peer.outbox.push_encoded(id, msg, copy, gate) {
            Ok(()) => Placed::Sent(msg.len()),
            Err(PushError::Gone) => Placed::Gone,
            Err(e) => {
                self.undo(window);
                if !matches!(e, PushError::Closed) {
                    tracing::error!(channel = %self.label(), error = %e, "message refused");
                }
                Placed::Closed
            }
        }
    }

    /// Place a copy of `msg` (encoded) with every receiver that has room now, without waiting;
    /// each as [`ChannelRoute::try_send_encoded`] places a copy for one receiver (one gone
    /// needs none, one without credit is asked for some, one here that has ended closes the
    /// broadcast).
    pub(crate) fn place_copies(&self, msg: &Bytes) -> Copies {
        let mut copies = Copies::default();
        if self.refuses_sends() {
            copies.closed = true;
            return copies;
        }
        let mut bytes = 0;
        {
            let targets = self.read();
            for target in targets.iter() {
                match self.place_one(target, msg, &self.closed, false, true) {
                    Placed::Sent(b) => {
                        copies.reached += 1;
                        bytes += b;
                    }
                    Placed::Released | Placed::Gone => {}
                    Placed::Full => {
                        copies.full.push(target.id());
                        Self::want(&targets, Some(target.id()));
                    }
                    Placed::Ended | Placed::Closed => {
                        copies.closed = true;
                        break;
                    }
                }
            }
        }
        self.counters.sent_many(copies.reached as u64, bytes);
        self.after_attempt();
        copies
    }

    /// Place an already encoded message with receiver `only` (a broadcast copy), or with any
    /// receiver (a message `rerouted` from a receiver that did not take it), without waiting.
    /// Rerouted messages were sent before any close, so a close on this node does not stop them.
    pub(crate) fn try_send_encoded(
        &self,
        msg: &Bytes,
        only: Option<EndpointId>,
        rerouted: bool,
    ) -> Attempt<()> {
        let attempt = self.place_encoded(msg, only, rerouted);
        self.after_attempt();
        attempt
    }

    fn place_encoded(&self, msg: &Bytes, only: Option<EndpointId>, rerouted: bool) -> Attempt<()> {
        if !rerouted && self.refuses_sends() {
            return Attempt::Closed(());
        }
        let closed = if rerouted { &NEVER_CLOSED } else { &self.closed };
        let targets = self.read();
        let n = targets.len();
        // (A broadcast copy is for one receiver: no turn to take.)
        let start =
            if only.is_some() { 0 } else { self.cursor.fetch_add(1, Ordering::Relaxed) as usize };
        let mut any = false;
        // Receivers tried, and of those, local ones that have ended.
        let (mut considered, mut ended) = (0usize, 0usize);
        // (As in `place`; a broadcast copy waits for its own receiver.)
        let mut full_here = false;
        let sent = |full_here: bool, bytes: usize| {
            if rerouted {
                self.counters.redelivered(1);
            } else {
                self.counters.sent(bytes);
            }
            if full_here && only.is_none() {
                Self::placed_elsewhere(&targets);
            }
            Attempt::Sent
        };
        for i in 0..n {
            let target = &targets[(start + i) % n];
            if only.is_some_and(|o| o != target.id()) {
                continue;
            }
            let placed = self.place_one(target, msg, closed, rerouted, only.is_some());
            if !matches!(placed, Placed::Released) {
                any = true;
                considered += 1;
            }
            match placed {
                Placed::Sent(bytes) => return sent(full_here, bytes),
                // Gone: it needs no copy (not considered).
                Placed::Released => {}
                // Released meanwhile: another receiver takes it (a broadcast copy is not needed
                // by a receiver that is gone).
                Placed::Gone if only.is_some() => return Attempt::NoReceivers(()),
                Placed::Gone => {}
                Placed::Full => full_here |= matches!(target, Target::Local(_)),
                Placed::Ended => ended += 1,
                Placed::Closed => return Attempt::Closed(()),
            }
        }
        if any && ended == considered {
            // Every receiver left to try has ended.
            Attempt::Closed(())
        } else if any {
            Self::want(&targets, only);
            Attempt::Full(())
        } else {
            Attempt::NoReceivers(())
        }
    }
}
