//! DescribeQuorum: the controller quorum's state, as its leader (the
//! active controller) knows it. Any broker answers it: the request goes
//! to the active controller, as Kafka's brokers forward it, so that
//! `kafka-metadata-quorum describe --status` works against any of them.

use strom_controller::{QuorumStatus, CLUSTER_METADATA_TOPIC};
use strom_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use strom_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use strom_protocol::ErrorCode;
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;

/// The name the voters' addresses are listed under (`nodes`, v2).
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub(super) async fn handle(broker: &Broker, req: &DescribeQuorumRequest) -> DescribeQuorumResponse {
    let asks_for_the_metadata_log = req.topics.len() == 1
        && req.topics[0].topic_name.0.as_str() == CLUSTER_METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    if !asks_for_the_metadata_log {
        return partition_error(req, ErrorCode::UnknownTopicOrPartition);
    }
    match broker.controller.describe_quorum().await {
        Ok(status) if status.is_leader => describe(&status, broker),
        Ok(_) => partition_error(req, ErrorCode::NotLeaderOrFollower),
        Err(e) => DescribeQuorumResponse::default()
            .with_error_code(e.code().code())
            .with_error_message(Some(str_bytes(&e.to_string()))),
    }
}

/// Each requested partition answered `code`, as Kafka's raft client does.
fn partition_error(req: &DescribeQuorumRequest, code: ErrorCode) -> DescribeQuorumResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code.code())
                                .with_error_message(Some(str_bytes(&code.to_string())))
                                .with_leader_id(BrokerId(-1))
                                .with_leader_epoch(-1)
                                .with_high_watermark(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeQuorumResponse::default().with_topics(topics)
}

fn describe(status: &QuorumStatus, broker: &Broker) -> DescribeQuorumResponse {
    let replica = |v: &strom_controller::VoterState| {
        ReplicaState::default()
            .with_replica_id(BrokerId(v.node_id))
            .with_replica_directory_id(Uuid::nil())
            .with_log_end_offset(v.log_end_offset)
            .with_last_fetch_timestamp(v.last_fetch_ms)
            .with_last_caught_up_timestamp(v.last_caught_up_ms)
    };
    let voters = status.voters.iter().map(replica).collect();
    let observers = status.observers.iter().map(replica).collect();
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(status.node_id))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
        .with_high_watermark(status.applied_end)
        .with_current_voters(voters)
        .with_observers(observers);
    let nodes = broker
        .controller
        .quorum()
        .voters()
        .iter()
        .filter_map(|(id, address)| {
            let (host, port) = address.rsplit_once(':')?;
            let listener = Listener::default()
                .with_name(str_bytes(CONTROLLER_LISTENER))
                .with_host(str_bytes(host))
                .with_port(port.parse().ok()?);
            Some(
                Node::default()
                    .with_node_id(BrokerId(*id))
                    .with_listeners(vec![listener]),
            )
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(str_bytes(CLUSTER_METADATA_TOPIC)))
            .with_partitions(vec![partition])])
        .with_nodes(nodes)
}
