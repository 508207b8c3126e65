//! `dchan node`: a node process joins a cluster, and leaves it gracefully on SIGTERM (as a
//! service manager or container platform stops it), exiting 0.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn sigterm_leaves_the_cluster_gracefully() {
    let (first, addr) = common::node(None);
    let second = common::spawn(&["node", "--listen", "127.0.0.1:0", "--join", &addr]);
    let started = second.line_with("listening on ");
    let id = started.split(' ').nth(1).expect("node id").to_owned();
    first.line_with(&format!("member {id} "));

    second.signal("-TERM");
    second.line_with("leaving the cluster");
    let (code, _, _) = second.wait();
    assert_eq!(code, Some(0));
    // The first node prints the cluster again as it changes: at last with only itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut members: Vec<String> = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "the first node never showed the second gone");
        match first.out.recv_timeout(Duration::from_millis(300)) {
            Ok(l) if l.contains("cluster seen from") => members.clear(),
            Ok(l) if l.contains("member ") => members.push(l),
            Ok(_) => {}
            // A whole print has arrived: is it the one without the second node?
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !members.is_empty() && members.iter().all(|m| !m.contains(&id)) {
                    break;
                }
            }
            Err(e) => panic!("the first node exited: {e}"),
        }
    }
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
