//! The broker's HTTP endpoints: `GET /metrics` in Prometheus' text format, as RocketMQ 5
//! serves it on `metricsPromExporterPort` with `metricsExporterType=PROM`; and, with
//! `dashboardEnable=true`, a read-only dashboard on `dashboardPort`.
//!
//! What a page shows is asked of the driver loop (a look between two inputs, so it sees one
//! consistent state). Connections are bounded, and a request the loop cannot take at once
//! is answered 503.

mod dashboard;
pub mod prometheus;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use keel_core::broker::Broker;
use keel_core::io::Now;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::driver::{Ask, LookRefused};

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// Looks waiting for the loop at once; beyond that a request gets 503.
pub const MAX_WAITING_LOOKS: usize = 8;
/// A request's headers must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener serves.
#[derive(Debug, Clone)]
pub enum Site {
    /// `/metrics`.
    Metrics,
    /// The dashboard; the name servers are asked for the clusters.
    Dashboard {
        /// The broker's `namesrvAddr`.
        namesrvs: Vec<SocketAddr>,
    },
}

/// Serve `site` on `listener`, asking the loop behind `looks` for what to show.
pub async fn serve(listener: TcpListener, looks: mpsc::Sender<Ask<Broker>>, site: Site) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let site = Arc::new(site);
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "HTTP endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let looks = looks.clone();
        let site = Arc::clone(&site);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (looks, site) = (looks.clone(), Arc::clone(&site));
                async move { Ok::<_, Infallible>(answer(&request, &looks, &site).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "HTTP endpoint: connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Answer one request.
async fn answer(
    request: &Request<Incoming>,
    looks: &mpsc::Sender<Ask<Broker>>,
    site: &Site,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only\n");
    }
    let path = request.uri().path();
    match site {
        Site::Metrics if path == "/metrics" => {
            let families = match look(looks, |broker, now| broker.metrics(now)).await {
                Ok(families) => families,
                Err(busy) => return busy,
            };
            match prometheus::render(families) {
                Ok(text) => with_type(prometheus::CONTENT_TYPE, Bytes::from(text)),
                Err(error) => {
                    plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot render the metrics: {error}\n"))
                }
            }
        }
        Site::Metrics => plain(StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n"),
        Site::Dashboard { namesrvs } => dashboard::answer(path, looks, namesrvs).await,
    }
}

/// Ask the loop for `what` of the broker: its answer, or the 503 to send instead.
async fn look<T: Send + 'static>(
    looks: &mpsc::Sender<Ask<Broker>>,
    what: impl FnOnce(&Broker, Now) -> T + Send + 'static,
) -> Result<T, Response<Full<Bytes>>> {
    crate::driver::look(looks, what).await.map_err(|refused| match refused {
        LookRefused::Busy => plain(StatusCode::SERVICE_UNAVAILABLE, "busy: too many requests waiting\n"),
        LookRefused::Stopped => plain(StatusCode::SERVICE_UNAVAILABLE, "the broker is stopping\n"),
    })
}

/// A 200 with `body` of `content_type`.
fn with_type(content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

/// `status` with a plain-text explanation.
fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = with_type("text/plain; charset=utf-8", Bytes::from(text.to_owned()));
    *response.status_mut() = status;
    response
}
