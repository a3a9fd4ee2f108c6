//! Producer state of one partition. See the README for the rules and the
//! snapshot format.

mod snapshot;

use std::collections::{BTreeMap, VecDeque};

pub use snapshot::{
    delete_snapshots_above, latest_snapshot, list_snapshots, retain_latest_snapshots,
    write_snapshot, SnapshotError,
};
use strom_protocol::records::{self, Batch, ControlMarker};
use strom_protocol::ErrorCode;

/// How many batches per producer are remembered for duplicate detection
/// (Kafka's `max.in.flight.requests.per.connection` ceiling for idempotence).
pub const MAX_CACHED_BATCHES: usize = 5;

const NO_EPOCH: i16 = -1;

/// What the state needs to know of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub max_timestamp: i64,
    pub transactional: bool,
}

impl BatchInfo {
    /// The producer fields of a batch, or `None` for a batch without a
    /// producer id (not idempotent: nothing to track).
    pub fn of(batch: &Batch<'_>) -> Option<BatchInfo> {
        batch.has_producer_id().then(|| BatchInfo {
            producer_id: batch.producer_id(),
            epoch: batch.producer_epoch(),
            first_seq: batch.base_sequence(),
            last_seq: batch.last_sequence(),
            max_timestamp: batch.max_timestamp(),
            transactional: batch.is_transactional(),
        })
    }
}

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// The state of one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub last_timestamp: i64,
    /// Oldest first, at most [`MAX_CACHED_BATCHES`].
    pub batches: VecDeque<BatchMetadata>,
    /// First offset of the producer's ongoing transaction in this partition.
    pub txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last marker written for it here.
    pub coordinator_epoch: Option<i32>,
}

/// A transaction that a commit or abort marker ended in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the marker.
    pub last_offset: i64,
    pub aborted: bool,
}

impl ProducerEntry {
    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// Already in the log: answer with the original offsets, write nothing.
    Duplicate(BatchMetadata),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id} epoch {epoch} is older than the current {current}")]
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id} has an ongoing transaction: expected a transactional write")]
    NotTransactional { producer_id: i64 },
    #[error("producer {producer_id}: sequence {first_seq} does not follow {last_seq:?}")]
    OutOfOrder {
        producer_id: i64,
        first_seq: i32,
        last_seq: Option<i32>,
    },
    #[error("a marker for producer {producer_id} of coordinator epoch {coordinator_epoch}, after one of {current}")]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
}

impl ProducerError {
    /// The Kafka error code for the produce response.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProducerError::InvalidEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            ProducerError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequenceNumber,
            ProducerError::NotTransactional { .. } => ErrorCode::InvalidTxnState,
            ProducerError::CoordinatorFenced { .. } => ErrorCode::TransactionCoordinatorFenced,
        }
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, e)| (*id, e))
    }

    /// Decides on a batch from a client, by Kafka's rules: an older epoch is
    /// fenced; a plain batch while the producer's transaction is open is
    /// refused; a batch equal to one of the last five is a duplicate; a new
    /// epoch must start at sequence 0 (unless the producer is unknown, whose
    /// state may have been removed); otherwise the first sequence must follow
    /// the last one.
    pub fn check(&self, batch: &BatchInfo) -> Result<Verdict, ProducerError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return Ok(Verdict::Append);
        };
        if batch.epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: batch.producer_id,
                epoch: batch.epoch,
                current: entry.epoch,
            });
        }
        if batch.epoch == entry.epoch && !batch.transactional && entry.txn_first_offset.is_some() {
            return Err(ProducerError::NotTransactional {
                producer_id: batch.producer_id,
            });
        }
        if batch.epoch == entry.epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == batch.first_seq && b.last_seq == batch.last_seq)
            {
                return Ok(Verdict::Duplicate(*dup));
            }
        }
        let out_of_order = || ProducerError::OutOfOrder {
            producer_id: batch.producer_id,
            first_seq: batch.first_seq,
            last_seq: entry.last_seq(),
        };
        if batch.epoch != entry.epoch {
            if batch.first_seq != 0 && entry.epoch != NO_EPOCH {
                return Err(out_of_order());
            }
            return Ok(Verdict::Append);
        }
        match entry.last_seq() {
            Some(last) if !in_sequence(last, batch.first_seq) => Err(out_of_order()),
            _ => Ok(Verdict::Append),
        }
    }

    /// Records a batch written at `first_offset..=last_offset`. The only way
    /// state changes: used after an append and when replaying the log.
    pub fn record(&mut self, batch: &BatchInfo, first_offset: i64, last_offset: i64) {
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.epoch,
                ..ProducerEntry::default()
            });
        if batch.epoch != entry.epoch {
            entry.epoch = batch.epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = entry.last_timestamp.max(batch.max_timestamp);
        if batch.transactional && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(first_offset);
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            first_offset,
            last_offset,
            max_timestamp: batch.max_timestamp,
        });
        while entry.batches.len() > MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// Ends the producer's ongoing transaction with a marker written at
    /// `marker_offset`; returns it if there was one (an aborted one goes to
    /// the aborted-transaction index).
    pub fn complete_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        marker_offset: i64,
        marker: ControlMarker,
    ) -> Option<CompletedTxn> {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                ..ProducerEntry::default()
            });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry
            .txn_first_offset
            .take()
            .map(|first_offset| CompletedTxn {
                producer_id,
                first_offset,
                last_offset: marker_offset,
                aborted: marker == ControlMarker::Abort,
            })
    }

    /// Forgets producers whose last batch is at least `expiration_ms` older
    /// than `now_ms` and that have no open transaction (Kafka's
    /// `producer.id.expiration.ms`): their state would otherwise grow with
    /// every producer that ever wrote. Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The smallest first offset of an ongoing transaction: the last stable
    /// offset can be no higher.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|e| e.txn_first_offset)
            .min()
    }

    /// Checks a marker's epoch: the coordinator never writes one older than
    /// the producer's (that would be a zombie coordinator).
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(e) if epoch < e.epoch => Err(ProducerError::InvalidEpoch {
                producer_id,
                epoch,
                current: e.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Checks a marker's coordinator epoch (the leader epoch of the
    /// coordinator's `__transaction_state` partition): a marker from a
    /// coordinator older than the one that wrote the producer's last marker
    /// comes from a deposed coordinator, and is refused as Kafka refuses it.
    pub fn check_coordinator(
        &self,
        producer_id: i64,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerError> {
        match self
            .producers
            .get(&producer_id)
            .and_then(|e| e.coordinator_epoch)
        {
            Some(current) if coordinator_epoch < current => Err(ProducerError::CoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current,
            }),
            _ => Ok(()),
        }
    }

    /// Replays a stored batch (recovery); returns the transaction a control
    /// batch completed.
    pub fn replay(&mut self, batch: &Batch<'_>) -> Option<CompletedTxn> {
        if batch.is_control() {
            let marker = records::control_marker(batch.bytes())?;
            let done = self.complete_txn(
                batch.producer_id(),
                batch.producer_epoch(),
                batch.base_offset(),
                marker,
            );
            if let Some(e) = self.producers.get_mut(&batch.producer_id()) {
                e.coordinator_epoch = records::control_marker_coordinator_epoch(batch.bytes());
            }
            return done;
        }
        if let Some(info) = BatchInfo::of(batch) {
            self.record(&info, batch.base_offset(), batch.last_offset());
        }
        None
    }
}

#[cfg(test)]
mod tests;
