//! The child commands of the multi-process tests of unnamed channels (see [`super::procs`]):
//!
//! | command | answer |
//! |---|---|
//! | `own CAPACITY` | makes an unnamed channel of `u64` (`Node::channel`) and keeps both ends: `@ own` |
//! | `feed CHANNEL COUNT` | sends a [`Feed`] carrying the kept sender on CHANNEL (a named channel): `@ fed` |
//! | `take N` | takes N messages from the kept receiver: `@ took V` each, then `@ len L` (what it still buffers) |
//! | `drain` | takes until the channel ends: `@ took V` each, then `@ ended` |
//! | `produce CHANNEL close\|keep` | a receiver of [`Feed`] on CHANNEL: `@ recv CHANNEL`; for each feed, sends 0..COUNT on its sender, `@ sent I` each, then with `close` closes it (`@ closed`) and tries once more (`@ after ok\|closed`); with `keep`, keeps the sender |
//! | `more N` | sends N more on the sender `produce` kept: `@ more ok` each, `@ more closed` at the first that fails |

use serde::{Deserialize, Serialize};

/// An unnamed channel's sender, sent to a producer: send `0..count` on it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Feed {
    pub count: u64,
    pub results: dchan::Sender<u64>,
}

thread_local! {
    static OWN_TX: std::cell::RefCell<Option<dchan::Sender<u64>>> = std::cell::RefCell::default();
    static OWN_RX: std::cell::RefCell<Option<dchan::Receiver<u64>>> = std::cell::RefCell::default();
    static KEPT: std::cell::RefCell<Option<dchan::Sender<u64>>> = std::cell::RefCell::default();
}

/// Run one of this module's commands, if `words` is one: its task, if it started one.
pub async fn command(
    node: &dchan::Node,
    words: &[&str],
) -> Option<Option<actix_rt::task::JoinHandle<()>>> {
    Some(match words {
        ["own", capacity] => {
            let (tx, rx) = node.channel::<u64>(capacity.parse().expect("capacity"));
            OWN_TX.with(|o| *o.borrow_mut() = Some(tx));
            OWN_RX.with(|o| *o.borrow_mut() = Some(rx));
            println!("@ own");
            None
        }
        ["feed", channel, count] => {
            let results = OWN_TX.with(|o| o.borrow().clone()).expect("own");
            let count = count.parse().expect("count");
            let tx = node.sender::<Feed>(channel).await.expect("sender");
            tx.send(Feed { count, results }).await.expect("fed");
            println!("@ fed");
            None
        }
        ["take", n] => {
            let mut rx = OWN_RX.with(|o| o.borrow_mut().take()).expect("own");
            for _ in 0..n.parse::<u64>().expect("n") {
                println!("@ took {}", rx.recv().await.expect("open"));
            }
            println!("@ len {}", rx.len());
            OWN_RX.with(|o| *o.borrow_mut() = Some(rx));
            None
        }
        ["drain"] => {
            let mut rx = OWN_RX.with(|o| o.borrow_mut().take()).expect("own");
            while let Some(v) = rx.recv().await {
                println!("@ took {v}");
            }
            println!("@ ended");
            None
        }
        ["produce", channel, how] => {
            let close = *how == "close";
            let mut rx = node.receiver::<Feed>(channel).await.expect("recv");
            println!("@ recv {channel}");
            Some(actix_rt::spawn(async move {
                while let Some(feed) = rx.recv().await {
                    for i in 0..feed.count {
                        feed.results.send(i).await.expect("open");
                        println!("@ sent {i}");
                    }
                    if close {
                        feed.results.close().await.expect("close");
                        println!("@ closed");
                        let after = feed.results.send(feed.count).await;
                        println!("@ after {}", if after.is_ok() { "ok" } else { "closed" });
                    } else {
                        KEPT.with(|k| *k.borrow_mut() = Some(feed.results));
                    }
                }
            }))
        }
        ["more", n] => {
            let tx = KEPT.with(|k| k.borrow().clone()).expect("`produce CHANNEL keep` first");
            let n: u64 = n.parse().expect("n");
            Some(actix_rt::spawn(async move {
                for i in 0..n {
                    if tx.send(1000 + i).await.is_err() {
                        println!("@ more closed");
                        return;
                    }
                    println!("@ more ok");
                }
            }))
        }
        _ => return None,
    })
}
