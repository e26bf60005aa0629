//! PULL_MESSAGE and LITE_PULL_MESSAGE, with long polling.
//!
//! Statuses follow RocketMQ exactly (`PullMessageProcessor`):
//!
//! | situation | code | nextBeginOffset |
//! |-----------|------|-----------------|
//! | queue missing or empty | PULL_OFFSET_MOVED if offset ≠ 0, else PULL_NOT_FOUND | 0 |
//! | offset < min | PULL_OFFSET_MOVED | min |
//! | offset = max, or nothing visible yet | PULL_NOT_FOUND (held if the client allows) | offset |
//! | offset > max | PULL_OFFSET_MOVED | max |
//! | messages found | SUCCESS | after the last entry scanned |
//! | entries scanned, none matched the tags | PULL_RETRY_IMMEDIATELY | after the scan |
//!
//! A pull that finds nothing, with the suspend flag, is held until a message arrives in its
//! queue or its time is up, then answered; the held request occupies nothing on its
//! connection, so later requests on the same connection are served meanwhile.

use crate::broker::refusal::Refusal;
use crate::broker::shared::Shared;
use crate::io::{ConnId, MonoNanos, Now};
use crate::protocol::body::{perm, SubscriptionData};
use crate::protocol::headers::{CommandHeader, PullMessageRequestHeader, PullMessageResponseHeader};
use crate::protocol::{wire_long, RemotingCommand, ResponseCode};
use crate::store::{PhysOffset, QueueOffset};

/// PullSysFlag: commit the offset carried in the request.
const FLAG_COMMIT_OFFSET: i32 = 0x1;
/// PullSysFlag: the broker may hold the pull.
const FLAG_SUSPEND: i32 = 0x2;
/// PullSysFlag: the subscription travels in the request.
const FLAG_SUBSCRIPTION: i32 = 0x4;
/// Most messages in one answer.
const MAX_MESSAGES: u64 = 32;
/// Most body bytes in one answer (RocketMQ's in-memory limit).
const MAX_BYTES: usize = 256 * 1024;

/// A pull waiting for messages.
#[derive(Debug, Clone)]
pub struct PullHold {
    /// The client's connection.
    pub conn: ConnId,
    /// When to answer regardless.
    pub deadline: MonoNanos,
    /// When the runtime read the request: the latency metric's start.
    received: MonoNanos,
    request: RemotingCommand,
    header: PullMessageRequestHeader,
    subscription: SubscriptionData,
}

/// What one attempt at a pull produced.
struct Outcome {
    code: ResponseCode,
    next_begin: u64,
    min: u64,
    max: u64,
    body: Vec<u8>,
    status: &'static str,
    /// Where the last entry read points in the CommitLog: how far behind the pull is.
    last_phys: Option<PhysOffset>,
}

impl super::Consumers {
    pub(in crate::broker) fn on_pull(
        &mut self,
        shared: &mut Shared,
        now: Now,
        conn: ConnId,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        let slave = shared.config.role.is_slave();
        if slave && !shared.config.slave_read_enable {
            // RocketMQ 5's slaves reject pulls unless slaveReadEnable; clients back off.
            let refusal = Refusal::Busy("[REJECTREQUEST]system busy, start flow control for a while".into());
            return Some(refusal.reply_to(&request));
        }
        let header = match PullMessageRequestHeader::decode(&request.ext_fields) {
            Ok(header) => header,
            Err(e) => return Some(Refusal::from(e).reply_to(&request)),
        };
        let subscription = match self.pull_subscription(&header) {
            Ok(subscription) => subscription,
            Err(refusal) => return Some(refusal.reply_to(&request)),
        };
        if let Err(refusal) = self
            .check_group(shared, now, &header.consumer_group)
            .and_then(|()| Self::check_pull_target(shared, &header))
        {
            return Some(refusal.reply_to(&request));
        }
        // A reset pending for this queue: the client restarts from the reset offset.
        if let Some(target) =
            self.take_reset(&header.consumer_group, &header.topic, header.queue_id, header.queue_offset)
        {
            let (min, max) = shared
                .store
                .queue_offsets(&header.topic, header.queue_id)
                .map_or((0, 0), |(a, b)| (a.0, b.0));
            let outcome = Outcome {
                code: ResponseCode::PULL_OFFSET_MOVED,
                next_begin: target,
                min,
                max,
                body: Vec::new(),
                status: "OFFSET_RESET",
                last_phys: None,
            };
            return Some(Self::pull_reply(shared, &request, outcome));
        }
        // A slave keeps no offset a pull carries (RocketMQ's storeOffsetEnable).
        if !slave && header.sys_flag & FLAG_COMMIT_OFFSET != 0 && header.commit_offset >= 0 {
            self.commit_offset(&header.consumer_group, &header.topic, header.queue_id, header.commit_offset);
        }
        let outcome = Self::pull_once(shared, &header, &subscription);
        let may_hold = header.sys_flag & FLAG_SUSPEND != 0 && self.holds.len() < shared.config.max_pull_holds;
        if outcome.code == ResponseCode::PULL_NOT_FOUND && may_hold && header.suspend_timeout_millis > 0 {
            let hold_ms =
                u64::try_from(header.suspend_timeout_millis).unwrap_or(0).min(shared.config.max_pull_hold_ms);
            self.holds.push(PullHold {
                conn,
                deadline: now.mono.plus_millis(hold_ms),
                received: shared.request_received,
                request,
                header,
                subscription,
            });
            return None;
        }
        Some(Self::pull_reply(shared, &request, outcome))
    }

