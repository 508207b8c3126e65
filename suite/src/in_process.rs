//! Same process: a bounded tokio mpsc channel (the baseline) and dchan's same-node path (a
//! sender and a receiver on one node), both on one current-thread runtime, capacity 1024.

use bytes::Bytes;

use crate::ctx::Ctx;
use crate::spec::Msg;
use crate::{now_ns, Error};

pub(crate) async fn mpsc(ctx: &mut Ctx, count: u64, size: usize) -> Result<(), Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(1024);
    transfer(ctx, count, size, async move |m| tx.send(m).await.is_ok(), async || rx.recv().await)
        .await
}

pub(crate) async fn dchan_local(
    ctx: &mut Ctx,
    count: u64,
    size: usize,
    capacity: usize,
    metrics: bool,
) -> Result<(), Error> {
    let mut builder = dchan::Node::builder().listen("127.0.0.1:0");
    if metrics {
        builder = builder.metrics("127.0.0.1:0");
    }
    let node = builder.bootstrap().start().await?;
    let mut rx = node.receiver::<Msg>("local").capacity(capacity).await?;
    let tx = node.sender::<Msg>("local").await?;
    tx.wait_for_receivers(1).await.map_err(|_| "closed")?;
    transfer(ctx, count, size, async move |m| tx.send(m).await.is_ok(), async || rx.recv().await)
        .await?;
    crate::ctx::hold(node).await
}

/// Say `ready`, wait for `go`, then move `count` messages from `send` (on a task of its own,
/// stopping when it returns false) to `recv` (here, checking their order), and report.
async fn transfer(
    ctx: &mut Ctx,
    count: u64,
    size: usize,
    mut send: impl AsyncFnMut(Msg) -> bool + 'static,
    mut recv: impl AsyncFnMut() -> Option<Msg>,
) -> Result<(), Error> {
    ctx.started().await?;
    let payload = Bytes::from(vec![0x5a; size]);
    actix_rt::spawn(async move {
        for seq in 0..count {
            if !send(Msg { seq, payload: payload.clone() }).await {
                return;
            }
        }
    });
    for n in 0..count {
        let msg = recv().await.ok_or("the channel closed")?;
        if msg.seq != n {
            return Err(format!("message {n} has sequence number {}", msg.seq).into());
        }
    }
    ctx.out(format!("done {count} {}", now_ns()));
    Ok(())
}
