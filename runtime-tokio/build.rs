//! Generates the tonic service and client of RocketMQ 5.x's `MessagingService` from the
//! .proto files vendored in `core/proto`; its messages are the core's
//! (`keel_core::grpc::proto`), so only the service code is generated here. protox (a protoc
//! in Rust) compiles the files, so no protoc is needed for them.

use prost::Message;

fn main() {
    println!("cargo:rerun-if-changed=../core/proto");
    let files = protox::compile(["apache/rocketmq/v2/service.proto"], ["../core/proto"])
        .unwrap_or_else(|error| panic!("the vendored RocketMQ protos do not compile: {error}"));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let descriptors = out.join("rocketmq_v2.bin");
    std::fs::write(&descriptors, files.encode_to_vec())
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", descriptors.display()));
    tonic_build::configure()
        .file_descriptor_set_path(&descriptors)
        .skip_protoc_run()
        .extern_path(".apache.rocketmq.v2", "::keel_core::grpc::proto")
        .compile_protos(&["apache/rocketmq/v2/service.proto"], &["../core/proto"])
        .unwrap_or_else(|error| panic!("cannot generate the RocketMQ gRPC service: {error}"));
}
