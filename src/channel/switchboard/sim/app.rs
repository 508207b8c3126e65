//! The simulation's applications, through the real endpoint types: a [`Sender`] sends its
//! messages one by one then waits until they are taken ([`Sender::wait_taken`]), each future
//! polled only when its waker was woken; a [`Receiver`] or [`AckReceiver`] is polled as a
//! stream when woken, and a `manual_ack` one acknowledges its deliveries in any order. Every
//! take is checked: sent before, not taken twice but in the README's windows, in order per
//! sender and receiver until a receiver goes away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::Stream;

use super::{AppReceiver, AppSender, Msg, Plan, Rx, Sim, Woken, BROADCAST, CHANNEL, TRACE};
use crate::channel::inbox::{ErasedInbox, Inbox};
use crate::channel::registrar::Registrar;
use crate::ids::{EndpointId, NodeId};
use crate::{AckReceiver, Receiver, SendError, Sender};

impl Sim {
    /// Node `i` has its endpoint `id` registered and applied: the handle is made, as
    /// `Node::sender` and `ReceiverBuilder` make it.
    pub(super) fn make(&mut self, i: usize, plan: Plan, id: EndpointId) {
        let node = &mut self.nodes[i];
        // Removed already, with its node: it starts over once a member again (as
        // `Core::register` notes it).
        if !node.core.registry.borrow().is_registered(id) {
            node.rejoin.removed = true;
        }
        let switch = &node.core.switch;
        let route = switch.route(CHANNEL);
        match plan {
            Plan::Sender { total } => {
                let registrar: Arc<dyn Registrar> = node.core.clone();
                let woken = Arc::new(Woken::default());
                woken.wake_by_ref();
                node.sender = Some(AppSender {
                    tx: Sender::new(registrar, route, id),
                    id,
                    first: id,
                    next: 0,
                    total,
                    op: None,
                    woken,
                    closed: false,
                    done: false,
                });
            }
            Plan::Receiver { capacity, manual } => {
                if *TRACE {
                    eprintln!(
                        "node {}: receiver {id}, capacity {capacity}, manual {manual}",
                        node.id
                    );
                }
                let links = Arc::downgrade(&node.core.peers);
                let inbox = Arc::new(Inbox::<super::replies::Wire>::new(
                    id,
                    route.clone(),
                    capacity as usize,
                    manual,
                    links,
                ));
                switch.add_inbox(inbox.clone());
                let registrar: std::sync::Weak<dyn Registrar> = {
                    let weak: std::sync::Weak<super::node::Core> = Arc::downgrade(&node.core);
                    weak
                };
                let rx = if manual {
                    Rx::Manual(AckReceiver::new(registrar, inbox.clone(), route))
                } else {
                    Rx::Auto(Receiver::new(registrar, inbox.clone(), route))
                };
                let woken = Arc::new(Woken::default());
                woken.wake_by_ref();
                node.receiver = Some(AppReceiver {
                    rx: Some(rx),
                    id,
                    first: id,
                    inbox,
                    capacity,
                    unacked: Vec::new(),
                    woken,
                    ended: false,
                });
            }
        }
    }

