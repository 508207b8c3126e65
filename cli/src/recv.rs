//! `dchan recv`: print the messages of a channel as JSON lines.
//!
//! The receiver acknowledges explicitly: a message counts as taken only once its line is
//! written and flushed, so a `dchan recv` killed at any moment loses nothing it had not printed
//! (the cluster delivers those to another receiver). Lines are written on a thread of their own
//! (a stalled stdout never stalls the node), several to a flush when they come fast.

use std::io::Write;

use dchan::{Delivery, Value};
use tokio::sync::{mpsc, oneshot};

use crate::client::{self, Join, Stop};
use crate::json::{self, WriteError};
use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The channel.
    channel: String,
    #[command(flatten)]
    join: Join,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Messages held for this receiver at most, printed or not (its share of the channel).
    #[arg(long, default_value_t = dchan::DEFAULT_CAPACITY)]
    capacity: usize,
    /// Print the channel's dead letters instead (messages a typed receiver could not decode),
    /// from every member, as JSON lines with where each came from; then let go of them.
    #[arg(long)]
    dead_letters: bool,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    if args.capacity == 0 {
        return Err(Failure::new("--capacity must be at least 1"));
    }
    let mut stop = Stop::new()?;
    let node = client::join(&args.join, &format!("recv {}", args.channel)).await?;
    tracing::debug!(node = node.id(), "joined");
    let result = tokio::select! {
        r = async {
            if args.dead_letters {
                dead_letters(&node, &args.channel).await
            } else {
                receive(&node, &args).await
            }
        } => r,
        _ = stop.signalled() => Err(Failure::interrupted("interrupted")),
    };
    tracing::debug!(ok = result.is_ok(), "leaving");
    // Leaving hands back what was received and not printed.
    let left = node.shutdown().await;
    tracing::debug!(ok = left.is_ok(), "left");
    result?;
    left.map_err(Failure::from)
}

/// What the printing thread reports when it stops early.
enum Stopped {
    Closed(std::io::Error),
    NotJson(String),
}

async fn receive(node: &dchan::Node, args: &Args) -> Result<(), Failure> {
    let mut rx = node.receiver::<Value>(&args.channel).capacity(args.capacity).manual_ack().await?;
    tracing::debug!(receiver = rx.id(), "registered");
    if node.cluster().channel(&args.channel).is_none_or(|c| c.senders().count() == 0) {
        // Said once, so that a silent terminal is not taken for a hang.
        eprintln!("dchan recv: waiting for messages on `{}` (no sender yet)...", args.channel);
    }
    let (lines, todo) = mpsc::channel::<Delivery<Value>>(args.capacity.max(16));
    let (done_tx, done) = oneshot::channel();
    let printer = std::thread::spawn(move || {
        let _ = done_tx.send(print(todo));
    });
    let mut received: u64 = 0;
    while args.count.is_none_or(|c| received < c) {
        let Some(delivery) = rx.recv().await else { break }; // closed and drained
        if lines.send(delivery).await.is_err() {
            break; // the printer stopped: it says why
        }
        received += 1;
    }
    tracing::debug!(received, "receiving done");
    drop(lines);
    let outcome = done.await;
    let _ = printer.join();
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((printed, Stopped::Closed(e)))) => {
            Err(Failure::new(format!("stdout closed after {printed} message(s): {e}")))
        }
        Ok(Err((printed, Stopped::NotJson(e)))) => Err(Failure::new(format!(
            "message {} has no JSON form ({e}); it was not acknowledged and goes to another receiver",
            printed + 1
        ))),
        Err(_) => Err(Failure::new("the printing thread stopped")),
    }
}

/// Print deliveries as they come, flushing before acknowledging each batch of lines.
fn print(mut todo: mpsc::Receiver<Delivery<Value>>) -> Result<u64, (u64, Stopped)> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0;
    let mut batch = Vec::new();
    while let Some(first) = todo.blocking_recv() {
        batch.push(first);
        while batch.len() < 256 {
            match todo.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        for (i, d) in batch.iter().enumerate() {
            match json::write_line(&mut out, d) {
                Ok(()) => {}
                Err(WriteError::Io(e)) => return Err((printed, Stopped::Closed(e))),
                Err(WriteError::NotJson(e)) => {
                    // What was written before it is flushed and acknowledged; it is not.
                    if out.flush().is_ok() {
                        for d in batch.drain(..i) {
                            d.ack();
                            printed += 1;
                        }
                    }
                    return Err((printed, Stopped::NotJson(e)));
                }
            }
        }
        out.flush().map_err(|e| (printed, Stopped::Closed(e)))?;
        for d in batch.drain(..) {
            d.ack();
            printed += 1;
        }
    }
    Ok(printed)
}

async fn dead_letters(node: &dchan::Node, channel: &str) -> Result<(), Failure> {
    if node.cluster().channel(channel).is_none() {
        return Err(Failure::new(format!("no channel named {channel:?}")));
    }
    let letters = node.dead_letters(channel).await?;
    let mut out = std::io::stdout().lock();
    for l in &letters {
        let message = match l.value() {
            Ok(v) => serde_json::to_value(&v).unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        };
        let line = serde_json::json!({
            "channel": l.channel,
            "node": l.node,
            "from": l.from,
            "seq": l.seq,
            "expected": l.expected,
            "error": l.error,
            "message": message,
        });
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| Failure::new(format!("stdout closed: {e}")))?;
    }
    node.remove_dead_letters(&letters).await?;
    eprintln!("dchan recv: {} dead letter(s) of {channel}", letters.len());
    Ok(())
}
