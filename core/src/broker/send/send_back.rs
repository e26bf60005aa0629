//! CONSUMER_SEND_MSG_BACK: a consumer failed a message, so the broker stores a copy for a
//! later retry (`AbstractSendMessageProcessor.consumerSendMsgBack`).
//!
//! The copy goes to the group's retry topic `%RETRY%<group>` with `reconsumeTimes + 1`,
//! delayed by level `3 + reconsumeTimes` unless the consumer chose one; once the original
//! has been retried `maxReconsumeTimes` times (or the consumer asks with a negative level)
//! it goes to the dead-letter topic `%DLQ%<group>` instead, which the group never consumes.
//! The reply waits until the copy is as durable as a send would be: the consumer commits
//! its offset past the original once it hears SUCCESS, so the copy must not be lost after.

use crate::broker::consumers::Consumers;
use crate::broker::delay::SCHEDULE_TOPIC;
use crate::broker::refusal::Refusal;
use crate::broker::shared::Shared;
use crate::broker::topics::{DLQ_PREFIX, RETRY_PREFIX};
use crate::io::{ConnId, Now};
use crate::protocol::headers::{CommandHeader, ConsumerSendMsgBackRequestHeader};
use crate::protocol::message::message_id::offset_message_id;
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{parse_record, sys_flag, Parsed};
use crate::protocol::{RemotingCommand, ResponseCode};
use crate::store::{AppendRequest, FlushMode, PhysOffset};

/// Where a sent-back message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendBackTarget {
    /// The retry topic's `queue_id`, after waiting at delay `level`.
    Retry {
        /// Queue of the retry topic.
        queue_id: i32,
        /// Delay level (already clamped to the highest).
        level: i32,
    },
    /// The dead-letter queue (queue 0 of `%DLQ%<group>`), at once.
    DeadLetter,
}

/// The retry decision, as a pure function: the original's `reconsume_times`, the
/// consumer's requested `delay_level` and the effective `max_reconsume_times`.
#[must_use]
pub fn send_back_target(
    reconsume_times: i32,
    delay_level: i32,
    max_reconsume_times: i32,
    max_level: i32,
    retry_queue_nums: i32,
    spread: u64,
) -> SendBackTarget {
    if reconsume_times >= max_reconsume_times || delay_level < 0 {
        return SendBackTarget::DeadLetter;
    }
    let level = if delay_level == 0 { reconsume_times.saturating_add(3) } else { delay_level };
    let queues = u64::try_from(retry_queue_nums.max(1)).unwrap_or(1);
    SendBackTarget::Retry {
        queue_id: i32::try_from(spread % queues).unwrap_or(0),
        level: level.clamp(1, max_level.max(1)),
    }
}

