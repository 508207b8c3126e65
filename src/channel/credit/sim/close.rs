//! The simulation's close: once in a schedule the channel is closed, and each node applies that
//! in its own time, as `Switchboard::refresh` does. A sending node sends nothing new from then
//! on, delivers what it has to deliver again (redeliveries were sent before the close), then
//! sends its fence behind it on every link. A receiving node closes each inbox
//! (`Inbox::close`, the code users run) waiting for the fence of every sending node that was a
//! member at the close and has not been removed since; a fence counts once it arrives
//! (`Inbox::fence`), and a removal takes the node out of those waited for. After the schedule,
//! every live receiver must end (no fence waited for in vain) with every message sent before
//! its sender's close taken. (Receivers' own nodes fence each other too in the real code; here
//! their senders feed only their own inbox, so they are not waited for.)

use super::{Msg, Phase, Sim};
use crate::channel::inbox::ErasedInbox;

impl Sim {
    /// The close commits: the sending nodes that are members now are those waited for.
    pub(super) fn close(&mut self) {
        if self.closed_by.is_some() {
            return;
        }
        if super::tracing_frames() {
            eprintln!("the channel is closed");
        }
        // Removed while alive and not let back in yet: not a member.
        let members = (0..self.senders.len())
            .map(|s| {
                let sender = &self.senders[s];
                !sender.stopped()
                    && !matches!(sender.phase, Phase::Frozen | Phase::Cut | Phase::Thawed)
            })
            .collect();
        self.closed_by = Some(members);
    }

    /// Sending node `s` is removed (its node forgotten somewhere): the registry no longer waits
    /// for its fence.
    pub(super) fn not_waited_for(&mut self, s: usize) {
        if let Some(by) = self.closed_by.as_mut() {
            by[s] = false;
        }
    }

    /// Each node applies the close in its own time, and fences what it has to fence.
    pub(super) fn close_step(&mut self) {
        if self.closed_by.is_some() {
            let s = self.rng.below(self.senders.len());
            self.sender_applies_close(s);
            let r = self.rng.below(self.receivers.len());
            if !self.receivers[r].closing && self.rng.below(2) == 0 {
                self.receiver_applies_close(r);
            }
        }
        self.fence_when_done();
    }

    /// After the random phase: every node applies the close.
    pub(super) fn finish_close(&mut self) {
        if self.closed_by.is_none() {
            return;
        }
        for s in 0..self.senders.len() {
            self.sender_applies_close(s);
        }
        for r in 0..self.receivers.len() {
            if !self.receivers[r].closing {
                self.receiver_applies_close(r);
            }
        }
        self.fence_when_done();
    }

    /// Sending node `s` applies the close: nothing new is sent; its fence follows once what it
    /// delivers again has gone (see `fence_when_done`).
    pub(super) fn sender_applies_close(&mut self, s: usize) {
        if self.closed_by.is_some() && !self.senders[s].closed {
            self.senders[s].closed = true;
            self.senders[s].left_to_send = 0;
        }
    }

    /// A sending node that applied the close and has nothing left to deliver again sends its
    /// fence, once, behind everything it sent.
    pub(super) fn fence_when_done(&mut self) {
        for s in 0..self.senders.len() {
            let sender = &self.senders[s];
            // A node starting over delivers again what it sent before, once every receiver's
            // node has answered: its fence waits for that too (`Switchboard::start_over`).
            let settling = matches!(sender.phase, Phase::Settling(_));
            let idle =
                sender.redeliver.is_empty() && !sender.stopped() && !sender.frozen() && !settling;
            if sender.closed && !sender.fenced && idle {
                self.senders[s].fenced = true;
                let from = self.senders[s].node;
                let nodes: Vec<_> = self.receivers.iter().map(|r| r.node).collect();
                for node in nodes {
                    self.push(from, node, Msg::Fence);
                }
            }
        }
    }

    /// Receiver `r`'s node applies the close (or, after it, a removal): the inbox waits for the
    /// fences of the members at the close not yet removed here and not yet heard.
    pub(super) fn receiver_applies_close(&mut self, r: usize) {
        let Some(by) = self.closed_by.clone() else { return };
        self.receivers[r].closing = true;
        self.receivers[r].local_left = 0;
        let waiting = (0..by.len())
            .filter(|s| by[*s] && self.member_here(r, *s) && !self.receivers[r].fences[*s])
            .map(|s| self.senders[s].node)
            .collect();
        self.receivers[r].inbox.close(waiting);
    }

    /// A fence from sending node `s` reaches receiver `r`'s node: counted if it is a member here.
    pub(super) fn fence_arrives(&mut self, r: usize, s: usize) {
        if !self.member_here(r, s) {
            return;
        }
        let rx = &mut self.receivers[r];
        rx.fences[s] = true;
        rx.inbox.fence(self.senders[s].node);
    }

    /// Whether receiver `r`'s node has sending node `s` as a member: not removed there, or let
    /// back in since (a node starting over asks back in before anything else).
    fn member_here(&self, r: usize, s: usize) -> bool {
        !self.receivers[r].forgot[s]
            || matches!(self.senders[s].phase, Phase::Settling(_) | Phase::Registering)
    }

    /// The channel is closed and every receiver has ended (or was dropped): what is delivered
    /// again now has nowhere to go.
    pub(super) fn nowhere_to_go(&self) -> bool {
        self.closed_by.is_some() && self.receivers.iter().all(|r| r.detached || r.ended)
    }

    /// After the schedule: every receiver still alive has ended.
    pub(super) fn check_ended(&mut self) {
        if self.closed_by.is_none() {
            return;
        }
        for r in 0..self.receivers.len() {
            let rx = &self.receivers[r];
            assert!(
                rx.detached || rx.ended,
                "receiver {r} never ended after the close (fences heard {:?}, forgot {:?}, closed_by {:?}, closing {}, buffered {}, next {:?}, senders {:?})",
                rx.fences, rx.forgot, self.closed_by, rx.closing, rx.inbox.buffered(), rx.inbox.try_recv(), self.senders.iter().map(|s| (s.phase, s.closed, s.fenced, s.dead)).collect::<Vec<_>>()
            );
        }
    }
}
