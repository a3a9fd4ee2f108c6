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
