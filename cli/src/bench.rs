//! `dchan bench`: throughput and latency of a channel, like `nats bench`.
//!
//! By default every sender and every receiver is a node in a child process of its own (this
//! command runs `dchan bench-node`), joined to a node this process bootstraps, so that what is
//! measured crosses processes as users run dchan. `--in-process` runs them as nodes on threads of
//! this process; `--join ADDR` uses a running cluster instead of bootstrapping one.
//!
//! Each message carries its sequence number and, one in `SAMPLE_EVERY`, the time it was sent:
//! receivers record the latency of those in a histogram (hdrhistogram). Throughput is counted
//! from the first sender starting to the last message received. Children report on stdout,
//! one line per event (`ready`, `start NS`, `progress N`, `done N LAST_NS`, `sample V...`), and
//! leave the cluster when their stdin closes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::Failure;

/// One message in `SAMPLE_EVERY` carries its send time.
const SAMPLE_EVERY: u64 = 100;
/// How long a run may take before it is given up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum Mode {
    /// Each message to one receiver.
    Queue,
    /// Each message to every receiver.
    Broadcast,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Sending nodes.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Receiving nodes.
    #[arg(long, default_value_t = 1)]
    receivers: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages sent in all (split between the senders).
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Queue (each message to one receiver) or broadcast (to all).
    #[arg(long, value_enum, default_value_t = Mode::Queue)]
    mode: Mode,
    /// Each receiver's capacity.
    #[arg(long, default_value_t = dchan::DEFAULT_CAPACITY)]
    capacity: usize,
    /// The channel (default: a new one per run).
    #[arg(long)]
    channel: Option<String>,
    /// Run every node on a thread of this process instead of a process of its own.
    #[arg(long)]
    in_process: bool,
    /// Use the running cluster at this address (repeat for more seeds) instead of starting one.
    #[arg(long)]
    join: Vec<String>,
    #[command(flatten)]
    options: crate::client::NodeOptions,
}

/// One node of a benchmark (`dchan bench-node`, started by `dchan bench`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NodeArgs {
    #[arg(long)]
    role: Role,
    #[arg(long)]
    channel: String,
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// Messages this sender sends.
    #[arg(long)]
    count: u64,
    #[arg(long)]
    size: usize,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Receivers to wait for before sending.
    #[arg(long)]
    receivers: usize,
    #[arg(long)]
    capacity: usize,
    /// The cluster secret (given to it in the environment, never on its command line).
    #[command(flatten)]
    options: crate::client::NodeOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    Send,
    Recv,
}

