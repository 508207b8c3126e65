//! Sends held between their credit and their push: a sending thread preempted after the router
//! took a unit of a remote receiver's window and before it wrote the message into that node's
//! outbox (see [`crate::channel::router::held`]), for as many steps as the schedule likes:
//! across a leave's hand-over and its last word (`Frame::Bye`), a freeze, a reset, a close.
//! One such thread per node at most, beside its application's sender; its messages are
//! numbered apart (`HELD`), and ordered among themselves. Some are re-routes rather than
//! sends (not refused by a leave or a close). What it pushed counts as sent, and is held to
//! every invariant the sender's messages are; what the outbox refused was not sent (its unit
//! goes back). `DCHAN_SIM_HELD=0` leaves them out (the schedules seeds made before them).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{Msg, Sim, TRACE};
use crate::channel::router::held::Held;
use crate::channel::router::ChannelRoute;

/// Set in the number of a message sent by a held send.
pub(super) const HELD: u64 = 1 << 33;

/// The held sends of one schedule.
#[derive(Default)]
pub(super) struct HeldSends {
    pub(super) on: bool,
    /// Per node (by index), its held send, the router it holds (as a send holds its sender),
    /// and the number of the message it carries.
    pending: BTreeMap<usize, (Arc<ChannelRoute>, Held, u64)>,
    /// The next number, per node.
    next: BTreeMap<usize, u64>,
    /// Held sends pushed, refused.
    pub(super) pushed: u64,
    pub(super) refused: u64,
}

impl Sim {
    /// Node `i`'s held send goes on and pushes its message, or, with none, it starts one: a
    /// unit of credit taken with one of its router's remote receivers.
    pub(super) fn held_step(&mut self, i: usize) {
        if self.held.pending.contains_key(&i) {
            self.resume_held(i);
            return;
        }
        let node = &self.nodes[i];
        if !node.runs() || node.sender.is_none() {
            return;
        }
        let Some(route) = node.core.switch.find_route(super::CHANNEL) else { return };
        let rerouted = !self.closing && self.rng.below(3) == 0;
        let pick = self.rng.below(8);
        let Some(held) = route.hold(rerouted, pick) else { return };
        let next = self.held.next.entry(i).or_insert(0);
        let seq = HELD | *next;
        *next += 1;
        if *TRACE {
            eprintln!("node {} holds a {} ({seq:#x})", node.id, kind(&held));
        }
        self.held.pending.insert(i, (route, held, seq));
    }

    /// Node `i`'s held send pushes its message, if the node runs (or has left: the thread
    /// outlives the node's work, and its outbox has to refuse it).
    fn resume_held(&mut self, i: usize) {
        let node = &self.nodes[i];
        let left = node.dead && self.left_at.contains_key(&node.id);
        if !(node.runs() || left) {
            return;
        }
        let id = node.id;
        let Some((route, held, seq)) = self.held.pending.remove(&i) else { return };
        // (A re-route is of a message sent before the close; one started since is given up.)
        if held.rerouted() && self.closing {
            if *TRACE {
                eprintln!("node {id} lets its held {} go", kind(&held));
            }
            route.let_go(held);
            return;
        }
        let what = kind(&held);
        let msg: Msg = (id, seq);
        let bytes =
            rmp_serde::to_vec_named(&super::replies::Wire::plain(msg)).expect("a sim message");
        let pushed = route.resume(held, &Bytes::from(bytes));
        if *TRACE {
            eprintln!("node {id}'s held {what} {seq:#x}: pushed {pushed}");
        }
        if pushed {
            self.held.pushed += 1;
            self.sent.insert(msg);
        } else {
            self.held.refused += 1;
        }
    }

    /// Node `i` crashed: its held send goes with it.
    pub(super) fn held_crashed(&mut self, i: usize) {
        self.held.pending.remove(&i);
    }

    /// The fair finish: every held send that can go on does.
    pub(super) fn held_finish(&mut self) {
        let pending: Vec<usize> = self.held.pending.keys().copied().collect();
        for i in pending {
            self.resume_held(i);
        }
    }

    /// Nothing held by a node that runs.
    pub(super) fn held_done(&self) -> bool {
        self.held.pending.keys().all(|i| !self.nodes[*i].runs())
    }
}

fn kind(held: &Held) -> &'static str {
    if held.rerouted() {
        "re-route"
    } else {
        "send"
    }
}
