//! Queue locks for orderly consumption (`RebalanceLockManager`): LOCK_BATCH_MQ and
//! UNLOCK_BATCH_MQ. A queue of a group is held by one client id at a time; a lock lasts
//! 60 s after its last renewal, so a crashed consumer's queues pass to another consumer one
//! lock period later. Expiry runs on the monotonic clock: a wall-clock step must neither
//! break a live lock nor keep a dead one.

use crate::broker::refusal::Refusal;
use std::collections::BTreeMap;

use crate::broker::shared::Answer;
use crate::io::{MonoNanos, Now};
use crate::protocol::body::{LockBatchRequestBody, LockBatchResponseBody, MessageQueue};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{RemotingCommand, ResponseCode};

/// How long a lock lives after its last renewal (`rocketmq.broker.rebalance.lockMaxLiveTime`).
pub const LOCK_MAX_LIVE_MS: u64 = 60_000;
/// Most queues one LOCK_BATCH_MQ may name; a larger set is refused (clients send one
/// broker's queues of their subscribed topics, far fewer).
pub const LOCK_BATCH_MAX: usize = 4_096;

#[derive(Debug, Clone)]
struct Holder {
    client_id: String,
    renewed: MonoNanos,
}

/// Who holds which queue, per consumer group.
#[derive(Debug, Default)]
pub struct QueueLocks {
    groups: BTreeMap<String, BTreeMap<MessageQueue, Holder>>,
    max_live_ms: u64,
    /// The `LockNotChecked` mutation: grant whatever is asked.
    pub(in crate::broker) ignore_holders: bool,
}

impl QueueLocks {
    /// An empty table whose locks live `max_live_ms` after their last renewal.
    #[must_use]
    pub fn new(max_live_ms: u64) -> Self {
        Self { groups: BTreeMap::new(), max_live_ms, ignore_holders: false }
    }

    fn expired(&self, holder: &Holder, now: MonoNanos) -> bool {
        now.millis_since(holder.renewed) > self.max_live_ms
    }

    /// Lock `queues` for `client_id` in `group`; the answer is the subset it now holds: free
    /// queues, its own (renewed) and expired ones it takes over. Queues live-locked by
    /// another client are left out.
    pub fn lock(
        &mut self,
        group: &str,
        client_id: &str,
        queues: &[MessageQueue],
        now: MonoNanos,
    ) -> Vec<MessageQueue> {
        let max_live_ms = if self.ignore_holders { 0 } else { self.max_live_ms };
        let table = self.groups.entry(group.to_owned()).or_default();
        let mut granted = Vec::new();
        for queue in queues {
            let grant = match table.get_mut(queue) {
                Some(holder) if holder.client_id == client_id => {
                    holder.renewed = now;
                    true
                }
                Some(holder) if now.millis_since(holder.renewed) > max_live_ms => {
                    tracing::info!(group, queue = %queue, old = %holder.client_id, new = client_id, "queue lock taken over after expiry");
                    *holder = Holder { client_id: client_id.to_owned(), renewed: now };
                    true
                }
                Some(_) => false,
                None => {
                    table.insert(queue.clone(), Holder { client_id: client_id.to_owned(), renewed: now });
                    true
                }
            };
            if grant && !granted.contains(queue) {
                granted.push(queue.clone());
            }
        }
        granted
    }

    /// Release those of `queues` that `client_id` holds in `group`; others are untouched.
    pub fn unlock(&mut self, group: &str, client_id: &str, queues: &[MessageQueue]) {
        let Some(table) = self.groups.get_mut(group) else { return };
        for queue in queues {
            if table.get(queue).is_some_and(|holder| holder.client_id == client_id) {
                table.remove(queue);
            }
        }
        if table.is_empty() {
            self.groups.remove(group);
        }
    }

    /// The client holding `queue` of `group` now, if any (and not expired).
    #[must_use]
    pub fn holder(&self, group: &str, queue: &MessageQueue, now: MonoNanos) -> Option<&str> {
        let holder = self.groups.get(group)?.get(queue)?;
        (!self.expired(holder, now)).then_some(holder.client_id.as_str())
    }

    /// Whether `group` holds any live lock: it consumes orderly, so a message it re-sends
    /// to its retry topic goes to the dead-letter queue instead (`isLockAllExpired`).
    #[must_use]
    pub fn group_holds_locks(&self, group: &str, now: MonoNanos) -> bool {
        self.groups.get(group).is_some_and(|table| table.values().any(|h| !self.expired(h, now)))
    }

    /// Forget expired locks, so the table does not grow with every queue ever locked.
    pub fn sweep(&mut self, now: MonoNanos) {
        let max_live_ms = self.max_live_ms;
        for table in self.groups.values_mut() {
            table.retain(|_, holder| now.millis_since(holder.renewed) <= max_live_ms);
        }
        self.groups.retain(|_, table| !table.is_empty());
    }
}

