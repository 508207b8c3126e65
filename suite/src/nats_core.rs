//! Baseline: NATS core (no JetStream) through a `nats-server` on loopback, with the async-nats
//! client. Subscriptions get a capacity of at least the message count: with the default (a
//! bounded buffer that drops when full), a fast publisher loses messages without an error.

use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::ctx::Ctx;
use crate::{now_ns, Error};

async fn connect(url: &str, capacity: usize) -> Result<async_nats::Client, Error> {
    Ok(async_nats::ConnectOptions::new()
        .subscription_capacity(capacity.max(1024))
        .connect(url)
        .await?)
}

pub(crate) async fn recv(
    ctx: &Ctx,
    url: &str,
    subject: &str,
    queue: Option<String>,
    capacity: usize,
    expect: u64,
) -> Result<(), Error> {
    let client = connect(url, capacity).await?;
    let mut sub = match queue {
        Some(q) => client.queue_subscribe(subject.to_string(), q).await?,
        None => client.subscribe(subject.to_string()).await?,
    };
    // The server has the subscription once it answered the flush's ping.
    client.flush().await?;
    ctx.out("ready");
    let mut n: u64 = 0;
    loop {
        let next = match sub.next().now_or_never() {
            Some(next) => next,
            None => {
                // Dry: report (a queue member cannot know its share), then wait.
                if expect == 0 && n > 0 {
                    ctx.out(format!("done {n} {}", now_ns()));
                }
                sub.next().await
            }
        };
        if next.is_none() {
            return Err("the subscription ended".into());
        }
        n += 1;
        if n == expect {
            ctx.out(format!("done {n} {}", now_ns()));
        }
    }
}

pub(crate) async fn send(
    ctx: &mut Ctx,
    url: &str,
    subject: &str,
    count: u64,
    size: usize,
) -> Result<(), Error> {
    let client = connect(url, 1024).await?;
    let payload = Bytes::from(vec![0x5a; size]);
    ctx.started().await?;
    for _ in 0..count {
        client.publish(subject.to_string(), payload.clone()).await?;
    }
    client.flush().await?;
    crate::ctx::hold(client).await
}

pub(crate) async fn reply(
    ctx: &Ctx,
    url: &str,
    subject: &str,
    queue: Option<String>,
) -> Result<(), Error> {
    let client = connect(url, 1024).await?;
    let mut sub = match queue {
        Some(q) => client.queue_subscribe(subject.to_string(), q).await?,
        None => client.subscribe(subject.to_string()).await?,
    };
    client.flush().await?;
    ctx.out("ready");
    while let Some(msg) = sub.next().await {
        if let Some(reply) = msg.reply {
            client.publish(reply, msg.payload).await?;
        }
    }
    Ok(())
}

pub(crate) async fn request(
    ctx: &mut Ctx,
    url: &str,
    subject: &str,
    rounds: usize,
    size: usize,
) -> Result<(), Error> {
    let client = connect(url, 1024).await?;
    let payload = Bytes::from(vec![0x5a; size]);
    ctx.round_trips(rounds, async || {
        client.request(subject.to_string(), payload.clone()).await?;
        Ok(())
    })
    .await?;
    crate::ctx::hold(client).await
}

/// `count` requests, `inflight` at a time (each a request of the client's own: an inbox
/// subscription multiplexed by async-nats), timed from `start` to `done`.
pub(crate) async fn requests(
    ctx: &mut Ctx,
    url: &str,
    subject: &str,
    count: u64,
    inflight: usize,
    size: usize,
) -> Result<(), Error> {
    let client = connect(url, 1024).await?;
    let payload = Bytes::from(vec![0x5a; size]);
    ctx.requests(count, inflight, || {
        let (client, payload) = (client.clone(), payload.clone());
        async move { client.request(subject.to_string(), payload).await.map(drop) }
    })
    .await?;
    crate::ctx::hold(client).await
}
