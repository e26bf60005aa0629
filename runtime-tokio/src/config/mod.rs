//! Configuration files as operators write them for RocketMQ: Java `.properties` (`key=value`,
//! `key: value`, `#` comments, line continuations, `\uXXXX` escapes). Unknown keys are
//! warned about by name, since Java silently ignores a mistyped key.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use keel_core::ha::BrokerRole;

mod namesrv;

pub use namesrv::{ControllerGroupSettings, ControllerSettings, NamesrvSettings};

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A value does not parse as its key's type.
    #[error("bad value for {key}: {value:?}")]
    BadValue {
        /// The key.
        key: String,
        /// What was given.
        value: String,
    },
}

/// The keys and values of a properties file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Read a properties file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = std::fs::File::open(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        let map = java_properties::read(std::io::BufReader::new(file))
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Self(map.into_iter().map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect()))
    }

    /// Read the file given with `-c`, or start empty (every setting at its default).
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, ConfigError> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }

    /// Parse properties text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let map = java_properties::read(text.as_bytes())
            .map_err(|e| ConfigError::Read { path: "<text>".into(), reason: e.to_string() })?;
        Ok(Self(map.into_iter().map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect()))
    }

    /// The value of `key` parsed as `T`, if present.
    pub fn get<T: FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::BadValue { key: key.to_owned(), value: value.clone() }),
        }
    }

    /// The raw value of `key`.
    #[must_use]
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Keys not in `known`, each logged as a warning; returned for `-p` and tests.
    #[must_use]
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<String> {
        let unknown: Vec<String> = self.0.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect();
        for key in &unknown {
            tracing::warn!(%key, "unknown configuration key ignored (check its spelling)");
        }
        unknown
    }
}

