//! Receivers that left the registry, as a router keeps them until what this node sent them is
//! settled: the messages it keeps for them count as in flight (a sender's `wait_taken` waits
//! for them) until their release comes and what they did not take goes elsewhere.

use std::sync::Arc;

use super::{ChannelRoute, Target};
use crate::ids::EndpointId;
use crate::link::peer::Peer;

impl ChannelRoute {
    /// The peer that carries what this node sends receiver `id` (a receiver now, or departed):
    /// the link it was sent on, which this node may have forgotten since (the receiver's node
    /// left, and its grace period is over), while what it keeps for `id` is still to go
    /// elsewhere.
    pub(crate) fn peer_of(&self, id: EndpointId) -> Option<Arc<Peer>> {
        let find = |targets: &[Target]| {
            targets.iter().find_map(|t| match t {
                Target::Remote { id: to, peer, .. } if *to == id => Some(peer.clone()),
                _ => None,
            })
        };
        find(&self.read()).or_else(|| self.departed().and_then(|d| find(&d)))
    }

    /// Departed receivers: (id, released, voided, kept) (for the simulation's reports).
    #[cfg(test)]
    pub(crate) fn departed_state(&self) -> Vec<(EndpointId, bool, bool, u64)> {
        self.departed()
            .into_iter()
            .flat_map(|d| d.clone())
            .map(|t| match &t {
                Target::Remote { id, window, .. } => {
                    (*id, window.is_released(), window.is_voided(), Self::kept(&t))
                }
                Target::Local(_) => (t.id(), false, false, 0),
            })
            .collect()
    }

    /// Receivers that left the registry and are still counted here.
    pub(crate) fn departed_count(&self) -> usize {
        self.departed().map_or(0, |d| d.len())
    }

    /// Messages this node sent to receivers on other nodes that they have not taken yet, those
    /// it holds for receivers that left the registry and are not yet released included. (A
    /// release counts what it takes back as re-routing before it stops counting here: see
    /// [`crate::link::outbox::Outbox::take_kept`].)
    pub(crate) fn in_flight(&self) -> u64 {
        // Targets first: a target replaced meanwhile is listed as departed by then.
        let current: u64 = self.read().iter().map(Self::kept).sum();
        let Some(mut departed) = self.departed() else { return current };
        departed.retain(Self::unsettled);
        current + departed.iter().map(Self::kept).sum::<u64>()
    }

    /// Forget the departed receivers that are settled (released, and nothing of this node's
    /// kept for them).
    pub(crate) fn prune_departed(&self) {
        if let Some(mut departed) = self.departed() {
            departed.retain(Self::unsettled);
        }
    }

    /// Messages this node holds for a receiver, sent and not taken.
    fn kept(target: &Target) -> u64 {
        match target {
            Target::Remote { id, peer, .. } => peer.outbox.kept_count(*id),
            Target::Local(_) => 0,
        }
    }

    /// Whether a departed receiver may still have messages of this node's: not released yet,
    /// or released and its messages not yet taken back. A window this node voided as it
    /// started over is released here: its receiver is gone, and no release will come for it
    /// (the receiver's release finds the window that replaced it, or none), while what was
    /// kept on it goes again with the start-over (kept for ever, it held the departed
    /// receiver with it: the switchboard simulation's seed 1830, with freezes, once it bounded
    /// the tables).
    pub(super) fn unsettled(target: &Target) -> bool {
        if let Target::Remote { window, .. } = target {
            if window.is_voided() {
                window.release();
            }
        }
        !matches!(target, Target::Remote { window, .. } if window.is_released())
            || Self::kept(target) > 0
    }
}
