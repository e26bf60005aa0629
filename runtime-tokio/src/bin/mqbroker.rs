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
    if args.print_config {
        print!("{}", settings.to_properties());
        return Ok(());
    }
    let server = BrokerServer::open(&settings).await?;
    println!(
        "The broker[{}, {}] boot success. serializeType=JSON and name server is {}",
        settings.broker_name,
        server.advertised(),
        if settings.namesrv_addr.is_empty() { "(none)" } else { &settings.namesrv_addr }
    );
    server.run(keel_runtime_tokio::shutdown_signal()).await
}
