//! Throughput of dchan against the transports it is built from, in one run, so that the figures
//! can be read as ratios.
//!
//! Every benchmark moves `N` (= 100 000) messages of about 64 bytes from one sender to one
//! receiver and reports `Throughput::Elements(N)`, i.e. messages per second. One iteration is
//! one round of `N` messages: the sender runs as its own task, the receiver is awaited by the
//! timed future, and the round ends when the receiver has counted all `N` (checking their order).
//! Connections, nodes, senders and receivers are set up once per benchmark, outside the timing.
//!
//! | benchmark            | what one round is                                                    |
//! |----------------------|----------------------------------------------------------------------|
//! | `raw_framed_tcp`     | a loopback `TcpStream` pair, each side `Framed<_, LengthDelimitedCodec>`; the writer `feed`s `N` 64-byte frames and `flush`es once at the end, the reader counts `N` frames |
//! | `raw_framed_tcp_rmp` | the same, but each frame is a [`Msg`] encoded with `rmp_serde::to_vec_named` (≈ 64 bytes) and decoded by the reader |
//! | `tokio_mpsc`         | a bounded `tokio::sync::mpsc` channel (capacity 1024) of [`Msg`], in-process |
//! | `dchan_local`        | one node; a `Sender<Msg>` and a `Receiver<Msg>` (capacity 1024) on it: dchan's in-process path |
//! | `dchan_two_nodes`    | two nodes in this process (bootstrap + join) over loopback; the sender on the first, the receiver (capacity 1024) on the second |
//! | `dchan_two_nodes_four_receivers` | the same with four receivers on the second node, sharing the work (messages for several receivers on one node must still travel many to a frame) |
//!
//! Everything runs on one thread: the runtime is an actix `System` (a current-thread tokio
//! runtime with a `LocalSet`), which dchan needs for its actors, and the baselines run on the
//! same runtime so that the comparison is like for like (dchan's own tasks share that thread).
//!
//! # Running
//!
//! ```text
//! cargo bench --bench throughput                  # everything, about 1.5 min once built
//! cargo bench --bench throughput -- dchan         # only the benchmarks whose id contains "dchan"
//! cargo bench --bench throughput -- --test        # each benchmark once, as a smoke test
//! ```
//!
//! dchan's own warnings and errors go to stderr (`RUST_LOG` overrides the default filter,
//! `warn,openraft=error`). Each dchan round has a deadline ([`ROUND_DEADLINE`]); a round that
//! does not finish in time panics with how many messages were sent and received by then, so a
//! hang shows up as a clear failure rather than a stuck benchmark.
//!
//! # Reading the ratios
//!
//! Criterion prints, for each benchmark, `thrpt: [low mid high]` in elements per second (with
//! flat sampling the middle figure is the mean, between its 95% confidence bounds), and stores the
//! full statistics, median included, under
//! `$CARGO_TARGET_DIR/criterion/throughput/<benchmark>/new/estimates.json` (nanoseconds per round
//! of `N` messages: throughput is `N / time`). Divide one benchmark's throughput by another's:
//!
//! - `dchan_two_nodes / raw_framed_tcp_rmp`: dchan's network path against the encode, frame,
//!   send, decode it is made of. The baseline puts each message in its own frame and allocates its
//!   encoding, whereas dchan encodes consecutive messages into one shared data frame, so this
//!   ratio can exceed 1.0; below 1.0, dchan spends more per message than a naive per-frame design;
//! - `dchan_two_nodes / raw_framed_tcp`: against framing 64-byte frames with no encoding at all,
//!   a ceiling for one-message-per-frame traffic over one loopback connection;
//! - `dchan_local / tokio_mpsc`: the in-process path (value moved into the receiver's inbox, no
//!   encoding) against a plain bounded channel; about 1.0 means the path adds nothing.
//!
//! Absolute figures move with the machine's load; ratios from one run are much steadier.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use futures::{SinkExt, StreamExt};

/// Messages per round (one criterion iteration).
const N: u64 = 100_000;
/// The longest a dchan round may take before the benchmark fails.
const ROUND_DEADLINE: Duration = Duration::from_secs(60);
/// Check that the `i`-th message of a round is the `i`-th one sent.
fn check_order(bench: &str, i: u64, got: u64) {
    assert_eq!(
        got, i,
        "{bench}: message {i} of the round has id {got}: lost, duplicated or reordered"
    );
}

