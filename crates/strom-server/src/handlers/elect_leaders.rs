//! ElectLeaders (v0+), decided by the active controller as Kafka's is: a
//! preferred election moves a partition's leadership to its first replica
//! when that one is in sync and active, an unclean one gives a partition
//! without a leader one (see `strom_controller`'s elections). A partition
//! that needs no election answers ELECTION_NOT_NEEDED, and an election over
//! every partition (no topics named) covers, and reports, only those that
//! need one, as Kafka does.

use strom_metadata::MetadataImage;
use strom_protocol::messages::elect_leaders_request::TopicPartitions;
use strom_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use strom_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use strom_protocol::ErrorCode;

use super::{per_item, str_bytes};
use crate::broker::Broker;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// Every partition that needs an election of this kind.
fn needing(image: &MetadataImage, unclean: bool) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in image.topics() {
        for p in t.partitions.values() {
            let needed = if unclean {
                p.leader < 0
            } else {
                p.replicas.first().is_some_and(|&r| r != p.leader)
            };
            if needed {
                out.push((t.name.clone(), p.partition));
            }
        }
    }
    out
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

pub(super) async fn handle(broker: &Broker, req: &ElectLeadersRequest) -> ElectLeadersResponse {
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
    let wanted: Vec<(String, i32)> = match named {
        Some(topics) => topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|&p| (t.topic.0.as_str().to_owned(), p))
            })
            .collect(),
        None => needing(&broker.image(), unclean),
    };
    let outcomes = per_item(
        broker
            .controller
            .elect_leaders(wanted.clone(), unclean)
            .await,
        wanted.len(),
    );
    if outcomes.iter().any(Result::is_ok) {
        let _ = broker.sync_replicas();
    }
    // Grouped by topic in the order asked.
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, partition), outcome) in wanted.iter().zip(outcomes) {
        let result = PartitionResult::default().with_partition_id(*partition);
        let result = match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(&e.message))),
        };
        match results.last_mut() {
            Some(r) if r.topic.0.as_str() == topic => r.partition_result.push(result),
            _ => results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
