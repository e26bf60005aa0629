//! Check-back: every `transactionCheckInterval` the open transactions older than
//! `transactionTimeOut` get a copy with their check count raised, and once that copy is
//! durable CHECK_TRANSACTION_STATE goes to a live producer of the group; after
//! `transactionCheckMax` checks (or the age limit) the transaction is discarded.

use bytes::BytesMut;

use super::table::{EndKind, HalfCopy, OpenTx, CHECK_MAX_TOPIC, HALF_TOPIC};
use super::{HalfRecord, TransactionService, CHECKS_PER_WAKE};
use crate::broker::consumers::Consumers;
use crate::broker::shared::{copy_request, real_destination, Shared};
use crate::io::Now;
use crate::protocol::message::message_id::offset_message_id;
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::encode_record;
use crate::protocol::{ExtFields, RemotingCommand, RequestCode};

impl TransactionService {
    /// One check round; true if it yielded with more to look at.
    pub(super) fn check_round(&mut self, shared: &mut Shared, consumers: &mut Consumers, now: Now) -> bool {
        let config = shared.config.transaction;
        let log_min = shared.store.min_phys();
        let Some(table) = self.table.as_mut() else { return false };
        let forgotten = table.forget_deleted(log_min);
        if forgotten > 0 {
            tracing::warn!(
                forgotten,
                "open transactions whose half messages retention deleted; forgotten unresolved"
            );
        }
        let from = self.check_from.take().unwrap_or(0);
        let mut todo: Vec<(u64, OpenTx)> = Vec::new();
        let mut yielded = None;
        for (origin, tx) in table.iter_open().filter(|(origin, _)| *origin >= from) {
            if todo.len() >= CHECKS_PER_WAKE {
                yielded = Some(origin);
                break;
            }
            if tx.check_due(now.mono) {
                todo.push((origin, tx.clone()));
            }
        }
        for (origin, tx) in todo {
            let age = tx.stored_at.millis_until(now.wall);
            if tx.checks >= config.check_max || age > config.max_age_ms {
                self.discard(shared, now, origin, &tx);
            } else {
                self.copy_for_check(shared, consumers, now, origin, &tx);
            }
        }
        self.check_from = yielded;
        yielded.is_some()
    }

    /// Re-append `tx`'s newest half message with its check count raised; the check is sent
    /// once the copy is durable. Nothing happens while no producer of its group is live.
    fn copy_for_check(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        origin: u64,
        tx: &OpenTx,
    ) {
        if consumers.clients.producer_conns(&tx.group).is_empty() {
            tracing::debug!(origin, group = tx.group, "no live producer to check a transaction with");
            return;
        }
        let HalfCopy { phys, size, .. } = tx.latest;
        let Ok(record) = shared.store.read_record(&*shared.reader, phys, size) else {
            tracing::warn!(origin, %phys, "half message unreadable; check postponed");
            return;
        };
        let half = HalfRecord { record };
        let Some(view) = half.view() else { return };
        let mut props = properties::without(
            view.record.properties,
            &[keys::CRC32, keys::TRANSACTION_CHECK_TIMES, keys::TRAN_PREPARED_QUEUE_OFFSET],
        );
        properties::push(&mut props, keys::TRANSACTION_CHECK_TIMES, &(tx.checks + 1).to_string());
        properties::push(&mut props, keys::TRAN_PREPARED_QUEUE_OFFSET, &origin.to_string());
        match shared.store.append(now, &copy_request(&view, HALF_TOPIC, 0, &props)) {
            Ok(appended) => {
                let copy = HalfCopy {
                    offset: appended.queue_offset.map_or(0, |q| q.0),
                    phys: appended.phys_offset,
                    size: appended.size,
                };
                if let Some(table) = self.table.as_mut() {
                    table.copied(origin, copy, appended.end());
                }
            }
            Err(error) => tracing::warn!(origin, %error, "check copy not stored; retried next round"),
        }
    }

    /// Send CHECK_TRANSACTION_STATE for the durable copy at `offset` of `origin`.
    pub(super) fn send_check(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        origin: u64,
        offset: u64,
    ) {
        let Some(tx) = self.table.as_ref().and_then(|t| t.get(origin)).cloned() else { return };
        if tx.latest.offset != offset {
            return;
        }
        let conns = consumers.clients.producer_conns(&tx.group);
        let Some(conn) = conns.get(self.producer_cursor % conns.len().max(1)).copied() else {
            tracing::debug!(origin, group = tx.group, "producer gone before its check was sent");
            return;
        };
        self.producer_cursor = self.producer_cursor.wrapping_add(1);
        let HalfCopy { phys, size, .. } = tx.latest;
        let Ok(record) = shared.store.read_record(&*shared.reader, phys, size) else { return };
        let half = HalfRecord { record };
        let Some(view) = half.view() else { return };
        let Some((topic, queue)) = real_destination(view.record.properties) else { return };
        // The check shows the producer the message as it will be delivered: its real topic
        // and queue, not the half topic's.
        let mut message = view.record;
        message.topic = topic;
        message.head.queue_id = queue;
        let mut body = BytesMut::new();
        if encode_record(&mut body, &message).is_err() {
            return;
        }
        let unique = properties::find(view.record.properties, keys::UNIQ_KEY)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let phys_i = crate::protocol::wire_long(phys.0);
        let ext: ExtFields = [
            ("topic", topic.to_owned()),
            ("tranStateTableOffset", offset.to_string()),
            ("commitLogOffset", phys_i.to_string()),
            ("msgId", unique.clone()),
            ("transactionId", unique),
            ("offsetMsgId", offset_message_id(shared.config.advertised_addr, phys_i)),
            ("bname", shared.config.broker_name.clone()),
        ]
        .into_iter()
        .collect();
        let mut cmd = RemotingCommand::request(RequestCode::CHECK_TRANSACTION_STATE, shared.opaque(), ext)
            .with_body(body.freeze());
        cmd.flag |= crate::protocol::FLAG_ONEWAY;
        crate::remoting::send(&mut shared.out, conn, &cmd);
        self.stats.checks_sent += 1;
        tracing::debug!(origin, offset, checks = tx.checks, "transaction check sent");
    }

    /// Discard a transaction after its last check: it goes to `TRANS_CHECK_MAX_TIME_TOPIC`.
    fn discard(&mut self, shared: &mut Shared, now: Now, origin: u64, tx: &OpenTx) {
        let HalfCopy { phys, size, .. } = tx.latest;
        let Ok(record) = shared.store.read_record(&*shared.reader, phys, size) else { return };
        let half = HalfRecord { record };
        let Some(view) = half.view() else { return };
        // Operators browse discarded transactions there (one queue, like RocketMQ's).
        shared.ensure_group_topic(now, CHECK_MAX_TOPIC);
        match self.append_end(shared, now, &view, origin, EndKind::Discard) {
            Ok(_) => {
                tracing::warn!(
                    origin,
                    checks = tx.checks,
                    group = tx.group,
                    "transaction discarded unresolved"
                );
            }
            Err(error) => tracing::warn!(origin, %error, "discard not stored; retried next round"),
        }
    }
}
