//! The read-only dashboard (`dashboardEnable=true`): one HTML page and uPlot (MIT, vendored
//! under `assets/dashboard/` with its licence), all compiled into the binary, so nothing is
//! fetched from elsewhere. The page polls `/api/overview`: this broker's topics, its groups
//! with their lag, its throughput over the last ten minutes, and the clusters its name
//! server knows.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use keel_core::broker::overview::Overview;
use keel_core::broker::Broker;
use keel_core::protocol::json::{self, KeyStyle};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{look, plain, with_type};
use crate::driver::Ask;

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
const UPLOT_JS: &str = include_str!("../../assets/dashboard/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/dashboard/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../assets/dashboard/LICENSE.uPlot");
/// How long the page waits on a name server for the clusters.
const NAMESRV_TIMEOUT: Duration = Duration::from_secs(2);

/// One broker of a cluster, as the name server lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterMember {
    cluster: String,
    broker_name: String,
    broker_id: i64,
    addr: String,
}

/// What `/api/overview` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DashboardData {
    broker: Overview,
    clusters: Vec<ClusterMember>,
    /// Why the clusters are missing, if they are.
    namesrv_error: Option<String>,
}

/// Answer a request for `path`.
pub(super) async fn answer(
    path: &str,
    looks: &mpsc::Sender<Ask<Broker>>,
    namesrvs: &[SocketAddr],
) -> Response<Full<Bytes>> {
    match path {
        "/" | "/index.html" => {
            with_type("text/html; charset=utf-8", Bytes::from_static(INDEX_HTML.as_bytes()))
        }
        "/assets/uPlot.iife.min.js" => {
            with_type("text/javascript; charset=utf-8", Bytes::from_static(UPLOT_JS.as_bytes()))
        }
        "/assets/uPlot.min.css" => {
            with_type("text/css; charset=utf-8", Bytes::from_static(UPLOT_CSS.as_bytes()))
        }
        "/assets/LICENSE.uPlot" => {
            with_type("text/plain; charset=utf-8", Bytes::from_static(UPLOT_LICENSE.as_bytes()))
        }
        "/api/overview" => {
            let broker = match look(looks, |broker, now| broker.overview(now)).await {
                Ok(overview) => overview,
                Err(busy) => return busy,
            };
            let (clusters, namesrv_error) = match clusters(namesrvs).await {
                Ok(clusters) => (clusters, None),
                Err(error) => (Vec::new(), Some(format!("{error:#}"))),
            };
            match json::to_vec(&DashboardData { broker, clusters, namesrv_error }, KeyStyle::Standard) {
                Ok(body) => with_type("application/json", Bytes::from(body)),
                Err(error) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot encode: {error}\n")),
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Every broker the first name server that answers knows, by cluster.
async fn clusters(namesrvs: &[SocketAddr]) -> anyhow::Result<Vec<ClusterMember>> {
    let mut last_error = anyhow::anyhow!("the broker has no name server (namesrvAddr)");
    for addr in namesrvs {
        let admin = crate::admin::AdminClient::new(&addr.to_string())?;
        let info = match tokio::time::timeout(NAMESRV_TIMEOUT, admin.cluster_info()).await {
            Ok(Ok(info)) => info,
            Ok(Err(error)) => {
                last_error = error;
                continue;
            }
            Err(_) => {
                last_error =
                    anyhow::anyhow!("the name server {addr} did not answer within {NAMESRV_TIMEOUT:?}");
                continue;
            }
        };
        let mut members = Vec::new();
        for (cluster, names) in &info.cluster_addr_table {
            for name in names {
                let Some(data) = info.broker_addr_table.get(name) else { continue };
                members.extend(data.broker_addrs.iter().map(|(id, addr)| ClusterMember {
                    cluster: cluster.clone(),
                    broker_name: name.clone(),
                    broker_id: *id,
                    addr: addr.clone(),
                }));
            }
        }
        return Ok(members);
    }
    Err(last_error)
}
