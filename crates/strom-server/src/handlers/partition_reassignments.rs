//! AlterPartitionReassignments (v0–1) and ListPartitionReassignments (v0):
//! the active controller decides (see `strom_controller`'s reassignment);
//! the added replicas then fetch like any follower, and the leader's ISR
//! expansion that brings the last of them in sync completes the move.

use strom_controller::{reassigning, ReassignRequest};
use strom_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use strom_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use strom_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::{per_item, str_bytes};
use crate::broker::Broker;

fn brokers(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|&id| BrokerId(id)).collect()
}

pub(super) async fn alter(
    broker: &Broker,
    req: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let requests: Vec<ReassignRequest> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| ReassignRequest {
                topic: t.name.0.as_str().to_owned(),
                partition: p.partition_index,
                replicas: p
                    .replicas
                    .as_ref()
                    .map(|rs| rs.iter().map(|r| r.0).collect()),
            })
        })
        .collect();
    let outcomes = per_item(
        broker
            .controller
            .alter_partition_reassignments(requests.clone(), req.allow_replication_factor_change)
            .await,
        requests.len(),
    );
    if outcomes.iter().any(Result::is_ok) {
        let _ = broker.sync_replicas();
    }
    let mut outcomes = outcomes.into_iter();
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match outcomes.next() {
                        Some(Err(e)) => r
                            .with_error_code(e.code.code())
                            .with_error_message(Some(str_bytes(&e.message))),
                        _ => r,
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change)
        .with_responses(responses)
}

/// Answered from this node's image once it holds what the active
/// controller had (Kafka answers on the controller), so that a move just
/// started through another node is listed.
pub(super) async fn list(
    broker: &Broker,
    req: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if let Err(e) = broker.controller.catch_up().await {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(e.code().code())
            .with_error_message(Some(str_bytes(&e.to_string())));
    }
    let only: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
            .collect()
    });
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for r in reassigning(&broker.image(), only.as_deref()) {
        let p = OngoingPartitionReassignment::default()
            .with_partition_index(r.partition)
            .with_replicas(brokers(&r.replicas))
            .with_adding_replicas(brokers(&r.adding))
            .with_removing_replicas(brokers(&r.removing));
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == r.topic => t.partitions.push(p),
            _ => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(&r.topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
