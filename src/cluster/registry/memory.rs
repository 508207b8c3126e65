//! What the registry itself costs per endpoint (run alone: it counts every allocation of the
//! process): `cargo test --release --lib registry::memory -- --ignored --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use super::*;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, counting the bytes live.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
#[ignore = "a measurement; run alone"]
fn bytes_per_endpoint() {
    let n = 100_000u64;
    let before = LIVE.load(Ordering::Relaxed);
    let mut r = Registry::default();
    for i in 0..n {
        r.apply(&Command::Register {
            channel: format!("scale-{i}"),
            type_name: "u64".into(),
            kind: EndpointKind::Receiver,
            // Under the per-node cap of unit tests.
            node: 1 + i % 20,
            capacity: 16,
            token: i,
        });
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(r.endpoint_count() as u64, n);
    eprintln!("registry: {} B per endpoint", (after - before) / n as isize);
    let bytes = rmp_serde::to_vec_named(&r).expect("serializes");
    eprintln!("serialized (a snapshot's bulk): {} B per endpoint", bytes.len() as u64 / n);
}
