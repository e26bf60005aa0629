//! The checkers: what a run's [`History`] must satisfy, whatever faults it went through.
//!
//! - **Integrity**: every delivered or read-back record is a message some producer sent,
//!   byte for byte; nothing damaged is ever delivered.
//! - **Durability**: every acknowledged message can be read back at its queue and offset,
//!   unless it was acknowledged under ASYNC_FLUSH and a power loss came before it was synced
//!   (the disk reports the synced end at every power loss), or retention may have deleted
//!   it (older than `fileReservedTime` by the broker's clock: [`Horizon`]). SYNC_FLUSH
//!   excuses nothing else.
//! - **FIFO**: a producer's acknowledged offsets rise per queue; a consumer session sees
//!   consecutive offsets per queue from where it resumed (or where the broker moved it).
//! - **Commits**: a committed offset never passes a message that was not processed yet.
//! - **Duplicates**: stored copies of a key never outnumber its send attempts; a group sees
//!   a copy again only after one of its consumers restarted or was moved. A fault-free run
//!   has no duplicate and no failed send at all.
//! - **Liveness**: after healing, every durable acknowledged message retention may not have
//!   deleted reached every group.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Event, History, Key};
use crate::horizon::Horizon;

/// What the checkers need to know about the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// The broker acknowledged sends only after fsync.
    pub sync_flush: bool,
    /// No fault was injected: duplicates and failed sends must be exactly zero.
    pub fault_free: bool,
    /// The consumer groups that subscribe to everything.
    pub groups: Vec<u8>,
    /// An upper bound on one stored record's size, bytes (to excuse a record torn by a loss).
    pub record_bound: u64,
    /// Retention's `fileReservedTime`, ms, if it deletes within the run: what is older by
    /// the broker's clock may be gone ([`Horizon`]).
    pub reserved_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    /// When the attempt that stored it began (the earliest the broker could write it).
    at_ms: u64,
    /// When the producer got the acknowledgement.
    acked_ms: u64,
    producer: u32,
    key: Key,
    queue: i32,
    offset: i64,
    phys: u64,
}

/// Every violation the history shows (empty: the run is correct), at most `limit` of them.
#[must_use]
pub fn check(history: &History, config: &CheckConfig, limit: usize) -> Vec<String> {
    let mut v = Violations { found: Vec::new(), limit };
    let Sends { attempts, acks, losses, failed: failed_sends } = sends(history);
    for entry in history.entries() {
        if let Event::Alarm { what } = &entry.event {
            v.add(format!("alarm at {}ms: {what}", entry.at_ms));
        }
    }
    let excused = |ack: &Ack| excused(config, &losses, ack);
    let durable: Vec<&Ack> = acks.iter().filter(|a| !excused(a)).collect();
    // What retention may have deleted need not be read back or delivered; what it fixed
    // at its offset while it lived still counts (`check_served`).
    let horizon = Horizon::of(history, config.reserved_ms, None);
    let kept: Vec<&Ack> = durable.iter().copied().filter(|a| !horizon.expired(a.key, a.acked_ms)).collect();

    check_integrity(history, &attempts, &mut v);
    check_consumers(history, config, &attempts, &mut v);
    check_producer_order(&acks, &excused, &mut v);
    check_served(history, &durable, &mut v);
    check_read_back(history, &kept, !durable.is_empty(), &mut v);
    check_liveness(history, config, &kept, &mut v);
    if config.fault_free {
        if failed_sends > 0 {
            v.add(format!("fault-free run: {failed_sends} sends failed"));
        }
        if let Some((key, n)) = attempts.iter().find(|(_, n)| **n > 1) {
            v.add(format!("fault-free run: key {key:#x} sent {n} times"));
        }
    }
    v.found
}

