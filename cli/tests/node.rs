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
