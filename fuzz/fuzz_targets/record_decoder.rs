//! Fuzz the stored-record, pull-body and batch-body decoders: arbitrary bytes must parse or
//! fail cleanly, and a parsed record must re-encode to the same bytes
//! (`keel_core::protocol::self_check::record`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keel_core::protocol::self_check::record(data));