    /// Node `i`'s sending application goes on, if its waker was woken: the next send, or, all
    /// sent, the wait until they are taken.
    pub(super) fn send(&mut self, i: usize) {
        let id = self.nodes[i].id;
        if !self.nodes[i].runs() {
            return;
        }
        // (A node that left before everything it sent was taken starts no more sends: its
        // application is shutting down. One under way runs to its end.)
        let leaving = self.nodes[i].leave.is_some();
        let Some(s) = self.nodes[i].sender.as_mut() else { return };
        if s.done || (leaving && s.op.is_none()) || !s.woken.take() {
            return;
        }
        if s.op.is_none() {
            let tx = s.tx.clone();
            let (finished, next) = (s.closed || s.next == s.total, s.next);
            let op: super::Op = if finished {
                Box::pin(async move {
                    tx.wait_taken().await;
                    Ok(None)
                })
            } else if self.rng.below(4) == 0 {
                // A broadcast: a copy for every receiver this node's router has now.
                let seq = next | BROADCAST;
                let route = self.nodes[i].core.switch.find_route(CHANNEL).expect("a route");
                let steady = self.steady_receiver.filter(|r| route.target_ids().contains(r));
                self.broadcasts.insert((id, seq), steady);
                let msg = super::replies::Wire::plain((id, seq));
                Box::pin(async move {
                    tx.broadcast(msg).await.map(|_| Some(seq)).map_err(|e| SendError(e.0))
                })
            } else {
                // (Asking, perhaps: a reply handle inside.)
                let reply = self.attach(i, (id, next));
                let msg = super::replies::Wire { msg: (id, next), reply };
                Box::pin(async move { tx.send(msg).await.map(|()| Some(next)) })
            };
            self.nodes[i].sender.as_mut().expect("a sender").op = Some(op);
        }
        let s = self.nodes[i].sender.as_mut().expect("a sender");
        let waker = Waker::from(s.woken.clone());
        let op = s.op.as_mut().expect("an operation");
        let Poll::Ready(result) = op.as_mut().poll(&mut Context::from_waker(&waker)) else {
            return;
        };
        s.op = None;
        // Polled again at once: the next operation starts.
        s.woken.wake_by_ref();
        if *TRACE {
            eprintln!("node {id} sender: {result:?}");
        }
        match result {
            Ok(Some(seq)) => {
                s.next = (seq & !BROADCAST) + 1;
                self.sent.insert((id, seq));
            }
            Ok(None) => s.done = true,
            Err(SendError(msg)) => {
                s.closed = true;
                self.replies_returned(msg);
            }
        }
    }

    /// Node `i`'s receiving application takes what is ready, if its waker was woken.
    pub(super) fn take(&mut self, i: usize) {
        let id = self.nodes[i].id;
        if !self.nodes[i].runs() {
            return;
        }
        let Some(r) = self.nodes[i].receiver.as_mut() else { return };
        if r.ended || !r.woken.take() {
            return;
        }
        let waker = Waker::from(r.woken.clone());
        let mut cx = Context::from_waker(&waker);
        let got = match r.rx.as_mut() {
            None => return,
            // The receivers of odd nodes take what is ready in batches of up to 3
            // (`recv_many`), the others one at a time: both ways under every schedule.
            Some(Rx::Auto(rx)) if i % 2 == 1 => {
                let mut batch = Vec::new();
                let polled = std::pin::pin!(rx.recv_many(&mut batch, 3)).poll(&mut cx);
                match polled {
                    Poll::Ready(0) => None,
                    Poll::Ready(_) => Some(batch),
                    Poll::Pending => return,
                }
            }
            Some(Rx::Auto(rx)) => match Pin::new(rx).poll_next(&mut cx) {
                Poll::Ready(Some(msg)) => Some(vec![msg]),
                Poll::Ready(None) => None,
                Poll::Pending => return,
            },
            Some(Rx::Manual(rx)) => match Pin::new(rx).poll_next(&mut cx) {
                Poll::Ready(Some(mut delivery)) => {
                    // (Its reply handle, if any, the application holds apart.)
                    let msg =
                        super::replies::Wire { msg: delivery.msg, reply: delivery.reply.take() };
                    r.unacked.push(delivery);
                    Some(vec![msg])
                }
                Poll::Ready(None) => None,
                Poll::Pending => return,
            },
        };
        r.woken.wake_by_ref();
        let manual = matches!(r.rx, Some(Rx::Manual(_)));
        match got {
            Some(msgs) => {
                for msg in msgs {
                    self.took(id, msg.msg);
                    self.replies_took(id, msg, manual);
                }
            }
            None => r.ended = true,
        }
    }

