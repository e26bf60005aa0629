//! Receipt handles and the pop response's offset lists, in RocketMQ's text formats
//! (`ExtraInfoUtil`): a client acknowledges a popped message by handing its handle back,
//! so the handle names everything the broker needs to find the batch's checkpoint.
//!
//! A receipt handle (`extraInfo`, the `POP_CK` property) is space-separated:
//!
//! | field | what |
//! |---|---|
//! | 0 `ckStartOffset` | the first queue offset of the popped batch in this queue |
//! | 1 `popTime` | the broker's clock at the pop, ms |
//! | 2 `invisibleTime` | ms the batch stays invisible |
//! | 3 `reviveQid` | the revive queue holding the batch's checkpoint; 999 for FIFO |
//! | 4 `retry` | `0` the topic itself, `1` its pop retry topic `%RETRY%group_topic`, `2` the V2 retry topic `%RETRY%group+topic` |
//! | 5 `brokerName` | the broker that popped it |
//! | 6 `queueId` | the queue |
//! | 7 `queueOffset` | the message's own queue offset (optional) |
//! | 8 `commitLogOffset` | where the message is stored (optional; RocketMQ's proxy adds it to the handles it gives gRPC clients) |
//!
//! `startOffsetInfo` is `retry queueId startOffset` per queue popped, `msgOffsetInfo` is
//! `retry queueId offset,offset,…`, `orderCountInfo` (FIFO) is `retry qo<queueId>%<offset>
//! count` per message; entries are separated by `;`.

use crate::broker::topics::RETRY_PREFIX;

/// The revive queue id that marks a FIFO pop (no checkpoint: the queue blocks instead).
pub const ORDER_REVIVE_QID: i32 = 999;

/// Which topic a popped message came from, as handles mark it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RetryMark {
    /// The topic itself (`0`).
    Normal,
    /// The group's pop retry topic, `%RETRY%group_topic` (`1`).
    Retry,
    /// The V2 retry topic, `%RETRY%group+topic` (`2`).
    RetryV2,
}

impl RetryMark {
    /// The mark of a topic read: by its name, as RocketMQ tells them apart.
    #[must_use]
    pub fn of_topic(topic: &str) -> Self {
        match topic.strip_prefix(RETRY_PREFIX) {
            Some(rest) if rest.contains('+') => Self::RetryV2,
            Some(_) => Self::Retry,
            None => Self::Normal,
        }
    }

    /// Its digit.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "0",
            Self::Retry => "1",
            Self::RetryV2 => "2",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "0" => Some(Self::Normal),
            "1" => Some(Self::Retry),
            "2" => Some(Self::RetryV2),
            _ => None,
        }
    }

    /// The topic a handle with this mark was read from, for `group` popping `topic`.
    #[must_use]
    pub fn real_topic(self, topic: &str, group: &str) -> String {
        match self {
            Self::Normal => topic.to_owned(),
            Self::Retry => pop_retry_topic(group, topic),
            Self::RetryV2 => format!("{RETRY_PREFIX}{group}+{topic}"),
        }
    }
}

/// The pop retry topic where revive puts `group`'s unacknowledged messages of `topic`
/// (RocketMQ's V1 name, its default).
#[must_use]
pub fn pop_retry_topic(group: &str, topic: &str) -> String {
    format!("{RETRY_PREFIX}{group}_{topic}")
}

/// A popped message's receipt handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptHandle {
    /// The first queue offset of the popped batch in this queue.
    pub ck_start_offset: i64,
    /// The broker's clock at the pop, ms.
    pub pop_time: i64,
    /// How long the batch stays invisible, ms.
    pub invisible_time: i64,
    /// The checkpoint's revive queue ([`ORDER_REVIVE_QID`] for FIFO).
    pub revive_qid: i32,
    /// Which topic the message was read from.
    pub retry: RetryMark,
    /// The broker that popped it.
    pub broker_name: String,
    /// Its queue.
    pub queue_id: i32,
    /// Its queue offset, when the handle carries it.
    pub queue_offset: Option<i64>,
    /// Its CommitLog offset, when the handle carries it.
    pub commit_log_offset: Option<i64>,
}

