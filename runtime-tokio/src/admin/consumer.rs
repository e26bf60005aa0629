//! What mqadmin asks of consumer clients through their brokers: a client's running info
//! (`consumerStatus`; also who holds which queue, for `consumerProgress`) and a message
//! consumed directly by a chosen client (`queryMsgById -g -d`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{anyhow, Context};
use keel_core::protocol::body::{ConsumeMessageDirectlyResult, ConsumerRunningInfo, MessageQueue};
use keel_core::protocol::json;
use keel_core::protocol::message::message_id::decode_offset_message_id;
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode};

use super::AdminClient;

impl AdminClient {
    /// What the client `client_id` of `group` holds, asked through the first master that
    /// has it connected.
    pub async fn running_info(&self, group: &str, client_id: &str) -> anyhow::Result<ConsumerRunningInfo> {
        let mut last_error = None;
        for master in self.masters().await? {
            let ext: ExtFields =
                [("consumerGroup", group), ("clientId", client_id), ("jstackEnable", "false")]
                    .into_iter()
                    .collect();
            let request = RemotingCommand::request(RequestCode::GET_CONSUMER_RUNNING_INFO, 0, ext);
            match Self::call_request(super::resolve(&master.addr)?, request).await {
                Ok(reply) => {
                    return json::from_slice(&reply.body)
                        .context("the client's running info does not decode");
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no broker is registered with the name server")))
            .with_context(|| format!("asking {client_id} of {group} for its running info"))
    }

    /// Which member's address holds each queue of `group` (from each member's running
    /// info; members that do not answer are left out).
    pub async fn queue_holders(&self, group: &str) -> BTreeMap<MessageQueue, String> {
        let mut holders = BTreeMap::new();
        let Ok(connection) = self.consumer_connection(group).await else { return holders };
        for member in &connection.connection_set {
            let Ok(info) = self.running_info(group, &member.client_id).await else { continue };
            let ip = member.client_addr.split(':').next().unwrap_or_default().to_owned();
            holders.extend(info.mq_table.into_keys().map(|queue| (queue, ip.clone())));
        }
        holders
    }

    /// Have the client `client_id` of `group` run its listener on the message `msg_id` (an
    /// offset id: the broker it names sends the message).
    pub async fn consume_directly(
        &self,
        group: &str,
        client_id: &str,
        msg_id: &str,
        topic: &str,
        broker_name: &str,
    ) -> anyhow::Result<ConsumeMessageDirectlyResult> {
        let (broker, _) = decode_offset_message_id(msg_id)
            .ok_or_else(|| anyhow!("{msg_id} is not an offset message id"))?;
        let ext: ExtFields = [
            ("consumerGroup", group),
            ("clientId", client_id),
            ("msgId", msg_id),
            ("topic", topic),
            ("brokerName", broker_name),
        ]
        .into_iter()
        .collect();
        let request = RemotingCommand::request(RequestCode::CONSUME_MESSAGE_DIRECTLY, 0, ext);
        let reply = Self::call_request(broker, request).await?;
        json::from_slice(&reply.body).context("the client's consume result does not decode")
    }
}

/// `consumerStatus -i`: a client's running info, in the sections RocketMQ prints.
#[must_use]
pub fn running_info_text(info: &ConsumerRunningInfo) -> String {
    let mut out = String::from("#Consumer Properties#\n");
    for (key, value) in &info.properties {
        let _ = writeln!(out, "{key:<40}: {value}");
    }
    out.push_str("\n\n#Consumer Subscription#\n");
    for (i, sub) in info.subscription_set.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:03} Topic: {:<40} ClassFilter: {:<8} SubExpression: {}",
            i + 1,
            sub.topic,
            sub.class_filter_mode,
            sub.sub_string
        );
    }
    let _ = writeln!(
        out,
        "\n\n#Consumer Offset#\n{:<64}  {:<32}  {:<4}  {:<20}",
        "#Topic", "#Broker Name", "#QID", "#Consumer Offset"
    );
    for (mq, pq) in &info.mq_table {
        let _ = writeln!(
            out,
            "{:<64}  {:<32}  {:<4}  {:<20}",
            mq.topic, mq.broker_name, mq.queue_id, pq.commit_offset
        );
    }
    let _ = writeln!(
        out,
        "\n\n#Consumer MQ Detail#\n{:<64}  {:<32}  {:<4}  {:<20}",
        "#Topic", "#Broker Name", "#QID", "#ProcessQueueInfo"
    );
    for (mq, pq) in &info.mq_table {
        let detail = format!(
            "ProcessQueueInfo [commitOffset={}, cachedMsgMinOffset={}, cachedMsgMaxOffset={}, cachedMsgCount={}, \
             cachedMsgSizeInMiB={}, locked={}, droped={}]",
            pq.commit_offset,
            pq.cached_msg_min_offset,
            pq.cached_msg_max_offset,
            pq.cached_msg_count,
            pq.cached_msg_size_in_mi_b,
            pq.locked,
            pq.droped
        );
        let _ = writeln!(out, "{:<64}  {:<32}  {:<4}  {detail}", mq.topic, mq.broker_name, mq.queue_id);
    }
    let _ = writeln!(
        out,
        "\n\n#Consumer RT&TPS#\n{:<64}  {:>14} {:>14} {:>14} {:>14} {:>18} {:>25}",
        "#Topic",
        "#Pull RT",
        "#Pull TPS",
        "#Consume RT",
        "#ConsumeOK TPS",
        "#ConsumeFailed TPS",
        "#ConsumeFailedMsgsInHour"
    );
    for (topic, s) in &info.status_table {
        let _ = writeln!(
            out,
            "{topic:<64}  {:>14.2} {:>14.2} {:>14.2} {:>14.2} {:>18.2} {:>25}",
            s.pull_rt,
            s.pull_tps,
            s.consume_rt,
            s.consume_ok_tps,
            s.consume_failed_tps,
            s.consume_failed_msgs
        );
    }
    out
}

/// A consume-directly result as RocketMQ's tool prints it.
#[must_use]
pub fn consumed_text(result: &ConsumeMessageDirectlyResult) -> String {
    format!(
        "ConsumeMessageDirectlyResult [order={}, autoCommit={}, consumeResult={}, remark={}, spentTimeMills={}]\n",
        result.order, result.auto_commit, result.consume_result, result.remark, result.spent_time_mills
    )
}
