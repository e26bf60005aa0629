//! Broker settings (RocketMQ's `BrokerConfig` keys, the ones Keel uses).

use core::net::SocketAddr;

use super::delay::DelayLevels;
use super::transaction::TransactionConfig;
use crate::invalid_setting::InvalidSetting;
use crate::protocol::DEFAULT_MAX_FRAME_LEN;
use crate::store::StoreConfig;

/// Broker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// The effective configuration as properties text, every key the broker was started
    /// with (defaults included): what GET_BROKER_CONFIG answers.
    pub settings_text: String,
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// `brokerName`.
    pub broker_name: String,
    /// `brokerId` (0 = master).
    pub broker_id: i64,
    /// `brokerRole`: a master (async or sync) or a slave.
    pub role: crate::ha::BrokerRole,
    /// Where this broker's slaves connect (`haListenPort` on `brokerIP1`), told to the name
    /// servers as `haServerAddr`; `None` for the listen port + 1.
    pub ha_addr: Option<SocketAddr>,
    /// `haMasterAddress`: a slave's master's replication address; `None` to learn it from
    /// the name servers' registration replies.
    pub ha_master_addr: Option<SocketAddr>,
    /// `controllerAddr` with `enableControllerMode=true`: the controllers, one of which
    /// (their leader) decides this broker's role (it starts as a slave, its `brokerId` its
    /// id in the set). Empty: not in controller mode.
    pub controller_addrs: Vec<SocketAddr>,
    /// `brokerElectionPriority`: lower wins an election among equals.
    pub election_priority: i32,
    /// The `ip:port` clients reach (`brokerIP1:listenPort`); also STOREHOST of every record.
    pub advertised_addr: SocketAddr,
    /// `namesrvAddr`.
    pub namesrv_addrs: Vec<SocketAddr>,
    /// `autoCreateTopicEnable`: unknown topics are created from `TBW102` on first send.
    pub auto_create_topic: bool,
    /// `autoCreateSubscriptionGroup`: unknown consumer groups are created on first sight.
    pub auto_create_subscription_group: bool,
    /// `defaultTopicQueueNums`: queues of auto-created topics (capped by the request's).
    pub default_topic_queue_nums: i32,
    /// `registerNameServerPeriod`, ms.
    pub register_interval_ms: u64,
    /// `compressedRegister`: send REGISTER_BROKER's body in its compressed form (a broker
    /// with thousands of topics sends megabytes of JSON every 30 s otherwise).
    pub compressed_register: bool,
    /// `channelExpiredTimeout`: a client silent this long is dropped, ms.
    pub client_expiry_ms: u64,
    /// Longest a pull is held, ms (below the client's own 30 s timeout).
    pub max_pull_hold_ms: u64,
    /// Most pulls held at once; beyond it pulls are answered at once.
    pub max_pull_holds: usize,
    /// Most sends waiting for durability before new ones get SYSTEM_BUSY.
    pub max_pending_replies: usize,
    /// `waitTimeMillsInSendQueue`: a send read this long before the broker got to it is
    /// refused SYSTEM_BUSY (RocketMQ's fast failure; its clients back off), ms.
    pub send_queue_wait_ms: u64,
    /// Appended bytes not yet written to the page cache (held in memory meanwhile, e.g.
    /// behind an fsync) above which sends get SYSTEM_BUSY: what bounds the broker's memory
    /// when clients send faster than the disk takes it.
    pub max_unwritten_bytes: u64,
    /// Largest frame accepted.
    pub max_frame_len: usize,
    /// Most connections.
    pub max_connections: usize,
    /// `MSG_REGION` in send replies.
    pub region: String,
    /// `TRACE_ON` in send replies.
    pub trace_on: bool,
    /// `traceTopicEnable` with `msgTraceTopicName`: the topic message traces go to, created
    /// at boot (one queue, as RocketMQ makes it); `None`: not created.
    pub trace_topic: Option<String>,
    /// `messageDelayLevel`: the delay of each level.
    pub delay_levels: DelayLevels,
    /// `timerMaxDelaySec` (in ms): the furthest a timed message may be scheduled.
    pub timer_max_delay_ms: u64,
    /// `timerPrecisionMs`: the timing wheel's tick; a timed message is late by less.
    pub timer_precision_ms: u64,
    /// Transaction messages: `transactionTimeOut`, `transactionCheckInterval`,
    /// `transactionCheckMax`, `rejectTransactionMessage`.
    pub transaction: TransactionConfig,
    /// `slaveReadEnable`: a slave serves pulls (RocketMQ 5's refuse them otherwise), and a
    /// master suggests a slave to a consumer reading far behind.
    pub slave_read_enable: bool,
    /// `whichBrokerWhenConsumeSlowly`: the slave's broker id suggested then.
    pub which_broker_when_consume_slowly: i64,
    /// How far behind the log's end a pull may read before a slave is suggested
    /// (RocketMQ: `accessMessageInMemoryMaxRatio`, 40, percent of physical memory).
    pub slow_consume_bytes: u64,
    /// Replication to slaves (`haTransferBatchSize`, `haSendHeartbeatInterval`,
    /// `haHousekeepingInterval`).
    pub ha: crate::ha::HaConfig,
    /// The message store.
    pub store: StoreConfig,
}