/// Broker settings and the `broker.conf` keys they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// `brokerName`.
    pub broker_name: String,
    /// `brokerId`.
    pub broker_id: i64,
    /// `listenPort`.
    pub listen_port: u16,
    /// `haListenPort`: where slaves connect; `None` for `listenPort` + 1.
    pub ha_listen_port: Option<u16>,
    /// `brokerRole`: ASYNC_MASTER, SYNC_MASTER or SLAVE.
    pub broker_role: keel_core::ha::BrokerRole,
    /// `slaveReadEnable`: a slave serves pulls; a master suggests it to consumers far behind.
    pub slave_read_enable: bool,
    /// `whichBrokerWhenConsumeSlowly`: the broker id suggested to a consumer far behind.
    pub which_broker_when_consume_slowly: i64,
    /// `accessMessageInMemoryMaxRatio`: percent of physical memory a pull may read behind
    /// the log's end before a slave is suggested.
    pub access_message_in_memory_max_ratio: u64,
    /// Replication: `haTransferBatchSize`, `haSendHeartbeatInterval`,
    /// `haHousekeepingInterval`, `syncFlushTimeout`, `haMaxGapNotInSync`.
    pub ha: keel_core::ha::HaConfig,
    /// `haMasterAddress`: a slave's master's replication `ip:port`; unset to learn it from
    /// the name servers.
    pub ha_master_address: Option<std::net::SocketAddr>,
    /// `controllerAddr` when `enableControllerMode=true` (`;`-separated): the controllers,
    /// whose leader decides the role. Empty otherwise.
    pub controller_addrs: Vec<std::net::SocketAddr>,
    /// `brokerElectionPriority`: lower wins an election among equals.
    pub election_priority: i32,
    /// `brokerIP1`: the address clients are told to use.
    pub broker_ip: std::net::IpAddr,
    /// `namesrvAddr`: `;`-separated `host:port` list.
    pub namesrv_addr: String,
    /// `storePathRootDir`.
    pub store_path_root_dir: std::path::PathBuf,
    /// `flushDiskType`: `ASYNC_FLUSH` or `SYNC_FLUSH`.
    pub flush_disk_type: String,
    /// `flushIntervalCommitLog`, ms.
    pub flush_interval_ms: u64,
    /// `autoCreateTopicEnable`.
    pub auto_create_topic: bool,
    /// `autoCreateSubscriptionGroup`.
    pub auto_create_subscription_group: bool,
    /// `defaultTopicQueueNums`.
    pub default_topic_queue_nums: i32,
    /// `mappedFileSizeCommitLog`, bytes.
    pub commitlog_segment_size: u64,
    /// `mappedFileSizeConsumeQueue`, bytes (a multiple of 20).
    pub consume_queue_file_size: u64,
    /// `maxMessageSize`, bytes.
    pub max_message_size: usize,
    /// `messageIndexEnable`, `maxHashSlotNum`, `maxIndexNum`: the IndexFile.
    pub index: keel_core::store::IndexConfig,
    /// `traceTopicEnable`: create the trace topic at boot (false).
    pub trace_topic_enable: bool,
    /// `msgTraceTopicName`: the trace topic (`RMQ_SYS_TRACE_TOPIC`).
    pub msg_trace_topic_name: String,
    /// `messageDelayLevel`: the delay of each level, `"1s 5s 10s …"`.
    pub message_delay_level: String,
    /// `timerMaxDelaySec`: the furthest a timed message may be scheduled (Keel: 40 days).
    pub timer_max_delay_sec: u64,
    /// `timerPrecisionMs`: the timing wheel's tick.
    pub timer_precision_ms: u64,
    /// `transactionTimeOut`, ms: a half message younger than this is not checked back.
    pub transaction_timeout_ms: u64,
    /// `transactionCheckInterval`, ms: how often open transactions are checked back.
    pub transaction_check_interval_ms: u64,
    /// `transactionCheckMax`: checks before an open transaction is discarded.
    pub transaction_check_max: u32,
    /// `rejectTransactionMessage`: refuse half messages.
    pub reject_transaction_message: bool,
    /// Retention and disk-space settings (`fileReservedTime`, `deleteWhen`, the ratios).
    pub retention: keel_core::store::RetentionConfig,
    /// `compressedRegister`: REGISTER_BROKER bodies in their compressed form.
    pub compressed_register: bool,
    /// `waitTimeMillsInSendQueue`: a send waiting in line longer is refused SYSTEM_BUSY, ms.
    pub wait_time_mills_in_send_queue: u64,
    /// `maxUnwrittenBytes` (Keel's): appended bytes the disk has not taken yet above which
    /// sends are refused SYSTEM_BUSY.
    pub max_unwritten_bytes: u64,
    /// `readChunkBytes` (Keel's): bytes read from a connection at once, and what one
    /// connection may have waiting for the broker.
    pub read_chunk_bytes: usize,
    /// `requestBufferBytes` (Keel's): bytes every connection together may have waiting.
    pub request_buffer_bytes: usize,
    /// Where `/metrics` is served, with `metricsExporterType=PROM`: `metricsPromExporterHost`
    /// (all interfaces) and `metricsPromExporterPort` (5557; `metricsPrometheusPort` too).
    /// `None`: `DISABLE`, RocketMQ's default.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the read-only dashboard is served, with `dashboardEnable=true` (Keel's):
    /// `dashboardHost` (all interfaces) and `dashboardPort` (8082). `None`: off.
    pub dashboard_addr: Option<std::net::SocketAddr>,
    /// Where RocketMQ 5.x's gRPC clients are served, with `enableProxy=true` (RocketMQ's
    /// `mqbroker --enable-proxy`): all interfaces, `grpcServerPort` (8081). `None`: off.
    pub grpc_port: Option<u16>,
    /// TLS beside plaintext on the gRPC port: `tlsCertPath` and `tlsKeyPath`, or else a
    /// self-signed certificate with `tlsTestModeEnable` (true, as in RocketMQ's proxy).
    pub grpc_tls: GrpcTls,
}

/// Where the gRPC port's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcTls {
    /// Plaintext only: `tlsTestModeEnable=false` and no certificate configured.
    Off,
    /// A self-signed certificate made at each start (`tlsTestModeEnable=true`).
    SelfSigned,
    /// `tlsCertPath` (PEM certificate chain) and `tlsKeyPath` (PEM private key).
    Files {
        /// The certificate chain.
        cert: std::path::PathBuf,
        /// Its private key.
        key: std::path::PathBuf,
    },
}

