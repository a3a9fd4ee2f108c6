//! Integration tests against the real binary.

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strom_tests::{batch, fetch_all, name, produce, Broker, Client};

/// Every served API answers every advertised version, for requests that
/// take the success and the error paths (a response field that a version
/// cannot carry would otherwise fail to encode and close the connection).
#[test]
fn every_api_answers_every_version() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    c.create_topic("t", 1);
    produce(&mut c, "t", 0, &["x".into()]);
    let versions = c.api_versions().unwrap();
    let range = |key: ApiKey| {
        let v = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap();
        v.min_version..=v.max_version
    };
    for topic in ["t", "missing.topic"] {
        for v in range(ApiKey::Metadata) {
            // Before v4 a missing topic is auto-created: ask for another one.
            let asked = if v < 4 && topic != "t" {
                "auto.created"
            } else {
                topic
            };
            let topics = vec![MetadataRequestTopic::default().with_name(Some(name(asked)))];
            // Before v4 the request cannot say no to auto-creation.
            let r = c
                .request(
                    v,
                    &MetadataRequest::default()
                        .with_topics(Some(topics))
                        .with_allow_auto_topic_creation(v < 4),
                )
                .unwrap();
            assert_eq!(r.topics.len(), 1, "Metadata v{v}");
        }
        for v in range(ApiKey::ListOffsets) {
            let r = c
                .request(
                    v,
                    &ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![ListOffsetsTopic::default()
                            .with_name(name(topic))
                            .with_partitions(vec![ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1)])]),
                )
                .unwrap();
            assert_eq!(
                r.topics[0].partitions[0].error_code != 0,
                topic == "missing.topic",
                "ListOffsets v{v}"
            );
        }
        for v in range(ApiKey::Fetch) {
            let t = FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1000)]);
            let r = c
                .request(
                    v,
                    &FetchRequest::default()
                        .with_max_bytes(1000)
                        .with_topics(vec![t]),
                )
                .unwrap();
            assert_eq!(r.responses.len(), 1, "Fetch v{v}");
        }
        for v in 3..=*range(ApiKey::Produce).end() {
            let r = c
                .request(
                    v,
                    &ProduceRequest::default().with_acks(1).with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(name(topic))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch(&["y".into()])))]),
                    ]),
                )
                .unwrap();
            assert_eq!(
                r.responses[0].partition_responses[0].error_code != 0,
                topic == "missing.topic",
                "Produce v{v}"
            );
        }
        for v in range(ApiKey::DescribeConfigs) {
            let r = c
                .request(
                    v,
                    &DescribeConfigsRequest::default()
                        .with_include_synonyms(v >= 1)
                        .with_resources(vec![
                            describe_configs_request::DescribeConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_static_str("t")),
                            describe_configs_request::DescribeConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_string(topic.to_owned())),
                            describe_configs_request::DescribeConfigsResource::default()
                                .with_resource_type(4)
                                .with_resource_name(StrBytes::from_static_str("1")),
                        ]),
                )
                .unwrap();
            assert_eq!(r.results.len(), 3);
        }
        for v in range(ApiKey::OffsetForLeaderEpoch) {
            let r = c
                .request(
                    v,
                    &OffsetForLeaderEpochRequest::default().with_topics(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                            .with_topic(name(topic))
                            .with_partitions(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                )
                                .with_leader_epoch(0)
                                .with_current_leader_epoch(-1),
                            ]),
                    ]),
                )
                .unwrap();
            assert_eq!(r.topics.len(), 1);
        }
    }
    for v in range(ApiKey::CreateTopics) {
        let r = c
            .request(
                v,
                &CreateTopicsRequest::default().with_topics(vec![
                    CreatableTopic::default()
                        .with_name(name(&format!("c{v}")))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                    CreatableTopic::default()
                        .with_name(name("t"))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]),
            )
            .unwrap();
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
        assert_eq!(
            r.topics[1].error_code, 36,
            "CreateTopics v{v}: TOPIC_ALREADY_EXISTS"
        );
    }
    for v in range(ApiKey::CreatePartitions) {
        let r = c
            .request(
                v,
                &CreatePartitionsRequest::default().with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name(&format!("c{}", 2 + v)))
                        .with_count(2 + v as i32),
                ]),
            )
            .unwrap();
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }
    for v in range(ApiKey::DeleteTopics) {
        let req = if v >= 6 {
            DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(name(&format!("c{}", v + 1))))])
        } else {
            DeleteTopicsRequest::default()
                .with_topic_names(vec![name(&format!("c{}", v + 1)), name("nope")])
        };
        let r = c.request(v, &req).unwrap();
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    }
    for v in range(ApiKey::InitProducerId) {
        let r = c
            .request(
                v,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60000),
            )
            .unwrap();
        assert_eq!(r.error_code, 0);
        assert!(r.producer_id.0 >= 0);
    }
    // Transactional ids (key type 1, v1+) have this node as coordinator;
    // unknown key types are invalid.
    for v in 1..=*range(ApiKey::FindCoordinator).end() {
        for (key_type, expected) in [(1, 0), (2, 42)] {
            let req = if v >= 4 {
                FindCoordinatorRequest::default()
                    .with_key_type(key_type)
                    .with_coordinator_keys(vec![StrBytes::from_static_str("txn")])
            } else {
                FindCoordinatorRequest::default()
                    .with_key_type(key_type)
                    .with_key(StrBytes::from_static_str("txn"))
            };
            let r = c.request(v, &req).unwrap();
            let code = if v >= 4 {
                r.coordinators[0].error_code
            } else {
                r.error_code
            };
            assert_eq!(code, expected, "FindCoordinator v{v} key type {key_type}");
        }
    }
    for v in range(ApiKey::DescribeCluster) {
        let r = c.request(v, &DescribeClusterRequest::default()).unwrap();
        assert_eq!(r.brokers.len(), 1);
    }
    for v in range(ApiKey::DescribeQuorum) {
        use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
        let ask = |topic: &'static str| {
            DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)])])
        };
        let r = c.request(v, &ask("__cluster_metadata")).unwrap();
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (r.error_code, p.error_code, p.leader_id.0),
            (0, 0, 1),
            "v{v}"
        );
        assert_eq!(p.current_voters.len(), 1);
        assert!(p.high_watermark > 0 && p.current_voters[0].log_end_offset >= p.high_watermark);
        let r = c.request(v, &ask("t")).unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
    }
    for v in range(ApiKey::ApiVersions) {
        let r = c
            .request(
                v,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("a"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            )
            .unwrap();
        assert_eq!(r.error_code, 0);
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut b = Broker::start(&[("log.segment.bytes", "20000")]);
    let mut c = b.client();
    c.create_topic("durable", 1);
    let mut expected = Vec::new();
    for i in 0..200 {
        let values: Vec<String> = (0..5).map(|j| format!("record-{i}-{j}")).collect();
        let base = produce(&mut c, "durable", 0, &values);
        assert_eq!(base, i * 5);
        expected.extend(values);
    }
    b.kill9();
    b.restart();
    let mut c = b.client();
    assert_eq!(fetch_all(&mut c, "durable", 0), expected);
    let base = produce(&mut c, "durable", 0, &["after".into()]);
    assert_eq!(base, 1000, "writes continue at the old log end");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    c.create_topic("t", 2);
    produce(&mut c, "t", 1, &["a".into(), "b".into()]);
    let status = b.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        b.log().contains("clean shutdown") || b.log().contains("broker closed"),
        "{}",
        b.log()
    );
    b.restart();
    let mut c = b.client();
    assert_eq!(fetch_all(&mut c, "t", 1), vec!["a", "b"]);
    assert!(
        b.log().contains("clean=true"),
        "the restart trusted the clean shutdown"
    );
}

