use std::collections::BTreeMap;

use super::*;
use crate::quorum::{NoTransport, QuorumConfig};

/// A one-voter controller (node 1, registered as a broker) in `dir`.
async fn controller(dir: &std::path::Path) -> Controller {
    let (config, _) = StaticConfig::new(BTreeMap::new()).unwrap();
    let c = Controller::open(
        QuorumConfig::single(1, dir.to_path_buf()),
        Arc::new(NoTransport),
        config,
    )
    .await
    .unwrap();
    join(&c, registration(1, None)).await;
    c
}

fn registration(node_id: i32, cluster_id: Option<&str>) -> BrokerRegistration {
    BrokerRegistration {
        node_id,
        host: "127.0.0.1".into(),
        port: 9092 + node_id,
        rack: None,
        cluster_id: cluster_id.map(str::to_owned),
        incarnation_id: Uuid::new_v4(),
    }
}

fn heartbeat(node_id: i32, broker_epoch: i64, metadata_offset: i64) -> BrokerHeartbeat {
    BrokerHeartbeat {
        node_id,
        broker_epoch,
        metadata_offset,
        want_shutdown: false,
    }
}

/// Registers `b` and heartbeats until it is unfenced: its broker epoch.
async fn join(c: &Controller, b: BrokerRegistration) -> i64 {
    let node = b.node_id;
    let epoch = c.register_broker(b).await.unwrap().unwrap().broker_epoch;
    assert!(
        c.image().broker(node).unwrap().fenced,
        "a broker registers fenced"
    );
    let offset = c.image().offset;
    let reply = c
        .heartbeat(heartbeat(node, epoch, offset))
        .await
        .unwrap()
        .unwrap();
    assert!(!reply.is_fenced && !reply.should_shutdown);
    assert!(c.image().is_active(node));
    epoch
}

fn topic(name: &str, partitions: i32) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: -1,
        ..Default::default()
    }
}

#[tokio::test]
async fn create_validate_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path()).await;
    let mut with_config = topic("b", 2);
    with_config.configs = vec![("retention.ms".into(), "1000".into())];
    let r = c
        .create_topics(
            vec![
                topic("a", 3),
                with_config,
                topic("a", 1),
                topic("bad/name", 1),
                topic("c", 0),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap().num_partitions, 3);
    assert_eq!(r[1].as_ref().unwrap().configs["retention.ms"], "1000");
    assert_eq!(
        r[2].as_ref().unwrap_err().code,
        ErrorCode::TopicAlreadyExists
    );
    assert_eq!(
        r[3].as_ref().unwrap_err().code,
        ErrorCode::InvalidTopicException
    );
    assert_eq!(
        r[4].as_ref().unwrap_err().code,
        ErrorCode::InvalidPartitions
    );
    let mut rf = topic("d", 1);
    rf.replication_factor = 3;
    let mut bad_cfg = topic("e", 1);
    bad_cfg.configs = vec![("retention.ms".into(), "x".into())];
    let r = c
        .create_topics(vec![rf, bad_cfg, topic("a_b", 1), topic("a.b", 1)], false)
        .await
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().code,
        ErrorCode::InvalidReplicationFactor
    );
    assert_eq!(r[1].as_ref().unwrap_err().code, ErrorCode::InvalidConfig);
    assert!(r[2].is_ok());
    assert_eq!(
        r[3].as_ref().unwrap_err().code,
        ErrorCode::InvalidTopicException
    );
    let r = c.create_topics(vec![topic("v", 1)], true).await.unwrap();
    assert!(r[0].is_ok());
    assert!(
        c.image().topic("v").is_none(),
        "validate_only creates nothing"
    );
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path()).await;
    c.create_topics(vec![topic("a", 2), topic("b", 1)], false)
        .await
        .unwrap();
    let a_id = c.image().topic("a").unwrap().id;
    c.delete_topics(&["b".into()]).await.unwrap();
    c.create_partitions(
        vec![CreatePartitionsRequest {
            name: "a".into(),
            count: 4,
            assignments: None,
        }],
        false,
    )
    .await
    .unwrap();
    let ids = c.allocate_producer_ids(1).await.unwrap();
    c.shutdown().await;
    drop(c);
    let c = controller(dir.path()).await;
    let img = c.image();
    assert_eq!(img.topic("a").unwrap().id, a_id);
    assert_eq!(img.topic("a").unwrap().partitions.len(), 4);
    assert!(img.topic("b").is_none());
    let next = c.allocate_producer_ids(1).await.unwrap();
    assert_eq!(
        next.start, ids.end,
        "producer ids never repeat across restarts"
    );
}

