//! Record batches as Produce carries them: the produce validation
//! (`validate_produce_batch`, Kafka's LogValidator rules) and the record
//! walker (`record_walk::walk`, which also serves ListOffsets by time).
//!
//! The first byte picks the shape of the input:
//! - even: the rest is the records field of a Produce partition, as is;
//! - odd: a structurally valid batch is built around the rest, with a
//!   correct length and CRC, so the fuzzer gets past them at once. Byte 1:
//!   codec (bits 0-2, 5-7 are unknown codecs), compress the rest with it
//!   here (bit 3; else the rest is taken as already compressed), raw snappy
//!   rather than xerial framing (bit 4), the topic's rules (bits 5-6:
//!   default, compacted, LogAppendTime, default). Byte 2: the records count
//!   (255: i32::MAX). Byte 3: header variations (idempotent, transactional,
//!   control, LogAppendTime flag, a wrong last offset delta, base offset 1,
//!   magic 1, a max timestamp the records disagree with).
//!
//! Never panics, and memory stays bounded: decompression streams through a
//! fixed buffer up to the inflated bound (run with -rss_limit_mb and
//! -malloc_limit_mb; this target keeps the system allocator so that the
//! malloc limit sees every allocation).
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use strom_fuzz::{Header, NOW_MS};
use strom_protocol::record_walk;
use strom_protocol::records::{self, Batch};
use strom_replica::{max_inflated_bytes, validate_produce_batch, ProduceRules};

fn check(records: &[u8], rules: &ProduceRules) {
    let _ = validate_produce_batch(records, rules, NOW_MS, "fuzz-0");
    // The walker on its own, also over batches the validation refuses
    // before walking them (a bad count, a control batch, ...).
    let limit = max_inflated_bytes(rules.max_message_bytes);
    for batch in records::batches(records).take(4) {
        let Ok(batch) = batch else { break };
        let mut seen = 0usize;
        let _ = record_walk::walk(&batch, limit, |i, _meta| {
            assert_eq!(i, seen, "records are reported in order");
            seen += 1;
            Ok(ControlFlow::Continue(()))
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check(rest, &ProduceRules::default());
        return;
    }
    if rest.len() < 3 {
        return;
    }
    let (codec_flags, count, variations) = (rest[0], rest[1], rest[2]);
    let body = &rest[3..];
    let codec = codec_flags & 0x07;
    let mut rules = ProduceRules::default();
    match (codec_flags >> 5) & 0x03 {
        1 => rules.compacted = true,
        2 => rules.log_append_time = true,
        _ => {}
    }
    let count = if count == 255 {
        i32::MAX
    } else {
        i32::from(count)
    };
    let mut h = Header::plain(codec, count);
    if variations & 0x01 != 0 {
        h.producer_id = 1000;
        h.producer_epoch = 0;
        h.base_sequence = 0;
    }
    if variations & 0x02 != 0 {
        h.attributes |= 0x10;
    }
    if variations & 0x04 != 0 {
        h.attributes |= 0x20;
    }
    if variations & 0x08 != 0 {
        h.attributes |= 0x08;
    }
    if variations & 0x10 != 0 {
        h.last_offset_delta = h.last_offset_delta.wrapping_add(1);
    }
    if variations & 0x20 != 0 {
        h.base_offset = 1;
    }
    if variations & 0x40 != 0 {
        h.magic = 1;
    }
    if variations & 0x80 != 0 {
        h.max_timestamp = NOW_MS + 1000;
    }
    let payload = if codec_flags & 0x08 != 0 {
        strom_fuzz::compress(codec, body, codec_flags & 0x10 != 0)
    } else {
        body.to_vec()
    };
    let batch = h.batch(&payload);
    debug_assert!(Batch::parse(&batch).is_ok_and(|b| b.verify().is_ok() || h.magic != 2));
    check(&batch, &rules);
});
