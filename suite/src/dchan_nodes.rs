//! dchan as users run it: one node per process, the first bootstrapping the cluster, the others
//! joining it. Work queues and broadcasts ([`flow`]), ping-pong through two channels ([`ping`],
//! [`pong`]) and the time a new receiver takes to be registered ([`member`]).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::ctx::{histogram, hold, Ctx};
use crate::spec::{Ask, Mode, Msg, Spec, TlsFiles};
use crate::{now_ns, Error};

async fn node(join: Option<&str>) -> Result<dchan::Node, Error> {
    node_with(join, None, false).await
}

async fn node_with(
    join: Option<&str>,
    tls: Option<&TlsFiles>,
    metrics: bool,
) -> Result<dchan::Node, Error> {
    let mut builder = dchan::Node::builder().listen("127.0.0.1:0");
    if metrics {
        builder = builder.metrics("127.0.0.1:0");
    }
    if let Some(t) = tls {
        builder = builder.tls(dchan::TlsConfig::from_pem_files(&t.cert, &t.key, &t.ca)?);
    }
    let builder = match join {
        Some(seed) => builder.join([seed]),
        None => builder.bootstrap(),
    };
    Ok(builder.start().await?)
}

/// `ready ADDR`: the address others join.
fn ready(ctx: &Ctx, node: &dchan::Node) {
    ctx.out(format!("ready {}", node.addr()));
}

pub(crate) async fn flow(ctx: &mut Ctx, spec: Spec) -> Result<(), Error> {
    let Spec::Dchan {
        join,
        channel,
        receivers,
        senders,
        count,
        size,
        mode,
        wait_for,
        capacity,
        expect,
        tls,
        metrics,
        batch,
        ordered,
    } = spec
    else {
        unreachable!("flow is given a Dchan spec")
    };
    let node = node_with(join.as_deref(), tls.as_ref(), metrics).await?;
    // Receivers share one count: the node's receivers report together.
    let received = Rc::new(Cell::new(0u64));
    for _ in 0..receivers {
        let mut rx = node.receiver::<Msg>(&channel).capacity(capacity).await?;
        let received = received.clone();
        let out = ctx.reporter();
        actix_rt::spawn(async move {
            let mut buf = Vec::with_capacity(batch);
            // The last sequence number taken: with one sender, each must come after it.
            let mut last: Option<u64> = None;
            let mut in_order = move |seq: u64| {
                if ordered && last.is_some_and(|l| seq <= l) {
                    eprintln!("message {seq} taken after {last:?}: out of order");
                    std::process::exit(1);
                }
                last = Some(seq);
            };
            loop {
                // Dry: a work queue's receiver cannot know its share, so it reports.
                if rx.is_empty() && expect == 0 && received.get() > 0 {
                    out(format!("done {} {}", received.get(), now_ns()));
                }
                let n = if batch > 0 {
                    buf.clear();
                    let n = rx.recv_many(&mut buf, batch).await;
                    buf.iter().for_each(|m| in_order(m.seq));
                    n
                } else {
                    match rx.recv().await {
                        Some(m) => {
                            in_order(m.seq);
                            1
                        }
                        None => 0,
                    }
                };
                if n == 0 {
                    return;
                }
                received.set(received.get() + n as u64);
                if received.get() == expect {
                    out(format!("done {expect} {}", now_ns()));
                }
            }
        });
    }
    let mut txs = Vec::new();
    for _ in 0..senders {
        let tx = node.sender::<Msg>(&channel).await?;
        tx.wait_for_receivers(wait_for).await.map_err(|_| "the channel closed")?;
        txs.push(tx);
    }
    ready(ctx, &node);
    if senders > 0 {
        ctx.go().await?;
        ctx.out(format!("start {}", now_ns()));
        let payload = Bytes::from(vec![0x5a; size]);
        let sending = txs.iter().map(|tx| {
            let payload = payload.clone();
            async move {
                for seq in 0..count {
                    let msg = Msg { seq, payload: payload.clone() };
                    match mode {
                        Mode::Queue => tx.send(msg).await.map_err(|_| "the channel closed")?,
                        Mode::Broadcast => {
                            tx.broadcast(msg).await.map_err(|_| "the channel closed")?;
                        }
                    }
                }
                Ok::<_, Error>(())
            }
        });
        futures::future::try_join_all(sending).await?;
    }
    hold((txs, node)).await
}

