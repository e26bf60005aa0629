//! The router: one `match` from request code to the subsystem that serves it.

use super::admin::{Admin, RuntimeView};
use super::consumers::json_ok;
use super::metadata_sync;
use super::send::SendPath;
use super::{Broker, EARLY_REQUESTS_MAX};
use crate::broker::refusal::Refusal;
use crate::io::{ConnId, Now};
use crate::protocol::{RemotingCommand, RequestCode};
use crate::remoting::{self, Received};

impl Broker {
    /// Serve one command from a connection: a response is a name server's; a request goes
    /// to its subsystem, and its reply out, unless the subsystem answers it later.
    pub(super) fn on_command(&mut self, now: Now, conn: ConnId, cmd: RemotingCommand) {
        if self.controller.owns(conn) {
            let change = if cmd.is_response() {
                self.controller.on_response(&mut self.shared, now, &cmd, self.replica_id)
            } else if cmd.request_code() == RequestCode::NOTIFY_BROKER_ROLE_CHANGED {
                let reply = RemotingCommand::response_to(&cmd, crate::protocol::ResponseCode::SUCCESS, None);
                remoting::reply(&mut self.shared.out, conn, &cmd, &reply);
                self.controller.on_notice(&mut self.shared, &cmd, self.replica_id)
            } else {
                remoting::reply(&mut self.shared.out, conn, &cmd, &remoting::not_supported(&cmd));
                None
            };
            if let Some(change) = change {
                self.take_role(now, change);
            }
            return;
        }
        let shared = &mut self.shared;
        if cmd.is_response() {
            if self.metadata_sync.owns(conn) {
                if let Some(synced) = self.metadata_sync.on_response(conn, &cmd) {
                    self.apply_synced(now, synced);
                }
            } else if conn.is_outbound() {
                let named = shared.namesrvs.on_response(conn, &cmd);
                // In controller mode only the controller names the master: a name server's
                // route may still name a deposed one, whose history would cut this log back.
                if shared.config.in_controller_mode() {
                    return;
                }
                if let Some(master) = named.replication {
                    self.ha_client.learned(shared, now, master);
                }
                if let Some(master) = named.remoting {
                    self.metadata_sync.learned(shared, now, master);
                }
            } else {
                self.consumers.on_client_response(shared, conn, &cmd);
            }
            return;
        }
        // The store finishes booting (a few disk operations) after the listener opens: a
        // client that connects at once waits rather than being refused.
        if shared.booting() && shared.store.failure().is_none() && !shared.store.is_repairing() {
            if self.early.len() < EARLY_REQUESTS_MAX {
                self.early.push_back((conn, cmd));
            } else {
                let reply = Refusal::Busy("broker is starting".into()).reply_to(&cmd);
                remoting::reply(&mut shared.out, conn, &cmd, &reply);
            }
            return;
        }
        shared.topics_before_request = shared.metadata.topics.changes();
        let consumers = &mut self.consumers;
        let answer = match cmd.request_code() {
            // Checked before a send can create its topic; the store refuses a slave's own
            // writes anyway.
            RequestCode::SEND_MESSAGE
            | RequestCode::SEND_MESSAGE_V2
            | RequestCode::SEND_BATCH_MESSAGE
            | RequestCode::CONSUMER_SEND_MSG_BACK
                if shared.config.role.is_slave() =>
            {
                Err(Refusal::from(crate::store::StoreError::Replica))
            }
            // Nothing is written in a master's epoch before the epoch is recorded (moments
            // after a start or a rebuild; longer only while the disk refuses the file).
            RequestCode::SEND_MESSAGE
            | RequestCode::SEND_MESSAGE_V2
            | RequestCode::SEND_BATCH_MESSAGE
            | RequestCode::CONSUMER_SEND_MSG_BACK
            | RequestCode::END_TRANSACTION
                if !shared.epoch_durable() =>
            {
                Err(Refusal::ServiceNotAvailable(
                    "the master's new epoch is not recorded yet; retry shortly".into(),
                ))
            }
            RequestCode::SEND_MESSAGE
            | RequestCode::SEND_MESSAGE_V2
            | RequestCode::SEND_BATCH_MESSAGE
            | RequestCode::CONSUMER_SEND_MSG_BACK
            | RequestCode::END_TRANSACTION
                if shared.lease_lapsed =>
            {
                Err(Refusal::ServiceNotAvailable(
                    "this master has not heard from its controller lately and may have been replaced; retry shortly"
                        .into(),
                ))
            }
            RequestCode::SEND_MESSAGE | RequestCode::SEND_MESSAGE_V2 | RequestCode::SEND_BATCH_MESSAGE
                if shared.in_sync_replicas_short().is_some() =>
            {
                Err(Refusal::SystemError(shared.in_sync_replicas_short().unwrap_or_default()))
            }
            RequestCode::SEND_MESSAGE | RequestCode::SEND_MESSAGE_V2 | RequestCode::SEND_BATCH_MESSAGE => {
                Ok(self.sends.on_send(shared, consumers, now, conn, &cmd))
            }
            RequestCode::CONSUMER_SEND_MSG_BACK => {
                Ok(SendPath::on_send_back(shared, consumers, now, conn, &cmd))
            }
            RequestCode::END_TRANSACTION => {
                Ok(self.transactions.on_end_transaction(shared, consumers, now, conn, &cmd))
            }
            RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE => {
                Ok(consumers.on_pull(shared, now, conn, cmd.clone()))
            }
            // Pops and acks write checkpoints and acks: a master's, in a recorded epoch.
            RequestCode::POP_MESSAGE
            | RequestCode::ACK_MESSAGE
            | RequestCode::BATCH_ACK_MESSAGE
            | RequestCode::CHANGE_MESSAGE_INVISIBLETIME
                if shared.config.role.is_slave() =>
            {
                Err(Refusal::from(crate::store::StoreError::Replica))
            }
            RequestCode::POP_MESSAGE
            | RequestCode::ACK_MESSAGE
            | RequestCode::BATCH_ACK_MESSAGE
            | RequestCode::CHANGE_MESSAGE_INVISIBLETIME
                if !shared.epoch_durable() || shared.lease_lapsed =>
            {
                Err(Refusal::ServiceNotAvailable("this master cannot write now; retry shortly".into()))
            }
            RequestCode::RECALL_MESSAGE if shared.config.role.is_slave() => {
                Err(Refusal::SlaveNotAvailable("recall failed, broker service not available".into()))
            }
            RequestCode::RECALL_MESSAGE if !shared.epoch_durable() || shared.lease_lapsed => {
                Err(Refusal::ServiceNotAvailable("recall failed, this master cannot write now".into()))
            }
            RequestCode::RECALL_MESSAGE => self.timers.on_recall(shared, now, conn, &cmd),
            RequestCode::POP_MESSAGE => Ok(self.pop.on_pop(shared, consumers, now, conn, cmd.clone())),
            RequestCode::NOTIFICATION => Ok(self.pop.on_notification(shared, consumers, now, conn, cmd.clone())),
            RequestCode::ACK_MESSAGE => self.pop.on_ack(shared, consumers, now, conn, &cmd),
            RequestCode::BATCH_ACK_MESSAGE => self.pop.on_batch_ack(shared, consumers, now, conn, &cmd),
            RequestCode::CHANGE_MESSAGE_INVISIBLETIME => self.pop.on_change_invisible(shared, now, conn, &cmd),
            RequestCode::HEART_BEAT => consumers.on_heartbeat(shared, now, conn, &cmd).map(Some),
            RequestCode::UNREGISTER_CLIENT => consumers.on_unregister_client(shared, conn, &cmd).map(Some),
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => consumers.on_consumer_list(&cmd).map(Some),
            RequestCode::LOCK_BATCH_MQ => consumers.on_lock_batch(now, &cmd).map(Some),
            RequestCode::UNLOCK_BATCH_MQ => consumers.on_unlock_batch(&cmd).map(Some),
            RequestCode::QUERY_CONSUMER_OFFSET => consumers.on_query_offset(shared, &cmd).map(Some),
            RequestCode::UPDATE_CONSUMER_OFFSET => consumers.on_update_offset(&cmd).map(Some),
            RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
                consumers.on_update_group(shared, now, &cmd).map(Some)
            }
            RequestCode::DELETE_SUBSCRIPTIONGROUP => consumers.on_delete_group(shared, now, &cmd).map(Some),
            RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => consumers.on_get_all_groups(&cmd).map(Some),
            RequestCode::GET_ALL_TOPIC_CONFIG => {
                metadata_sync::serve(&cmd, shared.topics.wrapper()).map(Some)
            }
            RequestCode::GET_ALL_CONSUMER_OFFSET => metadata_sync::serve(&cmd, &consumers.offsets).map(Some),
            RequestCode::GET_ALL_DELAY_OFFSET => metadata_sync::serve(&cmd, self.delay.offsets()).map(Some),
            RequestCode::GET_TIMER_CHECK_POINT => {
                metadata_sync::serve(&cmd, self.timers.checkpoint()).map(Some)
            }
            RequestCode::GET_SUBSCRIPTIONGROUP_CONFIG => consumers.on_get_group(&cmd).map(Some),
            RequestCode::GET_MAX_OFFSET => Admin::on_queue_offset(shared, &cmd, |_, max| max).map(Some),
            RequestCode::GET_MIN_OFFSET => Admin::on_queue_offset(shared, &cmd, |min, _| min).map(Some),
            RequestCode::GET_EARLIEST_MSG_STORETIME => Admin::on_earliest_store_time(shared, &cmd).map(Some),
            RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => Admin::on_search_offset(shared, &cmd).map(Some),
            RequestCode::VIEW_MESSAGE_BY_ID => Admin::on_view_message(shared, &cmd).map(Some),
            RequestCode::QUERY_MESSAGE => Admin::on_query_message(shared, &cmd).map(Some),
            RequestCode::UPDATE_AND_CREATE_TOPIC => Admin::on_update_topic(shared, now, &cmd).map(Some),
            RequestCode::DELETE_TOPIC_IN_BROKER => {
                Admin::on_delete_topic(shared, consumers, now, &cmd).map(Some)
            }
            RequestCode::GET_TOPIC_STATS_INFO => Admin::on_topic_stats(shared, &cmd).map(Some),
            RequestCode::GET_CONSUME_STATS => Admin::on_consume_stats(shared, consumers, &cmd).map(Some),
            RequestCode::GET_CONSUMER_CONNECTION_LIST => {
                Admin::on_consumer_connections(shared, consumers, &cmd).map(Some)
            }
            RequestCode::GET_PRODUCER_CONNECTION_LIST => {
                Admin::on_producer_connections(shared, consumers, &cmd).map(Some)
            }
            RequestCode::GET_CONSUMER_RUNNING_INFO | RequestCode::CONSUME_MESSAGE_DIRECTLY => {
                consumers.on_relay(shared, now, conn, &cmd)
            }
            RequestCode::GET_BROKER_CONFIG => self.admin.on_get_broker_config(shared, &cmd).map(Some),
            RequestCode::UPDATE_BROKER_CONFIG => {
                self.admin.on_update_broker_config(shared, consumers, now, &cmd).map(Some)
            }
            RequestCode::INVOKE_BROKER_TO_RESET_OFFSET => consumers.on_reset_offset(shared, &cmd).map(Some),
            RequestCode::QUERY_TOPIC_CONSUME_BY_WHO => Admin::on_consume_by_who(consumers, &cmd).map(Some),
            RequestCode::GET_BROKER_HA_STATUS => {
                let info = self.replication.ha_status(shared, &self.ha_client, now);
                Ok(Some(json_ok(&cmd, &info)))
            }
            RequestCode::GET_BROKER_EPOCH_CACHE => {
                Ok(Some(json_ok(&cmd, &super::replication::epoch_cache(shared))))
            }
            RequestCode::GET_BROKER_RUNTIME_INFO => {
                let mut progress = self.delay.progress(&shared.store);
                let timers = self.timers.progress(&shared.store, now.wall);
                progress.extend(timers.into_iter().map(|(key, value)| (key.to_owned(), value)));
                let counters = super::rate_counters(&shared.stats, &self.timers);
                let view = RuntimeView { counters, progress, consumers };
                Ok(Some(self.admin.on_runtime_info(shared, now, &cmd, view)))
            }
            _ => Ok(Some(remoting::not_supported(&cmd))),
        };
        let reply = answer.unwrap_or_else(|refusal| Some(refusal.reply_to(&cmd)));
        if let Some(reply) = reply {
            if !cmd.is_oneway() {
                let waited = now.mono.0.saturating_sub(self.shared.request_received.0);
                self.shared.traffic.answered(cmd.code, reply.code, false, waited);
            }
            remoting::reply(&mut self.shared.out, conn, &cmd, &reply);
        }
    }

    /// Serve what came on remoting connection `conn`: commands, or the stream's end.
    pub(super) fn on_received(
        &mut self,
        now: Now,
        conn: ConnId,
        received: impl IntoIterator<Item = Received>,
    ) {
        for received in received {
            match received {
                Received::Command(cmd) => self.on_command(now, conn, cmd),
                Received::Closed(_) => self.connection_gone(now, conn),
            }
        }
    }

    /// A connection closed (by the peer, or by us for a malformed stream): forget what was
    /// waiting on it; a name server link is re-dialled.
    pub(super) fn connection_gone(&mut self, now: Now, conn: ConnId) {
        if self.controller.owns(conn) {
            self.controller.closed(now, conn);
            return;
        }
        if self.metadata_sync.owns(conn) {
            self.metadata_sync.closed(now, conn);
            return;
        }
        if conn.is_outbound() {
            self.shared.namesrvs.closed(conn, now.mono);
            return;
        }
        self.early.retain(|(waiting, _)| *waiting != conn);
        self.pop.connection_gone(conn);
        self.consumers.connection_gone(&mut self.shared, conn);
    }
}
