//! Broker lifecycle decisions: registration, heartbeats, fencing and
//! controlled shutdown, and the leader elections they cause.
//!
//! A broker registers fenced, with a new incarnation id each time its
//! process starts; the registration's offset is its broker epoch. Its first
//! heartbeat that has applied the metadata log up to that offset unfences
//! it. The active controller fences a broker whose heartbeats stop for
//! `broker.session.timeout.ms`, and one that asks to shut down once its
//! leaderships have moved away. Fencing (or shutting down) removes the
//! broker from every ISR it is in and elects new leaders from what is left;
//! unfencing elects it where a partition has no leader and it can lead.
//! These elections are Kafka's: the current leader stays while it may,
//! else the first replica (in assignment order) that is in the ISR and
//! active; with none, the partition has no leader, and its ISR is kept
//! rather than emptied, unless `unclean.leader.election.enable` lets an
//! out-of-sync replica lead.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strom_metadata::{MetadataImage, MetadataRecord, PartitionImage, TopicImage, Uuid, NO_LEADER};
use strom_protocol::ErrorCode;

use super::{ApiError, BrokerRegistration};

/// What a registered broker is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub cluster_id: String,
    /// What this broker's heartbeats must name.
    pub broker_epoch: i64,
}

/// A broker's heartbeat to the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub node_id: i32,
    pub broker_epoch: i64,
    /// The offset of the newest metadata the broker has applied.
    pub metadata_offset: i64,
    /// Set by a broker shutting down (controlled shutdown).
    pub want_shutdown: bool,
}

/// What a heartbeat is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub is_fenced: bool,
    /// The broker leads nothing any more and may exit.
    pub should_shutdown: bool,
}

/// When each broker was last heard from, as the active controller knows
/// it: kept in memory, not in the log. A controller that has just become
/// active gives every broker a whole session from then.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    term: Option<u64>,
    last: HashMap<i32, Instant>,
}

impl Sessions {
    /// Forgets what an earlier term's leader heard.
    fn follow(&mut self, term: u64) {
        if self.term != Some(term) {
            self.term = Some(term);
            self.last.clear();
        }
    }

    pub(crate) fn renew(&mut self, term: u64, node: i32, now: Instant) {
        self.follow(term);
        self.last.insert(node, now);
    }

    /// Whether `node`'s session lasts: a broker not yet heard from in this
    /// term has a whole session from the first time it is asked about.
    pub(crate) fn is_live(
        &mut self,
        term: u64,
        node: i32,
        now: Instant,
        timeout: Duration,
    ) -> bool {
        self.follow(term);
        let last = *self.last.entry(node).or_insert(now);
        now.duration_since(last) < timeout
    }

    /// The unfenced brokers of `image` not heard from within `timeout`.
    pub(crate) fn expired(
        &mut self,
        term: u64,
        image: &MetadataImage,
        now: Instant,
        timeout: Duration,
    ) -> Vec<i32> {
        image
            .unfenced_brokers()
            .map(|b| b.node_id)
            .filter(|&b| !self.is_live(term, b, now, timeout))
            .collect()
    }
}

/// Whether `topic` may elect an out-of-sync replica.
pub(crate) type UncleanPolicy<'a> = &'a dyn Fn(&TopicImage) -> bool;

/// The partition after an election that removes `remove` from its ISR and
/// leadership and/or lets `add` lead though it is not yet active; `None`
/// when nothing changes.
pub(crate) fn elect(
    image: &MetadataImage,
    p: &PartitionImage,
    remove: Option<i32>,
    add: Option<i32>,
    unclean: bool,
) -> Option<PartitionImage> {
    let acceptable = |r: i32| Some(r) != remove && (Some(r) == add || image.is_active(r));
    let mut isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| Some(*r) != remove)
        .collect();
    let leader = if p.leader != NO_LEADER && isr.contains(&p.leader) && acceptable(p.leader) {
        p.leader
    } else {
        let clean = p
            .replicas
            .iter()
            .copied()
            .find(|r| isr.contains(r) && acceptable(*r));
        let dirty = || p.replicas.iter().copied().find(|r| acceptable(*r));
        clean
            .or_else(|| unclean.then(dirty).flatten())
            .unwrap_or(NO_LEADER)
    };
    if leader != NO_LEADER && !isr.contains(&leader) {
        // An unclean election: the new leader's log is the partition's.
        isr = vec![leader];
    } else if isr.is_empty() {
        // The ISR never shrinks to nothing: its last member keeps its place
        // and leads again when it returns.
        isr = p.isr.clone();
    }
    if leader == p.leader && isr == p.isr {
        return None;
    }
    let mut next = p.clone();
    if leader != p.leader {
        next.leader_epoch += 1;
    }
    next.leader = leader;
    next.isr = isr;
    next.partition_epoch += 1;
    Some(next)
}

