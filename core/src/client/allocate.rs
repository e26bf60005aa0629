//! Queue allocation strategies (`AllocateMessageQueueStrategy`): which of a topic's queues
//! one consumer of a group owns. Each consumer computes its share alone, from the same
//! sorted queue list and the same sorted client-id list; only identical arithmetic on every
//! client (ours and Java's) gives each queue exactly one owner. So these are pure functions
//! with RocketMQ's exact results, including its edge cases (fewer queues than consumers,
//! duplicate hash points, broker names without a machine room).

use std::collections::{BTreeMap, BTreeSet};

use md5::{Digest, Md5};

use crate::protocol::body::{java_str_cmp, MessageQueue};

/// Virtual nodes per client on the consistent-hash ring (Java's default).
pub const DEFAULT_VIRTUAL_NODES: usize = 10;

/// How a group's queues are split among its consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocateStrategy {
    /// `AVG` (the default): contiguous blocks; the first `N % C` consumers get one more.
    Averagely,
    /// `AVG_BY_CIRCLE`: dealt round-robin.
    AveragelyByCircle,
    /// `CONSISTENT_HASH`: each queue goes to the next client point on an MD5 ring.
    ConsistentHash {
        /// Ring points per client.
        virtual_nodes: usize,
    },
    /// `CONFIG`: a fixed list, whatever the other consumers do.
    ByConfig(Vec<MessageQueue>),
    /// `MACHINE_ROOM`: only queues of brokers named `room@name` in one of `rooms`, split
    /// evenly with the remainder dealt one each from the end.
    ByMachineRoom {
        /// The machine rooms (IDCs) this consumer serves.
        rooms: BTreeSet<String>,
    },
}

impl AllocateStrategy {
    /// The strategy's name as Java reports it (`getName()`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Averagely => "AVG",
            Self::AveragelyByCircle => "AVG_BY_CIRCLE",
            Self::ConsistentHash { .. } => "CONSISTENT_HASH",
            Self::ByConfig(_) => "CONFIG",
            Self::ByMachineRoom { .. } => "MACHINE_ROOM",
        }
    }

    /// The queues `me` owns, given every queue and every client id of the group, both
    /// already sorted in Java's order (see [`allocate_sorted`]). Nothing when `me` is not
    /// among the clients or either list is empty: Java then keeps no queue.
    #[must_use]
    pub fn allocate(&self, me: &str, queues: &[MessageQueue], cids: &[String]) -> Vec<MessageQueue> {
        if let Self::ByConfig(fixed) = self {
            return fixed.clone();
        }
        if queues.is_empty() || cids.is_empty() {
            return Vec::new();
        }
        let Some(index) = cids.iter().position(|cid| cid == me) else { return Vec::new() };
        match self {
            Self::Averagely => averagely(index, queues, cids.len()),
            Self::AveragelyByCircle => queues
                .iter()
                .enumerate()
                .skip(index)
                .filter(|(k, _)| k % cids.len() == index)
                .map(|(_, q)| q.clone())
                .collect(),
            Self::ConsistentHash { virtual_nodes } => consistent_hash(me, queues, cids, *virtual_nodes),
            Self::ByMachineRoom { rooms } => by_machine_room(index, queues, cids.len(), rooms),
            Self::ByConfig(_) => Vec::new(), // answered above
        }
    }
}

/// Sort (and deduplicate) queues and client ids as Java's rebalance does, then allocate.
#[must_use]
pub fn allocate_sorted(
    strategy: &AllocateStrategy,
    me: &str,
    queues: impl IntoIterator<Item = MessageQueue>,
    cids: impl IntoIterator<Item = String>,
) -> Vec<MessageQueue> {
    let mut queues: Vec<MessageQueue> = queues.into_iter().collect();
    queues.sort();
    queues.dedup();
    let mut cids: Vec<String> = cids.into_iter().collect();
    cids.sort_by(|a, b| java_str_cmp(a, b));
    cids.dedup();
    strategy.allocate(me, &queues, &cids)
}