/// Whether a loss of unsynced data may have taken `ack`: only under ASYNC_FLUSH, and only
/// if the record reached past what was synced at that loss. The record was written between
/// its attempt and its acknowledgement, so any loss in between may have taken it; of the
/// losses after the acknowledgement only the first decides: what was synced then stays
/// synced, and a later loss that takes it is the broker's doing (a repair or a recovery that
/// cut records it had made durable), not the disk's.
fn excused(config: &CheckConfig, losses: &[(u64, u64)], ack: &Ack) -> bool {
    let reached_past = |end: u64| ack.phys + config.record_bound > end;
    let during = || losses.iter().filter(|(at, _)| (ack.at_ms..ack.acked_ms).contains(at));
    let first_after = losses.iter().find(|(at, _)| *at >= ack.acked_ms);
    !config.sync_flush
        && (during().any(|(_, end)| reached_past(*end))
            || first_after.is_some_and(|(_, end)| reached_past(*end)))
}

/// How many (group, message) deliveries are still owed: durable acknowledged messages that
/// some group has not received intact yet, and retention may not have deleted with the
/// broker's clock at its highest `high_ms`. The healing phase waits for zero.
#[must_use]
pub fn undelivered(history: &History, config: &CheckConfig, high_ms: i64) -> usize {
    let Sends { acks, losses, .. } = sends(history);
    let delivery = Deliveries::of(history);
    let horizon = Horizon::of(history, config.reserved_ms, Some(high_ms));
    acks.iter()
        .filter(|a| !excused(config, &losses, a) && !horizon.expired(a.key, a.acked_ms))
        .map(|a| config.groups.iter().filter(|g| !delivery.reached(**g, a)).count())
        .sum()
}

/// The producers' side of a history.
struct Sends {
    /// Attempts per key.
    attempts: BTreeMap<Key, u32>,
    acks: Vec<Ack>,
    /// (when, synced end) of every loss of unsynced data.
    losses: Vec<(u64, u64)>,
    failed: u64,
}

fn sends(history: &History) -> Sends {
    let mut out = Sends { attempts: BTreeMap::new(), acks: Vec::new(), losses: Vec::new(), failed: 0 };
    let mut attempted_at: BTreeMap<Key, u64> = BTreeMap::new();
    for entry in history.entries() {
        match &entry.event {
            Event::SendAttempt { key, .. } => {
                *out.attempts.entry(*key).or_default() += 1;
                attempted_at.insert(*key, entry.at_ms);
            }
            Event::SendAcked { producer, key, queue, offset, phys } => out.acks.push(Ack {
                // The broker wrote the message some time after the attempt began; the ack
                // can reach the client after a loss that took the bytes (a reply held up in
                // the network outlives the process that sent it).
                at_ms: attempted_at.get(key).copied().unwrap_or(entry.at_ms),
                acked_ms: entry.at_ms,
                producer: *producer,
                key: *key,
                queue: *queue,
                offset: *offset,
                phys: *phys,
            }),
            Event::SendFailed { .. } => out.failed += 1,
            Event::BrokerDataLoss { synced_end, .. } => out.losses.push((entry.at_ms, *synced_end)),
            _ => {}
        }
    }
    out
}

struct Violations {
    found: Vec<String>,
    limit: usize,
}

impl Violations {
    fn add(&mut self, what: String) {
        if self.found.len() < self.limit {
            self.found.push(what);
        }
    }
}

fn check_integrity(history: &History, attempts: &BTreeMap<Key, u32>, v: &mut Violations) {
    for entry in history.entries() {
        let (what, key, intact, queue, offset) = match &entry.event {
            Event::Delivered { key, intact, queue, offset, .. } => ("delivered", key, intact, queue, offset),
            Event::Probe { key, intact, queue, offset } => ("read back", key, intact, queue, offset),
            _ => continue,
        };
        match key {
            None => v.add(format!("{what} a record that no producer sent at {queue}/{offset}")),
            Some(k) if !attempts.contains_key(k) => {
                v.add(format!("{what} phantom key {k:#x} at {queue}/{offset}"));
            }
            Some(k) if !intact => v.add(format!("{what} key {k:#x} corrupt at {queue}/{offset}")),
            Some(_) => {}
        }
    }
}

