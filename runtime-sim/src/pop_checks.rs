//! Checkers of the pop workload (`pop_workload.rs`), over the history:
//!
//! - **at least once**: every message a send stored is acknowledged by a pop consumer at
//!   least once (an ack sent counts, its answer may be lost), or (a poison message, never acknowledged) found in the group's
//!   dead-letter queue, unless a power loss may have taken it or retention may have;
//! - **redelivered only when due**: a message comes again only once its invisible time is
//!   up, and never after an ack the broker answered within that time, unless a fault came
//!   in between;
//! - **FIFO**: a FIFO queue never delivers a message while one before it is neither
//!   acknowledged nor in the same batch (runs with a data loss or retention are left out:
//!   offsets of lost messages are given to new ones, and a deleted one is passed over);
//! - **dead letters**: in a run without faults, a poison message is delivered exactly the
//!   group's `retryMaxTimes + 1` times.

use std::collections::{BTreeMap, BTreeSet};

use crate::fault_spans::fault_end;
use crate::history::{Event, History, Key, DISK_ERROR_REPAIR, UNTIL_HEALED};

/// The group's `retryMaxTimes` in the pop workload: a poison message goes to the DLQ after
/// this many retries.
pub const POP_RETRY_MAX: u32 = 2;
/// Slack for a broker clock that drifts and for replies in flight, ms.
const SLACK_MS: u64 = 300;
/// How long after a disk error its in-place repair may come: the store drains what is in
/// flight first, and the repair restarts pop consumption from its settled state (a FIFO
/// queue unblocked, revive read back).
const REPAIR_SPAN_MS: u64 = 10_000;
/// More than any record of the pop workload takes (a small body, a few properties): a
/// record starting less than this before the synced end may be torn.
const RECORD_BOUND: u64 = 1_024;
/// How long after a data loss a group's offset may skip messages stored anew at the lost
/// offsets (as the timing checker allows).
const LOSS_SKIP_MS: u64 = 10_000;

/// Whether the workload never acknowledges `key` of its normal topic (it must end in the
/// dead-letter queue); FIFO messages are always acknowledged in the end.
#[must_use]
pub fn is_poison(key: Key, fifo: bool) -> bool {
    !fifo && key.is_multiple_of(11)
}

/// One delivery as the checks see it.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    at: u64,
    asked: u64,
    invisible: u64,
    queue: i32,
    offset: i64,
}

#[derive(Debug, Default)]
struct Facts {
    sent: BTreeMap<Key, (u64, bool, i32, i64, u64)>,
    /// When each stored send was attempted: its record may have been written any time
    /// from then until its acknowledgement.
    attempts: BTreeMap<Key, u64>,
    deliveries: BTreeMap<Key, Vec<Delivery>>,
    /// Acks answered: key → (when, the delivery's pop time).
    acks: BTreeMap<Key, Vec<(u64, u64)>>,
    dead: BTreeSet<Key>,
    /// Every delivery: (when, FIFO, queue, offset); a send whose answer was lost shows here.
    seen: Vec<(u64, bool, i32, i64)>,
    /// When an ack was sent for each key, answered or not.
    ack_sent: BTreeMap<Key, Vec<u64>>,
    spans: Vec<(u64, u64)>,
    /// Power losses: (when, synced end).
    losses: Vec<(u64, u64)>,
    any_fault: bool,
}

