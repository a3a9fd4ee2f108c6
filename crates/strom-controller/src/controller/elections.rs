//! ElectLeaders and the automatic preferred-leader balancing, as Kafka's
//! ReplicationControlManager decides them.
//!
//! - A preferred election moves a partition's leadership to its preferred
//!   replica (the first in its replica list) when that replica is in the
//!   ISR and active (unfenced, not shutting down): ELECTION_NOT_NEEDED when
//!   it leads already, PREFERRED_LEADER_NOT_AVAILABLE when it may not.
//! - An unclean election gives a partition without a leader one: an active
//!   in-sync replica if there is one, else any active replica, whose log
//!   becomes the partition's (its ISR is itself alone):
//!   ELECTION_NOT_NEEDED when the partition has a leader,
//!   ELIGIBLE_LEADERS_NOT_AVAILABLE when no replica is active.
//!
//! A new leader means a new leader epoch; the ISR and replicas stay (apart
//! from the unclean case), and the partition epoch moves on.

use strom_metadata::{MetadataImage, MetadataRecord, PartitionImage, NO_LEADER};
use strom_protocol::ErrorCode;

use super::ApiError;

/// The partition with its leader moved to `leader` (`isr` as given).
fn led_by(p: &PartitionImage, leader: i32, isr: Vec<i32>) -> PartitionImage {
    let mut next = p.clone();
    next.leader = leader;
    next.isr = isr;
    next.leader_epoch += 1;
    next.partition_epoch += 1;
    next
}

/// One partition's election: the partition after it, or why there is none.
fn elect_one(
    image: &MetadataImage,
    p: &PartitionImage,
    unclean: bool,
) -> Result<PartitionImage, ApiError> {
    let not_needed = || {
        ApiError::new(
            ErrorCode::ElectionNotNeeded,
            "Leader election not needed for topic partition.",
        )
    };
    if unclean {
        if p.leader != NO_LEADER {
            return Err(not_needed());
        }
        let active = |r: &&i32| image.is_active(**r);
        if let Some(&r) = p.replicas.iter().filter(active).find(|r| p.isr.contains(r)) {
            return Ok(led_by(p, r, p.isr.clone()));
        }
        return match p.replicas.iter().find(active) {
            Some(&r) => Ok(led_by(p, r, vec![r])),
            None => Err(ApiError::new(
                ErrorCode::EligibleLeadersNotAvailable,
                "Failed to elect leader for partition under strategy UncleanElection",
            )),
        };
    }
    let Some(&preferred) = p.replicas.first() else {
        return Err(ApiError::new(
            ErrorCode::PreferredLeaderNotAvailable,
            "The partition has no replicas",
        ));
    };
    if p.leader == preferred {
        return Err(not_needed());
    }
    if !p.isr.contains(&preferred) || !image.is_active(preferred) {
        return Err(ApiError::new(
            ErrorCode::PreferredLeaderNotAvailable,
            "Failed to elect leader for partition under strategy PreferredElection",
        ));
    }
    Ok(led_by(p, preferred, p.isr.clone()))
}

/// ElectLeaders over `partitions` (topic, partition): each one's outcome,
/// and the records of the elections made.
pub(crate) fn decide_elections(
    image: &MetadataImage,
    partitions: &[(String, i32)],
    unclean: bool,
) -> (Vec<Result<(), ApiError>>, Vec<MetadataRecord>) {
    let mut records = Vec::new();
    let outcomes = partitions
        .iter()
        .map(|(topic, partition)| {
            let t = image.topic(topic).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("No such topic as {topic}"),
                )
            })?;
            let p = t.partitions.get(partition).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("No such partition as {topic}-{partition}"),
                )
            })?;
            let next = elect_one(image, p, unclean)?;
            records.push(next.to_record(t.id));
            Ok(())
        })
        .collect();
    (outcomes, records)
}

/// The partitions whose leader is not their preferred replica while that
/// replica could lead: what the automatic balancing
/// (`auto.leader.rebalance.enable`) elects the preferred replica of, as
/// KRaft's controller does (every such partition, without Kafka's older
/// per-broker imbalance threshold).
pub(crate) fn imbalanced(image: &MetadataImage) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in image.topics_unordered() {
        for p in t.partitions.values() {
            if p.replicas
                .first()
                .is_some_and(|&r| p.leader != r && p.isr.contains(&r) && image.is_active(r))
            {
                out.push((t.name.clone(), p.partition));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::super::brokers::decide_fencing;
    use super::super::brokers::tests::{apply, image, partition};
    use super::*;

    /// Each outcome's error (`None`: elected).
    fn codes(outcomes: &[Result<(), ApiError>]) -> Vec<Option<ErrorCode>> {
        outcomes
            .iter()
            .map(|o| o.as_ref().err().map(|e| e.code))
            .collect()
    }

    #[test]
    fn preferred_elections_move_leadership_to_the_first_in_sync_active_replica() {
        // p0 led by its preferred replica; p1 by 2 with 1 in sync; p2 by 2
        // with 1 out of sync.
        let img = image(
            3,
            &[(&[1, 2], &[1, 2]), (&[1, 2], &[2, 1]), (&[1, 2], &[2])],
        );
        let asked: Vec<(String, i32)> = (0..4).map(|p| ("t".to_owned(), p)).collect();
        let (outcomes, records) = decide_elections(&img, &asked, false);
        assert_eq!(
            codes(&outcomes),
            [
                Some(ErrorCode::ElectionNotNeeded),
                None,
                Some(ErrorCode::PreferredLeaderNotAvailable),
                Some(ErrorCode::UnknownTopicOrPartition),
            ]
        );
        let after = apply(&img, &records);
        let p1 = partition(&after, 1);
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.as_slice()),
            (1, 1, &[2, 1][..])
        );
        assert_eq!(imbalanced(&img), [("t".to_owned(), 1)]);
        assert!(imbalanced(&after).is_empty());
        // A fenced preferred replica may not lead.
        let fenced = apply(&img, &decide_fencing(&img, &[1], &|_| false));
        let (outcomes, _) = decide_elections(&fenced, &asked[1..2], false);
        assert_eq!(
            codes(&outcomes),
            [Some(ErrorCode::PreferredLeaderNotAvailable)]
        );
        assert!(imbalanced(&fenced).is_empty());
    }

    #[test]
    fn unclean_elections_take_an_active_replica_only_where_no_one_leads() {
        let img = image(2, &[(&[1, 2], &[1]), (&[1, 2], &[1, 2])]);
        // Broker 1 is fenced: p0 (1 alone in sync) has no leader, p1 moves.
        let img = apply(&img, &decide_fencing(&img, &[1], &|_| false));
        assert_eq!(partition(&img, 0).leader, NO_LEADER);
        let asked: Vec<(String, i32)> = (0..2).map(|p| ("t".to_owned(), p)).collect();
        let (outcomes, records) = decide_elections(&img, &asked, true);
        assert_eq!(codes(&outcomes), [None, Some(ErrorCode::ElectionNotNeeded)]);
        let after = apply(&img, &records);
        let p0 = partition(&after, 0);
        assert_eq!(
            (p0.leader, p0.isr.as_slice()),
            (2, &[2][..]),
            "its log is the partition's"
        );
    }
}
