//! One TCP connection per pair of nodes, used both ways by Raft and by every channel.
//! (Reads the kernel's table of connections, so Linux only.)

#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;

use common::{accepted, cluster, eventually, shutdown, within};

#[actix_rt::test]
async fn three_nodes_share_three_connections_whatever_the_channels() {
    let nodes = cluster(3).await;
    let ports: BTreeSet<u16> = nodes.iter().map(|n| n.addr().port()).collect();
    // Traffic between every pair, on several channels, one direction after the other.
    for (i, from) in nodes.iter().enumerate() {
        for (j, to) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            for ch in ["a", "b", "c"] {
                let name = format!("{ch}-{i}-{j}");
                let mut rx = to.receiver::<u32>(&name).await.expect("rx");
                let tx = from.sender::<u32>(&name).await.expect("tx");
                within("wait", tx.wait_for_receivers(1)).await.expect("open");
                tx.send(1).await.expect("send");
                assert_eq!(within("recv", rx.recv()).await, Some(1));
            }
        }
    }
    // Connections dropped during the joins may take a moment to go from the table.
    eventually(|| accepted(&ports) == 3).await;
    shutdown(nodes).await;
}
