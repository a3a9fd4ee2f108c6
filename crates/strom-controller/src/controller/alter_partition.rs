//! AlterPartition: a partition's leader asks to shrink or expand its ISR.
//! The controller checks it as Kafka's ReplicationControlManager does: the
//! sender must be the registered, current broker and the partition's
//! leader in the leader epoch it names; the partition epoch it names must
//! be the current one (else the change was made on a stale view); the new
//! ISR must hold the leader, only replicas, and, for members that join,
//! only brokers that may (unfenced, not shutting down).

use serde::{Deserialize, Serialize};
use strom_metadata::{MetadataImage, MetadataRecord, Uuid};
use strom_protocol::ErrorCode;

use super::ApiError;

/// One partition's wanted ISR, with the epochs the leader holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrUpdate {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// The partition as it stands once the change is made (or as it stood).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrUpdated {
    pub isr: Vec<i32>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// Each partition's outcome of an AlterPartition.
pub type IsrOutcomes = Vec<Result<IsrUpdated, ApiError>>;

/// The records that make the changes, and each one's outcome.
pub(crate) fn decide_alter_partition(
    image: &MetadataImage,
    broker_id: i32,
    broker_epoch: i64,
    updates: &[IsrUpdate],
) -> Result<(IsrOutcomes, Vec<MetadataRecord>), ApiError> {
    match image.broker(broker_id) {
        None => {
            return Err(ApiError::new(
                ErrorCode::BrokerIdNotRegistered,
                format!("Broker {broker_id} is not registered."),
            ))
        }
        Some(b) if broker_epoch != -1 && b.epoch != broker_epoch => {
            return Err(ApiError::new(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "Expected broker epoch {}, but got broker epoch {broker_epoch}.",
                    b.epoch
                ),
            ))
        }
        Some(_) => {}
    }
    let mut records = Vec::new();
    let outcomes = updates
        .iter()
        .map(|u| {
            let (record, updated) = decide_one(image, broker_id, u)?;
            records.extend(record);
            Ok(updated)
        })
        .collect();
    Ok((outcomes, records))
}

fn decide_one(
    image: &MetadataImage,
    broker_id: i32,
    u: &IsrUpdate,
) -> Result<(Option<MetadataRecord>, IsrUpdated), ApiError> {
    let p = image
        .topic_by_id(&u.topic_id)
        .and_then(|t| t.partitions.get(&u.partition))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                "This partition does not exist.",
            )
        })?;
    if p.leader != broker_id {
        return Err(ApiError::new(
            ErrorCode::NotLeaderOrFollower,
            format!(
                "Broker {broker_id} is not the leader of this partition; {} is.",
                p.leader
            ),
        ));
    }
    if u.leader_epoch != p.leader_epoch {
        let code = if u.leader_epoch < p.leader_epoch {
            ErrorCode::FencedLeaderEpoch
        } else {
            ErrorCode::InvalidRequest
        };
        return Err(ApiError::new(
            code,
            format!(
                "The leader epoch is {}, not {}.",
                p.leader_epoch, u.leader_epoch
            ),
        ));
    }
    if u.partition_epoch != p.partition_epoch {
        return Err(ApiError::new(
            ErrorCode::InvalidUpdateVersion,
            format!(
                "The partition epoch is {}, not {}.",
                p.partition_epoch, u.partition_epoch
            ),
        ));
    }
    let mut isr = u.isr.clone();
    isr.dedup();
    if !isr.contains(&broker_id) || isr.iter().any(|r| !p.replicas.contains(r)) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "The new ISR {isr:?} must hold the leader and only replicas of {:?}.",
                p.replicas
            ),
        ));
    }
    if let Some(r) = isr
        .iter()
        .find(|r| !p.isr.contains(r) && !image.is_active(**r))
    {
        return Err(ApiError::new(
            ErrorCode::IneligibleReplica,
            format!("Replica {r} is fenced or shutting down and cannot join the ISR."),
        ));
    }
    if isr == p.isr {
        let same = IsrUpdated {
            isr,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
        };
        return Ok((None, same));
    }
    let mut changed = p.clone();
    changed.isr = isr;
    changed.partition_epoch += 1;
    // An expansion that brings every target replica of a reassignment in
    // sync completes it.
    super::reassignment::complete_if_ready(image, &mut changed);
    let updated = IsrUpdated {
        isr: changed.isr.clone(),
        leader_epoch: changed.leader_epoch,
        partition_epoch: changed.partition_epoch,
    };
    Ok((Some(changed.to_record(u.topic_id)), updated))
}
