//! ElectLeaders (v0+), as Kafka's controller decides it: a preferred
//! election is needed where the leader is not the first replica, an unclean
//! one where a partition has no leader. A partition led by its preferred
//! replica answers ELECTION_NOT_NEEDED, and an election over every
//! partition (no topics named) reports none of them, as Kafka leaves out
//! those not needed. Where one is needed nothing is elected yet (until
//! followers replicate, no other replica holds the records).

use strom_metadata::MetadataImage;
use strom_protocol::messages::elect_leaders_request::TopicPartitions;
use strom_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use strom_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use strom_protocol::ErrorCode;

use super::str_bytes;
use crate::broker::Broker;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// The outcome of electing a leader for one partition.
fn elect(image: &MetadataImage, topic: &str, partition: i32, unclean: bool) -> PartitionResult {
    let result = PartitionResult::default().with_partition_id(partition);
    let Some(t) = image.topic(topic) else {
        return result
            .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
            .with_error_message(Some(str_bytes(&format!("No such topic as {topic}"))));
    };
    let Some(p) = t.partitions.get(&partition) else {
        return result
            .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
            .with_error_message(Some(str_bytes(&format!(
                "No such partition as {topic}-{partition}"
            ))));
    };
    let not_needed = if unclean {
        p.leader >= 0
    } else {
        p.replicas.first() == Some(&p.leader)
    };
    if not_needed {
        // Kafka's controller fills in the code's own description.
        return result
            .with_error_code(ErrorCode::ElectionNotNeeded.code())
            .with_error_message(Some(str_bytes(
                "Leader election not needed for topic partition.",
            )));
    }
    // A leader can only move to another replica, and one node has none:
    // with replication this becomes a partition change.
    let code = if unclean {
        ErrorCode::EligibleLeadersNotAvailable
    } else {
        ErrorCode::PreferredLeaderNotAvailable
    };
    result.with_error_code(code.code())
}

/// A result for each partition `topics` names, from `result`.
fn each_named(
    topics: &[TopicPartitions],
    result: impl Fn(&str, i32) -> PartitionResult,
) -> Vec<ReplicaElectionResult> {
    topics
        .iter()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(
                    t.partitions
                        .iter()
                        .map(|&p| result(t.topic.as_str(), p))
                        .collect(),
                )
        })
        .collect()
}

pub(super) fn handle(broker: &Broker, req: &ElectLeadersRequest) -> ElectLeadersResponse {
    let named = req.topic_partitions.as_deref();
    let unclean = match req.election_type {
        PREFERRED => false,
        UNCLEAN => true,
        other => {
            let message = format!("Unknown election type {other}");
            let refused = |_: &str, p: i32| {
                PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(ErrorCode::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&message)))
            };
            return ElectLeadersResponse::default()
                .with_error_code(ErrorCode::InvalidRequest.code())
                .with_replica_election_results(each_named(named.unwrap_or_default(), refused));
        }
    };
    let image = broker.image();
    let results = match named {
        Some(topics) => each_named(topics, |t, p| elect(&image, t, p, unclean)),
        None => image
            .topics()
            .into_iter()
            .map(|t| {
                let needed = t
                    .partitions
                    .keys()
                    .map(|&p| elect(&image, &t.name, p, unclean))
                    .filter(|r| r.error_code != ErrorCode::ElectionNotNeeded.code())
                    .collect();
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(&t.name)))
                    .with_partition_result(needed)
            })
            .collect(),
    };
    ElectLeadersResponse::default().with_replica_election_results(results)
}