/// Why a receipt handle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal receipt handle {0:?}")]
pub struct BadHandle(pub String);

impl ReceiptHandle {
    /// Read a handle; fewer than seven fields, or a field of the wrong kind, is refused.
    pub fn parse(text: &str) -> Result<Self, BadHandle> {
        let bad = || BadHandle(text.chars().take(200).collect());
        let fields: Vec<&str> = text.split(' ').collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok()).ok_or_else(bad);
        let small = |i: usize| fields.get(i).and_then(|f| f.parse::<i32>().ok()).ok_or_else(bad);
        if fields.len() < 7 {
            return Err(bad());
        }
        Ok(Self {
            ck_start_offset: number(0)?,
            pop_time: number(1)?,
            invisible_time: number(2)?,
            revive_qid: small(3)?,
            retry: fields.get(4).and_then(|f| RetryMark::parse(f)).ok_or_else(bad)?,
            broker_name: fields.get(5).map(|f| (*f).to_owned()).ok_or_else(bad)?,
            queue_id: small(6)?,
            queue_offset: if fields.len() > 7 { Some(number(7)?) } else { None },
            commit_log_offset: if fields.len() > 8 { Some(number(8)?) } else { None },
        })
    }

    /// The handle's text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = format!(
            "{} {} {} {} {} {} {}",
            self.ck_start_offset,
            self.pop_time,
            self.invisible_time,
            self.revive_qid,
            self.retry.as_str(),
            self.broker_name,
            self.queue_id
        );
        if let Some(offset) = self.queue_offset {
            text.push(' ');
            text.push_str(&offset.to_string());
            if let Some(phys) = self.commit_log_offset {
                text.push(' ');
                text.push_str(&phys.to_string());
            }
        }
        text
    }

    /// Whether it came from a FIFO pop.
    #[must_use]
    pub fn is_order(&self) -> bool {
        self.revive_qid == ORDER_REVIVE_QID
    }
}

fn separate(out: &mut String) {
    if !out.is_empty() {
        out.push(';');
    }
}

/// Add a queue's batch start to `startOffsetInfo`.
pub fn push_start_offset(out: &mut String, topic: &str, queue_id: i32, start: u64) {
    separate(out);
    out.push_str(&format!("{} {queue_id} {start}", RetryMark::of_topic(topic).as_str()));
}

/// Add a queue's popped offsets to `msgOffsetInfo`.
pub fn push_msg_offsets(out: &mut String, topic: &str, queue_id: i32, offsets: &[u64]) {
    separate(out);
    let list: Vec<String> = offsets.iter().map(u64::to_string).collect();
    out.push_str(&format!("{} {queue_id} {}", RetryMark::of_topic(topic).as_str(), list.join(",")));
}

/// Add a FIFO message's delivery count (before this one) to `orderCountInfo`.
pub fn push_order_count(out: &mut String, topic: &str, queue_id: i32, offset: u64, count: u32) {
    separate(out);
    out.push_str(&format!("{} qo{queue_id}%{offset} {count}", RetryMark::of_topic(topic).as_str()));
}

/// `startOffsetInfo` read back: (mark, queue) → batch start.
#[must_use]
pub fn parse_start_offsets(info: &str) -> std::collections::BTreeMap<(RetryMark, i32), i64> {
    info.split(';')
        .filter_map(|entry| {
            let mut parts = entry.split(' ');
            let mark = RetryMark::parse(parts.next()?)?;
            let queue = parts.next()?.parse().ok()?;
            let start = parts.next()?.parse().ok()?;
            Some(((mark, queue), start))
        })
        .collect()
}

