//! SendMessage served straight from hyper's request, without tonic's generic codec: the
//! busiest call, and a unary one, so its body is one length-prefixed message read whole,
//! and its answer one message and a status. tonic's path streams both through boxed
//! decoders and encoders at a cost per call that showed in the broker's profile. Every
//! other call, and a SendMessage whose body is compressed, goes to the tonic service.
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

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use keel_core::grpc::proto;
use prost::Message as _;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};

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

/// Serve SendMessage `request` with `messaging`; `peer` is the client's address.
pub async fn send_message(
    messaging: &Messaging,
    request: http::Request<hyper::body::Incoming>,
    peer: Option<std::net::SocketAddr>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let message = match read_unary(body).await {
        Ok(message) => message,
        Err(status) => return Ok(answer::<proto::SendMessageResponse>(None, &status)),
    };
    let request = match proto::SendMessageRequest::decode(message) {
        Ok(request) => request,
        Err(error) => {
            let status = tonic::Status::internal(format!("the SendMessageRequest does not decode: {error}"));
            return Ok(answer::<proto::SendMessageResponse>(None, &status));
        }
    };
    let client_id = parts.headers.get(CLIENT_ID).and_then(|v| v.to_str().ok());
    let session = messaging.session_of(client_id, peer);
    let reply = messaging.send(session, &request).await;
    Ok(answer(Some(&reply), &tonic::Status::ok("")))
}

/// The one message of a unary call's `body`, read whole.
async fn read_unary(body: hyper::body::Incoming) -> Result<Bytes, tonic::Status> {
    match http_body_util::Limited::new(body, PREFIX + MAX_MESSAGE).collect().await {
        Ok(collected) => unframe(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(tonic::Status::resource_exhausted(format!("the message is larger than {MAX_MESSAGE} bytes")))
        }
        Err(error) => Err(tonic::Status::internal(format!("the request body broke: {error}"))),
    }
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

/// The answer to a unary call: `reply` (if any) framed, then `status` in trailers.
fn answer<M: prost::Message>(reply: Option<&M>, status: &tonic::Status) -> http::Response<tonic::body::Body> {
    let data = reply.map(frame);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    if !status.message().is_empty() {
        if let Ok(message) = HeaderValue::from_str(&percent_encode(status.message())) {
            trailers.insert("grpc-message", message);
        }
    }
    let mut response = http::Response::new(tonic::body::Body::new(Unary { data, trailers: Some(trailers) }));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
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

/// A unary answer's body: one DATA frame, then the trailers.
struct Unary {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl hyper::body::Body for Unary {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|trailers| Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
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
    #[tokio::test]
    async fn an_answer_is_one_framed_message_then_the_status() {
        let reply = proto::SendMessageResponse {
            status: Some(keel_core::grpc::status::ok()),
            entries: vec![proto::SendResultEntry { message_id: "id".into(), ..Default::default() }],
        };
        let response = answer(Some(&reply), &tonic::Status::ok(""));
        assert_eq!(response.headers()[http::header::CONTENT_TYPE], "application/grpc");
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        let mut data = collected.to_bytes();
        assert_eq!(data.get_u8(), 0);
        assert_eq!(data.get_u32() as usize, data.len());
        assert_eq!(proto::SendMessageResponse::decode(data).unwrap(), reply);
    }

    /// A failed call answers no message and a status naming why.
    #[tokio::test]
    async fn a_refusal_carries_its_status_and_message() {
        let status = tonic::Status::resource_exhausted("too big");
        let response = answer::<proto::SendMessageResponse>(None, &status);
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], (tonic::Code::ResourceExhausted as i32).to_string().as_str());
        assert_eq!(trailers["grpc-message"], "too big");
        assert!(collected.to_bytes().is_empty());
    }
}
