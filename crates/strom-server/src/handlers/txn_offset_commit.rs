//! TxnOffsetCommit: offsets committed inside a transaction, visible to the
//! group once the transaction commits (its marker reaches the group's
//! `__consumer_offsets` partition).

use strom_coordinator::group::{Committer, OffsetCommit};
use strom_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use strom_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use strom_protocol::ErrorCode;

use super::commits::plan;
use crate::broker::{now_ms, Broker};
use crate::internal::OFFSETS_TOPIC;

/// The request's transaction must hold the group's offsets partition
/// (AddOffsetsToTxn came first): otherwise the offsets would wait for a
/// marker that never comes. Returns the partition's verification guard.
async fn verify(broker: &Broker, req: &TxnOffsetCommitRequest) -> Result<u64, ErrorCode> {
    broker.ensure_offsets_topic().await?;
    broker.coordinates_group(req.group_id.0.as_str())?;
    let partition = broker.txns.offsets_partition_for(req.group_id.0.as_str());
    let guard = broker
        .replicas
        .get(OFFSETS_TOPIC, partition)
        .ok_or(ErrorCode::NotCoordinator)?
        .start_verification(req.producer_id.0);
    let added = broker
        .verify_transaction(
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            &[(OFFSETS_TOPIC.to_owned(), partition)],
        )
        .await;
    match added {
        Ok(v) if v.first() == Some(&true) => Ok(guard),
        Ok(_) => Err(ErrorCode::InvalidTxnState),
        // The log layer's answer to a stale epoch, as Kafka gives it here.
        Err(ErrorCode::ProducerFenced) => Err(ErrorCode::InvalidProducerEpoch),
        Err(code) => Err(code),
    }
}

pub(super) async fn handle(
    broker: &Broker,
    req: &TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
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
    let write = broker.group_write(req.group_id.0.as_str());
    let outcome = verify(broker, req).await.and_then(|guard| {
        let who = Committer {
            group_id: req.group_id.0.as_str(),
            generation: req.generation_id,
            member_id: req.member_id.as_str(),
            instance: req.group_instance_id.as_deref(),
        };
        broker.groups.commit_transactional_offsets(
            &who,
            (req.producer_id.0, req.producer_epoch),
            guard,
            &planned.commits,
            now_ms(),
        )
    });
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
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