impl super::Consumers {
    pub(in crate::broker) fn on_lock_batch(&mut self, now: Now, request: &RemotingCommand) -> Answer {
        let body = lock_body(request)?;
        let granted = self.locks.lock(&body.consumer_group, &body.client_id, &body.mq_set, now.mono);
        let reply = LockBatchResponseBody { lock_ok_mq_set: granted };
        let bytes =
            json::to_vec(&reply, KeyStyle::Fastjson).map_err(|e| Refusal::SystemError(e.to_string()))?;
        Ok(RemotingCommand::response_to(request, ResponseCode::SUCCESS, None).with_body(bytes))
    }

    pub(in crate::broker) fn on_unlock_batch(&mut self, request: &RemotingCommand) -> Answer {
        let body = lock_body(request)?;
        self.locks.unlock(&body.consumer_group, &body.client_id, &body.mq_set);
        Ok(RemotingCommand::response_to(request, ResponseCode::SUCCESS, None))
    }
}

fn lock_body(request: &RemotingCommand) -> Result<LockBatchRequestBody, Refusal> {
    // Both codes have empty headers: everything is in the body.
    let body: LockBatchRequestBody =
        json::from_slice(&request.body).map_err(|e| Refusal::SystemError(format!("bad lock body: {e}")))?;
    if body.mq_set.len() > LOCK_BATCH_MAX {
        return Err(Refusal::SystemError(format!(
            "too many queues in one lock request: {}",
            body.mq_set.len()
        )));
    }
    if body.consumer_group.is_empty() || body.client_id.is_empty() {
        return Err(Refusal::SystemError("lock request without consumerGroup or clientId".into()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: i32) -> MessageQueue {
        MessageQueue::new("T", "b", id)
    }

    fn at(ms: u64) -> MonoNanos {
        MonoNanos(ms * 1_000_000)
    }

    #[test]
    fn a_queue_has_one_holder_until_its_lock_expires() {
        let mut locks = QueueLocks::new(LOCK_MAX_LIVE_MS);
        assert_eq!(locks.lock("g", "c1", &[q(0), q(1)], at(0)), vec![q(0), q(1)]);
        // Another client gets only the free queue.
        assert_eq!(locks.lock("g", "c2", &[q(1), q(2)], at(1_000)), vec![q(2)]);
        assert_eq!(locks.holder("g", &q(1), at(1_000)), Some("c1"));
        // c1 renews q(0) at 50 s; at 61 s q(1) (last renewed at 0) is free for c2, q(0) not.
        assert_eq!(locks.lock("g", "c1", &[q(0)], at(50_000)), vec![q(0)]);
        assert_eq!(locks.lock("g", "c2", &[q(0), q(1)], at(61_000)), vec![q(1)]);
        assert_eq!(locks.holder("g", &q(1), at(61_000)), Some("c2"));
        // Other groups are independent.
        assert_eq!(locks.lock("h", "c3", &[q(0)], at(61_000)), vec![q(0)]);
    }

    #[test]
    fn expiry_is_exactly_after_the_max_live_time() {
        let mut locks = QueueLocks::new(LOCK_MAX_LIVE_MS);
        locks.lock("g", "c1", &[q(0)], at(0));
        assert!(locks.lock("g", "c2", &[q(0)], at(LOCK_MAX_LIVE_MS)).is_empty());
        assert_eq!(locks.lock("g", "c2", &[q(0)], at(LOCK_MAX_LIVE_MS + 1)), vec![q(0)]);
    }

    #[test]
    fn unlock_releases_only_the_callers_queues() {
        let mut locks = QueueLocks::new(LOCK_MAX_LIVE_MS);
        locks.lock("g", "c1", &[q(0)], at(0));
        locks.lock("g", "c2", &[q(1)], at(0));
        locks.unlock("g", "c2", &[q(0), q(1)]);
        assert_eq!(locks.holder("g", &q(0), at(1)), Some("c1"));
        assert_eq!(locks.holder("g", &q(1), at(1)), None);
        assert_eq!(locks.lock("g", "c3", &[q(1)], at(2)), vec![q(1)]);
    }

    #[test]
    fn a_group_holds_locks_until_all_expire_and_sweep_forgets_them() {
        let mut locks = QueueLocks::new(LOCK_MAX_LIVE_MS);
        assert!(!locks.group_holds_locks("g", at(0)));
        locks.lock("g", "c1", &[q(0)], at(0));
        assert!(locks.group_holds_locks("g", at(LOCK_MAX_LIVE_MS)));
        assert!(!locks.group_holds_locks("g", at(LOCK_MAX_LIVE_MS + 1)));
        locks.sweep(at(LOCK_MAX_LIVE_MS + 1));
        assert!(locks.groups.is_empty());
    }

    #[test]
    fn duplicate_queues_in_one_request_are_granted_once() {
        let mut locks = QueueLocks::new(LOCK_MAX_LIVE_MS);
        assert_eq!(locks.lock("g", "c1", &[q(0), q(0)], at(0)), vec![q(0)]);
    }
}