/// Partition records that take `broker` out of every ISR and leadership.
pub(crate) fn move_off(
    image: &MetadataImage,
    broker: i32,
    unclean: UncleanPolicy<'_>,
) -> Vec<MetadataRecord> {
    changes(image, unclean, |p| {
        (p.leader == broker || p.isr.contains(&broker)).then_some((Some(broker), None))
    })
}

/// Partition records that elect `broker` where a partition it replicates
/// has no leader.
pub(crate) fn elect_for(
    image: &MetadataImage,
    broker: i32,
    unclean: UncleanPolicy<'_>,
) -> Vec<MetadataRecord> {
    changes(image, unclean, |p| {
        (p.leader == NO_LEADER && p.replicas.contains(&broker)).then_some((None, Some(broker)))
    })
}

/// Elections over every partition that `which` picks (with its remove and
/// add), as records.
fn changes(
    image: &MetadataImage,
    unclean: UncleanPolicy<'_>,
    which: impl Fn(&PartitionImage) -> Option<(Option<i32>, Option<i32>)>,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics_unordered() {
        let unclean = unclean(t);
        for p in t.partitions.values() {
            if let Some((remove, add)) = which(p) {
                if let Some(next) = elect(image, p, remove, add, unclean) {
                    out.push(next.to_record(t.id));
                }
            }
        }
    }
    out
}

/// Records that register `broker` (fenced) unless the same process is
/// registered already, and the cluster's id: recorded by the first
/// registration (the broker's own, carried from a single node's data
/// directory, or a new one). The broker epoch answered is -1 when the
/// registration is new: it is the offset its records are committed at.
///
/// A broker id registered by another live process at another address is
/// refused (DUPLICATE_BROKER_REGISTRATION); a new incarnation at the same
/// address is the same node restarted (two processes cannot listen there),
/// and replaces the old one at once, its leaderships moved as if fenced.
pub(crate) fn decide_registration(
    image: &MetadataImage,
    broker: BrokerRegistration,
    session_live: bool,
    unclean: UncleanPolicy<'_>,
) -> Result<(Registered, Vec<MetadataRecord>), ApiError> {
    let mut records = Vec::new();
    let cluster_id = match (&image.cluster_id, broker.cluster_id) {
        (Some(recorded), Some(theirs)) if *recorded != theirs => {
            return Err(ApiError::new(
                ErrorCode::InconsistentClusterId,
                format!(
                    "node {}'s data directory belongs to cluster {theirs}, but this cluster is {recorded}",
                    broker.node_id
                ),
            ))
        }
        (Some(recorded), _) => recorded.clone(),
        (None, theirs) => {
            let id = theirs.unwrap_or_else(new_cluster_id);
            records.push(MetadataRecord::ClusterId {
                cluster_id: id.clone(),
            });
            id
        }
    };
    if let Some(current) = image.broker(broker.node_id) {
        if current.incarnation_id == Some(broker.incarnation_id) {
            let registered = Registered {
                cluster_id,
                broker_epoch: current.epoch,
            };
            return Ok((registered, records));
        }
        let moved = current.host != broker.host || current.port != broker.port;
        if !current.fenced && session_live && moved {
            return Err(ApiError::new(
                ErrorCode::DuplicateBrokerRegistration,
                format!(
                    "Another broker is registered with that broker id ({} at {}:{}).",
                    broker.node_id, current.host, current.port
                ),
            ));
        }
        records.extend(move_off(image, broker.node_id, unclean));
    }
    records.push(MetadataRecord::RegisterBroker {
        node_id: broker.node_id,
        host: broker.host,
        port: broker.port,
        rack: broker.rack,
        incarnation_id: Some(broker.incarnation_id),
        epoch: None,
        fenced: true,
    });
    let registered = Registered {
        cluster_id,
        broker_epoch: -1,
    };
    Ok((registered, records))
}