    /// The subscription a pull filters by: the request's (subscription flag) or the one
    /// the group registered by heartbeat.
    fn pull_subscription(&self, header: &PullMessageRequestHeader) -> Result<SubscriptionData, Refusal> {
        let expression_type = header.expression_type.as_deref().unwrap_or("TAG");
        if !expression_type.eq_ignore_ascii_case("TAG") {
            return Err(Refusal::SubscriptionParseFailed(format!(
                "{expression_type} filtering is not supported by this broker"
            )));
        }
        if header.sys_flag & FLAG_SUBSCRIPTION != 0 {
            let expression = header.subscription.as_deref().unwrap_or("*");
            return Ok(SubscriptionData::from_expression(&header.topic, expression, header.sub_version));
        }
        let group = self.clients.consumer_group(&header.consumer_group).ok_or_else(|| {
            Refusal::SubscriptionNotExist(format!(
                "the consumer's group info not exist: {}",
                header.consumer_group
            ))
        })?;
        let registered = group.subscriptions.get(&header.topic).ok_or_else(|| {
            Refusal::SubscriptionNotExist(format!("the consumer's subscription not exist: {}", header.topic))
        })?;
        if registered.sub_version < header.sub_version {
            return Err(Refusal::SubscriptionNotLatest("the consumer's subscription not latest".into()));
        }
        Ok(registered.clone())
    }

    fn check_pull_target(shared: &Shared, header: &PullMessageRequestHeader) -> Result<(), Refusal> {
        let config = shared.topics.get(&header.topic).ok_or_else(|| {
            Refusal::TopicNotExist(format!("topic[{}] not exist, apply first please!", header.topic))
        })?;
        if !perm::readable(config.perm) {
            return Err(Refusal::NoPermission(format!(
                "the topic[{}] pulling message is forbidden",
                header.topic
            )));
        }
        if header.queue_id < 0 || header.queue_id >= config.read_queue_nums {
            return Err(Refusal::InvalidParameter(format!(
                "queueId[{}] is illegal, topic {} has {} read queues",
                header.queue_id, header.topic, config.read_queue_nums
            )));
        }
        Ok(())
    }

