//! The child commands of the multi-process tests that ask and answer (see [`super::procs`]):
//!
//! | command | answer |
//! |---|---|
//! | `answer CHANNEL CAPACITY` | a receiver of [`Ask`] that answers `2 n`: `@ recv CHANNEL` once registered, `@ answered CHANNEL N` per request |
//! | `hold CHANNEL CAPACITY MICROS` | a receiver of [`Ask`] that takes one request every MICROS and keeps its handle unanswered: `@ recv CHANNEL`, then `@ held CHANNEL N` per request |
//! | `relay IN OUT CAPACITY` | a receiver of [`Ask`] on IN that passes each request on to OUT as `n + 1`, its handle with it: `@ recv IN` once registered |
//! | `drop CHANNEL CAPACITY` | a receiver of [`Ask`] that drops each request unanswered: `@ recv CHANNEL`, then `@ dropped CHANNEL N` per request |
//! | `asker CHANNEL` | registers a sender of [`Ask`] and keeps it: `@ asker CHANNEL` |
//! | `ask CHANNEL FROM TO MILLIS` | sends the requests FROM..TO at once on the kept sender (each with a deadline of MILLIS), then `@ reply N V`, or `@ noreply N REASON`, per request and `@ asked CHANNEL` |
//! | `logindex` | `@ logindex N`: the last index of this node's Raft log |

use std::time::Duration;

use serde::{Deserialize, Serialize};

thread_local! {
    /// The senders `asker` registered, by channel.
    static ASKERS: std::cell::RefCell<std::collections::HashMap<String, dchan::Sender<Ask>>> =
        std::cell::RefCell::default();
}

/// A request: answer with `2 n`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ask {
    pub n: u64,
    pub reply: dchan::oneshot::Sender<u64>,
}

/// Run one of this module's commands, if `words` is one: its task, if it started one.
pub async fn command(
    node: &dchan::Node,
    words: &[&str],
) -> Option<Option<actix_rt::task::JoinHandle<()>>> {
    Some(match words {
        ["answer", channel, capacity] => {
            let mut rx = receiver(node, channel, capacity).await;
            let channel = channel.to_string();
            Some(actix_rt::spawn(async move {
                while let Some(ask) = rx.recv().await {
                    println!("@ answered {channel} {}", ask.n);
                    let _ = ask.reply.send(ask.n * 2);
                }
            }))
        }
        ["hold", channel, capacity, micros] => {
            let pause = Duration::from_micros(micros.parse().expect("micros"));
            let mut rx = receiver(node, channel, capacity).await;
            let channel = channel.to_string();
            Some(actix_rt::spawn(async move {
                let mut held = Vec::new();
                while let Some(ask) = rx.recv().await {
                    println!("@ held {channel} {}", ask.n);
                    held.push(ask);
                    // Pacing a slow consumer, not synchronization.
                    tokio::time::sleep(pause).await;
                }
            }))
        }
        ["relay", from, to, capacity] => {
            let mut rx = receiver(node, from, capacity).await;
            let tx = node.sender::<Ask>(to).await.expect("sender");
            Some(actix_rt::spawn(async move {
                while let Some(ask) = rx.recv().await {
                    let ask = Ask { n: ask.n + 1, reply: ask.reply };
                    tx.send(ask).await.expect("relayed");
                }
            }))
        }
        ["drop", channel, capacity] => {
            let mut rx = receiver(node, channel, capacity).await;
            let channel = channel.to_string();
            Some(actix_rt::spawn(async move {
                while let Some(ask) = rx.recv().await {
                    println!("@ dropped {channel} {}", ask.n);
                }
            }))
        }
        ["asker", channel] => {
            let tx = node.sender::<Ask>(channel).await.expect("sender");
            ASKERS.with(|a| a.borrow_mut().insert(channel.to_string(), tx));
            println!("@ asker {channel}");
            None
        }
        ["ask", channel, from, to, millis] => {
            let tx = ASKERS.with(|a| a.borrow().get(*channel).cloned()).expect("`asker` first");
            let (from, to): (u64, u64) = (from.parse().expect("from"), to.parse().expect("to"));
            let timeout = Duration::from_millis(millis.parse().expect("millis"));
            let channel = channel.to_string();
            Some(actix_rt::spawn(async move {
                let asks = (from..to).map(|n| {
                    let tx = tx.clone();
                    async move { (n, tx.request_timeout(timeout, |reply| Ask { n, reply }).await) }
                });
                for (n, result) in futures::future::join_all(asks).await {
                    match result {
                        Ok(v) => println!("@ reply {n} {v}"),
                        Err(e) => println!("@ noreply {n} {e}"),
                    }
                }
                println!("@ asked {channel}");
            }))
        }
        ["logindex"] => {
            println!("@ logindex {}", node.__last_log_index().unwrap_or(0));
            None
        }
        _ => return None,
    })
}

async fn receiver(node: &dchan::Node, channel: &str, capacity: &str) -> dchan::Receiver<Ask> {
    let cap: usize = capacity.parse().expect("capacity");
    let rx = node.receiver::<Ask>(channel).capacity(cap).await.expect("recv");
    println!("@ recv {channel}");
    rx
}