/// What travels: a sequence number, a send time on sampled messages (0 otherwise), the payload.
#[derive(Debug, Serialize, Deserialize)]
struct BenchMsg {
    seq: u64,
    sent_ns: u64,
    /// Shared between messages (a reference count per message, not a copy).
    payload: bytes::Bytes,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A line a worker printed (`None`: its output ended), with the worker's index.
type Event = (usize, Option<String>);

/// A running benchmark node: a child process, or a thread with `--in-process`.
enum Worker {
    Process(Child),
    Thread { stop: Option<tokio::sync::oneshot::Sender<()>>, handle: std::thread::JoinHandle<()> },
}

impl Worker {
    /// Start worker `index`; its lines go to `events`.
    fn spawn(
        args: &NodeArgs,
        in_process: bool,
        index: usize,
        events: &std_mpsc::Sender<Event>,
    ) -> Result<Worker, Failure> {
        let tx = events.clone();
        if in_process {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let args = args.clone();
            let handle = std::thread::spawn(move || {
                let out = tx.clone();
                let result = actix_rt::System::new().block_on(role(
                    args,
                    &move |l| {
                        let _ = out.send((index, Some(l)));
                    },
                    async {
                        let _ = stop_rx.await;
                    },
                ));
                if let Err(f) = result {
                    let _ = tx.send((index, Some(format!("error {}", f.message))));
                }
                let _ = tx.send((index, None));
            });
            return Ok(Worker::Thread { stop: Some(stop_tx), handle });
        }
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        for var in
            ["DCHAN_COOKIE", "DCHAN_TLS_CERT", "DCHAN_TLS_KEY", "DCHAN_TLS_CA", "DCHAN_METRICS"]
        {
            command.env_remove(var);
        }
        if let Some(m) = &args.options.metrics {
            command.env("DCHAN_METRICS", m);
        }
        if let Some(rtt) = args.options.round_trip {
            command.env("DCHAN_ROUND_TRIP", humantime::format_duration(rtt).to_string());
        }
        if let Some(c) = &args.options.cookie {
            command.env("DCHAN_COOKIE", c);
        }
        let tls = [&args.options.tls_cert, &args.options.tls_key, &args.options.tls_ca];
        for (var, path) in ["DCHAN_TLS_CERT", "DCHAN_TLS_KEY", "DCHAN_TLS_CA"].into_iter().zip(tls)
        {
            if let Some(p) = path {
                command.env(var, p);
            }
        }
        let mut child = command
            .arg("bench-node")
            .args(["--role", if args.role == Role::Send { "send" } else { "recv" }])
            .args(["--channel", &args.channel])
            .args(["--join", &args.join.join(",")])
            .args(["--count", &args.count.to_string()])
            .args(["--size", &args.size.to_string()])
            .args(["--mode", if args.mode == Mode::Queue { "queue" } else { "broadcast" }])
            .args(["--receivers", &args.receivers.to_string()])
            .args(["--capacity", &args.capacity.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((index, Some(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((index, None));
        });
        Ok(Worker::Process(child))
    }

    /// Tell it to leave the cluster and exit, and wait until it has.
    fn finish(self) {
        match self {
            Worker::Process(mut child) => {
                drop(child.stdin.take());
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Worker::Thread { mut stop, handle } => {
                if let Some(s) = stop.take() {
                    let _ = s.send(());
                }
                let _ = handle.join();
            }
        }
    }
}

/// `dchan bench-node`: one node of a benchmark in a process of its own; stops when stdin closes.
pub(crate) async fn node(args: NodeArgs) -> Result<(), Failure> {
    let (eof_tx, eof) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut sink);
        let _ = eof_tx.send(());
    });
    let print = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    role(args, &print, async {
        let _ = eof.await;
    })
    .await
}

/// `addr` with port 0 (any free one): `127.0.0.1:9100` gives `127.0.0.1:0`.
fn any_port(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, _)) => format!("{host}:0"),
        None => format!("{addr}:0"),
    }
}

