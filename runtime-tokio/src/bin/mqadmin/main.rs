//! `mqadmin`: RocketMQ's admin tool for Keel (and for Apache RocketMQ: it speaks the same
//! request codes), with RocketMQ's sub-command names, options and output columns.
//!
//! `mqadmin topicStatus -n 127.0.0.1:9876 -t Orders`, `mqadmin consumerProgress -n … -g
//! cg`; `--json` prints rows for scripts. Errors go to stderr in plain words and the exit
//! status is 1.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use keel_core::protocol::body::SubscriptionGroupConfig;
use keel_core::protocol::client_requests::OutgoingMessage;
use keel_runtime_tokio::admin::change::{ResetSpec, Target, TopicSpec};
use keel_runtime_tokio::admin::message::Scanned;
use keel_runtime_tokio::admin::report::{self, BrokerRow, GroupProgress};
use keel_runtime_tokio::admin::{consumer, ha};
use keel_runtime_tokio::admin::{now_ms, AdminClient, RETRY_PREFIX};

use cli::{Args, Command, Common};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.command).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("mqadmin: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Carry out one sub-command; what it prints.
async fn run(command: Command) -> anyhow::Result<String> {
    match command {
        Command::TopicList { common, cluster_model: true } => topics_by_cluster(&common).await,
        Command::TopicList { common, cluster_model: false } => {
            let topics = AdminClient::new(&common.namesrv)?.topic_list().await?;
            if common.json {
                let names: Vec<&String> = topics.topic_list.iter().collect();
                return Ok(format!("{}\n", report::json_text(&names)));
            }
            Ok(topics.topic_list.iter().map(|t| format!("{t}\n")).collect())
        }
        Command::TopicRoute { common, topic } => {
            let route = AdminClient::new(&common.namesrv)?.route(&topic).await?;
            Ok(format!("{}\n", report::json_text(&route)))
        }
        Command::TopicStatus { common, topic } => {
            let table = AdminClient::new(&common.namesrv)?.topic_stats(&topic).await?;
            Ok(report::topic_status(&table, common.json))
        }
        Command::ClusterList { common } => cluster_list(&common).await,
        Command::BrokerStatus { common, broker } => {
            let kv = AdminClient::new(&common.namesrv)?.runtime_info(&broker).await?;
            Ok(report::broker_status(&kv, common.json))
        }
        Command::ConsumerProgress { common, group: Some(group), topic } => {
            let admin = AdminClient::new(&common.namesrv)?;
            let stats = admin.consume_stats(&group, topic.as_deref()).await?;
            // Who holds each queue, from each member's running info (NA where unknown).
            let holders = admin.queue_holders(&group).await;
            Ok(report::consumer_progress(&stats, &holders, common.json))
        }
        Command::ConsumerProgress { common, group: None, .. } => every_group_progress(&common).await,
        Command::ConsumerConnection { common, group } => {
            let cc = AdminClient::new(&common.namesrv)?.consumer_connection(&group).await?;
            Ok(report::consumer_connection(&cc, common.json))
        }
        Command::UpdateTopic {
            common,
            target,
            topic,
            read_queue_nums,
            write_queue_nums,
            perm,
            order,
            attributes,
        } => {
            let spec = TopicSpec { topic, read_queue_nums, write_queue_nums, perm, order, attributes };
            let admin = AdminClient::new(&common.namesrv)?;
            let target = target.target()?;
            let addrs = admin.update_topic(&spec, &target).await?;
            let mut out = addrs.iter().map(|a| format!("create topic to {a} success.\n")).collect::<String>();
            if order {
                // As RocketMQ's tool does: the topic's queues per broker set, in the name
                // server's KV config, which routes carry as orderTopicConf.
                let conf = admin.put_order_conf(&spec.topic, &target, spec.write_queue_nums).await?;
                let scope = if matches!(target, Target::Cluster(_)) { "cluster" } else { "broker" };
                out.push_str(&format!("set {scope} orderConf. isOrder=true, orderConf=[{conf}]\n"));
            }
            Ok(out + &topic_text(&spec) + "\n")
        }
        Command::QueryMsgTraceById { common, id, trace_topic } => {
            let lines = AdminClient::new(&common.namesrv)?.message_trace(&trace_topic, &id).await?;
            if lines.is_empty() {
                anyhow::bail!("no trace of {id} in {trace_topic}");
            }
            Ok(keel_runtime_tokio::admin::trace::trace_text(&lines))
        }
        Command::UpdateKvConfig { common, item, value } => {
            AdminClient::new(&common.namesrv)?.put_kv(&item.namespace, &item.key, &value).await?;
            Ok("create or update kv config to namespace success.\n".into())
        }
        Command::DeleteKvConfig { common, item } => {
            AdminClient::new(&common.namesrv)?.delete_kv(&item.namespace, &item.key).await?;
            Ok("delete kv config from namespace success.\n".into())
        }
        Command::UpdateOrderConf { common, topic, order_conf, method } => {
            let admin = AdminClient::new(&common.namesrv)?;
            let ns = keel_core::namesrv::kv_config::ORDER_TOPIC_CONFIG;
            match method.as_str() {
                "get" => {
                    let conf = admin.get_kv(ns, &topic).await?.unwrap_or_default();
                    Ok(format!("get orderConf success. topic=[{topic}], orderConf=[{conf}] \n"))
                }
                "put" => {
                    let conf = order_conf.context("put needs the configuration (-v brokerName:queues;…)")?;
                    admin.put_kv(ns, &topic, &conf).await?;
                    Ok(format!("update orderConf success. topic=[{topic}], orderConf=[{conf}]\n"))
                }
                "delete" => {
                    admin.delete_kv(ns, &topic).await?;
                    Ok(format!("delete orderConf success. topic=[{topic}]\n"))
                }
                other => anyhow::bail!("{other} is not a method (-m): get, put or delete"),
            }
        }
        Command::UpdateTopicPerm { common, target, topic, perm } => {
            let admin = AdminClient::new(&common.namesrv)?;
            let route = admin.route(&topic).await?;
            let queues = route.queue_datas.first().with_context(|| format!("{topic} has no queues"))?;
            let before = queues.perm;
            let spec = TopicSpec {
                topic,
                read_queue_nums: queues.read_queue_nums,
                write_queue_nums: queues.write_queue_nums,
                perm,
                order: route.order_topic_conf.is_some(),
                attributes: None,
            };
            let addrs = admin.update_topic(&spec, &target.target()?).await?;
            Ok(addrs
                .iter()
                .map(|a| format!("update topic perm from {before} to {perm} in {a} success.\n"))
                .collect())
        }
        Command::DeleteTopic { common, topic, cluster } => {
            AdminClient::new(&common.namesrv)?.delete_topic(&topic, &cluster).await?;
            Ok(format!(
                "delete topic [{topic}] from cluster [{cluster}] success.\ndelete topic [{topic}] from NameServer success.\n"
            ))
        }
        Command::UpdateSubGroup {
            common,
            target,
            group,
            consume_enable,
            consume_from_min_enable,
            consume_broadcast_enable,
            orderly,
            retry_queue_nums,
            retry_max_times,
            broker_id,
            slow_broker_id,
            notify,
        } => {
            let config = SubscriptionGroupConfig {
                group_name: group,
                consume_enable,
                consume_from_min_enable,
                consume_broadcast_enable,
                consume_message_orderly: orderly,
                retry_queue_nums,
                retry_max_times,
                broker_id,
                which_broker_when_consume_slowly: slow_broker_id,
                notify_consumer_ids_changed_enable: notify,
                ..SubscriptionGroupConfig::default()
            };
            let addrs = AdminClient::new(&common.namesrv)?.update_group(&config, &target.target()?).await?;
            let shown = String::from_utf8_lossy(&keel_core::protocol::json::to_body(
                &config,
                keel_core::protocol::json::KeyStyle::Standard,
            ))
            .into_owned();
            Ok(addrs
                .iter()
                .map(|a| format!("create subscription group to {a} success.\n"))
                .collect::<String>()
                + &shown
                + "\n")
        }
        Command::DeleteSubGroup { common, target, group, remove_offset } => {
            let addrs = AdminClient::new(&common.namesrv)?
                .delete_group(&group, remove_offset, &target.target()?)
                .await?;
            Ok(addrs
                .iter()
                .map(|a| format!("delete subscription group [{group}] from broker [{a}] success.\n"))
                .collect())
        }
        Command::QueryMsgById { common, id, topic, group, client_id } => {
            let admin = AdminClient::new(&common.namesrv)?;
            // A unique id is hex too, so it may decode as an offset id naming no broker: as
            // RocketMQ's tool does, a failed offset lookup falls back to the unique key.
            let message = match (admin.message_by_offset_id(&id).await, topic) {
                (Ok(message), _) => message,
                (Err(_), Some(topic)) => newest_by_unique_key(&admin, &topic, &id).await?,
                (Err(error), None) => {
                    return Err(error.context("give the topic (-t) to look the id up as a unique id"))
                }
            };
            show_message(&admin, &message, group.zip(client_id)).await
        }
        Command::QueryMsgByKey { common, topic, key, begin, end, max, cluster: _ } => {
            let found = AdminClient::new(&common.namesrv)?
                .messages_by_key(&topic, &key, false, max, (begin, end))
                .await?;
            Ok(report::messages_by_key(&found, common.json))
        }
        Command::QueryMsgByUniqueKey { common, id, topic, group, client_id, show_all } => {
            let admin = AdminClient::new(&common.namesrv)?;
            let found = admin.messages_by_key(&topic, &id, true, 32, (0, i64::MAX)).await?;
            if found.is_empty() {
                anyhow::bail!("no message of {topic} has the unique id {id}");
            }
            let mut out = String::new();
            let shown = if show_all { found.len() } else { 1 };
            let mut consumer = group.zip(client_id);
            for (_, message) in found.iter().take(shown) {
                out.push_str(&show_message(&admin, message, consumer.take()).await?);
            }
            Ok(out)
        }
        Command::ConsumerStatus { common, group, client_id } => {
            let admin = AdminClient::new(&common.namesrv)?;
            if let Some(client_id) = client_id {
                let info = admin.running_info(&group, &client_id).await?;
                return Ok(consumer::running_info_text(&info));
            }
            let connection = admin.consumer_connection(&group).await?;
            let mut out = String::new();
            for (i, member) in connection.connection_set.iter().enumerate() {
                let held = match admin.running_info(&group, &member.client_id).await {
                    Ok(info) => format!("{} queues", info.mq_table.len()),
                    Err(error) => format!("no answer: {error:#}"),
                };
                out.push_str(&format!(
                    "{:03}  {:<40} {:<20} {held}\n",
                    i + 1,
                    member.client_id,
                    keel_core::protocol::version_desc(member.version)
                ));
            }
            Ok(out)
        }
        Command::QueryMsgByOffset { common, topic, broker_name, queue_id, offset } => {
            let message =
                AdminClient::new(&common.namesrv)?.message_at(&topic, &broker_name, queue_id, offset).await?;
            let id = keel_core::protocol::message::message_id::offset_message_id(
                message.head.store_host,
                message.head.physical_offset,
            );
            let path = write_body(&id, &message.body)?;
            Ok(report::message(&id, &message, &path))
        }
        Command::PrintMsg { common, topic, begin, end, print_body } => {
            let (begin, end) = (optional_time(begin)?, optional_time(end)?);
            let mut out = String::new();
            AdminClient::new(&common.namesrv)?
                .scan_topic(&topic, begin, end, usize::MAX, |scanned| match scanned {
                    Scanned::Queue { broker_name, queue_id, min, max } => out.push_str(&format!(
                        "minOffset={min}, maxOffset={max}, MessageQueue [topic={topic}, brokerName={broker_name}, queueId={queue_id}]\n"
                    )),
                    Scanned::Message { broker_name, message } => {
                        out.push_str(&report::message_line(broker_name, message, print_body));
                    }
                })
                .await?;
            Ok(out)
        }
        Command::ConsumeMessage { common, topic, broker_name, queue_id, offset, begin, end, count } => {
            let admin = AdminClient::new(&common.namesrv)?;
            let mut out = String::new();
            match (broker_name, queue_id, offset) {
                (Some(broker_name), Some(queue_id), Some(offset)) => {
                    let mut next = offset;
                    let mut read = 0;
                    let addr = admin.master_of(&topic, &broker_name).await?;
                    while read < count {
                        let batch =
                            AdminClient::pull(&addr, &topic, queue_id, next, 32).await.unwrap_or_default();
                        if batch.is_empty() {
                            break;
                        }
                        for message in batch.iter().take(count - read) {
                            out.push_str(&report::message_line(&broker_name, message, true));
                            read += 1;
                            next = message.head.queue_offset + 1;
                        }
                    }
                }
                (None, None, None) => {
                    let (begin, end) = (optional_time(begin)?, optional_time(end)?);
                    admin
                        .scan_topic(&topic, begin, end, count, |scanned| {
                            if let Scanned::Message { broker_name, message } = scanned {
                                out.push_str(&report::message_line(broker_name, message, true));
                            }
                        })
                        .await?;
                }
                _ => anyhow::bail!("name a queue with all of -b, -i and -o, or none of them"),
            }
            out.push_str("Consume ok\n");
            Ok(out)
        }
        Command::SendMessage { common, topic, body, keys, tags, broker_name, queue_id } => {
            let message = OutgoingMessage {
                topic,
                tags,
                keys,
                user_properties: Vec::new(),
                body: bytes::Bytes::from(body.into_bytes()),
            };
            let sent =
                AdminClient::new(&common.namesrv)?.send(message, broker_name.as_deref(), queue_id).await?;
            Ok(report::sent(&sent, common.json))
        }
        Command::ResetOffsetByTime { common, group, topic, timestamp, force } => {
            let millis = report::parse_time(&timestamp, now_ms())?;
            let spec = ResetSpec { group, topic, timestamp: millis, force };
            let table = AdminClient::new(&common.namesrv)?.reset_offsets(&spec).await?;
            let header = format!(
                "rollback consumer offset by specified consumerGroup[{}], topic[{}], force[{force}], \
                 timestamp(string)[{timestamp}], timestamp(long)[{millis}]",
                spec.group, spec.topic
            );
            Ok(report::reset_offsets(&header, &table, common.json))
        }
        Command::GetBrokerConfig { common, target } => {
            let admin = AdminClient::new(&common.namesrv)?;
            let mut out = String::new();
            for addr in admin.target_addrs(&target.target()?).await? {
                let text = admin.broker_config(&addr).await?;
                out.push_str(&format!("============{addr}============\n"));
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let (key, value) = line.split_once('=').unwrap_or((line, ""));
                    out.push_str(&format!("{key:<50}=  {value}\n"));
                }
            }
            Ok(out)
        }
        Command::UpdateBrokerConfig { common, target, key, value } => {
            let addrs = AdminClient::new(&common.namesrv)?
                .update_broker_config(&key, &value, &target.target()?)
                .await?;
            Ok(addrs.iter().map(|a| format!("update broker config success, {a}\n")).collect())
        }
        Command::HaStatus { broker } => {
            let info = AdminClient::ha_status(&broker).await?;
            Ok(ha::ha_status_text(&broker, &info))
        }
        Command::GetBrokerEpoch { broker } => {
            let cache = AdminClient::epochs(&broker).await?;
            Ok(ha::epochs_text(&broker, &cache))
        }
        Command::GetSyncStateSet { controller, broker_name } => {
            let sets: Vec<String> = broker_name.into_iter().collect();
            let info = AdminClient::sync_state_sets(&controller, &sets).await?;
            if info.replicas_info_table.is_empty() {
                anyhow::bail!("the controller at {controller} knows no such broker set");
            }
            Ok(ha::sync_state_text(&info))
        }
        Command::ElectMaster { controller, cluster, broker_name, broker_id } => {
            let elected = AdminClient::elect_master(&controller, &cluster, &broker_name, broker_id).await?;
            Ok(ha::elected_text(&cluster, &broker_name, &elected))
        }
        Command::ProducerConnection { common, group, topic } => {
            let pc = AdminClient::new(&common.namesrv)?.producer_connection(&group, &topic).await?;
            Ok(report::producer_connection(&pc.connection_set, common.json))
        }
    }
}