impl BrokerConfig {
    /// RocketMQ's defaults for a broker reachable at `advertised_addr`.
    #[must_use]
    pub fn new(advertised_addr: SocketAddr) -> Self {
        Self {
            settings_text: String::new(),
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            role: crate::ha::BrokerRole::AsyncMaster,
            ha_addr: None,
            ha_master_addr: None,
            controller_addrs: Vec::new(),
            election_priority: i32::MAX,
            advertised_addr,
            namesrv_addrs: Vec::new(),
            auto_create_topic: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            register_interval_ms: 30_000,
            compressed_register: false,
            client_expiry_ms: 120_000,
            max_pull_hold_ms: 20_000,
            max_pull_holds: 20_000,
            max_pending_replies: 100_000,
            send_queue_wait_ms: 200,
            max_unwritten_bytes: 64 * 1024 * 1024,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_connections: 10_000,
            region: "DefaultRegion".into(),
            trace_on: true,
            trace_topic: None,
            delay_levels: DelayLevels::default(),
            timer_max_delay_ms: super::timer::DEFAULT_MAX_DELAY_MS,
            timer_precision_ms: 1_000,
            transaction: TransactionConfig::default(),
            ha: crate::ha::HaConfig::default(),
            slave_read_enable: false,
            which_broker_when_consume_slowly: 1,
            // 40% of 8 GiB; the runtime measures the machine's memory.
            slow_consume_bytes: 8 * 1024 * 1024 * 1024 / 10 * 4,
            store: StoreConfig {
                due_time_topics: vec![crate::broker::timer::TIMER_TOPIC.to_owned()],
                ..StoreConfig::new(advertised_addr)
            },
        }
    }

    /// Whether a controller decides this broker's role (`enableControllerMode`).
    #[must_use]
    pub fn in_controller_mode(&self) -> bool {
        !self.controller_addrs.is_empty()
    }

    /// Check the settings make sense together; the error names the broker.conf key to fix.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        // In controller mode every broker has its own id in the set, master or not.
        if self.in_controller_mode() && self.broker_id < 1 {
            let problem =
                format!("{}: in controller mode each broker of a set has its own id, from 1", self.broker_id);
            return Err(InvalidSetting::new("brokerId", problem));
        }
        // RocketMQ forces a master's id to 0; a slave with id 0 would be routed as a master.
        match (self.role.is_slave() || self.in_controller_mode(), self.broker_id) {
            (false, 0) => {}
            (false, id) => {
                return Err(InvalidSetting::new("brokerId", format!("{id}: a master's brokerId is 0")))
            }
            (true, id) if id > 0 => {}
            (true, id) => {
                return Err(InvalidSetting::new("brokerId", format!("{id}: a slave's brokerId is above 0")))
            }
        }
        if !(1..=1024).contains(&self.default_topic_queue_nums) {
            let problem = format!("{} is not a queue count from 1 to 1024", self.default_topic_queue_nums);
            return Err(InvalidSetting::new("defaultTopicQueueNums", problem));
        }
        if self.timer_precision_ms == 0 {
            return Err(InvalidSetting::new("timerPrecisionMs", "must be positive"));
        }
        if self.transaction.check_interval_ms == 0 {
            return Err(InvalidSetting::new("transactionCheckInterval", "must be positive"));
        }
        self.store.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_a_bad_value_names_its_key() {
        let good = BrokerConfig::new("127.0.0.1:10911".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(good.validate(), Ok(()));
        let key = |edit: &dyn Fn(&mut BrokerConfig)| {
            let mut config = good.clone();
            edit(&mut config);
            config.validate().err().map(|e| e.key)
        };
        assert_eq!(key(&|c| c.default_topic_queue_nums = 0), Some("defaultTopicQueueNums"));
        assert_eq!(key(&|c| c.broker_id = 1), Some("brokerId"));
        assert_eq!(key(&|c| c.role = crate::ha::BrokerRole::Slave), Some("brokerId"));
        let slave = |c: &mut BrokerConfig| {
            c.role = crate::ha::BrokerRole::Slave;
            c.broker_id = 2;
        };
        assert_eq!(key(&slave), None);
        assert_eq!(key(&|c| c.timer_precision_ms = 0), Some("timerPrecisionMs"));
        assert_eq!(key(&|c| c.store.segment_size = 100), Some("mappedFileSizeCommitLog"));
        assert_eq!(key(&|c| c.store.segment_size = 1 << 31), Some("mappedFileSizeCommitLog"));
        assert_eq!(key(&|c| c.store.segment_size = (1 << 31) - 1), None);
        assert_eq!(key(&|c| c.store.queue_file_entries = 0), Some("mappedFileSizeConsumeQueue"));
        assert_eq!(key(&|c| c.store.retention.warning_ratio = 0), Some("diskSpaceWarningLevelRatio"));
        let message = {
            let mut config = good.clone();
            config.store.retention.check_interval_ms = 0;
            config.validate().err().map(|e| e.to_string())
        };
        assert_eq!(message.as_deref(), Some("cleanResourceInterval: must be positive"));
    }
}
