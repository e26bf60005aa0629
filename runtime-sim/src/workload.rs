//! The simulated clients: producers that send keyed messages and retry unknown outcomes,
//! consumers that pull every queue, process, and commit, and the end-of-run read-back.
//! Every operation and outcome goes into the world's history for the checkers.
//!
//! A message's body is a function of its key, so any delivered byte can be checked against
//! what was sent without keeping the bodies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use keel_core::protocol::body::TopicRouteData;
use keel_core::protocol::client_requests::{
    pull_message, pulled_records, send_message, OutgoingMessage, PullRequest,
};
use keel_core::protocol::headers::{
    CommandHeader, GetRouteInfoRequestHeader, OffsetResponseHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use keel_core::protocol::json;
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use madsim::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{Event, Key};
use crate::sim_clock::SharedSkew;
use crate::sim_conn::{CallError, ConnChaos, SimConn};
use crate::world::World;

/// The topic every producer sends to and every group consumes.
pub const TOPIC: &str = "DstTopic";
/// Its queues (the broker's default for auto-created topics).
pub const QUEUES: i32 = 4;
/// The name server's address.
pub const NAMESRV: &str = "10.0.0.1:9876";

/// The body of `key`'s message, `len` bytes: the key repeated.
#[must_use]
pub fn body_for(key: Key, len: usize) -> Bytes {
    key.to_be_bytes().iter().copied().cycle().take(len.max(8)).collect()
}

/// The key a record carries, and whether its body is the one sent with that key.
#[must_use]
pub fn identify(properties_bytes: &[u8], body: &[u8]) -> (Option<Key>, bool) {
    let key = properties::find(properties_bytes, keys::KEYS)
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| Key::from_str_radix(k, 16).ok());
    let intact = key.is_some_and(|k| body == body_for(k, body.len()));
    (key, intact)
}

/// What every simulated client shares: the world, the run's clock zero, its network chaos.
#[derive(Debug, Clone)]
pub struct ClientEnv {
    /// The world.
    pub world: World,
    /// When the run started.
    pub epoch: Instant,
    /// Connection faults.
    pub chaos: ConnChaos,
    /// The deliberate client bug switched on, if any.
    pub commit_before_process: bool,
    /// The broker's clock skew (to note its wall clock at each send).
    pub broker_skew: SharedSkew,
}

impl ClientEnv {
    /// Milliseconds since the run started.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn conn(&self, addr: SocketAddr) -> SimConn {
        SimConn::new(addr, self.chaos, self.world.clone())
    }

    /// Call and raise an alarm if the call fails on a system healed long enough that
    /// nothing may fail any more.
    pub(crate) async fn call(
        &self,
        conn: &mut SimConn,
        request: RemotingCommand,
        timeout: Duration,
        rng: &mut ChaCha8Rng,
        what: &str,
    ) -> Result<RemotingCommand, CallError> {
        let started = self.now_ms();
        let result = conn.call(request, timeout, rng).await;
        if let Err(error) = result {
            if error != CallError::Reset && self.world.must_succeed(started) {
                self.world.record(
                    self.now_ms(),
                    Event::Alarm { what: format!("{what} failed after healing: {error:?}") },
                );
            }
        }
        result
    }
}

/// The broker serving [`TOPIC`], as the name server says (falling back to the default
/// topic's route before the topic exists, as real producers do).
async fn route(env: &ClientEnv, conn: &mut SimConn, rng: &mut ChaCha8Rng) -> Option<SocketAddr> {
    for topic in [TOPIC, "TBW102"] {
        let header = GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: None };
        let request =
            RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 0, header.to_ext_fields());
        let Ok(reply) = env.call(conn, request, Duration::from_secs(3), rng, "route lookup").await else {
            return None;
        };
        if reply.response_code() != ResponseCode::SUCCESS {
            continue;
        }
        let route: TopicRouteData = json::from_slice(&reply.body).ok()?;
        return route.broker_datas.first()?.broker_addrs.get(&0)?.parse().ok();
    }
    None
}