/// Java's `TopicConfig.toString()`, as `updateTopic` prints it.
fn topic_text(spec: &TopicSpec) -> String {
    let flag = |bit: i32, c: char| if spec.perm & bit != 0 { c } else { '-' };
    format!(
        "TopicConfig [topicName={}, readQueueNums={}, writeQueueNums={}, perm={}{}{}, topicFilterType=SINGLE_TAG, \
         topicSysFlag=0, order={}, attributes={{{}}}]",
        spec.topic,
        spec.read_queue_nums,
        spec.write_queue_nums,
        flag(4, 'R'),
        flag(2, 'W'),
        flag(1, 'X'),
        spec.order,
        // Java prints the attribute changes as given: `+message.type=FIFO`.
        spec.attributes.as_deref().unwrap_or("").split(',').filter(|a| !a.is_empty()).collect::<Vec<_>>().join(", ")
    )
}

/// Write a message body where RocketMQ's tool does (`<tmp>/rocketmq/msgbodys/<id>`); the path.
/// The newest message of `topic` with unique id `id`.
async fn newest_by_unique_key(
    admin: &AdminClient,
    topic: &str,
    id: &str,
) -> anyhow::Result<keel_core::protocol::message::stored::StoredMessage> {
    let found = admin.messages_by_key(topic, id, true, 32, (0, i64::MAX)).await?;
    let newest = found.into_iter().map(|(_, m)| m).max_by_key(|m| m.head.store_timestamp);
    newest.ok_or_else(|| anyhow::anyhow!("no message of {topic} has the id {id}"))
}

