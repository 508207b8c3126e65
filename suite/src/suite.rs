//! What the suite measures, in which order, and how often: every measurement once per round,
//! rounds interleaved (so that a noisy minute of this shared machine hits every system alike),
//! the median of the rounds reported.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Run;
use crate::report::{self, Outcome};
use crate::spec::{Mode, Spec, TlsFiles};
use crate::Error;

mod instructions;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Messages per throughput measurement (64-byte runs; 1 KiB runs send a quarter).
    #[arg(long, default_value_t = 2_000_000)]
    count: u64,
    /// Round trips per latency measurement (plus a tenth to warm up).
    #[arg(long, default_value_t = 20_000)]
    round_trips: usize,
    /// Receivers registered, one after another, for the registration latency.
    #[arg(long, default_value_t = 500)]
    registrations: usize,
    /// Times every measurement runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only the measurements whose name contains one of these (e.g. `--only nats`).
    #[arg(long)]
    only: Vec<String>,
    /// The NATS server to start (the Debian package's `nats-server` by default).
    #[arg(long, default_value = "nats-server")]
    nats_server: String,
    /// Count instructions per message instead (callgrind, at N and 5N messages): dchan 1->1
    /// beside the rmp-serde batched TCP baseline, or what `--only` names.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20000")]
    instructions: Option<u64>,
    /// Capacity of dchan's receivers across processes (dchan's default, 4096, unless given:
    /// with credit granted a quarter at a time, it bounds what a sender has in flight).
    #[arg(long, default_value_t = dchan::DEFAULT_CAPACITY)]
    capacity: usize,
}

/// Timeout of one throughput measurement.
const FLOW_TIMEOUT: Duration = Duration::from_secs(120);

/// One run of a measurement, given the round's number.
type Once = Box<dyn Fn(&Ctx, usize) -> Result<Outcome, Error>>;

/// A measurement: its name and how to run it once.
struct Measure {
    name: String,
    run: Once,
}

/// What the measurements share.
struct Ctx {
    count: u64,
    /// Capacity of dchan's receivers across processes.
    capacity: usize,
    round_trips: usize,
    registrations: usize,
    nats_url: Option<String>,
}

/// A free port on 127.0.0.1 for a program that cannot report the one it bound (Zenoh).
fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Receivers start first (their ready line may give the address to dial), then senders; the
/// throughput of `expected` messages.
fn flow(
    receivers: Vec<Spec>,
    senders: impl Fn(&str) -> Vec<Spec>,
    expected: u64,
) -> Result<Outcome, Error> {
    let mut run = Run::new();
    let mut first = String::new();
    for (i, spec) in receivers.iter().enumerate() {
        let said = run.start(spec)?;
        if i == 0 {
            first = said;
        }
    }
    for spec in senders(&first) {
        run.start(&spec)?;
    }
    Ok(Outcome::Rate(run.throughput(expected, FLOW_TIMEOUT)?))
}

/// A round trip measurement: the answering side first (its ready line may give the address),
/// then the asking side, with one core kept busy by a third process when `busy`.
fn round_trip(busy: bool, answer: Spec, ask: impl Fn(&str) -> Spec) -> Result<Outcome, Error> {
    let mut run = Run::new();
    if busy {
        run.start(&Spec::Spin)?;
    }
    let said = run.start(&answer)?;
    run.start(&ask(&said))?;
    let (p50, p99) = run.latency(FLOW_TIMEOUT)?;
    Ok(Outcome::Latency { p50, p99 })
}

/// Certificates for 127.0.0.1 signed by one authority, made once per run (rcgen) and written to
/// a folder of the system's temporary directory that the run removes at its end.
fn tls_files() -> Result<TlsFiles, Error> {
    static FILES: std::sync::OnceLock<TlsFiles> = std::sync::OnceLock::new();
    if let Some(f) = FILES.get() {
        return Ok(f.clone());
    }
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".into()])?.signed_by(&key, &ca, &ca_key)?;
    let dir = tls_dir();
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, pem: String| -> Result<String, Error> {
        let path = dir.join(name);
        std::fs::write(&path, pem)?;
        Ok(path.to_string_lossy().into_owned())
    };
    let files = TlsFiles {
        cert: write("node.pem", cert.pem())?,
        key: write("node.key", key.serialize_pem())?,
        ca: write("ca.pem", ca.pem())?,
    };
    Ok(FILES.get_or_init(|| files).clone())
}

/// Where [`tls_files`] writes.
pub(crate) fn tls_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("dchan-suite-tls-{}", std::process::id()))
}

/// One dchan flow: which receivers on which node, how many senders, what they send.
struct Flow<'a> {
    receivers_per_node: &'a [usize],
    senders: usize,
    per_sender: u64,
    size: usize,
    mode: Mode,
    tls: bool,
    metrics: bool,
    capacity: usize,
    /// Receivers take batches of up to this many (`recv_many`); 0: `recv`.
    batch: usize,
}