#[tokio::test]
async fn delete_and_grow_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path()).await;
    c.create_topics(vec![topic("a", 2)], false).await.unwrap();
    let r = c.delete_topics(&["nope".into()]).await.unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().code,
        ErrorCode::UnknownTopicOrPartition
    );
    let grow = |count| CreatePartitionsRequest {
        name: "a".into(),
        count,
        assignments: None,
    };
    let r = c
        .create_partitions(vec![grow(1), grow(2)], false)
        .await
        .unwrap();
    assert!(r
        .iter()
        .all(|r| r.as_ref().unwrap_err().code == ErrorCode::InvalidPartitions));
    let r = c
        .create_partitions(
            vec![CreatePartitionsRequest {
                name: "zz".into(),
                count: 3,
                assignments: None,
            }],
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().code,
        ErrorCode::UnknownTopicOrPartition
    );
}

#[tokio::test]
async fn images_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path()).await;
    let mut rx = c.subscribe();
    rx.mark_unchanged();
    c.create_topics(vec![topic("a", 1)], false).await.unwrap();
    assert!(rx.has_changed().unwrap());
    assert!(rx.borrow_and_update().topic("a").is_some());
}

#[tokio::test]
async fn the_metadata_log_name_is_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path()).await;
    for validate_only in [true, false] {
        let r = c
            .create_topics(vec![topic(CLUSTER_METADATA_TOPIC, 1)], validate_only)
            .await
            .unwrap();
        let e = r[0].as_ref().unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(
            e.message,
            "Creation of internal topic __cluster_metadata is prohibited."
        );
    }
    assert!(c.image().topic(CLUSTER_METADATA_TOPIC).is_none());
}

#[tokio::test]
async fn partitions_per_request_are_capped_before_anything_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path()).await;
    for validate_only in [true, false] {
        // 2^31-1 partitions must be refused at once, not placed.
        let r = c
            .create_topics(
                vec![topic("big", i32::MAX), topic("small", 1)],
                validate_only,
            )
            .await
            .unwrap();
        for e in &r {
            let e = e.as_ref().unwrap_err();
            assert_eq!(e.code, ErrorCode::PolicyViolation);
            assert_eq!(
                e.message,
                "Excessively large number of partitions per request."
            );
        }
        // Two topics of 5,001 are over the limit together.
        let r = c
            .create_topics(vec![topic("x", 5001), topic("y", 5001)], validate_only)
            .await
            .unwrap();
        assert!(r.iter().all(|e| e.is_err()));
    }
    assert!(c.image().topics().is_empty());
    let r = c
        .create_topics(vec![topic("ok", 10_000)], true)
        .await
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap().num_partitions, 10_000);
    c.create_topics(vec![topic("grow", 1)], false)
        .await
        .unwrap();
    let grow = |count| CreatePartitionsRequest {
        name: "grow".into(),
        count,
        assignments: None,
    };
    let r = c
        .create_partitions(vec![grow(i32::MAX)], true)
        .await
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().code, ErrorCode::PolicyViolation);
    let r = c
        .create_partitions(vec![grow(10_001)], false)
        .await
        .unwrap();
    r[0].as_ref().unwrap();
    assert_eq!(c.image().topic("grow").unwrap().partitions.len(), 10_001);
}

fn alter(resource: ConfigResource, ops: Vec<ConfigOp>, replace: bool) -> AlterConfigsRequest {
    AlterConfigsRequest {
        resource,
        ops,
        replace,
    }
}

fn set(name: &str, value: &str) -> ConfigOp {
    ConfigOp::Set(name.into(), value.into())
}

