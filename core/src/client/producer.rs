//! The producer side of the client (`DefaultMQProducerImpl.sendDefaultImpl`): a send picks
//! a queue from the topic's route, goes to that broker group's master, and on a retryable
//! failure is tried again on another broker until its attempts or its time run out. The
//! message id (`UNIQ_KEY`) is stamped once, so every attempt carries the same id and a
//! consumer can tell a retried duplicate. A send to a topic with no route yet waits for it;
//! a topic the name servers do not know borrows `TBW102`'s route, so the broker auto-creates
//! it, as RocketMQ's producer does.

use super::machine::{
    CallTag, Client, ClientEvent, SendError, SendId, SendResult, SendStatus, DEFAULT_TOPIC,
};
use super::queue_choice::select_by_key;
use super::route::{master_addr, publish_queues};
use super::transport::CallError;
use crate::io::{MonoNanos, Now};
use crate::protocol::body::{MessageQueue, TopicRouteData};
use crate::protocol::client_requests::{send_message, OutgoingMessage};
use crate::protocol::headers::{CommandHeader, SendMessageResponseHeader};
use crate::protocol::message::properties::keys;
use crate::protocol::{RemotingCommand, ResponseCode};

/// How soon a send with no route anywhere asks the name servers again.
const ROUTE_RETRY_MS: u64 = 500;
/// Queues an auto-created topic gets (`defaultTopicQueueNums`).
const DEFAULT_TOPIC_QUEUES: i32 = 4;

/// Which queue a send goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTarget {
    /// Round robin, avoiding failing brokers; retried elsewhere on failure.
    Any,
    /// The queue this key hashes to (ordered messages): never moved to another queue.
    Key(i32),
    /// Exactly this queue.
    Queue(MessageQueue),
}

/// One send, as the application asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// Producer group.
    pub group: String,
    /// The message.
    pub message: OutgoingMessage,
    /// Where it goes.
    pub target: SendTarget,
}

/// A send not finished yet.
#[derive(Debug, Clone)]
pub(super) struct PendingSend {
    request: SendRequest,
    unique_id: String,
    attempts: u32,
    last_failed: Option<String>,
    last_error: String,
    deadline: MonoNanos,
    /// Waiting for a route (no attempt in flight).
    parked: bool,
    /// Parked with no route known anywhere: ask the name servers again then.
    ask_again: Option<MonoNanos>,
    /// The request header's sys flag.
    sys_flag: i32,
}

/// Response codes after which RocketMQ tries another broker.
fn retryable(code: ResponseCode) -> bool {
    matches!(
        code,
        ResponseCode::TOPIC_NOT_EXIST
            | ResponseCode::SERVICE_NOT_AVAILABLE
            | ResponseCode::SYSTEM_ERROR
            | ResponseCode::SYSTEM_BUSY
            | ResponseCode::NO_PERMISSION
    )
}

impl Client {
    /// Send a message; the outcome arrives as [`ClientEvent::SendDone`].
    pub fn send(&mut self, now: Now, request: SendRequest) -> SendId {
        self.send_with(now, request, 0)
    }

    /// Send with `sys_flag` in the request header (the PREPARED type for a half message).
    pub(super) fn send_with(&mut self, now: Now, mut request: SendRequest, sys_flag: i32) -> SendId {
        self.next_send += 1;
        let id = SendId(self.next_send);
        if !self.producer_groups.contains(&request.group) {
            self.start_producer(now, &request.group.clone());
        }
        let unique_id = match request.message.user_properties.iter().find(|(k, _)| k == keys::UNIQ_KEY) {
            Some((_, id)) => id.clone(),
            None => {
                let id = self.unique_ids.next_id(now.wall);
                request.message.user_properties.push((keys::UNIQ_KEY.to_owned(), id.clone()));
                id
            }
        };
        let budget = self.config.send_timeout_ms.saturating_mul(u64::from(self.config.send_retries) + 1);
        let send = PendingSend {
            request,
            unique_id,
            attempts: 0,
            last_failed: None,
            last_error: String::new(),
            deadline: now.mono.plus_millis(budget),
            parked: true,
            ask_again: None,
            sys_flag,
        };
        self.sends.insert(id, send);
        self.attempt(now, id);
        id
    }

