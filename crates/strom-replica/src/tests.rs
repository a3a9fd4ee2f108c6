use std::collections::BTreeMap;

use bytes::Bytes;
use strom_metadata::config::StaticConfig;
use strom_metadata::{MetadataImage, MetadataRecord, Uuid};
use strom_protocol::records::{build_batch, BatchProducer, Compression, NewRecord};
use strom_protocol::ErrorCode;

use strom_protocol::records::ControlMarker;

use crate::{Isolation, OffsetSpec, ReplicaManager};

fn batch(pid: i64, epoch: i16, seq: i32, n: usize, ts: i64) -> Vec<u8> {
    batch_of(pid, epoch, seq, n, ts, false)
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    batch_of(pid, epoch, seq, n, 0, true)
}

fn batch_of(pid: i64, epoch: i16, seq: i32, n: usize, ts: i64, transactional: bool) -> Vec<u8> {
    let producer = if pid < 0 {
        BatchProducer::NONE
    } else {
        BatchProducer {
            id: pid,
            epoch,
            base_sequence: seq,
            transactional,
        }
    };
    let records: Vec<NewRecord> = (0..n)
        .map(|_| NewRecord {
            key: None,
            value: Some(Bytes::from_static(b"value")),
            timestamp: ts,
        })
        .collect();
    build_batch(producer, Compression::None, &records).to_vec()
}

fn image(topic: &str, id: u128, configs: &[(&str, &str)]) -> MetadataImage {
    let topic_id = Uuid::from_u128(id);
    let mut records = vec![MetadataRecord::Topic {
        name: topic.into(),
        topic_id,
    }];
    records.extend(configs.iter().map(|(k, v)| MetadataRecord::Config {
        resource: strom_metadata::ConfigResource::Topic(topic.into()),
        name: (*k).into(),
        value: Some((*v).into()),
    }));
    records.push(MetadataRecord::Partition {
        topic_id,
        partition: 0,
        replicas: vec![1],
        isr: vec![1],
        leader: 1,
        leader_epoch: 0,
        partition_epoch: Some(0),
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    });
    MetadataImage::empty().apply(0, &records)
}

fn manager(dir: &std::path::Path) -> ReplicaManager {
    manager_with(dir, &[])
}

fn manager_with(dir: &std::path::Path, settings: &[(&str, &str)]) -> ReplicaManager {
    let settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ReplicaManager::new(1, dir, StaticConfig::new(settings).unwrap().0)
}

/// Retention checked at every maintenance, from the first one on.
const RETENTION_EVERY_TICK: &[(&str, &str)] = &[
    ("log.initial.task.delay.ms", "0"),
    ("log.retention.check.interval.ms", "1"),
];

#[test]
fn produce_errors_use_kafka_codes() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[("max.message.bytes", "200")]))
        .unwrap();
    let p = rm.get("t", 0).unwrap();
    let code = |bytes: &[u8]| p.append(bytes, 0, None).unwrap_err().code;
    assert_eq!(code(&[]), ErrorCode::InvalidRecord);
    let mut two = batch(-1, -1, 0, 1, 0);
    two.extend(batch(-1, -1, 0, 1, 0));
    assert_eq!(code(&two), ErrorCode::InvalidRecord);
    assert_eq!(code(&batch(-1, -1, 0, 20, 0)), ErrorCode::MessageTooLarge);
    let mut corrupt = batch(-1, -1, 0, 1, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert_eq!(code(&corrupt), ErrorCode::CorruptMessage);
    let mut old_magic = batch(-1, -1, 0, 1, 0);
    old_magic[16] = 1;
    assert_eq!(code(&old_magic), ErrorCode::InvalidRecord);
    // Cut short, it is no batch at all (Kafka's INVALID_RECORD).
    assert_eq!(code(&corrupt[..30]), ErrorCode::InvalidRecord);
    assert_eq!(
        p.append(&batch(-1, -1, 0, 1, 0), 0, None)
            .unwrap()
            .base_offset,
        0
    );
}

#[test]
fn idempotent_dedup_survives_unclean_and_clean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    let img = image("t", 1, &[("segment.bytes", "300")]);
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    let mut offsets = Vec::new();
    for i in 0..10 {
        offsets.push(
            p.append(&batch(7, 0, i * 2, 2, 0), 0, None)
                .unwrap()
                .base_offset,
        );
    }
    // A retry of the last batch is answered with its original offset.
    assert_eq!(
        p.append(&batch(7, 0, 18, 2, 0), 0, None)
            .unwrap()
            .base_offset,
        18
    );
    assert_eq!(
        p.append(&batch(7, 0, 30, 2, 0), 0, None).unwrap_err().code,
        ErrorCode::OutOfOrderSequenceNumber
    );
    drop(p);
    drop(rm); // as after kill -9: nothing closed
    let rm = manager(dir.path());
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    assert_eq!(
        p.append(&batch(7, 0, 16, 2, 0), 0, None)
            .unwrap()
            .base_offset,
        16
    );
    assert_eq!(
        p.append(&batch(7, 0, 20, 2, 0), 0, None)
            .unwrap()
            .base_offset,
        20
    );
    assert_eq!(
        p.append(&batch(7, -1, 22, 1, 0), 0, None).unwrap_err().code,
        ErrorCode::InvalidProducerEpoch
    );
    drop(p);
    rm.shutdown();
    let rm = manager(dir.path());
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    assert_eq!(
        p.append(&batch(7, 0, 20, 2, 0), 0, None)
            .unwrap()
            .base_offset,
        20
    );
    assert_eq!(p.log_end_offset(), 22);
}

