//! What a reply handle costs on the asking node, beside a tokio oneshot channel as the
//! baseline (the same shape: a pair, one value, awaited):
//!
//! | benchmark                   | one iteration                                                  |
//! |-----------------------------|----------------------------------------------------------------|
//! | `tokio_oneshot_create`      | `tokio::sync::oneshot::channel::<u64>()`                       |
//! | `reply_handle_create`       | `node.oneshot::<u64>()`: an entry in the node's table, a pair  |
//! | `tokio_oneshot_answer`      | create, send, await                                            |
//! | `reply_handle_answer`       | create, answer on the asking node itself, await: the table and the encoding, no network |
//! | `tokio_mpsc_create`         | `tokio::sync::mpsc::channel::<u64>(16)`                        |
//! | `unnamed_channel_create`    | `node.channel::<u64>(16)`: an inbox, a router, the node's table entries |
//!
//! Creation is timed alone: the pairs made in a sample are kept in a vector made beforehand and
//! dropped after the timing. The issue's target: a reply handle under 1 µs to create.
//!
//! ```text
//! cargo bench --bench answers
//! cargo bench --bench answers -- --test   # each benchmark once, as a smoke test
//! ```

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};

mod support;
use support::*;

/// How long making `iters` of what `make` makes takes, keeping them all until after the timing
/// (what they do when dropped is not timed).
fn creating<T>(iters: u64, mut make: impl FnMut() -> T) -> Duration {
    let mut keep = Vec::with_capacity(iters as usize);
    let start = Instant::now();
    for _ in 0..iters {
        keep.push(make());
    }
    let took = start.elapsed();
    drop(keep);
    took
}

fn main() {
    init_tracing();
    let system = actix_rt::System::new();
    let node = system
        .block_on(dchan::Node::builder().listen("127.0.0.1:0").bootstrap().start())
        .expect("node");
    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("answers");
        group
            .sample_size(30)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        group.bench_function("tokio_oneshot_create", |b| {
            b.iter_custom(|iters| creating(iters, || tokio::sync::oneshot::channel::<u64>()))
        });
        group.bench_function("reply_handle_create", |b| {
            b.iter_custom(|iters| creating(iters, || node.oneshot::<u64>()))
        });
        group.bench_function("tokio_mpsc_create", |b| {
            b.iter_custom(|iters| creating(iters, || tokio::sync::mpsc::channel::<u64>(16)))
        });
        group.bench_function("unnamed_channel_create", |b| {
            b.iter_custom(|iters| creating(iters, || node.channel::<u64>(16)))
        });
        group.bench_function("tokio_oneshot_answer", |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
                        tx.send(i).expect("waiting");
                        assert_eq!(rx.await, Ok(i));
                    }
                    start.elapsed()
                })
            });
        });
        group.bench_function("reply_handle_answer", |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let (reply, answer) = node.oneshot::<u64>();
                        reply.send(i).expect("waiting");
                        assert_eq!(answer.await, Ok(i));
                    }
                    start.elapsed()
                })
            });
        });
        group.finish();
    }
    c.final_summary();
    system.block_on(node.shutdown()).expect("shutdown");
}
