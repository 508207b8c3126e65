//! A harness for multi-process tests: real node processes that the test starts, drives, kills with
//! SIGKILL and restarts.
//!
//! A child is the test binary itself, re-run with the filter `child --exact --ignored` and the
//! environment variable [`CHILD_ENV`] saying how to start its node (`bootstrap`, or the addresses
//! to join through). The child prints `@ ready <id> <addr>` once its node is a member (or
//! `@ error <reason>`), then runs one command per line read from its stdin and answers with `@ `
//! lines on stdout:
//!
//! | command | answer |
//! |---|---|
//! | `recv CHANNEL CAPACITY` | `@ recv CHANNEL` once registered; then `@ got CHANNEL N` per message, `@ end CHANNEL` at the end |
//! | `slowrecv CHANNEL CAPACITY MICROS` | like `recv`, pausing MICROS after each message (a slow consumer) |
//! | `ackrecv CHANNEL CAPACITY ACKS` | like `recv` with manual acknowledgement: acknowledges the first ACKS deliveries only |
//! | `send CHANNEL FROM TO` | sends the numbers FROM..TO on a new sender, then `@ sent CHANNEL` |
//! | `junk CHANNEL` | sends one message no `u64` receiver decodes (a string, on an untyped sender), then `@ junked CHANNEL` |
//! | `sender CHANNEL` | registers a sender and keeps it: `@ sender CHANNEL`, or `@ regerr REASON` |
//! | `push CHANNEL FROM TO` | sends FROM..TO on the kept sender, then `@ pushed CHANNEL` |
//! | `cast CHANNEL FROM TO` | broadcasts FROM..TO on the kept sender, then `@ cast CHANNEL` |
//! | `taken CHANNEL` | once every message of the kept sender is taken: `@ taken CHANNEL` |
//! | `register CHANNEL` | registers (and drops) a sender: `@ registered MICROS`, or `@ regerr REASON` |
//! | `members` | `@ members LEADER VOTERS ID,ID,...` (LEADER is `none` without one; VOTERS a count) |
//! | `role` | `@ role voter` or `@ role learner`, as this node sees itself |
//! | `inboxes` | `@ inboxes N`: the receivers' inboxes the node holds (dropped ones not yet let go included) |
//! | `spin CHANNEL MILLIS` | a local sender/receiver loop on the node's own thread for MILLIS ms: `@ spun ROUNDS` |
//! | `leave` | graceful shutdown, `@ left`, exit |
//!
//! and those of [`super::asking`], which ask and answer, of [`super::feeding`], and (with the
//! feature `opentelemetry`) of `super::traced`.
//!
//! Every wait in the parent is bounded by [`DEADLINE`](super::DEADLINE).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// `bootstrap`, or comma-separated seed addresses to join through.
pub const CHILD_ENV: &str = "DCHAN_TEST_CHILD";
/// Optional listen address for the child (default `127.0.0.1:0`).
pub const LISTEN_ENV: &str = "DCHAN_TEST_LISTEN";
/// Optional address the child advertises (a proxy in front of it).
pub const ADVERTISE_ENV: &str = "DCHAN_TEST_ADVERTISE";
/// Optional number of voters the child's node keeps ([`dchan::NodeBuilder::voters`]).
pub const VOTERS_ENV: &str = "DCHAN_TEST_VOTERS";
/// Set: the child's node serves metrics and probes on a port of its own, and prints
/// `@ metrics ADDR` after its ready line (needs the cargo feature `prometheus`).
pub const METRICS_ENV: &str = "DCHAN_TEST_METRICS";
/// Optional round trip, in milliseconds, the child's node expects ([`dchan::NodeBuilder::round_trip`]).
pub const ROUND_TRIP_ENV: &str = "DCHAN_TEST_ROUND_TRIP_MS";

/// One node process started by the test.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    /// Lines read while looking for others.
    backlog: std::collections::VecDeque<String>,
    pub id: u64,
    pub addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a node process: `join` empty bootstraps a cluster. Returns once the node is a member.
pub async fn start(join: &[SocketAddr]) -> Proc {
    start_at(join, None).await.unwrap_or_else(|e| panic!("child node failed to start: {e}"))
}

/// Like [`start`], listening on `listen` if given; the child's start-up error if it failed.
pub async fn start_at(join: &[SocketAddr], listen: Option<SocketAddr>) -> Result<Proc, String> {
    let mut p = spawn(join, listen);
    p.ready().await?;
    Ok(p)
}

