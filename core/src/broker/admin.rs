//! Everything but sends and pulls: client management (heartbeats, consumer lists), offsets
//! and offset queries, message view, runtime info, and topic administration (group
//! administration is in `groups.rs`).

use super::topics::RETRY_PREFIX;
use super::{error_reply, Broker};
use crate::io::{ConnId, Now};
use crate::protocol::body::{ConsumerIdList, HeartbeatData, KvTable, TopicConfig};
use crate::protocol::headers::{
    CommandHeader, ConsumerGroupHeader, CreateTopicRequestHeader, OffsetResponseHeader,
    QueryConsumerOffsetRequestHeader, QueueRequestHeader, SearchOffsetRequestHeader,
    UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader, ViewMessageRequestHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::stored::{parse_record, Parsed};
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};
use crate::remoting;
use crate::store::QueueOffset;

/// Index of messages stored in [`Broker::rate_counters`].
const RATE_PUT: usize = 0;
/// Index of messages handed out by pulls.
const RATE_GOT: usize = 1;
/// Index of timed messages read into the wheel.
const RATE_TIMER_IN: usize = 2;
/// Index of timed messages delivered.
const RATE_TIMER_OUT: usize = 3;

impl Broker {
    pub(super) fn on_admin(&mut self, now: Now, conn: ConnId, request: &RemotingCommand) -> RemotingCommand {
        let answer = match request.request_code() {
            RequestCode::HEART_BEAT => self.on_heartbeat(now, conn, request),
            RequestCode::UNREGISTER_CLIENT => self.on_unregister_client(conn, request),
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => self.on_consumer_list(request),
            RequestCode::LOCK_BATCH_MQ => self.on_lock_batch(now, request),
            RequestCode::UNLOCK_BATCH_MQ => self.on_unlock_batch(request),
            RequestCode::QUERY_CONSUMER_OFFSET => self.on_query_offset(request),
            RequestCode::UPDATE_CONSUMER_OFFSET => self.on_update_offset(request),
            RequestCode::GET_MAX_OFFSET => self.on_queue_offset(request, |_, max| max),
            RequestCode::GET_MIN_OFFSET => self.on_queue_offset(request, |min, _| min),
            RequestCode::GET_EARLIEST_MSG_STORETIME => self.on_earliest_store_time(request),
            RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => self.on_search_offset(request),
            RequestCode::VIEW_MESSAGE_BY_ID => self.on_view_message(request),
            RequestCode::GET_BROKER_RUNTIME_INFO => Ok(self.on_runtime_info(now, request)),
            RequestCode::UPDATE_AND_CREATE_TOPIC => self.on_update_topic(now, request),
            RequestCode::DELETE_TOPIC_IN_BROKER => self.on_delete_topic(now, request),
            RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => self.on_update_group(now, request),
            RequestCode::DELETE_SUBSCRIPTIONGROUP => self.on_delete_group(now, request),
            RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => self.on_get_all_groups(request),
            RequestCode::GET_SUBSCRIPTIONGROUP_CONFIG => self.on_get_group(request),
            _ => Ok(remoting::not_supported(request)),
        };
        answer.unwrap_or_else(|(code, remark)| error_reply(request, code, remark))
    }

    fn ok(request: &RemotingCommand) -> RemotingCommand {
        RemotingCommand::response_to(request, ResponseCode::SUCCESS, None)
    }

    fn on_heartbeat(&mut self, now: Now, conn: ConnId, request: &RemotingCommand) -> Answer {
        let data: HeartbeatData = json::from_slice(&request.body)
            .map_err(|e| (ResponseCode::SYSTEM_ERROR, format!("bad heartbeat: {e}")))?;
        for consumer in &data.consumer_data_set {
            // A group that may not exist or consume finds out on its pulls.
            let _ = self.check_group(now, &consumer.group_name);
            if consumer.message_model != "BROADCASTING" {
                let retry = format!("{RETRY_PREFIX}{}", consumer.group_name);
                self.ensure_group_topic(now, &retry);
            }
        }
        let changed = self.clients.heartbeat(now.mono, conn, &data, request.language, request.version);
        self.notify_consumer_ids_changed(&changed);
        // The reply's version is the broker's: clients cache it and gate features on it.
        Ok(Self::ok(request))
    }

