//! OffsetForLeaderEpoch: the end offset of a leader epoch, which clients
//! use to detect log truncation after a leader change.

use strom_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use strom_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use strom_protocol::ErrorCode;

use crate::broker::Broker;

pub(super) fn handle(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.as_str().to_owned();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = EpochEndOffset::default().with_partition(p.partition);
                    let result = (|| {
                        // Answered by the leader only: a replica's cache does
                        // not know the epochs it did not lead.
                        let partition = broker.replicas.leading_at(
                            &name,
                            p.partition,
                            p.current_leader_epoch,
                        )?;
                        Ok::<_, ErrorCode>(partition.end_offset_for_epoch(p.leader_epoch))
                    })();
                    match result {
                        Ok((epoch, end)) => base.with_leader_epoch(epoch).with_end_offset(end),
                        Err(code) => base
                            .with_error_code(code.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
