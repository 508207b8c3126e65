//! `#[dchan::endpoint]` types used for real: the channel comes from the type, serde from the macro.

mod common;

use common::{cluster, shutdown, within};
use dchan::Endpoint;

#[dchan::endpoint(channel = "orders")]
#[derive(Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    item: String,
}

/// Without `channel`, the channel is named after the type.
#[dchan::endpoint]
#[derive(Debug, PartialEq)]
enum Command {
    Start { at: u64 },
    Stop,
}

#[actix_rt::test]
async fn endpoint_types_send_and_receive_across_nodes() {
    let nodes = cluster(2).await;
    let mut orders = Order::receiver(&nodes[1]).capacity(16).await.expect("rx");
    let mut commands = Command::receiver(&nodes[0]).await.expect("rx");
    let tx = Order::sender(&nodes[0]).await.expect("tx");
    let ctl = Command::sender(&nodes[1]).await.expect("tx");

    tx.send(Order { id: 1, item: "tea".into() }).await.expect("send");
    ctl.send(Command::Start { at: 5 }).await.expect("send");
    ctl.send(Command::Stop).await.expect("send");
    assert_eq!(within("recv", orders.recv()).await, Some(Order { id: 1, item: "tea".into() }));
    assert_eq!(within("recv", commands.recv()).await, Some(Command::Start { at: 5 }));
    assert_eq!(within("recv", commands.recv()).await, Some(Command::Stop));

    let view = nodes[0].cluster();
    assert!(view.channel("orders").is_some());
    assert!(view.channel("Command").is_some(), "default channel name is the type's name");
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_receiver_feeds_a_custom_actix_actor() {
    use actix::prelude::*;

    struct Sum {
        total: u64,
        done: Option<tokio::sync::oneshot::Sender<u64>>,
    }
    impl Actor for Sum {
        type Context = Context<Self>;
    }
    impl StreamHandler<u64> for Sum {
        fn handle(&mut self, n: u64, _: &mut Context<Self>) {
            self.total += n;
        }
        fn finished(&mut self, ctx: &mut Context<Self>) {
            if let Some(tx) = self.done.take() {
                let _ = tx.send(self.total);
            }
            ctx.stop();
        }
    }

    let nodes = cluster(2).await;
    let rx = nodes[1].receiver::<u64>("sum").await.expect("rx");
    let (done, total) = tokio::sync::oneshot::channel();
    Sum::create(|ctx| {
        ctx.add_stream(rx);
        Sum { total: 0, done: Some(done) }
    });
    let tx = nodes[0].sender::<u64>("sum").await.expect("tx");
    for i in 1..=100 {
        tx.send(i).await.expect("send");
    }
    tx.close().await.expect("close");
    assert_eq!(within("actor total", total).await, Ok(5050));
    shutdown(nodes).await;
}
