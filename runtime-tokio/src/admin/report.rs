//! mqadmin's output: RocketMQ's columns and widths for people, and `--json` rows (standard
//! JSON, one object per row) for scripts. Times are printed in UTC.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use keel_core::protocol::body::{
    Connection, ConsumeStats, ConsumerConnection, KvTable, MessageQueue, TopicStatsTable,
};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::message::properties;
use keel_core::protocol::message::stored::StoredMessage;
use keel_core::protocol::version_desc;
use serde::Serialize;

use super::message::Sent;

/// Java's `UtilAll.frontStringAtLeast`: at most the first `size` characters.
fn front(text: &str, size: usize) -> &str {
    text.char_indices().nth(size).map_or(text, |(at, _)| &text[..at])
}

/// `ms` since the epoch as `yyyy-MM-dd HH:mm:ss` in UTC.
#[must_use]
pub fn utc(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", of_day / 3600, of_day / 60 % 60, of_day % 60)
}

/// `ms` since the epoch as `yyyy-MM-dd HH:mm:ss,SSS` in UTC.
#[must_use]
pub fn utc_millis(ms: i64) -> String {
    format!("{},{:03}", utc(ms), ms.rem_euclid(1000))
}

/// The proleptic Gregorian date `days` after 1970-01-01 (the civil-from-days algorithm:
/// count in 400-year eras of 146,097 days, with years starting in March so that the leap
/// day ends the year).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The days from 1970-01-01 to a proleptic Gregorian date (the inverse of
/// [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A time as mqadmin takes it: `now`, milliseconds since the epoch, or RocketMQ's
/// `yyyy-MM-dd#HH:mm:ss:SSS` (read as UTC); `now_ms` is the present.
pub fn parse_time(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    if text.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!(
            "'{text}' is not a time: use now, milliseconds since 1970, or yyyy-MM-dd#HH:mm:ss:SSS"
        )
    };
    let (date, time) = text.split_once('#').ok_or_else(bad)?;
    let numbers = |part: &str, sep: char| -> anyhow::Result<Vec<i64>> {
        part.split(sep).map(|n| n.parse::<i64>().map_err(|_| bad())).collect()
    };
    let (date, time) = (numbers(date, '-')?, numbers(time, ':')?);
    let [year, month, day] = <[i64; 3]>::try_from(date).map_err(|_| bad())?;
    let [hour, minute, second, milli] = <[i64; 4]>::try_from(time).map_err(|_| bad())?;
    let in_range = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..60).contains(&second)
        && (0..1000).contains(&milli);
    if !in_range {
        return Err(bad());
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(seconds * 1000 + milli)
}

/// `resetOffsetByTime`'s report: the offset each queue restarts from.
#[must_use]
pub fn reset_offsets(
    header: &str,
    table: &std::collections::BTreeMap<MessageQueue, i64>,
    as_json: bool,
) -> String {
    if as_json {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Row<'a> {
            topic: &'a str,
            broker_name: &'a str,
            queue_id: i32,
            offset: i64,
        }
        let rows: Vec<Row<'_>> = table
            .iter()
            .map(|(mq, &offset)| Row {
                topic: &mq.topic,
                broker_name: &mq.broker_name,
                queue_id: mq.queue_id,
                offset,
            })
            .collect();
        return json_text(&rows);
    }
    let mut out = format!("{header}\n{:<40}  {:<40}  {:<40}\n", "#brokerName", "#queueId", "#offset");
    for (mq, offset) in table {
        let _ = writeln!(out, "{:<40}  {:<40}  {:<40}", front(&mq.broker_name, 32), mq.queue_id, offset);
    }
    out
}

