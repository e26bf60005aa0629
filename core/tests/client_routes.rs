//! The client machine's route requests, driven by hand against a scripted name server: a
//! topic nobody has a route for is asked about again at a steady pace, neither once per
//! round trip nor only at the 30 s route refresh, so a topic or broker that appears later is
//! found soon. And what a send's reply status makes of it.

use std::collections::BTreeMap;

use keel_core::client::{
    Client, ClientConfig, ClientEvent, ConsumerConfig, SendRequest, SendStatus, SendTarget,
};
use keel_core::io::{ConnId, Input, Machine, MonoNanos, Now, Output, UnixMillis};
use keel_core::protocol::body::{perm, BrokerData, QueueData, TopicRouteData};
use keel_core::protocol::client_requests::OutgoingMessage;
use keel_core::protocol::frame::{encode_to_bytes, FrameDecoder};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};

const NAMESRV: &str = "10.0.0.1:9876";
const BROKER: &str = "10.0.0.2:10911";

/// One request the client sent: (ms since the start, to where, what).
type Sent = (u64, String, RemotingCommand);

/// A route answer's body: `queues` read and write queues on [`BROKER`].
fn route_on_the_broker(queues: i32) -> Vec<u8> {
    let route = TopicRouteData {
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: perm::READ | perm::WRITE,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![BrokerData {
            broker_name: "broker-a".into(),
            broker_addrs: [(0, BROKER.to_owned())].into_iter().collect(),
            ..BrokerData::default()
        }],
        ..TopicRouteData::default()
    };
    json::to_vec(&route, KeyStyle::Standard).unwrap()
}

/// When the first message reached the broker, if one did.
fn first_send_at(sent: &[Sent]) -> Option<u64> {
    sent.iter()
        .find(|(_, to, r)| to == BROKER && r.request_code() == RequestCode::SEND_MESSAGE_V2)
        .map(|(ms, _, _)| *ms)
}

fn start() -> (Client, Now) {
    let now = Now { mono: MonoNanos(1_000_000_000), wall: UnixMillis(1_790_000_000_000) };
    let client = Client::new(ClientConfig::new(vec![NAMESRV.parse().unwrap()], "10.0.0.5@test"), now);
    (client, now)
}

/// Run `client` for `steps` steps of 10 ms. Every request it sends is recorded, and
/// `answer` may reply to it at once.
fn drive(
    client: &mut Client,
    now: &mut Now,
    steps: usize,
    mut answer: impl FnMut(u64, &RemotingCommand) -> Option<RemotingCommand>,
) -> Vec<Sent> {
    let begin = now.mono.0;
    let mut peers = BTreeMap::new();
    let mut decoders: BTreeMap<ConnId, FrameDecoder> = BTreeMap::new();
    let mut sent = Vec::new();
    for _ in 0..steps {
        let mut inputs = Vec::new();
        while let Some(output) = client.poll_output() {
            match output {
                Output::Connect { conn, addr, kind } => {
                    decoders.insert(conn, FrameDecoder::new(usize::MAX));
                    peers.insert(conn, addr.to_string());
                    inputs.push(Input::ConnOpened { conn, peer: addr, kind });
                }
                Output::Send { conn, data } => {
                    let Some(decoder) = decoders.get_mut(&conn) else { continue };
                    decoder.push(&data);
                    while let Some(Ok(request)) = decoder.next_frame() {
                        let ms = (now.mono.0 - begin) / 1_000_000;
                        if let Some(reply) = answer(ms, &request) {
                            inputs.push(Input::Bytes {
                                conn,
                                data: encode_to_bytes(&reply),
                                received: MonoNanos(0),
                            });
                        }
                        sent.push((ms, peers[&conn].clone(), request));
                    }
                }
                _ => {}
            }
        }
        for input in inputs {
            client.handle(*now, input);
        }
        *now = Now { mono: now.mono.plus_millis(10), wall: UnixMillis(now.wall.0 + 10) };
        if client.poll_timeout().is_some_and(|at| at <= now.mono) {
            client.handle(*now, Input::Timeout);
        }
    }
    sent
}

fn no_route(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(
        request,
        ResponseCode::TOPIC_NOT_EXIST,
        Some("No topic route info in name server for the topic".into()),
    )
}

/// Route requests among `sent` for `topic`, by time.
fn route_asks(sent: &[Sent], topic: &str) -> Vec<u64> {
    sent.iter()
        .filter(|(_, _, r)| {
            r.request_code() == RequestCode::GET_ROUTEINFO_BY_TOPIC
                && r.ext_fields.get("topic") == Some(topic)
        })
        .map(|(ms, _, _)| *ms)
        .collect()
}

#[test]
fn a_consumer_of_a_topic_without_a_route_asks_again_about_once_a_second() {
    let (mut client, mut now) = start();
    client.start_consumer(now, ConsumerConfig::new("cg", "NoSuchTopic", "*"));
    // Five seconds; the name server answers every route request at once, "no route".
    let sent = drive(&mut client, &mut now, 500, |_, request| {
        (request.request_code() == RequestCode::GET_ROUTEINFO_BY_TOPIC).then(|| no_route(request))
    });
    let asked = route_asks(&sent, "NoSuchTopic");
    assert!((5..=6).contains(&asked.len()), "asked {} times in 5 s: {asked:?}", asked.len());
    for pair in asked.windows(2) {
        assert!(pair[1] - pair[0] >= 1_000, "asked again after {} ms: {asked:?}", pair[1] - pair[0]);
    }
}