#[expect(clippy::too_many_arguments, reason = "one call per measurement, each a line")]
fn dchan_flow(
    receivers_per_node: &[usize],
    senders: usize,
    per_sender: u64,
    size: usize,
    mode: Mode,
    round: usize,
    name: &str,
    capacity: usize,
) -> Result<Outcome, Error> {
    let flow = Flow {
        receivers_per_node,
        senders,
        per_sender,
        size,
        mode,
        tls: false,
        metrics: false,
        capacity,
        batch: 0,
    };
    dchan_flow_with(&flow, round, name)
}

fn dchan_flow_with(flow: &Flow<'_>, round: usize, name: &str) -> Result<Outcome, Error> {
    let Flow { receivers_per_node, senders, per_sender, size, mode, tls, metrics, capacity, batch } =
        *flow;
    let tls = if tls { Some(tls_files()?) } else { None };
    let channel = format!("{name}-{round}");
    let all: usize = receivers_per_node.iter().sum();
    let total = per_sender * senders as u64;
    let (expected, each) = match mode {
        Mode::Queue if all == 1 => (total, total),
        Mode::Queue => (total, 0),
        Mode::Broadcast => (total * all as u64, total),
    };
    // (One sender in all: each receiver takes what it gets in the order sent.)
    let ordered = senders == 1;
    let node = |join: Option<String>, receivers: usize, senders: usize| Spec::Dchan {
        join,
        channel: channel.clone(),
        receivers,
        senders,
        count: per_sender,
        size,
        mode,
        wait_for: all,
        capacity,
        expect: each * receivers as u64,
        tls: tls.clone(),
        metrics,
        batch,
        ordered,
    };
    let mut run = Run::new();
    let seed = run.start(&node(None, receivers_per_node[0], 0))?;
    for &r in &receivers_per_node[1..] {
        run.start(&node(Some(seed.clone()), r, 0))?;
    }
    run.start(&node(Some(seed), 0, senders))?;
    Ok(Outcome::Rate(run.throughput(expected, FLOW_TIMEOUT)?))
}

