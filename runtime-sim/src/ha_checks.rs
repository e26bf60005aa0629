//! The checks of the controller-mode scenario ([`crate::ha_scenario`]), read from what its
//! producer, consumer and role observer recorded. Plain Rust, unit-tested in normal builds.
//!
//! - Safety: with SYNC_MASTER and `allAckInSyncStateSet`, every acknowledged message is
//!   consumed by the end, whatever failovers happened. With ASYNC_MASTER a message may be
//!   lost only if it was acknowledged shortly before its set lost a master (the tail the
//!   slaves had not copied yet); how many is reported.
//! - One message per offset: no (set, queue, offset) is ever delivered as two different
//!   messages (a new master that kept a stale tail, or a rejoining replica that did not cut
//!   back, would serve another message at an offset already consumed).
//! - One master per epoch: no two brokers of a set are ever seen as master in the same epoch.
//! - Spread: once healed, the producer sends to every set again.
//! - Liveness: after a master of a set is lost, the set takes a write again within
//!   [`FAILOVER_BOUND_MS`], unless another fault touched the set or the controllers meanwhile.

use std::collections::{BTreeMap, BTreeSet};

/// How soon a set must take writes again after its master is lost (the 15 s, on
/// top of the controller's 10 s heartbeat timeout and 1 s scan, counted from the loss).
pub const FAILOVER_BOUND_MS: u64 = 15_000;
/// With ASYNC_MASTER, how long before a master's loss an acknowledged message may still
/// have been only on the master.
pub const ASYNC_TAIL_MS: u64 = 5_000;

/// A send the producer had acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// When, ms.
    pub at_ms: u64,
    /// The set that stored it.
    pub set: String,
    /// Its queue and offset there, as the reply said.
    pub queue: (i32, i64),
}

/// A delivery the consumer got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// When, ms.
    pub at_ms: u64,
    /// The set it came from.
    pub set: String,
    /// Its queue.
    pub queue: i32,
    /// Its queue offset.
    pub offset: i64,
    /// The producer's key.
    pub key: u32,
}

/// What the observer saw a broker say about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSample {
    /// When, ms.
    pub at_ms: u64,
    /// Its set.
    pub set: String,
    /// Its id in the set.
    pub broker: i64,
    /// Whether it was master.
    pub master: bool,
    /// Its newest epoch.
    pub epoch: u32,
}

/// A fault the scenario injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaFault {
    /// When it began, ms.
    pub at_ms: u64,
    /// When it ended, ms.
    pub until_ms: u64,
    /// The set it hit (`None`: the controllers).
    pub set: Option<String>,
    /// Whether it took down the set's master of the moment.
    pub master_lost: bool,
    /// Since when what that master acknowledged may be lost with it (ASYNC): the loss
    /// itself, or the start of a partition from its slaves that preceded it.
    pub lost_from_ms: u64,
    /// Whether an in-sync replica was sure to survive it (then the set must fail over in
    /// time); not after the master was first cut off from its slaves.
    pub in_sync_survives: bool,
    /// A master cut off for less than the controller's heartbeat timeout is not replaced
    /// but comes back: from when it may serve again (the cut's end plus the network's
    /// retry backoff), which the liveness bound then counts from.
    pub back_ms: Option<u64>,
}

/// Acknowledged messages never consumed, each with whether a master loss excuses it.
#[must_use]
pub fn lost(
    acked: &BTreeMap<u32, Acked>,
    consumed: &BTreeSet<u32>,
    faults: &[HaFault],
    sync: bool,
) -> (Vec<String>, u64) {
    let mut violations = Vec::new();
    let mut excused = 0;
    for (key, ack) in acked {
        if consumed.contains(key) {
            continue;
        }
        // Lost with its master: acknowledged shortly before the loss, or by a deposed
        // master shortly after (it learns late that another was elected).
        let tail = faults.iter().any(|f| {
            f.master_lost
                && f.set.as_deref() == Some(ack.set.as_str())
                && f.at_ms + ASYNC_TAIL_MS >= ack.at_ms
                && f.lost_from_ms <= ack.at_ms + ASYNC_TAIL_MS
        });
        if !sync && tail {
            excused += 1;
        } else {
            violations.push(format!(
                "message {key} acknowledged by {} (queue {} offset {}) at {} ms was never consumed{}",
                ack.set,
                ack.queue.0,
                ack.queue.1,
                ack.at_ms,
                if sync { " (SYNC_MASTER, allAckInSyncStateSet)" } else { "" }
            ));
        }
    }
    (violations, excused)
}