fn check_consumers(
    history: &History,
    config: &CheckConfig,
    attempts: &BTreeMap<Key, u32>,
    v: &mut Violations,
) {
    let mut expected: BTreeMap<(u8, u32, i32), i64> = BTreeMap::new();
    let mut processed: BTreeMap<(u8, i32), i64> = BTreeMap::new();
    let mut copies: BTreeMap<(u8, Key), BTreeSet<(i32, i64)>> = BTreeMap::new();
    let mut deliveries: BTreeMap<(u8, Key), u64> = BTreeMap::new();
    let mut moves: BTreeMap<u8, u64> = BTreeMap::new();
    let mut per_place: BTreeMap<(u8, i32, i64), u64> = BTreeMap::new();
    for entry in history.entries() {
        match &entry.event {
            Event::SessionStart { group, .. } => *moves.entry(*group).or_default() += 1,
            Event::Resume { group, session, queue, offset } => {
                expected.insert((*group, *session, *queue), *offset);
                processed.insert((*group, *queue), *offset);
            }
            Event::Corrected { group, session, queue, to, .. } => {
                *moves.entry(*group).or_default() += 1;
                expected.insert((*group, *session, *queue), *to);
                processed.insert((*group, *queue), *to);
            }
            Event::Delivered { group, session, queue, offset, key, .. } => {
                match expected.get(&(*group, *session, *queue)) {
                    Some(want) if want != offset => v.add(format!(
                        "group {group} session {session} queue {queue}: delivered offset {offset}, expected {want} (a skip or a reorder)"
                    )),
                    None => v.add(format!("group {group} session {session} queue {queue}: delivery before resume")),
                    _ => {}
                }
                expected.insert((*group, *session, *queue), offset + 1);
                processed.insert((*group, *queue), offset + 1);
                if let Some(k) = key {
                    copies.entry((*group, *k)).or_default().insert((*queue, *offset));
                    *deliveries.entry((*group, *k)).or_default() += 1;
                }
                *per_place.entry((*group, *queue, *offset)).or_default() += 1;
            }
            Event::Committed { group, session, queue, offset } => {
                let done = processed.get(&(*group, *queue)).copied().unwrap_or(0);
                if *offset > done {
                    v.add(format!(
                        "group {group} session {session} queue {queue}: committed {offset} at {}ms but processed only up to {done}",
                        entry.at_ms
                    ));
                }
            }
            _ => {}
        }
    }
    for ((group, key), places) in &copies {
        let sent = attempts.get(key).copied().unwrap_or(0);
        if places.len() as u64 > u64::from(sent) {
            v.add(format!("group {group}: key {key:#x} stored {} times but sent {sent} times", places.len()));
        }
        if config.fault_free
            && (places.len() > 1 || deliveries.get(&(*group, *key)).copied().unwrap_or(0) > 1)
        {
            v.add(format!("fault-free run: group {group} saw key {key:#x} more than once"));
        }
    }
    // A stored message is seen again only when a consumer restarts or is moved back; the
    // first session start is the consumer's birth, not a restart.
    for ((group, queue, offset), n) in &per_place {
        let allowed = moves.get(group).copied().unwrap_or(0).saturating_sub(1);
        if n - 1 > allowed {
            v.add(format!(
                "group {group}: {queue}/{offset} delivered {n} times with {allowed} restarts or moves"
            ));
        }
    }
}

fn check_producer_order(acks: &[Ack], excused: &dyn Fn(&Ack) -> bool, v: &mut Violations) {
    let mut last: BTreeMap<(u32, i32), &Ack> = BTreeMap::new();
    for ack in acks {
        if let Some(prev) = last.get(&(ack.producer, ack.queue)) {
            if prev.offset >= ack.offset && !excused(prev) {
                v.add(format!(
                    "producer {} queue {}: key {:#x} acked at offset {} after key {:#x} at {}",
                    ack.producer, ack.queue, ack.key, ack.offset, prev.key, prev.offset
                ));
            }
        }
        last.insert((ack.producer, ack.queue), ack);
    }
}

