//! Partition reassignment (AlterPartitionReassignments), as KRaft's
//! ReplicationControlManager does it: the partition's replicas become the
//! target followed by the replicas it drops, with `adding_replicas` and
//! `removing_replicas` set; the added replicas fetch from the leader like
//! any follower, and once the ISR (without the dropped replicas) holds
//! every target replica the reassignment completes: the dropped replicas
//! leave the replicas and the ISR, a dropped leader hands leadership to
//! the first in-sync target replica, and the leader epoch is bumped so
//! the dropped replicas are fenced. Cancelling goes back to the replicas
//! the partition had, without the added ones.

use serde::{Deserialize, Serialize};
use strom_metadata::{MetadataImage, MetadataRecord, PartitionImage, NO_LEADER};
use strom_protocol::ErrorCode;

use super::{check_assignment, ApiError};

/// One partition to move: `replicas` its target, `None` to cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignRequest {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<i32>>,
}

/// Each request's outcome, and the records that start (or finish) them.
pub(crate) fn decide_reassignments(
    image: &MetadataImage,
    requests: &[ReassignRequest],
    allow_replication_factor_change: bool,
) -> (Vec<Result<(), ApiError>>, Vec<MetadataRecord>) {
    let mut records = Vec::new();
    let outcomes = requests
        .iter()
        .map(|r| {
            let record = decide_one(image, r, allow_replication_factor_change)?;
            records.extend(record);
            Ok(())
        })
        .collect();
    (outcomes, records)
}

fn decide_one(
    image: &MetadataImage,
    r: &ReassignRequest,
    allow_replication_factor_change: bool,
) -> Result<Option<MetadataRecord>, ApiError> {
    let unknown = |m: String| ApiError::new(ErrorCode::UnknownTopicOrPartition, m);
    let topic = image
        .topic(&r.topic)
        .ok_or_else(|| unknown(format!("Unable to find a topic named {}.", r.topic)))?;
    let p = topic.partitions.get(&r.partition).ok_or_else(|| {
        unknown(format!(
            "Unable to find partition {}:{}.",
            r.topic, r.partition
        ))
    })?;
    let mut next = match &r.replicas {
        None => cancel(p, &r.topic)?,
        Some(target) => {
            check_assignment(image, r.partition, target)?;
            if !allow_replication_factor_change && target.len() != original_replicas(p).len() {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!(
                        "The replication factor is changed from {} to {}",
                        original_replicas(p).len(),
                        target.len()
                    ),
                ));
            }
            start(p, target)
        }
    };
    complete_if_ready(image, &mut next);
    if next == *p {
        return Ok(None);
    }
    next.partition_epoch = p.partition_epoch + 1;
    Ok(Some(next.to_record(topic.id)))
}

/// The replicas the partition had before its reassignment started.
fn original_replicas(p: &PartitionImage) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.adding_replicas.contains(r))
        .collect()
}

/// The partition with `target` under way: the target first, then what it
/// drops; adding what it lacks.
fn start(p: &PartitionImage, target: &[i32]) -> PartitionImage {
    let removing: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    // Replicas already being added stay so while they are in the target
    // (Kafka would forget them, so that a later cancel kept them).
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !p.replicas.contains(r) || p.adding_replicas.contains(r))
        .collect();
    let mut next = p.clone();
    next.replicas = target.iter().chain(&removing).copied().collect();
    next.adding_replicas = adding;
    next.removing_replicas = removing;
    next
}

/// The partition back on its original replicas, without the added ones;
/// refused when none of those is in sync (that would take an unclean
/// election).
fn cancel(p: &PartitionImage, topic: &str) -> Result<PartitionImage, ApiError> {
    if !p.is_reassigning() {
        return Err(ApiError::new(
            ErrorCode::NoReassignmentInProgress,
            "No partition reassignment is in progress for this topic or partition.",
        ));
    }
    let mut next = p.clone();
    next.replicas = original_replicas(p);
    next.isr.retain(|r| !p.adding_replicas.contains(r));
    if next.isr.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicaAssignment,
            format!(
                "Unable to revert partition assignment for {topic}:{} because it would require an unclean leader election.",
                p.partition
            ),
        ));
    }
    next.adding_replicas.clear();
    next.removing_replicas.clear();
    elect_if_gone(&mut next, p.leader, |_| true);
    Ok(next)
}

