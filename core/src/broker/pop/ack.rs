//! ACK_MESSAGE, BATCH_ACK_MESSAGE and CHANGE_MESSAGE_INVISIBLETIME (`AckMessageProcessor`,
//! `ChangeInvisibleTimeProcessor`).
//!
//! An ack of a FIFO message commits the group's offset up to the first message of its
//! batch not acknowledged, and answers at once. Any other ack is a record in the revive
//! queue its handle names, and is answered once that record is as durable as a send would
//! be: an ack answered is never lost. A change of invisible time writes a new checkpoint
//! for the one message and an ack of the old, in one append to the same revive queue, and
//! answers the new handle's pop time.

use super::receipt::{ReceiptHandle, RetryMark, ORDER_REVIVE_QID};
use super::records::{AckRecord, CheckPoint, ACK_TAG, BATCH_ACK_TAG, CK_TAG};
use super::take::append_revive_record;
use super::{PopService, REVIVE_QUEUES};
use crate::broker::consumers::Consumers;
use crate::broker::refusal::Refusal;
use crate::broker::send::durable::Wait;
use crate::broker::shared::Shared;
use crate::broker::topics::RETRY_PREFIX;
use crate::io::{ConnId, Now};
use crate::protocol::headers::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    CommandHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::{wire_long, RemotingCommand, ResponseCode};
use crate::store::AppendRequest;
use crate::store::{FlushMode, PhysOffset};

/// One batch of a BATCH_ACK_MESSAGE body (`BatchAck`): the acknowledged offsets as a bit
/// set over `startOffset`, base64 of Java's `BitSet.toByteArray`.
#[derive(Debug, Clone, serde::Deserialize)]
struct BatchAck {
    #[serde(rename = "c", alias = "consumerGroup")]
    consumer_group: String,
    #[serde(rename = "t", alias = "topic")]
    topic: String,
    #[serde(rename = "r", alias = "retry")]
    retry: String,
    #[serde(rename = "so", alias = "startOffset")]
    start_offset: i64,
    #[serde(rename = "q", alias = "queueId")]
    queue_id: i32,
    #[serde(rename = "rq", alias = "reviveQueueId")]
    revive_queue_id: i32,
    #[serde(rename = "pt", alias = "popTime")]
    pop_time: i64,
    #[serde(rename = "b", alias = "bitSet", default)]
    bit_set: Option<String>,
}

/// A BATCH_ACK_MESSAGE body (`BatchAckMessageRequestBody`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchAckBody {
    #[serde(default)]
    acks: Vec<BatchAck>,
}

/// The offsets a Java `BitSet.toByteArray` (little-endian bits) marks, over `start`.
fn bit_set_offsets(bytes: &[u8], start: i64) -> Vec<i64> {
    let mut offsets = Vec::new();
    for (byte_index, byte) in bytes.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                offsets.push(start + i64::try_from(byte_index * 8 + bit).unwrap_or(0));
            }
        }
    }
    offsets
}

/// The topic a handle's message was read from: a retry topic named in the request is
/// taken as it is; otherwise the handle's mark says which.
fn read_topic(topic: &str, group: &str, mark: RetryMark) -> String {
    if topic.starts_with(RETRY_PREFIX) {
        topic.to_owned()
    } else {
        mark.real_topic(topic, group)
    }
}

/// A request's receipt handle, and the topic its message was read from.
fn handle_and_topic(extra_info: &str, topic: &str, group: &str) -> Result<(ReceiptHandle, String), Refusal> {
    let handle = ReceiptHandle::parse(extra_info).map_err(|e| Refusal::InvalidParameter(e.to_string()))?;
    let topic = read_topic(topic, group, handle.retry);
    Ok((handle, topic))
}