#[test]
fn list_offsets_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[])).unwrap();
    let p = rm.get("t", 0).unwrap();
    for ts in [100, 300, 200] {
        p.append(&batch(-1, -1, 0, 1, ts), 0, None).unwrap();
    }
    let at = |spec| p.list_offset(spec, Isolation::ReadUncommitted).unwrap();
    assert_eq!(at(OffsetSpec::Earliest).offset, 0);
    assert_eq!(at(OffsetSpec::Latest).offset, 3);
    assert_eq!(
        (
            at(OffsetSpec::MaxTimestamp).offset,
            at(OffsetSpec::MaxTimestamp).timestamp
        ),
        (1, 300)
    );
    assert_eq!(at(OffsetSpec::Timestamp(150)).offset, 1);
    assert_eq!(at(OffsetSpec::Timestamp(301)).offset, -1);
    assert_eq!(
        p.read(4, 100, true, Isolation::ReadUncommitted)
            .unwrap_err(),
        ErrorCode::OffsetOutOfRange
    );
    assert!(p
        .read(3, 100, true, Isolation::ReadUncommitted)
        .unwrap()
        .records
        .is_empty());
    assert_eq!(
        p.read(0, 1 << 20, true, Isolation::ReadUncommitted)
            .unwrap()
            .high_watermark,
        3
    );
}

#[test]
fn deleted_and_recreated_topics_lose_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[])).unwrap();
    rm.get("t", 0)
        .unwrap()
        .append(&batch(-1, -1, 0, 1, 0), 0, None)
        .unwrap();
    rm.shutdown();
    // Recreated under a new id while the node was down.
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 2, &[])).unwrap();
    assert_eq!(rm.get("t", 0).unwrap().log_end_offset(), 0);
    rm.apply_image(&MetadataImage::empty()).unwrap();
    assert!(rm.get("t", 0).is_none());
    assert!(!dir.path().join("t-0").exists());
}

#[test]
fn transactions_bound_read_committed_and_abort_ranges_survive_kill() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    let img = image("t", 1, &[("segment.bytes", "400")]);
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    let committed = Isolation::ReadCommitted;
    p.append(&batch(-1, -1, 0, 2, 0), 0, None).unwrap(); // 0..=1
    p.append(&txn_batch(5, 0, 0, 2), 0, Some(p.start_verification(5)))
        .unwrap(); // 2..=3, producer 5
    p.append(&txn_batch(6, 0, 0, 1), 0, Some(p.start_verification(6)))
        .unwrap(); // 4, producer 6
    assert_eq!(
        p.append(&batch(5, 0, 2, 1, 0), 0, None).unwrap_err().code,
        ErrorCode::InvalidTxnState,
        "a plain write inside an open transaction"
    );
    assert_eq!(p.last_stable_offset(), 2);
    let r = p.read(0, 1 << 20, true, committed).unwrap();
    assert_eq!((r.high_watermark, r.last_stable_offset), (5, 2));
    assert_eq!(strom_protocol::records::batches(&r.records).count(), 1);
    assert_eq!(r.aborted, Some(vec![]));
    assert!(p
        .read(0, 1 << 20, true, Isolation::ReadUncommitted)
        .unwrap()
        .aborted
        .is_none());
    assert_eq!(
        p.list_offset(OffsetSpec::Latest, committed).unwrap().offset,
        2
    );
    // Producer 5 aborts (marker at 5); producer 6 is still open.
    assert_eq!(
        p.append_marker(5, 0, ControlMarker::Abort, 0, 0)
            .unwrap()
            .base_offset,
        5
    );
    assert_eq!(p.last_stable_offset(), 4);
    assert_eq!(
        p.append_marker(5, -1, ControlMarker::Abort, 0, 0)
            .unwrap_err()
            .0,
        ErrorCode::InvalidProducerEpoch
    );
    p.append_marker(6, 0, ControlMarker::Commit, 0, 0).unwrap(); // 6
    assert_eq!(p.last_stable_offset(), 7);
    let r = p.read(2, 1 << 20, true, committed).unwrap();
    let aborted = r.aborted.unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (
            aborted[0].producer_id,
            aborted[0].first_offset,
            aborted[0].last_offset
        ),
        (5, 2, 5)
    );
    assert!(p
        .read(6, 1 << 20, true, committed)
        .unwrap()
        .aborted
        .unwrap()
        .is_empty());
    // An open transaction survives a kill, and so does the abort index.
    p.append(&txn_batch(5, 1, 0, 1), 0, Some(p.start_verification(5)))
        .unwrap(); // 7
    drop(p);
    drop(rm);
    let rm = manager(dir.path());
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    assert_eq!(p.last_stable_offset(), 7);
    let aborted = p
        .read(0, 1 << 20, true, committed)
        .unwrap()
        .aborted
        .unwrap();
    assert_eq!(
        aborted.iter().map(|t| t.last_offset).collect::<Vec<_>>(),
        vec![5]
    );
    p.append_marker(5, 1, ControlMarker::Commit, 0, 0).unwrap();
    assert_eq!(p.last_stable_offset(), 9);
    let summary = p.producers().unwrap();
    assert_eq!(
        summary.iter().map(|s| s.producer_id).collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert!(summary.iter().all(|s| s.current_txn_start_offset == -1));
}

#[test]
fn a_lost_abort_index_entry_is_restored_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    let img = image("t", 1, &[]);
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    p.append(&txn_batch(5, 0, 0, 2), 0, Some(p.start_verification(5)))
        .unwrap();
    p.append_marker(5, 0, ControlMarker::Abort, 0, 0).unwrap();
    drop(p);
    drop(rm);
    // As if the process died between writing the marker and its entry.
    for e in std::fs::read_dir(dir.path().join("t-0")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "txnindex") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let rm = manager(dir.path());
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    let aborted = p
        .read(0, 1 << 20, true, Isolation::ReadCommitted)
        .unwrap()
        .aborted
        .unwrap();
    assert_eq!(aborted.len(), 1);
}

#[test]
fn retention_deletes_only_under_the_delete_policy() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager_with(dir.path(), RETENTION_EVERY_TICK);
    let overrides = [("segment.bytes", "200"), ("retention.ms", "1")];
    let compacted: Vec<(&str, &str)> = overrides
        .iter()
        .copied()
        .chain([("cleanup.policy", "compact")])
        .collect();
    rm.apply_image(&image("t", 1, &compacted)).unwrap();
    let p = rm.get("t", 0).unwrap();
    let keyed = build_batch(
        BatchProducer::NONE,
        Compression::None,
        &[NewRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"value")),
            timestamp: 0,
        }],
    );
    for _ in 0..10 {
        p.append(&keyed, 0, None).unwrap();
    }
    rm.maintain(1_000_000);
    assert_eq!(
        p.log_start_offset(),
        0,
        "a compacted topic keeps old segments"
    );
    let both: Vec<(&str, &str)> = overrides
        .iter()
        .copied()
        .chain([("cleanup.policy", "compact,delete")])
        .collect();
    rm.apply_image(&image("t", 1, &both)).unwrap();
    rm.maintain(1_000_001);
    assert!(p.log_start_offset() > 0, "compact,delete also deletes");
}

