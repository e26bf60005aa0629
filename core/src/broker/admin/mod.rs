//! Administration and queries: queue offsets and store times, message view by offset,
//! topic creation and deletion, and the runtime info with its rates. Its own state is what
//! the runtime info reports over time.

mod broker_config;
mod query;
pub mod rates;
mod status;

use crate::broker::consumers::{offset_reply, ok, Consumers};
use crate::broker::refusal::Refusal;
use crate::broker::shared::{Answer, Shared};
use crate::io::{MonoNanos, Now, UnixMillis};
use crate::protocol::body::{KvTable, TopicConfig};
use crate::protocol::headers::{
    CommandHeader, CreateTopicRequestHeader, QueueRequestHeader, SearchOffsetRequestHeader,
    ViewMessageRequestHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::stored::{parse_record, Parsed};
use crate::protocol::{wire_long, RemotingCommand};
use crate::store::{PhysOffset, QueueOffset};

/// Index of messages stored in the rate counters.
pub(super) const RATE_PUT: usize = 0;
/// Index of messages handed out by pulls.
pub(super) const RATE_GOT: usize = 1;
/// Index of timed messages read into the wheel.
pub(super) const RATE_TIMER_IN: usize = 2;
/// Index of timed messages delivered.
pub(super) const RATE_TIMER_OUT: usize = 3;

/// What the runtime info reports over time: rates of its counters and daily marks.
#[derive(Debug)]
pub(super) struct Admin {
    /// Samples of the counters behind the runtime info's rates (the `RATE_*` indexes).
    rates: rates::Rates<4>,
    /// The same counters at the start of today and yesterday.
    days: rates::DayMarks<4>,
    /// The broker's wall clock at boot.
    booted_at: UnixMillis,
    /// Bumped by every UPDATE_BROKER_CONFIG (GET_BROKER_CONFIG's `version`).
    config_version: crate::protocol::body::DataVersion,
}

/// What the runtime info reads from the other subsystems.
pub(super) struct RuntimeView<'a> {
    /// The counters by the `RATE_*` indexes.
    pub(super) counters: [u64; 4],
    /// Delay-level and timer progress entries.
    pub(super) progress: Vec<(String, String)>,
    pub(super) consumers: &'a Consumers,
}

impl Admin {
    /// Nothing sampled yet; booted at `now`.
    pub(super) fn new(now: Now) -> Self {
        let mut config_version = crate::protocol::body::DataVersion::default();
        config_version.bump(now.wall);
        Self {
            rates: rates::Rates::default(),
            days: rates::DayMarks::default(),
            booted_at: now.wall,
            config_version,
        }
    }

    /// Sample the counters behind the rates (after every input).
    /// Stored and delivered messages per second between each two samples kept (and from
    /// the last one to `now`, whose `counters` are given), at wall clock times.
    pub(super) fn throughput(
        &self,
        now: Now,
        counters: [u64; 4],
    ) -> Vec<crate::broker::overview::ThroughputPoint> {
        let wall_at = |at: MonoNanos| {
            let ago_ms = i64::try_from(now.mono.0.saturating_sub(at.0) / 1_000_000).unwrap_or(i64::MAX);
            now.wall.0.saturating_sub(ago_ms)
        };
        let mut points = Vec::new();
        let mut previous: Option<(MonoNanos, [u64; 4])> = None;
        let current = (now.mono, counters);
        for &(at, values) in self.rates.samples().chain(core::iter::once(&current)) {
            if let Some((before, old)) = previous {
                let span_ns = at.0.saturating_sub(before.0);
                if span_ns >= 1_000_000 {
                    #[allow(clippy::cast_precision_loss)] // a rate, not an exact count
                    let rate = |index: usize| {
                        let moved = values
                            .get(index)
                            .copied()
                            .unwrap_or(0)
                            .saturating_sub(old.get(index).copied().unwrap_or(0));
                        moved as f64 * 1e9 / span_ns as f64
                    };
                    points.push(crate::broker::overview::ThroughputPoint {
                        at: wall_at(at),
                        put_tps: rate(RATE_PUT),
                        get_tps: rate(RATE_GOT),
                    });
                }
            }
            previous = Some((at, values));
        }
        points
    }

    pub(super) fn sample(&mut self, now: Now, counters: [u64; 4]) {
        self.rates.sample(now.mono, counters);
        self.days.observe(now.wall, counters);
    }

    pub(super) fn on_queue_offset(
        shared: &Shared,
        request: &RemotingCommand,
        pick: fn(u64, u64) -> u64,
    ) -> Answer {
        let header = QueueRequestHeader::decode(&request.ext_fields)?;
        let (min, max) =
            shared.store.queue_offsets(&header.topic, header.queue_id).map_or((0, 0), |(a, b)| (a.0, b.0));
        Ok(offset_reply(request, wire_long(pick(min, max))))
    }

