//! A name server or a broker, bound and ready to run: what `mqnamesrv`, `mqbroker` and the
//! all-in-one `keel` command share. Binding is separate from running so a caller can print
//! where clients connect (and learn a port picked by the OS) before serving.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use keel_core::broker::{Broker, BrokerConfig};
use keel_core::io::{ConnKind, Machine};
use keel_core::namesrv::{NameServer, NameServerConfig};
use keel_core::store::{FlushMode, Store};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::clock::{Clock, SystemClock};
use crate::config::{BrokerSettings, NamesrvSettings};
use crate::disk::{Completion, Disk, DiskWithCompletions, FileDisk};
use crate::driver::{self, DriverConfig};
use crate::startup::{io_reason, listen_error};

/// A name server or a controller with its listener bound, and the disk holding its
/// controller's Raft log when it is a group member.
pub struct ListenerServer<M> {
    machine: M,
    listener: TcpListener,
    /// More ports serving the same machine (a controller's port among its peers).
    extra: Vec<TcpListener>,
    /// `controllerStorePath`, opened, with its completions.
    disk: Option<DiskWithCompletions>,
    /// What it is, for the log.
    what: &'static str,
}

/// A name server with its listener bound.
pub type NamesrvServer = ListenerServer<NameServer>;

impl<M: Machine> ListenerServer<M> {
    /// Bind `port` on all interfaces for `machine`.
    pub async fn bind_machine(machine: M, port: u16, what: &'static str) -> anyhow::Result<Self> {
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        let listener = TcpListener::bind(addr).await.map_err(|e| listen_error(addr, &e))?;
        Ok(Self { machine, listener, extra: Vec::new(), disk: None, what })
    }

    /// Carry out the machine's disk operations on `disk`.
    #[must_use]
    pub fn with_disk(mut self, disk: DiskWithCompletions) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Serve `port` too, unless it is the one already bound.
    pub async fn also_on(mut self, port: u16) -> anyhow::Result<Self> {
        if self.listener.local_addr()?.port() != port {
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            self.extra.push(TcpListener::bind(addr).await.map_err(|e| listen_error(addr, &e))?);
        }
        Ok(self)
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        driver::run(
            &mut self.machine,
            std::iter::once(self.listener).chain(self.extra).map(|l| (l, ConnKind::Remoting)).collect(),
            self.disk,
            DriverConfig::default(),
            shutdown,
            |_, _| {},
            |_| true,
            None,
        )
        .await?;
        tracing::info!(what = self.what, "stopped");
        Ok(())
    }
}

impl NamesrvServer {
    /// Bind `listenPort` on all interfaces.
    /// With an embedded controller in a group, its port among the peers is served too.
    pub async fn bind(settings: &NamesrvSettings) -> anyhow::Result<Self> {
        let mut machine = NameServer::new(NameServerConfig {
            scan_interval_ms: settings.scan_interval_ms,
            controller: settings.controller(),
            ..NameServerConfig::default()
        });
        let group = settings.group.as_ref().filter(|_| settings.enable_controller);
        let mut peer_port = None;
        let (kv_tx, kv_rx) = mpsc::unbounded_channel();
        let kv_dir =
            settings.kv_config_path.parent().map_or_else(|| ".".into(), std::path::Path::to_path_buf);
        let kv_name = settings
            .kv_config_path
            .file_name()
            .map_or_else(|| "kvConfig.json".to_owned(), |n| n.to_string_lossy().into_owned());
        let kv_disk = crate::disk::FileDisk::open(&kv_dir, kv_tx.clone())
            .map_err(|e| anyhow::anyhow!("cannot open the KV config directory {}: {e}", kv_dir.display()))?;
        let content = match std::fs::read(&settings.kv_config_path) {
            Ok(content) => content,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => anyhow::bail!("cannot read kvConfigPath {}: {e}", settings.kv_config_path.display()),
        };
        let disk: DiskWithCompletions;
        let kv_file = if let (Some(group), Some(config)) = (group, settings.controller()) {
            let peers = group.peers(crate::controller_server::seed()).map_err(anyhow::Error::msg)?;
            peer_port = peers.me().map(|me| me.addr.port());
            let (log_disk, log) = crate::controller_server::open_log_to(&group.store_path, kv_tx)?;
            disk = (Arc::new(crate::routed_disk::RoutedDisk::new(log_disk, kv_disk)), kv_rx);
            machine = machine.with_controller(keel_core::controller::ControllerCore::in_group(
                config,
                peers,
                Some(&log),
            )?);
            format!("{}/{kv_name}", crate::routed_disk::KV_PREFIX)
        } else {
            disk = (Arc::new(kv_disk), kv_rx);
            kv_name
        };
        let kv =
            keel_core::namesrv::kv_config::KvConfig::load(keel_core::io::FilePath::new(&kv_file), &content)
                .map_err(|e| anyhow::anyhow!("kvConfigPath {}: {e}", settings.kv_config_path.display()))?;
        machine = machine.with_kv_config(kv);
        let server = Self::bind_machine(machine, settings.listen_port, "name server").await?.with_disk(disk);
        match peer_port {
            Some(port) => server.also_on(port).await,
            None => Ok(server),
        }
    }
}

