//! What Strom reads back from disk. The first byte picks the format:
//! 0. the segment indexes (`index::decode_offsets` with the segment size
//!    from the next 8 bytes, `index::decode_times`) and the aborted-txn
//!    index entries (`txn_index::decode`) and the log start offset
//!    (`parse_log_start_offset`), all over the same bytes;
//! 1. a producer snapshot (`ProducerStateManager::decode`), as is;
//! 2. a producer snapshot with its CRC appended here, so the fuzzer gets
//!    past it; what decodes must encode and decode back to itself;
//! 3. the metadata log (`strom_controller::parse_metadata_log`), as is;
//! 4. the metadata log with each part (split at `strom_fuzz::SEP`) framed
//!    here with its length and CRC, so the JSON records inside are reached;
//! 5. a partition directory, recovered as a partition is opened: the next
//!    byte says which files exist, the rest are their contents split at
//!    `SEP`: segment 0's `.log`, `.index`, `.timeindex`, `.txnindex`, a
//!    producer `.snapshot`, a second segment's `.log`, and, when a seventh
//!    part is there, the `log-start-offset` that DeleteRecords writes. Flags: bit 0 a
//!    clean-shutdown marker (so indexes are trusted), bit 1 recompute the
//!    CRC of every batch in the `.log` files, bits 2-4 write the `.index`,
//!    `.timeindex`, `.txnindex`, bit 5 the snapshot, bit 6 append its CRC,
//!    bit 7 the second segment. Then `Log::open` (recovery's scan, index
//!    loading, the aborted-txn index loader), the producer state rebuilt
//!    from the snapshot and the log as `Partition::open` does, reads by
//!    offset and by time, a cleaning (as of a compacted topic) of all but a
//!    fresh active segment, which must keep the log's end, and a clean
//!    close and reopen, which must find the same log.
//!
//! Never panics; memory stays bounded by what is on disk. It runs with the
//! broker's allocator, which reserves without committing what a forged count
//! asks for (the kafka-protocol decoder behind `records::control_marker`
//! sizes a vector from a control batch's record count). The `strict` build
//! uses the system allocator instead, so the malloc limit sees that, and
//! also checks that a recovered log's start is not past its end and that a
//! cleanly closed log reopens to the same offsets (all three known to fail
//! on corrupt segments; see fuzz/README.md).
#![no_main]

#[cfg(not(feature = "strict"))]
#[global_allocator]
static ALLOC: strom_alloc::Guarded = strom_alloc::Guarded;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strom_fuzz::{fix_all_crcs, sections, NOW_MS};
use strom_producer::ProducerStateManager;
use strom_protocol::records;
use strom_storage::{index, txn_index, AbortedTxn, CleanerSettings, Log, LogConfig, Throttle};

fn scratch_dir() -> tempfile::TempDir {
    // Memory-backed when the machine has it: a run writes a few files.
    let shm = Path::new("/dev/shm");
    let mut b = tempfile::Builder::new();
    b.prefix("strom-fuzz-");
    if shm.is_dir() {
        if let Ok(d) = b.tempdir_in(shm) {
            return d;
        }
    }
    b.tempdir().expect("a temporary directory")
}

fn stem(base: i64) -> String {
    format!("{base:020}")
}

/// The offset after the last whole batch at the front of `log`.
fn next_offset(log: &[u8]) -> Option<i64> {
    records::batches(log).map_while(Result::ok).last().map(|b| {
        b.base_offset()
            .wrapping_add(i64::from(b.last_offset_delta()))
            .wrapping_add(1)
    })
}

