use std::collections::BTreeMap;

use super::*;
use crate::log::LocalMetadataLog;

fn controller(dir: &std::path::Path) -> Controller {
    let (config, _) = StaticConfig::new(BTreeMap::new()).unwrap();
    let c = Controller::open(Box::new(LocalMetadataLog::open(dir).unwrap()), config);
    c.register_broker(1, "127.0.0.1", 9092).unwrap();
    c
}

fn topic(name: &str, partitions: i32) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: -1,
        ..Default::default()
    }
}

#[test]
fn create_validate_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path());
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
    let r = c.create_topics(vec![topic("v", 1)], true).unwrap();
    assert!(r[0].is_ok());
    assert!(
        c.image().topic("v").is_none(),
        "validate_only creates nothing"
    );
}

#[test]
fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path());
    c.create_topics(vec![topic("a", 2), topic("b", 1)], false)
        .unwrap();
    let a_id = c.image().topic("a").unwrap().id;
    c.delete_topics(&["b".into()]).unwrap();
    c.create_partitions(
        vec![CreatePartitionsRequest {
            name: "a".into(),
            count: 4,
            assignments: None,
        }],
        false,
    )
    .unwrap();
    let ids = c.allocate_producer_ids(1).unwrap();
    drop(c);
    let c = controller(dir.path());
    let img = c.image();
    assert_eq!(img.topic("a").unwrap().id, a_id);
    assert_eq!(img.topic("a").unwrap().partitions.len(), 4);
    assert!(img.topic("b").is_none());
    let next = c.allocate_producer_ids(1).unwrap();
    assert_eq!(
        next.start, ids.end,
        "producer ids never repeat across restarts"
    );
}

#[test]
fn delete_and_grow_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path());
    c.create_topics(vec![topic("a", 2)], false).unwrap();
    let r = c.delete_topics(&["nope".into()]).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().code,
        ErrorCode::UnknownTopicOrPartition
    );
    let grow = |count| CreatePartitionsRequest {
        name: "a".into(),
        count,
        assignments: None,
    };
    let r = c.create_partitions(vec![grow(1), grow(2)], false).unwrap();
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
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().code,
        ErrorCode::UnknownTopicOrPartition
    );
}

#[test]
fn images_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path());
    let mut rx = c.subscribe();
    rx.mark_unchanged();
    c.create_topics(vec![topic("a", 1)], false).unwrap();
    assert!(rx.has_changed().unwrap());
    assert!(rx.borrow_and_update().topic("a").is_some());
}

#[test]
fn the_metadata_log_name_is_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path());
    for validate_only in [true, false] {
        let r = c
            .create_topics(vec![topic(CLUSTER_METADATA_TOPIC, 1)], validate_only)
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

#[test]
fn partitions_per_request_are_capped_before_anything_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path());
    for validate_only in [true, false] {
        // 2^31-1 partitions must be refused at once, not placed.
        let r = c
            .create_topics(
                vec![topic("big", i32::MAX), topic("small", 1)],
                validate_only,
            )
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
            .unwrap();
        assert!(r.iter().all(|e| e.is_err()));
    }
    assert!(c.image().topics().is_empty());
    let r = c.create_topics(vec![topic("ok", 10_000)], true).unwrap();
    assert_eq!(r[0].as_ref().unwrap().num_partitions, 10_000);
    c.create_topics(vec![topic("grow", 1)], false).unwrap();
    let grow = |count| CreatePartitionsRequest {
        name: "grow".into(),
        count,
        assignments: None,
    };
    let r = c.create_partitions(vec![grow(i32::MAX)], true).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().code, ErrorCode::PolicyViolation);
    let r = c.create_partitions(vec![grow(10_001)], false).unwrap();
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

#[test]
fn config_changes_are_validated_recorded_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path());
    let mut t = topic("t", 1);
    t.configs = vec![("segment.ms".into(), "100000".into())];
    c.create_topics(vec![t], false).unwrap();
    let topic_res = || ConfigResource::Topic("t".into());
    let configs = |c: &Controller| c.image().topic("t").unwrap().configs.clone();

    // validate_only decides but records nothing.
    let offset = c.image().offset;
    let r = c
        .alter_configs(
            vec![alter(topic_res(), vec![set("retention.ms", "5")], false)],
            true,
        )
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
        .unwrap();
    assert!(r[0].is_ok() && r[1].is_ok() && r[4].is_ok(), "{r:?}");
    assert_eq!(
        r[2].as_ref().unwrap_err().message,
        "Cannot update these configs dynamically: Set(num.partitions)"
    );
    assert_eq!(r[3].as_ref().unwrap_err().code, ErrorCode::InvalidRequest);

    // Replay gives the same image.
    let image = c.image();
    drop(c);
    let again = controller(dir.path());
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
