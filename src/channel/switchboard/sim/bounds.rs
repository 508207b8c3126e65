//! Every node's tables bounded by what is live (issue 18). After every step, loosely: no
//! table keeps more than one entry per receiver the schedule registered, per node, or per
//! channel (what a node keeps for a receiver that is gone waits for that receiver's release,
//! which may be on its way for as long as the schedule holds it back). Once the schedule is
//! done and the grace periods are over, exactly: nothing is kept for a receiver or a node that
//! is gone.

use std::time::Duration;

use super::schedule::settle_tasks;
use super::{Sim, CHANNEL};
use crate::channel::switchboard::Tables;
use crate::ids::EndpointId;

/// Longer than every grace period a node keeps something of a receiver or a node that is gone
/// for (a departed member's credit: 10 s; a departing peer's links; a hand-over: 5 s).
const GRACE: Duration = Duration::from_secs(30);

impl Sim {
    /// Every receiver of the channel the schedule registered (the log only grows: what was
    /// read of it is not read again).
    fn receivers_ever(&mut self) -> usize {
        let (read, seen) = &mut self.receivers_seen;
        for r in &self.log[*read..] {
            if let Some(c) = r.channel(CHANNEL) {
                seen.extend(c.receivers().map(|e| e.id));
            }
        }
        *read = self.log.len();
        seen.len()
    }

    /// After every step: no table keeps more than an entry per receiver, node or channel.
    pub(super) fn check_bounds(&mut self) {
        let members = self.nodes.len();
        // (Unnamed channels count as receivers: each node keeps at most one router, window
        // and early grant for each.)
        let chans = self.unnamed.chans.len();
        let receivers = self.receivers_ever() + chans;
        for node in self.nodes.iter().filter(|n| !n.dead) {
            let owned = self.unnamed.chans.iter().filter(|c| c.owner == node.id);
            // (A leaving node's unnamed inboxes are detached as it hands over: one whose
            // receiver is dropped after stays until the node stops, its drop hook not run again.)
            let leaving = node.leave.is_some();
            let unnamed_inboxes = owned.filter(|c| c.rx.is_some() || leaving).count();
            let t = node.core.switch.tables();
            let fail = |what: &str| -> ! {
                panic!("node {}: {what}, with {receivers} receivers registered: {t:?}", node.id)
            };
            if t.routes > 1 {
                fail("more than one router for the one channel");
            }
            // Its receiver, and one dropped or started over and not yet deregistered.
            if t.inboxes > 2 + unnamed_inboxes {
                fail("more inboxes than its receivers");
            }
            if t.unnamed > chans {
                fail("more unnamed routers than unnamed channels");
            }
            if t.books > 5 * members {
                fail("a receiver's books keep more than a few entries per node");
            }
            if t.peers > 2 * members {
                fail("more peers than nodes");
            }
            if t.windows > receivers || t.early > receivers || t.departed > receivers {
                fail("more windows, early grants or departed receivers than receivers");
            }
        }
    }

    /// Once the schedule is done: time passes beyond every grace period while every node
    /// applies and refreshes, and every frame is written and read; then each node keeps
    /// entries only for what is live.
    pub(super) async fn check_tables_settle(&mut self) {
        // Every handle of an unnamed channel is dropped: its tables must empty.
        self.drop_unnamed_all();
        for _ in 0..GRACE.as_secs() {
            for i in 0..self.nodes.len() {
                self.commit_writes(i);
                while !self.nodes[i].dead && self.nodes[i].applied + 1 < self.log.len() {
                    self.apply(i);
                }
                self.refresh(i);
            }
            for (from, to) in self.writable() {
                self.write(from, to);
            }
            while let Some(&(from, to, c)) = self.readable().first() {
                self.read(from, to, c);
            }
            settle_tasks(4).await;
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let last = self.log.last().expect("log").clone();
        let live: Vec<_> = self.nodes.iter().filter(|n| !n.dead).map(|n| n.id).collect();
        let channel = last.channel(CHANNEL);
        for node in self.nodes.iter().filter(|n| !n.dead) {
            // Its route settles what its departed receivers took when asked (`in_flight`).
            if let Some(route) = node.core.switch.find_route(CHANNEL) {
                route.in_flight();
            }
            let t: Tables = node.core.switch.tables();
            // Its receivers: those registered, and one whose handle the application still holds
            // (registered again once its node started over, or not, the channel closed first).
            let registered: Vec<EndpointId> = channel.map_or(Vec::new(), |c| {
                c.receivers().filter(|e| e.node == node.id).map(|e| e.id).collect()
            });
            let held = node.receiver.as_ref().filter(|r| r.rx.is_some()).map(|r| r.id);
            let mine =
                registered.len() + usize::from(held.is_some_and(|id| !registered.contains(&id)));
            let others = channel.map_or(0, |c| c.receivers().filter(|e| e.node != node.id).count());
            let fail = |what: &str| -> ! {
                panic!(
                    "node {} keeps {what} once done (live nodes {live:?}, its receivers {mine}, \
                     others {others}): {t:?}, peers and book {:?}\n{}",
                    node.id,
                    node.core.peers.ids(),
                    self.report()
                )
            };
            if t.departed > 0 {
                fail("departed receivers");
            }
            if t.unnamed > 0 {
                fail("unnamed channels' routers once every handle is dropped");
            }
            if t.early > 0 {
                fail("grants for receivers it never applied");
            }
            if t.windows > others {
                fail("windows for receivers that are gone");
            }
            if t.inboxes > mine {
                fail("inboxes of receivers that are gone");
            }
            if t.books > 4 * live.len() {
                fail("books of nodes that are gone");
            }
            if t.peers > 2 * (live.len() - 1) {
                fail("peers that are gone");
            }
        }
    }
}
