//! Partition replication on three real processes: followers fetch from
//! their leaders, acks=all answers once the ISR holds a write, and a
//! leader's kill -9 loses none of what it acknowledged.

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use kafka_protocol::messages::CreateTopicsRequest;
use strom_tests::cluster::Cluster;
use strom_tests::{fetch_all, name, produce};

/// Fast fencing, so that a killed leader's partitions move within seconds.
const FAST_FENCING: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "2000"),
    ("broker.heartbeat.interval.ms", "300"),
    ("min.insync.replicas", "2"),
];

/// Three nodes with [`FAST_FENCING`] and `extra`, once a controller leads.
fn three_nodes(extra: &[(&str, &str)]) -> Cluster {
    let settings: Vec<(&str, &str)> = FAST_FENCING.iter().chain(extra).copied().collect();
    let cluster = Cluster::start(3, &settings);
    cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    cluster
}

fn create(cluster: &Cluster, via: i32, topic: &str, partitions: i32, rf: i16) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)]);
    let r = cluster.node(via).client().request(7, &request).unwrap();
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
}

/// Partition 0 of `topic` as node `id` sees it, once `check` holds.
fn partition(
    cluster: &Cluster,
    id: i32,
    topic: &str,
    what: &str,
    check: impl Fn(&MetadataResponsePartition) -> bool,
) -> MetadataResponsePartition {
    let m = cluster.wait_for_metadata(id, what, Duration::from_secs(20), |m| {
        m.topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .and_then(|t| t.partitions.iter().find(|p| p.partition_index == 0))
            .is_some_and(|p| p.error_code == 0 && check(p))
    });
    m.topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .unwrap()
        .partitions[0]
        .clone()
}

fn sorted(ids: &[kafka_protocol::messages::BrokerId]) -> Vec<i32> {
    let mut v: Vec<i32> = ids.iter().map(|b| b.0).collect();
    v.sort();
    v
}

/// Produces `values` one acks=all batch each through `leader`, retrying
/// what a client retries while leadership settles.
fn produce_all(cluster: &Cluster, leader: i32, topic: &str, values: &[String]) {
    for v in values {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut c = cluster.node(leader).client();
            let code = strom_tests::produce_code(&mut c, topic, 0, std::slice::from_ref(v));
            match code {
                0 => break,
                // NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS
                6 | 7 | 19 if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                code => panic!(
                    "producing {v} to {leader}: error {code}; seed {}",
                    cluster.seed
                ),
            }
        }
    }
}

/// What node `id` serves of partition 0 of `r`, read again until it is
/// `expected` (a new leader's high watermark catches up with its followers'
/// first fetches) or 10 s have passed.
fn read_until(cluster: &Cluster, id: i32, expected: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = fetch_all(&mut cluster.node(id).client(), "r", 0);
        if read == expected || Instant::now() >= deadline {
            return read;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn acknowledged_records_survive_the_leaders_kill_9_and_a_returning_replica_rejoins() {
    let mut cluster = three_nodes(&[]);
    create(&cluster, 1, "r", 1, 3);
    let p = partition(&cluster, 1, "r", "three in sync", |p| {
        sorted(&p.isr_nodes) == [1, 2, 3]
    });
    let first = p.leader_id.0;
    let before: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    let mut c = cluster.node(first).client();
    for (i, v) in before.iter().enumerate() {
        assert_eq!(produce(&mut c, "r", 0, std::slice::from_ref(v)), i as i64);
    }
    drop(c);

    // The leader dies: another in-sync replica leads, with every record
    // the first one acknowledged at the offset it gave.
    cluster.kill9(first);
    let other = (1..=3).find(|n| *n != first).unwrap();
    let p = partition(&cluster, other, "r", "a new leader", |p| {
        p.leader_id.0 != first && p.leader_id.0 > 0
    });
    let second = p.leader_id.0;
    assert!(p.leader_epoch > 0, "{p:?}");
    // (Its high watermark reaches what the first leader acknowledged once
    // the remaining follower has fetched from it.)
    assert_eq!(
        read_until(&cluster, second, &before),
        before,
        "seed {}",
        cluster.seed
    );
    let after: Vec<String> = (30..40).map(|i| format!("v{i}")).collect();
    produce_all(&cluster, second, "r", &after);

    // Back, the first leader catches up from the second and rejoins the
    // ISR; the second's kill then loses nothing either.
    cluster.restart(first);
    partition(
        &cluster,
        other,
        "r",
        "the returning replica back in sync",
        |p| sorted(&p.isr_nodes) == [1, 2, 3],
    );
    cluster.kill9(second);
    let survivor = (1..=3).find(|n| *n != second).unwrap();
    let p = partition(&cluster, survivor, "r", "a third leader", |p| {
        p.leader_id.0 != second && p.leader_id.0 > 0
    });
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(
        read_until(&cluster, p.leader_id.0, &all),
        all,
        "seed {}",
        cluster.seed
    );
}

fn coordinator(cluster: &Cluster, via: i32, group: &str, not: &[i32]) -> i32 {
    cluster.wait_for_coordinator(via, group, 0, not)
}

/// Commits `offset` for partition 0 of `r` as a simple (member-less)
/// group; the error code.
fn commit_offset(cluster: &Cluster, id: i32, group: &str, offset: i64) -> i16 {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(group.to_owned().into()))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name("r"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])]);
    let r = cluster.node(id).client().request(8, &request).unwrap();
    r.topics[0].partitions[0].error_code
}

