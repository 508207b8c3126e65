//! `dchan node`: a node process joins a cluster, and leaves it gracefully on SIGTERM (as a
//! service manager or container platform stops it), exiting 0.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the process if the test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(args: &[&str]) -> (Guard, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dchan"))
        .arg("node")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dchan node");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Guard(child), rx)
}

/// The first line containing `needle`, within 20 s.
fn line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => continue,
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

#[test]
fn sigterm_leaves_the_cluster_gracefully() {
    let (_first, first_out) = node(&["--listen", "127.0.0.1:0"]);
    let started = line(&first_out, "listening on ");
    let addr = started.rsplit(' ').next().expect("address").to_owned();
    let (mut second, second_out) = node(&["--listen", "127.0.0.1:0", "--join", &addr]);
    let started = line(&second_out, "listening on ");
    let id = started.split(' ').nth(1).expect("node id").to_owned();
    line(&first_out, &format!("member {id} "));

    let status = Command::new("kill").args(["-TERM", &second.0.id().to_string()]).status();
    assert!(status.expect("kill runs").success());
    line(&second_out, "leaving the cluster");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = second.0.try_wait().expect("status") {
            break s;
        }
        assert!(Instant::now() < deadline, "the node did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    // The first node prints the cluster again as it changes: at last with only itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut members: Vec<String> = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "the first node never showed the second gone");
        match first_out.recv_timeout(Duration::from_millis(300)) {
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
