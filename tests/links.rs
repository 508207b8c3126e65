//! Reliable links: a broken connection loses nothing. Node processes talk through fault proxies
//! (see `common::proxy`) that reset every connection mid-stream; frames already written into a
//! socket are lost with it, and must be resent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::procs;
use common::proxy::Faults;

/// A node process of this file's tests.
#[test]
#[ignore = "a node process started by this file's tests"]
fn child() {
    procs::child_main();
}

/// Reset every connection `times` times, `every` apart, in the background.
fn resets(faults: &Arc<Faults>, times: usize, every: Duration) -> tokio::task::JoinHandle<usize> {
    let faults = faults.clone();
    tokio::spawn(async move {
        let mut reset = 0;
        for _ in 0..times {
            tokio::time::sleep(every).await;
            reset += faults.reset();
        }
        reset
    })
}

#[tokio::test]
async fn connection_resets_mid_stream_lose_and_duplicate_nothing() {
    let faults = Faults::new();
    let (mut a, pa) = procs::start_proxied(&[], &faults).await;
    let (mut b, _pb) = procs::start_proxied(&[pa.addr], &faults).await;
    a.cmd("recv nums 16");
    a.expect("@ recv nums").await;
    let total = 20_000;
    b.cmd(&format!("send nums 0 {total}"));
    let resetting = resets(&faults, 8, Duration::from_millis(40));
    let got = a.numbers("nums", total).await;
    let reset = resetting.await.expect("resets");
    assert!(reset > 0, "the test reset no connection");
    let want: Vec<u64> = (0..total as u64).collect();
    let missing = want.iter().filter(|n| !got.contains(n)).count();
    assert_eq!(got.len(), total, "{missing} of {total} lost after {reset} resets");
    assert_eq!(got, want, "every number once, in the order sent");
    b.expect("@ sent nums").await;
}