/// `orderCountInfo` read back: (mark, queue, offset) → deliveries before this one.
#[must_use]
pub fn parse_order_counts(info: &str) -> std::collections::BTreeMap<(RetryMark, i32, i64), u32> {
    info.split(';')
        .filter_map(|entry| {
            let mut parts = entry.split(' ');
            let mark = RetryMark::parse(parts.next()?)?;
            let (queue, offset) = parts.next()?.strip_prefix("qo")?.split_once('%')?;
            let count = parts.next()?.parse().ok()?;
            Some(((mark, queue.parse().ok()?, offset.parse().ok()?), count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_reads_back_what_was_written_and_rocketmqs_own_text() {
        let handle = ReceiptHandle {
            ck_start_offset: 40,
            pop_time: 1_700_000_000_123,
            invisible_time: 30_000,
            revive_qid: 3,
            retry: RetryMark::Retry,
            broker_name: "broker-a".into(),
            queue_id: 2,
            queue_offset: Some(42),
            commit_log_offset: None,
        };
        assert_eq!(handle.render(), "40 1700000000123 30000 3 1 broker-a 2 42");
        assert_eq!(ReceiptHandle::parse(&handle.render()), Ok(handle.clone()));
        let proxys = ReceiptHandle { commit_log_offset: Some(9_000), ..handle.clone() };
        assert_eq!(proxys.render(), "40 1700000000123 30000 3 1 broker-a 2 42 9000");
        assert_eq!(ReceiptHandle::parse(&proxys.render()), Ok(proxys));
        let short = ReceiptHandle { queue_offset: None, ..handle };
        assert_eq!(ReceiptHandle::parse("40 1700000000123 30000 3 1 broker-a 2"), Ok(short));
        assert!(ReceiptHandle::parse("40 1700000000123 30000 3 1 broker-a").is_err());
        assert!(ReceiptHandle::parse("40 x 30000 3 1 broker-a 2").is_err());
        assert!(ReceiptHandle::parse("40 1 30000 3 7 broker-a 2").is_err(), "unknown retry mark");
        assert!(ReceiptHandle::parse("40 1 30000 999 0 b 2").is_ok_and(|h| h.is_order()));
    }

    #[test]
    fn retry_marks_follow_the_topic_name() {
        assert_eq!(RetryMark::of_topic("Orders"), RetryMark::Normal);
        assert_eq!(RetryMark::of_topic("%RETRY%cg_Orders"), RetryMark::Retry);
        assert_eq!(RetryMark::of_topic("%RETRY%cg+Orders"), RetryMark::RetryV2);
        assert_eq!(RetryMark::Retry.real_topic("Orders", "cg"), "%RETRY%cg_Orders");
        assert_eq!(RetryMark::RetryV2.real_topic("Orders", "cg"), "%RETRY%cg+Orders");
        assert_eq!(RetryMark::Normal.real_topic("Orders", "cg"), "Orders");
    }

    #[test]
    fn offset_infos_are_rocketmqs_lists() {
        let mut start = String::new();
        push_start_offset(&mut start, "Orders", 1, 10);
        push_start_offset(&mut start, "%RETRY%cg_Orders", 0, 3);
        assert_eq!(start, "0 1 10;1 0 3");
        let parsed = parse_start_offsets(&start);
        assert_eq!(parsed.get(&(RetryMark::Normal, 1)), Some(&10));
        assert_eq!(parsed.get(&(RetryMark::Retry, 0)), Some(&3));
        let mut offsets = String::new();
        push_msg_offsets(&mut offsets, "Orders", 1, &[10, 11, 13]);
        assert_eq!(offsets, "0 1 10,11,13");
        let mut counts = String::new();
        push_order_count(&mut counts, "Orders", 1, 10, 2);
        push_order_count(&mut counts, "Orders", 1, 11, 0);
        assert_eq!(counts, "0 qo1%10 2;0 qo1%11 0");
        assert_eq!(parse_order_counts(&counts).get(&(RetryMark::Normal, 1, 10)), Some(&2));
    }
}