/// Time `iters` rounds, each the future `$round` (an expression evaluated anew per round).
macro_rules! time_rounds {
    ($system:expr, $iters:expr, $round:expr) => {
        $system.block_on(async {
            let start = Instant::now();
            for _ in 0..$iters {
                $round.await;
            }
            start.elapsed()
        })
    };
}

mod support;
use support::*;

fn main() {
    init_tracing();

    let system = actix_rt::System::new();
    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("throughput");
        group
            .throughput(Throughput::Elements(N))
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(8));
        raw_framed_tcp(&mut group, &system);
        raw_framed_tcp_rmp(&mut group, &system);
        tokio_mpsc(&mut group, &system);
        dchan_local(&mut group, &system);
        dchan_two_nodes(&mut group, &system);
        dchan_two_nodes_four_receivers(&mut group, &system);
        group.finish();
    }
    c.final_summary();
}

/// The framed TCP baselines: the writer task feeds `frame(i)` for each `i` in the round and
/// flushes once; `read(i, frame)` handles the `i`-th frame on the reader.
fn framed_tcp_bench(
    group: &mut Group<'_>,
    system: &actix_rt::SystemRunner,
    name: &'static str,
    frame: fn(u64) -> Bytes,
    read: fn(u64, &[u8]),
) {
    // Connected on first use, so that a filtered-out benchmark sets nothing up.
    let mut pair: Option<(Option<FramedTcp>, FramedTcp)> = None;
    group.bench_function(name, |b| {
        let (writer, reader) = pair.get_or_insert_with(|| {
            let (w, r) = system.block_on(framed_pair());
            (Some(w), r)
        });
        b.iter_custom(|iters| time_rounds!(system, iters, tcp_round(writer, reader, frame, read)));
    });
}

/// One round of a framed TCP baseline.
async fn tcp_round(
    writer: &mut Option<FramedTcp>,
    reader: &mut FramedTcp,
    frame: fn(u64) -> Bytes,
    read: fn(u64, &[u8]),
) {
    let mut w = writer.take().expect("writer is back after each round");
    let write = actix_rt::spawn(async move {
        for i in 0..N {
            w.feed(frame(i)).await.expect("feed");
        }
        SinkExt::<Bytes>::flush(&mut w).await.expect("flush");
        w
    });
    for i in 0..N {
        let f = reader.next().await.expect("connection open").expect("frame");
        read(i, &f);
    }
    *writer = Some(write.await.expect("writer task"));
}

fn raw_framed_tcp(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    framed_tcp_bench(
        group,
        system,
        "raw_framed_tcp",
        |_| Bytes::from_static(&FRAME),
        |_, f| assert_eq!(f.len(), FRAME.len(), "raw_framed_tcp: frame of the wrong size"),
    );
}

fn raw_framed_tcp_rmp(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    framed_tcp_bench(
        group,
        system,
        "raw_framed_tcp_rmp",
        |i| rmp_serde::to_vec_named(&msg(i)).expect("encode").into(),
        |i, f| {
            let m: Msg = rmp_serde::from_slice(f).expect("decode");
            check_order("raw_framed_tcp_rmp", i, m.id);
        },
    );
}

fn tokio_mpsc(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(CAPACITY);
    group.bench_function("tokio_mpsc", |b| {
        b.iter_custom(|iters| time_rounds!(system, iters, mpsc_round(&tx, &mut rx)));
    });
}

/// One round of the tokio mpsc baseline.
async fn mpsc_round(
    tx: &tokio::sync::mpsc::Sender<Msg>,
    rx: &mut tokio::sync::mpsc::Receiver<Msg>,
) {
    let send = {
        let tx = tx.clone();
        actix_rt::spawn(async move {
            for i in 0..N {
                tx.send(msg(i)).await.expect("receiver alive");
            }
        })
    };
    for i in 0..N {
        let m = rx.recv().await.expect("sender alive");
        check_order("tokio_mpsc", i, m.id);
    }
    send.await.expect("sender task");
}