/// A message as queryMsgById prints it (the body goes to a file), and with a consumer
/// (group, client id) what that client's listener made of it.
async fn show_message(
    admin: &AdminClient,
    message: &keel_core::protocol::message::stored::StoredMessage,
    consumer: Option<(String, String)>,
) -> anyhow::Result<String> {
    let id = keel_core::protocol::message::message_id::offset_message_id(
        message.head.store_host,
        message.head.physical_offset,
    );
    let path = write_body(&id, &message.body)?;
    let mut out = report::message(&id, message, &path);
    if let Some((group, client_id)) = consumer {
        let broker_name = admin
            .route(&message.topic)
            .await
            .ok()
            .and_then(|r| {
                let store = message.head.store_host.to_string();
                r.broker_datas.into_iter().find(|b| b.broker_addrs.values().any(|a| *a == store))
            })
            .map(|b| b.broker_name)
            .unwrap_or_default();
        let result = admin.consume_directly(&group, &client_id, &id, &message.topic, &broker_name).await?;
        out.push_str(&consumer::consumed_text(&result));
    }
    Ok(out)
}

fn write_body(id: &str, body: &[u8]) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join("rocketmq").join("msgbodys");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(id);
    std::fs::write(&path, body).with_context(|| format!("writing the body to {}", path.display()))?;
    Ok(path.display().to_string())
}

