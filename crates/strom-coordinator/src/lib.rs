//! Coordinators whose state lives in internal topics.
//!
//! - [`group`]: the consumer group coordinator, classic and KIP-848.
//! - [`txn`]: the transaction coordinator.
//! - [`records`]: the record format of `__consumer_offsets` and the log
//!   trait both coordinators write through.

pub mod group;
pub mod records;
pub mod txn;

pub use group::{GroupConfig, GroupCoordinator};
pub use records::CoordinatorLog;
pub use txn::{MarkerWriter, ProducerIdSource, TxnConfig, TxnCoordinator};

/// Kafka's `Utils.abs(s.hashCode()) % partitions`: Java's String hash over
/// UTF-16 code units, so a group lands on the partition Kafka would pick.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = key
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn java_string_hash() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(partition_for("hello", i32::MAX), 99162322);
        assert_eq!(partition_for("", 50), 0);
        assert!((0..50).contains(&partition_for("some-group", 50)));
    }
}