/// Moves leadership to the first in-sync replica when the leader is no
/// longer one, bumping the leader epoch.
fn elect_if_gone(p: &mut PartitionImage, leader: i32, eligible: impl Fn(i32) -> bool) {
    if p.replicas.contains(&leader) && p.isr.contains(&leader) {
        return;
    }
    p.leader = p
        .replicas
        .iter()
        .copied()
        .find(|r| p.isr.contains(r) && eligible(*r))
        .unwrap_or(NO_LEADER);
    p.leader_epoch += 1;
}

/// Completes `p`'s reassignment if every target replica is in sync: the
/// dropped replicas leave, the leader moves if it was one of them, and
/// the leader epoch is bumped when replicas were dropped. True if it did.
pub(crate) fn complete_if_ready(image: &MetadataImage, p: &mut PartitionImage) -> bool {
    if !p.is_reassigning() {
        return false;
    }
    let kept = |r: &i32| !p.removing_replicas.contains(r);
    let replicas: Vec<i32> = p.replicas.iter().copied().filter(kept).collect();
    let isr: Vec<i32> = p.isr.iter().copied().filter(kept).collect();
    if isr.is_empty() || replicas.is_empty() || !replicas.iter().all(|r| isr.contains(r)) {
        return false;
    }
    let dropped = !p.removing_replicas.is_empty();
    let leader = p.leader;
    p.replicas = replicas;
    p.isr = isr;
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    if p.replicas.contains(&leader) {
        if dropped {
            p.leader_epoch += 1;
        }
    } else {
        elect_if_gone(p, leader, |r| image.is_active(r));
    }
    true
}

