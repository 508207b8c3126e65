//! A custom actix actor fed by a raw dchan channel.
//!
//! A [`dchan::Receiver`] is a `futures::Stream`, so any actor can consume one with
//! `ctx.add_stream(rx)` and implement `StreamHandler` for the message type. Here:
//!
//! 1. Two nodes: A bootstraps, B joins.
//! 2. On B, an actor `Counter` is created around a receiver of the channel `ticks`.
//! 3. A sends 20 `Tick`s; the actor handles each as a stream item.
//! 4. Halfway through, `main` asks the actor for its count with an ordinary actix message: the
//!    actor is a normal actor that also happens to be fed by a channel.
//! 5. A closes the channel. Once the actor has handled everything sent before the close, its
//!    stream ends, `StreamHandler::finished` runs, sends the total back through a oneshot, and
//!    stops the actor. `main` checks the total and shuts both nodes down.
//!
//! ```text
//! cargo run --example actor
//! ```

use std::time::Duration;

use actix::prelude::*;
use dchan::Node;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// What travels on the channel `ticks`: a plain serde type, no `#[dchan::endpoint]` needed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    seq: u64,
    /// The id of the node that sent it.
    from: u64,
}

/// What the counter reports when its stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Total {
    ticks: u64,
    sum: u64,
}

/// Counts the ticks it is fed, and reports the total when the channel ends.
struct Counter {
    node: &'static str,
    total: Total,
    /// Where the total goes once the stream ends.
    report: Option<oneshot::Sender<Total>>,
}

impl Actor for Counter {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        println!("[counter on {}] stopped", self.node);
    }
}

impl StreamHandler<Tick> for Counter {
    fn handle(&mut self, tick: Tick, _ctx: &mut Context<Self>) {
        self.total.ticks += 1;
        self.total.sum += tick.seq;
        println!(
            "[counter on {}] tick {:2} from node {} (ticks so far: {})",
            self.node, tick.seq, tick.from, self.total.ticks
        );
    }

    /// The stream ended: the channel is closed and everything sent before the close was handled.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        println!(
            "[counter on {}] channel closed: {} ticks, sum {}; reporting and stopping",
            self.node, self.total.ticks, self.total.sum
        );
        if let Some(report) = self.report.take() {
            let _ = report.send(self.total);
        }
        ctx.stop();
    }
}

/// An ordinary actix request to the same actor: how many ticks so far?
#[derive(Message)]
#[rtype(result = "u64")]
struct HowMany;

impl Handler<HowMany> for Counter {
    type Result = u64;

    fn handle(&mut self, _: HowMany, _ctx: &mut Context<Self>) -> u64 {
        self.total.ticks
    }
}

/// How many ticks A sends.
const TICKS: u64 = 20;

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
    println!("node A is {} at {}, node B is {} at {}", a.id(), a.addr(), b.id(), b.addr());

    println!("\n== on B: a Counter actor fed by a receiver of `ticks`");
    let rx = b.receiver::<Tick>("ticks").capacity(8).await?;
    let (report, total) = oneshot::channel();
    let counter = Counter::create(|ctx| {
        ctx.add_stream(rx);
        Counter { node: "B", total: Total { ticks: 0, sum: 0 }, report: Some(report) }
    });

    println!("\n== on A: sending {TICKS} ticks");
    let tx = a.sender::<Tick>("ticks").await?;
    // No need to wait for B's registration to reach A: `send` waits until A knows a receiver.
    for seq in 1..=TICKS {
        tx.send(Tick { seq, from: a.id() }).await.map_err(|_| "ticks closed while sending")?;
        if seq == TICKS / 2 {
            // Sent is not handled: the actor may not have had these yet.
            let n = counter.send(HowMany).await?;
            println!("[main] {seq} ticks sent; the counter says it has handled {n}");
        }
    }

    println!("\n== on A: closing `ticks`");
    tx.close().await?;
    let total = tokio::time::timeout(DEADLINE, total)
        .await
        .map_err(|_| "the counter did not finish in time")?
        .map_err(|_| "the counter stopped without reporting")?;
    println!("[main] the counter reported {total:?}");
    assert_eq!(total, Total { ticks: TICKS, sum: TICKS * (TICKS + 1) / 2 });

    println!("\n== shutting down");
    drop(tx);
    b.shutdown().await?;
    a.shutdown().await?;
    println!("done");
    Ok(())
}
