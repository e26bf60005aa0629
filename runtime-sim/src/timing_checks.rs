//! The checks of the timing workload (delay levels, timed messages, transactions), read
//! from a run's history. Plain Rust, unit-tested in normal builds.
//!
//! - Never early: a delayed or timed copy is stored no earlier, by the broker's clock, than
//!   its due time (`TIMER_OUT_MS` on the copy; the broker's clock at delivery is the copy's
//!   store time).
//! - Rolled-back and never-decided transactions are never delivered.
//! - Once: a message has one copy in its topic; a second is excused only by a broker restart
//!   or data loss shortly after the first (progress persisted every few seconds repeats),
//!   or for a timed message any time after it (the timers' low-water mark lags), or a
//!   failover of its set whose new master's copy of the level's progress may predate the
//!   first (copied every 10 s, longer while a fault kept it from its master).
//! - All delivered: once the broker's clock has passed a message's due time, it is in its
//!   topic; a committed transaction is delivered unless it was discarded after its checks;
//!   a data loss after (or just before) the send excuses, as in the main checker: the
//!   consumer's position may have been in the lost tail.
//! - Bounded late: a copy stored more than `late_bound_ms` after its due time, by the
//!   broker's clock (its store time; the consumer's own lag does not count), needs a fault
//!   going on between its send and its arrival (a small disk counts until the healing,
//!   which lifts it), or a backward clock step not yet caught up at its send, to excuse it.
//! - Check-backs: never before `transactionTimeOut` after the send (the broker times them
//!   by its monotonic clock, so even across restarts and clock steps), and at most
//!   `transactionCheckMax` per half message.
//! - No unexpected check-back: a transaction ended at its send (commit or rollback) is never
//!   checked, and one ended by its first check is not checked again, unless a fault in its
//!   life may have lost the (oneway) END_TRANSACTION or its op record, or held up checks
//!   sent before the END arrived, or its send was retried (each attempt may store a half).
//!   RocketMQ's transaction benchmark counts these as `UnexpectedCheck` and
//!   `DuplicatedCheck`; checks that go on after a commit are a known RocketMQ bug.

use std::collections::{BTreeMap, BTreeSet};

use crate::fault_spans::{fault_end, is_broker_restart, Failover};
use crate::history::{Event, History, Key, Timing, TxDecision};
use crate::horizon::Horizon;

/// What the timing checks need to know of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingCheckConfig {
    /// `transactionTimeOut`, ms.
    pub tx_timeout_ms: u64,
    /// `transactionCheckMax`.
    pub tx_check_max: u32,
    /// Half messages one transactional send may store (the client's send attempts).
    pub send_attempts: u32,
    /// The client's send timeout, ms: an attempt unanswered that long is retried.
    pub send_timeout_ms: u64,
    /// How late, by the broker's clock, an undisturbed delivery may be, ms.
    pub late_bound_ms: i64,
    /// How long after its due time a message must be in its topic, by the broker's clock.
    pub slack_ms: i64,
    /// Retention's `fileReservedTime`, ms, if it deletes within the run: a message older
    /// than that by the broker's clock may have been skipped or deleted ([`Horizon`]).
    pub reserved_ms: Option<u64>,
}

/// A restart or loss up to this long after a copy arrived may repeat it (a level's
/// progress is persisted every 10 s).
const REPEAT_AFTER_MS: u64 = 15_000;
/// After a loss of unsynced data, how long a consumer may take to find its position was in
/// the lost tail (restart, reconnect, a pull retry): messages sent then may be skipped.
const LOSS_SKIP_MS: u64 = 10_000;