#[test]
fn a_marker_voids_a_verification_guard() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[])).unwrap();
    let p = rm.get("t", 0).unwrap();
    let refused = |r: Result<_, crate::ProduceError>| r.unwrap_err().code;
    // Unverified: a transactional batch cannot open a transaction here.
    assert_eq!(
        refused(p.append(&txn_batch(5, 0, 0, 1), 0, None)),
        ErrorCode::InvalidTxnState
    );
    let guard = p.start_verification(5);
    p.append(&txn_batch(5, 0, 0, 1), 0, Some(guard)).unwrap();
    // The transaction is open here: later batches need no guard.
    p.append(&txn_batch(5, 0, 1, 1), 0, None).unwrap();
    // Verified, then the transaction ended before the append: refused, so
    // the late batch cannot leave a transaction open for ever.
    let late = p.start_verification(5);
    p.append_marker(5, 0, ControlMarker::Commit, 0, 0).unwrap();
    assert_eq!(
        refused(p.append(&txn_batch(5, 0, 2, 1), 0, Some(late))),
        ErrorCode::InvalidTxnState
    );
    assert_eq!(p.last_stable_offset(), p.log_end_offset());
}

#[test]
fn idle_producers_are_forgotten_at_the_check_interval() {
    let dir = tempfile::tempdir().unwrap();
    let config = StaticConfig::new(BTreeMap::from([
        ("producer.id.expiration.ms".to_owned(), "1000".to_owned()),
        (
            "producer.id.expiration.check.interval.ms".to_owned(),
            "500".to_owned(),
        ),
    ]))
    .unwrap()
    .0;
    let rm = ReplicaManager::new(1, dir.path(), config);
    rm.apply_image(&image("t", 1, &[])).unwrap();
    let p = rm.get("t", 0).unwrap();
    p.append(&batch(7, 0, 0, 1, 10_000), 0, None).unwrap();
    rm.maintain(10_900);
    assert_eq!(p.producers().unwrap().len(), 1);
    rm.maintain(11_100);
    assert_eq!(p.producers().unwrap().len(), 1, "not yet the next check");
    rm.maintain(11_400);
    assert!(p.producers().unwrap().is_empty());
}