pub(crate) async fn pong(ctx: &Ctx) -> Result<(), Error> {
    let node = node(None).await?;
    let mut rx = node.receiver::<Bytes>("ping").capacity(16).await?;
    let tx = node.sender::<Bytes>("pong").await?;
    ready(ctx, &node);
    while let Some(msg) = rx.recv().await {
        tx.send(msg).await.map_err(|_| "the channel closed")?;
    }
    Ok(())
}

pub(crate) async fn ping(
    ctx: &mut Ctx,
    join: &str,
    rounds: usize,
    size: usize,
) -> Result<(), Error> {
    let node = node(Some(join)).await?;
    let mut rx = node.receiver::<Bytes>("pong").capacity(16).await?;
    let tx = node.sender::<Bytes>("ping").await?;
    tx.wait_for_receivers(1).await.map_err(|_| "the channel closed")?;
    let payload = Bytes::from(vec![0x5a; size]);
    ctx.round_trips(rounds, async || {
        tx.send(payload.clone()).await.map_err(|_| "the channel closed")?;
        rx.recv().await.ok_or("the pong channel closed")?;
        Ok(())
    })
    .await?;
    hold((tx, rx, node)).await
}

pub(crate) async fn answer(ctx: &Ctx, join: Option<String>) -> Result<(), Error> {
    let node = node(join.as_deref()).await?;
    let mut rx = node.receiver::<Ask>("asks").capacity(256).await?;
    ready(ctx, &node);
    while let Some(ask) = rx.recv().await {
        ask.reply.send(ask.body).map_err(|_| "the asker is gone")?;
    }
    Ok(())
}

pub(crate) async fn request(
    ctx: &mut Ctx,
    join: &str,
    rounds: usize,
    size: usize,
) -> Result<(), Error> {
    let node = node(Some(join)).await?;
    let tx = node.sender::<Ask>("asks").await?;
    tx.wait_for_receivers(1).await.map_err(|_| "the channel closed")?;
    let payload = Bytes::from(vec![0x5a; size]);
    ctx.round_trips(rounds, async || {
        tx.request(|reply| Ask { body: payload.clone(), reply }).await?;
        Ok(())
    })
    .await?;
    hold((tx, node)).await
}

pub(crate) async fn requests(
    ctx: &mut Ctx,
    join: &str,
    count: u64,
    inflight: usize,
    size: usize,
    answerers: usize,
) -> Result<(), Error> {
    let node = node(Some(join)).await?;
    let tx = node.sender::<Ask>("asks").await?;
    tx.wait_for_receivers(answerers).await.map_err(|_| "the channel closed")?;
    let payload = Bytes::from(vec![0x5a; size]);
    ctx.requests(count, inflight, || {
        let (tx, body) = (&tx, payload.clone());
        async move { tx.request(|reply| Ask { body, reply }).await.map(drop) }
    })
    .await?;
    hold((tx, node)).await
}

pub(crate) async fn member(
    ctx: &mut Ctx,
    join: Option<String>,
    voters: usize,
    registrations: usize,
) -> Result<(), Error> {
    let node = node(join.as_deref()).await?;
    ready(ctx, &node);
    if registrations == 0 {
        return hold(node).await;
    }
    ctx.go().await?;
    // Measure once the cluster is whole: every voter in, a leader known.
    let mut watch = node.watch_cluster();
    let start = Instant::now();
    loop {
        let info = node.cluster();
        let n = info.members.iter().filter(|m| m.role == dchan::Role::Voter).count();
        if n >= voters && info.leader.is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("only {n} voters after 30 s").into());
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), watch.changed()).await;
    }
    let mut took = histogram();
    let mut keep = Vec::with_capacity(registrations);
    for i in 0..registrations {
        let t = Instant::now();
        let rx = node.receiver::<u64>(&format!("registration-{i}")).capacity(16).await?;
        took.record(t.elapsed().as_nanos() as u64)?;
        keep.push(rx);
    }
    ctx.rtt(&took);
    hold((keep, node)).await
}