/// `value` as standard JSON (rows as an array), for `--json`.
pub fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    let bytes = json::to_body(value, KeyStyle::Standard);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One queue of `topicStatus --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicQueueRow<'a> {
    broker_name: &'a str,
    queue_id: i32,
    min_offset: i64,
    max_offset: i64,
    last_update_timestamp: i64,
}

/// `topicStatus`: each queue's range and last store time.
#[must_use]
pub fn topic_status(table: &TopicStatsTable, as_json: bool) -> String {
    if as_json {
        let rows: Vec<TopicQueueRow<'_>> = table
            .offset_table
            .iter()
            .map(|(mq, o)| TopicQueueRow {
                broker_name: &mq.broker_name,
                queue_id: mq.queue_id,
                min_offset: o.min_offset,
                max_offset: o.max_offset,
                last_update_timestamp: o.last_update_timestamp,
            })
            .collect();
        return json_text(&rows);
    }
    let mut out = format!(
        "{:<32}  {:<4}  {:<20}  {:<20}    {}\n",
        "#Broker Name", "#QID", "#Min Offset", "#Max Offset", "#Last Updated"
    );
    for (mq, offsets) in &table.offset_table {
        let updated = if offsets.last_update_timestamp > 0 {
            utc_millis(offsets.last_update_timestamp)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<32}  {:<4}  {:<20}  {:<20}    {}",
            front(&mq.broker_name, 32),
            mq.queue_id,
            offsets.min_offset,
            offsets.max_offset,
            updated
        );
    }
    out
}

/// One queue of `consumerProgress -g --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueProgressRow<'a> {
    topic: &'a str,
    broker_name: &'a str,
    queue_id: i32,
    broker_offset: i64,
    consumer_offset: i64,
    diff: i64,
    last_timestamp: i64,
}

/// `consumerProgress -g`: per queue, the queue's end, the group's offset and the lag
/// between them; then the totals. `client_ips` names the member holding a queue, where
/// known (`NA` otherwise, as RocketMQ prints).
#[must_use]
pub fn consumer_progress(
    stats: &ConsumeStats,
    client_ips: &BTreeMap<MessageQueue, String>,
    as_json: bool,
) -> String {
    if as_json {
        let rows: Vec<QueueProgressRow<'_>> = stats
            .offset_table
            .iter()
            .map(|(mq, o)| QueueProgressRow {
                topic: &mq.topic,
                broker_name: &mq.broker_name,
                queue_id: mq.queue_id,
                broker_offset: o.broker_offset,
                consumer_offset: o.consumer_offset,
                diff: o.diff(),
                last_timestamp: o.last_timestamp,
            })
            .collect();
        return json_text(&rows);
    }
    let mut out = format!(
        "{:<32}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20} {:<20}  {}\n",
        "#Topic",
        "#Broker Name",
        "#QID",
        "#Broker Offset",
        "#Consumer Offset",
        "#Client IP",
        "#Diff",
        "#LastTime"
    );
    for (mq, offsets) in &stats.offset_table {
        let _ = writeln!(
            out,
            "{:<32}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20} {:<20}  {}",
            front(&mq.topic, 32),
            front(&mq.broker_name, 32),
            mq.queue_id,
            offsets.broker_offset,
            offsets.consumer_offset,
            client_ips.get(mq).map_or("NA", String::as_str),
            offsets.diff(),
            utc(offsets.last_timestamp)
        );
    }
    let _ = write!(
        out,
        "\nConsume TPS: {:.1}\nDiff Total: {}\n",
        stats.consume_tps.unwrap_or(0.0),
        stats.total_diff()
    );
    out
}

/// One group of `consumerProgress` without `-g`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupProgress {
    /// The group.
    pub group: String,
    /// Members online.
    pub count: usize,
    /// The oldest member's version ordinal (when any is online).
    pub version: Option<i32>,
    /// `CONSUME_PASSIVELY` / `CONSUME_ACTIVELY` (when any is online).
    pub consume_type: Option<String>,
    /// `CLUSTERING` / `BROADCASTING` (when any is online).
    pub message_model: Option<String>,
    /// Messages per second.
    pub consume_tps: i64,
    /// The lag over every queue.
    pub diff_total: i64,
}

