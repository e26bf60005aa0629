//! The checks of the group scenario ([`crate::group_scenario`]): what each consumer group
//! promises, judged from the deliveries seen, the acknowledged sends and who was a member
//! when.

use std::collections::{BTreeMap, BTreeSet};

use keel_core::protocol::body::MessageQueue;

/// The topic every group consumes.
pub const GROUP_TOPIC: &str = "GroupTopic";

/// One delivery a listener saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Simulated ms since the start.
    pub at_ms: u64,
    /// Consumer group.
    pub group: &'static str,
    /// Instance (client id).
    pub instance: String,
    /// The queue.
    pub queue: MessageQueue,
    /// Its offset.
    pub offset: i64,
    /// The message's key (its send index).
    pub key: u32,
    /// Retries so far.
    pub reconsume_times: i32,
    /// The topic the listener was shown.
    pub topic: String,
    /// Whether the listener consumed it.
    pub ok: bool,
}

/// Who was in which group when: (ms, group, instance, joined or left).
pub type Membership = Vec<(u64, &'static str, String, bool)>;

fn of_group<'a>(seen: &'a [Seen], group: &str) -> impl Iterator<Item = &'a Seen> {
    let group = group.to_owned();
    seen.iter().filter(move |s| s.group == group)
}

/// Membership events of `group` within [from, to].
fn changes(membership: &Membership, group: &str, from: u64, to: u64) -> usize {
    membership.iter().filter(|m| m.1 == group && m.0 >= from && m.0 <= to).count()
}

/// `cg` and `lg`: every acknowledged message consumed; a second success only if the group's
/// membership changed during the message's life (a crash loses up to one commit period; a
/// hand-over may race the last commit; two owners during a rebalance both deliver it).
pub fn check_clustering(
    group: &str,
    seen: &[Seen],
    acked: &BTreeMap<u32, MessageQueue>,
    membership: &Membership,
    out: &mut Vec<String>,
) {
    let mut successes: BTreeMap<u32, Vec<&Seen>> = BTreeMap::new();
    for s in of_group(seen, group).filter(|s| s.ok) {
        successes.entry(s.key).or_default().push(s);
    }
    // A duplicate may come from a fork anywhere in the message's life: two owners delivering
    // it during a rebalance both send it back, and each retry copy then lives on. So the
    // window for the membership change opens at its first delivery, failed or not.
    let mut first_seen: BTreeMap<u32, u64> = BTreeMap::new();
    for s in of_group(seen, group) {
        first_seen.entry(s.key).and_modify(|t| *t = (*t).min(s.at_ms)).or_insert(s.at_ms);
    }
    for key in acked.keys() {
        match successes.get(key).map(Vec::as_slice) {
            None | Some([]) => out.push(format!("{group}: acknowledged message {key} never consumed")),
            Some([first, rest @ ..]) => {
                for again in rest {
                    let born = first_seen.get(key).copied().unwrap_or(first.at_ms);
                    if changes(membership, group, born.saturating_sub(6_000), again.at_ms) == 0 {
                        out.push(format!(
                            "{group}: message {key} consumed again at {} ms by {} from {} offset {} (first at {} ms by {} from {} offset {}) with no membership change",
                            again.at_ms, again.instance, again.queue.topic, again.offset, first.at_ms, first.instance, first.queue.topic, first.offset
                        ));
                    }
                }
            }
        }
    }
    for s in of_group(seen, group) {
        if s.topic != GROUP_TOPIC {
            out.push(format!(
                "{group}: message {} shown under topic {} (a retry must show its original topic)",
                s.key, s.topic
            ));
        }
    }
}

/// How long after a membership change a group's queues must be owned again: one rebalance
/// period (20 s) plus the time to notice (a closed connection, a broker notification) and
/// to sample.
pub const SETTLE_MS: u64 = 25_000;

/// One instance's queues at a moment: (ms, instance, queue ids).
pub type OwnerSample = (u64, String, BTreeSet<i32>);