/// Commits until the coordinator answers without error, retrying what a
/// client retries: COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE
/// (its partition's followers not yet in sync), NOT_COORDINATOR (the
/// leadership still moving).
fn commit_until_ok(cluster: &Cluster, id: i32, group: &str, offset: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match commit_offset(cluster, id, group, offset) {
            0 => return,
            14..=16 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            code => panic!("commit to {id}: error {code}; seed {}", cluster.seed),
        }
    }
}

/// The offset node `id` answers for partition 0 of `r`, and the error.
fn fetch_offset(cluster: &Cluster, id: i32, group: &str) -> (i16, i64) {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest};
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(group.to_owned().into()))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name("r"))
            .with_partition_indexes(vec![0])]));
    let r = cluster.node(id).client().request(7, &request).unwrap();
    if r.error_code != 0 {
        return (r.error_code, -1);
    }
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

#[test]
fn a_groups_committed_offsets_survive_its_coordinators_kill_9() {
    let mut cluster = three_nodes(&[("offsets.topic.num.partitions", "3")]);
    create(&cluster, 1, "r", 1, 3);
    partition(&cluster, 1, "r", "three in sync", |p| {
        sorted(&p.isr_nodes) == [1, 2, 3]
    });
    // Every node names the same coordinator: the leader of the group's
    // __consumer_offsets partition, which has three replicas.
    let first = coordinator(&cluster, 1, "g", &[]);
    for id in 1..=3 {
        assert_eq!(coordinator(&cluster, id, "g", &[]), first);
    }
    let other = (1..=3).find(|n| *n != first).unwrap();
    assert_eq!(
        commit_offset(&cluster, other, "g", 7),
        16,
        "NOT_COORDINATOR from a node that does not coordinate the group"
    );
    commit_until_ok(&cluster, first, "g", 42);
    assert_eq!(fetch_offset(&cluster, first, "g"), (0, 42));

    // The coordinator dies: the partition's new leader coordinates the
    // group and has the committed offset.
    cluster.kill9(first);
    let survivor = (1..=3).find(|n| *n != first).unwrap();
    let second = coordinator(&cluster, survivor, "g", &[first]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let fetched = loop {
        let fetched = fetch_offset(&cluster, second, "g");
        if fetched.0 == 0 || Instant::now() >= deadline {
            break fetched;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(fetched, (0, 42), "seed {}", cluster.seed);
    commit_until_ok(&cluster, second, "g", 43);
    assert_eq!(fetch_offset(&cluster, second, "g"), (0, 43));
}

#[test]
fn paused_followers_leave_the_isr_then_acks_all_is_refused_and_they_rejoin() {
    // One controller (so that pausing brokers leaves the quorum whole) and
    // three brokers holding the partition.
    let roles = ["controller", "broker", "broker", "broker"];
    let mut cluster = Cluster::start_roles(&roles, FAST_FENCING, |_| Vec::new());
    cluster.wait_for_controller(2, &[], Duration::from_secs(10));
    create(&cluster, 2, "r", 1, 3);
    let p = partition(&cluster, 2, "r", "three in sync", |p| {
        sorted(&p.isr_nodes) == [2, 3, 4]
    });
    let leader = p.leader_id.0;
    let followers: Vec<i32> = (2..=4).filter(|n| *n != leader).collect();
    let mut acknowledged: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    produce_all(&cluster, leader, "r", &acknowledged);

    // One follower stops: it leaves the ISR, and with two in sync
    // (min.insync.replicas 2) acks=all goes on.
    cluster.pause(followers[0]);
    partition(&cluster, leader, "r", "two in sync", |p| {
        p.isr_nodes.len() == 2
    });
    let more: Vec<String> = (5..10).map(|i| format!("a{i}")).collect();
    produce_all(&cluster, leader, "r", &more);
    acknowledged.extend(more);

    // The other stops too: too few in sync, and acks=all is refused before
    // anything is appended.
    cluster.pause(followers[1]);
    partition(&cluster, leader, "r", "the leader alone in sync", |p| {
        p.isr_nodes.len() == 1
    });
    let mut c = cluster.node(leader).client();
    assert_eq!(
        strom_tests::produce_code(&mut c, "r", 0, &["refused".to_string()]),
        19,
        "NOT_ENOUGH_REPLICAS; seed {}",
        cluster.seed
    );
    drop(c);

    // Both return, catch up and rejoin the ISR; acks=all works again and
    // the log holds exactly what was acknowledged.
    cluster.resume(followers[0]);
    cluster.resume(followers[1]);
    partition(&cluster, leader, "r", "three in sync again", |p| {
        sorted(&p.isr_nodes) == [2, 3, 4]
    });
    let last: Vec<String> = (10..15).map(|i| format!("a{i}")).collect();
    produce_all(&cluster, leader, "r", &last);
    acknowledged.extend(last);
    assert_eq!(
        read_until(&cluster, leader, &acknowledged),
        acknowledged,
        "seed {}",
        cluster.seed
    );
    // And a returned follower that now leads has all of it.
    cluster.kill9(leader);
    let p = partition(&cluster, followers[0], "r", "a follower leading", |p| {
        p.leader_id.0 > 0 && p.leader_id.0 != leader
    });
    assert_eq!(
        read_until(&cluster, p.leader_id.0, &acknowledged),
        acknowledged,
        "seed {}",
        cluster.seed
    );
}

/// ElectLeaders (preferred) for partition 0 of `r` through node `via`: the
/// partition's error code.
fn elect_preferred(cluster: &Cluster, via: i32) -> i16 {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::ElectLeadersRequest;
    let request = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(10_000)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(name("r"))
            .with_partitions(vec![0])]));
    let r = cluster.node(via).client().request(2, &request).unwrap();
    r.replica_election_results[0].partition_result[0].error_code
}