/// Run one benchmark node: join, send or receive, report, wait for `stop`, leave.
async fn role(
    args: NodeArgs,
    out: &dyn Fn(String),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), Failure> {
    let node = args
        .options
        .apply(dchan::Node::builder().name(crate::client::node_name(&format!(
            "bench {} {}",
            match args.role {
                Role::Send => "sender",
                Role::Recv => "receiver",
            },
            args.channel
        ))))?
        .listen("127.0.0.1:0")
        .join(args.join.iter())
        .non_voting()
        .start()
        .await?;
    crate::client::say_metrics(&node);
    let work = async {
        match args.role {
            Role::Send => {
                let tx = node.sender::<BenchMsg>(&args.channel).await?;
                out("ready".into());
                tx.wait_for_receivers(args.receivers)
                    .await
                    .map_err(|_| Failure::new("the channel closed"))?;
                out(format!("start {}", now_ns()));
                let payload = bytes::Bytes::from(vec![0x5a; args.size]);
                for seq in 0..args.count {
                    let sent_ns = if seq % SAMPLE_EVERY == 0 { now_ns() } else { 0 };
                    let msg = BenchMsg { seq, sent_ns, payload: payload.clone() };
                    let sent = match args.mode {
                        Mode::Queue => tx.send(msg).await,
                        Mode::Broadcast => tx.broadcast(msg).await.map(|_| ()),
                    };
                    sent.map_err(|_| Failure::new("the channel closed"))?;
                }
                out("sent".into());
                Ok::<_, Failure>(())
            }
            Role::Recv => {
                let mut rx =
                    node.receiver::<BenchMsg>(&args.channel).capacity(args.capacity).await?;
                out("ready".into());
                let mut n: u64 = 0;
                let mut samples: Vec<u64> = Vec::new();
                loop {
                    // Dry for now: report (the parent knows the total and stops everyone once
                    // it is reached), then wait for more. Samples first: when the parent reads
                    // the last `done`, every sample before it has been read too. (`recv`, not
                    // `try_recv`, even when messages are ready: it spends tokio's cooperative
                    // budget, so the node's tasks run between batches.)
                    if rx.is_empty() {
                        if !samples.is_empty() {
                            let s: Vec<String> = samples.iter().map(u64::to_string).collect();
                            out(format!("sample {}", s.join(" ")));
                            samples.clear();
                        }
                        if n > 0 {
                            out(format!("done {n} {}", now_ns()));
                        }
                    }
                    let next = rx.recv().await;
                    let Some(msg) = next else { break };
                    n += 1;
                    if msg.sent_ns != 0 {
                        samples.push(now_ns().saturating_sub(msg.sent_ns));
                    }
                }
                Ok(())
            }
        }
    };
    tokio::pin!(stop);
    let result = tokio::select! {
        r = work => match r {
            // A sender waits to be told to go, so that its leaving does not disturb the run.
            Ok(()) => { (&mut stop).await; Ok(()) }
            Err(e) => Err(e),
        },
        () = &mut stop => Ok(()),
    };
    let left = node.shutdown().await;
    result?;
    left.map_err(Failure::from)
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    if args.senders == 0 || args.receivers == 0 || args.count == 0 || args.capacity == 0 {
        return Err(Failure::new(
            "--senders, --receivers, --count and --capacity must be at least 1",
        ));
    }
    let channel = args.channel.clone().unwrap_or_else(|| format!("bench-{:x}", now_ns()));
    // The seed: a node of this process that bootstraps the cluster (the children join it), or
    // a non-voting member of the running cluster given with --join. It runs on a thread of its
    // own, with its own actix system, until the run is over.
    let (seed_tx, seed_rx) = std_mpsc::channel();
    let (seed_stop_tx, seed_stop) = tokio::sync::oneshot::channel::<()>();
    let seeds = args.join.clone();
    let options = args.options.clone();
    let seed_thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let started = async {
                let builder =
                    options.apply(dchan::Node::builder().name("bench"))?.listen("127.0.0.1:0");
                if seeds.is_empty() {
                    builder.bootstrap().start().await
                } else {
                    crate::client::check_seeds(&seeds)
                        .await
                        .map_err(|f| dchan::Error::Join(f.message.into()))?;
                    builder.join(seeds.iter()).non_voting().start().await
                }
            }
            .await;
            let node = match started {
                Ok(n) => n,
                Err(e) => {
                    let _ = seed_tx.send(Err(Failure::from(e)));
                    return;
                }
            };
            crate::client::say_metrics(&node);
            let _ = seed_tx.send(Ok(node.addr().to_string()));
            let _ = seed_stop.await;
            let _ = node.shutdown().await;
        });
    });
    let seed_addr = match seed_rx.recv() {
        Ok(Ok(addr)) => addr,
        Ok(Err(f)) => {
            let _ = seed_thread.join();
            return Err(f);
        }
        Err(_) => return Err(Failure::new("the seed node stopped")),
    };
    let join = vec![seed_addr];
    let per_sender = args.count / args.senders as u64;
    let total_sent = per_sender * args.senders as u64;
    let expected = match args.mode {
        Mode::Queue => total_sent,
        Mode::Broadcast => total_sent * args.receivers as u64,
    };
    let node_args = |role, count| NodeArgs {
        role,
        channel: channel.clone(),
        join: join.clone(),
        count,
        size: args.size,
        mode: args.mode,
        receivers: args.receivers,
        capacity: args.capacity,
        // Each node of the run serves its own metrics: on the host asked for, any free port.
        options: crate::client::NodeOptions {
            metrics: args.options.metrics.as_deref().map(any_port),
            ..args.options.clone()
        },
    };
    let mut workers = Vec::new();
    let (events_tx, events) = std_mpsc::channel();
    let outcome = (|| {
        // Receivers first, so that workers 0..receivers are the receivers.
        for i in 0..args.receivers + args.senders {
            let role = if i < args.receivers { Role::Recv } else { Role::Send };
            let count = if role == Role::Send { per_sender } else { 0 };
            workers.push(Worker::spawn(&node_args(role, count), args.in_process, i, &events_tx)?);
        }
        measure(&args, &events, expected, total_sent)
    })();
    for w in workers {
        w.finish();
    }
    let _ = seed_stop_tx.send(());
    let _ = seed_thread.join();
    outcome
}

