//! The handshake: the first frames of every connection, before a single Raft or data frame is
//! read. It sits between the socket (dialed or accepted in [`crate::link::connection`]) and the
//! connection's loops, which start only once both sides have proved they know the cluster secret.
//!
//! Four frames, each way in turn, all under a small frame limit ([`HANDSHAKE_MAX_FRAME`]) and one
//! deadline ([`HANDSHAKE_TIMEOUT`]):
//!
//! 1. the dialer's [`Frame::Hello`]: its id, address, frame limit and a fresh 32-byte nonce;
//! 2. the acceptor's [`Frame::Challenge`]: its id, frame limit, its own nonce, and its proof;
//! 3. the dialer checks that proof, then sends its own in [`Frame::Proof`];
//! 4. the acceptor checks it and answers [`Frame::Welcome`], or [`Frame::Refused`] with the reason.
//!
//! A proof is HMAC-SHA256 under the secret of a role label, both node ids and both nonces, so it
//! proves knowledge of the secret without revealing it, is bound to the ids both sides claim and
//! to this connection (fresh nonces from both sides: a recorded proof is worth nothing), and
//! cannot be reflected (the two roles sign different labels). Proofs are compared in constant
//! time. A node without a cookie uses the empty secret: such nodes only let in nodes without one.
//! After the handshake both sides read and write frames up to the smaller of their two limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Cause;
use crate::ids::NodeId;
use crate::link::transport::FramedTcp;
use crate::link::wire::{self, Frame};
use crate::Error;

/// The largest frame either side reads before the handshake is done.
pub(crate) const HANDSHAKE_MAX_FRAME: usize = 4 * 1024;

/// How long a whole handshake (and, dialing, the TCP connect) may take on a LAN (a node with a
/// longer round trip gives it longer: `Timing::handshake`).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest listening address a hello may give (a 253-byte host name and a port).
const MAX_ADDR: usize = 300;

const NONCE: usize = 32;

/// What the acceptor signs; the dialer signs the other.
const ACCEPTOR: &[u8] = b"dchan handshake v1: acceptor";
const DIALER: &[u8] = b"dchan handshake v1: dialer";

/// The cluster secret (the cookie). Never printed.
#[derive(Clone)]
pub(crate) struct Secret(Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(none)" } else { "Secret(..)" })
    }
}

impl Secret {
    /// The secret `bytes`; empty for a node without a cookie.
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Secret(bytes.into())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn mac(&self, role: &[u8], b: &Binding<'_>) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(role);
        mac.update(&b.dialer.to_be_bytes());
        mac.update(&b.acceptor.to_be_bytes());
        mac.update(b.dialer_nonce);
        mac.update(b.acceptor_nonce);
        mac
    }

    fn proof(&self, role: &[u8], b: &Binding<'_>) -> Vec<u8> {
        self.mac(role, b).finalize().into_bytes().to_vec()
    }

    /// Whether `proof` is right, compared in constant time.
    fn verify(&self, proof: &[u8], role: &[u8], b: &Binding<'_>) -> bool {
        self.mac(role, b).verify_slice(proof).is_ok()
    }
}

/// What a proof is bound to: both ids as claimed, and both nonces of this connection.
#[derive(Debug)]
struct Binding<'a> {
    dialer: NodeId,
    acceptor: NodeId,
    dialer_nonce: &'a [u8],
    acceptor_nonce: &'a [u8],
}

/// This node, as it introduces itself.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub(crate) node: NodeId,
    /// Where this node listens (advertised).
    pub(crate) addr: String,
    /// The largest frame this node reads once the handshake is done.
    pub(crate) max_frame: usize,
    pub(crate) secret: Secret,
    /// TLS under the handshake, if configured.
    pub(crate) tls: Option<crate::link::transport::TlsConfig>,
    /// How long setting up a connection may take ([`HANDSHAKE_TIMEOUT`] on a LAN).
    pub(crate) handshake_timeout: Duration,
}

