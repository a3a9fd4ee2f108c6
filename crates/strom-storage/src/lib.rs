//! The partition log.
//!
//! - [`Log`] owns a partition directory: an ordered set of segments, the
//!   log start and end offsets, roll, flush and retention policy.
//! - [`segment`] is one `.log` file with its in-memory indexes.
//! - [`index`] holds the on-disk format of the offset and time indexes.
//! - [`txn_index`] is the aborted-transaction index of a segment.
//! - [`epochs`] is the leader-epoch cache (`leader-epoch-checkpoint`).
//! - [`cleaner`] compacts logs: the latest record of each key stays.
//!
//! Invariants: offsets in the log are strictly increasing, and dense across
//! batch boundaries (each batch starts at the previous batch's last offset
//! plus one) except where the cleaner removed batches; every byte below a
//! segment's `size` is a whole, CRC-valid batch; a segment other than the
//! last one is never written again, only replaced whole by the cleaner.

pub mod cleaner;
mod config;
pub mod epochs;
mod error;
mod file_pool;
pub mod index;
mod log;
pub mod segment;
pub mod txn_index;

pub use cleaner::{CleanJob, CleanStats, Cleaned, CleanerSettings, Dirtiness, Throttle};
pub use config::LogConfig;
pub use epochs::{EpochEntry, LeaderEpochCache};
pub use error::StorageError;
pub use file_pool::{open_files as open_segment_files, set_capacity as set_open_segment_files};
pub use log::{
    parse_log_start_offset, read_log_start_offset, AppendInfo, FetchData, Log, TimestampOffset,
};
pub use txn_index::AbortedTxn;

#[cfg(test)]
mod cleaner_tests;
#[cfg(test)]
mod follower_tests;
#[cfg(test)]
mod tests;
