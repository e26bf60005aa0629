//! Recalling a timed message before it is due (RocketMQ 5.3.2's RECALL_MESSAGE, 370).
//!
//! A timed send is answered with a recall handle. RECALL_MESSAGE with it appends a marker
//! naming the message (its real topic and UNIQ_KEY), and the timer drops the message when
//! it comes due instead of storing it in its topic.
//!
//! Differs from RocketMQ, whose marker is one more timer in the wheel, due with the
//! message: Keel's markers wait in the timer topic's queue 1 ([`RECALL_QUEUE`]), which the
//! timer reads to its end before it delivers anything. So a marker is known before its
//! message comes due whatever their order in the queue, and a delivery need not wait for
//! every timer of its tick to be read. After a restart the queue is read again from its
//! start; markers whose tick the durable checkpoint has passed are forgotten.
//!
//! | marker property | value |
//! |---|---|
//! | `REAL_TOPIC` | the timed message's topic |
//! | `TIMER_DEL_UNIQKEY` | its UNIQ_KEY |
//! | `UNIQ_KEY` | the same |
//! | `TIMER_OUT_MS` | the handle's timestamp (the message's due time + 1, as RocketMQ gives it): the entry's tags code |
//! | `TAGS` | `_RECALL_TAG_` |

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::TIMER_TOPIC;
use crate::broker::refusal::Refusal;
use crate::broker::send::durable::Wait;
use crate::broker::shared::Shared;
use crate::io::{ConnId, MonoNanos, Now, UnixMillis};
use crate::protocol::headers::{CommandHeader, RecallMessageRequestHeader, RecallMessageResponseHeader};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{parse_record, Parsed};
use crate::protocol::{RemotingCommand, ResponseCode};
use crate::store::{AppendRequest, FlushMode, PhysOffset, QueueOffset};

/// The timer topic's queue recall markers wait in.
pub const RECALL_QUEUE: i32 = 1;
/// The tag of a recall marker (`RecallMessageProcessor.RECALL_MESSAGE_TAG`).
pub const RECALL_TAG: &str = "_RECALL_TAG_";
/// The property naming the UNIQ_KEY a marker recalls (`MessageConst.PROPERTY_TIMER_DEL_UNIQKEY`).
pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
/// Markers read per wake-up.
const READ_PER_WAKE: u64 = 4_096;
/// A marker whose record cannot be read this many times is skipped (logged).
const READ_ATTEMPTS: u32 = 50;

/// Base64 with the URL-safe alphabet: Java's `Base64.getUrlEncoder()` pads, and a handle
/// without padding is read too.
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A recall handle (`RecallMessageHandle.HandleV1`): `v1 topic brokerName timestamp
/// uniqKey`, space-separated, in URL-safe base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallHandle {
    /// The timed message's topic.
    pub topic: String,
    /// The broker that stored it.
    pub broker_name: String,
    /// Its due time + 1, ms (RocketMQ's `TIMER_OUT_MS + 1`), as text.
    pub timestamp: String,
    /// Its UNIQ_KEY.
    pub message_id: String,
}

impl RecallHandle {
    /// The handle of a message due at `due`, as a send answers it.
    #[must_use]
    pub fn for_timed(topic: &str, broker_name: &str, due: UnixMillis, message_id: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            broker_name: broker_name.to_owned(),
            timestamp: due.0.saturating_add(1).to_string(),
            message_id: message_id.to_owned(),
        }
    }

    /// The handle as text.
    #[must_use]
    pub fn encode(&self) -> String {
        let raw = format!("v1 {} {} {} {}", self.topic, self.broker_name, self.timestamp, self.message_id);
        URL_SAFE.encode(raw)
    }

    /// Read a handle: `None` unless it is base64 of `v1` and four more fields.
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        let raw = URL_SAFE.decode(text.trim()).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let mut items = raw.split(' ');
        if items.next()? != "v1" {
            return None;
        }
        let mut next = || items.next().filter(|item| !item.is_empty()).map(str::to_owned);
        Some(Self { topic: next()?, broker_name: next()?, timestamp: next()?, message_id: next()? })
    }

    /// The timestamp as a time: `None` if it is not a number.
    #[must_use]
    pub fn at(&self) -> Option<UnixMillis> {
        self.timestamp.parse::<i64>().ok().map(UnixMillis)
    }
}

/// The marker's properties for `handle`, recalled by `producer_group`.
#[must_use]
pub fn marker_properties(handle: &RecallHandle, at: UnixMillis, producer_group: &str) -> Vec<u8> {
    let mut props = Vec::new();
    properties::push(&mut props, keys::TAGS, RECALL_TAG);
    properties::push(&mut props, keys::UNIQ_KEY, &handle.message_id);
    properties::push(&mut props, TIMER_DEL_UNIQKEY, &handle.message_id);
    properties::push(&mut props, keys::TIMER_OUT_MS, &at.0.to_string());
    properties::push(&mut props, keys::REAL_TOPIC, &handle.topic);
    properties::push(&mut props, keys::REAL_QID, "0");
    if !producer_group.is_empty() {
        properties::push(&mut props, keys::PGROUP, producer_group);
    }
    props
}

