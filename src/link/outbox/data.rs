//! The data-frame builder: messages encoded straight into the open [`Frame::Data`] of their
//! receiver, consecutive messages for one receiver sharing a frame, with no allocation per
//! message. A frame is finished (queued, and kept for its receiver) when it is full, when a
//! message of the other kind (broadcast or not) comes, or when anything else is queued behind it.
//!
//! [`Frame::Data`]: crate::link::wire::Frame::Data

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::{Gate, Inner, Kept, Open, Outbox, PushError};
use crate::ids::EndpointId;
use crate::link::envelope;
use crate::link::wire::data_header;

/// A data frame is closed once it holds this many bytes, so a batch never grows without bound.
pub(super) const DATA_FRAME_TARGET: usize = 64 * 1024;

/// The least room a data frame opens with.
pub(super) const OPEN_MIN: usize = 1024;

impl Open {
    /// A frame for `to`, with room for `capacity` bytes (see [`Inner::room_for`]).
    pub(super) fn new(to: EndpointId, broadcast: bool, capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity);
        buf.put_slice(&data_header(to, broadcast));
        buf.put_u8(0xdd); // array32: the count is patched as messages are added
        let count_at = buf.len();
        buf.put_u32(0);
        Open { to, broadcast, buf, count_at, count: 0 }
    }
}

/// The room a frame opens with after one of `last` bytes to the same receiver: a quarter more
/// (frames to one receiver are alike in a stream), at least [`OPEN_MIN`], at most a full frame
/// and a little. Opened at 1 KiB and doubled as it filled, a full frame was copied about six
/// times: 6% of a 1->1 sender's instructions.
fn room_after(last: usize) -> usize {
    (last + last / 4).clamp(OPEN_MIN, DATA_FRAME_TARGET + DATA_FRAME_TARGET / 8)
}

/// A finished frame's bytes, kept until its receiver has taken them. A frame far smaller than
/// the room it opened with (a few messages after a full frame) is shrunk to its own size:
/// frozen as it is, it would hold the whole room as long as it is kept. (It was copied into
/// bytes of its own: with rooms sized from recent frames, see [`Inner::room_for`], about 10
/// instructions a message on the suite's 1->1 sender.)
pub(super) fn frozen(buf: BytesMut) -> Bytes {
    if buf.capacity() - buf.len() > buf.len().max(4096) {
        // (Shrunk where it lies: the allocator gives the tail back, as a rule without copying
        // the frame.)
        let mut v = Vec::from(buf);
        v.shrink_to_fit();
        Bytes::from(v)
    } else {
        buf.freeze()
    }
}

impl Inner {
    /// Queue every frame being filled, in the order they were opened.
    pub(super) fn finish_open(&mut self) {
        let mut open = std::mem::take(&mut self.open);
        for frame in open.drain(..) {
            self.queue_data(frame);
        }
        self.open = super::emptied(open);
    }

    /// Queue a finished data frame, and keep it for its receiver.
    pub(super) fn queue_data(&mut self, open: Open) {
        // (The most the receiver's recent frames held, fading by an eighth a frame: how full a
        // frame gets depends on when the writer takes it, and a frame opened after one taken
        // early grew by doubling again: 120 of 305 frames of the suite's 1->1 sender under
        // callgrind, sized from the last frame alone.)
        let len = open.buf.len();
        let (last_to, high) = self.last_data;
        let high = if last_to == open.to { len.max(high - high / 8) } else { len };
        self.last_data = (open.to, high);
        let frame = frozen(open.buf);
        let kept =
            Kept { frame: frame.clone(), count: open.count, taken: 0, broadcast: open.broadcast };
        let spare = &mut self.spare_kept;
        self.kept.entry(open.to).or_insert_with(|| std::mem::take(spare)).push_back(kept);
        self.frames.push_back((frame, true));
    }

    /// The room a new frame for `to` opens with when it has none open: after its last frame
    /// still kept, or the most its recent frames held if more (see [`room_after`] and
    /// `last_data`; in a stream its frames are often all taken before the next opens).
    fn room_for(&self, to: EndpointId) -> usize {
        let kept = self.kept.get(&to).and_then(|k| k.back()).map_or(0, |k| k.frame.len());
        let recent = if self.last_data.0 == to { self.last_data.1 } else { 0 };
        room_after(kept.max(recent))
    }

    /// The index of the frame being filled for `to` with messages of kind `broadcast`, opening
    /// one if needed (a full one, or one of the other kind, is queued first: messages for one
    /// receiver stay in order).
    #[inline]
    pub(super) fn open_for(&mut self, to: EndpointId, broadcast: bool) -> usize {
        // (The common case inlined: the frame is open, of this kind, with room.)
        match self.open.iter().position(|o| o.to == to) {
            Some(i)
                if self.open[i].buf.len() < DATA_FRAME_TARGET
                    && self.open[i].broadcast == broadcast =>
            {
                i
            }
            found => self.open_new(found, to, broadcast),
        }
    }