    /// The queues a send to `topic` may use: its own route's, or (unknown topic) the
    /// default topic's with `defaultTopicQueueNums` queues each, so the broker creates it.
    fn send_queues(
        &mut self,
        now: Now,
        topic: &str,
    ) -> Result<Option<(Vec<MessageQueue>, TopicRouteData)>, ()> {
        if let Some(route) = self.route(now, topic).cloned() {
            return Ok(Some((publish_queues(topic, &route), route)));
        }
        if !self.no_route.contains_key(topic) {
            return Ok(None); // asked; wait
        }
        let Some(mut route) = self.route(now, DEFAULT_TOPIC).cloned() else {
            return if self.no_route.contains_key(DEFAULT_TOPIC) { Err(()) } else { Ok(None) };
        };
        for data in &mut route.queue_datas {
            let queues = DEFAULT_TOPIC_QUEUES.min(data.read_queue_nums);
            data.read_queue_nums = queues;
            data.write_queue_nums = queues;
        }
        Ok(Some((publish_queues(topic, &route), route)))
    }

    fn attempt(&mut self, now: Now, id: SendId) {
        let Some(send) = self.sends.get(&id) else { return };
        let topic = send.request.message.topic.clone();
        let queues = match self.send_queues(now, &topic) {
            Ok(Some(found)) => found,
            Ok(None) => return, // parked until the route arrives
            Err(()) => {
                // Neither the topic nor the default topic has a route yet (a broker that has
                // not registered yet, say): ask again shortly, until the send's time runs out.
                if let Some(send) = self.sends.get_mut(&id) {
                    send.parked = true;
                    send.ask_again = Some(now.mono.plus_millis(ROUTE_RETRY_MS));
                }
                return;
            }
        };
        let (queues, route) = queues;
        let Some(send) = self.sends.get_mut(&id) else { return };
        let queue = match &send.request.target {
            SendTarget::Any => self.queue_choice.pick(&queues, send.last_failed.as_deref(), now.mono),
            SendTarget::Key(key) => select_by_key(&queues, *key),
            SendTarget::Queue(queue) => Some(queue.clone()),
        };
        let Some(queue) = queue else {
            return self.finish_send(id, Err(SendError::NoRoute(topic)));
        };
        let Some(addr) = master_addr(&route, &queue.broker_name).and_then(|a| a.parse().ok()) else {
            return self.finish_send(id, Err(SendError::NoRoute(topic)));
        };
        send.parked = false;
        send.attempts += 1;
        let mut request = send_message(0, &send.request.group, queue.queue_id, &send.request.message);
        if send.sys_flag != 0 {
            request.ext_fields.insert("f", send.sys_flag.to_string());
        }
        let deadline = now.mono.plus_millis(self.config.send_timeout_ms).min(send.deadline);
        let tag = CallTag::Send { id, broker: queue.broker_name.clone(), started: now.mono };
        let request = self.stamp(request);
        if let Err((tag, error)) = self.transport.call(addr, request, deadline, tag, &mut self.out) {
            self.on_failed(now, tag, error);
        }
    }

