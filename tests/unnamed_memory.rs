//! What unnamed channels cost to keep: 100,000 alive on one node, counted by a global allocator
//! that tracks the bytes live (the receiver's inbox and books, its router, the sender's share,
//! the node's table entry). Measured at 432 bytes each on the heap (448 with the pair itself),
//! about half of tokio's bounded channel of the same type measured beside it (816: its first
//! block of 32 slots). (1,263 before the rarely used parts were boxed; 1,015 before the books
//! of other nodes were made on first use and the router left the routers' table; 894 before
//! the router's and the inbox's rarely used parts were boxed together, the node's parts shared
//! and a sender's type name left to its type; 670 (662 when last written here) before the
//! router kept an unnamed channel's name as its ids and its one receiver inline, made its
//! wake-up for the first sender that waits, boxed its count of messages to re-route with its
//! other rare parts, kept small counts in 32 bits and its discard as a reference; before the
//! inbox kept its owner and decoding node in one, dropped a field never set and its batch
//! (worked out from the capacity), and its books kept the credit per node in a sorted slice;
//! and before a sender's "refused" went into the box of a sender still registering.) The
//! bound keeps it from growing. Not counted: a channel whose sender was used from another
//! node also keeps the receiver's books of other nodes (about 110 bytes more). Its own binary:
//! the allocator counts for the whole process.

mod common;

use common::{cluster, live_bytes, shutdown, within};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[actix_rt::test]
async fn a_hundred_thousand_unnamed_channels_take_a_few_hundred_bytes_each() {
    const N: usize = 100_000;
    // The baseline: tokio's bounded channel of the same type and capacity, in-process only.
    let region = Region::new(ALLOCATOR);
    let tokio: Vec<_> = (0..N).map(|_| tokio::sync::mpsc::channel::<u64>(1)).collect();
    let baseline = live_bytes(&region) as usize / N;
    drop(tokio);
    let nodes = cluster(1).await;
    let entries = nodes[0].__entries();
    // No await from here to the count: nothing else of the node runs meanwhile.
    let mut channels = Vec::with_capacity(N);
    let region = Region::new(ALLOCATOR);
    for _ in 0..N {
        channels.push(nodes[0].channel::<u64>(1));
    }
    let per_channel = live_bytes(&region) as usize / N;
    let inline = std::mem::size_of_val(&channels[0]);
    eprintln!("{N} unnamed channels: {per_channel} bytes each on the heap, {inline} in the pair");
    eprintln!("{N} tokio mpsc channels: {baseline} bytes each on the heap");
    assert!(per_channel + inline <= 464, "{per_channel} + {inline} bytes per unnamed channel");
    // One entry each: the receiver's inbox in the node's table (its router is found through it).
    assert_eq!(nodes[0].__entries(), entries + N);
    // Every one still carries a message; dropped, they leave nothing behind.
    for (i, (tx, mut rx)) in channels.into_iter().enumerate() {
        tx.send(i as u64).await.expect("open");
        assert_eq!(within("recv", rx.recv()).await, Some(i as u64));
    }
    assert_eq!(nodes[0].__entries(), entries);
    // Nor in memory: what stays is the tables' room (hash maps do not shrink).
    let left = live_bytes(&region).max(0) as usize / N;
    eprintln!("after dropping them all: {left} bytes each still live");
    assert!(left <= 200, "{left} bytes per unnamed channel left after dropping them");
    shutdown(nodes).await;
}
