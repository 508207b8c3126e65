//! The parts of a channel's router on this node that most routers never need, made when first
//! needed: receivers that left the registry with messages still kept for them, messages to
//! re-route and receivers waiting to end until they are, dead letters, the senders decoded
//! from messages, an unnamed channel's name as shown. (An unnamed channel, one per request
//! maybe, has a router too: 8 bytes for these, not 200.)

use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};

use super::{ChannelRoute, Target};
use crate::channel::dead_letters::DeadLetters;
use crate::sync::lock;
#[cfg(test)]
use bytes::Bytes;

/// What most routers never need (see [`ChannelRoute`]'s `rare`).
#[derive(Debug, Default)]
pub(super) struct Rare {
    /// Remote receivers that left the registry while this node still holds messages it sent
    /// them: a dead node's endpoints are removed before the node itself (whose removal releases
    /// them), and a dropped receiver's deregistration can arrive before its release. Counted
    /// [in flight](ChannelRoute::in_flight) until released and their messages taken back.
    pub(super) departed: Mutex<Vec<Target>>,
    /// Messages of dropped receivers on this node still to be re-routed.
    pub(super) rerouting: AtomicUsize,
    /// Receivers of this node waiting to end until nothing is left to re-route.
    pub(super) ending: Mutex<Vec<std::task::Waker>>,
    /// Messages receivers of the channel on this node could not decode.
    pub(super) dead: DeadLetters,
    /// The registration the senders of this channel decoded from messages on this node share,
    /// with the type it registers (see `channel::sender::travel`).
    pub(super) decoded: Mutex<Option<Decoded>>,
    /// An unnamed channel's name, made when first asked for (see [`ChannelRoute::name`]).
    pub(super) name: std::sync::OnceLock<String>,
    /// Messages this node had to redeliver after every receiver of the closed channel had
    /// ended: dropped, with a warning (README, Close). Kept in test builds, for the
    /// simulations to check that each message missing is one of these.
    #[cfg(test)]
    pub(super) dropped: Mutex<Vec<Bytes>>,
}

/// See [`Rare::decoded`]: the type, and the registration.
pub(crate) type Decoded = (String, std::sync::Weak<dyn std::any::Any + Send + Sync>);

impl ChannelRoute {
    pub(super) fn wake_ending(&self) {
        let ending = self.rare.get().map(|r| std::mem::take(&mut *lock(&r.ending)));
        ending.into_iter().flatten().for_each(std::task::Waker::wake);
    }

    pub(super) fn rare(&self) -> &Rare {
        self.rare.get_or_init(Box::default)
    }

    /// The receivers that left the registry (see [`Rare::departed`]), if any ever did.
    pub(super) fn departed(&self) -> Option<MutexGuard<'_, Vec<Target>>> {
        self.rare.get().map(|r| lock(&r.departed))
    }

    /// The dead letters of the channel's receivers on this node (see [`Rare::dead`]): `None` if
    /// there never was one.
    pub(crate) fn dead(&self) -> Option<&DeadLetters> {
        self.rare.get().map(|r| &r.dead)
    }

    /// See [`Rare::dead`]: made if needed, to keep one.
    pub(crate) fn dead_letters(&self) -> &DeadLetters {
        &self.rare().dead
    }

    /// See [`Rare::decoded`].
    pub(crate) fn decoded(&self) -> MutexGuard<'_, Option<Decoded>> {
        lock(&self.rare().decoded)
    }
}
