//! The writer: a connection's frames, from the peer's [`Outbox`], onto its socket. The last
//! step of a message on its sending node, the first of the peer's reader
//! ([`crate::link::connection`]) after the socket.
//!
//! Every frame goes out as a 4-byte big-endian length and the frame (what tokio-util's
//! `LengthDelimitedCodec` reads). Over plain TCP each length and frame are handed to the socket
//! where they lie, many frames to one vectored write: nothing is copied on the way (the codec's
//! sink copied every frame into its buffer first: about 110 instructions a message, counted by
//! callgrind; issue 21). TLS takes them too (tokio-rustls copies the slices into its records);
//! a stream that takes no vectored writes gets the frames gathered into one buffer, as the
//! codec did.

use std::io::IoSlice;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::link::outbox::Outbox;
use crate::Error;

/// The most slices handed to one vectored write (Linux's `IOV_MAX` is 1024).
const MAX_SLICES: usize = 1024;

/// Gathered for TLS, frames are written once this many bytes are waiting.
const GATHER: usize = 64 * 1024;

/// Resend what the peer may not have (it said it has `received`), then write whatever the
/// outbox holds, batched: every queued frame, then one flush. Returns when the connection
/// breaks.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    outbox: &Outbox,
    received: Option<(u64, u64)>,
) -> Result<(), Error> {
    let mut frames = outbox.resume(received);
    if frames.len() > 1 {
        tracing::debug!(frames = frames.len() - 1, "resending what the peer may not have");
    }
    let vectored = io.is_write_vectored();
    let mut gathered = BytesMut::new();
    loop {
        outbox.take(&mut frames);
        outbox.written(frames.len(), frames.iter().map(Bytes::len).sum());
        // (The length prefix is 32 bits, whatever the limit says.)
        let max = outbox.max_frame().min(u32::MAX as usize);
        if let Some(f) = frames.iter().find(|f| f.len() > max) {
            // (The outbox queues none: this is the codec's own check, kept.)
            return Err(Error::codec(format!("a {}-byte frame, over the limit of {max}", f.len())));
        }
        if vectored {
            write_vectored(&mut io, &frames).await?;
        } else {
            for f in &frames {
                gathered.put_u32(f.len() as u32);
                gathered.put_slice(f);
                if gathered.len() >= GATHER {
                    io.write_all_buf(&mut gathered).await?;
                }
            }
            io.write_all_buf(&mut gathered).await?;
        }
        frames.clear();
        io.flush().await?;
        tokio::select! {
            biased;
            _ = outbox.ready() => {}
            _ = outbox.lazy_due() => {}
        }
    }
}

/// Write every frame, each after its length, in as few vectored writes as the socket takes.
/// (The lengths and slices of a few frames, a round trip's, on the stack: two allocations a
/// write fewer.)
async fn write_vectored<W: AsyncWrite + Unpin>(io: &mut W, frames: &[Bytes]) -> Result<(), Error> {
    let lengths: SmallVec<[[u8; 4]; 8]> =
        frames.iter().map(|f| (f.len() as u32).to_be_bytes()).collect();
    // Where the writing is: frame `at`, `offset` bytes into its length and frame together.
    let (mut at, mut offset) = (0, 0);
    let mut slices: SmallVec<[IoSlice<'_>; 16]> =
        SmallVec::with_capacity(MAX_SLICES.min(2 * frames.len()));
    while at < frames.len() {
        slices.clear();
        for (i, frame) in frames.iter().enumerate().skip(at) {
            if slices.len() + 2 > MAX_SLICES {
                break;
            }
            let skip = if i == at { offset } else { 0 };
            if skip < 4 {
                slices.push(IoSlice::new(&lengths[i][skip..]));
            }
            let body = &frame[skip.saturating_sub(4)..];
            if !body.is_empty() {
                slices.push(IoSlice::new(body));
            }
        }
        let mut n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(Error::Io(std::io::ErrorKind::WriteZero.into()));
        }
        // Move past what was written.
        while n > 0 {
            let left = 4 + frames[at].len() - offset;
            if n < left {
                offset += n;
                break;
            }
            n -= left;
            (at, offset) = (at + 1, 0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

    use super::*;

    /// A socket that takes at most a few bytes at a time, and vectored writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        writes: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let me = self.get_mut();
            me.writes += 1;
            let n = buf.len().min(me.step);
            me.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let me = self.get_mut();
            me.writes += 1;
            let mut room = me.step;
            for b in bufs {
                let n = b.len().min(room);
                me.out.extend_from_slice(&b[..n]);
                room -= n;
            }
            std::task::Poll::Ready(Ok(me.step - room))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Whatever the socket takes per write (a byte, part of a length, more than 1024 slices'
    /// worth), the codec reads back exactly the frames written, empty ones included.
    #[tokio::test]
    async fn frames_written_in_pieces_read_back_whole() {
        let frames: Vec<Bytes> =
            (0..1500).map(|i: usize| Bytes::from(vec![(i % 251) as u8; (i * 7) % 23])).collect();
        for step in [1, 3, 5, 64, 1 << 20] {
            let mut io = Trickle { out: Vec::new(), step, writes: 0 };
            write_vectored(&mut io, &frames).await.expect("written");
            let read = FramedRead::new(&io.out[..], LengthDelimitedCodec::new());
            let back: Vec<Bytes> = read.map(|f| f.expect("a frame").freeze()).collect().await;
            assert_eq!(back, frames, "{step} bytes a write");
            if step == 1 << 20 {
                assert_eq!(io.writes, 3, "1500 frames, 1024 slices a write");
            }
        }
    }
}
