//! Client-management bodies: what HEART_BEAT carries and what consumers are told.
//!
//! Enum-valued fields (`consumeType`, `messageModel`, `consumeFromWhere`) are kept as strings:
//! clients send values older brokers never heard of (Go sends `"UNKNOWN"`), and a broker must
//! accept every client.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A consumer's subscription to one topic (`SubscriptionData`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// Class filter mode (obsolete, false).
    pub class_filter_mode: bool,
    /// Java hash codes of the tags.
    pub code_set: BTreeSet<i32>,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
    /// The expression: `*`, `TagA || TagB`, or SQL.
    pub sub_string: String,
    /// Version (a timestamp): pulls must not be newer than the registered one.
    pub sub_version: i64,
    /// The tags.
    pub tags_set: BTreeSet<String>,
    /// Topic.
    pub topic: String,
}

impl SubscriptionData {
    /// A TAG subscription from an expression, as clients build it (`FilterAPI`).
    #[must_use]
    pub fn from_expression(topic: &str, expression: &str, sub_version: i64) -> Self {
        let mut data = Self {
            expression_type: "TAG".into(),
            sub_string: expression.to_owned(),
            sub_version,
            topic: topic.to_owned(),
            ..Self::default()
        };
        let trimmed = expression.trim();
        if !trimmed.is_empty() && trimmed != "*" {
            for tag in trimmed.split("||").map(str::trim).filter(|t| !t.is_empty()) {
                data.tags_set.insert(tag.to_owned());
                data.code_set.insert(crate::protocol::message::tag::java_string_hash(tag));
            }
        }
        data
    }

    /// Whether every message matches (`*` or empty).
    #[must_use]
    pub fn matches_all(&self) -> bool {
        self.code_set.is_empty() && self.tags_set.is_empty()
    }

    /// Whether a message with this tag code passes the broker-side filter (a superset: the
    /// client re-checks the tag string).
    #[must_use]
    pub fn matches_code(&self, tags_code: i64) -> bool {
        self.matches_all() || i32::try_from(tags_code).is_ok_and(|code| self.code_set.contains(&code))
    }
}

/// A consumer group as a heartbeat describes it (`ConsumerData`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// Where a new group starts.
    pub consume_from_where: String,
    /// `CONSUME_PASSIVELY` (push) or `CONSUME_ACTIVELY` (pull).
    pub consume_type: String,
    /// Group name.
    pub group_name: String,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: String,
    /// Subscriptions.
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode.
    pub unit_mode: bool,
}

/// A producer group (`ProducerData`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// Group name.
    pub group_name: String,
}

/// The HEART_BEAT body (`HeartbeatData`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    /// `ip@instance`.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Consumer groups of this client.
    pub consumer_data_set: Vec<ConsumerData>,
    /// Producer groups of this client.
    pub producer_data_set: Vec<ProducerData>,
    /// 5.x heartbeat v2 fingerprint (0 = v1).
    pub heartbeat_fingerprint: i32,
    /// 5.x: subscriptions omitted, keep the registered ones.
    pub without_sub: bool,
}

/// GET_CONSUMER_LIST_BY_GROUP answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerIdList {
    /// Client ids.
    pub consumer_id_list: Vec<String>,
}

/// A string table (`KVTable`), e.g. GET_BROKER_RUNTIME_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvTable {
    /// Key → value.
    pub table: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json;

    #[test]
    fn heartbeats_from_java_and_go_parse() {
        let java = br#"{"clientID":"192.168.1.5@12345#8237461234","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"cg1","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1726000000000,"tagsSet":["TagA"],"topic":"TopicTest"}],"unitMode":false}],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"pg1"},{"groupName":"CLIENT_INNER_PRODUCER"}],"withoutSub":false}"#;
        let data: HeartbeatData = json::from_slice(java).unwrap();
        assert_eq!(data.client_id, "192.168.1.5@12345#8237461234");
        let sub = &data.consumer_data_set[0].subscription_data_set[0];
        assert!(sub.matches_code(2_598_919));
        assert!(!sub.matches_code(1));
        let go = br#"{"clientID":"g@1","consumerDataSet":[{"groupName":"g","consumeFromWhere":"UNKNOWN","subscriptionDataSet":[{"topic":"T","subString":"*","codeSet":["2598919"],"subVersion":1726000000000000000}]}]}"#;
        let data: HeartbeatData = json::from_slice(go).unwrap();
        assert_eq!(data.consumer_data_set[0].consume_from_where, "UNKNOWN");
        assert!(data.consumer_data_set[0].subscription_data_set[0].code_set.contains(&2_598_919));
    }

    #[test]
    fn expressions_build_like_the_java_filter_api() {
        let sub = SubscriptionData::from_expression("T", " TagA || TagB ||", 1);
        assert_eq!(sub.tags_set.len(), 2);
        assert!(sub.matches_code(2_598_919));
        assert!(SubscriptionData::from_expression("T", "*", 1).matches_all());
        assert!(SubscriptionData::from_expression("T", "", 1).matches_code(42));
    }
}