/// `consumerProgress` without `-g`: one line per group.
#[must_use]
pub fn group_progress(groups: &[GroupProgress], as_json: bool) -> String {
    if as_json {
        return json_text(groups);
    }
    let mut out = format!(
        "{:<32}  {:<6}  {:<24} {:<5}  {:<14}  {:<7}  {}\n",
        "#Group", "#Count", "#Version", "#Type", "#Model", "#TPS", "#Diff Total"
    );
    for g in groups {
        let online = g.count > 0;
        let version = if online { g.version.map(version_desc).unwrap_or_default() } else { "OFFLINE".into() };
        let passive = g.consume_type.as_deref() == Some("CONSUME_PASSIVELY");
        let kind = match (online, passive) {
            (false, _) => "",
            (true, true) => "PUSH",
            (true, false) => "PULL",
        };
        let model = if online && passive { g.message_model.as_deref().unwrap_or("") } else { "" };
        let _ = writeln!(
            out,
            "{:<32}  {:<6}  {:<24} {:<5}  {:<14}  {:<7}  {}",
            front(&g.group, 32),
            g.count,
            version,
            kind,
            model,
            g.consume_tps,
            g.diff_total
        );
    }
    out
}

/// One connection of `consumerConnection --json` / `producerConnection --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionRow<'a> {
    client_id: &'a str,
    client_addr: &'a str,
    language: &'a str,
    version: String,
}

fn connection_rows(connections: &[Connection]) -> Vec<ConnectionRow<'_>> {
    connections
        .iter()
        .map(|c| ConnectionRow {
            client_id: &c.client_id,
            client_addr: &c.client_addr,
            language: &c.language,
            version: version_desc(c.version),
        })
        .collect()
}

/// `consumerConnection`: the members, their subscriptions and how the group consumes.
#[must_use]
pub fn consumer_connection(cc: &ConsumerConnection, as_json: bool) -> String {
    if as_json {
        return json_text(&connection_rows(&cc.connection_set));
    }
    let mut out = String::new();
    for (i, c) in cc.connection_set.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:03}  {:<32} {:<22} {:<8} {}",
            i + 1,
            c.client_id,
            c.client_addr,
            c.language,
            version_desc(c.version)
        );
    }
    out.push_str("\nBelow is subscription:\n");
    for (i, sub) in cc.subscription_table.values().enumerate() {
        let _ = writeln!(out, "{:03}  Topic: {:<40} SubExpression: {}", i + 1, sub.topic, sub.sub_string);
    }
    let _ = write!(
        out,
        "\nConsumeType: {}\nMessageModel: {}\nConsumeFromWhere: {}\n",
        cc.consume_type, cc.message_model, cc.consume_from_where
    );
    out
}

/// `producerConnection`: the producers of a group.
#[must_use]
pub fn producer_connection(connections: &[Connection], as_json: bool) -> String {
    if as_json {
        return json_text(&connection_rows(connections));
    }
    let mut out = String::new();
    for (i, c) in connections.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:04}  {:<32} {:<22} {:<8} {}",
            i + 1,
            c.client_id,
            c.client_addr,
            c.language,
            version_desc(c.version)
        );
    }
    out
}

/// One row of `topicList -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRow {
    /// The topic's cluster.
    pub cluster: String,
    /// The topic.
    pub topic: String,
    /// A group consuming it (empty: none).
    pub group: String,
}

/// `topicList -c`: cluster, topic, consumer group.
#[must_use]
pub fn topics_by_cluster(rows: &[TopicRow], as_json: bool) -> String {
    if as_json {
        return json_text(rows);
    }
    let mut out = format!("{:<20}  {:<48}  {:<48}\n", "#Cluster Name", "#Topic", "#Consumer Group");
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20}  {:<48}  {:<48}",
            front(&r.cluster, 20),
            front(&r.topic, 48),
            front(&r.group, 48)
        );
    }
    out
}