/// Writers append concurrently while readers fetch at the highest high
/// watermark they have seen: the high watermark never moves back, a fetch
/// up to it never gets OFFSET_OUT_OF_RANGE, and the log holds exactly what
/// was acknowledged, each batch at the offset its append reported (the
/// model: base offset -> the writer and batch that got it).
#[test]
fn high_watermark_is_monotonic_under_concurrent_appends() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use strom_protocol::records;

    const WRITERS: i64 = 6;
    const BATCHES: i64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[("segment.bytes", "1048576")]))
        .unwrap();
    let p = rm.get("t", 0).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (p, done) = (p.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0i64;
                let mut fetches = 0u64;
                while !done.load(Ordering::Acquire) {
                    let hw = p.high_watermark();
                    assert!(hw >= seen, "high watermark moved back from {seen} to {hw}");
                    seen = hw;
                    if let Err(code) = p.read(seen, 4096, true, Isolation::ReadUncommitted) {
                        panic!("fetch at high watermark {seen}: {code:?}");
                    }
                    fetches += 1;
                    // Let writers have the partition: a reader spinning on
                    // its lock only slows the test down.
                    std::thread::yield_now();
                }
                fetches
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let p = p.clone();
            std::thread::spawn(move || {
                (0..BATCHES)
                    .map(|j| {
                        // The timestamp names the batch; its size varies.
                        let n = 1 + ((w * 7 + j * 3) % 5) as usize;
                        let ts = w * 1_000_000 + j;
                        let r = p.append(&batch(-1, -1, 0, n, ts), ts, None).unwrap();
                        (r.base_offset, (ts, n as i64))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut model = BTreeMap::new();
    for w in writers {
        for (base, entry) in w.join().unwrap() {
            assert!(
                model.insert(base, entry).is_none(),
                "offset {base} given twice"
            );
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let expected_end: i64 = model.values().map(|(_, n)| n).sum();
    assert_eq!(p.log_end_offset(), expected_end);
    assert_eq!(p.high_watermark(), expected_end);
    let mut offset = 0;
    while offset < expected_end {
        let read = p
            .read(offset, 1 << 20, true, Isolation::ReadUncommitted)
            .unwrap();
        for b in records::batches(&read.records) {
            let b = b.unwrap();
            let (ts, n) = model[&b.base_offset()];
            assert_eq!((b.max_timestamp(), i64::from(b.records_count())), (ts, n));
            assert_eq!(b.base_offset(), offset, "offsets are dense");
            offset = b.last_offset() + 1;
        }
    }
}

/// Recomputes the CRC of a batch whose covered bytes a test changed, so
/// only the change itself is judged.
fn recrc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Batches whose CRC is valid but whose contents lie, each refused with
/// Kafka's code (or the one docs/compatibility.md gives) and none stored.
#[test]
fn batches_are_validated_record_by_record() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[])).unwrap();
    let p = rm.get("t", 0).unwrap();
    let now = 1_700_000_000_000;
    let refused = |b: &[u8]| p.append(b, now, None).unwrap_err();

    let mut codec7 = batch(-1, -1, 0, 1, now);
    codec7[22] |= 7;
    recrc(&mut codec7);
    assert_eq!(refused(&codec7).code, ErrorCode::UnsupportedCompressionType);

    let mut gzip_on_garbage = batch(-1, -1, 0, 1, now);
    gzip_on_garbage[22] |= 1;
    recrc(&mut gzip_on_garbage);
    assert_eq!(refused(&gzip_on_garbage).code, ErrorCode::InvalidRecord);

    let mut garbage = batch(-1, -1, 0, 1, now);
    let n = garbage.len();
    garbage[61..n].fill(0xff);
    recrc(&mut garbage);
    assert_eq!(refused(&garbage).code, ErrorCode::InvalidRecord);

    // One record claiming to be 2^31-1: the log end must not jump.
    let mut count = batch(-1, -1, 0, 1, now);
    count[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    count[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    recrc(&mut count);
    assert_eq!(refused(&count).code, ErrorCode::InvalidRecord);

    let mut based = batch(-1, -1, 0, 1, now);
    based[0..8].copy_from_slice(&5i64.to_be_bytes());
    assert_eq!(refused(&based).code, ErrorCode::InvalidRecord);

    // A zstd bomb: a few KiB that inflate past the bound.
    let zeros = vec![0u8; (max_inflated_default() + (1 << 20)) as usize];
    let bomb = build_batch(
        BatchProducer::NONE,
        Compression::Zstd,
        &[NewRecord {
            key: None,
            value: Some(Bytes::from(zeros)),
            timestamp: now,
        }],
    );
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(refused(&bomb).code, ErrorCode::MessageTooLarge);

    // An hour ahead is the limit (Kafka 4's message.timestamp.after.max.ms).
    let mut times = Vec::new();
    for (i, ts) in [now, now + 2 * 3_600_000, now - 10 * 365 * 86_400_000]
        .into_iter()
        .enumerate()
    {
        times.push(NewRecord {
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            timestamp: ts,
        });
    }
    let future = build_batch(BatchProducer::NONE, Compression::Lz4, &times);
    let e = refused(&future);
    assert_eq!(e.code, ErrorCode::InvalidTimestamp);
    assert_eq!(e.record_errors.len(), 1);
    assert_eq!(e.record_errors[0].batch_index, 1);
    assert_eq!(p.log_end_offset(), 0, "nothing refused was stored");

    // Years in the past are fine by default; a header whose max timestamp
    // disagrees with its records is corrected, as Kafka does.
    times.remove(1);
    let mut old = build_batch(BatchProducer::NONE, Compression::Gzip, &times).to_vec();
    old[35..43].copy_from_slice(&(now + 99).to_be_bytes());
    recrc(&mut old);
    p.append(&old, now, None).unwrap();
    let read = p
        .read(0, 1 << 20, true, Isolation::ReadUncommitted)
        .unwrap();
    let stored = strom_protocol::records::Batch::parse(&read.records).unwrap();
    stored.verify().unwrap();
    assert_eq!(stored.max_timestamp(), now);
}

fn max_inflated_default() -> u64 {
    crate::max_inflated_bytes(strom_protocol::records::DEFAULT_MAX_MESSAGE_BYTES)
}

#[test]
fn compacted_topics_refuse_records_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[("cleanup.policy", "compact")]))
        .unwrap();
    let p = rm.get("t", 0).unwrap();
    let e = p.append(&batch(-1, -1, 0, 2, 0), 0, None).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRecord);
    assert_eq!(
        e.record_errors
            .iter()
            .map(|r| r.batch_index)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    assert!(e.record_errors[0]
        .message
        .contains("Compacted topic cannot accept message without key in topic partition t-0."));
}

/// Records stamped days and years in the past are kept as Kafka keeps
/// them: they share a segment (time-based rolls follow record timestamps),
/// stay readable until a retention check finds their segment's largest
/// timestamp past retention.ms, and stay for good with retention.ms=-1.
#[test]
fn records_stamped_in_the_past_stay_until_a_retention_check() {
    let now = 1_800_000_000_000;
    let day = 86_400_000;
    let stamps: Vec<i64> = (0..200).map(|i| now - 3 * 365 * day + i * day).collect();
    for retention in ["-1", "604800000"] {
        let dir = tempfile::tempdir().unwrap();
        let rm = manager_with(
            dir.path(),
            &[
                ("log.initial.task.delay.ms", "30000"),
                ("log.retention.check.interval.ms", "300000"),
            ],
        );
        rm.apply_image(&image("t", 1, &[("retention.ms", retention)]))
            .unwrap();
        let p = rm.get("t", 0).unwrap();
        for &ts in &stamps {
            p.append(&batch(-1, -1, 0, 1, ts), now, None).unwrap();
        }
        // Maintenance runs every second; the first retention check comes
        // 30 s in, the next 5 minutes later.
        for tick in 0..30 {
            rm.maintain(now + tick * 1000);
        }
        let kept = stamps_from(&p, 0);
        assert_eq!(
            kept, stamps,
            "retention.ms={retention}: all there before the first check"
        );
        rm.maintain(now + 30_000);
        rm.maintain(now + 330_000);
        if retention == "-1" {
            assert_eq!(p.log_start_offset(), 0, "kept with retention.ms=-1");
            assert_eq!(stamps_from(&p, 0), stamps);
        } else {
            // Kafka deletes them too, at the check: every segment expired,
            // the active one after a roll, and the log ends empty at its end.
            assert_eq!(p.log_start_offset(), 200);
            assert_eq!(p.log_end_offset(), 200);
        }
    }
}

/// The max timestamps of every batch from `offset` to the log end.
fn stamps_from(p: &crate::Partition, mut offset: i64) -> Vec<i64> {
    let mut out = Vec::new();
    while offset < p.log_end_offset() {
        let read = p
            .read(offset, 1 << 20, true, Isolation::ReadUncommitted)
            .unwrap();
        for b in strom_protocol::records::batches(&read.records) {
            let b = b.unwrap();
            out.push(b.max_timestamp());
            offset = b.last_offset() + 1;
        }
    }
    out
}

/// A partition that cannot be opened (here: its directory's name is taken
/// by a file, as a full disk would fail it) does not stop the others, and
/// is opened by a later apply once the cause is gone.
#[test]
fn a_partition_that_could_not_be_opened_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    std::fs::write(dir.path().join("t-0"), b"in the way").unwrap();
    let img = image("t", 1, &[]);
    assert!(rm.apply_image(&img).is_err());
    assert!(rm.get("t", 0).is_none());
    assert!(rm.has_failed_topics());
    std::fs::remove_file(dir.path().join("t-0")).unwrap();
    rm.apply_image(&img).unwrap();
    assert!(!rm.has_failed_topics());
    rm.get("t", 0)
        .unwrap()
        .append(&batch(-1, -1, 0, 1, 0), 0, None)
        .unwrap();
}

/// Topic `t` (partition 0) on brokers 1 and 2 (both unfenced), led by
/// `leader` in `epoch`.
fn replicated(leader: i32, epoch: i32) -> MetadataImage {
    replicated_isr(leader, epoch, &[1, 2])
}

fn replicated_isr(leader: i32, epoch: i32, isr: &[i32]) -> MetadataImage {
    let topic_id = Uuid::from_u128(9);
    let broker = |node_id| MetadataRecord::RegisterBroker {
        node_id,
        host: "localhost".into(),
        port: 9092 + node_id,
        rack: None,
        incarnation_id: None,
        epoch: Some(1),
        fenced: false,
    };
    MetadataImage::empty().apply(
        0,
        &[
            broker(1),
            broker(2),
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id,
            },
            MetadataRecord::Config {
                resource: strom_metadata::ConfigResource::Topic("t".into()),
                name: "segment.bytes".into(),
                value: Some("400".into()),
            },
            MetadataRecord::Partition {
                topic_id,
                partition: 0,
                replicas: vec![1, 2],
                isr: isr.to_vec(),
                leader,
                leader_epoch: epoch,
                partition_epoch: Some(epoch),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
        ],
    )
}

#[test]
fn a_follower_holds_what_its_leader_wrote_and_can_lead_in_its_place() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_rm = manager(ld.path());
    leader_rm.apply_image(&replicated(1, 3)).unwrap();
    let follower_rm =
        ReplicaManager::new(2, fd.path(), StaticConfig::new(BTreeMap::new()).unwrap().0);
    follower_rm.apply_image(&replicated(1, 3)).unwrap();
    let (leader, follower) = (
        leader_rm.get("t", 0).unwrap(),
        follower_rm.get("t", 0).unwrap(),
    );
    // On the leader: an idempotent producer, an aborted transaction and an
    // open one, across several segments.
    for i in 0..6 {
        leader
            .append(&batch(7, 0, i * 2, 2, 100 + i64::from(i)), 0, None)
            .unwrap();
    }
    leader
        .append(
            &txn_batch(5, 0, 0, 2),
            0,
            Some(leader.start_verification(5)),
        )
        .unwrap(); // 12..=13
    leader
        .append_marker(5, 0, ControlMarker::Abort, 4, 0)
        .unwrap(); // 14
    leader
        .append(
            &txn_batch(6, 0, 0, 1),
            0,
            Some(leader.start_verification(6)),
        )
        .unwrap(); // 15
    assert_eq!(leader.log_end_offset(), 16);

    // The follower may not append as the leader, and the leader takes no
    // replicated batches.
    assert_eq!(
        follower
            .append(&batch(-1, -1, 0, 1, 0), 0, None)
            .unwrap_err()
            .code,
        ErrorCode::NotLeaderOrFollower
    );
    let fetched = |from: i64| {
        let mut out = Vec::new();
        let mut from = from;
        while from < leader.log_end_offset() {
            let r = leader
                .read_for_follower(2, from, -1, 1 << 20, false, 0)
                .unwrap();
            let last = strom_protocol::records::batches(&r.records)
                .last()
                .unwrap()
                .unwrap();
            from = last.last_offset() + 1;
            out.push(r.records.to_vec());
        }
        out
    };
    assert_eq!(
        leader
            .append_as_follower(leader.fetch_position(), &fetched(0)[0], 0)
            .unwrap_err()
            .0,
        ErrorCode::NotLeaderOrFollower
    );
    for chunk in fetched(0) {
        follower
            .append_as_follower(follower.fetch_position(), &chunk, 0)
            .unwrap();
    }
    assert_eq!(follower.log_end_offset(), 16);
    assert_eq!(follower.producers().unwrap(), leader.producers().unwrap());
    assert_eq!(follower.end_offset_for_epoch(3), (3, 16));
    assert_eq!(
        follower.high_watermark(),
        0,
        "a follower learns it from the leader"
    );

    // Cut inside producer 5's batch: it goes whole, with all after it.
    assert_eq!(
        follower.truncate_to(follower.fetch_position(), 13).unwrap(),
        12
    );
    let ids = |p: &crate::Partition| {
        p.producers()
            .unwrap()
            .iter()
            .map(|s| s.producer_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&follower), [7]);
    for chunk in fetched(12) {
        follower
            .append_as_follower(follower.fetch_position(), &chunk, 0)
            .unwrap();
    }
    // Cut at the abort marker: producer 5's transaction is open again and
    // producer 6 unknown.
    assert_eq!(
        follower.truncate_to(follower.fetch_position(), 14).unwrap(),
        14
    );
    let open: Vec<(i64, i64)> = follower
        .producers()
        .unwrap()
        .iter()
        .map(|s| (s.producer_id, s.current_txn_start_offset))
        .collect();
    assert_eq!(open, [(5, 12), (7, -1)]);
    // And back in step.
    for chunk in fetched(14) {
        follower
            .append_as_follower(follower.fetch_position(), &chunk, 0)
            .unwrap();
    }
    assert_eq!(follower.producers().unwrap(), leader.producers().unwrap());

    // Restarted and made leader in epoch 4: a retry of the producer's last
    // batch is a duplicate at its original offset, producer 6's open
    // transaction can be ended, and the abort range is served.
    drop((follower, follower_rm));
    let follower_rm =
        ReplicaManager::new(2, fd.path(), StaticConfig::new(BTreeMap::new()).unwrap().0);
    // (Broker 1 is gone: the ISR is broker 2 alone.)
    follower_rm
        .apply_image(&replicated_isr(2, 4, &[2]))
        .unwrap();
    let new_leader = follower_rm.get("t", 0).unwrap();
    assert_eq!(
        new_leader
            .append(&batch(7, 0, 10, 2, 105), 0, None)
            .unwrap()
            .base_offset,
        10
    );
    new_leader
        .append_marker(6, 0, ControlMarker::Commit, 5, 0)
        .unwrap(); // 16
    assert_eq!(new_leader.end_offset_for_epoch(3), (3, 16));
    assert_eq!(new_leader.last_stable_offset(), 17);
    let r = new_leader
        .read(12, 1 << 20, true, Isolation::ReadCommitted)
        .unwrap();
    let aborted = r.aborted.unwrap();
    assert_eq!(
        aborted
            .iter()
            .map(|t| (t.producer_id, t.first_offset))
            .collect::<Vec<_>>(),
        [(5, 12)]
    );
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn the_leader_moves_its_high_watermark_with_follower_fetches_and_finds_divergence() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_rm = manager(ld.path());
    let follower_rm =
        ReplicaManager::new(2, fd.path(), StaticConfig::new(BTreeMap::new()).unwrap().0);
    // Broker 2 leads in epoch 4 first and writes a batch no one copies.
    let brokers = |img: MetadataImage| img;
    follower_rm.apply_image(&brokers(replicated(2, 4))).unwrap();
    let follower = follower_rm.get("t", 0).unwrap();
    for _ in 0..3 {
        follower.append(&batch(-1, -1, 0, 2, 0), 0, None).unwrap();
    }
    assert_eq!(follower.log_end_offset(), 6);
    // Broker 1 leads in epoch 5: it never had broker 2's records.
    leader_rm.apply_image(&replicated(1, 5)).unwrap();
    follower_rm.apply_image(&replicated(1, 5)).unwrap();
    let leader = leader_rm.get("t", 0).unwrap();
    for _ in 0..2 {
        leader.append(&batch(-1, -1, 0, 1, 0), 0, None).unwrap();
    }
    assert_eq!(
        leader.high_watermark(),
        0,
        "the follower has not fetched: the high watermark waits for it"
    );
    let now = wall_ms();
    // The follower's last epoch (4) is older than every epoch the leader
    // has: its log diverges where the leader's next epoch (5) begins, 0.
    let r = leader
        .read_for_follower(2, 6, 4, 1 << 20, true, now)
        .unwrap();
    assert_eq!(r.diverging, Some((4, 0)));
    assert!(r.records.is_empty());
    assert_eq!(
        follower.truncate_to(follower.fetch_position(), 0).unwrap(),
        0
    );
    assert_eq!(
        follower.end_offset_for_epoch(4),
        (-1, -1),
        "epoch 4 is forgotten"
    );
    let r = leader
        .read_for_follower(2, 0, -1, 1 << 20, true, now)
        .unwrap();
    assert_eq!(r.diverging, None);
    assert_eq!(r.high_watermark, 0);
    follower
        .append_as_follower(follower.fetch_position(), &r.records, now)
        .unwrap();
    assert_eq!(follower.log_end_offset(), 2);
    // Its next fetch, from its log end, moves the leader's high watermark,
    // which its answer carries back.
    let r = leader
        .read_for_follower(2, 2, 5, 1 << 20, true, now)
        .unwrap();
    assert_eq!((r.diverging, r.high_watermark), (None, 2));
    follower
        .follow_leader(follower.fetch_position(), r.high_watermark, 0, now)
        .unwrap();
    assert_eq!(follower.high_watermark(), 2);
    assert_eq!(follower.end_offset_for_epoch(5), (5, 2));

    // Past the leader's log end: a diverging epoch when the follower names
    // its last epoch, else out of range; a broker that is not a replica:
    // refused; the follower does not answer fetches.
    let r = leader
        .read_for_follower(2, 9, 5, 1 << 20, true, now)
        .unwrap();
    assert_eq!(r.diverging, Some((5, 2)));
    assert_eq!(
        leader
            .read_for_follower(2, 9, -1, 1 << 20, true, now)
            .unwrap_err(),
        ErrorCode::OffsetOutOfRange
    );
    assert_eq!(
        leader
            .read_for_follower(7, 2, 5, 1 << 20, true, now)
            .unwrap_err(),
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(
        follower
            .read_for_follower(1, 0, -1, 1 << 20, true, now)
            .unwrap_err(),
        ErrorCode::NotLeaderOrFollower
    );

    // A follower that stops fetching leaves the ISR after
    // replica.lag.time.max.ms; caught up again, it is asked back in.
    assert_eq!(leader.wanted_isr(now + 1_000), None);
    let change = leader.wanted_isr(now + 31_000).unwrap();
    assert_eq!((change.isr, change.leader_epoch), (vec![1], 5));
    let mut shrunk = replicated(1, 5);
    let topic_id = Uuid::from_u128(9);
    shrunk = shrunk.apply(
        1,
        &[MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![1, 2],
            isr: vec![1],
            leader: 1,
            leader_epoch: 5,
            partition_epoch: Some(6),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }],
    );
    leader_rm.apply_image(&shrunk).unwrap();
    leader.append(&batch(-1, -1, 0, 1, 0), 0, None).unwrap();
    assert_eq!(
        leader.high_watermark(),
        2,
        "the follower is still caught up: waited for"
    );
    let later = now + 31_000;
    leader.append(&batch(-1, -1, 0, 1, 0), 0, None).unwrap();
    let r = leader
        .read_for_follower(2, 2, 5, 1 << 20, true, later)
        .unwrap();
    follower
        .append_as_follower(follower.fetch_position(), &r.records, later)
        .unwrap();
    let r = leader
        .read_for_follower(2, 4, 5, 1 << 20, true, later)
        .unwrap();
    assert_eq!(r.high_watermark, 4);
    let change = leader.wanted_isr(later).unwrap();
    assert_eq!((change.isr, change.partition_epoch), (vec![1, 2], 6));
}

