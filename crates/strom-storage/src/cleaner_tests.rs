//! Cleaner tests: a property test holding compaction against a model of
//! keyed writes, tombstones and transactions, unit tests of its rules, and
//! crash tests of the segment swap (stopped after each of its steps).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use proptest::prelude::*;
use strom_protocol::record_walk;
use strom_protocol::records::{
    self, build_batch, build_control_batch, BatchProducer, Compression, ControlMarker, NewRecord,
    CODECS,
};

use crate::cleaner::{CleanerSettings, Throttle};
use crate::{AbortedTxn, CleanStats, Log, LogConfig};

const PRODUCER: i64 = 100;

fn compacted() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        compact: true,
        delete_retention_ms: 50,
        ..LogConfig::default()
    }
}

fn settings() -> CleanerSettings {
    CleanerSettings {
        dedupe_buffer_bytes: 1 << 20,
        io_max_bytes_per_second: f64::MAX,
    }
}

/// A batch of keyed records (`None` value: a tombstone).
fn keyed(
    records: &[(u8, Option<u8>)],
    producer: BatchProducer,
    codec: Compression,
    ts: i64,
) -> Vec<u8> {
    let records: Vec<NewRecord> = records
        .iter()
        .map(|&(k, v)| NewRecord {
            key: Some(Bytes::from(format!("key-{k}"))),
            value: v.map(|v| Bytes::from(format!("value-{v}"))),
            timestamp: ts,
        })
        .collect();
    build_batch(producer, codec, &records).to_vec()
}

/// Plans, runs and installs a cleaning at `now`.
fn clean(
    log: &mut Log,
    now: i64,
    first_unstable: i64,
    last_batches: &HashMap<i64, i64>,
) -> Option<CleanStats> {
    let job = log.plan_cleaning(now, first_unstable).unwrap()?;
    let cleaned = job
        .run(
            &settings(),
            last_batches,
            now,
            &mut Throttle::new(f64::MAX),
            &|| false,
        )
        .unwrap()?;
    let stats = cleaned.stats;
    log.install_cleaned(cleaned, now).unwrap().then_some(stats)
}

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    producer: i64,
    transactional: bool,
    control: bool,
    horizon: Option<i64>,
}

/// Every record of the log, and each batch's (base, last offset, count).
fn dump(log: &Log) -> (Vec<Stored>, Vec<(i64, i64, i32)>) {
    let (mut stored, mut batches) = (Vec::new(), Vec::new());
    let mut offset = log.log_start_offset();
    loop {
        let data = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        if data.records.is_empty() {
            break;
        }
        for b in records::batches(&data.records) {
            let b = b.unwrap();
            b.verify().unwrap();
            assert!(
                batches
                    .last()
                    .is_none_or(|&(_, last, _)| b.base_offset() > last),
                "offsets grow"
            );
            batches.push((b.base_offset(), b.last_offset(), b.records_count()));
            let inflated = record_walk::inflate(&b, 1 << 24).unwrap();
            for i in 0..inflated.records.len() {
                stored.push(Stored {
                    offset: b.base_offset() + i64::from(inflated.records[i].meta.offset_delta),
                    key: inflated.key(i).map(<[u8]>::to_vec),
                    value: inflated.value(i).map(<[u8]>::to_vec),
                    producer: b.producer_id(),
                    transactional: b.is_transactional(),
                    control: b.is_control(),
                    horizon: b.delete_horizon(),
                });
            }
            offset = b.last_offset() + 1;
        }
    }
    (stored, batches)
}

/// What a read_committed consumer reading from the start ends with: the
/// latest value (or tombstone) of each key, leaving out the transaction
/// open from `open_from`, if any.
fn committed_view(log: &Log, open_from: Option<i64>) -> BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
    let aborted = log.aborted_txns(0, i64::MAX);
    let (stored, _) = dump(log);
    let mut view = BTreeMap::new();
    for r in stored {
        let in_aborted = r.transactional
            && aborted.iter().any(|t| {
                t.producer_id == r.producer && (t.first_offset..=t.last_offset).contains(&r.offset)
            });
        let open = r.transactional && open_from.is_some_and(|f| r.offset >= f);
        if r.control || in_aborted || open {
            continue;
        }
        if let Some(k) = r.key {
            view.insert(k, (r.offset, r.value));
        }
    }
    view
}

