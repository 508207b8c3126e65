//! Nothing lost (promises 4 and 8 in the README): capacity counted over every sending node, messages
//! acknowledged only when the application takes them, redelivered when a receiver goes away or
//! its node dies, and explicit acknowledgement for at-least-once to the application itself.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::procs;
use common::{cluster, eventually, receivers_visible, shutdown, within};
use dchan::{SendTimeoutError, TrySendError};

/// A node process of this file's tests.
#[test]
#[ignore = "a node process started by this file's tests"]
fn child() {
    procs::child_main();
}

/// Fill with `try_send` until `Full`, returning how many got in.
fn fill(tx: &dchan::Sender<u64>, from: u64) -> u64 {
    let mut n = 0;
    while tx.try_send(from + n).is_ok() {
        n += 1;
        assert!(n <= 1_000, "try_send never said Full");
    }
    n
}

#[actix_rt::test]
async fn capacity_counts_every_sending_node_together() {
    let nodes = cluster(3).await;
    let mut rx = nodes[0].receiver::<u64>("cap").capacity(4).await.expect("rx");
    let txs = [
        nodes[1].sender::<u64>("cap").await.expect("tx"),
        nodes[2].sender::<u64>("cap").await.expect("tx"),
    ];
    // Each sending node waits for its first credit, then both fill what they can; credit moves
    // between them on demand, but never more than 4 are sent and not received.
    let mut sent = 0;
    eventually(|| {
        for tx in &txs {
            sent += fill(tx, sent);
        }
        assert!(sent <= 4, "{sent} messages accepted for a receiver of capacity 4");
        sent == 4
    })
    .await;
    for tx in &txs {
        let r = tx.send_timeout(99, Duration::from_millis(200)).await;
        assert!(matches!(r, Err(SendTimeoutError::Timeout(99))), "a 5th got in: {r:?}");
        assert!(matches!(tx.try_send(99), Err(TrySendError::Full(99))));
    }
    // One taken makes room for exactly one, whichever node asks.
    let first = within("recv", rx.recv()).await.expect("open");
    assert!(first < 4);
    within("send after room", txs[1].send(4)).await.expect("send");
    let r = txs[0].send_timeout(98, Duration::from_millis(200)).await;
    assert!(matches!(r, Err(SendTimeoutError::Timeout(98))), "{r:?}");
    let mut got = BTreeSet::from([first]);
    for _ in 0..4 {
        got.insert(within("recv", rx.recv()).await.expect("open"));
    }
    assert_eq!(got, (0..5).collect(), "every message once");
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn capacity_one_hands_over_one_message_at_a_time_in_order() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<u64>("one").capacity(1).await.expect("rx");
    let tx = nodes[0].sender::<u64>("one").await.expect("tx");
    let sending = actix_rt::spawn(async move {
        for i in 0..2_000u64 {
            tx.send(i).await.expect("send");
        }
    });
    for i in 0..2_000u64 {
        assert_eq!(within("recv", rx.recv()).await, Some(i));
    }
    within("sender", sending).await.expect("task");
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn unacknowledged_deliveries_go_to_another_receiver_and_acknowledged_ones_do_not() {
    let nodes = cluster(3).await;
    let mut manual = nodes[1].receiver::<u64>("acked").capacity(8).manual_ack().await.expect("rx");
    let tx = nodes[0].sender::<u64>("acked").await.expect("tx");
    for i in 0..8 {
        within("send", tx.send(i)).await.expect("send");
    }
    // Take all 8, acknowledge the first 3; the rest stay unacknowledged, holding the capacity.
    let mut held = Vec::new();
    for i in 0..8 {
        let d = within("recv", manual.recv()).await.expect("open");
        assert_eq!(*d, i);
        if i < 3 {
            assert_eq!(d.ack(), i);
        } else {
            held.push(d);
        }
    }
    // The 3 acknowledged freed 3 places; the 5 unacknowledged still count.
    for i in 8..11 {
        within("send", tx.send(i)).await.expect("send");
    }
    let r = tx.send_timeout(100, Duration::from_millis(200)).await;
    assert!(matches!(r, Err(SendTimeoutError::Timeout(100))), "{r:?}");
    // The receiver goes away with 5 deliveries unacknowledged: they go to the other receiver.
    let mut other = nodes[2].receiver::<u64>("acked").capacity(64).await.expect("rx");
    receivers_visible(&nodes, "acked", 2).await;
    drop(held);
    drop(manual);
    let mut got = Vec::new();
    while got.len() < 8 {
        got.push(within("redelivered", other.recv()).await.expect("open"));
    }
    got.sort_unstable();
    // The 5 unacknowledged and the 3 never taken, once each; never an acknowledged one.
    assert_eq!(got, (3..11).collect::<Vec<_>>());
    shutdown(nodes).await;
}

#[tokio::test]
async fn a_killed_receiving_node_loses_nothing() {
    let mut a = procs::start(&[]).await;
    let mut b = procs::start(&[a.addr]).await;
    let mut c = procs::start(&[a.addr]).await;
    for p in [&mut b, &mut c] {
        p.cmd("slowrecv nums 64 200");
        p.expect("@ recv nums").await;
    }
    let total = 20_000u64;
    a.cmd(&format!("send nums 0 {total}"));
    // Let the stream get under way, then kill one receiving node mid-stream.
    let before = b.numbers("nums", 500).await;
    assert_eq!(before.len(), 500, "node b receives");
    b.kill();
    let killed = Instant::now();
    let mut got: BTreeSet<u64> = before.into_iter().collect();
    got.extend(b.drain_numbers("nums").await);
    let mut dups = 0;
    let deadline = Instant::now() + common::DEADLINE * 3;
    while got.len() < total as usize && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = c.expect_within(&["@ got nums "], left).await else { break };
        let n: u64 = line["@ got nums ".len()..].parse().expect("a number");
        if !got.insert(n) {
            dups += 1;
        }
    }
    let missing: Vec<u64> = (0..total).filter(|n| !got.contains(n)).take(10).collect();
    assert!(missing.is_empty(), "lost after SIGKILL of a receiving node: {missing:?}...");
    eprintln!("all {total} received {:?} after the kill, {dups} duplicates", killed.elapsed());
    a.expect("@ sent nums").await;
}