    /// Create a group's retry or dead-letter topic (one read-write queue) if missing, and
    /// tell the name servers.
    pub(super) fn ensure_group_topic(&mut self, now: Now, topic: &str) {
        if self.topics.get(topic).is_some() {
            return;
        }
        let config = TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            ..TopicConfig::default()
        };
        self.topics.put(config, now.wall.0);
        self.topics_changed(now);
    }

    fn on_unregister_client(&mut self, conn: ConnId, request: &RemotingCommand) -> Answer {
        let header = UnregisterClientRequestHeader::decode(&request.ext_fields).map_err(bad_header)?;
        let changed =
            self.clients.unregister(conn, header.producer_group.as_deref(), header.consumer_group.as_deref());
        self.notify_consumer_ids_changed(&changed);
        Ok(Self::ok(request))
    }

    fn on_consumer_list(&self, request: &RemotingCommand) -> Answer {
        let header = ConsumerGroupHeader::decode(&request.ext_fields).map_err(bad_header)?;
        let ids = self.clients.consumer_ids(&header.consumer_group);
        if ids.is_empty() {
            return Err((
                ResponseCode::SYSTEM_ERROR,
                format!("no consumer for this group, {}", header.consumer_group),
            ));
        }
        let body = json::to_body(&ConsumerIdList { consumer_id_list: ids }, KeyStyle::Fastjson);
        Ok(Self::ok(request).with_body(body))
    }

    fn on_query_offset(&self, request: &RemotingCommand) -> Answer {
        let header = QueryConsumerOffsetRequestHeader::decode(&request.ext_fields).map_err(bad_header)?;
        let stored = self.offsets.get(&header.consumer_group, &header.topic, header.queue_id);
        let offset = match stored {
            Some(offset) if offset >= 0 => offset,
            // Like Java: a new group on a queue that never lost messages starts at 0;
            // otherwise QUERY_NOT_FOUND lets the client apply its ConsumeFromWhere.
            _ => {
                let min =
                    self.store.queue_offsets(&header.topic, header.queue_id).map_or(0, |(min, _)| min.0);
                if header.set_zero_if_not_found == Some(false) || min > 0 {
                    return Err((
                        ResponseCode::QUERY_NOT_FOUND,
                        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first".into(),
                    ));
                }
                0
            }
        };
        Ok(offset_reply(request, offset))
    }

    fn on_update_offset(&mut self, request: &RemotingCommand) -> Answer {
        let header = UpdateConsumerOffsetRequestHeader::decode(&request.ext_fields).map_err(bad_header)?;
        self.offsets.commit(&header.consumer_group, &header.topic, header.queue_id, header.commit_offset);
        self.offsets_changed = true;
        Ok(Self::ok(request))
    }

    fn on_queue_offset(&self, request: &RemotingCommand, pick: fn(u64, u64) -> u64) -> Answer {
        let header = QueueRequestHeader::decode(&request.ext_fields).map_err(bad_header)?;
        let (min, max) =
            self.store.queue_offsets(&header.topic, header.queue_id).map_or((0, 0), |(a, b)| (a.0, b.0));
        Ok(offset_reply(request, i64::try_from(pick(min, max)).unwrap_or(0)))
    }

    /// Store time of the message at `offset` of a queue, if readable.
    fn store_time(&self, topic: &str, queue_id: i32, offset: u64) -> Option<i64> {
        let entry = self
            .store
            .read_entries(&*self.reader, topic, queue_id, QueueOffset(offset), 1)
            .ok()?
            .into_iter()
            .next()?;
        let record = self.store.read_record(&*self.reader, entry.phys_offset, entry.size).ok()?;
        match parse_record(&record) {
            Ok(Parsed::Message(view)) => Some(view.store_timestamp),
            _ => None,
        }
    }

    fn on_earliest_store_time(&self, request: &RemotingCommand) -> Answer {
        let header = QueueRequestHeader::decode(&request.ext_fields).map_err(bad_header)?;
        let min = self.store.queue_offsets(&header.topic, header.queue_id).map_or(0, |(min, _)| min.0);
        let time = self.store_time(&header.topic, header.queue_id, min).unwrap_or(-1);
        let mut reply = Self::ok(request);
        reply.ext_fields.insert("timestamp", time.to_string());
        Ok(reply)
    }

    /// The first offset stored at or after `timestamp` (LOWER), or the last at or before it
    /// (UPPER): a binary search over store times, which never go backwards in a queue.
    fn on_search_offset(&self, request: &RemotingCommand) -> Answer {
        let header = SearchOffsetRequestHeader::decode(&request.ext_fields).map_err(bad_header)?;
        let upper = header.boundary_type.as_deref().is_some_and(|b| b.eq_ignore_ascii_case("UPPER"));
        let (min, _) =
            self.store.queue_offsets(&header.topic, header.queue_id).map_or((0, 0), |(a, b)| (a.0, b.0));
        let readable = self.store.readable_next(&header.topic, header.queue_id).map_or(0, |n| n.0);
        // Find the first offset whose time is > t (UPPER) or ≥ t (LOWER).
        let (mut low, mut high) = (min, readable);
        while low < high {
            let mid = low + (high - low) / 2;
            match self.store_time(&header.topic, header.queue_id, mid) {
                Some(time) if time < header.timestamp || (upper && time == header.timestamp) => low = mid + 1,
                Some(_) => high = mid,
                None => high = mid,
            }
        }
        let offset = if upper { low.saturating_sub(1).max(min) } else { low };
        Ok(offset_reply(request, i64::try_from(offset).unwrap_or(0)))
    }

    fn on_view_message(&self, request: &RemotingCommand) -> Answer {
        let header = ViewMessageRequestHeader::decode(&request.ext_fields).map_err(bad_header)?;
        let offset = u64::try_from(header.offset).unwrap_or(u64::MAX);
        let record = self.store.read_record_at(&*self.reader, offset).map_err(|_| {
            (ResponseCode::SYSTEM_ERROR, format!("can not find message by the offset, {}", header.offset))
        })?;
        Ok(Self::ok(request).with_body(record))
    }

    /// The counters behind the runtime info's rates, by the `RATE_*` indexes.
    pub(super) fn rate_counters(&self) -> [u64; 4] {
        [
            self.stats.messages_put,
            self.stats.messages_got,
            self.timers.state.next_offset(),
            self.timers.delivered,
        ]
    }

    fn on_runtime_info(&self, now: Now, request: &RemotingCommand) -> RemotingCommand {
        let send_head_wait_ms =
            self.oldest_pending_since().map_or(0, |since| now.mono.0.saturating_sub(since.0) / 1_000_000);
        let (today, yesterday) = (self.days.today(), self.days.yesterday());
        let counters = self.rate_counters();
        let current = |index: usize| counters.get(index).copied().unwrap_or(0);
        let three = |index: usize| self.rates.three_windows(now.mono, index, current(index));
        let minute =
            |index: usize| format!("{:?}", self.rates.per_second(now.mono, 60, index, current(index)));
        let (producers, consumers) = self.clients.counts();
        let mut entries: Vec<(String, String)> = self.schedule_progress();
        let progress = self.timer_progress(now.wall.0);
        let fixed: Vec<(&str, String)> = vec![
            ("brokerVersionDesc", "V5_3_3".into()),
            ("brokerVersion", crate::protocol::SERVER_VERSION.to_string()),
            ("brokerActive", "true".into()),
            ("msgPutTotalTodayNow", self.stats.messages_put.to_string()),
            ("msgGetTotalTodayNow", self.stats.messages_got.to_string()),
            ("msgPutTotalTodayMorning", today[RATE_PUT].to_string()),
            ("msgGetTotalTodayMorning", today[RATE_GOT].to_string()),
            ("msgPutTotalYesterdayMorning", yesterday[RATE_PUT].to_string()),
            ("msgGetTotalYesterdayMorning", yesterday[RATE_GOT].to_string()),
            ("putTps", three(RATE_PUT)),
            ("getTransferredTps", three(RATE_GOT)),
            ("timerEnqueueTps", minute(RATE_TIMER_IN)),
            ("timerDequeueTps", minute(RATE_TIMER_OUT)),
            ("sendThreadPoolQueueSize", self.pending.len().to_string()),
            ("pullThreadPoolQueueSize", self.holds.len().to_string()),
            // Sends wait in line for durability: the oldest one's age.
            ("sendThreadPoolQueueHeadWaitTimeMills", send_head_wait_ms.to_string()),
            ("pullThreadPoolQueueHeadWaitTimeMills", "0".into()),
            ("pageCacheLockTimeMills", "0".into()),
            ("commitLogMinOffset", self.store.min_phys().to_string()),
            ("commitLogMaxOffset", self.store.write_pos().0.to_string()),
            // Appended but not yet visible to consumers (written, and flushed under SYNC_FLUSH).
            (
                "dispatchBehindBytes",
                self.store.write_pos().0.saturating_sub(self.store.visible_end().0).to_string(),
            ),
            // The share of the store's file system in use (0 to 1), as of the last check.
            (
                "commitLogDiskRatio",
                self.store
                    .disk_usage()
                    .map_or_else(|| "0.0".into(), |u| format!("{}", u.used_per_mille() as f64 / 1000.0)),
            ),
            ("commitLogDirCapacity", disk_capacity(self.store.disk_usage())),
            // Keel's own: times the store was rebuilt in place after a disk error, since boot.
            ("storeRepairs", self.stats.store_repairs.to_string()),
            ("bootTimestamp", self.boot_wall_ms.to_string()),
            ("runtime", format!("{} ms", now.wall.0 - self.boot_wall_ms)),
            ("producerGroups", producers.to_string()),
            ("consumerGroups", consumers.to_string()),
        ];
        entries.extend(fixed.into_iter().chain(progress).map(|(k, v)| (k.to_owned(), v)));
        let table = KvTable { table: entries.into_iter().collect() };
        Self::ok(request).with_body(json::to_body(&table, KeyStyle::Fastjson))
    }

    fn on_update_topic(&mut self, now: Now, request: &RemotingCommand) -> Answer {
        let header = CreateTopicRequestHeader::decode(&request.ext_fields).map_err(bad_header)?;
        let system = header.topic == super::topics::TBW102 || header.topic == super::topics::SELF_TEST_TOPIC;
        if !super::topics::valid_topic_name(&header.topic) || system {
            return Err((
                ResponseCode::INVALID_PARAMETER,
                format!("the topic[{}] is invalid or reserved", header.topic),
            ));
        }
        let queues_ok =
            (1..=1024).contains(&header.read_queue_nums) && (1..=1024).contains(&header.write_queue_nums);
        if !queues_ok {
            return Err((ResponseCode::INVALID_PARAMETER, "queue counts must be between 1 and 1024".into()));
        }
        let config = TopicConfig {
            topic_name: header.topic,
            read_queue_nums: header.read_queue_nums,
            write_queue_nums: header.write_queue_nums,
            perm: header.perm & crate::protocol::body::perm::READ_WRITE,
            topic_filter_type: header.topic_filter_type.unwrap_or_else(|| "SINGLE_TAG".into()),
            topic_sys_flag: header.topic_sys_flag.unwrap_or(0),
            order: header.order.unwrap_or(false),
            ..TopicConfig::default()
        };
        self.topics.put(config, now.wall.0);
        self.topics_changed(now);
        Ok(Self::ok(request))
    }

    fn on_delete_topic(&mut self, now: Now, request: &RemotingCommand) -> Answer {
        let topic = request.ext_fields.get("topic").unwrap_or("").to_owned();
        if topic.is_empty() || topic == super::topics::TBW102 {
            return Err((ResponseCode::INVALID_PARAMETER, format!("the topic[{topic}] cannot be deleted")));
        }
        if self.topics.remove(&topic, now.wall.0) {
            self.offsets.remove_topic(&topic);
            self.offsets_changed = true;
            self.topics_changed(now);
        }
        Ok(Self::ok(request))
    }
}

pub(super) type Answer = Result<RemotingCommand, (ResponseCode, String)>;

pub(super) fn bad_header(e: crate::protocol::headers::HeaderError) -> (ResponseCode, String) {
    (ResponseCode::SYSTEM_ERROR, e.to_string())
}

fn offset_reply(request: &RemotingCommand, offset: i64) -> RemotingCommand {
    let mut reply = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
    reply.ext_fields = OffsetResponseHeader { offset }.to_ext_fields();
    reply
}

/// RocketMQ's `commitLogDirCapacity`: "Total : 49.1 GiB, Free : 12.0 GiB." (unknown: zeros).
fn disk_capacity(usage: Option<crate::io::DiskUsage>) -> String {
    let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
    let (total, free) = usage.map_or((0, 0), |u| (u.total, u.available));
    format!("Total : {:.1} GiB, Free : {:.1} GiB.", gib(total), gib(free))
}
