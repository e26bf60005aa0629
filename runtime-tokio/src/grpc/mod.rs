//! The gRPC endpoint RocketMQ 5.x's SDKs speak (`apache.rocketmq.v2.MessagingService`),
//! served in the broker process as RocketMQ's proxy does in local mode (`enableProxy`, on
//! `grpcServerPort`). Each client gets a session with its own remoting connection to this
//! broker; the core translates between the two protocols.

pub mod messaging;
pub mod session;

/// The generated tonic service and client.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)] // generated code
pub mod service {
    tonic::include_proto!("apache.rocketmq.v2");
}

use tokio::net::TcpListener;

pub use messaging::Messaging;

/// Serve `service` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, service: Messaging) {
    let server = service::messaging_service_server::MessagingServiceServer::new(service);
    #[cfg(not(madsim))]
    let served = {
        use tonic::codegen::tokio_stream::StreamExt;
        // Replies go out at once: with Nagle's algorithm on, a small reply waits for the
        // client's delayed ACK (tens of milliseconds).
        let incoming =
            tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
                stream.inspect(|s| {
                    let _ = s.set_nodelay(true);
                })
            });
        tonic::transport::Server::builder().add_service(server).serve_with_incoming(incoming).await
    };
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