/// What a heartbeat changes: unfencing a broker that has caught up, or the
/// steps of its controlled shutdown.
pub(crate) fn decide_heartbeat(
    image: &MetadataImage,
    hb: &BrokerHeartbeat,
    unclean: UncleanPolicy<'_>,
) -> Result<(HeartbeatReply, Vec<MetadataRecord>), ApiError> {
    let Some(broker) = image.broker(hb.node_id) else {
        return Err(ApiError::new(
            ErrorCode::BrokerIdNotRegistered,
            format!("Broker {} is not registered.", hb.node_id),
        ));
    };
    if broker.epoch != hb.broker_epoch {
        return Err(ApiError::new(
            ErrorCode::StaleBrokerEpoch,
            format!(
                "Expected broker epoch {}, but got broker epoch {}",
                broker.epoch, hb.broker_epoch
            ),
        ));
    }
    let (node_id, epoch) = (hb.node_id, broker.epoch);
    let mut records = Vec::new();
    if hb.want_shutdown {
        if !broker.fenced {
            let mut next = image.clone();
            if !broker.in_controlled_shutdown {
                let record = MetadataRecord::BrokerShuttingDown { node_id, epoch };
                next.apply_mut(image.offset, std::slice::from_ref(&record));
                records.push(record);
            }
            records.extend(move_off(&next, node_id, unclean));
            records.push(MetadataRecord::FenceBroker { node_id, epoch });
        }
        let reply = HeartbeatReply {
            is_fenced: true,
            should_shutdown: true,
        };
        return Ok((reply, records));
    }
    let mut is_fenced = broker.fenced;
    // A broker that shut down stays fenced until it registers again (a
    // heartbeat sent before its shutdown began may arrive after it).
    if broker.fenced && !broker.in_controlled_shutdown && hb.metadata_offset >= broker.epoch {
        let unfence = MetadataRecord::UnfenceBroker { node_id, epoch };
        let mut next = image.clone();
        next.apply_mut(image.offset, std::slice::from_ref(&unfence));
        records.push(unfence);
        records.extend(elect_for(&next, node_id, unclean));
        is_fenced = false;
    }
    let reply = HeartbeatReply {
        is_fenced,
        should_shutdown: false,
    };
    Ok((reply, records))
}

/// Records that fence each of `expired` (brokers whose sessions ended).
pub(crate) fn decide_fencing(
    image: &MetadataImage,
    expired: &[i32],
    unclean: UncleanPolicy<'_>,
) -> Vec<MetadataRecord> {
    let mut next = image.clone();
    let mut records = Vec::new();
    for &node_id in expired {
        let Some(b) = next.broker(node_id).filter(|b| !b.fenced) else {
            continue;
        };
        let fence = MetadataRecord::FenceBroker {
            node_id,
            epoch: b.epoch,
        };
        let mut batch = move_off(&next, node_id, unclean);
        batch.push(fence);
        next.apply_mut(image.offset, &batch);
        records.extend(batch);
    }
    records
}

