//! The invariants of the unnamed channels (see [`super::unnamed`]): after every take and every
//! step, once the faults stop, and in the report of a schedule that fails.

use super::unnamed::UMsg;
use super::{Sim, TRACE};
use crate::ids::NodeId;

impl Sim {
    /// The owner's receiver of unnamed channel `k` took `msg`.
    pub(super) fn utook(&mut self, k: usize, msg: UMsg) {
        let (chan, from, seq) = msg;
        if *TRACE {
            eprintln!("unnamed {k} takes {msg:?}");
        }
        assert_eq!(chan, k, "unnamed {k} took {msg:?}, a message of another channel");
        assert!(self.unnamed.sent.contains(&msg), "unnamed {k} took {msg:?}, never sent");
        let loose = self.loose.contains(&from);
        let times = self.unnamed.taken.entry(msg).or_default();
        *times += 1;
        assert!(*times == 1 || loose, "unnamed {k} took {msg:?} {times} times");
        if let Some(last) = self.unnamed.last.insert((k, from), seq) {
            assert!(loose || seq > last, "unnamed {k} took {msg:?} after {last} of node {from}");
        }
    }

    /// Unnamed channel `k`'s receiver said `None`: after a close, or its node's removal (or
    /// leave), and, after a close, having yielded what every node alive and never removed sent.
    pub(super) fn uended(&mut self, k: usize) {
        if *TRACE {
            eprintln!("unnamed {k} ends");
        }
        let c = &mut self.unnamed.chans[k];
        c.ended = true;
        let leaving = self.nodes[c.owner as usize - 1].leave.is_some();
        assert!(
            !c.closers.is_empty() || c.owner_removed || leaving,
            "unnamed {k} ended, never closed, its node {} never removed",
            c.owner
        );
        if !c.over() && !leaving {
            if let Some(lost) = self.unnamed_missing(k, false).first() {
                panic!("unnamed {k} ended without {lost:?}: {}", self.report());
            }
        }
    }

    /// Messages sent on unnamed channel `k` and never taken, of nodes alive (and not leaving),
    /// and never removed while alive unless `removed_too`.
    fn unnamed_missing(&self, k: usize, removed_too: bool) -> Vec<UMsg> {
        let counts = |from: NodeId| {
            let node = self.node(from);
            !node.dead && node.leave.is_none() && (removed_too || !self.loose.contains(&from))
        };
        let sent = self.unnamed.sent.range((k, 0, 0)..(k + 1, 0, 0));
        sent.filter(|m| counts(m.1) && !self.unnamed.taken.contains_key(m)).copied().collect()
    }

    /// After every step: credit out never above an unnamed receiver's capacity, nor what it
    /// holds with it beyond what removed nodes may still send on the credit they held.
    pub(super) fn check_unnamed(&self) {
        for (k, c) in self.unnamed.chans.iter().enumerate() {
            if c.rx.is_none() || !self.node(c.owner).runs() {
                continue;
            }
            let (out, committed) = c.inbox.books(|b| (b.out_total(), b.committed()));
            assert!(out <= c.capacity, "unnamed {k}: credit out {out} above {}", c.capacity);
            // (Removed while alive and not let back in yet, or stopped (a crash, a leave),
            // counts as well: what it sent on its credit before it knew is taken in as it
            // arrives, while that credit is free again.)
            let doomed = self.nodes.iter().filter(|n| n.rejoin.doomed).count() as u32;
            let stopped = self.unnamed.leaving;
            let slack = c.capacity * (self.crashed + self.started_over as u32 + doomed + stopped);
            assert!(
                committed <= c.capacity + slack,
                "unnamed {k}: {committed} held or out, capacity {}",
                c.capacity
            );
        }
    }

    /// Once the faults stop: every sending task has finished; every message of a live node
    /// was taken while the receiver lives and has not ended; every receiver has ended after a
    /// close that reached it, or its node's removal; the senders of a channel whose receiver
    /// or its node is gone say closed, where they sent on it.
    pub(super) fn unnamed_done(&self) -> bool {
        let live = |id: NodeId| !self.node(id).dead;
        for (k, c) in self.unnamed.chans.iter().enumerate() {
            let holders = c.holders.iter().filter(|(n, _)| live(**n));
            for (_, h) in holders {
                // (A router that never sent has not asked the owner: it learns when it sends.)
                let told = !c.over() || !h.sent_on_route || h.senders.iter().all(|s| s.is_closed());
                if !h.finished() || !told {
                    if std::env::var("DCHAN_SIM_WHY").is_ok() {
                        eprintln!(
                            "why unnamed {k}: finished {} told {} over {} sent_on_route {}",
                            h.finished(),
                            told,
                            c.over(),
                            h.sent_on_route
                        );
                    }
                    return false;
                }
            }
            let owner = self.node(c.owner);
            if owner.dead || c.rx.is_none() {
                continue;
            }
            // A close from the owner, or from a node that stayed, reached the receiver.
            let closed = c.closers.iter().any(|n| {
                *n == c.owner
                    || (live(*n) && !self.loose.contains(n) && self.node(*n).leave.is_none())
            });
            if (closed || c.owner_removed) && !c.ended {
                return false;
            }
            if !c.over() && !c.ended && !self.unnamed_missing(k, true).is_empty() {
                return false;
            }
        }
        true
    }

    /// The unnamed channels, for a schedule's report.
    pub(super) fn describe_unnamed(&self) -> String {
        let mut out = String::new();
        for (k, c) in self.unnamed.chans.iter().enumerate() {
            let sent = self.unnamed.sent.range((k, 0, 0)..(k + 1, 0, 0)).count();
            let taken = self.unnamed.taken.keys().filter(|m| m.0 == k).count();
            out += &format!(
                "\n  unnamed {k} ({:x}) of node {}, capacity {}: sent {sent}, taken {taken}{}{}{}{}, \
                 closed by {:?}, books {}, {}",
                c.id,
                c.owner,
                c.capacity,
                if c.ended { ", ended" } else { "" },
                if c.dropped { ", receiver dropped" } else { "" },
                if c.owner_stopped { ", owner stopped" } else { "" },
                if c.owner_removed { ", owner removed" } else { "" },
                c.closers,
                c.inbox.books(|b| format!("{b:?}")),
                c.inbox.ending(),
            );
            for (n, h) in &c.holders {
                let closed: Vec<bool> = h.senders.iter().map(|s| s.is_closed()).collect();
                out += &format!(
                    "\n    node {n}: {}/{} sent{}, senders closed {closed:?}",
                    h.next,
                    h.total,
                    if h.failed { ", failed" } else { "" },
                );
            }
            let missing = self.unnamed_missing(k, true);
            out += &format!("\n    not taken (first 10): {:?}", &missing[..missing.len().min(10)]);
        }
        out
    }
}
