//! A raw TCP client that speaks dchan's wire by hand (length-prefixed MessagePack, built with
//! `rmpv`), for tests that play a hostile or broken peer against live nodes on loopback: it can
//! send anything, go through the handshake with or without the cluster secret, and read what the
//! node answers. It knows the wire only as an outsider would (the frame layout below).
//!
//! Every frame is `[VERSION, {"Variant": {field: value, ...}}]` behind a 4-byte big-endian length.

use hmac::{Hmac, Mac};
use rmpv::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The wire version these frames are written for.
pub const VERSION: u8 = 13;

/// A frame: variant `name` with `fields`.
pub fn frame(name: &str, fields: Vec<(&str, Value)>) -> Vec<u8> {
    let body = Value::Map(fields.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
    let v = Value::Array(vec![Value::from(VERSION), Value::Map(vec![(Value::from(name), body)])]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).expect("encode");
    out
}

/// A dialer's hello: node `node`, reading frames up to `max_frame`, with nonce `nonce`.
pub fn hello(node: u64, max_frame: u64, nonce: &[u8]) -> Vec<u8> {
    frame(
        "Hello",
        vec![
            ("node", Value::from(node)),
            ("addr", Value::from("127.0.0.1:9")),
            ("max_frame", Value::from(max_frame)),
            ("nonce", Value::Binary(nonce.to_vec())),
        ],
    )
}

/// A length prefix and `body`.
pub fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// One connection to a node.
pub struct Client {
    pub stream: TcpStream,
}

/// What reading a frame found.
#[derive(Debug)]
pub enum Read {
    /// A frame: its variant name and fields.
    Frame(String, Value),
    /// The node closed the connection (or reset it).
    Closed,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        assert!(addr.ip().is_loopback(), "hostile traffic goes to loopback only");
        Client { stream: TcpStream::connect(addr).await.expect("connect") }
    }

    /// Write raw bytes; false if the node has closed the connection.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }

    /// Write one frame.
    pub async fn send(&mut self, body: &[u8]) -> bool {
        self.write(&prefixed(body)).await
    }

    /// The next frame, or `Closed`; panics after `super::DEADLINE`.
    pub async fn read(&mut self) -> Read {
        let read = async {
            let mut len = [0u8; 4];
            if self.stream.read_exact(&mut len).await.is_err() {
                return Read::Closed;
            }
            let mut buf = vec![0; u32::from_be_bytes(len) as usize];
            if self.stream.read_exact(&mut buf).await.is_err() {
                return Read::Closed;
            }
            let v = rmpv::decode::read_value(&mut &buf[..]).expect("the node sends MessagePack");
            let Value::Array(mut parts) = v else { panic!("not an envelope") };
            let Some(Value::Map(mut m)) = parts.pop() else { panic!("no frame") };
            let (name, fields) = m.pop().expect("a variant");
            Read::Frame(name.as_str().expect("variant name").to_owned(), fields)
        };
        tokio::time::timeout(super::DEADLINE, read).await.expect("the node answers or closes")
    }

    /// Read until the node closes the connection, skipping frames (at most 1,000).
    pub async fn closed(&mut self) -> bool {
        for _ in 0..1_000 {
            if let Read::Closed = self.read().await {
                return true;
            }
        }
        false
    }

    /// Go through the handshake as node `node`, with `secret` as the cookie (empty: none).
    /// `Ok` once welcomed, `Err` with the refusal's reason (or what else happened).
    pub async fn handshake(&mut self, node: u64, secret: &[u8]) -> Result<(), String> {
        let dn = [7u8; 32];
        let hello = hello(node, 1 << 20, &dn);
        if !self.send(&hello).await {
            return Err("closed before the hello".into());
        }
        let (acceptor, an) = match self.read().await {
            Read::Frame(name, f) if name == "Challenge" => {
                (field(&f, "node").as_u64().expect("id"), bin(&f, "nonce"))
            }
            Read::Frame(name, f) if name == "Refused" => return Err(reason(&f)),
            other => return Err(format!("{other:?}")),
        };
        let proof = proof(secret, b"dchan handshake v1: dialer", node, acceptor, &dn, &an);
        let msg = frame("Proof", vec![("proof", Value::Binary(proof)), ("received", Value::Nil)]);
        if !self.send(&msg).await {
            return Err("closed before the proof".into());
        }
        match self.read().await {
            Read::Frame(name, _) if name == "Welcome" => Ok(()),
            Read::Frame(name, f) if name == "Refused" => Err(reason(&f)),
            other => Err(format!("{other:?}")),
        }
    }
}

/// The handshake's HMAC-SHA256, as the wire defines it.
pub fn proof(
    secret: &[u8],
    role: &[u8],
    dialer: u64,
    acceptor: u64,
    dn: &[u8],
    an: &[u8],
) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(role);
    mac.update(&dialer.to_be_bytes());
    mac.update(&acceptor.to_be_bytes());
    mac.update(dn);
    mac.update(an);
    mac.finalize().into_bytes().to_vec()
}

pub fn field<'a>(fields: &'a Value, name: &str) -> &'a Value {
    fields
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {name} in {fields}"))
}

fn bin(fields: &Value, name: &str) -> Vec<u8> {
    match field(fields, name) {
        Value::Binary(b) => b.clone(),
        other => panic!("{name} is not bytes: {other}"),
    }
}

pub fn reason(fields: &Value) -> String {
    field(fields, "reason").as_str().unwrap_or_default().to_owned()
}

/// `v` (anything serde encodes, such as openraft's request types) as a MessagePack value with
/// field names, as the wire carries it.
pub fn value_of<T: serde::Serialize>(v: &T) -> Value {
    let bytes = rmp_serde::to_vec_named(v).expect("encode");
    rmpv::decode::read_value(&mut &bytes[..]).expect("decode")
}

/// A request frame: `body` is `{"Variant": fields}` or a bare variant name.
pub fn request(id: u64, body: Value) -> Vec<u8> {
    frame("Request", vec![("id", Value::from(id)), ("body", body)])
}

/// `{"name": fields}`.
pub fn variant(name: &str, fields: Vec<(&str, Value)>) -> Value {
    let body = Value::Map(fields.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
    Value::Map(vec![(Value::from(name), body)])
}

/// Bytes that look random, from `seed` (no two seeds alike; the same seed, the same bytes).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