#[derive(Debug, Clone)]
enum Op {
    /// Plain records, one batch, with a codec.
    Put(Vec<(u8, Option<u8>)>, usize),
    /// Records in the producer's transaction (opened if need be).
    TxnPut(Vec<(u8, Option<u8>)>),
    /// Ends the open transaction, if any: commit or abort.
    End(bool),
    Roll,
    /// Cleans after the clock moves on by this much.
    Clean(i64),
    /// Closes and reopens the log (cleanly or as after a crash).
    Reopen(bool),
}

fn records_strategy() -> impl Strategy<Value = Vec<(u8, Option<u8>)>> {
    prop::collection::vec((0u8..6, prop::option::weighted(0.8, any::<u8>())), 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (records_strategy(), 0usize..5).prop_map(|(r, c)| Op::Put(r, c)),
        3 => records_strategy().prop_map(Op::TxnPut),
        2 => any::<bool>().prop_map(Op::End),
        2 => Just(Op::Roll),
        3 => (0i64..80).prop_map(Op::Clean),
        1 => any::<bool>().prop_map(Op::Reopen),
    ]
}

/// A record written, as the model keeps it.
#[derive(Debug, Clone)]
struct Written {
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    /// The producer's transaction it was written in, while open.
    txn: Option<usize>,
}

struct Model {
    written: Vec<Written>,
    /// Per transaction (by index): aborted, once ended.
    txn_outcomes: Vec<Option<bool>>,
    open_txn: Option<(usize, i64)>,
    sequence: i32,
    /// The last offset of the producer's last data batch.
    last_batch: Option<i64>,
}

impl Model {
    fn committed(&self, w: &Written) -> bool {
        w.txn.is_none_or(|t| self.txn_outcomes[t] == Some(false))
    }
    fn aborted(&self, w: &Written) -> bool {
        w.txn.is_some_and(|t| self.txn_outcomes[t] == Some(true))
    }
    /// The latest committed value (or tombstone) of each key.
    fn view(&self) -> BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
        let mut view = BTreeMap::new();
        for w in self.written.iter().filter(|w| self.committed(w)) {
            view.insert(w.key.clone(), (w.offset, w.value.clone()));
        }
        view
    }
}

fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compacted()).unwrap();
    let mut model = Model {
        written: Vec::new(),
        txn_outcomes: Vec::new(),
        open_txn: None,
        sequence: 0,
        last_batch: None,
    };
    let mut now = 1_000i64;
    for op in ops {
        match op {
            Op::Put(recs, codec) => {
                let first = log.log_end_offset();
                let mut b = keyed(&recs, BatchProducer::NONE, CODECS[codec], now);
                log.append(&mut b, 0, now).unwrap();
                for (i, (k, v)) in recs.iter().enumerate() {
                    model.written.push(Written {
                        offset: first + i as i64,
                        key: format!("key-{k}").into_bytes(),
                        value: v.map(|v| format!("value-{v}").into_bytes()),
                        txn: None,
                    });
                }
            }
            Op::TxnPut(recs) => {
                let first = log.log_end_offset();
                let txn = match model.open_txn {
                    Some((t, _)) => t,
                    None => {
                        model.txn_outcomes.push(None);
                        model.open_txn = Some((model.txn_outcomes.len() - 1, first));
                        model.txn_outcomes.len() - 1
                    }
                };
                let producer = BatchProducer {
                    id: PRODUCER,
                    epoch: 0,
                    base_sequence: model.sequence,
                    transactional: true,
                };
                model.sequence += recs.len() as i32;
                let mut b = keyed(&recs, producer, Compression::None, now);
                let info = log.append(&mut b, 0, now).unwrap();
                model.last_batch = Some(info.last_offset);
                for (i, (k, v)) in recs.iter().enumerate() {
                    model.written.push(Written {
                        offset: first + i as i64,
                        key: format!("key-{k}").into_bytes(),
                        value: v.map(|v| format!("value-{v}").into_bytes()),
                        txn: Some(txn),
                    });
                }
            }
            Op::End(commit) => {
                let Some((txn, first)) = model.open_txn.take() else {
                    continue;
                };
                let producer = BatchProducer {
                    id: PRODUCER,
                    epoch: 0,
                    base_sequence: -1,
                    transactional: true,
                };
                let marker = if commit {
                    ControlMarker::Commit
                } else {
                    ControlMarker::Abort
                };
                let mut b = build_control_batch(producer, marker, 0, now).to_vec();
                let info = log.append(&mut b, 0, now).unwrap();
                if !commit {
                    log.add_aborted(AbortedTxn {
                        producer_id: PRODUCER,
                        first_offset: first,
                        last_offset: info.last_offset,
                        last_stable_offset: info.last_offset + 1,
                    });
                }
                model.txn_outcomes[txn] = Some(!commit);
            }
            Op::Roll => {
                log.roll().unwrap();
            }
            Op::Reopen(cleanly) => {
                if cleanly {
                    log.close().unwrap();
                }
                drop(log);
                log = Log::open(dir.path(), compacted()).unwrap();
            }
            Op::Clean(dt) => {
                now += dt;
                let end_before = log.log_end_offset();
                let unstable = model.open_txn.map_or(end_before, |(_, first)| first);
                let last_batches: HashMap<i64, i64> = model
                    .last_batch
                    .map(|o| (PRODUCER, o))
                    .into_iter()
                    .collect();
                let cleaned = clean(&mut log, now, unstable, &last_batches);
                prop_assert_eq!(log.log_end_offset(), end_before);
                if cleaned.is_none() {
                    continue;
                }
                let end = log.first_dirty_offset();
                prop_assert!(end <= unstable);
                let (stored, batches) = dump(&log);
                // Every record is one that was written, at its offset.
                let by_offset: HashMap<i64, &Written> =
                    model.written.iter().map(|w| (w.offset, w)).collect();
                for r in stored.iter().filter(|r| !r.control) {
                    let w = by_offset.get(&r.offset);
                    prop_assert!(w.is_some(), "record at {} was never written", r.offset);
                    let w = w.unwrap();
                    prop_assert_eq!(r.key.as_deref(), Some(&w.key[..]));
                    prop_assert_eq!(&r.value, &w.value);
                }
                // Below the cleaned end: nothing aborted, nothing a later
                // committed record of its key (below the end) replaced, and
                // no tombstone past its horizon.
                for r in stored.iter().filter(|r| !r.control && r.offset < end) {
                    let w = by_offset[&r.offset];
                    prop_assert!(!model.aborted(w), "aborted record at {} kept", r.offset);
                    let replaced = model.written.iter().any(|x| {
                        x.key == w.key
                            && x.offset > w.offset
                            && x.offset < end
                            && model.committed(x)
                    });
                    prop_assert!(!replaced, "record at {} kept though replaced", r.offset);
                    if r.value.is_none() {
                        prop_assert!(
                            r.horizon.is_some_and(|h| h > now),
                            "tombstone at {} kept past its horizon {:?}",
                            r.offset,
                            r.horizon
                        );
                    }
                }
                // The producer's last batch stays, if only as an empty one.
                if let Some(last) = model.last_batch {
                    prop_assert!(
                        batches.iter().any(|&(_, l, _)| l == last),
                        "the producer's last batch {} went",
                        last
                    );
                }
                // What a consumer ends with is what was written: each key's
                // latest value; a latest tombstone may itself be gone.
                let view = committed_view(&log, model.open_txn.map(|(_, first)| first));
                for (key, (offset, value)) in model.view() {
                    match (view.get(&key), &value) {
                        (Some(got), _) => prop_assert_eq!(got, &(offset, value.clone())),
                        (None, None) => {}
                        (None, Some(_)) => {
                            prop_assert!(false, "key {:?} lost", String::from_utf8_lossy(&key))
                        }
                    }
                }
                for key in view.keys() {
                    prop_assert!(model.view().contains_key(key));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn cleaning_keeps_what_a_consumer_would_end_with(ops in prop::collection::vec(op(), 1..60)) {
        run_ops(ops)?;
    }
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn put(log: &mut Log, recs: &[(u8, Option<u8>)], now: i64) -> i64 {
    let mut b = keyed(recs, BatchProducer::NONE, Compression::None, now);
    log.append(&mut b, 0, now).unwrap().first_offset
}

#[test]
fn keeps_the_latest_record_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compacted()).unwrap();
    for round in 0..20u8 {
        put(
            &mut log,
            &[(round % 3, Some(round)), (7, Some(round))],
            1_000,
        );
    }
    log.roll().unwrap();
    put(&mut log, &[(9, Some(0))], 1_000);
    let size_before = log.size_bytes();
    let stats = clean(&mut log, 2_000, i64::MAX, &HashMap::new()).unwrap();
    assert_eq!(stats.records_read, 40);
    assert_eq!(stats.records_removed, 36);
    assert!(log.size_bytes() < size_before);
    let view = committed_view(&log, None);
    let got: Vec<(String, i64)> = view
        .iter()
        .map(|(k, (o, _))| (String::from_utf8_lossy(k).into_owned(), *o))
        .collect();
    assert_eq!(
        got,
        vec![
            ("key-0".into(), 36),
            ("key-1".into(), 38),
            ("key-2".into(), 34),
            ("key-7".into(), 39),
            ("key-9".into(), 40),
        ]
    );
    // A fetch from a removed offset gets the next batch kept.
    let from_gap = log.read(1, 1 << 20, i64::MAX, true).unwrap();
    let first = records::Batch::parse(&from_gap.records).unwrap();
    assert_eq!(first.base_offset(), 34);
    // The cleaned log reopens the same, cleanly or after a crash.
    let before = dump(&log);
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), compacted()).unwrap();
    assert_eq!(dump(&log), before);
    assert_eq!(log.first_dirty_offset(), 40);
    drop(log);
    let log = Log::open(dir.path(), compacted()).unwrap();
    assert_eq!(dump(&log), before);
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compacted()).unwrap();
    put(&mut log, &[(1, Some(1)), (2, Some(1))], 1_000);
    put(&mut log, &[(1, None)], 1_000);
    log.roll().unwrap();
    put(&mut log, &[(3, Some(1))], 1_000);
    clean(&mut log, 2_000, i64::MAX, &HashMap::new()).unwrap();
    // The first cleaning keeps the tombstone and stamps its horizon.
    let (stored, _) = dump(&log);
    let tombstone = stored
        .iter()
        .find(|r| r.offset == 2)
        .expect("tombstone kept");
    assert_eq!(tombstone.value, None);
    assert_eq!(tombstone.horizon, Some(2_050));
    assert!(
        stored.iter().all(|r| r.offset != 0),
        "the value it deletes is gone"
    );
    // A cleaning before the horizon keeps it; the first after removes it.
    // (As in Kafka, the horizon alone does not make the log due.)
    clean(&mut log, 2_049, i64::MAX, &HashMap::new()).unwrap();
    assert!(dump(&log).0.iter().any(|r| r.offset == 2));
    assert!(!log.dirtiness(3_000, i64::MAX).unwrap().due());
    clean(&mut log, 2_050, i64::MAX, &HashMap::new()).unwrap();
    let (stored, _) = dump(&log);
    assert_eq!(
        stored.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![1, 3]
    );
}