/// The gRPC port's TLS from `tlsCertPath`, `tlsKeyPath` and `tlsTestModeEnable`.
fn grpc_tls(props: &Properties) -> Result<GrpcTls, ConfigError> {
    let cert: Option<String> = props.get("tlsCertPath")?;
    let key: Option<String> = props.get("tlsKeyPath")?;
    match (cert.filter(|c| !c.is_empty()), key.filter(|k| !k.is_empty())) {
        (Some(cert), Some(key)) => Ok(GrpcTls::Files { cert: cert.into(), key: key.into() }),
        (None, None) if props.get("tlsTestModeEnable")?.unwrap_or(true) => Ok(GrpcTls::SelfSigned),
        (None, None) => Ok(GrpcTls::Off),
        (Some(_), None) => Err(ConfigError::BadValue {
            key: "tlsKeyPath".into(),
            value: "(missing: tlsCertPath needs it)".into(),
        }),
        (None, Some(_)) => Err(ConfigError::BadValue {
            key: "tlsCertPath".into(),
            value: "(missing: tlsKeyPath needs it)".into(),
        }),
    }
}

impl BrokerSettings {
    /// Keys the broker understands.
    pub const KEYS: &'static [&'static str] = &[
        "brokerClusterName",
        "brokerName",
        "brokerId",
        "listenPort",
        "brokerIP1",
        "namesrvAddr",
        "storePathRootDir",
        "flushDiskType",
        "flushIntervalCommitLog",
        "autoCreateTopicEnable",
        "autoCreateSubscriptionGroup",
        "defaultTopicQueueNums",
        "mappedFileSizeCommitLog",
        "mappedFileSizeConsumeQueue",
        "maxMessageSize",
        "messageIndexEnable",
        "maxHashSlotNum",
        "maxIndexNum",
        "traceTopicEnable",
        "msgTraceTopicName",
        "messageDelayLevel",
        "timerMaxDelaySec",
        "timerPrecisionMs",
        "transactionTimeOut",
        "transactionCheckInterval",
        "transactionCheckMax",
        "rejectTransactionMessage",
        "fileReservedTime",
        "deleteWhen",
        "cleanFileForciblyEnable",
        "diskMaxUsedSpaceRatio",
        "diskSpaceCleanForciblyRatio",
        "diskSpaceWarningLevelRatio",
        "deletePhysicFilesInterval",
        "cleanResourceInterval",
        "compressedRegister",
        "waitTimeMillsInSendQueue",
        "maxUnwrittenBytes",
        "readChunkBytes",
        "requestBufferBytes",
        "brokerRole",
        "haListenPort",
        "haMasterAddress",
        "enableControllerMode",
        "allAckInSyncStateSet",
        "minInSyncReplicas",
        "controllerAddr",
        "brokerElectionPriority",
        "haTransferBatchSize",
        "haSendHeartbeatInterval",
        "haHousekeepingInterval",
        "syncFlushTimeout",
        "haMaxGapNotInSync",
        "slaveReadEnable",
        "whichBrokerWhenConsumeSlowly",
        "accessMessageInMemoryMaxRatio",
        "metricsExporterType",
        "metricsPromExporterHost",
        "metricsPromExporterPort",
        "metricsPrometheusPort",
        "dashboardEnable",
        "dashboardHost",
        "dashboardPort",
        "enableProxy",
        "grpcServerPort",
        "tlsTestModeEnable",
        "tlsCertPath",
        "tlsKeyPath",
    ];

    /// Settings from properties; unknown keys are warned about.
    pub fn from_properties(props: &Properties) -> Result<Self, ConfigError> {
        let _ = props.unknown_keys(Self::KEYS);
        let home =
            std::env::var_os("HOME").map_or_else(|| std::path::PathBuf::from("."), std::path::PathBuf::from);
        let tx = keel_core::broker::transaction::TransactionConfig::default();
        let controller_mode = props.get("enableControllerMode")?.unwrap_or(false);
        let settings = Self {
            cluster_name: props.get("brokerClusterName")?.unwrap_or_else(|| "DefaultCluster".into()),
            broker_name: props.get("brokerName")?.unwrap_or_else(|| "broker-a".into()),
            broker_id: props.get("brokerId")?.unwrap_or(0),
            listen_port: props.get("listenPort")?.unwrap_or(10911),
            ha_listen_port: props.get("haListenPort")?,
            broker_role: check_role(
                props.get::<String>("brokerRole")?.as_deref(),
                props.get("brokerId")?.unwrap_or(0),
                controller_mode,
            )?,
            ha_master_address: props.get("haMasterAddress")?,
            controller_addrs: if controller_mode {
                let addrs = props.get::<String>("controllerAddr")?.unwrap_or_default();
                let bad = || ConfigError::BadValue {
                    key: "controllerAddr".into(),
                    value: format!(
                        "{addrs:?} (enableControllerMode needs controllers' host:port, `;`-separated)"
                    ),
                };
                let parsed = addrs
                    .split(';')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(|a| a.parse().map_err(|_| bad()))
                    .collect::<Result<Vec<std::net::SocketAddr>, _>>()?;
                if parsed.is_empty() {
                    return Err(bad());
                }
                parsed
            } else {
                Vec::new()
            },
            election_priority: props.get("brokerElectionPriority")?.unwrap_or(i32::MAX),
            ha: ha_settings(props)?,
            slave_read_enable: props.get("slaveReadEnable")?.unwrap_or(false),
            which_broker_when_consume_slowly: props.get("whichBrokerWhenConsumeSlowly")?.unwrap_or(1),
            access_message_in_memory_max_ratio: props.get("accessMessageInMemoryMaxRatio")?.unwrap_or(40),
            broker_ip: props.get("brokerIP1")?.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
            namesrv_addr: props.get("namesrvAddr")?.unwrap_or_default(),
            store_path_root_dir: props.get("storePathRootDir")?.unwrap_or_else(|| home.join("store")),
            flush_disk_type: props.get("flushDiskType")?.unwrap_or_else(|| "ASYNC_FLUSH".into()),
            flush_interval_ms: props.get("flushIntervalCommitLog")?.unwrap_or(500),
            auto_create_topic: props.get("autoCreateTopicEnable")?.unwrap_or(true),
            auto_create_subscription_group: props.get("autoCreateSubscriptionGroup")?.unwrap_or(true),
            default_topic_queue_nums: props.get("defaultTopicQueueNums")?.unwrap_or(8),
            commitlog_segment_size: props.get("mappedFileSizeCommitLog")?.unwrap_or(1024 * 1024 * 1024),
            consume_queue_file_size: props.get("mappedFileSizeConsumeQueue")?.unwrap_or(300_000 * 20),
            max_message_size: props.get("maxMessageSize")?.unwrap_or(4 * 1024 * 1024),
            index: keel_core::store::IndexConfig {
                enabled: props.get("messageIndexEnable")?.unwrap_or(true),
                max_hash_slots: props.get("maxHashSlotNum")?.unwrap_or(5_000_000),
                max_entries: props.get("maxIndexNum")?.unwrap_or(20_000_000),
            },
            trace_topic_enable: props.get("traceTopicEnable")?.unwrap_or(false),
            msg_trace_topic_name: props
                .get("msgTraceTopicName")?
                .unwrap_or_else(|| keel_core::protocol::trace::TRACE_TOPIC.to_owned()),
            message_delay_level: props
                .get("messageDelayLevel")?
                .unwrap_or_else(|| keel_core::broker::delay::DEFAULT_DELAY_LEVELS.into()),
            timer_max_delay_sec: props
                .get("timerMaxDelaySec")?
                .unwrap_or(keel_core::broker::timer::DEFAULT_MAX_DELAY_MS / 1_000),
            timer_precision_ms: props.get("timerPrecisionMs")?.unwrap_or(1_000),
            transaction_timeout_ms: props.get("transactionTimeOut")?.unwrap_or(tx.timeout_ms),
            transaction_check_interval_ms: props
                .get("transactionCheckInterval")?
                .unwrap_or(tx.check_interval_ms),
            transaction_check_max: props.get("transactionCheckMax")?.unwrap_or(tx.check_max),
            reject_transaction_message: props.get("rejectTransactionMessage")?.unwrap_or(tx.reject),
            retention: retention_settings(props)?,
            compressed_register: props.get("compressedRegister")?.unwrap_or(false),
            wait_time_mills_in_send_queue: props.get("waitTimeMillsInSendQueue")?.unwrap_or(200),
            max_unwritten_bytes: props.get("maxUnwrittenBytes")?.unwrap_or(64 * 1024 * 1024),
            read_chunk_bytes: props.get("readChunkBytes")?.unwrap_or(16 * 1024),
            request_buffer_bytes: props.get("requestBufferBytes")?.unwrap_or(64 * 1024 * 1024),
            metrics_addr: metrics_addr(props)?,
            grpc_port: if props.get("enableProxy")?.unwrap_or(false) {
                Some(props.get("grpcServerPort")?.unwrap_or(8081))
            } else {
                None
            },
            grpc_tls: grpc_tls(props)?,
            dashboard_addr: if props.get("dashboardEnable")?.unwrap_or(false) {
                let host = props.get("dashboardHost")?.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                Some(std::net::SocketAddr::new(host, props.get("dashboardPort")?.unwrap_or(8082)))
            } else {
                None
            },
        };
        if settings.read_chunk_bytes < 1024 || settings.request_buffer_bytes < settings.read_chunk_bytes {
            return Err(ConfigError::BadValue {
                key: "readChunkBytes".into(),
                value: format!("{} (at least 1024, at most requestBufferBytes)", settings.read_chunk_bytes),
            });
        }
        if settings.transaction_check_interval_ms == 0 {
            return Err(ConfigError::BadValue { key: "transactionCheckInterval".into(), value: "0".into() });
        }
        if settings.timer_precision_ms == 0 {
            return Err(ConfigError::BadValue { key: "timerPrecisionMs".into(), value: "0".into() });
        }
        if keel_core::broker::delay::DelayLevels::parse(&settings.message_delay_level).is_err() {
            return Err(ConfigError::BadValue {
                key: "messageDelayLevel".into(),
                value: settings.message_delay_level,
            });
        }
        if settings.flush_disk_type != "ASYNC_FLUSH" && settings.flush_disk_type != "SYNC_FLUSH" {
            return Err(ConfigError::BadValue {
                key: "flushDiskType".into(),
                value: settings.flush_disk_type,
            });
        }
        Ok(settings)
    }

    /// The replication port: `haListenPort`, else `listenPort` + 1 as RocketMQ's, else
    /// (with `listenPort` 0) any free port.
    pub fn ha_listen_port(&self) -> Result<u16, ConfigError> {
        match (self.ha_listen_port, self.listen_port) {
            (Some(port), _) => Ok(port),
            (None, 0) => Ok(0),
            (None, listen) => listen.checked_add(1).ok_or_else(|| ConfigError::BadValue {
                key: "haListenPort".into(),
                value: format!("unset, and listenPort {listen} + 1 is not a port"),
            }),
        }
    }

    /// The retention and overload keys as broker.conf spells them.
    fn retention_properties(&self) -> String {
        let r = &self.retention;
        let hours: Vec<String> = r.delete_hours.iter().map(|h| format!("{h:02}")).collect();
        format!(
            "compressedRegister={}\nwaitTimeMillsInSendQueue={}\nmaxUnwrittenBytes={}\nreadChunkBytes={}\nrequestBufferBytes={}\nfileReservedTime={}\ndeleteWhen={}\ncleanFileForciblyEnable={}\ndiskMaxUsedSpaceRatio={}\ndiskSpaceCleanForciblyRatio={}\ndiskSpaceWarningLevelRatio={}\ndeletePhysicFilesInterval={}\ncleanResourceInterval={}\n",
            self.compressed_register,
            self.wait_time_mills_in_send_queue,
            self.max_unwritten_bytes,
            self.read_chunk_bytes,
            self.request_buffer_bytes,
            r.file_reserved_ms as f64 / 3_600_000.0,
            hours.join(";"),
            r.clean_forcibly,
            r.disk_max_used_ratio,
            r.clean_forcibly_ratio,
            r.warning_ratio,
            r.delete_interval_ms,
            r.check_interval_ms,
        )
    }

    /// The name server addresses, resolved.
    pub fn namesrv_addrs(&self) -> Result<Vec<std::net::SocketAddr>, ConfigError> {
        use std::net::ToSocketAddrs;
        self.namesrv_addr
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.to_socket_addrs()
                    .ok()
                    .and_then(|mut it| it.next())
                    .ok_or_else(|| ConfigError::BadValue { key: "namesrvAddr".into(), value: a.to_owned() })
            })
            .collect()
    }

    /// `metricsExporterType`, `dashboardEnable` and where they listen, as properties.
    fn metrics_properties(&self) -> String {
        (match self.metrics_addr {
            Some(addr) => format!(
                "metricsExporterType=PROM\nmetricsPromExporterHost={}\nmetricsPromExporterPort={}\n",
                addr.ip(),
                addr.port()
            ),
            None => "metricsExporterType=DISABLE\n".to_owned(),
        }) + &match self.dashboard_addr {
            Some(addr) => {
                format!("dashboardEnable=true\ndashboardHost={}\ndashboardPort={}\n", addr.ip(), addr.port())
            }
            None => "dashboardEnable=false\n".to_owned(),
        } + &match self.grpc_port {
            Some(port) => format!("enableProxy=true\ngrpcServerPort={port}\n"),
            None => "enableProxy=false\n".to_owned(),
        } + &match &self.grpc_tls {
            GrpcTls::Off => "tlsTestModeEnable=false\n".to_owned(),
            GrpcTls::SelfSigned => "tlsTestModeEnable=true\n".to_owned(),
            GrpcTls::Files { cert, key } => {
                format!("tlsCertPath={}\ntlsKeyPath={}\n", cert.display(), key.display())
            }
        }
    }

    /// The effective configuration as properties text (what `-p` prints).
    #[must_use]
    pub fn to_properties(&self) -> String {
        format!(
            "brokerClusterName={}\nbrokerName={}\nbrokerId={}\nlistenPort={}\nbrokerIP1={}\nnamesrvAddr={}\nstorePathRootDir={}\nflushDiskType={}\nflushIntervalCommitLog={}\nautoCreateTopicEnable={}\nautoCreateSubscriptionGroup={}\ndefaultTopicQueueNums={}\nmappedFileSizeCommitLog={}\nmappedFileSizeConsumeQueue={}\nmaxMessageSize={}\nmessageIndexEnable={}\nmaxHashSlotNum={}\nmaxIndexNum={}\ntraceTopicEnable={}\nmsgTraceTopicName={}\nmessageDelayLevel={}\ntimerMaxDelaySec={}\ntimerPrecisionMs={}\ntransactionTimeOut={}\ntransactionCheckInterval={}\ntransactionCheckMax={}\nrejectTransactionMessage={}\n",
            self.cluster_name,
            self.broker_name,
            self.broker_id,
            self.listen_port,
            self.broker_ip,
            self.namesrv_addr,
            self.store_path_root_dir.display(),
            self.flush_disk_type,
            self.flush_interval_ms,
            self.auto_create_topic,
            self.auto_create_subscription_group,
            self.default_topic_queue_nums,
            self.commitlog_segment_size,
            self.consume_queue_file_size,
            self.max_message_size,
            self.index.enabled,
            self.index.max_hash_slots,
            self.index.max_entries,
            self.trace_topic_enable,
            self.msg_trace_topic_name,
            self.message_delay_level,
            self.timer_max_delay_sec,
            self.timer_precision_ms,
            self.transaction_timeout_ms,
            self.transaction_check_interval_ms,
            self.transaction_check_max,
            self.reject_transaction_message,
        ) + &self.retention_properties()
            + &self.ha_properties()
            + &self.metrics_properties()
    }

    /// The replication keys; the optional ones only when set.
    fn ha_properties(&self) -> String {
        let ha = &self.ha;
        let mut text = format!(
            "brokerRole={}\nhaTransferBatchSize={}\nhaSendHeartbeatInterval={}\nhaHousekeepingInterval={}\nsyncFlushTimeout={}\nhaMaxGapNotInSync={}\n",
            self.broker_role.name(),
            ha.transfer_batch,
            ha.heartbeat_interval_ms,
            ha.housekeeping_ms,
            ha.sync_flush_timeout_ms,
            ha.max_gap_not_in_sync
        );
        text += &format!(
            "allAckInSyncStateSet={}\nminInSyncReplicas={}\n",
            ha.all_ack_in_sync_state_set, ha.min_in_sync_replicas
        );
        text += &format!(
            "slaveReadEnable={}\nwhichBrokerWhenConsumeSlowly={}\naccessMessageInMemoryMaxRatio={}\n",
            self.slave_read_enable,
            self.which_broker_when_consume_slowly,
            self.access_message_in_memory_max_ratio
        );
        if let Some(port) = self.ha_listen_port {
            text += &format!("haListenPort={port}\n");
        }
        if let Some(addr) = self.ha_master_address {
            text += &format!("haMasterAddress={addr}\n");
        }
        if !self.controller_addrs.is_empty() {
            let addrs: Vec<String> = self.controller_addrs.iter().map(ToString::to_string).collect();
            text += &format!("enableControllerMode=true\ncontrollerAddr={}\n", addrs.join(";"));
        }
        text += &format!("brokerElectionPriority={}\n", self.election_priority);
        text
    }
}

