//! Log tests: unit tests for roll, lookups and recovery, and a property
//! test holding the log against an in-memory model.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use proptest::prelude::*;
use strom_protocol::records::{build_batch, BatchProducer, Compression, NewRecord};

use crate::{Log, LogConfig, StorageError};

/// An encoded batch of `n` records of `size` bytes with timestamps from `ts`.
pub(crate) fn batch(n: usize, size: usize, ts: i64) -> Vec<u8> {
    let records: Vec<NewRecord> = (0..n)
        .map(|i| NewRecord {
            key: None,
            value: Some(Bytes::from(vec![b'x'; size])),
            timestamp: ts + i as i64,
        })
        .collect();
    build_batch(BatchProducer::NONE, Compression::None, &records).to_vec()
}

/// All (offset, timestamp) pairs of the records in `bytes`.
fn offsets(bytes: &[u8]) -> Vec<(i64, i64)> {
    let mut b = Bytes::copy_from_slice(bytes);
    let mut out = Vec::new();
    while !b.is_empty() {
        let set = RecordBatchDecoder::decode(&mut b).unwrap();
        out.extend(set.records.iter().map(|r| (r.offset, r.timestamp)));
    }
    out
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

#[test]
fn append_assigns_offsets_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let a = log.append(&mut batch(3, 10, 100), 0, 1).unwrap();
    let b = log.append(&mut batch(2, 10, 200), 0, 1).unwrap();
    assert_eq!((a.first_offset, a.last_offset), (0, 2));
    assert_eq!((b.first_offset, b.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);
    let all = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(
        offsets(&all.records)
            .iter()
            .map(|o| o.0)
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    // From the middle of the first batch the whole batch comes back.
    let mid = log.read(1, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(offsets(&mid.records)[0].0, 0);
    // The upper bound stops before the second batch.
    let bounded = log.read(0, 1 << 20, 3, true).unwrap();
    assert_eq!(offsets(&bounded.records).len(), 3);
    // At the end: nothing; past it: out of range.
    assert!(log.read(5, 100, i64::MAX, true).unwrap().records.is_empty());
    assert!(matches!(
        log.read(6, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn byte_limits_return_whole_batches_and_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let one = batch(1, 500, 0);
    for _ in 0..4 {
        log.append(&mut one.clone(), 0, 0).unwrap();
    }
    let size = one.len();
    let r = log.read(0, size * 2 + 10, i64::MAX, true).unwrap();
    assert_eq!(r.records.len(), size * 2);
    let r = log.read(0, 10, i64::MAX, true).unwrap();
    assert_eq!(r.records.len(), size, "one whole batch even over the limit");
    let r = log.read(0, 10, i64::MAX, false).unwrap();
    assert!(r.records.is_empty());
}

#[test]
fn rolls_by_size_and_age_and_reads_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    let mut rolled = 0;
    for i in 0..20 {
        if log
            .append(&mut batch(2, 100, i), 0, 0)
            .unwrap()
            .rolled_to
            .is_some()
        {
            rolled += 1;
        }
    }
    assert!(rolled >= 5, "rolled {rolled} times");
    assert_eq!(log.segment_count(), rolled + 1);
    let mut next = 0;
    while next < log.log_end_offset() {
        let r = log.read(next, 300, i64::MAX, true).unwrap();
        let got = offsets(&r.records);
        assert_eq!(got[0].0, next);
        next = got.last().unwrap().0 + 1;
    }
    assert_eq!(next, 40);

    log.set_config(LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    });
    let before = log.segment_count();
    // segment.ms is judged by record timestamps (Kafka's rule): a batch
    // stamped like the segment's first does not roll it, however late the
    // wall clock...
    log.append(&mut batch(1, 10, 0), 0, 10_000_000).unwrap();
    assert_eq!(log.segment_count(), before, "old records share a segment");
    // ...one stamped segment.ms past the first does.
    log.append(&mut batch(1, 10, 10_000), 0, 0).unwrap();
    assert_eq!(log.segment_count(), before + 1, "an old segment rolls");
}

#[test]
fn timestamp_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..30 {
        log.append(&mut batch(2, 60, 1000 + i * 10), 0, 0).unwrap();
    }
    // Batch i holds timestamps 1000+10i and 1001+10i at offsets 2i, 2i+1.
    let hit = log.offset_for_timestamp(1001).unwrap().unwrap();
    assert_eq!((hit.offset, hit.timestamp), (1, 1001));
    let hit = log.offset_for_timestamp(1155).unwrap().unwrap();
    assert_eq!((hit.offset, hit.timestamp), (32, 1160));
    assert!(log.offset_for_timestamp(5000).unwrap().is_none());
    let max = log.max_timestamp().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (59, 1291));
}

#[test]
fn log_append_time_rewrites_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        log_append_time: true,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), cfg).unwrap();
    let info = log.append(&mut batch(2, 10, 5), 0, 777).unwrap();
    assert_eq!(info.log_append_time, Some(777));
    let hit = log.max_timestamp().unwrap().unwrap();
    assert_eq!(hit.timestamp, 777);
}

