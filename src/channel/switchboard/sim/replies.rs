//! Reply handles (issue 19, promise 11, `Node::oneshot`) in the simulation: the named
//! channel's message ([`Wire`]) carries a reply handle when it asks. A sending application
//! makes the handle on its node (the real [`oneshot`](crate::channel::oneshot) pair, its entry
//! in the node's real replies table) and sends it inside its next message; the application
//! that takes the message (through the real receivers, which decode the handle and claim it
//! with a `Held` frame) holds the handle, and at a later step of its own answers it, drops it
//! unanswered, or passes it on inside its own next message (a second hop, or more), where the
//! next taker holds it. The asking application polls its [`Receiver`] when woken, or gives up
//! and drops it (as `request_timeout` does).
//!
//! The schedule's faults apply as they are: a holder crashes (its claim on its way, or not
//! written yet) or is removed while alive; an asker crashes or is removed while an answer is on
//! its way; connections break; a `manual_ack` receiver is dropped with deliveries
//! unacknowledged (their handles, behind the deliveries' gates, say nothing when dropped: the
//! request is delivered again and its handle answered twice, perhaps); time passes (the
//! holders' grace, [`HOLDER_GRACE`](crate::link::replies::HOLDER_GRACE)).
//!
//! Checked (see [`super::replies_check`]): an asker's answer is a value some holder sent for
//! that handle (no other handle's); a second answer, from a copy on the asking node, is handed
//! back; `Dropped` only if a copy was dropped where that tells (not behind a gate still
//! closed), or its message came back to its sender; `Lost(n)` only if node `n` took the
//! handle and left the membership. The asking node's table holds no more entries than its
//! applications wait for. Once the faults stop and time has passed every grace: every asker
//! alive has its answer or an error, none waits; every table is empty.
//!
//! `DCHAN_SIM_REPLIES=0` leaves them out (the schedules seeds made before them).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use serde::{Deserialize, Serialize};

use super::{Msg, Sim, Woken, TRACE};
use crate::channel::oneshot;
use crate::ids::NodeId;

/// An answer: (the ask it answers, a number no other answer has).
pub(super) type Ans = (usize, u64);

/// A reply handle of the simulation.
pub(super) type Reply = oneshot::Sender<Ans>;

/// The named channel's message: its number, and a reply handle when it asks.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Wire {
    pub(super) msg: Msg,
    pub(super) reply: Option<Reply>,
}

impl Wire {
    /// A message that asks nothing.
    pub(super) fn plain(msg: Msg) -> Self {
        Wire { msg, reply: None }
    }
}

/// How many hops a handle may travel at most (each taker may pass it on).
const MAX_HOPS: u32 = 3;

/// The reply handles of one schedule.
#[derive(Default)]
pub(super) struct Replies {
    /// Whether this schedule has reply handles (off: the schedule draws nothing for them).
    pub(super) on: bool,
    pub(super) asks: Vec<Ask>,
    /// Handles the applications hold: taken from a message, not yet answered, dropped or
    /// passed on.
    pub(super) held: Vec<Held>,
    /// The next answer's number.
    next_value: u64,
}

/// One reply handle, made by an asking application.
pub(super) struct Ask {
    pub(super) asker: NodeId,
    /// Its receiver, until it resolves or the application gives up.
    pub(super) rx: Option<oneshot::Receiver<Ans>>,
    woken: Arc<Woken>,
    /// What the receiver said.
    pub(super) got: Option<Result<Ans, oneshot::RecvError>>,
    pub(super) gave_up: bool,
    /// The messages that carried it (one per hop).
    pub(super) carriers: Vec<Msg>,
    /// The nodes whose applications took it from a message (each decoded it, and claimed it),
    /// with the message's place in `carriers`.
    pub(super) takers: Vec<(NodeId, usize)>,
    /// The values whose `send` returned `Ok`.
    pub(super) sent: Vec<u64>,
    /// A copy was dropped unanswered where that tells the asker: not behind a delivery's gate,
    /// or behind one opened since.
    pub(super) dropped: bool,
    /// Copies dropped behind the gate of a delivery not acknowledged: (node, the delivery's
    /// message); told if it is acknowledged.
    pub(super) gated_drops: Vec<(NodeId, Msg)>,
    /// A message carrying it came back to its sender (the send failed), and was dropped.
    pub(super) returned: bool,
}

