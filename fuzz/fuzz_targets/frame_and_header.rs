//! A byte stream as a connection reads it: split into frames, each decoded
//! into a header and a typed body (every API key and version Strom serves,
//! dispatched as the broker dispatches them), then what the broker reads
//! further: Produce v0-v2 bodies (refused item by item) and the record
//! batches of Produce v3+ (validated). Decode errors are fine; panics are not.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strom_protocol::{frame, request};

// The broker's allocator: it reserves what a forged array count asks for
// without committing it (see strom-alloc), so only memory actually touched
// counts against -rss_limit_mb.
#[global_allocator]
static ALLOC: strom_alloc::Guarded = strom_alloc::Guarded;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = frame::split_frame(&mut buf, strom_fuzz::MAX_FRAME) {
        if let Ok(req) = request::decode_request(f) {
            strom_fuzz::exercise_request(req);
        }
    }
});
