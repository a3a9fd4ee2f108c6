//! Three-node clusters of real processes: one metadata served alike by
//! every node, forwarding to the active controller, a new controller after
//! a kill -9, a minority that commits nothing, and restarts that keep every
//! committed change.

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    InitProducerIdRequest,
};
use kafka_protocol::protocol::StrBytes;
use strom_tests::cluster::Cluster;
use strom_tests::{batch, name, Client};

const NONE: i16 = 0;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const NOT_CONTROLLER: i16 = 41;

/// CreateTopics of one topic on node `id`: its error code.
fn create(
    cluster: &Cluster,
    id: i32,
    topic: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> i16 {
    let mut c = cluster.node(id).client();
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    c.request(7, &request).unwrap().topics[0].error_code
}

/// Creates `topic` through node `id`, retrying what an admin client
/// retries while a controller is being elected.
fn create_eventually(cluster: &Cluster, id: i32, topic: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match create(cluster, id, topic, 2, 1, &[]) {
            NONE => return,
            REQUEST_TIMED_OUT | NOT_CONTROLLER if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            code => panic!(
                "creating {topic} on node {id}: error {code}; seed {}; log:\n{}",
                cluster.seed,
                cluster.node(id).log()
            ),
        }
    }
}

/// Topic `topic` of a Metadata answer.
fn topic<'a>(
    m: &'a kafka_protocol::messages::MetadataResponse,
    topic: &str,
) -> &'a kafka_protocol::messages::metadata_response::MetadataResponseTopic {
    m.topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .unwrap_or_else(|| panic!("{topic} in {m:?}"))
}

fn topic_names(m: &kafka_protocol::messages::MetadataResponse) -> Vec<String> {
    let mut names: Vec<String> = m
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    names
}

#[test]
fn three_nodes_serve_one_metadata_and_forward_changes_to_the_controller() {
    let cluster = Cluster::start(3, &[]);
    let controller = cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    let other = (1..=3).find(|n| *n != controller).unwrap();

    // Created through a node that is not the controller: forwarded.
    assert_eq!(create(&cluster, other, "spread", 6, 1, &[]), NONE);
    assert_eq!(create(&cluster, other, "three", 1, 3, &[]), NONE);
    assert_eq!(
        create(&cluster, other, "too-many", 1, 4, &[]),
        INVALID_REPLICATION_FACTOR
    );

    let mut ids = Vec::new();
    for id in 1..=3 {
        let m = cluster.wait_for_metadata(id, "both topics", Duration::from_secs(10), |m| {
            topic_names(m) == ["spread", "three"]
        });
        let mut brokers: Vec<(i32, i32)> =
            m.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
        brokers.sort();
        let expected: Vec<(i32, i32)> = (1..=3)
            .map(|n| (n, i32::from(cluster.node(n).addr.port())))
            .collect();
        assert_eq!(
            brokers, expected,
            "node {id} lists every broker at its address"
        );
        assert_eq!(
            m.controller_id.0, controller,
            "node {id} names the same controller"
        );
        let spread = topic(&m, "spread");
        let mut leaders: Vec<i32> = spread.partitions.iter().map(|p| p.leader_id.0).collect();
        leaders.sort();
        assert_eq!(
            leaders,
            [1, 1, 2, 2, 3, 3],
            "leaders spread over the brokers"
        );
        let three = topic(&m, "three");
        let mut replicas: Vec<i32> = three.partitions[0]
            .replica_nodes
            .iter()
            .map(|r| r.0)
            .collect();
        replicas.sort();
        assert_eq!(replicas, [1, 2, 3]);
        ids.push(spread.topic_id);
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one topic id on every node"
    );

    // The data path goes to a partition's leader.
    let m = cluster.metadata(1).unwrap();
    let spread = topic(&m, "spread");
    let p = &spread.partitions[0];
    let follower = (1..=3).find(|n| *n != p.leader_id.0).unwrap();
    let mut c = cluster.node(follower).client();
    let resp = c
        .request(
            9,
            &kafka_protocol::messages::ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    kafka_protocol::messages::produce_request::TopicProduceData::default()
                        .with_name(name("spread"))
                        .with_partition_data(vec![
                        kafka_protocol::messages::produce_request::PartitionProduceData::default()
                            .with_index(p.partition_index)
                            .with_records(Some(batch(&["v".to_string()]))),
                    ]),
                ]),
        )
        .unwrap();
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        NOT_LEADER_OR_FOLLOWER
    );
    let mut leader = cluster.node(p.leader_id.0).client();
    assert_eq!(
        strom_tests::produce(&mut leader, "spread", p.partition_index, &["v".to_string()]),
        0
    );

    // Producer ids come from the controller: two brokers never hand out
    // the same one.
    let pid = |id: i32| {
        let mut c: Client = cluster.node(id).client();
        let r = c
            .request(
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
            )
            .unwrap();
        assert_eq!(r.error_code, NONE);
        r.producer_id.0
    };
    let (a, b, a2) = (pid(1), pid(2), pid(1));
    assert!(a != b && a2 != b && a != a2, "producer ids {a}, {b}, {a2}");

    // Deleted through the third node: gone everywhere.
    let third = (1..=3).find(|n| *n != controller && *n != other).unwrap();
    let mut c = cluster.node(third).client();
    let resp = c
        .request(
            6,
            &DeleteTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    DeleteTopicState::default().with_name(Some(name("three")))
                ]),
        )
        .unwrap();
    assert_eq!(resp.responses[0].error_code, NONE);
    for id in 1..=3 {
        cluster.wait_for_metadata(id, "only spread", Duration::from_secs(10), |m| {
            topic_names(m) == ["spread"]
        });
    }
}