/// A partition under reassignment, as ListPartitionReassignments lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassigning {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// The partitions under reassignment, of `only` those topics and
/// partitions if given.
pub fn reassigning(image: &MetadataImage, only: Option<&[(String, Vec<i32>)]>) -> Vec<Reassigning> {
    let listed =
        |t: &str, p: i32| only.is_none_or(|o| o.iter().any(|(n, ps)| n == t && ps.contains(&p)));
    let mut out = Vec::new();
    for t in image.topics() {
        for p in t.partitions.values() {
            if p.is_reassigning() && listed(&t.name, p.partition) {
                out.push(Reassigning {
                    topic: t.name.clone(),
                    partition: p.partition,
                    replicas: p.replicas.clone(),
                    adding: p.adding_replicas.clone(),
                    removing: p.removing_replicas.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::brokers::tests::{apply as applied, image, partition};
    use super::*;

    fn req(p: i32, replicas: Option<&[i32]>) -> ReassignRequest {
        ReassignRequest {
            topic: "t".into(),
            partition: p,
            replicas: replicas.map(<[i32]>::to_vec),
        }
    }

    #[test]
    fn a_move_adds_then_completes_once_the_new_replica_is_in_sync() {
        // Four brokers; the partition on 1,2,3 led by 1, moved to 2,3,4.
        let img = image(4, &[(&[1, 2, 3], &[1, 2, 3])]);
        let (r, records) = decide_reassignments(&img, &[req(0, Some(&[2, 3, 4]))], true);
        assert!(r[0].is_ok());
        let img = applied(&img, &records);
        let p = partition(&img, 0);
        assert_eq!(p.replicas, [2, 3, 4, 1]);
        assert_eq!(
            (p.adding_replicas.as_slice(), p.removing_replicas.as_slice()),
            (&[4][..], &[1][..])
        );
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.as_slice()),
            (1, 0, &[1, 2, 3][..])
        );
        assert_eq!(reassigning(&img, None).len(), 1);
        // Another target while it runs replaces it; the same one is no change.
        let (r, records) = decide_reassignments(&img, &[req(0, Some(&[2, 3, 4]))], true);
        assert!(r[0].is_ok() && records.is_empty());

        // 4 caught up: the leader's ISR expansion completes the move, and
        // leadership leaves the dropped replica 1.
        let mut p = partition(&img, 0).clone();
        p.isr = vec![1, 2, 3, 4];
        assert!(complete_if_ready(&img, &mut p));
        assert_eq!(p.replicas, [2, 3, 4]);
        assert_eq!(p.isr, [2, 3, 4]);
        assert_eq!((p.leader, p.leader_epoch), (2, 1));
        assert!(!p.is_reassigning());
    }

    #[test]
    fn reordering_or_dropping_in_sync_replicas_completes_at_once() {
        let img = image(3, &[(&[1, 2, 3], &[1, 2, 3]), (&[1, 2, 3], &[1, 2])]);
        let (_, records) = decide_reassignments(
            &img,
            &[req(0, Some(&[3, 2, 1])), req(1, Some(&[1, 2]))],
            true,
        );
        let img = applied(&img, &records);
        let p = partition(&img, 0);
        assert_eq!(
            (p.replicas.as_slice(), p.leader, p.leader_epoch),
            (&[3, 2, 1][..], 1, 0)
        );
        assert!(!p.is_reassigning());
        let p = partition(&img, 1);
        assert_eq!(
            (p.replicas.as_slice(), p.isr.as_slice()),
            (&[1, 2][..], &[1, 2][..])
        );
        assert_eq!(
            p.leader_epoch, 1,
            "a dropped replica is fenced by the epoch"
        );
        assert!(reassigning(&img, None).is_empty());
    }

    #[test]
    fn refusals_and_cancelling() {
        let img = image(4, &[(&[1, 2, 3], &[1, 2, 3])]);
        let code = |r: &ReassignRequest, allow| {
            decide_reassignments(&img, std::slice::from_ref(r), allow).0[0]
                .clone()
                .unwrap_err()
                .code
        };
        assert_eq!(
            code(&req(0, None), true),
            ErrorCode::NoReassignmentInProgress
        );
        assert_eq!(
            code(&req(9, Some(&[1])), true),
            ErrorCode::UnknownTopicOrPartition
        );
        assert_eq!(
            code(&req(0, Some(&[])), true),
            ErrorCode::InvalidReplicaAssignment
        );
        assert_eq!(
            code(&req(0, Some(&[1, 1])), true),
            ErrorCode::InvalidReplicaAssignment
        );
        assert_eq!(
            code(&req(0, Some(&[1, 7])), true),
            ErrorCode::InvalidReplicaAssignment
        );
        assert_eq!(
            code(&req(0, Some(&[1, 2])), false),
            ErrorCode::InvalidReplicationFactor
        );
        let unknown_topic = ReassignRequest {
            topic: "nope".into(),
            ..req(0, Some(&[1]))
        };
        assert_eq!(
            code(&unknown_topic, true),
            ErrorCode::UnknownTopicOrPartition
        );

        // Cancelling a move in progress goes back to 1, 2 and 3 (in the
        // order they hold in the merged list, as Kafka's revert does), 4
        // dropped.
        let (_, records) = decide_reassignments(&img, &[req(0, Some(&[4, 2, 3]))], true);
        let moving = applied(&img, &records);
        let (r, records) = decide_reassignments(&moving, &[req(0, None)], true);
        assert!(r[0].is_ok());
        let back = applied(&moving, &records);
        let q = partition(&back, 0);
        assert_eq!(
            (q.replicas.as_slice(), q.isr.as_slice()),
            (&[2, 3, 1][..], &[1, 2, 3][..])
        );
        assert!(!q.is_reassigning());
        assert_eq!(q.leader, 1);
    }
}