/// Start a node process behind a proxy of `faults`: it advertises the proxy's address, which is
/// what other nodes (and `join` seeds given to later nodes: use the proxy's address) dial.
/// Returns once it is a member.
pub async fn start_proxied(
    join: &[SocketAddr],
    faults: &std::sync::Arc<super::proxy::Faults>,
) -> (Proc, super::proxy::Proxy) {
    start_proxied_env(join, faults, &[]).await
}

/// [`start_proxied`], with more of the child's environment.
pub async fn start_proxied_env(
    join: &[SocketAddr],
    faults: &std::sync::Arc<super::proxy::Faults>,
    env: &[(&str, String)],
) -> (Proc, super::proxy::Proxy) {
    start_proxied_within(join, faults, env, super::DEADLINE).await
}

/// [`start_proxied_env`], waiting up to `limit` (not [`DEADLINE`](super::DEADLINE)) for the
/// node to be a member: links with long delays.
pub async fn start_proxied_within(
    join: &[SocketAddr],
    faults: &std::sync::Arc<super::proxy::Faults>,
    env: &[(&str, String)],
    limit: Duration,
) -> (Proc, super::proxy::Proxy) {
    // The proxy must know where the node will listen before the node exists.
    let real = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let proxy = super::proxy::Proxy::start(faults, real).await;
    let mut p = spawn_env(join, Some(real), Some(proxy.addr), env);
    let ready = p.expect_within(&["@ ready ", "@ error "], limit).await;
    let ready = ready.unwrap_or_else(|| panic!("child node not a member within {limit:?}"));
    p.backlog.push_front(ready);
    p.ready().await.unwrap_or_else(|e| panic!("child node failed to start: {e}"));
    (p, proxy)
}

/// Start a node process without waiting for it to be ready (to start many at the same moment).
pub fn spawn(join: &[SocketAddr], listen: Option<SocketAddr>) -> Proc {
    spawn_with(join, listen, None)
}

/// Like [`start`], with a node that keeps `voters` voters.
/// Start a node process that serves metrics; returns it and where its metrics are.
#[allow(dead_code)]
pub async fn start_observed(join: &[SocketAddr]) -> (Proc, SocketAddr) {
    let mut p = spawn_env(join, None, None, &[(METRICS_ENV, "1".into())]);
    p.ready().await.unwrap_or_else(|e| panic!("child node failed to start: {e}"));
    let line = p.expect("@ metrics ").await;
    let addr = line["@ metrics ".len()..].trim().parse().expect("metrics address");
    (p, addr)
}

#[allow(dead_code)]
pub async fn start_voters(join: &[SocketAddr], voters: usize) -> Proc {
    let mut p = spawn_env(join, None, None, &[(VOTERS_ENV, voters.to_string())]);
    p.ready().await.unwrap_or_else(|e| panic!("child node failed to start: {e}"));
    p
}

fn spawn_with(
    join: &[SocketAddr],
    listen: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
) -> Proc {
    spawn_env(join, listen, advertise, &[])
}