/// RocketMQ's retention keys. `fileReservedTime` is in hours; Keel also takes a fraction
/// (`0.01` is 36 s), which tests and small disks use.
fn retention_settings(props: &Properties) -> Result<keel_core::store::RetentionConfig, ConfigError> {
    let mut retention = keel_core::store::RetentionConfig::default();
    if let Some(hours) = props.get::<f64>("fileReservedTime")? {
        if !(hours.is_finite() && hours > 0.0) {
            return Err(ConfigError::BadValue { key: "fileReservedTime".into(), value: hours.to_string() });
        }
        // At least 1 ms; hours beyond u64 ms saturate.
        retention.file_reserved_ms = ((hours * 3_600_000.0).round() as u64).max(1);
    }
    if let Some(text) = props.get::<String>("deleteWhen")? {
        retention.delete_hours = keel_core::store::RetentionConfig::parse_delete_when(&text)
            .map_err(|_| ConfigError::BadValue { key: "deleteWhen".into(), value: text })?;
    }
    retention.clean_forcibly = props.get("cleanFileForciblyEnable")?.unwrap_or(retention.clean_forcibly);
    retention.disk_max_used_ratio =
        props.get("diskMaxUsedSpaceRatio")?.unwrap_or(retention.disk_max_used_ratio);
    retention.clean_forcibly_ratio =
        props.get("diskSpaceCleanForciblyRatio")?.unwrap_or(retention.clean_forcibly_ratio);
    retention.warning_ratio = props.get("diskSpaceWarningLevelRatio")?.unwrap_or(retention.warning_ratio);
    retention.delete_interval_ms =
        props.get("deletePhysicFilesInterval")?.unwrap_or(retention.delete_interval_ms);
    retention.check_interval_ms = props.get("cleanResourceInterval")?.unwrap_or(retention.check_interval_ms);
    if let Err(invalid) = retention.validate() {
        return Err(ConfigError::BadValue { key: invalid.key.into(), value: invalid.problem });
    }
    Ok(retention)
}

