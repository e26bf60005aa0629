//! `mqadmin`: RocketMQ's admin tool for Keel (and for Apache RocketMQ: it speaks the same
//! request codes), with RocketMQ's sub-command names, options and output columns.
//!
//! `mqadmin topicStatus -n 127.0.0.1:9876 -t Orders`, `mqadmin consumerProgress -n … -g
//! cg`; `--json` prints rows for scripts. Errors go to stderr in plain words and the exit
//! status is 1.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_core::protocol::body::MessageQueue;
use keel_runtime_tokio::admin::report::{self, BrokerRow, GroupProgress};
use keel_runtime_tokio::admin::{AdminClient, RETRY_PREFIX};

/// RocketMQ's admin tool, for Keel.
#[derive(Debug, Parser)]
#[command(name = "mqadmin", version, about = "Administer a RocketMQ-compatible cluster")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// What every sub-command takes.
#[derive(Debug, clap::Args)]
struct Common {
    /// The name server, `host:port` (also from NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrvAddr", env = "NAMESRV_ADDR")]
    namesrv: String,
    /// Print rows as JSON, for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "camelCase")]
enum Command {
    /// List every topic the name server knows.
    TopicList {
        #[command(flatten)]
        common: Common,
    },
    /// Print where a topic lives (its route, as JSON).
    TopicRoute {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Each queue of a topic: min and max offset, last store time.
    TopicStatus {
        #[command(flatten)]
        common: Common,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Every broker of every cluster, with its load.
    ClusterList {
        #[command(flatten)]
        common: Common,
    },
    /// A broker's runtime information.
    BrokerStatus {
        #[command(flatten)]
        common: Common,
        /// The broker, `host:port`.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
    },
    /// A group's progress and lag per queue; without -g, every group's totals.
    ConsumerProgress {
        #[command(flatten)]
        common: Common,
        /// The consumer group.
        #[arg(short = 'g', long = "groupName")]
        group: Option<String>,
        /// Only this topic.
        #[arg(short = 't', long = "topicName")]
        topic: Option<String>,
    },
    /// The members of a consumer group and their subscriptions.
    ConsumerConnection {
        #[command(flatten)]
        common: Common,
        /// The consumer group.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
    },
    /// The producers of a group sending to a topic.
    ProducerConnection {
        #[command(flatten)]
        common: Common,
        /// The producer group.
        #[arg(short = 'g', long = "producerGroup")]
        group: String,
        /// The topic.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
}

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
        Command::TopicList { common } => {
            let topics = AdminClient::new(&common.namesrv)?.topic_list().await?;
            if common.json {
                let names: Vec<&String> = topics.topic_list.iter().collect();
                return Ok(format!("{}\n", json_text(&names)));
            }
            Ok(topics.topic_list.iter().map(|t| format!("{t}\n")).collect())
        }
        Command::TopicRoute { common, topic } => {
            let route = AdminClient::new(&common.namesrv)?.route(&topic).await?;
            Ok(format!("{}\n", json_text(&route)))
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
            // Which member holds which queue needs each member's running info (relayed by
            // the broker): not asked yet, so every queue prints NA, as RocketMQ does when
            // it cannot tell.
            let holders: BTreeMap<MessageQueue, String> = BTreeMap::new();
            Ok(report::consumer_progress(&stats, &holders, common.json))
        }
        Command::ConsumerProgress { common, group: None, .. } => every_group_progress(&common).await,
        Command::ConsumerConnection { common, group } => {
            let cc = AdminClient::new(&common.namesrv)?.consumer_connection(&group).await?;
            Ok(report::consumer_connection(&cc, common.json))
        }
        Command::ProducerConnection { common, group, topic } => {
            let pc = AdminClient::new(&common.namesrv)?.producer_connection(&group, &topic).await?;
            Ok(report::producer_connection(&pc.connection_set, common.json))
        }
    }
}

fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let bytes = keel_core::protocol::json::to_body(value, keel_core::protocol::json::KeyStyle::Standard);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `clusterList`: every broker of every cluster with its runtime figures (a broker that
/// does not answer is listed with empty figures, as RocketMQ does).
async fn cluster_list(common: &Common) -> anyhow::Result<String> {
    let admin = AdminClient::new(&common.namesrv)?;
    let info = admin.cluster_info().await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
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
