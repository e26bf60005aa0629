//! The client machine's route requests, driven by hand: a consumer of a topic the name
//! servers have no route for asks again about once a second: neither once per round trip
//! nor only at the 30 s route refresh, so a topic created later is found soon.

use std::collections::BTreeMap;

use keel_core::client::{Client, ClientConfig, ConsumerConfig};
use keel_core::io::{ConnId, Input, Machine, MonoNanos, Now, Output, UnixMillis};
use keel_core::protocol::frame::{encode_to_bytes, FrameDecoder};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};

#[test]
fn a_consumer_of_a_topic_without_a_route_asks_again_about_once_a_second() {
    let namesrv = "10.0.0.1:9876".parse().unwrap();
    let mut now = Now { mono: MonoNanos(1_000_000_000), wall: UnixMillis(1_790_000_000_000) };
    let mut client = Client::new(ClientConfig::new(vec![namesrv], "10.0.0.5@test"), now);
    client.start_consumer(now, ConsumerConfig::new("cg", "NoSuchTopic", "*"));
    let mut decoders: BTreeMap<ConnId, FrameDecoder> = BTreeMap::new();
    let mut asked = Vec::new();
    // Five seconds in 10 ms steps; the name server answers every route request at once,
    // "no route".
    for _ in 0..500 {
        let mut inputs = Vec::new();
        while let Some(output) = client.poll_output() {
            match output {
                Output::Connect { conn, addr } => {
                    decoders.insert(conn, FrameDecoder::new(usize::MAX));
                    inputs.push(Input::ConnOpened { conn, peer: addr });
                }
                Output::Send { conn, data } => {
                    let Some(decoder) = decoders.get_mut(&conn) else { continue };
                    decoder.push(&data);
                    while let Some(Ok(request)) = decoder.next_frame() {
                        if request.request_code() == RequestCode::GET_ROUTEINFO_BY_TOPIC
                            && request.ext_fields.get("topic") == Some("NoSuchTopic")
                        {
                            asked.push(now.mono.0 / 1_000_000);
                            let reply = RemotingCommand::response_to(
                                &request,
                                ResponseCode::TOPIC_NOT_EXIST,
                                Some("No topic route info in name server for the topic".into()),
                            );
                            inputs.push(Input::Bytes { conn, data: encode_to_bytes(&reply) });
                        }
                    }
                }
                _ => {}
            }
        }
        for input in inputs {
            client.handle(now, input);
        }
        now = Now { mono: now.mono.plus_millis(10), wall: UnixMillis(now.wall.0 + 10) };
        if client.poll_timeout().is_some_and(|at| at <= now.mono) {
            client.handle(now, Input::Timeout);
        }
    }
    assert!((5..=6).contains(&asked.len()), "asked {} times in 5 s: {asked:?}", asked.len());
    for pair in asked.windows(2) {
        assert!(pair[1] - pair[0] >= 1_000, "asked again after {} ms: {asked:?}", pair[1] - pair[0]);
    }
}
