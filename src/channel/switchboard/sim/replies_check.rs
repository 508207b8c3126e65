//! The invariants of the reply handles (see [`super::replies`]): as each receiver resolves,
//! after every step, once the faults stop, and in the report of a schedule that fails.

use super::{Sim, TRACE};
use crate::channel::oneshot::RecvError;
use crate::ids::NodeId;

impl Sim {
    /// Ask `k`'s receiver resolved with `got`.
    pub(super) fn resolved(&mut self, k: usize, got: Result<super::replies::Ans, RecvError>) {
        let ask = &self.replies.asks[k];
        let fail = |why: String| -> ! { panic!("reply {k} of node {}: {why}", ask.asker) };
        match &got {
            Ok((of, value)) => {
                if *of != k {
                    fail(format!("got the answer {value} of reply {of}"));
                }
                if !ask.sent.contains(value) {
                    fail(format!("got {value}, which no holder sent (sent {:?})", ask.sent));
                }
            }
            Err(RecvError::Dropped) => {
                // (A closed channel drops what it cannot deliver again: README, Close.)
                if !ask.dropped && !ask.returned && !self.closing {
                    fail(format!(
                        "dropped, and no copy was dropped where that tells (gated drops {:?}, \
                         takers {:?})",
                        ask.gated_drops, ask.takers
                    ));
                }
            }
            Err(RecvError::Lost(node)) => {
                if !ask.takers.iter().any(|(n, _)| n == node) {
                    fail(format!("lost with node {node}, which never took it ({:?})", ask.takers));
                }
                if !self.was_removed(*node) {
                    fail(format!("lost with node {node}, which never left"));
                }
            }
            Err(RecvError::Removed) => {
                if !self.was_removed(ask.asker) {
                    fail("its node never removed, told it was".to_owned());
                }
            }
            Err(e) => fail(format!("resolved with {e:?}, its node running")),
        }
        self.replies.asks[k].got = Some(got);
    }

    /// Node `node` was out of the membership at some point.
    fn was_removed(&self, node: NodeId) -> bool {
        self.log.iter().any(|r| !r.nodes.is_empty() && !r.nodes.contains_key(&node))
    }

    /// Asks of node `node` whose receiver still waits.
    fn waiting(&self, node: NodeId) -> usize {
        self.replies.asks.iter().filter(|a| a.asker == node && a.rx.is_some()).count()
    }

    /// After every step: each node's table of answers waited for holds no more entries than
    /// its applications wait for.
    pub(super) fn check_replies(&self) {
        if !self.replies.on {
            return;
        }
        for node in self.nodes.iter().filter(|n| n.runs()) {
            let entries = node.core.peers.replies.len();
            let waiting = self.waiting(node.id);
            assert!(
                entries <= waiting,
                "node {}: {entries} answers waited for, its applications wait for {waiting}",
                node.id
            );
        }
    }

    /// Once the faults stop: every asker alive has its answer, or an error. (A handle passed
    /// on by a node other than the asker, whose taker died between telling the passing node
    /// its message was taken and claiming the handle with the asker, waited for ever: seed
    /// 59736, with reply handles and without unnamed channels. Its claim goes through the
    /// passing node too now: `Peers::held`.)
    pub(super) fn replies_done(&self) -> bool {
        let live = |id: NodeId| !self.node(id).dead;
        let waiting = (0..self.replies.asks.len()).find(|k| {
            let a = &self.replies.asks[*k];
            live(a.asker) && a.rx.is_some()
        });
        if let Some(k) = waiting {
            if std::env::var("DCHAN_SIM_WHY").is_ok() {
                eprintln!("why replies: reply {k} waits: {}", self.describe_ask(k));
            }
            return false;
        }
        true
    }

    /// Once the schedule is done, and every grace is over: no node keeps an entry.
    pub(super) fn check_replies_settled(&self) {
        for node in self.nodes.iter().filter(|n| !n.dead) {
            let entries = node.core.peers.replies.len();
            let waiting = self.waiting(node.id);
            assert!(
                entries == 0 && waiting == 0,
                "node {} keeps {entries} answers waited for once done ({waiting} waiting)",
                node.id
            );
        }
    }

    fn describe_ask(&self, k: usize) -> String {
        let a = &self.replies.asks[k];
        let held: Vec<(NodeId, bool)> = self
            .replies
            .held
            .iter()
            .filter(|h| h.ask == k)
            .map(|h| (h.node, self.node(h.node).dead))
            .collect();
        format!(
            "of node {}, carried by {:?}, taken by {:?}, held by {held:?}, sent {:?}, \
             dropped {} (gated {:?}), returned {}, gave up {}, got {:?}",
            a.asker,
            a.carriers,
            a.takers,
            a.sent,
            a.dropped,
            a.gated_drops,
            a.returned,
            a.gave_up,
            a.got
        )
    }

    /// The reply handles still waited for, for a schedule's report.
    pub(super) fn describe_replies(&self) -> String {
        let mut out = String::new();
        for (k, a) in self.replies.asks.iter().enumerate() {
            if a.rx.is_some() || *TRACE {
                out += &format!("\n  reply {k}: {}", self.describe_ask(k));
            }
        }
        out
    }
}
