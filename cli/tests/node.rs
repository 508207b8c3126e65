//! `dchan node`: a node process joins a cluster, and leaves it gracefully on SIGTERM (as a
//! service manager or container platform stops it), exiting 0.

mod common;

use std::time::{Duration, Instant};

/// The first node logs the whole cluster once, then one line per change: the second node joining
/// (a voter once caught up), a client joining under its command's name, each leaving.
#[test]
fn sigterm_leaves_the_cluster_gracefully() {
    let (first, addr) = common::node(None);
    // Its first view printed before anything changes.
    first.line_with("cluster seen from");
    // Two more nodes: learners are promoted two at a time (from one voter straight to three).
    let second = common::spawn(&["node", "--listen", "127.0.0.1:0", "--join", &addr]);
    let started = second.line_with("listening on ");
    let id = started.split(' ').nth(1).expect("node id").to_owned();
    let _third = common::spawn(&["node", "--listen", "127.0.0.1:0", "--join", &addr]);
    // Promoted once caught up: in the same line, or in a later change.
    let joined = first.line_with(&format!("member {id} joined at "));
    if !joined.ends_with("as a voter") {
        first.line_with(&format!("member {id} is now a voter"));
    }

    let client = common::spawn(&["recv", "jobs", "--join", &addr]);
    let joined = first.line_with("(recv jobs) joined at ");
    assert!(joined.ends_with("as a learner"), "{joined}");
    let client_id = joined.split(' ').nth(1).expect("client id").to_owned();
    let channel = first.line_with("channel \"jobs\" of ");
    assert!(channel.ends_with(": 0 sender(s), 1 receiver(s)"), "{channel}");
    client.signal("-INT");
    first.line_with(&format!("member {client_id} (recv jobs) left"));

    second.signal("-TERM");
    second.line_with("leaving the cluster");
    let (code, _, _) = second.wait();
    assert_eq!(code, Some(0));
    first.line_with(&format!("member {id} left"));
}

/// `--metrics` on `dchan node` and on a client command: each serves `/metrics` (Prometheus'
/// text), `/healthz` and `/readyz`, and says where on stderr.
#[test]
fn nodes_and_clients_serve_metrics_and_probes() {
    let first = common::spawn(&["node", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let started = first.line_with("listening on ");
    let addr = started.rsplit(' ').next().expect("address").to_owned();
    let metrics = common::metrics_addr(&first.err_line_with("metrics on http://"));
    assert_eq!(common::http_get(&metrics, "/healthz").0, 200);
    let deadline = Instant::now() + common::DEADLINE;
    while common::http_get(&metrics, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "the node never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A receiving client, with its own metrics: the node sees it join and register.
    let recv = common::spawn(&["recv", "jobs", "--join", &addr, "--metrics", "127.0.0.1:0"]);
    let client = common::metrics_addr(&recv.err_line_with("metrics on http://"));
    loop {
        let (status, body) = common::http_get(&metrics, "/metrics");
        assert_eq!(status, 200);
        if body.lines().any(|l| l == "dchan_members 2") {
            break;
        }
        assert!(Instant::now() < deadline, "the node never counted two members:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let (_, body) = common::http_get(&client, "/metrics");
        if body.lines().any(|l| l == "dchan_receivers{channel=\"jobs\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the client never showed its receiver:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(common::http_get(&client, "/nosuch").0, 404);
}