fn measures() -> Vec<Measure> {
    let mut m: Vec<Measure> = Vec::new();
    let mut add = |name: &str, run: Once| {
        m.push(Measure { name: name.to_string(), run });
    };
    // Throughput, 1 -> 1 across two processes.
    for (name, rmp, size) in [
        ("raw tcp 64 B frames", false, 64),
        ("raw tcp rmp batched", true, 64),
        ("raw tcp rmp batched 1 KiB", true, 1024),
    ] {
        add(
            name,
            Box::new(move |c, _| {
                let count = if size > 64 { c.count / 4 } else { c.count };
                flow(
                    vec![Spec::RawRecv { rmp, expect: count }],
                    |addr| vec![Spec::RawSend { rmp, addr: addr.into(), count, size }],
                    count,
                )
            }),
        );
    }
    // The same structs to several receiving processes: the ceiling of a broadcast to 3 (every
    // frame to each; counted per copy received, as dchan's broadcast is) and of a work queue to 2
    // (frames dealt out in turn).
    for (name, receivers, fan_out) in
        [("raw tcp rmp fan-out 3", 3u64, true), ("raw tcp rmp dealt to 2", 2, false)]
    {
        add(
            name,
            Box::new(move |c, _| {
                let count = c.count - c.count % receivers;
                let each = if fan_out { count } else { count / receivers };
                let mut run = Run::new();
                let mut addrs = Vec::new();
                for _ in 0..receivers {
                    addrs.push(run.start(&Spec::RawRecv { rmp: true, expect: each })?);
                }
                run.start(&Spec::RawSendMany { addrs, count, fan_out })?;
                Ok(Outcome::Rate(run.throughput(each * receivers, FLOW_TIMEOUT)?))
            }),
        );
    }
    add(
        "tokio mpsc",
        Box::new(|c, _| flow(vec![Spec::Mpsc { count: c.count, size: 64 }], |_| vec![], c.count)),
    );
    // Each with metrics served and published every second too: their cost.
    for (name, metrics) in [("dchan same node", false), ("dchan same node metrics", true)] {
        add(
            name,
            Box::new(move |c, _| {
                let spec = Spec::DchanLocal { count: c.count, size: 64, capacity: 1024, metrics };
                flow(vec![spec], |_| vec![], c.count)
            }),
        );
    }
    add(
        "dchan 1->1",
        Box::new(|c, r| dchan_flow(&[1], 1, c.count, 64, Mode::Queue, r, "one", c.capacity)),
    );
    // (`recv_many`: the receiver takes up to 1024 messages a call.)
    for (name, tls, metrics, batch, channel) in [
        ("dchan 1->1 tls", true, false, 0, "tls"),
        ("dchan 1->1 metrics", false, true, 0, "metrics"),
        ("dchan 1->1 recv_many", false, false, 1024, "many"),
    ] {
        add(
            name,
            Box::new(move |c, r| {
                let flow = Flow {
                    receivers_per_node: &[1],
                    senders: 1,
                    per_sender: c.count,
                    size: 64,
                    mode: Mode::Queue,
                    tls,
                    metrics,
                    capacity: c.capacity,
                    batch,
                };
                dchan_flow_with(&flow, r, channel)
            }),
        );
    }
    add(
        "dchan 1->1 1 KiB",
        Box::new(|c, r| dchan_flow(&[1], 1, c.count / 4, 1024, Mode::Queue, r, "kib", c.capacity)),
    );
    add(
        "dchan queue 1->2",
        Box::new(|c, r| dchan_flow(&[1, 1], 1, c.count, 64, Mode::Queue, r, "two", c.capacity)),
    );
    add(
        "dchan queue 4->4",
        Box::new(|c, r| {
            dchan_flow(&[2, 2], 4, c.count / 4, 64, Mode::Queue, r, "four", c.capacity)
        }),
    );
    add(
        "dchan broadcast 3",
        Box::new(|c, r| {
            dchan_flow(&[1, 1, 1], 1, c.count, 64, Mode::Broadcast, r, "all", c.capacity)
        }),
    );
    // NATS core.
    fn nats(c: &Ctx) -> Result<String, Error> {
        c.nats_url
            .clone()
            .ok_or_else(|| "nats-server not found (apt-get install nats-server)".into())
    }
    for (name, subs, queue) in
        [("nats 1->1", 1, false), ("nats queue group 2", 2, true), ("nats fan-out 3", 3, false)]
    {
        add(
            name,
            Box::new(move |c, r| {
                let url = nats(c)?;
                let subject = format!("bench.{r}.{subs}.{queue}");
                let per_sub = if queue { 0 } else { c.count };
                let recv = Spec::NatsRecv {
                    url: url.clone(),
                    subject: subject.clone(),
                    queue: queue.then(|| "workers".to_string()),
                    capacity: c.count as usize,
                    expect: per_sub,
                };
                let expected = if queue { c.count } else { c.count * subs as u64 };
                let count = c.count;
                flow(
                    vec![recv; subs],
                    |_| {
                        vec![Spec::NatsSend {
                            url: url.clone(),
                            subject: subject.clone(),
                            count,
                            size: 64,
                        }]
                    },
                    expected,
                )
            }),
        );
    }
    // Zenoh.
    add(
        "zenoh 1->1",
        Box::new(|c, _| {
            let port = free_port()?;
            let count = c.count;
            flow(
                vec![Spec::ZenohRecv { port, expect: count }],
                |_| vec![Spec::ZenohSend { port, count, size: 64 }],
                count,
            )
        }),
    );
    // Round trips, idle and with a busy core.
    for busy in [false, true] {
        let tag = |s: &str| if busy { format!("{s}, busy core") } else { s.to_string() };
        add(
            &tag("raw tcp ping-pong"),
            Box::new(move |c, _| {
                let rounds = c.round_trips;
                round_trip(busy, Spec::RawPong, |addr| Spec::RawPing {
                    addr: addr.into(),
                    rounds,
                    size: 64,
                })
            }),
        );
        add(
            &tag("dchan ping-pong"),
            Box::new(move |c, _| {
                let rounds = c.round_trips;
                round_trip(busy, Spec::DchanPong, |addr| Spec::DchanPing {
                    join: addr.into(),
                    rounds,
                    size: 64,
                })
            }),
        );
        add(
            &tag("nats request/reply"),
            Box::new(move |c, r| {
                let url = nats(c)?;
                let subject = format!("rpc.{r}.{busy}");
                let rounds = c.round_trips;
                round_trip(
                    busy,
                    Spec::NatsReply { url: url.clone(), subject: subject.clone(), queue: None },
                    |_| Spec::NatsRequest {
                        url: url.clone(),
                        subject: subject.clone(),
                        rounds,
                        size: 64,
                    },
                )
            }),
        );
        add(
            &tag("dchan request/reply"),
            Box::new(move |c, _| {
                let rounds = c.round_trips;
                round_trip(busy, Spec::DchanAnswer { join: None }, |addr| Spec::DchanRequest {
                    join: addr.into(),
                    rounds,
                    size: 64,
                })
            }),
        );
        add(
            &tag("zenoh ping-pong"),
            Box::new(move |c, _| {
                let port = free_port()?;
                let rounds = c.round_trips;
                round_trip(busy, Spec::ZenohPong { port }, |_| Spec::ZenohPing {
                    port,
                    rounds,
                    size: 64,
                })
            }),
        );
    }
    // Requests, 64 in flight, to two answering processes.
    add(
        "dchan requests 64 in flight, 2 answering",
        Box::new(|c, _| {
            let count = c.count / 10;
            let mut run = Run::new();
            let seed = run.start(&Spec::DchanAnswer { join: None })?;
            run.start(&Spec::DchanAnswer { join: Some(seed.clone()) })?;
            run.start(&Spec::DchanRequests {
                join: seed,
                count,
                inflight: 64,
                size: 64,
                answerers: 2,
            })?;
            Ok(Outcome::Rate(run.throughput(count, FLOW_TIMEOUT)?))
        }),
    );
    add(
        "nats requests 64 in flight, queue group 2",
        Box::new(|c, r| {
            let url = nats(c)?;
            let subject = format!("rpcs.{r}");
            let count = c.count / 10;
            let replier = Spec::NatsReply {
                url: url.clone(),
                subject: subject.clone(),
                queue: Some("answerers".into()),
            };
            let mut run = Run::new();
            run.start(&replier)?;
            run.start(&replier)?;
            run.start(&Spec::NatsRequests { url, subject, count, inflight: 64, size: 64 })?;
            Ok(Outcome::Rate(run.throughput(count, FLOW_TIMEOUT)?))
        }),
    );
    add(
        "dchan registration, 3 nodes",
        Box::new(|c, _| {
            let mut run = Run::new();
            let seed = run.start(&Spec::DchanMember { join: None, voters: 3, registrations: 0 })?;
            run.start(&Spec::DchanMember {
                join: Some(seed.clone()),
                voters: 3,
                registrations: 0,
            })?;
            run.start(&Spec::DchanMember {
                join: Some(seed),
                voters: 3,
                registrations: c.registrations,
            })?;
            let (p50, p99) = run.latency(FLOW_TIMEOUT)?;
            Ok(Outcome::Latency { p50, p99 })
        }),
    );
    m
}

