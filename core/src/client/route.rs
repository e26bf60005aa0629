//! What a client reads out of a topic's route (`TopicRouteData`): the queues a producer
//! may write, the queues a consumer reads, and each broker group's master address.

use crate::protocol::body::{perm, BrokerData, MessageQueue, TopicRouteData};

/// The queues producers write (`topicRouteData2TopicPublishInfo`): for an ordered topic
/// (`orderTopicConf = "brokerA:4;brokerB:4"`) exactly those; otherwise each writable broker
/// group that has a master, in broker-name order, with its write queues.
#[must_use]
pub fn publish_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    if let Some(conf) = route.order_topic_conf.as_deref().filter(|c| !c.trim().is_empty()) {
        let mut queues = Vec::new();
        for item in conf.split(';') {
            let Some((broker, count)) = item.split_once(':') else { continue };
            let count: i32 = count.trim().parse().unwrap_or(0);
            queues.extend((0..count).map(|id| MessageQueue::new(topic, broker.trim(), id)));
        }
        return queues;
    }
    let mut datas: Vec<_> = route.queue_datas.iter().filter(|q| perm::writable(q.perm)).collect();
    datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut queues = Vec::new();
    for data in datas {
        if master_addr(route, &data.broker_name).is_none() {
            continue;
        }
        queues.extend((0..data.write_queue_nums).map(|id| MessageQueue::new(topic, &data.broker_name, id)));
    }
    queues
}

/// The queues consumers read (`topicRouteData2TopicSubscribeInfo`): each readable broker
/// group's read queues.
#[must_use]
pub fn subscribe_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    route
        .queue_datas
        .iter()
        .filter(|q| perm::readable(q.perm))
        .flat_map(|q| (0..q.read_queue_nums).map(move |id| MessageQueue::new(topic, &q.broker_name, id)))
        .collect()
}

/// The master (broker id 0) address of `broker_name`, if the route names one.
#[must_use]
pub fn master_addr<'a>(route: &'a TopicRouteData, broker_name: &str) -> Option<&'a str> {
    broker(route, broker_name)?.broker_addrs.get(&0).map(String::as_str)
}

/// Any address of `broker_name`, the master first (a consumer may read from a slave).
#[must_use]
pub fn any_addr<'a>(route: &'a TopicRouteData, broker_name: &str) -> Option<&'a str> {
    broker(route, broker_name)?.broker_addrs.values().next().map(String::as_str)
}

/// Where a consumer reads `broker_name` (RocketMQ's findBrokerAddressInSubscribe, not
/// only that broker): broker id `wanted` if the route has it, else the master, else any
/// (the lowest id), so reads go on from a slave while the master is gone.
#[must_use]
pub fn read_addr<'a>(route: &'a TopicRouteData, broker_name: &str, wanted: i64) -> Option<&'a str> {
    let addrs = &broker(route, broker_name)?.broker_addrs;
    addrs.get(&wanted).or_else(|| addrs.get(&0)).or_else(|| addrs.values().next()).map(String::as_str)
}

fn broker<'a>(route: &'a TopicRouteData, broker_name: &str) -> Option<&'a BrokerData> {
    route.broker_datas.iter().find(|b| b.broker_name == broker_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::QueueData;

    fn route() -> TopicRouteData {
        let queue = |name: &str, perm| QueueData {
            broker_name: name.into(),
            read_queue_nums: 2,
            write_queue_nums: 3,
            perm,
            topic_sys_flag: 0,
        };
        let broker = |name: &str, ids: &[i64]| BrokerData {
            broker_name: name.into(),
            broker_addrs: ids.iter().map(|id| (*id, format!("10.0.0.{id}:10911"))).collect(),
            ..BrokerData::default()
        };
        TopicRouteData {
            queue_datas: vec![
                queue("b", perm::READ | perm::WRITE),
                queue("a", perm::READ | perm::WRITE),
                queue("ro", perm::READ),
                queue("slaveonly", 6),
            ],
            broker_datas: vec![
                broker("a", &[0, 1]),
                broker("b", &[0]),
                broker("ro", &[0]),
                broker("slaveonly", &[1]),
            ],
            ..TopicRouteData::default()
        }
    }

    #[test]
    fn producers_write_to_writable_groups_with_a_master_in_name_order() {
        let queues = publish_queues("T", &route());
        let names: Vec<(String, i32)> = queues.into_iter().map(|q| (q.broker_name, q.queue_id)).collect();
        let want: Vec<(String, i32)> =
            ["a", "b"].iter().flat_map(|b| (0..3).map(|i| ((*b).to_owned(), i))).collect();
        assert_eq!(names, want);
    }

    #[test]
    fn consumers_read_every_readable_group_and_an_order_conf_overrides_publishing() {
        assert_eq!(subscribe_queues("T", &route()).len(), 8);
        let mut ordered = route();
        ordered.order_topic_conf = Some("a:2;b:1".into());
        let queues = publish_queues("T", &ordered);
        assert_eq!(
            queues,
            vec![
                MessageQueue::new("T", "a", 0),
                MessageQueue::new("T", "a", 1),
                MessageQueue::new("T", "b", 0)
            ]
        );
        assert_eq!(master_addr(&route(), "slaveonly"), None);
        assert_eq!(any_addr(&route(), "slaveonly"), Some("10.0.0.1:10911"));
        assert_eq!(read_addr(&route(), "slaveonly", 0), Some("10.0.0.1:10911"), "no master: a slave");
        assert_eq!(read_addr(&route(), "slaveonly", 7), Some("10.0.0.1:10911"), "no such id: any");
        assert_eq!(read_addr(&route(), "a", 1), Some("10.0.0.1:10911"), "the suggested slave");
        assert_eq!(read_addr(&route(), "a", 0), Some("10.0.0.0:10911"));
        assert_eq!(read_addr(&route(), "a", 5), Some("10.0.0.0:10911"), "no such id: the master");
    }
}
