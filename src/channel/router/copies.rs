//! A broadcast's copies, placed together: the step between [`Sender::broadcast`] (which encodes
//! the message once) and each receiver's inbox or its node's outbox. One look at the receivers,
//! one count of what was sent, for every copy that finds room now; a receiver without room is
//! left to the broadcast, which waits for it alone
//! ([`ChannelRoute::try_send_encoded`] with `only`, as before).
//!
//! Each copy is placed exactly as `try_send_encoded` places a copy for one receiver: a local
//! one that has ended closes the broadcast, a remote one released meanwhile needs no copy, one
//! without credit is asked for some.
//!
//! [`Sender::broadcast`]: crate::Sender::broadcast

use bytes::Bytes;

use super::{ChannelRoute, Target};
use crate::channel::inbox::Refused;
use crate::ids::EndpointId;
use crate::link::outbox::{Gate, PushError};

/// What placing the copies of one broadcast came to.
#[derive(Debug, Default)]
pub(crate) struct Copies {
    /// Receivers that got their copy.
    pub(crate) reached: usize,
    /// Receivers without room now: their copies wait.
    pub(crate) full: Vec<EndpointId>,
    /// The channel is closed (or a receiver of this node has ended with it): no more copies.
    pub(crate) closed: bool,
}

impl ChannelRoute {
    /// Place a copy of `msg` (encoded) with every receiver that has room now, without waiting.
    pub(crate) fn place_copies(&self, msg: &Bytes) -> Copies {
        let mut copies = Copies::default();
        if self.is_closed() {
            copies.closed = true;
            return copies;
        }
        let mut bytes = 0;
        {
            let targets = self.read();
            for target in targets.iter() {
                match target {
                    Target::Local(inbox) => {
                        match inbox.try_push_encoded(msg.clone(), false, true) {
                            Ok(()) => copies.reached += 1,
                            Err(Refused::Closed(_)) => {
                                copies.closed = true;
                                break;
                            }
                            Err(Refused::Full(_)) => copies.full.push(inbox.id()),
                        }
                    }
                    Target::Remote { id, peer, window } => {
                        if window.is_released() {
                            // Gone, though the registry does not say so yet: it needs no copy.
                            continue;
                        }
                        if !window.try_acquire() {
                            copies.full.push(*id);
                            Self::want(&targets, Some(*id));
                            continue;
                        }
                        let gate = Gate { closed: &self.closed, gone: Some(window.gone()) };
                        match peer.outbox.push_encoded(*id, msg, true, gate) {
                            Ok(()) => {
                                copies.reached += 1;
                                bytes += msg.len();
                            }
                            // Released meanwhile: it needs no copy.
                            Err(PushError::Gone) => {}
                            Err(e) => {
                                window.undo();
                                if !matches!(e, PushError::Closed) {
                                    tracing::error!(channel = %self.label(), error = %e, "message refused");
                                }
                                copies.closed = true;
                                break;
                            }
                        }
                    }
                }
            }
        }
        self.counters.sent_many(copies.reached as u64, bytes);
        self.after_attempt();
        copies
    }
}
