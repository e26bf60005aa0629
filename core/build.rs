//! Generates RocketMQ 5.x's gRPC messages (`apache.rocketmq.v2`) from the vendored .proto
//! files in `proto/` (apache/rocketmq-apis at 3e60073; Apache-2.0, see `proto/NOTICE`),
//! with protox, a protoc in Rust, so
//! building needs no protoc for them.

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["apache/rocketmq/v2/service.proto"], ["proto"])
        .unwrap_or_else(|error| panic!("the vendored RocketMQ protos do not compile: {error}"));
    let mut config = prost_build::Config::new();
    // Message bodies stay `Bytes`: a send's body goes to the store without a copy.
    config.bytes([".apache.rocketmq.v2.Message.body"]);
    // Ordered maps: user properties are written to the store in their iteration order.
    config.btree_map(["."]);
    config
        .compile_fds(files)
        .unwrap_or_else(|error| panic!("cannot generate the RocketMQ messages: {error}"));
}