/// The leader epoch of `topic`-0 as Metadata gives it.
fn leader_epoch(c: &mut Client, topic: &str) -> i32 {
    let m = c
        .request(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(topic)))
            ])),
        )
        .unwrap();
    let p = &m.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "{m:?}");
    p.leader_epoch
}

/// OffsetForLeaderEpoch of `topic`-0: (epoch, end offset) for `epoch`.
fn epoch_end(c: &mut Client, topic: &str, epoch: i32) -> (i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let r = c
        .request(
            4,
            &OffsetForLeaderEpochRequest::default().with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(-1)
                        .with_leader_epoch(epoch)]),
            ]),
        )
        .unwrap();
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.leader_epoch, p.end_offset)
}

/// A restart (clean or not) gives a partition a new leader epoch, and the
/// leader-epoch checkpoint still says where each earlier epoch ended: what
/// a consumer checks its position against after a leader change, so that
/// it does not mistake a restart for a truncated log.
#[test]
fn leader_epochs_grow_across_restarts_and_each_ends_where_it_ended() {
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    c.create_topic("t", 1);
    let first = leader_epoch(&mut c, "t");
    produce(&mut c, "t", 0, &["a".into(), "b".into(), "c".into()]);
    assert_eq!(epoch_end(&mut c, "t", first), (first, 3));
    b.terminate();
    b.restart();
    let mut c = b.client();
    let second = leader_epoch(&mut c, "t");
    assert!(
        second > first,
        "a new epoch after a restart: {first} then {second}"
    );
    produce(&mut c, "t", 0, &["d".into()]);
    b.kill9();
    b.restart();
    let mut c = b.client();
    let third = leader_epoch(&mut c, "t");
    assert!(
        third > second,
        "a new epoch after a crash: {second} then {third}"
    );
    produce(&mut c, "t", 0, &["e".into()]);
    assert_eq!(epoch_end(&mut c, "t", first), (first, 3));
    assert_eq!(epoch_end(&mut c, "t", second), (second, 4));
    assert_eq!(epoch_end(&mut c, "t", third), (third, 5));
    assert_eq!(
        epoch_end(&mut c, "t", third + 1),
        (-1, -1),
        "an epoch not yet begun"
    );
    assert_eq!(
        fetch_all(&mut c, "t", 0),
        vec!["a", "b", "c", "d", "e"],
        "nothing lost"
    );
}

