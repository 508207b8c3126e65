//! The command against a typed Rust program: JSON of the receiver's shape arrives as its type,
//! what does not fit is a dead letter (counted in `status`, read with `recv --dead-letters`),
//! and a benchmark on a channel of another type fails with one clear line.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{run, DEADLINE};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
}

/// A program with a typed receiver of `jobs`: its node's address, and the jobs it receives.
/// The program stops when the returned sender is dropped.
fn typed_program() -> (String, mpsc::Receiver<Job>, tokio::sync::oneshot::Sender<()>) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (jobs_tx, jobs) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let node = dchan::Node::builder().bootstrap().start().await.expect("bootstrap");
            let mut rx = node.receiver::<Job>("jobs").capacity(4).await.expect("receiver");
            addr_tx.send(node.addr().to_string()).expect("test waiting");
            let receiving = async {
                while let Some(job) = rx.recv().await {
                    if jobs_tx.send(job).is_err() {
                        break;
                    }
                }
            };
            tokio::select! {
                () = receiving => {}
                _ = stopped => {}
            }
            drop(rx);
            node.shutdown().await.expect("shutdown");
        });
    });
    (addr_rx.recv_timeout(DEADLINE).expect("the program started"), jobs, stop)
}

fn status(addr: &str) -> serde_json::Value {
    let (code, out, err) = run(&["status", "jobs", "--json", "--join", addr], "");
    assert_eq!(code, Some(0), "{err:?}");
    serde_json::from_str(&out[0]).expect("json")
}

#[test]
fn json_reaches_a_typed_receiver_and_misfits_become_dead_letters() {
    let (addr, jobs, _stop) = typed_program();
    let values = ["{\"id\":1,\"name\":\"a\"}", "\"not a job\"", "{\"id\":2,\"name\":\"b\"}"];
    let mut args = vec!["send", "jobs", "--join", &addr];
    args.extend(values);
    let (code, _, err) = run(&args, "");
    // The misfit is reported: the command fails, saying what the receivers expect.
    assert_eq!(code, Some(1), "{err:?}");
    let line: Vec<&String> = err.iter().filter(|l| l.starts_with("dchan send:")).collect();
    assert_eq!(line.len(), 1, "{err:?}");
    assert!(
        line[0].contains("1 of 3 message(s) sent to jobs became dead letters")
            && line[0].contains("Job")
            && line[0].contains("--dead-letters"),
        "{line:?}"
    );
    let got: Vec<Job> = (0..2).map(|_| jobs.recv_timeout(DEADLINE).expect("a job")).collect();
    assert_eq!(got, [Job { id: 1, name: "a".into() }, Job { id: 2, name: "b".into() }]);
    assert!(jobs.recv_timeout(Duration::from_millis(200)).is_err(), "the misfit is no job");

    let s = status(&addr);
    assert_eq!(s["channels"][0]["dead_letters"], 1, "{s}");
    assert!(s["channels"][0]["type"].as_str().is_some_and(|t| t.ends_with("Job")), "{s}");
    let (code, out, err) = run(&["recv", "jobs", "--dead-letters", "--join", &addr], "");
    assert_eq!(code, Some(0), "{err:?}");
    assert_eq!(out.len(), 1, "{out:?}");
    let letter: serde_json::Value = serde_json::from_str(&out[0]).expect("json");
    assert_eq!(letter["message"], "not a job");
    assert!(letter["expected"].as_str().is_some_and(|t| t.ends_with("Job")), "{letter}");
    assert_eq!(status(&addr)["channels"][0]["dead_letters"], 0, "read letters are let go");

    let (code, _, err) =
        run(&["bench", "--join", &addr, "--channel", "jobs", "--count", "10", "--in-process"], "");
    assert_ne!(code, Some(0));
    let line: Vec<&String> = err.iter().filter(|l| l.starts_with("dchan ")).collect();
    assert_eq!(line.len(), 1, "{err:?}");
    assert!(line[0].contains("channel `jobs` carries") && line[0].contains("BenchMsg"), "{line:?}");
}
