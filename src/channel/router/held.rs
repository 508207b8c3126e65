//! A send held between its credit and its push, for the switchboard simulation
//! ([`crate::channel::switchboard::sim`]): the router takes a unit of a remote receiver's
//! window and writes into that node's outbox in two steps with nothing between them but the
//! sending thread's own progress, and a thread can be preempted there for as long as the
//! scheduler likes, across a whole hand-over. The simulation's sends run both steps at once;
//! here it takes the first ([`ChannelRoute::hold`]) and, steps later, the second
//! ([`ChannelRoute::resume`], the code [`ChannelRoute::place_one`] runs) or gives the unit back
//! ([`ChannelRoute::let_go`]).

use bytes::Bytes;

use super::copies::{Placed, NEVER_CLOSED};
use super::{ChannelRoute, Target};

/// A unit of credit taken with one remote receiver, its message not pushed yet.
pub(crate) struct Held {
    target: Target,
    /// A message re-routed from a receiver that did not take it (a close does not stop it, nor
    /// does the node's leave), rather than a send.
    rerouted: bool,
}

impl Held {
    pub(crate) fn rerouted(&self) -> bool {
        self.rerouted
    }
}

impl ChannelRoute {
    /// The first half of a send (or of a re-route) to a receiver on another node, the
    /// `pick`-th of them (wrapping): the checks `place` makes first, and a unit of that
    /// receiver's window taken. `None` where `place` would not get that far.
    pub(crate) fn hold(&self, rerouted: bool, pick: usize) -> Option<Held> {
        if !rerouted && self.refuses_sends() {
            return None;
        }
        let targets = self.read();
        let remote: Vec<&Target> =
            targets.iter().filter(|t| matches!(t, Target::Remote { .. })).collect();
        if remote.is_empty() {
            return None;
        }
        let target = remote[pick % remote.len()];
        let Target::Remote { window, .. } = target else { return None };
        if window.is_released() || !window.try_acquire() {
            return None;
        }
        Some(Held { target: target.clone(), rerouted })
    }

    /// The second half of `held`: `msg` (encoded) into the receiver's node's outbox, as
    /// `place_one` pushes it. Whether it went; if not, its unit is given back (or its receiver
    /// is gone).
    pub(crate) fn resume(&self, held: Held, msg: &Bytes) -> bool {
        let Target::Remote { id, peer, window } = &held.target else { return false };
        let closed = if held.rerouted { &NEVER_CLOSED } else { &self.closed };
        matches!(self.push_acquired(*id, peer, window, msg, closed, false), Placed::Sent(_))
    }

    /// `held` given up before its push: its unit goes back to the window (as `place` gives
    /// back the unit of a message that did not go).
    pub(crate) fn let_go(&self, held: Held) {
        if let Target::Remote { window, .. } = &held.target {
            self.undo(window);
        }
    }
}