/// CONSUMER_SEND_MSG_BACK, over the send path.
impl super::SendPath {
    /// Handle CONSUMER_SEND_MSG_BACK; `None` when the reply waits for durability.
    pub(in crate::broker) fn on_send_back(
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Option<RemotingCommand> {
        match Self::try_send_back(shared, consumers, now, conn, request) {
            Ok(reply) => reply,
            Err(refusal) => Some(refusal.reply_to(request)),
        }
    }

    fn try_send_back(
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, Refusal> {
        let header = ConsumerSendMsgBackRequestHeader::decode(&request.ext_fields)
            .map_err(|e| Refusal::SystemError(e.to_string()))?;
        let ok = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        if shared.replies.len() >= shared.config.max_pending_replies {
            return Err(Refusal::Busy("broker busy: too many writes waiting for flush".into()));
        }
        let group = header.group.clone();
        let config = consumers.group_config(shared, now, &group)?;
        if config.retry_queue_nums <= 0 {
            // RocketMQ's rule: a group without retry queues drops failed messages.
            return Ok(Some(ok));
        }
        let lookup_failed =
            || Refusal::SystemError(format!("look message by offset failed, {}", header.offset));
        let phys = PhysOffset(u64::try_from(header.offset).map_err(|_| lookup_failed())?);
        let record = shared.store.read_record_at(&*shared.reader, phys).map_err(|_| lookup_failed())?;
        let Ok(Parsed::Message(original)) = parse_record(&record) else { return Err(lookup_failed()) };

        let max = header.max_reconsume_times.filter(|m| *m >= 0).unwrap_or(config.retry_max_times);
        let off_by_one = shared.store.config().mutated(crate::mutation::Mutation::DlqThresholdOffByOne);
        let max = if off_by_one { max + 1 } else { max };
        let target = send_back_target(
            original.head().reconsume_times,
            header.delay_level,
            max,
            shared.config.delay_levels.max_level(),
            config.retry_queue_nums,
            phys.0,
        );
        let retry_topic = format!("{RETRY_PREFIX}{group}");
        shared.ensure_group_topic(now, &retry_topic);

        let mut props = properties::without(
            original.record.properties,
            &[keys::CRC32, keys::WAIT, keys::DELAY, keys::REAL_TOPIC, keys::REAL_QID],
        );
        if properties::find(original.record.properties, keys::RETRY_TOPIC).is_none() {
            properties::push(&mut props, keys::RETRY_TOPIC, original.record.topic);
        }
        if properties::find(original.record.properties, keys::ORIGIN_MESSAGE_ID).is_none() {
            let id = offset_message_id(original.head().store_host, original.head().physical_offset);
            properties::push(&mut props, keys::ORIGIN_MESSAGE_ID, &id);
        }
        properties::push(&mut props, keys::WAIT, "false");
        // The topic the message was first sent to, for the dead-letter metric.
        let first_topic = properties::find(original.record.properties, keys::RETRY_TOPIC)
            .map_or_else(|| original.record.topic.to_owned(), |t| String::from_utf8_lossy(t).into_owned());
        let dead_letter = matches!(target, SendBackTarget::DeadLetter);
        let (topic, queue_id) = match target {
            SendBackTarget::DeadLetter => {
                let dlq = format!("{DLQ_PREFIX}{group}");
                shared.ensure_group_topic(now, &dlq);
                tracing::info!(
                    group,
                    offset = header.offset,
                    times = original.head().reconsume_times,
                    "message sent to the dead-letter queue"
                );
                (dlq, 0)
            }
            SendBackTarget::Retry { queue_id, level } => {
                properties::push(&mut props, keys::DELAY, &level.to_string());
                properties::push(&mut props, keys::REAL_TOPIC, &retry_topic);
                properties::push(&mut props, keys::REAL_QID, &queue_id.to_string());
                (SCHEDULE_TOPIC.to_owned(), level - 1)
            }
        };
        let append = AppendRequest {
            topic: &topic,
            queue_id,
            flag: original.head().flag,
            sys_flag: original.head().sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6),
            born_timestamp: original.head().born_timestamp,
            born_host: original.head().born_host,
            reconsume_times: original.head().reconsume_times.saturating_add(1),
            prepared_transaction_offset: 0,
            body: original.record.body,
            properties: &props,
        };
        let appended = shared.store.append(now, &append).map_err(|e| Refusal::SystemError(e.to_string()))?;
        shared.stats.messages_put += 1;
        if dead_letter {
            *shared.traffic.to_dlq.entry((first_topic, group)) += 1;
        }
        let flush = matches!(shared.store.config().flush_mode, FlushMode::Sync);
        let wait = super::durable::Wait { flush, slave: true };
        shared.reply_when_durable(now, conn, request, ok, appended.end(), wait);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_climb_the_levels_then_go_to_the_dlq() {
        let levels: Vec<SendBackTarget> =
            (0..=16).map(|times| send_back_target(times, 0, 16, 18, 1, 7)).collect();
        for (times, target) in levels.iter().enumerate().take(16) {
            let expected = i32::try_from(times).unwrap() + 3;
            assert_eq!(*target, SendBackTarget::Retry { queue_id: 0, level: expected.min(18) });
        }
        assert_eq!(levels[16], SendBackTarget::DeadLetter);
    }

    #[test]
    fn a_negative_level_goes_to_the_dlq_at_once_and_a_chosen_level_is_kept() {
        assert_eq!(send_back_target(0, -1, 16, 18, 1, 0), SendBackTarget::DeadLetter);
        assert_eq!(send_back_target(2, 5, 16, 18, 1, 0), SendBackTarget::Retry { queue_id: 0, level: 5 });
        assert_eq!(send_back_target(0, 99, 16, 18, 1, 0), SendBackTarget::Retry { queue_id: 0, level: 18 });
        // A limit of 0: the first failure is final.
        assert_eq!(send_back_target(0, 0, 0, 18, 1, 0), SendBackTarget::DeadLetter);
    }

    #[test]
    fn retry_queues_are_spread_by_offset() {
        assert_eq!(send_back_target(0, 0, 16, 18, 4, 6), SendBackTarget::Retry { queue_id: 2, level: 3 });
    }
}