/// The replication keys, RocketMQ's defaults for those unset.
fn ha_settings(props: &Properties) -> Result<keel_core::ha::HaConfig, ConfigError> {
    let defaults = keel_core::ha::HaConfig::default();
    let batch: usize = props.get("haTransferBatchSize")?.unwrap_or(defaults.transfer_batch);
    if !(1024..=keel_core::ha::wire::MAX_TRANSFER_LEN).contains(&batch) {
        let value = format!("{batch} (from 1024 to {} bytes)", keel_core::ha::wire::MAX_TRANSFER_LEN);
        return Err(ConfigError::BadValue { key: "haTransferBatchSize".into(), value });
    }
    let positive = |key: &str, default: u64| -> Result<u64, ConfigError> {
        match props.get::<u64>(key)?.unwrap_or(default) {
            0 => Err(ConfigError::BadValue { key: key.into(), value: "0 (must be positive)".into() }),
            value => Ok(value),
        }
    };
    Ok(keel_core::ha::HaConfig {
        transfer_batch: batch,
        window: 8 * batch as u64,
        heartbeat_interval_ms: positive("haSendHeartbeatInterval", defaults.heartbeat_interval_ms)?,
        housekeeping_ms: positive("haHousekeepingInterval", defaults.housekeeping_ms)?,
        sync_flush_timeout_ms: positive("syncFlushTimeout", defaults.sync_flush_timeout_ms)?,
        max_gap_not_in_sync: positive("haMaxGapNotInSync", defaults.max_gap_not_in_sync)?,
        all_ack_in_sync_state_set: props
            .get("allAckInSyncStateSet")?
            .unwrap_or(defaults.all_ack_in_sync_state_set),
        min_in_sync_replicas: props.get("minInSyncReplicas")?.unwrap_or(defaults.min_in_sync_replicas),
        ..defaults
    })
}