#[test]
fn bad_frames_close_only_their_connection() {
    let b = Broker::start(&[("socket.request.max.bytes", "1000")]);
    let mut healthy = b.client();
    let cases: Vec<Vec<u8>> = vec![
        2000i32.to_be_bytes().to_vec(), // over socket.request.max.bytes
        (-5i32).to_be_bytes().to_vec(), // negative size
        [&6i32.to_be_bytes()[..], &[0xff; 6]].concat(), // too short for a header
        [&10i32.to_be_bytes()[..], &9999i16.to_be_bytes(), &[0; 8]].concat(), // unknown api key
        [
            &12i32.to_be_bytes()[..],
            &3i16.to_be_bytes(),
            &99i16.to_be_bytes(),
            &[0; 8],
        ]
        .concat(), // Metadata v99
        [
            &20i32.to_be_bytes()[..],
            &3i16.to_be_bytes(),
            &9i16.to_be_bytes(),
            &[0xab; 16],
        ]
        .concat(), // garbage body
    ];
    for bytes in cases {
        let mut c = b.client();
        c.send_raw(&bytes).unwrap();
        assert!(c.is_closed(), "connection closed after {bytes:?}");
        assert!(
            healthy.api_versions().is_ok(),
            "other connections unaffected"
        );
    }
    assert!(b.log().contains("closing connection"));
}

#[test]
fn unknown_api_versions_version_gets_its_own_range() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    let mut frame = Vec::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&77i16.to_be_bytes());
    frame.extend_from_slice(&42i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    let mut raw = (frame.len() as i32).to_be_bytes().to_vec();
    raw.extend(frame);
    c.send_raw(&raw).unwrap();
    let mut resp = c.read_frame().unwrap().freeze();
    use kafka_protocol::protocol::Decodable;
    let header = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let body = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35);
    // Only ApiVersions' own range, as Kafka answers.
    assert_eq!(body.api_keys.len(), 1);
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
}

