//! Bad bytes from the network close that one connection with a logged reason; the node lives on.

mod common;

use common::{cluster, shutdown, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Write `bytes` to the node and wait until it closes the connection.
async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = [0u8; 256];
    // The node answers nothing to garbage and closes the connection: read ends with EOF (or reset).
    loop {
        match within("connection closed by the node", s.read(&mut buf)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[actix_rt::test]
async fn garbage_oversized_and_misversioned_frames_do_not_hurt_the_node() {
    let nodes = cluster(2).await;
    let addr = nodes[0].addr();
    // Not a frame of ours at all.
    closed_after(addr, &frame(b"GET / HTTP/1.1\r\n\r\n")).await;
    // A length prefix far over the limit: refused before anything is allocated.
    closed_after(addr, &u32::MAX.to_be_bytes()).await;
    // Another protocol version.
    closed_after(addr, &frame(&[0x92, 0x07, 0xc0])).await;
    // A valid hello followed by a truncated data frame.
    let mut hello = Vec::new();
    rmp_serde::encode::write_named(
        &mut hello,
        &(1u8, Hello::Hello { node: 4242, addr: "127.0.0.1:9".into() }),
    )
    .expect("encode");
    let mut bytes = frame(&hello);
    bytes.extend(frame(&[0x92, 0x01, 0x81, 0xa4, b'D', b'a', b't', b'a', 0x82]));
    closed_after(addr, &bytes).await;
    // Pseudo-random junk of many lengths.
    let mut x: u32 = 12345;
    for len in [1usize, 3, 7, 64, 300] {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        closed_after(addr, &frame(&junk)).await;
    }

    // The cluster still works: registration through Raft and data between the nodes.
    let mut rx = nodes[0].receiver::<u32>("after-junk").await.expect("rx");
    let tx = nodes[1].sender::<u32>("after-junk").await.expect("tx");
    tx.send(1).await.expect("send");
    assert_eq!(within("recv", rx.recv()).await, Some(1));
    // Nothing of the junk reached the registry.
    let view = nodes[1].cluster();
    assert_eq!(view.members.len(), 2);
    assert!(view.members.iter().all(|m| m.id != 4242));
    shutdown(nodes).await;
}

/// The shape of the hello frame, as a peer would write it.
#[derive(serde::Serialize)]
enum Hello {
    Hello { node: u64, addr: String },
}

#[actix_rt::test]
async fn a_message_over_the_frame_limit_is_handed_back_and_the_link_goes_on() {
    common::tracing();
    let a = dchan::Node::builder().max_frame_size(4096).bootstrap().start().await.expect("a");
    let b = dchan::Node::builder().max_frame_size(4096).join([a.addr()]).start().await.expect("b");
    let mut rx = b.receiver::<String>("sized").await.expect("rx");
    let tx = a.sender::<String>("sized").await.expect("tx");
    within("receiver known", tx.wait_for_receivers(1)).await.expect("open");
    tx.send("small".into()).await.expect("send");
    let big = "x".repeat(10_000);
    let back = tx.try_send(big.clone()).expect_err("too large for a frame");
    assert_eq!(back.into_inner(), big, "the message comes back");
    // Nothing else was lost, and the link still carries what fits (many per frame).
    for i in 0..500 {
        tx.send(format!("after {i}")).await.expect("send");
    }
    assert_eq!(within("recv", rx.recv()).await.as_deref(), Some("small"));
    for i in 0..500 {
        assert_eq!(within("recv", rx.recv()).await, Some(format!("after {i}")));
    }
    within("shutdown", b.shutdown()).await.expect("b");
    within("shutdown", a.shutdown()).await.expect("a");
}

#[actix_rt::test]
async fn nodes_with_different_frame_limits_use_the_smaller() {
    common::tracing();
    let a = dchan::Node::builder().bootstrap().start().await.expect("a");
    let b = dchan::Node::builder().max_frame_size(4096).join([a.addr()]).start().await.expect("b");
    let mut rx = b.receiver::<String>("sized").await.expect("rx");
    let tx = a.sender::<String>("sized").await.expect("tx");
    within("receiver known", tx.wait_for_receivers(1)).await.expect("open");
    // Node a could write a 10 kB frame; node b would refuse it and the link would break each
    // time it was resent. The handshake made node a keep to node b's limit: the message is
    // handed back at once, and the link carries on.
    let big = "x".repeat(10_000);
    let back = within("refused", tx.send(big.clone())).await.expect_err("too large for b");
    assert_eq!(back.into_inner(), big);
    for i in 0..200 {
        tx.send(format!("after {i}")).await.expect("send");
    }
    for i in 0..200 {
        assert_eq!(within("recv", rx.recv()).await, Some(format!("after {i}")));
    }
    within("shutdown", b.shutdown()).await.expect("b");
    within("shutdown", a.shutdown()).await.expect("a");
}