/// Follow the workers' reports until every message is received; print the result.
fn measure(
    args: &Args,
    events: &std_mpsc::Receiver<Event>,
    expected: u64,
    total_sent: u64,
) -> Result<(), Failure> {
    let bar = ProgressBar::new(expected);
    bar.set_style(
        // One number format: whole numbers, thousands grouped (no `2,418,105.417/s`).
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} messages {rate}")
            .map(|s| {
                s.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{}/s", indicatif::HumanCount(state.per_sec() as u64));
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Per receiver: messages received so far, and when the last of them was.
    let mut received = vec![(0u64, 0u64); args.receivers];
    // When the first sender started.
    let mut start_ns: Option<u64> = None;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| Failure::new(e.to_string()))?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let fail = |message: String| {
        bar.abandon();
        Err(Failure::new(message))
    };
    loop {
        let got: u64 = received.iter().map(|r| r.0).sum();
        bar.set_position(got);
        if got >= expected {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((i, line)) = events.recv_timeout(left) else {
            return fail(format!(
                "only {got} of {expected} messages arrived within {RUN_TIMEOUT:?}"
            ));
        };
        let Some(line) = line else {
            return fail(
                "a benchmark node stopped before the run was over (see its error above)".into(),
            );
        };
        let mut words = line.split(' ');
        let kind = words.next();
        let nums: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
        let num = |k: usize| nums.get(k).copied().unwrap_or(0);
        match kind {
            Some("start") => start_ns = Some(start_ns.map_or(num(0), |s| s.min(num(0)))),
            Some("done") if i < args.receivers => received[i] = (num(0), num(1)),
            Some("sample") => {
                for v in &nums {
                    let _ = latency.record((*v).max(1));
                }
            }
            Some("error") => return fail(line.trim_start_matches("error ").to_string()),
            _ => {}
        }
    }
    bar.finish_and_clear();
    let start = start_ns.ok_or_else(|| Failure::new("no sender reported its start"))?;
    let end = received.iter().map(|r| r.1).max().unwrap_or(start);
    let secs = (end.saturating_sub(start) as f64 / 1e9).max(1e-9);
    let rate = expected as f64 / secs;
    let how = if args.in_process { "one node per thread" } else { "one node per process" };
    println!(
        "dchan bench: {} sender(s) -> {} receiver(s), {}, {} messages of {} B, {how}",
        args.senders,
        args.receivers,
        if args.mode == Mode::Queue { "queue" } else { "broadcast" },
        total_sent,
        args.size
    );
    println!(
        "  {:.0} msgs/s delivered, {:.1} MB/s, in {:.3} s",
        rate,
        rate * args.size as f64 / 1e6,
        secs
    );
    if !latency.is_empty() {
        let us = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "  latency (sample of {}): p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
            latency.len(),
            us(0.5),
            us(0.9),
            us(0.99),
            latency.max() as f64 / 1000.0
        );
    }
    Ok(())
}
