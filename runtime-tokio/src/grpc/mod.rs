//! The gRPC endpoint RocketMQ 5.x's SDKs speak (`apache.rocketmq.v2.MessagingService`),
//! served in the broker process as RocketMQ's proxy does in local mode (`enableProxy`, on
//! `grpcServerPort`). Each client gets a session with its own remoting connection to this
//! broker; the core translates between the two protocols.

#[cfg(not(madsim))]
pub mod connection;
#[cfg(not(madsim))]
pub mod corked;
#[cfg(not(madsim))]
pub mod direct;
pub mod messaging;
pub mod session;
#[cfg(not(madsim))]
pub mod tls;

/// The generated tonic service and client.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)] // generated code
pub mod service {
    tonic::include_proto!("apache.rocketmq.v2");
}

use tokio::net::TcpListener;

pub use messaging::Messaging;

/// The gRPC port's TLS acceptor (under the simulator, nothing: it serves plaintext).
#[cfg(not(madsim))]
pub type Tls = tokio_rustls::TlsAcceptor;
/// The gRPC port's TLS acceptor (under the simulator, nothing: it serves plaintext).
#[cfg(madsim)]
pub type Tls = ();

/// The TLS the gRPC port serves beside plaintext, as `tls` asks: `None` for plaintext only
/// (always under the simulator). A self-signed certificate's PEM is written under `root`.
pub fn tls_for(
    tls: &crate::config::GrpcTls,
    broker_ip: std::net::IpAddr,
    root: &std::path::Path,
) -> anyhow::Result<Option<Tls>> {
    #[cfg(not(madsim))]
    {
        let Some((acceptor, written)) = tls::acceptor(tls, broker_ip, root)? else {
            tracing::info!("gRPC endpoint: plaintext only (tlsTestModeEnable=false, no tlsCertPath)");
            return Ok(None);
        };
        match written {
            Some(pem) => tracing::info!(
                certificate = %pem.display(),
                "gRPC endpoint: TLS with a self-signed certificate beside plaintext (tlsTestModeEnable)"
            ),
            None => tracing::info!("gRPC endpoint: TLS with the configured certificate beside plaintext"),
        }
        Ok(Some(acceptor))
    }
    #[cfg(madsim)]
    {
        let _ = (tls, broker_ip, root);
        Ok(None)
    }
}

/// Serve `service` on `listener` until the task is dropped; with `tls`, TLS beside
/// plaintext on the same port (not under the simulator, where it is plaintext).
pub async fn serve(listener: TcpListener, service: Messaging, tls: Option<Tls>) {
    let server = service::messaging_service_server::MessagingServiceServer::new(service.clone());
    #[cfg(not(madsim))]
    serve_connections(listener, tls, server, service).await;
    // Under the simulator, tonic's transport (madsim's, which passes messages as values).
    #[cfg(madsim)]
    {
        let _ = tls;
        let served = match listener.local_addr() {
            Ok(addr) => {
                drop(listener);
                tonic::transport::Server::builder().add_service(server).serve(addr).await
            }
            Err(error) => {
                tracing::error!(%error, "gRPC endpoint: no local address");
                return;
            }
        };
        if let Err(error) = served {
            tracing::error!(%error, "gRPC endpoint stopped");
        }
    }
}

/// Accept connections on `listener` and serve each with h2 (`connection`), without tonic's
/// transport: it would route every call by path (one service here) through a stack of
/// layers this endpoint does not use, at a cost per call that showed in the broker's
/// profile. A connection is told apart as plaintext or TLS (when `tls` is set) and
/// handshaken in its own task, so a slow client holds up no other; each call to the tonic
/// server carries its connection's addresses, as tonic's transport gives them
/// (`Request::remote_addr`). Handshakes and connections end with this task (their set
/// aborts them when dropped).
#[cfg(not(madsim))]
async fn serve_connections(
    listener: TcpListener,
    tls: Option<Tls>,
    server: service::messaging_service_server::MessagingServiceServer<Messaging>,
    messaging: Messaging,
) {
    use std::sync::Arc;
    use tonic::transport::server::Connected as _;
    let handshakes = Arc::new(tokio::sync::Semaphore::new(tls::MAX_HANDSHAKES));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: the listener is fine, try again shortly.
                tracing::warn!(%error, "gRPC endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Replies go out at once: with Nagle's algorithm on, a small reply waits for the
        // client's delayed ACK (tens of milliseconds).
        let _ = stream.set_nodelay(true);
        let (server, messaging, tls) = (server.clone(), messaging.clone(), tls.clone());
        connections.spawn(async move {
            let opened = tls::open_within(stream, peer, tls.as_ref()).await;
            drop(permit);
            let Some(stream) = opened else { return };
            let info = stream.connect_info();
            let (io, cork) = corked::cork(stream);
            let services = connection::Services { messaging, server, info };
            if let Err(error) = cork.drive(connection::serve(io, services)).await {
                tracing::debug!(%error, "gRPC connection ended");
            }
        });
    }
}
