//! When a reply handle speaks for itself. Dropped unanswered, a handle tells its asker at once
//! ([`RecvError::Dropped`](super::RecvError::Dropped)); encoded into a message, the copy is the
//! handle from then on and the value says nothing. Three exceptions, each a scope set on the
//! thread around an encoding or a decoding (restored when the scope ends, even by a panic):
//!
//! - [`gated`]: a receiver's decoding (or keeping) of a delivery to acknowledge. Until the
//!   delivery is acknowledged, a handle in it that is dropped is only noted: a delivery dropped
//!   unacknowledged is delivered again and answered then. Acknowledged ([`Gates::open`]), what
//!   was noted tells its askers, and later drops tell at once.
//! - [`tentative`]: an encoding that may not be used (the message may go elsewhere as a value):
//!   the value stays the handle; [`encoded`] marks it once the copy is used.
//! - [`revive`]: an encoding that was thrown away (the message comes back to its sender): the
//!   value is the handle again.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;

use crate::ids::NodeId;
use crate::link::peer::Peers;
use crate::sync::lock;

/// A handle dropped while its gate was closed: who to tell, if the gate opens.
type Noted = (Weak<Peers>, NodeId, u64, u64);

/// One handle's gate (see [`gated`]).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Opened, and the handles dropped while it was closed.
    state: Mutex<(bool, Vec<Noted>)>,
}

impl Gate {
    /// A handle behind this gate is dropped unanswered: whether it should tell its asker now
    /// (the gate is open); if not, it is noted, and told if the gate opens.
    pub(crate) fn dropped(&self, noted: Noted) -> bool {
        let mut state = lock(&self.state);
        if !state.0 {
            state.1.push(noted);
        }
        state.0
    }
}

/// The gates of the reply handles in one delivery to acknowledge.
#[derive(Debug, Default)]
pub(crate) struct Gates(Vec<Arc<Gate>>);

impl Gates {
    /// Let go of the gates of a delivery taken without acknowledgement (`recv`), which has
    /// none, and return its value: an empty list, nothing allocated, is forgotten rather than
    /// dropped (dropping it was a call of its own, about 20 instructions a message on the
    /// receiver: issue 21).
    #[inline]
    pub(crate) fn discard_with<T>(self, value: T) -> T {
        if self.0.capacity() == 0 {
            std::mem::forget(self);
        }
        value
    }

    /// The delivery was acknowledged (or became a dead letter): it is not delivered again, so
    /// the handles in it dropped so far tell their askers now, and the others when dropped.
    pub(crate) fn open(&self) {
        for gate in &self.0 {
            let noted = {
                let mut state = lock(&gate.state);
                state.0 = true;
                std::mem::take(&mut state.1)
            };
            for (peers, node, id, token) in noted {
                if let Some(peers) = peers.upgrade() {
                    peers.answer(node, id, token, None);
                }
            }
        }
    }
}

/// What an encoding does to the handles it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// The copy is the handle from now on.
    Moves,
    /// Kept for a delivery to acknowledge: the value stays the handle, behind a new gate.
    Gated,
    /// May not be used: nothing changes.
    Tentative,
    /// Thrown away: the value is the handle again.
    Revives,
}

thread_local! {
    static GATING: RefCell<Option<Vec<Arc<Gate>>>> = const { RefCell::new(None) };
    static MODE: Cell<Encoding> = const { Cell::new(Encoding::Moves) };
}

/// What the encoding running on this thread does to a handle; under [`gated`], a new closed
/// gate for it (the handle's old one, of an earlier delivery, is not this delivery's).
pub(crate) fn encoding() -> (Encoding, Option<Arc<Gate>>) {
    let gate = new_gate();
    match (MODE.with(Cell::get), gate) {
        (_, Some(gate)) => (Encoding::Gated, Some(gate)),
        (mode, None) => (mode, None),
    }
}

/// A new closed gate for a handle decoded (or kept) under [`gated`], if one runs.
pub(crate) fn new_gate() -> Option<Arc<Gate>> {
    GATING.with(|g| {
        let mut g = g.borrow_mut();
        let gates = g.as_mut()?;
        let gate = Arc::new(Gate::default());
        gates.push(gate.clone());
        Some(gate)
    })
}

/// Restores the thread's gating scope when dropped.
struct GatingScope(Option<Option<Vec<Arc<Gate>>>>);

impl Drop for GatingScope {
    fn drop(&mut self) {
        if let Some(before) = self.0.take() {
            GATING.with(|g| *g.borrow_mut() = before);
        }
    }
}

/// Run `f`, a receiver's decode (or keeping) of a delivery to acknowledge, gating the reply
/// handles it decodes (or keeps): see the module's documentation.
pub(crate) fn gated<T>(f: impl FnOnce() -> T) -> (T, Gates) {
    let mut scope = GatingScope(Some(GATING.with(|g| g.replace(Some(Vec::new())))));
    let out = f();
    let before = scope.0.take().unwrap_or_default();
    let gates = GATING.with(|g| std::mem::replace(&mut *g.borrow_mut(), before));
    (out, Gates(gates.unwrap_or_default()))
}

/// Restores the thread's encoding mode when dropped.
struct ModeScope(Encoding);

impl Drop for ModeScope {
    fn drop(&mut self) {
        MODE.with(|m| m.set(self.0));
    }
}

fn with_mode<T>(mode: Encoding, f: impl FnOnce() -> T) -> T {
    let _restore = ModeScope(MODE.with(|m| m.replace(mode)));
    f()
}

/// Run `f`, an encoding of a message that may be refused and the message placed elsewhere as
/// a value: the reply handles in it stay the ones that answer. If the encoded copy is used,
/// call [`encoded`] on the message before dropping it.
pub(crate) fn tentative<T>(f: impl FnOnce() -> T) -> T {
    with_mode(Encoding::Tentative, f)
}

/// The encoded copy of `msg` made under [`tentative`] went: its reply handles say nothing
/// when dropped (the copy answers).
pub(crate) fn encoded<M: Serialize>(msg: &M) {
    // Encoding marks them; the bytes go nowhere.
    let _ =
        with_mode(Encoding::Moves, || rmp_serde::encode::write_named(&mut std::io::sink(), msg));
}

/// The encoded copy of `msg` was thrown away (`msg` goes back to its sender, or nowhere): its
/// reply handles are the ones that answer again, and tell their askers if dropped.
pub(crate) fn revive<M: Serialize>(msg: &M) {
    let _ =
        with_mode(Encoding::Revives, || rmp_serde::encode::write_named(&mut std::io::sink(), msg));
}
