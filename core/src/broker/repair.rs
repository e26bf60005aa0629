//! Repair in place: after a failed disk operation the store refuses writes, lets what is in
//! flight drain, and the broker swaps in a store recovered from disk exactly as a restart
//! would, with the CommitLog cut where the store last knew it good. The process, its
//! connections, its clients and its name-server registration stay; only what was not
//! acknowledged is lost (or, after a failed fsync under ASYNC_FLUSH, what was not synced).

use super::shared::Shared;
use crate::io::Now;
use crate::store::PhysOffset;

/// A store rebuilt in place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rebuilt {
    /// Where the store last knew its CommitLog good.
    pub(super) cut: PhysOffset,
    /// Where the rebuilt CommitLog ends.
    pub(super) recovered_end: PhysOffset,
    /// Replies failed because their records were past the end.
    pub(super) replies_failed: usize,
}

impl Shared {
    /// Rebuild the store if it is repairing and ready to be rebuilt; `None` if it was not.
    pub(super) fn rebuild_store_if_due(&mut self, now: Now) -> Option<Rebuilt> {
        let cut = self.store.repair_cut()?;
        // Sends past the cut are lost whatever the rebuild finds: answer them now, not at
        // the rebuild, which may wait for a disk that keeps failing.
        self.replies.fail_past(cut, &mut self.out);
        if !self.store.repair_due(now.mono) {
            return None;
        }
        let (store, report) = self.store.rebuild(&*self.reader, now)?;
        self.store = store;
        let recovered_end = PhysOffset(report.recovered_end);
        let replies_failed = self.replies.fail_past(recovered_end, &mut self.out);
        self.stats.store_repairs += 1;
        Some(Rebuilt { cut, recovered_end, replies_failed })
    }
}
