//! END_TRANSACTION: commit or roll back a half message, and hold an END that cannot be
//! carried out yet instead of refusing it.
//!
//! Clients send END_TRANSACTION oneway, so a refusal is never seen: the transaction stays
//! open and costs the producer a check-back (and the commit `transactionTimeOut` plus up to
//! `transactionCheckInterval` of latency). An END can arrive before the service has read
//! its half message (the producer ends it the moment the send is acknowledged, which may
//! be before its ConsumeQueue entry is readable), while the table is still being replayed,
//! or when one read of the half message fails. Such an END is kept (bounded) and retried
//! as the service reads on; only one that stays impossible is refused.

use std::collections::VecDeque;

use super::table::{EndKind, TransactionTable, HALF_TOPIC};
use super::{half_entry, HalfRecord, READ_PER_WAKE};
use crate::broker::consumers::Consumers;
use crate::broker::refusal::Refusal;
use crate::broker::shared::Shared;
use crate::io::{ConnId, MonoNanos, Now};
use crate::protocol::headers::{CommandHeader, EndTransactionRequestHeader};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::sys_flag;
use crate::protocol::{RemotingCommand, ResponseCode};
use crate::remoting;
use crate::store::{FlushMode, PhysOffset};

/// ENDs held at most; beyond, a held-up END is refused with SYSTEM_BUSY.
const HELD_MAX: usize = 10_000;
/// How long an END is held before it is refused (then the check-back resolves it).
const HELD_MS: u64 = 10_000;

/// An END_TRANSACTION waiting to be carried out.
#[derive(Debug)]
pub(super) struct HeldEnd {
    conn: ConnId,
    request: RemotingCommand,
    since: MonoNanos,
}

/// The ENDs held, oldest first.
#[derive(Debug, Default)]
pub(super) struct HeldEnds(VecDeque<HeldEnd>);

