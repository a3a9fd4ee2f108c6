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
    let mut cluster = Cluster::start(3, FAST_FENCING);
    cluster.wait_for_controller(1, &[], Duration::from_secs(10));
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
