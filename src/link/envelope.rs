//! One message's bytes, as a data frame carries them and the outbox keeps them for redelivery:
//! the message, MessagePack-encoded, after an optional header that carries its trace context.
//!
//! The header is written by the sending node when the application opted in (cargo feature
//! `opentelemetry`) and the send ran inside a traced span: `[0xc1, kind, len, len bytes]`, kind
//! [`TRACEPARENT`] being a W3C `traceparent` in its text form. `0xc1` is the one byte
//! MessagePack never uses, so a message without a header is told apart by its first byte and
//! costs nothing. Since the header is part of the message's bytes, it stays with the message
//! wherever it goes: a broadcast's copies, a message delivered again after its receiver went
//! away. Every node strips it before decoding, whatever its features; a node built with
//! `opentelemetry` also reads it (see `channel::trace`). A header of a kind this build does not
//! know is skipped.

use bytes::BufMut;

/// The first byte of a header (MessagePack's "never used").
pub(crate) const MARK: u8 = 0xc1;

/// A header's kind: a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub(crate) const TRACEPARENT: u8 = 1;

/// A message whose header does not fit in its bytes.
#[derive(Debug, thiserror::Error)]
#[error("malformed message header: {len} bytes announced, {left} left")]
pub(crate) struct MalformedHeader {
    len: usize,
    left: usize,
}

/// Write a header of `kind` carrying `value` (at most 255 bytes: longer ones are not written).
pub(crate) fn put_header(buf: &mut impl BufMut, kind: u8, value: &[u8]) {
    if let Ok(len) = u8::try_from(value.len()) {
        buf.put_slice(&[MARK, kind, len]);
        buf.put_slice(value);
    }
}

/// A message's `traceparent`, if its header carries one, and where the encoded message starts.
#[inline]
pub(crate) fn split(msg: &[u8]) -> Result<(Option<&[u8]>, usize), MalformedHeader> {
    match msg {
        [MARK, kind, len, rest @ ..] => {
            let len = usize::from(*len);
            if rest.len() < len {
                return Err(MalformedHeader { len, left: rest.len() });
            }
            let value = (*kind == TRACEPARENT).then(|| &rest[..len]);
            Ok((value, 3 + len))
        }
        [MARK, ..] => Err(MalformedHeader { len: 3, left: msg.len() }),
        _ => Ok((None, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_a_header_is_its_own_body() {
        let msg = rmp_serde::to_vec_named(&(1u8, "x")).unwrap();
        assert_eq!(split(&msg).unwrap(), (None, 0));
        assert_eq!(split(&[]).unwrap(), (None, 0));
    }

    #[test]
    fn a_header_is_read_and_skipped() {
        let tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut buf = Vec::new();
        put_header(&mut buf, TRACEPARENT, tp);
        let body = rmp_serde::to_vec_named(&42u64).unwrap();
        buf.extend_from_slice(&body);
        let (value, at) = split(&buf).unwrap();
        assert_eq!(value, Some(&tp[..]));
        assert_eq!(rmp_serde::from_slice::<u64>(&buf[at..]).unwrap(), 42);
        // A kind this build does not know: skipped, the message still read.
        buf[1] = 9;
        let (value, at) = split(&buf).unwrap();
        assert_eq!((value, &buf[at..]), (None, &body[..]));
    }

    #[test]
    fn a_header_cut_short_is_an_error_not_a_panic() {
        assert!(split(&[MARK]).is_err());
        assert!(split(&[MARK, TRACEPARENT]).is_err());
        assert!(split(&[MARK, TRACEPARENT, 5, 1, 2]).is_err());
        assert_eq!(split(&[MARK, TRACEPARENT, 0]).unwrap(), (Some(&[][..]), 3));
    }
}