    /// Node `i`'s `manual_ack` application acknowledges one of its deliveries, any of them.
    pub(super) fn ack(&mut self, i: usize) {
        let id = self.nodes[i].id;
        if !self.nodes[i].runs() {
            return;
        }
        let Some(r) = self.nodes[i].receiver.as_mut() else { return };
        if r.unacked.is_empty() {
            return;
        }
        let at = self.rng.below(r.unacked.len());
        let delivery = r.unacked.swap_remove(at);
        if *TRACE {
            eprintln!("node {id} acks {:?}", *delivery);
        }
        let msg = delivery.ack().msg;
        r.woken.wake_by_ref();
        self.replies_acked(id, msg);
    }

    /// Node `i`'s sender is dropped between two of its sends (its node goes on): what it sent is
    /// the node's to deliver still, to a receiver there now or to come, through wants alone
    /// (no receiver offers credit to a node without a sender).
    pub(super) fn drop_named_sender(&mut self) {
        // (Not with a send in progress: a cancelled broadcast may have reached some receivers
        // without returning, which the checks would take for messages never sent. Waiting for
        // what it sent to be taken, it may go: that wait holds nothing.)
        let between = |s: &super::AppSender| s.op.is_none() || s.closed || s.next == s.total;
        let can: Vec<usize> = (0..self.nodes.len())
            .filter(|i| {
                self.nodes[*i].runs() && self.nodes[*i].sender.as_ref().is_some_and(between)
            })
            .collect();
        if can.is_empty() {
            return;
        }
        let i = can[self.rng.below(can.len())];
        if *TRACE {
            eprintln!("drop sender of {}", self.nodes[i].id);
        }
        let sender = self.nodes[i].sender.take();
        drop(sender);
    }

    /// Node `i`'s receiver is dropped (its node goes on). A `manual_ack` one with deliveries
    /// unacknowledged: what it took may be delivered again (README, `manual_ack`).
    pub(super) fn drop_receiver(&mut self, i: usize) {
        let id = self.nodes[i].id;
        if self.nodes[i].steady || !self.nodes[i].runs() {
            return;
        }
        let Some(r) = self.nodes[i].receiver.as_mut() else { return };
        let Some(rx) = r.rx.take() else { return };
        if !r.unacked.is_empty() {
            let took: Vec<Msg> =
                self.taken.iter().filter(|(_, by)| by.contains(&id)).map(|(m, _)| *m).collect();
            self.may_repeat.extend(took);
        }
        r.unacked.clear();
        drop(rx);
        self.disorder = true;
        self.faults += 1;
    }

    /// Node `node`'s receiver took `msg`.
    fn took(&mut self, node: NodeId, msg: Msg) {
        if *TRACE {
            eprintln!("node {node} takes {msg:?}");
        }
        let broadcast = msg.1 & BROADCAST != 0;
        // A copy may be taken before its broadcast has reached every receiver (and returned).
        assert!(
            self.sent.contains(&msg) || (broadcast && self.broadcasts.contains_key(&msg)),
            "node {node} took {msg:?}, never sent"
        );
        let by = self.taken.entry(msg).or_default();
        // A message goes to one receiver; a broadcast, a copy to each.
        let twice = if broadcast { by.contains(&node) } else { !by.is_empty() };
        let loose = [msg.0, node].iter().chain(by.iter()).any(|n| self.loose.contains(n));
        assert!(
            !twice || loose || self.may_repeat.contains(&msg),
            "{msg:?} taken twice: by node {by:?}, then node {node}"
        );
        by.push(node);
        // Taken by a `manual_ack` receiver whose node is leaving and has told what it took: if
        // the hand-over comes before the acknowledgement, it goes elsewhere too (README,
        // manual_ack; the switchboard simulation's seed 68261 without freezes took such a
        // delivery twice, and the simulation counted only those taken before the telling).
        let taker = self.nodes.iter().find(|n| n.id == node);
        let leaving_manual = taker.is_some_and(|n| {
            n.leave.as_ref().is_some_and(super::leave::Leave::has_told)
                && n.receiver.as_ref().is_some_and(|r| matches!(r.rx, Some(Rx::Manual(_))))
        });
        if leaving_manual {
            self.may_repeat.insert(msg);
        }
        if !self.disorder {
            let seq = msg.1 & !BROADCAST;
            let thread = msg.1 & super::held::HELD;
            if let Some(last) = self.last.insert((msg.0, thread, node), seq) {
                assert!(seq > last, "node {node} took {msg:?} after {last} of node {}", msg.0);
            }
        }
    }

