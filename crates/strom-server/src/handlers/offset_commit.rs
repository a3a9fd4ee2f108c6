//! OffsetCommit (classic groups and offset-only groups).

use std::time::Instant;

use strom_coordinator::group::{Committer, OffsetCommit};
use strom_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use strom_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use strom_protocol::ErrorCode;

use crate::broker::{now_ms, Broker};

pub(super) fn handle(broker: &Broker, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let image = broker.image();
    // Partitions of unknown topics are refused one by one; the rest commit.
    let mut commits = Vec::new();
    let mut verdicts: Vec<Vec<Option<ErrorCode>>> = Vec::new();
    for t in &req.topics {
        let topic = image.topic(t.name.0.as_str());
        verdicts.push(
            t.partitions
                .iter()
                .map(|p| {
                    if topic.is_none_or(|ti| !ti.partitions.contains_key(&p.partition_index)) {
                        return Some(ErrorCode::UnknownTopicOrPartition);
                    }
                    commits.push(OffsetCommit {
                        topic: t.name.0.as_str().to_owned(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_owned()),
                    });
                    None
                })
                .collect(),
        );
    }
    let outcome = broker.ensure_offsets_topic().and_then(|()| {
        let who = Committer {
            group_id: req.group_id.0.as_str(),
            generation: req.generation_id_or_member_epoch,
            member_id: req.member_id.as_str(),
            instance: req.group_instance_id.as_deref(),
        };
        broker
            .groups
            .commit_offsets(&who, &commits, Instant::now(), now_ms())
    });
    let mut committed = match &outcome {
        Ok(r) => r.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let topics = req
        .topics
        .iter()
        .zip(verdicts)
        .map(|(t, verdict)| {
            let partitions = t
                .partitions
                .iter()
                .zip(verdict)
                .map(|(p, v)| {
                    let code = match (v, &outcome) {
                        (Some(code), _) => Some(code),
                        (None, Err(code)) => Some(*code),
                        (None, Ok(_)) => committed.next().flatten(),
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code.map_or(0, |c| c.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