/// When each set's master changed, as the observer saw it: the first sample of a master in
/// an epoch newer than any before (as master losses, for the ASYNC tail).
#[must_use]
pub fn observed_failovers(samples: &[RoleSample]) -> Vec<HaFault> {
    let mut newest: BTreeMap<&str, u32> = BTreeMap::new();
    let mut failovers = Vec::new();
    for sample in samples.iter().filter(|s| s.master) {
        match newest.get(sample.set.as_str()) {
            Some(epoch) if *epoch >= sample.epoch => {}
            previous => {
                if previous.is_some() {
                    failovers.push(HaFault {
                        at_ms: sample.at_ms,
                        until_ms: sample.at_ms,
                        set: Some(sample.set.clone()),
                        master_lost: true,
                        lost_from_ms: sample.at_ms,
                        in_sync_survives: false,
                        back_ms: None,
                    });
                }
                newest.insert(sample.set.as_str(), sample.epoch);
            }
        }
    }
    failovers
}

/// Sets the producer sent nothing to between `from_ms` and `to_ms` (healed by then: it
/// must spread its sends over every set again).
#[must_use]
pub fn starved_sets(acked: &BTreeMap<u32, Acked>, sets: &[&str], from_ms: u64, to_ms: u64) -> Vec<String> {
    sets.iter()
        .filter(|set| !acked.values().any(|a| a.set == **set && (from_ms..=to_ms).contains(&a.at_ms)))
        .map(|set| {
            format!("the producer sent nothing to {set} between {from_ms} and {to_ms} ms, after healing")
        })
        .collect()
}

/// Offsets delivered as two different messages.
#[must_use]
pub fn offset_conflicts(deliveries: &[Delivery]) -> Vec<String> {
    let mut named: BTreeMap<(&str, i32, i64), &Delivery> = BTreeMap::new();
    let mut violations = Vec::new();
    for delivery in deliveries {
        let at = (delivery.set.as_str(), delivery.queue, delivery.offset);
        match named.get(&at) {
            Some(first) if first.key != delivery.key => violations.push(format!(
                "{}/{} offset {} delivered as message {} at {} ms and as message {} at {} ms",
                delivery.set,
                delivery.queue,
                delivery.offset,
                first.key,
                first.at_ms,
                delivery.key,
                delivery.at_ms
            )),
            Some(_) => {}
            None => {
                named.insert(at, delivery);
            }
        }
    }
    violations
}

/// Epochs in which two brokers of a set were master.
#[must_use]
pub fn epoch_claims(samples: &[RoleSample]) -> Vec<String> {
    let mut claims: BTreeMap<(&str, u32), &RoleSample> = BTreeMap::new();
    let mut violations = Vec::new();
    for sample in samples.iter().filter(|s| s.master) {
        match claims.get(&(sample.set.as_str(), sample.epoch)) {
            Some(first) if first.broker != sample.broker => violations.push(format!(
                "{}: brokers {} (at {} ms) and {} (at {} ms) were both master in epoch {}",
                sample.set, first.broker, first.at_ms, sample.broker, sample.at_ms, sample.epoch
            )),
            Some(_) => {}
            None => {
                claims.insert((sample.set.as_str(), sample.epoch), sample);
            }
        }
    }
    violations
}