    /// Take in the messages each node dropped since last asked (README, Close); whether any.
    pub(super) fn collect_dropped(&mut self) -> bool {
        let mut any = false;
        for node in &self.nodes {
            let Some(route) = node.core.switch.find_route(CHANNEL) else { continue };
            for msg in route.take_dropped() {
                // (After its trace header, if it carries one: see `trace::carry_headers`.)
                let at = crate::link::envelope::split(&msg).map_or(0, |(_, at)| at);
                let msg: super::replies::Wire =
                    rmp_serde::from_slice(&msg[at..]).expect("a message of the simulation");
                self.dropped.insert(msg.msg);
                any = true;
            }
        }
        any
    }

    /// Credit out never above a receiver's capacity, nor what it holds with it beyond what
    /// removed nodes may still send on the credit they held.
    pub(super) fn check(&mut self) {
        // A message to redeliver is dropped only once every receiver has ended (README, Close).
        if self.collect_dropped() {
            // (A node leaving has handed its receiver over, or is about to; one removed while
            // alive has lost it, until it is registered again.)
            let last = self.log.last().expect("log").clone();
            let open: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|n| !n.dead && n.leave.is_none())
                .filter(|n| {
                    n.receiver
                        .as_ref()
                        .is_some_and(|r| r.rx.is_some() && !r.ended && last.is_registered(r.id))
                })
                .map(|n| n.id)
                .collect();
            assert!(open.is_empty(), "a redelivery dropped while receivers on {open:?} take");
        }
        for node in self.nodes.iter().filter(|n| n.runs()) {
            let Some(r) = &node.receiver else { continue };
            if r.rx.is_none() {
                continue;
            }
            let (out, committed) = r.inbox.books(|b| (b.out_total(), b.committed()));
            assert!(out <= r.capacity, "node {}: credit out {out} above {}", node.id, r.capacity);
            // A node that said it sends nothing more is counted no credit, and granted none
            // (held, the room was out to a node that had stopped: seed 79912's class).
            for (_, gone) in self.byes.iter().filter(|(reader, _)| *reader == node.id) {
                let (out_to, wants) = r.inbox.books(|b| (b.out_to(*gone), b.wants(*gone)));
                assert!(
                    out_to == 0 && !wants,
                    "node {}: credit {out_to} out to node {gone} (wanting: {wants}), which said Bye",
                    node.id
                );
            }
            // (A node removed while alive and not let back in yet counts too: what it sent on
            // its credit before it froze arrives while that credit is free again; seeds 33245
            // and 118683, as for unnamed channels.)
            let doomed = self.nodes.iter().filter(|n| n.rejoin.doomed).count() as u32;
            let slack = r.capacity * (self.crashed + self.started_over as u32 + doomed);
            assert!(
                committed <= r.capacity + slack,
                "node {}: {committed} held or out, capacity {}",
                node.id,
                r.capacity
            );
        }
    }
}

impl AppSender {
    pub(super) fn describe(&self) -> String {
        format!(
            "{}/{} sent{}{}",
            self.next,
            self.total,
            if self.closed { ", closed" } else { "" },
            if self.done { ", done" } else { "" }
        )
    }
}

impl AppReceiver {
    pub(super) fn has_unacked(&self) -> bool {
        !self.unacked.is_empty()
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{} (capacity {}){}{}, {} unacked, {}, books {:?}",
            self.inbox.id(),
            self.capacity,
            if self.rx.is_none() { ", dropped" } else { "" },
            if self.ended { ", ended" } else { "" },
            self.unacked.len(),
            self.inbox.ending(),
            self.inbox.books(|b| format!("{b:?}")),
        )
    }
}
