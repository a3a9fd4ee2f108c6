//! The state of one transactional id and its record in `__transaction_state`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Kafka's transaction states (Dead and PrepareEpochFence are not needed:
/// an expired id is removed, and fencing completes within one operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// No transaction is open or ending: a new one may begin.
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// Everything the coordinator knows of a transactional id; also the value of
/// its record (JSON), so replaying the newest record restores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub producer_id: i64,
    /// The producer id before the last one was exhausted (-1 if none).
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, for retried InitProducerId (KIP-360);
    /// -1 after a fence.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions in the transaction; in a Prepare state, those still
    /// waiting for their marker.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction began (-1 when none is open).
    pub txn_start_ms: i64,
    pub last_update_ms: i64,
}

/// The key of a `__transaction_state` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnKey {
    pub transactional_id: String,
}

impl TxnKey {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("keys serialise")
    }
    pub fn decode(bytes: &[u8]) -> Option<TxnKey> {
        serde_json::from_slice(bytes).ok()
    }
}
