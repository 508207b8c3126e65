//! A node leaving gracefully, as `Node::shutdown` does it, on the node's runtime: the
//! switchboard is told it is leaving, tells every sending node what its receivers took and gives
//! back unused credit (waiting until every peer has it), the leader commits the leave (the
//! simulation's log: the node's endpoints, then its membership), the routers stop targeting
//! the node, its receivers hand over what they hold (waiting until every redelivery is out and
//! every peer has it), and the node stops. Its application first waits until what it sent was
//! taken (`Sender::wait_taken`), as the README asks of a process that must lose nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Sim, TRACE};
use crate::rpc::Command;

/// Where a node's leave stands.
pub(super) struct Leave {
    /// The leave task has told what was taken so far (`Switchboard::tell_taken` ran up to its
    /// first wait): what is acknowledged later is told too late.
    telling: Arc<AtomicBool>,
    /// Its unacknowledged deliveries were noted as such.
    noted: bool,
    /// The leave task asks the leader to commit (it has told what was taken).
    asked: Arc<AtomicBool>,
    /// Answered once the leave is committed.
    committed: Option<oneshot::Sender<u64>>,
    /// Its removal is written once already, as a leader's that leaves (see `Sim::leaves`).
    written: bool,
    /// The leave task has handed everything over: the node stops.
    done: Arc<AtomicBool>,
}

impl Leave {
    /// It has told what its receiver took: a `manual_ack` delivery it takes from now on is
    /// not acknowledged in time if its hand-over comes first (README, manual_ack).
    pub(super) fn has_told(&self) -> bool {
        self.telling.load(Ordering::SeqCst)
    }
}

impl Sim {
    /// Node `i` starts leaving, if it may: not the steady one, and its sender (if any) has seen
    /// everything it sent taken (or, with impatient leaves, whatever its sender has done: what
    /// it sent and is not taken yet goes on without it, and what its own receiver holds of it
    /// is handed over).
    pub(super) fn leave(&mut self, i: usize) {
        let node = &self.nodes[i];
        let sender_done = self.impatient || node.sender.as_ref().is_none_or(|s| s.done);
        let registering = !node.plans.is_empty() || !node.awaiting.is_empty();
        // (A node cut off cannot reach the leader to leave.)
        let busy = node.leave.is_some() || node.rejoin.starting_over || node.rejoin.cut;
        if !node.runs() || node.steady || busy || !sender_done || registering {
            return;
        }
        if *TRACE {
            eprintln!("node {} leaves", node.id);
        }
        let id = node.id;
        self.disorder = true;
        self.faults += 1;
        // Its unnamed channels end with it (`Node::channel`: once its node stops).
        self.unnamed_stopped(id);
        let core = self.nodes[i].core.clone();
        let (asked, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (commit, committed) = oneshot::channel();
        let (ask, finished) = (asked.clone(), done.clone());
        let telling = Arc::new(AtomicBool::new(false));
        let told = telling.clone();
        tokio::spawn(async move {
            core.switch.leaving();
            told.store(true, Ordering::SeqCst);
            core.switch.tell_taken().await;
            if *TRACE {
                eprintln!("node {id}: told what was taken");
            }
            ask.store(true, Ordering::SeqCst);
            let Ok(removed) = committed.await else { return };
            core.switch.left();
            core.switch.hand_over(removed).await;
            if *TRACE {
                eprintln!("node {id}: handed over");
            }
            finished.store(true, Ordering::SeqCst);
        });
        self.nodes[i].leave = Some(Leave {
            telling,
            noted: false,
            asked,
            committed: Some(commit),
            written: false,
            done,
        });
    }

    /// Whether a node's leave is committed and it is handing over.
    pub(super) fn handing_over(&self) -> bool {
        let over = |l: &Leave| l.committed.is_none() && !l.done.load(Ordering::SeqCst);
        self.nodes.iter().any(|n| !n.dead && n.leave.as_ref().is_some_and(over))
    }

    /// The leaves asked for are committed; the nodes that handed everything over stop.
    pub(super) fn leaves(&mut self) {
        for i in 0..self.nodes.len() {
            let (id, dead) = (self.nodes[i].id, self.nodes[i].dead);
            let Some(leave) = self.nodes[i].leave.as_mut() else { continue };
            if dead {
                continue;
            }
            let asked = leave.asked.load(Ordering::SeqCst) && leave.committed.is_some();
            let written = leave.written;
            let done = leave.done.load(Ordering::SeqCst);
            let note =
                leave.telling.load(Ordering::SeqCst) && !std::mem::replace(&mut leave.noted, true);
            // It has told what it took: deliveries it has not acknowledged by now go elsewhere
            // too (README, manual_ack), whenever it acknowledges them.
            if note && self.nodes[i].receiver.as_ref().is_some_and(|r| r.has_unacked()) {
                let took: Vec<_> =
                    self.taken.iter().filter(|(_, by)| by.contains(&id)).map(|(m, _)| *m).collect();
                self.may_repeat.extend(took);
            }
            if asked && self.rewritten_leaves && !written && self.rng.below(3) == 0 {
                // As a leader's leave: it writes the node's removal and steps down, and the
                // next leader writes it again, with the membership change, later (other leaves
                // may come in between); only that one answers.
                if *TRACE {
                    eprintln!("node {id}'s leave is written, and will be again");
                }
                self.faults += 1;
                self.commit(&Command::RemoveNode { node: id, graceful: true });
                if let Some(leave) = self.nodes[i].leave.as_mut() {
                    leave.written = true;
                }
            } else if asked && (!written || self.rng.below(2) == 0) {
                let removed = self.remove(id, true);
                if let Some(commit) = self.nodes[i].leave.as_mut().and_then(|l| l.committed.take())
                {
                    let _ = commit.send(removed);
                }
            }
            if done {
                if *TRACE {
                    eprintln!("node {id} has left");
                }
                self.stop(i);
                self.left_at.insert(id, self.faults);
                // What it wrote last still arrives; nothing reaches it any more.
                self.cut_dead(id, true);
            }
        }
    }
}