/// The classic group APIs answer every advertised version through a whole
/// member lifecycle: join, sync, heartbeat, commit, fetch, describe, leave.
#[test]
fn group_apis_answer_every_version() {
    let b = Broker::start(&[("group.initial.rebalance.delay.ms", "0")]);
    let mut c = b.client();
    c.create_topic("gt", 1);
    let versions = c.api_versions().unwrap();
    let max = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap()
            .max_version
    };
    let min = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap()
            .min_version
    };
    let at = |key: ApiKey, i: i16| i.clamp(min(key), max(key));
    for i in 0..=9i16 {
        let group = format!("group-{i}");
        let gid = GroupId(StrBytes::from_string(group.clone()));
        let fc = c.request(
            at(ApiKey::FindCoordinator, i),
            &if i >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![gid.0.clone()])
            } else {
                FindCoordinatorRequest::default().with_key(gid.0.clone())
            },
        );
        let fc = fc.unwrap();
        assert_eq!(
            if i >= 4 {
                fc.coordinators[0].node_id.0
            } else {
                fc.node_id.0
            },
            1,
            "FindCoordinator v{i}"
        );
        let jv = at(ApiKey::JoinGroup, i);
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(gid.clone())
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(StrBytes::from_string(member.to_owned()))
                .with_group_instance_id(None)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"m"))])
        };
        let mut j = c.request(jv, &join("")).unwrap();
        if jv >= 4 {
            assert_eq!(j.error_code, 79, "JoinGroup v{jv}: MEMBER_ID_REQUIRED");
            j = c.request(jv, &join(j.member_id.as_str())).unwrap();
        }
        assert_eq!(j.error_code, 0, "JoinGroup v{jv}");
        assert_eq!(j.leader, j.member_id);
        let member = j.member_id.clone();
        let s = c
            .request(
                at(ApiKey::SyncGroup, i),
                &SyncGroupRequest::default()
                    .with_group_id(gid.clone())
                    .with_generation_id(j.generation_id)
                    .with_member_id(member.clone())
                    .with_group_instance_id(None)
                    .with_assignments(vec![
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(member.clone())
                            .with_assignment(Bytes::from_static(b"a")),
                    ]),
            )
            .unwrap();
        assert_eq!(
            (s.error_code, s.assignment.as_ref()),
            (0, &b"a"[..]),
            "SyncGroup v{i}"
        );
        let h = c
            .request(
                at(ApiKey::Heartbeat, i),
                &HeartbeatRequest::default()
                    .with_group_id(gid.clone())
                    .with_generation_id(j.generation_id)
                    .with_member_id(member.clone())
                    .with_group_instance_id(None),
            )
            .unwrap();
        assert_eq!(h.error_code, 0, "Heartbeat v{i}");
        let oc = c
            .request(
                at(ApiKey::OffsetCommit, i),
                &OffsetCommitRequest::default()
                    .with_group_id(gid.clone())
                    .with_generation_id_or_member_epoch(j.generation_id)
                    .with_member_id(member.clone())
                    .with_group_instance_id(None)
                    .with_topics(vec![
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(name("gt"))
                            .with_partitions(vec![
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_committed_offset(42)
                                    .with_committed_metadata(Some(StrBytes::from_static_str("md"))),
                            ]),
                    ]),
            )
            .unwrap();
        assert_eq!(
            oc.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{i}"
        );
        let fv = at(ApiKey::OffsetFetch, i);
        let fetched = if fv >= 8 {
            let r = c
                .request(
                    fv,
                    &OffsetFetchRequest::default().with_groups(vec![
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(gid.clone())
                            .with_topics(None),
                    ]),
                )
                .unwrap();
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            let r = c
                .request(
                    fv,
                    &OffsetFetchRequest::default()
                        .with_group_id(gid.clone())
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopic::default()
                                .with_name(name("gt"))
                                .with_partition_indexes(vec![0]),
                        ])),
                )
                .unwrap();
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(fetched, 42, "OffsetFetch v{fv}");
        let d = c
            .request(
                at(ApiKey::DescribeGroups, i),
                &DescribeGroupsRequest::default().with_groups(vec![gid.clone()]),
            )
            .unwrap();
        assert_eq!(
            d.groups[0].group_state.as_str(),
            "Stable",
            "DescribeGroups v{i}"
        );
        let l = c
            .request(at(ApiKey::ListGroups, i), &ListGroupsRequest::default())
            .unwrap();
        assert!(
            l.groups.iter().any(|g| g.group_id == gid),
            "ListGroups v{i}"
        );
        let lv = at(ApiKey::LeaveGroup, i);
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid.clone())
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(member.clone())
                    .with_group_instance_id(None)])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid.clone())
                .with_member_id(member.clone())
        };
        let lr = c.request(lv, &leave).unwrap();
        assert_eq!(
            if lv >= 3 {
                lr.members[0].error_code
            } else {
                lr.error_code
            },
            0,
            "LeaveGroup v{lv}"
        );
        let od = c
            .request(
                0,
                &OffsetDeleteRequest::default()
                    .with_group_id(gid.clone())
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(name("gt"))
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default(),
                            ]),
                    ]),
            )
            .unwrap();
        assert_eq!(od.error_code, 0);
        let dg = c
            .request(
                at(ApiKey::DeleteGroups, i),
                &DeleteGroupsRequest::default().with_groups_names(vec![gid.clone()]),
            )
            .unwrap();
        assert_eq!(dg.results[0].error_code, 0, "DeleteGroups v{i}");
    }
}