/// The other side of a connection, once it proved it knows the secret.
#[derive(Debug)]
pub(crate) struct PeerHello {
    pub(crate) node: NodeId,
    /// The address a dialer's hello gives (a claim; see `Peers::dial_back`); the dialed address.
    pub(crate) addr: String,
    /// The largest frame both sides take: the smaller of the two limits.
    pub(crate) max_frame: usize,
    /// How much of this node's stream of reliable frames it has.
    pub(crate) received: Option<(u64, u64)>,
}

fn nonce() -> Result<Vec<u8>, Error> {
    let mut n = vec![0; NONCE];
    getrandom::fill(&mut n).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(n)
}

fn limit(theirs: u64, mine: usize) -> usize {
    usize::try_from(theirs).unwrap_or(usize::MAX).min(mine)
}

async fn next(framed: &mut FramedTcp) -> Result<bytes::BytesMut, Error> {
    match framed.next().await {
        Some(buf) => Ok(buf?),
        None => Err(Error::codec("the connection closed during the handshake")),
    }
}

/// Tell the other side why, then fail with the same words.
async fn refuse(
    framed: &mut FramedTcp,
    reason: String,
    err: impl FnOnce(String) -> Error,
) -> Error {
    let _ = framed.send(wire::encode(&Frame::Refused { reason: reason.clone() })).await;
    err(reason)
}

/// The dialing side, on a fresh connection to `addr`: returns the acceptor, proved, and sets
/// the connection's frame limit. `received` says how much of a node's stream this node has.
pub(crate) async fn dial(
    framed: &mut FramedTcp,
    addr: &str,
    me: &Me,
    received: impl FnOnce(NodeId) -> Option<(u64, u64)>,
) -> Result<PeerHello, Error> {
    framed.codec_mut().set_max_frame_length(HANDSHAKE_MAX_FRAME);
    let dn = nonce()?;
    let hello = Frame::Hello {
        node: me.node,
        addr: me.addr.clone(),
        max_frame: me.max_frame as u64,
        nonce: dn.clone(),
    };
    framed.send(wire::encode(&hello)).await?;
    let buf = next(framed).await?;
    let (node, max_frame, an) = match wire::decode(&buf) {
        Ok(Frame::Challenge { node, max_frame, nonce, proof })
            if nonce.len() == NONCE && max_frame >= HANDSHAKE_MAX_FRAME as u64 =>
        {
            let b = Binding {
                dialer: me.node,
                acceptor: node,
                dialer_nonce: &dn,
                acceptor_nonce: &nonce,
            };
            if !me.secret.verify(&proof, ACCEPTOR, &b) {
                let reason = if me.secret.is_empty() {
                    format!(
                        "{addr} (node {node}) belongs to a cluster with a secret: give this node \
                         the same cookie (NodeBuilder::cookie, --cookie or DCHAN_COOKIE)"
                    )
                } else {
                    format!(
                        "{addr} (node {node}) does not share this node's cookie: it has another \
                         one, or none"
                    )
                };
                return Err(
                    refuse(framed, "a different cookie".into(), |_| Error::auth(reason)).await
                );
            }
            (node, max_frame, nonce)
        }
        Ok(Frame::Refused { reason }) => {
            return Err(Error::auth(format!("{addr} refused this node: {reason}")))
        }
        Ok(_) => {
            return Err(Error::codec(format!("{addr} answered the hello with something else")))
        }
        Err(e) => return Err(Error::codec(Cause::new(format!("{addr}: {e}"), e))),
    };
    let b = Binding { dialer: me.node, acceptor: node, dialer_nonce: &dn, acceptor_nonce: &an };
    let proof = me.secret.proof(DIALER, &b);
    framed.send(wire::encode(&Frame::Proof { proof, received: received(node) })).await?;
    let buf = next(framed).await?;
    let theirs = match wire::decode(&buf) {
        Ok(Frame::Welcome { received }) => received,
        Ok(Frame::Refused { reason }) => {
            return Err(Error::auth(format!("{addr} refused this node: {reason}")))
        }
        Ok(_) => {
            return Err(Error::codec(format!("{addr} answered the proof with something else")))
        }
        Err(e) => return Err(Error::codec(Cause::new(format!("{addr}: {e}"), e))),
    };
    let max_frame = limit(max_frame, me.max_frame);
    framed.codec_mut().set_max_frame_length(max_frame);
    Ok(PeerHello { node, addr: addr.to_owned(), max_frame, received: theirs })
}

