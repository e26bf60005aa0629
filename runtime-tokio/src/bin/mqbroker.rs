//! `mqbroker`: Keel's broker, started like RocketMQ's.
//!
//! `mqbroker [-c broker.conf] [-n namesrvAddr] [-p]`. SIGTERM is a clean shutdown: the store
//! flushes, writes its checkpoint and removes the abort marker. After `kill -9` the next
//! start runs abnormal recovery.

use std::path::PathBuf;

use clap::Parser;
use keel_runtime_tokio::config::{BrokerSettings, Properties};
use keel_runtime_tokio::server::BrokerServer;

/// Keel's broker.
#[derive(Debug, Parser)]
#[command(name = "mqbroker", version, about = "Keel broker (RocketMQ-compatible)")]
struct Args {
    /// Broker config file (Java properties).
    #[arg(short = 'c', long = "configFile")]
    config_file: Option<PathBuf>,
    /// Name server addresses, `;`-separated (overrides namesrvAddr).
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv_addr: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config: bool,
    /// Serve RocketMQ 5.x's gRPC clients too, on grpcServerPort (8081), as RocketMQ's
    /// proxy does in local mode (`enableProxy=true`).
    #[arg(long = "enable-proxy")]
    enable_proxy: bool,
}

fn main() -> std::process::ExitCode {
    keel_runtime_tokio::startup::exit_code("mqbroker", run())
}

#[tokio::main(flavor = "current_thread")]
async fn run() -> anyhow::Result<()> {
    keel_runtime_tokio::init_logging("info");
    let args = Args::parse();
    let props = Properties::load_or_default(args.config_file.as_deref())?;
    let mut settings = BrokerSettings::from_properties(&props)?;
    if let Some(addr) = args.namesrv_addr {
        settings.namesrv_addr = addr;
    }
    if args.enable_proxy && settings.grpc_port.is_none() {
        settings.grpc_port = Some(props.get("grpcServerPort")?.unwrap_or(8081));
    }
    if args.print_config {
        print!("{}", settings.to_properties());
        return Ok(());
    }
    let server = BrokerServer::open(&settings).await?;
    let endpoints = server
        .metrics_addr()
        .map(|addr| format!("; metrics at http://{addr}/metrics"))
        .unwrap_or_default()
        + &server.dashboard_addr().map(|addr| format!("; dashboard at http://{addr}/")).unwrap_or_default()
        + &server.grpc_addr().map(|addr| format!("; gRPC at {addr}")).unwrap_or_default();
    println!(
        "The broker[{}, {}] boot success. serializeType=JSON and name server is {}{endpoints}",
        settings.broker_name,
        server.advertised(),
        if settings.namesrv_addr.is_empty() { "(none)" } else { &settings.namesrv_addr }
    );
    server.run(keel_runtime_tokio::shutdown_signal()).await
}