/// A dchan setup: the nodes (first one bootstrapped), a sender and a receiver of one channel.
struct Dchan {
    nodes: Vec<dchan::Node>,
    tx: dchan::Sender<Msg>,
    rxs: Vec<dchan::Receiver<Msg>>,
}

/// Start `n` nodes, `receivers` receivers on the last one and a sender on the first one, and wait
/// until the sender sees them all.
async fn dchan_setup(bench: &'static str, n: usize, receivers: usize) -> Dchan {
    let nodes = start_nodes(bench, n).await;
    let channel = format!("bench-{bench}");
    let mut rxs = Vec::new();
    for _ in 0..receivers {
        rxs.push(receiver(bench, &nodes[n - 1], &channel).await);
    }
    let tx = sender(bench, &nodes[0], &channel, receivers).await;
    Dchan { nodes, tx, rxs }
}

/// Drop the endpoints, then shut the nodes down, last started first.
async fn dchan_teardown(bench: &'static str, d: Dchan) {
    let Dchan { nodes, tx, rxs } = d;
    drop(tx);
    drop(rxs);
    shutdown_nodes(bench, &nodes).await;
}

/// One round over dchan: a task sends `N` messages; the receivers, polled together, take them
/// (each message once, each receiver's share in order), under [`ROUND_DEADLINE`].
async fn dchan_round(
    bench: &'static str,
    tx: &dchan::Sender<Msg>,
    rxs: &mut [dchan::Receiver<Msg>],
) {
    let sent = Rc::new(Cell::new(0u64));
    let received = Cell::new(0u64);
    let send = {
        let (tx, sent) = (tx.clone(), sent.clone());
        actix_rt::spawn(async move {
            for i in 0..N {
                if let Err(e) = tx.send(msg(i)).await {
                    panic!("{bench}: send of message {i} of the round failed: {e}");
                }
                sent.set(i + 1);
            }
        })
    };
    let round = async {
        // One receiver: read it directly, as the tokio mpsc baseline does, and check exact order.
        if let [rx] = rxs {
            for i in 0..N {
                match rx.recv().await {
                    Some(m) => check_order(bench, i, m.id),
                    None => panic!("{bench}: the receiver ended after {i} of {N} messages"),
                }
                received.set(i + 1);
            }
            return send.await;
        }
        let mut last: Vec<Option<u64>> = vec![None; rxs.len()];
        let mut seen = vec![false; N as usize];
        let mut all = futures::stream::select_all(
            rxs.iter_mut().enumerate().map(|(k, rx)| rx.map(move |m| (k, m.id))),
        );
        for i in 0..N {
            let Some((k, id)) = all.next().await else {
                panic!("{bench}: a receiver ended after {i} of {N} messages")
            };
            assert!(last[k] < Some(id), "{bench}: receiver {k} got {id} after {:?}", last[k]);
            assert!(!std::mem::replace(&mut seen[id as usize], true), "{bench}: {id} twice");
            last[k] = Some(id);
            received.set(i + 1);
        }
        send.await
    };
    let what = || {
        format!(
            "{bench}: a round of {N} messages did not finish: {} sent, {} received",
            sent.get(),
            received.get()
        )
    };
    if let Err(e) = within(ROUND_DEADLINE, round, what).await {
        panic!("{bench}: the sending task failed: {e}");
    }
}

fn dchan_bench(
    group: &mut Group<'_>,
    system: &actix_rt::SystemRunner,
    bench: &'static str,
    n: usize,
    receivers: usize,
) {
    // Set up on first use, so that a filtered-out benchmark starts no node.
    let mut setup: Option<Dchan> = None;
    group.bench_function(bench, |b| {
        let d = setup.get_or_insert_with(|| system.block_on(dchan_setup(bench, n, receivers)));
        b.iter_custom(|iters| time_rounds!(system, iters, dchan_round(bench, &d.tx, &mut d.rxs)));
    });
    if let Some(d) = setup {
        system.block_on(dchan_teardown(bench, d));
    }
}

fn dchan_local(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    dchan_bench(group, system, "dchan_local", 1, 1);
}

fn dchan_two_nodes(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    dchan_bench(group, system, "dchan_two_nodes", 2, 1);
}

fn dchan_two_nodes_four_receivers(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    dchan_bench(group, system, "dchan_two_nodes_four_receivers", 2, 4);
}
