//! Repair in place: after a failed disk operation the store refuses writes, lets what is in
//! flight drain, and the broker swaps in a store recovered from disk exactly as a restart
//! would, with the CommitLog cut where the store last knew it good. The process, its
//! connections, its clients and its name-server registration stay; only what was not
//! acknowledged is lost (or, after a failed fsync under ASYNC_FLUSH, what was not synced).

use super::{timed_delivery, transactional, Broker, Scheduler};
use crate::io::Now;

impl Broker {
    /// Rebuild the store if it is repairing and ready to be rebuilt; else nothing.
    pub(super) fn repair_store_if_due(&mut self, now: Now) {
        let Some(cut) = self.store.repair_cut().map(|c| c.0) else { return };
        // Sends past the cut are lost whatever the rebuild finds: answer them now, not at
        // the rebuild, which may wait for a disk that keeps failing.
        self.fail_pending_past(cut);
        if !self.store.repair_due(now.mono) {
            return;
        }
        let Some((store, report)) = self.store.rebuild(&*self.reader, now) else { return };
        self.store = store;
        let end = report.recovered_end;
        let failed = self.fail_pending_past(end);
        // The services that read the log from a position start again from where their
        // settled progress is (it only covers what reached the cut), as after a restart:
        // their reads, wheels and deliveries in flight refer to the replaced store.
        let delay_offsets = self.scheduler.offsets().clone();
        self.scheduler = Scheduler::new(self.config.delay_levels.clone(), delay_offsets, now);
        let timer_checkpoint = *self.timers.checkpoint();
        self.timers =
            timed_delivery::TimedDelivery::new(timer_checkpoint, self.config.timer_precision_ms, now);
        let stats = self.transactions.stats;
        self.transactions = transactional::TransactionService::new(
            now,
            self.config.transaction.check_interval_ms,
            self.store.write_pos().0,
        );
        self.transactions.stats = stats;
        self.metadata.delay_offsets.mark_dirty();
        self.metadata.timer_checkpoint.mark_dirty();
        self.stats.store_repairs += 1;
        tracing::warn!(
            cut,
            recovered_end = end,
            replies_failed = failed,
            "store rebuilt in place after a disk error; writes resume once its fix-ups are synced"
        );
    }
}
