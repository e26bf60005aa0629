//! The gRPC endpoint RocketMQ 5.x's SDKs speak (`apache.rocketmq.v2.MessagingService`),
//! served in the broker process as RocketMQ's proxy does in local mode (`enableProxy`, on
//! `grpcServerPort`). Each client gets a session with its own remoting connection to this
//! broker; the core translates between the two protocols.

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
    let server = service::messaging_service_server::MessagingServiceServer::new(service);
    #[cfg(not(madsim))]
    let served = {
        let incoming =
            tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(tls::incoming(listener, tls));
        tonic::transport::Server::builder().add_service(server).serve_with_incoming(incoming).await
    };
    #[cfg(madsim)]
    let _ = tls;
    #[cfg(madsim)]
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