/// The reference model: a durable acknowledgement fixes what its queue offset holds from
/// then on, so every delivery from a pull sent after it must be that message. (Before it,
/// the offset may have held a message an ASYNC_FLUSH loss took, and a reply sent before
/// the loss can arrive long after it.)
fn check_served(history: &History, durable: &[&Ack], v: &mut Violations) {
    let model: BTreeMap<(i32, i64), (Key, u64)> =
        durable.iter().map(|a| ((a.queue, a.offset), (a.key, a.acked_ms))).collect();
    for entry in history.entries() {
        if let Event::Delivered { group, queue, offset, key: Some(k), asked_ms, .. } = &entry.event {
            if let Some((want, since)) = model.get(&(*queue, *offset)) {
                if want != k && asked_ms >= since {
                    v.add(format!(
                        "group {group} was served key {k:#x} at {queue}/{offset}, where {want:#x} was acknowledged"
                    ));
                }
            }
        }
    }
}

fn check_read_back(history: &History, durable: &[&Ack], any_durable: bool, v: &mut Violations) {
    let mut probes: BTreeMap<(i32, i64), Option<Key>> = BTreeMap::new();
    let mut probed = false;
    for entry in history.entries() {
        match &entry.event {
            Event::Probe { queue, offset, key, .. } => {
                probed = true;
                probes.insert((*queue, *offset), *key);
            }
            // A queue retention emptied reads back nothing, and that is a read-back too
            // (seed 15837458994707953958: 3.5 s of retention left no record to probe).
            Event::ProbeDone { .. } => probed = true,
            Event::ProbeFailed { queue, offset, reason } => {
                probed = true;
                v.add(format!("read-back of {queue}/{offset} failed: {reason}"));
            }
            Event::KeyLookup { key, phys, found: false } => {
                v.add(format!(
                    "QUERY_MESSAGE by key {key:#x} missed the record the read-back found at CommitLog {phys}"
                ));
            }
            _ => {}
        }
    }
    if !probed && any_durable {
        v.add("no read-back happened".to_owned());
        return;
    }
    for ack in durable {
        match probes.get(&(ack.queue, ack.offset)) {
            Some(Some(k)) if *k == ack.key => {}
            found => v.add(format!(
                "acked key {:#x} at {}/{} (CommitLog {}) is lost: read back {found:?}",
                ack.key, ack.queue, ack.offset, ack.phys
            )),
        }
    }
}

fn check_liveness(history: &History, config: &CheckConfig, durable: &[&Ack], v: &mut Violations) {
    let delivery = Deliveries::of(history);
    for group in &config.groups {
        let missing: Vec<String> = durable
            .iter()
            .filter(|a| !delivery.reached(*group, a))
            .map(|a| format!("{:#x}@{}/{}", a.key, a.queue, a.offset))
            .collect();
        if !missing.is_empty() {
            let shown: Vec<&String> = missing.iter().take(5).collect();
            v.add(format!("group {group} never received {} acked messages, e.g. {shown:?}", missing.len()));
        }
    }
}

/// What each group received, for the liveness check.
struct Deliveries {
    /// (group, key) delivered intact.
    seen: BTreeSet<(u8, Key)>,
    /// (group, queue, offset) → the keys the group received there.
    at: BTreeMap<(u8, i32, i64), BTreeSet<Key>>,
}

impl Deliveries {
    fn of(history: &History) -> Self {
        let mut out = Self { seen: BTreeSet::new(), at: BTreeMap::new() };
        for entry in history.entries() {
            if let Event::Delivered { group, key: Some(k), intact: true, queue, offset, .. } = &entry.event {
                out.seen.insert((*group, *k));
                out.at.entry((*group, *queue, *offset)).or_default().insert(*k);
            }
        }
        out
    }

