//! Round-trip latency of dchan against the transports it is built from, in one run, so that the
//! figures can be read as ratios.
//!
//! Every benchmark is a ping-pong with one message in flight at a time: the timing loop sends a
//! message of about 64 bytes, an echo task sends it back, and the timing loop waits for the echo
//! (checking that it is the message it sent) before sending the next one. One criterion iteration
//! is one round trip: criterion's time per iteration is the mean round-trip time (no `Throughput`
//! is set). Each sample times many round trips back to back with `iter_custom`. Connections,
//! nodes, senders, receivers and echo tasks are set up once per benchmark, outside the timing.
//!
//! | benchmark                   | what one round trip is                                        |
//! |-----------------------------|---------------------------------------------------------------|
//! | `raw_tcp_ping_pong`         | a loopback `TcpStream` pair, each side `Framed<_, LengthDelimitedCodec>`; A `send`s (feeds and flushes) a 64-byte frame, B's echo task sends it back and flushes, A waits for it |
//! | `raw_tcp_rmp_ping_pong`     | the same, but each way the frame is a [`Msg`] encoded with `rmp_serde::to_vec_named` (≈ 64 bytes), decoded on receipt (B decodes, re-encodes and echoes) |
//! | `dchan_local_ping_pong`     | one node; the timing loop sends on channel `ping`, whose receiver is in an echo task that sends each message back on channel `pong`, whose receiver is in the timing loop: dchan's in-process path, twice |
//! | `dchan_two_nodes_ping_pong` | two nodes in this process (bootstrap + join) over loopback; the timing loop on A sends on `ping` to a receiver on B, B's echo task sends each message back on `pong` to a receiver on A |
//!
//! Everything runs on one thread: the runtime is an actix `System` (a current-thread tokio
//! runtime with a `LocalSet`), which dchan needs for its actors, and the baselines run on the
//! same runtime so that the comparison is like for like (dchan's own tasks share that thread).
//!
//! # Running
//!
//! ```text
//! cargo bench --bench latency                  # everything, about 40 s once built
//! cargo bench --bench latency -- dchan         # only the benchmarks whose id contains "dchan"
//! cargo bench --bench latency -- --test        # each benchmark once, as a smoke test
//! ```
//!
//! dchan's own warnings and errors go to stderr (`RUST_LOG` overrides the default filter,
//! `warn,openraft=error`). Each sample has a deadline ([`SAMPLE_DEADLINE`]); a sample that does
//! not finish in time panics with how many round trips it completed and whether the echo task is
//! still running, so a hang shows up as a clear failure rather than a stuck benchmark.
//!
//! # Reading the ratios
//!
//! Criterion prints, for each benchmark, `time: [low mid high]` per round trip (with flat
//! sampling the middle figure is the mean, between its 95% confidence bounds), and stores the full
//! statistics, median included, under
//! `$CARGO_TARGET_DIR/criterion/latency/<benchmark>/new/estimates.json` (nanoseconds per round
//! trip). Divide one benchmark's time by another's (above 1.0: dchan is slower):
//!
//! - `dchan_two_nodes_ping_pong / raw_tcp_rmp_ping_pong`: dchan's network path against the
//!   encode, frame, send, decode it is made of, one message per frame as dchan sends it when only
//!   one message is in flight. What is left above 1.0 is dchan's own cost per round trip: routing,
//!   the outbox and its writer, the inbox, acknowledgements, waking tasks;
//! - `dchan_two_nodes_ping_pong / raw_tcp_ping_pong`: against framing 64-byte frames with no
//!   encoding at all, the floor for a round trip over one loopback connection on this runtime;
//! - `dchan_local_ping_pong`: no network at all; against the raw figures it shows how much of a
//!   remote round trip is the loopback and the syscalls rather than dchan's bookkeeping.
//!
//! Absolute figures move with the machine's load; ratios from one run are much steadier.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, SamplingMode};
use futures::{SinkExt, StreamExt};
use tokio::task::JoinHandle;

/// The longest one sample (many round trips) may take before the benchmark fails.
const SAMPLE_DEADLINE: Duration = Duration::from_secs(60);
/// Check that the echo of round trip `i` is the message sent in it.
fn check_echo(bench: &str, i: u64, got: u64) {
    assert_eq!(
        got, i,
        "{bench}: round trip {i} got back message {got}: lost, duplicated or reordered"
    );
}

