//! DescribeProducers: the producer state of partitions (what
//! `kafka-transactions.sh describe-producers` shows).

use strom_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use strom_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use strom_protocol::ErrorCode;

use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, req: &DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let base = PartitionResponse::default().with_partition_index(index);
                    let found = broker
                        .replicas
                        .get(t.name.0.as_str(), index)
                        .ok_or(ErrorCode::UnknownTopicOrPartition)
                        .and_then(|p| p.producers());
                    match found {
                        Ok(producers) => base.with_active_producers(
                            producers
                                .into_iter()
                                .map(|s| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(s.producer_id))
                                        .with_producer_epoch(i32::from(s.epoch))
                                        .with_last_sequence(s.last_sequence)
                                        .with_last_timestamp(s.last_timestamp)
                                        .with_coordinator_epoch(s.coordinator_epoch)
                                        .with_current_txn_start_offset(s.current_txn_start_offset)
                                })
                                .collect(),
                        ),
                        Err(code) => base.with_error_code(code.code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
