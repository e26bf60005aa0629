//! `keel`: a name server and a broker in one process, with a local data directory: the
//! quickest way to a working RocketMQ endpoint.
//!
//! `keel [-c broker.conf] [--data-dir DIR] [--namesrv-port P] [--broker-port P]`. The broker
//! registers with the in-process name server over loopback exactly as a separate broker
//! would. SIGTERM or Ctrl-C stops both; the broker flushes its store first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use keel_core::protocol::body::ClusterInfo;
use keel_core::protocol::json;
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use keel_runtime_tokio::config::{BrokerSettings, NamesrvSettings, Properties};
use keel_runtime_tokio::remoting_client::RemotingClient;
use keel_runtime_tokio::server::{BrokerServer, NamesrvServer};
use tokio::sync::watch;

/// Keel: name server and broker in one process.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about = "Keel all-in-one: name server and broker (RocketMQ-compatible)")]
struct Args {
    /// Broker config file (Java properties); the flags below override it.
    #[arg(short = 'c', long = "configFile")]
    config_file: Option<PathBuf>,
    /// Where the store and metadata live (default `./keel-data`, or broker.conf's
    /// `storePathRootDir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Name server port (0: any free port).
    #[arg(long, default_value_t = 9876)]
    namesrv_port: u16,
    /// Broker port (default broker.conf's `listenPort`, else 10911; 0: any free port).
    #[arg(long)]
    broker_port: Option<u16>,
    /// Serve RocketMQ 5.x's gRPC clients too, on grpcServerPort (8081; 0: any free port),
    /// as RocketMQ's proxy does in local mode (`enableProxy=true`).
    #[arg(long = "enable-proxy")]
    enable_proxy: bool,
}

fn main() -> std::process::ExitCode {
    keel_runtime_tokio::startup::exit_code("keel", run())
}

#[tokio::main(flavor = "current_thread")]
async fn run() -> anyhow::Result<()> {
    keel_runtime_tokio::init_logging("info");
    let args = Args::parse();
    let props = Properties::load_or_default(args.config_file.as_deref())?;
    let mut broker_settings = BrokerSettings::from_properties(&props)?;
    if args.data_dir.is_some() || props.raw("storePathRootDir").is_none() {
        broker_settings.store_path_root_dir = args.data_dir.unwrap_or_else(|| PathBuf::from("keel-data"));
    }
    if let Some(port) = args.broker_port {
        broker_settings.listen_port = port;
    }
    if args.enable_proxy && broker_settings.grpc_port.is_none() {
        broker_settings.grpc_port = Some(props.get("grpcServerPort")?.unwrap_or(8081));
    }
    let namesrv_settings = NamesrvSettings {
        listen_port: args.namesrv_port,
        // The name server's KV config lives with the rest of this instance's data.
        kv_config_path: broker_settings.store_path_root_dir.join("namesrv").join("kvConfig.json"),
        ..NamesrvSettings::from_properties(&Properties::default())?
    };

    let namesrv = NamesrvServer::bind(&namesrv_settings).await?;
    let namesrv_addr = std::net::SocketAddr::from(([127, 0, 0, 1], namesrv.local_addr()?.port()));
    broker_settings.namesrv_addr = namesrv_addr.to_string();
    let broker = BrokerServer::open(&broker_settings).await?;
    let endpoints = broker
        .metrics_addr()
        .map(|addr| format!("; metrics at http://{addr}/metrics"))
        .unwrap_or_default()
        + &broker.dashboard_addr().map(|addr| format!("; dashboard at http://{addr}/")).unwrap_or_default()
        + &broker.grpc_addr().map(|addr| format!("; gRPC at {addr}")).unwrap_or_default();
    let up_line = format!(
        "Keel is up. Name server: {namesrv_addr} (set clients' namesrvAddr to it); broker {} at {}{endpoints}; data in {}",
        broker_settings.broker_name,
        broker.advertised(),
        broker_settings.store_path_root_dir.display()
    );
    // "Up" means a client can be routed: announce it once the name server lists the broker
    // (RocketMQ's broker also registers before it prints "boot success"), else a client
    // started on the announcement finds no route.
    let broker_name = broker_settings.broker_name.clone();
    let announce = async move {
        if !registered_within(namesrv_addr, &broker_name, REGISTRATION_WAIT).await {
            tracing::warn!(
                "the broker has not registered with the in-process name server after {REGISTRATION_WAIT:?}"
            );
        }
        println!("{up_line}");
    };

    // One signal stops both: the broker first flushes, the name server simply stops.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        keel_runtime_tokio::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let (namesrv_result, broker_result, ()) =
        tokio::join!(namesrv.run(stopped(stop_rx.clone())), broker.run(stopped(stop_rx)), announce);
    broker_result?;
    namesrv_result
}

/// How long the announcement waits for the broker's first registration.
const REGISTRATION_WAIT: Duration = Duration::from_secs(10);

/// Whether the name server at `namesrv` lists broker `broker_name` within `wait`, asking
/// every 20 ms.
async fn registered_within(namesrv: SocketAddr, broker_name: &str, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let mut client = None;
    while tokio::time::Instant::now() < deadline {
        if client.is_none() {
            client = RemotingClient::connect(namesrv).await.ok();
        }
        if let Some(connected) = &client {
            let request =
                RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO, 0, ExtFields::default());
            match connected.call(request).await {
                Ok(reply) => {
                    let listed = reply.response_code() == ResponseCode::SUCCESS
                        && json::from_slice::<ClusterInfo>(&reply.body)
                            .is_ok_and(|info| info.broker_addr_table.contains_key(broker_name));
                    if listed {
                        return true;
                    }
                }
                Err(_) => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