#[test]
fn a_send_before_any_broker_registered_goes_out_soon_after_one_does() {
    let (mut client, mut now) = start();
    let message = OutgoingMessage {
        topic: "Fresh".into(),
        body: b"first".to_vec().into(),
        ..OutgoingMessage::default()
    };
    client.send(now, SendRequest { group: "pg".into(), message, target: SendTarget::Any });
    // No broker registered for 2 s; then one has the default topic (the new topic itself
    // still has no route: the broker creates it on the first send).
    let body = route_on_the_broker(8);
    let sent = drive(&mut client, &mut now, 300, |ms, request| {
        if request.request_code() != RequestCode::GET_ROUTEINFO_BY_TOPIC {
            return None;
        }
        if ms >= 2_000 && request.ext_fields.get("topic") == Some("TBW102") {
            return Some(
                RemotingCommand::response_to(request, ResponseCode::SUCCESS, None).with_body(body.clone()),
            );
        }
        Some(no_route(request))
    });
    let asked = route_asks(&sent, "Fresh").len() + route_asks(&sent, "TBW102").len();
    let before = sent.iter().filter(|(ms, to, _)| *ms < 2_000 && to == NAMESRV).count();
    assert!(before <= 12, "{before} route requests in 2 s with no broker ({asked} in all)");
    let send_at = first_send_at(&sent);
    assert!(
        send_at.is_some_and(|ms| (2_000..=2_600).contains(&ms)),
        "the send reached the broker at {send_at:?} ms; the default topic's route came at 2000 ms"
    );
}

#[test]
fn a_send_whose_route_request_went_unanswered_asks_again_until_a_name_server_answers() {
    let (mut client, mut now) = start();
    let message =
        OutgoingMessage { topic: "Known".into(), body: b"x".to_vec().into(), ..OutgoingMessage::default() };
    client.send(now, SendRequest { group: "pg".into(), message, target: SendTarget::Any });
    // The name server is silent for a second (the first request times out after 3 s),
    // then answers with the topic's route.
    let body = route_on_the_broker(4);
    let sent = drive(&mut client, &mut now, 800, |ms, request| {
        (request.request_code() == RequestCode::GET_ROUTEINFO_BY_TOPIC && ms >= 1_000).then(|| {
            RemotingCommand::response_to(request, ResponseCode::SUCCESS, None).with_body(body.clone())
        })
    });
    let send_at = first_send_at(&sent);
    assert!(
        send_at.is_some_and(|ms| ms <= 3_600),
        "the send reached the broker at {send_at:?} ms; its route request timed out at 3000 ms"
    );
}

#[test]
fn a_send_stored_without_a_slave_ends_with_that_status_and_is_not_retried() {
    use keel_core::protocol::headers::{CommandHeader, SendMessageResponseHeader};
    for (code, status) in [
        (ResponseCode::SUCCESS, SendStatus::SendOk),
        (ResponseCode::FLUSH_SLAVE_TIMEOUT, SendStatus::FlushSlaveTimeout),
        (ResponseCode::SLAVE_NOT_AVAILABLE, SendStatus::SlaveNotAvailable),
    ] {
        let (mut client, mut now) = start();
        let message =
            OutgoingMessage { topic: "T".into(), body: b"x".to_vec().into(), ..OutgoingMessage::default() };
        client.send(now, SendRequest { group: "pg".into(), message, target: SendTarget::Any });
        let body = route_on_the_broker(4);
        let sent = drive(&mut client, &mut now, 100, |_, request| match request.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC => Some(
                RemotingCommand::response_to(request, ResponseCode::SUCCESS, None).with_body(body.clone()),
            ),
            RequestCode::SEND_MESSAGE_V2 => {
                let header = SendMessageResponseHeader {
                    msg_id: "0A00000200002A9F0000000000000000".into(),
                    queue_id: 1,
                    queue_offset: 5,
                    transaction_id: None,
                    batch_uniq_id: None,
                    recall_handle: None,
                    msg_region: "DefaultRegion".into(),
                    trace_on: "true".into(),
                };
                let reply = RemotingCommand::response_to(request, code, None);
                Some(RemotingCommand { ext_fields: header.to_ext_fields(), ..reply })
            }
            _ => None,
        });
        let sends = sent.iter().filter(|(_, _, r)| r.request_code() == RequestCode::SEND_MESSAGE_V2).count();
        assert_eq!(sends, 1, "{code:?}: stored, so not sent again");
        let done = std::iter::from_fn(|| client.poll_event()).find_map(|event| match event {
            ClientEvent::SendDone { result, .. } => Some(result),
            _ => None,
        });
        let result = done.expect("the send ended").expect("a stored message is a result");
        assert_eq!((result.status, result.queue_offset), (status, 5), "{code:?}");
    }
}
