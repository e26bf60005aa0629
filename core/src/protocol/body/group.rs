//! Consumer groups' server-side settings (`SubscriptionGroupConfig`) and the table the
//! broker keeps and persists as `subscriptionGroup.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DataVersion;

/// One consumer group's settings, with RocketMQ's defaults. Newer fields Keel does not use
/// yet (`groupRetryPolicy`, `subscriptionDataSet`) are ignored on input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    /// The group.
    pub group_name: String,
    /// Whether it may consume at all (false: pulls get NO_PERMISSION).
    pub consume_enable: bool,
    /// Start from the queue's minimum offset when nothing is committed.
    pub consume_from_min_enable: bool,
    /// Whether broadcasting consumption is allowed.
    pub consume_broadcast_enable: bool,
    /// Whether the group consumes orderly.
    pub consume_message_orderly: bool,
    /// Queues of the group's retry topic.
    pub retry_queue_nums: i32,
    /// Redeliveries before the dead-letter queue.
    pub retry_max_times: i32,
    /// Broker to consume from (0 = master).
    pub broker_id: i64,
    /// Broker to suggest when consumption falls behind.
    pub which_broker_when_consume_slowly: i64,
    /// Whether membership changes are pushed to the group's consumers.
    pub notify_consumer_ids_changed_enable: bool,
    /// Group sys flag.
    pub group_sys_flag: i32,
    /// Consume timeout, minutes.
    pub consume_timeout_minute: i32,
    /// Free-form attributes.
    pub attributes: BTreeMap<String, String>,
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        Self {
            group_name: String::new(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            attributes: BTreeMap::new(),
        }
    }
}

/// The broker's group table with its version (`subscriptionGroup.json`, and the body of
/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    /// Group name → settings.
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// Group → topic → forbidden bits (kept as read; Keel does not enforce them yet).
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    /// Version of the table.
    pub data_version: DataVersion,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::{self, KeyStyle};

    #[test]
    fn reads_what_new_mqadmin_sends_and_writes_rocketmq_field_names() {
        let body = br#"{"groupName":"g1","consumeEnable":false,"retryMaxTimes":3,
            "groupRetryPolicy":{"type":"CUSTOMIZED","customizedRetryPolicy":{"next":[1000,5000]}},
            "subscriptionDataSet":null,"attributes":{}}"#;
        let config: SubscriptionGroupConfig = json::from_slice(body).unwrap();
        assert_eq!(config.group_name, "g1");
        assert!(!config.consume_enable);
        assert_eq!((config.retry_max_times, config.retry_queue_nums), (3, 1));
        let text = json::to_string(&config, KeyStyle::Fastjson).unwrap();
        assert!(
            text.contains(r#""consumeEnable":false"#) && text.contains(r#""whichBrokerWhenConsumeSlowly":1"#),
            "{text}"
        );
        let mut table = SubscriptionGroupWrapper::default();
        table.subscription_group_table.insert("g1".into(), config);
        let text = json::to_vec(&table, KeyStyle::Fastjson).unwrap();
        assert_eq!(json::from_slice::<SubscriptionGroupWrapper>(&text).unwrap(), table);
    }
}