impl Facts {
    fn of(history: &History) -> Self {
        let mut facts = Self::default();
        let mut until_healed = Vec::new();
        for entry in history.entries() {
            let at = entry.at_ms;
            match &entry.event {
                Event::PopSent { key, fifo, queue, offset, phys, attempt_ms } => {
                    facts.sent.insert(*key, (at, *fifo, *queue, *offset, *phys));
                    facts.attempts.insert(*key, *attempt_ms);
                }
                Event::PopDelivered { key, fifo, queue, offset, invisible_ms, asked_ms, .. } => {
                    facts.seen.push((at, *fifo, *queue, *offset));
                    let delivery = Delivery {
                        at,
                        asked: *asked_ms,
                        invisible: *invisible_ms,
                        queue: *queue,
                        offset: *offset,
                    };
                    facts.deliveries.entry(*key).or_default().push(delivery);
                }
                Event::PopAcked { key, popped_ms, .. } => {
                    facts.acks.entry(*key).or_default().push((at, *popped_ms))
                }
                Event::PopDeadLettered { key } => {
                    facts.dead.insert(*key);
                }
                Event::PopAckSent { key } => facts.ack_sent.entry(*key).or_default().push(at),
                Event::Fault { what } if what.ends_with(UNTIL_HEALED) => {
                    facts.any_fault = true;
                    until_healed.push(at);
                }
                Event::Fault { what } => {
                    facts.any_fault = true;
                    let end = if what.starts_with(DISK_ERROR_REPAIR) {
                        at + REPAIR_SPAN_MS
                    } else {
                        fault_end(at, what)
                    };
                    facts.spans.push((at, end));
                }
                Event::BrokerDataLoss { synced_end, .. } => {
                    facts.any_fault = true;
                    facts.losses.push((at, *synced_end));
                    facts.spans.push((at, at));
                }
                Event::BrokerClockStep { .. } => {
                    facts.any_fault = true;
                    facts.spans.push((at, at));
                }
                Event::Healed => facts.spans.extend(until_healed.drain(..).map(|start| (start, at))),
                _ => {}
            }
        }
        facts.spans.extend(until_healed.drain(..).map(|start| (start, u64::MAX)));
        facts
    }

    fn fault_during(&self, from: u64, to: u64) -> bool {
        self.spans.iter().any(|&(start, end)| start <= to && end >= from)
    }

    /// When `key`'s send was attempted (its acknowledgement's time if unknown).
    fn attempted(&self, key: Key, acked: u64) -> u64 {
        self.attempts.get(&key).copied().unwrap_or(acked)
    }

    /// Whether a data loss may have taken `key`: once its send was attempted (the record
    /// may be written before a loss the broker hears of only after acknowledging it), past
    /// what was synced; or shortly before it, when the group's offset may stand past the
    /// cut and skip what is stored there anew (the lost messages' offsets are given to new
    /// ones).
    fn maybe_lost(&self, key: Key) -> bool {
        let Some(&(at, fifo, queue, offset, phys)) = self.sent.get(&key) else { return true };
        let attempted = self.attempted(key, at);
        self.losses.iter().any(|&(lost_at, synced)| {
            let torn = lost_at >= attempted && phys + RECORD_BOUND > synced;
            let soon_after = lost_at <= at && at <= lost_at + LOSS_SKIP_MS;
            // Stored at an offset a message written before the loss had held, or passed
            // (acknowledged after it, maybe, and lost with it): the group's position may
            // stand past it.
            let before =
                |t: u64, f: bool, q: i32, o: i64| t <= lost_at && f == fifo && q == queue && o >= offset;
            let reused = lost_at <= at
                && (self.sent.iter().any(|(k, &(t, f, q, o, _))| before(self.attempted(*k, t), f, q, o))
                    || self.seen.iter().any(|&(t, f, q, o)| before(t, f, q, o)));
            torn || soon_after || reused
        })
    }
}

/// What the pop workload still waits for at `now_ms`: messages neither acknowledged nor
/// (poison) delivered `retryMaxTimes + 1` times and revived to the DLQ after the last.
#[must_use]
pub fn pop_pending(history: &History, now_ms: u64) -> usize {
    let facts = Facts::of(history);
    facts
        .sent
        .iter()
        .filter(|(key, sent)| {
            if is_poison(**key, sent.1) {
                let deliveries = facts.deliveries.get(key).map_or(&[][..], Vec::as_slice);
                let last_due = deliveries.last().map_or(u64::MAX, |d| d.asked + d.invisible + 2_000);
                deliveries.len() < (POP_RETRY_MAX + 1) as usize || now_ms < last_due
            } else {
                !facts.ack_sent.contains_key(key)
            }
        })
        .count()
}

