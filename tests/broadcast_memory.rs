//! A broadcast's copies for receivers on its own node share its encoded bytes until taken: those
//! bytes must be the message's, not a buffer sized for an earlier, larger broadcast (the encode
//! reserves what the thread's last broadcast took). Counted by a global allocator that tracks
//! the bytes live; its own binary, as the allocator counts for the whole process.

mod common;

use common::{cluster, live_bytes, shutdown, within};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[actix_rt::test]
async fn small_broadcasts_after_large_ones_keep_only_their_own_bytes() {
    const ROUNDS: usize = 16;
    let nodes = cluster(1).await;
    let mut small_rx = nodes[0].receiver::<Vec<u8>>("small").capacity(64).await.expect("rx");
    let small_tx = nodes[0].sender::<Vec<u8>>("small").await.expect("tx");
    let mut big_rx = nodes[0].receiver::<Vec<u8>>("big").capacity(4).await.expect("rx");
    let big_tx = nodes[0].sender::<Vec<u8>>("big").await.expect("tx");
    // A first round, so that what the node allocates once is not counted.
    big_tx.broadcast(vec![1u8; 1 << 20]).await.expect("large");
    drop(within("large", big_rx.recv()).await.expect("open"));
    small_tx.broadcast(vec![1u8; 8]).await.expect("small");
    within("small", small_rx.recv()).await.expect("open");
    let region = Region::new(ALLOCATOR);
    for _ in 0..ROUNDS {
        big_tx.broadcast(vec![1u8; 1 << 20]).await.expect("large");
        drop(within("large", big_rx.recv()).await.expect("open"));
        // Held by its receiver until taken below.
        small_tx.broadcast(vec![1u8; 8]).await.expect("small");
    }
    let held = live_bytes(&region);
    for _ in 0..ROUNDS {
        assert_eq!(within("small", small_rx.recv()).await.expect("open").len(), 8);
    }
    // 16 small messages waiting: a few KiB of bookkeeping, not 16 large buffers (16 MiB).
    assert!(held < 256 * 1024, "{held} bytes live for {ROUNDS} small broadcasts waiting");
    shutdown(nodes).await;
}
