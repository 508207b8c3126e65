//! What a receiver's books ([`Grants`](super::Grants)) keep of a node that left the cluster,
//! and how it left: a message from it is still on its way, or held here, when the receiver
//! hears of the leave.

use crate::ids::NodeId;

/// Nodes that left with credit out a receiver keeps taking messages from (on that credit), or
/// owes a count: as many as the registry remembers graceful leaves, a scale-down of that many
/// nodes at once (with 64, the oldest departures' credit went while they still sent on it,
/// and what they sent was dropped as sent without credit). Entries are made only as nodes
/// leave with something to keep, and most go within a round trip (a graceful leaver's last
/// word, `Frame::Bye`, voids its credit).
pub(super) const MAX_LEFT: usize = crate::cluster::registry::MAX_GRACEFUL;

/// How a node left the cluster, as a receiver's books see it (see [`Grants::forget`](super::Grants::forget)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// Removed for not answering (dead, or cut off: it may come back as a new incarnation).
    Removed,
    /// It asked to leave, before the receiver's own node did (or that node stays): it handed
    /// over and stopped, and what the receiver holds of its messages is the receiver's to
    /// deliver.
    LeftFirst,
    /// It asked to leave after the receiver's own node did (the log's order): it is still
    /// handing over, and what the receiver holds of its messages goes back to it.
    LeftAfter,
}

impl Departure {
    /// It asked to leave (it hands over what it holds, on credit it may have had before).
    pub(crate) fn graceful(self) -> bool {
        self != Departure::Removed
    }
}

/// What a receiver keeps of a node that left: what it may still send on the credit it had
/// (taken in, and no more), and how many of its messages the receiver took in and never told
/// it of, in the order sent (answered if the node comes back as a new incarnation, which then
/// delivers again only the rest: see [`Grants::rejoined`](super::Grants::rejoined)). Kept while either is nonzero.
#[derive(Debug)]
pub(super) struct Left {
    pub(super) node: NodeId,
    pub(super) credit: u32,
    /// Whether `credit` is still counted against the capacity (in `out_total`): for a node that
    /// left gracefully, until it arrives, is given back, or is void (the node's time is up).
    /// Such a node hands over what it holds after its leave, on credit it may have had before:
    /// freed at the leave, that credit was granted to another node meanwhile, and the
    /// hand-over took the receiver beyond its capacity (the switchboard simulation's seed
    /// 114199, with dropped senders). A node removed for not answering is not waited for (the
    /// README's one exception to the capacity): kept counted until its time was up, a dead
    /// node's credit starved the hand-over of another that left meanwhile, and what that one
    /// held was lost (seed 108581, once seed 114199 kept it counted).
    pub(super) counted: bool,
    /// `None` once one of its messages is delivered and not acknowledged: those that follow are
    /// no longer a prefix of what the node kept (it delivers them again, at-least-once). Not for
    /// a node that left first ([`Departure::LeftFirst`]): what this receiver took in is all its.
    pub(super) owed: Option<u32>,
    /// It left gracefully before the receiver's node left ([`Departure::LeftFirst`]): what
    /// the receiver holds of it is never given back (see [`Grants::give_back_owed`](super::Grants::give_back_owed)).
    pub(super) first: bool,
}