#[test]
fn clean_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..20 {
        log.append(&mut batch(2, 100, i), 0, 0).unwrap();
    }
    let segments = log.segment_count();
    log.close().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.segment_count(), segments);
    assert_eq!(
        offsets(&log.read(37, 1 << 20, i64::MAX, true).unwrap().records)[0].0,
        36
    );
    // Batch 14 holds timestamps 14 and 15 at offsets 28 and 29.
    assert_eq!(log.offset_for_timestamp(15).unwrap().unwrap().offset, 29);
}

fn active_segment_path(dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn recovery_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..5 {
        log.append(&mut batch(1, 50, i), 0, 0).unwrap();
    }
    drop(log); // no close: as after kill -9
    let path = active_segment_path(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 7).unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    let info = log.append(&mut batch(1, 50, 9), 0, 0).unwrap();
    assert_eq!(info.first_offset, 4, "appends continue after the cut");
    assert_eq!(
        offsets(&log.read(0, 1 << 20, i64::MAX, true).unwrap().records).len(),
        5
    );
}

#[test]
fn recovery_truncates_at_a_corrupt_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let one = batch(1, 50, 0);
    for _ in 0..5 {
        log.append(&mut one.clone(), 0, 0).unwrap();
    }
    drop(log);
    let path = active_segment_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[one.len() * 2 + 70] ^= 0xff; // inside the third batch's records
    std::fs::write(&path, &bytes).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        one.len() as u64 * 2
    );
}

#[test]
fn unclean_reopen_rebuilds_the_active_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..25 {
        log.append(&mut batch(1, 100, i * 3), 0, 0).unwrap();
    }
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), 25);
    for o in 0..25 {
        let r = log.read(o, 1, i64::MAX, true).unwrap();
        assert_eq!(offsets(&r.records)[0].0, o);
    }
    assert_eq!(log.offset_for_timestamp(70).unwrap().unwrap().offset, 24);
}

#[test]
fn retention_by_bytes_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..20 {
        log.append(&mut batch(2, 100, i), 0, 0).unwrap();
    }
    let mut cfg = small_segments();
    cfg.retention_bytes = 2000;
    log.set_config(cfg.clone());
    assert!(log.enforce_retention(0, i64::MAX).unwrap() > 0);
    assert!(log.size_bytes() <= 2000 + 1000);
    assert!(log.log_start_offset() > 0);
    let start = log.log_start_offset();
    assert!(matches!(
        log.read(start - 1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    cfg.retention_bytes = -1;
    cfg.retention_ms = 10;
    log.set_config(cfg);
    log.enforce_retention(1_000_000, i64::MAX).unwrap();
    assert_eq!(log.segment_count(), 1, "only the active segment stays");
    assert_eq!(log.log_end_offset(), 40);
}

#[test]
fn retention_deletes_nothing_past_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..20 {
        log.append(&mut batch(2, 100, i), 0, 0).unwrap();
    }
    let mut cfg = small_segments();
    cfg.retention_ms = 10;
    log.set_config(cfg);
    // Every record expired, but only those below offset 11 are committed.
    log.enforce_retention(1_000_000, 11).unwrap();
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 11, "start {start}");
    assert!(log.read(11, 100, i64::MAX, true).is_ok());
    log.enforce_retention(1_000_000, 40).unwrap();
    assert_eq!(log.log_start_offset(), 40);
}

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, size: usize },
    Read { at: usize, max_bytes: usize },
    Reopen { clean: bool },
}