/// `lg`: once `SETTLE_MS` have passed since its last membership change, the group's live
/// instances own every one of `queues` queues, each exactly once. (RocketMQ's promise: a
/// join or a leave never leaves a queue unowned past one rebalance period.)
pub fn check_ownership(
    group: &str,
    samples: &[OwnerSample],
    membership: &Membership,
    queues: i32,
    out: &mut Vec<String>,
) {
    let all: BTreeSet<i32> = (0..queues).collect();
    let mut moments: Vec<u64> = samples.iter().map(|s| s.0).collect();
    moments.sort_unstable();
    moments.dedup();
    for t in moments {
        let changed = membership.iter().filter(|m| m.1 == group && m.0 <= t).map(|m| m.0).max();
        if changed.is_none_or(|c| t < c + SETTLE_MS) {
            continue;
        }
        // Live members at t, and each one's latest sample no older than 2 s.
        let mut live: BTreeMap<&str, bool> = BTreeMap::new();
        for m in membership.iter().filter(|m| m.1 == group && m.0 <= t) {
            live.insert(m.2.as_str(), m.3);
        }
        let mut owned: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
        let mut complete = true;
        for instance in live.iter().filter(|(_, alive)| **alive).map(|(i, _)| *i) {
            let latest = samples.iter().filter(|s| s.1 == instance && s.0 <= t).max_by_key(|s| s.0);
            match latest {
                Some(sample) if t - sample.0 <= 2_000 => {
                    for q in &sample.2 {
                        owned.entry(*q).or_default().push(instance);
                    }
                }
                _ => complete = false,
            }
        }
        if !complete {
            continue;
        }
        let orphans: Vec<&i32> = all.iter().filter(|q| !owned.contains_key(q)).collect();
        let shared: Vec<(&i32, &Vec<&str>)> = owned.iter().filter(|(_, o)| o.len() > 1).collect();
        if !orphans.is_empty() || !shared.is_empty() {
            out.push(format!(
                "{group}: at {t} ms, {} ms after the last membership change, queues {orphans:?} have no owner and {shared:?} have several",
                t - changed.unwrap_or(0)
            ));
            return;
        }
    }
}

/// `og`: every acknowledged message consumed; per queue and owner, a failure is retried
/// first and nothing is skipped; owners change only as often as membership changes.
pub fn check_orderly(
    seen: &[Seen],
    acked: &BTreeMap<u32, MessageQueue>,
    membership: &Membership,
    out: &mut Vec<String>,
) {
    let consumed: BTreeSet<u32> = of_group(seen, "og").filter(|s| s.ok).map(|s| s.key).collect();
    for key in acked.keys() {
        if !consumed.contains(key) {
            out.push(format!("og: acknowledged message {key} never consumed"));
        }
    }
    let mut per_queue: BTreeMap<&MessageQueue, Vec<&Seen>> = BTreeMap::new();
    for s in of_group(seen, "og") {
        per_queue.entry(&s.queue).or_default().push(s);
    }
    for (queue, deliveries) in per_queue {
        let mut last_switch_ms = 0;
        let mut last: Option<&Seen> = None;
        let mut high_water: Option<i64> = None; // highest offset consumed on this queue
        for s in deliveries {
            if let Some(prev) = last {
                if prev.instance != s.instance {
                    // Two consumers take turns on a queue only after a membership change.
                    if changes(membership, "og", last_switch_ms, s.at_ms) == 0 {
                        out.push(format!(
                            "og: queue {} went from {} to {} at {} ms with no membership change since {} ms (interleaved consumers)",
                            queue.queue_id, prev.instance, s.instance, s.at_ms, last_switch_ms
                        ));
                    }
                    last_switch_ms = s.at_ms;
                    // A new owner restarts at the committed offset: never past what was consumed.
                    if high_water.is_some_and(|h| s.offset > h + 1) {
                        out.push(format!(
                            "og: queue {} skipped to {} after {:?} on a hand-over",
                            queue.queue_id, s.offset, high_water
                        ));
                    }
                } else {
                    let expected = if prev.ok { prev.offset + 1 } else { prev.offset };
                    if s.offset != expected && !(prev.ok && s.offset <= prev.offset) {
                        out.push(format!(
                            "og: queue {} by {} went from {} ({}) to {}",
                            queue.queue_id,
                            s.instance,
                            prev.offset,
                            if prev.ok { "consumed" } else { "failed" },
                            s.offset
                        ));
                    }
                }
            }
            if s.ok {
                high_water = Some(high_water.map_or(s.offset, |h| h.max(s.offset)));
            }
            last = Some(s);
        }
    }
}

/// `dg`: a message that always fails is delivered exactly `max + 1` times with rising
/// `reconsumeTimes`, then is in the DLQ exactly once and never delivered again; the others
/// never reach the DLQ.
pub fn check_dead_letters(
    seen: &[Seen],
    acked: &BTreeMap<u32, MessageQueue>,
    dlq: &[u32],
    max: i32,
    out: &mut Vec<String>,
) {
    let mut tries: BTreeMap<u32, Vec<i32>> = BTreeMap::new();
    for s in of_group(seen, "dg") {
        tries.entry(s.key).or_default().push(s.reconsume_times);
    }
    let want: Vec<i32> = (0..=max).collect();
    for key in acked.keys() {
        let got = tries.get(key).cloned().unwrap_or_default();
        let in_dlq = dlq.iter().filter(|k| *k == key).count();
        if key % 10 == 0 {
            // A crash-free single consumer: every try is seen once (duplicates would be a
            // broker restart's, and the broker does not restart here).
            if got != want {
                out.push(format!(
                    "dg: failing message {key} delivered with reconsume times {got:?}, want {want:?}"
                ));
            }
            if in_dlq != 1 {
                out.push(format!("dg: failing message {key} is in the DLQ {in_dlq} times"));
            }
        } else {
            if got.is_empty() {
                out.push(format!("dg: message {key} never consumed"));
            }
            if in_dlq != 0 {
                out.push(format!("dg: consumed message {key} is in the DLQ"));
            }
        }
    }
}