/// One copy as the consumer got it.
#[derive(Debug, Clone)]
struct Copy {
    at: u64,
    /// Its broker set and queue id.
    queue: (String, i32),
    offset: i64,
    store_ms: i64,
    due_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Facts {
    sent: BTreeMap<Key, (u64, Timing)>,
    /// Per key: (acknowledged at, broker clock then, its high-water mark then).
    acked: BTreeMap<Key, (u64, i64, i64)>,
    /// Per key: the broker's clock at the send and the highest reading the history had
    /// shown by then (for a send never answered, which may be stored all the same).
    sent_clock: BTreeMap<Key, (i64, i64)>,
    /// Per key: every distinct copy.
    copies: BTreeMap<Key, Vec<Copy>>,
    checks: BTreeMap<Key, Vec<u64>>,
    discarded: BTreeSet<Key>,
    restarts: Vec<u64>,
    losses: Vec<u64>,
    /// Every fault as (start, end): a pause or partition lasts (`"… for 1.2s"`).
    fault_spans: Vec<(u64, u64)>,
    /// Every fault as (start, end, description), for the replicas they name.
    named_spans: Vec<(u64, u64, String)>,
    /// Controller-mode failovers: a new master may repeat deliveries its copy of its
    /// predecessor's metadata missed.
    failovers: Vec<Failover>,
    clock_end: Option<i64>,
    /// What retention may have deleted.
    horizon: Horizon,
}

impl Facts {
    /// The facts of `history`, with retention's horizon as of the broker's clock at its
    /// highest `high_ms` (`None`: at the end of the run).
    fn of(history: &History, config: &TimingCheckConfig, high_ms: Option<i64>) -> Self {
        let mut facts =
            Self { horizon: Horizon::of(history, config.reserved_ms, high_ms), ..Self::default() };
        // Faults on from their start until the run heals.
        let mut until_healed = Vec::new();
        let mut clock_high = i64::MIN;
        for entry in history.entries() {
            let at = entry.at_ms;
            match &entry.event {
                Event::BrokerClockStep { from_ms, to_ms } => {
                    clock_high = clock_high.max(*from_ms).max(*to_ms);
                }
                Event::TimingAcked { broker_high_ms, .. } => clock_high = clock_high.max(*broker_high_ms),
                _ => {}
            }
            match &entry.event {
                Event::TimingSent { key, timing, broker_wall_ms } => {
                    facts.sent.entry(*key).or_insert((at, *timing));
                    clock_high = clock_high.max(*broker_wall_ms);
                    facts.sent_clock.entry(*key).or_insert((*broker_wall_ms, clock_high));
                }
                Event::TimingAcked { key, broker_wall_ms, broker_high_ms, .. } => {
                    facts.acked.entry(*key).or_insert((at, *broker_wall_ms, *broker_high_ms));
                }
                // The read-back at the end sees what the broker stored even where the
                // consumer's position skipped it: a copy all the same.
                Event::TimingDelivered { key, broker, queue, offset, store_ms, due_ms, .. }
                | Event::TimingProbed { key, broker, queue, offset, store_ms, due_ms } => {
                    let copies = facts.copies.entry(*key).or_default();
                    let queue = (broker.clone(), *queue);
                    if !copies.iter().any(|c| c.queue == queue && c.offset == *offset) {
                        copies.push(Copy {
                            at,
                            queue,
                            offset: *offset,
                            store_ms: *store_ms,
                            due_ms: *due_ms,
                        });
                    }
                }
                Event::TxChecked { key } => facts.checks.entry(*key).or_default().push(at),
                Event::TxDiscarded { key } => {
                    facts.discarded.insert(*key);
                }
                Event::Fault { what } if what.ends_with(crate::history::UNTIL_HEALED) => {
                    until_healed.push(at);
                }
                Event::Fault { what } => {
                    facts.fault_spans.push((at, fault_end(at, what)));
                    facts.named_spans.push((at, fault_end(at, what), what.clone()));
                    if is_broker_restart(what) {
                        facts.restarts.push(at);
                    }
                    facts.failovers.extend(Failover::parse(at, what));
                }
                Event::BrokerDataLoss { .. } => {
                    facts.losses.push(at);
                    facts.fault_spans.push((at, at));
                }
                // Healing lifts faults that leave no event of their own (a full disk).
                Event::Healed => {
                    facts.fault_spans.push((at, at));
                    facts.fault_spans.extend(until_healed.drain(..).map(|start| (start, at)));
                }
                Event::BrokerClock { wall_ms, .. } => facts.clock_end = Some(*wall_ms),
                _ => {}
            }
        }
        // Not healed yet: still going on.
        facts.fault_spans.extend(until_healed.drain(..).map(|start| (start, u64::MAX)));
        facts
    }

    /// Whether a fault was going on at some time in `from..=to`.
    fn any_during(&self, from: u64, to: u64) -> bool {
        self.fault_spans.iter().any(|&(start, end)| start <= to && end >= from)
    }

    fn any_in(times: &[u64], from: u64, to: u64) -> bool {
        times.iter().any(|t| (from..=to).contains(t))
    }

