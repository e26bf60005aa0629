//! SendMessage served straight from h2's stream, in its connection's task (`connection`),
//! without tonic's generic codec: the busiest call, and a unary one, so its body is one
//! length-prefixed message read whole, and its answer one message and a status. tonic's
//! path streams both through boxed decoders and encoders at a cost per call that showed in
//! the broker's profile. Every other call, and a SendMessage whose body is compressed, goes
//! to the tonic service.
//!
//! A unary call's framing (gRPC over HTTP/2):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | compressed flag: 0, identity (Keel accepts no compression) |
//! | 4 | message length, big-endian |
//! | n | the protobuf message |
//!
//! The answer: HEADERS (`:status 200`, `content-type: application/grpc`), one DATA frame
//! framed as above, then trailers carrying `grpc-status` (and `grpc-message` on failure).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http_body_util::BodyExt as _;
use keel_core::grpc::proto;
use prost::Message as _;
use tonic::codegen::http::{self, HeaderMap, HeaderName, HeaderValue};

use super::connection::RequestBody;
use super::messaging::{Messaging, CLIENT_ID};

/// The path SendMessage is called on.
pub const SEND_MESSAGE: &str = "/apache.rocketmq.v2.MessagingService/SendMessage";
/// The largest message a call may carry: tonic's default, which the rest of the service has.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// The framing before each message.
const PREFIX: usize = 5;

/// Whether `request` is a SendMessage this path serves: uncompressed.
pub fn serves<B>(request: &http::Request<B>) -> bool {
    request.uri().path() == SEND_MESSAGE
        && request.headers().get("grpc-encoding").is_none_or(|encoding| encoding == "identity")
}

/// Serve SendMessage `request` with `messaging`, answering on `respond`; `peer` is the
/// client's address. An answer the client no longer takes (it reset the call, or the
/// connection broke) is dropped.
pub async fn send_message(
    messaging: Messaging,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: Option<std::net::SocketAddr>,
) {
    let (parts, body) = request.into_parts();
    let answer = match read_request(body).await {
        Ok(request) => {
            let client_id = parts.headers.get(CLIENT_ID).and_then(|v| v.to_str().ok());
            let session = messaging.session_of(client_id, peer);
            let reply = messaging.send(session, &request).await;
            Answer::new(Some(&reply), &tonic::Status::ok(""))
        }
        Err(status) => Answer::new::<proto::SendMessageResponse>(None, &status),
    };
    let mut head = http::Response::new(());
    head.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let Ok(mut send) = respond.send_response(head, false) else { return };
    if let Some(data) = answer.data {
        // Small: h2 holds it until the client's window has room, never for long.
        if send.send_data(data, false).is_err() {
            return;
        }
    }
    let _ = send.send_trailers(answer.trailers);
}

/// The SendMessageRequest a unary call's `body` carries, read whole (each piece's window
/// given back to the client as it is read; a body of one DATA frame is not copied).
async fn read_request(body: RecvStream) -> Result<proto::SendMessageRequest, tonic::Status> {
    let body = http_body_util::Limited::new(RequestBody::new(body), PREFIX + MAX_MESSAGE);
    let message = match body.collect().await {
        Ok(collected) => unframe(collected.to_bytes())?,
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(tonic::Status::resource_exhausted(format!(
                "the message is larger than {MAX_MESSAGE} bytes"
            )));
        }
        Err(error) => return Err(tonic::Status::internal(format!("the request body broke: {error}"))),
    };
    proto::SendMessageRequest::decode(message)
        .map_err(|error| tonic::Status::internal(format!("the SendMessageRequest does not decode: {error}")))
}

/// The one uncompressed message `body` frames (the whole of a unary call's body).
pub fn unframe(mut body: Bytes) -> Result<Bytes, tonic::Status> {
    if body.len() < PREFIX {
        return Err(tonic::Status::internal("the body carries no whole message"));
    }
    let compressed = body.get_u8();
    let length = body.get_u32() as usize;
    if compressed != 0 {
        return Err(tonic::Status::unimplemented("a compressed message without grpc-encoding"));
    }
    if length != body.len() {
        return Err(tonic::Status::internal(format!(
            "the body should carry one message of {length} bytes, it carries {}",
            body.len()
        )));
    }
    Ok(body)
}