/// A `nats-server` on a free loopback port, stopped when dropped.
struct NatsServer(Child);

impl NatsServer {
    fn start(program: &str) -> Result<(NatsServer, String), Error> {
        let port = free_port()?;
        let child = Command::new(program)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let server = NatsServer(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!("{program} did not listen on port {port} within 10 s").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((server, format!("nats://127.0.0.1:{port}")))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn run(args: Args) -> Result<(), Error> {
    if let Some(n) = args.instructions {
        // (A ping-pong's round trips are its messages here: its count is per round trip.)
        let ctx = |count| Ctx {
            count,
            capacity: args.capacity,
            round_trips: usize::try_from(count).unwrap_or(usize::MAX),
            registrations: args.registrations,
            nats_url: None,
        };
        let only = |m: &Measure| args.only.iter().any(|o| m.name.contains(o.as_str()));
        let named: Vec<Measure> = measures().into_iter().filter(only).collect();
        return if args.only.is_empty() {
            instructions::run(measures(), false, n, ctx)
        } else {
            instructions::run(named, true, n, ctx)
        };
    }
    let measures: Vec<Measure> = measures()
        .into_iter()
        .filter(|m| args.only.is_empty() || args.only.iter().any(|o| m.name.contains(o.as_str())))
        .collect();
    let needs_nats = measures.iter().any(|m| m.name.starts_with("nats"));
    let (_server, nats_url) = match needs_nats.then(|| NatsServer::start(&args.nats_server)) {
        Some(Ok((s, url))) => (Some(s), Some(url)),
        Some(Err(e)) => {
            eprintln!("dchan-suite: NATS measurements skipped: {e}");
            (None, None)
        }
        None => (None, None),
    };
    let ctx = Ctx {
        count: args.count,
        capacity: args.capacity,
        round_trips: args.round_trips,
        registrations: args.registrations,
        nats_url,
    };
    let mut results: BTreeMap<String, Vec<Result<Outcome, String>>> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..args.rounds {
        for m in &measures {
            eprint!("round {}/{}: {} ... ", round + 1, args.rounds, m.name);
            let outcome = (m.run)(&ctx, round).map_err(|e| e.to_string());
            match &outcome {
                Ok(o) => eprintln!("{o}"),
                Err(e) => eprintln!("failed: {e}"),
            }
            results.entry(m.name.clone()).or_default().push(outcome);
        }
    }
    let order: Vec<String> = measures.iter().map(|m| m.name.clone()).collect();
    report::print(&order, &results, args.rounds, started.elapsed());
    let failed = results.values().flatten().filter(|r| r.is_err()).count();
    if failed > 0 {
        return Err(format!("{failed} measurement(s) failed (see the table)").into());
    }
    Ok(())
}
