//! The transport: what carries a connection's bytes and cuts them into frames. TCP, with TLS as
//! an optional layer between the socket and the handshake ([`crate::link::handshake`]) of every
//! connection, and length-delimited framing over either ([`FramedTcp`]), whose codec checks a
//! frame's size from its length prefix before anything is allocated.
//!
//! TLS uses rustls (through tokio-rustls). Mutual: the accepting node asks for the
//! dialer's certificate and both check the other's against the cluster's certificate authority;
//! the dialer also checks that the certificate names the address it dialed (an IP address or a
//! DNS name among its subject alternative names). The cookie handshake then runs inside it.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::either::Either;

use crate::error::Cause;
use crate::Error;

/// A connection's byte stream: plain TCP, or TLS over it.
pub(crate) type Stream = Either<TcpStream, tokio_rustls::TlsStream<TcpStream>>;

/// A connection, framed: length-delimited frames over TCP, or over TLS over TCP.
pub(crate) type FramedTcp = Framed<Stream, LengthDelimitedCodec>;

/// Frame `stream`, refusing frames over `max_frame` bytes.
pub(crate) fn framed(stream: Stream, max_frame: usize) -> FramedTcp {
    Framed::new(stream, LengthDelimitedCodec::builder().max_frame_length(max_frame).new_codec())
}

/// TLS for a node's connections (see [`NodeBuilder::tls`](crate::NodeBuilder::tls)): its
/// certificate and key, and the certificate authority that signs every node's certificate.
///
/// ```no_run
/// # async fn run() -> Result<(), dchan::Error> {
/// let tls = dchan::TlsConfig::from_pem_files("node.pem", "node.key", "ca.pem")?;
/// let node = dchan::Node::builder()
///     .listen("10.0.0.5:7001")
///     .tls(tls)
///     .join(["10.0.0.4:7001"])
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig { .. }")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::config(Cause::new(format!("TLS: {what}: {e}"), e))
}

impl TlsConfig {
    /// Mutual TLS from PEM: this node's certificate chain (its own first), its private key, and
    /// the certificate authority (one or more certificates) that signed every node's.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a PEM does not parse, holds no certificate or key, or the key does
    /// not fit the certificate.
    pub fn from_pem(cert_chain: &[u8], key: &[u8], ca: &[u8]) -> Result<TlsConfig, Error> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error("the certificate chain", e))?;
        if certs.is_empty() {
            return Err(Error::config("TLS: the certificate chain: no certificate in it"));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls_error("the key", e))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| tls_error("the certificate authority", e))?;
            roots.add(cert).map_err(|e| tls_error("the certificate authority", e))?;
        }
        if roots.is_empty() {
            return Err(Error::config("TLS: the certificate authority: no certificate in it"));
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| tls_error("the certificate authority", e))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| tls_error("the certificate and key", e))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls_error("the certificate and key", e))?;
        Ok(TlsConfig::new(Arc::new(server), Arc::new(client)))
    }

    /// Like [`from_pem`](TlsConfig::from_pem), reading the three files.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a file cannot be read, or as [`from_pem`](TlsConfig::from_pem).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        ca: impl AsRef<Path>,
    ) -> Result<TlsConfig, Error> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| tls_error(&format!("reading {}", p.display()), e))
        };
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?, &read(ca.as_ref())?)
    }

    /// From rustls configurations made elsewhere: `server` for connections this node accepts,
    /// `client` for those it dials. For mutual TLS, `server` must ask for client certificates.
    pub fn new(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> TlsConfig {
        TlsConfig { server, client }
    }
}

/// The host part of `addr` (`host:port`, `[v6]:port`), as TLS checks it against a certificate.
fn server_name(addr: &str) -> Result<ServerName<'static>, Error> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| {
        Error::config(Cause::new(
            format!("TLS: {addr} is not a name a certificate can hold: {e}"),
            e,
        ))
    })
}

/// A failed TLS handshake: refused credentials (a certificate, or its absence) are
/// [`Error::Auth`]; a connection that broke meanwhile is [`Error::Io`] (worth trying again).
fn failed(e: std::io::Error, what: String) -> Error {
    let refused = e.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if refused {
        Error::auth(Cause::new(format!("{what}: {e}"), e))
    } else {
        Error::Io(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Start TLS (if configured) on a connection this node dialed to `addr`.
pub(crate) async fn connect(
    tls: Option<&TlsConfig>,
    stream: TcpStream,
    addr: &str,
) -> Result<Stream, Error> {
    let Some(tls) = tls else { return Ok(Either::Left(stream)) };
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    let tls = connector
        .connect(server_name(addr)?, stream)
        .await
        .map_err(|e| failed(e, format!("TLS with {addr} failed")))?;
    Ok(Either::Right(tokio_rustls::TlsStream::Client(tls)))
}

/// Start TLS (if configured) on a connection this node accepted.
pub(crate) async fn accept(tls: Option<&TlsConfig>, stream: TcpStream) -> Result<Stream, Error> {
    let Some(tls) = tls else { return Ok(Either::Left(stream)) };
    let from = stream.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string());
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let tls =
        acceptor.accept(stream).await.map_err(|e| failed(e, format!("TLS from {from} failed")))?;
    Ok(Either::Right(tokio_rustls::TlsStream::Server(tls)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_what_the_certificate_must_name() {
        assert!(matches!(server_name("127.0.0.1:7001"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]:7001"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("node-1.internal:7001"), Ok(ServerName::DnsName(_))));
    }

    #[test]
    fn pem_that_is_not_a_certificate_is_a_clear_error() {
        let e = TlsConfig::from_pem(b"nope", b"nope", b"nope").unwrap_err();
        assert!(e.to_string().contains("TLS: the certificate chain"), "{e}");
    }
}