/// The accepting side, on a connection just accepted: returns the dialer, proved, and sets the
/// connection's frame limit; on failure the dialer has been told why. `received` says how much of
/// a node's stream this node has.
pub(crate) async fn accept(
    framed: &mut FramedTcp,
    me: &Me,
    received: impl FnOnce(NodeId) -> Option<(u64, u64)>,
) -> Result<PeerHello, Error> {
    framed.codec_mut().set_max_frame_length(HANDSHAKE_MAX_FRAME);
    let buf = next(framed).await?;
    let (node, addr, max_frame, dn) = match wire::decode(&buf) {
        Ok(Frame::Hello { node, addr, max_frame, nonce }) => {
            if nonce.len() != NONCE
                || addr.len() > MAX_ADDR
                || max_frame < HANDSHAKE_MAX_FRAME as u64
            {
                return Err(refuse(framed, "malformed hello".into(), Error::codec).await);
            }
            if node == me.node {
                return Err(refuse(framed, format!("node {node} is this node"), Error::codec).await);
            }
            (node, addr, max_frame, nonce)
        }
        Ok(_) => {
            return Err(refuse(framed, "the first frame is not a hello".into(), Error::codec).await)
        }
        Err(e) => return Err(refuse(framed, e.to_string(), Error::codec).await),
    };
    let an = nonce()?;
    let b = Binding { dialer: node, acceptor: me.node, dialer_nonce: &dn, acceptor_nonce: &an };
    let proof = me.secret.proof(ACCEPTOR, &b);
    let challenge = Frame::Challenge {
        node: me.node,
        max_frame: me.max_frame as u64,
        nonce: an.clone(),
        proof,
    };
    framed.send(wire::encode(&challenge)).await?;
    let buf = next(framed).await?;
    let theirs = match wire::decode(&buf) {
        Ok(Frame::Proof { proof, received }) => {
            if !me.secret.verify(&proof, DIALER, &b) {
                let reason = "wrong cluster secret (cookie)".to_owned();
                return Err(refuse(framed, reason, |r| {
                    Error::auth(format!("node {node} at {addr}: {r}"))
                })
                .await);
            }
            received
        }
        // The dialer found this node's proof wrong: it says so, and goes.
        Ok(Frame::Refused { reason }) => {
            return Err(Error::auth(format!("node {node} at {addr} refused: {reason}")))
        }
        Ok(_) => return Err(refuse(framed, "expected a proof".into(), Error::codec).await),
        Err(e) => return Err(refuse(framed, e.to_string(), Error::codec).await),
    };
    framed.send(wire::encode(&Frame::Welcome { received: received(node) })).await?;
    let max_frame = limit(max_frame, me.max_frame);
    framed.codec_mut().set_max_frame_length(max_frame);
    Ok(PeerHello { node, addr, max_frame, received: theirs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_bound_to_the_secret_the_role_the_ids_and_the_nonces() {
        let s = Secret::new(b"k");
        let b = |acceptor, dn: &'static [u8], an: &'static [u8]| Binding {
            dialer: 1,
            acceptor,
            dialer_nonce: dn,
            acceptor_nonce: an,
        };
        static D: [u8; 32] = [1; 32];
        static A: [u8; 32] = [2; 32];
        let p = s.proof(DIALER, &b(2, &D, &A));
        assert!(s.verify(&p, DIALER, &b(2, &D, &A)));
        assert!(!Secret::new(b"K").verify(&p, DIALER, &b(2, &D, &A)), "another secret");
        assert!(!Secret::new(b"").verify(&p, DIALER, &b(2, &D, &A)), "no secret");
        assert!(!s.verify(&p, ACCEPTOR, &b(2, &D, &A)), "reflected as the other role");
        assert!(!s.verify(&p, DIALER, &b(3, &D, &A)), "another acceptor id");
        assert!(!s.verify(&p, DIALER, &b(2, &A, &D)), "other nonces");
        assert!(!s.verify(&p[..31], DIALER, &b(2, &D, &A)), "truncated");
        assert_eq!(format!("{s:?}"), "Secret(..)", "never printed");
    }

    mod properties {
        use futures::SinkExt;
        use proptest::prelude::*;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};
        use tokio_util::codec::{Framed, LengthDelimitedCodec};
        use tokio_util::either::Either;

        use super::super::*;

        fn me(node: NodeId) -> Me {
            Me {
                node,
                addr: "127.0.0.1:1".into(),
                max_frame: 1 << 20,
                secret: Secret::new(b"k"),
                tls: None,
                handshake_timeout: HANDSHAKE_TIMEOUT,
            }
        }

        /// Run `side` on one end of a loopback connection while `peer` writes `frames` (each
        /// length-prefixed) on the other, then reads until closed.
        fn against(frames: Vec<Vec<u8>>, dialing: bool) -> Result<PeerHello, Error> {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("addr").to_string();
                let (a, b) = tokio::join!(TcpStream::connect(&addr), listener.accept());
                let (ours, theirs) = if dialing {
                    (a.expect("connect"), b.expect("accept").0)
                } else {
                    (b.expect("accept").0, a.expect("connect"))
                };
                let peer = async move {
                    let mut f = Framed::new(theirs, LengthDelimitedCodec::new());
                    for frame in frames {
                        if f.send(bytes::Bytes::from(frame)).await.is_err() {
                            break;
                        }
                    }
                    // Nothing more from this side: the other sees the end after the frames.
                    let mut s = f.into_inner();
                    let _ = s.shutdown().await;
                    let mut sink = [0u8; 1024];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                };
                let side = async move {
                    let mut framed = Framed::new(Either::Left(ours), LengthDelimitedCodec::new());
                    let r = if dialing {
                        dial(&mut framed, &addr, &me(1), |_| None).await
                    } else {
                        accept(&mut framed, &me(1), |_| None).await
                    };
                    drop(framed);
                    r
                };
                let (r, ()) = tokio::time::timeout(Duration::from_secs(10), async {
                    tokio::join!(side, peer)
                })
                .await
                .expect("the handshake ends when the other side stops");
                r
            })
        }

        /// A hello as a stranger would send it, then `rest`.
        fn after_hello(rest: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
            let hello = Frame::Hello {
                node: 9,
                addr: "127.0.0.1:2".into(),
                max_frame: 1 << 20,
                nonce: vec![3; NONCE],
            };
            let mut frames = vec![wire::encode(&hello).to_vec()];
            frames.extend(rest);
            frames
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever a dialer sends, with or without a well-formed hello first, the accepting
            /// side never lets it in without the proof (and never panics).
            #[test]
            fn no_bytes_get_a_dialer_in_without_the_secret(
                frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
                hello_first in any::<bool>(),
            ) {
                let frames = if hello_first { after_hello(frames) } else { frames };
                prop_assert!(against(frames, false).is_err());
            }

            /// A well-formed proof of the wrong bytes (any length) is refused.
            #[test]
            fn a_proof_of_any_other_bytes_is_refused(proof in proptest::collection::vec(any::<u8>(), 0..64)) {
                let frame = wire::encode(&Frame::Proof { proof, received: None }).to_vec();
                prop_assert!(matches!(against(after_hello(vec![frame]), false), Err(Error::Auth(_))));
            }

            /// A well-formed challenge with a proof of the wrong bytes is refused by the dialer.
            #[test]
            fn a_challenge_with_any_other_proof_is_refused(
                proof in proptest::collection::vec(any::<u8>(), 0..64),
                nonce in proptest::collection::vec(any::<u8>(), NONCE..=NONCE),
            ) {
                let frame = wire::encode(&Frame::Challenge { node: 9, max_frame: 1 << 20, nonce, proof }).to_vec();
                prop_assert!(matches!(against(vec![frame], true), Err(Error::Auth(_))));
            }

            /// Whatever an acceptor answers, the dialing side never takes it for a member of its
            /// cluster without the proof.
            #[test]
            fn no_bytes_pass_for_an_acceptor_without_the_secret(
                frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
            ) {
                prop_assert!(against(frames, true).is_err());
            }
        }
    }
}
