//! WriteTxnMarkers (v1): a transaction coordinator on another broker ends
//! transactions on the partitions this broker leads. Each marker is
//! appended as the coordinator's own would be (its producer epoch checked;
//! a stale epoch drops it, as nothing of its transaction can be open) and
//! answered once committed, as Kafka appends markers with acks=all:
//! NOT_LEADER_OR_FOLLOWER when this broker does not lead the partition (or
//! stopped leading it before the marker was committed),
//! UNKNOWN_TOPIC_OR_PARTITION when it no longer exists, REQUEST_TIMED_OUT
//! when too few replicas are in sync to commit it in time.

use strom_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use strom_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use strom_protocol::ErrorCode;

use crate::broker::Broker;
use crate::txns::{append_marker, marker_committed};

async fn write_one(
    broker: &Broker,
    topic: &str,
    partition: i32,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Result<(), ErrorCode> {
    let p = broker.replicas.leading(topic, partition)?;
    match append_marker(
        &p,
        &broker.groups,
        producer_id,
        epoch,
        commit,
        coordinator_epoch,
    )? {
        Some(written) => marker_committed(&p, written).await,
        None => Ok(()),
    }
}

pub(super) async fn handle(
    broker: &Broker,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for index in t.partition_indexes {
                let written = write_one(
                    broker,
                    t.name.0.as_str(),
                    index,
                    m.producer_id.0,
                    m.producer_epoch,
                    m.transaction_result,
                    m.coordinator_epoch,
                )
                .await;
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(written.err().map_or(0, |c| c.code())),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