/// `brokerRole` and `brokerId` together: a master's id is 0 (as RocketMQ forces), a slave's
/// above 0.
fn check_role(role: Option<&str>, broker_id: i64, controller_mode: bool) -> Result<BrokerRole, ConfigError> {
    let name = role.unwrap_or("ASYNC_MASTER");
    let bad = |key: &str, value: String| ConfigError::BadValue { key: key.into(), value };
    match BrokerRole::parse(name) {
        // In controller mode the role is how the broker acts once elected; its id is its own.
        Some(_) if controller_mode && broker_id < 1 => Err(bad(
            "brokerId",
            format!("{broker_id} (in controller mode each broker has its own id, from 1)"),
        )),
        Some(role) if controller_mode => Ok(role),
        Some(BrokerRole::AsyncMaster | BrokerRole::SyncMaster) if broker_id != 0 => {
            Err(bad("brokerId", format!("{broker_id} (a master's brokerId is 0)")))
        }
        Some(BrokerRole::Slave) if broker_id <= 0 => {
            Err(bad("brokerId", format!("{broker_id} (a slave's brokerId is above 0)")))
        }
        Some(role) => Ok(role),
        None => Err(bad("brokerRole", format!("{name} (ASYNC_MASTER, SYNC_MASTER or SLAVE)"))),
    }
}

