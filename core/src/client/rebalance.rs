//! One rebalance step (`RebalanceImpl.updateProcessQueueTableInRebalance`) as a pure
//! function: given the queues a consumer owns and the ones just allocated to it, which to
//! give up and which to take.

use std::collections::BTreeSet;

use crate::protocol::body::MessageQueue;

/// What a rebalance changes for one consumer and topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebalancePlan {
    /// Owned queues no longer allocated: stop pulling, commit their offsets, (orderly)
    /// unlock them at the broker.
    pub removed: Vec<MessageQueue>,
    /// Allocated queues not yet owned: (orderly: lock first) compute a start offset and pull.
    pub added: Vec<MessageQueue>,
}

impl RebalancePlan {
    /// Whether nothing changes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

/// The plan for `topic`: `owned` may hold queues of other topics, which are left alone, and
/// so may `allocated` (a fixed `CONFIG` list names queues of every topic it covers).
#[must_use]
pub fn plan<'a>(
    topic: &str,
    owned: impl IntoIterator<Item = &'a MessageQueue>,
    allocated: &[MessageQueue],
) -> RebalancePlan {
    let owned: BTreeSet<&MessageQueue> = owned.into_iter().filter(|q| q.topic == topic).collect();
    let allocated: BTreeSet<&MessageQueue> = allocated.iter().filter(|q| q.topic == topic).collect();
    RebalancePlan {
        removed: owned.difference(&allocated).map(|q| (*q).clone()).collect(),
        added: allocated.difference(&owned).map(|q| (*q).clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_removes_what_went_elsewhere_and_adds_what_is_new() {
        let q = |topic: &str, id| MessageQueue::new(topic, "b", id);
        let owned = [q("T", 0), q("T", 1), q("U", 0)];
        let plan = plan("T", &owned, &[q("T", 1), q("T", 2)]);
        assert_eq!(plan.removed, vec![q("T", 0)]);
        assert_eq!(plan.added, vec![q("T", 2)]);
        assert!(super::plan("T", &owned[..2], &owned[..2]).is_empty());
        // Allocated queues of another topic are not this topic's business.
        assert!(super::plan("U", &owned, &[q("T", 3), q("U", 0)]).is_empty());
    }
}
