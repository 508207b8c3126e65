//! What the registry itself costs per endpoint (run alone: it counts every allocation of the
//! process): `cargo test --release --lib registry::memory -- --ignored --nocapture`.

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use super::*;

#[global_allocator]
static ALLOC: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Bytes live in the process (allocated and not freed) since `region` began.
fn live(region: &Region<'_, std::alloc::System>) -> isize {
    let c = region.change();
    c.bytes_allocated as isize - c.bytes_deallocated as isize + c.bytes_reallocated
}

#[test]
#[ignore = "a measurement; run alone"]
fn bytes_per_endpoint() {
    let n = 100_000u64;
    let region = Region::new(ALLOC);
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
    let grown = live(&region);
    assert_eq!(r.endpoint_count() as u64, n);
    eprintln!("registry: {} B per endpoint", grown / n as isize);
    let bytes = rmp_serde::to_vec_named(&r).expect("serializes");
    eprintln!("serialized (a snapshot's bulk): {} B per endpoint", bytes.len() as u64 / n);
}