#[test]
fn a_replicated_partition_restarts_at_its_checkpointed_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&replicated(1, 0)).unwrap();
    let p = rm.get("t", 0).unwrap();
    for _ in 0..3 {
        p.append(&batch(-1, -1, 0, 1, 0), 0, None).unwrap();
    }
    // Committed up to 1 (the follower fetched from there), written to 3.
    p.read_for_follower(2, 1, -1, 1 << 20, true, wall_ms())
        .unwrap();
    assert_eq!((p.high_watermark(), p.log_end_offset()), (1, 3));
    rm.maintain(wall_ms());
    drop((p, rm)); // unclean
    let rm = manager(dir.path());
    rm.apply_image(&replicated(1, 1)).unwrap();
    let p = rm.get("t", 0).unwrap();
    assert_eq!(
        (p.high_watermark(), p.log_end_offset()),
        (1, 3),
        "not the log end: records 1 and 2 were never committed"
    );
    assert!(p
        .read(1, 1 << 20, true, Isolation::ReadUncommitted)
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn a_write_counts_as_committed_only_in_the_leadership_it_was_made_in() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&replicated(1, 5)).unwrap();
    let p = rm.get("t", 0).unwrap();
    let written = p.append(&batch(-1, -1, 0, 2, 0), 0, None).unwrap();
    assert!(p.still_leads(written.leadership));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let soon = || tokio::time::Instant::now() + std::time::Duration::from_millis(50);
    // No follower fetched it: not committed in time.
    assert_eq!(
        rt.block_on(p.wait_committed(written.next_offset, written.leadership, soon())),
        Err(crate::Uncommitted::TimedOut)
    );
    let waiting = {
        let p = p.clone();
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
        rt.spawn(async move {
            p.wait_committed(written.next_offset, written.leadership, far)
                .await
        })
    };
    // Broker 2 leads in epoch 6: this node follows, and the waiter learns
    // the write may be lost, though the high watermark it now takes from
    // its leader may pass the offset.
    rm.apply_image(&replicated(2, 6)).unwrap();
    assert_eq!(
        rt.block_on(waiting).unwrap(),
        Err(crate::Uncommitted::LeadershipEnded)
    );
    assert!(!p.still_leads(written.leadership));
    // Leading again in epoch 7 is another leadership: the log may have
    // been truncated in between.
    rm.apply_image(&replicated(1, 7)).unwrap();
    assert!(!p.still_leads(written.leadership));
    let again = p.append(&batch(-1, -1, 0, 1, 0), 0, None).unwrap();
    assert!(p.still_leads(again.leadership));
    // An epoch bump that keeps this node leading keeps the leadership.
    rm.apply_image(&replicated(1, 8)).unwrap();
    assert!(p.still_leads(again.leadership));
}