/// `brokerStatus`: every runtime key, sorted.
#[must_use]
pub fn broker_status(kv: &KvTable, as_json: bool) -> String {
    if as_json {
        return String::from_utf8_lossy(&json::to_body(&kv.table, KeyStyle::Standard)).into_owned();
    }
    kv.table.iter().fold(String::new(), |mut out, (key, value)| {
        let _ = writeln!(out, "{key:<32}: {value}");
        out
    })
}

/// One broker of `clusterList`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRow {
    /// Cluster name.
    pub cluster: String,
    /// Broker set name.
    pub broker_name: String,
    /// Id in the set (0 = master).
    pub broker_id: i64,
    /// Remoting address.
    pub addr: String,
    /// What the broker says it is (`brokerVersionDesc`).
    pub version: String,
    /// Messages stored per second (10 s average).
    pub in_tps: f64,
    /// Messages sent to consumers per second (10 s average).
    pub out_tps: f64,
    /// Sends waiting, and the oldest one's wait (ms).
    pub send_queue: String,
    /// Pulls held, and the oldest one's wait (ms).
    pub pull_queue: String,
    /// `pageCacheLockTimeMills`.
    pub page_cache_wait_ms: String,
    /// Hours since the oldest stored message (0 if unknown).
    pub hours: f64,
    /// The share of the store's disk in use.
    pub space: f64,
}

impl BrokerRow {
    /// The row of one broker from its runtime information, read at `now_ms`.
    #[must_use]
    pub fn from_runtime(
        cluster: &str,
        broker_name: &str,
        broker_id: i64,
        addr: &str,
        kv: &KvTable,
        now_ms: i64,
    ) -> Self {
        let get = |key: &str| kv.table.get(key).cloned().unwrap_or_default();
        let first_number = |key: &str| {
            kv.table
                .get(key)
                .and_then(|v| v.split(' ').next().and_then(|t| t.parse::<f64>().ok()))
                .unwrap_or(0.0)
        };
        let out_key =
            if kv.table.contains_key("getTransferredTps") { "getTransferredTps" } else { "getTransferedTps" };
        let hours = kv
            .table
            .get("earliestMessageTimeStamp")
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0.0, |t| (now_ms - t) as f64 / 3_600_000.0);
        Self {
            cluster: cluster.into(),
            broker_name: broker_name.into(),
            broker_id,
            addr: addr.into(),
            version: get("brokerVersionDesc"),
            in_tps: first_number("putTps"),
            out_tps: first_number(out_key),
            send_queue: format!(
                "{},{}ms",
                get("sendThreadPoolQueueSize"),
                get("sendThreadPoolQueueHeadWaitTimeMills")
            ),
            pull_queue: format!(
                "{},{}ms",
                get("pullThreadPoolQueueSize"),
                get("pullThreadPoolQueueHeadWaitTimeMills")
            ),
            page_cache_wait_ms: get("pageCacheLockTimeMills"),
            hours,
            space: kv.table.get("commitLogDiskRatio").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        }
    }
}

/// `clusterList`: every broker of every cluster with its load.
#[must_use]
pub fn cluster_list(rows: &[BrokerRow], as_json: bool) -> String {
    if as_json {
        return json_text(rows);
    }
    let mut out = format!(
        "{:<16}  {:<22}  {:<4}  {:<22} {:<16} {:>19} {:>19} {:>10} {:>5} {:>6}\n",
        "#Cluster Name",
        "#Broker Name",
        "#BID",
        "#Addr",
        "#Version",
        "#InTPS(LOAD)",
        "#OutTPS(LOAD)",
        "#PCWait(ms)",
        "#Hour",
        "#SPACE"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<16}  {:<22}  {:<4}  {:<22} {:<16} {:>19} {:>19} {:>10} {:>5} {:>6}",
            r.cluster,
            r.broker_name,
            r.broker_id,
            r.addr,
            r.version,
            format!("{:9.2}({})", r.in_tps, r.send_queue),
            format!("{:9.2}({})", r.out_tps, r.pull_queue),
            r.page_cache_wait_ms,
            format!("{:2.2}", r.hours),
            format!("{:.4}", r.space)
        );
    }
    out
}