    /// The latest the broker may have set `key` due, by its clock: the highest its clock
    /// had read by the acknowledgement plus the delay (`None` for transactions). After a
    /// backward step the store's timestamps (and a level's earlier heads) may run ahead of
    /// the clock, but never past its highest reading.
    fn due_bound(&self, key: Key) -> Option<i64> {
        let (_, timing) = self.sent.get(&key)?;
        let (_, _, high) = self.acked.get(&key)?;
        let delay = match timing {
            Timing::Delay { delay_ms, .. } | Timing::Timer { delay_ms } => *delay_ms,
            Timing::Tx(_) => return None,
        };
        Some(high.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)))
    }

    /// Whether `key` is owed a delivery by now (the broker's clock reading `clock`).
    fn owed(&self, key: Key, clock: i64, slack_ms: i64) -> bool {
        if !self.acked.contains_key(&key) {
            return false;
        }
        let Some((sent_ms, timing)) = self.sent.get(&key) else { return false };
        // A loss may take the message itself, or its copy; and for a while after one, a
        // consumer whose position was in the lost tail skips what is stored there anew.
        let lost = self.losses.iter().any(|l| l + LOSS_SKIP_MS >= *sent_ms);
        // Retention may have deleted it before it was due (a level or a timer skips it), or
        // its copy before anyone read it.
        let acked_ms = self.acked.get(&key).map_or(0, |(at, _, _)| *at);
        let expired = self.horizon.expired(key, acked_ms);
        if self.copies.contains_key(&key) || lost || expired {
            return false;
        }
        match timing {
            Timing::Tx(decision) => decision.commits() && !self.discarded.contains(&key),
            _ => self.due_bound(key).is_some_and(|due| due.saturating_add(slack_ms) <= clock),
        }
    }
}

/// How many messages are still owed a delivery with the broker's clock at `clock`, its
/// highest reading so far `high_ms` (the healing phase waits for none).
#[must_use]
pub fn timing_pending(history: &History, clock: i64, high_ms: i64, config: &TimingCheckConfig) -> usize {
    let facts = Facts::of(history, config, Some(high_ms));
    facts.sent.keys().filter(|key| facts.owed(**key, clock, config.slack_ms)).count()
}

