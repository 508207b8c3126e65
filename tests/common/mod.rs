//! Helpers shared by the integration tests: real nodes on 127.0.0.1:0, waits on conditions with a
//! deadline (never a bare sleep), tracing set up once per test binary.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use dchan::Node;

pub mod asking;
pub mod feeding;
pub mod hostile;
pub mod procs;
pub mod proxy;
#[cfg(feature = "opentelemetry")]
pub mod traced;

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,openraft=error".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// Start `n` nodes: the first bootstraps, the rest join through it.
pub async fn cluster(n: usize) -> Vec<Node> {
    tracing();
    let first = Node::builder().listen("127.0.0.1:0").bootstrap().start().await.expect("bootstrap");
    let mut nodes = vec![first];
    for _ in 1..n {
        let seed = nodes[0].addr();
        let node = Node::builder().listen("127.0.0.1:0").join([seed]).start().await.expect("join");
        nodes.push(node);
    }
    // Every node has applied every membership change before the test starts.
    for node in &nodes {
        eventually(|| node.cluster().members.len() == n).await;
    }
    nodes
}

/// Established connections whose local end is one of `ports` (the accepting side), from the
/// kernel's table (`/proc/net/tcp`, so Linux only): one row per accepted connection.
pub fn accepted(ports: &std::collections::BTreeSet<u16>) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let established = cols.get(3) == Some(&"01");
            let local_port = cols
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            established && local_port.is_some_and(|p| ports.contains(&p))
        })
        .count()
}

/// Wait until `cond` holds, checking every few milliseconds; panics after [`DEADLINE`].
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Await `fut`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {DEADLINE:?}"),
    }
}

/// Wait until every node sees `count` receivers on `channel`.
pub async fn receivers_visible(nodes: &[Node], channel: &str, count: usize) {
    for node in nodes {
        eventually(|| {
            node.cluster().channel(channel).map(|c| c.receivers().count() == count).unwrap_or(false)
        })
        .await;
    }
}

pub async fn shutdown(nodes: Vec<Node>) {
    for node in nodes.into_iter().rev() {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}

/// Bytes live in the process (allocated and not freed) since `region` began, as a test binary
/// that installs `stats_alloc`'s counting allocator sees them.
pub fn live_bytes(region: &stats_alloc::Region<'_, std::alloc::System>) -> isize {
    let c = region.change();
    // (stats_alloc counts a reallocation's growth as allocated and its shrinking as
    // deallocated already; `bytes_reallocated` is the same change again.)
    c.bytes_allocated as isize - c.bytes_deallocated as isize
}