#[test]
fn records_without_a_key_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compacted()).unwrap();
    let keyless = build_batch(
        BatchProducer::NONE,
        Compression::None,
        &[NewRecord {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            timestamp: 1,
        }],
    );
    log.append(&mut keyless.to_vec(), 0, 1).unwrap();
    put(&mut log, &[(1, Some(1))], 1);
    log.roll().unwrap();
    clean(&mut log, 10, i64::MAX, &HashMap::new()).unwrap();
    let (stored, _) = dump(&log);
    assert_eq!(stored.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn nothing_at_or_past_the_first_unstable_offset_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compacted()).unwrap();
    put(&mut log, &[(1, Some(1))], 1);
    log.roll().unwrap();
    put(&mut log, &[(1, Some(2))], 1);
    log.roll().unwrap();
    put(&mut log, &[(1, Some(3))], 1);
    // An open transaction from offset 1 on: only the first segment may be
    // cleaned, and its record is the latest below that bound.
    assert!(clean(&mut log, 10, 1, &HashMap::new()).is_some());
    assert_eq!(log.first_dirty_offset(), 1);
    let (stored, _) = dump(&log);
    assert_eq!(
        stored.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // With min.compaction.lag.ms, segments younger than it wait.
    let mut config = compacted();
    config.min_compaction_lag_ms = 100;
    log.set_config(config);
    assert_eq!(log.dirtiness(50, i64::MAX).unwrap().dirty_bytes, 0);
    assert!(log.dirtiness(200, i64::MAX).unwrap().dirty_bytes > 0);
}

