//! RocketMQ 5.x's gRPC protocol (`apache.rocketmq.v2.MessagingService`), sans-IO: the
//! messages, generated from the vendored .proto files, and the translation between them and
//! the broker's remoting commands. A runtime's tonic service is a thin adapter over these.

/// The `apache.rocketmq.v2` messages, as prost generates them.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)] // generated code
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/apache.rocketmq.v2.rs"));
}

pub mod message;
pub mod receive;
pub mod relay;
pub mod route;
pub mod send;
pub mod session;
pub mod status;

/// The last second a protobuf `Timestamp` can hold (9999-12-31T23:59:59Z).
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// A `Timestamp` as Unix milliseconds. A seconds value past the last valid one can only be
/// milliseconds: the official Python SDK (5.1.2) writes a delivery time's milliseconds into
/// `seconds`, and this keeps its delayed messages working.
#[must_use]
pub fn timestamp_ms(at: &prost_types::Timestamp) -> i64 {
    if at.seconds > MAX_TIMESTAMP_SECONDS {
        return at.seconds;
    }
    at.seconds.saturating_mul(1000).saturating_add(i64::from(at.nanos / 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_milliseconds_even_when_a_client_wrote_milliseconds_as_seconds() {
        let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(timestamp_ms(&at(1_764_900_000, 250_000_000)), 1_764_900_000_250);
        assert_eq!(timestamp_ms(&at(1_764_900_000_250, 0)), 1_764_900_000_250);
        assert_eq!(timestamp_ms(&at(MAX_TIMESTAMP_SECONDS, 0)), MAX_TIMESTAMP_SECONDS * 1000);
    }
}
