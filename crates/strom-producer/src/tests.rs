use proptest::prelude::*;

use super::*;

fn info(pid: i64, epoch: i16, first: i32, last: i32) -> BatchInfo {
    BatchInfo {
        producer_id: pid,
        epoch,
        first_seq: first,
        last_seq: last,
        max_timestamp: 0,
        transactional: false,
    }
}

#[test]
fn sequences_duplicates_and_gaps() {
    let mut s = ProducerStateManager::new();
    let b0 = info(1, 0, 0, 4);
    assert_eq!(s.check(&b0), Ok(Verdict::Append));
    s.record(&b0, 100, 104);
    // The same batch again: a duplicate with its original offsets.
    match s.check(&b0) {
        Ok(Verdict::Duplicate(m)) => assert_eq!((m.first_offset, m.last_offset), (100, 104)),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.check(&info(1, 0, 5, 9)), Ok(Verdict::Append));
    let gap = s.check(&info(1, 0, 7, 9)).unwrap_err();
    assert_eq!(gap.code(), ErrorCode::OutOfOrderSequenceNumber);
}

#[test]
fn epochs() {
    let mut s = ProducerStateManager::new();
    s.record(&info(1, 3, 0, 0), 0, 0);
    let stale = s.check(&info(1, 2, 1, 1)).unwrap_err();
    assert_eq!(stale.code(), ErrorCode::InvalidProducerEpoch);
    // A new epoch must start over at 0.
    assert!(s.check(&info(1, 4, 5, 5)).is_err());
    assert_eq!(s.check(&info(1, 4, 0, 0)), Ok(Verdict::Append));
    s.record(&info(1, 4, 0, 0), 1, 1);
    assert_eq!(s.entry(1).unwrap().batches.len(), 1);
}

#[test]
fn unknown_producer_may_start_anywhere_and_sequence_wraps() {
    let mut s = ProducerStateManager::new();
    assert_eq!(s.check(&info(9, 0, 42, 50)), Ok(Verdict::Append));
    s.record(&info(9, 0, i32::MAX - 1, i32::MAX), 0, 1);
    assert_eq!(s.check(&info(9, 0, 0, 3)), Ok(Verdict::Append));
}

#[test]
fn idle_producers_expire_unless_a_transaction_is_open() {
    let mut s = ProducerStateManager::new();
    let at = |pid, ts, transactional| BatchInfo {
        max_timestamp: ts,
        transactional,
        ..info(pid, 0, 0, 0)
    };
    s.record(&at(1, 1_000, false), 0, 0);
    s.record(&at(2, 5_000, false), 1, 1);
    s.record(&at(3, 1_000, true), 2, 2);
    assert_eq!(s.expire(5_999, 5_000), 0);
    assert_eq!(s.expire(6_000, 5_000), 1, "producer 1 is idle for 5 s");
    assert!(
        s.entry(1).is_none() && s.entry(3).is_some(),
        "3 has an open transaction"
    );
    assert_eq!(
        s.check(&info(1, 0, 7, 7)),
        Ok(Verdict::Append),
        "forgotten: may start anywhere"
    );
}

#[test]
fn only_five_batches_are_remembered() {
    let mut s = ProducerStateManager::new();
    for i in 0..7 {
        s.record(&info(1, 0, i, i), i64::from(i), i64::from(i));
    }
    assert_eq!(s.entry(1).unwrap().batches.len(), MAX_CACHED_BATCHES);
    assert!(matches!(
        s.check(&info(1, 0, 6, 6)),
        Ok(Verdict::Duplicate(_))
    ));
    assert!(matches!(
        s.check(&info(1, 0, 2, 2)),
        Ok(Verdict::Duplicate(_))
    ));
    // Older than the window: not provably a duplicate, refused as out of order.
    assert!(s.check(&info(1, 0, 1, 1)).is_err());
}