fn spawn_env(
    join: &[SocketAddr],
    listen: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    env: &[(&str, String)],
) -> Proc {
    let how = if join.is_empty() {
        "bootstrap".to_owned()
    } else {
        join.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    };
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, how)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(l) = listen {
        cmd.env(LISTEN_ENV, l.to_string());
    }
    if let Some(a) = advertise {
        cmd.env(ADVERTISE_ENV, a.to_string());
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let stdin = child.stdin.take();
    let (tx, lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may have printed `test child ... ` on the same line.
            match line.find("@ ") {
                Some(at) => {
                    if tx.send(line[at..].to_owned()).is_err() {
                        break;
                    }
                }
                // The child's logs (its tracing writes to stdout, as a test's does).
                None => eprintln!("{line}"),
            }
        }
    });
    Proc {
        child,
        stdin,
        lines,
        backlog: Default::default(),
        id: 0,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

impl Proc {
    /// Wait until the node started by [`spawn`] is a member (or failed to start).
    pub async fn ready(&mut self) -> Result<(), String> {
        let ready = self.expect_any(&["@ ready ", "@ error "]).await;
        if let Some(err) = ready.strip_prefix("@ error ") {
            return Err(err.to_owned());
        }
        let mut parts = ready["@ ready ".len()..].split(' ');
        self.id = parts.next().and_then(|s| s.parse().ok()).expect("child id");
        self.addr = parts.next().and_then(|s| s.parse().ok()).expect("child addr");
        Ok(())
    }

    /// Send one command line.
    pub fn cmd(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "{line}").expect("child reads commands");
        stdin.flush().expect("flush");
    }

    /// The next line starting with `prefix` (others are skipped), within the deadline.
    pub async fn expect(&mut self, prefix: &str) -> String {
        self.expect_any(&[prefix]).await
    }

    /// The next line starting with any of `prefixes`, within the deadline.
    pub async fn expect_any(&mut self, prefixes: &[&str]) -> String {
        self.expect_within(prefixes, super::DEADLINE).await.unwrap_or_else(|| {
            panic!("no {prefixes:?} line from the child within {:?}", super::DEADLINE)
        })
    }

    /// The next line starting with any of `prefixes`, or `None` after `limit`.
    ///
    /// Lines passed over are kept, in order, for later calls that look for them.
    pub async fn expect_within(&mut self, prefixes: &[&str], limit: Duration) -> Option<String> {
        let wanted = |line: &String| prefixes.iter().any(|p| line.starts_with(p));
        if let Some(at) = self.backlog.iter().position(wanted) {
            return self.backlog.remove(at);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if wanted(&line) => return Some(line),
                Ok(Some(line)) => self.backlog.push_back(line),
                Ok(None) => panic!("child exited while waiting for {prefixes:?}"),
                Err(_) => return None,
            }
        }
    }

    /// The leader, the number of voters and the members this node sees.
    pub async fn members(&mut self) -> (Option<u64>, usize, Vec<u64>) {
        self.cmd("members");
        let line = self.expect("@ members ").await;
        let mut parts = line["@ members ".len()..].split(' ');
        let leader = parts.next().and_then(|l| l.parse().ok());
        let voters = parts.next().and_then(|v| v.parse().ok()).expect("voter count");
        let ids = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("member id"))
            .collect();
        (leader, voters, ids)
    }

    /// The node's Raft term.
    pub async fn term(&mut self) -> u64 {
        self.cmd("term");
        let line = self.expect("@ term ").await;
        line["@ term ".len()..].parse().expect("a term")
    }

    /// How many receivers' inboxes the node holds.
    pub async fn inboxes(&mut self) -> usize {
        self.cmd("inboxes");
        let line = self.expect("@ inboxes ").await;
        line["@ inboxes ".len()..].parse().expect("a count")
    }

    /// Whether this node sees itself as a voter.
    pub async fn voter(&mut self) -> bool {
        self.cmd("role");
        self.expect("@ role ").await == "@ role voter"
    }

    /// Time one sender registration on this node: `Ok(duration)` or the error it reported.
    pub async fn register(&mut self, channel: &str) -> Result<Duration, String> {
        self.cmd(&format!("register {channel}"));
        let line = self.expect_any(&["@ registered ", "@ regerr "]).await;
        match line.strip_prefix("@ registered ") {
            Some(us) => Ok(Duration::from_micros(us.parse().expect("micros"))),
            None => Err(line["@ regerr ".len()..].to_owned()),
        }
    }

    /// The numbers of the next `count` `@ got CHANNEL N` lines, in the order received, within
    /// the deadline (fewer if it passes: the caller's assertions say what is missing).
    pub async fn numbers(&mut self, channel: &str, count: usize) -> Vec<u64> {
        let prefix = format!("@ got {channel} ");
        let deadline = tokio::time::Instant::now() + super::DEADLINE;
        let mut got = Vec::with_capacity(count);
        while got.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(line) = self.expect_within(&[&prefix], left).await else { break };
            got.push(line[prefix.len()..].parse().expect("a number"));
        }
        got
    }

    /// The numbers of every `@ got CHANNEL N` line the child printed before it answered a
    /// `members` command sent now (a barrier: whatever it printed before is read), and the test
    /// has not read yet.
    pub async fn printed_numbers(&mut self, channel: &str) -> Vec<u64> {
        self.members().await;
        let prefix = format!("@ got {channel} ");
        let (got, rest): (Vec<String>, Vec<String>) =
            std::mem::take(&mut self.backlog).into_iter().partition(|l| l.starts_with(&prefix));
        self.backlog = rest.into();
        got.iter().map(|l| l[prefix.len()..].parse().expect("a number")).collect()
    }

    /// After [`Proc::kill`]: the numbers of every `@ got CHANNEL N` line the child printed and
    /// the test has not read yet.
    pub async fn drain_numbers(&mut self, channel: &str) -> Vec<u64> {
        let prefix = format!("@ got {channel} ");
        let mut got: Vec<u64> = Vec::new();
        let mut take = |line: &str| {
            if let Some(n) = line.strip_prefix(&prefix) {
                got.push(n.parse().expect("a number"));
            }
        };
        for line in std::mem::take(&mut self.backlog) {
            take(&line);
        }
        let deadline = tokio::time::Instant::now() + super::DEADLINE;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            take(&line);
        }
        got
    }

    /// SIGSTOP (`pause`) or SIGCONT (`resume`): a process frozen and thawed, as a long GC
    /// pause or a suspended VM does to it.
    pub fn signal(&self, pause: bool) {
        let sig = if pause { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {sig} failed");
    }

    /// SIGKILL: the node gets no chance to leave.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ask for a graceful leave and wait for the process to exit successfully.
    pub async fn leave(mut self) {
        self.cmd("leave");
        self.expect("@ left").await;
        let deadline = Instant::now() + super::DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                assert!(status.success(), "child failed: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "child did not exit after leaving");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The child side: run a node as [`CHILD_ENV`] says and obey commands until `leave` or EOF.
pub fn child_main() {
    let how = std::env::var(CHILD_ENV).expect("started by the harness");
    super::tracing();
    actix_rt::System::new().block_on(async move {
        let listen = std::env::var(LISTEN_ENV).unwrap_or_else(|_| "127.0.0.1:0".into());
        let mut builder = dchan::Node::builder().listen(listen);
        if let Ok(advertise) = std::env::var(ADVERTISE_ENV) {
            builder = builder.advertise(advertise);
        }
        if let Some(voters) = std::env::var(VOTERS_ENV).ok().and_then(|v| v.parse().ok()) {
            builder = builder.voters(voters);
        }
        if let Some(ms) = std::env::var(ROUND_TRIP_ENV).ok().and_then(|v| v.parse().ok()) {
            builder = builder.round_trip(Duration::from_millis(ms));
        }
        #[cfg(feature = "prometheus")]
        if std::env::var(METRICS_ENV).is_ok() {
            builder = builder.metrics("127.0.0.1:0");
        }
        let builder = if how == "bootstrap" {
            builder.bootstrap()
        } else {
            builder.join(how.split(',').map(str::to_owned).collect::<Vec<_>>())
        };
        let node = match builder.start().await {
            Ok(n) => n,
            Err(e) => {
                println!("@ error {e}");
                return;
            }
        };
        println!("@ ready {} {}", node.id(), node.addr());
        if let Some(addr) = node.metrics_addr() {
            println!("@ metrics {addr}");
        }
        let (tx, mut commands) = mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut keep = Vec::new();
        let mut senders = std::collections::HashMap::new();
        while let Some(line) = commands.recv().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(task) = super::asking::command(&node, &words).await {
                keep.extend(task);
                continue;
            }
            if let Some(task) = super::feeding::command(&node, &words).await {
                keep.extend(task);
                continue;
            }
            #[cfg(feature = "opentelemetry")]
            if let Some(task) = super::traced::command(&node, &words).await {
                keep.extend(task);
                continue;
            }
            match words.as_slice() {
                ["recv", channel, capacity] | ["slowrecv", channel, capacity, _] => {
                    let cap: usize = capacity.parse().expect("capacity");
                    let pause = match words.as_slice() {
                        [_, _, _, micros] => {
                            Some(Duration::from_micros(micros.parse().expect("micros")))
                        }
                        _ => None,
                    };
                    let mut rx = node.receiver::<u64>(channel).capacity(cap).await.expect("recv");
                    println!("@ recv {channel}");
                    let channel = channel.to_string();
                    keep.push(actix_rt::spawn(async move {
                        while let Some(n) = rx.recv().await {
                            println!("@ got {channel} {n}");
                            if let Some(pause) = pause {
                                // Pacing a slow consumer, not synchronization.
                                tokio::time::sleep(pause).await;
                            }
                        }
                        println!("@ end {channel}");
                    }));
                }
                ["ackrecv", channel, capacity, acks] => {
                    let cap: usize = capacity.parse().expect("capacity");
                    let mut acks: usize = acks.parse().expect("acks");
                    let mut rx = node
                        .receiver::<u64>(channel)
                        .capacity(cap)
                        .manual_ack()
                        .await
                        .expect("recv");
                    println!("@ recv {channel}");
                    let channel = channel.to_string();
                    keep.push(actix_rt::spawn(async move {
                        let mut held = Vec::new();
                        while let Some(d) = rx.recv().await {
                            println!("@ got {channel} {}", *d);
                            if acks > 0 {
                                acks -= 1;
                                d.ack();
                            } else {
                                held.push(d);
                            }
                        }
                        println!("@ end {channel}");
                    }));
                }
                ["send", channel, from, to] => {
                    let tx = node.sender::<u64>(channel).await.expect("sender");
                    keep.push(sends(tx, from, to, format!("@ sent {channel}")));
                }
                ["junk", channel] => {
                    // An untyped sender's message that no `u64` receiver can decode.
                    let tx = node.sender::<dchan::Value>(channel).await.expect("sender");
                    tx.send(dchan::Value::from("junk")).await.expect("send");
                    println!("@ junked {channel}");
                }
                ["sender", channel] => match node.sender::<u64>(channel).await {
                    Ok(tx) => {
                        senders.insert(channel.to_string(), tx);
                        println!("@ sender {channel}");
                    }
                    Err(e) => println!("@ regerr {e}"),
                },
                ["push", channel, from, to] => {
                    let tx = senders.get(*channel).expect("`sender` first").clone();
                    keep.push(sends(tx, from, to, format!("@ pushed {channel}")));
                }
                ["cast", channel, from, to] => {
                    let tx = senders.get(*channel).expect("`sender` first").clone();
                    let (from, to): (u64, u64) =
                        (from.parse().expect("from"), to.parse().expect("to"));
                    let channel = channel.to_string();
                    keep.push(actix_rt::spawn(async move {
                        for i in from..to {
                            tx.broadcast(i).await.expect("broadcast");
                        }
                        println!("@ cast {channel}");
                    }));
                }
                ["taken", channel] => {
                    let tx = senders.get(*channel).expect("`sender` first").clone();
                    let channel = channel.to_string();
                    keep.push(actix_rt::spawn(async move {
                        tx.wait_taken().await;
                        println!("@ taken {channel}");
                    }));
                }
                ["register", channel] => {
                    let t = Instant::now();
                    match node.sender::<u64>(channel).await {
                        Ok(_) => println!("@ registered {}", t.elapsed().as_micros()),
                        Err(e) => println!("@ regerr {e}"),
                    }
                }
                ["members"] => {
                    let view = node.cluster();
                    let leader = view.leader.map_or("none".into(), |l| l.to_string());
                    let ids: Vec<String> = view.members.iter().map(|m| m.id.to_string()).collect();
                    let voters =
                        view.members.iter().filter(|m| m.role == dchan::Role::Voter).count();
                    println!("@ members {leader} {voters} {}", ids.join(","));
                }
                ["inboxes"] => println!("@ inboxes {}", node.__inbox_count()),
                ["term"] => println!("@ term {}", node.__raft_term()),
                ["role"] => {
                    let view = node.cluster();
                    let me = view.members.iter().find(|m| m.id == node.id());
                    let voter = me.is_some_and(|m| m.role == dchan::Role::Voter);
                    println!("@ role {}", if voter { "voter" } else { "learner" });
                }
                ["spin", channel, millis] => {
                    let ms: u64 = millis.parse().expect("millis");
                    let tx = node.sender::<u64>(channel).await.expect("sender");
                    let mut rx = node.receiver::<u64>(channel).capacity(16).await.expect("recv");
                    println!("@ spinning");
                    let until = Instant::now() + Duration::from_millis(ms);
                    let mut rounds = 0u64;
                    while Instant::now() < until {
                        tx.send(rounds).await.expect("send");
                        rx.recv().await.expect("recv");
                        rounds += 1;
                    }
                    println!("@ spun {rounds}");
                }
                ["leave"] => break,
                other => println!("@ unknown {other:?}"),
            }
        }
        for task in keep {
            task.abort();
        }
        match node.shutdown().await {
            Ok(()) => println!("@ left"),
            // The node stopped, but could not tell the cluster.
            Err(e) => println!("@ leaveerr {e}"),
        }
    });
}

/// Send the numbers `from..to` on `tx` in the background, then print `done`.
fn sends(
    tx: dchan::Sender<u64>,
    from: &str,
    to: &str,
    done: String,
) -> actix_rt::task::JoinHandle<()> {
    let (from, to): (u64, u64) = (from.parse().expect("from"), to.parse().expect("to"));
    actix_rt::spawn(async move {
        for i in from..to {
            tx.send(i).await.expect("send");
        }
        println!("{done}");
    })
}
