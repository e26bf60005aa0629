//! Wire and record codec throughput: frame decode and encode of a 1 KiB send, a send's
//! typed headers to and from their fields, and record encoding with the whole-record CRC.
//! Run: `cargo bench -p keel-benches --bench codec`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keel_benches::send_request;
use keel_core::protocol::headers::{
    CommandHeader as _, SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use keel_core::protocol::message::properties;
use keel_core::protocol::message::stored::{
    encode_record_with_tail, seal_record_crc, Record, RecordHead, RECORD_CRC_PLACEHOLDER,
};
use keel_core::protocol::{
    encode_frame, encode_to_bytes, FrameDecoder, SerializeType, DEFAULT_MAX_FRAME_LEN,
};

const FRAMES_PER_CHUNK: usize = 64;

fn frame_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_decode");
    group.throughput(Throughput::Elements(FRAMES_PER_CHUNK as u64));
    for (name, serialize_type) in
        [("json_send_1k", SerializeType::Json), ("binary_send_1k", SerializeType::RocketMq)]
    {
        let frame = encode_to_bytes(&send_request(1024, serialize_type));
        let chunk: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * FRAMES_PER_CHUNK).collect();
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || FrameDecoder::new(DEFAULT_MAX_FRAME_LEN),
                |decoder| {
                    // Feed in 16 KiB reads, as a socket would deliver them.
                    for piece in chunk.chunks(16 * 1024) {
                        decoder.push(piece);
                        while let Some(frame) = decoder.next_frame() {
                            criterion::black_box(frame.unwrap());
                        }
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn frame_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_encode");
    group.throughput(Throughput::Elements(1));
    for (name, serialize_type) in
        [("json_send_1k", SerializeType::Json), ("binary_send_1k", SerializeType::RocketMq)]
    {
        let cmd = send_request(1024, serialize_type);
        let mut out = BytesMut::with_capacity(1 << 20);
        group.bench_function(name, |b| {
            b.iter(|| {
                if out.len() > (1 << 19) {
                    out.clear();
                }
                encode_frame(criterion::black_box(&cmd), &mut out);
            });
        });
    }
    group.finish();
}

/// A send's request header written and read, and its reply's header written: what every
/// send costs in headers beside the frame (an in-process gRPC send has no frame at all).
fn header_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    group.throughput(Throughput::Elements(1));
    let request = send_request(0, SerializeType::Json);
    let header = SendMessageRequestHeaderV2::decode(&request.ext_fields).unwrap();
    group.bench_function("send_v2_encode", |b| b.iter(|| criterion::black_box(&header).to_ext_fields()));
    group.bench_function("send_v2_decode", |b| {
        b.iter(|| SendMessageRequestHeader::decode_any(criterion::black_box(&request.ext_fields)).unwrap())
    });
    let reply = SendMessageResponseHeader {
        msg_id: "0A00000100002A9F0000000000001000".into(),
        queue_id: 3,
        queue_offset: 1_234_567,
        transaction_id: None,
        msg_region: "DefaultRegion".into(),
        trace_on: "true".into(),
        batch_uniq_id: None,
        recall_handle: None,
    };
    group.bench_function("send_reply_encode", |b| b.iter(|| criterion::black_box(&reply).to_ext_fields()));
    group.finish();
}

fn record_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_encode");
    group.throughput(Throughput::Elements(1));
    let body = vec![b'x'; 1024];
    let props = properties::encode(&[("TAGS", "TagA"), ("UNIQ_KEY", "AC110002004D12345678000003E80000")]);
    let head = RecordHead {
        queue_id: 3,
        flag: 0,
        queue_offset: 5,
        physical_offset: 1000,
        sys_flag: 0,
        born_timestamp: 1_726_000_000_000,
        born_host: "10.0.0.2:50000".parse().unwrap(),
        store_timestamp: 1_726_000_000_005,
        store_host: "10.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    };
    let fields = Record { head, body: body.as_slice(), topic: "BenchmarkTest", properties: props.as_slice() };
    let mut out = BytesMut::with_capacity(1 << 20);
    group.bench_function("1k_with_record_crc", |b| {
        b.iter(|| {
            if out.len() > (1 << 19) {
                out.clear();
            }
            let start = out.len();
            encode_record_with_tail(&mut out, criterion::black_box(&fields), RECORD_CRC_PLACEHOLDER).unwrap();
            seal_record_crc(&mut out[start..]);
        });
    });
    group.finish();
}

criterion_group!(benches, frame_decode, frame_encode, header_codec, record_encode);
criterion_main!(benches);
