//! Replays the fuzz targets' seed inputs and every crash input ever found (kept under
//! `tests/fuzz-regressions/<target>/`) through the same checks the targets make
//! (`protocol::self_check`), so a fixed crash stays fixed without running the fuzzer.
//! A new crash input gets a file there and a line below.

use keel_core::protocol::self_check::{frame_stream, record};

const FRAME_INPUTS: &[(&str, &[u8])] = &[
    ("seed: binary route request", include_bytes!("../../fuzz/seeds/frame_decoder/binary_route")),
    ("seed: JSON route request", include_bytes!("../../fuzz/seeds/frame_decoder/json_route")),
    ("seed: two frames in one chunk", include_bytes!("../../fuzz/seeds/frame_decoder/two_frames")),
];

const RECORD_INPUTS: &[(&str, &[u8])] = &[
    ("seed: worked example", include_bytes!("../../fuzz/seeds/record_decoder/worked_example")),
    ("seed: two records", include_bytes!("../../fuzz/seeds/record_decoder/two_records")),
    (
        "crash: a host port outside 0..=65535 was read as port 0",
        include_bytes!("fuzz-regressions/record_decoder/out_of_range_port"),
    ),
];

#[test]
fn frame_decoder_inputs_stay_fixed() {
    for (name, data) in FRAME_INPUTS {
        eprintln!("replaying {name}");
        frame_stream(data);
    }
}

#[test]
fn record_decoder_inputs_stay_fixed() {
    for (name, data) in RECORD_INPUTS {
        eprintln!("replaying {name}");
        record(data);
    }
}