/// A message as `queryMsgById` and `queryMsgByOffset` print it; the body is written to
/// `body_path` (RocketMQ's tool does the same), never printed.
#[must_use]
pub fn message(id: &str, msg: &StoredMessage, body_path: &str) -> String {
    let props = properties::parse(&msg.properties);
    let get = |key: &str| props.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str());
    let shown: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let head = &msg.head;
    let lines: [(&str, String); 15] = [
        ("OffsetID:", id.to_owned()),
        ("Topic:", msg.topic.clone()),
        ("Tags:", format!("[{}]", get("TAGS"))),
        ("Keys:", format!("[{}]", get("KEYS"))),
        ("Queue ID:", head.queue_id.to_string()),
        ("Queue Offset:", head.queue_offset.to_string()),
        ("CommitLog Offset:", head.physical_offset.to_string()),
        ("Reconsume Times:", head.reconsume_times.to_string()),
        ("Born Timestamp:", utc_millis(head.born_timestamp)),
        ("Store Timestamp:", utc_millis(head.store_timestamp)),
        ("Born Host:", head.born_host.to_string()),
        ("Store Host:", head.store_host.to_string()),
        ("System Flag:", head.sys_flag.to_string()),
        ("Properties:", format!("{{{}}}", shown.join(", "))),
        ("Message Body Path:", body_path.to_owned()),
    ];
    lines.iter().fold(String::new(), |mut out, (label, value)| {
        let _ = writeln!(out, "{label:<20} {value}");
        out
    })
}

/// `queryMsgByKey`'s table (`#Message ID #QID #Offset`, RocketMQ's `%-50s %4s %40s`): the
/// id is the producer's unique id where it gave one, else the offset id.
#[must_use]
pub fn messages_by_key(found: &[(String, StoredMessage)], json: bool) -> String {
    let id_of = |m: &StoredMessage| {
        let props = properties::parse(&m.properties);
        props.iter().find(|(k, _)| k == "UNIQ_KEY").map(|(_, v)| v.clone()).unwrap_or_else(|| {
            keel_core::protocol::message::message_id::offset_message_id(
                m.head.store_host,
                m.head.physical_offset,
            )
        })
    };
    if json {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Row<'a> {
            msg_id: String,
            broker_name: &'a str,
            queue_id: i32,
            queue_offset: i64,
            store_timestamp: i64,
        }
        let rows: Vec<Row<'_>> = found
            .iter()
            .map(|(broker, m)| Row {
                msg_id: id_of(m),
                broker_name: broker,
                queue_id: m.head.queue_id,
                queue_offset: m.head.queue_offset,
                store_timestamp: m.head.store_timestamp,
            })
            .collect();
        return json_text(&rows);
    }
    let mut out = format!("{:<50} {:>4} {:>40}\n", "#Message ID", "#QID", "#Offset");
    for (_, m) in found {
        let _ = writeln!(out, "{:<50} {:>4} {:>40}", id_of(m), m.head.queue_id, m.head.queue_offset);
    }
    out
}