impl PopService {
    /// ACK_MESSAGE; `None` while the reply waits for the ack record's durability.
    pub(in crate::broker) fn on_ack(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, Refusal> {
        let header = AckMessageRequestHeader::decode(&request.ext_fields).map_err(Refusal::from)?;
        let (handle, topic) = handle_and_topic(&header.extra_info, &header.topic, &header.consumer_group)?;
        let ok = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        self.stats.acked += 1;
        if handle.is_order() {
            self.order_ack(consumers, &header.consumer_group, &topic, header.queue_id, &[header.offset]);
            return Ok(Some(ok));
        }
        let record = AckRecord {
            ack_offset: Some(header.offset),
            ack_offset_list: Vec::new(),
            start_offset: handle.ck_start_offset,
            consumer_group: header.consumer_group,
            topic,
            queue_id: header.queue_id,
            pop_time: handle.pop_time,
            broker_name: Some(shared.config.broker_name.clone()),
        };
        let end = Self::write_ack(shared, now, handle.revive_qid, ACK_TAG, &record)?;
        reply_when_durable(shared, now, conn, request, ok, end);
        Ok(None)
    }

    /// BATCH_ACK_MESSAGE: every batch in the body, answered once the last record is durable.
    pub(in crate::broker) fn on_batch_ack(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, Refusal> {
        let body: BatchAckBody = json::from_slice(&request.body)
            .map_err(|e| Refusal::InvalidParameter(format!("batch ack body: {e}")))?;
        let ok = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        let mut last = None;
        for ack in body.acks {
            let bits = match ack.bit_set.as_deref() {
                Some(text) => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| Refusal::InvalidParameter(format!("batch ack bit set: {e}")))?
                }
                None => Vec::new(),
            };
            let offsets = bit_set_offsets(&bits, ack.start_offset);
            if offsets.is_empty() {
                continue;
            }
            let mark = match ack.retry.as_str() {
                "1" => RetryMark::Retry,
                "2" => RetryMark::RetryV2,
                _ => RetryMark::Normal,
            };
            let topic = read_topic(&ack.topic, &ack.consumer_group, mark);
            self.stats.acked += offsets.len() as u64;
            if ack.revive_queue_id == ORDER_REVIVE_QID {
                self.order_ack(consumers, &ack.consumer_group, &topic, ack.queue_id, &offsets);
                continue;
            }
            let record = AckRecord {
                ack_offset: None,
                ack_offset_list: offsets,
                start_offset: ack.start_offset,
                consumer_group: ack.consumer_group,
                topic,
                queue_id: ack.queue_id,
                pop_time: ack.pop_time,
                broker_name: Some(shared.config.broker_name.clone()),
            };
            last = Some(Self::write_ack(shared, now, ack.revive_queue_id, BATCH_ACK_TAG, &record)?);
        }
        match last {
            Some(end) => {
                reply_when_durable(shared, now, conn, request, ok, end);
                Ok(None)
            }
            None => Ok(Some(ok)),
        }
    }