/// Every violation of the timing checks, at most `limit`.
#[must_use]
pub fn check_timing(history: &History, config: &TimingCheckConfig, limit: usize) -> Vec<String> {
    let facts = Facts::of(history, config, None);
    let mut found = Vec::new();
    let mut add = |v: String| {
        if found.len() < limit {
            found.push(v);
        }
    };
    for (key, copies) in &facts.copies {
        let timing = facts.sent.get(key).map(|(_, t)| *t);
        if let Some(Timing::Tx(decision)) = timing {
            if !decision.commits() {
                add(format!("transaction {key:x} ({decision:?}) was delivered"));
            }
        }
        for copy in copies {
            let Some(due) = copy.due_ms else { continue };
            // The copy's store time is the broker's clock at delivery (or later: store
            // times never go backwards).
            if copy.store_ms < due {
                add(format!(
                    "{key:x} delivered at broker time {}, {} ms before its due time {due} (offset {}, arrived {}ms)",
                    copy.store_ms,
                    due - copy.store_ms,
                    copy.offset,
                    copy.at
                ));
            } else if copy.store_ms - due > config.late_bound_ms {
                // A send never answered may be stored all the same: its clock is the one at
                // the send (seed 1412277095554324002: a timer sent while the store repaired, with
                // the clock 52 min behind its highest reading, kept the store's timestamp).
                // So may an attempt before the one answered: the copy may be either's
                // (seed 2026028571533659357: the first attempt, sent 101 s behind the
                // clock's high after a backward step, was stored and went unanswered; the
                // retry that was answered came after a forward step had caught up).
                let contexts = [
                    facts.acked.get(key).map(|(_, wall, high)| (*wall, *high)),
                    facts.sent_clock.get(key).copied(),
                ];
                let from = facts.sent.get(key).map_or(0, |(sent, _)| *sent);
                // Catching up after a backward step holds a level's heads. A fault going
                // on in between excuses too: a small disk that retention keeps freeing is
                // full now and then for the whole fault phase, and a delivery waits for space.
                let catching_up = contexts.iter().flatten().any(|(wall, high)| high > wall);
                if !catching_up && !facts.any_during(from, copy.at) {
                    add(format!(
                        "{key:x} stored {} ms late by the broker's clock with no fault to excuse it",
                        copy.store_ms - due
                    ));
                }
            }
        }
        // A producer's retried send stores another copy in another queue; a broker that
        // stores one message twice does so in the same queue.
        let queues: BTreeSet<&(String, i32)> = copies.iter().map(|c| &c.queue).collect();
        if queues.len() > config.send_attempts as usize {
            add(format!(
                "{key:x} stored in {} queues by at most {} sends",
                queues.len(),
                config.send_attempts
            ));
        }
        for queue in queues {
            let mut in_queue = copies.iter().filter(|c| &c.queue == queue);
            let Some(first) = in_queue.next().map(|c| c.at) else { continue };
            // A timer's progress is a low-water mark that the earliest pending timer holds
            // back (up to its whole delay, longer while the broker cannot deliver): any
            // later restart may repeat it. A level's is persisted every few seconds.
            let is_timer = matches!(timing, Some(Timing::Timer { .. }));
            for &Copy { at, offset, .. } in in_queue {
                // The broker stored the first copy between the send and its arrival (the
                // consumer may lag far behind): a restart from then on may repeat it.
                let sent = facts.sent.get(key).map_or(0, |(at, _)| *at);
                let until = if is_timer { u64::MAX } else { first + REPEAT_AFTER_MS };
                let window = (sent, until);
                // A send an attempt of which timed out may have stored that attempt, and a
                // later attempt (after one to another broker set) may land in the same queue.
                let retried = facts
                    .acked
                    .get(key)
                    .is_none_or(|(acked, _, _)| acked.saturating_sub(sent) >= config.send_timeout_ms);
                // A new master repeats what its last copy of the old one's progress
                // missed, which may be older than a restart's window.
                let failed_over = facts.failovers.iter().any(|failover| {
                    failover.set == queue.0
                        && (sent..=at).contains(&failover.at)
                        && first >= failover.stale_since(&facts.named_spans)
                });
                let excused = Facts::any_in(&facts.restarts, window.0, window.1)
                    || Facts::any_in(&facts.losses, window.0, window.1)
                    || failed_over
                    || (retried && copies.len() <= config.send_attempts as usize);
                if !excused {
                    add(format!(
                        "{key:x} stored twice: a second copy at {}/{}/{offset} arrived {at}ms, the first {first}ms, no restart near the first",
                        queue.0, queue.1
                    ));
                }
            }
        }
    }
    if let Some(clock) = facts.clock_end {
        for key in facts.sent.keys() {
            if facts.owed(*key, clock, config.slack_ms) {
                let timing = facts.sent.get(key).map(|(_, t)| *t);
                add(format!("{key:x} ({timing:?}) never delivered (broker clock at the end {clock})"));
            }
        }
    }
    for (key, checks) in &facts.checks {
        let Some(&(sent, _)) = facts.sent.get(key) else { continue };
        let earliest = sent + config.tx_timeout_ms.saturating_sub(10);
        for &at in checks {
            if at < earliest {
                add(format!(
                    "transaction {key:x} checked {} ms after its send, before transactionTimeOut",
                    at - sent
                ));
            }
        }
        let most = config.tx_check_max.saturating_mul(config.send_attempts) as usize;
        if checks.len() > most {
            add(format!("transaction {key:x} checked {} times, more than {most}", checks.len()));
        }
        // When the producer ended it: once its send was answered (the END follows the
        // reply; a send never answered was never ended), or answering its first check.
        let answered = facts.acked.get(key).map(|&(acked, _, _)| acked);
        let ended = match facts.sent.get(key).map(|(_, t)| *t) {
            Some(Timing::Tx(TxDecision::Commit | TxDecision::Rollback)) => answered,
            Some(Timing::Tx(TxDecision::CommitOnCheck)) => checks.first().copied(),
            _ => None,
        };
        // A send answered more than one send timeout after it began was retried: each
        // earlier attempt may have stored a half message of its own, which the producer
        // never ended, so the broker checks it (and the producer answers) after the END
        // of the half that was answered.
        let retried = facts
            .acked
            .get(key)
            .is_some_and(|&(acked, _, _)| acked.saturating_sub(sent) > config.send_timeout_ms);
        if let Some(ended) = ended.filter(|_| !retried) {
            // A check the broker sent before the END reached it may arrive after it was
            // sent, held up by a partition that began long before: any fault in the
            // transaction's life excuses.
            for &at in checks.iter().filter(|&&at| at > ended) {
                if !facts.any_during(sent, at) {
                    add(format!(
                        "transaction {key:x} checked at {at}ms though it was ended at {ended}ms, with no fault in its life"
                    ));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: TimingCheckConfig = TimingCheckConfig {
        tx_timeout_ms: 3_000,
        tx_check_max: 4,
        send_attempts: 1,
        send_timeout_ms: 3_000,
        late_bound_ms: 2_500,
        slack_ms: 5_000,
        reserved_ms: None,
    };

    fn timer(h: &mut History, key: Key, at: u64, wall: i64, delay_ms: u64) {
        h.push(at, Event::TimingSent { key, timing: Timing::Timer { delay_ms }, broker_wall_ms: wall });
        h.push(at + 5, Event::TimingAcked { key, phys: 0, broker_wall_ms: wall, broker_high_ms: wall });
    }

    fn delayed(h: &mut History, key: Key, at: u64, wall: i64, delay_ms: u64) {
        h.push(
            at,
            Event::TimingSent { key, timing: Timing::Delay { level: 1, delay_ms }, broker_wall_ms: wall },
        );
        h.push(at + 5, Event::TimingAcked { key, phys: 0, broker_wall_ms: wall, broker_high_ms: wall });
    }

    /// A copy stored at `store_ms`, arriving at once (the clock then reads `store_ms`).
    fn copy(h: &mut History, key: Key, at: u64, offset: i64, store_ms: i64, due_ms: Option<i64>) {
        h.push(
            at,
            Event::TimingDelivered {
                key,
                broker: "broker-a".into(),
                queue: 0,
                offset,
                store_ms,
                due_ms,
                broker_wall_ms: store_ms,
            },
        );
    }

    #[test]
    fn an_early_copy_and_a_late_one_without_a_fault_are_flagged() {
        let mut h = History::default();
        timer(&mut h, 1, 0, 1_000_000, 5_000);
        copy(&mut h, 1, 5_100, 0, 1_004_999, Some(1_005_000));
        timer(&mut h, 2, 0, 1_000_000, 5_000);
        copy(&mut h, 2, 9_000, 1, 1_009_000, Some(1_005_000));
        let found = check_timing(&h, &CONFIG, 10);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("1 ms before its due time"));
        assert!(found[1].contains("stored 4000 ms late"));
        // Catching up after a backward step excuses lateness too.
        let mut stepped = History::default();
        stepped.push(
            0,
            Event::TimingSent {
                key: 5,
                timing: Timing::Delay { level: 2, delay_ms: 5_000 },
                broker_wall_ms: 0,
            },
        );
        let ack =
            Event::TimingAcked { key: 5, phys: 0, broker_wall_ms: 1_000_000, broker_high_ms: 1_060_000 };
        stepped.push(5, ack);
        copy(&mut stepped, 5, 70_000, 0, 1_070_000, Some(1_065_000));
        assert!(check_timing(&stepped, &CONFIG, 10).is_empty());
        // A send never answered but stored: the step before it excuses; none would not.
        let unanswered = |step: bool| {
            let mut h = History::default();
            if step {
                h.push(0, Event::BrokerClockStep { from_ms: 1_060_000, to_ms: 1_000_000 });
            }
            let sent = Event::TimingSent {
                key: 6,
                timing: Timing::Timer { delay_ms: 5_000 },
                broker_wall_ms: 1_000_000,
            };
            h.push(1, sent);
            copy(&mut h, 6, 70_000, 0, 1_060_000, Some(1_005_000));
            check_timing(&h, &CONFIG, 10)
        };
        assert!(unanswered(true).is_empty(), "{:?}", unanswered(true));
        assert_eq!(unanswered(false).len(), 1);
        // An attempt stored but unanswered, sent behind the clock's high, and a retry
        // answered after the clock caught up: the first copy's context is its send's.
        let retried = |step: bool| {
            let mut h = History::default();
            if step {
                h.push(0, Event::BrokerClockStep { from_ms: 1_060_000, to_ms: 1_000_000 });
            }
            let sent = Event::TimingSent {
                key: 7,
                timing: Timing::Timer { delay_ms: 5_000 },
                broker_wall_ms: 1_000_000,
            };
            h.push(1, sent);
            copy(&mut h, 7, 3_000, 0, 1_060_000, Some(1_005_000));
            let ack =
                Event::TimingAcked { key: 7, phys: 0, broker_wall_ms: 1_070_000, broker_high_ms: 1_070_000 };
            h.push(8_000, ack);
            check_timing(&h, &CONFIG, 10)
        };
        assert!(retried(true).is_empty(), "{:?}", retried(true));
        assert_eq!(retried(false).len(), 1, "without the step, still late");
        // A fault in between excuses lateness, never earliness.
        h.push(6_000, Event::Fault { what: "pause broker for 3s".into() });
        assert_eq!(check_timing(&h, &CONFIG, 10).len(), 1);
        // So does a small disk, from its start until the healing.
        let mut small = History::default();
        small.push(
            0,
            Event::Fault { what: format!("broker disk holds 1 bytes {}", crate::history::UNTIL_HEALED) },
        );
        timer(&mut small, 2, 100, 1_000_000, 5_000);
        copy(&mut small, 2, 9_000, 1, 1_009_000, Some(1_005_000));
        assert!(check_timing(&small, &CONFIG, 10).is_empty());
        small.push(9_500, Event::Healed);
        timer(&mut small, 3, 10_000, 1_010_000, 5_000);
        copy(&mut small, 3, 19_000, 2, 1_019_000, Some(1_015_000));
        assert_eq!(check_timing(&small, &CONFIG, 10).len(), 1, "healed: late again needs a fault");
    }

    #[test]
    fn a_second_copy_needs_a_restart_near_the_first() {
        let mut h = History::default();
        delayed(&mut h, 1, 0, 1_000_000, 1_000);
        copy(&mut h, 1, 1_100, 0, 1_001_000, Some(1_001_000));
        copy(&mut h, 1, 1_200, 0, 1_001_000, Some(1_001_000)); // a redelivery of the same copy
        assert!(check_timing(&h, &CONFIG, 10).is_empty());
        h.push(40_000, Event::Fault { what: "broker process killed with 0 IOs in flight".into() });
        copy(&mut h, 1, 41_000, 7, 1_041_000, Some(1_001_000));
        let mut other_queue = h.clone();
        let found = check_timing(&h, &CONFIG, 10);
        assert!(found.iter().any(|v| v.contains("stored twice")), "{found:?}");
        // A copy in another queue is a retried send's (one attempt allowed here).
        other_queue.push(
            41_500,
            Event::TimingDelivered {
                key: 1,
                broker: "broker-a".into(),
                queue: 2,
                offset: 0,
                store_ms: 1_041_000,
                due_ms: Some(1_001_000),
                broker_wall_ms: 1_041_000,
            },
        );
        let found = check_timing(&other_queue, &CONFIG, 10);
        assert!(found.iter().any(|v| v.contains("stored in 2 queues")), "{found:?}");
        // Queue 0 of another broker set is another queue (a retry that went to the other set).
        let mut other_set = History::default();
        delayed(&mut other_set, 1, 0, 1_000_000, 1_000);
        copy(&mut other_set, 1, 1_100, 0, 1_001_000, Some(1_001_000));
        let elsewhere = Event::TimingDelivered {
            key: 1,
            broker: "broker-b".into(),
            queue: 0,
            offset: 0,
            store_ms: 1_004_000,
            due_ms: Some(1_004_000),
            broker_wall_ms: 1_004_000,
        };
        other_set.push(4_100, elsewhere);
        let found = check_timing(&other_set, &CONFIG, 10);
        assert!(found.iter().any(|v| v.contains("stored in 2 queues")), "{found:?}");
        assert!(!found.iter().any(|v| v.contains("stored twice")), "{found:?}");
        // A send acknowledged a send timeout after it began was retried: its attempts may
        // share a queue (one went to another set in between).
        let mut slow = History::default();
        slow.push(
            0,
            Event::TimingSent {
                key: 1,
                timing: Timing::Delay { level: 1, delay_ms: 1_000 },
                broker_wall_ms: 1_000_000,
            },
        );
        slow.push(
            3_500,
            Event::TimingAcked { key: 1, phys: 0, broker_wall_ms: 1_003_500, broker_high_ms: 1_003_500 },
        );
        copy(&mut slow, 1, 1_100, 0, 1_001_000, Some(1_001_000));
        copy(&mut slow, 1, 4_600, 1, 1_004_500, Some(1_004_500));
        let retries = TimingCheckConfig { send_attempts: 3, ..CONFIG };
        let found = check_timing(&slow, &retries, 10);
        assert!(!found.iter().any(|v| v.contains("stored twice")), "{found:?}");
        assert!(check_timing(&slow, &CONFIG, 10).iter().any(|v| v.contains("stored twice")), "one attempt");
        // A timer's repeat is excused by any later restart.
        let mut timed = History::default();
        timer(&mut timed, 1, 0, 1_000_000, 1_000);
        copy(&mut timed, 1, 1_100, 0, 1_001_000, Some(1_001_000));
        timed.push(40_000, Event::Fault { what: "broker process killed with 0 IOs in flight".into() });
        copy(&mut timed, 1, 41_000, 7, 1_041_000, Some(1_001_000));
        assert!(check_timing(&timed, &CONFIG, 10).is_empty());
        let mut near = History::default();
        delayed(&mut near, 1, 0, 1_000_000, 1_000);
        copy(&mut near, 1, 1_100, 0, 1_001_000, Some(1_001_000));
        near.push(9_000, Event::Fault { what: "broker power loss with 2 IOs in flight".into() });
        copy(&mut near, 1, 12_000, 7, 1_012_000, Some(1_001_000));
        let found = check_timing(&near, &CONFIG, 10);
        assert!(!found.iter().any(|v| v.contains("stored twice")), "{found:?}");
    }

    #[test]
    fn a_failover_excuses_a_repeat_its_new_master_was_cut_off_from() {
        // Seed 14160146012015722371's shape: delivered at 17.7 s; the slave that took over
        // at 34.3 s had been partitioned from 24 s to 31.9 s, so its last copy of the
        // level's progress predates the delivery.
        let run = |partitioned: &str, set: &str| {
            let mut h = History::default();
            delayed(&mut h, 1, 7_706, 1_000_000, 10_000);
            copy(&mut h, 1, 17_734, 5, 1_010_000, Some(1_010_000));
            h.push(
                24_001,
                Event::Fault {
                    what: format!("partition {partitioned} (master: false) from everyone for 7.874s"),
                },
            );
            let what = format!("{}: {set} broker 2 in epoch 131072", crate::history::MASTER_CHANGED);
            h.push(34_266, Event::Fault { what });
            copy(&mut h, 1, 60_334, 14, 1_026_000, Some(1_010_000));
            check_timing(&h, &CONFIG, 10)
        };
        let found = run("broker-a broker 2", "broker-a");
        assert!(!found.iter().any(|v| v.contains("stored twice")), "{found:?}");
        for (partitioned, set) in [("broker-a broker 3", "broker-a"), ("broker-b broker 2", "broker-b")] {
            let found = run(partitioned, set);
            assert!(found.iter().any(|v| v.contains("stored twice")), "{partitioned} in {set}: {found:?}");
        }
    }

    #[test]
    fn due_messages_must_arrive_and_rollbacks_never() {
        let mut h = History::default();
        timer(&mut h, 1, 0, 1_000_000, 5_000);
        timer(&mut h, 2, 0, 1_000_000, 600_000);
        for (key, decision) in
            [(10, TxDecision::Commit), (11, TxDecision::Rollback), (12, TxDecision::CommitOnCheck)]
        {
            h.push(0, Event::TimingSent { key, timing: Timing::Tx(decision), broker_wall_ms: 0 });
            h.push(
                5,
                Event::TimingAcked { key, phys: 0, broker_wall_ms: 1_000_000, broker_high_ms: 1_000_000 },
            );
        }
        copy(&mut h, 11, 100, 0, 1_000_100, None);
        h.push(9_000, Event::TxDiscarded { key: 12 });
        h.push(20_000, Event::BrokerClock { wall_ms: 1_020_000, high_ms: 1_020_000 });
        assert_eq!(timing_pending(&h, 1_020_000, 1_020_000, &CONFIG), 2, "the due timer and the commit");
        let found = check_timing(&h, &CONFIG, 10);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("Rollback) was delivered"));
        assert!(found.iter().any(|v| v.starts_with("1 (") && v.contains("never delivered")));
        assert!(found.iter().any(|v| v.starts_with("a (") && v.contains("never delivered")));
        // A data loss after the acknowledgement excuses a missing message.
        h.push(10_000, Event::BrokerDataLoss { synced_end: 0, cause: "power loss".into() });
        assert_eq!(check_timing(&h, &CONFIG, 10).len(), 1);
    }

    #[test]
    fn a_check_before_the_timeout_or_past_the_maximum_is_flagged() {
        let mut h = History::default();
        h.push(
            1_000,
            Event::TimingSent { key: 3, timing: Timing::Tx(TxDecision::NeverDecided), broker_wall_ms: 0 },
        );
        for at in [3_000, 6_000, 8_000, 10_000, 12_000] {
            h.push(at, Event::TxChecked { key: 3 });
        }
        let found = check_timing(&h, &CONFIG, 10);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("2000 ms after its send"));
        assert!(found[1].contains("checked 5 times"));
    }

    #[test]
    fn a_check_after_the_end_needs_a_fault_between() {
        let mut h = History::default();
        h.push(
            1_000,
            Event::TimingSent { key: 4, timing: Timing::Tx(TxDecision::Commit), broker_wall_ms: 0 },
        );
        h.push(
            1_000,
            Event::TimingSent { key: 6, timing: Timing::Tx(TxDecision::CommitOnCheck), broker_wall_ms: 0 },
        );
        h.push(1_010, Event::TimingAcked { key: 4, phys: 0, broker_wall_ms: 0, broker_high_ms: 0 });
        // Key 5's send was never answered: its producer never ended it, so checks are due.
        h.push(
            1_000,
            Event::TimingSent { key: 5, timing: Timing::Tx(TxDecision::Commit), broker_wall_ms: 0 },
        );
        h.push(5_000, Event::TxChecked { key: 6 });
        h.push(5_000, Event::TxChecked { key: 5 });
        h.push(6_000, Event::TxChecked { key: 4 });
        h.push(7_000, Event::TxChecked { key: 6 });
        let found = check_timing(&h, &CONFIG, 10);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("transaction 4 checked at 6000ms though it was ended at 1010ms"),
            "{found:?}"
        );
        assert!(found[1].starts_with("transaction 6 checked at 7000ms though it was ended at 5000ms"));
        // A partition in their lives may have lost an END_TRANSACTION or held up a check
        // sent before it: both are excused.
        h.push(900, Event::Fault { what: "pause broker for 50ms".into() });
        assert_eq!(check_timing(&h, &CONFIG, 10).len(), 2, "a fault over before the send excuses nothing");
        h.push(4_000, Event::Fault { what: "partition broker".into() });
        assert_eq!(check_timing(&h, &CONFIG, 10), Vec::<String>::new());
    }

    #[test]
    fn a_check_after_the_end_of_a_retried_send_is_its_earlier_attempts_half() {
        // Seed 2394723478984748792's shape: sends timed out while the broker's store was
        // repairing; the third attempt was answered 8.75 s after the send began, and the
        // halves the first two stored were checked after the third's END.
        let history = |acked_after: u64| {
            let mut h = History::default();
            h.push(
                512_719,
                Event::TimingSent { key: 9, timing: Timing::Tx(TxDecision::Commit), broker_wall_ms: 0 },
            );
            let acked = Event::TimingAcked { key: 9, phys: 0, broker_wall_ms: 0, broker_high_ms: 0 };
            h.push(512_719 + acked_after, acked);
            h.push(525_561, Event::TxChecked { key: 9 });
            h
        };
        assert_eq!(check_timing(&history(8_753), &CONFIG, 10), Vec::<String>::new());
        let found = check_timing(&history(20), &CONFIG, 10);
        assert_eq!(found.len(), 1, "an attempt answered at once stored one half: {found:?}");
        assert!(found[0].starts_with("transaction 9 checked at 525561ms"), "{found:?}");
    }

    #[test]
    fn a_copy_the_read_back_finds_counts_though_the_consumer_skipped_it() {
        let mut h = History::default();
        h.push(
            1_000,
            Event::TimingSent { key: 8, timing: Timing::Tx(TxDecision::Commit), broker_wall_ms: 0 },
        );
        h.push(1_010, Event::TimingAcked { key: 8, phys: 0, broker_wall_ms: 1_000, broker_high_ms: 1_000 });
        h.push(90_000, Event::BrokerClock { wall_ms: 90_000, high_ms: 90_000 });
        assert_eq!(check_timing(&h, &CONFIG, 10).len(), 1, "never delivered");
        h.push(
            89_000,
            Event::TimingProbed {
                key: 8,
                broker: "broker-a".into(),
                queue: 0,
                offset: 0,
                store_ms: 1_020,
                due_ms: None,
            },
        );
        assert_eq!(check_timing(&h, &CONFIG, 10), Vec::<String>::new());
    }

    #[test]
    fn a_pause_that_outlasted_the_send_excuses_a_check() {
        // A pause that began before the send and outlasted it excuses a check.
        let mut h = History::default();
        h.push(500, Event::Fault { what: "pause broker for 1.049s".into() });
        h.push(
            1_000,
            Event::TimingSent { key: 4, timing: Timing::Tx(TxDecision::Commit), broker_wall_ms: 0 },
        );
        h.push(6_000, Event::TxChecked { key: 4 });
        assert_eq!(check_timing(&h, &CONFIG, 10), Vec::<String>::new());
    }

    #[test]
    fn a_partition_lifted_before_the_send_excuses_a_check_within_the_retry_backoff_only() {
        // Seed 16135798763347326761's shape: the replies to a send made after a partition
        // lifted waited behind a chunk still backing off; the producer's retries stored
        // more halves, each checked once after the first check had ended the transaction.
        let history = |sent: u64| {
            let mut h = History::default();
            h.push(42_034, Event::Fault { what: "one-way partition: broker out for 3.301s".into() });
            h.push(
                sent,
                Event::TimingSent {
                    key: 6,
                    timing: Timing::Tx(TxDecision::CommitOnCheck),
                    broker_wall_ms: 0,
                },
            );
            h.push(sent + 7_583, Event::TxChecked { key: 6 });
            h.push(sent + 7_585, Event::TxChecked { key: 6 });
            h
        };
        assert_eq!(check_timing(&history(47_216), &CONFIG, 10), Vec::<String>::new());
        let found = check_timing(&history(55_400), &CONFIG, 10);
        assert_eq!(found.len(), 1, "a send 10 s after the partition lifted is not excused: {found:?}");
    }
}
