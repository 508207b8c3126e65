//! Reply handles are cheap to keep: 100,000 alive on one node take a few hundred bytes each
//! (the asking node's table entry, the pair's shared state, the two handles), counted by a
//! global allocator that tracks the bytes live. Its own binary: the allocator counts for the
//! whole process.

mod common;

use common::{cluster, live_bytes, shutdown, within};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[actix_rt::test]
async fn a_hundred_thousand_reply_handles_take_a_few_hundred_bytes_each() {
    const N: usize = 100_000;
    let nodes = cluster(1).await;
    let entries = nodes[0].__entries();
    // No await from here to the count: nothing else of the node runs meanwhile.
    let mut handles = Vec::with_capacity(N);
    let region = Region::new(ALLOCATOR);
    for _ in 0..N {
        handles.push(nodes[0].oneshot::<u64>());
    }
    let per_handle = live_bytes(&region) as usize / N;
    let inline = std::mem::size_of_val(&handles[0]);
    eprintln!(
        "{N} reply handles: {per_handle} bytes each on the heap, {inline} in the pair itself"
    );
    assert!(per_handle + inline <= 512, "{per_handle} + {inline} bytes per reply handle");
    assert_eq!(nodes[0].__entries(), entries + N);
    // Every one still answers; answered, they leave nothing behind.
    for (i, (reply, answer)) in handles.into_iter().enumerate() {
        reply.send(i as u64).expect("waiting");
        assert_eq!(within("answer", answer).await, Ok(i as u64));
    }
    assert_eq!(nodes[0].__entries(), entries);
    shutdown(nodes).await;
}
