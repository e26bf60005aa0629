//! `mqcontroller`: Keel's standalone controller (RocketMQ 5's controller mode), started like
//! RocketMQ's.
//!
//! `mqcontroller [-c controller.properties] [-p]`: `-c` reads settings (`listenPort`,
//! `scanNotActiveBrokerInterval`, `enableElectUncleanMaster`, and for a group
//! `controllerDLegerGroup`, `controllerDLegerPeers`, `controllerDLegerSelfId`,
//! `controllerStorePath`), `-p` prints the effective settings and exits. SIGTERM or Ctrl-C
//! stops it. A group member keeps its Raft log under `controllerStorePath` and goes on from
//! it after a restart; a lone controller keeps its state in memory.

use std::path::PathBuf;

use clap::Parser;
use keel_runtime_tokio::config::{ControllerSettings, Properties};
use keel_runtime_tokio::controller_server::ControllerServer;

/// Keel's controller.
#[derive(Debug, Parser)]
#[command(name = "mqcontroller", version, about = "Keel controller (RocketMQ-compatible controller mode)")]
struct Args {
    /// Controller config file (Java properties).
    #[arg(short = 'c', long = "configFile")]
    config_file: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config: bool,
}

fn main() -> std::process::ExitCode {
    keel_runtime_tokio::startup::exit_code("mqcontroller", run())
}

#[tokio::main(flavor = "current_thread")]
async fn run() -> anyhow::Result<()> {
    keel_runtime_tokio::init_logging("info");
    let args = Args::parse();
    let props = Properties::load_or_default(args.config_file.as_deref())?;
    let settings = ControllerSettings::from_properties(&props)?;
    if args.print_config {
        print!("{}", settings.to_properties());
        return Ok(());
    }
    let server = ControllerServer::bind(&settings).await?;
    println!("The Controller boot success. address={}", server.local_addr()?);
    server.run(keel_runtime_tokio::shutdown_signal()).await
}