/// The recall markers the timer knows: read from [`RECALL_QUEUE`], or noted as they are
/// appended.
#[derive(Debug, Default)]
pub struct RecallMarkers {
    /// (real topic, UNIQ_KEY) → the marker's time and the CommitLog end of its record: a
    /// message dropped for it counts as done only once the marker is durable.
    markers: BTreeMap<(String, String), (UnixMillis, PhysOffset)>,
    /// The same markers by time, to forget those past.
    by_time: BTreeSet<(UnixMillis, String, String)>,
    /// Next entry of the recall queue to read.
    next: u64,
    /// Failed reads of the entry at `next`.
    attempts: u32,
    /// Timed messages dropped for a marker since start.
    pub recalled: u64,
}

impl RecallMarkers {
    /// A marker for the message `uniq_key` of `topic`, its record ending at `end`.
    pub fn note(&mut self, topic: &str, uniq_key: &str, at: UnixMillis, end: PhysOffset) {
        let key = (topic.to_owned(), uniq_key.to_owned());
        if let Some((before, _)) = self.markers.insert(key.clone(), (at, end)) {
            self.by_time.remove(&(before, key.0.clone(), key.1.clone()));
        }
        self.by_time.insert((at, key.0, key.1));
    }

    /// Markers known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.markers.len()
    }

    /// Whether none is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.markers.is_empty()
    }

    /// If the message `uniq_key` of `topic` is recalled, forget its marker and give the
    /// end of the marker's record.
    pub fn take(&mut self, topic: &str, uniq_key: &str) -> Option<PhysOffset> {
        let (topic, uniq_key) = (topic.to_owned(), uniq_key.to_owned());
        let (at, end) = self.markers.remove(&(topic.clone(), uniq_key.clone()))?;
        self.by_time.remove(&(at, topic, uniq_key));
        self.recalled += 1;
        Some(end)
    }

    /// Forget markers due before `before`: every timer due then has been delivered (or
    /// dropped) durably.
    pub fn forget_before(&mut self, before: UnixMillis) {
        while self.by_time.first().is_some_and(|(at, _, _)| *at < before) {
            if let Some((_, topic, uniq_key)) = self.by_time.pop_first() {
                self.markers.remove(&(topic, uniq_key));
            }
        }
    }

    /// Read the recall queue's readable entries; markers due before `before` are skipped.
    /// `Some` wake-up time if entries remain (a bounded batch, or a failed read): the timer
    /// delivers nothing until they are read.
    pub(in crate::broker) fn read(
        &mut self,
        shared: &Shared,
        now: Now,
        before: UnixMillis,
    ) -> Option<MonoNanos> {
        let store = &shared.store;
        // No recall queue: nothing to read (`None`, done).
        let (min, _) = store.queue_offsets(TIMER_TOPIC, RECALL_QUEUE)?;
        if self.next < min.0 {
            self.next = min.0;
        }
        let readable = store.readable_next(TIMER_TOPIC, RECALL_QUEUE).map_or(0, |n| n.0);
        let mut read = 0;
        while self.next < readable {
            if read >= READ_PER_WAKE {
                return Some(now.mono.plus_millis(crate::broker::BATCH_PAUSE_MS));
            }
            let want = (READ_PER_WAKE - read).min(256);
            let entries = match store.read_entries(
                &*shared.reader,
                TIMER_TOPIC,
                RECALL_QUEUE,
                QueueOffset(self.next),
                want,
            ) {
                Ok(entries) if !entries.is_empty() => entries,
                // Not visible yet (written, its record not): read once it is.
                Ok(_) => return Some(now.mono.plus_millis(super::RETRY_MS)),
                Err(error) => {
                    tracing::warn!(%error, next = self.next, "recall queue unreadable; retrying");
                    return Some(now.mono.plus_millis(super::RETRY_MS));
                }
            };
            for entry in entries {
                // The timer topic's tags code is the marker's time.
                if entry.tags_code >= before.0 {
                    if let Err(error) = self.read_marker(shared, entry.phys_offset, entry.size) {
                        self.attempts += 1;
                        if self.attempts < READ_ATTEMPTS {
                            tracing::warn!(%error, next = self.next, "recall marker unreadable; retrying");
                            return Some(now.mono.plus_millis(super::RETRY_MS));
                        }
                        tracing::error!(%error, next = self.next, "recall marker unreadable; skipped");
                    }
                }
                self.attempts = 0;
                self.next += 1;
                read += 1;
            }
        }
        None
    }

    fn read_marker(&mut self, shared: &Shared, phys: PhysOffset, size: u32) -> Result<(), String> {
        let record = shared.store.read_record(&*shared.reader, phys, size).map_err(|e| e.to_string())?;
        let Ok(Parsed::Message(view)) = parse_record(&record) else {
            return Err("not a message record".into());
        };
        let props = view.record.properties;
        let text = |key| properties::find(props, key).map(|v| String::from_utf8_lossy(v).into_owned());
        let (Some(topic), Some(uniq_key), Some(at)) = (
            text(keys::REAL_TOPIC),
            text(TIMER_DEL_UNIQKEY),
            text(keys::TIMER_OUT_MS).and_then(|at| at.parse::<i64>().ok()),
        ) else {
            tracing::warn!(phys = phys.0, "a recall-queue record names no message; ignored");
            return Ok(());
        };
        self.note(&topic, &uniq_key, UnixMillis(at), phys + u64::from(size));
        Ok(())
    }
}

