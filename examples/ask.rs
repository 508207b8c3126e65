//! Asking an actor on another node: an actix actor composed from a raw dchan channel serves
//! requests, and a caller on another node asks it with `Sender::request`.
//!
//! 1. Two nodes: A bootstraps, B joins.
//! 2. On B, a `Pricer` actor is created around a receiver of the channel `quotes`: each `Quote`
//!    carries a reply handle (`dchan::oneshot::Sender`), and the actor answers through it. The
//!    answer goes straight to the node that asked: no second channel, no correlation ids, no
//!    Raft commit per request.
//! 3. On A, one request with `request`, then 32 at once with `request_timeout`, then one for an
//!    item the actor does not know (it answers with an error of its own: answers are any serde
//!    type).
//! 4. A request on a channel nobody serves gives up at its deadline.
//! 5. A closes `quotes`; the actor's stream ends and it stops; both nodes shut down.
//!
//! ```text
//! cargo run --example ask
//! ```

use std::time::Duration;

use actix::prelude::*;
use dchan::{Node, RequestError};
use serde::{Deserialize, Serialize};

/// A request on `quotes`: what `qty` of `item` costs, answered through `reply`.
#[derive(Debug, Serialize, Deserialize)]
struct Quote {
    item: String,
    qty: u32,
    reply: dchan::oneshot::Sender<Result<u32, String>>,
}

/// Prices items, one request at a time, as an ordinary actor.
struct Pricer {
    node: u64,
    answered: u64,
}

impl Actor for Pricer {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        println!("[pricer on node {}] stopped after {} answers", self.node, self.answered);
    }
}

impl StreamHandler<Quote> for Pricer {
    fn handle(&mut self, quote: Quote, _ctx: &mut Context<Self>) {
        let price = match quote.item.as_str() {
            "apple" => Ok(30 * quote.qty),
            "pear" => Ok(45 * quote.qty),
            other => Err(format!("no price for {other:?}")),
        };
        self.answered += 1;
        // Not async: the answer is queued at once. It comes back if the asker is gone.
        if quote.reply.send(price).is_err() {
            println!("[pricer on node {}] the asker left before the answer", self.node);
        }
    }

    /// `quotes` was closed and every request sent before the close was answered.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// How long any step may take before the example gives up.
const DEADLINE: Duration = Duration::from_secs(20);

type BoxError = Box<dyn std::error::Error>;

#[actix::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .init();

    println!("== starting node A (bootstrap) and node B (join)");
    let a = Node::builder().listen("127.0.0.1:0").bootstrap().start().await?;
    let b = Node::builder().listen("127.0.0.1:0").join([a.addr()]).start().await?;
    println!("node A is {}, node B is {}", a.id(), b.id());

    println!("\n== on B: a Pricer actor serving `quotes`");
    let rx = b.receiver::<Quote>("quotes").capacity(16).await?;
    let node = b.id();
    let pricer = Pricer::create(|ctx| {
        ctx.add_stream(rx);
        Pricer { node, answered: 0 }
    });

    println!("\n== on A: asking");
    let quotes = a.sender::<Quote>("quotes").await?;
    // Waits for B's receiver to be known here, then for the answer.
    let price = quotes.request(|reply| Quote { item: "apple".into(), qty: 3, reply }).await?;
    println!("[A] 3 apples cost {price:?}");
    assert_eq!(price, Ok(90));

    let asks = (1..=32).map(|qty| {
        let quotes = quotes.clone();
        async move {
            quotes
                .request_timeout(DEADLINE, |reply| Quote { item: "pear".into(), qty, reply })
                .await
        }
    });
    let prices = futures::future::join_all(asks).await;
    let total: u32 = prices.into_iter().map(|p| p.map(|p| p.unwrap_or(0))).sum::<Result<_, _>>()?;
    println!("[A] 32 requests in flight at once: 1 to 32 pears cost {total} in all");
    assert_eq!(total, 45 * 32 * 33 / 2);

    let price = quotes.request(|reply| Quote { item: "durian".into(), qty: 1, reply }).await?;
    println!("[A] a durian: {price:?}");
    assert!(price.is_err());

    println!("\n== on A: a channel nobody serves");
    let nobody = a.sender::<Quote>("nobody").await?;
    let asked = nobody
        .request_timeout(Duration::from_millis(300), |reply| Quote {
            item: "fig".into(),
            qty: 1,
            reply,
        })
        .await;
    println!("[A] asked `nobody`: {asked:?}");
    assert_eq!(asked, Err(RequestError::Timeout));

    println!("\n== closing `quotes`: the actor stops once it has answered everything");
    quotes.close().await?;
    let stopped = async {
        while pricer.connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(DEADLINE, stopped).await.map_err(|_| "the pricer did not stop")?;

    drop((quotes, nobody));
    b.shutdown().await?;
    a.shutdown().await?;
    println!("done");
    Ok(())
}