#[test]
fn a_cleaning_whose_segments_went_meanwhile_is_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = compacted();
    config.delete_policy = true;
    let mut log = Log::open(dir.path(), config).unwrap();
    put(&mut log, &[(1, Some(1))], 1);
    log.roll().unwrap();
    put(&mut log, &[(1, Some(2))], 1);
    log.roll().unwrap();
    let job = log.plan_cleaning(10, i64::MAX).unwrap().unwrap();
    let cleaned = job
        .run(
            &settings(),
            &HashMap::new(),
            10,
            &mut Throttle::new(f64::MAX),
            &|| false,
        )
        .unwrap()
        .unwrap();
    log.advance_log_start(1, 10).unwrap();
    assert!(!log.install_cleaned(cleaned, 10).unwrap());
    let names = file_names(dir.path());
    assert!(names.iter().all(|n| !n.ends_with(".cleaned")), "{names:?}");
}

/// The swap interrupted after each of its file operations, then the log
/// reopened as after a crash: every key keeps its latest value and no
/// offset is stored twice.
#[test]
fn a_crash_at_any_step_of_the_swap_loses_nothing() {
    let mut step = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), compacted()).unwrap();
        for round in 0..30u8 {
            put(
                &mut log,
                &[(round % 4, Some(round)), (round % 7, Some(round))],
                1_000,
            );
        }
        log.roll().unwrap();
        put(&mut log, &[(99, Some(0))], 1_000);
        let expected = committed_view(&log, None);
        let end = log.log_end_offset();
        let job = log.plan_cleaning(2_000, i64::MAX).unwrap().unwrap();
        let cleaned = job
            .run(
                &settings(),
                &HashMap::new(),
                2_000,
                &mut Throttle::new(f64::MAX),
                &|| false,
            )
            .unwrap()
            .unwrap();
        let finished = log
            .install_cleaned_until(cleaned, 2_000, Some(step))
            .unwrap();
        drop(log);
        let log = Log::open(dir.path(), compacted()).unwrap();
        assert_eq!(
            committed_view(&log, None),
            expected,
            "after a crash at step {step}"
        );
        assert_eq!(log.log_end_offset(), end);
        let (stored, _) = dump(&log);
        let mut offsets: Vec<i64> = stored.iter().map(|r| r.offset).collect();
        offsets.dedup();
        assert_eq!(
            offsets.len(),
            stored.len(),
            "an offset twice after a crash at step {step}"
        );
        let names = file_names(dir.path());
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with(".cleaned") && !n.ends_with(".swap")),
            "leftovers after a crash at step {step}: {names:?}"
        );
        if finished {
            assert!(step > 8, "the swap has more steps than {step}");
            break;
        }
        step += 1;
    }
}
