//! Segment files past the pool's capacity are closed when idle and
//! reopened on use: many logs are served within a small open-files budget.
//! (Its own test binary: the capacity is process-wide.)

use bytes::Bytes;
use strom_protocol::records::{build_batch, BatchProducer, Compression, NewRecord};
use strom_storage::{open_segment_files, set_open_segment_files, Log, LogConfig};

fn batch(value: &str) -> Vec<u8> {
    build_batch(
        BatchProducer::NONE,
        Compression::None,
        &[NewRecord {
            key: None,
            value: Some(Bytes::from(value.to_owned())),
            timestamp: 0,
        }],
    )
    .to_vec()
}

#[test]
fn many_logs_within_a_small_open_files_budget() {
    set_open_segment_files(16);
    let dir = tempfile::tempdir().unwrap();
    // Small segments: every log has several, each a file.
    let config = LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    };
    let mut logs: Vec<Log> = (0..40)
        .map(|i| Log::open(&dir.path().join(format!("t-{i}")), config.clone()).unwrap())
        .collect();
    for round in 0..5 {
        for (i, log) in logs.iter_mut().enumerate() {
            log.append(&mut batch(&format!("{i}/{round}")), 0, 0)
                .unwrap();
            assert!(open_segment_files() <= 16, "{} open", open_segment_files());
        }
    }
    assert!(logs.iter().all(|l| l.segment_count() > 1));
    // Every record reads back, whatever was closed meanwhile, and after a
    // clean close and reopen too.
    let check = |logs: &[Log]| {
        for (i, log) in logs.iter().enumerate() {
            for round in 0..5i64 {
                let offset = round;
                let data = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
                let want = format!("{i}/{round}");
                assert!(
                    data.records
                        .windows(want.len())
                        .any(|w| w == want.as_bytes()),
                    "log {i} offset {offset}"
                );
            }
            assert!(open_segment_files() <= 16);
        }
    };
    check(&logs);
    for log in &mut logs {
        log.close().unwrap();
    }
    drop(logs);
    let logs: Vec<Log> = (0..40)
        .map(|i| Log::open(&dir.path().join(format!("t-{i}")), config.clone()).unwrap())
        .collect();
    check(&logs);
}
