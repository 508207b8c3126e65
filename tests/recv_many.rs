//! `Receiver::recv_many`: messages taken in batches, from this node and from another, each
//! exactly once and in each sender's order, with credit going back for all of them (a capacity
//! far below the count), counted in the metrics, misfits kept as dead letters, and 0 once the
//! channel is closed and drained.

mod common;

use std::collections::BTreeMap;

use common::{cluster, receivers_visible, shutdown, within};
use dchan::Value;

/// Messages per sender.
const EACH: u64 = 3000;

#[actix_rt::test]
async fn batches_take_every_message_once_in_order_and_give_the_room_back() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<(u8, u64)>("batches").capacity(16).await.expect("receiver");
    receivers_visible(&nodes, "batches", 1).await;
    let mut senders = Vec::new();
    // One sender on the receiver's node (messages moved in), one on the other (over TCP).
    for (tag, node) in [(0u8, &nodes[1]), (1, &nodes[0])] {
        let tx = node.sender::<(u8, u64)>("batches").await.expect("sender");
        within("receiver known", tx.wait_for_receivers(1)).await.expect("open");
        senders.push(actix_rt::spawn(async move {
            for n in 0..EACH {
                tx.send((tag, n)).await.expect("open channel");
            }
            tx
        }));
    }
    // Nothing is taken with a limit of 0, whatever is ready.
    let mut batch = Vec::new();
    assert_eq!(rx.recv_many(&mut batch, 0).await, 0);
    assert!(batch.is_empty());

    let mut next: BTreeMap<u8, u64> = BTreeMap::new();
    let (mut calls, mut largest) = (0u32, 0usize);
    while next.values().sum::<u64>() < 2 * EACH {
        batch.clear();
        let n = within("a batch", rx.recv_many(&mut batch, 10)).await;
        assert!((1..=10).contains(&n), "a batch of {n}, limit 10");
        assert_eq!(n, batch.len());
        (calls, largest) = (calls + 1, largest.max(n));
        for &(tag, seq) in &batch {
            let expected = next.entry(tag).or_default();
            assert_eq!(seq, *expected, "sender {tag}: out of order or twice");
            *expected += 1;
        }
    }
    assert!(largest > 1, "every batch held one message ({calls} calls)");
    for s in senders {
        let tx = within("sender done", s).await.expect("sending task");
        drop(tx);
    }
    let received = nodes[1].stats().channel("batches").expect("stats").received;
    assert_eq!(received, 2 * EACH, "the metrics count every message taken in a batch");

    // Closed and drained: 0, as `recv` returns `None`.
    let closer = nodes[0].sender::<(u8, u64)>("batches").await.expect("sender");
    within("close", closer.close()).await.expect("closed");
    batch.clear();
    assert_eq!(within("the end", rx.recv_many(&mut batch, 10)).await, 0);
    assert!(batch.is_empty());
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn what_does_not_decode_in_a_batch_is_a_dead_letter_and_the_rest_arrive() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<u64>("misfits").capacity(64).await.expect("receiver");
    receivers_visible(&nodes, "misfits", 1).await;
    let raw = nodes[0].sender::<Value>("misfits").await.expect("untyped sender");
    within("receiver known", raw.wait_for_receivers(1)).await.expect("open");
    // Fits and misfits interleaved, all sent before the first batch is taken (the buffer
    // holds them), and 5 misfits last: a batch of misfits alone waits for the next fit.
    for i in 0..20u64 {
        let v = if i % 3 == 0 { Value::from(format!("not a number {i}")) } else { Value::from(i) };
        within("send", raw.send(v)).await.expect("send");
    }
    let fits: Vec<u64> = (0..20).filter(|i| i % 3 != 0).collect();
    let mut got = Vec::new();
    while got.len() < fits.len() {
        let n = within("a batch", rx.recv_many(&mut got, 64)).await;
        assert!(n >= 1);
    }
    assert_eq!(got, fits, "the fits, in order, each once");
    for i in 0..5 {
        within("send", raw.send(Value::from(format!("late misfit {i}")))).await.expect("send");
    }
    within("send", raw.send(Value::from(99u64))).await.expect("send");
    got.clear();
    assert_eq!(within("after the misfits", rx.recv_many(&mut got, 64)).await, 1);
    assert_eq!(got, [99]);
    let letters = within("dead letters", nodes[0].dead_letters("misfits")).await.expect("letters");
    assert_eq!(letters.len(), 7 + 5, "every misfit kept");
    assert!(rx.is_empty(), "nothing else waiting");
    drop(rx);
    shutdown(nodes).await;
}