/// An optional time option, read as [`report::parse_time`] reads it.
fn optional_time(text: Option<String>) -> anyhow::Result<Option<i64>> {
    text.map(|t| report::parse_time(&t, now_ms())).transpose()
}

/// `clusterList`: every broker of every cluster with its runtime figures (a broker that
/// does not answer is listed with empty figures, as RocketMQ does).
async fn cluster_list(common: &Common) -> anyhow::Result<String> {
    let admin = AdminClient::new(&common.namesrv)?;
    let info = admin.cluster_info().await?;
    let now_ms = now_ms();
    let mut rows = Vec::new();
    for (cluster, names) in &info.cluster_addr_table {
        for name in names {
            let Some(broker) = info.broker_addr_table.get(name) else { continue };
            for (id, addr) in &broker.broker_addrs {
                let kv = admin.runtime_info(addr).await.unwrap_or_default();
                rows.push(BrokerRow::from_runtime(cluster, name, *id, addr, &kv, now_ms));
            }
        }
    }
    Ok(report::cluster_list(&rows, common.json))
}

/// `topicList -c`: each topic with its cluster and the groups consuming it (system topics
/// left out, as RocketMQ does).
async fn topics_by_cluster(common: &Common) -> anyhow::Result<String> {
    let admin = AdminClient::new(&common.namesrv)?;
    let info = admin.cluster_info().await?;
    let cluster_of = |broker_name: &str| {
        info.cluster_addr_table.iter().find(|(_, names)| names.contains(broker_name)).map(|(c, _)| c.clone())
    };
    let mut rows: Vec<report::TopicRow> = Vec::new();
    for topic in admin.topic_list().await?.topic_list {
        if topic.starts_with(RETRY_PREFIX) || topic.starts_with("%DLQ%") || topic == "TBW102" {
            continue;
        }
        let Ok(route) = admin.route(&topic).await else { continue };
        let cluster = route.broker_datas.iter().find_map(|b| cluster_of(&b.broker_name)).unwrap_or_default();
        let groups = admin.consumed_by(&topic).await.unwrap_or_default();
        if groups.is_empty() {
            rows.push(report::TopicRow {
                cluster: cluster.clone(),
                topic: topic.clone(),
                group: String::new(),
            });
        }
        rows.extend(groups.into_iter().map(|group| report::TopicRow {
            cluster: cluster.clone(),
            topic: topic.clone(),
            group,
        }));
    }
    Ok(report::topics_by_cluster(&rows, common.json))
}

