//! Receivers on the sender's own node are served in-process: the message is moved, never encoded.

mod common;

use common::{cluster, shutdown, within};
use serde::{Deserialize, Serialize, Serializer};

/// A message that cannot be encoded: it can only ever reach a receiver without serialization.
#[derive(Debug, PartialEq, Deserialize)]
struct NotForTheWire(u32);

impl Serialize for NotForTheWire {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this message must not be encoded"))
    }
}

#[actix_rt::test]
async fn a_local_receiver_gets_the_value_without_encoding() {
    let nodes = cluster(2).await;
    let mut rx = nodes[0].receiver::<NotForTheWire>("in-process").await.expect("rx");
    let tx = nodes[0].sender::<NotForTheWire>("in-process").await.expect("tx");
    for i in 0..100 {
        tx.send(NotForTheWire(i)).await.expect("moved, not encoded");
    }
    for i in 0..100 {
        assert_eq!(within("recv", rx.recv()).await, Some(NotForTheWire(i)));
    }
    // The same message to a receiver on another node has to be encoded, and says so.
    drop(rx);
    let _remote = nodes[1].receiver::<NotForTheWire>("in-process").await.expect("rx");
    // Exactly one: the dropped local receiver is gone from the targets, the remote one is there.
    common::eventually(|| tx.receiver_count() == 1).await;
    let err = tx.try_send(NotForTheWire(7)).expect_err("cannot be encoded for the network");
    assert_eq!(err.into_inner(), NotForTheWire(7), "the message comes back");
    shutdown(nodes).await;
}
