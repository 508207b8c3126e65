//! Metrics and probes as a monitoring system sees them: three node processes serve `/metrics`,
//! `/healthz` and `/readyz` (`NodeBuilder::metrics`); the test runs traffic, a slow consumer,
//! a dead letter, a node killed with deliveries unacknowledged (delivered again elsewhere),
//! then cuts the leader off from its majority, scraping over HTTP throughout. Every sample
//! must parse as Prometheus' text format, and each counter and gauge must move as its event
//! happens.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::procs;
use common::DEADLINE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The label of the channel every figure here is about.
const JOBS: &[(&str, &str)] = &[("channel", "jobs")];

#[test]
#[ignore = "a child process of the tests below"]
fn child() {
    procs::child_main();
}

/// One sample: its labels, and its value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// `GET path` on `addr`: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to metrics");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a header and a body");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, body.to_owned())
}

/// Parse Prometheus' text format strictly: every line a comment (`# HELP`, `# TYPE`) or a
/// sample `name{label="value",...} number`.
fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "not a Prometheus comment: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed: {line}"));
                let labels = inner
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) =
                            pair.split_once("=\"").unwrap_or_else(|| panic!("label: {line}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "not a metric name: {line}"
        );
        samples.entry(name.to_owned()).or_default().push((labels, value));
    }
    samples
}

/// The value of `name` with (at least) `labels`, if the scrape has it.
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.get(name)?.iter().find_map(|(l, v)| {
        labels.iter().all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want)).then_some(*v)
    })
}

async fn scrape(addr: SocketAddr) -> Samples {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    parse(&body)
}

/// Scrape `addr` until `cond` holds of a sample (every scrape publishes afresh); panics with
/// the last scrape after the deadline.
async fn until(addr: SocketAddr, what: &str, cond: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let samples = scrape(addr).await;
        if cond(&samples) {
            return samples;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not seen within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn at_least<'a>(
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
    n: f64,
) -> impl Fn(&Samples) -> bool + 'a {
    move |s| value(s, name, labels).is_some_and(|v| v >= n)
}

#[actix_rt::test]
async fn metrics_and_probes_move_with_what_happens() {
    let (mut a, a_metrics) = procs::start_observed(&[]).await;
    let (mut b, b_metrics) = procs::start_observed(&[a.addr]).await;
    let (mut c, c_metrics) = procs::start_observed(&[a.addr]).await;
    // All three alive, and the cluster knows its leader: every node is ready.
    for m in [a_metrics, b_metrics, c_metrics] {
        assert_eq!(get(m, "/healthz").await.0, 200);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while get(m, "/readyz").await.0 != 200 {
            assert!(tokio::time::Instant::now() < deadline, "{m}: never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(get(a_metrics, "/nosuch").await.0, 404);
    let before = until(a_metrics, "three members", at_least("dchan_members", &[], 3.0)).await;
    assert_eq!(value(&before, "dchan_raft_is_leader", &[]), Some(1.0), "a bootstrapped: it leads");
    assert!(value(&before, "dchan_raft_term", &[]).unwrap_or(0.0) >= 1.0);
    let applied = value(&before, "dchan_raft_applied_index", &[]).expect("applied index");
    let committed = value(&before, "dchan_raft_commit_index", &[]).expect("commit index");
    assert!(applied > 0.0 && committed >= applied, "applied {applied}, committed {committed}");

    // Traffic: b takes 8 and acknowledges none; then c takes 32.
    b.cmd("ackrecv jobs 8 0");
    b.expect("@ recv jobs").await;
    a.cmd("send jobs 0 8");
    a.expect("@ sent jobs").await;
    until(b_metrics, "b took 8", at_least("dchan_messages_received_total", JOBS, 8.0)).await;
    until(b_metrics, "b's receiver", at_least("dchan_receivers", JOBS, 1.0)).await;
    c.cmd("recv jobs 1000");
    c.expect("@ recv jobs").await;
    a.cmd("send jobs 8 40");
    a.expect("@ sent jobs").await;
    let sent = until(a_metrics, "40 sent", at_least("dchan_messages_sent_total", JOBS, 40.0)).await;
    assert!(value(&sent, "dchan_bytes_sent_total", JOBS).unwrap_or(0.0) > 0.0);
    assert!(value(&sent, "dchan_registration_seconds_count", &[]).unwrap_or(0.0) >= 1.0);
    let b_id = b.id.to_string();
    let peer_b: &[(&str, &str)] = &[("peer", &b_id)];
    assert_eq!(value(&sent, "dchan_peer_connected", peer_b), Some(1.0));
    assert!(value(&sent, "dchan_peer_frames_sent_total", peer_b).unwrap_or(0.0) > 0.0);
    assert!(value(&sent, "dchan_peer_bytes_sent_total", peer_b).unwrap_or(0.0) > 0.0);
    until(c_metrics, "c took 32", at_least("dchan_messages_received_total", JOBS, 32.0)).await;
    // a keeps b's 8 until b acknowledges them: in flight.
    until(a_metrics, "8 in flight to b", at_least("dchan_in_flight", JOBS, 8.0)).await;

    // A dead letter: c's `u64` receiver cannot decode a string.
    c.cmd("junk jobs");
    c.expect("@ junked jobs").await;
    until(c_metrics, "a dead letter on c", at_least("dchan_dead_letters_total", JOBS, 1.0)).await;

    // A slow consumer: c takes one message every 200 ms with room for 2; a's send waits.
    c.cmd("slowrecv slow 2 200000");
    c.expect("@ recv slow").await;
    a.cmd("send slow 0 8");
    until(
        c_metrics,
        "c's buffer full",
        at_least("dchan_receiver_buffered", &[("channel", "slow")], 1.0),
    )
    .await;
    a.expect("@ sent slow").await;
    until(
        a_metrics,
        "a send that waited",
        at_least("dchan_send_blocked_seconds_count", &[("channel", "slow")], 1.0),
    )
    .await;

    // b dies with 8 unacknowledged: the leader removes it, and a delivers them again to c.
    b.kill();
    until(a_metrics, "b removed", at_least("dchan_nodes_removed_total", &[], 1.0)).await;
    let redelivered = until(
        a_metrics,
        "8 delivered again",
        at_least("dchan_messages_redelivered_total", JOBS, 8.0),
    )
    .await;
    assert_eq!(value(&redelivered, "dchan_peer_connected", peer_b).unwrap_or(0.0), 0.0);
    until(a_metrics, "two members", |s| value(s, "dchan_members", &[]) == Some(2.0)).await;
    until(c_metrics, "c took all 40", at_least("dchan_messages_received_total", JOBS, 40.0)).await;

    // c dies too: a leads alone, without a quorum. It still runs, and is not ready.
    c.kill();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let why = loop {
        let (status, body) = get(a_metrics, "/readyz").await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200);
        assert!(tokio::time::Instant::now() < deadline, "a stayed ready without a quorum");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(why.contains("quorum") || why.contains("leader"), "{why}");
    assert_eq!(get(a_metrics, "/healthz").await.0, 200, "cut off, a still runs");
    a.kill();
}
