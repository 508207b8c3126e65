//! A node removed while alive: frozen (SIGSTOP, a long GC pause) past the failure timeout, or
//! cut off from every other node that long while it runs on (a partition), it is removed by the
//! cluster (its endpoints, then its membership); thawed or reached again, it asks back in and is
//! let in, and starts over as `node::Core` does it: its registry shows a live endpoint vanished
//! (`check_removed`), `Switchboard::start_over` runs on its runtime (its peers answer its
//! `Request::Rejoined` through the real reader and dispatch), then every live endpoint is
//! registered again and a receiver renamed (`register_again`). Frames to a frozen node wait on
//! their connection; what it wrote before it froze may arrive at any time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Sim, Then, CHANNEL, TRACE};
use crate::ids::EndpointId;
use crate::rpc::{Command, EndpointKind, Outcome};
use crate::sync::lock;

/// Where a node stands with being removed while alive.
#[derive(Default)]
pub(super) struct Rejoin {
    /// Frozen: nothing of it runs.
    pub(super) frozen: bool,
    /// Cut off from every other node past the failure timeout (a partition): it runs (its
    /// application sends and takes, its timers fire, its own senders reach its own receiver),
    /// but no frame crosses its links, it applies nothing of the log and writes nothing to it.
    pub(super) cut: bool,
    /// A live endpoint of it vanished from its registry, or it is out of the membership: it was
    /// removed.
    pub(super) removed: bool,
    /// The cluster removed it (frozen or cut off) and it has not started over yet: an unnamed
    /// channel it makes meanwhile ends when it does, and other nodes close its senders as they
    /// see the removal.
    pub(super) doomed: bool,
    /// The membership change that let it in, as it last saw it (0: not a member yet): see
    /// `Registry::admitted`.
    admitted: u64,
    /// It starts over: settling with its peers, then registering its endpoints again (new
    /// registrations wait meanwhile).
    pub(super) starting_over: bool,
    /// Set by the start-over task once settled.
    settled: Option<Arc<AtomicBool>>,
    /// Registrations again not yet applied here.
    again: usize,
    /// It started over with messages of its old incarnation not known taken: until it has
    /// settled, which delivers them again, its close fence must not go out (README, Close: "a
    /// node starting over sends its fence only after what it delivers again").
    pub(super) fence_held: bool,
}

impl Rejoin {
    /// The node is a member, as `registry` shows (it formed the cluster): the admission it acts
    /// under, as `LiveEndpoints::joined` notes it when `Node::join` returns.
    pub(super) fn joined(&mut self, registry: &crate::cluster::registry::Registry, me: u64) {
        self.admitted = registry.admitted(me).unwrap_or(0);
    }
}

impl Sim {
    /// Node `i` freezes past the failure timeout (or, `cut`, is cut off from the others that
    /// long, running on): the cluster removes it.
    pub(super) fn freeze(&mut self, i: usize, cut: bool) {
        let node = &self.nodes[i];
        let busy = node.rejoin.starting_over
            || node.leave.is_some()
            || node.rejoin.frozen
            || node.rejoin.cut;
        let member = self.log.last().expect("log").nodes.contains_key(&node.id);
        if node.dead || node.steady || busy || !member {
            return;
        }
        let id = node.id;
        if *TRACE {
            eprintln!("node {id} {}", if cut { "is cut off" } else { "freezes" });
        }
        if cut {
            self.nodes[i].rejoin.cut = true;
        } else {
            self.nodes[i].rejoin.frozen = true;
        }
        // What it sent, and what its receiver took, may be taken again (README: a node removed
        // while alive; the credit simulation checks those windows exactly).
        self.loose.insert(id);
        self.disorder = true;
        self.unnamed_owner_removed(id);
        self.nodes[i].rejoin.doomed = true;
        self.remove(id, false);
    }

    /// Node `i` thaws: it asks back in (it has heard no leader for a failure timeout) and the
    /// leader lets it in.
    pub(super) fn thaw(&mut self, i: usize) {
        let (frozen, cut) = (self.nodes[i].rejoin.frozen, self.nodes[i].rejoin.cut);
        if !(frozen || cut) || self.nodes[i].dead {
            return;
        }
        let id = self.nodes[i].id;
        if *TRACE {
            eprintln!("node {id} {}", if cut { "is reached again" } else { "thaws" });
        }
        self.nodes[i].rejoin.frozen = false;
        self.nodes[i].rejoin.cut = false;
        if cut {
            // Its connections broke during the cut: what they carried is lost, or late.
            let late = self.rng.below(2) == 0;
            let others: Vec<_> = self.nodes.iter().map(|n| n.id).filter(|o| *o != id).collect();
            for other in others {
                self.reset(id, other, late);
            }
        }
        let last = self.log.last().expect("log").clone();
        let mut members: Vec<_> = last.nodes.keys().copied().collect();
        members.push(id);
        self.commit_membership(&members);
        self.started_over += 1;
    }