fn averagely(index: usize, queues: &[MessageQueue], clients: usize) -> Vec<MessageQueue> {
    let n = queues.len();
    let rem = n % clients;
    let extra = rem > 0 && index < rem;
    let size = if n <= clients {
        1
    } else if extra {
        n / clients + 1
    } else {
        n / clients
    };
    let start = if extra { index * size } else { index * size + rem };
    // Past the end (more consumers than queues) the range is empty.
    queues.iter().skip(start).take(size).cloned().collect()
}

fn by_machine_room(
    index: usize,
    queues: &[MessageQueue],
    clients: usize,
    rooms: &BTreeSet<String>,
) -> Vec<MessageQueue> {
    let in_rooms: Vec<&MessageQueue> = queues
        .iter()
        .filter(|q| machine_room(&q.broker_name).is_some_and(|room| rooms.contains(room)))
        .collect();
    let share = in_rooms.len() / clients;
    let rem = in_rooms.len() % clients;
    let mut mine: Vec<MessageQueue> =
        in_rooms.iter().skip(share * index).take(share).map(|q| (*q).clone()).collect();
    if index < rem {
        if let Some(q) = in_rooms.get(index + share * clients) {
            mine.push((*q).clone());
        }
    }
    mine
}

/// The room of a broker named `room@name`: Java splits on `@` (dropping trailing empty
/// parts) and wants exactly two parts.
fn machine_room(broker_name: &str) -> Option<&str> {
    let mut parts: Vec<&str> = broker_name.split('@').collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    match parts.as_slice() {
        [room, _] => Some(room),
        _ => None,
    }
}

fn consistent_hash(
    me: &str,
    queues: &[MessageQueue],
    cids: &[String],
    virtual_nodes: usize,
) -> Vec<MessageQueue> {
    // A later point with the same hash replaces an earlier one, as Java's TreeMap.put does.
    let mut ring: BTreeMap<u32, &str> = BTreeMap::new();
    for cid in cids {
        for replica in 0..virtual_nodes {
            ring.insert(ring_hash(&format!("{cid}-{replica}")), cid.as_str());
        }
    }
    queues
        .iter()
        .filter(|q| {
            let at = ring_hash(&q.to_string());
            let owner = ring.range(at..).next().or_else(|| ring.iter().next()).map(|(_, cid)| *cid);
            owner == Some(me)
        })
        .cloned()
        .collect()
}

