//! Baseline: framed TCP between two processes with nothing else (tokio-util's
//! `LengthDelimitedCodec`), the ceiling of any framed protocol over one loopback connection.
//!
//! Two forms: 64-byte frames fed one per message and flushed at the end, and [`Msg`] structs
//! encoded with rmp-serde (field names, as dchan does) back to back into frames of up to 64 KiB
//! that the receiver decodes one by one: the work dchan's data path cannot avoid.

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::ctx::Ctx;
use crate::spec::Msg;
use crate::{now_ns, Error};

/// A data frame is closed once it holds this many bytes (as dchan's outbox does).
const FRAME_TARGET: usize = 64 * 1024;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(1 << 20).new_codec()
}

async fn listen(ctx: &Ctx) -> Result<TcpStream, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    ctx.out(format!("ready {}", listener.local_addr()?));
    let (stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub(crate) async fn recv(ctx: &Ctx, rmp: bool, expect: u64) -> Result<(), Error> {
    let mut frames = FramedRead::new(listen(ctx).await?, codec());
    let mut n: u64 = 0;
    while let Some(frame) = frames.next().await {
        let frame = frame?;
        if rmp {
            let mut rest: &[u8] = &frame;
            while !rest.is_empty() {
                let msg: Msg = rmp_serde::from_read(&mut rest)?;
                if msg.seq != n {
                    return Err(format!("message {n} has sequence number {}", msg.seq).into());
                }
                n += 1;
            }
        } else {
            n += 1;
        }
        if n >= expect {
            ctx.out(format!("done {n} {}", now_ns()));
            break;
        }
    }
    Ok(())
}

pub(crate) async fn send(
    ctx: &mut Ctx,
    rmp: bool,
    addr: &str,
    count: u64,
    size: usize,
) -> Result<(), Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut frames = FramedWrite::new(stream, codec());
    let payload = Bytes::from(vec![0x5a; size]);
    ctx.started().await?;
    if rmp {
        let mut buf = BytesMut::with_capacity(2 * FRAME_TARGET);
        for seq in 0..count {
            let msg = Msg { seq, payload: payload.clone() };
            rmp_serde::encode::write_named(&mut (&mut buf).writer(), &msg)?;
            if buf.len() >= FRAME_TARGET {
                frames.feed(buf.split().freeze()).await?;
            }
        }
        if !buf.is_empty() {
            frames.feed(buf.split().freeze()).await?;
        }
    } else {
        for _ in 0..count {
            frames.feed(payload.clone()).await?;
        }
    }
    SinkExt::<Bytes>::flush(&mut frames).await?;
    Ok(())
}

pub(crate) async fn pong(ctx: &Ctx) -> Result<(), Error> {
    let mut framed = Framed::new(listen(ctx).await?, codec());
    while let Some(frame) = framed.next().await {
        framed.send(frame?.freeze()).await?;
    }
    Ok(())
}

pub(crate) async fn ping(
    ctx: &mut Ctx,
    addr: &str,
    rounds: usize,
    size: usize,
) -> Result<(), Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut framed = Framed::new(stream, codec());
    let payload = Bytes::from(vec![0x5a; size]);
    ctx.round_trips(rounds, async || {
        framed.send(payload.clone()).await?;
        framed.next().await.ok_or("the pong side closed")??;
        Ok(())
    })
    .await
}
