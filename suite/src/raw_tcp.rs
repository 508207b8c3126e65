//! Baseline: framed TCP between two processes with nothing else (tokio-util's
//! `LengthDelimitedCodec`), the ceiling of any framed protocol over one loopback connection.
//!
//! Two forms: 64-byte frames fed one per message and flushed at the end, and [`Msg`] structs
//! encoded with rmp-serde (field names, as dchan does) back to back into frames of up to 64 KiB
//! that the receiver decodes one by one: the work dchan's data path cannot avoid. And the
//! second form to several receiving processes ([`send_many`]): every frame to each (the ceiling
//! of a broadcast), or frames dealt out in turn (of a work queue).

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

/// `count` structs to the receivers at `addrs`, batched as [`send`] does: every frame to each
/// (`fan_out`: encoded once, as dchan encodes a broadcast once), or each frame to the next
/// receiver in turn, its messages numbered for that receiver, `count / addrs.len()` each (dealt
/// a frame at a time: the most a work queue could batch).
pub(crate) async fn send_many(
    ctx: &mut Ctx,
    addrs: &[String],
    count: u64,
    fan_out: bool,
) -> Result<(), Error> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        out.push(FramedWrite::new(stream, codec()));
    }
    let n = out.len().max(1);
    let payload = Bytes::from(vec![0x5a; 64]);
    let mut buf = BytesMut::with_capacity(2 * FRAME_TARGET);
    // Messages each receiver gets, and has had so far; whose turn it is.
    let quota = if fan_out { count } else { count / n as u64 };
    let (mut sent, mut turn) = (vec![0u64; n], 0);
    ctx.started().await?;
    while sent[turn] < quota {
        while sent[turn] < quota && buf.len() < FRAME_TARGET {
            let msg = Msg { seq: sent[turn], payload: payload.clone() };
            rmp_serde::encode::write_named(&mut (&mut buf).writer(), &msg)?;
            sent[turn] += 1;
        }
        let frame = buf.split().freeze();
        if fan_out {
            for w in &mut out {
                w.feed(frame.clone()).await?;
            }
        } else {
            out[turn].feed(frame).await?;
            turn = (turn + 1) % n;
        }
    }
    for w in &mut out {
        SinkExt::<Bytes>::flush(w).await?;
    }
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
