//! Configuration files as operators write them for RocketMQ: Java `.properties` (`key=value`,
//! `key: value`, `#` comments, line continuations, `\uXXXX` escapes). Unknown keys are
//! warned about by name, since Java silently ignores a mistyped key.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

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

/// Name server settings and the `.properties` keys they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesrvSettings {
    /// `listenPort`: where clients and brokers connect (9876).
    pub listen_port: u16,
    /// `scanNotActiveBrokerInterval`: ms between expiry scans (5000).
    pub scan_interval_ms: u64,
}

impl NamesrvSettings {
    /// Keys the name server understands.
    pub const KEYS: &'static [&'static str] = &["listenPort", "scanNotActiveBrokerInterval"];

    /// Settings from properties (defaults for what is absent); unknown keys are warned about.
    pub fn from_properties(props: &Properties) -> Result<Self, ConfigError> {
        let _ = props.unknown_keys(Self::KEYS);
        Ok(Self {
            listen_port: props.get("listenPort")?.unwrap_or(9876),
            scan_interval_ms: props.get("scanNotActiveBrokerInterval")?.unwrap_or(5000),
        })
    }

    /// The effective configuration as properties text (what `-p` prints).
    #[must_use]
    pub fn to_properties(&self) -> String {
        format!("listenPort={}\nscanNotActiveBrokerInterval={}\n", self.listen_port, self.scan_interval_ms)
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
        // Read to refuse what this build cannot be: only ASYNC_MASTER (see `check_role`).
        "brokerRole",
        "haListenPort",
    ];

    /// Settings from properties; unknown keys are warned about.
    pub fn from_properties(props: &Properties) -> Result<Self, ConfigError> {
        let _ = props.unknown_keys(Self::KEYS);
        let home =
            std::env::var_os("HOME").map_or_else(|| std::path::PathBuf::from("."), std::path::PathBuf::from);
        let tx = keel_core::broker::transaction::TransactionConfig::default();
        let settings = Self {
            cluster_name: props.get("brokerClusterName")?.unwrap_or_else(|| "DefaultCluster".into()),
            broker_name: props.get("brokerName")?.unwrap_or_else(|| "broker-a".into()),
            broker_id: props.get("brokerId")?.unwrap_or(0),
            listen_port: props.get("listenPort")?.unwrap_or(10911),
            ha_listen_port: props.get("haListenPort")?,
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
        check_role(props.get::<String>("brokerRole")?.as_deref(), settings.broker_id)?;
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

    /// The effective configuration as properties text (what `-p` prints).
    #[must_use]
    pub fn to_properties(&self) -> String {
        format!(
            "brokerClusterName={}\nbrokerName={}\nbrokerId={}\nlistenPort={}\nbrokerIP1={}\nnamesrvAddr={}\nstorePathRootDir={}\nflushDiskType={}\nflushIntervalCommitLog={}\nautoCreateTopicEnable={}\nautoCreateSubscriptionGroup={}\ndefaultTopicQueueNums={}\nmappedFileSizeCommitLog={}\nmappedFileSizeConsumeQueue={}\nmaxMessageSize={}\nmessageDelayLevel={}\ntimerMaxDelaySec={}\ntimerPrecisionMs={}\ntransactionTimeOut={}\ntransactionCheckInterval={}\ntransactionCheckMax={}\nrejectTransactionMessage={}\n",
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
            self.message_delay_level,
            self.timer_max_delay_sec,
            self.timer_precision_ms,
            self.transaction_timeout_ms,
            self.transaction_check_interval_ms,
            self.transaction_check_max,
            self.reject_transaction_message,
        ) + &self.retention_properties()
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

/// `brokerRole` and `brokerId` together. Replication is not in this build yet, so a broker
/// is a master (`brokerId` 0, as RocketMQ forces for masters); a SLAVE or SYNC_MASTER setting
/// is refused rather than silently run as a lone master that acknowledges sends no slave has.
fn check_role(role: Option<&str>, broker_id: i64) -> Result<(), ConfigError> {
    match role.unwrap_or("ASYNC_MASTER") {
        "ASYNC_MASTER" if broker_id == 0 => Ok(()),
        "ASYNC_MASTER" => Err(ConfigError::BadValue {
            key: "brokerId".into(),
            value: format!("{broker_id} (a master's brokerId is 0)"),
        }),
        "SYNC_MASTER" | "SLAVE" => Err(ConfigError::BadValue {
            key: "brokerRole".into(),
            value: format!(
                "{} (this build runs ASYNC_MASTER only: no replication yet)",
                role.unwrap_or_default()
            ),
        }),
        other => Err(ConfigError::BadValue {
            key: "brokerRole".into(),
            value: format!("{other} (ASYNC_MASTER, SYNC_MASTER or SLAVE)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_java_properties_and_names_unknown_keys() {
        let props = Properties::parse(
            "# comment\nlistenPort = 19876\nlistenPrt=1\nscanNotActiveBrokerInterval: 2000\n",
        )
        .unwrap();
        let settings = NamesrvSettings::from_properties(&props).unwrap();
        assert_eq!(settings, NamesrvSettings { listen_port: 19876, scan_interval_ms: 2000 });
        assert_eq!(props.unknown_keys(NamesrvSettings::KEYS), vec!["listenPrt".to_owned()]);
        let bad = Properties::parse("listenPort=abc\n").unwrap();
        assert!(matches!(NamesrvSettings::from_properties(&bad), Err(ConfigError::BadValue { .. })));
        assert_eq!(
            Properties::parse(&settings.to_properties()).unwrap(),
            Properties::parse("listenPort=19876\nscanNotActiveBrokerInterval=2000").unwrap()
        );
    }

    #[test]
    fn a_role_this_build_cannot_play_is_refused_with_its_key() {
        let role = |text: &str| BrokerSettings::from_properties(&Properties::parse(text).unwrap()).err();
        assert!(role("brokerRole=ASYNC_MASTER\nbrokerId=0\n").is_none());
        assert!(role("").is_none());
        let key = |error: Option<ConfigError>| match error {
            Some(ConfigError::BadValue { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key(role("brokerRole=SLAVE\nbrokerId=1\n")), "brokerRole");
        assert_eq!(key(role("brokerRole=SYNC_MASTER\n")), "brokerRole");
        assert_eq!(key(role("brokerRole=MASTER\n")), "brokerRole");
        assert_eq!(key(role("brokerId=2\n")), "brokerId");
    }
}