/// `bg`: each instance consumed every acknowledged message.
pub fn check_broadcast(seen: &[Seen], acked: &BTreeMap<u32, MessageQueue>, out: &mut Vec<String>) {
    for instance in ["10.0.5.1@bg-a", "10.0.5.2@bg-b"] {
        let got: BTreeSet<u32> =
            of_group(seen, "bg").filter(|s| s.instance == instance).map(|s| s.key).collect();
        let missing: Vec<&u32> = acked.keys().filter(|k| !got.contains(k)).collect();
        if !missing.is_empty() {
            out.push(format!(
                "bg: {instance} missed {} messages, first {:?}",
                missing.len(),
                missing.first()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: u64, instance: &str, queues: &[i32]) -> OwnerSample {
        (at, instance.to_owned(), queues.iter().copied().collect())
    }

    fn members() -> Membership {
        vec![(0, "lg", "a".into(), true), (0, "lg", "b".into(), true), (10_000, "lg", "a".into(), false)]
    }

    fn check(samples: &[OwnerSample]) -> Vec<String> {
        let mut out = Vec::new();
        check_ownership("lg", samples, &members(), 4, &mut out);
        out
    }

    fn seen(at_ms: u64, instance: &str, topic: &str, offset: i64, ok: bool) -> Seen {
        Seen {
            at_ms,
            group: "cg",
            instance: instance.into(),
            queue: MessageQueue::new(topic, "broker-a", 0),
            offset,
            key: 7,
            reconsume_times: i32::from(topic != GROUP_TOPIC),
            topic: GROUP_TOPIC.into(),
            ok,
        }
    }

    #[test]
    fn a_duplicate_is_excused_only_by_a_membership_change_in_the_message_life() {
        let acked: BTreeMap<u32, MessageQueue> = [(7, MessageQueue::new(GROUP_TOPIC, "broker-a", 0))].into();
        let joins: Membership = vec![(0, "cg", "a".into(), true), (0, "cg", "b".into(), true)];
        // Two owners during the first rebalance both fail it; both retry copies succeed later.
        let forked = [
            seen(10, "a", GROUP_TOPIC, 0, false),
            seen(12, "b", GROUP_TOPIC, 0, false),
            seen(9_000, "a", "%RETRY%cg", 3, true),
            seen(9_000, "a", "%RETRY%cg", 4, true),
        ];
        let mut out = Vec::new();
        check_clustering("cg", &forked, &acked, &joins, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // The same two successes with the message born long after the last change: flagged.
        let late: Vec<Seen> = forked.iter().map(|s| Seen { at_ms: s.at_ms + 60_000, ..s.clone() }).collect();
        check_clustering("cg", &late, &acked, &joins, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn a_queue_still_unowned_a_rebalance_period_after_a_leave_is_flagged() {
        let late = 10_000 + SETTLE_MS + 1_000;
        let out = check(&[sample(late, "b", &[0, 1, 2])]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("[3] have no owner"), "{out:?}");
    }

    #[test]
    fn a_queue_unowned_within_the_period_is_not_flagged() {
        assert!(check(&[sample(10_000 + SETTLE_MS - 1, "b", &[0, 1])]).is_empty());
    }

    #[test]
    fn a_queue_owned_twice_after_the_period_is_flagged_and_the_left_member_does_not_count() {
        let late = 10_000 + SETTLE_MS + 1_000;
        // `a` left: its stale sample is ignored, so `b` owning everything is right.
        assert!(check(&[sample(late, "a", &[0]), sample(late, "b", &[0, 1, 2, 3])]).is_empty());
        let mut out = Vec::new();
        let both = vec![(0, "lg", "a".to_owned(), true), (0, "lg", "b".to_owned(), true)];
        check_ownership(
            "lg",
            &[sample(30_000, "a", &[0, 1]), sample(30_000, "b", &[1, 2, 3])],
            &both,
            4,
            &mut out,
        );
        assert!(out.len() == 1 && out[0].contains("several"), "{out:?}");
    }
}
