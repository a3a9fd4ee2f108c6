//! Records of `__consumer_offsets` and the log a coordinator writes to.

use serde::{Deserialize, Serialize};
use strom_protocol::ErrorCode;

/// Where the coordinator's records go: an append to one partition of
/// `__consumer_offsets`, acknowledged once durable like any produce.
pub trait CoordinatorLog: Send + Sync {
    fn append(
        &self,
        partition: i32,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode>;

    /// Appends records as part of a producer's transaction (a transactional
    /// batch with its producer id and epoch): offsets committed with
    /// TxnOffsetCommit. A fenced epoch is refused, and so is a batch whose
    /// `guard` (the partition's verification guard, taken before the
    /// transaction coordinator confirmed the partition is in the
    /// transaction) a marker has voided since.
    fn append_transactional(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        guard: u64,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    /// A KIP-848 group: its epoch, the target assignment's epoch and the
    /// subscribed topics the target was computed for (Kafka's
    /// `ConsumerGroupMetadata` and `ConsumerGroupTargetAssignmentMetadata`).
    ConsumerGroup {
        group: String,
    },
    /// A KIP-848 member's subscription and identity
    /// (`ConsumerGroupMemberMetadata`).
    ConsumerMember {
        group: String,
        member: String,
    },
    /// A KIP-848 member's target assignment
    /// (`ConsumerGroupTargetAssignmentMember`).
    ConsumerTarget {
        group: String,
        member: String,
    },
    /// A KIP-848 member's epochs and what it owns now or still has to
    /// revoke (`ConsumerGroupCurrentMemberAssignment`).
    ConsumerAssignment {
        group: String,
        member: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
    /// The order of this commit's record among the group's records (all in
    /// one partition), counted in memory as they are written or replayed;
    /// a transaction's offsets replace only older ones when it commits.
    #[serde(skip)]
    pub order: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupValue {
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// The members of a stable generation with their assignments, so that
    /// they carry on after the coordinator restarts (as Kafka restores
    /// them from its group record). Absent in records of older versions.
    #[serde(default)]
    pub members: Vec<MemberValue>,
}

/// A classic group member as its group record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// (protocol name, metadata) as the member joined with them.
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
}

/// Partitions by topic id, as KIP-848 assignments name them.
pub type TopicPartitions = std::collections::BTreeMap<uuid::Uuid, std::collections::BTreeSet<i32>>;

/// The value of [`RecordKey::ConsumerGroup`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupValue {
    pub epoch: i32,
    pub assignment_epoch: i32,
    /// (name, id, partition count) of the subscribed topics, so that a
    /// coordinator that loads the group sees no topic change and keeps the
    /// epoch.
    pub topics: Vec<(String, uuid::Uuid, i32)>,
}

/// The value of [`RecordKey::ConsumerMember`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMemberValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: u64,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
}

/// The value of [`RecordKey::ConsumerAssignment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub assigned: TopicPartitions,
    pub pending_revocation: TopicPartitions,
}

impl RecordKey {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("keys serialise")
    }
    pub fn decode(bytes: &[u8]) -> Option<RecordKey> {
        serde_json::from_slice(bytes).ok()
    }
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::Group { group }
            | RecordKey::ConsumerGroup { group }
            | RecordKey::ConsumerMember { group, .. }
            | RecordKey::ConsumerTarget { group, .. }
            | RecordKey::ConsumerAssignment { group, .. } => group,
        }
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_round_trip() {
        let k = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(RecordKey::decode(&k.encode()), Some(k));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RecordKey::decode(&bytes);
            let _ = serde_json::from_slice::<OffsetValue>(&bytes);
            let _ = serde_json::from_slice::<GroupValue>(&bytes);
            let _ = serde_json::from_slice::<ConsumerGroupValue>(&bytes);
            let _ = serde_json::from_slice::<ConsumerMemberValue>(&bytes);
            let _ = serde_json::from_slice::<ConsumerAssignmentValue>(&bytes);
            let _ = serde_json::from_slice::<TopicPartitions>(&bytes);
        }
    }
}