/// Time `iters` round trips, one after the other, each `$round_trip(i)` (an async block or future
/// expression using the index `$i`), under [`SAMPLE_DEADLINE`]; on a hang, panic saying how many
/// round trips were done and whether `$echo` (the echo task's `JoinHandle`) has ended.
macro_rules! time_round_trips {
    ($system:expr, $bench:expr, $iters:expr, $echo:expr, |$i:ident| $round_trip:expr) => {{
        let (bench, iters, echo): (&str, u64, &JoinHandle<()>) = ($bench, $iters, $echo);
        let done = Cell::new(0u64);
        $system.block_on(async {
            let sample = async {
                let start = Instant::now();
                for $i in 0..iters {
                    $round_trip.await;
                    done.set($i + 1);
                }
                start.elapsed()
            };
            within(SAMPLE_DEADLINE, sample, || {
                format!(
                    "{bench}: a sample of {iters} round trips did not finish: {} done, echo task {}",
                    done.get(),
                    if echo.is_finished() { "ended (panicked?)" } else { "still running" }
                )
            })
            .await
        })
    }};
}

mod support;
use support::*;

fn main() {
    init_tracing();

    let system = actix_rt::System::new();
    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("latency");
        group
            .sample_size(20)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(6));
        raw_tcp_ping_pong(&mut group, &system);
        raw_tcp_rmp_ping_pong(&mut group, &system);
        dchan_local_ping_pong(&mut group, &system);
        dchan_two_nodes_ping_pong(&mut group, &system);
        group.finish();
    }
    c.final_summary();
}

struct Tcp {
    pinger: FramedTcp,
    echo: JoinHandle<()>,
}

/// Connect a pair and start the echo task on the second end: it answers each frame `f` with
/// `echo(f)` (sent and flushed) until the connection closes.
async fn tcp_setup(bench: &'static str, echo: fn(BytesMut) -> Bytes) -> Tcp {
    let (pinger, mut echoer) = within(SETUP_DEADLINE, framed_pair(), || {
        format!("{bench}: connecting over loopback did not finish")
    })
    .await;
    let echo = actix_rt::spawn(async move {
        while let Some(f) = echoer.next().await {
            let f = f.unwrap_or_else(|e| panic!("{bench}: echo side read failed: {e}"));
            echoer.send(echo(f)).await.unwrap_or_else(|e| panic!("{bench}: echo failed: {e}"));
        }
    });
    Tcp { pinger, echo }
}

/// One round trip of a framed TCP baseline: send `frame` and flush, wait for the echo, `check` it.
async fn tcp_round_trip(
    bench: &'static str,
    pinger: &mut FramedTcp,
    frame: Bytes,
    check: impl FnOnce(&[u8]),
) {
    pinger.send(frame).await.unwrap_or_else(|e| panic!("{bench}: send failed: {e}"));
    let echo = pinger
        .next()
        .await
        .unwrap_or_else(|| panic!("{bench}: connection closed"))
        .unwrap_or_else(|e| panic!("{bench}: read failed: {e}"));
    check(&echo);
}

/// The framed TCP baselines: round trip `i` sends `frame(i)`, the echo task answers each frame
/// with `echo(frame)`, and `check(i, answer)` checks what came back.
fn tcp_bench(
    group: &mut Group<'_>,
    system: &actix_rt::SystemRunner,
    bench: &'static str,
    frame: fn(u64) -> Bytes,
    echo: fn(BytesMut) -> Bytes,
    check: fn(u64, &[u8]),
) {
    // Connected on first use, so that a filtered-out benchmark sets nothing up.
    let mut setup: Option<Tcp> = None;
    group.bench_function(bench, |b| {
        let t = setup.get_or_insert_with(|| system.block_on(tcp_setup(bench, echo)));
        let (pinger, echo) = (&mut t.pinger, &t.echo);
        b.iter_custom(|iters| {
            time_round_trips!(system, bench, iters, echo, |i| {
                tcp_round_trip(bench, pinger, frame(i), |f| check(i, f))
            })
        });
    });
    if let Some(Tcp { pinger, echo }) = setup {
        drop(pinger);
        // The echo task ends when it sees the connection closed.
        let ended = system.block_on(within(SETUP_DEADLINE, echo, || {
            format!("{bench}: the echo task did not end after the connection closed")
        }));
        if let Err(e) = ended {
            panic!("{bench}: the echo task failed: {e}");
        }
    }
}

