//! The two control frames every stream of messages sends back and forth, [`Frame::Credit`] and
//! [`Frame::Received`], written and read in a fixed layout without serde.
//!
//! A round trip of one message (a request and its reply, a ping-pong) carries one of each both
//! ways beside the data: through serde, writing and reading them cost about 3,500 instructions
//! a round trip on each side (`suite/run --instructions --only ping-pong`, issue 21). The
//! layout is MessagePack as serde writes the same frame, but every integer at its full width
//! (`uint64`, `uint32`): any MessagePack reader, serde included, reads it as the same frame, so
//! peers that decode through serde understand it, and a frame written another way still goes
//! through serde on this side ([`read`] declines it).

use bytes::BufMut;

use super::{Frame, VERSION};
use crate::ids::EndpointId;

/// `[VERSION, {"Credit": {"to": u64, "taken": u32, "grant": u32}}]`, by byte.
const CREDIT: [&[u8]; 4] = [
    &[0x92, VERSION, 0x81, 0xa6, b'C', b'r', b'e', b'd', b'i', b't', 0x83, 0xa2, b't', b'o', 0xcf],
    &[0xa5, b't', b'a', b'k', b'e', b'n', 0xce],
    &[0xa5, b'g', b'r', b'a', b'n', b't', 0xce],
    &[],
];

/// `[VERSION, {"Received": {"stream": u64, "count": u64}}]`, by byte.
const RECEIVED: [&[u8]; 3] = [
    &[
        0x92, VERSION, 0x81, 0xa8, b'R', b'e', b'c', b'e', b'i', b'v', b'e', b'd', 0x82, 0xa6,
        b's', b't', b'r', b'e', b'a', b'm', 0xcf,
    ],
    &[0xa5, b'c', b'o', b'u', b'n', b't', 0xcf],
    &[],
];

/// The length of a credit frame in the fixed layout.
const CREDIT_LEN: usize = CREDIT[0].len() + 8 + CREDIT[1].len() + 4 + CREDIT[2].len() + 4;
/// The length of a received frame in the fixed layout.
const RECEIVED_LEN: usize = RECEIVED[0].len() + 8 + RECEIVED[1].len() + 8;
/// The longest frame [`write_into`] writes.
pub(crate) const MAX_LEN: usize = if CREDIT_LEN > RECEIVED_LEN { CREDIT_LEN } else { RECEIVED_LEN };

/// `frame` in the fixed layout, if it is one of the two: a buffer of its own, exactly as long
/// (see [`write_into`] for frames cut from a shared one).
pub(super) fn write(frame: &Frame<'_>) -> Option<bytes::Bytes> {
    let len = match frame {
        Frame::Credit { .. } => CREDIT_LEN,
        Frame::Received { .. } => RECEIVED_LEN,
        _ => return None,
    };
    let mut out = Vec::with_capacity(len);
    write_into(&mut out, frame);
    Some(out.into())
}

/// Append `frame` to `out` in the fixed layout, if it is one of the two (at most [`MAX_LEN`]
/// bytes); false, and nothing written, for any other frame.
pub(crate) fn write_into(out: &mut impl BufMut, frame: &Frame<'_>) -> bool {
    match *frame {
        Frame::Credit { to, taken, grant } => {
            out.put_slice(CREDIT[0]);
            out.put_u64(to);
            out.put_slice(CREDIT[1]);
            out.put_u32(taken);
            out.put_slice(CREDIT[2]);
            out.put_u32(grant);
        }
        Frame::Received { stream, count } => {
            out.put_slice(RECEIVED[0]);
            out.put_u64(stream);
            out.put_slice(RECEIVED[1]);
            out.put_u64(count);
        }
        _ => return false,
    }
    true
}

/// `buf` read as one of the two in the fixed layout, exactly (nothing after it); `None` for
/// anything else, which serde reads (or refuses).
pub(super) fn read(buf: &[u8]) -> Option<Frame<'static>> {
    match buf.get(4)? {
        b'C' => {
            let mut rest = buf;
            let to: EndpointId = u64::from_be_bytes(field(&mut rest, CREDIT[0])?);
            let taken = u32::from_be_bytes(field(&mut rest, CREDIT[1])?);
            let grant = u32::from_be_bytes(field(&mut rest, CREDIT[2])?);
            rest.is_empty().then_some(Frame::Credit { to, taken, grant })
        }
        b'R' => {
            let mut rest = buf;
            let stream = u64::from_be_bytes(field(&mut rest, RECEIVED[0])?);
            let count = u64::from_be_bytes(field(&mut rest, RECEIVED[1])?);
            rest.is_empty().then_some(Frame::Received { stream, count })
        }
        _ => None,
    }
}

/// The `N` bytes after `prefix` at the start of `rest`, which moves past both.
fn field<const N: usize>(rest: &mut &[u8], prefix: &[u8]) -> Option<[u8; N]> {
    let after = rest.strip_prefix(prefix)?;
    let (value, after) = after.split_first_chunk::<N>()?;
    *rest = after;
    Some(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both frames come back as written, serde reads the fixed layout as the same frame, and
    /// serde's own encoding (smaller integers) is declined here, left to serde.
    #[test]
    fn credit_and_received_read_alike_in_place_and_by_serde() {
        let frames = [
            Frame::Credit { to: u64::MAX - 3, taken: 7, grant: u32::MAX },
            Frame::Credit { to: 0, taken: 0, grant: 0 },
            Frame::Received { stream: 0x0123_4567_89ab_cdef, count: 1 },
        ];
        for frame in &frames {
            let fixed = write(frame).expect("one of the two");
            let mut appended = bytes::BytesMut::from(&b"before"[..]);
            assert!(write_into(&mut appended, frame));
            assert_eq!(&appended[6..], &fixed[..], "appended as written alone");
            let exact =
                if matches!(frame, Frame::Credit { .. }) { CREDIT_LEN } else { RECEIVED_LEN };
            assert!(fixed.len() == exact && exact <= MAX_LEN, "{} bytes", fixed.len());
            let back = read(&fixed).expect("read in place");
            assert_eq!(format!("{back:?}"), format!("{frame:?}"));
            let (v, by_serde): (u8, Frame<'_>) = rmp_serde::from_slice(&fixed).expect("serde");
            assert_eq!((v, format!("{by_serde:?}")), (VERSION, format!("{frame:?}")));
            let mut compact = Vec::new();
            rmp_serde::encode::write_named(&mut compact, &(VERSION, frame)).expect("encode");
            assert!(compact == fixed[..] || read(&compact).is_none(), "{frame:?}");
            // Cut short, or with a byte after it: declined (serde then says why).
            assert!(read(&fixed[..fixed.len() - 1]).is_none());
            assert!(read(&[&fixed[..], &[0]].concat()).is_none());
        }
        assert!(write(&Frame::Want { to: 1 }).is_none());
        let mut untouched = Vec::new();
        assert!(!write_into(&mut untouched, &Frame::Want { to: 1 }) && untouched.is_empty());
    }
}