/// Resolve the broker, retrying every second until the name server answers.
pub(crate) async fn resolve(env: &ClientEnv, namesrv: &mut SimConn, rng: &mut ChaCha8Rng) -> SocketAddr {
    loop {
        if let Some(addr) = route(env, namesrv, rng).await {
            return addr;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A producer: sends keyed messages round-robin over the queues, one at a time, retrying
/// an unknown or refused send up to twice, until told to stop.
pub async fn producer(env: ClientEnv, id: u32, seed: u64, send_gap_ms: u64, max_body: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut namesrv = env.conn(NAMESRV.parse().expect("address"));
    let broker = resolve(&env, &mut namesrv, &mut rng).await;
    let mut conn = env.conn(broker);
    let mut seq = 0u64;
    while !env.world.producers_stopped() {
        seq += 1;
        let key = (u64::from(id) << 40) | seq;
        let queue = i32::try_from(seq % QUEUES as u64).unwrap_or(0);
        let message = OutgoingMessage {
            topic: TOPIC.into(),
            tags: Some("TagA".into()),
            keys: Some(format!("{key:x}")),
            user_properties: Vec::new(),
            body: body_for(key, rng.gen_range(8..=max_body.max(8))),
        };
        for attempt in 0..3 {
            if attempt > 0 {
                env.world.bump("producer_retry");
                tokio::time::sleep(Duration::from_millis(rng.gen_range(50..500))).await;
                if let Some(addr) = route(&env, &mut namesrv, &mut rng).await {
                    conn.retarget(addr);
                }
            }
            let broker_wall_ms = env.broker_skew.wall_ms(env.epoch);
            env.world.record(env.now_ms(), Event::SendAttempt { producer: id, key, queue, broker_wall_ms });
            let request = send_message(0, "dst-producer", queue, &message);
            let asked_ms = env.now_ms();
            match env.call(&mut conn, request, Duration::from_secs(3), &mut rng, "send").await {
                // A SYNC_MASTER's FLUSH_SLAVE_TIMEOUT and SLAVE_NOT_AVAILABLE: stored on the
                // master, which is all the checkers take an acknowledgement for.
                Ok(reply)
                    if matches!(
                        reply.response_code(),
                        ResponseCode::SUCCESS
                            | ResponseCode::FLUSH_SLAVE_TIMEOUT
                            | ResponseCode::SLAVE_NOT_AVAILABLE
                    ) =>
                {
                    if reply.response_code() != ResponseCode::SUCCESS {
                        env.world.bump("send_stored_without_slave");
                    }
                    let Ok(header) = SendMessageResponseHeader::decode(&reply.ext_fields) else {
                        env.world
                            .record(env.now_ms(), Event::Alarm { what: "send reply without header".into() });
                        break;
                    };
                    let phys = header
                        .msg_id
                        .get(header.msg_id.len().saturating_sub(16)..)
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                        .unwrap_or(u64::MAX);
                    env.world.record(
                        env.now_ms(),
                        Event::SendAcked {
                            producer: id,
                            key,
                            queue: header.queue_id,
                            offset: header.queue_offset,
                            phys,
                        },
                    );
                    break;
                }
                Ok(reply) => {
                    let reason =
                        format!("code {:?}: {}", reply.response_code(), reply.remark.unwrap_or_default());
                    // Healed long enough, a refusal is a broker that did not recover by
                    // itself (a full disk or a disk error must not outlast the fault).
                    if env.world.must_succeed(asked_ms) {
                        let what = format!("send refused after healing: {reason}");
                        env.world.record(env.now_ms(), Event::Alarm { what });
                    }
                    env.world.record(env.now_ms(), Event::SendFailed { producer: id, key, reason });
                }
                Err(error) => {
                    env.world.record(
                        env.now_ms(),
                        Event::SendFailed { producer: id, key, reason: format!("{error:?}") },
                    );
                }
            }
        }
        let gap = -(send_gap_ms as f64) * (1.0 - rng.gen::<f64>()).ln();
        tokio::time::sleep(Duration::from_millis(gap.min(5_000.0) as u64 + 1)).await;
    }
}

/// The group name of consumer group `group`.
#[must_use]
pub fn group_name(group: u8) -> String {
    format!("dst-group-{group}")
}

/// A consumer of `group` owning every queue: resumes each queue at its committed offset,
/// long-polls it, processes (records) each message, and commits what it processed every
/// second. Killed and restarted by the simulator, it starts a new session.
pub async fn consumer(env: ClientEnv, group: u8, seed: u64, max_process_ms: u64) {
    let session = env.world.next_session();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ u64::from(session));
    env.world.record(env.now_ms(), Event::SessionStart { group, session });
    let mut namesrv = env.conn(NAMESRV.parse().expect("address"));
    let broker = resolve(&env, &mut namesrv, &mut rng).await;
    let progress = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<i32, i64>::new()));
    let mut tasks = Vec::new();
    for queue in 0..QUEUES {
        let env = env.clone();
        let progress = std::sync::Arc::clone(&progress);
        let seed = rng.gen();
        tasks.push(tokio::spawn(async move {
            pull_queue(env, group, session, queue, broker, seed, max_process_ms, progress).await;
        }));
    }
    // Commit what was processed, every second.
    let mut conn = env.conn(broker);
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for queue in 0..QUEUES {
            // Read each queue's progress just before committing it: a snapshot taken before
            // a slow commit of another queue could be stale (ahead of a correction).
            let Some(offset) = progress.lock().ok().and_then(|p| p.get(&queue).copied()) else { continue };
            if committed.get(&queue) == Some(&offset) {
                continue;
            }
            env.world.record(env.now_ms(), Event::Committed { group, session, queue, offset });
            let header = UpdateConsumerOffsetRequestHeader {
                consumer_group: group_name(group),
                topic: TOPIC.into(),
                queue_id: queue,
                commit_offset: offset,
            };
            let request =
                RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET, 0, header.to_ext_fields());
            if let Ok(reply) = env.call(&mut conn, request, Duration::from_secs(3), &mut rng, "commit").await
            {
                if reply.response_code() == ResponseCode::SUCCESS {
                    committed.insert(queue, offset);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn pull_queue(
    env: ClientEnv,
    group: u8,
    session: u32,
    queue: i32,
    broker: SocketAddr,
    seed: u64,
    max_process_ms: u64,
    progress: std::sync::Arc<std::sync::Mutex<BTreeMap<i32, i64>>>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut conn = env.conn(broker);
    let mut offset = loop {
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group_name(group),
            topic: TOPIC.into(),
            queue_id: queue,
            set_zero_if_not_found: None,
        };
        let request = RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET, 0, header.to_ext_fields());
        match env.call(&mut conn, request, Duration::from_secs(3), &mut rng, "offset query").await {
            Ok(reply) if reply.response_code() == ResponseCode::SUCCESS => {
                if let Ok(h) = OffsetResponseHeader::decode(&reply.ext_fields) {
                    break h.offset;
                }
            }
            Ok(reply) if reply.response_code() == ResponseCode::QUERY_NOT_FOUND => break 0,
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    env.world.record(env.now_ms(), Event::Resume { group, session, queue, offset });
    let set_progress = |offset: i64| {
        if let Ok(mut p) = progress.lock() {
            p.insert(queue, offset);
        }
    };
    set_progress(offset);
    let mut last_commit = (env.now_ms(), offset);
    loop {
        // Commit along with the next pull, as a one-way request in the same write (the
        // offset the Java client piggybacks on its pulls).
        let done = progress.lock().ok().and_then(|p| p.get(&queue).copied()).unwrap_or(offset);
        if env.now_ms() >= last_commit.0 + 1_000 && done != last_commit.1 {
            env.world.record(env.now_ms(), Event::Committed { group, session, queue, offset: done });
            let header = UpdateConsumerOffsetRequestHeader {
                consumer_group: group_name(group),
                topic: TOPIC.into(),
                queue_id: queue,
                commit_offset: done,
            };
            conn.oneway(
                RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET, 0, header.to_ext_fields()),
                &mut rng,
            )
            .await;
            last_commit = (env.now_ms(), done);
        }
        let request = pull_message(
            0,
            &PullRequest {
                group: group_name(group),
                topic: TOPIC.into(),
                queue_id: queue,
                offset,
                max_messages: 16,
                expression: "*".into(),
                suspend_ms: 3_000,
            },
        );
        let asked_ms = env.now_ms();
        let reply = match env.call(&mut conn, request, Duration::from_secs(8), &mut rng, "pull").await {
            Ok(reply) => reply,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let code = reply.response_code();
        let header = PullMessageResponseHeader::decode(&reply.ext_fields).ok();
        let next = header.as_ref().map(|h| h.next_begin_offset);
        if code == ResponseCode::SUCCESS {
            let Some(next) = next else { continue };
            if env.commit_before_process {
                set_progress(next);
            }
            let records = match pulled_records(&reply.body) {
                Ok(records) => records,
                Err(error) => {
                    env.world.record(
                        env.now_ms(),
                        Event::Alarm { what: format!("undecodable pull body: {error}") },
                    );
                    continue;
                }
            };
            for record in records {
                if max_process_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=max_process_ms))).await;
                }
                let (key, intact) = identify(record.record.properties, record.record.body);
                env.world.record(
                    env.now_ms(),
                    Event::Delivered {
                        group,
                        session,
                        queue,
                        offset: record.head().queue_offset,
                        key,
                        intact,
                        asked_ms,
                    },
                );
                if !env.commit_before_process {
                    set_progress(record.head().queue_offset + 1);
                }
            }
            offset = next;
        } else if code == ResponseCode::PULL_OFFSET_MOVED
            || (code == ResponseCode::PULL_RETRY_IMMEDIATELY && next.is_some_and(|n| n < offset))
        {
            let to = next.unwrap_or(0);
            tracing::info!(?header, remark = ?reply.remark, "corrected");
            env.world.record(env.now_ms(), Event::Corrected { group, session, queue, from: offset, to });
            env.world.bump("consumer_moved");
            offset = to;
            set_progress(offset);
        } else if code == ResponseCode::PULL_RETRY_IMMEDIATELY {
            offset = next.unwrap_or(offset);
        } else if code == ResponseCode::PULL_NOT_FOUND {
            // Nothing new (the hold expired): pull again.
        } else {
            if reply.remark.as_deref().is_some_and(|r| r.contains("CRC")) {
                env.world.bump("bit_rot_refused");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The end-of-run read-back: every queue from offset 0 to its end, as a fresh group.
pub async fn probe(env: ClientEnv, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut namesrv = env.conn(NAMESRV.parse().expect("address"));
    let broker = resolve(&env, &mut namesrv, &mut rng).await;
    let mut conn = env.conn(broker);
    for queue in 0..QUEUES {
        // Every fourth key the read-back finds is looked up by key too.
        let mut lookups = Vec::new();
        let read = read_back(&env, &mut conn, &mut rng, TOPIC, queue, |at, record| {
            let (key, intact) = identify(record.record.properties, record.record.body);
            env.world.record(at, Event::Probe { queue, offset: record.head().queue_offset, key, intact });
            if let Some(key) = key.filter(|k| k % 4 == 0 && lookups.len() < 25) {
                let text = properties::find(record.record.properties, keys::KEYS).unwrap_or_default();
                let phys = u64::try_from(record.head().physical_offset).unwrap_or(0);
                lookups.push((key, String::from_utf8_lossy(text).into_owned(), phys));
            }
        })
        .await;
        match read {
            Ok(()) => env.world.record(env.now_ms(), Event::ProbeDone { queue }),
            Err((offset, reason)) => {
                env.world.record(env.now_ms(), Event::ProbeFailed { queue, offset, reason })
            }
        }
        for (key, text, phys) in lookups {
            let Some(found) = find_by_key(&mut conn, &mut rng, &text, phys).await else { continue };
            if found {
                env.world.bump("key_lookup_found");
                env.world.record(env.now_ms(), Event::KeyLookup { key, phys, found: true });
            } else if log_min(&mut conn, &mut rng).await.is_some_and(|min| min <= phys) {
                // Retention may have taken the record since the read-back: a miss counts
                // only if the log still starts at or below it (its start only moves up).
                env.world.record(env.now_ms(), Event::KeyLookup { key, phys, found: false });
            }
        }
    }
    // Disk errors the broker repaired in place since its last start, and whether retention
    // deleted a segment (coverage only).
    let request = RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO, 0, ExtFields::new());
    if let Ok(reply) = conn.call(request, Duration::from_secs(3), &mut rng).await {
        let table = json::from_slice::<keel_core::protocol::body::KvTable>(&reply.body);
        let number = |key: &str| -> u64 {
            table.as_ref().ok().and_then(|t| t.table.get(key)).and_then(|n| n.parse().ok()).unwrap_or(0)
        };
        env.world.add("store_repaired", number("storeRepairs"));
        if number("commitLogMinOffset") > 0 {
            env.world.bump("retention_deleted");
        }
    }
}

/// Where the broker's CommitLog starts now (`commitLogMinOffset`), if it answers.
async fn log_min(conn: &mut SimConn, rng: &mut ChaCha8Rng) -> Option<u64> {
    for _ in 0..10 {
        let request = RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO, 0, ExtFields::new());
        if let Ok(reply) = conn.call(request, Duration::from_secs(3), rng).await {
            let table = json::from_slice::<keel_core::protocol::body::KvTable>(&reply.body).ok()?;
            return table.table.get("commitLogMinOffset")?.parse().ok();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Whether QUERY_MESSAGE by `key` answers with the record at CommitLog `phys`; `None` if
/// the broker could not be asked (connections reset through every retry).
async fn find_by_key(conn: &mut SimConn, rng: &mut ChaCha8Rng, key: &str, phys: u64) -> Option<bool> {
    use keel_core::protocol::headers::QueryMessageRequestHeader;
    let header = QueryMessageRequestHeader {
        topic: TOPIC.into(),
        key: key.into(),
        max_num: 64,
        begin_timestamp: 0,
        end_timestamp: i64::MAX,
        unique_key_query: Some("false".into()),
    };
    for _ in 0..10 {
        let request = RemotingCommand::request(RequestCode::QUERY_MESSAGE, 0, header.to_ext_fields());
        match conn.call(request, Duration::from_secs(3), rng).await {
            Ok(reply) if reply.response_code() == ResponseCode::SUCCESS => {
                let records = pulled_records(&reply.body).ok()?;
                return Some(
                    records.iter().any(|r| u64::try_from(r.head().physical_offset).ok() == Some(phys)),
                );
            }
            Ok(reply) if reply.response_code() == ResponseCode::QUERY_NOT_FOUND => return Some(false),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

/// Read `topic` queue `queue` from offset 0 (or its minimum) to its end as a fresh group, handing each record
/// to `on_record` with the time; gives up only after 20 failures in a row (connections
/// reset, misreads refused), with where and why.
pub async fn read_back(
    env: &ClientEnv,
    conn: &mut SimConn,
    rng: &mut ChaCha8Rng,
    topic: &str,
    queue: i32,
    mut on_record: impl FnMut(u64, &keel_core::protocol::message::stored::RecordView<'_>),
) -> Result<(), (i64, String)> {
    let mut offset = 0i64;
    let mut failures = 0;
    loop {
        let request = pull_message(
            0,
            &PullRequest {
                group: "dst-probe".into(),
                topic: topic.into(),
                queue_id: queue,
                offset,
                max_messages: 32,
                expression: "*".into(),
                suspend_ms: 0,
            },
        );
        let reply = match conn.call(request, Duration::from_secs(3), rng).await {
            Ok(reply) => reply,
            Err(error) => {
                failures += 1;
                if failures > 20 {
                    return Err((offset, format!("{error:?}")));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let code = reply.response_code();
        let next = PullMessageResponseHeader::decode(&reply.ext_fields).map(|h| h.next_begin_offset).ok();
        if code == ResponseCode::SUCCESS {
            let Ok(records) = pulled_records(&reply.body) else {
                return Err((offset, "undecodable".into()));
            };
            for record in &records {
                on_record(env.now_ms(), record);
            }
            failures = 0;
            offset = next.unwrap_or(offset + 1);
        } else if code == ResponseCode::PULL_NOT_FOUND {
            return Ok(());
        } else if (code == ResponseCode::PULL_RETRY_IMMEDIATELY || code == ResponseCode::PULL_OFFSET_MOVED)
            && next.is_some_and(|n| n > offset)
        {
            // Retention deleted the queue's head (OFFSET_TOO_SMALL): whether anything
            // acknowledged may be missing there is the checkers' business.
            offset = next.unwrap_or(offset + 1);
        } else {
            failures += 1;
            if failures > 20 {
                return Err((offset, format!("code {code:?}: {}", reply.remark.unwrap_or_default())));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
