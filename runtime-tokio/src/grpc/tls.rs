//! TLS beside plaintext on the one gRPC port, as RocketMQ's proxy serves both ("permissive"
//! mode): the first byte of a connection tells them apart (0x16 opens a TLS handshake; an
//! HTTP/2 client's preface starts with `P`). Java and Go SDKs default to TLS and do not check
//! the certificate; Python and Node default to plaintext.
//!
//! The certificate is `tlsCertPath` and `tlsKeyPath` (PEM) when configured; otherwise, with
//! `tlsTestModeEnable` (the proxy's default, true), a self-signed one made at start for
//! localhost and the broker's address, its PEM written beside the store for clients that
//! want to check it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::GrpcTls;

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a new connection has to show its first byte and finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaking at once; past it new ones wait in the listener's backlog.
pub const MAX_HANDSHAKES: usize = 256;
/// Where a self-signed certificate's PEM is written, under the store's root.
pub const SELF_SIGNED_PEM: &str = "tls/grpc-self-signed.pem";

/// The acceptor `tls` asks for (`None`: plaintext only), and the PEM file of a self-signed
/// certificate if one was made. A configured certificate that cannot be read is an error
/// naming the file.
pub fn acceptor(
    tls: &GrpcTls,
    broker_ip: IpAddr,
    root: &Path,
) -> anyhow::Result<Option<(TlsAcceptor, Option<PathBuf>)>> {
    let (certs, key, written) = match tls {
        GrpcTls::Off => return Ok(None),
        GrpcTls::Files { cert, key } => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| anyhow::anyhow!("tlsCertPath {}: {e}", cert.display()))?;
            if certs.is_empty() {
                anyhow::bail!("tlsCertPath {}: no certificate in it", cert.display());
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("tlsKeyPath {}: {e}", key.display()))?;
            (certs, key, None)
        }
        GrpcTls::SelfSigned => {
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            if !broker_ip.is_unspecified() {
                names.push(broker_ip.to_string());
            }
            let made =
                rcgen::generate_simple_self_signed(names).context("making a self-signed certificate")?;
            let path = root.join(SELF_SIGNED_PEM);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&path, made.cert.pem()).with_context(|| format!("writing {}", path.display()))?;
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
            (vec![made.cert.der().clone()], key, Some(path))
        }
    };
    // ring, not aws-lc-rs: no C toolchain beyond cc to build, and rustls 0.23.48 deprecates
    // ring's provider only for lacking post-quantum key exchange, which no SDK offers yet.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    // gRPC clients insist on HTTP/2 by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some((TlsAcceptor::from(Arc::new(config)), written)))
}

/// A gRPC connection, in plaintext or TLS.
#[derive(Debug)]
pub enum GrpcStream {
    /// HTTP/2 in plaintext.
    Plain(TcpStream),
    /// HTTP/2 over TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl GrpcStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl Connected for GrpcStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo { local_addr: self.tcp().local_addr().ok(), remote_addr: self.tcp().peer_addr().ok() }
    }
}

impl AsyncRead for GrpcStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut *self {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut *self {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut *self {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut *self {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut *self {
            Self::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
        }
    }
}

/// A new connection on the gRPC port as plaintext or TLS (when `tls` is set), within
/// [`HANDSHAKE_TIMEOUT`]; `None` (logged) if it closed first, failed its handshake or took
/// too long.
pub async fn open_within(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&TlsAcceptor>,
) -> Option<GrpcStream> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, open(stream, tls)).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "gRPC connection refused: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "gRPC connection closed: no handshake within 10 s");
            None
        }
    }
}

/// A new connection as plaintext or TLS, by its first byte; `None` if it closed first.
async fn open(stream: TcpStream, tls: Option<&TlsAcceptor>) -> std::io::Result<Option<GrpcStream>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    match tls {
        Some(acceptor) if first[0] == TLS_HANDSHAKE => {
            Ok(Some(GrpcStream::Tls(Box::new(acceptor.accept(stream).await?))))
        }
        _ => Ok(Some(GrpcStream::Plain(stream))),
    }
}
