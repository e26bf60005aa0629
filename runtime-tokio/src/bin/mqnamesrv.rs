//! `mqnamesrv`: Keel's name server, started like RocketMQ's.
//!
//! `mqnamesrv [-c namesrv.properties] [-p]`: `-c` reads settings, `-p` prints the effective
//! settings and exits. SIGTERM or Ctrl-C stops it.

use std::path::PathBuf;

use clap::Parser;
use keel_runtime_tokio::config::{NamesrvSettings, Properties};
use keel_runtime_tokio::server::NamesrvServer;

/// Keel's name server.
#[derive(Debug, Parser)]
#[command(name = "mqnamesrv", version, about = "Keel name server (RocketMQ-compatible)")]
struct Args {
    /// Name server config file (Java properties).
    #[arg(short = 'c', long = "configFile")]
    config_file: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config: bool,
}

fn main() -> std::process::ExitCode {
    keel_runtime_tokio::startup::exit_code("mqnamesrv", run())
}

#[tokio::main(flavor = "current_thread")]
async fn run() -> anyhow::Result<()> {
    keel_runtime_tokio::init_logging("info");
    let args = Args::parse();
    let props = Properties::load_or_default(args.config_file.as_deref())?;
    let settings = NamesrvSettings::from_properties(&props)?;
    if args.print_config {
        print!("{}", settings.to_properties());
        return Ok(());
    }
    let server = NamesrvServer::bind(&settings).await?;
    // RocketMQ's startup line, so scripts waiting for it keep working; plus the address.
    println!("The Name Server boot success. serializeType=JSON, address={}", server.local_addr()?);
    server.run(keel_runtime_tokio::shutdown_signal()).await
}
