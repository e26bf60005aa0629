//! Fuzz the frame decoder: arbitrary bytes, fed in chunks of a fuzzed size, must never make it
//! panic or buffer past one frame, and every decoded command must re-encode to itself
//! (`keel_core::protocol::self_check::frame_stream`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keel_core::protocol::self_check::frame_stream(data));