/// One message as `printMsg` and `consumeMessage` print it (`MSGID: … BODY: …`); the
/// body as text if `print_body` (the tools' purpose: an operator asked for it).
#[must_use]
pub fn message_line(broker_name: &str, msg: &StoredMessage, print_body: bool) -> String {
    let head = &msg.head;
    let id =
        keel_core::protocol::message::message_id::offset_message_id(head.store_host, head.physical_offset);
    let props: Vec<String> =
        properties::parse(&msg.properties).iter().map(|(k, v)| format!("{k}={v}")).collect();
    let body =
        if print_body { String::from_utf8_lossy(&msg.body).into_owned() } else { "NOT PRINT BODY".into() };
    format!(
        "MSGID: {id} MessageExt [brokerName={broker_name}, queueId={}, queueOffset={}, sysFlag={}, \
         bornTimestamp={}, bornHost={}, storeTimestamp={}, storeHost={}, commitLogOffset={}, reconsumeTimes={}, \
         topic={}, properties={{{}}}] BODY: {body}\n",
        head.queue_id,
        head.queue_offset,
        head.sys_flag,
        head.born_timestamp,
        head.born_host,
        head.store_timestamp,
        head.store_host,
        head.physical_offset,
        head.reconsume_times,
        msg.topic,
        props.join(", ")
    )
}

/// `sendMessage`'s result line.
#[must_use]
pub fn sent(sent: &Sent, as_json: bool) -> String {
    if as_json {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Row<'a> {
            broker_name: &'a str,
            queue_id: i32,
            send_result: &'a str,
            msg_id: &'a str,
            unique_id: &'a str,
        }
        let row = Row {
            broker_name: &sent.broker_name,
            queue_id: sent.queue_id,
            send_result: "SEND_OK",
            msg_id: &sent.msg_id,
            unique_id: &sent.unique_id,
        };
        return json_text(&[row]);
    }
    format!(
        "{:<32}  {:<4}  {:<20}    {}\n{:<32}  {:<4}  {:<20}    {}\n",
        "#Broker Name",
        "#QID",
        "#Send Result",
        "#MsgId",
        sent.broker_name,
        sent.queue_id,
        "SEND_OK",
        sent.msg_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::protocol::body::OffsetWrapper;

    #[test]
    fn times_print_as_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_millis(1_796_342_400_123), "2026-12-04 00:00:00,123");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59");
    }

    #[test]
    fn consumer_progress_prints_rocketmqs_columns_and_the_lag() {
        let mut stats = ConsumeStats::default();
        let mq = MessageQueue::new("Orders", "broker-a", 1);
        stats.offset_table.insert(
            mq.clone(),
            OffsetWrapper { broker_offset: 120, consumer_offset: 100, last_timestamp: 0, pull_offset: 100 },
        );
        let text = consumer_progress(&stats, &BTreeMap::new(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("#Topic                            #Broker Name"), "{text}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(row[..7], ["Orders", "broker-a", "1", "120", "100", "NA", "20"], "{text}");
        assert!(text.ends_with("Diff Total: 20\n"), "{text}");
        let json = consumer_progress(&stats, &BTreeMap::new(), true);
        assert_eq!(
            json,
            r#"[{"topic":"Orders","brokerName":"broker-a","queueId":1,"brokerOffset":120,"consumerOffset":100,"diff":20,"lastTimestamp":0}]"#
        );
    }

    #[test]
    fn times_are_read_as_mqadmin_takes_them() {
        assert_eq!(parse_time("now", 42).unwrap(), 42);
        assert_eq!(parse_time("1796342400123", 0).unwrap(), 1_796_342_400_123);
        assert_eq!(parse_time("2026-12-04#00:00:00:123", 0).unwrap(), 1_796_342_400_123);
        assert_eq!(parse_time("2000-02-29#12:30:00:000", 0).unwrap(), 951_827_400_000);
        assert_eq!(utc(parse_time("1969-12-31#23:59:59:000", 0).unwrap()), "1969-12-31 23:59:59");
        for bad in ["yesterday", "2026-13-01#00:00:00:000", "2026-12-04#00:00:00", "2026-12-04"] {
            assert!(parse_time(bad, 0).unwrap_err().to_string().contains("is not a time"), "{bad}");
        }
    }

    #[test]
    fn long_names_are_cut_to_the_column_as_rocketmq_does() {
        assert_eq!(front("abcdef", 3), "abc");
        assert_eq!(front("ab", 3), "ab");
        assert_eq!(front("ééé", 2), "éé");
    }
}