#[tokio::test]
async fn config_changes_are_validated_recorded_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path()).await;
    let mut t = topic("t", 1);
    t.configs = vec![("segment.ms".into(), "100000".into())];
    c.create_topics(vec![t], false).await.unwrap();
    let topic_res = || ConfigResource::Topic("t".into());
    let configs = |c: &Controller| c.image().topic("t").unwrap().configs.clone();

    // validate_only decides but records nothing.
    let offset = c.image().offset;
    let r = c
        .alter_configs(
            vec![alter(topic_res(), vec![set("retention.ms", "5")], false)],
            true,
        )
        .await
        .unwrap();
    assert!(r[0].is_ok());
    assert_eq!(c.image().offset, offset);

    // APPEND starts from the default ("delete"); SUBTRACT removes items.
    let r = c
        .alter_configs(
            vec![alter(
                topic_res(),
                vec![
                    ConfigOp::Append("cleanup.policy".into(), "compact".into()),
                    set("retention.ms", "5"),
                ],
                false,
            )],
            false,
        )
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    assert_eq!(configs(&c)["cleanup.policy"], "delete,compact");
    assert_eq!(configs(&c)["segment.ms"], "100000", "untouched keys stay");
    c.alter_configs(
        vec![alter(
            topic_res(),
            vec![ConfigOp::Subtract("cleanup.policy".into(), "delete".into())],
            false,
        )],
        false,
    )
    .await
    .unwrap();
    assert_eq!(configs(&c)["cleanup.policy"], "compact");

    // One bad key fails the whole resource, and changes nothing of it.
    let before = configs(&c);
    let r = c
        .alter_configs(
            vec![alter(
                topic_res(),
                vec![set("retention.ms", "9"), set("retention.bytes", "-7")],
                false,
            )],
            false,
        )
        .await
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().code, ErrorCode::InvalidConfig);
    assert_eq!(configs(&c), before);
    let r = c
        .alter_configs(
            vec![
                alter(
                    topic_res(),
                    vec![ConfigOp::Append("retention.ms".into(), "1".into())],
                    false,
                ),
                alter(
                    ConfigResource::Topic("nope".into()),
                    vec![set("retention.ms", "1")],
                    false,
                ),
                alter(topic_res(), vec![set("no.such", "1")], false),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().message,
        "Can't APPEND to key retention.ms because its type is not LIST."
    );
    assert_eq!(
        r[1].as_ref().unwrap_err().code,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        r[2].as_ref().unwrap_err().message,
        "Unknown topic config name: no.such"
    );

    // AlterConfigs replaces every override.
    c.alter_configs(
        vec![alter(topic_res(), vec![set("flush.ms", "1000")], true)],
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        configs(&c),
        BTreeMap::from([("flush.ms".to_owned(), "1000".to_owned())])
    );

    // Broker configs: dynamic keys and unknown keys are kept, per broker
    // and cluster-wide; static ones are refused.
    let r = c
        .alter_configs(
            vec![
                alter(
                    ConfigResource::Broker(Some(1)),
                    vec![set("log.retention.ms", "1000")],
                    false,
                ),
                alter(
                    ConfigResource::Broker(None),
                    vec![set("message.max.bytes", "2000000")],
                    false,
                ),
                alter(
                    ConfigResource::Broker(Some(1)),
                    vec![set("num.partitions", "3")],
                    false,
                ),
                alter(
                    ConfigResource::Broker(None),
                    vec![set("log.retention.ms", "x")],
                    false,
                ),
                alter(
                    ConfigResource::Broker(None),
                    vec![set("plugin.key", "v")],
                    false,
                ),
            ],
            false,
        )
        .await
        .unwrap();
    assert!(r[0].is_ok() && r[1].is_ok() && r[4].is_ok(), "{r:?}");
    assert_eq!(
        r[2].as_ref().unwrap_err().message,
        "Cannot update these configs dynamically: Set(num.partitions)"
    );
    assert_eq!(r[3].as_ref().unwrap_err().code, ErrorCode::InvalidRequest);

    // Replay gives the same image.
    let image = c.image();
    c.shutdown().await;
    drop(c);
    let again = controller(dir.path()).await;
    assert_eq!(
        again.image().topic("t").unwrap().configs,
        image.topic("t").unwrap().configs
    );
    assert_eq!(
        again.image().broker_configs(Some(1)).unwrap()["log.retention.ms"],
        "1000"
    );
    assert_eq!(
        again.image().broker_configs(None).unwrap()["message.max.bytes"],
        "2000000"
    );
    let effective = again.config().with_dynamic(
        again.image().broker_configs(Some(1)),
        again.image().broker_configs(None),
    );
    assert_eq!(effective.get_i64("log.retention.ms"), 1000);
    assert_eq!(effective.get_i64("message.max.bytes"), 2_000_000);
}