/// `consumerProgress` without `-g`: one line per group that has a retry topic, as
/// RocketMQ finds groups.
async fn every_group_progress(common: &Common) -> anyhow::Result<String> {
    let admin = AdminClient::new(&common.namesrv)?;
    let topics = admin.topic_list().await.context("listing the topics")?;
    let mut groups = Vec::new();
    for topic in &topics.topic_list {
        let Some(group) = topic.strip_prefix(RETRY_PREFIX) else { continue };
        let stats = admin.consume_stats(group, None).await.ok();
        let connection = admin.consumer_connection(group).await.ok();
        groups.push(GroupProgress {
            group: group.to_owned(),
            count: connection.as_ref().map_or(0, |c| c.connection_set.len()),
            version: connection.as_ref().and_then(|c| c.connection_set.iter().map(|m| m.version).min()),
            consume_type: connection.as_ref().map(|c| c.consume_type.clone()),
            message_model: connection.as_ref().map(|c| c.message_model.clone()),
            consume_tps: stats.as_ref().and_then(|s| s.consume_tps).unwrap_or(0.0) as i64,
            diff_total: stats.as_ref().map_or(0, keel_core::protocol::body::ConsumeStats::total_diff),
        });
    }
    Ok(report::group_progress(&groups, common.json))
}