#[test]
fn snapshot_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = ProducerStateManager::new();
    s.record(&info(1, 0, 0, 4), 0, 4);
    write_snapshot(dir.path(), 5, &s).unwrap();
    s.record(&info(2, 1, 0, 0), 5, 5);
    write_snapshot(dir.path(), 6, &s).unwrap();
    assert_eq!(list_snapshots(dir.path()).unwrap(), vec![5, 6]);
    let (at, got) = latest_snapshot(dir.path(), 5).unwrap().unwrap();
    assert_eq!(at, 5);
    assert_eq!(got.len(), 1);
    // A corrupt newest snapshot falls back to the older one.
    std::fs::write(dir.path().join(format!("{:020}.snapshot", 6)), b"garbage").unwrap();
    assert_eq!(latest_snapshot(dir.path(), 100).unwrap().unwrap().0, 5);
    delete_snapshots_above(dir.path(), 5).unwrap();
    assert_eq!(list_snapshots(dir.path()).unwrap(), vec![5]);
}

/// A model of the sequence rules for one producer: the set of
/// (epoch, first, last) batches written, in order.
fn arb_batches() -> impl Strategy<Value = Vec<(i16, i32, i32)>> {
    proptest::collection::vec((0i16..3, 0i32..20, 0i32..4), 1..40)
        .prop_map(|v| v.into_iter().map(|(e, f, n)| (e, f, f + n)).collect())
}