#[tokio::test]
async fn a_single_node_metadata_log_is_carried_into_the_quorum_once() {
    let dir = tempfile::tempdir().unwrap();
    let topic_id = Uuid::new_v4();
    let entries = [
        vec![MetadataRecord::RegisterBroker {
            node_id: 1,
            host: "127.0.0.1".into(),
            // Where registration(1, ..) says it is: the same node.
            port: 9093,
            rack: None,
            incarnation_id: None,
            epoch: None,
            fenced: false,
        }],
        vec![
            MetadataRecord::Topic {
                name: "old".into(),
                topic_id,
            },
            MetadataRecord::Partition {
                topic_id,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: Some(0),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
        ],
        vec![MetadataRecord::ProducerIds {
            node_id: 1,
            next_producer_id: 2000,
        }],
    ];
    let bytes: Vec<u8> = entries.iter().flat_map(|e| log::encode_entry(e)).collect();
    std::fs::write(dir.path().join(log::LEGACY_LOG), bytes).unwrap();

    let c = controller(dir.path()).await;
    assert_eq!(c.image().topic("old").unwrap().id, topic_id);
    assert_eq!(c.allocate_producer_ids(1).await.unwrap().start, 2000);
    assert!(!dir.path().join(log::LEGACY_LOG).exists());
    assert!(dir.path().join(log::LEGACY_LOG_MIGRATED).exists());
    c.shutdown().await;
    drop(c);

    // Reopened, nothing is carried twice (the old log is gone), and a
    // crash between the carry's commit and the rename carries nothing
    // again either.
    std::fs::copy(
        dir.path().join(log::LEGACY_LOG_MIGRATED),
        dir.path().join(log::LEGACY_LOG),
    )
    .unwrap();
    let c = controller(dir.path()).await;
    assert_eq!(c.image().topics().len(), 1);
    assert_eq!(c.allocate_producer_ids(1).await.unwrap().start, 3000);
    assert!(!dir.path().join(log::LEGACY_LOG).exists());
}

#[tokio::test]
async fn the_first_registration_records_the_cluster_id_and_a_foreign_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path()).await;
    let id = c
        .image()
        .cluster_id
        .clone()
        .expect("recorded by the first registration");
    assert_eq!(id.len(), 22, "16 bytes in URL-safe base64: {id}");
    // Registering again, with or without the id, answers the same id.
    let again = c.register_broker(registration(2, None)).await.unwrap();
    assert_eq!(again.unwrap().cluster_id, id);
    let same = c.register_broker(registration(1, Some(&id))).await.unwrap();
    assert_eq!(same.unwrap().cluster_id, id);
    let refused = c
        .register_broker(registration(3, Some("another-cluster")))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::InconsistentClusterId);
    assert!(c.image().broker(3).is_none());
    c.shutdown().await;
}

#[tokio::test]
async fn a_single_nodes_cluster_id_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = StaticConfig::new(BTreeMap::new()).unwrap();
    let c = Controller::open(
        QuorumConfig::single(1, dir.path().to_path_buf()),
        Arc::new(NoTransport),
        config,
    )
    .await
    .unwrap();
    let id = c
        .register_broker(registration(1, Some("kept-from-meta")))
        .await
        .unwrap()
        .unwrap()
        .cluster_id;
    assert_eq!(id, "kept-from-meta");
    c.shutdown().await;
}