#[test]
fn a_follower_takes_no_coordinator_records_or_markers() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&replicated(2, 5)).unwrap();
    let p = rm.get("t", 0).unwrap();
    assert_eq!(
        p.append_from_coordinator(&batch(-1, -1, 0, 1, 0), 0, None)
            .unwrap_err()
            .0,
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(
        p.append_marker(5, 0, ControlMarker::Commit, 0, 0)
            .unwrap_err()
            .0,
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(p.log_end_offset(), 0);
}

#[test]
fn a_stale_fetch_answer_changes_nothing() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_rm = manager(ld.path());
    let follower_rm =
        ReplicaManager::new(2, fd.path(), StaticConfig::new(BTreeMap::new()).unwrap().0);
    leader_rm.apply_image(&replicated(1, 5)).unwrap();
    follower_rm.apply_image(&replicated(1, 5)).unwrap();
    let (leader, follower) = (
        leader_rm.get("t", 0).unwrap(),
        follower_rm.get("t", 0).unwrap(),
    );
    leader.append(&batch(-1, -1, 0, 2, 0), 0, None).unwrap();
    let at = follower.fetch_position();
    assert_eq!((at.leader_epoch, at.offset), (5, 0));
    let r = leader
        .read_for_follower(2, 0, -1, 1 << 20, true, wall_ms())
        .unwrap();
    // The same answer applied twice: the second finds the log end moved.
    follower.append_as_follower(at, &r.records, 0).unwrap();
    assert_eq!(
        follower
            .append_as_follower(at, &r.records, 0)
            .unwrap_err()
            .0,
        ErrorCode::FencedLeaderEpoch
    );
    assert_eq!(
        follower.truncate_to(at, 0).unwrap_err().0,
        ErrorCode::FencedLeaderEpoch
    );
    // A fetch made in epoch 5, answered once epoch 6 began, is dropped.
    let at = follower.fetch_position();
    follower_rm.apply_image(&replicated(1, 6)).unwrap();
    assert_eq!(
        follower.truncate_to(at, 0).unwrap_err().0,
        ErrorCode::FencedLeaderEpoch
    );
    assert_eq!(
        follower.follow_leader(at, 2, 0, 0).unwrap_err().0,
        ErrorCode::FencedLeaderEpoch
    );
    assert_eq!(
        (follower.log_end_offset(), follower.high_watermark()),
        (2, 0)
    );
}

