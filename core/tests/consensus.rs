//! Three controllers agreeing on the event log with raft-rs, driven as their owners drive
//! them: ticks (some skipped, from a seeded RNG, to spread elections), messages carried
//! between them (or dropped across a partition). A leader is elected; events it proposes are
//! committed on every replica in the same order; with the leader cut off, the other two
//! elect a new leader and commit on; the old leader, reconnected, catches up. The same seed
//! gives the same leaders. With compaction, a replica left behind is sent a snapshot.

use std::collections::BTreeSet;

use keel_core::controller::consensus::{Consensus, ConsensusError};
use keel_core::controller::{Event, ReplicaTable};
use keel_core::protocol::json::{self, KeyStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Group {
    nodes: Vec<Consensus>,
    tables: Vec<ReplicaTable>,
    applied: Vec<Vec<Event>>,
    cut_off: BTreeSet<u64>,
    rng: ChaCha8Rng,
    leaders: Vec<u64>,
    /// Compact each replica once this many entries were applied since its last snapshot.
    compact_every: Option<u64>,
    /// Snapshots each replica restored.
    restored: Vec<usize>,
}

impl Group {
    fn new(seed: u64) -> Self {
        let ids = [1, 2, 3];
        Self {
            nodes: ids.iter().map(|id| Consensus::new(*id, &ids).unwrap()).collect(),
            tables: vec![ReplicaTable::default(); 3],
            applied: vec![Vec::new(); 3],
            cut_off: BTreeSet::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            leaders: Vec::new(),
            compact_every: None,
            restored: vec![0; 3],
        }
    }

    /// One round: every node ticks (a quarter of ticks skipped), then messages are carried
    /// until none is left.
    fn round(&mut self) {
        for node in &mut self.nodes {
            if self.rng.gen_range(0..4) != 0 {
                node.tick();
            }
        }
        loop {
            let mut sent = Vec::new();
            for (at, node) in self.nodes.iter_mut().enumerate() {
                let from = at as u64 + 1;
                let out = node.poll();
                if let Some(data) = out.restored {
                    self.tables[at] = json::from_slice(&data).unwrap();
                    self.restored[at] += 1;
                }
                for committed in out.committed {
                    self.tables[at].apply(&committed.event);
                    self.applied[at].push(committed.event);
                }
                for (to, bytes) in out.messages {
                    if !self.cut_off.contains(&from) && !self.cut_off.contains(&to) {
                        sent.push((to, bytes));
                    }
                }
            }
            if let Some(every) = self.compact_every {
                for (at, node) in self.nodes.iter_mut().enumerate() {
                    if node.applied() - node.snapshot_index() >= every {
                        let data = json::to_body(&self.tables[at], KeyStyle::Standard);
                        node.compact(data, 2, &mut Vec::new()).unwrap();
                    }
                }
            }
            if sent.is_empty() {
                break;
            }
            for (to, bytes) in sent {
                self.nodes[(to - 1) as usize].step(&bytes).unwrap();
            }
        }
        if let Some(leader) = self.leader() {
            if self.leaders.last() != Some(&leader) {
                self.leaders.push(leader);
            }
        }
    }

    /// The leader among the connected nodes, if there is exactly one.
    fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = (1..=3)
            .filter(|id| !self.cut_off.contains(id) && self.nodes[(*id - 1) as usize].is_leader())
            .collect();
        match leaders.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    fn until_leader(&mut self) -> u64 {
        for _ in 0..500 {
            self.round();
            if let Some(leader) = self.leader() {
                return leader;
            }
        }
        panic!("no leader after 500 rounds");
    }
}

fn claim(id: u64) -> Event {
    Event::ApplyBrokerId {
        cluster: "c".into(),
        broker_name: "broker-a".into(),
        id,
        addr: format!("10.0.0.{id}:10911"),
        check_code: format!("{id}"),
    }
}

#[test]
fn a_leader_commits_on_every_replica_and_a_new_one_takes_over_when_it_is_cut_off() {
    let mut group = Group::new(7);
    let first = group.until_leader();
    let follower = if first == 1 { 2 } else { 1 };
    assert!(matches!(
        group.nodes[(follower - 1) as usize].propose(&claim(9)),
        Err(ConsensusError::NotLeader { leader: Some(l) }) if l == first
    ));
    group.nodes[(first - 1) as usize].propose(&claim(1)).unwrap();
    group.nodes[(first - 1) as usize].propose(&claim(2)).unwrap();
    for _ in 0..5 {
        group.round();
    }
    assert!(group.applied.iter().all(|events| events == &vec![claim(1), claim(2)]), "{:?}", group.applied);
    assert!(group.tables.iter().all(|t| t == &group.tables[0]));

    // The leader is cut off: the others elect one of themselves and commit without it.
    group.cut_off.insert(first);
    let second = group.until_leader();
    assert_ne!(second, first);
    group.nodes[(second - 1) as usize].propose(&claim(3)).unwrap();
    for _ in 0..5 {
        group.round();
    }
    let stale = (first - 1) as usize;
    for at in (0..3).filter(|at| *at != stale) {
        assert_eq!(group.applied[at], vec![claim(1), claim(2), claim(3)]);
    }
    assert_eq!(group.applied[stale], vec![claim(1), claim(2)], "the cut-off leader commits nothing alone");
    // An event proposed to the cut-off old leader never commits (it may still think it
    // leads until its quorum check fails).
    let _ = group.nodes[stale].propose(&claim(8));

    // Reconnected, it follows the new leader and catches up; its lone proposal is gone.
    group.cut_off.clear();
    for _ in 0..30 {
        group.round();
    }
    assert!(
        group.applied.iter().all(|events| events == &vec![claim(1), claim(2), claim(3)]),
        "{:?}",
        group.applied
    );
    assert!(group.tables.iter().all(|t| t == &group.tables[0]));
}

#[test]
fn the_same_seed_elects_the_same_leaders() {
    let history = |seed| {
        let mut group = Group::new(seed);
        let first = group.until_leader();
        group.cut_off.insert(first);
        group.until_leader();
        group.leaders
    };
    for seed in 0..8 {
        assert_eq!(history(seed), history(seed), "seed {seed}");
    }
}

#[test]
fn a_replica_behind_the_compacted_log_is_sent_a_snapshot_and_goes_on_from_it() {
    let mut group = Group::new(11);
    group.compact_every = Some(4);
    let leader = group.until_leader();
    let behind = if leader == 3 { 2 } else { 3 };
    group.cut_off.insert(behind);
    for id in 1..=12 {
        group.nodes[(leader - 1) as usize].propose(&claim(id)).unwrap();
        group.round();
    }
    for _ in 0..5 {
        group.round();
    }
    let (lead, stale) = ((leader - 1) as usize, (behind - 1) as usize);
    assert!(group.nodes[lead].snapshot_index() > 4, "the leader compacted");
    assert_eq!(group.tables[lead].get("broker-a").map(|set| set.replicas.len()), Some(12));
    assert!(group.applied[stale].is_empty(), "the cut-off replica applied nothing");

    // Back, it needs entries the leader no longer holds: a snapshot brings it up to date.
    group.cut_off.clear();
    for _ in 0..30 {
        group.round();
    }
    assert_eq!(group.restored[stale], 1, "restored from one snapshot");
    assert_eq!(group.tables[stale], group.tables[lead]);
    // It applies what follows as entries again.
    let leader = group.until_leader();
    group.nodes[(leader - 1) as usize].propose(&claim(13)).unwrap();
    for _ in 0..5 {
        group.round();
    }
    assert_eq!(group.applied[stale].last(), Some(&claim(13)));
    assert!(group.tables.iter().all(|t| t == &group.tables[0]));
    assert_eq!(group.tables[0].get("broker-a").map(|set| set.replicas.len()), Some(13));
}

#[test]
fn every_kind_of_event_survives_the_logs_encoding() {
    let events = [
        claim(1),
        Event::UpdateAddress {
            broker_name: "a".into(),
            id: 2,
            addr: "x:1".into(),
            ha_addr: Some("x:2".into()),
        },
        Event::ElectMaster { broker_name: "a".into(), master: None, master_epoch: 3 },
        Event::ElectMaster { broker_name: "a".into(), master: Some(2), master_epoch: 4 },
        Event::AlterSyncStateSet {
            broker_name: "a".into(),
            members: BTreeSet::from([1, 2]),
            master_epoch: 4,
            sync_state_set_epoch: 5,
        },
        Event::CleanBrokerData { broker_name: "a".into(), ids: Some(BTreeSet::from([3])) },
        Event::CleanBrokerData { broker_name: "a".into(), ids: None },
    ];
    for event in events {
        let bytes = json::to_body(&event, KeyStyle::Standard);
        assert_eq!(json::from_slice::<Event>(&bytes).unwrap(), event, "{}", String::from_utf8_lossy(&bytes));
    }
}