/// Every pop checker's violations, at most `limit`. `retention` says whether retention may
/// have deleted messages (then nothing is owed).
#[must_use]
pub fn check_pop(history: &History, retention: bool, limit: usize) -> Vec<String> {
    let facts = Facts::of(history);
    let mut out = Vec::new();
    let mut add = |v: String| {
        if out.len() < limit {
            out.push(v);
        }
    };
    // At least once.
    for (key, sent) in &facts.sent {
        if retention || facts.maybe_lost(*key) {
            continue;
        }
        if is_poison(*key, sent.1) {
            if !facts.dead.contains(key) {
                add(format!("pop: poison message {key:x} never reached the dead-letter queue"));
            }
        } else if !facts.ack_sent.contains_key(key) && !facts.dead.contains(key) {
            add(format!("pop: message {key:x} stored but never acknowledged by a pop consumer"));
        }
    }
    // Redelivered only when due. A delivery of a copy seen before (a FIFO message, which
    // keeps its offset) is due once that copy's last delivery's invisible time is up; a new
    // copy (one revive put to the retry topic) once some earlier delivery's is: a fault can
    // leave two copies going round, each on its own clock.
    for (key, deliveries) in &facts.deliveries {
        let Some(first_asked) = deliveries.first().map(|d| d.asked) else { continue };
        for (j, next) in deliveries.iter().enumerate().skip(1) {
            let earlier = deliveries.get(..j).unwrap_or_default();
            let same_copy = earlier.iter().rev().find(|d| d.queue == next.queue && d.offset == next.offset);
            let (due, popped) = match same_copy {
                Some(d) => (d.asked.saturating_add(d.invisible), d.asked),
                None => earlier
                    .iter()
                    .map(|d| (d.asked.saturating_add(d.invisible), d.asked))
                    .min()
                    .unwrap_or((0, 0)),
            };
            if next.at + SLACK_MS < due && !facts.fault_during(popped, next.at) {
                add(format!(
                    "pop: {key:x} delivered again at {} ms, {} ms before its invisible time (popped at {popped} ms) was up, with no fault",
                    next.at,
                    due - next.at,
                ));
            }
            // Every earlier delivery acknowledged within its invisible time (the answer came
            // back): nothing is left to come again, unless a fault since the first pop (a
            // forward clock step or a restart may revive a checkpoint before its ack is
            // applied).
            let all_acked = earlier.iter().all(|d| {
                facts.acks.get(key).into_iter().flatten().any(|(acked_at, popped)| {
                    *popped == d.asked && acked_at + SLACK_MS < d.asked + d.invisible && *acked_at < next.at
                })
            });
            if all_acked && !facts.fault_during(first_asked, next.at) {
                add(format!(
                    "pop: {key:x} delivered again at {} ms though every earlier delivery's ack was answered in time, with no fault",
                    next.at
                ));
            }
        }
    }
    // FIFO (retention may delete a message out, and the queue then goes on past it).
    if facts.losses.is_empty() && !retention {
        check_fifo(&facts, &mut add);
    }
    // Dead letters, exactly on time when nothing disturbed the run.
    if !facts.any_fault && !retention {
        for (key, deliveries) in &facts.deliveries {
            let fifo = facts.sent.get(key).is_some_and(|s| s.1);
            if is_poison(*key, fifo) && deliveries.len() > (POP_RETRY_MAX + 1) as usize {
                add(format!(
                    "pop: poison message {key:x} delivered {} times, more than retryMaxTimes + 1 = {}",
                    deliveries.len(),
                    POP_RETRY_MAX + 1
                ));
            }
        }
    }
    out
}