#[test]
fn a_new_controller_takes_over_after_a_kill_9_and_a_returning_node_catches_up() {
    let mut cluster = Cluster::start(3, &[]);
    let first = cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    create_eventually(&cluster, first, "before", Duration::from_secs(10));
    cluster.kill9(first);
    let killed = Instant::now();
    let survivor = (1..=3).find(|n| *n != first).unwrap();
    let second = cluster.wait_for_controller(survivor, &[first], Duration::from_secs(15));
    println!("a new controller ({second}) after {:?}", killed.elapsed());
    create_eventually(&cluster, survivor, "after", Duration::from_secs(15));
    for id in cluster.running() {
        cluster.wait_for_metadata(id, "both topics", Duration::from_secs(10), |m| {
            topic_names(m) == ["after", "before"]
        });
    }
    // Down while "after" was created: it catches up once back.
    cluster.restart(first);
    cluster.wait_for_metadata(
        first,
        "the topic created while it was down",
        Duration::from_secs(15),
        |m| topic_names(m) == ["after", "before"],
    );
}

#[test]
fn a_minority_commits_nothing_until_a_majority_is_back() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    let survivor = (cluster.rng() % 3) as i32 + 1;
    let down: Vec<i32> = (1..=3).filter(|n| *n != survivor).collect();
    for id in &down {
        cluster.kill9(*id);
    }
    for attempt in 0..3 {
        let code = create(
            &cluster,
            survivor,
            &format!("minority-{attempt}"),
            1,
            1,
            &[],
        );
        assert!(
            code == REQUEST_TIMED_OUT || code == NOT_CONTROLLER,
            "node {survivor} alone answered CreateTopics with {code}; seed {}; log:\n{}",
            cluster.seed,
            cluster.node(survivor).log()
        );
    }
    cluster.restart(down[0]);
    create_eventually(&cluster, survivor, "majority", Duration::from_secs(20));
}

#[test]
fn every_committed_topic_and_config_survives_a_whole_cluster_kill_9() {
    let mut cluster = Cluster::start(3, &[]);
    let controller = cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    assert_eq!(
        create(
            &cluster,
            controller,
            "kept",
            3,
            2,
            &[("retention.ms", "1234567")]
        ),
        NONE
    );
    for id in 1..=3 {
        cluster.kill9(id);
    }
    for node in &mut cluster.nodes {
        node.launch();
    }
    for node in &cluster.nodes {
        node.wait_ready();
    }
    for id in 1..=3 {
        let m = cluster.wait_for_metadata(id, "kept", Duration::from_secs(10), |m| {
            topic_names(m) == ["kept"]
        });
        assert_eq!(m.topics[0].partitions.len(), 3);
        let mut c = cluster.node(id).client();
        let resp = c
            .request(
                4,
                &DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("kept"))
                        .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                            "retention.ms",
                        )])),
                ]),
            )
            .unwrap();
        let value = resp.results[0].configs[0]
            .value
            .as_ref()
            .map(|v| v.to_string());
        assert_eq!(value.as_deref(), Some("1234567"), "node {id}");
    }
}