/// A broker with its listeners bound and its store recovered.
pub struct BrokerServer {
    broker: Broker,
    listener: TcpListener,
    /// `haListenPort`: slaves' replication streams.
    replication: Option<TcpListener>,
    disk: Arc<dyn Disk>,
    completions: mpsc::UnboundedReceiver<Completion>,
    clock: Arc<dyn Clock>,
    advertised: SocketAddr,
    /// `readChunkBytes` and `requestBufferBytes`.
    read_limits: (usize, usize),
    /// The Prometheus endpoint, when `metricsExporterType=PROM`.
    metrics: Option<TcpListener>,
    /// The dashboard, when `dashboardEnable=true`, with the name servers it asks.
    dashboard: Option<(TcpListener, Vec<SocketAddr>)>,
    /// The gRPC endpoint, when `enableProxy=true`, and its TLS.
    grpc: Option<(TcpListener, Option<crate::grpc::Tls>)>,
}

impl std::fmt::Debug for BrokerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerServer").field("advertised", &self.advertised).finish_non_exhaustive()
    }
}

impl BrokerServer {
    /// Bind `listenPort`, recover the store under `storePathRootDir` and load the metadata.
    pub async fn open(settings: &BrokerSettings) -> anyhow::Result<Self> {
        let addr = SocketAddr::from(([0, 0, 0, 0], settings.listen_port));
        let listener = TcpListener::bind(addr).await.map_err(|e| listen_error(addr, &e))?;
        let advertised = SocketAddr::new(settings.broker_ip, listener.local_addr()?.port());
        let mut config = broker_config(settings, advertised)?;
        let (completions_tx, completions) = mpsc::unbounded_channel();
        let root = &settings.store_path_root_dir;
        let disk = Arc::new(FileDisk::open(root, completions_tx).map_err(|e| {
            anyhow::anyhow!("cannot open the store directory {}: {}", root.display(), io_reason(&e))
        })?);
        let ha_port = settings.ha_listen_port()?;
        let ha_addr = SocketAddr::from(([0, 0, 0, 0], ha_port));
        let replication = TcpListener::bind(ha_addr).await.map_err(|e| listen_error(ha_addr, &e))?;
        config.ha_addr = Some(SocketAddr::new(settings.broker_ip, replication.local_addr()?.port()));
        let metrics = match settings.metrics_addr {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| listen_error(addr, &e))?),
            None => None,
        };
        let dashboard = match settings.dashboard_addr {
            Some(addr) => Some((
                TcpListener::bind(addr).await.map_err(|e| listen_error(addr, &e))?,
                config.namesrv_addrs.clone(),
            )),
            None => None,
        };
        let grpc = match settings.grpc_port {
            Some(port) => {
                let addr = SocketAddr::from(([0, 0, 0, 0], port));
                let listener = TcpListener::bind(addr).await.map_err(|e| listen_error(addr, &e))?;
                let tls = crate::grpc::tls_for(&settings.grpc_tls, settings.broker_ip, root)?;
                Some((listener, tls))
            }
            None => None,
        };
        let server = Self::from_parts(config, listener, disk, completions, Arc::new(SystemClock::start()))?;
        Ok(Self {
            grpc,
            read_limits: (settings.read_chunk_bytes, settings.request_buffer_bytes),
            replication: Some(replication),
            metrics,
            dashboard,
            ..server
        })
    }

    /// Recover the store from `disk` and load the metadata: the seam where the simulator
    /// passes its own disk and clock to the same broker and loop.
    pub fn from_parts(
        config: BrokerConfig,
        listener: TcpListener,
        disk: Arc<dyn Disk>,
        completions: mpsc::UnboundedReceiver<Completion>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let advertised = config.advertised_addr;
        let (store, report) = Store::recover(config.store.clone(), &*disk, clock.now())
            .map_err(|e| anyhow::anyhow!("cannot recover the store: {e}"))?;
        tracing::info!(kind = ?report.kind, end = report.recovered_end, redispatched = report.redispatched, "store recovered");
        let broker = Broker::new(config, store, Box::new(Arc::clone(&disk)), clock.now());
        let defaults = DriverConfig::default();
        let read_limits = (defaults.read_chunk, defaults.queued_bytes);
        Ok(Self {
            broker,
            listener,
            replication: None,
            disk,
            completions,
            clock,
            advertised,
            read_limits,
            metrics: None,
            dashboard: None,
            grpc: None,
        })
    }

    /// Serve slaves on `listener` too (the simulator binds its own).
    #[must_use]
    pub fn with_replication_listener(self, listener: TcpListener) -> Self {
        Self { replication: Some(listener), ..self }
    }

    /// The address clients are told (`brokerIP1` and the bound port).
    #[must_use]
    pub fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    /// Where slaves connect (`haListenPort`), if it is bound.
    #[must_use]
    pub fn replication_addr(&self) -> Option<SocketAddr> {
        let port = self.replication.as_ref()?.local_addr().ok()?.port();
        Some(SocketAddr::new(self.advertised.ip(), port))
    }

    /// Where `/metrics` is served, if it is.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref()?.local_addr().ok()
    }

    /// Where RocketMQ 5.x's gRPC clients are served, if they are.
    #[must_use]
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        let port = self.grpc.as_ref()?.0.local_addr().ok()?.port();
        Some(SocketAddr::new(self.advertised.ip(), port))
    }

    /// Where the dashboard is served, if it is.
    #[must_use]
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.dashboard.as_ref()?.0.local_addr().ok()
    }

    /// Serve until `shutdown` resolves, then flush the store and metadata and return.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut sites = Vec::new();
        if let Some(listener) = self.metrics.take() {
            tracing::info!(addr = ?listener.local_addr().ok(), "serving Prometheus metrics at /metrics");
            sites.push((listener, crate::web::Site::Metrics));
        }
        if let Some((listener, namesrvs)) = self.dashboard.take() {
            tracing::info!(addr = ?listener.local_addr().ok(), "serving the dashboard");
            sites.push((listener, crate::web::Site::Dashboard { namesrvs }));
        }
        let (looks, endpoints) = if sites.is_empty() && self.grpc.is_none() {
            (None, Vec::new())
        } else {
            let (tx, rx) = mpsc::channel(crate::web::MAX_WAITING_LOOKS);
            let mut endpoints: Vec<_> = sites
                .into_iter()
                .map(|(listener, site)| tokio::spawn(crate::web::serve(listener, tx.clone(), site)))
                .collect();
            if let Some((listener, tls)) = self.grpc.take() {
                let grpc_port = listener.local_addr()?.port();
                let namesrvs = self.broker.config().namesrv_addrs.clone();
                tracing::info!(port = grpc_port, "serving RocketMQ 5.x gRPC clients");
                let service = crate::grpc::Messaging::new(namesrvs, grpc_port, tx.clone());
                endpoints.push(tokio::spawn(crate::grpc::serve(listener, service, tls)));
            }
            (Some(rx), endpoints)
        };
        let listeners = std::iter::once((self.listener, ConnKind::Remoting))
            .chain(self.replication.map(|listener| (listener, ConnKind::Replication)))
            .collect();
        let ran = driver::run(
            &mut self.broker,
            listeners,
            Some((self.disk, self.completions)),
            DriverConfig {
                clock: self.clock,
                read_chunk: self.read_limits.0,
                queued_bytes: self.read_limits.1,
                ..DriverConfig::default()
            },
            shutdown,
            |broker, _| {
                tracing::info!("shutting down: flushing the store");
                broker.begin_shutdown();
            },
            Broker::is_stopped,
            looks,
        )
        .await;
        for endpoint in endpoints {
            endpoint.abort();
        }
        ran?;
        tracing::info!("broker stopped cleanly");
        Ok(())
    }
}

