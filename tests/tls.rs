//! TLS between nodes (promise 10 in the README): mutual, each node's certificate signed by the
//! cluster's authority, made here at run time (rcgen). A node with a certificate of another
//! authority, or a client with none, does not get in. Loopback only.

mod common;

use std::sync::Arc;

use common::{receivers_visible, within, DEADLINE};
use dchan::{Error, Node, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A certificate authority, and certificates for 127.0.0.1 signed by it.
struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    fn new() -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        Authority { cert, key }
    }

    /// (certificate PEM, key PEM) for a node at 127.0.0.1 / localhost.
    fn node(&self) -> (String, String) {
        let params =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    fn tls(&self) -> TlsConfig {
        let (cert, key) = self.node();
        TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), self.cert.pem().as_bytes())
            .expect("tls config")
    }
}

async fn first(tls: TlsConfig) -> Node {
    common::tracing();
    Node::builder().listen("127.0.0.1:0").tls(tls).bootstrap().start().await.expect("bootstrap")
}

fn joiner(seed: &Node) -> dchan::NodeBuilder {
    Node::builder().listen("127.0.0.1:0").join_timeout(DEADLINE).join([seed.addr()])
}

#[actix_rt::test]
async fn nodes_with_certificates_of_one_authority_form_a_cluster_and_carry_messages() {
    let ca = Authority::new();
    let a = first(ca.tls()).await;
    let b = joiner(&a).tls(ca.tls()).start().await.expect("join over TLS");
    let c = joiner(&a).tls(ca.tls()).cookie("and a cookie").start().await;
    assert!(matches!(c, Err(Error::Auth(_))), "TLS and the cookie are both checked");
    let nodes = [a, b];
    let mut rx = nodes[1].receiver::<String>("secret").await.expect("rx");
    receivers_visible(&nodes, "secret", 1).await;
    let tx = nodes[0].sender::<String>("secret").await.expect("tx");
    for i in 0..200 {
        within("send", tx.send(format!("message {i}"))).await.expect("send");
    }
    for i in 0..200 {
        assert_eq!(within("recv", rx.recv()).await, Some(format!("message {i}")));
    }
    common::shutdown(nodes.into()).await;
}

#[actix_rt::test]
async fn a_node_with_a_certificate_of_another_authority_is_refused() {
    let (ca, other) = (Authority::new(), Authority::new());
    let a = first(ca.tls()).await;
    match joiner(&a).tls(other.tls()).start().await {
        Err(Error::Auth(msg)) => assert!(msg.contains("TLS"), "{msg}"),
        Err(e) => panic!("not an auth error: {e}"),
        Ok(_) => panic!("let in with a foreign certificate"),
    }
    // A node without TLS at all does not get in either (its hello is not a TLS handshake).
    assert!(joiner(&a).join_timeout(std::time::Duration::from_secs(2)).start().await.is_err());
    assert_eq!(a.cluster().members.len(), 1);
    within("shutdown", a.shutdown()).await.expect("shutdown");
}

#[actix_rt::test]
async fn a_tls_client_without_a_certificate_is_refused() {
    let ca = Authority::new();
    let a = first(ca.tls()).await;
    let mut roots = dchan::rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let provider = Arc::new(dchan::rustls::crypto::ring::default_provider());
    let config = dchan::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(a.addr()).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    // TLS 1.3: the client may finish its side before the server's refusal arrives; the
    // connection then closes at the first read.
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tls.write_all(&[0, 0, 0, 1, 0]).await;
        let mut buf = [0u8; 64];
        let read = within("the node closes", tls.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "the node answered: {read:?}");
    }
    assert_eq!(a.cluster().members.len(), 1);
    within("shutdown", a.shutdown()).await.expect("shutdown");
}