/// Where the Prometheus endpoint listens: `None` unless `metricsExporterType=PROM`. The
/// OpenTelemetry exporters RocketMQ also has (OTLP_GRPC, LOG) are refused by name.
fn metrics_addr(props: &Properties) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let kind = props.get::<String>("metricsExporterType")?.unwrap_or_else(|| "DISABLE".into());
    match kind.as_str() {
        "DISABLE" => Ok(None),
        "PROM" => {
            let port = match props.get::<u16>("metricsPromExporterPort")? {
                Some(port) => port,
                None => props.get("metricsPrometheusPort")?.unwrap_or(5557),
            };
            let host = props.get("metricsPromExporterHost")?.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            Ok(Some(std::net::SocketAddr::new(host, port)))
        }
        other => Err(ConfigError::BadValue {
            key: "metricsExporterType".into(),
            value: format!("{other} (Keel serves DISABLE or PROM)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_this_build_cannot_play_or_a_mismatched_id_is_refused_with_its_key() {
        let role = |text: &str| BrokerSettings::from_properties(&Properties::parse(text).unwrap()).err();
        assert!(role("brokerRole=ASYNC_MASTER\nbrokerId=0\n").is_none());
        assert!(role("").is_none());
        let key = |error: Option<ConfigError>| match error {
            Some(ConfigError::BadValue { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert!(role("brokerRole=SLAVE\nbrokerId=1\n").is_none());
        assert_eq!(key(role("brokerRole=SLAVE\n")), "brokerId");
        assert!(role("brokerRole=SYNC_MASTER\n").is_none());
        assert_eq!(key(role("brokerRole=SYNC_MASTER\nbrokerId=1\n")), "brokerId");
        assert_eq!(key(role("haTransferBatchSize=10\n")), "haTransferBatchSize");
        assert_eq!(key(role("syncFlushTimeout=0\n")), "syncFlushTimeout");
        assert_eq!(key(role("brokerRole=MASTER\n")), "brokerRole");
        assert_eq!(key(role("brokerId=2\n")), "brokerId");
    }

    #[test]
    fn metrics_are_off_unless_prom_and_listen_on_rocketmqs_port_or_the_one_given() {
        let addr = |text: &str| {
            BrokerSettings::from_properties(&Properties::parse(text).unwrap())
                .map(|s| s.metrics_addr.map(|a| a.to_string()))
        };
        assert_eq!(addr("").unwrap(), None);
        assert_eq!(addr("metricsExporterType=DISABLE\n").unwrap(), None);
        assert_eq!(addr("metricsExporterType=PROM\n").unwrap().as_deref(), Some("0.0.0.0:5557"));
        let given =
            "metricsExporterType=PROM\nmetricsPromExporterPort=9100\nmetricsPromExporterHost=127.0.0.1\n";
        assert_eq!(addr(given).unwrap().as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(
            addr("metricsExporterType=PROM\nmetricsPrometheusPort=9200\n").unwrap().as_deref(),
            Some("0.0.0.0:9200")
        );
        match addr("metricsExporterType=OTLP_GRPC\n") {
            Err(ConfigError::BadValue { key, value }) => {
                assert_eq!(key, "metricsExporterType");
                assert!(value.contains("DISABLE or PROM"), "{value}");
            }
            other => panic!("{other:?}"),
        }
    }
}