/// The ring position of `key`: the first four bytes of its MD5, big-endian.
fn ring_hash(key: &str) -> u32 {
    let digest = Md5::digest(key.as_bytes());
    let mut first = [0u8; 4];
    first.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    u32::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n).map(|q| MessageQueue::new("T", "broker-a", q)).collect()
    }

    fn cids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}@1")).collect()
    }

    fn ids(owned: &[MessageQueue]) -> Vec<i32> {
        owned.iter().map(|q| q.queue_id).collect()
    }

    #[test]
    fn averagely_gives_contiguous_blocks_with_the_remainder_first() {
        let (qs, cs) = (queues(8), cids(3));
        let shares: Vec<Vec<i32>> =
            cs.iter().map(|c| ids(&AllocateStrategy::Averagely.allocate(c, &qs, &cs))).collect();
        assert_eq!(shares, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]);
        // Fewer queues than consumers: one each, the last ones nothing.
        let cs = cids(5);
        let shares: Vec<Vec<i32>> =
            cs.iter().map(|c| ids(&AllocateStrategy::Averagely.allocate(c, &queues(3), &cs))).collect();
        assert_eq!(shares, vec![vec![0], vec![1], vec![2], vec![], vec![]]);
    }

    #[test]
    fn by_circle_deals_round_robin() {
        let (qs, cs) = (queues(8), cids(3));
        let shares: Vec<Vec<i32>> =
            cs.iter().map(|c| ids(&AllocateStrategy::AveragelyByCircle.allocate(c, &qs, &cs))).collect();
        assert_eq!(shares, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
    }

    #[test]
    fn a_client_not_in_the_group_owns_nothing() {
        for strategy in [AllocateStrategy::Averagely, AllocateStrategy::AveragelyByCircle] {
            assert!(strategy.allocate("stranger", &queues(4), &cids(2)).is_empty());
        }
        assert!(AllocateStrategy::Averagely.allocate("10.0.0.0@1", &[], &cids(1)).is_empty());
    }

    #[test]
    fn every_queue_has_exactly_one_owner_under_every_shared_strategy() {
        let strategies = [
            AllocateStrategy::Averagely,
            AllocateStrategy::AveragelyByCircle,
            AllocateStrategy::ConsistentHash { virtual_nodes: DEFAULT_VIRTUAL_NODES },
        ];
        for strategy in &strategies {
            for n in 1..=20 {
                for c in 1..=7 {
                    let (qs, cs) = (queues(n), cids(c));
                    let mut owned: Vec<MessageQueue> =
                        cs.iter().flat_map(|cid| strategy.allocate(cid, &qs, &cs)).collect();
                    owned.sort();
                    assert_eq!(owned, qs, "{} with {n} queues, {c} consumers", strategy.name());
                }
            }
        }
    }

    #[test]
    fn ring_hash_is_the_first_four_md5_bytes_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e; MD5("abc") = 900150983cd24fb0...
        assert_eq!(ring_hash(""), 0xd41d_8cd9);
        assert_eq!(ring_hash("abc"), 0x9001_5098);
    }

    #[test]
    fn consistent_hash_moves_few_queues_when_a_consumer_joins() {
        let strategy = AllocateStrategy::ConsistentHash { virtual_nodes: DEFAULT_VIRTUAL_NODES };
        let qs = queues(64);
        let (before, after) = (cids(4), cids(5));
        let mut moved = 0;
        for cid in &before {
            let old: BTreeSet<MessageQueue> = strategy.allocate(cid, &qs, &before).into_iter().collect();
            let new: BTreeSet<MessageQueue> = strategy.allocate(cid, &qs, &after).into_iter().collect();
            assert!(new.is_subset(&old), "{cid} gained queues when a consumer joined");
            moved += old.len() - new.len();
        }
        assert_eq!(moved, strategy.allocate(&after[4], &qs, &after).len());
    }

    #[test]
    fn machine_room_keeps_its_rooms_and_deals_the_remainder_from_the_end() {
        let mut qs: Vec<MessageQueue> = Vec::new();
        for broker in ["hz@broker-a", "sh@broker-b", "plain", "hz@", "a@b@c"] {
            qs.extend((0..3).map(|q| MessageQueue::new("T", broker, q)));
        }
        qs.sort();
        let strategy = AllocateStrategy::ByMachineRoom { rooms: ["hz".to_owned(), "sh".to_owned()].into() };
        let cs = cids(4);
        let shares: Vec<Vec<String>> = cs
            .iter()
            .map(|c| {
                strategy
                    .allocate(c, &qs, &cs)
                    .iter()
                    .map(|q| format!("{}:{}", q.broker_name, q.queue_id))
                    .collect()
            })
            .collect();
        // Six queues in rooms hz and sh: one each, then the remaining two (indexes 4, 5) go
        // to the first two consumers.
        assert_eq!(
            shares,
            vec![
                vec!["hz@broker-a:0", "sh@broker-b:1"],
                vec!["hz@broker-a:1", "sh@broker-b:2"],
                vec!["hz@broker-a:2"],
                vec!["sh@broker-b:0"],
            ]
        );
    }

    #[test]
    fn allocate_sorted_orders_inputs_like_java() {
        let shuffled = vec![
            MessageQueue::new("T", "b", 1),
            MessageQueue::new("T", "a", 0),
            MessageQueue::new("T", "b", 0),
        ];
        let cs = vec!["z@1".to_owned(), "a@1".to_owned()];
        let mine = allocate_sorted(&AllocateStrategy::Averagely, "a@1", shuffled, cs);
        assert_eq!(mine, vec![MessageQueue::new("T", "a", 0), MessageQueue::new("T", "b", 0)]);
    }
}
