//! `dchan request` against a typed Rust program that answers: the answer printed as JSON, the
//! reply field named by `--reply-field`, no answer within `--timeout` an error, and bad
//! requests refused before joining.

mod common;

use std::sync::mpsc;

use common::{run, DEADLINE};
use serde::{Deserialize, Serialize};

/// A request of the program's: the price of `qty` of `item`.
#[derive(Debug, Serialize, Deserialize)]
struct Quote {
    item: String,
    qty: u32,
    /// The handle, in the field `answer_to` (the command's `--reply-field`).
    answer_to: dchan::oneshot::Sender<Price>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Price {
    item: String,
    total: u32,
}

/// A program that answers `quotes` (a pear is dropped unanswered): its node's address. It
/// stops when the returned sender is dropped.
fn answering_program() -> (String, tokio::sync::oneshot::Sender<()>) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let node = dchan::Node::builder().bootstrap().start().await.expect("bootstrap");
            let mut rx = node.receiver::<Quote>("quotes").capacity(4).await.expect("receiver");
            addr_tx.send(node.addr().to_string()).expect("test waiting");
            let answering = async {
                while let Some(q) = rx.recv().await {
                    if q.item != "pear" {
                        let price = Price { total: 30 * q.qty, item: q.item };
                        q.answer_to.send(price).expect("the asker waits");
                    }
                }
            };
            tokio::select! {
                () = answering => {}
                _ = stopped => {}
            }
            drop(rx);
            node.shutdown().await.expect("shutdown");
        });
    });
    (addr_rx.recv_timeout(DEADLINE).expect("the program started"), stop)
}

#[test]
fn request_prints_the_answer_and_reports_what_went_wrong() {
    let (addr, _stop) = answering_program();
    let request = r#"{"item":"apple","qty":3}"#;
    let args = ["request", "quotes", request, "--reply-field", "answer_to", "--join", &addr];
    let (code, out, err) = run(&args, "");
    assert_eq!(code, Some(0), "{err:?}");
    assert_eq!(out, [r#"{"item":"apple","total":90}"#]);

    // Dropped unanswered: said at once.
    let pear = r#"{"item":"pear","qty":1}"#;
    let args = ["request", "quotes", pear, "--reply-field", "answer_to", "--join", &addr];
    let (code, out, err) = run(&args, "");
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "{out:?}");
    assert!(err.iter().any(|l| l.contains("dropped without an answer")), "{err:?}");

    // Nobody serves the channel: the deadline.
    let args = ["request", "nobody", request, "--timeout", "300ms", "--join", &addr];
    let (code, _, err) = run(&args, "");
    assert_eq!(code, Some(1));
    assert!(err.iter().any(|l| l.contains("no answer on nobody within 300ms")), "{err:?}");
}

#[test]
fn a_request_that_cannot_carry_a_handle_is_refused_before_joining() {
    // Nothing listens there: the command must fail on its arguments first.
    let nowhere = common::dead_addr();
    for (request, says) in [
        ("[1,2]", "must be a JSON object"),
        ("{\"item\":", "not JSON"),
        ("{\"reply\":1}", "has a field \"reply\" already"),
    ] {
        let (code, _, err) = run(&["request", "quotes", request, "--join", &nowhere], "");
        assert_eq!(code, Some(1), "{request}");
        assert!(err.iter().any(|l| l.contains(says)), "{request}: {err:?}");
    }
}