/// Kills partition 0's leader (its preferred replica), lets another lead,
/// and brings the first back in sync: the preferred replica and the
/// partition's leader epoch then.
fn fail_over_and_return(cluster: &mut Cluster) -> (i32, i32) {
    create(cluster, 1, "r", 1, 3);
    let p = partition(cluster, 1, "r", "three in sync", |p| {
        sorted(&p.isr_nodes) == [1, 2, 3]
    });
    let preferred = p.replica_nodes[0].0;
    assert_eq!(
        p.leader_id.0, preferred,
        "a new partition is led by its preferred replica"
    );
    produce_all(cluster, preferred, "r", &["before".to_string()]);
    cluster.kill9(preferred);
    let other = (1..=3).find(|n| *n != preferred).unwrap();
    let p = partition(cluster, other, "r", "another leader", |p| {
        p.leader_id.0 > 0 && p.leader_id.0 != preferred
    });
    produce_all(cluster, p.leader_id.0, "r", &["during".to_string()]);
    cluster.restart(preferred);
    let p = partition(
        cluster,
        other,
        "r",
        "the preferred replica in sync again",
        |p| sorted(&p.isr_nodes) == [1, 2, 3],
    );
    (preferred, p.leader_epoch)
}

#[test]
fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    let mut cluster = three_nodes(&[("auto.leader.rebalance.enable", "false")]);
    let (preferred, epoch) = fail_over_and_return(&mut cluster);
    let via = (1..=3).find(|n| *n != preferred).unwrap();
    assert_ne!(
        partition(&cluster, via, "r", "led", |p| p.leader_id.0 > 0)
            .leader_id
            .0,
        preferred,
        "without balancing, leadership stays where the failover put it"
    );
    assert_eq!(elect_preferred(&cluster, via), 0, "seed {}", cluster.seed);
    let p = partition(&cluster, via, "r", "the preferred replica leading", |p| {
        p.leader_id.0 == preferred
    });
    assert!(p.leader_epoch > epoch, "{p:?}");
    assert_eq!(elect_preferred(&cluster, via), 84, "ELECTION_NOT_NEEDED");
    let all = ["before".to_string(), "during".to_string()];
    assert_eq!(
        read_until(&cluster, preferred, &all),
        all,
        "seed {}",
        cluster.seed
    );
}

#[test]
fn leadership_returns_to_the_preferred_replica_by_itself() {
    let mut cluster = three_nodes(&[("leader.imbalance.check.interval.seconds", "1")]);
    let (preferred, _) = fail_over_and_return(&mut cluster);
    let via = (1..=3).find(|n| *n != preferred).unwrap();
    partition(
        &cluster,
        via,
        "r",
        "the preferred replica leading again",
        |p| p.leader_id.0 == preferred,
    );
    let all = ["before".to_string(), "during".to_string()];
    assert_eq!(
        read_until(&cluster, preferred, &all),
        all,
        "seed {}",
        cluster.seed
    );
}