const LEADER_NOT_AVAILABLE: i16 = 5;

fn broker_ids(m: &kafka_protocol::messages::MetadataResponse) -> Vec<i32> {
    let mut ids: Vec<i32> = m.brokers.iter().map(|b| b.node_id.0).collect();
    ids.sort();
    ids
}

/// (leader, leader epoch, error, offline replicas) of each partition of
/// `name`, by partition index.
fn leadership(
    m: &kafka_protocol::messages::MetadataResponse,
    name: &str,
) -> Vec<(i32, i32, i16, Vec<i32>)> {
    let mut parts: Vec<_> = topic(m, name).partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    parts
        .iter()
        .map(|p| {
            (
                p.leader_id.0,
                p.leader_epoch,
                p.error_code,
                p.offline_replicas.iter().map(|r| r.0).collect(),
            )
        })
        .collect()
}

#[test]
fn a_broker_whose_heartbeats_stop_is_fenced_and_unfenced_when_it_returns() {
    let cluster = Cluster::start(
        3,
        &[
            ("broker.session.timeout.ms", "1500"),
            ("broker.heartbeat.interval.ms", "200"),
        ],
    );
    let mut cluster = cluster;
    let controller = cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    assert_eq!(create(&cluster, controller, "t", 3, 1, &[]), NONE);
    // A broker that is not the controller stops answering (SIGSTOP).
    let others: Vec<i32> = (1..=3).filter(|n| *n != controller).collect();
    let victim = others[(cluster.rng() % 2) as usize];
    let before = cluster.wait_for_metadata(controller, "t", Duration::from_secs(10), |m| {
        broker_ids(m) == [1, 2, 3] && topic(m, "t").partitions.len() == 3
    });
    let led: Vec<i32> = leadership(&before, "t")
        .iter()
        .enumerate()
        .filter(|(_, l)| l.0 == victim)
        .map(|(p, _)| p as i32)
        .collect();
    assert_eq!(led.len(), 1, "each broker leads one partition");
    cluster.pause(victim);

    // Fenced: offered to no client; what it alone held has no leader.
    let fenced = cluster.wait_for_metadata(
        controller,
        "the paused broker fenced",
        Duration::from_secs(15),
        |m| !broker_ids(m).contains(&victim),
    );
    let p = &leadership(&fenced, "t")[led[0] as usize];
    assert_eq!(
        (p.0, p.1, p.2, p.3.clone()),
        (-1, 1, LEADER_NOT_AVAILABLE, vec![victim]),
        "seed {}",
        cluster.seed
    );
    // DescribeCluster v2 lists it only when asked for fenced brokers, and
    // marks it (KIP-1073).
    let described = |include: bool| -> Vec<(i32, bool)> {
        let req = DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_fenced_brokers(include);
        let resp = cluster.node(controller).client().request(2, &req).unwrap();
        assert_eq!(resp.error_code, NONE);
        let mut brokers: Vec<(i32, bool)> = resp
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.is_fenced))
            .collect();
        brokers.sort();
        brokers
    };
    let listed = described(true);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed.iter().all(|(id, f)| *f == (*id == victim)),
        "{listed:?}"
    );
    assert!(!described(false).iter().any(|(id, _)| *id == victim));
    // Only two live brokers: a replication factor of 3 cannot be placed.
    assert_eq!(
        create(&cluster, controller, "three", 1, 3, &[]),
        INVALID_REPLICATION_FACTOR
    );
    // New partitions go to the live brokers only.
    assert_eq!(create(&cluster, controller, "two", 4, 1, &[]), NONE);
    let m = cluster.wait_for_metadata(controller, "two", Duration::from_secs(10), |m| {
        m.topics
            .iter()
            .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "two"))
    });
    assert!(leadership(&m, "two")
        .iter()
        .all(|l| l.0 != victim && l.0 > 0));

    // Back, it heartbeats, is unfenced and leads its partition again.
    cluster.resume(victim);
    let back = cluster.wait_for_metadata(
        controller,
        "the broker unfenced",
        Duration::from_secs(15),
        |m| broker_ids(m) == [1, 2, 3] && leadership(m, "t")[led[0] as usize].0 == victim,
    );
    let p = &leadership(&back, "t")[led[0] as usize];
    assert_eq!(
        (p.1, p.2, p.3.len()),
        (2, NONE, 0),
        "a new epoch, no error, none offline"
    );
    let mut c = cluster.node(victim).client();
    cluster.wait_for_metadata(victim, "its own leadership", Duration::from_secs(10), |m| {
        leadership(m, "t")[led[0] as usize] == (victim, 2, NONE, vec![])
    });
    assert_eq!(
        strom_tests::produce(&mut c, "t", led[0], &["back".to_string()]),
        0
    );
}