#[test]
fn a_follower_follows_the_leaders_log_start_up_to_its_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let rm = ReplicaManager::new(2, dir.path(), StaticConfig::new(BTreeMap::new()).unwrap().0);
    let (ld, leader_rm) = {
        let d = tempfile::tempdir().unwrap();
        let m = manager(d.path());
        (d, m)
    };
    leader_rm.apply_image(&replicated(1, 5)).unwrap();
    rm.apply_image(&replicated(1, 5)).unwrap();
    let (leader, follower) = (leader_rm.get("t", 0).unwrap(), rm.get("t", 0).unwrap());
    for _ in 0..4 {
        leader.append(&batch(-1, -1, 0, 2, 0), 0, None).unwrap();
    }
    let r = leader
        .read_for_follower(2, 0, -1, 1 << 20, true, wall_ms())
        .unwrap();
    follower
        .append_as_follower(follower.fetch_position(), &r.records, 0)
        .unwrap();
    assert_eq!(follower.log_end_offset(), 8);
    // The leader's log starts at 6 (DeleteRecords), but this follower
    // knows only offsets below 3 committed: it moves its start to 3.
    follower
        .follow_leader(follower.fetch_position(), 3, 6, 0)
        .unwrap();
    assert_eq!(
        (follower.high_watermark(), follower.log_start_offset()),
        (3, 3)
    );
    follower
        .follow_leader(follower.fetch_position(), 8, 6, 0)
        .unwrap();
    assert_eq!(
        (follower.high_watermark(), follower.log_start_offset()),
        (8, 6)
    );
    // Out of the leader's range below its start: it starts again there,
    // with everything below committed.
    follower
        .truncate_fully_and_start_at(follower.fetch_position(), 20)
        .unwrap();
    assert_eq!(
        (
            follower.log_start_offset(),
            follower.log_end_offset(),
            follower.high_watermark()
        ),
        (20, 20, 20)
    );
    drop(ld);
}