#[test]
fn advancing_the_log_start_deletes_below_it_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..20 {
        log.append(&mut batch(5, 20, i * 10), 0, 1).unwrap();
    }
    let segments = log.segment_count();
    assert!(segments > 3, "{segments} segments");
    assert_eq!(log.advance_log_start(42, 1_000).unwrap(), 42);
    assert_eq!(log.log_start_offset(), 42);
    assert!(
        log.segment_count() < segments,
        "segments wholly below 42 go"
    );
    assert!(matches!(
        log.read(41, 1 << 20, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // From the start, the batch holding offset 42 (offsets 40-44) comes back.
    let from_start = offsets(&log.read(42, 1 << 20, i64::MAX, true).unwrap().records);
    assert_eq!(from_start.first().map(|o| o.0), Some(40));
    // Lower is a no-op; past the end stops at the end.
    assert_eq!(log.advance_log_start(10, 1_000).unwrap(), 42);
    // No clean close: the start must still be 42 after recovery.
    drop(log);
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_start_offset(), 42);
    assert_eq!(log.advance_log_start(1_000, 1_000).unwrap(), 100);
    assert_eq!(log.segment_count(), 1, "only the active segment stays");
    assert_eq!(log.log_end_offset(), 100);
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
}

#[test]
fn a_recorded_log_start_is_clamped_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&mut batch(5, 20, 0), 0, 1).unwrap();
    drop(log);
    // Past what recovery kept: the end. Unreadable: the first segment.
    std::fs::write(dir.path().join("log-start-offset"), b"900\n").unwrap();
    assert_eq!(
        Log::open(dir.path(), LogConfig::default())
            .unwrap()
            .log_start_offset(),
        5
    );
    std::fs::write(dir.path().join("log-start-offset"), b"-3").unwrap();
    assert_eq!(
        Log::open(dir.path(), LogConfig::default())
            .unwrap()
            .log_start_offset(),
        0
    );
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..5, 0usize..200).prop_map(|(records, size)| Op::Append { records, size }),
        3 => (any::<usize>(), 1usize..2000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

proptest! {
    /// The log start offset file: what is written reads back; anything else
    /// is a non-negative number or nothing, never a panic.
    #[test]
    fn log_start_offset_file_parses(offset in 0i64..i64::MAX, junk in proptest::collection::vec(any::<u8>(), 0..24)) {
        prop_assert_eq!(crate::parse_log_start_offset(format!("{offset}\n").as_bytes()), Some(offset));
        if let Some(parsed) = crate::parse_log_start_offset(&junk) {
            prop_assert!(parsed >= 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The log against a model: a vector of (offset, timestamp) records.
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes: 1500, index_interval_bytes: 200, ..LogConfig::default() };
        let mut log = Some(Log::open(dir.path(), cfg.clone()).unwrap());
        let mut model: Vec<(i64, i64)> = Vec::new();
        let mut ts = 0i64;
        for op in ops {
            let l = log.as_mut().unwrap();
            match op {
                Op::Append { records, size } => {
                    let info = l.append(&mut batch(records, size, ts), 0, 0).unwrap();
                    prop_assert_eq!(info.first_offset, model.len() as i64);
                    for i in 0..records {
                        model.push((model.len() as i64, ts + i as i64));
                    }
                    ts += 1000;
                }
                Op::Read { at, max_bytes } => {
                    let at = if model.is_empty() { 0 } else { at % (model.len() + 1) } as i64;
                    let got = offsets(&l.read(at, max_bytes, i64::MAX, true).unwrap().records);
                    if (at as usize) < model.len() {
                        prop_assert!(!got.is_empty());
                        // Starts with the batch holding `at`, contiguous, matching the model.
                        prop_assert!(got[0].0 <= at);
                        for (o, t) in &got {
                            prop_assert_eq!(model[*o as usize], (*o, *t));
                        }
                        prop_assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1));
                        prop_assert!(got.last().unwrap().0 >= at);
                    } else {
                        prop_assert!(got.is_empty());
                    }
                }
                Op::Reopen { clean } => {
                    let mut l = log.take().unwrap();
                    if clean { l.close().unwrap() } else { drop(l) }
                    log = Some(Log::open(dir.path(), cfg.clone()).unwrap());
                }
            }
            let l = log.as_ref().unwrap();
            prop_assert_eq!(l.log_end_offset(), model.len() as i64);
            if let Some(&(o, t)) = model.iter().find(|r| r.1 >= ts / 2) {
                let hit = l.offset_for_timestamp(ts / 2).unwrap().unwrap();
                prop_assert_eq!((hit.offset, hit.timestamp), (o, t));
            }
        }
    }
}

