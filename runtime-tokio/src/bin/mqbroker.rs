//! `mqbroker`: Keel's broker, started like RocketMQ's.
//!
//! `mqbroker [-c broker.conf] [-n namesrvAddr] [-p]`. SIGTERM is a clean shutdown: the store
//! flushes, writes its checkpoint and removes the abort marker. After `kill -9` the next
//! start runs abnormal recovery.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use keel_core::broker::{Broker, BrokerConfig};
use keel_core::store::{FlushMode, Store, StoreConfig};
use keel_runtime_tokio::config::{BrokerSettings, Properties};
use keel_runtime_tokio::disk::{Disk, FileDisk};
use keel_runtime_tokio::driver::{self, Clock, DriverConfig};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let props = match &args.config_file {
        Some(path) => Properties::load(path)?,
        None => Properties::default(),
    };
    let mut settings = BrokerSettings::from_properties(&props)?;
    if let Some(addr) = args.namesrv_addr {
        settings.namesrv_addr = addr;
    }
    if args.print_config {
        print!("{}", settings.to_properties());
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", settings.listen_port)).await?;
    let port = listener.local_addr()?.port();
    let advertised = std::net::SocketAddr::new(settings.broker_ip, port);

    let mut store_config = StoreConfig::new(advertised);
    store_config.segment_size = settings.commitlog_segment_size;
    store_config.queue_file_entries = (settings.consume_queue_file_size / 20).max(1);
    store_config.max_message_size = settings.max_message_size;
    store_config.instance = std::process::id().to_string();
    store_config.flush_mode = if settings.flush_disk_type == "SYNC_FLUSH" {
        FlushMode::Sync
    } else {
        FlushMode::Async { interval_ms: settings.flush_interval_ms.max(1) }
    };
    let mut config = BrokerConfig::new(advertised);
    config.cluster_name.clone_from(&settings.cluster_name);
    config.broker_name.clone_from(&settings.broker_name);
    config.broker_id = settings.broker_id;
    config.namesrv_addrs = settings.namesrv_addrs()?;
    config.auto_create_topic = settings.auto_create_topic;
    config.default_topic_queue_nums = settings.default_topic_queue_nums;
    config.store = store_config.clone();

    let (completions_tx, completions) = tokio::sync::mpsc::unbounded_channel();
    let disk = Arc::new(FileDisk::open(&settings.store_path_root_dir, completions_tx)?);
    let clock = Clock::start();
    let (store, report) = Store::recover(store_config, &*disk, clock.now())?;
    tracing::info!(kind = ?report.kind, end = report.recovered_end, redispatched = report.redispatched, "store recovered");
    let mut broker = Broker::new(config, store, Box::new(Arc::clone(&disk)), clock.now());
    println!(
        "The broker[{}, {advertised}] boot success. serializeType=JSON and name server is {}",
        settings.broker_name,
        if settings.namesrv_addr.is_empty() { "(none)" } else { &settings.namesrv_addr }
    );
    let disk: Arc<dyn Disk> = disk;
    driver::run(
        &mut broker,
        listener,
        Some((disk, completions)),
        DriverConfig { clock, ..DriverConfig::default() },
        keel_runtime_tokio::shutdown_signal(),
        |broker, _| {
            tracing::info!("shutting down: flushing the store");
            broker.begin_shutdown();
        },
        Broker::is_stopped,
    )
    .await?;
    tracing::info!("broker stopped cleanly");
    Ok(())
}