    fn pull_once(
        shared: &mut Shared,
        header: &PullMessageRequestHeader,
        subscription: &SubscriptionData,
    ) -> Outcome {
        let offset = u64::try_from(header.queue_offset).unwrap_or(0);
        let (min, max) =
            shared.store.queue_offsets(&header.topic, header.queue_id).map_or((0, 0), |(a, b)| (a.0, b.0));
        let moved = |next_begin, status| Outcome {
            code: ResponseCode::PULL_OFFSET_MOVED,
            next_begin,
            min,
            max,
            body: Vec::new(),
            status,
            last_phys: None,
        };
        let not_found = |status| Outcome {
            code: ResponseCode::PULL_NOT_FOUND,
            next_begin: offset,
            min,
            max,
            body: Vec::new(),
            status,
            last_phys: None,
        };
        if max == 0 {
            return if offset == 0 {
                not_found("NO_MESSAGE_IN_QUEUE")
            } else {
                moved(0, "NO_MESSAGE_IN_QUEUE")
            };
        }
        if offset < min {
            return moved(min, "OFFSET_TOO_SMALL");
        }
        if offset == max {
            return not_found("OFFSET_OVERFLOW_ONE");
        }
        if offset > max {
            return moved(max, "OFFSET_OVERFLOW_BADLY");
        }
        let max_messages = u64::try_from(header.max_msg_nums).unwrap_or(0).clamp(1, MAX_MESSAGES);
        let max_bytes =
            header.max_msg_bytes.and_then(|b| usize::try_from(b).ok()).unwrap_or(MAX_BYTES).min(MAX_BYTES);
        let entries = match shared.store.read_entries(
            &*shared.reader,
            &header.topic,
            header.queue_id,
            QueueOffset(offset),
            max_messages,
        ) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, topic = %header.topic, queue = header.queue_id, "reading a consume queue failed");
                Vec::new()
            }
        };
        if entries.is_empty() {
            // Entries exist but are not visible yet (not written, or not flushed).
            return not_found("OFFSET_FOUND_NULL");
        }
        let mut body = Vec::new();
        let mut scanned = 0u64;
        let mut found = 0u64;
        // Entries into segments retention is deleting are passed over, as RocketMQ skips
        // to the next file: the queue's minimum is moving past them.
        let log_min = shared.store.min_phys();
        let mut last_phys = None;
        for entry in &entries {
            if found > 0 && body.len() + entry.size as usize > max_bytes {
                break;
            }
            scanned += 1;
            last_phys = Some(entry.phys_offset);
            if entry.phys_offset < log_min || !subscription.matches_code(entry.tags_code) {
                continue;
            }
            match shared.store.read_record(&*shared.reader, entry.phys_offset, entry.size) {
                Ok(record) => {
                    body.extend_from_slice(&record);
                    found += 1;
                }
                Err(error) => {
                    // Never deliver damaged bytes, and never skip them either: a misread is
                    // often transient, and skipping would lose the message for good. The
                    // pull stops before it; the client retries after its error back-off,
                    // and a record that stays damaged holds its queue loudly (an operator
                    // resets the group's offset past it) rather than vanishing silently.
                    tracing::error!(%error, topic = %header.topic, queue = header.queue_id, "unreadable record: pull stops before it");
                    scanned -= 1;
                    if scanned == 0 {
                        return Outcome {
                            code: ResponseCode::SYSTEM_ERROR,
                            next_begin: offset,
                            min,
                            max,
                            body,
                            status: "record unreadable (CRC mismatch); retry later",
                            last_phys: None,
                        };
                    }
                    break;
                }
            }
        }
        let next_begin = offset + scanned;
        shared.stats.messages_got += found;
        let queue = (header.topic.as_str(), header.consumer_group.as_str(), header.queue_id);
        shared.traffic.got(queue, found, body.len() as u64, next_begin);
        if found > 0 {
            Outcome { code: ResponseCode::SUCCESS, next_begin, min, max, body, status: "FOUND", last_phys }
        } else {
            Outcome {
                code: ResponseCode::PULL_RETRY_IMMEDIATELY,
                next_begin,
                min,
                max,
                body,
                status: "NO_MATCHED_MESSAGE",
                last_phys,
            }
        }
    }

    /// Which broker the consumer should pull from next (`suggestWhichBrokerId`): with
    /// `slaveReadEnable`, a slave once the pull reads further behind the log's end than
    /// `slow_consume_bytes` (RocketMQ: 40% of memory), so it stops evicting the master's
    /// page cache; the master otherwise.
    fn suggest(shared: &Shared, outcome: &Outcome) -> i64 {
        let config = &shared.config;
        let behind = outcome.last_phys.map_or(0, |at| shared.store.write_pos().bytes_since(at));
        if config.slave_read_enable && behind > config.slow_consume_bytes {
            config.which_broker_when_consume_slowly
        } else {
            0
        }
    }

    fn pull_reply(shared: &Shared, request: &RemotingCommand, outcome: Outcome) -> RemotingCommand {
        let suggest_which_broker_id = Self::suggest(shared, &outcome);
        let mut reply = RemotingCommand::response_to(request, outcome.code, Some(outcome.status.to_owned()));
        let header = PullMessageResponseHeader {
            suggest_which_broker_id,
            next_begin_offset: wire_long(outcome.next_begin),
            min_offset: wire_long(outcome.min),
            max_offset: wire_long(outcome.max),
            ..PullMessageResponseHeader::default()
        };
        reply.ext_fields = header.to_ext_fields();
        reply.with_body(outcome.body)
    }

    /// Answer held pulls whose queue has something new, or whose time is up.
    pub(in crate::broker) fn wake_holds(&mut self, shared: &mut Shared, now: Now) {
        if self.holds.is_empty() {
            return;
        }
        let holds = core::mem::take(&mut self.holds);
        if shared.config.role.is_slave() && !shared.config.slave_read_enable {
            // Held while this broker was master, which it no longer is (a failover): its
            // log may hold a tail the new master does not have, about to be cut back, so
            // nothing is served; the consumers pull again from the master.
            for hold in holds {
                let refusal = Refusal::Busy("[REJECTREQUEST]this broker is no longer master".into());
                crate::remoting::send(&mut shared.out, hold.conn, &refusal.reply_to(&hold.request));
            }
            return;
        }
        for hold in holds {
            let offset = u64::try_from(hold.header.queue_offset).unwrap_or(0);
            let readable = shared
                .store
                .readable_next(&hold.header.topic, hold.header.queue_id)
                .is_some_and(|next| next.0 > offset);
            let expired = now.mono >= hold.deadline;
            if !readable && !expired {
                self.holds.push(hold);
                continue;
            }
            if readable && shared.store.config().mutated(crate::mutation::Mutation::DropHeldPull) {
                continue;
            }
            let outcome = Self::pull_once(shared, &hold.header, &hold.subscription);
            if outcome.code == ResponseCode::PULL_NOT_FOUND && !expired {
                // Written but not yet visible (SYNC_FLUSH waits for the fsync): keep holding.
                self.holds.push(hold);
                continue;
            }
            let reply = Self::pull_reply(shared, &hold.request, outcome);
            let waited = now.mono.0.saturating_sub(hold.received.0);
            shared.traffic.answered(hold.request.code, reply.code, true, waited);
            crate::remoting::send(&mut shared.out, hold.conn, &reply);
        }
    }
}
