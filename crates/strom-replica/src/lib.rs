//! Partitions and the manager that hosts them.

mod cleaner;
mod fetcher;
mod manager;
mod partition;
mod replication;
mod validate;

pub use cleaner::{CleanerSnapshot, CleanerStats, LogCleaner};
pub use fetcher::{BoxFuture, FetcherConfig, LeaderLink, ReplicaFetchers, FETCH_VERSION};
pub use manager::{check_leader_epoch, ReplicaManager, ReplicationCounts, TopicPartition};
pub use partition::{
    AppendResult, FetchPosition, FollowerRead, Isolation, IsrChange, ListOffsetResult, LogStats,
    OffsetSpec, Partition, ProducerSummary, ReadResult, Uncommitted,
};
pub use validate::{
    max_inflated_bytes, validate_produce_batch, Checked, ProduceError, ProduceRules, RecordError,
};

#[cfg(test)]
mod tests;