/// `message` encoded and framed, uncompressed.
pub fn frame<M: prost::Message>(message: &M) -> Bytes {
    let length = message.encoded_len();
    let mut framed = BytesMut::with_capacity(PREFIX + length);
    framed.put_u8(0);
    // A message of 4 GiB or more is refused long before: MAX_MESSAGE bounds what is read.
    framed.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
    message.encode_raw(&mut framed);
    framed.freeze()
}

/// The answer to a unary call: its message framed (if any), then its status in trailers.
struct Answer {
    data: Option<Bytes>,
    trailers: HeaderMap,
}

impl Answer {
    /// `reply` (if any) framed, then `status`.
    fn new<M: prost::Message>(reply: Option<&M>, status: &tonic::Status) -> Self {
        // Names and the common status as constants: no parsing or formatting per call.
        let mut trailers = HeaderMap::with_capacity(2);
        let code = match status.code() {
            tonic::Code::Ok => HeaderValue::from_static("0"),
            code => HeaderValue::from(code as i32),
        };
        trailers.insert(HeaderName::from_static("grpc-status"), code);
        if !status.message().is_empty() {
            if let Ok(message) = HeaderValue::from_str(&percent_encode(status.message())) {
                trailers.insert(HeaderName::from_static("grpc-message"), message);
            }
        }
        Self { data: reply.map(frame), trailers }
    }
}

/// `grpc-message`'s encoding: bytes outside printable ASCII, and `%`, percent-encoded.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A framed message unframes to itself; a short, compressed or trailing body is refused.
    #[test]
    fn framing_round_trips_and_bad_bodies_are_refused() {
        let message = proto::Resource { resource_namespace: String::new(), name: "T".into() };
        let framed = frame(&message);
        assert_eq!(framed.len(), PREFIX + message.encoded_len());
        assert_eq!(proto::Resource::decode(unframe(framed.clone()).unwrap()).unwrap(), message);
        assert!(unframe(framed.slice(..3)).is_err());
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        assert_eq!(unframe(Bytes::from(compressed)).unwrap_err().code(), tonic::Code::Unimplemented);
        let mut trailing = framed.to_vec();
        trailing.push(0);
        assert!(unframe(Bytes::from(trailing)).is_err());
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("topic T not found"), "topic T not found");
        assert_eq!(percent_encode("100% é"), "100%25 %C3%A9");
    }

    /// An answer frames its message after a 5-byte prefix and ends with the status.
    #[test]
    fn an_answer_is_one_framed_message_then_the_status() {
        let reply = proto::SendMessageResponse {
            status: Some(keel_core::grpc::status::ok()),
            entries: vec![proto::SendResultEntry { message_id: "id".into(), ..Default::default() }],
        };
        let answer = Answer::new(Some(&reply), &tonic::Status::ok(""));
        assert_eq!(answer.trailers["grpc-status"], "0");
        assert!(answer.trailers.get("grpc-message").is_none());
        let mut data = answer.data.unwrap();
        assert_eq!(data.get_u8(), 0);
        assert_eq!(data.get_u32() as usize, data.len());
        assert_eq!(proto::SendMessageResponse::decode(data).unwrap(), reply);
    }

    /// A failed call answers no message and a status naming why.
    #[test]
    fn a_refusal_carries_its_status_and_message() {
        let status = tonic::Status::resource_exhausted("too big");
        let answer = Answer::new::<proto::SendMessageResponse>(None, &status);
        assert_eq!(
            answer.trailers["grpc-status"],
            (tonic::Code::ResourceExhausted as i32).to_string().as_str()
        );
        assert_eq!(answer.trailers["grpc-message"], "too big");
        assert!(answer.data.is_none());
    }
}