#[test]
fn roll_queues_the_old_segment_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    let mut rolls = 0;
    for i in 0..20 {
        rolls += usize::from(
            log.append(&mut batch(2, 100, i), 0, 0)
                .unwrap()
                .rolled_to
                .is_some(),
        );
    }
    let pending = log.take_pending_flushes();
    assert_eq!(pending.len(), rolls, "one queued fsync per rolled segment");
    assert!(log.take_pending_flushes().is_empty());
    for (_, f) in pending {
        f.sync_data().unwrap();
    }
    log.append(&mut batch(2, 900, 0), 0, 0).unwrap();
    log.flush().unwrap();
    assert!(
        log.take_pending_flushes().is_empty(),
        "flush() syncs queued segments too"
    );
}

fn aborted(producer_id: i64, first_offset: i64, last_offset: i64) -> crate::AbortedTxn {
    crate::AbortedTxn {
        producer_id,
        first_offset,
        last_offset,
        last_stable_offset: last_offset + 1,
    }
}

#[test]
fn aborted_transactions_are_indexed_per_segment_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..30 {
        log.append(&mut batch(1, 100, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 3);
    // Markers (here stand-ins) at 5, 17 and 28, each in its own segment.
    assert!(log.add_aborted(aborted(1, 2, 5)));
    assert!(log.add_aborted(aborted(2, 9, 17)));
    assert!(log.add_aborted(aborted(1, 26, 28)));
    assert!(!log.add_aborted(aborted(2, 9, 17)), "adding is idempotent");
    let ids = |v: Vec<crate::AbortedTxn>| v.iter().map(|t| t.last_offset).collect::<Vec<_>>();
    assert_eq!(ids(log.aborted_txns(0, 30)), vec![5, 17, 28]);
    assert_eq!(ids(log.aborted_txns(6, 17)), vec![17]);
    assert_eq!(
        ids(log.aborted_txns(6, 9)),
        Vec::<i64>::new(),
        "a transaction that begins at the upper bound is not in range"
    );
    assert_eq!(ids(log.aborted_txns(18, 27)), vec![28]);
    drop(log); // unclean
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(ids(log.aborted_txns(0, 30)), vec![5, 17, 28]);
    log.close().unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(ids(log.aborted_txns(0, 30)), vec![5, 17, 28]);
    // Retention removes the index with its segment.
    let mut cfg = small_segments();
    cfg.retention_bytes = 1500;
    log.set_config(cfg);
    log.enforce_retention(0, i64::MAX).unwrap();
    assert!(log.log_start_offset() > 17);
    assert_eq!(ids(log.aborted_txns(log.log_start_offset(), 30)), vec![28]);
}

#[test]
fn an_index_entry_whose_marker_was_truncated_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..5 {
        log.append(&mut batch(1, 50, i), 0, 0).unwrap();
    }
    log.add_aborted(aborted(7, 1, 4));
    drop(log);
    let path = active_segment_path(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 7).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert!(log.aborted_txns(0, 10).is_empty());
}

#[test]
fn an_index_entry_whose_file_write_failed_is_kept_and_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..5 {
        log.append(&mut batch(1, 50, i), 0, 0).unwrap();
    }
    // A directory where the index file should be: every write to it fails.
    let index = dir.path().join("00000000000000000000.txnindex");
    std::fs::create_dir(&index).unwrap();
    assert!(log.add_aborted(aborted(7, 1, 4)));
    assert_eq!(log.aborted_txns(0, 5).len(), 1, "reads see it at once");
    assert!(log.flush().is_err(), "the file cannot be made current yet");
    std::fs::remove_dir(&index).unwrap();
    log.flush().unwrap();
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.aborted_txns(0, 5).len(), 1);
}