/// The core's broker and store settings from broker.conf's.
fn broker_config(settings: &BrokerSettings, advertised: SocketAddr) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::new(advertised);
    config.settings_text = settings.to_properties();
    // The broker's store settings (its timer topic among them), with broker.conf's on top.
    let mut store = config.store.clone();
    store.segment_size = settings.commitlog_segment_size;
    store.queue_file_entries = (settings.consume_queue_file_size / 20).max(1);
    store.max_message_size = settings.max_message_size;
    store.index = settings.index;
    store.retention = settings.retention.clone();
    let reserved_ms = store.retention.file_reserved_ms;
    if settings.timer_max_delay_sec.saturating_mul(1_000) > reserved_ms {
        tracing::warn!(
            timer_max_delay_sec = settings.timer_max_delay_sec,
            file_reserved_hours = reserved_ms as f64 / 3_600_000.0,
            "timerMaxDelaySec exceeds fileReservedTime: a timed message due later than that is deleted before it is delivered"
        );
    }
    store.instance = std::process::id().to_string();
    store.flush_mode = if settings.flush_disk_type == "SYNC_FLUSH" {
        FlushMode::Sync
    } else {
        FlushMode::Async { interval_ms: settings.flush_interval_ms.max(1) }
    };
    config.cluster_name.clone_from(&settings.cluster_name);
    config.broker_name.clone_from(&settings.broker_name);
    config.broker_id = settings.broker_id;
    config.role = settings.broker_role;
    config.ha_master_addr = settings.ha_master_address;
    config.controller_addrs.clone_from(&settings.controller_addrs);
    config.election_priority = settings.election_priority;
    config.ha = settings.ha;
    config.slave_read_enable = settings.slave_read_enable;
    config.trace_topic = settings.trace_topic_enable.then(|| settings.msg_trace_topic_name.clone());
    config.which_broker_when_consume_slowly = settings.which_broker_when_consume_slowly;
    if let Some(memory) = physical_memory() {
        config.slow_consume_bytes = memory / 100 * settings.access_message_in_memory_max_ratio.min(100);
    }
    config.namesrv_addrs = settings.namesrv_addrs()?;
    config.auto_create_topic = settings.auto_create_topic;
    config.auto_create_subscription_group = settings.auto_create_subscription_group;
    config.default_topic_queue_nums = settings.default_topic_queue_nums;
    config.delay_levels = keel_core::broker::delay::DelayLevels::parse(&settings.message_delay_level)?;
    config.timer_max_delay_ms = settings.timer_max_delay_sec.saturating_mul(1_000);
    config.timer_precision_ms = settings.timer_precision_ms;
    config.transaction.timeout_ms = settings.transaction_timeout_ms;
    config.transaction.check_interval_ms = settings.transaction_check_interval_ms;
    config.transaction.check_max = settings.transaction_check_max;
    config.transaction.reject = settings.reject_transaction_message;
    config.compressed_register = settings.compressed_register;
    config.send_queue_wait_ms = settings.wait_time_mills_in_send_queue;
    config.max_unwritten_bytes = settings.max_unwritten_bytes;
    config.store = store;
    config.validate().map_err(|invalid| anyhow::anyhow!("bad setting {invalid}"))?;
    Ok(config)
}

/// The machine's physical memory (`MemTotal` in /proc/meminfo), if it can be read.
fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