    pub(super) fn on_send_response(
        &mut self,
        now: Now,
        id: SendId,
        broker: &str,
        started: MonoNanos,
        response: Result<&RemotingCommand, CallError>,
    ) {
        let latency = now.mono.millis_since(started);
        let failure = match response {
            // Stored: a status short of SEND_OK is the application's to judge, not retried
            // (RocketMQ's default, retryAnotherBrokerWhenNotStoreOK off).
            Ok(reply) if SendStatus::of(reply.response_code()).is_some() => {
                self.queue_choice.record(broker, latency, false, now.mono);
                let Some(send) = self.sends.get(&id) else { return };
                let status = SendStatus::of(reply.response_code()).unwrap_or(SendStatus::SendOk);
                if self.config.trace_topic.is_some() {
                    if let Ok(header) = SendMessageResponseHeader::decode(&reply.ext_fields) {
                        // Owned copies: the pending send stays borrowed from `self` otherwise.
                        let (group, message, unique_id) = (
                            send.request.group.clone(),
                            send.request.message.clone(),
                            send.unique_id.clone(),
                        );
                        let published = super::tracer::Published {
                            group: &group,
                            message: &message,
                            unique_id: &unique_id,
                            offset_id: &header.msg_id,
                            broker,
                            cost_ms: latency,
                        };
                        self.trace_published(now, &published);
                    }
                }
                let Some(send) = self.sends.get(&id) else { return };
                let result = SendMessageResponseHeader::decode(&reply.ext_fields)
                    .map(|header| SendResult {
                        msg_id: header.msg_id,
                        unique_id: send.unique_id.clone(),
                        queue: MessageQueue::new(&send.request.message.topic, broker, header.queue_id),
                        queue_offset: header.queue_offset,
                        status,
                    })
                    .map_err(|e| SendError::Failed {
                        attempts: send.attempts,
                        last: format!("bad send reply: {e}"),
                    });
                return self.finish_send(id, result);
            }
            Ok(reply) => {
                let code = reply.response_code();
                let why = format!("{code:?}: {}", reply.remark.as_deref().unwrap_or(""));
                (retryable(code), why)
            }
            Err(error) => (true, error.to_string()),
        };
        let (retry, why) = failure;
        tracing::debug!(broker, latency, %why, "send attempt failed; the broker is avoided for a while");
        self.queue_choice.record(broker, latency, true, now.mono);
        let max_attempts = self.config.send_retries + 1;
        let Some(send) = self.sends.get_mut(&id) else { return };
        send.last_failed = Some(broker.to_owned());
        send.last_error = why;
        let movable = send.request.target == SendTarget::Any;
        if retry && movable && send.attempts < max_attempts && now.mono < send.deadline {
            self.attempt(now, id);
        } else {
            let error = SendError::Failed { attempts: send.attempts, last: send.last_error.clone() };
            self.finish_send(id, Err(error));
        }
    }

    fn finish_send(&mut self, id: SendId, result: Result<SendResult, SendError>) {
        if self.is_trace_send(id) {
            if let Err(error) = &result {
                tracing::debug!(%error, "a trace record was not stored");
            }
            self.sends.remove(&id);
            return;
        }
        if self.sends.remove(&id).is_some() {
            self.events.push_back(ClientEvent::SendDone { id, result });
        }
    }

    /// A route arrived (or was found missing): sends waiting for it go on.
    pub(super) fn retry_parked_sends(&mut self, now: Now, topic: &str) {
        let waiting: Vec<SendId> = self
            .sends
            .iter()
            .filter(|(_, s)| s.parked && (s.request.message.topic == topic || topic == DEFAULT_TOPIC))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.attempt(now, id);
        }
    }

    /// No name server answered about `topic`: the sends parked on it ask again shortly
    /// (until their time runs out) rather than wait for the route refresh.
    pub(super) fn route_unanswered(&mut self, now: Now, topic: &str) {
        for send in self.sends.values_mut() {
            let waiting = send.parked && (send.request.message.topic == topic || topic == DEFAULT_TOPIC);
            if waiting && send.ask_again.is_none() {
                send.ask_again = Some(now.mono.plus_millis(ROUTE_RETRY_MS));
            }
        }
    }

    /// Parked sends whose time ran out fail.
    pub(super) fn handle_send_timeout(&mut self, now: Now) {
        // Parked with no route anywhere: ask the name servers about the topic and the
        // default topic again; their answers retry the parked sends.
        let due: Vec<String> = self
            .sends
            .values_mut()
            .filter(|s| s.parked && s.ask_again.is_some_and(|at| now.mono >= at))
            .map(|s| {
                s.ask_again = None;
                s.request.message.topic.clone()
            })
            .collect();
        for topic in due {
            self.ask_route(now, &topic);
            self.ask_route(now, DEFAULT_TOPIC);
        }
        let expired: Vec<SendId> = self
            .sends
            .iter()
            .filter(|(_, s)| s.parked && now.mono >= s.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let topic = self.sends.get(&id).map(|s| s.request.message.topic.clone()).unwrap_or_default();
            self.finish_send(id, Err(SendError::NoRoute(topic)));
        }
    }

    /// The earliest deadline of a parked send, or time to ask again for its route.
    pub(super) fn send_poll_timeout(&self) -> Option<MonoNanos> {
        self.sends.values().filter(|s| s.parked).flat_map(|s| [Some(s.deadline), s.ask_again]).flatten().min()
    }
}
