//! The transaction coordinator: producer ids and epochs of transactional
//! ids, the partitions of each open transaction, and the two-phase end of a
//! transaction (Prepare record, markers to every partition, Complete record).
//!
//! State changes only by records written to `__transaction_state` first
//! (`replay` applies them when loading). All state sits behind one mutex,
//! held while an operation decides and writes; markers are written while it
//! is held, so a transactional id never sees a half-finished end.
//!
//! Unlike Kafka, which answers EndTxn once the Prepare record is durable and
//! writes markers afterwards, markers are written before answering: the
//! partitions are local appends. A marker that cannot be written leaves the
//! transaction in its Prepare state; `tick` retries it, and at start-up
//! `tick` completes what a crash left half-done.

mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use strom_protocol::ErrorCode;
use tracing::{info, warn};

use crate::partition_for;
use crate::records::{encode, CoordinatorLog};
pub use state::{TxnKey, TxnMetadata, TxnState};

/// The epoch at which a producer id is considered exhausted (Kafka's
/// `Short.MaxValue - 1`): the next initialisation gets a new producer id.
const EXHAUSTED_EPOCH: i16 = i16::MAX - 1;

/// Coordinator settings, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`
    pub state_partitions: i32,
    /// `offsets.topic.num.partitions`, to find a group's partition.
    pub offsets_partitions: i32,
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i64,
    /// `transactional.id.expiration.ms`
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub abort_check_interval_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            state_partitions: 50,
            offsets_partitions: 50,
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_check_interval_ms: 10_000,
        }
    }
}

/// Where new producer ids come from (the controller's blocks).
pub trait ProducerIdSource: Send + Sync {
    fn next_producer_id(&self) -> Result<i64, ErrorCode>;
}

/// Writes transaction markers to data partitions (and `__consumer_offsets`).
pub trait MarkerWriter: Send + Sync {
    /// Writes a commit or abort marker for `producer_id` at `epoch` to one
    /// partition. UNKNOWN_TOPIC_OR_PARTITION means the partition is gone and
    /// needs no marker; CONCURRENT_TRANSACTIONS that the marker is on its
    /// way (the coordinator asks again, and is then told how it went); any
    /// other error is retried later. `state_partition` is the
    /// `__transaction_state` partition of the transaction, whose leader
    /// epoch is the coordinator epoch the marker carries.
    fn write_marker(
        &self,
        state_partition: i32,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), ErrorCode>;
}

/// A transaction as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: TxnState,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
}

/// A row of ListTransactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

pub struct TxnCoordinator {
    config: TxnConfig,
    log: Arc<dyn CoordinatorLog>,
    ids: Arc<dyn ProducerIdSource>,
    markers: Arc<dyn MarkerWriter>,
    inner: Mutex<Inner>,
    /// Transactions this coordinator completed: committed, aborted.
    completed: [AtomicU64; 2],
}

#[derive(Default)]
struct Inner {
    txns: HashMap<String, TxnMetadata>,
    last_abort_check_ms: i64,
}

/// Errors of writing the coordinator's own records, as a client sees them.
fn log_error(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::NotCoordinator => ErrorCode::NotCoordinator,
        _ => ErrorCode::CoordinatorNotAvailable,
    }
}

impl TxnCoordinator {
    pub fn new(
        config: TxnConfig,
        log: Arc<dyn CoordinatorLog>,
        ids: Arc<dyn ProducerIdSource>,
        markers: Arc<dyn MarkerWriter>,
    ) -> Self {
        TxnCoordinator {
            config,
            log,
            ids,
            markers,
            inner: Mutex::new(Inner::default()),
            completed: Default::default(),
        }
    }

    /// How many transactions this coordinator completed since it started:
    /// (committed, aborted).
    pub fn completed(&self) -> (u64, u64) {
        let [commits, aborts] = &self.completed;
        (
            commits.load(Ordering::Relaxed),
            aborts.load(Ordering::Relaxed),
        )
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// The `__transaction_state` partition that holds `transactional_id`.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.config.state_partitions)
    }