    /// CHANGE_MESSAGE_INVISIBLETIME; `None` while the reply waits for durability.
    pub(in crate::broker) fn on_change_invisible(
        &mut self,
        shared: &mut Shared,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, Refusal> {
        let header = ChangeInvisibleTimeRequestHeader::decode(&request.ext_fields).map_err(Refusal::from)?;
        let (handle, topic) = handle_and_topic(&header.extra_info, &header.topic, &header.consumer_group)?;
        let pop_time = now.wall.0;
        let mut reply = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        let offset =
            u64::try_from(header.offset).map_err(|_| Refusal::InvalidParameter("negative offset".into()))?;
        if handle.is_order() {
            let key = (header.consumer_group.clone(), topic, header.queue_id);
            let visible_at = super::mono_ms(now).saturating_add(header.invisible_time);
            if !self.order.postpone(&key, offset, pop_time, visible_at) {
                return Err(Refusal::InvalidParameter(format!(
                    "offset {offset} of queue {} is not in the batch out",
                    header.queue_id
                )));
            }
            reply.ext_fields = ChangeInvisibleTimeResponseHeader {
                pop_time,
                invisible_time: header.invisible_time,
                revive_qid: ORDER_REVIVE_QID,
            }
            .to_ext_fields();
            return Ok(Some(reply));
        }
        check_revive_qid(handle.revive_qid)?;
        let ck = CheckPoint {
            start_offset: header.offset,
            pop_time,
            invisible_time: header.invisible_time,
            bit_map: 0,
            num: 1,
            queue_id: header.queue_id,
            topic: topic.clone(),
            cid: header.consumer_group.clone(),
            revive_offset: -1,
            queue_offset_diff: vec![0],
            broker_name: Some(shared.config.broker_name.clone()),
        };
        let ack = AckRecord {
            ack_offset: Some(header.offset),
            ack_offset_list: Vec::new(),
            start_offset: handle.ck_start_offset,
            consumer_group: header.consumer_group,
            topic,
            queue_id: header.queue_id,
            pop_time: handle.pop_time,
            broker_name: Some(shared.config.broker_name.clone()),
        };
        let revive_topic = super::records::revive_topic(&shared.config.cluster_name);
        let ck_props = properties::encode(&[(keys::TAGS, CK_TAG), (keys::WAIT, "false")]);
        let ack_props = properties::encode(&[(keys::TAGS, ACK_TAG), (keys::WAIT, "false")]);
        let (ck_body, ack_body) =
            (json::to_body(&ck, KeyStyle::Fastjson), json::to_body(&ack, KeyStyle::Fastjson));
        let (host, qid) = (shared.config.advertised_addr, handle.revive_qid);
        let requests = [
            AppendRequest::broker_record(&revive_topic, qid, now, host, &ck_body, &ck_props),
            AppendRequest::broker_record(&revive_topic, qid, now, host, &ack_body, &ack_props),
        ];
        let appended = shared.store.append_batch(now, &requests).map_err(Refusal::from)?;
        shared.stats.messages_put += appended.len() as u64;
        let end = appended.last().map_or(PhysOffset(0), crate::store::Appended::end);
        reply.ext_fields = ChangeInvisibleTimeResponseHeader {
            pop_time,
            invisible_time: header.invisible_time,
            revive_qid: handle.revive_qid,
        }
        .to_ext_fields();
        reply_when_durable(shared, now, conn, request, reply, end);
        Ok(None)
    }

    /// FIFO acks: commit up to the first message of the batch not acknowledged.
    fn order_ack(
        &mut self,
        consumers: &mut Consumers,
        group: &str,
        topic: &str,
        queue_id: i32,
        offsets: &[i64],
    ) {
        let key = (group.to_owned(), topic.to_owned(), queue_id);
        for offset in offsets.iter().filter_map(|o| u64::try_from(*o).ok()) {
            let commit = self.order.ack(&key, offset);
            tracing::debug!(group, topic, queue = queue_id, offset, ?commit, "FIFO ack");
            if let Some(commit) = commit {
                let current = consumers.offsets.get(group, topic, queue_id);
                if current.is_none_or(|c| c < wire_long(commit)) {
                    consumers.commit_offset(group, topic, queue_id, wire_long(commit));
                }
            }
        }
        self.recheck = true;
    }

    fn write_ack(
        shared: &mut Shared,
        now: Now,
        revive_qid: i32,
        tag: &str,
        record: &AckRecord,
    ) -> Result<PhysOffset, Refusal> {
        check_revive_qid(revive_qid)?;
        append_revive_record(shared, now, revive_qid, tag, &json::to_body(record, KeyStyle::Fastjson))
    }
}

fn check_revive_qid(revive_qid: i32) -> Result<(), Refusal> {
    if (0..REVIVE_QUEUES).contains(&revive_qid) {
        Ok(())
    } else {
        Err(Refusal::InvalidParameter(format!("revive queue {revive_qid} does not exist")))
    }
}

/// Answer once `end` is as durable as a send's reply would wait for.
fn reply_when_durable(
    shared: &mut Shared,
    now: Now,
    conn: ConnId,
    request: &RemotingCommand,
    reply: RemotingCommand,
    end: PhysOffset,
) {
    let flush = matches!(shared.store.config().flush_mode, FlushMode::Sync);
    shared.reply_when_durable(now, conn, request, reply, end, Wait { flush, slave: true });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_java_bit_set_marks_offsets_from_the_start() {
        // BitSet{0, 2, 9}.toByteArray() = [0b0000_0101, 0b0000_0010].
        assert_eq!(bit_set_offsets(&[0b0000_0101, 0b0000_0010], 100), vec![100, 102, 109]);
        assert!(bit_set_offsets(&[], 5).is_empty());
    }
}
