//! QueryRoute: a topic's route from the name server, as the 5.x SDKs want it. Every broker
//! is reached through its gRPC endpoint; each queue lists the message types its topic
//! accepts (a producer refuses to send another type).

use super::proto::{self, MessageType, Permission};
use crate::protocol::body::TopicRouteData;

/// The message types a topic whose `message.type` attribute is `attribute` accepts:
/// RocketMQ's default is NORMAL, and MIXED accepts all four.
#[must_use]
pub fn accepted_types(attribute: Option<&str>) -> Vec<i32> {
    let one = |kind: MessageType| vec![kind as i32];
    match attribute.map(str::to_ascii_uppercase).as_deref() {
        Some("FIFO") => one(MessageType::Fifo),
        Some("DELAY") => one(MessageType::Delay),
        Some("TRANSACTION") => one(MessageType::Transaction),
        Some("MIXED") => {
            [MessageType::Normal, MessageType::Fifo, MessageType::Delay, MessageType::Transaction]
                .iter()
                .map(|kind| *kind as i32)
                .collect()
        }
        _ => one(MessageType::Normal),
    }
}

/// The queues of `route` for `topic`, each broker master reached at `endpoint(its remoting
/// address)`: per broker, its read-only queues, then write-only, then read-write, as
/// RocketMQ's proxy lists them. Brokers without a master are left out.
#[must_use]
pub fn message_queues(
    topic: &proto::Resource,
    route: &TopicRouteData,
    accepted: &[i32],
    endpoint: &dyn Fn(&str) -> Option<proto::Endpoints>,
) -> Vec<proto::MessageQueue> {
    let mut queues = Vec::new();
    for data in &route.queue_datas {
        let Some(master) = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == data.broker_name)
            .and_then(|b| b.broker_addrs.get(&0))
        else {
            continue;
        };
        let Some(endpoints) = endpoint(master) else { continue };
        let broker = proto::Broker { name: data.broker_name.clone(), id: 0, endpoints: Some(endpoints) };
        let (readable, writable) = (data.perm & 4 != 0, data.perm & 2 != 0);
        let (read, write) = (data.read_queue_nums.max(0), data.write_queue_nums.max(0));
        let both = if readable && writable { read.min(write) } else { 0 };
        let mut push = |from: i32, to: i32, permission: Permission| {
            for id in from..to {
                queues.push(proto::MessageQueue {
                    topic: Some(topic.clone()),
                    id,
                    permission: permission as i32,
                    broker: Some(broker.clone()),
                    accept_message_types: accepted.to_vec(),
                });
            }
        };
        if readable {
            push(both, read, Permission::Read);
        }
        if writable {
            push(both, write, Permission::Write);
        }
        push(0, both, Permission::ReadWrite);
    }
    queues
}

/// `host:port` as gRPC endpoints (a name or an IPv4/IPv6 address).
#[must_use]
pub fn endpoints(host: &str, port: u16) -> proto::Endpoints {
    use super::proto::AddressScheme;
    let scheme = match host.parse::<core::net::IpAddr>() {
        Ok(core::net::IpAddr::V4(_)) => AddressScheme::IPv4,
        Ok(core::net::IpAddr::V6(_)) => AddressScheme::IPv6,
        Err(_) => AddressScheme::DomainName,
    };
    proto::Endpoints {
        scheme: scheme as i32,
        addresses: vec![proto::Address { host: host.to_owned(), port: i32::from(port) }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::{BrokerData, QueueData};

    #[test]
    fn queues_come_read_only_then_write_only_then_read_write_through_the_grpc_endpoint() {
        let route = TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                read_queue_nums: 4,
                write_queue_nums: 2,
                perm: 6,
                ..QueueData::default()
            }],
            broker_datas: vec![BrokerData {
                cluster: "c".into(),
                broker_name: "broker-a".into(),
                broker_addrs: [(0, "10.0.0.7:10911".to_owned())].into_iter().collect(),
                ..BrokerData::default()
            }],
            ..TopicRouteData::default()
        };
        let topic = proto::Resource { resource_namespace: String::new(), name: "T".into() };
        let endpoint = |addr: &str| addr.split(':').next().map(|host| endpoints(host, 8081));
        let queues = message_queues(&topic, &route, &accepted_types(None), &endpoint);
        let shape: Vec<(i32, i32)> = queues.iter().map(|q| (q.id, q.permission)).collect();
        let (r, rw) = (Permission::Read as i32, Permission::ReadWrite as i32);
        assert_eq!(shape, vec![(2, r), (3, r), (0, rw), (1, rw)]);
        let broker = queues[0].broker.as_ref().unwrap();
        assert_eq!(broker.endpoints.as_ref().unwrap().addresses[0].port, 8081);
        assert_eq!(broker.endpoints.as_ref().unwrap().scheme, proto::AddressScheme::IPv4 as i32);
        assert_eq!(queues[0].accept_message_types, vec![MessageType::Normal as i32]);
        assert_eq!(accepted_types(Some("MIXED")).len(), 4);
        assert_eq!(accepted_types(Some("FIFO")), vec![MessageType::Fifo as i32]);
    }
}