fn check_fifo(facts: &Facts, add: &mut impl FnMut(String)) {
    // Per FIFO queue: offset → key; and every delivery in time order.
    let mut keys_at: BTreeMap<(i32, i64), Key> = BTreeMap::new();
    for (key, (_, fifo, queue, offset, _)) in &facts.sent {
        if *fifo {
            keys_at.insert((*queue, *offset), *key);
        }
    }
    let mut batches: BTreeMap<(u64, u64, i32), Vec<(i64, Key)>> = BTreeMap::new();
    for (key, deliveries) in &facts.deliveries {
        let Some((_, true, ..)) = facts.sent.get(key) else { continue };
        for d in deliveries {
            batches.entry((d.at, d.asked, d.queue)).or_default().push((d.offset, *key));
        }
    }
    for ((at, asked, queue), mut batch) in batches {
        batch.sort_unstable();
        let in_batch: BTreeSet<i64> = batch.iter().map(|(o, _)| *o).collect();
        let Some(&(last, _)) = batch.last() else { continue };
        // Everything before the batch's last message, not in the batch, must be acked first.
        for ((_, offset), earlier) in keys_at.range((queue, 0)..(queue, last)) {
            if in_batch.contains(offset) {
                continue;
            }
            // An ack sent may have taken effect though its answer was lost.
            let acked_before =
                facts.ack_sent.get(earlier).into_iter().flatten().any(|sent_at| *sent_at <= asked);
            if !acked_before {
                add(format!(
                    "pop FIFO: queue {queue} delivered offset {last} at {at} ms while offset {offset} ({earlier:x}) was neither acknowledged nor in the batch"
                ));
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(key: Key, fifo: bool, offset: i64, asked: u64) -> Event {
        Event::PopDelivered { key, fifo, queue: 0, offset, attempt: 1, invisible_ms: 4_000, asked_ms: asked }
    }

    fn base() -> History {
        let mut h = History::default();
        h.push(0, Event::PopSent { key: 1, fifo: false, queue: 0, offset: 0, phys: 0, attempt_ms: 0 });
        h.push(0, Event::PopSent { key: 11, fifo: false, queue: 0, offset: 1, phys: 100, attempt_ms: 0 });
        h.push(10, delivered(1, false, 0, 5));
        h.push(15, Event::PopAckSent { key: 1 });
        h.push(20, Event::PopAcked { key: 1, fifo: false, popped_ms: 5 });
        for (i, at) in [10u64, 4_100, 8_200].iter().enumerate() {
            h.push(*at + 5, delivered(11, false, 1, *at));
            let _ = i;
        }
        h.push(20_000, Event::PopDeadLettered { key: 11 });
        h
    }

    #[test]
    fn a_clean_pop_history_passes_and_each_wrong_one_is_caught() {
        assert_eq!(check_pop(&base(), false, 10), Vec::<String>::new());
        assert_eq!(pop_pending(&base(), 20_000), 0);
        assert_eq!(pop_pending(&base(), 12_000), 1, "the last revive is still to come");
        // Redelivered after an ack answered in time.
        let mut acked_back = base();
        acked_back.push(4_200, delivered(1, false, 0, 4_150));
        assert_eq!(check_pop(&acked_back, false, 10).len(), 1, "{:?}", check_pop(&acked_back, false, 10));
        // ... unless a fault came in between.
        acked_back.push(1_000, Event::Fault { what: "broker process killed".into() });
        assert!(check_pop(&acked_back, false, 10).is_empty());
        // Redelivered early.
        let mut early = base();
        early.push(2_000, delivered(11, false, 1, 1_990));
        assert!(check_pop(&early, false, 10).iter().any(|v| v.contains("before its invisible time")));
        // Never acked, never dead-lettered.
        let mut lost = base();
        lost.push(
            30_000,
            Event::PopSent { key: 2, fifo: false, queue: 0, offset: 2, phys: 200, attempt_ms: 29_990 },
        );
        assert!(check_pop(&lost, false, 10).iter().any(|v| v.contains("never acknowledged")));
        assert_eq!(pop_pending(&lost, 40_000), 1);
        assert!(check_pop(&lost, true, 10).is_empty(), "retention may have taken it");
        lost.push(30_001, Event::BrokerDataLoss { synced_end: 150, cause: "power loss".into() });
        assert!(check_pop(&lost, false, 10).is_empty(), "a power loss may have taken it");
        // A loss between a send's attempt and its acknowledgement may take it too, and a
        // message stored later at its offset may be passed over by the group.
        let mut raced = base();
        raced.push(30_000, Event::BrokerDataLoss { synced_end: 150, cause: "fsync failure".into() });
        raced.push(
            30_005,
            Event::PopSent { key: 3, fifo: true, queue: 0, offset: 0, phys: 200, attempt_ms: 29_990 },
        );
        raced.push(30_006, delivered(3, true, 0, 29_995));
        raced.push(30_007, Event::PopAckSent { key: 3 });
        raced.push(
            40_000,
            Event::PopSent { key: 6, fifo: true, queue: 0, offset: 0, phys: 180, attempt_ms: 39_990 },
        );
        assert!(check_pop(&raced, false, 10).is_empty(), "{:?}", check_pop(&raced, false, 10));
        // Without the loss, the message passed over is owed.
        let mut passed_over = base();
        passed_over.push(
            30_005,
            Event::PopSent { key: 3, fifo: true, queue: 0, offset: 0, phys: 200, attempt_ms: 29_990 },
        );
        passed_over.push(30_007, Event::PopAckSent { key: 3 });
        passed_over.push(
            40_000,
            Event::PopSent { key: 6, fifo: true, queue: 0, offset: 0, phys: 180, attempt_ms: 39_990 },
        );
        assert!(check_pop(&passed_over, false, 10)
            .iter()
            .any(|v| v.contains("6 stored but never acknowledged")));
        // A poison message delivered once too often in a quiet run.
        let mut many = base();
        many.push(12_400, delivered(11, false, 1, 12_300));
        assert!(check_pop(&many, false, 10).iter().any(|v| v.contains("more than retryMaxTimes")));
    }

    #[test]
    fn a_fifo_queue_never_delivers_past_a_message_out() {
        let mut h = History::default();
        for (key, offset) in [(1, 0), (2, 1), (3, 2)] {
            h.push(0, Event::PopSent { key, fifo: true, queue: 0, offset, phys: 0, attempt_ms: 0 });
        }
        h.push(10, delivered(1, true, 0, 5));
        h.push(10, delivered(2, true, 1, 5));
        h.push(11, Event::PopAckSent { key: 1 });
        h.push(20, Event::PopAcked { key: 1, fifo: true, popped_ms: 5 });
        let mut good = h.clone();
        good.push(12, Event::PopAckSent { key: 2 });
        good.push(30, delivered(3, true, 2, 25));
        good.push(31, Event::PopAckSent { key: 3 });
        assert_eq!(check_pop(&good, false, 10), Vec::<String>::new());
        // An ack sent whose answer was lost may have taken effect: not a violation.
        let mut unanswered = h.clone();
        unanswered.push(12, Event::PopAckSent { key: 2 });
        unanswered.push(15, delivered(3, true, 2, 13));
        unanswered.push(31, Event::PopAckSent { key: 3 });
        assert_eq!(check_pop(&unanswered, false, 10), Vec::<String>::new());
        // Offset 2 while offset 1 was still out (its ack sent only later).
        let mut bad = h.clone();
        bad.push(15, delivered(3, true, 2, 12));
        bad.push(30, Event::PopAckSent { key: 3 });
        bad.push(31, Event::PopAckSent { key: 2 });
        assert!(
            check_pop(&bad, false, 10).iter().any(|v| v.contains("FIFO")),
            "{:?}",
            check_pop(&bad, false, 10)
        );
    }
}
