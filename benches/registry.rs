//! Registration cost as the registry grows (issue 9): three nodes in this process over loopback,
//! receivers registered one after another on a follower, each on a channel of its own
//! (capacity 16), each timed from the call to its return (committed and applied here).
//!
//! Prints, at each checkpoint, the total time so far, p50 and p99 of the registrations since the
//! previous checkpoint, how the last 100 compare with the first 100, and the process's resident
//! memory per registered receiver (all three nodes' copies of the registry together).
//!
//! ```text
//! cargo bench --bench registry                       # checkpoints 200, 1000, 3000
//! cargo bench --bench registry -- 200 1000 3000 10000 100000
//! ```
//!
//! A measurement, not a test: it asserts nothing but that every registration succeeds.

use std::time::{Duration, Instant};

/// Resident memory of this process, bytes (Linux `/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let mut checkpoints: Vec<usize> =
        std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    if checkpoints.is_empty() {
        checkpoints = vec![200, 1000, 3000];
    }
    checkpoints.sort_unstable();
    let total = *checkpoints.last().expect("a checkpoint");
    actix_rt::System::new().block_on(async move {
        let a = dchan::Node::builder().bootstrap().start().await.expect("bootstrap");
        let b = dchan::Node::builder().join([a.addr()]).start().await.expect("join");
        let c = dchan::Node::builder().join([a.addr()]).start().await.expect("join");
        let follower = if b.cluster().leader == Some(b.id()) { &c } else { &b };
        let base = rss();
        println!("| receivers registered | total | p50 | p99 | last 100 / first 100 | RSS per receiver (3 nodes) |");
        println!("|---|---|---|---|---|---|");
        let mut all: Vec<Duration> = Vec::with_capacity(total);
        let mut keep = Vec::with_capacity(total);
        let start = Instant::now();
        let mut from = 0;
        for &upto in &checkpoints {
            for i in all.len()..upto {
                let t = Instant::now();
                let rx = follower
                    .receiver::<u64>(&format!("scale-{i}"))
                    .capacity(16)
                    .await
                    .expect("registered");
                all.push(t.elapsed());
                keep.push(rx);
            }
            let mut window: Vec<Duration> = all[from..upto].to_vec();
            window.sort_unstable();
            let mean = |s: &[Duration]| s.iter().sum::<Duration>() / s.len() as u32;
            let growth = mean(&all[upto - 100.min(upto)..upto]).as_secs_f64()
                / mean(&all[..100.min(upto)]).as_secs_f64();
            println!(
                "| {upto} | {:.2} s | {:?} | {:?} | {growth:.1}x | {} B |",
                start.elapsed().as_secs_f64(),
                percentile(&window, 0.5),
                percentile(&window, 0.99),
                rss().saturating_sub(base) / upto as u64,
            );
            from = upto;
        }
        drop(keep);
        for n in [c, b, a] {
            let _ = n.shutdown().await;
        }
    });
}
