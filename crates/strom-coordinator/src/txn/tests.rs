use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use proptest::prelude::*;

use super::*;

/// A written record: key and value (None for a tombstone).
type Written = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct MemLog(Mutex<Vec<Written>>);

impl CoordinatorLog for MemLog {
    fn append(
        &self,
        _partition: i32,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode> {
        self.0.lock().unwrap().extend(records);
        Ok(())
    }
    fn append_transactional(
        &self,
        _: i32,
        _: i64,
        _: i16,
        _: u64,
        _: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode> {
        unreachable!("the transaction coordinator writes no transactional records")
    }
}

#[derive(Default)]
struct Ids(AtomicI64);

impl ProducerIdSource for Ids {
    fn next_producer_id(&self) -> Result<i64, ErrorCode> {
        Ok(1000 + self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// A marker as written: topic, partition, producer id, epoch, commit.
type Marker = (String, i32, i64, i16, bool);

#[derive(Default)]
struct Markers {
    written: Mutex<Vec<Marker>>,
    failing: AtomicBool,
    /// Partitions whose markers are on their way (not yet committed).
    pending: Mutex<Vec<(String, i32)>>,
}

impl MarkerWriter for Markers {
    fn write_marker(
        &self,
        _state_partition: i32,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), ErrorCode> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        if self
            .pending
            .lock()
            .unwrap()
            .contains(&(topic.to_owned(), partition))
        {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        self.written
            .lock()
            .unwrap()
            .push((topic.into(), partition, producer_id, epoch, commit));
        Ok(())
    }
}

struct Fixture {
    c: TxnCoordinator,
    log: Arc<MemLog>,
    ids: Arc<Ids>,
    markers: Arc<Markers>,
}

fn fixture() -> Fixture {
    let log = Arc::new(MemLog::default());
    let ids = Arc::new(Ids::default());
    let markers = Arc::new(Markers::default());
    let config = TxnConfig {
        abort_check_interval_ms: 0,
        ..TxnConfig::default()
    };
    Fixture {
        c: TxnCoordinator::new(config, log.clone(), ids.clone(), markers.clone()),
        log,
        ids,
        markers,
    }
}

impl Fixture {
    /// A coordinator loaded from this one's log (same id source and markers).
    fn reloaded(&self) -> TxnCoordinator {
        let c = TxnCoordinator::new(
            self.c.config().clone(),
            self.log.clone(),
            self.ids.clone(),
            self.markers.clone(),
        );
        for (k, v) in self.log.0.lock().unwrap().iter() {
            c.replay(k, v.as_deref());
        }
        c
    }
    fn markers(&self) -> Vec<Marker> {
        std::mem::take(&mut *self.markers.written.lock().unwrap())
    }
}

fn tp(topic: &str, p: i32) -> (String, i32) {
    (topic.into(), p)
}

#[test]
fn init_bumps_the_epoch_and_fences_the_older_instance() {
    let f = fixture();
    assert_eq!(f.c.init_producer_id("tx", 60_000, None, 0), Ok((1000, 0)));
    assert_eq!(f.c.init_producer_id("tx", 60_000, None, 0), Ok((1000, 1)));
    assert_eq!(
        f.c.add_partitions("tx", 1000, 0, &[tp("t", 0)], 0),
        Err(ErrorCode::ProducerFenced)
    );
    assert_eq!(
        f.c.add_partitions("tx", 999, 1, &[tp("t", 0)], 0),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    assert_eq!(
        f.c.add_partitions("other", 1000, 1, &[tp("t", 0)], 0),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    assert_eq!(
        f.c.init_producer_id("tx", 0, None, 0),
        Err(ErrorCode::InvalidTransactionTimeout)
    );
    assert_eq!(
        f.c.init_producer_id("tx", 900_001, None, 0),
        Err(ErrorCode::InvalidTransactionTimeout)
    );
    assert_eq!(
        f.c.init_producer_id("", 1000, None, 0),
        Err(ErrorCode::InvalidRequest)
    );
}

#[test]
fn commit_and_abort_write_markers_to_every_partition() {
    let f = fixture();
    let (pid, e) = f.c.init_producer_id("tx", 60_000, None, 0).unwrap();
    f.c.add_partitions("tx", pid, e, &[tp("a", 0), tp("b", 1)], 1)
        .unwrap();
    f.c.add_partitions("tx", pid, e, &[tp("a", 0)], 2).unwrap();
    assert_eq!(
        f.c.verify_partitions("tx", pid, e, &[tp("a", 0), tp("a", 1)]),
        Ok(vec![true, false])
    );
    assert_eq!(f.c.describe("tx").unwrap().state, TxnState::Ongoing);
    assert_eq!(f.c.describe("tx").unwrap().start_ms, 1);
    f.c.end_txn("tx", pid, e, true, 3).unwrap();
    assert_eq!(
        f.markers(),
        vec![("a".into(), 0, pid, e, true), ("b".into(), 1, pid, e, true)]
    );
    assert_eq!(f.c.describe("tx").unwrap().state, TxnState::CompleteCommit);
    // Completed, it is still described with its start time (as Kafka does).
    assert_eq!(f.c.describe("tx").unwrap().start_ms, 1);
    // A retried commit succeeds again; an abort now is out of order.
    assert_eq!(f.c.end_txn("tx", pid, e, true, 4), Ok(()));
    assert_eq!(
        f.c.end_txn("tx", pid, e, false, 4),
        Err(ErrorCode::InvalidTxnState)
    );
    assert!(f.markers().is_empty());
    // The next transaction starts afresh (a new start time) and aborts.
    f.c.add_partitions("tx", pid, e, &[tp("c", 2)], 5).unwrap();
    assert_eq!(f.c.describe("tx").unwrap().start_ms, 5);
    f.c.end_txn("tx", pid, e, false, 6).unwrap();
    assert_eq!(f.markers(), vec![("c".into(), 2, pid, e, false)]);
    assert_eq!(
        f.c.end_txn("tx", pid, e, true, 7),
        Err(ErrorCode::InvalidTxnState)
    );
    let (_, e2) = f.c.init_producer_id("tx", 60_000, None, 8).unwrap();
    assert_eq!(
        f.c.end_txn("tx", pid, e2, true, 9),
        Err(ErrorCode::InvalidTxnState),
        "nothing open"
    );
}

#[test]
fn markers_on_their_way_complete_the_end_later_and_those_written_are_not_written_again() {
    let f = fixture();
    let (pid, e) = f.c.init_producer_id("tx", 60_000, None, 0).unwrap();
    f.c.add_partitions("tx", pid, e, &[tp("a", 0), tp("b", 1)], 1)
        .unwrap();
    f.markers.pending.lock().unwrap().push(tp("b", 1));
    // The decision is durable: the end succeeds, the transaction waits.
    f.c.end_txn("tx", pid, e, true, 2).unwrap();
    assert_eq!(f.markers(), vec![("a".into(), 0, pid, e, true)]);
    assert_eq!(f.c.describe("tx").unwrap().state, TxnState::PrepareCommit);
    assert_eq!(
        f.c.add_partitions("tx", pid, e, &[tp("a", 0)], 3),
        Err(ErrorCode::ConcurrentTransactions)
    );
    f.c.tick(4);
    assert!(f.markers().is_empty(), "a's marker is not written again");
    f.markers.pending.lock().unwrap().clear();
    f.c.tick(5);
    assert_eq!(f.markers(), vec![("b".into(), 1, pid, e, true)]);
    assert_eq!(f.c.describe("tx").unwrap().state, TxnState::CompleteCommit);
}

#[test]
fn a_new_instance_aborts_the_open_transaction_of_the_old_one() {
    let f = fixture();
    let (pid, e) = f.c.init_producer_id("tx", 60_000, None, 0).unwrap();
    f.c.add_partitions("tx", pid, e, &[tp("t", 0)], 0).unwrap();
    let (pid2, e2) = f.c.init_producer_id("tx", 60_000, None, 1).unwrap();
    assert_eq!((pid2, e2), (pid, e + 2));
    assert_eq!(f.markers(), vec![("t".into(), 0, pid, e + 1, false)]);
    assert_eq!(
        f.c.end_txn("tx", pid, e, true, 2),
        Err(ErrorCode::ProducerFenced)
    );
}

#[test]
fn a_timed_out_transaction_is_aborted_and_its_producer_fenced() {
    let f = fixture();
    let (pid, e) = f.c.init_producer_id("tx", 1_000, None, 0).unwrap();
    f.c.add_partitions("tx", pid, e, &[tp("t", 0)], 100)
        .unwrap();
    f.c.tick(1_000);
    assert_eq!(f.c.describe("tx").unwrap().state, TxnState::Ongoing);
    f.c.tick(1_101);
    assert_eq!(f.markers(), vec![("t".into(), 0, pid, e + 1, false)]);
    assert_eq!(f.c.describe("tx").unwrap().state, TxnState::CompleteAbort);
    assert_eq!(
        f.c.end_txn("tx", pid, e, true, 1_200),
        Err(ErrorCode::ProducerFenced)
    );
    assert_eq!(
        f.c.init_producer_id("tx", 1_000, Some((pid, e)), 1_300),
        Err(ErrorCode::ProducerFenced),
        "a KIP-360 bump from the fenced epoch"
    );
}

#[test]
fn markers_that_fail_are_retried_and_a_crash_mid_way_is_completed_on_load() {
    let f = fixture();
    let (pid, e) = f.c.init_producer_id("tx", 60_000, None, 0).unwrap();
    f.c.add_partitions("tx", pid, e, &[tp("t", 0), tp("t", 1)], 0)
        .unwrap();
    f.markers.failing.store(true, Ordering::SeqCst);
    // The decision is durable, so the client hears success.
    assert_eq!(f.c.end_txn("tx", pid, e, true, 1), Ok(()));
    assert_eq!(f.c.describe("tx").unwrap().state, TxnState::PrepareCommit);
    assert_eq!(
        f.c.add_partitions("tx", pid, e, &[tp("t", 0)], 2),
        Err(ErrorCode::ConcurrentTransactions)
    );
    assert_eq!(
        f.c.end_txn("tx", pid, e, true, 2),
        Err(ErrorCode::ConcurrentTransactions)
    );
    // As if the node died now: a new coordinator loads the Prepare state.
    let reloaded = f.reloaded();
    assert_eq!(
        reloaded.describe("tx").unwrap().state,
        TxnState::PrepareCommit
    );
    f.markers.failing.store(false, Ordering::SeqCst);
    reloaded.tick(3);
    assert_eq!(
        reloaded.describe("tx").unwrap().state,
        TxnState::CompleteCommit
    );
    assert_eq!(
        f.markers(),
        vec![("t".into(), 0, pid, e, true), ("t".into(), 1, pid, e, true)]
    );
}

#[test]
fn kip_360_bumps_and_retries() {
    let f = fixture();
    let (pid, e) = f.c.init_producer_id("tx", 60_000, None, 0).unwrap();
    let bumped =
        f.c.init_producer_id("tx", 60_000, Some((pid, e)), 1)
            .unwrap();
    assert_eq!(bumped, (pid, e + 1));
    // The same request again (its answer was lost) is answered the same.
    assert_eq!(
        f.c.init_producer_id("tx", 60_000, Some((pid, e)), 2),
        Ok(bumped)
    );
    assert_eq!(
        f.c.init_producer_id("tx", 60_000, Some((pid + 7, e)), 2),
        Err(ErrorCode::ProducerFenced)
    );
}

#[test]
fn an_exhausted_epoch_gets_a_new_producer_id() {
    let f = fixture();
    let (pid, _) = f.c.init_producer_id("tx", 60_000, None, 0).unwrap();
    let mut meta = f.c.lock().txns["tx"].clone();
    meta.producer_epoch = EXHAUSTED_EPOCH;
    f.c.lock().txns.insert("tx".into(), meta);
    let (pid2, e2) = f.c.init_producer_id("tx", 60_000, None, 1).unwrap();
    assert_ne!(pid2, pid);
    assert_eq!(e2, 0);
    // KIP-360: a producer at the exhausted epoch asks for a bump and
    // retries the request; both get the new id.
    let mut meta = f.c.lock().txns["tx"].clone();
    meta.producer_epoch = EXHAUSTED_EPOCH;
    f.c.lock().txns.insert("tx".into(), meta);
    let expected = Some((pid2, EXHAUSTED_EPOCH));
    let rotated = f.c.init_producer_id("tx", 60_000, expected, 2).unwrap();
    assert_ne!(rotated.0, pid2);
    assert_eq!(f.c.init_producer_id("tx", 60_000, expected, 3), Ok(rotated));
}

#[test]
fn ids_expire_and_listing_filters() {
    let f = fixture();
    let (p1, e1) = f.c.init_producer_id("a", 60_000, None, 0).unwrap();
    f.c.init_producer_id("b", 60_000, None, 0).unwrap();
    f.c.add_partitions("a", p1, e1, &[tp("t", 0)], 10).unwrap();
    let names = |v: Vec<TxnListing>| {
        v.into_iter()
            .map(|l| l.transactional_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(f.c.list(&[], &[], -1, 20)), vec!["a", "b"]);
    assert_eq!(
        names(f.c.list(&[TxnState::Ongoing], &[], -1, 20)),
        vec!["a"]
    );
    assert_eq!(names(f.c.list(&[], &[p1], -1, 20)), vec!["a"]);
    assert_eq!(names(f.c.list(&[], &[], 5, 20)), vec!["a"]);
    assert!(f.c.list(&[], &[], 50, 20).is_empty());
    f.c.tick(TxnConfig::default().id_expiration_ms + 1);
    assert_eq!(
        f.c.describe("b").unwrap_err(),
        ErrorCode::TransactionalIdNotFound
    );
    // "a" timed out and was aborted at that tick: it expires later.
    assert!(f.c.describe("a").is_ok());
    assert!(f.reloaded().describe("b").is_err(), "the tombstone replays");
}

#[derive(Debug, Clone)]
enum Op {
    Init { id: u8, expected: bool },
    Add { id: u8, partition: u8, stale: bool },
    End { id: u8, commit: bool },
    Tick { advance: u16 },
    FailMarkers(bool),
    Reload,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, any::<bool>()).prop_map(|(id, expected)| Op::Init { id, expected }),
        (0u8..3, 0u8..4, prop::bool::weighted(0.1)).prop_map(|(id, partition, stale)| Op::Add {
            id,
            partition,
            stale
        }),
        (0u8..3, any::<bool>()).prop_map(|(id, commit)| Op::End { id, commit }),
        (0u16..3000).prop_map(|advance| Op::Tick { advance }),
        prop::bool::weighted(0.2).prop_map(Op::FailMarkers),
        Just(Op::Reload),
    ]
}

proptest! {
    /// Under random operations, failing markers and reloads: epochs of an id
    /// never go back; a transaction completes only after every partition
    /// got a marker of the decided kind at the current epoch; reloading
    /// yields the same state; states and partitions stay consistent.
    #[test]
    fn coordinator_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut f = fixture();
        let mut now = 0i64;
        let mut epochs: HashMap<String, (i64, i16)> = HashMap::new();
        for op in ops {
            now += 1;
            let id = |n: u8| format!("tx{n}");
            match op {
                Op::Init { id: n, expected } => {
                    let exp = if expected { epochs.get(&id(n)).copied() } else { None };
                    let _ = f.c.init_producer_id(&id(n), 2_000, exp, now);
                }
                Op::Add { id: n, partition, stale } => {
                    if let Ok(d) = f.c.describe(&id(n)) {
                        let epoch = if stale { d.producer_epoch - 1 } else { d.producer_epoch };
                        let r = f.c.add_partitions(&id(n), d.producer_id, epoch, &[tp("t", i32::from(partition))], now);
                        if stale { prop_assert_eq!(r, Err(ErrorCode::ProducerFenced)); }
                    }
                }
                Op::End { id: n, commit } => {
                    if let Ok(d) = f.c.describe(&id(n)) {
                        f.markers();
                        let before = d.partitions.clone();
                        let r = f.c.end_txn(&id(n), d.producer_id, d.producer_epoch, commit, now);
                        let after = f.c.describe(&id(n)).unwrap();
                        if d.state == TxnState::Ongoing {
                            prop_assert_eq!(r, Ok(()));
                            let done = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
                            if after.state == done {
                                let mut got: Vec<(String, i32)> = f.markers().into_iter().map(|(t, p, pid, e, c)| {
                                    assert_eq!((pid, e, c), (d.producer_id, d.producer_epoch, commit));
                                    (t, p)
                                }).collect();
                                got.sort();
                                prop_assert_eq!(got, before);
                            }
                        }
                    }
                }
                Op::Tick { advance } => {
                    now += i64::from(advance);
                    f.c.tick(now);
                }
                Op::FailMarkers(fail) => f.markers.failing.store(fail, Ordering::SeqCst),
                Op::Reload => {
                    let c = f.reloaded();
                    for n in 0..3 {
                        prop_assert_eq!(c.describe(&id(n)), f.c.describe(&id(n)));
                    }
                    f.c = c;
                }
            }
            for n in 0..3 {
                if let Ok(d) = f.c.describe(&id(n)) {
                    if let Some(&(pid, e)) = epochs.get(&id(n)) {
                        prop_assert!(d.producer_id != pid || d.producer_epoch >= e, "epoch went back");
                    }
                    epochs.insert(id(n), (d.producer_id, d.producer_epoch));
                    match d.state {
                        TxnState::Ongoing => prop_assert!(!d.partitions.is_empty() && d.start_ms >= 0),
                        // Complete: no partitions left; the start time of the
                        // transaction that completed stays (Kafka's rule).
                        s if s.is_complete() => prop_assert!(d.partitions.is_empty()),
                        _ => {}
                    }
                }
            }
        }
    }
}