    /// After node `i`'s registry refresh, as `Core::check_removed`: a live endpoint vanished,
    /// and it is a member again: it starts over.
    pub(super) fn check_removed(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.dead {
            return;
        }
        let vanished = node.core.switch.take_vanished();
        let live = [
            node.sender.as_ref().map(|s| s.id),
            node.receiver.as_ref().filter(|r| r.rx.is_some()).map(|r| r.id),
        ];
        if vanished.iter().any(|v| live.contains(&Some(*v))) {
            node.rejoin.removed = true;
        }
        let registry = node.core.registry.borrow().clone();
        let member = registry.nodes.contains_key(&node.id);
        if let Some(admitted) = registry.admitted(node.id) {
            let before = std::mem::replace(&mut node.rejoin.admitted, admitted);
            if before != 0 && before != admitted && node.leave.is_none() {
                node.rejoin.removed = true;
            }
        }
        if !node.rejoin.removed || !member || node.leave.is_some() || node.rejoin.starting_over {
            return;
        }
        if *TRACE {
            eprintln!("node {} starts over", node.id);
        }
        node.rejoin.removed = false;
        node.rejoin.doomed = false;
        node.rejoin.starting_over = true;
        // (Its unnamed channels end: `Switchboard::end_unnamed`.)
        let id = node.id;
        self.unnamed_owner_removed(id);
        let node = &mut self.nodes[i];
        // (Unless its fence went out before, in an earlier refresh: before it was removed.)
        let route = node.core.switch.find_route(CHANNEL);
        let fenced = node.core.switch.fenced_before();
        node.rejoin.fence_held = !fenced && route.is_some_and(|r| r.in_flight() > 0);
        let settled = Arc::new(AtomicBool::new(false));
        let (core, done) = (node.core.clone(), settled.clone());
        let started = core.switch.start_over();
        tokio::spawn(async move {
            core.switch.settle(started).await;
            done.store(true, Ordering::SeqCst);
        });
        node.rejoin.settled = Some(settled);
    }

    /// Nodes whose start-over has settled register their live endpoints again.
    pub(super) fn rejoins(&mut self) {
        for i in 0..self.nodes.len() {
            let settled =
                self.nodes[i].rejoin.settled.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
            if settled && self.nodes[i].reachable() {
                self.nodes[i].rejoin.settled = None;
                self.nodes[i].rejoin.fence_held = false;
                self.register_again(i);
            }
        }
    }

    /// As `Core::register_again`: every live endpoint its registry no longer lists is
    /// registered again under its channel; a receiver whose channel was closed meanwhile ends.
    fn register_again(&mut self, i: usize) {
        let registry = self.nodes[i].core.registry.borrow().clone();
        let gone = |id: EndpointId| registry.issued(id) && !registry.is_registered(id);
        let mut stale = Vec::new();
        if let Some(s) = self.nodes[i].sender.as_ref().filter(|s| gone(s.id)) {
            stale.push((s.first, s.id, EndpointKind::Sender, 0));
        }
        if let Some(r) = self.nodes[i].receiver.as_ref().filter(|r| r.rx.is_some() && gone(r.id)) {
            stale.push((r.first, r.id, EndpointKind::Receiver, r.capacity));
        }
        for (first, current, kind, capacity) in stale {
            match self.commit_register(i, kind, capacity) {
                (at, Outcome::Registered(id)) => {
                    self.nodes[i].awaiting.push((at, Then::Again(first, id)));
                    self.nodes[i].rejoin.again += 1;
                }
                (_, Outcome::Closed) if kind == EndpointKind::Receiver => {
                    self.nodes[i].core.switch.orphaned(current);
                }
                (_, Outcome::Closed) => {}
                (_, other) => panic!("registration again refused: {other:?}"),
            }
        }
        if self.nodes[i].rejoin.again == 0 {
            self.started_over_done(i);
        }
    }

    /// Node `i`'s start-over is over: removed again meanwhile, it goes round again, as
    /// `Core::check_removed` does after `register_again` (left out, a node removed and let back
    /// in while it started over, its registry skipping the removal, never started over again,
    /// and its channel made in between stayed open: seed 25339, with reply handles).
    fn started_over_done(&mut self, i: usize) {
        self.nodes[i].rejoin.starting_over = false;
        self.check_removed(i);
    }

    /// Node `i` applied the registration again of its endpoint first registered as `first`.
    pub(super) fn registered_again(&mut self, i: usize, first: EndpointId, id: EndpointId) {
        let node = &mut self.nodes[i];
        if let Some(s) = node.sender.as_mut().filter(|s| s.first == first) {
            s.id = id;
            lock(&node.core.current).insert(first, id);
        }
        if let Some(r) = node.receiver.as_mut().filter(|r| r.first == first) {
            if r.rx.is_some() {
                node.core.switch.renamed(r.id, id);
                r.id = id;
                lock(&node.core.current).insert(first, id);
            } else {
                // Dropped meanwhile: the new registration has no handle.
                let cmd = Command::Deregister { channel: CHANNEL.to_owned(), id };
                lock(&node.core.writes).push(cmd);
            }
        }
        node.rejoin.again -= 1;
        if node.rejoin.again == 0 {
            self.started_over_done(i);
        }
    }
}
