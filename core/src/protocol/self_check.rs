//! Round-trip checks of the decoders on arbitrary input, shared by the fuzz targets
//! (`fuzz/`) and the tests that replay their inputs (`core/tests/fuzz_regressions.rs`).
//! Each function panics exactly when a decoder misbehaves: a panic inside a decoder, a
//! decoded value that does not re-encode to itself, or a decoder buffering past one frame.

use bytes::{Bytes, BytesMut};

use super::frame::{decode_one, encode_to_bytes, FrameDecoder};
use super::message::batch::decode_batch;
use super::message::stored::{decode_records, encode_record, parse_record, verify_crcs, Parsed, MAGIC_V2};

/// The maximum frame the checks use: small, so "too long" is reachable.
pub const MAX_FRAME: usize = 64 * 1024;

/// Feed `data[1..]` to a frame decoder in chunks of `data[0]` bytes; every decoded frame
/// must re-encode and decode back to itself.
#[expect(clippy::expect_used, reason = "a check that panics on a decoder bug")]
pub fn frame_stream(data: &[u8]) {
    let Some((&split, stream)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    for piece in stream.chunks(chunk) {
        decoder.push(piece);
        while let Some(result) = decoder.next_frame() {
            let Ok(cmd) = result else { return };
            let again = decode_one(&encode_to_bytes(&cmd), usize::MAX).expect("a re-encoded frame decodes");
            assert_eq!((again.code, again.opaque, again.flag), (cmd.code, cmd.opaque, cmd.flag));
            assert_eq!(again.remark, cmd.remark);
            assert_eq!(again.body, cmd.body);
            assert_eq!(again.ext_fields.get("topic"), cmd.ext_fields.get("topic"));
        }
        assert!(decoder.buffered() <= MAX_FRAME + 4 + chunk, "buffered beyond one frame");
    }
}

/// Parse `data` as a stored record, a pull body and a batch body; a parsed record must
/// re-encode to the same bytes (BODYCRC aside, which encoding recomputes).
#[expect(clippy::expect_used, clippy::indexing_slicing, reason = "a check that panics on a decoder bug")]
pub fn record(data: &[u8]) {
    if let Ok(Parsed::Message(view)) = parse_record(data) {
        let _ = verify_crcs(&view, true);
        let owned = view.record.to_stored();
        assert_eq!(owned.borrowed(), view.record, "an owned copy keeps every field");
        let mut out = BytesMut::new();
        encode_record(&mut out, &owned.borrowed()).expect("a parsed record re-encodes");
        // The encoder writes V1 whenever the topic fits; a V2 record with a short topic is
        // valid but encodes differently.
        let v2_short = view.bytes[4..8] == MAGIC_V2.to_be_bytes() && view.record.topic.len() <= 127;
        if !v2_short {
            assert_eq!(&out[12..], &view.bytes[12..], "re-encoding changed the record");
        }
    }
    let _ = decode_records(data);
    let _ = decode_batch(&Bytes::copy_from_slice(data), 64);
}