    /// [`Inner::open_for`] when `to` has no frame open that takes the message (`at`: the one
    /// it has, full or of the other kind).
    #[inline(never)]
    fn open_new(&mut self, at: Option<usize>, to: EndpointId, broadcast: bool) -> usize {
        match at {
            Some(i) => {
                // (After the frame it closes, not the one kept before it.)
                let room = room_after(self.open[i].buf.len());
                let done = std::mem::replace(&mut self.open[i], Open::new(to, broadcast, room));
                self.queue_data(done);
                i
            }
            None => {
                let room = self.room_for(to);
                self.open.push(Open::new(to, broadcast, room));
                self.open.len() - 1
            }
        }
    }

    /// Append one message to `to`'s frame, written by `write` after a bin32 header. A message
    /// that would take the frame over `max` starts a frame of its own; one that is too large even
    /// alone is refused, leaving everything as it was.
    #[inline]
    pub(super) fn append(
        &mut self,
        to: EndpointId,
        broadcast: bool,
        max: usize,
        write: impl Fn(&mut BytesMut) -> Result<(), PushError>,
    ) -> Result<(), PushError> {
        if self.bye {
            return Err(PushError::Closed);
        }
        loop {
            let i = self.open_for(to, broadcast);
            let open = &mut self.open[i];
            let mark = open.buf.len();
            open.buf.put_u8(0xc6);
            open.buf.put_u32(0);
            let written = write(&mut open.buf);
            let size = open.buf.len();
            let refused = match written {
                Ok(()) if size <= max => {
                    let len = (size - mark - 5) as u32;
                    open.buf[mark + 1..mark + 5].copy_from_slice(&len.to_be_bytes());
                    open.count += 1;
                    let at = open.count_at;
                    let count = open.count;
                    open.buf[at..at + 4].copy_from_slice(&count.to_be_bytes());
                    return Ok(());
                }
                Ok(()) if open.count > 0 => {
                    // Too much for this frame: queue it with what it has, and go again.
                    open.buf.truncate(mark);
                    let room = room_after(open.buf.len());
                    let full = std::mem::replace(open, Open::new(to, broadcast, room));
                    self.queue_data(full);
                    continue;
                }
                Ok(()) => PushError::TooLarge { size, max },
                Err(e) => e,
            };
            open.buf.truncate(mark);
            // A frame opened for this message alone goes too: an empty outbox must stay empty,
            // or the writer would not be woken by the next push.
            if open.count == 0 {
                self.open.swap_remove(i);
            }
            return Err(refused);
        }
    }
}

impl Outbox {
    /// Encode `msg` for receiver `to`, unless `closed` is set; its encoded size. `closed` is read
    /// under the outbox lock, and [`Outbox::push_frame`] of a fence takes the same lock after the
    /// flag is set, so no message can slip in behind a channel's fence.
    #[inline]
    pub(crate) fn push_data<'g, T: Serialize>(
        &self,
        to: EndpointId,
        msg: &T,
        gate: impl Into<Gate<'g>>,
    ) -> Result<usize, PushError> {
        self.push_encoding(to, gate.into(), |buf| {
            rmp_serde::encode::write_named(&mut buf.writer(), msg).map_err(PushError::Encode)
        })
    }

    /// [`Outbox::push_data`], after the message's `traceparent` (see
    /// [`envelope`]). A function of its own: the untraced path stays as
    /// it was, instruction for instruction.
    pub(crate) fn push_traced<'g, T: Serialize>(
        &self,
        to: EndpointId,
        msg: &T,
        traceparent: &[u8],
        gate: impl Into<Gate<'g>>,
    ) -> Result<usize, PushError> {
        self.push_encoding(to, gate.into(), |buf| {
            envelope::put_header(buf, envelope::TRACEPARENT, traceparent);
            rmp_serde::encode::write_named(&mut buf.writer(), msg).map_err(PushError::Encode)
        })
    }

    #[inline]
    fn push_encoding(
        &self,
        to: EndpointId,
        gate: Gate<'_>,
        write: impl Fn(&mut BytesMut) -> Result<(), PushError>,
    ) -> Result<usize, PushError> {
        let max = self.max_frame();
        let len = std::cell::Cell::new(0);
        self.push(gate, |inner| {
            inner.append(to, false, max, |buf| {
                let before = buf.len();
                write(buf)?;
                len.set(buf.len() - before);
                Ok(())
            })
        })?;
        Ok(len.get())
    }

    /// Queue an already encoded message for receiver `to`: a `broadcast` copy, or a message
    /// delivered again.
    pub(crate) fn push_encoded<'g>(
        &self,
        to: EndpointId,
        msg: &[u8],
        broadcast: bool,
        gate: impl Into<Gate<'g>>,
    ) -> Result<(), PushError> {
        let max = self.max_frame();
        self.push(gate.into(), |inner| {
            inner.append(to, broadcast, max, |buf| {
                buf.put_slice(msg);
                Ok(())
            })
        })
    }
}