/// A new cluster id as Kafka prints them: 16 random bytes, URL-safe
/// base64 without padding.
pub(crate) fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = *Uuid::new_v4().as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    const NEVER: &dyn Fn(&TopicImage) -> bool = &|_| false;
    const ALWAYS: &dyn Fn(&TopicImage) -> bool = &|_| true;

    fn register(node_id: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node_id,
            host: "h".into(),
            port: 9000 + node_id,
            rack: None,
            incarnation_id: Some(Uuid::from_u128(node_id as u128)),
            epoch: None,
            fenced: true,
        }
    }

    /// Brokers 1..=n, registered at offset 0 and unfenced, and topic "t"
    /// whose partition p has `replicas[p]` with the ISR `isrs[p]`.
    pub(in crate::controller) fn image(n: i32, partitions: &[(&[i32], &[i32])]) -> MetadataImage {
        let topic_id = Uuid::from_u128(7);
        let mut records: Vec<MetadataRecord> = (1..=n).map(register).collect();
        records.extend((1..=n).map(|node_id| MetadataRecord::UnfenceBroker { node_id, epoch: 0 }));
        records.push(MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        });
        for (p, (replicas, isr)) in partitions.iter().enumerate() {
            records.push(MetadataRecord::Partition {
                topic_id,
                partition: p as i32,
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                leader: isr[0],
                leader_epoch: 0,
                partition_epoch: Some(0),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            });
        }
        MetadataImage::empty().apply(0, &records)
    }

    pub(in crate::controller) fn partition(image: &MetadataImage, p: i32) -> &PartitionImage {
        &image.topic("t").unwrap().partitions[&p]
    }

    pub(in crate::controller) fn apply(
        image: &MetadataImage,
        records: &[MetadataRecord],
    ) -> MetadataImage {
        image.apply(image.offset + 1, records)
    }

    fn beat(
        node_id: i32,
        broker_epoch: i64,
        metadata_offset: i64,
        want_shutdown: bool,
    ) -> BrokerHeartbeat {
        BrokerHeartbeat {
            node_id,
            broker_epoch,
            metadata_offset,
            want_shutdown,
        }
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_or_leaves_none() {
        let img = image(
            3,
            &[(&[1, 2, 3], &[1, 2]), (&[1, 2], &[1]), (&[2, 1], &[2, 1])],
        );
        let fenced = apply(&img, &decide_fencing(&img, &[1], NEVER));
        assert!(fenced.broker(1).unwrap().fenced);
        let p0 = partition(&fenced, 0);
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.as_slice()),
            (2, 1, &[2][..])
        );
        let p1 = partition(&fenced, 1);
        assert_eq!(p1.leader, NO_LEADER, "its only in-sync replica is gone");
        assert_eq!(p1.isr, [1], "the ISR is never emptied");
        assert_eq!((p1.leader_epoch, p1.partition_epoch), (1, 1));
        let p2 = partition(&fenced, 2);
        assert_eq!(
            (p2.leader, p2.leader_epoch, p2.isr.as_slice()),
            (2, 0, &[2][..]),
            "a follower leaves the ISR; the leader stays"
        );
        assert_eq!(p2.partition_epoch, 1);

        // Unfenced, broker 1 leads again where it is the ISR's last member.
        let (reply, records) =
            decide_heartbeat(&fenced, &beat(1, 0, fenced.offset, false), NEVER).unwrap();
        assert!(!reply.is_fenced);
        let back = apply(&fenced, &records);
        assert!(back.is_active(1));
        assert_eq!(
            (partition(&back, 1).leader, partition(&back, 1).leader_epoch),
            (1, 2)
        );
        assert_eq!(
            partition(&back, 0).leader,
            2,
            "leadership does not move back by itself"
        );
    }

    #[test]
    fn an_unclean_election_takes_an_out_of_sync_replica_and_resets_the_isr() {
        let img = image(2, &[(&[1, 2], &[1])]);
        let fenced = apply(&img, &decide_fencing(&img, &[1], ALWAYS));
        let p = partition(&fenced, 0);
        assert_eq!((p.leader, p.isr.as_slice()), (2, &[2][..]));
    }

    #[test]
    fn controlled_shutdown_moves_leadership_then_fences() {
        let img = image(2, &[(&[1, 2], &[1, 2]), (&[1], &[1])]);
        let (reply, records) =
            decide_heartbeat(&img, &beat(1, 0, img.offset, true), NEVER).unwrap();
        assert!(reply.should_shutdown && reply.is_fenced);
        let after = apply(&img, &records);
        assert!(after.broker(1).unwrap().fenced);
        assert_eq!(partition(&after, 0).leader, 2);
        assert_eq!(partition(&after, 1).leader, NO_LEADER);
        // Asked again (its answer was lost), nothing more is written.
        let (again, more) =
            decide_heartbeat(&after, &beat(1, 0, after.offset, true), NEVER).unwrap();
        assert!(again.should_shutdown && more.is_empty());
        // A heartbeat sent before the shutdown began, decided after it,
        // does not bring the broker back.
        let (late, none) =
            decide_heartbeat(&after, &beat(1, 0, after.offset, false), NEVER).unwrap();
        assert!(late.is_fenced && none.is_empty());
    }

    #[test]
    fn heartbeats_unfence_only_a_caught_up_broker_of_the_current_registration() {
        let img = MetadataImage::empty().apply(5, &[register(1)]);
        let behind = decide_heartbeat(&img, &beat(1, 5, 4, false), NEVER).unwrap();
        assert!(behind.0.is_fenced && behind.1.is_empty());
        let caught_up = decide_heartbeat(&img, &beat(1, 5, 5, false), NEVER).unwrap();
        assert!(!caught_up.0.is_fenced);
        let stale = decide_heartbeat(&img, &beat(1, 3, 5, false), NEVER).unwrap_err();
        assert_eq!(stale.code, ErrorCode::StaleBrokerEpoch);
        let unknown = decide_heartbeat(&img, &beat(2, 5, 5, false), NEVER).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::BrokerIdNotRegistered);
    }

    fn registration(node_id: i32, port: i32, incarnation: u128) -> BrokerRegistration {
        BrokerRegistration {
            node_id,
            host: "h".into(),
            port,
            rack: None,
            cluster_id: None,
            incarnation_id: Uuid::from_u128(incarnation),
        }
    }

    #[test]
    fn registration_of_a_restarted_or_duplicate_broker() {
        let img = image(2, &[(&[1, 2], &[1, 2])]);
        // The same process again: its epoch, nothing written.
        let (same, records) =
            decide_registration(&img, registration(1, 9001, 1), true, NEVER).unwrap();
        assert_eq!(same.broker_epoch, 0);
        assert!(records
            .iter()
            .all(|r| matches!(r, MetadataRecord::ClusterId { .. })));
        // Another process at another address while the first is heard.
        let dup = decide_registration(&img, registration(1, 9555, 2), true, NEVER).unwrap_err();
        assert_eq!(dup.code, ErrorCode::DuplicateBrokerRegistration);
        // A restart at its address: fenced, out of the ISR, not leading.
        let (new, records) =
            decide_registration(&img, registration(1, 9001, 2), true, NEVER).unwrap();
        assert_eq!(new.broker_epoch, -1, "the offset it is committed at");
        let after = apply(&img, &records);
        let b = after.broker(1).unwrap();
        assert!(b.fenced && b.epoch == after.offset);
        assert_eq!(partition(&after, 0).leader, 2);
        // Once its session is over, another address may take the id.
        assert!(decide_registration(&img, registration(1, 9555, 2), false, NEVER).is_ok());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Fence(i32),
        Heartbeat(i32),
        Shutdown(i32),
        Restart(i32),
    }

    fn step() -> impl Strategy<Value = Step> {
        (0..4u8, 1..=4i32).prop_map(|(k, b)| match k {
            0 => Step::Fence(b),
            1 => Step::Heartbeat(b),
            2 => Step::Shutdown(b),
            _ => Step::Restart(b),
        })
    }

    proptest! {
        /// Whatever brokers do, every partition keeps Kafka's invariants:
        /// a non-empty ISR within its replicas, a leader that is an active
        /// member of the ISR (or none), epochs that only grow and a leader
        /// epoch that grows with every change of leader.
        #[test]
        fn elections_keep_the_partition_invariants(
            steps in proptest::collection::vec(step(), 1..40),
            unclean in any::<bool>(),
        ) {
            let policy: &dyn Fn(&TopicImage) -> bool = if unclean { ALWAYS } else { NEVER };
            let mut img = image(4, &[
                (&[1, 2, 3], &[1, 2, 3]), (&[2, 3, 4], &[2, 3]), (&[4], &[4]), (&[3, 1], &[1]),
            ]);
            let mut incarnation = 100;
            for s in steps {
                let records = match s {
                    Step::Fence(b) => decide_fencing(&img, &[b], policy),
                    Step::Heartbeat(b) | Step::Shutdown(b) => {
                        let epoch = img.broker(b).unwrap().epoch;
                        let hb = beat(b, epoch, img.offset, matches!(s, Step::Shutdown(_)));
                        decide_heartbeat(&img, &hb, policy).unwrap().1
                    }
                    Step::Restart(b) => {
                        incarnation += 1;
                        let r = registration(b, 9000 + b, incarnation);
                        decide_registration(&img, r, false, policy).unwrap().1
                    }
                };
                let next = apply(&img, &records);
                for (id, p) in &next.topic("t").unwrap().partitions {
                    let old = partition(&img, *id);
                    prop_assert!(!p.isr.is_empty());
                    prop_assert!(p.isr.iter().all(|r| p.replicas.contains(r)));
                    if p.leader != NO_LEADER {
                        prop_assert!(p.isr.contains(&p.leader), "{p:?}");
                        prop_assert!(next.is_active(p.leader), "{p:?} led by an inactive broker");
                    }
                    prop_assert!(p.leader_epoch >= old.leader_epoch);
                    prop_assert!(p.partition_epoch >= old.partition_epoch);
                    if p.leader != old.leader {
                        prop_assert!(p.leader_epoch > old.leader_epoch);
                    }
                    if !unclean && p.leader != NO_LEADER {
                        prop_assert!(old.isr.contains(&p.leader), "a clean election picks from the ISR");
                    }
                }
                img = next;
            }
        }
    }
}