#[test]
fn a_marker_from_a_deposed_coordinator_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[])).unwrap();
    let p = rm.get("t", 0).unwrap();
    p.append(&txn_batch(5, 0, 0, 1), 0, Some(p.start_verification(5)))
        .unwrap();
    // The coordinator of epoch 3 commits; the next transaction's abort
    // from a coordinator of epoch 2 (deposed since) is refused.
    p.append_marker(5, 0, ControlMarker::Commit, 3, 0).unwrap();
    p.append(&txn_batch(5, 0, 1, 1), 0, Some(p.start_verification(5)))
        .unwrap();
    assert_eq!(
        p.append_marker(5, 0, ControlMarker::Abort, 2, 0)
            .unwrap_err()
            .0,
        ErrorCode::TransactionCoordinatorFenced
    );
    assert!(p.in_open_transaction(5, 0), "still open");
    p.append_marker(5, 0, ControlMarker::Abort, 3, 0).unwrap();
    assert!(!p.in_open_transaction(5, 0));
}

#[test]
fn a_replica_that_does_not_lead_checks_the_leader_epoch_first() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    // Node 1 follows node 2 in epoch 5.
    rm.apply_image(&replicated(2, 5)).unwrap();
    let code = |epoch| rm.leading_at("t", 0, epoch).map(|_| ()).unwrap_err();
    // A newer epoch: this node's leadership may be on its way.
    assert_eq!(code(6), ErrorCode::UnknownLeaderEpoch);
    assert_eq!(code(4), ErrorCode::FencedLeaderEpoch);
    assert_eq!(code(5), ErrorCode::NotLeaderOrFollower);
    assert_eq!(code(-1), ErrorCode::NotLeaderOrFollower);
    assert_eq!(
        rm.leading_at("t", 1, 6).map(|_| ()).unwrap_err(),
        ErrorCode::UnknownTopicOrPartition
    );
    // Once it leads in epoch 6, that epoch passes.
    rm.apply_image(&replicated(1, 6)).unwrap();
    assert!(rm.leading_at("t", 0, 6).is_ok());
    assert_eq!(code(7), ErrorCode::UnknownLeaderEpoch);
}

/// Kafka's fetcher defaults, one fetcher per leader.
fn fetcher_config() -> crate::FetcherConfig {
    crate::FetcherConfig {
        fetchers_per_leader: 1,
        max_wait_ms: 500,
        min_bytes: 1,
        partition_max_bytes: 1 << 20,
        response_max_bytes: 10 << 20,
        backoff: std::time::Duration::from_secs(1),
    }
}

/// A leader that holds every fetch forever and notes which partitions each
/// asked for.
#[derive(Default)]
struct HoldingLeader(std::sync::Mutex<Vec<Vec<(String, i32)>>>);

impl crate::LeaderLink for HoldingLeader {
    fn fetch(
        &self,
        _leader: i32,
        request: strom_protocol::messages::FetchRequest,
    ) -> crate::BoxFuture<'static, std::io::Result<strom_protocol::messages::FetchResponse>> {
        let asked = request
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.0.as_str().to_owned(), p.partition))
            })
            .collect();
        self.0.lock().unwrap().push(asked);
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_partition_followed_while_a_fetch_waits_is_fetched_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    let image = replicated(2, 5);
    rm.apply_image(&image).unwrap();
    let leader = std::sync::Arc::new(HoldingLeader::default());
    let fetchers = crate::ReplicaFetchers::new(1, leader.clone(), fetcher_config());
    fetchers.reconcile(&rm);
    let asked = |leader: &HoldingLeader| leader.0.lock().unwrap().clone();
    let within = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while asked(&leader).is_empty() {
        assert!(tokio::time::Instant::now() < within, "no first fetch");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // A second topic led by the same leader, while the first fetch waits.
    let topic_id = Uuid::from_u128(10);
    let image = image.apply(
        1,
        &[
            MetadataRecord::Topic {
                name: "u".into(),
                topic_id,
            },
            MetadataRecord::Partition {
                topic_id,
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader: 2,
                leader_epoch: 1,
                partition_epoch: Some(1),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
        ],
    );
    rm.apply_image(&image).unwrap();
    fetchers.reconcile(&rm);
    let both = vec![("t".to_owned(), 0), ("u".to_owned(), 0)];
    while !asked(&leader).iter().any(|a| {
        let mut a = a.clone();
        a.sort();
        a == both
    }) {
        assert!(
            tokio::time::Instant::now() < within,
            "fetches made: {:?}",
            asked(&leader)
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    fetchers.shutdown();
}

/// A leader that has not taken its leadership in: it answers the first
/// fetch UNKNOWN_LEADER_EPOCH for every partition, holds the others, and
/// notes when each came.
#[derive(Default)]
struct LateLeader(std::sync::Mutex<Vec<tokio::time::Instant>>);

impl crate::LeaderLink for LateLeader {
    fn fetch(
        &self,
        _leader: i32,
        request: strom_protocol::messages::FetchRequest,
    ) -> crate::BoxFuture<'static, std::io::Result<strom_protocol::messages::FetchResponse>> {
        use strom_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        let mut times = self.0.lock().unwrap();
        times.push(tokio::time::Instant::now());
        if times.len() > 1 {
            return Box::pin(std::future::pending());
        }
        let responses = request
            .topics
            .iter()
            .map(|t| {
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_error_code(ErrorCode::UnknownLeaderEpoch.code())
                            })
                            .collect(),
                    )
            })
            .collect();
        Box::pin(std::future::ready(Ok(
            strom_protocol::messages::FetchResponse::default().with_responses(responses),
        )))
    }
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_has_not_taken_its_leadership_in_is_asked_again_soon() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&replicated(2, 5)).unwrap();
    let leader = std::sync::Arc::new(LateLeader::default());
    let config = fetcher_config();
    let backoff = config.backoff;
    let fetchers = crate::ReplicaFetchers::new(1, leader.clone(), config);
    fetchers.reconcile(&rm);
    // (Paused time: each sleep here lets the fetcher run first.)
    while leader.0.lock().unwrap().len() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let times = leader.0.lock().unwrap().clone();
    assert!(
        times[1] - times[0] < backoff,
        "asked again after {:?}, as long as replica.fetch.backoff.ms",
        times[1] - times[0]
    );
    fetchers.shutdown();
}