#[test]
fn sigterm_moves_a_brokers_leaderships_away_before_it_exits() {
    // A session longer than the test: only a controlled shutdown fences.
    let mut cluster = Cluster::start(3, &[("broker.session.timeout.ms", "600000")]);
    let controller = cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    assert_eq!(create(&cluster, controller, "t", 3, 1, &[]), NONE);
    let others: Vec<i32> = (1..=3).filter(|n| *n != controller).collect();
    let leaving = others[(cluster.rng() % 2) as usize];
    let status = cluster.node_mut(leaving).terminate();
    assert!(status.success(), "a clean exit: {status:?}");
    let m = cluster.wait_for_metadata(
        controller,
        "the stopped broker fenced",
        Duration::from_secs(10),
        |m| !broker_ids(m).contains(&leaving),
    );
    let gone: Vec<_> = leadership(&m, "t")
        .into_iter()
        .filter(|l| l.3.contains(&leaving))
        .collect();
    assert_eq!(gone.len(), 1, "{m:?}");
    assert_eq!((gone[0].0, gone[0].2), (-1, LEADER_NOT_AVAILABLE));

    // It comes back with its partition.
    cluster.restart(leaving);
    cluster.wait_for_metadata(
        controller,
        "the broker back",
        Duration::from_secs(15),
        |m| broker_ids(m) == [1, 2, 3] && leadership(m, "t").iter().all(|l| l.0 > 0),
    );
}

