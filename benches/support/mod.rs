//! What the benchmarks share: the message, the framed TCP pair of the baselines, starting and
//! stopping dchan nodes, and deadlines that turn a hang into a clear panic.

// Each benchmark binary uses its own subset.
#![allow(dead_code, unreachable_pub)]

use std::future::IntoFuture;
use std::time::Duration;

use criterion::BenchmarkGroup;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Capacity of the bounded channels (tokio mpsc, dchan receivers).
pub const CAPACITY: usize = 1024;
/// The longest starting nodes, registering endpoints or shutting down may take.
pub const SETUP_DEADLINE: Duration = Duration::from_secs(30);
/// The string field of [`Msg`]: sized so that the encoded message is about 64 bytes.
pub const PAYLOAD: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
/// The frame of the raw (unencoded) TCP baselines.
pub static FRAME: [u8; 64] = [0x5a; 64];

pub type FramedTcp = Framed<TcpStream, LengthDelimitedCodec>;
pub type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// The message of every benchmark but the raw TCP ones: 61 to 65 bytes with
/// `rmp_serde::to_vec_named` (a map with two named fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Msg {
    pub id: u64,
    pub payload: String,
}

pub fn msg(id: u64) -> Msg {
    Msg { id, payload: PAYLOAD.to_owned() }
}

/// dchan's warnings and errors to stderr (`RUST_LOG` overrides the filter).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Await `fut`, panicking with `what` (evaluated only then) if it takes longer than `deadline`.
pub async fn within<F: IntoFuture>(
    deadline: Duration,
    fut: F,
    what: impl FnOnce() -> String,
) -> F::Output {
    match tokio::time::timeout(deadline, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{} (deadline {deadline:?})", what()),
    }
}

/// Wait until `cond` holds, checking every few milliseconds; panics after [`SETUP_DEADLINE`].
pub async fn wait_until(mut cond: impl FnMut() -> bool, what: impl FnOnce() -> String) {
    let deadline = tokio::time::Instant::now() + SETUP_DEADLINE;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            panic!("{} (deadline {SETUP_DEADLINE:?})", what());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A connected loopback pair, framed as dchan frames its connections: (client, server).
pub async fn framed_pair() -> (FramedTcp, FramedTcp) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let (client, accepted) =
        tokio::try_join!(TcpStream::connect(addr), listener.accept()).expect("loopback connect");
    let server = accepted.0;
    for s in [&client, &server] {
        s.set_nodelay(true).expect("TCP_NODELAY");
    }
    (
        Framed::new(client, LengthDelimitedCodec::new()),
        Framed::new(server, LengthDelimitedCodec::new()),
    )
}

/// Start `n` nodes in this process (the first bootstraps, the others join it) and wait until
/// each sees all `n` members.
pub async fn start_nodes(bench: &'static str, n: usize) -> Vec<dchan::Node> {
    let first = within(SETUP_DEADLINE, dchan::Node::builder().bootstrap().start(), || {
        format!("{bench}: bootstrapping the first node did not finish")
    })
    .await
    .unwrap_or_else(|e| panic!("{bench}: bootstrap failed: {e}"));
    let mut nodes = vec![first];
    for k in 1..n {
        let seed = nodes[0].addr();
        let node = within(SETUP_DEADLINE, dchan::Node::builder().join([seed]).start(), || {
            format!("{bench}: node {k} joining did not finish")
        })
        .await
        .unwrap_or_else(|e| panic!("{bench}: node {k} could not join: {e}"));
        nodes.push(node);
    }
    for (k, node) in nodes.iter().enumerate() {
        wait_until(
            || node.cluster().members.len() == n,
            || format!("{bench}: node {k} does not see {n} members: {:?}", node.cluster()),
        )
        .await;
    }
    nodes
}

/// Register a receiver of `channel` (capacity [`CAPACITY`]) on `node`.
pub async fn receiver(bench: &str, node: &dchan::Node, channel: &str) -> dchan::Receiver<Msg> {
    within(SETUP_DEADLINE, node.receiver::<Msg>(channel).capacity(CAPACITY), || {
        format!("{bench}: registering the {channel} receiver did not finish")
    })
    .await
    .unwrap_or_else(|e| panic!("{bench}: registering the {channel} receiver failed: {e}"))
}

/// Register a sender of `channel` on `node`, and wait until it sees `receivers` receivers.
pub async fn sender(
    bench: &str,
    node: &dchan::Node,
    channel: &str,
    receivers: usize,
) -> dchan::Sender<Msg> {
    let tx = within(SETUP_DEADLINE, node.sender::<Msg>(channel), || {
        format!("{bench}: registering the {channel} sender did not finish")
    })
    .await
    .unwrap_or_else(|e| panic!("{bench}: registering the {channel} sender failed: {e}"));
    within(SETUP_DEADLINE, tx.wait_for_receivers(receivers), || {
        format!("{bench}: the {channel} sender sees {} receivers", tx.receiver_count())
    })
    .await
    .unwrap_or_else(|_| panic!("{bench}: {channel} closed"));
    tx
}

/// Shut the nodes down, last started first.
pub async fn shutdown_nodes(bench: &str, nodes: &[dchan::Node]) {
    for (k, node) in nodes.iter().enumerate().rev() {
        within(SETUP_DEADLINE, node.shutdown(), || {
            format!("{bench}: node {k} shutdown did not finish")
        })
        .await
        .unwrap_or_else(|e| panic!("{bench}: node {k} shutdown failed: {e}"));
    }
}
