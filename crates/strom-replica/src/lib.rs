//! Partitions and the manager that hosts them.

mod cleaner;
mod manager;
mod partition;
mod validate;

pub use cleaner::LogCleaner;
pub use manager::{ReplicaManager, TopicPartition};
pub use partition::{
    AppendResult, Isolation, ListOffsetResult, LogStats, OffsetSpec, Partition, ProducerSummary,
    ReadResult,
};
pub use validate::{
    max_inflated_bytes, validate_produce_batch, Checked, ProduceError, ProduceRules, RecordError,
};

#[cfg(test)]
mod tests;
