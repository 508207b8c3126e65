//! Where an inbox's frames (credit, releases, fences' answers) go: the links to its sending
//! nodes, or in the delivery protocol's simulation the simulated network.

use std::fmt;

use crate::ids::{EndpointId, NodeId};
use crate::link::peer::Peers;
use crate::link::wire::{self, Frame};

/// Where an inbox's frames go: the links to its sending nodes ([`Peers`]), or, in the delivery
/// protocol's simulation, the simulated network. The inbox does no I/O of its own.
pub(crate) trait Wire: Send + Sync + fmt::Debug + 'static {
    /// Receiver `to` took `taken` of node `node`'s messages and grants it `grant` (coalesced into
    /// a frame of `batch` or more, unless `urgent`). False if `node` cannot be reached (it left).
    fn credit(
        &self,
        node: NodeId,
        to: EndpointId,
        taken: u32,
        grant: u32,
        urgent: bool,
        batch: u32,
    ) -> bool;
    /// A control frame for node `node` (numbered and resent until it has it).
    fn frame(&self, node: NodeId, frame: &Frame<'_>);
}

impl Wire for Peers {
    fn credit(
        &self,
        node: NodeId,
        to: EndpointId,
        taken: u32,
        grant: u32,
        urgent: bool,
        batch: u32,
    ) -> bool {
        match self.reach(node) {
            Some(p) => {
                p.outbox.push_credit(to, taken, grant, urgent, batch);
                true
            }
            None => false,
        }
    }

    fn frame(&self, node: NodeId, frame: &Frame<'_>) {
        if let Some(p) = self.reach(node) {
            p.outbox.push_frame(wire::encode(frame), true);
        }
    }
}
