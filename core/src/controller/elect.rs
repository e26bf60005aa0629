//! Who becomes master (RocketMQ's `DefaultElectPolicy`).
//!
//! Candidates are the alive members of the SyncStateSet — or, only with
//! `enableElectUncleanMaster`, any alive replica once no member qualifies. The old master
//! stays if it is still a candidate; a designated broker (`mqadmin electMaster`) is chosen
//! if it is a candidate and nobody otherwise; else the best candidate by newest epoch, then
//! longest log, then lowest priority number, then lowest id (so the choice never depends on
//! iteration order).

use std::collections::BTreeSet;

use super::live::LiveTable;
use super::replicas::BrokerSet;
use crate::io::MonoNanos;

/// What an election is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectRequest {
    /// Elect exactly this broker or nobody.
    pub designated: Option<u64>,
    /// Fall back to replicas outside the SyncStateSet.
    pub unclean: bool,
    /// The simulator's deliberate bug: prefer replicas outside the SyncStateSet.
    pub out_of_sync_first: bool,
}

/// The broker to make master of `set`, if any qualifies.
#[must_use]
pub fn elect(
    broker_name: &str,
    set: &BrokerSet,
    live: &LiveTable,
    now: MonoNanos,
    request: ElectRequest,
) -> Option<u64> {
    let alive = |ids: &mut dyn Iterator<Item = u64>| -> BTreeSet<u64> {
        ids.filter(|id| set.replicas.contains_key(id) && live.is_alive(broker_name, *id, now)).collect()
    };
    if request.out_of_sync_first {
        let outside = alive(&mut set.replicas.keys().copied().filter(|id| !set.sync_state_set.contains(id)));
        if let Some(chosen) = choose(broker_name, set, live, &outside, request.designated) {
            return Some(chosen);
        }
    }
    let in_sync = alive(&mut set.sync_state_set.iter().copied());
    if let Some(chosen) = choose(broker_name, set, live, &in_sync, request.designated) {
        return Some(chosen);
    }
    if request.unclean {
        let any = alive(&mut set.replicas.keys().copied());
        return choose(broker_name, set, live, &any, request.designated);
    }
    None
}

fn choose(
    broker_name: &str,
    set: &BrokerSet,
    live: &LiveTable,
    candidates: &BTreeSet<u64>,
    designated: Option<u64>,
) -> Option<u64> {
    if candidates.is_empty() {
        return None;
    }
    if let Some(master) = set.master.filter(|m| candidates.contains(m) && designated.is_none_or(|d| d == *m))
    {
        return Some(master);
    }
    if let Some(designated) = designated {
        return candidates.contains(&designated).then_some(designated);
    }
    candidates.iter().copied().min_by_key(|id| {
        let info = live.get(broker_name, *id);
        let (epoch, offset, priority) =
            info.map_or((i32::MIN, i64::MIN, i32::MAX), |i| (i.epoch, i.max_offset, i.priority));
        (core::cmp::Reverse(epoch), core::cmp::Reverse(offset), priority, *id)
    })
}

#[cfg(test)]
mod tests {
    use super::super::live::LiveInfo;
    use super::super::replicas::Replica;
    use super::*;
    use crate::io::ConnId;

    fn set(ids: &[u64], in_sync: &[u64], master: Option<u64>) -> BrokerSet {
        BrokerSet {
            cluster: "c".into(),
            replicas: ids
                .iter()
                .map(|&id| {
                    (
                        id,
                        Replica {
                            addr: format!("10.0.0.{id}:10911"),
                            check_code: id.to_string(),
                            ha_addr: None,
                        },
                    )
                })
                .collect(),
            next_id: ids.iter().max().map_or(1, |m| m + 1),
            master,
            master_epoch: 1,
            sync_state_set: in_sync.iter().copied().collect(),
            sync_state_set_epoch: 1,
        }
    }

    fn live(brokers: &[(u64, i32, i64, i32)]) -> LiveTable {
        let mut table = LiveTable::default();
        for &(id, epoch, max_offset, priority) in brokers {
            let info = LiveInfo {
                addr: format!("10.0.0.{id}:10911"),
                conn: ConnId(id),
                last_seen: MonoNanos(0),
                timeout_ms: 10_000,
                epoch,
                max_offset,
                confirm_offset: 0,
                priority,
            };
            table.heard("a", id, info);
        }
        table
    }

    const CLEAN: ElectRequest = ElectRequest { designated: None, unclean: false, out_of_sync_first: false };

    #[test]
    fn the_best_in_sync_replica_wins_by_epoch_then_offset_then_priority() {
        let now = MonoNanos(1);
        let s = set(&[1, 2, 3, 4], &[1, 2, 3, 4], Some(1));
        // The master (1) is not alive; 4 has the longest log but an older epoch.
        let brokers = live(&[(2, 5, 100, 3), (3, 5, 100, 1), (4, 4, 900, 0)]);
        assert_eq!(elect("a", &s, &brokers, now, CLEAN), Some(3), "same epoch and offset: priority");
        let brokers = live(&[(2, 5, 200, 3), (3, 5, 100, 1), (4, 4, 900, 0)]);
        assert_eq!(elect("a", &s, &brokers, now, CLEAN), Some(2), "same epoch: offset");
        let brokers = live(&[(2, 5, 100, 1), (3, 5, 100, 1)]);
        assert_eq!(elect("a", &s, &brokers, now, CLEAN), Some(2), "a full tie: lowest id");
    }

    #[test]
    fn an_alive_master_stays_and_a_dead_broker_never_wins() {
        let s = set(&[1, 2], &[1, 2], Some(1));
        let brokers = live(&[(1, 1, 0, 9), (2, 1, 500, 0)]);
        assert_eq!(elect("a", &s, &brokers, MonoNanos(1), CLEAN), Some(1));
        // Eleven seconds on, nobody was heard within the 10 s timeout.
        assert_eq!(elect("a", &s, &brokers, MonoNanos(11_000_000_000), CLEAN), None);
    }

    #[test]
    fn out_of_sync_replicas_win_only_in_an_unclean_election() {
        let s = set(&[1, 2, 3], &[1], Some(1));
        let brokers = live(&[(2, 1, 10, 0), (3, 1, 20, 0)]);
        assert_eq!(elect("a", &s, &brokers, MonoNanos(1), CLEAN), None);
        let unclean = ElectRequest { designated: None, unclean: true, out_of_sync_first: false };
        assert_eq!(elect("a", &s, &brokers, MonoNanos(1), unclean), Some(3));
    }

    #[test]
    fn a_designated_broker_is_chosen_or_nobody() {
        let s = set(&[1, 2, 3], &[1, 2], Some(1));
        let brokers = live(&[(1, 1, 0, 0), (2, 1, 0, 0), (3, 1, 0, 0)]);
        let designate = |id| ElectRequest { designated: Some(id), unclean: false, out_of_sync_first: false };
        assert_eq!(elect("a", &s, &brokers, MonoNanos(1), designate(2)), Some(2), "over the alive master");
        assert_eq!(elect("a", &s, &brokers, MonoNanos(1), designate(1)), Some(1));
        assert_eq!(elect("a", &s, &brokers, MonoNanos(1), designate(3)), None, "not in sync");
    }
}