    /// Store time of the message at `offset` of a queue, if readable.
    /// The store time of the message at `offset` in a queue, if it can be read.
    pub(in crate::broker) fn store_time(
        shared: &Shared,
        topic: &str,
        queue_id: i32,
        offset: u64,
    ) -> Option<i64> {
        let entry = shared
            .store
            .read_entries(&*shared.reader, topic, queue_id, QueueOffset(offset), 1)
            .ok()?
            .into_iter()
            .next()?;
        let record = shared.store.read_record(&*shared.reader, entry.phys_offset, entry.size).ok()?;
        match parse_record(&record) {
            Ok(Parsed::Message(view)) => Some(view.head().store_timestamp),
            _ => None,
        }
    }

    pub(super) fn on_earliest_store_time(shared: &Shared, request: &RemotingCommand) -> Answer {
        let header = QueueRequestHeader::decode(&request.ext_fields)?;
        let min = shared.store.queue_offsets(&header.topic, header.queue_id).map_or(0, |(min, _)| min.0);
        let time = Self::store_time(shared, &header.topic, header.queue_id, min).unwrap_or(-1);
        let mut reply = ok(request);
        reply.ext_fields.insert("timestamp", time.to_string());
        Ok(reply)
    }

    /// The first offset stored at or after `timestamp` (LOWER), or the last at or before it
    /// (UPPER).
    pub(super) fn on_search_offset(shared: &Shared, request: &RemotingCommand) -> Answer {
        let header = SearchOffsetRequestHeader::decode(&request.ext_fields)?;
        let upper = header.boundary_type.as_deref().is_some_and(|b| b.eq_ignore_ascii_case("UPPER"));
        let offset = Self::offset_at_time(shared, &header.topic, header.queue_id, header.timestamp, upper);
        Ok(offset_reply(request, wire_long(offset)))
    }

    /// The first offset of a queue stored at or after `timestamp`, or (`upper`) the last at
    /// or before it: a binary search over store times, which never go backwards in a queue.
    pub(in crate::broker) fn offset_at_time(
        shared: &Shared,
        topic: &str,
        queue_id: i32,
        timestamp: i64,
        upper: bool,
    ) -> u64 {
        let (min, _) = shared.store.queue_offsets(topic, queue_id).map_or((0, 0), |(a, b)| (a.0, b.0));
        let readable = shared.store.readable_next(topic, queue_id).map_or(0, |n| n.0);
        // Find the first offset whose time is > t (UPPER) or ≥ t (LOWER).
        let (mut low, mut high) = (min, readable);
        while low < high {
            let mid = low + (high - low) / 2;
            match Self::store_time(shared, topic, queue_id, mid) {
                Some(time) if time < timestamp || (upper && time == timestamp) => low = mid + 1,
                Some(_) => high = mid,
                None => high = mid,
            }
        }
        if upper {
            low.saturating_sub(1).max(min)
        } else {
            low
        }
    }

    pub(super) fn on_view_message(shared: &Shared, request: &RemotingCommand) -> Answer {
        let header = ViewMessageRequestHeader::decode(&request.ext_fields)?;
        // A negative offset from the wire names nothing: it reads as missing.
        let offset = PhysOffset(u64::try_from(header.offset).unwrap_or(u64::MAX));
        let record = shared.store.read_record_at(&*shared.reader, offset).map_err(|_| {
            Refusal::SystemError(format!("can not find message by the offset, {}", header.offset))
        })?;
        Ok(ok(request).with_body(record))
    }