impl HeldEnds {
    /// Whether any END is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why an END was not carried out.
enum NotDone {
    /// It may succeed later: hold it.
    NotYet(Refusal),
    /// It never will.
    Final(Refusal),
}

impl NotDone {
    fn refusal(self) -> Refusal {
        match self {
            Self::NotYet(refusal) | Self::Final(refusal) => refusal,
        }
    }
}

impl super::TransactionService {
    /// END_TRANSACTION: commit or roll back the half message the producer names.
    pub(in crate::broker) fn on_end_transaction(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Option<RemotingCommand> {
        match self.end_transaction(shared, consumers, now, conn, request) {
            Ok(reply) => reply,
            Err(NotDone::NotYet(refusal)) if self.held.0.len() < HELD_MAX => {
                tracing::debug!(code = ?refusal.code(), remark = refusal.remark(), "END_TRANSACTION held");
                self.held.0.push_back(HeldEnd { conn, request: request.clone(), since: now.mono });
                self.wake_soon(now);
                None
            }
            Err(not_done) => {
                let refusal = not_done.refusal();
                tracing::info!(code = ?refusal.code(), remark = refusal.remark(), "END_TRANSACTION refused");
                Some(refusal.reply_to(request))
            }
        }
    }

    /// Try the held ENDs again, in order; refuse those out of tries.
    pub(super) fn retry_held_ends(&mut self, shared: &mut Shared, consumers: &mut Consumers, now: Now) {
        let held = core::mem::take(&mut self.held.0);
        for end in held {
            let refusal = match self.end_transaction(shared, consumers, now, end.conn, &end.request) {
                Ok(None) => continue,
                Ok(Some(reply)) => {
                    remoting::reply(&mut shared.out, end.conn, &end.request, &reply);
                    continue;
                }
                Err(NotDone::NotYet(_)) if now.mono < end.since.plus_millis(HELD_MS) => {
                    self.held.0.push_back(end);
                    continue;
                }
                Err(not_done) => not_done.refusal(),
            };
            let (code, remark) = (refusal.code(), refusal.remark());
            tracing::warn!(?code, remark, "END_TRANSACTION refused after holding it {HELD_MS} ms");
            let reply = refusal.reply_to(&end.request);
            remoting::reply(&mut shared.out, end.conn, &end.request, &reply);
        }
        if !self.held.is_empty() {
            self.wake_soon(now);
        }
    }

    fn end_transaction(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, NotDone> {
        if shared.config.role.is_slave() {
            return Err(NotDone::Final(Refusal::SlaveNotAvailable("a slave cannot end transactions".into())));
        }
        let header = EndTransactionRequestHeader::decode(&request.ext_fields)
            .map_err(|e| NotDone::Final(Refusal::SystemError(e.to_string())))?;
        let mut kind = match header.commit_or_rollback {
            sys_flag::TRANSACTION_NOT_TYPE => return Ok(None),
            sys_flag::TRANSACTION_COMMIT => EndKind::Commit,
            sys_flag::TRANSACTION_ROLLBACK => EndKind::Rollback,
            other => {
                return Err(NotDone::Final(Refusal::SystemError(format!("illegal commitOrRollback {other}"))))
            }
        };
        if shared.store.config().mutated(crate::mutation::Mutation::RollbackAsCommit) {
            kind = EndKind::Commit;
        }
        if !self.ready(shared, consumers) {
            return Err(NotDone::NotYet(Refusal::Busy("transactions are still being recovered".into())));
        }
        // A negative offset from the wire names nothing: it reads as missing.
        let phys = PhysOffset(u64::try_from(header.commit_log_offset).unwrap_or(u64::MAX));
        // A failed read may be a flipped bit on the way: worth another try.
        let record = shared.store.read_record_at(&*shared.reader, phys).map_err(|e| {
            NotDone::NotYet(Refusal::SystemError(format!(
                "half message at {} not found: {e}",
                header.commit_log_offset
            )))
        })?;
        let half = HalfRecord { record };
        let view = half
            .view()
            .ok_or_else(|| NotDone::Final(Refusal::SystemError("not a message record".to_owned())))?;
        let group = properties::find(view.record.properties, keys::PGROUP).unwrap_or_default();
        if view.record.topic != HALF_TOPIC
            || view.head().queue_offset != header.tran_state_table_offset
            || group != header.producer_group.as_bytes()
        {
            return Err(NotDone::Final(Refusal::SystemError(format!(
                "the message at {} is not the half message of group {} at queue offset {}",
                header.commit_log_offset, header.producer_group, header.tran_state_table_offset
            ))));
        }
        let entry = half_entry(&view, u64::try_from(view.head().queue_offset).unwrap_or(0), 0);
        // The table must have read this far (and past the replay) to know the origin; one
        // budget of reading now, else the END waits for the service to read on.
        let behind = |table: &TransactionTable| table.half_next() <= entry.offset || !table.replayed();
        if self.table.as_ref().is_some_and(behind) {
            self.read_half_queue(shared, now, READ_PER_WAKE);
        }
        if self.table.as_ref().is_some_and(behind) {
            return Err(NotDone::NotYet(Refusal::Busy("the half queue is not read that far yet".into())));
        }
        let open = self.table.as_ref().is_some_and(|t| t.get(entry.origin).is_some());
        let durable_end = if open {
            let (_, end) = self
                .append_end(shared, now, &view, entry.origin, kind)
                .map_err(|e| NotDone::Final(Refusal::from(e)))?;
            end
        } else {
            // Ended already (a repeated commit, a check's answer after the producer's own):
            // nothing more is stored.
            tracing::debug!(origin = entry.origin, kind = kind.as_str(), "transaction already ended");
            PhysOffset(0)
        };
        let reply = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        let flush = matches!(shared.store.config().flush_mode, FlushMode::Sync);
        let wait = crate::broker::send::durable::Wait { flush, slave: true };
        shared.reply_when_durable(now, conn, request, reply, durable_end, wait);
        Ok(None)
    }
}