/// A copy of a handle an application holds.
pub(super) struct Held {
    pub(super) node: NodeId,
    pub(super) ask: usize,
    reply: Reply,
    /// Taken from a `manual_ack` delivery (of this message) not acknowledged yet.
    gate: Option<Msg>,
    /// Passed on inside the node's next message.
    forward: bool,
    hop: u32,
}

impl Sim {
    /// This schedule has reply handles: each node's links are known to its peers, as
    /// `NodeBuilder::start` sets them (what a decoded handle answers through, and the holders'
    /// grace timers run on).
    pub(super) fn replies_start(&mut self) {
        self.replies.on = true;
        for node in &self.nodes {
            node.core.peers.set_links(Arc::downgrade(&node.links));
        }
    }

    /// One step of the reply handles' schedule, node `i`'s.
    pub(super) fn replies_step(&mut self, i: usize) {
        if !self.nodes[i].runs() {
            return;
        }
        match self.rng.below(10) {
            0..=4 => self.act(i),
            5..=8 => {
                let me = self.nodes[i].id;
                for k in 0..self.replies.asks.len() {
                    if self.replies.asks[k].asker == me {
                        self.poll_ask(k);
                    }
                }
            }
            _ if self.rng.below(3) == 0 => self.give_up(i),
            _ => {}
        }
    }

    /// The reply handle node `i`'s next message carries, if it asks (or passes one on): none
    /// when the schedule has none.
    pub(super) fn attach(&mut self, i: usize, msg: Msg) -> Option<Reply> {
        if !self.replies.on {
            return None;
        }
        let me = self.nodes[i].id;
        let r = &mut self.replies;
        if let Some(at) = r.held.iter().position(|h| h.node == me && h.forward) {
            let held = r.held.swap_remove(at);
            if *TRACE {
                eprintln!("node {me} passes reply {} on in {msg:?}", held.ask);
            }
            r.asks[held.ask].carriers.push(msg);
            return Some(held.reply);
        }
        if self.rng.below(3) != 0 {
            return None;
        }
        let (reply, rx) = oneshot::pair::<Ans>(me, &self.nodes[i].core.peers);
        let woken = Arc::new(Woken::default());
        woken.wake_by_ref();
        if *TRACE {
            eprintln!("node {me} asks reply {} in {msg:?}", self.replies.asks.len());
        }
        self.replies.asks.push(Ask {
            asker: me,
            rx: Some(rx),
            woken,
            got: None,
            gave_up: false,
            carriers: vec![msg],
            takers: Vec::new(),
            sent: Vec::new(),
            dropped: false,
            gated_drops: Vec::new(),
            returned: false,
        });
        Some(reply)
    }

    /// Node `node`'s application took `wire` (from a `manual_ack` delivery if `manual`): the
    /// handle in it, if any, is its to answer.
    pub(super) fn replies_took(&mut self, node: NodeId, wire: Wire, manual: bool) {
        let Some(reply) = wire.reply else { return };
        let Some(k) = self.replies.asks.iter().position(|a| a.carriers.contains(&wire.msg)) else {
            panic!("node {node} took a reply handle in {:?}, which carried none", wire.msg);
        };
        let ask = &mut self.replies.asks[k];
        let carrier = ask.carriers.iter().position(|m| *m == wire.msg).unwrap_or(0);
        ask.takers.push((node, carrier));
        let hop = carrier as u32 + 1;
        if *TRACE {
            eprintln!("node {node} holds reply {k} (hop {hop}, manual {manual})");
        }
        let gate = manual.then_some(wire.msg);
        self.replies.held.push(Held { node, ask: k, reply, gate, forward: false, hop });
    }

    /// Node `node`'s application acknowledged its delivery of `msg`: the handles taken from it
    /// are out of its gate, and those dropped behind it tell their askers now.
    pub(super) fn replies_acked(&mut self, node: NodeId, msg: Msg) {
        if !self.replies.on {
            return;
        }
        for h in self.replies.held.iter_mut().filter(|h| h.node == node && h.gate == Some(msg)) {
            h.gate = None;
        }
        for ask in &mut self.replies.asks {
            if ask.gated_drops.contains(&(node, msg)) {
                ask.dropped = true;
            }
        }
    }