/// Master losses after which the set took no write within [`FAILOVER_BOUND_MS`] though
/// nothing else touched it or the controllers; `writes` lists (set, ms) of acknowledged
/// sends. Also returns the failover times measured.
#[must_use]
pub fn slow_failovers(
    faults: &[HaFault],
    writes: &[(String, u64)],
    run_end_ms: u64,
) -> (Vec<String>, Vec<u64>) {
    let mut violations = Vec::new();
    let mut took = Vec::new();
    for loss in faults.iter().filter(|f| f.master_lost && f.in_sync_survives) {
        let Some(set) = loss.set.as_deref() else { continue };
        // A master that comes back by itself serves within a few seconds of being back.
        let back = loss.back_ms.map_or(0, |at| at + 5_000);
        let bound = (loss.at_ms + FAILOVER_BOUND_MS).max(back);
        if bound > run_end_ms {
            continue;
        }
        let next = writes.iter().filter(|(s, at)| s == set && *at > loss.at_ms).map(|(_, at)| *at).min();
        if let Some(at) = next {
            took.push(at - loss.at_ms);
        }
        let disturbed = faults.iter().any(|other| {
            other != loss
                && (other.set.is_none() || other.set.as_deref() == Some(set))
                && other.at_ms <= bound
                && other.until_ms >= loss.at_ms.saturating_sub(FAILOVER_BOUND_MS)
        });
        if next.is_none_or(|at| at > bound) && !disturbed {
            violations.push(format!(
                "{set} lost its master at {} ms and took no write within {FAILOVER_BOUND_MS} ms (next at {next:?})",
                loss.at_ms
            ));
        }
    }
    (violations, took)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(at_ms: u64, set: &str) -> Acked {
        Acked { at_ms, set: set.into(), queue: (0, 0) }
    }

    fn loss(at_ms: u64, set: &str) -> HaFault {
        HaFault {
            at_ms,
            until_ms: at_ms + 3_000,
            set: Some(set.into()),
            master_lost: true,
            lost_from_ms: at_ms,
            in_sync_survives: true,
            back_ms: None,
        }
    }

    #[test]
    fn an_unconsumed_acknowledged_message_is_lost_unless_async_and_just_before_a_master_loss() {
        let acked = BTreeMap::from([(1, ack(1_000, "a")), (2, ack(9_000, "a")), (3, ack(9_000, "b"))]);
        let consumed = BTreeSet::from([1]);
        let faults = [loss(10_000, "a")];
        let (sync, _) = lost(&acked, &consumed, &faults, true);
        assert_eq!(sync.len(), 2, "SYNC loses nothing: {sync:?}");
        let (async_, excused) = lost(&acked, &consumed, &faults, false);
        assert_eq!(excused, 1, "2 was acknowledged 1 s before a's master was lost");
        assert_eq!(async_.len(), 1);
        assert!(async_[0].contains("message 3"), "b lost no master: {async_:?}");
        // A failover the observer saw counts as a loss too.
        let s = |at_ms, epoch: u32| RoleSample {
            at_ms,
            set: "b".into(),
            broker: epoch.into(),
            master: true,
            epoch,
        };
        let seen = observed_failovers(&[s(1_000, 1), s(2_000, 1), s(9_500, 2)]);
        assert_eq!(seen.len(), 1);
        assert_eq!(lost(&acked, &consumed, &seen, false).1, 1, "3 went with b's master at 9.5 s");
    }

    #[test]
    fn a_set_the_producer_no_longer_sends_to_is_flagged() {
        let acked = BTreeMap::from([(1, ack(5_000, "a")), (2, ack(9_000, "b"))]);
        assert!(starved_sets(&acked, &["a", "b"], 4_000, 10_000).is_empty());
        assert_eq!(starved_sets(&acked, &["a", "b"], 6_000, 10_000).len(), 1);
    }

    #[test]
    fn an_offset_delivered_as_two_messages_is_flagged() {
        let d = |at_ms, offset, key| Delivery { at_ms, set: "a".into(), queue: 0, offset, key };
        assert!(offset_conflicts(&[d(1, 0, 7), d(2, 1, 8), d(3, 0, 7)]).is_empty(), "a redelivery is fine");
        assert_eq!(offset_conflicts(&[d(1, 0, 7), d(2, 0, 9)]).len(), 1);
    }

    #[test]
    fn two_masters_in_one_epoch_are_flagged() {
        let s = |at_ms, broker, master, epoch| RoleSample { at_ms, set: "a".into(), broker, master, epoch };
        assert!(epoch_claims(&[s(1, 1, true, 1), s(2, 2, false, 1), s(3, 2, true, 2)]).is_empty());
        assert_eq!(epoch_claims(&[s(1, 1, true, 1), s(2, 2, true, 1)]).len(), 1);
    }

    #[test]
    fn a_set_must_take_writes_soon_after_a_master_loss_unless_disturbed() {
        let faults = vec![loss(10_000, "a")];
        let quick = vec![("a".to_owned(), 21_000)];
        let (violations, took) = slow_failovers(&faults, &quick, 100_000);
        assert!(violations.is_empty());
        assert_eq!(took, vec![11_000]);
        let slow = vec![("a".to_owned(), 40_000)];
        assert_eq!(slow_failovers(&faults, &slow, 100_000).0.len(), 1);
        let mut disturbed = faults.clone();
        disturbed.push(HaFault {
            at_ms: 12_000,
            until_ms: 14_000,
            set: None,
            master_lost: false,
            lost_from_ms: 12_000,
            in_sync_survives: true,
            back_ms: None,
        });
        assert!(slow_failovers(&disturbed, &slow, 100_000).0.is_empty(), "the controllers were cut off");
        // A master cut off briefly comes back rather than being replaced: counted from then.
        let brief = vec![HaFault { back_ms: Some(29_000), ..loss(10_000, "a") }];
        let back = vec![("a".to_owned(), 31_000)];
        assert!(slow_failovers(&brief, &back, 100_000).0.is_empty());
        assert_eq!(slow_failovers(&brief, &slow, 100_000).0.len(), 1, "still bounded");
    }
}
