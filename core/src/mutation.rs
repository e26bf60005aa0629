//! Deliberate bugs the simulator switches on, one at a time, to prove its checkers catch
//! them (a checker that never fails proves nothing). Code asks through
//! [`StoreConfig::mutated`](crate::store::StoreConfig::mutated) (the controller through
//! [`switched_on`]), which only a `--cfg madsim` build can answer yes: a production build
//! cannot switch a mutation on, and the compiler drops every mutated branch.

/// One deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// SYNC_FLUSH sends are acknowledged before the fsync that covers them.
    AckBeforeFsync,
    /// Recovery accepts records without checking their CRCs.
    SkipCrcOnRecovery,
    /// Dispatch writes one ConsumeQueue entry twice, shifting the queue by one.
    CqOffByOne,
    /// A held pull is dropped, unanswered, when its message arrives.
    DropHeldPull,
    /// The consumer commits a pulled batch's offset before processing it (a client bug the
    /// simulated consumer can carry).
    CommitBeforeProcess,
    /// LOCK_BATCH_MQ grants every queue asked for, whoever holds it.
    LockNotChecked,
    /// CONSUMER_SEND_MSG_BACK sends to the DLQ one retry late.
    DlqThresholdOffByOne,
    /// The scheduler drops due retry messages instead of storing them in the retry topic.
    DropRetryMessage,
    /// END_TRANSACTION treats a rollback as a commit.
    RollbackAsCommit,
    /// Timed and delayed messages are delivered a second before they are due.
    DeliverEarly,
    /// The delay scheduler loses a level's progress on restart and starts it over.
    LoseDelayOffset,
    /// Retention deletes the oldest segment at every check, however young its messages.
    DeleteInsideHorizon,
    /// A SYNC_MASTER answers a send before its slaves (its SyncStateSet) hold it.
    AckBeforeReplica,
    /// The controller elects among every alive replica, those out of sync first.
    ElectOutOfSync,
    /// A replica rejoining a new master keeps the tail the master's history lacks.
    SkipTruncation,
    /// A broker made master goes on in the epoch it had instead of beginning the
    /// controller's, so two masters write in one epoch.
    StaleEpochWrite,
    /// A controller restarting ignores its Raft log and rejoins its group empty.
    ForgetControllerLog,
    /// Recovery keeps the newest index file's slots from its seal but replays none of the
    /// entries after it, so keys indexed since are lost.
    IndexSkipsReplay,
    /// Revive reads acks but does not apply them: acknowledged popped messages come back.
    PopAckLostOnRevive,
    /// A FIFO queue is read again while its batch is still out.
    PopFifoUnblockedEarly,
}

/// Whether `setting` switches `mutation` on: only a `--cfg madsim` build can answer yes, so a
/// production build drops every mutated branch.
#[must_use]
pub fn switched_on(setting: Option<Mutation>, mutation: Mutation) -> bool {
    #[cfg(madsim)]
    return setting == Some(mutation);
    #[cfg(not(madsim))]
    {
        let _ = (setting, mutation);
        false
    }
}

impl Mutation {
    /// Every mutation, in a fixed order.
    pub const ALL: [Mutation; 20] = [
        Mutation::AckBeforeFsync,
        Mutation::SkipCrcOnRecovery,
        Mutation::CqOffByOne,
        Mutation::DropHeldPull,
        Mutation::CommitBeforeProcess,
        Mutation::LockNotChecked,
        Mutation::DlqThresholdOffByOne,
        Mutation::DropRetryMessage,
        Mutation::RollbackAsCommit,
        Mutation::DeliverEarly,
        Mutation::LoseDelayOffset,
        Mutation::DeleteInsideHorizon,
        Mutation::AckBeforeReplica,
        Mutation::ElectOutOfSync,
        Mutation::SkipTruncation,
        Mutation::StaleEpochWrite,
        Mutation::ForgetControllerLog,
        Mutation::IndexSkipsReplay,
        Mutation::PopAckLostOnRevive,
        Mutation::PopFifoUnblockedEarly,
    ];

    /// The name used on the command line (`SIM_MUTATION=<name>`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Mutation::AckBeforeFsync => "ack_before_fsync",
            Mutation::SkipCrcOnRecovery => "skip_crc_on_recovery",
            Mutation::CqOffByOne => "cq_off_by_one",
            Mutation::DropHeldPull => "drop_held_pull",
            Mutation::CommitBeforeProcess => "commit_offset_before_processing",
            Mutation::LockNotChecked => "lock_not_checked",
            Mutation::DlqThresholdOffByOne => "dlq_threshold_off_by_one",
            Mutation::DropRetryMessage => "drop_retry_message",
            Mutation::RollbackAsCommit => "rollback_as_commit",
            Mutation::DeliverEarly => "deliver_early",
            Mutation::LoseDelayOffset => "lose_delay_offset",
            Mutation::DeleteInsideHorizon => "delete_inside_horizon",
            Mutation::AckBeforeReplica => "ack_before_replica",
            Mutation::ElectOutOfSync => "elect_out_of_sync",
            Mutation::SkipTruncation => "skip_truncation",
            Mutation::StaleEpochWrite => "stale_epoch_write",
            Mutation::ForgetControllerLog => "forget_controller_log",
            Mutation::IndexSkipsReplay => "index_skips_replay",
            Mutation::PopAckLostOnRevive => "pop_ack_lost_on_revive",
            Mutation::PopFifoUnblockedEarly => "pop_fifo_unblocked_early",
        }
    }

    /// Whether only the consumer-group scenario exercises it (rebalancing, locks, retries).
    #[must_use]
    pub fn needs_groups(self) -> bool {
        matches!(self, Mutation::LockNotChecked | Mutation::DlqThresholdOffByOne | Mutation::DropRetryMessage)
    }

    /// Whether only the controller-mode scenario exercises it (replication, elections,
    /// the controllers' log).
    #[must_use]
    pub fn needs_controllers(self) -> bool {
        matches!(
            self,
            Mutation::AckBeforeReplica
                | Mutation::ElectOutOfSync
                | Mutation::SkipTruncation
                | Mutation::StaleEpochWrite
                | Mutation::ForgetControllerLog
        )
    }

    /// Whether only the plain cluster seeds exercise it (the pop workload runs there).
    #[must_use]
    pub fn needs_cluster(self) -> bool {
        matches!(self, Mutation::PopAckLostOnRevive | Mutation::PopFifoUnblockedEarly)
    }

    /// The mutation called `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Mutation> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}
