//! The APIs Strom serves and their version ranges.
//!
//! This table is the single source of truth: the connection layer refuses
//! anything outside it and ApiVersions advertises exactly it. The maximum
//! versions are those of Apache Kafka 4.0, because clients such as
//! kafka-python infer the broker release from them.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

/// One served API and the versions a request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub key: ApiKey,
    /// Lowest version advertised.
    pub min: i16,
    /// Lowest version actually served; requests between `min` and this get
    /// UNSUPPORTED_VERSION per item rather than a closed connection (Kafka 4
    /// does this for Produce v0–v2, see KAFKA-18659).
    pub min_served: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
        min,
        min_served: min,
        max,
    }
}

/// Every API Strom serves, in api-key order.
pub const SUPPORTED: &[ApiSupport] = &[
    // Produce v0–v2 are advertised so that librdkafka < 2.10 keeps
    // compression on, and answered with UNSUPPORTED_VERSION.
    ApiSupport {
        key: ApiKey::Produce,
        min: 0,
        min_served: 3,
        max: 12,
    },
    api(ApiKey::Fetch, 4, 17),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeQuorum, 0, 2),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The support entry for a raw api key, if we serve it.
pub fn lookup(api_key: i16) -> Option<&'static ApiSupport> {
    SUPPORTED.iter().find(|s| s.key as i16 == api_key)
}

/// The ApiVersions entries derived from [`SUPPORTED`].
pub fn advertised() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn ranges_within_what_the_codec_decodes() {
        for s in SUPPORTED {
            let codec = s.key.valid_versions();
            assert!(
                s.min <= s.min_served && s.min_served <= s.max,
                "{:?}",
                s.key
            );
            assert!(
                codec.min <= s.min_served && s.max <= codec.max,
                "{:?}: served {}..{} but codec has {}",
                s.key,
                s.min_served,
                s.max,
                codec
            );
        }
    }

    #[test]
    fn sorted_and_unique() {
        for w in SUPPORTED.windows(2) {
            assert!((w[0].key as i16) < (w[1].key as i16));
        }
        assert!(lookup(ApiKey::ApiVersions as i16).is_some());
        assert!(lookup(9999).is_none());
    }
}