/// `Sender::wait_taken` counts what a killed node's receiver held until it is delivered
/// elsewhere and taken there: the leader removes a dead node's endpoints before the node itself,
/// and in between the sending node no longer routes to the receiver but still holds its
/// messages. (`dchan send` waits for this before it exits: it lost them when it did not.)
#[actix_rt::test]
async fn wait_taken_waits_for_what_a_killed_receiver_held() {
    common::tracing();
    let mut a = procs::start(&[]).await;
    let mut b = procs::start(&[a.addr]).await;
    let sending =
        dchan::Node::builder().listen("127.0.0.1:0").join([a.addr]).start().await.expect("join");
    // b takes 8 and acknowledges none: the sending node keeps all 8.
    b.cmd("ackrecv held 8 0");
    b.expect("@ recv held").await;
    let tx = sending.sender::<u64>("held").await.expect("tx");
    for i in 0..8 {
        within("send", tx.send(i)).await.expect("send");
    }
    assert_eq!(b.numbers("held", 8).await, (0..8).collect::<Vec<_>>());
    // A receiver on a takes the rest (b has no room left).
    a.cmd("recv held 64");
    a.expect("@ recv held").await;
    eventually(|| tx.receiver_count() == 2).await;
    for i in 8..20 {
        within("send", tx.send(i)).await.expect("send");
    }
    assert_eq!(a.numbers("held", 12).await, (8..20).collect::<Vec<_>>());
    b.kill();
    within("every message taken", tx.wait_taken()).await;
    // Taken means received by a receiver that is alive: a printed each before it said so.
    let mut redelivered = a.printed_numbers("held").await;
    redelivered.sort_unstable();
    assert_eq!(redelivered, (0..8).collect::<Vec<_>>(), "what b held, once each");
    within("shutdown", sending.shutdown()).await.expect("shutdown");
    a.leave().await;
}

/// Time from SIGKILL of a receiving node to every message it had not taken being received
/// elsewhere, over 20 kills (p50, p99). Run with `cargo test --test delivery -- --ignored
/// measure --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn measure_kill_to_redelivery() {
    let mut a = procs::start(&[]).await;
    let mut c = procs::start(&[a.addr]).await;
    let mut samples = Vec::new();
    for round in 0..20 {
        let ch = format!("nums{round}");
        let mut b = procs::start(&[a.addr]).await;
        // b is the only receiver and takes a message every 20 ms: all 64 are sent to it. Then c
        // registers a receiver, and b is killed holding most of them.
        b.cmd(&format!("slowrecv {ch} 64 20000"));
        b.expect(&format!("@ recv {ch}")).await;
        let total = 64u64;
        a.cmd(&format!("send {ch} 0 {total}"));
        a.expect(&format!("@ sent {ch}")).await;
        c.cmd(&format!("recv {ch} 64"));
        c.expect(&format!("@ recv {ch}")).await;
        let mut got: BTreeSet<u64> = b.numbers(&ch, 3).await.into_iter().collect();
        b.kill();
        let killed = Instant::now();
        got.extend(b.drain_numbers(&ch).await);
        let held = total as usize - got.len();
        while got.len() < total as usize {
            let line = c.expect(&format!("@ got {ch} ")).await;
            got.insert(line[format!("@ got {ch} ").len()..].parse().expect("a number"));
        }
        assert!(held > 30, "b held only {held}");
        samples.push(killed.elapsed());
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "SIGKILL of a receiving node to all it held received elsewhere: p50 {:?}, p99 {:?} over {} kills",
        p(0.5),
        p(0.99),
        samples.len()
    );
}

/// A dropped receiver forwards nothing: its sending node stops using it at once and delivers what
/// it had not taken to the other receiver, within that receiver's capacity. Senders never get
/// more room than the receivers that are left have.
#[actix_rt::test]
async fn a_dropped_receiver_gives_senders_no_extra_room() {
    let nodes = cluster(3).await;
    let doomed = nodes[1].receiver::<u64>("bounded").capacity(8).await.expect("rx");
    let mut left = nodes[2].receiver::<u64>("bounded").capacity(8).await.expect("rx");
    let tx = nodes[0].sender::<u64>("bounded").await.expect("tx");
    let mut sent = 0;
    eventually(|| {
        sent += fill(&tx, sent);
        assert!(sent <= 16, "{sent} accepted for two receivers of capacity 8");
        sent == 16
    })
    .await;
    drop(doomed);
    receivers_visible(&nodes, "bounded", 1).await;
    // The 8 the dropped receiver held wait for room at the other, which is full: no new message
    // gets in, and none is lost.
    let r = tx.send_timeout(100, Duration::from_millis(300)).await;
    assert!(matches!(r, Err(SendTimeoutError::Timeout(100))), "{r:?}");
    let mut got = Vec::new();
    while got.len() < 16 {
        got.push(within("recv", left.recv()).await.expect("open"));
    }
    got.sort_unstable();
    assert_eq!(got, (0..16).collect::<Vec<_>>(), "every message once");
    shutdown(nodes).await;
}