    pub(super) fn on_runtime_info(
        &self,
        shared: &Shared,
        now: Now,
        request: &RemotingCommand,
        view: RuntimeView<'_>,
    ) -> RemotingCommand {
        let send_head_wait_ms =
            shared.replies.oldest_since().map_or(0, |since| now.mono.0.saturating_sub(since.0) / 1_000_000);
        let (today, yesterday) = (self.days.today(), self.days.yesterday());
        let counters = view.counters;
        let current = |index: usize| counters.get(index).copied().unwrap_or(0);
        let three = |index: usize| self.rates.three_windows(now.mono, index, current(index));
        let minute =
            |index: usize| format!("{:?}", self.rates.per_second(now.mono, 60, index, current(index)));
        let (producers, consumers) = view.consumers.clients.counts();
        let mut entries: Vec<(String, String)> = view.progress;
        let fixed: Vec<(&str, String)> = vec![
            ("brokerVersionDesc", "V5_3_3".into()),
            ("brokerVersion", crate::protocol::SERVER_VERSION.to_string()),
            ("brokerActive", "true".into()),
            ("msgPutTotalTodayNow", shared.stats.messages_put.to_string()),
            ("msgGetTotalTodayNow", shared.stats.messages_got.to_string()),
            ("msgPutTotalTodayMorning", today[RATE_PUT].to_string()),
            ("msgGetTotalTodayMorning", today[RATE_GOT].to_string()),
            ("msgPutTotalYesterdayMorning", yesterday[RATE_PUT].to_string()),
            ("msgGetTotalYesterdayMorning", yesterday[RATE_GOT].to_string()),
            ("putTps", three(RATE_PUT)),
            ("getTransferredTps", three(RATE_GOT)),
            ("timerEnqueueTps", minute(RATE_TIMER_IN)),
            ("timerDequeueTps", minute(RATE_TIMER_OUT)),
            ("sendThreadPoolQueueSize", shared.replies.len().to_string()),
            ("pullThreadPoolQueueSize", view.consumers.holds.len().to_string()),
            // Sends wait in line for durability: the oldest one's age.
            ("sendThreadPoolQueueHeadWaitTimeMills", send_head_wait_ms.to_string()),
            ("pullThreadPoolQueueHeadWaitTimeMills", "0".into()),
            ("pageCacheLockTimeMills", "0".into()),
            ("commitLogMinOffset", shared.store.min_phys().to_string()),
            ("commitLogMaxOffset", shared.store.write_pos().0.to_string()),
            // Appended but not yet visible to consumers (written, and flushed under SYNC_FLUSH).
            (
                "dispatchBehindBytes",
                shared.store.write_pos().0.saturating_sub(shared.store.visible_end().0).to_string(),
            ),
            // The share of the store's file system in use (0 to 1), as of the last check.
            (
                "commitLogDiskRatio",
                shared
                    .store
                    .disk_usage()
                    .map_or_else(|| "0.0".into(), |u| format!("{}", u.used_per_mille() as f64 / 1000.0)),
            ),
            ("commitLogDirCapacity", disk_capacity(shared.store.disk_usage())),
            // Keel's own: times the store was rebuilt in place after a disk error, since boot.
            ("storeRepairs", shared.stats.store_repairs.to_string()),
            // Keel's own: times this slave's log was copied anew, not continuing its master's.
            ("replicaCopiedAnew", shared.stats.replica_copied_anew.to_string()),
            ("bootTimestamp", self.booted_at.0.to_string()),
            ("runtime", format!("{} ms", self.booted_at.millis_until(now.wall))),
            ("producerGroups", producers.to_string()),
            ("consumerGroups", consumers.to_string()),
        ];
        entries.extend(fixed.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let table = KvTable { table: entries.into_iter().collect() };
        ok(request).with_body(json::to_body(&table, KeyStyle::Fastjson))
    }

    pub(super) fn on_update_topic(shared: &mut Shared, now: Now, request: &RemotingCommand) -> Answer {
        let header = CreateTopicRequestHeader::decode(&request.ext_fields)?;
        let system = header.topic == crate::broker::topics::TBW102
            || header.topic == crate::broker::topics::SELF_TEST_TOPIC;
        if !crate::broker::topics::valid_topic_name(&header.topic) || system {
            return Err(Refusal::InvalidParameter(format!(
                "the topic[{}] is invalid or reserved",
                header.topic
            )));
        }
        let queues_ok =
            (1..=1024).contains(&header.read_queue_nums) && (1..=1024).contains(&header.write_queue_nums);
        if !queues_ok {
            return Err(Refusal::InvalidParameter("queue counts must be between 1 and 1024".into()));
        }
        let current = shared.topics.get(&header.topic).map(|c| c.attributes.clone());
        let creating = current.is_none();
        let attributes = crate::broker::topics::alter_attributes(
            &current.unwrap_or_default(),
            header.attributes.as_deref().unwrap_or(""),
            creating,
        )
        .map_err(Refusal::InvalidParameter)?;
        let config = TopicConfig {
            attributes,
            topic_name: header.topic,
            read_queue_nums: header.read_queue_nums,
            write_queue_nums: header.write_queue_nums,
            perm: header.perm & crate::protocol::body::perm::READ_WRITE,
            topic_filter_type: header.topic_filter_type.unwrap_or_else(|| "SINGLE_TAG".into()),
            topic_sys_flag: header.topic_sys_flag.unwrap_or(0),
            order: header.order.unwrap_or(false),
        };
        shared.topics.put(config, now.wall);
        shared.topics_changed();
        Ok(ok(request))
    }

    pub(super) fn on_delete_topic(
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        request: &RemotingCommand,
    ) -> Answer {
        let topic = request.ext_fields.get("topic").unwrap_or("").to_owned();
        if topic.is_empty() || topic == crate::broker::topics::TBW102 {
            return Err(Refusal::InvalidParameter(format!("the topic[{topic}] cannot be deleted")));
        }
        if shared.topics.remove(&topic, now.wall) {
            consumers.remove_topic(&topic);
            shared.traffic.forget_topic(&topic);
            shared.topics_changed();
        }
        Ok(ok(request))
    }
}

/// RocketMQ's `commitLogDirCapacity`: "Total : 49.1 GiB, Free : 12.0 GiB." (unknown: zeros).
fn disk_capacity(usage: Option<crate::io::DiskUsage>) -> String {
    let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
    let (total, free) = usage.map_or((0, 0), |u| (u.capacity(), u.available));
    format!("Total : {:.1} GiB, Free : {:.1} GiB.", gib(total), gib(free))
}