    /// The `__consumer_offsets` partition of a group: what AddOffsetsToTxn
    /// adds to the transaction.
    pub fn offsets_partition_for(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.offsets_partitions)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the transactional ids of `__transaction_state` partition
    /// `partition` (this node no longer leads it). Returns how many went.
    pub fn unload(&self, partition: i32) -> usize {
        let mut inner = self.lock();
        let before = inner.txns.len();
        inner
            .txns
            .retain(|id, _| partition_for(id, self.config.state_partitions) != partition);
        before - inner.txns.len()
    }

    /// Applies one record read back from `__transaction_state`.
    pub fn replay(&self, key: &[u8], value: Option<&[u8]>) {
        let Some(key) = TxnKey::decode(key) else {
            return;
        };
        let mut inner = self.lock();
        match value.and_then(|v| serde_json::from_slice::<TxnMetadata>(v).ok()) {
            Some(meta) => {
                inner.txns.insert(key.transactional_id, meta);
            }
            None => {
                inner.txns.remove(&key.transactional_id);
            }
        }
    }

    /// Writes the record of `id` and, once it is durable, makes it current.
    fn persist(&self, inner: &mut Inner, id: &str, meta: TxnMetadata) -> Result<(), ErrorCode> {
        let key = TxnKey {
            transactional_id: id.to_owned(),
        };
        self.log
            .append(
                self.partition_for(id),
                vec![(key.encode(), Some(encode(&meta)))],
            )
            .map_err(log_error)?;
        inner.txns.insert(id.to_owned(), meta);
        Ok(())
    }

