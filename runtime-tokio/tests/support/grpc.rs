//! Building blocks of gRPC requests for the tests that speak RocketMQ 5.x's protocol.

use keel_core::grpc::proto;

/// A resource (topic or group) named `name`, without a namespace.
pub fn resource(name: &str) -> Option<proto::Resource> {
    Some(proto::Resource { resource_namespace: String::new(), name: name.into() })
}

/// `message` as a request carrying client id `client_id` (`x-mq-client-id`), which every
/// call but QueryRoute must.
pub fn with_id<T>(client_id: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-mq-client-id", client_id.parse().unwrap());
    request
}