    /// A message node `i` sent came back (the send failed) and is dropped: its handle tells.
    pub(super) fn replies_returned(&mut self, wire: Wire) {
        if let Some(k) = self.replies.asks.iter().position(|a| a.carriers.contains(&wire.msg)) {
            if wire.reply.is_some() {
                self.replies.asks[k].returned = true;
            }
        }
        drop(wire);
    }

    /// Node `i`'s application answers, drops or passes on one of the handles it holds.
    fn act(&mut self, i: usize) {
        let me = self.nodes[i].id;
        let mine: Vec<usize> = (0..self.replies.held.len())
            .filter(|h| self.replies.held[*h].node == me && !self.replies.held[*h].forward)
            .collect();
        if mine.is_empty() {
            return;
        }
        let at = mine[self.rng.below(mine.len())];
        // Passed on in the node's next message: only if its sender sends more.
        let sends = self.nodes[i].sender.as_ref().is_some_and(|s| !s.closed && s.next < s.total);
        match self.rng.below(10) {
            0..=5 => self.answer(at),
            6 | 7 => self.drop_held(at),
            _ if sends && self.replies.held[at].hop < MAX_HOPS => {
                self.replies.held[at].forward = true;
            }
            _ => self.answer(at),
        }
    }

    /// Held handle `at` is answered.
    fn answer(&mut self, at: usize) {
        let held = self.replies.held.swap_remove(at);
        let value = self.replies.next_value;
        self.replies.next_value += 1;
        let ask = &mut self.replies.asks[held.ask];
        let result = held.reply.send((held.ask, value));
        if *TRACE {
            eprintln!("node {} answers reply {} with {value}: {result:?}", held.node, held.ask);
        }
        match result {
            Ok(()) => {
                // A second answer on the asking node is handed back.
                let here = ask.asker == held.node;
                assert!(
                    !here || ask.rx.is_some() && ask.got.is_none(),
                    "node {}: a second answer to its own reply {} taken",
                    held.node,
                    held.ask
                );
                ask.sent.push(value);
            }
            Err(back) => assert_eq!(back, (held.ask, value), "another answer handed back"),
        }
    }

    /// Held handle `at` is dropped unanswered.
    fn drop_held(&mut self, at: usize) {
        let held = self.replies.held.swap_remove(at);
        if *TRACE {
            eprintln!("node {} drops reply {} (gate {:?})", held.node, held.ask, held.gate);
        }
        let ask = &mut self.replies.asks[held.ask];
        match held.gate {
            Some(msg) => ask.gated_drops.push((held.node, msg)),
            None => ask.dropped = true,
        }
        drop(held.reply);
    }

    /// Node `i`'s application stops waiting for one of its answers.
    fn give_up(&mut self, i: usize) {
        let me = self.nodes[i].id;
        let waiting: Vec<usize> = (0..self.replies.asks.len())
            .filter(|k| self.replies.asks[*k].asker == me && self.replies.asks[*k].rx.is_some())
            .collect();
        if waiting.is_empty() {
            return;
        }
        let k = waiting[self.rng.below(waiting.len())];
        if *TRACE {
            eprintln!("node {me} gives up on reply {k}");
        }
        let ask = &mut self.replies.asks[k];
        ask.gave_up = true;
        drop(ask.rx.take());
    }

    /// Ask `k`'s receiver is polled, if woken and its node runs.
    pub(super) fn poll_ask(&mut self, k: usize) {
        let ask = &mut self.replies.asks[k];
        let asker = ask.asker;
        if !self.nodes[asker as usize - 1].runs() || !ask.woken.take() {
            return;
        }
        let Some(rx) = ask.rx.as_mut() else { return };
        let waker = Waker::from(ask.woken.clone());
        let Poll::Ready(got) = Pin::new(rx).poll(&mut Context::from_waker(&waker)) else {
            return;
        };
        ask.rx = None;
        if *TRACE {
            eprintln!("node {asker}: reply {k} resolves: {got:?}");
        }
        self.resolved(k, got);
    }

    /// The fair finish, for node `i`: its application answers every handle it holds, and
    /// polls every receiver it waits on.
    pub(super) fn replies_finish(&mut self, i: usize) {
        let me = self.nodes[i].id;
        if !self.replies.on || !self.nodes[i].runs() {
            return;
        }
        while let Some(at) = self.replies.held.iter().position(|h| h.node == me) {
            self.answer(at);
        }
        for k in 0..self.replies.asks.len() {
            if self.replies.asks[k].asker == me {
                self.poll_ask(k);
            }
        }
    }
}
