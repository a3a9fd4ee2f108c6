//! Every body decoder Strom serves, reached directly: the first two bytes
//! pick an entry of the served registry, the third a version in its range,
//! the fourth the header's client id and correlation id; the rest is the
//! body, framed behind a valid request header so the fuzzer need not
//! discover one. Then what the broker reads further (see frame_and_header).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_protocol::{registry, request};

#[global_allocator]
static ALLOC: strom_alloc::Guarded = strom_alloc::Guarded;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let served = registry::SUPPORTED;
    let support = served[usize::from(u16::from_be_bytes([data[0], data[1]])) % served.len()];
    let span = (support.max - support.min + 1) as u8;
    let version = support.min + i16::from(data[2] % span);
    let client_id = match data[3] & 0x03 {
        0 => None,
        1 => Some(""),
        2 => Some("rdkafka"),
        _ => Some("fuzz-client-\u{e9}"),
    };
    let correlation_id = i32::from(data[3] >> 2);
    let frame = strom_fuzz::request(
        support.key as i16,
        version,
        correlation_id,
        client_id,
        &data[4..],
    );
    if let Ok(req) = request::decode_request(strom_fuzz::bytes(&frame)) {
        strom_fuzz::exercise_request(req);
    }
});