fn partition_dir(flags: u8, parts: &[&[u8]]) {
    let part = |i: usize| parts.get(i).copied().unwrap_or(&[]);
    let dir = scratch_dir();
    let d = dir.path();
    let mut log0 = part(0).to_vec();
    let mut log1 = part(5).to_vec();
    if flags & 0x02 != 0 {
        fix_all_crcs(&mut log0);
        fix_all_crcs(&mut log1);
    }
    std::fs::write(d.join(format!("{}.log", stem(0))), &log0).unwrap();
    if flags & 0x04 != 0 {
        std::fs::write(d.join(format!("{}.index", stem(0))), part(1)).unwrap();
    }
    if flags & 0x08 != 0 {
        std::fs::write(d.join(format!("{}.timeindex", stem(0))), part(2)).unwrap();
    }
    if flags & 0x10 != 0 {
        std::fs::write(d.join(format!("{}.txnindex", stem(0))), part(3)).unwrap();
    }
    let after0 = next_offset(&log0).filter(|o| *o > 0).unwrap_or(1);
    if flags & 0x20 != 0 {
        let mut snap = part(4).to_vec();
        if flags & 0x40 != 0 {
            let crc = crc32c::crc32c(&snap);
            snap.extend_from_slice(&crc.to_be_bytes());
        }
        std::fs::write(d.join(format!("{}.snapshot", stem(after0))), snap).unwrap();
    }
    if flags & 0x80 != 0 {
        std::fs::write(d.join(format!("{}.log", stem(after0))), &log1).unwrap();
    }
    if parts.len() > 6 {
        std::fs::write(d.join("log-start-offset"), part(6)).unwrap();
    }
    if flags & 0x01 != 0 {
        std::fs::write(d.join(".clean_shutdown"), b"").unwrap();
    }

    let Ok(mut log) = Log::open(d, LogConfig::default()) else {
        return;
    };
    // As Partition::open: producer state from the newest usable snapshot,
    // then the log after it, re-indexing the aborted transactions met.
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    if strom_fuzz::invariants() {
        assert!(start <= end, "log start {start} past its end {end}");
    }
    let _ = strom_producer::delete_snapshots_above(d, end);
    let (from, mut producers) = strom_producer::latest_snapshot(d, end)
        .ok()
        .flatten()
        .unwrap_or((start, ProducerStateManager::new()));
    let mut completed = Vec::new();
    let _ = log.scan_batches(from, |b| {
        if let Some(done) = producers.replay(&b) {
            completed.push((done, producers.first_unstable_offset()));
        }
    });
    for (done, unstable) in completed {
        if done.aborted {
            log.add_aborted(AbortedTxn {
                producer_id: done.producer_id,
                first_offset: done.first_offset,
                last_offset: done.last_offset,
                last_stable_offset: unstable.unwrap_or(done.last_offset + 1),
            });
        }
    }
    // Reads, as Fetch and ListOffsets make them.
    let _ = log.read(start, 64 * 1024, i64::MAX, true);
    let _ = log.read(end, 64 * 1024, i64::MAX, true);
    let _ = log.offset_for_timestamp(NOW_MS);
    let _ = log.offset_for_timestamp(0);
    let _ = log.max_timestamp();
    let _ = log.aborted_txns(start, end);
    // The cleaner over whatever the segments hold: it may refuse a batch,
    // never panic, and a cleaning it finishes keeps the log's end.
    let mut compacted = LogConfig::default();
    compacted.compact = true;
    log.set_config(compacted);
    if log.roll().is_ok() {
        let producers_last = std::collections::HashMap::new();
        let settings = CleanerSettings {
            dedupe_buffer_bytes: 1 << 20,
            io_max_bytes_per_second: f64::MAX,
        };
        if let Ok(Some(job)) = log.plan_cleaning(NOW_MS, i64::MAX) {
            let run = job.run(&settings, &producers_last, NOW_MS, &mut Throttle::new(f64::MAX), &|| false);
            if let Ok(Some(cleaned)) = run {
                let before = log.log_end_offset();
                if log.install_cleaned(cleaned, NOW_MS).unwrap_or(false) {
                    assert_eq!(log.log_end_offset(), before, "cleaning moved the log end");
                    let _ = log.read(log.log_start_offset(), 64 * 1024, i64::MAX, true);
                }
            }
        }
    }
    log.set_config(LogConfig::default());
    let end = log.log_end_offset();
    // A clean close, then the indexes it wrote are trusted on reopen.
    if log.close().is_ok() {
        drop(log);
        let again = Log::open(d, LogConfig::default());
        if strom_fuzz::invariants() {
            let again = again.expect("a cleanly closed log reopens");
            assert_eq!(
                (again.log_start_offset(), again.log_end_offset()),
                (start, end),
                "reopening a cleanly closed log finds another log"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&format, rest)) = data.split_first() else {
        return;
    };
    match format % 6 {
        0 => {
            let (size, bytes) = rest.split_at(rest.len().min(8));
            let mut s = [0u8; 8];
            s[..size.len()].copy_from_slice(size);
            let _ = index::decode_offsets(bytes, u64::from_be_bytes(s));
            let _ = index::decode_times(bytes);
            let _ = txn_index::decode(bytes);
            if let Some(start) = strom_storage::parse_log_start_offset(bytes) {
                assert!(start >= 0, "a log start offset is never negative");
            }
        }
        1 => {
            let _ = ProducerStateManager::decode(rest);
        }
        2 => {
            let mut snap = rest.to_vec();
            let crc = crc32c::crc32c(&snap);
            snap.extend_from_slice(&crc.to_be_bytes());
            if let Ok(state) = ProducerStateManager::decode(&snap) {
                let again = ProducerStateManager::decode(&state.encode())
                    .expect("an encoded snapshot decodes");
                assert_eq!(again, state, "a snapshot round trip changed the state");
            }
        }
        3 => {
            let (_, valid) = strom_controller::parse_metadata_log(rest);
            assert!(valid <= rest.len());
        }
        4 => {
            let mut file = Vec::new();
            let mut ends = vec![0];
            for payload in sections(rest) {
                file.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                file.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
                file.extend_from_slice(payload);
                ends.push(file.len());
            }
            let (entries, valid) = strom_controller::parse_metadata_log(&file);
            assert_eq!(
                valid,
                ends[entries.len()],
                "valid prefix ends after the entries parsed"
            );
        }
        _ => {
            let Some((&flags, files)) = rest.split_first() else {
                return;
            };
            partition_dir(flags, &sections(files));
        }
    }
});
