//! mqadmin's command line: RocketMQ's sub-command names and option letters.

use clap::{Parser, Subcommand};
use keel_runtime_tokio::admin::change::Target;

/// RocketMQ's admin tool, for Keel.
#[derive(Debug, Parser)]
#[command(name = "mqadmin", version, about = "Administer a RocketMQ-compatible cluster")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// What every sub-command takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The name server, `host:port` (also from NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrvAddr", env = "NAMESRV_ADDR")]
    pub namesrv: String,
    /// Print rows as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Where a change goes: `-b` one broker or `-c` every master of a cluster.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// One broker, `host:port`.
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker: Option<String>,
    /// Every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

impl TargetArgs {
    pub fn target(self) -> anyhow::Result<Target> {
        Target::from_options(self.broker, self.cluster)
    }
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "camelCase")]
pub enum Command {
    /// List every topic the name server knows.
    TopicList {
        #[command(flatten)]
        common: Common,
        /// With each topic's cluster and the groups consuming it.
        #[arg(short = 'c', long = "clusterModel")]
        cluster_model: bool,
    },
    /// Print where a topic lives (its route, as JSON).
    TopicRoute {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Each queue of a topic: min and max offset, last store time.
    TopicStatus {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Every broker of every cluster, with its load.
    ClusterList {
        #[command(flatten)]
        common: Common,
    },
    /// A broker's runtime information.
    BrokerStatus {
        #[command(flatten)]
        common: Common,
        /// The broker, `host:port`.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
    },
    /// A group's progress and lag per queue; without -g, every group's totals.
    ConsumerProgress {
        #[command(flatten)]
        common: Common,
        /// The consumer group.
        #[arg(short = 'g', long = "groupName")]
        group: Option<String>,
        /// Only this topic.
        #[arg(short = 't', long = "topicName")]
        topic: Option<String>,
    },
    /// The members of a consumer group and their subscriptions.
    ConsumerConnection {
        #[command(flatten)]
        common: Common,
        /// The consumer group.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
    },
    /// Create or update a topic on a broker (-b) or on every master of a cluster (-c).
    UpdateTopic {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Queues consumers read.
        #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
        read_queue_nums: i32,
        /// Queues producers write.
        #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
        write_queue_nums: i32,
        /// Permission: 2 write, 4 read, 6 both.
        #[arg(short = 'p', long = "perm", default_value_t = 6)]
        perm: i32,
        /// An ordered topic (true|false).
        #[arg(short = 'o', long = "order", action = clap::ArgAction::Set, default_value_t = false)]
        order: bool,
        /// Attribute changes, `+key=value` or `-key`, comma-separated: `+message.type=FIFO`
        /// (NORMAL, FIFO, DELAY, TRANSACTION or MIXED), the types 5.x producers may send.
        #[arg(short = 'a', long = "attributes")]
        attributes: Option<String>,
    },
    /// Change a topic's permission on a broker (-b) or on every master of a cluster (-c).
    UpdateTopicPerm {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Permission: 2 write, 4 read, 6 both.
        #[arg(short = 'p', long = "perm")]
        perm: i32,
    },
    /// Delete a topic from every master of a cluster and from the name server.
    DeleteTopic {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The cluster.
        #[arg(short = 'c', long = "clusterName")]
        cluster: String,
    },
    /// Create or update a subscription group on a broker (-b) or every master of a cluster (-c).
    UpdateSubGroup {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        /// The group.
        #[arg(short = 'g', long = "groupName")]
        group: String,
        /// Whether the group may consume.
        #[arg(short = 's', long = "consumeEnable", action = clap::ArgAction::Set, default_value_t = true)]
        consume_enable: bool,
        /// Whether a new group may start from the queue's first offset.
        #[arg(short = 'm', long = "consumeFromMinEnable", action = clap::ArgAction::Set, default_value_t = true)]
        consume_from_min_enable: bool,
        /// Whether the group may consume in broadcast mode.
        #[arg(short = 'd', long = "consumeBroadcastEnable", action = clap::ArgAction::Set, default_value_t = true)]
        consume_broadcast_enable: bool,
        /// Whether the group consumes orderly.
        #[arg(short = 'o', long = "consumeMessageOrderly", action = clap::ArgAction::Set, default_value_t = false)]
        orderly: bool,
        /// Retry queues.
        #[arg(short = 'q', long = "retryQueueNums", default_value_t = 1)]
        retry_queue_nums: i32,
        /// Deliveries before a message goes to the dead-letter queue.
        #[arg(short = 'r', long = "retryMaxTimes", default_value_t = 16)]
        retry_max_times: i32,
        /// The broker id the group consumes from.
        #[arg(short = 'i', long = "brokerId", default_value_t = 0)]
        broker_id: i64,
        /// The broker id to suggest when the group lags far behind.
        #[arg(short = 'w', long = "whichBrokerWhenConsumeSlowly", default_value_t = 1)]
        slow_broker_id: i64,
        /// Whether members are told when the membership changes.
        #[arg(short = 'a', long = "notifyConsumerIdsChanged", action = clap::ArgAction::Set, default_value_t = true)]
        notify: bool,
    },
    /// Delete a subscription group from a broker (-b) or every master of a cluster (-c).
    DeleteSubGroup {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        /// The group.
        #[arg(short = 'g', long = "groupName")]
        group: String,
        /// Also remove the group's committed offsets (true|false).
        #[arg(short = 'r', long = "removeOffset", action = clap::ArgAction::Set, default_value_t = false)]
        remove_offset: bool,
    },
    /// Print a message by its offset message id, or by its unique id with -t (the body goes
    /// to a file); with -g and -d, have that consumer client run its listener on it.
    QueryMsgById {
        #[command(flatten)]
        common: Common,
        /// The offset message id, or (with -t) the message id a producer gave it.
        #[arg(short = 'i', long = "msgId")]
        id: String,
        /// The topic: looks `-i` up as a unique id if it is not an offset id.
        #[arg(short = 't', long = "topic")]
        topic: Option<String>,
        /// The consumer group whose client consumes it (with -d).
        #[arg(short = 'g', long = "consumerGroup", requires = "client_id")]
        group: Option<String>,
        /// The client that consumes it (with -g).
        #[arg(short = 'd', long = "clientId", requires = "group")]
        client_id: Option<String>,
    },
    /// List the messages of a topic stored with a key (a KEYS token), newest first per broker.
    QueryMsgByKey {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The key.
        #[arg(short = 'k', long = "msgKey")]
        key: String,
        /// Earliest store time, ms since the epoch.
        #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
        begin: i64,
        /// Latest store time, ms since the epoch.
        #[arg(short = 'e', long = "endTimestamp", default_value_t = i64::MAX)]
        end: i64,
        /// Messages from each broker at most (64 at most).
        #[arg(short = 'm', long = "maxNum", default_value_t = 64)]
        max: i32,
        /// Only brokers of this cluster (accepted for RocketMQ's syntax; the route decides).
        #[arg(short = 'c', long = "cluster")]
        cluster: Option<String>,
    },
    /// Print a message by the unique id its producer gave it (the body goes to a file); with
    /// -g and -d, have that consumer client run its listener on it.
    QueryMsgByUniqueKey {
        #[command(flatten)]
        common: Common,
        /// The message id (UNIQ_KEY).
        #[arg(short = 'i', long = "msgId")]
        id: String,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The consumer group whose client consumes it (with -d).
        #[arg(short = 'g', long = "consumerGroup", requires = "client_id")]
        group: Option<String>,
        /// The client that consumes it (with -g).
        #[arg(short = 'd', long = "clientId", requires = "group")]
        client_id: Option<String>,
        /// Print every message stored with the id (a producer's retries), not only the newest.
        #[arg(short = 'a', long = "showAll")]
        show_all: bool,
    },
    /// The trace of a message (what clients with message trace on recorded): its sends and
    /// its consumptions.
    QueryMsgTraceById {
        #[command(flatten)]
        common: Common,
        /// The message id (UNIQ_KEY).
        #[arg(short = 'i', long = "msgId")]
        id: String,
        /// The trace topic.
        #[arg(short = 't', long = "traceTopic", default_value = "RMQ_SYS_TRACE_TOPIC")]
        trace_topic: String,
    },
    /// Set a KV config item on the name server.
    UpdateKvConfig {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        item: KvItem,
        /// The value.
        #[arg(short = 'v', long = "value")]
        value: String,
    },
    /// Remove a KV config item from the name server.
    DeleteKvConfig {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        item: KvItem,
    },
    /// Get, put or delete an ordered topic's queues per broker set (`brokerName:queues;…`).
    UpdateOrderConf {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The configuration, for put.
        #[arg(short = 'v', long = "orderConf")]
        order_conf: Option<String>,
        /// get, put or delete.
        #[arg(short = 'm', long = "method")]
        method: String,
    },
    /// What a group's clients hold: every member, or one (-i) in detail.
    ConsumerStatus {
        #[command(flatten)]
        common: Common,
        /// The consumer group.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        /// Only this client, in detail.
        #[arg(short = 'i', long = "clientId")]
        client_id: Option<String>,
    },
    /// Print the message at an offset of a queue (the body goes to a file).
    QueryMsgByOffset {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The broker set.
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
        /// The queue.
        #[arg(short = 'i', long = "queueId")]
        queue_id: i32,
        /// The queue offset.
        #[arg(short = 'o', long = "offset")]
        offset: i64,
    },
    /// Print every message of a topic (from -b, to -e), queue by queue.
    PrintMsg {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// From this time: ms since 1970 or yyyy-MM-dd#HH:mm:ss:SSS (UTC).
        #[arg(short = 'b', long = "beginTimestamp")]
        begin: Option<String>,
        /// To this time.
        #[arg(short = 'e', long = "endTimestamp")]
        end: Option<String>,
        /// Print the bodies (true|false).
        #[arg(short = 'd', long = "printBody", action = clap::ArgAction::Set, default_value_t = true)]
        print_body: bool,
    },
    /// Read messages of a topic, or of one queue from an offset (-b -i -o), at most -c.
    ConsumeMessage {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The broker set (with -i and -o).
        #[arg(short = 'b', long = "brokerName")]
        broker_name: Option<String>,
        /// The queue (with -b and -o).
        #[arg(short = 'i', long = "queueId")]
        queue_id: Option<i32>,
        /// The first offset (with -b and -i).
        #[arg(short = 'o', long = "offset")]
        offset: Option<i64>,
        /// From this time (whole topic).
        #[arg(short = 's', long = "beginTimestamp")]
        begin: Option<String>,
        /// To this time (whole topic).
        #[arg(short = 'e', long = "endTimestamp")]
        end: Option<String>,
        /// At most this many messages.
        #[arg(short = 'c', long = "messageNumber", default_value_t = 128)]
        count: usize,
    },
    /// Send one message.
    SendMessage {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The body, as text.
        #[arg(short = 'p', long = "body")]
        body: String,
        /// Keys, space-separated.
        #[arg(short = 'k', long = "keys")]
        keys: Option<String>,
        /// The tag.
        #[arg(short = 'c', long = "tags")]
        tags: Option<String>,
        /// The broker set (else the first serving the topic).
        #[arg(short = 'b', long = "broker")]
        broker_name: Option<String>,
        /// The queue (else 0).
        #[arg(short = 'i', long = "qid")]
        queue_id: Option<i32>,
    },
    /// Reset a group's progress in a topic to a time: its members restart from there.
    ResetOffsetByTime {
        #[command(flatten)]
        common: Common,
        /// The consumer group.
        #[arg(short = 'g', long = "group")]
        group: String,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The time: now, ms since 1970, or yyyy-MM-dd#HH:mm:ss:SSS (UTC); -1 for the end.
        #[arg(short = 's', long = "timestamp", allow_hyphen_values = true)]
        timestamp: String,
        /// Move forward too (otherwise only back) (true|false).
        #[arg(short = 'f', long = "force", action = clap::ArgAction::Set, default_value_t = true)]
        force: bool,
    },
    /// A broker's settings (-b), or every master's of a cluster (-c).
    GetBrokerConfig {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Change a setting while the broker runs (only the ones that can change live).
    UpdateBrokerConfig {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        /// The setting.
        #[arg(short = 'k', long = "key")]
        key: String,
        /// Its new value.
        #[arg(short = 'v', long = "value")]
        value: String,
    },
    /// A broker's replication status: a master's slaves and their lag, or a slave's master.
    HaStatus {
        /// The broker, `host:port`.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
    },
    /// Which master wrote which stretch of a broker's log.
    GetBrokerEpoch {
        /// The broker, `host:port`.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
    },
    /// What a controller holds of each broker set: master, epochs, in-sync replicas.
    GetSyncStateSet {
        /// The controller, `host:port`.
        #[arg(short = 'a', long = "controllerAddress")]
        controller: String,
        /// Only this broker set.
        #[arg(short = 'b', long = "brokerName")]
        broker_name: Option<String>,
    },
    /// Make a broker the master of its set (the controller checks it may be).
    ElectMaster {
        /// The controller, `host:port`.
        #[arg(short = 'a', long = "controllerAddress")]
        controller: String,
        /// The cluster.
        #[arg(short = 'c', long = "clusterName")]
        cluster: String,
        /// The broker set.
        #[arg(short = 'n', long = "brokerName")]
        broker_name: String,
        /// The broker to elect.
        #[arg(short = 'b', long = "brokerId")]
        broker_id: i64,
    },
    /// The producers of a group sending to a topic.
    ProducerConnection {
        #[command(flatten)]
        common: Common,
        /// The producer group.
        #[arg(short = 'g', long = "producerGroup")]
        group: String,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
}

/// A KV config item: `-s namespace -k key`.
#[derive(Debug, clap::Args)]
pub struct KvItem {
    /// The namespace.
    #[arg(short = 's', long = "namespace")]
    pub namespace: String,
    /// The key.
    #[arg(short = 'k', long = "key")]
    pub key: String,
}
