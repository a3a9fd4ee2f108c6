//! DeleteRecords (v0+): moves partitions' log start offsets up, as Kafka's
//! ReplicaManager does: an internal topic is refused (INVALID_TOPIC_EXCEPTION),
//! an unknown partition is UNKNOWN_TOPIC_OR_PARTITION, and the rest is the
//! partition's (see `Partition::delete_records`). The new start is durable
//! before the answer; with one replica there is no one else to wait for.

use strom_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use strom_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use strom_protocol::ErrorCode;

use crate::broker::{now_ms, Broker};
use crate::internal::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};

pub(super) fn handle(broker: &Broker, req: &DeleteRecordsRequest) -> DeleteRecordsResponse {
    let now = now_ms();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_str();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let outcome = if name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC {
                        Err(ErrorCode::InvalidTopicException)
                    } else {
                        broker
                            .replicas
                            .get(name, p.partition_index)
                            .ok_or(ErrorCode::UnknownTopicOrPartition)
                            .and_then(|partition| partition.delete_records(p.offset, now))
                    };
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match outcome {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(code) => result.with_low_watermark(-1).with_error_code(code.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