impl super::TimerService {
    /// RECALL_MESSAGE: check the handle and append its marker, answered once the marker is
    /// as durable as a send would be (`None`: the reply waits). Refused like RocketMQ:
    /// ILLEGAL_OPERATION for a handle that does not read, names another topic or broker, or
    /// a time past or beyond the longest delay.
    pub(in crate::broker) fn on_recall(
        &mut self,
        shared: &mut Shared,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, Refusal> {
        let header = RecallMessageRequestHeader::decode(&request.ext_fields)?;
        if shared.topics.get(&header.topic).is_none() {
            return Err(Refusal::TopicNotExist(format!(
                "recall failed, the topic[{}] not exist",
                header.topic
            )));
        }
        let handle = RecallHandle::decode(&header.recall_handle)
            .ok_or_else(|| Refusal::IllegalOperation("recall handle is invalid".into()))?;
        if handle.topic != header.topic {
            return Err(Refusal::IllegalOperation("recall failed, topic not match".into()));
        }
        if handle.broker_name != shared.config.broker_name {
            return Err(Refusal::IllegalOperation(format!(
                "recall failed, the handle is of broker {}, this is {}",
                handle.broker_name, shared.config.broker_name
            )));
        }
        let max_ms = i64::try_from(shared.config.timer_max_delay_ms).unwrap_or(i64::MAX);
        let Some(at) = handle.at().filter(|at| (1..max_ms).contains(&at.0.saturating_sub(now.wall.0))) else {
            return Err(Refusal::IllegalOperation("recall failed, timestamp invalid".into()));
        };
        // The handle's time is the message's due time + 1: a message whose tick the wheel
        // has passed is delivered or being delivered, too late to take back.
        if self.state.may_be_out(at.plus_millis(-1)) {
            return Err(Refusal::IllegalOperation("recall failed, the message is due and delivered".into()));
        }
        let props = marker_properties(&handle, at, header.producer_group.as_deref().unwrap_or_default());
        let born_host = shared.peer_of(conn);
        let marker = AppendRequest::broker_record(TIMER_TOPIC, RECALL_QUEUE, now, born_host, b"0", &props);
        let end = shared.store.append(now, &marker)?.end();
        self.recalls.note(&handle.topic, &handle.message_id, at, end);
        tracing::info!(topic = %handle.topic, "timed message recalled");
        let mut reply = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        reply.ext_fields = RecallMessageResponseHeader { msg_id: handle.message_id }.to_ext_fields();
        let flush = matches!(shared.store.config().flush_mode, FlushMode::Sync);
        shared.reply_when_durable(now, conn, request, reply, end, Wait { flush, slave: true });
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_reads_back_and_java_padded_or_unpadded_base64_decodes() {
        let handle = RecallHandle::for_timed("orders", "broker-a", UnixMillis(1_888_825_599_999), "AC1F0001");
        assert_eq!(handle.timestamp, "1888825600000", "the due time + 1, as RocketMQ gives it");
        let text = handle.encode();
        // What Java's Base64.getUrlEncoder() gives for the same raw string.
        assert_eq!(text, "djEgb3JkZXJzIGJyb2tlci1hIDE4ODg4MjU2MDAwMDAgQUMxRjAwMDE=");
        assert_eq!(RecallHandle::decode(&text), Some(handle.clone()));
        assert_eq!(RecallHandle::decode(text.trim_end_matches('=')), Some(handle.clone()));
        assert_eq!(handle.at(), Some(UnixMillis(1_888_825_600_000)));
    }

    #[test]
    fn a_garbled_handle_is_none() {
        for bad in ["", "!!!", &URL_SAFE.encode("v2 t b 1 id"), &URL_SAFE.encode("v1 a b c"), "djEgYSBi"] {
            assert_eq!(RecallHandle::decode(bad), None, "{bad}");
        }
        let not_a_number = RecallHandle::decode(&URL_SAFE.encode("v1 t b soon id")).expect("fields");
        assert_eq!(not_a_number.at(), None);
    }

    #[test]
    fn a_marker_is_taken_once_and_forgotten_once_its_time_is_past() {
        let mut markers = RecallMarkers::default();
        markers.note("T", "a", UnixMillis(5_000), PhysOffset(100));
        markers.note("T", "b", UnixMillis(9_000), PhysOffset(200));
        assert_eq!(markers.take("T", "a"), Some(PhysOffset(100)));
        assert_eq!(markers.take("T", "a"), None);
        assert_eq!(markers.take("U", "b"), None, "another topic's message is not recalled");
        markers.forget_before(UnixMillis(9_000));
        assert_eq!(markers.len(), 1);
        markers.forget_before(UnixMillis(9_001));
        assert!(markers.is_empty());
        assert_eq!(markers.recalled, 1);
    }
}