/// KIP-848: join, reconcile and leave through ConsumerGroupHeartbeat, and
/// describe, in every advertised version.
#[test]
fn consumer_group_heartbeat_answers_every_version() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    c.create_topic("kt", 2);
    for v in 0..=1i16 {
        let gid = GroupId(StrBytes::from_string(format!("kip848-{v}")));
        // v1 members choose their id; v0 members get one.
        let chosen = if v >= 1 { "member-one" } else { "" };
        let join = c
            .request(
                v,
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(gid.clone())
                    .with_member_id(StrBytes::from_static_str(chosen))
                    .with_member_epoch(0)
                    .with_rebalance_timeout_ms(30_000)
                    .with_subscribed_topic_names(Some(vec![name("kt")]))
                    .with_topic_partitions(Some(vec![])),
            )
            .unwrap();
        assert_eq!(join.error_code, 0, "v{v}: {:?}", join.error_message);
        let member = join.member_id.clone().unwrap();
        if v >= 1 {
            assert_eq!(member.as_str(), chosen);
        }
        assert_eq!(join.member_epoch, 1);
        assert_eq!(
            join.assignment.unwrap().topic_partitions[0].partitions,
            vec![0, 1]
        );
        let d = c
            .request(
                v,
                &ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid.clone()]),
            )
            .unwrap();
        assert_eq!(d.groups[0].error_code, 0);
        assert_eq!(d.groups[0].members.len(), 1);
        let fenced = c
            .request(
                v,
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(gid.clone())
                    .with_member_id(member.clone())
                    .with_member_epoch(9),
            )
            .unwrap();
        assert_eq!(fenced.error_code, 110, "FENCED_MEMBER_EPOCH");
        let leave = c
            .request(
                v,
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(gid.clone())
                    .with_member_id(member)
                    .with_member_epoch(-1),
            )
            .unwrap();
        assert_eq!((leave.error_code, leave.member_epoch), (0, -1));
    }
}

/// A classic group's stable members carry on after the coordinator is
/// killed and restarts: their generation, assignment and membership come
/// back from the group record, as with Kafka.
#[test]
fn group_members_survive_a_coordinator_restart() {
    let mut b = Broker::start(&[("group.initial.rebalance.delay.ms", "0")]);
    let mut c = b.client();
    c.create_topic("gr", 1);
    let gid = GroupId(StrBytes::from_static_str("restarting"));
    let j = join_alone(&mut c, &gid, 30_000);
    b.kill9();
    b.restart();
    let mut c = b.client();
    let h = c
        .request(
            4,
            &HeartbeatRequest::default()
                .with_group_id(gid.clone())
                .with_generation_id(j.generation_id)
                .with_member_id(j.member_id.clone()),
        )
        .unwrap();
    assert_eq!(h.error_code, 0, "the member is known after the restart");
    let again = sync_alone(&mut c, &gid, &j);
    assert_eq!(
        (again.error_code, again.assignment.as_ref()),
        (0, &b"assigned"[..]),
        "and so is its assignment"
    );
    let d = c
        .request(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![gid.clone()]),
        )
        .unwrap();
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].members.len(), 1);
}

/// Joins `gid` as its only member (JoinGroup v9 with the member id dance,
/// then SyncGroup v5) with the given session timeout; returns the join.
fn join_alone(c: &mut Client, gid: &GroupId, session_ms: i32) -> JoinGroupResponse {
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(gid.clone())
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(session_ms)
            .with_member_id(StrBytes::from_string(member.to_owned()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"m"))])
    };
    // The coordinator may still be loading (or creating) its partition:
    // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE and
    // NOT_COORDINATOR are retried, as clients do, for up to 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let j = loop {
        let first = c.request(9, &join("")).unwrap();
        let j = c.request(9, &join(first.member_id.as_str())).unwrap();
        if !matches!(j.error_code, 14..=16) || std::time::Instant::now() > deadline {
            break j;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(j.error_code, 0);
    assert_eq!(sync_alone(c, gid, &j).error_code, 0);
    j
}

/// SyncGroup v5 of the only member `j`, as leader assigning it b"assigned".
fn sync_alone(c: &mut Client, gid: &GroupId, j: &JoinGroupResponse) -> SyncGroupResponse {
    c.request(
        5,
        &SyncGroupRequest::default()
            .with_group_id(gid.clone())
            .with_generation_id(j.generation_id)
            .with_member_id(j.member_id.clone())
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(j.member_id.clone())
                    .with_assignment(Bytes::from_static(b"assigned")),
            ]),
    )
    .unwrap()
}

/// A member whose session ended is gone for an admin at once, not only
/// at the next timer tick (every 100 ms): deleting the group right after
/// the session timeout succeeds (Kafka's per-member timers expire it then).
#[test]
fn a_group_is_deletable_right_after_its_last_session_ends() {
    let b = Broker::start(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("group.min.session.timeout.ms", "1000"),
    ]);
    let mut c = b.client();
    for round in 0..5 {
        let gid = GroupId(StrBytes::from_string(format!("expiring-{round}")));
        join_alone(&mut c, &gid, 1000);
        let synced = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(1010).saturating_sub(synced.elapsed()));
        let r = c
            .request(
                2,
                &DeleteGroupsRequest::default().with_groups_names(vec![gid.clone()]),
            )
            .unwrap();
        assert_eq!(
            r.results[0].error_code, 0,
            "round {round}: DeleteGroups {:?} after the session ended",
            r.results[0].error_code
        );
    }
}
