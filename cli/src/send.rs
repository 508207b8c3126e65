//! `dchan send`: send JSON values to a channel, from the arguments or one per line of stdin.
//!
//! Stdin is read and parsed on a thread of its own, in batches, so that parsing and sending
//! overlap (and a slow pipe never stalls the node's own work). A malformed value stops the
//! command with its line number; the values before it were sent.

use std::io::BufRead;

use dchan::Value;
use tokio::sync::mpsc;

use crate::client::{self, Join, Stop};
use crate::{json, Failure};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The channel.
    channel: String,
    /// JSON values to send; without any, one JSON value per line of stdin (blank lines skipped).
    values: Vec<String>,
    #[command(flatten)]
    join: Join,
    /// Send each value to every receiver instead of to one.
    #[arg(long)]
    broadcast: bool,
    /// Close the channel cluster-wide after the last value.
    #[arg(long)]
    close: bool,
}

/// Values read from stdin per batch.
const BATCH: usize = 1024;

/// What the reading thread hands over: a batch, or where input went wrong.
type Batch = Result<Vec<Value>, String>;

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    // Arguments are checked before joining: a typo costs no cluster round trip.
    let given = args
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| json::parse(v).map_err(|e| format!("value {} is not JSON: {e}", i + 1)))
        .collect::<Result<Vec<Value>, String>>()
        .map_err(Failure::new)?;
    let mut stop = Stop::new()?;
    let node = client::join(&args.join, &format!("send {}", args.channel)).await?;
    let result = async {
        let tx = node.sender::<Value>(&args.channel).await?;
        let (batches_tx, mut batches) = mpsc::channel::<Batch>(4);
        if args.values.is_empty() {
            std::thread::spawn(move || read_stdin(batches_tx));
        } else {
            batches_tx.try_send(Ok(given)).expect("an empty channel has room");
            drop(batches_tx);
        }
        let mut sent: u64 = 0;
        let sending = async {
            while let Some(batch) = batches.recv().await {
                for value in batch.map_err(Failure::new)? {
                    let done = if args.broadcast {
                        tx.broadcast(value).await.map(|_| ())
                    } else {
                        send_saying_why(&node, &tx, &args.channel, value).await
                    };
                    done.map_err(|_| Failure::new(format!("channel {} is closed", args.channel)))?;
                    sent += 1;
                }
            }
            Ok::<(), Failure>(())
        };
        let outcome = tokio::select! {
            r = sending => r,
            _ = stop.signalled() => Err(Failure::interrupted("interrupted")),
        };
        if let Err(mut f) = outcome {
            f.message = format!("{} after {sent} message(s) sent", f.message);
            return Err(f);
        }
        // What was sent stays this node's to redeliver until it is taken: wait for that, so
        // that a receiver dying after this command exits loses nothing (Ctrl-C gives up).
        tokio::select! {
            () = tx.wait_taken() => {}
            _ = stop.signalled() => {
                return Err(Failure::interrupted(format!(
                    "interrupted after {sent} message(s) sent, before all were received"
                )));
            }
        }
        if args.close {
            tx.close().await?;
        }
        // Taken includes what a typed receiver could not decode: kept as a dead letter where
        // it arrived. Those of this command are counted, and are a failure.
        let me = Some(node.id());
        let dead: Vec<dchan::DeadLetter> = match node.dead_letters(&args.channel).await {
            Ok(all) => all.into_iter().filter(|l| l.from == me).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "dead letters not counted");
                Vec::new()
            }
        };
        if let Some(first) = dead.first() {
            return Err(Failure::new(format!(
                "{} of {sent} message(s) sent to {} became dead letters: its receivers expect {} \
                 ({}); read them with `dchan recv {} --dead-letters`",
                dead.len(),
                args.channel,
                first.expected,
                first.error,
                args.channel
            )));
        }
        eprintln!("dchan send: {sent} message(s) sent to {}", args.channel);
        Ok(())
    }
    .await;
    // Leaving hands what this node still holds to the cluster before it goes.
    let left = node.shutdown().await;
    result?;
    left.map_err(Failure::from)
}

/// How long a send waits before the command says what it waits for.
const QUIET_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Send `value`; when it has to wait longer than [`QUIET_FOR`], say on stderr what for (a
/// receiver, or room), once per wait, instead of hanging silently.
async fn send_saying_why(
    node: &dchan::Node,
    tx: &dchan::Sender<Value>,
    channel: &str,
    value: Value,
) -> Result<(), dchan::SendError<Value>> {
    let value = match tx.try_send(value) {
        Ok(()) => {
            // As `send` would: a loop that never waits still lets the node's tasks run.
            tokio::task::coop::consume_budget().await;
            return Ok(());
        }
        Err(dchan::TrySendError::Closed(v)) => return Err(dchan::SendError(v)),
        Err(dchan::TrySendError::Full(v) | dchan::TrySendError::NoReceivers(v)) => v,
    };
    let send = tx.send(value);
    tokio::pin!(send);
    tokio::select! {
        done = &mut send => return done,
        () = tokio::time::sleep(QUIET_FOR) => {}
    }
    let receivers = node.cluster().channel(channel).map_or(0, |c| c.receivers().count());
    if receivers == 0 {
        eprintln!("dchan send: waiting for a receiver on `{channel}`...");
    } else {
        eprintln!(
            "dchan send: waiting for room on `{channel}` (its {receivers} receiver(s) are full)..."
        );
    }
    send.await
}

fn read_stdin(out: mpsc::Sender<Batch>) {
    let stdin = std::io::stdin().lock();
    let mut batch = Vec::with_capacity(BATCH);
    for (n, line) in stdin.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                let _ = out.blocking_send(Err(format!("reading stdin, line {}: {e}", n + 1)));
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match json::parse(&line) {
            Ok(v) => batch.push(v),
            Err(e) => {
                if !batch.is_empty() && out.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                    return;
                }
                let _ = out.blocking_send(Err(format!("line {} is not JSON: {e}", n + 1)));
                return;
            }
        }
        // A full batch goes; so does a partial one when the sender is idle (all batches taken),
        // so that a value typed by hand is sent at once.
        if batch.len() == BATCH || out.capacity() == out.max_capacity() {
            if out.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
            batch.reserve(BATCH);
        }
    }
    if !batch.is_empty() {
        let _ = out.blocking_send(Ok(batch));
    }
}
