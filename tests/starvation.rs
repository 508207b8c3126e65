//! A busy application cannot starve its node: `send`, `recv` and the `Stream` take part in tokio's
//! cooperative budget, as tokio's channels do, so other tasks on the same thread keep running.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

/// Count the ticks of a 10 ms ticker on this thread while `spin` runs for `SPIN`.
async fn ticks_while<F: std::future::Future<Output = u64>>(spin: F) -> (usize, u64) {
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = ticks.clone();
        actix_rt::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            loop {
                every.tick().await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The ticker has ticked once (at once) before the spin starts.
    common::eventually(|| ticks.load(Ordering::Relaxed) > 0).await;
    let before = ticks.load(Ordering::Relaxed);
    let rounds = spin.await;
    ticker.abort();
    (ticks.load(Ordering::Relaxed) - before, rounds)
}

const SPIN: Duration = Duration::from_millis(500);

#[actix_rt::test]
async fn a_send_recv_loop_lets_other_tasks_on_its_thread_run() {
    let node = common::cluster(1).await.remove(0);
    let tx = node.sender::<u64>("spin").await.expect("tx");
    let mut rx = node.receiver::<u64>("spin").capacity(16).await.expect("rx");
    let (ticks, rounds) = ticks_while(async {
        let until = Instant::now() + SPIN;
        let mut n = 0;
        while Instant::now() < until {
            tx.send(n).await.expect("send");
            assert_eq!(rx.recv().await, Some(n));
            n += 1;
        }
        n
    })
    .await;
    assert!(rounds > 0);
    // About 50 ticks are due; without yielding, none would run until the loop ends.
    assert!(ticks >= 10, "the ticker ran {ticks} times in {SPIN:?} ({rounds} round trips)");
    drop((tx, rx));
    node.shutdown().await.expect("shutdown");
}

#[actix_rt::test]
async fn a_stream_consumer_lets_other_tasks_on_its_thread_run() {
    let node = common::cluster(1).await.remove(0);
    let tx = node.sender::<u64>("stream").await.expect("tx");
    let mut rx = node.receiver::<u64>("stream").capacity(64).await.expect("rx");
    let (ticks, rounds) = ticks_while(async {
        let until = Instant::now() + SPIN;
        let mut n = 0;
        while Instant::now() < until {
            // Fill, then drain through the Stream: every poll finds a message ready.
            while tx.try_send(n).is_ok() {
                n += 1;
            }
            for _ in 0..64 {
                if rx.next().await.is_none() {
                    break;
                }
            }
        }
        n
    })
    .await;
    assert!(ticks >= 10, "the ticker ran {ticks} times in {SPIN:?} ({rounds} messages)");
    drop((tx, rx));
    node.shutdown().await.expect("shutdown");
}