proptest! {
    /// Whatever a client sends, the log never holds a gap or a repeat within
    /// an epoch, and a duplicate always names a batch that was appended.
    #[test]
    fn log_of_accepted_batches_is_gapless(batches in arb_batches()) {
        let mut s = ProducerStateManager::new();
        let mut written: Vec<(i16, i32, i32, i64)> = Vec::new();
        let mut next_offset = 0i64;
        for (epoch, first, last) in batches {
            let b = info(1, epoch, first, last);
            match s.check(&b) {
                Ok(Verdict::Append) => {
                    if let Some(&(pe, _, pl, _)) = written.last() {
                        prop_assert!(epoch >= pe);
                        if epoch == pe { prop_assert_eq!(first, pl + 1); } else { prop_assert_eq!(first, 0); }
                    }
                    let len = i64::from(last - first) + 1;
                    s.record(&b, next_offset, next_offset + len - 1);
                    written.push((epoch, first, last, next_offset));
                    next_offset += len;
                }
                Ok(Verdict::Duplicate(m)) => {
                    prop_assert!(written.contains(&(epoch, m.first_seq, m.last_seq, m.first_offset)));
                }
                Err(_) => {}
            }
        }
    }

    #[test]
    fn snapshot_round_trip(batches in arb_batches(), pids in proptest::collection::vec(0i64..5, 1..40)) {
        let mut s = ProducerStateManager::new();
        for (i, ((e, f, l), pid)) in batches.into_iter().zip(pids).enumerate() {
            s.record(&info(pid, e, f, l), i as i64, i as i64);
        }
        prop_assert_eq!(ProducerStateManager::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn arbitrary_snapshot_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = ProducerStateManager::decode(&bytes);
    }
}

mod transactions {
    use super::*;
    use strom_protocol::records::ControlMarker;

    fn txn(pid: i64, first: i32, last: i32) -> BatchInfo {
        BatchInfo {
            transactional: true,
            ..info(pid, 0, first, last)
        }
    }

    #[test]
    fn plain_writes_inside_a_transaction_and_stale_markers_are_refused() {
        let mut s = ProducerStateManager::new();
        s.record(&txn(1, 0, 0), 0, 0);
        let plain = s.check(&info(1, 0, 1, 1)).unwrap_err();
        assert_eq!(plain.code(), ErrorCode::InvalidTxnState);
        assert_eq!(s.check(&txn(1, 1, 1)), Ok(Verdict::Append));
        assert_eq!(s.check_marker(1, 0), Ok(()));
        s.complete_txn(1, 1, 1, ControlMarker::Abort).unwrap();
        assert_eq!(
            s.check_marker(1, 0).unwrap_err().code(),
            ErrorCode::InvalidProducerEpoch,
            "the abort came with a bumped epoch"
        );
        assert_eq!(s.check(&info(1, 1, 0, 0)), Ok(Verdict::Append));
    }

    #[test]
    fn ongoing_transactions_bound_the_last_stable_offset() {
        let mut s = ProducerStateManager::new();
        assert_eq!(s.first_unstable_offset(), None);
        s.record(&txn(1, 0, 1), 10, 11);
        s.record(&txn(2, 0, 0), 12, 12);
        s.record(&txn(1, 2, 2), 13, 13);
        assert_eq!(s.first_unstable_offset(), Some(10));
        let done = s.complete_txn(1, 0, 14, ControlMarker::Abort).unwrap();
        assert_eq!(
            done,
            CompletedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 14,
                aborted: true
            }
        );
        assert_eq!(s.first_unstable_offset(), Some(12));
        // Snapshots keep the ongoing transaction.
        let restored = ProducerStateManager::decode(&s.encode()).unwrap();
        assert_eq!(restored.first_unstable_offset(), Some(12));
        assert!(
            s.complete_txn(1, 0, 15, ControlMarker::Commit).is_none(),
            "nothing ongoing for producer 1"
        );
        s.complete_txn(2, 0, 16, ControlMarker::Commit).unwrap();
        assert_eq!(s.first_unstable_offset(), None);
    }

    /// A model: per producer, the first offset of its open transaction.
    #[derive(Debug, Clone)]
    enum Step {
        Write(i64, usize),
        End(i64, bool),
    }

    proptest! {
        #[test]
        fn first_unstable_offset_matches_a_model(steps in proptest::collection::vec(prop_oneof![
            (0i64..3, 1usize..4).prop_map(|(p, n)| Step::Write(p, n)),
            (0i64..3, any::<bool>()).prop_map(|(p, c)| Step::End(p, c)),
        ], 1..60)) {
            let mut s = ProducerStateManager::new();
            let mut open: std::collections::BTreeMap<i64, i64> = Default::default();
            let mut seqs: std::collections::BTreeMap<i64, i32> = Default::default();
            let mut offset = 0i64;
            for step in steps {
                match step {
                    Step::Write(p, n) => {
                        let seq = seqs.entry(p).or_insert(0);
                        s.record(&txn(p, *seq, *seq + n as i32 - 1), offset, offset + n as i64 - 1);
                        *seq += n as i32;
                        open.entry(p).or_insert(offset);
                        offset += n as i64;
                    }
                    Step::End(p, commit) => {
                        let marker = if commit { ControlMarker::Commit } else { ControlMarker::Abort };
                        let done = s.complete_txn(p, 0, offset, marker);
                        prop_assert_eq!(done.map(|d| d.first_offset), open.remove(&p));
                        offset += 1;
                    }
                }
                prop_assert_eq!(s.first_unstable_offset(), open.values().min().copied());
            }
        }
    }
}

#[test]
fn a_marker_s_coordinator_epoch_is_kept_and_snapshotted() {
    use strom_protocol::records::{build_control_batch, Batch, BatchProducer};
    let mut s = ProducerStateManager::new();
    let producer = BatchProducer {
        id: 4,
        epoch: 1,
        base_sequence: -1,
        transactional: true,
    };
    let marker = build_control_batch(producer, ControlMarker::Commit, 7, 1_000);
    s.replay(&Batch::parse(&marker).unwrap());
    let entry = s.producers().find(|(id, _)| *id == 4).unwrap().1.clone();
    assert_eq!(entry.coordinator_epoch, Some(7));
    let restored = ProducerStateManager::decode(&s.encode()).unwrap();
    assert_eq!(restored, s);
}