    /// InitProducerId with a transactional id: the id's producer id with its
    /// epoch bumped (fencing older instances), aborting an open transaction
    /// first. `expected` is the producer id and epoch a client sends to bump
    /// its epoch after an abortable error (KIP-360).
    pub fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<(i64, i16), ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        if timeout_ms <= 0 || i64::from(timeout_ms) > self.config.max_timeout_ms {
            return Err(ErrorCode::InvalidTransactionTimeout);
        }
        let mut inner = self.lock();
        let mut meta = match inner.txns.get(transactional_id) {
            Some(m) => m.clone(),
            None => TxnMetadata {
                producer_id: self.ids.next_producer_id()?,
                last_producer_id: -1,
                producer_epoch: -1,
                last_producer_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                txn_start_ms: -1,
                last_update_ms: now_ms,
            },
        };
        if let Some((pid, epoch)) = expected {
            let valid = meta.producer_epoch == -1
                || pid == meta.producer_id
                || (pid == meta.last_producer_id && epoch >= EXHAUSTED_EPOCH);
            if !valid {
                return Err(ErrorCode::ProducerFenced);
            }
        }
        let ended = match meta.state {
            // A crash or a failed marker left the end unfinished.
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                self.finish(&mut inner, transactional_id, &mut meta, now_ms)?
            }
            // Fence the current instance and abort its transaction; then
            // bump again below, as Kafka does when the client retries.
            TxnState::Ongoing => {
                self.fence_and_abort(&mut inner, transactional_id, &mut meta, now_ms)?;
                meta.state.is_complete()
            }
            _ => true,
        };
        if !ended {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let expected_epoch = expected.map(|(_, e)| e);
        if meta.producer_epoch >= EXHAUSTED_EPOCH
            && expected_epoch.is_none_or(|e| e == meta.producer_epoch)
        {
            // A client that named its id and epoch may retry this request:
            // remember the old epoch so the retry is recognised.
            meta.last_producer_epoch = if expected.is_some() {
                meta.producer_epoch
            } else {
                -1
            };
            meta.last_producer_id = meta.producer_id;
            meta.producer_id = self.ids.next_producer_id()?;
            meta.producer_epoch = 0;
        } else {
            match expected_epoch {
                None => {
                    meta.last_producer_epoch = meta.producer_epoch;
                    meta.producer_epoch += 1;
                }
                Some(e) if e == meta.producer_epoch || meta.producer_epoch == -1 => {
                    meta.last_producer_epoch = meta.producer_epoch;
                    meta.producer_epoch += 1;
                }
                // A retry of a bump that already happened.
                Some(e) if e == meta.last_producer_epoch => {}
                Some(_) => return Err(ErrorCode::ProducerFenced),
            }
        }
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        meta.txn_start_ms = -1;
        meta.last_update_ms = now_ms;
        let answer = (meta.producer_id, meta.producer_epoch);
        self.persist(&mut inner, transactional_id, meta)?;
        info!(
            transactional_id,
            producer_id = answer.0,
            epoch = answer.1,
            "initialised transactional producer"
        );
        Ok(answer)
    }

    /// The checks every request of an instance makes: the id is known, the
    /// producer id is its own and the epoch current.
    fn current(
        inner: &Inner,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<TxnMetadata, ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        let meta = inner
            .txns
            .get(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        if meta.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        Ok(meta.clone())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's
    /// `__consumer_offsets` partition): the transaction is open from here on.
    pub fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        let mut inner = self.lock();
        let mut meta = Self::current(&inner, transactional_id, producer_id, epoch)?;
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(ErrorCode::ConcurrentTransactions)
            }
            TxnState::Ongoing if partitions.iter().all(|p| meta.partitions.contains(p)) => {
                return Ok(())
            }
            TxnState::Ongoing => {}
            _ => {
                meta.partitions.clear();
                meta.txn_start_ms = now_ms;
            }
        }
        meta.state = TxnState::Ongoing;
        meta.partitions.extend(partitions.iter().cloned());
        meta.last_update_ms = now_ms;
        self.persist(&mut inner, transactional_id, meta)
    }

    /// Which of `partitions` are part of the open transaction of this
    /// producer (AddPartitionsToTxn v4+ `verify_only`, and the check a
    /// transactional produce or offset commit makes).
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<bool>, ErrorCode> {
        let inner = self.lock();
        let meta = Self::current(&inner, transactional_id, producer_id, epoch)?;
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            TxnState::Ongoing => Ok(partitions
                .iter()
                .map(|p| meta.partitions.contains(p))
                .collect()),
            _ => Ok(vec![false; partitions.len()]),
        }
    }

    /// EndTxn: commits or aborts the open transaction. A retry of an end
    /// that already completed succeeds again.
    pub fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        let mut inner = self.lock();
        let mut meta = Self::current(&inner, transactional_id, producer_id, epoch)?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {}
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                // Finish it now if the markers can be written.
                return if self.finish(&mut inner, transactional_id, &mut meta, now_ms)? {
                    Ok(())
                } else {
                    Err(ErrorCode::ConcurrentTransactions)
                };
            }
            _ => return Err(ErrorCode::InvalidTxnState),
        }
        meta.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        meta.last_update_ms = now_ms;
        self.persist(&mut inner, transactional_id, meta.clone())?;
        // The decision is durable: the client is told it succeeded even if a
        // marker must be retried later (Kafka answers at this point too).
        self.finish(&mut inner, transactional_id, &mut meta, now_ms)?;
        Ok(())
    }

    /// Fences the producer (epoch bump) and aborts its open transaction.
    fn fence_and_abort(
        &self,
        inner: &mut Inner,
        transactional_id: &str,
        meta: &mut TxnMetadata,
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        meta.producer_epoch = meta.producer_epoch.saturating_add(1);
        meta.last_producer_epoch = -1;
        meta.state = TxnState::PrepareAbort;
        meta.last_update_ms = now_ms;
        self.persist(inner, transactional_id, meta.clone())?;
        self.finish(inner, transactional_id, meta, now_ms)?;
        Ok(())
    }

    /// Writes the markers of a transaction in a Prepare state; once every
    /// partition has its marker, writes the Complete record. Returns whether
    /// the transaction is complete.
    fn finish(
        &self,
        inner: &mut Inner,
        transactional_id: &str,
        meta: &mut TxnMetadata,
        now_ms: i64,
    ) -> Result<bool, ErrorCode> {
        let commit = match meta.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(meta.state.is_complete()),
        };
        let pending: Vec<(String, i32)> = meta.partitions.iter().cloned().collect();
        for (topic, partition) in pending {
            match self.markers.write_marker(
                self.partition_for(transactional_id),
                &topic,
                partition,
                meta.producer_id,
                meta.producer_epoch,
                commit,
            ) {
                Ok(()) | Err(ErrorCode::UnknownTopicOrPartition) => {
                    meta.partitions.remove(&(topic, partition));
                }
                // On its way: asked again once delivered.
                Err(ErrorCode::ConcurrentTransactions) => {}
                Err(code) => {
                    warn!(transactional_id, %topic, partition, ?code, "cannot write transaction marker; will retry");
                }
            }
        }
        if !meta.partitions.is_empty() {
            // Those done are not written again when it is asked again (the
            // record still names them all: a coordinator that loads it
            // writes every marker again, which is harmless).
            inner.txns.insert(transactional_id.to_owned(), meta.clone());
            return Ok(false);
        }
        // The start time stays, as Kafka's `prepareComplete` keeps it: a
        // completed transaction is described with it.
        meta.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        meta.last_update_ms = now_ms;
        self.persist(inner, transactional_id, meta.clone())?;
        self.completed[usize::from(!commit)].fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Timers: aborts transactions open longer than their timeout (fencing
    /// the producer), finishes ends whose markers failed or were cut short
    /// by a crash, and forgets ids unused for `transactional.id.expiration.ms`.
    pub fn tick(&self, now_ms: i64) {
        let mut inner = self.lock();
        let check_timeouts =
            now_ms.saturating_sub(inner.last_abort_check_ms) >= self.config.abort_check_interval_ms;
        if check_timeouts {
            inner.last_abort_check_ms = now_ms;
        }
        let ids: Vec<String> = inner.txns.keys().cloned().collect();
        for id in ids {
            let mut meta = inner.txns[&id].clone();
            let outcome = match meta.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    self.finish(&mut inner, &id, &mut meta, now_ms).map(|_| ())
                }
                TxnState::Ongoing
                    if check_timeouts
                        && now_ms > meta.txn_start_ms + i64::from(meta.timeout_ms) =>
                {
                    info!(transactional_id = %id, producer_id = meta.producer_id, "aborting a transaction that timed out");
                    self.fence_and_abort(&mut inner, &id, &mut meta, now_ms)
                }
                state
                    if state.is_complete()
                        && now_ms.saturating_sub(meta.last_update_ms)
                            >= self.config.id_expiration_ms =>
                {
                    let key = TxnKey {
                        transactional_id: id.clone(),
                    };
                    self.log
                        .append(self.partition_for(&id), vec![(key.encode(), None)])
                        .map(|()| {
                            info!(transactional_id = %id, "transactional id expired");
                            inner.txns.remove(&id);
                        })
                }
                _ => Ok(()),
            };
            if let Err(code) = outcome {
                warn!(transactional_id = %id, ?code, "transaction timer failed; will retry");
            }
        }
    }

    /// DescribeTransactions for one id.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        let inner = self.lock();
        let m = inner
            .txns
            .get(transactional_id)
            .ok_or(ErrorCode::TransactionalIdNotFound)?;
        Ok(TxnDescription {
            transactional_id: transactional_id.to_owned(),
            state: m.state,
            timeout_ms: m.timeout_ms,
            start_ms: m.txn_start_ms,
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            partitions: m.partitions.iter().cloned().collect(),
        })
    }

    /// ListTransactions: filters apply when non-empty; `min_duration_ms`
    /// (when not negative) keeps transactions open at least that long.
    pub fn list(
        &self,
        states: &[TxnState],
        producer_ids: &[i64],
        min_duration_ms: i64,
        now_ms: i64,
    ) -> Vec<TxnListing> {
        let inner = self.lock();
        let mut out: Vec<TxnListing> = inner
            .txns
            .iter()
            .filter(|(_, m)| states.is_empty() || states.contains(&m.state))
            .filter(|(_, m)| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|(_, m)| {
                // Only a transaction under way runs for a duration.
                min_duration_ms < 0
                    || (!m.state.is_complete()
                        && m.txn_start_ms >= 0
                        && now_ms - m.txn_start_ms >= min_duration_ms)
            })
            .map(|(id, m)| TxnListing {
                transactional_id: id.clone(),
                producer_id: m.producer_id,
                state: m.state,
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}
