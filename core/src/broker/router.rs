//! The router: one `match` from request code to the subsystem that serves it.

use super::admin::{Admin, RuntimeView};
use super::send::SendPath;
use super::{Broker, EARLY_REQUESTS_MAX};
use crate::broker::refusal::Refusal;
use crate::io::{ConnId, Now};
use crate::protocol::{RemotingCommand, RequestCode};
use crate::remoting;

impl Broker {
    /// Serve one command from a connection: a response is a name server's; a request goes
    /// to its subsystem, and its reply out, unless the subsystem answers it later.
    pub(super) fn on_command(&mut self, now: Now, conn: ConnId, cmd: RemotingCommand) {
        let shared = &mut self.shared;
        if cmd.is_response() {
            shared.namesrvs.on_response(conn, &cmd);
            return;
        }
        // The store finishes booting (a few disk operations) after the listener opens: a
        // client that connects at once waits rather than being refused.
        if !shared.store.is_ready() && shared.store.failure().is_none() && !shared.store.is_repairing() {
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
            RequestCode::GET_SUBSCRIPTIONGROUP_CONFIG => consumers.on_get_group(&cmd).map(Some),
            RequestCode::GET_MAX_OFFSET => Admin::on_queue_offset(shared, &cmd, |_, max| max).map(Some),
            RequestCode::GET_MIN_OFFSET => Admin::on_queue_offset(shared, &cmd, |min, _| min).map(Some),
            RequestCode::GET_EARLIEST_MSG_STORETIME => Admin::on_earliest_store_time(shared, &cmd).map(Some),
            RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => Admin::on_search_offset(shared, &cmd).map(Some),
            RequestCode::VIEW_MESSAGE_BY_ID => Admin::on_view_message(shared, &cmd).map(Some),
            RequestCode::UPDATE_AND_CREATE_TOPIC => Admin::on_update_topic(shared, now, &cmd).map(Some),
            RequestCode::DELETE_TOPIC_IN_BROKER => {
                Admin::on_delete_topic(shared, consumers, now, &cmd).map(Some)
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
            remoting::reply(&mut self.shared.out, conn, &cmd, &reply);
        }
    }

    /// A connection closed (by the peer, or by us for a malformed stream): forget what was
    /// waiting on it; a name server link is re-dialled.
    pub(super) fn connection_gone(&mut self, now: Now, conn: ConnId) {
        if conn.is_outbound() {
            self.shared.namesrvs.closed(conn, now.mono);
            return;
        }
        self.early.retain(|(waiting, _)| *waiting != conn);
        self.consumers.connection_gone(&mut self.shared, conn);
    }
}