    /// Whether `group` got `ack`, or lost it only because the group had already consumed
    /// its queue offset holding another message (ASYNC_FLUSH lost that one, and the offset
    /// was given again; a consumer cannot tell, in RocketMQ as here).
    fn reached(&self, group: u8, ack: &Ack) -> bool {
        self.seen.contains(&(group, ack.key))
            || self
                .at
                .get(&(group, ack.queue, ack.offset))
                .is_some_and(|keys| keys.iter().any(|k| *k != ack.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(offset: i64, key: Key, intact: bool) -> Event {
        Event::Delivered { group: 1, session: 0, queue: 0, offset, key: Some(key), intact, asked_ms: 3 }
    }

    fn config() -> CheckConfig {
        CheckConfig {
            sync_flush: true,
            fault_free: true,
            groups: vec![1],
            record_bound: 400,
            reserved_ms: None,
        }
    }

    /// A clean run: one key sent, acked, delivered, committed, read back.
    fn clean() -> History {
        let mut h = History::default();
        h.push(0, Event::SessionStart { group: 1, session: 0 });
        h.push(0, Event::Resume { group: 1, session: 0, queue: 0, offset: 0 });
        h.push(1, Event::SendAttempt { producer: 0, key: 7, queue: 0, broker_wall_ms: 1 });
        h.push(2, Event::SendAcked { producer: 0, key: 7, queue: 0, offset: 0, phys: 0 });
        h.push(3, delivered(0, 7, true));
        h.push(4, Event::Committed { group: 1, session: 0, queue: 0, offset: 1 });
        h.push(5, Event::Probe { queue: 0, offset: 0, key: Some(7), intact: true });
        h
    }

    #[test]
    fn a_clean_history_passes() {
        assert_eq!(check(&clean(), &config(), 10), Vec::<String>::new());
    }

    #[test]
    fn each_kind_of_wrong_history_is_caught() {
        let with = |edit: &dyn Fn(&mut Vec<Entry>)| {
            let mut entries = clean().entries().to_vec();
            edit(&mut entries);
            let mut h = History::default();
            for e in entries {
                h.push(e.at_ms, e.event);
            }
            check(&h, &config(), 10)
        };
        use crate::history::Entry;
        type Edit = Box<dyn Fn(&mut Vec<Entry>)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("phantom", Box::new(|e| e[4].event = delivered(0, 9, true))),
            ("corrupt", Box::new(|e| e[4].event = delivered(0, 7, false))),
            ("skip", Box::new(|e| e[4].event = delivered(1, 7, true))),
            ("commit early", Box::new(|e| e.swap(4, 5))),
            (
                "lost",
                Box::new(|e| e[6].event = Event::Probe { queue: 0, offset: 0, key: Some(8), intact: true }),
            ),
            (
                "never delivered",
                Box::new(|e| {
                    e.remove(5);
                    e.remove(4);
                }),
            ),
            (
                "duplicate",
                Box::new(|e| {
                    let d = e[4].clone();
                    e.insert(5, d);
                }),
            ),
            (
                "no read-back",
                Box::new(|e| {
                    e.pop();
                }),
            ),
        ];
        for (name, edit) in cases {
            assert!(!with(&*edit).is_empty(), "{name} was not caught");
        }
    }

    #[test]
    fn retention_excuses_only_what_is_past_its_horizon() {
        // Key 7 (sent at broker time 1) is delivered but not read back: retention took it.
        let mut h = History::default();
        for e in clean().entries() {
            if !matches!(e.event, Event::Probe { .. }) {
                h.push(e.at_ms, e.event.clone());
            }
        }
        // The read-back saw the queue, from a minimum past key 7.
        h.push(5, Event::Probe { queue: 0, offset: 1, key: Some(9), intact: true });
        h.push(5, Event::SendAttempt { producer: 0, key: 9, queue: 0, broker_wall_ms: 1 });
        let at_end = |high_ms: i64| {
            let mut ended = h.clone();
            ended.push(6, Event::BrokerClock { wall_ms: high_ms, high_ms });
            ended
        };
        let retention = CheckConfig { reserved_ms: Some(60_000), ..config() };
        assert_eq!(check(&at_end(60_001), &retention, 10), Vec::<String>::new());
        let inside = check(&at_end(59_999), &retention, 10);
        assert!(inside.iter().any(|v| v.contains("is lost")), "{inside:?}");
        assert!(!check(&at_end(60_001), &config(), 10).is_empty(), "no retention, no excuse");
        // Never delivered either: owed until the horizon passes it.
        let mut unsent = at_end(60_001);
        unsent.push(7, Event::SendAttempt { producer: 0, key: 11, queue: 0, broker_wall_ms: 50_000 });
        unsent.push(8, Event::SendAcked { producer: 0, key: 11, queue: 0, offset: 2, phys: 99 });
        assert_eq!(undelivered(&unsent, &retention, 109_999), 1);
        assert_eq!(undelivered(&unsent, &retention, 110_000), 0);
    }

    #[test]
    fn a_read_back_of_queues_retention_emptied_counts_as_one() {
        // Everything acked lies past retention's horizon, and the read-back found nothing.
        let mut h = History::default();
        for e in clean().entries() {
            if !matches!(e.event, Event::Probe { .. }) {
                h.push(e.at_ms, e.event.clone());
            }
        }
        h.push(6, Event::BrokerClock { wall_ms: 60_001, high_ms: 60_001 });
        let retention = CheckConfig { reserved_ms: Some(60_000), ..config() };
        let never = check(&h, &retention, 10);
        assert!(never.iter().any(|v| v.contains("no read-back")), "{never:?}");
        h.push(7, Event::ProbeDone { queue: 0 });
        assert_eq!(check(&h, &retention, 10), Vec::<String>::new());
    }

    #[test]
    fn async_flush_excuses_only_what_a_power_loss_could_lose() {
        let mut h = clean();
        h.push(6, Event::BrokerDataLoss { synced_end: 0, cause: "power loss".into() });
        let mut lost = History::default();
        for e in h.entries() {
            let event = match &e.event {
                Event::Probe { .. } => Event::Probe { queue: 0, offset: 0, key: Some(8), intact: true },
                Event::Delivered { .. } => continue,
                Event::Committed { .. } => continue,
                other => other.clone(),
            };
            lost.push(e.at_ms, event);
        }
        lost.push(7, Event::SendAttempt { producer: 0, key: 8, queue: 0, broker_wall_ms: 7 });
        let asynchronous = CheckConfig { sync_flush: false, fault_free: false, ..config() };
        assert_eq!(check(&lost, &asynchronous, 10), Vec::<String>::new());
        // Synced before the loss: not excused.
        let mut synced = History::default();
        for e in lost.entries() {
            let event = match &e.event {
                Event::BrokerDataLoss { .. } => {
                    Event::BrokerDataLoss { synced_end: 10_000, cause: "power loss".into() }
                }
                other => other.clone(),
            };
            synced.push(e.at_ms, event);
        }
        assert!(!check(&synced, &asynchronous, 10).is_empty());
        // Synced at the first loss after its acknowledgement: a later loss cannot excuse it.
        let mut cut_later = History::default();
        for e in synced.entries() {
            cut_later.push(e.at_ms, e.event.clone());
            if matches!(e.event, Event::BrokerDataLoss { .. }) {
                cut_later.push(e.at_ms, Event::BrokerDataLoss { synced_end: 0, cause: "power loss".into() });
            }
        }
        assert!(!check(&cut_later, &asynchronous, 10).is_empty());
        // SYNC_FLUSH excuses nothing.
        assert!(!check(&lost, &CheckConfig { fault_free: false, ..config() }, 10).is_empty());
    }
}