#[test]
fn describe_quorum_from_any_node_shows_the_leaders_view_of_every_voter() {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
    let cluster = Cluster::start(3, &[]);
    let controller = cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    assert_eq!(create(&cluster, controller, "t", 1, 1, &[]), NONE);
    let other = (1..=3).find(|n| *n != controller).unwrap();
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = cluster.node(other).client().request(2, &request).unwrap();
        assert_eq!(r.error_code, NONE, "{r:?}");
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_id.0), (NONE, controller));
        let mut ids: Vec<i32> = r.nodes.iter().map(|n| n.node_id.0).collect();
        ids.sort();
        assert_eq!(ids, [1, 2, 3], "every voter's controller endpoint");
        assert_eq!(p.current_voters.len(), 3);
        // Every voter holds what is committed, and the leader heard each.
        if p.current_voters
            .iter()
            .all(|v| v.log_end_offset >= p.high_watermark && v.last_caught_up_timestamp > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "voters never caught up: {r:?}; seed {}",
            cluster.seed
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replicas_are_spread_across_racks_when_brokers_name_them() {
    // Two brokers in rack "east", one in "west": with two replicas, every
    // partition must keep one in each rack, whatever the round robin says.
    let racks = ["east", "east", "west"];
    let cluster = Cluster::start_with(3, &[], |id| {
        vec![("broker.rack".into(), racks[id as usize - 1].into())]
    });
    cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    assert_eq!(create(&cluster, 2, "racked", 6, 2, &[]), NONE);
    let m = cluster.wait_for_metadata(1, "the racked topic", Duration::from_secs(10), |m| {
        topic_names(m) == ["racked"] && m.brokers.len() == 3
    });
    let rack_of = |id: i32| {
        m.brokers
            .iter()
            .find(|b| b.node_id.0 == id)
            .and_then(|b| b.rack.as_ref())
            .map(|r| r.to_string())
            .unwrap_or_else(|| panic!("broker {id} with its rack in {m:?}"))
    };
    for id in 1..=3 {
        assert_eq!(rack_of(id), racks[id as usize - 1], "broker {id}'s rack");
    }
    let racked = topic(&m, "racked");
    assert_eq!(racked.partitions.len(), 6);
    let mut leaders = std::collections::BTreeMap::<i32, usize>::new();
    for p in &racked.partitions {
        let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
        let mut spanned: Vec<String> = replicas.iter().map(|r| rack_of(*r)).collect();
        spanned.sort();
        assert_eq!(
            spanned,
            ["east", "west"],
            "partition {} on {replicas:?}; seed {}",
            p.partition_index,
            cluster.seed
        );
        *leaders.entry(p.leader_id.0).or_default() += 1;
    }
    assert_eq!(
        leaders.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "each broker leads two of the six partitions: {leaders:?}"
    );
}

#[test]
fn controller_only_and_broker_only_nodes_form_one_cluster() {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
    // Nodes 1-3 vote and host nothing; 4 and 5 host partitions and follow
    // the metadata as observers.
    let roles = ["controller", "controller", "controller", "broker", "broker"];
    let mut cluster = Cluster::start_roles(&roles, &[], |_| Vec::new());
    let controller = cluster.wait_for_controller(4, &[], Duration::from_secs(10));
    assert!((1..=3).contains(&controller), "controller {controller}");
    let m = cluster.wait_for_metadata(4, "both brokers", Duration::from_secs(10), |m| {
        broker_ids(m) == [4, 5]
    });
    assert_eq!(m.controller_id.0, controller);

    assert_eq!(create(&cluster, 4, "two", 4, 2, &[]), NONE);
    assert_eq!(
        create(&cluster, 5, "three", 1, 3, &[]),
        INVALID_REPLICATION_FACTOR,
        "controllers take no replicas"
    );
    let m = cluster.wait_for_metadata(5, "the topic", Duration::from_secs(10), |m| {
        topic_names(m) == ["two"]
    });
    for p in &topic(&m, "two").partitions {
        let mut replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
        replicas.sort();
        assert_eq!(replicas, [4, 5]);
    }
    let p = &topic(&m, "two").partitions[0];
    let mut leader = cluster.node(p.leader_id.0).client();
    assert_eq!(
        strom_tests::produce(&mut leader, "two", p.partition_index, &["v".to_string()]),
        0
    );

    // The active controller lists the brokers as observers.
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let r = cluster.node(5).client().request(2, &request).unwrap();
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_id.0), (NONE, controller), "{r:?}");
    let mut voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
    voters.sort();
    assert_eq!(voters, [1, 2, 3]);
    let mut observers: Vec<i32> = p.observers.iter().map(|v| v.replica_id.0).collect();
    observers.sort();
    assert_eq!(observers, [4, 5], "{r:?}");

    // The active controller dies: the brokers follow the new one, and a
    // broker that restarts with no metadata of its own is sent all of it.
    cluster.kill9(controller);
    let next = cluster.wait_for_controller(4, &[controller], Duration::from_secs(15));
    assert!((1..=3).contains(&next) && next != controller);
    cluster.kill9(5);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match create(&cluster, 4, "after", 1, 1, &[]) {
            NONE => break,
            REQUEST_TIMED_OUT | NOT_CONTROLLER if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            code => panic!(
                "creating through a broker after failover: {code}; seed {}",
                cluster.seed
            ),
        }
    }
    cluster.restart(5);
    cluster.wait_for_metadata(
        5,
        "every topic after a restart",
        Duration::from_secs(15),
        |m| topic_names(m) == ["after", "two"] && m.controller_id.0 == next,
    );
}