fn raw_tcp_ping_pong(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    tcp_bench(
        group,
        system,
        "raw_tcp_ping_pong",
        |_| Bytes::from_static(&FRAME),
        BytesMut::freeze,
        |_, f| assert_eq!(f, FRAME, "raw_tcp_ping_pong: the echo is not the frame sent"),
    );
}

fn raw_tcp_rmp_ping_pong(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    tcp_bench(
        group,
        system,
        "raw_tcp_rmp_ping_pong",
        |i| rmp_serde::to_vec_named(&msg(i)).expect("encode").into(),
        |f| {
            let m: Msg = rmp_serde::from_slice(&f).expect("echo side decode");
            rmp_serde::to_vec_named(&m).expect("echo side encode").into()
        },
        |i, f| {
            let m: Msg = rmp_serde::from_slice(f).expect("decode");
            check_echo("raw_tcp_rmp_ping_pong", i, m.id);
        },
    );
}

/// A dchan ping-pong: the nodes (first one bootstrapped), the timing loop's ends (`ping` sender,
/// `pong` receiver) and the echo task, which holds the `ping` receiver and the `pong` sender.
struct Dchan {
    nodes: Vec<dchan::Node>,
    ping: dchan::Sender<Msg>,
    pong: dchan::Receiver<Msg>,
    echo: JoinHandle<()>,
}

/// Start `n` nodes; put the timing loop's ends on the first node and the echo task's on the last
/// one (the same node when `n` is 1), wait until both senders see their receiver, and start the
/// echo task.
async fn dchan_setup(bench: &'static str, n: usize) -> Dchan {
    let nodes = start_nodes(bench, n).await;
    let (here, there) = (&nodes[0], &nodes[n - 1]);
    let mut ping_rx = receiver(bench, there, "ping").await;
    let pong = receiver(bench, here, "pong").await;
    let ping = sender(bench, here, "ping", 1).await;
    let pong_tx = sender(bench, there, "pong", 1).await;
    let echo = actix_rt::spawn(async move {
        while let Some(m) = ping_rx.recv().await {
            let id = m.id;
            if let Err(e) = pong_tx.send(m).await {
                panic!("{bench}: echoing message {id} on pong failed: {e}");
            }
        }
    });
    Dchan { nodes, ping, pong, echo }
}

/// Stop the echo task and drop the endpoints, then shut the nodes down, last started first.
async fn dchan_teardown(bench: &'static str, d: Dchan) {
    let Dchan { nodes, ping, pong, echo } = d;
    // The ping receiver yields `None` only once the channel is closed: stop the echo task instead.
    echo.abort();
    if let Err(e) = echo.await {
        if !e.is_cancelled() {
            panic!("{bench}: the echo task failed: {e}");
        }
    }
    drop(ping);
    drop(pong);
    shutdown_nodes(bench, &nodes).await;
}

/// One dchan round trip: send `msg(i)` on `ping`, wait for it on `pong`.
async fn dchan_round_trip(
    bench: &'static str,
    i: u64,
    ping: &dchan::Sender<Msg>,
    pong: &mut dchan::Receiver<Msg>,
) {
    if let Err(e) = ping.send(msg(i)).await {
        panic!("{bench}: send of message {i} on ping failed: {e}");
    }
    match pong.recv().await {
        Some(m) => check_echo(bench, i, m.id),
        None => panic!("{bench}: the pong receiver ended"),
    }
}

fn dchan_bench(
    group: &mut Group<'_>,
    system: &actix_rt::SystemRunner,
    bench: &'static str,
    n: usize,
) {
    // Set up on first use, so that a filtered-out benchmark starts no node.
    let mut setup: Option<Dchan> = None;
    group.bench_function(bench, |b| {
        let d = setup.get_or_insert_with(|| system.block_on(dchan_setup(bench, n)));
        let (ping, pong, echo) = (&d.ping, &mut d.pong, &d.echo);
        b.iter_custom(|iters| {
            time_round_trips!(system, bench, iters, echo, |i| dchan_round_trip(
                bench, i, ping, pong
            ))
        });
    });
    if let Some(d) = setup {
        system.block_on(dchan_teardown(bench, d));
    }
}

fn dchan_local_ping_pong(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    dchan_bench(group, system, "dchan_local_ping_pong", 1);
}

fn dchan_two_nodes_ping_pong(group: &mut Group<'_>, system: &actix_rt::SystemRunner) {
    dchan_bench(group, system, "dchan_two_nodes_ping_pong", 2);
}
