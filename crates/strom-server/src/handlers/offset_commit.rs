//! OffsetCommit (classic groups and offset-only groups).

use std::time::Instant;

use strom_coordinator::group::{Committer, OffsetCommit};
use strom_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use strom_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::commits::plan;
use crate::broker::{now_ms, Broker};

pub(super) async fn handle(broker: &Broker, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let planned = plan(
        &broker.image(),
        req.topics.iter().flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                topic: t.name.0.as_str().to_owned(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_owned()),
            })
        }),
    );
    let write = broker
        .ensure_offsets_topic()
        .await
        .and_then(|()| broker.group_write(req.group_id.0.as_str()));
    let outcome = write.as_ref().map_err(|c| *c).and_then(|_| {
        let who = Committer {
            group_id: req.group_id.0.as_str(),
            generation: req.generation_id_or_member_epoch,
            member_id: req.member_id.as_str(),
            instance: req.group_instance_id.as_deref(),
        };
        broker
            .groups
            .commit_offsets(&who, &planned.commits, Instant::now(), now_ms())
    });
    // Answered once the offsets are committed (Kafka's acks=all write).
    let outcome = match (outcome, write) {
        (Ok(results), Ok(write)) => write.committed().await.map(|()| results),
        (outcome, _) => outcome,
    };
    let mut codes = planned.codes(&outcome);
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
